/**
 * Private to the real clock: the setTimeout-only waker, used while the timer
 * thread starts. It wakes from one `setTimeout` at the earliest due time (about
 * 1 ms late) and never waits on the main thread, so the event loop parks
 * between timers and sockets are read at once.
 *
 * @module
 */
import type { WakerHost } from "./_waker.ts";

/** Wakes from `setTimeout` alone at the earliest due time; reports each wake-up's overshoot. */
export class TimeoutWaker {
  readonly #host: WakerHost;
  readonly #onLate: (overMs: number, now: number) => void;
  readonly #rearm: () => void;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #armedFor = Infinity; // the due time the timer was armed for
  #armedAt = 0; // when it was armed
  #armedDelay = 0; // the delay requested
  #turns = 0;

  /**
   * @param host the clock
   * @param onLate told how late each `setTimeout` fired (ms past the delay asked for)
   * @param rearm called after the due timers ran: the clock arms whichever waker is current
   */
  constructor(host: WakerHost, onLate: (overMs: number, now: number) => void, rearm: () => void) {
    this.#host = host;
    this.#onLate = onLate;
    this.#rearm = rearm;
  }

  /** Wake-ups so far (`coarseTurns` in the clock's statistics). */
  get turns(): number {
    return this.#turns;
  }

  /** Makes sure a `setTimeout` fires for the earliest timer (none when no timer is left). */
  arm(): void {
    const due = this.#host.nextDue();
    if (due === undefined) {
      this.disarm();
      return;
    }
    const now = this.#host.now();
    const delay = Math.max(0, Math.floor(due - now));
    if (this.#timer !== undefined && this.#armedFor <= due) return;
    this.disarm();
    this.#armedFor = due;
    this.#armedAt = now;
    this.#armedDelay = delay;
    this.#timer = setTimeout(this.#fire, delay);
  }

  /** Cancels the pending `setTimeout`, if any. */
  disarm(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#armedFor = Infinity;
  }

  #fire = (): void => {
    this.#timer = undefined;
    this.#armedFor = Infinity;
    const now = this.#host.now();
    this.#onLate(now - (this.#armedAt + this.#armedDelay), now);
    this.#turns++;
    this.#host.runDue(now);
    this.#rearm();
  };
}
