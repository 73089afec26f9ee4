/**
 * Paths: a relative path written in a pipeline file is relative to the file's
 * directory; a relative path given with `--set` is relative to the working
 * directory. Run from another working directory than the repository.
 */
import { assert, assertEquals, assertMatch } from "./assert.ts";
import { createRegistry } from "../mod.ts";
import { PipelineRunner } from "../core/runner.ts";
import { readWav } from "./media_util.ts";
import { repoPath } from "./util.ts";

const dec = new TextDecoder();

async function cliIn(cwd: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", repoPath("mod.ts"), ...args],
    cwd,
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
    signal: AbortSignal.timeout(60_000),
  }).output();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

Deno.test("a shipped pipeline runs from another directory: its default input is found, its output lands in the cwd", async () => {
  const cwd = await Deno.makeTempDir();
  try {
    // transcode.json's defaults: file ../examples/audio/hello.wav (next to the file), out ${cwd}/out/transcoded.wav.
    const r = await cliIn(cwd, ["--pipeline", repoPath("pipelines/transcode.json")]);
    assertEquals(r.code, 0, r.stderr);
    const wav = await readWav(`${cwd}/out/transcoded.wav`);
    assertEquals([wav.sampleRate, wav.channels, wav.finalized], [8000, 1, true]);
    assert(wav.samples.length > 8000, `${wav.samples.length} samples`);
    // Nothing was written next to the pipeline file.
    assert(!(await exists(repoPath("pipelines/out"))), "pipelines/out was created");
  } finally {
    await Deno.remove(cwd, { recursive: true });
  }
});

Deno.test("every shipped pipeline's default input is found next to it, and its default outputs go under ${cwd}/out", async () => {
  // Parameters that name a file or folder to read, and ones that name where to write.
  const inputs = new Set(["file", "greeting", "library", "users_file"]);
  const outputs = new Set(["out", "record", "out_dir"]);
  let checked = 0;
  for (const dir of ["pipelines", "examples"]) {
    for (const entry of Deno.readDirSync(repoPath(dir))) {
      if (!entry.isFile || !entry.name.endsWith(".json") || entry.name === "schema.json") continue;
      const file = `${dir}/${entry.name}`;
      const params: Record<string, { default?: unknown }> =
        JSON.parse(await Deno.readTextFile(repoPath(file))).parameters ?? {};
      for (const [name, p] of Object.entries(params)) {
        if (typeof p.default !== "string" || p.default === "") continue;
        if (inputs.has(name)) {
          // A relative default written in the file is relative to the file's directory.
          assert(await exists(repoPath(`${dir}/${p.default}`)), `${file}: ${name} default ${p.default} does not exist`);
          checked++;
        }
        if (outputs.has(name)) {
          assert(p.default.startsWith("${cwd}/out/") || p.default === "${cwd}/out", `${file}: ${name} = ${p.default}`);
          checked++;
        }
      }
    }
  }
  assert(checked >= 12, `only ${checked} defaults checked`);
});

Deno.test("--set paths are relative to the working directory", async () => {
  const cwd = await Deno.makeTempDir();
  try {
    await Deno.mkdir(`${cwd}/in`);
    await Deno.copyFile(repoPath("examples/audio/hello.wav"), `${cwd}/in/voice.wav`);
    const r = await cliIn(cwd, [
      "--pipeline",
      repoPath("pipelines/transcode.json"),
      "--set",
      "file=in/voice.wav",
      "--set",
      "out=rec/phone.wav",
    ]);
    assertEquals(r.code, 0, r.stderr);
    assertEquals((await readWav(`${cwd}/rec/phone.wav`)).finalized, true);
    // From the repository, the same relative --set value names another file: not found, and the error says where.
    const miss = await cliIn(repoPath("."), [
      "--pipeline",
      "pipelines/transcode.json",
      "--set",
      "file=in/voice.wav",
      "--set",
      `out=${cwd}/x.wav`,
    ]);
    assertEquals(miss.code, 1);
    assertMatch(
      miss.stderr,
      new RegExp(`file-source: ${repoPath("in/voice.wav").replaceAll("/", "\\/")}: cannot open`),
    );
  } finally {
    await Deno.remove(cwd, { recursive: true });
  }
});

Deno.test("paths written in a pipeline file are relative to the file, whatever the working directory", async () => {
  const dir = await Deno.makeTempDir();
  const cwd = await Deno.makeTempDir();
  try {
    await Deno.copyFile(repoPath("examples/audio/hello.wav"), `${dir}/hello.wav`);
    await Deno.writeTextFile(
      `${dir}/p.json`,
      JSON.stringify({
        parameters: { rec: { default: "rec/b.wav" } },
        pipelines: {
          a: [{ use: "wav-source", path: "hello.wav" }, { use: "wav-sink", path: "rec/a.wav" }],
          b: [{ use: "file-source", path: "./hello.wav" }, { use: "wav-sink", path: "${rec}" }],
          c: [
            { use: "sequence", items: [{ use: "file-source", path: "hello.wav" }] },
            { use: "wav-sink", path: "rec/c.wav" },
          ],
        },
      }),
    );
    const r = await cliIn(cwd, ["--pipeline", `${dir}/p.json`]);
    assertEquals(r.code, 0, r.stderr);
    for (const n of ["a", "b", "c"]) assertEquals((await readWav(`${dir}/rec/${n}.wav`)).finalized, true, n);
    assertEquals([...Deno.readDirSync(cwd)], []);
    // The same file with --set rec=...: that one is relative to the working directory.
    const r2 = await cliIn(cwd, ["--pipeline", `${dir}/p.json`, "--set", "rec=mine.wav"]);
    assertEquals(r2.code, 0, r2.stderr);
    assertEquals((await readWav(`${cwd}/mine.wav`)).finalized, true);
  } finally {
    await Deno.remove(dir, { recursive: true });
    await Deno.remove(cwd, { recursive: true });
  }
});

Deno.test("the runner resolves --set values of path parameters against the cwd, and only those", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(
      `${dir}/p.json`,
      JSON.stringify({
        parameters: { out_dir: { default: "rec" }, name: { default: "x" }, f: { default: 440 } },
        pipelines: {
          main: [
            { use: "tone-source", frequency: "${f}", duration: 0.1 },
            { use: "wav-sink", path: "${out_dir}/${name}.wav" },
          ],
        },
      }),
    );
    const runner = await PipelineRunner.load(`${dir}/p.json`, {
      registry: createRegistry(),
      set: ["out_dir=sub", "name=y"],
    });
    await runner.check();
    // out_dir starts a path option: made absolute against the cwd. name is inside it: left as given.
    assertEquals(runner.params.out_dir, `${Deno.cwd()}/sub`);
    assertEquals(runner.params.name, "y");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("--describe and the JSON Schema say how paths resolve", async () => {
  const r = await cliIn(repoPath("."), ["--describe", "wav-sink"]);
  assertEquals(r.code, 0, r.stderr);
  assertMatch(r.stdout, /^\s+path\s+path, required — WAV file to write .*relative to the pipeline file's directory/m);
  assertMatch(r.stdout, /a --set value: to the working directory/);
  assertMatch(r.stdout, /^\s+paths: a relative path written in a pipeline file is relative to the file's directory/m);
  const schema = JSON.parse(await Deno.readTextFile(repoPath("pipelines/schema.json")));
  const sink = schema.properties.pipelines.additionalProperties.items.anyOf.find((
    v: { properties: { use: unknown } },
  ) => JSON.stringify(v.properties.use) === JSON.stringify({ const: "wav-sink" }));
  assertMatch(sink.properties.path.description, /relative to the pipeline file's directory/);
  assertEquals(sink.properties.path.anyOf[0].format, "path");
});

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}
