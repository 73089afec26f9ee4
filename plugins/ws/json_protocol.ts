/**
 * The JSON protocol: one JSON object per WebSocket text message, in the
 * style of the media-stream WebSockets voice-AI platforms use. Every message
 * has an `event`; events about a call carry its `callId`, and their details in
 * an object named after the event.
 *
 * Client → bridge: `auth`, `dial`, `answer`, `reject`, `media`, `dtmf`,
 * `mark`, `clear`, `stop`, `ping`. Bridge → client: `connected`, `dialing`,
 * `ringing`, `start`, `media`, `dtmf`, `mark`, `stop`, `incoming`,
 * `incoming_end`, `error`, `pong`. Unknown fields are ignored; an unknown
 * event, or a field of the wrong type, gets an `error` back. The README's
 * "WebSocket bridge" section shows each one.
 *
 * @example
 * ```ts
 * jsonProtocol.parse('{"event":"media","callId":"c1","media":{"payload":"AAAA"}}');
 * // { type: "media", callId: "c1", payload: "AAAA" }
 * ```
 *
 * @module
 */
import { type AudioEncoding, MEDIA_TYPES, parseEncoding } from "./audio.ts";
import {
  checkCallId,
  checkDigits,
  checkTarget,
  type Command,
  MAX_FIELD,
  type Notice,
  ProtocolError,
  shown,
  type WireProtocol,
} from "./protocol.ts";

const EVENTS = "auth, dial, answer, reject, media, dtmf, mark, clear, stop, ping";

type Obj = Record<string, unknown>;

function isObj(v: unknown): v is Obj {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** The object `msg[key]`, `{}` when absent and optional; a ProtocolError when it is not an object. */
function sub(msg: Obj, key: string, event: string, required: boolean, at: { callId?: string; ref?: string }): Obj {
  const v = msg[key];
  if (v === undefined && !required) return {};
  if (!isObj(v)) throw new ProtocolError(`${event}: expected "${key}": {...}`, at);
  return v;
}

function str(o: Obj, key: string, event: string, at: { callId?: string; ref?: string }, required = true): string {
  const v = o[key];
  if (v === undefined && !required) return "";
  if (typeof v !== "string") {
    throw new ProtocolError(`${event}: "${key}" must be a string${v === undefined ? " (it is missing)" : ""}`, at);
  }
  return v;
}

function mediaEncoding(o: Obj, event: string, at: { callId?: string; ref?: string }): AudioEncoding | undefined {
  const mf = o.mediaFormat;
  if (mf === undefined) return undefined;
  if (!isObj(mf)) throw new ProtocolError(`${event}: "mediaFormat" must be an object`, at);
  if (mf.sampleRate !== undefined && mf.sampleRate !== 8000) {
    throw new ProtocolError(
      `${event}: the bridge's audio is 8000 Hz (mediaFormat.sampleRate), got ${shown(mf.sampleRate)}`,
      at,
    );
  }
  if (mf.channels !== undefined && mf.channels !== 1) {
    throw new ProtocolError(
      `${event}: the bridge's audio is mono (mediaFormat.channels 1), got ${shown(mf.channels)}`,
      at,
    );
  }
  if (mf.encoding === undefined) return undefined;
  const e = typeof mf.encoding === "string" ? parseEncoding(mf.encoding) : undefined;
  if (!e) {
    throw new ProtocolError(
      `${event}: mediaFormat.encoding is "audio/x-mulaw" or "audio/l16", got ${shown(mf.encoding)}`,
      at,
    );
  }
  return e;
}

function parse(message: string): Command {
  let msg: unknown;
  try {
    msg = JSON.parse(message);
  } catch (e) {
    throw new ProtocolError(`not JSON: ${e instanceof Error ? e.message : e}`);
  }
  if (!isObj(msg) || typeof msg.event !== "string") {
    throw new ProtocolError(`expected a JSON object with an "event" (${EVENTS})`);
  }
  const event = msg.event;
  const ref = typeof msg.ref === "string" ? msg.ref.slice(0, MAX_FIELD) : undefined;
  const at: { callId?: string; ref?: string } = { ref };
  if (msg.ref !== undefined && typeof msg.ref !== "string") throw new ProtocolError(`"ref" must be a string`);
  const callId = () => {
    const id = checkCallId(str(msg as Obj, "callId", event, at), event);
    at.callId = id;
    return id;
  };
  switch (event) {
    case "auth":
      return { type: "auth", token: str(sub(msg, "auth", event, true, at), "token", event, at) };
    case "ping":
      return { type: "ping" };
    case "dial": {
      const d = sub(msg, "dial", event, true, at);
      const cmd: Command = { type: "dial", to: checkTarget(str(d, "to", event, at), event) };
      if (ref !== undefined) cmd.ref = ref;
      const encoding = mediaEncoding(d, event, at);
      if (encoding) cmd.encoding = encoding;
      if (d.ringTimeout !== undefined) {
        if (typeof d.ringTimeout !== "number" || !(d.ringTimeout > 0 && d.ringTimeout <= 3600)) {
          throw new ProtocolError(`dial: "ringTimeout" is seconds, 0..3600`, at);
        }
        cmd.ringTimeout = d.ringTimeout;
      }
      return cmd;
    }
    case "answer": {
      const id = callId();
      const encoding = mediaEncoding(sub(msg, "answer", event, false, at), event, at);
      return encoding ? { type: "answer", callId: id, encoding } : { type: "answer", callId: id };
    }
    case "reject": {
      const id = callId();
      const r = sub(msg, "reject", event, false, at);
      const cmd: Command = { type: "reject", callId: id };
      if (r.status !== undefined) {
        if (typeof r.status !== "number" || !Number.isInteger(r.status) || r.status < 400 || r.status > 699) {
          throw new ProtocolError(`reject: "status" is 400..699, got ${shown(r.status)}`, at);
        }
        cmd.status = r.status;
      }
      const reason = str(r, "reason", event, at, false);
      if (reason) cmd.reason = reason.slice(0, MAX_FIELD);
      return cmd;
    }
    case "stop":
      return { type: "hangup", callId: callId() };
    case "clear":
      return { type: "clear", callId: callId() };
    case "media": {
      const id = callId();
      const m = sub(msg, "media", event, true, at);
      const payload = str(m, "payload", event, at);
      if (!payload) throw new ProtocolError(`media: "payload" is empty`, at);
      return { type: "media", callId: id, payload };
    }
    case "dtmf": {
      const id = callId();
      const d = sub(msg, "dtmf", event, true, at);
      const digits = d.digits !== undefined ? str(d, "digits", event, at) : str(d, "digit", event, at);
      return { type: "dtmf", callId: id, digits: checkDigits(digits, event, id) };
    }
    case "mark": {
      const id = callId();
      const name = str(sub(msg, "mark", event, true, at), "name", event, at);
      if (!name || name.length > MAX_FIELD) throw new ProtocolError(`mark: "name" is 1 to ${MAX_FIELD} characters`, at);
      return { type: "mark", callId: id, name };
    }
    default:
      throw new ProtocolError(`unknown event ${JSON.stringify(event.slice(0, 40))} (known: ${EVENTS})`, at);
  }
}

/** The `mediaFormat` object of an encoding. */
export function mediaFormat(encoding: AudioEncoding): { encoding: string; sampleRate: number; channels: number } {
  return { encoding: MEDIA_TYPES[encoding], sampleRate: 8000, channels: 1 };
}

function format(n: Notice): string[] {
  switch (n.type) {
    case "authOk":
      return [];
    case "connected":
      return [JSON.stringify({ event: "connected", protocol: "voxpipe-json", version: 1 })];
    case "dialing":
      return [JSON.stringify({ event: "dialing", callId: n.callId, ref: n.ref, dialing: { to: n.to } })];
    case "ringing":
      return [JSON.stringify({ event: "ringing", callId: n.callId, ringing: { status: n.status, reason: n.reason } })];
    case "answered":
      return [JSON.stringify({
        event: "start",
        callId: n.call.callId,
        start: { ...n.call, mediaFormat: mediaFormat(n.encoding) },
      })];
    case "ended":
      return [JSON.stringify({
        event: "stop",
        callId: n.callId,
        stop: { answered: n.answered, reason: n.reason, status: n.status },
      })];
    case "dialFailed":
      return [JSON.stringify({
        event: "error",
        ref: n.ref,
        error: { message: `dial failed: ${n.reason}`, status: n.status },
      })];
    case "incoming":
      return [JSON.stringify({ event: "incoming", callId: n.callId, incoming: { from: n.from, to: n.to } })];
    case "incomingEnd":
      return [JSON.stringify({ event: "incoming_end", callId: n.callId, incoming_end: { reason: n.reason } })];
    case "media":
      // Built by hand: the id is checked (no quotes or escapes) and base64 needs none; this runs 50 times a second
      // per call.
      return [
        `{"event":"media","callId":${JSON.stringify(n.callId)},"media":{"payload":"${n.payload}",` +
        `"sequenceNumber":${n.sequenceNumber},"timestamp":${n.timestamp}}}`,
      ];
    case "dtmf":
      return [JSON.stringify({ event: "dtmf", callId: n.callId, dtmf: { digit: n.digit, durationMs: n.durationMs } })];
    case "mark":
      return [JSON.stringify({ event: "mark", callId: n.callId, mark: { name: n.name } })];
    case "error":
      return [JSON.stringify({ event: "error", callId: n.callId, ref: n.ref, error: { message: n.message } })];
    case "pong":
      return [JSON.stringify({ event: "pong" })];
  }
}

/** The JSON protocol (see the module documentation). */
export const jsonProtocol: WireProtocol = { name: "json", parse, format };
