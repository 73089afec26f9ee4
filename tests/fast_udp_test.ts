/**
 * The fast datagram path (`core/net/media_loop.ts`, `core/net/fast.ts`) over
 * loopback: bytes and senders on IPv4, IPv6 and dual-stack sockets, ordering,
 * batching, oversize, closing frees the port, ports in use, ICMP
 * port-unreachable as PortUnreachableError, paused receiving, 1 000 sockets on
 * one loop, the loop's clock, a loop in a Web Worker, the loop letting its
 * process exit, sessions and the udp/rtp pipelines unchanged on it, and the
 * fallback when FFI is refused. No assertion depends on timing: waits are
 * bounded, and only what arrived (and in which order) is checked; receivers
 * count only datagrams from the test's own senders (the machine is shared: a
 * port just taken may still get another process's traffic).
 */
import { assert, assertEquals, assertMatch, assertThrows } from "./assert.ts";
import { canonicalHost, type HostPort } from "../core/net/address.ts";
import { AddressInUseError, type DatagramSocket, PortUnreachableError } from "../core/net/datagram.ts";
import { createFastNetwork, fastUdpPlatformProblem, fastUdpUnavailable, mediaFromEnv } from "../core/net/fast.ts";
import { FastUdpSocket, MediaLoop, SPIN_RESERVE_MS } from "../core/net/media_loop.ts";
import { PortAllocator } from "../core/net/ports.ts";
import { udpNetwork } from "../core/net/udp.ts";
import { Session } from "../core/session.ts";
import { buildPipeline } from "../core/pipeline.ts";
import { runPipelineFile } from "../core/runner.ts";
import { Logger } from "../core/log.ts";
import { definePlugin } from "../core/stage.ts";
import type { Frame } from "../core/frame.ts";
import { z } from "zod";
import { createRegistry } from "../mod.ts";
import { assertSampleExact, freeUdpPortPair, readWav, spawnCli, writeFixture } from "./media_util.ts";
import { freeUdpPort } from "./sip_util.ts";
import { rtpBurst } from "./rtp_burst_util.ts";
import { repoPath } from "./util.ts";

/** Waits (bounded, real time) until `cond()` holds; the bound only turns a hang into a failure. */
async function until(cond: () => boolean, what: string, ms = 10_000): Promise<void> {
  const end = performance.now() + ms;
  while (!cond()) {
    if (performance.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

/** Runs `fn` with a fresh loop, closed afterwards whatever happens. */
async function withLoop(fn: (loop: MediaLoop) => Promise<void>, opts = {}): Promise<void> {
  const loop = new MediaLoop(opts);
  try {
    await fn(loop);
  } finally {
    await loop.close();
    await new Promise((r) => setTimeout(r, 0)); // let a turn already scheduled see the loop closed
  }
}

const bytes = (...xs: number[]) => new Uint8Array(xs);

Deno.test("fast udp: IPv4, IPv6 and dual-stack loopback: the bytes, the sender, the bound address", async () => {
  await withLoop(async (loop) => {
    const cases: [string, string, string][] = [
      ["127.0.0.1", "127.0.0.1", "127.0.0.1"],
      ["::1", "::1", "::1"],
      ["0.0.0.0", "127.0.0.1", "127.0.0.1"],
      ["::", "127.0.0.1", "127.0.0.1"], // an IPv4 sender on a dual-stack socket is reported as IPv4
      ["::", "::1", "::1"],
    ];
    for (const [bind, senderBind, expectFrom] of cases) {
      const rx = loop.network.bind(bind, 0);
      const tx = loop.network.bind(senderBind, 0);
      assertEquals(rx.hostname, canonicalHost(bind));
      assertEquals(rx.family, bind.includes(":") ? 6 : 4);
      assert(rx.port > 0);
      const got: [number[], HostPort][] = [];
      rx.listen((data, from) => {
        if (from.port === tx.port) got.push([[...data], from]); // not another process's stray datagram
      });
      const to = { hostname: senderBind === "::1" ? "::1" : "127.0.0.1", port: rx.port };
      assertEquals(await tx.send(bytes(1, 2, 3, 250), to), 4);
      await until(() => got.length === 1, `the datagram on ${bind}`);
      assertEquals(got[0], [[1, 2, 3, 250], { hostname: expectFrom, port: tx.port }]);
      await rx.close();
      await tx.close();
    }
  });
});

Deno.test("fast udp: an explicit port: the bound address as given; a socket that listens late gets what waited", async () => {
  await withLoop(async (loop) => {
    for (const [bind, senderBind] of [["127.0.0.1", "127.0.0.1"], ["::", "127.0.0.1"], ["::1", "::1"]]) {
      const port = freeUdpPort(bind);
      const rx = loop.network.bind(bind, port);
      assertEquals([rx.hostname, rx.port], [canonicalHost(bind), port]);
      const tx = loop.network.bind(senderBind, 0);
      const to = { hostname: senderBind, port };
      // Sent before rx listens (it is not in the loop's epoll set yet): queued by the kernel, delivered at listen.
      assertEquals(await tx.send(bytes(9, 8), to), 2);
      const got: number[][] = [];
      rx.listen((data, from) => {
        if (from.port === tx.port) got.push([...data]);
      });
      assertEquals(await tx.send(bytes(7), to), 1);
      await until(() => got.length === 2, `both datagrams on ${bind}:${port}`);
      assertEquals(got, [[9, 8], [7]]);
      await rx.close();
      await tx.close();
      // Closed without being taken out of the epoll set first: the port is free, and the loop goes on.
      loop.network.bind(bind, port).close();
    }
    assertEquals(loop.stats().sockets, 0);
  });
});

/**
 * The bytes the kernel holds queued for the IPv4 UDP socket bound to `port` (the `rx_queue` of /proc/net/udp: the sum
 * of the queued datagrams' buffer sizes), read without touching the socket.
 */
function kernelQueuedBytes(port: number): number {
  const hexPort = port.toString(16).toUpperCase().padStart(4, "0");
  for (const line of Deno.readTextFileSync("/proc/net/udp").split("\n").slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length > 4 && f[1].endsWith(`:${hexPort}`)) return parseInt(f[4].split(":")[1], 16);
  }
  throw new Error(`no UDP socket on port ${port} in /proc/net/udp`);
}

Deno.test("fast udp: datagrams leave and arrive in call order, in batches; listeners are told in order", async () => {
  await withLoop(async (loop) => {
    const rx = loop.network.bind("127.0.0.1", 0);
    const tx = loop.network.bind("127.0.0.1", 0);
    const got: number[] = [];
    const told: number[] = [];
    const N = 200;
    // The size one queued datagram of this length takes in a receive queue (the loop does not read a socket nobody
    // listens to): learned on a scratch socket, so that the test can wait until the kernel holds all N for rx.
    const scratch = loop.network.bind("127.0.0.1", 0);
    await tx.send(bytes(0, 0, 7), scratch.local);
    await until(() => kernelQueuedBytes(scratch.port) > 0, "the scratch datagram in the kernel");
    const perDatagram = kernelQueuedBytes(scratch.port);
    await scratch.close();
    const sendCallsBefore = loop.stats().sendCalls;
    for (let i = 0; i < N; i++) {
      tx.post(bytes(i & 0xff, i >> 8, 7), rx.local, {
        sent: (n) => told.push(i * 10 + n),
        failed: (e) => told.push(-1, e as never),
      });
    }
    assertEquals(tx.sendBacklog, N); // queued until the end of this task
    await until(() => told.length === N, "every datagram sent");
    assertEquals(told, Array.from({ length: N }, (_, i) => i * 10 + 3));
    assertEquals(tx.sendBacklog, 0);
    // Posted in one task: left with a few sendmmsg calls (up to 64 datagrams each), however loaded the machine is.
    const sendCalls = loop.stats().sendCalls - sendCallsBefore;
    assert(sendCalls <= Math.ceil(N / 64) + 1, `sendCalls ${sendCalls}`);
    // All N queued in the kernel before anyone listens: the loop reads them with a few recvmmsg calls.
    await until(() => kernelQueuedBytes(rx.port) >= N * perDatagram, `${N} datagrams queued for rx`);
    const receiveCallsBefore = loop.stats().receiveCalls;
    let strays = 0; // the machine is shared: another process may send to a port it used before
    rx.listen((d, from) => {
      if (from.port === tx.port) got.push(d[0] | (d[1] << 8));
      else strays++;
    });
    await until(() => got.length === N, "every datagram");
    assertEquals(got, Array.from({ length: N }, (_, i) => i));
    const receiveCalls = loop.stats().receiveCalls - receiveCallsBefore;
    assert(receiveCalls <= Math.ceil(N / 64) + 2 + strays, `receiveCalls ${receiveCalls}`);
    assertEquals(loop.stats().received - strays, N);
  }, { receiveBufferBytes: 1 << 20 });
});

Deno.test("fast udp: a datagram over maxSize goes to onOversize; a larger maxSize takes it", async () => {
  await withLoop(async (loop) => {
    const rx = loop.network.bind("127.0.0.1", 0);
    const tx = loop.network.bind("127.0.0.1", 0);
    const got: number[] = [];
    const over: HostPort[] = [];
    rx.listen((d, from) => {
      if (from.port === tx.port) got.push(d.length);
    }, { maxSize: 100, onOversize: (from) => from.port === tx.port && over.push(from) });
    tx.post(new Uint8Array(100), rx.local);
    tx.post(new Uint8Array(101), rx.local);
    tx.post(new Uint8Array(5000), rx.local);
    tx.post(new Uint8Array(1), rx.local);
    await until(() => got.length + over.length === 4, "four datagrams");
    assertEquals(got, [100, 1]);
    assertEquals(over, [{ hostname: "127.0.0.1", port: tx.port }, { hostname: "127.0.0.1", port: tx.port }]);
    const big = new Uint8Array(9000).map((_, i) => i & 0xff);
    const gotBig: Uint8Array[] = [];
    rx.listen((d, from) => {
      if (from.port === tx.port) gotBig.push(d);
    }, { maxSize: 9000 });
    tx.post(big, rx.local);
    await until(() => gotBig.length === 1, "the 9000-byte datagram");
    assertEquals([...gotBig[0]], [...big]);
    assertThrows(() => rx.listen(() => {}, { maxSize: 0 }), RangeError, "maxSize");
  });
});

Deno.test("fast udp: close frees the port at once; a port in use is an AddressInUseError", async () => {
  await withLoop(async (loop) => {
    const a = loop.network.bind("127.0.0.1", 0);
    const port = a.port;
    assertThrows(() => loop.network.bind("127.0.0.1", port), AddressInUseError, "already in use");
    assertThrows(() => udpNetwork.bind("127.0.0.1", port), AddressInUseError);
    a.listen(() => {});
    await a.close();
    await a.close(); // idempotent
    assert(a.closed);
    // Free for both kinds of socket now.
    const deno = udpNetwork.bind("127.0.0.1", port);
    assertThrows(() => loop.network.bind("127.0.0.1", port), AddressInUseError, `127.0.0.1:${port}`);
    await deno.close();
    const again = loop.network.bind("127.0.0.1", port);
    assertEquals(again.port, port);
    await again.close();
    // A port pair from the allocator, on this network.
    const pair = new PortAllocator(loop.network, [41000, 41100]).pair("127.0.0.1");
    assertEquals(pair.rtcpPort, pair.rtpPort + 1);
    assert(pair.rtp instanceof FastUdpSocket);
    await pair.close();
    loop.network.bind("127.0.0.1", pair.rtpPort).close();
    assertThrows(() => loop.network.bind("192.0.2.1", 0), Error, "not an address of this host");
    assertThrows(() => loop.network.bind("example.com", 0), Error, "not an IP address");
  });
});

Deno.test("fast udp: an ICMP port-unreachable reaches onError as PortUnreachableError naming the destination", async () => {
  await withLoop(async (loop) => {
    for (const [bind, dest] of [["127.0.0.1", "127.0.0.1"], ["::1", "::1"], ["::", "127.0.0.1"], ["::", "::1"]]) {
      const closed = loop.network.bind(dest, 0);
      const port = closed.port;
      await closed.close();
      const a = loop.network.bind(bind, 0);
      const errors: unknown[] = [];
      const got: number[] = [];
      let echoFrom = -1;
      a.listen((d, from) => {
        if (from.port === echoFrom) got.push(d.length);
      }, { onError: (e) => errors.push(e) });
      await a.send(bytes(1), { hostname: dest, port });
      await until(() => errors.length === 1, `the ICMP error on ${bind}`);
      assert(errors[0] instanceof PortUnreachableError, String(errors[0]));
      assertEquals((errors[0] as PortUnreachableError).to, { hostname: dest, port });
      // The socket goes on sending and receiving (the pending error does not fail the next send).
      const b = loop.network.bind(dest, 0);
      echoFrom = b.port;
      b.listen((d, from) => {
        b.post(d, from);
      });
      assertEquals(await a.send(bytes(1, 2), b.local), 2);
      await until(() => got.length === 1, "the echo");
      assertEquals(got, [2]);
      await a.close();
      await b.close();
    }
  });
});

Deno.test("fast udp: send errors are clear and per datagram; the rest still leaves", async () => {
  await withLoop(async (loop) => {
    const v4 = loop.network.bind("127.0.0.1", 0);
    const rx = loop.network.bind("127.0.0.1", 0);
    const got: number[] = [];
    rx.listen((d, from) => {
      if (from.port === v4.port) got.push(d[0]);
    });
    const results: string[] = [];
    const l = (tag: string) => ({
      sent: () => results.push(`${tag} sent`),
      failed: (e: unknown) => results.push(`${tag} failed: ${(e as Error).message}`),
    });
    v4.post(bytes(1), rx.local, l("a"));
    v4.post(bytes(2), { hostname: "::1", port: rx.port }, l("b"));
    v4.post(bytes(3), { hostname: "example.com", port: rx.port }, l("c"));
    v4.post(new Uint8Array(70000), rx.local, l("d"));
    v4.post(bytes(5), rx.local, l("e"));
    await until(() => results.length === 5, "five outcomes");
    assertEquals(results[0], "a sent");
    assertMatch(results[1], /^b failed: .*\[::1\].*IPv4 socket cannot send to IPv6/);
    assertMatch(results[2], /^c failed: .*not an IP address/);
    assertMatch(results[3], /^d failed: .*70000 bytes/);
    assertEquals(results[4], "e sent");
    await until(() => got.length === 2, "the two good datagrams");
    assertEquals(got, [1, 5]);
    await v4.close();
    let failed: unknown;
    v4.post(bytes(9), rx.local, { sent: () => {}, failed: (e) => failed = e });
    assertMatch(String(failed), /closed/);
    await v4.send(bytes(1), rx.local).then(
      () => assert(false, "send after close resolved"),
      (e) => assertMatch(String(e), /closed/),
    );
  });
});

Deno.test("fast udp: closing a socket fails what it still had queued, in order; what was sent before arrives", async () => {
  await withLoop(async (loop) => {
    const tx = loop.network.bind("127.0.0.1", 0);
    const rx = loop.network.bind("127.0.0.1", 0);
    const got: number[] = [];
    rx.listen((d) => void got.push(d[0]));
    const results: string[] = [];
    const l = (tag: number) => ({
      sent: (n: number) => results.push(`${tag} sent ${n}`),
      failed: (e: unknown) => results.push(`${tag} failed: ${(e as Error).message}`),
    });
    // Sent by the flush after this task: they all arrive and are reported in order.
    for (let i = 0; i < 5; i++) tx.post(bytes(i, 1, 2), rx.local, l(i));
    await until(() => results.length === 5, "five sends reported");
    assertEquals(results, [0, 1, 2, 3, 4].map((i) => `${i} sent 3`));
    await until(() => got.length === 5, "five datagrams");
    // Queued, then the socket closed before any flush: each fails, in order, and none leaves.
    for (let i = 10; i < 14; i++) tx.post(bytes(i), rx.local, l(i));
    const closing = tx.close();
    assertEquals(
      results.slice(5),
      [10, 11, 12, 13].map((i) => `${i} failed: UDP 127.0.0.1:${tx.port}: socket closed before the datagram was sent`),
    );
    await closing;
    // A datagram from another socket still gets through (rx is fine): only the closed socket's queue was dropped.
    const other = loop.network.bind("127.0.0.1", 0);
    other.post(bytes(99), rx.local);
    await until(() => got.includes(99), "a later datagram");
    assertEquals(got, [0, 1, 2, 3, 4, 99]);
  });
});

Deno.test("fast udp: a socket that stops listening keeps what arrives for its next listener; stopping and closing change nothing in the epoll set", async () => {
  await withLoop(async (loop) => {
    // A call's sockets listen, stop and close in one go: one epoll_ctl (the add), none to take them out.
    const once = loop.network.bind("127.0.0.1", 0);
    const before = loop.stats().epollChanges;
    const stopOnce = once.listen(() => {});
    stopOnce();
    await once.close();
    assertEquals(loop.stats().epollChanges - before, 1);

    const rx = loop.network.bind("127.0.0.1", 0);
    const tx = loop.network.bind("127.0.0.1", 0);
    tx.listen(() => {}); // keeps the loop waiting on its epoll set while rx does not listen
    const got: number[] = [];
    const stop = rx.listen((d, from) => {
      if (from.port === tx.port) got.push(d[0]);
    });
    tx.post(bytes(1), rx.local);
    await until(() => got.length === 1, "the first datagram");
    const listening = loop.stats().epollChanges;
    stop();
    assertEquals(loop.stats().epollChanges, listening); // still watched for input: nothing told the kernel
    tx.post(bytes(5), rx.local);
    // The loop sees it readable, narrows what it watches rx for, and leaves the datagram where it is.
    await until(() => loop.stats().epollChanges > listening, "rx no longer watched for input");
    assert(kernelQueuedBytes(rx.port) > 0, "the datagram is still queued in the kernel");
    assertEquals(got, [1]);
    const later: number[] = [];
    rx.listen((d, from) => {
      if (from.port === tx.port) later.push(d[0]);
    });
    await until(() => later.length === 1, "the queued datagram, at the next listen");
    assertEquals([got, later], [[1], [5]]);
    await rx.close();
    await tx.close();
    assertEquals(loop.stats().sockets, 0);
  });
});

Deno.test("fast udp: a handler's promise pauses the socket; datagrams keep their order; unsubscribing stops delivery", async () => {
  await withLoop(async (loop) => {
    const rx = loop.network.bind("127.0.0.1", 0);
    const tx = loop.network.bind("127.0.0.1", 0);
    const got: number[] = [];
    let release!: () => void;
    const gate = new Promise<void>((r) => release = r);
    const stop = rx.listen((d, from) => {
      if (from.port !== tx.port) return;
      got.push(d[0]);
      if (d[0] === 0) return gate; // the first datagram holds the rest back
    });
    for (let i = 0; i < 5; i++) tx.post(bytes(i), rx.local);
    await until(() => got.length >= 1, "the first datagram");
    await new Promise((r) => setTimeout(r, 20));
    assertEquals(got, [0]); // paused: nothing else delivered while the promise is pending
    release();
    await until(() => got.length === 5, "the rest");
    assertEquals(got, [0, 1, 2, 3, 4]);
    stop();
    const later: number[] = [];
    const stop2 = rx.listen((d, from) => {
      if (from.port === tx.port) later.push(d[0]);
    });
    tx.post(bytes(42), rx.local);
    await until(() => later.length === 1, "the datagram to the new listener");
    assertEquals([got.length, later], [5, [42]]);
    stop2();
  });
});

Deno.test("fast udp: 1 000 sockets on one loop each get their own datagrams and answer", async () => {
  await withLoop(async (loop) => {
    const N = 1000;
    const hub = loop.network.bind("127.0.0.1", 0);
    const answers = new Map<number, number>();
    const ours = new Set<number>(); // the machine is shared: datagrams from anyone else are not answers
    hub.listen((d, from) => {
      if (ours.has(from.port)) answers.set(from.port, d[0] | (d[1] << 8));
    });
    const socks: DatagramSocket[] = [];
    const received = new Array<number>(N).fill(-1);
    for (let i = 0; i < N; i++) {
      const s = loop.network.bind("127.0.0.1", 0);
      socks.push(s);
      ours.add(s.port);
      s.listen((d, from) => {
        if (from.port !== hub.port) return;
        received[i] = d[0] | (d[1] << 8);
        s.post(d, from); // answer with the same bytes
      });
    }
    assertEquals(loop.stats().sockets, N + 1);
    for (let i = 0; i < N; i++) hub.post(bytes(i & 0xff, i >> 8), socks[i].local);
    await until(() => answers.size === N, `answers from ${N} sockets (got ${answers.size})`, 30_000);
    assertEquals(received, Array.from({ length: N }, (_, i) => i));
    for (let i = 0; i < N; i++) assertEquals(answers.get(socks[i].port), i);
    await Promise.all(socks.map((s) => s.close()));
    assertEquals(loop.stats().sockets, 1);
  }, { receiveBufferBytes: 1 << 20 });
});

for (const fineWaitWith of ["epoll_pwait2", "timerfd"] as const) {
  Deno.test(`fast udp: the loop's clock runs timers in due order, never early; cancelled timers do not run (fine waits: ${fineWaitWith})`, async () => {
    await withLoop(async (loop) => {
      const clock = loop.clock;
      const ran: [number, number][] = [];
      const t0 = clock.now();
      for (const d of [30, 10, 20, 10, 0, 5]) {
        const due = t0 + d;
        clock.at(due, () => ran.push([d, clock.now() - due]));
      }
      const cancelled = clock.after(15, () => ran.push([-1, 0]));
      cancelled.cancel();
      await clock.sleep(40);
      assertEquals(ran.map(([d]) => d), [0, 5, 10, 10, 20, 30]);
      for (const [d, late] of ran) assert(late >= 0, `timer ${d} ran ${-late} ms early`);
      assertEquals(clock.live, 0);
      const abort = new AbortController();
      const p = clock.sleep(10_000, abort.signal);
      abort.abort(new Error("stop"));
      await p.then(() => assert(false, "an aborted sleep resolved"), (e) => assertEquals((e as Error).message, "stop"));
      assertEquals(clock.live, 0);
      // Timers 5 ms apart are reached through fine waits (the loop parks only until fineWaitMs before each).
      assert(loop.stats().fineWaits > 0, "the timers were waited for on the loop's thread");
    }, { fineWaitWith });
  });
}

Deno.test("fast udp: spinMs: timers still run in due order and never early; the spinning stays within spinBudget", async () => {
  assertThrows(() => new MediaLoop({ spinMs: 3 }), RangeError, "spinMs: expected 0..fineWaitMs (2) ms, got 3");
  assertThrows(() => new MediaLoop({ spinMs: 1, fineWaitMs: 0.5 }), RangeError, "0..fineWaitMs (0.5) ms, got 1");
  assertThrows(() => new MediaLoop({ spinMs: 1, spinBudget: 1.5 }), RangeError, "spinBudget: expected a share");
  const budget = 0.05;
  const start = performance.now();
  await withLoop(async (loop) => {
    const clock = loop.clock;
    const ran: number[] = [];
    // A chain of timers 3 ms apart, each set by the one before (as a pacing sink does): each is reached by a park
    // and then a fine wait, whose last ms would be spun if the budget allowed it every time.
    await new Promise<void>((done) => {
      let due = clock.now() + 3;
      const tick = () => {
        ran.push(clock.now() - due);
        if (ran.length === 60) return done();
        due += 3;
        clock.at(due, tick);
      };
      clock.at(due, tick);
    });
    const elapsed = performance.now() - start;
    ran.forEach((late, i) => assert(late >= 0, `timer ${i} ran ${-late} ms early`));
    const st = loop.stats();
    if (st.fineWaits > 0) assert(st.spins > 0, "a fine wait with spinning time left spins");
    // Earned at 5 % of the time, from a reserve of SPIN_RESERVE_MS; the last spin may overrun what was left.
    const allowed = budget * elapsed + SPIN_RESERVE_MS + st.longestSpinMs;
    assert(st.spunMs <= allowed, `spun ${st.spunMs.toFixed(2)} ms in ${elapsed.toFixed(0)} ms: over ${allowed} ms`);
    assert(st.spunMs >= 0 && st.longestSpinMs <= st.spunMs);
  }, { spinMs: 1, spinBudget: budget });
  assertThrows(() => mediaFromEnv("fast", "2.5"), Error, 'VOXPIPE_SPIN_MS: expected a number of ms, 0..2, got "2.5"');
  assertThrows(() => mediaFromEnv("fast", "soon"), Error, 'VOXPIPE_SPIN_MS: expected a number of ms, 0..2, got "soon"');
  assertThrows(
    () => mediaFromEnv("deno", "0.3"),
    Error,
    "VOXPIPE_SPIN_MS applies to the fast UDP path, which VOXPIPE_NET=deno turns off",
  );
  assertEquals(mediaFromEnv("deno", " ").net, undefined);
});

Deno.test("fast udp: a MediaLoop inside a Web Worker answers a loop on the main thread", async () => {
  const worker = new Worker(new URL("./fast_udp_worker.ts", import.meta.url), { type: "module" });
  try {
    const port = await new Promise<number>((resolve, reject) => {
      worker.onmessage = (e) => e.data.error ? reject(new Error(e.data.error)) : resolve(e.data.port);
      worker.onerror = (e) => reject(e);
    });
    await withLoop(async (loop) => {
      const s = loop.network.bind("127.0.0.1", 0);
      const got: number[][] = [];
      s.listen((d, from) => {
        if (from.port === port) got.push([...d]);
      });
      for (let i = 0; i < 3; i++) s.post(bytes(i, 100 + i), { hostname: "127.0.0.1", port });
      await until(() => got.length === 3, "three echoes from the worker");
      // The worker's handler adds one to each byte: the bytes went through its loop's handler.
      assertEquals(got, [[1, 101], [2, 102], [3, 103]]);
    });
    const closed = new Promise<void>((r) => worker.onmessage = () => r());
    worker.postMessage("close");
    await closed;
  } finally {
    worker.terminate();
  }
});

/** Runs the probe script with `permissions`; returns what it printed as JSON. */
async function probe(permissions: string[], mode: string): Promise<Record<string, unknown>> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", ...permissions, repoPath("tests/fast_udp_probe.ts"), mode],
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(60_000),
  }).output();
  const text = new TextDecoder().decode(out.stdout);
  assertEquals(out.code, 0, `probe ${mode} failed: ${new TextDecoder().decode(out.stderr)}`);
  return JSON.parse(text.trim().split("\n").pop()!);
}

Deno.test("fast udp: without the ffi permission, MediaLoop refuses clearly and the networks fall back to Deno's", async () => {
  const r = await probe(["--allow-read", "--allow-env", "--allow-net=127.0.0.1"], "fallback");
  assertMatch(r.unavailable as string, /ffi permission is not granted/);
  assertMatch(r.loopError as string, /^MediaLoop: the ffi permission is not granted/);
  assertEquals(r.createdIsUdpNetwork, true);
  assertMatch(r.onFallback as string, /ffi permission/);
  assertEquals(r.envNet, false);
  assertMatch(r.envDescription as string, /VOXPIPE_NET=fast unavailable/);
  // The default keeps Deno's network where FFI is refused: no warning (no fallback), the reason in its description;
  // a setting only the fast path has is refused with that reason rather than dropped.
  assertEquals(r.defaultNet, false);
  assertEquals(r.defaultFallback, undefined);
  assertMatch(
    r.defaultDescription as string,
    /^network: Deno\.listenDatagram \(the fast UDP path cannot run here: .*ffi/,
  );
  assertMatch(r.spinError as string, /^VOXPIPE_SPIN_MS applies to the fast UDP path, which cannot run here: .*ffi/);
  assertEquals(r.echoed, [7, 8]); // and the fallback network works
  // Other platforms are refused by name.
  assertMatch(fastUdpPlatformProblem({ os: "linux", arch: "aarch64" })!, /x86_64 Linux only.*aarch64 linux/);
  assertMatch(fastUdpPlatformProblem({ os: "darwin", arch: "x86_64" })!, /x86_64 darwin/);
  assertEquals(fastUdpPlatformProblem({ os: "linux", arch: "x86_64" }), undefined);
  // Here, with -A, the fast path runs.
  assertEquals(fastUdpUnavailable(), undefined);
  assert(createFastNetwork() !== udpNetwork);
  assertThrows(() => mediaFromEnv("turbo"), Error, 'VOXPIPE_NET: expected "fast" or "deno"');
  const deno = mediaFromEnv("deno");
  assertEquals([deno.net, deno.clock, deno.description], [
    undefined,
    undefined,
    "network: Deno.listenDatagram (VOXPIPE_NET=deno)",
  ]);
});

Deno.test("fast udp: a loop dropped without close() releases its sockets once collected", async () => {
  const r = await probe(["-A", "--v8-flags=--expose-gc"], "forgotten");
  assertEquals(r, { inUseBefore: true, freed: true });
});

Deno.test("fast udp: an idle loop lets its process exit (no close needed); a listening socket keeps it alive", async () => {
  const r = await probe(["-A"], "idle-exit");
  assertEquals(r.received, [1, 2, 3]);
  assertEquals(r.timerRan, true);
});

/** A sink that keeps the packets it gets. */
function collector(into: Uint8Array[]) {
  return definePlugin({
    name: "collect",
    kind: "sink",
    description: "keeps packets",
    accepts: [{ kind: "packet" }],
    options: z.object({}),
    create: () => ({
      write(f: Frame) {
        if (f.kind === "packet") into.push(f.data);
        return true;
      },
    }),
  });
}

Deno.test("fast udp: udp-sink (paced on the loop's clock) → udp-source, two sessions on one MediaLoop", async () => {
  await withLoop(async (loop) => {
    const got: Uint8Array[] = [];
    const registry = createRegistry();
    registry.register(rtpBurst);
    registry.register(collector(got));
    const rxSession = new Session({ id: "rx", clock: loop.clock, net: loop.network });
    const txSession = new Session({ id: "tx", clock: loop.clock, net: loop.network });
    const txPort = freeUdpPort(); // the only sender udp-source accepts (the machine is shared)
    const rx = await buildPipeline("rx", [
      { use: "udp-source", bind: "127.0.0.1", port: 0, port_range: "42000-42998", peer: `127.0.0.1:${txPort}` },
      { use: "collect" },
    ], { registry, session: rxSession });
    const port = rx.stats()[0].extra!.port as number;
    const N = 25;
    const tx = await buildPipeline("tx", [
      { use: "rtp-burst", count: N },
      { use: "udp-sink", to: `127.0.0.1:${port}`, bind: "127.0.0.1", local_port: txPort },
    ], { registry, session: txSession });
    rx.start();
    const sent = await tx.run();
    assertEquals(sent.reason, "eos");
    assertEquals(sent.stats[1].extra!.packets_sent, N);
    await until(() => got.length === N, `${N} packets`);
    for (let i = 0; i < N; i++) {
      assertEquals(got[i].length, 172);
      assertEquals((got[i][2] << 8) | got[i][3], i); // sequence numbers in order
      assertEquals(got[i][12], i & 0xff);
    }
    assert(rxSession.stats.packetsReceived === N && txSession.stats.packetsSent === N);
    await rx.stop();
    await rxSession.close();
    await txSession.close();
    // Both sessions released their sockets: the port is free again.
    loop.network.bind("127.0.0.1", port).close();
  });
});

Deno.test("fast udp: rtp-send → rtp-receive (RTP + RTCP) through the runner on one MediaLoop: the WAV is the G.711 round trip", async () => {
  const dir = await Deno.makeTempDir({ prefix: "voxpipe-fastudp-" });
  try {
    await withLoop(async (loop) => {
      const fx = await writeFixture(dir, "PCMU", 1.5);
      const port = freeUdpPortPair("127.0.0.1");
      const out = `${dir}/received.wav`;
      const opts = { registry: createRegistry(), clock: loop.clock, net: loop.network };
      const lines: string[] = [];
      const log = new Logger({ level: "info", outputs: [{ write: (line) => lines.push(line) }] });
      const receiving = runPipelineFile(repoPath("pipelines/rtp-receive.json"), {
        ...opts,
        log,
        set: [
          `port=${port}`,
          "bind=127.0.0.1",
          "codec=PCMU",
          `out=${out}`,
          "timeout=3",
          "first_timeout=45",
          "rtcp_interval=0.5",
        ],
      });
      // Its sockets are bound when its chain is built, before it starts: send only then.
      await until(() => lines.some((l) => l.includes('pipeline "receive" started')), "the receiver to start");
      const sent = await runPipelineFile(repoPath("pipelines/rtp-send.json"), {
        ...opts,
        set: [`file=${fx.sourcePath}`, `to=127.0.0.1:${port}`, "codec=PCMU", "rtcp_interval=0.5"],
      });
      assertEquals(sent.code, 0, sent.reason);
      const received = await receiving;
      assertEquals(received.code, 0, received.reason);
      const wav = await readWav(out);
      assertEquals([wav.sampleRate, wav.channels, wav.finalized], [8000, 1, true]);
      assertSampleExact(fx.reference, wav.samples, { concealTail: 800, label: "fast udp" });
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/**
 * A SIP call through the CLI with `VOXPIPE_NET=fast` on both sides, the caller's sends paced as `callerEnv` says
 * (its log shows `says`): the recording is exact.
 */
async function fastCall(callerEnv: Record<string, string>, says: RegExp): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "voxpipe-fastudp-call-" });
  const env = { VOXPIPE_NET: "fast" };
  const spinning = { VOXPIPE_NET: "fast", ...callerEnv };
  try {
    const ref = spawnCli(["--pipeline", "pipelines/transcode.json", "--set", `out=${dir}/ref.wav`], {
      timeoutMs: 30_000,
    });
    assertEquals((await ref.result).code, 0);
    const port = freeUdpPort();
    const callee = spawnCli([
      "--pipeline",
      "pipelines/callee.json",
      "--set",
      `port=${port}`,
      "--set",
      "calls=1",
      "--set",
      `record=${dir}/call.wav`,
    ], { timeoutMs: 40_000, env });
    await callee.waitForOutput(/\[SIP\] listening on udp 127\.0\.0\.1:\d+/, 20_000);
    const caller = spawnCli([
      "--pipeline",
      "pipelines/caller.json",
      "--set",
      `to=sip:bob@127.0.0.1:${port}`,
      "--set",
      `file=${repoPath("examples/audio/hello.wav")}`,
    ], { timeoutMs: 40_000, env: spinning });
    const [cr, ce] = await Promise.all([caller.result, callee.result]);
    assertEquals(cr.code, 0, `caller: ${cr.stderr.slice(-2000)}`);
    assertEquals(ce.code, 0, `callee: ${ce.stderr.slice(-2000)}`);
    for (const r of [cr, ce]) assertMatch(r.stderr, /network: FFI sockets and clock on this thread's MediaLoop/);
    assertMatch(cr.stderr, says);
    assertMatch(cr.stderr, /\[SIP\] BYE sent/);
    assertMatch(ce.stderr, /call summary: .* lost=0 \(0%\)/);
    const expected = await readWav(`${dir}/ref.wav`);
    const got = await readWav(`${dir}/call.wav`);
    const c = assertSampleExact(expected.samples, got.samples, { label: "VOXPIPE_NET=fast", concealTail: 800 });
    assert(c.overlap >= expected.samples.length - 1, JSON.stringify(c));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("fast udp: a SIP call through the CLI with VOXPIPE_NET=fast on both sides (the caller spinning, VOXPIPE_SPIN_MS): the recording is exact", async () => {
  // The caller's sends paced with a spin before each.
  await fastCall({ VOXPIPE_SPIN_MS: "0.3" }, /MediaLoop \(VOXPIPE_NET=fast, VOXPIPE_SPIN_MS=0\.3\)/);
});

Deno.test("fast udp: a SIP call through the CLI with the caller's packets sent by the native pacer (VOXPIPE_PACER_LEAD_MS): the recording is exact", async () => {
  // Every packet handed to the pacer's thread 5 ms early; the last ones must have left before the caller hangs up.
  await fastCall({ VOXPIPE_PACER_LEAD_MS: "5" }, /MediaLoop \(VOXPIPE_NET=fast, native pacer: lead 5 ms, spin 1 ms\)/);
});
