import assert from "node:assert/strict";
import type { PacketFrame, RtpFrame } from "../core/frame.ts";
import { FormatError, type TransformStage } from "../core/stage.ts";
import { runTransform } from "../core/testing.ts";
import { createStage, testContext } from "./registry_util.ts";
import rtpDepacketizer from "../plugins/rtp/rtp_depacketizer.ts";
import rtpPacketizer from "../plugins/rtp/rtp_packetizer.ts";
import { serializeRtp } from "../plugins/rtp/header.ts";
import { VirtualClock } from "../core/clock.ts";

const pkt = (f: Partial<RtpFrame>, arrival?: number): PacketFrame => ({
  kind: "packet",
  data: serializeRtp({
    kind: "rtp",
    payloadType: 0,
    sequence: 1,
    timestamp: 160,
    ssrc: 42,
    marker: false,
    payload: new Uint8Array(160),
    ...f,
  }),
  arrival,
});

Deno.test("rtp-depacketizer: parses, sets codec, clock rate and arrival", async () => {
  const { ctx } = testContext({ clock: new VirtualClock(500) });
  const st = await createStage<TransformStage>(rtpDepacketizer, { codec: "PCMA" }, ctx);
  assert.deepEqual(st.negotiate!({ kind: "packet" }), { kind: "rtp", codec: "PCMA", clockRate: 8000 });
  const out = runTransform(st, [
    pkt({ payloadType: 8, sequence: 9 }, 12.5),
    pkt({ payloadType: 8, sequence: 10 }),
  ]) as RtpFrame[];
  assert.equal(out.length, 2);
  assert.equal(out[0].sequence, 9);
  assert.equal(out[0].codec, "PCMA");
  assert.equal(out[0].clockRate, 8000);
  assert.equal(out[0].arrival, 12.5);
  assert.equal(out[1].arrival, 500, "no arrival on the datagram: the media clock's time");
});

Deno.test("rtp-depacketizer: malformed packets are counted per reason, never thrown", async () => {
  const st = await createStage<TransformStage>(rtpDepacketizer, {});
  const good = pkt({});
  const bad = (mut: (d: Uint8Array) => Uint8Array): PacketFrame => ({ kind: "packet", data: mut(good.data.slice()) });
  const out = runTransform(st, [
    good,
    bad((d) => d.subarray(0, 5)),
    bad((d) => (d[0] = 0x40, d)),
    bad((d) => (d[0] = 0x8f, d.subarray(0, 20))),
    bad((d) => (d[0] = 0x90, d[15] = 200, d)),
    bad((d) => (d[0] = 0xa0, d[d.length - 1] = 0, d)),
    bad((d) => (d[0] = 0xa0, d[d.length - 1] = 0, d)),
    good,
  ]);
  assert.equal(out.length, 2);
  const s = st.stats!() as Record<string, unknown>;
  assert.equal(s.malformed, 6);
  assert.deepEqual(s.malformed_by_reason, {
    "too short": 1,
    "version not 2": 1,
    "CSRC count beyond length": 1,
    "header extension beyond length": 1,
    "bad padding": 2,
  });
  assert.equal(s.received, 8);
  assert.equal(s.forwarded, 2);
});

Deno.test("rtp-depacketizer: payload-type filter drops telephone-event, RTCP-mux dropped", async () => {
  const st = await createStage<TransformStage>(rtpDepacketizer, {});
  const rtcp: PacketFrame = { kind: "packet", data: new Uint8Array([0x81, 201, 0, 1, 0, 0, 0, 1]) };
  const out = runTransform(st, [pkt({}), pkt({ payloadType: 101 }), pkt({ payloadType: 8 }), rtcp]) as RtpFrame[];
  assert.equal(out.length, 1);
  const s = st.stats!() as Record<string, unknown>;
  assert.equal(s.wrong_payload_type, 2);
  assert.equal(s.rtcp, 1);
  // An explicit payload type, and no filter at all.
  const dyn = await createStage<TransformStage>(rtpDepacketizer, { payload_type: 101 });
  assert.equal(runTransform(dyn, [pkt({}), pkt({ payloadType: 101 })]).length, 1);
  const any = await createStage<TransformStage>(rtpDepacketizer, { any_payload_type: true });
  assert.equal(runTransform(any, [pkt({}), pkt({ payloadType: 101 }), pkt({ payloadType: 8 })]).length, 3);
});

Deno.test("rtp-depacketizer: SSRC changes are counted and published", async () => {
  const { ctx, events } = testContext();
  const st = await createStage<TransformStage>(rtpDepacketizer, {}, ctx);
  runTransform(st, [pkt({ ssrc: 1 }), pkt({ ssrc: 1 }), pkt({ ssrc: 2 }), pkt({ ssrc: 2 }), pkt({ ssrc: 1 })]);
  assert.equal(st.stats!().ssrc_changes, 2);
  assert.deepEqual(events, [
    { type: "ssrc-change", detail: { from: 1, to: 2 } },
    { type: "ssrc-change", detail: { from: 2, to: 1 } },
  ]);
});

Deno.test("rtp-depacketizer: negotiation refuses non-packet input", async () => {
  const st = await createStage<TransformStage>(rtpDepacketizer, {});
  assert.throws(
    () => st.negotiate!({ kind: "rtp" }),
    (e: Error) => e instanceof FormatError && /udp-source/.test(e.message),
  );
});

Deno.test("packetizer → serialize → depacketizer round trip across wrap-around", async () => {
  const pz = await createStage<TransformStage>(rtpPacketizer, {
    initial_sequence: 65530,
    initial_timestamp: 4294966000,
  });
  pz.negotiate!({ kind: "encoded", codec: "PCMU", clockRate: 8000 });
  const payload = new Uint8Array(160 * 12).map((_, i) => (i * 31) & 0xff);
  const sent = runTransform(pz, [{ kind: "encoded", codec: "PCMU", clockRate: 8000, payload, pts: 0 }]) as RtpFrame[];
  const dp = await createStage<TransformStage>(rtpDepacketizer, {});
  const got = runTransform(dp, sent.map((f) => ({ kind: "packet", data: serializeRtp(f) }))) as RtpFrame[];
  assert.equal(got.length, 12);
  for (let i = 0; i < 12; i++) {
    assert.equal(got[i].sequence, (65530 + i) & 0xffff);
    assert.equal(got[i].timestamp, (4294966000 + 160 * i) >>> 0);
    assert.equal(got[i].marker, i === 0);
    assert.equal(got[i].ssrc, sent[0].ssrc);
    assert.deepEqual(got[i].payload, payload.subarray(160 * i, 160 * (i + 1)));
  }
});
