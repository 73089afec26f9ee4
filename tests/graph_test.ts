/**
 * Tests of the graph stages (plugins/graph/): bus-sink and bus-source (tee, backpressure, formats), the mixer
 * (exact samples per channel, saturation, late and early inputs, one frame per ptime on the clock), sequence
 * (continuous pts, silence, skip, format errors), a bridge between two sessions, and examples/graph.json through
 * the CLI.
 */
import { z } from "zod";
import { assert, assertEquals, assertMatch, assertRejects } from "./assert.ts";
import { readWav, spawnCli, writeWav } from "./media_util.ts";
import { repoPath } from "./util.ts";
import { VirtualClock } from "../core/clock.ts";
import type { Frame, PcmFrame } from "../core/frame.ts";
import { buildPipeline, type Pipeline, type StageConfig } from "../core/pipeline.ts";
import { Session } from "../core/session.ts";
import { definePlugin, type SourceStage } from "../core/stage.ts";
import { createStage, testContext } from "../core/testing.ts";
import { ConfigError } from "../core/errors.ts";
import { pipelineJsonSchema } from "../core/schema.ts";
import { createRegistry } from "../mod.ts";
import toneSource from "../plugins/tone/tone_source.ts";

// ---------------------------------------------------------------------------
// Helpers

/** What a `collect-sink` received: frames, and the clock time of each. */
interface Collected {
  frames: PcmFrame[];
  times: number[];
}
const collected = new Map<string, Collected>();

/** A sink for tests: keeps every frame under its `id`, with the media-clock time it arrived. */
const collectSink = definePlugin({
  name: "collect-sink",
  kind: "sink",
  description: "keeps frames for the test",
  accepts: [{ kind: "pcm" }],
  options: z.object({ id: z.string() }),
  create({ id }, ctx) {
    const c: Collected = { frames: [], times: [] };
    collected.set(id, c);
    return {
      write(f: Frame) {
        c.frames.push(f as PcmFrame);
        c.times.push(ctx.clock.now());
        return true;
      },
    };
  },
});

const registry = createRegistry();
registry.register(collectSink);

function got(id: string): Collected {
  const c = collected.get(id);
  if (!c) throw new Error(`no collect-sink "${id}"`);
  return c;
}

function concat(frames: PcmFrame[]): Int16Array {
  const out = new Int16Array(frames.reduce((n, f) => n + f.samples.length, 0));
  let off = 0;
  for (const f of frames) {
    out.set(f.samples, off);
    off += f.samples.length;
  }
  return out;
}

/** Channel `c` of interleaved samples. */
function channel(s: Int16Array, channels: number, c: number): Int16Array {
  const out = new Int16Array(s.length / channels);
  for (let i = 0; i < out.length; i++) out[i] = s[i * channels + c];
  return out;
}

function join(...parts: ArrayLike<number>[]): Int16Array {
  const out = new Int16Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

/** The samples tone-source produces with these options (the reference the graphs must deliver exactly). */
async function toneSamples(opts: Record<string, unknown>): Promise<Int16Array> {
  const stage = await createStage<SourceStage>(toneSource, opts);
  const { ctx, out, release } = testContext();
  await stage.run(ctx);
  await release();
  return concat(out as PcmFrame[]);
}

function build(session: Session, name: string, chain: StageConfig[]): Promise<Pipeline> {
  return buildPipeline(name, chain, { registry, session });
}

function pcm(samples: number[], pts: number, sampleRate = 8000): PcmFrame {
  return { kind: "pcm", samples: new Int16Array(samples), sampleRate, channels: 1, pts };
}

/** Lets pending promises and immediate callbacks run (no time passes on the virtual clock). */
async function settle(rounds = 5): Promise<void> {
  for (let i = 0; i < rounds; i++) await new Promise((r) => setTimeout(r, 0));
}

/** Waits (bounded by a count of event-loop turns, not by time) until `cond` holds. */
async function until(cond: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 4000; i++) {
    if (cond()) return;
    await new Promise((r) => setTimeout(r, 2));
  }
  throw new Error(`gave up waiting until ${what}`);
}

// ---------------------------------------------------------------------------
// bus-sink and bus-source

Deno.test("bus: two chains reading one bus (a tee) each record exactly what the source chain produced", async () => {
  const clock = new VirtualClock();
  const session = new Session({ id: "tee", clock });
  const tone = { frequency: 700, duration: 3, sample_rate: 8000, amplitude: -3 };
  const src = await build(session, "src", [{ use: "tone-source", ...tone }, { use: "bus-sink", bus: "t" }]);
  const r1 = await build(session, "r1", [{ use: "bus-source", bus: "t" }, { use: "collect-sink", id: "tee1" }]);
  const r2 = await build(session, "r2", [
    { use: "bus-source", bus: "t", high_water: 7 },
    { use: "collect-sink", id: "tee2" },
  ]);
  assertEquals(r1.formats[0], { kind: "pcm", sampleRate: 8000, channels: 1 }, "the format came from the bus");

  // Only the source runs: it stops when the readers hold their high-water mark (7 frames, the lower one).
  src.start();
  await settle();
  const sinkStats = () => src.stats()[1].extra as { frames: number; pushed_back: number };
  assertEquals(sinkStats().frames, 7, "the publisher waits for the slowest reader");
  assertEquals(src.state, "running");

  const [a, b, c] = await Promise.all([src.start(), r1.run(), r2.run()]);
  assertEquals([a.reason, b.reason, c.reason], ["eos", "eos", "eos"]);
  const want = await toneSamples(tone);
  assertEquals(want.length, 24000);
  for (const id of ["tee1", "tee2"]) {
    const frames = got(id).frames;
    assertEquals(concat(frames), want, id);
    assertEquals(frames.map((f) => f.pts), frames.map((_, i) => i * 160), `${id}: pts as published`);
  }
  assertEquals((b.stats[0].extra as { dropped: number }).dropped, 0);
  assertEquals((c.stats[0].extra as { dropped: number }).dropped, 0);
  assert(sinkStats().pushed_back >= 1);
  assertEquals(session.bus("t").ended, true);
  await session.close();
});

Deno.test("bus-source: format from the bus, from its options, or a build error saying to declare it", async () => {
  const session = new Session({ id: "fmt", clock: new VirtualClock() });
  // Built before anything publishes on "x", declaring nothing.
  const e = await assertRejects(
    () => build(session, "early", [{ use: "bus-source", bus: "x" }, { use: "null-sink" }]),
    Error,
  );
  assertMatch(e.message, /bus "x" has no format yet .*declare the format here, e\.g\. "kind": "pcm", "rate": 8000/);
  // Declared: that is its format; the publisher built later disagrees: the start fails saying both.
  const declared = await build(session, "declared", [
    { use: "bus-source", bus: "x", rate: 16000, channels: 1 },
    { use: "null-sink" },
  ]);
  assertEquals(declared.formats[0], { kind: "pcm", sampleRate: 16000, channels: 1 });
  const pub = await build(session, "pub", [{ use: "tone-source", duration: 0.02 }, { use: "bus-sink", bus: "x" }]);
  assertEquals(session.bus("x").format, { kind: "pcm", sampleRate: 8000, channels: 1 });
  // Built after the publisher: the bus's format; a declaration that contradicts it fails the build.
  const late = await build(session, "late", [{ use: "bus-source", bus: "x" }, { use: "null-sink" }]);
  assertEquals(late.formats[0], { kind: "pcm", sampleRate: 8000, channels: 1 });
  const e2 = await assertRejects(
    () => build(session, "wrong", [{ use: "bus-source", bus: "x", channels: 2 }, { use: "null-sink" }]),
    Error,
  );
  assertMatch(e2.message, /bus "x" carries pcm 8000 Hz mono, but this bus-source declares pcm any rate stereo/);
  const r = await declared.run();
  assertEquals(r.reason, "error");
  assertMatch(r.error!.message, /bus "x" carries pcm 8000 Hz mono, but this bus-source declares pcm 16000 Hz mono/);
  await Promise.all([pub.run(), late.run()]);
  await session.close();
});

Deno.test("bus-sink: publishers of one bus must agree on the format; the stream ends when the last one ends", async () => {
  const session = new Session({ id: "pubs", clock: new VirtualClock() });
  const a = await build(session, "a", [
    { use: "tone-source", duration: 0.04, frequency: 300 },
    { use: "bus-sink", bus: "m" },
  ]);
  const e = await assertRejects(
    () =>
      build(session, "b", [
        { use: "tone-source", duration: 0.04, sample_rate: 16000 },
        { use: "bus-sink", bus: "m" },
      ]),
    Error,
  );
  assertMatch(
    e.message,
    /bus "m" already carries pcm 8000 Hz mono from another publisher, but this chain produces pcm 16000 Hz mono/,
  );
  const b = await build(session, "b", [
    { use: "tone-source", duration: 0.1, frequency: 500 },
    { use: "bus-sink", bus: "m" },
  ]);
  const reader = await build(session, "r", [{ use: "bus-source", bus: "m" }, { use: "collect-sink", id: "pubs" }]);
  const done = reader.start();
  await a.run();
  assertEquals(session.bus("m").ended, false, "b has not ended");
  assertEquals(reader.state, "running");
  await b.run();
  assertEquals((await done).reason, "eos");
  // 2 frames of a, 5 of b, each in its own order.
  assertEquals(got("pubs").frames.length, 7);
  await session.close();
});

// ---------------------------------------------------------------------------
// mixer

Deno.test("mixer: two tone chains into a stereo mix: exact samples per channel; the shorter input ends in silence", async () => {
  const session = new Session({ id: "stereo", clock: new VirtualClock() });
  const left = { frequency: 440, duration: 0.1, sample_rate: 8000, frame_ms: 20 };
  const right = { frequency: 1000, duration: 0.06, sample_rate: 8000, frame_ms: 7, amplitude: -20 };
  const chains = [
    await build(session, "l", [{ use: "tone-source", ...left }, { use: "bus-sink", bus: "left" }]),
    await build(session, "r", [{ use: "tone-source", ...right }, { use: "bus-sink", bus: "right" }]),
    await build(session, "mix", [
      { use: "mixer", buses: ["left", "right"], mode: "channels", rate: 8000, ptime: 20, clocked: false },
      { use: "collect-sink", id: "stereo" },
    ]),
  ];
  assertEquals(chains[2].formats[0], { kind: "pcm", sampleRate: 8000, channels: 2 });
  const results = await Promise.all(chains.map((p) => p.run()));
  assertEquals(results.map((r) => r.reason), ["eos", "eos", "eos"]);
  const frames = got("stereo").frames;
  assertEquals(frames.map((f) => [f.pts, f.channels, f.samples.length]), [
    [0, 2, 320],
    [160, 2, 320],
    [320, 2, 320],
    [480, 2, 320],
    [640, 2, 320],
  ]);
  const all = concat(frames);
  assertEquals(channel(all, 2, 0), await toneSamples(left));
  const r = await toneSamples(right);
  assertEquals(r.length, 480);
  assertEquals(channel(all, 2, 1), join(r, new Int16Array(320)));
  const stats = results[2].stats[0].extra as { inputs: { underruns: number; samples: number }[] };
  assertEquals(stats.inputs.map((i) => [i.samples, i.underruns]), [[800, 0], [480, 0]]);
  await session.close();
});

Deno.test("mixer: sum mode adds the inputs into mono and saturates at full scale", async () => {
  const session = new Session({ id: "sum", clock: new VirtualClock() });
  const a = { frequency: 500, duration: 0.1, amplitude: 0, frame_ms: 20 };
  const b = { frequency: 500, duration: 0.1, amplitude: -6, frame_ms: 13 };
  const chains = [
    await build(session, "a", [{ use: "tone-source", ...a }, { use: "bus-sink", bus: "a" }]),
    await build(session, "b", [{ use: "tone-source", ...b }, { use: "bus-sink", bus: "b" }]),
    // A hand-fed third input: values chosen to hit both rails and to cancel exactly.
    await build(session, "mix", [
      { use: "mixer", buses: ["a", "b", "c"], clocked: false, ptime: 10 },
      { use: "collect-sink", id: "sum" },
    ]),
  ];
  assertEquals(chains[2].formats[0], { kind: "pcm", sampleRate: 8000, channels: 1 });
  const c = session.bus("c");
  const endC = c.attachPublisher();
  const extra = new Int16Array(800);
  extra[0] = 32767;
  extra[1] = -32768;
  extra[2] = 12345;
  c.publish(pcm([...extra.subarray(0, 500)], 0));
  c.publish(pcm([...extra.subarray(500)], 500));
  endC();
  const results = await Promise.all(chains.map((p) => p.run()));
  assertEquals(results.map((r) => r.reason), ["eos", "eos", "eos"]);
  const frames = got("sum").frames;
  assertEquals(frames.length, 10);
  assert(frames.every((f, i) => f.channels === 1 && f.samples.length === 80 && f.pts === i * 80));
  const sa = await toneSamples(a), sb = await toneSamples(b);
  const want = new Int16Array(800);
  let clipped = 0;
  for (let i = 0; i < 800; i++) {
    const v = sa[i] + sb[i] + extra[i];
    want[i] = Math.max(-32768, Math.min(32767, v));
    if (v > 32767 || v < -32768) clipped++;
  }
  assert(clipped > 100, `${clipped} samples saturate`);
  const mixed = concat(frames);
  assertEquals(mixed, want);
  assertEquals(mixed[0], Math.max(-32768, Math.min(32767, sa[0] + sb[0] + 32767)));
  await session.close();
});

Deno.test("mixer: clocked on a VirtualClock: one frame per ptime at start + n × ptime; a late input is silence, counted as underruns", async () => {
  const clock = new VirtualClock();
  const session = new Session({ id: "clocked", clock });
  const tone = { frequency: 300, duration: 0.1, sample_rate: 8000 };
  const src = await build(session, "tone", [{ use: "tone-source", ...tone }, { use: "bus-sink", bus: "tone" }]);
  const mix = await build(session, "mix", [
    { use: "mixer", buses: ["live", "tone"], mode: "channels", rate: 8000, ptime: 20 },
    { use: "collect-sink", id: "clocked" },
  ]);
  // "live" is fed by hand, like a network chain: nothing at first.
  const live = session.bus("live");
  const endLive = live.attachPublisher();
  const srcDone = src.start();
  const mixDone = mix.start();
  const c = got("clocked");
  await clock.advanceAsync(0);
  assertEquals(c.frames.length, 1, "frame 0 at the start");
  await clock.advanceAsync(19);
  assertEquals(c.frames.length, 1, "nothing before 20 ms");
  await clock.advanceAsync(1);
  assertEquals(c.frames.length, 2);
  // The live input starts now: two frames of a ramp.
  const ramp = Array.from({ length: 320 }, (_, i) => i * 100 - 16000);
  live.publish(pcm(ramp.slice(0, 160), 0));
  live.publish(pcm(ramp.slice(160), 160));
  // 60 ms at once: three frames, each at its own due time (drift-free catch-up).
  await clock.advanceAsync(60);
  assertEquals(c.frames.length, 5);
  await clock.advanceAsync(20);
  assertEquals(c.frames.length, 6);
  endLive();
  await clock.advanceAsync(20);
  assertEquals((await mixDone).reason, "eos", "every input ended and drained");
  assertEquals((await srcDone).reason, "eos");
  assertEquals(c.times, [0, 20, 40, 60, 80, 100]);
  assertEquals(c.frames.map((f) => f.pts), [0, 160, 320, 480, 640, 800]);
  const all = concat(c.frames);
  assertEquals(channel(all, 2, 0), join(new Int16Array(320), ramp, new Int16Array(320)));
  assertEquals(channel(all, 2, 1), join(await toneSamples(tone), new Int16Array(160)));
  const stats = mix.stats()[0].extra as { frames: number; inputs: { bus: string; underruns: number }[] };
  assertEquals(stats.frames, 6);
  assertEquals(stats.inputs.map((i) => [i.bus, i.underruns]), [["live", 4], ["tone", 0]]);
  await session.close();
});

Deno.test("mixer: a running input gives a whole frame or nothing (never split around silence); until stopped it keeps emitting silence", async () => {
  const clock = new VirtualClock();
  const session = new Session({ id: "until", clock });
  const mix = await build(session, "mix", [
    { use: "mixer", buses: ["live"], rate: 8000, ptime: 20, until: "stopped" },
    { use: "collect-sink", id: "until" },
  ]);
  const live = session.bus("live");
  const endLive = live.attachPublisher();
  const done = mix.start();
  const c = got("until");
  await clock.advanceAsync(0);
  // Half a frame arrives: the mixer waits for the rest rather than playing 80 samples and 80 of silence.
  const ramp = Array.from({ length: 160 }, (_, i) => i * 10 + 1);
  live.publish(pcm(ramp.slice(0, 80), 0));
  await clock.advanceAsync(20);
  live.publish(pcm(ramp.slice(80), 80));
  await clock.advanceAsync(20);
  // The input ends; the mixer goes on with silence until the pipeline stops.
  endLive();
  await clock.advanceAsync(100);
  assertEquals(mix.state, "running");
  const all = concat(c.frames);
  assertEquals(all.subarray(0, 320), new Int16Array(320), "two frames of silence while the frame was incomplete");
  assertEquals(all.subarray(320, 480), Int16Array.from(ramp));
  assert(all.subarray(480).every((v) => v === 0));
  assertEquals(c.frames.length, 8);
  mix.stop();
  assertEquals((await done).reason, "stopped");
  await session.close();
  // until "stopped" needs a clock.
  await assertRejects(
    () =>
      build(new Session({ id: "x", clock }), "bad", [
        { use: "mixer", buses: ["a"], clocked: false, until: "stopped" },
        { use: "collect-sink", id: "bad" },
      ]),
    Error,
    'until "stopped" needs clocked: true',
  );
});

Deno.test("mixer: refuses inputs that are not pcm mono at its rate, saying which resampler to insert", async () => {
  const session = new Session({ id: "refuse", clock: new VirtualClock() });
  const wide = await build(session, "wide", [
    { use: "tone-source", duration: 0.02, sample_rate: 16000 },
    { use: "bus-sink", bus: "wide" },
  ]);
  const e = await assertRejects(
    () => build(session, "mix", [{ use: "mixer", buses: ["wide"] }, { use: "null-sink" }]),
    Error,
  );
  assertMatch(
    e.message,
    /input 0 \(bus "wide"\) carries pcm 16000 Hz mono, but the mixer takes pcm 8000 Hz mono: insert \{"use": "resampler", "rate": 8000, "channels": 1\} before the bus-sink of "wide"/,
  );
  // Publisher built after the mixer: refused when the mixer starts.
  const mix = await build(session, "mix2", [
    { use: "mixer", buses: ["ok", "stereo"], clocked: false },
    { use: "null-sink" },
  ]);
  const st = await build(session, "st", [
    { use: "tone-source", duration: 0.02, channels: 2 },
    { use: "bus-sink", bus: "stereo" },
  ]);
  const r = await mix.run();
  assertEquals(r.reason, "error");
  assertMatch(
    r.error!.message,
    /input 1 \(bus "stereo"\) carries pcm 8000 Hz stereo, but the mixer takes pcm 8000 Hz mono/,
  );
  await assertRejects(
    () => build(session, "dup", [{ use: "mixer", buses: ["a", "a"] }, { use: "null-sink" }]),
    ConfigError,
    'bus "a" is listed twice',
  );
  await Promise.all([wide.stop(), st.stop()]);
  await session.close();
});

// ---------------------------------------------------------------------------
// sequence

Deno.test("sequence: a greeting file, then silence paced on the clock: exact samples then zeros, continuous pts", async () => {
  const dir = await Deno.makeTempDir();
  const greeting = Array.from({ length: 400 }, (_, i) => (i * 157) % 20000 - 10000);
  await writeWav(`${dir}/greeting.wav`, new Int16Array(greeting), 8000);
  const clock = new VirtualClock();
  const session = new Session({ id: "seq", clock });
  const p = await build(session, "seq", [
    { use: "sequence", then: "silence", items: [{ use: "file-source", path: `${dir}/greeting.wav` }] },
    { use: "collect-sink", id: "seq" },
  ]);
  assertEquals(p.formats[0], { kind: "pcm", sampleRate: 8000, channels: 1 });
  const done = p.start();
  const c = got("seq");
  await until(() => c.frames.length === 3, "the file's three frames arrived");
  await settle();
  assertEquals(c.frames.length, 3, "silence waits for the clock");
  await clock.advanceAsync(0);
  assertEquals(c.frames.length, 4);
  for (let k = 1; k <= 3; k++) {
    await clock.advanceAsync(20);
    assertEquals(c.frames.length, 4 + k);
  }
  const r = await p.stop();
  assertEquals(r.reason, "stopped");
  assertEquals((await done).reason, "stopped");
  assertEquals(c.frames.map((f) => f.pts), [0, 160, 320, 400, 560, 720, 880]);
  assertEquals(c.frames.map((f) => f.samples.length), [160, 160, 80, 160, 160, 160, 160]);
  assertEquals(c.frames.slice(3).map((f) => f.type), ["silence", "silence", "silence", "silence"]);
  assertEquals(c.times.slice(3), [0, 20, 40, 60]);
  assertEquals(concat(c.frames), join(greeting, new Int16Array(640)));
  const stats = r.stats[0].extra as { item: number; silence_frames: number; samples: number };
  assertEquals([stats.item, stats.silence_frames, stats.samples], [1, 4, 1040]);
  await session.close();
  await Deno.remove(dir, { recursive: true });
});

Deno.test("sequence: items play back to back with continuous pts; skip moves to the next item", async () => {
  const dir = await Deno.makeTempDir();
  const greeting = Array.from({ length: 250 }, (_, i) => i * 11 - 1000);
  await writeWav(`${dir}/g.wav`, new Int16Array(greeting), 8000);
  const session = new Session({ id: "seq2", clock: new VirtualClock() });
  const beep = { use: "tone-source", frequency: 1000, duration: 0.05, frame_ms: 10 };
  const p = await build(session, "seq2", [
    { use: "sequence", items: [{ use: "file-source", path: `${dir}/g.wav` }, beep] },
    { use: "collect-sink", id: "seq2" },
  ]);
  const r = await p.run();
  assertEquals(r.reason, "eos");
  const frames = got("seq2").frames;
  const tone = await toneSamples({ frequency: 1000, duration: 0.05, frame_ms: 10 });
  assertEquals(concat(frames), join(greeting, tone));
  assertEquals(frames.map((f) => f.pts), [0, 160, 250, 330, 410, 490, 570]);
  const stats = r.stats[0].extra as { item: number; items: { samples: number }[] };
  assertEquals(stats.item, 2);
  assertEquals(stats.items.map((s) => s.samples), [250, 400]);

  // An endless tone, skipped by a control command: the next item follows at the pts where it stopped.
  const q = await build(session, "skip", [
    { use: "sequence", items: [{ use: "tone-source", duration: 0, frequency: 300 }, beep] },
    { use: "collect-sink", id: "skip" },
  ]);
  const done = q.start();
  const c = got("skip");
  await until(() => c.frames.length >= 40, "the endless tone played a while");
  assertEquals(q.control("sequence", "skip"), true);
  assertEquals((await done).reason, "eos");
  const cut = c.frames.findIndex((f) => f.samples.length === 80);
  assert(cut >= 40, `the beep starts after the endless tone (${cut})`);
  assertEquals(c.frames.map((f) => f.pts), c.frames.map((_, i) => (i <= cut ? i * 160 : cut * 160 + (i - cut) * 80)));
  assertEquals(concat(c.frames.slice(cut)), tone);
  await session.close();
  await Deno.remove(dir, { recursive: true });
});

Deno.test("sequence: build errors name the item: a format mismatch with both formats, a non-source, a bad option", async () => {
  const dir = await Deno.makeTempDir();
  await writeWav(`${dir}/g.wav`, new Int16Array(80), 8000);
  const session = new Session({ id: "seq-err", clock: new VirtualClock() });
  const opts = { registry, session, file: "graph.json" };
  const mismatch = await assertRejects(
    () =>
      buildPipeline("main", [
        {
          use: "sequence",
          items: [
            { use: "file-source", path: `${dir}/g.wav` },
            { use: "tone-source", sample_rate: 16000 },
          ],
        },
        { use: "null-sink" },
      ], opts),
    ConfigError,
  );
  assertEquals(
    mismatch.message,
    "graph.json: pipelines.main[0]: sequence: items[1] (tone-source) produces pcm 16000 Hz mono, but items[0] " +
      "(file-source) produces pcm 8000 Hz mono: every item must produce the same format (set the item's rate and " +
      "channels, or convert the file)",
  );
  const sink = await assertRejects(
    () =>
      buildPipeline("main", [
        { use: "sequence", items: [{ use: "tone-source" }, { use: "wav-sink", path: "x.wav" }] },
        { use: "null-sink" },
      ], opts),
    ConfigError,
  );
  assertEquals(
    sink.message,
    'graph.json: pipelines.main[0].items[1].use: "wav-sink" is a sink, but sequence needs a source here',
  );
  const bad = await assertRejects(
    () =>
      buildPipeline("main", [
        { use: "sequence", items: [{ use: "tone-source", frequency: -5 }] },
        { use: "null-sink" },
      ], opts),
    ConfigError,
  );
  assertMatch(bad.message, /^graph\.json: pipelines\.main\[0\]\.items\[0\]\.frequency: /);
  const missing = await assertRejects(
    () =>
      buildPipeline("main", [
        { use: "sequence", items: [{ use: "file-source", path: `${dir}/nope.wav` }] },
        { use: "null-sink" },
      ], opts),
    ConfigError,
  );
  assertMatch(missing.message, /^graph\.json: pipelines\.main\[0\]\.items\[0\]: file-source: .*nope\.wav: cannot open/);
  await session.close();
  await Deno.remove(dir, { recursive: true });
});

// ---------------------------------------------------------------------------
// Bridges between sessions

Deno.test("bridge: a chain of session A feeds a chain of session B through bus.connect; the recording holds the tone exactly", async () => {
  const dir = await Deno.makeTempDir();
  const clock = new VirtualClock();
  const a = new Session({ id: "leg-a", clock }), b = new Session({ id: "leg-b", clock });
  // 2 s: 100 frames, twice the reader's high-water mark, so the bridge's backpressure is exercised.
  const tone = { frequency: 440, duration: 2, sample_rate: 8000, amplitude: -9 };
  const send = await build(a, "send", [{ use: "tone-source", ...tone }, { use: "bus-sink", bus: "out" }]);
  const rec = await build(b, "rec", [
    { use: "bus-source", bus: "in", rate: 8000, channels: 1 },
    { use: "wav-sink", path: `${dir}/bridged.wav` },
  ]);
  const disconnect = a.bus("out").connect(b.bus("in"));
  // B's reader is not running yet: A's chain stops at B's reader's high-water mark (50 frames).
  const sendDone = send.start();
  await settle();
  assertEquals((send.stats()[1].extra as { frames: number }).frames, 50, "backpressure crosses the bridge");
  assertEquals(send.state, "running");
  const recDone = rec.start();
  const sent = await sendDone;
  assertEquals(sent.reason, "eos");
  // The owner of the bridge ends it when the sending leg is done: B's reader then sees end of stream.
  disconnect();
  const r = await recDone;
  assertEquals(r.reason, "eos");
  assertEquals((r.stats[0].extra as { dropped: number }).dropped, 0);
  const wav = await readWav(`${dir}/bridged.wav`);
  assertEquals([wav.sampleRate, wav.channels, wav.finalized], [8000, 1, true]);
  assertEquals(wav.samples, await toneSamples(tone));
  await a.close();
  await b.close();
  await Deno.remove(dir, { recursive: true });
});

// ---------------------------------------------------------------------------
// Schema and the example file

Deno.test("schema: a sequence's items are source stages ($defs.sourceStage lists the source plugins)", () => {
  const schema = pipelineJsonSchema(registry) as {
    $defs: { sourceStage: { anyOf: { properties: { use: { const?: string } } }[] } };
    properties: { pipelines: { additionalProperties: { items: { anyOf: Record<string, unknown>[] } } } };
  };
  const sources = schema.$defs.sourceStage.anyOf.map((v) => v.properties.use.const).filter((x) => x);
  for (const s of ["file-source", "tone-source", "bus-source", "mixer", "sequence"]) assert(sources.includes(s), s);
  assert(!sources.includes("wav-sink") && !sources.includes("bus-sink"));
  const seq = schema.properties.pipelines.additionalProperties.items.anyOf.find((v) =>
    (v.properties as { use: { const?: string } }).use.const === "sequence"
  ) as { properties: { items: { anyOf: { items?: { $ref?: string } }[] } } };
  assertEquals(seq.properties.items.anyOf[0].items?.$ref, "#/$defs/sourceStage");
});

Deno.test("examples/graph.json runs through the CLI: the tee's recording and the stereo mix hold the exact samples", async () => {
  const dir = await Deno.makeTempDir();
  const proc = spawnCli(["--pipeline", "examples/graph.json", "--set", `out_dir=${dir}`, "--set", "seconds=1"], {
    timeoutMs: 60_000,
  });
  const r = await proc.result;
  assertEquals(r.code, 0, r.stdout + r.stderr);
  assertMatch(r.stderr, /pipeline "stereo" ended \(eos\)/);
  const tone = await toneSamples({ frequency: 440, amplitude: -12, sample_rate: 16000, duration: 1 });
  const beep = await toneSamples({ frequency: 1000, amplitude: -12, sample_rate: 16000, duration: 0.5 });
  const hello = await readWav(repoPath("examples/audio/hello.wav"));
  const alone = await readWav(`${dir}/graph-tone.wav`);
  assertEquals([alone.sampleRate, alone.channels, alone.finalized], [16000, 1, true]);
  assertEquals(alone.samples, tone);
  const stereo = await readWav(`${dir}/graph-stereo.wav`);
  assertEquals([stereo.sampleRate, stereo.channels, stereo.finalized], [16000, 2, true]);
  const voice = join(hello.samples, beep);
  assertEquals(stereo.samples.length, voice.length * 2, "as long as the longer input");
  assertEquals(channel(stereo.samples, 2, 0), join(tone, new Int16Array(voice.length - tone.length)));
  assertEquals(channel(stereo.samples, 2, 1), voice);
  await Deno.remove(dir, { recursive: true });
});
