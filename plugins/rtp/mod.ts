/**
 * The rtp plugin family: RTP packetizer and depacketizer (RFC 3550), jitter
 * buffer, RTCP reporter, a network impairment simulator, and DTMF as RFC 4733
 * telephone events (the `dtmf-sender` stage; the depacketizer reports received
 * ones).
 *
 * @module
 */
export { parseRtp, RTP_HEADER_SIZE, serializeRtp } from "./header.ts";
export { JitterBuffer, type JitterBufferCodecs, type JitterBufferStats } from "./jitter_buffer.ts";
export {
  accelerate,
  backwardExtension,
  Expander,
  type ExpanderOptions,
  findPeriod,
  preemptiveExpand,
  type Stretched,
} from "./time_stretch.ts";
export {
  decodeTelephoneEvents,
  DTMF_DIGITS,
  DTMF_EVENTS_FMTP,
  dtmfCodes,
  dtmfDigit,
  DtmfReceiver,
  type DtmfReceiverOptions,
  encodeTelephoneEvent,
  isTelephoneEvent,
  type ReceivedDtmf,
  type ReceivedTelephoneEvent,
  TELEPHONE_EVENT,
  type TelephoneEvent,
} from "./telephone_event.ts";
export {
  DTMF_SENDER,
  DtmfSender,
  type DtmfSendOptions,
  type DtmfSendResult,
  sendDtmf,
  type SentDtmf,
} from "./dtmf_sender.ts";
// Type only: the class (and rtp.js with it) loads when an rtcp stage starts; import it from ./rtcp_session.ts.
export type { RtcpSession } from "./rtcp_session.ts";

// The stage plugins of this family (declarations: each loads its stage module when a pipeline first builds one).
export { plugins } from "./plugins.ts";
