/**
 * The real-time scheduler: one timer heap for the whole process, whatever the
 * number of streams, woken by one of three wakers (each in its own private
 * file): the timer thread (`_thread_waker.ts`, the default), `setTimeout` alone
 * while that thread starts (`_timeout_waker.ts`), and the main-thread
 * `setTimeout` + fine wait (`_fine_waker.ts`, the fallback and
 * `useTimerThread = false`). Import it from `core/clock.ts`.
 *
 * @module
 */
import type { Clock, Timer } from "./clock_types.ts";
import { sleepUntil, type TimerEntry, TimerHeap } from "./_timer_heap.ts";
import type { WakerHost } from "./_waker.ts";
import { ThreadWaker } from "./_thread_waker.ts";
import { TimeoutWaker } from "./_timeout_waker.ts";
import { FineWaker } from "./_fine_waker.ts";

/**
 * The timer thread starts with the first timer scheduled at most this many ms
 * ahead (the kind that paces media), or when {@linkcode RealClock.prepare} asks
 * for it (a session opened a socket). Starting it costs ~100 ms of CPU and
 * blocks the main thread once for tens of ms, so until then timers set further
 * ahead run in the main-thread mode: a process that only converts files (a WAV
 * header timer every second) never starts it.
 */
const THREAD_LEAD_MS = 250;

/** How the real-time scheduler is doing, from {@linkcode RealClock.schedulerStats}. */
export interface SchedulerStats {
  /** `thread` once the timer thread wakes the clock; `main` before it is ready, or without it. */
  mode: "thread" | "main";
  /** Main-thread mode: smoothed share of the wall time spent in the fine phase, 0..1. */
  duty: number;
  /** Main-thread mode: whether the fine wait spins (duty below `spinBudget`) rather than waits on a futex. */
  spinning: boolean;
  /** Main-thread mode: how long before a due time the `setTimeout` sleep ends, ms. */
  marginMs: number;
  /** Event-loop turns spent in the fine phase so far (0 unless the main-thread mode ran). */
  fineTurns: number;
  /** `setTimeout` wake-ups while the timer thread was starting. */
  coarseTurns: number;
}

/**
 * The real-time scheduler: one timer heap for the whole process, woken by one
 * timer thread, whatever the number of streams.
 *
 * **Timer thread (default).** A worker thread (`node:worker_threads`, created
 * on first use, ~50 ms) sleeps in `Atomics.wait` until the earliest due time
 * and posts a message; the main thread then runs every timer due, in order. The
 * main thread publishes the next few due times through shared memory, so the
 * thread goes on to the next without waiting for a round trip, and wakes the
 * main thread at most once per `coalesceMs` (0.3 ms: dense timers run in small
 * batches, instead of one cross-thread wake each). The main thread never
 * blocks and never spins: its event loop stays parked in the OS between
 * timers, so socket I/O is handled at once. The worker is `ref`ed while live
 * timers exist (like a pending `setTimeout`, it keeps the process alive),
 * `unref`ed when none are left; it lives as long as the clock. Creating it
 * blocks the main thread for 20–40 ms here (and ~100 ms of CPU), so it is
 * started when a session opens its first socket ({@linkcode RealClock.prepare})
 * or a timer is due within 250 ms, not for the far timers of a file-to-file run.
 * Until the worker has started, timers wake from
 * `setTimeout` alone (about 1 ms late, but the event loop parks between them, so
 * sockets are read at once); if it cannot be created, the main-thread mode below
 * is used.
 *
 * Why not on the main thread: `setTimeout(d)` fires after `ceil(d)` ms plus
 * 0.1–1.2 ms here (~2.1 ms for `d` < 1), so precision needs a fine wait after
 * it; spinning for it loses the CPU to contention (the kernel preempts a
 * CPU-bound thread for whole slices: with two CPU burners, p50 2.7 ms late),
 * and blocking for it (`Atomics.wait` slices between `setImmediate` turns)
 * keeps Deno's event loop from ever parking, and its I/O driver then polls
 * sockets only every 61st task (tokio's event interval): 200 streams sent and
 * received in one process saw 5.4 ms p50 receive latency that way (p99 11.6 ms),
 * a datagram every 5 ms under 200 dense timers 21 ms p50, against 0.03 ms (p99
 * 0.27 ms) with the timer thread. For a process that
 * only sends, the main-thread mode paces slightly better and costs less CPU
 * (measured: `bench/README.md`).
 *
 * **Main-thread mode** (fallback, or `useTimerThread = false` before first use):
 * 1. *Sleep*: a `setTimeout` wakes the scheduler a margin before the earliest
 *    due time; the margin is `spinMs` or the largest recent `setTimeout`
 *    overshoot (2.2..6 ms, halving every 10 s) plus 0.25 ms. A sleep of more
 *    than 100 ms waits without `setTimeout` until 50 ms before (so that a
 *    process whose only timer is far ahead, such as a file conversion's WAV
 *    header tick, does not load Deno's `node:timers`: ~9 ms at start-up).
 * 2. *Fine wait*: `Atomics.wait` slices of at most `sliceMs`, yielding to the
 *    event loop (`setImmediate`) between them; or, while the fine phase takes
 *    less than `spinBudget` of the wall time (default 0: never), a spin that
 *    re-checks the time on every event-loop turn.
 *
 * Callbacks run at or after their due time, never early, and every timer
 * already due runs in the same turn, in due order. Cancelling the last live
 * timer lets the scheduler go idle at once.
 *
 * @example
 * ```ts
 * const clock = new RealClock();
 * await clock.sleep(20); // about 20 ms later, never earlier
 * const timer = clock.after(1000, () => console.log("never"));
 * timer.cancel(); // nothing pending: the process may exit
 * ```
 */
export class RealClock implements Clock {
  /**
   * Main-thread mode: minimum margin in ms before a due time at which the
   * scheduler stops sleeping on `setTimeout` and starts the fine wait (the
   * actual margin grows with the `setTimeout` overshoot it observes).
   */
  spinMs: number;
  /** Main-thread mode: longest blocking wait in ms of the fine wait, between two event-loop turns. */
  sliceMs: number;
  /** Main-thread mode: largest fine-phase duty (share of one core, 0..1) at which the fine wait spins. */
  spinBudget: number;
  /** Use a timer thread (default true). Set before the first timer; false forces the main-thread mode. */
  useTimerThread = true;
  /**
   * Timer thread: minimum ms between two wakes of the main thread. Dense timers
   * (200 streams: one every 0.1 ms) are then run in batches, each at most this
   * late, instead of costing a cross-thread wake each. Default 0.3.
   */
  coalesceMs = 0.3;

  // Cancelling a live timer (a run one is marked cancelled by #runDue, so cancelling it calls nothing).
  readonly #heap = new TimerHeap(() => {
    if (--this.#live === 0) {
      this.#heap.clear(); // empty by now: cancelled timers leave the heap
      this.#arm();
    }
  });
  #live = 0; // timers neither run nor cancelled
  #reentry = 0; // inside at()
  readonly #host: WakerHost = {
    now: () => this.now(),
    nextDue: () => this.#heap.peekLive()?.due,
    runDue: (time) => this.#runDue(time),
  };
  #thread: ThreadWaker | undefined; // undefined until started
  readonly #coarse: TimeoutWaker;
  readonly #fine: FineWaker;

  /**
   * Creates a scheduler; its timer thread starts when {@linkcode RealClock.prepare} is called or a
   * timer is scheduled at most 250 ms ahead, whichever comes first.
   *
   * @param spinMs main-thread mode: minimum margin before a due time in which to wait precisely instead of
   *   sleeping on `setTimeout` (default 1.5 ms)
   * @param sliceMs main-thread mode: longest blocking wait between two event-loop turns (default 0.5 ms)
   * @param spinBudget main-thread mode: fine-phase duty below which the fine wait spins (default 0: never)
   */
  constructor(spinMs = 1.5, sliceMs = 0.5, spinBudget = 0) {
    this.spinMs = spinMs;
    this.sliceMs = sliceMs;
    this.spinBudget = spinBudget;
    this.#fine = new FineWaker(this.#host, this, () => this.#armMain());
    // The coarse wakes' setTimeout overshoot feeds the fine waker's margin too: both sleep on setTimeout.
    this.#coarse = new TimeoutWaker(this.#host, (over, now) => this.#fine.noteLate(over, now), () => this.#armMain());
  }

  /**
   * Starts the timer thread now, ahead of the timers that will need it:
   * starting it blocks the main thread once for tens of ms, which is better
   * before media flows than at its first packet. A session calls this when it
   * opens its first socket. No effect in the main-thread mode or once started.
   */
  prepare(): void {
    if (this.#thread === undefined && this.useTimerThread) this.#startThread();
  }

  /** `performance.now()`: monotonic milliseconds. */
  now(): number {
    return performance.now();
  }

  /**
   * Runs `fn` at `due` (at once if that is past), never before. Cancelling the
   * last live timer lets the scheduler go idle at once (a cancelled timer does
   * not keep the process alive until its due time).
   */
  at(due: number, fn: () => void): Timer {
    // A timer this close is what the thread is for: start it (far ones run in the main-thread mode meanwhile).
    if (this.#thread === undefined && this.useTimerThread && due - this.now() <= THREAD_LEAD_MS) this.#startThread();
    this.#reentry++;
    let t: TimerEntry;
    try {
      t = this.#heap.add(due, fn);
      this.#arm(due);
    } finally {
      this.#reentry--;
    }
    this.#live++;
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

  /**
   * How the scheduler is doing: the mode (`thread`, or `main` before the timer
   * thread is ready or without it), and for the main-thread mode the smoothed
   * fine-phase duty (0..1), whether the fine wait spins, the wake margin in ms,
   * the event-loop turns spent in the fine phase so far (`fineTurns`, 0 unless
   * the main-thread mode ran), and the `setTimeout` wake-ups while the timer
   * thread was starting (`coarseTurns`).
   */
  schedulerStats(): SchedulerStats {
    const now = this.now();
    return {
      mode: this.#thread?.state === "ready" ? "thread" : "main",
      duty: this.#fine.duty,
      spinning: this.#fine.duty < this.spinBudget,
      marginMs: this.#fine.margin(now),
      fineTurns: this.#fine.turns,
      coarseTurns: this.#coarse.turns,
    };
  }

  /** Timers not yet run (a cancelled timer leaves at once). */
  get pending(): number {
    return this.#heap.size;
  }

  /** Runs every timer due at or before `time`, in order, counting them off the live timers. */
  #runDue(time: number): number {
    let n = 0;
    for (;;) {
      const e = this.#heap.peek();
      if (!e || e.due > time) return n;
      this.#heap.pop();
      if (e.cancelled) continue;
      e.cancelled = true; // done: a later cancel() is a no-op
      this.#live--;
      n++;
      e.fn();
    }
  }

  /**
   * Makes sure the scheduler wakes for the earliest timer (timer thread, or a main-thread waker); `due` is the due
   * time of the timer just added, if that is why.
   */
  #arm(due?: number): void {
    if (this.#thread?.state === "ready") this.#thread.arm(due);
    else this.#armMain();
  }

  /** Arms the main-thread waker of the moment: `setTimeout` alone while the thread starts, else the fine waker. */
  #armMain(): void {
    if (this.#fine.active) return; // the fine phase looks at the heap on every turn
    if (this.#thread?.state === "starting") {
      // The timer thread is on its way (tens of ms): meanwhile wake from setTimeout alone, ~1 ms late, rather
      // than from the fine phase, which never lets the event loop park and so delays socket reads by tens of ms.
      this.#coarse.arm();
    } else {
      this.#fine.arm();
    }
  }

  #startThread(): void {
    // Assigned before the worker is created: Deno's worker constructor runs microtasks (which may schedule timers).
    const thread = new ThreadWaker({
      ...this.#host,
      reentrant: () => this.#reentry > 0,
      earliest: (max, out, frontier) => this.#heap.earliest(max, out, frontier),
      coalesceMs: () => this.coalesceMs,
      onReady: () => {
        // From now on the thread wakes us; retire the main-thread wakers.
        this.#coarse.disarm();
        this.#fine.stop();
      },
      onFailed: () => {
        this.#coarse.disarm();
        this.#armMain();
      },
    });
    this.#thread = thread;
    thread.start();
    if (thread.state === "starting" && this.#fine.active) {
      // A fine phase was running (far timers came due): the thread takes over once ready; meanwhile setTimeout
      // wakes us, never the busy fine phase.
      this.#fine.stop();
      this.#armMain();
    }
  }
}
