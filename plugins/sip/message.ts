/**
 * SIP messages (RFC 3261 §7): types, a strict but tolerant parser for UDP
 * datagrams, a serializer, accessors for the headers every message carries, and
 * builders for requests and responses (§8.1.1, §8.2.6).
 *
 * @module
 */
import { type PartialRequest, SipParseError } from "./errors.ts";
import { canonicalName, SipHeaders, splitHeaderValue } from "./headers.ts";
import { isToken } from "./syntax.ts";
import { formatUri, type NameAddr, parseNameAddr, parseUri, type SipUri } from "./uri.ts";
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

/** Limits applied by {@linkcode parseMessage}. */
export interface ParseOptions {
  /** Largest accepted message in bytes (default 65 535, the largest UDP payload). */
  maxSize?: number;
  /** Largest number of header fields after list splitting (default 256). */
  maxHeaders?: number;
  /** Longest header line after unfolding, in characters (default 8 192). */
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
const RESPONSE_RE = /^SIP\/(\d+\.\d+)[ \t]+(\d{3})(?:[ \t]+(.*))?$/i;
const REQUEST_RE = /^(\S+)[ \t]+(\S+)[ \t]+(SIP\/\S+)$/i;
const ABSOLUTE_URI_RE = /^[A-Za-z][A-Za-z0-9+.\-]*:\S+$/;

/**
 * Parses one SIP message from a UDP datagram (or a string).
 *
 * - Leading CRLFs are skipped; lines may end in CRLF or bare LF; folded lines
 *   (starting with SP/HTAB) are joined with one space.
 * - Header names are case-insensitive and compact forms are expanded; list
 *   headers are split into one entry per element (not inside quotes or `<>`).
 * - Via, From, To, Call-ID and CSeq are mandatory and validated.
 * - With Content-Length, the body is cut to it (a longer datagram is truncated;
 *   a shorter one is an error); without it, the body is the rest of the datagram.
 *
 * Throws {@linkcode SipParseError} with a precise `reason`; for requests whose
 * request line could be read, `partial` holds the request line and headers read.
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
  const head = decoder.decode(bytes.subarray(start, headEnd));
  const lines = head.split("\n");
  const first = stripCr(lines[0]);
  if (first.length > maxLine) throw new SipParseError(`start line too long (limit ${maxLine})`);

  // Start line.
  let request: { method: string; uri: string; version: string } | undefined;
  let status = 0;
  let reason = "";
  let version: string;
  const rm = RESPONSE_RE.exec(first);
  if (rm) {
    version = "SIP/" + rm[1];
    if (rm[1] !== "2.0") throw new SipParseError(`unsupported SIP version '${version}'`);
    status = Number(rm[2]);
    if (status < 100 || status > 699) throw new SipParseError(`bad status code ${rm[2]}`);
    reason = rm[3] ?? "";
  } else {
    const qm = REQUEST_RE.exec(first);
    if (!qm) throw new SipParseError(first.startsWith("SIP/") ? "bad status line" : "bad request line");
    if (!isToken(qm[1])) throw new SipParseError(`bad method '${qm[1]}'`);
    request = { method: qm[1], uri: qm[2], version: qm[3].toUpperCase() };
    version = request.version;
  }
  const partialOf = (headers: SipHeaders): PartialRequest | undefined =>
    request ? { method: request.method, uri: request.uri, headers: headers.toArray() } : undefined;

  // Header lines: unfold, then split.
  const headers = new SipHeaders();
  let error: string | undefined;
  const fail = (reason: string) => {
    error ??= reason;
  };
  const unfolded: string[] = [];
  for (let i = 1; i < lines.length; i++) {
    const line = stripCr(lines[i]);
    if (line === "") continue;
    const c = line.charCodeAt(0);
    if (c === 32 || c === 9) {
      if (unfolded.length === 0) {
        fail("continuation line before first header");
        continue;
      }
      unfolded[unfolded.length - 1] += " " + line.trim();
    } else unfolded.push(line);
  }
  for (const line of unfolded) {
    if (line.length > maxLine) {
      fail(`header line too long (limit ${maxLine})`);
      continue;
    }
    const colon = line.indexOf(":");
    const name = colon === -1 ? "" : line.slice(0, colon).trimEnd();
    if (colon === -1 || !isToken(name)) {
      fail(`bad header line '${line.length > 40 ? line.slice(0, 40) + "..." : line}'`);
      continue;
    }
    const value = line.slice(colon + 1).trim();
    let parts: string[];
    try {
      parts = splitHeaderValue(name, value);
    } catch (e) {
      fail(`bad ${canonicalName(name)} header: ${(e as SipParseError).reason ?? e}`);
      continue;
    }
    for (const p of parts) headers.append(name, p);
    if (headers.size > maxHeaders) {
      throw new SipParseError(`too many headers (limit ${maxHeaders})`, partialOf(headers));
    }
  }

  if (request) {
    if (request.version !== "SIP/2.0") fail(`unsupported SIP version '${request.version}'`);
    const u = request.uri;
    if (/^sips?:/i.test(u)) {
      try {
        parseUri(u);
      } catch (e) {
        fail(`bad Request-URI: ${(e as SipParseError).reason ?? e}`);
      }
    } else if (!ABSOLUTE_URI_RE.test(u)) fail(`bad Request-URI '${u}'`);
  }
  if (error === undefined) {
    const problem = validate(headers, request?.method);
    if (problem) fail(problem);
  }
  if (error !== undefined) throw new SipParseError(error, partialOf(headers));

  // Body framing.
  let body = EMPTY;
  const cl = headers.get("Content-Length");
  const available = bytes.length - bodyStart;
  if (cl !== undefined) {
    const n = Number(cl);
    if (n > available) throw new SipParseError("Content-Length larger than body", partialOf(headers));
    if (n > 0) body = bytes.slice(bodyStart, bodyStart + n);
  } else if (available > 0) body = bytes.slice(bodyStart);

  if (request) return { kind: "request", method: request.method, uri: request.uri, version, headers, body };
  return { kind: "response", status, reason, version, headers, body };
}

function stripCr(line: string): string {
  return line.charCodeAt(line.length - 1) === 13 ? line.slice(0, -1) : line;
}

/** Checks the mandatory headers and the framing headers; returns a reason or undefined. */
function validate(headers: SipHeaders, method: string | undefined): string | undefined {
  for (const name of MANDATORY) if (!headers.has(name)) return `missing ${name} header`;
  for (const name of SINGLE) if (headers.getAll(name).length > 1) return `more than one ${name} header`;
  for (const v of headers.getAll("Via")) {
    try {
      parseVia(v);
    } catch (e) {
      return `bad Via header: ${(e as SipParseError).reason ?? e}`;
    }
  }
  for (const name of ["From", "To"]) {
    try {
      parseNameAddr(headers.get(name)!);
    } catch (e) {
      return `bad ${name} header: ${(e as SipParseError).reason ?? e}`;
    }
  }
  const callId = headers.get("Call-ID")!;
  if (callId === "" || /\s/.test(callId)) return `bad Call-ID '${callId}'`;
  const cseq = headers.get("CSeq")!;
  const m = /^(\d{1,10})\s+(\S+)$/.exec(cseq);
  if (!m || Number(m[1]) > 0x7fffffff || !isToken(m[2])) return `bad CSeq '${cseq}'`;
  if (method !== undefined && m[2] !== method) {
    return `CSeq method '${m[2]}' does not match request method '${method}'`;
  }
  const mf = headers.get("Max-Forwards");
  if (mf !== undefined && !/^\d{1,10}$/.test(mf)) return `bad Max-Forwards '${mf}'`;
  const cls = headers.getAll("Content-Length");
  for (const v of cls) {
    // Leading zeros are legal (1*DIGIT); only the value is bounded.
    if (!/^\d+$/.test(v) || v.replace(/^0+(?=\d)/, "").length > 10) return `bad Content-Length '${v}'`;
    if (Number(v) !== Number(cls[0])) return "conflicting Content-Length headers";
  }
  return undefined;
}

/**
 * Serializes a message: start line, headers in order (one line per entry), a
 * Content-Length computed from the body (any existing one is replaced), the
 * empty line and the body.
 *
 * @example
 * ```ts
 * const bytes = serializeMessage(createRequest({ method: "OPTIONS", uri: "sip:bob@example.com", headers: [] }));
 * ```
 */
export function serializeMessage(msg: SipMessage): Uint8Array {
  let head = msg.kind === "request"
    ? `${msg.method} ${msg.uri} ${msg.version}\r\n`
    : `${msg.version} ${msg.status} ${msg.reason}\r\n`;
  for (const [name, value] of msg.headers) {
    if (name === "Content-Length") continue;
    head += `${name}: ${value}\r\n`;
  }
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
 * Parses a CSeq value (`4711 INVITE`).
 *
 * @example
 * ```ts
 * parseCSeq("4711  INVITE"); // { seq: 4711, method: "INVITE" }
 * ```
 */
export function parseCSeq(value: string): CSeq {
  const m = /^\s*(\d{1,10})\s+(\S+)\s*$/.exec(value);
  if (!m) throw new SipParseError(`bad CSeq '${value}'`);
  return { seq: Number(m[1]), method: m[2] };
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
 * The From header, parsed.
 *
 * @example
 * ```ts
 * getFrom(msg).params.tag; // "1928301774"
 * ```
 */
export function getFrom(msg: SipMessage): NameAddr {
  return parseNameAddr(required(msg, "From"));
}

/**
 * The To header, parsed.
 *
 * @example
 * ```ts
 * getTo(msg).params.tag; // undefined for an initial INVITE
 * ```
 */
export function getTo(msg: SipMessage): NameAddr {
  return parseNameAddr(required(msg, "To"));
}

/**
 * The `tag` parameter of a From/To header value, or undefined.
 *
 * @example
 * ```ts
 * tagOf('"Bob" <sip:bob@b.com>;tag=a6c85cf'); // "a6c85cf"
 * ```
 */
export function tagOf(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  return parseNameAddr(value).params.tag ?? undefined;
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
