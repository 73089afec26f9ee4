import assert from "node:assert/strict";
import { packets } from "rtp.js";
import { VirtualClock } from "../core/clock.ts";
import type { RtpFrame } from "../core/frame.ts";
import { Logger, MemoryOutput } from "../core/log.ts";
import type { TransformStage } from "../core/stage.ts";
import { createStage, testContext } from "../core/testing.ts";
import { seededRandom } from "../core/random.ts";
import rtcp, { describeReport } from "../plugins/rtp/rtcp.ts";
import {
  checkRtcp,
  MAX_RTCP_SOURCES,
  ntpMiddle,
  ReceptionStats,
  rtcpInterval,
  RtcpSession,
  rttMs,
  toNtp,
} from "../plugins/rtp/rtcp_session.ts";
import type { HostPort } from "../core/net/address.ts";
import { MemoryNetwork, type MemorySocket } from "../core/net/memory.ts";
import { PortAllocator } from "../core/net/ports.ts";
import { udpNetwork } from "../core/net/udp.ts";
import { Session } from "../core/session.ts";
import { repoPath, settleUntil } from "./util.ts";

const { CompoundPacket, SenderReportPacket, ReceiverReportPacket, ReceptionReport, SdesPacket, ByePacket } = packets;

/** An in-memory network on a VirtualClock that records what is sent: datagrams arrive `delay` ms later. */
class FakeNet {
  readonly ports = new Map<number, MemorySocket>();
  sent: { from: number; to: HostPort; data: Uint8Array }[] = [];
  readonly net: MemoryNetwork;
  constructor(readonly clock: VirtualClock, delay: number) {
    this.net = new MemoryNetwork({
      clock,
      latencyMs: delay,
      impair: (data, from, to) => {
        this.sent.push({ from: from.port, to, data });
        return { delayMs: 0 };
      },
    });
  }
  transport(port: number): MemorySocket {
    const t = this.net.bind("127.0.0.1", port);
    this.ports.set(port, t);
    return t;
  }
}

const parse = (data: Uint8Array) => new CompoundPacket(new DataView(data.buffer, data.byteOffset, data.byteLength));

const rtpFrame = (seq: number, ts: number, ssrc: number, arrival?: number): RtpFrame => ({
  kind: "rtp",
  payloadType: 0,
  sequence: seq & 0xffff,
  timestamp: ts >>> 0,
  ssrc,
  marker: false,
  payload: new Uint8Array(160),
  codec: "PCMU",
  clockRate: 8000,
  arrival,
});

Deno.test("A.8 interarrival jitter against a hand-computed example", () => {
  const s = new ReceptionStats(1, 8000);
  // 20 ms packets (160 samples); arrivals jitter by ±5 ms. The first packet only starts probation
  // (A.1, MIN_SEQUENTIAL = 2), the second starts the jitter estimate.
  const arrivals = [0, 20, 45, 60, 80];
  arrivals.forEach((a, i) => s.onPacket(i, i * 160, a));
  // D = |(Rj − Ri) − (Sj − Si)| in samples: 45−20 → 200−160 = 40; 60−45 → 120−160 → 40; 80−60 → 0.
  // J += (D − J)/16: 0 → 2.5 → 4.84375 → 4.541015625
  assert.equal(s.jitter, 4.541015625);
  assert.equal(s.jitterMs, 4.541015625 / 8);
  assert.equal(s.report().jitter, 4);
});

Deno.test("A.8 jitter survives timestamp wrap-around; constant transit gives zero", () => {
  const s = new ReceptionStats(1, 8000);
  for (let i = 0; i < 50; i++) s.onPacket(i, 4294967295 - 800 + i * 160, 1000 + i * 20);
  assert.equal(s.jitter, 0);
});

Deno.test("A.1/A.3: expected, cumulative and fraction lost, extended highest sequence number", () => {
  const s = new ReceptionStats(1, 8000);
  for (let seq = 1000; seq < 1100; seq++) if (seq < 1020 || seq >= 1030) s.onPacket(seq, seq * 160, seq * 20);
  // Probation swallows 1000; counting starts at 1001: expected 99, received 89.
  assert.equal(s.expected, 99);
  assert.equal(s.received, 89);
  const r1 = s.report();
  assert.equal(r1.totalLost, 10);
  assert.equal(r1.fractionLost, Math.floor((10 * 256) / 99)); // 25
  assert.equal(r1.highestSeq, 1099);
  for (let seq = 1100; seq < 1200; seq++) s.onPacket(seq, seq * 160, seq * 20);
  const r2 = s.report();
  assert.equal(r2.fractionLost, 0, "nothing lost in the second interval");
  assert.equal(r2.totalLost, 10);
  // Sequence wrap: the extended highest sequence number counts cycles.
  const w = new ReceptionStats(2, 8000);
  for (let i = 0; i < 20; i++) w.onPacket((65530 + i) & 0xffff, i * 160, i * 20);
  const r3 = w.report();
  assert.equal(r3.highestSeq, 65536 + 13);
  assert.equal(r3.totalLost, 0);
  // A restart (a jump confirmed by the next packet) re-initializes the counters.
  w.onPacket(30000, 0, 500);
  w.onPacket(30001, 160, 520);
  assert.equal(w.received, 1);
  assert.equal(w.maxSeq, 30001);
});

Deno.test("A.1/A.3: a source on probation has lost nothing (its first packet is expected, not yet received)", () => {
  const s = new ReceptionStats(1, 8000);
  s.onPacket(500, 0, 0);
  assert.equal(s.probation, 1);
  assert.equal(s.lost, 0);
  // Past probation, a gap counts; the late packet, once it comes, takes it back.
  s.onPacket(501, 160, 20);
  s.onPacket(503, 480, 60);
  assert.equal(s.lost, 1);
  s.onPacket(502, 320, 61);
  assert.equal(s.lost, 0);
});

Deno.test("interval: RFC 3550 6.3.1 randomization bounds, initial halving, bandwidth term", () => {
  const p = {
    members: 2,
    senders: 2,
    rtcpBandwidth: 500,
    weSent: true,
    avgRtcpSize: 100,
    initial: false,
    minInterval: 5,
  };
  assert.equal(rtcpInterval(p, () => 0), 2.5);
  assert.equal(rtcpInterval(p, () => 0.5), 5);
  assert.ok(Math.abs(rtcpInterval(p, () => 0.999999) - 7.5) < 1e-4);
  assert.equal(rtcpInterval({ ...p, initial: true }, () => 0.5), 2.5);
  assert.equal(rtcpInterval({ ...p, minInterval: 0.5 }, () => 0.5), 0.5, "reduced minimum");
  // Many members on little bandwidth: n × C dominates. Receivers share 75 %: 100 × (60 − 5) / 375.
  assert.ok(Math.abs(rtcpInterval({ ...p, members: 60, senders: 5, weSent: false }, () => 0.5) - 14.6667) < 1e-3);
  // Senders share 25 %: 100 × 5 / 125 = 4 → the 5 s minimum wins.
  assert.equal(rtcpInterval({ ...p, members: 60, senders: 5 }, () => 0.5), 5);
  const rnd = seededRandom(5);
  let lo = Infinity, hi = -Infinity;
  for (let i = 0; i < 10000; i++) {
    const t = rtcpInterval(p, rnd);
    lo = Math.min(lo, t);
    hi = Math.max(hi, t);
  }
  assert.ok(lo >= 2.5 && lo < 2.6 && hi < 7.5 && hi > 7.4, `${lo}..${hi}`);
});

Deno.test("NTP helpers and RTT arithmetic", () => {
  assert.deepEqual(toNtp(0), { seconds: 2208988800, fraction: 0 });
  assert.deepEqual(toNtp(1500), { seconds: 2208988801, fraction: 2147483648 });
  assert.equal(ntpMiddle({ seconds: 0x12345678, fraction: 0x9abcdef0 }), 0x56789abc);
  assert.equal(rttMs(0x00018000, 0x00010000, 0x4000), 250);
  assert.equal(rttMs(0x00018000, 0, 0x4000), undefined, "no SR seen by the peer yet");
  assert.equal(rttMs(5, 0x00010000, 0), undefined, "negative: ignored");
  assert.equal(checkRtcp(new Uint8Array([0x80, 201, 0, 1, 0, 0, 0, 1])), undefined);
  assert.equal(checkRtcp(new Uint8Array([0x80, 202, 0, 1, 0, 0, 0, 1])), "first packet not SR or RR");
  assert.equal(checkRtcp(new Uint8Array([0x40, 201, 0, 1, 0, 0, 0, 1])), "version not 2");
  assert.equal(checkRtcp(new Uint8Array([0x80, 201, 0, 2, 0, 0, 0, 1])), "lengths do not add up");
  assert.equal(checkRtcp(new Uint8Array([0x80, 201, 0, 1, 0, 0, 0])), "bad length");
});

/** Two sessions (A sends RTP to B) on a fake network with a one-way delay. */
function pair(delay = 15, interval = 1) {
  const clock = new VirtualClock(0);
  const net = new FakeNet(clock, delay);
  const wall = 1_700_000_000_000;
  const a = new RtcpSession({
    clock,
    socket: net.transport(5001),
    remote: { hostname: "127.0.0.1", port: 6001 },
    cname: "alice@example",
    minInterval: interval,
    bandwidthKbps: 80,
    random: seededRandom(1),
    wallclock: () => wall,
  });
  const b = new RtcpSession({
    clock,
    socket: net.transport(6001),
    cname: "bob@example",
    minInterval: interval,
    bandwidthKbps: 80,
    random: seededRandom(2),
    wallclock: () => wall + 123456, // the peer's wallclock is off: RTT must not care
    ssrc: 0xb0b,
  });
  const aEvents: string[] = [], bEvents: string[] = [];
  a.attach({ direction: "send", onReport: (r) => aEvents.push(describeReport(r)) });
  b.attach({ direction: "receive", onReport: (r) => bEvents.push(describeReport(r)) });
  /** A sends RTP every 20 ms for `ms`, B receives it `delay` ms later, except `lose(i)`. */
  let i = 0;
  const run = (ms: number, lose: (i: number) => boolean = () => false, jitter: (i: number) => number = () => 0) => {
    const end = clock.now() + ms;
    while (clock.now() < end) {
      const f = rtpFrame(1000 + i, 5000 + i * 160, 0xa11ce);
      a.onSent(f);
      if (!lose(i)) {
        const at = clock.now() + delay + jitter(i);
        clock.after(delay + jitter(i), () => b.onReceived({ ...f, arrival: at }));
      }
      i++;
      clock.advance(20);
    }
  };
  return { clock, net, a, b, run, aEvents, bEvents, wall };
}

Deno.test("session: SR + SDES built with rtp.js fields, RTP↔NTP mapping", () => {
  const { clock, a, run, wall } = pair();
  a.start();
  run(100); // 5 packets: ts 5000..5640, the last sent at t = 80
  clock.advance(20); // now t = 120
  const { data, info } = a.buildReport();
  assert.equal(checkRtcp(data), undefined);
  const [sr, sdes] = parse(data).getPackets();
  assert.ok(sr instanceof SenderReportPacket);
  assert.equal(sr.getSsrc(), 0xa11ce);
  assert.equal(sr.getPacketCount(), 5);
  assert.equal(sr.getOctetCount(), 800);
  const ntp = toNtp(wall + 120);
  assert.equal(sr.getNtpSeconds(), ntp.seconds);
  assert.equal(sr.getNtpFraction(), ntp.fraction);
  // Last packet ts 5640 at t = 80; 40 ms later the RTP clock reads 5640 + 320.
  assert.equal(sr.getRtpTimestamp(), 5960);
  assert.equal(sr.getReports().length, 0, "A received nothing: no report block");
  assert.ok(sdes instanceof SdesPacket);
  assert.deepEqual(sdes.getChunks()[0].getItems(), [{ type: 1, text: "alice@example" }]);
  assert.equal(sdes.getChunks()[0].getSsrc(), 0xa11ce);
  assert.deepEqual(info, { direction: "sent", type: "SR", ssrc: 0xa11ce, packets: 5, octets: 800 });
});

Deno.test("session: reports exchanged on the interval; RR blocks; RTT from LSR/DLSR; loss and jitter", async () => {
  const { clock, net, a, b, run, aEvents, bEvents } = pair(15, 1);
  a.start();
  b.start();
  // 10 % loss (every 10th packet), alternating ±4 ms of jitter.
  run(10000, (i) => i % 10 === 5, (i) => (i % 2 ? 4 : 0));
  // First reports after half the minimum (0.5 s × [0.5, 1.5)), then every 1 s × [0.5, 1.5).
  const aSent = net.sent.filter((s) => s.from === 5001);
  assert.ok(aSent.length >= 7 && aSent.length <= 20, `A sent ${aSent.length}`);
  const bSent = net.sent.filter((s) => s.from === 6001);
  assert.ok(bSent.length >= 7, `B sent ${bSent.length}`);
  // B learned A's address from A's first report and answers there.
  assert.deepEqual(bSent[0].to, { hostname: "127.0.0.1", port: 5001 });
  // B's reports are RRs (it sends no RTP) with one block about A's stream.
  const rr = parse(bSent.at(-1)!.data).getPackets()[0];
  assert.ok(rr instanceof ReceiverReportPacket);
  assert.equal(rr.getSsrc(), 0xb0b);
  const block = rr.getReports()[0];
  assert.equal(block.getSsrc(), 0xa11ce);
  assert.ok(block.getLastSRTimestamp() !== 0);
  assert.ok(Math.abs(block.getFractionLost() / 256 - 0.1) < 0.03, `fraction ${block.getFractionLost()}`);
  // Jitter: D is 32 samples (4 ms) between neighbours, 0 across each loss (both neighbours of a
  // lost packet have the same offset): J settles between 24 and 32 samples (3–4 ms).
  assert.ok(block.getJitter() >= 24 && block.getJitter() <= 32, `jitter ${block.getJitter()}`);

  const sa = a.stats() as Record<string, number>;
  assert.ok(Math.abs(sa.rtt_ms - 30) < 0.1, `rtt ${sa.rtt_ms}`);
  assert.ok(Math.abs(sa.remote_fraction_lost - 0.1) < 0.03);
  assert.ok(sa.remote_jitter_ms >= 3 && sa.remote_jitter_ms <= 4);
  assert.equal(sa.packets_sent, 500);
  assert.equal(sa.octets_sent, 80000);
  const sb = b.stats() as Record<string, number | string>;
  assert.equal(sb.packets_received, 450);
  assert.equal(sb.lost, 50, "A.3 cumulative: 50 lost of 500 (first counted after probation)");
  assert.equal(sb.remote_cname, "alice@example");
  assert.ok((sb.jitter_ms as number) >= 3 && (sb.jitter_ms as number) <= 4);
  assert.equal(sb.remote_packets_sent !== undefined, true);
  // One log line per report, on each side.
  assert.match(aEvents.find((l) => l.startsWith("SR sent"))!, /^SR sent: packets=\d+, octets=\d+$/);
  assert.match(
    aEvents.findLast((l) => l.startsWith("RR received"))!,
    /^RR received: loss=\d+\.\d%, jitter=[34]\.\d ms, rtt=30\.0 ms$/,
  );
  assert.match(
    bEvents.find((l) => l.startsWith("SR received"))!,
    /^SR received: packets=\d+, octets=\d+$/,
  );
  // Close: BYE (RR + SDES + BYE) reaches B.
  await a.close("done");
  clock.advance(100);
  const last = parse(net.sent.at(-1)!.data).getPackets();
  assert.deepEqual(last.map((p) => p.constructor.name), ["ReceiverReportPacket", "SdesPacket", "ByePacket"]);
  assert.deepEqual((last[2] as InstanceType<typeof ByePacket>).getSsrcs(), [0xa11ce]);
  assert.equal(bEvents.at(-1), 'BYE received: ssrc=659918, reason="done"');
  assert.equal(b.stats().bye_received, 1);
  await b.close();
  clock.advance(100); // B's BYE in flight on the fake network
  assert.equal(clock.pending, 0, "report timers stopped");
});

Deno.test("session: no BYE from a session that never sent RTP or RTCP (RFC 3550, 6.3.7); BYE once it sent either", async () => {
  const names = (d: Uint8Array) => parse(d).getPackets().map((p) => p.constructor.name);
  // Closed before its first report, having sent no RTP: nothing at all goes out.
  {
    const { clock, net, a } = pair(15, 5);
    a.start();
    clock.advance(1000); // the first report is due no sooner than 1.25 s (half of 5 s, × 0.5)
    assert.equal(a.stats().reports_sent, 0);
    await a.close("done");
    clock.advance(100);
    assert.deepEqual(net.sent, [], "no datagram: a member the peer never heard of does not leave");
  }
  // One RTP packet sent, no report yet: BYE.
  {
    const { clock, net, a, run } = pair(15, 5);
    a.start();
    run(20);
    await a.close("done");
    clock.advance(100);
    assert.equal(net.sent.length, 1);
    assert.deepEqual(names(net.sent[0].data), ["ReceiverReportPacket", "SdesPacket", "ByePacket"]);
  }
  // No RTP, but a receiver report went out: BYE after it.
  {
    const { clock, net, a } = pair(15, 5);
    a.start();
    clock.advance(10_000);
    assert.ok((a.stats().reports_sent as number) >= 1);
    const reports = net.sent.length;
    await a.close("done");
    clock.advance(100);
    assert.equal(net.sent.length, reports + 1);
    assert.deepEqual(names(net.sent.at(-1)!.data), ["ReceiverReportPacket", "SdesPacket", "ByePacket"]);
  }
});

Deno.test("session: first report after half the minimum, then 0.5–1.5 × the minimum (seeded)", () => {
  const { clock, net, a } = pair(15, 5);
  a.start();
  const times: number[] = [];
  for (let t = 0; t < 120000; t += 50) {
    const before = net.sent.length;
    clock.advance(50);
    if (net.sent.length > before) times.push(clock.now());
  }
  // The clock runs in 50 ms steps; timers fire at their exact virtual times within a step.
  const r = seededRandom(1);
  const expect = 2.5 * (r() + 0.5) * 1000;
  assert.ok(Math.abs(times[0] - Math.ceil(expect / 50) * 50) <= 50, `${times[0]} vs ${expect}`);
  for (let i = 1; i < times.length; i++) {
    const gap = times[i] - times[i - 1];
    assert.ok(gap >= 2500 - 50 && gap <= 7500 + 50, `gap ${gap}`);
  }
  assert.ok(times.length >= 16 && times.length <= 48);
});

Deno.test("session: RTCP from anyone but the peer, and invalid RTCP, are dropped", () => {
  const { clock, net, a, b, run } = pair();
  a.start();
  b.start();
  run(3000); // A's RTP reaches B, so A's reports latch B's RTCP to A
  const n = (b.stats() as Record<string, number>).reports_received;
  assert.ok(n >= 1);
  // B knows A now: a valid RR from another port is ignored.
  const intruder = net.transport(7001);
  const rr = new ReceiverReportPacket();
  rr.setSsrc(99);
  const v = rr.getView();
  intruder.send(new Uint8Array(v.buffer, v.byteOffset, v.byteLength), { hostname: "127.0.0.1", port: 6001 });
  // Garbage from the right peer is ignored too.
  net.ports.get(5001)!.send(new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]), { hostname: "127.0.0.1", port: 6001 });
  clock.advance(100);
  const s = b.stats() as Record<string, number>;
  assert.equal(s.rtcp_dropped, 2);
  assert.equal(s.reports_received, n);
});

Deno.test("session without a remote: a stranger's RTCP sent first does not become the peer; the RTP peer's reports do", () => {
  const clock = new VirtualClock(0);
  const net = new FakeNet(clock, 1);
  // The receiving side of rtp-receive.json: no remote; it reports to whoever it latches to.
  const s = new RtcpSession({
    clock,
    socket: net.transport(5005),
    cname: "me",
    minInterval: 1,
    bandwidthKbps: 80,
    random: seededRandom(4),
  });
  const got: string[] = [];
  s.attach({ direction: "receive", onReport: (r) => r.direction === "received" && got.push(`${r.type} ${r.ssrc}`) });
  s.start();
  const report = (ssrc: number, sr: boolean) => {
    const p = sr ? new SenderReportPacket() : new ReceiverReportPacket();
    p.setSsrc(ssrc);
    const c = new CompoundPacket();
    c.addPacket(p);
    const v = c.getView();
    return new Uint8Array(v.buffer, v.byteOffset, v.byteLength).slice();
  };
  const stranger = net.transport(7001);
  const peer = net.transport(5003); // the RTP peer's RTCP port (its RTP: 5002, SSRC 0xfeed)
  // The stranger reports first, before any RTP, and again once the peer's RTP flows (with its own SSRC).
  stranger.send(report(0x5742, true), { hostname: "127.0.0.1", port: 5005 });
  clock.advance(10);
  for (let i = 0; i < 50; i++) {
    s.onReceived(rtpFrame(100 + i, 160 * i, 0xfeed, clock.now()));
    clock.advance(20);
  }
  stranger.send(report(0x5742, true), { hostname: "127.0.0.1", port: 5005 });
  clock.advance(10);
  assert.equal(s.remote, undefined, "not latched to the stranger");
  assert.deepEqual(got, []);
  // The peer's SR (its RTP stream's SSRC) latches; from then on the stranger is dropped even with the peer's SSRC.
  peer.send(report(0xfeed, true), { hostname: "127.0.0.1", port: 5005 });
  clock.advance(10);
  assert.deepEqual(s.remote, { hostname: "127.0.0.1", port: 5003 });
  stranger.send(report(0xfeed, true), { hostname: "127.0.0.1", port: 5005 });
  clock.advance(3000);
  assert.deepEqual(got, [`SR ${0xfeed}`]);
  const st = s.stats() as Record<string, number>;
  assert.deepEqual([st.reports_received, st.rtcp_dropped], [1, 3]);
  // Our reports go to the peer only.
  const to = net.sent.filter((p) => p.from === 5005).map((p) => p.to.port);
  assert.ok(to.length >= 1 && to.every((p) => p === 5003), `reports sent to ${to}`);
});

Deno.test("session without a remote: the peer's report that comes before its first RTP packet (as ffmpeg's first SR) is taken when that RTP arrives; strangers' are not", () => {
  const clock = new VirtualClock(0);
  const net = new FakeNet(clock, 1);
  const s = new RtcpSession({ clock, socket: net.transport(5005), cname: "me", minInterval: 5, bandwidthKbps: 80 });
  const got: string[] = [];
  s.attach({ direction: "receive", onReport: (r) => r.direction === "received" && got.push(`${r.type} ${r.ssrc}`) });
  const sr = (ssrc: number) => {
    const p = new SenderReportPacket();
    p.setSsrc(ssrc);
    const v = p.getView();
    return new Uint8Array(v.buffer, v.byteOffset, v.byteLength).slice();
  };
  const to = { hostname: "127.0.0.1", port: 5005 };
  net.transport(7001).send(sr(0x5742), to);
  net.transport(5003).send(sr(0xfeed), to);
  net.transport(7002).send(sr(0x1111), to);
  clock.advance(10);
  assert.equal(s.remote, undefined);
  assert.deepEqual(got, []);
  s.onReceived(rtpFrame(1, 160, 0x1234, clock.now())); // RTP of another SSRC: nothing
  assert.equal(s.remote, undefined);
  s.onReceived(rtpFrame(1, 160, 0xfeed, clock.now()));
  assert.deepEqual(s.remote, { hostname: "127.0.0.1", port: 5003 });
  assert.deepEqual(got, [`SR ${0xfeed}`]);
  const st = s.stats() as Record<string, number>;
  assert.deepEqual([st.reports_received, st.rtcp_dropped], [1, 2]);
  // At most MAX_HELD_RTCP are held: a flood of SSRCs does not make the session grow.
  const t = new RtcpSession({ clock, socket: net.transport(5007), cname: "me", minInterval: 5, bandwidthKbps: 80 });
  for (let i = 0; i < 100; i++) net.transport(8000 + i).send(sr(0x9000 + i), { hostname: "127.0.0.1", port: 5007 });
  clock.advance(10);
  t.onReceived(rtpFrame(1, 160, 0x9000 + 99, clock.now())); // the last one is still held
  assert.deepEqual(t.remote, { hostname: "127.0.0.1", port: 8099 });
  assert.equal((t.stats() as Record<string, number>).rtcp_dropped, 99);
});

Deno.test("session without a remote that sends RTP: a report about our SSRC latches it (a peer that only receives)", () => {
  const clock = new VirtualClock(0);
  const net = new FakeNet(clock, 1);
  const s = new RtcpSession({ clock, socket: net.transport(5005), cname: "me", minInterval: 5, bandwidthKbps: 80 });
  s.onSent(rtpFrame(1, 160, 0xabc));
  const rr = (about: number) => {
    const p = new ReceiverReportPacket();
    p.setSsrc(0x77);
    const block = new ReceptionReport();
    block.setSsrc(about);
    p.addReport(block);
    const v = p.getView();
    return new Uint8Array(v.buffer, v.byteOffset, v.byteLength).slice();
  };
  net.transport(7001).send(rr(0x123), { hostname: "127.0.0.1", port: 5005 });
  clock.advance(10);
  assert.equal(s.remote, undefined);
  net.transport(5003).send(rr(0xabc), { hostname: "127.0.0.1", port: 5005 });
  clock.advance(10);
  assert.deepEqual(s.remote, { hostname: "127.0.0.1", port: 5003 });
});

Deno.test("session: RTP of ever new SSRCs keeps at most MAX_RTCP_SOURCES sources; the stream that flows keeps its statistics", () => {
  const { clock, a } = pair();
  const rand = seededRandom(3);
  for (let i = 0; i < 200; i++) {
    const arrival = i * 20;
    // Packet 50 of the real stream is lost.
    if (i !== 50) a.onReceived(rtpFrame(1000 + i, 160 * i, 0xaaaa, arrival));
    for (let k = 0; k < 50; k++) {
      a.onReceived(
        rtpFrame(Math.floor(rand() * 65536), Math.floor(rand() * 2 ** 32), Math.floor(rand() * 2 ** 32), arrival),
      );
    }
  }
  clock.advance(4000);
  const s = a.stats() as Record<string, number>;
  assert.equal(s.packets_received, 199 + 200 * 50);
  assert.ok(s.sources <= MAX_RTCP_SOURCES, `${s.sources} sources`);
  assert.equal(s.remote_ssrc, 0xaaaa);
  assert.equal(s.lost, 1);
  assert.equal(s.jitter_ms, 0);
  // Its report block is in the next report.
  const blocks = parse(a.buildReport().data).getPackets()[0] as InstanceType<typeof ReceiverReportPacket>;
  assert.ok(blocks.getReports().some((r) => r.getSsrc() === 0xaaaa && r.getTotalLost() === 1));
});

Deno.test("session: a compound packed with reports or BYEs is published once (one log line, one event)", () => {
  const clock = new VirtualClock(0);
  const net = new FakeNet(clock, 0);
  const s = new RtcpSession({ clock, socket: net.transport(5001), cname: "me", minInterval: 5, bandwidthKbps: 80 });
  const got: string[] = [];
  s.attach({ direction: "receive", onReport: (r) => got.push(`${r.type} ${r.ssrc}`) });
  const bytes = (c: InstanceType<typeof CompoundPacket>) => {
    const v = c.getView();
    return new Uint8Array(v.buffer, v.byteOffset, v.byteLength).slice();
  };
  const from = { hostname: "127.0.0.1", port: 7001 };
  s.onReceived(rtpFrame(1, 160, 0x5000, 0)); // the peer's RTP: its reports latch the session to it
  // 180 RRs in one 1440-byte datagram: before, 180 reports published.
  const reports = new CompoundPacket();
  for (let i = 0; i < 180; i++) {
    const rr = new ReceiverReportPacket();
    rr.setSsrc(0x5000 + i);
    reports.addPacket(rr);
  }
  s.receive(bytes(reports), from);
  assert.deepEqual(got, [`RR ${0x5000}`]);
  // An RR and 100 BYEs: the BYE is published once; every source they name has left.
  const byes = new CompoundPacket();
  const rr = new ReceiverReportPacket();
  rr.setSsrc(0x6000);
  byes.addPacket(rr);
  for (let i = 0; i < 100; i++) {
    const bye = new ByePacket();
    bye.addSsrc(0x6000 + i);
    byes.addPacket(bye);
  }
  s.receive(bytes(byes), from);
  assert.deepEqual(got, [`RR ${0x5000}`, `BYE ${0x6000}`]);
  const st = s.stats() as Record<string, number>;
  assert.equal(st.reports_received, 181);
  assert.equal(st.bye_received, 100);
});

// ---------------------------------------------------------------------------
// The stage, over real loopback UDP, with a virtual clock driving the intervals.

async function waitFor(cond: () => boolean, what: string) {
  for (let i = 0; i < 400 && !cond(); i++) await new Promise((r) => setTimeout(r, 5));
  assert.ok(cond(), `timed out waiting for ${what}`);
}

Deno.test("rtcp stage: two calls' sessions exchange reports over loopback; send+receive stages share one session", async () => {
  const clock = new VirtualClock(0);
  const lines = new MemoryOutput();
  const log = new Logger({ level: "info", outputs: [lines] }).child("RTCP");
  // Side A: a send-path stage and a receive-path stage of one call's session (one RTCP session, one socket).
  const sessionA = new Session({ id: "call-a", clock });
  const aSend = testContext({ clock, session: sessionA });
  const aRecv = testContext({ clock, session: sessionA });
  const ctxAS = { ...aSend.ctx, log };
  const ctxAR = { ...aRecv.ctx, log };
  const sA = await createStage<TransformStage>(rtcp, { session: "t-call-a", interval: 0.5, cname: "a" }, ctxAS);
  const rA = await createStage<TransformStage>(rtcp, { session: "t-call-a", interval: 0.5, cname: "a" }, ctxAR);
  assert.deepEqual(sA.negotiate!({ kind: "rtp", codec: "PCMU", clockRate: 8000 }), {
    kind: "rtp",
    codec: "PCMU",
    clockRate: 8000,
  });
  await sA.start!(ctxAS);
  await rA.start!(ctxAR);
  const portA = sA.stats!().local_port as number;
  assert.ok(portA > 0);
  assert.equal(rA.stats!().local_port, portA, "one socket for the session");
  // Side B: one stage in each direction too, reporting to A's port.
  const sessionB = new Session({ id: "call-b", clock });
  const bSend = testContext({ clock, session: sessionB });
  const bRecv = testContext({ clock, session: sessionB });
  const optsB = { session: "t-call-b", interval: 0.5, cname: "b", remote: `127.0.0.1:${portA}` };
  const sB = await createStage<TransformStage>(rtcp, { ...optsB, direction: "send" }, bSend.ctx);
  const rB = await createStage<TransformStage>(rtcp, { ...optsB, direction: "receive" }, bRecv.ctx);
  await sB.start!(bSend.ctx);
  await rB.start!(bRecv.ctx);

  // Media both ways for 3 s of virtual time; the receive stages see frames with arrival times.
  const pass = (st: TransformStage, f: RtpFrame) => {
    const out: unknown[] = [];
    st.process(f, (x) => (out.push(x), true));
    assert.equal(out[0], f, "pass-through");
  };
  for (let i = 0; i < 150; i++) {
    const t = clock.now();
    const fa = rtpFrame(i, i * 160, 0xaaaa);
    const fb = rtpFrame(100 + i, 9000 + i * 160, 0xbbbb);
    pass(sA, fa);
    pass(rB, { ...fa, arrival: t + 10 });
    pass(sB, fb);
    pass(rA, { ...fb, arrival: t + 10 });
    clock.advance(20);
    if (i % 5 === 4) await clock.advanceAsync(0); // let the sockets deliver
  }
  await waitFor(() => (sA.stats!().rtt_ms as number | undefined) !== undefined, "A's RTT");
  await waitFor(() => (sB.stats!().rtt_ms as number | undefined) !== undefined, "B's RTT");
  const a = sA.stats!() as Record<string, number>;
  const b = rB.stats!() as Record<string, number>;
  assert.equal(a.packets_sent, 150);
  assert.equal(a.packets_received, 150);
  assert.equal(b.packets_received, 150);
  assert.equal(a.remote_fraction_lost, 0);
  assert.equal(a.lost, 0);
  assert.ok(a.rtt_ms >= 0);
  assert.ok(a.reports_sent >= 2 && a.reports_received >= 2);
  // Logs and events.
  assert.ok(lines.lines.some((l) => /\[RTCP\] SR sent: packets=\d+, octets=\d+, loss=0\.0%, jitter=/.test(l)));
  assert.ok(lines.lines.some((l) => /\[RTCP\] SR received: loss=0\.0%, jitter=\d+\.\d ms, rtt=/.test(l)));
  const ev = [...aSend.events, ...aRecv.events].filter((e) => e.type === "rtcp");
  assert.ok(ev.length >= 2);
  assert.ok(ev.some((e) => (e.detail as { direction: string }).direction === "received"));
  assert.ok(
    aSend.events.every((e) => (e.detail as { direction: string }).direction === "sent"),
    "sent reports to the send stage",
  );

  // The stages closing is not the end of the call: closing A's session sends BYE to B.
  await sA.close!();
  await rA.close!();
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(rB.stats!().bye_received, 0);
  assert.equal(sessionA.stats.packetsSent, 0, "the stage counts RTP, the udp-sink counts datagrams");
  await aSend.release(); // closes the call's session: the RTCP session is disposed, BYE sent
  await waitFor(() => rB.stats!().bye_received === 1, "BYE at B");
  assert.ok(bRecv.events.some((e) => (e.detail as { type: string }).type === "BYE"));
  await sB.close!();
  await rB.close!();
  await bSend.release();
  await bRecv.release();
});

Deno.test("rtcp stage: a flood of RTCP from the peer writes at most 10 report lines per 10 s, then says how many it left out", async () => {
  const clock = new VirtualClock(0);
  const lines = new MemoryOutput();
  const log = new Logger({ level: "info", outputs: [lines] }).child("RTCP");
  const peer = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  const peerPort = (peer.addr as Deno.NetAddr).port;
  const t = testContext({ clock, session: new Session({ id: "flood", clock }) });
  const ctx = { ...t.ctx, log };
  const st = await createStage<TransformStage>(
    rtcp,
    { session: "t-flood", interval: 5, cname: "me", remote: `127.0.0.1:${peerPort}`, direction: "receive" },
    ctx,
  );
  try {
    await st.start!(ctx);
    const port = st.stats!().local_port as number;
    const rr = new CompoundPacket();
    const r = new ReceiverReportPacket();
    r.setSsrc(0x1234);
    rr.addPacket(r);
    const v = rr.getView();
    const datagram = new Uint8Array(v.buffer, v.byteOffset, v.byteLength).slice();
    const flood = async (n: number, total: number) => {
      for (let i = 0; i < n; i++) await peer.send(datagram, { transport: "udp", hostname: "127.0.0.1", port });
      await waitFor(() => st.stats!().reports_received === total, `${total} reports received`);
    };
    const reportLines = () => lines.lines.filter((l) => / RR received: /.test(l)).length;
    await flood(50, 50);
    assert.equal(reportLines(), 10);
    // The next window: its first report is logged, after the count of those left out.
    clock.advance(10_000);
    await flood(1, 51);
    assert.equal(reportLines(), 11);
    assert.ok(
      lines.lines.some((l) => /WARN .*40 more RTCP packets received were not logged/.test(l)),
      lines.lines.join("\n"),
    );
  } finally {
    await st.close!();
    await t.release();
    peer.close();
  }
});

Deno.test("rtcp stage: negotiation and options", async () => {
  const st = await createStage<TransformStage>(rtcp, {});
  assert.throws(() => st.negotiate!({ kind: "packet" }), /rtp-packetizer.*rtp-depacketizer/);
  assert.throws(() => rtcp.options.parse({ remote: "no-port" }));
  assert.throws(() => rtcp.options.parse({ interval: 0 }));
  assert.doesNotThrow(() => rtcp.options.parse({ remote: "[2001:db8::1]:5005", interval: 0.5 }));
});

Deno.test("rtcp stage: uses the RTCP port of its session's port pair; a busy port is a clear error", async () => {
  const pair = new PortAllocator(udpNetwork, [30000, 40000]).pair("127.0.0.1");
  const t = testContext({ session: new Session({ id: "call", clock: new VirtualClock(), ports: pair }) });
  const st = await createStage<TransformStage>(rtcp, {
    session: "t-reserved",
    bind: "127.0.0.1",
    local_port: pair.rtcpPort,
  }, t.ctx);
  await st.start!(t.ctx);
  assert.equal(st.stats!().local_port, pair.rtcpPort);
  // A second session on the same port cannot bind.
  const t2 = testContext();
  const st2 = await createStage<TransformStage>(rtcp, {
    session: "t-busy",
    bind: "127.0.0.1",
    local_port: pair.rtcpPort,
  }, t2.ctx);
  await assert.rejects(() => Promise.resolve(st2.start!(t2.ctx)), /already in use/);
  await st.close!();
  await t.release();
  await t2.release();
  assert.ok(pair.rtcp.closed, "the session closed its pair");
});

Deno.test("rtcp stage: rtp_port / rtp_remote give the RTCP ports as RTP port + 1", async () => {
  const pair = new PortAllocator(udpNetwork, [40002, 50000]).pair("127.0.0.1");
  const t = testContext({ session: new Session({ id: "call", clock: new VirtualClock(), ports: pair }) });
  const st = await createStage<TransformStage>(rtcp, {
    session: "t-rtp-port",
    bind: "127.0.0.1",
    rtp_port: pair.rtpPort,
    rtp_remote: "127.0.0.1:6000",
  }, t.ctx);
  await st.start!(t.ctx);
  assert.equal(st.stats!().local_port, pair.rtpPort + 1);
  assert.equal(st.stats!().remote, "127.0.0.1:6001");
  await st.close!();
  await t.release();
});

Deno.test("rtp-receive.json (no remote): a stranger's RTCP sent before the RTP does not become the RTCP peer; the RTP sender's does", async () => {
  const { createRegistry, runPipelineFile } = await import("../mod.ts");
  const { serializeRtp } = await import("../plugins/rtp/header.ts");
  const dir = await Deno.makeTempDir({ prefix: "voxpipe-rtcp-latch-" });
  try {
    const clock = new VirtualClock(0);
    const net = new MemoryNetwork({ clock, latencyMs: 1 });
    const to = { hostname: "127.0.0.1", port: 5004 };
    const rtcpTo = { hostname: "127.0.0.1", port: 5005 };
    const stranger = net.bind("127.0.0.9", 7001);
    const peerRtp = net.bind("127.0.0.1", 6000);
    const peerRtcp = net.bind("127.0.0.1", 6001);
    const toStranger: Uint8Array[] = [], toPeer: Uint8Array[] = [];
    stranger.listen((d) => void toStranger.push(d));
    peerRtcp.listen((d) => void toPeer.push(d));
    const sr = (ssrc: number, packets = ssrc === 0xfeed ? 40 : 999) => {
      const p = new SenderReportPacket();
      p.setSsrc(ssrc);
      p.setPacketCount(packets);
      const v = p.getView();
      return new Uint8Array(v.buffer, v.byteOffset, v.byteLength).slice();
    };
    const out = new MemoryOutput();
    let done = false;
    const run = runPipelineFile(repoPath("pipelines/rtp-receive.json"), {
      registry: createRegistry(),
      set: ["bind=127.0.0.1", "port=5004", `out=${dir}/r.wav`, "timeout=2", "rtcp_interval=1"],
      clock,
      net,
      log: new Logger({ level: "info", outputs: [out] }),
    }).finally(() => done = true);
    // The schedule starts once the receiver listens: how long its start takes in real time is the machine's business.
    await settleUntil(
      clock,
      () => done || (net.bound("127.0.0.1", 5004) && net.bound("127.0.0.1", 5005)),
      "the receiver's sockets",
    );
    const t0 = clock.now();
    const at = (ms: number, f: () => void) => clock.at(t0 + ms, f);
    // The stranger reports first (before any RTP), and again while the RTP flows; the sender's first SR comes just
    // before its first RTP packet (as ffmpeg's does).
    at(50, () => void stranger.send(sr(0x5742), rtcpTo));
    at(80, () => void peerRtcp.send(sr(0xfeed, 0), rtcpTo));
    for (let i = 0; i < 40; i++) {
      at(100 + 20 * i, () =>
        void peerRtp.send(
          serializeRtp({
            kind: "rtp",
            payloadType: 0,
            sequence: 100 + i,
            timestamp: 160 * i,
            ssrc: 0xfeed,
            marker: i === 0,
            payload: new Uint8Array(160).fill(0xff),
          }),
          to,
        ));
    }
    at(600, () => void stranger.send(sr(0x5742), rtcpTo));
    at(700, () => void peerRtcp.send(sr(0xfeed), rtcpTo));
    at(800, () => void stranger.send(sr(0xfeed), rtcpTo)); // even with the peer's SSRC, once latched
    for (let i = 0; i < 200 && !done; i++) await clock.advanceAsync(100);
    assert.ok(done, "the receiver ended on its timeout");
    assert.equal((await run).code, 0);
    const received = out.lines.filter((l) => /S?R received|BYE received/.test(l));
    assert.deepEqual(received.map((l) => /(SR received: packets=\d+)/.exec(l)?.[1]), [
      "SR received: packets=0",
      "SR received: packets=40",
    ]);
    assert.equal(toStranger.length, 0, "no report went to the stranger");
    assert.ok(toPeer.length >= 1, "our reports (and BYE) went to the RTP sender's RTCP port");
    await Promise.all([stranger.close(), peerRtp.close(), peerRtcp.close()]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("RTCP session held (an incoming call before its answer): no report and no BYE leave while held, even with RTP passed; reports once released", async () => {
  const clock = new VirtualClock(0);
  const net = new FakeNet(clock, 1);
  let held = true;
  const s = new RtcpSession({
    clock,
    socket: net.transport(5001),
    remote: { hostname: "127.0.0.1", port: 6001 },
    cname: "me",
    minInterval: 1,
    bandwidthKbps: 80,
    random: seededRandom(3),
    held: () => held,
  });
  s.start();
  await clock.advanceAsync(5000, 50);
  assert.equal(net.sent.length, 0, "no report while held");
  assert.equal(s.stats().reports_sent, 0);
  held = false;
  await clock.advanceAsync(3000, 50);
  assert.ok(net.sent.length > 0, "reports once released");
  await s.close();
  // A session closed while still held (the call refused before its answer) sends no BYE either, though RTP passed it
  // on its way to the sink that held it: none of it left.
  const t = new RtcpSession({
    clock,
    socket: net.transport(5003),
    remote: { hostname: "127.0.0.1", port: 6003 },
    cname: "me",
    minInterval: 1,
    bandwidthKbps: 80,
    random: seededRandom(4),
    held: () => true,
  });
  t.start();
  for (let i = 0; i < 10; i++) t.onSent(rtpFrame(i, i * 160, 0xabc));
  await clock.advanceAsync(5000, 50);
  await t.close("refused");
  assert.equal(net.sent.filter((x) => x.from === 5003).length, 0);
});
