/**
 * The one address type of the network layer ({@linkcode HostPort}) and its
 * parser and printer: `127.0.0.1:5004`, `[::1]:5004`, `localhost:5004`, and
 * comparison of addresses as the kernel reports them (an IPv6 dual-stack socket
 * reports IPv4 senders as `::ffff:a.b.c.d`). SIP, RTP, RTCP and every later
 * protocol use these.
 *
 * Nothing here resolves a name: {@linkcode resolveHost} is for addresses a
 * pipeline file or the command line gave, never for ones that came from the
 * network.
 *
 * @module
 */

/** A host (IP literal or name) and a UDP port. */
export interface HostPort {
  /** IP literal (IPv6 without brackets) or host name. */
  hostname: string;
  /** Port, 0..65535. */
  port: number;
}

/**
 * IP version of a literal address: 4, 6, or 0 when it is not an IP literal (a host name).
 * The same answers as Node's `net.isIP` (dotted-quad IPv4 without leading zeros; IPv6 in any
 * RFC 4291 text form, with an optional `%zone`), without loading `node:net` (~50 ms at start-up).
 */
export function ipVersion(host: string): 0 | 4 | 6 {
  const h = stripBrackets(host);
  return isIPv4(h) ? 4 : isIPv6(h) ? 6 : 0;
}

const V6_GROUP = /^[0-9a-fA-F]{1,4}$/;
const ZONE = /^[0-9a-zA-Z.:-]+$/;

/** Dotted-quad IPv4: four decimal parts 0..255, no leading zeros (scanned: it runs for every address of a call). */
function isIPv4(s: string): boolean {
  let parts = 0;
  let i = 0;
  while (i <= s.length) {
    const start = i;
    let value = 0;
    while (i < s.length) {
      const c = s.charCodeAt(i);
      if (c < 48 || c > 57) break;
      value = value * 10 + c - 48;
      i++;
    }
    const digits = i - start;
    if (digits === 0 || digits > 3 || value > 255 || (digits > 1 && s.charCodeAt(start) === 48)) return false;
    parts++;
    if (i === s.length) return parts === 4;
    if (s.charCodeAt(i) !== 46 || parts === 4) return false;
    i++;
  }
  return false;
}

function isIPv6(text: string): boolean {
  let s = text;
  const pct = s.indexOf("%");
  if (pct >= 0) {
    if (!ZONE.test(s.slice(pct + 1))) return false;
    s = s.slice(0, pct);
  }
  const gap = s.indexOf("::");
  if (gap !== s.lastIndexOf("::")) return false; // at most one "::" (and no ":::")
  const split = (part: string) => (part === "" ? [] : part.split(":"));
  const groups = gap < 0 ? split(s) : [...split(s.slice(0, gap)), ...split(s.slice(gap + 2))];
  let count = 0;
  for (let i = 0; i < groups.length; i++) {
    const g = groups[i];
    if (i === groups.length - 1 && g.includes(".") && s.endsWith(g)) {
      if (!isIPv4(g)) return false;
      count += 2; // an embedded IPv4 address fills the last two groups (at the very end only)
    } else if (V6_GROUP.test(g)) count++;
    else return false;
  }
  return gap < 0 ? count === 8 : count <= 7;
}

function stripBrackets(host: string): string {
  return host.startsWith("[") && host.endsWith("]") ? host.slice(1, -1) : host;
}

function parsePort(text: string, input: string): number {
  if (!/^\d{1,5}$/.test(text)) throw new RangeError(`invalid port "${text}" in "${input}": expected 0..65535`);
  const port = Number(text);
  if (port > 65535) throw new RangeError(`invalid port ${port} in "${input}": expected 0..65535`);
  return port;
}

/**
 * Parses `host:port`. IPv6 literals must be bracketed when a port follows
 * (`[::1]:5004`); a bare IPv6 literal (`::1`) is accepted only when
 * `defaultPort` is given. Throws a `RangeError` saying what is wrong.
 *
 * @example
 * ```ts
 * parseHostPort("[::1]:5004"); // { hostname: "::1", port: 5004 }
 * parseHostPort("127.0.0.1:4000"); // { hostname: "127.0.0.1", port: 4000 }
 * parseHostPort("example.net", 5060); // { hostname: "example.net", port: 5060 }
 * ```
 */
export function parseHostPort(input: string, defaultPort?: number): HostPort {
  const s = input.trim();
  if (s === "") throw new RangeError("empty address: expected host:port");
  if (s.startsWith("[")) {
    const close = s.indexOf("]");
    if (close < 0) throw new RangeError(`unclosed "[" in "${input}": expected [ipv6]:port`);
    const hostname = s.slice(1, close);
    if (ipVersion(hostname) !== 6) throw new RangeError(`"${hostname}" in "${input}" is not an IPv6 address`);
    const rest = s.slice(close + 1);
    if (rest === "") {
      if (defaultPort === undefined) throw new RangeError(`missing port in "${input}": expected [${hostname}]:port`);
      return { hostname, port: defaultPort };
    }
    if (!rest.startsWith(":")) throw new RangeError(`unexpected "${rest}" after "]" in "${input}"`);
    return { hostname, port: parsePort(rest.slice(1), input) };
  }
  const colons = s.split(":").length - 1;
  if (colons > 1) {
    // A bare IPv6 literal: no port can follow without brackets.
    if (ipVersion(s) !== 6) throw new RangeError(`"${input}" is not a valid address: write IPv6 as [addr]:port`);
    if (defaultPort === undefined) throw new RangeError(`missing port in "${input}": write IPv6 as [${s}]:port`);
    return { hostname: s, port: defaultPort };
  }
  if (colons === 0) {
    if (defaultPort === undefined) throw new RangeError(`missing port in "${input}": expected host:port`);
    checkHostname(s, input);
    return { hostname: s, port: defaultPort };
  }
  const i = s.lastIndexOf(":");
  const hostname = s.slice(0, i);
  checkHostname(hostname, input);
  return { hostname, port: parsePort(s.slice(i + 1), input) };
}

function checkHostname(host: string, input: string): void {
  if (host === "") throw new RangeError(`missing host in "${input}": expected host:port`);
  if (
    ipVersion(host) === 0 &&
    !/^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$/.test(host)
  ) {
    throw new RangeError(`"${host}" in "${input}" is neither an IP address nor a host name`);
  }
}

/**
 * Formats an address for people and for `host:port` options: IPv6 in brackets.
 *
 * @example
 * ```ts
 * formatHostPort({ hostname: "::1", port: 5004 }); // "[::1]:5004"
 * ```
 */
export function formatHostPort(a: HostPort): string {
  return ipVersion(a.hostname) === 6 ? `[${a.hostname}]:${a.port}` : `${a.hostname}:${a.port}`;
}

/**
 * The canonical form of an IP literal, for comparisons: lower case, IPv4-mapped
 * IPv6 (`::ffff:127.0.0.1`) turned into plain IPv4, zero runs compressed the
 * way the kernel prints them (RFC 5952). Host names are returned lower-cased.
 *
 * @example
 * ```ts
 * canonicalHost("::ffff:127.0.0.1"); // "127.0.0.1"
 * canonicalHost("0:0:0:0:0:0:0:1"); // "::1"
 * ```
 */
export function canonicalHost(host: string): string {
  const h = stripBrackets(host).toLowerCase();
  if (ipVersion(h) !== 6) return h;
  const g = expandIPv6(h);
  if (g.slice(0, 5).every((x) => x === 0) && g[5] === 0xffff) {
    return `${g[6] >> 8}.${g[6] & 0xff}.${g[7] >> 8}.${g[7] & 0xff}`;
  }
  return formatIPv6Groups(g);
}

/** The eight 16-bit groups of a valid IPv6 literal. */
function expandIPv6(h: string): number[] {
  let s = h;
  const tail: number[] = [];
  const v4 = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(s);
  if (v4) {
    const b = v4.slice(1).map(Number);
    tail.push((b[0] << 8) | b[1], (b[2] << 8) | b[3]);
    s = s.slice(0, -v4[0].length);
    if (s.endsWith(":") && !s.endsWith("::")) s = s.slice(0, -1);
  }
  const groups = (t: string) => t === "" ? [] : t.split(":").map((x) => parseInt(x, 16));
  const dbl = s.indexOf("::");
  if (dbl < 0) return [...groups(s), ...tail];
  const l = groups(s.slice(0, dbl));
  const r = groups(s.slice(dbl + 2));
  return [...l, ...new Array(8 - l.length - r.length - tail.length).fill(0), ...r, ...tail];
}

/** RFC 5952 text of 8 groups: lower case, the longest run of two or more zero groups (the first on ties) as `::`. */
export function formatIPv6Groups(g: ArrayLike<number>): string {
  let best = -1, bestLen = 0;
  for (let i = 0; i < 8;) {
    if (g[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen && j - i >= 2) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = (from: number, to: number) => {
    const parts: string[] = [];
    for (let i = from; i < to; i++) parts.push(g[i].toString(16));
    return parts.join(":");
  };
  if (best < 0) return hex(0, 8);
  return `${hex(0, best)}::${hex(best + bestLen, 8)}`;
}

/**
 * True when two addresses are the same IP and port, after
 * {@linkcode canonicalHost} (so `::ffff:127.0.0.1` equals `127.0.0.1`).
 *
 * @example
 * ```ts
 * sameAddress({ hostname: "::ffff:10.0.0.1", port: 4000 }, { hostname: "10.0.0.1", port: 4000 }); // true
 * ```
 */
export function sameAddress(a: HostPort, b: HostPort): boolean {
  return a.port === b.port && canonicalHost(a.hostname) === canonicalHost(b.hostname);
}

/**
 * True for a loopback address: `127.0.0.0/8` or `::1`, in canonical form (see {@linkcode canonicalHost}). A name is
 * not an address: `localhost` is false here.
 *
 * @example
 * ```ts
 * isLoopbackAddress("127.0.0.2"); // true
 * isLoopbackAddress("127.0.0.1.nip.io"); // false
 * ```
 */
export function isLoopbackAddress(host: string): boolean {
  return host === "::1" || (host.startsWith("127.") && ipVersion(host) === 4);
}

/**
 * Why `address` (an IP literal) can never be where a datagram is sent, or undefined: the unspecified address
 * (`0.0.0.0/8`, `::`; RFC 1122 §3.2.1.3: never a destination, and Linux delivers it to the host itself), multicast
 * (`224.0.0.0/4`, `ff00::/8`), the limited broadcast and the rest of `240.0.0.0/4`. IPv4-mapped IPv6 addresses are
 * read as IPv4. An address taken from the network (an SDP's `c=`, a SIP Contact) that is one of these is refused.
 *
 * @example
 * ```ts
 * neverADestination("0.0.0.0"); // "the unspecified address (0.0.0.0/8)"
 * neverADestination("192.0.2.10"); // undefined
 * ```
 */
export function neverADestination(address: string): string | undefined {
  const h = canonicalHost(address);
  const v4 = /^(\d+)\.\d+\.\d+\.\d+$/.exec(h);
  if (v4) {
    const a = Number(v4[1]);
    if (a === 0) return "the unspecified address (0.0.0.0/8)";
    if (a >= 224 && a <= 239) return "a multicast address";
    if (a >= 240) return h === "255.255.255.255" ? "the broadcast address" : "a reserved address (240.0.0.0/4)";
    return undefined;
  }
  if (h === "::") return "the unspecified address (::)";
  if (/^ff[0-9a-f]{2}:/.test(h)) return "a multicast address";
  return undefined;
}

/** True for the wildcard bind addresses `0.0.0.0` and `::`. */
export function isWildcard(host: string): boolean {
  const h = canonicalHost(host);
  return h === "0.0.0.0" || h === "::";
}

/**
 * Resolves a host name to an IP literal (through the system resolver, so
 * `/etc/hosts` applies); IP literals are returned unchanged. `family` restricts
 * the answer to IPv4 or IPv6. Only for names the user configured: a name that
 * came from the network is never looked up.
 *
 * @example
 * ```ts
 * await resolveHost("localhost", 4); // "127.0.0.1"
 * ```
 */
export async function resolveHost(host: string, family?: 4 | 6): Promise<string> {
  const h = stripBrackets(host);
  if (ipVersion(h) !== 0) return h;
  try {
    // Loaded on first use: most processes never resolve a name.
    const { lookup } = await import("node:dns/promises");
    const r = await lookup(h, family ? { family } : {});
    return r.address;
  } catch (e) {
    throw new Error(
      `cannot resolve host "${h}"${family ? ` to an IPv${family} address` : ""}: ${(e as Error).message}`,
    );
  }
}

/**
 * A zod-friendly check for `host:port` option values: returns an error message,
 * or undefined when `value` parses.
 */
export function hostPortProblem(value: string, defaultPort?: number): string | undefined {
  try {
    parseHostPort(value, defaultPort);
    return undefined;
  } catch (e) {
    return (e as Error).message;
  }
}
