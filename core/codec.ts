/**
 * Codecs as data: what a codec plugin registers (name, RTP payload type, clock
 * rate, channels, payload geometry, default ptime, silence, concealment) and the
 * {@linkcode CodecRegistry} that stages, SDP and control plugins look codecs up
 * in, by name or by static payload type.
 *
 * Core names no codec: a codec exists when a plugin registers it (the g711
 * plugin registers its laws; a user plugin registers its own). A registry is
 * passed around (`registry.codecs`, `ctx.codecs` in a stage), never reached as a
 * process-wide table.
 *
 * @example A linear 16-bit codec, registered with a dynamic payload type
 * ```ts
 * const l16 = defineCodec({
 *   name: "L16",
 *   payloadType: "dynamic",
 *   clockRate: 8000,
 *   frameBytes: 2,
 *   silence: (n) => new Uint8Array(2 * n),
 *   concealment: "none",
 * });
 * const codecs = new CodecRegistry([l16]);
 * codecs.get("l16") === l16; // true: names match case-insensitively
 * ```
 *
 * @module
 */

/** Options a decoder passes to a codec's concealment factory. */
export interface ConcealerOptions {
  /** Sample rate of the decoded audio, Hz. */
  sampleRate: number;
  /** Interleaved channels of the decoded audio. */
  channels: number;
}

/**
 * Decoder-side packet loss concealment: fed every decoded frame, asked for
 * samples in place of every lost one, in stream order.
 */
export interface Concealer {
  /**
   * Takes a frame of real decoded audio; after a loss it may smooth its start in place.
   * @returns the (possibly smoothed) samples
   */
  receive(samples: Int16Array): Int16Array;
  /** Synthesizes `n` interleaved samples to stand in for lost audio. */
  conceal(n: number): Int16Array;
}

/** Creates a {@linkcode Concealer} for a decoder. */
export type ConcealmentFactory = (options: ConcealerOptions) => Concealer;

/**
 * Converts a codec's payloads to PCM and back, for a stage that works on the audio inside a packet stream (the
 * jitter buffer's real-time playout time-scales it). One per stream: a stateful codec keeps its state here.
 */
export interface PcmTranscoder {
  /** The interleaved samples of a payload of whole codec frames. */
  decode(payload: Uint8Array): Int16Array;
  /** A payload holding `samples` (interleaved, a whole number of codec frames). */
  encode(samples: Int16Array): Uint8Array;
}

/**
 * A codec as registered: everything the RTP stages, the jitter buffer, decoders
 * and SDP need to handle its payloads without knowing the codec by name.
 */
export interface CodecInfo {
  /**
   * Encoding name, as in SDP `a=rtpmap` and in frames' `codec` field (e.g. `PCMU`). Unique in a registry;
   * looked up case-insensitively. Letters, digits and `._+-`.
   */
  readonly name: string;
  /**
   * The static RTP payload type (RFC 3551), 0..95 except 72..76; or `"dynamic"`: SDP assigns one of 96..127 per
   * session, and RTP stages must be told which (their `payload_type` option).
   */
  readonly payloadType: number | "dynamic";
  /** RTP clock rate, Hz (the unit of RTP timestamps and of `pts` in encoded frames). */
  readonly clockRate: number;
  /** Interleaved channels. */
  readonly channels: number;
  /**
   * Samples (per channel, in clock-rate units) in one codec frame, the smallest piece a payload can be cut into:
   * 1 for sample-based codecs (G.711, linear PCM), e.g. 80 for a codec of 10 ms frames at 8000 Hz.
   */
  readonly frameSamples: number;
  /** Bytes of one codec frame, all channels: 1 for G.711, 2 × channels for 16-bit linear PCM. */
  readonly frameBytes: number;
  /** Default packet duration, ms. */
  readonly ptime: number;
  /** A payload of `samples` samples (per channel, a multiple of `frameSamples`) of silence. */
  silence(samples: number): Uint8Array;
  /**
   * Decoder-side concealment of lost frames: a factory of a {@linkcode Concealer}, or `"none"` (lost frames
   * decode to silence).
   */
  readonly concealment: ConcealmentFactory | "none";
  /**
   * True when the payload is quiet (below about −30 dBFS): a jitter buffer that must drop a frame to shrink
   * its delay prefers a quiet one. Absent: no frame counts as quiet.
   */
  isQuiet?(payload: Uint8Array): boolean;
  /**
   * A factory of a {@linkcode PcmTranscoder}: a jitter buffer playing in real time decodes packets through it to
   * time-scale the audio (stretch or compress it instead of dropping or inserting frames). Absent: the codec cannot
   * be played in real time by the jitter buffer (a recording still works).
   */
  readonly pcm?: () => PcmTranscoder;
  /** SDP `a=fmtp` parameters to offer with this codec, if any. */
  readonly fmtp?: string;
}

/** What {@linkcode defineCodec} takes: a {@linkcode CodecInfo} whose geometry fields may be left to defaults. */
export interface CodecInit extends Omit<CodecInfo, "channels" | "frameSamples" | "frameBytes" | "ptime"> {
  /** Interleaved channels (default 1). */
  channels?: number;
  /** Samples per channel in one codec frame (default 1: a sample-based codec). */
  frameSamples?: number;
  /** Bytes of one codec frame, all channels (default 1 × channels). */
  frameBytes?: number;
  /** Default packet duration, ms (default 20). */
  ptime?: number;
}

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._+-]*$/;

/** Why `info` is not a usable codec description, or undefined when it is. */
export function codecShapeProblem(info: unknown): string | undefined {
  if (typeof info !== "object" || info === null) return "not a codec description object";
  const c = info as Record<string, unknown>;
  if (typeof c.name !== "string" || !NAME_RE.test(c.name)) {
    return `"name" must be an encoding name of letters, digits and ._+- (as in SDP a=rtpmap), got ${
      JSON.stringify(c.name)
    }`;
  }
  const what = `codec "${c.name}"`;
  const pt = c.payloadType;
  if (pt !== "dynamic") {
    if (typeof pt !== "number" || !Number.isInteger(pt) || pt < 0 || pt > 95 || (pt >= 72 && pt <= 76)) {
      return `${what}: "payloadType" must be a static RTP payload type (0..95, not 72..76) or "dynamic", got ${
        JSON.stringify(pt)
      }`;
    }
  }
  for (const key of ["clockRate", "channels", "frameSamples", "frameBytes"] as const) {
    const v = c[key];
    if (typeof v !== "number" || !Number.isInteger(v) || v < 1) {
      return `${what}: "${key}" must be a positive integer, got ${JSON.stringify(v)}`;
    }
  }
  if (typeof c.ptime !== "number" || !(c.ptime > 0 && c.ptime <= 1000)) {
    return `${what}: "ptime" must be a duration in ms (0..1000), got ${JSON.stringify(c.ptime)}`;
  }
  if (typeof c.silence !== "function") return `${what}: "silence" must be a function (samples) => payload`;
  if (c.concealment !== "none" && typeof c.concealment !== "function") {
    return `${what}: "concealment" must be a factory of a concealer or "none"`;
  }
  if (c.isQuiet !== undefined && typeof c.isQuiet !== "function") return `${what}: "isQuiet" must be a function`;
  if (c.pcm !== undefined && typeof c.pcm !== "function") {
    return `${what}: "pcm" must be a factory of a transcoder () => ({ decode, encode })`;
  }
  if (c.fmtp !== undefined && typeof c.fmtp !== "string") return `${what}: "fmtp" must be a string`;
  return undefined;
}

/**
 * Completes a codec description with defaults (1 channel, 1 sample per frame,
 * 1 byte per sample and channel, 20 ms) and checks it. Throws a TypeError that
 * says which field is wrong.
 *
 * @example
 * ```ts
 * const info = defineCodec({ name: "X", payloadType: "dynamic", clockRate: 16000, frameBytes: 2,
 *   silence: (n) => new Uint8Array(2 * n), concealment: "none" });
 * info.ptime; // 20
 * ```
 */
export function defineCodec(init: CodecInit): CodecInfo {
  const channels = init.channels ?? 1;
  const info: CodecInfo = {
    ...init,
    channels,
    frameSamples: init.frameSamples ?? 1,
    frameBytes: init.frameBytes ?? channels,
    ptime: init.ptime ?? 20,
  };
  const problem = codecShapeProblem(info);
  if (problem) throw new TypeError(`cannot define codec: ${problem}`);
  return Object.freeze(info);
}

/**
 * Samples (per channel) held by a payload of `bytes` bytes: whole codec frames only.
 *
 * @example
 * ```ts
 * payloadSamples({ frameSamples: 1, frameBytes: 2 }, 320); // 160
 * ```
 */
export function payloadSamples(info: Pick<CodecInfo, "frameSamples" | "frameBytes">, bytes: number): number {
  return Math.floor(bytes / info.frameBytes) * info.frameSamples;
}

/**
 * Bytes of a payload holding `samples` samples (per channel), rounded down to whole codec frames.
 *
 * @example
 * ```ts
 * payloadBytes({ frameSamples: 1, frameBytes: 2 }, 160); // 320
 * ```
 */
export function payloadBytes(info: Pick<CodecInfo, "frameSamples" | "frameBytes">, samples: number): number {
  return Math.floor(samples / info.frameSamples) * info.frameBytes;
}

/** A codec name that no plugin registered; the message lists the known ones. */
export class UnknownCodecError extends Error {
  /** The name asked for. */
  readonly codec: string;
  /** Names of the registered codecs. */
  readonly known: string[];
  /**
   * Creates the error.
   * @param codec the unknown name
   * @param known the registered names
   * @param who what asked, for the message (e.g. `rtp-depacketizer`)
   */
  constructor(codec: string, known: string[], who?: string) {
    super(
      `${who ? `${who}: ` : ""}unknown codec ${JSON.stringify(codec)}; known codecs: ${
        known.join(", ") || "none"
      } (a codec is registered by the plugin that implements it)`,
    );
    this.name = "UnknownCodecError";
    this.codec = codec;
    this.known = known;
  }
}

/**
 * The codecs known to a registry, in registration order: looked up by name
 * (case-insensitive) or by static RTP payload type.
 *
 * @example
 * ```ts
 * const codecs = new CodecRegistry(myPluginCodecs);
 * codecs.require("PCMA", "my-stage").clockRate; // throws, listing the known codecs, when none is named PCMA
 * codecs.byPayloadType(8)?.name;
 * ```
 */
export class CodecRegistry {
  readonly #byName = new Map<string, CodecInfo>();
  readonly #byPt = new Map<number, CodecInfo>();

  /**
   * Creates a registry.
   * @param codecs codecs to register at once, in order
   */
  constructor(codecs: Iterable<CodecInfo> = []) {
    for (const c of codecs) this.register(c);
  }

  /**
   * Registers a codec. Registering the same description again is a no-op; another codec with a name or static
   * payload type already taken is an error.
   */
  register(info: CodecInfo): void {
    const problem = codecShapeProblem(info);
    if (problem) throw new TypeError(`cannot register codec: ${problem}`);
    const key = info.name.toLowerCase();
    const had = this.#byName.get(key);
    if (had === info) return;
    if (had) throw new Error(`a codec named "${had.name}" is already registered`);
    if (typeof info.payloadType === "number") {
      const taken = this.#byPt.get(info.payloadType);
      if (taken) {
        throw new Error(
          `cannot register codec "${info.name}": static payload type ${info.payloadType} is already ${taken.name}'s`,
        );
      }
      this.#byPt.set(info.payloadType, info);
    }
    this.#byName.set(key, info);
  }

  /** The codec of this name (case-insensitive), if registered. */
  get(name: string): CodecInfo | undefined {
    return this.#byName.get(name.toLowerCase());
  }

  /** The codec of this name; throws {@linkcode UnknownCodecError} listing the known ones. */
  require(name: string, who?: string): CodecInfo {
    const c = this.#byName.get(name.toLowerCase());
    if (!c) throw new UnknownCodecError(name, this.names(), who);
    return c;
  }

  /** The codec whose static payload type is `pt`, if any (dynamic types are per session: see SDP). */
  byPayloadType(pt: number): CodecInfo | undefined {
    return this.#byPt.get(pt);
  }

  /** Every registered codec, in registration order. */
  list(): CodecInfo[] {
    return [...this.#byName.values()];
  }

  /** Names of the registered codecs, in registration order. */
  names(): string[] {
    return this.list().map((c) => c.name);
  }

  /** Number of registered codecs. */
  get size(): number {
    return this.#byName.size;
  }
}
