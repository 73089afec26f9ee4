/**
 * voxpipe as a library: user plugins that import `mod.ts` run through the CLI
 * (mod.ts has no top-level await, so the plugin's import of it does not wait
 * on the CLI that is loading the plugin), and a project elsewhere imports
 * voxpipe from its own deno.json, as the README says, and runs a pipeline.
 * Everything runs as bounded subprocesses.
 */
import { assert, assertEquals } from "./assert.ts";
import { readWav, runBounded, spawnCli, writeWav } from "./media_util.ts";
import { repoPath } from "./util.ts";
import { createRegistry, runPipelineFile, VirtualClock } from "../mod.ts";

const MOD_URL = new URL("../mod.ts", import.meta.url).href;

function rmsDbfs(s: Int16Array): number {
  let sum = 0;
  for (const v of s) sum += v * v;
  return 20 * Math.log10(Math.sqrt(sum / s.length) / 32768);
}

Deno.test("importing mod.ts has no side effects: no CLI run, no output, nothing keeps the process alive", async () => {
  const r = await runBounded(Deno.execPath(), [
    "eval",
    `const m = await import(${
      JSON.stringify(MOD_URL)
    }); console.log(typeof m.main, typeof m.definePlugin, typeof m.z.object);`,
  ], { cwd: repoPath("."), timeoutMs: 60_000 });
  assert(!r.timedOut, "the process did not exit after importing mod.ts");
  assertEquals([r.code, r.stdout.trim(), r.stderr.trim()], [0, "function function function", ""]);
});

Deno.test("CLI: a user plugin that imports mod.ts loads and runs (no deadlock on mod.ts)", async () => {
  const dir = await Deno.makeTempDir();
  try {
    // A plugin written against mod.ts alone: definePlugin and z come from voxpipe, no zod import of its own.
    await Deno.writeTextFile(
      `${dir}/invert.ts`,
      `import { definePlugin, type Frame, z } from ${JSON.stringify(MOD_URL)};
export default definePlugin({
  name: "invert",
  kind: "transform",
  description: "multiplies samples by -1",
  accepts: [{ kind: "pcm" }],
  produces: { kind: "pcm" },
  options: z.object({ enabled: z.boolean().default(true) }),
  create({ enabled }) {
    return {
      negotiate: (input) => input,
      process(frame: Frame, emit) {
        if (frame.kind !== "pcm") return;
        emit({ ...frame, samples: enabled ? frame.samples.map((s) => Math.min(32767, -s)) : frame.samples });
      },
    };
  },
});
`,
    );
    const chain = (withPlugin: boolean, out: string) => ({
      pipelines: {
        main: [
          { use: "tone-source", frequency: 440, amplitude: -6, duration: 0.5 },
          ...(withPlugin ? [{ use: "./invert.ts" }] : []),
          { use: "wav-sink", path: out },
        ],
      },
    });
    await Deno.writeTextFile(`${dir}/inverted.json`, JSON.stringify(chain(true, `${dir}/inverted.wav`)));
    await Deno.writeTextFile(`${dir}/plain.json`, JSON.stringify(chain(false, `${dir}/plain.wav`)));

    const p = spawnCli(["--pipeline", `${dir}/inverted.json`], { timeoutMs: 60_000 });
    const r = await p.result;
    assert(!r.timedOut, `the CLI hung loading a plugin that imports mod.ts:\n${p.output().slice(-2000)}`);
    assertEquals(r.code, 0, p.output().slice(-2000));

    // The reference, in process: the same tone without the plugin.
    const ref = await runPipelineFile(`${dir}/plain.json`, { registry: createRegistry(), clock: new VirtualClock() });
    assertEquals(ref.code, 0);
    const plain = (await readWav(`${dir}/plain.wav`)).samples;
    const inverted = (await readWav(`${dir}/inverted.wav`)).samples;
    assertEquals(inverted.length, 4000); // 0.5 s at 8 kHz
    assertEquals(inverted.length, plain.length);
    for (let i = 0; i < plain.length; i++) {
      if (inverted[i] !== Math.min(32767, -plain[i])) {
        throw new Error(`sample ${i}: ${inverted[i]}, expected ${Math.min(32767, -plain[i])}`);
      }
    }
    assert(plain.some((s) => s !== 0), "the tone is not silent");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("CLI: examples/gain.json runs its plugins (which import mod.ts) and applies the gain", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const p = spawnCli(["--pipeline", "examples/gain.json", "--set", "gain_db=-12", "--set", `out=${dir}/g.wav`], {
      timeoutMs: 60_000,
    });
    const r = await p.result;
    assert(!r.timedOut, `the CLI hung:\n${p.output().slice(-2000)}`);
    assertEquals(r.code, 0, p.output().slice(-2000));
    assert(/\[LEVEL-METER\] level rms=-21 dBFS/.test(r.stderr), r.stderr.slice(-2000));
    const { samples } = await readWav(`${dir}/g.wav`);
    assertEquals(samples.length, 16000); // 2 s at 8 kHz
    // A -6 dBFS sine has an RMS of -9.03 dBFS; -12 dB of gain.
    const rms = rmsDbfs(samples);
    assert(Math.abs(rms - (-9.03 - 12)) < 0.1, `rms ${rms}`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** The consumer's script: the README's library use, plus a plugin of its own written against voxpipe alone. */
const CONSUMER_SCRIPT = `
import { createRegistry, definePlugin, PipelineRunner, z } from "voxpipe";

const registry = createRegistry();
let peak = 0;
registry.register(definePlugin({
  name: "peak-meter",
  kind: "transform",
  description: "passes PCM through and keeps its peak",
  accepts: [{ kind: "pcm" }],
  produces: { kind: "pcm" },
  options: z.object({}),
  create: () => ({
    negotiate: (input) => input,
    process(frame, emit) {
      if (frame.kind === "pcm") for (const s of frame.samples) peak = Math.max(peak, Math.abs(s));
      emit(frame);
    },
  }),
}));
const [file, out] = Deno.args;
const runner = await PipelineRunner.load("transcode.json", { registry, set: [\`file=\${file}\`, \`out=\${out}\`] });
const result = await runner.run();
console.log(JSON.stringify({ code: result.code, peak, stages: result.results?.main.stats.map((s) => s.use) }));
`;

/** A transcode-like pipeline file of the consumer's own. */
const CONSUMER_PIPELINE = {
  parameters: { file: { description: "input" }, out: { description: "output WAV" } },
  pipelines: {
    main: [
      { use: "file-source", path: "${file}" },
      { use: "resampler", rate: 8000, channels: 1 },
      { use: "peak-meter" },
      { use: "g711-encoder", codec: "PCMU" },
      { use: "g711-decoder" },
      { use: "wav-sink", path: "${out}" },
    ],
  },
};

/** Creates a project in a temp directory with `config` as its deno.json, runs the script, checks the WAV. */
async function runConsumer(config: Record<string, unknown>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "voxpipe-consumer-" });
  try {
    await Deno.writeTextFile(`${dir}/deno.json`, JSON.stringify(config, null, 2));
    await Deno.writeTextFile(`${dir}/main.ts`, CONSUMER_SCRIPT);
    await Deno.writeTextFile(`${dir}/transcode.json`, JSON.stringify(CONSUMER_PIPELINE));
    // 1 s of a 16 kHz stereo tone at about -6 dBFS: the pipeline must make it 8 kHz mono.
    const input = new Int16Array(16000 * 2);
    for (let i = 0; i < 16000; i++) input[2 * i] = input[2 * i + 1] = Math.round(16000 * Math.sin(i * 0.1));
    await writeWav(`${dir}/in.wav`, input, 16000, 2);

    const r = await runBounded(Deno.execPath(), ["run", "-A", "main.ts", "in.wav", "out.wav"], {
      cwd: dir,
      timeoutMs: 180_000,
    });
    assert(!r.timedOut, `the consumer's script hung:\n${r.stderr.slice(-2000)}`);
    assertEquals(r.code, 0, r.stderr.slice(-3000));
    const report = JSON.parse(r.stdout.trim().split("\n").pop()!);
    assertEquals(report.code, 0);
    assertEquals(report.stages, ["file-source", "resampler", "peak-meter", "g711-encoder", "g711-decoder", "wav-sink"]);
    assert(report.peak > 14000 && report.peak < 17000, `peak ${report.peak}`);

    const wav = await readWav(`${dir}/out.wav`);
    assertEquals([wav.channels, wav.sampleRate, wav.finalized], [1, 8000, true]);
    assert(Math.abs(wav.samples.length - 8000) <= 160, `${wav.samples.length} samples for 1 s`);
    // Every sample is a µ-law decode value: the audio went through G.711 (PCMU).
    const alawmulaw = (await import("alawmulaw")).default;
    const valid = new Set(Array.from({ length: 256 }, (_, i) => alawmulaw.mulaw.decodeSample(i)));
    for (const s of wav.samples) assert(valid.has(s), `sample ${s} is not a µ-law value`);
    const rms = rmsDbfs(wav.samples.subarray(400, 7600));
    assert(Math.abs(rms - 20 * Math.log10(16000 / 32768 / Math.SQRT2)) < 0.5, `rms ${rms} dBFS`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("a project elsewhere imports voxpipe through links (its deno.json as the README says) and transcodes", async () => {
  await runConsumer({
    imports: { voxpipe: "jsr:@voxpipe/voxpipe@^0.1.0" },
    links: [repoPath(".")],
    unstable: ["net"],
  });
});

Deno.test("a project elsewhere imports voxpipe's mod.ts by file URL from its deno.json and transcodes", async () => {
  await runConsumer({ imports: { voxpipe: MOD_URL }, unstable: ["net"] });
});
