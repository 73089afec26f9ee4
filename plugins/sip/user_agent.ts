/**
 * The SIP user agent facade: places and receives calls over UDP (RFC 3261 §8,
 * §12–§15), queries with OPTIONS, registers bindings and hands REGISTER
 * requests to a registrar handler. It wires the layers (transport →
 * transactions → dispatcher) and delegates: requests are built by the request
 * builder, outgoing calls and other client requests run on the client side,
 * incoming calls on the server side, and the dispatcher routes what arrives.
 * This is the API the SIP control plugin drives.
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
 * Layer: user agent, top (imports every file of the user agent below it).
 *
 * @module
 */
import { type Clock, mediaClock } from "../../core/clock.ts";
import { type Logger, silentLogger } from "../../core/log.ts";
import type { Authenticator } from "./auth.ts";
import type { Call } from "./call.ts";
import { Emitter } from "./emitter.ts";
import type { IncomingCall } from "./incoming_call.ts";
import type { ParseOptions, SipResponse } from "./message.ts";
import { type InviteOptions, OutgoingCall } from "./outgoing_call.ts";
import type { RegisterOptions, RegistrarHandler, Registration } from "./register.ts";
import { type TimerSettings, TransactionLayer } from "./transaction.ts";
import {
  type Address,
  type DatagramTransport,
  type SipMessageEvent,
  SipTransport,
  type SipTransportStats,
} from "./transport.ts";
import type { Network } from "../../core/net/datagram.ts";
import { udpNetwork } from "../../core/net/udp.ts";
import { formatUri, parseNameAddr, parseUri, type SipUri } from "./uri.ts";
import { errText, type OutboundProxy, UaContext, USER_AGENT } from "./_context.ts";
import { register, sendRequest, userUri } from "./_client.ts";
import { type KeepRegisteredOptions, RegistrationKeeper } from "./registration_keeper.ts";
import { type SipTracer, TracingTransport } from "./trace.ts";
import { Dispatcher } from "./_dispatcher.ts";
import { overloadLimits, OverloadMonitor, type OverloadOptions } from "./_overload.ts";
import { destinationOf, RequestBuilder } from "./_request_builder.ts";

export type { OverloadOptions } from "./_overload.ts";

export { ALLOWED_METHODS, USER_AGENT } from "./_context.ts";

/** Options of {@linkcode SipUserAgent}. */
export interface SipUserAgentOptions {
  /**
   * The datagram socket to use (tests inject one of a `MemoryNetwork`); the
   * user agent owns it from now on. Without it, one is bound on `net`.
   */
  transport?: DatagramTransport;
  /** Network to bind on when no transport is given (default: real UDP). */
  net?: Network;
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
  /**
   * Answers 401/407 challenges to any request we send (INVITE, BYE, OPTIONS,
   * REGISTER; not CANCEL): when it returns a credentials header, the request is
   * re-sent with CSeq + 1 and that header, to the same next hop (which it is
   * told: `ChallengeContext`). Without it, a 401/407 is final.
   */
  authenticator?: Authenticator;
  /**
   * A loose-routing outbound proxy (RFC 3261 §8.1.2), e.g. `sip:proxy.example.com:5060`:
   * every out-of-dialog request (INVITE, REGISTER, OPTIONS) is sent to it with
   * `Route: <sip:proxy.example.com:5060;lr>`; in-dialog requests follow the
   * dialog's route set. A request's own `proxy` address overrides it.
   */
  outboundProxy?: string;
  /**
   * Our address-of-record, put in From of out-of-dialog requests (e.g.
   * `sip:alice@example.com`; default `sip:<userName>@<local address>`).
   */
  aor?: string;
  /**
   * Receives every datagram sent and received, with time and addresses
   * (`formatTraceEvent` makes the text of `--sip-trace`).
   */
  trace?: SipTracer;
  /**
   * Receives every well-formed SIP message sent and received, parsed, with the
   * peer's address (see `SipTransport.onMessage`): what a call's message ladder
   * is drawn from.
   */
  onMessage?: (e: SipMessageEvent) => void;
  /**
   * When a new INVITE gets `100 Trying` (RFC 3261 §17.2.1): `"at-once"` (default), as soon as it arrives, for an
   * application that may take a while to ring or answer (a B2BUA forwarding the call, say); `"when-slow"`, only when no
   * other response went out within 200 ms (the transaction's own timer), for an application that rings or answers
   * at once, like the `sip` control: one message fewer per call.
   */
  trying?: "at-once" | "when-slow";
  /**
   * Overload protection (default: on, with its defaults): above an event-loop
   * lag, a number of server transactions or of calls, new INVITEs get
   * `503 Service Unavailable` with `Retry-After`, sent statelessly (a refused
   * INVITE costs no state), while calls in progress, OPTIONS and in-dialog
   * requests are served; the transaction table is capped (beyond it, requests
   * outside a dialog are answered statelessly). `false` turns it off (no lag
   * sampling, no cap).
   */
  overload?: OverloadOptions | false;
  /**
   * Allow host names in the destinations the application gives (`invite`,
   * `options`, a proxy); the system resolves them when sending (default false:
   * such a destination is refused with an error). Host names taken from the
   * network (Via, Contact, Record-Route, Request-URI) are never resolved either
   * way: responses go where RFC 3261 §18.2.2 / RFC 3581 say, at the packet's
   * source IP, and in-dialog requests whose next hop is a name go to the address
   * the peer's messages came from.
   */
  resolveNames?: boolean;
  /**
   * Send in-dialog requests (ACK for a 2xx, BYE, re-INVITE) to the address the
   * peer's dialog-forming message came from (its INVITE, or its 2xx), not to
   * its Contact (default false). A server whose peers are phones behind NAT
   * needs this: their Contact names a private address, while their messages
   * arrive from the NAT's public one (what Kamailio's `fix_nated_contact`
   * does). Responses always go to the request's source.
   */
  dialogToSource?: boolean;
}

/** What a user agent holds now: its tables and load (see {@linkcode SipUserAgent.usage}). */
export interface UserAgentUsage {
  /** Server transactions in the table. */
  serverTransactions: number;
  /** Of which INVITE server transactions. */
  inviteServerTransactions: number;
  /** Client transactions in the table. */
  clientTransactions: number;
  /** INVITE server transactions in Accepted, matched against ACKs. */
  acceptedTransactions: number;
  /** Calls in the table: not ended, or ended and lingering (64·T1) for late retransmissions. */
  calls: number;
  /** Calls not ended. */
  liveCalls: number;
  /** Dialogs of those calls not terminated. */
  dialogs: number;
  /** Event-loop lag estimate, ms (0 with overload protection off). */
  lagMs: number;
  /** Why new INVITEs are refused with 503 now, or undefined. */
  overloaded?: string;
  /** New INVITEs refused with 503 for overload so far. */
  refused: number;
}

/** Events of a {@linkcode SipUserAgent}. */
export interface UserAgentEvents {
  /** A new incoming call. Call `ringing()`, `accept()` or `reject()` on it. */
  invite: IncomingCall;
}

/**
 * A SIP user agent over UDP: places calls with {@linkcode SipUserAgent.invite},
 * announces incoming ones through {@linkcode SipUserAgent.onInvite}, answers
 * OPTIONS, registers with {@linkcode SipUserAgent.register}, passes REGISTER
 * requests to a handler set with {@linkcode SipUserAgent.onRegister}, and
 * rejects what it does not support (405, 481, 415, 420, 480) and merged
 * requests (482 to a copy of an INVITE on another branch, RFC 3261 §8.2.2.2).
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
  readonly #ctx: UaContext;
  readonly #dispatcher: Dispatcher;
  readonly #events = new Emitter<UserAgentEvents>();
  readonly #keepers = new Set<RegistrationKeeper>();

  /**
   * Creates the user agent and binds its transport (a UDP socket unless `opts.transport` is given).
   * @param opts transport or bind address, clock, logger, identity, timers, authenticator
   */
  constructor(opts: SipUserAgentOptions = {}) {
    const log = (opts.log ?? silentLogger).child("SIP");
    const limits = opts.overload === false ? undefined : overloadLimits(opts.overload);
    const outbound = opts.outboundProxy === undefined ? undefined : outboundProxyOf(opts.outboundProxy);
    const aor = opts.aor === undefined ? undefined : userUri(opts.aor, "aor", "sip:alice@example.com");
    let dgram = opts.transport ?? (opts.net ?? udpNetwork).bind(opts.hostname ?? "0.0.0.0", opts.port ?? 5060);
    if (opts.trace) dgram = new TracingTransport(dgram, opts.trace);
    const transport = new SipTransport({
      transport: dgram,
      log,
      parse: opts.parse,
      resolveNames: opts.resolveNames,
      onMessage: opts.onMessage,
    });
    const clock = opts.clock ?? mediaClock();
    const layer = new TransactionLayer({
      sender: transport,
      clock,
      timers: opts.timers,
      log,
      maxServerTransactions: limits?.maxTransactions,
    });
    const build = new RequestBuilder({
      userName: opts.userName ?? "voxpipe",
      displayName: opts.displayName,
      userAgent: opts.userAgent ?? USER_AGENT,
      contactHost: opts.contactHost,
      aor: aor === undefined ? undefined : formatUri(aor),
      localAddress: () => transport.localAddress,
    });
    const overload = limits
      ? new OverloadMonitor(
        clock,
        log,
        {
          tableFull: () => layer.serverCount >= layer.maxServerTransactions,
          liveCalls: () => this.#dispatcher.liveCount,
        },
        limits,
        opts.overload ? opts.overload.openFiles : undefined,
      )
      : undefined;
    this.#ctx = new UaContext({
      transport,
      layer,
      log,
      build,
      authenticator: opts.authenticator,
      outbound,
      overload,
      resolveNames: opts.resolveNames,
      dialogToSource: opts.dialogToSource,
      tryingAtOnce: opts.trying !== "when-slow",
    });
    if (outbound) this.#ctx.checkDestination(outbound.address); // an outbound proxy named by a host name
    this.#dispatcher = new Dispatcher(this.#ctx, (call) => {
      if (this.#events.listenerCount("invite") === 0) return "nobody";
      return this.#events.emit("invite", call) > 0 ? "failed" : "offered";
    });
    transport.onRequest = (req, from) => layer.receiveRequest(req, from);
    transport.onResponse = (res, from) => layer.receiveResponse(res, from);
    transport.onUnreachable = (to) => layer.unreachable(to);
    overload?.start();
    layer.onRequest = (req, tx, from) => this.#dispatcher.onRequest(req, tx, from);
    layer.onStrayResponse = (res, from) => this.#dispatcher.onStrayResponse(res, from);
    if (overload) layer.refuse = (req) => this.#dispatcher.refuse(req);
    this.#events.onListenerError = (e) => log.error(`invite listener failed: ${errText(e)}`);
  }

  /** The bound local address (port resolved when 0 was asked). */
  get localAddress(): Address {
    return this.#ctx.transport.localAddress;
  }

  /** Transport counters (malformed datagrams, 400s sent, ...). */
  get stats(): Readonly<SipTransportStats> {
    return this.#ctx.transport.stats;
  }

  /** Calls not ended yet. */
  get calls(): Call[] {
    return this.#dispatcher.liveCalls;
  }

  /** The transaction layer (for tests and diagnostics). */
  get transactions(): TransactionLayer {
    return this.#ctx.layer;
  }

  /**
   * Room for a call about to be placed with {@linkcode invite}, before it binds its sockets and opens its recording:
   * the reason to refuse it when it would leave fewer file descriptors than the overload protection keeps free
   * (`overload.minFreeFiles`, 64; the reason says the figures and `raise the limit (ulimit -n)`), as an INVITE coming
   * in gets 503 then; else a function to call once the call is placed (or has failed). Until then it counts in the
   * estimate, so that calls placed together are counted before their sockets exist.
   *
   * @example
   * ```ts
   * const slot = ua.placeCall();
   * if (typeof slot === "string") throw new Error(`cannot call now: ${slot}`);
   * try {
   *   ua.invite("sip:bob@127.0.0.1:5062", { sdp: offer });
   * } finally {
   *   slot();
   * }
   * ```
   */
  placeCall(): string | (() => void) {
    return this.#ctx.overload?.placeCall() ?? (() => {});
  }

  /**
   * What the user agent holds now — transactions, calls, dialogs — and its
   * load (lag, overload), for diagnostics and for tests that check nothing is
   * kept after a flood.
   */
  get usage(): UserAgentUsage {
    const layer = this.#ctx.layer;
    const tracked = this.#dispatcher.tracked;
    const o = this.#ctx.overload;
    const out: UserAgentUsage = {
      serverTransactions: layer.serverCount,
      inviteServerTransactions: layer.inviteServerCount,
      clientTransactions: layer.clientCount,
      acceptedTransactions: layer.acceptedCount,
      calls: tracked.length,
      liveCalls: this.#dispatcher.liveCount,
      dialogs: tracked.filter((c) => c.dialog !== undefined && c.dialog.state !== "terminated").length,
      lagMs: o?.lagMs ?? 0,
      refused: o?.refused ?? 0,
    };
    const why = o?.reason;
    if (why !== undefined) out.overloaded = why;
    return out;
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
   * port (default 5060), or to `opts.proxy`. Throws when that is a host name and
   * `resolveNames` is off.
   */
  invite(target: string, opts: InviteOptions = {}): OutgoingCall {
    if (this.#ctx.closed) throw new Error("user agent is closed");
    let uri: SipUri;
    let toValue: string;
    const t = target.trim();
    if (t.includes("<")) {
      const na = parseNameAddr(t);
      uri = na.uri;
      toValue = t.replace(/;\s*tag\s*=\s*[^;]*/i, "");
    } else {
      uri = parseUri(/^sips?:/i.test(t) ? t : `sip:${t}`);
      toValue = `<${formatUri(uri)}>`;
    }
    // Where the INVITE really goes (a proxy, the outbound proxy, or the target): no host name there.
    const { dest } = this.#ctx.routeTo(uri, opts.proxy);
    this.#ctx.checkDestination(dest, dest === opts.proxy ? undefined : uri);
    const call = new OutgoingCall(this.#ctx, uri, toValue, opts);
    this.#dispatcher.track(call);
    call.start();
    return call;
  }

  /**
   * Sends OPTIONS to `target`; resolves with the final response, or undefined on
   * timeout. Throws when the target's host is a name and `resolveNames` is off.
   */
  options(target: string): Promise<SipResponse | undefined> {
    const uri = parseUri(/^sips?:/i.test(target) ? target : `sip:${target}`);
    const { dest, routes } = this.#ctx.routeTo(uri);
    this.#ctx.checkDestination(dest, uri);
    return sendRequest(this.#ctx, this.#ctx.build.options(uri, dest, routes), dest);
  }

  /**
   * Registers `opts.contact` (default: our own Contact) for the address-of-record
   * `opts.aor` at `opts.registrar` (RFC 3261 §10.2), answering 401/407 through
   * the authenticator. Resolves with the {@linkcode Registration} (the 2xx, the
   * granted expiry, `unregister()`); rejects with `RegistrationError` on a
   * failure response or no response. A `423 Interval Too Brief` is answered
   * once with its `Min-Expires`. It does not refresh the binding by itself: call
   * `refresh()` on the registration before `expires` runs out, or use
   * {@linkcode SipUserAgent.keepRegistered}.
   *
   * @example
   * ```ts
   * const reg = await ua.register({ registrar: "sip:10.0.0.2", aor: "sip:alice@example.com", expires: 600 });
   * await reg.unregister();
   * ```
   */
  register(opts: RegisterOptions): Promise<Registration> {
    return register(this.#ctx, opts);
  }

  /**
   * Keeps a binding registered (see {@linkcode RegistrationKeeper}): registers
   * at once, refreshes before expiry (min(expires/2, expires − 5 s)) with the
   * same Call-ID, registers again after failures with a doubling backoff, and
   * unregisters on `stop()`. Closing the user agent stops it without
   * unregistering (call `stop()` first for that).
   *
   * @example
   * ```ts
   * const keeper = ua.keepRegistered({ registrar: "sip:10.0.0.2", aor: "sip:alice@example.com", expires: 600 });
   * const reg = await keeper.ready; // rejects with RegistrationError when the first REGISTER fails
   * await keeper.stop(); // Expires: 0
   * ```
   */
  keepRegistered(opts: KeepRegisteredOptions): RegistrationKeeper {
    if (this.#ctx.closed) throw new Error("user agent is closed");
    const { retryMs, retryMaxMs, ...registerOptions } = opts;
    // Bad options throw here, not later in the first attempt.
    userUri(registerOptions.registrar, "keepRegistered: registrar", "sip:example.com");
    userUri(registerOptions.aor, "keepRegistered: aor", "sip:alice@example.com");
    const keeper = new RegistrationKeeper(
      () => register(this.#ctx, registerOptions),
      this.#ctx.clock,
      this.#ctx.log,
      { retryMs, retryMaxMs },
    );
    this.#keepers.add(keeper);
    return keeper;
  }

  /**
   * Sets the handler that answers REGISTER requests (a registrar); while one is
   * set, REGISTER is allowed (and listed in `Allow`). Returns a function that
   * removes it; without a handler, REGISTER gets `405 Method Not Allowed`.
   * Throws when a handler is already set.
   *
   * @example
   * ```ts
   * const bindings = new Map<string, string[]>();
   * ua.onRegister((r) => {
   *   bindings.set(r.aor, r.contacts.map((c) => c.uri));
   *   return { status: 200, contacts: r.contacts.map((c) => ({ uri: c.uri, expires: Math.min(c.expires ?? r.expires ?? 3600, 600) })) };
   * });
   * ```
   */
  onRegister(handler: RegistrarHandler): () => void {
    if (typeof handler !== "function") throw new TypeError("onRegister needs a function (req) => reply");
    if (this.#dispatcher.registrar) {
      throw new Error("a registrar handler is already set: remove it first (call the function onRegister returned)");
    }
    this.#dispatcher.registrar = handler;
    return () => {
      if (this.#dispatcher.registrar === handler) this.#dispatcher.registrar = undefined;
    };
  }

  /**
   * Hangs up every call (one BYE/CANCEL each, not waiting for answers), stops
   * all timers and closes the transport. Calls still open end with `{by: "local"}`.
   */
  async close(): Promise<void> {
    const ctx = this.#ctx;
    if (ctx.closed) return;
    for (const call of this.calls) void call.hangup();
    const keepers = [...this.#keepers].map((k) => k.stop({ unregister: false }));
    ctx.closed = true;
    ctx.overload?.stop();
    for (const call of this.calls) ctx.handleOf(call).shutdown();
    ctx.layer.close();
    this.#dispatcher.clear();
    await Promise.all(keepers);
    await ctx.transport.close();
  }
}

/** The outbound proxy of a URI given by the user: its address, and a Route value with `lr`. */
function outboundProxyOf(text: string): OutboundProxy {
  const uri = userUri(text, "outboundProxy", "sip:proxy.example.com:5060");
  const route = formatUri({ ...uri, user: undefined, password: undefined, params: { ...uri.params, lr: null } });
  return { route: `<${route}>`, address: destinationOf(uri) };
}
