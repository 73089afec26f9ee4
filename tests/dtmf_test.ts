/**
 * DTMF as RFC 4733 telephone events: the payload format byte by byte, the
 * sender's packet train (in a send chain on a VirtualClock, bytes and send
 * times), the receiver's deduplication, the audio timeline around event
 * packets (jitter buffer, record buffer, RTCP, UDP pacing), SDP negotiation,
 * and the `sendDtmf` API.
 *
 * @module
 */
import { assert, assertEquals, assertMatch, assertRejects, assertThrows } from "./assert.ts";
import { VirtualClock } from "../core/clock.ts";
import { Logger } from "../core/log.ts";
import type { EncodedFrame, Frame, PacketFrame, RtpFrame } from "../core/frame.ts";
import { MemoryNetwork } from "../core/net/memory.ts";
import { buildPipeline } from "../core/pipeline.ts";
import { Session } from "../core/session.ts";
import type { TransformStage } from "../core/stage.ts";
import { runTransform } from "../core/testing.ts";
import { codecs, createStage, registry, testContext } from "./registry_util.ts";
import { parseRtp, serializeRtp } from "../plugins/rtp/header.ts";
import {
  decodeTelephoneEvents,
  DTMF_DIGITS,
  dtmfCodes,
  dtmfDigit,
  DtmfReceiver,
  encodeTelephoneEvent,
  MAX_EVENTS_PER_PACKET,
  type ReceivedTelephoneEvent,
  TELEPHONE_EVENT,
} from "../plugins/rtp/telephone_event.ts";
import { dtmfSender, sendDtmf } from "../plugins/rtp/dtmf_sender.ts";
import rtpDepacketizer from "../plugins/rtp/rtp_depacketizer.ts";
import { JitterBuffer, jitterBuffer } from "../plugins/rtp/jitter_buffer.ts";
import { MAX_EVENT_RUNS, RecordBuffer } from "../plugins/rtp/record_buffer.ts";
import { ReceptionStats } from "../plugins/rtp/rtcp_session.ts";
import { agreedMedia, createAnswer, createOffer, negotiated } from "../plugins/sip/sdp.ts";

const SSRC = 0x11223344;

/** 20 ms PCMU audio packets: packet k has timestamp ts0 + 160 k, sequence seq0 + k, a payload of byte k & 0x7f. */
function audio(n: number, o: { ts0?: number; seq0?: number; ssrc?: number } = {}): RtpFrame[] {
  const ts0 = o.ts0 ?? 8000, seq0 = o.seq0 ?? 1000;
  return Array.from({ length: n }, (_, k) => ({
    kind: "rtp" as const,
    payloadType: 0,
    sequence: (seq0 + k) & 0xffff,
    timestamp: (ts0 + 160 * k) >>> 0,
    ssrc: o.ssrc ?? SSRC,
    marker: k === 0,
    payload: new Uint8Array(160).fill(k & 0x7f),
    codec: "PCMU",
    clockRate: 8000,
  }));
}

/** A telephone-event RTP frame. */
function ev(
  seq: number,
  ts: number,
  event: number,
  duration: number,
  end = false,
  o: { ssrc?: number; marker?: boolean; volume?: number } = {},
): RtpFrame {
  return {
    kind: "rtp",
    payloadType: 101,
    sequence: seq & 0xffff,
    timestamp: ts >>> 0,
    ssrc: o.ssrc ?? SSRC,
    marker: o.marker ?? false,
    payload: encodeTelephoneEvent({ event, end, volume: o.volume ?? 10, duration }),
  };
}

const hex = (b: Uint8Array) => [...b].map((x) => x.toString(16).padStart(2, "0")).join(" ");

// ---------------------------------------------------------------------------------------------------------------
// Payload format

Deno.test("telephone-event payload: RFC 4733 figure 1 layout, byte by byte (event, E|R|volume, duration)", () => {
  // Digit "9" at volume 10 (-10 dBm0), updates every 50 ms at 8 kHz: durations 400, 800, 1200, 1600, then the end.
  assertEquals(hex(encodeTelephoneEvent({ event: 9, end: false, volume: 10, duration: 400 })), "09 0a 01 90");
  assertEquals(hex(encodeTelephoneEvent({ event: 9, end: false, volume: 10, duration: 800 })), "09 0a 03 20");
  assertEquals(hex(encodeTelephoneEvent({ event: 9, end: false, volume: 10, duration: 1200 })), "09 0a 04 b0");
  assertEquals(hex(encodeTelephoneEvent({ event: 9, end: false, volume: 10, duration: 1600 })), "09 0a 06 40");
  // E is the top bit of byte 1, R (sent 0) the next, volume the low 6 bits.
  assertEquals(hex(encodeTelephoneEvent({ event: 9, end: true, volume: 10, duration: 1600 })), "09 8a 06 40");
  assertEquals(hex(encodeTelephoneEvent({ event: 11, end: true, volume: 63, duration: 65535 })), "0b bf ff ff");
  assertEquals(hex(encodeTelephoneEvent({ event: 0, end: false, volume: 0, duration: 0 })), "00 00 00 00");
  // Written into a packet buffer at an offset.
  const buf = new Uint8Array(8);
  encodeTelephoneEvent({ event: 12, end: false, volume: 7, duration: 0x1234 }, buf, 4);
  assertEquals(hex(buf), "00 00 00 00 0c 07 12 34");
  // Out of range fields are refused, naming the field.
  assertThrows(() => encodeTelephoneEvent({ event: 1, end: false, volume: 64, duration: 0 }), RangeError, "volume");
  assertThrows(() => encodeTelephoneEvent({ event: 1, end: false, volume: 1, duration: 65536 }), RangeError, "dur");
  assertThrows(() => encodeTelephoneEvent({ event: 256, end: false, volume: 1, duration: 0 }), RangeError, "event");
});

Deno.test("telephone-event payload: decoding ignores R, reads several events, refuses partial ones", () => {
  // R set (0x40) is ignored on receipt.
  assertEquals(decodeTelephoneEvents(new Uint8Array([0x05, 0xca, 0x00, 0xa0])), [
    { event: 5, end: true, volume: 10, duration: 160 },
  ]);
  assertEquals(decodeTelephoneEvents(new Uint8Array([0x01, 0x8a, 0x03, 0x20, 0x02, 0x0a, 0x01, 0x40])), [
    { event: 1, end: true, volume: 10, duration: 800 },
    { event: 2, end: false, volume: 10, duration: 320 },
  ]);
  assertEquals(decodeTelephoneEvents(new Uint8Array(0)), "empty payload");
  assertMatch(String(decodeTelephoneEvents(new Uint8Array(6))), /not a whole number of 4-byte events/);
  // A whole RTP packet: 12-byte header with the telephone-event payload type, then the event.
  const wire = serializeRtp(ev(0x1234, 0xdeadbeef, 9, 400, false, { marker: true }));
  assertEquals(hex(wire), "80 e5 12 34 de ad be ef 11 22 33 44 09 0a 01 90");
});

Deno.test("DTMF event codes (RFC 4733 section 3.2): 0-9, * 10, # 11, A-D 12-15", () => {
  assertEquals(dtmfCodes("0123456789*#ABCD"), Array.from({ length: 16 }, (_, i) => i));
  assertEquals(dtmfCodes("abcd"), [12, 13, 14, 15]);
  assertEquals([...Array(16).keys()].map(dtmfDigit).join(""), DTMF_DIGITS);
  assertEquals(dtmfDigit(16), undefined);
  assertThrows(() => dtmfCodes("12x"), RangeError, '"x" is not a DTMF digit');
});

// ---------------------------------------------------------------------------------------------------------------
// Sender

/** Runs audio frames through a dtmf-sender stage; returns what it emitted. */
async function throughSender(options: Record<string, unknown>, frames: RtpFrame[]) {
  const t = testContext();
  const st = await createStage<TransformStage>(dtmfSender, options, t.ctx);
  const out = runTransform(st, frames) as RtpFrame[];
  return { out, events: t.events, st };
}

Deno.test("dtmf-sender: the packet train of two digits, interleaved with the audio of the same stream", async () => {
  const frames = audio(40);
  const { out, events, st } = await throughSender({ payload_type: 101, dtmf: "1#", dtmf_at: 0.1 }, frames);
  // One stream: same SSRC, sequence numbers consecutive across audio and events.
  assert(out.every((f) => f.ssrc === SSRC));
  assertEquals(out.map((f) => f.sequence), out.map((_, i) => 1000 + i));
  // The audio is all there, unchanged but for its sequence numbers.
  const a = out.filter((f) => f.payloadType === 0);
  assertEquals(a.length, 40);
  assertEquals(a.map((f) => f.timestamp), frames.map((f) => f.timestamp));
  assert(a.every((f, k) => f.payload === frames[k].payload));
  // Each event packet as [index of the audio packet it follows, marker, timestamp, payload].
  const train: string[] = [];
  let k = -1;
  for (const f of out) {
    if (f.payloadType === 0) k++;
    else {
      assertEquals([f.payloadType, f.codec], [101, TELEPHONE_EVENT]);
      train.push(`${k} ${f.marker ? "M" : "-"} ${f.timestamp - 8000} ${hex(f.payload)}`);
    }
  }
  // "1" starts 100 ms (800 samples) into the stream, at audio packet 5; an update every 50 ms of audio; at 160 ms
  // the E packet, twice more with the next packets. "#" starts 100 ms after "1" ended (260 ms after its start).
  assertEquals(train, [
    "5 M 800 01 0a 00 a0", //  20 ms
    "7 - 800 01 0a 01 e0", //  60 ms
    "9 - 800 01 0a 03 20", // 100 ms
    "12 - 800 01 8a 05 00", // 160 ms: end
    "13 - 800 01 8a 05 00",
    "14 - 800 01 8a 05 00",
    "18 M 2880 0b 0a 00 a0",
    "20 - 2880 0b 0a 01 e0",
    "22 - 2880 0b 0a 03 20",
    "25 - 2880 0b 8a 05 00",
    "26 - 2880 0b 8a 05 00",
    "27 - 2880 0b 8a 05 00",
  ]);
  assertEquals(events.map((e) => e.type), ["dtmf-sent", "dtmf-sent"]);
  assertEquals(events.map((e) => (e.detail as { digit: string }).digit), ["1", "#"]);
  assertEquals((events[0].detail as { duration_ms: number }).duration_ms, 160);
  assertEquals(st.stats!().event_packets, 12);
});

Deno.test("dtmf-sender: duration, gap, volume and interval; a digit shorter than a packet; sequence wrap", async () => {
  // 30 ms packets, interval 20 ms: an update with every packet; a 40 ms digit: updates at 30 ms, end at 60 ms.
  const frames = audio(20, { seq0: 0xfffe }).map((f, k) => ({
    ...f,
    timestamp: 8000 + 240 * k,
    payload: new Uint8Array(240),
  }));
  const { out } = await throughSender(
    { payload_type: 96, dtmf: "*", dtmf_at: 0, duration: 40, gap: 0, volume: 3, interval: 20 },
    frames,
  );
  assertEquals(out.map((f) => f.sequence), out.map((_, i) => (0xfffe + i) & 0xffff), "wraps at 16 bits");
  const te = out.filter((f) => f.payloadType === 96);
  assertEquals(te.map((f) => hex(f.payload)), ["0a 03 00 f0", "0a 83 01 40", "0a 83 01 40", "0a 83 01 40"]);
  // A 45 ms digit in 60 ms packets: its first packet is already the end.
  const long = audio(6).map((f, k) => ({ ...f, timestamp: 8000 + 480 * k, payload: new Uint8Array(480) }));
  const r = await throughSender({ payload_type: 96, dtmf: "7", dtmf_at: 0, duration: 45 }, long);
  const t7 = r.out.filter((f) => f.payloadType === 96);
  assertEquals(t7.map((f) => [f.marker, hex(f.payload)]), [
    [true, "07 8a 01 68"],
    [false, "07 8a 01 68"],
    [false, "07 8a 01 68"],
  ]);
});

Deno.test("dtmf-sender: payload type 0 passes frames unchanged and sends nothing; a clash with the audio's type is refused", async () => {
  const frames = audio(30);
  const { out } = await throughSender({ payload_type: 0, dtmf: "12" }, frames);
  assertEquals(out, frames);
  const clash = await createStage<TransformStage>(dtmfSender, { payload_type: 101 }, testContext().ctx);
  assertThrows(
    () => clash.process({ ...frames[0], payloadType: 101 }, () => true),
    Error,
    "the one set for telephone-event",
  );
  assertThrows(() => dtmfSender.options.parse({ dtmf: "12x" }), Error, "expected DTMF digits");
});

Deno.test("sendDtmf: digits from the application through the session's dtmf-sender; clear errors", async () => {
  const t = testContext();
  const session = t.ctx.session;
  await assertRejects(() => sendDtmf(session, "1"), Error, 'has no dtmf-sender stage (put {"use": "dtmf-sender"');
  const st = await createStage<TransformStage>(dtmfSender, { payload_type: 101 }, t.ctx);
  const out: RtpFrame[] = [];
  const emit = (f: Frame) => out.push(f as RtpFrame) > 0;
  await assertRejects(() => sendDtmf(session, "1x"), RangeError, '"x" is not a DTMF digit');
  await assertRejects(() => sendDtmf(session, "1", { duration: 10 }), RangeError, "duration (ms) must be 40..8000");
  let done: { digits: string; packets: number } | undefined;
  // Queued before any audio: starts with the first packet.
  const p = sendDtmf(session, "9a", { duration: 100, gap: 60, volume: 20 }).then((r) => done = r);
  const frames = audio(40);
  for (const f of frames.slice(0, 12)) st.process(f, emit);
  await Promise.resolve();
  assertEquals(done, undefined, "not finished yet");
  for (const f of frames.slice(12)) st.process(f, emit);
  await p;
  // 100 ms digits: the first packet (20 ms), an update (60 ms), the end at 100 ms and its two repeats.
  assertEquals(done, { digits: "9A", packets: 10 });
  const te = out.filter((f) => f.payloadType === 101);
  assertEquals(te.map((f) => f.payload[0]), [9, 9, 9, 9, 9, 12, 12, 12, 12, 12]);
  assertEquals(te[0].timestamp, frames[0].timestamp);
  assertEquals(te[0].payload[1], 20, "volume");
  assertEquals((te[5].timestamp - te[0].timestamp) / 8, 160, "100 ms + 60 ms gap");
  // Digits queued when the stream ends are rejected; the one under way is ended at once (E ×3).
  const late = sendDtmf(session, "55");
  st.process(audio(1, { ts0: 8000 + 160 * 40, seq0: 1040 })[0], emit);
  const before = out.length;
  st.flush!(emit);
  await assertRejects(() => late, Error, 'DTMF "5" not sent: the stream ended');
  const tail = out.slice(before);
  assertEquals(tail.map((f) => hex(f.payload)), ["05 8a 00 a0", "05 8a 00 a0", "05 8a 00 a0"]);
  await assertRejects(() => sendDtmf(session, "1"), Error, "the send chain has ended");
  // A session whose peer did not accept telephone-event.
  const u = testContext();
  await createStage(dtmfSender, { payload_type: 0 }, u.ctx);
  await assertRejects(() => sendDtmf(u.ctx.session, "1"), Error, "telephone-event (RFC 4733) was not negotiated");
  await assertRejects(
    async () => await createStage(dtmfSender, { payload_type: 101 }, u.ctx),
    Error,
    "already has a dtmf-sender",
  );
  await t.release();
  await u.release();
});

Deno.test("dtmf-sender in a send chain on a VirtualClock: bytes on the wire and send times", async () => {
  const clock = new VirtualClock(1000);
  const net = new MemoryNetwork({ clock, latencyMs: 0 });
  const session = new Session({ id: "send", clock, net });
  const got: { t: number; d: Uint8Array }[] = [];
  net.bind("10.0.0.2", 4000).listen((d) => void got.push({ t: clock.now(), d: d.slice() }));
  const p = await buildPipeline("send", [
    { use: "tone-source", frequency: 400, duration: 3 },
    { use: "g711-encoder", codec: "PCMU" },
    { use: "rtp-packetizer", ssrc: SSRC, initial_sequence: 500, initial_timestamp: 0 },
    // The second digit lasts 1.5 s: longer than the sink's resync threshold (1 s), which it must not trip.
    { use: "dtmf-sender", payload_type: 101, dtmf: "3", dtmf_at: 0.5, duration: 100 },
    { use: "udp-sink", to: "10.0.0.2:4000", bind: "10.0.0.1", local_port: 5000 },
  ], { registry, session });
  const done = p.start();
  await clock.advanceAsync(1000, 5);
  void sendDtmf(session, "D", { duration: 1500 });
  await clock.advanceAsync(3000, 5);
  assertEquals((await done).reason, "eos");
  const rtp = got.map(({ t, d }) => ({ t: t - 1000, f: parseRtp(d) as RtpFrame }));
  assertEquals(rtp.map((r) => r.f.sequence), rtp.map((_, i) => 500 + i), "one sequence, no gap");
  const a = rtp.filter((r) => r.f.payloadType === 0);
  assertEquals(a.length, 150);
  // Audio paced at its timestamps: 20 ms apart from the start.
  assert(a.every((r) => r.t === r.f.timestamp / 8), "each audio packet at its timestamp");
  const te = rtp.filter((r) => r.f.payloadType === 101);
  // "3" (100 ms) at 500 ms: its packets go out with the audio packets of 500, 540, 580 (end), 600 and 620 ms, each
  // right after the audio packet of its time.
  const three = te.filter((r) => r.f.payload[0] === 3);
  assertEquals(three.map((r) => [r.t, r.f.marker, r.f.timestamp, hex(r.f.payload)]), [
    [500, true, 4000, "03 0a 00 a0"],
    [540, false, 4000, "03 0a 01 e0"],
    [580, false, 4000, "03 8a 03 20"],
    [600, false, 4000, "03 8a 03 20"],
    [620, false, 4000, "03 8a 03 20"],
  ]);
  // The next audio packet follows each event packet (ordering on the wire).
  for (const r of three) {
    const i = rtp.indexOf(r);
    assertEquals(rtp[i - 1].t, r.t);
  }
  // "D" (from the application at 1000 ms): starts with the next audio packet through the sender (the sink holds
  // up to 100 ms), 1.5 s long, its duration updated on the 50 ms grid (at 20, 60, 100, 160, 200 ... ms), ended
  // after 1.5 s, the audio still paced exactly.
  const d = te.filter((r) => r.f.payload[0] === 15);
  assert(d[0].t >= 1000 && d[0].t <= 1120, `starts at ${d[0].t}`);
  const durations = d.map((r) => ((r.f.payload[2] << 8) | r.f.payload[3]) / 8);
  assertEquals(durations.slice(0, 6), [20, 60, 100, 160, 200, 260]);
  assertEquals(d.length, 1 + 29 + 3, "the first packet, one update per 50 ms mark up to 1450 ms, three ends");
  const ends = d.filter((r) => r.f.payload[1] & 0x80);
  assertEquals(ends.length, 3);
  assertEquals((ends[0].f.payload[2] << 8) | ends[0].f.payload[3], 12000);
  assertEquals(ends[0].t - d[0].t + 20, 1500, "the end goes out 1.5 s after the start's packet");
  const stats = p.stats().at(-1)!.extra as { resyncs: number; packets_sent: number };
  assertEquals([stats.resyncs, stats.packets_sent], [0, rtp.length]);
  await session.close();
});

// ---------------------------------------------------------------------------------------------------------------
// Receiver

function receiver() {
  const got: ReceivedTelephoneEvent[] = [];
  const rx = new DtmfReceiver({ clockRate: 8000, onEvent: (e) => got.push(e) });
  return { rx, got };
}

Deno.test("DtmfReceiver: one report per event, whatever the updates, redundant end packets and retransmissions", () => {
  const { rx, got } = receiver();
  const packets = [
    ev(1, 1000, 5, 160, false, { marker: true }),
    ev(2, 1000, 5, 480),
    ev(2, 1000, 5, 480), // a duplicate datagram
    ev(3, 1000, 5, 800),
    ev(4, 1000, 5, 1280, true),
    ev(5, 1000, 5, 1280, true),
    ev(6, 1000, 5, 1280, true),
    ev(3, 1000, 5, 800), // late, reordered
    // The same digit again: a new event (new timestamp).
    ev(7, 3000, 5, 160, false, { marker: true }),
    ev(8, 3000, 5, 1280, true, { volume: 12 }),
    ev(9, 3000, 5, 1280, true),
    ev(10, 3000, 5, 1280, true),
  ];
  packets.forEach((p, i) => rx.receive(p, i * 20));
  assertEquals(got.map((e) => [e.digit, e.duration_ms, e.timestamp, e.end]), [
    ["5", 160, 1000, "end-bit"],
    ["5", 160, 3000, "end-bit"],
  ]);
  assertEquals(got[1].volume, 12);
  assertEquals(got[0].ssrc, SSRC);
  assertEquals(rx.stats(), { packets: 12, events: 2, duplicates: 5, malformed: 0, ignored: 0, segments: 0 });
  assertEquals(rx.deadline, undefined, "nothing under way");
});

Deno.test("DtmfReceiver: lost end packets end an event at the next event, at the timeout, or at the stream end", () => {
  const { rx, got } = receiver();
  rx.receive(ev(1, 0, 1, 160), 0);
  rx.receive(ev(2, 0, 1, 960), 100);
  rx.receive(ev(10, 2000, 2, 160), 300); // "2" begins: "1" has ended
  assertEquals(got.map((e) => [e.digit, e.duration_ms, e.end]), [["1", 120, "next-event"]]);
  assertEquals(rx.deadline, 800);
  rx.expire(799);
  assertEquals(got.length, 1);
  rx.expire(800);
  assertEquals(got.map((e) => e.end), ["next-event", "timeout"]);
  rx.receive(ev(11, 2000, 2, 1280, true), 900); // its end packets, too late: duplicates
  assertEquals(got.length, 2);
  rx.receive(ev(20, 9000, 11, 320), 1000);
  rx.finish();
  assertEquals(got.map((e) => [e.digit, e.duration_ms, e.end]).at(-1), ["#", 40, "stream-end"]);
  // Only the first packet of an event (marker) and its end: reported once, duration from the end packet.
  const b = receiver();
  b.rx.receive(ev(1, 500, 0, 0, false, { marker: true }), 0); // sipp's first packet has duration 0
  b.rx.receive(ev(5, 500, 0, 1600, true), 200);
  assertEquals(b.got.map((e) => [e.digit, e.duration_ms]), [["0", 200]]);
});

Deno.test("DtmfReceiver: events of another SSRC, several events in one packet, a long event in segments, non-DTMF codes", () => {
  const { rx, got } = receiver();
  rx.receive(ev(1, 100, 4, 160, false, { ssrc: 1 }), 0);
  rx.receive(ev(1, 100, 4, 160, false, { ssrc: 2 }), 0); // same timestamp, other source: another event
  assertEquals(got.map((e) => [e.digit, e.ssrc]), [["4", 1]]);
  rx.finish();
  // One packet carrying the end of "7" (800 units from 5000) and the start of "8" at 5800.
  const two = new Uint8Array(8);
  encodeTelephoneEvent({ event: 7, end: true, volume: 10, duration: 800 }, two, 0);
  encodeTelephoneEvent({ event: 8, end: false, volume: 10, duration: 160 }, two, 4);
  rx.receive({ ssrc: 3, timestamp: 5000, payload: two }, 10);
  rx.receive(ev(2, 5800, 8, 640, true, { ssrc: 3 }), 20);
  assertEquals(got.slice(2).map((e) => [e.digit, e.timestamp, e.duration]), [["7", 5000, 800], ["8", 5800, 640]]);
  // A 10 s key press: segment 1 (65535 units from 0), then segment 2 from 65535, ended at 14465.
  rx.receive(ev(3, 0, 9, 40000, false, { ssrc: 4 }), 100);
  rx.receive(ev(4, 0, 9, 65535, false, { ssrc: 4 }), 200);
  rx.receive(ev(5, 65535, 9, 8000, false, { ssrc: 4 }), 300);
  rx.receive(ev(6, 65535, 9, 14465, true, { ssrc: 4 }), 400);
  rx.receive(ev(4, 0, 9, 65535, false, { ssrc: 4 }), 410); // late packet of segment 1
  assertEquals(got.slice(4).map((e) => [e.digit, e.duration_ms, e.timestamp]), [["9", 10000, 0]]);
  // Flash (16) is not DTMF: reported without a digit.
  rx.receive(ev(7, 90000, 16, 800, true, { ssrc: 4 }), 500);
  assertEquals(got.at(-1)!.digit, undefined);
  assertEquals(got.at(-1)!.code, 16);
  assertEquals(rx.receive({ ssrc: 4, timestamp: 1, payload: new Uint8Array(3) }, 600), false);
  assertEquals(rx.stats().malformed, 1);
});

Deno.test("DtmfReceiver: an event of ever more segments keeps only the last ones; their late packets are still absorbed", () => {
  const { rx, got } = receiver();
  // 10 000 segments of 0x8000 units (a key "held" for 11 hours, or a peer's flood), one packet each.
  for (let i = 0; i < 10_000; i++) rx.receive(ev(i, i * 0x8000, 5, 0x8000), i);
  assertEquals(rx.stats().segments, 32);
  rx.receive(ev(10_000, 9999 * 0x8000, 5, 0x8000, true), 10_000);
  assertEquals(got.map((e) => [e.digit, e.duration, e.timestamp]), [["5", 10_000 * 0x8000, 0]]);
  assertEquals(rx.stats().segments, 0);
  // A late packet of one of its last segments is a duplicate, not a new event.
  rx.receive(ev(9990, 9990 * 0x8000, 5, 0x8000), 10_001);
  assertEquals(got.length, 1);
  assertEquals(rx.stats().duplicates, 1);
});

Deno.test("DtmfReceiver: a packet packed with events is read for its last MAX_EVENTS_PER_PACKET only", () => {
  const { rx, got } = receiver();
  // 350 ended events of 20 ms, "1" and "2" in turn, in one 1400-byte packet: before, 350 reports (and log lines).
  const payload = new Uint8Array(350 * 4);
  for (let i = 0; i < 350; i++) {
    encodeTelephoneEvent({ event: 1 + (i & 1), end: true, volume: 10, duration: 160 }, payload, 4 * i);
  }
  rx.receive({ ssrc: SSRC, timestamp: 1000, payload }, 0);
  assertEquals(
    got.map((e) => [e.digit, e.timestamp]),
    Array.from({ length: MAX_EVENTS_PER_PACKET }, (_, k) => {
      const i = 350 - MAX_EVENTS_PER_PACKET + k;
      return [String(1 + (i & 1)), 1000 + 160 * i];
    }),
  );
  assertEquals(rx.stats().ignored, 350 - MAX_EVENTS_PER_PACKET);
});

Deno.test("rtp-depacketizer with dtmf_payload_type: dtmf events and log lines, frames tagged, a lost end timed out", async () => {
  const clock = new VirtualClock(0);
  const t = testContext({ clock });
  const lines: string[] = [];
  const log = new Logger({ level: "info", outputs: [{ write: (line) => void lines.push(line) }] });
  const ctx = { ...t.ctx, log };
  const st = await createStage<TransformStage>(rtpDepacketizer, { codec: "PCMU", dtmf_payload_type: 101 }, ctx);
  const dgram = (f: RtpFrame, arrival: number): PacketFrame => ({ kind: "packet", data: serializeRtp(f), arrival });
  const out: RtpFrame[] = [];
  const emit = (f: Frame) => out.push(f as RtpFrame) > 0;
  const a = audio(3);
  st.process(dgram(a[0], 0), emit);
  st.process(dgram(ev(1001, 8000, 5, 160, false, { marker: true }), 10), emit);
  st.process(dgram(a[1], 20), emit);
  st.process(dgram(ev(1003, 8000, 5, 1280, true), 30), emit);
  st.process(dgram(ev(1004, 8000, 5, 1280, true), 31), emit);
  st.process(dgram(a[2], 40), emit);
  assertEquals(out.map((f) => f.codec), ["PCMU", TELEPHONE_EVENT, "PCMU", TELEPHONE_EVENT, TELEPHONE_EVENT, "PCMU"]);
  assertEquals(t.events, [{
    type: "dtmf",
    detail: {
      digit: "5",
      code: 5,
      duration_ms: 160,
      duration: 1280,
      volume: 10,
      timestamp: 8000,
      ssrc: SSRC,
      end: "end-bit",
    },
  }]);
  assertEquals(lines.length, 1);
  assertMatch(lines[0], / INFO +DTMF 5 received \(160 ms\)$/);
  // "6" whose end packets are all lost: reported 500 ms after its last packet, by the stage's timer.
  clock.advance(100);
  st.process(dgram(ev(1010, 12000, 6, 160, false, { marker: true }), 100), emit);
  st.process(dgram(ev(1011, 12000, 6, 480), 140), emit);
  clock.advance(539);
  assertEquals(t.events.length, 1);
  clock.advance(2);
  assertEquals(t.events.length, 2);
  assertMatch(lines.at(-1)!, /DTMF 6 received \(60 ms\)$/);
  assertEquals((t.events[1].detail as { end: string }).end, "timeout");
  assertEquals((st.stats!().dtmf as { events: number }).events, 2);
  // The audio's own payload type cannot be the events'.
  await assertRejects(
    async () => await createStage(rtpDepacketizer, { codec: "PCMA", dtmf_payload_type: 8 }, ctx),
    Error,
    "dtmf_payload_type 8 is the audio's payload type",
  );
});

Deno.test("rtp-depacketizer: a flood of telephone events writes 20 log lines per 10 s and a count; every event is still published", async () => {
  const clock = new VirtualClock(0);
  const t = testContext({ clock });
  const lines: string[] = [];
  const log = new Logger({ level: "info", outputs: [{ write: (line) => void lines.push(line) }] });
  const st = await createStage<TransformStage>(rtpDepacketizer, { codec: "PCMU", dtmf_payload_type: 101 }, {
    ...t.ctx,
    log,
  });
  const emit = () => true;
  // 1 000 events, one packet each (start and end), 1 ms apart: the whole flood within one second.
  for (let k = 0; k < 1000; k++) {
    const f = ev(2000 + k, 8000 + 160 * k, k % 10, 160, true, { marker: true });
    st.process({ kind: "packet", data: serializeRtp(f), arrival: k }, emit);
    clock.advance(1);
  }
  assertEquals(t.events.filter((e) => e.type === "dtmf").length, 1000);
  assertEquals(lines.filter((l) => / DTMF \d received/.test(l)).length, 20);
  // The next window's first event brings the count of the lines not written.
  clock.advance(10_000);
  st.process(
    { kind: "packet", data: serializeRtp(ev(3000, 900_000, 1, 160, true, { marker: true })), arrival: 11_000 },
    emit,
  );
  assertEquals(t.events.filter((e) => e.type === "dtmf").length, 1001);
  assertMatch(lines.find((l) => l.includes("WARN"))!, /980 more telephone events received were not logged/);
  assertMatch(lines.at(-1)!, /DTMF 1 received/);
});

// ---------------------------------------------------------------------------------------------------------------
// The audio timeline around event packets

/** Audio with events interleaved as our sender makes them, as datagrams through a depacketizer (dtmf 101). */
async function receivedStream(frames: RtpFrame[], dtmf: string) {
  const { out } = await throughSender({ payload_type: 101, dtmf, dtmf_at: 0.1, gap: 40 }, frames);
  const t = testContext();
  const dp = await createStage<TransformStage>(rtpDepacketizer, { codec: "PCMU", dtmf_payload_type: 101 }, t.ctx);
  const rx = runTransform(dp, out.map((f, i) => ({ kind: "packet" as const, data: serializeRtp(f), arrival: i })));
  return { rx: rx as RtpFrame[], events: t.events, sent: out };
}

Deno.test("record buffer: the recording with DTMF in the stream is the recording without, sample for sample", async () => {
  const frames = audio(100);
  const { rx, events, sent } = await receivedStream(frames, "1234#");
  assertEquals(events.map((e) => (e.detail as { digit: string }).digit).join(""), "1234#");
  assert(sent.length > 120, "events interleaved");
  const record = async (packets: RtpFrame[]) => {
    const t = testContext({ realtimeSink: false });
    const jb = await createStage<TransformStage>(jitterBuffer, { mode: "record" }, t.ctx);
    jb.negotiate!({ kind: "rtp", codec: "PCMU", clockRate: 8000 });
    await jb.start!(t.ctx);
    const got = runTransform(jb, packets) as EncodedFrame[];
    return { got, stats: jb.stats!() as Record<string, number> };
  };
  const plain = await record((await receivedStream(frames, "")).rx);
  const withDtmf = await record(rx);
  assertEquals(
    withDtmf.got.map((f) => [f.pts, f.type, [...f.payload]]),
    plain.got.map((f) => [f.pts, f.type, [...f.payload]]),
  );
  assertEquals(withDtmf.got.reduce((n, f) => n + f.payload.length, 0), 16000);
  assertEquals([withDtmf.stats.lost, withDtmf.stats.concealed_samples, withDtmf.stats.events], [
    0,
    0,
    sent.length - 100,
  ]);
});

Deno.test("record buffer: audio muted during an event leaves the sender's silence, not a loss", () => {
  // Packets 10..19 (200 ms) replaced by 8 event packets taking their place in the sequence, as a sender that
  // mutes its audio would send them.
  const frames = audio(30);
  const stream: RtpFrame[] = [...frames.slice(0, 10)];
  for (let i = 0; i < 8; i++) {
    stream.push({ ...ev(1010 + i, 8000 + 1600, 3, 160 * (i + 1), i >= 5), codec: TELEPHONE_EVENT });
  }
  stream.push(...frames.slice(10 + 10).map((f, i) => ({ ...f, sequence: 1018 + i })));
  const rb = new RecordBuffer({ reorderMs: 100 });
  const out: EncodedFrame[] = [];
  for (const f of stream) rb.insert(f, (x) => out.push(x));
  rb.flush((x) => out.push(x));
  const s = rb.stats();
  assertEquals([s.lost, s.concealed_samples, s.silence_samples, s.events], [0, 0, 1600, 8]);
  assert(out.every((f) => f.type === "normal"));
  // Without knowing the event packets, the same gap would be concealed as 8 lost packets.
  const blind = new RecordBuffer({ reorderMs: 100 });
  for (const f of stream.filter((f) => f.codec !== TELEPHONE_EVENT)) blind.insert(f, () => {});
  blind.flush(() => {});
  assertEquals(blind.stats().lost, 8);
});

Deno.test("record buffer: what it remembers of event packets stays bounded, however many come", () => {
  const rb = new RecordBuffer({ reorderMs: 100 });
  const out: EncodedFrame[] = [];
  const put = (f: RtpFrame) => rb.insert(f, (x) => out.push(x));
  const frames = audio(40);
  for (const f of frames.slice(0, 10)) put(f);
  // A key held 6 s with the audio muted: 300 event packets in sequence are one run of sequence numbers.
  for (let i = 0; i < 300; i++) {
    put({ ...ev(1010 + i, 8000 + 1600, 5, 160 * (i + 1), false), codec: TELEPHONE_EVENT });
  }
  assertEquals(rb.stats().event_runs, 1);
  // The audio resumes after them: the 6 s were the sender's silence, not 300 lost packets.
  for (const [i, f] of frames.slice(10, 20).entries()) {
    put({ ...f, sequence: 1310 + i, timestamp: f.timestamp + 300 * 160 });
  }
  let s = rb.stats();
  assertEquals([s.lost, s.concealed_samples, s.silence_samples], [0, 0, 300 * 160]);
  // A flood of event packets a sequence number apart (each its own run): the oldest runs are forgotten.
  for (let i = 0; i < 5000; i++) {
    put({ ...ev(1320 + 2 * i, 8000 + 20 * 160 + 300 * 160, 7, 160), codec: TELEPHONE_EVENT });
  }
  s = rb.stats();
  assertEquals(s.event_runs, MAX_EVENT_RUNS);
  // The audio that follows still plays.
  for (const [i, f] of frames.slice(20).entries()) {
    put({ ...f, sequence: (1320 + 10_000 + i) & 0xffff, timestamp: f.timestamp + 300 * 160 });
  }
  rb.flush((x) => out.push(x));
  assertEquals(out.filter((f) => f.type === "normal").reduce((n, f) => n + f.payload.length, 0), 40 * 160);
});

Deno.test("jitter buffer (playout) and RTCP: event packets are not losses and do not move the jitter", async () => {
  const frames = audio(100);
  const { rx } = await receivedStream(frames, "159");
  // Arrivals on time for audio (20 ms apart); event packets arrive with their audio packet.
  let t = 0;
  const timed = rx.map((f) => {
    if (f.codec !== TELEPHONE_EVENT) t = (f.timestamp - 8000) / 8;
    return { ...f, arrival: t };
  });
  const jb = new JitterBuffer({ min_delay: 20, max_delay: 500, initial_delay: 40, max_conceal: 100 }, {
    codecs,
  });
  const played: EncodedFrame[] = [];
  for (const f of timed) {
    while (jb.nextTickTime() !== undefined && jb.nextTickTime()! <= f.arrival!) played.push(jb.tick());
    jb.insert(f, f.arrival!);
  }
  played.push(...jb.drain());
  const s = jb.stats();
  assertEquals([s.lost, s.concealed, s.invalid, s.received, s.events], [0, 0, 0, 100, rx.length - 100]);
  assertEquals(played.filter((f) => f.type === "normal").reduce((n, f) => n + f.payload.length, 0), 16000);
  // RTCP reception statistics: no loss, jitter as without the events (0: perfectly timed).
  const withEv = new ReceptionStats(SSRC, 8000), without = new ReceptionStats(SSRC, 8000);
  for (const f of timed) {
    withEv.onPacket(f.sequence, f.timestamp, f.arrival!, f.codec !== TELEPHONE_EVENT);
  }
  for (const f of timed.filter((f) => f.codec !== TELEPHONE_EVENT)) {
    without.onPacket(f.sequence, f.timestamp, f.arrival!);
  }
  assertEquals([withEv.lost, withEv.jitter], [0, 0]);
  assert(without.lost > 0, "without them, their sequence numbers would count as lost");
});

// ---------------------------------------------------------------------------------------------------------------
// SDP

Deno.test("SDP: telephone-event offered on a dynamic type, accepted with the offer's type, read on both sides", () => {
  const offer = createOffer({
    registry: codecs,
    address: "10.0.0.1",
    port: 40000,
    codecs: ["PCMU", "PCMA"],
    telephoneEvent: true,
  });
  assertMatch(offer, /m=audio 40000 RTP\/AVP 0 8 96\r\n/);
  assertMatch(offer, /a=rtpmap:96 telephone-event\/8000\r\n/);
  assertMatch(offer, /a=fmtp:96 0-15\r\n/);
  const answer = createAnswer(offer, { registry: codecs, address: "10.0.0.2", port: 41000, telephoneEvent: true });
  assertMatch(answer, /m=audio 41000 RTP\/AVP 0 96\r\n/);
  assertMatch(answer, /a=rtpmap:96 telephone-event\/8000\r\n/);
  assertMatch(answer, /a=fmtp:96 0-15\r\n/);
  assertEquals(agreedMedia(answer, offer, { registry: codecs }).dtmf, { payloadType: 96, clockRate: 8000 });
  assertEquals(agreedMedia(offer, answer, { registry: codecs }).dtmf, { payloadType: 96, clockRate: 8000 });
  // Without registry (call.media() default) telephone-event is never taken for the audio codec.
  assertEquals(agreedMedia(answer, offer).codec, "PCMU");
  // A foreign offer with type 101 (and telephone-event listed first): the answer keeps 101.
  const foreign = [
    "v=0",
    "o=- 1 1 IN IP4 10.0.0.9",
    "s=-",
    "c=IN IP4 10.0.0.9",
    "t=0 0",
    "m=audio 5000 RTP/AVP 101 8",
    "a=rtpmap:101 telephone-event/8000",
    "a=fmtp:101 0-16",
    "a=rtpmap:8 PCMA/8000",
    "",
  ].join("\r\n");
  const a2 = createAnswer(foreign, { registry: codecs, address: "10.0.0.2", port: 41000, telephoneEvent: true });
  assertMatch(a2, /m=audio 41000 RTP\/AVP 8 101\r\n/);
  assertEquals(agreedMedia(foreign, a2, { registry: codecs }).dtmf?.payloadType, 101);
  assertEquals(negotiated(foreign, { registry: codecs }).codec, "PCMA");
  // Turned off: neither offered nor accepted, and not negotiated even when the peer offers it.
  const plain = createOffer({ registry: codecs, address: "10.0.0.1", port: 40000 });
  assert(!plain.includes("telephone-event"), plain);
  const a3 = createAnswer(foreign, { registry: codecs, address: "10.0.0.2", port: 41000 });
  assert(!a3.includes("telephone-event"), a3);
  assertEquals(agreedMedia(foreign, a3, { registry: codecs }).dtmf, undefined);
  assertEquals("dtmf" in agreedMedia(a3, foreign, { registry: codecs }), false);
  // A telephone-event of another clock rate than the codec's is not DTMF for it.
  const wide = foreign.replace("telephone-event/8000", "telephone-event/16000");
  const a4 = createAnswer(wide, { registry: codecs, address: "10.0.0.2", port: 41000, telephoneEvent: true });
  assert(!a4.includes("telephone-event"), a4);
});

Deno.test("a call's two sessions on a VirtualClock: sendDtmf on the sender's, dtmf events on the receiver's", async () => {
  const clock = new VirtualClock(0);
  const net = new MemoryNetwork({ clock, latencyMs: 5 });
  const alice = new Session({ id: "alice", clock, net });
  const bob = new Session({ id: "bob", clock, net });
  const heard: { type: string; pipeline?: string; detail?: unknown }[] = [];
  bob.on((e) => {
    if (e.type === "dtmf") heard.push(e);
  });
  const receive = await buildPipeline("receive", [
    { use: "udp-source", bind: "10.0.0.2", port: 4000, peer: "10.0.0.1:5000", timeout: 1 },
    { use: "rtp-depacketizer", codec: "PCMU", dtmf_payload_type: 101 },
    { use: "jitter-buffer", mode: "playout" },
    { use: "g711-decoder" },
    { use: "null-sink" },
  ], { registry, session: bob });
  const send = await buildPipeline("send", [
    { use: "tone-source", frequency: 400, duration: 2 },
    { use: "g711-encoder", codec: "PCMU" },
    { use: "rtp-packetizer" },
    { use: "dtmf-sender", payload_type: 101 },
    { use: "udp-sink", to: "10.0.0.2:4000", bind: "10.0.0.1", local_port: 5000 },
  ], { registry, session: alice });
  const received = receive.start();
  const sent = send.start();
  await clock.advanceAsync(300, 5);
  const result = sendDtmf(alice, "*0#", { duration: 120, gap: 80 });
  await clock.advanceAsync(1000, 5);
  // 120 ms digits: packets at 20, 60 and 100 ms, the end at 120 ms and its two repeats.
  assertEquals(await result, { digits: "*0#", packets: 18 });
  await clock.advanceAsync(2000, 5);
  assertEquals((await sent).reason, "eos");
  assertEquals((await received).reason, "eos");
  assertEquals(heard.map((e) => [e.pipeline, (e.detail as { digit: string }).digit]), [
    ["receive", "*"],
    ["receive", "0"],
    ["receive", "#"],
  ]);
  assert(heard.every((e) => (e.detail as { duration_ms: number }).duration_ms === 120));
  const jb = receive.stats()[2].extra as { lost: number; events: number };
  assertEquals([jb.lost, jb.events], [0, 18]);
  await alice.close();
  await bob.close();
});
