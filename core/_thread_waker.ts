/**
 * Private to the real clock: the timer-thread waker (the default). A worker
 * thread (`node:worker_threads`) sleeps in `Atomics.wait` until the earliest
 * due time and posts a message; the main thread then runs every timer due, in
 * order. The main thread never blocks and never spins: its event loop stays
 * parked in the OS between timers, so socket I/O is handled at once.
 *
 * @module
 */
import type { Worker } from "node:worker_threads";
import type { TimerEntry } from "./_timer_heap.ts";
import type { WakerHost } from "./_waker.ts";

/** Due times the main thread publishes to the timer thread, earliest first. */
const PUBLISHED = 8;

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
 * coalescing gap in ms (no two wakes closer than that); `f64[6..]` the list;
 * after it, the thread's time when it last fired (written before it posts).
 */
const TIMER_THREAD_SOURCE = `
const { parentPort, workerData } = require("node:worker_threads");
const N = ${PUBLISHED};
const i32 = new Int32Array(workerData, 0, 8);
const f64 = new Float64Array(workerData, 32, 3 + N);
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
    f64[2 + N] = now;
    // At most one message in flight: while the main thread has not handled the last one, it runs what
    // falls due meanwhile itself (it checks again after clearing the flag).
    if (Atomics.compareExchange(i32, 5, 0, 1) === 0) parentPort.postMessage(0);
    continue;
  }
  Atomics.wait(i32, 0, gen, lead);
}
`;

/** The clock's side of the timer-thread waker. */
export interface ThreadWakerHost extends WakerHost {
  /** True while the clock is inside `at()`: timers must not run re-entrantly then. */
  reentrant(): boolean;
  /** The due times of the earliest live timers, ascending and distinct, at most `max` (see TimerHeap.earliest). */
  earliest(max: number, out: number[], frontier: TimerEntry[]): number[];
  /** The coalescing gap in ms: no two wakes of the main thread closer than that. */
  coalesceMs(): number;
  /** The thread is up: from now on it wakes the clock (retire the main-thread wakers). */
  onReady(): void;
  /** The thread could not start or died: the clock falls back to the main thread. */
  onFailed(): void;
}

/** Wakes the main thread from a worker thread that sleeps until the earliest due time. */
export class ThreadWaker {
  /** `starting` until the thread's first message (tens of ms), then `ready`; `failed` if it cannot run. */
  state: "starting" | "ready" | "failed" = "starting";
  readonly #host: ThreadWakerHost;
  #worker: Worker | undefined;
  #shared: Int32Array | undefined;
  // [0] what the thread sleeps for, [1] the gap, [2..] the published due times, [2 + PUBLISHED] when it last fired
  #times: Float64Array | undefined;
  // How far ahead of the clock the thread's time has been seen to be, ms. Its time is `performance.timeOrigin +
  // performance.now()` as read in the thread, and threads disagree on it: a Deno Worker's timer thread was
  // measured 0.064 ms ahead of the worker. Due times go out shifted by it, so that the thread does not fire early.
  #ahead = 0;
  readonly #published: number[] = []; // the list last published, to skip identical rewrites
  #refed = false;
  #running = false; // inside runDue on a message from the thread
  #constructing = false; // inside the worker constructor
  readonly #frontier: TimerEntry[] = [];
  readonly #list: number[] = [];

  /** @param host the clock */
  constructor(host: ThreadWakerHost) {
    this.#host = host;
  }

  /**
   * Creates the worker. Creating it blocks the main thread for 20–40 ms here;
   * until its first message the clock wakes by other means.
   */
  start(): void {
    this.#constructing = true;
    try {
      const sab = new SharedArrayBuffer(32 + 8 * (3 + PUBLISHED));
      this.#shared = new Int32Array(sab, 0, 8);
      this.#times = new Float64Array(sab, 32, 3 + PUBLISHED);
      this.#times[0] = Infinity;
      this.#times[1] = this.#host.coalesceMs();
      // node:worker_threads is loaded here, on first use: a process that never starts the thread never pays for it.
      const { Worker } = process.getBuiltinModule("node:worker_threads") as typeof import("node:worker_threads");
      const w = new Worker(TIMER_THREAD_SOURCE, { eval: true, workerData: sab });
      w.unref();
      w.on("message", this.#onMessage);
      w.on("error", () => this.#failed());
      w.on("exit", () => this.#failed());
      this.#worker = w;
    } catch {
      this.state = "failed";
    } finally {
      this.#constructing = false;
    }
  }

  /**
   * Publishes the earliest due times to the thread, unless timers are running (then it publishes once at the end).
   * `due`, the due time of a timer just added: when the published list is full and that timer comes after all of
   * it, nothing the thread needs changes (it wakes for an earlier one first, and the main thread publishes again
   * after every wake), so nothing is published. Most timers are such: a call's 32 s transaction timers, its RTP
   * timeout, a recorder's header interval.
   */
  arm(due?: number): void {
    if (this.#running) return;
    const p = this.#published;
    if (due !== undefined && p.length === PUBLISHED && due > p[PUBLISHED - 1]) return;
    this.#publish();
  }

  #failed(): void {
    if (this.state === "failed") return;
    this.state = "failed";
    this.#worker = undefined;
    this.#host.onFailed();
  }

  #onMessage = (): void => {
    if (this.#constructing || this.#host.reentrant()) {
      // Delivered synchronously inside at() or the worker constructor: never run timers re-entrantly.
      setImmediate(this.#onMessage);
      return;
    }
    if (this.state === "starting") {
      this.state = "ready";
      this.#host.onReady();
    }
    const host = this.#host;
    let early = false;
    this.#running = true;
    try {
      // The thread last fired at this time of its own, before we read ours: if ours is still earlier, the
      // thread's clock is ahead of ours by at least the difference.
      const firedAt = this.#times![2 + PUBLISHED] - performance.timeOrigin;
      let now = host.now();
      if (firedAt - now > this.#ahead) this.#ahead = firedAt - now;
      const due = host.nextDue();
      if (due !== undefined && due <= now) host.runDue(now);
      // Woken with nothing due (early, or for a timer since cancelled): the thread has marked that time fired, so
      // it must be told to forget it, or it would never fire for the earliest timer again.
      else early = true;
      // Let the thread post again, then run whatever fell due while it could not.
      Atomics.store(this.#shared!, 5, 0);
      for (let i = 0; i < 100; i++) {
        now = host.now();
        const next = host.nextDue();
        if (next === undefined || next > now) break;
        host.runDue(now);
      }
    } finally {
      this.#running = false;
      this.#publish(early);
    }
  };

  /** Publishes the earliest due times to the timer thread (and refs it while any timer lives). */
  #publish(reset = false): void {
    const shared = this.#shared!;
    const times = this.#times!;
    const list = this.#host.earliest(PUBLISHED, this.#list, this.#frontier);
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
    if (list.length > 0 && list[0] <= this.#host.now()) reset = true;
    const prev = this.#published;
    let same = !reset && prev.length === list.length;
    for (let i = 0; same && i < list.length; i++) same = prev[i] === list[i];
    if (same) return;
    prev.length = list.length;
    for (let i = 0; i < list.length; i++) prev[i] = list[i];
    Atomics.add(shared, 0, 1); // odd: writing
    // +2 µs: the epoch-ms double has ~0.24 µs resolution; never wake before the due time.
    const shift = performance.timeOrigin + 0.002 + this.#ahead;
    for (let i = 0; i < list.length; i++) times[2 + i] = shift + list[i];
    Atomics.store(shared, 4, list.length);
    times[1] = this.#host.coalesceMs();
    if (reset) Atomics.store(shared, 3, 1);
    Atomics.add(shared, 0, 1); // even: done
    // Wake the thread only if it sleeps for something later than what is now first.
    if (reset || (list.length > 0 && shift + list[0] < times[0])) Atomics.notify(shared, 0);
  }
}
