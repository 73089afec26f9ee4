import { assertEquals, assertMatch, assertRejects, assertThrows } from "./assert.ts";
import {
  checkVariables,
  compileTemplate,
  loadPipelineFile,
  parsePipelineConfig,
  resolveParameters,
  substitute,
} from "../core/config.ts";
import { ConfigError } from "../core/errors.ts";
import { Logger, MemoryOutput } from "../core/log.ts";
import { sanitizeFileComponent } from "../core/paths.ts";

const base = {
  parameters: {
    file: { default: "in.wav", description: "input" },
    ptime: { default: 20 },
    loud: { default: false },
    to: { description: "required destination" },
  },
  pipelines: {
    main: [{ use: "wav-source", path: "${file}" }, { use: "x", ptime: "${ptime}", label: "at ${ptime} ms" }],
  },
};

Deno.test("parameters: defaults, --set with types, required ones", () => {
  const f = parsePipelineConfig(base, "/p/f.json", "f.json");
  const v = resolveParameters(f, ["ptime=30", "to=sip:bob@127.0.0.1", "loud=true"]);
  assertEquals(v, { file: "in.wav", ptime: 30, loud: true, to: "sip:bob@127.0.0.1" });
  assertThrows(() => resolveParameters(f, ["ptime=30"]), ConfigError, 'parameter "to" is required');
  assertThrows(
    () => resolveParameters(f, ["to=x", "ptime=fast"]),
    ConfigError,
    '--set ptime: expected a number, got "fast"',
  );
  const e = assertThrows(() => resolveParameters(f, ["to=x", "bogus=1"]), ConfigError);
  assertMatch(e.message, /--set bogus: no such parameter; parameters: file, ptime, loud, to/);
});

Deno.test("substitution keeps types for whole references and interpolates inside strings", () => {
  const f = parsePipelineConfig(base, "/p/f.json");
  const out = substitute(f.pipelines.main, { file: "a.wav", ptime: 40 }, { path: "pipelines.main" });
  assertEquals(out[0].path, "a.wav");
  assertEquals(out[1].ptime, 40);
  assertEquals(out[1].label, "at 40 ms");
  assertEquals(substitute("cost $${x} and ${y}", { y: 1 }, { path: "" }), "cost ${x} and 1");
  const e = assertThrows(
    () => substitute(f.pipelines.main, { file: "a" }, { file: "f.json", path: "pipelines.main" }),
    ConfigError,
  );
  assertEquals(
    e.message.split(" (known")[0],
    'f.json: pipelines.main[1].ptime: unknown variable ${ptime}: declare it under "parameters"',
  );
});

Deno.test("a compiled template fills like substitute, left to right, with the path of each reference", () => {
  const value = {
    a: ["${x}", "at ${x}-${y} ms", "$${x} ${y} $${z}$${", 7, null, true],
    b: { c: "${y}", d: "plain" },
  };
  const fill = compileTemplate(value, "pipelines.p");
  const asked: string[] = [];
  const lookup = (name: string, path: string) => {
    asked.push(`${name}@${path}`);
    return name === "x" ? 5 : "why";
  };
  const out = fill(lookup);
  assertEquals(out, { a: [5, "at 5-why ms", "${x} why ${z}${", 7, null, true], b: { c: "why", d: "plain" } });
  assertEquals(out, substitute(value, { x: 5, y: "why" }, { path: "pipelines.p" }));
  assertEquals(asked, [
    "x@pipelines.p.a[0]",
    "x@pipelines.p.a[1]",
    "y@pipelines.p.a[1]",
    "y@pipelines.p.a[2]",
    "y@pipelines.p.b.c",
  ]);
  const again = fill(lookup);
  assertEquals(again, out);
  assertEquals(again.a !== out.a && again.b !== out.b, true, "each fill is a fresh copy");
});

Deno.test("config errors name the file, the JSON path and the problem", () => {
  const cases: [unknown, RegExp][] = [
    [[], /^f\.json: expected a JSON object/],
    [{ pipelines: { main: [] } }, /^f\.json: pipelines\.main: expected a non-empty array of stages/],
    [{ pipelines: { main: [{ path: "x" }] } }, /^f\.json: pipelines\.main\[0\]: missing "use"/],
    [
      { pipelines: { main: [{ use: 5 }] } },
      /^f\.json: pipelines\.main\[0\]\.use: "use" must be .*a non-empty string\), got 5/,
    ],
    [{ pipeline: {} }, /^f\.json: pipeline: unknown top-level key "pipeline"/],
    [
      { parameters: { a: { default: [1] } }, pipelines: { m: [{ use: "x" }] } },
      /parameters\.a\.default: a default must be/,
    ],
    [{ pipelines: { m: [{ use: "x" }] }, control: { role: "caller" } }, /^f\.json: control: expected \{"use"/],
  ];
  for (const [json, re] of cases) {
    const e = assertThrows(() => parsePipelineConfig(json, "/x/f.json", "f.json"), ConfigError);
    assertMatch(e.message, re);
  }
  const f = parsePipelineConfig({ pipelines: { m: [{ use: "a", path: "${nope}" }] } }, "/x/f.json", "f.json");
  assertThrows(() => checkVariables(f), ConfigError, "pipelines.m[0].path: unknown variable ${nope}");
  checkVariables(parsePipelineConfig({ pipelines: { m: [{ use: "a", to: "${remote.rtp}" }] } }, "/x/f.json"), [
    "remote.rtp",
  ]);
});

Deno.test("loading a file: missing file and bad JSON give the path and the reason", async () => {
  const dir = await Deno.makeTempDir();
  await assertRejects(
    () => loadPipelineFile(`${dir}/none.json`),
    ConfigError,
    "cannot read pipeline file: no such file",
  );
  await Deno.writeTextFile(`${dir}/bad.json`, "{ pipelines: ");
  const e = await assertRejects(() => loadPipelineFile(`${dir}/bad.json`), ConfigError);
  assertMatch(e.message, /bad\.json: not valid JSON at line 1, column 3: unexpected 'p': expected a property name/);
  // Line and column, and what to do, for the mistakes people make in JSON by hand.
  const cases: [string, RegExp][] = [
    ['{\n  "a": [1, 2,]\n}', /line 2, column 14: trailing comma before \]: remove it/],
    ['{\n  "a": 1,\n}', /line 3, column 1: trailing comma before \}/],
    ['{\n  "a": 1\n  "b": 2\n}', /line 3, column 3: .*expected ',' or '\}' after a property \(a comma is missing\?\)/],
    ['{\n  // note\n  "a": 1\n}', /line 2, column 3: comments are not allowed in JSON/],
    ["{\n  'a': 1\n}", /line 2, column 3: .*property name in double quotes/],
    ['{ "a": "open\n', /line 1, column 8: unterminated string/],
    ['{ "a": 1 }\n}', /line 2, column 1: unexpected '\}' after the end of the JSON value/],
    ['{ "a": ', /unexpected end of the file/],
  ];
  for (const [text, re] of cases) {
    await Deno.writeTextFile(`${dir}/bad.json`, text);
    const err = await assertRejects(() => loadPipelineFile(`${dir}/bad.json`), ConfigError);
    assertMatch(err.message, re, text);
  }
  await Deno.remove(dir, { recursive: true });
});

Deno.test("loading a file: a leading UTF-8 byte order mark is skipped; an error after it still has line and column", async () => {
  const dir = await Deno.makeTempDir();
  const bom = [0xef, 0xbb, 0xbf];
  const bytes = (text: string) => new Uint8Array([...bom, ...new TextEncoder().encode(text)]);
  await Deno.writeFile(
    `${dir}/bom.json`,
    bytes('{"pipelines": {"a": [{"use": "tone-source"}, {"use": "null-sink"}]}}'),
  );
  const f = await loadPipelineFile(`${dir}/bom.json`);
  assertEquals(Object.keys(f.pipelines), ["a"]);
  await Deno.writeFile(`${dir}/bom.json`, bytes('{\n  "pipelines": {,}\n}'));
  const e = await assertRejects(() => loadPipelineFile(`${dir}/bom.json`), ConfigError);
  assertMatch(e.message, /bom\.json: not valid JSON at line 2, column 17: unexpected ','/);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("loading a file: a chain name given twice is refused with the line and column of both (JSON keeps the last)", async () => {
  const dir = await Deno.makeTempDir();
  const chain = '[{"use": "tone-source"}, {"use": "null-sink"}]';
  await Deno.writeTextFile(
    `${dir}/dup.json`,
    `{\n  "pipelines": {\n    "a": ${chain},\n    "b": ${chain},\n    "a": ${chain}\n  }\n}\n`,
  );
  const e = await assertRejects(() => loadPipelineFile(`${dir}/dup.json`), ConfigError);
  assertMatch(e.message, /dup\.json: line 5, column 5: chain name "a" appears twice \(first at line 3\)/);
  // The same key elsewhere (two stages with one option each, a chain name in "when") is not a chain name.
  await Deno.writeTextFile(
    `${dir}/ok.json`,
    `{"pipelines": {"a": ${chain}, "b": [{"use": "tone-source", "a": 1}, {"use": "null-sink"}]}, "when": {"a": "1"}}`,
  );
  assertEquals(Object.keys((await loadPipelineFile(`${dir}/ok.json`)).pipelines), ["a", "b"]);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("logger: levels, tags, fields, one line per event", () => {
  const out = new MemoryOutput();
  const log = new Logger({ level: "info", outputs: [out] });
  const sip = log.child("SIP", { call: "a1" });
  sip.debug("hidden");
  sip.info("INVITE sent to sip:bob@127.0.0.1:5062", { note: "two words" });
  log.level = "debug";
  sip.debug("now visible\nsecond line");
  assertEquals(out.lines.length, 2);
  assertMatch(
    out.lines[0],
    /^\d{4}-\d\d-\d\dT\S+Z INFO {2}\[SIP\] INVITE sent to sip:bob@127\.0\.0\.1:5062 call=a1 note="two words"$/,
  );
  assertMatch(out.lines[1], /DEBUG \[SIP\] now visible\\nsecond line call=a1$/);
});

Deno.test("untrusted text never becomes a path", () => {
  for (const bad of ["../../etc/passwd", "/abs", "a/b\\c", "..", ".", "", "x".repeat(300), "é@ü"]) {
    const s = sanitizeFileComponent(bad);
    assertMatch(s, /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/);
  }
  assertEquals(sanitizeFileComponent("abc123@127.0.0.1") !== sanitizeFileComponent("abc123_127.0.0.1"), true);
  assertEquals(sanitizeFileComponent("plain-id_1.2"), "plain-id_1.2");
});

Deno.test("a parameter may reference control variables, expanded per call; network values are not re-expanded", async () => {
  const { PipelineRunner } = await import("../core/runner.ts");
  const { Registry } = await import("../core/registry.ts");
  const { defineControl } = await import("../core/control.ts");
  const { z } = await import("zod");
  const registry = new Registry([], [
    defineControl({
      name: "fake",
      kind: "control",
      description: "",
      variables: { "call.id": "id", "remote.user": "user" },
      options: z.object({}),
      create: () => ({ run: () => Promise.resolve({ code: 0 }) }),
    }),
  ]);
  const file = parsePipelineConfig({
    parameters: { record: { default: "out/call-${call.id}.wav" } },
    control: { use: "fake" },
    pipelines: { rx: [{ use: "x", path: "${record}", who: "${remote.user}" }] },
  }, "/p/f.json");
  const runner = new PipelineRunner(file, { registry });
  const v = runner.variables({ "call.id": "abc", "remote.user": "${record}" });
  assertEquals(v.record, "out/call-abc.wav");
  assertEquals(substitute(file.pipelines.rx, v, { path: "p" })[0].who, "${record}");
});

Deno.test("logger: the python format is [LEVEL] - local time - message (WARNING for warn)", () => {
  const out = new MemoryOutput();
  const log = new Logger({ level: "info", outputs: [out], format: "python" }).child("SIP", { call: "a1" });
  log.warn("no ACK");
  log.info("ok");
  assertMatch(out.lines[0], /^\[WARNING\] - \d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} - \[SIP\] no ACK call=a1$/);
  assertMatch(out.lines[1], /^\[INFO\] - .* - \[SIP\] ok call=a1$/);
  // Local time, as Python's asctime.
  const d = new Date();
  assertEquals(
    out.lines[1].slice(9, 19),
    `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, "0")}-${String(d.getDate()).padStart(2, "0")}`,
  );
});

Deno.test("when: chains built only when their conditions hold (set, ==, !=, all of a list); errors name the path", async () => {
  const { PipelineRunner } = await import("../core/runner.ts");
  const { createRegistry } = await import("../mod.ts");
  const { conditionHolds } = await import("../core/config.ts");
  const w = { path: "when.x" };
  assertEquals(conditionHolds("${a}", { a: "x.wav" }, w), true);
  for (const off of ["", "0", "false", "No", "off", 0, false]) {
    assertEquals(conditionHolds("${a}", { a: off }, w), false);
  }
  assertEquals(conditionHolds("${m} == stereo", { m: "stereo" }, w), true);
  assertEquals(conditionHolds("${m}==stereo", { m: "mixed" }, w), false);
  assertEquals(conditionHolds("${m} != stereo", { m: "mixed" }, w), true);
  // A value that contains the operator compares nothing: the operator is read from the condition as written.
  assertEquals(conditionHolds("${a}", { a: "x == y" }, w), true);
  const chain = [{ use: "tone-source", duration: 0.01 }, { use: "null-sink" }];
  const file = parsePipelineConfig({
    parameters: { greeting: { default: "" }, mode: { default: "caller" } },
    pipelines: { always: chain, greeting: chain, stereo: chain, caller: chain },
    when: { greeting: "${greeting}", stereo: ["${greeting}", "${mode} == stereo"], caller: "${mode} == caller" },
  }, "/p/f.json");
  const registry = createRegistry();
  assertEquals(new PipelineRunner(file, { registry }).chainsFor(), ["always", "caller"]);
  assertEquals(new PipelineRunner(file, { registry, set: ["greeting=g.wav"] }).chainsFor(), [
    "always",
    "greeting",
    "caller",
  ]);
  assertEquals(
    new PipelineRunner(file, { registry, set: ["greeting=g.wav", "mode=stereo"] }).chainsFor(),
    ["always", "greeting", "stereo"],
  );
  // Per call: the call's variables count.
  assertEquals(new PipelineRunner(file, { registry }).chainsFor({ greeting: "hi.wav" }), [
    "always",
    "greeting",
    "caller",
  ]);
  // --check lists the chains left out; a run builds only the others.
  const report = await new PipelineRunner(file, { registry }).check();
  assertEquals(report.chains.map((c) => c.name), ["always", "caller"]);
  assertEquals(report.skipped, ["greeting", "stereo"]);
  assertThrows(
    () => parsePipelineConfig({ pipelines: { a: chain }, when: { b: "${x}" } }, "/p/f.json", "f.json"),
    ConfigError,
    'f.json: when.b: no chain named "b" (chains: a)',
  );
  assertThrows(
    () => parsePipelineConfig({ pipelines: { a: chain }, when: { a: 3 } }, "/p/f.json", "f.json"),
    ConfigError,
    "when.a: expected a condition string",
  );
  // Conditions name declared variables like the rest of the file.
  assertThrows(
    () => checkVariables(parsePipelineConfig({ pipelines: { a: chain }, when: { a: "${nope}" } }, "/p/f.json")),
    ConfigError,
    "unknown variable ${nope}",
  );
});
