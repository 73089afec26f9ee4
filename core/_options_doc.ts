/**
 * Option schemas as text and JSON Schema: what `--describe`, the pipeline JSON
 * Schema and option errors say about a plugin's options, and which options are
 * file paths. Private to core/.
 *
 * @module
 */
import { z } from "zod";
import { formatZodIssues } from "./errors.ts";
import { type OptionsError, type OptionsSchema, PATH_FORMAT } from "./options.ts";
import { didYouMean } from "./suggest.ts";

/** A JSON Schema document (draft 2020-12), as a plain JSON object. */
export type JsonSchema = Record<string, unknown>;

const jsonSchemas = new WeakMap<OptionsSchema, JsonSchema>();

/** JSON Schema of a plugin's options (input side: defaults make fields optional). Do not modify the result. */
export function optionsJsonSchema(schema: OptionsSchema): JsonSchema {
  let s = jsonSchemas.get(schema);
  if (!s) {
    s = z.toJSONSchema(schema, { io: "input", unrepresentable: "any" }) as JsonSchema;
    jsonSchemas.set(schema, s);
  }
  return s;
}

/** The type of one option, e.g. `number`, `"auto" | "record"`, `path`. */
export function typeOf(s: JsonSchema): string {
  if (s.enum) return (s.enum as unknown[]).map((v) => JSON.stringify(v)).join(" | ");
  if (s.const !== undefined) return JSON.stringify(s.const);
  if (s.anyOf) return (s.anyOf as JsonSchema[]).map(typeOf).join(" | ");
  if (s.type === "array") return `${typeOf((s.items as JsonSchema) ?? {})}[]`;
  if (s.type === "string" && s.format === PATH_FORMAT) return "path";
  if (s.type === "integer") return "integer";
  return String(s.type ?? "any");
}

/** The range of one option, e.g. `10..60`, `>0..`, or `""`. */
export function rangeOf(s: JsonSchema): string {
  // zod's .int() bounds integers to the safe range: not worth saying.
  const lo = s.minimum === Number.MIN_SAFE_INTEGER ? undefined : s.minimum ?? s.exclusiveMinimum;
  const hi = s.maximum === Number.MAX_SAFE_INTEGER ? undefined : s.maximum ?? s.exclusiveMaximum;
  if (lo === undefined && hi === undefined) return "";
  const l = lo === undefined ? "" : `${s.exclusiveMinimum !== undefined ? ">" : ""}${lo}`;
  const h = hi === undefined ? "" : `${s.exclusiveMaximum !== undefined ? "<" : ""}${hi}`;
  return `${l}..${h}`;
}

/** One option as documented: its name, `type, range, default` and its description. */
export interface OptionDoc {
  /** Option name. */
  name: string;
  /** `number, range 1..20000, default 1000`. */
  summary: string;
  /** The option's description, if any. */
  description?: string;
}

/** Every option of a schema, in declaration order. */
export function optionDocs(schema: OptionsSchema): OptionDoc[] {
  const s = optionsJsonSchema(schema);
  const props = (s.properties as Record<string, JsonSchema>) ?? {};
  const required = new Set((s.required as string[]) ?? []);
  return Object.entries(props).map(([name, o]) => {
    const bits = [typeOf(o)];
    const r = rangeOf(o);
    if (r) bits.push(`range ${r}`);
    if (o.default !== undefined) bits.push(`default ${JSON.stringify(o.default)}`);
    else if (required.has(name)) bits.push("required");
    return { name, summary: bits.join(", "), ...(o.description ? { description: o.description as string } : {}) };
  });
}

/**
 * The names of a schema's file path options (`format: "path"`, see `pathOption()`). For an object schema this walks
 * its fields (through optional, default, nullable, union and the like) and reads their metadata: the same answer as
 * the JSON Schema gives (a test holds them equal for every built-in plugin), without building it, which costs
 * ~5 ms a schema at start-up (zod's JSON Schema code runs cold). Anything else: from the JSON Schema.
 */
export function pathOptionKeys(schema: OptionsSchema): string[] {
  if (schema instanceof z.ZodObject) {
    return Object.entries(schema.shape as Record<string, z.ZodType>).filter(([, f]) => isPathSchema(f, 0)).map((
      [k],
    ) => k);
  }
  return pathOptionKeysFromJsonSchema(schema);
}

/** {@linkcode pathOptionKeys} read from the option schema's JSON Schema. */
export function pathOptionKeysFromJsonSchema(schema: OptionsSchema): string[] {
  const props = (optionsJsonSchema(schema).properties as Record<string, JsonSchema>) ?? {};
  return Object.entries(props).filter(([, o]) => isPath(o)).map(([k]) => k);
}

/** True when a field's schema, or one it wraps or unites (input side), is marked `format: "path"`. */
function isPathSchema(s: z.ZodType, depth: number): boolean {
  if (depth > 16) return false;
  if ((z.globalRegistry.get(s) as { format?: unknown } | undefined)?.format === PATH_FORMAT) return true;
  const def = s._zod.def as unknown as Record<string, unknown> & { type: string };
  switch (def.type) {
    case "optional":
    case "nullable":
    case "default":
    case "prefault":
    case "nonoptional":
    case "readonly":
    case "catch":
    case "success":
      return isPathSchema(def.innerType as z.ZodType, depth + 1);
    case "pipe":
      return isPathSchema(def.in as z.ZodType, depth + 1);
    case "union":
      return (def.options as z.ZodType[]).some((o) => isPathSchema(o, depth + 1));
    default:
      return false;
  }
}

function isPath(s: JsonSchema): boolean {
  if (s.format === PATH_FORMAT) return true;
  return Array.isArray(s.anyOf) && (s.anyOf as JsonSchema[]).some(isPath);
}

/**
 * The problems of options `safeParse` refused, for an error message: `base.key: problem` for each bad value, and for
 * each unknown key `base: unknown option "ptme" for rtp-packetizer (did you mean "ptime"?)` followed by the plugin's
 * options with their types, ranges and defaults.
 *
 * @param error what `safeParse` reported
 * @param base JSON path of the options object (e.g. `pipelines.send[3]`)
 * @param plugin the plugin whose options they are
 */
export function describeOptionErrors(
  error: OptionsError,
  base: string,
  plugin: { name: string; options: OptionsSchema },
): string {
  const unknown = error.issues.flatMap((i) =>
    i.code === "unrecognized_keys" && i.path.length === 0 ? (i as { keys: string[] }).keys : []
  );
  const rest = error.issues.filter((i) => !(i.code === "unrecognized_keys" && i.path.length === 0));
  const parts: string[] = [];
  if (unknown.length) {
    const docs = optionDocs(plugin.options);
    const names = docs.map((d) => d.name);
    const where = base || "options";
    for (const k of unknown) parts.push(`${where}: unknown option "${k}" for ${plugin.name}${didYouMean(k, names)}`);
    parts[parts.length - 1] += docs.length
      ? `; ${plugin.name} options: ${docs.map((d) => `${d.name} (${d.summary})`).join(", ")}`
      : `; ${plugin.name} takes no options`;
  }
  if (rest.length) parts.push(formatZodIssues(new z.ZodError(rest), base));
  return parts.join("; ");
}
