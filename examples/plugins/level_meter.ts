/**
 * An example user plugin: a pass-through level meter. It measures the RMS and
 * peak level of PCM audio (dBFS), logs them every `interval_ms`, publishes a
 * `level` event, and exposes the latest values in `stats()`.
 *
 * @module
 */
import { definePlugin, z } from "../../mod.ts";

function dbfs(x: number): number {
  return x > 0 ? Math.round(20 * Math.log10(x / 32768) * 10) / 10 : -Infinity;
}

/** The level-meter stage. */
export default definePlugin({
  name: "level-meter",
  kind: "transform",
  description: "Passes PCM through and reports its RMS and peak level in dBFS",
  accepts: [{ kind: "pcm" }],
  produces: { kind: "pcm" },
  options: z.object({
    interval_ms: z.number().int().min(10).max(60000).default(1000).describe("how often to report, in ms of audio"),
  }),
  create({ interval_ms }, ctx) {
    let sumSq = 0, peak = 0, count = 0, rate = 8000;
    let last = { rms_dbfs: -Infinity, peak_dbfs: -Infinity };
    let overallPeak = 0;
    return {
      negotiate(input) {
        if (input?.kind === "pcm" && input.sampleRate) rate = input.sampleRate;
        return input;
      },
      process(frame, emit) {
        if (frame.kind === "pcm") {
          const s = frame.samples;
          for (let i = 0; i < s.length; i++) {
            const v = s[i];
            sumSq += v * v;
            const a = v < 0 ? -v : v;
            if (a > peak) peak = a;
          }
          count += s.length;
          if (peak > overallPeak) overallPeak = peak;
          if (count >= (rate * interval_ms) / 1000 * frame.channels) {
            last = { rms_dbfs: dbfs(Math.sqrt(sumSq / count)), peak_dbfs: dbfs(peak) };
            ctx.log.info(`level rms=${last.rms_dbfs} dBFS peak=${last.peak_dbfs} dBFS`);
            ctx.event("level", last);
            sumSq = 0;
            peak = 0;
            count = 0;
          }
        }
        emit(frame);
      },
      stats: () => ({ ...last, max_peak_dbfs: dbfs(overallPeak) }),
    };
  },
});
