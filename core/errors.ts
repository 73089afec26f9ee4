/**
 * Errors about configuration, with the file, JSON path and problem.
 *
 * @module
 */
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

function describeIssue(issue: z.core.$ZodIssue): string {
  const i = issue as z.core.$ZodIssue & Record<string, unknown>;
  switch (issue.code) {
    case "too_small":
    case "too_big": {
      const input = (i as { input?: unknown }).input;
      const bound = issue.code === "too_small" ? `at least ${i.minimum}` : `at most ${i.maximum}`;
      return input === undefined ? `expected ${bound}` : `expected ${bound}, got ${JSON.stringify(input)}`;
    }
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
