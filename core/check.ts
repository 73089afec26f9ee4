/**
 * What checking a pipeline file found (`PipelineRunner.check()`, the CLI's
 * `--check`): the parameters, the control plugin and its options, and each
 * chain as it would run, stage by stage, with the formats negotiated and the
 * modes the stages chose. Nothing was opened to find it out: no socket, no
 * device stream, no file written.
 *
 * @module
 */
import type { Variables } from "./config.ts";
import { formatToString } from "./frame.ts";
import type { StagePlan } from "./pipeline.ts";

/** One chain of a checked file. */
export interface ChainCheck {
  /** Chain name (the key under `pipelines`). */
  name: string;
  /** True when it ends in a real-time sink (a device or the network): it runs in real time. */
  realtimeSink: boolean;
  /** Its stages. */
  stages: StagePlan[];
}

/** The report of a checked pipeline file. */
export interface CheckReport {
  /** The file (as given). */
  file: string;
  /** The file's description, if any. */
  description?: string;
  /** The declared parameters with the values they would run with (defaults and `--set`). */
  parameters: Variables;
  /** The control section, when the file has one. */
  control?: {
    /** Control plugin name. */
    use: string;
    /** Its options, validated, defaults filled in. */
    options: Record<string, unknown>;
    /**
     * The example values of the variables a call fills in that the chain templates were built with; absent when
     * the plugin declares none (its templates are then checked only when a call builds them).
     */
    examples?: Variables;
  };
  /** The services the file starts beside its control plugin, with their validated options. */
  services?: { use: string; options: Record<string, unknown> }[];
  /** What would fail in some calls only (e.g. a codec the control plugin allows that a template cannot handle). */
  warnings: string[];
  /** The chains as they would run (for a control section: as each call would build them). */
  chains: ChainCheck[];
  /** Chains the file's `when` leaves out with these values (not built, not checked). */
  skipped?: string[];
}

function valueText(v: unknown): string {
  return typeof v === "string" ? v : JSON.stringify(v);
}

/** Names of options and parameters whose values are secrets (a password, a token, `user:password` lists). */
const SECRET_NAME = /(^|[_.-])(password|passwd|secret|token|users)$/i;

/** `key=value`, the value masked when the name says it is a secret (a report is pasted into issues and logs). */
function entryText([k, v]: [string, unknown]): string {
  return `${k}=${SECRET_NAME.test(k) && v !== "" && v !== undefined ? "(hidden)" : valueText(v)}`;
}

/**
 * The report as lines for a terminal: the file, its parameters, the control plugin and its options, then each
 * chain with one line per stage (index, label, plugin, the format it produces, what it will do). Values of
 * secrets (names ending in password, secret, token or users) read `(hidden)`.
 *
 * @example
 * ```ts
 * const runner = await PipelineRunner.load("pipelines/caller.json", { registry: createRegistry() });
 * console.log(formatCheckReport(await runner.check()).join("\n"));
 * ```
 */
export function formatCheckReport(report: CheckReport): string[] {
  const lines = [`${report.file}: OK (checked without opening a socket, a device or a file for writing)`];
  if (report.description) lines.push(`  ${report.description}`);
  const params = Object.entries(report.parameters);
  if (params.length) lines.push(`parameters: ${params.map(entryText).join(", ")}`);
  if (report.control) {
    const c = report.control;
    lines.push(`control: ${c.use}: ${Object.entries(c.options).map(entryText).join(", ")}`);
    lines.push(
      c.examples
        ? `  each call builds the chains below; checked with example values: ${
          Object.entries(c.examples).map(([k, v]) => `${k}=${valueText(v)}`).join(", ")
        }`
        : `  each call builds the chains below (${c.use} gives no example values: they are checked when a call comes)`,
    );
  }
  for (const sv of report.services ?? []) {
    lines.push(`service: ${sv.use}: ${Object.entries(sv.options).map(entryText).join(", ")}`);
  }
  for (const w of report.warnings) lines.push(`warning: ${w}`);
  for (const name of report.skipped ?? []) lines.push(`chain "${name}": left out (its "when" does not hold)`);
  for (const chain of report.chains) {
    const last = chain.stages.at(-1);
    const how = chain.realtimeSink
      ? `runs in real time: ends in ${last?.use}`
      : `ends in ${last?.use}: not paced by a real-time sink`;
    lines.push(`chain "${chain.name}" (${how})`);
    const lw = Math.max(...chain.stages.map((s) => stageName(s).length));
    const fw = Math.max(...chain.stages.map((s) => formatText(s).length));
    for (const s of chain.stages) {
      const note = s.note ? `  ${s.note}` : "";
      lines.push(
        `  ${String(s.index).padStart(2)} ${stageName(s).padEnd(lw)}  ${formatText(s).padEnd(fw)}${note}`.trimEnd(),
      );
    }
  }
  return lines;
}

function stageName(s: StagePlan): string {
  return s.label === s.use ? s.use : `${s.label} (${s.use})`;
}

function formatText(s: StagePlan): string {
  if (s.output) return `→ ${formatToString(s.output)}`;
  if (s.kind === "sink" && s.input) return `${formatToString(s.input)} →|`;
  return "";
}
