/**
 * A small seeded mutation fuzzer: from a valid input, makes a hostile one by byte flips, insertions, deletions,
 * truncation, duplicated lines, huge numbers, long runs of a repeated piece, Unicode, NULs and CR/LF mixes. The same
 * seed gives the same inputs on every run (tests/fuzz_test.ts, bench/fuzz.ts).
 *
 * @module
 */
import { type Random, seededRandom } from "../core/random.ts";

const te = new TextEncoder();

/** Bytes that mean something to the parsers fuzzed: separators, quotes, line ends, NUL, high bytes. */
const SPECIAL = te.encode(' \t\r\n:;,=<>"\\/@?&#%[]()*{}\x00\x7f\x80\xff0-+.');

/** Pieces inserted as text: numbers at and past field limits, Unicode, escapes, separators, invalid UTF-8. */
const TOKENS: Uint8Array[] = [
  "0",
  "-1",
  "65535",
  "65536",
  "255",
  "256",
  "4294967295",
  "4294967296",
  "2147483648",
  "99999999999999999999999999",
  "1e309",
  "NaN",
  "Infinity",
  "0x10",
  "00000000000000000000000001",
  "\u00e9",
  "\u2028",
  "\u{1F600}",
  "\ufeff",
  "%00",
  "%",
  "%zz",
  "\\",
  '"',
  '\\"',
  "\r",
  "\n",
  "\r\n",
  "\r\r\n",
  "\n\n",
  "\r\n\r\n",
  " ",
  "\t",
  ";",
  ";;",
  ",",
  ",,",
  "=",
  "<",
  ">",
  "::",
  "[",
  "]",
  "[::1]",
  "__proto__",
  "constructor",
  "toString",
  "undefined",
  "null",
  "{}",
  "[]",
  '{"toString":1}',
  '{"valueOf":{}}',
  "\x00",
].map((s) => te.encode(s)).concat([
  new Uint8Array([0xc3]),
  new Uint8Array([0xed, 0xa0, 0x80]),
  new Uint8Array([0xff, 0xfe]),
]);

function int(rnd: Random, n: number): number {
  return Math.floor(rnd() * n);
}

function concat(...parts: Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** Start offsets of the lines of `b` (after each LF), 0 included. */
function lineStarts(b: Uint8Array): number[] {
  const out = [0];
  for (let i = 0; i < b.length; i++) if (b[i] === 10 && i + 1 < b.length) out.push(i + 1);
  return out;
}

/** A repeated piece: a whole run longer than the limits. */
function repeat(piece: Uint8Array, times: number): Uint8Array {
  const out = new Uint8Array(piece.length * times);
  for (let i = 0; i < times; i++) out.set(piece, i * piece.length);
  return out;
}

/** One mutation of `b`; `other` is another seed (for splicing); `maxLen` bounds what is built. */
function mutateOnce(b: Uint8Array, rnd: Random, other: Uint8Array, maxLen: number): Uint8Array {
  const at = b.length ? int(rnd, b.length + 1) : 0;
  switch (int(rnd, 16)) {
    case 0: { // flip one bit
      if (!b.length) return b;
      const c = b.slice();
      c[int(rnd, c.length)] ^= 1 << int(rnd, 8);
      return c;
    }
    case 1: { // set one byte to a special or random value
      if (!b.length) return b;
      const c = b.slice();
      c[int(rnd, c.length)] = rnd() < 0.7 ? SPECIAL[int(rnd, SPECIAL.length)] : int(rnd, 256);
      return c;
    }
    case 2: { // insert random bytes
      const n = 1 + int(rnd, 8);
      const ins = new Uint8Array(n);
      for (let i = 0; i < n; i++) ins[i] = rnd() < 0.5 ? SPECIAL[int(rnd, SPECIAL.length)] : int(rnd, 256);
      return concat(b.subarray(0, at), ins, b.subarray(at));
    }
    case 3: { // delete a range
      const n = 1 + int(rnd, rnd() < 0.8 ? 8 : 64);
      return concat(b.subarray(0, at), b.subarray(Math.min(b.length, at + n)));
    }
    case 4: // truncate
      return b.subarray(0, at);
    case 5: { // duplicate a line (a header, an SDP line, a protocol line)
      const starts = lineStarts(b);
      const i = int(rnd, starts.length);
      const s = starts[i];
      const e = i + 1 < starts.length ? starts[i + 1] : b.length;
      const room = Math.floor((maxLen - b.length) / Math.max(1, e - s));
      const times = Math.max(1, Math.min(room, rnd() < 0.9 ? 1 + int(rnd, 3) : 10 + int(rnd, 300)));
      return concat(b.subarray(0, e), repeat(b.subarray(s, e), times), b.subarray(e));
    }
    case 6: { // delete a line
      const starts = lineStarts(b);
      const i = int(rnd, starts.length);
      const e = i + 1 < starts.length ? starts[i + 1] : b.length;
      return concat(b.subarray(0, starts[i]), b.subarray(e));
    }
    case 7: // insert a token
    case 8: {
      const t = TOKENS[int(rnd, TOKENS.length)];
      if (rnd() < 0.5 || !b.length) return concat(b.subarray(0, at), t, b.subarray(at));
      // ... or replace a run of digits or letters with it
      let s = Math.min(at, b.length - 1);
      let e = s;
      const word = (c: number) => (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122);
      while (s > 0 && word(b[s - 1])) s--;
      while (e < b.length && word(b[e])) e++;
      return concat(b.subarray(0, s), t, b.subarray(e));
    }
    case 9: { // a long run of a piece of the input (deeply repeated parameters, list elements, bytes)
      const n = 1 + int(rnd, 12);
      const s = Math.min(at, Math.max(0, b.length - n));
      const piece = b.length ? b.subarray(s, s + n) : TOKENS[int(rnd, TOKENS.length)];
      const times = Math.max(1, Math.min(int(rnd, 5000), Math.floor((maxLen - b.length) / Math.max(1, piece.length))));
      return concat(b.subarray(0, s), repeat(piece, times), b.subarray(s));
    }
    case 10: { // a long run of a token
      const t = TOKENS[int(rnd, TOKENS.length)];
      const times = Math.max(1, Math.min(int(rnd, 3000), Math.floor((maxLen - b.length) / t.length)));
      return concat(b.subarray(0, at), repeat(t, times), b.subarray(at));
    }
    case 11: { // CR/LF mixes: CRLF to LF, LF to CR, or a bare CR
      const c: number[] = [];
      const mode = int(rnd, 3);
      for (let i = 0; i < b.length; i++) {
        if (mode === 0 && b[i] === 13 && b[i + 1] === 10 && rnd() < 0.5) continue;
        if (mode === 1 && b[i] === 10 && rnd() < 0.3) {
          c.push(13);
          continue;
        }
        c.push(b[i]);
        if (mode === 2 && b[i] === 10 && rnd() < 0.2) c.push(13);
      }
      return new Uint8Array(c);
    }
    case 12: { // splice with another seed
      const o = int(rnd, other.length + 1);
      return concat(b.subarray(0, at), other.subarray(o));
    }
    case 13: { // overwrite a 1/2/4-byte field with an extreme value (binary formats)
      if (b.length < 4) return b;
      const c = b.slice();
      const v = [0, 0xff, 0x7f, 0x80][int(rnd, 4)];
      const w = [1, 2, 4][int(rnd, 3)];
      const p = int(rnd, c.length - w + 1);
      for (let i = 0; i < w; i++) c[p + i] = i === 0 || rnd() < 0.5 ? v : 0xff;
      return c;
    }
    case 14: { // swap two ranges
      if (b.length < 4) return b;
      const x = int(rnd, b.length), y = int(rnd, b.length);
      const [s, e] = x < y ? [x, y] : [y, x];
      return concat(b.subarray(0, s), b.subarray(e), b.subarray(s, e));
    }
    default: // NUL or a high byte at a random place
      return concat(b.subarray(0, at), new Uint8Array([rnd() < 0.5 ? 0 : 0x80 + int(rnd, 128)]), b.subarray(at));
  }
}

/**
 * Makes a hostile variant of `seed`: 1 to 4 mutations (sometimes more), the result cut to `maxLen` bytes.
 *
 * @example
 * ```ts
 * const rnd = seededRandom(1);
 * const input = mutate(new TextEncoder().encode("HELLO 1 2 3"), rnd, new Uint8Array(0), 256);
 * ```
 */
export function mutate(seed: Uint8Array, rnd: Random, other: Uint8Array, maxLen: number): Uint8Array {
  let b = seed;
  const n = rnd() < 0.9 ? 1 + int(rnd, 4) : 5 + int(rnd, 20);
  for (let i = 0; i < n; i++) {
    b = mutateOnce(b, rnd, other, maxLen);
    if (b.length > maxLen) b = b.subarray(0, maxLen);
  }
  return b;
}

/** The inputs of one fuzz run of a target: `cases` mutations of its seeds, from `seed`. */
export function* fuzzInputs(seeds: Uint8Array[], seed: number, cases: number, maxLen: number): Generator<Uint8Array> {
  const rnd = seededRandom(seed);
  for (const s of seeds) yield s;
  for (let i = 0; i < cases; i++) {
    const s = seeds[int(rnd, seeds.length)];
    const other = seeds[int(rnd, seeds.length)];
    yield mutate(s, rnd, other, maxLen);
  }
}
