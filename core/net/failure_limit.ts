/**
 * Failed attempts per source address, for anything a peer must prove itself
 * to (a Digest password, a bridge's or console's token): a source that fails
 * `maxFailures` times within a window is refused for a while, so a secret
 * cannot be guessed at the rate requests arrive. The sources being counted
 * (keyed as given: pass the `canonicalHost` of an address) and the
 * sources refused are two tables of `maxSources` each, oldest
 * forgotten first: memory is bounded, and a flood of new addresses can make
 * the counting table forget but cannot lift a block early unless it gets
 * `maxSources` addresses blocked itself.
 *
 * @module
 */

/** Limits of a {@linkcode FailureLimiter}. */
export interface FailureLimits {
  /** Failures within `windowMs` that get a source refused (default 10). */
  maxFailures?: number;
  /** Ms over which a source's failures are counted (default 60 000). */
  windowMs?: number;
  /** Ms a source is refused for once it failed `maxFailures` times (default 300 000; 0: never refused). */
  blockMs?: number;
  /** Sources counted, and apart sources refused, at most (default 10 000 each). */
  maxSources?: number;
  /**
   * Sources never counted nor refused (default none); e.g. `isLoopbackAddress`: a process on the same host
   * retrying with an old secret must not lock out the others there, as fail2ban ignores 127.0.0.1 by default.
   */
  exempt?: (source: string) => boolean;
}

/**
 * Counts failed attempts per source (an IP address, without port) and says which sources are refused. Times are ms
 * on whatever clock the caller reads (`now` arguments).
 *
 * @example
 * ```ts
 * const limit = new FailureLimiter({ maxFailures: 10, windowMs: 60_000, blockMs: 300_000 });
 * const now = Date.now();
 * if (limit.blocked("192.0.2.7", now) !== undefined) {
 *   // refuse without looking at the credentials
 * } else if (!passwordRight) {
 *   const started = limit.fail("192.0.2.7", now); // the block's length in ms when this failure started one
 * }
 * ```
 */
export class FailureLimiter {
  readonly #max: number;
  readonly #windowMs: number;
  readonly #blockMs: number;
  readonly #maxSources: number;
  /** Failures per source in its current window (insertion order = last failure, oldest first). */
  readonly #failing = new Map<string, { since: number; count: number }>();
  /** Sources refused, until when (insertion order = age). */
  readonly #blocked = new Map<string, number>();
  #refused = 0;
  readonly #exempt: (source: string) => boolean;

  /**
   * Creates a limiter; throws on limits that cannot work.
   * @param limits failures, window, block time, table size
   */
  constructor(limits: FailureLimits = {}) {
    this.#max = limits.maxFailures ?? 10;
    this.#windowMs = limits.windowMs ?? 60_000;
    this.#blockMs = limits.blockMs ?? 300_000;
    this.#maxSources = limits.maxSources ?? 10_000;
    this.#exempt = limits.exempt ?? (() => false);
    if (!(this.#max >= 1) || !(this.#windowMs > 0) || !(this.#blockMs >= 0) || !(this.#maxSources >= 1)) {
      throw new TypeError(
        "failure limits: maxFailures, windowMs and maxSources must be positive, blockMs 0 or more",
      );
    }
  }

  /**
   * The ms `source` is still refused for at `now` (then counted as a refusal), or undefined when it is not refused.
   */
  blocked(source: string, now: number): number | undefined {
    const until = this.#blocked.get(source);
    if (until === undefined) return undefined;
    if (until > now) {
      this.#refused++;
      return until - now;
    }
    this.#blocked.delete(source);
    return undefined;
  }

  /** Counts a failure of `source` at `now`; returns the block's length in ms when this failure started one. */
  fail(source: string, now: number): number | undefined {
    if (this.#exempt(source)) return undefined;
    let f = this.#failing.get(source);
    if (f && now - f.since >= this.#windowMs) f = undefined;
    f ??= { since: now, count: 0 };
    f.count++;
    this.#failing.delete(source);
    if (f.count < this.#max || this.#blockMs === 0) {
      if (f.count < this.#max) this.#failing.set(source, f);
      while (this.#failing.size > this.#maxSources) this.#failing.delete(this.#failing.keys().next().value!);
      return undefined;
    }
    this.#blocked.delete(source);
    this.#blocked.set(source, now + this.#blockMs);
    while (this.#blocked.size > this.#maxSources) this.#blocked.delete(this.#blocked.keys().next().value!);
    return this.#blockMs;
  }

  /** Entries of the two tables now (each at most `maxSources`): sources being counted, sources refused. */
  get sizes(): { failing: number; blocked: number } {
    return { failing: this.#failing.size, blocked: this.#blocked.size };
  }

  /** Requests refused so far ({@linkcode FailureLimiter.blocked} answered), and the sources refused at `now`. */
  counts(now: number): { refused: number; sources: number } {
    let sources = 0;
    for (const until of this.#blocked.values()) if (until > now) sources++;
    return { refused: this.#refused, sources };
  }
}

/**
 * True when `given` is the secret `expected`, compared in a time that does not depend on where they first differ
 * (only on `expected`'s length), so a peer cannot find a token character by character from response times.
 *
 * @example
 * ```ts
 * sameSecret(new URL("http://x/?token=abc").searchParams.get("token") ?? "", "abc"); // true
 * ```
 */
export function sameSecret(given: string, expected: string): boolean {
  let d = given.length ^ expected.length;
  for (let i = 0; i < expected.length; i++) d |= (given.charCodeAt(i) | 0) ^ expected.charCodeAt(i);
  return d === 0;
}
