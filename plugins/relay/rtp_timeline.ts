/**
 * `rtp-timeline`: RTP frames → encoded frames placed at their RTP timestamps,
 * with no playout clock. For a receive chain that records to a file: the
 * recording follows the sender's timeline, so it never depends on how the
 * receiving process was scheduled (a jitter buffer plays in real time and
 * conceals what comes late; this stage waits for nothing and conceals
 * nothing). The `wav-sink` after the decoder writes each frame at its `pts`:
 * a gap (lost packets) becomes silence, a late or duplicate packet that
 * overlaps what was written is dropped.
 *
 * The first packet is at pts 0; timestamps are unwrapped over 32 bits (the
 * signed distance from the previous packet, so a reordered packet lands
 * before it). A new SSRC continues right after the end of the previous
 * stream. One byte per sample (G.711).
 *
 * For live playout (speaker) use `jitter-buffer` instead.
 *
 * @example Pipeline entry
 * ```json
 * { "use": "rtp-timeline" }
 * ```
 *
 * @module
 */
import { type EncodedFrame, type Format, formatToString } from "../../core/frame.ts";
import { FormatError, type TransformStage } from "../../core/stage.ts";
import { isTelephoneEvent } from "../rtp/telephone_event.ts";
import { rtpTimeline } from "./stage_plugins.ts";

export { rtpTimeline };

/** Creates an `rtp-timeline` stage: the plugin's `create`, loaded when first used. */
export function createRtpTimeline(): TransformStage {
  let ssrc: number | undefined;
  let lastTs = 0;
  let ext = 0; // unwrapped timestamp of the last packet, relative to the stream's first
  let base = 0; // pts of the current stream's first packet
  let end = 0; // pts right after the latest sample seen
  let packets = 0, streams = 0, empty = 0;
  let codec: EncodedFrame["codec"] = "PCMU";
  let clockRate = 8000;
  return {
    negotiate(input: Format | undefined): Format {
      if (!input || input.kind !== "rtp" || !input.codec) {
        throw new FormatError(
          `rtp-timeline expects rtp frames of a known codec, but got ${
            input ? formatToString(input) : "nothing"
          }: put an rtp-depacketizer with "codec" before it`,
        );
      }
      codec = input.codec;
      clockRate = input.clockRate ?? 8000;
      return { kind: "encoded", codec, clockRate };
    },
    process(frame, emit) {
      if (frame.kind !== "rtp" || isTelephoneEvent(frame)) return; // RFC 4733 events carry no audio
      if (frame.payload.length === 0) {
        empty++;
        return;
      }
      const ts = frame.timestamp >>> 0;
      if (frame.ssrc !== ssrc) {
        if (ssrc !== undefined) streams++;
        ssrc = frame.ssrc;
        base = end;
        ext = 0;
      } else {
        ext += (ts - lastTs) | 0;
      }
      lastTs = ts;
      const pts = base + ext;
      end = Math.max(end, pts + frame.payload.length);
      packets++;
      emit({
        kind: "encoded",
        codec: frame.codec ?? codec,
        clockRate: frame.clockRate ?? clockRate,
        payload: frame.payload,
        pts,
        type: "normal",
      });
    },
    stats: () => ({ packets, ssrc_changes: streams, empty }),
  };
}
