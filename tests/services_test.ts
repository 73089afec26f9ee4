/**
 * A pipeline file's `services` run beside its control plugin, on the calls it
 * offers (core/calls.ts): started after the controller, given its call
 * service, closed when the run ends; checked by --check; refused with a clear
 * error when the control plugin offers no calls or a name is wrong.
 */
import { assert, assertEquals, assertMatch, assertRejects } from "./assert.ts";
import { z } from "zod";
import { VirtualClock } from "../core/clock.ts";
import type { CallInfo, CallService } from "../core/calls.ts";
import { defineControl, defineService } from "../core/control.ts";
import { ConfigError } from "../core/errors.ts";
import { PipelineRunner } from "../core/runner.ts";
import { createRegistry } from "../mod.ts";
import { settleUntil } from "./util.ts";

const calls: CallInfo[] = [{
  id: "c1",
  direction: "in",
  state: "answered",
  remote: "sip:alice@10.0.0.1",
  local: "sip:bob@10.0.0.2",
  startedAt: 0,
}];

/** A call service with one call that answers hangup by ending it. */
function fakeService(log: string[]): CallService {
  return {
    calls: () => calls,
    call: (id) => calls.find((c) => c.id === id),
    dial: () => Promise.reject(new Error("no dialing here")),
    answer: () => Promise.resolve(),
    reject: () => Promise.resolve(),
    hangup: (id) => {
      log.push(`hangup ${id}`);
      return Promise.resolve();
    },
    sendDtmf: () => Promise.resolve(),
    onIncoming: () => () => {},
    onEvent: () => () => {},
    session: () => undefined,
  };
}

function registryWith(log: string[], withCalls = true) {
  const registry = createRegistry();
  registry.registerControl(defineControl({
    name: "fake-calls",
    kind: "control",
    description: "a control plugin with one call",
    variables: {},
    options: z.object({}),
    create: (_o, ctx) => ({
      ...(withCalls ? { calls: fakeService(log) } : {}),
      run: async () => {
        log.push("control runs");
        await ctx.clock.sleep(10);
        log.push("control done");
        return { code: 0 };
      },
    }),
  }));
  registry.registerService(defineService({
    name: "hangup-all",
    kind: "service",
    description: "hangs up every call at start",
    options: z.object({ greeting: z.string().default("hi") }),
    async create(o, ctx) {
      log.push(`service starts: ${o.greeting}, file ${ctx.file.endsWith("svc.json")}`);
      for (const c of ctx.calls.calls()) await ctx.calls.hangup(c.id);
      return {
        address: "test://here",
        close: () => {
          log.push("service closed");
          return Promise.resolve();
        },
      };
    },
  }));
  return registry;
}

async function fileWith(json: unknown): Promise<string> {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/svc.json`;
  await Deno.writeTextFile(path, JSON.stringify(json));
  return path;
}

Deno.test("services: started on the control plugin's calls after it is created, closed when the run ends", async () => {
  const log: string[] = [];
  const path = await fileWith({
    parameters: { hello: { default: "hello" } },
    control: { use: "fake-calls" },
    services: [{ use: "hangup-all", greeting: "${hello}" }],
    pipelines: {},
  });
  const clock = new VirtualClock();
  const runner = await PipelineRunner.load(path, { registry: registryWith(log), clock });
  let ended = false;
  const run = runner.run().finally(() => ended = true);
  // The clock moves once the run's start (real work: the file's modules, templates, services) has set the control's
  // 10 ms sleep, never ahead of it.
  await settleUntil(clock, () => ended, "the run");
  assertEquals((await run).code, 0);
  assertEquals(log, [
    "service starts: hello, file true",
    "hangup c1",
    "control runs",
    "control done",
    "service closed",
  ]);
  const report = await runner.check();
  assertEquals(report.services, [{ use: "hangup-all", options: { greeting: "hello" } }]);
});

Deno.test("services: clear errors for a control plugin without calls, a wrong name, a wrong option, no control", async () => {
  const log: string[] = [];
  const noCalls = await fileWith({ control: { use: "fake-calls" }, services: [{ use: "hangup-all" }], pipelines: {} });
  const r1 = await PipelineRunner.load(noCalls, { registry: registryWith(log, false), clock: new VirtualClock() });
  const e1 = await assertRejects(() => r1.run(), ConfigError);
  assertMatch(e1.message, /"fake-calls" offers no calls to services/);
  assert(!log.includes("control runs"), "nothing ran");

  const typo = await fileWith({ control: { use: "fake-calls" }, services: [{ use: "hangup-al" }], pipelines: {} });
  const r2 = await PipelineRunner.load(typo, { registry: registryWith(log), clock: new VirtualClock() });
  const e2 = await assertRejects(() => r2.run(), ConfigError);
  assertMatch(e2.message, /services\[0\]\.use: unknown service plugin "hangup-al" \(did you mean "hangup-all"\?\)/);

  const bad = await fileWith({
    control: { use: "fake-calls" },
    services: [{ use: "hangup-all", greting: 1 }],
    pipelines: {},
  });
  const r3 = await PipelineRunner.load(bad, { registry: registryWith(log), clock: new VirtualClock() });
  const e3 = await assertRejects(() => r3.check(), ConfigError);
  assertMatch(e3.message, /services\[0\].*greting/);

  const none = await fileWith({
    services: [{ use: "hangup-all" }],
    pipelines: { main: [{ use: "tone-source" }, { use: "null-sink" }] },
  });
  const e4 = await assertRejects(
    () => PipelineRunner.load(none, { registry: registryWith(log), clock: new VirtualClock() }),
    ConfigError,
  );
  assertMatch(e4.message, /services run on the calls of a control plugin: add a "control" section/);
});
