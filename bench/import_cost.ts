/**
 * `deno run -A bench/import_cost.ts [--runs N] [--base MODULE] MODULE...`: what importing a module costs at start-up.
 *
 * For each MODULE (a path from the repository root, e.g. `plugins/controls.ts`), N fresh `deno run` processes (the
 * modules alternate, run by run) each import `--base` first (default `core/mod.ts`, which every caller of these
 * modules loads anyway), then the module, and report:
 *
 * - `ms`: the time of the module's dynamic `import()` alone (load, transpile from the cache, evaluate);
 * - `zod`: zod schema instances built during that import (counted by watching the `_zod` property zod defines on
 *   every schema it constructs), so a module whose option schemas are built lazily shows 0;
 * - `wall`: the whole process, from spawn to exit.
 *
 * It prints the median and range of each. The figures depend on the machine's load: compare modules in one run.
 *
 * @module
 */
import { fileURLToPath } from "node:url";
import { benchArgs, benchFail } from "./_args.ts";

const root = fileURLToPath(new URL("..", import.meta.url));
const moduleUrl = (path: string) => new URL(`../${path}`, import.meta.url).href;

/** One process's figures. */
interface Sample {
  ms: number;
  zod: number;
  wall: number;
}

async function child(base: string, target: string): Promise<void> {
  let zod = 0;
  const define = Object.defineProperty;
  Object.defineProperty = function <T>(o: T, key: PropertyKey, desc: PropertyDescriptor & ThisType<unknown>): T {
    if (key === "_zod") zod++;
    return define(o, key, desc);
  };
  await import(moduleUrl(base));
  const before = zod;
  const t0 = performance.now();
  await import(moduleUrl(target));
  const ms = performance.now() - t0;
  Object.defineProperty = define;
  console.log(JSON.stringify({ ms, zod: zod - before }));
}

async function sample(base: string, target: string): Promise<Sample> {
  const t0 = performance.now();
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", fileURLToPath(import.meta.url), "--child", "--base", base, target],
    cwd: root,
    stdout: "piped",
    stderr: "inherit",
  }).output();
  const wall = performance.now() - t0;
  if (!out.success) throw new Error(`importing ${target} failed (exit ${out.code})`);
  const r = JSON.parse(new TextDecoder().decode(out.stdout).trim().split("\n").at(-1)!) as Omit<Sample, "wall">;
  return { ...r, wall };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

const OPTIONS = {
  runs: { type: "string", default: "10" },
  base: { type: "string", default: "core/mod.ts" },
  /** Internal: this process is one sample (spawned by `sample`). */
  child: { type: "boolean", default: false },
} as const;

async function main(): Promise<void> {
  const { values, positionals: targets } = benchArgs(import.meta.url, OPTIONS, { positionals: "MODULE..." });
  const runs = Number(values.runs), base = values.base;
  if (values.child) return await child(base, targets[0]);
  if (targets.length === 0) benchFail(import.meta.url, OPTIONS, "name at least one MODULE", "MODULE...");
  if (!(Number.isInteger(runs) && runs >= 1)) {
    benchFail(import.meta.url, OPTIONS, `--runs: expected a whole number ≥ 1, got ${values.runs}`, "MODULE...");
  }
  const samples = new Map<string, Sample[]>(targets.map((t) => [t, []]));
  for (let r = 0; r < runs; r++) {
    for (const t of targets) samples.get(t)!.push(await sample(base, t));
  }
  const fmt = (xs: number[]) =>
    `${median(xs).toFixed(1)} (${Math.min(...xs).toFixed(1)}-${Math.max(...xs).toFixed(1)})`;
  console.log(`${runs} processes per module, each importing ${base} first; median (min-max)`);
  for (const [t, s] of samples) {
    console.log(
      `${t}: import ${fmt(s.map((x) => x.ms))} ms, zod schemas built ${fmt(s.map((x) => x.zod))}, ` +
        `process ${fmt(s.map((x) => x.wall))} ms`,
    );
  }
}

await main();
