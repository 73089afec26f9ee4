/**
 * An in-memory datagram network on a {@linkcode Clock}, for tests: each
 * datagram is delivered after a latency as a clock timer, so with a
 * `VirtualClock` a whole call (SIP, RTP, RTCP) runs deterministically and
 * faster than real time. Loss, delay and reordering come from a seeded PRNG or
 * a test's own rule; a datagram to a port nobody has bound comes back to the
 * sender as a {@linkcode PortUnreachableError}, like an ICMP port-unreachable.
 *
 * @module
 */
import type { Clock } from "../clock.ts";
import { seededRandom } from "../random.ts";
import { canonicalHost, formatHostPort, type HostPort, ipVersion } from "./address.ts";
import { FilteredSocket } from "./filtered.ts";
import {
  AddressInUseError,
  type DatagramSocket,
  type ListenOptions,
  type Network,
  type PacketHandler,
  PortUnreachableError,
  type SendListener,
} from "./datagram.ts";

/**
 * What becomes of one datagram: delivered after `delayMs` (added to the
 * network's latency), or dropped (`undefined`).
 */
export type Impairment = (data: Uint8Array, from: HostPort, to: HostPort) => { delayMs: number } | undefined;

/** Options of a {@linkcode MemoryNetwork}. */
export interface MemoryNetworkOptions {
  /** Clock that schedules deliveries. */
  clock: Clock;
  /** One-way delay in ms (default 1). */
  latencyMs?: number;
  /** Fraction of datagrams dropped at random, 0..1 (default 0). */
  loss?: number;
  /** Seed of the PRNG that picks the losses (default 1). */
  seed?: number;
  /** A rule applied to every datagram after the random loss (extra delay, or drop). */
  impair?: Impairment;
}

const key = (hostname: string, port: number) => `${canonicalHost(hostname)}|${port}`;

/**
 * A simulated network of datagram sockets.
 *
 * @example
 * ```ts
 * const clock = new VirtualClock();
 * const net = new MemoryNetwork({ clock });
 * const a = net.bind("10.0.0.1", 5060);
 * const b = net.bind("10.0.0.2", 5060);
 * b.listen((d, from) => console.log(from.hostname)); // "10.0.0.1"
 * a.post(new Uint8Array([1]), b.local);
 * clock.advance(1);
 * ```
 */
export class MemoryNetwork implements Network {
  /** The clock deliveries are scheduled on. */
  readonly clock: Clock;
  /** One-way delay in ms. */
  latencyMs: number;
  /** Fraction of datagrams dropped at random. */
  loss: number;
  /** Extra rule for each datagram. */
  impair?: Impairment;
  /** Datagrams delivered to a socket. */
  delivered = 0;
  /** Datagrams sent to an address nobody listens on. */
  undeliverable = 0;
  /** Datagrams dropped by `loss` or `impair`. */
  dropped = 0;
  readonly #nodes = new Map<string, MemorySocket>();
  readonly #random: () => number;
  #nextPort = 49152;

  /**
   * Creates an empty network.
   * @param opts clock, latency, loss and impairment
   */
  constructor(opts: MemoryNetworkOptions) {
    this.clock = opts.clock;
    this.latencyMs = opts.latencyMs ?? 1;
    this.loss = opts.loss ?? 0;
    this.impair = opts.impair;
    this.#random = seededRandom(opts.seed ?? 1);
  }

  /** Binds a socket on `hostname:port` (port 0 picks a free one from 49152). */
  bind(hostname: string, port: number): MemorySocket {
    if (port === 0) {
      while (this.#nodes.has(key(hostname, this.#nextPort))) this.#nextPort++;
      port = this.#nextPort++;
    }
    const k = key(hostname, port);
    if (this.#nodes.has(k)) {
      throw new AddressInUseError(
        `cannot bind UDP ${formatHostPort({ hostname, port })}: the port is already in use (choose another port, or 0)`,
      );
    }
    const s = new MemorySocket({ hostname, port }, (data, to) => this.#route(s, data, to), () => this.#nodes.delete(k));
    this.#nodes.set(k, s);
    return s;
  }

  /**
   * Whether a socket that is open receives what is sent to `hostname:port` (a wildcard bind answers for every host):
   * tests wait for it before sending to a pipeline that is still starting.
   */
  bound(hostname: string, port: number): boolean {
    const node = this.#lookup({ hostname, port });
    return node !== undefined && !node.closed;
  }

  /** The socket bound on `hostname:port`, if any (a wildcard bind answers for every host). */
  #lookup(to: HostPort): MemorySocket | undefined {
    return this.#nodes.get(key(to.hostname, to.port)) ??
      this.#nodes.get(key(ipVersion(to.hostname) === 6 ? "::" : "0.0.0.0", to.port));
  }

  #route(from: MemorySocket, data: Uint8Array, to: HostPort): void {
    const copy = data.slice();
    const src: HostPort = { hostname: canonicalHost(from.local.hostname), port: from.local.port };
    if (this.loss > 0 && this.#random() < this.loss) {
      this.dropped++;
      return;
    }
    let delay = this.latencyMs;
    if (this.impair) {
      const verdict = this.impair(copy, src, to);
      if (!verdict) {
        this.dropped++;
        return;
      }
      delay += verdict.delayMs;
    }
    const dest = { hostname: to.hostname, port: to.port };
    this.clock.after(delay, () => {
      const node = this.#lookup(dest);
      if (!node || node.closed) {
        this.undeliverable++;
        // Like an ICMP port-unreachable, after the same delay back.
        this.clock.after(this.latencyMs, () => from.refused(dest));
        return;
      }
      this.delivered++;
      node.deliver(copy, src);
    });
  }
}

/** A socket on a {@linkcode MemoryNetwork}. */
export class MemorySocket implements DatagramSocket {
  /** Datagrams a socket holds before its first listener (more are dropped). */
  static readonly EARLY_LIMIT = 256;
  /** The bound address. */
  readonly local: HostPort;
  #closed = false;
  #listener: (ListenOptions & { handler: PacketHandler }) | undefined;
  /**
   * Datagrams that arrived before the first listener, as a kernel's receive buffer holds them for a bound socket
   * nobody reads yet (a call's RTP port, bound when it goes into the SDP, before its chain listens); `undefined`
   * once a listener came.
   */
  #early: { data: Uint8Array; from: HostPort }[] | undefined = [];
  readonly #send: (data: Uint8Array, to: HostPort) => void;
  readonly #detach: () => void;

  /**
   * Use {@linkcode MemoryNetwork.bind}.
   * @param local the bound address
   * @param send routes a datagram
   * @param detach removes the socket from its network
   */
  constructor(local: HostPort, send: (data: Uint8Array, to: HostPort) => void, detach: () => void) {
    this.local = local;
    this.#send = send;
    this.#detach = detach;
  }

  /** Bound address. */
  get hostname(): string {
    return this.local.hostname;
  }

  /** Bound port. */
  get port(): number {
    return this.local.port;
  }

  /** IP version of the bound address. */
  get family(): 4 | 6 {
    return ipVersion(this.local.hostname) === 6 ? 6 : 4;
  }

  /** True after close. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Always 0: a memory send completes at once. */
  get sendBacklog(): number {
    return 0;
  }

  /** Sends one datagram through the network. */
  send(data: Uint8Array, to: HostPort): Promise<number> {
    if (this.#closed) return Promise.reject(new Error("socket closed"));
    this.#send(data, to);
    return Promise.resolve(data.length);
  }

  /** Sends one datagram through the network. */
  post(data: Uint8Array, to: HostPort, listener?: SendListener): void {
    if (this.#closed) {
      listener?.failed(new Error("socket closed"));
      return;
    }
    this.#send(data, to);
    listener?.sent(data.length);
  }

  /**
   * Sets the listener. The first one also gets (right after this returns) what arrived before it, up to
   * {@linkcode MemorySocket.EARLY_LIMIT} datagrams, like a real socket's receive buffer.
   */
  listen(handler: PacketHandler, opts: ListenOptions = {}): () => void {
    const l = { ...opts, handler };
    this.#listener = l;
    const early = this.#early;
    this.#early = undefined;
    if (early?.length) queueMicrotask(() => early.forEach((d) => this.deliver(d.data, d.from)));
    return () => {
      if (this.#listener === l) this.#listener = undefined;
    };
  }

  /** Hands a datagram to the listener (called by the network). */
  deliver(data: Uint8Array, from: HostPort): void {
    const l = this.#listener;
    if (this.#closed) return;
    if (!l) {
      if (this.#early && this.#early.length < MemorySocket.EARLY_LIMIT) this.#early.push({ data, from });
      return;
    }
    if (data.length > (l.maxSize ?? 1500)) {
      l.onOversize?.(from);
      return;
    }
    void l.handler(data, from);
  }

  /** Reports a datagram this socket sent as unreachable (called by the network). */
  refused(to: HostPort): void {
    if (!this.#closed) this.#listener?.onError?.(new PortUnreachableError(to));
  }

  /** Unbinds. */
  close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      this.#listener = undefined;
      this.#early = undefined;
      this.#detach();
    }
    return Promise.resolve();
  }
}

/**
 * A socket that loses a fraction of what it sends, chosen by a seeded PRNG, so
 * a test's losses are the same every run.
 *
 * @example
 * ```ts
 * const a = new LossySocket(net.bind("10.0.0.1", 5060), { lossRate: 0.3, seed: 7 });
 * ```
 */
export class LossySocket extends FilteredSocket {
  /** Fraction of datagrams dropped, 0..1. */
  lossRate: number;

  /**
   * Wraps `inner`.
   * @param inner the socket to wrap
   * @param opts fraction of outgoing datagrams to drop (0..1), PRNG seed (default 1)
   */
  constructor(inner: DatagramSocket, opts: { lossRate: number; seed?: number }) {
    const rand = seededRandom(opts.seed ?? 1);
    super(inner, () => rand() < this.lossRate);
    this.lossRate = opts.lossRate;
  }
}
