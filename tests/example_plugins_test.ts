import { assert, assertEquals } from "./assert.ts";
import { createRegistry } from "../mod.ts";
import { PipelineRunner } from "../core/runner.ts";
import { repoPath } from "./util.ts";
import { readWav } from "./media_util.ts";
import { VirtualClock } from "../core/clock.ts";

function rmsDbfs(s: Int16Array): number {
  let sum = 0;
  for (const v of s) sum += v * v;
  return 20 * Math.log10(Math.sqrt(sum / s.length) / 32768);
}

Deno.test("examples/gain.json runs the user plugins loaded by path: level drops by gain_db", async () => {
  const dir = await Deno.makeTempDir();
  const levels: Record<string, number>[] = [];
  for (const gain of [0, -12]) {
    const runner = await PipelineRunner.load(repoPath("examples/gain.json"), {
      registry: createRegistry(),
      set: [`gain_db=${gain}`, `out=${dir}/g${gain}.wav`],
      clock: new VirtualClock(),
    });
    const r = await runner.run();
    assertEquals(r.code, 0);
    const meter = r.results!.main.stats[2];
    assertEquals(meter.use, "level-meter");
    levels.push(meter.extra as Record<string, number>);
    const { samples } = await readWav(`${dir}/g${gain}.wav`);
    assertEquals(samples.length, 16000); // 2 s at 8 kHz
    const rms = rmsDbfs(samples);
    // A -6 dBFS sine has an RMS of -9.01 dBFS; the gain shifts it.
    assert(Math.abs(rms - (-9.03 + gain)) < 0.1, `rms ${rms} for gain ${gain}`);
  }
  assert(Math.abs(levels[0].rms_dbfs - levels[1].rms_dbfs - 12) < 0.2, JSON.stringify(levels));
  await Deno.remove(dir, { recursive: true });
});
