/**
 * `deno bench bench/core_bench.ts`: the core's cost per frame through an
 * 8-stage chain (source, six transforms, sink) of synchronous pushes. Divide the
 * time per iteration by 10 000 frames and by 8 stages for the per-stage figure,
 * or run `deno run -A bench/core_chain.ts` which prints it.
 *
 * @module
 */
import { runChain } from "./chain.ts";

Deno.bench("core: 10 000 frames through an 8-stage chain", async () => {
  await runChain(10_000);
});
