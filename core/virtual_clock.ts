/**
 * The virtual clock: time moves only when a test says so, so timers, jitter
 * buffers, RTCP intervals and SIP retransmissions are tested deterministically
 * and faster than real time. Import it from `core/clock.ts`.
 *
 * @module
 */
import type { Clock, Timer } from "./clock_types.ts";
import { sleepUntil, TimerHeap } from "./_timer_heap.ts";

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
export class VirtualClock implements Clock {
  #now: number;
  readonly #heap = new TimerHeap();

  /**
   * Creates a virtual clock standing at `start`.
   * @param start the initial time in ms (default 0)
   */
  constructor(start = 0) {
    this.#now = start;
  }

  /** The virtual time in ms: moves only through {@linkcode advance} and {@linkcode advanceAsync}. */
  now(): number {
    return this.#now;
  }

  /** Runs `fn` when virtual time reaches `due` (on the next advance, if `due` is already past). */
  at(due: number, fn: () => void): Timer {
    return this.#heap.add(due, fn);
  }

  /** Runs `fn` `ms` virtual milliseconds from now. */
  after(ms: number, fn: () => void): Timer {
    return this.at(this.#now + ms, fn);
  }

  /** Resolves when virtual time reaches `due`, or rejects when the signal aborts first. */
  sleepUntil(due: number, signal?: AbortSignal): Promise<void> {
    return sleepUntil((d, fn) => this.at(d, fn), due, signal);
  }

  /** Resolves after `ms` virtual milliseconds, or rejects when the signal aborts first. */
  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return this.sleepUntil(this.#now + ms, signal);
  }

  /** Moves time forward by `ms`, running every timer that falls due, each at its own time. */
  advance(ms: number): void {
    const target = this.#now + ms;
    for (;;) {
      const e = this.#heap.peek();
      if (!e || e.due > target) break;
      if (e.due > this.#now) this.#now = e.due;
      this.#runDue(this.#now);
    }
    this.#now = target;
  }

  /**
   * Like {@linkcode advance}, but lets promises settle after every timer so that
   * async code awaiting `sleep` progresses as it would in real time.
   *
   * @param ms how far to move time
   * @param step if given, also stop every `step` ms (even without a timer) to let promises settle
   */
  async advanceAsync(ms: number, step?: number): Promise<void> {
    const target = this.#now + ms;
    for (;;) {
      await settle();
      const e = this.#heap.peek();
      const next = step ? Math.min(this.#now + step, target) : target;
      if (!e || e.due > next) {
        this.#now = next;
        if (next >= target) break;
        continue;
      }
      if (e.due > this.#now) this.#now = e.due;
      this.#runDue(this.#now);
    }
    await settle();
  }

  /** Timers not yet run. */
  get pending(): number {
    return this.#heap.items.filter((e) => !e.cancelled).length;
  }

  /** Runs every timer due at or before `time`, in order. */
  #runDue(time: number): void {
    for (;;) {
      const e = this.#heap.peek();
      if (!e || e.due > time) return;
      this.#heap.pop();
      if (e.cancelled) continue;
      e.fn();
    }
  }
}

async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await Promise.resolve();
  await new Promise<void>((r) => setTimeout(r, 0));
}
