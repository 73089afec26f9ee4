/**
 * `l16-decoder` (example codec plugin): encoded L16 → pcm at the codec's clock
 * rate. Frames marked `concealed` are filled by the concealment the codec is
 * registered with; `silence` frames become zeros.
 *
 * @example Pipeline entry (a user plugin, loaded by path)
 * ```json
 * { "use": "../examples/plugins/l16/l16_decoder.ts" }
 * ```
 *
 * @module
 */
import { z } from "zod";
import type { Concealer } from "../../../core/codec.ts";
import type { Format, PcmFrame } from "../../../core/frame.ts";
import { expectFormat, type FormatCheck, frameRefusal } from "../../../core/format_check.ts";
import type { StageConfig } from "../../../core/pipeline.ts";
import { definePlugin } from "../../../core/stage.ts";
import { decodeL16, L16 } from "./codec.ts";

const NAME = "l16-decoder";

/** The `l16-decoder` plugin definition. */
export default definePlugin({
  name: NAME,
  kind: "transform",
  description: "Decodes L16 (16-bit linear, network byte order) to pcm, an example codec plugin",
  accepts: [{ kind: "encoded", codec: "L16" }],
  produces: { kind: "pcm" },
  options: z.object({
    plc: z.boolean().default(true).describe("conceal lost frames with the codec's concealment (default true)"),
  }),
  codecs: [L16],
  /** Bridges encoded L16 → pcm. */
  bridges(from: Format, to: Format): StageConfig | undefined {
    if (from.kind !== "encoded" || to.kind !== "pcm" || from.codec?.toUpperCase() !== "L16") return undefined;
    return { use: NAME };
  },
  create({ plc }, ctx) {
    const info = ctx.codecs.require("L16", NAME);
    const accepts: Format[] = [{ kind: "encoded", codec: info.name, clockRate: info.clockRate }];
    const check: FormatCheck = { stage: NAME, ctx };
    const concealer: Concealer | undefined = plc && info.concealment !== "none"
      ? info.concealment({ sampleRate: info.clockRate, channels: info.channels })
      : undefined;
    let lastLength = Math.round((info.ptime * info.clockRate) / 1000) * info.channels;
    let concealed = 0;
    return {
      negotiate(input) {
        expectFormat(input, accepts, check);
        return { kind: "pcm", sampleRate: info.clockRate, channels: info.channels };
      },
      process(frame, emit) {
        if (frame.kind !== "encoded" || frame.codec !== info.name) throw frameRefusal(frame, accepts, check);
        let samples: Int16Array;
        const type = frame.type ?? "normal";
        if (type === "normal") {
          samples = decodeL16(frame.payload);
          concealer?.receive(samples);
          lastLength = samples.length || lastLength;
        } else if (type === "silence") {
          samples = new Int16Array(frame.payload.length >> 1);
          concealer?.receive(samples);
        } else {
          const n = frame.payload.length >> 1 || lastLength;
          samples = concealer ? concealer.conceal(n) : new Int16Array(n);
          concealed++;
        }
        const out: PcmFrame = {
          kind: "pcm",
          samples,
          sampleRate: info.clockRate,
          channels: info.channels,
          pts: frame.pts,
        };
        if (frame.type !== undefined) out.type = frame.type;
        return emit(out);
      },
      stats: () => ({ concealed }),
    };
  },
});
