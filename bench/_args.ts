/**
 * The command line of the `bench/` scripts: `node:util`'s `parseArgs`, strict (arguments after the options only where
 * a script says it takes some). `--help` (`-h`) prints a usage made from the script's own options and the opening of
 * its module comment. A bad option (unknown, or a value missing or given to a flag) prints what was wrong and that
 * usage, exit code 2, instead of an uncaught error with a stack trace; `benchFail` does the same for what a script
 * checks itself.
 *
 * ```ts
 * const { values } = benchArgs(import.meta.url, { seconds: { type: "string", default: "600" } });
 * ```
 *
 * @module
 */
import { parseArgs, type ParseArgsOptionsConfig } from "node:util";
import { fileURLToPath } from "node:url";
import { basename, dirname } from "node:path";

/** What `parseArgs` returns for `options`, strict (`positionals` is empty unless the script takes some). */
export type BenchArgs<O extends ParseArgsOptionsConfig> = ReturnType<
  typeof parseArgs<{ args: string[]; options: O; strict: true; allowPositionals: true }>
>;

/** The optional part of {@linkcode benchArgs}. */
export interface BenchArgsOptions {
  /**
   * The script takes arguments after its options, shown so in the usage (e.g. `[FRAMES]`, `MODULE...`); without it, an
   * argument that is not an option is refused.
   */
  positionals?: string;
  /** The arguments (default `Deno.args`). */
  args?: string[];
}

/** The script's name as the usage shows it (`bench/offline.ts`). */
function scriptName(scriptUrl: string): string {
  const path = fileURLToPath(scriptUrl);
  return `${basename(dirname(path))}/${basename(path)}`;
}

/**
 * The opening of the module comment (the `/** ... *\/` block the file opens with): its first paragraph, and the
 * next ones while a paragraph has not ended a sentence (a paragraph ending in "for" or ":" introduces a list), at
 * most {@linkcode SUMMARY_LINES} lines, as written; undefined when the file opens with no such comment.
 */
export function docSummary(source: string): string | undefined {
  const m = /^\s*\/\*\*([\s\S]*?)\*\//.exec(source);
  if (!m) return undefined;
  const lines = m[1].split("\n").map((l) => l.replace(/^\s*\* ?/, "").trimEnd());
  const out: string[] = [];
  for (const l of lines) {
    if (l.startsWith("@") || out.length >= SUMMARY_LINES) break;
    if (l.trim() === "") {
      if (out.length === 0) continue;
      if (/[.!?)]$/.test(out[out.length - 1])) break;
    }
    out.push(l);
  }
  while (out.length && out[out.length - 1].trim() === "") out.pop();
  return out.length ? out.join("\n") : undefined;
}

/** The most lines of the module comment a usage shows. */
export const SUMMARY_LINES = 16;

/**
 * The usage text of a script with these options (and `positionals`, as {@linkcode BenchArgsOptions} has them):
 * `usage: deno run -A bench/NAME.ts [--OPT VALUE] ... [POSITIONALS]`, the opening
 * of its module comment (`source`, see {@linkcode docSummary}), and one line per option with its default.
 */
export function benchUsage(
  scriptUrl: string,
  options: ParseArgsOptionsConfig,
  source?: string,
  positionals?: string,
): string {
  const name = scriptName(scriptUrl);
  const entries = Object.entries(options);
  const shape = ([k, o]: [string, ParseArgsOptionsConfig[string]]) =>
    o.type === "boolean" ? `--${k}` : `--${k} VALUE${o.multiple ? " ..." : ""}`;
  const out = [
    `usage: deno run -A ${name}${entries.map((e) => ` [${shape(e)}]`).join("")}${positionals ? ` ${positionals}` : ""}`,
  ];
  const summary = source === undefined ? undefined : docSummary(source);
  if (summary) out.push("", summary);
  if (entries.length) {
    out.push("", "options:");
    const width = Math.max(...entries.map((e) => shape(e).length));
    for (const e of entries) {
      const d = e[1].default;
      const text = Array.isArray(d) ? d.join(",") : d === undefined || d === false ? "" : String(d);
      const def = text === "" ? "" : `  (default ${text})`;
      out.push(`  ${def ? shape(e).padEnd(width) : shape(e)}${def}`);
    }
  }
  out.push("", `What it measures and how: the comment at the top of ${name}, and bench/README.md.`);
  return out.join("\n");
}

/**
 * Parses the arguments (default `Deno.args`) against `options`, strictly. `--help` or `-h` prints the usage
 * ({@linkcode benchUsage}) and exits 0; an argument `parseArgs` refuses prints its message and the usage on stderr and
 * exits 2 (see {@linkcode benchFail}).
 *
 * @param scriptUrl the script's `import.meta.url` (its name and module comment make the usage)
 */
export function benchArgs<const O extends ParseArgsOptionsConfig>(
  scriptUrl: string,
  options: O,
  opts: BenchArgsOptions = {},
): BenchArgs<O> {
  const args = opts.args ?? Deno.args;
  if (args.includes("--help") || args.includes("-h")) {
    console.log(usageOf(scriptUrl, options, opts.positionals));
    Deno.exit(0);
  }
  try {
    return parseArgs({ args, options, strict: true, allowPositionals: opts.positionals !== undefined });
  } catch (e) {
    benchFail(scriptUrl, options, e instanceof Error ? e.message : String(e), opts.positionals);
  }
}

/**
 * Refuses the command line: prints `bench/NAME.ts: MESSAGE`, then the usage, on stderr, and exits 2. For what
 * `parseArgs` cannot check (a number out of range, a missing argument).
 */
export function benchFail(
  scriptUrl: string,
  options: ParseArgsOptionsConfig,
  message: string,
  positionals?: string,
): never {
  console.error(`${scriptName(scriptUrl)}: ${message}\n\n${usageOf(scriptUrl, options, positionals)}`);
  Deno.exit(2);
}

/** The usage, with the summary of the script's own module comment when the file reads. */
function usageOf(scriptUrl: string, options: ParseArgsOptionsConfig, positionals?: string): string {
  let source: string | undefined;
  try {
    source = Deno.readTextFileSync(fileURLToPath(scriptUrl));
  } catch { /* no summary then */ }
  return benchUsage(scriptUrl, options, source, positionals);
}
