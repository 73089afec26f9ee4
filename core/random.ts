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
  return crypto.getRandomValues(new Uint32Array(1))[0];
}
