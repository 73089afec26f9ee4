/**
 * The frame loop shared by the file sources (`wav-source`, `file-source`): cuts
 * interleaved 16-bit PCM into frames of a fixed duration, stamps pts in samples,
 * honours backpressure and stops promptly when the pipeline stops.
 *
 * @module
 */
import type { PcmFrame } from "../../core/frame.ts";
import type { RunContext } from "../../core/stage.ts";

/** Produces the samples of successive frames. */
export interface PcmChunkReader {
  /**
   * Returns the next frame's interleaved samples (a fresh array the caller may
   * keep, unless the reader was made to reuse its memory: then valid until the
   * next call), shorter than requested only at the end of the stream, or null
   * at the end.
   */
  next(): Int16Array | null | Promise<Int16Array | null>;
}

/** Counters kept by {@linkcode emitPcmFrames}. */
export interface PcmEmitCounters {
  /** Frames emitted. */
  frames: number;
  /** Samples per channel emitted. */
  samples: number;
}

/**
 * Frames between two yields to the event loop when nothing else (file reads,
 * backpressure) gives other tasks a turn: a source reading from memory into a
 * sink that never pushes back would otherwise never let `stop()` run.
 * `setImmediate` costs ~3 µs here; `setTimeout(0)` costs ~2 ms.
 */
const YIELD_EVERY = 32;
/**
 * {@linkcode emitPcmFrames} yields at most this often (ms of wall time), checked every
 * {@linkcode YIELD_EVERY} frames: the event loop waits about as long between turns as it did
 * with a yield per 32 frames of a transcode (~1–2 ms), for a few hundred turns a second at most.
 */
const YIELD_MS = 2;

/**
 * Event-loop turns without Deno's `setImmediate`, whose first use loads its Node-compatible
 * `node:timers` (~9 ms of a transcode's start-up): a message to itself over a channel held while
 * a source runs (each message is a task of its own, after the I/O and timers already due), about
 * 25 µs a turn. {@linkcode LoopTurns.close} when the run ends.
 */
class LoopTurns {
  #channel: MessageChannel | undefined;
  #resolve: (() => void) | undefined;

  /** Resolves on a later turn of the event loop. */
  next(): Promise<void> {
    let ch = this.#channel;
    if (!ch) {
      ch = this.#channel = new MessageChannel();
      ch.port1.onmessage = () => {
        const r = this.#resolve;
        this.#resolve = undefined;
        r?.();
      };
    }
    const port = ch.port2;
    return new Promise<void>((resolve) => {
      this.#resolve = resolve;
      port.postMessage(null);
    });
  }

  /** Closes the channel (an open one keeps the process alive). */
  close(): void {
    this.#channel?.port1.close();
    this.#channel?.port2.close();
    this.#channel = undefined;
    const r = this.#resolve;
    this.#resolve = undefined;
    r?.();
  }
}

/** Lets other tasks (timers, sockets, stop requests) run. */
export function yieldToEventLoop(): Promise<void> {
  return new Promise<void>((resolve) => setImmediate(resolve));
}

/**
 * Number of samples per channel in a frame of `frameMs` at `sampleRate`
 * (rounded, at least 1).
 *
 * @example
 * ```ts
 * frameSamples(8000, 20); // 160
 * frameSamples(44100, 20); // 882
 * ```
 */
export function frameSamples(sampleRate: number, frameMs: number): number {
  return Math.max(1, Math.round((sampleRate * frameMs) / 1000));
}

/**
 * Emits every chunk of `reader` as a pcm frame until the reader ends or
 * `ctx.signal` aborts. pts counts samples per channel from 0.
 *
 * @example
 * ```ts
 * const counters = { frames: 0, samples: 0 };
 * await emitPcmFrames(ctx, { sampleRate: 8000, channels: 1 }, reader, counters);
 * ```
 */
export async function emitPcmFrames(
  ctx: RunContext,
  format: { sampleRate: number; channels: number },
  reader: PcmChunkReader,
  counters: PcmEmitCounters,
): Promise<void> {
  const { sampleRate, channels } = format;
  let pts = 0;
  let sinceYield = 0;
  let yielded = performance.now();
  const turns = new LoopTurns();
  try {
    while (!ctx.signal.aborted) {
      let chunk = reader.next();
      if (chunk instanceof Promise) chunk = await chunk;
      if (!chunk || chunk.length === 0 || ctx.signal.aborted) return;
      const n = chunk.length / channels;
      const frame: PcmFrame = { kind: "pcm", samples: chunk, sampleRate, channels, pts };
      pts += n;
      counters.frames++;
      counters.samples += n;
      if (!ctx.emit(frame)) {
        await ctx.ready();
        sinceYield = 0;
        yielded = performance.now();
      } else if (++sinceYield >= YIELD_EVERY) {
        sinceYield = 0;
        const now = performance.now();
        if (now - yielded >= YIELD_MS) {
          await turns.next();
          yielded = performance.now();
        }
      }
    }
  } finally {
    turns.close();
  }
}

/**
 * Reads frames out of interleaved samples held in memory, optionally looping
 * forever (frames stay full-sized across the loop point).
 *
 * @example
 * ```ts
 * const r = new MemoryPcmReader(new Int16Array(400), 1, 160, false);
 * r.next()!.length; // 160, then 160, then 80, then null
 * ```
 */
export class MemoryPcmReader implements PcmChunkReader {
  readonly #samples: Int16Array;
  readonly #frameLen: number;
  readonly #loop: boolean;
  readonly #shared: boolean;
  #pos = 0;
  /** Times the reader went back to the start. */
  loops = 0;

  /**
   * Reads from samples already in memory.
   *
   * @param samples interleaved samples
   * @param channels channel count
   * @param frameSamples samples per channel per frame
   * @param loop restart at the beginning when the end is reached
   * @param shared the samples are shared with other readers (a decoded file kept for the next chain): each frame is
   *   then a copy, which its caller may keep or modify without changing what the others read
   */
  constructor(samples: Int16Array, channels: number, frameSamples: number, loop: boolean, shared = false) {
    this.#samples = samples;
    this.#shared = shared;
    this.#frameLen = frameSamples * channels;
    this.#loop = loop && samples.length > 0;
  }

  /** The next frame's samples, or null at the end. */
  next(): Int16Array | null {
    const src = this.#samples;
    if (!this.#loop) {
      if (this.#pos >= src.length) return null;
      // Each region is handed out once: a view, no copy (the caller may keep or modify it), unless other readers
      // read the same samples.
      const end = this.#pos + this.#frameLen;
      const out = this.#shared ? src.slice(this.#pos, end) : src.subarray(this.#pos, end);
      this.#pos += out.length;
      return out;
    }
    const out = new Int16Array(this.#frameLen);
    let filled = 0;
    while (filled < out.length) {
      if (this.#pos >= src.length) {
        this.#pos = 0;
        this.loops++;
      }
      const take = Math.min(out.length - filled, src.length - this.#pos);
      out.set(src.subarray(this.#pos, this.#pos + take), filled);
      filled += take;
      this.#pos += take;
    }
    return out;
  }
}
