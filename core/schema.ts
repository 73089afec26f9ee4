/**
 * JSON Schema for pipeline files, generated from the plugins' zod schemas, and
 * human-readable descriptions of plugins for `--list-plugins` / `--describe`.
 *
 * @module
 */
import { z } from "zod";
import type { AnyControlPlugin } from "./control.ts";
import { formatToString } from "./frame.ts";
import type { OptionsSchema } from "./options.ts";
import type { Registry } from "./registry.ts";
import type { AnyPlugin } from "./stage.ts";

/** A JSON Schema document (draft 2020-12), as a plain JSON object. */
export type JsonSchema = Record<string, unknown>;

/** A string containing `${...}`, allowed wherever a value is, since parameters are substituted before validation. */
const VARIABLE_REF: JsonSchema = { type: "string", pattern: "\\$\\{[A-Za-z_][A-Za-z0-9_.]*\\}" };

/** JSON Schema of a plugin's options (input side: defaults make fields optional). */
export function optionsJsonSchema(schema: OptionsSchema): JsonSchema {
  return z.toJSONSchema(schema, { io: "input", unrepresentable: "any" }) as JsonSchema;
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
      pipelines: {
        type: "object",
        additionalProperties: { type: "array", minItems: 2, items: { anyOf: [...stageVariants, userPlugin] } },
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

function typeOf(s: JsonSchema): string {
  if (s.enum) return (s.enum as unknown[]).map((v) => JSON.stringify(v)).join(" | ");
  if (s.const !== undefined) return JSON.stringify(s.const);
  if (s.anyOf) return (s.anyOf as JsonSchema[]).map(typeOf).join(" | ");
  if (s.type === "array") return `${typeOf((s.items as JsonSchema) ?? {})}[]`;
  return String(s.type ?? "any");
}

function rangeOf(s: JsonSchema): string {
  const lo = s.minimum ?? s.exclusiveMinimum;
  const hi = s.maximum ?? s.exclusiveMaximum;
  if (lo === undefined && hi === undefined) return "";
  const l = lo === undefined ? "" : `${s.exclusiveMinimum !== undefined ? ">" : ""}${lo}`;
  const h = hi === undefined ? "" : `${s.exclusiveMaximum !== undefined ? "<" : ""}${hi}`;
  return `${l}..${h}`;
}

/** A multi-line description of one plugin: formats and every option with type, range, default. */
export function describePlugin(p: AnyPlugin | AnyControlPlugin): string {
  const s = optionsJsonSchema(p.options);
  const props = (s.properties as Record<string, JsonSchema>) ?? {};
  const required = new Set((s.required as string[]) ?? []);
  const lines = [`${p.name} (${p.kind}): ${p.description}`];
  if (p.kind !== "control") {
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
  const names = Object.keys(props);
  lines.push(names.length ? "  options:" : "  options: none");
  const w = Math.max(0, ...names.map((n) => n.length));
  for (const [name, o] of Object.entries(props)) {
    const bits = [typeOf(o)];
    const r = rangeOf(o);
    if (r) bits.push(`range ${r}`);
    if (o.default !== undefined) bits.push(`default ${JSON.stringify(o.default)}`);
    else if (required.has(name)) bits.push("required");
    lines.push(`    ${name.padEnd(w)}  ${bits.join(", ")}${o.description ? ` — ${o.description}` : ""}`);
  }
  return lines.join("\n");
}
