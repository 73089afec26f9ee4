/**
 * The Via header (RFC 3261 §20.42, §18.2.2) with the `rport` extension (RFC 3581).
 *
 * @module
 */
import { SipParseError } from "./errors.ts";
import { formatHostPort, formatParams, type Params, parseHostPort, parseParams } from "./syntax.ts";

/** One parsed Via value (`SIP/2.0/UDP host:port;branch=...;received=...;rport=...`). */
export interface Via {
  /** Protocol name and version, normally `SIP/2.0`. */
  protocol: string;
  /** Transport in upper case (`UDP`, `TCP`, `TLS`...). */
  transport: string;
  /** sent-by host (IPv6 without brackets). */
  host: string;
  /** sent-by port, when given. */
  port?: number;
  /** Parameters (`branch`, `received`, `rport`, `maddr`, `ttl`...), names lower-cased; `rport: null` means "requested". */
  params: Params;
}

const VIA_RE = /^([^\s/]+)\s*\/\s*([^\s/]+)\s*\/\s*([^\s/;]+)\s+([^;\s(]+(?:\s*:\s*\d+)?)\s*(;.*)?$/s;

/**
 * Parses one Via value. Whitespace is allowed around `/`, `:` and `;` as RFC 3261 LWS permits;
 * a trailing comment in parentheses is ignored.
 *
 * @example
 * ```ts
 * const v = parseVia("SIP/2.0/UDP [2001:db8::9]:5070;branch=z9hG4bK776;rport");
 * // v.host === "2001:db8::9", v.port === 5070, v.params.branch === "z9hG4bK776", v.params.rport === null
 * ```
 */
export function parseVia(value: string): Via {
  const s = value.trim().replace(/\s*\([^)]*\)\s*$/, "");
  const m = VIA_RE.exec(s);
  if (!m) throw new SipParseError(`bad Via '${value}'`);
  const hp = parseHostPort(m[4].replace(/\s+/g, ""));
  const via: Via = {
    protocol: `${m[1]}/${m[2]}`.toUpperCase(),
    transport: m[3].toUpperCase(),
    host: hp.host,
    params: m[5] ? parseParams(m[5]) : {},
  };
  if (hp.port !== undefined) via.port = hp.port;
  const rport = via.params.rport;
  if (rport !== undefined && rport !== null && !/^\d{1,5}$/.test(rport)) {
    throw new SipParseError(`bad rport '${rport}' in Via`);
  }
  return via;
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
 * Where a response to a request carrying this Via must be sent over UDP (RFC 3261 §18.2.2, RFC 3581 §4):
 * `maddr` if present, otherwise `received` (or the sent-by host), at the `rport` value (or the sent-by port, default 5060).
 *
 * @example
 * ```ts
 * responseTarget(parseVia("SIP/2.0/UDP a.example;received=192.0.2.1;rport=4000;branch=z9hG4bKx"));
 * // { hostname: "192.0.2.1", port: 4000 }
 * ```
 */
export function responseTarget(via: Via): { hostname: string; port: number } {
  const maddr = via.params.maddr;
  if (maddr) return { hostname: stripBrackets(maddr), port: via.port ?? 5060 };
  const received = via.params.received;
  const hostname = received ? stripBrackets(received) : via.host;
  const rport = via.params.rport;
  const port = rport ? Number(rport) : via.port ?? 5060;
  return { hostname, port };
}

function stripBrackets(h: string): string {
  return h.startsWith("[") && h.endsWith("]") ? h.slice(1, -1) : h;
}
