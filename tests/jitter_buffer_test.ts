import assert from "node:assert/strict";
import { VirtualClock } from "../core/clock.ts";
import type { EncodedFrame, Frame, RtpFrame } from "../core/frame.ts";
import { FormatError, type TransformStage } from "../core/stage.ts";
import { createStage, testContext } from "./registry_util.ts";
import jitterBuffer, { JB_WINDOW_MS } from "../plugins/rtp/jitter_buffer.ts";
import { MULAW_DECODE } from "../plugins/g711/tables.ts";
import { defineCodec } from "../core/codec.ts";
import { Registry } from "../core/registry.ts";

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
  // The 70 ms transit spread needs a delay of at least 75 ms: grown by pre-emptive expansion (stretching received
  // audio), never by inserting whole frames.
  assert.ok(s.preemptive_expanded >= 2, `pre-emptive expansions ${s.preemptive_expanded}`);
  assert.ok(s.preemptive_ms >= 30, `stretched by ${s.preemptive_ms} ms`);
  assert.equal(s.accelerated, 0);
  assert.ok(s.delay_ms >= 75 && s.delay_ms <= 100, `delay ${s.delay_ms}`);
  assert.ok(s.target_delay_ms >= 75, `target ${s.target_delay_ms}`);
  // Only the late packet's frame was concealed; every other frame holds received audio.
  const inStream = h.got.slice(0, h.got.findLastIndex((g) => g.f.type === "normal") + 1);
  assert.deepEqual(inStream.flatMap((g, i) => (g.f.type === "normal" ? [] : [i])), [3]);
  assertGrid(h);
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
  if (Deno.env.get("JB_DEBUG")) console.log({ calm, jittery, end });
  assert.ok(end.delay_ms <= 40, `shrunk back: ${end.delay_ms}`);
  // Shrunk by accelerating received audio (and skipping what was missing), never by dropping it.
  assert.ok(end.accelerated_ms >= 40, `accelerated ${end.accelerated_ms} ms`);
  assert.equal(end.late, jittery.late, "no packet lost to the shrinking");
  assert.equal(end.trimmed, 0);
  assert.ok(end.avg_delay_ms > 40 && end.avg_delay_ms < 130, `avg ${end.avg_delay_ms}`);
  assert.ok(end.delay_p95_ms >= 100 && end.delay_max_ms <= 400, `p95 ${end.delay_p95_ms}, max ${end.delay_max_ms}`);
  assertGrid(h);
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
  if (Deno.env.get("JB_DEBUG")) console.log(before, s);
  // Loud, steady audio: after the first window the target falls, and the playout follows by accelerating (the
  // old buffer dropped whole frames here); the sender's silence is then skipped, down to the target.
  assert.ok(before.delay_ms > 40 && before.delay_ms <= 200, `before the pause ${before.delay_ms}`);
  assert.ok(s.delay_ms <= 40, `delay ${s.delay_ms}`);
  assert.ok(s.skipped_ms > 0, "silence skipped");
  assert.equal(s.late, 0);
  assert.equal(s.trimmed, 0);
  assert.equal(s.lost, 0);
  assert.ok(s.silence > 0 && s.comfort_noise > 0, "the pause is comfort noise (after max_conceal of concealment)");
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

Deno.test("jitter-buffer: a peer that starts a new stream with every packet cannot delay the playout beyond max_delay", async () => {
  const h = await harness({ initial_delay: 40, max_delay: 300 });
  // 20 s of two packets every 20 ms from two SSRCs in turn: every packet starts a new stream, after what the old one
  // still has buffered.
  for (let i = 0; i < 2000; i++) {
    h.send(i * 10, { sequence: i & 0xffff, timestamp: (i * 160) >>> 0, ssrc: 1 + (i & 1) });
  }
  assert.ok(h.stats().buffered <= 2 * (300 / 20) + 2, `${h.stats().buffered} packets buffered`);
  // Once they stop, what is buffered plays within max_delay (before: the 20 s of audio received twice as fast as it
  // plays had piled up, 10 s of it still to play).
  const before = h.got.length;
  h.until(20_000 + 2000);
  const left = h.got.slice(before).filter(({ f }) => f.type === "normal").length;
  assert.ok(left <= 300 / 20 + 2, `${left} frames of received audio played after the last packet`);
  assert.ok(h.stats().late + h.stats().trimmed > 0);
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
  assert.equal(h.stats().late, 0);
  // Now the sender restarts its sequence numbers (same SSRC), timestamps go on.
  stream(h, 10, { start: 400, seq0: 40000, ts0: 20 * 160 });
  h.until(800);
  const s = h.stats();
  assert.equal(s.resets, 1);
  // Both packets of the confirmation are kept: all 20 packets play (the 10 after the restart merged after the
  // comfort noise that filled the wait), none late.
  assert.deepEqual([s.received, s.late, s.trimmed], [20, 0, 0], `${runs(h)} ${JSON.stringify(s)}`);
  assert.ok(s.normal >= 20, `${s.normal} frames of received audio`);
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
  // Real-time playout time-scales PCM: a codec registered without a transcoder can be recorded, not played.
  const bare = defineCodec({
    name: "X8",
    payloadType: "dynamic",
    clockRate: 8000,
    silence: (n) => new Uint8Array(n),
    concealment: "none",
  });
  const ctx = testContext({ registry: new Registry([], [], [bare]) }).ctx;
  const playout = await createStage<TransformStage>(jitterBuffer, { mode: "playout" }, ctx);
  assert.throws(
    () => playout.negotiate!({ kind: "rtp", codec: "X8", clockRate: 8000 }),
    (e: Error) =>
      e instanceof FormatError && /X8 in real time: .* no "pcm" transcoder .* "mode": "record"/.test(e.message),
  );
  const record = await createStage<TransformStage>(jitterBuffer, { mode: "record" }, ctx);
  assert.deepEqual(record.negotiate!({ kind: "rtp", codec: "X8", clockRate: 8000 }), {
    kind: "encoded",
    codec: "X8",
    clockRate: 8000,
  });
});

// ---------------------------------------------------------------------------
// Packets of any duration. Payload byte of the sample at index i (from the stream's first sample) is
// i % 251, so the bytes played say which samples they are (never 0xff, µ-law silence).

/** The payload bytes of samples [start, start + n) of the test stream. */
function samplesOf(start: number, n: number): Uint8Array {
  const p = new Uint8Array(n);
  for (let i = 0; i < n; i++) p[i] = (start + i) % 251;
  return p;
}

/** One packet of the test stream: its samples [start, start + n), arriving at `at` (ms after 1000). */
interface Pkt {
  at: number;
  start: number;
  n: number;
  seq?: number;
}

/**
 * Packets covering `sizes` back to back from sample 0, sequence numbers from `seq0`, timestamps from
 * `ts0`. Each arrives when its last sample has been produced (`sent: "full"`, as most VoIP peers) or
 * when its first one has (`"start"`, as GStreamer's udpsink and ffmpeg -re do), plus `extra(i)` ms.
 */
function packets(
  sizes: number[],
  opt: { sent?: "full" | "start"; extra?: (i: number) => number; skip?: number[]; offset?: number } = {},
): Pkt[] {
  const out: Pkt[] = [];
  let start = 0;
  sizes.forEach((n, i) => {
    const media = ((opt.sent === "start" ? start : start + n) * 1000) / 8000;
    if (!opt.skip?.includes(i)) out.push({ at: (opt.offset ?? 0) + media + (opt.extra?.(i) ?? 0), start, n, seq: i });
    start += n;
  });
  return out.sort((a, b) => a.at - b.at || a.start - b.start);
}

/** Sends packets through the harness, in order of arrival. */
function sendAll(h: Awaited<ReturnType<typeof harness>>, pkts: Pkt[], seq0 = 0, ts0 = 0, ssrc = 1) {
  for (const p of pkts) {
    h.send(p.at, {
      sequence: (seq0 + (p.seq ?? 0)) & 0xffff,
      timestamp: (ts0 + p.start) >>> 0,
      payload: samplesOf(p.start, p.n),
      ssrc,
    });
  }
}

/** Every sample played (the frames' decoded PCM), concatenated. */
function pcmOf(h: Awaited<ReturnType<typeof harness>>): Int16Array {
  const frames = h.got.map((g) => g.f.decoded!);
  const out = new Int16Array(frames.reduce((n, p) => n + p.length, 0));
  let k = 0;
  for (const p of frames) {
    out.set(p, k);
    k += p.length;
  }
  return out;
}

/**
 * Asserts that the received sample ranges play in order, every sample of them sample-exact: received audio is never
 * dropped, only stretched (pre-emptive expansion puts a cross-faded period between two received samples) or set
 * apart by concealment, comfort noise and merges. Returns where each range starts in the output and how many
 * samples were found inserted inside the ranges (0: each range played unbroken).
 */
function assertPlayed(
  h: Awaited<ReturnType<typeof harness>>,
  ranges: [number, number][],
  msg = "",
): { at: number[]; inserted: number } {
  const out = pcmOf(h);
  const at: number[] = [];
  let cur = 0, inserted = 0;
  const detail = () => `${runs(h)} ${JSON.stringify(h.stats())}`;
  /** First index in [from, to) where `want[j, j + 8)` is played. */
  const find = (want: Int16Array, j: number, from: number, to: number) => {
    const k = Math.min(8, want.length - j);
    for (let i = from; i < Math.min(to, out.length - k + 1); i++) {
      let m = 0;
      while (m < k && out[i + m] === want[j + m]) m++;
      if (m === k) return i;
    }
    return -1;
  };
  /** Matches `want` from output index `i` on, allowing insertions; the end and the samples inserted, or undefined. */
  const match = (want: Int16Array, i: number) => {
    let ins = 0;
    for (let j = 0; j < want.length;) {
      if (out[i] === want[j]) {
        i++;
        j++;
        continue;
      }
      const next = find(want, j, i + 1, i + 16000);
      if (next < 0) return undefined;
      ins += next - i;
      i = next;
    }
    return { end: i, ins };
  };
  for (const [a, b] of ranges) {
    const want = Int16Array.from(samplesOf(a, b - a), (c) => MULAW_DECODE[c]);
    // Concealment repeats earlier audio (whose bytes recur every 251 samples): the range starts at the place from
    // which all of it follows with the fewest samples in between.
    let found: { start: number; end: number; ins: number } | undefined;
    let tries = 0;
    for (let i = find(want, 0, cur, out.length); i >= 0 && tries < 64; i = find(want, 0, i + 1, out.length)) {
      tries++;
      const m = match(want, i);
      if (m && (!found || m.ins < found.ins)) found = { start: i, ...m };
      if (found && found.ins === 0) break;
    }
    assert.ok(
      found,
      `${msg} samples [${a}, ${b}) are not all played, in order, after output sample ${cur}: ${detail()}`,
    );
    at.push(found.start);
    inserted += found.ins;
    cur = found.end;
  }
  return { at, inserted };
}

/** Frame types in order, run-length encoded: e.g. "n54 c6 n128 c5 s3". */
function runs(h: Awaited<ReturnType<typeof harness>>): string {
  const out: string[] = [];
  let last = "", n = 0;
  for (const { f } of h.got) {
    const t = f.type![0];
    if (t === last) n++;
    else {
      if (n) out.push(`${last}${n}`);
      last = t;
      n = 1;
    }
  }
  if (n) out.push(`${last}${n}`);
  return out.join(" ");
}

/** One frame of 160 samples per 20 ms tick, with continuous pts (the frames are cut from one PCM stream). */
function assertGrid(h: Awaited<ReturnType<typeof harness>>): void {
  let pts = 0;
  for (let i = 0; i < h.got.length; i++) {
    const f = h.got[i].f;
    assert.equal(f.payload.length, 160, `frame ${i} (${f.type}) length`);
    assert.equal(f.decoded!.length, 160, `frame ${i} (${f.type}) samples`);
    if (i > 0) assert.equal(h.got[i].t - h.got[i - 1].t, 20, `tick ${i}`);
    assert.equal(f.pts, pts);
    pts += 160;
  }
}

Deno.test("jitter-buffer: 183 ms packets arriving every 183 ms play sample-exact, no concealment", async () => {
  const h = await harness();
  // 20 packets of 1464 samples (183 ms) = 183 frames, sent when full, with 0..14 ms of network jitter.
  sendAll(h, packets(Array(20).fill(1464), { extra: (i) => (i * 7) % 15 }));
  h.until(4500);
  assertPlayed(h, [[0, 29280]]);
  assertGrid(h);
  if (Deno.env.get("JB_DEBUG")) console.log(runs(h), h.stats());
  assert.equal(runs(h).split(" ")[0], "n183", "from the first tick on, every frame is real audio");
  assert.equal(h.got[0].t - 1000, 183 + 60, "first sample played initial_delay after its packet arrived");
  const s = h.stats();
  assert.deepEqual(
    [s.received, s.lost, s.late, s.trimmed, s.accelerated, s.preemptive_expanded, s.concealed - 5],
    [20, 0, 0, 0, 0, 0, 0],
  );
  assert.equal(s.first_play_ms, 60);
  assert.equal(s.max_packet_ms, 183);
  assert.equal(s.ptime, 20, "a 183 ms packet does not change ptime");
  // Steady long packets need no more delay than short ones: the spread is the jitter (14 ms) plus the part of
  // a frame by which a packet's first sample is off the frame grid (1464 = 9 × 160 + 24).
  assert.ok(s.spread_ms + 5 >= 20 && s.spread_ms + 5 <= 40, `spread ${s.spread_ms}`);
  assert.equal(s.target_delay_ms, 60, "the target keeps the initial delay for a window");
  assert.ok(s.delay_ms >= s.target_delay_ms, `delay ${s.delay_ms}`);
  await h.st.close!();
});

Deno.test("jitter-buffer: ffmpeg's default packetization (1460 + 588 samples every 256 ms) plays sample-exact", async () => {
  const h = await harness();
  // ffmpeg -re sends each 2048-sample demuxer packet as 1460 + 588 at once, when its first sample is due.
  const sizes = Array.from({ length: 20 }, (_, i) => (i % 2 ? 588 : 1460));
  sendAll(h, packets(sizes).map((p) => ({ ...p, at: Math.floor(p.seq! / 2) * 256 + (p.seq! % 6) })));
  h.until(3500);
  assertPlayed(h, [[0, 20480]]);
  assertGrid(h);
  assert.equal(runs(h).split(" ")[0], "n128");
  const s = h.stats();
  assert.deepEqual([s.received, s.late, s.trimmed, s.accelerated + s.preemptive_expanded, s.lost], [20, 0, 0, 0, 0]);
  // The burst is a 182.5 ms transit spread: the target covers it (the stream started at 60 ms after a packet
  // 181.5 ms slower than the fastest, so at 241.5 ms, which the target keeps for a window), and the
  // 588-sample packet waits that long.
  assert.ok(s.spread_ms >= 182.5 && s.spread_ms <= 205, `spread ${s.spread_ms}`);
  assert.equal(s.target_delay_ms, 241.5);
  assert.ok(s.delay_ms >= s.spread_ms + 5, `delay ${s.delay_ms}`);
  assert.equal(s.first_play_ms, 60);
  await h.st.close!();
});

Deno.test("jitter-buffer: GStreamer's default packetization (1388 + 660 samples, sent at their start)", async () => {
  const h = await harness();
  const sizes = Array.from({ length: 20 }, (_, i) => (i % 2 ? 660 : 1388));
  sendAll(h, packets(sizes, { sent: "start", extra: (i) => (i * 3) % 5 }));
  h.until(3500);
  assertPlayed(h, [[0, 20480]]);
  assertGrid(h);
  const s = h.stats();
  assert.deepEqual([s.received, s.late, s.trimmed, s.accelerated + s.preemptive_expanded, s.lost, s.concealed], [
    20,
    0,
    0,
    0,
    0,
    5,
  ]);
  assert.equal(s.max_packet_ms, 173.5);
  await h.st.close!();
});

Deno.test("jitter-buffer: 30 ms packets into a 20 ms buffer: frames joined across packets; a loss is concealed", async () => {
  const h = await harness({ ptime: 20 });
  sendAll(h, packets(Array(40).fill(240), { skip: [5] }));
  h.until(1500);
  // Packet 5 holds samples [1200, 1440): frame 7 [1120, 1280) plays its first 80 samples, then concealment
  // fills the 240 missing samples (to within half a pitch period: the merge into packet 6 picks the best match),
  // and play resumes at 1440, where packet 6 starts, unaltered.
  assertGrid(h);
  const { at, inserted } = assertPlayed(h, [[0, 1200], [1440, 9600]]);
  assert.ok(inserted <= 120, `stretched by ${inserted} samples after the merge`);
  assert.equal(at[0], 0);
  const fill = at[1] - 1200;
  assert.ok(Math.abs(fill - 240) <= 60, `the loss is concealed by ${fill} samples`);
  const s = h.stats();
  assert.deepEqual([s.received, s.lost, s.late, s.ptime], [39, 1, 0, 20]);
  await h.st.close!();
});

Deno.test("jitter-buffer: mixed packet sizes in one stream, 1 sample to 183 ms, sent when full", async () => {
  const h = await harness({ initial_delay: 200 });
  const cycle = [160, 240, 80, 1464, 8, 400, 1388, 660, 1, 159];
  const sizes = [...cycle, ...cycle, ...cycle];
  const total = sizes.reduce((a, b) => a + b, 0);
  sendAll(h, packets(sizes, { extra: (i) => (i * 5) % 7 }));
  h.until(3000);
  assertPlayed(h, [[0, total]]);
  assertGrid(h);
  assert.equal(runs(h).split(" ")[0], `n${Math.ceil(total / 160)}`, "no concealment: 200 ms covers 183 ms packets");
  const s = h.stats();
  assert.deepEqual([s.received, s.lost, s.late, s.trimmed, s.accelerated + s.preemptive_expanded, s.duplicate], [
    30,
    0,
    0,
    0,
    0,
    0,
  ]);
  await h.st.close!();
});

Deno.test("jitter-buffer: a switch to 183 ms packets sent when full: grows at once, no audio lost", async () => {
  // 1 s of 20 ms packets, then 183 ms packets sent when full: the first one arrives 163 ms after the
  // 20 ms packets' timing said its first sample was due.
  const sizes = [...Array(50).fill(160), ...Array(10).fill(1464)];
  const total = 8000 + 14640;

  // max_conceal covers the wait: the playout conceals while waiting for the late packet (its place is kept), then
  // merges into it: the concealment became the growth of the delay, and no received sample is lost.
  for (const max_conceal of [200, 100]) {
    const h = await harness({ max_conceal });
    sendAll(h, packets(sizes));
    h.until(3500);
    const { at } = assertPlayed(h, [[0, 8000], [8000, total]]);
    assertGrid(h);
    const waited = at[1] - 8000;
    assert.ok(
      waited >= 115 * 8 && waited <= 145 * 8,
      `waited ${waited} samples (the packet came 123 ms after its due time)`,
    );
    assert.equal(runs(h).split(" ")[0], "n50");
    const s = h.stats();
    if (Deno.env.get("JB_DEBUG")) console.log(runs(h), s);
    assert.deepEqual([s.late, s.trimmed, s.recovered, s.lost, s.resets, s.accelerated], [0, 0, 1, 0, 0, 0]);
    // The wait: concealment (then comfort noise, past max_conceal) for as long as the packet was late.
    const inStream = h.got.slice(0, h.got.findLastIndex((g) => g.f.type === "normal"));
    const filler = inStream.filter((g) => g.f.type !== "normal").length;
    assert.ok(filler >= 5 && filler <= 7, runs(h));
    assert.ok(s.target_delay_ms >= 163 && s.delay_ms >= s.target_delay_ms - 10, `${s.delay_ms} / ${s.target_delay_ms}`);
    await h.st.close!();
  }
});

Deno.test("jitter-buffer: loss of one long packet: concealment covers its duration", async () => {
  // 180 ms packets (9 frames), the fourth lost: 1440 samples concealed (to within half a pitch period, where the
  // merge into the next packet matches best), concealment all along with max_conceal 200 ms.
  for (const max_conceal of [200, 100]) {
    const h = await harness({ max_conceal });
    sendAll(h, packets(Array(10).fill(1440), { skip: [3] }));
    h.until(2500);
    assertGrid(h);
    const { at, inserted } = assertPlayed(h, [[0, 4320], [5760, 14400]]);
    const fill = at[1] - 4320;
    assert.ok(Math.abs(fill - 1440) <= 60 && inserted <= 120, `concealed by ${fill} samples, stretched ${inserted}`);
    const r = runs(h).split(" ");
    assert.equal(r[0], "n27");
    // The frames wholly inside the gap: concealment, then comfort noise past max_conceal.
    const gap = r.slice(1, r.findIndex((x, i) => i > 0 && x.startsWith("n")));
    const count = (t: string) => gap.filter((x) => x.startsWith(t)).map((x) => +x.slice(1)).reduce((a, b) => a + b, 0);
    assert.ok(count("c") + count("s") >= 8 && count("c") + count("s") <= 9, r.join(" "));
    assert.ok(count("c") <= max_conceal / 20 && (max_conceal === 200 || count("s") >= 3), r.join(" "));
    const s = h.stats();
    assert.deepEqual([s.received, s.lost, s.late, s.accelerated], [9, 1, 0, 0]);
    await h.st.close!();
  }

  // Off the frame grid (1460-sample packets, the third lost: samples [2920, 4380)): the 40 samples of the
  // frame holding its start that precede it play, the loss is concealed by about its duration, and play resumes at
  // 4380, the delay as it was (to within the merge's alignment).
  const h3 = await harness({ initial_delay: 20, max_conceal: 200 });
  sendAll(h3, packets(Array(8).fill(1460), { skip: [2] }));
  h3.until(2500);
  assertGrid(h3);
  const { at } = assertPlayed(h3, [[0, 2920], [4380, 11680]], "every received sample plays:");
  if (Deno.env.get("JB_DEBUG")) console.log(runs(h3), h3.stats());
  assert.ok(Math.abs(at[1] - 2920 - 1460) <= 60, `concealed by ${at[1] - 2920}`);
  const s = h3.stats();
  assert.deepEqual([s.lost, s.late, s.trimmed], [1, 0, 0]);
  assert.ok(Math.abs(s.delay_ms - 20) <= 8, `delay ${s.delay_ms}`);
  await h3.st.close!();
});

Deno.test("jitter-buffer: reordered long packets play in order; a partly late one loses only its late head", async () => {
  // Packet 3 (samples [4392, 5856)) arrives 190 ms late, after packet 4; with 250 ms of delay it is still
  // in time for frame 27, at 183 + 250 + 540 = 973.
  const reordered = packets(Array(10).fill(1464), { extra: (i) => (i === 3 ? 190 : 0) });
  assert.deepEqual(reordered.map((p) => p.seq), [0, 1, 2, 4, 3, 5, 6, 7, 8, 9]);
  const h = await harness({ initial_delay: 250 });
  sendAll(h, reordered);
  h.until(2500);
  assertPlayed(h, [[0, 14640]]);
  assertGrid(h);
  assert.equal(runs(h).split(" ")[0], "n92");
  let s = h.stats();
  assert.deepEqual([s.late, s.trimmed, s.recovered, s.lost, s.received], [0, 0, 0, 0, 10]);

  // With the default 60 ms, it is late: packet 2's samples play, then concealment (then comfort noise) until it
  // arrives; it still plays (merged), the concealment while waiting for it becoming the growth of the delay.
  const h1 = await harness();
  sendAll(h1, reordered);
  h1.until(2500);
  assertPlayed(h1, [[0, 4392], [4392, 14640]], "nothing lost:");
  assertGrid(h1);
  assert.equal(runs(h1).split(" ")[0], "n28");
  s = h1.stats();
  if (Deno.env.get("JB_DEBUG")) console.log(runs(h1), s);
  assert.deepEqual([s.late, s.trimmed, s.recovered, s.lost, s.accelerated], [0, 0, 1, 0, 0]);
  assert.ok(s.delay_ms >= s.target_delay_ms - 10 && s.target_delay_ms >= 190, `${s.delay_ms} / ${s.target_delay_ms}`);
  await h1.st.close!();

  // Packet 3 arrives 100 ms after its first sample was due, and max_delay leaves no room to wait for it:
  // the frames due before it arrived are concealed, and the rest of it plays.
  const h2 = await harness({ max_delay: 60, initial_delay: 60 });
  sendAll(h2, packets(Array(10).fill(1464), { extra: (i) => (i === 3 ? 100 : 0) }));
  h2.until(2500);
  // Packet 3 = samples [4392, 5856) is due at 243 + 549 = 792; it arrives at 832: [4392, ~4712) would play
  // beyond max_delay (60 ms) and is dropped as late; concealment fills the wait, and the rest of packet 3 plays.
  assertGrid(h2);
  assertPlayed(h2, [[0, 4392]]);
  s = h2.stats();
  assert.deepEqual([s.late, s.trimmed, s.lost], [0, 1, 0]);
  assert.ok(s.delay_max_ms <= 60, `max delay ${s.delay_max_ms}`);
  await h.st.close!();
  await h2.st.close!();
});

Deno.test("jitter-buffer: sequence and timestamp wrap-around with long packets", async () => {
  const h = await harness({ initial_delay: 250 });
  // 1460-sample packets; the timestamp wraps inside packet 1, the sequence number after packet 2; 3 and 4
  // arrive swapped.
  const pkts = packets(Array(12).fill(1460), { extra: (i) => (i === 3 ? 200 : 0) });
  assert.deepEqual(pkts.slice(2, 5).map((p) => p.seq), [2, 4, 3]);
  sendAll(h, pkts, 65534, 4294967296 - 2000);
  h.until(3000);
  assertPlayed(h, [[0, 17520]]);
  assertGrid(h);
  assert.equal(runs(h).split(" ")[0], "n110");
  const s = h.stats();
  assert.deepEqual([s.lost, s.late, s.resets, s.duplicate, s.received], [0, 0, 0, 0, 12]);
  await h.st.close!();
});

Deno.test("jitter-buffer: packets up to 1 s are played, longer or empty ones dropped and counted", async () => {
  const h = await harness();
  const pkts = packets([8000, 8000, 9600, 1600]);
  sendAll(h, pkts);
  h.send(pkts.at(-1)!.at, { sequence: 4, timestamp: 27200, payload: new Uint8Array(0) });
  h.until(6000);
  // Packet 2 (1.2 s) is dropped: its samples [16000, 25600) are missing, 100 ms concealed then comfort noise
  // (shortened: the delay was far above its target), then packet 3.
  assertPlayed(h, [[0, 16000]]);
  assert.equal(runs(h).split(" ").slice(0, 3).join(" "), "n100 c5 s37");
  const s = h.stats();
  assert.deepEqual([s.invalid, s.received, s.lost, s.max_packet_ms, s.late, s.trimmed], [2, 3, 1, 1000, 0, 0]);
  await h.st.close!();
});

Deno.test("jitter-buffer: a packet overlapping buffered samples adds only the new ones; a covered one is a duplicate", async () => {
  const h = await harness();
  sendAll(h, packets([1000, 1000, 1000]));
  // A re-sent copy of packet 1 under another sequence number, then one overlapping packets 2 and "3".
  h.send(300, { sequence: 10, timestamp: 1000, payload: samplesOf(1000, 1000) });
  h.send(380, { sequence: 3, timestamp: 2500, payload: samplesOf(2500, 1700) });
  h.until(1000);
  assertPlayed(h, [[0, 4200]]);
  assertGrid(h);
  const s = h.stats();
  assert.deepEqual([s.duplicate, s.received, s.late], [1, 5, 0]);
  await h.st.close!();
});

Deno.test("jitter-buffer: ptime learned mid-stream (20 → 30 ms) without losing buffered audio", async () => {
  const h = await harness();
  sendAll(h, packets([...Array(10).fill(160), ...Array(10).fill(240)]));
  h.until(1000);
  assert.equal(h.stats().ptime, 30);
  assert.equal(h.stats().resets, 0);
  assertPlayed(h, [[0, 1600 + 2400]]);
  const normal = h.got.filter((g) => g.f.type === "normal");
  const lengths = normal.map((g) => g.f.payload.length);
  const switched = lengths.indexOf(240);
  assert.ok(switched > 10 && lengths.slice(0, switched).every((n) => n === 160), `${lengths}`);
  assert.ok(lengths.slice(switched).every((n) => n === 240));
  assert.equal(normal.length, lengths.length);
  assert.equal(h.got.findIndex((g) => g.f.type !== "normal"), normal.length, "no gap");
  // The grid goes on: 20 ms steps, then 30 ms ones, from the same instant.
  const steps = h.got.slice(1, normal.length).map((g, i) => g.t - h.got[i].t);
  assert.deepEqual([...new Set(steps)], [20, 30]);
  await h.st.close!();
});

Deno.test("jitter-buffer: flush drains long packets in frames, the last one as long as what is left", async () => {
  const h = await harness({ initial_delay: 100 });
  sendAll(h, packets([1464, 1464]).map((p) => ({ ...p, at: 0 })));
  h.until(110); // played the first frame at t = 100
  const drained: EncodedFrame[] = [];
  h.st.flush!((f) => (drained.push(f as EncodedFrame), true));
  assert.deepEqual(drained.map((f) => f.payload.length), [...Array(17).fill(160), 2928 - 18 * 160]);
  assert.ok(drained.every((f) => f.type === "normal"));
  assert.deepEqual([...drained[0].payload.slice(0, 2)], [160 % 251, 161 % 251]);
  await h.st.close!();
});
