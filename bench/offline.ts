/**
 * The offline path against GStreamer, ffmpeg and sox, measured from outside, whole processes.
 *
 * ```sh
 * deno run -A bench/offline.ts [--seconds 600] [--runs 5] [--keep]
 * ```
 *
 * 1. Makes a speech-like test file: espeak-ng reads a few sentences (sox synthesizes a
 *    babble of formant-like tones when espeak-ng is missing), resampled to 44.1 kHz mono
 *    16-bit and looped to `--seconds` (default 600), in `out/bench-offline/`.
 * 2. Runs, alternating (A B C D, A B C D, ...; one warm-up round first), each tool's
 *    44.1 kHz → 8 kHz µ-law → decode → 16-bit WAV transcode of that file:
 *    - voxpipe: `deno run -A mod.ts --pipeline pipelines/transcode.json` (the CLI, start-up included; as shipped, the
 *      resampler chooses its threads: one below 60 minutes of audio, two from 60 minutes on a machine with 2 or more
 *      cores; its kernel: the native loops where they load, with AVX-512, for streams of 2 minutes or more),
 *      `voxpipe-wasm` the same with `VOXPIPE_RESAMPLE_KERNEL=wasm` (the WebAssembly kernel whatever the length), and
 *      `voxpipe-2t` the same with `--set threads=2` (the resampler on two threads whatever the length);
 *    - GStreamer: `filesrc ! wavparse ! audioconvert ! audioresample ! audio/x-raw,rate=8000,channels=1 !
 *      mulawenc ! rtppcmupay ! rtppcmudepay ! mulawdec ! wavenc ! filesink`;
 *    - ffmpeg: `ffmpeg -i in.wav -ar 8000 -ac 1 -f mulaw - | ffmpeg -f mulaw -ar 8000 -ac 1 -i - out.wav`;
 *    - sox: `sox in.wav -r 8000 -e mu-law -t wav - | sox - -e signed -b 16 out.wav`;
 *    and, in the same rounds, Deno running an empty module and a module that only imports zod (the runtime's share of
 *    voxpipe's fixed cost); and prints per tool the median wall time, the realtime factor and the ratio to GStreamer
 *    (median of the per-round ratios: each round's runs were seconds apart, so they saw the
 *    same load), with the CPU load of the machine before and after; then, measured by GNU time
 *    (`/usr/bin/time`, when installed) on the same runs, each tool's median CPU time (user + system
 *    of the whole process tree) and its ratio to GStreamer's, which depends less on the load of a
 *    shared machine than wall time does.
 * 3. Prints the resampler's own throughput on (the first 60 s of) the test file, in-process
 *    (input samples per second, 20 ms frames, best of 5 rounds that alternate the converters): the
 *    polyphase kernel with its native loops, in WebAssembly SIMD and in JavaScript, and
 *    libsamplerate `medium` (the old default).
 * 4. Prints the quality figures of the polyphase kernel and of libsamplerate `medium` on the
 *    same signals (tests/resample_quality.ts).
 *
 * @module
 */
import { benchArgs, benchFail } from "./_args.ts";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { LsrConverter } from "../plugins/resample/_lsr.ts";
import { PolyphaseResampler } from "../plugins/resample/polyphase.ts";
import { nativeIsa, nativeLoops, nativeLoopsProblem } from "../plugins/resample/_native_kernel.ts";
import { formatFigures, qualityFigures } from "../tests/resample_quality.ts";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const OPTIONS = {
  seconds: { type: "string", default: "600" },
  runs: { type: "string", default: "5" },
  keep: { type: "boolean", default: false },
} as const;
const { values } = benchArgs(import.meta.url, OPTIONS);
const SECONDS = Number(values.seconds);
const RUNS = Number(values.runs);
if (!(SECONDS >= 1) || !(RUNS >= 1)) {
  benchFail(
    import.meta.url,
    OPTIONS,
    `--seconds and --runs take numbers ≥ 1; got ${values.seconds} and ${values.runs}`,
  );
}
const DIR = join(ROOT, "out", "bench-offline");
await Deno.mkdir(DIR, { recursive: true });

async function sh(cmd: string): Promise<{ ok: boolean; ms: number; err: string }> {
  const t0 = performance.now();
  const r = await new Deno.Command("bash", { args: ["-c", cmd], cwd: ROOT, stdout: "null", stderr: "piped" }).output();
  return { ok: r.success, ms: performance.now() - t0, err: new TextDecoder().decode(r.stderr).trim() };
}

/** GNU time, to read each run's CPU time (user + system, children included); absent: wall time only. */
const GNU_TIME = "/usr/bin/time";
const hasGnuTime = await Deno.stat(GNU_TIME).then(() => true, () => false);

/** Runs `cmd` like {@linkcode sh}, and also returns its CPU seconds (user + system of it and its children), or NaN. */
async function timed(cmd: string): Promise<{ ok: boolean; ms: number; err: string; cpu: number }> {
  if (!hasGnuTime) return { ...(await sh(cmd)), cpu: NaN };
  const cpuFile = join(DIR, "cpu.txt");
  const r = await sh(`${GNU_TIME} -f '%U %S' -o '${cpuFile}' bash -c '${cmd.replaceAll("'", "'\\''")}'`);
  const [u, s] = (await Deno.readTextFile(cpuFile).catch(() => "")).trim().split(/\s+/).map(Number);
  return { ...r, cpu: u + s };
}

async function have(tool: string): Promise<boolean> {
  return (await sh(`command -v ${tool}`)).ok;
}

function pressure(): string {
  try {
    const some = Deno.readTextFileSync("/proc/pressure/cpu").split("\n")[0];
    const load = Deno.readTextFileSync("/proc/loadavg").split(" ")[0];
    return `cpu pressure ${some.match(/avg10=([\d.]+)/)?.[1]} %, load ${load}`;
  } catch {
    return "load unknown";
  }
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

// ---------------------------------------------------------------------------------------------
// 1. The test file.

const input = join(DIR, `speech-${SECONDS}s-44100.wav`);
if (!(await Deno.stat(input).catch(() => null))) {
  const one = join(DIR, "speech-one.wav");
  const text = "The quick brown fox jumps over the lazy dog. Telephone audio is band limited to three point four " +
    "kilohertz; the resampler must keep that band clean and fold nothing back into it. One, two, three, four, " +
    "five, six, seven, eight, nine, ten. How much wood would a woodchuck chuck if a woodchuck could chuck wood?";
  let made = (await have("espeak-ng")) && (await sh(`espeak-ng -s 150 -w '${one}' '${text}'`)).ok;
  if (!made) {
    // A babble of three formant-like tones with a syllable-rate tremolo, plus breath noise.
    made = (await sh(
      `sox -n -r 44100 -c 1 -b 16 '${one}' synth 12 sine 220-880 sine 700-1200 sine 2400-3100 ` +
        `synth 12 pinknoise mix tremolo 4 90 gain -n -3`,
    )).ok;
  }
  if (!made) throw new Error("cannot make the test file: install espeak-ng or sox");
  const r = await sh(
    `sox '${one}' -r 44100 -c 1 -b 16 '${DIR}/speech-one-44100.wav' rate -v && ` +
      `sox '${DIR}/speech-one-44100.wav' '${input}' repeat $(( ${SECONDS} / $(soxi -D '${one}' | cut -d. -f1) + 1 )) ` +
      `trim 0 ${SECONDS}`,
  );
  if (!r.ok) throw new Error(`sox failed: ${r.err}`);
}
console.log(`test file: ${input} (${SECONDS} s, 44.1 kHz mono 16-bit, speech looped)`);

// ---------------------------------------------------------------------------------------------
// 2. Whole processes, alternating.

const deno = Deno.execPath();
/** The first second of the test file: its run is (nearly) all fixed cost, start-up and exit. */
const short = join(DIR, "speech-1s-44100.wav");
{
  const r = await sh(`sox '${input}' '${short}' trim 0 1`);
  if (!r.ok) throw new Error(`sox failed: ${r.err}`);
}
const tools: { name: string; cmd: (file: string, out: string) => string; out: string }[] = [];
const out = (name: string) => join(DIR, `out-${name}.wav`);
const outShort = (name: string) => join(DIR, `out-${name}-1s.wav`);
tools.push({
  name: "voxpipe",
  out: out("voxpipe"),
  cmd: (file, o) =>
    `'${deno}' run -A mod.ts --pipeline pipelines/transcode.json --set file='${file}' --set out='${o}' --log-level warn`,
});
// The same with the resampler's WebAssembly kernel instead of its native loops (the default where they load, with
// AVX-512, for streams of 2 minutes or more; the output is the same, bit for bit).
tools.push({
  name: "voxpipe-wasm",
  out: out("voxpipe-wasm"),
  cmd: (file, o) =>
    `VOXPIPE_RESAMPLE_KERNEL=wasm '${deno}' run -A mod.ts --pipeline pipelines/transcode.json --set file='${file}' ` +
    `--set out='${o}' --log-level warn`,
});
// The same with the resampler on 2 threads (a worker thread resamples blocks; the output is the same, bit for bit).
tools.push({
  name: "voxpipe-2t",
  out: out("voxpipe-2t"),
  cmd: (file, o) =>
    `'${deno}' run -A mod.ts --pipeline pipelines/transcode.json --set file='${file}' --set out='${o}' ` +
    `--set threads=2 --log-level warn`,
});
if (await have("gst-launch-1.0")) {
  tools.push({
    name: "gstreamer",
    out: out("gstreamer"),
    cmd: (file, o) =>
      `gst-launch-1.0 -q filesrc location='${file}' ! wavparse ! audioconvert ! audioresample ! ` +
      `audio/x-raw,rate=8000,channels=1 ! mulawenc ! rtppcmupay ! rtppcmudepay ! mulawdec ! wavenc ! ` +
      `filesink location='${o}'`,
  });
}
if (await have("ffmpeg")) {
  tools.push({
    name: "ffmpeg",
    out: out("ffmpeg"),
    cmd: (file, o) =>
      `ffmpeg -v error -y -i '${file}' -ar 8000 -ac 1 -f mulaw - | ` +
      `ffmpeg -v error -y -f mulaw -ar 8000 -ac 1 -i - -c:a pcm_s16le '${o}'`,
  });
}
if (await have("sox")) {
  tools.push({
    name: "sox",
    out: out("sox"),
    cmd: (file, o) => `sox '${file}' -r 8000 -c 1 -e mu-law -t wav - | sox -t wav - -e signed -b 16 '${o}'`,
  });
}

console.log(
  `\nwhole processes, ${RUNS} alternating rounds after a warm-up; each round runs every tool on the ${SECONDS} s ` +
    `file, then on its first second (${pressure()}):`,
);
// The runtime's own share of voxpipe's fixed cost, in the same rounds: Deno running an empty module, and a module that
// only imports zod (the plugin API's option schemas; every CLI run loads it).
const floors: { name: string; file: string }[] = [
  { name: "deno, empty module", file: join(DIR, "floor-empty.ts") },
  { name: "deno, zod imported", file: join(DIR, "floor-zod.ts") },
];
await Deno.writeTextFile(floors[0].file, "// nothing: Deno's own start-up and exit\n");
await Deno.writeTextFile(floors[1].file, 'import "zod";\n');
const floorTimes = new Map<string, number[]>(floors.map((f) => [f.name, []]));
const times = new Map<string, number[]>(tools.map((t) => [t.name, []]));
const cpus = new Map<string, number[]>(tools.map((t) => [t.name, []]));
const shortTimes = new Map<string, number[]>(tools.map((t) => [t.name, []]));
const shortCpus = new Map<string, number[]>(tools.map((t) => [t.name, []]));
for (let round = 0; round <= RUNS; round++) {
  for (const [file, o, wall, cpu] of [[input, out, times, cpus], [short, outShort, shortTimes, shortCpus]] as const) {
    for (const t of tools) {
      const r = await timed(t.cmd(file, o(t.name)));
      if (!r.ok) throw new Error(`${t.name} failed: ${r.err}`);
      if (round > 0) wall.get(t.name)!.push(r.ms / 1000), cpu.get(t.name)!.push(r.cpu);
    }
  }
  for (const f of floors) {
    const r = await sh(`'${deno}' run -A '${f.file}'`);
    if (!r.ok) throw new Error(`${f.name} failed: ${r.err}`);
    if (round > 0) floorTimes.get(f.name)!.push(r.ms / 1000);
  }
}
const gst = times.get("gstreamer");
for (const t of tools) {
  const ts = times.get(t.name)!;
  const m = median(ts);
  const ratio = gst ? median(ts.map((v, i) => v / gst[i])) : NaN;
  const info = await Deno.stat(t.out);
  const outSeconds = (info.size - 44) / 2 / 8000;
  console.log(
    `  ${t.name.padEnd(10)} median ${m.toFixed(3)} s  ${(SECONDS / m).toFixed(0).padStart(5)}× realtime  ` +
      `${gst ? `${ratio.toFixed(2)}× GStreamer's time` : ""}  (runs ${ts.map((v) => v.toFixed(2)).join(" ")} s; ` +
      `output ${outSeconds.toFixed(1)} s)`,
  );
}
console.log(`  (${pressure()} after)`);
if (hasGnuTime) {
  // CPU time (user + system, the whole process tree) depends less on the load of a shared machine than wall time.
  console.log(`CPU time (user + system, medians; ratio = median of the per-round ratios):`);
  const gstCpu = cpus.get("gstreamer");
  for (const t of tools) {
    const cs = cpus.get(t.name)!;
    const ratio = gstCpu ? median(cs.map((v, i) => v / gstCpu[i])) : NaN;
    console.log(
      `  ${t.name.padEnd(10)} median ${median(cs).toFixed(2)} s CPU  ${
        gstCpu ? `${ratio.toFixed(2)}× GStreamer's CPU` : ""
      }` +
        `  (runs ${cs.map((v) => v.toFixed(2)).join(" ")} s)`,
    );
  }
}

// Fixed cost and audio throughput apart: the 1 s run is start-up, set-up and exit (plus 1 s of audio); the
// difference between the two runs of a round is what the other SECONDS − 1 s of audio cost.
{
  const per = (long: number[], shortRun: number[]) => long.map((v, i) => (v - shortRun[i]) / (SECONDS - 1));
  const gstPer = gst ? per(gst, shortTimes.get("gstreamer")!) : undefined;
  const gstShort = shortTimes.get("gstreamer");
  console.log(
    `fixed cost and audio apart (1 s file = start-up, set-up and exit; audio = (${SECONDS} s run − 1 s run) / ` +
      `${SECONDS - 1} s, per round; medians, ratios = median of the per-round ratios):`,
  );
  if (SECONDS < 60) {
    console.log("  (a file this short leaves the audio within the noise of the runs: use --seconds 600)");
  }
  for (const t of tools) {
    const s = shortTimes.get(t.name)!;
    const a = per(times.get(t.name)!, s);
    const cpuA = per(cpus.get(t.name)!, shortCpus.get(t.name)!);
    const rShort = gstShort ? median(s.map((v, i) => v / gstShort[i])) : NaN;
    const rAudio = gstPer ? median(a.map((v, i) => v / gstPer[i])) : NaN;
    console.log(
      `  ${t.name.padEnd(10)} 1 s file ${(median(s) * 1000).toFixed(0).padStart(4)} ms wall` +
        `${hasGnuTime ? ` ${(median(shortCpus.get(t.name)!) * 1000).toFixed(0).padStart(4)} ms CPU` : ""}` +
        `${gstShort ? ` (${rShort.toFixed(2)}× GStreamer's)` : ""};  audio ${
          (1 / median(a)).toFixed(0).padStart(5)
        }× realtime wall, ${hasGnuTime ? `${(1 / median(cpuA)).toFixed(0)}× realtime per CPU` : ""}` +
        `${gstPer ? ` (${rAudio.toFixed(2)}× GStreamer's time per audio second)` : ""}`,
    );
  }
}

{
  // What of voxpipe's 1 s run is the runtime's: medians of the same rounds.
  const vox = shortTimes.get("voxpipe")!;
  const empty = floorTimes.get(floors[0].name)!, zod = floorTimes.get(floors[1].name)!;
  const ms = (xs: number[]) => `${(median(xs) * 1000).toFixed(0).padStart(4)} ms`;
  console.log("the runtime's share of voxpipe's 1 s run (same rounds, wall, medians):");
  console.log(`  ${floors[0].name.padEnd(20)} ${ms(empty)}`);
  console.log(`  ${floors[1].name.padEnd(20)} ${ms(zod)}  (zod alone: ${ms(zod.map((v, i) => v - empty[i]))})`);
  console.log(
    `  voxpipe, 1 s file     ${ms(vox)}  (beyond Deno and zod: ${ms(vox.map((v, i) => v - zod[i]))}: its own ` +
      `modules, the pipeline's set-up, 1 s of audio, exit)`,
  );
}

// ---------------------------------------------------------------------------------------------
// 3. Resampler throughput, in-process.

const wav = await Deno.readFile(input);
let dataAt = 12; // the "data" chunk of the RIFF file sox wrote
while (dataAt + 8 <= wav.length && String.fromCharCode(...wav.subarray(dataAt, dataAt + 4)) !== "data") {
  dataAt += 8 + new DataView(wav.buffer).getUint32(dataAt + 4, true);
}
const dataEnd = Math.min(wav.length - ((wav.length - dataAt - 8) % 2), dataAt + 8 + 60 * 44100 * 2);
const samples = new Int16Array(wav.buffer.slice(dataAt + 8, dataEnd));
const THROUGHPUT_SECONDS = samples.length / 44100;
const FRAME = 882;
const THROUGHPUT_ROUNDS = 5;
type Contender = { name: string; make: () => Promise<{ process(x: Int16Array): Int16Array; flush(): Int16Array }> };
const contenders: Contender[] = [];
const polyphase = (kernel: "native" | "wasm" | "js") => () =>
  Promise.resolve(new PolyphaseResampler({ inRate: 44100, outRate: 8000, inChannels: 1, outChannels: 1, kernel }));
if (nativeLoops()) contenders.push({ name: `polyphase medium, native (${nativeIsa()})`, make: polyphase("native") });
contenders.push({ name: "polyphase medium, WebAssembly SIMD", make: polyphase("wasm") });
contenders.push({ name: "polyphase medium, JavaScript", make: polyphase("js") });
contenders.push({
  name: "libsamplerate medium (lsr-medium)",
  make: async () => {
    const c = await LsrConverter.create("medium", 8000);
    c.configure(44100, 1, 1);
    return c;
  },
});
// Rounds alternate the converters (each round runs every one once), so that whichever runs first does not alone pay
// for the process's first touches of the input and of the code; each converter's best round is kept.
const best = contenders.map(() => Infinity);
for (let round = 0; round < THROUGHPUT_ROUNDS; round++) {
  for (let k = 0; k < contenders.length; k++) {
    const r = await contenders[k].make();
    const t0 = performance.now();
    for (let i = 0; i < samples.length; i += FRAME) r.process(samples.subarray(i, i + FRAME));
    r.flush();
    best[k] = Math.min(best[k], performance.now() - t0);
  }
}
console.log(
  `\nresampler throughput, 44.1 → 8 kHz mono, 20 ms frames, best of ${THROUGHPUT_ROUNDS} alternating rounds:`,
);
if (!nativeLoops()) console.log(`  polyphase medium, native: does not run here (${nativeLoopsProblem()})`);
contenders.forEach((c, k) => {
  const rate = samples.length / (best[k] / 1000);
  console.log(
    `  ${c.name.padEnd(34)} ${(rate / 1e6).toFixed(1).padStart(6)} M samples/s in  ` +
      `${(rate / 44100).toFixed(0).padStart(5)}× realtime  (${best[k].toFixed(0)} ms for ${THROUGHPUT_SECONDS} s)`,
  );
});

// ---------------------------------------------------------------------------------------------
// 4. Quality.

const concat = (a: Int16Array, b: Int16Array) => {
  const o = new Int16Array(a.length + b.length);
  o.set(a);
  o.set(b, a.length);
  return o;
};
console.log(`\nquality (int16 in and out; tests/polyphase_test.ts asserts the polyphase figures):`);
const q = await qualityFigures((x, a, b) => {
  const r = new PolyphaseResampler({ inRate: a, outRate: b, inChannels: 1, outChannels: 1 });
  return concat(r.process(x), r.flush());
});
console.log(`  polyphase medium:     ${formatFigures(q)}`);
const l = await qualityFigures(async (x, a, b) => {
  const c = await LsrConverter.create("medium", b);
  c.configure(a, 1, 1);
  const y = concat(c.process(x), c.flush());
  c.close();
  return y;
});
console.log(`  libsamplerate medium: ${formatFigures(l)}`);

if (!values.keep) {
  for (const t of tools) {
    await Deno.remove(t.out).catch(() => {});
    await Deno.remove(outShort(t.name)).catch(() => {});
  }
}
