/**
 * Private: what one user agent's parts share — transport, transaction layer,
 * clock, logger, request builder, authenticator, the methods it allows — and
 * the handles through which the dispatcher drives calls (their entry points
 * stay off the public `Call` classes).
 *
 * Layer: user agent (imports transport, transaction, dialog, message).
 *
 * @module
 */
import type { Clock } from "../../core/clock.ts";
import type { Logger } from "../../core/log.ts";
import { canonicalHost, isLoopbackAddress, neverADestination } from "../../core/net/address.ts";
import type { Authenticator } from "./auth.ts";
import type { SipRequest, SipResponse } from "./message.ts";
import type { OverloadMonitor } from "./_overload.ts";
import { destinationOf, type RequestBuilder } from "./_request_builder.ts";
import { isIpAddress } from "./syntax.ts";
import type { ServerTransaction, TransactionLayer } from "./transaction.ts";
import type { Address, SipTransport } from "./transport.ts";
import { formatUri, type SipUri } from "./uri.ts";

/** Methods the user agent always implements (sent in `Allow`). */
export const ALLOWED_METHODS: readonly string[] = ["INVITE", "ACK", "BYE", "CANCEL", "OPTIONS"];

/** Default `User-Agent` / `Server` value. */
export const USER_AGENT = "voxpipe/0.1";

/** The entry points of a call that the dispatcher drives. */
export interface CallHandle {
  /** An ACK matched the call's dialog. */
  receiveAck(ack: SipRequest): void;
  /** A BYE in the call's dialog (CSeq already checked). */
  receiveBye(req: SipRequest, tx: ServerTransaction): void;
  /** A re-INVITE in the call's dialog (CSeq already checked). */
  receiveReinvite(req: SipRequest, tx: ServerTransaction, from: Address): void;
  /** A CANCEL for the call's INVITE (incoming calls). */
  receiveCancel(req: SipRequest, tx: ServerTransaction): void;
  /** A 2xx to the call's INVITE that matched no transaction (outgoing calls), from `from`. */
  receiveOk(res: SipResponse, from: Address): void;
  /** The user agent is closing (it already sent the hang-up): end `{by: "local", reason: "user agent closed"}`. */
  shutdown(): void;
}

/** A loose-routing outbound proxy (RFC 3261 §8.1.2): where out-of-dialog requests go, and their Route. */
export interface OutboundProxy {
  /** The Route value: `<sip:host:port;lr>`. */
  route: string;
  /** Where the requests are sent. */
  address: Address;
}

/** What builds a {@linkcode UaContext}. */
export interface UaContextInit {
  /** Parsed-message transport. */
  transport: SipTransport;
  /** Transaction layer on top of it. */
  layer: TransactionLayer;
  /** Logger (tagged `[SIP]`). */
  log: Logger;
  /** Request builder. */
  build: RequestBuilder;
  /** Optional answer to 401/407 challenges. */
  authenticator?: Authenticator;
  /** Outbound proxy for out-of-dialog requests, if any. */
  outbound?: OutboundProxy;
  /** Overload protection (new INVITEs refused with 503), when enabled. */
  overload?: OverloadMonitor;
  /** True when destinations the application gives may be host names (resolved by the system). */
  resolveNames?: boolean;
  /** True when in-dialog requests go where the peer's dialog-forming message came from (peers behind NAT). */
  dialogToSource?: boolean;
  /** False when a new INVITE gets 100 Trying only if nothing else went out within 200 ms (default true: at once). */
  tryingAtOnce?: boolean;
}

/** The state one user agent's calls, clients, dispatcher and facade share. */
export class UaContext {
  /** Parsed-message transport. */
  readonly transport: SipTransport;
  /** Transaction layer. */
  readonly layer: TransactionLayer;
  /** Clock of every SIP timer (the transaction layer's). */
  readonly clock: Clock;
  /** Logger. */
  readonly log: Logger;
  /** Builds out-of-dialog requests. */
  readonly build: RequestBuilder;
  /** Answers 401/407 challenges, when set. */
  readonly authenticator?: Authenticator;
  /** Outbound proxy for out-of-dialog requests, when set. */
  readonly outbound?: OutboundProxy;
  /** Overload protection, when enabled. */
  readonly overload?: OverloadMonitor;
  /** True when destinations the application gives may be host names. */
  readonly resolveNames: boolean;
  /** True when in-dialog requests go to the address the peer's dialog-forming message came from. */
  readonly dialogToSource: boolean;
  /** True when a new INVITE gets 100 Trying as soon as it arrives; false: only from the transaction's 200 ms timer. */
  readonly tryingAtOnce: boolean;
  /** True once the user agent is closing. */
  closed = false;
  readonly #extraMethods = new Set<string>();
  readonly #handles = new WeakMap<object, CallHandle>();

  /**
   * Creates the context.
   * @param init transport, transactions, logger, builder, authenticator
   */
  constructor(init: UaContextInit) {
    this.transport = init.transport;
    this.layer = init.layer;
    this.clock = init.layer.clock;
    this.log = init.log;
    this.build = init.build;
    this.authenticator = init.authenticator;
    this.outbound = init.outbound;
    this.overload = init.overload;
    this.resolveNames = init.resolveNames ?? false;
    this.dialogToSource = init.dialogToSource ?? false;
    this.tryingAtOnce = init.tryingAtOnce ?? true;
  }

  /**
   * Where an out-of-dialog request to `target` goes and the Route it carries:
   * `proxy` when given (no Route), else the outbound proxy (with its Route),
   * else the target's own host:port.
   */
  routeTo(target: SipUri, proxy?: Address): { dest: Address; routes: string[] } {
    if (proxy) return { dest: proxy, routes: [] };
    if (this.outbound) return { dest: this.outbound.address, routes: [this.outbound.route] };
    return { dest: destinationOf(target), routes: [] };
  }

  /**
   * Checks a destination the application chose (a call's target, an OPTIONS
   * target, an outbound proxy): a host name there is refused unless
   * `resolveNames` is on, since sending to it would make the system resolve it.
   * Throws an Error saying what to do; returns `dest`.
   */
  checkDestination(dest: Address, uri?: SipUri): Address {
    if (this.resolveNames || isIpAddress(dest.hostname)) return dest;
    const what = uri ? `${formatUri(uri)}: its next hop` : "destination";
    throw new Error(
      `${what} ${dest.hostname} is a host name, and host names are not resolved: use an IP address ` +
        "(or allow resolution: the user agent's resolveNames option, the sip control's resolve_names: true)",
    );
  }

  /**
   * Where an in-dialog request goes (RFC 3261 §12.2.1.1, §18.1.1 without DNS):
   * the next hop's `maddr` or host when it is an IP address, at its port
   * (default 5060). A host name there came from the network (Contact,
   * Record-Route) and is never resolved: the request goes to `fallback`, the
   * address the peer's dialog-forming message came from. So does an address
   * that is never a destination (unspecified, multicast, broadcast: see
   * `neverADestination`), and a loopback address unless `fallback` is one too
   * (a remote peer naming 127.0.0.1 would have us send to this host's own
   * services). An unreadable next hop goes there too. With `dialogToSource`,
   * every in-dialog request goes to `fallback` (a peer behind NAT advertises a
   * private Contact).
   */
  hopAddress(nextHop: () => SipUri, fallback: Address): Address {
    if (this.dialogToSource) return fallback;
    let uri: SipUri;
    try {
      uri = nextHop();
    } catch {
      return fallback;
    }
    const host = (uri.params.maddr ?? uri.host).replace(/^\[|\]$/g, "");
    if (!isIpAddress(host) || neverADestination(host) !== undefined) return fallback;
    if (isLoopbackAddress(canonicalHost(host)) && !isLoopbackAddress(canonicalHost(fallback.hostname))) return fallback;
    return { hostname: host, port: uri.port ?? 5060 };
  }

  /** Methods accepted now: {@linkcode ALLOWED_METHODS} plus those enabled (REGISTER with a registrar handler). */
  get allowed(): string[] {
    return [...ALLOWED_METHODS, ...this.#extraMethods];
  }

  /** The `Allow` header value. */
  get allowHeader(): string {
    return this.allowed.join(", ");
  }

  /** Accepts (or stops accepting) `method` beyond the built-in ones. */
  allow(method: string, on: boolean): void {
    if (on) this.#extraMethods.add(method);
    else this.#extraMethods.delete(method);
  }

  /** Records the entry points of `call` (called by the call's constructor). */
  bindCall(call: object, handle: CallHandle): void {
    this.#handles.set(call, handle);
  }

  /** The entry points of `call`. */
  handleOf(call: object): CallHandle {
    const h = this.#handles.get(call);
    if (!h) throw new Error("not a call of this user agent");
    return h;
  }

  /** Sends a message outside any transaction (the ACK for a 2xx). */
  sendDirect(req: SipRequest, to: Address): void {
    this.transport.sendRequest(req, to).catch(() => {/* logged by the transport */});
  }
}

/** The message of an error, or its text. */
export function errText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
