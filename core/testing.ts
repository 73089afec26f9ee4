/**
 * Helpers for testing stages in isolation: a stage context, and running a
 * transform or sink over frames without a full pipeline.
 *
 * @module
 */
import type { z } from "zod";
import { type Clock, VirtualClock } from "./clock.ts";
import { CodecRegistry } from "./codec.ts";
import type { Frame } from "./frame.ts";
import { silentLogger } from "./log.ts";
import type { Registry } from "./registry.ts";
import type { AnyPlugin, RunContext, Stage, StageContext } from "./stage.ts";
import type { Network } from "./net/datagram.ts";
import { Session } from "./session.ts";

/** Options for {@linkcode testContext}. */
export interface TestContextOptions {
  /** Clock to use (default: a new VirtualClock). */
  clock?: Clock;
  /** Base directory (default: cwd). */
  baseDir?: string;
  /** Collects frames emitted through `ctx.emit` (default: a new array). */
  out?: Frame[];
  /** Abort controller for stop requests. */
  abort?: AbortController;
  /**
   * Whether the stage's chain ends in a real-time sink (default true: stages
   * behave as in a call played out live; false: as in a chain recording to a file).
   */
  realtimeSink?: boolean;
  /** The session (default: a new one on the clock and `net`). */
  session?: Session;
  /** Network of the default session (default: real UDP). */
  net?: Network;
  /**
   * Plugin registry whose codecs and bridge suggestions the context offers (e.g. `createRegistry()` from mod.ts).
   * Default: none (no codecs, no suggestions).
   */
  registry?: Registry;
  /** Codecs to offer instead of the registry's. */
  codecs?: CodecRegistry;
}

/**
 * A RunContext for tests: emitted frames land in `out`, events in `events`;
 * `release()` closes its session (and so the sockets stages opened in it).
 *
 * @example
 * ```ts
 * const { ctx, out } = testContext();
 * ctx.emit({ kind: "packet", data: new Uint8Array(1) });
 * // out.length === 1
 * ```
 */
export function testContext(opts: TestContextOptions = {}): {
  ctx: RunContext;
  out: Frame[];
  events: { type: string; detail: unknown }[];
  errors: unknown[];
  abort: AbortController;
  release: () => Promise<void>;
} {
  const out = opts.out ?? [];
  const events: { type: string; detail: unknown }[] = [];
  const errors: unknown[] = [];
  const abort = opts.abort ?? new AbortController();
  const clock = opts.session?.clock ?? opts.clock ?? new VirtualClock();
  const session = opts.session ?? new Session({ id: "test", clock, net: opts.net });
  const ctx: RunContext = {
    pipeline: "test",
    index: 0,
    label: "test",
    clock,
    log: silentLogger,
    baseDir: opts.baseDir ?? Deno.cwd(),
    signal: abort.signal,
    session,
    event: (type, detail) => events.push({ type, detail }),
    codecs: opts.codecs ?? opts.registry?.codecs ?? new CodecRegistry(),
    suggestBridge: (from, to) => opts.registry?.suggestBridge(from, to),
    emit: (f) => {
      out.push(f);
      return true;
    },
    ready: () => Promise.resolve(),
    fail: (e) => errors.push(e),
    realtimeSink: opts.realtimeSink ?? true,
  };
  return { ctx, out, events, errors, abort, release: () => session.close() };
}

/**
 * Creates a stage from a plugin with options parsed by its schema (defaults applied).
 *
 * @example
 * ```ts
 * const stage = await createStage(myPlugin, { gain_db: 6 });
 * ```
 */
export async function createStage<S extends Stage = Stage>(
  plugin: AnyPlugin,
  options: Record<string, unknown> = {},
  ctx: StageContext = testContext().ctx,
): Promise<S> {
  const parsed = (plugin.options as z.ZodType).parse(options);
  return (await plugin.create(parsed, ctx)) as S;
}

/** Runs frames through a transform stage (process each, then flush) and returns what it emitted. */
export function runTransform(stage: Stage, frames: Frame[]): Frame[] {
  if (!("process" in stage)) throw new Error("not a transform stage");
  const out: Frame[] = [];
  const emit = (f: Frame) => {
    out.push(f);
    return true;
  };
  for (const f of frames) stage.process(f, emit);
  stage.flush?.(emit);
  return out;
}
