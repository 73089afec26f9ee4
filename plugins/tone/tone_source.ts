/**
 * `tone-source`: generates a sine, a linear sweep or silence as 16-bit PCM frames.
 *
 * @module
 */
import type { SourceStage, StageContext } from "../../core/stage.ts";
import { toneSource, type ToneSourceOptions, toneSourceSchema } from "./plugins.ts";
import { emitPcmFrames, frameSamples, type PcmChunkReader } from "../wav/pcm_stream.ts";

export { toneSource, type ToneSourceOptions };

/** Options of `tone-source` (its zod schema; the plugin's `options`). */
export const toneSourceOptions: ReturnType<typeof toneSourceSchema> = toneSourceSchema();

/** Generates the samples; phase-continuous across frames. */
class ToneReader implements PcmChunkReader {
  #n = 0; // samples generated per channel
  #cycles = 0; // phase in cycles, 0..1
  readonly #total: number;
  readonly #perFrame: number;
  readonly #o: ToneSourceOptions;
  readonly #peak: number;
  readonly #sweepSamples: number;

  constructor(o: ToneSourceOptions) {
    this.#o = o;
    this.#total = o.duration > 0 ? Math.round(o.duration * o.sample_rate) : Infinity;
    this.#perFrame = frameSamples(o.sample_rate, o.frame_ms);
    this.#peak = 32767 * 10 ** (o.amplitude / 20);
    const sweepS = o.sweep_seconds ?? (o.duration > 0 ? o.duration : 10);
    this.#sweepSamples = Math.max(1, Math.round(sweepS * o.sample_rate));
  }

  next(): Int16Array | null {
    const left = this.#total - this.#n;
    if (left <= 0) return null;
    const n = Math.min(this.#perFrame, left);
    const ch = this.#o.channels;
    const out = new Int16Array(n * ch);
    const { waveform, sample_rate: rate, frequency: f0, to_frequency: f1 } = this.#o;
    if (waveform !== "silence") {
      const peak = this.#peak;
      let cycles = this.#cycles;
      for (let i = 0; i < n; i++) {
        const v = Math.round(peak * Math.sin(2 * Math.PI * cycles));
        for (let c = 0; c < ch; c++) out[i * ch + c] = v;
        let f = f0;
        if (waveform === "sweep") {
          const pos = (this.#n + i + 1) % this.#sweepSamples;
          f = f0 + ((f1 - f0) * pos) / this.#sweepSamples;
        }
        cycles += f / rate;
        cycles -= Math.floor(cycles);
      }
      this.#cycles = cycles;
    }
    this.#n += n;
    return out;
  }
}

/**
 * Creates a `tone-source` stage from validated options: the plugin's `create`, loaded when first used. What the stage
 * does is described on {@linkcode toneSource}. Throws when a frequency it plays is at or above half the sample rate.
 */
export function createToneSource(o: ToneSourceOptions, _ctx: StageContext): SourceStage {
  if (o.waveform !== "silence") {
    const nyquist = o.sample_rate / 2;
    const keys = o.waveform === "sweep" ? (["frequency", "to_frequency"] as const) : (["frequency"] as const);
    for (const k of keys) {
      if (o[k] >= nyquist) {
        throw new Error(
          `tone-source: ${k} ${
            o[k]
          } Hz must be below half the sample rate (${nyquist} Hz at sample_rate ${o.sample_rate})`,
        );
      }
    }
  }
  const counters = { frames: 0, samples: 0 };
  return {
    negotiate: () => ({ kind: "pcm", sampleRate: o.sample_rate, channels: o.channels }),
    run: (rc) => emitPcmFrames(rc, { sampleRate: o.sample_rate, channels: o.channels }, new ToneReader(o), counters),
    stats: () => ({
      frames: counters.frames,
      samples: counters.samples,
      duration_s: counters.samples / o.sample_rate,
    }),
  };
}

/** The `tone-source` plugin definition (the same object as `plugins.ts`'s; module-path plugins load the default export). */
export default toneSource;
