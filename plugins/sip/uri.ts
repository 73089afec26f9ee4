/**
 * SIP and SIPS URIs (RFC 3261 §19.1) and name-addr / addr-spec values
 * (`"Display" <sip:user@host>;tag=x`, §20.10, §25.1).
 *
 * @module
 */
import { SipParseError } from "./errors.ts";
import { formatHostPort, formatParams, type Params, parseHostPort, parseParams, quote, readQuoted } from "./syntax.ts";

/** A parsed `sip:` or `sips:` URI. Escaped characters in user/password are kept as written. */
export interface SipUri {
  /** `sip` or `sips` (lower case). */
  scheme: "sip" | "sips";
  /** User part, if any. */
  user?: string;
  /** Password, if any (deprecated by RFC 3261, still parsed). */
  password?: string;
  /** Host name, IPv4 address or IPv6 address (without brackets). */
  host: string;
  /** Port, if given. */
  port?: number;
  /** URI parameters (`;transport=udp;lr`), names lower-cased. */
  params: Params;
  /** URI headers (`?subject=x&priority=urgent`), in order. */
  headers: Record<string, string>;
}

/**
 * Parses a `sip:`/`sips:` URI. Throws {@linkcode SipParseError} with a precise reason.
 *
 * @example
 * ```ts
 * const u = parseUri("sip:alice:secret@[2001:db8::1]:5070;transport=udp?subject=hi");
 * // u.user === "alice", u.host === "2001:db8::1", u.port === 5070, u.params.transport === "udp"
 * ```
 */
export function parseUri(text: string): SipUri {
  const s = text.trim();
  const colon = s.indexOf(":");
  const scheme = colon === -1 ? "" : s.slice(0, colon).toLowerCase();
  if (scheme !== "sip" && scheme !== "sips") {
    throw new SipParseError(colon === -1 ? `not a URI: '${s}'` : `unsupported URI scheme '${scheme}'`);
  }
  let rest = s.slice(colon + 1);
  if (/\s/.test(rest)) throw new SipParseError(`whitespace in URI '${s}'`);
  const uri: SipUri = { scheme, host: "", params: {}, headers: {} };

  const q = rest.indexOf("?");
  if (q !== -1) {
    for (const pair of rest.slice(q + 1).split("&")) {
      if (pair === "") continue;
      const eq = pair.indexOf("=");
      if (eq <= 0) throw new SipParseError(`bad URI header '${pair}'`);
      uri.headers[pair.slice(0, eq)] = pair.slice(eq + 1);
    }
    rest = rest.slice(0, q);
  }
  const at = rest.lastIndexOf("@");
  if (at !== -1) {
    const userinfo = rest.slice(0, at);
    rest = rest.slice(at + 1);
    const pc = userinfo.indexOf(":");
    uri.user = pc === -1 ? userinfo : userinfo.slice(0, pc);
    if (pc !== -1) uri.password = userinfo.slice(pc + 1);
    if (uri.user === "") throw new SipParseError(`empty user part in URI '${s}'`);
  }
  const semi = rest.indexOf(";");
  const hostport = semi === -1 ? rest : rest.slice(0, semi);
  if (hostport === "") throw new SipParseError(`missing host in URI '${s}'`);
  try {
    const hp = parseHostPort(hostport);
    uri.host = hp.host;
    if (hp.port !== undefined) uri.port = hp.port;
    if (semi !== -1) uri.params = parseParams(rest.slice(semi));
  } catch (e) {
    if (e instanceof SipParseError) throw new SipParseError(`${e.reason} in URI '${s}'`);
    throw e;
  }
  return uri;
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
export function formatUri(uri: SipUri): string {
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

/** A name-addr or addr-spec header value (From, To, Contact, Route...). */
export interface NameAddr {
  /** Display name, unquoted and unescaped (absent when none was given). */
  displayName?: string;
  /** The URI. */
  uri: SipUri;
  /** Header parameters after the URI (`tag`, `expires`, `q`...). */
  params: Params;
}

/**
 * Parses a name-addr (`"Alice" <sip:alice@a.com>;tag=1`) or an addr-spec
 * (`sip:alice@a.com;tag=1`, where the `;` parameters belong to the header, RFC 3261 §20.10).
 *
 * @example
 * ```ts
 * const na = parseNameAddr('"A. \\"Al\\" Lee" <sip:alice@atlanta.com>;tag=88sja8x');
 * // na.displayName === 'A. "Al" Lee', na.uri.user === "alice", na.params.tag === "88sja8x"
 * ```
 */
export function parseNameAddr(text: string): NameAddr {
  const s = text.trim();
  let displayName: string | undefined;
  let i = 0;
  if (s.startsWith('"')) {
    const q = readQuoted(s, 0);
    displayName = q.value;
    i = q.end;
    while (s[i] === " " || s[i] === "\t") i++;
    if (s[i] !== "<") throw new SipParseError(`expected '<' after display name in '${s}'`);
  } else {
    const lt = s.indexOf("<");
    if (lt !== -1) {
      const name = s.slice(0, lt).trim();
      if (name !== "") {
        if (!/^[A-Za-z0-9\-.!%*_+`'~ \t]+$/.test(name)) throw new SipParseError(`bad display name '${name}'`);
        displayName = name.replace(/[ \t]+/g, " ");
      }
      i = lt;
    } else {
      // addr-spec: the URI ends at the first ';' after the host part; what follows are header params.
      const at = s.indexOf("@");
      const semi = s.indexOf(";", at === -1 ? 0 : at);
      const uriText = semi === -1 ? s : s.slice(0, semi);
      return { uri: parseUri(uriText), params: semi === -1 ? {} : parseParams(s.slice(semi)) };
    }
  }
  const gt = s.indexOf(">", i);
  if (gt === -1) throw new SipParseError(`missing '>' in '${s}'`);
  const uri = parseUri(s.slice(i + 1, gt));
  const na: NameAddr = { uri, params: parseParams(s.slice(gt + 1)) };
  if (displayName !== undefined) na.displayName = displayName;
  return na;
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
export function formatNameAddr(na: NameAddr): string {
  const name = na.displayName !== undefined && na.displayName !== "" ? quote(na.displayName) + " " : "";
  return `${name}<${formatUri(na.uri)}>${formatParams(na.params)}`;
}
