/**
 * The process media clock: the one {@linkcode RealClock} the CLI runs every
 * pipeline and session on. Library code takes a clock as an option and falls
 * back to this one only when none is given. Import it from `core/clock.ts`.
 *
 * @module
 */
import type { Clock } from "./clock_types.ts";
import { RealClock } from "./real_clock.ts";

let processClock: RealClock | undefined;

/**
 * The process-wide real-time media clock, created on first use. Pipelines,
 * runners and the SIP user agent use it when no `clock` option is given; pass
 * your own clock (a {@linkcode RealClock}, or a `VirtualClock` in tests)
 * to keep a session off it.
 *
 * @example
 * ```ts
 * const clock = mediaClock();
 * clock.after(20, () => console.log("20 ms later"));
 * ```
 */
export function mediaClock(): Clock {
  return processClock ??= new RealClock();
}

/** How the process media clock wakes up: from a timer thread (default) or on the main thread. */
export type SchedulerMode = "thread" | "main";

/**
 * Chooses how the process media clock wakes up, before it is first used. `thread` (the default) keeps the main
 * thread free for socket reads (best for duplex calls); `main` paces a send-only process more tightly (measured at
 * 200 streams: p99 1.7 ms vs 2.5–3.0 ms, see bench/README.md) but, while timers are dense, delays its own socket
 * reads by tens of milliseconds (its event loop never parks).
 *
 * @example
 * ```ts
 * setSchedulerMode("main"); // e.g. for a process that only sends many streams
 * ```
 */
export function setSchedulerMode(mode: SchedulerMode): void {
  const clock = mediaClock();
  if (clock instanceof RealClock) clock.useTimerThread = mode === "thread";
}

/**
 * How the process media clock wakes up now (see {@linkcode setSchedulerMode}); `thread` when it is not a real clock.
 *
 * @example
 * ```ts
 * const mode = schedulerMode(); // "thread" unless setSchedulerMode("main") was called
 * ```
 */
export function schedulerMode(): SchedulerMode {
  const clock = mediaClock();
  return clock instanceof RealClock && !clock.useTimerThread ? "main" : "thread";
}
