/**
 * Low-level lexical helpers for SIP header values (RFC 3261 §25.1): tokens,
 * quoted strings with escapes, splitting on separators outside quotes and
 * angle brackets, and `;name=value` parameter lists.
 *
 * Every function here scans its input once, left to right, with character
 * tables instead of backtracking regular expressions: the time is linear in the
 * input whatever it holds, so a hostile datagram costs no more than its length.
 *
 * @module
 */
import { excerpt } from "../../core/text.ts";
import { SipParseError } from "./errors.ts";

/** {@linkcode excerpt}, from `core/text.ts`: the SIP modules quote untrusted text with it. */
export { excerpt };

/** Parameters as an ordered record: lower-cased name → value, or `null` for a flag (`;lr`). */
export type Params = Record<string, string | null>;

/**
 * Most parameters accepted in one parameter list (of a header value or a URI),
 * and most headers in one URI: more is refused as `too many parameters`.
 */
export const MAX_PARAMS = 64;

function table(chars: string, ranges: [number, number][] = []): Uint8Array {
  const t = new Uint8Array(128);
  for (let i = 0; i < chars.length; i++) t[chars.charCodeAt(i)] = 1;
  for (const [a, b] of ranges) for (let c = a; c <= b; c++) t[c] = 1;
  return t;
}

const ALNUM: [number, number][] = [[0x30, 0x39], [0x41, 0x5a], [0x61, 0x7a]];
/** `token` characters (RFC 3261 §25.1). */
const TOKEN = table("-.!%*_+`'~", ALNUM);
/** Characters of a generic parameter value that is not a quoted string: token, plus host (`[v6]`, `a:b`). */
const GEN_VALUE = table("-.!%*_+`'~:[]", ALNUM);
/** Host names, IPv4 addresses (underscore tolerated, as many stacks emit it). */
const HOST = table("-._", ALNUM);
/** Inside `[...]` of an IPv6 reference. */
const IPV6 = table(":.", [[0x30, 0x39], [0x41, 0x46], [0x61, 0x66]]);
const DIGIT = table("", [[0x30, 0x39]]);
const HEX = table("", [[0x30, 0x39], [0x41, 0x46], [0x61, 0x66]]);

/** True when the character code is a `token` character. */
export function isTokenChar(c: number): boolean {
  return c < 128 && TOKEN[c] === 1;
}

/** True for SP and HTAB, the whitespace of a header value once lines are unfolded. */
export function isWsp(c: number): boolean {
  return c === 32 || c === 9;
}

/** True for control characters (0x00–0x1F and 0x7F) other than HTAB. */
export function isCtl(c: number): boolean {
  return (c < 32 && c !== 9) || c === 127;
}

/**
 * True when `s` is a non-empty RFC 3261 token.
 *
 * @example
 * ```ts
 * isToken("INVITE"); // true
 * isToken("a b"); // false
 * ```
 */
export function isToken(s: string): boolean {
  if (s.length === 0) return false;
  for (let i = 0; i < s.length; i++) if (!isTokenChar(s.charCodeAt(i))) return false;
  return true;
}

/** True when `s` is non-empty and only decimal digits. */
export function isDigits(s: string): boolean {
  if (s.length === 0) return false;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 128 || DIGIT[c] !== 1) return false;
  }
  return true;
}

/** True when `c` is an ASCII hex digit. */
export function isHexChar(c: number): boolean {
  return c < 128 && HEX[c] === 1;
}

/** Index of the first character at or after `i` that is not SP/HTAB. */
export function skipWsp(s: string, i: number): number {
  while (i < s.length && isWsp(s.charCodeAt(i))) i++;
  return i;
}

/**
 * Splits `s` on `sep` where it is outside double quotes (honouring `\` escapes)
 * and outside `<...>`. Pieces are trimmed; empty pieces are kept. Angle
 * brackets do not nest (a URI cannot contain `<`): inside them only `>` counts.
 * Throws {@linkcode SipParseError} on an unterminated quoted string.
 *
 * @example
 * ```ts
 * splitOutside('"a, b" <sip:x>, <sip:y;p=1,2>', ","); // ['"a, b" <sip:x>', '<sip:y;p=1,2>']
 * ```
 */
export function splitOutside(s: string, sep: string): string[] {
  if (s.indexOf(sep) === -1) return [s.trim()];
  const sc = sep.charCodeAt(0);
  const out: string[] = [];
  let start = 0;
  let inQuote = false;
  let inAngle = false;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (inQuote) {
      if (c === 0x5c) i++;
      else if (c === 0x22) inQuote = false;
    } else if (inAngle) {
      if (c === 0x3e) inAngle = false;
    } else if (c === 0x22) inQuote = true;
    else if (c === 0x3c) inAngle = true;
    else if (c === sc) {
      out.push(s.slice(start, i).trim());
      start = i + 1;
    }
  }
  if (inQuote) throw new SipParseError("unterminated quoted string");
  out.push(s.slice(start).trim());
  return out;
}

/**
 * Reads a quoted string starting at `s[start]` (which must be `"`). Returns the
 * unescaped content and the index just after the closing quote. A quoted-pair
 * may escape any character but CR and LF (RFC 3261 §25.1).
 *
 * @example
 * ```ts
 * readQuoted('"A \\"B\\"" <sip:x>', 0); // { value: 'A "B"', end: 10 }
 * ```
 */
export function readQuoted(s: string, start: number): { value: string; end: number } {
  if (s.charCodeAt(start) !== 0x22) throw new SipParseError("expected quoted string");
  const parts: string[] = [];
  let from = start + 1;
  for (let i = start + 1; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 0x5c) {
      const e = s.charCodeAt(i + 1);
      if (i + 1 >= s.length || e === 13 || e === 10) break;
      parts.push(s.slice(from, i));
      from = ++i;
    } else if (c === 0x22) {
      parts.push(s.slice(from, i));
      return { value: parts.length === 1 ? parts[0] : parts.join(""), end: i + 1 };
    } else if (isCtl(c)) {
      throw new SipParseError(`control character 0x${c.toString(16).padStart(2, "0")} in quoted string`);
    }
  }
  throw new SipParseError("unterminated quoted string");
}

/**
 * Quotes `s` as an RFC 3261 quoted-string, escaping `"` and `\` (and other
 * control characters, as quoted-pairs). CR and LF cannot be carried by a
 * quoted-string and become spaces.
 *
 * @example
 * ```ts
 * quote('say "hi"'); // '"say \\"hi\\""'
 * ```
 */
export function quote(s: string): string {
  let out = '"';
  let from = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 0x22 || c === 0x5c || isCtl(c)) {
      out += s.slice(from, i) + (c === 13 || c === 10 ? " " : "\\" + s[i]);
      from = i + 1;
    }
  }
  return out + s.slice(from) + '"';
}

function setParam(params: Params, name: string, value: string | null): void {
  // A plain assignment to "__proto__" would change the object's prototype instead of adding a key.
  if (name === "__proto__") {
    Object.defineProperty(params, name, { value, enumerable: true, writable: true, configurable: true });
  } else params[name] = value;
}

/** Options of {@linkcode parseParams}. */
export interface ParamOptions {
  /** Most parameters accepted (default {@linkcode MAX_PARAMS}). */
  maxParams?: number;
  /** What the parameters belong to, for error reasons (`Via`, `From`...). */
  where?: string;
}

/**
 * Parses a header parameter list such as `;branch=z9hG4bK1 ; lr;x="a;b"`:
 * `*(SEMI generic-param)` (every parameter after a `;`) with `generic-param = token
 * [EQUAL (token / host / quoted-string)]` (RFC 3261 §25.1). Names are
 * lower-cased; quoted values keep their quotes so that formatting reproduces
 * them. Whitespace around `;` and `=` is allowed. Empty parameters (`;;`),
 * repeated names and more than `maxParams` parameters are errors.
 *
 * @example
 * ```ts
 * parseParams(";tag=1928301774;lr"); // { tag: "1928301774", lr: null }
 * ```
 */
export function parseParams(s: string, opts: ParamOptions = {}): Params {
  const max = opts.maxParams ?? MAX_PARAMS;
  const where = opts.where ? ` in ${opts.where}` : "";
  const params: Params = {};
  let n = 0;
  let i = skipWsp(s, 0);
  while (i < s.length) {
    if (s.charCodeAt(i) !== 0x3b) throw new SipParseError(`unexpected '${excerpt(s.slice(i), 20)}'${where}`);
    i = skipWsp(s, i + 1);
    const ns = i;
    while (i < s.length && isTokenChar(s.charCodeAt(i))) i++;
    if (i === ns) {
      if (i >= s.length || s.charCodeAt(i) === 0x3b) throw new SipParseError(`empty parameter${where}`);
      throw new SipParseError(`bad parameter name at '${excerpt(s.slice(i), 20)}'${where}`);
    }
    const name = s.slice(ns, i).toLowerCase();
    if (++n > max) throw new SipParseError(`too many parameters${where} (limit ${max})`);
    if (Object.hasOwn(params, name)) throw new SipParseError(`parameter '${excerpt(name)}' repeated${where}`);
    i = skipWsp(s, i);
    let value: string | null = null;
    if (s.charCodeAt(i) === 0x3d) {
      i = skipWsp(s, i + 1);
      if (s.charCodeAt(i) === 0x22) {
        const end = readQuoted(s, i).end;
        value = s.slice(i, end);
        i = end;
      } else {
        const vs = i;
        while (i < s.length) {
          const c = s.charCodeAt(i);
          if (c >= 128 || GEN_VALUE[c] !== 1) break;
          i++;
        }
        if (i === vs) throw new SipParseError(`missing value of parameter '${excerpt(name)}'${where}`);
        value = s.slice(vs, i);
      }
      i = skipWsp(s, i);
    }
    setParam(params, name, value);
    if (i < s.length && s.charCodeAt(i) !== 0x3b) {
      throw new SipParseError(`unexpected '${excerpt(s.slice(i), 20)}' after parameter '${excerpt(name)}'${where}`);
    }
  }
  return params;
}

/**
 * Formats parameters as `;name=value;flag`.
 *
 * @example
 * ```ts
 * formatParams({ tag: "abc", lr: null }); // ";tag=abc;lr"
 * ```
 */
export function formatParams(params: Params): string {
  let s = "";
  for (const [k, v] of Object.entries(params)) s += v === null ? `;${k}` : `;${k}=${v}`;
  return s;
}

/**
 * Formats a host and optional port, bracketing IPv6 literals.
 *
 * @example
 * ```ts
 * formatHostPort("::1", 5060); // "[::1]:5060"
 * formatHostPort("example.com"); // "example.com"
 * ```
 */
export function formatHostPort(host: string, port?: number): string {
  const h = host.includes(":") && !host.startsWith("[") ? `[${host}]` : host;
  return port === undefined ? h : `${h}:${port}`;
}

/**
 * Checks a host: a name or IPv4 address (letters, digits, `-`, `.`, `_`) or an
 * IPv6 address (hex digits, `:` and `.`, at least one `:`), given without
 * brackets. Returns a reason when it is not one, else undefined.
 */
function hostProblem(host: string, v6: boolean): string | undefined {
  if (host === "") return "empty host";
  if (host.length > 255) return "host name longer than 255 characters";
  const t = v6 ? IPV6 : HOST;
  for (let i = 0; i < host.length; i++) {
    const c = host.charCodeAt(i);
    if (c >= 128 || t[c] !== 1) return v6 ? `bad IPv6 address '${excerpt(host)}'` : `bad host '${excerpt(host)}'`;
  }
  if (v6 && !host.includes(":")) return `bad IPv6 address '${excerpt(host)}'`;
  return undefined;
}

/**
 * Parses `host[:port]` where host may be a bracketed IPv6 literal. The returned
 * host has no brackets. Throws {@linkcode SipParseError} on bad syntax.
 *
 * @example
 * ```ts
 * parseHostPort("[2001:db8::1]:5070"); // { host: "2001:db8::1", port: 5070 }
 * ```
 */
export function parseHostPort(s: string): { host: string; port?: number } {
  let host: string;
  let rest: string;
  let problem: string | undefined;
  if (s.startsWith("[")) {
    const close = s.indexOf("]");
    if (close === -1) throw new SipParseError(`unterminated IPv6 reference in '${excerpt(s)}'`);
    host = s.slice(1, close);
    problem = hostProblem(host, true);
    rest = s.slice(close + 1);
  } else {
    const colon = s.indexOf(":");
    host = colon === -1 ? s : s.slice(0, colon);
    rest = colon === -1 ? "" : s.slice(colon);
    problem = hostProblem(host, false);
  }
  if (problem) throw new SipParseError(problem);
  if (rest === "") return { host };
  const digits = rest.slice(1);
  if (rest.charCodeAt(0) !== 0x3a || !isDigits(digits) || digits.length > 5) {
    throw new SipParseError(`bad port in '${excerpt(s)}'`);
  }
  const port = Number(digits);
  if (port < 1 || port > 65535) throw new SipParseError(`port out of range in '${excerpt(s)}'`);
  return { host, port };
}

/**
 * True when `host` is an IPv4 address (dotted quad) or an IPv6 address (with
 * or without brackets). Host names are what a caller would have to resolve:
 * parsed messages hand them over as text and nothing in the parser resolves them.
 *
 * @example
 * ```ts
 * isIpAddress("192.0.2.1"); // true
 * isIpAddress("[2001:db8::1]"); // true
 * isIpAddress("example.com"); // false
 * ```
 */
export function isIpAddress(host: string): boolean {
  const h = host.startsWith("[") && host.endsWith("]") ? host.slice(1, -1) : host;
  if (h.includes(":")) return hostProblem(h, true) === undefined;
  const parts = h.split(".", 5);
  if (parts.length !== 4) return false;
  for (const p of parts) if (!isDigits(p) || p.length > 3 || Number(p) > 255) return false;
  return true;
}
