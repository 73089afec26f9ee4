/**
 * Option schemas. A plugin declares its options with a
 * [zod 4](https://zod.dev) schema: the schema validates the options of a
 * pipeline file with path-aware errors, fills in defaults, and is turned into
 * JSON Schema for editors and `--describe`.
 *
 * voxpipe re-exports the zod it uses as {@linkcode z}, so a plugin written
 * against voxpipe needs no zod import of its own, and its schemas come from
 * the same copy of zod as voxpipe's (voxpipe refuses unknown option keys by
 * recognising zod object schemas, which works only across one copy).
 *
 * @example
 * ```ts
 * const options = z.object({
 *   gain_db: z.number().min(-60).max(40).default(0).describe("gain in dB"),
 * });
 * type GainOptions = OptionsOf<typeof options>; // { gain_db: number }
 * ```
 *
 * @module
 */
import { z as zod } from "zod";

/**
 * The zod 4 namespace (`z` of the `zod` package, the version voxpipe pins in
 * `vendor/zod/zod_api.d.ts`, loaded from one bundled file, `vendor/zod/zod.js`): build option schemas with it, e.g.
 * `z.object({ rate: z.number().int().default(8000) })`. Its documentation is
 * zod's own: https://zod.dev/api, but for two things the bundle leaves out (every start of the CLI loads it):
 * `z.fromJSONSchema`, and the translations of zod's messages (`z.locales` holds English alone). It is re-exported
 * as a value: for types, use
 * {@linkcode OptionsOf} (zod's `z.infer`/`z.output`) and
 * {@linkcode OptionsSchema} (`z.ZodType`), or import `zod` itself.
 */
export const z: typeof zod = zod;

/**
 * The schema of a plugin's options: any zod 4 schema, usually
 * `z.object({...})` with a `.default()` and a `.describe()` text per option
 * (the texts appear in `--describe` and in the pipeline JSON Schema).
 */
export type OptionsSchema = zod.ZodType;

/**
 * The options a schema yields once validated: the schema's output type, with
 * defaults filled in (what zod calls `z.output<S>`). A plugin's `create`
 * receives this.
 */
export type OptionsOf<S extends OptionsSchema> = S["_zod"]["output"];

/**
 * The error a schema's `safeParse` reports for invalid options: a zod
 * `ZodError`, whose `issues` each carry a `path` and a `code`;
 * `formatZodIssues` turns it into `pipelines.send[2].ptime: expected at most 60, got 70`.
 */
export type OptionsError = zod.ZodError;

/**
 * The JSON Schema `format` that marks an option as a file path (see {@linkcode pathOption}).
 */
export const PATH_FORMAT = "path";

/** The schema {@linkcode pathOption} returns: a zod string schema (`.describe()`, `.default()` and the rest apply). */
export type PathOptionSchema = zod.ZodString;

/**
 * A file path option: a non-empty string marked as a path (`format: "path"` in
 * its JSON Schema), so that a pipeline file resolves it like every path it
 * holds: a relative path written in the file is relative to the file's
 * directory, and a `--set` value given for it on the command line is relative
 * to the working directory. The stage resolves the value against
 * `ctx.baseDir` (the pipeline file's directory).
 *
 * @example
 * ```ts
 * const options = z.object({ path: pathOption().describe("WAV file to write") });
 * ```
 */
export function pathOption(): PathOptionSchema {
  return zod.string().min(1).meta({ format: PATH_FORMAT });
}

/**
 * A schema built on first use: `build` runs once, at the first call, and every call returns that schema. Built-in
 * plugins declare their options this way (`get options() { return schema(); }`) so that starting the CLI does not
 * build the zod schemas of plugins the pipeline file does not use (building them is most of what loading a plugin
 * family's declarations costs).
 *
 * @example
 * ```ts
 * const gainOptions = lazySchema(() => z.object({ gain_db: z.number().default(0) }));
 * const gain = definePlugin({
 *   name: "gain", kind: "transform", description: "…", accepts: [{ kind: "pcm" }],
 *   get options() { return gainOptions(); },
 *   create: async (o, ctx) => (await gainStage()).createGain(o, ctx), // gainStage: see `lazyModule`
 * });
 * ```
 */
export function lazySchema<S extends OptionsSchema>(build: () => S): () => S {
  let schema: S | undefined;
  return () => schema ??= build();
}
