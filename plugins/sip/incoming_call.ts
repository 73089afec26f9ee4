/**
 * The server side of a call: {@linkcode IncomingCall}, announced by
 * `SipUserAgent.onInvite`. It answers the INVITE in its server transaction
 * (180/183, 200 retransmitted until the ACK, or a rejection), confirms the
 * dialog on the ACK, takes a CANCEL (487), and hangs up (BYE, deferred until
 * the ACK while the 200 is outstanding).
 *
 * Layer: user agent (imports call, context, dialog, transaction, message).
 *
 * @module
 */
import { Call } from "./call.ts";
import { Dialog } from "./dialog.ts";
import { newTag } from "./ids.ts";
import { bodyText, createResponse, getCSeq, type SipRequest } from "./message.ts";
import type { InviteServerTransaction, ServerTransaction } from "./transaction.ts";
import type { Address } from "./transport.ts";
import { errText, type UaContext } from "./_context.ts";

/** A call we received; announced by `SipUserAgent.onInvite`. */
export class IncomingCall extends Call {
  /** Always `incoming`. */
  readonly direction = "incoming" as const;
  /** The INVITE. */
  readonly request: SipRequest;
  /** Where the INVITE came from. */
  readonly source: Address;
  /** The SDP offer in the INVITE (undefined for a late-offer INVITE: then `accept()` must carry an offer). */
  readonly offer?: string;
  readonly #ctx: UaContext;
  readonly #tx: InviteServerTransaction;
  #byeAfterAck = false;

  /**
   * @internal Created by the user agent's dispatcher for each new INVITE.
   * @param ctx the user agent's shared state
   * @param req the INVITE
   * @param tx its server transaction
   * @param from where it came from
   */
  constructor(ctx: UaContext, req: SipRequest, tx: InviteServerTransaction, from: Address) {
    const localTag = newTag();
    const dialog = Dialog.fromUas(req, localTag);
    super(ctx, {
      callId: dialog.callId,
      localTag,
      localUri: dialog.localUri,
      remoteUri: dialog.remoteUri,
      state: "incoming",
    });
    this.#ctx = ctx;
    this.request = req;
    this.source = from;
    this.#tx = tx;
    this.attachDialog(dialog);
    this.setPeerAddress(from);
    this.offer = req.body.length ? bodyText(req) : undefined;
    this.setRemoteSdp(this.offer);
    tx.user = {
      onTimeout: () => this.#noAck(),
      onTransportError: (_t, e) => this.end({ by: "error", reason: `transport error: ${errText(e)}` }),
    };
  }

  #respond(status: number, reason?: string, extra: [string, string][] = [], body?: string): void {
    const headers: [string, string][] = [];
    if (status > 100 && status < 300) {
      headers.push(["Contact", this.#ctx.build.contact(this.source)], ["Allow", this.#ctx.allowHeader]);
    }
    headers.push(["Server", this.#ctx.build.userAgent], ...extra);
    if (body !== undefined) headers.push(["Content-Type", "application/sdp"]);
    this.#tx.respond(createResponse(this.request, status, reason, { toTag: this.localTag, headers, body }));
  }

  /** Sends `180 Ringing` (optionally with early-media SDP as 183 Session Progress when `sdp` is given). */
  ringing(sdp?: string): void {
    if (this.state !== "incoming" && this.state !== "ringing") return;
    this.setState("ringing");
    if (sdp !== undefined) {
      this.setLocalSdp(sdp);
      this.#respond(183, undefined, [], sdp);
      this.#ctx.log.info("183 Session Progress sent", this.fields);
    } else {
      this.#respond(180);
      this.#ctx.log.info("180 Ringing sent", this.fields);
    }
  }

  /**
   * Answers with `200 OK` carrying `sdp` (the answer, or an offer for a late-offer INVITE).
   * The 200 is retransmitted until the ACK arrives (then "established"); without an ACK
   * within 64·T1 the call ends `{by: "timeout"}` and a BYE is sent. Resolves once the 200 has been handed to the
   * network (it may wait in the socket's queue until this thread's turn ends): true; false when it was not sent (the
   * call was no longer ringing) or its send failed (the call then ends with the transport error). Media that must not
   * reach the peer before the answer (RFC 3264 §6) is released then, in particular from another thread.
   */
  accept(sdp: string): Promise<boolean> {
    if (this.state !== "incoming" && this.state !== "ringing") return Promise.resolve(false);
    this.setState("accepting");
    this.setLocalSdp(sdp);
    this.#respond(200, undefined, [], sdp);
    this.#ctx.log.info("200 OK sent", this.fields);
    return this.#tx.lastResponseSent;
  }

  /**
   * Rejects the call with a final status (default `486 Busy Here`; e.g. 488 for no common codec, 603 Decline),
   * with `headers` added to the response (e.g. `Proxy-Authenticate` on a 407, `Retry-After` on a 503).
   */
  reject(status = 486, reason?: string, headers: [string, string][] = []): void {
    if (this.state !== "incoming" && this.state !== "ringing") return;
    if (status < 300 || status > 699) throw new RangeError(`reject needs a 3xx–6xx status, got ${status}`);
    this.#respond(status, reason, headers);
    const phrase = this.#tx.lastResponse?.reason ?? "";
    this.#ctx.log.info(`${status} ${phrase} sent`, this.fields);
    this.end({ by: "local", reason: `${status} ${phrase}`, status });
  }

  /**
   * An ACK in the dialog. The ACK for our 2xx carries the INVITE's CSeq number (RFC 3261 §13.2.2.4, §17.1.1.3): it
   * establishes the call (the dialog confirmed), or sends a deferred BYE now. An ACK with another CSeq number is not
   * that ACK (the one for a re-INVITE's 2xx, or a wrong one): ignored here, while the 200 is still retransmitted
   * until the real ACK, or the call ends after 64·T1 without one (Timer H).
   */
  protected override onAck(ack: SipRequest): void {
    const seq = getCSeq(ack).seq;
    if (seq !== getCSeq(this.request).seq) {
      if (this.state === "accepting" || this.#byeAfterAck) {
        this.#ctx.log.info(
          `ACK with CSeq ${seq} ignored: the INVITE's CSeq is ${getCSeq(this.request).seq}`,
          this.fields,
        );
      }
      return;
    }
    if (this.state === "accepting") {
      let sdp = this.offer;
      if (sdp === undefined && ack.body.length) {
        sdp = bodyText(ack);
        this.setRemoteSdp(sdp);
      }
      this.#ctx.log.info("ACK received, call established", this.fields);
      this.markEstablished(sdp);
    } else if (this.#byeAfterAck && this.state === "ended") {
      this.#byeAfterAck = false;
      void this.sendBye();
    }
  }

  /** CANCEL for our INVITE: 200 to the CANCEL, and 487 to the INVITE unless it was answered. */
  protected override onCancel(req: SipRequest, tx: ServerTransaction): void {
    tx.respond(createResponse(req, 200, undefined, { headers: [["Server", this.#ctx.build.userAgent]] }));
    this.#ctx.log.info("CANCEL received", this.fields);
    if (!this.#tx.finalSent && (this.state === "incoming" || this.state === "ringing")) {
      this.#respond(487);
      this.end({ by: "remote", reason: "CANCEL", status: 487 });
    }
  }

  /**
   * A BYE in the dialog: stops 2xx retransmission when it overtakes the ACK; in the early dialog (the INVITE not
   * answered yet) the INVITE gets `487 Request Terminated`, so its transaction completes (RFC 3261 §15.1.2).
   */
  protected override onRemoteBye(): void {
    if (!this.#tx.finalSent && (this.state === "incoming" || this.state === "ringing")) {
      this.#respond(487);
      this.#ctx.log.info("487 Request Terminated sent for the INVITE (BYE in the early dialog)", this.fields);
      return;
    }
    this.#tx.stopRetransmitting();
  }

  #noAck(): void {
    if (this.#byeAfterAck) {
      this.#byeAfterAck = false;
      void this.sendBye();
      return;
    }
    if (this.state !== "accepting") return;
    this.#ctx.log.warn("no ACK for 200 OK, hanging up", this.fields);
    void this.sendBye('SIP;cause=408;text="ACK timeout"');
    this.end({ by: "timeout", reason: "no ACK for 200 OK" });
  }

  /** 603 Decline before answering; BYE after (deferred until the ACK while accepting). */
  hangup(): Promise<void> {
    switch (this.state) {
      case "incoming":
      case "ringing":
        this.reject(603);
        return Promise.resolve();
      case "accepting":
        // RFC 3261 §15: no BYE before the ACK (or Timer H); the call ends for the application now.
        this.#byeAfterAck = true;
        this.end({ by: "local", reason: "BYE" });
        return Promise.resolve();
      case "established": {
        const done = this.sendBye();
        this.end({ by: "local", reason: "BYE" });
        return done;
      }
      default:
        return Promise.resolve();
    }
  }
}
