/**
 * The native pacer (`native/pacer.c`, `core/net/_pacer.ts`) on a {@linkcode MediaLoop}: datagrams handed over
 * ahead of time leave in due order, byte for byte, never before their due times; what waits can be dropped, and a
 * socket closed with datagrams waiting is safe; a datagram the pacer does not take leaves at once; a `udp-sink`
 * hands its packets over and its end waits until the last one has left; the environment settings and their errors.
 *
 * Nothing here depends on timing: "never early" holds however loaded the machine is (a datagram cannot arrive
 * before it was sent), waits are bounded, and only what arrived and in which order is checked; the pacer's counters
 * are read once it has counted its sends (it counts each after `sendto` returns, maybe after the datagram arrived).
 * The library is built by `scripts/setup.sh`, which the test task runs first; without it these tests fail saying so.
 */
import { assert, assertEquals, assertThrows } from "./assert.ts";
import { mediaFromEnv } from "../core/net/fast.ts";
import { FastUdpSocket, MediaLoop } from "../core/net/media_loop.ts";
import { pacerProblem } from "../core/net/_pacer.ts";
import { Session } from "../core/session.ts";
import { buildPipeline } from "../core/pipeline.ts";
import { createRegistry } from "../mod.ts";
import { freeUdpPort } from "./sip_util.ts";
import { rtpBurst } from "./rtp_burst_util.ts";

const PACER = { leadMs: 5, spinMs: 0.5, spinBudget: 0.25 };

/** Waits (bounded, real time) until `cond()` holds; the bound only turns a hang into a failure. */
async function until(cond: () => boolean, what: string, ms = 10_000): Promise<void> {
  const end = performance.now() + ms;
  while (!cond()) {
    if (performance.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

async function withPacerLoop(fn: (loop: MediaLoop) => Promise<void>): Promise<void> {
  const why = pacerProblem();
  assert(why === undefined, `the native pacer cannot run: ${why}`);
  const loop = new MediaLoop({ pacer: PACER });
  try {
    await fn(loop);
  } finally {
    await loop.close();
    await new Promise((r) => setTimeout(r, 0));
  }
}

/** {@linkcode withPacerLoop}, with a plain loop beside it for the receiving sockets. */
async function withLoops(fn: (loop: MediaLoop, rxLoop: MediaLoop) => Promise<void>): Promise<void> {
  const rxLoop = new MediaLoop();
  try {
    await withPacerLoop((loop) => fn(loop, rxLoop));
  } finally {
    await rxLoop.close();
  }
}

/**
 * Waits (bounded) until the pacer has finished `n` sends, sent or failed: it counts a send after `sendto` returns, so
 * on a loaded machine the receiver can have a datagram before the pacer's thread has counted it.
 */
function pacerFinished(loop: MediaLoop, n: number): Promise<void> {
  return until(() => {
    const st = loop.pacerStats()!;
    return st.sent + st.errors >= n;
  }, `the pacer to count ${n} sends`);
}

/** A receiving socket on a plain loop that records each datagram from `from` with its arrival time. */
function receiver(rxLoop: MediaLoop, fromPort: number) {
  const got: { data: Uint8Array; at: number }[] = [];
  const sock = new FastUdpSocket(rxLoop, "127.0.0.1", 0);
  sock.listen((data, from) => {
    if (from.port === fromPort) got.push({ data, at: performance.now() });
  }, { maxSize: 4096 });
  return { got, sock };
}

Deno.test("native pacer: datagrams leave in due order, byte for byte, never before their due times", async () => {
  await withLoops(async (loop, rxLoop) => {
    const tx = new FastUdpSocket(loop, "127.0.0.1", 0);
    const rx = receiver(rxLoop, tx.port);
    assertEquals(tx.timedLeadMs, PACER.leadMs);
    const N = 40;
    // The first due time 1 s away: all 40 are handed over (in microseconds, or however long a loaded machine takes)
    // long before any is due, so the order they leave in is the pacer's doing.
    const t0 = performance.now() + 1000;
    const due = (i: number) => t0 + i * 3;
    // Handed over in a scrambled order: they must still leave in the order of their due times.
    const order = Array.from({ length: N }, (_, i) => (i * 17) % N);
    for (const i of order) {
      const b = new Uint8Array(100 + i).fill(i);
      tx.postAt(b, rx.sock.local, due(i));
    }
    assertEquals(tx.timedPending, N);
    await until(() => rx.got.length === N, `${N} datagrams`);
    for (let i = 0; i < N; i++) {
      const { data, at } = rx.got[i];
      assertEquals(data.length, 100 + i, `datagram ${i} in due order`);
      assert(data.every((x) => x === i), `datagram ${i}: its bytes`);
      // Received (on another thread, later still) no earlier than due: the pacer never sends early.
      assert(at >= due(i) - 0.05, `datagram ${i} arrived ${(due(i) - at).toFixed(3)} ms before its due time`);
    }
    await pacerFinished(loop, N);
    const st = loop.pacerStats()!;
    assertEquals(st.sent, N);
    assertEquals(st.errors, 0);
    assertEquals(st.queued, 0);
    assertEquals(tx.timedPending, 0);
    await tx.close();
    await rx.sock.close();
  });
});

Deno.test("native pacer: forgetTimed drops what waits; closing a socket with datagrams waiting is safe", async () => {
  await withLoops(async (loop, rxLoop) => {
    const a = new FastUdpSocket(loop, "127.0.0.1", 0);
    const b = new FastUdpSocket(loop, "127.0.0.1", 0);
    const rxA = receiver(rxLoop, a.port);
    const far = performance.now() + 60_000;
    for (let i = 0; i < 10; i++) a.postAt(new Uint8Array([i]), rxA.sock.local, far + i);
    for (let i = 0; i < 5; i++) b.postAt(new Uint8Array([i]), rxA.sock.local, far + i);
    assertEquals([a.timedPending, b.timedPending], [10, 5]);
    assertEquals(a.forgetTimed(), 10);
    assertEquals([a.timedPending, b.timedPending], [0, 5], "only that socket's datagrams are dropped");
    // Closing b drops its five before the descriptor is closed (a reused descriptor must never get them).
    await b.close();
    assertEquals(loop.pacerStats()!.queued, 0);
    // The pacer still works for a: one datagram due now leaves.
    a.postAt(new Uint8Array([42]), rxA.sock.local, performance.now());
    await until(() => rxA.got.length === 1, "the datagram after the forgotten ones");
    assertEquals([...rxA.got[0].data], [42]);
    await pacerFinished(loop, 1);
    assertEquals(loop.pacerStats()!.sent, 1);
    await a.close();
    await rxA.sock.close();
  });
});

Deno.test("native pacer: a datagram over 1 500 bytes is not held: it leaves at once", async () => {
  await withLoops(async (loop, rxLoop) => {
    const tx = new FastUdpSocket(loop, "127.0.0.1", 0);
    const rx = receiver(rxLoop, tx.port);
    let sent = 0;
    tx.postAt(new Uint8Array(2000).fill(7), rx.sock.local, performance.now() + 60_000, {
      sent: (n) => sent = n,
      failed: (e) => {
        throw e;
      },
    });
    await until(() => rx.got.length === 1, "the large datagram");
    assertEquals(rx.got[0].data.length, 2000);
    assertEquals(sent, 2000);
    assertEquals(loop.pacerStats()!.sent, 0, "sent by the loop, not the pacer");
    await tx.close();
    await rx.sock.close();
  });
});

Deno.test("native pacer: udp-sink hands its packets to the pacer, and its end waits until the last has left", async () => {
  await withLoops(async (loop, rxLoop) => {
    const registry = createRegistry();
    registry.register(rtpBurst);
    const txPort = freeUdpPort();
    const rx = receiver(rxLoop, txPort);
    const session = new Session({ id: "tx", clock: loop.clock, net: loop.network });
    const N = 30;
    const tx = await buildPipeline("tx", [
      { use: "rtp-burst", count: N },
      { use: "udp-sink", to: `127.0.0.1:${rx.sock.port}`, bind: "127.0.0.1", local_port: txPort },
    ], { registry, session });
    const result = await tx.run();
    assertEquals(result.reason, "eos");
    // The session closes its socket now: whatever the pacer still held for it would be dropped.
    await session.close();
    // Every packet left before that: through the pacer, or (one that reached the sink after its due time, on a busy
    // machine) sent at once by the loop. The first one is handed over a lead early whatever the load.
    const viaPacer = loop.pacerStats()!.sent;
    assert(viaPacer >= 1, "the sink hands its packets to the pacer");
    assertEquals(viaPacer + loop.stats().sent, N, "every packet left before the socket closed");
    await until(() => rx.got.length === N, `${N} packets`);
    for (let i = 0; i < N; i++) {
      const d = rx.got[i].data;
      assertEquals((d[2] << 8) | d[3], i, "in order");
      assertEquals(d[12], i & 0xff);
    }
    assertEquals(result.stats[1].extra!.packets_sent, N);
    await rx.sock.close();
  });
});

Deno.test("native pacer: VOXPIPE_PACER_LEAD_MS, VOXPIPE_PACER_SPIN_MS and VOXPIPE_PACER_BUDGET are checked", () => {
  const cases: [string, { leadMs?: string; spinMs?: string; budget?: string }, string][] = [
    ["deno", { leadMs: "5" }, "VOXPIPE_PACER_LEAD_MS applies to the fast UDP path, which VOXPIPE_NET=deno turns off"],
    ["fast", { leadMs: "80" }, 'VOXPIPE_PACER_LEAD_MS: expected a number of ms, 0..50, got "80"'],
    ["fast", { leadMs: "0.1" }, "VOXPIPE_PACER_LEAD_MS: expected 0 (off) or 0.5..50 ms, got 0.1"],
    ["fast", { spinMs: "1" }, "VOXPIPE_PACER_SPIN_MS applies to the native pacer: set VOXPIPE_PACER_LEAD_MS too"],
    ["fast", { leadMs: "5", spinMs: "3" }, 'VOXPIPE_PACER_SPIN_MS: expected a number of ms, 0..2, got "3"'],
    ["fast", { budget: "1" }, "VOXPIPE_PACER_BUDGET applies to the native pacer: set VOXPIPE_PACER_LEAD_MS too"],
    ["fast", { leadMs: "5", budget: "2" }, 'VOXPIPE_PACER_BUDGET: expected a share of one core, 0.05..1, got "2"'],
    ["fast", { leadMs: "5", budget: "0" }, 'VOXPIPE_PACER_BUDGET: expected a share of one core, 0.05..1, got "0"'],
  ];
  for (const [net, pacer, message] of cases) assertThrows(() => mediaFromEnv(net, undefined, pacer), Error, message);
  assertEquals(mediaFromEnv("fast", undefined, { leadMs: "0" }).description.includes("native pacer"), false);
});

Deno.test({
  name: "native pacer: the environment's lead, spin and budget reach the pacer of the thread's loop",
  ignore: pacerProblem() !== undefined,
  fn: async () => {
    // A process of its own: this thread's loop may already exist without a pacer.
    const fast = JSON.stringify(new URL("../core/net/fast.ts", import.meta.url).href);
    const script = `
      import { defaultMediaLoop, mediaFromEnv } from ${fast};
      const media = mediaFromEnv();
      console.log(JSON.stringify({ description: media.description, settings: defaultMediaLoop().pacerSettings() }));
      await defaultMediaLoop().close();
    `;
    const run = async (env: Record<string, string>) => {
      const out = await new Deno.Command(Deno.execPath(), {
        args: ["eval", "--unstable-net", script],
        env: { VOXPIPE_NET: "fast", VOXPIPE_PACER_LEAD_MS: "5", ...env },
        stdout: "piped",
        stderr: "piped",
      }).output();
      assert(out.success, new TextDecoder().decode(out.stderr));
      return JSON.parse(new TextDecoder().decode(out.stdout));
    };
    const set = await run({ VOXPIPE_PACER_SPIN_MS: "0.5", VOXPIPE_PACER_BUDGET: "1" });
    assertEquals(set.settings, { leadMs: 5, spinMs: 0.5, spinBudget: 1 });
    assert(set.description.includes("native pacer: lead 5 ms, spin 0.5 ms within 1 of a core"), set.description);
    const defaults = await run({});
    assertEquals(defaults.settings, { leadMs: 5, spinMs: 1, spinBudget: 0.25 });
  },
});
