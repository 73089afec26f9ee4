/**
 * The `bench/` scripts' command line (`bench/_args.ts`): the usage they print, made from their own options and
 * module comment, and, for every script that takes options, `--help` printing it (exit 0, nothing run) and a bad
 * option refused with what was wrong (exit 2, no stack trace); and which files `deno bench` picks up (those that
 * declare benchmarks, not the scripts named `*_bench.ts`). No timing is measured here.
 *
 * @module
 */
import { assert, assertEquals, assertMatch } from "./assert.ts";
import { repoPath } from "./util.ts";
import { benchUsage, docSummary, SUMMARY_LINES } from "../bench/_args.ts";

Deno.test("docSummary: the module comment's first paragraph, as written", () => {
  const src =
    "/**\n * Measures one thing,\n * against a reference.\n *\n * More detail.\n *\n * @module\n */\nconst x = 1;\n";
  assertEquals(docSummary(src), "Measures one thing,\nagainst a reference.");
  assertEquals(docSummary("const x = 1;\n/** not at the top */"), undefined);
  assertEquals(docSummary("/**\n * @module\n */"), undefined);
});

Deno.test("docSummary: a paragraph that introduces a list takes the list with it, up to SUMMARY_LINES lines", () => {
  const src = "/**\n * The rate for\n *\n * 1. ours;\n * 2. theirs.\n *\n * How it runs.\n */";
  assertEquals(docSummary(src), "The rate for\n\n1. ours;\n2. theirs.");
  const long = `/**\n * A paragraph that never ends\n${" * and goes on\n".repeat(40)} */`;
  assertEquals(docSummary(long)!.split("\n").length, SUMMARY_LINES);
});

Deno.test("benchUsage: the script's name, every option (flags bare, values with VALUE) and the defaults there are", () => {
  const text = benchUsage(
    "file:///repo/bench/thing.ts",
    {
      seconds: { type: "string", default: "600" },
      keep: { type: "boolean", default: false },
      only: { type: "string", default: "" },
      compare: { type: "string" },
    },
    "/**\n * Does the thing.\n */",
  );
  const lines = text.split("\n");
  assertEquals(
    lines[0],
    "usage: deno run -A bench/thing.ts [--seconds VALUE] [--keep] [--only VALUE] [--compare VALUE]",
  );
  assertEquals(lines[2], "Does the thing.");
  assert(lines.includes("  --seconds VALUE  (default 600)"), text);
  // No "(default )" for an empty or false default, none for an option without one.
  for (const o of ["--keep", "--only VALUE", "--compare VALUE"]) assert(lines.includes(`  ${o}`), `${o}: ${text}`);
  assert(!text.includes("(default )") && !text.includes("(default false)"), text);
});

Deno.test("benchUsage: arguments after the options are shown after them", () => {
  const text = benchUsage(
    "file:///repo/bench/cost.ts",
    { runs: { type: "string", default: "10" } },
    undefined,
    "MODULE...",
  );
  assertEquals(text.split("\n")[0], "usage: deno run -A bench/cost.ts [--runs VALUE] MODULE...");
});

/** The bench scripts that read a command line (they import `_args.ts`). */
async function scriptsWithOptions(): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(repoPath("bench"))) {
    if (!e.isFile || !e.name.endsWith(".ts") || e.name.startsWith("_")) continue;
    const src = await Deno.readTextFile(repoPath(`bench/${e.name}`));
    // Every script reads its command line through benchArgs, none by itself (a typo, or --help, would be a stack or
    // be taken for a value).
    assert(
      !/\bparseArgs\b|\bDeno\.args\b|\bprocess\.argv\b/.test(src),
      `bench/${e.name} reads its command line itself: use benchArgs from ./_args.ts`,
    );
    if (src.includes('from "./_args.ts"')) out.push(e.name);
  }
  return out.sort();
}

async function run(script: string, arg: string): Promise<{ code: number; stdout: string; stderr: string }> {
  const r = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", `bench/${script}`, arg],
    cwd: repoPath(""),
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
    signal: AbortSignal.timeout(120_000), // a script that ran its measurement instead of answering is killed
  }).output();
  const dec = new TextDecoder();
  return { code: r.code, stdout: dec.decode(r.stdout), stderr: dec.decode(r.stderr) };
}

Deno.test("every bench script with options: --help prints its usage and exits 0; an unknown option exits 2 saying so", async () => {
  const scripts = await scriptsWithOptions();
  assert(scripts.length >= 20, `only ${scripts.length} bench scripts read options through benchArgs`);
  const queue = [...scripts];
  const failures: string[] = [];
  const worker = async () => {
    for (let s = queue.shift(); s !== undefined; s = queue.shift()) {
      const help = await run(s, "--help");
      if (help.code !== 0) failures.push(`${s} --help: exit ${help.code}: ${help.stderr.slice(0, 300)}`);
      else if (!help.stdout.startsWith(`usage: deno run -A bench/${s}`)) {
        failures.push(`${s} --help printed: ${help.stdout.slice(0, 200)}`);
      }
      const bad = await run(s, "--no-such-option");
      if (bad.code !== 2) failures.push(`${s} --no-such-option: exit ${bad.code}`);
      else if (!bad.stderr.startsWith(`bench/${s}: Unknown option '--no-such-option'`) || /Uncaught/.test(bad.stderr)) {
        failures.push(`${s} --no-such-option printed: ${bad.stderr.slice(0, 300)}`);
      }
    }
  };
  await Promise.all([worker(), worker(), worker()]);
  assertEquals(failures, []);
  for (const s of ["offline.ts", "core_chain.ts", "import_cost.ts"]) assertMatch(scripts.join(" "), new RegExp(s));
});

Deno.test("deno bench on bench/ selects exactly the files that declare Deno.bench, not the *_bench.ts scripts", async () => {
  // Deno's bench files: names ending in _bench, .bench or named bench (.ts here), less deno.json's bench.exclude.
  const config = JSON.parse(await Deno.readTextFile(repoPath("deno.json")));
  const excluded = new Set<string>((config.bench?.exclude ?? []) as string[]);
  const selected: string[] = [], declaring: string[] = [];
  for await (const e of Deno.readDir(repoPath("bench"))) {
    if (!e.isFile || !e.name.endsWith(".ts")) continue;
    if ((await Deno.readTextFile(repoPath(`bench/${e.name}`))).includes("Deno.bench(")) declaring.push(e.name);
    if (/(^|[_.])bench\.ts$/.test(e.name) && !excluded.has(`bench/${e.name}`)) selected.push(e.name);
  }
  for (const x of excluded) {
    if (x.startsWith("bench/")) assert(await Deno.stat(repoPath(x)).catch(() => null), `deno.json excludes ${x}: gone`);
  }
  assert(declaring.length >= 5, `only ${declaring.length} files declare Deno.bench`);
  // A script named *_bench.ts (run with deno run) must be excluded, or `deno task bench` runs it on import.
  assertEquals(selected.sort(), declaring.sort(), "deno bench's files against those that declare Deno.bench");
});
