/**
 * An example codec plugin folder: the L16 codec (16-bit linear PCM, dynamic RTP
 * payload type) with its encoder and decoder stages. Adding a codec to voxpipe
 * is this folder: the codec's registration tells the RTP stages, the jitter
 * buffer and SDP everything they need.
 *
 * Use it from a pipeline file by path (`"use": "../examples/plugins/l16/l16_encoder.ts"`:
 * loading a stage registers its codec), or in a program:
 *
 * @example
 * ```ts
 * import { createRegistry } from "../../../mod.ts";
 * import { plugins } from "./mod.ts";
 * const registry = createRegistry();
 * for (const p of plugins) registry.register(p); // registers L16 with them
 * ```
 *
 * @module
 */
import type { CodecInfo } from "../../../core/codec.ts";
import type { AnyPlugin } from "../../../core/stage.ts";
import { L16 } from "./codec.ts";
import l16Encoder from "./l16_encoder.ts";
import l16Decoder from "./l16_decoder.ts";

export { decodeL16, encodeL16, FadeConcealer, L16 } from "./codec.ts";

/** The stages of this folder. */
export const plugins: AnyPlugin[] = [l16Encoder, l16Decoder];

/** The codecs this folder registers. */
export const codecs: readonly CodecInfo[] = [L16];
