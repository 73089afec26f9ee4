/**
 * SIP transactions over UDP (RFC 3261 §17, with the Accepted states of RFC 6026):
 * INVITE and non-INVITE client and server transactions, their timers on an
 * injected {@linkcode Clock}, retransmission and absorption of retransmissions,
 * and the matching rules of §17.1.3 / §17.2.3.
 *
 * Retransmission schedules (T1 = 500 ms, T2 = 4 s, T4 = 5 s by default):
 * - INVITE client, Timer A: T1, 2·T1, 4·T1, … (doubling, not capped) until a
 *   response or Timer B (64·T1).
 * - non-INVITE client, Timer E: T1, 2·T1, … capped at T2 (T2 only, once a
 *   provisional response arrived) until a final response or Timer F (64·T1).
 * - INVITE server, Timer G: the final response (2xx too, here) again after T1,
 *   2·T1, … capped at T2, until an ACK or Timer H (64·T1).
 *
 * @module
 */
import type { Clock, Timer } from "../../core/clock.ts";
import { type Logger, silentLogger } from "../../core/log.ts";
import { sameAddress } from "../../core/net/address.ts";
import { errorReport } from "../../core/errors.ts";
import { SipParseError } from "./errors.ts";
import { MAGIC_COOKIE, newTag } from "./ids.ts";
import {
  createRequest,
  createResponse,
  getCallId,
  getCSeq,
  type SipMessage,
  type SipRequest,
  type SipResponse,
  tagOf,
  topVia,
} from "./message.ts";
import type { Address } from "./transport.ts";
import { formatHostPort } from "./syntax.ts";

/**
 * A client transaction's destination is known to be unreachable: an ICMP port
 * unreachable (or its simulation on a memory network) came back for what was
 * sent there. The transaction ends with it as a transport error (RFC 3261 §8.1.3.1).
 */
export class DestinationUnreachableError extends Error {
  /** The destination nothing listens on. */
  readonly to: Address;
  /**
   * Creates the error: the message is `<host:port> unreachable (ICMP port unreachable)`.
   * @param to the unreachable destination
   */
  constructor(to: Address) {
    super(`${formatHostPort(to.hostname, to.port)} unreachable (ICMP port unreachable)`);
    this.name = "DestinationUnreachableError";
    this.to = to;
  }
}

/** Base timer values, and optional overrides of the derived ones, in ms. */
export interface TimerSettings {
  /** RTT estimate (default 500). */
  T1: number;
  /** Maximum retransmit interval for non-INVITE requests and INVITE responses (default 4000). */
  T2: number;
  /** Maximum time a message stays in the network (default 5000). */
  T4: number;
  /** INVITE transaction timeout (default 64·T1). */
  B: number;
  /** Wait for response retransmissions in INVITE Completed (default 32 000, at least 32 s on UDP). */
  D: number;
  /** non-INVITE transaction timeout (default 64·T1). */
  F: number;
  /** Wait for ACK receipt (default 64·T1). */
  H: number;
  /** Wait for ACK retransmissions in Confirmed (default T4). */
  I: number;
  /** Wait for non-INVITE request retransmissions (default 64·T1). */
  J: number;
  /** Wait for response retransmissions in non-INVITE Completed (default T4). */
  K: number;
  /** INVITE server Accepted: absorb INVITE retransmissions (default 64·T1, RFC 6026). */
  L: number;
  /** INVITE client Accepted: pass 2xx retransmissions up (default 64·T1, RFC 6026). */
  M: number;
  /** Delay after which an INVITE server transaction sends 100 Trying by itself (default 200). */
  trying: number;
}

/**
 * Fills in RFC 3261 defaults.
 *
 * @example
 * ```ts
 * resolveTimers({ T1: 100 }).B; // 6400
 * ```
 */
export function resolveTimers(t: Partial<TimerSettings> = {}): TimerSettings {
  const T1 = t.T1 ?? 500;
  const T2 = t.T2 ?? 4000;
  const T4 = t.T4 ?? 5000;
  return {
    T1,
    T2,
    T4,
    B: t.B ?? 64 * T1,
    D: t.D ?? 32000,
    F: t.F ?? 64 * T1,
    H: t.H ?? 64 * T1,
    I: t.I ?? T4,
    J: t.J ?? 64 * T1,
    K: t.K ?? T4,
    L: t.L ?? 64 * T1,
    M: t.M ?? 64 * T1,
    trying: t.trying ?? 200,
  };
}

/** What transactions send through (implemented by {@linkcode SipTransport}). */
export interface MessageSender {
  /** Sends a request to an address. */
  sendRequest(req: SipRequest, to: Address): Promise<void>;
  /** Sends a response where its top Via says. */
  sendResponse(res: SipResponse): Promise<void>;
}

/** Client transaction states. */
export type ClientState = "calling" | "trying" | "proceeding" | "accepted" | "completed" | "terminated";
/** Server transaction states. */
export type ServerState = "trying" | "proceeding" | "accepted" | "completed" | "confirmed" | "terminated";

/** The transaction user (TU) of a client transaction. */
export interface ClientTransactionUser {
  /**
   * Each response passed up: provisional, final, and 2xx retransmissions of an
   * INVITE (Accepted state); `from` is where the datagram came from.
   */
  onResponse(res: SipResponse, tx: ClientTransaction, from: Address): void;
  /** Timer B or F fired before a final response. */
  onTimeout?(tx: ClientTransaction): void;
  /** The transport failed to send. */
  onTransportError?(tx: ClientTransaction, error: unknown): void;
  /** The transaction reached Terminated. */
  onTerminated?(tx: ClientTransaction): void;
}

/** The transaction user (TU) of a server transaction. */
export interface ServerTransactionUser {
  /** INVITE only: Timer H fired: no ACK arrived for the final response (2xx or not). */
  onTimeout?(tx: ServerTransaction): void;
  /** INVITE only: the ACK for a 2xx arrived (it is also passed to the layer's `onRequest`). */
  onAck?(ack: SipRequest, tx: ServerTransaction): void;
  /** The transport failed to send a response. */
  onTransportError?(tx: ServerTransaction, error: unknown): void;
  /** The transaction reached Terminated. */
  onTerminated?(tx: ServerTransaction): void;
}

/** What client and server transactions share: an id and named timers on the layer's clock. */
export abstract class Transaction {
  readonly #timers = new Map<string, Timer>();
  /** The layer that owns this transaction. */
  protected readonly layer: TransactionLayer;
  /** Transaction key used for matching. */
  readonly id: string;

  /** Creates the transaction state; the layer starts it. */
  constructor(layer: TransactionLayer, id: string) {
    this.layer = layer;
    this.id = id;
  }

  /** Starts (or restarts) the timer `name`. */
  protected startTimer(name: string, ms: number, fn: () => void): void {
    this.#timers.get(name)?.cancel();
    const t = this.layer.clock.after(ms, () => {
      if (this.#timers.get(name) !== t) return;
      this.#timers.delete(name);
      this.layer.guard(fn);
    });
    this.#timers.set(name, t);
  }

  /** Stops the named timers. */
  protected stopTimer(...names: string[]): void {
    for (const n of names) {
      this.#timers.get(n)?.cancel();
      this.#timers.delete(n);
    }
  }

  /** Stops every timer. */
  protected stopAllTimers(): void {
    for (const t of this.#timers.values()) t.cancel();
    this.#timers.clear();
  }

  /** Names of the timers currently running (for tests and debugging). */
  get activeTimers(): string[] {
    return [...this.#timers.keys()];
  }
}

/** A client transaction: sends a request and collects its responses. */
export abstract class ClientTransaction extends Transaction {
  /** The request. */
  readonly request: SipRequest;
  /** Where it is sent. */
  readonly destination: Address;
  /** The transaction user. */
  user: ClientTransactionUser;
  /** Current state. */
  abstract readonly state: ClientState;
  /** The last response received. */
  lastResponse?: SipResponse;

  /** Created by {@linkcode TransactionLayer.sendRequest}. */
  constructor(
    layer: TransactionLayer,
    id: string,
    request: SipRequest,
    destination: Address,
    user: ClientTransactionUser,
  ) {
    super(layer, id);
    this.request = request;
    this.destination = destination;
    this.user = user;
  }

  /** @internal Starts the transaction (first transmission). */
  abstract start(): void;
  /** @internal A response (from `from`) matched this transaction. */
  abstract receive(res: SipResponse, from: Address): void;

  /**
   * @internal The network says nothing listens at the destination: before any
   * response, the transaction ends with a {@linkcode DestinationUnreachableError}
   * (a transport error, RFC 3261 §8.1.3.1). Returns true when it ended.
   */
  unreachable(): boolean {
    if (this.lastResponse || this.state === "terminated") return false;
    this.transportError(new DestinationUnreachableError(this.destination));
    return true;
  }

  /** Sends the request (or `msg`, e.g. an ACK) to the destination. */
  protected transmit(msg: SipRequest = this.request): void {
    this.layer.sender.sendRequest(msg, this.destination).catch((e) => this.layer.guard(() => this.transportError(e)));
  }

  /** Handles a send failure: Terminated, and the TU is told. */
  protected transportError(e: unknown): void {
    if (this.state === "terminated") return;
    this.layer.log.warn(`transport error on ${this.request.method} transaction: ${e instanceof Error ? e.message : e}`);
    this.terminate();
    this.user.onTransportError?.(this, e);
  }

  /** Moves to Terminated at once, stopping all timers (used on shutdown). */
  abstract terminate(): void;

  /** Cleans up on entering Terminated. */
  protected finish(): void {
    this.stopAllTimers();
    this.layer.removeClient(this);
    this.user.onTerminated?.(this);
  }
}

/** INVITE client transaction (RFC 3261 §17.1.1, RFC 6026 §7.2). */
export class InviteClientTransaction extends ClientTransaction {
  #state: ClientState = "calling";
  #ack?: SipRequest;
  #interval = 0;

  /** Current state. */
  get state(): ClientState {
    return this.#state;
  }

  /** The ACK sent for a non-2xx final response, if any. */
  get ack(): SipRequest | undefined {
    return this.#ack;
  }

  /** @internal */
  start(): void {
    const t = this.layer.timers;
    this.transmit();
    this.#interval = t.T1;
    this.startTimer("A", this.#interval, () => this.#timerA());
    this.startTimer("B", t.B, () => {
      if (this.#state !== "calling") return;
      this.terminate();
      this.user.onTimeout?.(this);
    });
  }

  #timerA(): void {
    if (this.#state !== "calling") return;
    this.layer.log.debug(`retransmitting INVITE (Timer A, ${this.#interval} ms)`);
    this.transmit();
    this.#interval *= 2;
    this.startTimer("A", this.#interval, () => this.#timerA());
  }

  /** @internal */
  receive(res: SipResponse, from: Address): void {
    const s = res.status;
    switch (this.#state) {
      case "calling":
      case "proceeding":
        this.lastResponse = res;
        if (s < 200) {
          this.#state = "proceeding";
          this.stopTimer("A", "B");
        } else if (s < 300) {
          this.#state = "accepted";
          this.stopTimer("A", "B");
          this.startTimer("M", this.layer.timers.M, () => this.terminate());
        } else {
          this.#state = "completed";
          this.stopTimer("A", "B");
          this.#ack = buildAckForFinal(this.request, res);
          this.transmit(this.#ack);
          this.startTimer("D", this.layer.timers.D, () => this.terminate());
        }
        this.user.onResponse(res, this, from);
        return;
      case "accepted":
        // 2xx retransmissions (or 2xx from other forks) go to the TU, which ACKs them.
        if (s >= 200 && s < 300) this.user.onResponse(res, this, from);
        return;
      case "completed":
        if (s >= 300 && this.#ack) this.transmit(this.#ack);
        return;
      default:
        return;
    }
  }

  /** Moves to Terminated at once. */
  terminate(): void {
    if (this.#state === "terminated") return;
    this.#state = "terminated";
    this.finish();
  }
}

/** non-INVITE client transaction (RFC 3261 §17.1.2). */
export class NonInviteClientTransaction extends ClientTransaction {
  #state: ClientState = "trying";
  #interval = 0;

  /** Current state. */
  get state(): ClientState {
    return this.#state;
  }

  /** @internal */
  start(): void {
    const t = this.layer.timers;
    this.transmit();
    this.#interval = t.T1;
    this.startTimer("E", this.#interval, () => this.#timerE());
    this.startTimer("F", t.F, () => {
      if (this.#state !== "trying" && this.#state !== "proceeding") return;
      this.terminate();
      this.user.onTimeout?.(this);
    });
  }

  #timerE(): void {
    const T2 = this.layer.timers.T2;
    if (this.#state === "trying") this.#interval = Math.min(2 * this.#interval, T2);
    else if (this.#state === "proceeding") this.#interval = T2;
    else return;
    this.layer.log.debug(`retransmitting ${this.request.method} (Timer E)`);
    this.transmit();
    this.startTimer("E", this.#interval, () => this.#timerE());
  }

  /** @internal */
  receive(res: SipResponse, from: Address): void {
    if (this.#state !== "trying" && this.#state !== "proceeding") return; // Completed absorbs retransmissions
    this.lastResponse = res;
    if (res.status < 200) {
      this.#state = "proceeding";
    } else {
      this.#state = "completed";
      this.stopTimer("E", "F");
      this.startTimer("K", this.layer.timers.K, () => this.terminate());
    }
    this.user.onResponse(res, this, from);
  }

  /** Moves to Terminated at once. */
  terminate(): void {
    if (this.#state === "terminated") return;
    this.#state = "terminated";
    this.finish();
  }
}

/** A server transaction: receives a request and sends its responses. */
export abstract class ServerTransaction extends Transaction {
  /** The request that created the transaction. */
  readonly request: SipRequest;
  /** Where the request came from. */
  readonly source: Address;
  /** The transaction user. */
  user: ServerTransactionUser = {};
  /** Current state. */
  abstract readonly state: ServerState;
  /** The last response sent. */
  lastResponse?: SipResponse;
  /**
   * True for a {@linkcode StatelessServerTransaction}: created while the table
   * of server transactions was full, it sends its response once and keeps
   * nothing (no retransmission, no entry in the table).
   */
  get stateless(): boolean {
    return false;
  }

  /** Created by the {@linkcode TransactionLayer} for each new request. */
  constructor(layer: TransactionLayer, id: string, request: SipRequest, source: Address) {
    super(layer, id);
    this.request = request;
    this.source = source;
  }

  /** Sends a response (the TU calls this). Ignored once a final response was sent. */
  abstract respond(res: SipResponse): void;
  /** @internal A retransmission of the request arrived. */
  abstract retransmission(req: SipRequest): void;
  /** Moves to Terminated at once, stopping all timers (used on shutdown). */
  abstract terminate(): void;

  /** True once a final response has been sent. */
  get finalSent(): boolean {
    return (this.lastResponse?.status ?? 0) >= 200;
  }

  /**
   * Resolves once the latest response the TU gave (its first sending, not a retransmission) has been handed to the
   * network: true, or false when its send failed (or nothing was sent yet). Never rejects.
   */
  get lastResponseSent(): Promise<boolean> {
    return this.#lastSent ?? Promise.resolve(false);
  }
  #lastSent: Promise<boolean> | undefined;
  /** The response whose first sending {@linkcode lastResponseSent} follows. */
  #lastSentOf: SipResponse | undefined;

  /** Sends a response through the layer's sender. */
  protected send(res: SipResponse): void {
    const sent = this.layer.sender.sendResponse(res).then(() => true, (e) => {
      this.layer.guard(() => this.transportError(e));
      return false;
    });
    if (res !== this.#lastSentOf) {
      this.#lastSentOf = res;
      this.#lastSent = sent;
    }
  }

  /** Handles a send failure: Terminated, and the TU is told. */
  protected transportError(e: unknown): void {
    if (this.state === "terminated") return;
    this.layer.log.warn(
      `transport error on ${this.request.method} server transaction: ${e instanceof Error ? e.message : e}`,
    );
    this.terminate();
    this.user.onTransportError?.(this, e);
  }

  /** Cleans up on entering Terminated. */
  protected finish(): void {
    this.stopAllTimers();
    this.layer.removeServer(this);
    this.user.onTerminated?.(this);
  }
}

/**
 * INVITE server transaction (RFC 3261 §17.2.1). Unlike RFC 6026, the 2xx is
 * retransmitted here too, on Timer G until the ACK (matched by dialog: Call-ID,
 * CSeq and To tag) or Timer H, so the UAS core needs no timers of its own.
 */
export class InviteServerTransaction extends ServerTransaction {
  #state: ServerState = "proceeding";
  #interval = 0;
  /** True once the ACK for a 2xx arrived. */
  acked = false;

  /** Current state. */
  get state(): ServerState {
    return this.#state;
  }

  /**
   * @internal Called once the TU has seen the request: unless it has already responded (a UAS that rings or
   * answers at once, the usual case), the 100 Trying timer starts (a timer set and cancelled in the same turn would
   * still cost a wake of the clock).
   */
  start(): void {
    if (this.#state !== "proceeding" || this.lastResponse) return;
    this.startTimer("Trying", this.layer.timers.trying, () => {
      if (this.#state === "proceeding" && !this.lastResponse) {
        this.respond(createResponse(this.request, 100));
      }
    });
  }

  /** Sends a response: 1xx (stay in Proceeding), 2xx (Accepted), 300–699 (Completed). */
  respond(res: SipResponse): void {
    if (this.#state !== "proceeding") return;
    this.stopTimer("Trying");
    this.lastResponse = res;
    this.send(res);
    if (res.status < 200) return;
    const t = this.layer.timers;
    this.#interval = t.T1;
    this.startTimer("G", this.#interval, () => this.#timerG());
    if (res.status < 300) {
      this.#state = "accepted";
      this.layer.registerAccepted(this);
      if (t.L <= t.H) {
        // Timers H and L fall due together (the default, 64·T1 each): one timer does both. Timer H is "stopped" once
        // the ACK arrived (or retransmission stopped), which `acked` says.
        this.startTimer("L", t.H, () => {
          if (!this.acked) this.#timerH();
          else this.terminate();
        });
        return;
      }
      this.startTimer("H", t.H, () => this.#timerH());
      this.startTimer("L", t.L, () => this.terminate());
    } else {
      this.startTimer("H", t.H, () => this.#timerH());
      this.#state = "completed";
    }
  }

  /** Timer H: no ACK for the final response. */
  #timerH(): void {
    this.layer.log.debug(`no ACK for ${this.lastResponse!.status} (Timer H)`);
    this.terminate();
    this.user.onTimeout?.(this);
  }

  #timerG(): void {
    if (this.#state !== "completed" && !(this.#state === "accepted" && !this.acked)) return;
    this.layer.log.debug(`retransmitting ${this.lastResponse!.status} (Timer G, ${this.#interval} ms)`);
    this.send(this.lastResponse!);
    this.#interval = Math.min(2 * this.#interval, this.layer.timers.T2);
    this.startTimer("G", this.#interval, () => this.#timerG());
  }

  /** @internal */
  retransmission(_req: SipRequest): void {
    if (this.#state === "proceeding" || this.#state === "completed" || (this.#state === "accepted" && !this.acked)) {
      if (this.lastResponse) this.send(this.lastResponse);
    }
  }

  /** @internal The ACK for a non-2xx final response (same branch). */
  ackNon2xx(): void {
    if (this.#state !== "completed") return;
    this.#state = "confirmed";
    this.stopTimer("G", "H");
    this.startTimer("I", this.layer.timers.I, () => this.terminate());
  }

  /** @internal The ACK for the 2xx (new branch, matched by dialog). */
  ack2xx(ack: SipRequest): void {
    if (this.#state !== "accepted" || this.acked) return;
    this.acked = true;
    this.stopTimer("G", "H");
    this.user.onAck?.(ack, this);
  }

  /**
   * Stops retransmitting a 2xx without waiting for the ACK (e.g. the dialog was
   * ended by a BYE that overtook the ACK). INVITE retransmissions are still absorbed.
   */
  stopRetransmitting(): void {
    if (this.#state !== "accepted") return;
    this.acked = true;
    this.stopTimer("G", "H");
  }

  /** Moves to Terminated at once. */
  terminate(): void {
    if (this.#state === "terminated") return;
    this.#state = "terminated";
    try {
      this.layer.unregisterAccepted(this);
    } finally {
      this.finish(); // leaves the table whatever happened above: a transaction kept here would be kept forever
    }
  }
}

/**
 * non-INVITE server transaction (RFC 3261 §17.2.2). A TU that never sends a
 * final response (a handler whose promise never settles) does not keep it
 * forever: after 64·T1 — when the client has given up (Timer F) — it answers
 * `500 Server Internal Error (no answer in time)` and ends on Timer J.
 */
export class NonInviteServerTransaction extends ServerTransaction {
  #state: ServerState = "trying";

  /** Current state. */
  get state(): ServerState {
    return this.#state;
  }

  /**
   * @internal Called once the TU has seen the request: unless it has already sent a final response (the usual
   * case), starts the guard against a TU that never answers.
   */
  start(): void {
    if (this.#state !== "trying" && this.#state !== "proceeding") return;
    this.startTimer("TU", this.layer.timers.F, () => {
      if (this.#state !== "trying" && this.#state !== "proceeding") return;
      this.layer.log.warn(`no final response to ${this.request.method} within ${this.layer.timers.F} ms: 500 sent`);
      const toTag = tagOf(this.request.headers.get("To")) === undefined ? newTag() : undefined;
      this.respond(createResponse(this.request, 500, "Server Internal Error (no answer in time)", { toTag }));
    });
  }

  /** Sends a response: 1xx (Proceeding) or final (Completed, Timer J). */
  respond(res: SipResponse): void {
    if (this.#state !== "trying" && this.#state !== "proceeding") return;
    this.lastResponse = res;
    this.send(res);
    if (res.status < 200) {
      this.#state = "proceeding";
      return;
    }
    this.#state = "completed";
    this.stopTimer("TU");
    this.startTimer("J", this.layer.timers.J, () => this.terminate());
  }

  /** @internal */
  retransmission(_req: SipRequest): void {
    // Trying: absorbed silently; Proceeding/Completed: the last response again.
    if ((this.#state === "proceeding" || this.#state === "completed") && this.lastResponse) {
      this.send(this.lastResponse);
    }
  }

  /** Moves to Terminated at once. */
  terminate(): void {
    if (this.#state === "terminated") return;
    this.#state = "terminated";
    this.finish();
  }
}

/**
 * A request handled without keeping state (RFC 3261 §8.2.7 stateless UAS
 * behaviour): used for new requests outside any dialog while the server
 * transaction table is full (see `maxServerTransactions`), so that a flood
 * costs nothing beyond answering it. The first final response is sent once;
 * retransmissions of the request are handled again as new requests.
 */
export class StatelessServerTransaction extends ServerTransaction {
  #state: ServerState = "trying";

  /** Current state: `trying` until a final response is sent, then `terminated`. */
  get state(): ServerState {
    return this.#state;
  }

  /** Always true. */
  override get stateless(): boolean {
    return true;
  }

  /** Sends the response (provisional ones too); the first final one ends the transaction. */
  respond(res: SipResponse): void {
    if (this.#state === "terminated") return;
    this.lastResponse = res;
    this.send(res);
    if (res.status >= 200) this.#state = "terminated";
  }

  /** @internal Never called: a stateless transaction is not in the table. */
  retransmission(_req: SipRequest): void {}

  /** Moves to Terminated. */
  terminate(): void {
    this.#state = "terminated";
  }
}

/** Options of {@linkcode TransactionLayer}. */
export interface TransactionLayerOptions {
  /** Sends messages (normally a {@linkcode SipTransport}). */
  sender: MessageSender;
  /** Clock for all timers. */
  clock: Clock;
  /** Timer values. */
  timers?: Partial<TimerSettings>;
  /** Logger. */
  log?: Logger;
  /**
   * Most server transactions kept at once (default unlimited). Beyond it, a new
   * request outside any dialog (no To tag) gets a {@linkcode StatelessServerTransaction};
   * requests in a dialog (BYE, re-INVITE, CANCEL's INVITE) are always kept.
   */
  maxServerTransactions?: number;
  /** See {@linkcode TransactionLayer.refuse}. */
  refuse?: (req: SipRequest, from: Address) => SipResponse | undefined;
}

/**
 * The transaction layer: creates, matches and owns transactions.
 *
 * Incoming requests that match a server transaction are absorbed (the last
 * response is re-sent per state); an ACK for a non-2xx response completes its
 * INVITE transaction; everything else reaches `onRequest` — new requests with a
 * fresh server transaction, ACKs for 2xx (after stopping 2xx retransmission)
 * without one. Responses matching no client transaction reach `onStrayResponse`.
 *
 * What a datagram can cost is bounded here: a request whose top Via branch is
 * only the magic cookie gets `400` statelessly (RFC 4475 §3.2.1: every such
 * request would share one transaction); when `onRequest` throws for a new
 * request (a header that parsed but cannot be used, a failing handler), its
 * transaction gets a final response at once — `400 Bad Request (<reason>)` for
 * a `SipParseError`, `500` otherwise — so it ends with Timer J or H instead of
 * holding the request forever; and beyond `maxServerTransactions` new requests
 * outside a dialog are handled statelessly; `refuse` may answer a new request
 * statelessly before any transaction exists.
 *
 * @example
 * ```ts
 * const layer = new TransactionLayer({ sender: sipTransport, clock });
 * sipTransport.onRequest = (r, from) => layer.receiveRequest(r, from);
 * sipTransport.onResponse = (r, from) => layer.receiveResponse(r, from);
 * layer.onRequest = (req, tx) => tx?.respond(createResponse(req, 200));
 * layer.sendRequest(options, { hostname: "127.0.0.1", port: 5062 }, { onResponse: (res) => console.log(res.status) });
 * ```
 */
export class TransactionLayer {
  /** Sends messages. */
  readonly sender: MessageSender;
  /** Clock for timers. */
  readonly clock: Clock;
  /** Resolved timer values. */
  readonly timers: TimerSettings;
  /** Logger. */
  readonly log: Logger;
  /** New requests (with their server transaction) and ACKs for 2xx (without). */
  onRequest: (req: SipRequest, tx: ServerTransaction | undefined, from: Address) => void = () => {};
  /** Responses matching no client transaction. */
  onStrayResponse: (res: SipResponse, from: Address) => void = () => {};
  /**
   * Consulted for each new request outside a dialog (no To tag; not ACK)
   * before a transaction is created for it: a response returned is sent
   * statelessly and nothing is kept (the user agent refuses new INVITEs with
   * 503 this way while overloaded, so a flood costs no state).
   */
  refuse?: (req: SipRequest, from: Address) => SipResponse | undefined;
  /** Most server transactions kept at once (see {@linkcode TransactionLayerOptions.maxServerTransactions}). */
  maxServerTransactions: number;
  readonly #clients = new Map<string, ClientTransaction>();
  readonly #servers = new Map<string, ServerTransaction>();
  readonly #accepted = new Map<string, InviteServerTransaction>();
  #inviteServers = 0;

  /**
   * Creates an empty transaction layer.
   * @param opts sender, clock, timers, logger and table limit
   */
  constructor(opts: TransactionLayerOptions) {
    this.sender = opts.sender;
    this.clock = opts.clock;
    this.timers = resolveTimers(opts.timers);
    this.log = opts.log ?? silentLogger;
    this.maxServerTransactions = opts.maxServerTransactions ?? Infinity;
    this.refuse = opts.refuse;
  }

  /** Number of live client transactions. */
  get clientCount(): number {
    return this.#clients.size;
  }

  /** Number of live server transactions (stateless ones are not counted: they are not kept). */
  get serverCount(): number {
    return this.#servers.size;
  }

  /** Number of live INVITE server transactions. */
  get inviteServerCount(): number {
    return this.#inviteServers;
  }

  /** Number of INVITE server transactions in Accepted (2xx sent) that ACKs are matched against. */
  get acceptedCount(): number {
    return this.#accepted.size;
  }

  /** @internal Runs `fn`, logging instead of throwing. */
  guard(fn: () => void): void {
    try {
      fn();
    } catch (e) {
      // Its stack, unless it says no descriptor is left (reading the stack then makes Deno panic: errorReport).
      this.log.error(`transaction user failed: ${errorReport(e)}`);
    }
  }

  /**
   * Starts a client transaction for `req` (not ACK) towards `to`. The request
   * must carry a top Via with a unique branch.
   */
  sendRequest(req: SipRequest, to: Address, user: ClientTransactionUser): ClientTransaction {
    if (req.method === "ACK") throw new Error("ACK is not sent in a client transaction");
    const id = clientKey(topVia(req).params.branch ?? "", req.method);
    if (this.#clients.has(id)) throw new Error(`duplicate branch ${id}`);
    const tx = req.method === "INVITE"
      ? new InviteClientTransaction(this, id, req, to, user)
      : new NonInviteClientTransaction(this, id, req, to, user);
    this.#clients.set(id, tx);
    this.log.debug(`${req.method} to ${formatHostPort(to.hostname, to.port)} (client transaction ${id})`);
    tx.start();
    return tx;
  }

  /** Handles an incoming request (from the transport). */
  receiveRequest(req: SipRequest, from: Address): void {
    this.guard(() => {
      if (topVia(req).params.branch === MAGIC_COOKIE) {
        // RFC 4475 §3.2.1: a branch that is only the magic cookie would put every such request in one
        // transaction; answered without one.
        if (req.method !== "ACK") {
          this.#answerStatelessly(req, 400, `Bad Request (${BAD_BRANCH})`, from);
        }
        return;
      }
      const id = serverKey(req);
      const tx = this.#servers.get(id);
      if (req.method === "ACK") {
        if (tx instanceof InviteServerTransaction && (tx.state === "completed" || tx.state === "confirmed")) {
          tx.ackNon2xx();
          return;
        }
        const accepted = this.#accepted.get(acceptedKeyOfAck(req));
        if (accepted) accepted.ack2xx(req);
        this.onRequest(req, undefined, from);
        return;
      }
      if (tx) {
        tx.retransmission(req);
        return;
      }
      let st: ServerTransaction;
      const outOfDialog = tagOf(req.headers.get("To")) === undefined;
      if (outOfDialog && this.refuse) {
        const res = this.refuse(req, from);
        if (res) {
          this.sender.sendResponse(res).catch(() => {/* logged by the sender */});
          return;
        }
      }
      if (outOfDialog && this.#servers.size >= this.maxServerTransactions) {
        st = new StatelessServerTransaction(this, id, req, from);
      } else {
        const kept = req.method === "INVITE"
          ? new InviteServerTransaction(this, id, req, from)
          : new NonInviteServerTransaction(this, id, req, from);
        this.#servers.set(id, kept);
        if (kept instanceof InviteServerTransaction) this.#inviteServers++;
        st = kept;
      }
      try {
        this.onRequest(req, st, from);
      } catch (e) {
        this.#userFailed(st, e, from);
      }
      // Its timers start once the TU has seen the request: a TU that answered at once needs none of them.
      if (st instanceof InviteServerTransaction || st instanceof NonInviteServerTransaction) st.start();
    });
  }

  /**
   * The TU failed on a new request: unless it already sent a final response, the
   * transaction gets `400 Bad Request (<reason>)` (a header that parsed but
   * cannot be used) or `500 Server Internal Error`, so that it ends on its timers.
   */
  #userFailed(tx: ServerTransaction, e: unknown, from: Address): void {
    const req = tx.request;
    const where = formatHostPort(from.hostname, from.port);
    if (tx.finalSent || tx.state === "terminated") {
      this.log.error(`transaction user failed on ${req.method} from ${where}: ${errorLine(e)}`);
      return;
    }
    const bad = e instanceof SipParseError;
    const status = bad ? 400 : 500;
    const reason = bad ? `Bad Request (${e.reason})` : "Server Internal Error";
    const line = `${status} sent for ${req.method} from ${where}: ${errorLine(e)}`;
    if (bad) this.log.warn(line);
    else this.log.error(line);
    const toTag = tagOf(req.headers.get("To")) === undefined ? newTag() : undefined;
    tx.respond(createResponse(req, status, reason, { toTag }));
  }

  /** Sends a final response to `req` without any transaction. */
  #answerStatelessly(req: SipRequest, status: number, reason: string, from: Address): void {
    const toTag = tagOf(req.headers.get("To")) === undefined ? newTag() : undefined;
    this.log.debug(`${status} sent statelessly for ${req.method} from ${formatHostPort(from.hostname, from.port)}`);
    this.sender.sendResponse(createResponse(req, status, reason, { toTag })).catch(() => {/* logged by the sender */});
  }

  /**
   * The network says nothing listens at `to` (an ICMP port unreachable, or its
   * simulation): every client transaction sent there that has had no response
   * yet ends at once with a {@linkcode DestinationUnreachableError} (RFC 3261
   * §8.1.3.1). Returns how many ended.
   */
  unreachable(to: Address): number {
    let n = 0;
    for (const tx of [...this.#clients.values()]) {
      if (sameAddress(tx.destination, to) && tx.unreachable()) n++;
    }
    return n;
  }

  /** Handles an incoming response (from the transport). */
  receiveResponse(res: SipResponse, from: Address): void {
    this.guard(() => {
      const id = clientKey(topVia(res).params.branch ?? "", getCSeq(res).method);
      const tx = this.#clients.get(id);
      if (tx) tx.receive(res, from);
      else this.onStrayResponse(res, from);
    });
  }

  /** The INVITE server transaction a CANCEL refers to (same top Via branch and sent-by, RFC 3261 §9.2). */
  matchCancel(cancel: SipRequest): InviteServerTransaction | undefined {
    const tx = this.#servers.get(serverKey(cancel, "INVITE"));
    return tx instanceof InviteServerTransaction ? tx : undefined;
  }

  /** @internal */
  removeClient(tx: ClientTransaction): void {
    if (this.#clients.get(tx.id) === tx) this.#clients.delete(tx.id);
  }

  /** @internal */
  removeServer(tx: ServerTransaction): void {
    if (this.#servers.get(tx.id) !== tx) return;
    this.#servers.delete(tx.id);
    if (tx instanceof InviteServerTransaction) this.#inviteServers--;
  }

  /** @internal */
  registerAccepted(tx: InviteServerTransaction): void {
    this.#accepted.set(acceptedKeyOfResponse(tx.lastResponse!), tx);
  }

  /** @internal */
  unregisterAccepted(tx: InviteServerTransaction): void {
    if (!tx.lastResponse) return;
    const k = acceptedKeyOfResponse(tx.lastResponse);
    if (this.#accepted.get(k) === tx) this.#accepted.delete(k);
  }

  /** Terminates every transaction and cancels their timers. */
  close(): void {
    for (const tx of [...this.#clients.values()]) tx.terminate();
    for (const tx of [...this.#servers.values()]) tx.terminate();
    this.#accepted.clear();
  }
}

/** Reason of the 400 for a branch that is only the magic cookie (as `checkRequestSemantics` words it). */
const BAD_BRANCH = "Via branch is the magic cookie z9hG4bK without an identifier";

/** An error on one line, for a log. */
function errorLine(e: unknown): string {
  const text = e instanceof SipParseError ? e.reason : e instanceof Error ? e.message : String(e);
  // deno-lint-ignore no-control-regex -- control characters are what is replaced
  return text.slice(0, 300).replace(/[\x00-\x1f\x7f]/g, " ");
}

function clientKey(branch: string, method: string): string {
  return `${branch}|${method}`;
}

/** Server transaction key (RFC 3261 §17.2.3; RFC 2543 fallback when the branch lacks the magic cookie). */
function serverKey(req: SipRequest, methodOverride?: string): string {
  const via = topVia(req);
  const method = methodOverride ?? (req.method === "ACK" ? "INVITE" : req.method);
  const sentBy = `${via.host}:${via.port ?? ""}`;
  const branch = via.params.branch;
  if (branch && branch.startsWith(MAGIC_COOKIE)) return `${branch}|${sentBy}|${method}`;
  const fromTag = tagOf(req.headers.get("From")) ?? "";
  return `legacy|${getCallId(req)}|${fromTag}|${getCSeq(req).seq}|${sentBy}|${branch ?? ""}|${method}|${req.uri}`;
}

function acceptedKeyOfResponse(res: SipResponse): string {
  return `${getCallId(res)}|${getCSeq(res).seq}|${toTagKey(res.headers.get("To"))}`;
}

function acceptedKeyOfAck(ack: SipRequest): string {
  return `${getCallId(ack)}|${getCSeq(ack).seq}|${toTagKey(ack.headers.get("To"))}`;
}

/** The To tag of a key, never throwing: a To that does not parse is keyed by its text (it matches only itself). */
function toTagKey(to: string | undefined): string {
  try {
    return tagOf(to) ?? "";
  } catch {
    return `unparsed:${to}`;
  }
}

/**
 * The ACK for a non-2xx final response to an INVITE (RFC 3261 §17.1.1.3): same
 * Request-URI, Call-ID, From, CSeq number and top Via (branch) as the INVITE,
 * the To of the response, and the INVITE's Route headers.
 *
 * @example
 * ```ts
 * const ack = buildAckForFinal(invite, busyHere);
 * // ack.method === "ACK", same branch as the INVITE
 * ```
 */
export function buildAckForFinal(invite: SipRequest, res: SipMessage): SipRequest {
  const h: [string, string][] = [["Via", invite.headers.get("Via")!]];
  for (const v of invite.headers.getAll("Route")) h.push(["Route", v]);
  h.push(["Max-Forwards", "70"]);
  h.push(["From", invite.headers.get("From")!]);
  h.push(["To", res.headers.get("To")!]);
  h.push(["Call-ID", getCallId(invite)]);
  h.push(["CSeq", `${getCSeq(invite).seq} ACK`]);
  return createRequest({ method: "ACK", uri: invite.uri, headers: h });
}
