/**
 * Tests of `tone-source`: exact sample counts, framing, phase continuity, level,
 * sweep, silence, channels, run-until-stopped and backpressure.
 */
import { deepEqual, equal, ok, rejects } from "node:assert/strict";
import { z } from "zod";
import type { PcmFrame } from "../core/frame.ts";
import type { RunContext, SourceStage } from "../core/stage.ts";
import { createStage, testContext } from "../core/testing.ts";
import { plugins } from "../plugins/tone/mod.ts";
import toneSource from "../plugins/tone/tone_source.ts";

async function generate(options: Record<string, unknown>) {
  const t = testContext();
  const stage = await createStage<SourceStage>(toneSource, options, t.ctx);
  const format = stage.negotiate!(undefined);
  await stage.run(t.ctx);
  const frames = t.out as PcmFrame[];
  const samples = new Int16Array(frames.reduce((a, f) => a + f.samples.length, 0));
  let off = 0;
  for (const f of frames) {
    samples.set(f.samples, off);
    off += f.samples.length;
  }
  return { frames, samples, format, stage };
}

/** Frequency estimated from rising zero crossings over a window. */
function frequency(s: Int16Array, rate: number): number {
  let first = -1, last = -1, count = 0;
  for (let i = 1; i < s.length; i++) {
    if (s[i - 1] < 0 && s[i] >= 0) {
      if (first < 0) first = i;
      else count++;
      last = i;
    }
  }
  return (count * rate) / (last - first);
}

Deno.test("tone-source: is registered in plugins/tone/mod.ts with a described schema and documented defaults", () => {
  ok(plugins.includes(toneSource));
  const schema = z.toJSONSchema(toneSource.options) as { properties: Record<string, { description?: string }> };
  for (const [key, p] of Object.entries(schema.properties)) ok(p.description, key);
  deepEqual(toneSource.options.parse({}), {
    waveform: "sine",
    frequency: 1000,
    to_frequency: 3400,
    amplitude: -6,
    sample_rate: 8000,
    channels: 1,
    duration: 5,
    frame_ms: 20,
  });
  equal(toneSource.options.safeParse({ amplitude: 1 }).success, false);
  equal(toneSource.options.safeParse({ waveform: "square" }).success, false);
});

Deno.test("tone-source: 1 kHz sine, -6 dBFS, 8 kHz: exact count, 20 ms frames, phase-continuous samples", async () => {
  const { frames, samples, format, stage } = await generate({ duration: 1 });
  deepEqual(format, { kind: "pcm", sampleRate: 8000, channels: 1 });
  equal(samples.length, 8000);
  equal(frames.length, 50);
  frames.forEach((f, i) => {
    equal(f.samples.length, 160);
    equal(f.pts, i * 160);
    equal(f.sampleRate, 8000);
  });
  const peak = 32767 * 10 ** (-6 / 20);
  for (let i = 0; i < samples.length; i++) {
    const want = Math.round(peak * Math.sin((2 * Math.PI * 1000 * i) / 8000));
    ok(Math.abs(samples[i] - want) <= 1, `sample ${i}: ${samples[i]} vs ${want}`);
  }
  equal(Math.max(...samples), Math.round(peak));
  equal(stage.stats!().samples, 8000);
  equal(stage.stats!().duration_s, 1);
});

Deno.test("tone-source: sample count is round(duration × rate), the last frame shorter; frame_ms at 44.1 kHz", async () => {
  const a = await generate({ duration: 0.0123, sample_rate: 8000 });
  equal(a.samples.length, 98);
  deepEqual(a.frames.map((f) => f.samples.length), [98]);
  const b = await generate({ duration: 0.1, sample_rate: 44100, frame_ms: 30, frequency: 440 });
  equal(b.samples.length, 4410);
  deepEqual(b.frames.map((f) => f.samples.length), [1323, 1323, 1323, 441]);
  deepEqual(b.frames.map((f) => f.pts), [0, 1323, 2646, 3969]);
  const f = frequency(b.samples, 44100);
  ok(Math.abs(f - 440) < 1, `≈ 440 Hz (${f})`);
});

Deno.test("tone-source: stereo carries the same signal on both channels", async () => {
  const { frames, samples, format } = await generate({ channels: 2, duration: 0.05, frequency: 300 });
  deepEqual(format, { kind: "pcm", sampleRate: 8000, channels: 2 });
  equal(frames[0].samples.length, 320);
  equal(samples.length, 800);
  for (let i = 0; i < samples.length; i += 2) equal(samples[i], samples[i + 1]);
  ok(samples.some((v) => v !== 0));
});

Deno.test("tone-source: silence is all zeros, with the exact length", async () => {
  const { samples } = await generate({ waveform: "silence", duration: 0.5, sample_rate: 16000 });
  equal(samples.length, 8000);
  ok(samples.every((v) => v === 0));
});

Deno.test("tone-source: amplitude sets the peak in dBFS", async () => {
  for (const db of [0, -20]) {
    const { samples } = await generate({ amplitude: db, duration: 0.1, frequency: 2000 }); // hits the peaks exactly
    equal(Math.max(...samples), Math.round(32767 * 10 ** (db / 20)));
  }
});

Deno.test("tone-source: a linear sweep glides from frequency to to_frequency, phase-continuously", async () => {
  const rate = 16000;
  const { samples } = await generate({
    waveform: "sweep",
    frequency: 200,
    to_frequency: 3000,
    duration: 2,
    sample_rate: rate,
  });
  equal(samples.length, 2 * rate);
  const early = frequency(samples.subarray(0, rate / 10), rate); // mean over 0..0.1 s: 270 Hz
  const late = frequency(samples.subarray(rate * 1.9), rate); // mean over 1.9..2 s: 2930 Hz
  ok(Math.abs(early - 270) < 15, `early ≈ 270 Hz (${early})`);
  ok(Math.abs(late - 2930) < 40, `late ≈ 2930 Hz (${late})`);
  // Phase continuity: no sample-to-sample jump larger than the top frequency allows.
  const peak = 32767 * 10 ** (-6 / 20);
  const maxStep = peak * 2 * Math.PI * 3000 / rate + 2;
  for (let i = 1; i < samples.length; i++) ok(Math.abs(samples[i] - samples[i - 1]) <= maxStep, `step at ${i}`);
});

Deno.test("tone-source: duration 0 runs until stopped, yielding so that a timer can stop it", async () => {
  const t = testContext();
  let frames = 0;
  const ctx: RunContext = {
    ...t.ctx,
    emit: () => {
      frames++;
      return true;
    },
  };
  const stage = await createStage<SourceStage>(toneSource, { duration: 0 }, ctx);
  setTimeout(() => t.abort.abort(), 10);
  await stage.run(ctx);
  ok(frames > 0);
  equal(stage.stats!().frames, frames);
});

Deno.test("tone-source: honours backpressure", async () => {
  const t = testContext();
  let waiting = false;
  let violations = 0;
  let emitted = 0;
  const ctx: RunContext = {
    ...t.ctx,
    emit: () => {
      if (waiting) violations++;
      emitted++;
      return false; // always ask to wait
    },
    ready: () => {
      waiting = true;
      return new Promise<void>((r) =>
        setTimeout(() => {
          waiting = false;
          r();
        }, 0)
      );
    },
  };
  const stage = await createStage<SourceStage>(toneSource, { duration: 0.1 }, ctx);
  await stage.run(ctx);
  equal(emitted, 5);
  equal(violations, 0);
});

Deno.test("tone-source: a frequency at or above Nyquist is refused with a clear message", async () => {
  await rejects(
    async () => await toneSource.create(toneSource.options.parse({ frequency: 4000 }), testContext().ctx),
    /tone-source: frequency 4000 Hz must be below half the sample rate \(4000 Hz at sample_rate 8000\)/,
  );
  await rejects(
    async () =>
      await toneSource.create(
        toneSource.options.parse({ waveform: "sweep", to_frequency: 5000 }),
        testContext().ctx,
      ),
    /to_frequency 5000 Hz/,
  );
  // Silence does not care.
  await toneSource.create(toneSource.options.parse({ waveform: "silence", frequency: 9000 }), testContext().ctx);
});
