/**
 * Prints the core's cost per frame per stage through an 8-stage chain
 * (target from DESIGN: under 0.5 µs per stage per frame).
 *
 * Usage: `deno run -A bench/core_chain.ts [frames]`
 *
 * @module
 */
import { runChain, STAGES } from "./chain.ts";

const frames = Number(Deno.args[0] ?? 200_000);
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
