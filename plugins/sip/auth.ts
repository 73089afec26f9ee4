/**
 * The seam for authentication challenges (RFC 3261 §22): when a request we
 * sent (INVITE or not) is answered `401 Unauthorized` or `407 Proxy
 * Authentication Required`, the user agent offers the challenge to an optional
 * {@linkcode Authenticator}. When it returns a credentials header, the request
 * is sent again in a new transaction with CSeq + 1 and that header (an INVITE
 * keeps its call: same Call-ID, From tag and call object); when it returns
 * undefined, the 401/407 is final like any other failure.
 *
 * An authenticator reads the `WWW-Authenticate` / `Proxy-Authenticate`
 * challenge and builds the answer; `digest.ts` makes one from credentials
 * (`digestAuthenticator`). The user agent tells it where the request went
 * ({@linkcode ChallengeContext}): the re-sent request, credentials included,
 * goes to that same next hop, so that is who gets them. An authenticator that
 * declines says why (`decline`), and the reason ends up in the call's end
 * reason or the registration's error.
 *
 * Layer: user agent (types only; imports the message and transport layers).
 *
 * @module
 */
import type { SipRequest, SipResponse } from "./message.ts";
import type { Address } from "./transport.ts";

/** Names of the headers that carry credentials: `Authorization` answers a 401, `Proxy-Authorization` a 407. */
export type CredentialsHeaderName = "Authorization" | "Proxy-Authorization";

/** A credentials header to add to the re-sent request: `[name, value]`. */
export type CredentialsHeader = [name: CredentialsHeaderName, value: string];

/**
 * Where a challenged request went, as the user agent tells its
 * {@linkcode Authenticator}.
 */
export interface ChallengeContext {
  /**
   * The request's next hop: the address it was sent to, as the user agent
   * chose it (an outbound proxy, a registrar, the target's host:port; a host
   * name when the application gave one and `resolveNames` allowed it). The
   * request re-sent with credentials goes there too: this is who would get
   * them (and whatever that hop forwards them to).
   */
  destination: Address;
  /** Where the 401/407 came from (the packet's source IP and port). */
  source: Address;
  /**
   * Says why the challenge is not answered (one line, no secret): the user
   * agent puts it in the call's end reason or the registration's error. The
   * authenticator still returns undefined.
   */
  decline(reason: string): void;
}

/**
 * Answers an authentication challenge: `challenge` is the 401/407 response and
 * `request` the request it answers (with the credentials of earlier rounds, if
 * any); `context` says where the request went (the user agent always gives
 * it). Return the credentials header to re-send the request with, or undefined
 * to give up. Called synchronously; an exception counts as giving up (and is
 * logged).
 *
 * @example
 * ```ts
 * const authenticator: Authenticator = (challenge, request, context) =>
 *   context?.destination.hostname === "192.0.2.5" && challenge.status === 407
 *     ? ["Proxy-Authorization", digestAnswer(challenge, request)]
 *     : undefined;
 * const ua = new SipUserAgent({ authenticator });
 * ```
 */
export type Authenticator = (
  challenge: SipResponse,
  request: SipRequest,
  context?: ChallengeContext,
) => CredentialsHeader | undefined;

/**
 * How many times one request is re-sent with credentials before a challenge is
 * taken as final (a 407 from a proxy, a 401 from the far end and a stale nonce
 * fit in well under this).
 */
export const MAX_AUTH_ROUNDS = 5;

/**
 * True for the responses that are offered to an {@linkcode Authenticator}: 401 and 407.
 *
 * @example
 * ```ts
 * isChallenge(res); // true for "407 Proxy Authentication Required"
 * ```
 */
export function isChallenge(res: SipResponse): boolean {
  return res.status === 401 || res.status === 407;
}

/**
 * The header that answers `challenge`: `Proxy-Authorization` for a 407,
 * `Authorization` otherwise (RFC 3261 §22.2, §22.3).
 *
 * @example
 * ```ts
 * credentialsHeaderName(proxyChallenge); // "Proxy-Authorization"
 * ```
 */
export function credentialsHeaderName(challenge: SipResponse): CredentialsHeaderName {
  return challenge.status === 407 ? "Proxy-Authorization" : "Authorization";
}
