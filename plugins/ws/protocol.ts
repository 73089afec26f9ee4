/**
 * The bridge's two wire protocols share one model: a client's message parses
 * into a {@linkcode Command}, and what the bridge tells a client is a
 * {@linkcode Notice} that each protocol formats its own way
 * (`text_protocol.ts`: the model server's `CALL:` / `RTP:` lines;
 * `json_protocol.ts`: media-stream events). The README's "WebSocket bridge"
 * section gives both grammars.
 *
 * @module
 */
import type { AudioEncoding } from "./audio.ts";

/** The protocols, as the client names them (subprotocol `voxpipe-text` / `voxpipe-json`, or `?protocol=`). */
export type ProtocolName = "text" | "json";

/** The WebSocket subprotocol names, by protocol. */
export const SUBPROTOCOLS: Readonly<Record<ProtocolName, string>> = {
  text: "voxpipe-text",
  json: "voxpipe-json",
};

/** What a client asks for. */
export type Command =
  /** Presents the token (when the URL had none): the first message. */
  | { type: "auth"; token: string }
  /** Places a call to `to` (a number or SIP URI, passed to the call service). */
  | { type: "dial"; to: string; ref?: string; encoding?: AudioEncoding; ringTimeout?: number }
  /** Answers a ringing incoming call this client was offered. */
  | { type: "answer"; callId: string; encoding?: AudioEncoding }
  /** Rejects a ringing incoming call this client was offered. */
  | { type: "reject"; callId: string; status?: number; reason?: string }
  /** Ends one of the client's calls (BYE, CANCEL, whatever its state needs). */
  | { type: "hangup"; callId: string }
  /** Audio to play into the call (base64 in the call's encoding). */
  | { type: "media"; callId: string; payload: string }
  /** DTMF digits to send in the call. */
  | { type: "dtmf"; callId: string; digits: string }
  /** A named point in the audio sent so far: echoed when everything before it has been played. */
  | { type: "mark"; callId: string; name: string }
  /** Drops the call's queued audio (pending marks are echoed at once). */
  | { type: "clear"; callId: string }
  /** Text protocol: the audio encoding of the connection from now on, both ways. */
  | { type: "encoding"; encoding: AudioEncoding }
  /** Liveness: answered with a pong, after every message sent before it has been handled. */
  | { type: "ping" };

/** A call as a client is shown it. */
export interface CallView {
  /** The call's id. */
  callId: string;
  /** `inbound` (the peer called), `outbound` (the client dialed). */
  direction: "inbound" | "outbound";
  /** Who called. */
  from: string;
  /** Who was called. */
  to: string;
}

/** What the bridge tells a client. */
export type Notice =
  /** JSON: the client is authenticated. */
  | { type: "connected" }
  /** Text: the answer to AUTH. */
  | { type: "authOk" }
  /** A dial placed the call `callId`. */
  | { type: "dialing"; callId: string; to: string; ref?: string }
  /** The far end rings (a provisional answer). */
  | { type: "ringing"; callId: string; status?: number; reason?: string }
  /** The call is answered: audio flows both ways from now. */
  | { type: "answered"; call: CallView; encoding: AudioEncoding }
  /** The call ended (the client's last message about it). */
  | {
    type: "ended";
    callId: string;
    direction: "inbound" | "outbound";
    answered: boolean;
    status?: number;
    reason: string;
  }
  /** A dial failed before any call existed. */
  | { type: "dialFailed"; status: number; reason: string; ref?: string }
  /** An incoming call rings: answer or reject it. */
  | { type: "incoming"; callId: string; from: string; to: string }
  /** An incoming call this client was offered is no longer on offer. */
  | { type: "incomingEnd"; callId: string; reason: string }
  /** The peer's audio (base64 in the call's encoding). */
  | { type: "media"; callId: string; payload: string; sequenceNumber: number; timestamp: number }
  /** A DTMF digit received from the peer. */
  | { type: "dtmf"; callId: string; digit: string; durationMs?: number }
  /** A mark the client sent: everything before it has been played. */
  | { type: "mark"; callId: string; name: string }
  /** A message could not be handled (nothing changed). */
  | { type: "error"; message: string; callId?: string; ref?: string }
  /** The answer to a ping. */
  | { type: "pong" };

/** A message that does not parse: `message` says what was wrong and what was expected. */
export class ProtocolError extends Error {
  /** The call the message named, when it could be read. */
  readonly callId?: string;
  /** The client's ref, when it could be read. */
  readonly ref?: string;

  /**
   * Creates the error.
   * @param message what was wrong and what to send instead
   * @param at the call id and ref the message named, when known
   */
  constructor(message: string, at: { callId?: string; ref?: string } = {}) {
    super(message);
    this.name = "ProtocolError";
    this.callId = at.callId;
    this.ref = at.ref;
  }
}

/** One wire protocol: parses a client's message, formats notices (zero or more messages each). */
export interface WireProtocol {
  /** Its name. */
  readonly name: ProtocolName;
  /** Parses one text message; throws {@linkcode ProtocolError}. */
  parse(message: string): Command;
  /** The messages that tell a notice (none when the protocol has no such message). */
  format(notice: Notice): string[];
}

/** DTMF digits the bridge sends. */
export const DTMF_DIGITS = /^[0-9*#A-Da-d]{1,64}$/;

/** Longest call id, dial target, mark name, ref accepted. */
export const MAX_FIELD = 256;

/** Statuses that mean "the callee did not answer" (text protocol: CALL_IGNORE rather than CALL_FAILED). */
export const NO_ANSWER_STATUSES: ReadonlySet<number> = new Set([408, 480, 487]);

/**
 * A value read from a message as an error shows it: JSON, at most 40 characters then `...` (an error goes back to the
 * client and to the log, and must not grow with what the client sent).
 *
 * @example
 * ```ts
 * shown("x".repeat(100)); // '"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx...'
 * shown(8001); // "8001"
 * ```
 */
export function shown(v: unknown): string {
  const s = JSON.stringify(v) ?? String(v);
  return s.length > 40 ? `${s.slice(0, 40)}...` : s;
}

/** Checks a call id read from a message. */
export function checkCallId(id: string, command: string): string {
  if (id.length === 0) throw new ProtocolError(`${command}: the call id is missing`);
  if (id.length > MAX_FIELD) throw new ProtocolError(`${command}: the call id is longer than ${MAX_FIELD} characters`);
  // deno-lint-ignore no-control-regex
  if (/[\s\x00-\x1f#]/.test(id)) {
    throw new ProtocolError(`${command}: a call id has no spaces, control characters or "#"`, { callId: id });
  }
  return id;
}

/** Checks a dial target read from a message. */
export function checkTarget(to: string, command: string): string {
  if (to.length === 0) throw new ProtocolError(`${command}: the number to call is missing`);
  if (to.length > MAX_FIELD) throw new ProtocolError(`${command}: the number is longer than ${MAX_FIELD} characters`);
  // deno-lint-ignore no-control-regex
  if (/[\s\x00-\x1f\x7f]/.test(to)) {
    throw new ProtocolError(`${command}: the number has spaces or control characters: ${shown(to)}`);
  }
  return to;
}

/** Checks DTMF digits read from a message. */
export function checkDigits(digits: string, command: string, callId: string): string {
  if (!DTMF_DIGITS.test(digits)) {
    throw new ProtocolError(
      `${command}: DTMF digits are 1 to 64 of 0-9 * # A-D, got ${JSON.stringify(digits.slice(0, 70))}`,
      { callId },
    );
  }
  return digits.toUpperCase();
}
