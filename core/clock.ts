/**
 * The media clock: one scheduler for the whole process, drift-free pacing, and a
 * virtual clock for deterministic tests.
 *
 * Times are milliseconds as floating-point numbers on a monotonic timeline.
 *
 * @module
 */
import { setImmediate } from "node:timers";
import type { Worker } from "node:worker_threads";

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
  /**
   * Optional hint that precise real-time timers are coming (a session opened a socket): a clock
   * with a costly set-up (the {@linkcode RealClock}'s timer thread) does it now rather than at
   * the first timer.
   */
  prepare?(): void;
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

/** Due times the main thread publishes to the timer thread, earliest first. */
const PUBLISHED = 8;
/**
 * The timer thread starts with the first timer scheduled at most this many ms ahead (the kind
 * that paces media), or when {@linkcode RealClock.prepare} asks for it (a session opened a
 * socket). Starting it costs ~100 ms of CPU and blocks the main thread once for tens of ms, so
 * until then timers set further ahead run in the main-thread mode: a process that only converts
 * files (a WAV header timer every second) never starts it.
 */
const THREAD_LEAD_MS = 250;

/**
 * Source of the timer thread. The main thread publishes the next
 * {@linkcode PUBLISHED} due times (epoch ms on the `performance.timeOrigin`
 * timeline, so both threads agree to well under a microsecond) under a seqlock;
 * the thread sleeps in `Atomics.wait` until the earliest one it has not fired
 * yet, posts a message, and goes on to the next without waiting for the main
 * thread, so dense timers (200 streams: one every 0.1 ms) are not held up by a
 * round trip. Layout: `i32[0]` generation (odd while the main thread writes),
 * `i32[1]` 1 = exit, `i32[3]` 1 = forget what was fired, `i32[4]` count,
 * `i32[5]` 1 = a message is in flight (the thread posts at most one at a time);
 * `f64[4]` (byte 32) the due time the thread sleeps for; `f64[5]` the
 * coalescing gap in ms (no two wakes closer than that); `f64[6..]` the list.
 */
const TIMER_THREAD_SOURCE = `
const { parentPort, workerData } = require("node:worker_threads");
const N = ${PUBLISHED};
const i32 = new Int32Array(workerData, 0, 8);
const f64 = new Float64Array(workerData, 32, 2 + N);
const list = new Float64Array(N);
let fired = 0, firedAt = 0;
parentPort.postMessage(0);
for (;;) {
  if (Atomics.load(i32, 1) === 1) break;
  const gen = Atomics.load(i32, 0);
  if (gen & 1) continue;
  const n = Atomics.load(i32, 4);
  for (let i = 0; i < n; i++) list[i] = f64[2 + i];
  const gap = f64[1];
  if (Atomics.load(i32, 0) !== gen) continue;
  if (Atomics.exchange(i32, 3, 0) === 1) fired = 0;
  let target = 0;
  for (let i = 0; i < n; i++) if (list[i] > fired) { target = list[i]; break; }
  f64[0] = target > 0 ? target : Infinity;
  if (target === 0) { Atomics.wait(i32, 0, gen); continue; }
  const now = performance.timeOrigin + performance.now();
  const lead = Math.max(target, firedAt + gap) - now;
  if (lead <= 0) {
    fired = target; firedAt = now;
    // At most one message in flight: while the main thread has not handled the last one, it runs what
    // falls due meanwhile itself (it checks again after clearing the flag).
    if (Atomics.compareExchange(i32, 5, 0, 1) === 0) parentPort.postMessage(0);
    continue;
  }
  Atomics.wait(i32, 0, gen, lead);
}
`;

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
 * blocks the main thread for 20–40 ms here, so it is started right after the
 * clock is constructed (in a microtask, so `useTimerThread = false` can still be
 * set), not when the first stream needs it. Until the worker has started, timers wake from
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
 *    overshoot (2.2..6 ms, halving every 10 s) plus 0.25 ms.
 * 2. *Fine wait*: `Atomics.wait` slices of at most `sliceMs`, yielding to the
 *    event loop (`setImmediate`) between them; or, while the fine phase takes
 *    less than `spinBudget` of the wall time (default 0: never), a spin that
 *    re-checks the time on every event-loop turn.
 *
 * Callbacks run at or after their due time, never early, and every timer
 * already due runs in the same turn, in due order. Cancelling the last live
 * timer lets the scheduler go idle at once.
 */
export class RealClock extends HeapClock {
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
  #live = 0; // timers neither run nor cancelled

  // Timer thread.
  #worker: Worker | undefined;
  #workerState: "none" | "starting" | "ready" | "failed" = "none";
  #shared: Int32Array | undefined;
  #times: Float64Array | undefined; // [0] what the thread sleeps for, [1..] the published due times
  readonly #published: number[] = []; // the list last published, to skip identical rewrites
  #refed = false;
  #running = false; // inside runDue on a message from the thread
  #reentry = 0; // inside at() or the worker constructor
  readonly #pick: Entry[] = [];
  readonly #list: number[] = [];

  // Main-thread mode.
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
  #fineTurns = 0; // event-loop turns spent in the fine phase
  #coarseTurns = 0; // setTimeout wake-ups while the timer thread starts

  /**
   * Creates a scheduler; the timer thread starts when {@linkcode prepare} is called or a timer
   * is scheduled at most 250 ms ahead, whichever comes first.
   *
   * @param spinMs main-thread mode: minimum margin before a due time in which to wait precisely instead of
   *   sleeping on `setTimeout` (default 1.5 ms)
   * @param sliceMs main-thread mode: longest blocking wait between two event-loop turns (default 0.5 ms)
   * @param spinBudget main-thread mode: fine-phase duty below which the fine wait spins (default 0: never)
   */
  constructor(spinMs = 1.5, sliceMs = 0.5, spinBudget = 0) {
    super();
    this.spinMs = spinMs;
    this.sliceMs = sliceMs;
    this.spinBudget = spinBudget;
  }

  /**
   * Starts the timer thread now, ahead of the timers that will need it: starting it blocks the
   * main thread once for tens of ms, which is better before media flows than at its first
   * packet. A {@linkcode Session} calls this when it opens its first socket. No effect in the
   * main-thread mode or once started.
   */
  prepare(): void {
    if (this.#workerState === "none" && this.useTimerThread) this.#startWorker();
  }

  /** `performance.now()`: monotonic milliseconds. */
  now(): number {
    return performance.now();
  }

  /**
   * Schedules `fn` like every clock; besides, counts live timers so that
   * cancelling the last one lets the scheduler go idle at once (a cancelled
   * timer must not keep the process alive until its due time).
   */
  override at(due: number, fn: () => void): Timer {
    // A timer this close is what the thread is for: start it (far ones run in the main-thread mode meanwhile).
    if (this.#workerState === "none" && this.useTimerThread && due - this.now() <= THREAD_LEAD_MS) this.#startWorker();
    this.#reentry++;
    let t: Entry;
    try {
      t = super.at(due, fn) as Entry;
    } finally {
      this.#reentry--;
    }
    this.#live++;
    const cancel = t.cancel;
    t.cancel = () => {
      if (t.cancelled) return; // already cancelled, or already run (runDue marks it)
      cancel();
      if (--this.#live === 0) {
        this.heap.items.length = 0; // only cancelled entries are left
        this.arm();
      }
    };
    return t;
  }

  /** Runs every timer due at or before `time`, in order, counting them off the live timers. */
  protected override runDue(time: number): number {
    let n = 0;
    for (;;) {
      const e = this.heap.peek();
      if (!e || e.due > time) return n;
      this.heap.pop();
      if (e.cancelled) continue;
      e.cancelled = true; // done: a later cancel() is a no-op
      this.#live--;
      n++;
      e.fn();
    }
  }

  /**
   * How the scheduler is doing: the mode (`thread`, or `main` before the timer
   * thread is ready or without it), and for the main-thread mode the smoothed
   * fine-phase duty (0..1), whether the fine wait spins, the wake margin in ms,
   * the event-loop turns spent in the fine phase so far (`fineTurns`, 0 unless
   * the main-thread mode ran), and the `setTimeout` wake-ups while the timer
   * thread was starting (`coarseTurns`).
   */
  schedulerStats(): {
    mode: "thread" | "main";
    duty: number;
    spinning: boolean;
    marginMs: number;
    fineTurns: number;
    coarseTurns: number;
  } {
    const now = this.now();
    return {
      mode: this.#workerState === "ready" ? "thread" : "main",
      duty: this.#duty,
      spinning: this.#duty < this.spinBudget,
      marginMs: this.#margin(now),
      fineTurns: this.#fineTurns,
      coarseTurns: this.#coarseTurns,
    };
  }

  #peekLive(): Entry | undefined {
    let e = this.heap.peek();
    while (e && e.cancelled) {
      this.heap.pop();
      e = this.heap.peek();
    }
    return e;
  }

  /** Makes sure the scheduler wakes for the earliest timer (timer thread, or main-thread mode). */
  protected arm(): void {
    if (this.#workerState === "ready") {
      if (!this.#running) this.#armWorker(); // while timers run, publish once at the end
    } else this.#armMain();
  }

  // ---- timer thread ------------------------------------------------------------------------

  #startWorker(): void {
    // Set first: Deno's worker constructor runs microtasks and delivers worker messages while it runs.
    this.#workerState = "starting";
    this.#reentry++;
    try {
      const sab = new SharedArrayBuffer(32 + 8 * (2 + PUBLISHED));
      this.#shared = new Int32Array(sab, 0, 8);
      this.#times = new Float64Array(sab, 32, 2 + PUBLISHED);
      this.#times[0] = Infinity;
      this.#times[1] = this.coalesceMs;
      // node:worker_threads is loaded here, on first use: a process that never starts the thread never pays for it.
      const { Worker } = process.getBuiltinModule("node:worker_threads") as typeof import("node:worker_threads");
      const w = new Worker(TIMER_THREAD_SOURCE, { eval: true, workerData: sab });
      w.unref();
      w.on("message", this.#onWorkerMessage);
      w.on("error", () => this.#workerFailed());
      w.on("exit", () => this.#workerFailed());
      this.#worker = w;
    } catch {
      this.#workerState = "failed";
    } finally {
      this.#reentry--;
    }
  }

  #workerFailed(): void {
    if (this.#workerState === "failed") return;
    this.#workerState = "failed";
    this.#worker = undefined;
    this.#armMain();
  }

  #onWorkerMessage = (): void => {
    if (this.#reentry > 0) {
      // Delivered synchronously inside at() or the worker constructor: never run timers re-entrantly.
      setImmediate(this.#onWorkerMessage);
      return;
    }
    if (this.#workerState === "starting") {
      // From now on the thread wakes us; retire the main-thread timer and fine phase.
      this.#workerState = "ready";
      this.#disarm();
      this.#fine = false;
    }
    let early = false;
    this.#running = true;
    try {
      let now = this.now();
      const e = this.#peekLive();
      if (e && e.due <= now) this.runDue(now);
      else if (e && e.due < now + 0.05) early = true; // woken a hair early: have it fire again
      // Let the thread post again, then run whatever fell due while it could not.
      Atomics.store(this.#shared!, 5, 0);
      for (let i = 0; i < 100; i++) {
        now = this.now();
        const next = this.#peekLive();
        if (!next || next.due > now) break;
        this.runDue(now);
      }
    } finally {
      this.#running = false;
      this.#armWorker(early);
    }
  };

  /** Publishes the earliest due times to the timer thread (and refs it while any timer lives). */
  #armWorker(reset = false): void {
    const shared = this.#shared!;
    const times = this.#times!;
    const list = this.#earliest();
    if (list.length === 0) {
      if (this.#refed) {
        this.#worker?.unref();
        this.#refed = false;
      }
    } else {
      if (!this.#refed) {
        this.#worker?.ref();
        this.#refed = true;
      }
    }
    // A timer already due (scheduled in the past) may be earlier than what the thread last fired: have
    // the thread forget that, or it would skip it.
    if (list.length > 0 && list[0] <= this.now()) reset = true;
    const prev = this.#published;
    let same = !reset && prev.length === list.length;
    for (let i = 0; same && i < list.length; i++) same = prev[i] === list[i];
    if (same) return;
    prev.length = list.length;
    for (let i = 0; i < list.length; i++) prev[i] = list[i];
    Atomics.add(shared, 0, 1); // odd: writing
    for (let i = 0; i < list.length; i++) {
      // +2 µs: the epoch-ms double has ~0.24 µs resolution; never wake before the due time.
      times[2 + i] = performance.timeOrigin + list[i] + 0.002;
    }
    Atomics.store(shared, 4, list.length);
    times[1] = this.coalesceMs;
    if (reset) Atomics.store(shared, 3, 1);
    Atomics.add(shared, 0, 1); // even: done
    // Wake the thread only if it sleeps for something later than what is now first.
    if (reset || (list.length > 0 && performance.timeOrigin + list[0] < times[0])) Atomics.notify(shared, 0);
  }

  /** The due times of the earliest live timers (at most PUBLISHED, ascending, distinct). */
  #earliest(): number[] {
    this.#peekLive();
    const items = this.heap.items;
    const out = this.#list;
    out.length = 0;
    // Best-first walk of the heap: a frontier of candidates, smallest first.
    const frontier = this.#pick;
    frontier.length = 0;
    if (items.length > 0) frontier.push(items[0]);
    while (frontier.length > 0 && out.length < PUBLISHED) {
      let m = 0;
      for (let i = 1; i < frontier.length; i++) if (frontier[i].due < frontier[m].due) m = i;
      const e = frontier[m];
      frontier[m] = frontier[frontier.length - 1];
      frontier.length--;
      if (!e.cancelled && out[out.length - 1] !== e.due) out.push(e.due);
      const l = 2 * e.index + 1;
      if (l < items.length) frontier.push(items[l]);
      if (l + 1 < items.length) frontier.push(items[l + 1]);
    }
    return out;
  }

  // ---- main-thread mode --------------------------------------------------------------------

  /** The setTimeout overshoot estimate at `now`: a maximum that halves every LATE_HALF_LIFE_MS. */
  #late(now: number): number {
    const decayed = this.#lateMs * Math.pow(0.5, (now - this.#lateAt) / LATE_HALF_LIFE_MS);
    return Math.max(LATE_FLOOR_MS, decayed);
  }

  /** Margin before the earliest due time at which the sleep phase must have ended. */
  #margin(now: number): number {
    return Math.max(this.spinMs, this.#late(now) + 0.25);
  }

  #armMain(): void {
    if (this.#fine) return; // the fine phase looks at the heap on every turn
    const e = this.#peekLive();
    if (!e) {
      this.#disarm();
      return;
    }
    const now = this.now();
    if (this.#workerState === "starting") {
      // The timer thread is on its way (tens of ms): meanwhile wake from setTimeout alone, ~1 ms late, rather
      // than from the fine phase, which never lets the event loop park and so delays socket reads by tens of ms.
      const delay = Math.max(0, Math.floor(e.due - now));
      if (this.#timer !== undefined && this.#armedFor <= e.due) return;
      this.#disarm();
      this.#armedFor = e.due;
      this.#armedAt = now;
      this.#armedDelay = delay;
      this.#timer = setTimeout(this.#onTimeout, delay);
      return;
    }
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
    if (this.#workerState === "ready") return;
    const now = this.now();
    const over = now - (this.#armedAt + this.#armedDelay);
    // Up at once (bounded: a longer stall is the OS not running us, no margin fixes that cheaply), down slowly.
    if (over > this.#late(now)) {
      this.#lateMs = Math.min(LATE_CAP_MS, over);
      this.#lateAt = now;
    }
    if (this.#fine) return; // already running
    if (this.#workerState === "starting") {
      this.#coarseTurns++;
      this.runDue(now);
      this.#armMain();
      return;
    }
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
    this.#fineTurns++;
    let now = this.now();
    if (this.#workerState === "ready" || this.#workerState === "starting") {
      // The thread takes over (once ready; meanwhile setTimeout wakes us, never this busy phase).
      this.#leaveFine(now);
      if (this.#workerState === "starting") this.#armMain();
      return;
    }
    const e = this.#peekLive();
    if (!e) {
      this.#leaveFine(now);
      return;
    }
    let lead = e.due - now;
    if (lead >= this.#margin(now) + 1) {
      this.#leaveFine(now);
      this.#armMain();
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

  /**
   * Creates a virtual clock standing at `start`.
   * @param start the initial time in ms (default 0)
   */
  constructor(start = 0) {
    super();
    this.#now = start;
  }

  /** The virtual time in ms: moves only through {@linkcode advance} and {@linkcode advanceAsync}. */
  now(): number {
    return this.#now;
  }

  /** Nothing to arm: timers run when time is advanced. */
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

let processClock: Clock | undefined;

/** The process-wide real-time media clock, shared by every pipeline and session. */
export function mediaClock(): Clock {
  return processClock ??= new RealClock();
}

/** How the process media clock wakes up: from a timer thread (default) or on the main thread. */
export type SchedulerMode = "thread" | "main";

/**
 * Chooses how the process media clock wakes up, before it is first used. `thread` (the default) keeps the main
 * thread free for socket reads (best for duplex calls); `main` paces a send-only process more tightly (measured at
 * 200 streams: p99 1.7 ms vs 2.5–3.0 ms, see bench/README.md) but, while timers are dense, delays its own socket reads by tens of milliseconds (its event loop never parks).
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
