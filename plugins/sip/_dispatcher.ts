/**
 * Private: the dispatcher. It routes what the transaction layer passes up —
 * new requests and ACKs for 2xx to the calls whose dialogs they belong to (or
 * to a new {@linkcode IncomingCall}, or to the registrar handler), stray 2xx
 * responses to the outgoing call that sent the INVITE — and answers whatever
 * nobody handles: 405 with `Allow` first (501 for a method SIP does not define), then what `checkRequestSemantics`
 * finds (400, 406, 415 with `Accept`, 416, 420 with `Unsupported`), then 481
 * and 200 to OPTIONS (through `screenRequest`), 500 for an out-of-order CSeq,
 * 501, 503 while closing — and, before any transaction exists (`refuse`),
 * `503` with `Retry-After` to a new INVITE while the user agent is
 * overloaded. Every final answer to a request outside a dialog carries a To
 * tag. It also keeps the table of calls by Call-ID and local tag, where an
 * ended call lingers 64·T1 so late retransmissions are still answered (a new BYE or re-INVITE in its dialog gets
 * 481), and, for as long as an incoming call is in that table, the Call-ID, From tag and CSeq of its INVITE: a copy
 * of that INVITE on another branch (it forked and arrived twice) is a merged request and gets `482 Loop Detected`
 * (RFC 3261 §8.2.2.2), not a second call.
 *
 * Layer: user agent (imports calls, register, context, dialog, transaction, message).
 *
 * @module
 */
import type { Timer } from "../../core/clock.ts";
import type { Call } from "./call.ts";
import { screenRequest } from "./dialog.ts";
import { newTag } from "./ids.ts";
import { IncomingCall } from "./incoming_call.ts";
import {
  checkRequestSemantics,
  createResponse,
  getCallId,
  getCSeq,
  getFrom,
  type SipRequest,
  type SipResponse,
  tagOf,
  topVia,
} from "./message.ts";
import { OutgoingCall } from "./outgoing_call.ts";
import { parseRegisterRequest, type RegistrarHandler, type RegistrarReply } from "./register.ts";
import type { InviteServerTransaction, ServerTransaction } from "./transaction.ts";
import type { Address } from "./transport.ts";
import { formatUri } from "./uri.ts";
import { errText, type UaContext } from "./_context.ts";

/** Routes incoming requests and stray responses of one user agent; answers the rest. */
export class Dispatcher {
  readonly #ctx: UaContext;
  readonly #offer: (call: IncomingCall) => "nobody" | "failed" | "offered";
  readonly #calls = new Map<string, Call>();
  readonly #lingering = new Set<Timer>();
  #live = 0;
  readonly #incoming = new WeakMap<ServerTransaction, IncomingCall>();
  /** The incoming calls of the table of calls, by their INVITE's Call-ID, From tag and CSeq (see `inviteKey`). */
  readonly #byInvite = new Map<string, IncomingCall>();
  #registrar?: RegistrarHandler;

  /**
   * Creates the dispatcher.
   * @param ctx the user agent's shared state
   * @param offer gives a new incoming call to the application: `nobody` listens (then 480), a listener
   *   `failed` (threw; then 500 unless it answered), or `offered`
   */
  constructor(ctx: UaContext, offer: (call: IncomingCall) => "nobody" | "failed" | "offered") {
    this.#ctx = ctx;
    this.#offer = offer;
  }

  /** Calls not ended yet. */
  get liveCalls(): Call[] {
    return [...new Set(this.#calls.values())].filter((c) => c.state !== "ended");
  }

  /** Number of calls not ended yet. */
  get liveCount(): number {
    return this.#live;
  }

  /** Calls in the table: not ended, or ended and still lingering. */
  get tracked(): Call[] {
    return [...this.#calls.values()];
  }

  /** The registrar handler, if any. */
  get registrar(): RegistrarHandler | undefined {
    return this.#registrar;
  }

  /** Sets (or with undefined removes) the registrar handler; REGISTER is allowed only while one is set. */
  set registrar(handler: RegistrarHandler | undefined) {
    this.#registrar = handler;
    this.#ctx.allow("REGISTER", handler !== undefined);
  }

  /** Adds a call to the table; once it ends it stays findable for 64·T1. */
  track(call: Call): void {
    const key = callKey(call.callId, call.localTag);
    this.#calls.set(key, call);
    if (call.state !== "ended") this.#live++;
    call.on("ended", () => {
      this.#live--;
      const t = this.#ctx.clock.after(64 * this.#ctx.layer.timers.T1, () => {
        this.#lingering.delete(t);
        if (this.#calls.get(key) === call) this.#calls.delete(key);
        const invite = call instanceof IncomingCall ? inviteKey(call.request) : undefined;
        if (invite !== undefined && this.#byInvite.get(invite) === call) this.#byInvite.delete(invite);
      });
      this.#lingering.add(t);
    });
  }

  /** Forgets every call and cancels the linger timers (the user agent is closed). */
  clear(): void {
    for (const t of this.#lingering) t.cancel();
    this.#lingering.clear();
    this.#calls.clear();
    this.#byInvite.clear();
    this.#live = 0;
  }

  /** Finds the call an incoming in-dialog request or ACK belongs to (by Call-ID, To tag and From tag). */
  #callFor(req: SipRequest): Call | undefined {
    const toTag = tagOf(req.headers.get("To"));
    if (!toTag) return undefined;
    const call = this.#calls.get(callKey(getCallId(req), toTag));
    if (!call) return undefined;
    const fromTag = tagOf(req.headers.get("From"));
    if (call.remoteTag !== undefined && fromTag !== call.remoteTag) return undefined;
    return call;
  }

  /**
   * Asked by the transaction layer for each new request outside a dialog,
   * before it makes a transaction: a new INVITE while the user agent is
   * overloaded gets `503 Service Unavailable` with `Retry-After`, sent
   * statelessly — refusing it keeps nothing (RFC 3261 §8.2.7, §21.5.4).
   */
  refuse(req: SipRequest): SipResponse | undefined {
    const ctx = this.#ctx;
    if (req.method !== "INVITE" || !ctx.overload || ctx.closed) return undefined;
    const why = ctx.overload.admit();
    if (why === undefined) return undefined;
    ctx.log.debug(`503 sent for INVITE (${why})`, { call: getCallId(req) });
    return createResponse(req, 503, undefined, {
      toTag: newTag(),
      headers: [["Retry-After", String(ctx.overload.limits.retryAfter)], ["Server", ctx.build.userAgent]],
    });
  }

  /** A request from the transaction layer: new (with its server transaction) or an ACK for a 2xx (without). */
  onRequest(req: SipRequest, tx: ServerTransaction | undefined, from: Address): void {
    const ctx = this.#ctx;
    if (req.method === "ACK") {
      const call = this.#callFor(req);
      if (call) ctx.handleOf(call).receiveAck(req);
      return;
    }
    if (!tx) return;
    const server: [string, string] = ["Server", ctx.build.userAgent];
    const toTag = tagOf(req.headers.get("To")) === undefined ? newTag() : undefined;
    if (ctx.closed) {
      tx.respond(createResponse(req, 503, undefined, { toTag, headers: [server] }));
      return;
    }
    const screen = () =>
      screenRequest(req, {
        allow: ctx.allowed,
        hasDialog: (r) => this.#callFor(r) !== undefined,
        headers: [server],
      });
    // RFC 3261 §8.2.1: the method first (405 with Allow; 501 for a method SIP does not define).
    if (!ctx.allowed.includes(req.method)) {
      const res = screen()!;
      ctx.log.info(`${res.status} ${res.reason} sent for ${req.method}`, { call: getCallId(req) });
      tx.respond(res);
      return;
    }
    // RFC 3261 §8.2.2–8.2.3, RFC 4475 §3.2–3.3: scheme, Contact, Require, body type, Accept.
    const problem = checkRequestSemantics(req, { supported: [], accept: ["application/sdp"] });
    if (problem) {
      ctx.log.info(`${problem.status} sent for ${req.method}: ${problem.detail}`, { call: getCallId(req) });
      tx.respond(createResponse(req, problem.status, problem.reason, { toTag, headers: [...problem.headers, server] }));
      return;
    }
    const early = screen();
    if (early) {
      if (early.status >= 300) {
        ctx.log.info(`${early.status} ${early.reason} sent for ${req.method}`, { call: getCallId(req) });
      }
      tx.respond(early);
      return;
    }
    const call = this.#callFor(req);
    if (call?.state === "ended" && (req.method === "BYE" || req.method === "INVITE")) {
      // The call is kept only for late retransmissions: its dialog is over (RFC 3261 §12.2.2).
      const res = afterEnd(call, req);
      ctx.log.info(`${res} sent for ${req.method} in a dialog that has ended`, { call: call.callId });
      tx.respond(createResponse(req, res, undefined, { headers: [server] }));
      return;
    }
    switch (req.method) {
      case "CANCEL": {
        const ist = ctx.layer.matchCancel(req);
        const target = ist ? this.#incoming.get(ist) : undefined;
        if (!ist || !target) {
          tx.respond(createResponse(req, 481, undefined, { toTag: newTag() }));
          return;
        }
        ctx.handleOf(target).receiveCancel(req, tx);
        return;
      }
      case "BYE":
        // screenRequest answered 481 to a BYE outside a known dialog, so `call` is set here.
        if (call!.dialog && !call!.dialog.acceptRemoteCSeq(req)) {
          tx.respond(createResponse(req, 500, "Server Internal Error (CSeq out of order)"));
          return;
        }
        ctx.handleOf(call!).receiveBye(req, tx);
        return;
      case "INVITE":
        if (call) {
          if (call.dialog && !call.dialog.acceptRemoteCSeq(req)) {
            tx.respond(createResponse(req, 500, "Server Internal Error (CSeq out of order)"));
            return;
          }
          ctx.handleOf(call).receiveReinvite(req, tx, from);
        } else if (this.#merged(req)) {
          tx.respond(createResponse(req, 482, undefined, { toTag: newTag(), headers: [server] }));
        } else if (tx.stateless) {
          // No room for its transaction (the table is full): refused like any overload.
          tx.respond(createResponse(req, 503, undefined, { toTag: newTag(), headers: [server] }));
        } else this.#newCall(req, tx as InviteServerTransaction, from);
        return;
      case "REGISTER":
        this.#register(req, tx, from);
        return;
      default:
        tx.respond(createResponse(req, 501, undefined, { toTag: newTag() }));
    }
  }

  #newCall(req: SipRequest, tx: InviteServerTransaction, from: Address): void {
    const ctx = this.#ctx;
    // Otherwise the transaction sends it if no response went out within 200 ms (RFC 3261 §17.2.1).
    if (ctx.tryingAtOnce) tx.respond(createResponse(req, 100));
    // Throws (a SipParseError for a From/To/Contact/Record-Route that parsed but cannot make a dialog):
    // the transaction layer then answers 400 with the reason.
    const call = new IncomingCall(ctx, req, tx, from);
    this.track(call);
    this.#incoming.set(tx, call);
    const invite = inviteKey(req);
    if (invite !== undefined) this.#byInvite.set(invite, call);
    if (ctx.log.enabled("info")) {
      ctx.log.info(`INVITE received from ${formatUri(getFrom(req).uri)}`, { call: call.callId });
    }
    const offered = this.#offer(call);
    if (offered === "nobody") call.reject(480);
    else if (offered === "failed" && (call.state === "incoming" || call.state === "ringing")) {
      // The application's handler threw before answering: nobody will answer this call.
      ctx.log.error("invite handler failed before answering: 500 sent", { call: call.callId });
      call.reject(500);
    }
  }

  /**
   * True when `req`, an INVITE outside any dialog that matched no transaction, has the Call-ID, From tag and CSeq of
   * the INVITE of a call in the table (ringing, answered, or ended and lingering): the same request, forked upstream,
   * arriving again on another branch — a merged request (RFC 3261 §8.2.2.2), which gets `482 Loop Detected`.
   */
  #merged(req: SipRequest): boolean {
    if (tagOf(req.headers.get("To")) !== undefined) return false; // in a dialog: a re-INVITE
    const key = inviteKey(req);
    const first = key === undefined ? undefined : this.#byInvite.get(key);
    if (!first) return false;
    this.#ctx.log.info(
      `482 Loop Detected sent for INVITE: a copy, on branch ${topVia(req).params.branch ?? "(none)"}, of the INVITE ` +
        `of a call already here (branch ${topVia(first.request).params.branch ?? "(none)"})`,
      { call: first.callId },
    );
    return true;
  }

  /** REGISTER to the registrar handler: 400 when unreadable, the handler's reply, 500 when it fails. */
  #register(req: SipRequest, tx: ServerTransaction, from: Address): void {
    const ctx = this.#ctx;
    const fields = { call: getCallId(req) };
    const server: [string, string] = ["Server", ctx.build.userAgent];
    const handler = this.#registrar;
    if (!handler) {
      tx.respond(
        createResponse(req, 405, undefined, { toTag: newTag(), headers: [["Allow", ctx.allowHeader], server] }),
      );
      return;
    }
    let parsed;
    try {
      parsed = parseRegisterRequest(req, from);
    } catch (e) {
      ctx.log.info(`400 sent for REGISTER: ${errText(e)}`, fields);
      tx.respond(createResponse(req, 400, `Bad Request (${errText(e)})`, { toTag: newTag(), headers: [server] }));
      return;
    }
    ctx.log.info(`REGISTER received for ${parsed.aor}`, fields);
    const fail = (e: unknown) => {
      ctx.log.error(`registrar handler failed: ${errText(e)}`, fields);
      tx.respond(createResponse(req, 500, undefined, { toTag: newTag(), headers: [server] }));
    };
    const send = (reply: RegistrarReply) => {
      let res: SipResponse;
      try {
        res = registrarResponse(req, reply, server);
      } catch (e) {
        return fail(e);
      }
      ctx.log.info(`${res.status} ${res.reason} sent for REGISTER`, fields);
      tx.respond(res);
    };
    let out: RegistrarReply | Promise<RegistrarReply>;
    try {
      out = handler(parsed);
    } catch (e) {
      return fail(e);
    }
    if (out instanceof Promise) out.then(send, fail);
    else send(out);
  }

  /** A response that matched no client transaction: a 2xx retransmission (or fork) to one of our INVITEs, or ignored. */
  onStrayResponse(res: SipResponse, from: Address): void {
    const cseq = getCSeq(res);
    const tag = getFrom(res).params.tag;
    if (cseq.method === "INVITE" && res.status >= 200 && res.status < 300 && tag) {
      const call = this.#calls.get(callKey(getCallId(res), tag));
      if (call instanceof OutgoingCall) {
        this.#ctx.handleOf(call).receiveOk(res, from);
        return;
      }
    }
    this.#ctx.log.debug(`stray response ${res.status} ${res.reason} (${cseq.method}) ignored`);
  }
}

/**
 * The status for a BYE or re-INVITE in the dialog of `call`, which has ended: 481 (RFC 3261 §12.2.2), except 200 to
 * a BYE that crosses ours (we ended the call with a BYE) and to a copy, on a new branch, of the BYE that ended it
 * (same CSeq). A retransmission of that BYE (same branch) never gets here: its transaction answers it.
 */
function afterEnd(call: Call, req: SipRequest): 200 | 481 {
  if (req.method !== "BYE") return 481;
  const end = call.endInfo;
  if (end?.reason !== "BYE") return 481;
  if (end.by === "local") return 200;
  return end.by === "remote" && getCSeq(req).seq === call.dialog?.remoteSeq ? 200 : 481;
}

/**
 * What a merged request shares with the INVITE it copies (RFC 3261 §8.2.2.2): Call-ID, From tag and CSeq number (the
 * method is INVITE). Undefined without a From tag (an RFC 2543 peer): nothing is matched then.
 */
function inviteKey(req: SipRequest): string | undefined {
  const fromTag = tagOf(req.headers.get("From"));
  if (fromTag === undefined) return undefined;
  return `${getCallId(req)}|${fromTag}|${getCSeq(req).seq}`;
}

function callKey(callId: string, localTag: string): string {
  return `${callId};${localTag}`;
}

/** The response to a REGISTER from a handler's reply; throws when the reply is not a usable final answer. */
function registrarResponse(req: SipRequest, reply: RegistrarReply, server: [string, string]): SipResponse {
  const status = reply?.status;
  if (!Number.isInteger(status) || status < 200 || status > 699) {
    throw new Error(`registrar handler answered status ${JSON.stringify(status)}: expected a final status 200–699`);
  }
  const headers: [string, string][] = [];
  if (status < 300) {
    for (const c of reply.contacts ?? []) {
      if (typeof c.uri !== "string" || c.uri.trim() === "" || !Number.isInteger(c.expires) || c.expires < 0) {
        throw new Error(`registrar handler answered contact ${JSON.stringify(c)}: expected { uri, expires >= 0 }`);
      }
      headers.push(["Contact", `<${c.uri}>;expires=${c.expires}`]);
    }
  }
  for (const h of reply.headers ?? []) headers.push([h[0], h[1]]);
  headers.push(server);
  return createResponse(req, status, reply.reason, { toTag: newTag(), headers });
}
