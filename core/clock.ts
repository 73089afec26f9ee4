/**
 * The media clock: one scheduler for the whole process, drift-free pacing, and a
 * virtual clock for deterministic tests.
 *
 * Times are milliseconds as floating-point numbers on a monotonic timeline.
 *
 * @module
 */
import { setImmediate } from "node:timers";

/** A scheduled callback, returned by {@linkcode Clock.at} so it can be cancelled. */
export interface Timer {
  /** Due time in clock milliseconds. */
  readonly due: number;
  /** Cancels the callback if it has not run yet. */
  cancel(): void;
}

/**
 * A clock that tells time and runs callbacks at given times.
 *
 * @example
 * ```ts
 * const clock = new VirtualClock();
 * let fired = 0;
 * clock.after(20, () => fired++);
 * clock.advance(20); // fired === 1
 * ```
 */
export interface Clock {
  /** Current time in milliseconds (monotonic). */
  now(): number;
  /** Runs `fn` at time `due` (or as soon as possible if that is past). */
  at(due: number, fn: () => void): Timer;
  /** Runs `fn` `ms` milliseconds from now. */
  after(ms: number, fn: () => void): Timer;
  /** Resolves at time `due`, or rejects with the signal's reason when aborted first. */
  sleepUntil(due: number, signal?: AbortSignal): Promise<void>;
  /** Resolves after `ms` milliseconds, or rejects when the signal aborts first. */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

interface Entry extends Timer {
  fn: () => void;
  seq: number;
  cancelled: boolean;
  index: number;
}

/** Binary min-heap of timers ordered by (due, seq). */
class TimerHeap {
  items: Entry[] = [];
  #less(a: Entry, b: Entry): boolean {
    return a.due < b.due || (a.due === b.due && a.seq < b.seq);
  }
  get size(): number {
    return this.items.length;
  }
  peek(): Entry | undefined {
    return this.items[0];
  }
  push(e: Entry): void {
    const a = this.items;
    a.push(e);
    let i = a.length - 1;
    e.index = i;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.#less(a[i], a[p])) break;
      this.#swap(i, p);
      i = p;
    }
  }
  pop(): Entry | undefined {
    const a = this.items;
    if (a.length === 0) return undefined;
    const top = a[0];
    const last = a.pop()!;
    if (a.length > 0) {
      a[0] = last;
      last.index = 0;
      this.#down(0);
    }
    top.index = -1;
    return top;
  }
  #down(i: number): void {
    const a = this.items;
    for (;;) {
      const l = 2 * i + 1, r = l + 1;
      let m = i;
      if (l < a.length && this.#less(a[l], a[m])) m = l;
      if (r < a.length && this.#less(a[r], a[m])) m = r;
      if (m === i) return;
      this.#swap(i, m);
      i = m;
    }
  }
  #swap(i: number, j: number): void {
    const a = this.items;
    const t = a[i];
    a[i] = a[j];
    a[j] = t;
    a[i].index = i;
    a[j].index = j;
  }
}

abstract class HeapClock implements Clock {
  protected heap = new TimerHeap();
  #seq = 0;
  abstract now(): number;
  protected abstract arm(): void;

  at(due: number, fn: () => void): Timer {
    const e: Entry = {
      due,
      fn,
      seq: this.#seq++,
      cancelled: false,
      index: -1,
      cancel: () => {
        e.cancelled = true;
      },
    };
    this.heap.push(e);
    this.arm();
    return e;
  }

  after(ms: number, fn: () => void): Timer {
    return this.at(this.now() + ms, fn);
  }

  sleepUntil(due: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      if (signal?.aborted) return reject(signal.reason);
      const onAbort = () => {
        t.cancel();
        reject(signal!.reason);
      };
      const t = this.at(due, () => {
        signal?.removeEventListener("abort", onAbort);
        resolve();
      });
      signal?.addEventListener("abort", onAbort, { once: true });
    });
  }

  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return this.sleepUntil(this.now() + ms, signal);
  }

  /** Runs every timer due at or before `time`, in order. Returns how many ran. */
  protected runDue(time: number): number {
    let n = 0;
    for (;;) {
      const e = this.heap.peek();
      if (!e || e.due > time) return n;
      this.heap.pop();
      if (e.cancelled) continue;
      n++;
      e.fn();
    }
  }
}

/** Smallest setTimeout overshoot assumed, ms: `setTimeout(d)` fires after ceil(d) + 0.1..1.2 ms here (2.1 for d < 1). */
const LATE_FLOOR_MS = 2.2;
/** Largest setTimeout overshoot the margin follows, ms (beyond: the process was not scheduled). */
const LATE_CAP_MS = 6;
/** Half-life of the overshoot estimate, ms. */
const LATE_HALF_LIFE_MS = 10_000;
/** Length of the window over which the fine-phase duty is measured, ms. */
const DUTY_WINDOW_MS = 1000;

/**
 * The real-time scheduler: one timer heap for the whole process, and at most
 * one OS timer armed for it, whatever the number of streams.
 *
 * It works in two phases:
 *
 * 1. **Sleep.** A `setTimeout` wakes the scheduler a margin before the earliest
 *    due time. In Deno 2.9 here `setTimeout(d)` fires after `ceil(d)` ms plus
 *    0.1–1.2 ms (at least ~2.1 ms for `d` < 1), and 4–6.6 ms late under heavy
 *    receive load (DESIGN), so the margin is `spinMs` or the largest overshoot
 *    seen recently (at least 2.2, at most 6 ms) plus 0.25 ms, whichever is
 *    larger: a maximum that halves every 10 s, so one slow wake widens it at
 *    once and it narrows again over seconds.
 * 2. **Fine wait**, from there to the due time, in one of two ways:
 *    - *futex* (the default): block in `Atomics.wait` slices of at most
 *      `sliceMs`, yielding to the event loop (`setImmediate`) between them so
 *      sockets and other callbacks keep running. ~0.08 ms typical overshoot,
 *      a few % of a core even for 200 streams, and a sleeping thread is what
 *      the kernel's scheduler favours when the CPUs are contended.
 *    - *spin*: re-check the time on every turn of the event loop (~1 µs per
 *      turn when idle): precise to a few µs on an idle machine, but it burns
 *      the CPU for the whole fine phase, and on a contended machine the kernel
 *      treats the spinning thread as CPU-bound and preempts it for whole time
 *      slices. Measured here with two CPU burners on the two cores, one stream:
 *      spin p50 2.7 ms late, 268 of 500 timers > 1 ms late, 11.5 % CPU; futex
 *      p50 0.07 ms, 9 of 500 late, 0.7 % CPU. Without burners (other work
 *      running): spin p99 1.9 ms, futex p99 1.1 ms.
 *
 *    The scheduler measures the share of wall time its fine phase takes (the
 *    *duty*, smoothed over seconds) and spins only while it is below
 *    `spinBudget`: default 0, never. Raise it (e.g. to 0.25, a quarter of one
 *    core) on a dedicated, idle host to get µs precision for a few streams.
 *
 * Callbacks run at or after their due time, never early, and every timer
 * already due runs in the same turn, in due order.
 *
 * Measured with `bench/pacing.ts` (receiver in another process): see
 * `bench/README.md`. The first version (sleep `setTimeout` until 1.5 ms before,
 * then busy-spin, re-arming a `setTimeout` for each timer) had p99 3.4 ms for
 * one stream and 2.0 ms (max 6.7 ms) for 200: a re-armed `setTimeout(0)`
 * takes ~2.1 ms here.
 */
export class RealClock extends HeapClock {
  /**
   * Minimum margin in ms before a due time at which the scheduler stops
   * sleeping on `setTimeout` and starts the fine wait (the actual margin grows
   * with the `setTimeout` overshoot it observes).
   */
  spinMs: number;
  /** Longest single blocking wait in ms of the futex fine wait, between two turns of the event loop. */
  sliceMs: number;
  /** Largest fine-phase duty (share of one core, 0..1) at which the fine wait spins rather than blocks. */
  spinBudget: number;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #armedFor = Infinity; // wake time the timer was armed for
  #armedAt = 0; // when it was armed
  #armedDelay = 0; // the delay requested
  #fine = false; // the fine phase is running (a setImmediate is pending or we are inside it)
  #lateMs = LATE_FLOOR_MS; // decaying maximum of setTimeout overshoot, ms
  #lateAt = 0; // when #lateMs was last raised
  #fineSince = 0; // when the current fine phase began (or was last accounted)
  #activeMs = 0; // fine-phase time in the current duty window
  #windowStart = 0;
  #duty = 0; // smoothed fine-phase duty, 0..1
  readonly #cell = new Int32Array(new SharedArrayBuffer(4));

  /**
   * @param spinMs minimum margin before a due time in which to wait precisely instead of sleeping on
   *   `setTimeout` (default 1.5 ms)
   * @param sliceMs longest blocking wait between two event-loop turns in futex mode (default 0.5 ms)
   * @param spinBudget fine-phase duty below which the fine wait spins (default 0: never, see above)
   */
  constructor(spinMs = 1.5, sliceMs = 0.5, spinBudget = 0) {
    super();
    this.spinMs = spinMs;
    this.sliceMs = sliceMs;
    this.spinBudget = spinBudget;
  }

  now(): number {
    return performance.now();
  }

  /**
   * How the scheduler is doing: the smoothed fine-phase duty (0..1), whether
   * the fine wait currently spins, and the current wake margin in ms.
   */
  schedulerStats(): { duty: number; spinning: boolean; marginMs: number } {
    const now = this.now();
    return { duty: this.#duty, spinning: this.#duty < this.spinBudget, marginMs: this.#margin(now) };
  }

  /** The setTimeout overshoot estimate at `now`: a maximum that halves every LATE_HALF_LIFE_MS. */
  #late(now: number): number {
    const decayed = this.#lateMs * Math.pow(0.5, (now - this.#lateAt) / LATE_HALF_LIFE_MS);
    return Math.max(LATE_FLOOR_MS, decayed);
  }

  /** Margin before the earliest due time at which the sleep phase must have ended. */
  #margin(now: number): number {
    return Math.max(this.spinMs, this.#late(now) + 0.25);
  }

  #peekLive(): Entry | undefined {
    let e = this.heap.peek();
    while (e && e.cancelled) {
      this.heap.pop();
      e = this.heap.peek();
    }
    return e;
  }

  protected arm(): void {
    if (this.#fine) return; // the fine phase looks at the heap on every turn
    const e = this.#peekLive();
    if (!e) {
      this.#disarm();
      return;
    }
    const now = this.now();
    const margin = this.#margin(now);
    const lead = e.due - now;
    if (lead < margin + 1) {
      // Too close for setTimeout (it cannot wake sooner than ~1.1 ms from now).
      this.#disarm();
      this.#enterFine(now);
      setImmediate(this.#fineStep);
      return;
    }
    const wake = e.due - margin;
    if (this.#timer !== undefined && this.#armedFor <= wake) return;
    this.#disarm();
    const delay = Math.floor(wake - now);
    this.#armedFor = wake;
    this.#armedAt = now;
    this.#armedDelay = delay;
    this.#timer = setTimeout(this.#onTimeout, delay);
  }

  #disarm(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#armedFor = Infinity;
  }

  #onTimeout = (): void => {
    this.#timer = undefined;
    this.#armedFor = Infinity;
    const now = this.now();
    const over = now - (this.#armedAt + this.#armedDelay);
    // Up at once (bounded: a longer stall is the OS not running us, no margin fixes that cheaply), down slowly.
    if (over > this.#late(now)) {
      this.#lateMs = Math.min(LATE_CAP_MS, over);
      this.#lateAt = now;
    }
    if (this.#fine) return; // already running
    this.#enterFine(now);
    this.#fineStep();
  };

  #enterFine(now: number): void {
    this.#fine = true;
    this.#fineSince = now;
  }

  #leaveFine(now: number): void {
    this.#fine = false;
    this.#activeMs += now - this.#fineSince;
    this.#roll(now);
  }

  /** Closes the duty window once a second: duty = fine-phase time / window length, smoothed. */
  #roll(now: number): void {
    const len = now - this.#windowStart;
    if (len < DUTY_WINDOW_MS) return;
    if (this.#fine) {
      this.#activeMs += now - this.#fineSince;
      this.#fineSince = now;
    }
    const d = Math.min(1, this.#activeMs / len);
    this.#duty = len > 4 * DUTY_WINDOW_MS ? d : this.#duty * 0.5 + d * 0.5;
    this.#activeMs = 0;
    this.#windowStart = now;
  }

  /**
   * One turn of the fine phase: wait for the earliest timer (spin: not at all;
   * futex: at most one slice), run every timer due, then continue on the next
   * event-loop turn or go back to sleeping on setTimeout.
   */
  #fineStep = (): void => {
    if (!this.#fine) return;
    let now = this.now();
    const e = this.#peekLive();
    if (!e) {
      this.#leaveFine(now);
      return;
    }
    let lead = e.due - now;
    if (lead >= this.#margin(now) + 1) {
      this.#leaveFine(now);
      this.arm();
      return;
    }
    this.#roll(now);
    if (lead > 0 && this.#duty >= this.spinBudget) {
      Atomics.wait(this.#cell, 0, 0, Math.min(lead, this.sliceMs));
      now = this.now();
      lead = e.due - now;
    }
    try {
      if (lead <= 0) this.runDue(now);
    } finally {
      // Continue on the next turn, so I/O callbacks run between checks.
      setImmediate(this.#fineStep);
    }
  };

  /** Timers not yet run (including cancelled ones not yet discarded). */
  get pending(): number {
    return this.heap.size;
  }
}

/**
 * A clock that only moves when told to, for deterministic tests of timers,
 * jitter buffers, RTCP intervals and SIP retransmissions.
 *
 * @example
 * ```ts
 * const clock = new VirtualClock();
 * const seen: number[] = [];
 * clock.at(10, () => seen.push(clock.now()));
 * clock.advance(15); // seen = [10], clock.now() === 15
 * ```
 */
export class VirtualClock extends HeapClock {
  #now: number;

  /** @param start the initial time in ms (default 0) */
  constructor(start = 0) {
    super();
    this.#now = start;
  }

  now(): number {
    return this.#now;
  }

  protected arm(): void {}

  /** Moves time forward by `ms`, running every timer that falls due, each at its own time. */
  advance(ms: number): void {
    const target = this.#now + ms;
    for (;;) {
      const e = this.heap.peek();
      if (!e || e.due > target) break;
      if (e.due > this.#now) this.#now = e.due;
      this.runDue(this.#now);
    }
    this.#now = target;
  }

  /**
   * Like {@linkcode advance}, but lets promises settle after every timer so that
   * async code awaiting `sleep` progresses as it would in real time.
   */
  async advanceAsync(ms: number, step?: number): Promise<void> {
    const target = this.#now + ms;
    for (;;) {
      await settle();
      const e = this.heap.peek();
      const next = step ? Math.min(this.#now + step, target) : target;
      if (!e || e.due > next) {
        this.#now = next;
        if (next >= target) break;
        continue;
      }
      if (e.due > this.#now) this.#now = e.due;
      this.runDue(this.#now);
    }
    await settle();
  }

  /** Timers not yet run. */
  get pending(): number {
    return this.heap.items.filter((e) => !e.cancelled).length;
  }
}

async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await Promise.resolve();
  await new Promise<void>((r) => setTimeout(r, 0));
}

/**
 * Drift-free pacing: frame `n` is due at `start + n × periodMs`, never at
 * "last + period", so lateness of one frame never shifts the next.
 *
 * @example
 * ```ts
 * const clock = new VirtualClock();
 * const pacer = new Pacer(clock, 20);
 * pacer.dueTime(3); // 60 (if started at 0)
 * ```
 */
export class Pacer {
  /** Time of frame 0. */
  readonly start: number;
  /** Period between frames in ms. */
  readonly periodMs: number;
  readonly #clock: Clock;

  /**
   * @param clock the clock to pace against
   * @param periodMs the period between frames in ms
   * @param start time of frame 0 (default: now)
   */
  constructor(clock: Clock, periodMs: number, start?: number) {
    this.#clock = clock;
    this.periodMs = periodMs;
    this.start = start ?? clock.now();
  }

  /** The due time of frame `n`. */
  dueTime(n: number): number {
    return this.start + n * this.periodMs;
  }

  /** Waits until frame `n` is due. */
  wait(n: number, signal?: AbortSignal): Promise<void> {
    return this.#clock.sleepUntil(this.dueTime(n), signal);
  }
}

let processClock: Clock | undefined;

/** The process-wide real-time media clock, shared by every pipeline and session. */
export function mediaClock(): Clock {
  return processClock ??= new RealClock();
}
