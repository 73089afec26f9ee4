/**
 * Private: the one place that builds every request the user agent sends
 * outside a dialog — INVITE, CANCEL, OPTIONS, REGISTER — and re-sends one with
 * credentials after a 401/407. Each gets Via (new branch, `rport`),
 * Max-Forwards, From (with tag), To, Call-ID, CSeq, Contact (not CANCEL) and
 * User-Agent, in that order (RFC 3261 §8.1.1, §9.1, §10.2, §11.1). In-dialog
 * requests (BYE, ACK for a 2xx, re-INVITE) are built by the dialog.
 *
 * Layer: user agent (imports message, transport types, local address).
 *
 * @module
 */
import type { CredentialsHeader } from "./auth.ts";
import { newBranch, newCallId, newTag } from "./ids.ts";
import { createRequest, getCSeq, type SipRequest } from "./message.ts";
import { localAddressFacing } from "./local_address.ts";
import { formatHostPort, quote } from "./syntax.ts";
import type { Address } from "./transport.ts";
import { formatUri, type SipUri } from "./uri.ts";

/** Who we are: the values the builder puts in From, Contact, Via and User-Agent. */
export interface Identity {
  /** User part of our From/Contact URIs. */
  userName: string;
  /** Display name in From. */
  displayName?: string;
  /** `User-Agent` value. */
  userAgent: string;
  /** Host to advertise instead of the address facing the peer. */
  contactHost?: string;
  /** Address-of-record for From (`sip:alice@example.com`); default `sip:userName@<local address>`. */
  aor?: string;
  /** The transport's bound address. */
  localAddress(): Address;
}

/** Every part of an out-of-dialog request; see {@linkcode RequestBuilder.build}. */
export interface RequestParts {
  /** Method. */
  method: string;
  /** Request-URI. */
  uri: string;
  /** Where the request goes (to pick the local address facing it). */
  dest: Address;
  /** Top Via value (default: ours with a new branch). */
  via?: string;
  /** Route header values. */
  routes?: readonly string[];
  /** From value, tag included. */
  from: string;
  /** To value. */
  to: string;
  /** Call-ID. */
  callId: string;
  /** CSeq number. */
  cseq: number;
  /** Contact value; none when undefined. */
  contact?: string;
  /** Method-specific headers, after Contact (Allow, Accept, Expires). */
  headers?: readonly (readonly [string, string])[];
  /** The caller's extra headers, after User-Agent. */
  extra?: readonly (readonly [string, string])[];
  /** Body. */
  body?: string;
  /** Content-Type of the body. */
  contentType?: string;
}

/** Parts of an INVITE; see {@linkcode RequestBuilder.invite}. */
export interface InviteParts {
  /** Request-URI. */
  target: SipUri;
  /** To value (name-addr without tag). */
  to: string;
  /** Where it goes. */
  dest: Address;
  /** `Allow` value. */
  allow: string;
  /** Route values (a loose-routing outbound proxy). */
  routes?: readonly string[];
  /** SDP offer. */
  sdp?: string;
  /** Extra headers. */
  headers?: readonly (readonly [string, string])[];
  /** The Call-ID to use instead of a new one (a test of a peer reusing one, a B2BUA keeping its own). */
  callId?: string;
  /** From value without tag (default: ours, {@linkcode RequestBuilder.fromUri}). */
  from?: string;
}

/** Parts of a REGISTER; see {@linkcode RequestBuilder.register}. */
export interface RegisterParts {
  /** Request-URI: the registrar's domain. */
  registrar: string;
  /** Address-of-record (To and From URI). */
  aor: string;
  /** Where it goes. */
  dest: Address;
  /** Contact URI to bind. */
  contact: string;
  /** Requested lifetime in seconds (0 removes the binding). */
  expires: number;
  /** Call-ID, the same for every REGISTER of one registration. */
  callId: string;
  /** From tag. */
  fromTag: string;
  /** CSeq number. */
  cseq: number;
  /** Route values (a loose-routing outbound proxy). */
  routes?: readonly string[];
  /** Extra headers. */
  headers?: readonly (readonly [string, string])[];
}

/** Builds the user agent's out-of-dialog requests from its {@linkcode Identity}. */
export class RequestBuilder {
  readonly #id: Identity;

  /**
   * Creates the builder.
   * @param id who we are
   */
  constructor(id: Identity) {
    this.#id = id;
  }

  /** `User-Agent` / `Server` value. */
  get userAgent(): string {
    return this.#id.userAgent;
  }

  /** The host we advertise towards `peer`. */
  localHost(peer: Address): string {
    return this.#id.contactHost ?? localAddressFacing(this.#id.localAddress().hostname, peer.hostname);
  }

  /** A Via value towards `peer` with a new (or the given) branch. */
  via(peer: Address, branch: string = newBranch()): string {
    const hp = formatHostPort(this.localHost(peer), this.#id.localAddress().port);
    return `SIP/2.0/UDP ${hp};branch=${branch};rport`;
  }

  /** Our Contact URI towards `peer`: `sip:user@host:port`. */
  contactUri(peer: Address): string {
    return `sip:${this.#id.userName}@${formatHostPort(this.localHost(peer), this.#id.localAddress().port)}`;
  }

  /** Our Contact value towards `peer`: `<sip:user@host:port>`. */
  contact(peer: Address): string {
    return `<${this.contactUri(peer)}>`;
  }

  /** Our From value towards `peer`, without tag: the address-of-record when set, else `sip:user@<local address>`. */
  fromUri(peer: Address): string {
    const name = this.#id.displayName ? quote(this.#id.displayName) + " " : "";
    const uri = this.#id.aor ?? `sip:${this.#id.userName}@${formatHostPort(this.localHost(peer))}`;
    return `${name}<${uri}>`;
  }

  /**
   * Builds an out-of-dialog request: Via, Route, Max-Forwards, From, To,
   * Call-ID, CSeq, Contact, the method's headers, User-Agent, extra headers,
   * Content-Type.
   */
  build(p: RequestParts): SipRequest {
    const h: [string, string][] = [["Via", p.via ?? this.via(p.dest)]];
    for (const r of p.routes ?? []) h.push(["Route", r]);
    h.push(["Max-Forwards", "70"], ["From", p.from], ["To", p.to], ["Call-ID", p.callId]);
    h.push(["CSeq", `${p.cseq} ${p.method}`]);
    if (p.contact !== undefined) h.push(["Contact", p.contact]);
    for (const x of p.headers ?? []) h.push([x[0], x[1]]);
    h.push(["User-Agent", this.#id.userAgent]);
    for (const x of p.extra ?? []) h.push([x[0], x[1]]);
    if (p.body !== undefined && p.contentType) h.push(["Content-Type", p.contentType]);
    return createRequest({ method: p.method, uri: p.uri, headers: h, body: p.body });
  }

  /** A new INVITE: new Call-ID and From tag, CSeq 1, our Contact, `Allow`, the SDP offer if any. */
  invite(p: InviteParts): SipRequest {
    return this.build({
      method: "INVITE",
      uri: formatUri(p.target),
      dest: p.dest,
      routes: p.routes,
      from: `${p.from ?? this.fromUri(p.dest)};tag=${newTag()}`,
      to: p.to,
      callId: p.callId ?? newCallId(),
      cseq: 1,
      contact: this.contact(p.dest),
      headers: [["Allow", p.allow]],
      extra: p.headers,
      body: p.sdp,
      contentType: p.sdp !== undefined ? "application/sdp" : undefined,
    });
  }

  /**
   * The CANCEL for `invite` (RFC 3261 §9.1): its Request-URI, top Via (same
   * branch), Route, From, To, Call-ID and CSeq number; no Contact.
   */
  cancel(invite: SipRequest, dest: Address): SipRequest {
    const h = invite.headers;
    return this.build({
      method: "CANCEL",
      uri: invite.uri,
      dest,
      via: h.get("Via")!,
      routes: h.getAll("Route"),
      from: h.get("From")!,
      to: h.get("To")!,
      callId: h.get("Call-ID")!,
      cseq: getCSeq(invite).seq,
    });
  }

  /** An OPTIONS query to `target` (RFC 3261 §11.1), accepting `application/sdp`; `routes` for an outbound proxy. */
  options(target: SipUri, dest: Address, routes?: readonly string[]): SipRequest {
    const uri = formatUri(target);
    return this.build({
      method: "OPTIONS",
      uri,
      dest,
      routes,
      from: `${this.fromUri(dest)};tag=${newTag()}`,
      to: `<${uri}>`,
      callId: newCallId(),
      cseq: 1,
      contact: this.contact(dest),
      headers: [["Accept", "application/sdp"]],
    });
  }

  /**
   * A REGISTER (RFC 3261 §10.2): the registrar as Request-URI, the
   * address-of-record in To and From, the binding in Contact and its lifetime in
   * `Expires`.
   */
  register(p: RegisterParts): SipRequest {
    return this.build({
      method: "REGISTER",
      uri: p.registrar,
      dest: p.dest,
      routes: p.routes,
      from: `<${p.aor}>;tag=${p.fromTag}`,
      to: `<${p.aor}>`,
      callId: p.callId,
      cseq: p.cseq,
      contact: `<${p.contact}>`,
      headers: [["Expires", String(p.expires)]],
      extra: p.headers,
    });
  }

  /**
   * `prev` again after a 401/407, as a new transaction (RFC 3261 §22.2): a new
   * Via branch, CSeq `cseq`, and `credentials` added — replacing an earlier
   * header of the same name for the same realm, so that answers to several
   * challengers (a proxy and the far end) accumulate.
   */
  retry(prev: SipRequest, dest: Address, credentials: CredentialsHeader, cseq: number): SipRequest {
    const [name, value] = credentials;
    const realm = realmOf(value);
    const h: [string, string][] = [];
    let added = false;
    for (const [n, v] of prev.headers) {
      const key = n.toLowerCase();
      if (key === "via") {
        // Ours is the only Via of a request we send: one new Via with a new branch.
        if (!h.some(([x]) => x === "Via")) h.push(["Via", this.via(dest)]);
        continue;
      }
      if (key === name.toLowerCase() && realmOf(v) === realm) continue;
      if (key === "content-type" && !added) {
        h.push([name, value]);
        added = true;
      }
      h.push(key === "cseq" ? ["CSeq", `${cseq} ${prev.method}`] : [n, v]);
    }
    if (!added) h.push([name, value]);
    return createRequest({ method: prev.method, uri: prev.uri, headers: h, body: prev.body });
  }
}

/**
 * Where requests to `uri` go (RFC 3263 without DNS): its `maddr` or host
 * (brackets removed), and its port (default 5060).
 */
export function destinationOf(uri: SipUri): Address {
  const host = uri.params.maddr ?? uri.host;
  return { hostname: host.replace(/^\[|\]$/g, ""), port: uri.port ?? 5060 };
}

/** The `realm` parameter of a challenge or credentials value, or undefined. */
function realmOf(value: string): string | undefined {
  const m = /(?:^|[\s,])realm\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))/i.exec(value);
  return m ? (m[1] ?? m[2]) : undefined;
}
