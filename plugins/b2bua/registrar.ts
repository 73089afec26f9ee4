/**
 * A SIP registrar (RFC 3261 §10.3) for the SIP relay: the table of bindings
 * (user → Contacts, each with where its REGISTER came from and when it
 * expires), fed by the REGISTER requests `SipUserAgent.onRegister` hands it.
 *
 * - **Users.** One domain: a binding's key is the user part of the
 *   address-of-record (`sip:alice@anything` is `alice`). With a
 *   {@linkcode DigestChallenger}, a REGISTER must carry credentials of the
 *   AOR's own user (`401` with a challenge otherwise, `403` for another
 *   user's AOR).
 * - **Expiry is the heartbeat.** Each Contact lives for what was granted
 *   (its `expires` parameter, else the `Expires` header, else
 *   `defaultExpires`, clamped to `maxExpires`; below `minExpires`: `423` with
 *   `Min-Expires`); a re-REGISTER refreshes it; `Expires: 0` removes it
 *   (`Contact: *` removes them all). One clock timer, armed for the earliest
 *   expiry, removes bindings exactly when they expire.
 * - **Order.** A REGISTER with the Call-ID of an existing binding and a CSeq
 *   not above it is refused (`500`, RFC 3261 §10.3 step 7).
 * - **Bounds.** At most `maxClients` users registered at once (a new one
 *   beyond gets `503` with `Retry-After`); at most `maxContacts` Contacts per
 *   user (a new Contact beyond replaces the oldest).
 * - **Log.** One line per event: registered, unregistered, expired, refused
 *   (refreshes at debug level). Never a password.
 *
 * @module
 */
import type { Clock, Timer } from "../../core/clock.ts";
import { formatHostPort, type HostPort } from "../../core/net/address.ts";
import { type Logger, silentLogger } from "../../core/log.ts";
import { parseUri, type RegisterRequest, type RegistrarReply } from "../sip/mod.ts";
import { excerpt } from "../sip/syntax.ts";
import type { DigestChallenger } from "./digest_server.ts";

/** Options of a {@linkcode Registrar}. */
export interface RegistrarOptions {
  /** Clock the expiries run on. */
  clock: Clock;
  /** Logger (lines tagged `REGISTRAR`). */
  log?: Logger;
  /** Checks credentials; without it every REGISTER is accepted (optionally only from `users`). */
  auth?: DigestChallenger;
  /** Users registered at once, at most. */
  maxClients: number;
  /** Contacts per user, at most (a new one beyond replaces the oldest). */
  maxContacts: number;
  /** Shortest lifetime accepted, s (shorter: 423). */
  minExpires: number;
  /** Longest lifetime granted, s (longer asks are cut to it). */
  maxExpires: number;
  /** Lifetime when the REGISTER asks none, s. */
  defaultExpires: number;
  /** `Retry-After` of a 503, s. */
  retryAfter: number;
}

/** One registered Contact. */
export interface Binding {
  /** The user (the AOR's user part). */
  readonly user: string;
  /** The address-of-record as the REGISTER gave it. */
  aor: string;
  /** The Contact URI. */
  readonly contact: string;
  /** Where its REGISTER came from (a phone behind NAT is reached there). */
  source: HostPort;
  /** Call-ID of the registration. */
  callId: string;
  /** Last CSeq. */
  cseq: number;
  /** When it was first registered (clock ms). */
  readonly since: number;
  /** When it was last registered or refreshed (clock ms). */
  updated: number;
  /** When it expires (clock ms). */
  expiresAt: number;
}

/** What {@linkcode Registrar.stats} returns. */
export interface RegistrarStats {
  /** Users with at least one binding. */
  clients: number;
  /** The limit. */
  max_clients: number;
  /** Bindings (Contacts). */
  bindings: number;
  /** Bindings created. */
  registered: number;
  /** Refreshes of existing bindings. */
  refreshed: number;
  /** Bindings removed by Expires: 0 (or Contact: *). */
  unregistered: number;
  /** Bindings that expired. */
  expired: number;
  /** Bindings replaced because their user had `maxContacts` already. */
  replaced: number;
  /** REGISTERs refused with 503 (too many clients). */
  refused_full: number;
  /** REGISTERs challenged or refused for their credentials. */
  auth_failures: number;
  /** REGISTERs refused (403) because their source address failed authentication too often. */
  auth_blocked: number;
  /** Each binding: user, contact, source, seconds left. */
  per_binding: { user: string; contact: string; source: string; expires_in_s: number }[];
}

/** The user part of a SIP URI, or undefined. */
export function userOf(uri: string): string | undefined {
  try {
    return parseUri(uri).user || undefined;
  } catch {
    return undefined;
  }
}

/**
 * The registrar: answers REGISTER requests and keeps the bindings.
 *
 * @example
 * ```ts
 * const registrar = new Registrar({ clock, maxClients: 100, maxContacts: 4, minExpires: 60, maxExpires: 3600,
 *   defaultExpires: 3600, retryAfter: 30 });
 * ua.onRegister((r) => registrar.handle(r));
 * registrar.lookup("bob")?.contact; // "sip:bob@192.168.1.20:5060"
 * ```
 */
export class Registrar {
  readonly #o: RegistrarOptions;
  readonly #clock: Clock;
  readonly #log: Logger;
  readonly #byUser = new Map<string, Binding[]>();
  #bindings = 0;
  #timer: Timer | undefined;
  #timerAt = Infinity;
  #closed = false;
  readonly #counts = {
    registered: 0,
    refreshed: 0,
    unregistered: 0,
    expired: 0,
    replaced: 0,
    refusedFull: 0,
    authFailures: 0,
    authBlocked: 0,
  };

  /**
   * Creates the registrar.
   * @param opts clock, limits, lifetimes, authentication
   */
  constructor(opts: RegistrarOptions) {
    if (opts.minExpires > opts.maxExpires) {
      throw new RangeError(`min_expires (${opts.minExpires}) is above max_expires (${opts.maxExpires})`);
    }
    this.#o = opts;
    this.#clock = opts.clock;
    this.#log = (opts.log ?? silentLogger).child("REGISTRAR");
  }

  /** Users registered now. */
  get clientCount(): number {
    return this.#byUser.size;
  }

  /** The freshest live binding of `user`, or undefined. */
  lookup(user: string): Binding | undefined {
    const list = this.#byUser.get(user);
    if (!list) return undefined;
    const now = this.#clock.now();
    let best: Binding | undefined;
    for (const b of list) if (b.expiresAt > now && (!best || b.updated >= best.updated)) best = b;
    return best;
  }

  /** Every live binding of `user` (oldest first). */
  bindingsOf(user: string): readonly Binding[] {
    const now = this.#clock.now();
    return (this.#byUser.get(user) ?? []).filter((b) => b.expiresAt > now);
  }

  /** Answers one REGISTER (the `SipUserAgent.onRegister` handler). */
  handle(r: RegisterRequest): RegistrarReply {
    const o = this.#o;
    const from = formatHostPort(r.source);
    const user = userOf(r.aor);
    if (!user) {
      this.#log.info(`REGISTER from ${from} refused: the address-of-record ${r.aor} has no user part`);
      return { status: 404, reason: "Not Found (no user in the address-of-record)" };
    }
    if (o.auth) {
      const check = o.auth.check(r.request, "Authorization", r.source.hostname);
      if (!check.ok) {
        if (check.blocked !== undefined && !check.blockStarted) {
          this.#counts.authBlocked++;
          return blockedReply(check.blocked);
        }
        // The first REGISTER of a client carries no credentials: that is the normal challenge, not a failure.
        if (check.user !== undefined) {
          this.#counts.authFailures++;
          this.#log.info(`REGISTER for ${user} from ${from}: credentials of ${check.user} refused (${check.reason})`);
        }
        if (check.blocked !== undefined) {
          this.#counts.authBlocked++;
          this.#log.warn(blockedLine(r.source.hostname, check.blocked));
          return blockedReply(check.blocked);
        }
        return { status: 401, headers: o.auth.challenge("WWW-Authenticate", check.stale) };
      }
      if (check.user !== user) {
        this.#counts.authFailures++;
        // The AOR's user is the request's: quoted as an excerpt (it may be thousands of characters long).
        this.#log.info(`REGISTER for ${excerpt(user, 64)} from ${from} refused: authenticated as ${check.user}`);
        return { status: 403, reason: `Forbidden (${check.user} may not register ${excerpt(user, 64)})` };
      }
    }
    const now = this.#clock.now();
    const list = this.#byUser.get(user) ?? [];
    if (r.wildcard) {
      for (const b of [...list]) {
        if (b.callId === r.callId && r.cseq <= b.cseq) return outOfOrder();
      }
      for (const b of [...list]) this.#remove(b, "unregistered");
      return { status: 200, contacts: [] };
    }
    // Lifetimes first: one Contact below the minimum refuses the whole request (RFC 3261 §10.3 step 7).
    const asked = r.contacts.map((c) => c.expires ?? r.expires ?? o.defaultExpires);
    if (asked.some((e) => e !== 0 && e < o.minExpires)) {
      this.#log.info(`REGISTER for ${user} from ${from}: 423 (asks less than ${o.minExpires} s)`);
      return { status: 423, headers: [["Min-Expires", String(o.minExpires)]] };
    }
    for (const c of r.contacts) {
      const b = list.find((x) => x.contact === c.uri);
      if (b && b.callId === r.callId && r.cseq <= b.cseq) return outOfOrder();
    }
    const adds = r.contacts.filter((c, i) => asked[i] > 0 && !list.some((b) => b.contact === c.uri)).length;
    if (adds > 0 && list.length === 0 && this.#byUser.size >= o.maxClients) {
      this.#counts.refusedFull++;
      this.#log.info(
        `REGISTER for ${user} from ${from}: 503, ${this.#byUser.size}/${o.maxClients} clients registered`,
      );
      return {
        status: 503,
        reason: "Service Unavailable (too many clients)",
        headers: [["Retry-After", String(o.retryAfter)]],
      };
    }
    r.contacts.forEach((c, i) => {
      const expires = Math.min(asked[i], o.maxExpires);
      const existing = (this.#byUser.get(user) ?? []).find((b) => b.contact === c.uri);
      if (expires === 0) {
        if (existing) this.#remove(existing, "unregistered");
        return;
      }
      const at = now + expires * 1000;
      if (existing) {
        const moved = existing.source.hostname !== r.source.hostname || existing.source.port !== r.source.port;
        existing.aor = r.aor;
        existing.source = r.source;
        existing.callId = r.callId;
        existing.cseq = r.cseq;
        existing.updated = now;
        existing.expiresAt = at;
        this.#counts.refreshed++;
        const line = `refresh ${user}: ${c.uri} from ${from} for ${expires} s`;
        if (moved) this.#log.info(`${line} (its address changed)`);
        else this.#log.debug(line);
      } else {
        let mine = this.#byUser.get(user);
        if (!mine) this.#byUser.set(user, mine = []);
        if (mine.length >= o.maxContacts) {
          const oldest = mine.reduce((a, b) => (b.updated < a.updated ? b : a));
          this.#remove(oldest, "replaced");
          if (!this.#byUser.has(user)) this.#byUser.set(user, mine);
        }
        const b: Binding = {
          user,
          aor: r.aor,
          contact: c.uri,
          source: r.source,
          callId: r.callId,
          cseq: r.cseq,
          since: now,
          updated: now,
          expiresAt: at,
        };
        mine.push(b);
        this.#bindings++;
        this.#counts.registered++;
        this.#log.info(
          `register ${user}: ${c.uri} from ${from} for ${expires} s (${this.#byUser.size}/${o.maxClients} clients)`,
        );
      }
      this.#arm(at);
    });
    return { status: 200, contacts: this.#current(user, now) };
  }

  /** The reply's Contacts: every live binding of `user` with its seconds left. */
  #current(user: string, now: number): { uri: string; expires: number }[] {
    return (this.#byUser.get(user) ?? []).map((b) => ({
      uri: b.contact,
      expires: Math.max(0, Math.round((b.expiresAt - now) / 1000)),
    }));
  }

  #remove(b: Binding, why: "unregistered" | "expired" | "replaced"): void {
    const list = this.#byUser.get(b.user);
    const i = list ? list.indexOf(b) : -1;
    if (!list || i < 0) return;
    list.splice(i, 1);
    if (list.length === 0) this.#byUser.delete(b.user);
    this.#bindings--;
    this.#counts[why]++;
    const what = why === "unregistered" ? "unregister" : why === "expired" ? "expire" : "replace";
    const tail = why === "expired"
      ? ` (no re-REGISTER within its ${Math.round((b.expiresAt - b.updated) / 1000)} s)`
      : why === "replaced"
      ? ` (more than ${this.#o.maxContacts} contacts)`
      : "";
    this.#log.info(
      `${what} ${b.user}: ${b.contact}${tail} (${this.#byUser.size}/${this.#o.maxClients} clients)`,
    );
  }

  /** Makes sure the expiry timer fires at `at` at the latest. */
  #arm(at: number): void {
    if (this.#closed || at >= this.#timerAt) return;
    this.#timer?.cancel();
    this.#timerAt = at;
    this.#timer = this.#clock.at(at, this.#expire);
  }

  #expire = (): void => {
    this.#timer = undefined;
    this.#timerAt = Infinity;
    const now = this.#clock.now();
    let next = Infinity;
    for (const list of [...this.#byUser.values()]) {
      for (const b of [...list]) {
        if (b.expiresAt <= now) this.#remove(b, "expired");
        else next = Math.min(next, b.expiresAt);
      }
    }
    if (next < Infinity) this.#arm(next);
  };

  /** Stops the expiry timer (the bindings are forgotten with the registrar). */
  close(): void {
    this.#closed = true;
    this.#timer?.cancel();
    this.#timer = undefined;
  }

  /** Counters and every binding. */
  stats(): RegistrarStats {
    const now = this.#clock.now();
    const per: RegistrarStats["per_binding"] = [];
    for (const list of this.#byUser.values()) {
      for (const b of list) {
        per.push({
          user: b.user,
          contact: b.contact,
          source: formatHostPort(b.source),
          expires_in_s: Math.round((b.expiresAt - now) / 100) / 10,
        });
      }
    }
    const c = this.#counts;
    return {
      clients: this.#byUser.size,
      max_clients: this.#o.maxClients,
      bindings: this.#bindings,
      registered: c.registered,
      refreshed: c.refreshed,
      unregistered: c.unregistered,
      expired: c.expired,
      replaced: c.replaced,
      refused_full: c.refusedFull,
      auth_failures: c.authFailures,
      auth_blocked: c.authBlocked,
      per_binding: per,
    };
  }
}

/** The 403 a source refused for failing authentication too often gets (no challenge: it would invite a guess). */
export function blockedReply(seconds: number): { status: 403; reason: string } {
  return {
    status: 403,
    reason: `Forbidden (too many failed authentications from this address; retry in ${seconds} s)`,
  };
}

/** The log line of a source starting to be refused for failing authentication too often. */
export function blockedLine(address: string, seconds: number): string {
  return `${address}: too many failed authentications: its requests are refused (403) for ${seconds} s`;
}

function outOfOrder(): RegistrarReply {
  return { status: 500, reason: "Server Internal Error (CSeq out of order)" };
}
