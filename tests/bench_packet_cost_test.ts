/**
 * The pure parts of the packet-cost bench (`bench/_packet_cost.ts`): the
 * generator's RTP packets byte by byte (and as our parser reads them), its
 * send schedule, the variants cut from the callee's own receive template, and
 * the figures computed from measurements (medians, µs per packet, per-stage
 * differences and their noise). No timing is measured here.
 *
 * @module
 */
import { assert, assertEquals, assertThrows } from "./assert.ts";
import { repoPath } from "./util.ts";
import { loadPipelineFile } from "../core/config.ts";
import { parseRtp } from "../plugins/rtp/header.ts";
import {
  callStream,
  type Measure,
  packetsDue,
  parseVariants,
  PCMU_PAYLOAD,
  RECEIVE_STAGES,
  rtpPacket,
  stageCosts,
  stageTable,
  summarize,
  variantChain,
  variantTable,
} from "../bench/_packet_cost.ts";

Deno.test("rtpPacket: version 2, PT 0, marker on the first packet only, sequence, timestamp and SSRC big-endian, then the payload", () => {
  const s = { ssrc: 0x01020304, seq0: 1000, ts0: 5000, phaseMs: 0 };
  const p0 = rtpPacket(s, 0), p5 = rtpPacket(s, 5);
  assertEquals(p0.length, 172);
  assertEquals([...p0.subarray(0, 12)], [0x80, 0x80, 0x03, 0xe8, 0x00, 0x00, 0x13, 0x88, 0x01, 0x02, 0x03, 0x04]);
  // Packet 5: sequence 1005 (0x03ed), timestamp 5000 + 5·160 = 5800 (0x16a8), no marker.
  assertEquals([...p5.subarray(0, 12)], [0x80, 0x00, 0x03, 0xed, 0x00, 0x00, 0x16, 0xa8, 0x01, 0x02, 0x03, 0x04]);
  assertEquals([...p5.subarray(12)], [...PCMU_PAYLOAD]);
  assert(p0 !== p5 && p0.buffer !== p5.buffer, "each packet is a buffer of its own (the sender may hold it)");
  const parsed = parseRtp(p5);
  assert(typeof parsed !== "string", `our parser rejects it: ${parsed}`);
  assertEquals(
    [parsed.payloadType, parsed.sequence, parsed.timestamp, parsed.ssrc, parsed.marker, parsed.payload.length],
    [0, 1005, 5800, 0x01020304, false, 160],
  );
});

Deno.test("rtpPacket: the sequence number wraps at 2^16 and the timestamp at 2^32", () => {
  const s = { ssrc: 7, seq0: 0xfffe, ts0: 0xffffff00, phaseMs: 0 };
  const p = new DataView(rtpPacket(s, 3).buffer);
  assertEquals(p.getUint16(2), 1); // 0xfffe + 3 − 65536
  assertEquals(p.getUint32(4), 0xe0); // 0xffffff00 + 3·160 − 2^32 = 0x1e0 − 0x100
});

Deno.test("callStream: distinct SSRCs per call, phases spread evenly over 20 ms, bad indexes refused", () => {
  const streams = Array.from({ length: 200 }, (_, i) => callStream(i, 200));
  assertEquals(new Set(streams.map((s) => s.ssrc)).size, 200);
  assertEquals(streams.map((s) => s.phaseMs).slice(0, 3), [0, 0.1, 0.2]);
  assert(streams.every((s, i) => Math.abs(s.phaseMs - i * 0.1) < 1e-9 && s.phaseMs < 20));
  assert(streams.every((s) => s.seq0 >= 0 && s.seq0 <= 0xffff && s.ts0 >= 0 && s.ts0 <= 0xffffffff));
  assertEquals(callStream(3, 10), callStream(3, 10), "deterministic");
  assertThrows(() => callStream(10, 10), RangeError, "index 10 of 10");
  assertThrows(() => callStream(-1, 10), RangeError);
});

Deno.test("packetsDue: packet k of a stream is due at its phase + k × 20 ms", () => {
  assertEquals(packetsDue(5, 4.9), 0);
  assertEquals(packetsDue(5, 5), 1);
  assertEquals(packetsDue(5, 24.99), 1);
  assertEquals(packetsDue(5, 25), 2);
  assertEquals(packetsDue(0, 1000), 51); // packets 0..50: 50 packets per second, plus the one at 0
  assertEquals(packetsDue(19.9, 1000 + 19.9), 51);
});

Deno.test("variantChain: each variant is the callee's receive template cut to its first stages, then a null-sink", async () => {
  const file = await loadPipelineFile(repoPath("pipelines/callee.json"));
  const receive = file.pipelines.receive;
  assertEquals(receive.map((s) => s.use), [...RECEIVE_STAGES]);
  assertEquals(variantChain(receive, 1).map((s) => s.use), ["udp-source", "null-sink"]);
  assertEquals(
    variantChain(receive, 5).map((s) => s.use),
    ["udp-source", "rtp-depacketizer", "rtcp", "jitter-buffer", "g711-decoder", "null-sink"],
  );
  assertEquals(variantChain(receive, 6), receive, "variant 6 is the whole chain, options and all");
  assertEquals(variantChain(receive, 3)[0], receive[0], "the stages keep the template's options");
  const swapped = [receive[1], receive[0], ...receive.slice(2)];
  assertThrows(() => variantChain(swapped, 2), Error, "update RECEIVE_STAGES");
  assertThrows(() => variantChain(receive, 7), RangeError, "1..6");
});

Deno.test("parseVariants: all, numbers and ranges; anything else is an error naming the option", () => {
  assertEquals(parseVariants("all"), [1, 2, 3, 4, 5, 6]);
  assertEquals(parseVariants("4,1-2,2"), [1, 2, 4]);
  assertThrows(() => parseVariants("0-3"), Error, "--variants");
  assertThrows(() => parseVariants("3-1"), Error, "--variants");
  assertThrows(() => parseVariants("x"), Error, "--variants");
});

const m = (variant: number, net: string, round: number, cpuS: number, extra: Partial<Measure> = {}): Measure => ({
  variant,
  net,
  round,
  packets: 100_000,
  cpuS,
  wallS: 10,
  sent: 120_000,
  received: 120_000,
  ...extra,
});

Deno.test("summarize: medians over rounds of CPU %, µs per packet and packets/s per core; loss is sent − received", () => {
  const rows = summarize([
    m(1, "deno", 0, 1.0, { received: 119_990, rssPerCallKB: 40, heapPerCallKB: 10 }),
    m(1, "deno", 1, 1.2, { rssPerCallKB: 60, heapPerCallKB: 14 }),
    m(1, "fast", 0, 0.5),
    m(3, "deno", 0, 2.0, { rtcpLost: 4 }),
  ], ["deno", "fast"]);
  assertEquals(rows.map((r) => `${r.variant} ${r.net}`), ["1 deno", "1 fast", "3 deno"]);
  const [d1, f1, d3] = rows;
  assertEquals(d1.runs, 2);
  assertEquals(d1.packets, 200_000);
  assertEquals(d1.lost, 10);
  assertEquals(d1.rtcpLost, undefined);
  assert(Math.abs(d1.usPerPacket - 11) < 1e-9, `median of 10 and 12 µs: ${d1.usPerPacket}`);
  assertEquals(d1.usRange.map((x) => Math.round(x * 1e6) / 1e6), [10, 12]);
  assert(Math.abs(d1.cpuPercent - 11) < 1e-9, `median of 10 % and 12 %: ${d1.cpuPercent}`);
  assert(Math.abs(d1.packetsPerCoreS - (100_000 + 100_000 / 1.2) / 2) < 1e-6);
  assertEquals(f1.usPerPacket, 5);
  assertEquals(f1.packetsPerCoreS, 200_000);
  assertEquals(d3.rtcpLost, 4);
  // Memory per call: the median over the rounds that measured it; NaN (printed n/a) where none did.
  assertEquals([d1.rssPerCallKB, d1.heapPerCallKB], [50, 12]);
  assert(Number.isNaN(f1.rssPerCallKB) && Number.isNaN(f1.heapPerCallKB));
  const printed = variantTable(rows);
  assert(printed.includes("| RSS/call KB | heap/call KB |"), printed);
  assert(printed.includes("| 50.0        | 12.0         |"), printed);
});

Deno.test("stageCosts: the difference of consecutive variants, beyond noise only when larger than both spreads", () => {
  const rows = summarize([
    m(1, "deno", 0, 1.0),
    m(1, "deno", 1, 1.2), // 10–12 µs: noise 1
    m(2, "deno", 0, 1.5),
    m(2, "deno", 1, 1.5), // 15 µs: +4 over 11, noise 1 + 0
    m(3, "deno", 0, 1.3),
    m(3, "deno", 1, 1.9), // 13–19 µs, median 16: +1, noise 0 + 3
    m(5, "deno", 0, 2.0),
    m(5, "deno", 1, 2.0), // no variant 4: no line for 5
    m(1, "fast", 0, 0.5),
    m(2, "fast", 0, 0.9), // one round: noise unknown
  ], ["deno", "fast"]);
  const costs = stageCosts(rows);
  assertEquals(costs.map((c) => `${c.variant} ${c.net} ${c.adds}`), [
    "2 deno rtp-depacketizer",
    "2 fast rtp-depacketizer",
    "3 deno rtcp",
  ]);
  const [dep, fast, rtcp] = costs;
  assert(Math.abs(dep.usPerPacket - 4) < 1e-9 && Math.abs(dep.noise! - 1) < 1e-9 && dep.meaningful);
  assert(Math.abs(rtcp.usPerPacket - 1) < 1e-9 && Math.abs(rtcp.noise! - 3) < 1e-9 && !rtcp.meaningful);
  assert(Math.abs(fast.usPerPacket - 4) < 1e-9 && fast.noise === undefined && !fast.meaningful);
  const text = stageTable(costs);
  assert(text.includes("| 2: rtp-depacketizer | deno | +4.00"), text);
  assert(text.includes("unknown (1 round)"), text);
  const v = variantTable(rows);
  assert(/\| 2 udp-source → rtp-depacketizer → null-sink +\| deno \| 2 /.test(v), v);
  assert(v.includes("15.00 (15.00–15.00)"), v);
});
