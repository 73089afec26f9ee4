/**
 * The SDP side of anchoring media at the relay without transcoding: both legs
 * must end up on one codec, each told to send to the relay.
 *
 * 1. The caller's offer lists its codecs; the callee is offered those of them
 *    the relay allows (registered codecs, optionally fewer), in the caller's
 *    order, at the relay's address and the callee leg's port
 *    ({@linkcode calleeOffer}).
 * 2. The callee's answer picks one of them; the caller is answered with that
 *    codec only, on the caller's own payload type, at the relay's address and
 *    the caller leg's port ({@linkcode callerAnswer}).
 * 3. The payload type each side sends and expects follows
 *    ({@linkcode Agreement}): equal numbers for static types, a rewrite of one
 *    byte in each packet when a dynamic type got different numbers.
 * 4. DTMF (RFC 4733 telephone-event) is offered to the callee when the caller
 *    offered it, and accepted towards the caller when the callee accepted it;
 *    its packets are relayed like audio, their payload type rewritten the same
 *    way.
 *
 * @module
 */
import type { CodecRegistry } from "../../core/codec.ts";
import {
  agreedMedia,
  createAnswer,
  createOffer,
  negotiated,
  type NegotiatedAudio,
  NoCommonCodecError,
  SdpError,
} from "../sip/mod.ts";

/**
 * The codecs of `offer` that are among `allowed` (registered names), in the
 * offer's order of preference. Empty when none is; throws `SdpError` when the
 * offer is malformed or has no usable audio stream.
 *
 * @example
 * ```ts
 * offeredCodecs("...m=audio 4000 RTP/AVP 8 0 101...", codecs, ["PCMU", "PCMA"]); // ["PCMA", "PCMU"]
 * ```
 */
export function offeredCodecs(offer: string, registry: CodecRegistry, allowed: readonly string[]): string[] {
  const out: string[] = [];
  let left = [...allowed];
  while (left.length > 0) {
    let first: NegotiatedAudio;
    try {
      first = negotiated(offer, { registry, codecs: left });
    } catch (e) {
      if (e instanceof NoCommonCodecError) break;
      throw e;
    }
    out.push(first.codec);
    left = left.filter((n) => n.toLowerCase() !== first.codec.toLowerCase());
  }
  return out;
}

/** Options of {@linkcode calleeOffer}. */
export interface CalleeOfferOptions {
  /** The relay's address for the callee leg. */
  address: string;
  /** The callee leg's RTP port. */
  port: number;
  /** Codecs that exist. */
  registry: CodecRegistry;
  /** Codecs to offer: those of the caller's offer the relay allows, in its order. */
  codecs: string[];
  /** What the caller's offer says (ptime and direction are passed on). */
  caller: NegotiatedAudio;
}

/**
 * The offer sent to the callee: `codecs` at the relay's address, with the
 * caller's ptime and direction.
 */
export function calleeOffer(o: CalleeOfferOptions): string {
  return createOffer({
    address: o.address,
    port: o.port,
    registry: o.registry,
    codecs: o.codecs,
    ptime: o.caller.ptime,
    direction: o.caller.direction,
    rtcpPort: o.port + 1,
    telephoneEvent: o.caller.dtmf !== undefined,
  });
}

/** What both legs agreed, once the callee answered. */
export interface Agreement {
  /** The codec both legs use. */
  codec: string;
  /** The SDP answer for the caller (the relay's address and caller leg port). */
  callerAnswer: string;
  /** The caller's media as agreed (where it expects RTP, the payload type it sends and expects). */
  caller: NegotiatedAudio;
  /** The callee's media as its answer says (where it expects RTP, the payload type it expects). */
  callee: NegotiatedAudio;
  /** Payload types `[caller sends, callee expects]`. */
  callerToCallee: [number, number];
  /** Payload types `[callee sends, caller expects]`. */
  calleeToCaller: [number, number];
  /** Telephone-event payload types `[caller sends, callee expects]`, when both legs agreed on DTMF. */
  dtmfCallerToCallee?: [number, number];
  /** Telephone-event payload types `[callee sends, caller expects]`, when both legs agreed on DTMF. */
  dtmfCalleeToCaller?: [number, number];
}

/** Options of {@linkcode callerAnswer}. */
export interface CallerAnswerOptions {
  /** The caller's offer. */
  callerOffer: string;
  /** The offer the relay sent the callee. */
  calleeOffer: string;
  /** The callee's answer. */
  calleeAnswer: string;
  /** The relay's address for the caller leg. */
  address: string;
  /** The caller leg's RTP port. */
  port: number;
  /** Codecs that exist. */
  registry: CodecRegistry;
  /** The codecs offered to the callee. */
  codecs: string[];
}

/**
 * Reads the callee's answer and makes the caller's: the codec the callee
 * chose, on the caller's payload type. Throws `SdpError` (status 488) when
 * the answer picks nothing that was offered or is unusable.
 */
export function callerAnswer(o: CallerAnswerOptions): Agreement {
  let callee: NegotiatedAudio;
  try {
    callee = agreedMedia(o.calleeAnswer, o.calleeOffer, { registry: o.registry, codecs: o.codecs });
  } catch (e) {
    if (e instanceof SdpError) throw new SdpError(`the callee's answer: ${e.message}`, 488);
    throw e;
  }
  const codec = callee.codec;
  const answer = createAnswer(o.callerOffer, {
    address: o.address,
    port: o.port,
    registry: o.registry,
    codecs: [codec],
    ptime: callee.ptime,
    direction: callee.direction,
    rtcpPort: o.port + 1,
    telephoneEvent: callee.dtmf !== undefined,
  });
  const caller = agreedMedia(o.callerOffer, answer, { registry: o.registry });
  const toCallee = negotiated(o.calleeOffer, { registry: o.registry, codecs: [codec] });
  const dtmf = caller.dtmf && callee.dtmf && toCallee.dtmf
    ? {
      // Each side sends with the numbers the other side's SDP gave (RFC 3264): the caller those of our answer
      // (its own offer's), the callee those of our offer.
      dtmfCallerToCallee: [caller.dtmf.payloadType, callee.dtmf.payloadType] as [number, number],
      dtmfCalleeToCaller: [toCallee.dtmf.payloadType, caller.dtmf.payloadType] as [number, number],
    }
    : {};
  return {
    codec,
    callerAnswer: answer,
    caller,
    callee,
    callerToCallee: [caller.payloadType, callee.payloadType],
    calleeToCaller: [toCallee.payloadType, caller.payloadType],
    ...dtmf,
  };
}
