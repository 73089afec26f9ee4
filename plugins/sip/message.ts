/**
 * SIP messages (RFC 3261 §7): types, a strict but tolerant parser for UDP
 * datagrams, a serializer, accessors for the headers every message carries, and
 * builders for requests and responses (§8.1.1, §8.2.6).
 *
 * @module
 */
import { type PartialRequest, SipParseError } from "./errors.ts";
import { canonicalName, SipHeaders, splitHeaderValue } from "./headers.ts";
import { excerpt, isCtl, isDigits, isToken, isWsp, parseParams, skipWsp } from "./syntax.ts";
import {
  type Address,
  addressParams,
  formatUri,
  isSipUri,
  parseAddress,
  parseAnyUri,
  type SipUri,
  type Uri,
} from "./uri.ts";
import { parseVia, type Via } from "./via.ts";

export { SipParseError } from "./errors.ts";
export { SipHeaders } from "./headers.ts";

/** A SIP request. */
export interface SipRequest {
  /** Discriminant. */
  readonly kind: "request";
  /** Method, e.g. `INVITE` (case-sensitive, RFC 3261 §7.1). */
  method: string;
  /** Request-URI as text. */
  uri: string;
  /** Protocol version, `SIP/2.0`. */
  version: string;
  /** Headers, in order. */
  headers: SipHeaders;
  /** Body bytes (empty when none). */
  body: Uint8Array;
}

/** A SIP response. */
export interface SipResponse {
  /** Discriminant. */
  readonly kind: "response";
  /** Status code, 100–699. */
  status: number;
  /** Reason phrase (may be empty). */
  reason: string;
  /** Protocol version, `SIP/2.0`. */
  version: string;
  /** Headers, in order. */
  headers: SipHeaders;
  /** Body bytes (empty when none). */
  body: Uint8Array;
}

/** A SIP request or response. */
export type SipMessage = SipRequest | SipResponse;

/** Limits applied by {@linkcode parseMessage}. Each one, when exceeded, is a `400` with a reason naming it. */
export interface ParseOptions {
  /** Largest accepted message in bytes (default 65 535, the largest UDP payload). */
  maxSize?: number;
  /** Largest number of header fields after list splitting, and of header lines (default 256). */
  maxHeaders?: number;
  /** Longest start line, and longest header line after unfolding, in characters (default 8 192). */
  maxLineLength?: number;
}

/** Default limits of {@linkcode parseMessage}. */
export const DEFAULT_PARSE_LIMITS: Readonly<Required<ParseOptions>> = {
  maxSize: 65535,
  maxHeaders: 256,
  maxLineLength: 8192,
};

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const EMPTY = new Uint8Array(0);
const MANDATORY = ["Via", "From", "To", "Call-ID", "CSeq"] as const;
const SINGLE = ["From", "To", "Call-ID", "CSeq", "Max-Forwards", "Content-Type"] as const;
const VERSION_RE = /^SIP\/[0-9]+\.[0-9]+$/i;
const CR_LF = /[\r\n]/;
const DATE_RE =
  /^(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), [0-9]{2} (?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) [0-9]{4} [0-9]{2}:[0-9]{2}:[0-9]{2} GMT$/;

/** Trims SP and HTAB at both ends. */
function trimLws(s: string): string {
  let a = 0;
  let b = s.length;
  while (a < b && isWsp(s.charCodeAt(a))) a++;
  while (b > a && isWsp(s.charCodeAt(b - 1))) b--;
  return a === 0 && b === s.length ? s : s.slice(a, b);
}

/** Index of the first control character (other than HTAB) that is not the escaped character of a quoted-pair, or -1. */
function ctlOutsideQuotedPair(s: string): number {
  let inQuote = false;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (inQuote && c === 0x5c) {
      const e = s.charCodeAt(i + 1);
      if (e !== 13 && e !== 10) i++;
    } else if (c === 0x22) inQuote = !inQuote;
    else if (isCtl(c)) return i;
  }
  return -1;
}

interface StartLine {
  request?: { method: string; uri: string; version: string };
  status: number;
  reason: string;
  version: string;
  /** A request-line problem found after the method could be read (answerable with 400). */
  error?: string;
  /** Set when the request's SIP version is not 2.0 (answerable with 505). */
  versionError?: string;
}

/**
 * Parses the start line. Throws at once (no partial) when the line is not
 * recognizably SIP; problems of a request line that has a method and a SIP
 * version are returned in `error`/`versionError`, so that the headers can be
 * read for the 400/505 answer.
 */
function parseStartLine(first: string): StartLine {
  for (let i = 0; i < first.length; i++) {
    if (isCtl(first.charCodeAt(i))) {
      throw new SipParseError(first.startsWith("SIP/") ? "bad status line" : "bad request line");
    }
  }
  if (/^SIP\//i.test(first)) {
    // Status-Line = SIP-Version SP Status-Code SP Reason-Phrase (the last SP may be missing when the phrase is empty).
    const sp = first.indexOf(" ");
    const version = sp === -1 ? first : first.slice(0, sp);
    if (!VERSION_RE.test(version)) throw new SipParseError("bad status line");
    const sp2 = first.indexOf(" ", sp + 1);
    const code = sp === -1 ? "" : first.slice(sp + 1, sp2 === -1 ? first.length : sp2);
    if (!isDigits(code)) throw new SipParseError("bad status line");
    if (code.length > 3 || (code.length === 3 && (+code < 100 || +code > 699))) {
      throw new SipParseError(`status code '${excerpt(code, 12)}' out of range 100-699`);
    }
    if (code.length !== 3) throw new SipParseError("bad status line");
    const v = version.toUpperCase();
    if (v !== "SIP/2.0") throw new SipParseError(`unsupported SIP version '${excerpt(version, 12)}'`);
    return { status: Number(code), reason: sp2 === -1 ? "" : first.slice(sp2 + 1), version: v };
  }
  // Request-Line = Method SP Request-URI SP SIP-Version (single spaces, RFC 3261 §25.1).
  let t = first.length;
  while (t > 0 && isWsp(first.charCodeAt(t - 1))) t--;
  const line = first.slice(0, t);
  const sp1 = line.indexOf(" ");
  const spL = line.lastIndexOf(" ");
  if (sp1 <= 0 || sp1 === spL) throw new SipParseError("bad request line");
  const method = line.slice(0, sp1);
  const versionText = line.slice(spL + 1);
  if (!isToken(method)) throw new SipParseError(`bad method '${excerpt(method)}'`);
  if (!VERSION_RE.test(versionText)) throw new SipParseError("bad request line");
  const version = versionText.toUpperCase();
  const between = line.slice(sp1 + 1, spL);
  const uri = trimLws(between);
  const out: StartLine = { request: { method, uri, version }, status: 0, reason: "", version };
  if (version !== "SIP/2.0") out.versionError = `unsupported SIP version '${excerpt(versionText, 12)}'`;
  if (t < first.length) out.error = "whitespace at the end of the request line";
  else if (uri === "") out.error = "missing Request-URI";
  else if (uri.length !== between.length) out.error = "more than one space between request line elements";
  else if (/[ \t]/.test(uri)) out.error = "whitespace in Request-URI";
  else if (uri.startsWith("<")) out.error = "Request-URI enclosed in '<>'";
  else {
    try {
      const u = parseAnyUri(uri);
      if (isSipUri(u) && Object.keys(u.headers).length > 0) out.error = "headers ('?') in a SIP Request-URI";
    } catch (e) {
      if (!(e instanceof SipParseError)) throw e;
      out.error = `bad Request-URI: ${e.reason}`;
    }
  }
  return out;
}

/**
 * Parses one SIP message from a UDP datagram (or a string), in time linear in
 * its size whatever it holds.
 *
 * - Leading CRLFs are skipped; lines may end in CRLF or bare LF; folded lines
 *   (starting with SP/HTAB) are joined with one space.
 * - The request line is `Method SP Request-URI SP SIP/2.0` with single spaces;
 *   the Request-URI may have any scheme (`sip`, `sips`, `tel`, `urn`...), but a
 *   SIP Request-URI cannot carry headers (`?`).
 * - Header names are case-insensitive and compact forms are expanded; list
 *   headers are split into one entry per element (not inside quotes or `<>`).
 *   Control characters are refused except as quoted-pairs.
 * - Via, From, To, Call-ID and CSeq are mandatory; they, Contact, Route,
 *   Record-Route, Max-Forwards (0–255), Content-Type, Content-Length and Date
 *   (`GMT` only) are validated.
 * - With Content-Length, the body is cut to it (a longer datagram is truncated:
 *   RFC 3261 §18.3); a shorter datagram is an error; without it, the body is the
 *   rest of the datagram.
 * - Limits ({@linkcode ParseOptions}): size, header count, line length; and at most
 *   `MAX_PARAMS` (syntax.ts) parameters per parameter list or URI.
 *
 * Throws {@linkcode SipParseError} with a precise `reason` and the `status` a
 * reply should have (400, or 505 for a request whose version is not SIP/2.0);
 * for requests whose request line could be read, `partial` holds the request
 * line and the header lines read (for the reply).
 *
 * @example
 * ```ts
 * const msg = parseMessage(
 *   "OPTIONS sip:bob@example.com SIP/2.0\r\nv: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\r\n" +
 *     "f: <sip:a@example.com>;tag=1\r\nt: <sip:bob@example.com>\r\ni: abc\r\nCSeq: 1 OPTIONS\r\nl: 0\r\n\r\n",
 * );
 * // msg.kind === "request", msg.headers.get("Call-ID") === "abc"
 * ```
 */
export function parseMessage(data: Uint8Array | string, options: ParseOptions = {}): SipMessage {
  const maxSize = options.maxSize ?? DEFAULT_PARSE_LIMITS.maxSize;
  const maxHeaders = options.maxHeaders ?? DEFAULT_PARSE_LIMITS.maxHeaders;
  const maxLine = options.maxLineLength ?? DEFAULT_PARSE_LIMITS.maxLineLength;
  const bytes = typeof data === "string" ? encoder.encode(data) : data;
  if (bytes.length > maxSize) throw new SipParseError(`message too large (${bytes.length} bytes, limit ${maxSize})`);

  let start = 0;
  while (start < bytes.length && (bytes[start] === 13 || bytes[start] === 10)) start++;
  if (start === bytes.length) throw new SipParseError("empty message");

  // Find the empty line that ends the header section.
  let headEnd = bytes.length;
  let bodyStart = bytes.length;
  for (let i = start; i < bytes.length; i++) {
    if (bytes[i] !== 10) continue;
    if (bytes[i + 1] === 10) {
      headEnd = i;
      bodyStart = i + 2;
      break;
    }
    if (bytes[i + 1] === 13 && bytes[i + 2] === 10) {
      headEnd = i;
      bodyStart = i + 3;
      break;
    }
  }
  // Start line: checked before the rest is decoded, so that garbage costs only its first line.
  let lf = bytes.indexOf(10, start);
  if (lf === -1 || lf > headEnd) lf = headEnd;
  const firstEnd = lf > start && bytes[lf - 1] === 13 ? lf - 1 : lf;
  if (firstEnd - start > maxLine) throw new SipParseError(`start line too long (limit ${maxLine})`);
  const sl = parseStartLine(decoder.decode(bytes.subarray(start, firstEnd)));
  const request = sl.request;
  const head = lf < headEnd ? decoder.decode(bytes.subarray(lf + 1, headEnd)) : "";

  // Header lines: unfold, check, split.
  const headers = new SipHeaders();
  const raw: [string, string][] = [];
  const partialOf = (): PartialRequest | undefined =>
    request ? { method: request.method, uri: request.uri, headers: raw } : undefined;
  let error: string | undefined;
  const fail = (reason: string) => {
    error ??= reason;
  };
  let lines = 0;
  let cur: { name: string; parts: string[]; len: number; skip: boolean } | undefined;
  const finish = () => {
    if (!cur || cur.skip) return;
    const name = canonicalName(cur.name);
    const value = trimLws(cur.parts.length === 1 ? cur.parts[0] : cur.parts.join(" "));
    const ctl = ctlOutsideQuotedPair(value);
    if (ctl !== -1) {
      fail(`control character 0x${value.charCodeAt(ctl).toString(16).padStart(2, "0")} in ${excerpt(name)} header`);
      return;
    }
    raw.push([name, value]);
    let parts: string[];
    try {
      parts = splitHeaderValue(name, value);
    } catch (e) {
      if (!(e instanceof SipParseError)) throw e;
      fail(`bad ${excerpt(name)} header: ${e.reason}`);
      return;
    }
    for (const p of parts) {
      headers.append(name, p);
      if (headers.size > maxHeaders) throw new SipParseError(`too many headers (limit ${maxHeaders})`, partialOf());
    }
  };
  let pos = 0;
  while (pos < head.length) {
    const nl = head.indexOf("\n", pos);
    const next = nl === -1 ? head.length : nl + 1;
    let end = nl === -1 ? head.length : nl;
    if (end > pos && head.charCodeAt(end - 1) === 13) end--;
    const first = head.charCodeAt(pos);
    if (end === pos) {
      // Only a lone CR can get here ("\r\r\n"): not a valid line end.
      fail("bare CR in header section");
    } else if (isWsp(first)) {
      if (!cur) fail("continuation line before first header");
      else if (!cur.skip) {
        const piece = trimLws(head.slice(pos, end));
        cur.len += 1 + piece.length;
        if (cur.len > maxLine) {
          fail(`header line too long (limit ${maxLine})`);
          cur.skip = true;
        } else cur.parts.push(piece);
      }
    } else {
      finish();
      if (++lines > maxHeaders) throw new SipParseError(`too many headers (limit ${maxHeaders})`, partialOf());
      if (end - pos > maxLine) {
        fail(`header line too long (limit ${maxLine})`);
        cur = { name: "", parts: [], len: 0, skip: true };
      } else {
        const line = head.slice(pos, end);
        const colon = line.indexOf(":");
        let ne = colon;
        while (ne > 0 && isWsp(line.charCodeAt(ne - 1))) ne--;
        const name = colon === -1 ? "" : line.slice(0, ne);
        if (colon === -1 || !isToken(name)) {
          fail(`bad header line '${excerpt(line)}'`);
          cur = { name: "", parts: [], len: 0, skip: true };
        } else cur = { name, parts: [line.slice(colon + 1)], len: line.length, skip: false };
      }
    }
    pos = next;
  }
  finish();

  if (sl.versionError) throw new SipParseError(sl.versionError, partialOf(), 505);
  if (sl.error) throw new SipParseError(sl.error, partialOf());
  if (error === undefined) {
    const problem = validate(headers, request?.method);
    if (problem) fail(problem);
  }
  if (error !== undefined) throw new SipParseError(error, partialOf());

  // Body framing.
  let body = EMPTY;
  const cl = headers.get("Content-Length");
  const available = bytes.length - bodyStart;
  if (cl !== undefined) {
    const n = Number(cl);
    if (n > available) throw new SipParseError("Content-Length larger than body", partialOf());
    if (n > 0) body = bytes.slice(bodyStart, bodyStart + n);
  } else if (available > 0) body = bytes.slice(bodyStart);

  if (request) return { kind: "request", ...request, headers, body };
  return { kind: "response", status: sl.status, reason: sl.reason, version: sl.version, headers, body };
}

/** Parses `1*DIGIT` with leading zeros, as a number; undefined when not digits or more than `maxDigits` significant digits. */
function parseDecimal(s: string, maxDigits: number): number | undefined {
  if (!isDigits(s)) return undefined;
  let z = 0;
  while (z < s.length - 1 && s.charCodeAt(z) === 0x30) z++;
  if (s.length - z > maxDigits) return undefined;
  return Number(s.slice(z));
}

/** Parses a CSeq value: `1*DIGIT LWS method`, number below 2**31 (RFC 3261 §8.1.1.5). */
function cseqOf(value: string): CSeq | undefined {
  const v = trimLws(value);
  let i = 0;
  while (i < v.length && v.charCodeAt(i) >= 0x30 && v.charCodeAt(i) <= 0x39) i++;
  const seq = parseDecimal(v.slice(0, i), 10);
  if (seq === undefined || seq > 0x7fffffff) return undefined;
  const j = skipWsp(v, i);
  if (j === i) return undefined;
  const method = v.slice(j);
  if (!isToken(method)) return undefined;
  return { seq, method };
}

/** True when a header value is in name-addr form (`[display-name] <uri>`), not a bare addr-spec. */
function isNameAddrForm(a: string): boolean {
  return a.indexOf("<") !== -1;
}

/** Checks the mandatory headers and the headers the parser interprets; returns a reason or undefined. */
function validate(headers: SipHeaders, method: string | undefined): string | undefined {
  const missing = MANDATORY.filter((name) => !headers.has(name));
  if (missing.length === 1) return `missing ${missing[0]} header`;
  if (missing.length > 1) {
    return `missing ${missing.slice(0, -1).join(", ")} and ${missing[missing.length - 1]} headers`;
  }
  for (const name of SINGLE) if (headers.count(name) > 1) return `more than one ${name} header`;
  for (const v of headers.getAll("Via")) {
    try {
      parseVia(v);
    } catch (e) {
      return `bad Via header: ${(e as SipParseError).reason ?? e}`;
    }
  }
  for (const name of ["From", "To", "Contact", "Route", "Record-Route"]) {
    for (const v of headers.getAll(name)) {
      if (name === "Contact" && v === "*") continue;
      let params: Record<string, string | null>;
      try {
        params = parseAddress(v).params;
      } catch (e) {
        return `bad ${name} header: ${(e as SipParseError).reason ?? e}`;
      }
      // tag = token (RFC 3261 §25.1): a bare `;tag` would be read as no tag, and a To tag added to it in a response
      // made a To that no longer parses.
      if ((name === "From" || name === "To") && Object.hasOwn(params, "tag") && !params.tag) {
        return `bad ${name} header: tag parameter without a value`;
      }
      if ((name === "Route" || name === "Record-Route") && !isNameAddrForm(v)) {
        return `bad ${name} header: the URI must be enclosed in '<>'`;
      }
    }
  }
  const callId = headers.get("Call-ID")!;
  if (callId === "" || /[ \t]/.test(callId)) return `bad Call-ID '${excerpt(callId)}'`;
  const cseqText = headers.get("CSeq")!;
  const cseq = cseqOf(cseqText);
  if (!cseq) return `bad CSeq '${excerpt(cseqText)}'`;
  if (method !== undefined && cseq.method !== method) {
    return `CSeq method '${excerpt(cseq.method)}' does not match request method '${excerpt(method)}'`;
  }
  const mf = headers.get("Max-Forwards");
  if (mf !== undefined) {
    const n = parseDecimal(mf, 10);
    if (n === undefined) return `bad Max-Forwards '${excerpt(mf)}'`;
    if (n > 255) return `Max-Forwards '${excerpt(mf)}' out of range 0-255`;
  }
  const ct = headers.get("Content-Type");
  if (ct !== undefined) {
    const m = mediaType(ct);
    if (!m) return `bad Content-Type '${excerpt(ct)}'`;
    try {
      parseParams(m.rest);
    } catch (e) {
      return `bad Content-Type header: ${(e as SipParseError).reason ?? e}`;
    }
  }
  const cls = headers.getAll("Content-Length");
  let first: number | undefined;
  for (const v of cls) {
    // Leading zeros are legal (1*DIGIT); only the value is bounded.
    const n = parseDecimal(v, 10);
    if (n === undefined) return `bad Content-Length '${excerpt(v)}'`;
    if (first === undefined) first = n;
    else if (n !== first) return "conflicting Content-Length headers";
  }
  for (const d of headers.getAll("Date")) {
    if (!DATE_RE.test(d)) return `bad Date '${excerpt(d)}': not an RFC 1123 date in GMT`;
  }
  return undefined;
}

/** Splits `type/subtype *(;param)` into lower-cased type and subtype and the parameter text. */
function mediaType(value: string): { type: string; subtype: string; rest: string } | undefined {
  const v = trimLws(value);
  const slash = v.indexOf("/");
  if (slash <= 0) return undefined;
  const type = trimLws(v.slice(0, slash));
  let i = skipWsp(v, slash + 1);
  const ss = i;
  while (i < v.length && v.charCodeAt(i) !== 0x3b && !isWsp(v.charCodeAt(i))) i++;
  const subtype = v.slice(ss, i);
  if (!isToken(type) || !isToken(subtype)) return undefined;
  return { type: type.toLowerCase(), subtype: subtype.toLowerCase(), rest: v.slice(i) };
}

/**
 * Serializes a message: start line, headers in order (one line per entry), a
 * Content-Length computed from the body (any existing one is replaced), the
 * empty line and the body. Throws an `Error` when a header name, header value,
 * Request-URI or reason phrase holds CR or LF (they would inject header lines).
 *
 * @example
 * ```ts
 * const bytes = serializeMessage(createRequest({ method: "OPTIONS", uri: "sip:bob@example.com", headers: [] }));
 * ```
 */
export function serializeMessage(msg: SipMessage): Uint8Array {
  const start = msg.kind === "request"
    ? `${msg.method} ${msg.uri} ${msg.version}`
    : `${msg.version} ${msg.status} ${msg.reason}`;
  if (CR_LF.test(start)) throw new Error("SIP start line contains CR or LF");
  let head = start + "\r\n";
  msg.headers.forEach((name, value) => {
    if (name === "Content-Length") return;
    if (CR_LF.test(value) || CR_LF.test(name)) throw new Error(`SIP header ${excerpt(name)} contains CR or LF`);
    head += `${name}: ${value}\r\n`;
  });
  head += `Content-Length: ${msg.body.length}\r\n\r\n`;
  const h = encoder.encode(head);
  if (msg.body.length === 0) return h;
  const out = new Uint8Array(h.length + msg.body.length);
  out.set(h);
  out.set(msg.body, h.length);
  return out;
}

/** Reads a mandatory header or throws a {@linkcode SipParseError} naming it. */
function required(msg: SipMessage, name: string): string {
  const v = msg.headers.get(name);
  if (v === undefined) throw new SipParseError(`missing ${name} header`);
  return v;
}

/**
 * The topmost Via of a message, parsed.
 *
 * @example
 * ```ts
 * topVia(msg).params.branch; // "z9hG4bK..."
 * ```
 */
export function topVia(msg: SipMessage): Via {
  return parseVia(required(msg, "Via"));
}

/** CSeq sequence number and method. */
export interface CSeq {
  /** Sequence number. */
  seq: number;
  /** Method. */
  method: string;
}

/**
 * Parses a CSeq value (`4711 INVITE`): a number below 2**31 and a method token.
 *
 * @example
 * ```ts
 * parseCSeq("4711  INVITE"); // { seq: 4711, method: "INVITE" }
 * ```
 */
export function parseCSeq(value: string): CSeq {
  const c = cseqOf(value);
  if (!c) throw new SipParseError(`bad CSeq '${excerpt(value)}'`);
  return c;
}

/**
 * The CSeq of a message.
 *
 * @example
 * ```ts
 * getCSeq(msg).method; // "INVITE"
 * ```
 */
export function getCSeq(msg: SipMessage): CSeq {
  return parseCSeq(required(msg, "CSeq"));
}

/**
 * The Call-ID of a message.
 *
 * @example
 * ```ts
 * getCallId(msg); // "a84b4c76e66710@pc33.atlanta.com"
 * ```
 */
export function getCallId(msg: SipMessage): string {
  return required(msg, "Call-ID");
}

/**
 * The From header, parsed. Its URI may have any scheme (`sip:`, `tel:`,
 * `http:`...): narrow with `isSipUri` before reading SIP parts.
 *
 * @example
 * ```ts
 * getFrom(msg).params.tag; // "1928301774"
 * ```
 */
export function getFrom(msg: SipMessage): Address {
  return parseAddress(required(msg, "From"));
}

/**
 * The To header, parsed. Its URI may have any scheme (RFC 4475 §3.3.4 has
 * `To: isbn:2983792873`).
 *
 * @example
 * ```ts
 * getTo(msg).params.tag; // undefined for an initial INVITE
 * ```
 */
export function getTo(msg: SipMessage): Address {
  return parseAddress(required(msg, "To"));
}

/**
 * The `tag` parameter of a From/To header value (any URI scheme), or undefined.
 *
 * @example
 * ```ts
 * tagOf('"Bob" <sip:bob@b.com>;tag=a6c85cf'); // "a6c85cf"
 * ```
 */
export function tagOf(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  return addressParams(value).tag ?? undefined;
}

/** What {@linkcode checkRequestSemantics} needs to know about the UAS. */
export interface SemanticsPolicy {
  /** URI schemes accepted in the Request-URI (default `sip`, `sips`); others get 416. */
  schemes?: readonly string[];
  /** Option tags the UAS supports; a Require listing others gets 420 (default none). */
  supported?: readonly string[];
  /** Media types the UAS understands in request bodies (default `application/sdp`); others get 415. */
  accept?: readonly string[];
  /** Methods whose success answer carries a body (default `INVITE`: the SDP answer). */
  answerMethods?: readonly string[];
  /** Media types the UAS puts in those answers (default `application/sdp`); an Accept allowing none of them gets 406. */
  answerTypes?: readonly string[];
  /** Methods that create a dialog (default `INVITE`): their Contact must be one `sip:`/`sips:` URI. */
  dialogMethods?: readonly string[];
}

/** Why a well-formed request must be rejected, and how. */
export interface RequestProblem {
  /** Status to answer with (400, 406, 415, 416, 420). */
  status: number;
  /** Reason phrase to send (for 400 it says what is wrong; no raw request bytes). */
  reason: string;
  /** What is wrong, for a log line. */
  detail: string;
  /** Headers the response must carry (`Unsupported` for 420, `Accept`/`Accept-Encoding` for 415). */
  headers: [string, string][];
}

/** True when some media range of the Accept values (`type/subtype`, `type/*`, `*\/*`, q > 0) matches `type`. */
function accepts(ranges: string[], type: string): boolean {
  const [t, st] = type.toLowerCase().split("/");
  for (const r of ranges) {
    const m = mediaType(r);
    if (!m) continue;
    let q = "1";
    try {
      q = parseParams(m.rest).q ?? "1";
    } catch {
      continue;
    }
    if (Number(q) === 0) continue;
    if ((m.type === "*" || m.type === t) && (m.subtype === "*" || m.subtype === st)) return true;
  }
  return false;
}

/**
 * Checks what a UAS must verify in a request that parsed (RFC 3261 §8.2.2,
 * §8.2.3, RFC 4475 §3.2–§3.3), before processing it. Returns the response to
 * send, or undefined when the request can be processed. Never for ACK (which
 * gets no response): returns undefined.
 *
 * In order: a Request-URI scheme the UAS does not serve → 416 (RFC 4475
 * §3.3.2 `unkscm`, §3.3.3 `novelsc`); a top Via branch that is only the magic
 * cookie `z9hG4bK` → 400 (§3.2.1 `badbranch`, best sent statelessly); a
 * Require with option tags the UAS does not support → 420 with Unsupported
 * (§3.3.5 `bext01`; Proxy-Require is for proxies and ignored); a body without
 * Content-Type → 400, of a type or encoding the UAS does not understand → 415
 * with Accept (§3.3.6 `invut`); an INVITE whose Accept allows no type the
 * answer would carry → 406 (§3.3.15 `sdp01`). Before Require: an INVITE whose
 * Contact is not one `sip:`/`sips:` URI → 400 (RFC 3261 §8.1.1.8; with
 * `Contact: <name:John_Smith>` as in §3.3.4 a dialog could not be routed).
 *
 * @example
 * ```ts
 * const problem = checkRequestSemantics(req, { supported: ["timer"] });
 * if (problem) tx.respond(createResponse(req, problem.status, problem.reason, { toTag, headers: problem.headers }));
 * ```
 */
export function checkRequestSemantics(req: SipRequest, policy: SemanticsPolicy = {}): RequestProblem | undefined {
  if (req.method === "ACK") return undefined;
  const bad = (detail: string): RequestProblem => ({
    status: 400,
    reason: `Bad Request (${detail})`,
    detail,
    headers: [],
  });
  const schemes = policy.schemes ?? ["sip", "sips"];
  let scheme: string;
  try {
    scheme = parseAnyUri(req.uri).scheme;
  } catch (e) {
    return bad(`bad Request-URI: ${(e as SipParseError).reason ?? e}`);
  }
  if (!schemes.includes(scheme)) {
    return {
      status: 416,
      reason: "Unsupported URI Scheme",
      detail: `Request-URI scheme '${excerpt(scheme)}' is not served here`,
      headers: [],
    };
  }
  const via = req.headers.get("Via");
  if (via !== undefined) {
    let branch: string | null | undefined;
    try {
      branch = parseVia(via).params.branch;
    } catch (e) {
      return bad(`bad Via header: ${(e as SipParseError).reason ?? e}`);
    }
    if (branch === "z9hG4bK") return bad("Via branch is the magic cookie z9hG4bK without an identifier");
  }
  if ((policy.dialogMethods ?? ["INVITE"]).includes(req.method)) {
    // RFC 3261 §8.1.1.8: one Contact, a SIP or SIPS URI (absent is tolerated: RFC 2543, RFC 4475 §3.4.1).
    const contacts = req.headers.getAll("Contact");
    if (contacts.length > 1) return bad(`more than one Contact in ${excerpt(req.method)}`);
    if (contacts.length === 1) {
      let uri: Uri | undefined;
      try {
        uri = contacts[0] === "*" ? undefined : parseAddress(contacts[0]).uri;
      } catch (e) {
        return bad(`bad Contact header: ${(e as SipParseError).reason ?? e}`);
      }
      if (!uri || !isSipUri(uri)) return bad(`Contact of ${excerpt(req.method)} must be a sip: or sips: URI`);
    }
  }
  if (req.method !== "CANCEL") {
    const supported = policy.supported ?? [];
    const unknown: string[] = [];
    for (const v of req.headers.getAll("Require")) {
      for (const tag of v.split(",")) {
        const t = trimLws(tag);
        if (t !== "" && !supported.includes(t) && !unknown.includes(t)) unknown.push(t);
      }
    }
    if (unknown.length > 0) {
      return {
        status: 420,
        reason: "Bad Extension",
        detail: `unsupported option tags required: ${excerpt(unknown.join(", "), 80)}`,
        headers: [["Unsupported", unknown.join(", ")]],
      };
    }
  }
  const accept = policy.accept ?? ["application/sdp"];
  if (req.body.length > 0) {
    const ct = req.headers.get("Content-Type");
    if (ct === undefined) return bad("body without Content-Type");
    const m = mediaType(ct);
    if (!m) return bad(`bad Content-Type '${excerpt(ct)}'`);
    const type = `${m.type}/${m.subtype}`;
    if (!accept.some((a) => a.toLowerCase() === type)) {
      return {
        status: 415,
        reason: "Unsupported Media Type",
        detail: `body of type '${excerpt(type)}'`,
        headers: [["Accept", accept.join(", ")]],
      };
    }
    for (const enc of req.headers.getAll("Content-Encoding")) {
      if (trimLws(enc).toLowerCase() !== "identity") {
        return {
          status: 415,
          reason: "Unsupported Media Type",
          detail: `body with Content-Encoding '${excerpt(enc)}'`,
          headers: [["Accept-Encoding", "identity"]],
        };
      }
    }
  }
  if ((policy.answerMethods ?? ["INVITE"]).includes(req.method) && req.headers.has("Accept")) {
    const answerTypes = policy.answerTypes ?? ["application/sdp"];
    const ranges = req.headers.getAll("Accept");
    if (!answerTypes.some((t) => accepts(ranges, t))) {
      return {
        status: 406,
        reason: "Not Acceptable",
        detail: `Accept '${excerpt(ranges.join(", "), 80)}' allows none of ${answerTypes.join(", ")}`,
        headers: [],
      };
    }
  }
  return undefined;
}

/**
 * The body as UTF-8 text.
 *
 * @example
 * ```ts
 * bodyText(invite); // "v=0\r\no=..."
 * ```
 */
export function bodyText(msg: SipMessage): string {
  return decoder.decode(msg.body);
}

/** What {@linkcode createRequest} needs. */
export interface RequestInit {
  /** Method. */
  method: string;
  /** Request-URI. */
  uri: string | SipUri;
  /** Headers in order. */
  headers?: Iterable<readonly [string, string]>;
  /** Body (text is encoded as UTF-8). */
  body?: string | Uint8Array;
}

/**
 * Builds a request. Content-Length is added on serialization.
 *
 * @example
 * ```ts
 * const req = createRequest({ method: "OPTIONS", uri: "sip:bob@127.0.0.1", headers: [["Max-Forwards", "70"]] });
 * ```
 */
export function createRequest(init: RequestInit): SipRequest {
  return {
    kind: "request",
    method: init.method,
    uri: typeof init.uri === "string" ? init.uri : formatUri(init.uri),
    version: "SIP/2.0",
    headers: new SipHeaders(init.headers ?? []),
    body: toBytes(init.body),
  };
}

/** Options for {@linkcode createResponse}. */
export interface ResponseInit {
  /** To tag to add when the request's To has none (ignored for 100). */
  toTag?: string;
  /** Extra headers appended after the copied ones. */
  headers?: Iterable<readonly [string, string]>;
  /** Body (text is encoded as UTF-8). */
  body?: string | Uint8Array;
}

/**
 * Builds a response to a request (RFC 3261 §8.2.6): Via (all), From, To (with
 * `toTag` added when absent), Call-ID and CSeq are copied; Record-Route too for
 * 101–299 responses to INVITE (§12.1.1); Timestamp for 100 (§8.2.6.1).
 * Works on a {@linkcode PartialRequest} too (for 400 answers to malformed requests).
 *
 * @example
 * ```ts
 * const ringing = createResponse(invite, 180, undefined, { toTag: "a6c85cf" });
 * // ringing.reason === "Ringing"
 * ```
 */
export function createResponse(
  req: SipRequest | PartialRequest,
  status: number,
  reason?: string,
  init: ResponseInit = {},
): SipResponse {
  const src = req.headers instanceof SipHeaders ? req.headers : new SipHeaders(req.headers);
  const h = new SipHeaders();
  for (const v of src.getAll("Via")) h.append("Via", v);
  const from = src.get("From");
  if (from !== undefined) h.append("From", from);
  let to = src.get("To");
  if (to !== undefined) {
    if (status > 100 && init.toTag && !/;\s*tag\s*=/i.test(to.slice(to.lastIndexOf(">") + 1))) {
      to += `;tag=${init.toTag}`;
    }
    h.append("To", to);
  }
  for (const name of ["Call-ID", "CSeq"]) {
    const v = src.get(name);
    if (v !== undefined) h.append(name, v);
  }
  if (req.method === "INVITE" && status > 100 && status < 300) {
    for (const v of src.getAll("Record-Route")) h.append("Record-Route", v);
  }
  if (status === 100) {
    const ts = src.get("Timestamp");
    if (ts !== undefined) h.append("Timestamp", ts);
  }
  for (const [n, v] of init.headers ?? []) h.append(n, v);
  return {
    kind: "response",
    status,
    reason: reason ?? reasonPhrase(status),
    version: "SIP/2.0",
    headers: h,
    body: toBytes(init.body),
  };
}

function toBytes(body: string | Uint8Array | undefined): Uint8Array {
  if (body === undefined) return EMPTY;
  return typeof body === "string" ? encoder.encode(body) : body;
}

/** Default reason phrases of RFC 3261 §21 (and a few later ones). */
export const REASON_PHRASES: Readonly<Record<number, string>> = {
  100: "Trying",
  180: "Ringing",
  181: "Call Is Being Forwarded",
  182: "Queued",
  183: "Session Progress",
  200: "OK",
  202: "Accepted",
  300: "Multiple Choices",
  301: "Moved Permanently",
  302: "Moved Temporarily",
  305: "Use Proxy",
  380: "Alternative Service",
  400: "Bad Request",
  401: "Unauthorized",
  402: "Payment Required",
  403: "Forbidden",
  404: "Not Found",
  405: "Method Not Allowed",
  406: "Not Acceptable",
  407: "Proxy Authentication Required",
  408: "Request Timeout",
  410: "Gone",
  413: "Request Entity Too Large",
  414: "Request-URI Too Long",
  415: "Unsupported Media Type",
  416: "Unsupported URI Scheme",
  420: "Bad Extension",
  421: "Extension Required",
  423: "Interval Too Brief",
  480: "Temporarily Unavailable",
  481: "Call/Transaction Does Not Exist",
  482: "Loop Detected",
  483: "Too Many Hops",
  484: "Address Incomplete",
  485: "Ambiguous",
  486: "Busy Here",
  487: "Request Terminated",
  488: "Not Acceptable Here",
  491: "Request Pending",
  493: "Undecipherable",
  500: "Server Internal Error",
  501: "Not Implemented",
  502: "Bad Gateway",
  503: "Service Unavailable",
  504: "Server Time-out",
  505: "Version Not Supported",
  513: "Message Too Large",
  600: "Busy Everywhere",
  603: "Decline",
  604: "Does Not Exist Anywhere",
  606: "Not Acceptable",
};

/**
 * The default reason phrase for a status code (falls back to the class name).
 *
 * @example
 * ```ts
 * reasonPhrase(486); // "Busy Here"
 * reasonPhrase(499); // "Client Error"
 * ```
 */
export function reasonPhrase(status: number): string {
  return REASON_PHRASES[status] ??
    ["", "Provisional", "Success", "Redirection", "Client Error", "Server Error", "Global Failure"][
      Math.floor(status / 100)
    ] ?? "Unknown";
}
