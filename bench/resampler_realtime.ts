/**
 * Prints the realtime factor of the `resampler` stage per quality, one stream, 44.1 kHz mono
 * → 8 kHz in 20 ms frames: `resampler 44100→8000 medium: N× realtime`.
 *
 * Run with `deno run -A bench/resampler_realtime.ts [seconds]` (default 30 s of audio per quality).
 *
 * @module
 */
import type { PcmFrame } from "../core/frame.ts";
import type { TransformStage } from "../core/stage.ts";
import { createStage } from "../core/testing.ts";
import resampler from "../plugins/resample/resampler.ts";
import { benchArgs, benchFail } from "./_args.ts";

const IN_RATE = 44100;
const FRAME = 882;
const { positionals } = benchArgs(import.meta.url, {}, { positionals: "[SECONDS]" });
const seconds = Number(positionals[0] ?? 30);
if (!(seconds > 0) || positionals.length > 1) {
  benchFail(
    import.meta.url,
    {},
    `expected at most one argument, seconds of audio > 0; got ${positionals.join(" ")}`,
    "[SECONDS]",
  );
}

function makeFrames(secs: number): PcmFrame[] {
  const frames: PcmFrame[] = [];
  for (let k = 0; k < (secs * IN_RATE) / FRAME; k++) {
    const s = new Int16Array(FRAME);
    for (let i = 0; i < FRAME; i++) {
      const t = (k * FRAME + i) / IN_RATE;
      s[i] = Math.round(9000 * Math.sin(2 * Math.PI * 440 * t) + 3000 * Math.sin(2 * Math.PI * 3100 * t));
    }
    frames.push({ kind: "pcm", samples: s, sampleRate: IN_RATE, channels: 1, pts: k * FRAME });
  }
  return frames;
}

const frames = makeFrames(seconds);
const noop = () => true;
for (const quality of ["medium", "best", "fastest", "linear", "lsr-medium", "lsr-best"]) {
  const stage = await createStage<TransformStage>(resampler, { rate: 8000, quality });
  stage.negotiate!({ kind: "pcm", sampleRate: IN_RATE, channels: 1 });
  for (const f of frames.slice(0, 100)) stage.process(f, noop); // warm-up: 2 s
  const t0 = performance.now();
  for (const f of frames) stage.process(f, noop);
  stage.flush!(noop);
  const ms = performance.now() - t0;
  await stage.close?.();
  console.log(`resampler 44100→8000 ${quality}: ${((seconds * 1000) / ms).toFixed(1)}× realtime`);
}
