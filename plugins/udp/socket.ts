/**
 * UDP sockets for the media plane: one receive loop per socket, sockets shared
 * between the `udp-source` and `udp-sink` of a call (symmetric RTP: we send from
 * the port we receive on), and RTP/RTCP port-pair allocation.
 *
 * **API choice: `Deno.listenDatagram`** (needs `"unstable": ["net"]`), not
 * `node:dgram`. Measured with `bench/udp_bench.ts` on this machine (Deno 2.9.6,
 * loopback, 172-byte packets, one process, two runs): `Deno.listenDatagram`
 * sends 523–556 k packets/s awaiting each send (383–455 k with 1000 sends in
 * flight; 465 k through this module's ordered `post`/`send`) against 71–118 k
 * for `node:dgram`, and moves 293–345 k packets/s send+receive against
 * 67–115 k. Its sends are eager (the datagram leaves during the `send()` call,
 * so a busy scheduler cannot delay it), `receive(buffer)` reuses one buffer
 * and truncates at its length (so oversize detection is a length check), and
 * `close()` ends a pending receive at once. Keep only a few sends in flight:
 * thousands of pending send ops slow Deno's event loop down for seconds.
 *
 * **Sharing.** A socket bound to a fixed port is registered under
 * {@linkcode socketKey} (`udp:<bind>:<port>`) with the pipeline's
 * `ctx.shared(...)`, so a source and a sink naming the same bind address and
 * port, in any pipelines of the process, get one socket; it closes when the last
 * pipeline holding it ends.
 *
 * **RTP/RTCP pairs.** {@linkcode allocatePortPair} binds an even RTP port and
 * port + 1 for RTCP and *reserves* both sockets; whoever later opens the same
 * address and port through {@linkcode openUdpSocket} (the `udp-source` or
 * `udp-sink` for RTP, the RTCP stage for port + 1) takes the reserved socket
 * over instead of binding again, so no other process can grab the port between
 * the SDP offer and the start of media. The SIP plugin calls `release()` on the
 * pair when the call ends; it closes whatever was never taken over. The RTCP
 * stage (`plugins/rtp/rtcp.ts`) binds its own socket on RTP port + 1: it should
 * open it with `openUdpSocket(bind, rtpPort + 1)` (or share it with
 * `acquireSharedSocket`), which takes the reservation over; if it binds with
 * `Deno.listenDatagram` directly, the pair's `releaseRtcp()` must be called
 * first, or the bind fails with "address in use".
 *
 * @module
 */
import type { StageContext } from "../../core/stage.ts";
import { canonicalHost, formatHostPort, type HostPort, ipVersion, isWildcard } from "./address.ts";

/** Called for each datagram received; a returned promise pauses receiving until it settles. */
export type PacketHandler = (data: Uint8Array, remote: HostPort) => void | Promise<void>;

/** Told how a {@linkcode UdpSocket.post} went. */
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
  /** Called for a receive error other than the socket closing (receiving goes on). */
  onError?: (error: unknown) => void;
  /** Called when the receive loop gives up after too many errors in a row. */
  onFatal?: (error: unknown) => void;
}

/** Receive errors in a row after which the loop gives up. */
const MAX_CONSECUTIVE_ERRORS = 100;

interface Listener extends ListenOptions {
  handler: PacketHandler;
  maxSize: number;
}

/**
 * A bound UDP socket: sends to any address, and delivers received datagrams to
 * at most one listener at a time (the `udp-source` using it).
 *
 * @example
 * ```ts
 * const a = UdpSocket.bind("127.0.0.1", 0);
 * const b = UdpSocket.bind("127.0.0.1", 0);
 * b.listen((data, from) => console.log(data.length, from.port));
 * await a.send(new Uint8Array(12), { hostname: "127.0.0.1", port: b.port });
 * ```
 */
export class UdpSocket {
  /** The underlying Deno socket. */
  readonly conn: Deno.DatagramConn;
  /** Bound address as the kernel reports it (e.g. `0.0.0.0`, `::`). */
  readonly hostname: string;
  /** Bound port. */
  readonly port: number;
  /** Called once when the socket closes (e.g. to release an RTCP reservation). */
  onClose?: () => void;
  #listener: Listener | undefined;
  #receiving: Promise<void> | undefined;
  #closed = false;
  #buf = new Uint8Array(0);
  #sendBusy = false;
  #inFlight: SendListener | undefined;
  #sendQueue: (Uint8Array | HostPort | SendListener | undefined)[] = []; // flat triples: data, to, listener
  #sendHead = 0;
  #lastTo: HostPort | undefined;
  #lastAddr: Deno.NetAddr | undefined;

  /**
   * Wraps a bound socket.
   *
   * @param conn a bound datagram socket; this object owns it from now on
   */
  constructor(conn: Deno.DatagramConn) {
    this.conn = conn;
    const a = conn.addr as Deno.NetAddr;
    this.hostname = a.hostname;
    this.port = a.port;
  }

  /**
   * Binds `hostname:port` (port 0 = ephemeral), taking over a socket reserved by
   * {@linkcode allocatePortPair} when there is one. Throws an error naming the
   * address when the port is in use or the address is not local.
   */
  static bind(hostname: string, port: number): UdpSocket {
    return new UdpSocket(openUdpSocket(hostname, port));
  }

  /** True once {@linkcode close} has run. */
  get closed(): boolean {
    return this.#closed;
  }

  /** IP version of the bound address (a `::` socket is dual-stack and reports 6). */
  get family(): 4 | 6 {
    return ipVersion(this.hostname) === 6 ? 6 : 4;
  }

  /**
   * Sends one datagram. Resolves with the bytes sent; rejects on a send error.
   * Same ordering as {@linkcode post}, with a promise per datagram.
   */
  send(data: Uint8Array, to: HostPort): Promise<number> {
    return new Promise((resolve, reject) => this.post(data, to, { sent: resolve, failed: reject }));
  }

  /**
   * Sends one datagram and tells `listener` (if any) how it went, without a
   * promise per datagram (the paced sink sends 50 per second per stream, and
   * every allocation on that path feeds the garbage collector, whose pauses
   * delay all streams at once).
   *
   * Datagrams leave in call order: one send op is in flight per socket and the
   * rest wait in a queue. (Deno completes a send during the call when the
   * socket is known to be writable, but on a fresh socket the ops stay pending
   * until the next event-loop turn and then complete newest first: five sends
   * in a row arrived in reverse order.) In the common case the next send is
   * issued one microtask after the previous one, within the same task.
   */
  post(data: Uint8Array, to: HostPort, listener?: SendListener): void {
    if (!this.#sendBusy) {
      this.#issue(data, to, listener);
      return;
    }
    const q = this.#sendQueue;
    q.push(data, to, listener);
  }

  /** Datagrams waiting for the send in flight to complete. */
  get sendBacklog(): number {
    return (this.#sendQueue.length - this.#sendHead) / 3;
  }

  #issue(data: Uint8Array, to: HostPort, listener: SendListener | undefined): void {
    this.#sendBusy = true;
    this.#inFlight = listener;
    let addr = this.#lastAddr;
    if (to !== this.#lastTo || addr === undefined) {
      addr = { transport: "udp", hostname: to.hostname, port: to.port };
      this.#lastTo = to;
      this.#lastAddr = addr;
    }
    let p: Promise<number>;
    try {
      p = this.conn.send(data, addr);
    } catch (e) {
      p = Promise.reject(e);
    }
    p.then(this.#onSent, this.#onFailed);
  }

  #onSent = (n: number): void => {
    const l = this.#inFlight;
    this.#inFlight = undefined;
    this.#sendNext();
    l?.sent(n);
  };

  #onFailed = (e: unknown): void => {
    const l = this.#inFlight;
    this.#inFlight = undefined;
    this.#sendNext();
    l?.failed(e);
  };

  #sendNext(): void {
    const q = this.#sendQueue;
    if (this.#sendHead === q.length) {
      this.#sendBusy = false;
      if (q.length > 0) {
        this.#sendQueue = [];
        this.#sendHead = 0;
      }
      return;
    }
    const h = this.#sendHead;
    const data = q[h] as Uint8Array, to = q[h + 1] as HostPort, l = q[h + 2] as SendListener | undefined;
    q[h] = q[h + 1] = q[h + 2] = undefined;
    this.#sendHead = h + 3;
    this.#issue(data, to, l);
  }

  /**
   * Delivers received datagrams to `handler` (a copy of the bytes, and the
   * sender with IPv4-mapped addresses written as IPv4) until the returned
   * function is called or the socket closes. A later `listen` replaces the
   * listener. Datagrams arriving while nobody listens are dropped.
   */
  listen(handler: PacketHandler, opts: ListenOptions = {}): () => void {
    const l: Listener = { ...opts, handler, maxSize: opts.maxSize ?? 1500 };
    this.#listener = l;
    if (!this.#receiving && !this.#closed) this.#receiving = this.#receiveLoop();
    return () => {
      if (this.#listener === l) this.#listener = undefined;
    };
  }

  async #receiveLoop(): Promise<void> {
    let errors = 0;
    try {
      while (!this.#closed && this.#listener) {
        const want = this.#listener.maxSize + 1;
        if (this.#buf.length !== want) this.#buf = new Uint8Array(want);
        let got: [Uint8Array, Deno.Addr];
        try {
          got = await this.conn.receive(this.#buf);
          errors = 0;
        } catch (e) {
          if (this.#closed) return;
          const l = this.#listener;
          if (++errors >= MAX_CONSECUTIVE_ERRORS) {
            l?.onFatal?.(e);
            return;
          }
          l?.onError?.(e);
          continue;
        }
        const l = this.#listener;
        if (!l) return;
        const [view, addr] = got;
        const a = addr as Deno.NetAddr;
        const remote = { hostname: canonicalHost(a.hostname), port: a.port };
        if (view.length > l.maxSize) {
          l.onOversize?.(remote);
          continue;
        }
        const r = l.handler(view.slice(), remote);
        if (r) await r;
      }
    } finally {
      this.#receiving = undefined;
    }
  }

  /**
   * Closes the socket. Resolves once a pending receive has ended too: only then
   * is the port free to bind again (Deno frees it when the cancelled receive op
   * lets go of the socket). Idempotent.
   */
  async close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      this.#listener = undefined;
      try {
        this.conn.close();
      } catch { /* already closed */ }
      const f = this.onClose;
      this.onClose = undefined;
      f?.();
    }
    await this.#receiving;
  }
}

/**
 * The `ctx.shared` key of the socket bound to `bind:port`:
 * `udp:<canonical bind address>:<port>`, e.g. `udp:0.0.0.0:10000`, `udp:::1:10000`.
 */
export function socketKey(bind: string, port: number): string {
  return `udp:${canonicalHost(bind)}:${port}`;
}

// ---- reservations ------------------------------------------------------------------------

const reserved = new Map<string, Deno.DatagramConn>();

/**
 * Takes over a socket reserved by {@linkcode allocatePortPair} for `bind:port`,
 * or returns undefined. A reservation on a wildcard address (`0.0.0.0`, `::`)
 * also serves a request for a specific address of the same family on that port.
 */
export function takeReservedSocket(bind: string, port: number): Deno.DatagramConn | undefined {
  if (port === 0) return undefined;
  const key = socketKey(bind, port);
  let conn = reserved.get(key);
  if (conn) {
    reserved.delete(key);
    return conn;
  }
  const fam = ipVersion(bind);
  for (const [k, c] of reserved) {
    const a = c.addr as Deno.NetAddr;
    if (a.port === port && isWildcard(a.hostname) && (fam === 0 || ipVersion(a.hostname) === fam)) {
      reserved.delete(k);
      conn = c;
      break;
    }
  }
  return conn;
}

/**
 * Opens a UDP socket on `bind:port`: takes over a reserved socket (see
 * {@linkcode allocatePortPair}) or binds a new one (port 0 = ephemeral). Throws
 * an `Error` naming the address and the reason (port in use, address not local).
 *
 * @example
 * ```ts
 * const conn = openUdpSocket("127.0.0.1", 0);
 * conn.close();
 * ```
 */
export function openUdpSocket(bind: string, port: number): Deno.DatagramConn {
  const r = takeReservedSocket(bind, port);
  if (r) return r;
  const where = formatHostPort({ hostname: canonicalHost(bind), port });
  try {
    return Deno.listenDatagram({ transport: "udp", hostname: bind, port });
  } catch (e) {
    if (e instanceof Deno.errors.AddrInUse) {
      throw new Error(`cannot bind UDP ${where}: the port is already in use (choose another port, or 0)`, {
        cause: e,
      });
    }
    if (e instanceof Deno.errors.AddrNotAvailable) {
      throw new Error(`cannot bind UDP ${where}: ${bind} is not an address of this host`, { cause: e });
    }
    throw new Error(`cannot bind UDP ${where}: ${(e as Error).message}`, { cause: e });
  }
}

/** Parses a port range `"min-max"` (e.g. `"10000-20000"`) into `[min, max]`. */
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

/** An RTP/RTCP port pair from {@linkcode allocatePortPair}. */
export interface PortPair {
  /** The address both ports are bound on. */
  readonly bind: string;
  /** The even RTP port. */
  readonly rtpPort: number;
  /** The RTCP port, `rtpPort + 1`. */
  readonly rtcpPort: number;
  /** Releases the RTCP reservation only (to bind port + 1 some other way). */
  releaseRtcp(): void;
  /** Closes the sockets of the pair that were never taken over. Idempotent. */
  release(): void;
}

/**
 * Allocates an RTP/RTCP port pair: an even port P in `range` whose P + 1 is
 * also free, both bound on `bind` and held in reserve until a stage opens them
 * with {@linkcode openUdpSocket} (or `UdpSocket.bind`, the `udp-source`, the
 * `udp-sink`). The search starts at a random even port and wraps around the
 * range, so concurrent processes rarely collide. Throws when no pair is free.
 *
 * @param range inclusive `[min, max]` (default `[10000, 20000]`)
 * @param bind local address (default `0.0.0.0`); it may also come first
 *
 * @example
 * ```ts
 * const pair = allocatePortPair([10000, 20000], "127.0.0.1");
 * // put pair.rtpPort in the SDP offer; the udp-source on 127.0.0.1:pair.rtpPort takes the socket over
 * pair.release(); // when the call ends
 * ```
 */
export function allocatePortPair(range?: [number, number], bind?: string): PortPair;
/** The same, with the address first: `allocatePortPair("127.0.0.1", [10000, 20000])`. */
export function allocatePortPair(bind: string, range?: [number, number]): PortPair;
export function allocatePortPair(a?: [number, number] | string, b?: string | [number, number]): PortPair {
  const range = (typeof a === "string" ? b : a) as [number, number] | undefined ?? [10000, 20000];
  const bind = (typeof a === "string" ? a : b) as string | undefined ?? "0.0.0.0";
  const [min, max] = range;
  const first = min % 2 === 0 ? min : min + 1;
  const count = Math.floor((max - 1 - first) / 2) + 1;
  if (!(count > 0)) throw new RangeError(`port range ${min}-${max} holds no even port with port+1 inside it`);
  const start = Math.floor(Math.random() * count);
  for (let i = 0; i < count; i++) {
    const port = first + 2 * ((start + i) % count);
    const rtpKey = socketKey(bind, port);
    const rtcpKey = socketKey(bind, port + 1);
    if (reserved.has(rtpKey) || reserved.has(rtcpKey)) continue;
    const rtp = tryBind(bind, port);
    if (!rtp) continue;
    const rtcp = tryBind(bind, port + 1);
    if (!rtcp) {
      rtp.close();
      continue;
    }
    reserved.set(rtpKey, rtp);
    reserved.set(rtcpKey, rtcp);
    const drop = (key: string, conn: Deno.DatagramConn) => {
      if (reserved.get(key) !== conn) return; // taken over: its new owner closes it
      reserved.delete(key);
      conn.close();
    };
    return {
      bind,
      rtpPort: port,
      rtcpPort: port + 1,
      releaseRtcp: () => drop(rtcpKey, rtcp),
      release: () => {
        drop(rtpKey, rtp);
        drop(rtcpKey, rtcp);
      },
    };
  }
  throw new Error(`no free RTP/RTCP port pair in ${min}-${max} on ${bind}`);
}

function tryBind(bind: string, port: number): Deno.DatagramConn | undefined {
  try {
    return Deno.listenDatagram({ transport: "udp", hostname: bind, port });
  } catch (e) {
    if (e instanceof Deno.errors.AddrInUse) return undefined;
    throw new Error(`cannot bind UDP ${formatHostPort({ hostname: bind, port })}: ${(e as Error).message}`, {
      cause: e,
    });
  }
}

/**
 * The socket a stage uses on `bind:port`, shared through `ctx.shared` with
 * every other stage of the process on the same address and port.
 *
 * - `port > 0`: shared under `udp:<bind>:<port>`; the first stage binds it (or
 *   takes over a reservation), the others get the same object.
 * - `port === 0` with `portRange`: allocates an RTP/RTCP pair in the range, uses
 *   the even port and keeps port + 1 reserved for the RTCP stage until this
 *   socket closes.
 * - `port === 0` without `portRange`: an ephemeral port.
 *
 * In the last two cases the socket is then registered under its actual port,
 * so a stage created later with that port shares it. The socket closes when
 * the last pipeline holding it ends.
 */
export function acquireSharedSocket(
  ctx: Pick<StageContext, "shared">,
  bind: string,
  port: number,
  portRange?: [number, number],
): UdpSocket {
  const dispose = (s: UdpSocket) => s.close();
  if (port > 0) return ctx.shared(socketKey(bind, port), () => UdpSocket.bind(bind, port), dispose);
  let sock: UdpSocket;
  if (portRange) {
    const pair = allocatePortPair(portRange, bind);
    sock = new UdpSocket(takeReservedSocket(bind, pair.rtpPort)!);
    sock.onClose = () => pair.release();
  } else {
    sock = UdpSocket.bind(bind, 0);
  }
  const got = ctx.shared(socketKey(bind, sock.port), () => sock, dispose);
  if (got !== sock) sock.close(); // cannot happen for a freshly bound port, but never leak
  return got;
}
