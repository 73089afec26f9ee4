/**
 * The Via header (RFC 3261 §20.42, §18.2.2) with the `rport` extension (RFC 3581).
 *
 * @module
 */
import { SipParseError } from "./errors.ts";
import {
  excerpt,
  formatHostPort,
  formatParams,
  isDigits,
  isIpAddress,
  isTokenChar,
  isWsp,
  type Params,
  parseHostPort,
  parseParams,
  skipWsp,
} from "./syntax.ts";

/** One parsed Via value (`SIP/2.0/UDP host:port;branch=...;received=...;rport=...`). */
export interface Via {
  /** Protocol name and version, normally `SIP/2.0`. */
  protocol: string;
  /** Transport in upper case (`UDP`, `TCP`, `TLS`...). */
  transport: string;
  /** sent-by host (IPv6 without brackets). A host name is never resolved by the parser. */
  host: string;
  /** sent-by port, when given. */
  port?: number;
  /** Parameters (`branch`, `received`, `rport`, `maddr`, `ttl`...), names lower-cased; `rport: null` means "requested". */
  params: Params;
}

function readToken(s: string, i: number): number {
  while (i < s.length && isTokenChar(s.charCodeAt(i))) i++;
  return i;
}

/** Index just after the comment that starts at `s[i]` (`(`): nested comments and quoted-pairs allowed. */
function skipComment(s: string, i: number): number {
  let depth = 0;
  for (; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 0x5c) i++;
    else if (c === 0x28) depth++;
    else if (c === 0x29 && --depth === 0) return i + 1;
  }
  throw new SipParseError("unterminated comment in Via");
}

/**
 * Parses one Via value: `sent-protocol LWS sent-by *(SEMI via-params)` with
 * whitespace allowed around `/`, `:`, `;` and `=` (RFC 3261 §25.1), and a
 * trailing comment in parentheses (RFC 2543; nested comments allowed), which is
 * ignored. Checks the parameters RFC 3261 and RFC 3581 define: `branch` has a
 * value, `received` is an IP address, `rport` is empty or a port, `ttl` is
 * 0–255, `maddr` is a host. Empty parameters (`;;`), repeated ones and more
 * than `MAX_PARAMS` (syntax.ts) are errors.
 *
 * @example
 * ```ts
 * const v = parseVia("SIP/2.0/UDP [2001:db8::9]:5070;branch=z9hG4bK776;rport");
 * // v.host === "2001:db8::9", v.port === 5070, v.params.branch === "z9hG4bK776", v.params.rport === null
 * ```
 */
export function parseVia(value: string): Via {
  // A message's top Via is read several times while it is handled (validation, Via stamping, transaction key,
  // request checks, each response's target): the last value parsed is kept, and each caller gets its own copy.
  if (value === lastValue && lastVia) return copyVia(lastVia);
  const via = parseViaText(value);
  lastValue = value;
  lastVia = copyVia(via);
  return via;
}

/** The last value {@linkcode parseVia} parsed, and a private copy of its result. */
let lastValue: string | undefined;
let lastVia: Via | undefined;

/** A copy a caller may change (its params too) without touching the original. */
function copyVia(v: Via): Via {
  return { ...v, params: { ...v.params } };
}

function parseViaText(value: string): Via {
  const s = value;
  let i = skipWsp(s, 0);
  const fields: string[] = [];
  const names = ["protocol name", "protocol version", "transport"];
  for (let f = 0; f < 3; f++) {
    if (f > 0) {
      if (s.charCodeAt(i) !== 0x2f) {
        throw new SipParseError(
          i >= s.length ? `missing ${names[f]}` : `expected '/' before '${excerpt(s.slice(i), 20)}'`,
        );
      }
      i = skipWsp(s, i + 1);
    }
    const start = i;
    i = readToken(s, i);
    if (i === start) throw new SipParseError(`missing ${names[f]}`);
    fields.push(s.slice(start, i));
    i = skipWsp(s, i);
  }
  if (i >= s.length || s.charCodeAt(i) === 0x3b) throw new SipParseError("missing sent-by host");
  if (!isWsp(s.charCodeAt(i - 1))) throw new SipParseError(`expected whitespace before '${excerpt(s.slice(i), 20)}'`);
  // sent-by = host [COLON port]
  const hostStart = i;
  if (s.charCodeAt(i) === 0x5b) {
    const close = s.indexOf("]", i);
    if (close === -1) throw new SipParseError("unterminated IPv6 reference in sent-by");
    i = close + 1;
  } else {
    while (i < s.length) {
      const c = s.charCodeAt(i);
      if (isWsp(c) || c === 0x3a || c === 0x3b || c === 0x28) break;
      i++;
    }
  }
  let hostPort = s.slice(hostStart, i);
  i = skipWsp(s, i);
  if (s.charCodeAt(i) === 0x3a) {
    i = skipWsp(s, i + 1);
    const ps = i;
    while (i < s.length && s.charCodeAt(i) >= 0x30 && s.charCodeAt(i) <= 0x39) i++;
    hostPort += ":" + s.slice(ps, i);
    i = skipWsp(s, i);
  }
  const hp = parseHostPort(hostPort);
  // Parameters run up to a comment ('(' outside a quoted string) or the end.
  let end = i;
  let inQuote = false;
  for (; end < s.length; end++) {
    const c = s.charCodeAt(end);
    if (inQuote) {
      if (c === 0x5c) end++;
      else if (c === 0x22) inQuote = false;
    } else if (c === 0x22) inQuote = true;
    else if (c === 0x28) break;
  }
  if (end > i && s.charCodeAt(i) !== 0x3b) {
    throw new SipParseError(`unexpected '${excerpt(s.slice(i), 20)}' after sent-by`);
  }
  const params = parseParams(s.slice(i, end), { where: "Via" });
  if (end < s.length) {
    const rest = skipWsp(s, skipComment(s, end));
    if (rest !== s.length) throw new SipParseError(`unexpected '${excerpt(s.slice(rest), 20)}' after comment`);
  }
  const via: Via = {
    protocol: `${fields[0]}/${fields[1]}`.toUpperCase(),
    transport: fields[2].toUpperCase(),
    host: hp.host,
    params,
  };
  if (hp.port !== undefined) via.port = hp.port;
  checkViaParams(params);
  return via;
}

function checkViaParams(p: Params): void {
  if (p.branch === null) throw new SipParseError("branch parameter without a value");
  const received = p.received;
  if (received !== undefined && (received === null || !isIpAddress(received))) {
    throw new SipParseError(`bad received '${excerpt(received ?? "")}': not an IP address`);
  }
  const rport = p.rport;
  if (rport !== undefined && rport !== null && (!isDigits(rport) || rport.length > 5 || +rport < 1 || +rport > 65535)) {
    throw new SipParseError(`bad rport '${excerpt(rport)}'`);
  }
  const ttl = p.ttl;
  if (ttl !== undefined && (ttl === null || !isDigits(ttl) || ttl.length > 3 || +ttl > 255)) {
    throw new SipParseError(`bad ttl '${excerpt(ttl ?? "")}'`);
  }
  const maddr = p.maddr;
  if (maddr !== undefined) {
    if (maddr === null) throw new SipParseError("maddr parameter without a value");
    // A bare IPv6 address is accepted as well as a bracketed one.
    parseHostPort(maddr.includes(":") && !maddr.startsWith("[") ? `[${maddr}]` : maddr);
  }
}

/**
 * Formats a Via value.
 *
 * @example
 * ```ts
 * formatVia({ protocol: "SIP/2.0", transport: "UDP", host: "10.0.0.1", port: 5060, params: { branch: "z9hG4bK1", rport: null } });
 * // "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1;rport"
 * ```
 */
export function formatVia(via: Via): string {
  return `${via.protocol}/${via.transport} ${formatHostPort(via.host, via.port)}${formatParams(via.params)}`;
}

/**
 * Where a response to a request carrying this Via is sent over UDP (RFC 3261
 * §18.2.2, RFC 3581 §4): the `received` address (or the sent-by host when it
 * has none: the transport stamps `received` whenever the sent-by host is not
 * the packet's source IP), at the `rport` value (or the sent-by port, default
 * 5060). A `maddr` is not used: a response goes back to where the request came
 * from, never to a third party the request names.
 *
 * @example
 * ```ts
 * responseTarget(parseVia("SIP/2.0/UDP a.example;received=192.0.2.1;rport=4000;branch=z9hG4bKx"));
 * // { hostname: "192.0.2.1", port: 4000 }
 * responseTarget(parseVia("SIP/2.0/UDP a.example:5070;maddr=198.51.100.9;received=192.0.2.1;branch=z9hG4bKy"));
 * // { hostname: "192.0.2.1", port: 5070 }
 * ```
 */
export function responseTarget(via: Via): { hostname: string; port: number } {
  const received = via.params.received;
  const hostname = received ? stripBrackets(received) : via.host;
  const rport = via.params.rport;
  const port = rport ? Number(rport) : via.port ?? 5060;
  return { hostname, port };
}

function stripBrackets(h: string): string {
  return h.startsWith("[") && h.endsWith("]") ? h.slice(1, -1) : h;
}
