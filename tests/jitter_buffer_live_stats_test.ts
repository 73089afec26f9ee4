/**
 * In playout mode the jitter buffer publishes its figures into the session's
 * media statistics while it plays (each second of media clock), not only at
 * the end: the console charts the delay and the concealment of a call in
 * progress. The end adds only what was not published yet (nothing counted
 * twice).
 */
import { assert, assertEquals } from "./assert.ts";
import { VirtualClock } from "../core/clock.ts";
import type { TransformStage } from "../core/stage.ts";
import { createStage, testContext } from "./registry_util.ts";
import jitterBuffer, { type JitterBufferStats } from "../plugins/rtp/jitter_buffer.ts";
import { rtpSender } from "./rtp_sender.ts";

Deno.test("jitter buffer (playout): delay, concealment and loss reach the session's statistics during the stream, once", async () => {
  const clock = new VirtualClock(0);
  const base = testContext({ clock });
  const ctx = { ...base.ctx, emit: () => true };
  const jb = await createStage<TransformStage>(jitterBuffer, { mode: "playout" }, ctx);
  jb.negotiate!({ kind: "rtp", codec: "PCMU", clockRate: 8000 });
  await jb.start!(ctx);
  const tx = rtpSender({ seconds: 6, loss: 0.05, jitterMs: 10, delayMs: 20, seed: 3 });
  const media = base.ctx.session.stats;
  let mid: typeof media | undefined;
  for (const p of tx.packets) {
    if (p.arrival > clock.now()) clock.advance(p.arrival - clock.now());
    jb.process({ ...p.frame, arrival: clock.now() }, () => true);
    if (!mid && clock.now() >= 3000) mid = structuredClone(media);
  }
  assert(mid, "the stream lasted 3 s");
  assert(mid.playoutDelayMs && mid.playoutDelayMs.p50 > 0, `delay while playing: ${JSON.stringify(mid)}`);
  assert(mid.concealedFrames > 0, "concealment while playing");
  assert(mid.lost > 0, "loss while playing");
  clock.advance(1000);
  const s = jb.stats!() as unknown as JitterBufferStats;
  await jb.close!();
  assertEquals(media.concealedFrames, s.concealed, "concealed frames counted once");
  assertEquals(media.late, s.late);
  assertEquals(media.timeStretchedFrames, s.accelerated + s.preemptive_expanded);
  assert(media.concealedFrames >= mid.concealedFrames);
});
