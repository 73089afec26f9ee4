import assert from "node:assert/strict";
import {
  accelerate,
  backwardExtension,
  COMFORT_NOISE_MAX_RMS,
  Expander,
  findPeriod,
  maxStep,
  preemptiveExpand,
  rms,
  stretchInput,
  toInt16,
} from "../plugins/rtp/time_stretch.ts";
import { seededRandom } from "./rtp_sender.ts";

const tone = (f: number, n: number, from = 0, a = 8000) =>
  Int16Array.from({ length: n }, (_, i) => Math.round(a * Math.sin((2 * Math.PI * f * (from + i)) / 8000)));
const cat = (...xs: ArrayLike<number>[]) => Int16Array.from(xs.flatMap((x) => Array.from(x)));

Deno.test("time-stretch: accelerate and pre-emptive expand splice a pure tone without a step", () => {
  for (const f of [123.4, 300, 440, 1000, 2400, 3000]) {
    const x = tone(f, 600);
    const natural = maxStep(x);
    const M = stretchInput(8000);
    const a = accelerate(x.subarray(100, 100 + M), 8000)!;
    assert.ok(a, `${f} Hz accelerates`);
    assert.equal(a.reason, "periodic");
    assert.equal(a.samples.length, M - a.removed);
    assert.ok(a.removed >= 20 && a.removed <= 120);
    const outA = cat(x.subarray(0, 100), a.samples, x.subarray(100 + M));
    assert.ok(maxStep(outA) <= natural * 1.02 + 2, `${f} Hz accelerate step ${maxStep(outA)} vs ${natural}`);
    const p = preemptiveExpand(x.subarray(100, 100 + M), 8000)!;
    assert.equal(p.samples.length, M + p.removed);
    const outP = cat(x.subarray(0, 100), p.samples, x.subarray(100 + M));
    assert.ok(maxStep(outP) <= natural * 1.02 + 2, `${f} Hz pre-emptive step ${maxStep(outP)} vs ${natural}`);
    // The tone goes on at its phase: what follows the splice is the tone shifted by the lag, which is a
    // multiple of its period to within a small fraction.
    const period = 8000 / f;
    const frac = Math.abs(a.removed / period - Math.round(a.removed / period));
    assert.ok(frac < 0.1, `${f} Hz: lag ${a.removed} is ${a.removed / period} periods`);
  }
});

Deno.test("time-stretch: loud noise is accelerated as unvoiced, quiet audio as quiet, a loud non-periodic chord not", () => {
  const rnd = seededRandom(9);
  const noise = Int16Array.from({ length: 240 }, () => Math.round((rnd() * 2 - 1) * 8000));
  assert.equal(accelerate(noise, 8000)?.reason, "unvoiced");
  const quiet = Int16Array.from({ length: 240 }, () => Math.round((rnd() * 2 - 1) * 100));
  const q = accelerate(quiet, 8000)!;
  assert.equal(q.reason, "quiet");
  assert.equal(q.removed, 120);
  // A low, loud and inharmonic mixture: no lag in 2.5..15 ms repeats it, and it is not noise-like.
  const chord = Int16Array.from(
    { length: 240 },
    (_, i) =>
      Math.round(6000 * Math.sin(2 * Math.PI * 97 * i / 8000) + 6000 * Math.sin(2 * Math.PI * 151.3 * i / 8000)),
  );
  assert.ok(findPeriod(chord, 0, 20, 120).corr < 0.9);
  assert.equal(accelerate(chord, 8000), undefined);
  assert.equal(accelerate(tone(440, 100), 8000), undefined, "too short");
});

Deno.test("time-stretch: expansion continues a tone, decays, then fades into comfort noise at the level asked", () => {
  const x = tone(440, 600);
  const e = new Expander({ sampleRate: 8000, maxConcealMs: 100 });
  e.start(x, 50);
  assert.ok(e.lag > 0 && Math.abs(e.lag / (8000 / 440) - Math.round(e.lag / (8000 / 440))) < 0.1);
  const y = toInt16(e.generate(8000));
  assert.ok(maxStep(cat(x, y)) <= maxStep(x) * 1.02 + 2, `step ${maxStep(cat(x, y))}`);
  // Full level for 20 ms, about half by the start of the fade (70 ms), comfort noise after 100 ms.
  assert.ok(rms(y, 0, 160) > 5500);
  assert.ok(rms(y, 480, 80) > 2000 && rms(y, 480, 80) < 3500, `${rms(y, 480, 80)}`);
  assert.equal(e.kindAt(799), "conceal");
  assert.equal(e.kindAt(800), "noise");
  const cn = rms(y, 1600, 4000);
  assert.ok(cn > 40 && cn < 60, `comfort noise RMS ${cn}`);
  // Looking ahead does not move it.
  const p = e.peek(0, 10);
  assert.deepEqual(Array.from(p), Array.from(e.generate(10)));
  // Comfort noise is capped; a silent history gives comfort noise only.
  e.start(new Int16Array(600), 5000);
  assert.equal(e.lag, 0);
  assert.ok(rms(e.generate(8000)) <= COMFORT_NOISE_MAX_RMS * 1.05);
});

Deno.test("time-stretch: a backward extension flows into the audio it precedes", () => {
  const x = tone(440, 240, 1000);
  const b = backwardExtension(x, 60, 8000)!;
  const before = tone(440, 60, 940);
  // A tone whose period is not a whole number of samples (18.18 here) is extended by a whole lag (109): the
  // junction is off by a fraction of a sample, a step up to ~10 % larger at a zero crossing, not a click.
  assert.ok(maxStep(cat(b, x)) <= maxStep(x) * 1.1, `${maxStep(cat(b, x))} vs ${maxStep(x)}`);
  for (let i = 0; i < 60; i++) assert.ok(Math.abs(b[i] - before[i]) < 300, `sample ${i}: ${b[i]} vs ${before[i]}`);
  assert.equal(backwardExtension(tone(440, 20), 60, 8000), undefined);
});
