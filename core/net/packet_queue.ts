/**
 * {@linkcode PacketQueue}: the first-in, first-out queue of outgoing
 * datagrams that a `MediaLoop` socket and the `udp-sink` stage keep. It is
 * written so that a steady stream allocates nothing per packet: its columns are
 * parallel arrays that keep their storage when the queue empties (an array
 * emptied with `length = 0`, or replaced by `[]`, drops its storage and grows
 * it again on the next push), and the time column is a `Float64Array` (a
 * number in a plain array that also holds `undefined` is a heap object).
 *
 * @module
 */
import type { HostPort } from "./address.ts";

/**
 * A FIFO of datagrams: each entry is its bytes, its destination, one value of
 * type `X` (a send listener, say) and one number (a due time, say).
 *
 * @example
 * ```ts
 * const q = new PacketQueue<string>();
 * q.push(new Uint8Array([1]), { hostname: "127.0.0.1", port: 4000 }, "first", 20);
 * q.push(new Uint8Array([2]), { hostname: "127.0.0.1", port: 4000 }, "second", 40);
 * q.extra(0); // "first"
 * q.shift();
 * q.time(0); // 40
 * ```
 */
export class PacketQueue<X> {
  #data: (Uint8Array | undefined)[] = [];
  #to: (HostPort | undefined)[] = [];
  #extra: (X | undefined)[] = [];
  #time = new Float64Array(8);
  #head = 0;
  #tail = 0;

  /** Entries queued. */
  get length(): number {
    return this.#tail - this.#head;
  }

  /** Appends an entry. */
  push(data: Uint8Array, to: HostPort, extra: X, time = 0): void {
    if (this.#tail === this.#data.length && this.#head > 0 && this.#head * 2 >= this.#tail) this.#compact();
    const t = this.#tail++;
    this.#data[t] = data;
    this.#to[t] = to;
    this.#extra[t] = extra;
    if (t === this.#time.length) {
      const grown = new Float64Array(t * 2);
      grown.set(this.#time);
      this.#time = grown;
    }
    this.#time[t] = time;
  }

  /** The bytes of entry `i` (0 is the head; `i` below `length`). */
  data(i: number): Uint8Array {
    return this.#data[this.#head + i]!;
  }

  /** The destination of entry `i`. */
  to(i: number): HostPort {
    return this.#to[this.#head + i]!;
  }

  /** The value pushed with entry `i`. */
  extra(i: number): X {
    return this.#extra[this.#head + i] as X;
  }

  /** The number pushed with entry `i`. */
  time(i: number): number {
    return this.#time[this.#head + i];
  }

  /** The number pushed with the last entry (the queue is not empty). */
  lastTime(): number {
    return this.#time[this.#tail - 1];
  }

  /** Adds `ms` to the number of every entry (due times moved onto another timeline). */
  offsetTimes(ms: number): void {
    for (let i = this.#head; i < this.#tail; i++) this.#time[i] += ms;
  }

  /** Removes the head entry (the queue is not empty); drops the queue's references to it. */
  shift(): void {
    const h = this.#head;
    this.#data[h] = undefined;
    this.#to[h] = undefined;
    this.#extra[h] = undefined;
    if (++this.#head === this.#tail) this.#head = this.#tail = 0;
  }

  /** Removes every entry (the storage stays). */
  clear(): void {
    while (this.#head < this.#tail) this.shift();
    this.#head = this.#tail = 0;
  }

  /** Moves the entries to the front of the columns, so a full column grows only when the queue itself is long. */
  #compact(): void {
    const h = this.#head, t = this.#tail;
    this.#data.copyWithin(0, h, t).fill(undefined, t - h, t);
    this.#to.copyWithin(0, h, t).fill(undefined, t - h, t);
    this.#extra.copyWithin(0, h, t).fill(undefined, t - h, t);
    this.#time.copyWithin(0, h, t);
    this.#head = 0;
    this.#tail = t - h;
  }
}
