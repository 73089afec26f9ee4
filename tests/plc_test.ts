/**
 * Tests of packet loss concealment (plugins/g711/plc.ts) and of the decoder's use of it.
 *
 * @module
 */
import assert from "node:assert/strict";
import type { EncodedFrame, PcmFrame } from "../core/frame.ts";
import type { TransformStage } from "../core/stage.ts";
import { runTransform } from "../core/testing.ts";
import { createStage } from "./registry_util.ts";
import g711Decoder from "../plugins/g711/g711_decoder.ts";
import { PacketLossConcealer } from "../plugins/g711/plc.ts";
import { decode, encode } from "../plugins/g711/tables.ts";

const FS = 8000;
const FRAME = 160;

function tone(freq: number, n: number, amp = 8000): Int16Array {
  const x = new Int16Array(n);
  for (let i = 0; i < n; i++) x[i] = Math.round(amp * Math.sin((2 * Math.PI * freq * i) / FS));
  return x;
}

/** A voiced-speech-like signal: 8 harmonics of 130 Hz (pitch period 61.5 samples, not an integer). */
function voiced(n: number): Int16Array {
  const x = new Int16Array(n);
  for (let i = 0; i < n; i++) {
    let v = 0;
    for (let h = 1; h <= 8; h++) v += Math.sin((2 * Math.PI * 130 * h * i) / FS + h * h * 0.7) / h;
    x[i] = Math.round(3000 * v);
  }
  return x;
}

/** Plays `signal` in `frame`-sample frames (20 ms) through a concealer, losing frames [lostFrom, lostFrom + lostCount). */
function playWithLoss(signal: Int16Array, lostFrom: number, lostCount: number, frame = FRAME): Int16Array {
  const plc = new PacketLossConcealer();
  const out = new Int16Array(signal.length);
  for (let k = 0; k * frame < signal.length; k++) {
    const lost = k >= lostFrom && k < lostFrom + lostCount;
    out.set(lost ? plc.conceal(frame) : plc.receive(signal.slice(k * frame, (k + 1) * frame)), k * frame);
  }
  return out;
}

function snrDb(truth: Int16Array, test: Int16Array, from: number, to: number): number {
  let s = 0;
  let e = 0;
  for (let i = from; i < to; i++) {
    s += truth[i] ** 2;
    e += (truth[i] - test[i]) ** 2;
  }
  return 10 * Math.log10(s / e);
}

function maxJump(x: Int16Array, from = 1, to = x.length): number {
  let m = 0;
  for (let i = Math.max(1, from); i < to; i++) m = Math.max(m, Math.abs(x[i] - x[i - 1]));
  return m;
}

function rms(x: Int16Array, from: number, to: number): number {
  let s = 0;
  for (let i = from; i < to; i++) s += x[i] ** 2;
  return Math.sqrt(s / (to - from));
}

Deno.test("PLC continues a 200 Hz tone through a lost 20 ms frame with small error (zero-fill fails)", () => {
  const truth = tone(200, 20 * FRAME);
  const out = playWithLoss(truth, 10, 1);
  const from = 10 * FRAME;
  const to = 11 * FRAME;
  const snr = snrDb(truth, out, from, to);
  // Exact repetition for 10 ms, then the 20 %/10 ms fade: about 22 dB here.
  assert.ok(snr > 15, `SNR ${snr.toFixed(1)} dB`);
  // The first 10 ms repeat the period exactly.
  assert.ok(snrDb(truth, out, from, from + 80) > 40);
  // Zero-fill would give 0 dB: the threshold above tells the two apart.
  assert.ok(snrDb(truth, new Int16Array(truth.length), from, to) < 0.1);
  // Frames outside the loss are untouched or only smoothed at the resume.
  assert.deepEqual(out.subarray(0, from), truth.subarray(0, from));
});

Deno.test("PLC after 100 ms frames (longer than its history) continues from the end of the last frame", () => {
  // 130 Hz harmonics: 800 samples are not a whole number of periods, so the start of a frame is not its end
  // (here 17 dB; continuing from the start of the frame instead gives -4 dB).
  const truth = voiced(10 * 800);
  const out = playWithLoss(truth, 5, 1, 800);
  const from = 5 * 800;
  const snr = snrDb(truth, out, from, from + 80);
  assert.ok(snr > 10, `SNR over the first 10 ms of the loss ${snr.toFixed(1)} dB`);
  assert.deepEqual(out.subarray(0, from), truth.subarray(0, from));
});

Deno.test("PLC picks the pitch of a voiced signal and keeps its waveform for the first 10 ms", () => {
  const truth = voiced(20 * FRAME);
  const plc = new PacketLossConcealer();
  for (let k = 0; k < 10; k++) plc.receive(truth.slice(k * FRAME, (k + 1) * FRAME));
  const fill = plc.conceal(FRAME);
  assert.ok(Math.abs(plc.pitch - 8000 / 130) <= 1, `pitch ${plc.pitch}`);
  const ref = truth.subarray(10 * FRAME, 11 * FRAME);
  const snr = snrDb(ref, fill, 0, 80);
  assert.ok(snr > 10, `SNR over the first 10 ms ${snr.toFixed(1)} dB`);
});

Deno.test("PLC fades out on a long loss: falling level from 10 ms, silence from 60 ms", () => {
  const truth = tone(200, 30 * FRAME);
  const out = playWithLoss(truth, 10, 6); // 120 ms lost
  const start = 10 * FRAME;
  const levels = [];
  for (let t = 0; t < 12; t++) levels.push(rms(out, start + t * 80, start + (t + 1) * 80));
  assert.ok(levels[0] > 5000, `first 10 ms at full level: ${levels[0]}`);
  for (let t = 1; t < 6; t++) assert.ok(levels[t] < levels[t - 1], `level falls: ${levels.map(Math.round)}`);
  for (let i = start + 480; i < start + 6 * FRAME; i++) assert.equal(out[i], 0, `sample ${i - start} of the loss`);
});

for (
  const [name, signal] of [
    ["200 Hz tone", tone(200, 40 * FRAME)],
    ["220 Hz tone (non-integer period)", tone(220, 40 * FRAME)],
    ["voiced 130 Hz", voiced(40 * FRAME)],
  ] as const
) {
  for (const lost of [1, 2, 6]) {
    Deno.test(`PLC on ${name}, ${lost * 20} ms lost: no discontinuity at the start or when audio resumes`, () => {
      const out = playWithLoss(signal, 10, lost);
      const natural = maxJump(signal);
      const jump = maxJump(out, 10 * FRAME - 10, (10 + lost) * FRAME + 100);
      // A step larger than the signal's own steepest slope would be a click.
      assert.ok(jump <= natural * 1.1, `max step ${jump} vs natural ${natural}`);
      // After the resume overlap (at most 10 ms) the real audio comes through untouched.
      const resume = (10 + lost) * FRAME;
      assert.deepEqual(out.subarray(resume + 80, resume + 2 * FRAME), signal.subarray(resume + 80, resume + 2 * FRAME));
    });
  }
}

Deno.test("PLC at the very start of a stream (no history) makes silence, then takes real audio", () => {
  const plc = new PacketLossConcealer();
  assert.ok(plc.conceal(FRAME).every((v) => v === 0));
  assert.ok(plc.concealing);
  const real = tone(200, FRAME);
  const got = plc.receive(real.slice());
  assert.ok(!plc.concealing);
  // Faded in from silence over the overlap, exact afterwards.
  assert.ok(Math.abs(got[0]) <= Math.abs(real[0]));
  assert.deepEqual(got.subarray(80), real.subarray(80));
});

Deno.test("g711-decoder conceals lost frames with PLC: length from the payload, type carried, stats", async () => {
  const stage = await createStage<TransformStage>(g711Decoder, {});
  const truth = decode("PCMU", encode("PCMU", tone(200, 16 * FRAME)));
  const frames: EncodedFrame[] = [];
  for (let k = 0; k < 16; k++) {
    const lost = k === 10;
    const payload = lost ? new Uint8Array(FRAME) : encode("PCMU", truth.slice(k * FRAME, (k + 1) * FRAME));
    const f: EncodedFrame = { kind: "encoded", codec: "PCMU", clockRate: 8000, payload, pts: k * FRAME };
    if (lost) f.type = "concealed";
    frames.push(f);
  }
  // A concealment request for 10 ms (80 samples).
  frames.push({
    kind: "encoded",
    codec: "PCMU",
    clockRate: 8000,
    payload: new Uint8Array(80),
    pts: 16 * FRAME,
    type: "concealed",
  });
  const out = runTransform(stage, frames) as PcmFrame[];
  assert.equal(out.length, 17);
  assert.equal(out[10].type, "concealed");
  assert.equal(out[10].pts, 10 * FRAME);
  assert.equal(out[10].samples.length, FRAME);
  assert.equal(out[16].samples.length, 80);
  const pcm = new Int16Array(16 * FRAME);
  for (const f of out.slice(0, 16)) pcm.set(f.samples, f.pts);
  assert.ok(snrDb(truth, pcm, 10 * FRAME, 11 * FRAME) > 15);
  assert.deepEqual(pcm.subarray(0, 10 * FRAME), truth.subarray(0, 10 * FRAME));
  assert.ok(maxJump(pcm) <= maxJump(truth) * 1.1);
  assert.deepEqual(stage.stats!(), { frames: 17, decoded: 15, concealed: 2, concealed_samples: 240, silence: 0 });
});

Deno.test('g711-decoder with "plc": false fills lost frames with silence', async () => {
  const stage = await createStage<TransformStage>(g711Decoder, { plc: false });
  const payload = encode("PCMU", tone(200, FRAME));
  const out = runTransform(stage, [
    { kind: "encoded", codec: "PCMU", clockRate: 8000, payload, pts: 0 },
    { kind: "encoded", codec: "PCMU", clockRate: 8000, payload: new Uint8Array(FRAME), pts: FRAME, type: "concealed" },
  ]) as PcmFrame[];
  assert.ok(out[1].samples.every((v) => v === 0));
  assert.equal(out[1].samples.length, FRAME);
});
