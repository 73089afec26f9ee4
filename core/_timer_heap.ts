/**
 * Private to the clocks: the timer heap both clocks keep their timers in, and
 * the promise form of a timer (`sleepUntil`) they share.
 *
 * @module
 */
import type { Timer } from "./clock_types.ts";

/** A timer in the heap. */
export interface TimerEntry extends Timer {
  /** The callback. */
  fn: () => void;
  /** Scheduling order: breaks ties between equal due times. */
  seq: number;
  /** Cancelled (or, for the real clock, already run). */
  cancelled: boolean;
  /** Position in the heap's array, -1 once popped. */
  index: number;
}

/** What a cancelled timer's callback becomes. */
const NOOP = (): void => {};

/**
 * A timer of a {@linkcode TimerHeap}: one object per timer, its `cancel` a
 * method (no closure per timer: a loop pacing 200 streams schedules 10 000 a
 * second).
 */
class Entry implements TimerEntry {
  due: number;
  fn: () => void;
  seq: number;
  cancelled = false;
  index = -1;
  readonly #heap: TimerHeap;

  constructor(heap: TimerHeap, due: number, fn: () => void, seq: number) {
    this.#heap = heap;
    this.due = due;
    this.fn = fn;
    this.seq = seq;
  }

  /** Marks it cancelled (it is discarded when it reaches the top); a no-op once cancelled or run. */
  cancel(): void {
    if (this.cancelled) return;
    this.cancelled = true;
    // A cancelled entry stays in the heap until it reaches the top (lazy deletion): drop its callback now, or
    // whatever that closes over (a call's whole pipeline, for a 10 s RTP timeout) would live until then.
    this.fn = NOOP;
    this.#heap.onCancel?.();
  }
}

/** Binary min-heap of timers ordered by (due, seq): equal due times run in scheduling order. */
export class TimerHeap {
  /** The heap array: `items[0]` is the earliest; entry `i`'s children are `2i+1` and `2i+2`. */
  items: TimerEntry[] = [];
  /** Called when a timer neither cancelled nor run is cancelled (a clock counts its live timers with it). */
  readonly onCancel: (() => void) | undefined;
  #seq = 0;

  /**
   * Creates an empty heap.
   * @param onCancel called when a live timer is cancelled; a timer's owner marks it `cancelled` when it runs it,
   *   so cancelling it afterwards calls nothing
   */
  constructor(onCancel?: () => void) {
    this.onCancel = onCancel;
  }

  /** Number of entries, cancelled ones included. */
  get size(): number {
    return this.items.length;
  }

  /** Adds a timer for `fn` at `due`; its `cancel()` marks it cancelled (it is discarded when it reaches the top). */
  add(due: number, fn: () => void): TimerEntry {
    const e = new Entry(this, due, fn, this.#seq++);
    this.#push(e);
    return e;
  }

  /** The earliest entry (possibly cancelled), without removing it. */
  peek(): TimerEntry | undefined {
    return this.items[0];
  }

  /** The earliest entry that is not cancelled, discarding cancelled ones above it. */
  peekLive(): TimerEntry | undefined {
    let e = this.items[0];
    while (e && e.cancelled) {
      this.pop();
      e = this.items[0];
    }
    return e;
  }

  /** Removes and returns the earliest entry. */
  pop(): TimerEntry | undefined {
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

  /** Drops every entry. */
  clear(): void {
    this.items.length = 0;
  }

  /**
   * The due times of the earliest live timers, ascending and distinct, at most
   * `max` of them, written into `out` (a best-first walk of the heap that visits
   * only the entries it needs).
   */
  earliest(max: number, out: number[], frontier: TimerEntry[]): number[] {
    this.peekLive();
    const items = this.items;
    // Written by index into the arrays given, not emptied and pushed to: emptying an array drops its storage, and
    // this runs on every timer scheduled.
    let n = 0;
    let f = 0;
    if (items.length > 0) frontier[f++] = items[0];
    while (f > 0 && n < max) {
      let m = 0;
      for (let i = 1; i < f; i++) if (frontier[i].due < frontier[m].due) m = i;
      const e = frontier[m];
      frontier[m] = frontier[--f];
      if (!e.cancelled && (n === 0 || out[n - 1] !== e.due)) out[n++] = e.due;
      const l = 2 * e.index + 1;
      if (l < items.length) frontier[f++] = items[l];
      if (l + 1 < items.length) frontier[f++] = items[l + 1];
    }
    if (out.length !== n) out.length = n;
    return out;
  }

  #less(a: TimerEntry, b: TimerEntry): boolean {
    return a.due < b.due || (a.due === b.due && a.seq < b.seq);
  }

  #push(e: TimerEntry): void {
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

/**
 * The promise form of a timer: resolves when `at(due, ...)` fires, rejects with
 * the signal's reason (and cancels the timer) when the signal aborts first.
 */
export function sleepUntil(
  at: (due: number, fn: () => void) => Timer,
  due: number,
  signal?: AbortSignal,
): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = () => {
      t.cancel();
      reject(signal!.reason);
    };
    const t = at(due, () => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    });
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
