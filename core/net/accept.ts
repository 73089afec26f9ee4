/**
 * The accept loop of a stream listener (TCP), shared by every server side that runs its own (the relay's
 * registration port, the WebSocket bridge), and {@linkcode RefusalLog}, the rate-limited warning of a server that
 * refuses new connections.
 *
 * An accept that fails does not end the loop, nor is it retried at once: the usual cause is a process out of file
 * descriptors (`EMFILE`), and then the connection waiting in the kernel's backlog is still there, so retrying at once
 * fails again at once, for as long as it lasts, at 100 % of a core. The loop waits, from 50 ms doubling to 1 s, and
 * logs one warning naming the limit and what to do, then one line every 10 s while it lasts, and one when it accepts
 * again.
 *
 * @module
 */
import type { Clock } from "../clock.ts";
import type { Logger } from "../log.ts";
import { isOutOfFiles, processOpenFiles } from "../open_files.ts";

/** Something that accepts connections one at a time (`Deno.Listener`). */
export interface Acceptor<C> {
  /** The next connection; rejects when one cannot be accepted (and, once closed, with `BadResource`). */
  accept(): Promise<C>;
}

/** Options of {@linkcode acceptLoop}. */
export interface AcceptLoopOptions<C> {
  /** Times the waits after a failed accept (only `now` and `sleep` are used). */
  clock: Pick<Clock, "now" | "sleep">;
  /** Where the warnings go. */
  log: Logger;
  /** The listener, in the warnings, e.g. `TCP 127.0.0.1:9998`. */
  where: string;
  /** True once the owner closed the listener: the loop ends at its next failure. */
  closed(): boolean;
  /**
   * Takes each accepted connection. When it returns a promise, the next accept waits for it: an owner that answers
   * refused connections (each answer holding a descriptor until it is sent) paces the accepts to its answers, and
   * connections beyond wait in the kernel's backlog meanwhile, instead of being closed unanswered.
   */
  handle(conn: C): void | Promise<void>;
  /** First wait after a failed accept, ms (default 50); it doubles at each failure in a row ... */
  minBackoffMs?: number;
  /** ... up to this, ms (default 1000). */
  maxBackoffMs?: number;
}

/** A warning line at most this often while the trouble lasts (ms). */
export const REPORT_EVERY_MS = 10_000;

/**
 * Accepts connections until the listener is closed: each goes to `handle`. A failed accept is retried after a wait
 * (see the module doc), never at once; the loop ends only when `closed()` says so or the listener is gone
 * (`BadResource`).
 *
 * @example
 * ```ts
 * import { RealClock } from "../real_clock.ts";
 * import { Logger } from "../log.ts";
 * const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * let closed = false;
 * const done = acceptLoop(l, {
 *   clock: new RealClock(), log: new Logger(), where: "TCP 127.0.0.1", closed: () => closed,
 *   handle: (conn) => conn.close(),
 * });
 * closed = true;
 * l.close();
 * await done;
 * ```
 */
export async function acceptLoop<C>(listener: Acceptor<C>, o: AcceptLoopOptions<C>): Promise<void> {
  const min = o.minBackoffMs ?? 50, max = o.maxBackoffMs ?? 1000;
  let wait = 0;
  /** Failed accepts since the last line, and whether this run of failures was reported. */
  let failed = 0;
  let reported = false;
  let reportedAt = -Infinity;
  for (;;) {
    let conn: C;
    try {
      conn = await listener.accept();
    } catch (e) {
      if (o.closed() || e instanceof Deno.errors.BadResource) return;
      wait = wait === 0 ? min : Math.min(max, wait * 2);
      failed++;
      const now = o.clock.now();
      // One line per 10 s at most, however the failures come (in one long run, or in short runs between accepts).
      if (now - reportedAt >= REPORT_EVERY_MS) {
        o.log.warn(
          `cannot accept connections on ${o.where}: ${why(e)}; new connections wait in the backlog, the accept is ` +
            `retried every ${min}-${max} ms` + (failed > 1 ? ` (${failed} failed accepts since the last line)` : ""),
        );
        reportedAt = now;
        reported = true;
        failed = 0;
      }
      await o.clock.sleep(wait);
      continue;
    }
    if (wait > 0) {
      wait = 0;
      if (reported) {
        o.log.warn(
          `accepting connections on ${o.where} again` +
            (failed > 0 ? `, after ${failed} more failed accepts` : ""),
        );
        failed = 0;
      }
      reported = false;
    }
    const pace = o.handle(conn);
    if (pace) await pace;
  }
}

/** Why an accept failed, for the warning: out of descriptors says the limit and what to do. */
function why(e: unknown): string {
  if (isOutOfFiles(e)) {
    const limit = processOpenFiles()?.limit;
    return `no file descriptor left (the limit is ${limit || "ulimit -n"}): raise the limit (ulimit -n)`;
  }
  return e instanceof Error ? e.message : String(e);
}

/**
 * The warnings of a server that refuses new connections (or registrations) for a while: one line when it starts,
 * with the reason; then at most one every {@linkcode REPORT_EVERY_MS} with the count refused since; one when it lets
 * them in again. A flood of refusals writes a few lines, not one per connection.
 *
 * @example
 * ```ts
 * import { VirtualClock } from "../virtual_clock.ts";
 * import { Logger } from "../log.ts";
 * const refusals = new RefusalLog(new VirtualClock(), new Logger(), "new connections on TCP 127.0.0.1:9998");
 * refusals.refused("950 of the 1024 open files allowed are in use ...: raise the limit (ulimit -n)");
 * refusals.admitted(); // "... accepted again: 1 refused meanwhile"
 * ```
 */
export class RefusalLog {
  /** Refused so far. */
  total = 0;
  readonly #clock: Pick<Clock, "now">;
  readonly #log: Logger;
  readonly #what: string;
  #refusing = false;
  /** Refused since the last line, and whether this run of refusals was reported. */
  #since = 0;
  #reported = false;
  #reportedAt = -Infinity;

  /**
   * Creates the log (not refusing).
   * @param clock when lines were written
   * @param log where they go
   * @param what what is refused, e.g. `new connections on TCP 127.0.0.1:9998`
   */
  constructor(clock: Pick<Clock, "now">, log: Logger, what: string) {
    this.#clock = clock;
    this.#log = log;
    this.#what = what;
  }

  /** True between a refusal and the next admission. */
  get refusing(): boolean {
    return this.#refusing;
  }

  /** One was refused, for `why`. */
  refused(why: string): void {
    this.total++;
    this.#since++;
    const now = this.#clock.now();
    const first = !this.#refusing;
    this.#refusing = true;
    // One line per 10 s at most, however the refusals come (in one long run, or in short runs between admissions).
    if (now - this.#reportedAt < REPORT_EVERY_MS) return;
    this.#log.warn(
      `${first ? "refusing" : "still refusing"} ${this.#what}: ${why}` +
        (this.#since > 1 ? ` (${this.#since} refused since the last line)` : ""),
    );
    this.#reportedAt = now;
    this.#reported = true;
    this.#since = 0;
  }

  /** One was let in: if refusing, says it stopped (when the refusals were reported). */
  admitted(): void {
    if (!this.#refusing) return;
    this.#refusing = false;
    if (!this.#reported) return;
    this.#reported = false;
    this.#log.warn(
      `${this.#what} accepted again` + (this.#since > 0 ? `: ${this.#since} more refused since the last line` : ""),
    );
    this.#since = 0;
  }
}
