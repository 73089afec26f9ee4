/**
 * Real-time playout under clock drift, bursts and stalls: a 440 Hz tone from the
 * deterministic test sender (tests/rtp_sender.ts) through jitter-buffer →
 * g711-decoder on a VirtualClock, minutes of virtual time. The playout must
 * follow its target delay by time-scaling: no received audio dropped, no frame
 * inserted whole, the delay within target + 40 ms, and no click: the largest
 * step between two samples stays that of the tone itself (time-scaling splices
 * are cross-faded at matching phase).
 *
 * @module
 */
import assert from "node:assert/strict";
import { rtpSender } from "./rtp_sender.ts";
import { largestStep, playout, type PlayoutRun } from "./playout_util.ts";

/**
 * A step larger than this many times the tone's own largest is a click. A splice of time-scaling lands the
 * tone at a fraction of a sample off its original phase, so its G.711-quantized samples (steps of up to 128
 * near the zero crossings at this level) differ from the reference's a little: a click is far larger (a
 * broken period steps by up to twice the amplitude, 5.8 times the tone's step).
 */
const CLICK = 1.1;

/** The frames up to the last one of received audio (the stream; the end is concealment, then comfort noise). */
function inStream(run: PlayoutRun): string[] {
  return run.types.slice(0, run.types.lastIndexOf("normal") + 1);
}

/**
 * Asserts the delay played stays within the target + 40 ms, except for `recovery` ms after each of `stallEnds`
 * (ms), where it may exceed it by the tick the packets came in and the merge (up to 60 ms): there the delay grew by
 * the concealment and comes down by accelerating. Returns the worst excess.
 */
function assertDelayFollowsTarget(run: PlayoutRun, stallEnds: number[] = [], recovery = 300): number {
  let worst = -Infinity;
  for (const d of run.delays) {
    const near = stallEnds.some((e) => d.t >= e && d.t < e + recovery);
    const margin = near ? 60 : 40;
    worst = Math.max(worst, d.delay - d.target);
    assert.ok(
      d.delay <= d.target + margin,
      `at ${d.t.toFixed(0)} ms: delay ${d.delay.toFixed(1)} > target ${d.target.toFixed(1)} + ${margin}`,
    );
  }
  return worst;
}

for (const drift of [0.01, -0.01]) {
  Deno.test(`playout: a sender ${drift > 0 ? "1 % fast" : "1 % slow"} for 3 minutes is absorbed by time-scaling`, async () => {
    const seconds = 180;
    const tx = rtpSender({ seconds, drift, delayMs: 20, jitterMs: 5, seed: 7 });
    const run = await playout(tx.packets, (seconds * 1000) / (1 + drift) + 1000);
    const s = run.stats;
    if (Deno.env.get("PLAYOUT_DEBUG")) console.log(s, run.summary);
    // Nothing received dropped, nothing inserted whole: every frame of the stream holds received audio.
    assert.deepEqual([s.received, s.lost, s.late, s.trimmed], [tx.sent, 0, 0, 0]);
    assert.deepEqual(inStream(run).filter((t) => t !== "normal"), []);
    assert.equal(s.skipped_ms, 0);
    // The drift is absorbed by the right operation, 1 % of 3 minutes = 1.8 s of audio, in pitch periods.
    if (drift > 0) {
      assert.ok(s.accelerated_ms >= 1700 && s.accelerated_ms <= 1900, `accelerated ${s.accelerated_ms} ms`);
      assert.ok(s.preemptive_ms <= 100, `stretched ${s.preemptive_ms} ms`);
    } else {
      assert.ok(s.preemptive_ms >= 1700 && s.preemptive_ms <= 1900, `stretched ${s.preemptive_ms} ms`);
      assert.ok(s.accelerated_ms <= 100, `accelerated ${s.accelerated_ms} ms`);
    }
    // The drift is seen as drift, not jitter: the target stays low.
    assert.ok(Math.abs(s.skew_ppm - drift * 1e6) <= 1000, `skew ${s.skew_ppm} ppm`);
    assert.ok(s.target_delay_ms <= 40, `target ${s.target_delay_ms}`);
    assertDelayFollowsTarget(run);
    assert.ok(s.delay_max_ms <= 60 + 20 + 15, `max delay ${s.delay_max_ms}`);
    // No click: the largest step is the tone's own.
    const end = inStream(run).length * 160;
    assert.ok(
      largestStep(run.pcm, 0, end) <= CLICK * largestStep(tx.reference),
      `step ${largestStep(run.pcm, 0, end)}`,
    );
    // The summary line reports the delay as a distribution and the time-scaling counts.
    const sum = run.summary!;
    assert.ok(typeof sum.delay_p50_ms === "number" && typeof sum.delay_p95_ms === "number");
    assert.ok((sum.delay_p50_ms as number) <= (sum.delay_p95_ms as number));
    assert.ok((sum.delay_p95_ms as number) <= (sum.delay_max_ms as number) + 1);
    assert.equal(sum.accelerated, s.accelerated);
    assert.equal(sum.preemptive_expanded, s.preemptive_expanded);
    // And so do the session's media statistics.
    assert.deepEqual(run.media.playoutDelayMs, {
      p50: s.delay_p50_ms,
      p95: s.delay_p95_ms,
      max: Math.round(s.delay_max_ms * 10) / 10,
    });
    assert.equal(run.media.timeStretchedFrames, s.accelerated + s.preemptive_expanded);
  });
}

Deno.test("playout: 200 ms stalls every 10 s and bursts, with a sender 1 % fast, over 2 minutes", async () => {
  const seconds = 120;
  const tx = rtpSender({
    seconds,
    drift: 0.01,
    delayMs: 20,
    jitterMs: 5,
    burst: 3,
    stalls: { first: 5000, every: 10000, length: 200 },
    seed: 3,
  });
  const run = await playout(tx.packets, (seconds * 1000) / 1.01 + 1000);
  const s = run.stats;
  if (Deno.env.get("PLAYOUT_DEBUG")) console.log(s, run.summary);
  assert.deepEqual([s.received, s.lost, s.late, s.trimmed], [tx.sent, 0, 0, 0]);
  // The first stall is concealed while it lasts (the packets held are played after it: the concealment
  // became delay); the target then covers 200 ms, for the window, and once the stalls recur (the second one),
  // for as long as they do: later stalls play out of the buffer.
  assert.ok(s.recovered >= 1, `recovered ${s.recovered}`);
  assert.ok(s.target_delay_ms >= 200, `target ${s.target_delay_ms}`);
  const secondStallEnd = 15200 + 300;
  const filler = inStream(run).map((t, i) => [t, i] as const).filter(([t]) => t !== "normal");
  assert.ok(filler.every(([, i]) => i * 20 < secondStallEnd), `concealment after the second stall: ${filler}`);
  assertDelayFollowsTarget(run, [5200, 15200]);
  // No click: the concealment of the first stall fades into comfort noise and merges back with cross-fades.
  const end = inStream(run).length * 160;
  const step = largestStep(run.pcm, 0, end);
  assert.ok(step <= CLICK * largestStep(tx.reference), `step ${step} vs ${largestStep(tx.reference)}`);
});

Deno.test("playout: max_delay is enforced, and past max_conceal the stream fades into comfort noise", async () => {
  // 600 ms stalls with max_delay 300: what would play later than that is dropped as late; the gap is
  // concealed for max_conceal, then comfort noise (not a hard cut to silence).
  const tx = rtpSender({ seconds: 30, delayMs: 20, stalls: { first: 3000, every: 10000, length: 600 }, seed: 5 });
  const run = await playout(tx.packets, 31000, { max_delay: 300 });
  const s = run.stats;
  if (Deno.env.get("PLAYOUT_DEBUG")) console.log(s);
  assert.ok(s.delay_max_ms <= 300 + 10, `max delay ${s.delay_max_ms}`);
  assert.ok(s.late + s.trimmed > 0, "audio beyond max_delay is late");
  assert.ok(s.comfort_noise > 0);
  const end = inStream(run).length * 160;
  const step = largestStep(run.pcm, 0, end);
  assert.ok(step <= CLICK * largestStep(tx.reference), `step ${step}`);
  // The concealment fades: the last concealed samples before comfort noise are quieter than the tone.
  const i = run.types.indexOf("silence");
  const level = (k: number) => Math.sqrt(run.pcm.subarray(k * 160, k * 160 + 160).reduce((a, v) => a + v * v, 0) / 160);
  assert.ok(level(i - 1) < 5657 * 0.5 && level(i) <= 150, `fade: RMS ${level(i - 1)} then ${level(i)}`);
});

Deno.test("playout: a clean call shrinks from its 60 ms start by accelerating, never by dropping a frame", async () => {
  // The issue: the old buffer dropped 2 received frames per call at about 8 s and 10–11 s, even with no loss.
  const tx = rtpSender({ seconds: 20, delayMs: 20, seed: 2 });
  const run = await playout(tx.packets, 21000);
  const s = run.stats;
  assert.deepEqual([s.received, s.lost, s.late, s.trimmed, s.skipped_ms], [tx.sent, 0, 0, 0, 0]);
  assert.deepEqual(inStream(run).filter((t) => t !== "normal"), []);
  const early = run.delays.filter((d) => d.t < 8000).map((d) => Math.round(d.delay));
  assert.deepEqual([...new Set(early)], [60], "the start delay is kept for a window");
  assert.ok(s.delay_ms < 45, `then the delay shrinks toward the target: ${s.delay_ms}`);
  assert.ok(s.accelerated_ms >= 15 && s.accelerated_ms <= 45, `by accelerating ${s.accelerated_ms} ms`);
  const end = inStream(run).length * 160;
  assert.ok(largestStep(run.pcm, 0, end) <= CLICK * largestStep(tx.reference));
  // The stream is the sent audio less what was accelerated (plus what was stretched), to within the last frame,
  // whose end is concealment after the last packet.
  const expected = tx.sent * 160 - Math.round((s.accelerated_ms * 8000) / 1000) +
    Math.round((s.preemptive_ms * 8000) / 1000);
  assert.ok(end - expected >= 0 && end - expected < 160, `played ${end}, sent less accelerated ${expected}`);
});
