/**
 * `l16-encoder` (example codec plugin): pcm → encoded L16, at the clock rate and
 * channel count the registry's `L16` codec has (8000 Hz mono as this folder
 * registers it).
 *
 * @example Pipeline entry (a user plugin, loaded by path)
 * ```json
 * { "use": "../examples/plugins/l16/l16_encoder.ts" }
 * ```
 *
 * @module
 */
import { z } from "zod";
import type { EncodedFrame, Format } from "../../../core/frame.ts";
import { expectFormat, type FormatCheck, frameRefusal } from "../../../core/format_check.ts";
import type { StageConfig } from "../../../core/pipeline.ts";
import { definePlugin } from "../../../core/stage.ts";
import { encodeL16, L16 } from "./codec.ts";

const NAME = "l16-encoder";

/** The `l16-encoder` plugin definition. */
export default definePlugin({
  name: NAME,
  kind: "transform",
  description: "Encodes pcm to L16 (16-bit linear, network byte order), an example codec plugin",
  accepts: [{ kind: "pcm" }],
  produces: { kind: "encoded" },
  options: z.object({}),
  codecs: [L16],
  /** Bridges pcm → encoded L16. */
  bridges(from: Format, to: Format): StageConfig | undefined {
    if (from.kind !== "pcm" || to.kind !== "encoded" || to.codec?.toUpperCase() !== "L16") return undefined;
    return { use: NAME };
  },
  create(_options, ctx) {
    const info = ctx.codecs.require("L16", NAME);
    const accepts: Format[] = [{ kind: "pcm", sampleRate: info.clockRate, channels: info.channels }];
    const check: FormatCheck = { stage: NAME, ctx };
    return {
      negotiate(input) {
        expectFormat(input, accepts, check);
        return { kind: "encoded", codec: info.name, clockRate: info.clockRate };
      },
      process(frame, emit) {
        if (frame.kind !== "pcm" || frame.sampleRate !== info.clockRate || frame.channels !== info.channels) {
          throw frameRefusal(frame, accepts, check);
        }
        const out: EncodedFrame = {
          kind: "encoded",
          codec: info.name,
          clockRate: info.clockRate,
          payload: encodeL16(frame.samples),
          pts: frame.pts,
        };
        if (frame.type !== undefined) out.type = frame.type;
        return emit(out);
      },
    };
  },
});
