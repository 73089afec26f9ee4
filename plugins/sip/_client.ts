/**
 * Private: the client side of requests other than INVITE (BYE, CANCEL,
 * OPTIONS, REGISTER) — each sent in a non-INVITE client transaction, re-sent
 * with credentials after a 401/407 when the authenticator answers the
 * challenge — that challenge step itself, which outgoing calls use for their
 * INVITE too, and the registration client (REGISTER and its removal).
 *
 * Layer: user agent (imports context, request builder, register, transaction, message).
 *
 * @module
 */
import { type ChallengeContext, type CredentialsHeader, isChallenge, MAX_AUTH_ROUNDS } from "./auth.ts";
import { errText, type UaContext } from "./_context.ts";
import { splitHeaderValue } from "./headers.ts";
import { newCallId, newTag } from "./ids.ts";
import { getCallId, getCSeq, type SipRequest, type SipResponse } from "./message.ts";
import { type RegisterOptions, Registration, RegistrationError } from "./register.ts";
import type { Address } from "./transport.ts";
import { formatUri, parseNameAddr, parseUri, type SipUri } from "./uri.ts";

/** What {@linkcode answerChallenge} decided: the credentials to re-send with, or why not (when it was said). */
export interface ChallengeAnswer {
  /** The credentials header to re-send the request with. */
  credentials?: CredentialsHeader;
  /** Why the authenticator declined (its `decline` reason), when it gave one. */
  declined?: string;
}

/**
 * Offers a 401/407 to the user agent's authenticator, with where the request
 * went (`destination`: the re-sent request goes there too) and where the
 * challenge came from (`source`). Returns the credentials header to re-send
 * `request` with, or none when there is no authenticator, it gives up (or
 * throws, or returns something else than a credentials header), or `round`
 * (re-sends so far) reached {@linkcode MAX_AUTH_ROUNDS}; with the reason it
 * gave when it declined.
 */
export function answerChallenge(
  ctx: UaContext,
  challenge: SipResponse,
  request: SipRequest,
  round: number,
  hop: { destination: Address; source: Address },
): ChallengeAnswer {
  const auth = ctx.authenticator;
  if (!auth || !isChallenge(challenge)) return {};
  const fields = { call: getCallId(request) };
  if (round >= MAX_AUTH_ROUNDS) {
    ctx.log.warn(
      `${challenge.status} ${challenge.reason} again after ${round} rounds of credentials: giving up`,
      fields,
    );
    return {};
  }
  let answer: unknown;
  let declined: string | undefined;
  const context: ChallengeContext = {
    destination: { ...hop.destination },
    source: { ...hop.source },
    decline: (reason) => {
      declined ??= String(reason).replace(/[\r\n]+/g, " ");
    },
  };
  try {
    answer = auth(challenge, request, context);
  } catch (e) {
    ctx.log.error(`authenticator failed: ${e instanceof Error ? e.message : e}`, fields);
    return {};
  }
  if (answer === undefined) return declined === undefined ? {} : { declined };
  if (
    !Array.isArray(answer) || answer.length !== 2 ||
    (answer[0] !== "Authorization" && answer[0] !== "Proxy-Authorization") ||
    typeof answer[1] !== "string" || answer[1].trim() === "" || /[\r\n]/.test(answer[1])
  ) {
    ctx.log.error(
      `authenticator returned ${JSON.stringify(answer)}: expected ["Authorization" | "Proxy-Authorization", ` +
        "a one-line value] or undefined",
      fields,
    );
    return {};
  }
  ctx.log.info(`${challenge.status} ${challenge.reason}: re-sending ${request.method} with ${answer[0]}`, fields);
  return { credentials: [answer[0], answer[1]] };
}

/** Options of {@linkcode sendRequest}. */
export interface SendOptions {
  /**
   * The CSeq number of a re-sent request (default: one more than the last).
   * In-dialog requests take it from their dialog.
   */
  nextCSeq?: () => number;
  /** False for CANCEL, which is never re-sent (RFC 3261 §22.1). */
  authenticate?: boolean;
  /** Told why the authenticator declined the final 401/407, when it said. */
  onDeclined?: (reason: string) => void;
}

/**
 * Sends a non-INVITE request in a client transaction; after a 401/407 that the
 * authenticator answers, sends it again (new transaction, next CSeq, the
 * credentials). Resolves with the final response, or undefined on timeout,
 * transport error or when the user agent closes.
 */
export function sendRequest(
  ctx: UaContext,
  req: SipRequest,
  dest: Address,
  opts: SendOptions = {},
): Promise<SipResponse | undefined> {
  return new Promise((resolve) => {
    let settled = false;
    const settle = (res: SipResponse | undefined) => {
      if (settled) return;
      settled = true;
      resolve(res);
    };
    const attempt = (request: SipRequest, round: number) => {
      if (ctx.closed) return settle(undefined);
      let live = true; // false once this transaction's final response was handled
      ctx.layer.sendRequest(request, dest, {
        onResponse: (res, _tx, from) => {
          if (res.status < 200 || !live) return;
          live = false;
          const answer = opts.authenticate === false || ctx.closed
            ? {}
            : answerChallenge(ctx, res, request, round, { destination: dest, source: from });
          const credentials = answer.credentials;
          if (!credentials) {
            if (answer.declined !== undefined) opts.onDeclined?.(answer.declined);
            return settle(res);
          }
          const cseq = opts.nextCSeq?.() ?? getCSeq(request).seq + 1;
          attempt(ctx.build.retry(request, dest, credentials, cseq), round + 1);
        },
        onTimeout: () => live && settle(undefined),
        onTransportError: () => live && settle(undefined),
        onTerminated: () => live && settle(undefined),
      });
    };
    attempt(req, 0);
  });
}

/** Parses a SIP URI given by the caller (`sip:` may be left out); throws an error naming the option. */
export function userUri(text: string, what: string, example: string): SipUri {
  const t = text.trim();
  try {
    return parseUri(/^sips?:/i.test(t) ? t : `sip:${t}`);
  } catch (e) {
    throw new TypeError(`${what} ${JSON.stringify(text)} is not a SIP URI (${errText(e)}): use e.g. ${example}`);
  }
}

/**
 * Registers a binding (RFC 3261 §10.2): REGISTER to the registrar (or the
 * outbound proxy, with its Route) with our Contact and the requested
 * lifetime; a 401/407 goes through the authenticator; a `423 Interval Too
 * Brief` is answered once by registering again with its `Min-Expires`
 * (§10.2.8). Resolves with the {@linkcode Registration} on a 2xx, whose
 * `refresh()` and `unregister()` reuse the Call-ID with the next CSeq;
 * rejects with {@linkcode RegistrationError} on a failure response or no
 * response, and with a TypeError/RangeError for bad options.
 */
export async function register(ctx: UaContext, opts: RegisterOptions): Promise<Registration> {
  if (ctx.closed) throw new Error("user agent is closed");
  const registrarUri = userUri(opts.registrar, "register: registrar", "sip:example.com");
  const aor = formatUri(userUri(opts.aor, "register: aor", "sip:alice@example.com"));
  const expires = checkExpires(opts.expires ?? 3600);
  const { dest, routes } = ctx.routeTo(registrarUri, opts.proxy);
  const contact = opts.contact === undefined
    ? ctx.build.contactUri(dest)
    : formatUri(userUri(opts.contact, "register: contact", "sip:alice@192.0.2.10:5060"));
  const registrar = formatUri(registrarUri);
  // One Call-ID and From tag for the registration; CSeq grows with each REGISTER (RFC 3261 §10.2).
  const callId = newCallId();
  const fromTag = newTag();
  const fields = { call: callId };
  let cseq = 0;
  /** The lifetime to ask when refreshing: the first one asked, raised by a 423's Min-Expires. */
  let asked = expires;
  const send = async (lifetime: number): Promise<SipResponse> => {
    if (ctx.closed) throw new Error("user agent is closed");
    const req = ctx.build.register({
      registrar,
      aor,
      dest,
      routes,
      contact,
      expires: lifetime,
      callId,
      fromTag,
      cseq: ++cseq,
      headers: opts.headers,
    });
    const what = lifetime === 0 ? "unregistering" : "registering";
    ctx.log.info(`REGISTER sent to ${registrar} for ${aor} (expires ${lifetime})`, fields);
    let declined: string | undefined;
    const res = await sendRequest(ctx, req, dest, { nextCSeq: () => ++cseq, onDeclined: (why) => declined = why });
    if (!res) throw new RegistrationError(`${what} ${aor} at ${registrar}: no response`);
    if (res.status >= 300) {
      const why = declined !== undefined ? ` (${declined})` : "";
      throw new RegistrationError(`${what} ${aor} at ${registrar}: ${res.status} ${res.reason}${why}`, res, declined);
    }
    return res;
  };
  const bind = async (lifetime: number): Promise<Registration> => {
    let used = lifetime;
    let response: SipResponse;
    try {
      response = await send(lifetime);
    } catch (e) {
      if (!(e instanceof RegistrationError) || e.status !== 423 || lifetime === 0) throw e;
      const min = minExpires(e.response!);
      if (min === undefined || min <= lifetime) {
        throw new RegistrationError(
          `registering ${aor} at ${registrar}: 423 ${e.response!.reason} without a Min-Expires above ${lifetime}`,
          e.response,
        );
      }
      ctx.log.info(`423 ${e.response!.reason}: registering again with expires ${min} (Min-Expires)`, fields);
      asked = Math.max(asked, min);
      used = min;
      response = await send(min);
    }
    const granted = grantedExpires(response, contact, used);
    ctx.log.info(`registered ${aor} at ${registrar} for ${granted} s`, fields);
    return new Registration({ registrar, aor, contact, response, expires: granted, callId }, {
      unregister: () => send(0),
      refresh: (next) => bind(next === undefined ? asked : checkExpires(next)),
    });
  };
  return await bind(expires);
}

/** Checks a requested lifetime; returns it. */
function checkExpires(expires: number): number {
  if (!Number.isInteger(expires) || expires < 0 || expires > 4294967295) {
    throw new RangeError(`register: expires must be a whole number of seconds from 0 to 4294967295, got ${expires}`);
  }
  return expires;
}

/** The `Min-Expires` of a 423, when it is a number of seconds. */
function minExpires(res: SipResponse): number | undefined {
  const v = res.headers.get("Min-Expires")?.trim();
  return v !== undefined && /^\d{1,10}$/.test(v) ? Math.min(Number(v), 4294967295) : undefined;
}

/**
 * The lifetime a registrar granted our `contact` (RFC 3261 §10.2.4): the
 * `expires` parameter of the matching Contact in its 2xx, else its `Expires`
 * header, else what we asked; at most 2³²−1 s.
 */
function grantedExpires(res: SipResponse, contact: string, asked: number): number {
  const ours = parseUri(contact);
  for (const value of res.headers.getAll("Contact").flatMap((v) => splitHeaderValue("Contact", v))) {
    let na;
    try {
      na = parseNameAddr(value);
    } catch {
      continue;
    }
    const u = na.uri;
    const same = u.scheme === ours.scheme && u.user === ours.user && u.host.toLowerCase() === ours.host.toLowerCase() &&
      (u.port ?? 5060) === (ours.port ?? 5060);
    const exp = na.params.expires;
    if (same && exp !== undefined && exp !== null && /^\d+$/.test(exp.trim())) return deltaSeconds(exp.trim());
  }
  const header = res.headers.get("Expires")?.trim();
  return header !== undefined && /^\d+$/.test(header) ? deltaSeconds(header) : asked;
}

/** Digits of delta-seconds as a number, at most 2³²−1 (RFC 3261 §25.1): a longer run of digits is not Infinity. */
function deltaSeconds(digits: string): number {
  return Math.min(Number(digits), 4294967295);
}
