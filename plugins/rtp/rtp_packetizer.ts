/**
 * `rtp-packetizer`: encoded frames of any registered codec → RTP packets of
 * `ptime` milliseconds.
 *
 * Incoming encoded frames of any size are re-chunked into packets of exactly
 * `ptime` worth of samples, cut at codec frame boundaries (the codec's
 * registration gives its clock rate and how many bytes hold how many samples:
 * 160 bytes of G.711 at 20 ms, 320 of 16-bit linear PCM at 8000 Hz). The RTP
 * timestamp follows the input `pts`, so a jump in `pts` (a talkspurt after a
 * pause, or a source restart) moves the RTP timestamp by the same amount and
 * sets the marker bit on the first packet after it, as on the very first
 * packet. Sequence numbers wrap at 16 bits and timestamps at 32 bits. At end of
 * stream the remainder is sent as a shorter packet.
 *
 * It borrows its input (`borrowsInput`): a whole packet cut from an input frame
 * goes on as a view of that frame's payload only when what comes next may let
 * it be reused (`ctx.reuseOutput`: a `udp-sink`, which copies each packet as it
 * takes it, directly or past `rtcp`, `dtmf-sender` or `rtp-end-marker`);
 * otherwise it is copied into memory of its own, so the encoder before it may
 * write its next frame into the same array.
 *
 * @example Pipeline entry
 * ```json
 * { "use": "rtp-packetizer", "ptime": 20 }
 * ```
 *
 * @module
 */
import type { CodecInfo } from "../../core/codec.ts";
import { type EncodedFrame, type Format, formatToString, type RtpFrame } from "../../core/frame.ts";
import { expectFormat, type FormatCheck } from "../../core/format_check.ts";
import { type Emit, FormatError, type StageContext, type TransformStage } from "../../core/stage.ts";
import { randomUint32 } from "../../core/random.ts";
import { Slab } from "../../core/slab.ts";
import { rtpPacketizer, type RtpPacketizerOptions, rtpPacketizerSchema } from "./plugins.ts";

export { rtpPacketizer, type RtpPacketizerOptions };

/** Options of the `rtp-packetizer` stage (its zod schema; the plugin's `options`). */
export const rtpPacketizerOptions: ReturnType<typeof rtpPacketizerSchema> = rtpPacketizerSchema();

const NAME = rtpPacketizer.name;
/** What the packetizer takes: encoded frames (of a codec registered in the stage's context), as declared. */
const ACCEPTS: Format[] = rtpPacketizer.accepts!;

/** Creates a `rtp-packetizer` stage from validated options: the plugin's `create`, loaded when first used. */
export function createRtpPacketizer(opts: RtpPacketizerOptions, sctx: StageContext): TransformStage {
  const check: FormatCheck = { stage: NAME, ctx: sctx };
  let ssrc = opts.ssrc ?? randomUint32();
  let seq = opts.initial_sequence ?? randomUint32() & 0xffff;
  const ts0 = opts.initial_timestamp ?? randomUint32();
  let info: CodecInfo | undefined;
  let codec: string | undefined;
  let clockRate = 0;
  let payloadType = opts.payload_type;
  // Payload geometry of the codec: `frameBytes` bytes hold `frameSamples` samples.
  let frameBytes = 1;
  let frameSamples = 1;
  let samplesPerPacket = 0;
  let packetBytes = 0;

  // Re-chunking state: bytes waiting to fill a packet, and the pts of the first one.
  let pending = new Uint8Array(0);
  let pendingLen = 0;
  let pendingPts = 0;
  let firstPts: number | undefined; // pts that maps to ts0
  let nextPts = 0; // pts expected next (end of what we have seen)
  let marker = true;
  const slab = new Slab(); // the packets' payloads, when the next stage keeps them (no ctx.reuseOutput)
  let packets = 0, octets = 0, discontinuities = 0, ignored = 0;

  /** Takes the codec of the input (from negotiation or the first frame of a new codec) and sizes packets. */
  const configure = (name: string, rate: number | undefined) => {
    const c = sctx.codecs.require(name, NAME);
    if (rate !== undefined && rate !== c.clockRate) {
      throw new FormatError(
        `${NAME}: codec ${c.name} runs at ${c.clockRate} Hz, but gets encoded ${c.name} ${rate} Hz: ` +
          `resample to ${c.clockRate} Hz before encoding`,
      );
    }
    if (opts.payload_type === undefined) {
      if (c.payloadType === "dynamic") {
        throw new FormatError(
          `${NAME}: codec ${c.name} has a dynamic payload type: set "payload_type" (the one negotiated in SDP, ` +
            `96..127)`,
        );
      }
      payloadType = c.payloadType;
    }
    info = c;
    codec = c.name;
    clockRate = c.clockRate;
    frameBytes = c.frameBytes;
    frameSamples = c.frameSamples;
    const ms = opts.ptime ?? c.ptime;
    samplesPerPacket = Math.max(1, Math.round((ms * clockRate) / 1000 / frameSamples)) * frameSamples;
    packetBytes = (samplesPerPacket / frameSamples) * frameBytes;
    if (pending.length !== packetBytes) pending = new Uint8Array(packetBytes);
  };

  const send = (payload: Uint8Array, pts: number, emit: Emit) => {
    const frame: RtpFrame = {
      kind: "rtp",
      payloadType: payloadType!,
      sequence: seq,
      timestamp: (ts0 + (pts - firstPts!)) >>> 0,
      ssrc,
      marker,
      payload,
      codec,
      clockRate,
    };
    marker = false;
    seq = (seq + 1) & 0xffff;
    packets++;
    octets += payload.length;
    emit(frame);
  };

  /** `data`, or a copy of it the next stage may keep (it borrows the input: the stage before reuses its arrays). */
  const own = (data: Uint8Array): Uint8Array => {
    if (sctx.reuseOutput === true) return data;
    const copy = slab.uint8(data.length);
    copy.set(data);
    return copy;
  };

  const flushPending = (emit: Emit) => {
    if (pendingLen === 0) return;
    send(own(pending.subarray(0, pendingLen)), pendingPts, emit);
    pendingLen = 0;
  };

  return {
    negotiate(input: Format | undefined): Format {
      const fmt = expectFormat(input, ACCEPTS, check);
      if (fmt.codec === undefined) return { kind: "rtp" }; // learned from the frames
      try {
        configure(fmt.codec, fmt.clockRate);
      } catch (e) {
        if (e instanceof FormatError) throw e;
        throw new FormatError(`${e instanceof Error ? e.message : e} (input: ${formatToString(fmt)})`);
      }
      return { kind: "rtp", codec: codec!, clockRate };
    },
    process(frame, emit) {
      if (frame.kind !== "encoded") {
        ignored++;
        return;
      }
      const f = frame as EncodedFrame;
      if (f.codec !== codec || f.clockRate !== clockRate) {
        if (pendingLen) flushPending(emit);
        configure(f.codec, f.clockRate);
      }
      const data = f.payload;
      if (frameBytes !== 1 && data.length % frameBytes !== 0) {
        throw new Error(
          `${NAME}: a ${codec} payload is made of ${frameBytes}-byte frames, but gets ${data.length} bytes`,
        );
      }
      if (firstPts === undefined) {
        firstPts = f.pts;
        nextPts = f.pts;
        pendingPts = f.pts;
      }
      if (f.pts !== nextPts) {
        // Discontinuity: send what we have, restart chunking at the new pts, mark it.
        flushPending(emit);
        discontinuities++;
        marker = true;
        pendingPts = f.pts;
      }
      nextPts = f.pts + (data.length / frameBytes) * frameSamples;
      let off = 0;
      // Fill the partial packet first.
      if (pendingLen > 0) {
        const n = Math.min(packetBytes - pendingLen, data.length);
        pending.set(data.subarray(0, n), pendingLen);
        pendingLen += n;
        off = n;
        if (pendingLen === packetBytes) {
          send(own(pending), pendingPts, emit);
          pendingLen = 0;
          pendingPts += samplesPerPacket;
        }
      }
      // Whole packets straight from the input (copied unless the next stage borrows: see own()).
      while (data.length - off >= packetBytes) {
        const packet = off === 0 && data.length === packetBytes ? data : data.subarray(off, off + packetBytes);
        send(own(packet), f.pts + (off / frameBytes) * frameSamples, emit);
        off += packetBytes;
      }
      if (off < data.length) {
        if (pendingLen === 0) pendingPts = f.pts + (off / frameBytes) * frameSamples;
        pending.set(data.subarray(off), pendingLen);
        pendingLen += data.length - off;
      }
    },
    flush(emit) {
      flushPending(emit);
    },
    stats() {
      return {
        packets,
        octets,
        discontinuities,
        ignored,
        ssrc,
        sequence: seq,
        payload_type: payloadType,
        codec: info?.name,
        ptime: info ? (samplesPerPacket * 1000) / clockRate : opts.ptime,
      };
    },
    control(command: string, arg?: unknown) {
      // `ssrc` with a number: change the SSRC (e.g. on a collision, RFC 3550 section 8.2).
      if (command === "ssrc" && typeof arg === "number") {
        ssrc = arg >>> 0;
        marker = true;
        return ssrc;
      }
      return undefined;
    },
  };
}

export default rtpPacketizer;
