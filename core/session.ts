/**
 * Sessions: where the control plane and the media plane meet.
 *
 * Whoever owns a call (the SIP control plugin, a WebSocket or relay control, or
 * the runner for a file without a control section) creates a
 * {@linkcode Session} and hands it to the chains it builds. The session owns
 * the call's port pair and sockets, the per-call resources stages share (an
 * RTCP session, a device stream), the buses that link its chains into a graph
 * (`core/bus.ts`), an event bus, and typed media statistics.
 * Stages reach all of it through `ctx.session`; nothing is found through a
 * process-global registry, so a session and its chains can live in any worker.
 * Closing the session releases everything it owns.
 *
 * @example
 * ```ts
 * const session = new Session({ id: "call-1", clock, net: udpNetwork });
 * session.ports = new PortAllocator(udpNetwork, [31000, 31010]).pair("127.0.0.1");
 * const send = await buildPipeline("send", chain, { registry, session });
 * await send.run();
 * await session.close(); // sockets, RTCP (BYE), ports
 * ```
 *
 * @module
 */
import { Bus } from "./bus.ts";
import type { Clock } from "./clock.ts";
import { type Logger, silentLogger } from "./log.ts";
import { canonicalHost, ipVersion } from "./net/address.ts";
import type { DatagramSocket, Network } from "./net/datagram.ts";
import { PortAllocator, type PortPair } from "./net/ports.ts";
import { udpNetwork } from "./net/udp.ts";

/**
 * A kind of per-session resource, typed by what it holds (an RTCP session, a
 * device stream). The plugin that provides the resource creates one kind and
 * uses it as the key, so two plugins never collide and nothing is looked up
 * by a bare string.
 *
 * @example
 * ```ts
 * const RTCP = new ResourceKind<RtcpSession>("rtcp session", (s) => s.close());
 * const rtcp = ctx.session.resource(RTCP, "", () => new RtcpSession({ ... }));
 * ```
 */
export class ResourceKind<T> {
  /** Name for logs and errors. */
  readonly name: string;
  /** Releases a value when its session closes. */
  readonly dispose?: (value: T) => void | Promise<void>;

  /**
   * Creates a kind.
   * @param name name for logs and errors
   * @param dispose releases a value when the session closes
   */
  constructor(name: string, dispose?: (value: T) => void | Promise<void>) {
    this.name = name;
    this.dispose = dispose;
  }
}

/**
 * Media statistics of one session, written by its stages as packets and frames
 * pass (plain counters: cheap enough for the per-packet path) and read by
 * whoever owns the session (call summaries, status pages).
 */
export interface MediaStats {
  /** Datagrams sent to the peer. */
  packetsSent: number;
  /** Bytes of those datagrams. */
  bytesSent: number;
  /** Datagrams received from the peer. */
  packetsReceived: number;
  /** Bytes of those datagrams. */
  bytesReceived: number;
  /** Datagrams dropped because they came from someone other than the peer. */
  foreignDropped: number;
  /** Packets the receiver found missing (never arrived, or arrived too late to play). */
  lost: number;
  /** Packets that arrived after their play time. */
  late: number;
  /** Frames synthesized to conceal losses. */
  concealedFrames: number;
  /** Playout delay of the received audio over the call (ms): median, 95th percentile, maximum; once played. */
  playoutDelayMs?: { p50: number; p95: number; max: number };
  /** Frames the playout time-scaled (compressed or stretched) to follow its target delay, once played. */
  timeStretchedFrames?: number;
  /** Interarrival jitter of what we receive (RFC 3550), ms. */
  jitterMs: number;
  /** Round-trip time from RTCP (LSR/DLSR), ms, once known. */
  rttMs?: number;
  /** Packets the peer reports lost of what we send (RTCP), once known. */
  remoteLost?: number;
  /** Jitter the peer reports of what we send (RTCP), ms, once known. */
  remoteJitterMs?: number;
}

/** A fresh set of zeroed {@linkcode MediaStats}. */
export function newMediaStats(): MediaStats {
  return {
    packetsSent: 0,
    bytesSent: 0,
    packetsReceived: 0,
    bytesReceived: 0,
    foreignDropped: 0,
    lost: 0,
    late: 0,
    concealedFrames: 0,
    jitterMs: 0,
  };
}

/** An event published on a session: a stage event (`timeout`, `rtcp`, `dtmf`...) or a life-cycle event. */
export interface SessionEvent {
  /** Event type. */
  type: string;
  /** The pipeline it came from, for stage events. */
  pipeline?: string;
  /** Label of the stage that raised it. */
  stage?: string;
  /** Payload. */
  detail?: unknown;
}

/** Listener of session events. */
export type SessionListener = (event: SessionEvent) => void;

/** Options of a {@linkcode Session}. */
export interface SessionOptions {
  /** Identifier for logs (e.g. the call's sanitized Call-ID). */
  id: string;
  /** The clock the session's stages run on. */
  clock: Clock;
  /** Logger (default: silent). */
  log?: Logger;
  /** Network sockets are bound on (default: real UDP). */
  net?: Network;
  /** A port pair already bound for the session (it takes ownership). */
  ports?: PortPair;
}

interface Held {
  kind: ResourceKind<unknown>;
  value: unknown;
}

/** Two bind addresses name the same local socket: equal, or a wildcard that covers the other's family. */
function sameBind(a: string, b: string): boolean {
  const ca = canonicalHost(a), cb = canonicalHost(b);
  const covers = (w: string, x: string) => w === "::" || (w === "0.0.0.0" && ipVersion(x) !== 6);
  return ca === cb || covers(ca, cb) || covers(cb, ca);
}

/**
 * One call's (or one standalone run's) share of the process: its sockets, its
 * per-session resources, its events and statistics.
 */
export class Session {
  /** Identifier for logs. */
  readonly id: string;
  /** The clock its stages run on. */
  readonly clock: Clock;
  /** Logger. */
  readonly log: Logger;
  /** The network its sockets are bound on. */
  readonly net: Network;
  /** Media statistics, written by the stages. */
  readonly stats: MediaStats = newMediaStats();
  #ports: PortPair | undefined;
  readonly #sockets: DatagramSocket[] = [];
  readonly #pairs: PortPair[] = [];
  readonly #resources = new Map<ResourceKind<unknown>, Map<string, Held>>();
  readonly #order: Held[] = [];
  readonly #listeners = new Set<SessionListener>();
  readonly #buses = new Map<string, Bus>();
  #closed: Promise<void> | undefined;
  /** Holds on what the session's sinks send (see {@linkcode holdSends}); its release, when held. */
  #sendHolds = 0;
  #sendsReleased: PromiseWithResolvers<number> | undefined;

  /**
   * Creates a session.
   * @param opts id, clock, logger, network, and a port pair it takes over
   */
  constructor(opts: SessionOptions) {
    this.id = opts.id;
    this.clock = opts.clock;
    this.log = opts.log ?? silentLogger;
    this.net = opts.net ?? udpNetwork;
    if (opts.ports) this.ports = opts.ports;
  }

  /**
   * Holds what the session's network sinks send until the returned function is called (or the session closes): an
   * incoming call's chains start before its answer is sent, and nothing may reach the peer before that answer (RFC
   * 3264 §6: the answerer sends media once it has sent the answer). A paced `udp-sink` queues its stream meanwhile, on
   * a timeline that starts at the release; an unpaced one drops (and counts) what it is given. Holds nest.
   *
   * @example
   * ```ts
   * const release = session.holdSends();
   * // ... start the call's chains, send the 200 OK ...
   * release();
   * ```
   */
  holdSends(): () => void {
    this.#sendHolds++;
    this.#sendsReleased ??= Promise.withResolvers<number>();
    let done = false;
    return () => {
      if (done) return;
      done = true;
      if (--this.#sendHolds === 0) this.#releaseSends();
    };
  }

  /** True while a {@linkcode holdSends} hold is on. */
  get sendsHeld(): boolean {
    return this.#sendHolds > 0;
  }

  /** Resolves with the clock's time when the last {@linkcode holdSends} hold is released (at once when none is on). */
  get sendsReleased(): Promise<number> {
    return this.#sendsReleased?.promise ?? Promise.resolve(this.clock.now());
  }

  #releaseSends(): void {
    this.#sendHolds = 0;
    const p = this.#sendsReleased;
    this.#sendsReleased = undefined;
    p?.resolve(this.clock.now());
  }

  /** The RTP/RTCP port pair of the session, if one was allocated for it. */
  get ports(): PortPair | undefined {
    return this.#ports;
  }

  /** Hands the session a bound port pair; it closes the pair when it closes. */
  set ports(pair: PortPair | undefined) {
    if (!pair) return;
    this.#ports = pair;
    this.#adopt(pair);
  }

  /** True once {@linkcode close} was called. */
  get closed(): boolean {
    return this.#closed !== undefined;
  }

  #adopt(pair: PortPair): void {
    this.clock.prepare?.(); // a call's media ports: real-time timers are coming
    this.#pairs.push(pair);
    this.#sockets.push(pair.rtp, pair.rtcp);
  }

  /**
   * The socket on `bind:port` for a stage of this session: one of the
   * session's sockets when it holds that port (its RTP/RTCP pair, or a socket
   * another stage of the session opened: the `udp-source` and `udp-sink` of a
   * call share one, so the peer sees our RTP come from where it sends), else
   * one bound now and owned by the session.
   *
   * Port 0 binds a new one: with `range`, an RTP/RTCP pair from the range (the
   * even port is returned; the odd one waits for the RTCP stage asking for
   * it); without, an ephemeral port.
   */
  socket(bind: string, port: number, range?: [number, number]): DatagramSocket {
    if (this.#closed) throw new Error(`session ${this.id} is closed`);
    this.clock.prepare?.(); // network I/O: real-time timers are coming
    if (port > 0) {
      const held = this.#sockets.find((s) => !s.closed && s.port === port && sameBind(s.hostname, bind));
      if (held) return held;
      const s = this.net.bind(bind, port);
      this.#sockets.push(s);
      return s;
    }
    if (range) {
      const pair = new PortAllocator(this.net, range).pair(bind);
      this.#adopt(pair);
      return pair.rtp;
    }
    const s = this.net.bind(bind, 0);
    this.#sockets.push(s);
    return s;
  }

  /**
   * The resource of `kind` named `id` in this session, created on first use;
   * the kind's `dispose` releases it when the session closes.
   */
  resource<T>(kind: ResourceKind<T>, id: string, create: () => T): T {
    if (this.#closed) throw new Error(`session ${this.id} is closed`);
    let byId = this.#resources.get(kind as ResourceKind<unknown>);
    if (!byId) this.#resources.set(kind as ResourceKind<unknown>, byId = new Map());
    let held = byId.get(id);
    if (!held) {
      held = { kind: kind as ResourceKind<unknown>, value: create() };
      byId.set(id, held);
      this.#order.push(held);
    }
    return held.value as T;
  }

  /**
   * The session's bus named `name`, created on first use: chains of the
   * session publish on it (`bus-sink`) and read it (`bus-source`, `mixer`);
   * a control plugin may connect it to a bus of another session (a bridge).
   */
  bus(name: string): Bus {
    let b = this.#buses.get(name);
    if (!b) this.#buses.set(name, b = new Bus(name));
    return b;
  }

  /** Subscribes to the session's events; returns an unsubscribe function. */
  on(listener: SessionListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Publishes an event to the session's listeners (a listener that throws is logged, not propagated). */
  emit(event: SessionEvent): void {
    for (const l of [...this.#listeners]) {
      try {
        l(event);
      } catch (e) {
        this.log.error(`session event listener for "${event.type}" threw: ${e instanceof Error ? e.message : e}`);
      }
    }
  }

  /**
   * Releases everything the session owns: resources first, newest first (an
   * RTCP session sends its BYE while its socket is still open, unless the
   * session still holds its sends: then nothing was ever sent, and no BYE is),
   * then its hold on sends, then sockets and ports. Idempotent; resolves when
   * every port is free again.
   */
  close(): Promise<void> {
    this.#closed ??= (async () => {
      for (const held of this.#order.reverse()) {
        try {
          await held.kind.dispose?.(held.value);
        } catch (e) {
          this.log.warn(
            `session ${this.id}: releasing ${held.kind.name} failed: ${e instanceof Error ? e.message : e}`,
          );
        }
      }
      this.#order.length = 0;
      this.#resources.clear();
      this.#releaseSends(); // nothing is held past the session's end: a sink still waiting stops waiting
      await Promise.all(this.#sockets.map((s) => s.close()));
      await Promise.all(this.#pairs.map((p) => p.close()));
      this.#listeners.clear();
    })();
    return this.#closed;
  }
}
