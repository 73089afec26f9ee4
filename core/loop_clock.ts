/**
 * A clock whose timers an event loop runs: it keeps them in the timer heap
 * the other clocks use, and tells its loop when the earliest live timer
 * changes; the loop wakes at that time and calls
 * {@linkcode LoopClock.runDue}. The loop of `core/net/media_loop.ts` (a
 * `MediaLoop`, which also runs its datagram sockets) is the one that drives it
 * in production; import it from there.
 *
 * @module
 */
import type { Clock, Timer } from "./clock_types.ts";
import { sleepUntil, type TimerEntry, TimerHeap } from "./_timer_heap.ts";

/** What a {@linkcode LoopClock} needs from the loop that runs it. */
export interface LoopClockHost {
  /**
   * The earliest live timer is now due at `due` (undefined: no live timer is
   * left). Called whenever that changes, except while the loop itself runs
   * the timers (it asks {@linkcode LoopClock.nextDue} afterwards).
   */
  timersChanged(due: number | undefined): void;
  /**
   * Called after each timer callback {@linkcode LoopClock.runDue} runs (e.g.
   * to send at once what the callback queued, before the next callback runs).
   */
  afterTimer?(): void;
}

/**
 * A {@linkcode Clock} whose timers run when its event loop calls
 * {@linkcode LoopClock.runDue}: one timer heap per loop, whatever the number of
 * streams. Time is `performance.now()`. Callbacks run at or after their due
 * time, never early; timers due at the same time run in the order they were
 * scheduled. Cancelling the last live timer tells the loop at once, so an idle
 * loop lets its thread (or process) finish.
 *
 * @example
 * ```ts
 * const loop = new MediaLoop();
 * await loop.clock.sleep(20); // the loop's timerfd wakes it
 * ```
 */
export class LoopClock implements Clock {
  readonly #heap = new TimerHeap(() => {
    if (--this.#live === 0) this.#heap.clear(); // empty by now: cancelled timers leave the heap
    this.#changed();
  });
  readonly #host: LoopClockHost;
  #live = 0;
  #running = false;
  #reported: number | undefined;

  /**
   * Creates a clock run by `host`.
   * @param host the loop: told when the earliest due time changes
   */
  constructor(host: LoopClockHost) {
    this.#host = host;
  }

  /** `performance.now()`: monotonic milliseconds. */
  now(): number {
    return performance.now();
  }

  /** Runs `fn` at `due` (at the loop's next turn if that is past), never before. */
  at(due: number, fn: () => void): Timer {
    if (!Number.isFinite(due)) throw new RangeError(`timer due time must be a finite number of ms, got ${due}`);
    const t = this.#heap.add(due, fn);
    this.#live++;
    this.#changed();
    return t;
  }

  /** Runs `fn` `ms` milliseconds from now. */
  after(ms: number, fn: () => void): Timer {
    return this.at(this.now() + ms, fn);
  }

  /** Resolves at `due`, or rejects with the signal's reason when it aborts first. */
  sleepUntil(due: number, signal?: AbortSignal): Promise<void> {
    return sleepUntil((d, fn) => this.at(d, fn), due, signal);
  }

  /** Resolves after `ms` milliseconds, or rejects with the signal's reason when it aborts first. */
  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return this.sleepUntil(this.now() + ms, signal);
  }

  /** Timers neither run nor cancelled. */
  get live(): number {
    return this.#live;
  }

  /** Due time of the earliest live timer, or undefined when none is left. */
  nextDue(): number | undefined {
    return this.#heap.peekLive()?.due;
  }

  /**
   * Runs every timer due at or before `time`, in due order (and those their
   * callbacks schedule at or before `time`). Called by the loop. A callback
   * that throws is reported with `reportError` (as an uncaught error would be)
   * after the others ran. Returns how many ran.
   */
  runDue(time: number): number {
    let n = 0;
    let failure: { error: unknown } | undefined;
    this.#running = true;
    try {
      for (;;) {
        const e: TimerEntry | undefined = this.#heap.peek();
        if (!e || e.due > time) break;
        this.#heap.pop();
        if (e.cancelled) continue;
        e.cancelled = true; // done: a later cancel() is a no-op
        this.#live--;
        n++;
        try {
          e.fn();
          this.#host.afterTimer?.();
        } catch (error) {
          failure ??= { error };
        }
      }
    } finally {
      this.#running = false;
      this.#reported = this.nextDue();
    }
    if (failure) reportError(failure.error);
    return n;
  }

  #changed(): void {
    if (this.#running) return; // the loop asks for nextDue() when the timers it runs are done
    const due = this.#live > 0 ? this.nextDue() : undefined;
    if (due === this.#reported) return;
    this.#reported = due;
    this.#host.timersChanged(due);
  }
}
