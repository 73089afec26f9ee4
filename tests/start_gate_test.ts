/**
 * StartGate (core/start_gate.ts): the paced sinks of chains fed from files start their timelines together, once
 * every one has filled its queue. On the virtual clock: what opens the gate, when, and the send times it gives.
 */
import assert from "node:assert/strict";
import { z } from "zod";
import { VirtualClock } from "../core/clock.ts";
import type { RtpFrame } from "../core/frame.ts";
import { buildPipeline } from "../core/pipeline.ts";
import { Registry } from "../core/registry.ts";
import { definePlugin, type SourceStage } from "../core/stage.ts";
import { StartGate } from "../core/start_gate.ts";
import { testContext } from "../core/testing.ts";
import type { DatagramSocket, SendListener } from "../core/net/datagram.ts";
import { MemoryNetwork } from "../core/net/memory.ts";
import { Session } from "../core/session.ts";
import { parsePipelineConfig } from "../core/config.ts";
import { PipelineRunner } from "../core/runner.ts";
import { udpSinkOptions, UdpSinkStage } from "../plugins/udp/udp_sink.ts";
import { plugins as udpPlugins } from "../plugins/udp/mod.ts";

function rtp(sequence: number, timestamp: number, ssrc = 0x1234): RtpFrame {
  return {
    kind: "rtp",
    payloadType: 0,
    sequence,
    timestamp,
    ssrc,
    marker: false,
    payload: new Uint8Array(160),
    clockRate: 8000,
  };
}

/** A paced udp-sink on a fake socket that records the virtual time of every send, started with `gate`. */
function gatedSink(clock: VirtualClock, gate: StartGate | undefined, options: Record<string, unknown> = {}) {
  const sent: { t: number; seq: number }[] = [];
  const sock = {
    hostname: "127.0.0.1",
    port: 40000,
    post(data: Uint8Array, _to: unknown, listener?: SendListener) {
      sent.push({ t: clock.now(), seq: (data[2] << 8) | data[3] });
      queueMicrotask(() => listener?.sent(data.length));
    },
  } as unknown as DatagramSocket;
  const opts = udpSinkOptions.parse({ to: "127.0.0.1:4000", ...options });
  const sink = new UdpSinkStage(opts, sock, { hostname: "127.0.0.1", port: 4000 });
  const t = testContext({ clock });
  sink.start(gate ? { ...t.ctx, startGate: gate } : t.ctx);
  return { sink, sent, abort: t.abort };
}

Deno.test("StartGate: opens when sealed and every member is ready or has left, at now + margin", async () => {
  const clock = new VirtualClock(1000);
  const gate = new StartGate(clock, { marginMs: 20, timeoutMs: 5000 });
  const a = gate.join(), b = gate.join(), c = gate.join();
  let at: number | undefined;
  gate.opened.then((t) => at = t);
  a.ready();
  b.leave();
  await clock.advanceAsync(10);
  c.ready();
  c.ready(); // twice counts once
  await clock.advanceAsync(0);
  assert.equal(at, undefined, "not sealed: more members may come");
  await clock.advanceAsync(30);
  gate.seal();
  await clock.advanceAsync(0);
  assert.equal(at, 1060, "sealed at 1040 with every member done: opens at once, start time 20 ms later");
  assert.equal(gate.openAt, 1060);
  assert.equal(gate.members, 3);
  const late = gate.join(); // an open gate: nothing to wait for
  late.ready();
  assert.equal(gate.members, 3);
});

Deno.test("StartGate: sealed with no member, it opens at once; a member that never says anything holds it only until the timeout", async () => {
  const clock = new VirtualClock(0);
  const empty = new StartGate(clock, { marginMs: 0 });
  empty.seal();
  assert.equal(await empty.opened, 0);

  const gate = new StartGate(clock, { timeoutMs: 500, marginMs: 5 });
  gate.join(); // never ready
  gate.join().ready();
  gate.seal();
  let at: number | undefined;
  gate.opened.then((t) => at = t);
  await clock.advanceAsync(499);
  assert.equal(at, undefined);
  await clock.advanceAsync(1);
  assert.equal(at, 505, "the timeout runs from the first join");
  assert.throws(() => new StartGate(clock, { timeoutMs: -1 }), /timeoutMs and marginMs must be numbers ≥ 0/);
});

Deno.test("udp-sink with a start gate: nothing leaves before the gate opens; then every sink's timeline starts there", async () => {
  const clock = new VirtualClock(1000);
  const gate = new StartGate(clock, { marginMs: 20 });
  const a = gatedSink(clock, gate);
  const b = gatedSink(clock, gate, { offset_ms: 5 });
  gate.seal();
  // A's chain fills its queue at once: 100 ms (queue_ms) of packets, then it is told to wait.
  const accepted: boolean[] = [];
  for (let i = 0; i < 8; i++) accepted.push(a.sink.write(rtp(i, 5000 + i * 160)));
  assert.deepEqual(accepted, [true, true, true, true, true, false, false, false]);
  let drained = false;
  a.sink.drained().then(() => drained = true);
  // B's chain is slower to start (its file opens later, say): its first packets come 50 ms later.
  await clock.advanceAsync(50);
  assert.equal(a.sent.length, 0, "the gate is shut: A's first packet waits for B");
  assert.equal(drained, false);
  const acceptedB: boolean[] = [];
  for (let i = 0; i < 6; i++) acceptedB.push(b.sink.write(rtp(i, 9000 + i * 160, 0x99)));
  // The second member fills less before the start (69 ms: 100 × (1 − 0.618 / 2)), so that the two do not ask for
  // more in step afterwards.
  assert.deepEqual(acceptedB, [true, true, true, true, false, false]);
  // B's queue is full at t = 1050: the gate opens with a start time of 1070.
  await clock.advanceAsync(0);
  assert.equal(gate.openAt, 1070);
  await clock.advanceAsync(300);
  assert.deepEqual(a.sent.map((s) => [s.t, s.seq]), [0, 1, 2, 3, 4, 5, 6, 7].map((i) => [1070 + i * 20, i]));
  assert.deepEqual(b.sent.map((s) => [s.t, s.seq]), [0, 1, 2, 3, 4, 5].map((i) => [1075 + i * 20, i]));
  assert.equal(drained, true);
  assert.equal(a.sink.stats().late_sends, 0);
  assert.equal(b.sink.stats().late_sends, 0);
  // Packets written after the start follow the same timeline (t = 1350 now).
  a.sink.write(rtp(20, 5000 + 20 * 160));
  await clock.advanceAsync(200);
  assert.deepEqual(a.sent.at(-1), { t: 1070 + 20 * 20, seq: 20 });
});

Deno.test("udp-sink with a start gate: a stream that ends before its queue is full starts with the others; a stopped sink leaves", async () => {
  const clock = new VirtualClock(0);
  const gate = new StartGate(clock, { marginMs: 10, timeoutMs: 10_000 });
  const short = gatedSink(clock, gate);
  const stopped = gatedSink(clock, gate);
  const full = gatedSink(clock, gate);
  gate.seal();
  short.sink.write(rtp(0, 0));
  short.sink.write(rtp(1, 160));
  let ended = false;
  short.sink.end().then(() => ended = true); // its stream is over: it is ready with what it has
  stopped.sink.write(rtp(0, 0));
  await clock.advanceAsync(30);
  stopped.abort.abort(); // its chain stops before the start: the gate no longer waits for it
  await clock.advanceAsync(0);
  assert.equal(gate.openAt, undefined, "the third sink has not filled its queue yet");
  for (let i = 0; i < 6; i++) full.sink.write(rtp(i, i * 160)); // the sixth makes 100 ms (queue_ms) of queue
  await clock.advanceAsync(0);
  assert.equal(gate.openAt, 40);
  assert.equal(ended, false);
  await clock.advanceAsync(200);
  assert.deepEqual(short.sent.map((s) => s.t), [40, 60]);
  assert.equal(ended, true);
  assert.deepEqual(full.sent.map((s) => s.t), [40, 60, 80, 100, 120, 140]);
  assert.equal(stopped.sent.length, 0);
  assert.equal(stopped.sink.stats().discarded, 1);
});

/** A source of `count` RTP packets that first waits `delay_ms` on the clock (a slow file open), a file-like source. */
function slowSource(live: boolean) {
  return definePlugin({
    name: live ? "slow-live" : "slow-file",
    kind: "source",
    description: "test source",
    produces: { kind: "rtp", codec: "PCMU", clockRate: 8000 },
    ...(live ? { realtime: true } : {}),
    options: z.object({ delay_ms: z.number(), ssrc: z.number(), count: z.number().default(10) }),
    create: (o): SourceStage => ({
      async run(ctx) {
        await ctx.clock.sleep(o.delay_ms);
        for (let i = 0; i < o.count && !ctx.signal.aborted; i++) {
          if (!ctx.emit(rtp(i, i * 160, o.ssrc))) await ctx.ready();
        }
      },
    }),
  });
}

Deno.test("pipelines started with one gate: the first packets of every file-fed chain leave at the same time; a live-fed chain does not wait", async () => {
  const clock = new VirtualClock(0);
  const net = new MemoryNetwork({ clock, latencyMs: 0 });
  const rx = net.bind("127.0.0.1", 5000);
  const got: { t: number; ssrc: number }[] = [];
  rx.listen((data) => {
    got.push({ t: clock.now(), ssrc: (data[8] << 24 | data[9] << 16 | data[10] << 8 | data[11]) >>> 0 });
  });
  const registry = new Registry([slowSource(false), slowSource(true), ...udpPlugins]);
  const chain = (use: string, delay: number, ssrc: number) =>
    buildPipeline(`s${ssrc}`, [
      { use, delay_ms: delay, ssrc },
      { use: "udp-sink", to: "127.0.0.1:5000", bind: "127.0.0.1" },
    ], { registry, session: new Session({ id: `s${ssrc}`, clock, net }) });
  const fast = await chain("slow-file", 0, 1);
  const slow = await chain("slow-file", 70, 2);
  const live = await chain("slow-live", 30, 3);
  const gate = new StartGate(clock, { marginMs: 20 });
  const done = [fast, slow, live].map((p) => p.run({ gate }));
  gate.seal();
  await clock.advanceAsync(500);
  await Promise.all(done);
  const first = (ssrc: number) => got.find((g) => g.ssrc === ssrc)?.t;
  assert.equal(first(1), 90, "the fast chain waits for the slow one: the gate opened at 70, start time 90");
  assert.equal(first(2), 90);
  assert.equal(first(3), 30, "the live-fed chain sends its packets as they come");
  assert.equal(got.filter((g) => g.ssrc === 1).length, 10);
  assert.deepEqual(got.filter((g) => g.ssrc === 2).map((g) => g.t), Array.from({ length: 10 }, (_, i) => 90 + i * 20));
  for (const p of [fast, slow, live]) await p.session.close();
  await rx.close();
});

Deno.test("a pipeline file's chains fed from files start together when the runner runs it", async () => {
  const clock = new VirtualClock(0);
  const net = new MemoryNetwork({ clock, latencyMs: 0 });
  const rx = net.bind("127.0.0.1", 5000);
  const first = new Map<number, number>();
  rx.listen((data) => {
    const ssrc = (data[8] << 24 | data[9] << 16 | data[10] << 8 | data[11]) >>> 0;
    if (!first.has(ssrc)) first.set(ssrc, clock.now());
  });
  const sink = { use: "udp-sink", to: "127.0.0.1:5000", bind: "127.0.0.1" };
  const file = parsePipelineConfig({
    pipelines: {
      a: [{ use: "slow-file", delay_ms: 0, ssrc: 1 }, sink],
      b: [{ use: "slow-file", delay_ms: 45, ssrc: 2 }, sink],
    },
  }, "/tmp/two_chains.json");
  const runner = new PipelineRunner(file, {
    registry: new Registry([slowSource(false), ...udpPlugins]),
    clock,
    net,
  });
  const done = runner.run();
  await clock.advanceAsync(1000);
  assert.equal((await done).code, 0);
  assert.deepEqual([...first.entries()].sort(), [[1, 65], [2, 65]], "both start 20 ms after the slower one is ready");
  await rx.close();
});
