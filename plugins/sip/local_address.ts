/**
 * Which local address to advertise (Via, Contact, SDP `c=`) towards a peer when
 * the socket is bound to a wildcard address.
 *
 * Layer: transport (no SIP knowledge; reads the host's network interfaces).
 *
 * @module
 */

/** True for addresses such as 0.0.0.0 and :: that must not be advertised. */
function isUnspecified(host: string): boolean {
  return host === "" || host === "0.0.0.0" || host === "::" || host === "[::]";
}

function isLoopback(host: string): boolean {
  return host === "localhost" || host === "::1" || host.startsWith("127.");
}

function ipv4ToInt(ip: string): number | undefined {
  const p = ip.split(".");
  if (p.length !== 4) return undefined;
  let n = 0;
  for (const x of p) {
    const v = Number(x);
    if (!/^\d{1,3}$/.test(x) || v > 255) return undefined;
    n = (n * 256) + v;
  }
  return n;
}

/**
 * The local address to advertise towards `peer` when bound to `bound`: the bound
 * address itself unless it is unspecified; loopback for a loopback peer; else the
 * interface on the peer's subnet, else the first non-internal one of its family.
 *
 * @example
 * ```ts
 * localAddressFacing("0.0.0.0", "127.0.0.1"); // "127.0.0.1"
 * localAddressFacing("10.1.2.3", "192.0.2.7"); // "10.1.2.3"
 * ```
 */
export function localAddressFacing(bound: string, peer: string): string {
  if (!isUnspecified(bound)) return bound;
  const v6 = peer.includes(":");
  if (isLoopback(peer)) return v6 ? "::1" : "127.0.0.1";
  try {
    const ifaces = Deno.networkInterfaces().filter((i) => i.family === (v6 ? "IPv6" : "IPv4"));
    const peerN = v6 ? undefined : ipv4ToInt(peer);
    if (peerN !== undefined) {
      for (const i of ifaces) {
        const a = ipv4ToInt(i.address);
        const m = ipv4ToInt(i.netmask);
        if (a === undefined || m === undefined || isLoopback(i.address)) continue;
        if ((((a ^ peerN) & m) >>> 0) === 0) return i.address;
      }
    }
    const external = ifaces.find((i) => !isLoopback(i.address) && !i.address.startsWith("fe80"));
    if (external) return external.address;
  } catch {
    // no --allow-sys: fall back to loopback
  }
  return v6 ? "::1" : "127.0.0.1";
}
