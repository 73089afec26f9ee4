/**
 * The `resampler` stage: pcm at any rate and channel count → pcm at the configured rate,
 * streaming, through libsamplerate (`@alexanderolsen/libsamplerate-js`, WebAssembly).
 *
 * @example Pipeline config: 44.1 kHz stereo music to telephone audio
 * ```json
 * { "use": "resampler", "rate": 8000, "channels": 1 }
 * ```
 *
 * @module
 */
import { z } from "zod";
// The package is CommonJS: in Deno only its default export exists at run time (named
// imports type-check but are undefined).
import lsr from "libsamplerate";
import { type Format, formatToString, type Frame, type PcmFrame } from "../../core/frame.ts";
import { expectFormat, type FormatCheck, frameRefusal } from "../../core/format_check.ts";
import type { StageConfig } from "../../core/pipeline.ts";
import { definePlugin, type Emit, FormatError, type StageContext, type TransformStage } from "../../core/stage.ts";

/** A libsamplerate converter instance (one WebAssembly module instance each). */
type Converter = Awaited<ReturnType<typeof lsr.create>>;

/** Rates the library accepts, in Hz. */
const MIN_RATE = 1000;
const MAX_RATE = 192000;

/** Resampling quality, from best to fastest. */
export type ResampleQuality = "best" | "medium" | "fastest" | "linear";

/** libsamplerate's converter ids (0..4). */
type ConverterTypeValue = typeof lsr.ConverterType.SRC_LINEAR;

const CONVERTER: Record<ResampleQuality, ConverterTypeValue> = {
  best: lsr.ConverterType.SRC_SINC_BEST_QUALITY,
  medium: lsr.ConverterType.SRC_SINC_MEDIUM_QUALITY,
  fastest: lsr.ConverterType.SRC_SINC_FASTEST,
  linear: lsr.ConverterType.SRC_LINEAR,
};

/**
 * Options of the `resampler` stage.
 *
 * @example
 * ```ts
 * resamplerOptions.parse({}); // { rate: 8000, quality: "medium" }
 * ```
 */
export const resamplerOptions = z.object({
  rate: z.number().int().min(MIN_RATE).max(MAX_RATE).default(8000).describe(
    `Output sample rate in Hz, ${MIN_RATE}..${MAX_RATE}. Default 8000 (telephony, G.711). ` +
      "When the input already has this rate, audio passes through unchanged (only channels are mapped).",
  ),
  channels: z.number().int().min(1).max(128).optional().describe(
    "Output channels, 1..128. Default: keep the input's. 1 down-mixes by averaging the channels; " +
      "from mono, N > 1 copies the channel N times; other changes are refused.",
  ),
  quality: z.enum(["best", "medium", "fastest", "linear"]).default("medium").describe(
    'libsamplerate converter. "best": sinc, ~149 dB tone SNR, slowest (~30x realtime per stream, 44.1 to 8 kHz). ' +
      '"medium" (default): sinc, ~130 dB tone SNR, ~100x realtime. ' +
      '"fastest": sinc with a wide transition band; cuts 3.4 kHz by 8.8 dB at 8 kHz output, ' +
      "UNFIT FOR TELEPHONY. " +
      '"linear": linear interpolation, no anti-alias filter; aliases audibly, for tests and effects only.',
  ),
});

/** Validated options of the `resampler` stage. */
export type ResamplerOptions = z.output<typeof resamplerOptions>;

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
}

const NAME = "resampler";

/** How the stage maps input channels to output channels. */
interface Layout {
  inRate: number;
  inCh: number;
  outCh: number;
  /** Channels that go through the converter: 1 when down-mixing or up-mixing from mono. */
  srcCh: number;
}

/** What the resampler takes: pcm of any rate and channel count (the limits are checked by {@linkcode refusal}). */
const ACCEPTS: Format[] = [{ kind: "pcm" }];

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

/**
 * Creates a resampler stage (what the plugin's factory returns). Async: it instantiates
 * the libsamplerate WebAssembly module; the converter is configured for the real input
 * format in `negotiate` (or on the first frame, when upstream could not say it).
 *
 * @example
 * ```ts
 * const stage = await createResampler({ rate: 8000, quality: "medium" });
 * stage.negotiate!({ kind: "pcm", sampleRate: 44100, channels: 2 }); // { kind: "pcm", sampleRate: 8000, channels: 2 }
 * ```
 */
export async function createResampler(
  options: ResamplerOptions,
  ctx?: Pick<StageContext, "suggestBridge">,
): Promise<TransformStage & { stats(): ResamplerStats }> {
  const check: FormatCheck = { stage: NAME, ctx };
  const rate = options.rate;
  const want = options.channels;
  const converterType = CONVERTER[options.quality];
  // Instantiated for a placeholder input rate; reconfigured once the real one is known.
  let src: Converter | undefined = await lsr.create(1, rate === 48000 ? 44100 : 48000, rate, { converterType });

  let layout: Layout | undefined;
  /** Output pts of the first sample of the current stream, in output samples. */
  let basePts = 0;
  /** Sample frames fed to the converter / emitted since the stream (re)started. */
  let fedFrames = 0;
  let outFrames = 0;
  let started = false;
  let scratch = new Float32Array(0);
  const stats: ResamplerStats = {
    input_rate: 0,
    output_rate: rate,
    frames_in: 0,
    frames_out: 0,
    samples_in: 0,
    samples_out: 0,
  };

  function configure(inRate: number, inCh: number): void {
    const outCh = want ?? inCh;
    const why = refusal({ kind: "pcm", sampleRate: inRate, channels: inCh }, outCh);
    if (why) throw new FormatError(why);
    const srcCh = outCh === 1 || inCh === 1 ? 1 : inCh;
    layout = { inRate, inCh, outCh, srcCh };
    stats.input_rate = inRate;
    if (inRate !== rate) {
      if (!src) throw new Error(`${NAME}: converter already closed`);
      // Each setter re-initialises the converter (fresh state); `ratio` is not updated by them.
      let fresh = false;
      if (src.nChannels !== srcCh) {
        src.nChannels = srcCh;
        fresh = true;
      }
      if (src.inputSampleRate !== inRate) {
        src.inputSampleRate = inRate;
        fresh = true;
      }
      if (!fresh) src.converterType = converterType;
      src.ratio = rate / inRate;
    }
    started = false;
    fedFrames = 0;
    outFrames = 0;
  }

  /** Int16 interleaved input → float in [-1, 1) with `srcCh` channels (down-mixed when needed). */
  function toFloat(samples: Int16Array, l: Layout): Float32Array {
    const n = samples.length / l.inCh;
    const len = n * l.srcCh;
    if (scratch.length < len) scratch = new Float32Array(Math.max(len, scratch.length * 2));
    const f = scratch;
    if (l.srcCh === l.inCh) {
      for (let i = 0; i < len; i++) f[i] = samples[i] / 32768;
    } else {
      const ch = l.inCh;
      const k = 1 / (32768 * ch);
      for (let i = 0, j = 0; i < n; i++) {
        let sum = 0;
        for (let c = 0; c < ch; c++) sum += samples[j++];
        f[i] = sum * k;
      }
    }
    return f.subarray(0, len);
  }

  /** Float converter output → Int16 interleaved with `outCh` channels. */
  function toInt16(f: Float32Array, frames: number, l: Layout): Int16Array {
    const out = new Int16Array(frames * l.outCh);
    const up = l.outCh / l.srcCh;
    for (let i = 0, j = 0; i < frames * l.srcCh; i++) {
      let v = Math.round(f[i] * 32768);
      v = v > 32767 ? 32767 : v < -32768 ? -32768 : v;
      for (let u = 0; u < up; u++) out[j++] = v;
    }
    return out;
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

  function send(emit: Emit, samples: Int16Array, l: Layout): boolean {
    const frames = samples.length / l.outCh;
    const out: PcmFrame = { kind: "pcm", samples, sampleRate: rate, channels: l.outCh, pts: basePts + outFrames };
    outFrames += frames;
    stats.frames_out++;
    stats.samples_out += frames;
    return emit(out);
  }

  /** Emits the converter's tail so the stream has round(in × rate / inRate) samples, then resets it. */
  function drain(emit: Emit): void {
    const l = layout;
    if (!l || !started || !src || l.inRate === rate) return;
    const total = Math.round((fedFrames * rate) / l.inRate);
    let missing = total - outFrames;
    if (missing > 0) {
      const chunk = Math.max(256, Math.ceil(l.inRate / 100));
      const zeros = new Float32Array(chunk * l.srcCh);
      const parts: Float32Array[] = [];
      let got = 0;
      // The sinc filters hold back well under a second of input; the bound is a safety net.
      for (let i = 0; got < missing && i * chunk < l.inRate * 2; i++) {
        const part = src.full(zeros);
        parts.push(part);
        got += part.length / l.srcCh;
      }
      missing = Math.min(missing, got);
      const all = new Float32Array(got * l.srcCh);
      let at = 0;
      for (const p of parts) {
        all.set(p, at);
        at += p.length;
      }
      if (missing > 0) send(emit, toInt16(all, missing, l), l);
    }
    // Fresh converter state for whatever comes next.
    configure(l.inRate, l.inCh);
  }

  return {
    negotiate(input) {
      expectFormat(input, ACCEPTS, check);
      const why = refusal(input!, want);
      if (why) throw new FormatError(why);
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
      if (l.inRate === rate) {
        // Same rate: pass through, timestamps unchanged.
        const out: PcmFrame = { ...frame, samples: mapChannels(frame.samples, l), channels: l.outCh };
        stats.frames_out++;
        stats.samples_out += n;
        return emit(out);
      }
      fedFrames += n;
      const res = src!.full(toFloat(frame.samples, l));
      const frames = res.length / l.srcCh;
      if (frames === 0) return true;
      return send(emit, toInt16(res, frames, l), l);
    },

    flush(emit: Emit) {
      drain(emit);
    },

    close() {
      if (src && !src.isDestroyed) src.destroy();
      src = undefined;
    },

    stats: () => ({ ...stats }),
  };
}

/**
 * The `resampler` plugin: converts pcm between sample rates (any to any, 1 kHz..192 kHz)
 * and optionally down-mixes to mono, streaming with state kept across frames. Output
 * timestamps are in output samples and contiguous; `flush` emits the filter's tail so the
 * output has round(n × rate / input rate) samples.
 */
export default definePlugin({
  name: NAME,
  kind: "transform",
  description: "Converts pcm to another sample rate (libsamplerate) and optionally down-mixes to mono",
  accepts: ACCEPTS,
  produces: { kind: "pcm" },
  options: resamplerOptions,
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
  create: (options, ctx) => createResampler(options, ctx),
});
