/**
 * The control-plugin API. A control plugin (SIP first) owns sessions: for each
 * call it fills the file's pipeline templates with what was negotiated, builds
 * and starts them, and stops them when the call ends. It talks to the media
 * plane only through the pipeline API and the {@linkcode Session} it creates
 * for each call.
 *
 * @module
 */
import type { Clock } from "./clock.ts";
import type { CodecRegistry } from "./codec.ts";
import type { Variables } from "./config.ts";
import type { Logger } from "./log.ts";
import type { CallService } from "./calls.ts";
import type { Network } from "./net/datagram.ts";
import type { OptionsOf, OptionsSchema } from "./options.ts";
import type { Pipeline } from "./pipeline.ts";
import type { Session } from "./session.ts";

/** What a control plugin receives. */
export interface ControlContext {
  /** Logger (tag your lines, e.g. `log.child("SIP")`). */
  log: Logger;
  /** Media clock. */
  clock: Clock;
  /** Aborted when the process is asked to stop (SIGINT/SIGTERM or library stop()). */
  signal: AbortSignal;
  /** The pipeline file path. */
  file: string;
  /** Directory of the pipeline file. */
  baseDir: string;
  /** Parameter values (defaults and --set). */
  params: Variables;
  /** Names of the chain templates in the file. */
  templates: string[];
  /**
   * The templates to build for a call with these variables (those of {@linkcode buildPipeline}'s `vars`): the
   * file's chains whose `when` conditions hold, in file order. Absent: build every template.
   */
  templatesFor?(vars: Variables): string[];
  /** The network to bind sockets on: give it to the sessions you create (real UDP, or memory in tests). */
  net: Network;
  /** The codecs of the registry the chains are built with (what the plugins implement), e.g. for SDP. */
  codecs: CodecRegistry;
  /**
   * Where protocol message traces go (the CLI's `--sip-trace`): one text block
   * per message sent or received. Undefined when tracing is off.
   */
  trace?: (text: string) => void;
  /**
   * Builds a pipeline from the template `template`, with the parameters plus
   * `vars` (e.g. `remote.rtp`, `codec`, `call.id`), in `session` (the call's:
   * its port pair, sockets, RTCP, events and statistics; default a session of
   * its own). `name` labels it in logs (default: the template name).
   */
  buildPipeline(template: string, vars: Variables, name?: string, session?: Session): Promise<Pipeline>;
}

/** How a control plugin's run ended: the process exit code and, on failure, a one-line reason. */
export interface ControlResult {
  /** Exit code: 0 success. */
  code: number;
  /** One-line reason when `code` is not 0 (e.g. `call failed: 486 Busy Here`). */
  reason?: string;
}

/** A running control plugin. */
export interface Controller {
  /** Runs until the work is done (e.g. the call ended) or the signal aborts. */
  run(): Promise<ControlResult>;
  /** Live statistics (calls, per-call stats), for status pages. */
  stats?(): unknown;
  /**
   * Its calls, for the pipeline file's services (a WebSocket bridge, the
   * console): present when the plugin owns calls.
   */
  readonly calls?: CallService;
}

/** What a service plugin receives. */
export interface ServiceContext {
  /** Logger (tag your lines). */
  log: Logger;
  /** Media clock. */
  clock: Clock;
  /** Aborted when the process is asked to stop. */
  signal: AbortSignal;
  /** The pipeline file path. */
  file: string;
  /** Directory of the pipeline file. */
  baseDir: string;
  /** Parameter values (defaults and --set). */
  params: Variables;
  /** The calls of the file's control plugin. */
  calls: CallService;
  /** The network to bind on (real UDP, or memory in tests); a TCP or HTTP service listens on the host's. */
  net: Network;
}

/** A running service: it serves until its context's signal aborts, then {@linkcode Service.close} ends it. */
export interface Service {
  /** Where it serves, for the start log line and tests (e.g. `http://127.0.0.1:8080/`). */
  readonly address?: string;
  /**
   * True when the service chose not to run (an optional one without what it needs, e.g. the ws-bridge without a
   * token): it has logged why, and the runner logs no "started" line for it.
   */
  readonly off?: boolean;
  /** Stops serving and releases what it holds (sockets, clients). Idempotent. */
  close(): Promise<void>;
}

/**
 * What a service plugin module default-exports: a component the pipeline
 * file's `services` section starts beside its control plugin, on that
 * plugin's calls (e.g. a WebSocket bridge through which applications drive
 * calls and exchange their audio).
 */
export interface ServicePluginDefinition<S extends OptionsSchema = OptionsSchema> {
  /** Name used in `"services": [{"use": "..."}]`. */
  name: string;
  /** Always `service`. */
  kind: "service";
  /** One line for `--list-plugins`. */
  description: string;
  /** Option schema. */
  options: S;
  /** Starts the service (it serves once this resolves). */
  create(options: OptionsOf<S>, ctx: ServiceContext): Service | Promise<Service>;
}

/** Any service plugin. */
// deno-lint-ignore no-explicit-any
export type AnyServicePlugin = ServicePluginDefinition<any>;

/**
 * Identity helper that types a service plugin definition.
 *
 * @example
 * ```ts
 * const echo = defineService({ name: "noop", kind: "service", description: "does nothing",
 *   options: z.object({}), create: () => ({ close: () => Promise.resolve() }) });
 * ```
 */
export function defineService<S extends OptionsSchema>(def: ServicePluginDefinition<S>): ServicePluginDefinition<S> {
  return def;
}

/** What a control plugin module default-exports. */
export interface ControlPluginDefinition<S extends OptionsSchema = OptionsSchema> {
  /** Name used in `"control": {"use": "..."}`. */
  name: string;
  /** Always `control`. */
  kind: "control";
  /** One line for `--list-plugins`. */
  description: string;
  /** Variables this plugin provides to templates, with descriptions (e.g. `remote.rtp`). */
  variables: Record<string, string>;
  /** zod schema of the options in the control section. */
  options: S;
  /**
   * Example values of every one of {@linkcode variables} for a call, as a call could fill them in with these options
   * (e.g. `remote.rtp` = `127.0.0.1:9`, `codec` = the first codec the options allow), or several examples, in order
   * of preference, when calls can differ in ways the templates may depend on (one per codec the options allow).
   * When a file loads (before the first call is answered) and with `--check`, the runner builds every chain template
   * with them, in a throw-away session on an in-memory network with `StageContext.checking` set: when no example
   * builds, the file fails at start with the first example's error (an unknown option, a bad plugin name, a missing
   * device, naming the file and JSON path); an example that fails when another builds is a warning (calls like it
   * would fail). Without it, templates are only checked when a call builds them.
   */
  exampleVariables?(options: OptionsOf<S>, ctx: { codecs: CodecRegistry }): Variables | Variables[];
  /**
   * Creates the controller: validates the options against the context (templates, codecs) and prepares, but opens
   * no socket (that is {@linkcode Controller.run}'s job): `--check` creates the controller to validate it and never
   * runs it.
   */
  create(options: OptionsOf<S>, ctx: ControlContext): Controller | Promise<Controller>;
}

/** Any control plugin. */
// deno-lint-ignore no-explicit-any
export type AnyControlPlugin = ControlPluginDefinition<any>;

/**
 * Identity helper that types a control plugin definition.
 *
 * @example
 * ```ts
 * import { z } from "./options.ts";
 * const p = defineControl({ name: "noop", kind: "control", description: "does nothing", variables: {},
 *   options: z.object({}), create: () => ({ run: () => Promise.resolve({ code: 0 }) }) });
 * ```
 */
export function defineControl<S extends OptionsSchema>(def: ControlPluginDefinition<S>): ControlPluginDefinition<S> {
  return def;
}
