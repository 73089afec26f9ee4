/**
 * URIs in SIP messages and name-addr / addr-spec values
 * (`"Display" <sip:user@host>;tag=x`, RFC 3261 §19.1, §20.10, §25.1):
 *
 * - `sip:` and `sips:` URIs, parsed into their parts ({@linkcode SipUri});
 * - `tel:` URIs (RFC 3966), number and parameters ({@linkcode TelUri});
 * - any other absolute URI (`http:`, `isbn:`, `urn:`...), checked for syntax
 *   and kept opaque ({@linkcode AbsoluteUri}).
 *
 * Each parser scans its input once; none resolves a host name (a host is
 * returned as text, see {@linkcode isIpAddress} in syntax.ts).
 *
 * @module
 */
import { SipParseError } from "./errors.ts";
import {
  excerpt,
  formatHostPort,
  formatParams,
  isCtl,
  isHexChar,
  isTokenChar,
  isWsp,
  MAX_PARAMS,
  type Params,
  parseHostPort,
  parseParams,
  quote,
  readQuoted,
  skipWsp,
} from "./syntax.ts";

/** A parsed `sip:` or `sips:` URI. Escaped characters are kept as written (see {@linkcode decodeEscapes}). */
export interface SipUri {
  /** `sip` or `sips` (lower case). */
  scheme: "sip" | "sips";
  /** User part, if any (may contain `;`, `?`, `/`... as RFC 3261 allows). */
  user?: string;
  /** Password, if any (deprecated by RFC 3261, still parsed). */
  password?: string;
  /** Host name, IPv4 address or IPv6 address (without brackets). Never resolved by the parser. */
  host: string;
  /** Port, if given. */
  port?: number;
  /** URI parameters (`;transport=udp;lr`), names lower-cased (and unescaped when that is unambiguous). */
  params: Params;
  /** URI headers (`?subject=x&priority=urgent`), in order. */
  headers: Record<string, string>;
}

/** A parsed `tel:` URI (RFC 3966). */
export interface TelUri {
  /** Always `tel`. */
  scheme: "tel";
  /** The telephone-subscriber number as written (`+1-201-555-0123`, `7042;phone-context=...` without parameters). */
  number: string;
  /** Parameters (`;phone-context=example.com;ext=22`), names lower-cased. */
  params: Params;
}

/** Any other absolute URI (RFC 2396 / RFC 3986 syntax), kept as written. */
export interface AbsoluteUri {
  /** Scheme, lower-cased (`http`, `isbn`, `urn`, `soap.beep`...). */
  scheme: string;
  /** Everything after the first `:`. */
  opaque: string;
}

/** Any URI a SIP message may carry. Narrow with {@linkcode isSipUri} / {@linkcode isTelUri}. */
export type Uri = SipUri | TelUri | AbsoluteUri;

/**
 * True when `uri` is a `sip:` or `sips:` URI.
 *
 * @example
 * ```ts
 * const u = parseAnyUri("sips:bob@example.com");
 * if (isSipUri(u)) console.log(u.host); // "example.com"
 * ```
 */
export function isSipUri(uri: Uri): uri is SipUri {
  return uri.scheme === "sip" || uri.scheme === "sips";
}

/**
 * True when `uri` is a `tel:` URI.
 *
 * @example
 * ```ts
 * isTelUri(parseAnyUri("tel:+15551234")); // true
 * ```
 */
export function isTelUri(uri: Uri): uri is TelUri {
  return uri.scheme === "tel";
}

function table(chars: string, alnum = true): Uint8Array {
  const t = new Uint8Array(128);
  for (let i = 0; i < chars.length; i++) t[chars.charCodeAt(i)] = 1;
  if (alnum) {
    for (let c = 0x30; c <= 0x39; c++) t[c] = 1;
    for (let c = 0x41; c <= 0x5a; c++) t[c] = 1;
    for (let c = 0x61; c <= 0x7a; c++) t[c] = 1;
  }
  return t;
}

/** Characters that may appear in a URI: reserved, unreserved, `%` (of an escape), `[`/`]` (IPv6) and `#`. */
const URIC = table(";/?:@&=+$,-_.!~*'()%[]#");
/** URI parameter name/value characters (`paramchar`, plus `,`, which some stacks send unescaped). */
const PARAMCHAR = table("[]/:&+$-_.!~*'()%,");
/** Characters that never need escaping: `unreserved`. */
const UNRESERVED = table("-_.!~*'()");
const utf8 = new TextDecoder();

function inTable(t: Uint8Array, c: number): boolean {
  return c < 128 && t[c] === 1;
}

/** Checks that `s` has only URI characters and well-formed `%HH` escapes; returns a reason or undefined. */
function uriCharsProblem(s: string): string | undefined {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (isWsp(c) || c === 13 || c === 10) return "whitespace";
    if (!inTable(URIC, c)) return `bad character '${excerpt(s[i])}'`;
    if (c === 0x25 && !(isHexChar(s.charCodeAt(i + 1)) && isHexChar(s.charCodeAt(i + 2)))) {
      return `bad escape '${excerpt(s.slice(i, i + 3))}'`;
    }
  }
  return undefined;
}

/**
 * Decodes `%HH` escapes (as UTF-8; invalid sequences become U+FFFD). RFC 3261
 * says an application must treat an escape as the character it encodes, and
 * never unescape twice: `v%61lue%25%34%31` is `value%41`.
 *
 * @example
 * ```ts
 * decodeEscapes("I%20have%20spaces"); // "I have spaces"
 * decodeEscapes("null-%00-null"); // "null-\u0000-null"
 * ```
 */
export function decodeEscapes(s: string): string {
  if (s.indexOf("%") === -1) return s;
  const bytes: number[] = [];
  let out = "";
  const flush = () => {
    if (bytes.length) out += utf8.decode(new Uint8Array(bytes));
    bytes.length = 0;
  };
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 0x25 && isHexChar(s.charCodeAt(i + 1)) && isHexChar(s.charCodeAt(i + 2))) {
      bytes.push(parseInt(s.slice(i + 1, i + 3), 16));
      i += 2;
    } else {
      flush();
      out += s[i];
    }
  }
  flush();
  return out;
}

/** A parameter name with escapes decoded when the result is plain (`%6C%72` → `lr`), lower-cased. */
function paramName(raw: string): string {
  const lower = raw.toLowerCase();
  if (lower.indexOf("%") === -1) return lower;
  const d = decodeEscapes(lower);
  for (let i = 0; i < d.length; i++) if (!inTable(UNRESERVED, d.charCodeAt(i))) return lower;
  return d;
}

function setParam(params: Params, name: string, value: string | null): void {
  if (name === "__proto__") {
    Object.defineProperty(params, name, { value, enumerable: true, writable: true, configurable: true });
  } else params[name] = value;
}

/** Parses `;a=b;c` URI parameters (`s` starts at the first `;`). */
function parseUriParams(s: string, max: number): Params {
  const params: Params = {};
  let n = 0;
  let i = 0;
  while (i < s.length) {
    // s[i] is ';'
    let j = i + 1;
    while (j < s.length && s.charCodeAt(j) !== 0x3b) j++;
    const piece = s.slice(i + 1, j);
    i = j;
    if (piece === "") throw new SipParseError("empty URI parameter");
    if (++n > max) throw new SipParseError(`too many URI parameters (limit ${max})`);
    const eq = piece.indexOf("=");
    const rawName = eq === -1 ? piece : piece.slice(0, eq);
    const value = eq === -1 ? null : piece.slice(eq + 1);
    if (rawName === "") throw new SipParseError(`URI parameter without a name at '${excerpt(piece, 20)}'`);
    for (const part of value === null ? [rawName] : [rawName, value]) {
      if (part === "") throw new SipParseError(`URI parameter '${excerpt(rawName)}' has an empty value`);
      for (let k = 0; k < part.length; k++) {
        if (!inTable(PARAMCHAR, part.charCodeAt(k))) {
          throw new SipParseError(`bad character '${excerpt(part[k])}' in URI parameter '${excerpt(rawName)}'`);
        }
      }
    }
    const name = paramName(rawName);
    if (Object.hasOwn(params, name)) throw new SipParseError(`URI parameter '${excerpt(name)}' repeated`);
    setParam(params, name, value);
  }
  return params;
}

/** Parses `?h=v&h2=v2` URI headers (`s` is after the `?`). */
function parseUriHeaders(s: string, max: number): Record<string, string> {
  const headers: Record<string, string> = {};
  let n = 0;
  let i = 0;
  while (i <= s.length) {
    let j = s.indexOf("&", i);
    if (j === -1) j = s.length;
    const pair = s.slice(i, j);
    i = j + 1;
    if (pair === "") continue;
    if (++n > max) throw new SipParseError(`too many URI headers (limit ${max})`);
    const eq = pair.indexOf("=");
    if (eq <= 0) throw new SipParseError(`bad URI header '${excerpt(pair)}'`);
    const name = pair.slice(0, eq);
    if (name === "__proto__") {
      Object.defineProperty(headers, name, {
        value: pair.slice(eq + 1),
        enumerable: true,
        writable: true,
        configurable: true,
      });
    } else headers[name] = pair.slice(eq + 1);
  }
  return headers;
}

/** Trims SP and HTAB (the LWS of an unfolded header value) at both ends. */
function trimLws(s: string): string {
  let a = 0;
  let b = s.length;
  while (a < b && isWsp(s.charCodeAt(a))) a++;
  while (b > a && isWsp(s.charCodeAt(b - 1))) b--;
  return a === 0 && b === s.length ? s : s.slice(a, b);
}

/** Splits `scheme:rest`, checking the scheme's syntax. */
function splitScheme(s: string): { scheme: string; rest: string } {
  const colon = s.indexOf(":");
  if (colon === -1) throw new SipParseError(`not a URI: '${excerpt(s)}'`);
  const scheme = s.slice(0, colon);
  const ok = /^[A-Za-z][A-Za-z0-9+.\-]*$/.test(scheme);
  if (!ok) throw new SipParseError(`bad URI scheme '${excerpt(scheme)}'`);
  return { scheme: scheme.toLowerCase(), rest: s.slice(colon + 1) };
}

function parseSip(scheme: "sip" | "sips", rest: string, s: string, max: number): SipUri {
  const problem = uriCharsProblem(rest);
  if (problem === "whitespace") throw new SipParseError(`whitespace in URI '${excerpt(s)}'`);
  if (problem) throw new SipParseError(`${problem} in URI '${excerpt(s)}'`);
  const uri: SipUri = { scheme, host: "", params: {}, headers: {} };
  // userinfo ends at the first '@': user and password may hold ';', '?', '/', ',' but never a raw '@'.
  const at = rest.indexOf("@");
  let hostPart = rest;
  if (at !== -1) {
    const userinfo = rest.slice(0, at);
    hostPart = rest.slice(at + 1);
    const pc = userinfo.indexOf(":");
    uri.user = pc === -1 ? userinfo : userinfo.slice(0, pc);
    if (pc !== -1) uri.password = userinfo.slice(pc + 1);
    if (uri.user === "") throw new SipParseError(`empty user part in URI '${excerpt(s)}'`);
    if (uri.password !== undefined && /[;?/@]/.test(uri.password)) {
      throw new SipParseError(`bad password in URI '${excerpt(s)}'`);
    }
  }
  const q = hostPart.indexOf("?");
  const beforeHeaders = q === -1 ? hostPart : hostPart.slice(0, q);
  const semi = beforeHeaders.indexOf(";");
  const hostport = semi === -1 ? beforeHeaders : beforeHeaders.slice(0, semi);
  if (hostport === "") throw new SipParseError(`missing host in URI '${excerpt(s)}'`);
  try {
    const hp = parseHostPort(hostport);
    uri.host = hp.host;
    if (hp.port !== undefined) uri.port = hp.port;
    if (semi !== -1) uri.params = parseUriParams(beforeHeaders.slice(semi), max);
    if (q !== -1) uri.headers = parseUriHeaders(hostPart.slice(q + 1), max);
  } catch (e) {
    if (e instanceof SipParseError) throw new SipParseError(`${e.reason} in URI '${excerpt(s)}'`);
    throw e;
  }
  return uri;
}

function parseTel(rest: string, s: string, max: number): TelUri {
  const problem = uriCharsProblem(rest);
  if (problem === "whitespace") throw new SipParseError(`whitespace in URI '${excerpt(s)}'`);
  if (problem) throw new SipParseError(`${problem} in URI '${excerpt(s)}'`);
  const semi = rest.indexOf(";");
  const number = semi === -1 ? rest : rest.slice(0, semi);
  const global = number.startsWith("+");
  let digits = 0;
  for (let i = global ? 1 : 0; i < number.length; i++) {
    const ch = number[i];
    if (/[0-9]/.test(ch) || (!global && /[A-Fa-f*#]/.test(ch))) digits++;
    else if (!/[-.()]/.test(ch)) {
      throw new SipParseError(`bad character '${excerpt(ch)}' in telephone number '${excerpt(s)}'`);
    }
  }
  if (digits === 0) throw new SipParseError(`no digits in telephone number '${excerpt(s)}'`);
  let params: Params = {};
  if (semi !== -1) {
    try {
      params = parseUriParams(rest.slice(semi), max);
    } catch (e) {
      if (e instanceof SipParseError) throw new SipParseError(`${e.reason} in URI '${excerpt(s)}'`);
      throw e;
    }
  }
  return { scheme: "tel", number, params };
}

/**
 * Parses a `sip:`/`sips:` URI. Throws {@linkcode SipParseError} with a precise
 * reason (for other schemes: `unsupported URI scheme`; see {@linkcode parseAnyUri}).
 * The user part ends at the first `@` and may contain `;`, `?` and `/`
 * (`sip:user;par=u%40example.net@example.com` has user `user;par=u%40example.net`).
 *
 * @example
 * ```ts
 * const u = parseUri("sip:alice:secret@[2001:db8::1]:5070;transport=udp?subject=hi");
 * // u.user === "alice", u.host === "2001:db8::1", u.port === 5070, u.params.transport === "udp"
 * ```
 */
export function parseUri(text: string): SipUri {
  const s = trimLws(text);
  const colon = s.indexOf(":");
  const scheme = colon === -1 ? "" : s.slice(0, colon).toLowerCase();
  if (scheme !== "sip" && scheme !== "sips") {
    throw new SipParseError(
      colon === -1 ? `not a URI: '${excerpt(s)}'` : `unsupported URI scheme '${excerpt(scheme)}'`,
    );
  }
  return parseSip(scheme, s.slice(colon + 1), s, MAX_PARAMS);
}

/**
 * Parses any URI: `sip:`/`sips:` into a {@linkcode SipUri}, `tel:` into a
 * {@linkcode TelUri}, any other scheme into an {@linkcode AbsoluteUri} after
 * checking the generic syntax (scheme, no whitespace, only URI characters,
 * well-formed `%HH` escapes). Throws {@linkcode SipParseError}.
 *
 * @example
 * ```ts
 * parseAnyUri("isbn:2983792873"); // { scheme: "isbn", opaque: "2983792873" }
 * parseAnyUri("tel:+1-201-555-0123;ext=22"); // { scheme: "tel", number: "+1-201-555-0123", params: { ext: "22" } }
 * ```
 */
export function parseAnyUri(text: string): Uri {
  const s = trimLws(text);
  const { scheme, rest } = splitScheme(s);
  const max = MAX_PARAMS;
  if (scheme === "sip" || scheme === "sips") return parseSip(scheme, rest, s, max);
  if (scheme === "tel") return parseTel(rest, s, max);
  if (rest === "") throw new SipParseError(`empty URI '${excerpt(s)}'`);
  const problem = uriCharsProblem(rest);
  if (problem === "whitespace") throw new SipParseError(`whitespace in URI '${excerpt(s)}'`);
  if (problem) throw new SipParseError(`${problem} in URI '${excerpt(s)}'`);
  return { scheme, opaque: rest };
}

/**
 * Formats a URI back to text.
 *
 * @example
 * ```ts
 * formatUri({ scheme: "sip", user: "bob", host: "::1", port: 5062, params: { lr: null }, headers: {} });
 * // "sip:bob@[::1]:5062;lr"
 * ```
 */
export function formatUri(uri: Uri): string {
  if (!isSipUri(uri)) {
    if (isTelUri(uri)) return `tel:${uri.number}${formatParams(uri.params)}`;
    return `${uri.scheme}:${(uri as AbsoluteUri).opaque}`;
  }
  let s = uri.scheme + ":";
  if (uri.user !== undefined) {
    s += uri.user;
    if (uri.password !== undefined) s += ":" + uri.password;
    s += "@";
  }
  s += formatHostPort(uri.host, uri.port);
  s += formatParams(uri.params);
  const h = Object.entries(uri.headers);
  if (h.length) s += "?" + h.map(([k, v]) => `${k}=${v}`).join("&");
  return s;
}

/** A name-addr or addr-spec header value (From, To, Contact, Route...) with any URI scheme. */
export interface Address {
  /** Display name, unquoted and unescaped (absent when none was given). */
  displayName?: string;
  /** The URI. */
  uri: Uri;
  /** Header parameters after the URI (`tag`, `expires`, `q`...). */
  params: Params;
}

/** A name-addr or addr-spec header value whose URI is a SIP or SIPS URI. */
export interface NameAddr extends Address {
  /** The URI. */
  uri: SipUri;
}

/**
 * Parses a name-addr (`"Alice" <sip:alice@a.com>;tag=1`) or an addr-spec
 * (`sip:alice@a.com;tag=1`, where the `;` parameters belong to the header,
 * RFC 3261 §20.10) with a URI of any scheme. Rules enforced:
 *
 * - a display name is a quoted string or tokens separated by whitespace
 *   (`Bell, Alexander <...>` must be quoted); no space is needed before `<`;
 * - nothing but the URI inside `<...>`: no whitespace, no `<`;
 * - an addr-spec cannot hold `,` or `?` (such a URI must be enclosed in `<>`).
 *
 * @example
 * ```ts
 * const a = parseAddress("<http://www.example.com>;tag=3234233");
 * // a.uri.scheme === "http", a.params.tag === "3234233"
 * ```
 */
export function parseAddress(text: string): Address {
  // From, To and Contact are read several times while a message is handled (validation, transaction and dialog
  // matching, tags): the last few values parsed are kept, and each caller gets its own copy.
  const cached = ADDRESSES.get(text);
  if (cached) return copyAddress(cached);
  const a = parseAddressText(text);
  if (ADDRESSES.size >= ADDRESSES_MAX) ADDRESSES.delete(ADDRESSES.keys().next().value!);
  ADDRESSES.set(text, copyAddress(a));
  return a;
}

/**
 * The header parameters (`tag`...) of a name-addr or addr-spec, for reading only: unlike
 * {@linkcode parseAddress}, the object may be shared with other callers (the last few values parsed are kept), so
 * it must not be changed. Throws like {@linkcode parseAddress}.
 *
 * @example
 * ```ts
 * addressParams("<sip:bob@example.com>;tag=a6c85cf").tag; // "a6c85cf"
 * ```
 */
export function addressParams(text: string): Readonly<Params> {
  const cached = ADDRESSES.get(text);
  if (cached) return cached.params;
  return parseAddress(text).params;
}

/** The last values {@linkcode parseAddress} parsed (oldest first), with private copies of the results. */
const ADDRESSES = new Map<string, Address>();
const ADDRESSES_MAX = 8;

/** A copy a caller may change (params, URI and its params and headers too) without touching the original. */
function copyAddress(a: Address): Address {
  const uri = { ...a.uri } as Uri & { params?: Params; headers?: Record<string, string> };
  if (uri.params) uri.params = { ...uri.params };
  if (uri.headers) uri.headers = { ...uri.headers };
  return { ...a, uri, params: { ...a.params } };
}

function parseAddressText(text: string): Address {
  const s = trimLws(text);
  let displayName: string | undefined;
  let lt: number;
  if (s.charCodeAt(0) === 0x22) {
    const q = readQuoted(s, 0);
    displayName = q.value;
    lt = skipWsp(s, q.end);
    if (s.charCodeAt(lt) !== 0x3c) throw new SipParseError(`expected '<' after display name in '${excerpt(s)}'`);
  } else {
    let j = 0;
    while (j < s.length) {
      const c = s.charCodeAt(j);
      if (!isTokenChar(c) && !isWsp(c)) break;
      j++;
    }
    if (s.charCodeAt(j) === 0x3c) {
      const name = trimLws(s.slice(0, j));
      if (name !== "") displayName = name.replace(/[ \t]+/g, " ");
      lt = j;
    } else {
      const angle = s.indexOf("<", j);
      if (angle !== -1) {
        throw new SipParseError(
          `display name '${excerpt(trimLws(s.slice(0, angle)))}' has characters that need quotes`,
        );
      }
      // addr-spec: the URI ends at the first ';' or whitespace; what follows are header parameters.
      let end = 0;
      while (end < s.length) {
        const c = s.charCodeAt(end);
        if (c === 0x3b || isWsp(c)) break;
        if (c === 0x2c || c === 0x3f) {
          throw new SipParseError(`a URI with '${s[end]}' must be enclosed in '<>'`);
        }
        end++;
      }
      const uri = parseAnyUri(s.slice(0, end));
      return { uri, params: parseParams(s.slice(end)) };
    }
  }
  const gt = s.indexOf(">", lt + 1);
  if (gt === -1) throw new SipParseError(`missing '>' in '${excerpt(s)}'`);
  for (let k = lt + 1; k < gt; k++) {
    const c = s.charCodeAt(k);
    if (isWsp(c)) throw new SipParseError(`whitespace inside '<>'`);
    if (c === 0x3c) throw new SipParseError(`'<' inside '<>'`);
    if (isCtl(c)) throw new SipParseError(`control character inside '<>'`);
  }
  const uri = parseAnyUri(s.slice(lt + 1, gt));
  const a: Address = { uri, params: parseParams(s.slice(gt + 1)) };
  if (displayName !== undefined) a.displayName = displayName;
  return a;
}

/**
 * Parses a name-addr or addr-spec like {@linkcode parseAddress}, but requires a
 * `sip:` or `sips:` URI (what routing and dialogs need).
 *
 * @example
 * ```ts
 * const na = parseNameAddr('"A. \\"Al\\" Lee" <sip:alice@atlanta.com>;tag=88sja8x');
 * // na.displayName === 'A. "Al" Lee', na.uri.user === "alice", na.params.tag === "88sja8x"
 * ```
 */
export function parseNameAddr(text: string): NameAddr {
  const a = parseAddress(text);
  if (!isSipUri(a.uri)) {
    throw new SipParseError(`unsupported URI scheme '${excerpt(a.uri.scheme)}' (expected sip or sips)`);
  }
  return a as NameAddr;
}

/**
 * Formats a name-addr, always with angle brackets; the display name is quoted.
 *
 * @example
 * ```ts
 * formatNameAddr({ displayName: "Bob", uri: parseUri("sip:bob@b.com"), params: { tag: "9" } });
 * // '"Bob" <sip:bob@b.com>;tag=9'
 * ```
 */
export function formatNameAddr(na: Address): string {
  const name = na.displayName !== undefined && na.displayName !== "" ? quote(na.displayName) + " " : "";
  return `${name}<${formatUri(na.uri)}>${formatParams(na.params)}`;
}
