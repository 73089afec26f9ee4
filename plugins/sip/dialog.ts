/**
 * Dialogs (RFC 3261 §12): state created by INVITE transactions, building
 * in-dialog requests (BYE, re-INVITE) and the end-to-end ACK for a 2xx, plus the
 * first checks a UAS makes on every request (§8.2: 405, 416, 420, 481; OPTIONS).
 *
 * A {@linkcode Dialog} owns its state: its state (early → confirmed →
 * terminated), remote target, route set and CSeq counters change only through
 * its methods ({@linkcode Dialog.confirm}, {@linkcode Dialog.terminate},
 * {@linkcode Dialog.refreshTarget}, {@linkcode Dialog.nextLocalSeq},
 * {@linkcode Dialog.acceptRemoteCSeq}); the fields are read-only from outside.
 *
 * Layer: dialog (imports the message layer only).
 *
 * @module
 */
import { SipParseError } from "./errors.ts";
import { newTag } from "./ids.ts";
import {
  createRequest,
  createResponse,
  getCallId,
  getCSeq,
  getFrom,
  getTo,
  type SipRequest,
  type SipResponse,
  tagOf,
} from "./message.ts";
import { formatNameAddr, formatUri, type NameAddr, parseNameAddr, parseUri, type SipUri } from "./uri.ts";

/** Dialog states. */
export type DialogState = "early" | "confirmed" | "terminated";

/** The role that created a dialog. */
export type DialogRole = "uac" | "uas";

/** What {@linkcode Dialog} is built from. */
export interface DialogInit {
  /** Which side we are. */
  role: DialogRole;
  /** Call-ID. */
  callId: string;
  /** Our tag. */
  localTag: string;
  /** The peer's tag. */
  remoteTag: string;
  /** Our URI header value (From for the UAC, To for the UAS), without tag. */
  localUri: string;
  /** The peer's URI header value, without tag. */
  remoteUri: string;
  /** Our last CSeq number. */
  localSeq: number;
  /** The peer's last CSeq number (undefined until it sends a request). */
  remoteSeq?: number;
  /** The peer's Contact URI. */
  remoteTarget: string;
  /** Route set, in the order requests must carry it. */
  routeSet: string[];
  /** Initial state. */
  state: DialogState;
}

/** `fn()`, with a SipParseError's reason prefixed by what was being read (`bad From header: ...`). */
function reading<T>(what: string, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof SipParseError) throw new SipParseError(`bad ${what}: ${e.reason}`);
    throw e;
  }
}

/** Header parameters removed: the rest of the name-addr identifies the dialog's URIs. */
function withoutTag(value: string, name: string): string {
  return reading(`${name} header`, () => {
    const na: NameAddr = parseNameAddr(value);
    delete na.params.tag;
    return formatNameAddr(na);
  });
}

function contactUri(msg: SipRequest | SipResponse): string | undefined {
  const c = msg.headers.get("Contact");
  if (c === undefined || c.trim() === "*") return undefined;
  return reading("Contact header", () => formatUri(parseNameAddr(c).uri));
}

/**
 * The Record-Route values of a dialog-forming message, each checked to be a
 * SIP name-addr (a route that cannot be read would only fail later, when a
 * request is sent in the dialog).
 */
function routesOf(msg: SipRequest | SipResponse): string[] {
  const routes = msg.headers.getAll("Record-Route");
  for (const r of routes) reading("Record-Route header", () => parseNameAddr(r));
  return routes;
}

/** Methods whose requests (and their 2xx) replace a dialog's remote target (RFC 3261 §12.2, RFC 3311). */
const TARGET_REFRESH: ReadonlySet<string> = new Set(["INVITE", "UPDATE"]);

/**
 * A dialog: Call-ID, tags, CSeq counters, remote target and route set.
 *
 * @example
 * ```ts
 * const dialog = Dialog.fromUac(invite, ok200); // on the caller, at the 2xx
 * const { request, nextHop } = dialog.createRequest("BYE", { via: "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKx" });
 * ```
 */
export class Dialog {
  /** Which side we are. */
  readonly role: DialogRole;
  /** Call-ID. */
  readonly callId: string;
  /** Our tag. */
  readonly localTag: string;
  /** The peer's tag. */
  readonly remoteTag: string;
  /** Our URI header value, without tag. */
  readonly localUri: string;
  /** The peer's URI header value, without tag. */
  readonly remoteUri: string;
  #localSeq: number;
  #remoteSeq?: number;
  #remoteTarget: string;
  #routeSet: readonly string[];
  #state: DialogState;

  /**
   * Creates a dialog from all its fields (see {@linkcode Dialog.fromUac} and {@linkcode Dialog.fromUas}).
   * @param init every field of the dialog
   */
  constructor(init: DialogInit) {
    this.role = init.role;
    this.callId = init.callId;
    this.localTag = init.localTag;
    this.remoteTag = init.remoteTag;
    this.localUri = init.localUri;
    this.remoteUri = init.remoteUri;
    this.#localSeq = init.localSeq;
    this.#remoteSeq = init.remoteSeq;
    this.#remoteTarget = init.remoteTarget;
    this.#routeSet = Object.freeze([...init.routeSet]);
    this.#state = init.state;
  }

  /**
   * The UAC's dialog from its INVITE and a 101–299 response with a To tag (RFC 3261 §12.1.2).
   * Throws a `SipParseError` naming the header (`bad To header: ...`) when the
   * To, Contact or a Record-Route of the response cannot serve in a dialog
   * (e.g. a URI that is not `sip:`/`sips:`).
   *
   * @example
   * ```ts
   * const d = Dialog.fromUac(invite, ok200); // d.state === "confirmed"
   * ```
   */
  static fromUac(invite: SipRequest, res: SipResponse): Dialog {
    const remoteTag = tagOf(res.headers.get("To"));
    if (!remoteTag) throw new Error("response without To tag cannot create a dialog");
    return new Dialog({
      role: "uac",
      callId: getCallId(invite),
      localTag: getFrom(invite).params.tag ?? "",
      remoteTag,
      localUri: withoutTag(invite.headers.get("From")!, "From"),
      remoteUri: withoutTag(res.headers.get("To")!, "To"),
      localSeq: getCSeq(invite).seq,
      remoteTarget: contactUri(res) ?? invite.uri,
      routeSet: routesOf(res).reverse(),
      state: res.status >= 200 ? "confirmed" : "early",
    });
  }

  /**
   * The UAS's dialog from the INVITE it received and the tag it chose (RFC 3261 §12.1.1).
   * Throws a `SipParseError` naming the header (`bad From header: ...`) when its
   * From, To, Contact or a Record-Route cannot serve in a dialog; the user
   * agent answers that INVITE `400 Bad Request (<reason>)`.
   *
   * @example
   * ```ts
   * const d = Dialog.fromUas(invite, newTag());
   * ```
   */
  static fromUas(invite: SipRequest, localTag: string, state: DialogState = "early"): Dialog {
    return new Dialog({
      role: "uas",
      callId: getCallId(invite),
      localTag,
      remoteTag: getFrom(invite).params.tag ?? "",
      localUri: withoutTag(invite.headers.get("To")!, "To"),
      remoteUri: withoutTag(invite.headers.get("From")!, "From"),
      localSeq: 0,
      remoteSeq: getCSeq(invite).seq,
      remoteTarget: contactUri(invite) ?? formatUri(getFrom(invite).uri),
      routeSet: routesOf(invite),
      state,
    });
  }

  /** Dialog id: `Call-ID;local tag;remote tag`. */
  get id(): string {
    return dialogId(this.callId, this.localTag, this.remoteTag);
  }

  /** State: `early` until the 2xx (UAC) or the ACK (UAS), then `confirmed`, then `terminated`. */
  get state(): DialogState {
    return this.#state;
  }

  /** Where in-dialog requests go (the peer's current Contact URI). */
  get remoteTarget(): string {
    return this.#remoteTarget;
  }

  /** Route set (Record-Route, reversed for the UAC), in the order requests carry it (frozen). */
  get routeSet(): readonly string[] {
    return this.#routeSet;
  }

  /** Our last CSeq number (0 until the UAS sends its first request). */
  get localSeq(): number {
    return this.#localSeq;
  }

  /** The peer's last CSeq number (undefined until it sends a request). */
  get remoteSeq(): number | undefined {
    return this.#remoteSeq;
  }

  /**
   * Moves an early dialog to `confirmed` (RFC 3261 §12.1, §13.2.2.4): the UAS
   * calls it when the ACK arrives, the UAC when the 2xx arrives — with that 2xx,
   * whose Contact then becomes the remote target and whose Record-Route the
   * route set. A dialog that is already confirmed is left as it is. Returns
   * false for a terminated dialog, which stays terminated.
   *
   * @example
   * ```ts
   * const d = Dialog.fromUac(invite, ringing180); // early
   * d.confirm(ok200); // confirmed; d.remoteTarget is the 200's Contact
   * ```
   */
  confirm(response?: SipResponse): boolean {
    if (this.#state === "terminated") return false;
    if (this.#state === "early" && response !== undefined && this.role === "uac") {
      if (response.status < 200 || response.status >= 300) {
        throw new Error(`a dialog is confirmed by a 2xx, not by ${response.status} ${response.reason}`);
      }
      this.#checkOwn(response);
      this.#remoteTarget = contactUri(response) ?? this.#remoteTarget;
      this.#routeSet = Object.freeze(routesOf(response).reverse());
    }
    this.#state = "confirmed";
    return true;
  }

  /** Moves the dialog to `terminated` (BYE sent or received, call failed or cancelled). */
  terminate(): void {
    this.#state = "terminated";
  }

  /**
   * Applies a target refresh (RFC 3261 §12.2.1.2, §12.2.2): a re-INVITE (or
   * UPDATE) the peer sent in this dialog, or a 2xx to one we sent, replaces the
   * remote target with its Contact URI. Other messages, messages without a
   * Contact and terminated dialogs change nothing. Returns true when the target
   * changed. Throws `SipParseError` when the Contact cannot be parsed, and an
   * Error when the message belongs to another dialog.
   *
   * @example
   * ```ts
   * dialog.refreshTarget(reinvite); // true: in-dialog requests now go to its Contact
   * ```
   */
  refreshTarget(msg: SipRequest | SipResponse): boolean {
    if (this.#state === "terminated") return false;
    if (msg.kind === "request") {
      if (!TARGET_REFRESH.has(msg.method)) return false;
    } else if (msg.status < 200 || msg.status >= 300 || !TARGET_REFRESH.has(getCSeq(msg).method)) {
      return false;
    }
    this.#checkOwn(msg);
    const target = contactUri(msg);
    if (target === undefined || target === this.#remoteTarget) return false;
    this.#remoteTarget = target;
    return true;
  }

  /**
   * Takes the next local CSeq number for a new in-dialog request (RFC 3261
   * §12.2.1.1): one more than the last, or a random start for a UAS that has
   * not sent any request yet. {@linkcode Dialog.createRequest} uses it; so does
   * a request re-sent with credentials after a 401/407.
   *
   * @example
   * ```ts
   * const seq = dialog.nextLocalSeq(); // e.g. 314160 after an INVITE with CSeq 314159
   * ```
   */
  nextLocalSeq(): number {
    if (this.#localSeq === 0) this.#localSeq = 1 + Math.floor(Math.random() * 10000);
    else this.#localSeq++;
    return this.#localSeq;
  }

  /** The URI of the next hop for in-dialog requests: the first route, or the remote target. */
  nextHop(): SipUri {
    if (this.#routeSet.length > 0) return parseNameAddr(this.#routeSet[0]).uri;
    return parseUri(this.#remoteTarget);
  }

  /**
   * Builds an in-dialog request (RFC 3261 §12.2.1.1): Request-URI and Route from
   * the remote target and route set (loose or strict routing), From/To with tags,
   * the next local CSeq (or `opts.cseq` for ACK/CANCEL).
   */
  createRequest(method: string, opts: InDialogRequestOptions): { request: SipRequest; nextHop: SipUri } {
    const seq = opts.cseq ?? this.nextLocalSeq();
    let ruri = this.#remoteTarget;
    let routes: readonly string[] = this.#routeSet;
    if (routes.length > 0 && parseNameAddr(routes[0]).uri.params.lr === undefined) {
      // Strict routing (RFC 2543 proxies): the first route becomes the Request-URI.
      const first = parseNameAddr(routes[0]).uri;
      first.headers = {};
      ruri = formatUri(first);
      routes = [...routes.slice(1), `<${this.#remoteTarget}>`];
    }
    const h: [string, string][] = [["Via", opts.via]];
    for (const r of routes) h.push(["Route", r]);
    h.push(["Max-Forwards", String(opts.maxForwards ?? 70)]);
    h.push(["From", `${this.localUri};tag=${this.localTag}`]);
    h.push(["To", `${this.remoteUri};tag=${this.remoteTag}`]);
    h.push(["Call-ID", this.callId]);
    h.push(["CSeq", `${seq} ${method}`]);
    if (opts.contact) h.push(["Contact", opts.contact]);
    for (const x of opts.headers ?? []) h.push([x[0], x[1]]);
    if (opts.body !== undefined && opts.contentType) h.push(["Content-Type", opts.contentType]);
    return { request: createRequest({ method, uri: ruri, headers: h, body: opts.body }), nextHop: this.nextHop() };
  }

  /**
   * The ACK for a 2xx to the INVITE with CSeq `inviteSeq` (RFC 3261 §13.2.2.4): a
   * new transaction (the caller supplies a Via with a new branch), same CSeq number.
   */
  createAck(inviteSeq: number, opts: Omit<InDialogRequestOptions, "cseq">): { request: SipRequest; nextHop: SipUri } {
    return this.createRequest("ACK", { ...opts, cseq: inviteSeq });
  }

  /**
   * Checks an in-dialog request from the peer (RFC 3261 §12.2.2): returns false
   * when its CSeq is lower than the last one seen (answer 500), otherwise
   * records it. ACK and CANCEL are not checked.
   */
  acceptRemoteCSeq(req: SipRequest): boolean {
    if (req.method === "ACK" || req.method === "CANCEL") return true;
    const seq = getCSeq(req).seq;
    if (this.#remoteSeq !== undefined && seq <= this.#remoteSeq) {
      // A retransmission never gets here (absorbed by its transaction); equal means an out-of-order request.
      return false;
    }
    this.#remoteSeq = seq;
    return true;
  }

  /** Throws unless `msg` is in this dialog: a request from the peer, or a response to one of our requests. */
  #checkOwn(msg: SipRequest | SipResponse): void {
    const fromTag = getFrom(msg).params.tag ?? "";
    const toTag = getTo(msg).params.tag ?? "";
    const ours = msg.kind === "request"
      ? toTag === this.localTag && fromTag === this.remoteTag
      : fromTag === this.localTag && toTag === this.remoteTag;
    if (getCallId(msg) !== this.callId || !ours) {
      const what = msg.kind === "request" ? msg.method : `${msg.status} response`;
      throw new Error(`${what} (Call-ID ${getCallId(msg)}) does not belong to dialog ${this.id}`);
    }
  }
}

/** Options of {@linkcode Dialog.createRequest}. */
export interface InDialogRequestOptions {
  /** Top Via value, with a new branch. */
  via: string;
  /** CSeq number to use instead of the next local one (ACK, CANCEL). */
  cseq?: number;
  /** Contact header value. */
  contact?: string;
  /** Extra headers. */
  headers?: [string, string][];
  /** Body. */
  body?: string | Uint8Array;
  /** Content-Type of the body. */
  contentType?: string;
  /** Max-Forwards (default 70). */
  maxForwards?: number;
}

/**
 * A dialog id string.
 *
 * @example
 * ```ts
 * dialogId("abc", "l1", "r1"); // "abc;l1;r1"
 * ```
 */
export function dialogId(callId: string, localTag: string, remoteTag: string): string {
  return `${callId};${localTag};${remoteTag}`;
}

/**
 * The id of the dialog an incoming request belongs to, seen from the receiver
 * (local tag = To tag, remote tag = From tag); undefined when it has no To tag.
 *
 * @example
 * ```ts
 * dialogIdOfRequest(bye); // "callid;ourTag;theirTag"
 * ```
 */
export function dialogIdOfRequest(req: SipRequest): string | undefined {
  const local = getTo(req).params.tag;
  if (!local) return undefined;
  return dialogId(getCallId(req), local, getFrom(req).params.tag ?? "");
}

/**
 * The methods SIP defines (RFC 3261 and its extensions): one of these that a UAS does not support gets 405, any
 * other method 501 (RFC 3261 §8.2.1).
 */
const KNOWN_METHODS = new Set([
  "INVITE",
  "ACK",
  "BYE",
  "CANCEL",
  "OPTIONS",
  "REGISTER", // RFC 3261
  "PRACK", // RFC 3262
  "SUBSCRIBE",
  "NOTIFY", // RFC 6665
  "PUBLISH", // RFC 3903
  "INFO", // RFC 6086
  "REFER", // RFC 3515
  "MESSAGE", // RFC 3428
  "UPDATE", // RFC 3311
]);

/** What {@linkcode screenRequest} needs to know about the UAS. */
export interface UasPolicy {
  /** Methods we implement (for 405 and `Allow`). */
  allow: string[];
  /** Body types we accept (for `Accept`, default `application/sdp`). */
  accept?: string[];
  /** Option tags we support (for 420 and `Supported`, default none). */
  supported?: string[];
  /** True when an in-dialog request (it has a To tag) matches a dialog we have. */
  hasDialog(req: SipRequest): boolean;
  /** Extra headers for every response (e.g. `Server`). */
  headers?: [string, string][];
}

/**
 * The checks a UAS makes before handling a request (RFC 3261 §8.2.1–8.2.2,
 * §12.2.2, §11.2). Returns the response to send, or undefined when the request
 * should go on to the application. ACK never gets a response.
 *
 * - a method SIP defines that we do not support → `405 Method Not Allowed` with `Allow`; a method we do not know
 *   at all → `501 Not Implemented` (RFC 3261 §8.2.1), with `Allow` too
 * - non-SIP Request-URI → `416 Unsupported URI Scheme`
 * - `Require` with an unknown option → `420 Bad Extension` with `Unsupported`
 * - To tag that matches no dialog, or BYE outside a dialog → `481 Call/Transaction Does Not Exist`
 * - OPTIONS → `200 OK` with `Allow`, `Accept`, `Supported`
 *
 * @example
 * ```ts
 * const res = screenRequest(req, { allow: ["INVITE", "ACK", "BYE", "CANCEL", "OPTIONS"], hasDialog: () => false });
 * if (res) tx.respond(res);
 * ```
 */
export function screenRequest(req: SipRequest, policy: UasPolicy): SipResponse | undefined {
  if (req.method === "ACK") return undefined;
  const extra = policy.headers ?? [];
  const tag = getTo(req).params.tag ? undefined : newTag();
  const respond = (status: number, headers: [string, string][] = []) =>
    createResponse(req, status, undefined, { toTag: tag, headers: [...headers, ...extra] });
  const allow: [string, string] = ["Allow", policy.allow.join(", ")];
  if (!policy.allow.includes(req.method)) return respond(KNOWN_METHODS.has(req.method) ? 405 : 501, [allow]);
  if (!/^sips?:/i.test(req.uri)) return respond(416);
  if (req.method !== "CANCEL") {
    const supported = policy.supported ?? [];
    const unknown = req.headers.getAll("Require").flatMap((v) => v.split(",")).map((v) => v.trim())
      .filter((v) => v !== "" && !supported.includes(v));
    if (unknown.length > 0) return respond(420, [["Unsupported", unknown.join(", ")]]);
  }
  const inDialog = getTo(req).params.tag !== undefined;
  if ((inDialog && req.method !== "CANCEL" && !policy.hasDialog(req)) || (!inDialog && req.method === "BYE")) {
    return respond(481);
  }
  if (req.method === "OPTIONS") {
    const h: [string, string][] = [allow, ["Accept", (policy.accept ?? ["application/sdp"]).join(", ")]];
    if (policy.supported?.length) h.push(["Supported", policy.supported.join(", ")]);
    return respond(200, h);
  }
  return undefined;
}
