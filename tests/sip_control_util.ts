/**
 * The `sip` control plugin on a memory network and a virtual clock, as the call-service tests and the auth-scope tests
 * run it: the pipeline file written to `dir`, its chains built by a `PipelineRunner`, the control created as the CLI
 * creates it.
 *
 * @module
 */
import { codecs } from "./registry_util.ts";
import { VirtualClock } from "../core/clock.ts";
import type { Controller } from "../core/control.ts";
import { Logger, MemoryOutput } from "../core/log.ts";
import { MemoryNetwork } from "../core/net/memory.ts";
import { createRegistry, PipelineRunner } from "../mod.ts";
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
    buildPipeline: (t, v, n, s) => runner.build(t, v, n, s),
  });
  return { clock, net, out, controller, abort };
}
