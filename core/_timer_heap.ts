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

  /** Marks it cancelled and takes it out of the heap; a no-op once cancelled or run. */
  cancel(): void {
    if (this.cancelled) return;
    this.cancelled = true;
    // Drop the callback: whatever it closes over (a call's whole pipeline, for a 10 s RTP timeout) must not live on
    // through a reference someone keeps to the timer.
    this.fn = NOOP;
    // Removed at once (O(log n)) rather than left until it reaches the top: a SIP server cancels most of its timers
    // (retransmissions answered, guards passed), and cancelled entries near the top made every walk of the earliest
    // timers (TimerHeap.earliest, run for each timer scheduled) step over them: 6 % of a call's main-thread time.
    if (this.index >= 0) this.#heap.remove(this);
    this.#heap.onCancel?.();
  }
}

/**
 * Binary min-heap of timers ordered by (due, seq): equal due times run in scheduling order. A cancelled timer leaves
 * the heap at once; an entry marked `cancelled` by its owner without `cancel()` (a clock marks a timer it has popped to
 * run) is skipped where it is found.
 */
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

  /** Number of entries (a timer cancelled through `cancel()` is no longer one). */
  get size(): number {
    return this.items.length;
  }

  /** Adds a timer for `fn` at `due`; its `cancel()` marks it cancelled and removes it. */
  add(due: number, fn: () => void): TimerEntry {
    const e = new Entry(this, due, fn, this.#seq++);
    this.#push(e);
    return e;
  }

  /** The earliest entry (possibly cancelled), without removing it. */
  peek(): TimerEntry | undefined {
    return this.items[0];
  }

  /** The earliest entry that is not cancelled, discarding entries marked cancelled above it. */
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

  /** Takes `e` out of the heap (it must be in it: `e.index >= 0`). */
  remove(e: TimerEntry): void {
    const a = this.items;
    const i = e.index;
    const last = a.pop()!;
    e.index = -1;
    if (last === e) return;
    a[i] = last;
    last.index = i;
    // The entry moved in from the end may belong above or below position i.
    if (i > 0 && this.#less(last, a[(i - 1) >> 1])) this.#up(i);
    else this.#down(i);
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
    e.index = a.length - 1;
    this.#up(e.index);
  }

  #up(i: number): void {
    const a = this.items;
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
