/**
 * The worker of bench/fuzz.ts: runs one target's cases and reports each finding; writes the case under way into a
 * shared buffer, so that the main thread can name the input of a case that never ends.
 *
 * @module
 */
/// <reference lib="deno.worker" />
import { seededRandom } from "../core/random.ts";
import { fuzzInputs } from "../tests/fuzz_mutate.ts";
import { cleanupTargets, FuzzFinding, TARGETS } from "../tests/fuzz_targets.ts";

/** What the main thread asks. */
export interface FuzzJob {
  /** Target name. */
  target: string;
  /** PRNG seed. */
  seed: number;
  /** Mutated cases (the seeds run first). */
  cases: number;
  /** Growth probes (n against 10n repetitions of a piece); 0 for none. */
  growth: number;
  /** Shared: [0] case index + 1 while one runs, [1] its length, then its bytes. */
  shared: SharedArrayBuffer;
}

/** What the worker reports. */
export type FuzzReport =
  | { type: "finding"; index: number; message: string; input: number[] }
  | { type: "growth"; ratio: number; n: number; message: string; input: number[] }
  | { type: "done"; cases: number; ms: number };

function describe(e: unknown): string {
  if (e instanceof FuzzFinding) return e.message;
  return `the harness itself threw ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}`;
}

async function timeOf(run: (b: Uint8Array) => void | Promise<void>, input: Uint8Array): Promise<number> {
  let best = Infinity;
  for (let i = 0; i < 3; i++) {
    const t0 = performance.now();
    try {
      await run(input);
    } catch { /* reported by the fuzzing itself */ }
    best = Math.min(best, performance.now() - t0);
  }
  return best;
}

/**
 * Time ratio of 10n against n repetitions reported: linear parsing gives about 10 (up to ~30 with a collection or a
 * cold cache in the way: an SDP of 13 000 `c=` lines measured x31 once, x10-17 when timed again), quadratic ~100.
 */
const GROWTH_RATIO = 50;

const PIECES = [" ", "\t", "\r\n", "\n", "\r", ";", ",", "=", '"', "\\", "<", "(", "%", ":", "a", "a=", ";a", "0 "].map(
  (p) => new TextEncoder().encode(p),
);

self.onmessage = async (e: MessageEvent<FuzzJob>) => {
  const job = e.data;
  const target = TARGETS.find((t) => t.name === job.target)!;
  const head = new Int32Array(job.shared, 0, 2);
  const bytes = new Uint8Array(job.shared, 8);
  const seeds = target.seeds();
  const t0 = performance.now();
  let index = 0;
  for (const input of fuzzInputs(seeds, job.seed, job.cases, target.maxLen)) {
    const n = Math.min(input.length, bytes.length);
    bytes.set(input.subarray(0, n));
    head[1] = n;
    Atomics.store(head, 0, index + 1);
    try {
      await target.run(input);
    } catch (err) {
      postMessage({ type: "finding", index, message: describe(err), input: [...input] } satisfies FuzzReport);
    }
    index++;
  }
  // Growth: a piece of a seed repeated n and 10n times at one place; linear parsing takes about 10 times as long.
  // mulberry32 (a linear congruential generator's low bits, taken modulo small counts, repeated with a short period
  // and never chose some pieces).
  const rnd = seededRandom(job.seed ^ 0x5bd1e995);
  const next = (m: number) => Math.floor(rnd() * m);
  for (let g = 0; g < job.growth; g++) {
    const s = seeds[next(seeds.length)];
    const at = next(s.length + 1);
    const len = 1 + next(8);
    // Half the time a piece of the seed, else a separator, a line end or a quote: the runs backtracking patterns
    // and nested scans stumble on.
    const piece = next(2) === 0 && s.length
      ? s.subarray(Math.max(0, Math.min(at, s.length - len)), at + len)
      : PIECES[next(PIECES.length)];
    const big = Math.floor((target.maxLen - s.length) / Math.max(1, piece.length));
    if (big < 200) continue;
    const build = (times: number) => {
      const out = new Uint8Array(s.length + piece.length * times);
      out.set(s.subarray(0, at));
      for (let i = 0; i < times; i++) out.set(piece, at + i * piece.length);
      out.set(s.subarray(at), at + piece.length * times);
      return out;
    };
    const large = build(big);
    const small = build(Math.floor(big / 10));
    bytes.set(large.subarray(0, Math.min(large.length, bytes.length)));
    head[1] = Math.min(large.length, bytes.length);
    Atomics.store(head, 0, index + 1);
    let ts = await timeOf(target.run, small);
    let tl = await timeOf(target.run, large);
    // Only when it is slow enough to matter, and well past 10x (timed again, to leave out a pause of the machine).
    if (tl > 5 && tl / Math.max(ts, 0.05) > GROWTH_RATIO) {
      ts = Math.min(ts, await timeOf(target.run, small));
      tl = Math.min(tl, await timeOf(target.run, large));
    }
    if (tl > 5 && tl / Math.max(ts, 0.05) > GROWTH_RATIO) {
      postMessage(
        {
          type: "growth",
          ratio: tl / Math.max(ts, 0.05),
          n: big,
          message: `${tl.toFixed(1)} ms for ${large.length} bytes, ${ts.toFixed(2)} ms for ${small.length}`,
          input: [...large],
        } satisfies FuzzReport,
      );
    }
    index++;
  }
  Atomics.store(head, 0, 0);
  await cleanupTargets();
  postMessage({ type: "done", cases: index, ms: performance.now() - t0 } satisfies FuzzReport);
};
