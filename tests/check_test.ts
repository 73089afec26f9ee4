/**
 * Errors at start, not at the first call: a file with a control section has
 * its chain templates built and checked when it loads (with the control
 * plugin's example call values, in a throw-away session on a memory network),
 * and `--check` validates any file completely without opening a socket, a
 * device or a file for writing.
 */
import { assert, assertEquals, assertMatch, assertRejects } from "./assert.ts";
import { createRegistry } from "../mod.ts";
import { ConfigError } from "../core/errors.ts";
import { PipelineRunner } from "../core/runner.ts";
import { VirtualClock } from "../core/clock.ts";
import { MemoryNetwork } from "../core/net/memory.ts";
import type { DatagramSocket, Network } from "../core/net/datagram.ts";
import { alsaSandbox, skipAudio } from "./fixtures/alsa/run.ts";
import { holdUdpPortPair, runBounded, spawnCli } from "./media_util.ts";
import { repoPath } from "./util.ts";

/** A network that counts binds and refuses them all. */
class RefusingNetwork implements Network {
  binds = 0;
  bind(hostname: string, port: number): DatagramSocket {
    this.binds++;
    throw new Error(`bind ${hostname}:${port} refused: nothing may be bound here`);
  }
}

/** A callee whose receive template has a typo in an option (`ptme`). */
function calleeWithTypo(stage: Record<string, unknown> = { use: "jitter-buffer", ptme: 20 }) {
  return {
    parameters: { port: { default: 0 } },
    control: { use: "sip", role: "callee", port: "${port}", hangup_on: ["receive"] },
    pipelines: {
      receive: [
        { use: "udp-source", port: "${local.rtp_port}", bind: "${local.bind}", peer: "${remote.rtp}" },
        { use: "rtp-depacketizer", codec: "${codec}", payload_type: "${payloadType}" },
        stage,
        { use: "g711-decoder" },
        { use: "wav-sink", path: "${cwd}/out/never-${call.id}.wav" },
      ],
    },
  };
}

Deno.test("a template with a typo fails at start (library): before the controller binds anything", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const file = `${dir}/bad-callee.json`;
    await Deno.writeTextFile(file, JSON.stringify(calleeWithTypo()));
    const net = new RefusingNetwork();
    const runner = await PipelineRunner.load(file, { registry: createRegistry(), net, clock: new VirtualClock() });
    const err = await assertRejects(() => runner.run(), ConfigError);
    assertMatch(err.message, /bad-callee\.json: pipelines\.receive\[2\]: unknown option "ptme" for jitter-buffer/);
    assertMatch(err.message, /\(did you mean "ptime"\?\)/);
    // The options are listed with their types.
    assertMatch(err.message, /jitter-buffer options: .*ptime \(integer/);
    // The SIP user agent never bound its port: the file failed before any call could come.
    assertEquals(net.binds, 0);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a template naming an unknown plugin or a missing file fails at start (library)", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const bad = `${dir}/bad-plugin.json`;
    await Deno.writeTextFile(bad, JSON.stringify(calleeWithTypo({ use: "jitter-bufer" })));
    const net = new RefusingNetwork();
    const r1 = await PipelineRunner.load(bad, { registry: createRegistry(), net, clock: new VirtualClock() });
    const e1 = await assertRejects(() => r1.run(), ConfigError);
    assertMatch(
      e1.message,
      /pipelines\.receive\[2\]\.use: unknown plugin "jitter-bufer" \(did you mean "jitter-buffer"\?\)/,
    );
    // A caller whose file does not exist: refused before the INVITE.
    const caller = JSON.parse(await Deno.readTextFile(repoPath("pipelines/caller.json")));
    const file = `${dir}/caller.json`;
    await Deno.writeTextFile(file, JSON.stringify(caller));
    const r2 = await PipelineRunner.load(file, {
      registry: createRegistry(),
      net,
      clock: new VirtualClock(),
      set: [`file=${dir}/missing.wav`, "to=sip:bob@127.0.0.1:5062"],
    });
    const e2 = await assertRejects(() => r2.run(), ConfigError);
    assertMatch(e2.message, /pipelines\.send\[0\]: file-source: .*missing\.wav: cannot open/);
    assertEquals(net.binds, 0);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a template with a typo fails at start (CLI): exit 1 with the file and JSON path, no SIP port bound", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const file = `${dir}/bad-callee.json`;
    await Deno.writeTextFile(file, JSON.stringify(calleeWithTypo()));
    const r = await spawnCli(["--pipeline", file], { timeoutMs: 60_000 }).result;
    assertEquals(r.code, 1, r.stderr);
    assertMatch(
      r.stderr,
      /^voxpipe: .*bad-callee\.json: pipelines\.receive\[2\]: unknown option "ptme" for jitter-buffer \(did you mean "ptime"\?\)/m,
    );
    assert(!/listening on udp/.test(r.stderr), `the SIP user agent was started:\n${r.stderr}`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("check(): templates built with the control plugin's example values; a good file checks clean and writes nothing", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const file = `${dir}/callee.json`;
    const good = calleeWithTypo({ use: "jitter-buffer", ptime: 20 });
    (good.control as Record<string, unknown>).calls = 1;
    await Deno.writeTextFile(file, JSON.stringify(good));
    const runner = await PipelineRunner.load(file, { registry: createRegistry() });
    const report = await runner.check();
    assertEquals(report.control?.use, "sip");
    assertEquals(report.control?.examples?.codec, "PCMU");
    assertEquals(report.control?.examples?.["remote.rtp"], "127.0.0.1:9");
    assertEquals(report.chains.map((c) => c.name), ["receive"]);
    const jb = report.chains[0].stages[2];
    assertEquals(jb.use, "jitter-buffer");
    // The chain ends in a file: the jitter buffer records on the sender's timeline.
    assertMatch(jb.note!, /^mode record/);
    assertEquals(report.chains[0].realtimeSink, false);
    // Nothing was written: the recorder of the checked template never started.
    assertEquals([...Deno.readDirSync(dir)].map((e) => e.name), ["callee.json"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("check() binds nothing on the run's network and says what each shipped file would run", async () => {
  const registry = createRegistry();
  for (const name of ["callee.json", "caller.json", "rtp-receive.json", "rtp-send.json", "transcode.json"]) {
    const net = new RefusingNetwork();
    const runner = await PipelineRunner.load(repoPath(`pipelines/${name}`), { registry, net });
    const report = await runner.check();
    assertEquals(net.binds, 0, name);
    assert(report.chains.length > 0, name);
    for (const chain of report.chains) assert(chain.stages.length >= 2, `${name}: ${chain.name}`);
  }
  // A chain that ends in a real-time sink plays out; the callee's receive chain records.
  const rtpSend = await (await PipelineRunner.load(repoPath("pipelines/rtp-send.json"), { registry })).check();
  assertEquals(rtpSend.chains[0].realtimeSink, true);
  const caller = await (await PipelineRunner.load(repoPath("pipelines/caller.json"), { registry })).check();
  const receive = caller.chains.find((c) => c.name === "receive")!;
  assertMatch(receive.stages.find((s) => s.use === "jitter-buffer")!.note!, /^mode record/);
  assertMatch(caller.chains[0].stages[0].note!, /examples\/audio\/hello\.wav: WAV/);
  // The check's own memory network is not the run's: a MemoryNetwork passed to the runner stays empty too.
  const mem = new MemoryNetwork({ clock: new VirtualClock() });
  const r = await PipelineRunner.load(repoPath("pipelines/rtp-receive.json"), { registry, net: mem });
  await r.check();
  const s = mem.bind("0.0.0.0", 5004); // still free on that network
  await s.close();
});

Deno.test({
  name: "--check on every shipped pipeline exits 0 and opens nothing (no socket, no device stream, no file)",
  ignore: skipAudio,
  async fn() {
    const sandbox = await alsaSandbox();
    // Ports the files would bind, held here: a check that bound one would fail with "address in use". Each pair is
    // bound as soon as it is found (the second search cannot return the first pair, nor another process take it).
    const sipPair = holdUdpPortPair(), rtpPair = holdUdpPortPair();
    const held = [...sipPair.sockets, ...rtpPair.sockets];
    const sip = sipPair.port, rtp = rtpPair.port;
    const out = await Deno.makeTempDir();
    try {
      const files = [...Deno.readDirSync(repoPath("pipelines"))].map((e) => e.name)
        .filter((n) => n.endsWith(".json") && n !== "schema.json").sort();
      assert(files.length >= 7, files.join(", "));
      const sets: Record<string, string[]> = {
        "callee.json": [`port=${sip}`, `rtp_ports=${rtp}-${rtp + 1}`, "bind=127.0.0.1"],
        "callee-speaker.json": [`port=${sip}`, `rtp_ports=${rtp}-${rtp + 1}`],
        "caller.json": [`rtp_ports=${rtp}-${rtp + 1}`],
        "caller-mic.json": [`rtp_ports=${rtp}-${rtp + 1}`],
        "rtp-receive.json": [`port=${rtp}`, "bind=127.0.0.1"],
        "rtp-send.json": [`to=127.0.0.1:${rtp}`],
      };
      for (const f of files) {
        const args = ["--check", repoPath(`pipelines/${f}`), ...(sets[f] ?? []).flatMap((s) => ["--set", s])];
        // Run from an empty directory: nothing may appear in it (the recordings go to ${cwd}/out when run).
        const env = { ALSA_CONFIG_PATH: sandbox.config, NO_COLOR: "1" };
        const cli = await runBounded(Deno.execPath(), ["run", "-A", repoPath("mod.ts"), ...args], {
          cwd: out,
          env,
          timeoutMs: 60_000,
        });
        assertEquals(cli.code, 0, `${f}: ${cli.stderr}`);
        assertMatch(cli.stdout, /: OK \(checked without opening/);
        assert(!/ALSA lib/.test(cli.stderr), `${f}: ALSA chatter:\n${cli.stderr}`);
        // And with every socket API refusing: nothing tried to open one.
        const h = await runBounded(
          Deno.execPath(),
          ["run", "-A", repoPath("tests/fixtures/check_helper.ts"), ...args],
          {
            cwd: out,
            env,
            timeoutMs: 60_000,
          },
        );
        const last = JSON.parse(h.stdout.trim().split("\n").at(-1)!);
        assertEquals(last, { code: 0, binds: 0 }, `${f}: ${h.stderr}`);
      }
      // No device stream was opened (the file device creates its playback file when opened) and nothing was written.
      assertEquals([...Deno.readDirSync(sandbox.dir)].map((e) => e.name).sort(), ["asound.conf", "capture.raw"]);
      assertEquals([...Deno.readDirSync(out)], []);
    } finally {
      for (const s of held) s.close();
      await sandbox.cleanup();
      await Deno.remove(out, { recursive: true });
    }
  },
});

Deno.test({
  name: "--check prints each chain with its stages and the modes they chose, and the control plugin's options",
  ignore: skipAudio,
  async fn() {
    const sandbox = await alsaSandbox();
    try {
      const env = { ALSA_CONFIG_PATH: sandbox.config, NO_COLOR: "1" };
      const r = await runBounded(
        Deno.execPath(),
        ["run", "-A", repoPath("mod.ts"), "--check", "--pipeline", "pipelines/callee-speaker.json"],
        { cwd: repoPath("."), env, timeoutMs: 60_000 },
      );
      assertEquals(r.code, 0, r.stderr);
      assertMatch(r.stdout, /^control: sip: role=callee, .*port=5062/m);
      assertMatch(r.stdout, /checked with example values: .*remote\.rtp=127\.0\.0\.1:9.*codec=PCMU/);
      assertMatch(r.stdout, /^chain "receive" \(runs in real time: ends in speaker\)$/m);
      // The jitter buffer plays out in real time: its chain ends in a speaker.
      assertMatch(r.stdout, /^\s+3 jitter-buffer\s+→ encoded PCMU 8000 Hz\s+mode playout/m);
      assertMatch(r.stdout, /^\s+5 speaker\s+pcm 8000 Hz mono →\|\s+plays on device \d+ "default"/m);
      // The same file recording instead: mode record.
      const rec = await runBounded(
        Deno.execPath(),
        ["run", "-A", repoPath("mod.ts"), "--check", "pipelines/callee.json"],
        { cwd: repoPath("."), env, timeoutMs: 60_000 },
      );
      assertEquals(rec.code, 0, rec.stderr);
      assertMatch(rec.stdout, /^\s+3 jitter-buffer\s+→ encoded PCMU 8000 Hz\s+mode record/m);
      assertMatch(rec.stdout, /wav-sink .*writes .*\/out\/call-example-call\.wav/);
    } finally {
      await sandbox.cleanup();
    }
  },
});

Deno.test("--check fails with exit 1, the file and JSON path; a missing device fails it too", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const file = `${dir}/bad.json`;
    await Deno.writeTextFile(file, JSON.stringify(calleeWithTypo()));
    const r = await spawnCli(["--check", file], { timeoutMs: 60_000 }).result;
    assertEquals(r.code, 1);
    assertMatch(r.stderr, /bad\.json: pipelines\.receive\[2\]: unknown option "ptme" for jitter-buffer/);
    assertEquals(r.stdout, "");
    if (!skipAudio) {
      const sandbox = await alsaSandbox();
      try {
        const dev = await runBounded(Deno.execPath(), [
          "run",
          "-A",
          repoPath("mod.ts"),
          "--check",
          repoPath("pipelines/callee-speaker.json"),
          "--set",
          "device=no-such-card",
        ], { env: { ALSA_CONFIG_PATH: sandbox.config }, timeoutMs: 60_000 });
        assertEquals(dev.code, 1, dev.stderr);
        assertMatch(dev.stderr, /pipelines\.receive\[5\]: speaker: no audio output device matches "no-such-card"/);
      } finally {
        await sandbox.cleanup();
      }
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a template that only fits some of the allowed codecs: a warning, checked with the codec that fits", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const file = JSON.parse(await Deno.readTextFile(repoPath("pipelines/callee.json")));
    delete file.$schema;
    // The receive chain decodes L16 only, but PCMU is allowed (and preferred) too.
    const chain = file.pipelines.receive as { use: string }[];
    chain[chain.findIndex((s) => s.use === "g711-decoder")] = {
      use: repoPath("examples/plugins/l16/l16_decoder.ts"),
    };
    await Deno.writeTextFile(`${dir}/callee.json`, JSON.stringify(file));
    const runner = await PipelineRunner.load(`${dir}/callee.json`, {
      registry: createRegistry(),
      set: ["codecs=PCMU,L16"],
    });
    const report = await runner.check();
    assertEquals(report.control?.examples?.codec, "L16");
    assertEquals(report.warnings.length, 1, report.warnings.join("\n"));
    assertMatch(
      report.warnings[0],
      /^a call with codec=PCMU, payloadType=0 would fail: .*l16-decoder .*expects encoded L16/,
    );
    // With L16 alone: no warning. With PCMU alone: no example builds, the file fails.
    const l16 = await PipelineRunner.load(`${dir}/callee.json`, { registry: createRegistry(), set: ["codecs=L16"] });
    assertEquals((await l16.check()).warnings, []);
    const pcmu = await PipelineRunner.load(`${dir}/callee.json`, { registry: createRegistry(), set: ["codecs=PCMU"] });
    const err = await assertRejects(() => pcmu.check(), ConfigError);
    assertMatch(
      err.message,
      /pipelines\.receive: .*expects encoded L16, but jitter-buffer \(stage 3\) produces encoded PCMU/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("--check hides secrets: a password parameter and option, a relay's users list", async () => {
  const { formatCheckReport } = await import("../core/check.ts");
  const lines = formatCheckReport({
    file: "x.json",
    parameters: { password: "hunter2", user: "alice", password_env: "VOXPIPE_SIP_PASSWORD" },
    control: { use: "sip", options: { user: "alice", password: "hunter2", token: "" } },
    services: [{ use: "ws-bridge", options: { token: "s3cret", port: 8080 } }],
    warnings: [],
    chains: [],
  }).join("\n");
  assert(!lines.includes("hunter2") && !lines.includes("s3cret"), lines);
  assertMatch(lines, /^parameters: password=\(hidden\), user=alice, password_env=VOXPIPE_SIP_PASSWORD$/m);
  assertMatch(lines, /^control: sip: user=alice, password=\(hidden\), token=$/m);
  assertMatch(lines, /^service: ws-bridge: token=\(hidden\), port=8080$/m);
  // Through the CLI, on the shipped SIP relay with users given inline.
  const r = await runBounded(
    Deno.execPath(),
    ["run", "-A", repoPath("mod.ts"), "--check", "pipelines/sip-relay.json", "--set", "users=alice:pa55word"],
    { cwd: repoPath("."), env: { NO_COLOR: "1" }, timeoutMs: 60_000 },
  );
  assertEquals(r.code, 0, r.stderr);
  assert(!r.stdout.includes("pa55word") && !r.stderr.includes("pa55word"), r.stdout);
  assertMatch(r.stdout, /users=\(hidden\)/);
});
