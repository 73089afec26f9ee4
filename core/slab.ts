/**
 * Cheap typed arrays for frames: views carved out of 64 KiB slabs, handed out once each.
 *
 * A typed array bigger than a few dozen bytes gets its own zero-filled backing store from the
 * system allocator, which V8 must then track and free: at 50 frames per second per stage and
 * stream that was a measurable share of a file transcode (~1 µs per array here). A view into a
 * slab costs only the view object. Views are never reused or overwritten: each one belongs to
 * the frame it was taken for, for as long as anyone holds it (a slab is freed by the garbage
 * collector once none of its views is referenced), so a stage may emit them like fresh arrays.
 *
 * A stage whose next stage borrows its input (`StageContext.reuseOutput`) takes its frames' arrays
 * from {@linkcode ReusedArrays} instead: one buffer per element type, overwritten frame after frame.
 *
 * @example
 * ```ts
 * const slab = new Slab();
 * const samples = slab.int16(160); // a zeroed Int16Array of 160 samples, yours to keep
 * const payload = slab.uint8(160);
 * ```
 *
 * @module
 */

/** Bytes per slab. */
const SLAB_BYTES = 64 * 1024;
/** Arrays larger than this get their own buffer (a slab would mostly be wasted on them). */
const LARGEST = SLAB_BYTES / 4;

/**
 * Hands out zeroed typed arrays from shared 64 KiB buffers; one per producer (stage), never
 * shared between threads.
 */
export class Slab {
  #buf = new ArrayBuffer(0);
  #at = 0;

  /** `bytes` bytes at an offset aligned to `align`, from the current slab or a new one. */
  #take(bytes: number, align: number): [ArrayBuffer, number] {
    if (bytes > LARGEST) return [new ArrayBuffer(bytes), 0];
    let at = (this.#at + align - 1) & ~(align - 1);
    if (at + bytes > this.#buf.byteLength) {
      this.#buf = new ArrayBuffer(SLAB_BYTES);
      at = 0;
    }
    this.#at = at + bytes;
    return [this.#buf, at];
  }

  /** A zeroed Int16Array of `length` samples. */
  int16(length: number): Int16Array {
    const [buf, at] = this.#take(length * 2, 2);
    return new Int16Array(buf, at, length);
  }

  /** A zeroed Uint8Array of `length` bytes. */
  uint8(length: number): Uint8Array {
    const [buf, at] = this.#take(length, 1);
    return new Uint8Array(buf, at, length);
  }
}

/**
 * Arrays handed out again and again, for a stage whose next stage borrows its input
 * (`StageContext.reuseOutput`): one buffer per element type, grown when a longer array is asked
 * for. An array is valid until the next call for the same type, and holds what the last frame
 * left in it (not zeros). Asking for a length asked for lately returns the same view (no allocation).
 *
 * @example
 * ```ts
 * const reused = new ReusedArrays();
 * const a = reused.int16(160);
 * reused.int16(160) === a; // true: write the next frame into it once the last one was emitted
 * ```
 */
export class ReusedArrays {
  #i16 = new ReusedBuffer((n) => new Int16Array(n));
  #u8 = new ReusedBuffer((n) => new Uint8Array(n));

  /** An Int16Array of `length` samples, in this object's one Int16 buffer. */
  int16(length: number): Int16Array {
    return this.#i16.view(length);
  }

  /** A Uint8Array of `length` bytes, in this object's one byte buffer. */
  uint8(length: number): Uint8Array {
    return this.#u8.view(length);
  }
}

/** Views a {@linkcode ReusedArrays} keeps per element type. */
const KEPT_VIEWS = 4;

/** One growing buffer and the views of it handed out lately, by length (a few: a resampled stream's frames alternate). */
class ReusedBuffer<T extends { readonly length: number; subarray(begin: number, end: number): T }> {
  readonly #make: (length: number) => T;
  #buf: T;
  #views: T[] = [];

  constructor(make: (length: number) => T) {
    this.#make = make;
    this.#buf = make(0);
  }

  view(length: number): T {
    const views = this.#views;
    for (let i = 0; i < views.length; i++) if (views[i].length === length) return views[i];
    if (this.#buf.length < length) {
      this.#buf = this.#make(Math.max(length, 2 * this.#buf.length));
      views.length = 0; // views of the old buffer are not handed out again
    }
    if (views.length === KEPT_VIEWS) views.shift();
    const v = this.#buf.subarray(0, length);
    views.push(v);
    return v;
  }
}
