/**
 * Low-level lexical helpers for SIP header values (RFC 3261 §25.1): tokens,
 * quoted strings with escapes, splitting on separators outside quotes and
 * angle brackets, and `;name=value` parameter lists.
 *
 * @module
 */
import { SipParseError } from "./errors.ts";

/** Parameters as an ordered record: lower-cased name → value, or `null` for a flag (`;lr`). */
export type Params = Record<string, string | null>;

const TOKEN_RE = /^[A-Za-z0-9\-.!%*_+`'~]+$/;

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
  return TOKEN_RE.test(s);
}

/**
 * Splits `s` on `sep` where it is outside double quotes (honouring `\` escapes)
 * and outside `<...>`. Pieces are trimmed; empty pieces are kept.
 *
 * @example
 * ```ts
 * splitOutside('"a, b" <sip:x>, <sip:y;p=1,2>', ","); // ['"a, b" <sip:x>', '<sip:y;p=1,2>']
 * ```
 */
export function splitOutside(s: string, sep: string): string[] {
  if (s.indexOf(sep) === -1) return [s.trim()];
  const out: string[] = [];
  let start = 0;
  let inQuote = false;
  let angle = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (inQuote) {
      if (c === "\\") i++;
      else if (c === '"') inQuote = false;
    } else if (c === '"') inQuote = true;
    else if (c === "<") angle++;
    else if (c === ">") angle = Math.max(0, angle - 1);
    else if (c === sep && angle === 0) {
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
 * unescaped content and the index just after the closing quote.
 *
 * @example
 * ```ts
 * readQuoted('"A \\"B\\"" <sip:x>', 0); // { value: 'A "B"', end: 10 }
 * ```
 */
export function readQuoted(s: string, start: number): { value: string; end: number } {
  if (s[start] !== '"') throw new SipParseError("expected quoted string");
  let value = "";
  for (let i = start + 1; i < s.length; i++) {
    const c = s[i];
    if (c === "\\") {
      if (i + 1 >= s.length) break;
      value += s[++i];
    } else if (c === '"') {
      return { value, end: i + 1 };
    } else value += c;
  }
  throw new SipParseError("unterminated quoted string");
}

/**
 * Quotes `s` as an RFC 3261 quoted-string, escaping `"` and `\`.
 *
 * @example
 * ```ts
 * quote('say "hi"'); // '"say \\"hi\\""'
 * ```
 */
export function quote(s: string): string {
  return '"' + s.replace(/[\\"]/g, (c) => "\\" + c) + '"';
}

/**
 * Parses a parameter list such as `;branch=z9hG4bK1 ; lr;x="a;b"` (leading `;`
 * optional). Names are lower-cased; quoted values keep their quotes so that
 * formatting reproduces them. Whitespace around `;` and `=` is allowed.
 *
 * @example
 * ```ts
 * parseParams(";tag=1928301774;lr"); // { tag: "1928301774", lr: null }
 * ```
 */
export function parseParams(s: string): Params {
  const params: Params = {};
  const t = s.trim();
  if (t === "") return params;
  for (const piece of splitOutside(t.startsWith(";") ? t.slice(1) : t, ";")) {
    if (piece === "") continue;
    const eq = piece.indexOf("=");
    const name = (eq === -1 ? piece : piece.slice(0, eq)).trim().toLowerCase();
    if (!isToken(name)) throw new SipParseError(`bad parameter name '${name}'`);
    params[name] = eq === -1 ? null : piece.slice(eq + 1).trim();
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
  if (s.startsWith("[")) {
    const close = s.indexOf("]");
    if (close === -1) throw new SipParseError(`unterminated IPv6 reference in '${s}'`);
    host = s.slice(1, close);
    if (!/^[0-9A-Fa-f:.]+$/.test(host) || !host.includes(":")) throw new SipParseError(`bad IPv6 address '${host}'`);
    rest = s.slice(close + 1);
  } else {
    const colon = s.indexOf(":");
    host = colon === -1 ? s : s.slice(0, colon);
    rest = colon === -1 ? "" : s.slice(colon);
    if (!/^[A-Za-z0-9\-._]+$/.test(host)) throw new SipParseError(`bad host '${host}'`);
  }
  if (rest === "") return { host };
  if (!/^:\d{1,5}$/.test(rest)) throw new SipParseError(`bad port in '${s}'`);
  const port = Number(rest.slice(1));
  if (port < 1 || port > 65535) throw new SipParseError(`port out of range in '${s}'`);
  return { host, port };
}
