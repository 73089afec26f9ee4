/**
 * RTP/RTCP port pairs (RFC 3550 section 11: an even RTP port, RTCP on the next
 * one), allocated from a range on a {@linkcode Network} and held bound from the
 * moment they are put in an SDP until the call's session closes them, so no
 * other process can take them in between.
 *
 * @module
 */
import { canonicalHost } from "./address.ts";
import { AddressInUseError, type DatagramSocket, type Network } from "./datagram.ts";

/**
 * Parses a port range `"min-max"` (e.g. `"10000-20000"`) into `[min, max]`.
 * Throws a `RangeError` saying what is wrong.
 *
 * @example
 * ```ts
 * parsePortRange("31000-31010"); // [31000, 31010]
 * ```
 */
export function parsePortRange(text: string): [number, number] {
  const m = /^\s*(\d{1,5})\s*-\s*(\d{1,5})\s*$/.exec(text);
  if (!m) throw new RangeError(`invalid port range "${text}": expected min-max, e.g. 10000-20000`);
  const min = Number(m[1]), max = Number(m[2]);
  if (min < 1 || max > 65535 || min >= max) {
    throw new RangeError(`invalid port range "${text}": expected 1 <= min < max <= 65535`);
  }
  if ((min % 2 === 0 ? min : min + 1) + 1 > max) {
    throw new RangeError(`port range "${text}" holds no even port with port+1 inside it`);
  }
  return [min, max];
}

/** A bound RTP/RTCP port pair from {@linkcode PortAllocator.pair}. */
export interface PortPair {
  /** The address both sockets are bound on. */
  readonly bind: string;
  /** The even RTP port. */
  readonly rtpPort: number;
  /** The RTCP port, `rtpPort + 1`. */
  readonly rtcpPort: number;
  /** The RTP socket. */
  readonly rtp: DatagramSocket;
  /** The RTCP socket. */
  readonly rtcp: DatagramSocket;
  /** Closes both sockets. Idempotent. */
  close(): Promise<void>;
}

/**
 * Hands out RTP/RTCP port pairs from a range. The search starts at a random
 * even port and wraps around, so concurrent processes rarely collide; a port
 * another process holds is skipped.
 *
 * @example
 * ```ts
 * const ports = new PortAllocator(udpNetwork, [31000, 31010]);
 * const pair = ports.pair("127.0.0.1"); // pair.rtpPort goes in the SDP
 * await pair.close(); // when the call ends
 * ```
 */
export class PortAllocator {
  /** The network the sockets are bound on. */
  readonly net: Network;
  /** Inclusive `[min, max]`. */
  readonly range: readonly [number, number];
  readonly #random: () => number;
  /**
   * RTP ports of the pairs this allocator handed out that are not closed yet: skipped without trying to bind them
   * (a bind that fails costs a system call and an exception; with thousands of calls up, many tries would).
   */
  readonly #held = new Set<number>();

  /**
   * Creates an allocator.
   * @param net the network to bind on
   * @param range inclusive `[min, max]` (default `[10000, 20000]`)
   * @param random source of the random start (default `Math.random`)
   */
  constructor(net: Network, range: [number, number] = [10000, 20000], random: () => number = Math.random) {
    const [min, max] = range;
    const first = min % 2 === 0 ? min : min + 1;
    if (!(first + 1 <= max)) throw new RangeError(`port range ${min}-${max} holds no even port with port+1 inside it`);
    this.net = net;
    this.range = [min, max];
    this.#random = random;
  }

  /**
   * Binds a free pair on `bind`. Throws when every pair of the range is taken, or with the bind's error when it fails
   * otherwise (the process out of descriptors), binding nothing.
   */
  pair(bind: string): PortPair {
    const [min, max] = this.range;
    const first = min % 2 === 0 ? min : min + 1;
    const count = Math.floor((max - 1 - first) / 2) + 1;
    const start = Math.floor(this.#random() * count);
    for (let i = 0; i < count; i++) {
      const port = first + 2 * ((start + i) % count);
      if (this.#held.has(port)) continue;
      const rtp = this.#tryBind(bind, port);
      if (!rtp) continue;
      let rtcp: DatagramSocket | undefined;
      try {
        rtcp = this.#tryBind(bind, port + 1);
      } catch (e) {
        // Out of descriptors (EMFILE) between the two: the RTP socket is not kept (it leaked, one per call refused).
        void rtp.close();
        throw e;
      }
      if (!rtcp) {
        void rtp.close();
        continue;
      }
      let closed: Promise<void> | undefined;
      this.#held.add(port);
      return {
        bind,
        rtpPort: port,
        rtcpPort: port + 1,
        rtp,
        rtcp,
        close: () =>
          closed ??= Promise.all([rtp.close(), rtcp.close()]).then(() => {}).finally(() => this.#held.delete(port)),
      };
    }
    throw new Error(`no free RTP/RTCP port pair in ${min}-${max} on ${canonicalHost(bind)} (all ${count} taken)`);
  }

  #tryBind(bind: string, port: number): DatagramSocket | undefined {
    try {
      return this.net.bind(bind, port);
    } catch (e) {
      if (e instanceof AddressInUseError) return undefined;
      throw e;
    }
  }
}
