/**
 * The SIP control with `media_workers`: calls' media run in Web Workers, the SIP stack on the main thread. Real
 * calls over loopback: our callee (in this process, so the test reaches its workers) answers our callers (CLI
 * processes); recordings must equal the source through G.711 sample by sample, calls must spread over the workers,
 * summaries carry the packet counts the workers measured, a caller whose media runs in a worker hangs up when its
 * file has been sent, DTMF crosses both ways (sent from a worker, received in one and reported as call events),
 * and a worker that fails ends its calls with a reason while new calls still work.
 */
import { assert, assertEquals, assertMatch } from "./assert.ts";
import { assertSampleExact, readWav, sleep, spawnCli, speechLikeSignal, writeWav } from "./media_util.ts";
import { repoPath } from "./util.ts";
import { freeUdpPort } from "./sip_util.ts";
import { createRegistry, Logger, MemoryNetwork, MemoryOutput, PipelineRunner, VirtualClock } from "../mod.ts";
import type { CallEvent, CallService } from "../core/calls.ts";
import { onWorkerMediaHost, type WorkerMediaHost } from "../plugins/sip/media_host.ts";

const HELLO = repoPath("examples/audio/hello.wav");

/** A copy of pipelines/callee.json in `dir` with `media_workers` set in its control section. */
async function calleeFile(dir: string, workers: number): Promise<string> {
  const file = JSON.parse(await Deno.readTextFile(repoPath("pipelines/callee.json")));
  delete file.$schema;
  file.control.media_workers = workers;
  const path = `${dir}/callee-workers.json`;
  await Deno.writeTextFile(path, JSON.stringify(file, null, 2));
  return path;
}

/** Polls `cond` every 50 ms until it holds; fails after `ms` (a bound against hanging, not a timing assertion). */
async function until(cond: () => boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting until ${what}`);
    await sleep(50);
  }
}

/** The in-process callee: its runner, run, calls, log lines and media workers. */
async function startCallee(dir: string, set: string[], signal?: AbortSignal) {
  const out = new MemoryOutput();
  const log = new Logger({ level: "info", outputs: [out] });
  let host: WorkerMediaHost | undefined;
  const off = onWorkerMediaHost((h) => host = h);
  const runner = await PipelineRunner.load(await calleeFile(dir, 2), {
    registry: createRegistry(),
    set,
    log,
    ...(signal ? { signal } : {}),
  });
  const done = runner.run().finally(off);
  const calls: CallService = await runner.callService();
  const events: CallEvent[] = [];
  calls.onEvent((e) => events.push(e));
  await until(() => out.lines.some((l) => /media of calls in 2 worker threads/.test(l)), 60_000, "the workers started");
  assert(host, "the callee created a worker media host");
  return { done, calls, events, lines: out.lines, host: host! };
}

async function reference(dir: string): Promise<Int16Array> {
  const ref = spawnCli(
    ["--pipeline", "pipelines/transcode.json", "--set", `out=${dir}/ref.wav`, "--set", "codec=PCMU"],
    {
      timeoutMs: 60_000,
    },
  );
  assertEquals((await ref.result).code, 0);
  return (await readWav(`${dir}/ref.wav`)).samples;
}

function caller(port: number, file: string, workers: number) {
  return spawnCli([
    "--pipeline",
    "pipelines/caller.json",
    "--set",
    `to=sip:bob@127.0.0.1:${port}`,
    "--set",
    "port=0",
    "--set",
    `file=${file}`,
    "--set",
    "codecs=PCMU",
  ], { timeoutMs: 90_000, env: { VOXPIPE_MEDIA_WORKERS: String(workers) } });
}

Deno.test("media_workers 2: four calls spread over both workers, recordings sample-exact, summaries from the workers", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const expected = await reference(dir);
    const port = freeUdpPort();
    const callee = await startCallee(dir, [
      `port=${port}`,
      "calls=4",
      "codecs=PCMU",
      `record=${dir}/call-\${call.id}.wav`,
    ]);
    // Two callers run their media in process, two in a media worker of their own (VOXPIPE_MEDIA_WORKERS): those
    // hang up when their file has been sent, which the worker tells the control.
    const callers = [caller(port, HELLO, 0), caller(port, HELLO, 1), caller(port, HELLO, 0), caller(port, HELLO, 1)];
    const results = await Promise.all(callers.map((c) => c.result));
    const r = await callee.done;
    const log = callee.lines.join("\n");
    for (const [i, cr] of results.entries()) {
      assertEquals(cr.code, 0, `caller ${i + 1}: ${cr.stderr.slice(-2000)}`);
      assertMatch(cr.stderr, /\[SIP\] BYE sent/);
      if (i % 2 === 1) {
        assertMatch(cr.stderr, /media of calls in 1 worker thread /);
        assertMatch(cr.stderr, /media: PCMU .* \(media worker 1\)/);
        // The caller's summary: the packets its worker sent, all of the file.
        assertMatch(cr.stderr, /call summary: duration=[\d.]+s sent=[1-9]\d* .* ended by local: send chain ended/);
      }
    }
    assertEquals(r.code, 0, `callee: ${r.reason}\n${log.slice(-3000)}`);
    // Spread: each worker ran calls (least busy first, then taking turns), as its counters and the log say.
    const workers = callee.host.workers();
    assertEquals(workers.map((w) => w.total).reduce((a, b) => a + b), 4, JSON.stringify(workers));
    for (const w of workers) {
      assert(w.total >= 1, `worker ${w.worker} ran no call: ${JSON.stringify(workers)}`);
      assertEquals(w.failures, 0);
      assertMatch(log, new RegExp(`media: PCMU .* \\(media worker ${w.worker}\\)`));
    }
    // Summaries carry what the workers counted.
    const summaries = callee.lines.filter((l) => l.includes("call summary:"));
    assertEquals(summaries.length, 4, log.slice(-3000));
    for (const s of summaries) {
      const m = /received=(\d+) lost=0 \(0%\)/.exec(s);
      assert(m && Number(m[1]) > 200, s);
    }
    for (const info of callee.calls.calls()) {
      assertEquals(info.state, "ended");
      assert((info.stats?.packetsReceived ?? 0) > 200, JSON.stringify(info));
    }
    // Each recording is the source through G.711.
    const files = [...Deno.readDirSync(dir)].map((e) => e.name).filter((n) => n.startsWith("call-"));
    assertEquals(files.length, 4, files.join(", "));
    for (const f of files) {
      const got = await readWav(`${dir}/${f}`);
      const c = assertSampleExact(expected, got.samples, { label: f, concealTail: 800 });
      assert(c.overlap >= expected.length - 1, JSON.stringify(c));
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("media_workers 2: a failed worker ends its calls with a reason; it restarts and a new call works", async () => {
  const dir = await Deno.makeTempDir();
  const abort = new AbortController();
  try {
    const expected = await reference(dir);
    // Long enough never to end before the test hangs it up.
    const long = `${dir}/long.wav`;
    await writeWav(long, speechLikeSignal({ seconds: 60 }), 8000);
    const port = freeUdpPort();
    const callee = await startCallee(dir, [
      `port=${port}`,
      "codecs=PCMU",
      `record=${dir}/call-\${call.id}.wav`,
    ], abort.signal);
    const a = caller(port, long, 0);
    await until(
      () => callee.calls.calls().filter((c) => c.state === "answered").length === 1,
      60_000,
      "call 1 answered",
    );
    const b = caller(port, long, 0);
    await until(
      () => callee.calls.calls().filter((c) => c.state === "answered").length === 2,
      60_000,
      "call 2 answered",
    );
    assertEquals(callee.host.workers().map((w) => w.calls), [1, 1]);
    // What cannot cross a thread says so.
    const [first] = callee.calls.calls();
    assertEquals(callee.calls.session(first.id), undefined);
    assertMatch(callee.calls.noSessions ?? "", /media_workers 0/);
    // Which call runs in worker 1: the log's media line names it.
    const onWorker1 = callee.calls.calls().find((c) =>
      callee.lines.some((l) => l.includes("(media worker 1)") && l.includes(`call=${c.id}`))
    );
    assert(onWorker1, callee.lines.join("\n"));
    const other = callee.calls.calls().find((c) => c.id !== onWorker1.id)!;

    callee.host.crashWorker(1, "test crash");
    await until(() => callee.calls.call(onWorker1.id)?.state === "ended", 60_000, "the crashed worker's call ended");
    const ended = callee.calls.call(onWorker1.id)!;
    assertMatch(ended.reason ?? "", /^local: media worker 1 failed: .*test crash/);
    assertMatch(callee.lines.join("\n"), /ERROR \[MEDIA\] media worker 1 failed: .*test crash/);
    // Its caller got a BYE, before its file was sent.
    const victim = await Promise.any([a, b].map((p) => p.waitForOutput(/BYE received/, 60_000).then(() => p)));
    const vr = await victim.result;
    assertEquals(vr.code, 1, vr.stderr.slice(-2000));
    assertMatch(vr.stderr, /call ended by the peer/);
    // The other call still runs.
    assertEquals(callee.calls.call(other.id)?.state, "answered");

    // The worker restarts; a new call goes to it (it has no call, worker 2 has one) and records exactly.
    await until(() => callee.host.workers()[0].state === "ready", 60_000, "worker 1 restarted");
    const c = caller(port, HELLO, 0);
    const cr = await c.result;
    assertEquals(cr.code, 0, cr.stderr.slice(-2000));
    const third = callee.calls.calls().find((x) => x.id !== onWorker1.id && x.id !== other.id);
    assert(third, JSON.stringify(callee.calls.calls()));
    await until(() => callee.calls.call(third.id)?.state === "ended", 60_000, "the new call ended");
    assertMatch(callee.lines.join("\n"), new RegExp(`\\(media worker 1\\) call=${third.id}`));
    const got = await readWav(`${dir}/call-${third.id}.wav`);
    assertSampleExact(expected, got.samples, { label: "after the restart", concealTail: 800 });

    // Stopping the control ends the remaining call and finalizes its recording in its worker.
    abort.abort();
    const r = await callee.done;
    const rest = await Promise.all([a.result, b.result]);
    assertEquals(r.code, 1, "the crashed call counts as failed");
    assertMatch(r.reason ?? "", /1 call\(s\) failed/);
    assertEquals(callee.calls.call(other.id)?.state, "ended");
    const rec = await readWav(`${dir}/call-${other.id}.wav`);
    assert(rec.samples.length > 8000, `the interrupted call's recording holds ${rec.samples.length} samples`);
    assert(rest.every((x) => !x.timedOut), "the callers ended");
    const summary = callee.lines.find((l) => l.includes("call summary:") && l.includes(`call=${other.id}`));
    assertMatch(summary ?? "", /received=[1-9]\d* /);
  } finally {
    abort.abort();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("media_workers 1 on both sides: DTMF sent through the call service from a worker; received in the peer's worker, reported as dtmf events", async () => {
  const dir = await Deno.makeTempDir();
  const abort = new AbortController();
  try {
    const audio = `${dir}/speech.wav`;
    await writeWav(audio, speechLikeSignal({ seconds: 8 }), 8000);
    const port = freeUdpPort();
    // The callee in this process, its media in one worker: its call events carry the digits the worker received.
    const cOut = new MemoryOutput();
    const callee = await PipelineRunner.load(await calleeFile(dir, 1), {
      registry: createRegistry(),
      set: [`port=${port}`, "calls=1", `record=${dir}/rec.wav`, "codecs=PCMU"],
      log: new Logger({ level: "info", outputs: [cOut] }),
      signal: abort.signal,
    });
    const calleeDone = callee.run();
    const calleeCalls = await callee.callService();
    const received: CallEvent[] = [];
    calleeCalls.onEvent((e) => e.type === "dtmf" && received.push(e));
    await until(
      () => cOut.lines.some((l) => /media of calls in 1 worker thread/.test(l)),
      60_000,
      "the callee's worker started",
    );
    const file = JSON.parse(await Deno.readTextFile(repoPath("pipelines/caller.json")));
    delete file.$schema;
    file.control.media_workers = 1;
    await Deno.writeTextFile(`${dir}/caller-workers.json`, JSON.stringify(file));
    const out = new MemoryOutput();
    const runner = await PipelineRunner.load(`${dir}/caller-workers.json`, {
      registry: createRegistry(),
      set: [`to=sip:bob@127.0.0.1:${port}`, `file=${audio}`, "port=0", "codecs=PCMU"],
      log: new Logger({ level: "info", outputs: [out] }),
    });
    const done = runner.run();
    const calls = await runner.callService();
    await until(() => calls.calls().some((c) => c.state === "answered"), 60_000, "the call is answered");
    const [call] = calls.calls();
    assertEquals(calls.session(call.id), undefined);
    await calls.sendDtmf(call.id, "47", { durationMs: 100 });
    const r = await done;
    const log = out.lines.join("\n");
    assertEquals(r.code, 0, `${r.reason}\n${log.slice(-3000)}`);
    assertMatch(log, /media: PCMU .* \(media worker 1\)/);
    assertMatch(log, /call summary: .* sent=[1-9]\d* .* ended by local: send chain ended/);
    const ce = await calleeDone;
    const clog = cOut.lines.join("\n");
    assertEquals(ce.code, 0, clog.slice(-2000));
    assertMatch(clog, /media: PCMU .* \(media worker 1\)/);
    // The worker's depacketizer logged each digit (its log lines reach the front's logger) and told the front.
    const digits = [...clog.matchAll(/\[RTP-DEPACKETIZER\] DTMF (\S) received/g)].map((m) => m[1]);
    assertEquals(digits, ["4", "7"]);
    const [info] = calleeCalls.calls();
    assertEquals(received.map((e) => [e.call.id, e.detail?.digit]), [[info.id, "4"], [info.id, "7"]]);
    for (const e of received) {
      const ms = e.detail?.durationMs as number;
      assert(ms > 0 && ms <= 100, `digit ${e.detail?.digit} held ${ms} ms (sent 100 ms)`);
    }
  } finally {
    abort.abort();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("media_workers: the ws-bridge, which needs the calls' buses, refuses to start and says to set media_workers 0", async () => {
  const r = await spawnCli(["--pipeline", "pipelines/server.json", "--set", "port=0", "--set", "ws_port=0"], {
    timeoutMs: 60_000,
    env: { VOXPIPE_MEDIA_WORKERS: "2", VOXPIPE_WS_TOKEN: "secret" },
  }).result;
  assertEquals(r.code, 1, r.stderr.slice(-2000));
  assertMatch(r.stderr, /ws-bridge: the bridge cannot reach the calls' audio: .*set media_workers 0/);
});

Deno.test("media_workers on a virtual clock: an explicit option is refused; VOXPIPE_MEDIA_WORKERS is ignored with a warning", async () => {
  const dir = await Deno.makeTempDir();
  /** Runs `file` on a virtual clock and an in-memory network, aborted once `stopWhen` holds over its log. */
  async function run(file: string, stopWhen: (lines: string[]) => boolean) {
    const clock = new VirtualClock();
    const out = new MemoryOutput();
    const abort = new AbortController();
    const runner = await PipelineRunner.load(file, {
      registry: createRegistry(),
      set: ["port=5060"],
      clock,
      net: new MemoryNetwork({ clock }),
      log: new Logger({ level: "info", outputs: [out] }),
      signal: abort.signal,
    });
    let result: Awaited<ReturnType<typeof runner.run>> | undefined;
    const p = runner.run().then((r) => result = r);
    for (let i = 0; i < 10_000 && !result; i++) {
      if (stopWhen(out.lines)) abort.abort();
      await clock.advanceAsync(100, 10);
    }
    await p;
    return { result: result!, lines: out.lines };
  }
  const previous = Deno.env.get("VOXPIPE_MEDIA_WORKERS");
  try {
    const explicit = await run(await calleeFile(dir, 2), () => false);
    assertEquals(explicit.result.code, 2);
    assertMatch(explicit.result.reason ?? "", /media_workers: .* this run has a virtual clock: set media_workers 0/);
    Deno.env.set("VOXPIPE_MEDIA_WORKERS", "2");
    const byEnv = await run(repoPath("pipelines/callee.json"), (lines) => lines.some((l) => l.includes("ignored")));
    assertEquals(byEnv.result.code, 0, byEnv.result.reason);
    assertMatch(byEnv.lines.join("\n"), /WARN .*VOXPIPE_MEDIA_WORKERS=2 ignored: this run has a virtual clock/);
  } finally {
    if (previous === undefined) Deno.env.delete("VOXPIPE_MEDIA_WORKERS");
    else Deno.env.set("VOXPIPE_MEDIA_WORKERS", previous);
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("media_workers: a worker's clock is its MediaLoop by default; with VOXPIPE_NET=deno, a real clock that wakes up as --scheduler says (thread by default, main when asked)", async () => {
  for (const mode of ["loop", undefined, "main"]) {
    const p = spawnCli([
      "--pipeline",
      "pipelines/callee.json",
      "--set",
      "port=0",
      "--log-level",
      "debug",
      ...(mode && mode !== "loop" ? ["--scheduler", mode] : []),
    ], { timeoutMs: 90_000, env: { VOXPIPE_MEDIA_WORKERS: "1", ...(mode === "loop" ? {} : { VOXPIPE_NET: "deno" }) } });
    try {
      if (mode === "loop") {
        await p.waitForOutput(/media worker 1 ready \(RTP ports \d+-\d+, clock: [^)]*\)+/, 60_000);
        assertMatch(p.output(), /media worker 1 ready \(RTP ports \d+-\d+, clock: MediaLoop \(fast UDP path\)\)/);
        continue;
      }
      // The worker reports the mode its own clock runs in: a worker that ignored the front's would say thread.
      await p.waitForOutput(/media worker 1 ready \(RTP ports \d+-\d+, clock: real, scheduler \w+\)/, 60_000);
      assertMatch(p.output(), new RegExp(`media worker 1 ready .*clock: real, scheduler ${mode ?? "thread"}\\)`));
    } finally {
      p.kill();
      await p.result;
    }
  }
});
