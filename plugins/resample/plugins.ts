/**
 * The resample family's stage plugin, declared: name, formats, bridges, option schema (built on first use) and a
 * `create` that loads `resampler.ts` (and the polyphase kernel) when a pipeline first builds one.
 *
 * @module
 */
import { z } from "zod";
import type { Format } from "../../core/frame.ts";
import { lazySchema } from "../../core/options.ts";
import type { StageConfig } from "../../core/pipeline.ts";
import { type AnyPlugin, definePlugin, type TransformStage } from "../../core/stage.ts";
import { lazyModule } from "../../core/lazy.ts";

/** Modules loaded when first used (see `lazyModule`). */
const resamplerModule = lazyModule<typeof import("./resampler.ts")>(new URL("./resampler.ts", import.meta.url));

/** Lowest rate the stage accepts, in Hz. */
export const MIN_RATE = 1000;
/** Highest rate the stage accepts, in Hz. */
export const MAX_RATE = 192000;

/** Most threads one resampler stage may use (`threads`). */
export const MAX_THREADS = 8;

/**
 * Shortest stream, in seconds of input, for which `threads: 0` (automatic) takes a second thread. Starting a worker
 * holds the chain's thread ~30 ms, and one thread has become fast enough (the native loops in 16 384-frame passes)
 * that on this project's 2-core machine two threads took 10 % more time than one at 30 minutes of 44.1 kHz audio to
 * 8 kHz G.711 (`transcode.json`), the same at 60 minutes, and 6 % less at 2 hours (`alternate.sh`, 5 runs each,
 * 2026-12-04).
 */
export const AUTO_THREADS_MIN_SECONDS = 3600;

/** What {@linkcode autoThreads} is told about a stream and the machine. */
export interface AutoThreadsInput {
  /** The input's rate, Hz. */
  sampleRate: number;
  /** The stream's length in sample frames, when its source said it (`Format.frames`). */
  frames?: number;
  /** The chain runs in real time: a real-time stage, or a chain of a call (`StageContext.realtime`). */
  realtime?: boolean;
  /** Cores this process may use (`navigator.hardwareConcurrency`). */
  cores: number;
}

/**
 * The resampler's automatic choice of threads (`threads: 0`): 2 for a stream whose length is known and at least
 * {@linkcode AUTO_THREADS_MIN_SECONDS}, in a chain that is not real-time, on a machine with 2 or more cores;
 * else 1. `why` says which rule decided, for `--check`.
 *
 * @example
 * ```ts
 * autoThreads({ sampleRate: 44100, frames: 44100 * 7200, cores: 2 }).threads; // 2
 * autoThreads({ sampleRate: 44100, frames: 44100 * 600, cores: 2 }).threads; // 1
 * ```
 */
export function autoThreads(input: AutoThreadsInput): { threads: number; why: string } {
  const minutes = AUTO_THREADS_MIN_SECONDS / 60;
  if (input.realtime) return { threads: 1, why: "a real-time chain" };
  if (input.frames === undefined) return { threads: 1, why: "the stream's length is not known in advance" };
  const seconds = input.frames / input.sampleRate;
  const length = `a ${Math.round(seconds)} s stream`;
  if (seconds < AUTO_THREADS_MIN_SECONDS) return { threads: 1, why: `${length}: two from ${minutes} minutes` };
  if (input.cores < 2) return { threads: 1, why: `${length}, but ${input.cores} core` };
  return { threads: 2, why: `${length}, ${input.cores} cores` };
}

/** The `quality` values. */
export const QUALITIES = [
  "medium",
  "best",
  "fastest",
  "linear",
  "lsr-best",
  "lsr-medium",
  "lsr-fastest",
  "lsr-linear",
] as const;

/**
 * Resampling quality: the polyphase kernel's `medium` (default), `best`, `fastest` and `linear`,
 * or libsamplerate's converters as `lsr-best`, `lsr-medium`, `lsr-fastest`, `lsr-linear`.
 */
export type ResampleQuality = (typeof QUALITIES)[number];

/** Options of the `resampler` stage (its zod schema, built on first use). */
export const resamplerSchema = lazySchema(() =>
  z.object({
    rate: z.number().int().min(MIN_RATE).max(MAX_RATE).default(8000).describe(
      `Output sample rate in Hz, ${MIN_RATE}..${MAX_RATE}. Default 8000 (telephony, G.711). ` +
        "When the input already has this rate, audio passes through unchanged (only channels are mapped).",
    ),
    channels: z.number().int().min(1).max(128).optional().describe(
      "Output channels, 1..128. Default: keep the input's. 1 down-mixes by averaging the channels; " +
        "from mono, N > 1 copies the channel N times; other changes are refused.",
    ),
    quality: z.enum(QUALITIES).default("medium").describe(
      "Converter. voxpipe's polyphase windowed-sinc kernel (Kaiser window, exact phases for rational ratios, " +
        "WebAssembly SIMD; output time-aligned with the input, look-ahead ~7 ms): " +
        '"medium" (default): passband flat to 0.85 of the lower Nyquist frequency (3.4 kHz at 8 kHz), ' +
        "stopband -100 dB from the Nyquist frequency (nothing above 4 kHz folds back at 8 kHz); " +
        "~3500x realtime per stream 44.1 to 8 kHz (one core of this machine). " +
        '"best": -120 dB, passband to 0.91 of Nyquist, ~2500x realtime. ' +
        '"fastest": -70 dB, passband to 0.85 of Nyquist, transition band ending 15 % above it ' +
        "(what lies there folds back above the passband), ~6500x realtime. " +
        '"linear": linear interpolation, no anti-alias filter; aliases audibly, for tests and effects only. ' +
        'libsamplerate (WebAssembly, loaded on first use): "lsr-best" (~149 dB tone SNR, ~30x realtime), ' +
        '"lsr-medium" (~130 dB, ~60x realtime: the default before the polyphase kernel), ' +
        '"lsr-fastest" (cuts 3.4 kHz by 8.8 dB at 8 kHz output, UNFIT FOR TELEPHONY), "lsr-linear".',
    ),
    threads: z.number().int().min(0).max(MAX_THREADS).default(0).describe(
      `Threads that resample one stream: 0 (default) chooses, 1..${MAX_THREADS} says. ` +
        `0 takes 2 for a stream whose source knows its length (a file read once, not looped) when it is at ` +
        `least ${AUTO_THREADS_MIN_SECONDS / 60} minutes, in a chain that is not real-time (no real-time stage, not ` +
        "a chain of a call), on a machine " +
        "with 2 or more cores; 1 otherwise (starting a worker costs ~30 ms: on 2 cores, 2 threads break even " +
        "at ~60 minutes of audio and take ~6 % less time on a 2-hour 44.1 kHz file to 8 kHz G.711). " +
        "More than 1 is for chains that run faster than real time (a file to a file), and asking for it is " +
        "refused in a real-time chain: the stream is cut into blocks of 2 s, and N - 1 worker " +
        "threads resample blocks while the chain's thread does the rest, with output identical, bit for bit, " +
        "to one thread's; a block leaves once it, and every block before it, is done. Polyphase qualities " +
        "only (medium, best, fastest, linear; lsr-* run on one thread), and rates whose phases repeat within " +
        "a quarter of a second of input (every common pair; 44100 to 7999 Hz does not).",
    ),
  })
);

/** Validated options of the `resampler` stage. */
export type ResamplerOptions = z.output<ReturnType<typeof resamplerSchema>>;

/** The stage's name. */
export const NAME = "resampler";

/** What the resampler takes: pcm of any rate and channel count (the stage checks the limits). */
export const ACCEPTS: Format[] = [{ kind: "pcm" }];

/**
 * The `resampler` plugin: converts pcm between sample rates (any to any, 1 kHz..192 kHz)
 * and optionally down-mixes to mono, streaming with state kept across frames. Output
 * timestamps are in output samples and contiguous, and the polyphase kernel's output is
 * time-aligned (output sample k is the input at time k / rate); `flush` emits the filter's
 * tail so the output has round(n × rate / input rate) samples.
 */
export const resampler = definePlugin({
  name: NAME,
  kind: "transform",
  description:
    "Converts pcm to another sample rate (polyphase windowed sinc, WebAssembly SIMD) and optionally down-mixes to mono",
  accepts: ACCEPTS,
  produces: { kind: "pcm" },
  /** Reads each frame only while processing it (see `PluginDefinition.borrowsInput`). */
  borrowsInput: true,
  get options() {
    return resamplerSchema();
  },
  /** Bridges pcm → pcm of another rate and/or channel count, when it can map the channels. */
  bridges(from: Format, to: Format): StageConfig | undefined {
    if (from.kind !== "pcm" || to.kind !== "pcm") return undefined;
    if (to.sampleRate === undefined && to.channels === undefined) return undefined;
    if (to.sampleRate !== undefined && !(to.sampleRate >= MIN_RATE && to.sampleRate <= MAX_RATE)) return undefined;
    const a = from.channels, b = to.channels;
    if (a !== undefined && b !== undefined && a !== b && a !== 1 && b !== 1) return undefined;
    const config: StageConfig = { use: NAME };
    if (to.sampleRate !== undefined) config.rate = to.sampleRate;
    if (to.channels !== undefined) config.channels = to.channels;
    return config;
  },
  create: async (options, ctx): Promise<TransformStage> => (await resamplerModule()).createResampler(options, ctx),
});

/** The stage plugins of this family, registered as built-ins. */
export const plugins: AnyPlugin[] = [resampler];
