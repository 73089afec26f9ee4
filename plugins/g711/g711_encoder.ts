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
import { type Codec, type EncodedFrame, type Format, formatToString, type Frame } from "../../core/frame.ts";
import { definePlugin, type Emit, FormatError, type TransformStage } from "../../core/stage.ts";
import { Slab } from "../../core/slab.ts";
import { ENCODE_TABLES } from "./tables.ts";

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
const WANT: Format = { kind: "pcm", sampleRate: 8000, channels: 1 };

/** Why `input` cannot feed the encoder, with what to change; undefined when it can. */
function refusal(input: Format): string | undefined {
  const head = `${NAME} expects ${formatToString(WANT)}, but gets ${formatToString(input)}`;
  if (input.kind === "encoded" || input.kind === "rtp") {
    return `${head}: it encodes linear PCM; insert a decoder (e.g. {"use": "g711-decoder"}) before it, ` +
      `or remove it if the audio is already encoded`;
  }
  if (input.kind !== "pcm") return `${head}: connect it after a stage that produces pcm`;
  if (
    (input.sampleRate !== undefined && input.sampleRate !== 8000) ||
    (input.channels !== undefined && input.channels !== 1)
  ) {
    return `${head}: insert {"use": "resampler", "rate": 8000, "channels": 1} before it`;
  }
  return undefined;
}

/** Statistics of a `g711-encoder` stage. */
export interface G711EncoderStats {
  /** Frames encoded. */
  frames: number;
  /** Samples encoded. */
  samples: number;
}

/**
 * Creates an encoder stage (what the plugin's factory returns).
 *
 * @example
 * ```ts
 * const stage = createG711Encoder({ codec: "PCMU" });
 * stage.process({ kind: "pcm", samples: new Int16Array(160), sampleRate: 8000, channels: 1, pts: 0 }, (f) => true);
 * ```
 */
export function createG711Encoder(options: G711EncoderOptions): TransformStage & { stats(): G711EncoderStats } {
  const codec: Codec = options.codec;
  const table = ENCODE_TABLES[codec];
  const slab = new Slab(); // payloads are views of shared 64 KB buffers: no buffer of their own per frame
  let frames = 0;
  let samples = 0;
  return {
    negotiate(input) {
      if (!input) throw new FormatError(`${NAME} cannot be a source: put it after a stage that produces pcm`);
      const why = refusal(input);
      if (why) throw new FormatError(why);
      return { kind: "encoded", codec, clockRate: 8000 };
    },
    process(frame: Frame, emit: Emit) {
      if (frame.kind !== "pcm") throw new Error(refusal({ kind: frame.kind }));
      if (frame.sampleRate !== 8000 || frame.channels !== 1) {
        throw new Error(refusal({ kind: "pcm", sampleRate: frame.sampleRate, channels: frame.channels }));
      }
      const pcm = frame.samples;
      const n = pcm.length;
      const payload = slab.uint8(n);
      for (let i = 0; i < n; i++) payload[i] = table[pcm[i] & 0xffff];
      frames++;
      samples += n;
      const out: EncodedFrame = { kind: "encoded", codec, clockRate: 8000, payload, pts: frame.pts };
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
  accepts: [WANT],
  produces: { kind: "encoded", clockRate: 8000 },
  options: g711EncoderOptions,
  create: (options) => createG711Encoder(options),
});
