/**
 * Tests of the `resampler` stage: frequency, level, length, timing and pts of the output,
 * streaming equal to one-shot conversion, channel mapping, pass-through, negotiation.
 *
 * @module
 */
import assert from "node:assert/strict";
import { z } from "zod";
import type { Format, Frame, PcmFrame } from "../core/frame.ts";
import { VirtualClock } from "../core/clock.ts";
import { buildPipeline } from "../core/pipeline.ts";
import { Registry } from "../core/registry.ts";
import { definePlugin, FormatError, type TransformStage } from "../core/stage.ts";
import { runTransform } from "../core/testing.ts";
import { createStage } from "./registry_util.ts";
import { plugins as g711Plugins } from "../plugins/g711/mod.ts";
import { plugins as resamplePlugins } from "../plugins/resample/mod.ts";
import resampler from "../plugins/resample/resampler.ts";

/** A sine of `freq` Hz at `rate`, `channels` interleaved copies scaled by `gains`. */
function tone(freq: number, rate: number, n: number, amp: number, gains: number[] = [1]): Int16Array {
  const ch = gains.length;
  const x = new Int16Array(n * ch);
  for (let i = 0; i < n; i++) {
    const v = amp * Math.sin((2 * Math.PI * freq * i) / rate);
    for (let c = 0; c < ch; c++) x[i * ch + c] = Math.round(v * gains[c]);
  }
  return x;
}

/** Splits interleaved samples into frames of the given sizes (cycled), with pts in input samples. */
function frames(x: Int16Array, rate: number, channels: number, sizes: number[], pts0 = 0): PcmFrame[] {
  const out: PcmFrame[] = [];
  const n = x.length / channels;
  for (let i = 0, k = 0; i < n; k++) {
    const len = Math.min(sizes[k % sizes.length], n - i);
    out.push({
      kind: "pcm",
      samples: x.slice(i * channels, (i + len) * channels),
      sampleRate: rate,
      channels,
      pts: pts0 + i,
    });
    i += len;
  }
  return out;
}

async function resample(
  options: Record<string, unknown>,
  input: Format,
  frameList: Frame[],
): Promise<{ out: PcmFrame[]; format: Format | undefined; stage: TransformStage }> {
  const stage = await createStage<TransformStage>(resampler, options);
  const format = stage.negotiate!(input);
  const out = runTransform(stage, frameList) as PcmFrame[];
  await stage.close?.();
  return { out, format, stage };
}

function concat(out: PcmFrame[]): Int16Array {
  const all = new Int16Array(out.reduce((a, f) => a + f.samples.length, 0));
  let at = 0;
  for (const f of out) {
    all.set(f.samples, at);
    at += f.samples.length;
  }
  return all;
}

/** Channel `c` of interleaved samples. */
function channel(x: Int16Array, channels: number, c: number): Int16Array {
  return x.filter((_, i) => i % channels === c);
}

/** Least-squares fit of a sine of known frequency: amplitude, delay in samples, SNR of the residual. */
function fitSine(y: Int16Array, freq: number, rate: number, from: number, to: number) {
  const w = (2 * Math.PI * freq) / rate;
  let ys = 0, yc = 0, ss = 0, cc = 0;
  for (let i = from; i < to; i++) {
    const s = Math.sin(w * i), c = Math.cos(w * i);
    ys += y[i] * s;
    yc += y[i] * c;
    ss += s * s;
    cc += c * c;
  }
  const a = ys / ss, b = yc / cc;
  let sig = 0, err = 0;
  for (let i = from; i < to; i++) {
    const r = a * Math.sin(w * i) + b * Math.cos(w * i);
    sig += r * r;
    err += (y[i] - r) ** 2;
  }
  return { amp: Math.hypot(a, b), delay: -Math.atan2(b, a) / w, snrDb: 10 * Math.log10(sig / err) };
}

/** Frequency from the rate of rising zero crossings. */
function zeroCrossingHz(y: Int16Array, rate: number, from: number, to: number): number {
  let first = -1, last = -1, count = 0;
  for (let i = from + 1; i < to; i++) {
    if (y[i - 1] < 0 && y[i] >= 0) {
      // Interpolated crossing time.
      const t = i - 1 + -y[i - 1] / (y[i] - y[i - 1]);
      if (first < 0) first = t;
      else count++;
      last = t;
    }
  }
  return (count * rate) / (last - first);
}

function assertContiguous(out: PcmFrame[], pts0 = 0): void {
  let next = pts0;
  for (const f of out) {
    assert.equal(f.pts, next, "pts contiguous");
    next += f.samples.length / f.channels;
  }
}

const AMP = 0.5 * 32767;
const dB = (ratio: number) => 20 * Math.log10(ratio);

Deno.test("resampler medium 44.1 kHz → 8 kHz: 1 kHz tone keeps frequency, level, timing; exact length; pts", async () => {
  const n = 44100;
  const x = tone(1000, 44100, n, AMP);
  const { out, format } = await resample({ rate: 8000 }, { kind: "pcm", sampleRate: 44100, channels: 1 }, [
    ...frames(x, 44100, 1, [882]),
  ]);
  assert.deepEqual(format, { kind: "pcm", sampleRate: 8000, channels: 1 });
  const y = concat(out);
  assert.ok(Math.abs(y.length - Math.round((n * 8000) / 44100)) <= 2, `length ${y.length}`);
  for (const f of out) {
    assert.equal(f.sampleRate, 8000);
    assert.equal(f.channels, 1);
  }
  assertContiguous(out);
  const hz = zeroCrossingHz(y, 8000, 400, 7600);
  assert.ok(Math.abs(hz - 1000) < 0.5, `frequency ${hz} Hz`);
  const fit = fitSine(y, 1000, 8000, 400, 7600);
  assert.ok(Math.abs(dB(fit.amp / AMP)) < 0.1, `level ${dB(fit.amp / AMP)} dB`);
  // pts are right in time: the output sine is where the input one was (no filter delay).
  assert.ok(Math.abs(fit.delay) < 0.05, `delay ${fit.delay} samples`);
  // Clean: only 16-bit rounding noise remains.
  assert.ok(fit.snrDb > 80, `SNR ${fit.snrDb} dB`);
});

Deno.test("resampler streaming with odd frame sizes equals one-shot conversion", async () => {
  const n = 22050;
  const x = tone(1000, 44100, n, AMP);
  const input: Format = { kind: "pcm", sampleRate: 44100, channels: 1 };
  const oneShot = concat((await resample({}, input, frames(x, 44100, 1, [n]))).out);
  const { out } = await resample({}, input, frames(x, 44100, 1, [1, 37, 441, 1001, 7, 2999, 160]));
  const streamed = concat(out);
  assertContiguous(out);
  assert.equal(streamed.length, oneShot.length);
  let maxDiff = 0;
  for (let i = 0; i < oneShot.length; i++) maxDiff = Math.max(maxDiff, Math.abs(streamed[i] - oneShot[i]));
  assert.ok(maxDiff <= 1, `max difference ${maxDiff} LSB`);
});

Deno.test("resampler down-mixes stereo to mono by averaging", async () => {
  const n = 44100 / 2;
  // Left: the tone; right: silence → the mono tone is 6.02 dB lower.
  const x = tone(1000, 44100, n, AMP, [1, 0]);
  const { out, format } = await resample(
    { rate: 8000, channels: 1 },
    { kind: "pcm", sampleRate: 44100, channels: 2 },
    frames(x, 44100, 2, [882]),
  );
  assert.deepEqual(format, { kind: "pcm", sampleRate: 8000, channels: 1 });
  assert.ok(out.every((f) => f.channels === 1));
  const y = concat(out);
  assert.equal(y.length, 4000);
  const fit = fitSine(y, 1000, 8000, 400, 3600);
  assert.ok(Math.abs(dB(fit.amp / (AMP / 2))) < 0.1, `level ${dB(fit.amp / AMP)} dB`);
  // Opposite channels cancel.
  const anti = tone(1000, 44100, n, AMP, [1, -1]);
  const silent = concat(
    (await resample({ channels: 1 }, { kind: "pcm", sampleRate: 44100, channels: 2 }, [
      ...frames(anti, 44100, 2, [882]),
    ])).out,
  );
  assert.ok(silent.every((v) => Math.abs(v) <= 1));
});

Deno.test("resampler keeps stereo by default, channels independent", async () => {
  const x = tone(1000, 48000, 24000, AMP, [1, 0.25]);
  const { out, format } = await resample({ rate: 16000 }, { kind: "pcm", sampleRate: 48000, channels: 2 }, [
    ...frames(x, 48000, 2, [960]),
  ]);
  assert.deepEqual(format, { kind: "pcm", sampleRate: 16000, channels: 2 });
  const y = concat(out);
  assert.equal(y.length, 8000 * 2);
  assertContiguous(out);
  const left = fitSine(channel(y, 2, 0), 1000, 16000, 800, 7200);
  const right = fitSine(channel(y, 2, 1), 1000, 16000, 800, 7200);
  assert.ok(Math.abs(dB(left.amp / AMP)) < 0.1);
  assert.ok(Math.abs(dB(right.amp / (AMP / 4))) < 0.1);
});

Deno.test("resampler up-samples 8 kHz → 48 kHz and up-mixes mono to stereo", async () => {
  const x = tone(440, 8000, 4000, AMP);
  const { out, format } = await resample(
    { rate: 48000, channels: 2 },
    { kind: "pcm", sampleRate: 8000, channels: 1 },
    frames(x, 8000, 1, [160]),
  );
  assert.deepEqual(format, { kind: "pcm", sampleRate: 48000, channels: 2 });
  const y = concat(out);
  assert.equal(y.length, 24000 * 2);
  const l = channel(y, 2, 0);
  assert.deepEqual(channel(y, 2, 1), l);
  const fit = fitSine(l, 440, 48000, 2400, 21600);
  assert.ok(Math.abs(dB(fit.amp / AMP)) < 0.1);
  assert.ok(Math.abs(fit.delay) < 0.1);
});

Deno.test("resampler output pts follow the input's start, scaled to the output rate", async () => {
  const x = tone(1000, 44100, 4410, AMP);
  const { out } = await resample(
    {},
    { kind: "pcm", sampleRate: 44100, channels: 1 },
    frames(x, 44100, 1, [441], 88200),
  );
  assert.equal(out[0].pts, 16000);
  assertContiguous(out, 16000);
  assert.equal(concat(out).length, 800);
});

Deno.test("resampler passes audio through when the rate already matches (down-mix only)", async () => {
  const mono = tone(1000, 8000, 800, AMP);
  const a = await resample({}, { kind: "pcm", sampleRate: 8000, channels: 1 }, frames(mono, 8000, 1, [160], 320));
  assert.deepEqual(concat(a.out), mono);
  assert.deepEqual(a.out.map((f) => f.pts), [320, 480, 640, 800, 960]);
  const stereo = new Int16Array([100, 201, -5, -6, 32767, 32767, -32768, -32767]);
  const b = await resample(
    { channels: 1 },
    { kind: "pcm", sampleRate: 8000, channels: 2 },
    frames(stereo, 8000, 2, [4]),
  );
  assert.deepEqual(b.format, { kind: "pcm", sampleRate: 8000, channels: 1 });
  assert.deepEqual(concat(b.out), new Int16Array([151, -5, 32767, -32767]));
});

Deno.test("resampler qualities: best is as accurate; lsr-fastest cuts 3.4 kHz (unfit for telephony); linear works", async () => {
  const input: Format = { kind: "pcm", sampleRate: 44100, channels: 1 };
  const x = tone(1000, 44100, 11025, AMP);
  const best = concat((await resample({ quality: "best" }, input, frames(x, 44100, 1, [882]))).out);
  assert.equal(best.length, 2000);
  const fb = fitSine(best, 1000, 8000, 400, 1600);
  assert.ok(Math.abs(dB(fb.amp / AMP)) < 0.1 && fb.snrDb > 80);
  const y = tone(3400, 44100, 11025, AMP);
  const level = async (quality: string) => {
    const out = concat((await resample({ quality }, input, frames(y, 44100, 1, [882]))).out);
    return dB(fitSine(out, 3400, 8000, 400, 1600).amp / AMP);
  };
  assert.ok(Math.abs(await level("medium")) < 0.1);
  // libsamplerate's fastest converter (the old "fastest", now "lsr-fastest") cuts the top of the
  // telephone band; the polyphase "fastest" keeps it.
  assert.ok(await level("lsr-fastest") < -3, "lsr-fastest attenuates 3.4 kHz");
  assert.ok(Math.abs(await level("fastest")) < 0.1, "fastest keeps 3.4 kHz");
  const lin = concat((await resample({ quality: "linear" }, input, frames(x, 44100, 1, [882]))).out);
  assert.ok(Math.abs(lin.length - 2000) <= 2);
  assert.ok(Math.abs(dB(fitSine(lin, 1000, 8000, 400, 1600).amp / AMP)) < 0.5);
});

Deno.test("resampler configures itself on the first frame when upstream does not say the rate", async () => {
  const x = tone(1000, 22050, 2205, AMP);
  const { out, format } = await resample({}, { kind: "pcm" }, frames(x, 22050, 1, [441]));
  assert.deepEqual(format, { kind: "pcm", sampleRate: 8000, channels: undefined });
  assert.equal(concat(out).length, 800);
  assertContiguous(out);
});

Deno.test("resampler refuses what it cannot take, saying what to change", async () => {
  const stage = await createStage<TransformStage>(resampler, { channels: 2 });
  const refuse = (input: Format | undefined) => {
    try {
      stage.negotiate!(input);
    } catch (e) {
      assert.ok(e instanceof FormatError, `expected FormatError, got ${e}`);
      return e.message;
    }
    assert.fail("negotiate accepted " + JSON.stringify(input));
  };
  assert.equal(
    refuse({ kind: "pcm", sampleRate: 48000, channels: 6 }),
    'resampler cannot map 6 channels to 2: set "channels" to 1 (down-mix) or 6 (keep)',
  );
  assert.equal(
    refuse({ kind: "encoded", codec: "PCMU", clockRate: 8000 }),
    'resampler expects pcm, but gets encoded PCMU 8000 Hz: insert {"use": "g711-decoder"} before it',
  );
  assert.match(refuse({ kind: "pcm", sampleRate: 500, channels: 1 }), /input rates of 1000\.\.192000 Hz/);
  assert.match(refuse(undefined), /cannot be a source/);
  await stage.close?.();
});

Deno.test("resampler is registered; options have defaults, ranges and descriptions in JSON Schema", () => {
  assert.deepEqual(resamplePlugins.map((p) => p.name), ["resampler"]);
  const schema = z.toJSONSchema(resampler.options, { io: "input" }) as {
    properties: Record<string, { default?: unknown; description?: string; minimum?: number; maximum?: number }>;
  };
  assert.equal(schema.properties.rate.default, 8000);
  assert.equal(schema.properties.rate.minimum, 1000);
  assert.equal(schema.properties.rate.maximum, 192000);
  assert.equal(schema.properties.quality.default, "medium");
  assert.match(schema.properties.quality.description!, /UNFIT FOR TELEPHONY/);
  assert.ok(schema.properties.channels.description);
  assert.throws(() => resampler.options.parse({ quality: "great" }));
  assert.throws(() => resampler.options.parse({ rate: 44100.5 }));
});

Deno.test("through the pipeline runner: 44.1 kHz stereo → resampler → g711-encoder → g711-decoder", async () => {
  const x = tone(1000, 44100, 44100 / 2, AMP, [1, 1]);
  const source = definePlugin({
    name: "test-source",
    kind: "source",
    description: "44.1 kHz stereo tone",
    produces: { kind: "pcm", sampleRate: 44100, channels: 2 },
    options: z.object({}),
    create: () => ({
      async run(ctx) {
        for (const f of frames(x, 44100, 2, [882])) if (!ctx.emit(f)) await ctx.ready();
      },
    }),
  });
  const got: PcmFrame[] = [];
  const sink = definePlugin({
    name: "test-sink",
    kind: "sink",
    description: "collects",
    accepts: [{ kind: "pcm", sampleRate: 8000, channels: 1 }],
    options: z.object({}),
    create: () => ({ write: (f: Frame) => void got.push(f as PcmFrame) }),
  });
  const registry = new Registry([source, sink, ...resamplePlugins, ...g711Plugins]);
  const chain = [
    { use: "test-source" },
    { use: "resampler", rate: 8000, channels: 1 },
    { use: "g711-encoder", codec: "PCMA" },
    { use: "g711-decoder" },
    { use: "test-sink" },
  ];
  const pipeline = await buildPipeline("send", chain, { registry, clock: new VirtualClock() });
  const result = await pipeline.start();
  assert.equal(result.reason, "eos", String(result.error));
  const y = concat(got);
  assert.equal(y.length, 4000);
  assertContiguous(got);
  // G.711 A-law keeps a 1 kHz tone within a fraction of a dB.
  assert.ok(Math.abs(dB(fitSine(y, 1000, 8000, 400, 3600).amp / AMP)) < 0.2);
  // Without the resampler, the build fails and says what to insert.
  await assert.rejects(
    buildPipeline("send", [chain[0], chain[2], chain[3], chain[4]], { registry, clock: new VirtualClock() }),
    (e: Error) =>
      e instanceof FormatError && e.message.includes('insert {"use": "resampler", "rate": 8000, "channels": 1}'),
  );
});
