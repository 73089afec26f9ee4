/**
 * The media relay: a registration table fed by the line protocol of
 * `protocol.ts` over byte-stream connections (`stream.ts`: TCP, or memory in
 * tests), and a UDP forwarder on one {@linkcode DatagramSocket}.
 *
 * **Who may send.** A client registers with `HELLO <listen_port> <target_ip>
 * <target_port>` over TCP. Its UDP source address is the IP of its TCP
 * connection and `<listen_port>`: the client sends its audio from the socket
 * it receives on (symmetric UDP), and the relay learns the address from the
 * HELLO, never from a datagram. Datagrams from any other address (another
 * port, a spoofed or expired source) are dropped and counted; a client behind
 * a NAT that rewrites its UDP source port cannot use the relay. UDP traffic
 * never refreshes a registration (a source address can be forged; only the TCP
 * heartbeat proves the client is there).
 *
 * **Where it goes.** Each datagram from a registered source goes to that
 * client's target, unchanged, at most once (no amplification: one datagram
 * in, at most one out; nothing is ever sent back to a source). With `targets:
 * "clients"` (the default) a datagram is forwarded only while the target is
 * itself a registered client (so the relay cannot be aimed at a third party),
 * and each client is told `TARGET UP` / `TARGET DOWN`; with `"any"` every
 * target is served.
 *
 * **Time.** One timer on the injected clock, every `check_interval`: a
 * registration with no HELLO/HEARTBEAT for `heartbeat_timeout` is removed at
 * the first check at or after that (so within `check_interval` of it), its
 * connection told `TIMEOUT`; a connection without a registration that sent no
 * line for `idle_timeout` is told `TIMEOUT` and closed the same way.
 *
 * **Bounds.** Registrations ≤ `max_clients` (beyond: `FULL`, nothing stored);
 * connections ≤ `max_connections` and ≤ `max_connections_per_ip` (beyond:
 * `BUSY`, closed at once); a line ≤ `max_line` bytes (longer: `INVALID`, the
 * line skipped, the connection usable); ≤ `max_lines_per_second` lines per
 * connection (more: dropped, one `INVALID` per second); replies queued for a
 * peer that does not read ≤ 64 KB (beyond: closed); datagrams ≤ `max_packet`
 * bytes; sends waiting on the UDP socket ≤ `max_send_backlog` (beyond: dropped
 * and counted). Once fewer than 64 file descriptors would be left under the
 * process's limit (`ulimit -n`), new connections get `BUSY` and are closed at
 * once (a warning names the limit, then one line per 10 s while it lasts), so
 * that the connections open keep working; a failed accept (out of descriptors
 * all the same) is retried after a wait, never at once. In a flood every
 * connection gets its `BUSY`: each reply holds a descriptor until it is sent,
 * so with 32 on their way the next connection is accepted once one has gone
 * (it waits in the kernel's backlog meanwhile) instead of closed unanswered.
 *
 * @module
 */
import type { Clock, Timer } from "../../core/clock.ts";
import { type Logger, silentLogger } from "../../core/log.ts";
import { canonicalHost, formatHostPort, type HostPort, isLoopbackAddress, isWildcard } from "../../core/net/address.ts";
import { RefusalLog } from "../../core/net/accept.ts";
import type { DatagramSocket, Network, SendListener } from "../../core/net/datagram.ts";
import { FileReserve, type OpenFiles } from "../../core/open_files.ts";
import { formatReply, LineSplitter, parseRequest, type RelayReply, type RelayRequest } from "./protocol.ts";
import type { StreamConn, StreamListener, StreamNetwork } from "./stream.ts";

/** Options of a {@linkcode RelayServer} (times in seconds, like the control plugin's options). */
export interface RelayServerOptions {
  /** The clock every timer runs on. */
  clock: Clock;
  /** Logger (lines tagged `RELAY`; default silent). */
  log?: Logger;
  /** Where the UDP socket is bound. */
  net: Network;
  /** Where the TCP listener is opened. */
  streams: StreamNetwork;
  /** Address for TCP and UDP. */
  bind: string;
  /** TCP port (0 = any free). */
  port: number;
  /** UDP port (0 = any free). */
  udpPort: number;
  /** Registrations at most. */
  maxClients: number;
  /** Seconds without HELLO/HEARTBEAT before a registration expires. */
  heartbeatTimeout: number;
  /** Seconds a connection without registration may send nothing. */
  idleTimeout: number;
  /** Seconds between expiry checks. */
  checkInterval: number;
  /** Largest datagram forwarded, bytes. */
  maxPacket: number;
  /** Longest line, bytes. */
  maxLine: number;
  /** Lines per second per connection. */
  maxLinesPerSecond: number;
  /** TCP connections at most. */
  maxConnections: number;
  /** TCP connections from one IP at most. */
  maxConnectionsPerIp: number;
  /** `clients`: forward only to registered clients; `any`: to any target. */
  targets: "clients" | "any";
  /** Who may ask `STATS`: loopback peers, anyone, or nobody. */
  stats: "loopback" | "any" | "off";
  /** Datagrams waiting on the UDP socket at most (default 4096). */
  maxSendBacklog?: number;
  /**
   * File descriptors kept free (default 64): once fewer would be left under the process's limit (`ulimit -n`), new
   * connections get `BUSY` saying so and are closed, so that the connections open, the UDP socket and the runtime
   * keep some (a process with none left cannot recover).
   */
  minFreeFiles?: number;
  /** Counts the process's open files and their limit (default: from `/proc/self`; for tests). */
  openFiles?: () => OpenFiles | undefined;
}

/** Per-client figures in {@linkcode RelayStats}. */
export interface RelayClientStats {
  /** The client's UDP source, `ip:listen_port`. */
  source: string;
  /** Where its datagrams go. */
  target: string;
  /** True while the target is a registered client. */
  target_up: boolean;
  /** True while its TCP connection is open. */
  connected: boolean;
  /** Seconds since it registered. */
  age_s: number;
  /** Seconds since its last HELLO/HEARTBEAT. */
  silent_s: number;
  /** Datagrams received from it. */
  packets_in: number;
  /** Bytes of those. */
  bytes_in: number;
  /** Datagrams forwarded to its target. */
  packets_out: number;
  /** Bytes of those. */
  bytes_out: number;
  /** Its datagrams not forwarded (oversize, target down, send backlog, send error). */
  drops: number;
}

/** What {@linkcode RelayServer.stats} returns (also the `STATS` reply). */
export interface RelayStats {
  /** TCP address. */
  tcp: string;
  /** UDP address. */
  udp: string;
  /** Registered clients. */
  clients: number;
  /** The limit. */
  max_clients: number;
  /** Open TCP connections. */
  connections: number;
  /** Successful HELLOs that created a registration. */
  registrations: number;
  /** Registrations that expired. */
  expired: number;
  /** Registrations removed by DISCONNECT. */
  disconnects: number;
  /** HELLOs answered FULL. */
  full: number;
  /** Lines answered INVALID (too long, malformed, out of place). */
  invalid: number;
  /** Connections closed with TIMEOUT for idleness. */
  idle_timeouts: number;
  /** Connections refused with BUSY. */
  busy: number;
  /** Lines dropped by the per-connection rate limit. */
  rate_limited: number;
  /** Datagrams from registered sources. */
  packets_in: number;
  /** Bytes of those. */
  bytes_in: number;
  /** Datagrams forwarded. */
  packets_out: number;
  /** Bytes of those. */
  bytes_out: number;
  /** Datagrams not forwarded, by reason. */
  dropped: {
    /** From an address nobody registered (or an expired one). */
    unregistered: number;
    /** Larger than `max_packet`. */
    oversize: number;
    /** The target is not a registered client (`targets: "clients"`). */
    target_down: number;
    /** The UDP socket had `max_send_backlog` sends waiting. */
    backlog: number;
    /** The send failed. */
    send_errors: number;
  };
  /** Each registration. */
  per_client: RelayClientStats[];
}

/**
 * How long a registration removed by DISCONNECT still forwards its source's datagrams (ms). A client sends its last
 * datagram (the end-of-transmission marker) and then DISCONNECT on its TCP connection; the two reach the relay
 * together, on two sockets, and which one the relay reads first is not the order they were sent in. Without this
 * grace, a last datagram read after the DISCONNECT was dropped as unregistered, and the peer never heard the end.
 */
export const DISCONNECT_LINGER_MS = 2000;

/**
 * Refused connections whose `BUSY` is still being sent, at most: each holds a descriptor until its reply is sent, and
 * a flood must not use up those kept free, so at this many the next connection is accepted only once one has gone
 * (it waits in the kernel's backlog meanwhile) rather than closed unanswered.
 */
const MAX_REFUSED_OPEN = 32;

/** A registration removed by DISCONNECT, still forwarding until `until` (see {@linkcode DISCONNECT_LINGER_MS}). */
interface Leaving {
  client: Client;
  until: number;
}

/** Forwarding totals, shared by the server and its clients' send listeners. */
class Totals {
  packetsOut = 0;
  bytesOut = 0;
  sendErrors = 0;
  lastSendError = "";
}

/** One registration. */
class Client {
  conn: Conn | undefined;
  lastSeen: number;
  targetUp: boolean | undefined;
  packetsIn = 0;
  bytesIn = 0;
  packetsOut = 0;
  bytesOut = 0;
  drops = 0;
  /** Told how each forward went: one object per client, so the hot path allocates nothing. */
  readonly listener: SendListener;

  constructor(readonly source: HostPort, public target: HostPort, readonly registeredAt: number, totals: Totals) {
    this.lastSeen = registeredAt;
    this.listener = {
      sent: () => {},
      failed: (e) => {
        this.drops++;
        totals.sendErrors++;
        totals.lastSendError = errText(e);
      },
    };
  }
}

/** One TCP connection. */
class Conn {
  client: Client | undefined;
  lastLine: number;
  windowStart = -Infinity;
  windowLines = 0;
  rateNoticed = false;
  invalidLogged = false;
  fullLogged = false;
  closing = false;
  readonly splitter: LineSplitter;

  constructor(readonly stream: StreamConn, readonly ip: string, maxLine: number, now: number) {
    this.splitter = new LineSplitter(maxLine);
    this.lastLine = now;
  }
}

const encoder = new TextEncoder();

/**
 * The relay: registration protocol, expiry, and UDP forwarding.
 *
 * @example
 * ```ts
 * const clock = new VirtualClock();
 * const relay = new RelayServer({ clock, net: new MemoryNetwork({ clock }), streams: new MemoryStreamNetwork({ clock }),
 *   bind: "10.0.0.9", port: 9998, udpPort: 9999, maxClients: 10, heartbeatTimeout: 120, idleTimeout: 30,
 *   checkInterval: 10, maxPacket: 2200, maxLine: 256, maxLinesPerSecond: 10, maxConnections: 64,
 *   maxConnectionsPerIp: 8, targets: "clients", stats: "loopback" });
 * await relay.start();
 * ```
 */
export class RelayServer {
  readonly #o: Required<Omit<RelayServerOptions, "openFiles">>;
  readonly #clock: Clock;
  readonly #log: Logger;
  /** Registrations by source IP, then listen port (lookups allocate nothing). */
  readonly #bySource = new Map<string, Map<number, Client>>();
  #clientCount = 0;
  /** Registrations removed by DISCONNECT in the last {@linkcode DISCONNECT_LINGER_MS}, by source IP and port. */
  readonly #leaving = new Map<string, Map<number, Leaving>>();
  #leavingCount = 0;
  readonly #conns = new Set<Conn>();
  readonly #perIp = new Map<string, number>();
  #sock: DatagramSocket | undefined;
  #listener: StreamListener | undefined;
  #timer: Timer | undefined;
  #nextCheck = 0;
  #closed = false;
  #udpLocal: HostPort = { hostname: "", port: 0 };

  // Counters.
  #registrations = 0;
  #expired = 0;
  #disconnects = 0;
  #full = 0;
  #invalid = 0;
  #idleTimeouts = 0;
  #busy = 0;
  #rateLimited = 0;
  #packetsIn = 0;
  #bytesIn = 0;
  #dropUnregistered = 0;
  #dropOversize = 0;
  #dropTargetDown = 0;
  #dropBacklog = 0;
  readonly #totals = new Totals();
  /** Counters as of the last check, for the suppressed-events summary. */
  #reported = { full: 0, invalid: 0, busy: 0, unregistered: 0, rate: 0, oversize: 0, sendErrors: 0 };
  #lastUnregistered: HostPort | undefined;
  /** Descriptors left under the process's limit. */
  readonly #files: FileReserve;
  /** Connections refused (BUSY) whose socket is not closed yet: they hold a descriptor too. */
  #refusedOpen = 0;
  /** Settles once fewer than {@linkcode MAX_REFUSED_OPEN} BUSY replies are on their way (the accept loop waits). */
  #paced?: PromiseWithResolvers<void>;
  /** Connections refused for want of descriptors, reported a few lines at a time. */
  readonly #refusals: RefusalLog;

  /**
   * Creates the relay (nothing is bound until {@linkcode start}).
   * @param opts options
   */
  constructor(opts: RelayServerOptions) {
    const { openFiles, ...rest } = opts;
    this.#o = { log: silentLogger, maxSendBacklog: 4096, minFreeFiles: 64, ...rest };
    this.#clock = opts.clock;
    this.#log = (opts.log ?? silentLogger).child("RELAY");
    this.#files = new FileReserve(opts.clock, {
      reserve: this.#o.minFreeFiles,
      keptFor: "the connections open",
      units: () => this.#conns.size + this.#refusedOpen,
      ...(openFiles ? { openFiles } : {}),
    });
    this.#refusals = new RefusalLog(opts.clock, this.#log, `new connections on TCP ${opts.bind}:${opts.port}`);
  }

  /** The TCP address (after start). */
  get tcpAddress(): HostPort {
    return this.#listener?.local ?? { hostname: this.#o.bind, port: this.#o.port };
  }

  /** The UDP address (after start). */
  get udpAddress(): HostPort {
    return this.#udpLocal;
  }

  /** Registered clients. */
  get clientCount(): number {
    return this.#clientCount;
  }

  /** Open connections. */
  get connectionCount(): number {
    return this.#conns.size;
  }

  /** Binds UDP, listens on TCP, arms the check timer. Throws (releasing what it bound) when a port is taken. */
  async start(): Promise<void> {
    const o = this.#o;
    const sock = o.net.bind(o.bind, o.udpPort);
    this.#sock = sock;
    this.#udpLocal = { hostname: sock.hostname, port: sock.port };
    sock.listen(this.#onDatagram, {
      maxSize: o.maxPacket,
      onOversize: this.#onOversize,
      onError: () => {/* an ICMP error for something forwarded: the target is gone; counted per send */},
      onFatal: (e) => this.#log.error(`UDP receive on ${formatHostPort(this.#udpLocal)} failed: ${errText(e)}`),
    });
    try {
      this.#listener = await o.streams.listen(o.bind, o.port, (c) => this.accept(c));
    } catch (e) {
      await sock.close();
      throw e;
    }
    this.#nextCheck = this.#clock.now() + o.checkInterval * 1000;
    this.#timer = this.#clock.at(this.#nextCheck, this.#check);
    this.#log.info(
      `listening on tcp ${formatHostPort(this.tcpAddress)}, forwarding udp ${formatHostPort(this.#udpLocal)}`,
      { max_clients: o.maxClients, targets: o.targets },
    );
  }

  /** Stops: tells every connection `BYE shutting down`, closes them, the listener and the UDP socket. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#timer?.cancel();
    for (const c of this.#conns) {
      this.#send(c, { type: "BYE", reason: "shutting down" });
      this.#drop(c);
    }
    this.#resume(); // an accept loop waiting for BUSY replies to go: it ends now
    await this.#listener?.close();
    await this.#sock?.close();
    this.#log.info(
      `stopped: ${this.#registrations} registrations, ${this.#totals.packetsOut} datagrams forwarded, ` +
        `${this.#dropUnregistered} from unregistered sources dropped`,
    );
  }

  // ---- TCP -------------------------------------------------------------------------------

  /** Takes a new connection (the listener calls this; tests may too). */
  accept(stream: StreamConn): void | Promise<void> {
    const o = this.#o;
    const ip = canonicalHost(stream.remote.hostname);
    const fromIp = this.#perIp.get(ip) ?? 0;
    const short = this.#closed ? undefined : this.#files.short();
    if (
      this.#closed || short !== undefined || this.#conns.size >= o.maxConnections || fromIp >= o.maxConnectionsPerIp
    ) {
      this.#busy++;
      const reason = this.#closed
        ? "shutting down"
        : short !== undefined
        ? "the relay is out of file descriptors, try again later"
        : this.#conns.size >= o.maxConnections
        ? `too many connections (${o.maxConnections})`
        : `too many connections from ${ip} (${o.maxConnectionsPerIp})`;
      if (short !== undefined) this.#refusals.refused(short);
      this.#refusedOpen++;
      stream.refuse(encoder.encode(formatReply({ type: "BUSY", reason }) + "\n"), () => {
        this.#refusedOpen--;
        if (this.#refusedOpen < MAX_REFUSED_OPEN) this.#resume();
      });
      // A flood: the BUSY replies on their way hold a descriptor each until sent (one write: a reply this short fits
      // in a new connection's empty send buffer). At MAX_REFUSED_OPEN of them, the next connection is accepted once
      // one has gone, so that every connection gets its BUSY and the replies never eat into the descriptors kept
      // free; meanwhile new connections wait in the kernel's backlog.
      if (this.#refusedOpen >= MAX_REFUSED_OPEN) return this.#pace();
      return;
    }
    this.#refusals.admitted();
    const c = new Conn(stream, ip, o.maxLine, this.#clock.now());
    this.#conns.add(c);
    this.#perIp.set(ip, fromIp + 1);
    this.#log.debug(`connection from ${formatHostPort(stream.remote)}`);
    stream.start({
      data: (chunk) => c.splitter.push(chunk, (line) => this.#onLine(c, line), () => this.#tooLong(c), () => c.closing),
      end: () => this.#ended(c),
    });
  }

  /** The wait of the accept loop until fewer than {@linkcode MAX_REFUSED_OPEN} BUSY replies are on their way. */
  #pace(): Promise<void> {
    return (this.#paced ??= Promise.withResolvers<void>()).promise;
  }

  /** Lets the accept loop go on. */
  #resume(): void {
    const p = this.#paced;
    this.#paced = undefined;
    p?.resolve();
  }

  #ended(c: Conn): void {
    if (!this.#conns.delete(c)) return;
    const n = (this.#perIp.get(c.ip) ?? 1) - 1;
    if (n > 0) this.#perIp.set(c.ip, n);
    else this.#perIp.delete(c.ip);
    const client = c.client;
    if (client && client.conn === c) {
      // The registration stays until its heartbeat timeout: a client may come back on a new connection.
      client.conn = undefined;
      this.#log.debug(`connection of ${formatHostPort(client.source)} closed; registration kept until it expires`);
    }
    c.client = undefined;
  }

  #send(c: Conn, reply: RelayReply): void {
    if (c.closing) return;
    if (!c.stream.write(encoder.encode(formatReply(reply) + "\n"))) {
      this.#log.debug(`connection from ${c.ip} does not read its replies: closing it`);
      this.#drop(c);
    }
  }

  /** Closes a connection (after what was written to it). */
  #drop(c: Conn): void {
    if (c.closing) return;
    c.closing = true;
    c.stream.close();
  }

  #tooLong(c: Conn): void {
    if (this.#rateLimit(c)) return;
    this.#invalid_(c, `line longer than ${this.#o.maxLine} bytes`);
  }

  /** True when the line must be dropped by the per-connection rate limit. */
  #rateLimit(c: Conn): boolean {
    const now = this.#clock.now();
    if (now - c.windowStart >= 1000) {
      c.windowStart = now;
      c.windowLines = 0;
      c.rateNoticed = false;
    }
    if (++c.windowLines <= this.#o.maxLinesPerSecond) return false;
    this.#rateLimited++;
    if (!c.rateNoticed) {
      c.rateNoticed = true;
      this.#send(c, {
        type: "INVALID",
        reason: `too many lines: at most ${this.#o.maxLinesPerSecond} per second, the rest are dropped`,
      });
    }
    return true;
  }

  #invalid_(c: Conn, reason: string): void {
    this.#invalid++;
    if (!c.invalidLogged) {
      c.invalidLogged = true;
      this.#log.info(`invalid line from ${c.ip}: ${reason}`);
    }
    this.#send(c, { type: "INVALID", reason });
  }

  #onLine(c: Conn, line: string): void {
    if (c.closing || this.#rateLimit(c)) return;
    const now = this.#clock.now();
    c.lastLine = now;
    if (line === "" || line === "\r") return; // blank lines are ignored
    const r = parseRequest(line);
    if ("invalid" in r) return this.#invalid_(c, r.invalid);
    switch (r.type) {
      case "HELLO":
        return this.#hello(c, r, now);
      case "HEARTBEAT":
        if (!c.client) return this.#invalid_(c, "not registered: send HELLO first");
        c.client.lastSeen = now;
        return this.#send(c, { type: "OK" });
      case "DISCONNECT": {
        const client = c.client;
        if (client) {
          this.#disconnects++;
          this.#log.info(`disconnect ${formatHostPort(client.source)}`, this.#figures(client));
          this.#remove(client);
          this.#linger(client, now);
        }
        this.#send(c, { type: "BYE", reason: "" });
        return this.#drop(c);
      }
      case "STATS": {
        const mode = this.#o.stats;
        if (mode === "off") return this.#invalid_(c, "STATS is disabled on this relay");
        if (mode === "loopback" && !isLoopbackAddress(c.ip)) {
          return this.#invalid_(c, "STATS is answered on loopback only");
        }
        return this.#send(c, { type: "STATS", json: JSON.stringify(this.stats()) });
      }
    }
  }

  #hello(c: Conn, r: Extract<RelayRequest, { type: "HELLO" }>, now: number): void {
    const o = this.#o;
    if (c.client && c.client.source.port !== r.listenPort) {
      return this.#invalid_(
        c,
        `this connection registered listen port ${c.client.source.port}: send DISCONNECT first`,
      );
    }
    if (r.targetPort === this.#udpLocal.port && this.#isOwnAddress(r.targetIp)) {
      return this.#invalid_(c, "the target is this relay's own UDP address");
    }
    if (r.targetPort === r.listenPort && r.targetIp === c.ip) {
      // One in, at most one out, and nothing back to a source: a client cannot be its own target.
      return this.#invalid_(
        c,
        `the target is your own address ${formatHostPort({ hostname: c.ip, port: r.listenPort })}`,
      );
    }
    const target = { hostname: r.targetIp, port: r.targetPort };
    let client = this.#find(c.ip, r.listenPort);
    let how: string;
    if (client) {
      how = "refreshed";
      if (client.conn !== c) {
        const old = client.conn;
        if (old) {
          old.client = undefined;
          this.#send(old, { type: "BYE", reason: "registration moved to a new connection" });
          this.#drop(old);
        }
        client.conn = c;
        client.targetUp = undefined;
        c.client = client;
        how = "re-registered on a new connection";
      }
      client.lastSeen = now;
      if (client.target.hostname !== target.hostname || client.target.port !== target.port) {
        client.target = target;
        client.targetUp = undefined;
        how = "new target";
      }
      if (how !== "refreshed") {
        this.#log.info(
          `register ${formatHostPort(client.source)} → ${formatHostPort(target)} (${how})`,
          { clients: `${this.#clientCount}/${o.maxClients}` },
        );
      }
    } else {
      if (this.#clientCount >= o.maxClients) {
        this.#full++;
        if (!c.fullLogged) {
          c.fullLogged = true;
          this.#log.info(
            `full: refused ${
              formatHostPort({ hostname: c.ip, port: r.listenPort })
            } (${this.#clientCount}/${o.maxClients} clients)`,
          );
        }
        return this.#send(c, { type: "FULL" });
      }
      client = new Client({ hostname: c.ip, port: r.listenPort }, target, now, this.#totals);
      this.#unlinger(c.ip, r.listenPort); // registered again: the new registration forwards from now on
      client.conn = c;
      c.client = client;
      let ports = this.#bySource.get(c.ip);
      if (!ports) this.#bySource.set(c.ip, ports = new Map());
      ports.set(r.listenPort, client);
      this.#clientCount++;
      this.#registrations++;
      this.#log.info(
        `register ${formatHostPort(client.source)} → ${formatHostPort(target)}`,
        { clients: `${this.#clientCount}/${o.maxClients}` },
      );
    }
    this.#send(c, { type: "OK", udpPort: this.#udpLocal.port, heartbeatTimeout: o.heartbeatTimeout, observedIp: c.ip });
    this.#notifyAround(client);
  }

  /** True when `ip` (with our UDP port) would address this relay's own socket. */
  #isOwnAddress(ip: string): boolean {
    const bound = canonicalHost(this.#udpLocal.hostname);
    // (With a wildcard bind, our non-loopback addresses are not known here: a datagram forwarded to ourselves
    // would arrive from our own address, which is never registered, and be dropped.)
    return ip === bound || (isLoopbackAddress(ip) && (isWildcard(bound) || isLoopbackAddress(bound)));
  }

  #find(ip: string, port: number): Client | undefined {
    return this.#bySource.get(ip)?.get(port);
  }

  #remove(client: Client): void {
    const ports = this.#bySource.get(client.source.hostname);
    if (!ports || ports.get(client.source.port) !== client) return;
    ports.delete(client.source.port);
    if (ports.size === 0) this.#bySource.delete(client.source.hostname);
    this.#clientCount--;
    if (client.conn) client.conn.client = undefined;
    client.conn = undefined;
    this.#notifyAround(client);
  }

  /**
   * Keeps forwarding the datagrams of `client`, just removed by DISCONNECT, for {@linkcode DISCONNECT_LINGER_MS}.
   * At most `maxClients` are kept: beyond that (a flood of registrations and disconnects), the expired ones are
   * dropped first, and a new one is not kept while none has expired.
   */
  #linger(client: Client, now: number): void {
    if (this.#leavingCount >= this.#o.maxClients) this.#purgeLeaving(now);
    if (this.#leavingCount >= this.#o.maxClients) return;
    const { hostname, port } = client.source;
    let ports = this.#leaving.get(hostname);
    if (!ports) this.#leaving.set(hostname, ports = new Map());
    if (!ports.has(port)) this.#leavingCount++;
    ports.set(port, { client, until: now + DISCONNECT_LINGER_MS });
  }

  #unlinger(ip: string, port: number): void {
    const ports = this.#leaving.get(ip);
    if (!ports?.delete(port)) return;
    this.#leavingCount--;
    if (ports.size === 0) this.#leaving.delete(ip);
  }

  /** The registration removed by DISCONNECT that still forwards `from`'s datagrams, if any. */
  #lingering(from: HostPort): Client | undefined {
    const l = this.#leaving.get(from.hostname)?.get(from.port);
    if (l === undefined) return undefined;
    if (this.#clock.now() < l.until) return l.client;
    this.#unlinger(from.hostname, from.port);
    return undefined;
  }

  #purgeLeaving(now: number): void {
    for (const [ip, ports] of this.#leaving) {
      for (const [port, l] of ports) if (now >= l.until) this.#unlinger(ip, port);
    }
  }

  /** Tells `client` and every client targeting it whether their target is registered, when that changed. */
  #notifyAround(client: Client): void {
    if (this.#o.targets !== "clients") return;
    const registered = this.#find(client.source.hostname, client.source.port) === client;
    if (registered) this.#notify(client);
    for (const ports of this.#bySource.values()) {
      for (const other of ports.values()) {
        if (
          other !== client && other.target.port === client.source.port &&
          other.target.hostname === client.source.hostname
        ) this.#notify(other);
      }
    }
  }

  #notify(client: Client): void {
    const up = this.#find(client.target.hostname, client.target.port) !== undefined;
    if (client.targetUp === up || !client.conn) return;
    client.targetUp = up;
    this.#send(client.conn, { type: "TARGET", up });
  }

  #figures(c: Client): Record<string, number> {
    return { packets_in: c.packetsIn, packets_out: c.packetsOut, bytes_out: c.bytesOut, drops: c.drops };
  }

  // ---- timer -----------------------------------------------------------------------------

  #check = (): void => {
    if (this.#closed) return;
    const o = this.#o;
    const now = this.#clock.now();
    const hbMs = o.heartbeatTimeout * 1000, idleMs = o.idleTimeout * 1000;
    for (const ports of this.#bySource.values()) {
      for (const client of ports.values()) {
        if (now - client.lastSeen < hbMs) continue;
        this.#expired++;
        this.#log.info(
          `expire ${formatHostPort(client.source)}: no heartbeat for ${o.heartbeatTimeout} s`,
          this.#figures(client),
        );
        const conn = client.conn;
        this.#remove(client);
        if (conn) {
          this.#send(conn, { type: "TIMEOUT" });
          this.#drop(conn);
        }
      }
    }
    for (const c of this.#conns) {
      if (c.client || c.closing || now - c.lastLine < idleMs) continue;
      this.#idleTimeouts++;
      this.#log.debug(`connection from ${c.ip} idle for ${o.idleTimeout} s: TIMEOUT`);
      this.#send(c, { type: "TIMEOUT" });
      this.#drop(c);
    }
    this.#purgeLeaving(now);
    this.#summarize();
    this.#nextCheck += o.checkInterval * 1000;
    if (this.#nextCheck <= now) this.#nextCheck = now + o.checkInterval * 1000;
    this.#timer = this.#clock.at(this.#nextCheck, this.#check);
  };

  /** One line per check for what was counted but not logged one by one (floods stay bounded in the log). */
  #summarize(): void {
    const r = this.#reported;
    const parts: string[] = [];
    const delta = (now: number, before: number, what: string) => {
      if (now > before) parts.push(`${now - before} ${what}`);
    };
    delta(this.#full, r.full, "FULL replies");
    delta(this.#invalid, r.invalid, "INVALID replies");
    delta(this.#busy, r.busy, "connections refused (BUSY)");
    delta(this.#rateLimited, r.rate, "lines over the rate limit");
    delta(this.#dropOversize, r.oversize, `datagrams over ${this.#o.maxPacket} bytes`);
    delta(this.#totals.sendErrors, r.sendErrors, `failed sends (${this.#totals.lastSendError})`);
    if (this.#dropUnregistered > r.unregistered) {
      const from = this.#lastUnregistered ? `, last from ${formatHostPort(this.#lastUnregistered)}` : "";
      parts.push(`${this.#dropUnregistered - r.unregistered} datagrams from unregistered sources dropped${from}`);
    }
    this.#reported = {
      full: this.#full,
      invalid: this.#invalid,
      busy: this.#busy,
      unregistered: this.#dropUnregistered,
      rate: this.#rateLimited,
      oversize: this.#dropOversize,
      sendErrors: this.#totals.sendErrors,
    };
    if (parts.length) this.#log.info(`since the last check: ${parts.join(", ")}`);
  }

  // ---- UDP (hot path) --------------------------------------------------------------------

  #onDatagram = (data: Uint8Array, from: HostPort): void => {
    let client = this.#bySource.get(from.hostname)?.get(from.port);
    if (client === undefined && this.#leavingCount > 0) client = this.#lingering(from);
    if (client === undefined) {
      this.#dropUnregistered++;
      this.#lastUnregistered = from;
      return;
    }
    const n = data.length;
    client.packetsIn++;
    client.bytesIn += n;
    this.#packetsIn++;
    this.#bytesIn += n;
    const target = client.target;
    if (this.#o.targets === "clients" && this.#bySource.get(target.hostname)?.get(target.port) === undefined) {
      client.drops++;
      this.#dropTargetDown++;
      return;
    }
    const sock = this.#sock!;
    if (sock.sendBacklog >= this.#o.maxSendBacklog) {
      client.drops++;
      this.#dropBacklog++;
      return;
    }
    // Counted as forwarded when handed to the socket (a later send failure is counted as a drop), so the counters
    // a DISCONNECT reports do not depend on when the last send completes.
    client.packetsOut++;
    client.bytesOut += n;
    this.#totals.packetsOut++;
    this.#totals.bytesOut += n;
    sock.post(data, target, client.listener);
  };

  #onOversize = (from: HostPort): void => {
    this.#dropOversize++;
    const client = this.#bySource.get(from.hostname)?.get(from.port);
    if (client) client.drops++;
  };

  // ---- status ----------------------------------------------------------------------------

  /** Counters, limits and every registration. */
  stats(): RelayStats {
    const now = this.#clock.now();
    const per: RelayClientStats[] = [];
    for (const ports of this.#bySource.values()) {
      for (const c of ports.values()) {
        per.push({
          source: formatHostPort(c.source),
          target: formatHostPort(c.target),
          target_up: this.#find(c.target.hostname, c.target.port) !== undefined,
          connected: c.conn !== undefined,
          age_s: Math.round((now - c.registeredAt) / 100) / 10,
          silent_s: Math.round((now - c.lastSeen) / 100) / 10,
          packets_in: c.packetsIn,
          bytes_in: c.bytesIn,
          packets_out: c.packetsOut,
          bytes_out: c.bytesOut,
          drops: c.drops,
        });
      }
    }
    return {
      tcp: formatHostPort(this.tcpAddress),
      udp: formatHostPort(this.#udpLocal),
      clients: this.#clientCount,
      max_clients: this.#o.maxClients,
      connections: this.#conns.size,
      registrations: this.#registrations,
      expired: this.#expired,
      disconnects: this.#disconnects,
      full: this.#full,
      invalid: this.#invalid,
      idle_timeouts: this.#idleTimeouts,
      busy: this.#busy,
      rate_limited: this.#rateLimited,
      packets_in: this.#packetsIn,
      bytes_in: this.#bytesIn,
      packets_out: this.#totals.packetsOut,
      bytes_out: this.#totals.bytesOut,
      dropped: {
        unregistered: this.#dropUnregistered,
        oversize: this.#dropOversize,
        target_down: this.#dropTargetDown,
        backlog: this.#dropBacklog,
        send_errors: this.#totals.sendErrors,
      },
      per_client: per,
    };
  }
}

function errText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
