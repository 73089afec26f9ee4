/**
 * A socket decorator: passes everything through to another socket, except the
 * outgoing datagrams a rule drops. Tests build lossy or selective links with
 * it; a SIP trace taps a socket with it.
 *
 * @module
 */
import type { HostPort } from "./address.ts";
import type { DatagramSocket, ListenOptions, PacketHandler, SendListener } from "./datagram.ts";

/**
 * A socket that passes everything through to another one, except the
 * datagrams `drop(data, to)` says to drop on the way out: a test's lossy or
 * selective link (see {@linkcode LossySocket}).
 *
 * @example
 * ```ts
 * // Lose every INVITE that `a` sends.
 * const a = new FilteredSocket(net.bind("10.0.0.1", 5060), (d) => new TextDecoder().decode(d).startsWith("INVITE"));
 * ```
 */
export class FilteredSocket implements DatagramSocket {
  /** The socket wrapped. */
  readonly inner: DatagramSocket;
  /** Decides which outgoing datagrams are dropped. */
  readonly drop: (data: Uint8Array, to: HostPort) => boolean;
  /** Datagrams dropped so far. */
  dropped = 0;
  /** Datagrams passed on so far. */
  passed = 0;

  /**
   * Wraps `inner`.
   * @param inner the socket to wrap
   * @param drop true for an outgoing datagram to drop
   */
  constructor(inner: DatagramSocket, drop: (data: Uint8Array, to: HostPort) => boolean) {
    this.inner = inner;
    this.drop = drop;
  }

  /** The wrapped socket's address. */
  get local(): HostPort {
    return this.inner.local;
  }
  /** The wrapped socket's bound address. */
  get hostname(): string {
    return this.inner.hostname;
  }
  /** The wrapped socket's port. */
  get port(): number {
    return this.inner.port;
  }
  /** The wrapped socket's family. */
  get family(): 4 | 6 {
    return this.inner.family;
  }
  /** True once the wrapped socket is closed. */
  get closed(): boolean {
    return this.inner.closed;
  }
  /** The wrapped socket's send backlog. */
  get sendBacklog(): number {
    return this.inner.sendBacklog;
  }

  /** Sends through the wrapped socket unless `drop` says otherwise (then resolves as if sent). */
  send(data: Uint8Array, to: HostPort): Promise<number> {
    if (this.drop(data, to)) {
      this.dropped++;
      return Promise.resolve(data.length);
    }
    this.passed++;
    return this.inner.send(data, to);
  }

  /** Posts through the wrapped socket unless `drop` says otherwise. */
  post(data: Uint8Array, to: HostPort, listener?: SendListener): void {
    if (this.drop(data, to)) {
      this.dropped++;
      listener?.sent(data.length);
      return;
    }
    this.passed++;
    this.inner.post(data, to, listener);
  }

  /** Listens on the wrapped socket. */
  listen(handler: PacketHandler, opts?: ListenOptions): () => void {
    return this.inner.listen(handler, opts);
  }

  /** Closes the wrapped socket. */
  close(): Promise<void> {
    return this.inner.close();
  }
}
