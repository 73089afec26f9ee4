/**
 * Shared set-up for the core chain benchmark: a synchronous source that emits
 * `frames` pcm frames, six pass-through transforms and a counting sink: eight
 * stages, seven links.
 *
 * @module
 */
import { z } from "zod";
import { VirtualClock } from "../core/clock.ts";
import type { PcmFrame } from "../core/frame.ts";
import { buildPipeline } from "../core/pipeline.ts";
import { Registry } from "../core/registry.ts";
import { definePlugin } from "../core/stage.ts";

const frame: PcmFrame = { kind: "pcm", samples: new Int16Array(160), sampleRate: 8000, channels: 1, pts: 0 };

const registry = new Registry([
  definePlugin({
    name: "bench-source",
    kind: "source",
    description: "emits frames as fast as possible",
    produces: { kind: "pcm", sampleRate: 8000, channels: 1 },
    options: z.object({ frames: z.number().int() }),
    create: ({ frames }) => ({
      async run(ctx) {
        for (let i = 0; i < frames; i++) if (!ctx.emit(frame)) await ctx.ready();
      },
    }),
  }),
  definePlugin({
    name: "bench-pass",
    kind: "transform",
    description: "passes frames through",
    accepts: [{ kind: "pcm" }],
    produces: { kind: "pcm", sampleRate: 8000, channels: 1 },
    options: z.object({}),
    create: () => ({ process: (f, emit) => emit(f) }),
  }),
  definePlugin({
    name: "bench-sink",
    kind: "sink",
    description: "counts frames",
    accepts: [{ kind: "pcm" }],
    options: z.object({}),
    create: () => {
      let n = 0;
      return { write: () => void n++, stats: () => ({ n }) };
    },
  }),
]);

/** Stages in the benchmark chain. */
export const STAGES = 8;

/** Runs `frames` frames through the 8-stage chain; returns elapsed ms (pipeline run only). */
export async function runChain(frames: number): Promise<number> {
  const chain = [
    { use: "bench-source", frames },
    ...Array.from({ length: STAGES - 2 }, () => ({ use: "bench-pass" })),
    { use: "bench-sink" },
  ];
  const p = await buildPipeline("bench", chain, { registry, clock: new VirtualClock() });
  const t0 = performance.now();
  await p.run();
  return performance.now() - t0;
}
