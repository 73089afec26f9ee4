import assert from "node:assert/strict";
import type { EncodedFrame, RtpFrame } from "../core/frame.ts";
import { FormatError, type TransformStage } from "../core/stage.ts";
import { runTransform } from "../core/testing.ts";
import { createStage } from "./registry_util.ts";
import rtpPacketizer from "../plugins/rtp/rtp_packetizer.ts";
import { z } from "zod";

const enc = (pts: number, n: number, codec: "PCMU" | "PCMA" = "PCMU", fill?: number): EncodedFrame => ({
  kind: "encoded",
  codec,
  clockRate: 8000,
  payload: new Uint8Array(n).map((_, i) => fill ?? (pts + i) & 0xff),
  pts,
});

const rtp = (frames: unknown[]) => frames as RtpFrame[];

Deno.test("rtp-packetizer: 20 ms packets, fields, marker on the first only", async () => {
  const st = await createStage<TransformStage>(rtpPacketizer, {
    ssrc: 0x11223344,
    initial_sequence: 100,
    initial_timestamp: 5000,
  });
  assert.deepEqual(st.negotiate!({ kind: "encoded", codec: "PCMU", clockRate: 8000 }), {
    kind: "rtp",
    codec: "PCMU",
    clockRate: 8000,
  });
  const out = rtp(runTransform(st, [enc(0, 160), enc(160, 160), enc(320, 160)]));
  assert.equal(out.length, 3);
  assert.deepEqual(out.map((p) => p.sequence), [100, 101, 102]);
  assert.deepEqual(out.map((p) => p.timestamp), [5000, 5160, 5320]);
  assert.deepEqual(out.map((p) => p.marker), [true, false, false]);
  for (const p of out) {
    assert.equal(p.payloadType, 0);
    assert.equal(p.ssrc, 0x11223344);
    assert.equal(p.codec, "PCMU");
    assert.equal(p.clockRate, 8000);
    assert.equal(p.payload.length, 160);
  }
  assert.deepEqual(out[1].payload, enc(160, 160).payload);
  assert.equal(st.stats!().packets, 3);
  assert.equal(st.stats!().octets, 480);
});

Deno.test("rtp-packetizer: payload type 8 for PCMA by default, option overrides", async () => {
  const a = await createStage<TransformStage>(rtpPacketizer, {});
  a.negotiate!({ kind: "encoded", codec: "PCMA", clockRate: 8000 });
  assert.equal(rtp(runTransform(a, [enc(0, 160, "PCMA")]))[0].payloadType, 8);
  const b = await createStage<TransformStage>(rtpPacketizer, { payload_type: 96 });
  b.negotiate!({ kind: "encoded", codec: "PCMU", clockRate: 8000 });
  assert.equal(rtp(runTransform(b, [enc(0, 160)]))[0].payloadType, 96);
  // Codec unknown at build time: learned from the frames.
  const c = await createStage<TransformStage>(rtpPacketizer, {});
  c.negotiate!({ kind: "encoded" });
  assert.equal(rtp(runTransform(c, [enc(0, 160, "PCMA")]))[0].payloadType, 8);
});

Deno.test("rtp-packetizer: re-chunks frames of any size, flush sends the remainder", async () => {
  const st = await createStage<TransformStage>(rtpPacketizer, { ptime: 30, initial_sequence: 0, initial_timestamp: 0 });
  st.negotiate!({ kind: "encoded", codec: "PCMU", clockRate: 8000 });
  // 100 + 300 + 50 + 500 = 950 bytes → 3 × 240 + 230.
  const frames = [enc(0, 100), enc(100, 300), enc(400, 50), enc(450, 500)];
  const out = rtp(runTransform(st, frames));
  assert.deepEqual(out.map((p) => p.payload.length), [240, 240, 240, 230]);
  assert.deepEqual(out.map((p) => p.timestamp), [0, 240, 480, 720]);
  const all = new Uint8Array(950);
  let o = 0;
  for (const f of frames) {
    all.set(f.payload, o);
    o += f.payload.length;
  }
  const got = new Uint8Array(950);
  o = 0;
  for (const p of out) {
    got.set(p.payload, o);
    o += p.payload.length;
  }
  assert.deepEqual(got, all);
});

Deno.test("rtp-packetizer: a pts jump sets the marker and moves the timestamp", async () => {
  const st = await createStage<TransformStage>(rtpPacketizer, { initial_sequence: 7, initial_timestamp: 1000 });
  st.negotiate!({ kind: "encoded", codec: "PCMU", clockRate: 8000 });
  const out = rtp(runTransform(st, [enc(0, 160), enc(160, 80), enc(8000, 160), enc(8160, 160)]));
  // The half packet before the gap goes out short; the talkspurt restarts with a marker.
  assert.deepEqual(out.map((p) => [p.sequence, p.timestamp, p.marker, p.payload.length]), [
    [7, 1000, true, 160],
    [8, 1160, false, 80],
    [9, 9000, true, 160],
    [10, 9160, false, 160],
  ]);
  assert.equal(st.stats!().discontinuities, 1);
});

Deno.test("rtp-packetizer: sequence wraps at 16 bits, timestamp at 32 bits", async () => {
  const st = await createStage<TransformStage>(rtpPacketizer, {
    initial_sequence: 65534,
    initial_timestamp: 4294967295 - 200,
  });
  st.negotiate!({ kind: "encoded", codec: "PCMU", clockRate: 8000 });
  const out = rtp(runTransform(st, [enc(0, 640)]));
  assert.deepEqual(out.map((p) => p.sequence), [65534, 65535, 0, 1]);
  assert.deepEqual(out.map((p) => p.timestamp), [4294967095, 4294967255, 119, 279]);
});

Deno.test("rtp-packetizer: random initial values differ between instances", async () => {
  const seen = new Set<string>();
  for (let i = 0; i < 4; i++) {
    const st = await createStage<TransformStage>(rtpPacketizer, {});
    st.negotiate!({ kind: "encoded", codec: "PCMU", clockRate: 8000 });
    const p = rtp(runTransform(st, [enc(0, 160)]))[0];
    seen.add(`${p.ssrc}/${p.sequence}/${p.timestamp}`);
  }
  assert.equal(seen.size, 4);
});

Deno.test("rtp-packetizer: negotiation errors say what to change; options validated", async () => {
  const st = await createStage<TransformStage>(rtpPacketizer, {});
  assert.throws(() => st.negotiate!({ kind: "pcm", sampleRate: 8000, channels: 1 }), (e: Error) => {
    assert.ok(e instanceof FormatError);
    assert.match(e.message, /expects encoded.*pcm 8000 Hz mono.*g711-encoder/);
    return true;
  });
  assert.throws(() => st.negotiate!({ kind: "encoded", codec: "PCMU", clockRate: 16000 }), /resample to 8000/);
  assert.throws(() => rtpPacketizer.options.parse({ ptime: 7 }));
  assert.throws(() => rtpPacketizer.options.parse({ ptime: 70 }));
  assert.throws(() => rtpPacketizer.options.parse({ payload_type: 128 }));
  assert.throws(() => rtpPacketizer.options.parse({ bogus: 1 }));
  const schema = z.toJSONSchema(rtpPacketizer.options) as { properties: Record<string, { description?: string }> };
  for (const [k, v] of Object.entries(schema.properties)) assert.ok(v.description, `${k} described`);
});
