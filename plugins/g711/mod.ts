/**
 * The g711 plugin family: the G.711 codecs it registers (PCMU, PCMA: payload type,
 * clock rate, silence, concealment), the `g711-encoder` and `g711-decoder` stages,
 * the G.711 tables and packet loss concealment.
 *
 * @module
 */
import type { CodecInfo } from "../../core/codec.ts";
import type { AnyPlugin } from "../../core/stage.ts";
import { G711_CODECS } from "./codecs.ts";
import g711Encoder from "./g711_encoder.ts";
import g711Decoder from "./g711_decoder.ts";

export * from "./tables.ts";
export { G711_CODECS, type G711Codec, isG711, PCMA, PCMU } from "./codecs.ts";
export { PacketLossConcealer, type PlcOptions } from "./plc.ts";
export { createG711Encoder, type G711EncoderOptions, type G711EncoderStats } from "./g711_encoder.ts";
export { createG711Decoder, type G711DecoderOptions, type G711DecoderStats } from "./g711_decoder.ts";

/** The stage plugins of this family, registered as built-ins. */
export const plugins: AnyPlugin[] = [g711Encoder, g711Decoder];

/** The codecs this family registers, in default preference order: PCMU, PCMA. */
export const codecs: readonly CodecInfo[] = G711_CODECS;
