/**
 * One drift-free periodic timer on a clock, shared by every call of a bridge
 * (never a timer per call): tick `n` is due at `start + n × period`. A tick
 * that falls late runs at once and the next ones catch up; after a stall of
 * more than `maxCatchUp` periods the missed ticks are skipped (counted), and
 * the tick number still advances by them, so what listeners derive from it
 * (a stream's timestamps) stays on real time.
 *
 * @module
 */
import type { Clock, Timer } from "../../core/clock.ts";

/** A tick listener: `n` is the tick number, `now` the clock's time, `late` how long after its due time it runs. */
export type TickListener = (n: number, now: number, late: number) => void;

/** See the module documentation. */
export class Ticker {
  readonly #clock: Clock;
  readonly #period: number;
  readonly #maxCatchUp: number;
  readonly #listeners = new Set<TickListener>();
  #timer: Timer | undefined;
  #start = 0;
  #n = 0;
  /** Ticks skipped after stalls. */
  skipped = 0;
  /** Listeners that threw (the error is reported to `onError`). */
  errors = 0;
  /** Where a listener's error goes. */
  onError: (e: unknown) => void = () => {};

  /**
   * Creates a stopped ticker.
   * @param clock the clock it runs on
   * @param periodMs the period
   * @param maxCatchUp late ticks run back to back at most; beyond, skipped
   */
  constructor(clock: Clock, periodMs: number, maxCatchUp = 5) {
    this.#clock = clock;
    this.#period = periodMs;
    this.#maxCatchUp = maxCatchUp;
  }

  /** The period, ms. */
  get periodMs(): number {
    return this.#period;
  }

  /** The number the next tick will have. */
  get next(): number {
    return this.#n;
  }

  /** Adds a listener (the ticker runs while it has any); returns the function that removes it. */
  add(fn: TickListener): () => void {
    this.#listeners.add(fn);
    if (!this.#timer) {
      this.#start = this.#clock.now() - this.#n * this.#period;
      this.#schedule();
    }
    return () => {
      this.#listeners.delete(fn);
      if (this.#listeners.size === 0) this.stop();
    };
  }

  /** Stops (listeners stay registered only if added again). */
  stop(): void {
    this.#timer?.cancel();
    this.#timer = undefined;
  }

  #schedule(): void {
    this.#timer = this.#clock.at(this.#start + this.#n * this.#period, () => this.#fire());
  }

  #fire(): void {
    this.#timer = undefined;
    const now = this.#clock.now();
    const behind = Math.floor((now - this.#start) / this.#period) - this.#n;
    if (behind > this.#maxCatchUp) {
      this.skipped += behind;
      this.#n += behind;
    }
    const n = this.#n++;
    const late = Math.max(0, now - (this.#start + n * this.#period));
    for (const fn of [...this.#listeners]) {
      try {
        fn(n, now, late);
      } catch (e) {
        this.errors++;
        this.onError(e);
      }
    }
    if (this.#listeners.size > 0) this.#schedule();
  }
}
