/**
 * The SIP library's layering: every file of plugins/sip belongs to a layer
 * (message → transport → transaction → dialog → user agent → control) and, in
 * the user agent, to a tier by role; a file imports only files of its own or a
 * lower layer/tier, and the import graph has no cycle. Files whose name starts
 * with `_` are private: nothing outside plugins/sip imports them. The checker
 * is tested on a made-up graph too, so that it is known to report an upward
 * import and a cycle.
 */
import assert from "node:assert/strict";
import { dirname, join, normalize, relative } from "node:path";
import { repoPath } from "./util.ts";

/**
 * Layers, lowest first; each layer is a list of tiers, lowest first. A file may
 * import files of a lower layer, and of its own layer in the same or a lower
 * tier. A new file must be added here.
 */
const LAYERS: [name: string, tiers: string[][]][] = [
  ["message", [[
    "errors.ts",
    "syntax.ts",
    "ids.ts",
    "headers.ts",
    "uri.ts",
    "via.ts",
    "message.ts",
    "sdp_text.ts",
    "sdp.ts",
    "auth_header.ts",
  ]]],
  ["transport", [["transport.ts", "local_address.ts", "trace.ts"]]],
  ["transaction", [["transaction.ts"]]],
  ["dialog", [["dialog.ts"]]],
  ["user agent", [
    ["emitter.ts", "auth.ts", "digest.ts", "register.ts", "registration_keeper.ts", "_overload.ts"],
    ["_request_builder.ts"],
    ["_context.ts"],
    ["_client.ts"],
    ["call.ts"],
    ["outgoing_call.ts", "incoming_call.ts"],
    ["_dispatcher.ts"],
    ["user_agent.ts"],
    ["mod.ts"],
  ]],
  ["control", [
    ["control_options.ts", "_call_service.ts", "_media_protocol.ts"],
    ["_call_media.ts"],
    ["media_host.ts", "_media_worker.ts"],
    ["control.ts"],
  ]],
];

/** Where a file sits: layer index, tier index, and a readable label. */
interface Rank {
  layer: number;
  tier: number;
  label: string;
}

function ranks(): Map<string, Rank> {
  const out = new Map<string, Rank>();
  LAYERS.forEach(([name, tiers], layer) =>
    tiers.forEach((files, tier) => {
      for (const f of files) out.set(f, { layer, tier, label: tiers.length > 1 ? `${name} tier ${tier + 1}` : name });
    })
  );
  return out;
}

/** Module specifiers of the static imports/re-exports (type-only too) and dynamic imports in `source`. */
function importsOf(source: string): string[] {
  const out: string[] = [];
  // Statements start a line; `[^;]` stops at the end of the statement (import clauses hold no `;`).
  for (const m of source.matchAll(/^(?:import|export)\b[^;]*?\bfrom\s*["']([^"']+)["']/gm)) out.push(m[1]);
  for (const m of source.matchAll(/^import\s*["']([^"']+)["']/gm)) out.push(m[1]);
  const code = source.split("\n").filter((l) => !/^\s*(\*|\/\/|\/\*)/.test(l)).join("\n");
  for (const m of code.matchAll(/\bimport\(\s*["']([^"']+)["']\s*\)/g)) out.push(m[1]);
  return out;
}

/** A violation found by {@linkcode checkGraph}. */
interface Violation {
  kind: "upward" | "cycle" | "unknown";
  text: string;
}

/**
 * Checks a graph (file → files it imports, all inside the folder) against the
 * ranks: upward imports, files without a rank, and cycles (each reported once,
 * as a path).
 */
function checkGraph(graph: Map<string, string[]>, rank: Map<string, Rank>): Violation[] {
  const out: Violation[] = [];
  for (const [from, tos] of graph) {
    const rf = rank.get(from);
    if (!rf) {
      out.push({ kind: "unknown", text: `${from} is in no layer: add it to LAYERS in tests/sip_layers_test.ts` });
      continue;
    }
    for (const to of tos) {
      const rt = rank.get(to);
      if (!rt) {
        out.push({ kind: "unknown", text: `${from} imports ${to}, which is in no layer` });
      } else if (rt.layer > rf.layer || (rt.layer === rf.layer && rt.tier > rf.tier)) {
        out.push({ kind: "upward", text: `${from} (${rf.label}) imports ${to} (${rt.label}), which is above it` });
      }
    }
  }
  // Cycles: depth-first search with the path on a stack.
  const state = new Map<string, "active" | "done">();
  const stack: string[] = [];
  const seen = new Set<string>();
  const visit = (f: string) => {
    state.set(f, "active");
    stack.push(f);
    for (const to of graph.get(f) ?? []) {
      if (state.get(to) === "active") {
        const cycle = [...stack.slice(stack.indexOf(to)), to];
        const key = [...cycle.slice(0, -1)].sort().join(",");
        if (!seen.has(key)) {
          seen.add(key);
          out.push({ kind: "cycle", text: `import cycle: ${cycle.join(" → ")}` });
        }
      } else if (!state.has(to)) visit(to);
    }
    stack.pop();
    state.set(f, "done");
  };
  for (const f of [...graph.keys()].sort()) if (!state.has(f)) visit(f);
  return out;
}

const SIP = repoPath("plugins/sip");

/** The import graph of plugins/sip/*.ts: edges inside the folder, and the specifiers leaving it. */
function sipGraph(): { graph: Map<string, string[]>; outside: Map<string, string[]> } {
  const graph = new Map<string, string[]>();
  const outside = new Map<string, string[]>();
  for (const e of [...Deno.readDirSync(SIP)].sort((a, b) => a.name.localeCompare(b.name))) {
    if (!e.isFile || !e.name.endsWith(".ts")) continue;
    const inside: string[] = [];
    const out: string[] = [];
    for (const spec of importsOf(Deno.readTextFileSync(join(SIP, e.name)))) {
      if (!spec.startsWith(".")) {
        out.push(spec);
        continue;
      }
      const target = normalize(join(SIP, spec));
      if (dirname(target) === SIP) inside.push(relative(SIP, target));
      else out.push(relative(SIP, target));
    }
    graph.set(e.name, [...new Set(inside)]);
    outside.set(e.name, out);
  }
  return { graph, outside };
}

Deno.test("sip layers: no file imports a file of a layer or tier above it, and there is no import cycle", () => {
  const { graph } = sipGraph();
  // The walker found the imports it must find (an empty graph would pass everything).
  const expected: [string, string][] = [
    ["control.ts", "mod.ts"],
    ["user_agent.ts", "_dispatcher.ts"],
    ["_dispatcher.ts", "incoming_call.ts"],
    ["outgoing_call.ts", "_client.ts"],
    ["call.ts", "_context.ts"],
    ["_request_builder.ts", "message.ts"],
    ["transaction.ts", "message.ts"],
    ["transaction.ts", "transport.ts"], // a type-only import
    ["message.ts", "headers.ts"], // a multi-line import
  ];
  for (const [from, to] of expected) {
    assert.ok(graph.get(from)?.includes(to), `walker missed ${from} → ${to}; found ${graph.get(from)}`);
  }
  const files = [...graph.keys()];
  const known = new Set(LAYERS.flatMap(([, tiers]) => tiers.flat()));
  const gone = [...known].filter((f) => !files.includes(f));
  assert.deepEqual(gone, [], "LAYERS names files that do not exist");
  const violations = checkGraph(graph, ranks());
  assert.deepEqual(violations.map((v) => v.text), []);
});

/** The control and its call media (which builds the pipelines, in-process or in a worker): they may use other plugins. */
const CALL_MEDIA_FILES = new Set(["control.ts", "_call_media.ts", "media_host.ts", "_media_worker.ts"]);

Deno.test("sip layers: the library imports only core/ and packages outside its folder; only the control and its call media use other plugins", () => {
  const { outside } = sipGraph();
  const bad: string[] = [];
  for (const [file, specs] of outside) {
    for (const spec of specs) {
      const isPackage = !spec.startsWith(".") && !spec.startsWith("/");
      const isCore = spec.startsWith("../../core/");
      if (isPackage || isCore || CALL_MEDIA_FILES.has(file)) continue;
      bad.push(`${file} imports ${spec}`);
    }
  }
  assert.deepEqual(bad, []);
  assert.ok(outside.get("call.ts")!.includes("../../core/clock.ts"), "walker missed a core import");
});

Deno.test("sip layers: nothing outside plugins/sip imports its private (_) files", () => {
  const root = repoPath(".");
  const bad: string[] = [];
  const walk = (dir: string) => {
    for (const e of Deno.readDirSync(dir)) {
      const path = join(dir, e.name);
      if (e.isDirectory) {
        if (["node_modules", ".git", "out", ".tmp", "fixtures"].includes(e.name) || path === SIP) continue;
        walk(path);
      } else if (e.isFile && e.name.endsWith(".ts")) {
        for (const spec of importsOf(Deno.readTextFileSync(path))) {
          if (!spec.startsWith(".")) continue;
          const target = normalize(join(dir, spec));
          if (dirname(target) === SIP && relative(SIP, target).startsWith("_")) {
            bad.push(`${relative(root, path)} imports ${relative(root, target)}`);
          }
        }
      }
    }
  };
  walk(root);
  assert.deepEqual(bad, []);
});

Deno.test("sip layers: the checker reports an upward import, a cycle and an unknown file", () => {
  const rank = ranks();
  const graph = new Map<string, string[]>([
    ["message.ts", ["headers.ts"]],
    ["headers.ts", ["message.ts"]], // same layer, but a cycle
    ["transaction.ts", ["dialog.ts"]], // upward: transaction → dialog
    ["_client.ts", ["call.ts"]], // upward inside the user agent
    ["dialog.ts", ["message.ts"]], // fine
    ["stray.ts", []],
  ]);
  const v = checkGraph(graph, rank);
  assert.deepEqual(v.map((x) => x.kind).sort(), ["cycle", "unknown", "upward", "upward"]);
  assert.ok(v.some((x) => x.text === "transaction.ts (transaction) imports dialog.ts (dialog), which is above it"));
  assert.ok(
    v.some((x) => x.text === "_client.ts (user agent tier 4) imports call.ts (user agent tier 5), which is above it"),
  );
  assert.ok(v.some((x) => x.text === "import cycle: message.ts → headers.ts → message.ts"));
  // A longer cycle across layers is found as one path.
  const loop = checkGraph(
    new Map([["message.ts", ["transport.ts"]], ["transport.ts", ["dialog.ts"]], ["dialog.ts", ["message.ts"]]]),
    rank,
  ).filter((x) => x.kind === "cycle");
  assert.deepEqual(loop.map((x) => x.text), ["import cycle: dialog.ts → message.ts → transport.ts → dialog.ts"]);
});

Deno.test("sip layers: the import walker reads multi-line, type-only, re-export, side-effect and dynamic imports, not comments", () => {
  const src = [
    "/**",
    " * ```ts",
    ' * import { x } from "./in_comment.ts";',
    " * ```",
    " */",
    'import type { A } from "./a.ts";',
    "import {",
    "  b,",
    "  c,",
    '} from "./b.ts";',
    'export { d } from "./d.ts";',
    'export * from "./e.ts";',
    'import "./f.ts";',
    'const g = await import("./g.ts");',
    '// const h = await import("./h.ts");',
    "export class K {",
    '  m(): void { log("from here"); }',
    "}",
  ].join("\n");
  assert.deepEqual(importsOf(src), ["./a.ts", "./b.ts", "./d.ts", "./e.ts", "./f.ts", "./g.ts"]);
});
