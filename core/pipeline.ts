/**
 * The pipeline runner: builds a chain of stages from config, checks every link's
 * formats before any audio flows, runs transforms as synchronous pushes, keeps
 * asynchrony at sources and sinks, honours backpressure, propagates end of
 * stream and errors, stops cleanly, and keeps per-stage counters.
 *
 * @example
 * ```ts
 * const p = await buildPipeline("main", [
 *   { use: "tone-source", duration: 1 },
 *   { use: "null-sink" },
 * ], { registry });
 * const result = await p.run();
 * ```
 *
 * @module
 */
import { z } from "zod";
import { type Clock, mediaClock, type Timer } from "./clock.ts";
import { type Format, formatMismatch, formatToString, type Frame } from "./frame.ts";
import { type Logger, silentLogger } from "./log.ts";
import { Session } from "./session.ts";
import type { StartGate } from "./start_gate.ts";
import {
  type AnyPlugin,
  type Emit,
  FormatError,
  type PluginResolver,
  type RunContext,
  type SinkStage,
  type SourceStage,
  type Stage,
  type StageConfig,
  type StageContext,
  type StageKind,
  type SubStage,
  type TransformStage,
} from "./stage.ts";
import { ConfigError, stackLocation } from "./errors.ts";
import { describeOptionErrors } from "./_options_doc.ts";
import type { OptionsSchema } from "./options.ts";
import { describeFormats, stageConfigText } from "./format_check.ts";

export type { StageConfig } from "./stage.ts";

/** Options for {@linkcode buildPipeline}. */
export interface BuildOptions {
  /** Where plugins are looked up: a {@linkcode Registry} (any {@linkcode PluginResolver}). */
  registry: PluginResolver;
  /**
   * The session the chain runs in (a call's sockets, port pair, RTCP, events
   * and statistics). Default: a session of its own, closed when the pipeline
   * ends.
   */
  session?: Session;
  /** Media clock (default: the session's, else the process-wide real-time clock). */
  clock?: Clock;
  /** Logger (default: silent). */
  log?: Logger;
  /**
   * Directory relative paths in the chain resolve against: plugin modules named in `use`, and the file options of
   * its stages (`ctx.baseDir`). A pipeline file's runner passes the file's directory. Default: the working directory.
   */
  baseDir?: string;
  /** Config file the chain came from, for error messages. */
  file?: string;
  /** JSON path of the chain in the config file, for error messages (default `pipelines.<name>`). */
  jsonPath?: string;
  /**
   * Build the chain only to check it (`StageContext.checking`): it will never be started. Give it a session on an
   * in-memory network (a `MemoryNetwork`), so that what its stages bind is not a real socket.
   */
  checking?: boolean;
  /**
   * The chain runs at the pace of real time whatever its plugins declare: a chain of a call, fed by or feeding the
   * call's real-time chains through a bus (a greeting, a recording). Its stages' contexts then say so
   * (`StageContext.realtime`). A pipeline file's runner passes it for the chains of a file with a control section.
   * Default: a chain is real-time when one of its plugins declares `realtime`.
   */
  realtime?: boolean;
}

/** Counters the runner keeps for every stage. */
export interface StageStats {
  /** Stage index in the chain. */
  index: number;
  /** Label (config `name`, else plugin name). */
  label: string;
  /** Plugin name. */
  use: string;
  /** Frames received from upstream. */
  framesIn: number;
  /** Frames passed downstream. */
  framesOut: number;
  /** Errors raised by the stage. */
  errors: number;
  /** Stage-specific statistics. */
  extra?: Record<string, unknown>;
}

/** Options of {@linkcode Pipeline.start} and {@linkcode Pipeline.run}. */
export interface StartOptions {
  /**
   * Start together with the other chains started with this gate: the chain's paced sinks fill their queues, then
   * start their timelines at the time the gate opens. Ignored by a chain fed by a live source.
   */
  gate?: StartGate;
}

/** How a pipeline run ended. */
export interface PipelineResult {
  /** `eos`: the source ended; `stopped`: stop() was called; `error`: a stage failed. */
  reason: "eos" | "stopped" | "error";
  /** The error when reason is `error`. */
  error?: Error;
  /** Final per-stage statistics. */
  stats: StageStats[];
}

/** One stage of a built chain as {@linkcode Pipeline.plan} describes it. */
export interface StagePlan {
  /** Index in the chain. */
  index: number;
  /** Label (config `name`, else plugin name). */
  label: string;
  /** Plugin name. */
  use: string;
  /** Source, transform or sink. */
  kind: StageKind;
  /** The format it takes (negotiated), for transforms and sinks. */
  input?: Format;
  /** The format it produces (negotiated), for sources and transforms. */
  output?: Format;
  /** The plugin runs against real time. */
  realtime?: boolean;
  /** What the stage says it will do (`StageBase.plan`). */
  note?: string;
}

/** The state of a pipeline. */
export type PipelineState = "built" | "running" | "stopping" | "ended";

/** An error raised by a stage at run time, naming the stage and its index. */
export class StageError extends Error {
  /** Pipeline name. */
  readonly pipeline: string;
  /** Stage index. */
  readonly index: number;
  /** Stage label. */
  readonly label: string;
  /**
   * Where the cause was thrown when that is outside voxpipe (a user plugin's code), as `path:line:column`; the
   * runner adds it to the reason it reports. See {@linkcode stackLocation} for the first frame outside voxpipe's
   * core, whoever threw.
   */
  readonly location?: string;
  /**
   * Creates the error.
   * @param pipeline pipeline name
   * @param index stage index
   * @param label stage label
   * @param cause the original error
   */
  constructor(pipeline: string, index: number, label: string, cause: unknown) {
    const msg = cause instanceof Error ? cause.message : String(cause);
    const location = stackLocation(cause, { outside: "voxpipe" });
    super(`pipeline "${pipeline}", stage ${index} (${label}): ${msg}`, { cause });
    this.name = "StageError";
    this.pipeline = pipeline;
    this.index = index;
    this.label = label;
    if (location) this.location = location;
  }
}

/** A pipeline event. */
export interface PipelineEvent {
  /** Event type: `started`, `ended`, `error`, or a stage event such as `timeout` or `rtcp`. */
  type: string;
  /** Pipeline name. */
  pipeline: string;
  /** Label of the stage that raised it (stage events). */
  stage?: string;
  /** Event payload. */
  detail?: unknown;
}

/** Listener of pipeline events. */
export type PipelineListener = (event: PipelineEvent) => void;

interface Slot {
  index: number;
  label: string;
  use: string;
  plugin: AnyPlugin;
  stage: Stage;
  input?: Format;
  output?: Format;
  framesIn: number;
  framesOut: number;
  errors: number;
  ctx: StageContext;
}

const SPECIAL_KEYS = new Set(["use", "name"]);

/**
 * The abort reasons of {@linkcode Pipeline.stop} and {@linkcode Pipeline.end}, made once: a DOMException captures a
 * stack trace when created, which every call's teardown paid for, and says nothing a shared one does not.
 */
const STOPPED = new DOMException("pipeline stopped", "AbortError");
const ENDED = new DOMException("pipeline ended", "AbortError");
const NOT_DRAINED = new DOMException("pipeline stopped: it did not drain in time", "AbortError");

const strictCache = new WeakMap<z.ZodType, z.ZodType>();

/** The schema with unknown keys refused (a typo in an option name must not pass silently). */
export function strictSchema(schema: OptionsSchema): OptionsSchema {
  let s = strictCache.get(schema);
  if (!s) {
    s = schema instanceof z.ZodObject ? schema.strict() : schema;
    strictCache.set(schema, s);
  }
  return s;
}

/**
 * Builds a pipeline: resolves plugins, validates options with their schemas,
 * creates the stages and negotiates formats along the chain. Throws a
 * {@linkcode ConfigError} naming the file, JSON path and problem, or a
 * {@linkcode FormatError} naming both stages and both formats.
 */
export async function buildPipeline(name: string, config: StageConfig[], opts: BuildOptions): Promise<Pipeline> {
  const jsonPath = opts.jsonPath ?? `pipelines.${name}`;
  const baseDir = opts.baseDir ?? Deno.cwd();
  const where = (suffix: string) => ({ file: opts.file, path: `${jsonPath}${suffix}` });
  if (!Array.isArray(config) || config.length === 0) {
    throw new ConfigError("expected a non-empty array of stages", where(""));
  }
  if (config.length < 2) {
    throw new ConfigError("a pipeline needs at least a source and a sink", where(""));
  }
  const log = opts.log ?? silentLogger;
  const clock = opts.session?.clock ?? opts.clock ?? mediaClock();
  const session = opts.session ?? new Session({ id: name, clock, log });
  const pipeline = internals.create(name, clock, log, session, opts.session === undefined);
  const slots: Slot[] = [];
  try {
    const env: BuildEnv = { pipeline, registry: opts.registry, baseDir, file: opts.file, checking: opts.checking };
    // A chain with a real-time stage moves at the clock's pace (StageContext.realtime): known from the plugins'
    // declarations (or the caller's word) before any stage is created, so that a stage may read it in `create`.
    env.realtime = opts.realtime === true || await declaresRealtime(config, env);
    for (let i = 0; i < config.length; i++) {
      const expected = i === 0 ? "source" : i === config.length - 1 ? "sink" : "transform";
      const pos = i === 0 ? "first" : i === config.length - 1 ? "last" : "middle";
      const { plugin, stage, label, ctx } = await createStage(
        env,
        config[i],
        i,
        `${jsonPath}[${i}]`,
        expected,
        (p) => `"${p.name}" is a ${p.kind}, but the ${pos} stage of a chain must be a ${expected}`,
      );
      slots.push({
        index: i,
        label,
        use: plugin.name,
        plugin,
        stage,
        framesIn: 0,
        framesOut: 0,
        errors: 0,
        ctx,
      });
    }
    // A stage whose next stage borrows its input, or passes it through to a stage that may reuse its own, may reuse
    // the memory of its frames (StageContext.reuseOutput): decided from the sink back.
    for (let i = slots.length - 2; i >= 0; i--) {
      const next = slots[i + 1];
      if (
        next.plugin.borrowsInput === true || (next.plugin.passesInputThrough === true && next.ctx.reuseOutput === true)
      ) {
        (slots[i].ctx as { reuseOutput?: boolean }).reuseOutput = true;
      }
    }
    negotiate(slots, name, opts.registry);
  } catch (e) {
    // Release what was created before the failure.
    await internals.abandon(pipeline, slots);
    throw e;
  }
  internals.init(pipeline, slots);
  return pipeline;
}

/**
 * Whether a plugin of the chain `config` declares {@linkcode PluginDefinition.realtime}. An entry whose plugin does not
 * resolve counts as not real-time here: building it fails next, with its own error, in its turn.
 */
async function declaresRealtime(config: unknown[], env: BuildEnv): Promise<boolean> {
  for (const entry of config) {
    const use = typeof entry === "object" && entry !== null ? (entry as { use?: unknown }).use : undefined;
    if (typeof use !== "string" || use === "") continue;
    try {
      if ((await env.registry.resolve(use, env.baseDir, { file: env.file })).realtime === true) return true;
    } catch { /* reported when the stage is built */ }
  }
  return false;
}

/** Config errors raised while building a sub-stage (they already name their location). */
const subStageErrors = new WeakSet<Error>();

/** What building a stage needs: the pipeline it belongs to, where plugins come from, the file for errors. */
interface BuildEnv {
  pipeline: Pipeline;
  registry: PluginResolver;
  /** Directory relative plugin paths in `use` and file options resolve against. */
  baseDir: string;
  file?: string;
  /** Built only to be checked. */
  checking?: boolean;
  /** The chain is real-time: a stage of it, or the caller, says so (see `StageContext.realtime`). */
  realtime?: boolean;
}

/**
 * Resolves, validates and creates one stage from its config entry, at JSON path `path`: for the chain's own stages
 * and for sub-stages ({@linkcode StageContext.buildStage}). `kindProblem` says what is wrong when the plugin is not a
 * `kind`; `labelPrefix` prefixes the label of a sub-stage with its owner's.
 */
async function createStage(
  env: BuildEnv,
  entry: unknown,
  index: number,
  path: string,
  kind: StageKind | undefined,
  kindProblem: (plugin: AnyPlugin) => string,
  labelPrefix = "",
): Promise<SubStage & { label: string }> {
  const where = (suffix: string) => ({ file: env.file, path: `${path}${suffix}` });
  if (typeof entry !== "object" || entry === null || Array.isArray(entry)) {
    throw new ConfigError('expected a stage object with a "use" field', where(""));
  }
  const e = entry as Record<string, unknown>;
  if (typeof e.use !== "string" || e.use === "") {
    throw new ConfigError('missing "use": name the plugin of this stage', where(""));
  }
  const plugin = await env.registry.resolve(e.use, env.baseDir, where(".use"));
  if (kind && plugin.kind !== kind) throw new ConfigError(kindProblem(plugin), where(".use"));
  const raw: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(e)) if (!SPECIAL_KEYS.has(k)) raw[k] = v;
  const parsed = strictSchema(plugin.options).safeParse(raw, { reportInput: true });
  if (!parsed.success) {
    throw new ConfigError(describeOptionErrors(parsed.error, path, plugin), { file: env.file });
  }
  const label = labelPrefix + (typeof e.name === "string" && e.name ? e.name : plugin.name);
  // A sub-stage's context does not say `realtime` (see StageContext.realtime); the chain's own stages' do.
  const ctx = internals.stageContext(env.pipeline, index, label, path, env, labelPrefix === "");
  let stage: Stage;
  try {
    stage = await plugin.create(parsed.data, ctx);
  } catch (err) {
    // A stage that builds sub-stages passes their errors on: they name their own JSON paths.
    if (err instanceof ConfigError && subStageErrors.has(err)) throw err;
    const msg = err instanceof Error ? err.message : String(err);
    const location = stackLocation(err, { outside: "voxpipe" });
    throw new ConfigError(
      `${msg.startsWith(plugin.name) ? msg : `${plugin.name}: ${msg}`}${location ? ` (at ${location})` : ""}`,
      where(""),
      err,
    );
  }
  return { plugin, stage, ctx, label };
}

function describeStage(s: Slot): string {
  return s.label === s.use ? `${s.use} (stage ${s.index})` : `${s.label} (${s.use}, stage ${s.index})`;
}

/**
 * What to change when `produced` does not fit `accepted` (`field` is the first field that differs): the stage a
 * registered plugin offers to bridge them (see `PluginDefinition.bridges`), else a generic hint. Core names no
 * plugin: a suggestion exists only when a plugin in the registry makes it.
 */
function hintFor(field: string, produced: Format, accepted: Format, registry: PluginResolver): string {
  const bridge = registry.suggestBridge(produced, accepted);
  if (bridge) return `insert ${stageConfigText(bridge)} between them`;
  const none = `no registered plugin converts ${formatToString(produced)} to ${describeFormats([accepted])}`;
  switch (field) {
    case "kind":
      return `connect stages whose formats match (${none})`;
    case "codec":
      return `use the same codec on both (${produced.codec} vs ${accepted.codec})`;
    default:
      return `make the formats match (${none})`;
  }
}

function negotiate(slots: Slot[], name: string, registry: PluginResolver): void {
  let fmt: Format | undefined;
  for (let i = 0; i < slots.length; i++) {
    const s = slots[i];
    if (i > 0) {
      const prev = slots[i - 1];
      if (!fmt) {
        throw new FormatError(
          `pipeline "${name}": ${describeStage(prev)} does not say what it produces, so ${
            describeStage(s)
          } cannot be linked to it`,
        );
      }
      const accepts = s.plugin.accepts;
      if (accepts && accepts.length > 0) {
        const mismatches = accepts.map((a) => formatMismatch(fmt!, a));
        const ok = mismatches.some((m) => m === undefined);
        if (!ok) {
          const best = accepts.findIndex((a) => a.kind === fmt!.kind);
          const acc = accepts[best >= 0 ? best : 0];
          const field = mismatches[best >= 0 ? best : 0]!;
          throw new FormatError(
            `pipeline "${name}": ${describeStage(s)} expects ${accepts.map(formatToString).join(" or ")}, but ${
              describeStage(prev)
            } produces ${formatToString(fmt)}: ${hintFor(field, fmt, acc, registry)}`,
          );
        }
      }
      s.input = fmt;
    }
    try {
      const out = s.stage.negotiate ? s.stage.negotiate(fmt) : s.plugin.produces;
      fmt = out ?? (s.plugin.kind === "sink" ? undefined : s.plugin.produces);
    } catch (e) {
      if (e instanceof FormatError) {
        const prev = i > 0 ? slots[i - 1] : undefined;
        throw new FormatError(
          `pipeline "${name}": ${describeStage(s)}${
            prev && s.input ? ` cannot take ${formatToString(s.input)} from ${describeStage(prev)}` : ""
          }: ${e.message}`,
        );
      }
      throw e;
    }
    s.output = fmt;
  }
}

/** What {@linkcode buildPipeline} alone may do to a pipeline; set by the static block of {@linkcode Pipeline}. */
let internals!: {
  create(name: string, clock: Clock, log: Logger, session: Session, ownsSession: boolean): Pipeline;
  stageContext(
    pipeline: Pipeline,
    index: number,
    label: string,
    path: string,
    env: BuildEnv,
    own: boolean,
  ): StageContext;
  init(pipeline: Pipeline, slots: Slot[]): void;
  abandon(pipeline: Pipeline, slots: Slot[]): Promise<void>;
};

/**
 * A built chain of stages. Run it with {@linkcode Pipeline.run} (or `start()`
 * and await `done`), stop it with {@linkcode Pipeline.stop}, read counters with
 * {@linkcode Pipeline.stats} at any time.
 */
export class Pipeline {
  /** Pipeline name. */
  readonly name: string;
  /** Media clock the stages run on. */
  readonly clock: Clock;
  /** Logger. */
  readonly log: Logger;
  #slots: Slot[] = [];
  #state: PipelineState = "built";
  #abort = new AbortController();
  /**
   * The source's signal: aborted by {@linkcode Pipeline.end} (the source stops, everything downstream drains) and
   * right after {@linkcode #abort} (see {@linkcode #abortAll}), with the reason of whichever came first. A controller of
   * its own rather than `AbortSignal.any` over the two: that costs ~5 µs per pipeline (its weak references to the
   * signals it follows and their clean-up), and a call builds a pipeline per chain.
   */
  #source = new AbortController();
  #sourceSignal = this.#source.signal;
  #grace: Timer | undefined;
  #listeners = new Map<string, Set<PipelineListener>>();
  #pressure = false;
  #error: Error | undefined;
  #stopRequested = false;
  #done: Promise<PipelineResult> | undefined;
  /** The start gate its paced sinks start their timelines at (`start({ gate })`, a chain not fed by a live source). */
  #gate: StartGate | undefined;
  /** The session the stages run in. */
  readonly session: Session;
  readonly #ownsSession: boolean;
  // What #ready() returned while the sink is above its low water: one promise for every caller, settled when the
  // sink's drained() resolves (or the pipeline fails, stops or ends). Its callbacks are made once, not per wait.
  #readyWait: Promise<void> | undefined;
  #readyResolve: (() => void) | undefined;
  readonly #onDrained = (): void => {
    this.#pressure = false;
    this.#wakeDrainWaiters();
  };
  readonly #onDrainFailed = (e: unknown): void => this.#fail(this.#slots.length - 1, e);

  static {
    internals = {
      create: (name, clock, log, session, ownsSession) => new Pipeline(name, clock, log, session, ownsSession),
      stageContext: (pipeline, index, label, path, env, own) => pipeline.#stageContext(index, label, path, env, own),
      init: (pipeline, slots) => {
        pipeline.#slots = slots;
      },
      abandon: (pipeline, slots) => pipeline.#abandon(slots),
    };
  }

  /** Pipelines are made by {@linkcode buildPipeline}. */
  private constructor(name: string, clock: Clock, log: Logger, session: Session, ownsSession: boolean) {
    this.name = name;
    this.clock = clock;
    this.log = log;
    this.session = session;
    this.#ownsSession = ownsSession;
  }

  /** Current state. */
  get state(): PipelineState {
    return this.#state;
  }

  /** Formats negotiated on each link: `formats[i]` is what stage i produces. */
  get formats(): (Format | undefined)[] {
    return this.#slots.map((s) => s.output);
  }

  /**
   * True when the source is a real-time input (a network socket, a microphone):
   * what it already received is worth draining with {@linkcode end} when the
   * pipeline is no longer needed; a file-fed chain is simply stopped.
   */
  get liveSource(): boolean {
    return this.#slots[0]?.plugin.realtime === true;
  }

  /** Stage labels in order. */
  get labels(): string[] {
    return this.#slots.map((s) => s.label);
  }

  /** True when the chain ends in a real-time sink (what `RunContext.realtimeSink` says to its stages). */
  get realtimeSink(): boolean {
    return this.#slots[this.#slots.length - 1]?.plugin.realtime === true;
  }

  /**
   * What the chain will do, stage by stage: plugin, label, negotiated formats, and what each stage says it will
   * do (`StageBase.plan`, e.g. the jitter buffer's mode). For `--check` and logs.
   */
  plan(): StagePlan[] {
    const chain = { realtimeSink: this.realtimeSink };
    return this.#slots.map((s) => {
      let note: string | undefined;
      try {
        note = s.stage.plan?.(chain);
      } catch (e) {
        note = `(plan failed: ${e instanceof Error ? e.message : e})`;
      }
      return {
        index: s.index,
        label: s.label,
        use: s.use,
        kind: s.plugin.kind,
        ...(s.input ? { input: s.input } : {}),
        ...(s.output ? { output: s.output } : {}),
        ...(s.plugin.realtime ? { realtime: true } : {}),
        ...(note ? { note } : {}),
      };
    });
  }

  /** Aborted when the pipeline is asked to stop or fails. */
  get signal(): AbortSignal {
    return this.#abort.signal;
  }

  /**
   * The context of stage `index` (`own`), or of a sub-stage it builds, from config at JSON path `path`: only the
   * chain's own stages' contexts say `realtime`.
   */
  #stageContext(index: number, label: string, path: string, env: BuildEnv, own: boolean): StageContext {
    return {
      pipeline: this.name,
      index,
      label,
      clock: this.clock,
      log: this.log.child(label.toUpperCase(), { pipeline: this.name }),
      baseDir: env.baseDir,
      ...(env.checking ? { checking: true } : {}),
      ...(own && env.realtime ? { realtime: true } : {}),
      signal: index === 0 ? this.#sourceSignal : this.#abort.signal,
      session: this.session,
      codecs: env.registry.codecs,
      suggestBridge: (from, to) => env.registry.suggestBridge(from, to),
      event: (type, detail) => this.#emitEvent({ type, pipeline: this.name, stage: label, detail }),
      buildStage: (config, suffix, kind) =>
        createStage(
          env,
          config,
          index,
          `${path}${suffix}`,
          kind,
          (p) => `"${p.name}" is a ${p.kind}, but ${label} needs a ${kind} here`,
          `${label}/`,
        ).catch((e) => {
          if (e instanceof ConfigError) subStageErrors.add(e);
          throw e;
        }),
    };
  }

  /** Releases stages created before a build failure. */
  async #abandon(slots: Slot[]): Promise<void> {
    for (const s of slots) {
      try {
        await s.stage.close?.();
      } catch { /* already failing */ }
    }
    if (this.#ownsSession) await this.session.close();
  }

  /** Subscribes to events (`started`, `ended`, `error`, or stage events; `*` for all). Returns an unsubscribe function. */
  on(type: string, listener: PipelineListener): () => void {
    let set = this.#listeners.get(type);
    if (!set) this.#listeners.set(type, set = new Set());
    set.add(listener);
    return () => set!.delete(listener);
  }

  #emitEvent(ev: PipelineEvent): void {
    for (const key of [ev.type, "*"]) {
      const set = this.#listeners.get(key);
      if (!set) continue;
      for (const l of [...set]) {
        try {
          l(ev);
        } catch (e) {
          this.log.error(`event listener for "${ev.type}" threw: ${e instanceof Error ? e.message : e}`);
        }
      }
    }
    this.session.emit(ev);
  }

  /** Per-stage counters and stage statistics, readable while running. */
  stats(): StageStats[] {
    return this.#slots.map((s) => {
      let extra: Record<string, unknown> | undefined;
      try {
        extra = s.stage.stats?.();
      } catch { /* stats must never break the caller */ }
      return {
        index: s.index,
        label: s.label,
        use: s.use,
        framesIn: s.framesIn,
        framesOut: s.framesOut,
        errors: s.errors,
        ...(extra ? { extra } : {}),
      };
    });
  }

  /** Sends a control command to the stage with this label or plugin name (e.g. `pause` to a speaker). */
  control(stage: string, command: string, arg?: unknown): unknown {
    const s = this.#slots.find((x) => x.label === stage || x.use === stage);
    if (!s) throw new Error(`pipeline "${this.name}" has no stage "${stage}" (stages: ${this.labels.join(", ")})`);
    if (!s.stage.control) throw new Error(`stage "${s.label}" (${s.use}) accepts no control commands`);
    return s.stage.control(command, arg);
  }

  /** Fails the pipeline with an error attributed to stage `index`. */
  #fail(index: number, error: unknown): void {
    const s = this.#slots[index];
    if (s) s.errors++;
    if (this.#error) return;
    this.#error = error instanceof StageError ? error : new StageError(this.name, index, s?.label ?? "?", error);
    this.#emitEvent({ type: "error", pipeline: this.name, stage: s?.label, detail: this.#error });
    this.#abortAll(this.#error);
    this.#wakeDrainWaiters();
  }

  /** Aborts the pipeline's signal, then the source's (a no-op when {@linkcode end} aborted it before). */
  #abortAll(reason: unknown): void {
    this.#abort.abort(reason);
    this.#source.abort(reason);
  }

  #wakeDrainWaiters(): void {
    const resolve = this.#readyResolve;
    this.#readyWait = this.#readyResolve = undefined;
    resolve?.();
  }

  /** Builds the synchronous emit chain: emits[i] delivers a frame to stage i. */
  #wire(): Emit[] {
    const slots = this.#slots;
    const n = slots.length;
    const emits: Emit[] = new Array(n);
    const sinkSlot = slots[n - 1];
    const sink = sinkSlot.stage as SinkStage;
    const prevOfSink = slots[n - 2];
    emits[n - 1] = (frame: Frame): boolean => {
      prevOfSink.framesOut++;
      sinkSlot.framesIn++;
      if (this.#error) return false;
      try {
        if (sink.write(frame) === false) this.#pressure = true;
      } catch (e) {
        this.#fail(n - 1, e);
        return false;
      }
      return !this.#pressure;
    };
    for (let i = n - 2; i >= 1; i--) {
      const slot = slots[i];
      const prev = slots[i - 1];
      const stage = slot.stage as TransformStage;
      const next = emits[i + 1];
      emits[i] = (frame: Frame): boolean => {
        prev.framesOut++;
        slot.framesIn++;
        if (this.#error) return false;
        try {
          stage.process(frame, next);
        } catch (e) {
          this.#fail(i, e);
          return false;
        }
        return !this.#pressure;
      };
    }
    return emits;
  }

  #runContext(slot: Slot, emit: Emit): RunContext {
    const idx = slot.index;
    return {
      ...slot.ctx,
      emit,
      ready: () => this.#ready(),
      fail: (e) => this.#fail(idx, e),
      realtimeSink: this.#slots[this.#slots.length - 1].plugin.realtime === true,
      stopSignal: this.#abort.signal,
      ...(this.#gate ? { startGate: this.#gate } : {}),
    };
  }

  #ready(): Promise<void> {
    if (!this.#pressure || this.#sourceSignal.aborted) return Promise.resolve();
    const sink = this.#slots[this.#slots.length - 1].stage as SinkStage;
    if (!sink.drained) {
      this.#pressure = false;
      return Promise.resolve();
    }
    if (this.#readyWait) return this.#readyWait;
    const drained = sink.drained(); // a sink that throws here leaves no wait behind
    const { promise, resolve } = Promise.withResolvers<void>();
    this.#readyWait = promise;
    this.#readyResolve = resolve;
    drained.then(this.#onDrained, this.#onDrainFailed);
    return promise;
  }

  /**
   * Starts the pipeline; returns immediately. Await {@linkcode done} for the result. With `opts.gate`, a chain fed
   * from a file (not a live source) starts its paced sinks' timelines when the gate opens (see {@linkcode StartGate}):
   * start every chain with the same gate, then seal it.
   */
  start(opts: StartOptions = {}): Promise<PipelineResult> {
    if (this.#done) return this.#done;
    // A chain fed by a live source sends what comes when it comes: it does not wait for a gate.
    if (opts.gate && !this.liveSource) this.#gate = opts.gate;
    this.#done = this.#run();
    return this.#done;
  }

  /** Resolves when the pipeline has ended (after start()). */
  get done(): Promise<PipelineResult> {
    if (!this.#done) throw new Error(`pipeline "${this.name}" has not been started`);
    return this.#done;
  }

  /** Starts the pipeline (see {@linkcode start}) and waits until it ends. */
  run(opts: StartOptions = {}): Promise<PipelineResult> {
    return this.start(opts);
  }

  /**
   * Asks the pipeline to stop at once: the source stops producing, transforms
   * flush, sinks finalize without waiting (a speaker drops its queue; see
   * {@linkcode end} to let it play out). Resolves with the result once
   * everything has ended.
   */
  stop(): Promise<PipelineResult> {
    if (!this.#done) {
      // Never started: just release resources.
      this.#state = "ended";
      this.#done = this.#closeAll().then(() => ({ reason: "stopped" as const, stats: this.stats() }));
      return this.#done;
    }
    if (this.#state === "running" || (this.#state === "stopping" && !this.#abort.signal.aborted)) {
      this.#state = "stopping";
      this.#stopRequested = true;
      this.#abortAll(STOPPED);
      this.#wakeDrainWaiters();
    }
    return this.#done;
  }

  /**
   * Ends the pipeline gracefully: the source stops producing (as at end of
   * stream), transforms flush what they hold and sinks finish what they were
   * given (a speaker plays its queue out, a recorder writes the jitter buffer's
   * last frames), unlike {@linkcode stop}, which aborts them. If that takes
   * longer than `graceMs` of the pipeline's clock, the pipeline is stopped.
   * Resolves with the result (reason `stopped`) once everything has ended.
   */
  end(graceMs = 2000): Promise<PipelineResult> {
    if (!this.#done) return this.stop();
    if (this.#state === "running") {
      this.#state = "stopping";
      this.#stopRequested = true;
      this.#source.abort(ENDED);
      this.#wakeDrainWaiters();
      this.#grace = this.clock.after(graceMs, () => {
        this.#grace = undefined;
        this.#abortAll(NOT_DRAINED);
        this.#wakeDrainWaiters();
      });
    }
    return this.#done;
  }

  async #closeAll(): Promise<void> {
    for (const s of this.#slots) {
      try {
        await s.stage.close?.();
      } catch (e) {
        s.errors++;
        this.log.warn(`stage ${s.index} (${s.label}) failed to close: ${e instanceof Error ? e.message : e}`);
      }
    }
    if (this.#ownsSession) await this.session.close();
  }

  async #run(): Promise<PipelineResult> {
    const slots = this.#slots;
    const n = slots.length;
    const emits = this.#wire();
    this.#state = "running";
    // Sinks first, source last, so everything downstream is ready for the first frame.
    for (let i = n - 1; i >= 0 && !this.#error; i--) {
      const s = slots[i];
      try {
        if (s.stage.start) await s.stage.start(this.#runContext(s, i + 1 < n ? emits[i + 1] : () => false));
      } catch (e) {
        this.#fail(i, e);
      }
    }
    this.#emitEvent({ type: "started", pipeline: this.name });
    if (!this.#error) {
      const source = slots[0].stage as SourceStage;
      try {
        await source.run(this.#runContext(slots[0], emits[1]));
      } catch (e) {
        if (!(this.#stopRequested && isAbort(e))) this.#fail(0, e);
      }
    }
    // End of stream (or stop, or error): flush transforms, then finalize the sink.
    for (let i = 1; i < n - 1; i++) {
      const t = slots[i].stage as TransformStage;
      if (!t.flush) continue;
      try {
        t.flush(emits[i + 1]);
      } catch (e) {
        this.#fail(i, e);
      }
    }
    const sink = slots[n - 1].stage as SinkStage;
    try {
      await sink.end?.();
    } catch (e) {
      this.#fail(n - 1, e);
    }
    await this.#closeAll();
    this.#grace?.cancel();
    this.#grace = undefined;
    this.#state = "ended";
    const reason = this.#error ? "error" : this.#stopRequested ? "stopped" : "eos";
    const result: PipelineResult = { reason, stats: this.stats(), ...(this.#error ? { error: this.#error } : {}) };
    this.#emitEvent({ type: "ended", pipeline: this.name, detail: result });
    return result;
  }
}

function isAbort(e: unknown): boolean {
  return e instanceof DOMException && e.name === "AbortError" ||
    (e instanceof Error && (e.name === "AbortError" || e.name === "Interrupted" || e.name === "BadResource"));
}
