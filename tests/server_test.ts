/**
 * pipelines/server.json, the call server: run on the in-memory network and a VirtualClock (nothing here depends on
 * the machine's speed), with callers that record what they hear. The caller hears the greeting sample-exact through
 * G.711; the server records what each caller says sample-exact, one file per call named from the template; stereo
 * recordings hold the caller left and what we sent right; max_calls refuses with 503 or 486; calls end cleanly in
 * every way (BYE from the caller, BYE from the server at max_duration, CANCEL before the answer, RTP timeout), each
 * recording finalized with exactly what was received, the call's ports released. Shutdown with calls in every state
 * (answered incoming and dialed: BYE; ringing incoming: 603; ringing dial: CANCEL), every recording finalized; and
 * once through the CLI for real (SIGTERM).
 */
import { assert, assertEquals, assertMatch } from "./assert.ts";
import { VirtualClock } from "../core/clock.ts";
import { Logger, MemoryOutput } from "../core/log.ts";
import { MemoryNetwork } from "../core/net/memory.ts";
import { sanitizeFileComponent } from "../core/paths.ts";
import { createRegistry, PipelineRunner, type RunResult } from "../mod.ts";
import {
  assertSampleExact,
  findAlignment,
  findPackets,
  type G711Codec,
  readWav,
  spawnCli,
  writeFixture,
} from "./media_util.ts";
import { freeUdpPort } from "./sip_util.ts";
import { repoPath, settleUntil } from "./util.ts";
import { createOffer, negotiated, SipUserAgent } from "../plugins/sip/mod.ts";

const SERVER_JSON = repoPath("pipelines/server.json");
const HELLO = repoPath("examples/audio/hello.wav");

/** One in-memory world: a clock and a network every run of the test shares. */
interface World {
  clock: VirtualClock;
  net: MemoryNetwork;
  dir: string;
}

async function world(): Promise<World> {
  const clock = new VirtualClock();
  return { clock, net: new MemoryNetwork({ clock, latencyMs: 1 }), dir: await Deno.makeTempDir({ prefix: "srv-" }) };
}

/** A file run on the world's clock and network, with its log lines. */
interface Run {
  runner: PipelineRunner;
  result: Promise<RunResult>;
  out: MemoryOutput;
  done: () => boolean;
  stop: () => void;
}

async function runFile(w: World, file: string, set: string[]): Promise<Run> {
  const out = new MemoryOutput();
  const abort = new AbortController();
  const runner = await PipelineRunner.load(file, {
    registry: createRegistry(),
    set,
    clock: w.clock,
    net: w.net,
    log: new Logger({ level: "info", outputs: [out] }),
    signal: abort.signal,
  });
  let ended = false;
  const result = runner.run().finally(() => ended = true);
  return { runner, result, out, done: () => ended, stop: () => abort.abort() };
}

/**
 * Lets virtual time pass until `until()` holds (at most `maxMs`), in 10 ms steps; then, if it still does not hold,
 * waits for it in real time (at most 30 s) without moving the clock: the rest may be real work, such as a
 * recording's file operations, which a busy machine makes slow.
 */
async function advanceUntil(w: World, until: () => boolean, maxMs: number): Promise<void> {
  for (let t = 0; t < maxMs && !until(); t += 100) await w.clock.advanceAsync(100, 10);
  await settleUntil(w.clock, until, `after ${maxMs} ms of virtual time`, 0);
}

/** Waits until the server has logged `n` call summaries: their calls' media stopped, their recordings finalized. */
async function untilSummaries(w: World, srv: Run, n: number): Promise<void> {
  await settleUntil(w.clock, () => summaries(srv.out.lines).length >= n, `${n} call summaries`);
}

/** The server on 127.0.0.1:5060 of the world, with `set` on top of the test's defaults; resolves once it listens. */
async function server(w: World, set: string[]): Promise<Run> {
  const run = await runFile(w, SERVER_JSON, [
    "rtp_ports=31000-31019",
    `record=${w.dir}/rec/\${call.n}-\${call.id}.wav`,
    ...set,
  ]);
  await startUp(run, "[SIP] listening on udp");
  return run;
}

/**
 * Waits, without moving virtual time, until a run has logged `line` (it has loaded, checked its templates and
 * bound its sockets, which takes real time): what happens after that runs on the virtual clock.
 */
async function startUp(run: Run, line: string): Promise<void> {
  for (let i = 0; i < 6000 && !run.done() && !run.out.lines.some((l) => l.includes(line)); i++) {
    await new Promise((r) => setTimeout(r, 5));
  }
  assert(run.out.lines.some((l) => l.includes(line)), `no "${line}" in:\n${run.out.lines.join("\n")}`);
}

/** A caller run (see {@linkcode callerFile}), once it has sent its INVITE. */
async function call(w: World, file: string, set: string[]): Promise<Run> {
  const run = await runFile(w, file, set);
  await startUp(run, "INVITE sent");
  return run;
}

/**
 * Lets virtual time pass (10 ms at a time) until `run`'s call is answered, then waits with the clock standing still
 * until its chains have started and it streams (real work: its file opened, its stages started), so that what it
 * sends starts at its answer's virtual time, however long that start took.
 */
async function untilStreaming(w: World, run: Run): Promise<void> {
  const calls = await run.runner.callService();
  const answered = () => run.done() || calls.calls().some((c) => c.state === "answered" || c.state === "ended");
  for (let t = 0; t < 30_000 && !answered(); t += 10) await w.clock.advanceAsync(10, 1);
  const streaming = () => run.done() || run.out.lines.some((l) => l.includes("[RTP] streaming to"));
  await settleUntil(w.clock, streaming, "the caller streaming", 0);
}

/**
 * A caller that sends `file` and records what it hears to `out`; it hangs up when the file has been sent (or, with
 * `hangup: false`, stays in the call until the peer hangs up).
 */
async function callerFile(w: World, name: string, opts: { hangup?: boolean } = {}): Promise<string> {
  const path = `${w.dir}/${name}.json`;
  await Deno.writeTextFile(
    path,
    JSON.stringify({
      parameters: {
        to: { default: "sip:voxpipe@127.0.0.1:5060" },
        file: { default: "" },
        out: { default: "" },
        codecs: { default: "PCMU" },
        ring_timeout: { default: 30 },
      },
      control: {
        use: "sip",
        role: "caller",
        to: "${to}",
        port: 0,
        bind: "127.0.0.1",
        codecs: "${codecs}",
        ring_timeout: "${ring_timeout}",
        linger: 0,
        hangup_on: opts.hangup === false ? [] : ["send"],
      },
      pipelines: {
        send: [
          { use: "file-source", path: "${file}" },
          { use: "resampler", rate: 8000, channels: 1 },
          { use: "g711-encoder", codec: "${codec}" },
          { use: "rtp-packetizer", payload_type: "${payloadType}", ptime: "${ptime}" },
          { use: "rtcp", local_port: "${local.rtcp_port}", bind: "${local.bind}", remote: "${remote.rtcp}" },
          { use: "udp-sink", to: "${remote.rtp}", bind: "${local.bind}", local_port: "${local.rtp_port}" },
        ],
        receive: [
          { use: "udp-source", port: "${local.rtp_port}", bind: "${local.bind}", peer: "${remote.rtp}" },
          { use: "rtp-depacketizer", codec: "${codec}", payload_type: "${payloadType}" },
          { use: "rtcp", local_port: "${local.rtcp_port}", bind: "${local.bind}", remote: "${remote.rtcp}" },
          { use: "jitter-buffer", ptime: "${ptime}" },
          { use: "g711-decoder" },
          { use: "wav-sink", path: "${out}" },
        ],
      },
    }),
  );
  return path;
}

/**
 * A callee on `bind` (port 5062) that sends `file` to whoever calls it and records what it hears to `out`; it
 * answers after `answer_after` s, takes one call and never hangs up itself.
 */
async function answererFile(w: World, name: string): Promise<string> {
  const path = `${w.dir}/${name}.json`;
  await Deno.writeTextFile(
    path,
    JSON.stringify({
      parameters: {
        bind: { default: "127.0.0.3" },
        file: { default: "" },
        out: { default: "" },
        answer_after: { default: 0 },
      },
      control: {
        use: "sip",
        role: "callee",
        port: 5062,
        bind: "${bind}",
        codecs: "PCMU",
        calls: 1,
        answer_after: "${answer_after}",
        linger: 0,
      },
      pipelines: {
        send: [
          { use: "file-source", path: "${file}" },
          { use: "g711-encoder", codec: "${codec}" },
          { use: "rtp-packetizer", payload_type: "${payloadType}", ptime: "${ptime}" },
          { use: "udp-sink", to: "${remote.rtp}", bind: "${local.bind}", local_port: "${local.rtp_port}" },
        ],
        receive: [
          { use: "udp-source", port: "${local.rtp_port}", bind: "${local.bind}", peer: "${remote.rtp}" },
          { use: "rtp-depacketizer", codec: "${codec}", payload_type: "${payloadType}" },
          { use: "jitter-buffer", ptime: "${ptime}" },
          { use: "g711-decoder" },
          { use: "wav-sink", path: "${out}" },
        ],
      },
    }),
  );
  return path;
}

/** A file → (resampler) → G.711 round trip → WAV, offline: what a peer hears of `file`; or without G.711. */
async function reference(w: World, file: string, codec: G711Codec | "none", out: string): Promise<Int16Array> {
  const path = `${w.dir}/ref-${codec}.json`;
  const g711 = codec === "none" ? [] : [{ use: "g711-encoder", codec }, { use: "g711-decoder" }];
  await Deno.writeTextFile(
    path,
    JSON.stringify({
      pipelines: {
        main: [
          { use: "file-source", path: file },
          { use: "resampler", rate: 8000, channels: 1 },
          ...g711,
          { use: "wav-sink", path: out },
        ],
      },
    }),
  );
  // Offline (file to file): it needs no clock time.
  const r = await runFile(w, path, []);
  assertEquals((await r.result).code, 0);
  return (await readWav(out)).samples;
}

/** The server's `call summary` lines: received packets, lost, the recording and its length, why it ended. */
function summaries(lines: string[]): { received: number; lost: number; recording?: string; endedBy: string }[] {
  return lines.filter((l) => l.includes("call summary:")).map((l) => ({
    received: Number(/ received=(\d+)/.exec(l)![1]),
    lost: Number(/ lost=(\d+)/.exec(l)![1]),
    recording: / recording=(\S+) /.exec(l)?.[1],
    endedBy: /ended by (.*?)(?: recording=| call=)/.exec(l)![1],
  }));
}

/** Stops the server and waits for it; returns its result. */
async function stopServer(w: World, s: Run): Promise<RunResult> {
  s.stop();
  await advanceUntil(w, s.done, 30_000);
  return await s.result;
}

for (const codec of ["PCMU", "PCMA"] as const) {
  Deno.test(`server.json (${codec}): the caller hears the greeting sample-exact; the recording holds what it said; its BYE ends the call; ports released`, async () => {
    const w = await world();
    try {
      const fx = await writeFixture(w.dir, codec, 6);
      const greeting = await reference(w, HELLO, codec, `${w.dir}/greeting-ref.wav`);
      const srv = await server(w, [`greeting=${HELLO}`, "rtp_ports=31000-31003"]);
      const c = await call(w, await callerFile(w, "caller"), [
        `file=${fx.sourcePath}`,
        `out=${w.dir}/heard.wav`,
        `codecs=${codec}`,
      ]);
      await advanceUntil(w, c.done, 30_000);
      assertEquals(await c.result, { code: 0 }, c.out.lines.join("\n"));
      await untilSummaries(w, srv, 1);
      // The caller heard the greeting, sample-exact through G.711, after a little silence (the mixer's first
      // frames, before the file is read) and followed by silence (A-law's silence decodes to ±8).
      const heard = await readWav(`${w.dir}/heard.wav`);
      assert(heard.finalized);
      const quiet = codec === "PCMA" ? 8 : 0;
      assertSampleExact(greeting, heard.samples, { maxHeadPeak: quiet, concealTail: quiet ? Infinity : 0 });
      // The server recorded the caller: every packet it received, sample-exact, nothing else.
      const [sum] = summaries(srv.out.lines);
      assertEquals(sum.received, 300);
      assertEquals(sum.lost, 0);
      assertEquals(sum.endedBy, "remote: BYE");
      const rec = await readWav(sum.recording!);
      assert(rec.finalized);
      assertEquals(rec.samples.length, sum.received * 160);
      assertEquals(rec.samples, fx.reference);
      // The call's RTP/RTCP pair is free again (the range holds two pairs).
      for (const port of [31000, 31001, 31002, 31003]) await w.net.bind("127.0.0.1", port).close();
      assertEquals(await stopServer(w, srv), { code: 0 });
    } finally {
      await Deno.remove(w.dir, { recursive: true });
    }
  });
}

Deno.test("server.json: an INVITE whose SDP names another host gets no RTP sent there; a caller heard from its SDP address gets the greeting", async () => {
  const w = await world();
  const ua = new SipUserAgent({ transport: w.net.bind("127.0.0.7", 5070), clock: w.clock, overload: false });
  // The "victim" the forged SDP names, and the caller's own RTP socket.
  const victim = w.net.bind("127.0.0.9", 4000);
  const own = w.net.bind("127.0.0.7", 30000);
  const hitVictim: Uint8Array[] = [], hitOwn: Uint8Array[] = [];
  victim.listen((d) => void hitVictim.push(d));
  own.listen((d) => void hitOwn.push(d));
  const offer = (ip: string, port: number) =>
    createOffer({ address: ip, port, registry: createRegistry().codecs, codecs: ["PCMU"] });
  try {
    const srv = await server(w, [`greeting=${HELLO}`, "rtp_timeout=3"]);
    await w.clock.advanceAsync(50, 10);
    const forged = ua.invite("sip:voxpipe@127.0.0.1:5060", { sdp: offer("127.0.0.9", 4000) });
    await advanceUntil(w, () => forged.state === "established", 5_000);
    // The greeting plays to nobody: the address the SDP named is never heard from, so nothing goes there.
    await advanceUntil(w, () => forged.state === "ended", 10_000);
    assertEquals(forged.endInfo?.by, "remote", "hung up by the server after rtp_timeout");
    assertEquals(hitVictim.length, 0, "the server sent RTP to the host the SDP named");
    // A caller whose SDP names its own socket, and who sends from it: it hears the greeting.
    const real = ua.invite("sip:voxpipe@127.0.0.1:5060", { sdp: offer("127.0.0.7", 30000) });
    await advanceUntil(w, () => real.state === "established", 5_000);
    const to = {
      hostname: "127.0.0.1",
      port: negotiated(real.remoteSdp!, { registry: createRegistry().codecs }).remotePort,
    };
    for (let i = 0; i < 10; i++) {
      own.post(rtpPacket(i), to);
      await w.clock.advanceAsync(20, 10);
    }
    await advanceUntil(w, () => hitOwn.length >= 20, 5_000);
    assert(hitOwn.length >= 20, `${hitOwn.length} packets of the greeting`);
    assertEquals(hitVictim.length, 0);
    void real.hangup();
    await advanceUntil(w, () => real.state === "ended", 5_000);
    await untilSummaries(w, srv, 2);
    assertEquals(await stopServer(w, srv), { code: 0 });
  } finally {
    await ua.close();
    await victim.close();
    await own.close();
    await Deno.remove(w.dir, { recursive: true });
  }
});

/** A minimal RTP packet (PCMU, 160 bytes of µ-law silence). */
function rtpPacket(seq: number): Uint8Array {
  const p = new Uint8Array(172).fill(0xff);
  p[0] = 0x80;
  p[2] = seq >> 8;
  p[3] = seq & 0xff;
  new DataView(p.buffer).setUint32(4, seq * 160);
  new DataView(p.buffer).setUint32(8, 0x5eed);
  return p;
}

Deno.test("server.json: concurrent calls, one recording each, named from the template (call.n, call.direction, date, call.id)", async () => {
  const w = await world();
  try {
    const srv = await server(w, [`record=${w.dir}/rec/\${call.n}-\${call.direction}-\${date}-\${call.id}.wav`]);
    await w.clock.advanceAsync(50, 10);
    const fixtures: Awaited<ReturnType<typeof writeFixture>>[] = [];
    const callers: Run[] = [];
    for (let i = 0; i < 3; i++) {
      const dir = `${w.dir}/fx${i}`;
      await Deno.mkdir(dir);
      const fx = await writeFixture(dir, "PCMU", 2 + i, 10 + i);
      fixtures.push(fx);
      callers.push(
        await call(w, await callerFile(w, `caller${i}`), [`file=${fx.sourcePath}`, `out=${w.dir}/heard${i}.wav`]),
      );
    }
    await advanceUntil(w, () => callers.every((c) => c.done()), 30_000);
    for (const c of callers) assertEquals((await c.result).code, 0);
    await untilSummaries(w, srv, 3);
    const files = [...Deno.readDirSync(`${w.dir}/rec`)].map((e) => e.name).sort();
    assertEquals(files.length, 3);
    const callIds = callers.map((c) => sanitizeFileComponent(/call=(\S+)/.exec(c.out.lines.join("\n"))![1]));
    const d = new Date();
    const today = `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, "0")}-${
      String(d.getDate()).padStart(2, "0")
    }`;
    for (const [i, name] of files.entries()) {
      const m = /^(\d)-in-(\d{4}-\d{2}-\d{2})-(.+)\.wav$/.exec(name);
      assert(m, name);
      assertEquals(Number(m[1]), i + 1);
      assert(m[2] === today || Math.abs(Date.parse(m[2]) - Date.parse(today)) <= 86400_000, m[2]);
      assert(callIds.includes(m[3]), `${m[3]} is one of the callers' Call-IDs`);
      // Each recording holds its own caller, sample-exact: no crosstalk between concurrent calls.
      const k = callIds.indexOf(m[3]);
      assertEquals((await readWav(`${w.dir}/rec/${name}`)).samples, fixtures[k].reference);
    }
    assertEquals(await stopServer(w, srv), { code: 0 });
  } finally {
    await Deno.remove(w.dir, { recursive: true });
  }
});

Deno.test("server.json: record_mode stereo holds the caller left and the greeting right; mixed holds both in mono", async () => {
  const w = await world();
  try {
    const fx = await writeFixture(w.dir, "PCMU", 6);
    const greeting = await reference(w, HELLO, "none", `${w.dir}/greeting-8k.wav`);
    for (const mode of ["stereo", "mixed"]) {
      const srv = await server(w, [
        `greeting=${HELLO}`,
        `record_mode=${mode}`,
        `record=${w.dir}/${mode}.wav`,
      ]);
      const c = await call(w, await callerFile(w, "caller"), [`file=${fx.sourcePath}`, `out=${w.dir}/heard.wav`]);
      await advanceUntil(w, c.done, 30_000);
      await w.clock.advanceAsync(500, 10);
      assertEquals(await stopServer(w, srv), { code: 0 });
      const rec = await readWav(`${w.dir}/${mode}.wav`);
      assert(rec.finalized);
      assertEquals(rec.sampleRate, 8000);
      if (mode === "stereo") {
        assertEquals(rec.channels, 2);
        const left = rec.samples.filter((_, i) => i % 2 === 0);
        const right = rec.samples.filter((_, i) => i % 2 === 1);
        // Whole 20 ms frames, in order: the live mixer may put silence between them, never splits one.
        assertEquals(findPackets(fx.reference, left), { found: 300, total: 300 });
        const g = findPackets(greeting, right);
        assertEquals(g.found, g.total);
        assertEquals(findPackets(greeting, left).found, 0, "no greeting on the left");
        assertEquals(findPackets(fx.reference, right).found, 0, "no caller on the right");
      } else {
        assertEquals(rec.channels, 1);
        // Both are in it: each correlates with the mix.
        assert(findAlignment(fx.reference, rec.samples).score > 0.3);
        assert(findAlignment(greeting, rec.samples).score > 0.3);
        assertEquals(rec.samples.length >= fx.reference.length, true);
      }
    }
  } finally {
    await Deno.remove(w.dir, { recursive: true });
  }
});

Deno.test("server.json: max_calls: a call beyond it gets 503 (busy_status 503, the default) or 486", async () => {
  for (const busy of [503, 486]) {
    const w = await world();
    try {
      const fx = await writeFixture(w.dir, "PCMU", 3);
      const srv = await server(w, ["max_calls=1", `busy_status=${busy}`]);
      const a = await call(w, await callerFile(w, "a"), [`file=${fx.sourcePath}`, `out=${w.dir}/a.wav`]);
      await w.clock.advanceAsync(300, 10);
      const b = await call(w, await callerFile(w, "b"), [`file=${fx.sourcePath}`, `out=${w.dir}/b.wav`]);
      await advanceUntil(w, () => a.done() && b.done(), 30_000);
      assertEquals((await a.result).code, 0);
      const rb = await b.result;
      assertEquals(rb.code, 1);
      assertEquals(rb.reason, busy === 503 ? "call failed: 503 Service Unavailable" : "call failed: 486 Busy Here");
      await untilSummaries(w, srv, 1);
      assertEquals(await stopServer(w, srv), { code: 0 });
      // Read once the server has ended: every summary it would log is in.
      assertEquals(summaries(srv.out.lines).length, 1, "the refused call never started");
    } finally {
      await Deno.remove(w.dir, { recursive: true });
    }
  }
});

Deno.test("server.json: the server's BYE at max_duration; the recording holds what was received, finalized", async () => {
  const w = await world();
  try {
    const fx = await writeFixture(w.dir, "PCMU", 6);
    const srv = await server(w, ["max_duration=2"]);
    await w.clock.advanceAsync(50, 10);
    const c = await call(w, await callerFile(w, "caller"), [`file=${fx.sourcePath}`, `out=${w.dir}/heard.wav`]);
    // max_duration counts from the answer: the caller's packets from then, not from when its start was done.
    await untilStreaming(w, c);
    await advanceUntil(w, c.done, 30_000);
    const r = await c.result;
    assertEquals(r.code, 1);
    assertMatch(r.reason!, /^call ended by the peer \(BYE\) after 2(\.\d)? s, before the file was sent/);
    await untilSummaries(w, srv, 1);
    const [sum] = summaries(srv.out.lines);
    assertEquals(sum.endedBy, "local: max_duration (2 s) reached");
    const rec = await readWav(sum.recording!);
    assert(rec.finalized);
    assert(sum.received >= 95 && sum.received <= 101, `${sum.received} packets in 2 s`);
    assertEquals(rec.samples.length, sum.received * 160);
    assertEquals(rec.samples, fx.reference.subarray(0, rec.samples.length));
    assertEquals(await stopServer(w, srv), { code: 0 });
  } finally {
    await Deno.remove(w.dir, { recursive: true });
  }
});

Deno.test("server.json: CANCEL before the answer ends the call, nothing recorded; RTP timeout hangs up and keeps what came", async () => {
  const w = await world();
  try {
    const fx = await writeFixture(w.dir, "PCMU", 1);
    const srv = await server(w, ["answer_after=10", "rtp_timeout=2"]);
    await w.clock.advanceAsync(50, 10);
    const c = await call(w, await callerFile(w, "caller"), [
      `file=${fx.sourcePath}`,
      `out=${w.dir}/heard.wav`,
      "ring_timeout=2",
    ]);
    await advanceUntil(w, c.done, 30_000);
    assertEquals(await c.result, {
      code: 1,
      reason: "no answer within 2 s (CANCEL sent, 487 Request Terminated)",
    });
    await untilSummaries(w, srv, 1);
    const [cancelled] = summaries(srv.out.lines);
    assertEquals(cancelled.endedBy, "remote: CANCEL");
    assertEquals(cancelled.recording, undefined);
    assertEquals([...Deno.readDirSync(w.dir)].some((e) => e.name === "rec"), false, "no recording at all");
    assertEquals(await stopServer(w, srv), { code: 0 });

    // A caller that goes quiet without hanging up: the server hangs up after rtp_timeout.
    const srv2 = await server(w, ["rtp_timeout=2"]);
    await w.clock.advanceAsync(50, 10);
    const quiet = await call(w, await callerFile(w, "quiet", { hangup: false }), [
      `file=${fx.sourcePath}`,
      `out=${w.dir}/heard2.wav`,
    ]);
    await untilStreaming(w, quiet); // rtp_timeout counts from the answer: its 1 s file must not be late for it
    await advanceUntil(w, quiet.done, 30_000);
    assertEquals(await quiet.result, { code: 0 });
    await untilSummaries(w, srv2, 1);
    assert(srv2.out.lines.some((l) => l.includes("hanging up: no RTP received within the timeout")));
    const [sum] = summaries(srv2.out.lines);
    assertEquals(sum.endedBy, "local: no RTP received within the timeout");
    assertEquals(sum.received, 50);
    const rec = await readWav(sum.recording!);
    assert(rec.finalized);
    assertEquals(rec.samples, fx.reference);
    assertEquals(await stopServer(w, srv2), { code: 0 });
  } finally {
    await Deno.remove(w.dir, { recursive: true });
  }
});

Deno.test("server.json: shutdown: BYE to every answered call (incoming and dialed), 603 to a ringing one, CANCEL to a ringing dial; every recording finalized", async () => {
  const w = await world();
  try {
    const fx = await writeFixture(w.dir, "PCMU", 30);
    // Far ends of the two dialed calls: one answers at once, one would answer only after a minute.
    const bob = await runFile(w, await answererFile(w, "bob"), [`file=${fx.sourcePath}`, `out=${w.dir}/bob.wav`]);
    await startUp(bob, "[SIP] listening on udp");
    const carol = await runFile(w, await answererFile(w, "carol"), [
      "bind=127.0.0.4",
      "answer_after=60",
      `file=${fx.sourcePath}`,
      `out=${w.dir}/carol.wav`,
    ]);
    await startUp(carol, "[SIP] listening on udp");
    const srv = await server(w, [`greeting=${HELLO}`, `record=${w.dir}/rec/\${call.direction}-\${call.n}.wav`]);
    const calls = await srv.runner.callService();
    // The first two incoming calls are answered, the third is left ringing.
    let incoming = 0;
    calls.onIncoming(() => ++incoming <= 2 ? { action: "answer" } : { action: "ring" });
    const callers: Run[] = [];
    for (const name of ["a", "b", "ringing"]) {
      callers.push(
        await call(w, await callerFile(w, name, { hangup: false }), [
          `file=${fx.sourcePath}`,
          `out=${w.dir}/${name}.wav`,
        ]),
      );
      await w.clock.advanceAsync(200, 10);
    }
    const answered = await calls.dial("sip:bob@127.0.0.3:5062");
    const ringing = await calls.dial("sip:carol@127.0.0.4:5062");
    const states = () => calls.calls().filter((c) => c.direction === "in").map((c) => c.state).join();
    await settleUntil(
      w.clock,
      () =>
        calls.call(answered.id)?.state === "answered" && calls.call(ringing.id)?.state === "ringing" &&
        states() === "answered,answered,ringing",
      "two calls answered and one ringing each way",
      3000,
    );
    // Media flows for a while before the shutdown.
    await w.clock.advanceAsync(3000, 10);
    assertEquals(calls.call(answered.id)!.state, "answered");
    assertEquals(calls.call(ringing.id)!.state, "ringing");
    assertEquals(calls.calls().filter((c) => c.direction === "in").map((c) => c.state), [
      "answered",
      "answered",
      "ringing",
    ]);

    assertEquals(await stopServer(w, srv), { code: 0 });
    await advanceUntil(w, () => callers.every((c) => c.done()) && bob.done(), 30_000);
    // The answered callers and bob were hung up by the server's BYE; the ringing caller was declined.
    for (const c of [callers[0], callers[1], bob]) {
      assertEquals(await c.result, { code: 0 }, c.out.lines.join("\n"));
      assert(c.out.lines.some((l) => l.includes("[SIP] BYE received")), c.out.lines.join("\n"));
    }
    assertEquals(await callers[2].result, { code: 1, reason: "call failed: 603 Decline" });
    // carol's INVITE was cancelled: she never answered, and the call is gone on her side too. A cancelled call does
    // not count among her `calls: 1` (answered calls only): she is still waiting for one, and is stopped here.
    await advanceUntil(w, () => carol.out.lines.some((l) => l.includes("CANCEL received")), 10_000);
    carol.stop();
    await advanceUntil(w, carol.done, 10_000);
    assert(!carol.out.lines.some((l) => l.includes("200 OK sent")), "carol never answered");
    assertEquals((srv.out.lines.filter((l) => l.includes("[SIP] BYE sent"))).length, 3);

    // Every answered call has its summary, ended by the shutdown, and a finalized recording holding exactly what
    // it received from its peer, from the first packet on.
    const sums = summaries(srv.out.lines).filter((s) => s.recording !== undefined);
    assertEquals(sums.length, 3);
    assertEquals(sums.map((s) => /\/rec\/(\w+)-\d+\.wav$/.exec(s.recording!)?.[1]).sort(), ["in", "in", "out"]);
    for (const sum of sums) {
      assertEquals(sum.endedBy, "local: interrupted");
      assertEquals(sum.lost, 0);
      assert(sum.received > 50, `${sum.received} packets`);
      const rec = await readWav(sum.recording!);
      assert(rec.finalized, `${sum.recording} is finalized`);
      assertEquals(rec.samples.length, sum.received * 160);
      assertEquals(rec.samples, fx.reference.subarray(0, rec.samples.length));
    }
    // The ringing calls were recorded nowhere.
    assertEquals([...Deno.readDirSync(`${w.dir}/rec`)].length, 3);
    // What the answered peers heard ends cleanly too: their recordings are finalized.
    for (const name of ["a", "b", "bob"]) assert((await readWav(`${w.dir}/${name}.wav`)).finalized, name);
  } finally {
    await Deno.remove(w.dir, { recursive: true });
  }
});

Deno.test("server.json through the CLI: SIGTERM sends BYE to every call and finalizes every recording", async () => {
  const dir = await Deno.makeTempDir({ prefix: "srv-cli-" });
  try {
    const fx = await writeFixture(dir, "PCMU", 30);
    const port = freeUdpPort();
    const srv = spawnCli([
      "--pipeline",
      "pipelines/server.json",
      "--set",
      `port=${port}`,
      "--set",
      `greeting=${HELLO}`,
      "--set",
      `record=${dir}/rec/\${call.id}.wav`,
      "--log-file",
      `${dir}/server.log`,
      "--log-format",
      "python",
    ], { timeoutMs: 60_000 });
    await srv.waitForOutput(/\[SIP\] listening on udp 127\.0\.0\.1:\d+/, 20_000);
    const callers = [0, 1].map(() =>
      spawnCli([
        "--pipeline",
        "pipelines/caller.json",
        "--set",
        `to=sip:bob@127.0.0.1:${port}`,
        "--set",
        `file=${fx.sourcePath}`,
      ], { timeoutMs: 60_000 })
    );
    await srv.waitForOutput(/media: PCMU[\s\S]*media: PCMU/, 30_000);
    // Let some audio flow, then stop the server.
    await new Promise((r) => setTimeout(r, 1500));
    srv.kill("SIGTERM");
    const [rs, ...rc] = await Promise.all([srv.result, ...callers.map((c) => c.result)]);
    assertEquals(rs.code, 0, rs.stderr.slice(-3000));
    for (const r of rc) {
      assertEquals(r.code, 1, r.stderr.slice(-2000));
      assertMatch(r.stderr, /call ended by the peer \(BYE\)/);
    }
    assertEquals((rs.stderr.match(/\[SIP\] BYE sent/g) ?? []).length, 2);
    const sums = summaries(rs.stderr.split("\n"));
    assertEquals(sums.length, 2);
    for (const s of sums) {
      assertEquals(s.endedBy, "local: interrupted");
      const rec = await readWav(s.recording!);
      assert(rec.finalized, `${s.recording} is finalized`);
      assert(s.received > 0);
      // Exactly what was received (record mode: the sender's timeline, from its first packet).
      assertEquals(rec.samples.length, (s.received + s.lost) * 160);
      const found = findPackets(fx.reference.subarray(0, rec.samples.length), rec.samples);
      assertEquals(found.found, found.total - s.lost);
    }
    // The log file, in the `[LEVEL] - time - message` format.
    const log = await Deno.readTextFile(`${dir}/server.log`);
    assertMatch(log, /^\[INFO\] - \d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2},\d{3} - \[SIP\] listening on udp /m);
    assertMatch(log, /^\[INFO\] - .* - \[SIP\] call summary: /m);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("server.json dials through the library (runner.callService): the callee hears the greeting; hangup() ends it", async () => {
  const w = await world();
  try {
    const greeting = await reference(w, HELLO, "PCMU", `${w.dir}/greeting-ref.wav`);
    const callee = await runFile(w, repoPath("pipelines/callee.json"), [
      "bind=127.0.0.3",
      "port=5062",
      "calls=1",
      "codecs=PCMU",
      `record=${w.dir}/callee-heard.wav`,
    ]);
    await startUp(callee, "[SIP] listening on udp");
    const out = new MemoryOutput();
    const abort = new AbortController();
    const runner = await PipelineRunner.load(SERVER_JSON, {
      registry: createRegistry(),
      set: [`greeting=${HELLO}`, `record=${w.dir}/rec/\${call.direction}-\${call.id}.wav`, "rtp_ports=31000-31019"],
      clock: w.clock,
      net: w.net,
      log: new Logger({ level: "info", outputs: [out] }),
      signal: abort.signal,
    });
    let ended = false;
    const run = runner.run().finally(() => ended = true);
    const calls = await runner.callService();
    const events: string[] = [];
    calls.onEvent((e) => e.type !== "message" && e.type !== "stats" && events.push(`${e.type} ${e.call.state}`));
    const info = await calls.dial("sip:bob@127.0.0.3:5062");
    await settleUntil(w.clock, () => calls.call(info.id)?.state === "answered", "the dialed call answered", 7000);
    // Its chains start once it is answered (real work): the greeting plays from then to its end.
    await settleUntil(w.clock, () => out.lines.some((l) => l.includes("[RTP] streaming to")), "the greeting", 0);
    await w.clock.advanceAsync(7000, 10);
    assertEquals(calls.call(info.id)!.state, "answered");
    assert(calls.session(info.id)!.bus("from-call"), "the call's session and its buses");
    const hung = calls.hangup(info.id);
    await w.clock.advanceAsync(500, 10);
    await hung;
    await advanceUntil(w, callee.done, 10_000);
    assertEquals((await callee.result).code, 0);
    // The ended event and the summary follow the server's recording, finalized (real file operations).
    await settleUntil(
      w.clock,
      () => summaries(out.lines).length >= 1 && events.includes("ended ended"),
      "the call's summary and ended event",
    );
    assertEquals(events, ["dialing dialing", "progress ringing", "answered answered", "ended ended"]);
    // The callee recorded the greeting, sample-exact through G.711, then silence.
    const heard = await readWav(`${w.dir}/callee-heard.wav`);
    assertSampleExact(greeting, heard.samples, { maxHeadPeak: 0, concealTail: 0 });
    const [sum] = summaries(out.lines);
    assertEquals(sum.endedBy, "local: hung up by the application");
    assertMatch(sum.recording!, new RegExp(`/rec/out-${info.id}\\.wav$`));
    abort.abort();
    await advanceUntil(w, () => ended, 10_000);
    assertEquals(await run, { code: 0 });
  } finally {
    await Deno.remove(w.dir, { recursive: true });
  }
});

Deno.test("server.json: a call whose recording directory is renamed mid-call: the summary names where the recording is now (and that it moved), and it holds the whole call", async () => {
  const w = await world();
  try {
    const fx = await writeFixture(w.dir, "PCMU", 6);
    const srv = await server(w, [`greeting=${HELLO}`]);
    const c = await call(w, await callerFile(w, "caller"), [`file=${fx.sourcePath}`, `out=${w.dir}/heard.wav`]);
    // Mid-call: the recording exists and holds some audio; then its directory is renamed (as `mv rec old`).
    const recDir = `${w.dir}/rec`, moved = `${w.dir}/rec-old`;
    const bytes = () => {
      try {
        return [...Deno.readDirSync(recDir)].map((e) => Deno.statSync(`${recDir}/${e.name}`).size)[0] ?? 0;
      } catch {
        return 0;
      }
    };
    await untilStreaming(w, c);
    await advanceUntil(w, () => bytes() > 8000, 3000);
    assert(!c.done(), "the call is still on");
    await Deno.rename(recDir, moved);
    await advanceUntil(w, c.done, 30_000);
    assertEquals(await c.result, { code: 0 }, c.out.lines.join("\n"));
    await untilSummaries(w, srv, 1);
    const line = srv.out.lines.find((l) => l.includes("call summary:"))!;
    const [sum] = summaries(srv.out.lines);
    assert(sum.recording!.startsWith(`${await Deno.realPath(moved)}/`), line);
    assertMatch(line, new RegExp(`moved while recording from ${w.dir}/rec/`));
    assert(srv.out.lines.some((l) => l.includes("the recording was moved while it was written")));
    const rec = await readWav(sum.recording!);
    assert(rec.finalized);
    assertEquals(rec.samples, fx.reference);
    assertEquals(await stopServer(w, srv), { code: 0 });
  } finally {
    await Deno.remove(w.dir, { recursive: true });
  }
});

Deno.test("an incoming call's send chain started before its 200 OK sends no RTP before the 200 goes, even without wait_for_peer: its stream is held and starts after it", async () => {
  const w = await world();
  // Datagrams as they reach the caller, in order: its SIP socket's 200 OK and its RTP socket's packets.
  const order: string[] = [];
  const ua = new SipUserAgent({
    transport: w.net.bind("127.0.0.7", 5070),
    clock: w.clock,
    overload: false,
    trace: (e) => {
      if (e.direction === "received" && /^SIP\/2\.0 200/.test(new TextDecoder().decode(e.data))) order.push("200");
    },
  });
  const rtp: Uint8Array[] = [];
  const own = w.net.bind("127.0.0.7", 30000);
  own.listen((d) => {
    order.push("rtp");
    rtp.push(d.slice());
  });
  // server.json as a user may write it: the greeting's udp-sink sends to the SDP's address at once (no
  // wait_for_peer), and the recording is on disk (its file is created asynchronously: the 200 waits for it).
  const file = `${w.dir}/no-wait.json`;
  const text = await Deno.readTextFile(SERVER_JSON);
  assert(text.includes(`"wait_for_peer": "\${call.incoming}"`));
  await Deno.writeTextFile(
    file,
    text.replace(`"wait_for_peer": "\${call.incoming}"`, `"wait_for_peer": false`).replace(
      `"$schema": "./schema.json",`,
      "",
    ),
  );
  try {
    const srv = await runFile(w, file, [
      "rtp_ports=31000-31019",
      `record=${w.dir}/rec/\${call.n}.wav`,
      `greeting=${HELLO}`,
    ]);
    await startUp(srv, "[SIP] listening on udp");
    const offer = createOffer({
      address: "127.0.0.7",
      port: 30000,
      registry: createRegistry().codecs,
      codecs: ["PCMU"],
    });
    const c = ua.invite("sip:voxpipe@127.0.0.1:5060", { sdp: offer });
    await advanceUntil(w, () => c.state === "established" && rtp.length >= 25, 5_000);
    assertEquals(order[0], "200", `first datagrams at the caller: ${order.slice(0, 5).join(", ")}`);
    assertEquals(order.filter((x) => x === "200").length >= 1, true);
    // Held, then sent on its timeline: packets in a row, 20 ms of audio each.
    const seq = (p: Uint8Array) => (p[2] << 8) | p[3];
    const ts = (p: Uint8Array) => new DataView(p.buffer, p.byteOffset).getUint32(4);
    for (let i = 1; i < 25; i++) assertEquals((seq(rtp[i]) - seq(rtp[0]) + 65536) % 65536, i);
    assertEquals((ts(rtp[24]) - ts(rtp[0]) + 2 ** 32) % 2 ** 32, 24 * 160);
    void c.hangup();
    await advanceUntil(w, () => c.state === "ended", 5_000);
    await untilSummaries(w, srv, 1);
    assertEquals(await stopServer(w, srv), { code: 0 });
  } finally {
    await ua.close();
    await own.close();
    await Deno.remove(w.dir, { recursive: true });
  }
});
