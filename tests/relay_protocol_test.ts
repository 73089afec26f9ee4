/**
 * The relay's line protocol (parse and format, both directions), the bounded
 * line splitter, and the relay family's stages: the end-of-transmission
 * marker and detector, the timeline recorder, the silence detector.
 */
import { assert, assertEquals } from "./assert.ts";
import { runTransform } from "../core/testing.ts";
import { createStage, testContext } from "./registry_util.ts";
import type { EncodedFrame, Frame, PcmFrame, RtpFrame } from "../core/frame.ts";
import {
  formatReply,
  formatRequest,
  LineSplitter,
  parseReply,
  parseRequest,
  type RelayReply,
  type RelayRequest,
} from "../plugins/relay/protocol.ts";
import { endMarkerAfter, rtpEndDetector, rtpEndMarker } from "../plugins/relay/end_marker.ts";
import { rtpTimeline } from "../plugins/relay/rtp_timeline.ts";
import { silenceDetector } from "../plugins/relay/silence_detector.ts";
import { rtpPacketizer } from "../plugins/rtp/rtp_packetizer.ts";
import { parseRtp, serializeRtp } from "../plugins/rtp/header.ts";
import type { TransformStage } from "../core/stage.ts";

Deno.test("relay protocol: requests parse and format both ways", () => {
  const reqs: RelayRequest[] = [
    { type: "HELLO", listenPort: 40000, targetIp: "192.0.2.7", targetPort: 5004 },
    { type: "HELLO", listenPort: 1, targetIp: "2001:db8::1", targetPort: 65535 },
    { type: "HEARTBEAT" },
    { type: "DISCONNECT" },
    { type: "STATS" },
  ];
  for (const r of reqs) assertEquals(parseRequest(formatRequest(r)), r);
  assertEquals(formatRequest(reqs[0]), "HELLO 40000 192.0.2.7 5004");
  // Extra spaces and a CR are tolerated; IPv6 targets come back canonical; IPv4-mapped ones as IPv4.
  assertEquals(parseRequest("HELLO  40000   192.0.2.7 5004\r"), reqs[0]);
  assertEquals(parseRequest("HELLO 40000 2001:DB8:0:0:0:0:0:1 5004"), {
    type: "HELLO",
    listenPort: 40000,
    targetIp: "2001:db8::1",
    targetPort: 5004,
  });
  assertEquals(parseRequest("HELLO 40000 ::ffff:192.0.2.7 5004"), reqs[0]);
  assertEquals(parseRequest("HELLO 40000 ff02::1 5004"), { invalid: "target is a multicast address" });
  assertEquals(parseRequest("HELLO 040000 1.2.3.4 5"), { invalid: 'listen_port must be 1..65535, got "040000"' });
  assertEquals(parseRequest("DISCONNECT now"), { invalid: "DISCONNECT takes no arguments" });
});

Deno.test("relay protocol: replies parse and format both ways", () => {
  const replies: RelayReply[] = [
    { type: "OK", udpPort: 9999, heartbeatTimeout: 120, observedIp: "10.0.0.1" },
    { type: "OK" },
    { type: "FULL" },
    { type: "INVALID", reason: "empty line" },
    { type: "BYE", reason: "" },
    { type: "BYE", reason: "shutting down" },
    { type: "TIMEOUT" },
    { type: "BUSY", reason: "too many connections (64)" },
    { type: "TARGET", up: true },
    { type: "TARGET", up: false },
    { type: "STATS", json: '{"clients":0}' },
  ];
  for (const r of replies) assertEquals(parseReply(formatReply(r)), r);
  assertEquals(formatReply(replies[0]), "OK 9999 120 10.0.0.1");
  assertEquals(parseReply("OK 9999"), undefined);
  assertEquals(parseReply("TARGET SIDEWAYS"), undefined);
  assertEquals(parseReply("WHAT"), undefined);
});

Deno.test("relay protocol: the line splitter is bounded and recovers after an over-long line", () => {
  const sp = new LineSplitter(8);
  const lines: string[] = [];
  let tooLong = 0;
  const enc = new TextEncoder();
  const push = (s: string) => sp.push(enc.encode(s), (l) => lines.push(l), () => tooLong++);
  push("ab");
  push("c\nde");
  push("f\n123456789");
  assertEquals(sp.pending, 0, "the over-long line is not kept");
  push("0123456789012345");
  push("\nok\n12345678\n");
  assertEquals(lines, ["abc", "def", "ok", "12345678"]);
  assertEquals(tooLong, 1);
  push("xy");
  assertEquals(sp.pending, 2);
});

function rtp(seq: number, ts: number, n: number, extra: Partial<RtpFrame> = {}): RtpFrame {
  return {
    kind: "rtp",
    payloadType: 0,
    sequence: seq,
    timestamp: ts,
    ssrc: 0x11223344,
    marker: false,
    payload: new Uint8Array(n).fill(seq & 0xff),
    codec: "PCMU",
    clockRate: 8000,
    ...extra,
  };
}

Deno.test("rtp-end-marker: after the last packet, an empty packet with the marker bit, next sequence and timestamp", async () => {
  const stage = await createStage<TransformStage>(rtpEndMarker);
  const out = runTransform(stage, [rtp(65534, 0xffffff00, 160), rtp(65535, 0xffffffa0, 100)]) as RtpFrame[];
  assertEquals(out.length, 3);
  const m = out[2];
  assertEquals([m.sequence, m.timestamp, m.ssrc, m.marker, m.payload.length], [0, 4, 0x11223344, true, 0]);
  // On the wire: the 12-byte header alone: version 2, marker + PT 0, seq 0, ts 4, the SSRC.
  assertEquals([...serializeRtp(m)], [0x80, 0x80, 0, 0, 0, 0, 0, 4, 0x11, 0x22, 0x33, 0x44]);
  // Nothing sent, nothing to end.
  assertEquals(runTransform(await createStage<TransformStage>(rtpEndMarker), []), []);
});

Deno.test("rtp-end-detector: drops the marker and raises end-of-transmission; passes everything else", async () => {
  const { ctx, events } = testContext();
  const stage = await createStage<TransformStage>(rtpEndDetector, {}, ctx);
  const parsed = parseRtp(serializeRtp(endMarkerAfter(rtp(9, 1000, 160))));
  assert(typeof parsed !== "string");
  const frames: Frame[] = [
    rtp(1, 0, 160, { marker: true }), // a talkspurt start: marker with audio
    rtp(2, 160, 0), // empty without marker: not the end
    parsed,
  ];
  const out = runTransform(stage, frames) as RtpFrame[];
  assertEquals(out.map((f) => f.sequence), [1, 2]);
  assertEquals(events, [{ type: "end-of-transmission", detail: { ssrc: 0x11223344, sequence: 10 } }]);
});

Deno.test("rtp-end-marker after a packetizer: the marker follows the remainder of the stream", async () => {
  const pk = await createStage<TransformStage>(rtpPacketizer, {
    ptime: 20,
    ssrc: 5,
    initial_sequence: 100,
    initial_timestamp: 1000,
  });
  pk.negotiate?.({ kind: "encoded", codec: "PCMU", clockRate: 8000 });
  const em = await createStage<TransformStage>(rtpEndMarker);
  const enc: EncodedFrame = { kind: "encoded", codec: "PCMU", clockRate: 8000, payload: new Uint8Array(400), pts: 0 };
  const packets = runTransform(pk, [enc]);
  const out = runTransform(em, packets) as RtpFrame[];
  assertEquals(out.map((f) => [f.sequence, f.timestamp, f.payload.length, f.marker]), [
    [100, 1000, 160, true],
    [101, 1160, 160, false],
    [102, 1320, 80, false],
    [103, 1400, 0, true],
  ]);
});

Deno.test("rtp-timeline: encoded frames at their RTP timestamps, across wrap-around, gaps, reordering and SSRC changes", async () => {
  const stage = await createStage<TransformStage>(rtpTimeline);
  stage.negotiate?.({ kind: "rtp", codec: "PCMA", clockRate: 8000 });
  const out = runTransform(stage, [
    rtp(1, 0xffffff60, 160),
    rtp(2, 0x00000000, 160), // wrapped
    rtp(4, 0x00000140, 160), // one packet lost
    rtp(3, 0x000000a0, 160), // late: placed where it belongs
    rtp(5, 0x000001e0, 0), // empty: nothing to place
    rtp(1, 5000, 80, { ssrc: 9 }), // a new stream continues after the old one
  ]) as EncodedFrame[];
  assertEquals(out.map((f) => [f.pts, f.payload.length]), [[0, 160], [160, 160], [480, 160], [320, 160], [640, 80]]);
  assertEquals(out[0].codec, "PCMU", "the frame's codec, as the depacketizer set it");
  assertEquals(stage.stats?.(), { packets: 5, ssrc_changes: 1, empty: 1 });
});

function pcm(samples: number[] | Int16Array, pts = 0): PcmFrame {
  return { kind: "pcm", samples: Int16Array.from(samples), sampleRate: 8000, channels: 1, pts };
}

Deno.test("silence-detector: warns once after exactly N seconds of silent input, again after sound returns", async () => {
  const { ctx, events } = testContext();
  const stage = await createStage<TransformStage>(silenceDetector, { seconds: 1, threshold_dbfs: -60 }, ctx);
  const silent = new Int16Array(160).fill(32); // -60 dBFS: still silent
  const frames: PcmFrame[] = [];
  for (let i = 0; i < 49; i++) frames.push(pcm(silent)); // 0.98 s
  let out = runTransform(stage, frames);
  assertEquals(out.length, 49, "frames pass through");
  assertEquals(events.length, 0);
  out = runTransform(stage, [pcm(silent)]); // 1.00 s
  assertEquals(events, [{ type: "silence", detail: { seconds: 1 } }]);
  runTransform(stage, new Array(100).fill(0).map(() => pcm(silent)));
  assertEquals(events.length, 1, "once per silent stretch");
  const loud = new Int16Array(160);
  loud[10] = 40; // above -60 dBFS, then 149 silent samples
  runTransform(stage, [pcm(loud)]);
  assertEquals(events[1], { type: "sound", detail: { silent_s: 3 } });
  // The new stretch counts from the last loud sample: 149 + 49 × 160 + 31 samples = 1 s exactly.
  runTransform(stage, new Array(49).fill(0).map(() => pcm(silent)));
  assertEquals(events.length, 2);
  runTransform(stage, [pcm(silent.subarray(0, 31))]);
  assertEquals(events.length, 3);
  assertEquals(events[2].type, "silence");
  assertEquals(stage.stats?.().warnings, 2);
  assertEquals(out.length, 1);
});
