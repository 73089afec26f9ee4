/**
 * The tone family's stage plugin, declared: name, format, option schema (built on first use) and a `create` that
 * loads the stage's module (`tone_source.ts`) when a pipeline first builds one. Loading this module costs next to
 * nothing, so a pipeline that does not use `tone-source` does not pay for it.
 *
 * @module
 */
import { z } from "zod";
import { lazySchema } from "../../core/options.ts";
import { type AnyPlugin, definePlugin, type SourceStage } from "../../core/stage.ts";
import { lazyModule } from "../../core/lazy.ts";

/** Modules loaded when first used (see `lazyModule`). */
const toneSourceModule = lazyModule<typeof import("./tone_source.ts")>(new URL("./tone_source.ts", import.meta.url));

/** Options of `tone-source` (its zod schema, built on first use). */
export const toneSourceSchema = lazySchema(() =>
  z.object({
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
  })
);

/** Validated options of `tone-source`. */
export type ToneSourceOptions = z.output<ReturnType<typeof toneSourceSchema>>;

/**
 * Generates a test signal: a sine at `frequency`, a linear sweep from `frequency`
 * to `to_frequency` (repeating every `sweep_seconds`), or silence, at
 * `amplitude` dBFS peak. Frames of `frame_ms`, pts in samples, phase-continuous
 * across frames, exactly `round(duration × sample_rate)` samples (the last frame
 * may be shorter); `duration: 0` runs until the pipeline is stopped. Frames are
 * produced as fast as downstream accepts them (a paced sink sets real time).
 * A frequency at or above half the sample rate is refused when the stage is created.
 *
 * @example Pipeline config
 * ```json
 * { "use": "tone-source", "waveform": "sine", "frequency": 440, "amplitude": -12, "sample_rate": 8000, "duration": 3 }
 * ```
 */
export const toneSource = definePlugin({
  name: "tone-source",
  kind: "source",
  description: "Generates a sine, a sweep or silence as 16-bit PCM frames",
  produces: { kind: "pcm" },
  get options() {
    return toneSourceSchema();
  },
  create: async (o, ctx): Promise<SourceStage> => (await toneSourceModule()).createToneSource(o, ctx),
});

/** The stage plugins of this family, registered as built-ins. */
export const plugins: AnyPlugin[] = [toneSource];
