/**
 * An example user plugin: changes the level of PCM audio by `gain_db` decibels,
 * with clipping. Load it from a pipeline file with `"use": "../examples/plugins/gain.ts"`
 * (paths resolve relative to the pipeline file).
 *
 * @module
 */
import { definePlugin, z } from "../../mod.ts";

/** The gain stage: pcm in, pcm out, same rate and channels. */
export default definePlugin({
  name: "gain",
  kind: "transform",
  description: "Multiplies PCM samples by a gain in dB, clipping at full scale",
  accepts: [{ kind: "pcm" }],
  produces: { kind: "pcm" },
  options: z.object({
    gain_db: z.number().min(-60).max(40).default(0).describe("gain in dB (-60..40)"),
  }),
  create({ gain_db }) {
    const g = 10 ** (gain_db / 20);
    return {
      negotiate: (input) => input,
      process(frame, emit) {
        if (frame.kind !== "pcm") return;
        const out = new Int16Array(frame.samples.length);
        for (let i = 0; i < out.length; i++) {
          out[i] = Math.max(-32768, Math.min(32767, Math.round(frame.samples[i] * g)));
        }
        emit({ ...frame, samples: out });
      },
    };
  },
});
