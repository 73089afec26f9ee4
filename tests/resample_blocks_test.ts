/**
 * Tests of block-parallel resampling (`plugins/resample/blocks.ts`, the `resampler` stage's `threads`): the output is
 * the single-thread resampler's, bit for bit, over rates, channel mappings, qualities, frame cuts and stream lengths,
 * whether the workers do the blocks, fail them, or never start; and a chain with a real-time stage refuses it.
 * `threads: 0` (the default) chooses from the stream's length, which file sources say in their format.
 *
 * @module
 */
import assert from "node:assert/strict";
import { z } from "zod";
import type { Frame, PcmFrame } from "../core/frame.ts";
import { VirtualClock } from "../core/clock.ts";
import { buildPipeline } from "../core/pipeline.ts";
import { Registry } from "../core/registry.ts";
import { definePlugin, type TransformStage } from "../core/stage.ts";
import { runTransform } from "../core/testing.ts";
import { createStage } from "./registry_util.ts";
import { writeWav } from "./media_util.ts";
import { repoPath } from "./util.ts";
import { plugins as resamplePlugins } from "../plugins/resample/mod.ts";
import { AUTO_THREADS_MIN_SECONDS, autoThreads } from "../plugins/resample/plugins.ts";
import fileSource from "../plugins/file/file_source.ts";
import wavSource from "../plugins/wav/wav_source.ts";
import type { SourceStage } from "../core/stage.ts";
import { Logger, MemoryOutput } from "../core/log.ts";
import resampler, { type ResamplerStats } from "../plugins/resample/resampler.ts";
import { blockLayout, BlockResampler } from "../plugins/resample/blocks.ts";
import { FILTER_SPECS, type FilterSpec, planResampler, PolyphaseResampler } from "../plugins/resample/polyphase.ts";

/** Speech-like test signal: a few tones and a deterministic noise, `channels` different channels, interleaved. */
function signal(rate: number, frames: number, channels: number): Int16Array {
  const x = new Int16Array(frames * channels);
  let seed = 12345;
  for (let i = 0; i < frames; i++) {
    for (let c = 0; c < channels; c++) {
      seed = (seed * 1103515245 + 12345) >>> 0;
      const noise = ((seed >>> 16) / 65536 - 0.5) * 4000;
      const v = 9000 * Math.sin((2 * Math.PI * (300 + 200 * c) * i) / rate) +
        6000 * Math.sin((2 * Math.PI * 3100 * i) / rate) + 3000 * Math.sin((2 * Math.PI * 0.45 * rate * i) / rate) +
        noise;
      x[i * channels + c] = Math.max(-32768, Math.min(32767, Math.round(v)));
    }
  }
  return x;
}

/** Cuts `x` into frames of the sizes given (cycled). */
function cuts(x: Int16Array, channels: number, sizes: number[]): Int16Array[] {
  const out: Int16Array[] = [];
  for (let at = 0, k = 0; at < x.length / channels; k++) {
    const n = Math.min(sizes[k % sizes.length], x.length / channels - at);
    out.push(x.subarray(at * channels, (at + n) * channels));
    at += n;
  }
  return out;
}

function concat(parts: Int16Array<ArrayBufferLike>[]): Int16Array {
  const all = new Int16Array(parts.reduce((a, p) => a + p.length, 0));
  let at = 0;
  for (const p of parts) (all.set(p, at), at += p.length);
  return all;
}

interface Case {
  inRate: number;
  outRate: number;
  inChannels: number;
  outChannels: number;
  filter: FilterSpec;
}

/** The single-thread resampler's output for `frames`. */
function reference(c: Case, frames: Int16Array[]): Int16Array {
  const r = new PolyphaseResampler(c);
  const parts: Int16Array<ArrayBufferLike>[] = frames.map((f) => r.process(f).slice());
  parts.push(r.flush());
  return concat(parts);
}

/**
 * A BlockResampler's output for `frames`, and its counts. A worker is never given up for being slow (`stallMs`): not
 * stealing, the worker does every block it is given, however loaded the machine.
 */
function blocked(c: Case, frames: Int16Array[], extra: Partial<ConstructorParameters<typeof BlockResampler>[0]>) {
  const r = new BlockResampler({ ...c, workers: 1, blockSeconds: 0.05, stallMs: 600_000, ...extra });
  const parts: Int16Array[] = [];
  try {
    for (const f of frames) r.process(f, (o) => parts.push(o.slice()));
    r.flush((o) => parts.push(o.slice()));
    return { out: concat(parts), counts: { ...r.counts }, layout: r.layout };
  } finally {
    r.close();
  }
}

function assertSame(got: Int16Array, want: Int16Array, what: string): void {
  assert.equal(got.length, want.length, `${what}: length`);
  for (let i = 0; i < want.length; i++) {
    if (got[i] !== want[i]) assert.fail(`${what}: sample ${i} is ${got[i]}, the single thread's is ${want[i]}`);
  }
}

Deno.test("blockLayout: whole periods at which every stage's phase repeats, or none for an unusual ratio", () => {
  const l = blockLayout(planResampler(44100, 8000), 44100, 8000)!;
  // Two half-bands (2, then 4 input frames) and 11 025 → 8 000 Hz (441 frames at 11 025 Hz, ×4): 1 764.
  assert.equal(l.period, 1764);
  assert.equal(l.prefix % l.period, 0);
  assert.equal(l.block % l.period, 0);
  assert.ok(l.prefix >= 23 + 2 * 51 + 4 * 128, "the prefix covers every stage's span");
  assert.equal(l.block, 50 * 1764, "about 2 s");
  assert.equal(blockLayout(planResampler(48000, 8000), 48000, 8000)!.period, 12);
  assert.equal(blockLayout(planResampler(8000, 48000), 8000, 48000)!.period, 1);
  // 44 100 → 7 999 Hz: phases repeat only after 44 100 × … frames: not cut.
  assert.equal(blockLayout(planResampler(44100, 7999), 44100, 7999), undefined);
  assert.equal(BlockResampler.layoutFor({ inRate: 44100, outRate: 7999, inChannels: 1, outChannels: 1 }), undefined);
  assert.throws(
    () => new BlockResampler({ inRate: 44100, outRate: 7999, inChannels: 1, outChannels: 1, workers: 1 }),
    /cannot be cut into blocks/,
  );
});

Deno.test("BlockResampler: bit for bit the single thread's output, over rates, channels, qualities and cuts", () => {
  const cases: [number, number, number, number, keyof typeof FILTER_SPECS][] = [
    [44100, 8000, 1, 1, "medium"],
    [48000, 8000, 2, 1, "medium"],
    [8000, 48000, 1, 2, "medium"],
    [16000, 8000, 2, 2, "best"],
    [44100, 48000, 1, 1, "fastest"],
    [22050, 16000, 1, 1, "linear"],
  ];
  for (const [inRate, outRate, inChannels, outChannels, q] of cases) {
    const c: Case = { inRate, outRate, inChannels, outChannels, filter: FILTER_SPECS[q] };
    const x = signal(inRate, Math.round(inRate * 0.61), inChannels);
    const frames = cuts(x, inChannels, [441, 37, 2000, 1, 9000]);
    const want = reference(c, frames);
    for (const steal of [false, true]) {
      const what = `${inRate}→${outRate} ${inChannels}→${outChannels} ch ${q}, steal ${steal}`;
      const got = blocked(c, frames, { steal });
      assertSame(got.out, want, what);
      assert.ok(got.counts.worker + got.counts.local + got.counts.stolen >= 10, `${what}: many blocks`);
      // Not stealing, the worker does every block it is given: at least the first.
      if (!steal) assert.ok(got.counts.worker >= 1, `${what}: the worker did blocks`);
    }
  }
});

Deno.test("BlockResampler: streams shorter than a block, at block edges, empty, and one after another", () => {
  const c: Case = { inRate: 44100, outRate: 8000, inChannels: 1, outChannels: 1, filter: FILTER_SPECS.medium };
  const layout = blockLayout(planResampler(44100, 8000, c.filter), 44100, 8000, 0.05)!;
  const x = signal(44100, layout.block * 4 + layout.lookahead + 7, 1);
  for (
    const n of [
      0,
      1,
      100,
      layout.block - 1,
      layout.block,
      layout.block + layout.lookahead - 1,
      layout.block + layout.lookahead,
      layout.block + layout.lookahead + 1,
      2 * layout.block,
      x.length,
    ]
  ) {
    const frames = cuts(x.subarray(0, n), 1, [882]);
    assertSame(blocked(c, frames, { steal: false }).out, reference(c, frames), `${n} frames`);
    assertSame(blocked(c, [x.subarray(0, n)], {}).out, reference(c, [x.subarray(0, n)]), `${n} frames in one`);
  }
  // Blocks asked shorter than the prefix (8 → 48 kHz: a period of 1 frame) are made as long as the prefix.
  const up: Case = { inRate: 8000, outRate: 48000, inChannels: 1, outChannels: 1, filter: FILTER_SPECS.medium };
  const upLayout = blockLayout(planResampler(8000, 48000, up.filter), 8000, 48000, 0.001)!;
  assert.ok(upLayout.block >= upLayout.prefix && upLayout.prefix > 8, JSON.stringify(upLayout));
  const upFrames = cuts(signal(8000, 4000, 1), 1, [160, 7]);
  assertSame(blocked(up, upFrames, { blockSeconds: 0.001 }).out, reference(up, upFrames), "8 → 48 kHz, short blocks");
  // Two streams through one resampler: the second starts afresh after the flush.
  const r = new BlockResampler({ ...c, workers: 2, blockSeconds: 0.05 });
  try {
    for (const n of [x.length, 5000]) {
      const parts: Int16Array[] = [];
      const frames = cuts(x.subarray(0, n), 1, [4410]);
      for (const f of frames) r.process(f, (o) => parts.push(o.slice()));
      r.flush((o) => parts.push(o.slice()));
      assertSame(concat(parts), reference(c, frames), `stream of ${n} after another`);
    }
  } finally {
    r.close();
  }
});

Deno.test("BlockResampler: a worker that fails every block, or cannot start, costs no output", async () => {
  const c: Case = { inRate: 48000, outRate: 8000, inChannels: 1, outChannels: 1, filter: FILTER_SPECS.medium };
  const frames = cuts(signal(48000, 48000, 1), 1, [960]);
  const want = reference(c, frames);
  // The failing worker runs: not stealing, the stream's thread waits for it to fail the first block, then does the
  // rest itself. The broken one never runs: its blocks are taken back.
  const workers = [["failing", "block_worker_failing.ts", false], ["broken", "block_worker_broken.ts", true]] as const;
  for (const [name, file, steal] of workers) {
    const errors: string[] = [];
    let reported = () => {};
    const report = new Promise<void>((ok) => reported = ok);
    const r = new BlockResampler({
      ...c,
      workers: 1,
      blockSeconds: 0.05,
      steal,
      stallMs: 600_000,
      workerUrl: new URL(`./fixtures/${file}`, import.meta.url),
      onWorkerError: (m) => (errors.push(m), reported()),
    });
    try {
      const parts: Int16Array[] = [];
      for (const f of frames) r.process(f, (o) => parts.push(o.slice()));
      r.flush((o) => parts.push(o.slice()));
      assertSame(concat(parts), want, `${name} worker`);
      assert.equal(r.counts.worker, 0, `${name}: no block done by the worker`);
      assert.ok(r.counts.stolen >= 1, `${name}: its blocks taken back`);
      // The failure is reported once: at once for a failed block, from the worker's error event for a broken one
      // (delivered once this thread lets its event loop run; the bound only keeps a broken test from hanging).
      const bound = setTimeout(reported, 60_000);
      await report;
      clearTimeout(bound);
      assert.equal(errors.length, 1, `${name}: ${errors.join("; ")}`);
      assert.match(errors[0], name === "broken" ? /broken on purpose/ : /could not resample a block/);
    } finally {
      r.close();
    }
  }
});

/** The `resampler` stage's output frames for `frames` (44.1 kHz mono → 8 kHz), with `threads`. */
async function stageOutput(threads: number, input: PcmFrame[]) {
  const stage = await createStage<TransformStage & { stats(): ResamplerStats }>(resampler, {
    rate: 8000,
    threads,
  });
  stage.negotiate!({ kind: "pcm", sampleRate: 44100, channels: 1 });
  const out = runTransform(stage, input) as PcmFrame[];
  const stats = stage.stats() as unknown as ResamplerStats;
  await stage.close?.();
  return { out, stats };
}

Deno.test("resampler threads: 2 gives the same frames as one thread, cut as the input was, pts contiguous", async () => {
  const x = signal(44100, 44100 * 5 + 123, 1);
  const input: PcmFrame[] = cuts(x, 1, [4410]).map((s, i) => ({
    kind: "pcm",
    samples: s.slice(),
    sampleRate: 44100,
    channels: 1,
    pts: i * 4410,
  }));
  const one = await stageOutput(1, input);
  const two = await stageOutput(2, input);
  assertSame(concat(two.out.map((f) => f.samples)), concat(one.out.map((f) => f.samples)), "threads 2");
  let next = 0;
  for (const f of two.out) {
    assert.equal(f.pts, next, "pts contiguous");
    next += f.samples.length;
  }
  // Frames of the input's duration (100 ms: 800 samples), but the stream's last.
  assert.ok(two.out.slice(0, -1).every((f) => f.samples.length === 800), "100 ms frames");
  // The next stage does not borrow (no reuseOutput here): each frame has memory of its own, kept as it was.
  for (let i = 1; i < two.out.length; i++) {
    const a = two.out[i - 1].samples, b = two.out[i].samples;
    assert.ok(
      a.buffer !== b.buffer || a.byteOffset + a.byteLength <= b.byteOffset,
      `frame ${i} overlaps the one before`,
    );
  }
  assert.match(two.stats.converter, /2 threads/);
  const b = two.stats.blocks!;
  assert.equal(b.worker + b.local + b.stolen, 3, "5 s in blocks of ~2 s");
  assert.equal(one.stats.blocks, undefined);
});

/**
 * A pcm sink for test chains: `test-realtime-sink` (a real-time stage, as a device or the network is) or `test-sink`
 * (a file-like one); each frame goes to `onFrame`.
 */
function testSink(realtime: boolean, onFrame: (f: Frame) => void = () => {}) {
  return definePlugin({
    name: realtime ? "test-realtime-sink" : "test-sink",
    kind: "sink",
    description: "collects",
    accepts: [{ kind: "pcm" }],
    ...(realtime ? { realtime: true } : {}),
    options: z.object({}),
    create: () => ({ write: onFrame }),
  });
}

Deno.test("resampler threads: refused in a chain with a real-time stage, saying why", async () => {
  const source = definePlugin({
    name: "test-source",
    kind: "source",
    description: "44.1 kHz mono, one frame",
    produces: { kind: "pcm", sampleRate: 44100, channels: 1 },
    options: z.object({}),
    create: () => ({
      run(ctx) {
        ctx.emit({ kind: "pcm", samples: new Int16Array(4410), sampleRate: 44100, channels: 1, pts: 0 });
        return Promise.resolve();
      },
    }),
  });
  const registry = new Registry([source, testSink(true), testSink(false), ...resamplePlugins]);
  const chain = (s: string, threads: number) => [{ use: "test-source" }, { use: "resampler", threads }, { use: s }];
  await assert.rejects(
    buildPipeline("send", chain("test-realtime-sink", 2), { registry, clock: new VirtualClock() }),
    /pipeline "send", stage 1 \(resampler\): "threads": 2 is for chains that run faster than real time.*remove "threads"/,
  );
  // One thread in that chain, and two threads in a chain to a file-like sink, build and run.
  for (const [s, threads] of [["test-realtime-sink", 1], ["test-sink", 2]] as const) {
    const p = await buildPipeline("send", chain(s, threads), { registry, clock: new VirtualClock() });
    const r = await p.start();
    assert.equal(r.reason, "eos", `${s} ${threads}: ${r.error}`);
  }
});

Deno.test("transcode.json --set threads=2: the same WAV file, byte for byte, as one thread", async () => {
  const dir = await Deno.makeTempDir({ prefix: "voxpipe-blocks-" });
  try {
    // 7 s of 44.1 kHz stereo: three whole blocks and a tail, down-mixed to mono 8 kHz.
    await writeWav(`${dir}/in.wav`, signal(44100, 44100 * 7 + 321, 2), 44100, 2);
    const files: Uint8Array[] = [];
    for (const threads of [1, 2]) {
      const out = await new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "-A",
          repoPath("mod.ts"),
          "--pipeline",
          repoPath("pipelines/transcode.json"),
          "--set",
          `file=${dir}/in.wav`,
          "--set",
          `out=${dir}/out-${threads}.wav`,
          "--set",
          `threads=${threads}`,
          "--log-level",
          "warn",
        ],
        stdout: "piped",
        stderr: "piped",
      }).output();
      assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
      assert.equal(new TextDecoder().decode(out.stderr), "", "nothing logged");
      files.push(await Deno.readFile(`${dir}/out-${threads}.wav`));
    }
    assert.equal(files[0].length, 44 + 2 * Math.round(((44100 * 7 + 321) * 8000) / 44100));
    assert.deepEqual(files[1], files[0]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("resampler threads: --check's plan says how many threads resample, or why one does", async () => {
  const plan = async (options: Record<string, unknown>, inRate = 44100) => {
    const stage = await createStage<TransformStage>(resampler, options);
    stage.negotiate!({ kind: "pcm", sampleRate: inRate, channels: 1 });
    const p = stage.plan!({ realtimeSink: false });
    await stage.close?.();
    return p;
  };
  assert.equal(await plan({ rate: 8000, threads: 1 }), undefined, "one thread asked: nothing to say");
  assert.equal(await plan({ rate: 8000 }), undefined, "automatic, the stream's length unknown: one, nothing to say");
  assert.match((await plan({ rate: 8000, threads: 2 }))!, /^2 threads \(blocks of 2\.00 s/);
  assert.match((await plan({ rate: 7999, threads: 2 }))!, /one thread: 44100 → 7999 Hz cannot be cut into blocks/);
  assert.match((await plan({ rate: 8000, threads: 2, quality: "lsr-linear" }))!, /lsr-linear: on one thread/);
  assert.match((await plan({ rate: 8000, threads: 3 }, 8000))!, /same rate/);
});

Deno.test("autoThreads: 2 only for a stream known to last 60 minutes or more, faster than real time, on 2+ cores", () => {
  const min = AUTO_THREADS_MIN_SECONDS;
  assert.equal(min, 3600);
  const at = (seconds: number, o: Partial<Parameters<typeof autoThreads>[0]> = {}) =>
    autoThreads({ sampleRate: 44100, frames: Math.round(seconds * 44100), cores: 2, ...o });
  assert.deepEqual(at(7200), { threads: 2, why: "a 7200 s stream, 2 cores" });
  assert.equal(at(min).threads, 2, "from the limit on");
  assert.deepEqual(at(min - 1), { threads: 1, why: `a ${min - 1} s stream: two from 60 minutes` });
  assert.deepEqual(at(7200, { cores: 1 }), { threads: 1, why: "a 7200 s stream, but 1 core" });
  assert.deepEqual(at(7200, { realtime: true }), { threads: 1, why: "a real-time chain" });
  assert.deepEqual(at(7200, { frames: undefined }), {
    threads: 1,
    why: "the stream's length is not known in advance",
  });
  assert.equal(at(7200, { sampleRate: 8000 }).threads, 2, "the length in seconds of the input's rate: 39 690 s");
});

Deno.test("file-source and wav-source say a file's length in their format, and none when looped", async () => {
  const dir = await Deno.makeTempDir({ prefix: "voxpipe-auto-" });
  try {
    await writeWav(`${dir}/a.wav`, signal(16000, 16000 * 3 + 7, 2), 16000, 2);
    for (const plugin of [fileSource, wavSource]) {
      for (const loop of [false, true]) {
        const stage = await createStage<SourceStage>(plugin, { path: `${dir}/a.wav`, loop });
        const fmt = stage.negotiate!(undefined);
        const want = { kind: "pcm", sampleRate: 16000, channels: 2, ...(loop ? {} : { frames: 16000 * 3 + 7 }) };
        assert.deepEqual(fmt, want, `${plugin.name}, loop ${loop}`);
        await stage.close?.();
      }
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name: "resampler threads 0: two for a long stream in a file-to-file chain, one in a real-time chain",
  ignore: (navigator.hardwareConcurrency ?? 1) < 2,
  async fn() {
    // A source that says its stream lasts an hour (it sends only 3 s: the choice is made from what it says).
    const hour = 44100 * 3600;
    const source = definePlugin({
      name: "test-long-source",
      kind: "source",
      description: "44.1 kHz mono, said to last an hour",
      produces: { kind: "pcm", sampleRate: 44100, channels: 1, frames: hour },
      options: z.object({}),
      create: () => ({
        async run(ctx) {
          const x = signal(44100, 44100 * 3, 1);
          for (let at = 0; at < x.length; at += 4410) {
            ctx.emit({ kind: "pcm", samples: x.slice(at, at + 4410), sampleRate: 44100, channels: 1, pts: at });
            await Promise.resolve();
          }
        },
      }),
    });
    const got: Int16Array[] = [];
    const collect = (f: Frame) => void got.push((f as PcmFrame).samples.slice());
    const registry = new Registry([source, testSink(true, collect), testSink(false, collect), ...resamplePlugins]);
    const outputs: Int16Array[] = [];
    for (const [s, want] of [["test-sink", /2 threads/], ["test-realtime-sink", /^polyphase/]] as const) {
      got.length = 0;
      const lines = new MemoryOutput();
      const p = await buildPipeline("auto", [{ use: "test-long-source" }, { use: "resampler" }, { use: s }], {
        registry,
        clock: new VirtualClock(),
        log: new Logger({ level: "info", outputs: [lines] }),
      });
      // Taking a thread more than asked for is said once, at info level; staying on one is not.
      const said = lines.lines.filter((l) => l.includes("resampling on"));
      if (s === "test-sink") {
        assert.equal(said.length, 1, lines.lines.join("\n"));
        assert.match(said[0], /resampling on 2 threads \(a 3600 s stream, \d+ cores\); "threads": 1 keeps one/);
      } else assert.deepEqual(said, []);
      const r = await p.run();
      assert.equal(r.reason, "eos", `${s}: ${r.error}`);
      const converter = (p.stats()[1].extra as unknown as ResamplerStats).converter;
      assert.match(converter, want, s);
      assert.doesNotMatch(converter, s === "test-sink" ? /^$/ : /threads/, s);
      outputs.push(concat(got));
    }
    assert.equal(outputs[0].length, Math.round((44100 * 3 * 8000) / 44100));
    assertSame(outputs[0], outputs[1], "two threads and one give the same samples");

    // A rate pair that cannot be cut into blocks stays on one thread, says why, and announces no second thread.
    const lines = new MemoryOutput();
    const p = await buildPipeline("odd", [{ use: "test-long-source" }, { use: "resampler", rate: 7999 }, {
      use: "test-sink",
    }], { registry, clock: new VirtualClock(), log: new Logger({ level: "info", outputs: [lines] }) });
    assert.deepEqual(lines.lines.filter((l) => l.includes("resampling on")), []);
    assert.ok(lines.lines.some((l) => l.includes("44100 → 7999 Hz cannot be cut into blocks")), lines.lines.join("\n"));
    await p.stop();
  },
});

Deno.test("resampler threads 0: --check's plan says what was chosen for a stream of known length", async () => {
  const plan = async (options: Record<string, unknown>, seconds: number | undefined) => {
    const stage = await createStage<TransformStage>(resampler, options);
    const frames = seconds === undefined ? {} : { frames: 44100 * seconds };
    stage.negotiate!({ kind: "pcm", sampleRate: 44100, channels: 1, ...frames });
    const p = stage.plan!({ realtimeSink: false });
    await stage.close?.();
    return p;
  };
  assert.equal(
    await plan({ rate: 8000 }, 600),
    "threads 0 (automatic): one thread (a 600 s stream: two from 60 minutes)",
  );
  assert.equal(await plan({ rate: 8000 }, undefined), undefined);
  assert.equal(await plan({ rate: 44100 }, 7200), undefined, "the same rate: nothing to choose");
  assert.equal(await plan({ rate: 8000, quality: "lsr-linear" }, 7200), undefined, "libsamplerate: one, always");
  if ((navigator.hardwareConcurrency ?? 1) >= 2) {
    assert.match(
      (await plan({ rate: 8000 }, 7200))!,
      /^threads 0 \(automatic\): 2 threads \(a 7200 s stream, \d+ cores; blocks of 2\.00 s; a worker starts at the first\)$/,
    );
  }
});

Deno.test("transcode.json --check: a WAV file of 60 minutes gets two threads by default", {
  ignore: (navigator.hardwareConcurrency ?? 1) < 2,
}, async () => {
  const dir = await Deno.makeTempDir({ prefix: "voxpipe-auto-" });
  try {
    // 60 minutes of 16 kHz mono silence: a WAV header and a sparse data chunk (--check reads only the header).
    const frames = 16000 * 3600;
    await writeWav(`${dir}/long.wav`, new Int16Array(0), 16000, 1);
    const head = await Deno.readFile(`${dir}/long.wav`);
    const v = new DataView(head.buffer);
    v.setUint32(4, 36 + frames * 2, true);
    v.setUint32(40, frames * 2, true);
    await Deno.writeFile(`${dir}/long.wav`, head);
    await Deno.truncate(`${dir}/long.wav`, 44 + frames * 2);
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        repoPath("mod.ts"),
        "--check",
        repoPath("pipelines/transcode.json"),
        "--set",
        `file=${dir}/long.wav`,
        "--set",
        `out=${dir}/out.wav`,
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(out.stdout);
    assert.equal(out.code, 0, text + new TextDecoder().decode(out.stderr));
    assert.match(text, /resampler .*threads 0 \(automatic\): 2 threads \(a 3600 s stream, \d+ cores;/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
