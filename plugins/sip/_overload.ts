/**
 * Private: overload protection of a user agent. It measures how late the
 * process runs — the event-loop lag, sampled on the user agent's clock (a
 * timer set for time T that runs at T + lag) — and, with the size of the
 * server transaction table and the calls not ended, decides whether a new
 * INVITE is refused with `503 Service Unavailable` and `Retry-After` (RFC 3261
 * §21.5.4) instead of becoming a call. Calls in progress, OPTIONS and
 * in-dialog requests are never refused here.
 *
 * Layer: user agent, lowest tier (imports only the clock and logger types, and the open-files estimate of core/).
 *
 * @module
 */
import type { Clock, Timer } from "../../core/clock.ts";
import type { Logger } from "../../core/log.ts";
import { FileReserve, type OpenFiles, processOpenFiles } from "../../core/open_files.ts";

/** While overloaded, a warning line says how many INVITEs were refused every this many ms. */
const REPORT_MS = 10_000;
/**
 * Lag samples in a row that must run more than `lagMs` late before new INVITEs are refused: one stall (a garbage
 * collection, start-up compilation, a moment without a CPU) is a hiccup, not overload; an event loop that cannot keep
 * up stays late sample after sample.
 */
const SUSTAINED_SAMPLES = 2;

/**
 * Descriptors each call more than at the last count is taken to hold until the next count, by default (RTP, RTCP, its
 * recording and one spare): INVITEs that come together are all admitted before any of them opens anything. An
 * application whose calls hold another number says so (`OverloadOptions.filesPerCall`).
 */
const FILES_PER_CALL = 4;
/** Open files are counted again at least this often (ms) ... */
const FILES_RECOUNT_MS = 1000;
/**
 * ... and, once the estimate comes near the limit, at an INVITE at most this often (ms): where the kernel does not
 * give the count at once (before Linux 6.2), a count reads the whole of `/proc/self/fd` (~15 ms at 10 000
 * descriptors), which a flood of INVITEs must not get once per INVITE.
 */
const FILES_NEAR_RECOUNT_MS = 100;

export type { OpenFiles } from "../../core/open_files.ts";

/** Limits of the overload protection (`SipUserAgentOptions.overload`). */
export interface OverloadOptions {
  /**
   * Event-loop lag in ms above which new INVITEs get 503 (default 500;
   * `Infinity` turns the lag check off), once two samples in a row ran that
   * late (a single stall is not overload). The lag is sampled every `sampleMs`
   * on the user agent's clock and decays by half per sample once the process
   * catches up; INVITEs are accepted again when it is back under the limit.
   */
  lagMs?: number;
  /**
   * Server transactions kept at once (default 10 000; one costs about 4 KB,
   * an INVITE's with its call about 9 KB). At the cap new INVITEs get 503, and
   * new requests outside a dialog are answered without keeping a transaction,
   * so a flood cannot grow memory without bound. A call holds two (its INVITE's
   * and its BYE's) for 64·T1 after it ends, so the default sustains about 150
   * calls per second with the default timers.
   */
  maxTransactions?: number;
  /** Calls not ended at which new INVITEs get 503 (default unlimited). */
  maxCalls?: number;
  /** Seconds in the 503's `Retry-After` (default 5). */
  retryAfter?: number;
  /** Lag sampling period in ms (default 100). */
  sampleMs?: number;
  /**
   * File descriptors kept free (default 64): new INVITEs get 503 once fewer than this many are left under the
   * process's limit (`ulimit -n`), so that the calls in progress, the SIP socket, and the runtime itself still have
   * some (a call needs two sockets and its recording). Where the open files cannot be counted (not Linux, no read
   * permission on `/proc`), there is no such check.
   */
  minFreeFiles?: number;
  /**
   * Descriptors one call of this user agent holds (default 4: its RTP and RTCP sockets, its recording and a spare):
   * each call let in since the open files were last counted is taken to hold this many until the next count. A B2BUA,
   * whose relayed call is two calls here (one per leg) holding an RTP and an RTCP socket each and no file, gives 2.
   */
  filesPerCall?: number;
  /** Counts the open files and their limit (default: from `/proc/self`; for tests). */
  openFiles?: () => OpenFiles | undefined;
}

/** What the monitor reads from the user agent. */
export interface OverloadProbes {
  /** True when the server transaction table is full (new requests outside a dialog are handled statelessly). */
  tableFull(): boolean;
  /** Calls not ended. */
  liveCalls(): number;
}

/** The overload limits with their defaults filled in. */
export interface OverloadLimits {
  /** See {@linkcode OverloadOptions.lagMs}. */
  lagMs: number;
  /** See {@linkcode OverloadOptions.maxTransactions}. */
  maxTransactions: number;
  /** See {@linkcode OverloadOptions.maxCalls}. */
  maxCalls: number;
  /** See {@linkcode OverloadOptions.retryAfter}. */
  retryAfter: number;
  /** See {@linkcode OverloadOptions.sampleMs}. */
  sampleMs: number;
  /** See {@linkcode OverloadOptions.minFreeFiles}. */
  minFreeFiles: number;
  /** See {@linkcode OverloadOptions.filesPerCall}. */
  filesPerCall: number;
}

/** Fills in the defaults; throws a RangeError naming a bad value. */
export function overloadLimits(o: OverloadOptions = {}): OverloadLimits {
  const limits: OverloadLimits = {
    lagMs: o.lagMs ?? 500,
    maxTransactions: o.maxTransactions ?? 10000,
    maxCalls: o.maxCalls ?? Infinity,
    retryAfter: o.retryAfter ?? 5,
    sampleMs: o.sampleMs ?? 100,
    minFreeFiles: o.minFreeFiles ?? 64,
    filesPerCall: o.filesPerCall ?? FILES_PER_CALL,
  };
  for (const [k, v] of Object.entries(limits)) {
    if (typeof v !== "number" || Number.isNaN(v) || v <= 0) {
      throw new RangeError(`overload.${k} must be a positive number, got ${v}`);
    }
  }
  if (!Number.isInteger(limits.retryAfter)) {
    throw new RangeError(`overload.retryAfter must be whole seconds, got ${limits.retryAfter}`);
  }
  return limits;
}

/** Measures lag and decides whether new INVITEs are refused. */
export class OverloadMonitor {
  /** The limits in force. */
  readonly limits: OverloadLimits;
  /** New INVITEs refused with 503 so far. */
  refused = 0;
  readonly #clock: Clock;
  readonly #log: Logger;
  readonly #probes: OverloadProbes;
  #timer?: Timer;
  #lag = 0;
  /** Consecutive samples that ran more than `lagMs` late. */
  #slowRun = 0;
  #why?: string;
  #refusedSinceReport = 0;
  #reportedAt = 0;
  /** When the last "overloaded" line was written, and whether the present spell of overload had one. */
  #enteredAt = -Infinity;
  #spellReported = false;
  /** Descriptors left under the process's limit (the estimate every server side shares). */
  readonly #files: FileReserve;
  /** Calls being placed that are not calls of the user agent yet (see {@linkcode placeCall}). */
  #placing = 0;

  /**
   * Creates the monitor (stopped).
   * @param clock the user agent's clock
   * @param log logger
   * @param probes the transaction table and the calls
   * @param limits the limits
   * @param openFiles counts the process's open files (default: from `/proc/self`)
   */
  constructor(
    clock: Clock,
    log: Logger,
    probes: OverloadProbes,
    limits: OverloadLimits,
    openFiles: () => OpenFiles | undefined = processOpenFiles,
  ) {
    this.#clock = clock;
    this.#log = log;
    this.#probes = probes;
    this.limits = limits;
    this.#files = new FileReserve(clock, {
      reserve: limits.minFreeFiles,
      keptFor: "the calls in progress",
      units: () => probes.liveCalls() + this.#placing,
      perUnit: limits.filesPerCall,
      openFiles,
      recountMs: FILES_RECOUNT_MS,
      nearRecountMs: FILES_NEAR_RECOUNT_MS,
    });
  }

  /** The current lag estimate in ms (the last sample, or half the previous estimate if larger). */
  get lagMs(): number {
    return this.#lag;
  }

  /** Why new INVITEs are being refused now, or undefined. */
  get reason(): string | undefined {
    return this.#evaluate();
  }

  /** Starts sampling the lag. */
  start(): void {
    if (this.#timer || !Number.isFinite(this.limits.lagMs)) return;
    this.#schedule();
  }

  /** Stops sampling. */
  stop(): void {
    this.#timer?.cancel();
    this.#timer = undefined;
  }

  #schedule(): void {
    const due = this.#clock.now() + this.limits.sampleMs;
    this.#timer = this.#clock.at(due, () => {
      const late = Math.max(0, this.#clock.now() - due);
      this.#lag = Math.max(late, this.#lag / 2);
      this.#slowRun = late > this.limits.lagMs ? this.#slowRun + 1 : 0;
      const why = this.#evaluate();
      if (why !== undefined && this.#clock.now() - this.#reportedAt >= REPORT_MS) {
        // A line every 10 s while it lasts: how many were refused, and why now.
        this.#log.warn(
          `still overloaded (${why}): ${this.#refusedSinceReport} new INVITE(s) got 503 in the last period`,
        );
        this.#refusedSinceReport = 0;
        this.#reportedAt = this.#clock.now();
      }
      this.#schedule();
    });
  }

  /**
   * Called for each new INVITE outside a dialog, before it has a transaction:
   * the reason to refuse it with 503 (counted), or undefined to let it through.
   */
  admit(): string | undefined {
    const why = this.#evaluate();
    if (why === undefined) return undefined;
    this.refused++;
    this.#refusedSinceReport++;
    return why;
  }

  #evaluate(): string | undefined {
    const l = this.limits;
    let why: string | undefined;
    const lagging = this.#lag > l.lagMs &&
      (this.#slowRun >= SUSTAINED_SAMPLES || this.#why?.startsWith("event-loop lag") === true);
    if (lagging) why = `event-loop lag ${Math.round(this.#lag)} ms > ${l.lagMs} ms`;
    else if (this.#probes.tableFull()) why = `transaction table full (max_transactions ${l.maxTransactions})`;
    else if (this.#probes.liveCalls() >= l.maxCalls) {
      why = `${this.#probes.liveCalls()} calls in progress (max_calls ${l.maxCalls})`;
    } else why = this.#filesShort();
    if (why !== undefined && this.#why === undefined) this.#enter(why);
    else if (why === undefined && this.#why !== undefined) {
      this.#why = undefined;
      // A spell that had no line of its own (it began within 10 s of the last one) ends without one either: near a
      // limit the state may flip every few ms, and the log must not get two lines each time.
      if (!this.#spellReported) return why;
      this.#spellReported = false;
      this.#log.warn(`no longer overloaded: ${this.#refusedSinceReport} new INVITE(s) got 503 meanwhile`);
      this.#refusedSinceReport = 0;
    }
    return why;
  }

  /**
   * Why a new call (incoming, or one placed: {@linkcode placeCall}) would leave fewer than `minFreeFiles`
   * descriptors, or undefined: the shared estimate
   * ({@linkcode FileReserve}), the last count plus `filesPerCall` (default {@linkcode FILES_PER_CALL}) for each call live now beyond those live
   * at that count (calls let in since open their sockets and recordings as they are set up; calls ended since give
   * theirs back). Counted every {@linkcode FILES_RECOUNT_MS}, and at an INVITE once the estimate comes within twice the
   * reserve of the limit (at most every {@linkcode FILES_NEAR_RECOUNT_MS}).
   */
  #filesShort(): string | undefined {
    return this.#files.short();
  }

  /**
   * Room for a call about to be placed (dialled from here): the reason to refuse it (too few descriptors would be
   * left, as for an INVITE coming in), or a function to call once it is a call of the user agent or has failed.
   * Until then it counts as a live call in the estimate, so that calls placed together, each still binding its
   * sockets, are counted before any of them shows in `/proc/self/fd`.
   */
  placeCall(): string | (() => void) {
    const why = this.#filesShort();
    if (why !== undefined) return why;
    this.#placing++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.#placing--;
    };
  }

  /** Overload begins: one line, unless the last one was written less than {@linkcode REPORT_MS} ago. */
  #enter(why: string): void {
    this.#why = why;
    const now = this.#clock.now();
    if (now - this.#enteredAt < REPORT_MS) return;
    const before = this.#refusedSinceReport > 0
      ? ` (${this.#refusedSinceReport} got 503 in short spells since the last line)`
      : "";
    this.#enteredAt = this.#reportedAt = now;
    this.#spellReported = true;
    this.#refusedSinceReport = 0;
    this.#log.warn(
      `overloaded (${why}): new INVITEs get 503 Service Unavailable, Retry-After ${this.limits.retryAfter}${before}`,
    );
  }
}
