/**
 * RTP fixed header (RFC 3550 section 5.1): hand-written serializer and parser.
 *
 * ```
 *  0                   1                   2                   3
 *  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |V=2|P|X|  CC   |M|     PT      |       sequence number         |
 * |                           timestamp                           |
 * |           synchronization source (SSRC) identifier            |
 * |            contributing source (CSRC) identifiers             |
 * ```
 *
 * @module
 */
import type { RtpFrame } from "../../core/frame.ts";

/** Size in bytes of the fixed RTP header, without CSRCs or extension. */
export const RTP_HEADER_SIZE = 12;

/** Size of the slabs {@linkcode serializeRtp} carves packets from. */
const SLAB_SIZE = 65536;
let slab = new Uint8Array(SLAB_SIZE);
let slabUsed = 0;

/** A fresh region of `n` bytes: a view on a shared slab (never handed out twice), or its own buffer. */
function alloc(n: number): Uint8Array {
  if (n > 2048) return new Uint8Array(n);
  if (slabUsed + n > SLAB_SIZE) {
    slab = new Uint8Array(SLAB_SIZE);
    slabUsed = 0;
  }
  const out = slab.subarray(slabUsed, slabUsed + n);
  slabUsed += (n + 7) & ~7;
  return out;
}

/**
 * A copy of `data` its holder may keep: a view on the same shared slabs as {@linkcode serializeRtp}'s packets (or
 * its own buffer above 2 KB). For a sink that queues the bytes of a frame it only borrows.
 *
 * @example
 * ```ts
 * const kept = copyPacket(new Uint8Array([1, 2, 3]));
 * kept.length; // 3
 * ```
 */
export function copyPacket(data: Uint8Array): Uint8Array {
  const out = alloc(data.length);
  out.set(data);
  return out;
}

/** Bytes {@linkcode serializeRtpInto} writes for `frame`: header, CSRCs, payload. */
export function rtpSize(frame: RtpFrame): number {
  return RTP_HEADER_SIZE + (frame.csrc ? frame.csrc.length * 4 : 0) + frame.payload.length;
}

/**
 * Serializes an RTP frame into `out` at `offset` (12-byte header, CSRC list,
 * payload) without allocating; returns the number of bytes written. Never sets
 * the padding or extension bits. Sequence, timestamp and SSRC are truncated to
 * their field widths (16, 32, 32 bits).
 *
 * @example
 * ```ts
 * const buf = new Uint8Array(1500);
 * const n = serializeRtpInto({ kind: "rtp", payloadType: 0, sequence: 1, timestamp: 160, ssrc: 0x1234,
 *   marker: false, payload: new Uint8Array(160) }, buf);
 * // n === 172; send buf.subarray(0, n)
 * ```
 */
export function serializeRtpInto(frame: RtpFrame, out: Uint8Array, offset = 0): number {
  const csrc = frame.csrc;
  const cc = csrc ? csrc.length : 0;
  if (cc > 15) throw new RangeError(`RTP: at most 15 CSRCs, got ${cc}`);
  const payload = frame.payload;
  const total = RTP_HEADER_SIZE + cc * 4 + payload.length;
  if (offset + total > out.length) throw new RangeError(`RTP: ${total} bytes do not fit in the buffer`);
  const seq = frame.sequence & 0xffff;
  const ts = frame.timestamp >>> 0;
  const ssrc = frame.ssrc >>> 0;
  let o = offset;
  out[o] = 0x80 | cc;
  out[o + 1] = (frame.marker ? 0x80 : 0) | (frame.payloadType & 0x7f);
  out[o + 2] = seq >>> 8;
  out[o + 3] = seq & 0xff;
  out[o + 4] = ts >>> 24;
  out[o + 5] = (ts >>> 16) & 0xff;
  out[o + 6] = (ts >>> 8) & 0xff;
  out[o + 7] = ts & 0xff;
  out[o + 8] = ssrc >>> 24;
  out[o + 9] = (ssrc >>> 16) & 0xff;
  out[o + 10] = (ssrc >>> 8) & 0xff;
  out[o + 11] = ssrc & 0xff;
  o += RTP_HEADER_SIZE;
  for (let i = 0; i < cc; i++) {
    const c = csrc![i] >>> 0;
    out[o++] = c >>> 24;
    out[o++] = (c >>> 16) & 0xff;
    out[o++] = (c >>> 8) & 0xff;
    out[o++] = c & 0xff;
  }
  out.set(payload, o);
  return total;
}

/**
 * Serializes an RTP frame: 12-byte header, CSRC list, payload, in new bytes
 * that belong to the caller (views on a shared slab, so small packets cost no
 * buffer allocation). Never sets the padding or extension bits. Sequence,
 * timestamp and SSRC are truncated to their field widths (16, 32, 32 bits).
 *
 * @example
 * ```ts
 * const bytes = serializeRtp({ kind: "rtp", payloadType: 0, sequence: 1, timestamp: 160, ssrc: 0x1234,
 *   marker: false, payload: new Uint8Array(160) });
 * bytes.length; // 172
 * ```
 */
export function serializeRtp(frame: RtpFrame): Uint8Array {
  const out = alloc(rtpSize(frame));
  serializeRtpInto(frame, out, 0);
  return out;
}

/** Reasons {@linkcode parseRtp} gives for a malformed packet. */
export const RTP_MALFORMED_REASONS = [
  "too short",
  "version not 2",
  "CSRC count beyond length",
  "header extension beyond length",
  "bad padding",
] as const;

/** One of {@linkcode RTP_MALFORMED_REASONS}. */
export type RtpMalformedReason = typeof RTP_MALFORMED_REASONS[number];

/**
 * Parses an RTP packet. Returns the frame, or a string naming why the packet is
 * malformed (one of {@linkcode RTP_MALFORMED_REASONS}). Header extensions are
 * skipped and padding is removed; the payload is a view into `data` (no copy).
 *
 * @param data the datagram
 * @param arrival arrival time in media-clock milliseconds, copied to the frame
 *
 * @example
 * ```ts
 * const r = parseRtp(new Uint8Array([0x80, 0, 0, 1, 0, 0, 0, 160, 0, 0, 0x12, 0x34, 0xff]));
 * if (typeof r !== "string") r.sequence; // 1
 * ```
 */
export function parseRtp(data: Uint8Array, arrival?: number): RtpFrame | string {
  const len = data.length;
  if (len < RTP_HEADER_SIZE) return "too short";
  const b0 = data[0];
  if (b0 >>> 6 !== 2) return "version not 2";
  const cc = b0 & 0x0f;
  let offset = RTP_HEADER_SIZE + cc * 4;
  if (offset > len) return "CSRC count beyond length";
  if (b0 & 0x10) {
    if (offset + 4 > len) return "header extension beyond length";
    const words = (data[offset + 2] << 8) | data[offset + 3];
    offset += 4 + words * 4;
    if (offset > len) return "header extension beyond length";
  }
  let end = len;
  if (b0 & 0x20) {
    const pad = data[len - 1];
    if (pad === 0 || offset + pad > len) return "bad padding";
    end = len - pad;
  }
  const b1 = data[1];
  const frame: RtpFrame = {
    kind: "rtp",
    payloadType: b1 & 0x7f,
    sequence: (data[2] << 8) | data[3],
    timestamp: ((data[4] << 24) | (data[5] << 16) | (data[6] << 8) | data[7]) >>> 0,
    ssrc: ((data[8] << 24) | (data[9] << 16) | (data[10] << 8) | data[11]) >>> 0,
    marker: (b1 & 0x80) !== 0,
    payload: data.subarray(offset, end),
  };
  if (cc) {
    const csrc = new Array<number>(cc);
    for (let i = 0, o = RTP_HEADER_SIZE; i < cc; i++, o += 4) {
      csrc[i] = ((data[o] << 24) | (data[o + 1] << 16) | (data[o + 2] << 8) | data[o + 3]) >>> 0;
    }
    frame.csrc = csrc;
  }
  if (arrival !== undefined) frame.arrival = arrival;
  return frame;
}
