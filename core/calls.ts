/**
 * The call service: what a control plugin that owns calls (SIP today) offers
 * to the components that drive or watch them — a WebSocket bridge, the
 * browser console, an application embedding voxpipe — without them knowing
 * the signalling protocol. Calls are named by an id the service chooses; each
 * call's media lives in its {@linkcode Session}, whose buses carry its audio
 * in and out (`from-call`: what the peer says, as decoded pcm; `to-call`:
 * what to send to the peer, pcm), when the pipeline file's templates connect
 * them.
 *
 * @example
 * ```ts
 * const off = service.onEvent((e) => console.log(e.type, e.call.id, e.call.state));
 * const call = await service.dial("sip:bob@127.0.0.1:5062");
 * await service.hangup(call.id);
 * off();
 * ```
 *
 * @module
 */
import type { MediaStats, Session } from "./session.ts";

/** Where a call stands. */
export type CallPhase = "dialing" | "ringing" | "answered" | "ended";

/** A call as the service shows it. */
export interface CallInfo {
  /** The service's id of the call (stable for its life; safe in a file name). */
  id: string;
  /** `in`: the peer called us; `out`: we placed it. */
  direction: "in" | "out";
  /** Where it stands. */
  state: CallPhase;
  /** The peer (e.g. its SIP URI). */
  remote: string;
  /** Our side (e.g. our SIP URI or address-of-record). */
  local: string;
  /** Negotiated codec, once answered. */
  codec?: string;
  /** When it started (ms since the Unix epoch). */
  startedAt: number;
  /** When it was answered, if it was. */
  answeredAt?: number;
  /** When it ended, if it did. */
  endedAt?: number;
  /** Who ended it and why (e.g. `remote: BYE`, `local: 486 Busy Here`), once ended. */
  reason?: string;
  /** SIP status of a failure, when there is one. */
  status?: number;
  /** Media statistics so far (from the call's session), once answered. */
  stats?: MediaStats;
}

/** Something that happened to a call. */
export interface CallEvent {
  /**
   * `incoming` (a call arrived: it rings until answered or rejected, see
   * {@linkcode CallService.onIncoming}), `dialing`, `progress` (a provisional
   * answer, e.g. 180), `answered`, `ended`, `dtmf` (a digit received), `stats`
   * (periodic, while answered), or `message` (a protocol message sent or
   * received, for a call ladder: see `detail`).
   */
  type: "incoming" | "dialing" | "progress" | "answered" | "ended" | "dtmf" | "stats" | "message";
  /** The call, as it stands after the event. */
  call: CallInfo;
  /** The event's details: the status and reason of a `progress`, the `digit` and `durationMs` of a `dtmf`, ... */
  detail?: Record<string, unknown>;
  /** When (ms since the Unix epoch). */
  time: number;
}

/** What to do with an incoming call. */
export type IncomingDecision =
  | { action: "answer" }
  | { action: "reject"; status?: number; reason?: string }
  | { action: "ring" }; // keep ringing: answer() or reject() later

/** Options of {@linkcode CallService.dial}. */
export interface DialOptions {
  /** Seconds of ringing before giving up (default: the service's). */
  ringTimeout?: number;
  /** Extra template variables for this call's chains (e.g. a file to play). */
  variables?: Record<string, string | number | boolean>;
}

/** The call service of a control plugin. */
export interface CallService {
  /** The calls not ended, and those ended recently (the service bounds how many it keeps). */
  calls(): CallInfo[];
  /** One call, if the service still knows it. */
  call(id: string): CallInfo | undefined;
  /**
   * Places a call to `target` (a SIP URI, or a number the service turns into
   * one through its registrar or proxy). Resolves once the call exists (before
   * it is answered): follow it with {@linkcode CallService.onEvent}.
   */
  dial(target: string, opts?: DialOptions): Promise<CallInfo>;
  /** Answers a ringing incoming call. */
  answer(id: string): Promise<void>;
  /** Rejects a ringing incoming call (default 486 Busy Here). */
  reject(id: string, status?: number, reason?: string): Promise<void>;
  /** Ends a call in whatever way its state requires (BYE, CANCEL, a rejection). */
  hangup(id: string): Promise<void>;
  /** Sends DTMF digits (0-9, *, #, A-D) in an answered call. */
  sendDtmf(id: string, digits: string, opts?: { durationMs?: number; gapMs?: number }): Promise<void>;
  /**
   * Decides what happens to incoming calls; without a decider the service
   * applies its own policy (e.g. answer at once). Returns a function that
   * removes the decider.
   */
  onIncoming(decide: (call: CallInfo) => IncomingDecision | Promise<IncomingDecision>): () => void;
  /** Subscribes to every call event; returns a function that unsubscribes. */
  onEvent(listener: (event: CallEvent) => void): () => void;
  /** The media session of an answered call (its buses carry the call's audio), if it has one now. */
  session(id: string): Session | undefined;
  /**
   * Set when `session()` never returns a session because the calls' media run in other threads (the SIP control's
   * media workers): says so, and what to change. Undefined when sessions are on this thread.
   */
  readonly noSessions?: string;
}
