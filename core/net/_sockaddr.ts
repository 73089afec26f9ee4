/**
 * Private to the network layer: IP addresses to and from the C socket
 * address structs `sockaddr_in` and `sockaddr_in6` (layouts in `_libc.ts`),
 * for the FFI datagram path. Pure functions over a DataView: no FFI here, so
 * they are tested on their own.
 *
 * @module
 */
import { AF_INET, AF_INET6, SOCKADDR_IN6_SIZE, SOCKADDR_IN_SIZE } from "./_libc.ts";
import { formatIPv6Groups } from "./address.ts";

/** A parsed IP literal: 4 or 16 address bytes, and an IPv6 scope (interface index) or 0. */
export interface IpBytes {
  /** 4 bytes (IPv4) or 16 (IPv6). */
  readonly bytes: Uint8Array;
  /** IPv6 scope id from a numeric `%zone`, else 0. */
  readonly scope: number;
}

const V4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

function parseV4(s: string): Uint8Array | undefined {
  const m = V4.exec(s);
  if (!m) return undefined;
  const out = new Uint8Array(4);
  for (let i = 0; i < 4; i++) {
    const part = m[i + 1];
    if (part.length > 1 && part[0] === "0") return undefined; // no leading zeros (as ipVersion)
    const n = Number(part);
    if (n > 255) return undefined;
    out[i] = n;
  }
  return out;
}

function parseV6(text: string): IpBytes | undefined {
  let s = text;
  let scope = 0;
  const pct = s.indexOf("%");
  if (pct >= 0) {
    const zone = s.slice(pct + 1);
    if (!/^\d{1,10}$/.test(zone)) return undefined; // interface names need a lookup: numeric zones only
    scope = Number(zone);
    s = s.slice(0, pct);
  }
  const out = new Uint8Array(16);
  let tail: Uint8Array | undefined;
  const lastColon = s.lastIndexOf(":");
  if (lastColon >= 0 && s.indexOf(".", lastColon) > 0) {
    tail = parseV4(s.slice(lastColon + 1));
    if (!tail) return undefined;
    s = s.slice(0, lastColon + 1) + "0:0"; // stand-in groups, overwritten below
  }
  const gap = s.indexOf("::");
  if (gap !== s.lastIndexOf("::")) return undefined;
  const groups = (part: string): number[] | undefined => {
    if (part === "") return [];
    const g: number[] = [];
    for (const x of part.split(":")) {
      if (!/^[0-9a-fA-F]{1,4}$/.test(x)) return undefined;
      g.push(parseInt(x, 16));
    }
    return g;
  };
  let all: number[];
  if (gap < 0) {
    const g = groups(s);
    if (!g || g.length !== 8) return undefined;
    all = g;
  } else {
    const l = groups(s.slice(0, gap)), r = groups(s.slice(gap + 2));
    if (!l || !r || l.length + r.length > 7) return undefined;
    all = [...l, ...new Array(8 - l.length - r.length).fill(0), ...r];
  }
  for (let i = 0; i < 8; i++) {
    out[2 * i] = all[i] >> 8;
    out[2 * i + 1] = all[i] & 0xff;
  }
  if (tail) out.set(tail, 12);
  return { bytes: out, scope };
}

const parsed = new Map<string, IpBytes | null>();

/**
 * The bytes of an IP literal (IPv6 with or without brackets, an optional
 * numeric `%zone`), `localhost` as 127.0.0.1, or undefined for anything else
 * (a host name: the caller resolves names first). Results are remembered (up
 * to 4 096 distinct strings).
 */
export function parseIp(host: string): IpBytes | undefined {
  let r = parsed.get(host);
  if (r === undefined) {
    const h = host.startsWith("[") && host.endsWith("]") ? host.slice(1, -1) : host;
    const v4 = h === "localhost" ? new Uint8Array([127, 0, 0, 1]) : parseV4(h);
    r = v4 ? { bytes: v4, scope: 0 } : parseV6(h) ?? null;
    if (parsed.size >= 4096) parsed.clear();
    parsed.set(host, r);
  }
  return r ?? undefined;
}

/**
 * Writes the socket address of `ip:port` at `off`, for a socket of `family`
 * (an IPv6 socket gets IPv4 addresses as IPv4-mapped IPv6). Returns the
 * struct's length (16 or 28), or -1 when an IPv4 socket is given an IPv6
 * address. `view` must have room for 28 bytes at `off`.
 */
export function writeSockaddr(view: DataView, off: number, ip: IpBytes, port: number, family: 4 | 6): number {
  const b = ip.bytes;
  if (family === 4) {
    if (b.length !== 4) return -1;
    view.setUint16(off, AF_INET, true);
    view.setUint16(off + 2, port, false);
    for (let i = 0; i < 4; i++) view.setUint8(off + 4 + i, b[i]);
    view.setUint32(off + 8, 0);
    view.setUint32(off + 12, 0);
    return SOCKADDR_IN_SIZE;
  }
  view.setUint16(off, AF_INET6, true);
  view.setUint16(off + 2, port, false);
  view.setUint32(off + 4, 0); // flowinfo
  if (b.length === 4) {
    view.setUint32(off + 8, 0);
    view.setUint32(off + 12, 0);
    view.setUint32(off + 16, 0x0000ffff, false);
    for (let i = 0; i < 4; i++) view.setUint8(off + 20 + i, b[i]);
  } else {
    for (let i = 0; i < 16; i++) view.setUint8(off + 8 + i, b[i]);
  }
  view.setUint32(off + 24, ip.scope, true);
  return SOCKADDR_IN6_SIZE;
}

const v4Names = new Map<number, string>();
let lastV6Key = "", lastV6Name = "";

function v4Name(a: number): string {
  let s = v4Names.get(a);
  if (s === undefined) {
    s = `${a >>> 24}.${(a >>> 16) & 0xff}.${(a >>> 8) & 0xff}.${a & 0xff}`;
    if (v4Names.size >= 4096) v4Names.clear();
    v4Names.set(a, s);
  }
  return s;
}

/**
 * Reads the socket address at `off` (written by the kernel): the host in the
 * canonical form of `canonicalHost` (IPv4-mapped IPv6 as IPv4, IPv6 compressed
 * per RFC 5952) and the port; undefined for another family.
 */
export function readSockaddr(view: DataView, off: number): { hostname: string; port: number } | undefined {
  const family = view.getUint16(off, true);
  const port = view.getUint16(off + 2, false);
  if (family === AF_INET) return { hostname: v4Name(view.getUint32(off + 4, false)), port };
  if (family !== AF_INET6) return undefined;
  const w0 = view.getUint32(off + 8, false), w1 = view.getUint32(off + 12, false);
  const w2 = view.getUint32(off + 16, false), w3 = view.getUint32(off + 20, false);
  if (w0 === 0 && w1 === 0 && w2 === 0x0000ffff) return { hostname: v4Name(w3), port };
  const key = `${w0},${w1},${w2},${w3}`;
  if (key !== lastV6Key) {
    const g = [w0 >>> 16, w0 & 0xffff, w1 >>> 16, w1 & 0xffff, w2 >>> 16, w2 & 0xffff, w3 >>> 16, w3 & 0xffff];
    lastV6Key = key;
    lastV6Name = formatIPv6Groups(g);
  }
  return { hostname: lastV6Name, port };
}
