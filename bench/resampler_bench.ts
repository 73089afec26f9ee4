/**
 * Resampler benchmarks: 10 s of 44.1 kHz mono audio per iteration through the `resampler`
 * stage (20 ms frames of 882 samples, streaming), to 8 kHz, at each quality (the polyphase kernel
 * and, for comparison, libsamplerate as lsr-medium and lsr-best).
 *
 * Run with `deno bench -A bench/resampler_bench.ts`. Realtime factor = 10 s ÷ (time/iter);
 * e.g. 200 ms/iter is 50× realtime. `bench/resampler_realtime.ts` prints the factor directly.
 *
 * @module
 */
import type { PcmFrame } from "../core/frame.ts";
import type { TransformStage } from "../core/stage.ts";
import { createStage } from "../core/testing.ts";
import resampler from "../plugins/resample/resampler.ts";

const IN_RATE = 44100;
const FRAME = 882; // 20 ms
const SECONDS = 10;
const frames: PcmFrame[] = [];
for (let k = 0; k < (SECONDS * IN_RATE) / FRAME; k++) {
  const s = new Int16Array(FRAME);
  for (let i = 0; i < FRAME; i++) {
    const t = (k * FRAME + i) / IN_RATE;
    s[i] = Math.round(9000 * Math.sin(2 * Math.PI * 440 * t) + 3000 * Math.sin(2 * Math.PI * 3100 * t));
  }
  frames.push({ kind: "pcm", samples: s, sampleRate: IN_RATE, channels: 1, pts: k * FRAME });
}
const noop = () => true;

for (const quality of ["medium", "best", "fastest", "linear", "lsr-medium", "lsr-best"]) {
  const stage = await createStage<TransformStage>(resampler, { rate: 8000, quality });
  stage.negotiate!({ kind: "pcm", sampleRate: IN_RATE, channels: 1 });
  Deno.bench(`resampler 44100→8000 ${quality}, 10 s of mono audio/iter`, {
    group: "resampler",
    baseline: quality === "medium",
  }, () => {
    for (const f of frames) stage.process(f, noop);
  });
}
