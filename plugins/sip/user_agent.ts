/**
 * The SIP user agent: places and receives calls over UDP (RFC 3261 §8, §12–§15),
 * on top of the transport, transaction and dialog modules. This is the API the
 * SIP control plugin drives.
 *
 * @example Caller
 * ```ts
 * const ua = new SipUserAgent({ hostname: "127.0.0.1", port: 5061, log, userName: "alice" });
 * const codecs = createRegistry().codecs; // the codecs the plugins registered
 * const offer = createOffer({ address: "127.0.0.1", port: 40000, registry: codecs });
 * const call = ua.invite("sip:bob@127.0.0.1:5062", { sdp: offer });
 * call.on("progress", (p) => console.log(p.status, p.reason));
 * const { sdp } = await call.established; // rejects with CallFailedError on 486, 487, timeout...
 * const media = negotiated(sdp!, { registry: codecs });
 * call.on("ended", (e) => console.log(e.by, e.reason));
 * await call.hangup(); // BYE
 * await ua.close();
 * ```
 *
 * @example Callee
 * ```ts
 * const ua = new SipUserAgent({ hostname: "127.0.0.1", port: 5062, userName: "bob" });
 * ua.onInvite((call) => {
 *   call.ringing();
 *   try {
 *     call.accept(createAnswer(call.offer!, { address: "127.0.0.1", port: 41000, registry: codecs }));
 *   } catch (e) {
 *     call.reject(e instanceof SdpError ? e.status : 500);
 *   }
 *   call.on("ended", (e) => console.log("ended", e.by, e.reason));
 * });
 * ```
 *
 * @module
 */
import { type Clock, mediaClock, type Timer } from "../../core/clock.ts";
import { type Logger, silentLogger } from "../../core/log.ts";
import { Dialog, screenRequest } from "./dialog.ts";
import { Emitter } from "./emitter.ts";
import { newBranch, newCallId, newTag } from "./ids.ts";
import {
  bodyText,
  createRequest,
  createResponse,
  getCallId,
  getCSeq,
  getFrom,
  getTo,
  type ParseOptions,
  type SipRequest,
  type SipResponse,
} from "./message.ts";
import { formatHostPort, quote } from "./syntax.ts";
import {
  type ClientTransaction,
  type InviteServerTransaction,
  type ServerTransaction,
  type TimerSettings,
  TransactionLayer,
} from "./transaction.ts";
import {
  type Address,
  type DatagramTransport,
  SipTransport,
  type SipTransportStats,
  UdpTransport,
} from "./transport.ts";
import type { CodecRegistry } from "../../core/codec.ts";
import { agreedMedia, type NegotiatedAudio, SdpError } from "./sdp.ts";
import { formatUri, parseNameAddr, parseUri, type SipUri } from "./uri.ts";

/** Methods the user agent implements (sent in `Allow`). */
export const ALLOWED_METHODS: readonly string[] = ["INVITE", "ACK", "BYE", "CANCEL", "OPTIONS"];

/** Default `User-Agent` value. */
export const USER_AGENT = "voxpipe/0.1";

/** Options of {@linkcode SipUserAgent}. */
export interface SipUserAgentOptions {
  /** A datagram transport to use (tests inject a memory or lossy one). Without it, a UDP socket is bound. */
  transport?: DatagramTransport;
  /** Address to bind when no transport is given (default `0.0.0.0`). */
  hostname?: string;
  /** Port to bind when no transport is given (default 5060; 0 picks a free port). */
  port?: number;
  /** Clock for all SIP timers (default: the process media clock). */
  clock?: Clock;
  /** Logger; lines are tagged `[SIP]` (default: silent). */
  log?: Logger;
  /** User part of our From/Contact URIs (default `voxpipe`). */
  userName?: string;
  /** Display name in From (default none). */
  displayName?: string;
  /** Timer values (T1, T2, T4 and overrides). */
  timers?: Partial<TimerSettings>;
  /** `User-Agent` / `Server` header value (default `voxpipe/0.1`). */
  userAgent?: string;
  /** Address to advertise in Via/Contact instead of the one facing the peer (e.g. behind NAT). */
  contactHost?: string;
  /** Parser limits. */
  parse?: ParseOptions;
}

/** Options of {@linkcode SipUserAgent.invite}. */
export interface InviteOptions {
  /** SDP offer (sent as `application/sdp`). Without it, the offer is expected in the 2xx (answer goes in the ACK via `ackSdp`). */
  sdp?: string;
  /** SDP answer for the ACK when the INVITE carried no offer. */
  ackSdp?: (offer: string) => string;
  /** Extra headers for the INVITE. */
  headers?: [string, string][];
  /** Send to this address instead of the target URI's host:port (outbound proxy). */
  proxy?: Address;
}

/** Why and by whom a call ended. */
export interface CallEndInfo {
  /** `local`: we hung up, cancelled or rejected; `remote`: BYE, CANCEL or a final error response from the peer; `timeout`: no response / no ACK; `error`: transport or protocol failure. */
  by: "local" | "remote" | "timeout" | "error";
  /** Human-readable reason, e.g. `BYE`, `CANCEL`, `486 Busy Here`, `cancelled`. */
  reason: string;
  /** SIP status involved, when there is one. */
  status?: number;
}

/** A provisional response to our INVITE. */
export interface ProgressEvent {
  /** 100–199. */
  status: number;
  /** Reason phrase. */
  reason: string;
  /** Early-media SDP, if the response had one. */
  sdp?: string;
}

/** The call is established (2xx + ACK). */
export interface EstablishedEvent {
  /** The peer's SDP (their answer for an outgoing call, their offer for an incoming one; undefined if none). */
  sdp?: string;
}

/** Events of a {@linkcode Call}. */
export interface CallEvents {
  /** Outgoing calls: each 1xx received (100, 180, 183...). */
  progress: ProgressEvent;
  /** The call is up: outgoing after the 2xx (ACK sent), incoming when the ACK arrives. */
  established: EstablishedEvent;
  /** The call is over (emitted exactly once). */
  ended: CallEndInfo;
}

/** Events of a {@linkcode SipUserAgent}. */
export interface UserAgentEvents {
  /** A new incoming call. Call `ringing()`, `accept()` or `reject()` on it. */
  invite: IncomingCall;
}

/** Call states. */
export type CallState =
  | "calling" // outgoing, INVITE sent
  | "proceeding" // outgoing, 1xx received
  | "incoming" // incoming, not answered
  | "ringing" // incoming, 180 sent
  | "accepting" // incoming, 200 sent, waiting for ACK
  | "established"
  | "ended";

/** The call ended before it was established; `info` says how. */
export class CallFailedError extends Error {
  /** How the call ended. */
  readonly info: CallEndInfo;
  /**
   * Creates the error.
   * @param info how the call ended
   */
  constructor(info: CallEndInfo) {
    super(`call failed (${info.by}): ${info.reason}`);
    this.name = "CallFailedError";
    this.info = info;
  }
}

/** True for addresses such as 0.0.0.0 and :: that must not be advertised. */
function isUnspecified(host: string): boolean {
  return host === "" || host === "0.0.0.0" || host === "::" || host === "[::]";
}

function isLoopback(host: string): boolean {
  return host === "localhost" || host === "::1" || host.startsWith("127.");
}

function ipv4ToInt(ip: string): number | undefined {
  const p = ip.split(".");
  if (p.length !== 4) return undefined;
  let n = 0;
  for (const x of p) {
    const v = Number(x);
    if (!/^\d{1,3}$/.test(x) || v > 255) return undefined;
    n = (n * 256) + v;
  }
  return n;
}

/**
 * The local address to advertise towards `peer` when bound to `bound`: the bound
 * address itself unless it is unspecified; loopback for a loopback peer; else the
 * interface on the peer's subnet, else the first non-internal one of its family.
 *
 * @example
 * ```ts
 * localAddressFacing("0.0.0.0", "127.0.0.1"); // "127.0.0.1"
 * localAddressFacing("10.1.2.3", "192.0.2.7"); // "10.1.2.3"
 * ```
 */
export function localAddressFacing(bound: string, peer: string): string {
  if (!isUnspecified(bound)) return bound;
  const v6 = peer.includes(":");
  if (isLoopback(peer)) return v6 ? "::1" : "127.0.0.1";
  try {
    const ifaces = Deno.networkInterfaces().filter((i) => i.family === (v6 ? "IPv6" : "IPv4"));
    const peerN = v6 ? undefined : ipv4ToInt(peer);
    if (peerN !== undefined) {
      for (const i of ifaces) {
        const a = ipv4ToInt(i.address);
        const m = ipv4ToInt(i.netmask);
        if (a === undefined || m === undefined || isLoopback(i.address)) continue;
        if ((((a ^ peerN) & m) >>> 0) === 0) return i.address;
      }
    }
    const external = ifaces.find((i) => !isLoopback(i.address) && !i.address.startsWith("fe80"));
    if (external) return external.address;
  } catch {
    // no --allow-sys: fall back to loopback
  }
  return v6 ? "::1" : "127.0.0.1";
}

/** Shared internals of a user agent, used by its calls. */
class Core {
  readonly transport: SipTransport;
  readonly layer: TransactionLayer;
  readonly clock: Clock;
  readonly log: Logger;
  readonly userName: string;
  readonly displayName?: string;
  readonly userAgent: string;
  readonly contactHost?: string;
  readonly calls = new Map<string, Call>();
  readonly lingering = new Set<Timer>();
  closed = false;

  constructor(transport: SipTransport, layer: TransactionLayer, opts: SipUserAgentOptions, log: Logger) {
    this.transport = transport;
    this.layer = layer;
    this.clock = layer.clock;
    this.log = log;
    this.userName = opts.userName ?? "voxpipe";
    this.displayName = opts.displayName;
    this.userAgent = opts.userAgent ?? USER_AGENT;
    this.contactHost = opts.contactHost;
  }

  localHost(peer: Address): string {
    return this.contactHost ?? localAddressFacing(this.transport.localAddress.hostname, peer.hostname);
  }

  via(peer: Address, branch = newBranch()): string {
    const hp = formatHostPort(this.localHost(peer), this.transport.localAddress.port);
    return `SIP/2.0/UDP ${hp};branch=${branch};rport`;
  }

  contact(peer: Address): string {
    const hp = formatHostPort(this.localHost(peer), this.transport.localAddress.port);
    return `<sip:${this.userName}@${hp}>`;
  }

  fromUri(peer: Address): string {
    const name = this.displayName ? quote(this.displayName) + " " : "";
    return `${name}<sip:${this.userName}@${formatHostPort(this.localHost(peer))}>`;
  }

  resolve(uri: SipUri): Address {
    const host = uri.params.maddr ?? uri.host;
    return { hostname: host.replace(/^\[|\]$/g, ""), port: uri.port ?? 5060 };
  }

  key(callId: string, localTag: string): string {
    return `${callId};${localTag}`;
  }

  register(call: Call): void {
    this.calls.set(this.key(call.callId, call.localTag), call);
  }

  /** Keeps an ended call findable for 64·T1 so that late retransmissions are still answered. */
  linger(call: Call): void {
    const t = this.clock.after(64 * this.layer.timers.T1, () => {
      this.lingering.delete(t);
      const k = this.key(call.callId, call.localTag);
      if (this.calls.get(k) === call) this.calls.delete(k);
    });
    this.lingering.add(t);
  }

  /** Sends a request in a new non-INVITE client transaction; resolves with the final response (undefined on timeout/error). */
  request(req: SipRequest, to: Address): Promise<SipResponse | undefined> {
    return new Promise((resolve) => {
      if (this.closed) return resolve(undefined);
      this.layer.sendRequest(req, to, {
        onResponse: (res) => {
          if (res.status >= 200) resolve(res);
        },
        onTimeout: () => resolve(undefined),
        onTransportError: () => resolve(undefined),
        onTerminated: () => resolve(undefined),
      });
    });
  }

  /** Sends a message outside any transaction (ACK for 2xx). */
  sendDirect(req: SipRequest, to: Address): void {
    this.transport.sendRequest(req, to).catch(() => {/* logged by the transport */});
  }
}

/**
 * A call (one INVITE dialog), outgoing or incoming. Listen with `on("progress" | "established" | "ended")`
 * or await the `established` / `ended` promises.
 */
export abstract class Call {
  /** `outgoing` (we sent the INVITE) or `incoming`. */
  abstract readonly direction: "outgoing" | "incoming";
  /** Call-ID. */
  readonly callId: string;
  /** Our tag (From tag when outgoing, To tag when incoming). */
  readonly localTag: string;
  /** The peer's tag, once known. */
  remoteTag?: string;
  /** Our URI header value (name-addr, without tag). */
  localUri: string;
  /** The peer's URI header value (name-addr, without tag). */
  remoteUri: string;
  /** The peer's Contact URI, once known. */
  remoteTarget?: string;
  /** The dialog, once it exists. */
  dialog?: Dialog;
  /** Current state. */
  state: CallState;
  /** Our SDP (offer or answer). */
  localSdp?: string;
  /** The peer's SDP (offer or answer). */
  remoteSdp?: string;
  /** Set when ended. */
  endInfo?: CallEndInfo;
  /** Resolves when the call is established; rejects with {@linkcode CallFailedError} if it ends first. */
  readonly established: Promise<EstablishedEvent>;
  /** Resolves when the call has ended (never rejects). */
  readonly ended: Promise<CallEndInfo>;

  readonly #core: Core;
  readonly #events = new Emitter<CallEvents>();
  #resolveEstablished!: (e: EstablishedEvent) => void;
  #rejectEstablished!: (e: Error) => void;
  #resolveEnded!: (e: CallEndInfo) => void;
  #byeDone?: Promise<void>;
  /** Timer that ends a cancelled call if the INVITE never gets its final response. */
  protected guardTimer?: Timer;

  /** @internal */
  constructor(
    core: Core,
    init: { callId: string; localTag: string; localUri: string; remoteUri: string; state: CallState },
  ) {
    this.#core = core;
    this.callId = init.callId;
    this.localTag = init.localTag;
    this.localUri = init.localUri;
    this.remoteUri = init.remoteUri;
    this.state = init.state;
    this.#events.onListenerError = (e, ev) => core.log.error(`call ${String(ev)} listener failed: ${errText(e)}`);
    this.established = new Promise((res, rej) => {
      this.#resolveEstablished = res;
      this.#rejectEstablished = rej;
    });
    this.established.catch(() => {}); // failure is also reported through "ended"; avoid unhandled rejections
    this.ended = new Promise((res) => (this.#resolveEnded = res));
  }

  /** Adds an event listener; returns a function that removes it. */
  on<K extends keyof CallEvents>(event: K, fn: (e: CallEvents[K]) => void): () => void {
    return this.#events.on(event, fn);
  }

  /** Adds a one-shot event listener; returns a function that removes it. */
  once<K extends keyof CallEvents>(event: K, fn: (e: CallEvents[K]) => void): () => void {
    return this.#events.once(event, fn);
  }

  /** Removes an event listener. */
  off<K extends keyof CallEvents>(event: K, fn: (e: CallEvents[K]) => void): void {
    this.#events.off(event, fn);
  }

  /**
   * The negotiated audio stream: where to send RTP/RTCP, codec, payload type and ptime,
   * from the peer's SDP and ours (see {@linkcode agreedMedia}). Available once both SDPs
   * are known (outgoing: at "established"; incoming: after `accept()`). Throws `SdpError`
   * when an SDP is missing or unusable.
   *
   * @param registry the codecs that exist: names are returned as registered, and payload
   *   types neither SDP maps are read as its static ones (default: our SDP's maps only)
   */
  media(registry?: CodecRegistry): NegotiatedAudio {
    if (this.remoteSdp === undefined || this.localSdp === undefined) {
      throw new SdpError(`SDP not negotiated yet (${this.remoteSdp === undefined ? "no remote SDP" : "no local SDP"})`);
    }
    return agreedMedia(this.remoteSdp, this.localSdp, { registry });
  }

  /** Log fields for this call. */
  protected get fields(): { call: string } {
    return { call: this.callId };
  }

  /** @internal */
  emitProgress(e: ProgressEvent): void {
    this.#events.emit("progress", e);
  }

  /** @internal Marks the call established and tells listeners. */
  markEstablished(sdp: string | undefined): void {
    if (this.state === "ended" || this.state === "established") return;
    this.state = "established";
    if (this.dialog) this.dialog.state = "confirmed";
    const ev: EstablishedEvent = sdp === undefined ? {} : { sdp };
    this.#resolveEstablished(ev);
    this.#events.emit("established", ev);
  }

  /** @internal Ends the call once. */
  end(info: CallEndInfo): void {
    if (this.state === "ended") return;
    const wasEstablished = this.state === "established";
    this.state = "ended";
    this.endInfo = info;
    if (this.dialog) this.dialog.state = "terminated";
    this.guardTimer?.cancel();
    this.#core.log.info(`call ended by ${info.by}: ${info.reason}`, this.fields);
    if (!wasEstablished) this.#rejectEstablished(new CallFailedError(info));
    this.#events.emit("ended", info);
    this.#resolveEnded(info);
    this.#core.linger(this);
  }

  /** Sends BYE in the dialog; resolves when its transaction finishes. */
  protected sendBye(reasonHeader?: string): Promise<void> {
    if (this.#byeDone) return this.#byeDone;
    const dialog = this.dialog!;
    const dest = this.#core.resolve(dialog.nextHop());
    const headers: [string, string][] = [["User-Agent", this.#core.userAgent]];
    if (reasonHeader) headers.push(["Reason", reasonHeader]);
    const { request } = dialog.createRequest("BYE", { via: this.#core.via(dest), headers });
    this.#core.log.info("BYE sent", this.fields);
    this.#byeDone = this.#core.request(request, dest).then((res) => {
      if (res) this.#core.log.debug(`BYE answered: ${res.status} ${res.reason}`, this.fields);
    });
    return this.#byeDone;
  }

  /**
   * Ends the call in whatever way its state requires: BYE when established (or
   * as soon as the ACK arrives for an incoming call being accepted); CANCEL for
   * an unanswered outgoing call; `603 Decline` for an unanswered incoming call.
   * Resolves when the BYE/CANCEL transaction is done (at once otherwise).
   */
  abstract hangup(): Promise<void>;

  /** Same as {@linkcode Call.hangup}: BYE when established, otherwise whatever ends the call in its state. */
  bye(): Promise<void> {
    return this.hangup();
  }

  /** @internal BYE from the peer. */
  receiveBye(req: SipRequest, tx: ServerTransaction): void {
    tx.respond(createResponse(req, 200, undefined, { headers: [["Server", this.#core.userAgent]] }));
    this.#core.log.info("BYE received", this.fields);
    this.onRemoteBye();
    this.end({ by: "remote", reason: "BYE" });
  }

  /** Hook for subclasses when a BYE arrives. */
  protected onRemoteBye(): void {}

  /** @internal A re-INVITE in the dialog: answered with our current SDP (no media change). */
  receiveReinvite(req: SipRequest, tx: ServerTransaction, from: Address): void {
    if (this.state !== "established" || !this.localSdp) {
      tx.respond(createResponse(req, 491, undefined, { headers: [["Server", this.#core.userAgent]] }));
      return;
    }
    const c = req.headers.get("Contact");
    if (c && c.trim() !== "*" && this.dialog) this.dialog.remoteTarget = formatUri(parseNameAddr(c).uri);
    this.#core.log.info("re-INVITE received, answering with the current SDP", this.fields);
    tx.respond(createResponse(req, 200, undefined, {
      headers: [
        ["Contact", this.#core.contact(from)],
        ["Allow", ALLOWED_METHODS.join(", ")],
        ["Server", this.#core.userAgent],
        ["Content-Type", "application/sdp"],
      ],
      body: this.localSdp,
    }));
  }

  /** @internal An ACK for a 2xx matched this call's dialog. */
  receiveAck(_ack: SipRequest): void {}
}

/** A call we placed with {@linkcode SipUserAgent.invite}. */
export class OutgoingCall extends Call {
  /** Always `outgoing`. */
  readonly direction = "outgoing" as const;
  /** The INVITE we sent. */
  readonly invite: SipRequest;
  /** Where it was sent. */
  readonly destination: Address;
  readonly #core: Core;
  #tx?: ClientTransaction;
  #ack?: SipRequest;
  #ackDest?: Address;
  #gotProvisional = false;
  #cancel: "none" | "pending" | "sent" = "none";
  readonly #ackSdp?: (offer: string) => string;

  /** @internal Use {@linkcode SipUserAgent.invite}. */
  constructor(core: Core, target: SipUri, toValue: string, opts: InviteOptions) {
    const dest = opts.proxy ?? core.resolve(target);
    const localTag = newTag();
    const callId = newCallId();
    const from = core.fromUri(dest);
    super(core, { callId, localTag, localUri: from, remoteUri: toValue, state: "calling" });
    this.#core = core;
    this.destination = dest;
    this.localSdp = opts.sdp;
    this.#ackSdp = opts.ackSdp;
    const h: [string, string][] = [
      ["Via", core.via(dest)],
      ["Max-Forwards", "70"],
      ["From", `${from};tag=${localTag}`],
      ["To", toValue],
      ["Call-ID", callId],
      ["CSeq", "1 INVITE"],
      ["Contact", core.contact(dest)],
      ["Allow", ALLOWED_METHODS.join(", ")],
      ["User-Agent", core.userAgent],
    ];
    for (const x of opts.headers ?? []) h.push([x[0], x[1]]);
    if (opts.sdp !== undefined) h.push(["Content-Type", "application/sdp"]);
    this.invite = createRequest({ method: "INVITE", uri: formatUri(target), headers: h, body: opts.sdp });
  }

  /** @internal */
  start(): void {
    this.#core.register(this);
    this.#core.log.info(`INVITE sent to ${this.invite.uri}`, this.fields);
    this.#tx = this.#core.layer.sendRequest(this.invite, this.destination, {
      onResponse: (res) => this.#onResponse(res),
      onTimeout: () => {
        if (this.#cancel !== "none") this.end({ by: "local", reason: "cancelled" });
        else this.end({ by: "timeout", reason: "no response to INVITE", status: 408 });
      },
      onTransportError: (_tx, e) => this.end({ by: "error", reason: `transport error: ${errText(e)}` }),
    });
  }

  #onResponse(res: SipResponse): void {
    const s = res.status;
    if (s < 200) {
      this.#gotProvisional = true;
      if (this.state === "calling" || this.state === "proceeding") {
        this.state = "proceeding";
        const tag = getTo(res).params.tag;
        if (tag && s > 100) this.remoteTag = tag;
        const body = res.body.length ? bodyText(res) : undefined;
        this.#core.log.info(`${s} ${res.reason}`, this.fields);
        this.emitProgress(
          body === undefined ? { status: s, reason: res.reason } : { status: s, reason: res.reason, sdp: body },
        );
      }
      if (this.#cancel === "pending") this.#sendCancel();
      return;
    }
    if (s < 300) {
      this.receiveOk(res);
      return;
    }
    this.#core.log.info(`${s} ${res.reason}`, this.fields);
    if (this.#cancel !== "none" && s === 487) this.end({ by: "local", reason: "cancelled", status: s });
    else this.end({ by: "remote", reason: `${s} ${res.reason}`, status: s });
  }

  /** @internal A 2xx to our INVITE: first one, retransmission, or another fork (also used for stray 2xx). */
  receiveOk(res: SipResponse): void {
    const tag = getTo(res).params.tag;
    if (this.dialog) {
      if (tag === this.dialog.remoteTag) {
        // Retransmitted 2xx: our ACK was lost.
        if (this.#ack && this.#ackDest) {
          this.#core.log.debug("200 OK retransmission, re-sending ACK", this.fields);
          this.#core.sendDirect(this.#ack, this.#ackDest);
        }
      } else {
        // A second fork answered: ACK and hang it up (RFC 3261 §13.2.2.4).
        this.#core.log.info("2xx from another fork, sending ACK and BYE", this.fields);
        const other = Dialog.fromUac(this.invite, res);
        const dest = this.#core.resolve(other.nextHop());
        this.#core.sendDirect(other.createAck(1, { via: this.#core.via(dest) }).request, dest);
        const bye = other.createRequest("BYE", { via: this.#core.via(dest) });
        void this.#core.request(bye.request, dest);
      }
      return;
    }
    if (!tag) {
      this.#core.log.warn(`${res.status} without To tag ignored`, this.fields);
      return;
    }
    this.dialog = Dialog.fromUac(this.invite, res);
    this.remoteTag = tag;
    this.remoteTarget = this.dialog.remoteTarget;
    this.#core.register(this);
    const body = res.body.length ? bodyText(res) : undefined;
    this.remoteSdp = body;
    let ackBody: string | undefined;
    if (this.localSdp === undefined && body !== undefined && this.#ackSdp) {
      try {
        ackBody = this.#ackSdp(body);
        this.localSdp = ackBody;
      } catch (e) {
        this.#core.log.warn(`cannot answer the offer in the 2xx: ${errText(e)}`, this.fields);
      }
    }
    const dest = this.#core.resolve(this.dialog.nextHop());
    const ack = this.dialog.createAck(getCSeq(this.invite).seq, {
      via: this.#core.via(dest),
      body: ackBody,
      contentType: ackBody !== undefined ? "application/sdp" : undefined,
    });
    this.#ack = ack.request;
    this.#ackDest = dest;
    this.#core.log.info(`${res.status} ${res.reason} received, sending ACK`, this.fields);
    this.#core.sendDirect(ack.request, dest);
    if (this.#cancel !== "none" || this.state === "ended") {
      // We wanted to cancel but the callee answered first: hang up at once.
      void this.sendBye();
      this.end({ by: "local", reason: "cancelled" });
      return;
    }
    this.markEstablished(body);
  }

  /**
   * Cancels the call if it is not answered yet. The CANCEL goes out once a
   * provisional response has arrived (RFC 3261 §9.1); the call ends with
   * `{by: "local", reason: "cancelled"}` on the 487 (or at once-answered: ACK + BYE).
   */
  cancel(): void {
    if ((this.state !== "calling" && this.state !== "proceeding") || this.#cancel !== "none") return;
    if (!this.#gotProvisional) {
      this.#cancel = "pending";
      this.#core.log.debug("CANCEL deferred until a provisional response arrives", this.fields);
      return;
    }
    this.#sendCancel();
  }

  #sendCancel(): void {
    if (this.#cancel === "sent" || this.state === "ended") return;
    this.#cancel = "sent";
    const inv = this.invite.headers;
    const h: [string, string][] = [["Via", inv.get("Via")!]];
    for (const r of inv.getAll("Route")) h.push(["Route", r]);
    h.push(["Max-Forwards", "70"], ["From", inv.get("From")!], ["To", inv.get("To")!], ["Call-ID", this.callId]);
    h.push(["CSeq", `${getCSeq(this.invite).seq} CANCEL`], ["User-Agent", this.#core.userAgent]);
    const cancel = createRequest({ method: "CANCEL", uri: this.invite.uri, headers: h });
    this.#core.log.info("CANCEL sent", this.fields);
    void this.#core.request(cancel, this.destination);
    // If no final response to the INVITE arrives within 64·T1, give up (RFC 3261 §9.1).
    this.guardTimer = this.#core.clock.after(64 * this.#core.layer.timers.T1, () => {
      this.#tx?.terminate();
      this.end({ by: "local", reason: "cancelled" });
    });
  }

  /** CANCEL before an answer, BYE after. */
  hangup(): Promise<void> {
    if (this.state === "established") {
      const done = this.sendBye();
      this.end({ by: "local", reason: "BYE" });
      return done;
    }
    if (this.state === "calling" || this.state === "proceeding") this.cancel();
    return Promise.resolve();
  }
}

/** A call we received; announced by {@linkcode SipUserAgent.onInvite}. */
export class IncomingCall extends Call {
  /** Always `incoming`. */
  readonly direction = "incoming" as const;
  /** The INVITE. */
  readonly request: SipRequest;
  /** Where the INVITE came from. */
  readonly source: Address;
  /** The SDP offer in the INVITE (undefined for a late-offer INVITE: then `accept()` must carry an offer). */
  readonly offer?: string;
  readonly #core: Core;
  readonly #tx: InviteServerTransaction;
  #byeAfterAck = false;

  /** @internal */
  constructor(core: Core, req: SipRequest, tx: InviteServerTransaction, from: Address) {
    const localTag = newTag();
    const dialog = Dialog.fromUas(req, localTag);
    super(core, {
      callId: dialog.callId,
      localTag,
      localUri: dialog.localUri,
      remoteUri: dialog.remoteUri,
      state: "incoming",
    });
    this.#core = core;
    this.request = req;
    this.source = from;
    this.#tx = tx;
    this.dialog = dialog;
    this.remoteTag = dialog.remoteTag || undefined;
    this.remoteTarget = dialog.remoteTarget;
    this.offer = req.body.length ? bodyText(req) : undefined;
    this.remoteSdp = this.offer;
    tx.user = {
      onTimeout: () => this.#noAck(),
      onTransportError: (_t, e) => this.end({ by: "error", reason: `transport error: ${errText(e)}` }),
    };
  }

  #respond(status: number, reason?: string, extra: [string, string][] = [], body?: string): void {
    const headers: [string, string][] = [];
    if (status > 100 && status < 300) {
      headers.push(["Contact", this.#core.contact(this.source)], ["Allow", ALLOWED_METHODS.join(", ")]);
    }
    headers.push(["Server", this.#core.userAgent], ...extra);
    if (body !== undefined) headers.push(["Content-Type", "application/sdp"]);
    this.#tx.respond(createResponse(this.request, status, reason, { toTag: this.localTag, headers, body }));
  }

  /** Sends `180 Ringing` (optionally with early-media SDP as 183 Session Progress when `sdp` is given). */
  ringing(sdp?: string): void {
    if (this.state !== "incoming" && this.state !== "ringing") return;
    this.state = "ringing";
    if (sdp !== undefined) {
      this.localSdp = sdp;
      this.#respond(183, undefined, [], sdp);
      this.#core.log.info("183 Session Progress sent", this.fields);
    } else {
      this.#respond(180);
      this.#core.log.info("180 Ringing sent", this.fields);
    }
  }

  /**
   * Answers with `200 OK` carrying `sdp` (the answer, or an offer for a late-offer INVITE).
   * The 200 is retransmitted until the ACK arrives (then "established"); without an ACK
   * within 64·T1 the call ends `{by: "timeout"}` and a BYE is sent.
   */
  accept(sdp: string): void {
    if (this.state !== "incoming" && this.state !== "ringing") return;
    this.state = "accepting";
    this.localSdp = sdp;
    this.#respond(200, undefined, [], sdp);
    this.#core.log.info("200 OK sent", this.fields);
  }

  /** Rejects the call with a final status (default `486 Busy Here`; e.g. 488 for no common codec, 603 Decline). */
  reject(status = 486, reason?: string): void {
    if (this.state !== "incoming" && this.state !== "ringing") return;
    if (status < 300 || status > 699) throw new RangeError(`reject needs a 3xx–6xx status, got ${status}`);
    this.#respond(status, reason);
    const phrase = this.#tx.lastResponse?.reason ?? "";
    this.#core.log.info(`${status} ${phrase} sent`, this.fields);
    this.end({ by: "local", reason: `${status} ${phrase}`, status });
  }

  /** @internal */
  override receiveAck(ack: SipRequest): void {
    if (this.state === "accepting") {
      this.dialog!.state = "confirmed";
      let sdp = this.offer;
      if (sdp === undefined && ack.body.length) {
        sdp = bodyText(ack);
        this.remoteSdp = sdp;
      }
      this.#core.log.info("ACK received, call established", this.fields);
      this.markEstablished(sdp);
    } else if (this.#byeAfterAck && this.state === "ended") {
      this.#byeAfterAck = false;
      void this.sendBye();
    }
  }

  /** @internal CANCEL for our INVITE. */
  receiveCancel(req: SipRequest, tx: ServerTransaction): void {
    tx.respond(createResponse(req, 200, undefined, { headers: [["Server", this.#core.userAgent]] }));
    this.#core.log.info("CANCEL received", this.fields);
    if (!this.#tx.finalSent && (this.state === "incoming" || this.state === "ringing")) {
      this.#respond(487);
      this.end({ by: "remote", reason: "CANCEL", status: 487 });
    }
  }

  /** Stops 2xx retransmission when a BYE overtakes the ACK. */
  protected override onRemoteBye(): void {
    this.#tx.stopRetransmitting();
  }

  #noAck(): void {
    if (this.#byeAfterAck) {
      this.#byeAfterAck = false;
      void this.sendBye();
      return;
    }
    if (this.state !== "accepting") return;
    this.#core.log.warn("no ACK for 200 OK, hanging up", this.fields);
    void this.sendBye('SIP;cause=408;text="ACK timeout"');
    this.end({ by: "timeout", reason: "no ACK for 200 OK" });
  }

  /** 603 Decline before answering; BYE after (deferred until the ACK while accepting). */
  hangup(): Promise<void> {
    switch (this.state) {
      case "incoming":
      case "ringing":
        this.reject(603);
        return Promise.resolve();
      case "accepting":
        // RFC 3261 §15: no BYE before the ACK (or Timer H); the call ends for the application now.
        this.#byeAfterAck = true;
        this.end({ by: "local", reason: "BYE" });
        return Promise.resolve();
      case "established": {
        const done = this.sendBye();
        this.end({ by: "local", reason: "BYE" });
        return done;
      }
      default:
        return Promise.resolve();
    }
  }
}

/**
 * A SIP user agent over UDP: places calls with {@linkcode SipUserAgent.invite},
 * announces incoming ones through {@linkcode SipUserAgent.onInvite}, answers
 * OPTIONS, and rejects what it does not support (405, 481, 415, 420, 480).
 *
 * @example
 * ```ts
 * const ua = new SipUserAgent({ hostname: "0.0.0.0", port: 5060, log: logger });
 * ua.onInvite((call) => call.reject(486));
 * // ...
 * await ua.close();
 * ```
 */
export class SipUserAgent {
  readonly #core: Core;
  readonly #events = new Emitter<UserAgentEvents>();
  readonly #incoming = new WeakMap<ServerTransaction, IncomingCall>();

  /**
   * Creates the user agent and binds its transport (a UDP socket unless `opts.transport` is given).
   * @param opts transport or bind address, clock, logger, identity, timers
   */
  constructor(opts: SipUserAgentOptions = {}) {
    const log = (opts.log ?? silentLogger).child("SIP");
    const dgram = opts.transport ?? new UdpTransport({ hostname: opts.hostname, port: opts.port, log });
    const transport = new SipTransport({ transport: dgram, log, parse: opts.parse });
    const layer = new TransactionLayer({
      sender: transport,
      clock: opts.clock ?? mediaClock(),
      timers: opts.timers,
      log,
    });
    transport.onRequest = (req, from) => layer.receiveRequest(req, from);
    transport.onResponse = (res, from) => layer.receiveResponse(res, from);
    layer.onRequest = (req, tx, from) => this.#onRequest(req, tx, from);
    layer.onStrayResponse = (res) => this.#onStrayResponse(res);
    this.#core = new Core(transport, layer, opts, log);
    this.#events.onListenerError = (e) => log.error(`invite listener failed: ${errText(e)}`);
  }

  /** The bound local address (port resolved when 0 was asked). */
  get localAddress(): Address {
    return this.#core.transport.localAddress;
  }

  /** Transport counters (malformed datagrams, 400s sent, ...). */
  get stats(): Readonly<SipTransportStats> {
    return this.#core.transport.stats;
  }

  /** Calls not ended yet. */
  get calls(): Call[] {
    return [...new Set(this.#core.calls.values())].filter((c) => c.state !== "ended");
  }

  /** The transaction layer (for tests and diagnostics). */
  get transactions(): TransactionLayer {
    return this.#core.layer;
  }

  /** Adds a UA event listener; returns a function that removes it. */
  on<K extends keyof UserAgentEvents>(event: K, fn: (e: UserAgentEvents[K]) => void): () => void {
    return this.#events.on(event, fn);
  }

  /** Removes a UA event listener. */
  off<K extends keyof UserAgentEvents>(event: K, fn: (e: UserAgentEvents[K]) => void): void {
    this.#events.off(event, fn);
  }

  /**
   * Registers a handler for incoming calls (same as `on("invite", handler)`);
   * returns a function that removes it. Without any handler, INVITEs get `480 Temporarily Unavailable`.
   */
  onInvite(handler: (call: IncomingCall) => void): () => void {
    return this.#events.on("invite", handler);
  }

  /**
   * Places a call. `target` is a SIP URI (`sip:bob@127.0.0.1:5062`), `bob@host`,
   * or a name-addr (`"Bob" <sip:bob@host>`). The request goes to the URI's host and
   * port (default 5060), or to `opts.proxy`.
   */
  invite(target: string, opts: InviteOptions = {}): OutgoingCall {
    if (this.#core.closed) throw new Error("user agent is closed");
    let uri: SipUri;
    let toValue: string;
    const t = target.trim();
    if (t.includes("<")) {
      const na = parseNameAddr(t);
      uri = na.uri;
      delete na.params.tag;
      toValue = t.replace(/;\s*tag\s*=\s*[^;]*/i, "");
    } else {
      uri = parseUri(/^sips?:/i.test(t) ? t : `sip:${t}`);
      toValue = `<${formatUri(uri)}>`;
    }
    const call = new OutgoingCall(this.#core, uri, toValue, opts);
    call.start();
    return call;
  }

  /** Sends OPTIONS to `target`; resolves with the final response, or undefined on timeout. */
  options(target: string): Promise<SipResponse | undefined> {
    const uri = parseUri(/^sips?:/i.test(target) ? target : `sip:${target}`);
    const core = this.#core;
    const dest = core.resolve(uri);
    const req = createRequest({
      method: "OPTIONS",
      uri: formatUri(uri),
      headers: [
        ["Via", core.via(dest)],
        ["Max-Forwards", "70"],
        ["From", `${core.fromUri(dest)};tag=${newTag()}`],
        ["To", `<${formatUri(uri)}>`],
        ["Call-ID", newCallId()],
        ["CSeq", "1 OPTIONS"],
        ["Contact", core.contact(dest)],
        ["Accept", "application/sdp"],
        ["User-Agent", core.userAgent],
      ],
    });
    return core.request(req, dest);
  }

  /** Finds the call an incoming in-dialog request or ACK belongs to (by Call-ID, To tag and From tag). */
  #callForRequest(req: SipRequest): Call | undefined {
    const toTag = getTo(req).params.tag;
    if (!toTag) return undefined;
    const call = this.#core.calls.get(this.#core.key(getCallId(req), toTag));
    if (!call) return undefined;
    const fromTag = getFrom(req).params.tag;
    if (call.remoteTag !== undefined && fromTag !== call.remoteTag) return undefined;
    return call;
  }

  #onRequest(req: SipRequest, tx: ServerTransaction | undefined, from: Address): void {
    const core = this.#core;
    if (req.method === "ACK") {
      this.#callForRequest(req)?.receiveAck(req);
      return;
    }
    if (!tx) return;
    if (core.closed) {
      tx.respond(createResponse(req, 503, undefined, { toTag: newTag() }));
      return;
    }
    const early = screenRequest(req, {
      allow: [...ALLOWED_METHODS],
      hasDialog: (r) => this.#callForRequest(r) !== undefined,
      headers: [["Server", core.userAgent]],
    });
    if (early) {
      if (early.status >= 300) {
        core.log.info(`${early.status} ${early.reason} sent for ${req.method}`, { call: getCallId(req) });
      }
      tx.respond(early);
      return;
    }
    const call = this.#callForRequest(req);
    switch (req.method) {
      case "CANCEL": {
        const ist = core.layer.matchCancel(req);
        const target = ist ? this.#incoming.get(ist) : undefined;
        if (!ist || !target) {
          tx.respond(createResponse(req, 481, undefined, { toTag: newTag() }));
          return;
        }
        target.receiveCancel(req, tx);
        return;
      }
      case "BYE":
        if (call && call.dialog && !call.dialog.acceptRemoteCSeq(req)) {
          tx.respond(createResponse(req, 500, "Server Internal Error (CSeq out of order)"));
          return;
        }
        call!.receiveBye(req, tx);
        return;
      case "INVITE":
        if (call) {
          if (call.dialog && !call.dialog.acceptRemoteCSeq(req)) {
            tx.respond(createResponse(req, 500, "Server Internal Error (CSeq out of order)"));
            return;
          }
          call.receiveReinvite(req, tx, from);
        } else this.#newCall(req, tx as InviteServerTransaction, from);
        return;
      default:
        tx.respond(createResponse(req, 501, undefined, { toTag: newTag() }));
    }
  }

  #newCall(req: SipRequest, tx: InviteServerTransaction, from: Address): void {
    const core = this.#core;
    tx.respond(createResponse(req, 100));
    const type = req.headers.get("Content-Type");
    if (req.body.length > 0 && (!type || !/^application\/sdp\s*(;|$)/i.test(type))) {
      tx.respond(createResponse(req, 415, undefined, { toTag: newTag(), headers: [["Accept", "application/sdp"]] }));
      core.log.info(`415 Unsupported Media Type sent (${type ?? "no Content-Type"})`, { call: getCallId(req) });
      return;
    }
    const call = new IncomingCall(core, req, tx, from);
    core.register(call);
    this.#incoming.set(tx, call);
    core.log.info(`INVITE received from ${formatUri(getFrom(req).uri)}`, { call: call.callId });
    if (this.#events.listenerCount("invite") === 0) {
      call.reject(480);
      return;
    }
    this.#events.emit("invite", call);
  }

  #onStrayResponse(res: SipResponse): void {
    const cseq = getCSeq(res);
    const tag = getFrom(res).params.tag;
    if (cseq.method === "INVITE" && res.status >= 200 && res.status < 300 && tag) {
      const call = this.#core.calls.get(this.#core.key(getCallId(res), tag));
      if (call instanceof OutgoingCall) {
        call.receiveOk(res);
        return;
      }
    }
    this.#core.log.debug(`stray response ${res.status} ${res.reason} (${cseq.method}) ignored`);
  }

  /**
   * Hangs up every call (one BYE/CANCEL each, not waiting for answers), stops
   * all timers and closes the transport. Calls still open end with `{by: "local"}`.
   */
  async close(): Promise<void> {
    const core = this.#core;
    if (core.closed) return;
    for (const call of this.calls) void call.hangup();
    core.closed = true;
    for (const call of this.calls) call.end({ by: "local", reason: "user agent closed" });
    core.layer.close();
    for (const t of core.lingering) t.cancel();
    core.lingering.clear();
    core.calls.clear();
    await core.transport.close();
  }
}

function errText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
