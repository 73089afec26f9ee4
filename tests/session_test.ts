/**
 * Tests of the core network layer's in-memory network and of sessions: what a
 * call's chains share, and that closing a session releases all of it.
 */
import { assert, assertEquals, assertThrows } from "./assert.ts";
import { VirtualClock } from "../core/clock.ts";
import type { HostPort } from "../core/net/address.ts";
import { AddressInUseError, PortUnreachableError } from "../core/net/datagram.ts";
import { MemoryNetwork } from "../core/net/memory.ts";
import { PortAllocator } from "../core/net/ports.ts";
import { ResourceKind, Session } from "../core/session.ts";
import { Bus, type BusSubscription } from "../core/bus.ts";
import type { PcmFrame } from "../core/frame.ts";
import { buildPipeline } from "../core/pipeline.ts";
import { createRegistry } from "../mod.ts";

Deno.test("MemoryNetwork: datagrams arrive after the latency on the clock, copied, from the sender's address", () => {
  const clock = new VirtualClock();
  const net = new MemoryNetwork({ clock, latencyMs: 5 });
  const a = net.bind("10.0.0.1", 5060);
  const b = net.bind("10.0.0.2", 5062);
  const got: [number[], HostPort][] = [];
  b.listen((d, from) => void got.push([[...d], from]));
  const data = new Uint8Array([1, 2, 3]);
  a.post(data, b.local);
  data[0] = 9; // the network took a copy
  clock.advance(4);
  assertEquals(got.length, 0);
  clock.advance(1);
  assertEquals(got, [[[1, 2, 3], { hostname: "10.0.0.1", port: 5060 }]]);
  assertEquals(net.delivered, 1);
});

Deno.test("MemoryNetwork: ports in use, ephemeral ports, wildcard binds, oversize drops", () => {
  const clock = new VirtualClock();
  const net = new MemoryNetwork({ clock });
  net.bind("10.0.0.1", 5060);
  assertThrows(() => net.bind("10.0.0.1", 5060), AddressInUseError, "already in use");
  const e1 = net.bind("10.0.0.1", 0), e2 = net.bind("10.0.0.1", 0);
  assert(e1.port >= 49152 && e2.port !== e1.port);
  const any = net.bind("0.0.0.0", 7000);
  const seen: number[] = [];
  let oversize = 0;
  any.listen((d) => void seen.push(d.length), { maxSize: 100, onOversize: () => oversize++ });
  e1.post(new Uint8Array(10), { hostname: "10.9.9.9", port: 7000 });
  e1.post(new Uint8Array(101), { hostname: "10.9.9.9", port: 7000 });
  clock.advance(1);
  assertEquals(seen, [10]);
  assertEquals(oversize, 1);
});

Deno.test("MemoryNetwork: a datagram to a port nobody bound comes back as PortUnreachableError", () => {
  const clock = new VirtualClock();
  const net = new MemoryNetwork({ clock, latencyMs: 2 });
  const a = net.bind("10.0.0.1", 5060);
  const errors: unknown[] = [];
  a.listen(() => {}, { onError: (e) => errors.push(e) });
  a.post(new Uint8Array(1), { hostname: "10.0.0.2", port: 5998 });
  clock.advance(4);
  assertEquals(errors.length, 1);
  assert(errors[0] instanceof PortUnreachableError);
  assertEquals((errors[0] as PortUnreachableError).to, { hostname: "10.0.0.2", port: 5998 });
  assertEquals(net.undeliverable, 1);
});

Deno.test("MemoryNetwork: seeded loss is reproducible; impair delays or drops each datagram", () => {
  const run = (seed: number) => {
    const clock = new VirtualClock();
    const net = new MemoryNetwork({ clock, loss: 0.3, seed });
    const a = net.bind("10.0.0.1", 1), b = net.bind("10.0.0.2", 2);
    const got: number[] = [];
    b.listen((d) => void got.push(d[0]));
    for (let i = 0; i < 100; i++) a.post(new Uint8Array([i]), b.local);
    clock.advance(10);
    return got;
  };
  const first = run(7);
  assertEquals(run(7), first, "same seed, same losses");
  assert(first.length > 50 && first.length < 90, `${first.length} of 100 arrived`);

  const clock = new VirtualClock();
  // Odd datagrams dropped, even ones delayed by 10 ms minus their value: they arrive reversed.
  const net = new MemoryNetwork({
    clock,
    latencyMs: 0,
    impair: (d) => (d[0] % 2 ? undefined : { delayMs: 10 - d[0] }),
  });
  const a = net.bind("10.0.0.1", 1), b = net.bind("10.0.0.2", 2);
  const got: number[] = [];
  b.listen((d) => void got.push(d[0]));
  for (let i = 0; i < 6; i++) a.post(new Uint8Array([i]), b.local);
  clock.advance(20);
  assertEquals(got, [4, 2, 0]);
  assertEquals(net.dropped, 3);
});

Deno.test("Session: stages asking for the same bind:port share a socket; the pair's ports are its sockets", async () => {
  const clock = new VirtualClock();
  const net = new MemoryNetwork({ clock });
  const pair = new PortAllocator(net, [20000, 20010]).pair("0.0.0.0");
  const session = new Session({ id: "call-1", clock, net, ports: pair });
  assertEquals(session.socket("127.0.0.1", pair.rtpPort), pair.rtp, "a wildcard pair serves a specific address");
  assertEquals(session.socket("0.0.0.0", pair.rtcpPort), pair.rtcp);
  const x = session.socket("10.0.0.1", 4000);
  assertEquals(session.socket("10.0.0.1", 4000), x);
  // Another session cannot take the same port.
  const other = new Session({ id: "call-2", clock, net });
  assertThrows(() => other.socket("10.0.0.1", 4000), AddressInUseError);
  // Port 0 with a range: a new pair; its odd port waits for the RTCP stage.
  const rtp = session.socket("10.0.0.1", 0, [30000, 30009]);
  assertEquals(rtp.port % 2, 0);
  assertEquals(session.socket("10.0.0.1", rtp.port + 1).port, rtp.port + 1);
  await session.close();
  for (const s of [pair.rtp, pair.rtcp, x, rtp]) assert(s.closed);
  assertThrows(() => session.socket("10.0.0.1", 4000), Error, "closed");
  // Freed: another session can bind them now.
  other.socket("10.0.0.1", 4000);
  other.socket("0.0.0.0", pair.rtpPort);
  await other.close();
});

Deno.test("Session: resources are created once per kind and id, disposed newest first before the sockets close", async () => {
  const clock = new VirtualClock();
  const net = new MemoryNetwork({ clock });
  const session = new Session({ id: "s", clock, net });
  const order: string[] = [];
  const sock = session.socket("10.0.0.1", 5004);
  const A = new ResourceKind<{ name: string }>("a", (v) => void order.push(`${v.name} (socket open: ${!sock.closed})`));
  const B = new ResourceKind<{ name: string }>("b", (v) => void order.push(v.name));
  let created = 0;
  const a1 = session.resource(A, "x", () => ({ name: `a${++created}` }));
  assertEquals(session.resource(A, "x", () => ({ name: "never" })), a1);
  session.resource(A, "y", () => ({ name: `a${++created}` }));
  session.resource(B, "x", () => ({ name: "b" }));
  await session.close();
  assertEquals(order, ["b", "a2 (socket open: true)", "a1 (socket open: true)"]);
  assert(sock.closed);
  assertThrows(() => session.resource(A, "z", () => ({ name: "late" })), Error, "closed");
});

Deno.test("Session: a pipeline built in it publishes its events there; a pipeline without one owns its own", async () => {
  const clock = new VirtualClock();
  const session = new Session({ id: "s", clock });
  const seen: string[] = [];
  session.on((e) => seen.push(`${e.pipeline}:${e.type}`));
  const registry = createRegistry();
  const p = await buildPipeline("tone", [{ use: "tone-source", duration: 0.04 }, { use: "null-sink" }], {
    registry,
    session,
  });
  assertEquals(p.session, session);
  await p.run();
  assertEquals(seen, ["tone:started", "tone:ended"]);
  assert(!session.closed, "the owner closes the session, not the pipeline");
  const q = await buildPipeline("own", [{ use: "tone-source", duration: 0.02 }, { use: "null-sink" }], {
    registry,
    clock,
  });
  await q.run();
  assert(q.session.closed, "a pipeline's own session closes with it");
  await session.close();
});

const pcm = (n: number): PcmFrame => ({
  kind: "pcm",
  samples: new Int16Array([n]),
  sampleRate: 8000,
  channels: 1,
  pts: n,
});

Deno.test("Bus: every subscriber gets every frame in order; end of stream once every publisher ended", async () => {
  const session = new Session({ id: "s", clock: new VirtualClock() });
  const bus = session.bus("caller");
  assertEquals(session.bus("caller"), bus);
  const a = bus.subscribe(), b = bus.subscribe();
  const p1 = bus.attachPublisher(), p2 = bus.attachPublisher();
  for (let i = 0; i < 3; i++) bus.publish(pcm(i));
  p1();
  assertEquals(bus.ended, false);
  const pending = a.next(); // frame 0, already queued
  assertEquals(((await pending) as PcmFrame).pts, 0);
  p2();
  assertEquals(bus.ended, true);
  const rest = async (s: BusSubscription) => {
    const got: number[] = [];
    for (let f = await s.next(); f; f = await s.next()) got.push((f as PcmFrame).pts);
    return got;
  };
  assertEquals(await rest(a), [1, 2]);
  assertEquals(await rest(b), [0, 1, 2]);
  await session.close();
});

Deno.test("Bus: backpressure follows the slowest reader; a reader that stops reading loses its oldest frames", async () => {
  const bus = new Bus("x");
  const fast = bus.subscribe(4), slow = bus.subscribe(4, 8);
  bus.attachPublisher();
  const accepted: boolean[] = [];
  for (let i = 0; i < 4; i++) {
    accepted.push(bus.publish(pcm(i)));
    fast.poll();
  }
  assertEquals(accepted, [true, true, true, false], "the slow reader holds 4 = its high-water mark");
  let drained = false;
  bus.drained().then(() => drained = true);
  slow.poll();
  await Promise.resolve();
  assertEquals(drained, false, "3 queued: above half of 4");
  slow.poll();
  await Promise.resolve();
  assertEquals(drained, true);
  for (let i = 4; i < 20; i++) bus.publish(pcm(i));
  assertEquals(slow.queued, 8);
  assertEquals(slow.dropped, 10, "2 left + 16 published, 8 kept");
  assertEquals((slow.poll() as PcmFrame).pts, 12, "the newest 8 are kept");
  slow.close();
  assertEquals(bus.subscribers, 1);
});

Deno.test("Bus: connect bridges a bus of one session into another's; disconnecting ends the target's stream", async () => {
  const clock = new VirtualClock();
  const a = new Session({ id: "leg-a", clock }), b = new Session({ id: "leg-b", clock });
  const from = a.bus("rx"), to = b.bus("tx");
  const reader = to.subscribe();
  const pub = from.attachPublisher();
  const disconnect = from.connect(to);
  from.publish(pcm(7));
  assertEquals(((await reader.next()) as PcmFrame).pts, 7);
  assertThrows(() => from.connect(from), Error, "itself");
  disconnect();
  assertEquals(await reader.next(), undefined, "the bridge was the target's only publisher");
  pub();
  // A bridge also ends with its source's stream, and carries the format over.
  const src = a.bus("rx2"), dst = b.bus("tx2");
  src.format = { kind: "pcm", sampleRate: 8000, channels: 1 };
  const r2 = dst.subscribe();
  const pub2 = src.attachPublisher();
  src.connect(dst);
  assertEquals(dst.format, src.format);
  src.publish(pcm(8));
  pub2();
  assertEquals(((await r2.next()) as PcmFrame).pts, 8);
  assertEquals(await r2.next(), undefined, "the source's end of stream crossed the bridge");
  await a.close();
  await b.close();
});

Deno.test("PortAllocator: a pair whose RTCP bind fails (out of descriptors) throws that error and keeps no RTP socket open", () => {
  const clock = new VirtualClock();
  const net = new MemoryNetwork({ clock });
  const opened: { port: number; closed: boolean }[] = [];
  let failAt = 2; // the second bind: the first pair's RTCP port
  const failing = {
    bind(hostname: string, port: number) {
      if (--failAt === 0) {
        throw Object.assign(new Error("Too many open files (os error 24)"), { code: "EMFILE" });
      }
      const s = net.bind(hostname, port);
      opened.push(s);
      return s;
    },
  } as unknown as MemoryNetwork;
  const ports = new PortAllocator(failing, [20000, 20001]);
  assertThrows(() => ports.pair("10.0.0.1"), Error, "Too many open files");
  assertEquals(opened.length, 1);
  assert(opened[0].closed, "the RTP socket bound before the failure is closed");
  // Descriptors back: the same pair binds.
  const pair = ports.pair("10.0.0.1");
  assertEquals(pair.rtpPort, 20000);
});
