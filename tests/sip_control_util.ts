/**
 * The `sip` control plugin on a memory network and a virtual clock, as the call-service tests and the auth-scope tests
 * run it: the pipeline file written to `dir`, its chains built by a `PipelineRunner`, the control created as the CLI
 * creates it.
 *
 * @module
 */
import { codecs } from "./registry_util.ts";
import { VirtualClock } from "../core/clock.ts";
import type { Controller, ControlResult } from "../core/control.ts";
import { Logger, MemoryOutput } from "../core/log.ts";
import { MemoryNetwork } from "../core/net/memory.ts";
import { createRegistry, PipelineRunner } from "../mod.ts";
import type { Pipeline } from "../core/pipeline.ts";
import { sipControl } from "../plugins/sip/control.ts";

/** A pipeline file of the sip control: its control section and its chain templates (and parameters). */
export interface SipControlFile {
  parameters?: Record<string, unknown>;
  control: { use: string } & Record<string, unknown>;
  pipelines: Record<string, unknown>;
}

/** What {@linkcode startSipControl} made: the clock, the network, the log lines, the controller and its abort. */
export interface SipControlRig {
  clock: VirtualClock;
  net: MemoryNetwork;
  out: MemoryOutput;
  controller: Controller;
  abort: AbortController;
  /**
   * Runs the controller and resolves once it listens (or has ended), the clock standing still: its start (templates,
   * socket) is real work.
   */
  run(): Promise<{ result: Promise<ControlResult> }>;
  /**
   * Lets `ms` of virtual time pass in 10 ms steps; after each, while a call's chain is being built or started (real
   * work: modules, files, sockets), waits for it in real time (at most 30 s), the clock standing still, so that what
   * a test sees after `ms` does not depend on how fast the machine does that work.
   */
  advance(ms: number): Promise<void>;
}

/**
 * Writes `cfg` to `file` (in `dir`, the pipeline's base directory) and creates its sip control on a new memory network
 * (1 ms latency) and virtual clock, logging at info into `out`; `prepare` binds other parties on the network first.
 * The controller is not run.
 */
export async function startSipControl(
  dir: string,
  file: string,
  cfg: SipControlFile,
  prepare?: (net: MemoryNetwork, clock: VirtualClock) => void,
): Promise<SipControlRig> {
  await Deno.writeTextFile(file, JSON.stringify(cfg));
  const clock = new VirtualClock();
  const net = new MemoryNetwork({ clock, latencyMs: 1 });
  prepare?.(net, clock);
  const out = new MemoryOutput();
  const log = new Logger({ level: "info", outputs: [out] });
  const runner = await PipelineRunner.load(file, { registry: createRegistry(), clock, net, log });
  // The chains being built, and those built and not yet started.
  let building = 0;
  const built = new Set<Pipeline>();
  const starting = () => {
    for (const p of built) {
      if (p.state === "ended" || p.state === "stopping") built.delete(p);
    }
    return building > 0 || built.size > 0;
  };
  const buildPipeline = async (...a: Parameters<PipelineRunner["build"]>) => {
    building++;
    try {
      const p = await runner.build(...a);
      built.add(p);
      p.on("started", () => built.delete(p));
      return p;
    } finally {
      building--;
    }
  };
  const waitReal = async (until: () => boolean, what: string) => {
    for (let i = 0; i < 3000 && !until(); i++) await new Promise((r) => setTimeout(r, 10));
    if (!until()) throw new Error(`${what}: not within 30 s of real time`);
  };
  const { use: _, ...raw } = cfg.control;
  const abort = new AbortController();
  const controller = await sipControl.create(sipControl.options.parse(raw), {
    log,
    clock,
    signal: abort.signal,
    file,
    baseDir: dir,
    params: runner.params,
    templates: Object.keys(cfg.pipelines),
    net,
    codecs,
    buildPipeline,
  });
  return {
    clock,
    net,
    out,
    controller,
    abort,
    async run() {
      let ended = false;
      const run = controller.run().finally(() => ended = true);
      await waitReal(
        () => ended || out.lines.some((l) => l.includes("[SIP] listening on udp")),
        "the sip control listening",
      );
      return { result: run };
    },
    async advance(ms: number) {
      for (let t = 0; t < ms; t += 10) {
        await clock.advanceAsync(Math.min(10, ms - t), 10);
        await waitReal(() => !starting(), "the calls' chains starting");
      }
    },
  };
}
