/**
 * `silence-detector`: passes PCM through unchanged and warns once when the
 * input has been silent (every sample within `threshold_dbfs` of zero) for
 * `seconds` of audio: a muted or unplugged microphone. The time is counted in
 * samples, not on a clock, so the warning comes after exactly that much audio.
 *
 * One warning per silent stretch: the log line `input silent for N s` and the
 * pipeline event `silence` (`{ seconds }`); when sound returns after a warning,
 * the event `sound` (`{ silent_s }`) and an info line, and the next stretch may
 * warn again.
 *
 * @example Pipeline entry
 * ```json
 * { "use": "silence-detector", "seconds": 10, "threshold_dbfs": -60 }
 * ```
 *
 * @module
 */
import type { StageContext, TransformStage } from "../../core/stage.ts";
import { silenceDetector, type SilenceDetectorOptions, silenceDetectorSchema } from "./stage_plugins.ts";

export { silenceDetector, type SilenceDetectorOptions };

/** Options of the `silence-detector` stage (its zod schema; the plugin's `options`). */
export const silenceDetectorOptions: ReturnType<typeof silenceDetectorSchema> = silenceDetectorSchema();

/** Creates a `silence-detector` stage from validated options: the plugin's `create`, loaded when first used. */
export function createSilenceDetector(opts: SilenceDetectorOptions, sctx: StageContext): TransformStage {
  const limit = Math.floor(32768 * 10 ** (opts.threshold_dbfs / 20));
  let silentFrames = 0; // sample frames (per channel) of the current silent stretch
  let warned = false;
  let warnings = 0;
  let rate = 0;
  return {
    negotiate: (input) => input,
    process(frame, emit) {
      if (frame.kind !== "pcm") return;
      const s = frame.samples;
      let loud = -1;
      for (let i = s.length - 1; i >= 0; i--) {
        if (s[i] > limit || s[i] < -limit) {
          loud = i;
          break;
        }
      }
      const ch = frame.channels;
      rate = frame.sampleRate;
      if (loud < 0) {
        silentFrames += s.length / ch;
      } else {
        if (warned) {
          const silent = Math.round((silentFrames / frame.sampleRate) * 10) / 10;
          sctx.log.info(`input has sound again after ${silent} s of silence`);
          sctx.event("sound", { silent_s: silent });
          warned = false;
        }
        // The stretch restarts after the last loud sample.
        silentFrames = Math.floor((s.length - 1 - loud) / ch);
      }
      if (!warned && silentFrames >= opts.seconds * frame.sampleRate) {
        warned = true;
        warnings++;
        sctx.log.warn(`input silent for ${opts.seconds} s: is the microphone muted or unplugged?`);
        sctx.event("silence", { seconds: opts.seconds });
      }
      emit(frame);
    },
    stats: () => ({ silent_s: rate ? Math.round((silentFrames / rate) * 10) / 10 : 0, warnings }),
  };
}
