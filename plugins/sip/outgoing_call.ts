/**
 * The client side of a call: {@linkcode OutgoingCall}, placed with
 * `SipUserAgent.invite`. It sends the INVITE (built by the request builder) in
 * an INVITE client transaction, reports provisional responses, creates the
 * dialog from the 2xx and ACKs it (again for each retransmission; ACK + BYE for
 * another fork, once per fork and for at most 16 of them, whose retransmissions
 * are ACKed again), cancels (CANCEL once a provisional response arrived), and
 * answers a 401/407 through the authenticator by re-sending the INVITE with
 * CSeq + 1 and the credentials — the same call object goes on; when the
 * authenticator declines and says why, the call ends with that reason.
 *
 * Layer: user agent (imports call, client, context, request builder, dialog, message).
 *
 * @module
 */
import type { Timer } from "../../core/clock.ts";
import { Call } from "./call.ts";
import { Dialog } from "./dialog.ts";
import { bodyText, getCallId, getCSeq, getFrom, getTo, type SipRequest, type SipResponse } from "./message.ts";
import { type ClientTransaction, DestinationUnreachableError } from "./transaction.ts";
import type { Address } from "./transport.ts";
import type { SipUri } from "./uri.ts";
import { errText, type UaContext } from "./_context.ts";
import { answerChallenge, sendRequest } from "./_client.ts";

/**
 * Most other forks whose 2xx one call ACKs and hangs up (RFC 3261 §13.2.2.4). A 2xx from a fork beyond them is
 * ignored: each new To tag would otherwise cost an ACK and a BYE transaction (retransmitted for 64·T1) to whatever
 * its Contact names.
 */
const MAX_FORKS = 16;

/** Options of `SipUserAgent.invite`. */
export interface InviteOptions {
  /** SDP offer (sent as `application/sdp`). Without it, the offer is expected in the 2xx (answer goes in the ACK via `ackSdp`). */
  sdp?: string;
  /** SDP answer for the ACK when the INVITE carried no offer. */
  ackSdp?: (offer: string) => string;
  /** Extra headers for the INVITE. */
  headers?: [string, string][];
  /**
   * The From value (name-addr without tag, e.g. `"Alice" <sip:alice@example.com>`) instead of the user agent's own
   * identity: a B2BUA passes its caller's. A tag is added.
   */
  from?: string;
  /**
   * The Call-ID instead of a new, unique one. Only for tests of peers that reuse one: a Call-ID must be unique
   * across calls (RFC 3261 §8.1.1.4).
   */
  callId?: string;
  /**
   * Send to this address instead of the target URI's host:port (and instead of
   * the user agent's `outboundProxy`), without a Route header.
   */
  proxy?: Address;
}

/** A call we placed with `SipUserAgent.invite`. */
export class OutgoingCall extends Call {
  /** Always `outgoing`. */
  readonly direction = "outgoing" as const;
  /** Where the INVITE is sent. */
  readonly destination: Address;
  readonly #ctx: UaContext;
  #invite: SipRequest;
  #tx?: ClientTransaction;
  /** Ends the INVITE transaction 64·T1 after the CANCEL if no final response came (see {@linkcode #sendCancel}). */
  #reap: Timer | undefined;
  #ack?: SipRequest;
  #ackDest?: Address;
  #gotProvisional = false;
  #cancel: "none" | "pending" | "sent" = "none";
  #authRounds = 0;
  /** The other forks that answered 2xx, by To tag: the ACK sent to each (again for its retransmissions) and where. */
  readonly #forks = new Map<string, { ack: SipRequest; dest: Address }>();
  #forksFull = false;
  readonly #ackSdp?: (offer: string) => string;

  /**
   * @internal Use `SipUserAgent.invite`, which also starts the call.
   * @param ctx the user agent's shared state
   * @param target Request-URI
   * @param toValue To header value (name-addr without tag)
   * @param opts SDP, extra headers, outbound proxy
   */
  constructor(ctx: UaContext, target: SipUri, toValue: string, opts: InviteOptions) {
    const { dest, routes } = ctx.routeTo(target, opts.proxy);
    const invite = ctx.build.invite({
      target,
      to: toValue,
      dest,
      routes,
      allow: ctx.allowHeader,
      sdp: opts.sdp,
      headers: opts.headers,
      from: opts.from,
      callId: opts.callId,
    });
    const localTag = getFrom(invite).params.tag!;
    const from = invite.headers.get("From")!;
    super(ctx, {
      callId: getCallId(invite),
      localTag,
      localUri: from.slice(0, from.length - `;tag=${localTag}`.length),
      remoteUri: toValue,
      state: "calling",
    });
    this.#ctx = ctx;
    this.#invite = invite;
    this.destination = dest;
    this.setPeerAddress(dest);
    this.setLocalSdp(opts.sdp);
    this.#ackSdp = opts.ackSdp;
  }

  /** The INVITE in progress: the one we sent, or its re-sent copy with credentials after a 401/407. */
  get invite(): SipRequest {
    return this.#invite;
  }

  /** @internal Sends the INVITE (called by `SipUserAgent.invite`). */
  start(): void {
    this.#ctx.log.info(`INVITE sent to ${this.#invite.uri}`, this.fields);
    this.#send();
  }

  #send(): void {
    this.#tx = this.#ctx.layer.sendRequest(this.#invite, this.destination, {
      onResponse: (res, tx, from) => {
        if (tx === this.#tx) this.#onResponse(res, from);
        else if (res.status >= 200 && res.status < 300) this.onOk(res, from); // a late 2xx to an earlier attempt
      },
      onTimeout: (tx) => {
        if (tx !== this.#tx) return;
        this.#reap?.cancel();
        if (this.#cancel !== "none") this.end({ by: "local", reason: "cancelled" });
        else this.end({ by: "timeout", reason: "no response to INVITE", status: 408 });
      },
      onTransportError: (tx, e) => {
        if (tx !== this.#tx) return;
        this.#reap?.cancel();
        // RFC 3261 §8.1.3.1: a transport failure is handled as a 503 from the destination.
        if (e instanceof DestinationUnreachableError) this.end({ by: "error", reason: e.message, status: 503 });
        else this.end({ by: "error", reason: `transport error: ${errText(e)}` });
      },
    });
  }

  #onResponse(res: SipResponse, from: Address): void {
    const s = res.status;
    if (s < 200) {
      this.#gotProvisional = true;
      if (this.state === "calling" || this.state === "proceeding") {
        this.setState("proceeding");
        const tag = getTo(res).params.tag;
        if (tag && s > 100) this.setEarlyRemoteTag(tag);
        const body = res.body.length ? bodyText(res) : undefined;
        this.#ctx.log.info(`${s} ${res.reason}`, this.fields);
        this.emitProgress(
          body === undefined ? { status: s, reason: res.reason } : { status: s, reason: res.reason, sdp: body },
        );
      }
      if (this.#cancel === "pending") this.#sendCancel();
      return;
    }
    this.#reap?.cancel();
    this.#reap = undefined;
    if (s < 300) {
      this.onOk(res, from);
      return;
    }
    this.#ctx.log.info(`${s} ${res.reason}`, this.fields);
    let declined: string | undefined;
    if (this.#cancel === "none" && this.state !== "ended" && !this.#ctx.closed) {
      const answer = answerChallenge(this.#ctx, res, this.#invite, this.#authRounds, {
        destination: this.destination,
        source: from,
      });
      const credentials = answer.credentials;
      declined = answer.declined;
      if (credentials) {
        // RFC 3261 §22.2: the same call (Call-ID, From tag), a new transaction with CSeq + 1.
        this.#authRounds++;
        this.#invite = this.#ctx.build.retry(
          this.#invite,
          this.destination,
          credentials,
          getCSeq(this.#invite).seq + 1,
        );
        this.#gotProvisional = false;
        this.setEarlyRemoteTag(undefined);
        this.#send();
        return;
      }
    }
    if (this.#cancel !== "none" && s === 487) this.end({ by: "local", reason: "cancelled", status: s });
    else if (declined !== undefined) {
      this.end({ by: "remote", reason: `${s} ${res.reason} (${declined})`, status: s, declined });
    } else this.end({ by: "remote", reason: `${s} ${res.reason}`, status: s });
  }

  /**
   * A 2xx to our INVITE (from `from`): first one, retransmission, or another
   * fork (also for stray 2xx). In-dialog requests (ACK, BYE) go to the dialog's
   * next hop, or to `from` when that is a host name.
   */
  protected override onOk(res: SipResponse, from: Address): void {
    const tag = getTo(res).params.tag;
    const current = this.dialog;
    if (current) {
      if (tag === current.remoteTag) {
        // Retransmitted 2xx: our ACK was lost.
        if (this.#ack && this.#ackDest) {
          this.#ctx.log.debug("200 OK retransmission, re-sending ACK", this.fields);
          this.#ctx.sendDirect(this.#ack, this.#ackDest);
        }
      } else {
        const fork = tag ? this.#forks.get(tag) : undefined;
        if (fork) {
          // Retransmitted 2xx of a fork already hung up: its ACK again, no second BYE.
          this.#ctx.sendDirect(fork.ack, fork.dest);
          return;
        }
        if (this.#forks.size >= MAX_FORKS) {
          // Logged once: the rest would be a line per datagram the peer sends.
          if (!this.#forksFull) this.#ctx.log.warn(`2xx from more than ${MAX_FORKS} other forks: ignored`, this.fields);
          this.#forksFull = true;
          return;
        }
        // A second fork answered: ACK and hang it up (RFC 3261 §13.2.2.4).
        let other: Dialog;
        try {
          other = Dialog.fromUac(this.#invite, res);
        } catch (e) {
          this.#ctx.log.warn(`2xx from another fork ignored: ${errText(e)}`, this.fields);
          return;
        }
        this.#ctx.log.info("2xx from another fork, sending ACK and BYE", this.fields);
        const dest = this.hopOf(other, from);
        const ack = other.createAck(getCSeq(res).seq, { via: this.#ctx.build.via(dest) }).request;
        this.#forks.set(other.remoteTag, { ack, dest });
        this.#ctx.sendDirect(ack, dest);
        const bye = other.createRequest("BYE", { via: this.#ctx.build.via(dest) });
        void sendRequest(this.#ctx, bye.request, dest, { nextCSeq: () => other.nextLocalSeq() });
      }
      return;
    }
    if (!tag) {
      // No dialog can be made (a UAS tags every final response, RFC 3261 §8.2.6.2): the call fails, as with any 2xx
      // that cannot make one. Ignored, it waited forever: its transaction, in Accepted, has no timer that ends it.
      this.#ctx.log.warn(`${res.status} without To tag: the call fails`, this.fields);
      this.end({ by: "error", reason: `unusable ${res.status} response: no To tag`, status: res.status });
      return;
    }
    let dialog: Dialog;
    try {
      dialog = Dialog.fromUac(this.#invite, res);
    } catch (e) {
      // A 2xx that cannot make a dialog (its To, Contact or Record-Route is unusable): nothing can be sent in it.
      this.#ctx.log.warn(`unusable ${res.status} ${res.reason}: ${errText(e)}`, this.fields);
      this.end({ by: "error", reason: `unusable ${res.status} response: ${errText(e)}`, status: res.status });
      return;
    }
    this.attachDialog(dialog);
    this.setPeerAddress(from);
    const body = res.body.length ? bodyText(res) : undefined;
    this.setRemoteSdp(body);
    let ackBody: string | undefined;
    if (this.localSdp === undefined && body !== undefined && this.#ackSdp) {
      try {
        ackBody = this.#ackSdp(body);
        this.setLocalSdp(ackBody);
      } catch (e) {
        this.#ctx.log.warn(`cannot answer the offer in the 2xx: ${errText(e)}`, this.fields);
      }
    }
    const dest = this.hopOf(dialog, from);
    const ack = dialog.createAck(getCSeq(this.#invite).seq, {
      via: this.#ctx.build.via(dest),
      body: ackBody,
      contentType: ackBody !== undefined ? "application/sdp" : undefined,
    });
    this.#ack = ack.request;
    this.#ackDest = dest;
    this.#ctx.log.info(`${res.status} ${res.reason} received, sending ACK`, this.fields);
    this.#ctx.sendDirect(ack.request, dest);
    if (this.#cancel !== "none" || this.state === "ended") {
      // We wanted to cancel (or gave up) but the callee answered first: hang up at once.
      void this.sendBye();
      this.end({ by: "local", reason: "cancelled" });
      return;
    }
    this.markEstablished(body);
  }

  /**
   * Cancels the call if it is not answered yet. The CANCEL goes out once a
   * provisional response has arrived (RFC 3261 §9.1); the call ends with
   * `{by: "local", reason: "cancelled"}` on the 487 (or at once-answered: ACK + BYE).
   */
  cancel(): void {
    if ((this.state !== "calling" && this.state !== "proceeding") || this.#cancel !== "none") return;
    if (!this.#gotProvisional) {
      this.#cancel = "pending";
      this.#ctx.log.debug("CANCEL deferred until a provisional response arrives", this.fields);
      return;
    }
    this.#sendCancel();
  }

  /**
   * Stops waiting for an unanswered call: it ends now for the application
   * (`{by: "local", reason}`), whatever has been received. The INVITE
   * transaction goes on underneath, so the peer is still told: a CANCEL goes
   * out now if a provisional response arrived, or as soon as one does (RFC 3261
   * §9.1 forbids it before); a late 2xx gets its ACK and a BYE. Does nothing
   * once the call is established or ended.
   *
   * @example
   * ```ts
   * // No response at all within 2 s: stop waiting (Timer B would take 32 s).
   * clock.after(2000, () => call.state === "calling" && call.giveUp("no SIP response within 2 s"));
   * ```
   */
  giveUp(reason = "cancelled"): void {
    if (this.state !== "calling" && this.state !== "proceeding") return;
    this.cancel();
    this.end({ by: "local", reason });
  }

  #sendCancel(): void {
    // After giveUp() the call has ended for the application, but a CANCEL left pending still goes out.
    if (this.#cancel === "sent" || (this.state === "ended" && this.#cancel !== "pending")) return;
    this.#cancel = "sent";
    const cancel = this.#ctx.build.cancel(this.#invite, this.destination);
    this.#ctx.log.info("CANCEL sent", this.fields);
    void sendRequest(this.#ctx, cancel, this.destination, { authenticate: false });
    // If no final response to the INVITE arrives within 64·T1, give up (RFC 3261 §9.1). Not the call's guard: the
    // call may have ended already (giveUp, a BYE from the callee), which cancels that, and the INVITE transaction,
    // without a timer in Proceeding, would then be kept forever.
    this.#reap ??= this.#ctx.clock.after(64 * this.#ctx.layer.timers.T1, () => {
      this.#reap = undefined;
      const tx = this.#tx;
      if (tx && (tx.state === "calling" || tx.state === "proceeding")) tx.terminate();
      if (this.state === "calling" || this.state === "proceeding") this.end({ by: "local", reason: "cancelled" });
    });
  }

  /**
   * A BYE before any final response (a callee may not send one in an early dialog, RFC 3261 §15, yet one came): the
   * call ends, and its INVITE is cancelled, so that its transaction ends too.
   */
  protected override onRemoteBye(): void {
    if (this.state === "calling" || this.state === "proceeding") this.cancel();
  }

  /** CANCEL before an answer, BYE after. */
  hangup(): Promise<void> {
    if (this.state === "established") {
      const done = this.sendBye();
      this.end({ by: "local", reason: "BYE" });
      return done;
    }
    if (this.state === "calling" || this.state === "proceeding") this.cancel();
    return Promise.resolve();
  }
}
