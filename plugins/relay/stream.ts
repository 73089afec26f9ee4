/**
 * Byte-stream connections for the relay's registration protocol: one small
 * interface ({@linkcode StreamConn}, {@linkcode StreamNetwork}) with two
 * implementations, real TCP ({@linkcode TcpStreamNetwork}, on `Deno.listen` /
 * `Deno.connect`) and an in-memory one on a clock
 * ({@linkcode MemoryStreamNetwork}), so the relay and its clients run on a
 * `VirtualClock` in tests, deterministically, exactly as they do over TCP.
 *
 * (The datagram counterpart lives in `core/net/`; this could join it once a
 * second protocol needs streams.)
 *
 * @module
 */
import type { Clock, Timer } from "../../core/clock.ts";
import { type Logger, silentLogger } from "../../core/log.ts";
import { acceptLoop } from "../../core/net/accept.ts";
import { canonicalHost, formatHostPort, type HostPort, isWildcard } from "../../core/net/address.ts";

/** What a connection tells its owner. */
export interface StreamHandlers {
  /** Received bytes: a view valid only during the call (copy what you keep). */
  data(chunk: Uint8Array): void;
  /** The stream ended: the peer closed it, it failed (`error`), or it was closed locally. Called once. */
  end(error?: unknown): void;
}

/** One end of a connected byte stream. */
export interface StreamConn {
  /** Our address. */
  readonly local: HostPort;
  /** The peer's address (IPv4-mapped IPv6 written as IPv4). */
  readonly remote: HostPort;
  /** True once closed (locally or by the peer). */
  readonly closed: boolean;
  /** Starts delivering to `handlers`; bytes that arrived before are delivered first. Call once. */
  start(handlers: StreamHandlers): void;
  /**
   * Queues bytes to send. Returns false, queuing nothing, when the connection
   * is closed or the bytes would make more than its write bound wait (a peer
   * that does not read): the owner should close it.
   */
  write(data: Uint8Array): boolean;
  /** Closes once what was written has been sent (bounded in time); `end` follows. Idempotent. */
  close(): void;
  /**
   * Answers a connection that is not taken (never started): sends `data`, a short reply, and closes as soon as it
   * is sent, without reading anything (bounded in time, {@linkcode CLOSE_LINGER_MS}); `closed` is called once the
   * socket is closed (its descriptor given back). A reply this short fits in a new connection's empty send buffer,
   * so the write completes at once: the descriptor is held for one write, not for a read loop to end.
   */
  refuse(data: Uint8Array, closed: () => void): void;
}

/** A listening socket. */
export interface StreamListener {
  /** The bound address (the actual port when 0 was asked). */
  readonly local: HostPort;
  /** Stops accepting; connections already accepted stay open. */
  close(): Promise<void>;
}

/** Opens and accepts byte-stream connections. */
export interface StreamNetwork {
  /**
   * Listens on `hostname:port` (0 = any free port) and hands each accepted
   * connection to `accept`. Throws when the address cannot be bound. When `accept` returns a promise, the next
   * connection is accepted once it settles (the others wait in the backlog meanwhile).
   */
  listen(hostname: string, port: number, accept: (conn: StreamConn) => void | Promise<void>): Promise<StreamListener>;
  /** Connects to `to`; rejects when refused or not connected within `timeoutMs`. */
  connect(to: HostPort, timeoutMs: number): Promise<StreamConn>;
}

/** Bytes a connection queues for a slow reader before `write` refuses. */
export const WRITE_BOUND = 64 * 1024;

/** How long a closing connection waits for its queued bytes to leave (ms). */
export const CLOSE_LINGER_MS = 2000;

const READ_BUFFER = 4096;

// ---------------------------------------------------------------------------
// TCP

/** A TCP connection behind {@linkcode StreamConn}. */
class TcpConn implements StreamConn {
  readonly local: HostPort;
  readonly remote: HostPort;
  readonly #conn: Deno.Conn;
  readonly #clock: Clock;
  #handlers: StreamHandlers | undefined;
  #closed = false;
  #ended = false;
  #closing = false;
  #queue: Uint8Array[] = [];
  #queued = 0;
  #writing = false;
  #linger: Timer | undefined;

  constructor(conn: Deno.Conn, clock: Clock) {
    this.#conn = conn;
    this.#clock = clock;
    const l = conn.localAddr as Deno.NetAddr, r = conn.remoteAddr as Deno.NetAddr;
    this.local = { hostname: canonicalHost(l.hostname), port: l.port };
    this.remote = { hostname: canonicalHost(r.hostname), port: r.port };
    try {
      (conn as Deno.TcpConn).setNoDelay(true);
    } catch { /* not a TCP socket option on this platform */ }
  }

  get closed(): boolean {
    return this.#closed || this.#closing;
  }

  start(handlers: StreamHandlers): void {
    if (this.#handlers) throw new Error("connection already started");
    this.#handlers = handlers;
    this.#readLoop();
  }

  async #readLoop(): Promise<void> {
    const buf = new Uint8Array(READ_BUFFER);
    let error: unknown;
    try {
      for (;;) {
        const n = await this.#conn.read(buf);
        if (n === null || this.#closed) break;
        this.#handlers!.data(buf.subarray(0, n));
      }
    } catch (e) {
      if (!this.#closed) error = e;
    }
    this.#finish(error);
  }

  write(data: Uint8Array): boolean {
    // (One message larger than the bound is taken when nothing waits: a STATS reply of many clients.)
    if (this.#closed || this.#closing || (this.#queued > 0 && this.#queued + data.length > WRITE_BOUND)) return false;
    this.#queue.push(data);
    this.#queued += data.length;
    if (!this.#writing) this.#writeLoop();
    return true;
  }

  async #writeLoop(): Promise<void> {
    this.#writing = true;
    try {
      while (this.#queue.length > 0 && !this.#closed) {
        const first = this.#queue[0];
        let chunk = first;
        while (chunk.length > 0) {
          const n = await this.#conn.write(chunk);
          chunk = chunk.subarray(n);
        }
        this.#queue.shift();
        this.#queued -= first.length;
      }
    } catch {
      // The peer went away: the read loop reports the end.
      this.#queue = [];
      this.#queued = 0;
    } finally {
      this.#writing = false;
      if (this.#closing) this.#closeNow();
    }
  }

  close(): void {
    if (this.#closed || this.#closing) return;
    this.#closing = true;
    if (!this.#writing) return this.#closeNow();
    this.#linger = this.#clock.after(CLOSE_LINGER_MS, () => this.#closeNow());
  }

  refuse(data: Uint8Array, closed: () => void): void {
    if (this.#handlers || this.#closed || this.#closing) throw new Error("refuse() on a connection already used");
    this.#closing = true;
    const finish = () => {
      if (this.#closed) return;
      this.#closed = this.#ended = true;
      this.#linger?.cancel();
      try {
        this.#conn.close();
      } catch { /* already closed */ }
      closed();
    };
    // Bounded: a peer that reads nothing cannot hold the descriptor past the linger (a reply this short never waits).
    this.#linger = this.#clock.after(CLOSE_LINGER_MS, finish);
    this.#conn.write(data).then(finish, finish);
  }

  #closeNow(): void {
    this.#linger?.cancel();
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#conn.close();
    } catch { /* already closed */ }
    if (!this.#handlers) this.#finish();
  }

  #finish(error?: unknown): void {
    if (this.#ended) return;
    this.#ended = true;
    if (!this.#closed) {
      this.#closed = true;
      try {
        this.#conn.close();
      } catch { /* already closed */ }
    }
    this.#linger?.cancel();
    this.#handlers?.end(error);
  }
}

/**
 * Real TCP connections (`Deno.listen`, `Deno.connect`); the `clock` bounds
 * connect attempts and the linger of closing connections.
 *
 * @example
 * ```ts
 * const net = new TcpStreamNetwork(new RealClock());
 * const l = await net.listen("127.0.0.1", 0, (conn) => conn.start({ data: (d) => conn.write(d), end: () => {} }));
 * const c = await net.connect(l.local, 2000);
 * ```
 */
export class TcpStreamNetwork implements StreamNetwork {
  readonly #clock: Clock;
  readonly #log: Logger;

  /**
   * Creates the network.
   * @param clock the clock of connect timeouts, close lingering and the waits after a failed accept
   * @param log where a listener's failed accepts are reported (default silent)
   */
  constructor(clock: Clock, log: Logger = silentLogger) {
    this.#clock = clock;
    this.#log = log;
  }

  /**
   * Listens with `Deno.listen`; throws an error naming the address when it cannot bind. A failed accept (the process
   * out of descriptors) is retried after a wait growing from 50 ms to 1 s, with a warning naming the limit.
   */
  listen(hostname: string, port: number, accept: (conn: StreamConn) => void | Promise<void>): Promise<StreamListener> {
    let l: Deno.TcpListener;
    try {
      l = Deno.listen({ hostname, port, transport: "tcp" });
    } catch (e) {
      const where = formatHostPort({ hostname, port });
      const why = e instanceof Deno.errors.AddrInUse
        ? "the port is already in use (choose another port)"
        : e instanceof Deno.errors.AddrNotAvailable
        ? `${hostname} is not an address of this host`
        : (e as Error).message;
      return Promise.reject(new Error(`cannot listen on TCP ${where}: ${why}`, { cause: e }));
    }
    const addr = l.addr as Deno.NetAddr;
    let closed = false;
    // A failed accept (out of descriptors: the connection stays in the backlog) is retried after a wait, not at once.
    const loop = acceptLoop(l, {
      clock: this.#clock,
      log: this.#log,
      where: `TCP ${formatHostPort(addr)}`,
      closed: () => closed,
      handle: (c) => accept(new TcpConn(c, this.#clock)),
    });
    return Promise.resolve({
      local: { hostname: addr.hostname, port: addr.port },
      close: async () => {
        if (!closed) {
          closed = true;
          try {
            l.close();
          } catch { /* already closed */ }
        }
        await loop;
      },
    });
  }

  /** Connects with `Deno.connect`, giving up after `timeoutMs`. */
  connect(to: HostPort, timeoutMs: number): Promise<StreamConn> {
    return new Promise((resolve, reject) => {
      let done = false;
      const timer = this.#clock.after(timeoutMs, () => {
        if (done) return;
        done = true;
        reject(new Error(`no TCP connection to ${formatHostPort(to)} within ${timeoutMs} ms`));
      });
      Deno.connect({ hostname: to.hostname, port: to.port, transport: "tcp" }).then((c) => {
        if (done) {
          c.close();
          return;
        }
        done = true;
        timer.cancel();
        resolve(new TcpConn(c, this.#clock));
      }, (e) => {
        if (done) return;
        done = true;
        timer.cancel();
        const why = e instanceof Deno.errors.ConnectionRefused ? "connection refused" : (e as Error).message;
        reject(new Error(`cannot connect to ${formatHostPort(to)}: ${why}`, { cause: e }));
      });
    });
  }
}

// ---------------------------------------------------------------------------
// In memory

/** Options of a {@linkcode MemoryStreamNetwork}. */
export interface MemoryStreamOptions {
  /** Clock that schedules deliveries. */
  clock: Clock;
  /** One-way delay in ms (default 1). */
  latencyMs?: number;
}

/** A connection of a {@linkcode MemoryStreamNetwork}. */
class MemoryConn implements StreamConn {
  peer!: MemoryConn;
  #handlers: StreamHandlers | undefined;
  #early: Uint8Array[] = [];
  #peerClosed = false;
  #closed = false;
  #ended = false;

  constructor(readonly local: HostPort, readonly remote: HostPort, readonly net: MemoryStreamNetwork) {}

  get closed(): boolean {
    return this.#closed;
  }

  start(handlers: StreamHandlers): void {
    if (this.#handlers) throw new Error("connection already started");
    this.#handlers = handlers;
    const early = this.#early;
    this.#early = [];
    for (const d of early) if (!this.#closed) handlers.data(d);
    if (this.#peerClosed) this.#finish();
  }

  write(data: Uint8Array): boolean {
    if (this.#closed || this.#peerClosed) return false;
    const copy = data.slice();
    this.net.clock.after(this.net.latencyMs, () => this.peer.receive(copy));
    return true;
  }

  receive(data: Uint8Array): void {
    if (this.#closed) return;
    if (this.#handlers) this.#handlers.data(data);
    else this.#early.push(data);
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.net.clock.after(this.net.latencyMs, () => this.peer.peerClose());
    this.net.clock.after(0, () => this.#finish());
  }

  refuse(data: Uint8Array, closed: () => void): void {
    if (this.#handlers || this.#closed) throw new Error("refuse() on a connection already used");
    this.write(data);
    this.#closed = true;
    this.net.clock.after(this.net.latencyMs, () => this.peer.peerClose());
    this.net.clock.after(0, closed);
  }

  peerClose(): void {
    if (this.#peerClosed) return;
    this.#peerClosed = true;
    if (this.#handlers) this.#finish();
  }

  #finish(): void {
    if (this.#ended || !this.#handlers) return;
    this.#ended = true;
    this.#closed = true;
    this.#handlers.end();
  }
}

/** A listener of a {@linkcode MemoryStreamNetwork}: its owner's accept and the connections waiting for it. */
interface MemoryListener {
  local: HostPort;
  accept: (conn: StreamConn) => void | Promise<void>;
  backlog: StreamConn[];
  waiting: boolean;
}

/** The view of a {@linkcode MemoryStreamNetwork} from one host: its connections come from that IP. */
class MemoryHost implements StreamNetwork {
  constructor(readonly net: MemoryStreamNetwork, readonly ip: string) {}

  listen(hostname: string, port: number, accept: (conn: StreamConn) => void | Promise<void>): Promise<StreamListener> {
    return this.net.listen(hostname, port, accept);
  }

  connect(to: HostPort, timeoutMs: number): Promise<StreamConn> {
    return this.net.connectFrom(this.ip, to, timeoutMs);
  }
}

/**
 * Byte streams in memory, delivered after a latency on a clock: with a
 * `VirtualClock`, a relay and its clients run deterministically. Connections
 * from a given IP come from {@linkcode MemoryStreamNetwork.host}.
 *
 * @example
 * ```ts
 * const clock = new VirtualClock();
 * const net = new MemoryStreamNetwork({ clock });
 * await net.listen("10.0.0.9", 9998, (conn) => conn.start({ data: (d) => conn.write(d), end: () => {} }));
 * const p = net.host("10.0.0.1").connect({ hostname: "10.0.0.9", port: 9998 }, 1000);
 * clock.advance(1);
 * const conn = await p; // conn.local.hostname === "10.0.0.1"
 * ```
 */
export class MemoryStreamNetwork implements StreamNetwork {
  /** The clock deliveries are scheduled on. */
  readonly clock: Clock;
  /** One-way delay in ms. */
  readonly latencyMs: number;
  /** Connections opened so far. */
  connections = 0;
  readonly #listeners = new Map<string, MemoryListener>();
  #nextPort = 40000;

  /**
   * Creates an empty network.
   * @param opts clock and latency
   */
  constructor(opts: MemoryStreamOptions) {
    this.clock = opts.clock;
    this.latencyMs = opts.latencyMs ?? 1;
  }

  /** The network as seen from host `ip` (its connections come from `ip`). */
  host(ip: string): StreamNetwork {
    return new MemoryHost(this, canonicalHost(ip));
  }

  /** Listens on `hostname:port`; throws when something listens there already. */
  listen(hostname: string, port: number, accept: (conn: StreamConn) => void | Promise<void>): Promise<StreamListener> {
    if (port === 0) port = this.#nextPort++;
    const key = `${canonicalHost(hostname)}|${port}`;
    if (this.#listeners.has(key)) {
      return Promise.reject(
        new Error(`cannot listen on TCP ${formatHostPort({ hostname, port })}: the port is already in use`),
      );
    }
    const local = { hostname, port };
    this.#listeners.set(key, { local, accept, backlog: [], waiting: false });
    return Promise.resolve({
      local,
      close: () => {
        this.#listeners.delete(key);
        return Promise.resolve();
      },
    });
  }

  /** Connects from 127.0.0.1. */
  connect(to: HostPort, timeoutMs: number): Promise<StreamConn> {
    return this.connectFrom("127.0.0.1", to, timeoutMs);
  }

  /** Hands the listener's waiting connections to its owner, one at a time while it says to wait (as TCP's do). */
  #pump(l: MemoryListener): void {
    while (!l.waiting && l.backlog.length > 0) {
      const pace = l.accept(l.backlog.shift()!);
      if (!pace) continue;
      l.waiting = true;
      void pace.finally(() => {
        l.waiting = false;
        this.#pump(l);
      });
    }
  }

  /** Connects from `ip` to `to`: refused (after a round trip) when nothing listens there. */
  connectFrom(ip: string, to: HostPort, _timeoutMs: number): Promise<StreamConn> {
    const { promise, resolve, reject } = Promise.withResolvers<StreamConn>();
    const host = canonicalHost(to.hostname);
    this.clock.after(this.latencyMs, () => {
      const l = this.#listeners.get(`${host}|${to.port}`) ??
        this.#listeners.get(`${host.includes(":") ? "::" : "0.0.0.0"}|${to.port}`);
      if (!l) {
        this.clock.after(this.latencyMs, () => {
          reject(new Error(`cannot connect to ${formatHostPort(to)}: connection refused`));
        });
        return;
      }
      this.connections++;
      const clientAddr = { hostname: ip, port: this.#nextPort++ };
      const serverAddr = { hostname: isWildcard(l.local.hostname) ? host : l.local.hostname, port: to.port };
      const client = new MemoryConn(clientAddr, serverAddr, this);
      const server = new MemoryConn(serverAddr, clientAddr, this);
      client.peer = server;
      server.peer = client;
      // Into the backlog: taken at once, unless the owner asked the last one taken to be waited for.
      l.backlog.push(server);
      this.#pump(l);
      this.clock.after(this.latencyMs, () => resolve(client));
    });
    return promise;
  }
}
