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
import { type Codec, type Format, formatToString, type Frame, type PcmFrame } from "../../core/frame.ts";
import type { Logger } from "../../core/log.ts";
import { definePlugin, type Emit, FormatError, type TransformStage } from "../../core/stage.ts";
import { PacketLossConcealer } from "./plc.ts";
import { Slab } from "../../core/slab.ts";
import { DECODE_TABLES } from "./tables.ts";

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
    "Packet loss concealment for frames marked concealed: true = synthesize audio from the recent pitch " +
      "(ITU-T G.711 Appendix I style), false = play silence. Default true.",
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

/**
 * Creates a decoder stage (what the plugin's factory returns).
 *
 * @param options validated options
 * @param log where to warn when the `codec` option overrides a different upstream codec
 *
 * @example
 * ```ts
 * const stage = createG711Decoder({ plc: true });
 * stage.process({ kind: "encoded", codec: "PCMU", clockRate: 8000, payload: new Uint8Array(160), pts: 0 }, () => true);
 * ```
 */
export function createG711Decoder(
  options: G711DecoderOptions,
  log?: Logger,
): TransformStage & { stats(): G711DecoderStats } {
  const override: Codec | undefined = options.codec;
  const plc = options.plc ? new PacketLossConcealer({ sampleRate: 8000 }) : undefined;
  const stats: G711DecoderStats = { frames: 0, decoded: 0, concealed: 0, concealed_samples: 0, silence: 0 };
  const slab = new Slab(); // samples are views of shared 64 KB buffers: no buffer of their own per frame
  let lastLength = DEFAULT_FRAME;

  return {
    negotiate(input) {
      if (!input) throw new FormatError(`${NAME} cannot be a source: put it after a stage that produces encoded G.711`);
      const head = `${NAME} expects encoded PCMU or PCMA 8000 Hz, but gets ${formatToString(input)}`;
      if (input.kind === "rtp") {
        throw new FormatError(`${head}: insert {"use": "jitter-buffer"} before it`);
      }
      if (input.kind === "pcm") throw new FormatError(`${head}: the audio is already decoded; remove the decoder`);
      if (input.kind !== "encoded") {
        throw new FormatError(`${head}: connect it after a stage that produces encoded audio`);
      }
      if (input.clockRate !== undefined && input.clockRate !== 8000) {
        throw new FormatError(`${head}: G.711 runs at 8000 Hz; fix the clock rate of the upstream stage`);
      }
      if (input.codec !== undefined && input.codec !== "PCMU" && input.codec !== "PCMA") {
        throw new FormatError(`${head}: only G.711 can be decoded here`);
      }
      if (!override && !input.codec) {
        throw new FormatError(
          `${NAME} cannot tell the codec: upstream produces ${formatToString(input)} without one; ` +
            `set "codec": "PCMU" or "codec": "PCMA" in its options`,
        );
      }
      if (override && input.codec && override !== input.codec) {
        log?.warn(`codec option ${override} overrides the upstream codec ${input.codec}`);
      }
      return { kind: "pcm", sampleRate: 8000, channels: 1 };
    },

    process(frame: Frame, emit: Emit) {
      if (frame.kind !== "encoded") {
        throw new Error(`${NAME} expects encoded PCMU or PCMA 8000 Hz, but gets a ${frame.kind} frame`);
      }
      const type = frame.type ?? "normal";
      let samples: Int16Array;
      if (type === "normal") {
        const table = DECODE_TABLES[override ?? frame.codec];
        if (!table) throw new Error(`${NAME} cannot decode codec ${frame.codec}: set "codec" in its options`);
        const p = frame.payload;
        const n = p.length;
        samples = slab.int16(n);
        for (let i = 0; i < n; i++) samples[i] = table[p[i]];
        if (plc) plc.receive(samples);
        lastLength = n || lastLength;
        stats.decoded++;
      } else if (type === "silence") {
        samples = new Int16Array(frame.payload.length);
        if (plc) plc.receive(samples);
        stats.silence++;
      } else {
        // A concealment request: the payload's length is the number of samples to make up;
        // an empty payload means "one frame as long as the last real one".
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
 * concealment (or silence with `"plc": false`). pts and type are carried through.
 */
export default definePlugin({
  name: NAME,
  kind: "transform",
  description: "Decodes G.711 PCMU/PCMA to pcm 8000 Hz mono, with packet loss concealment",
  accepts: [{ kind: "encoded", clockRate: 8000 }],
  produces: { kind: "pcm", sampleRate: 8000, channels: 1 } satisfies Format,
  options: g711DecoderOptions,
  create: (options, ctx) => createG711Decoder(options, ctx.log),
});
