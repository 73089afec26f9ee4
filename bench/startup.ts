/**
 * What starting the CLI costs, whole processes, measured from outside:
 *
 * ```sh
 * deno run -A bench/startup.ts [--runs 15] [--compare DIR]
 * ```
 *
 * Runs, alternating run by run, `deno run -A mod.ts --help`, the 1 s transcode
 * (`--pipeline pipelines/transcode.json` on a 1 s 44.1 kHz tone made here with sox, so nearly all of it is
 * start-up) and an empty Deno script (what Deno itself costs), and prints each one's median wall time and median CPU
 * time (user + system, from GNU time). With `--compare DIR` (another checkout of voxpipe with its `node_modules`,
 * e.g. a `git worktree` of an older commit) the same commands run in DIR too, alternating with this checkout's, and
 * the ratios this / DIR are printed: on a shared machine, read the ratios of one run rather than absolute times.
 *
 * @module
 */
import { benchArgs } from "./_args.ts";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const { values } = benchArgs(import.meta.url, { runs: { type: "string", default: "15" }, compare: { type: "string" } });
const RUNS = Number(values.runs);
if (!(Number.isInteger(RUNS) && RUNS >= 1)) {
  console.error(`--runs: expected a whole number ≥ 1, got ${JSON.stringify(values.runs)}`);
  Deno.exit(2);
}
const GNU_TIME = "/usr/bin/time";
if (!(await Deno.stat(GNU_TIME).catch(() => null))) {
  console.error(`${GNU_TIME} is needed (Debian: apt-get install time)`);
  Deno.exit(2);
}
const compare = values.compare;
if (compare !== undefined && !(await Deno.stat(join(compare, "mod.ts")).catch(() => null))) {
  console.error(`--compare ${compare}: no mod.ts there; give the root of another voxpipe checkout`);
  Deno.exit(2);
}

const dir = await Deno.makeTempDir({ prefix: "voxpipe-startup-" });
const tone = join(dir, "tone-1s.wav");
const made = await new Deno.Command("sox", {
  args: ["-n", "-r", "44100", "-c", "1", "-b", "16", tone, "synth", "1", "sine", "440"],
  stderr: "null",
}).output().catch(() => undefined);
if (!made?.success) {
  console.error("sox is needed to make the 1 s input file (bash scripts/setup.sh)");
  Deno.exit(2);
}
const empty = join(dir, "empty.ts");
await Deno.writeTextFile(empty, "");

interface Case {
  label: string;
  cwd: string;
  args: string[];
}
const deno = Deno.execPath();
const cases = (root: string, tag: string): Case[] => [
  { label: `${tag} --help`, cwd: root, args: ["run", "-A", "mod.ts", "--help"] },
  {
    label: `${tag} transcode 1 s`,
    cwd: root,
    args: [
      "run",
      "-A",
      "mod.ts",
      "--pipeline",
      "pipelines/transcode.json",
      "--set",
      `file=${tone}`,
      "--set",
      `out=${join(dir, `out-${tag}.wav`)}`,
      "--log-level",
      "warn",
    ],
  },
];
const all: Case[] = [
  ...cases(ROOT, "this"),
  ...(compare ? cases(compare, "compare") : []),
  { label: "empty Deno script", cwd: dir, args: ["run", empty] },
];

/** One whole-process run: wall and CPU seconds. */
async function run(c: Case): Promise<{ wall: number; cpu: number }> {
  const cpuFile = join(dir, "cpu.txt");
  const t0 = performance.now();
  const r = await new Deno.Command(GNU_TIME, {
    args: ["-f", "%U %S", "-o", cpuFile, deno, ...c.args],
    cwd: c.cwd,
    stdout: "null",
    stderr: "piped",
  }).output();
  const wall = (performance.now() - t0) / 1000;
  if (!r.success) throw new Error(`${c.label} failed: ${new TextDecoder().decode(r.stderr).slice(-500)}`);
  const [u, s] = (await Deno.readTextFile(cpuFile)).trim().split(/\s+/).map(Number);
  return { wall, cpu: u + s };
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const load = () => Deno.readTextFileSync("/proc/loadavg").split(" ").slice(0, 3).join(" ");

console.log(`${RUNS} alternating runs per command (after one warm-up round); load ${load()}`);
for (const c of all) await run(c); // warm-up: Deno's caches
const got = new Map<string, { wall: number[]; cpu: number[] }>(all.map((c) => [c.label, { wall: [], cpu: [] }]));
for (let i = 0; i < RUNS; i++) {
  for (const c of all) {
    const r = await run(c);
    got.get(c.label)!.wall.push(r.wall);
    got.get(c.label)!.cpu.push(r.cpu);
  }
}
const med = (label: string) => ({ wall: median(got.get(label)!.wall), cpu: median(got.get(label)!.cpu) });
for (const c of all) {
  const m = med(c.label);
  console.log(`${c.label.padEnd(26)} wall ${m.wall.toFixed(3)} s   CPU ${m.cpu.toFixed(3)} s`);
}
if (compare) {
  for (const what of ["--help", "transcode 1 s"]) {
    const a = med(`compare ${what}`), b = med(`this ${what}`);
    console.log(
      `${what}: this / compare = wall ${(b.wall / a.wall).toFixed(2)}, CPU ${(b.cpu / a.cpu).toFixed(2)}`,
    );
  }
}
console.log(`load ${load()} after`);
await Deno.remove(dir, { recursive: true });
