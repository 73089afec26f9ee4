/**
 * `tone-source`: generates a sine, a linear sweep or silence as 16-bit PCM frames.
 *
 * @module
 */
import { z } from "zod";
import { definePlugin, type SourceStage } from "../../core/stage.ts";
import { emitPcmFrames, frameSamples, type PcmChunkReader } from "../wav/pcm_stream.ts";

/** Options of `tone-source`. */
export const toneSourceOptions = z.object({
  waveform: z.enum(["sine", "sweep", "silence"]).default("sine").describe(
    "sine: a steady tone at `frequency`; sweep: a linear glide from `frequency` to `to_frequency`; silence: zeros",
  ),
  frequency: z.number().positive().max(192000).default(1000).describe(
    "Tone frequency, or sweep start frequency, in Hz (must be below sample_rate / 2)",
  ),
  to_frequency: z.number().positive().max(192000).default(3400).describe(
    "Sweep end frequency in Hz (must be below sample_rate / 2)",
  ),
  sweep_seconds: z.number().min(0.01).max(86400).optional().describe(
    "Length of one sweep in seconds, after which it starts again (default: `duration`, or 10 when duration is 0)",
  ),
  amplitude: z.number().min(-120).max(0).default(-6).describe("Peak level in dBFS (0 = full scale)"),
  sample_rate: z.number().int().min(1000).max(384000).default(8000).describe("Sample rate in Hz"),
  channels: z.number().int().min(1).max(32).default(1).describe("Channels (all carry the same signal)"),
  duration: z.number().min(0).max(86400).default(5).describe(
    "Length in seconds (exactly round(duration × sample_rate) samples); 0 = until the pipeline is stopped",
  ),
  frame_ms: z.number().int().min(1).max(1000).default(20).describe(
    "Frame duration in milliseconds (the last frame may be shorter)",
  ),
});

/** Generates the samples; phase-continuous across frames. */
class ToneReader implements PcmChunkReader {
  #n = 0; // samples generated per channel
  #cycles = 0; // phase in cycles, 0..1
  readonly #total: number;
  readonly #perFrame: number;
  readonly #o: z.output<typeof toneSourceOptions>;
  readonly #peak: number;
  readonly #sweepSamples: number;

  constructor(o: z.output<typeof toneSourceOptions>) {
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
 * Generates a test signal: a sine at `frequency`, a linear sweep from `frequency`
 * to `to_frequency` (repeating every `sweep_seconds`), or silence, at
 * `amplitude` dBFS peak. Frames of `frame_ms`, pts in samples, phase-continuous
 * across frames, exactly `round(duration × sample_rate)` samples (the last frame
 * may be shorter); `duration: 0` runs until the pipeline is stopped. Frames are
 * produced as fast as downstream accepts them (a paced sink sets real time).
 *
 * @example Pipeline config
 * ```json
 * { "use": "tone-source", "waveform": "sine", "frequency": 440, "amplitude": -12, "sample_rate": 8000, "duration": 3 }
 * ```
 */
export default definePlugin({
  name: "tone-source",
  kind: "source",
  description: "Generates a sine, a sweep or silence as 16-bit PCM frames",
  produces: { kind: "pcm" },
  options: toneSourceOptions,
  create(o): SourceStage {
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
  },
});
