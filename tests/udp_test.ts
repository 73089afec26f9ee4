/**
 * Tests of the udp plugin family over loopback: IPv4 and IPv6, peer filtering,
 * shared sockets, port pairs, timeout, oversize drops, and pacing in virtual
 * time (no test asserts real time).
 */
import assert from "node:assert/strict";
import { z } from "zod";
import { VirtualClock } from "../core/clock.ts";
import type { Frame, PacketFrame, RtpFrame } from "../core/frame.ts";
import { buildPipeline } from "../core/pipeline.ts";
import { Registry } from "../core/registry.ts";
import { definePlugin, type SinkStage, type SourceStage } from "../core/stage.ts";
import { createStage, testContext } from "../core/testing.ts";
import { canonicalHost, formatHostPort, isLoopbackAddress, parseHostPort, sameAddress } from "../core/net/address.ts";
import type { DatagramSocket, SendListener } from "../core/net/datagram.ts";
import { parsePortRange, PortAllocator } from "../core/net/ports.ts";
import { udpNetwork } from "../core/net/udp.ts";
import { MemoryNetwork } from "../core/net/memory.ts";
import { Logger, MemoryOutput } from "../core/log.ts";
import { Session } from "../core/session.ts";
import { udpSink, type UdpSinkOptions, udpSinkOptions, UdpSinkStage } from "../plugins/udp/udp_sink.ts";
import { udpSource } from "../plugins/udp/udp_source.ts";
import { plugins } from "../plugins/udp/mod.ts";

const TEST_RANGE = "30000-39999";

/** Waits (real time, bounded) until `cond()` holds. */
async function until(cond: () => boolean, what: string, ms = 2000): Promise<void> {
  const end = performance.now() + ms;
  while (!cond()) {
    if (performance.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

/** A raw loopback socket for the other end of a test. */
function rawSocket(hostname = "127.0.0.1"): Deno.DatagramConn {
  return Deno.listenDatagram({ transport: "udp", hostname, port: 0 });
}

function portOf(conn: Deno.DatagramConn): number {
  return (conn.addr as Deno.NetAddr).port;
}

/** Starts a udp-source; returns its stage, emitted frames, events and a stop function. */
async function startSource(options: Record<string, unknown>, clock = new VirtualClock(), session?: Session) {
  const t = testContext({ clock, session });
  const stage = await createStage<SourceStage>(udpSource, { port_range: TEST_RANGE, ...options }, t.ctx);
  const running = stage.run(t.ctx);
  let ended = false;
  running.then(() => ended = true);
  const port = stage.stats!().port as number;
  return {
    ...t,
    stage,
    port,
    running,
    ended: () => ended,
    stop: async () => {
      t.abort.abort();
      await running;
      await stage.close?.();
      await t.release();
    },
  };
}

function rtp(sequence: number, timestamp: number, ssrc = 0x1234): RtpFrame {
  return {
    kind: "rtp",
    payloadType: 0,
    sequence,
    timestamp: timestamp >>> 0,
    ssrc,
    marker: false,
    payload: new Uint8Array(160).fill(sequence & 0xff),
    clockRate: 8000,
  };
}

Deno.test("address: host:port parsing, IPv6 brackets, canonical comparison", () => {
  assert.deepEqual(parseHostPort("[::1]:5004"), { hostname: "::1", port: 5004 });
  assert.deepEqual(parseHostPort("127.0.0.1:4000"), { hostname: "127.0.0.1", port: 4000 });
  assert.deepEqual(parseHostPort("localhost:5060"), { hostname: "localhost", port: 5060 });
  assert.deepEqual(parseHostPort("::1", 9), { hostname: "::1", port: 9 });
  assert.throws(() => parseHostPort("::1"), /write IPv6 as \[::1\]:port/);
  assert.throws(() => parseHostPort("127.0.0.1"), /missing port/);
  assert.throws(() => parseHostPort("1.2.3.4:70000"), /expected 0\.\.65535/);
  assert.throws(() => parseHostPort("[1.2.3.4]:5"), /not an IPv6 address/);
  assert.equal(formatHostPort({ hostname: "::1", port: 5004 }), "[::1]:5004");
  assert.equal(canonicalHost("::ffff:127.0.0.1"), "127.0.0.1");
  assert.equal(canonicalHost("0:0:0:0:0:0:0:1"), "::1");
  assert.ok(sameAddress({ hostname: "::ffff:10.0.0.1", port: 1 }, { hostname: "10.0.0.1", port: 1 }));
  assert.ok(!sameAddress({ hostname: "10.0.0.1", port: 1 }, { hostname: "10.0.0.1", port: 2 }));
  for (const h of ["127.0.0.1", "127.9.8.7", "::1", canonicalHost("::ffff:127.0.0.2")]) {
    assert.ok(isLoopbackAddress(h), h);
  }
  for (const h of ["localhost", "127.0.0.1.nip.io", "10.0.0.1", "::2", "1.127.0.0"]) {
    assert.ok(!isLoopbackAddress(h), h);
  }
});

Deno.test("options: defaults, descriptions, JSON Schema, and clear errors", async () => {
  const sink = udpSinkOptions.parse({ to: "127.0.0.1:4000" });
  assert.equal(sink.pace, true);
  assert.equal(sink.queue_ms, 100);
  assert.equal(sink.local_port, 0);
  const bad = udpSinkOptions.safeParse({ to: "[::1]" });
  assert.ok(!bad.success);
  assert.match(bad.error.issues[0].message, /to: missing port/);
  assert.throws(() => parsePortRange("20000-10000"), /min < max/);
  assert.deepEqual(parsePortRange("10000-20000"), [10000, 20000]);
  const { z } = await import("zod");
  for (const p of plugins) {
    assert.equal(p.realtime, true);
    const schema = z.toJSONSchema(p.options, { io: "input" }) as {
      properties: Record<string, { description?: string }>;
    };
    for (const [k, v] of Object.entries(schema.properties)) assert.ok(v.description, `${p.name}.${k} is described`);
  }
});

Deno.test("udp-source and udp-sink: send and receive over IPv4 loopback", async () => {
  const src = await startSource({ bind: "127.0.0.1", port: 0 });
  try {
    assert.equal(src.port % 2, 0, "port 0 allocates an even port");
    const t = testContext();
    const sink = await createStage<SinkStage>(udpSink, { to: `127.0.0.1:${src.port}`, pace: false }, t.ctx);
    await sink.start!(t.ctx);
    for (let i = 0; i < 5; i++) sink.write({ kind: "packet", data: new Uint8Array([i, 1, 2]) });
    await sink.end!();
    await until(() => src.out.length === 5, "5 datagrams");
    const f = src.out as PacketFrame[];
    assert.deepEqual(f.map((x) => x.data[0]), [0, 1, 2, 3, 4]);
    assert.equal(f[0].remote!.hostname, "127.0.0.1");
    assert.equal(f[0].arrival, 0, "arrival is ctx.clock.now()");
    assert.equal(sink.stats!().packets_sent, 5);
    assert.equal(sink.stats!().bytes_sent, 15);
    await sink.close?.();
    await t.release();
  } finally {
    await src.stop();
  }
});

Deno.test("udp-source and udp-sink: send and receive over IPv6 loopback [::1]", async () => {
  const src = await startSource({ bind: "::1", port: 0 });
  try {
    const t = testContext();
    const sink = await createStage<SinkStage>(udpSink, { to: `[::1]:${src.port}`, pace: false }, t.ctx);
    await sink.start!(t.ctx);
    assert.match(sink.stats!().local as string, /^\[::\]:\d+$/, "an IPv6 destination binds :: by default");
    sink.write(rtp(7, 1120));
    await sink.end!();
    await until(() => src.out.length === 1, "1 datagram");
    const f = src.out[0] as PacketFrame;
    assert.equal(f.remote!.hostname, "::1");
    assert.equal(f.data.length, 172);
    assert.deepEqual([...f.data.subarray(0, 4)], [0x80, 0x00, 0x00, 0x07], "serialized RTP header");
    await sink.close?.();
    await t.release();
  } finally {
    await src.stop();
  }
});

Deno.test("udp-sink: refuses an IPv6 destination from an IPv4 bind", async () => {
  const t = testContext();
  await assert.rejects(
    () => createStage(udpSink, { to: "[::1]:4000", bind: "127.0.0.1" }, t.ctx),
    /set "bind": "::"/,
  );
  await t.release();
});

Deno.test("udp-source: latches to a sender heard twice in a row (probation); then foreign packets are dropped and counted", async () => {
  const src = await startSource({ bind: "127.0.0.1", port: 0 });
  const a = rawSocket(), b = rawSocket();
  try {
    const to = { transport: "udp" as const, hostname: "127.0.0.1", port: src.port };
    await a.send(new Uint8Array([1]), to);
    await until(() => src.out.length === 1, "first datagram");
    await b.send(new Uint8Array([66]), to); // another sender before anyone is latched: passed on, a's run broken
    await until(() => src.out.length === 2, "the other sender's datagram");
    await a.send(new Uint8Array([2]), to);
    await until(() => src.out.length === 3, "a's second datagram");
    assert.equal(src.stage.stats!().peer, null, "one datagram in a row does not latch");
    assert.ok(!src.events.some((e) => e.type === "peer"));
    await a.send(new Uint8Array([3]), to);
    await until(() => src.out.length === 4, "a's third datagram");
    assert.equal(src.stage.stats!().peer, `127.0.0.1:${portOf(a)}`, "latched after two in a row");
    await b.send(new Uint8Array([67]), to); // injection attempt after the latch
    await a.send(new Uint8Array([4]), to);
    await until(() => src.out.length === 5, "a's fourth datagram");
    assert.deepEqual(src.out.map((f) => (f as PacketFrame).data[0]), [1, 66, 2, 3, 4]);
    assert.equal(src.stage.stats!().foreign_dropped, 1);
    assert.ok(src.events.some((e) => e.type === "peer"));
  } finally {
    a.close();
    b.close();
    await src.stop();
  }
});

Deno.test('udp-source: learn_after 1 latches to the first sender; peer "" means none', async () => {
  const src = await startSource({ bind: "127.0.0.1", port: 0, learn_after: 1, peer: "" });
  const a = rawSocket(), b = rawSocket();
  try {
    const to = { transport: "udp" as const, hostname: "127.0.0.1", port: src.port };
    await a.send(new Uint8Array([1]), to);
    await until(() => src.out.length === 1, "first datagram");
    assert.equal(src.stage.stats!().peer, `127.0.0.1:${portOf(a)}`);
    await b.send(new Uint8Array([66]), to);
    await a.send(new Uint8Array([2]), to);
    await until(() => src.out.length === 2, "a's second datagram");
    assert.deepEqual(src.out.map((f) => (f as PacketFrame).data[0]), [1, 2]);
    assert.equal(src.stage.stats!().foreign_dropped, 1);
  } finally {
    a.close();
    b.close();
    await src.stop();
  }
});

Deno.test("udp-source: with a given peer, other senders are dropped from the first packet", async () => {
  const a = rawSocket(), b = rawSocket();
  const src = await startSource({ bind: "127.0.0.1", port: 0, peer: `127.0.0.1:${portOf(a)}` });
  try {
    const to = { transport: "udp" as const, hostname: "127.0.0.1", port: src.port };
    await b.send(new Uint8Array([66]), to);
    await b.send(new Uint8Array([67]), to);
    await a.send(new Uint8Array([1]), to);
    await until(() => src.out.length === 1, "the peer's datagram");
    assert.equal((src.out[0] as PacketFrame).data[0], 1);
    assert.equal(src.stage.stats!().foreign_dropped, 2);
  } finally {
    a.close();
    b.close();
    await src.stop();
  }
});

Deno.test("udp-source: learn_peer false accepts every sender", async () => {
  const src = await startSource({ bind: "127.0.0.1", port: 0, learn_peer: false });
  const a = rawSocket(), b = rawSocket();
  try {
    const to = { transport: "udp" as const, hostname: "127.0.0.1", port: src.port };
    await a.send(new Uint8Array([1]), to);
    await until(() => src.out.length === 1, "a");
    await b.send(new Uint8Array([2]), to);
    await until(() => src.out.length === 2, "b");
    assert.equal(src.stage.stats!().foreign_dropped, 0);
  } finally {
    a.close();
    b.close();
    await src.stop();
  }
});

Deno.test("udp-source and udp-sink share one socket: the peer sees packets from the source's port", async () => {
  const peer = rawSocket();
  const src = await startSource({ bind: "127.0.0.1", port: 0 });
  try {
    // The sink lives in another pipeline of the same call: same session.
    const t = testContext({ session: src.ctx.session });
    const sink = await createStage<SinkStage>(
      udpSink,
      { to: `127.0.0.1:${portOf(peer)}`, bind: "127.0.0.1", local_port: src.port, pace: false },
      t.ctx,
    );
    await sink.start!(t.ctx);
    assert.equal(sink.stats!().local, `127.0.0.1:${src.port}`);
    sink.write({ kind: "packet", data: new Uint8Array([9]) });
    const [data, from] = await peer.receive(new Uint8Array(64));
    assert.equal(data[0], 9);
    assert.equal((from as Deno.NetAddr).port, src.port, "sent from the port we receive on");
    // The peer answers to where it heard from: the source receives it (same socket).
    await peer.send(new Uint8Array([10]), from);
    await until(() => src.out.length === 1, "the answer");
    // The sink's pipeline ending keeps the socket open for the source: the session owns it.
    await sink.end!();
    await sink.close?.();
    await peer.send(new Uint8Array([11]), from);
    await until(() => src.out.length === 2, "a datagram after the sink's release");
  } finally {
    peer.close();
    await src.stop();
  }
});

Deno.test("udp-sink wait_for_peer: nothing is sent until the session's udp-source has heard its peer (a stranger does not count)", async () => {
  const peer = rawSocket();
  const stranger = rawSocket();
  const src = await startSource({ bind: "127.0.0.1", port: 0, peer: `127.0.0.1:${portOf(peer)}` });
  try {
    const t = testContext({ session: src.ctx.session });
    const sink = await createStage<SinkStage>(
      udpSink,
      { to: `127.0.0.1:${portOf(peer)}`, bind: "127.0.0.1", local_port: src.port, pace: false, wait_for_peer: true },
      t.ctx,
    );
    await sink.start!(t.ctx);
    const to = { transport: "udp" as const, hostname: "127.0.0.1", port: src.port };
    sink.write({ kind: "packet", data: new Uint8Array([1]) });
    // A stranger is dropped by the source: it does not make the peer heard.
    await stranger.send(new Uint8Array([66]), to);
    await until(() => src.stage.stats!().foreign_dropped === 1, "the stranger's datagram dropped");
    sink.write({ kind: "packet", data: new Uint8Array([2]) });
    assert.equal(sink.stats!().unheard_dropped, 2);
    assert.equal(sink.stats!().packets_sent, 0);
    // The peer is heard: from then on packets go to it.
    await peer.send(new Uint8Array([10]), to);
    await until(() => src.out.length === 1, "the peer's datagram");
    sink.write({ kind: "packet", data: new Uint8Array([3]) });
    const [data] = await peer.receive(new Uint8Array(64));
    assert.deepEqual([...data], [3], "the first packet the peer gets is the first one written after it was heard");
    assert.equal(sink.stats!().unheard_dropped, 2);
    await sink.end!();
    await sink.close?.();
  } finally {
    peer.close();
    stranger.close();
    await src.stop();
  }
});

Deno.test("PortAllocator: even RTP port and odd RTCP port, both held, freed on close", async () => {
  const pair = new PortAllocator(udpNetwork, parsePortRange(TEST_RANGE)).pair("127.0.0.1");
  try {
    assert.equal(pair.rtpPort % 2, 0);
    assert.equal(pair.rtcpPort, pair.rtpPort + 1);
    assert.ok(pair.rtpPort >= 30000 && pair.rtcpPort <= 39999);
    assert.equal(pair.rtp.port, pair.rtpPort);
    assert.equal(pair.rtcp.port, pair.rtcpPort);
    // Both are held: nobody else can bind them.
    assert.throws(
      () => Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: pair.rtcpPort }),
      Deno.errors.AddrInUse,
    );
    assert.throws(() => udpNetwork.bind("127.0.0.1", pair.rtpPort), /already in use/);
  } finally {
    await pair.close();
  }
  // After close both ports are free again.
  const again = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: pair.rtpPort });
  again.close();
});

Deno.test("PortAllocator: skips a pair whose odd port is taken; says when the range is full", async () => {
  const blockers: Deno.DatagramConn[] = [];
  try {
    // A two-pair range with the odd port of the first pair taken: the second pair must be chosen.
    const base = new PortAllocator(udpNetwork, [40000, 49999]).pair("127.0.0.1");
    const p = base.rtpPort;
    await base.close();
    blockers.push(Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: p + 1 }));
    for (let i = 0; i < 10; i++) {
      const pair = new PortAllocator(udpNetwork, [p, p + 3], () => i / 10).pair("127.0.0.1");
      assert.equal(pair.rtpPort, p + 2);
      await pair.close();
    }
    blockers.push(Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: p + 3 }));
    assert.throws(() => new PortAllocator(udpNetwork, [p, p + 3]).pair("127.0.0.1"), /no free RTP\/RTCP port pair/);
  } finally {
    for (const b of blockers) b.close();
  }
});

Deno.test("udp-source uses its session's port pair; the session closes it", async () => {
  const pair = new PortAllocator(udpNetwork, parsePortRange(TEST_RANGE)).pair("127.0.0.1");
  const clock = new VirtualClock();
  const session = new Session({ id: "call", clock, ports: pair });
  const src = await startSource({ bind: "127.0.0.1", port: pair.rtpPort }, clock, session);
  const a = rawSocket();
  try {
    assert.equal(src.port, pair.rtpPort);
    await a.send(new Uint8Array([5]), { transport: "udp", hostname: "127.0.0.1", port: pair.rtpPort });
    await until(() => src.out.length === 1, "a datagram on the pair's port");
    assert.equal(session.stats.packetsReceived, 1, "counted in the session's media statistics");
  } finally {
    a.close();
    await src.stop(); // closes the session
  }
  assert.ok(pair.rtp.closed && pair.rtcp.closed);
});

Deno.test("udp-source: timeout ends the source and emits the event (virtual clock)", async () => {
  const clock = new VirtualClock();
  const src = await startSource({ bind: "127.0.0.1", port: 0, timeout: 0.3 }, clock);
  const a = rawSocket();
  try {
    await clock.advanceAsync(200);
    await a.send(new Uint8Array([1]), { transport: "udp", hostname: "127.0.0.1", port: src.port });
    await until(() => src.out.length === 1, "a datagram");
    assert.equal((src.out[0] as PacketFrame).arrival, 200);
    await clock.advanceAsync(250); // t = 450: only 250 ms since the datagram
    assert.equal(src.ended(), false);
    await clock.advanceAsync(60); // t = 510: 310 ms of silence
    await src.running;
    assert.equal(src.ended(), true);
    const ev = src.events.find((e) => e.type === "timeout");
    assert.ok(ev, "timeout event");
    assert.deepEqual(ev.detail, { seconds: 0.3, port: src.port, packets: 1, peer: null });
  } finally {
    a.close();
    await src.stop();
  }
});

Deno.test("udp-source: timeout without any datagram, and stop ends it promptly", async () => {
  const clock = new VirtualClock();
  const quiet = await startSource({ bind: "127.0.0.1", port: 0, timeout: 1 }, clock);
  await clock.advanceAsync(1000);
  await quiet.running;
  assert.ok(quiet.events.some((e) => e.type === "timeout"));
  await quiet.stop();
  const never = await startSource({ bind: "127.0.0.1", port: 0 }, clock);
  await clock.advanceAsync(60_000);
  assert.equal(never.ended(), false, "timeout 0 never ends");
  await never.stop(); // resolves: abort ends the run
  assert.equal(never.ended(), true);
});

Deno.test("udp-source: first_timeout bounds the wait for the first datagram; timeout applies after it", async () => {
  const clock = new VirtualClock();
  // Waits 5 s for a sender that is late (timeout alone, counted from the start, would end it at 0.3 s).
  const src = await startSource({ bind: "127.0.0.1", port: 0, timeout: 0.3, first_timeout: 5 }, clock);
  const a = rawSocket();
  try {
    await clock.advanceAsync(4000);
    assert.equal(src.ended(), false, "still waiting for the first datagram at 4 s");
    await a.send(new Uint8Array([1]), { transport: "udp", hostname: "127.0.0.1", port: src.port });
    await until(() => src.out.length === 1, "a datagram");
    await clock.advanceAsync(250);
    assert.equal(src.ended(), false, "250 ms after the datagram");
    await clock.advanceAsync(60); // 310 ms of silence after it
    await src.running;
    const ev = src.events.find((e) => e.type === "timeout");
    assert.deepEqual(ev?.detail, { seconds: 0.3, port: src.port, packets: 1, peer: null });
  } finally {
    a.close();
    await src.stop();
  }
  // Nobody ever sends: it ends at first_timeout, saying so.
  const quiet = await startSource({ bind: "127.0.0.1", port: 0, timeout: 0.3, first_timeout: 2 }, clock);
  await clock.advanceAsync(1900);
  assert.equal(quiet.ended(), false);
  await clock.advanceAsync(100);
  await quiet.running;
  assert.deepEqual(quiet.events.find((e) => e.type === "timeout")?.detail, {
    seconds: 2,
    port: quiet.port,
    packets: 0,
    peer: null,
  });
  await quiet.stop();
  // first_timeout without timeout: once the first datagram came, it never ends by itself.
  const once = await startSource({ bind: "127.0.0.1", port: 0, first_timeout: 1 }, clock);
  const b = rawSocket();
  try {
    await b.send(new Uint8Array([2]), { transport: "udp", hostname: "127.0.0.1", port: once.port });
    await until(() => once.out.length === 1, "a datagram");
    await clock.advanceAsync(60_000);
    assert.equal(once.ended(), false);
  } finally {
    b.close();
    await once.stop();
  }
});

Deno.test("udp-source: oversized datagrams are dropped and counted", async () => {
  const src = await startSource({ bind: "127.0.0.1", port: 0, max_size: 100 });
  const a = rawSocket();
  try {
    const to = { transport: "udp" as const, hostname: "127.0.0.1", port: src.port };
    await a.send(new Uint8Array(101), to);
    await a.send(new Uint8Array(100).fill(3), to);
    await until(() => src.out.length === 1, "the 100-byte datagram");
    assert.equal((src.out[0] as PacketFrame).data.length, 100);
    assert.equal(src.stage.stats!().oversize_dropped, 1);
  } finally {
    a.close();
    await src.stop();
  }
});

/** A udp-sink on a fake socket that records the virtual time of every send. */
function pacedSink(options: Partial<UdpSinkOptions> = {}) {
  const clock = new VirtualClock(1000);
  const sent: { t: number; data: Uint8Array }[] = [];
  const sock = {
    hostname: "127.0.0.1",
    port: 40000,
    post(data: Uint8Array, _to: unknown, listener?: SendListener) {
      sent.push({ t: clock.now(), data });
      queueMicrotask(() => listener?.sent(data.length));
    },
  } as unknown as DatagramSocket;
  const opts = udpSinkOptions.parse({ to: "127.0.0.1:4000", ...options });
  const sink = new UdpSinkStage(opts, sock, { hostname: "127.0.0.1", port: 4000 });
  const t = testContext({ clock });
  sink.start(t.ctx);
  const seqOf = (d: Uint8Array) => (d[2] << 8) | d[3];
  return { clock, sent, sink, abort: t.abort, seqOf, session: t.ctx.session };
}

Deno.test("udp-sink pacing: packet n sent at start + n × 20 ms exactly, with backpressure", async () => {
  const { clock, sent, sink, seqOf } = pacedSink();
  const accepted: boolean[] = [];
  for (let i = 0; i < 8; i++) accepted.push(sink.write(rtp(i, 5000 + i * 160)));
  // Packet 0 goes at once; packets due 100 ms or more ahead are above the 100 ms high-water mark.
  assert.deepEqual(accepted, [true, true, true, true, true, false, false, false]);
  assert.equal(sent.length, 1);
  assert.equal(sink.stats().queue_depth, 7);
  let drained = false;
  sink.drained().then(() => drained = true);
  await clock.advanceAsync(80); // t = 1080: last due 1140 is 60 ms ahead, above the 50 ms low-water mark
  assert.equal(drained, false);
  await clock.advanceAsync(20); // t = 1100: 40 ms ahead
  assert.equal(drained, true);
  await clock.advanceAsync(100);
  assert.deepEqual(sent.map((s) => s.t), [1000, 1020, 1040, 1060, 1080, 1100, 1120, 1140]);
  assert.deepEqual(sent.map((s) => seqOf(s.data)), [0, 1, 2, 3, 4, 5, 6, 7]);
  assert.equal(sink.stats().late_sends, 0);
});

Deno.test("udp-sink wait_for_peer, paced: the stream is held, not lost, until the peer is heard; then paced from there", async () => {
  const { clock, sent, sink, seqOf, session } = pacedSink({ wait_for_peer: true });
  const accepted: boolean[] = [];
  for (let i = 0; i < 8; i++) accepted.push(sink.write(rtp(i, 5000 + i * 160)));
  // Held like behind a shut gate: up to queue_ms (100 ms) queued, then upstream is asked to wait.
  assert.deepEqual(accepted, [true, true, true, true, true, false, false, false]);
  let drained = false;
  sink.drained().then(() => drained = true);
  await clock.advanceAsync(500);
  assert.equal(sent.length, 0, "nothing is sent before the peer is heard");
  assert.equal(drained, false);
  // The peer is heard at t = 1500 (its udp-source counts its datagrams on the session).
  session.stats.packetsReceived++;
  await clock.advanceAsync(200);
  // Every packet, in order, paced 20 ms apart from the check that saw the peer (every 10 ms: at 1500 or 1510).
  assert.deepEqual(sent.map((s) => seqOf(s.data)), [0, 1, 2, 3, 4, 5, 6, 7]);
  const t0 = sent[0].t;
  assert(t0 >= 1500 && t0 <= 1510, `first packet at ${t0}`);
  assert.deepEqual(sent.map((s) => s.t - t0), [0, 20, 40, 60, 80, 100, 120, 140]);
  assert.equal(drained, true);
  assert.equal(sink.stats().unheard_dropped, 0);
  assert.equal(sink.stats().late_sends, 0);
});

Deno.test("udp-sink wait_for_peer, paced: a stream that ends unheard sends nothing, counts what it held, and end() resolves", async () => {
  const { clock, sent, sink } = pacedSink({ wait_for_peer: true });
  for (let i = 0; i < 3; i++) sink.write(rtp(i, i * 160));
  await clock.advanceAsync(1000);
  await sink.end();
  await clock.advanceAsync(100);
  assert.equal(sent.length, 0);
  assert.equal(sink.stats().unheard_dropped, 3);
  assert.equal(sink.stats().queue_depth, 0);
  sink.close();
});

Deno.test("udp-sink offset_ms: every packet that much after its due time, the timeline and resync unchanged", async () => {
  const { clock, sent, sink, seqOf } = pacedSink({ offset_ms: 7, resync_ms: 100 });
  // The last is due 107 ms from now: 100 ms after its offset, not beyond the 100 ms resync threshold.
  for (let i = 0; i < 6; i++) sink.write(rtp(i, 5000 + i * 160));
  assert.equal(sent.length, 0, "the first packet waits for its offset too");
  await clock.advanceAsync(200);
  // A timestamp jump of 1 s restarts the timeline at the packet, still 7 ms after it is written.
  sink.write(rtp(6, 5000 + 6 * 160 + 8000));
  await clock.advanceAsync(100);
  assert.deepEqual(
    sent.map((s) => [s.t - 1000, seqOf(s.data)]),
    [[7, 0], [27, 1], [47, 2], [67, 3], [87, 4], [107, 5], [207, 6]],
  );
  assert.equal(sink.stats().resyncs, 1);
});

Deno.test("udp-sink offset_ms above queue_ms: a writer that waits on drained() is held back, never stalled", async () => {
  const { clock, sent, sink, seqOf } = pacedSink({ offset_ms: 500 }); // queue_ms 100 (default)
  let waits = 0;
  const writer = (async () => {
    for (let i = 0; i < 10; i++) {
      if (!sink.write(rtp(i, 5000 + i * 160))) {
        waits++;
        await sink.drained();
      }
    }
  })();
  await clock.advanceAsync(1000, 5);
  await writer;
  assert.deepEqual(sent.map((s) => [s.t - 1000, seqOf(s.data)]), [...Array(10).keys()].map((i) => [500 + i * 20, i]));
  assert.ok(waits > 0, "the offset counts toward queue_ms");
  assert.equal(sink.stats().resyncs, 0);
});

Deno.test("udp-sink borrows its input: packet frames written from one reused array go out each with its own bytes", async () => {
  assert.equal(udpSink.borrowsInput, true);
  const { clock, sent, sink } = pacedSink();
  // What a stage before a borrowing sink may do (StageContext.reuseOutput): write every frame into one array.
  const data = new Uint8Array(4);
  for (let i = 0; i < 5; i++) {
    data.fill(i);
    sink.write({ kind: "packet", data });
  }
  data.fill(99);
  await clock.advanceAsync(200);
  // All but the first waited in the queue, paced 20 ms apart.
  assert.deepEqual(sent.map((s) => [s.t - 1000, ...s.data]), [0, 1, 2, 3, 4].map((i) => [i * 20, i, i, i, i]));
});

Deno.test("udp-sink pacing: drift-free across a 32-bit timestamp wrap, by timestamps not arrival", async () => {
  const { clock, sent, sink } = pacedSink({ queue_ms: 1000 });
  const ts0 = 0xffffffff - 2 * 160 + 1;
  for (let i = 0; i < 6; i++) sink.write(rtp(i, ts0 + i * 160));
  // A 40 ms gap in timestamps (a lost or suppressed packet) keeps its place on the timeline.
  sink.write(rtp(6, ts0 + 8 * 160));
  await clock.advanceAsync(200);
  assert.deepEqual(sent.map((s) => s.t - 1000), [0, 20, 40, 60, 80, 100, 160]);
});

Deno.test("udp-sink pacing: late writes do not shift the timeline; big jumps resync", async () => {
  const { clock, sent, sink } = pacedSink();
  sink.write(rtp(0, 0));
  await clock.advanceAsync(45); // upstream late: packet 1 (due 20) arrives at 45
  sink.write(rtp(1, 160));
  sink.write(rtp(2, 320)); // due 40: also past
  sink.write(rtp(3, 480)); // due 60: on time
  await clock.advanceAsync(50);
  assert.deepEqual(sent.map((s) => s.t - 1000), [0, 45, 45, 60]);
  assert.equal(sink.stats().late_sends, 2);
  // A 10 s timestamp jump restarts the timeline instead of waiting 10 s.
  sink.write(rtp(4, 480 + 80000));
  sink.write(rtp(5, 480 + 80000 + 160));
  await clock.advanceAsync(40);
  assert.deepEqual(sent.map((s) => s.t - 1000), [0, 45, 45, 60, 95, 115]);
  assert.equal(sink.stats().resyncs, 1);
});

Deno.test("udp-sink pacing: packet frames every ptime, end() drains on schedule", async () => {
  const { clock, sent, sink } = pacedSink({ ptime: 30 });
  for (let i = 0; i < 4; i++) sink.write({ kind: "packet", data: new Uint8Array([i]) });
  let ended = false;
  const end = sink.end().then(() => ended = true);
  await clock.advanceAsync(60);
  assert.equal(ended, false, "end() waits for the queue");
  await clock.advanceAsync(30);
  await end;
  assert.deepEqual(sent.map((s) => [s.t - 1000, s.data[0]]), [[0, 0], [30, 1], [60, 2], [90, 3]]);
});

Deno.test("udp-sink: stop discards the queue and end() resolves at once", async () => {
  const { clock, sent, sink, abort } = pacedSink();
  for (let i = 0; i < 5; i++) sink.write(rtp(i, i * 160));
  let drained = false;
  sink.drained().then(() => drained = true);
  abort.abort();
  await sink.end();
  await clock.advanceAsync(200);
  assert.equal(sent.length, 1);
  assert.equal(sink.stats().discarded, 4);
  assert.equal(drained, true, "drained() resolves on stop");
  assert.equal(sink.write(rtp(9, 9 * 160)), false);
});

Deno.test("udp-sink pacing: a new SSRC restarts the timeline after the queued packets", async () => {
  const { clock, sent, sink } = pacedSink();
  sink.write(rtp(0, 0, 1));
  sink.write(rtp(1, 160, 1));
  sink.write(rtp(0, 999999, 2)); // new stream: due right after the last queued packet
  sink.write(rtp(1, 999999 + 160, 2));
  await clock.advanceAsync(100);
  assert.deepEqual(sent.map((s) => s.t - 1000), [0, 20, 20, 40]);
});

Deno.test("udp-sink unpaced: sends at once, drained() resolves", async () => {
  const peer = rawSocket();
  const t = testContext();
  const sink = await createStage<SinkStage>(udpSink, { to: `127.0.0.1:${portOf(peer)}`, pace: false }, t.ctx);
  await sink.start!(t.ctx);
  try {
    for (let i = 0; i < 20; i++) sink.write({ kind: "packet", data: new Uint8Array([i]) });
    await sink.drained!();
    await sink.end!();
    assert.equal(sink.stats!().packets_sent, 20);
    const buf = new Uint8Array(8);
    for (let i = 0; i < 20; i++) assert.equal((await peer.receive(buf))[0][0], i);
  } finally {
    peer.close();
    await sink.close?.();
    await t.release();
  }
});

Deno.test("pipeline: udp-source → udp-sink relay ends at the source timeout (runner, real clock)", async () => {
  const dest = rawSocket();
  const from = rawSocket();
  const registry = new Registry(plugins);
  const p = await buildPipeline("relay", [
    { use: "udp-source", bind: "127.0.0.1", port: 0, port_range: TEST_RANGE, timeout: 0.3 },
    { use: "udp-sink", to: `127.0.0.1:${portOf(dest)}`, pace: false },
  ], { registry });
  const events: string[] = [];
  p.on("*", (e) => events.push(e.type));
  const port = p.stats()[0].extra!.port as number;
  p.start();
  try {
    await from.send(new Uint8Array([42]), { transport: "udp", hostname: "127.0.0.1", port });
    const [data] = await dest.receive(new Uint8Array(8));
    assert.equal(data[0], 42);
    const r = await p.done; // ~0.3 s after the datagram, the source times out
    assert.equal(r.reason, "eos");
    assert.ok(events.includes("timeout"));
    assert.equal(r.stats[1].extra!.packets_sent, 1);
  } finally {
    await p.stop();
    dest.close();
    from.close();
  }
  // The shared socket was released with the pipeline: the port is free again.
  Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port }).close();
});

Deno.test("pipeline: a live udp-source keeps reading while its sink pushes back", async () => {
  const from = rawSocket();
  const got: number[] = [];
  // A sink that is always full and never drains (a speaker whose queue a playout keeps full).
  const full = definePlugin({
    name: "full-sink",
    kind: "sink",
    description: "never drains",
    accepts: [{ kind: "packet" }],
    options: z.object({}),
    create: () => ({
      write(f: Frame) {
        if (f.kind === "packet") got.push(f.data[0]);
        return false;
      },
      drained: () => new Promise<void>(() => {}),
    }),
  });
  const registry = new Registry([...plugins, full]);
  const p = await buildPipeline("rx", [
    { use: "udp-source", bind: "127.0.0.1", port: 0, port_range: TEST_RANGE },
    { use: "full-sink" },
  ], { registry });
  const port = p.stats()[0].extra!.port as number;
  p.start();
  try {
    for (let i = 0; i < 5; i++) {
      await from.send(new Uint8Array([i]), { transport: "udp", hostname: "127.0.0.1", port });
      await until(() => got.length === i + 1, `datagram ${i} while the sink is full`);
    }
    assert.deepEqual(got, [0, 1, 2, 3, 4]);
  } finally {
    await p.stop();
    from.close();
  }
});

/** Frames of any kind other than rtp/packet are refused with a hint. */
Deno.test("udp-sink: refuses pcm frames with a hint", () => {
  const { sink } = pacedSink();
  const pcm = { kind: "pcm", samples: new Int16Array(1), sampleRate: 8000, channels: 1, pts: 0 } as Frame;
  assert.throws(() => sink.write(pcm), /rtp-packetizer/);
});

Deno.test("udp-source: the peer's port closed mid-stream (ICMP port unreachable for what the session sends): said once at info, counted, the stream goes on and ends at its timeout", async () => {
  const clock = new VirtualClock();
  const net = new MemoryNetwork({ clock, latencyMs: 1 });
  const session = new Session({ id: "icmp", clock, net });
  const out = new MemoryOutput();
  const log = new Logger({ level: "debug", outputs: [out] });
  const peerAddr = "10.0.0.1:40000";
  const t = testContext({ session });
  const ctx = { ...t.ctx, log };
  const src = await createStage<SourceStage>(
    udpSource,
    { bind: "10.0.0.2", port: 30000, peer: peerAddr, timeout: 1 },
    ctx,
  );
  const running = src.run(ctx);
  const sink = await createStage<SinkStage>(
    udpSink,
    { to: peerAddr, bind: "10.0.0.2", local_port: 30000, pace: false },
    ctx,
  );
  await sink.start!(ctx);
  const peer = net.bind("10.0.0.1", 40000);
  const got: number[] = [];
  peer.listen((d) => void got.push(d[0]));
  const to = { hostname: "10.0.0.2", port: 30000 };
  // The peer sends and receives for 200 ms, then closes its port; we go on sending for 500 ms into ICMP errors.
  for (let k = 0; k < 35; k++) {
    if (k < 10) peer.post(new Uint8Array([k]), to);
    if (k === 10) await peer.close();
    sink.write({ kind: "packet", data: new Uint8Array([k]) });
    await clock.advanceAsync(20);
  }
  assert.equal(got.length, 10, "the peer got what was sent while it listened");
  assert.equal(t.out.length, 10, "what the peer sent was received");
  const s = src.stats!();
  assert.equal(s.port_unreachable, 25, "every datagram sent into the closed port is counted");
  assert.equal(s.receive_errors, 25);
  const said = out.lines.filter((l) => /port unreachable/i.test(l));
  assert.equal(said.length, 1, `said once:\n${said.join("\n")}`);
  assert.match(said[0], /INFO .*the peer's port 10\.0\.0\.1:40000 is closed \(ICMP port unreachable/);
  assert.match(said[0], /ends after 1 s without packets/);
  assert.deepEqual(t.errors, [], "no chain failure");
  // No datagram from the peer since t = 200 ms: the stream ends at its timeout (no crash, no spin).
  await clock.advanceAsync(1000);
  await running;
  assert.ok(t.events.some((e) => e.type === "timeout"), "timeout event");
  await sink.end!();
  await sink.close?.();
  await src.close?.();
  await t.release();
});

Deno.test("udp-sink: while its session holds its sends (an incoming call not answered yet), nothing goes out: paced, the stream is queued and starts at the release; unpaced, it is dropped and counted; a stop while held ends it", async () => {
  const clock = new VirtualClock();
  const net = new MemoryNetwork({ clock, latencyMs: 1 });
  const peer = net.bind("10.0.0.1", 40000);
  const got: { seq: number; at: number }[] = [];
  peer.listen((d) => void got.push({ seq: (d[2] << 8) | d[3], at: clock.now() }));
  // Paced: held, then sent on a timeline that starts at the release.
  const session = new Session({ id: "held", clock, net });
  const release = session.holdSends();
  const t = testContext({ session });
  const sink = await createStage<SinkStage>(
    udpSink,
    { to: "10.0.0.1:40000", bind: "10.0.0.2", local_port: 30000 },
    t.ctx,
  );
  await sink.start!(t.ctx);
  for (let i = 0; i < 5; i++) sink.write(rtp(i, i * 160));
  await clock.advanceAsync(500, 10);
  assert.equal(got.length, 0, "nothing is sent while held");
  release();
  await clock.advanceAsync(200, 10);
  assert.deepEqual(got.map((g) => g.seq), [0, 1, 2, 3, 4]);
  assert.ok(got[0].at >= 500, "the stream starts at the release");
  assert.equal(got[4].at - got[0].at, 80, "then on its own timeline");
  await sink.end!();
  await sink.close?.();
  await t.release();
  // Unpaced: dropped while held.
  got.length = 0;
  const s2 = new Session({ id: "held-unpaced", clock, net });
  const r2 = s2.holdSends();
  const t2 = testContext({ session: s2 });
  const unpaced = await createStage<SinkStage>(
    udpSink,
    { to: "10.0.0.1:40000", bind: "10.0.0.2", local_port: 30002, pace: false },
    t2.ctx,
  );
  await unpaced.start!(t2.ctx);
  unpaced.write(rtp(7, 0));
  r2();
  unpaced.write(rtp(8, 160));
  await clock.advanceAsync(20, 10);
  assert.deepEqual(got.map((g) => g.seq), [8]);
  assert.equal(unpaced.stats!().unanswered_dropped, 1);
  await unpaced.end!();
  await unpaced.close?.();
  await t2.release();
  // Never released: the chain is stopped (the call was refused or cancelled): nothing sent, end() returns.
  got.length = 0;
  const s3 = new Session({ id: "held-stopped", clock, net });
  s3.holdSends();
  const t3 = testContext({ session: s3 });
  const never = await createStage<SinkStage>(
    udpSink,
    { to: "10.0.0.1:40000", bind: "10.0.0.2", local_port: 30004 },
    t3.ctx,
  );
  await never.start!(t3.ctx);
  never.write(rtp(1, 0));
  const ending = never.end!();
  await clock.advanceAsync(100, 10);
  t3.abort.abort();
  await ending;
  await clock.advanceAsync(100, 10);
  assert.equal(got.length, 0);
  await never.close?.();
  await t3.release();
  await peer.close();
});
