/**
 * The `resampler` stage: pcm at any rate and channel count → pcm at the configured rate,
 * streaming. By default through voxpipe's own polyphase windowed-sinc kernel (WebAssembly SIMD,
 * `polyphase.ts`); libsamplerate stays available as the `lsr-*` qualities, loaded only when asked for.
 *
 * @example Pipeline config: 44.1 kHz stereo music to telephone audio
 * ```json
 * { "use": "resampler", "rate": 8000, "channels": 1 }
 * ```
 *
 * @module
 */
import { type Format, formatToString, type Frame, type PcmFrame } from "../../core/frame.ts";
import { expectFormat, type FormatCheck, frameRefusal } from "../../core/format_check.ts";
import { type Emit, FormatError, type StageContext, type TransformStage } from "../../core/stage.ts";
import {
  ACCEPTS,
  autoThreads,
  MAX_RATE,
  MIN_RATE,
  NAME,
  type ResampleQuality,
  resampler,
  type ResamplerOptions,
  resamplerSchema,
} from "./plugins.ts";
import { defaultKernel, FILTER_SPECS, OFFLINE_PASS_FRAMES, PolyphaseResampler } from "./polyphase.ts";
import type { BlockCounts, BlockResampler } from "./blocks.ts";
import { Slab } from "../../core/slab.ts";
import type { LsrConverter, LsrQuality } from "./_lsr.ts";
import { lazyModule } from "../../core/lazy.ts";

/** Modules loaded when first used (see `lazyModule`). */
const lsrModule = lazyModule<typeof import("./_lsr.ts")>(new URL("./_lsr.ts", import.meta.url));
const blocksModule = lazyModule<typeof import("./blocks.ts")>(new URL("./blocks.ts", import.meta.url));

/** Statistics of a `resampler` stage. */
export interface ResamplerStats {
  /** Input sample rate in use (0 until known). */
  input_rate: number;
  /** Output sample rate. */
  output_rate: number;
  /** Frames received. */
  frames_in: number;
  /** Frames emitted. */
  frames_out: number;
  /** Sample frames (per channel) received. */
  samples_in: number;
  /** Sample frames (per channel) emitted. */
  samples_out: number;
  /** What converts (kernel, stages, taps), once the input rate is known; "" for a pass-through. */
  converter: string;
  /**
   * Look-ahead of the converter in ms: how long after an input sample its output can be made (output pts are exact).
   * With `threads` > 1, a block and its look-ahead.
   */
  latency_ms: number;
  /** With `threads` > 1: blocks resampled by the worker threads, and on the chain's thread. */
  blocks?: BlockCounts;
}

/** How the stage maps input channels to output channels. */
interface Layout {
  inRate: number;
  inCh: number;
  outCh: number;
}

/** What the stage needs of a converter (the polyphase kernel or libsamplerate). */
interface RateConverter {
  process(samples: Int16Array): Int16Array;
  flush(): Int16Array;
  close(): void;
  readonly describe: string;
  readonly latency: number;
}

/** Checks the rate and channels of a pcm input; returns why it cannot be taken, with what to change. */
function refusal(input: Format, outCh: number | undefined): string | undefined {
  const r = input.sampleRate;
  if (r !== undefined && !(Number.isInteger(r) && r >= MIN_RATE && r <= MAX_RATE)) {
    return `${NAME} takes input rates of ${MIN_RATE}..${MAX_RATE} Hz, but gets ${formatToString(input)}`;
  }
  const c = input.channels;
  if (c !== undefined && outCh !== undefined && c !== outCh && outCh !== 1 && c !== 1) {
    return `${NAME} cannot map ${c} channels to ${outCh}: set "channels" to 1 (down-mix) or ${c} (keep)`;
  }
  return undefined;
}

/** Int16 down-mix / up-mix without rate change (pass-through). */
function mapChannels(samples: Int16Array, l: Layout): Int16Array {
  if (l.inCh === l.outCh) return samples;
  const n = samples.length / l.inCh;
  const out = new Int16Array(n * l.outCh);
  if (l.outCh === 1) {
    const ch = l.inCh;
    for (let i = 0, j = 0; i < n; i++) {
      let sum = 0;
      for (let c = 0; c < ch; c++) sum += samples[j++];
      out[i] = Math.round(sum / ch);
    }
  } else {
    for (let i = 0, j = 0; i < n; i++) for (let c = 0; c < l.outCh; c++) out[j++] = samples[i];
  }
  return out;
}

/**
 * Creates a resampler stage (what the plugin's factory returns). Async because the `lsr-*`
 * qualities load and instantiate libsamplerate first; the converter is configured for the real
 * input format in `negotiate` (or on the first frame, when upstream could not say it).
 *
 * @example
 * ```ts
 * const stage = await createResampler({ rate: 8000, quality: "medium" });
 * stage.negotiate!({ kind: "pcm", sampleRate: 44100, channels: 2 }); // { kind: "pcm", sampleRate: 8000, channels: 2 }
 * ```
 */
export async function createResampler(
  options: ResamplerOptions,
  ctx?:
    & Pick<StageContext, "suggestBridge">
    & Partial<Pick<StageContext, "reuseOutput" | "realtime" | "checking" | "log" | "pipeline" | "index" | "label">>,
): Promise<TransformStage & { stats(): ResamplerStats }> {
  const check: FormatCheck = { stage: NAME, ctx };
  const rate = options.rate;
  const want = options.channels;
  const quality = options.quality;
  /** `threads` as asked: 0 chooses (see `autoThreads`), once the input's format says the stream's length. */
  const asked = options.threads ?? 0;
  const auto = asked === 0;
  /** Threads the current stream uses, and with `auto` why (for `--check`). */
  let threads = auto ? 1 : asked;
  let autoWhy: string | undefined;
  /** With `auto`: the input said its length and the chain runs faster than real time, so the choice is worth a line. */
  let autoShown = false;
  let lsrConverter: LsrConverter | undefined;
  if (quality.startsWith("lsr-")) {
    const { LsrConverter } = await lsrModule();
    lsrConverter = await LsrConverter.create(quality.slice(4) as LsrQuality, rate);
  }
  const spec = FILTER_SPECS[quality as keyof typeof FILTER_SPECS];
  // Loaded here, where the stage may wait: `configure` (in negotiate, or at a frame) cannot. With `auto` too:
  // negotiate may choose two threads.
  const blockResampler = (asked > 1 || auto) && !lsrConverter ? (await blocksModule()).BlockResampler : undefined;
  if (asked > 1 && lsrConverter) {
    ctx?.log?.info(`${quality} runs on one thread ("threads" is for the polyphase kernel)`);
  }

  let layout: Layout | undefined;
  let converter: RateConverter | undefined;
  /** The input stream's length in frames, when its format says it (the kernel: see `defaultKernel`). */
  let streamFrames: number | undefined;
  /** With `threads` > 1 and a plan that can be cut into blocks: the block-parallel converter, instead of `converter`. */
  let blocks: BlockResampler | undefined;
  /** Output frames per emitted frame in block mode: the duration of the longest input frame of the stream. */
  let piece = 1;
  /** Arrays of the frames emitted in block mode when the next stage keeps them. */
  const slab = new Slab();
  let closed = false;
  /** Output pts of the first sample of the current stream, in output samples. */
  let basePts = 0;
  /** Sample frames emitted since the stream (re)started. */
  let outFrames = 0;
  let started = false;
  const stats: ResamplerStats = {
    input_rate: 0,
    output_rate: rate,
    frames_in: 0,
    frames_out: 0,
    samples_in: 0,
    samples_out: 0,
    converter: "",
    latency_ms: 0,
  };

  function configure(inRate: number, inCh: number): void {
    if (closed) throw new Error(`${NAME}: converter already closed`);
    const outCh = want ?? inCh;
    const why = refusal({ kind: "pcm", sampleRate: inRate, channels: inCh }, outCh);
    if (why) throw new FormatError(why);
    layout = { inRate, inCh, outCh };
    stats.input_rate = inRate;
    blocks?.close();
    blocks = undefined;
    piece = 1;
    if (inRate === rate) {
      converter = undefined;
    } else if (lsrConverter) {
      lsrConverter.configure(inRate, inCh, outCh);
      converter = lsrConverter;
    } else {
      const conf = { inRate, outRate: rate, inChannels: inCh, outChannels: outCh, filter: spec };
      const cut = blockResampler && threads > 1 && ctx?.checking !== true ? blockResampler.layoutFor(conf) : undefined;
      if (blockResampler && cut) {
        converter = undefined;
        blocks = new blockResampler({
          ...conf,
          workers: threads - 1,
          onWorkerError: (m) => ctx?.log?.warn(`${m}: resampling the rest on the chain's thread`),
        });
        // Chosen, not asked for: a process that takes a second core says why.
        if (auto) ctx?.log?.info(`resampling on ${threads} threads (${autoWhy}); "threads": 1 keeps one`);
      } else {
        if (blockResampler && threads > 1 && ctx?.checking !== true) {
          ctx?.log?.info(`${inRate} → ${rate} Hz cannot be cut into blocks (its phases repeat too seldom): one thread`);
        }
        converter = new PolyphaseResampler({
          ...conf,
          kernel: defaultKernel(streamFrames !== undefined ? streamFrames / inRate : undefined),
          // The next stage borrows its input: one output array, overwritten frame after frame.
          reuseOutput: ctx?.reuseOutput === true,
          // A chain that runs faster than real time has one stream to convert, as fast as can be: larger passes.
          passFrames: ctx?.realtime === true ? undefined : OFFLINE_PASS_FRAMES,
        });
      }
    }
    stats.converter = blocks
      ? `${blocks.describe}, ${threads} threads (blocks of ${(blocks.layout.block / inRate).toFixed(2)} s)`
      : converter?.describe ?? "";
    stats.latency_ms = blocks
      ? ((blocks.layout.block + blocks.layout.lookahead) / inRate) * 1000
      : (converter?.latency ?? 0) * 1000;
    started = false;
    outFrames = 0;
  }

  function send(emit: Emit, samples: Int16Array, l: Layout): boolean {
    const frames = samples.length / l.outCh;
    const out: PcmFrame = { kind: "pcm", samples, sampleRate: rate, channels: l.outCh, pts: basePts + outFrames };
    outFrames += frames;
    stats.frames_out++;
    stats.samples_out += frames;
    return emit(out);
  }

  /**
   * Emits a block converter's output (valid only during this call) in frames as long as the input's longest (`piece`):
   * views of it when the next stage borrows its input, else copies. Returns the last emit's answer.
   */
  function sendBlocks(emit: Emit, samples: Int16Array, l: Layout): boolean {
    let ok = true;
    const step = piece * l.outCh;
    for (let at = 0; at < samples.length; at += step) {
      let s = samples.subarray(at, at + step);
      if (ctx?.reuseOutput !== true) (s = slab.int16(s.length)).set(samples.subarray(at, at + step));
      ok = send(emit, s, l);
    }
    return ok;
  }

  /** The emit of the `process` or `flush` call in progress, and the answer of its last emit (block mode). */
  let blockEmit: Emit = () => true;
  let blockOk = true;
  /** What the block converter calls with each block's output: made once, not per frame. */
  const onBlock = (o: Int16Array) => void (blockOk = sendBlocks(blockEmit, o, layout!));

  /** Emits the converter's tail so the stream has round(in × rate / inRate) samples; the converter starts afresh. */
  function drain(emit: Emit): void {
    const l = layout;
    if (!l || !started || (!converter && !blocks)) return;
    if (blocks) {
      blockEmit = emit;
      blocks.flush(onBlock);
      started = false;
      outFrames = 0;
      return;
    }
    const tail = converter!.flush();
    if (tail.length > 0) send(emit, tail, l);
    started = false;
    outFrames = 0;
  }

  return {
    negotiate(input) {
      expectFormat(input, ACCEPTS, check);
      if (asked > 1 && ctx?.realtime === true) {
        const where = ctx.pipeline !== undefined
          ? `pipeline "${ctx.pipeline}", stage ${ctx.index} (${ctx.label})`
          : NAME;
        throw new Error(
          `${where}: "threads": ${threads} is for chains that run faster than real time (a file to a file); ` +
            "this chain runs in real time (a real-time stage, or a chain of a call), which blocks of 2 s would starve: " +
            'remove "threads"',
        );
      }
      const why = refusal(input!, want);
      if (why) throw new FormatError(why);
      streamFrames = input!.sampleRate !== undefined ? input!.frames : undefined;
      if (auto) {
        const realtime = ctx?.realtime === true;
        const cores = navigator.hardwareConcurrency ?? 1;
        const choice = autoThreads({ sampleRate: input!.sampleRate ?? 1, frames: streamFrames, realtime, cores });
        threads = lsrConverter ? 1 : choice.threads;
        autoWhy = choice.why;
        autoShown = !realtime && streamFrames !== undefined && !lsrConverter;
      }
      if (input!.sampleRate !== undefined && input!.channels !== undefined) {
        configure(input!.sampleRate, input!.channels);
      }
      return { kind: "pcm", sampleRate: rate, channels: want ?? input!.channels };
    },

    process(frame: Frame, emit: Emit) {
      if (frame.kind !== "pcm") throw frameRefusal(frame, ACCEPTS, check);
      let l = layout;
      if (!l || l.inRate !== frame.sampleRate || l.inCh !== frame.channels) {
        // The format changed mid-stream (or was unknown at build time): finish the old stream first.
        if (l) drain(emit);
        configure(frame.sampleRate, frame.channels);
        l = layout!;
      }
      const n = frame.samples.length / l.inCh;
      stats.frames_in++;
      stats.samples_in += n;
      if (!started) {
        started = true;
        basePts = Math.round((frame.pts * rate) / l.inRate);
      }
      if (blocks) {
        piece = Math.max(piece, Math.round((n * rate) / l.inRate));
        blockEmit = emit;
        blockOk = true;
        blocks.process(frame.samples, onBlock);
        return blockOk;
      }
      if (!converter) {
        // Same rate: pass through, timestamps unchanged.
        // This stage borrows its input (its plugin says so): the input's own array goes on only to a next stage
        // that borrows too, else a copy does (the stage before may overwrite its array once this call returns).
        let samples = mapChannels(frame.samples, l);
        if (samples === frame.samples && ctx?.reuseOutput !== true) samples = samples.slice();
        const out: PcmFrame = { ...frame, samples, channels: l.outCh };
        stats.frames_out++;
        stats.samples_out += n;
        return emit(out);
      }
      const res = converter.process(frame.samples);
      if (res.length === 0) return true;
      return send(emit, res, l);
    },

    flush(emit: Emit) {
      drain(emit);
    },

    close() {
      closed = true;
      blocks?.close();
      blocks = undefined;
      lsrConverter?.close();
      lsrConverter = undefined;
      converter = undefined;
    },

    stats: () => ({ ...stats, ...(blocks ? { blocks: { ...blocks.counts } } : {}) }),

    /**
     * For `--check`, with `threads` > 1 or automatic: how many threads resample, or why one does (automatic: only
     * when the input said its length in a chain without a real-time stage; one thread otherwise goes without saying).
     */
    plan() {
      const l = layout;
      if (auto) {
        // Nothing to choose when the audio passes through.
        if (!autoShown || (l && l.inRate === rate)) return undefined;
        if (threads === 1) return `threads 0 (automatic): one thread (${autoWhy})`;
      } else if (threads === 1) return undefined;
      const head = auto ? `threads 0 (automatic): ` : "";
      if (!l || l.inRate === rate) return l ? "same rate: passes through, on one thread" : undefined;
      if (!blockResampler) return `${quality}: on one thread ("threads" is for the polyphase kernel)`;
      const conf = { inRate: l.inRate, outRate: rate, inChannels: l.inCh, outChannels: l.outCh, filter: spec };
      const b = blockResampler.layoutFor(conf);
      return b
        ? `${head}${threads} threads (${auto ? `${autoWhy}; ` : ""}blocks of ${
          (b.block / l.inRate).toFixed(2)
        } s; a worker starts at the first)`
        : `${head}on one thread: ${l.inRate} → ${rate} Hz cannot be cut into blocks`;
    },
  };
}

export type { ResampleQuality, ResamplerOptions };

/**
 * Options of the `resampler` stage (its zod schema; the plugin's `options`).
 *
 * @example
 * ```ts
 * resamplerOptions.parse({}); // { rate: 8000, quality: "medium" }
 * ```
 */
export const resamplerOptions: ReturnType<typeof resamplerSchema> = resamplerSchema();

/** The `resampler` plugin (declared in `plugins.ts`; its `create` loads this module). */
export default resampler;
