/**
 * G.711 lookup tables and the encode/decode functions built on them.
 *
 * The tables are built once, when this module loads, by the G.711 segment
 * arithmetic below (the same results as `alawmulaw`, the reference the tests
 * compare against on every input; computing them here spares start-up the
 * loading of a CommonJS package): a 65 536-entry encode table per codec,
 * indexed by the 16-bit two's-complement pattern of the sample (`sample & 0xFFFF`),
 * and a 256-entry decode table per codec. Encoding and decoding are then one
 * table read per sample.
 *
 * @example
 * ```ts
 * import { decode, encode } from "./tables.ts";
 * const bytes = encode("PCMU", new Int16Array([0, 1000, -1000]));
 * const back = decode("PCMU", bytes); // Int16Array [0, 988, -988]
 * ```
 *
 * @module
 */
import type { Codec } from "../../core/frame.ts";

/** Segment (exponent) of a positive value: 7 when bit 14 is set, down to 0 (bit 7 clear and below). */
function segment(v: number): number {
  let e = 7;
  while (e > 0 && (v & (0x4000 >> (7 - e))) === 0) e--;
  return e;
}

/** µ-law: bias 0x84, clip at 32635, code = ~(sign | segment << 4 | 4 mantissa bits). */
function mulawEncodeSample(sample: number): number {
  let s = sample, sign = 0;
  if (s < 0) (sign = 0x80, s = -s);
  if (s > 32635) s = 32635;
  s += 0x84;
  const e = segment(s);
  return ~(sign | (e << 4) | ((s >> (e + 3)) & 0x0f)) & 0xff;
}

function mulawDecodeSample(code: number): number {
  const c = ~code & 0xff;
  const e = (c >> 4) & 7;
  const v = ((((c & 0x0f) << 3) + 0x84) << e) - 0x84;
  return c & 0x80 ? -v : v;
}

/** A-law: segment and 4 mantissa bits of the magnitude, even bits inverted (XOR 0x55), sign bit set for ≥ 0. */
function alawEncodeSample(sample: number): number {
  let s = sample, mask = 0xd5;
  if (s < 0) (mask = 0x55, s = -s);
  if (s > 32767) s = 32767;
  const e = segment(s);
  const m = e === 0 ? (s >> 4) & 0x0f : (s >> (e + 3)) & 0x0f;
  return ((e << 4) | m) ^ mask;
}

function alawDecodeSample(code: number): number {
  const c = code ^ 0x55;
  const e = (c >> 4) & 7, m = c & 0x0f;
  const v = e === 0 ? (m << 4) + 8 : ((m << 4) + 0x108) << (e - 1);
  return c & 0x80 ? v : -v;
}

/**
 * A 65 536-entry encode table, filled run by run: G.711 maps each segment and mantissa to one contiguous range of
 * magnitudes, so the table is 2 × 256 `fill` calls (about 0.1 ms) rather than 65 536 calls of `encodeSample`, which
 * at start-up, before the JIT has warmed up, took tens of milliseconds. Each run's end is found by {@linkcode runEnd}.
 */
function buildEncodeTable(encodeSample: (sample: number) => number): Uint8Array {
  const table = new Uint8Array(65536);
  // Positive samples 0..32767 at indices 0..32767, negative −1..−32768 at 65535 down to 32768.
  let v = 0;
  while (v <= 32767) {
    const code = encodeSample(v) & 0xff;
    const end = runEnd(encodeSample, v, 32767, code);
    table.fill(code, v, end + 1);
    v = end + 1;
  }
  v = 1;
  while (v <= 32768) {
    const code = encodeSample(-v) & 0xff;
    const end = runEnd((m) => encodeSample(-m), v, 32768, code);
    table.fill(code, 65536 - end, 65536 - v + 1);
    v = end + 1;
  }
  return table;
}

/**
 * The last magnitude of the run of `code` that starts at `from` (≤ `max`), found by doubling then bisecting: a
 * G.711 code holds one contiguous range of magnitudes (the law is monotonic), so about 2 log₂(run) calls of `enc`
 * find where it ends.
 */
function runEnd(enc: (magnitude: number) => number, from: number, max: number, code: number): number {
  let lo = from; // enc(lo) === code
  let step = 1;
  while (lo + step <= max && (enc(lo + step) & 0xff) === code) (lo += step, step *= 2);
  let hi = Math.min(lo + step, max + 1); // first magnitude known to differ (or past the end)
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if ((enc(mid) & 0xff) === code) lo = mid;
    else hi = mid;
  }
  return lo;
}

function buildDecodeTable(decodeSample: (code: number) => number): Int16Array {
  const table = new Int16Array(256);
  for (let c = 0; c < 256; c++) table[c] = decodeSample(c);
  return table;
}

/**
 * μ-law (PCMU) encode table: `MULAW_ENCODE[sample & 0xFFFF]` is the code byte of a 16-bit sample.
 *
 * @example
 * ```ts
 * MULAW_ENCODE[0 & 0xffff]; // 0xff
 * ```
 */
export const MULAW_ENCODE: Uint8Array = buildEncodeTable(mulawEncodeSample);

/**
 * A-law (PCMA) encode table: `ALAW_ENCODE[sample & 0xFFFF]` is the code byte of a 16-bit sample.
 *
 * @example
 * ```ts
 * ALAW_ENCODE[0 & 0xffff]; // 0xd5
 * ```
 */
export const ALAW_ENCODE: Uint8Array = buildEncodeTable(alawEncodeSample);

/**
 * μ-law (PCMU) decode table: `MULAW_DECODE[code]` is the 16-bit sample of a code byte.
 *
 * @example
 * ```ts
 * MULAW_DECODE[0xff]; // 0
 * ```
 */
export const MULAW_DECODE: Int16Array = buildDecodeTable(mulawDecodeSample);

/**
 * A-law (PCMA) decode table: `ALAW_DECODE[code]` is the 16-bit sample of a code byte.
 *
 * @example
 * ```ts
 * ALAW_DECODE[0xd5]; // 8
 * ```
 */
export const ALAW_DECODE: Int16Array = buildDecodeTable(alawDecodeSample);

/**
 * The encode table of each codec.
 *
 * @example
 * ```ts
 * ENCODE_TABLES.PCMA === ALAW_ENCODE; // true
 * ```
 */
export const ENCODE_TABLES: Readonly<Record<Codec, Uint8Array>> = { PCMU: MULAW_ENCODE, PCMA: ALAW_ENCODE };

/**
 * The decode table of each codec.
 *
 * @example
 * ```ts
 * DECODE_TABLES.PCMU === MULAW_DECODE; // true
 * ```
 */
export const DECODE_TABLES: Readonly<Record<Codec, Int16Array>> = { PCMU: MULAW_DECODE, PCMA: ALAW_DECODE };

/**
 * The code byte of digital silence (a zero sample) in each codec: 0xFF for PCMU (decodes to 0),
 * 0xD5 for PCMA (decodes to 8: A-law has no exact zero).
 *
 * @example
 * ```ts
 * new Uint8Array(160).fill(SILENCE_CODE.PCMU); // 20 ms of PCMU silence
 * ```
 */
export const SILENCE_CODE: Readonly<Record<Codec, number>> = {
  PCMU: MULAW_ENCODE[0],
  PCMA: ALAW_ENCODE[0],
};

/**
 * Encodes 16-bit samples to G.711 code bytes, one byte per sample.
 *
 * @param codec `PCMU` (μ-law) or `PCMA` (A-law)
 * @param samples the samples to encode
 * @param out where to write (length at least `samples.length`); default: a new array
 * @returns `out`, or a new array of `samples.length` bytes
 *
 * @example
 * ```ts
 * encode("PCMA", new Int16Array([0, 0])); // Uint8Array [0xd5, 0xd5]
 * ```
 */
export function encode(
  codec: Codec,
  samples: Int16Array,
  out: Uint8Array = new Uint8Array(samples.length),
): Uint8Array {
  const table = ENCODE_TABLES[codec];
  if (!table) throw new RangeError(`not a G.711 codec: ${JSON.stringify(codec)} (expected "PCMU" or "PCMA")`);
  const n = samples.length;
  for (let i = 0; i < n; i++) out[i] = table[samples[i] & 0xffff];
  return out;
}

/**
 * Decodes G.711 code bytes to 16-bit samples, one sample per byte.
 *
 * @param codec `PCMU` (μ-law) or `PCMA` (A-law)
 * @param payload the code bytes
 * @param out where to write (length at least `payload.length`); default: a new array
 * @returns `out`, or a new array of `payload.length` samples
 *
 * @example
 * ```ts
 * decode("PCMU", new Uint8Array([0xff, 0x7f])); // Int16Array [0, 0]
 * ```
 */
export function decode(
  codec: Codec,
  payload: Uint8Array,
  out: Int16Array = new Int16Array(payload.length),
): Int16Array {
  const table = DECODE_TABLES[codec];
  if (!table) throw new RangeError(`not a G.711 codec: ${JSON.stringify(codec)} (expected "PCMU" or "PCMA")`);
  const n = payload.length;
  for (let i = 0; i < n; i++) out[i] = table[payload[i]];
  return out;
}
