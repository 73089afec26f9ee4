/**
 * A file whose chains would wait forever on their buses is refused before anything runs (a bus nothing publishes on,
 * chains feeding each other in a circle), by `--check` and by a run; and the CLI never exits 0 having done nothing:
 * a pipeline that stalls where the start-up check cannot see (a plugin loaded from a module) exits 1 saying so.
 */
import { assertEquals, assertMatch, assertRejects } from "./assert.ts";
import { spawnCli } from "./media_util.ts";
import { repoPath } from "./util.ts";
import { createRegistry } from "../mod.ts";
import { ConfigError } from "../core/errors.ts";
import { PipelineRunner } from "../core/runner.ts";
import { checkBusGraph } from "../core/bus_graph.ts";

const src = (bus: string) => ({ use: "bus-source", bus, rate: 8000, channels: 1 });
const tone = { use: "tone-source", frequency: 440, sample_rate: 8000, duration: 0.1 };

async function withFile(config: unknown, fn: (path: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/p.json`, JSON.stringify(config));
    await fn(`${dir}/p.json`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("a bus-source reading a bus no chain publishes on: check() and run() refuse it, naming chain, stage and bus", async () => {
  await withFile({ pipelines: { a: [src("nothing"), { use: "null-sink" }] } }, async (path) => {
    for (const what of ["check", "run"] as const) {
      const runner = await PipelineRunner.load(path, { registry: createRegistry() });
      const e = await assertRejects(() => runner[what](), ConfigError);
      assertMatch(e.message, /p\.json: pipelines\.a\[0\]\.bus: bus-source reads bus "nothing", but no chain publishes/);
    }
  });
});

Deno.test("a mixer input nobody publishes, and a sequence item reading one, are refused with their JSON path", () => {
  const chains = [
    { name: "t", stages: [tone, { use: "bus-sink", bus: "t" }] },
    { name: "m", stages: [{ use: "mixer", buses: ["t", "gone"] }, { use: "null-sink" }] },
  ];
  const e = (() => {
    try {
      checkBusGraph(chains, "f.json");
    } catch (e) {
      return e as Error;
    }
  })();
  assertMatch(e?.message ?? "", /f\.json: pipelines\.m\[0\]\.buses\[1\]: mixer reads bus "gone".*Buses published: "t"/);
  const seq = [{ name: "s", stages: [{ use: "sequence", items: [tone, src("none")] }, { use: "null-sink" }] }];
  let msg = "";
  try {
    checkBusGraph(seq, "f.json");
  } catch (e) {
    msg = (e as Error).message;
  }
  assertMatch(msg, /pipelines\.s\[0\]\.items\[1\]\.bus: bus-source reads bus "none"/);
});

Deno.test("chains feeding each other in a circle are refused; a tee, a chain behind a tone and a stopped-mixer loop are not", async () => {
  const circle = {
    pipelines: {
      a: [src("x"), { use: "bus-sink", bus: "y" }],
      b: [src("y"), { use: "bus-sink", bus: "x" }],
    },
  };
  await withFile(circle, async (path) => {
    const runner = await PipelineRunner.load(path, { registry: createRegistry() });
    const e = await assertRejects(() => runner.check(), ConfigError);
    assertMatch(
      e.message,
      /pipelines\.a\[0\]\.bus: bus-source waits in a circle of buses: chain "a" reads bus "x", published by chain "b"; chain "b" reads bus "y", published by chain "a"/,
    );
  });
  // Legitimate graphs.
  checkBusGraph([
    { name: "t", stages: [tone, { use: "bus-sink", bus: "t" }] },
    { name: "r1", stages: [src("t"), { use: "bus-sink", bus: "u" }] },
    { name: "r2", stages: [src("t"), { use: "null-sink" }] },
    { name: "r3", stages: [src("u"), { use: "null-sink" }] },
  ], "f.json");
  checkBusGraph([
    { name: "m", stages: [{ use: "mixer", buses: ["loop"], until: "stopped" }, { use: "bus-sink", bus: "x" }] },
    { name: "b", stages: [src("x"), { use: "bus-sink", bus: "loop" }] },
  ], "f.json");
});

Deno.test("examples/graph.json still checks clean", async () => {
  const runner = await PipelineRunner.load(repoPath("examples/graph.json"), { registry: createRegistry() });
  const report = await runner.check();
  assertEquals(report.chains.map((c) => c.name), ["tone", "voice", "record_tone", "stereo"]);
});

Deno.test("CLI: a dangling bus is refused by --check (exit 1); a stall behind a user plugin exits 1, not 0", async () => {
  await withFile({ pipelines: { a: [src("nothing"), { use: "null-sink" }] } }, async (path) => {
    const r = await spawnCli(["--check", path], { timeoutMs: 60_000 }).result;
    assertEquals(r.code, 1, r.stderr);
    assertMatch(r.stderr, /pipelines\.a\[0\]\.bus: bus-source reads bus "nothing"/);
  });
  // The start-up check does not look past a plugin loaded from a module (it may publish on a bus itself): the
  // safety net catches the stall when nothing is left to run.
  const gain = repoPath("examples/plugins/gain.ts");
  await withFile({ pipelines: { a: [src("nothing"), { use: gain }, { use: "null-sink" }] } }, async (path) => {
    const r = await spawnCli(["--pipeline", path], { timeoutMs: 60_000 }).result;
    assertEquals(r.code, 1, r.stderr);
    assertMatch(r.stderr, /voxpipe: the pipeline stalled/);
  });
});
