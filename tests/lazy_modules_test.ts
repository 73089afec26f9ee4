/**
 * Start-up reads only what runs: the modules the built-in families load when first used (`lazyModule`) stay out of
 * the module graph Deno loads with `mod.ts`, no module of the repository imports a local module with a dynamic
 * `import("...")` Deno would read at start-up, and each loader's type names the module it loads.
 */
import { assert, assertEquals } from "./assert.ts";
import { relative } from "node:path";
import { lazyModule } from "../core/lazy.ts";
import { repoPath } from "./util.ts";

/** The repository's own TypeScript files outside tests/, bench/ and examples/, relative to the root. */
async function sourceFiles(): Promise<string[]> {
  const out: string[] = [];
  async function walk(dir: string): Promise<void> {
    for await (const e of Deno.readDir(dir)) {
      const p = `${dir}/${e.name}`;
      if (e.isDirectory && e.name !== "static") await walk(p);
      else if (e.isFile && e.name.endsWith(".ts") && !e.name.endsWith(".d.ts")) out.push(relative(repoPath("."), p));
    }
  }
  await walk(repoPath("core"));
  await walk(repoPath("plugins"));
  out.push("mod.ts");
  return out.sort();
}

/** `lazyModule<typeof import("T")>(new URL("U", import.meta.url))` or `(…)("U")` sites: [file, T, U]. */
async function loaders(): Promise<[string, string, string][]> {
  const out: [string, string, string][] = [];
  const re = /lazyModule<typeof import\("([^"]+)"\)>\(\s*(?:new URL\("([^"]+)", import\.meta\.url\)|"([^"]+)")/g;
  for (const f of await sourceFiles()) {
    const src = await Deno.readTextFile(repoPath(f));
    for (const m of src.matchAll(re)) out.push([f, m[1], m[2] ?? m[3]]);
  }
  return out;
}

/** The `deno info --json` graph of `mod.ts`: module URL → the URLs of its code (not type-only) dependencies. */
async function codeGraph(): Promise<{ edges: Map<string, string[]>; dynamic: [string, string][] }> {
  const r = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", "mod.ts"],
    cwd: repoPath("."),
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert(r.success, new TextDecoder().decode(r.stderr));
  const info = JSON.parse(new TextDecoder().decode(r.stdout)) as {
    modules: { specifier: string; dependencies?: { code?: { specifier: string }; isDynamic?: boolean }[] }[];
  };
  const edges = new Map<string, string[]>();
  const dynamic: [string, string][] = [];
  for (const m of info.modules) {
    const to: string[] = [];
    for (const d of m.dependencies ?? []) {
      if (!d.code) continue;
      to.push(d.code.specifier);
      if (d.isDynamic && d.code.specifier.startsWith("file:")) dynamic.push([m.specifier, d.code.specifier]);
    }
    edges.set(m.specifier, to);
  }
  return { edges, dynamic };
}

/** Modules a family loads on first use that `mod.ts` imports statically all the same, and why. */
const STATIC = new Set([
  // `mod.ts` exports `sendDtmf` (the library API to send DTMF on a call's RTP).
  new URL("../plugins/rtp/dtmf_sender.ts", import.meta.url).href,
]);

Deno.test("each lazyModule loader's type names the module it loads", async () => {
  const sites = await loaders();
  assert(sites.length >= 25, `${sites.length} loaders found: the pattern no longer matches the sources`);
  for (const [file, typePath, loadPath] of sites) assertEquals(typePath, loadPath, `${file}: type vs loaded module`);
});

Deno.test("Deno does not read the modules loaded on first use when it loads mod.ts", async () => {
  const { edges, dynamic } = await codeGraph();
  const root = new URL("../mod.ts", import.meta.url).href;
  // Modules Deno loads with mod.ts: those reachable by code imports, static or statically written dynamic ones.
  const loaded = new Set<string>([root]);
  for (const todo = [root]; todo.length > 0;) {
    for (const to of edges.get(todo.pop()!) ?? []) if (!loaded.has(to)) loaded.add(to), todo.push(to);
  }
  assertEquals(dynamic, [], "a dynamic import Deno reads at start-up: load the module with lazyModule instead");
  const lazy = (await loaders()).filter(([, , to]) => to.startsWith("."));
  for (const [file, , to] of lazy) {
    const url = new URL(to, new URL(`../${file}`, import.meta.url)).href;
    if (STATIC.has(url)) continue;
    assert(!loaded.has(url), `${to} (loaded on first use by ${file}) is in the graph Deno loads with mod.ts`);
  }
  // The heavy ones by name, so a change of pattern cannot make this test vacuous.
  for (const heavy of ["plugins/sip/control.ts", "plugins/resample/_lsr.ts", "plugins/rtp/jitter_buffer.ts"]) {
    assert(!loaded.has(new URL(`../${heavy}`, import.meta.url).href), `${heavy} is loaded with mod.ts`);
  }
});

Deno.test("lazyModule imports once", async () => {
  const load = lazyModule<typeof import("../core/lazy.ts")>(new URL("../core/lazy.ts", import.meta.url));
  const first = load();
  assert(first === load(), "the same promise for every call");
  assertEquals((await first).lazyModule, lazyModule);
});
