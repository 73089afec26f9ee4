/**
 * The media clock: the {@linkcode Clock} interface every stage and session
 * schedules on, drift-free pacing ({@linkcode Pacer}), and, re-exported from
 * their own modules, the clocks themselves: {@linkcode VirtualClock} for
 * deterministic tests (`virtual_clock.ts`), {@linkcode RealClock}, the
 * real-time scheduler, whose wake-up strategies live in private files
 * (`real_clock.ts`, `_thread_waker.ts`, `_timeout_waker.ts`,
 * `_fine_waker.ts`, over the timer heap in `_timer_heap.ts`), and the process
 * clock {@linkcode mediaClock} (`media_clock.ts`).
 *
 * Times are milliseconds as floating-point numbers on a monotonic timeline.
 *
 * @example
 * ```ts
 * const clock = new VirtualClock();
 * const pacer = new Pacer(clock, 20);
 * const sent: number[] = [];
 * (async () => {
 *   for (let n = 0; n < 3; n++) {
 *     await pacer.wait(n);
 *     sent.push(clock.now());
 *   }
 * })();
 * await clock.advanceAsync(60, 1); // sent = [0, 20, 40]
 * ```
 *
 * @module
 */
import type { Clock } from "./clock_types.ts";

export type { Clock, Timer } from "./clock_types.ts";
export { VirtualClock } from "./virtual_clock.ts";
export { RealClock, type SchedulerStats } from "./real_clock.ts";
export { mediaClock, type SchedulerMode, schedulerMode, setSchedulerMode } from "./media_clock.ts";

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
   * Creates a pacer.
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
