/**
 * The server side of SIP Digest authentication (RFC 3261 §22.4, RFC 8760 /
 * RFC 7616): {@linkcode DigestChallenger} makes the challenges a registrar
 * (`401` + `WWW-Authenticate`) or a proxy (`407` + `Proxy-Authenticate`)
 * sends, and checks the credentials a request carries against a table of
 * users and passwords. The response itself is computed by the SIP library's
 * `digestResponse`, the same code its clients answer with.
 *
 * - **Nonces carry their own proof**: `<issued-ms in base 36>.<16 random hex
 *   digits>.<HMAC>` under a per-process random key, so a nonce needs no table
 *   to be recognised, and two challenges never share one (not even in the
 *   same millisecond: the nonce count is kept per nonce); it is
 *   accepted for `nonceLifetime` seconds, after which correct credentials get
 *   a new challenge with `stale=true` (the client answers it without asking
 *   its user).
 * - **Replays**: `qop=auth` is required, and the nonce count must grow for
 *   each nonce (a bounded table of the last counts seen, oldest forgotten
 *   first; a forgotten nonce still ends at its lifetime).
 * - **Secrets**: passwords stay in the table; a result names the user and why
 *   a check failed, never a password or a digest.
 * - **Guessing**: a source address (IP, any port) whose credentials fail
 *   `maxFailures` times within `failureWindow` seconds is refused for
 *   `blockTime` seconds (a {@linkcode FailureLimiter}): its requests are
 *   answered {@linkcode DigestCheck} `blocked` without their credentials being
 *   looked at, so a password cannot be guessed at the rate datagrams arrive.
 *   Requests without credentials (a client's first) and expired nonces are
 *   not failures.
 *
 * @module
 */
import { createHmac, timingSafeEqual } from "node:crypto";
import type { Clock } from "../../core/clock.ts";
import { FailureLimiter } from "../../core/net/failure_limit.ts";
import { canonicalHost, isLoopbackAddress } from "../../core/net/address.ts";
import {
  DIGEST_ALGORITHMS,
  type DigestAlgorithm,
  digestResponse,
  parseCredentials,
  parseUri,
  type SipRequest,
} from "../sip/mod.ts";

/** Options of a {@linkcode DigestChallenger}. */
export interface DigestChallengerOptions {
  /** The realm of the challenges (shown to users by some phones). */
  realm: string;
  /** User name → password. Never logged. */
  users: ReadonlyMap<string, string>;
  /** Algorithms to challenge with, one challenge header each, preferred first (default `["MD5"]`). */
  algorithms?: readonly DigestAlgorithm[];
  /** Clock the nonces' age is read on. */
  clock: Clock;
  /** Seconds a nonce is accepted for (default 300). */
  nonceLifetime?: number;
  /** Nonce counts remembered at most (default 10 000). */
  maxNonces?: number;
  /** Key of the nonces' HMAC (default: 32 random bytes). Tests may fix it. */
  key?: Uint8Array;
  /** Failed credentials from one source address within `failureWindow` that get it refused (default 10). */
  maxFailures?: number;
  /** Seconds over which a source's failures are counted (default 60). */
  failureWindow?: number;
  /** Seconds a source is refused for once it failed `maxFailures` times (default 300). */
  blockTime?: number;
  /** Source addresses counted (and, apart, refused) at most (default 10 000 each). */
  maxSources?: number;
  /** Count failures from loopback addresses too (default false: a process on this host is never refused). */
  limitLoopback?: boolean;
}

/** The outcome of {@linkcode DigestChallenger.check}. */
export type DigestCheck =
  /** The credentials are right: `user` is who sent them. */
  | { ok: true; user: string }
  /**
   * No usable credentials: send a new challenge (`stale` when they were right but the nonce is too old).
   * `user` is the claimed user name when there was one; `reason` says why, for the log (no secret in it).
   */
  | {
    ok: false;
    stale: boolean;
    user?: string;
    reason: string;
    /**
     * Set when the source is refused for failing too often: the seconds left (at least 1). Answer 403 (a challenge
     * would invite the next guess); `blockStarted` is true on the request whose failure started the block, the one
     * to log.
     */
    blocked?: number;
    /** True on the failure that started the block (see `blocked`). */
    blockStarted?: boolean;
  };

const NONCE_RE = /^([0-9a-z]{1,12})\.([0-9a-f]{16})\.([0-9a-f]{32})$/;

/**
 * Makes digest challenges and checks credentials.
 *
 * @example
 * ```ts
 * const auth = new DigestChallenger({ realm: "voxpipe", users: new Map([["alice", "secret"]]), clock });
 * const check = auth.check(request, "Authorization");
 * if (!check.ok) return { status: 401, headers: auth.challenge("WWW-Authenticate", check.stale) };
 * ```
 */
export class DigestChallenger {
  /** The realm. */
  readonly realm: string;
  readonly #users: ReadonlyMap<string, string>;
  readonly #algorithms: readonly DigestAlgorithm[];
  readonly #clock: Clock;
  readonly #lifetimeMs: number;
  readonly #maxNonces: number;
  readonly #key: Uint8Array;
  /** Highest nonce count seen per nonce (insertion order = age, for forgetting the oldest). */
  readonly #counts = new Map<string, number>();
  /** Failed credentials per source address. */
  readonly #failures: FailureLimiter;

  /**
   * Creates the challenger.
   * @param opts realm, users, algorithms, clock, nonce lifetime
   */
  constructor(opts: DigestChallengerOptions) {
    if (!opts.realm || /["\\\r\n]/.test(opts.realm)) {
      throw new TypeError(
        `digest realm ${JSON.stringify(opts.realm)} must be non-empty, without quotes or line breaks`,
      );
    }
    const algorithms = opts.algorithms ?? ["MD5"];
    if (algorithms.length === 0) throw new TypeError("digest algorithms must not be empty");
    for (const a of algorithms) {
      if (!DIGEST_ALGORITHMS.includes(a) || a.endsWith("-sess")) {
        throw new TypeError(`digest algorithm ${a} is not one a server challenges with (MD5, SHA-256, SHA-512-256)`);
      }
    }
    this.realm = opts.realm;
    this.#users = opts.users;
    this.#algorithms = algorithms;
    this.#clock = opts.clock;
    this.#lifetimeMs = (opts.nonceLifetime ?? 300) * 1000;
    this.#maxNonces = opts.maxNonces ?? 10_000;
    this.#key = opts.key ?? crypto.getRandomValues(new Uint8Array(32));
    this.#failures = new FailureLimiter({
      maxFailures: opts.maxFailures ?? 10,
      windowMs: (opts.failureWindow ?? 60) * 1000,
      blockMs: (opts.blockTime ?? 300) * 1000,
      maxSources: opts.maxSources,
      exempt: opts.limitLoopback ? undefined : isLoopbackAddress,
    });
  }

  /** Requests refused so far because their source had failed too often; and the sources refused now. */
  get blocking(): { refused: number; sources: number } {
    return this.#failures.counts(this.#clock.now());
  }

  /**
   * Entries of its tables now, for diagnostics and tests: nonce counts (at most `maxNonces`), sources whose failures
   * are counted and sources refused (at most `maxSources` each).
   */
  get tableSizes(): { nonces: number; failing: number; blocked: number } {
    return { nonces: this.#counts.size, ...this.#failures.sizes };
  }

  /** Users in the table. */
  get userCount(): number {
    return this.#users.size;
  }

  /** True when `user` is in the table. */
  hasUser(user: string): boolean {
    return this.#users.has(user);
  }

  #mac(issued: string, salt: string): string {
    return createHmac("sha256", this.#key).update(`${issued}:${salt}:${this.realm}`).digest("hex").slice(0, 32);
  }

  /** A fresh nonce, never issued before: its issue time, a random part, and their HMAC. */
  #nonce(): string {
    const issued = Math.max(0, Math.floor(this.#clock.now())).toString(36);
    const salt = Array.from(crypto.getRandomValues(new Uint8Array(8)), (b) => b.toString(16).padStart(2, "0")).join(
      "",
    );
    return `${issued}.${salt}.${this.#mac(issued, salt)}`;
  }

  /**
   * The challenge headers (one per algorithm, preferred first) to send with a 401
   * (`WWW-Authenticate`) or a 407 (`Proxy-Authenticate`); `stale` marks the nonce of
   * the credentials as expired.
   */
  challenge(header: "WWW-Authenticate" | "Proxy-Authenticate", stale = false): [string, string][] {
    const nonce = this.#nonce();
    return this.#algorithms.map((algorithm) => [
      header,
      `Digest realm="${this.realm}", nonce="${nonce}", qop="auth", algorithm=${algorithm}${
        stale ? ", stale=true" : ""
      }`,
    ]);
  }

  /**
   * Checks the credentials `req` carries in `header` (`Authorization` for a
   * registrar, `Proxy-Authorization` for a proxy) for this realm. With
   * `source` (the address the request came from, without port), failures are
   * counted per source, and a source that failed too often is refused
   * (`blocked`) without its credentials being checked.
   */
  check(req: SipRequest, header: "Authorization" | "Proxy-Authorization", source?: string): DigestCheck {
    if (source === undefined) return this.#verify(req, header);
    const now = this.#clock.now();
    source = canonicalHost(source);
    const left = this.#failures.blocked(source, now);
    if (left !== undefined) {
      return {
        ok: false,
        stale: false,
        reason: "too many failed authentications from this address",
        blocked: Math.max(1, Math.ceil(left / 1000)),
      };
    }
    const result = this.#verify(req, header);
    if (result.ok || result.stale || result.user === undefined) return result;
    const block = this.#failures.fail(source, now);
    return block === undefined ? result : { ...result, blocked: Math.ceil(block / 1000), blockStarted: true };
  }

  /** {@linkcode DigestChallenger.check} without the failure count. */
  #verify(req: SipRequest, header: "Authorization" | "Proxy-Authorization"): DigestCheck {
    const values = req.headers.getAll(header);
    if (values.length === 0) return { ok: false, stale: false, reason: `no ${header}` };
    let params: Record<string, string> | undefined;
    for (const v of values) {
      try {
        const c = parseCredentials(v, header);
        if (c.scheme.toLowerCase() === "digest" && c.params.realm === this.realm) {
          params = c.params;
          break;
        }
      } catch {
        // malformed: looked at as absent
      }
    }
    if (!params) return { ok: false, stale: false, reason: `no Digest credentials for realm "${this.realm}"` };
    const user = params.username;
    if (!user) return { ok: false, stale: false, reason: "credentials without username" };
    const fail = (reason: string, stale = false): DigestCheck => ({ ok: false, stale, user, reason });
    const password = this.#users.get(user);
    if (password === undefined) return fail(`unknown user`);
    const algorithm = this.#algorithms.find((a) => a.toLowerCase() === (params.algorithm ?? "MD5").toLowerCase());
    if (!algorithm) return fail(`algorithm ${params.algorithm} was not offered`);
    if (params.qop?.toLowerCase() !== "auth") return fail(`qop ${params.qop ?? "(none)"} instead of auth`);
    const { nonce, cnonce, response, uri } = params;
    const nc = /^[0-9a-fA-F]{8}$/.test(params.nc ?? "") ? parseInt(params.nc, 16) : NaN;
    if (!nonce || !cnonce || !response || !uri || !(nc >= 1)) {
      return fail("incomplete credentials (nonce, cnonce, nc, uri, response)");
    }
    const m = NONCE_RE.exec(nonce);
    if (!m || !equal(m[3], this.#mac(m[1], m[2]))) return fail("a nonce this server did not issue");
    if (!sameUri(uri, req.uri)) return fail(`uri ${JSON.stringify(uri)} is not the Request-URI`);
    const expected = digestResponse({
      algorithm,
      username: user,
      realm: this.realm,
      password,
      method: req.method,
      uri,
      nonce,
      cnonce,
      nc,
      qop: "auth",
    });
    if (!equal(response.toLowerCase(), expected)) return fail("wrong password");
    if (this.#clock.now() - parseInt(m[1], 36) > this.#lifetimeMs) return fail("nonce expired", true);
    const last = this.#counts.get(nonce);
    if (last !== undefined && nc <= last) return fail(`nonce count ${nc} already used (replay)`);
    this.#counts.delete(nonce);
    this.#counts.set(nonce, nc);
    while (this.#counts.size > this.#maxNonces) this.#counts.delete(this.#counts.keys().next().value!);
    return { ok: true, user };
  }
}

/** Compares two strings in time independent of where they differ. */
function equal(a: string, b: string): boolean {
  const x = new TextEncoder().encode(a), y = new TextEncoder().encode(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/** The credentials' `uri` names the Request-URI: the same text, or the same SIP URI once parsed. */
function sameUri(a: string, b: string): boolean {
  if (a === b) return true;
  try {
    const x = parseUri(a), y = parseUri(b);
    return x.scheme === y.scheme && x.user === y.user && x.host.toLowerCase() === y.host.toLowerCase() &&
      (x.port ?? 5060) === (y.port ?? 5060);
  } catch {
    return false;
  }
}

/**
 * Reads a user table: `user:password` entries separated by commas or line
 * breaks (the password is what follows the first colon, trimmed; in the
 * comma-separated form it cannot hold a comma); blank lines and lines starting
 * with `#` are skipped. Throws naming the entry (by number, never its
 * password) when one is malformed or a user appears twice.
 *
 * @example
 * ```ts
 * parseUsers("alice:secret-1, bob:secret-2").get("bob"); // "secret-2"
 * ```
 */
export function parseUsers(text: string, what = "users"): Map<string, string> {
  const out = new Map<string, string>();
  const lines = text.includes("\n") ? text.split(/\r?\n/) : text.split(",");
  lines.forEach((raw, i) => {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) return;
    const colon = line.indexOf(":");
    const user = colon > 0 ? line.slice(0, colon).trim() : "";
    const password = line.slice(colon + 1).trim();
    if (!/^[A-Za-z0-9._~+-]+$/.test(user) || password === "") {
      throw new Error(
        `${what}: entry ${
          i + 1
        } is not user:password (user made of letters, digits and . _ ~ + -, a non-empty password)`,
      );
    }
    if (out.has(user)) throw new Error(`${what}: user ${user} is listed twice`);
    out.set(user, password);
  });
  return out;
}
