/**
 * What a newcomer reads when something is wrong: option errors that name the
 * plugin and list its options, exclusive bounds said as such, "did you mean"
 * for misspelt names, `--describe` of a user plugin by path, and where in a
 * user plugin an exception was thrown.
 */
import { assert, assertEquals, assertMatch, assertRejects } from "./assert.ts";
import { createRegistry, definePlugin, type OptionsSchema, z } from "../mod.ts";
import { ConfigError, errorReport, formatZodIssues, stackLocation } from "../core/errors.ts";
import { buildPipeline, StageError } from "../core/pipeline.ts";
import { PipelineRunner } from "../core/runner.ts";
import { closestNames, didYouMean, editDistance, levenshtein } from "../core/suggest.ts";
import { VirtualClock } from "../core/clock.ts";
import { repoPath } from "./util.ts";

const dec = new TextDecoder();

async function cli(args: string[], cwd = repoPath(".")): Promise<{ code: number; stdout: string; stderr: string }> {
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

function issues(schema: OptionsSchema, value: unknown): string {
  const r = schema.safeParse(value, { reportInput: true });
  assert(!r.success, "expected a failure");
  return formatZodIssues(r.error, "x");
}

Deno.test("formatZodIssues: exclusive bounds say more/less than, lengths say characters and items", () => {
  assertEquals(issues(z.object({ v: z.number().positive() }), { v: 0 }), "x.v: expected more than 0, got 0");
  assertEquals(issues(z.object({ v: z.number().gt(2) }), { v: 1 }), "x.v: expected more than 2, got 1");
  assertEquals(issues(z.object({ v: z.number().lt(9) }), { v: 9 }), "x.v: expected less than 9, got 9");
  assertEquals(issues(z.object({ v: z.number().negative() }), { v: 0 }), "x.v: expected less than 0, got 0");
  // Inclusive bounds as before.
  assertEquals(issues(z.object({ v: z.number().min(10) }), { v: 7 }), "x.v: expected at least 10, got 7");
  assertEquals(issues(z.object({ v: z.number().nonnegative() }), { v: -1 }), "x.v: expected at least 0, got -1");
  assertEquals(issues(z.object({ v: z.number().max(60) }), { v: 70 }), "x.v: expected at most 60, got 70");
  assertEquals(
    issues(z.object({ s: z.string().min(1) }), { s: "" }),
    "x.s: expected at least 1 character, got 0 characters",
  );
  assertEquals(
    issues(z.object({ s: z.string().max(2) }), { s: "abc" }),
    "x.s: expected at most 2 characters, got 3 characters",
  );
  assertEquals(
    issues(z.object({ a: z.array(z.number()).min(2) }), { a: [1] }),
    "x.a: expected at least 2 items, got 1 item",
  );
  assertEquals(
    issues(z.object({ s: z.string().length(2) }), { s: "a" }),
    "x.s: expected exactly 2 characters, got 1 character",
  );
});

Deno.test("did you mean: Levenshtein distance, closest first, nothing when nothing is close", () => {
  assertEquals(levenshtein("ptme", "ptime"), 1);
  assertEquals(levenshtein("kitten", "sitting"), 3);
  assertEquals(levenshtein("prot", "port"), 2);
  assertEquals(editDistance("prot", "port"), 1); // a swap of neighbours is one typing mistake
  assertEquals(editDistance("kitten", "sitting"), 3);
  assertEquals(closestNames("wav-snk", ["wav-sink", "wav-source", "null-sink"]), ["wav-sink"]);
  assertEquals(closestNames("jitter", ["jitter-buffer", "tone-source"]), ["jitter-buffer"]);
  assertEquals(didYouMean("ptme", ["ptime", "payload_type"]), ' (did you mean "ptime"?)');
  assertEquals(didYouMean("zzzzzz", ["ptime", "payload_type"]), "");
});

Deno.test("an unknown option names the plugin, the closest option, and lists its options with types", async () => {
  const err = await assertRejects(
    () =>
      buildPipeline("main", [{ use: "tone-source", frequncy: 440 }, { use: "null-sink" }], {
        registry: createRegistry(),
        clock: new VirtualClock(),
        file: "p.json",
      }),
    ConfigError,
  );
  assertMatch(
    err.message,
    /^p\.json: pipelines\.main\[0\]: unknown option "frequncy" for tone-source \(did you mean "frequency"\?\)/,
  );
  assertMatch(err.message, /; tone-source options: .*frequency \(number, range [^)]*default 1000\)/);
  assertMatch(err.message, /duration \(number/);
  // A bad value alongside: both are reported.
  const both = await assertRejects(
    () =>
      buildPipeline("main", [{ use: "tone-source", frequncy: 440, duration: -1 }, { use: "null-sink" }], {
        registry: createRegistry(),
        clock: new VirtualClock(),
      }),
    ConfigError,
  );
  assertMatch(both.message, /pipelines\.main\[0\]\.duration: expected at least 0, got -1/);
});

Deno.test("an unknown control option names the control plugin and lists its options", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(
      `${dir}/c.json`,
      JSON.stringify({
        control: { use: "sip", role: "callee", prot: 5060 },
        pipelines: { receive: [{ use: "tone-source" }, { use: "null-sink" }] },
      }),
    );
    const runner = await PipelineRunner.load(`${dir}/c.json`, { registry: createRegistry() });
    const err = await assertRejects(() => runner.check(), ConfigError);
    assertMatch(
      err.message,
      /c\.json: control: unknown option "prot" for sip \(did you mean "port"\?\); sip options: role/,
    );
    const typo = JSON.stringify({
      control: { use: "sipp", role: "callee" },
      pipelines: { r: [{ use: "x" }, { use: "y" }] },
    });
    await Deno.writeTextFile(`${dir}/d.json`, typo);
    const e2 = await assertRejects(
      () => PipelineRunner.load(`${dir}/d.json`, { registry: createRegistry() }),
      ConfigError,
    );
    assertMatch(e2.message, /control\.use: unknown control plugin "sipp" \(did you mean "sip"\?\)/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("CLI: a misspelt flag or plugin gets a did-you-mean; --describe loads a user plugin by path", async () => {
  const flag = await cli(["--pipline", "x.json"]);
  assertEquals(flag.code, 2);
  assertMatch(flag.stderr, /^voxpipe: Unknown option '--pipline' \(did you mean --pipeline\?\)\nTry --help\./);
  const flag2 = await cli(["--list-plugin"]);
  assertMatch(flag2.stderr, /\(did you mean --list-plugins\?\)/);
  const d = await cli(["--describe", "jiter-buffer"]);
  assertEquals(d.code, 2);
  assertMatch(d.stderr, /^voxpipe: no plugin named "jiter-buffer" \(did you mean "jitter-buffer"\?\); known plugins: /);
  const user = await cli(["--describe", "./examples/plugins/gain.ts"]);
  assertEquals(user.code, 0, user.stderr);
  assertMatch(user.stdout, /^gain \(transform\): /);
  assertMatch(user.stdout, /^\s+gain_db\s+number, range -60\.\.40, default 0/m);
  const missing = await cli(["--describe", "./no_such_plugin.ts"]);
  assertEquals(missing.code, 2);
  assertMatch(missing.stderr, /cannot load plugin module "\.\/no_such_plugin\.ts"/);
  const extra = await cli(["--pipeline", "a.json", "b.json"]);
  assertEquals(extra.code, 2);
  assertMatch(extra.stderr, /unexpected argument "b\.json"/);
});

/** A user plugin whose `process` throws on its third frame (line 10) and, with `fail_create`, whose create throws (line 7). */
const BAD_PLUGIN = `import { definePlugin, z } from ${JSON.stringify(new URL("../mod.ts", import.meta.url).href)};
export default definePlugin({
  name: "bad", kind: "transform", description: "throws", accepts: [{ kind: "pcm" }], produces: { kind: "pcm" },
  options: z.object({ fail_create: z.boolean().default(false) }),
  create(o) {
    let n = 0;
    if (o.fail_create) throw new Error("cannot create");
    return {
      process(frame, emit) {
        if (++n === 3) throw new TypeError("boom");
        emit(frame);
      },
    };
  },
});
`;

Deno.test("an exception in a user plugin is reported with its file:line", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/bad_plugin.ts`, BAD_PLUGIN);
    const pipeline = (failCreate: boolean) =>
      JSON.stringify({
        pipelines: {
          main: [
            { use: "tone-source", duration: 1 },
            { use: "./bad_plugin.ts", fail_create: failCreate },
            { use: "null-sink" },
          ],
        },
      });
    await Deno.writeTextFile(`${dir}/run.json`, pipeline(false));
    await Deno.writeTextFile(`${dir}/create.json`, pipeline(true));
    const r = await cli(["--pipeline", `${dir}/run.json`]);
    assertEquals(r.code, 1);
    assertMatch(r.stderr, /^voxpipe: pipeline "main", stage 1 \(bad\): boom \(at .*bad_plugin\.ts:10:\d+\)$/m);
    // At debug level the runner also says where it was thrown (the first frame outside voxpipe's core).
    const dbg = await cli(["--pipeline", `${dir}/run.json`, "--log-level", "debug"]);
    assertMatch(dbg.stderr, /DEBUG .*thrown at .*bad_plugin\.ts:10:\d+: pipeline "main", stage 1 \(bad\): boom/);
    const c = await cli(["--pipeline", `${dir}/create.json`]);
    assertEquals(c.code, 1);
    assertMatch(c.stderr, /pipelines\.main\[1\]: bad: cannot create \(at .*bad_plugin\.ts:7:\d+\)/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("StageError carries its cause and the user code location; built-in plugins are not user code", async () => {
  const userPlugin = definePlugin({
    name: "thrower",
    kind: "transform",
    description: "",
    accepts: [{ kind: "pcm" }],
    produces: { kind: "pcm" },
    options: z.object({}),
    create: () => ({
      process() {
        throw new RangeError("out of range");
      },
    }),
  });
  const registry = createRegistry();
  registry.register(userPlugin);
  const p = await buildPipeline(
    "m",
    [{ use: "tone-source", duration: 0.1 }, { use: "thrower" }, { use: "null-sink" }],
    {
      registry,
      clock: new VirtualClock(),
    },
  );
  const r = await p.run();
  assert(r.error instanceof StageError);
  assert(r.error.cause instanceof RangeError);
  assertMatch(r.error.location!, /^tests\/errors_test\.ts:\d+:\d+$/);
  // An error thrown by a built-in plugin has no user location, but its first frame outside the core is the plugin's.
  const e = new StageError("m", 0, "wav-source", await wavSourceError());
  assertEquals(e.location, undefined);
  assertMatch(stackLocation(e)!, /plugins\/wav\/wav_(source|format)\.ts:\d+:\d+$/);
});

async function wavSourceError(): Promise<unknown> {
  try {
    await buildPipeline("m", [{ use: "wav-source", path: "/nonexistent/x.wav" }, { use: "null-sink" }], {
      registry: createRegistry(),
      clock: new VirtualClock(),
    });
  } catch (e) {
    return (e as Error).cause;
  }
  throw new Error("expected a failure");
}

Deno.test("errorReport: an error saying no descriptor is left (or wrapping one) is its message and what to do, its stack never read; any other, its stack", () => {
  let stackRead = 0;
  const emfile = Object.assign(new Error("Too many open files (os error 24)"), { code: "EMFILE" });
  const wrapper = new Error("cannot start: Too many open files", { cause: emfile });
  for (const e of [emfile, wrapper]) {
    Object.defineProperty(e, "stack", {
      get: () => {
        stackRead++;
        return "Error\n    at file:///x.ts:1:1";
      },
    });
  }
  assertEquals(
    errorReport(emfile),
    "Too many open files (os error 24) (the process is out of file descriptors: raise the limit (ulimit -n))",
  );
  assertEquals(
    errorReport(wrapper),
    "cannot start: Too many open files (the process is out of file descriptors: raise the limit (ulimit -n))",
  );
  // The advice once, when the message has it already.
  const said = new Error(
    "x: Too many open files (os error 24) (the process is out of file descriptors: raise the " +
      "limit (ulimit -n))",
  );
  assertEquals(errorReport(said), said.message);
  assertEquals(
    errorReport(Object.assign(new Error("Too many open files in system (os error 23)"), { code: "ENFILE" })),
    "Too many open files in system (os error 23) (the system is out of file descriptors: raise its limit " +
      "(sysctl fs.file-max) or the process's (ulimit -n))",
  );
  assertEquals(stackRead, 0);
  const bug = new Error("bug");
  assertEquals(errorReport(bug), bug.stack);
  assertEquals(errorReport("text"), "text");
});
