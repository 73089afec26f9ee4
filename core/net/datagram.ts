/**
 * The datagram socket every protocol uses (SIP, RTP, RTCP, the relay): one
 * abstraction with one receive loop per socket, real ({@linkcode UdpSocket} in
 * `udp.ts`) or simulated ({@linkcode MemoryNetwork} in `memory.ts`), and the
 * {@linkcode Network} that binds them, so a whole call can run over an
 * in-memory network on a virtual clock in tests.
 *
 * @module
 */
import { formatHostPort, type HostPort } from "./address.ts";

/** Called for each datagram received; a returned promise pauses receiving until it settles. */
export type PacketHandler = (data: Uint8Array, remote: HostPort) => void | Promise<void>;

/** Told how a {@linkcode DatagramSocket.post} went. */
export interface SendListener {
  /** The datagram left: `bytes` sent. */
  sent(bytes: number): void;
  /** The send failed. */
  failed(error: unknown): void;
}

/** How a listener wants datagrams delivered. */
export interface ListenOptions {
  /** Largest datagram delivered; larger ones go to `onOversize` (default 1500). */
  maxSize?: number;
  /** Called for a datagram longer than `maxSize` (it is dropped). */
  onOversize?: (remote: HostPort) => void;
  /**
   * Called for a receive error other than the socket closing (receiving goes
   * on). An ICMP port-unreachable for something this socket sent arrives here
   * as a {@linkcode PortUnreachableError} with the address it was sent to
   * (`MemoryNetwork`, and the FFI sockets of a `MediaLoop`, which read the
   * socket's error queue); `UdpSocket` reports only what Deno tells it (a
   * `Deno.errors.ConnectionRefused`, where the platform reports one).
   */
  onError?: (error: unknown) => void;
  /** Called when the receive loop gives up after too many errors in a row. */
  onFatal?: (error: unknown) => void;
}

/**
 * A bound datagram socket: sends to any address, and delivers what it receives
 * to at most one listener at a time.
 *
 * @example
 * ```ts
 * const net = new MemoryNetwork({ clock: new VirtualClock() });
 * const a = net.bind("10.0.0.1", 5060), b = net.bind("10.0.0.2", 5060);
 * b.listen((data, from) => console.log(data.length, from.hostname));
 * a.post(new Uint8Array(3), b.local);
 * ```
 */
export interface DatagramSocket {
  /** The bound address (the address bound, e.g. `0.0.0.0`, and the actual port). */
  readonly local: HostPort;
  /** Bound address: same as `local.hostname`. */
  readonly hostname: string;
  /** Bound port: same as `local.port`. */
  readonly port: number;
  /** IP version of the bound address (a `::` socket is dual-stack and reports 6). */
  readonly family: 4 | 6;
  /** True once {@linkcode DatagramSocket.close} has run. */
  readonly closed: boolean;
  /** Datagrams waiting for the send in flight to complete. */
  readonly sendBacklog: number;
  /** Sends one datagram; resolves with the bytes sent, rejects on a send error. Datagrams leave in call order. */
  send(data: Uint8Array, to: HostPort): Promise<number>;
  /** Sends one datagram without a promise; tells `listener` how it went. Datagrams leave in call order. */
  post(data: Uint8Array, to: HostPort, listener?: SendListener): void;
  /**
   * Delivers received datagrams (a copy of the bytes, and the sender with
   * IPv4-mapped addresses written as IPv4) to `handler` until the returned
   * function is called or the socket closes. A later `listen` replaces the
   * listener; datagrams arriving while nobody listens are dropped.
   */
  listen(handler: PacketHandler, opts?: ListenOptions): () => void;
  /** Closes the socket; resolves once the port is free again. Idempotent. */
  close(): Promise<void>;
  /**
   * Where the socket can send at a given time (the fast network with its native pacer): how long before a
   * datagram's due time to hand it to {@linkcode DatagramSocket.postAt}. Absent or 0: it cannot.
   */
  readonly timedLeadMs?: number;
  /** Sends `data` at `due` (ms of `performance.now()`); `listener` hears `sent` once it is handed over. */
  postAt?(data: Uint8Array, to: HostPort, due: number, listener?: SendListener): void;
  /** Datagrams given to `postAt` that have not left yet. */
  readonly timedPending?: number;
  /** Drops the datagrams given to `postAt` that have not left; returns how many. */
  forgetTimed?(): number;
}

/**
 * Binds datagram sockets: the real one ({@linkcode udpNetwork}) or an
 * in-memory one for tests ({@linkcode MemoryNetwork}). Whoever owns calls passes
 * its network down to the sessions it creates; nothing reaches a global one.
 */
export interface Network {
  /**
   * Binds `hostname:port` (port 0 = any free port). Throws an `Error` naming the
   * address and the reason (port in use, address not local).
   */
  bind(hostname: string, port: number): DatagramSocket;
}

/** Thrown by {@linkcode Network.bind} when the port is taken (so a port search can try the next one). */
export class AddressInUseError extends Error {
  /**
   * Creates the error.
   * @param message what could not be bound, and what to do
   * @param options the cause
   */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "AddressInUseError";
  }
}

/**
 * Passed to a socket's `onError` when a datagram it sent found nobody listening
 * at its destination (an ICMP port-unreachable, or its simulation).
 */
export class PortUnreachableError extends Error {
  /** Where the datagram was sent, when known. */
  readonly to?: HostPort;
  /**
   * Creates the error.
   * @param to the unreachable destination, when known
   */
  constructor(to?: HostPort) {
    super(`port unreachable${to ? `: ${formatHostPort(to)}` : ""} (nothing listens there)`);
    this.name = "PortUnreachableError";
    this.to = to;
  }
}
