import { assert, assertEquals, assertMatch } from "./assert.ts";
import { createRegistry } from "../mod.ts";
import { pipelineJsonSchema } from "../core/schema.ts";
import { repoPath } from "./util.ts";
import { readWav } from "./media_util.ts";

const MOD = repoPath("mod.ts");

async function cli(args: string[], cwd = repoPath(".")): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MOD, ...args],
    cwd,
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

Deno.test("--help tells the usage and exits 0", async () => {
  const r = await cli(["--help"]);
  assertEquals(r.code, 0);
  assertMatch(r.stdout, /deno run -A mod\.ts --pipeline FILE \[--set name=value \.\.\.\]/);
  for (const flag of ["--list-plugins", "--describe", "--list-devices", "--log-level", "--log-file", "--set"]) {
    assert(r.stdout.includes(flag), `help lacks ${flag}`);
  }
});

Deno.test("--list-plugins: one line per plugin with kind and formats", async () => {
  const r = await cli(["--list-plugins"]);
  assertEquals(r.code, 0);
  const lines = r.stdout.trim().split("\n");
  const names = createRegistry().list().map((p) => p.name);
  assertEquals(lines.length >= names.length, true);
  for (
    const n of [
      "wav-source",
      "file-source",
      "tone-source",
      "resampler",
      "g711-encoder",
      "g711-decoder",
      "wav-sink",
      "null-sink",
    ]
  ) {
    const line = lines.find((l) => l.startsWith(n + " "));
    assert(line, `no line for ${n}`);
  }
  assertMatch(lines.find((l) => l.startsWith("g711-encoder "))!, /transform\s+pcm 8000 Hz mono → encoded/);
});

Deno.test("--describe shows options with types, ranges and defaults; unknown name fails", async () => {
  const r = await cli(["--describe", "tone-source"]);
  assertEquals(r.code, 0);
  assertMatch(r.stdout, /^tone-source \(source\)/);
  assertMatch(r.stdout, /frequency\s+number.*default 1000/);
  const bad = await cli(["--describe", "nope"]);
  assertEquals(bad.code, 2);
  assertMatch(bad.stderr, /^voxpipe: no plugin named "nope"; known plugins: .*wav-sink/);
});

Deno.test("usage errors exit 2 with a one-line reason", async () => {
  const r = await cli(["--bogus"]);
  assertEquals(r.code, 2);
  assertMatch(r.stderr, /^voxpipe: Unknown option '--bogus'/);
  const r2 = await cli([]);
  assertEquals(r2.code, 2);
  assertMatch(r2.stderr, /missing --pipeline FILE/);
  const r3 = await cli(["--pipeline", "pipelines/transcode.json", "--log-level", "loud"]);
  assertEquals(r3.code, 2);
  const r4 = await cli(["--pipeline", "pipelines/transcode.json", "--scheduler", "fast"]);
  assertEquals(r4.code, 2);
  assertMatch(r4.stderr, /--scheduler: expected thread or main, got "fast"/);
  const r5 = await cli(["--pipeline", "pipelines/transcode.json", "--set", "nope"]);
  assertEquals(r5.code, 2, r5.stderr);
  assertMatch(r5.stderr, /^voxpipe: --set nope: expected name=value/);
});

Deno.test("a broken pipeline file fails with exit 1 and the file, JSON path and problem", async () => {
  const dir = await Deno.makeTempDir();
  await Deno.writeTextFile(
    `${dir}/p.json`,
    JSON.stringify({ pipelines: { main: [{ use: "tone-source", frequency: -5 }, { use: "null-sink" }] } }),
  );
  const r = await cli(["--pipeline", `${dir}/p.json`]);
  assertEquals(r.code, 1);
  assertMatch(r.stderr, /p\.json: pipelines\.main\[0\]\.frequency: expected/);
  const r2 = await cli(["--pipeline", `${dir}/p.json`, "--set", "x=1"]);
  assertMatch(r2.stderr, /--set x: no such parameter/);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("transcode pipeline: file → 8 kHz → G.711 → WAV, via the CLI", async () => {
  const dir = await Deno.makeTempDir();
  const log = `${dir}/run.log`;
  const r = await cli([
    "--pipeline",
    "pipelines/transcode.json",
    "--set",
    `out=${dir}/t.wav`,
    "--set",
    "codec=PCMA",
    "--log-file",
    log,
  ]);
  assertEquals(r.code, 0, r.stderr);
  const wav = await readWav(`${dir}/t.wav`);
  assertEquals([wav.channels, wav.sampleRate, wav.finalized], [1, 8000, true]);
  // Every sample is a valid A-law decode value: the audio went through G.711.
  const alawmulaw = (await import("alawmulaw")).default;
  const valid = new Set(Array.from({ length: 256 }, (_, i) => alawmulaw.alaw.decodeSample(i)));
  const samples = wav.samples;
  assert(samples.length > 4000, "recording too short");
  for (const s of samples) assert(valid.has(s), `sample ${s} is not an A-law value`);
  assertMatch(await Deno.readTextFile(log), /pipeline "main" ended \(eos\)/);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("the committed pipelines/schema.json is up to date", async () => {
  const committed = JSON.parse(await Deno.readTextFile(repoPath("pipelines/schema.json")));
  assertEquals(committed, JSON.parse(JSON.stringify(pipelineJsonSchema(createRegistry()))), "run: deno task schema");
});

Deno.test("every shipped pipeline file loads and its chains build-check", async () => {
  const { PipelineRunner } = await import("../core/runner.ts");
  for await (const e of Deno.readDir(repoPath("pipelines"))) {
    if (!e.name.endsWith(".json") || e.name === "schema.json") continue;
    const runner = await PipelineRunner.load(repoPath(`pipelines/${e.name}`), { registry: createRegistry() });
    // A file has chains, or only a control section (the relay).
    assert(Object.keys(runner.file.pipelines).length > 0 || runner.file.control !== undefined, e.name);
  }
});

for (const signal of ["SIGINT", "SIGTERM"] as const) {
  Deno.test(`${signal} stops a running pipeline cleanly: the WAV is finalized`, async () => {
    const dir = await Deno.makeTempDir();
    await Deno.writeTextFile(
      `${dir}/p.json`,
      JSON.stringify({
        pipelines: {
          main: [
            { use: "tone-source", duration: 0, frequency: 440, sample_rate: 8000 },
            { use: "null-sink" },
          ],
          rec: [
            { use: "tone-source", duration: 0, frequency: 440, sample_rate: 8000 },
            { use: "wav-sink", path: `${dir}/rec.wav` },
          ],
        },
      }),
    );
    const proc = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", MOD, "--pipeline", `${dir}/p.json`],
      stdout: "piped",
      stderr: "piped",
      env: { NO_COLOR: "1" },
    }).spawn();
    // Wait until the recording has data, then interrupt.
    for (let i = 0; i < 100; i++) {
      await new Promise((r) => setTimeout(r, 100));
      try {
        if ((await Deno.stat(`${dir}/rec.wav`)).size > 16000) break;
      } catch { /* not created yet */ }
    }
    proc.kill(signal);
    const out = await proc.output();
    const stderr = new TextDecoder().decode(out.stderr);
    assertEquals(out.code, 0, stderr);
    assertMatch(stderr, /interrupt received: stopping/);
    assertMatch(stderr, /pipeline "rec" ended \(stopped\)/);
    const wav = await readWav(`${dir}/rec.wav`);
    // The header sizes match the file: finalized, not left at the last periodic update.
    assert(wav.finalized, "the WAV header was not finalized");
    assert(wav.samples.length > 8000, `${wav.samples.length} samples`);
    await Deno.remove(dir, { recursive: true });
  });
}
