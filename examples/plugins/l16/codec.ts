/**
 * The codec of this example plugin folder: L16, 16-bit linear PCM in network
 * byte order (RFC 3551 section 4.5.11), at 8000 Hz mono, on a dynamic RTP
 * payload type (SDP assigns one of 96..127 per call). Two bytes per sample, so
 * the RTP stages, the jitter buffer and SDP handle it from this registration
 * alone: nothing in core/ or plugins/rtp/ names it.
 *
 * Concealment: the decoder repeats the last real frame, halving its level for
 * every concealed frame ({@linkcode FadeConcealer}).
 *
 * @example
 * ```ts
 * import { createRegistry } from "../../../mod.ts";
 * const registry = createRegistry();
 * registry.codecs.register(L16);
 * ```
 *
 * @module
 */
import { type CodecInfo, type Concealer, defineCodec } from "../../../core/codec.ts";

/** Samples of magnitude below this count as quiet (about −30 dBFS). */
const QUIET = 1036;

/**
 * Conceals a lost frame by repeating the last real one, at half the level of the frame before (so a long loss
 * fades out). Mono or interleaved; keeps no other state.
 *
 * @example
 * ```ts
 * const c = new FadeConcealer();
 * c.receive(new Int16Array([1000, -1000]));
 * c.conceal(4); // Int16Array [500, -500, 500, -500]
 * ```
 */
export class FadeConcealer implements Concealer {
  #last = new Int16Array(0);
  #gain = 1;

  /** Remembers a real frame; returns it unchanged. */
  receive(samples: Int16Array): Int16Array {
    this.#last = samples.slice();
    this.#gain = 1;
    return samples;
  }

  /** `n` samples: the last real frame repeated, at half the previous level. */
  conceal(n: number): Int16Array {
    const out = new Int16Array(n);
    const src = this.#last;
    this.#gain /= 2;
    if (src.length === 0) return out;
    for (let i = 0; i < n; i++) out[i] = Math.round(src[i % src.length] * this.#gain);
    return out;
  }
}

/**
 * L16 at 8000 Hz mono, dynamic payload type.
 *
 * @example
 * ```ts
 * L16.silence(160).length; // 320 bytes
 * ```
 */
export const L16: CodecInfo = defineCodec({
  name: "L16",
  payloadType: "dynamic",
  clockRate: 8000,
  channels: 1,
  frameSamples: 1,
  frameBytes: 2,
  ptime: 20,
  silence: (samples) => new Uint8Array(2 * samples),
  concealment: () => new FadeConcealer(),
  // How a real-time jitter buffer decodes L16 to time-scale it (and encodes what it plays).
  pcm: () => ({ decode: decodeL16, encode: encodeL16 }),
  isQuiet(payload) {
    for (let i = 0; i + 1 < payload.length; i += 2) {
      const v = ((payload[i] << 24) >> 16) | payload[i + 1];
      if (v >= QUIET || v <= -QUIET) return false;
    }
    return true;
  },
});

/**
 * Samples → L16 payload (big-endian).
 *
 * @example
 * ```ts
 * encodeL16(new Int16Array([1, -2])); // Uint8Array [0x00, 0x01, 0xff, 0xfe]
 * ```
 */
export function encodeL16(samples: Int16Array): Uint8Array {
  const out = new Uint8Array(samples.length * 2);
  for (let i = 0; i < samples.length; i++) {
    const v = samples[i];
    out[2 * i] = (v >> 8) & 0xff;
    out[2 * i + 1] = v & 0xff;
  }
  return out;
}

/**
 * L16 payload (big-endian) → samples.
 *
 * @example
 * ```ts
 * decodeL16(new Uint8Array([0x00, 0x01, 0xff, 0xfe])); // Int16Array [1, -2]
 * ```
 */
export function decodeL16(payload: Uint8Array): Int16Array {
  const out = new Int16Array(payload.length >> 1);
  for (let i = 0; i < out.length; i++) out[i] = (payload[2 * i] << 8) | payload[2 * i + 1];
  return out;
}
