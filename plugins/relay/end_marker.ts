/**
 * The end-of-transmission marker of relay clients, and its detector.
 *
 * **The marker** is one RTP packet (RFC 3550 header, 12 bytes) with **no
 * payload and the marker bit set**, in the stream it ends: same SSRC and
 * payload type, the next sequence number, and the timestamp right after the
 * last sample sent. An empty packet carries no audio, so a receiver that does
 * not know the convention loses nothing (our jitter buffer drops it as
 * `invalid`); the marker bit makes it unambiguous, since an audio packet is
 * never empty. It travels through the relay like any datagram.
 *
 * - `rtp-end-marker` (send side, just before the `udp-sink`) passes RTP
 *   frames through and, at end of stream, emits the marker after the last one.
 * - `rtp-end-detector` (receive side, after the `rtp-depacketizer`) passes
 *   every other frame through, drops the marker and raises the pipeline event
 *   `end-of-transmission` (`{ ssrc, sequence }`); the `relay-client` control
 *   ends that chain gracefully on it (the jitter buffer plays out, the
 *   recording is finalized).
 *
 * @example Pipeline entries
 * ```json
 * { "use": "rtp-end-marker" }
 * { "use": "rtp-end-detector" }
 * ```
 *
 * @module
 */
import type { RtpFrame } from "../../core/frame.ts";
import type { StageContext, TransformStage } from "../../core/stage.ts";
import { rtpEndDetector, rtpEndMarker } from "./stage_plugins.ts";

export { rtpEndDetector, rtpEndMarker };

/** True when `f` is an end-of-transmission marker: marker bit set, empty payload. */
export function isEndMarker(f: RtpFrame): boolean {
  return f.marker && f.payload.length === 0;
}

/**
 * The marker that ends the stream whose last packet was `last` (G.711: one
 * byte per sample, so the next timestamp is `timestamp + payload length`).
 *
 * @example
 * ```ts
 * const m = endMarkerAfter({ kind: "rtp", payloadType: 0, sequence: 65535, timestamp: 1000, ssrc: 7,
 *   marker: false, payload: new Uint8Array(160) });
 * // m.sequence === 0, m.timestamp === 1160, m.marker === true, m.payload.length === 0
 * ```
 */
export function endMarkerAfter(last: RtpFrame): RtpFrame {
  return {
    kind: "rtp",
    payloadType: last.payloadType,
    sequence: (last.sequence + 1) & 0xffff,
    timestamp: (last.timestamp + last.payload.length) >>> 0,
    ssrc: last.ssrc,
    marker: true,
    payload: new Uint8Array(0),
    ...(last.codec ? { codec: last.codec } : {}),
    ...(last.clockRate ? { clockRate: last.clockRate } : {}),
  };
}

/**
 * Creates an `rtp-end-marker` stage: the plugin's `create`, loaded when first used. It passes each frame on as it is
 * (`passesInputThrough`); of the last one it keeps it reads only the header fields and the payload's length (which an
 * array reused for the next payload keeps).
 */
export function createRtpEndMarker(): TransformStage {
  let last: RtpFrame | undefined;
  let sent = false;
  return {
    negotiate: (input) => input,
    process(frame, emit) {
      if (frame.kind !== "rtp") return;
      last = frame;
      emit(frame);
    },
    flush(emit) {
      if (!last || sent) return;
      sent = true;
      emit(endMarkerAfter(last));
    },
    stats: () => ({ marker_sent: sent }),
  };
}

/** Creates an `rtp-end-detector` stage (events and logs go through `sctx`): the plugin's `create`, loaded when first used. */
export function createRtpEndDetector(sctx: StageContext): TransformStage {
  let markers = 0;
  return {
    negotiate: (input) => input,
    process(frame, emit) {
      if (frame.kind !== "rtp") return;
      if (!isEndMarker(frame)) return emit(frame);
      markers++;
      sctx.log.info("end of transmission received", { ssrc: frame.ssrc });
      sctx.event("end-of-transmission", { ssrc: frame.ssrc, sequence: frame.sequence });
    },
    stats: () => ({ markers }),
  };
}
