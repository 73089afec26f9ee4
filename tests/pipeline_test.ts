import { assert, assertEquals, assertMatch, assertRejects } from "./assert.ts";
import { z } from "zod";
import { VirtualClock } from "../core/clock.ts";
import type { Frame, PcmFrame } from "../core/frame.ts";
import { buildPipeline, StageError } from "../core/pipeline.ts";
import { Registry } from "../core/registry.ts";
import { definePlugin, FormatError } from "../core/stage.ts";
import { readableSource, streamSink } from "../core/streams.ts";
import { ConfigError } from "../core/errors.ts";
import { fromFileUrl } from "./util.ts";
import { plugins as resamplePlugins } from "../plugins/resample/mod.ts";

/** A source of `count` pcm frames of 160 samples whose values are the frame number. */
const counter = definePlugin({
  name: "counter",
  kind: "source",
  description: "test source",
  produces: { kind: "pcm", sampleRate: 8000, channels: 1 },
  options: z.object({
    count: z.number().int().min(0).default(10),
    rate: z.number().int().default(8000),
    fail_at: z.number().int().default(-1),
  }),
  create: ({ count, rate, fail_at }) => ({
    negotiate: () => ({ kind: "pcm", sampleRate: rate, channels: 1 }),
    async run(ctx) {
      for (let i = 0; i < count; i++) {
        if (ctx.signal.aborted) return;
        if (i === fail_at) throw new Error("source broke");
        const f: PcmFrame = {
          kind: "pcm",
          samples: new Int16Array(160).fill(i),
          sampleRate: rate,
          channels: 1,
          pts: i * 160,
        };
        if (!ctx.emit(f)) await ctx.ready();
        if (i % 4 === 3) await Promise.resolve();
      }
    },
  }),
});

const double = definePlugin({
  name: "double",
  kind: "transform",
  description: "emits every frame twice",
  accepts: [{ kind: "pcm" }],
  produces: { kind: "pcm" },
  options: z.object({ throw_at: z.number().int().default(-1) }),
  create: ({ throw_at }) => {
    let n = 0;
    let held: Frame | undefined;
    return {
      negotiate: (input) => input,
      process(frame, emit) {
        if (n++ === throw_at) throw new Error("transform broke");
        emit(frame);
        emit(frame);
        held = frame;
      },
      flush(emit) {
        if (held) emit({ ...(held as PcmFrame), pts: -1 });
      },
    };
  },
});

const narrowband = definePlugin({
  name: "narrowband",
  kind: "transform",
  description: "wants 8 kHz mono",
  accepts: [{ kind: "pcm", sampleRate: 8000, channels: 1 }],
  produces: { kind: "pcm", sampleRate: 8000, channels: 1 },
  options: z.object({ ptime: z.number().int().min(10).max(60).default(20) }),
  create: () => ({ process: (f, emit) => emit(f) }),
});

interface Collected {
  frames: Frame[];
  ended: boolean;
  closed: boolean;
  maxQueue: number;
}
const collected: Collected[] = [];

const collect = definePlugin({
  name: "collect",
  kind: "sink",
  description: "collects frames, with an optional slow consumer",
  accepts: [{ kind: "pcm" }],
  options: z.object({ slow: z.boolean().default(false), limit: z.number().int().default(3) }),
  create: ({ slow, limit }) => {
    const c: Collected = { frames: [], ended: false, closed: false, maxQueue: 0 };
    collected.push(c);
    let queue = 0;
    let waiter: (() => void) | undefined;
    return {
      write(f) {
        c.frames.push(f);
        if (!slow) return true;
        queue++;
        c.maxQueue = Math.max(c.maxQueue, queue);
        setTimeout(() => {
          queue--;
          if (queue <= 1 && waiter) {
            waiter();
            waiter = undefined;
          }
        }, 1);
        return queue < limit;
      },
      drained: () => new Promise<void>((r) => (waiter = r)),
      end() {
        c.ended = true;
      },
      close() {
        c.closed = true;
      },
    };
  },
});

const registry = new Registry([counter, double, narrowband, collect]);
const opts = { registry, clock: new VirtualClock() };

Deno.test("frames flow synchronously through transforms; counters and flush", async () => {
  const p = await buildPipeline("main", [{ use: "counter", count: 5 }, { use: "double" }, { use: "collect" }], opts);
  const r = await p.run();
  const c = collected.at(-1)!;
  assertEquals(r.reason, "eos");
  assertEquals(c.frames.length, 11); // 5 × 2 + 1 flushed
  assertEquals((c.frames[10] as PcmFrame).pts, -1);
  assertEquals(c.ended, true);
  assertEquals(c.closed, true);
  const s = p.stats();
  assertEquals(s.map((x) => [x.framesIn, x.framesOut]), [[0, 5], [5, 11], [11, 0]]);
  assertEquals(p.state, "ended");
});

Deno.test("backpressure: the source waits while the sink is full", async () => {
  const p = await buildPipeline(
    "main",
    [{ use: "counter", count: 50 }, { use: "collect", slow: true, limit: 3 }],
    opts,
  );
  const r = await p.run();
  const c = collected.at(-1)!;
  assertEquals(r.reason, "eos");
  assertEquals(c.frames.length, 50);
  assert(c.maxQueue <= 3, `queue grew to ${c.maxQueue}`);
});

Deno.test("format mismatch names both stages and formats and says what to change", async () => {
  // The stage to insert is suggested by a registered plugin that bridges the formats (here the resampler).
  const withResampler = { ...opts, registry: new Registry([counter, narrowband, collect, ...resamplePlugins]) };
  const chain = [{ use: "counter", rate: 16000 }, { use: "narrowband" }, { use: "collect" }];
  const err = await assertRejects(() => buildPipeline("send", chain, withResampler), FormatError);
  assertMatch(
    err.message,
    /narrowband \(stage 1\) expects pcm 8000 Hz mono, but counter \(stage 0\) produces pcm 16000 Hz mono: insert \{"use": "resampler", "rate": 8000, "channels": 1\} between them$/,
  );
  // No registered plugin bridges them: the message says so rather than naming a stage that is not there.
  const bare = await assertRejects(() => buildPipeline("send", chain, opts), FormatError);
  assertMatch(
    bare.message,
    /produces pcm 16000 Hz mono: make the formats match \(no registered plugin converts pcm 16000 Hz mono to pcm 8000 Hz mono\)$/,
  );
});

Deno.test("unknown plugin: error lists the known ones", async () => {
  const err = await assertRejects(
    () => buildPipeline("main", [{ use: "countr" }, { use: "collect" }], { ...opts, file: "x.json" }),
    ConfigError,
  );
  assertMatch(err.message, /^x\.json: pipelines\.main\[0\]\.use: unknown plugin "countr" \(did you mean "counter"\?\)/);
  assertMatch(err.message, /known plugins: collect, counter, double, narrowband/);
});

Deno.test("bad option: error has the file, JSON path, and the problem", async () => {
  const err = await assertRejects(
    () =>
      buildPipeline("send", [{ use: "counter" }, { use: "narrowband", ptime: 7 }, { use: "collect" }], {
        ...opts,
        file: "caller.json",
      }),
    ConfigError,
  );
  assertEquals(err.message, "caller.json: pipelines.send[1].ptime: expected at least 10, got 7");
  const err2 = await assertRejects(
    () => buildPipeline("send", [{ use: "counter", bogus: 1 }, { use: "collect" }], opts),
    ConfigError,
  );
  assertMatch(err2.message, /pipelines\.send\[0\]: unknown option "bogus"/);
});

Deno.test("a stage in the wrong position is refused", async () => {
  const err = await assertRejects(() => buildPipeline("m", [{ use: "double" }, { use: "collect" }], opts), ConfigError);
  assertMatch(err.message, /"double" is a transform, but the first stage of a chain must be a source/);
});

Deno.test("a transform error fails the pipeline with the stage name and index; the sink still finalizes", async () => {
  const p = await buildPipeline("rx", [{ use: "counter", count: 10 }, { use: "double", throw_at: 3 }, {
    use: "collect",
  }], opts);
  const errors: unknown[] = [];
  p.on("error", (e) => errors.push(e.detail));
  const r = await p.run();
  assertEquals(r.reason, "error");
  assert(r.error instanceof StageError);
  assertEquals(r.error.message, 'pipeline "rx", stage 1 (double): transform broke');
  assertEquals(errors.length, 1);
  assertEquals(collected.at(-1)!.ended, true);
  assertEquals(p.stats()[1].errors, 1);
});

Deno.test("a source error is attributed to stage 0", async () => {
  const p = await buildPipeline("m", [{ use: "counter", count: 10, fail_at: 2 }, { use: "collect" }], opts);
  const r = await p.run();
  assertEquals(r.reason, "error");
  assertEquals(r.error!.message, 'pipeline "m", stage 0 (counter): source broke');
  assertEquals(collected.at(-1)!.frames.length, 2);
});

Deno.test("stop() ends a running pipeline, flushes and finalizes", async () => {
  const p = await buildPipeline("m", [{ use: "counter", count: 1_000_000 }, { use: "double" }, {
    use: "collect",
    slow: true,
  }], opts);
  const events: string[] = [];
  p.on("*", (e) => events.push(e.type));
  p.start();
  await new Promise((r) => setTimeout(r, 20));
  const r = await p.stop();
  assertEquals(r.reason, "stopped");
  const c = collected.at(-1)!;
  assert(c.frames.length < 2_000_001);
  assertEquals(c.ended, true);
  assertEquals(events, ["started", "ended"]);
});

/** A live source (like a socket): one frame every 20 ms of the clock until its signal aborts. */
const live = definePlugin({
  name: "live",
  kind: "source",
  description: "frames on a clock until stopped",
  realtime: true,
  produces: { kind: "pcm", sampleRate: 8000, channels: 1 },
  options: z.object({}),
  create: () => ({
    async run(ctx) {
      for (let i = 0;; i++) {
        try {
          await ctx.clock.sleep(20, ctx.signal);
        } catch {
          return;
        }
        ctx.emit({ kind: "pcm", samples: new Int16Array(160).fill(i), sampleRate: 8000, channels: 1, pts: i * 160 });
      }
    },
  }),
});

/** Holds every frame until flush (like a jitter buffer at the end of a call). */
const hold = definePlugin({
  name: "hold",
  kind: "transform",
  description: "emits what it holds on flush",
  accepts: [{ kind: "pcm" }],
  produces: { kind: "pcm" },
  options: z.object({}),
  create: () => {
    const held: Frame[] = [];
    return { negotiate: (i) => i, process: (f) => void held.push(f), flush: (emit) => held.forEach(emit) };
  },
});

/** A sink whose end() takes `drain_ms` of the clock, like a speaker playing its queue out, unless aborted. */
const device = definePlugin({
  name: "device",
  kind: "sink",
  description: "drains on end, drops on abort",
  accepts: [{ kind: "pcm" }],
  options: z.object({ drain_ms: z.number().default(100) }),
  create: ({ drain_ms }) => {
    const c = { frames: 0, played: 0, aborted: false };
    devices.push(c);
    let signal: AbortSignal;
    return {
      start(ctx) {
        signal = ctx.signal;
        signal.addEventListener("abort", () => c.aborted = true);
      },
      write() {
        c.frames++;
      },
      async end() {
        if (signal.aborted) return;
        try {
          await clock.sleep(drain_ms, signal);
          c.played = c.frames;
        } catch { /* aborted: the queue is dropped */ }
      },
    };
  },
});
const devices: { frames: number; played: number; aborted: boolean }[] = [];
const clock = new VirtualClock();
const liveOpts = { registry: new Registry([live, hold, device]), clock };

/** What `ctx.realtime` said to a `peek` stage in `create` and `negotiate`, and to the sub-stage it builds in `create`. */
const peeks: { create?: boolean; negotiate?: boolean; sub?: boolean }[] = [];
const peek = definePlugin({
  name: "peek",
  kind: "transform",
  description: "records what its context says about real time",
  accepts: [{ kind: "pcm" }],
  produces: { kind: "pcm" },
  options: z.object({ sub: z.boolean().default(false) }),
  create: async ({ sub }, ctx) => {
    const seen: (typeof peeks)[number] = { create: ctx.realtime };
    peeks.push(seen);
    if (sub) {
      await ctx.buildStage!({ use: "peek" }, ".sub", "transform");
      seen.sub = peeks.pop()!.create;
    }
    return {
      negotiate: (i) => {
        seen.negotiate = ctx.realtime;
        return i;
      },
      process: (f, emit) => emit(f),
    };
  },
});

Deno.test("StageContext.realtime: from the plugins' declarations or BuildOptions.realtime, before create, for the chain's own stages only", async () => {
  const reg = new Registry([live, counter, peek, device, collect]);
  peeks.length = 0;
  const rt = await buildPipeline("rt", [{ use: "live" }, { use: "peek", sub: true }, { use: "device" }], {
    registry: reg,
    clock,
  });
  assertEquals(peeks, [{ create: true, negotiate: true, sub: undefined }]);
  await rt.stop();
  peeks.length = 0;
  const file = await buildPipeline("file", [{ use: "counter", count: 1 }, { use: "peek", sub: true }, {
    use: "collect",
  }], { registry: reg, clock });
  assertEquals(peeks, [{ create: undefined, negotiate: undefined, sub: undefined }]);
  await file.stop();
  // A chain built for a call (BuildOptions.realtime) is real-time whatever its plugins declare.
  peeks.length = 0;
  const call = await buildPipeline("greeting", [{ use: "counter", count: 1 }, { use: "peek" }, { use: "collect" }], {
    registry: reg,
    clock,
    realtime: true,
  });
  assertEquals(peeks, [{ create: true, negotiate: true }]);
  await call.stop();
  // An entry whose plugin is unknown is still refused with its own error.
  await assertRejects(
    () => buildPipeline("bad", [{ use: "live" }, { use: "peek" }, { use: "nope" }], { registry: reg, clock }),
    ConfigError,
    'unknown plugin "nope"',
  );
});

/** A control plugin that runs nothing and offers `variables` to the chains: for a runner with a control section. */
async function fakeControl(variables: Record<string, string> = {}) {
  const { defineControl } = await import("../core/control.ts");
  return defineControl({
    name: "fake",
    kind: "control",
    description: "",
    variables,
    options: z.object({}),
    create: () => ({ run: () => Promise.resolve({ code: 0 }) }),
  });
}

Deno.test("StageContext.realtime: every chain of a pipeline file with a control section is real-time, others not", async () => {
  const { PipelineRunner } = await import("../core/runner.ts");
  const { parsePipelineConfig } = await import("../core/config.ts");
  const control = await fakeControl();
  const reg = new Registry([counter, peek, collect], [control]);
  const chain = [{ use: "counter", count: 1 }, { use: "peek" }, { use: "collect" }];
  for (const [withControl, want] of [[true, true], [false, undefined]] as const) {
    const file = parsePipelineConfig(
      { ...(withControl ? { control: { use: "fake" } } : {}), pipelines: { greeting: chain } },
      "/p/f.json",
    );
    peeks.length = 0;
    const p = await new PipelineRunner(file, { registry: reg, clock }).build("greeting");
    assertEquals(peeks.map((x) => x.create), [want], withControl ? "with a control section" : "without");
    await p.stop();
  }
});

Deno.test("a runner fills its compiled chains per build: call variables, expanded parameters, fresh options", async () => {
  const { PipelineRunner } = await import("../core/runner.ts");
  const { parsePipelineConfig } = await import("../core/config.ts");
  const control = await fakeControl({ "call.id": "id", "remote.user": "user", n: "a number" });
  const seen: { label: string; n: number; who: string; list: string[]; fixed: string[] }[] = [];
  const tag = definePlugin({
    name: "tag",
    kind: "transform",
    description: "records its options, then changes them",
    accepts: [{ kind: "pcm" }],
    produces: { kind: "pcm" },
    options: z.object({
      label: z.string(),
      n: z.number(),
      who: z.string(),
      list: z.array(z.string()),
      fixed: z.array(z.string()),
    }),
    create: (o) => {
      seen.push(structuredClone(o));
      o.list.push("changed by a stage");
      o.fixed.push("changed by a stage");
      o.label = "changed";
      return { process: (f, emit) => emit(f) };
    },
  });
  const file = parsePipelineConfig({
    parameters: { record: { default: "out/call-${call.id}.wav" }, level: { default: 3 } },
    control: { use: "fake" },
    pipelines: {
      rx: [
        { use: "counter", count: 1 },
        {
          use: "tag",
          label: "$${kept} ${record} at ${level}",
          n: "${n}",
          who: "${remote.user}",
          list: ["${call.id}", "fixed"],
          fixed: ["no variable here"],
        },
        { use: "collect" },
      ],
    },
  }, "/p/f.json");
  const reg = new Registry([counter, tag, collect], [control]);
  const runner = new PipelineRunner(file, { registry: reg, clock });
  for (const [id, n] of [["a1", 1], ["b2", 2]] as const) {
    // A value from the network is never expanded, even when it looks like a reference.
    const p = await runner.build("rx", { "call.id": id, "remote.user": "${record}", n }, `rx#${id}`);
    await p.stop();
  }
  assertEquals(seen, [
    // What a stage did to its options is not seen by the next build (a chain without variables is copied too).
    {
      label: "${kept} out/call-a1.wav at 3",
      n: 1,
      who: "${record}",
      list: ["a1", "fixed"],
      fixed: ["no variable here"],
    },
    {
      label: "${kept} out/call-b2.wav at 3",
      n: 2,
      who: "${record}",
      list: ["b2", "fixed"],
      fixed: ["no variable here"],
    },
  ]);
  // A variable the call does not give is refused with the chain's JSON path and what is known.
  const e = await assertRejects(() => runner.build("rx", { "call.id": "c3", n: 3 }), ConfigError);
  assertEquals(
    e.message.split(" (known")[0],
    '/p/f.json: pipelines.rx[1].who: unknown variable ${remote.user}: declare it under "parameters"',
  );
  assertMatch(e.message, /known here: call\.id, cwd, level, n, pipeline\.dir, record\)/);
  // A chain replaced in the file is compiled again.
  const chain = file.pipelines.rx;
  file.pipelines.rx = [chain[0], { ...chain[1], label: "now ${level}" }, chain[2]];
  await (await runner.build("rx", { "call.id": "d4", "remote.user": "u", n: 4 })).stop();
  assertEquals(seen.at(-1)?.label, "now 3");
});

Deno.test("end() drains a live chain: the source stops, transforms flush, the sink finishes unaborted", async () => {
  const p = await buildPipeline("rx", [{ use: "live" }, { use: "hold" }, { use: "device" }], liveOpts);
  assert(p.liveSource);
  p.start();
  await clock.advanceAsync(100);
  const ended = p.end(2000);
  await clock.advanceAsync(150);
  const r = await ended;
  assertEquals(r.reason, "stopped");
  const d = devices.at(-1)!;
  assertEquals(d.frames, 5, "the frames held by the transform reached the sink");
  assertEquals(d.played, 5, "the sink played its queue out");
  assertEquals(d.aborted, false);
});

Deno.test("end() stops the pipeline when the sink does not drain within the grace time; stop() aborts at once", async () => {
  const p = await buildPipeline(
    "rx",
    [{ use: "live" }, { use: "hold" }, { use: "device", drain_ms: 10_000 }],
    liveOpts,
  );
  p.start();
  await clock.advanceAsync(60);
  const ended = p.end(500);
  await clock.advanceAsync(600);
  await ended;
  assertEquals(devices.at(-1)!.aborted, true);
  assertEquals(devices.at(-1)!.played, 0);

  const q = await buildPipeline("rx", [{ use: "live" }, { use: "hold" }, { use: "device" }], liveOpts);
  q.start();
  await clock.advanceAsync(60);
  const stopped = q.stop();
  await clock.advanceAsync(1);
  await stopped;
  assertEquals(devices.at(-1)!.aborted, true);
  assertEquals(devices.at(-1)!.played, 0);
});

Deno.test("user plugin loaded by path relative to the pipeline file", async () => {
  const dir = fromFileUrl(new URL("../examples/", import.meta.url));
  const p = await buildPipeline("m", [{ use: "counter", count: 3 }, { use: "./plugins/gain.ts", gain_db: 6.0206 }, {
    use: "collect",
  }], { ...opts, baseDir: dir });
  await p.run();
  const frames = collected.at(-1)!.frames as PcmFrame[];
  assertEquals(frames.map((f) => f.samples[0]), [0, 2, 4]);
  const err = await assertRejects(
    () =>
      buildPipeline("m", [{ use: "counter" }, { use: "./plugins/nope.ts" }, { use: "collect" }], {
        ...opts,
        baseDir: dir,
      }),
    ConfigError,
  );
  assertMatch(err.message, /cannot load plugin module "\.\/plugins\/nope\.ts"/);
});

Deno.test("web stream adapters at the edges", async () => {
  const frames: PcmFrame[] = [0, 1, 2].map((i) => ({
    kind: "pcm",
    samples: new Int16Array([i]),
    sampleRate: 8000,
    channels: 1,
    pts: i,
  }));
  const reg = new Registry([
    definePlugin({
      name: "rs",
      kind: "source",
      description: "",
      options: z.object({}),
      create: () => readableSource(ReadableStream.from(frames), { kind: "pcm", sampleRate: 8000, channels: 1 }),
    }),
    definePlugin({
      name: "ws",
      kind: "sink",
      description: "",
      accepts: [{ kind: "pcm" }],
      options: z.object({}),
      create: () => sinkPair.sink,
    }),
  ]);
  const sinkPair = streamSink();
  const got: number[] = [];
  const reading = (async () => {
    for await (const f of sinkPair.readable) got.push((f as PcmFrame).samples[0]);
  })();
  const p = await buildPipeline("m", [{ use: "rs" }, { use: "ws" }], { registry: reg });
  assertEquals((await p.run()).reason, "eos");
  await reading;
  assertEquals(got, [0, 1, 2]);
});

Deno.test("the source's signal: end() aborts it alone ('pipeline ended'), stop() and a failure abort it with the pipeline's, the first reason stays", async () => {
  const seen: { signal: AbortSignal; stop: AbortSignal }[] = [];
  const witness = definePlugin({
    name: "witness",
    kind: "source",
    description: "keeps its signals; runs until its signal aborts",
    realtime: true,
    produces: { kind: "pcm", sampleRate: 8000, channels: 1 },
    options: z.object({}),
    create: () => ({
      run(ctx) {
        seen.push({ signal: ctx.signal, stop: ctx.stopSignal! });
        return new Promise<void>((resolve) => {
          if (ctx.signal.aborted) return resolve();
          ctx.signal.addEventListener("abort", () => resolve(), { once: true });
        });
      },
    }),
  });
  const broken = definePlugin({
    name: "broken",
    kind: "sink",
    description: "fails its first write",
    accepts: [{ kind: "pcm" }],
    options: z.object({}),
    create: () => ({
      start(ctx) {
        ctx.clock.after(10, () => ctx.fail(new Error("disk gone")));
      },
      write() {},
    }),
  });
  const opts = { registry: new Registry([witness, hold, device, broken]), clock };
  const reason = (s: AbortSignal) => s.aborted ? (s.reason as Error).message : "not aborted";

  // end(): the source's signal alone, then (the sink not drained in time) the pipeline's; the source keeps 'ended'.
  const ended = await buildPipeline("rx", [{ use: "witness" }, { use: "device", drain_ms: 10_000 }], opts);
  ended.start();
  await clock.advanceAsync(5);
  const endDone = ended.end(100);
  await clock.advanceAsync(1);
  assertEquals([reason(seen[0].signal), reason(seen[0].stop)], ["pipeline ended", "not aborted"]);
  await clock.advanceAsync(200);
  await endDone;
  assertEquals(reason(seen[0].signal), "pipeline ended");
  assertEquals(reason(seen[0].stop), "pipeline stopped: it did not drain in time");

  // stop(): both, with the same reason.
  const stopped = await buildPipeline("rx", [{ use: "witness" }, { use: "hold" }, { use: "device" }], opts);
  stopped.start();
  await clock.advanceAsync(5);
  const stopDone = stopped.stop();
  await clock.advanceAsync(1);
  await stopDone;
  assertEquals([reason(seen[1].signal), reason(seen[1].stop)], ["pipeline stopped", "pipeline stopped"]);

  // A stage's failure: both, with the failure; a stop() after it changes neither.
  const failed = await buildPipeline("rx", [{ use: "witness" }, { use: "broken" }], opts);
  const done = failed.start();
  await clock.advanceAsync(20);
  const r = await done;
  assertEquals(r.reason, "error");
  await failed.stop();
  assertMatch(reason(seen[2].signal), /disk gone/);
  assertEquals(reason(seen[2].signal), reason(seen[2].stop));
});
