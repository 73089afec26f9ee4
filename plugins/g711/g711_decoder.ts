/**
 * The `g711-decoder` stage: G.711 encoded frames → pcm 8000 Hz mono, with packet loss
 * concealment for frames marked `concealed`.
 *
 * @example Pipeline config
 * ```json
 * { "use": "g711-decoder", "plc": true }
 * ```
 *
 * @module
 */
import { z } from "zod";
import type { Concealer } from "../../core/codec.ts";
import { type Format, formatToString, type Frame, type PcmFrame } from "../../core/frame.ts";
import { expectFormat, type FormatCheck, frameRefusal, stageConfigText } from "../../core/format_check.ts";
import type { Logger } from "../../core/log.ts";
import type { StageConfig } from "../../core/pipeline.ts";
import { definePlugin, type Emit, FormatError, type StageContext, type TransformStage } from "../../core/stage.ts";
import { G711_CODECS, type G711Codec, isG711 } from "./codecs.ts";
import { ReusedArrays, Slab } from "../../core/slab.ts";
import { DECODE_TABLES, decodeWith } from "./tables.ts";

/**
 * Options of the `g711-decoder` stage.
 *
 * @example
 * ```ts
 * g711DecoderOptions.parse({}); // { plc: true }
 * ```
 */
export const g711DecoderOptions = z.object({
  codec: z.enum(["PCMU", "PCMA"]).optional().describe(
    'G.711 law of the input: "PCMU" or "PCMA". Default: taken from the upstream format (and from each frame); ' +
      "required when upstream does not say it; when set, it overrides what upstream says.",
  ),
  plc: z.boolean().default(true).describe(
    "Packet loss concealment for frames marked concealed: true = the codec's concealment (for G.711: synthesize " +
      "audio from the recent pitch, ITU-T G.711 Appendix I style), false = play silence. Default true.",
  ),
});

/** Validated options of the `g711-decoder` stage. */
export type G711DecoderOptions = z.output<typeof g711DecoderOptions>;

/** Statistics of a `g711-decoder` stage. */
export interface G711DecoderStats {
  /** Frames output (all types). */
  frames: number;
  /** Frames decoded from real payload (`normal`). */
  decoded: number;
  /** Frames marked `concealed` (lost), synthesized or silenced. */
  concealed: number;
  /** Samples output for concealed frames. */
  concealed_samples: number;
  /** Frames marked `silence`. */
  silence: number;
}

const NAME = "g711-decoder";
/** Frame length assumed for a concealment request with an empty payload before any real frame: 20 ms. */
const DEFAULT_FRAME = 160;
/** What the decoder takes: encoded audio at 8000 Hz (the law is checked separately). */
const ACCEPTS: Format[] = [{ kind: "encoded", clockRate: 8000 }];

/** How the decoder checks its input. */
function formatCheck(ctx: Pick<StageContext, "suggestBridge"> | undefined): FormatCheck {
  return {
    stage: NAME,
    ctx,
    advice(input, field) {
      if (input.kind === "pcm") return "the audio is already decoded; remove the decoder";
      if (field === "clockRate") return "G.711 runs at 8000 Hz; fix the clock rate of the upstream stage";
      return undefined;
    },
  };
}

/**
 * Creates a decoder stage (what the plugin's factory returns). The codec's concealment comes from its
 * registration in `ctx.codecs` (the g711 plugin registers both laws with its packet loss concealer).
 *
 * @param options validated options
 * @param ctx the codecs to look the law up in, and bridge suggestions for refusals
 * @param log where to warn when the `codec` option overrides a different upstream codec
 *
 * @example
 * ```ts
 * const stage = createG711Decoder({ plc: true }, ctx);
 * stage.process({ kind: "encoded", codec: "PCMU", clockRate: 8000, payload: new Uint8Array(160), pts: 0 }, () => true);
 * ```
 */
export function createG711Decoder(
  options: G711DecoderOptions,
  ctx: Pick<StageContext, "codecs" | "suggestBridge" | "reuseOutput">,
  log?: Logger,
): TransformStage & { stats(): G711DecoderStats } {
  const override: G711Codec | undefined = options.codec;
  const check = formatCheck(ctx);
  /** The concealer, made from the codec's registration once the codec is known (undefined: silence). */
  let plc: Concealer | undefined;
  let plcReady = !options.plc;
  const setupConcealment = (codec: string) => {
    plcReady = true;
    const info = ctx.codecs.require(codec, NAME);
    plc = info.concealment === "none" ? undefined : info.concealment({ sampleRate: 8000, channels: 1 });
  };
  const stats: G711DecoderStats = { frames: 0, decoded: 0, concealed: 0, concealed_samples: 0, silence: 0 };
  const slab = new Slab(); // samples are views of shared 64 KB buffers: no buffer of their own per frame
  let lastLength = DEFAULT_FRAME;
  const reused = new ReusedArrays(); // the samples, when the next stage borrows its input (`ctx.reuseOutput`)

  return {
    negotiate(input) {
      expectFormat(input, ACCEPTS, check);
      const fmt = input!;
      if (fmt.codec !== undefined && !isG711(fmt.codec)) {
        const decoder = ctx.suggestBridge(fmt, { kind: "pcm" });
        throw new FormatError(
          `${NAME} decodes G.711 (PCMU, PCMA) only, but gets ${formatToString(fmt)}: ${
            decoder ? `use ${stageConfigText(decoder)} instead` : "use a decoder of that codec instead"
          }`,
        );
      }
      if (!override && !fmt.codec) {
        throw new FormatError(
          `${NAME} cannot tell the codec: upstream produces ${formatToString(fmt)} without one; ` +
            `set "codec": "PCMU" or "codec": "PCMA" in its options`,
        );
      }
      if (override && fmt.codec && override !== fmt.codec) {
        log?.warn(`codec option ${override} overrides the upstream codec ${fmt.codec}`);
      }
      if (!plcReady) {
        try {
          setupConcealment(override ?? fmt.codec!);
        } catch (e) {
          throw new FormatError(e instanceof Error ? e.message : String(e));
        }
      }
      return { kind: "pcm", sampleRate: 8000, channels: 1 };
    },

    process(frame: Frame, emit: Emit) {
      if (frame.kind !== "encoded") throw frameRefusal(frame, ACCEPTS, check);
      if (!plcReady) setupConcealment(override ?? frame.codec);
      const type = frame.type ?? "normal";
      let samples: Int16Array;
      if (frame.decoded) {
        // Decoded (time-scaled, concealed) upstream already: play it as it is. This stage borrows its input (its
        // plugin says so): the input's array goes on only to a next stage that borrows too, else a copy does.
        samples = ctx.reuseOutput === true ? frame.decoded : frame.decoded.slice();
        if (type === "normal") {
          if (plc) plc.receive(samples.slice());
          lastLength = samples.length || lastLength;
          stats.decoded++;
        } else if (type === "silence") stats.silence++;
        else {
          if (!options.plc) samples = new Int16Array(samples.length);
          stats.concealed++;
          stats.concealed_samples += samples.length;
        }
      } else if (type === "normal") {
        const table = DECODE_TABLES[override ?? frame.codec];
        if (!table) throw new Error(`${NAME} cannot decode codec ${frame.codec}: set "codec" in its options`);
        const p = frame.payload;
        const n = p.length;
        samples = ctx.reuseOutput === true ? reused.int16(n) : slab.int16(n);
        decodeWith(table, p, samples, n);
        if (plc) plc.receive(samples);
        lastLength = n || lastLength;
        stats.decoded++;
      } else if (type === "silence") {
        samples = new Int16Array(frame.payload.length);
        if (plc) plc.receive(samples);
        stats.silence++;
      } else {
        const n = frame.payload.length || lastLength;
        samples = plc ? plc.conceal(n) : new Int16Array(n);
        stats.concealed++;
        stats.concealed_samples += n;
      }
      stats.frames++;
      const out: PcmFrame = { kind: "pcm", samples, sampleRate: 8000, channels: 1, pts: frame.pts };
      if (frame.type !== undefined) out.type = frame.type;
      return emit(out);
    },

    stats: () => ({ ...stats }),
  };
}

/**
 * The `g711-decoder` plugin: decodes PCMU or PCMA to pcm 8000 Hz mono by a 256-entry table
 * lookup. `silence` frames become zeros; `concealed` frames are synthesized by packet loss
 * concealment (or silence with `"plc": false`). A frame that carries its `decoded` samples
 * (the real-time jitter buffer's time-scaled or concealed audio) plays them as they are.
 * pts and type are carried through.
 */
export default definePlugin({
  name: NAME,
  kind: "transform",
  description: "Decodes G.711 PCMU/PCMA to pcm 8000 Hz mono, with packet loss concealment",
  accepts: ACCEPTS,
  produces: { kind: "pcm", sampleRate: 8000, channels: 1 } satisfies Format,
  options: g711DecoderOptions,
  codecs: G711_CODECS,
  /** Bridges encoded G.711 (or encoded audio of no stated codec) → pcm. */
  bridges(from: Format, to: Format): StageConfig | undefined {
    if (from.kind !== "encoded" || to.kind !== "pcm") return undefined;
    if (from.codec !== undefined && !isG711(from.codec)) return undefined;
    if (from.clockRate !== undefined && from.clockRate !== 8000) return undefined;
    return { use: NAME };
  },
  /** Reads each frame only while processing it (see `PluginDefinition.borrowsInput`). */
  borrowsInput: true,
  create: (options, ctx) => createG711Decoder(options, ctx, ctx.log),
});
