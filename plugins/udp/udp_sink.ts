/**
 * `udp-sink`: sends `rtp` frames (serialized with `serializeRtp`) or `packet`
 * frames as UDP datagrams, paced in real time on the process media clock.
 *
 * **Pacing** (`pace`, default on). The packet with RTP timestamp `ts` is due at
 * `start + (ts − ts0) / clockRate` (timestamps unwrapped over 32 bits), so
 * pacing is drift-free: a late packet never delays the next one. Packet frames
 * have no timestamp: packet n is due at `start + n × ptime`. Every due packet is
 * sent from one timer on `ctx.clock` — in production the process-wide
 * process's media clock shared by all streams, never a timer per stream. A
 * timestamp jump or a stall of more than `resync_ms` restarts the timeline at
 * the current packet (counted in `resyncs`), and an SSRC change restarts it too.
 * `offset_ms` sends every packet that much after its due time (GStreamer's
 * `ts-offset`). On a socket of the fast network with the native pacer
 * (`VOXPIPE_PACER_LEAD_MS`), each packet is handed to the pacer's thread that
 * lead before its due time and leaves at its due time from that thread; the
 * timeline starts one lead later, so that a packet that arrives on time is
 * handed over at once and leaves one lead after it arrived.
 * A telephone event (RFC 4733, tagged `telephone-event` by the `dtmf-sender`)
 * carries its event's start as timestamp: it goes out right after the packet
 * before it and leaves the timeline alone.
 *
 * **Starting together.** A chain fed from a file and started with a start gate (`Pipeline.start({ gate })`; the
 * runner does so for a file's chains when two or more are fed from files: see `StartGate`) queues its first packets
 * without a timeline until its queue is full (`queue_ms` for the gate's first member, between half and all of it for
 * the others, so that their refills do not come in step) or its stream has ended, tells the gate, and starts its
 * timeline at the time the gate opens, with every other chain of the gate: the chains' start-up work is done by then.
 *
 * **Backpressure.** The sink keeps a short queue: `write()` returns false once
 * the queue reaches `queue_ms` of packets ahead of now (high water), and
 * `drained()` resolves when it falls to half of that (low water). That is how a
 * file source upstream is held to real time in a file→network pipeline, while a
 * file→file pipeline runs at full speed.
 *
 * **End and stop.** At end of stream, `end()` sends what is queued at its due
 * times, then resolves (draining). When the pipeline is stopped, stop means
 * stop: the queue is discarded (counted in `discarded`) and `end()` resolves at
 * once.
 *
 * **Memory.** It borrows its input (`borrowsInput`): what it queues is a copy
 * (the serialized packet, or a copy of a packet frame's bytes), so the stage
 * before it may reuse its frames' arrays.
 *
 * **Symmetric RTP.** With `local_port` (and `bind`) equal to a `udp-source`'s
 * in the same session, both use one socket (`ctx.session.socket`), so the peer
 * sees our packets come from the port it sends to.
 *
 * **Nothing on an address's word** (`wait_for_peer`). An incoming call's SDP
 * may name any host. With `wait_for_peer`, nothing is sent until the session
 * has received a datagram from its peer (its `udp-source` counts only its
 * peer's, in `session.stats.packetsReceived`; checked every 10 ms of the
 * clock). Until then a paced sink holds its stream as a shut start gate
 * would: it queues up to `queue_ms` on a timeline that starts when the peer
 * is heard (upstream waits meanwhile), so nothing of the stream is lost to
 * the wait; what is held when the stream ends or stops unheard is dropped
 * and counted (`unheard_dropped`). Unpaced, packets are dropped until then.
 *
 * @example Pipeline entry
 * ```json
 * { "use": "udp-sink", "to": "192.0.2.7:4000", "local_port": 10000 }
 * ```
 *
 * @module
 */
import type { Timer } from "../../core/clock.ts";
import type { Frame, RtpFrame } from "../../core/frame.ts";
import type { RunContext, SinkStage, StageContext } from "../../core/stage.ts";
import type { StartTicket } from "../../core/start_gate.ts";
import { udpSink, type UdpSinkOptions, udpSinkSchema } from "./plugins.ts";
import { copyPacket, serializeRtp } from "../rtp/header.ts";
import { isTelephoneEvent } from "../rtp/telephone_event.ts";
import { formatHostPort, type HostPort, ipVersion, parseHostPort, resolveHost } from "../../core/net/address.ts";
import type { DatagramSocket, SendListener } from "../../core/net/datagram.ts";
import { PacketQueue } from "../../core/net/packet_queue.ts";

/** Packets a sink queues at most, whatever upstream does (beyond: dropped and counted). */
export const MAX_QUEUE_PACKETS = 10000;

/** Sends in flight (unpaced mode) above which `write()` asks upstream to wait. */
const MAX_IN_FLIGHT = 64;

/** How often a `wait_for_peer` sink checks whether its peer has been heard, clock ms. */
const HEARD_CHECK_MS = 10;

/** The ticket of a `wait_for_peer` sink's own gate, shut until the peer is heard. */
const UNHEARD: StartTicket = { fill: 1, ready() {}, leave() {} };
/** The ticket of a sink whose session holds its sends (an incoming call not answered yet: `Session.holdSends`). */
const UNANSWERED: StartTicket = { fill: 1, ready() {}, leave() {} };

/** A packet sent more than this many ms after its due time counts as a late send. */
export const LATE_MS = 1;

export { udpSink, type UdpSinkOptions };

/** Options of the `udp-sink` stage (its zod schema; the plugin's `options`). */
export const udpSinkOptions: ReturnType<typeof udpSinkSchema> = udpSinkSchema();

/** Creates a `udp-sink` stage from validated options: the plugin's `create`, loaded when first used. */
export async function createUdpSink(opts: UdpSinkOptions, sctx: StageContext): Promise<SinkStage> {
  const target = parseHostPort(opts.to);
  const bindFamily = opts.bind ? ipVersion(opts.bind) : 0;
  // Checking: a host name is not resolved (no DNS query); the family checks below take the bind's family.
  const ip = sctx.checking && ipVersion(target.hostname) === 0
    ? (bindFamily === 6 ? "::1" : "127.0.0.1")
    : await resolveHost(target.hostname, bindFamily === 4 ? 4 : undefined);
  const to: HostPort = { hostname: ip, port: target.port };
  if (to.port === 0) throw new Error(`to: port 0 is not a destination (${opts.to})`);
  const bind = opts.bind ?? (ipVersion(ip) === 6 ? "::" : "0.0.0.0");
  if (ipVersion(ip) === 6 && ipVersion(bind) === 4) {
    throw new Error(`cannot send to IPv6 ${formatHostPort(to)} from IPv4 address ${bind}: set "bind": "::"`);
  }
  if (ipVersion(ip) === 4 && ipVersion(bind) === 6 && bind !== "::") {
    throw new Error(`cannot send to IPv4 ${formatHostPort(to)} from IPv6 address ${bind}: set "bind": "0.0.0.0"`);
  }
  const sock = sctx.session.socket(bind, opts.local_port);
  return new UdpSinkStage(opts, sock, to);
}

/** The stage behind `udp-sink` (exported for tests and benchmarks). */
export class UdpSinkStage implements SinkStage {
  readonly #opts: UdpSinkOptions;
  readonly #sock: DatagramSocket;
  readonly #to: HostPort;
  #ctx: RunContext | undefined;

  // Queue: packets in order, with their due times (no allocation per packet once it has grown).
  readonly #queue = new PacketQueue<undefined>();
  #timer: Timer | undefined;
  // What drained() returned while the queue is above low water: one promise for every caller.
  #drainWait: Promise<void> | undefined;
  #drainResolve: (() => void) | undefined;
  #endWaiter: (() => void) | undefined;
  #stopped = false;

  // Timeline.
  #anchorTime = 0;
  #anchored = false;
  #lastTs = 0;
  #extTs = 0; // unwrapped timestamp distance from the anchor
  #clockRate = 8000;
  #ssrc: number | undefined;
  #packetIndex = 0; // packet frames since the anchor
  #lastDue = -Infinity;

  // The socket's native pacer lead (0: none): packets are handed to it this much before their due times.
  readonly #lead: number;
  readonly #delay: number; // offset_ms + lead: how long after its timeline time a packet is due

  // The start gate (RunContext.startGate) while it is shut: packets queue on a timeline that starts at 0, moved to
  // the gate's start time when it opens.
  #ticket: StartTicket | undefined;
  /** The `wait_for_peer` check's timer while the peer is not heard. */
  #heardTimer: Timer | undefined;
  /** Opens a `wait_for_peer` sink's own gate (with the time). */
  #heardResolve: ((at: number) => void) | undefined;
  #gateOpened: Promise<void> | undefined;
  /** How much it queues before the gate opens, ms (see #hold). */
  #primeMs = 0;

  // Sends in flight.
  #inFlight = 0;
  #flightWaiters: (() => void)[] = [];

  // Counters.
  #packets = 0;
  #bytes = 0;
  #sendErrors = 0;
  #lateSends = 0;
  #maxLateMs = 0;
  #resyncs = 0;
  #discarded = 0;
  #overflowDropped = 0;
  #unheardDropped = 0;
  /** Unpaced: packets given while the session held its sends (`Session.holdSends`), dropped. */
  #unansweredDropped = 0;
  /** Resolves the wait of a sink held by its session (`Session.holdSends`) with the time it may send from. */
  #answerResolve: ((at: number) => void) | undefined;
  /** True once end() was called: the stream has ended. */
  #ended = false;
  #lastError: string | undefined;

  /**
   * Creates the stage on an open socket (the plugin's `create` resolves `to` and acquires the socket).
   *
   * @param opts validated options
   * @param sock the socket to send from
   * @param to the resolved destination
   */
  constructor(opts: UdpSinkOptions, sock: DatagramSocket, to: HostPort) {
    this.#opts = opts;
    this.#sock = sock;
    this.#to = to;
    this.#lead = sock.postAt && sock.timedLeadMs ? sock.timedLeadMs : 0;
    // With a native pacer every packet is due one lead after the stream's timeline says (the first one a lead after
    // it arrives): a packet arriving on time is handed over at once, a lead ahead of its due time, and how late this
    // thread runs, up to the lead, does not show on the wire.
    this.#delay = opts.offset_ms + this.#lead;
  }

  /** Starts: remembers the run context (clock, signal, logger), and joins the chain's start gate when there is one. */
  start(ctx: RunContext): void {
    this.#ctx = ctx;
    const gate = ctx.startGate;
    if (this.#opts.pace && ctx.session.sendsHeld) {
      // The session holds what it sends (an incoming call's chains start before its answer is sent): held as behind
      // a shut gate, which opens when the session lets go (then, with wait_for_peer, when the peer is heard).
      this.#ticket = UNANSWERED;
      this.#primeMs = this.#opts.queue_ms;
      const { promise, resolve } = Promise.withResolvers<number>();
      this.#answerResolve = resolve;
      void ctx.session.sendsReleased.then(resolve);
      this.#gateOpened = promise.then((at) => this.#afterAnswer(ctx, at)).then((at) => this.#release(at));
    } else if (gate && this.#opts.pace && gate.openAt === undefined) {
      this.#ticket = gate.join();
      this.#primeMs = this.#opts.queue_ms * this.#ticket.fill; // members fill different amounts: see StartTicket.fill
      this.#gateOpened = gate.opened.then((at) => this.#release(at));
    } else if (this.#opts.wait_for_peer && this.#opts.pace && !this.#heard()) {
      // Held as behind a shut gate of its own, which opens when the peer is heard.
      this.#ticket = UNHEARD;
      this.#primeMs = this.#opts.queue_ms;
      this.#gateOpened = this.#whenHeard(ctx).then((at) => this.#release(at));
    }
    ctx.signal.addEventListener("abort", () => this.#stop(), { once: true });
    if (ctx.signal.aborted) this.#stop();
  }

  /** Queues (or, unpaced, sends) one frame. False asks upstream to wait for `drained()`. */
  write(frame: Frame): boolean {
    const ctx = this.#ctx!;
    if (this.#stopped) {
      this.#discarded++;
      return false;
    }
    let data: Uint8Array;
    let to = this.#to;
    if (frame.kind === "rtp") {
      data = serializeRtp(frame);
    } else if (frame.kind === "packet") {
      data = copyPacket(frame.data); // it borrows its input (see the plugin): the queue keeps a copy
      if (this.#opts.use_frame_remote && frame.remote) to = frame.remote;
    } else {
      throw new Error(`udp-sink cannot send ${frame.kind} frames: put an rtp-packetizer before it`);
    }
    if (!this.#opts.pace) {
      this.#send(data, to, undefined, 0);
      return this.#inFlight < MAX_IN_FLIGHT;
    }
    if (this.#ticket) return this.#hold(frame, data, to);
    const now = ctx.clock.now();
    const due = this.#dueTime(frame, now);
    if (this.#queue.length === 0 && due - this.#lead <= now) {
      // Nothing waiting and already due (or, with a native pacer, within its lead): send now, no timer round trip.
      this.#send(data, to, due, now);
      return true;
    }
    if (this.#queue.length >= MAX_QUEUE_PACKETS) {
      this.#overflowDropped++;
      return false;
    }
    this.#queue.push(data, to, undefined, due);
    this.#schedule();
    return this.#aheadMs(now) < this.#opts.queue_ms;
  }

  /** Resolves once the queue is at or below half of `queue_ms` (or the pipeline stops); not before the gate opens. */
  drained(): Promise<void> {
    if (this.#ticket && !this.#stopped) return this.#gateOpened!.then(() => this.drained());
    if (this.#stopped || this.#belowLowWater()) {
      return this.#opts.pace ? Promise.resolve() : this.#waitFlight(MAX_IN_FLIGHT / 2);
    }
    if (!this.#drainWait) {
      const { promise, resolve } = Promise.withResolvers<void>();
      this.#drainWait = promise;
      this.#drainResolve = resolve;
    }
    return this.#drainWait;
  }

  /** End of stream: sends the queue on schedule, then resolves. After a stop: discards it and resolves. */
  async end(): Promise<void> {
    this.#ended = true;
    if (this.#ctx?.signal.aborted) this.#stop();
    // The stream ended before the peer was heard: what is held is never sent.
    this.#stopWaitingForPeer();
    if (this.#ticket) {
      // The stream has ended before the queue was full: all of it is queued; it starts with the others.
      this.#ticket.ready();
      await this.#gateOpened;
    }
    if (!this.#stopped && this.#queue.length > 0) {
      await new Promise<void>((resolve) => this.#endWaiter = resolve);
    }
    await this.#waitFlight(0);
    // With a native pacer, the last packets are still in its hands for up to the lead: wait until they have left
    // (the socket may be closed next, which would drop them), checking every ms, for at most lead + 200 ms.
    if (this.#lead > 0 && !this.#stopped) {
      const clock = this.#ctx!.clock;
      const limit = clock.now() + this.#lead + 200;
      while ((this.#sock.timedPending ?? 0) > 0 && !this.#stopped && clock.now() < limit) {
        await clock.sleep(1);
      }
    }
  }

  /** Cancels the timer and wakes every waiter. */
  close(): void {
    this.#stop();
  }

  /** Counters: packets_sent, bytes_sent, send_errors, late_sends, queue_depth, ... */
  /** Where it will send. */
  plan(): string {
    return `sends to ${formatHostPort(this.#to)} from ${
      formatHostPort({ hostname: this.#sock.hostname, port: this.#sock.port })
    }`;
  }

  stats(): Record<string, unknown> {
    const now = this.#ctx?.clock.now();
    return {
      to: formatHostPort(this.#to),
      local: formatHostPort({ hostname: this.#sock.hostname, port: this.#sock.port }),
      packets_sent: this.#packets,
      bytes_sent: this.#bytes,
      send_errors: this.#sendErrors,
      ...(this.#lastError ? { last_error: this.#lastError } : {}),
      late_sends: this.#lateSends,
      max_late_ms: Math.round(this.#maxLateMs * 1000) / 1000,
      queue_depth: this.#queue.length,
      queue_ms: now === undefined ? 0 : Math.max(0, Math.round(this.#aheadMs(now) * 1000) / 1000),
      resyncs: this.#resyncs,
      discarded: this.#discarded,
      overflow_dropped: this.#overflowDropped,
      ...(this.#opts.wait_for_peer ? { unheard_dropped: this.#unheardDropped } : {}),
      ...(this.#unansweredDropped > 0 ? { unanswered_dropped: this.#unansweredDropped } : {}),
    };
  }

  /**
   * Queues a packet while the start gate is shut, on a timeline that starts at 0; says the sink is ready once
   * `#primeMs` of packets are queued (false: upstream waits for `drained()`, which waits for the gate).
   */
  #hold(frame: Frame, data: Uint8Array, to: HostPort): boolean {
    // `now` follows the queued stream, so that only a jump of the stream's own timestamps restarts its timeline.
    const now = this.#queue.length > 0 ? this.#queue.lastTime() - this.#delay : 0;
    const due = this.#dueTime(frame, now);
    if (this.#queue.length >= MAX_QUEUE_PACKETS) {
      this.#overflowDropped++;
      this.#ticket!.ready();
      return false;
    }
    this.#queue.push(data, to, undefined, due);
    const full = this.#queue.lastTime() - this.#queue.time(0) >= this.#primeMs;
    if (full) this.#ticket!.ready();
    return !full;
  }

  /** The gate has opened at `at`: the queued packets' timeline starts there (or now, if later). */
  #release(at: number): void {
    if (!this.#ticket) return; // stopped meanwhile
    this.#ticket = undefined;
    const shift = Math.max(at, this.#ctx!.clock.now());
    this.#queue.offsetTimes(shift);
    this.#anchorTime += shift;
    this.#lastDue += shift;
    this.#schedule();
  }

  /** How far ahead of `now` the last queued packet is due (ms of queued media). */
  #aheadMs(now: number): number {
    return this.#queue.length === 0 ? 0 : this.#queue.lastTime() - now;
  }

  #belowLowWater(): boolean {
    const now = this.#ctx ? this.#ctx.clock.now() : 0;
    return this.#aheadMs(now) <= this.#opts.queue_ms / 2;
  }

  #dueTime(frame: Frame, now: number): number {
    let due: number;
    if (frame.kind === "rtp" && this.#anchored && frame.ssrc === this.#ssrc && isTelephoneEvent(frame)) {
      return Math.max(this.#lastDue, this.#anchorTime);
    }
    if (frame.kind === "rtp") {
      const f = frame as RtpFrame;
      const ts = f.timestamp >>> 0;
      if (!this.#anchored || f.ssrc !== this.#ssrc) {
        this.#anchor(now);
        this.#lastTs = ts;
        this.#extTs = 0;
        this.#ssrc = f.ssrc;
        this.#clockRate = f.clockRate ?? this.#opts.clock_rate;
      } else {
        this.#extTs += (ts - this.#lastTs) | 0; // signed 32-bit distance: unwraps and tolerates reordering
        this.#lastTs = ts;
      }
      due = this.#anchorTime + (this.#extTs * 1000) / this.#clockRate;
      if (Math.abs(due - this.#delay - now) > this.#opts.resync_ms) {
        this.#resync(now);
        this.#extTs = 0;
        due = this.#anchorTime;
      }
    } else {
      if (!this.#anchored) {
        this.#anchor(now);
        this.#packetIndex = 0;
      } else {
        this.#packetIndex++;
      }
      due = this.#anchorTime + this.#packetIndex * this.#opts.ptime;
      if (Math.abs(due - this.#delay - now) > this.#opts.resync_ms) {
        this.#resync(now);
        this.#packetIndex = 0;
        due = this.#anchorTime;
      }
    }
    this.#lastDue = due;
    return due;
  }

  /**
   * Starts a timeline: the first packet is due now (plus `offset_ms`, plus the native pacer's lead), or right after
   * the last one queued.
   */
  #anchor(now: number): void {
    this.#anchorTime = Math.max(now + this.#delay, this.#queue.length > 0 ? this.#lastDue : -Infinity);
    this.#anchored = true;
  }

  #resync(now: number): void {
    this.#resyncs++;
    this.#anchorTime = Math.max(
      now + this.#delay,
      this.#queue.length > 0 ? this.#queue.lastTime() : -Infinity,
    );
    this.#ctx?.log.debug("pacing timeline restarted (timestamp jump or stall)", { resyncs: this.#resyncs });
  }

  #schedule(): void {
    if (this.#timer || this.#queue.length === 0 || this.#stopped) return;
    this.#timer = this.#ctx!.clock.at(this.#queue.time(0) - this.#lead, this.#tick);
  }

  /** Timer callback: sends every packet now due, re-arms for the next. */
  #tick = (): void => {
    this.#timer = undefined;
    if (this.#stopped) return;
    const now = this.#ctx!.clock.now();
    const q = this.#queue;
    while (q.length > 0 && q.time(0) - this.#lead <= now) {
      const data = q.data(0), to = q.to(0), due = q.time(0);
      q.shift();
      this.#send(data, to, due, now);
    }
    this.#schedule();
    if (this.#drainWait && this.#belowLowWater()) this.#wakeDrain();
    if (this.#queue.length === 0 && this.#endWaiter) {
      const w = this.#endWaiter;
      this.#endWaiter = undefined;
      w();
    }
  };

  /** True once the session has received a datagram from its peer (what `wait_for_peer` waits for). */
  #heard(): boolean {
    return (this.#ctx?.session.stats.packetsReceived ?? 0) > 0;
  }

  /**
   * Resolves with the time the peer was heard (checked every 10 ms of the clock), or when the sink stops waiting
   * for it (stopped, or its stream ended unheard: {@linkcode #stopWaitingForPeer}).
   */
  #whenHeard(ctx: RunContext): Promise<number> {
    const { promise, resolve } = Promise.withResolvers<number>();
    this.#heardResolve = resolve;
    const check = () => {
      this.#heardTimer = undefined;
      if (this.#heard()) resolve(ctx.clock.now());
      else this.#heardTimer = ctx.clock.after(HEARD_CHECK_MS, check);
    };
    check();
    return promise;
  }

  /**
   * The session let go of its sends at `at`: the time the held stream starts, or, for a `wait_for_peer` sink whose
   * peer is not heard yet, the wait for it (what is held is dropped, as unheard, when the stream has ended already).
   */
  #afterAnswer(ctx: RunContext, at: number): number | Promise<number> {
    this.#answerResolve = undefined;
    if (this.#ticket !== UNANSWERED) return at; // stopped meanwhile
    if (!this.#opts.wait_for_peer || this.#heard()) return at;
    this.#ticket = UNHEARD;
    if (this.#ended) {
      this.#stopWaitingForPeer();
      return ctx.clock.now();
    }
    return this.#whenHeard(ctx);
  }

  /** A `wait_for_peer` sink gives up waiting: what it holds is dropped (counted), its waiters woken. */
  #stopWaitingForPeer(): void {
    if (this.#ticket !== UNHEARD) return;
    this.#heardTimer?.cancel();
    this.#heardTimer = undefined;
    this.#unheardDropped += this.#queue.length;
    this.#queue.clear();
    this.#ticket = undefined;
    this.#heardResolve?.(this.#ctx!.clock.now());
  }

  #send(data: Uint8Array, to: HostPort, due: number | undefined, now: number): void {
    if (this.#ctx?.session.sendsHeld) {
      this.#unansweredDropped++; // unpaced, before the call's answer is sent: nothing goes to the peer yet
      return;
    }
    if (this.#opts.wait_for_peer && !this.#heard()) {
      this.#unheardDropped++; // unpaced: the peer has not been heard from, nothing goes to it on its SDP's word
      return;
    }
    if (due !== undefined) {
      const late = now - due;
      if (late > LATE_MS) this.#lateSends++;
      if (late > this.#maxLateMs) this.#maxLateMs = late;
    }
    this.#inFlight++;
    // Handed to the native pacer ahead of its due time: it leaves at that time, whatever this thread does then.
    if (this.#lead > 0 && due !== undefined && due > now) this.#sock.postAt!(data, to, due, this.#listener);
    else this.#sock.post(data, to, this.#listener);
  }

  /** Told by the socket how each send went (one object per sink: no allocation per packet). */
  readonly #listener: SendListener = {
    sent: (n: number) => {
      this.#packets++;
      this.#bytes += n;
      const media = this.#ctx?.session.stats;
      if (media) {
        media.packetsSent++;
        media.bytesSent += n;
      }
      this.#settled();
    },
    failed: (e: unknown) => {
      this.#sendErrors++;
      const msg = e instanceof Error ? e.message : String(e);
      if (this.#sendErrors === 1) this.#ctx?.log.warn(`send to ${formatHostPort(this.#to)} failed: ${msg}`);
      this.#lastError = msg;
      this.#settled();
    },
  };

  #settled(): void {
    this.#inFlight--;
    if (this.#flightWaiters.length > 0) {
      const w = this.#flightWaiters;
      this.#flightWaiters = [];
      for (const f of w) f();
    }
  }

  async #waitFlight(max: number): Promise<void> {
    while (this.#inFlight > max) await new Promise<void>((r) => this.#flightWaiters.push(r));
  }

  #wakeDrain(): void {
    const resolve = this.#drainResolve;
    this.#drainWait = this.#drainResolve = undefined;
    resolve?.();
  }

  #stop(): void {
    if (this.#stopped) return;
    this.#stopped = true;
    this.#stopWaitingForPeer();
    this.#ticket?.leave();
    this.#ticket = undefined;
    this.#answerResolve?.(this.#ctx?.clock.now() ?? 0); // a held sink stops waiting for the session
    this.#timer?.cancel();
    this.#timer = undefined;
    this.#discarded += this.#queue.length;
    this.#queue.clear();
    if (this.#lead > 0) this.#discarded += this.#sock.forgetTimed?.() ?? 0;
    this.#wakeDrain();
    const w = this.#endWaiter;
    this.#endWaiter = undefined;
    w?.();
  }
}
