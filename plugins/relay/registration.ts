/**
 * A relay client's registration: the TCP side of `relay-client` (see
 * `protocol.ts` for the lines). It connects, registers with `HELLO`, sends
 * `HEARTBEAT` every `heartbeatMs` on the injected clock (or more often when
 * the relay's announced timeout needs it: {@linkcode heartbeatInterval}),
 * follows `TARGET UP/DOWN`, and leaves with `DISCONNECT`.
 *
 * The first registration makes `attempts` tries, `retryDelayMs` apart and
 * doubling (capped at `retryMaxMs`), and then fails; an `INVALID` reply fails at
 * once (retrying cannot fix it). Once registered, a lost relay (the connection
 * closed, `BYE`/`TIMEOUT` from the relay, a heartbeat unanswered within
 * `replyTimeoutMs`) is re-registered with the same backoff, without limit,
 * until {@linkcode RelayRegistration.close} or the signal: a restarted relay
 * gets its clients back by itself.
 *
 * @module
 */
import type { Clock, Timer } from "../../core/clock.ts";
import { type Logger, silentLogger } from "../../core/log.ts";
import { formatHostPort, type HostPort } from "../../core/net/address.ts";
import { excerpt } from "../../core/text.ts";
import { formatRequest, LineSplitter, parseReply, type RelayReply, type RelayRequest } from "./protocol.ts";
import type { StreamConn, StreamNetwork } from "./stream.ts";

/** Options of a {@linkcode RelayRegistration}. */
export interface RegistrationOptions {
  /** How to reach the relay (TCP, or memory in tests). */
  streams: StreamNetwork;
  /** The clock of retries, heartbeats and reply timeouts. */
  clock: Clock;
  /** Logger (lines tagged `RELAY`; default silent). */
  log?: Logger;
  /** The relay's TCP address (an IP literal). */
  relay: HostPort;
  /** Where the relay is to forward our datagrams (an IP literal and port). */
  target: HostPort;
  /**
   * The UDP port to register, asked on every new connection before its HELLO
   * (the first call may bind the socket, on the connection's local IP).
   */
  listenPort: (conn: { local: HostPort }) => number | Promise<number>;
  /** Tries of the first registration (default 3). */
  attempts?: number;
  /** First delay between tries, ms (default 1000); doubles each time. */
  retryDelayMs?: number;
  /** Longest delay between tries, ms (default 30000). */
  retryMaxMs?: number;
  /** Time allowed for connecting and for each reply, ms (default 5000). */
  replyTimeoutMs?: number;
  /**
   * Interval of heartbeats, ms (default 30000): the longest; a relay that
   * announces a shorter timeout gets them more often (see
   * {@linkcode heartbeatInterval}).
   */
  heartbeatMs?: number;
  /** Stops everything when aborted. */
  signal?: AbortSignal;
}

/** What a successful registration told us. */
export interface Registered {
  /** The relay's UDP port: send datagrams there. */
  udpPort: number;
  /** The relay's heartbeat timeout, s. */
  heartbeatTimeout: number;
  /** Our IP as the relay saw it (the source our datagrams must have). */
  observedIp: string;
  /** The local end of the connection. */
  local: HostPort;
  /** The UDP port registered. */
  listenPort: number;
  /** Our interval of heartbeats for this registration, ms ({@linkcode heartbeatInterval}). */
  heartbeatMs: number;
}

/** The shortest interval of heartbeats a relay's announced timeout can impose, ms (a tiny timeout is not a flood). */
export const MIN_HEARTBEAT_MS = 250;

/**
 * The interval of heartbeats for a relay that expires registrations after
 * `timeoutS` seconds: the configured `configuredMs`, or a third of the timeout
 * when that is shorter (so two heartbeats may be late or lost before the
 * relay gives up on us), but not below {@linkcode MIN_HEARTBEAT_MS} (unless
 * `configuredMs` itself is).
 *
 * @example
 * ```ts
 * heartbeatInterval(30000, 120); // 30000: a third of 120 s is 40 s
 * heartbeatInterval(30000, 4); // 1333
 * heartbeatInterval(30000, 0.1); // 250
 * ```
 */
export function heartbeatInterval(configuredMs: number, timeoutS: number): number {
  return Math.min(configuredMs, Math.max(MIN_HEARTBEAT_MS, Math.floor(timeoutS * 1000 / 3)));
}

/** Why a registration failed. */
export class RegistrationError extends Error {
  /** True when retrying cannot help (the relay answered INVALID). */
  readonly fatal: boolean;
  /**
   * Creates the error.
   * @param message what happened
   * @param fatal whether retrying cannot help
   */
  constructor(message: string, fatal = false) {
    super(message);
    this.name = "RegistrationError";
    this.fatal = fatal;
  }
}

/** What a {@linkcode RelayRegistration} reports. */
export interface RegistrationEvents {
  /** Registered (first time, or again after the relay was lost). */
  registered?(r: Registered, again: boolean): void;
  /** The relay was lost; re-registering. */
  lost?(why: string): void;
  /** The relay says whether our target is registered. */
  target?(up: boolean): void;
}

const encoder = new TextEncoder();

/**
 * One client's registration at a relay.
 *
 * @example
 * ```ts
 * const reg = new RelayRegistration({ streams: new TcpStreamNetwork(clock), clock, relay, target,
 *   listenPort: () => sock.port });
 * const r = await reg.register(); // r.udpPort: where to send
 * // ...
 * await reg.disconnect();
 * ```
 */
export class RelayRegistration {
  readonly #o: Required<Omit<RegistrationOptions, "signal" | "log">> & { signal?: AbortSignal };
  readonly #clock: Clock;
  readonly #log: Logger;
  readonly #events = new Set<RegistrationEvents>();
  #conn: StreamConn | undefined;
  #waiters: { resolve: (r: RelayReply) => void; reject: (e: Error) => void }[] = [];
  #heartbeat: Timer | undefined;
  #registered: Registered | undefined;
  #closed = false;
  #reconnecting = false;
  #lastBye = "";
  /** The shortened heartbeat interval last logged (logged once, not at each re-registration). */
  #loggedHeartbeatMs: number | undefined;
  readonly #stop = new AbortController();
  /** True while the relay says our target is registered. */
  targetUp = false;
  /** Successful registrations so far (1 + re-registrations). */
  registrations = 0;
  /** Connection attempts so far. */
  attemptsMade = 0;
  /** Heartbeats answered. */
  heartbeats = 0;

  /**
   * Creates the registration (nothing is sent before {@linkcode register}).
   * @param opts options
   */
  constructor(opts: RegistrationOptions) {
    this.#o = {
      attempts: 3,
      retryDelayMs: 1000,
      retryMaxMs: 30000,
      replyTimeoutMs: 5000,
      heartbeatMs: 30000,
      ...opts,
    };
    this.#clock = opts.clock;
    this.#log = (opts.log ?? silentLogger).child("RELAY");
    opts.signal?.addEventListener("abort", () => this.close(), { once: true });
  }

  /** Subscribes to events; returns the function that unsubscribes. */
  on(events: RegistrationEvents): () => void {
    this.#events.add(events);
    return () => this.#events.delete(events);
  }

  /** The current registration, while registered. */
  get current(): Registered | undefined {
    return this.#registered;
  }

  /**
   * Registers, trying `attempts` times with backoff. Resolves with what the
   * relay said; rejects with a {@linkcode RegistrationError} naming the last
   * failure.
   */
  async register(): Promise<Registered> {
    let delay = this.#o.retryDelayMs;
    const relay = formatHostPort(this.#o.relay);
    for (let attempt = 1;; attempt++) {
      try {
        const r = await this.#attempt();
        this.#announce(r, false);
        return r;
      } catch (e) {
        const err = e instanceof RegistrationError ? e : new RegistrationError(errText(e));
        if (this.#closed) throw new RegistrationError("stopped");
        if (err.fatal) throw new RegistrationError(`relay ${relay} refused the registration: ${err.message}`, true);
        if (attempt >= this.#o.attempts) {
          throw new RegistrationError(`cannot register at relay ${relay} after ${attempt} attempts: ${err.message}`);
        }
        this.#log.warn(
          `registration attempt ${attempt}/${this.#o.attempts} failed: ${err.message}; retrying in ${delay / 1000} s`,
        );
        try {
          await this.#sleep(delay);
        } catch {
          throw new RegistrationError("stopped");
        }
        delay = Math.min(delay * 2, this.#o.retryMaxMs);
      }
    }
  }

  /** Leaves: DISCONNECT, waits for BYE (bounded), closes. Stops re-registering. */
  async disconnect(): Promise<void> {
    const conn = this.#conn;
    const wasRegistered = this.#registered !== undefined;
    this.#closed = true;
    this.#stop.abort();
    this.#stopHeartbeat();
    if (conn && !conn.closed && wasRegistered) {
      try {
        const r = await this.#request({ type: "DISCONNECT" });
        if (r.type === "BYE") this.#log.info("disconnected from the relay");
      } catch (e) {
        this.#log.warn(`DISCONNECT not answered: ${errText(e)}`);
      }
    }
    this.close();
  }

  /** Stops at once: no DISCONNECT (the relay expires the registration). Idempotent. */
  close(): void {
    this.#closed = true;
    this.#stop.abort();
    this.#stopHeartbeat();
    this.#registered = undefined;
    const conn = this.#conn;
    this.#conn = undefined;
    conn?.close();
    this.#failWaiters(new RegistrationError("stopped"));
  }

  #announce(r: Registered, again: boolean): void {
    this.#registered = r;
    this.registrations++;
    this.#log.info(
      `registered at ${formatHostPort(this.#o.relay)}${again ? " again" : ""}: udp ${r.observedIp}:${r.listenPort} → ` +
        `relay port ${r.udpPort} → ${formatHostPort(this.#o.target)}`,
    );
    if (r.observedIp !== r.local.hostname) {
      this.#log.warn(
        `the relay sees us as ${r.observedIp}, not ${r.local.hostname} (a NAT?): ` +
          "its forwarding works only if our datagrams leave from that address and port",
      );
    }
    if (r.heartbeatMs < this.#o.heartbeatMs && r.heartbeatMs !== this.#loggedHeartbeatMs) {
      this.#loggedHeartbeatMs = r.heartbeatMs;
      this.#log.info(
        `the relay expires registrations after ${r.heartbeatTimeout} s: heartbeating every ${r.heartbeatMs / 1000} s ` +
          `instead of ${this.#o.heartbeatMs / 1000} s`,
      );
      if (r.heartbeatMs >= r.heartbeatTimeout * 1000) {
        this.#log.warn(
          `the relay's heartbeat timeout (${r.heartbeatTimeout} s) is shorter than our shortest heartbeat interval: ` +
            "it will expire us",
        );
      }
    }
    this.#startHeartbeat(r.heartbeatMs);
    for (const e of [...this.#events]) e.registered?.(r, again);
  }

  /** One try: connect, HELLO, the reply. The connection is closed unless it ends registered. */
  async #attempt(): Promise<Registered> {
    this.attemptsMade++;
    const conn = await this.#o.streams.connect(this.#o.relay, this.#o.replyTimeoutMs);
    let registered = false;
    try {
      const r = await this.#hello(conn);
      registered = true;
      return r;
    } finally {
      if (!registered) conn.close();
    }
  }

  /** HELLO on a new connection; throws on any other outcome than OK (the caller closes the connection). */
  async #hello(conn: StreamConn): Promise<Registered> {
    if (this.#closed) throw new RegistrationError("stopped");
    this.#conn = conn;
    this.#lastBye = "";
    const splitter = new LineSplitter(65536);
    conn.start({
      data: (chunk) =>
        splitter.push(chunk, (line) => this.#onLine(conn, line), () => {
          this.#log.warn("the relay sent a line over 64 KB: closing the connection");
          conn.close();
        }),
      end: () => this.#onEnd(conn),
    });
    let listenPort: number;
    try {
      listenPort = await this.#o.listenPort(conn);
    } catch (e) {
      throw new RegistrationError(`cannot open the local UDP socket: ${errText(e)}`, true);
    }
    const { hostname: targetIp, port: targetPort } = this.#o.target;
    const reply = await this.#request({ type: "HELLO", listenPort, targetIp, targetPort });
    switch (reply.type) {
      case "OK":
        if (reply.udpPort === undefined) break;
        return {
          udpPort: reply.udpPort,
          heartbeatTimeout: reply.heartbeatTimeout!,
          observedIp: reply.observedIp!,
          local: conn.local,
          listenPort,
          heartbeatMs: heartbeatInterval(this.#o.heartbeatMs, reply.heartbeatTimeout!),
        };
      case "FULL":
        throw new RegistrationError("the relay is full (FULL)");
      case "INVALID":
        throw new RegistrationError(`INVALID ${cut(reply.reason)}`, true);
      case "BUSY":
        throw new RegistrationError(`BUSY ${cut(reply.reason)}`);
    }
    throw new RegistrationError(`unexpected reply to HELLO: ${reply.type}`);
  }

  /** Sends a request; resolves with the next reply that is not a notification. */
  #request(req: RelayRequest): Promise<RelayReply> {
    const conn = this.#conn;
    if (!conn || conn.closed) return Promise.reject(new RegistrationError("not connected"));
    return new Promise((resolve, reject) => {
      const timer = this.#clock.after(this.#o.replyTimeoutMs, () => {
        const i = this.#waiters.indexOf(w);
        if (i >= 0) this.#waiters.splice(i, 1);
        reject(new RegistrationError(`no reply to ${req.type} within ${this.#o.replyTimeoutMs / 1000} s`));
        conn.close(); // replies would be out of step from now on
      });
      const w = {
        resolve: (r: RelayReply) => {
          timer.cancel();
          resolve(r);
        },
        reject: (e: Error) => {
          timer.cancel();
          reject(e);
        },
      };
      this.#waiters.push(w);
      if (!conn.write(encoder.encode(formatRequest(req) + "\n"))) {
        w.reject(new RegistrationError("connection closed"));
      }
    });
  }

  #onLine(conn: StreamConn, line: string): void {
    if (conn !== this.#conn) return;
    const r = parseReply(line);
    if (!r) {
      this.#log.warn(`unexpected line from the relay: ${JSON.stringify(line.slice(0, 80))}`);
      return;
    }
    if (r.type === "TARGET") {
      if (r.up !== this.targetUp) this.#log.info(`target ${formatHostPort(this.#o.target)} is ${r.up ? "up" : "down"}`);
      this.targetUp = r.up;
      for (const e of [...this.#events]) e.target?.(r.up);
      return;
    }
    // BYE, TIMEOUT and BUSY announce that the relay closes the connection (as a reply, or unsolicited).
    if (r.type === "BYE" || r.type === "TIMEOUT" || r.type === "BUSY") {
      this.#lastBye = r.type === "TIMEOUT" ? r.type : `${r.type} ${cut(r.reason)}`.trim();
    }
    const w = this.#waiters.shift();
    if (w) w.resolve(r);
    else this.#log.debug(`relay: ${cut(line)}`);
  }

  #onEnd(conn: StreamConn): void {
    if (conn !== this.#conn) return;
    this.#conn = undefined;
    this.#failWaiters(new RegistrationError(this.#lastBye ? `the relay said ${this.#lastBye}` : "connection closed"));
    const was = this.#registered;
    this.#registered = undefined;
    this.#stopHeartbeat();
    if (!was || this.#closed) return;
    const why = this.#lastBye ? `the relay said ${this.#lastBye}` : "connection closed";
    this.#log.warn(`lost the relay (${why}): registering again`);
    this.targetUp = false;
    for (const e of [...this.#events]) e.lost?.(why);
    this.#reconnect();
  }

  async #reconnect(): Promise<void> {
    if (this.#reconnecting) return;
    this.#reconnecting = true;
    let delay = this.#o.retryDelayMs;
    try {
      while (!this.#closed) {
        try {
          await this.#sleep(delay);
        } catch {
          return;
        }
        if (this.#closed) return;
        try {
          const r = await this.#attempt();
          this.#announce(r, true);
          return;
        } catch (e) {
          if (this.#closed) return;
          this.#log.info(
            `re-registration failed: ${errText(e)}; retrying in ${Math.min(delay * 2, this.#o.retryMaxMs) / 1000} s`,
          );
          delay = Math.min(delay * 2, this.#o.retryMaxMs);
        }
      }
    } finally {
      this.#reconnecting = false;
    }
  }

  #startHeartbeat(intervalMs: number): void {
    this.#stopHeartbeat();
    let due = this.#clock.now() + intervalMs;
    const beat = async () => {
      this.#heartbeat = undefined;
      const conn = this.#conn;
      if (this.#closed || !conn || !this.#registered) return;
      due += intervalMs;
      this.#heartbeat = this.#clock.at(due, beat);
      try {
        const r = await this.#request({ type: "HEARTBEAT" });
        if (r.type === "OK") this.heartbeats++;
        else {
          this.#log.warn(`HEARTBEAT answered ${r.type}: registering again`);
          conn.close();
        }
      } catch { /* the connection's end triggers re-registration */ }
    };
    this.#heartbeat = this.#clock.at(due, beat);
  }

  #stopHeartbeat(): void {
    this.#heartbeat?.cancel();
    this.#heartbeat = undefined;
  }

  #failWaiters(e: Error): void {
    const w = this.#waiters;
    this.#waiters = [];
    for (const x of w) x.reject(e);
  }

  #sleep(ms: number): Promise<void> {
    return this.#clock.sleep(ms, this.#stop.signal);
  }
}

/** A reason the relay gave, as quoted in our errors and log lines (a line may be 64 KB long). */
function cut(reason: string): string {
  return excerpt(reason, 200);
}

function errText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
