/**
 * Runs a pipeline file: either every chain at once (no control section), or a
 * control plugin that builds chains from the templates per session.
 *
 * @module
 */
import { isAbsolute, resolve as resolvePath } from "./path.ts";
import type { ChainCheck, CheckReport } from "./check.ts";
import { type Clock, mediaClock, VirtualClock } from "./clock.ts";
import {
  builtinVariables,
  checkVariables,
  type CompiledTemplate,
  compileTemplate,
  conditionHolds,
  loadPipelineFile,
  lookupIn,
  type PipelineFile,
  resolveParameters,
  substitute,
  unknownVariable,
  type VariableLookup,
  type Variables,
} from "./config.ts";
import type { CallService } from "./calls.ts";
import type { AnyControlPlugin, AnyServicePlugin, ControlContext, Controller, Service } from "./control.ts";
import { ConfigError, stackLocation } from "./errors.ts";
import { type Logger, silentLogger } from "./log.ts";
import type { Network } from "./net/datagram.ts";
import type { OptionsSchema } from "./options.ts";
import { MemoryNetwork } from "./net/memory.ts";
import { udpNetwork } from "./net/udp.ts";
import {
  buildPipeline,
  type Pipeline,
  type PipelineResult,
  type StageConfig,
  StageError,
  strictSchema,
} from "./pipeline.ts";
import { isModuleReference, type Registry } from "./registry.ts";
import { Session } from "./session.ts";
import { type ChainConfig, checkBusGraph } from "./bus_graph.ts";
import { sameFile } from "./paths.ts";
import { StartGate } from "./start_gate.ts";
import { type AnyPlugin, FormatError } from "./stage.ts";
import { describeOptionErrors, pathOptionKeys } from "./_options_doc.ts";

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

/** A value compiled for filling, kept with the value it was compiled from. */
interface Compiled<T> {
  source: T;
  fill: CompiledTemplate<T>;
}

/**
 * The compiled form of `source`, kept in `cache` under `key`: compiled again when the value there was compiled from
 * another source (a chain or parameter replaced since; one is not expected to change in place).
 */
function compiledIn<T>(cache: Map<string, Compiled<T>>, key: string, source: T, path: string): CompiledTemplate<T> {
  let c = cache.get(key);
  if (c?.source !== source) {
    c = { source, fill: compileTemplate(source, path) };
    cache.set(key, c);
  }
  return c.fill;
}

/** A loaded pipeline file ready to build chains from, with its parameters resolved. */
export class PipelineRunner {
  /** The file. */
  readonly file: PipelineFile;
  /**
   * Parameter values (and the built-ins `pipeline.dir`, `cwd`). Once the runner has prepared (`run()`, `check()`,
   * `build()`), a `--set` value given for a parameter that starts a path option is absolute: resolved against the
   * working directory, as the command line's user meant it (see `pathOption()`).
   */
  readonly params: Variables;
  readonly #opts: RunOptions;
  #prepared: Promise<void> | undefined;
  /** Plugins loaded from modules, by the `use` that names them. */
  readonly #modules = new Map<string, AnyPlugin>();
  /** The control plugin's calls, once {@linkcode run} created it. */
  readonly #calls = Promise.withResolvers<CallService>();
  /** The file's chains compiled for filling with a call's variables, by template name (see `compiledIn`). */
  readonly #templates = new Map<string, Compiled<StageConfig[]>>();
  /** Parameters whose values reference variables, compiled, by name (see `compiledIn`). */
  readonly #parameterTemplates = new Map<string, Compiled<string>>();

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
    const lookup = this.#lookup(vars);
    const out: Variables = {};
    for (const k of Object.keys(this.params)) out[k] = lookup(k, `parameters.${k}`);
    return { ...out, ...vars };
  }

  /**
   * Looks a variable up without making them all ({@linkcode variables} makes them all with it): `vars` first, then the
   * parameters, a parameter that references variables expanded (once per lookup function) when it is looked up.
   */
  #lookup(vars: Variables): VariableLookup {
    let inner: VariableLookup | undefined;
    let expanded: Map<string, string | number | boolean> | undefined;
    return (name, path) => {
      if (Object.hasOwn(vars, name)) return vars[name];
      if (!Object.hasOwn(this.params, name)) {
        throw unknownVariable(name, new Set([...Object.keys(this.params), ...Object.keys(vars)]), {
          file: this.file.path,
          path,
        });
      }
      const v = this.params[name];
      if (typeof v !== "string" || !v.includes("${")) return v;
      const done = expanded?.get(name);
      if (done !== undefined) return done;
      inner ??= lookupIn(this.#innerVariables(vars), this.file.path);
      const value = compiledIn(this.#parameterTemplates, name, v, `parameters.${name}`)(inner);
      (expanded ??= new Map()).set(name, value);
      return value;
    };
  }

  /**
   * What parameter values are expanded with: the built-ins and `vars`. `cwd` (a system call) is read only when a
   * parameter names it; otherwise it is there with no value (listed in an unknown-variable error, never used).
   */
  #innerVariables(vars: Variables): Variables {
    let cwd = "";
    for (const v of Object.values(this.params)) {
      if (typeof v === "string" && v.includes("${cwd}")) {
        cwd = Deno.cwd();
        break;
      }
    }
    return { "pipeline.dir": this.file.dir, cwd, ...vars };
  }

  /**
   * The chains to build with `vars` (a call's variables, for a file with a control section): every chain of the
   * file, in file order, except those whose `when` conditions do not all hold.
   */
  chainsFor(vars: Variables = {}): string[] {
    const when = this.file.when;
    const names = Object.keys(this.file.pipelines);
    if (!when) return names;
    const all = this.variables(vars);
    return names.filter((name) =>
      (when[name] ?? []).every((c, i) =>
        conditionHolds(c, all, { file: this.file.path, path: `when.${name}${when[name].length > 1 ? `[${i}]` : ""}` })
      )
    );
  }

  /**
   * The calls of the file's control plugin (dial, answer, events: see core/calls.ts), for a library user: resolves
   * once {@linkcode run} has created the controller (before it listens: a dial waits until it does); rejects when
   * the file has no control section, its plugin offers no calls, or the run failed before.
   *
   * @example
   * ```ts
   * const runner = await PipelineRunner.load("pipelines/server.json", { registry: createRegistry() });
   * const done = runner.run();
   * const calls = await runner.callService();
   * const call = await calls.dial("sip:bob@127.0.0.1:5062");
   * ```
   */
  callService(): Promise<CallService> {
    return this.#calls.promise;
  }

  /** Loads a pipeline file and resolves its parameters. */
  static async load(path: string, opts: RunOptions): Promise<PipelineRunner> {
    return new PipelineRunner(await loadPipelineFile(path), opts);
  }

  /**
   * Builds the chain `template` with the parameters plus `vars`, in `session`
   * (default: a session of its own, closed when the chain ends).
   */
  async build(template: string, vars: Variables = {}, name = template, session?: Session): Promise<Pipeline> {
    await this.#prepare();
    const p = await this.#build(template, vars, name, session, false);
    p.on("error", (ev) => this.#logLocation(ev.detail));
    return p;
  }

  #build(template: string, vars: Variables, name: string, session: Session | undefined, checking: boolean) {
    const chain = this.file.pipelines[template];
    if (!chain) {
      throw new ConfigError(
        `no chain named "${template}" (chains: ${Object.keys(this.file.pipelines).join(", ")})`,
        { file: this.file.path, path: "pipelines" },
      );
    }
    const jsonPath = `pipelines.${template}`;
    const resolved = compiledIn(this.#templates, template, chain, jsonPath)(this.#lookup(vars));
    return buildPipeline(name, resolved, {
      registry: this.#opts.registry,
      session,
      clock: session?.clock ?? this.#opts.clock ?? mediaClock(),
      log: this.#opts.log ?? silentLogger,
      baseDir: this.file.dir,
      file: this.file.path,
      jsonPath,
      checking,
      // A file with a control section builds its chains for calls: each runs at its call's pace, its greetings and
      // recordings (fed through a bus) included, and shares the event loop with the other calls.
      ...(this.file.control ? { realtime: true } : {}),
    });
  }

  /** What is refused before anything is built: a bus graph that would wait forever, a sink over a source's file. */
  #refuseBeforeBuild(chains: ChainConfig[]): void {
    this.#checkGraph(chains);
    this.#checkSameFiles(chains);
  }

  /** The chains `names` with the parameters plus `vars` filled in. */
  #resolvedChains(names: string[], vars: Variables): ChainConfig[] {
    const lookup = this.#lookup(vars);
    return names.map((name) => ({
      name,
      stages: compiledIn(this.#templates, name, this.file.pipelines[name], `pipelines.${name}`)(lookup),
    }));
  }

  /**
   * Refuses, before anything is built, what would leave the chains of a file without a control section waiting
   * forever: a bus read but never published on, or chains feeding each other in a circle (see `checkBusGraph`).
   * Not for a file with a control section (its calls' buses are published by the control plugin and services too),
   * nor when a stage is a plugin loaded from a module (it may publish on a bus itself).
   */
  #checkGraph(chains: ChainConfig[]): void {
    if (this.file.control) return;
    let userPlugin = false;
    const walk = (v: unknown) => {
      if (Array.isArray(v)) v.forEach(walk);
      else if (v && typeof v === "object") {
        const use = (v as Record<string, unknown>).use;
        if (typeof use === "string" && isModuleReference(use)) userPlugin = true;
        Object.values(v).forEach(walk);
      }
    };
    for (const c of chains) walk(c.stages);
    if (!userPlugin) checkBusGraph(chains, this.file.path);
  }

  /**
   * Refuses a sink that would write the file a source of the same chains reads (`--set file=x.wav --set out=x.wav`):
   * a sink opens its file for writing before the source has read it, so the input would be destroyed. Paths are
   * compared once resolved (symbolic links followed; an existing file also by device and inode).
   */
  #checkSameFiles(chains: ChainConfig[]): void {
    const files: { role: "source" | "sink"; use: string; file: string; path: string }[] = [];
    const walk = (v: unknown, p: string) => {
      if (Array.isArray(v)) v.forEach((x, i) => walk(x, `${p}[${i}]`));
      else if (v && typeof v === "object") {
        const o = v as Record<string, unknown>;
        const plugin = typeof o.use === "string"
          ? this.#modules.get(o.use) ?? this.#opts.registry.get(o.use)
          : undefined;
        if (plugin && (plugin.kind === "source" || plugin.kind === "sink")) {
          for (const key of pathOptionKeys(plugin.options)) {
            const value = o[key];
            if (typeof value !== "string" || !value || /^[A-Za-z][A-Za-z0-9+.-]+:/.test(value)) continue;
            files.push({
              role: plugin.kind,
              use: plugin.name,
              file: resolvePath(this.file.dir, value),
              path: `${p}.${key}`,
            });
          }
        }
        for (const [k, x] of Object.entries(o)) walk(x, `${p}.${k}`);
      }
    };
    for (const c of chains) walk(c.stages, `pipelines.${c.name}`);
    for (const sink of files.filter((f) => f.role === "sink")) {
      const source = files.find((f) => f.role === "source" && sameFile(f.file, sink.file));
      if (!source) continue;
      throw new ConfigError(
        `${sink.use} would write ${sink.file}, the file ${source.use} reads (${source.path}: ${source.file}): ` +
          "writing it would destroy the input. Write the output to another file",
        { file: this.file.path, path: sink.path },
      );
    }
  }

  /** Runs the file to completion. */
  async run(): Promise<RunResult> {
    try {
      await this.#prepare();
      if (!this.file.control) {
        this.#noCalls(`${this.file.path} has no control section: it places and answers no calls`);
        return await this.#runAll();
      }
      return await this.#runControl();
    } catch (e) {
      this.#noCalls(`the run failed before its control plugin was created: ${e instanceof Error ? e.message : e}`);
      this.#logLocation(e);
      throw e;
    }
  }

  /** callService() rejects with `why` (unless it already resolved). */
  #noCalls(why: string): void {
    this.#calls.promise.catch(() => {});
    this.#calls.reject(new Error(why));
  }

  /**
   * Checks the file completely without running it: every chain is built (for a file with a control section, every
   * template, with the example values its control plugin gives for what a call fills in), in a throw-away session on
   * an in-memory network, with `StageContext.checking` set, so no socket is bound, no device stream opened and no
   * file written; the control plugin is created (which validates its options) but not run. Throws the first error
   * (a `ConfigError` naming the file and JSON path); otherwise reports what would run.
   */
  async check(): Promise<CheckReport> {
    await this.#prepare();
    const parameters: Variables = {};
    for (const k of Object.keys(this.file.parameters)) parameters[k] = this.params[k];
    const report: CheckReport = {
      file: this.file.path,
      ...(this.file.description ? { description: this.file.description } : {}),
      parameters,
      chains: [],
      warnings: [],
    };
    const skip = () => {
      const built = new Set(report.chains.map((c) => c.name));
      const skipped = Object.keys(this.file.pipelines).filter((n) => !built.has(n));
      if (skipped.length) report.skipped = skipped;
    };
    if (!this.file.control) {
      report.chains = await this.#checkChains({});
      skip();
      return report;
    }
    const { def, options } = this.#controlOptions();
    const check = this.#checkNetwork();
    await this.#createController(
      def,
      options,
      this.#controlContext(new AbortController().signal, check.net, true, check.clock),
    );
    const checked = await this.#checkTemplates(def, options);
    report.control = {
      use: def.name,
      options: options as Record<string, unknown>,
      ...(checked ? { examples: checked.examples } : {}),
    };
    const services = this.#serviceOptions();
    if (services.length) {
      report.services = services.map(({ def, options }) => ({
        use: def.name,
        options: options as Record<string, unknown>,
      }));
    }
    if (checked) {
      report.chains = checked.chains;
      report.warnings = checked.warnings;
      skip();
    }
    return report;
  }

  /** Loads plugin modules and resolves `--set` path values, once. */
  #prepare(): Promise<void> {
    this.#prepared ??= (async () => {
      await this.#loadModules();
      this.#resolveSetPaths();
    })();
    return this.#prepared;
  }

  /** Every stage entry of the file (nested ones too, e.g. a sequence's items) with a fixed `use`, and its JSON path. */
  #stageEntries(): { entry: Record<string, unknown>; use: string; path: string }[] {
    const out: { entry: Record<string, unknown>; use: string; path: string }[] = [];
    const walk = (v: unknown, p: string) => {
      if (Array.isArray(v)) v.forEach((x, i) => walk(x, `${p}[${i}]`));
      else if (v && typeof v === "object") {
        const o = v as Record<string, unknown>;
        if (typeof o.use === "string" && o.use && !o.use.includes("${")) out.push({ entry: o, use: o.use, path: p });
        for (const [k, x] of Object.entries(o)) walk(x, `${p}.${k}`);
      }
    };
    for (const [name, chain] of Object.entries(this.file.pipelines)) walk(chain, `pipelines.${name}`);
    return out;
  }

  /**
   * Loads the plugin modules the chains name by path before anything is built, so that the codecs they register
   * are known to every stage of every chain and to the control plugin (e.g. a codec's decoder loaded by path at
   * the end of a receive chain, whose depacketizer names that codec).
   */
  async #loadModules(): Promise<void> {
    for (const { use, path } of this.#stageEntries()) {
      if (!isModuleReference(use) || this.#modules.has(use)) continue;
      const plugin = await this.#opts.registry.resolve(use, this.file.dir, {
        file: this.file.path,
        path: `${path}.use`,
      });
      this.#modules.set(use, plugin);
    }
  }

  /**
   * Paths in a pipeline file are relative to the file's directory (stages resolve them against `ctx.baseDir`), but
   * a value given on the command line is relative to the working directory, where its user stands: a `--set` value
   * for a parameter that starts a path option (`"path": "${file}"`, `"${out_dir}/x.wav"`) is made absolute here.
   */
  #resolveSetPaths(): void {
    const set = new Set((this.#opts.set ?? []).map((s) => s.slice(0, s.indexOf("="))).filter((n) => n));
    if (set.size === 0) return;
    const pathParams = new Set<string>();
    const entries: { entry: Record<string, unknown>; options: OptionsSchema }[] = [];
    for (const { entry, use } of this.#stageEntries()) {
      const plugin = this.#modules.get(use) ?? this.#opts.registry.get(use);
      if (plugin) entries.push({ entry, options: plugin.options });
    }
    for (const entry of this.file.services ?? []) {
      const plugin = this.#opts.registry.listServices().find((s) => s.name === entry.use);
      if (plugin) entries.push({ entry, options: plugin.options });
    }
    for (const { entry, options } of entries) {
      for (const key of pathOptionKeys(options)) {
        const m = typeof entry[key] === "string" ? /^\$\{([A-Za-z_][A-Za-z0-9_.]*)\}/.exec(entry[key] as string) : null;
        if (m && m[1] in this.file.parameters) pathParams.add(m[1]);
      }
    }
    const cwd = Deno.cwd();
    for (const name of pathParams) {
      const v = this.params[name];
      if (!set.has(name) || typeof v !== "string" || !v || isAbsolute(v) || v.startsWith("${")) continue;
      if (/^[A-Za-z][A-Za-z0-9+.-]+:/.test(v)) continue; // a URL
      this.params[name] = resolvePath(cwd, v);
    }
  }

  /** A network and clock for checking: nothing bound on them is real, no timer on them fires. */
  #checkNetwork(): { net: MemoryNetwork; clock: VirtualClock } {
    const clock = new VirtualClock();
    return { net: new MemoryNetwork({ clock }), clock };
  }

  /**
   * Builds every chain with `vars` for checking, in one throw-away session on an in-memory network; releases them
   * (nothing was started) and returns what each would run.
   */
  async #checkChains(vars: Variables): Promise<ChainCheck[]> {
    const { net, clock } = this.#checkNetwork();
    const session = new Session({ id: `check ${this.file.path}`, clock, net, log: silentLogger });
    const built: Pipeline[] = [];
    try {
      this.#refuseBeforeBuild(this.#resolvedChains(this.chainsFor(vars), vars));
      for (const name of this.chainsFor(vars)) {
        try {
          built.push(await this.#build(name, vars, name, session, true));
        } catch (e) {
          if (e instanceof FormatError) {
            throw new ConfigError(e.message, { file: this.file.path, path: `pipelines.${name}` }, e);
          }
          throw e;
        }
      }
      return built.map((p) => ({ name: p.name, realtimeSink: p.realtimeSink, stages: p.plan() }));
    } finally {
      for (const p of built) await p.stop();
      await session.close();
    }
  }

  /** The control section's plugin and its options, validated (a `ConfigError` naming each problem otherwise). */
  #controlOptions(): { def: AnyControlPlugin; options: unknown } {
    const file = this.file;
    const control = file.control!;
    const def = this.#opts.registry.control(control.use, { file: file.path, path: "control.use" });
    const raw: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(control)) if (k !== "use") raw[k] = v;
    const values = substitute(raw, this.params, { file: file.path, path: "control" });
    const parsed = strictSchema(def.options).safeParse(values, { reportInput: true });
    if (!parsed.success) {
      throw new ConfigError(describeOptionErrors(parsed.error, "control", def), { file: file.path });
    }
    return { def, options: parsed.data };
  }

  /** The `services` section: each service plugin with its options validated (defaults filled in). */
  #serviceOptions(): { def: AnyServicePlugin; options: unknown; path: string }[] {
    const file = this.file;
    return (file.services ?? []).map((entry, i) => {
      const path = `services[${i}]`;
      const def = this.#opts.registry.service(entry.use, { file: file.path, path: `${path}.use` });
      const raw: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(entry)) if (k !== "use") raw[k] = v;
      const values = substitute(raw, this.params, { file: file.path, path });
      const parsed = strictSchema(def.options).safeParse(values, { reportInput: true });
      if (!parsed.success) {
        throw new ConfigError(describeOptionErrors(parsed.error, path, def), { file: file.path });
      }
      return { def, options: parsed.data, path };
    });
  }

  /** Starts the file's services on the controller's calls; they stop with `signal`. */
  async #startServices(controller: Controller, signal: AbortSignal): Promise<Service[]> {
    const entries = this.#serviceOptions();
    if (entries.length === 0) return [];
    const file = this.file;
    const calls = controller.calls;
    if (!calls) {
      throw new ConfigError(
        `the control plugin "${file.control!.use}" offers no calls to services: remove the "services" section`,
        { file: file.path, path: "services" },
      );
    }
    const log = this.#opts.log ?? silentLogger;
    const started: Service[] = [];
    try {
      for (const { def, options, path } of entries) {
        let service: Service;
        try {
          service = await def.create(options, {
            log,
            clock: this.#opts.clock ?? mediaClock(),
            signal,
            file: file.path,
            baseDir: file.dir,
            params: this.params,
            calls,
            net: this.#opts.net ?? udpNetwork,
          });
        } catch (e) {
          if (e instanceof ConfigError) throw e;
          throw new ConfigError(`${def.name}: ${e instanceof Error ? e.message : e}`, { file: file.path, path }, e);
        }
        started.push(service);
        if (!service.off) {
          log.child("SERVICE").info(`${def.name} started${service.address ? ` at ${service.address}` : ""}`);
        }
      }
    } catch (e) {
      await Promise.allSettled(started.map((s) => s.close()));
      throw e;
    }
    return started;
  }

  /** The control plugin's example calls, each checked to cover every variable it declares. */
  #examples(def: AnyControlPlugin, options: unknown): Variables[] | undefined {
    if (!def.exampleVariables) return undefined;
    const given = def.exampleVariables(options, { codecs: this.#opts.registry.codecs });
    const list = Array.isArray(given) ? given : [given];
    for (const ex of list) {
      const missing = Object.keys(def.variables).filter((k) => !(k in ex));
      if (missing.length) {
        throw new Error(
          `control plugin "${def.name}" gives no example value for ${missing.map((k) => `\${${k}}`).join(", ")}: ` +
            "its exampleVariables() must cover every variable it declares",
        );
      }
    }
    return list.length ? list : undefined;
  }

  /**
   * Builds the templates with each of the control plugin's example calls. Throws the first example's error when
   * none builds; an example that fails while another builds becomes a warning. Undefined when the plugin gives none.
   */
  async #checkTemplates(
    def: AnyControlPlugin,
    options: unknown,
  ): Promise<{ examples: Variables; chains: ChainCheck[]; warnings: string[] } | undefined> {
    const examples = this.#examples(def, options);
    if (!examples) return undefined;
    const failures: { example: Variables; error: unknown }[] = [];
    let ok: { examples: Variables; chains: ChainCheck[] } | undefined;
    for (const example of examples) {
      try {
        const chains = await this.#checkChains(example);
        ok ??= { examples: example, chains };
      } catch (error) {
        failures.push({ example, error });
      }
    }
    if (!ok) throw failures[0].error;
    const differs = (ex: Variables) =>
      Object.entries(ex).filter(([k, v]) => ok!.examples[k] !== v).map(([k, v]) => `${k}=${v}`).join(", ");
    const warnings = failures.map(({ example, error }) =>
      `a call with ${differs(example) || "other values"} would fail: ${error instanceof Error ? error.message : error}`
    );
    return { ...ok, warnings };
  }

  #controlContext(signal: AbortSignal, net: Network, checking: boolean, clock?: Clock): ControlContext {
    const file = this.file;
    return {
      log: checking ? silentLogger : this.#opts.log ?? silentLogger,
      clock: clock ?? this.#opts.clock ?? mediaClock(),
      signal,
      file: file.path,
      baseDir: file.dir,
      params: this.params,
      templates: Object.keys(file.pipelines),
      templatesFor: (vars) => this.chainsFor(vars),
      net,
      codecs: this.#opts.registry.codecs,
      ...(checking ? {} : { trace: this.#opts.trace }),
      buildPipeline: (template, vars, name, session) =>
        checking
          ? this.#build(template, vars, name ?? template, session, true)
          : this.build(template, vars, name, session),
    };
  }

  /** Creates the controller; an error it throws (options that do not fit the file) names the file. */
  async #createController(def: AnyControlPlugin, options: unknown, ctx: ControlContext): Promise<Controller> {
    try {
      return await def.create(options, ctx);
    } catch (e) {
      if (e instanceof ConfigError) throw e;
      throw new ConfigError(`${def.name}: ${e instanceof Error ? e.message : e}`, { file: this.file.path }, e);
    }
  }

  /** At `--log-level debug`: where an error was thrown, outside voxpipe's core. */
  #logLocation(e: unknown): void {
    const log = this.#opts.log;
    if (!log) return;
    const at = stackLocation(e);
    const message = e instanceof Error ? e.message : String(e);
    if (at) log.child("PIPELINE").debug(`thrown at ${at}: ${message}`);
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
      this.#refuseBeforeBuild(this.#resolvedChains(this.chainsFor(), {}));
      for (const name of this.chainsFor()) pipelines.push(await this.build(name, {}, name, session));
    } catch (e) {
      for (const p of pipelines) await p.stop();
      await session.close();
      throw e;
    }
    const onAbort = () => pipelines.forEach((p) => p.stop());
    this.#opts.signal?.addEventListener("abort", onAbort, { once: true });
    if (this.#opts.signal?.aborted) onAbort();
    try {
      // Chains fed from files start their paced sinks' timelines together, once every one has filled its queue
      // (StartGate): the first chain's first packets then do not wait for the other chains' start-up work.
      const gate = pipelines.filter((p) => !p.liveSource).length >= 2 ? new StartGate(session.clock) : undefined;
      for (const p of pipelines) {
        log.info(`pipeline "${p.name}" started: ${p.labels.join(" → ")}`);
        p.start(gate ? { gate } : {});
      }
      gate?.seal();
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
      return failed ? { code: 1, results, reason: reasonOf(failed.error!) } : { code: 0, results };
    } finally {
      this.#opts.signal?.removeEventListener("abort", onAbort);
      await session.close();
    }
  }

  async #runControl(): Promise<RunResult> {
    const { def, options } = this.#controlOptions();
    const abort = new AbortController();
    const onAbort = () => abort.abort(this.#opts.signal?.reason);
    this.#opts.signal?.addEventListener("abort", onAbort, { once: true });
    if (this.#opts.signal?.aborted) onAbort();
    let services: Service[] = [];
    try {
      const controller = await this.#createController(
        def,
        options,
        this.#controlContext(abort.signal, this.#opts.net ?? udpNetwork, false),
      );
      if (controller.calls) this.#calls.resolve(controller.calls);
      else this.#noCalls(`the control plugin "${def.name}" offers no calls`);
      // Every template, built now with example call values: a mistake in one fails here, before the first call.
      const checked = await this.#checkTemplates(def, options);
      if (checked) {
        const log = (this.#opts.log ?? silentLogger).child("PIPELINE");
        log.debug(`chain templates checked with example call values: ${checked.chains.map((c) => c.name).join(", ")}`);
        for (const w of checked.warnings) log.warn(w);
      }
      services = await this.#startServices(controller, abort.signal);
      return await controller.run();
    } finally {
      this.#opts.signal?.removeEventListener("abort", onAbort);
      await Promise.allSettled(services.map((s) => s.close()));
    }
  }
}

/** The message of a failure, with where a user plugin threw it. */
function reasonOf(e: Error): string {
  const at = e instanceof StageError ? e.location : undefined;
  return at ? `${e.message} (at ${at})` : e.message;
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
