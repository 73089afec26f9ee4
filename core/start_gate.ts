/**
 * {@linkcode StartGate}: the paced sinks of several chains fed from files start their timelines at one time, once
 * every one of them has filled its queue (GStreamer's preroll and common base time, for voxpipe's chains).
 *
 * Without it, each paced sink starts its timeline at its first packet. When a file starts many chains at once (200
 * file→RTP streams, say), the first chains then send while the thread is still opening the other chains' files and
 * filling their queues, and their first packets leave late. With a gate, each sink joins it when its chain starts,
 * queues its first packets without a timeline until its queue is full (or its stream has ended), and says so; when
 * every sink that joined has said so or left, and the gate was sealed (no more sinks will join), the gate opens at
 * `now + marginMs` and every sink starts its timeline there. By then the start-up work is done: the queues are full
 * and the sources wait for room, as they do for the rest of the stream.
 *
 * A chain fed by a live source (a network socket, a microphone) does not join: its packets come when they come. A
 * gate opens anyway `timeoutMs` after its first member joined (or it was sealed), so a sink whose upstream never
 * fills its queue cannot hold the others back for longer than that.
 *
 * @example
 * ```ts
 * const gate = new StartGate(mediaClock());
 * const pipelines = [];
 * for (const name of runner.chainsFor()) pipelines.push(await runner.build(name));
 * for (const p of pipelines) p.start({ gate });
 * gate.seal(); // every chain has started: the gate opens when their paced sinks have filled their queues
 * ```
 *
 * @module
 */
import type { Clock, Timer } from "./clock.ts";

/** Options of a {@linkcode StartGate}. */
export interface StartGateOptions {
  /**
   * How long after the gate's first member joined (or the gate was sealed, if first) it opens even when not every
   * member has said it is ready, ms. Default 2 000.
   */
  timeoutMs?: number;
  /** How long after the moment it opens the common start time is, ms: room for the members' own work then. Default 20. */
  marginMs?: number;
}

/** A member's hold on a {@linkcode StartGate}: say {@linkcode ready} once primed, or {@linkcode leave}. */
export interface StartTicket {
  /**
   * The share of its queue this member fills before the start, 0.5..1: 1 for the first member, and for the others
   * shares spread evenly over that range (the golden ratio's sequence). A member asks for more when its queue is down
   * to half, so members that started with equal queues would refill in step, in the same milliseconds of every cycle.
   */
  readonly fill: number;
  /** This member has queued what it needs before it starts (or has all its stream): it waits for the gate only. */
  ready(): void;
  /** This member will not start (its chain stopped): the gate no longer waits for it. */
  leave(): void;
}

/** The default {@linkcode StartGateOptions.timeoutMs}. */
export const START_GATE_TIMEOUT_MS = 2000;
/** The default {@linkcode StartGateOptions.marginMs}. */
export const START_GATE_MARGIN_MS = 20;

const NO_TICKET: StartTicket = { fill: 1, ready() {}, leave() {} };

/** The fractional part of the golden ratio: k × this, modulo 1, spreads k = 0, 1, 2, ... evenly over [0, 1). */
const GOLDEN_FRACTION = 0.6180339887498949;

/** Lets paced sinks of several chains start their timelines together; see the module's documentation. */
export class StartGate {
  readonly #clock: Clock;
  readonly #timeoutMs: number;
  readonly #marginMs: number;
  readonly #opened = Promise.withResolvers<number>();
  /** Members that joined and have said neither ready nor leave. */
  #waiting = 0;
  #members = 0;
  #sealed = false;
  #openAt: number | undefined;
  #timer: Timer | undefined;

  /**
   * Creates a gate on `clock` (the clock of the sinks that join it).
   *
   * @param clock the media clock the common start time is on
   * @param opts timeout and margin
   * @throws RangeError when an option is negative or not a number
   */
  constructor(clock: Clock, opts: StartGateOptions = {}) {
    const timeoutMs = opts.timeoutMs ?? START_GATE_TIMEOUT_MS;
    const marginMs = opts.marginMs ?? START_GATE_MARGIN_MS;
    if (!(timeoutMs >= 0) || !(marginMs >= 0)) {
      throw new RangeError(`StartGate: timeoutMs and marginMs must be numbers ≥ 0, got ${timeoutMs} and ${marginMs}`);
    }
    this.#clock = clock;
    this.#timeoutMs = timeoutMs;
    this.#marginMs = marginMs;
  }

  /** Resolves with the common start time (on the gate's clock) when the gate opens. */
  get opened(): Promise<number> {
    return this.#opened.promise;
  }

  /** The common start time once the gate has opened, else undefined. */
  get openAt(): number | undefined {
    return this.#openAt;
  }

  /** Members that joined so far. */
  get members(): number {
    return this.#members;
  }

  /**
   * Joins the gate: it will not open before this member says {@linkcode StartTicket.ready} or
   * {@linkcode StartTicket.leave} (or the timeout passes). Joining an open gate returns a ticket that does nothing:
   * its start time is already known ({@linkcode openAt}).
   */
  join(): StartTicket {
    if (this.#openAt !== undefined) return NO_TICKET;
    const fill = 1 - ((this.#members++ * GOLDEN_FRACTION) % 1) / 2;
    this.#waiting++;
    this.#arm();
    let done = false;
    const settle = () => {
      if (done) return;
      done = true;
      this.#waiting--;
      this.#check();
    };
    return { fill, ready: settle, leave: settle };
  }

  /** No more members will join: the gate opens as soon as every member has said ready or left (at once if none). */
  seal(): void {
    this.#sealed = true;
    this.#arm();
    this.#check();
  }

  /** Opens the gate now, whoever it still waits for (a runner giving up on its chains' start, say). */
  open(): void {
    if (this.#openAt !== undefined) return;
    this.#timer?.cancel();
    this.#timer = undefined;
    this.#openAt = this.#clock.now() + this.#marginMs;
    this.#opened.resolve(this.#openAt);
  }

  #arm(): void {
    if (this.#timer || this.#openAt !== undefined) return;
    this.#timer = this.#clock.at(this.#clock.now() + this.#timeoutMs, () => {
      this.#timer = undefined;
      this.open();
    });
  }

  #check(): void {
    if (this.#sealed && this.#waiting === 0) this.open();
  }
}
