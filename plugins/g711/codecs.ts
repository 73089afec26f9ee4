/**
 * The G.711 codecs as the g711 plugin registers them: PCMU (μ-law, static RTP
 * payload type 0) and PCMA (A-law, 8), 8000 Hz mono, one byte per sample, 20 ms
 * packets by default, silence = the code of a zero sample, concealment by the
 * pitch-repeating {@linkcode PacketLossConcealer}, quiet frames told by their
 * segment, and a table-lookup transcoder to and from PCM (the real-time jitter
 * buffer time-scales the audio in PCM).
 *
 * @example
 * ```ts
 * import { CodecRegistry } from "../../core/codec.ts";
 * const codecs = new CodecRegistry(G711_CODECS);
 * codecs.byPayloadType(8) === PCMA; // true
 * ```
 *
 * @module
 */
import { type CodecInfo, defineCodec, type PcmTranscoder } from "../../core/codec.ts";
import { PacketLossConcealer } from "./plc.ts";
import { DECODE_TABLES, decodeWith, ENCODE_TABLES, encodeWith, SILENCE_CODE } from "./tables.ts";

/** Names of the G.711 codecs. */
export type G711Codec = "PCMU" | "PCMA";

/**
 * True when every code of a G.711 payload is in segment 0..2 (below about −30 dBFS). `flip` is what the law XORs
 * its codes with before the segment bits read as magnitude: 0xFF for μ-law (inverted codes), 0x55 for A-law.
 */
function quiet(payload: Uint8Array, flip: number): boolean {
  for (let i = 0; i < payload.length; i++) {
    if (((payload[i] ^ flip) & 0x70) > 0x20) return false;
  }
  return true;
}

/** The law's transcoder: two table lookups, no state (one object serves every stream). */
function transcoder(name: G711Codec): PcmTranscoder {
  const dec = DECODE_TABLES[name];
  const enc = ENCODE_TABLES[name];
  return {
    decode(payload) {
      const out = new Int16Array(payload.length);
      decodeWith(dec, payload, out, payload.length);
      return out;
    },
    encode(samples) {
      const out = new Uint8Array(samples.length);
      encodeWith(enc, samples, out, samples.length);
      return out;
    },
  };
}

function g711(name: G711Codec, payloadType: number, flip: number): CodecInfo {
  const code = SILENCE_CODE[name];
  const pcm = transcoder(name);
  return defineCodec({
    name,
    payloadType,
    clockRate: 8000,
    channels: 1,
    frameSamples: 1,
    frameBytes: 1,
    ptime: 20,
    silence: (samples) => new Uint8Array(samples).fill(code),
    concealment: ({ sampleRate }) => new PacketLossConcealer({ sampleRate }),
    isQuiet: (payload) => quiet(payload, flip),
    pcm: () => pcm,
  });
}

/**
 * PCMU: G.711 μ-law, RTP payload type 0 (RFC 3551), 8000 Hz mono.
 *
 * @example
 * ```ts
 * PCMU.silence(160); // 160 × 0xFF
 * ```
 */
export const PCMU: CodecInfo = g711("PCMU", 0, 0xff);

/**
 * PCMA: G.711 A-law, RTP payload type 8 (RFC 3551), 8000 Hz mono.
 *
 * @example
 * ```ts
 * PCMA.silence(160); // 160 × 0xD5
 * ```
 */
export const PCMA: CodecInfo = g711("PCMA", 8, 0x55);

/**
 * The G.711 codecs, in default preference order (PCMU first).
 *
 * @example
 * ```ts
 * G711_CODECS.map((c) => c.name); // ["PCMU", "PCMA"]
 * ```
 */
export const G711_CODECS: readonly CodecInfo[] = [PCMU, PCMA];

/**
 * True when `name` is a G.711 codec name.
 *
 * @example
 * ```ts
 * isG711("PCMA"); // true
 * ```
 */
export function isG711(name: string | undefined): name is G711Codec {
  return name === "PCMU" || name === "PCMA";
}
