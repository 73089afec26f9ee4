/**
 * `rtp-depacketizer`: datagrams → parsed RTP frames.
 *
 * Parses each datagram with {@linkcode parseRtp}. Malformed datagrams are
 * dropped and counted per reason, never thrown. RTCP multiplexed on the RTP
 * port (RFC 5761: second byte 192..223) is dropped and counted. Packets whose
 * payload type is not the expected one (e.g. telephone-event) are dropped and
 * counted. A change of SSRC is counted and published as the event
 * `ssrc-change` with `{ from, to }`. Frames carry `codec`, `clockRate` and
 * `arrival` (the datagram's, or the media clock's time when it has none).
 *
 * @example Pipeline entry
 * ```json
 * { "use": "rtp-depacketizer", "codec": "PCMA" }
 * ```
 *
 * @module
 */
import { z } from "zod";
import { type Format, formatToString, PAYLOAD_TYPES } from "../../core/frame.ts";
import { definePlugin, FormatError } from "../../core/stage.ts";
import { parseRtp } from "./header.ts";

/** Options of the `rtp-depacketizer` stage. */
export const rtpDepacketizerOptions = z.strictObject({
  codec: z.enum(["PCMU", "PCMA"]).default("PCMU").describe(
    "Codec of the payload, PCMU or PCMA (default PCMU); set on every frame.",
  ),
  payload_type: z.number().int().min(0).max(127).optional().describe(
    "Only packets of this payload type pass, 0..127; others are dropped and counted. " +
      "Default: the static type of `codec` (0 for PCMU, 8 for PCMA).",
  ),
  any_payload_type: z.boolean().default(false).describe(
    "Let packets of every payload type pass (default false).",
  ),
});

/** Validated options of the `rtp-depacketizer` stage. */
export type RtpDepacketizerOptions = z.output<typeof rtpDepacketizerOptions>;

/** The `rtp-depacketizer` plugin definition. */
export const rtpDepacketizer = definePlugin({
  name: "rtp-depacketizer",
  kind: "transform",
  description: "Parses datagrams into RTP frames; drops and counts malformed ones and foreign payload types",
  accepts: [{ kind: "packet" }],
  produces: { kind: "rtp", clockRate: 8000 },
  options: rtpDepacketizerOptions,
  create(opts, sctx) {
    const codec = opts.codec;
    const clockRate = 8000;
    const wantPt = opts.any_payload_type ? -1 : opts.payload_type ?? PAYLOAD_TYPES[codec];
    const malformed: Record<string, number> = {};
    let received = 0, forwarded = 0, octets = 0, wrongPt = 0, rtcp = 0, ssrcChanges = 0, ignored = 0;
    let ssrc: number | undefined;
    let lastWrongPt: number | undefined;

    return {
      negotiate(input: Format | undefined): Format {
        if (!input || input.kind !== "packet") {
          throw new FormatError(
            `rtp-depacketizer expects packet frames (datagrams), but got ${
              input ? formatToString(input) : "nothing"
            }: put a udp-source before it`,
          );
        }
        return { kind: "rtp", codec, clockRate };
      },
      process(frame, emit) {
        if (frame.kind !== "packet") {
          ignored++;
          return;
        }
        received++;
        const data = frame.data;
        // RTCP multiplexed on the RTP port (RFC 5761 section 4): packet types 192..223.
        if (data.length >= 2 && data[1] >= 192 && data[1] <= 223 && data[0] >> 6 === 2) {
          rtcp++;
          return;
        }
        const r = parseRtp(data, frame.arrival ?? sctx.clock.now());
        if (typeof r === "string") {
          malformed[r] = (malformed[r] ?? 0) + 1;
          return;
        }
        if (wantPt >= 0 && r.payloadType !== wantPt) {
          wrongPt++;
          lastWrongPt = r.payloadType;
          return;
        }
        if (ssrc !== r.ssrc) {
          if (ssrc !== undefined) {
            ssrcChanges++;
            sctx.event("ssrc-change", { from: ssrc, to: r.ssrc });
          }
          ssrc = r.ssrc;
        }
        r.codec = codec;
        r.clockRate = clockRate;
        forwarded++;
        octets += r.payload.length;
        return emit(r);
      },
      stats() {
        let malformedTotal = 0;
        for (const v of Object.values(malformed)) malformedTotal += v;
        return {
          received,
          forwarded,
          octets,
          malformed: malformedTotal,
          malformed_by_reason: { ...malformed },
          wrong_payload_type: wrongPt,
          last_wrong_payload_type: lastWrongPt,
          rtcp,
          ssrc,
          ssrc_changes: ssrcChanges,
          ignored,
        };
      },
    };
  },
});

export default rtpDepacketizer;
