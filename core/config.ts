/**
 * Pipeline files: JSON with declared parameters, named chains of stages, and an
 * optional control section.
 *
 * ```json
 * {
 *   "description": "Transcode a file through G.711",
 *   "parameters": {
 *     "file": { "default": "examples/audio/hello.wav", "description": "input audio file" },
 *     "codec": { "default": "PCMU", "description": "G.711 law: PCMU or PCMA" }
 *   },
 *   "pipelines": {
 *     "main": [
 *       { "use": "file-source", "path": "${file}" },
 *       { "use": "wav-sink", "path": "out.wav" }
 *     ]
 *   }
 * }
 * ```
 *
 * A string that is exactly `"${name}"` takes the variable's typed value (number,
 * boolean, string); `${name}` inside a longer string is interpolated; `$${` writes
 * a literal `${`.
 *
 * `when` makes chains conditional: `"when": {"greeting": "${greeting}", "record_stereo": ["${record}",
 * "${record_mode} == stereo"]}` builds the chain `greeting` only when the parameter `greeting` is set, and
 * `record_stereo` only when both conditions hold (see {@linkcode conditionHolds}). For a file with a control
 * section, conditions are evaluated per call, with the call's variables.
 *
 * @module
 */
import { dirname, resolve } from "./path.ts";
import { locateJsonError } from "./_json_error.ts";
import { ConfigError } from "./errors.ts";
import type { StageConfig } from "./pipeline.ts";

/** A declared parameter of a pipeline file. */
export interface ParameterDecl {
  /** Default value; absent means the parameter is required. */
  default?: string | number | boolean;
  /** One line for `--help`-style listings. */
  description?: string;
  /** Value type (default: the default's type, else string). */
  type?: "string" | "number" | "boolean";
}

/** The control section of a pipeline file. */
export interface ControlConfig {
  /** Control plugin name (e.g. `sip`). */
  use: string;
  /** Control plugin options. */
  [option: string]: unknown;
}

/** One entry of a pipeline file's `services` section. */
export interface ServiceConfig {
  /** Service plugin name (e.g. `ws-bridge`). */
  use: string;
  /** Service plugin options. */
  [option: string]: unknown;
}

/** A loaded, validated pipeline file. */
export interface PipelineFile {
  /** Absolute path of the file (or a label for in-memory configs). */
  path: string;
  /** Directory of the file: user plugin paths resolve against it. */
  dir: string;
  /** Description from the file. */
  description?: string;
  /** Declared parameters. */
  parameters: Record<string, ParameterDecl>;
  /** Named chains (templates when a control section is present). */
  pipelines: Record<string, StageConfig[]>;
  /** Control section, if any. */
  control?: ControlConfig;
  /** Services run beside the control plugin, on its calls (a WebSocket bridge, the console). */
  services?: ServiceConfig[];
  /** Conditions of chains built only when they hold (chain name → condition, or conditions that must all hold). */
  when?: Record<string, string[]>;
}

/** Variable values used when instantiating a chain. */
export type Variables = Record<string, string | number | boolean>;

const TOP_KEYS = new Set([
  "$schema",
  "description",
  "parameters",
  "pipelines",
  "control",
  "services",
  "when",
  "name",
]);
const NAME_RE = /^[A-Za-z_][A-Za-z0-9_]*$/;
const VAR_RE = /\$\{([A-Za-z_][A-Za-z0-9_.]*)\}/g;
const WHOLE_RE = /^\$\{([A-Za-z_][A-Za-z0-9_.]*)\}$/;

/**
 * Reads and validates a pipeline file. Errors name the file, the JSON path and the problem (a rejection, never a throw).
 */
export function loadPipelineFile(path: string): Promise<PipelineFile> {
  // The Promise constructor turns what readPipelineFile throws into the rejection.
  return new Promise((done) => done(readPipelineFile(path)));
}

/**
 * {@linkcode loadPipelineFile}'s work. The file is read once, at start-up, before anything runs: the synchronous call
 * saves the asynchronous one's hop to Deno's I/O threads and back (the process's first: ~1.5 ms here).
 */
function readPipelineFile(path: string): PipelineFile {
  const abs = resolve(path);
  let text: string;
  try {
    text = Deno.readTextFileSync(abs);
  } catch (e) {
    const why = e instanceof Deno.errors.NotFound ? "no such file" : e instanceof Error ? e.message : String(e);
    throw new ConfigError(`cannot read pipeline file: ${why}`, { file: path });
  }
  // A byte order mark (some Windows editors write one) is not JSON: JSON.parse refuses it without saying where.
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    const where = locateJsonError(text);
    if (where) {
      throw new ConfigError(`not valid JSON at line ${where.line}, column ${where.column}: ${where.problem}`, {
        file: path,
      });
    }
    throw new ConfigError(`not valid JSON: ${e instanceof Error ? e.message : e}`, { file: path });
  }
  // Two chains of one name: JSON.parse keeps the last one without a word. The scan (~0.1 ms for a shipped file) finds
  // the second and where the first is.
  const dup = locateJsonError(text, { uniqueKeysAt: ["pipelines"], what: "chain name" });
  if (dup) throw new ConfigError(`line ${dup.line}, column ${dup.column}: ${dup.problem}`, { file: path });
  return parsePipelineConfig(json, abs, path);
}

/**
 * Validates a pipeline config object (already parsed JSON).
 *
 * @param json the config
 * @param path absolute file path (for resolving relative plugin paths)
 * @param label how to name the file in errors (default: `path`)
 */
export function parsePipelineConfig(json: unknown, path: string, label = path): PipelineFile {
  const err = (problem: string, p = "") => new ConfigError(problem, { file: label, path: p || undefined });
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    throw err('expected a JSON object with a "pipelines" section');
  }
  const obj = json as Record<string, unknown>;
  for (const k of Object.keys(obj)) {
    if (!TOP_KEYS.has(k)) {
      throw err(
        `unknown top-level key "${k}" (expected: ${[...TOP_KEYS].filter((x) => x !== "$schema").join(", ")})`,
        k,
      );
    }
  }
  if (obj.description !== undefined && typeof obj.description !== "string") {
    throw err("expected a string", "description");
  }
  const parameters: Record<string, ParameterDecl> = {};
  if (obj.parameters !== undefined) {
    if (typeof obj.parameters !== "object" || obj.parameters === null || Array.isArray(obj.parameters)) {
      throw err("expected an object mapping parameter names to { default, description }", "parameters");
    }
    for (const [name, decl] of Object.entries(obj.parameters as Record<string, unknown>)) {
      const p = `parameters.${name}`;
      if (!NAME_RE.test(name)) {
        throw err("a parameter name must be letters, digits and _ (not starting with a digit)", p);
      }
      if (typeof decl !== "object" || decl === null || Array.isArray(decl)) {
        throw err('expected { "default": ..., "description": ... }', p);
      }
      const d = decl as Record<string, unknown>;
      for (const k of Object.keys(d)) {
        if (!["default", "description", "type"].includes(k)) throw err(`unknown key "${k}"`, `${p}.${k}`);
      }
      if (d.default !== undefined && !["string", "number", "boolean"].includes(typeof d.default)) {
        throw err("a default must be a string, number or boolean", `${p}.default`);
      }
      if (d.description !== undefined && typeof d.description !== "string") {
        throw err("expected a string", `${p}.description`);
      }
      if (d.type !== undefined && !["string", "number", "boolean"].includes(d.type as string)) {
        throw err('expected "string", "number" or "boolean"', `${p}.type`);
      }
      const type = (d.type as ParameterDecl["type"]) ??
        (d.default === undefined ? "string" : typeof d.default as ParameterDecl["type"]);
      if (d.default !== undefined && typeof d.default !== type) {
        throw err(`the default is a ${typeof d.default} but the type is ${type}`, `${p}.default`);
      }
      parameters[name] = {
        ...(d.default !== undefined ? { default: d.default as ParameterDecl["default"] } : {}),
        ...(d.description !== undefined ? { description: d.description as string } : {}),
        type,
      };
    }
  }
  if (obj.pipelines === undefined) throw err('missing "pipelines": declare at least one chain of stages');
  if (typeof obj.pipelines !== "object" || obj.pipelines === null || Array.isArray(obj.pipelines)) {
    throw err('expected an object mapping chain names to arrays of stages, e.g. {"main": [...]}', "pipelines");
  }
  const pipelines: Record<string, StageConfig[]> = {};
  for (const [name, chain] of Object.entries(obj.pipelines as Record<string, unknown>)) {
    const p = `pipelines.${name}`;
    if (!NAME_RE.test(name)) throw err("a chain name must be letters, digits and _", p);
    if (!Array.isArray(chain) || chain.length === 0) throw err("expected a non-empty array of stages", p);
    chain.forEach((st, i) => {
      if (typeof st !== "object" || st === null || Array.isArray(st)) {
        throw err('expected a stage object like {"use": "wav-source", ...}', `${p}[${i}]`);
      }
      const use = (st as Record<string, unknown>).use;
      if (use === undefined) throw err('missing "use": name the plugin of this stage', `${p}[${i}]`);
      if (typeof use !== "string" || !use) {
        throw err(
          `"use" must be a plugin name or module path (a non-empty string), got ${JSON.stringify(use)}`,
          `${p}[${i}].use`,
        );
      }
    });
    pipelines[name] = chain as StageConfig[];
  }
  if (Object.keys(pipelines).length === 0 && obj.control === undefined) {
    throw err("declare at least one chain of stages (only a file with a control section may have none)", "pipelines");
  }
  let control: ControlConfig | undefined;
  if (obj.control !== undefined) {
    const c = obj.control as Record<string, unknown>;
    if (typeof c !== "object" || c === null || Array.isArray(c) || typeof c.use !== "string") {
      throw err('expected {"use": "<control plugin>", ...options}', "control");
    }
    control = c as ControlConfig;
  }
  let services: ServiceConfig[] | undefined;
  if (obj.services !== undefined) {
    if (!Array.isArray(obj.services)) {
      throw err('expected an array of {"use": "<service plugin>", ...options}', "services");
    }
    if (!control) {
      throw err(
        'services run on the calls of a control plugin: add a "control" section (e.g. {"use": "sip", ...})',
        "services",
      );
    }
    services = obj.services.map((v, i) => {
      if (
        typeof v !== "object" || v === null || Array.isArray(v) ||
        typeof (v as Record<string, unknown>).use !== "string"
      ) {
        throw err('expected {"use": "<service plugin>", ...options}', `services[${i}]`);
      }
      return v as ServiceConfig;
    });
  }
  let when: Record<string, string[]> | undefined;
  if (obj.when !== undefined) {
    if (typeof obj.when !== "object" || obj.when === null || Array.isArray(obj.when)) {
      throw err('expected an object mapping chain names to conditions, e.g. {"greeting": "${greeting}"}', "when");
    }
    when = {};
    for (const [name, cond] of Object.entries(obj.when as Record<string, unknown>)) {
      const p = `when.${name}`;
      if (!(name in pipelines)) {
        throw err(`no chain named "${name}" (chains: ${Object.keys(pipelines).join(", ") || "none"})`, p);
      }
      const list = Array.isArray(cond) ? cond : [cond];
      if (list.length === 0 || !list.every((c) => typeof c === "string" && c.trim() !== "")) {
        throw err(
          'expected a condition string ("${record}", "${record_mode} == stereo", "${x} != off") or an array of them',
          p,
        );
      }
      when[name] = list as string[];
    }
  }
  const file: PipelineFile = {
    path,
    dir: dirname(path),
    parameters,
    pipelines,
    ...(obj.description ? { description: obj.description as string } : {}),
    ...(control ? { control } : {}),
    ...(services ? { services } : {}),
    ...(when ? { when } : {}),
  };
  return file;
}

/** Values that make a condition false (any case, after trimming). */
const FALSE_VALUES = new Set(["", "0", "false", "no", "off"]);

/**
 * Whether a chain condition of a pipeline file's `when` holds with `vars`: `A == B` and `A != B` compare the two
 * sides as text after substitution (trimmed); anything else holds unless its value is empty, `0`, `false`, `no` or
 * `off`. The operator is read from the condition as written, so a value that contains `==` compares nothing.
 *
 * @example
 * ```ts
 * conditionHolds("${mode} == stereo", { mode: "stereo" }, { path: "when.x" }); // true
 * conditionHolds("${greeting}", { greeting: "" }, { path: "when.greeting" }); // false
 * ```
 */
export function conditionHolds(cond: string, vars: Variables, where: { file?: string; path: string }): boolean {
  const text = (v: string) => String(substitute(v, vars, where)).trim();
  const m = /^(.*?)\s*(==|!=)\s*(.*)$/.exec(cond);
  if (m) {
    const same = text(m[1]) === text(m[3]);
    return m[2] === "==" ? same : !same;
  }
  return !FALSE_VALUES.has(text(cond).toLowerCase());
}

/**
 * Parses `--set name=value` pairs against the declared parameters, converting
 * each value to the parameter's type, and fills in defaults. Throws when a name
 * is not declared, a value has the wrong type, or a required one is missing.
 */
export function resolveParameters(file: PipelineFile, sets: string[] = []): Variables {
  const values: Variables = {};
  const declared = Object.keys(file.parameters);
  const list = declared.length ? declared.join(", ") : "(this file declares none)";
  for (const s of sets) {
    const eq = s.indexOf("=");
    if (eq <= 0) throw new ConfigError(`--set ${s}: expected name=value`, { file: file.path });
    const name = s.slice(0, eq);
    const raw = s.slice(eq + 1);
    const decl = file.parameters[name];
    if (!decl) {
      throw new ConfigError(`--set ${name}: no such parameter; parameters: ${list}`, { file: file.path });
    }
    values[name] = convert(raw, decl.type ?? "string", `--set ${name}`, file.path);
  }
  for (const [name, decl] of Object.entries(file.parameters)) {
    if (name in values) continue;
    if (decl.default === undefined) {
      throw new ConfigError(
        `parameter "${name}" is required${decl.description ? ` (${decl.description})` : ""}: pass --set ${name}=...`,
        { file: file.path },
      );
    }
    values[name] = decl.default;
  }
  return values;
}

function convert(raw: string, type: string, what: string, file: string): string | number | boolean {
  if (type === "number") {
    const n = Number(raw);
    if (raw.trim() === "" || !Number.isFinite(n)) {
      throw new ConfigError(`${what}: expected a number, got "${raw}"`, { file });
    }
    return n;
  }
  if (type === "boolean") {
    if (["true", "1", "yes", "on"].includes(raw)) return true;
    if (["false", "0", "no", "off"].includes(raw)) return false;
    throw new ConfigError(`${what}: expected true or false, got "${raw}"`, { file });
  }
  return raw;
}

/** Every `${name}` referenced in a JSON value, with its JSON path. */
export function findVariables(value: unknown, path = ""): { name: string; path: string }[] {
  const out: { name: string; path: string }[] = [];
  const walk = (v: unknown, p: string) => {
    if (typeof v === "string") {
      for (const m of v.replaceAll("$${", "").matchAll(VAR_RE)) out.push({ name: m[1], path: p });
    } else if (Array.isArray(v)) v.forEach((x, i) => walk(x, `${p}[${i}]`));
    else if (v && typeof v === "object") {
      for (const [k, x] of Object.entries(v)) walk(x, p ? `${p}.${k}` : k);
    }
  };
  walk(value, path);
  return out;
}

/**
 * Replaces `${name}` references in a JSON value with variable values. Unknown
 * variables are an error naming the file and JSON path.
 */
export function substitute<T>(value: T, vars: Variables, where: { file?: string; path: string }): T {
  return compileTemplate(value, where.path)(lookupIn(vars, where.file));
}

/**
 * Gives the value of variable `name`, referenced at JSON path `path` of a template, or throws a
 * {@linkcode ConfigError} (see {@linkcode unknownVariable}).
 */
export type VariableLookup = (name: string, path: string) => string | number | boolean;

/**
 * A JSON value with `${name}` references, compiled by {@linkcode compileTemplate}: each call returns a fresh copy
 * with the references filled from `lookup`, as {@linkcode substitute} would.
 */
export type CompiledTemplate<T> = (lookup: VariableLookup) => T;

/**
 * Compiles a JSON value with `${name}` references once, for filling it many times (a call's chains): the text is
 * scanned here, so that a fill only copies the value and looks up its references, left to right. A string that is one
 * reference alone takes the variable's value as it is (a number stays a number); a reference inside text is written
 * as text; `$${` is a literal `${`. `path` is the value's JSON path, for errors.
 */
export function compileTemplate<T>(value: T, path: string): CompiledTemplate<T> {
  return compileNode(value, path) as CompiledTemplate<T>;
}

/** A lookup in `vars`, whose error lists them (see {@linkcode unknownVariable}). */
export function lookupIn(vars: Variables, file?: string): VariableLookup {
  return (name, path) => {
    if (Object.hasOwn(vars, name)) return vars[name];
    throw unknownVariable(name, Object.keys(vars), { file, path });
  };
}

/** The error of a reference to `name`, which none of the variables `known` is. */
export function unknownVariable(
  name: string,
  known: Iterable<string>,
  where: { file?: string; path: string },
): ConfigError {
  const list = [...known].sort().join(", ");
  return new ConfigError(
    `unknown variable \${${name}}: declare it under "parameters" (known here: ${list || "none"})`,
    where,
  );
}

function compileNode(v: unknown, p: string): (lookup: VariableLookup) => unknown {
  if (typeof v === "string") return compileText(v, p);
  if (Array.isArray(v)) {
    const items = v.map((x, i) => compileNode(x, `${p}[${i}]`));
    return (lookup) => items.map((item) => item(lookup));
  }
  if (v && typeof v === "object") {
    const keys = Object.keys(v);
    const values = keys.map((k) => compileNode((v as Record<string, unknown>)[k], p ? `${p}.${k}` : k));
    return (lookup) => {
      const o: Record<string, unknown> = {};
      for (let i = 0; i < keys.length; i++) o[keys[i]] = values[i](lookup);
      return o;
    };
  }
  return () => v;
}

function compileText(v: string, p: string): (lookup: VariableLookup) => unknown {
  const whole = v.match(WHOLE_RE);
  if (whole) {
    const name = whole[1];
    return (lookup) => lookup(name, p);
  }
  if (!v.includes("${")) return () => v;
  // Literal pieces and the names referenced between them, in order; `$${` (split on) is a literal `${`.
  const pieces: string[] = [];
  const names: string[] = [];
  let text = "";
  v.split("$${").forEach((part, i) => {
    if (i > 0) text += "${";
    let at = 0;
    for (const m of part.matchAll(VAR_RE)) {
      pieces.push(text + part.slice(at, m.index));
      names.push(m[1]);
      text = "";
      at = m.index + m[0].length;
    }
    text += part.slice(at);
  });
  return (lookup) => {
    let out = "";
    for (let i = 0; i < names.length; i++) out += pieces[i] + String(lookup(names[i], p));
    return out + text;
  };
}

/** Built-in variables available in every pipeline file. */
export function builtinVariables(file: PipelineFile): Variables {
  return { "pipeline.dir": file.dir, "cwd": Deno.cwd() };
}

/**
 * Checks, at load time, that every `${name}` in the file refers to a declared
 * parameter, a built-in variable, or a variable the control plugin provides.
 */
export function checkVariables(file: PipelineFile, provided: string[] = []): void {
  const known = new Set([...Object.keys(file.parameters), "pipeline.dir", "cwd", ...provided]);
  for (
    const ref of findVariables({
      pipelines: file.pipelines,
      control: file.control,
      services: file.services,
      when: file.when,
    })
  ) {
    if (known.has(ref.name)) continue;
    throw new ConfigError(
      `unknown variable \${${ref.name}}: declare it under "parameters"${
        provided.length ? ` or use one the control plugin provides (${provided.join(", ")})` : ""
      }`,
      { file: file.path, path: ref.path },
    );
  }
}
