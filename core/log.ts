/**
 * Logging: levels, one line per event, readable by people and greppable by
 * machines: `2026-11-22T10:00:00.123Z INFO  [SIP] INVITE sent to sip:bob@127.0.0.1:5062 call=abc`, or in the
 * `python` format (Python logging's `[%(levelname)s] - %(asctime)s - %(message)s`):
 * `[INFO] - 2026-11-22 11:00:00,123 - [SIP] INVITE sent to sip:bob@127.0.0.1:5062 call=abc` (local time).
 *
 * @module
 */
import { dirname } from "./path.ts";

/** Log levels, from most to least verbose. */
export type LogLevel = "debug" | "info" | "warn" | "error" | "silent";

const RANK: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40, silent: 99 };

/** The log levels, for CLI validation. */
export const LOG_LEVELS: readonly LogLevel[] = ["debug", "info", "warn", "error", "silent"];

/**
 * How a line looks: `voxpipe` (ISO time in UTC, level, tag, message, fields) or `python` (`[LEVEL] - local time -
 * message`, as Python's logging writes with `[%(levelname)s] - %(asctime)s - %(message)s`).
 */
export type LogFormat = "voxpipe" | "python";

/** The log formats, for CLI validation. */
export const LOG_FORMATS: readonly LogFormat[] = ["voxpipe", "python"];

/** Where log lines go. */
export interface LogOutput {
  /** Writes one complete line (without newline). */
  write(line: string, level: LogLevel): void;
}

/** Structured fields appended as `key=value`. */
export type LogFields = Record<string, string | number | boolean | undefined | null>;

/**
 * A logger with a tag (shown as `[TAG]`) and a level threshold.
 *
 * @example
 * ```ts
 * const log = new Logger({ level: "info" }).child("SIP");
 * log.info("INVITE sent to sip:bob@127.0.0.1", { call: "a84b4c76e66710" });
 * ```
 */
export class Logger {
  /** The level, shared by a logger and every logger made from it with `child` (and their children). */
  #box: { level: LogLevel };
  /** How lines look. */
  readonly format: LogFormat;
  readonly #outputs: LogOutput[];
  readonly #tag: string;
  readonly #fields: LogFields;

  /**
   * Creates a logger.
   * @param opts.level threshold (default info)
   * @param opts.outputs destinations (default: stderr)
   * @param opts.tag tag shown in brackets
   * @param opts.format line format (default `voxpipe`)
   */
  constructor(
    opts: { level?: LogLevel; outputs?: LogOutput[]; tag?: string; fields?: LogFields; format?: LogFormat } = {},
  ) {
    this.#box = { level: opts.level ?? "info" };
    this.format = opts.format ?? "voxpipe";
    this.#outputs = opts.outputs ?? [stderrOutput];
    this.#tag = opts.tag ?? "";
    this.#fields = opts.fields ?? {};
  }

  /** Minimum level written (a logger and its children share it: setting it on one sets it for all). */
  get level(): LogLevel {
    return this.#box.level;
  }
  set level(v: LogLevel) {
    this.#box.level = v;
  }

  /** A logger sharing outputs, level and format, with another tag and extra fields. */
  child(tag: string, fields: LogFields = {}): Logger {
    const c = new Logger({ outputs: this.#outputs, tag, fields: { ...this.#fields, ...fields }, format: this.format });
    // Children follow the parent's level changes (and set it for the parent): one shared box, no per-child accessor.
    c.#box = this.#box;
    return c;
  }

  /**
   * Adds an output to this logger and every logger sharing its outputs (its
   * parent, children and siblings): e.g. a console that shows the lines of a
   * call (`call=` field). Returns a function that removes it.
   *
   * @example
   * ```ts
   * const lines: string[] = [];
   * const untap = log.tap({ write: (line) => lines.push(line) });
   * untap();
   * ```
   */
  tap(output: LogOutput): () => void {
    this.#outputs.push(output);
    return () => {
      const i = this.#outputs.indexOf(output);
      if (i >= 0) this.#outputs.splice(i, 1);
    };
  }

  /** True when messages at `level` are written. */
  enabled(level: LogLevel): boolean {
    return RANK[level] >= RANK[this.#box.level] && level !== "silent";
  }

  /** Logs at debug level. */
  debug(msg: string, fields?: LogFields): void {
    this.#log("debug", msg, fields);
  }
  /** Logs at info level. */
  info(msg: string, fields?: LogFields): void {
    this.#log("info", msg, fields);
  }
  /** Logs at warn level. */
  warn(msg: string, fields?: LogFields): void {
    this.#log("warn", msg, fields);
  }
  /** Logs at error level. */
  error(msg: string, fields?: LogFields): void {
    this.#log("error", msg, fields);
  }

  /**
   * Writes a line formatted elsewhere (by a logger in a worker, with this logger's level and format) to this
   * logger's outputs, when `level` is enabled here.
   *
   * @example
   * ```ts
   * worker.onmessage = (e) => log.writeLine(e.data.line, e.data.level);
   * ```
   */
  writeLine(line: string, level: LogLevel): void {
    if (!this.enabled(level)) return;
    for (const o of this.#outputs) o.write(line, level);
  }

  #log(level: LogLevel, msg: string, fields?: LogFields): void {
    if (!this.enabled(level)) return;
    const line = formatLine(level, this.#tag, msg, { ...this.#fields, ...fields }, this.format);
    for (const o of this.#outputs) o.write(line, level);
  }
}

function formatValue(v: string | number | boolean): string {
  const s = String(v);
  return /[\s"=]/.test(s) || s === "" ? JSON.stringify(s) : s;
}

const PYTHON_LEVEL: Record<LogLevel, string> = {
  debug: "DEBUG",
  info: "INFO",
  warn: "WARNING",
  error: "ERROR",
  silent: "SILENT",
};

/** Python logging's `asctime`: local time as `2026-11-22 11:00:00,123`. */
function asctime(d: Date): string {
  const p = (n: number, w = 2) => String(n).padStart(w, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:` +
    `${p(d.getSeconds())},${p(d.getMilliseconds(), 3)}`;
}

/**
 * Formats one log line.
 *
 * @example
 * ```ts
 * formatLine("warn", "SIP", "no ACK", { call: "a1" }, "python"); // "[WARNING] - 2026-11-22 11:00:00,123 - [SIP] no ACK call=a1"
 * ```
 */
export function formatLine(
  level: LogLevel,
  tag: string,
  msg: string,
  fields: LogFields = {},
  format: LogFormat = "voxpipe",
): string {
  const now = new Date();
  const text = `${tag ? `[${tag}] ` : ""}${msg.replace(/\n/g, "\\n")}`;
  let line = format === "python"
    ? `[${PYTHON_LEVEL[level]}] - ${asctime(now)} - ${text}`
    : `${now.toISOString()} ${level.toUpperCase().padEnd(5)} ${text}`;
  for (const [k, v] of Object.entries(fields)) {
    if (v === undefined || v === null) continue;
    line += ` ${k}=${formatValue(v)}`;
  }
  return line;
}

const encoder = new TextEncoder();

/** Writes lines to standard error. */
export const stderrOutput: LogOutput = {
  write(line) {
    Deno.stderr.writeSync(encoder.encode(line + "\n"));
  },
};

/** Collects lines in memory (for tests). */
export class MemoryOutput implements LogOutput {
  /** The lines written so far. */
  readonly lines: string[] = [];
  /** Appends a line. */
  write(line: string): void {
    this.lines.push(line);
  }
}

/** Appends lines to a file, synchronously so nothing is lost on a crash. */
export class FileOutput implements LogOutput {
  readonly #file: Deno.FsFile;
  /**
   * Opens the log file.
   * @param path log file path, created or appended
   */
  constructor(path: string) {
    const dir = dirname(path);
    if (dir && dir !== ".") Deno.mkdirSync(dir, { recursive: true });
    this.#file = Deno.openSync(path, { append: true, create: true });
  }
  /** Appends a line. */
  write(line: string): void {
    this.#file.writeSync(encoder.encode(line + "\n"));
  }
  /** Closes the file. */
  close(): void {
    this.#file.close();
  }
}

/** A logger that writes nothing (default for library use and tests). */
export const silentLogger: Logger = new Logger({ level: "silent", outputs: [] });

/**
 * Rations the lines one source of events may write: at most `lines` per window of `windowMs` (on the clock the caller
 * passes); beyond, the events are counted, and when the next window begins the count is logged once as a warning.
 * For events a peer controls the rate of (RTCP reports, DTMF digits): a flood would otherwise write a line each.
 *
 * @example
 * ```ts
 * const log = new Logger({ level: "info" }).child("RTP");
 * const ration = new LogRation(10, 10_000, (n) => `${n} more DTMF digits received were not logged`);
 * if (ration.allow(Date.now(), log)) log.info("DTMF 5 received");
 * ```
 */
export class LogRation {
  #windowStart = -Infinity;
  #lines = 0;
  #suppressed = 0;

  /** Lines allowed per window. */
  readonly lines: number;
  /** The window's length, in ms of the clock passed to {@linkcode LogRation.allow}. */
  readonly windowMs: number;
  /** The warning written for `n` events not logged in a window. */
  readonly summary: (n: number) => string;

  /**
   * Creates a ration of `lines` per `windowMs`.
   * @param lines lines allowed per window
   * @param windowMs the window's length, in ms of the clock passed to {@linkcode LogRation.allow}
   * @param summary the warning written for `n` events not logged in a window
   */
  constructor(lines: number, windowMs: number, summary: (n: number) => string) {
    this.lines = lines;
    this.windowMs = windowMs;
    this.summary = summary;
  }

  /** True when a line may be written now (`now` in ms); otherwise the event is counted. */
  allow(now: number, log: Logger): boolean {
    if (now - this.#windowStart >= this.windowMs) {
      if (this.#suppressed > 0) log.warn(this.summary(this.#suppressed));
      this.#windowStart = now;
      this.#lines = 0;
      this.#suppressed = 0;
    }
    if (this.#lines < this.lines) {
      this.#lines++;
      return true;
    }
    this.#suppressed++;
    return false;
  }
}
