/**
 * RTP hot-path benchmarks: header serialize/parse per packet (ours vs rtp.js),
 * and the packetizer/depacketizer/jitter-buffer stages per packet.
 *
 * Run: `deno bench -A bench/rtp_bench.ts`
 *
 * @module
 */
import { packets } from "rtp.js";
import type { EncodedFrame, Frame, PacketFrame, RtpFrame } from "../core/frame.ts";
import type { TransformStage } from "../core/stage.ts";
import { createStage, testContext } from "../core/testing.ts";
import { parseRtp, serializeRtp, serializeRtpInto } from "../plugins/rtp/header.ts";
import rtpPacketizer from "../plugins/rtp/rtp_packetizer.ts";
import rtpDepacketizer from "../plugins/rtp/rtp_depacketizer.ts";
import { JitterBuffer } from "../plugins/rtp/jitter_buffer.ts";
import { RecordBuffer } from "../plugins/rtp/record_buffer.ts";
import { PCMU } from "../plugins/g711/codecs.ts";
import { createRegistry } from "../mod.ts";

/** Stages get the built-in codecs, as in a pipeline built with createRegistry(). */
const ctx = () => testContext({ registry: createRegistry() }).ctx;

const payload = new Uint8Array(160).fill(0xd5);
let seq = 0;
const frame = (): RtpFrame => ({
  kind: "rtp",
  payloadType: 0,
  sequence: seq = (seq + 1) & 0xffff,
  timestamp: (seq * 160) >>> 0,
  ssrc: 0x12345678,
  marker: false,
  payload,
});
const wire = serializeRtp(frame());
let sink = 0;

Deno.bench("serializeRtp (12-byte header + 160-byte payload)", { group: "serialize", baseline: true }, () => {
  sink += serializeRtp(frame()).length;
});

const out = new Uint8Array(1500);
Deno.bench("serializeRtpInto (no allocation)", { group: "serialize" }, () => {
  sink += serializeRtpInto(frame(), out);
});

Deno.bench("rtp.js RtpPacket build + serialize", { group: "serialize" }, () => {
  const p = new packets.RtpPacket();
  const f = frame();
  p.setPayloadType(f.payloadType);
  p.setSequenceNumber(f.sequence);
  p.setTimestamp(f.timestamp);
  p.setSsrc(f.ssrc);
  p.setPayload(new DataView(payload.buffer));
  sink += p.getView().byteLength;
});

Deno.bench("parseRtp", { group: "parse", baseline: true }, () => {
  const r = parseRtp(wire, 1);
  if (typeof r !== "string") sink += r.sequence;
});

Deno.bench("rtp.js RtpPacket parse + read fields", { group: "parse" }, () => {
  const p = new packets.RtpPacket(new DataView(wire.buffer));
  sink += p.getSequenceNumber() + p.getTimestamp() + p.getSsrc() + p.getPayload().byteLength;
});

// Stages, one packet per iteration.
const noop = (_f: Frame) => true;
const pz = await createStage<TransformStage>(
  rtpPacketizer,
  { ssrc: 1, initial_sequence: 0, initial_timestamp: 0 },
  ctx(),
);
pz.negotiate!({ kind: "encoded", codec: "PCMU", clockRate: 8000 });
let pts = 0;
Deno.bench("rtp-packetizer stage (160-byte frames)", { group: "stages" }, () => {
  const f: EncodedFrame = { kind: "encoded", codec: "PCMU", clockRate: 8000, payload, pts };
  pts += 160;
  pz.process(f, noop);
});

const dp = await createStage<TransformStage>(rtpDepacketizer, {}, ctx());
const pkt: PacketFrame = { kind: "packet", data: wire, arrival: 0 };
Deno.bench("rtp-depacketizer stage (parse + checks)", { group: "stages" }, () => {
  dp.process(pkt, noop);
});

const jb = new JitterBuffer({ min_delay: 20, max_delay: 500, max_conceal: 100 }, { codec: PCMU });
let t = 0, s = 0;
Deno.bench("jitter buffer insert + tick (per packet)", { group: "stages" }, () => {
  jb.insert({ ...frame(), sequence: s & 0xffff, timestamp: (s * 160) >>> 0, arrival: t }, t);
  s++;
  t += 20;
  while ((jb.nextTickTime() ?? Infinity) <= t) sink += jb.tick().payload.length;
});

// Record mode (a chain ending in a file): ordered by timestamp, nothing decoded, no playout clock.
const rb = new RecordBuffer({ reorderMs: 100 });
let rs = 0;
Deno.bench("record buffer insert (per packet, in order)", { group: "stages" }, () => {
  rb.insert({ ...frame(), sequence: rs & 0xffff, timestamp: (rs * 160) >>> 0 }, (f) => sink += f.kind.length);
  rs++;
});

globalThis.addEventListener("unload", () => {
  if (sink === 42) console.log(sink);
});
