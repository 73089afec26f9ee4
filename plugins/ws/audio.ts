/**
 * The audio encodings of the WebSocket bridge, and base64: what a client sends
 * and receives in `RTP:` lines and JSON `media` events. Both are 8 kHz mono:
 *
 * - `l16`: 16-bit signed linear PCM, little-endian, 2 bytes per sample (the
 *   text protocol's default; JSON `audio/l16`);
 * - `mulaw`: G.711 µ-law, 1 byte per sample (JSON `audio/x-mulaw`, its
 *   default; the text protocol's with `?encoding=mulaw` or `ENCODING:mulaw`).
 *
 * @example
 * ```ts
 * const b64 = encodeAudio(new Int16Array([0, 1000, -1000]), "l16"); // "AADoAxj8"
 * decodeAudio(b64, "l16"); // Int16Array [0, 1000, -1000]
 * ```
 *
 * @module
 */
import { MULAW_DECODE, MULAW_ENCODE } from "../g711/tables.ts";

/** An audio encoding a client may choose. */
export type AudioEncoding = "l16" | "mulaw";

/** The JSON protocol's MIME names of the encodings. */
export const MEDIA_TYPES: Readonly<Record<AudioEncoding, string>> = { l16: "audio/l16", mulaw: "audio/x-mulaw" };

/**
 * The encoding named `name`: `l16`, `linear16`, `pcm`, `audio/l16` → `l16`; `mulaw`, `ulaw`, `pcmu`,
 * `audio/x-mulaw`, `audio/basic` → `mulaw` (case-insensitive, parameters after `;` ignored); undefined otherwise.
 */
export function parseEncoding(name: string): AudioEncoding | undefined {
  const n = name.split(";")[0].trim().toLowerCase();
  if (n === "l16" || n === "linear16" || n === "pcm" || n === "audio/l16") return "l16";
  if (n === "mulaw" || n === "ulaw" || n === "pcmu" || n === "audio/x-mulaw" || n === "audio/basic") return "mulaw";
  return undefined;
}

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

// Uint8Array.fromBase64 / toBase64 (TC39 base64 proposal, in V8).
type B64Array = Uint8Array & { toBase64(): string };
const U8 = Uint8Array as unknown as { fromBase64(s: string): Uint8Array };

/** A message's audio could not be decoded: the reason says what was wrong. */
export class AudioFormatError extends Error {
  /**
   * Creates the error.
   * @param message what was wrong
   */
  constructor(message: string) {
    super(message);
    this.name = "AudioFormatError";
  }
}

/** The bytes of `samples` in `encoding`. */
export function samplesToBytes(samples: Int16Array, encoding: AudioEncoding): Uint8Array {
  if (encoding === "mulaw") {
    const out = new Uint8Array(samples.length);
    for (let i = 0; i < samples.length; i++) out[i] = MULAW_ENCODE[samples[i] & 0xffff];
    return out;
  }
  if (LITTLE_ENDIAN) return new Uint8Array(samples.buffer, samples.byteOffset, samples.byteLength);
  const out = new Uint8Array(samples.length * 2);
  const view = new DataView(out.buffer);
  for (let i = 0; i < samples.length; i++) view.setInt16(i * 2, samples[i], true);
  return out;
}

/** The samples of `bytes` in `encoding`; throws {@linkcode AudioFormatError} for an odd number of l16 bytes. */
export function bytesToSamples(bytes: Uint8Array, encoding: AudioEncoding): Int16Array {
  if (encoding === "mulaw") {
    const out = new Int16Array(bytes.length);
    for (let i = 0; i < bytes.length; i++) out[i] = MULAW_DECODE[bytes[i]];
    return out;
  }
  if (bytes.length % 2 !== 0) {
    throw new AudioFormatError(`l16 audio has 2 bytes per sample, got ${bytes.length} bytes (an odd number)`);
  }
  const out = new Int16Array(bytes.length / 2);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let i = 0; i < out.length; i++) out[i] = view.getInt16(i * 2, true);
  return out;
}

/** `samples` in `encoding`, as base64. */
export function encodeAudio(samples: Int16Array, encoding: AudioEncoding): string {
  return (samplesToBytes(samples, encoding) as B64Array).toBase64();
}

/**
 * The samples of a base64 payload in `encoding`; throws {@linkcode AudioFormatError} saying what was wrong
 * (not base64, empty, an odd number of l16 bytes).
 */
export function decodeAudio(base64: string, encoding: AudioEncoding): Int16Array {
  let bytes: Uint8Array;
  try {
    bytes = U8.fromBase64(base64);
  } catch {
    throw new AudioFormatError("the audio payload is not valid base64");
  }
  if (bytes.length === 0) throw new AudioFormatError("the audio payload is empty");
  return bytesToSamples(bytes, encoding);
}
