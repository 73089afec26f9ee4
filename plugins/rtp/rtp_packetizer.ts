/**
 * `rtp-packetizer`: encoded G.711 frames → RTP packets of `ptime` milliseconds.
 *
 * Incoming encoded frames of any size are re-chunked into packets of exactly
 * `ptime` worth of samples (160 bytes for G.711 at 20 ms). The RTP timestamp
 * follows the input `pts`, so a jump in `pts` (a talkspurt after a pause, or
 * a source restart) moves the RTP timestamp by the same amount and sets the
 * marker bit on the first packet after it, as on the very first packet.
 * Sequence numbers wrap at 16 bits and timestamps at 32 bits. At end of
 * stream the remainder is sent as a shorter packet.
 *
 * @example Pipeline entry
 * ```json
 * { "use": "rtp-packetizer", "ptime": 20 }
 * ```
 *
 * @module
 */
import { z } from "zod";
import {
  type Codec,
  type EncodedFrame,
  type Format,
  formatToString,
  PAYLOAD_TYPES,
  type RtpFrame,
} from "../../core/frame.ts";
import { definePlugin, type Emit, FormatError } from "../../core/stage.ts";
import { randomUint32 } from "../../core/random.ts";

/** Options of the `rtp-packetizer` stage. */
export const rtpPacketizerOptions = z.strictObject({
  payload_type: z.number().int().min(0).max(127).optional().describe(
    "RTP payload type, 0..127. Default: the static type of the input codec (0 for PCMU, 8 for PCMA).",
  ),
  ptime: z.number().int().min(10).max(60).default(20).describe(
    "Packet duration in ms, 10..60 (default 20 = 160 G.711 bytes at 8000 Hz).",
  ),
  ssrc: z.number().int().min(0).max(0xffffffff).optional().describe(
    "SSRC, 0..4294967295. Default: random (RFC 3550 section 8.1). Set it only for tests.",
  ),
  initial_sequence: z.number().int().min(0).max(0xffff).optional().describe(
    "First sequence number, 0..65535. Default: random. Set it only for tests.",
  ),
  initial_timestamp: z.number().int().min(0).max(0xffffffff).optional().describe(
    "First RTP timestamp, 0..4294967295. Default: random. Set it only for tests.",
  ),
});

/** Validated options of the `rtp-packetizer` stage. */
export type RtpPacketizerOptions = z.output<typeof rtpPacketizerOptions>;

/** Bytes per sample of the supported codecs (G.711: one). */
const BYTES_PER_SAMPLE = 1;

/** The `rtp-packetizer` plugin definition. */
export const rtpPacketizer = definePlugin({
  name: "rtp-packetizer",
  kind: "transform",
  description: "Packs encoded G.711 frames into RTP packets of ptime ms (RFC 3550)",
  accepts: [{ kind: "encoded" }],
  produces: { kind: "rtp" },
  options: rtpPacketizerOptions,
  create(opts) {
    let ssrc = opts.ssrc ?? randomUint32();
    let seq = opts.initial_sequence ?? randomUint32() & 0xffff;
    const ts0 = opts.initial_timestamp ?? randomUint32();
    let codec: Codec | undefined;
    let clockRate = 8000;
    let payloadType = opts.payload_type;
    let samplesPerPacket = (opts.ptime * clockRate) / 1000;

    // Re-chunking state: bytes waiting to fill a packet, and the pts of the first one.
    let pending = new Uint8Array(samplesPerPacket * BYTES_PER_SAMPLE);
    let pendingLen = 0;
    let pendingPts = 0;
    let firstPts: number | undefined; // pts that maps to ts0
    let nextPts = 0; // pts expected next (end of what we have seen)
    let marker = true;
    let packets = 0, octets = 0, discontinuities = 0, ignored = 0;

    const configure = (c: Codec | undefined, rate: number | undefined) => {
      if (c) codec = c;
      if (rate && rate !== clockRate) {
        clockRate = rate;
        samplesPerPacket = Math.round((opts.ptime * clockRate) / 1000);
        pending = new Uint8Array(samplesPerPacket * BYTES_PER_SAMPLE);
      }
      if (payloadType === undefined && codec) payloadType = PAYLOAD_TYPES[codec];
    };

    const send = (payload: Uint8Array, pts: number, emit: Emit) => {
      const frame: RtpFrame = {
        kind: "rtp",
        payloadType: payloadType ?? 0,
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

    const flushPending = (emit: Emit) => {
      if (pendingLen === 0) return;
      send(pending.slice(0, pendingLen), pendingPts, emit);
      pendingLen = 0;
    };

    return {
      negotiate(input: Format | undefined): Format {
        if (!input || input.kind !== "encoded") {
          throw new FormatError(
            `rtp-packetizer expects encoded PCMU or PCMA frames, but got ${
              input ? formatToString(input) : "nothing"
            }: put a g711-encoder before it`,
          );
        }
        if (input.clockRate !== undefined && input.clockRate !== 8000) {
          throw new FormatError(
            `rtp-packetizer supports G.711 at 8000 Hz, but got ${formatToString(input)}: resample to 8000 Hz`,
          );
        }
        configure(input.codec, input.clockRate);
        return { kind: "rtp", codec: input.codec, clockRate: input.clockRate ?? 8000 };
      },
      process(frame, emit) {
        if (frame.kind !== "encoded") {
          ignored++;
          return;
        }
        const f = frame as EncodedFrame;
        if (f.codec !== codec || (f.clockRate && f.clockRate !== clockRate)) {
          if (pendingLen) flushPending(emit);
          configure(f.codec, f.clockRate);
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
        const data = f.payload;
        nextPts = f.pts + data.length / BYTES_PER_SAMPLE;
        const packetBytes = samplesPerPacket * BYTES_PER_SAMPLE;
        let off = 0;
        // Fill the partial packet first.
        if (pendingLen > 0) {
          const n = Math.min(packetBytes - pendingLen, data.length);
          pending.set(data.subarray(0, n), pendingLen);
          pendingLen += n;
          off = n;
          if (pendingLen === packetBytes) {
            send(pending.slice(), pendingPts, emit);
            pendingLen = 0;
            pendingPts += samplesPerPacket;
          }
        }
        // Whole packets straight from the input (no copy).
        while (data.length - off >= packetBytes) {
          send(data.subarray(off, off + packetBytes), f.pts + off / BYTES_PER_SAMPLE, emit);
          off += packetBytes;
        }
        if (off < data.length) {
          if (pendingLen === 0) pendingPts = f.pts + off / BYTES_PER_SAMPLE;
          pending.set(data.subarray(off), pendingLen);
          pendingLen += data.length - off;
        }
      },
      flush(emit) {
        flushPending(emit);
      },
      stats() {
        return { packets, octets, discontinuities, ignored, ssrc, sequence: seq, payload_type: payloadType };
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
  },
});

export default rtpPacketizer;
