/**
 * Errors about configuration, with the file, JSON path and problem.
 *
 * @module
 */
import { fileUrlToPath, relative, SEP } from "./path.ts";
import { isOutOfFiles, outOfFilesHint } from "./open_files.ts";
import type { z } from "zod";
import type { OptionsError } from "./options.ts";

/** Where in a config file a problem is. */
export interface ConfigLocation {
  /** The config file, when known. */
  file?: string;
  /** JSON path such as `pipelines.send[2].ptime`. */
  path?: string;
}

/**
 * A configuration error: `FILE: JSON.PATH: problem`.
 *
 * @example
 * ```ts
 * new ConfigError("expected 10..60, got 7", { file: "caller.json", path: "pipelines.send[2].ptime" }).message;
 * // "caller.json: pipelines.send[2].ptime: expected 10..60, got 7"
 * ```
 */
export class ConfigError extends Error {
  /** The file the error is in. */
  readonly file?: string;
  /** JSON path inside the file. */
  readonly path?: string;
  /** The problem alone, without location. */
  readonly problem: string;

  /**
   * Creates the error.
   * @param problem what is wrong and, where possible, what to do
   * @param where file and JSON path
   * @param cause underlying error
   */
  constructor(problem: string, where: ConfigLocation = {}, cause?: unknown) {
    const prefix = [where.file, where.path].filter((x) => x).join(": ");
    super(prefix ? `${prefix}: ${problem}` : problem, cause === undefined ? undefined : { cause });
    this.name = "ConfigError";
    this.file = where.file;
    this.path = where.path;
    this.problem = problem;
  }
}

function pathToString(base: string, path: readonly PropertyKey[]): string {
  let out = base;
  for (const p of path) {
    if (typeof p === "number") out += `[${p}]`;
    else out += out ? `.${String(p)}` : String(p);
  }
  return out;
}

/** `expected at least 10, got 7`, `expected more than 0` (an exclusive bound), `expected at least 1 character`. */
function describeBound(i: z.core.$ZodIssue & Record<string, unknown>): string {
  const small = i.code === "too_small";
  const bound = String(small ? i.minimum : i.maximum);
  const input = i.input;
  let unit = "";
  if (i.origin === "string") unit = bound === "1" ? " character" : " characters";
  else if (i.origin === "array" || i.origin === "set") unit = bound === "1" ? " item" : " items";
  let words: string;
  if (i.exact === true) words = "exactly";
  else if (i.inclusive === false) words = small ? "more than" : "less than";
  else words = small ? "at least" : "at most";
  const got = input === undefined
    ? ""
    : unit && (typeof input === "string" || Array.isArray(input))
    ? `, got ${input.length}${unit.replace(/s$/, "")}${input.length === 1 ? "" : "s"}`
    : `, got ${JSON.stringify(input)}`;
  return `expected ${words} ${bound}${unit}${got}`;
}

function describeIssue(issue: z.core.$ZodIssue): string {
  const i = issue as z.core.$ZodIssue & Record<string, unknown>;
  switch (issue.code) {
    case "too_small":
    case "too_big":
      return describeBound(i);
    case "invalid_value":
      return `expected one of ${(i.values as unknown[]).map((v) => JSON.stringify(v)).join(", ")}${
        i.input !== undefined ? `, got ${JSON.stringify(i.input)}` : ""
      }`;
    case "unrecognized_keys":
      return `unknown option${(i.keys as string[]).length > 1 ? "s" : ""} ${
        (i.keys as string[]).map((k) => `"${k}"`).join(", ")
      } (see --describe for the options)`;
    case "invalid_type":
      return i.input === undefined
        ? `missing required option (expected ${i.expected})`
        : `expected ${i.expected}, got ${JSON.stringify(i.input)}`;
    default:
      return issue.message;
  }
}

/**
 * Formats the issues of an option schema's error as `path: problem` lines, e.g.
 * `pipelines.send[2].ptime: expected at most 60, got 70`.
 *
 * @param error what the schema's `safeParse` reported
 * @param base JSON path of the validated object, prefixed to each issue's path (e.g. `pipelines.send[2]`)
 *
 * @example
 * ```ts
 * import { z } from "./options.ts";
 * const r = z.object({ ptime: z.number().max(60) }).safeParse({ ptime: 70 }, { reportInput: true });
 * if (!r.success) formatZodIssues(r.error, "pipelines.send[2]"); // "pipelines.send[2].ptime: expected at most 60, got 70"
 * ```
 */
export function formatZodIssues(error: OptionsError, base: string): string {
  return error.issues.map((iss) => `${pathToString(base, iss.path)}: ${describeIssue(iss)}`).join("; ");
}

/** Directories of voxpipe's own code, as `file:` URL prefixes: its core (this folder) and its built-in plugins. */
const CORE_DIR = new URL("./", import.meta.url).href;
const PLUGINS_DIR = new URL("../plugins/", import.meta.url).href;

/** The errors `error` wraps, innermost (where it was first thrown) first. */
function causeChain(error: unknown): Error[] {
  const chain: Error[] = [];
  for (let e = error; e instanceof Error && !chain.includes(e); e = e.cause) chain.push(e);
  return chain.reverse();
}

/**
 * An error as a log line or a fatal message: its stack (the message when it has none), unless it or an error it wraps
 * (`cause`) says no file descriptor is left: then only its message, with what to do (`raise the limit (ulimit -n)`).
 * Reading a stack makes Deno map it through the modules' sources, which may need a descriptor, and with none left
 * Deno 2.9 panics doing so (the process ends); see {@linkcode stackLocation}.
 *
 * @example
 * ```ts
 * try {
 *   Deno.openSync("/dev/null");
 * } catch (e) {
 *   console.error(`failed: ${errorReport(e)}`); // at EMFILE: "failed: Too many open files (os error 24)... (the process is out of ...)"
 * }
 * ```
 */
export function errorReport(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const chain = causeChain(error);
  const out = chain.find(isOutOfFiles);
  if (out !== undefined) {
    // The message says what failed; the advice is added unless the message has it already.
    const advice = outOfFilesHint(out);
    return error.message.includes(advice.trim().slice(1, -1)) ? error.message : `${error.message}${advice}`;
  }
  return error.stack ?? error.message;
}

const FRAME_RE = /((?:file|https?):\/\/[^\s()]+?):(\d+):(\d+)\)?\s*$/;

/**
 * Where `error` was thrown, as `path:line:column`, when that is in code voxpipe's core called: scanning its stack
 * (or the stack of the error it wraps, `cause`, innermost first) from where it was thrown down to the first frame in
 * voxpipe's core, the first frame outside voxpipe's core (`outside: "core"`, the default: a built-in plugin or a
 * user plugin), or outside voxpipe altogether, core and built-in plugins (`"voxpipe"`: the code of a user plugin).
 * Frames of the runtime (`ext:`, `node:`) and of npm packages are passed over. A local file is named relative to
 * the working directory when it is below it. Undefined when no frame qualifies (the error came from the core).
 *
 * @example
 * ```ts
 * // an exception thrown by a user plugin's process(), wrapped in a StageError:
 * stackLocation(stageError, { outside: "voxpipe" }); // "my_plugin.ts:12:11"
 * ```
 */
export function stackLocation(error: unknown, options: { outside?: "core" | "voxpipe" } = {}): string | undefined {
  const outside = options.outside ?? "core";
  const chain = causeChain(error);
  // Out of descriptors: reading a stack makes Deno map it, which may need to read a module again, and with no
  // descriptor left Deno 2.9 panics doing so (stacker, lib.rs:416), ending the process. The place is not worth it.
  if (chain.some(isOutOfFiles)) return undefined;
  for (const e of chain) {
    for (const line of (e.stack ?? "").split("\n").slice(1)) {
      const m = FRAME_RE.exec(line.trim());
      if (!m) continue;
      const url = m[1];
      if (url.startsWith(CORE_DIR)) break; // below here: who called the core, not where the error came from
      if (url.includes("/node_modules/")) continue;
      if (outside === "voxpipe" && url.startsWith(PLUGINS_DIR)) continue;
      let where = url;
      if (url.startsWith("file:")) {
        try {
          const path = fileUrlToPath(url);
          const rel = relative(Deno.cwd(), path);
          where = rel && !rel.startsWith(`..${SEP}`) && rel !== ".." ? rel : path;
        } catch { /* keep the URL */ }
      }
      return `${where}:${m[2]}:${m[3]}`;
    }
  }
  return undefined;
}
