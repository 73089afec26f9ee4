import assert from "node:assert/strict";
import { VirtualClock } from "../core/clock.ts";
import type { EncodedFrame, Frame, RtpFrame } from "../core/frame.ts";
import { FormatError, type TransformStage } from "../core/stage.ts";
import { createStage, testContext } from "../core/testing.ts";
import jitterBuffer, { JB_WINDOW_MS } from "../plugins/rtp/jitter_buffer.ts";

/**
 * A µ-law payload that says which packet it is (sequence & 0xff, one nibble in each of the first
 * two bytes): quiet (segment 0, which the buffer may drop to shrink) or loud (segment 7).
 */
function payloadOf(seq: number, size: number, loud: boolean): Uint8Array {
  const hi = loud ? 0x00 : 0x70; // µ-law stores the inverted magnitude: 0x7X is quiet, 0x0X loud
  const p = new Uint8Array(size).fill(loud ? 0x80 : 0xff);
  p[0] = hi | (seq & 0x0f);
  p[1] = hi | ((seq >> 4) & 0x0f);
  return p;
}

/** The sequence number (& 0xff) a payload made by {@linkcode payloadOf} carries. */
function seqOf(p: Uint8Array): number {
  return (p[0] & 0x0f) | ((p[1] & 0x0f) << 4);
}

/** A jitter buffer driven by a VirtualClock; `got` holds emitted frames with their emit times. */
async function harness(options: Record<string, unknown> = {}, loud = false) {
  const clock = new VirtualClock(1000);
  const base = testContext({ clock });
  const got: { t: number; f: EncodedFrame }[] = [];
  const ctx = {
    ...base.ctx,
    emit: (f: Frame) => {
      got.push({ t: clock.now(), f: f as EncodedFrame });
      return true;
    },
  };
  const st = await createStage<TransformStage>(jitterBuffer, options, ctx);
  st.negotiate!({ kind: "rtp", codec: "PCMU", clockRate: 8000 });
  await st.start!(ctx);
  /** Advances to time `at` (relative to 1000) and inserts a packet arriving then. */
  const send = (at: number, p: Partial<RtpFrame> & { sequence: number; timestamp: number }) => {
    const now = clock.now() - 1000;
    if (at > now) clock.advance(at - now);
    const size = p.payload?.length ?? 160;
    st.process({
      kind: "rtp",
      payloadType: 0,
      ssrc: 1,
      marker: false,
      payload: payloadOf(p.sequence, size, loud),
      codec: "PCMU",
      clockRate: 8000,
      arrival: clock.now(),
      ...p,
    }, () => true);
  };
  const until = (at: number) => clock.advance(at - (clock.now() - 1000));
  const stats = () => st.stats!() as Record<string, number>;
  /** Played frames as "n<seq>" for normal, "c" concealed, "s" silence. */
  const played = () => got.map(({ f }) => (f.type === "normal" ? `n${seqOf(f.payload)}` : f.type![0]));
  return { clock, st, got, send, until, stats, played };
}

/** Sends packets seq0.. every 20 ms from `start`, skipping `skip`, with per-packet extra delay. */
function stream(
  h: Awaited<ReturnType<typeof harness>>,
  n: number,
  opt: {
    start?: number;
    seq0?: number;
    ts0?: number;
    skip?: number[];
    extra?: (i: number) => number;
    ssrc?: number;
    from?: number;
  } = {},
) {
  const arrivals: [number, number][] = [];
  for (let i = opt.from ?? 0; i < n; i++) {
    if (opt.skip?.includes(i)) continue;
    arrivals.push([(opt.start ?? 0) + i * 20 + (opt.extra?.(i) ?? 0), i]);
  }
  arrivals.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  for (const [at, i] of arrivals) {
    h.send(at, {
      sequence: ((opt.seq0 ?? 0) + i) & 0xffff,
      timestamp: ((opt.ts0 ?? 0) + i * 160) >>> 0,
      ssrc: opt.ssrc ?? 1,
    });
  }
}

Deno.test("jitter-buffer: in order, on a drift-free grid from first arrival + initial delay", async () => {
  const h = await harness({ initial_delay: 40 });
  stream(h, 10);
  h.until(400);
  assert.deepEqual(h.got.slice(0, 10).map((g) => g.t - 1000), [40, 60, 80, 100, 120, 140, 160, 180, 200, 220]);
  // 10 packets, then concealment for max_conceal (100 ms = 5 frames), then silence.
  assert.deepEqual(h.played().slice(0, 17), [
    ...Array.from({ length: 10 }, (_, i) => `n${i}`),
    ..."ccccc",
    "s",
    "s",
  ]);
  for (const { f } of h.got) {
    assert.equal(f.kind, "encoded");
    assert.equal(f.codec, "PCMU");
    assert.equal(f.payload.length, 160);
  }
  assert.deepEqual(h.got.slice(0, 4).map((g) => g.f.pts), [0, 160, 320, 480], "continuous output pts");
  assert.equal(h.got.at(-1)!.f.payload[0], 0xff, "silence is µ-law silence");
  const s = h.stats();
  assert.equal(s.received, 10);
  assert.equal(s.lost, 0);
  assert.equal(s.late, 0);
  assert.equal(s.normal, 10);
  assert.equal(s.delay_ms, 40);
  await h.st.close!();
});

Deno.test("jitter-buffer: a lost packet is concealed with a frame of the right length", async () => {
  const h = await harness({ initial_delay: 40 });
  stream(h, 8, { skip: [3, 5] });
  h.until(200);
  assert.deepEqual(h.played().slice(0, 8), ["n0", "n1", "n2", "c", "n4", "c", "n6", "n7"]);
  const c = h.got[3].f;
  assert.equal(c.type, "concealed");
  assert.equal(c.payload.length, 160);
  assert.equal(h.stats().lost, 2);
  assert.equal(h.stats().received, 6);
  await h.st.close!();
});

Deno.test("jitter-buffer: reordered packets are played in order; duplicates dropped", async () => {
  const h = await harness({ initial_delay: 60 });
  // 2 arrives 30 ms late (after 3), 5 arrives 25 ms late: both still before their playout time.
  stream(h, 8, { extra: (i) => (i === 2 ? 30 : i === 5 ? 25 : 0) });
  h.send(150, { sequence: 6, timestamp: 6 * 160 }); // duplicate of 6
  h.send(151, { sequence: 7, timestamp: 7 * 160 }); // duplicate of 7
  h.until(300);
  assert.deepEqual(h.played().slice(0, 8), ["n0", "n1", "n2", "n3", "n4", "n5", "n6", "n7"]);
  const s = h.stats();
  assert.equal(s.duplicate, 2);
  assert.equal(s.late, 0);
  assert.equal(s.received, 8);
  assert.equal(s.lost, 0);
  await h.st.close!();
});

Deno.test("jitter-buffer: a packet after its playout time is late, and the delay grows at once", async () => {
  const h = await harness({ initial_delay: 40, min_delay: 20 });
  // Packet 3 is 70 ms late: due at 40 + 60 = 100, arrives at 130.
  stream(h, 40, { extra: (i) => (i === 3 ? 70 : 0) });
  h.until(900);
  const s = h.stats();
  assert.equal(s.late, 1);
  assert.equal(s.received, 40);
  assert.equal(s.lost, 0);
  assert.equal(h.played()[3], "c");
  // The 70 ms transit spread needs a delay of at least 75 ms: grown by whole frames.
  assert.ok(s.inserted >= 2, `inserted ${s.inserted}`);
  assert.ok(s.delay_ms >= 75 && s.delay_ms <= 100, `delay ${s.delay_ms}`);
  assert.ok(s.target_delay_ms >= 75, `target ${s.target_delay_ms}`);
  // Every packet after the late one is played.
  assert.equal(s.normal, 39);
  await h.st.close!();
});

Deno.test("jitter-buffer: adapts up under jitter, then down slowly once it is gone", async () => {
  const h = await harness({ initial_delay: 40, min_delay: 20, max_delay: 400 });
  // 2 s calm, 4 s with 0..100 ms of jitter (deterministic pattern), then calm.
  const extra = (i: number) => (i >= 100 && i < 300 ? ((i * 37) % 11) * 10 : 0);
  stream(h, 100, { extra });
  h.until(2000);
  const calm = h.stats();
  assert.equal(calm.late, 0);
  assert.equal(calm.delay_ms, 40);
  stream(h, 310, { extra, from: 100 });
  h.until(6200);
  const jittery = h.stats();
  assert.ok(jittery.delay_ms >= 100, `grew to cover 100 ms of jitter: ${jittery.delay_ms}`);
  assert.ok(jittery.delay_ms <= 400);
  assert.ok(jittery.late <= 3, `few late packets while growing: ${jittery.late}`);
  // The jitter peak is remembered for a window, then the delay shrinks frame by frame.
  stream(h, 690, { extra, from: 310 });
  h.until(6000 + JB_WINDOW_MS - 500);
  assert.ok(h.stats().delay_ms >= 100, "still remembering the peak");
  stream(h, 1000, { extra, from: 690 });
  h.until(20000);
  const end = h.stats();
  assert.ok(end.delay_ms <= 40, `shrunk back: ${end.delay_ms}`);
  assert.ok(end.dropped + end.skipped >= 3);
  assert.equal(end.late, jittery.late, "no packet lost to the shrinking");
  if (Deno.env.get("JB_DEBUG")) console.log({ calm, jittery, end });
  assert.ok(end.avg_delay_ms > 40 && end.avg_delay_ms < 130, `avg ${end.avg_delay_ms}`);
  // Audio order is preserved whatever the adaptation did.
  const seqs = h.got.filter((g) => g.f.type === "normal").map((g) => seqOf(g.f.payload));
  for (let i = 1; i < seqs.length; i++) {
    const step = (seqs[i] - seqs[i - 1]) & 0xff;
    assert.ok(step >= 1 && step <= 3, `in order at ${i}: ${seqs[i - 1]} → ${seqs[i]}`);
  }
  await h.st.close!();
});

Deno.test("jitter-buffer: shrinks during silence (DTX) by skipping empty slots", async () => {
  const h = await harness({ initial_delay: 200, min_delay: 20 }, true);
  // A talkspurt of 10 s, 2 s of nothing (timestamps keep running), another talkspurt.
  stream(h, 500);
  h.until(9990);
  const before = h.stats();
  stream(h, 100, { start: 12000, seq0: 500, ts0: 600 * 160 });
  h.until(14500);
  const s = h.stats();
  assert.equal(before.delay_ms, 200, "loud speech: not shrunk yet");
  assert.equal(before.dropped, 0);
  assert.ok(s.delay_ms <= 40, `delay ${s.delay_ms}`);
  assert.ok(s.skipped > 0, "silence slots skipped");
  assert.equal(s.late, 0);
  assert.equal(s.normal, 600);
  assert.equal(s.lost, 0);
  await h.st.close!();
});

Deno.test("jitter-buffer: sequence and timestamp wrap-around", async () => {
  const h = await harness({ initial_delay: 40 });
  stream(h, 10, { seq0: 65530, ts0: 4294967295 - 480, extra: (i) => (i === 6 ? 30 : 0), skip: [8] });
  h.until(300);
  assert.deepEqual(h.played().slice(0, 10), [
    "n250",
    "n251",
    "n252",
    "n253",
    "n254",
    "n255",
    "n0",
    "n1",
    "c",
    "n3",
  ]);
  const s = h.stats();
  assert.equal(s.lost, 1);
  assert.equal(s.resets, 0);
  await h.st.close!();
});

Deno.test("jitter-buffer: resets cleanly on an SSRC change", async () => {
  const h = await harness({ initial_delay: 40 });
  stream(h, 10, { ssrc: 1 });
  // A new source with unrelated sequence and timestamp, right after the old one.
  stream(h, 10, { ssrc: 2, start: 200, seq0: 30000, ts0: 123456789 });
  h.until(600);
  const p = h.played();
  // The old source's last packets still play, then the new one (30000 & 0xff = 48) in order.
  const first = p.indexOf("n48");
  assert.deepEqual(p.slice(0, 10), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9].map((n) => `n${n}`));
  assert.deepEqual(p.slice(first, first + 10), [48, 49, 50, 51, 52, 53, 54, 55, 56, 57].map((n) => `n${n}`));
  const s = h.stats();
  assert.equal(s.ssrc_changes, 1);
  assert.equal(s.resets, 1);
  assert.equal(s.normal, 20);
  assert.equal(s.discarded, 0);
  assert.equal(s.late, 0);
  assert.equal(s.lost, 0);
  await h.st.close!();
});

Deno.test("jitter-buffer: a sequence jump resets after confirmation; a stray packet is discarded", async () => {
  const h = await harness({ initial_delay: 40 });
  stream(h, 5);
  h.send(100, { sequence: 20000, timestamp: 5 * 160 }); // stray: not confirmed
  stream(h, 5, { start: 100, seq0: 5, ts0: 5 * 160 });
  h.until(400);
  assert.equal(h.stats().resets, 0);
  assert.equal(h.stats().discarded, 1);
  assert.equal(h.stats().normal, 10);
  // Now the sender restarts its sequence numbers (same SSRC), timestamps go on.
  stream(h, 10, { start: 400, seq0: 40000, ts0: 20 * 160 });
  h.until(800);
  const s = h.stats();
  assert.equal(s.resets, 1);
  assert.equal(s.normal, 20, "both packets of the confirmation are kept");
  await h.st.close!();
});

Deno.test("jitter-buffer: a timestamp jump with continuing sequence resets", async () => {
  const h = await harness({ initial_delay: 40 });
  stream(h, 10);
  stream(h, 10, { start: 200, seq0: 10, ts0: 999999 });
  h.until(600);
  const s = h.stats();
  assert.equal(s.resets, 1);
  assert.equal(s.normal, 20);
  assert.equal(s.late, 0);
  assert.equal(s.lost, 0);
  await h.st.close!();
});

Deno.test("jitter-buffer: ptime learned from the packets (30 ms)", async () => {
  const h = await harness({ initial_delay: 60 });
  for (let i = 0; i < 10; i++) {
    h.send(i * 30, { sequence: i, timestamp: i * 240, payload: payloadOf(i, 240, false) });
  }
  h.until(400);
  assert.equal(h.stats().ptime, 30);
  assert.deepEqual(h.got.slice(0, 10).map((g) => g.t - 1000), [60, 90, 120, 150, 180, 210, 240, 270, 300, 330]);
  assert.ok(h.got.every((g) => g.f.payload.length === 240));
  assert.equal(h.stats().normal, 10);
  await h.st.close!();
});

Deno.test("jitter-buffer: flush drains the buffer; close stops the timers", async () => {
  const h = await harness({ initial_delay: 100 });
  stream(h, 6, { skip: [2] });
  h.until(110); // played slot 0 at t = 100
  const drained: EncodedFrame[] = [];
  h.st.flush!((f) => (drained.push(f as EncodedFrame), true));
  assert.deepEqual(drained.map((f) => (f.type === "normal" ? seqOf(f.payload) : f.type)), [1, "concealed", 3, 4, 5]);
  const n = h.got.length;
  h.until(1000);
  assert.equal(h.got.length, n, "no tick after flush");
  await h.st.close!();
  assert.equal(h.clock.pending, 0);

  const h2 = await harness();
  stream(h2, 3);
  await h2.st.close!();
  assert.equal(h2.clock.pending, 0, "close cancels the tick timer");
});

Deno.test("jitter-buffer: negotiation and options", async () => {
  const st = await createStage<TransformStage>(jitterBuffer, {});
  assert.deepEqual(st.negotiate!({ kind: "rtp", codec: "PCMA", clockRate: 8000 }), {
    kind: "encoded",
    codec: "PCMA",
    clockRate: 8000,
  });
  assert.throws(
    () => st.negotiate!({ kind: "packet" }),
    (e: Error) => e instanceof FormatError && /rtp-depacketizer/.test(e.message),
  );
  assert.throws(() => jitterBuffer.options.parse({ min_delay: 100, max_delay: 50 }));
  assert.throws(() => jitterBuffer.options.parse({ initial_delay: 10, min_delay: 20 }));
  assert.doesNotThrow(() => jitterBuffer.options.parse({ min_delay: 100 }), "initial delay default follows min_delay");
});
