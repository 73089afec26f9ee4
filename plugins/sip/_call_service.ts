/**
 * Helpers of the SIP control's call service (control.ts): the time variables of a call, the peer's URI out of a
 * header value, a dial target made a SIP URI, and a SIP message as a `message` call event's details. Private to
 * the folder.
 *
 * @module
 */
import type { IncomingDecision } from "../../core/calls.ts";
import { getCSeq, type SipRequest, type SipResponse } from "./message.ts";
import { quote } from "./syntax.ts";
import type { SipMessageEvent } from "./transport.ts";

const pad = (n: number, w = 2) => String(n).padStart(w, "0");

/**
 * The time variables of a call that started at `ms` (ms since the Unix epoch), in local time, each safe in a file
 * name: `date` `2026-11-22`, `time` `10-00-00`, `call.start` `20261122-100000`.
 */
export function callTimeVariables(ms: number): { date: string; time: string; "call.start": string } {
  const d = new Date(ms);
  const y = pad(d.getFullYear(), 4), mo = pad(d.getMonth() + 1), da = pad(d.getDate());
  const h = pad(d.getHours()), mi = pad(d.getMinutes()), s = pad(d.getSeconds());
  return { date: `${y}-${mo}-${da}`, time: `${h}-${mi}-${s}`, "call.start": `${y}${mo}${da}-${h}${mi}${s}` };
}

/** The URI of a From/To value (`"Alice" <sip:alice@host>;tag=x` → `sip:alice@host`). */
export function uriOf(value: string): string {
  const angle = /<([^>]*)>/.exec(value);
  if (angle) return angle[1].trim();
  return value.split(";")[0].trim();
}

/** What {@linkcode dialTarget} needs: where a plain number goes. */
export interface DialDomain {
  /** The registrar's `host[:port]`, when there is one. */
  registrar?: string;
  /** The outbound proxy's `host[:port]`, when there is one. */
  proxy?: string;
}

/**
 * The SIP URI (or name-addr) to call for `target`: a SIP URI or name-addr as given; `user@host` with `sip:` in
 * front; a plain number or user name (`1002`, `+33123456789`, `bob`) as `sip:<number>@<registrar>` (else
 * `@<outbound proxy>`). Throws saying what to give instead.
 */
export function dialTarget(target: string, domain: DialDomain): string {
  const t = target.trim();
  if (!t) throw new Error("dial: the target is empty: give a SIP URI (sip:bob@192.0.2.10:5060) or a number");
  if (/^sips?:/i.test(t) || t.includes("<")) return t;
  if (t.includes("@")) return `sip:${t}`;
  if (!/^[A-Za-z0-9._~+*#-]+$/.test(t)) {
    throw new Error(`dial: "${t}" is neither a SIP URI (sip:user@host) nor a number or user name`);
  }
  const at = domain.registrar || domain.proxy;
  if (!at) {
    throw new Error(
      `dial: "${t}" is a number, but there is no registrar or outbound proxy to send it to: ` +
        `give a SIP URI (sip:${t}@host:port), or set registrar`,
    );
  }
  return `sip:${t}@${at}`;
}

/** The `host[:port]` of a SIP URI given as an option (`sip:pbx.example.com:5070` → `pbx.example.com:5070`). */
export function hostPortOf(uri: string): string | undefined {
  const m = /^(?:sips?:)?(?:[^@]*@)?(\[[^\]]+\]|[^:;>?]+)(?::(\d+))?/i.exec(uri.trim().replace(/^.*</, ""));
  if (!m) return undefined;
  return m[2] ? `${m[1]}:${m[2]}` : m[1];
}

/** The details of a `message` call event: what a console needs to draw one arrow of the ladder. */
export function messageDetail(e: SipMessageEvent): Record<string, unknown> {
  const m = e.message;
  const remote = e.remote.hostname.includes(":")
    ? `[${e.remote.hostname}]:${e.remote.port}`
    : `${e.remote.hostname}:${e.remote.port}`;
  let cseq = "";
  try {
    const c = getCSeq(m);
    cseq = `${c.seq} ${c.method}`;
  } catch { /* a message without a usable CSeq is still shown */ }
  const base = {
    direction: e.direction,
    remote,
    cseq,
    sdp: m.body.length > 0,
    retransmission: e.retransmission,
  };
  if (m.kind === "request") {
    const r = m as SipRequest;
    return { ...base, method: r.method, label: r.method };
  }
  const r = m as SipResponse;
  return { ...base, status: r.status, reason: r.reason, label: `${r.status} ${r.reason}` };
}

/** A decider's answer, checked: a bad one is an error saying what was wrong. */
export function checkDecision(d: unknown): IncomingDecision {
  const o = d as IncomingDecision | undefined;
  if (!o || typeof o !== "object" || !["answer", "reject", "ring"].includes(o.action)) {
    throw new Error(
      `an incoming-call decider returned ${JSON.stringify(d)}: expected {action: "answer" | "reject" | "ring"}`,
    );
  }
  if (o.action === "reject" && o.status !== undefined) checkRejectStatus(o.status);
  return o;
}

/** Throws a RangeError unless `status` is a final non-2xx status (300–699). */
export function checkRejectStatus(status: number): void {
  if (!Number.isInteger(status) || status < 300 || status > 699) {
    throw new RangeError(`a rejection needs a SIP status 300–699 (e.g. 486 Busy Here, 603 Decline), got ${status}`);
  }
}

/** DTMF digits a call service accepts. */
export const DTMF_DIGITS: RegExp = /^[0-9*#A-Da-d]+$/;

/** The `Retry-After` (s) of a 503 for a call refused because its media's disk is full. */
const FULL_DISK_RETRY_S = 60;

/** At most this many characters of a media failure go into a `Warning` header. */
const WARNING_MAX = 240;

/**
 * The final response refusing an incoming call whose media could not start (`error`, the chain's error): `503
 * Service Unavailable` with `Retry-After` when the disk is full (another server, or this one later, may take the
 * call), else `500 Server Internal Error`; either with a `Warning` (399) saying what failed. The peer is not told
 * where our files are: each absolute path in the text is cut to its last component.
 */
export function mediaFailureResponse(error: string): { status: number; reason: string; headers: [string, string][] } {
  const full = /No space left on device|Disk quota exceeded|ENOSPC|EDQUOT/i.test(error);
  const create = /wav-sink: .*?: cannot create the recording: (.*)$/s.exec(error);
  const what = create ? "the recording could not be created" : "media could not start";
  let text = `${what}: ${
    (create?.[1] ?? error).replace(/(?:\/[^\s/'"`:;,()<>]+)+\/?/g, (p) => p.replace(/\/$/, "").replace(/^.*\//, ""))
  }`;
  if (text.length > WARNING_MAX) text = `${text.slice(0, WARNING_MAX - 3)}...`;
  const warning: [string, string] = ["Warning", `399 voxpipe ${quote(text)}`];
  return full
    ? {
      status: 503,
      reason: `Service Unavailable (${what})`,
      headers: [["Retry-After", String(FULL_DISK_RETRY_S)], warning],
    }
    : { status: 500, reason: `Server Internal Error (${what})`, headers: [warning] };
}
