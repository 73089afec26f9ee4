/**
 * Memory per ended call returns to baseline: the sip control (callee) answers
 * 2 000 calls from a SipUserAgent over the in-memory network on a
 * VirtualClock, each with a media chain (`udp-source` → `null-sink`), and
 * afterwards keeps nothing per call: no transaction, no call, no dialog, no
 * timer, at most `keep_summaries` summaries. Run with
 * `--v8-flags=--expose-gc` it also checks the heap (after GC) ends within
 * 1 MB of where it was after a warm-up at the same call rate. The warm-up
 * lasts longer than 64·T1, so that the tables (whose capacity V8 keeps at
 * their peak) have seen the steady number of calls lingering for late
 * retransmissions: what is measured is what each call leaves behind, not
 * that peak.
 *
 * ```sh
 * deno test -A --v8-flags=--expose-gc tests/sip_memory_test.ts
 * ```
 *
 * Nothing here depends on time or machine speed.
 */
import { codecs } from "./registry_util.ts";
import assert from "node:assert/strict";
import { VirtualClock } from "../core/clock.ts";
import { Logger, MemoryOutput } from "../core/log.ts";
import { MemoryNetwork } from "../core/net/memory.ts";
import { createRegistry, PipelineRunner } from "../mod.ts";
import { createOffer, type OutgoingCall, SipUserAgent } from "../plugins/sip/mod.ts";
import { sipControl } from "../plugins/sip/control.ts";
import { settleUntil } from "./util.ts";

const gc = (globalThis as { gc?: () => void }).gc;
const CALLS = Number(Deno.env.get("SIP_MEMORY_CALLS") ?? 2000);
/** Calls started per second of virtual time (one batch per second). */
const BATCH = 25;
/** Warm-up: 40 s of calls, more than 64·T1 (32 s). */
const WARMUP = 40 * BATCH;
const KEEP = 20;

function heapMb(): number {
  for (let i = 0; i < 3; i++) gc!();
  return Deno.memoryUsage().heapUsed / 1e6;
}

Deno.test({
  name: `memory: ${CALLS} calls through the sip control on a memory network leave nothing per call behind`,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "voxpipe-mem-" });
    const file = `${dir}/callee.json`;
    await Deno.writeTextFile(
      file,
      JSON.stringify({
        control: {
          use: "sip",
          role: "callee",
          bind: "10.0.0.2",
          port: 5062,
          calls: WARMUP + CALLS,
          max_calls: 10000,
          max_transactions: 1000000,
          keep_summaries: KEEP,
          hangup_on: ["receive"],
          linger: 0,
        },
        pipelines: {
          receive: [
            { use: "udp-source", port: "${local.rtp_port}", bind: "${local.bind}", peer: "${remote.rtp}", timeout: 30 },
            { use: "null-sink" },
          ],
        },
      }),
    );
    const clock = new VirtualClock();
    const net = new MemoryNetwork({ clock, latencyMs: 1 });
    const out = new MemoryOutput();
    const log = new Logger({ level: "warn", outputs: [out] });
    const runner = await PipelineRunner.load(file, { registry: createRegistry(), clock, net, log });
    // The controller itself (not runner.run()), to read its stats() at the end.
    const { control: { use: _, ...raw } } = JSON.parse(await Deno.readTextFile(file));
    const controller = await sipControl.create(sipControl.options.parse(raw), {
      log,
      clock,
      signal: new AbortController().signal,
      file,
      baseDir: dir,
      params: runner.params,
      templates: ["receive"],
      net,
      codecs,
      buildPipeline: (t, v, n, s) => runner.build(t, v, n, s),
    });
    let finished = false;
    const run = controller.run().finally(() => finished = true);
    // The control binds its SIP socket after a start that takes real time: the first INVITE waits for it.
    await settleUntil(clock, () => finished || net.bound("10.0.0.2", 5062), "the callee's SIP socket");
    const alice = new SipUserAgent({ transport: net.bind("10.0.0.1", 5060), clock, userName: "alice" });
    const sdp = createOffer({ registry: codecs, address: "10.0.0.1", port: 40000 });

    const batch = async (n: number) => {
      const calls: OutgoingCall[] = [];
      for (let i = 0; i < n; i++) calls.push(alice.invite("sip:bob@10.0.0.2:5062", { sdp }));
      // A call is answered once its chains are built and started: real work, waited for as a condition.
      await settleUntil(clock, () => calls.every((c) => c.state === "established" || c.state === "ended"), "answers");
      for (const c of calls) {
        assert.equal(c.state, "established", `call ${c.callId}: ${c.endInfo?.reason}\n${out.lines.join("\n")}`);
      }
      for (const c of calls) void c.hangup();
      await clock.advanceAsync(950, 95);
      for (const c of calls) assert.equal(c.state, "ended");
    };
    // Let everything per call expire: transactions (64·T1), the ended calls' linger (64·T1).
    const settle = () => clock.advanceAsync(70_000, 1000);

    for (let done = 0; done < WARMUP; done += BATCH) await batch(BATCH);
    await settle();
    const baseline = gc ? heapMb() : 0;
    for (let done = 0; done < CALLS; done += BATCH) await batch(BATCH);
    await settleUntil(clock, () => finished, "the callee ending after its calls");
    const result = await run;
    assert.deepEqual(result, { code: 0 }, out.lines.slice(-5).join("\n"));
    await settle();

    // The callee keeps only the last keep_summaries summaries.
    const stats = controller.stats!() as { active: unknown[]; finished: { callId: string }[] };
    assert.equal(stats.active.length, 0);
    assert.equal(stats.finished.length, KEEP);
    // Nothing per call is left in the caller's user agent.
    assert.deepEqual(
      { ...alice.usage, lagMs: 0 },
      {
        serverTransactions: 0,
        inviteServerTransactions: 0,
        clientTransactions: 0,
        acceptedTransactions: 0,
        calls: 0,
        liveCalls: 0,
        dialogs: 0,
        lagMs: 0,
        refused: 0,
      },
    );
    await alice.close();
    assert.equal(clock.pending, 0, "no timer left");
    if (gc) {
      const after = heapMb();
      console.log(
        `heap after ${WARMUP} calls (baseline): ${baseline.toFixed(2)} MB; after ${CALLS} more: ${
          after.toFixed(2)
        } MB ` +
          `(${(after - baseline >= 0 ? "+" : "") + (after - baseline).toFixed(2)} MB)`,
      );
      assert.ok(Math.abs(after - baseline) < 1, `heap ${baseline.toFixed(2)} → ${after.toFixed(2)} MB`);
    }
    await Deno.remove(dir, { recursive: true });
  },
});
