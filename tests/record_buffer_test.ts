/**
 * The record-mode buffer: a recording follows the sender's timeline and depends
 * only on which packets arrived and in which order, never on time.
 */
import { assert, assertEquals } from "./assert.ts";
import type { EncodedFrame, RtpFrame } from "../core/frame.ts";
import { seededRandom } from "../core/random.ts";
import { RecordBuffer } from "../plugins/rtp/record_buffer.ts";

const SSRC = 0x1234;

/** Packet i of a 20 ms PCMU stream; payload bytes = (i + k) & 0xff so every sample says where it came from. */
function packet(i: number, o: { ssrc?: number; seq0?: number; ts0?: number; n?: number } = {}): RtpFrame {
  const n = o.n ?? 160;
  const payload = new Uint8Array(n);
  for (let k = 0; k < n; k++) payload[k] = (i * 7 + k) & 0xff;
  return {
    kind: "rtp",
    payloadType: 0,
    sequence: ((o.seq0 ?? 1000) + i) & 0xffff,
    timestamp: ((o.ts0 ?? 5000) + i * n) >>> 0,
    ssrc: o.ssrc ?? SSRC,
    marker: false,
    payload,
    codec: "PCMU",
    clockRate: 8000,
  };
}

function run(packets: RtpFrame[], opts = {}): { frames: EncodedFrame[]; rb: RecordBuffer } {
  const rb = new RecordBuffer(opts);
  const frames: EncodedFrame[] = [];
  for (const p of packets) rb.insert(p, (f) => frames.push(f));
  rb.flush((f) => frames.push(f));
  return { frames, rb };
}

/** The recording as one timeline: [pts, type, first payload byte, samples] per frame. */
const shape = (fs: EncodedFrame[]) => fs.map((f) => [f.pts, f.type, f.payload[0], f.payload.length]);

/** Concatenated normal samples with their pts checked to be continuous. */
function timeline(fs: EncodedFrame[]): Uint8Array {
  const total = fs.reduce((n, f) => n + f.payload.length, 0);
  const out = new Uint8Array(total);
  let o = 0;
  for (const f of fs) {
    assertEquals(f.pts, o, "continuous pts");
    out.set(f.type === "concealed" ? new Uint8Array(f.payload.length).fill(0xee) : f.payload, o);
    o += f.payload.length;
  }
  return out;
}

Deno.test("record buffer: an in-order stream comes out as sent, pts from 0, nothing concealed", () => {
  const { frames, rb } = run(Array.from({ length: 50 }, (_, i) => packet(i)));
  assertEquals(frames.length, 50);
  assertEquals(frames.map((f) => f.pts), Array.from({ length: 50 }, (_, i) => i * 160));
  assert(frames.every((f, i) => f.type === "normal" && f.payload[0] === ((i * 7) & 0xff)));
  const s = rb.stats();
  // The start waits for one reorder window (300 ms: 15 packets) in case earlier packets come late.
  assertEquals([s.received, s.lost, s.late, s.duplicate, s.max_held], [50, 0, 0, 0, 15]);
});

Deno.test("record buffer: any reordering within the window gives the same recording as in order", () => {
  const ref = timeline(run(Array.from({ length: 200 }, (_, i) => packet(i))).frames);
  for (const seed of [1, 2, 3, 4, 5]) {
    const rand = seededRandom(seed);
    const ps = Array.from({ length: 200 }, (_, i) => packet(i));
    // Each packet moves up to 10 places later (200 ms: within the 300 ms window).
    const keyed = ps.map((p, i) => ({ p, k: i + rand() * 10 })).sort((a, b) => a.k - b.k);
    const { frames, rb } = run(keyed.map((x) => x.p));
    assertEquals(timeline(frames), ref, `seed ${seed}`);
    assertEquals(rb.stats().lost, 0);
    assert(rb.stats().max_held > 1, "reordering was really exercised");
  }
});

Deno.test("record buffer: a lost packet is concealed for exactly its length once the window has passed", () => {
  const ps = Array.from({ length: 40 }, (_, i) => packet(i)).filter((_, i) => i !== 10);
  const emitted: EncodedFrame[] = [];
  const rb = new RecordBuffer({ reorderMs: 100 });
  for (const p of ps.slice(0, 14)) rb.insert(p, (f) => emitted.push(f)); // 3 packets after the gap: 60 ms
  assertEquals(emitted.length, 10, "waiting for packet 10 while less than 100 ms came after it");
  for (const p of ps.slice(14, 16)) rb.insert(p, (f) => emitted.push(f)); // 100 ms after the gap: lost
  assertEquals(shape(emitted.slice(10, 12)), [[1600, "concealed", 0, 160], [1760, "normal", (11 * 7) & 0xff, 160]]);
  rb.insert(packet(10), (f) => emitted.push(f)); // too late now
  for (const p of ps.slice(16)) rb.insert(p, (f) => emitted.push(f));
  rb.flush((f) => emitted.push(f));
  assertEquals(emitted.length, 40);
  timeline(emitted);
  const s = rb.stats();
  assertEquals([s.lost, s.concealed_samples, s.late, s.received], [1, 160, 1, 39]);
});

Deno.test("record buffer: losses at the end are concealed at flush; sender silence (no missing sequence) is a pts gap", () => {
  // Packets 0..9, then the sender pauses 1 s (timestamps leap, sequence goes on), then 10..19, 21 lost, 22.
  const ps: RtpFrame[] = [];
  for (let i = 0; i < 20; i++) {
    const p = packet(i);
    if (i >= 10) p.timestamp = (p.timestamp + 8000) >>> 0;
    ps.push(p);
  }
  const last = packet(21);
  last.timestamp = (last.timestamp + 8000) >>> 0;
  ps.push(last);
  const { frames, rb } = run(ps);
  assertEquals(frames[10].pts, 1600 + 8000, "the pause is a gap in pts, not samples");
  assertEquals(shape(frames.slice(-2)), [[20 * 160 + 8000, "concealed", 0, 160], [
    21 * 160 + 8000,
    "normal",
    (21 * 7) & 0xff,
    160,
  ]]);
  const s = rb.stats();
  assertEquals([s.silence_samples, s.lost, s.concealed_samples], [8000, 1, 160]);
});

Deno.test("record buffer: forged packets of other SSRCs never enter the recording, and state stays bounded", () => {
  const rand = seededRandom(9);
  const ps: RtpFrame[] = [];
  for (let i = 0; i < 100; i++) {
    ps.push(packet(i));
    for (let j = 0; j < 100; j++) {
      const junk = packet(Math.floor(rand() * 60000), {
        ssrc: Math.floor(rand() * 0xffffffff),
        n: 1 + Math.floor(rand() * 300),
      });
      ps.push(junk);
    }
  }
  const { frames, rb } = run(ps);
  assertEquals(timeline(frames), timeline(run(Array.from({ length: 100 }, (_, i) => packet(i))).frames));
  const s = rb.stats();
  assertEquals(s.foreign, 10000);
  assertEquals(s.streams, 1);
});

Deno.test("record buffer: a source change confirmed by probation continues the recording where it ended", () => {
  const a = Array.from({ length: 10 }, (_, i) => packet(i));
  const b = Array.from({ length: 10 }, (_, i) => packet(100 + i, { ssrc: 0xbeef, seq0: 7, ts0: 999_000 }));
  const { frames, rb } = run([...a, ...b]);
  // The first packet of the new source is on probation; the second confirms it, and both play.
  assertEquals(frames.length, 20);
  assertEquals(frames.map((f) => f.pts), Array.from({ length: 20 }, (_, i) => i * 160));
  assertEquals(frames[10].payload[0], (100 * 7) & 0xff);
  assertEquals([rb.stats().streams, rb.stats().foreign], [2, 0]);
});

Deno.test("record buffer: sequence and timestamp wrap around; jumps need the next packet to confirm them", () => {
  const wrap = Array.from({ length: 20 }, (_, i) => packet(i, { seq0: 65530, ts0: 4294967296 - 800 }));
  const { frames } = run(wrap);
  assertEquals(frames.map((f) => f.pts), Array.from({ length: 20 }, (_, i) => i * 160));

  // One stray packet far ahead in sequence is dropped; a sender restart (two consecutive) is followed.
  const ps = Array.from({ length: 10 }, (_, i) => packet(i));
  ps.push(packet(50_000)); // unconfirmed sequence jump
  ps.push(packet(10));
  const restarted = Array.from({ length: 5 }, (_, i) => packet(i, { seq0: 20000, ts0: 70_000 }));
  const { frames: f2, rb } = run([...ps, ...restarted]);
  assertEquals(f2.length, 16);
  assertEquals(f2.map((f) => f.pts), Array.from({ length: 16 }, (_, i) => i * 160));
  assert(rb.stats().jumps >= 2);

  // A timestamp leap far beyond the sender's silence limit, unconfirmed, is dropped.
  const leap = Array.from({ length: 5 }, (_, i) => packet(i));
  const far = packet(5);
  far.timestamp = (far.timestamp + 8000 * 3600) >>> 0;
  const { frames: f3 } = run([...leap, far, packet(6)]);
  // Its place is concealed like a loss; no hour of silence.
  assertEquals(
    shape(f3).map((x) => [x[0], x[1]]),
    [0, 160, 320, 480, 640, 800, 960].map((pts, i): unknown[] => [pts, i === 5 ? "concealed" : "normal"]),
  );
});

Deno.test("record buffer: duplicates and packets of any size (ffmpeg's 1460 + 588)", () => {
  const ps: RtpFrame[] = [];
  let ts = 0, seq = 0;
  for (let k = 0; k < 10; k++) {
    for (const n of [1460, 588]) {
      const payload = new Uint8Array(n).map((_, j) => (ts + j) & 0xff);
      ps.push({ kind: "rtp", payloadType: 0, sequence: seq++, timestamp: ts, ssrc: 1, marker: false, payload });
      ts += n;
    }
  }
  const dup = [...ps.slice(0, 5), ps[2], ps[3], ...ps.slice(5)];
  const { frames, rb } = run(dup);
  const all = timeline(frames);
  assertEquals(all.length, ts);
  assert(all.every((v, i) => v === (i & 0xff)));
  assertEquals(rb.stats().duplicate, 2);
});

Deno.test("record buffer: gaps are filled only as far as real time allows; a sender that leaps ahead on every packet cannot make the recording outrun it", () => {
  // 500 packets 20 ms apart (10 s), each claiming 2 998 packets lost before it (its timestamp consistent with that),
  // or 10 s of silence.
  for (const leap of ["loss", "silence"] as const) {
    const ps = Array.from({ length: 500 }, (_, i) => {
      const p = i < 20 ? packet(i) : packet(20 + (i - 20) * (leap === "loss" ? 2999 : 1));
      if (leap === "silence" && i >= 20) p.timestamp = (p.timestamp + (i - 19) * 79_000) >>> 0;
      p.arrival = 1000 + i * 20;
      return p;
    });
    const { frames, rb } = run(ps);
    const end = frames.at(-1)!.pts + frames.at(-1)!.payload.length;
    // Before: 8.3 hours of concealment, or 2.7 hours of silence. Now at most 10 s × 1.05 + 10 s of timeline, and the
    // audio received after the last gap was filled (the 300 ms reorder window and one packet).
    assert(end <= 8000 * (10 * 1.05 + 10 + 0.3) + 160, `${leap}: the recording ends at ${end / 8000} s`);
    assert(end > 8000 * 20, `${leap}: what real time allows is filled (${end / 8000} s)`);
    // Every packet's audio is there, in order, never cut.
    const normal = frames.filter((f) => f.type === "normal");
    assertEquals(normal.length, 500);
    assert(normal.every((f, i) => i === 0 || f.pts >= normal[i - 1].pts + 160));
    const s = rb.stats();
    assertEquals(s.received, 500);
    assert(s.cut_samples > 8000 * 3600, `${leap}: ${s.cut_samples} samples cut`);
  }
});

Deno.test("record buffer: a real stream with arrival times (a loss, 5 s of the sender's silence) is recorded as without them", () => {
  const ps: RtpFrame[] = [];
  for (let i = 0; i < 600; i++) {
    if (i === 100) continue; // lost
    const p = packet(i);
    // The sender pauses 5 s after packet 300 (timestamps leap, the sequence goes on); arrivals follow.
    const silence = i > 300 ? 40_000 : 0;
    p.timestamp = (p.timestamp + silence) >>> 0;
    p.arrival = 1000 + i * 20 + silence / 8;
    ps.push(p);
  }
  const timed = run(ps);
  const untimed = run(ps.map(({ arrival: _, ...p }) => p));
  assertEquals(shape(timed.frames), shape(untimed.frames));
  const s = timed.rb.stats();
  assertEquals([s.lost, s.concealed_samples, s.silence_samples, s.cut_samples], [1, 160, 40_000, 0]);
});
