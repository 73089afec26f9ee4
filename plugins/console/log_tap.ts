/**
 * The console's share of the server's log: an output added to the process
 * logger (`Logger.tap`) that keeps each call's lines (those with a `call=`
 * field) in a bounded ring, for the page that shows the call.
 *
 * @module
 */
import type { LogLevel, LogOutput } from "../../core/log.ts";
import { sanitizeFileComponent } from "../../core/paths.ts";
import type { LogEntry } from "./protocol.ts";

/** The value of the last ` call=` field of a log line (quoted values unquoted), or undefined. */
export function callFieldOf(line: string): string | undefined {
  let found: string | undefined;
  const re = / call=("(?:[^"\\]|\\.)*"|[^\s]+)/g;
  for (let m = re.exec(line); m; m = re.exec(line)) found = m[1];
  if (found === undefined) return undefined;
  if (found.startsWith('"')) {
    try {
      return JSON.parse(found);
    } catch {
      return found.slice(1, -1);
    }
  }
  return found;
}

/**
 * Whether a log line's `call=` value (the Call-ID as on the wire, or the
 * service's id) names the call the service calls `id`: the service's ids are
 * the sanitized Call-ID, with `-2`, `-3`... when one repeats.
 */
export function logKeyMatches(key: string, id: string): boolean {
  if (key === id) return true;
  const s = sanitizeFileComponent(key);
  return s === id || (id.startsWith(`${s}-`) && /^\d+$/.test(id.slice(s.length + 1)));
}

/** Options of {@linkcode CallLogTap}. */
export interface CallLogTapOptions {
  /** Lines kept per call (oldest dropped). */
  perCall: number;
  /** Calls whose lines are kept (the least recently written dropped). */
  calls: number;
  /** Told of each line that names a call: its `call=` value and the entry. */
  onLine?: (key: string, entry: LogEntry) => void;
}

/** Keeps the lines of each call, by the value of their `call=` field. */
export class CallLogTap implements LogOutput {
  readonly #o: CallLogTapOptions;
  /** Lines by `call=` value; a Map keeps insertion order, refreshed on write: the first key is the stalest. */
  readonly #byKey = new Map<string, LogEntry[]>();

  /**
   * Creates a tap; add it with `log.tap(tap)`.
   * @param o bounds and a listener
   */
  constructor(o: CallLogTapOptions) {
    this.#o = o;
  }

  /** Takes one line (a {@linkcode LogOutput}). */
  write(line: string, level: LogLevel): void {
    const key = callFieldOf(line);
    if (key === undefined) return;
    const entry: LogEntry = { level, line };
    let ring = this.#byKey.get(key);
    if (ring) this.#byKey.delete(key);
    else ring = [];
    this.#byKey.set(key, ring);
    ring.push(entry);
    if (ring.length > this.#o.perCall) ring.splice(0, ring.length - this.#o.perCall);
    while (this.#byKey.size > this.#o.calls) this.#byKey.delete(this.#byKey.keys().next().value!);
    this.#o.onLine?.(key, entry);
  }

  /** The lines kept for the call the service calls `id`, oldest first. */
  linesOf(id: string): LogEntry[] {
    const out: LogEntry[] = [];
    let keys = 0;
    for (const [key, ring] of this.#byKey) {
      if (!logKeyMatches(key, id)) continue;
      out.push(...ring);
      keys++;
    }
    // Lines under two keys (the Call-ID, the service's id): in time order (lines start with an ISO time).
    if (keys > 1) {
      out.sort((a, b) => {
        const x = a.line.slice(0, 24), y = b.line.slice(0, 24);
        return x < y ? -1 : x > y ? 1 : 0;
      });
    }
    return out.length > this.#o.perCall ? out.slice(out.length - this.#o.perCall) : out;
  }

  /** Forgets the lines of the call `id`. */
  forget(id: string): void {
    for (const key of [...this.#byKey.keys()]) if (logKeyMatches(key, id)) this.#byKey.delete(key);
  }
}
