/**
 * The core has no import cycle: the module graph of `core/*.ts` (as Deno
 * resolves it, `deno info --json`), counting type-only imports and re-exports
 * too, is acyclic. Also checks that the walk does find a cycle where one is,
 * and that the files private to core/ by name (`_x.ts`) are imported from
 * core/ only.
 */
import { assert, assertEquals } from "./assert.ts";
import { repoPath } from "./util.ts";

/** A module graph: file URL → the file URLs it imports (code or type), in one directory. */
type Graph = Map<string, { to: string; kind: "code" | "type" }[]>;

/** The `.ts` files of `dir`, and of its subdirectories when `recursive`. */
async function tsFiles(dir: string, recursive = false): Promise<string[]> {
  const files: string[] = [];
  for await (const e of Deno.readDir(dir)) {
    if (e.isFile && e.name.endsWith(".ts")) files.push(`${dir}/${e.name}`);
    else if (recursive && e.isDirectory && e.name !== "fixtures") {
      files.push(...await tsFiles(`${dir}/${e.name}`, true));
    }
  }
  return files.sort();
}

/** The import graph between `files` (edges to other modules are left out). */
async function importGraph(files: string[]): Promise<Graph> {
  const urls = new Set(files.map((f) => new URL(`file://${f}`).href));
  // One entry module importing every file, so one `deno info` call sees the whole directory.
  const entry = await Deno.makeTempFile({ suffix: ".ts" });
  try {
    await Deno.writeTextFile(entry, [...urls].map((u) => `import ${JSON.stringify(u)};\n`).join(""));
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["info", "--json", "--config", repoPath("deno.json"), entry],
      stdout: "piped",
      stderr: "piped",
      signal: AbortSignal.timeout(60_000),
    }).output();
    assertEquals(out.code, 0, new TextDecoder().decode(out.stderr));
    const info = JSON.parse(new TextDecoder().decode(out.stdout)) as {
      modules: { specifier: string; dependencies?: { code?: { specifier: string }; type?: { specifier: string } }[] }[];
    };
    const graph: Graph = new Map();
    for (const m of info.modules) {
      if (!urls.has(m.specifier)) continue;
      const edges: { to: string; kind: "code" | "type" }[] = [];
      for (const d of m.dependencies ?? []) {
        if (d.code && urls.has(d.code.specifier)) edges.push({ to: d.code.specifier, kind: "code" });
        else if (d.type && urls.has(d.type.specifier)) edges.push({ to: d.type.specifier, kind: "type" });
      }
      graph.set(m.specifier, edges);
    }
    assertEquals(graph.size, urls.size, "every file is in the graph");
    return graph;
  } finally {
    await Deno.remove(entry);
  }
}

/** Every cycle found by a depth-first walk, each as `a.ts -> b.ts -(type)-> a.ts`. */
function findCycles(graph: Graph): string[] {
  const name = (u: string) => u.slice(u.lastIndexOf("/") + 1);
  const state = new Map<string, "open" | "done">();
  const stack: { node: string; via: string }[] = [];
  const cycles: string[] = [];
  const visit = (node: string, via: string) => {
    state.set(node, "open");
    stack.push({ node, via });
    for (const { to, kind } of graph.get(node) ?? []) {
      const arrow = kind === "type" ? " -(type)-> " : " -> ";
      if (state.get(to) === "open") {
        const start = stack.findIndex((s) => s.node === to);
        const path = stack.slice(start);
        cycles.push(
          path.map((s, i) => (i === 0 ? "" : s.via) + name(s.node)).join("") + arrow + name(to),
        );
      } else if (!state.has(to)) {
        visit(to, arrow);
      }
    }
    stack.pop();
    state.set(node, "done");
  };
  for (const node of graph.keys()) if (!state.has(node)) visit(node, "");
  return cycles;
}

Deno.test("core/ has no import cycle, type-only imports and re-exports included", async () => {
  const graph = await importGraph(await tsFiles(repoPath("core")));
  assert(graph.size >= 10, `${graph.size} modules in core/`);
  const cycles = findCycles(graph);
  assertEquals(cycles, [], `import cycles in core/:\n${cycles.join("\n")}`);
});

Deno.test("the cycle walk finds a cycle made of a type-only import and a re-export", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/a.ts`, `import type { B } from "./b.ts";\nexport type A = { b?: B };\n`);
    await Deno.writeTextFile(`${dir}/b.ts`, `export type { C as B } from "./c.ts";\n`);
    await Deno.writeTextFile(`${dir}/c.ts`, `import type { A } from "./a.ts";\nexport type C = { a?: A };\n`);
    await Deno.writeTextFile(`${dir}/d.ts`, `import "./c.ts";\n`);
    const cycles = findCycles(await importGraph(await tsFiles(dir)));
    assertEquals(cycles, ["a.ts -(type)-> b.ts -(type)-> c.ts -(type)-> a.ts"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("core/_x.ts files are imported from core/ only", async () => {
  const files = [repoPath("mod.ts")];
  for (const dir of ["core", "plugins", "examples", "tests", "bench"]) {
    files.push(...await tsFiles(repoPath(dir), true));
  }
  const graph = await importGraph(files);
  const core = new URL(`file://${repoPath("core")}/`).href;
  const privateFiles = [...graph.keys()].filter((u) => u.startsWith(`${core}_`));
  assert(privateFiles.length >= 4, `private core files: ${privateFiles.join(", ")}`);
  const offending: string[] = [];
  for (const [from, edges] of graph) {
    if (from.startsWith(core) && !from.slice(core.length).includes("/")) continue;
    for (const { to } of edges) if (to.startsWith(`${core}_`)) offending.push(`${from} -> ${to}`);
  }
  assertEquals(offending, [], "a file outside core/ imports a file private to core/");
});

Deno.test("dependencies point inwards: core/ imports nothing of plugins/, the CLI or the tests", async () => {
  const files = [repoPath("mod.ts")];
  for (const dir of ["core", "plugins"]) files.push(...await tsFiles(repoPath(dir), true));
  const graph = await importGraph(files);
  const core = new URL(`file://${repoPath("core")}/`).href;
  const coreFiles = [...graph.keys()].filter((u) => u.startsWith(core));
  assert(coreFiles.length >= 10, `${coreFiles.length} modules in core/`);
  const outward = coreFiles.flatMap((from) =>
    (graph.get(from) ?? []).filter(({ to }) => !to.startsWith(core)).map(({ to }) => `${from} -> ${to}`)
  );
  assertEquals(outward, [], "core/ imports a file outside core/ (plugins build on core, never the reverse)");
});
