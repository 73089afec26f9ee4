/**
 * Media frame types that flow between stages, and the format descriptors
 * stages use to declare what they accept and produce.
 *
 * Frames are plain objects, timestamped in their own clock units.
 *
 * @module
 */

/**
 * A codec name: the encoding name a plugin registered it under (see core/codec.ts), e.g. `PCMU`. Open: any
 * registered codec.
 */
export type Codec = string;

/**
 * Linear PCM audio, interleaved 16-bit samples.
 *
 * @example
 * ```ts
 * const f: PcmFrame = { kind: "pcm", samples: new Int16Array(160), sampleRate: 8000, channels: 1, pts: 0 };
 * ```
 */
export interface PcmFrame {
  /** Discriminant. */
  kind: "pcm";
  /** Interleaved samples; length is a multiple of `channels`. */
  samples: Int16Array;
  /** Samples per second per channel. */
  sampleRate: number;
  /** Number of interleaved channels. */
  channels: number;
  /** Presentation timestamp of the first sample, in sample periods since the stream start. */
  pts: number;
  /** How this frame came to be: real audio, concealment of a lost frame, or inserted silence. */
  type?: FrameType;
}

/** Why a frame exists: decoded from real data, concealed (a loss), or silence (nothing to play). */
export type FrameType = "normal" | "concealed" | "silence";

/** Encoded audio, one frame of payload bytes of a registered codec. */
export interface EncodedFrame {
  /** Discriminant. */
  kind: "encoded";
  /** Codec of the payload. */
  codec: Codec;
  /** Codec clock rate in Hz. */
  clockRate: number;
  /** Encoded bytes: whole codec frames (see the codec's `frameSamples` / `frameBytes`). */
  payload: Uint8Array;
  /** Timestamp of the first sample, in codec clock units. */
  pts: number;
  /**
   * Normal data; `concealed`: a lost frame the decoder must conceal, whose payload LENGTH gives the duration to
   * synthesize in the codec's frame geometry (content ignored, normally the codec's silence; empty = as long as the
   * last real frame); `silence`: a payload of the codec's silence.
   */
  type?: FrameType;
  /**
   * The PCM this frame plays, when the stage that made it has decoded it already (a real-time jitter buffer
   * time-scales and conceals in PCM): interleaved samples at `clockRate`, as many as `payload` holds. A decoder
   * emits these instead of decoding `payload` or concealing; one that ignores them decodes `payload` (the same
   * audio, encoded) and conceals `concealed` frames itself.
   */
  decoded?: Int16Array;
}

/** A parsed RTP packet (RFC 3550) and, on receive, its arrival time. */
export interface RtpFrame {
  /** Discriminant. */
  kind: "rtp";
  /** Payload type, 0..127. */
  payloadType: number;
  /** 16-bit sequence number. */
  sequence: number;
  /** 32-bit RTP timestamp. */
  timestamp: number;
  /** Synchronization source identifier. */
  ssrc: number;
  /** Marker bit. */
  marker: boolean;
  /** Contributing sources (usually empty). */
  csrc?: number[];
  /** Payload bytes (padding removed). */
  payload: Uint8Array;
  /** Arrival time in milliseconds of the process media clock (receive side only). */
  arrival?: number;
  /** Codec of the payload when known (set by the packetizer / configured on receive). */
  codec?: Codec;
  /** Codec clock rate when known. */
  clockRate?: number;
}

/** A raw datagram as sent or received by a transport. */
export interface PacketFrame {
  /** Discriminant. */
  kind: "packet";
  /** Datagram bytes. */
  data: Uint8Array;
  /** Peer address (receive: the sender; send: optional override). */
  remote?: { hostname: string; port: number };
  /** Arrival time in milliseconds of the process media clock (receive side only). */
  arrival?: number;
}

/** Any frame that can flow through a pipeline. */
export type Frame = PcmFrame | EncodedFrame | RtpFrame | PacketFrame;

/** The kinds of frames. */
export type FrameKind = Frame["kind"];

/**
 * A format descriptor. Fields left undefined mean "any" in an accepted format and
 * "not known until built" in a produced one.
 */
export interface Format {
  /** Frame kind. */
  kind: FrameKind;
  /** pcm: sample rate in Hz. */
  sampleRate?: number;
  /** pcm: channels. */
  channels?: number;
  /** encoded / rtp: codec. */
  codec?: Codec;
  /** encoded / rtp: clock rate in Hz. */
  clockRate?: number;
  /**
   * pcm: the stream's whole length in sample frames (per channel), when its source knows it before the first frame
   * (a file read once; not a looped file, a device or the network). Informative: negotiation never compares it, and a
   * stage that changes the rate or the length leaves it out of what it produces unless it says the new length.
   */
  frames?: number;
}

/**
 * Renders a format for people, e.g. `pcm 8000 Hz mono`, `encoded PCMU 8000 Hz`.
 *
 * @example
 * ```ts
 * formatToString({ kind: "pcm", sampleRate: 16000, channels: 1 }); // "pcm 16000 Hz mono"
 * ```
 */
export function formatToString(f: Format): string {
  const parts: string[] = [f.kind];
  if (f.codec) parts.push(f.codec);
  if (f.kind === "pcm") {
    parts.push(f.sampleRate ? `${f.sampleRate} Hz` : "any rate");
    parts.push(
      f.channels === 1 ? "mono" : f.channels === 2 ? "stereo" : f.channels ? `${f.channels} ch` : "any channels",
    );
  } else if (f.clockRate) {
    parts.push(`${f.clockRate} Hz`);
  }
  return parts.join(" ");
}

/**
 * Returns the first field in which `produced` does not satisfy `accepted`, or
 * undefined when it does. A field undefined in `accepted` accepts anything; a
 * field undefined in `produced` (unknown) is accepted.
 */
export function formatMismatch(produced: Format, accepted: Format): keyof Format | undefined {
  if (produced.kind !== accepted.kind) return "kind";
  for (const key of ["sampleRate", "channels", "codec", "clockRate"] as const) {
    const want = accepted[key];
    const have = produced[key];
    if (want !== undefined && have !== undefined && want !== have) return key;
  }
  return undefined;
}

/**
 * Duration of a PCM frame in milliseconds.
 *
 * @example
 * ```ts
 * pcmDurationMs({ kind: "pcm", samples: new Int16Array(160), sampleRate: 8000, channels: 1, pts: 0 }); // 20
 * ```
 */
export function pcmDurationMs(f: PcmFrame): number {
  return (f.samples.length / f.channels / f.sampleRate) * 1000;
}
