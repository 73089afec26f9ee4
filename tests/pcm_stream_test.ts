/**
 * Tests of `emitPcmFrames` (plugins/wav/pcm_stream.ts): a source that reads from memory into a
 * sink that never pushes back still gives the event loop turns (so a stop request arriving as a
 * task ends it), and it does so without Deno's `setImmediate` or `setTimeout`, whose first use
 * loads `node:timers` (a transcode's start-up).
 *
 * @module
 */
import assert from "node:assert/strict";
import { testContext } from "../core/testing.ts";
import { emitPcmFrames, MemoryPcmReader, type PcmChunkReader } from "../plugins/wav/pcm_stream.ts";

/** A reader that hands out each chunk of `inner` as an already-resolved promise: awaiting it gives no event-loop turn. */
function resolvedPromises(inner: PcmChunkReader): PcmChunkReader {
  return { next: () => Promise.resolve(inner.next()) };
}

for (const [name, wrap] of [["sync", (r: PcmChunkReader) => r], ["resolved promises", resolvedPromises]] as const) {
  Deno.test(`emitPcmFrames (${name}): a source that never waits still yields, so a stop sent as a task ends it`, async () => {
    await stopsWhenAsked(wrap(new MemoryPcmReader(new Int16Array(1600), 1, 160, true)));
  });
}

async function stopsWhenAsked(reader: PcmChunkReader): Promise<void> {
  const { ctx, abort } = testContext();
  // Frames from memory, looping forever, into a sink that always takes more: only the source's own yields let the
  // stop below (a message, delivered on a later turn of the event loop) run. The frame limit ends the loop if it
  // never yields, so that a regression fails instead of hanging.
  const LIMIT = 20_000_000;
  let frames = 0;
  let stoppedByLimit = false;
  const stopper = new MessageChannel();
  stopper.port1.onmessage = () => abort.abort(new DOMException("stopped", "AbortError"));
  stopper.port2.postMessage(null);
  const counters = { frames: 0, samples: 0 };
  try {
    await emitPcmFrames(
      {
        ...ctx,
        emit: () => {
          if (++frames >= LIMIT) {
            stoppedByLimit = true;
            abort.abort(new Error("limit"));
          }
          return true;
        },
      },
      { sampleRate: 8000, channels: 1 },
      reader,
      counters,
    );
  } finally {
    stopper.port1.close();
    stopper.port2.close();
  }
  assert.equal(stoppedByLimit, false, `the stop request never ran: ${frames} frames went out without a yield`);
  assert.ok(counters.frames > 0 && counters.frames === frames);
}

Deno.test("emitPcmFrames: its yields use neither setImmediate nor setTimeout", async () => {
  const g = globalThis as unknown as Record<string, unknown>;
  const saved = { setImmediate: g.setImmediate, setTimeout: g.setTimeout };
  const used: string[] = [];
  for (const name of ["setImmediate", "setTimeout"] as const) {
    const orig = saved[name] as (...a: unknown[]) => unknown;
    g[name] = (...a: unknown[]) => {
      used.push(name);
      return orig(...a);
    };
  }
  try {
    const { ctx, abort } = testContext();
    let frames = 0;
    const started = performance.now();
    await emitPcmFrames(
      {
        ...ctx,
        emit: () => {
          // Long enough for several yields (one per 2 ms of wall time at most), then stop.
          if (++frames % 1000 === 0 && performance.now() - started > 50) abort.abort(new Error("done"));
          return true;
        },
      },
      { sampleRate: 8000, channels: 1 },
      new MemoryPcmReader(new Int16Array(1600), 1, 160, true),
      { frames: 0, samples: 0 },
    );
  } finally {
    g.setImmediate = saved.setImmediate;
    g.setTimeout = saved.setTimeout;
  }
  assert.deepEqual(used, []);
});
