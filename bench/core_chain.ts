/**
 * Prints the core's cost per frame per stage through an 8-stage chain
 * (target from DESIGN: under 0.5 µs per stage per frame).
 *
 * Usage: `deno run -A bench/core_chain.ts [frames]`
 *
 * @module
 */
import { benchArgs, benchFail } from "./_args.ts";
import { runChain, STAGES } from "./chain.ts";

const { positionals } = benchArgs(import.meta.url, {}, { positionals: "[FRAMES]" });
const frames = Number(positionals[0] ?? 200_000);
if (!(Number.isInteger(frames) && frames >= 1) || positionals.length > 1) {
  benchFail(
    import.meta.url,
    {},
    `expected at most one argument, a whole number of frames ≥ 1; got ${positionals.join(" ")}`,
    "[FRAMES]",
  );
}
await runChain(20_000); // warm up the JIT
const times: number[] = [];
for (let i = 0; i < 5; i++) times.push(await runChain(frames));
times.sort((a, b) => a - b);
const best = times[0];
const median = times[2];
const perFrame = (ms: number) => (ms * 1000) / frames;
console.log(
  `core chain: ${frames} frames x ${STAGES} stages: median ${perFrame(median).toFixed(3)} µs/frame ` +
    `(${(perFrame(median) / STAGES).toFixed(3)} µs per stage per frame), best ${
      (perFrame(best) / STAGES).toFixed(3)
    } µs per stage per frame, ${(frames / (median / 1000) / 1e6).toFixed(2)} M frames/s`,
);
