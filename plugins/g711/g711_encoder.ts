/**
 * The `g711-encoder` stage: pcm 8000 Hz mono → G.711 (PCMU or PCMA) encoded frames.
 *
 * @example Pipeline config
 * ```json
 * { "use": "g711-encoder", "codec": "PCMA" }
 * ```
 *
 * @module
 */
import { z } from "zod";
import type { EncodedFrame, Format, Frame } from "../../core/frame.ts";
import { expectFormat, type FormatCheck, frameRefusal, stageConfigText } from "../../core/format_check.ts";
import type { StageConfig } from "../../core/pipeline.ts";
import { definePlugin, type Emit, type StageContext, type TransformStage } from "../../core/stage.ts";
import { G711_CODECS, type G711Codec, isG711 } from "./codecs.ts";
import { ReusedArrays, Slab } from "../../core/slab.ts";
import { ENCODE_TABLES, encodeWith } from "./tables.ts";

/**
 * Options of the `g711-encoder` stage.
 *
 * @example
 * ```ts
 * g711EncoderOptions.parse({}); // { codec: "PCMU" }
 * ```
 */
export const g711EncoderOptions = z.object({
  codec: z.enum(["PCMU", "PCMA"]).default("PCMU").describe(
    'G.711 law to encode with: "PCMU" (μ-law, RTP payload type 0) or "PCMA" (A-law, payload type 8). Default "PCMU".',
  ),
});

/** Validated options of the `g711-encoder` stage. */
export type G711EncoderOptions = z.output<typeof g711EncoderOptions>;

const NAME = "g711-encoder";
/** The one format the encoder takes. */
const ACCEPTS: Format[] = [{ kind: "pcm", sampleRate: 8000, channels: 1 }];

/** How the encoder checks its input: encoded or RTP input gets the advice to decode first (or drop the encoder). */
function formatCheck(ctx: Pick<StageContext, "suggestBridge"> | undefined): FormatCheck {
  return {
    stage: NAME,
    ctx,
    advice(input) {
      if (input.kind !== "encoded" && input.kind !== "rtp") return undefined;
      const decoder = input.kind === "encoded" ? ctx?.suggestBridge(input, { kind: "pcm" }) : undefined;
      return `it encodes linear PCM; insert a decoder${decoder ? ` (e.g. ${stageConfigText(decoder)})` : ""} ` +
        `before it, or remove it if the audio is already encoded`;
    },
  };
}

/** Statistics of a `g711-encoder` stage. */
export interface G711EncoderStats {
  /** Frames encoded. */
  frames: number;
  /** Samples encoded. */
  samples: number;
}

/**
 * Creates an encoder stage (what the plugin's factory returns). The codec must be registered in `ctx.codecs`
 * (the g711 plugin registers both laws); `ctx.suggestBridge` names what to insert in refusals.
 *
 * @example
 * ```ts
 * const stage = createG711Encoder({ codec: "PCMU" }, ctx);
 * stage.process({ kind: "pcm", samples: new Int16Array(160), sampleRate: 8000, channels: 1, pts: 0 }, (f) => true);
 * ```
 */
export function createG711Encoder(
  options: G711EncoderOptions,
  ctx: Pick<StageContext, "codecs" | "suggestBridge" | "reuseOutput">,
): TransformStage & { stats(): G711EncoderStats } {
  const codec: G711Codec = options.codec;
  const info = ctx.codecs.require(codec, NAME);
  const clockRate = info.clockRate;
  const table = ENCODE_TABLES[codec];
  const check = formatCheck(ctx);
  const slab = new Slab(); // payloads are views of shared 64 KB buffers: no buffer of their own per frame
  const reused = new ReusedArrays(); // the payloads, when the next stage borrows its input (`ctx.reuseOutput`)
  let frames = 0;
  let samples = 0;
  return {
    negotiate(input) {
      expectFormat(input, ACCEPTS, check);
      return { kind: "encoded", codec, clockRate };
    },
    process(frame: Frame, emit: Emit) {
      if (frame.kind !== "pcm" || frame.sampleRate !== 8000 || frame.channels !== 1) {
        throw frameRefusal(frame, ACCEPTS, check);
      }
      const pcm = frame.samples;
      const n = pcm.length;
      const payload = ctx.reuseOutput === true ? reused.uint8(n) : slab.uint8(n);
      encodeWith(table, pcm, payload, n);
      frames++;
      samples += n;
      const out: EncodedFrame = { kind: "encoded", codec, clockRate, payload, pts: frame.pts };
      if (frame.type !== undefined) out.type = frame.type;
      return emit(out);
    },
    stats: () => ({ frames, samples }),
  };
}

/**
 * The `g711-encoder` plugin: encodes pcm 8000 Hz mono to PCMU or PCMA, one byte per sample,
 * by a 65 536-entry table lookup. The frame's pts and type are carried through.
 */
export default definePlugin({
  name: NAME,
  kind: "transform",
  description: "Encodes pcm 8000 Hz mono to G.711 PCMU (μ-law) or PCMA (A-law)",
  accepts: ACCEPTS,
  produces: { kind: "encoded", clockRate: 8000 },
  /** Reads each frame only while processing it (see `PluginDefinition.borrowsInput`). */
  borrowsInput: true,
  options: g711EncoderOptions,
  codecs: G711_CODECS,
  /** Bridges pcm → encoded G.711 (any law, or the one asked for). */
  bridges(from: Format, to: Format): StageConfig | undefined {
    if (from.kind !== "pcm" || to.kind !== "encoded") return undefined;
    if (to.codec !== undefined && !isG711(to.codec)) return undefined;
    if (to.clockRate !== undefined && to.clockRate !== 8000) return undefined;
    return to.codec ? { use: NAME, codec: to.codec } : { use: NAME };
  },
  create: (options, ctx) => createG711Encoder(options, ctx),
});
