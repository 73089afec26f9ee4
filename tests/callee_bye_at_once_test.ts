/**
 * pipelines/callee.json as shipped, on the in-memory network and a VirtualClock: callers that hang up right after
 * their ACK (BYE at once, no RTP) still leave a valid recording each, and a call's chains, sockets and RTP ports are
 * released within a second of its BYE: the callee has 5 port pairs only, and a new batch of 5 calls arrives every
 * second (a call that found no free pair would be refused). Nothing here depends on the machine's speed.
 */
import { assert, assertEquals } from "./assert.ts";
import { codecs } from "./registry_util.ts";
import { VirtualClock } from "../core/clock.ts";
import { Logger, MemoryOutput } from "../core/log.ts";
import { MemoryNetwork } from "../core/net/memory.ts";
import { createRegistry, PipelineRunner } from "../mod.ts";
import { createOffer, type OutgoingCall, SipUserAgent } from "../plugins/sip/mod.ts";
import { repoPath, settleUntil } from "./util.ts";

const BATCHES = 8;
const PER_BATCH = 5;

Deno.test("callee.json: BYE right after the ACK: every answered call leaves a valid WAV; its ports are free within 1 s", async () => {
  const dir = await Deno.makeTempDir({ prefix: "voxpipe-bye-" });
  const clock = new VirtualClock();
  const net = new MemoryNetwork({ clock, latencyMs: 1 });
  const out = new MemoryOutput();
  const abort = new AbortController();
  const calls = BATCHES * PER_BATCH;
  const runner = await PipelineRunner.load(repoPath("pipelines/callee.json"), {
    registry: createRegistry(),
    set: [
      "bind=10.0.0.2",
      "port=5062",
      "rtp_ports=30000-30009", // 5 RTP/RTCP pairs
      `record=${dir}/rec/call-\${call.id}.wav`,
      `calls=${calls}`,
      "rtp_timeout=30",
    ],
    clock,
    net,
    log: new Logger({ level: "info", outputs: [out] }),
    signal: abort.signal,
  });
  let ended = false;
  const result = runner.run().finally(() => ended = true);
  const alice = new SipUserAgent({ transport: net.bind("10.0.0.1", 5060), clock, userName: "alice" });
  try {
    // Loading, checking the templates and binding happen in real time; the calls then run on the virtual clock.
    for (let i = 0; i < 6000 && !out.lines.some((l) => l.includes("listening on udp")); i++) {
      await new Promise((r) => setTimeout(r, 5));
    }
    const sdp = createOffer({ registry: codecs, address: "10.0.0.1", port: 40000 });
    for (let b = 0; b < BATCHES; b++) {
      const batch: OutgoingCall[] = [];
      const answered = new Set<OutgoingCall>();
      for (let i = 0; i < PER_BATCH; i++) {
        const c = alice.invite("sip:voxpipe@10.0.0.2:5062", { sdp });
        c.on("established", () => {
          answered.add(c);
          void c.hangup(); // BYE right after the ACK
        });
        batch.push(c);
      }
      // The callee answers once the call's chains are built and started (its recording opened): real work, which the
      // virtual clock does not wait for, so the answers are waited for as a condition, not as 20 ms of virtual time.
      await settleUntil(clock, () => batch.every((c) => answered.has(c) || c.state === "ended"), `batch ${b}: answers`);
      for (const c of batch) {
        assert(answered.has(c), `batch ${b}: not answered: ${c.endInfo?.reason}\n${out.lines.slice(-10).join("\n")}`);
      }
      // alice's BYEs leave her socket in real time (the clock does not wait for a send): the callee's 1 s starts
      // once it has them all (its "BYE received" lines), not when the clock moved past the answers.
      const byes = () => out.lines.filter((l) => l.includes("BYE received")).length;
      await settleUntil(clock, () => byes() >= (b + 1) * PER_BATCH, `batch ${b}: BYEs received`);
      await clock.advanceAsync(980, 98);
      for (const c of batch) assertEquals(c.state, "ended");
      // A call's ports are released once its recording is finalized (then its summary is logged): real file
      // operations, which the virtual clock does not wait for. They get real time here, the clock standing still (at
      // most 30 s): a port held on the clock's account still leaves the next batch without a free pair.
      const finished = () => out.lines.filter((l) => l.includes("call summary:")).length;
      const want = (b + 1) * PER_BATCH;
      await settleUntil(clock, () => finished() >= want, `batch ${b}: calls finished`, 0);
      assertEquals(finished(), want, `batch ${b}: calls finished (recordings finalized, ports released)`);
    }
    for (let t = 0; t < 10_000 && !ended; t += 100) await clock.advanceAsync(100, 10);
    assert(ended, "the callee exits after its calls");
    assertEquals((await result).code, 0, out.lines.slice(-5).join("\n"));
    const files = [...Deno.readDirSync(`${dir}/rec`)].map((e) => e.name);
    assertEquals(files.length, calls, "one recording per answered call");
    for (const f of files) {
      const bytes = Deno.readFileSync(`${dir}/rec/${f}`);
      const v = new DataView(bytes.buffer);
      const text = (o: number) => new TextDecoder().decode(bytes.subarray(o, o + 4));
      assertEquals([text(0), text(8)], ["RIFF", "WAVE"], f);
      assertEquals(v.getUint32(4, true), bytes.length - 8, `${f}: RIFF size`);
      assertEquals(text(36), "data", f);
      assertEquals(v.getUint32(40, true), bytes.length - 44, `${f}: data size`);
    }
  } finally {
    abort.abort();
    await alice.close();
    for (let t = 0; t < 10_000 && !ended; t += 100) await clock.advanceAsync(100, 10);
    await Deno.remove(dir, { recursive: true });
  }
});
