/**
 * Block-parallel resampling: one stream resampled on several threads, for chains that run faster than real time (a
 * file transcoded to a file), with output identical, bit for bit, to one {@linkcode PolyphaseResampler}'s.
 *
 * How it works:
 *
 * - **Blocks.** The input is cut into blocks of `block` frames. A block is resampled on its own by a fresh resampler
 *   fed `prefix` frames before it (enough to fill every filter's history) and `lookahead` frames after it (enough for
 *   its last output to be made); of what comes out, the outputs that fall inside the block are kept. The filters are
 *   FIR filters, so the history is all the state a resampler has, and the prefix rebuilds it exactly.
 * - **Alignment.** Every block starts, and every prefix is long, a whole number of `period`s: the input length after
 *   which all the plan's stages are back at the same phase (44.1 → 8 kHz: 1 764 frames, 40 ms). A fresh resampler
 *   fed from there is then in the very state the single one would be in, and computes the same floats in the same
 *   order. A plan whose period exceeds a quarter of a second of input (an unusual ratio such as 44 100 → 7 999 Hz,
 *   whose period is a second) is not cut: {@linkcode blockLayout} says so and the stage stays on one thread.
 * - **Threads.** Blocks go to worker threads (`_block_worker.ts`, started at the stream's first whole block) through
 *   slots of one `SharedArrayBuffer`: the input is copied in, the worker writes the kept output beside it. A block
 *   that finds no free slot is resampled on the calling thread. Outputs leave in order. When too many blocks wait,
 *   the calling thread takes back (steals) the oldest if no worker has started it, else the newest no worker has
 *   started (leaving the workers some), and only then waits for the one a worker is on. A block a worker fails, or
 *   takes more than 10 s over, is resampled by the calling thread, and no more blocks go to the workers. So a worker
 *   that is late, still starting, or gone costs time, never output.
 * - **Cost.** The prefix and look-ahead are resampled twice: ~2.5 % more work at 44.1 → 8 kHz with 2 s blocks. The
 *   output of a block leaves once the block and its look-ahead have arrived, and the blocks before it are done: this
 *   is for chains with no real-time stage, which the `resampler` stage checks.
 *
 * @example
 * ```ts
 * const r = new BlockResampler({ inRate: 44100, outRate: 8000, inChannels: 1, outChannels: 1, workers: 1 });
 * const out: Int16Array[] = [];
 * r.process(new Int16Array(441000), (o) => out.push(o.slice())); // 10 s in; blocks out as they are ready
 * r.flush((o) => out.push(o.slice())); // the rest: 80 000 samples in all
 * r.close();
 * ```
 *
 * @module
 */
import {
  FILTER_SPECS,
  type FilterSpec,
  gcd,
  OFFLINE_PASS_FRAMES,
  type Plan,
  planResampler,
  PolyphaseResampler,
} from "./polyphase.ts";

/** How a stream is cut into blocks (all in input frames). */
export interface BlockLayout {
  /** Input frames after which every stage of the plan is back at the same phase. */
  period: number;
  /** Frames resampled before a block to rebuild the filters' history: a multiple of `period`. */
  prefix: number;
  /** Frames resampled after a block so that its last output is made. */
  lookahead: number;
  /** Frames per block: a multiple of `period`. */
  block: number;
  /** Output frames per input frame, exactly: outRate / inRate. */
  ratio: number;
}

/**
 * The longest period cut into blocks, in seconds of input: each block's prefix is at least a period, resampled
 * twice, so a longer one would cost more than a thread gains.
 */
const MAX_PERIOD_SECONDS = 0.25;
/** Block length aimed at, in seconds of input. */
export const BLOCK_SECONDS = 2;

/**
 * The block layout for `plan` from `inRate` to `outRate`, or undefined when its period is longer than a quarter of
 * a second of input (the stream then stays on one thread).
 *
 * @example
 * ```ts
 * blockLayout(planResampler(44100, 8000), 44100, 8000)?.period; // 1764
 * ```
 */
export function blockLayout(
  plan: Plan,
  inRate: number,
  outRate: number,
  blockSeconds = BLOCK_SECONDS,
): BlockLayout | undefined {
  // Stage i sees num/den of the input's frames; it must see a whole number of its M (its phase period) per period.
  let num = 1, den = 1, period = 1, history = 0;
  for (const s of plan.stages) {
    const need = (s.M * den) / gcd(s.M * den, num);
    period = (period / gcd(period, need)) * need;
    if (period > MAX_PERIOD_SECONDS * inRate) return undefined;
    // The stage's span in input frames (its taps, at its input's rate), rounded up.
    history += Math.ceil((s.taps * den) / num);
    const g = gcd(num * s.L, den * s.M);
    [num, den] = [(num * s.L) / g, (den * s.M) / g];
  }
  const prefix = Math.ceil((history + 16) / period) * period;
  const lookahead = Math.ceil(plan.latency * inRate) + period + 16;
  // At least the prefix: the input kept for the next block is then always within what is held.
  const block = Math.max(1, Math.round((blockSeconds * inRate) / period), prefix / period) * period;
  return { period, prefix, lookahead, block, ratio: outRate / inRate };
}

/**
 * Resamples `input` (interleaved, from a block's prefix start) with `r` from a reset, and writes into `out` the
 * output frames from `skip` on: `count` of them, or, when `last` (the stream ends with this input), all that the
 * flush makes. Returns the frames written. Throws when fewer than `count` are made (a look-ahead too short: a bug).
 */
export function resampleBlock(
  r: PolyphaseResampler,
  input: Int16Array,
  skip: number,
  count: number,
  last: boolean,
  out: Int16Array,
): number {
  const ch = r.outChannels;
  r.reset();
  const a = r.process(input);
  const made = a.length / ch;
  if (!last) {
    if (made < skip + count) {
      throw new Error(`resampler block: ${made} output frames made, ${skip + count} needed (look-ahead too short)`);
    }
    out.set(a.subarray(skip * ch, (skip + count) * ch));
    return count;
  }
  let n = 0;
  if (made > skip) {
    out.set(a.subarray(skip * ch), 0);
    n = made - skip;
  }
  const tail = r.flush();
  const t = tail.length / ch;
  const from = Math.max(0, skip - made);
  if (t > from) {
    out.set(tail.subarray(from * ch), n * ch);
    n += t - from;
  }
  return n;
}

// The shared control words: a header, then one record per slot.
/** Header: set to 1 to make the workers leave. */
export const W_QUIT = 0;
/** Header: bumped at each submission; workers wait on it. */
export const W_WORK = 1;
/** Words of the header. */
export const HEADER_WORDS = 4;
/** Slot record: state (one of the S_ values). */
export const R_STATE = 0;
/** Slot record: order of the block in the stream. */
export const R_SEQ = 1;
/** Slot record: input frames. */
export const R_IN = 2;
/** Slot record: output frames to skip. */
export const R_SKIP = 3;
/** Slot record: output frames to keep (ignored when last). */
export const R_COUNT = 4;
/** Slot record: 1 when the stream ends with this block. */
export const R_LAST = 5;
/** Slot record: output frames written (set by the worker). */
export const R_MADE = 6;
/** Words of a slot record. */
export const RECORD_WORDS = 8;

/** The index, in the control words, of word `word` (an R_ value) of slot `slot`'s record. */
export function recordIndex(slot: number, word: number): number {
  return HEADER_WORDS + slot * RECORD_WORDS + word;
}

/** The control words of a shared buffer with `slots` slots (they start it). */
export function controlWords(sab: SharedArrayBuffer, slots: number): Int32Array {
  return new Int32Array(sab, 0, HEADER_WORDS + slots * RECORD_WORDS);
}

/** Slot states. */
export const S_FREE = 0, S_SUBMITTED = 1, S_WORKING = 2, S_DONE = 3, S_FAILED = 4, S_STOLEN = 5;

/** Where a slot's input and output lie in the shared buffer, in bytes. */
export interface SlotLayout {
  /** Byte offset of the slot's input (int16, `inFrames` × inChannels). */
  input: number;
  /** Input frames the slot holds at most. */
  inFrames: number;
  /** Byte offset of the slot's output (int16, `outFrames` × outChannels). */
  output: number;
  /** Output frames the slot holds at most. */
  outFrames: number;
}

/** What a worker is sent once, to start. */
export interface BlockWorkerInit {
  /** The shared buffer: control words, then the slots' data. */
  sab: SharedArrayBuffer;
  /** Slots, in order of their records. */
  slots: SlotLayout[];
  /** The resampler's configuration (filter included). */
  inRate: number;
  /** See `inRate`. */
  outRate: number;
  /** See `inRate`. */
  inChannels: number;
  /** See `inRate`. */
  outChannels: number;
  /** See `inRate`. */
  filter: FilterSpec;
}

/** Options of a {@linkcode BlockResampler}. */
export interface BlockResamplerOptions {
  /** Input rate, Hz. */
  inRate: number;
  /** Output rate, Hz. */
  outRate: number;
  /** Interleaved input channels. */
  inChannels: number;
  /** Output channels (as {@linkcode PolyphaseResampler} maps them). */
  outChannels: number;
  /** Filter; default medium. */
  filter?: FilterSpec;
  /** Worker threads, 1 or more. */
  workers: number;
  /** Block length in seconds of input (default {@linkcode BLOCK_SECONDS}); rounded to whole periods. */
  blockSeconds?: number;
  /**
   * False: never take a submitted block back, wait for a worker to do it (tests use it to make the workers do every
   * block they are given). Default true.
   */
  steal?: boolean;
  /** Called once when a worker fails a block or cannot start (its error); the calling thread does its blocks. */
  onWorkerError?: (message: string) => void;
  /**
   * How long the calling thread waits for a block a worker has started before it gives the workers up and resamples
   * the block itself, ms. Default 10 000. (Tests that make the worker do its blocks set it longer than any load.)
   */
  stallMs?: number;
  /** The workers' module: default `_block_worker.ts` (tests give one that fails, to see the blocks done anyway). */
  workerUrl?: URL;
}

/** Blocks done, by where. */
export interface BlockCounts {
  /** Resampled by a worker. */
  worker: number;
  /** Resampled on the calling thread: found no free slot. */
  local: number;
  /** Taken back from a slot no worker had started, or that a worker failed. */
  stolen: number;
}

/** A block waiting to leave: in a slot, or made on the calling thread. */
type Pending = { slot: number; seq: number } | { out: Int16Array; seq: number; buf: Int16Array };

/** Slots per worker: one it works on, and blocks waiting for it. */
const SLOTS_PER_WORKER = 3;
/** How long the calling thread waits for a started block before resampling it itself, ms (`stallMs`). */
const STALL_MS = 10_000;

/**
 * A streaming resampler that spreads a stream's blocks over worker threads (see the module documentation). It
 * exists only where {@linkcode blockLayout} cuts the plan: check {@linkcode BlockResampler.layoutFor} first.
 */
export class BlockResampler {
  /** The block layout. */
  readonly layout: BlockLayout;
  /** The plan (the same as a {@linkcode PolyphaseResampler}'s with these options). */
  readonly plan: Plan;
  readonly #inCh: number;
  readonly #outCh: number;
  readonly #local: PolyphaseResampler;
  readonly #steal: boolean;
  readonly #stallMs: number;
  readonly #onWorkerError?: (message: string) => void;
  readonly #ctrl: Int32Array;
  readonly #slots: { input: Int16Array; output: Int16Array }[];
  readonly #workers: Worker[] = [];
  readonly #init: BlockWorkerInit;
  readonly #workerCount: number;
  readonly #workerUrl: URL;
  /** Input held: frames from `#bufStart`, `#have` of them. */
  #buf: Int16Array;
  #have = 0;
  #bufStart = 0;
  #blockStart = 0;
  #seq = 0;
  #queue: Pending[] = [];
  /** What `out` is given from a worker's slot. */
  #outBuf = new Int16Array(0);
  /** Arrays of blocks resampled here, sent out and free again. */
  #spare: Int16Array[] = [];
  /** Output samples of a whole block (what a block resampled here needs, but the stream's last). */
  readonly #blockOut: number;
  #workersDead = false;
  #closed = false;
  /** Blocks done, by where. */
  readonly counts: BlockCounts = { worker: 0, local: 0, stolen: 0 };

  /** The layout a stream with these options would be cut by, or undefined when it is not cut (see blockLayout). */
  static layoutFor(o: Omit<BlockResamplerOptions, "workers">): BlockLayout | undefined {
    return blockLayout(planResampler(o.inRate, o.outRate, o.filter ?? FILTER_SPECS.medium), o.inRate, o.outRate);
  }

  /**
   * @param o rates, channels, filter and workers
   * @throws RangeError when the plan cannot be cut into blocks (check {@linkcode BlockResampler.layoutFor}), or for
   *   what {@linkcode PolyphaseResampler} refuses
   */
  constructor(o: BlockResamplerOptions) {
    const filter = o.filter ?? FILTER_SPECS.medium;
    // Its output is copied at once: one array of its own, overwritten call after call, makes no garbage. Blocks are
    // for chains that run faster than real time: the larger passes.
    this.#local = new PolyphaseResampler({ ...o, filter, reuseOutput: true, passFrames: OFFLINE_PASS_FRAMES });
    this.plan = this.#local.plan;
    const layout = blockLayout(this.plan, o.inRate, o.outRate, o.blockSeconds);
    if (!layout) throw new RangeError(`resampler: ${o.inRate} → ${o.outRate} Hz cannot be cut into blocks`);
    if (!(Number.isInteger(o.workers) && o.workers >= 1)) throw new RangeError("BlockResampler: workers must be ≥ 1");
    this.layout = layout;
    this.#inCh = o.inChannels;
    this.#outCh = o.outChannels;
    this.#steal = o.steal !== false;
    this.#stallMs = o.stallMs ?? STALL_MS;
    this.#onWorkerError = o.onWorkerError;
    const inFrames = layout.prefix + layout.block + layout.lookahead;
    const outFrames = Math.ceil(inFrames * layout.ratio) + 8;
    this.#buf = new Int16Array((inFrames + layout.block) * this.#inCh);
    this.#blockOut = Math.round(layout.block * layout.ratio) * this.#outCh;

    const nSlots = SLOTS_PER_WORKER * o.workers;
    const align = (n: number) => Math.ceil(n / 16) * 16;
    let at = align((HEADER_WORDS + nSlots * RECORD_WORDS) * 4);
    const slots: SlotLayout[] = [];
    for (let i = 0; i < nSlots; i++) {
      const input = at;
      at = align(at + inFrames * this.#inCh * 2);
      const output = at;
      at = align(at + outFrames * this.#outCh * 2);
      slots.push({ input, inFrames, output, outFrames });
    }
    const sab = new SharedArrayBuffer(at);
    this.#ctrl = controlWords(sab, nSlots);
    this.#slots = slots.map((s) => ({
      input: new Int16Array(sab, s.input, s.inFrames * this.#inCh),
      output: new Int16Array(sab, s.output, s.outFrames * this.#outCh),
    }));
    this.#init = {
      sab,
      slots,
      inRate: o.inRate,
      outRate: o.outRate,
      inChannels: o.inChannels,
      outChannels: o.outChannels,
      filter,
    };
    this.#workerCount = o.workers;
    this.#workerUrl = o.workerUrl ?? new URL("./_block_worker.ts", import.meta.url);
  }

  /**
   * Starts the workers: at the stream's first whole block, so that a stream shorter than a block (or a stage built
   * and never run) costs no thread. Creating one holds this thread ~25–45 ms here (Deno makes its runtime meanwhile).
   */
  #startWorkers(): void {
    for (let i = 0; i < this.#workerCount; i++) {
      const w = new Worker(this.#workerUrl, { type: "module" });
      w.onerror = (e) => {
        e.preventDefault();
        this.#workerFailed(e.message ?? String(e));
      };
      w.postMessage(this.#init);
      this.#workers.push(w);
    }
  }

  /** Output channels. */
  get outChannels(): number {
    return this.#outCh;
  }

  /** What resamples: the kernel and its stages (see {@linkcode PolyphaseResampler.describe}). */
  get describe(): string {
    return this.#local.describe;
  }

  /**
   * Takes interleaved input; calls `out` with each block's output, in order, as blocks are done. The array is valid
   * only during the call (one buffer of this object's, overwritten by the next block): copy what you keep.
   */
  process(samples: Int16Array, out: (samples: Int16Array) => void): void {
    if (this.#closed) throw new Error("BlockResampler: closed");
    const ch = this.#inCh;
    const frames = samples.length / ch;
    if (!Number.isInteger(frames)) {
      throw new RangeError(`BlockResampler: ${samples.length} samples is not a whole number of ${ch}-channel frames`);
    }
    const { block, lookahead, prefix } = this.layout;
    let at = 0;
    while (at < frames) {
      const room = this.#buf.length / ch - this.#have;
      const n = Math.min(room, frames - at);
      this.#buf.set(samples.subarray(at * ch, (at + n) * ch), this.#have * ch);
      this.#have += n;
      at += n;
      // A block is ready once it and its look-ahead are in.
      while (this.#have >= this.#blockStart - this.#bufStart + block + lookahead) {
        const head = this.#blockStart - this.#bufStart;
        this.#dispatch(this.#buf.subarray(0, (head + block + lookahead) * ch), head, block, false, out);
        // Keep the next block's prefix and what follows.
        this.#blockStart += block;
        const keepFrom = this.#blockStart - prefix - this.#bufStart;
        this.#buf.copyWithin(0, keepFrom * ch, this.#have * ch);
        this.#have -= keepFrom;
        this.#bufStart += keepFrom;
      }
    }
  }

  /** Ends the stream: sends out every block's output, then the tail, in order; the next input starts a new stream. */
  flush(out: (samples: Int16Array) => void): void {
    if (this.#closed) throw new Error("BlockResampler: closed");
    const head = this.#blockStart - this.#bufStart;
    if (this.#have > head || this.#blockStart > 0) {
      this.#dispatch(this.#buf.subarray(0, this.#have * this.#inCh), head, 0, true, out);
    }
    this.#drain(out, 0);
    this.#have = this.#bufStart = this.#blockStart = 0;
  }

  /** Stops the workers. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    Atomics.store(this.#ctrl, W_QUIT, 1);
    Atomics.add(this.#ctrl, W_WORK, 1);
    Atomics.notify(this.#ctrl, W_WORK);
    for (const w of this.#workers) w.terminate();
    this.#workers.length = 0;
  }

  #workerFailed(message: string): void {
    if (this.#workersDead) return;
    this.#workersDead = true;
    this.#onWorkerError?.(message);
  }

  /** Sends a block to a free slot, or resamples it here; then sends out what is done. */
  #dispatch(input: Int16Array, skip: number, count: number, last: boolean, out: (s: Int16Array) => void): void {
    const ratio = this.layout.ratio;
    const outSkip = Math.round(skip * ratio), outCount = Math.round(count * ratio);
    const seq = this.#seq++;
    if (!last && this.#workers.length === 0 && !this.#workersDead) this.#startWorkers();
    const slot = this.#workersDead || this.#workers.length === 0 ? -1 : this.#freeSlot();
    if (slot >= 0) {
      const c = this.#ctrl;
      this.#slots[slot].input.set(input);
      c[recordIndex(slot, R_SEQ)] = seq;
      c[recordIndex(slot, R_IN)] = input.length / this.#inCh;
      c[recordIndex(slot, R_SKIP)] = outSkip;
      c[recordIndex(slot, R_COUNT)] = outCount;
      c[recordIndex(slot, R_LAST)] = last ? 1 : 0;
      Atomics.store(c, recordIndex(slot, R_STATE), S_SUBMITTED);
      Atomics.add(c, W_WORK, 1);
      Atomics.notify(c, W_WORK, 1);
      this.#queue.push({ slot, seq });
    } else {
      this.#queue.push({ ...this.#resampleHere(input, outSkip, outCount, last), seq });
      this.counts.local++;
    }
    this.#drain(out, this.#slots.length + 3);
  }

  /** A copy of `a` in `#outBuf` (grown when too short). */
  #copyOut(a: Int16Array): Int16Array {
    if (this.#outBuf.length < a.length) this.#outBuf = new Int16Array(Math.max(a.length, 2 * this.#outBuf.length));
    const o = this.#outBuf.subarray(0, a.length);
    o.set(a);
    return o;
  }

  #freeSlot(): number {
    for (let i = 0; i < this.#slots.length; i++) {
      if (Atomics.load(this.#ctrl, recordIndex(i, R_STATE)) === S_FREE) return i;
    }
    return -1;
  }

  /** Resamples a block here, into a spare array (or a new one); returns the output and that array. */
  #resampleHere(input: Int16Array, skip: number, count: number, last: boolean): { out: Int16Array; buf: Int16Array } {
    const size = (last ? Math.ceil((input.length / this.#inCh) * this.layout.ratio) + 8 : count) * this.#outCh;
    let buf = this.#spare.pop();
    if (!buf || buf.length < size) buf = new Int16Array(Math.max(size, this.#blockOut));
    const n = resampleBlock(this.#local, input, skip, count, last, buf);
    return { out: buf.subarray(0, n * this.#outCh), buf };
  }

  /** Resamples here the block in `slot` (a worker never started it, or failed it). */
  #takeBack(slot: number): { out: Int16Array; buf: Int16Array } {
    const c = this.#ctrl;
    const inFrames = c[recordIndex(slot, R_IN)];
    const input = this.#slots[slot].input.subarray(0, inFrames * this.#inCh);
    this.counts.stolen++;
    return this.#resampleHere(
      input,
      c[recordIndex(slot, R_SKIP)],
      c[recordIndex(slot, R_COUNT)],
      c[recordIndex(slot, R_LAST)] === 1,
    );
  }

  /**
   * Sends out the blocks that are done, in order, while the queue is longer than `keep`: then a block not done is
   * taken back (the newest submitted first, so that the workers keep the oldest) or waited for.
   */
  #drain(out: (s: Int16Array) => void, keep: number): void {
    const c = this.#ctrl;
    while (this.#queue.length > 0) {
      const head = this.#queue[0];
      if ("out" in head) {
        this.#queue.shift();
        if (head.out.length > 0) out(head.out);
        this.#spare.push(head.buf);
        continue;
      }
      const st = recordIndex(head.slot, R_STATE);
      const state = Atomics.load(c, st);
      if (state === S_DONE) {
        this.#queue.shift();
        const made = c[recordIndex(head.slot, R_MADE)];
        this.counts.worker++;
        // Copied out, so that the slot is free at once and `out` never sees shared memory (which some I/O refuses).
        const o = made > 0 ? this.#copyOut(this.#slots[head.slot].output.subarray(0, made * this.#outCh)) : undefined;
        Atomics.store(c, st, S_FREE);
        if (o) out(o);
        continue;
      }
      if (state === S_FAILED) {
        this.#workerFailed("a worker could not resample a block");
        this.#queue[0] = { ...this.#takeBack(head.slot), seq: head.seq };
        Atomics.store(c, st, S_FREE);
        continue;
      }
      if (this.#queue.length <= keep) return;
      // The head is submitted or being resampled, and too much waits behind it.
      if (state === S_SUBMITTED && (this.#steal || this.#workersDead)) {
        // No worker has started it: do it here.
        if (Atomics.compareExchange(c, st, S_SUBMITTED, S_STOLEN) === S_SUBMITTED) {
          this.#queue[0] = { ...this.#takeBack(head.slot), seq: head.seq };
          Atomics.store(c, st, S_FREE);
        }
        continue;
      }
      // A worker is on it. Rather than wait, do the newest submitted block here, if that leaves one for the workers
      // (at the end of the stream, any).
      if (this.#steal && this.#stealNewest(keep === 0 ? 1 : 2)) continue;
      // Wait; do it here if the worker stalls.
      if (Atomics.wait(c, st, state, this.#stallMs) === "timed-out" && Atomics.load(c, st) === state) {
        this.#workerFailed(`a worker took more than ${this.#stallMs / 1000} s over a block`);
        // The worker may still write its output: the slot is left to it, never used again.
        this.#queue[0] = { ...this.#takeBack(head.slot), seq: head.seq };
      }
    }
  }

  /**
   * Takes back the newest submitted block behind the head when at least `least` submitted blocks wait behind it;
   * true when one was.
   */
  #stealNewest(least: number): boolean {
    const c = this.#ctrl;
    let submitted = 0;
    for (let i = 1; i < this.#queue.length; i++) {
      const p = this.#queue[i];
      if (!("out" in p) && Atomics.load(c, recordIndex(p.slot, R_STATE)) === S_SUBMITTED) submitted++;
    }
    if (submitted < least) return false;
    for (let i = this.#queue.length - 1; i > 0; i--) {
      const p = this.#queue[i];
      if ("out" in p) continue;
      const st = recordIndex(p.slot, R_STATE);
      if (Atomics.compareExchange(c, st, S_SUBMITTED, S_STOLEN) === S_SUBMITTED) {
        this.#queue[i] = { ...this.#takeBack(p.slot), seq: p.seq };
        Atomics.store(c, st, S_FREE);
        return true;
      }
    }
    return false;
  }
}
