/**
 * Random numbers: a small seeded pseudo-random generator (mulberry32) for
 * reproducible impairments, lossy test transports and testable RTCP interval
 * randomization (not cryptographic), and unpredictable 32-bit values for RTP.
 *
 * @module
 */

/** A function returning uniformly distributed numbers in [0, 1). */
export type Random = () => number;

/**
 * Returns a mulberry32 generator: 32-bit state, period 2^32, good enough
 * statistical quality for network simulation. The same seed always yields
 * the same sequence.
 *
 * @example
 * ```ts
 * const rnd = seededRandom(42);
 * rnd(); // same value on every run
 * ```
 */
export function seededRandom(seed: number): Random {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * A standard normal deviate (mean 0, standard deviation 1) from two uniform
 * draws of `rnd` (Box-Muller).
 *
 * @example
 * ```ts
 * const z = normalDeviate(seededRandom(1));
 * ```
 */
export function normalDeviate(rnd: Random): number {
  const u = 1 - rnd(); // (0, 1]: keeps log finite
  const v = rnd();
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
}

/**
 * A random unsigned 32-bit integer from the platform's cryptographic source,
 * for SSRCs and initial sequence numbers/timestamps (RFC 3550 section 5.1
 * asks for unpredictable initial values).
 *
 * @example
 * ```ts
 * const ssrc = randomUint32();
 * ```
 */
export function randomUint32(): number {
  const at = takeRandom(4);
  const v = (pool[at] | pool[at + 1] << 8 | pool[at + 2] << 16 | pool[at + 3] << 24) >>> 0;
  pool.fill(0, at, at + 4);
  return v;
}

/**
 * Bytes from the platform's cryptographic source, drawn 4 KB at a time: a call takes a dozen (tags, SSRCs, a CNAME, a
 * drain token), and one `crypto.getRandomValues` per value cost a Deno op and an array each. Each byte is handed out
 * once and zeroed in the pool as it is.
 */
const POOL_BYTES = 4096;
const pool = new Uint8Array(POOL_BYTES);
let poolAt = POOL_BYTES;

/** Reserves `n` (at most {@linkcode POOL_BYTES}) fresh bytes of the pool: their index. */
function takeRandom(n: number): number {
  if (poolAt + n > POOL_BYTES) {
    crypto.getRandomValues(pool);
    poolAt = 0;
  }
  const at = poolAt;
  poolAt += n;
  return at;
}

/**
 * Fills `out` with random bytes from the platform's cryptographic source (as `crypto.getRandomValues` does, from a
 * pool refilled 4 KB at a time: the same source, fewer calls) and returns it.
 *
 * @example
 * ```ts
 * const token = randomBytes(new Uint8Array(16));
 * ```
 */
export function randomBytes(out: Uint8Array): Uint8Array {
  if (out.length > POOL_BYTES) return crypto.getRandomValues(out);
  const at = takeRandom(out.length);
  for (let i = 0; i < out.length; i++) out[i] = pool[at + i];
  pool.fill(0, at, at + out.length);
  return out;
}

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));

/**
 * `bytes` random bytes from the platform's cryptographic source (see {@linkcode randomBytes}) as lowercase hex.
 *
 * @example
 * ```ts
 * randomHexString(4); // e.g. "9f86d081"
 * ```
 */
export function randomHexString(bytes: number): string {
  if (bytes > POOL_BYTES) {
    let s = "";
    for (const x of crypto.getRandomValues(new Uint8Array(bytes))) s += HEX[x];
    return s;
  }
  const at = takeRandom(bytes);
  let s = "";
  for (let i = at; i < at + bytes; i++) s += HEX[pool[i]];
  pool.fill(0, at, at + bytes);
  return s;
}
