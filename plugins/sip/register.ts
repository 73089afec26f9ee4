/**
 * Registration (RFC 3261 §10), both ways: the client side's options and
 * result ({@linkcode RegisterOptions}, {@linkcode Registration}, returned by
 * `SipUserAgent.register`; `refresh()` re-registers with the same Call-ID and
 * the next CSeq) and the registrar side's request and reply
 * ({@linkcode RegisterRequest}, {@linkcode RegistrarReply}, for the handler set
 * with `SipUserAgent.onRegister`). A `423 Interval Too Brief` is answered by
 * the user agent (once, with the registrar's `Min-Expires`); challenges go
 * through its authenticator; keeping a binding alive (refresh before expiry,
 * retry after failures) is `registration_keeper.ts`.
 *
 * Layer: user agent (imports errors, message, uri, headers, transport types).
 *
 * @module
 */
import { SipParseError } from "./errors.ts";
import { excerpt } from "./syntax.ts";
import { splitHeaderValue } from "./headers.ts";
import { getCallId, getCSeq, getTo, type SipRequest, type SipResponse } from "./message.ts";
import type { Address } from "./transport.ts";
import { formatUri, parseNameAddr } from "./uri.ts";

/** Options of `SipUserAgent.register`. */
export interface RegisterOptions {
  /** The registrar: the Request-URI, e.g. `sip:example.com` (`sip:` may be left out). The REGISTER goes to its host:port unless `proxy` is given. */
  registrar: string;
  /** The address-of-record to bind, in To and From, e.g. `sip:alice@example.com` (`sip:` may be left out). */
  aor: string;
  /** Requested lifetime of the binding in seconds (default 3600; 0 removes it). */
  expires?: number;
  /** The Contact URI to bind (default: this user agent's own, `sip:user@host:port` as seen from the registrar). */
  contact?: string;
  /**
   * Send to this address instead of the registrar's host:port (and instead of
   * the user agent's `outboundProxy`), without a Route header.
   */
  proxy?: Address;
  /** Extra headers. */
  headers?: [string, string][];
}

/** What a {@linkcode Registration} holds. */
export interface RegistrationInit {
  /** The registrar URI the REGISTER was sent to. */
  registrar: string;
  /** The address-of-record. */
  aor: string;
  /** The Contact URI that was bound. */
  contact: string;
  /** The registrar's 2xx. */
  response: SipResponse;
  /** The lifetime the registrar granted, in seconds. */
  expires: number;
  /** The Call-ID of the registration (the same for its refreshes and its removal). */
  callId: string;
}

/** What a {@linkcode Registration} does on the wire (the user agent provides it). */
export interface RegistrationOps {
  /** Sends the REGISTER that removes the binding; resolves with its 2xx. */
  unregister(): Promise<SipResponse>;
  /** Sends the REGISTER that renews it (same Call-ID, next CSeq); resolves with the new registration. */
  refresh(expires?: number): Promise<Registration>;
}

/**
 * A binding the registrar accepted (the result of `SipUserAgent.register`).
 *
 * @example
 * ```ts
 * const reg = await ua.register({ registrar: "sip:example.com", aor: "sip:alice@example.com", expires: 600 });
 * console.log(reg.response.status, reg.expires); // 200 600 (or less, as granted)
 * await reg.unregister(); // REGISTER with Expires: 0, same Call-ID, next CSeq
 * ```
 */
export class Registration {
  /** The registrar URI the REGISTER was sent to. */
  readonly registrar: string;
  /** The address-of-record. */
  readonly aor: string;
  /** The Contact URI that was bound. */
  readonly contact: string;
  /** The registrar's 2xx. */
  readonly response: SipResponse;
  /**
   * The lifetime granted, in seconds: our Contact's `expires` parameter in the
   * 2xx, else its `Expires` header, else what was asked (RFC 3261 §10.2.4).
   */
  readonly expires: number;
  /** The Call-ID shared by this registration's REGISTERs. */
  readonly callId: string;
  readonly #ops: RegistrationOps;

  /**
   * Creates the registration (the user agent does, when the registrar accepts).
   * @param init what the registrar accepted
   * @param ops removes or renews the binding on the wire
   */
  constructor(init: RegistrationInit, ops: RegistrationOps) {
    this.registrar = init.registrar;
    this.aor = init.aor;
    this.contact = init.contact;
    this.response = init.response;
    this.expires = init.expires;
    this.callId = init.callId;
    this.#ops = ops;
  }

  /**
   * Removes the binding: REGISTER with `Expires: 0` for the same Contact, same
   * Call-ID and the next CSeq. Resolves with the registrar's 2xx; rejects with
   * {@linkcode RegistrationError} on a failure response or no response.
   */
  unregister(): Promise<SipResponse> {
    return this.#ops.unregister();
  }

  /**
   * Renews the binding before it expires (RFC 3261 §10.2.4): REGISTER with the
   * same Call-ID and Contact, the next CSeq, and `expires` (default: what was
   * asked first, or the `Min-Expires` a 423 imposed). Resolves with the new
   * {@linkcode Registration}; rejects like `SipUserAgent.register`.
   */
  refresh(expires?: number): Promise<Registration> {
    return this.#ops.refresh(expires);
  }
}

/** A REGISTER failed: a final non-2xx response (in `response`), or no response at all. */
export class RegistrationError extends Error {
  /** The final response, when there was one. */
  readonly response?: SipResponse;
  /** Its status (undefined when nothing answered). */
  readonly status?: number;
  /** Why a final 401/407 was not answered with credentials, when the authenticator said (see `ChallengeContext.decline`). */
  readonly declined?: string;

  /**
   * Creates the error.
   * @param message what failed and why
   * @param response the final response, if any
   * @param declined why its 401/407 was not answered, when known
   */
  constructor(message: string, response?: SipResponse, declined?: string) {
    super(message);
    this.name = "RegistrationError";
    this.response = response;
    this.status = response?.status;
    if (declined !== undefined) this.declined = declined;
  }
}

/** One Contact of a REGISTER. */
export interface RegisterContact {
  /** The Contact URI. */
  uri: string;
  /** Its `expires` parameter, in seconds, when present. */
  expires?: number;
}

/** A REGISTER as a registrar handler sees it (see {@linkcode parseRegisterRequest}). */
export interface RegisterRequest {
  /** The request itself. */
  request: SipRequest;
  /** Where it came from. */
  source: Address;
  /** The address-of-record: the To URI. */
  aor: string;
  /** Call-ID (the same for every REGISTER of one client's registration). */
  callId: string;
  /** CSeq number (increases with each REGISTER of the same Call-ID). */
  cseq: number;
  /** The Contacts to bind (empty for a query, or with `wildcard`). */
  contacts: RegisterContact[];
  /** `Contact: *`: remove every binding of the AOR (always with `Expires: 0`). */
  wildcard: boolean;
  /** The `Expires` header, in seconds, when present. */
  expires?: number;
}

/** A registrar handler's answer. */
export interface RegistrarReply {
  /** Final status: 200, or e.g. 401 (with a challenge in `headers`), 403, 404, 423 (with `Min-Expires`). */
  status: number;
  /** Reason phrase (default: the status's standard one). */
  reason?: string;
  /** For a 2xx: every current binding of the AOR, sent as `Contact: <uri>;expires=N`. */
  contacts?: { uri: string; expires: number }[];
  /** More headers (`WWW-Authenticate`, `Min-Expires`, ...). */
  headers?: [string, string][];
}

/**
 * Handles REGISTER requests (set with `SipUserAgent.onRegister`). May answer
 * at once or asynchronously; an exception or rejection is answered `500`.
 */
export type RegistrarHandler = (req: RegisterRequest) => RegistrarReply | Promise<RegistrarReply>;

/** Parses a delta-seconds value (RFC 3261 §25.1: 1*DIGIT, capped at 2^32 − 1). */
function deltaSeconds(value: string, what: string): number {
  const v = value.trim();
  // An excerpt: the reason goes into the 400's reason phrase and the log line, whatever the value's length.
  if (!/^\d+$/.test(v)) throw new SipParseError(`${what} is not a number of seconds: '${excerpt(v)}'`);
  return Math.min(Number(v), 4294967295);
}

/**
 * Reads what a registrar needs from a REGISTER (RFC 3261 §10.3): the AOR from
 * To, each Contact with its `expires`, the `Expires` header, Call-ID and CSeq.
 * Throws `SipParseError` (answered `400`) for an unreadable Contact or expiry,
 * and for a `Contact: *` that is not alone or not with `Expires: 0`.
 *
 * @example
 * ```ts
 * const r = parseRegisterRequest(register, { hostname: "10.0.0.1", port: 5060 });
 * r.contacts; // [{ uri: "sip:alice@10.0.0.1:5060", expires: 600 }]
 * ```
 */
export function parseRegisterRequest(req: SipRequest, source: Address): RegisterRequest {
  const contacts: RegisterContact[] = [];
  let wildcard = false;
  let count = 0;
  for (const value of req.headers.getAll("Contact")) {
    for (const item of splitHeaderValue("Contact", value)) {
      count++;
      if (item.trim() === "*") {
        wildcard = true;
        continue;
      }
      const na = parseNameAddr(item);
      const exp = na.params.expires;
      contacts.push({
        uri: formatUri(na.uri),
        ...(exp !== undefined && exp !== null ? { expires: deltaSeconds(exp, "Contact expires") } : {}),
      });
    }
  }
  const header = req.headers.get("Expires");
  const expires = header === undefined ? undefined : deltaSeconds(header, "Expires");
  if (wildcard && (count > 1 || expires !== 0)) {
    throw new SipParseError("Contact: * must be the only Contact, with Expires: 0");
  }
  return {
    request: req,
    source,
    aor: formatUri(getTo(req).uri),
    callId: getCallId(req),
    cseq: getCSeq(req).seq,
    contacts,
    wildcard,
    ...(expires !== undefined ? { expires } : {}),
  };
}
