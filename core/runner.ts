/**
 * Runs a pipeline file: either every chain at once (no control section), or a
 * control plugin that builds chains from the templates per session.
 *
 * @module
 */
import { type Clock, mediaClock } from "./clock.ts";
import {
  builtinVariables,
  checkVariables,
  loadPipelineFile,
  type PipelineFile,
  resolveParameters,
  substitute,
  type Variables,
} from "./config.ts";
import type { ControlContext } from "./control.ts";
import { ConfigError, formatZodIssues } from "./errors.ts";
import { type Logger, silentLogger } from "./log.ts";
import type { Network } from "./net/datagram.ts";
import { udpNetwork } from "./net/udp.ts";
import { buildPipeline, type Pipeline, type PipelineResult, strictSchema } from "./pipeline.ts";
import { isModuleReference, type Registry } from "./registry.ts";
import { Session } from "./session.ts";

/** Options for {@linkcode runPipelineFile} and {@linkcode PipelineRunner}. */
export interface RunOptions {
  /** Plugin registry. */
  registry: Registry;
  /** `name=value` parameter settings. */
  set?: string[];
  /** Logger (default: silent). */
  log?: Logger;
  /** Media clock (default: the process clock). */
  clock?: Clock;
  /** Network sockets are bound on (default: real UDP; tests pass a MemoryNetwork). */
  net?: Network;
  /** Stops the run when aborted. */
  signal?: AbortSignal;
  /** Receives protocol message traces from the control plugin (`--sip-trace`); none when undefined. */
  trace?: (text: string) => void;
}

/** The outcome of running a file. */
export interface RunResult {
  /** Process exit code: 0 success, non-zero failure. */
  code: number;
  /** Results of each chain, when run without a control plugin. */
  results?: Record<string, PipelineResult>;
  /** A one-line reason on failure. */
  reason?: string;
}

/** A loaded pipeline file ready to build chains from, with its parameters resolved. */
export class PipelineRunner {
  /** The file. */
  readonly file: PipelineFile;
  /** Parameter values. */
  readonly params: Variables;
  readonly #opts: RunOptions;

  /**
   * Resolves the parameters of a loaded file and checks its variables.
   * @param file loaded pipeline file
   * @param opts run options
   */
  constructor(file: PipelineFile, opts: RunOptions) {
    this.file = file;
    this.#opts = opts;
    this.params = { ...builtinVariables(file), ...resolveParameters(file, opts.set) };
    const provided = file.control
      ? Object.keys(
        opts.registry.control(file.control.use, {
          file: file.path,
          path: "control.use",
        }).variables,
      )
      : [];
    checkVariables(file, provided);
  }

  /**
   * The variables a chain is built with: the parameters plus `vars` (from a
   * control plugin). A parameter value may itself reference control variables
   * and built-ins (e.g. `record=out/call-${call.id}.wav`); those are expanded
   * once. Values in `vars` (which may carry text from the network) are never
   * expanded themselves.
   */
  variables(vars: Variables = {}): Variables {
    const inner: Variables = { ...builtinVariables(this.file), ...vars };
    const out: Variables = { ...vars };
    for (const [k, v] of Object.entries(this.params)) {
      out[k] = typeof v === "string" && v.includes("${")
        ? substitute(v, inner, { file: this.file.path, path: `parameters.${k}` })
        : v;
    }
    return { ...out, ...vars };
  }

  /** Loads a pipeline file and resolves its parameters. */
  static async load(path: string, opts: RunOptions): Promise<PipelineRunner> {
    return new PipelineRunner(await loadPipelineFile(path), opts);
  }

  /**
   * Builds the chain `template` with the parameters plus `vars`, in `session`
   * (default: a session of its own, closed when the chain ends).
   */
  build(template: string, vars: Variables = {}, name = template, session?: Session): Promise<Pipeline> {
    const chain = this.file.pipelines[template];
    if (!chain) {
      throw new ConfigError(
        `no chain named "${template}" (chains: ${Object.keys(this.file.pipelines).join(", ")})`,
        { file: this.file.path, path: "pipelines" },
      );
    }
    const jsonPath = `pipelines.${template}`;
    const resolved = substitute(chain, this.variables(vars), { file: this.file.path, path: jsonPath });
    return buildPipeline(name, resolved, {
      registry: this.#opts.registry,
      session,
      clock: this.#opts.clock ?? mediaClock(),
      log: this.#opts.log ?? silentLogger,
      baseDir: this.file.dir,
      file: this.file.path,
      jsonPath,
    });
  }

  /** Runs the file to completion. */
  async run(): Promise<RunResult> {
    await this.#loadModules();
    return this.file.control ? await this.#runControl() : await this.#runAll();
  }

  /**
   * Loads the plugin modules the chains name by path before anything is built, so that the codecs they register
   * are known to every stage of every chain and to the control plugin (e.g. a codec's decoder loaded by path at
   * the end of a receive chain, whose depacketizer names that codec).
   */
  async #loadModules(): Promise<void> {
    for (const [name, chain] of Object.entries(this.file.pipelines)) {
      for (let i = 0; i < chain.length; i++) {
        const use = chain[i]?.use;
        if (typeof use !== "string" || use.includes("${") || !isModuleReference(use)) continue;
        await this.#opts.registry.resolve(use, this.file.dir, {
          file: this.file.path,
          path: `pipelines.${name}[${i}].use`,
        });
      }
    }
  }

  async #runAll(): Promise<RunResult> {
    const log = (this.#opts.log ?? silentLogger).child("PIPELINE");
    // One session for the file: its chains share sockets and an RTCP session (e.g. rtp-send's RTP and RTCP).
    const session = new Session({
      id: this.file.path,
      clock: this.#opts.clock ?? mediaClock(),
      log: this.#opts.log,
      net: this.#opts.net ?? udpNetwork,
    });
    const pipelines: Pipeline[] = [];
    try {
      for (const name of Object.keys(this.file.pipelines)) pipelines.push(await this.build(name, {}, name, session));
    } catch (e) {
      for (const p of pipelines) await p.stop();
      await session.close();
      throw e;
    }
    const onAbort = () => pipelines.forEach((p) => p.stop());
    this.#opts.signal?.addEventListener("abort", onAbort, { once: true });
    if (this.#opts.signal?.aborted) onAbort();
    try {
      for (const p of pipelines) {
        log.info(`pipeline "${p.name}" started: ${p.labels.join(" → ")}`);
        p.start();
      }
      const results: Record<string, PipelineResult> = {};
      for (const p of pipelines) {
        const r = await p.done;
        results[p.name] = r;
        if (r.reason === "error") {
          log.error(r.error!.message);
          // One chain failing stops the others.
          pipelines.forEach((q) => q.stop());
        } else {
          log.info(`pipeline "${p.name}" ended (${r.reason})`, summarize(r));
        }
      }
      const failed = Object.values(results).find((r) => r.reason === "error");
      return failed ? { code: 1, results, reason: failed.error!.message } : { code: 0, results };
    } finally {
      this.#opts.signal?.removeEventListener("abort", onAbort);
      await session.close();
    }
  }

  async #runControl(): Promise<RunResult> {
    const file = this.file;
    const control = file.control!;
    const def = this.#opts.registry.control(control.use, { file: file.path, path: "control.use" });
    const raw: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(control)) if (k !== "use") raw[k] = v;
    const values = substitute(raw, this.params, { file: file.path, path: "control" });
    const parsed = strictSchema(def.options).safeParse(values, { reportInput: true });
    if (!parsed.success) throw new ConfigError(formatZodIssues(parsed.error, "control"), { file: file.path });
    const abort = new AbortController();
    const onAbort = () => abort.abort(this.#opts.signal?.reason);
    this.#opts.signal?.addEventListener("abort", onAbort, { once: true });
    if (this.#opts.signal?.aborted) onAbort();
    const ctx: ControlContext = {
      log: this.#opts.log ?? silentLogger,
      clock: this.#opts.clock ?? mediaClock(),
      signal: abort.signal,
      file: file.path,
      baseDir: file.dir,
      params: this.params,
      templates: Object.keys(file.pipelines),
      net: this.#opts.net ?? udpNetwork,
      codecs: this.#opts.registry.codecs,
      trace: this.#opts.trace,
      buildPipeline: (template, vars, name, session) => this.build(template, vars, name, session),
    };
    try {
      const controller = await def.create(parsed.data, ctx);
      return await controller.run();
    } finally {
      this.#opts.signal?.removeEventListener("abort", onAbort);
    }
  }
}

function summarize(r: PipelineResult): Record<string, number> {
  const first = r.stats[0];
  const last = r.stats[r.stats.length - 1];
  return { frames_in: first?.framesOut ?? 0, frames_out: last?.framesIn ?? 0 };
}

/** Loads and runs a pipeline file. */
export async function runPipelineFile(path: string, opts: RunOptions): Promise<RunResult> {
  const runner = await PipelineRunner.load(path, opts);
  return await runner.run();
}
