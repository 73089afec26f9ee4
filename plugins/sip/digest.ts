/**
 * Digest authentication for SIP (RFC 3261 §22.4, updated by RFC 8760, which
 * takes the computation of RFC 7616): the response computation
 * ({@linkcode digestResponse}) for MD5, SHA-256 and SHA-512-256 and their
 * `-sess` variants, with `qop=auth`, `qop=auth-int` or no qop (RFC 2069
 * servers), and an {@linkcode Authenticator} built from credentials
 * ({@linkcode digestAuthenticator}) that plugs into `SipUserAgent`.
 *
 * The authenticator:
 * - reads every `WWW-Authenticate` (401) or `Proxy-Authenticate` (407)
 *   challenge of the response, keeps the Digest ones it can answer (known
 *   algorithm, a qop it supports, a realm it has credentials for), and picks
 *   the strongest algorithm (SHA-512-256, then SHA-256, then MD5; `-sess`
 *   after its plain form): RFC 8760 §2.4 lets the UAC's local policy choose;
 * - counts `nc` per nonce and makes a new `cnonce` for each answer;
 * - answers only for the servers its credentials are for
 *   ({@linkcode DigestCredentials.servers}): the request's next hop (where
 *   it went, and where the answer would go) must be one of them, so a callee
 *   called directly, or anyone else the user agent sends a request to, gets no
 *   digest response computed from the password (offline dictionary attack
 *   material) and not even the user name; the refusal is logged and given to
 *   the user agent as the reason the request failed;
 * - gives up on a realm whose credentials were just rejected (the request
 *   already carried ours for that realm and the new challenge is not
 *   `stale=true`), so a wrong password fails at once with the 401/407
 *   instead of looping; a `stale=true` challenge is answered again with the
 *   new nonce and is not a failure;
 * - never logs or returns the password; its log lines name the user, realm,
 *   algorithm and qop only.
 *
 * Layer: user agent, tier 1 (imports auth, auth_header, message, uri; core/net/address; node:crypto).
 *
 * @module
 */
import { createHash } from "node:crypto";
import type { Logger } from "../../core/log.ts";
import { canonicalHost, formatHostPort, type HostPort, sameAddress } from "../../core/net/address.ts";
import { type Authenticator, type ChallengeContext, type CredentialsHeader, credentialsHeaderName } from "./auth.ts";
import { type AuthParams, formatCredentials, parseChallenges, parseCredentials } from "./auth_header.ts";
import type { SipRequest, SipResponse } from "./message.ts";
import { parseNameAddr, parseUri, type SipUri } from "./uri.ts";

/** The digest algorithms this module computes (RFC 7616 §6.1's registry; RFC 8760 for SIP). */
export type DigestAlgorithm = "MD5" | "MD5-sess" | "SHA-256" | "SHA-256-sess" | "SHA-512-256" | "SHA-512-256-sess";

/** Every {@linkcode DigestAlgorithm}, strongest first: the default preference of {@linkcode digestAuthenticator}. */
export const DIGEST_ALGORITHMS: readonly DigestAlgorithm[] = [
  "SHA-512-256",
  "SHA-512-256-sess",
  "SHA-256",
  "SHA-256-sess",
  "MD5",
  "MD5-sess",
];

/** Quality of protection: `auth`, `auth-int` (the body is hashed too), or none (RFC 2069 servers). */
export type DigestQop = "auth" | "auth-int";

/** Everything one digest response is computed from. */
export interface DigestInput {
  /** Algorithm (default MD5). */
  algorithm?: DigestAlgorithm;
  /** The user name sent in `username`. */
  username: string;
  /** The challenge's realm. */
  realm: string;
  /** The password. */
  password: string;
  /** The request method (`REGISTER`, `INVITE`, ...). */
  method: string;
  /** The `uri` parameter: the Request-URI. */
  uri: string;
  /** The challenge's nonce. */
  nonce: string;
  /** Client nonce (required with a qop or a `-sess` algorithm). */
  cnonce?: string;
  /** Nonce count (required with a qop), 1 for the first use of a nonce. */
  nc?: number;
  /** Quality of protection; none for the RFC 2069 computation. */
  qop?: DigestQop;
  /** The message body, for `auth-int` (default empty). */
  body?: string | Uint8Array;
}

const NODE_HASH: Record<string, string> = { "MD5": "md5", "SHA-256": "sha256", "SHA-512-256": "sha512-256" };

/** The hash of `data` as lower-case hex, with the hash of `algorithm` (its base, without `-sess`). */
export function digestHash(algorithm: DigestAlgorithm, data: string | Uint8Array): string {
  const base = algorithm.replace(/-sess$/, "");
  return createHash(NODE_HASH[base]).update(data).digest("hex");
}

/** `nc` as sent: 8 lower-case hex digits. */
export function formatNonceCount(nc: number): string {
  if (!Number.isInteger(nc) || nc < 1 || nc > 0xffffffff) {
    throw new RangeError(`nonce count must be 1..2^32-1, got ${nc}`);
  }
  return nc.toString(16).padStart(8, "0");
}

/**
 * The `response` value (RFC 7616 §3.4.1; RFC 2069 without qop):
 *
 * - A1 = `username:realm:password`; for `-sess`, `H(username:realm:password):nonce:cnonce`
 * - A2 = `method:uri`; for `auth-int`, `method:uri:H(body)`
 * - with a qop: `H(H(A1):nonce:nc:cnonce:qop:H(A2))`; without: `H(H(A1):nonce:H(A2))`
 *
 * Throws a TypeError when a qop or `-sess` lacks `cnonce`/`nc`.
 *
 * @example RFC 7616 §3.9.1 (an HTTP example; SIP computes the same way)
 * ```ts
 * digestResponse({
 *   algorithm: "SHA-256", username: "Mufasa", realm: "http-auth@example.org", password: "Circle of Life",
 *   method: "GET", uri: "/dir/index.html", nonce: "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
 *   cnonce: "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ", nc: 1, qop: "auth",
 * }); // "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
 * ```
 */
export function digestResponse(i: DigestInput): string {
  const alg = i.algorithm ?? "MD5";
  if (!DIGEST_ALGORITHMS.includes(alg)) throw new TypeError(`unknown digest algorithm ${alg}`);
  const H = (s: string | Uint8Array) => digestHash(alg, s);
  const sess = alg.endsWith("-sess");
  if ((i.qop || sess) && (i.cnonce === undefined || i.cnonce === "")) {
    throw new TypeError(`digest ${i.qop ? `qop=${i.qop}` : alg} needs a cnonce`);
  }
  let ha1 = H(`${i.username}:${i.realm}:${i.password}`);
  if (sess) ha1 = H(`${ha1}:${i.nonce}:${i.cnonce}`);
  const a2 = i.qop === "auth-int" ? `${i.method}:${i.uri}:${H(i.body ?? "")}` : `${i.method}:${i.uri}`;
  if (!i.qop) return H(`${ha1}:${i.nonce}:${H(a2)}`);
  if (i.nc === undefined) throw new TypeError(`digest qop=${i.qop} needs a nonce count`);
  return H(`${ha1}:${i.nonce}:${formatNonceCount(i.nc)}:${i.cnonce}:${i.qop}:${H(a2)}`);
}

/** One set of credentials. */
export interface DigestCredentials {
  /** The authentication user name (`username`), e.g. `alice`. */
  username: string;
  /** The password. Never logged. */
  password: string;
  /**
   * Answer only challenges of this realm (exact match). Without it the
   * credentials answer any realm that no other entry names. A realm is no
   * secret (it is usually the domain, which a callee reads in our From): it
   * chooses between credentials, it does not make a peer trustworthy; that is
   * what `servers` is for.
   */
  realm?: string;
  /**
   * The servers these credentials are for: SIP URIs (`sip:pbx.example.com`,
   * `sip:10.0.0.5:5070`) or `host[:port]` (port 5060 by default; a URI's
   * `maddr` counts as its host). A challenge is answered only when the
   * challenged request was sent to one of them as its next hop (the
   * {@linkcode ChallengeContext.destination} the user agent gives: an outbound
   * proxy, a registrar, a target's host:port). Addresses are compared as
   * written, never resolved: a server given by name matches requests sent to
   * that name. Without `servers`, the credentials answer whoever the request
   * went to, including a callee that was called directly: give them whenever
   * the user agent sends requests to hosts that should not get them (calls to
   * targets chosen by others). An empty list: they answer no challenge.
   */
  servers?: readonly string[];
}

/** Options of {@linkcode digestAuthenticator}. */
export interface DigestAuthenticatorOptions {
  /** Algorithms accepted, in order of preference (default {@linkcode DIGEST_ALGORITHMS}, strongest first). */
  algorithms?: readonly DigestAlgorithm[];
  /** Makes a client nonce (default: 16 random bytes as hex). Tests inject a fixed one. */
  cnonce?: () => string;
  /** Logger for what it decides (user, realm, algorithm; never the password or the response). */
  log?: Logger;
  /**
   * What to do when a challenge is refused because its request did not go to
   * one of the credentials' `servers`: appended to the reason (e.g. which
   * option names the servers).
   */
  serversHint?: string;
}

/**
 * The next-hop address a `servers` entry names (see {@linkcode DigestCredentials.servers}), host canonical; throws
 * a TypeError naming the entry.
 */
function serverAddress(text: string, user: string): HostPort {
  const t = text.trim();
  let uri: SipUri;
  try {
    if (t.includes("<")) uri = parseNameAddr(t).uri;
    else uri = parseUri(/^sips?:/i.test(t) ? t : `sip:${t}`);
  } catch (e) {
    throw new TypeError(
      `digestAuthenticator: servers entry ${JSON.stringify(text)} of ${user} is not a SIP URI or host[:port] ` +
        `(${e instanceof Error ? e.message : e}): use e.g. sip:pbx.example.com or 192.0.2.5:5060`,
    );
  }
  const host = (uri.params.maddr ?? uri.host).replace(/^\[|\]$/g, "");
  return { hostname: canonicalHost(host), port: uri.port ?? 5060 };
}

/** A Digest challenge we can answer, read from a 401/407. */
interface Candidate {
  realm: string;
  nonce: string;
  algorithm: DigestAlgorithm;
  /** Whether the challenge named the algorithm (then our answer names it too). */
  named: boolean;
  qop?: DigestQop;
  opaque?: string;
  stale: boolean;
  index: number;
}

/** The largest number of nonces whose counts are kept (the oldest is forgotten first). */
const MAX_NONCES = 64;

function randomCnonce(): string {
  const b = new Uint8Array(16);
  crypto.getRandomValues(b);
  return [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
}

/** The algorithm named by a challenge, or undefined when it is not one we compute. */
function algorithmOf(params: Record<string, string>): DigestAlgorithm | undefined {
  const a = params.algorithm;
  if (a === undefined) return "MD5";
  return DIGEST_ALGORITHMS.find((x) => x.toLowerCase() === a.toLowerCase());
}

/** The qop we use for a challenge: auth if offered, else auth-int, none without qop; null when only unknown ones are offered. */
function qopOf(params: Record<string, string>): DigestQop | undefined | null {
  if (params.qop === undefined) return undefined;
  const offered = params.qop.split(",").map((q) => q.trim().toLowerCase());
  if (offered.includes("auth")) return "auth";
  if (offered.includes("auth-int")) return "auth-int";
  return null;
}

/**
 * An {@linkcode Authenticator} that answers Digest challenges with
 * `credentials` (one set, or several for different realms). Pass it as
 * `new SipUserAgent({ authenticator })`.
 *
 * @example
 * ```ts
 * // Answered only for requests sent to the PBX: a callee called directly gets nothing.
 * const authenticator = digestAuthenticator({
 *   username: "alice",
 *   password: Deno.env.get("SIP_PASSWORD")!,
 *   servers: ["sip:pbx.example.com"],
 * });
 * const ua = new SipUserAgent({ port: 0, userName: "alice", authenticator });
 * await ua.register({ registrar: "sip:pbx.example.com", aor: "sip:alice@pbx.example.com" });
 * ```
 */
export function digestAuthenticator(
  credentials: DigestCredentials | readonly DigestCredentials[],
  opts: DigestAuthenticatorOptions = {},
): Authenticator {
  const list = Array.isArray(credentials) ? [...credentials] : [credentials as DigestCredentials];
  if (list.length === 0) throw new TypeError("digestAuthenticator needs at least one set of credentials");
  for (const c of list) {
    if (typeof c?.username !== "string" || c.username === "" || /[\r\n]/.test(c.username)) {
      throw new TypeError("digestAuthenticator: each credentials entry needs a one-line, non-empty username");
    }
    if (typeof c.password !== "string") {
      throw new TypeError(`digestAuthenticator: the password of ${c.username} must be a string`);
    }
    if (c.servers !== undefined && !Array.isArray(c.servers)) {
      throw new TypeError(
        `digestAuthenticator: servers of ${c.username} must be a list (leave it out to answer any next hop)`,
      );
    }
  }
  /** Each entry's servers, parsed once (undefined: not bound to servers). */
  const bound = new Map<DigestCredentials, HostPort[]>();
  for (const c of list) if (c.servers) bound.set(c, c.servers.map((t: string) => serverAddress(t, c.username)));
  const preference = opts.algorithms ?? DIGEST_ALGORITHMS;
  if (preference.length === 0) throw new TypeError("digestAuthenticator: algorithms must not be empty");
  for (const a of preference) {
    if (!DIGEST_ALGORITHMS.includes(a)) {
      throw new TypeError(`digestAuthenticator: unknown algorithm ${a} (known: ${DIGEST_ALGORITHMS.join(", ")})`);
    }
  }
  const makeCnonce = opts.cnonce ?? randomCnonce;
  const log = opts.log;
  const counts = new Map<string, number>();

  /** The entries that may answer a request sent to `context.destination` (all unbound ones; without context, only those). */
  const entriesFor = (context: ChallengeContext | undefined): DigestCredentials[] =>
    list.filter((c) => {
      const servers = bound.get(c);
      return servers === undefined ||
        (context !== undefined && servers.some((a) => sameAddress(a, context.destination)));
    });

  const nextCount = (realm: string, nonce: string): number => {
    const key = `${realm}\u0000${nonce}`;
    const n = (counts.get(key) ?? 0) + 1;
    counts.delete(key);
    counts.set(key, n);
    while (counts.size > MAX_NONCES) counts.delete(counts.keys().next().value!);
    return n;
  };

  /** Realms the request already carried our credentials for (in the header that answers `challenge`). */
  const answeredRealms = (challenge: SipResponse, request: SipRequest): Set<string> => {
    const out = new Set<string>();
    for (const v of request.headers.getAll(credentialsHeaderName(challenge))) {
      try {
        const c = parseCredentials(v);
        if (c.scheme.toLowerCase() === "digest" && c.params.realm !== undefined) out.add(c.params.realm);
      } catch {
        // not ours
      }
    }
    return out;
  };

  return (challenge: SipResponse, request: SipRequest, context?: ChallengeContext): CredentialsHeader | undefined => {
    const headerName = challenge.status === 407 ? "Proxy-Authenticate" : "WWW-Authenticate";
    const call = challenge.headers.get("Call-ID");
    const fields = call ? { call } : undefined;
    const entries = entriesFor(context);
    if (entries.length === 0) {
      // Every entry is bound to servers, and this request did not go to any of them: nothing is computed or sent.
      const servers = [...new Set([...bound.values()].flat().map((a) => formatHostPort(a)))].join(", ");
      const users = [...new Set(list.map((c) => c.username))].join(", ");
      const where = context
        ? `this ${request.method} went to ${formatHostPort(context.destination)}`
        : "its next hop is unknown";
      const forWhom = servers ? `for ${servers} only` : "for no server (none configured)";
      const reason = `credentials not sent: those of ${users} are ${forWhom}, and ${where}` +
        (opts.serversHint ? `; ${opts.serversHint}` : "");
      const from = context ? ` from ${formatHostPort(context.source)}` : "";
      log?.warn(`${challenge.status} ${challenge.reason}${from} not answered: ${reason}`, fields);
      context?.decline(reason);
      return undefined;
    }
    const credentialsFor = (realm: string): DigestCredentials | undefined =>
      entries.find((c) => c.realm === realm) ??
        entries.find((c) => c.realm === undefined && !entries.some((o) => o.realm === realm));
    const values = challenge.headers.getAll(headerName);
    if (values.length === 0) {
      log?.warn(`${challenge.status} ${challenge.reason} without ${headerName}: nothing to answer`, fields);
      return undefined;
    }
    const offered: AuthParams[] = [];
    for (const v of values) {
      try {
        offered.push(...parseChallenges(v, headerName));
      } catch (e) {
        log?.warn(`${e instanceof Error ? e.message : e}: ignored`, fields);
      }
    }
    const answered = answeredRealms(challenge, request);
    const candidates: Candidate[] = [];
    const skipped: string[] = [];
    offered.forEach((c, index) => {
      if (c.scheme.toLowerCase() !== "digest") return skipped.push(`${c.scheme} (not Digest)`);
      const p = c.params;
      if (p.realm === undefined || p.nonce === undefined) return skipped.push("Digest without realm or nonce");
      const algorithm = algorithmOf(p);
      if (!algorithm || !preference.includes(algorithm)) return skipped.push(`algorithm ${p.algorithm}`);
      const qop = qopOf(p);
      if (qop === null) return skipped.push(`qop ${p.qop}`);
      if (qop === undefined && algorithm.endsWith("-sess")) return skipped.push(`${algorithm} without qop`);
      candidates.push({
        realm: p.realm,
        nonce: p.nonce,
        algorithm,
        named: p.algorithm !== undefined,
        ...(qop ? { qop } : {}),
        ...(p.opaque !== undefined ? { opaque: p.opaque } : {}),
        stale: (p.stale ?? "").toLowerCase() === "true",
        index,
      });
    });
    // Realms whose credentials were just rejected: answered before, and not merely a stale nonce now.
    const rejected = new Set<string>();
    for (const realm of answered) {
      const now = candidates.filter((c) => c.realm === realm);
      if (now.length > 0 && !now.some((c) => c.stale)) rejected.add(realm);
    }
    for (const realm of rejected) {
      const who = credentialsFor(realm)?.username ?? "?";
      log?.warn(
        `${challenge.status} ${challenge.reason}: the credentials of ${who} for realm "${realm}" were rejected`,
        fields,
      );
    }
    const usable = candidates.filter((c) => !rejected.has(c.realm) && credentialsFor(c.realm) !== undefined);
    if (usable.length === 0) {
      if (rejected.size === 0) {
        const realms = [...new Set(candidates.map((c) => `"${c.realm}"`))].join(", ");
        const why = candidates.length > 0
          ? `no credentials for realm ${realms} (configured: ${entries.map((c) => c.realm ?? "any realm").join(", ")})`
          : `no challenge we can answer${skipped.length ? ` (${skipped.join("; ")})` : ""}`;
        log?.warn(`${challenge.status} ${challenge.reason}: ${why}`, fields);
        context?.decline(why);
      }
      return undefined;
    }
    // Prefer a realm not answered yet (several challengers accumulate one header each), then the
    // stronger algorithm, then the order of the headers.
    usable.sort((a, b) =>
      Number(answered.has(a.realm) && !a.stale) - Number(answered.has(b.realm) && !b.stale) ||
      preference.indexOf(a.algorithm) - preference.indexOf(b.algorithm) || a.index - b.index
    );
    const pick = usable[0];
    const cred = credentialsFor(pick.realm)!;
    const method = request.method;
    const cnonce = pick.qop || pick.algorithm.endsWith("-sess") ? makeCnonce() : undefined;
    const nc = pick.qop ? nextCount(pick.realm, pick.nonce) : undefined;
    const response = digestResponse({
      algorithm: pick.algorithm,
      username: cred.username,
      realm: pick.realm,
      password: cred.password,
      method,
      uri: request.uri,
      nonce: pick.nonce,
      cnonce,
      nc,
      qop: pick.qop,
      body: request.body,
    });
    const params: [string, string, boolean?][] = [
      ["username", cred.username],
      ["realm", pick.realm],
      ["nonce", pick.nonce],
      ["uri", request.uri],
      ["response", response],
    ];
    if (pick.named || pick.algorithm !== "MD5") params.push(["algorithm", pick.algorithm, false]);
    if (cnonce !== undefined) params.push(["cnonce", cnonce]);
    if (pick.opaque !== undefined) params.push(["opaque", pick.opaque]);
    if (pick.qop) params.push(["qop", pick.qop, false], ["nc", formatNonceCount(nc!), false]);
    log?.debug(
      `answering ${challenge.status} for ${request.method}: Digest user ${cred.username}, realm "${pick.realm}", ` +
        `${pick.algorithm}${pick.qop ? `, qop=${pick.qop}, nc=${nc}` : ", no qop"}${
          pick.stale ? " (stale nonce)" : ""
        }`,
      fields,
    );
    return [challenge.status === 407 ? "Proxy-Authorization" : "Authorization", formatCredentials("Digest", params)];
  };
}
