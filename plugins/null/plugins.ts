/**
 * The null family's stage plugin, declared: name, formats, option schema (built on first use) and a `create` that
 * loads the stage's module (`null_sink.ts`) when a pipeline first builds one. Loading this module costs next to
 * nothing, so a pipeline that does not use `null-sink` does not pay for it.
 *
 * @module
 */
import { z } from "zod";
import { lazySchema } from "../../core/options.ts";
import { type AnyPlugin, definePlugin, type SinkStage } from "../../core/stage.ts";
import { lazyModule } from "../../core/lazy.ts";

/** Modules loaded when first used (see `lazyModule`). */
const nullSinkModule = lazyModule<typeof import("./null_sink.ts")>(new URL("./null_sink.ts", import.meta.url));

/** Options of `null-sink` (none; its zod schema, built on first use). */
export const nullSinkSchema = lazySchema(() => z.object({}));

/** Validated options of `null-sink` (none). */
export type NullSinkOptions = z.output<ReturnType<typeof nullSinkSchema>>;

/**
 * Accepts frames of any kind and drops them, as fast as they come (never
 * applies backpressure). Useful to measure a chain's throughput or to terminate
 * a pipeline whose output is not needed.
 *
 * stats: `frames` (all kinds), `frames_by_kind`, `samples` (pcm: samples per
 * channel; encoded: codec samples, i.e. payload bytes for G.711), `bytes`
 * (payload bytes of encoded, rtp and packet frames; pcm sample bytes),
 * `duration_s` (pcm audio seen, at its own rate).
 *
 * @example Pipeline config
 * ```json
 * { "use": "null-sink" }
 * ```
 */
export const nullSink = definePlugin({
  name: "null-sink",
  kind: "sink",
  description: "Discards every frame (counts frames and samples)",
  accepts: [{ kind: "pcm" }, { kind: "encoded" }, { kind: "rtp" }, { kind: "packet" }],
  /** Keeps nothing of a frame (see `PluginDefinition.borrowsInput`). */
  borrowsInput: true,
  get options() {
    return nullSinkSchema();
  },
  create: async (o, ctx): Promise<SinkStage> => (await nullSinkModule()).createNullSink(o, ctx),
});

/** The stage plugins of this family, registered as built-ins. */
export const plugins: AnyPlugin[] = [nullSink];
