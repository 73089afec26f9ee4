/**
 * How many file descriptors the process has open against its limit (`RLIMIT_NOFILE`, `ulimit -n`), read from Linux's
 * `/proc/self`, and {@linkcode FileReserve}: the one estimate every server side of voxpipe asks before it takes on
 * something that opens descriptors (a SIP call: an RTP and an RTCP socket and its recording; a TCP or WebSocket
 * connection: its socket), so that it refuses new work while some are still free instead of running out.
 *
 * A process with no descriptor left fails in places it cannot recover from: Deno 2.9 itself panics when, at that
 * moment, it must read a module again to map an error's stack trace (the whole process and every call in it end), and
 * `Deno.serve` ends its accept loop with an error nobody can catch in time (no server of voxpipe runs on it: they accept
 * their connections themselves, core/net/accept.ts).
 *
 * @module
 */
import type { Clock } from "./clock.ts";

/** Open file descriptors and their limit. */
export interface OpenFiles {
  /** Descriptors open now (`Infinity`: all of them, as far as can be told). */
  open: number;
  /** The soft limit (`ulimit -n`). */
  limit: number;
}

/** The last limit read, for when reading it needs a descriptor and none is left. */
let lastLimit: number | undefined;

/**
 * Counts this process's open descriptors (`/proc/self/fd`) and reads its soft limit (`/proc/self/limits`); undefined
 * where that cannot be told (not Linux, no `/proc`, no read permission, no limit). ~20 µs on Linux 6.2 and later
 * (the directory's size is the count); before, the directory is read (~15 ms at 10 000 descriptors). With no
 * descriptor left to read the limit, it is the last one read, and every descriptor counts as open.
 *
 * @example
 * ```ts
 * const files = processOpenFiles();
 * if (files) console.log(`${files.open} of ${files.limit} descriptors open`);
 * ```
 */
export function processOpenFiles(): OpenFiles | undefined {
  if (Deno.build.os !== "linux") return undefined;
  let limit: number;
  try {
    const m = /^Max open files\s+(\d+|unlimited)/m.exec(Deno.readTextFileSync("/proc/self/limits"));
    if (!m || m[1] === "unlimited") return undefined;
    limit = lastLimit = Number(m[1]);
  } catch (e) {
    // Out of descriptors already: reading needs one.
    return isOutOfFiles(e) ? { open: Infinity, limit: lastLimit ?? 0 } : undefined;
  }
  try {
    // Linux 6.2 and later give the count as the directory's size (a few µs, no descriptor needed); before, it is 0
    // and the entries are counted (~15 ms at 10 000 descriptors).
    const size = Deno.statSync("/proc/self/fd").size;
    if (size > 0) return { open: size, limit };
    let open = -1; // the directory being read holds one while it is read
    for (const _ of Deno.readDirSync("/proc/self/fd")) open++;
    return { open, limit };
  } catch (e) {
    return isOutOfFiles(e) ? { open: limit, limit } : undefined;
  }
}

/**
 * True when `e` says the process (`EMFILE`) or the system (`ENFILE`) has no file descriptor left. Reads only the
 * error's `code` and `message`, never its `stack` (mapping a stack may need a descriptor: see the module doc).
 *
 * @example
 * ```ts
 * try {
 *   Deno.openSync("/dev/null");
 * } catch (e) {
 *   if (isOutOfFiles(e)) console.log("raise ulimit -n");
 * }
 * ```
 */
export function isOutOfFiles(e: unknown): boolean {
  const o = e as { code?: unknown; message?: unknown } | null;
  if (o === null || typeof o !== "object") return false;
  if (o.code === "EMFILE" || o.code === "ENFILE") return true;
  return typeof o.message === "string" && /\(os error 2[34]\)/.test(o.message);
}

/** What to do when the process has no file descriptor left (`EMFILE`), as error messages say it. */
export const OUT_OF_FILES_ADVICE = "the process is out of file descriptors: raise the limit (ulimit -n)";

/**
 * What to do about `e` when it says no file descriptor is left, in parentheses with a leading space, to append to a
 * message that keeps `e`'s own (so that {@linkcode isOutOfFiles} still knows the wrapping error by its message);
 * empty for any other error. `EMFILE`: {@linkcode OUT_OF_FILES_ADVICE}; `ENFILE` (the whole system has none left):
 * that, and the system's limit. Reads only the error's `code` and `message`, never its `stack`.
 *
 * @example
 * ```ts
 * try {
 *   Deno.openSync("in.wav");
 * } catch (e) {
 *   throw new Error(`in.wav: cannot open: ${(e as Error).message}${outOfFilesHint(e)}`, { cause: e });
 * }
 * ```
 */
export function outOfFilesHint(e: unknown): string {
  if (!isOutOfFiles(e)) return "";
  const o = e as { code?: unknown; message?: unknown };
  const system = o.code === "ENFILE" || (typeof o.message === "string" && /\(os error 23\)/.test(o.message));
  return system
    ? ` (the system is out of file descriptors: raise its limit (sysctl fs.file-max) or the process's (ulimit -n))`
    : ` (${OUT_OF_FILES_ADVICE})`;
}

/** Options of a {@linkcode FileReserve}. */
export interface FileReserveOptions {
  /** Descriptors kept free: {@linkcode FileReserve.short} says so once fewer would be left. */
  reserve: number;
  /** What the reserve is kept for, in the message (e.g. `the calls in progress`). */
  keptFor: string;
  /**
   * How many things that hold descriptors are live now (calls, connections): each one more than at the last count
   * is taken to hold `perUnit` more until the next count (those let in together are counted before they open
   * anything); each one fewer gives nothing back until the next count.
   */
  units: () => number;
  /** Descriptors each unit holds (default 1). */
  perUnit?: number;
  /** Counts the open files (default {@linkcode processOpenFiles}; tests give their own). */
  openFiles?: () => OpenFiles | undefined;
  /** The count is taken again at least this often, ms (default 1000) ... */
  recountMs?: number;
  /**
   * ... and, once the estimate is within twice the reserve of the limit, at a question at most this often, ms
   * (default 100): where the kernel does not give the count at once (before Linux 6.2), a count reads the whole of
   * `/proc/self/fd`, which a flood must not get once per request.
   */
  nearRecountMs?: number;
}

/**
 * The estimate of descriptors left under the process's limit, kept cheap enough to ask at every new call or
 * connection: the last count of `/proc/self/fd`, plus `perUnit` for each unit live now beyond those live at that
 * count. Where the open files cannot be counted (not Linux, no read permission on `/proc`) it never says short.
 *
 * @example
 * ```ts
 * import { RealClock } from "./real_clock.ts";
 * const conns = new Set<Deno.Conn>();
 * const reserve = new FileReserve(new RealClock(), { reserve: 64, keptFor: "the connections open", units: () => conns.size });
 * const why = reserve.short(); // e.g. "950 of the 1024 open files allowed are in use, ... raise the limit (ulimit -n)"
 * ```
 */
export class FileReserve {
  /** Descriptors kept free. */
  readonly reserve: number;
  /** Counts taken so far. */
  counts = 0;
  readonly #clock: Pick<Clock, "now">;
  readonly #keptFor: string;
  readonly #units: () => number;
  readonly #perUnit: number;
  readonly #openFiles: () => OpenFiles | undefined;
  readonly #recountMs: number;
  readonly #nearRecountMs: number;
  #files?: OpenFiles;
  #countedAt = -Infinity;
  #unitsAtCount = 0;

  /**
   * Creates the estimate (nothing is counted until asked).
   * @param clock when counts were taken (only `now` is used)
   * @param o the reserve, what it is kept for, the live units
   */
  constructor(clock: Pick<Clock, "now">, o: FileReserveOptions) {
    if (!(o.reserve > 0)) throw new RangeError(`the descriptors kept free must be a positive number, got ${o.reserve}`);
    this.reserve = o.reserve;
    this.#clock = clock;
    this.#keptFor = o.keptFor;
    this.#units = o.units;
    this.#perUnit = o.perUnit ?? 1;
    this.#openFiles = o.openFiles ?? processOpenFiles;
    this.#recountMs = o.recountMs ?? 1000;
    this.#nearRecountMs = o.nearRecountMs ?? 100;
  }

  /** The last count (undefined before the first, or where the files cannot be counted). */
  get files(): OpenFiles | undefined {
    return this.#files;
  }

  /** Descriptors estimated left under the limit now (Infinity where they cannot be counted), counting if due. */
  left(): number {
    const now = this.#clock.now();
    const near = this.#files !== undefined && this.#estimate() < 2 * this.reserve;
    if (now - this.#countedAt >= (near ? this.#nearRecountMs : this.#recountMs)) {
      this.#files = this.#openFiles();
      this.counts++;
      this.#countedAt = now;
      this.#unitsAtCount = this.#units();
    }
    return this.#files === undefined ? Infinity : this.#estimate();
  }

  /**
   * Why something new that opens descriptors must be refused now: fewer than the reserve would be left, said with
   * the figures and what to do (`raise the limit (ulimit -n)`); undefined when there is room.
   */
  short(): string | undefined {
    const left = this.left();
    if (left >= this.reserve) return undefined;
    const limit = this.#files!.limit;
    // The estimate: what the last count saw, and what was let in since.
    const used = Number.isFinite(left) ? `${Math.min(limit, limit - left)} of the ${limit}` : `all of the ${limit}`;
    return `${used} open files allowed are in use, ${this.reserve} are kept free for ${this.#keptFor}: ` +
      `raise the limit (ulimit -n)`;
  }

  #estimate(): number {
    const f = this.#files!;
    return f.limit - f.open - this.#perUnit * Math.max(0, this.#units() - this.#unitsAtCount);
  }
}
