/**
 * JSON Schema for pipeline files, generated from the plugins' zod schemas, and
 * human-readable descriptions of plugins for `--list-plugins` / `--describe`.
 *
 * @module
 */
import type { AnyControlPlugin, AnyServicePlugin } from "./control.ts";
import { formatToString } from "./frame.ts";
import type { OptionsSchema } from "./options.ts";
import { isModuleReference, type Registry } from "./registry.ts";
import { didYouMean } from "./suggest.ts";
import type { AnyPlugin } from "./stage.ts";
import {
  type JsonSchema,
  optionDocs,
  optionsJsonSchema as cachedOptionsJsonSchema,
  pathOptionKeys,
} from "./_options_doc.ts";

/** How paths resolve, said once wherever path options are described. */
const PATHS_NOTE = "  paths: a relative path written in a pipeline file is relative to the file's directory; " +
  "a --set value on the command line is relative to the working directory";

export type { JsonSchema } from "./_options_doc.ts";

/** A string containing `${...}`, allowed wherever a value is, since parameters are substituted before validation. */
const VARIABLE_REF: JsonSchema = { type: "string", pattern: "\\$\\{[A-Za-z_][A-Za-z0-9_.]*\\}" };

/** JSON Schema of a plugin's options (input side: defaults make fields optional). */
export function optionsJsonSchema(schema: OptionsSchema): JsonSchema {
  return structuredClone(cachedOptionsJsonSchema(schema));
}

function allowVariables(s: JsonSchema): JsonSchema {
  const props = s.properties as Record<string, JsonSchema> | undefined;
  if (!props) return s;
  const out: Record<string, JsonSchema> = {};
  for (const [k, v] of Object.entries(props)) {
    const { description, default: dflt, ...rest } = v;
    out[k] = {
      ...(description ? { description } : {}),
      ...(dflt !== undefined ? { default: dflt } : {}),
      anyOf: [rest, VARIABLE_REF],
    };
  }
  return { ...s, properties: out };
}

/**
 * The JSON Schema of pipeline files for this registry: editors use it (via
 * `"$schema"`) to complete and check stage names and options.
 */
export function pipelineJsonSchema(registry: Registry): JsonSchema {
  const plugins = registry.list();
  const stageVariants = plugins.map((p) => {
    const s = allowVariables(optionsJsonSchema(p.options));
    const { $schema: _drop, ...rest } = s;
    const props = (rest.properties as Record<string, unknown>) ?? {};
    return {
      ...rest,
      type: "object",
      description: `${p.name} (${p.kind}): ${p.description}`,
      properties: {
        use: { const: p.name },
        name: { type: "string", description: "label for logs and stats" },
        ...props,
      },
      required: ["use", ...((rest.required as string[]) ?? [])],
      additionalProperties: false,
    };
  });
  const userPlugin = {
    type: "object",
    description: "a user plugin loaded from a path (relative to this file) or URL",
    properties: { use: { type: "string", pattern: "^(\\.{1,2}/|/|file:|https?:).*|.*\\.(ts|js|mjs)$" } },
    required: ["use"],
  };
  const controlVariants = registry.listControls().map((c) => {
    const s = allowVariables(optionsJsonSchema(c.options));
    const { $schema: _drop, ...rest } = s;
    return {
      ...rest,
      type: "object",
      description: `${c.name}: ${c.description}`,
      properties: { use: { const: c.name }, ...((rest.properties as Record<string, unknown>) ?? {}) },
      required: ["use", ...((rest.required as string[]) ?? [])],
      additionalProperties: false,
    };
  });
  const serviceVariants = registry.listServices().map((c) => {
    const s = allowVariables(optionsJsonSchema(c.options));
    const { $schema: _drop, ...rest } = s;
    return {
      ...rest,
      type: "object",
      description: `${c.name}: ${c.description}`,
      properties: { use: { const: c.name }, ...((rest.properties as Record<string, unknown>) ?? {}) },
      required: ["use", ...((rest.required as string[]) ?? [])],
      additionalProperties: false,
    };
  });
  // Stages made of stages (a sequence's items) refer to `#/$defs/sourceStage` in their option schemas
  // (zod `.meta({ $ref })`): any source stage, built-in or user plugin.
  const sourceVariants = stageVariants.filter((_, i) => plugins[i].kind === "source");
  return {
    $schema: "https://json-schema.org/draft/2020-12/schema",
    title: "voxpipe pipeline file",
    $defs: { sourceStage: { description: "a source stage", anyOf: [...sourceVariants, userPlugin] } },
    type: "object",
    additionalProperties: false,
    required: ["pipelines"],
    properties: {
      $schema: { type: "string" },
      name: { type: "string" },
      description: { type: "string" },
      parameters: {
        type: "object",
        additionalProperties: {
          type: "object",
          additionalProperties: false,
          properties: {
            default: { type: ["string", "number", "boolean"] },
            description: { type: "string" },
            type: { enum: ["string", "number", "boolean"] },
          },
        },
      },
      control: controlVariants.length ? { anyOf: controlVariants } : { type: "object" },
      services: {
        type: "array",
        description: "services run beside the control plugin, on its calls (a WebSocket bridge, the console)",
        items: serviceVariants.length ? { anyOf: serviceVariants } : { type: "object" },
      },
      pipelines: {
        type: "object",
        additionalProperties: { type: "array", minItems: 2, items: { anyOf: [...stageVariants, userPlugin] } },
      },
      when: {
        type: "object",
        description:
          'chains built only when their conditions hold: "${x}" (set: not empty, 0, false, no, off), "${x} == v", ' +
          '"${x} != v", or an array of conditions that must all hold; per call with a control section',
        additionalProperties: {
          anyOf: [{ type: "string", minLength: 1 }, { type: "array", minItems: 1, items: { type: "string" } }],
        },
      },
    },
  };
}

function describeFormats(p: AnyPlugin): string {
  const acc = p.accepts?.length ? p.accepts.map(formatToString).join(" | ") : "";
  const prod = p.produces ? formatToString(p.produces) : "";
  if (p.kind === "source") return `→ ${prod}`;
  if (p.kind === "sink") return `${acc} →`;
  return `${acc} → ${prod}`;
}

/** One line per plugin: name, kind, formats, description; then one per registered codec. */
export function listPluginLines(registry: Registry): string[] {
  const plugins = registry.list();
  const w = Math.max(...plugins.map((p) => p.name.length), 4);
  const fw = Math.max(...plugins.map((p) => describeFormats(p).length), 4);
  const lines = plugins.map((p) =>
    `${p.name.padEnd(w)}  ${p.kind.padEnd(9)}  ${describeFormats(p).padEnd(fw)}  ${p.description}`
  );
  for (const c of registry.listControls()) {
    lines.push(`${c.name.padEnd(w)}  ${"control".padEnd(9)}  ${"".padEnd(fw)}  ${c.description}`);
  }
  for (const c of registry.listServices()) {
    lines.push(`${c.name.padEnd(w)}  ${"service".padEnd(9)}  ${"".padEnd(fw)}  ${c.description}`);
  }
  for (const c of registry.codecs.list()) {
    const pt = c.payloadType === "dynamic" ? "dynamic payload type" : `payload type ${c.payloadType}`;
    const ch = c.channels === 1 ? "mono" : c.channels === 2 ? "stereo" : `${c.channels} ch`;
    const frame = c.frameSamples === 1
      ? `${c.frameBytes} byte${c.frameBytes > 1 ? "s" : ""} per sample`
      : `${c.frameBytes} bytes per ${c.frameSamples} samples`;
    lines.push(
      `${c.name.padEnd(w)}  ${"codec".padEnd(9)}  ${"".padEnd(fw)}  RTP codec: ${pt}, ${c.clockRate} Hz ${ch}, ` +
        `${frame}, ${c.ptime} ms packets`,
    );
  }
  return lines;
}

/** A multi-line description of one plugin: formats and every option with type, range, default. */
export function describePlugin(p: AnyPlugin | AnyControlPlugin | AnyServicePlugin): string {
  const lines = [`${p.name} (${p.kind}): ${p.description}`];
  if (p.kind === "service") {
    lines.push('  runs beside a control plugin, on its calls (a pipeline file\'s "services" section)');
  } else if (p.kind !== "control") {
    const sp = p as AnyPlugin;
    if (sp.accepts?.length) lines.push(`  accepts:  ${sp.accepts.map(formatToString).join(" | ")}`);
    if (sp.produces) lines.push(`  produces: ${formatToString(sp.produces)}`);
    if (sp.realtime) lines.push("  runs in real time (paces its pipeline)");
  } else {
    const vars = Object.entries((p as AnyControlPlugin).variables);
    if (vars.length) {
      lines.push("  template variables:");
      for (const [k, d] of vars) lines.push(`    \${${k}}  ${d}`);
    }
  }
  const docs = optionDocs(p.options);
  lines.push(docs.length ? "  options:" : "  options: none");
  const w = Math.max(0, ...docs.map((d) => d.name.length));
  for (const d of docs) {
    lines.push(`    ${d.name.padEnd(w)}  ${d.summary}${d.description ? ` — ${d.description}` : ""}`);
  }
  if (pathOptionKeys(p.options).length > 0) lines.push(PATHS_NOTE);
  return lines.join("\n");
}

/**
 * `--describe NAME`: the description of a registered stage or control plugin, or of the stage plugin a module
 * defines when `name` is a path (relative to `baseDir`, default the working directory) or URL, e.g.
 * `./my_plugin.ts` (the module is loaded, and registered in `registry` as a pipeline file would). Throws an
 * Error saying what is known, with the closest names, when there is no such plugin.
 *
 * @example
 * ```ts
 * console.log(await describeNamed(createRegistry(), "jitter-buffer"));
 * console.log(await describeNamed(createRegistry(), "./examples/plugins/gain.ts"));
 * ```
 */
export async function describeNamed(registry: Registry, name: string, baseDir?: string): Promise<string> {
  if (isModuleReference(name)) return describePlugin(await registry.resolve(name, baseDir));
  const p = registry.get(name) ?? registry.listControls().find((c) => c.name === name) ??
    registry.listServices().find((c) => c.name === name);
  if (p) return describePlugin(p);
  const known = [...registry.list(), ...registry.listControls(), ...registry.listServices()].map((x) => x.name);
  throw new Error(
    `no plugin named "${name}"${didYouMean(name, known)}; known plugins: ${known.join(", ")}; ` +
      `a user plugin is described by its path, e.g. --describe ./my_plugin.ts`,
  );
}
