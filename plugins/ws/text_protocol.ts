/**
 * The text protocol: the model server's command set, one command per
 * WebSocket text message, `NAME:ARGUMENTS`, fields separated by `##` (a
 * trailing CR/LF is ignored). Audio is base64 of 8 kHz mono 16-bit
 * little-endian PCM (`l16`, the default) or µ-law (`mulaw`: `?encoding=mulaw`
 * in the URL, or `ENCODING:mulaw`).
 *
 * | client → bridge                  | meaning                                                         |
 * | -------------------------------- | --------------------------------------------------------------- |
 * | `AUTH:{token}`                   | the token, as the first message when the URL has no `?token=`   |
 * | `CALL:{number}`                  | place a call (`RING_ANS` gives its id)                          |
 * | `ANSWER:{call_id}`               | answer an offered incoming call                                 |
 * | `REJECT:{call_id}[##{status}]`   | reject an offered incoming call (default 486)                   |
 * | `HANGUP:{call_id}`, `BYE:{call_id}` | end the call                                                 |
 * | `RTP:{call_id}##{base64}`        | audio to play into the call                                     |
 * | `DTMF:{call_id}##{digits}`       | send DTMF digits (0-9 * # A-D)                                  |
 * | `MARK:{call_id}##{name}`         | echoed as `MARK:` once the audio sent before it has been played |
 * | `CLEAR:{call_id}`                | drop the audio queued for the call                              |
 * | `ENCODING:l16` / `ENCODING:mulaw`| the audio encoding, both ways, from now on                      |
 * | `PING`                           | answered `PONG`                                                 |
 *
 * Bridge → client: `AUTH_OK`, `RING_ANS:{number}##{call_id}`,
 * `CALL_ANS:{call_id}`, `CALL_IGNORE:{call_id}`, `CALL_FAILED:{status} {reason}`,
 * `BYE:{call_id}`, `RTP:{call_id}##{base64}`, `INCOMING:{from}##{call_id}`,
 * `INCOMING_END:{call_id}##{reason}`, `DTMF:{call_id}##{digit}`,
 * `MARK:{call_id}##{name}`, `ERROR:{message}`, `PONG`.
 *
 * @example
 * ```ts
 * textProtocol.parse("CALL:sip:bob@127.0.0.1:5062"); // { type: "dial", to: "sip:bob@127.0.0.1:5062" }
 * textProtocol.format({ type: "answered", call, encoding: "l16" }); // ["CALL_ANS:c1"]
 * ```
 *
 * @module
 */
import { parseEncoding } from "./audio.ts";
import {
  checkCallId,
  checkDigits,
  checkTarget,
  type Command,
  MAX_FIELD,
  NO_ANSWER_STATUSES,
  type Notice,
  ProtocolError,
  shown,
  type WireProtocol,
} from "./protocol.ts";

const COMMANDS = "AUTH, CALL, ANSWER, REJECT, HANGUP, BYE, RTP, DTMF, MARK, CLEAR, ENCODING, PING";

/** A field the bridge writes: no `#` (the separator) and no line breaks. */
function field(s: string): string {
  // deno-lint-ignore no-control-regex
  return s.replaceAll("#", "%23").replace(/[\x00-\x1f\x7f]+/g, " ");
}

/** Free text at the end of a message: no line breaks. */
function text(s: string): string {
  // deno-lint-ignore no-control-regex
  return s.replace(/[\x00-\x1f\x7f]+/g, " ");
}

/** Splits `id##rest` at the first `##`. */
function idAndRest(arg: string, command: string, what: string): [string, string] {
  const at = arg.indexOf("##");
  if (at < 0) throw new ProtocolError(`${command}: expected ${command}:{call_id}##{${what}}`);
  return [checkCallId(arg.slice(0, at), command), arg.slice(at + 2)];
}

/**
 * `s` without the CRs and LFs at its end, found by a loop from the end. (`replace(/[\r\n]+$/, "")` tried a match at
 * every run of them, each scanned to its end: a 200 KB message of CRLFs before one other character took 48 s of the
 * event loop, from a client not yet authenticated.)
 */
function withoutLineEnd(s: string): string {
  let end = s.length;
  while (end > 0 && (s.charCodeAt(end - 1) === 13 || s.charCodeAt(end - 1) === 10)) end--;
  return end === s.length ? s : s.slice(0, end);
}

function parse(message: string): Command {
  const line = withoutLineEnd(message);
  if (line === "PING") return { type: "ping" };
  const colon = line.indexOf(":");
  if (colon <= 0) {
    throw new ProtocolError(
      `expected COMMAND:ARGUMENTS (${COMMANDS}), got ${JSON.stringify(line.slice(0, 40))}`,
    );
  }
  const name = line.slice(0, colon);
  const arg = line.slice(colon + 1);
  switch (name) {
    case "AUTH":
      if (!arg) throw new ProtocolError("AUTH: the token is missing (AUTH:{token})");
      return { type: "auth", token: arg };
    case "CALL":
      return { type: "dial", to: checkTarget(arg.trim(), "CALL") };
    case "ANSWER":
      return { type: "answer", callId: checkCallId(arg, "ANSWER") };
    case "REJECT": {
      const at = arg.indexOf("##");
      if (at < 0) return { type: "reject", callId: checkCallId(arg, "REJECT") };
      const callId = checkCallId(arg.slice(0, at), "REJECT");
      const status = Number(arg.slice(at + 2));
      if (!Number.isInteger(status) || status < 400 || status > 699) {
        throw new ProtocolError(`REJECT: the status is 400..699, got ${shown(arg.slice(at + 2))}`, {
          callId,
        });
      }
      return { type: "reject", callId, status };
    }
    case "HANGUP":
    case "BYE":
      return { type: "hangup", callId: checkCallId(arg, name) };
    case "CLEAR":
      return { type: "clear", callId: checkCallId(arg, "CLEAR") };
    case "RTP": {
      const [callId, payload] = idAndRest(arg, "RTP", "base64 audio");
      if (!payload) throw new ProtocolError("RTP: the audio is missing", { callId });
      return { type: "media", callId, payload };
    }
    case "DTMF": {
      const [callId, digits] = idAndRest(arg, "DTMF", "digits");
      return { type: "dtmf", callId, digits: checkDigits(digits, "DTMF", callId) };
    }
    case "MARK": {
      const [callId, mark] = idAndRest(arg, "MARK", "name");
      if (!mark || mark.length > MAX_FIELD) {
        throw new ProtocolError(`MARK: the name is 1 to ${MAX_FIELD} characters`, { callId });
      }
      return { type: "mark", callId, name: mark };
    }
    case "ENCODING": {
      const encoding = parseEncoding(arg);
      if (!encoding) {
        throw new ProtocolError(`ENCODING: expected l16 or mulaw, got ${JSON.stringify(arg.slice(0, 40))}`);
      }
      return { type: "encoding", encoding };
    }
    default:
      throw new ProtocolError(`unknown command ${JSON.stringify(name.slice(0, 40))} (known: ${COMMANDS})`);
  }
}

function format(n: Notice): string[] {
  switch (n.type) {
    case "authOk":
      return ["AUTH_OK"];
    case "connected":
    case "ringing":
      return [];
    case "dialing":
      return [`RING_ANS:${field(n.to)}##${n.callId}`];
    case "answered":
      return [`CALL_ANS:${n.call.callId}`];
    case "ended": {
      const bye = `BYE:${n.callId}`;
      if (n.answered || n.direction === "inbound") return [bye];
      if (n.status !== undefined && NO_ANSWER_STATUSES.has(n.status)) return [`CALL_IGNORE:${n.callId}`, bye];
      return [`CALL_FAILED:${n.status ?? 0} ${text(n.reason)}`, bye];
    }
    case "dialFailed":
      return [`CALL_FAILED:${n.status} ${text(n.reason)}`];
    case "incoming":
      return [`INCOMING:${field(n.from)}##${n.callId}`];
    case "incomingEnd":
      return [`INCOMING_END:${n.callId}##${text(n.reason)}`];
    case "media":
      return [`RTP:${n.callId}##${n.payload}`];
    case "dtmf":
      return [`DTMF:${n.callId}##${n.digit}`];
    case "mark":
      return [`MARK:${n.callId}##${field(n.name)}`];
    case "error":
      return [`ERROR:${text(n.message)}`];
    case "pong":
      return ["PONG"];
  }
}

/** The text protocol (see the module documentation). */
export const textProtocol: WireProtocol = { name: "text", parse, format };
