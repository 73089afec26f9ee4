/**
 * The stage and plugin API.
 *
 * A plugin module default-exports a {@linkcode PluginDefinition}: a name, a kind
 * (source, transform or sink), the formats it accepts and produces, a zod schema
 * for its options (built with the `z` that `core/options.ts` and `mod.ts`
 * re-export), and a factory that creates a {@linkcode Stage}.
 *
 * Inside a chain, frames move by synchronous calls: a source calls
 * `ctx.emit(frame)`, which runs every transform's `process` and the sink's
 * `write` before returning. Asynchrony lives only in sources (timers, sockets,
 * files), in sinks that must wait (files, devices), and in timers a stage sets
 * on the media clock.
 *
 * @example A transform plugin that halves the level
 * ```ts
 * import { z } from "./options.ts";
 * import { definePlugin } from "./stage.ts";
 * export default definePlugin({
 *   name: "half",
 *   kind: "transform",
 *   description: "Halves the level",
 *   accepts: [{ kind: "pcm" }],
 *   produces: { kind: "pcm" },
 *   options: z.object({}),
 *   create: () => ({
 *     process(frame, emit) {
 *       if (frame.kind !== "pcm") return;
 *       const s = frame.samples.map((v) => v >> 1);
 *       emit({ ...frame, samples: s });
 *     },
 *   }),
 * });
 * ```
 *
 * @module
 */
import type { Clock } from "./clock.ts";
import type { CodecInfo, CodecRegistry } from "./codec.ts";
import type { ConfigLocation } from "./errors.ts";
import type { Format, Frame } from "./frame.ts";
import type { Logger } from "./log.ts";
import type { OptionsOf, OptionsSchema } from "./options.ts";
import type { Session } from "./session.ts";
import type { StartGate } from "./start_gate.ts";

/** Where a stage sits in a chain. */
export type StageKind = "source" | "transform" | "sink";

/**
 * Passes a frame downstream. Returns false when downstream asks the caller to
 * slow down (backpressure); the frame has still been accepted.
 */
export type Emit = (frame: Frame) => boolean;

/** What every stage receives when it is created. */
export interface StageContext {
  /** The pipeline's name (e.g. `send`). */
  readonly pipeline: string;
  /** This stage's index in its chain (0 = source). */
  readonly index: number;
  /** This stage's label: its `name` in the config, else its plugin name. */
  readonly label: string;
  /** The media clock (real time, or virtual in tests). */
  readonly clock: Clock;
  /** Logger scoped to this stage. */
  readonly log: Logger;
  /**
   * Directory that relative file paths in options resolve against: the pipeline file's directory for chains built
   * from a file (`--set` values for path options arrive already resolved against the working directory; see
   * `pathOption()`), else what `buildPipeline` was given as `baseDir` (default: the working directory).
   */
  readonly baseDir: string;
  /**
   * True when the chain is built only to be checked, never started: by `--check`, and when a file with a control
   * section loads (its templates are built with example values for what a call fills in, so a mistake fails at start
   * rather than at the first call). The session is then a throw-away one on an in-memory network. A stage checks its
   * options, paths and devices as far as it can without side effects: it opens no device stream, writes or creates
   * no file, resolves no host name; what it cannot know (the format of a file it would decode) it leaves open.
   * Absent (false) in a chain that will run.
   */
  readonly checking?: boolean;
  /** Fires when the pipeline is asked to stop. */
  readonly signal: AbortSignal;
  /**
   * The session this stage runs in: the call's (or the standalone run's)
   * sockets and port pair, per-session resources such as its RTCP session, its
   * event bus and its media statistics.
   */
  readonly session: Session;
  /** Publishes an event on the pipeline (e.g. `timeout`, `rtcp`), for control plugins and apps. */
  event(type: string, detail?: unknown): void;
  /** The codecs of the pipeline's registry: RTP stages and decoders look codecs up here, by name or payload type. */
  readonly codecs: CodecRegistry;
  /**
   * A stage that would turn `from` into `to`, from the registry's plugins (see {@linkcode PluginDefinition.bridges}),
   * for error messages that say what to insert; undefined when no plugin offers one.
   */
  suggestBridge(from: Format, to: Format): StageConfig | undefined;
  /**
   * Builds a stage from a config entry (`{"use": ..., ...options}`) the way the pipeline builds its own: plugin
   * lookup in the registry, options checked by the plugin's schema, errors naming the JSON path (this stage's path
   * followed by `path`, e.g. `.items[1]`), and a `kind` check when given. It is for stages made of other stages
   * (`sequence` plays a list of sources). The sub-stage gets a context of its own, labelled `<this label>/<its
   * label>`, with this stage's index, clock, session, signal and events; the caller negotiates, starts, runs and
   * closes it. Set by pipelines (`core/pipeline.ts`); absent in contexts made by hand (tests).
   */
  readonly buildStage?: (config: SubStageConfig, path: string, kind?: StageKind) => Promise<SubStage>;
  /**
   * True when the next stage of the chain borrows its input (its plugin says {@linkcode PluginDefinition.borrowsInput}),
   * or passes it through ({@linkcode PluginDefinition.passesInputThrough}) to a stage that may reuse it in turn:
   * this stage may then write the samples or payload of its next frame into the arrays of a frame it emitted, once
   * `emit` has returned, instead of taking fresh memory for every frame. False or absent: every array a frame carries
   * must stay as it was for as long as anyone holds the frame.
   *
   * The pipeline sets it once the whole chain is built, before formats are negotiated: read it in `negotiate`, `run`
   * or `process`, not in `create`. Sub-stages ({@linkcode buildStage}) and contexts made by hand never have it.
   */
  readonly reuseOutput?: boolean;
  /**
   * True when a stage of the chain runs against real time (its plugin says {@linkcode PluginDefinition.realtime}: a
   * network or device source or sink), or the chain was built for a call (`BuildOptions.realtime`: the chains of a
   * pipeline file with a control section): the chain then moves at the pace of the clock, and a stage must not hold
   * frames back for long. False or absent: the chain runs as fast as it can (a file to a file), and a stage may
   * trade delay for throughput (the resampler's `threads`), or use Deno's synchronous file calls (the file stages).
   * Known from the plugins' declarations before the chain's stages are created: it may be read in `create`.
   * Sub-stages and contexts made by hand never have it.
   */
  readonly realtime?: boolean;
}

/** One stage entry of a pipeline config: `use` names the plugin, the rest are its options. */
export interface StageConfig {
  /** Plugin name, or a path/URL to a plugin module. */
  use: string;
  /** Optional label for logs and stats (default: the plugin name). */
  name?: string;
  /** Plugin options. */
  [option: string]: unknown;
}

/** A stage config entry as {@linkcode StageContext.buildStage} takes it: `use` names the plugin, the rest are options. */
export interface SubStageConfig {
  /** Plugin name, or a path/URL to a plugin module. */
  use: string;
  /** Label for logs (default: the plugin name). */
  name?: string;
  /** Plugin options. */
  [option: string]: unknown;
}

/** A stage built by {@linkcode StageContext.buildStage}: its plugin, the stage, and the context it was created with. */
export interface SubStage {
  /** The plugin definition. */
  plugin: AnyPlugin;
  /** The created stage (not negotiated, started or run yet). */
  stage: Stage;
  /** The context the stage was created with. */
  ctx: StageContext;
}

/** What a stage receives when its pipeline starts. */
export interface RunContext extends StageContext {
  /** Passes a frame to the next stage (sources, and transforms that emit on their own timers). */
  emit: Emit;
  /**
   * Resolves when downstream has room again after `emit` returned false, or when
   * the pipeline stops. Sources await it to honour backpressure.
   */
  ready(): Promise<void>;
  /** Fails the pipeline with this error (from async code paths such as timers and sockets). */
  fail(error: unknown): void;
  /**
   * True when the chain ends in a real-time sink (a network or device sink:
   * its plugin says `realtime`): audio must be played on time. False for a
   * chain that ends in a file: a stage may then follow the sender's timeline
   * instead of the clock (a jitter buffer records what was sent, exactly).
   */
  readonly realtimeSink: boolean;
  /**
   * Fires only when the pipeline stops (or fails, or its graceful end runs out
   * of time), not when it ends gracefully. A source's `signal` fires on both: a
   * live source that drains what it already received when asked to end (a UDP
   * socket's queue) stops draining when this fires. Absent where the runner
   * does not tell the two apart (then treat `signal` as a stop).
   */
  readonly stopSignal?: AbortSignal;
  /**
   * Present when the chain was started with a start gate (`Pipeline.start({ gate })`) and its source is not live: a
   * paced sink joins it at start, queues its first packets without a timeline until its queue is full or its stream
   * has ended, says it is ready, and starts its timeline at the time the gate opens (see {@linkcode StartGate}).
   */
  readonly startGate?: StartGate;
}

/** What a stage learns about its chain before it starts (see {@linkcode StageBase.plan}). */
export interface ChainInfo {
  /** What `RunContext.realtimeSink` will say: the chain ends in a real-time sink. */
  readonly realtimeSink: boolean;
}

/** Common life-cycle of every stage. */
export interface StageBase {
  /**
   * Called once at build time with the format arriving from upstream (undefined
   * for sources). Returns the format this stage will produce (sources and
   * transforms). Throw a {@linkcode FormatError} to refuse an input format with
   * a reason. When absent, the definition's `produces` is used.
   */
  negotiate?(input: Format | undefined): Format | undefined;
  /** Called when the pipeline starts, sinks first, then transforms, then the source. */
  start?(ctx: RunContext): void | Promise<void>;
  /**
   * Called once when the pipeline ends for any reason, source first, sink last,
   * after `flush`/`end`. Release resources here.
   */
  close?(): void | Promise<void>;
  /** Stage-specific statistics, readable at any time while the pipeline runs. */
  stats?(): Record<string, unknown>;
  /**
   * What the stage will do when this chain runs, in a few words, for `--check` (e.g. a jitter buffer's
   * `mode record: ...`, the file a sink writes, the device a speaker plays on). Called after negotiation.
   */
  plan?(chain: ChainInfo): string | undefined;
  /** Stage-specific controls (e.g. `pause`, `resume`), invoked through the pipeline API. */
  control?(command: string, arg?: unknown): unknown;
}

/** A source produces frames until it ends or the pipeline stops. */
export interface SourceStage extends StageBase {
  /**
   * Produces frames with `ctx.emit`, awaiting `ctx.ready()` whenever emit returns
   * false. Resolves at end of stream, or soon after `ctx.signal` aborts.
   */
  run(ctx: RunContext): Promise<void>;
}

/** A transform turns each incoming frame into zero or more outgoing frames, synchronously. */
export interface TransformStage extends StageBase {
  /** Handles one frame; passes results on with `emit`. Must not block. */
  process(frame: Frame, emit: Emit): boolean | void;
  /** At end of stream: emits whatever is still buffered. */
  flush?(emit: Emit): void;
}

/** A sink consumes frames. */
export interface SinkStage extends StageBase {
  /** Accepts one frame. Returns false to ask upstream to slow down. Must not block. */
  write(frame: Frame): boolean | void;
  /** When `write` returned false: resolves once the sink has room again. */
  drained?(): Promise<void>;
  /** At end of stream or stop: flushes and finalizes (e.g. WAV header). */
  end?(): void | Promise<void>;
}

/** A stage of any kind. */
export type Stage = SourceStage | TransformStage | SinkStage;

/** The stage type that goes with each kind. */
export interface StageByKind {
  /** Source stages. */
  source: SourceStage;
  /** Transform stages. */
  transform: TransformStage;
  /** Sink stages. */
  sink: SinkStage;
}

/** What a plugin module default-exports. */
export interface PluginDefinition<
  K extends StageKind = StageKind,
  S extends OptionsSchema = OptionsSchema,
> {
  /** The name used in `"use": "..."`. Lower-case, dash-separated. */
  name: string;
  /** Source, transform or sink. */
  kind: K;
  /** One line for `--list-plugins`. */
  description: string;
  /** Formats accepted from upstream (transforms and sinks): any of these. */
  accepts?: Format[];
  /** Format produced (sources and transforms); fields may be refined by `negotiate`. */
  produces?: Format;
  /**
   * True for stages that run against real time (network and device sinks,
   * network sources): a pipeline containing one is real-time.
   */
  realtime?: boolean;
  /**
   * True for transforms and sinks that read a frame they are given only during that `process` or `write` call: they
   * keep no reference to its arrays afterwards, and everything they emit from it in that call is theirs (copied), or
   * is passed to a next stage that borrows too. The stage before such a stage may then reuse its frames' memory (see
   * {@linkcode StageContext.reuseOutput}). A stage that queues frames (a network or device sink), keeps the last one,
   * or passes the input's arrays on regardless of what comes next must leave this unset.
   */
  borrowsInput?: boolean;
  /**
   * True for transforms that emit every frame they are given as it is (the same object, at once, in that call) and
   * keep nothing of it that a reused array would change (`rtcp`, `dtmf-sender`, `rtp-end-marker`). They are
   * transparent to frame memory: the stage before one may reuse its frames' memory exactly when this stage's next
   * stage lets this stage do so ({@linkcode StageContext.reuseOutput}), so nothing is copied on their account.
   */
  passesInputThrough?: boolean;
  /** zod schema of the options, with defaults and `.describe()` texts. */
  options: S;
  /**
   * Codecs this plugin implements (see core/codec.ts). Registering the plugin, or loading its module by path,
   * registers them in the registry's `codecs`; a codec plugin family also exports them from its mod.ts.
   */
  codecs?: readonly CodecInfo[];
  /**
   * How this plugin bridges formats: the stage config (`use` and options) that turns `from` into `to`, or
   * undefined when it cannot. The pipeline asks every registered plugin when a link does not match, so its error
   * names the stage to insert, e.g. `{ use: "resampler", rate: 8000, channels: 1 }` for pcm 16000 Hz → 8000 Hz.
   */
  bridges?(from: Format, to: Format): StageConfig | undefined;
  /** Creates a stage from validated options. May be async (e.g. to open a file). */
  create(options: OptionsOf<S>, ctx: StageContext): StageByKind[K] | Promise<StageByKind[K]>;
}

/** Any plugin definition. */
// deno-lint-ignore no-explicit-any
export type AnyPlugin = PluginDefinition<StageKind, any>;

/**
 * Identity helper that gives a plugin definition its types.
 *
 * @example
 * ```ts
 * import { z } from "./options.ts";
 * const p = definePlugin({ name: "null-sink", kind: "sink", description: "discards", accepts: [{ kind: "pcm" }],
 *   options: z.object({}), create: () => ({ write() {} }) });
 * ```
 */
export function definePlugin<K extends StageKind, S extends OptionsSchema>(
  def: PluginDefinition<K, S>,
): PluginDefinition<K, S> {
  return def;
}

/**
 * What finds the plugin a stage's `use` names: a registered name, or a module
 * path or URL. A {@linkcode Registry} is one; {@linkcode buildPipeline} takes
 * any.
 */
export interface PluginResolver {
  /**
   * Resolves `use` to a stage plugin definition, loading a module when `use` is
   * a path (relative to `baseDir`) or URL; rejects with a `ConfigError` at
   * `where` when there is no such plugin.
   */
  resolve(use: string, baseDir?: string, where?: ConfigLocation): Promise<AnyPlugin>;
  /** The codecs the plugins registered (stages look codecs up here). */
  readonly codecs: CodecRegistry;
  /** A stage that would turn `from` into `to` (see {@linkcode PluginDefinition.bridges}), for link errors. */
  suggestBridge(from: Format, to: Format): StageConfig | undefined;
}

/** Thrown by a stage's `negotiate` when it cannot take the upstream format. */
export class FormatError extends Error {
  /**
   * Creates the error.
   * @param message what is wrong and what to change
   */
  constructor(message: string) {
    super(message);
    this.name = "FormatError";
  }
}
