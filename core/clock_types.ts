/**
 * The two interfaces every clock implements, {@linkcode Clock} and
 * {@linkcode Timer}. They live in this leaf module so that the clocks
 * (`virtual_clock.ts`, `real_clock.ts`) can implement them while
 * `core/clock.ts` re-exports those clocks without an import cycle; import them
 * from `core/clock.ts`.
 *
 * @module
 */

/** A scheduled callback, returned by {@linkcode Clock.at} so it can be cancelled. */
export interface Timer {
  /** Due time in clock milliseconds. */
  readonly due: number;
  /** Cancels the callback if it has not run yet. */
  cancel(): void;
}

/**
 * A clock that tells time and runs callbacks at given times. Times are
 * milliseconds as floating-point numbers on a monotonic timeline.
 *
 * @example
 * ```ts
 * import { VirtualClock } from "./clock.ts";
 * const clock: Clock = new VirtualClock();
 * let fired = 0;
 * clock.after(20, () => fired++);
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
  /**
   * Optional hint that precise real-time timers are coming (a session opened a
   * socket): a clock with a costly set-up (the real clock's timer thread) does
   * it now rather than at the first timer.
   */
  prepare?(): void;
}
