/**
 * Private to the real clock: the main-thread waker (the clock's fallback, or
 * `useTimerThread = false`).
 *
 * 1. *Sleep*: a `setTimeout` wakes it a margin before the earliest due time;
 *    the margin is `spinMs` or the largest recent `setTimeout` overshoot
 *    (2.2..6 ms, halving every 10 s) plus 0.25 ms. A sleep longer than
 *    `FAR_MS` first waits without `setTimeout`: `Atomics.waitAsync` with a
 *    timeout, ending `FAR_SLACK_MS` early, while an open `MessagePort` keeps
 *    the process alive as a pending `setTimeout` would; then it re-arms. Deno's
 *    `setTimeout` loads its Node-compatible `node:timers` on first use (~9 ms),
 *    and a process whose only timer is far ahead (a file conversion's WAV
 *    header tick, due in a second, cancelled when the file ends) then never
 *    pays for it.
 * 2. *Fine wait*: `Atomics.wait` slices of at most `sliceMs`, yielding to the
 *    event loop (`setImmediate`) between them; or, while the fine phase takes
 *    less than `spinBudget` of the wall time (default 0: never), a spin that
 *    re-checks the time on every event-loop turn.
 *
 * @module
 */
import type { WakerHost } from "./_waker.ts";

/** Smallest setTimeout overshoot assumed, ms: `setTimeout(d)` fires after ceil(d) + 0.1..1.2 ms here (2.1 for d < 1). */
const LATE_FLOOR_MS = 2.2;
/** Largest setTimeout overshoot the margin follows, ms (beyond: the process was not scheduled). */
const LATE_CAP_MS = 6;
/** Half-life of the overshoot estimate, ms. */
const LATE_HALF_LIFE_MS = 10_000;
/** Length of the window over which the fine-phase duty is measured, ms. */
const DUTY_WINDOW_MS = 1000;
/** Sleeps longer than this (ms) start with the far sleep (see the module documentation). */
const FAR_MS = 100;
/** The far sleep ends this long (ms) before the sleep phase must end; `setTimeout` takes the rest. */
const FAR_SLACK_MS = 50;

/** The tuning the fine waker reads from its clock on every use (the clock's public fields). */
export interface FineWakerOptions {
  /** Minimum margin in ms before a due time at which the sleep phase ends. */
  readonly spinMs: number;
  /** Longest blocking wait in ms of the fine wait, between two event-loop turns. */
  readonly sliceMs: number;
  /** Largest fine-phase duty (share of one core, 0..1) at which the fine wait spins. */
  readonly spinBudget: number;
}

/** Sleeps on `setTimeout` until shortly before the earliest due time, then waits precisely on the main thread. */
export class FineWaker {
  readonly #host: WakerHost;
  readonly #opts: FineWakerOptions;
  readonly #rearm: () => void;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #far: MessageChannel | undefined; // held open while a far sleep is pending (it keeps the process alive)
  #farGen = 0; // a far sleep's wake-up counts only while this is the generation it was armed with
  readonly #farCell = new Int32Array(new SharedArrayBuffer(4));
  #armedFor = Infinity; // wake time the timer (or the far sleep) was armed for
  #armedAt = 0; // when it was armed
  #armedDelay = 0; // the delay requested
  #active = false; // the fine phase is running (a setImmediate is pending or we are inside it)
  #lateMs = LATE_FLOOR_MS; // decaying maximum of setTimeout overshoot, ms
  #lateAt = 0; // when #lateMs was last raised
  #fineSince = 0; // when the current fine phase began (or was last accounted)
  #activeMs = 0; // fine-phase time in the current duty window
  #windowStart = 0;
  #duty = 0; // smoothed fine-phase duty, 0..1
  readonly #cell = new Int32Array(new SharedArrayBuffer(4));
  #turns = 0; // event-loop turns spent in the fine phase

  /**
   * @param host the clock
   * @param opts the clock's tuning, read on every use
   * @param rearm called when the fine phase ends with timers left: the clock arms whichever waker is current
   */
  constructor(host: WakerHost, opts: FineWakerOptions, rearm: () => void) {
    this.#host = host;
    this.#opts = opts;
    this.#rearm = rearm;
  }

  /** True while the fine phase runs (it looks at the timers on every turn: nothing to arm). */
  get active(): boolean {
    return this.#active;
  }

  /** Event-loop turns spent in the fine phase so far (`fineTurns`). */
  get turns(): number {
    return this.#turns;
  }

  /** Smoothed fine-phase duty, 0..1. */
  get duty(): number {
    return this.#duty;
  }

  /** Margin before the earliest due time at which the sleep phase must have ended. */
  margin(now: number): number {
    return Math.max(this.#opts.spinMs, this.#late(now) + 0.25);
  }

  /** Takes a `setTimeout` overshoot into the estimate: up at once (bounded), down slowly. */
  noteLate(overMs: number, now: number): void {
    // A longer stall than the cap is the OS not running us: no margin fixes that cheaply.
    if (overMs > this.#late(now)) {
      this.#lateMs = Math.min(LATE_CAP_MS, overMs);
      this.#lateAt = now;
    }
  }

  /** Makes sure the waker wakes for the earliest timer: a `setTimeout` before it, or the fine phase when it is near. */
  arm(): void {
    if (this.#active) return;
    const due = this.#host.nextDue();
    if (due === undefined) {
      this.disarm();
      return;
    }
    const now = this.#host.now();
    const margin = this.margin(now);
    const lead = due - now;
    if (lead < margin + 1) {
      // Too close for setTimeout (it cannot wake sooner than ~1.1 ms from now).
      this.disarm();
      this.#enter(now);
      setImmediate(this.#step);
      return;
    }
    const wake = due - margin;
    if ((this.#timer !== undefined || this.#far !== undefined) && this.#armedFor <= wake) return;
    this.disarm();
    const delay = Math.floor(wake - now);
    if (delay > FAR_MS) {
      this.#sleepFar(wake - FAR_SLACK_MS, now);
      return;
    }
    this.#armedFor = wake;
    this.#armedAt = now;
    this.#armedDelay = delay;
    this.#timer = setTimeout(this.#onTimeout, delay);
  }

  /** Cancels the pending `setTimeout` or far sleep, if any. */
  disarm(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#far !== undefined) {
      this.#farGen++;
      Atomics.notify(this.#farCell, 0);
      this.#closeFar();
    }
    this.#armedFor = Infinity;
  }

  #closeFar(): void {
    this.#far?.port1.close();
    this.#far?.port2.close();
    this.#far = undefined;
  }

  /** Waits until `until` without `setTimeout`, then re-arms (see the module documentation). */
  #sleepFar(until: number, now: number): void {
    const gen = ++this.#farGen;
    // A listening port of an open channel holds the event loop, as a pending setTimeout does (both ends must stay
    // open: closing one releases the other).
    const channel = new MessageChannel();
    channel.port1.onmessage = () => {};
    this.#far = channel;
    this.#armedFor = until;
    const woke = () => {
      if (gen !== this.#farGen) return; // cancelled, or replaced by another sleep
      this.#closeFar();
      this.#armedFor = Infinity;
      this.arm();
    };
    const w = Atomics.waitAsync(this.#farCell, 0, 0, Math.max(1, until - now));
    if (w.async) w.value.then(woke);
    else queueMicrotask(woke);
  }

  /** Retires the waker (the timer thread took over): no timeout, and the fine phase stops at its next turn. */
  stop(): void {
    this.disarm();
    this.#active = false;
  }

  /** The setTimeout overshoot estimate at `now`: a maximum that halves every LATE_HALF_LIFE_MS. */
  #late(now: number): number {
    const decayed = this.#lateMs * Math.pow(0.5, (now - this.#lateAt) / LATE_HALF_LIFE_MS);
    return Math.max(LATE_FLOOR_MS, decayed);
  }

  #onTimeout = (): void => {
    this.#timer = undefined;
    this.#armedFor = Infinity;
    const now = this.#host.now();
    this.noteLate(now - (this.#armedAt + this.#armedDelay), now);
    if (this.#active) return; // already running
    this.#enter(now);
    this.#step();
  };

  #enter(now: number): void {
    this.#active = true;
    this.#fineSince = now;
  }

  #leave(now: number): void {
    this.#active = false;
    this.#activeMs += now - this.#fineSince;
    this.#roll(now);
  }

  /** Closes the duty window once a second: duty = fine-phase time / window length, smoothed. */
  #roll(now: number): void {
    const len = now - this.#windowStart;
    if (len < DUTY_WINDOW_MS) return;
    if (this.#active) {
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
  #step = (): void => {
    if (!this.#active) return;
    this.#turns++;
    let now = this.#host.now();
    const due = this.#host.nextDue();
    if (due === undefined) {
      this.#leave(now);
      return;
    }
    let lead = due - now;
    if (lead >= this.margin(now) + 1) {
      this.#leave(now);
      this.#rearm();
      return;
    }
    this.#roll(now);
    if (lead > 0 && this.#duty >= this.#opts.spinBudget) {
      Atomics.wait(this.#cell, 0, 0, Math.min(lead, this.#opts.sliceMs));
      now = this.#host.now();
      lead = due - now;
    }
    try {
      if (lead <= 0) this.#host.runDue(now);
    } finally {
      // Continue on the next turn, so I/O callbacks run between checks.
      setImmediate(this.#step);
    }
  };
}
