/**
 * The rtp plugin family: RTP packetizer and depacketizer (RFC 3550), jitter
 * buffer, RTCP reporter, a network impairment simulator, and DTMF as RFC 4733
 * telephone events (the `dtmf-sender` stage; the depacketizer reports received
 * ones).
 *
 * @module
 */
import type { AnyPlugin } from "../../core/stage.ts";
import { rtpPacketizer } from "./rtp_packetizer.ts";
import { rtpDepacketizer } from "./rtp_depacketizer.ts";
import { jitterBuffer } from "./jitter_buffer.ts";
import { impair } from "./impair.ts";
import { rtcp } from "./rtcp.ts";
import { dtmfSender } from "./dtmf_sender.ts";

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

/** The stage plugins of this family, registered as built-ins. */
export const plugins: AnyPlugin[] = [rtpPacketizer, rtpDepacketizer, jitterBuffer, impair, rtcp, dtmfSender];
