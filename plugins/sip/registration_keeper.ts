/**
 * Keeping a registration alive (RFC 3261 §10.2.4): {@linkcode RegistrationKeeper}
 * registers, refreshes the binding before it expires — at half the granted
 * lifetime or 5 s before its end, whichever is sooner (never sooner than 1 s)
 * — with the same Call-ID and the next CSeq, registers again after a failure
 * with a doubling backoff (honouring `Retry-After`), and removes the binding
 * (`Expires: 0`) when stopped. Every delay runs on the injected clock, so a
 * VirtualClock drives it in tests. Made by `SipUserAgent.keepRegistered`.
 *
 * Layer: user agent, tier 1 (imports register, emitter; core clock and log types).
 *
 * @module
 */
import type { Clock, Timer } from "../../core/clock.ts";
import type { Logger } from "../../core/log.ts";
import { Emitter } from "./emitter.ts";
import { type RegisterOptions, type Registration, RegistrationError } from "./register.ts";

/** Options of `SipUserAgent.keepRegistered`: those of `register`, plus the retry policy. */
export interface KeepRegisteredOptions extends RegisterOptions {
  /** First delay before registering again after a failure, in ms (default 5000); it doubles each failure in a row. */
  retryMs?: number;
  /** Longest delay between attempts after failures, in ms (default 300 000). */
  retryMaxMs?: number;
}

/** Where a {@linkcode RegistrationKeeper} is. */
export type KeeperState = "registering" | "registered" | "retrying" | "stopping" | "stopped";

/** A failed attempt, as reported by the `failed` event. */
export interface KeeperFailure {
  /** Why it failed (a {@linkcode RegistrationError} for a failure response or no response). */
  error: Error;
  /** Failures in a row so far, this one included. */
  attempt: number;
  /** When the next attempt is made, in ms from now. */
  retryInMs: number;
}

/** Events of a {@linkcode RegistrationKeeper}. */
export interface KeeperEvents {
  /** The registrar accepted a REGISTER: the first one or a refresh. */
  registered: Registration;
  /** An attempt failed; the keeper tries again after `retryInMs`. */
  failed: KeeperFailure;
}

/** Seconds after which a binding granted for `expires` seconds is refreshed: min(expires/2, expires − 5), at least 1. */
export function refreshDelay(expires: number): number {
  return Math.max(1, Math.min(expires / 2, expires - 5));
}

/** The `Retry-After` of a failure response, in seconds, when it is a number. */
function retryAfter(e: Error): number | undefined {
  if (!(e instanceof RegistrationError) || !e.response) return undefined;
  const v = /^\s*(\d{1,9})/.exec(e.response.headers.get("Retry-After") ?? "");
  return v ? Number(v[1]) : undefined;
}

function errText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/**
 * Keeps one binding registered until {@linkcode RegistrationKeeper.stop}.
 *
 * @example
 * ```ts
 * const keeper = ua.keepRegistered({ registrar: "sip:pbx.example.com", aor: "sip:alice@pbx.example.com", expires: 600 });
 * keeper.on("failed", (f) => console.log(f.error.message, "retry in", f.retryInMs, "ms"));
 * await keeper.ready; // the first REGISTER's outcome (rejects on failure; the keeper keeps trying)
 * // ...
 * await keeper.stop(); // REGISTER with Expires: 0
 * ```
 */
export class RegistrationKeeper {
  /**
   * Settles with the first attempt: resolves with the registration, rejects
   * with its error. The keeper goes on retrying after a rejection until stopped.
   */
  readonly ready: Promise<Registration>;
  readonly #start: () => Promise<Registration>;
  readonly #clock: Clock;
  readonly #log: Logger;
  readonly #retryMs: number;
  readonly #retryMaxMs: number;
  readonly #events = new Emitter<KeeperEvents>();
  #state: KeeperState = "registering";
  #current?: Registration;
  #timer?: Timer;
  #inflight?: Promise<void>;
  #failures = 0;
  #firstDone = false;
  #resolveFirst!: (r: Registration) => void;
  #rejectFirst!: (e: Error) => void;
  #stopped?: Promise<void>;

  /**
   * Starts registering at once (the user agent makes keepers: `SipUserAgent.keepRegistered`).
   * @param start sends the first REGISTER of a new registration
   * @param clock clock of every delay
   * @param log logger (tagged by the caller)
   * @param opts retry policy
   */
  constructor(
    start: () => Promise<Registration>,
    clock: Clock,
    log: Logger,
    opts: { retryMs?: number; retryMaxMs?: number } = {},
  ) {
    this.#start = start;
    this.#clock = clock;
    this.#log = log;
    this.#retryMs = opts.retryMs ?? 5000;
    this.#retryMaxMs = opts.retryMaxMs ?? 300_000;
    if (!(this.#retryMs > 0) || !(this.#retryMaxMs >= this.#retryMs)) {
      throw new RangeError(
        `keepRegistered: retryMs must be > 0 and retryMaxMs >= retryMs, got ${this.#retryMs} and ${this.#retryMaxMs}`,
      );
    }
    this.ready = new Promise((resolve, reject) => {
      this.#resolveFirst = resolve;
      this.#rejectFirst = reject;
    });
    this.ready.catch(() => {}); // a caller that never awaits it must not see an unhandled rejection
    this.#attempt();
  }

  /** Where the keeper is. */
  get state(): KeeperState {
    return this.#state;
  }

  /** The last accepted registration, while it is believed live (undefined before the first success and once stopped). */
  get current(): Registration | undefined {
    return this.#current;
  }

  /** Adds a listener; returns a function that removes it. */
  on<K extends keyof KeeperEvents>(event: K, fn: (e: KeeperEvents[K]) => void): () => void {
    return this.#events.on(event, fn);
  }

  #attempt(): void {
    if (this.#state === "stopping" || this.#state === "stopped") return;
    const previous = this.#current;
    if (!previous) this.#state = "registering";
    const op = previous ? previous.refresh() : this.#start();
    this.#inflight = op.then(
      (reg) => this.#succeeded(reg),
      (e) => this.#failed(e instanceof Error ? e : new Error(String(e))),
    );
  }

  #succeeded(reg: Registration): void {
    if (!this.#firstDone) {
      this.#firstDone = true;
      this.#resolveFirst(reg);
    }
    if (this.#state === "stopping" || this.#state === "stopped") {
      // Stopped while this REGISTER was in flight: stop() removes it.
      this.#current = reg;
      return;
    }
    this.#current = reg;
    if (reg.expires <= 0) {
      // A failure like any other: the backoff goes on doubling.
      this.#failed(new RegistrationError(`registrar granted ${reg.aor} no lifetime (expires 0)`, reg.response));
      return;
    }
    this.#failures = 0;
    this.#state = "registered";
    this.#events.emit("registered", reg);
    const delay = refreshDelay(reg.expires);
    this.#log.debug(`refreshing ${reg.aor} in ${delay} s (granted ${reg.expires} s)`, { call: reg.callId });
    this.#timer = this.#clock.after(delay * 1000, () => {
      this.#timer = undefined;
      this.#attempt();
    });
  }

  #failed(error: Error): void {
    if (!this.#firstDone) {
      this.#firstDone = true;
      this.#rejectFirst(error);
    }
    if (this.#state === "stopping" || this.#state === "stopped") return;
    this.#failures++;
    const backoff = Math.min(this.#retryMaxMs, this.#retryMs * 2 ** Math.min(this.#failures - 1, 30));
    const hinted = retryAfter(error);
    const retryInMs = hinted !== undefined ? Math.min(Math.max(backoff, hinted * 1000), this.#retryMaxMs) : backoff;
    this.#state = "retrying";
    this.#log.warn(`${errText(error)}: registering again in ${retryInMs / 1000} s`);
    this.#events.emit("failed", { error, attempt: this.#failures, retryInMs });
    this.#timer = this.#clock.after(retryInMs, () => {
      this.#timer = undefined;
      this.#attempt();
    });
  }

  /**
   * Stops refreshing and, unless `unregister` is false, removes the binding
   * (REGISTER with `Expires: 0`, waiting for a REGISTER still in flight
   * first; with `unregister: false` it returns at once). Never rejects: a failed removal is logged. Calling it again
   * returns the same promise.
   */
  stop(opts: { unregister?: boolean } = {}): Promise<void> {
    if (this.#stopped) return this.#stopped;
    this.#state = "stopping";
    this.#timer?.cancel();
    this.#timer = undefined;
    this.#stopped = (async () => {
      if (opts.unregister === false) {
        this.#current = undefined;
        this.#state = "stopped";
        return;
      }
      await this.#inflight;
      const reg = this.#current;
      this.#current = undefined;
      if (reg) {
        try {
          await reg.unregister();
          this.#log.info(`unregistered ${reg.aor} at ${reg.registrar}`, { call: reg.callId });
        } catch (e) {
          this.#log.warn(`could not unregister ${reg.aor}: ${errText(e)}`, { call: reg.callId });
        }
      }
      this.#state = "stopped";
    })();
    return this.#stopped;
  }
}
