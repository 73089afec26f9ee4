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
import { g711LoopsFor, NATIVE_MIN_SAMPLES } from "./_native_g711.ts";

function mulawDecodeSample(code: number): number {
  const c = ~code & 0xff;
  const e = (c >> 4) & 7;
  const v = ((((c & 0x0f) << 3) + 0x84) << e) - 0x84;
  return c & 0x80 ? -v : v;
}

function alawDecodeSample(code: number): number {
  const c = code ^ 0x55;
  const e = (c >> 4) & 7, m = c & 0x0f;
  const v = e === 0 ? (m << 4) + 8 : ((m << 4) + 0x108) << (e - 1);
  return c & 0x80 ? v : -v;
}

/**
 * A 65 536-entry encode table, filled run by run: G.711 maps each segment and mantissa to one contiguous range of
 * magnitudes, so the table is 2 × 128 `fill` calls over ranges computed from the segment arithmetic (written at
 * each table below; a test compares every entry with `alawmulaw`), rather than 65 536 calls of an encoder, which at
 * start-up, before the JIT has warmed up, took tens of milliseconds (and a search for each run's end, 5-25 ms).
 *
 * `first(e, m)` is the smallest magnitude that encodes to segment `e`, mantissa `m` (a negative value: from 0);
 * the magnitudes above the last code's first (those the law clips) all encode to that code. `code(negative, e, m)`
 * is the code byte.
 */
function buildEncodeTable(
  first: (e: number, m: number) => number,
  code: (negative: boolean, e: number, m: number) => number,
): Uint8Array {
  const table = new Uint8Array(65536);
  for (let e = 0; e < 8; e++) {
    for (let m = 0; m < 16; m++) {
      const from = Math.max(0, first(e, m));
      // The last magnitude of this code: one before the next code's first, or everything up to the top.
      const last = e === 7 && m === 15 ? 32768 : first(m === 15 ? e + 1 : e, m === 15 ? 0 : m + 1) - 1;
      if (last < from) continue;
      // Positive samples 0..32767 at indices 0..32767 (magnitudes above `clip` encode like `clip`).
      const posLast = Math.min(last, 32767);
      if (from <= posLast) table.fill(code(false, e, m), from, posLast + 1);
      // Negative samples −1..−32768 at indices 65535 down to 32768 (magnitude 1..32768).
      const negFrom = Math.max(from, 1);
      if (negFrom <= last) table.fill(code(true, e, m), 65536 - last, 65536 - negFrom + 1);
    }
  }
  return table;
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
export const MULAW_ENCODE: Uint8Array = buildEncodeTable(
  // µ-law: the magnitude is clipped at 32635 and biased by 0x84; segment e and mantissa m take biased magnitudes
  // [(16 + m) << (e + 3), (17 + m) << (e + 3)); code = ~(sign 0x80 | e << 4 | m).
  (e, m) => ((16 + m) << (e + 3)) - 0x84,
  (negative, e, m) => ~((negative ? 0x80 : 0) | (e << 4) | m) & 0xff,
);

/**
 * A-law (PCMA) encode table: `ALAW_ENCODE[sample & 0xFFFF]` is the code byte of a 16-bit sample.
 *
 * @example
 * ```ts
 * ALAW_ENCODE[0 & 0xffff]; // 0xd5
 * ```
 */
export const ALAW_ENCODE: Uint8Array = buildEncodeTable(
  // A-law: the magnitude is clipped at 32767; segment 0 and mantissa m take [m << 4, (m + 1) << 4), segment e > 0
  // [(16 + m) << (e + 3), (17 + m) << (e + 3)); code = (e << 4 | m) XOR 0x55, with the sign bit set for ≥ 0.
  (e, m) => (e === 0 ? m << 4 : (16 + m) << (e + 3)),
  (negative, e, m) => ((e << 4) | m) ^ (negative ? 0x55 : 0xd5),
);

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
  encodeWith(table, samples, out, samples.length);
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
  decodeWith(table, payload, out, payload.length);
  return out;
}

/*
 * The two loops are functions of their own, called by every encoder and decoder here, and nothing else is in them.
 * Written inside a stage's `process`, V8 compiled the loop on the stack (OSR) during the first long frame, before
 * the object literal after it had ever run; that code then bailed out at the literal at the end of every call
 * ("insufficient type feedback") until the whole function's optimized compile was done, and ~24 one-second frames
 * of a 600 s transcode ran most of their loop in the interpreter. A function with only the loop has no such literal.
 *
 * A long frame (NATIVE_MIN_SAMPLES or more, e.g. a transcode's one-second frames) goes to the C loops of
 * native/g711.c where the library loads, once long frames have added up to 960 000 samples, encoded or decoded
 * (NATIVE_AFTER_SAMPLES: loading the library costs what they save on about that much). They give the same bytes:
 * 4.8 million samples of a 600 s transcode took ~7 ms to encode and as many to decode here, ~1 and ~2 ms there.
 */

/**
 * Encodes `n` samples with an encode table ({@linkcode ENCODE_TABLES}): `out[i] = table[samples[i] & 0xffff]`.
 * {@linkcode encode} with the table chosen: for callers that encode many frames of one law. A long run (1 024
 * samples or more) of either law's table is encoded by the C loops where `native/build/libvoxg711.so` loads, once the
 * process's long runs have added up to 960 000 samples, encoded or decoded (the same bytes).
 *
 * @example
 * ```ts
 * const out = new Uint8Array(2);
 * encodeWith(ENCODE_TABLES.PCMU, new Int16Array([0, -1]), out, 2); // out: [0xff, 0x7f]
 * ```
 */
export function encodeWith(table: Uint8Array, samples: Int16Array, out: Uint8Array, n: number): void {
  const law = table === MULAW_ENCODE || table === ALAW_ENCODE;
  if (law && n >= NATIVE_MIN_SAMPLES && (n | 0) === n && samples.length >= n && out.length >= n) {
    const c = g711LoopsFor(n);
    if (c) return table === MULAW_ENCODE ? c.mulawEncode(samples, out, n) : c.alawEncode(samples, out, n);
  }
  for (let i = 0; i < n; i++) out[i] = table[samples[i] & 0xffff];
}

/**
 * Decodes `n` code bytes with a decode table ({@linkcode DECODE_TABLES}): `out[i] = table[payload[i]]`.
 * {@linkcode decode} with the table chosen: for callers that decode many frames of one law. A long run (1 024
 * codes or more) is decoded by the C loop where `native/build/libvoxg711.so` loads, once the process's long runs have
 * added up to 960 000 samples, encoded or decoded (with the same table).
 *
 * @example
 * ```ts
 * const out = new Int16Array(1);
 * decodeWith(DECODE_TABLES.PCMA, new Uint8Array([0xd5]), out, 1); // out: [8]
 * ```
 */
export function decodeWith(table: Int16Array, payload: Uint8Array, out: Int16Array, n: number): void {
  if (n >= NATIVE_MIN_SAMPLES && (n | 0) === n && payload.length >= n && out.length >= n && table.length === 256) {
    const c = g711LoopsFor(n);
    if (c) return c.decode(payload, out, n, table);
  }
  for (let i = 0; i < n; i++) out[i] = table[payload[i]];
}
