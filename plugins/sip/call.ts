/**
 * A call: one INVITE dialog as the application sees it — its state, events
 * (`progress`, `established`, `ended`) and promises, the SDPs, the negotiated
 * media, and hang-up. {@linkcode OutgoingCall} (`outgoing_call.ts`) and
 * {@linkcode IncomingCall} (`incoming_call.ts`) add the client and server
 * sides; the dispatcher reaches a call's entry points through the handle it
 * registers in the user agent's private context, never through public methods.
 *
 * The call's dialog owns the dialog state: the call reads the remote tag and
 * the remote target from it (never a copy) and changes it only through
 * {@linkcode Dialog} methods.
 *
 * Layer: user agent (imports context, client, dialog, transaction, message, sdp).
 *
 * @module
 */
import type { CodecRegistry } from "../../core/codec.ts";
import type { Timer } from "../../core/clock.ts";
import type { Dialog } from "./dialog.ts";
import { Emitter } from "./emitter.ts";
import { canonicalHost } from "../../core/net/address.ts";
import { bodyText, createResponse, type SipRequest, type SipResponse } from "./message.ts";
import { quote } from "./syntax.ts";
import { agreedMedia, type NegotiatedAudio, SdpError } from "./sdp.ts";
import type { ServerTransaction } from "./transaction.ts";
import type { Address } from "./transport.ts";
import { errText, type UaContext } from "./_context.ts";
import { sendRequest } from "./_client.ts";

/** Why and by whom a call ended. */
export interface CallEndInfo {
  /** `local`: we hung up, cancelled or rejected; `remote`: BYE, CANCEL or a final error response from the peer; `timeout`: no response / no ACK; `error`: transport or protocol failure. */
  by: "local" | "remote" | "timeout" | "error";
  /** Human-readable reason, e.g. `BYE`, `CANCEL`, `486 Busy Here`, `cancelled`. */
  reason: string;
  /** SIP status involved, when there is one. */
  status?: number;
  /**
   * Why a final 401/407 was not answered with credentials, when the
   * authenticator said (see `ChallengeContext.decline`); also in `reason`.
   */
  declined?: string;
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

/** What a {@linkcode Call} starts from. */
export interface CallInit {
  /** Call-ID. */
  callId: string;
  /** Our tag. */
  localTag: string;
  /** Our URI header value (name-addr, without tag). */
  localUri: string;
  /** The peer's URI header value (name-addr, without tag). */
  remoteUri: string;
  /** First state. */
  state: CallState;
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
  /** Our URI header value (name-addr, without tag). */
  readonly localUri: string;
  /** The peer's URI header value (name-addr, without tag). */
  readonly remoteUri: string;
  /** Resolves when the call is established; rejects with {@linkcode CallFailedError} if it ends first. */
  readonly established: Promise<EstablishedEvent>;
  /** Resolves when the call has ended (never rejects). */
  readonly ended: Promise<CallEndInfo>;
  readonly #ctx: UaContext;
  readonly #events = new Emitter<CallEvents>();
  #state: CallState;
  #dialog?: Dialog;
  #earlyRemoteTag?: string;
  #localSdp?: string;
  #remoteSdp?: string;
  /** The last {@linkcode Call.media} result and what it was computed from (the SDPs rarely change). */
  #agreed?: { remote: string; local: string; registry: CodecRegistry | undefined; media: NegotiatedAudio };
  #endInfo?: CallEndInfo;
  #resolveEstablished!: (e: EstablishedEvent) => void;
  #rejectEstablished!: (e: Error) => void;
  #resolveEnded!: (e: CallEndInfo) => void;
  #byeDone?: Promise<void>;
  #guard?: Timer;
  #peer?: Address;

  /**
   * Creates the call and registers its entry points with the user agent.
   * @param ctx the user agent's shared state
   * @param init identity and first state
   */
  protected constructor(ctx: UaContext, init: CallInit) {
    this.#ctx = ctx;
    this.callId = init.callId;
    this.localTag = init.localTag;
    this.localUri = init.localUri;
    this.remoteUri = init.remoteUri;
    this.#state = init.state;
    this.#events.onListenerError = (e, ev) => ctx.log.error(`call ${String(ev)} listener failed: ${errText(e)}`);
    this.established = new Promise((res, rej) => {
      this.#resolveEstablished = res;
      this.#rejectEstablished = rej;
    });
    this.established.catch(() => {}); // failure is also reported through "ended"; avoid unhandled rejections
    this.ended = new Promise((res) => (this.#resolveEnded = res));
    ctx.bindCall(this, {
      receiveAck: (ack) => this.onAck(ack),
      receiveBye: (req, tx) => this.onBye(req, tx),
      receiveReinvite: (req, tx, from) => this.onReinvite(req, tx, from),
      receiveCancel: (req, tx) => this.onCancel(req, tx),
      receiveOk: (res, from) => this.onOk(res, from),
      shutdown: () => {
        this.#guard?.cancel();
        this.end({ by: "local", reason: "user agent closed" });
      },
    });
  }

  /** Current state. */
  get state(): CallState {
    return this.#state;
  }

  /** The dialog, once it exists (incoming: from the INVITE; outgoing: from the 2xx). */
  get dialog(): Dialog | undefined {
    return this.#dialog;
  }

  /** The peer's tag, once known (from the dialog, or from a provisional response before it). */
  get remoteTag(): string | undefined {
    return this.#dialog ? this.#dialog.remoteTag || undefined : this.#earlyRemoteTag;
  }

  /** The peer's current Contact URI (the dialog's remote target; it follows target refreshes). */
  get remoteTarget(): string | undefined {
    return this.#dialog?.remoteTarget;
  }

  /** Our SDP (offer or answer). */
  get localSdp(): string | undefined {
    return this.#localSdp;
  }

  /** The peer's SDP (offer or answer). */
  get remoteSdp(): string | undefined {
    return this.#remoteSdp;
  }

  /** How the call ended; set once ended. */
  get endInfo(): CallEndInfo | undefined {
    return this.#endInfo;
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
    if (this.#remoteSdp === undefined || this.#localSdp === undefined) {
      throw new SdpError(
        `SDP not negotiated yet (${this.#remoteSdp === undefined ? "no remote SDP" : "no local SDP"})`,
      );
    }
    return this.#agree(this.#remoteSdp, this.#localSdp, registry);
  }

  /**
   * What {@linkcode media} will return once `localSdp` is our SDP (an answer not sent yet), read now: an incoming
   * call's answer can be refused before it is sent. Throws as `media` does; without the peer's SDP, `SdpError`.
   *
   * @param localSdp the SDP we would send
   * @param registry as for {@linkcode media}
   */
  mediaWith(localSdp: string, registry?: CodecRegistry): NegotiatedAudio {
    if (this.#remoteSdp === undefined) throw new SdpError("SDP not negotiated yet (no remote SDP)");
    return this.#agree(this.#remoteSdp, localSdp, registry);
  }

  /** The audio two SDPs agree on, read once per pair (a call asks several times while it starts); a copy each time. */
  #agree(remote: string, local: string, registry: CodecRegistry | undefined): NegotiatedAudio {
    const a = this.#agreed;
    let media: NegotiatedAudio;
    if (a && a.remote === remote && a.local === local && a.registry === registry) media = a.media;
    else {
      media = agreedMedia(remote, local, { registry });
      this.#agreed = { remote, local, registry, media };
    }
    return media.dtmf ? { ...media, dtmf: { ...media.dtmf } } : { ...media };
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

  /** Log fields for this call. */
  protected get fields(): { call: string } {
    return { call: this.callId };
  }

  /**
   * Runs `fn` after `ms` unless the call has ended by then (e.g. a cancelled
   * call whose INVITE never gets its final response). One guard at a time.
   */
  protected guard(ms: number, fn: () => void): void {
    this.#guard?.cancel();
    this.#guard = this.#ctx.clock.after(ms, fn);
  }

  /** Moves to `state` (subclasses drive the state machine; `ended` only through {@linkcode Call.end}). */
  protected setState(state: Exclude<CallState, "ended" | "established">): void {
    this.#state = state;
  }

  /** Sets the dialog once it exists. */
  protected attachDialog(dialog: Dialog): void {
    this.#dialog = dialog;
  }

  /**
   * Records where the peer's dialog-forming message came from (the INVITE's
   * source, or the 2xx's): in-dialog requests go there when the dialog's next
   * hop is a host name, which is never resolved.
   */
  protected setPeerAddress(a: Address): void {
    this.#peer = a;
  }

  /**
   * Where requests in `dialog` (this call's by default) go: its next hop when
   * that is an IP address, else the peer's address (see {@linkcode Call.setPeerAddress}).
   */
  protected hopOf(dialog: Dialog = this.#dialog!, fallback: Address = this.#peer!): Address {
    return this.#ctx.hopAddress(() => dialog.nextHop(), fallback);
  }

  /** Records the peer's tag from a provisional response, before any dialog exists (undefined clears it). */
  protected setEarlyRemoteTag(tag: string | undefined): void {
    this.#earlyRemoteTag = tag;
  }

  /** Records our SDP. */
  protected setLocalSdp(sdp: string | undefined): void {
    this.#localSdp = sdp;
  }

  /** Records the peer's SDP. */
  protected setRemoteSdp(sdp: string | undefined): void {
    this.#remoteSdp = sdp;
  }

  /** Tells `progress` listeners. */
  protected emitProgress(e: ProgressEvent): void {
    this.#events.emit("progress", e);
  }

  /** Marks the call established (its dialog confirmed) and tells listeners. */
  protected markEstablished(sdp: string | undefined): void {
    if (this.#state === "ended" || this.#state === "established") return;
    this.#state = "established";
    this.#dialog?.confirm();
    const ev: EstablishedEvent = sdp === undefined ? {} : { sdp };
    this.#resolveEstablished(ev);
    this.#events.emit("established", ev);
  }

  /** Ends the call once: the dialog is terminated, listeners and promises are told. */
  protected end(info: CallEndInfo): void {
    if (this.#state === "ended") return;
    const wasEstablished = this.#state === "established";
    this.#state = "ended";
    this.#endInfo = info;
    this.#dialog?.terminate();
    this.#guard?.cancel();
    this.#ctx.log.info(`call ended by ${info.by}: ${info.reason}`, this.fields);
    if (!wasEstablished) this.#rejectEstablished(new CallFailedError(info));
    this.#events.emit("ended", info);
    this.#resolveEnded(info);
  }

  /**
   * Sends BYE in the dialog, to its current remote target (or first route);
   * resolves when its transaction finishes. A 401/407 is answered through the
   * authenticator, with the dialog's next CSeq.
   */
  protected sendBye(reasonHeader?: string): Promise<void> {
    if (this.#byeDone) return this.#byeDone;
    const dialog = this.#dialog!;
    const dest = this.hopOf(dialog);
    const headers: [string, string][] = [["User-Agent", this.#ctx.build.userAgent]];
    if (reasonHeader) headers.push(["Reason", reasonHeader]);
    const { request } = dialog.createRequest("BYE", { via: this.#ctx.build.via(dest), headers });
    this.#ctx.log.info("BYE sent", this.fields);
    this.#byeDone = sendRequest(this.#ctx, request, dest, { nextCSeq: () => dialog.nextLocalSeq() }).then((res) => {
      if (res) this.#ctx.log.debug(`BYE answered: ${res.status} ${res.reason}`, this.fields);
    });
    return this.#byeDone;
  }

  /** An ACK matched this call's dialog. */
  protected onAck(_ack: SipRequest): void {}

  /** BYE from the peer: 200, then the call ends `{by: "remote", reason: "BYE"}`. */
  protected onBye(req: SipRequest, tx: ServerTransaction): void {
    tx.respond(createResponse(req, 200, undefined, { headers: [["Server", this.#ctx.build.userAgent]] }));
    this.#ctx.log.info("BYE received", this.fields);
    this.onRemoteBye();
    this.end({ by: "remote", reason: "BYE" });
  }

  /** Hook for subclasses when a BYE arrives. */
  protected onRemoteBye(): void {}

  /**
   * A re-INVITE in the dialog (RFC 3261 §14.2): the call does not change its media mid-call, so an offer that
   * would change them (the peer's address or ports, codec, payload type, ptime, direction, telephone-event, the
   * number of streams) or that the call cannot use gets `488` (`400` when malformed) with a `Warning`, and the
   * session goes on unchanged; an offer that changes none of that (a session refresh) and a re-INVITE without an
   * offer are answered `200` with our current SDP (the same, version included: nothing changed, RFC 3264 §8),
   * and the dialog takes the re-INVITE's Contact as its remote target. `491` before the call is established.
   */
  protected onReinvite(req: SipRequest, tx: ServerTransaction, from: Address): void {
    const server: [string, string] = ["Server", this.#ctx.build.userAgent];
    if (this.#state !== "established" || !this.#localSdp || !this.#dialog) {
      tx.respond(createResponse(req, 491, undefined, { headers: [server] }));
      return;
    }
    const problem = req.body.length ? this.#reofferProblem(bodyText(req), this.#localSdp) : undefined;
    if (problem) {
      this.#ctx.log.info(`re-INVITE refused: ${problem.status} (${problem.detail})`, this.fields);
      const phrase = problem.status === 400 ? "Bad Request" : "Not Acceptable Here";
      tx.respond(createResponse(req, problem.status, `${phrase} (${problem.detail})`, {
        headers: [["Warning", `399 voxpipe ${quote(problem.detail)}`], server],
      }));
      return;
    }
    try {
      if (this.#dialog.refreshTarget(req)) {
        this.#ctx.log.info(`remote target is now ${this.#dialog.remoteTarget}`, this.fields);
      }
    } catch (e) {
      tx.respond(createResponse(req, 400, `Bad Request (${errText(e)})`, { headers: [server] }));
      return;
    }
    this.#ctx.log.info("re-INVITE received, answering with the current SDP", this.fields);
    tx.respond(createResponse(req, 200, undefined, {
      headers: [
        ["Contact", this.#ctx.build.contact(from)],
        ["Allow", this.#ctx.allowHeader],
        server,
        ["Content-Type", "application/sdp"],
      ],
      body: this.#localSdp,
    }));
  }

  /**
   * Why the peer's new `offer` cannot be answered with our current SDP `local` (the status and what is wrong), or
   * undefined when it asks for exactly the media the call has: the same streams, and the same agreed audio read the
   * same way ({@linkcode agreedMedia} on the SDPs of the call and on the offer with our SDP).
   */
  #reofferProblem(offer: string, local: string): { status: number; detail: string } | undefined {
    let next: NegotiatedAudio;
    try {
      next = agreedMedia(offer, local);
    } catch (e) {
      return { status: e instanceof SdpError ? e.status : 488, detail: errText(e) };
    }
    let now: NegotiatedAudio;
    try {
      now = agreedMedia(this.#remoteSdp ?? "", local);
    } catch (e) {
      return { status: 488, detail: `the call's media cannot be read (${errText(e)})` };
    }
    const streams = (sdp: string) => sdp.match(/^m=/gm)?.length ?? 0;
    if (streams(offer) !== streams(local)) {
      return { status: 488, detail: `${streams(offer)} media streams offered, the call has ${streams(local)}` };
    }
    const changed: string[] = [];
    if (canonicalHost(next.remoteAddress) !== canonicalHost(now.remoteAddress)) {
      changed.push(`address ${now.remoteAddress} -> ${next.remoteAddress}`);
    }
    if (next.remotePort !== now.remotePort) changed.push(`RTP port ${now.remotePort} -> ${next.remotePort}`);
    if (next.remoteRtcpPort !== now.remoteRtcpPort) {
      changed.push(`RTCP port ${now.remoteRtcpPort} -> ${next.remoteRtcpPort}`);
    }
    if (next.codec !== now.codec || next.payloadType !== now.payloadType) {
      changed.push(`codec ${now.codec}/${now.payloadType} -> ${next.codec}/${next.payloadType}`);
    }
    if (next.ptime !== now.ptime) changed.push(`ptime ${now.ptime} -> ${next.ptime}`);
    if (next.direction !== now.direction) changed.push(`direction ${now.direction} -> ${next.direction}`);
    if (next.dtmf?.payloadType !== now.dtmf?.payloadType) changed.push("telephone-event");
    if (changed.length === 0) return undefined;
    return { status: 488, detail: `media changes mid-call are not supported: ${changed.join(", ")}` };
  }

  /** A CANCEL for this call's INVITE (incoming calls override). */
  protected onCancel(req: SipRequest, tx: ServerTransaction): void {
    tx.respond(createResponse(req, 481, undefined, { headers: [["Server", this.#ctx.build.userAgent]] }));
  }

  /** A 2xx to this call's INVITE outside its transaction, from `from` (outgoing calls override). */
  protected onOk(_res: SipResponse, _from: Address): void {}
}
