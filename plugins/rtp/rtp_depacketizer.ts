/**
 * `rtp-depacketizer`: datagrams → parsed RTP frames.
 *
 * Parses each datagram with {@linkcode parseRtp}. Malformed datagrams are
 * dropped and counted per reason, never thrown. RTCP multiplexed on the RTP
 * port (RFC 5761: second byte 192..223) is dropped and counted. Packets whose
 * payload type is not the expected one (e.g. telephone-event) are dropped and
 * counted. A change of SSRC is counted and published as the event
 * `ssrc-change` with `{ from, to }`. Frames carry `codec` and `clockRate` (from
 * the codec's registration) and `arrival` (the datagram's, or the media clock's
 * time when it has none).
 *
 * **DTMF** (RFC 4733). With `dtmf_payload_type` (the SIP control's
 * `${dtmf.payloadType}`), packets of that type are telephone events: never
 * audio. A {@linkcode DtmfReceiver} turns them into one event per key press,
 * however many updates and redundant final packets carried it, published as
 * the stage event `dtmf` (which reaches the session's listeners: `detail` is a
 * {@linkcode ReceivedDtmf}: `digit`, `duration_ms`, `volume`, ...; other event
 * codes as `telephone-event`) with one log line, `DTMF 5 received (160 ms)`
 * (at most 20 lines per 10 s; beyond, a count is logged when the next 10 s
 * begin: a peer can send an event per packet; every event is still published).
 * The packets then go on tagged with the codec `telephone-event`, so that RTCP
 * counts them and the jitter buffer knows their sequence numbers were not
 * audio; nothing plays or records them.
 *
 * @example Pipeline entry
 * ```json
 * { "use": "rtp-depacketizer", "codec": "${codec}", "payload_type": "${payloadType}",
 *   "dtmf_payload_type": "${dtmf.payloadType}" }
 * ```
 *
 * @module
 */
import type { CodecInfo } from "../../core/codec.ts";
import type { Format } from "../../core/frame.ts";
import { expectFormat, type FormatCheck } from "../../core/format_check.ts";
import type { Timer } from "../../core/clock.ts";
import type { StageContext, TransformStage } from "../../core/stage.ts";
import { LogRation } from "../../core/log.ts";
import { parseRtp } from "./header.ts";
import { DtmfReceiver, type ReceivedDtmf, type ReceivedTelephoneEvent, TELEPHONE_EVENT } from "./telephone_event.ts";
import { rtpDepacketizer, type RtpDepacketizerOptions, rtpDepacketizerSchema } from "./plugins.ts";

export { rtpDepacketizer, type RtpDepacketizerOptions };

/** Options of the `rtp-depacketizer` stage (its zod schema; the plugin's `options`). */
export const rtpDepacketizerOptions: ReturnType<typeof rtpDepacketizerSchema> = rtpDepacketizerSchema();

const NAME = rtpDepacketizer.name;
/** What the depacketizer takes: datagrams, as declared. */
const ACCEPTS: Format[] = rtpDepacketizer.accepts!;

/** The codec the options name (see their descriptions), looked up in the stage's registry. */
function codecFor(opts: RtpDepacketizerOptions, codecs: StageContext["codecs"]): CodecInfo {
  if (opts.codec !== undefined) return codecs.require(opts.codec, NAME);
  const byPt = opts.payload_type !== undefined ? codecs.byPayloadType(opts.payload_type) : undefined;
  const c = byPt ?? codecs.list()[0];
  if (!c) throw new Error(`${NAME}: no codec is registered; register the codec plugin and set "codec"`);
  return c;
}

/**
 * Log lines for received DTMF digits and telephone events per {@linkcode DTMF_LOG_WINDOW_MS} at most: a person dials a
 * few digits a second, but a peer can send an event per packet.
 */
const DTMF_LOG_LINES = 20;
const DTMF_LOG_WINDOW_MS = 10_000;

/** Creates a `rtp-depacketizer` stage from validated options: the plugin's `create`, loaded when first used. */
export function createRtpDepacketizer(opts: RtpDepacketizerOptions, sctx: StageContext): TransformStage {
  const check: FormatCheck = {
    stage: NAME,
    ctx: sctx,
    advice: (_input, field) =>
      field === "kind" ? "put a udp-source (or another source of datagrams) before it" : undefined,
  };
  const info = codecFor(opts, sctx.codecs);
  const codec = info.name;
  const clockRate = info.clockRate;
  if (!opts.any_payload_type && opts.payload_type === undefined && info.payloadType === "dynamic") {
    throw new Error(
      `codec ${codec} has a dynamic payload type: set "payload_type" (the one negotiated in SDP, 96..127), ` +
        `or "any_payload_type": true`,
    );
  }
  const wantPt = opts.any_payload_type ? -1 : opts.payload_type ?? (info.payloadType as number);
  const dtmfPt = opts.dtmf_payload_type;
  if (dtmfPt > 0 && dtmfPt === wantPt) {
    throw new Error(
      `dtmf_payload_type ${dtmfPt} is the audio's payload type: set it to the telephone-event type negotiated ` +
        `in SDP (\${dtmf.payloadType}), or 0 for none`,
    );
  }
  const malformed: Record<string, number> = {};
  let received = 0, forwarded = 0, octets = 0, wrongPt = 0, rtcp = 0, ssrcChanges = 0, ignored = 0;
  let ssrc: number | undefined;
  let lastWrongPt: number | undefined;
  const clock = sctx.clock;
  let dtmfTimer: Timer | undefined;
  const dtmfLines = new LogRation(
    DTMF_LOG_LINES,
    DTMF_LOG_WINDOW_MS,
    (n) =>
      `${n} more telephone events received were not logged (more than ${DTMF_LOG_LINES} in ` +
      `${DTMF_LOG_WINDOW_MS / 1000} s); each is still published as an event`,
  );
  const dtmf = dtmfPt > 0
    ? new DtmfReceiver({
      clockRate,
      onEvent(e: ReceivedTelephoneEvent) {
        const line = sctx.log.enabled("info") && dtmfLines.allow(clock.now(), sctx.log);
        if (e.digit !== undefined) {
          if (line) sctx.log.info(`DTMF ${e.digit} received (${e.duration_ms} ms)`);
          sctx.event("dtmf", e as ReceivedDtmf);
        } else {
          if (line) sctx.log.info(`telephone event ${e.code} received (${e.duration_ms} ms)`);
          sctx.event("telephone-event", e);
        }
      },
    })
    : undefined;
  /** Arms the timer that ends an event whose final packets were lost. */
  const armDtmf = () => {
    const due = dtmf?.deadline;
    if (due === undefined) {
      dtmfTimer?.cancel();
      dtmfTimer = undefined;
      return;
    }
    if (dtmfTimer) return; // it re-arms itself for a later deadline when it fires
    dtmfTimer = clock.at(due, () => {
      dtmfTimer = undefined;
      dtmf!.expire(clock.now());
      armDtmf();
    });
  };
  const endDtmf = () => {
    dtmfTimer?.cancel();
    dtmfTimer = undefined;
    dtmf?.finish();
  };

  return {
    negotiate(input: Format | undefined): Format {
      expectFormat(input, ACCEPTS, check);
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
      if (dtmf && r.payloadType === dtmfPt) {
        dtmf.receive(r, r.arrival ?? clock.now());
        armDtmf();
        // On, tagged: RTCP counts it, the jitter buffer knows its sequence number carried no audio.
        r.codec = TELEPHONE_EVENT;
        r.clockRate = clockRate;
        return emit(r);
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
    flush() {
      endDtmf();
    },
    close() {
      endDtmf();
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
        ...(dtmf ? { dtmf: dtmf.stats() } : {}),
      };
    },
  };
}

export default rtpDepacketizer;
