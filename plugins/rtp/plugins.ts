/**
 * The rtp family's stage plugins, declared: names, formats, bridges, option schemas (built on first use) and a
 * `create` that loads the stage's module (`rtp_packetizer.ts`, `rtp_depacketizer.ts`, `jitter_buffer.ts`,
 * `impair.ts`, `rtcp.ts`, `dtmf_sender.ts`) when a pipeline first builds one. Loading this module costs next to
 * nothing, so a pipeline that does not use these stages does not pay for them (the jitter buffer's time-scaling,
 * the RTCP session and rtp.js are not loaded).
 *
 * @module
 */
import { z } from "zod";
import { lazySchema } from "../../core/options.ts";
import type { Format } from "../../core/frame.ts";
import { type AnyPlugin, definePlugin, type StageConfig, type TransformStage } from "../../core/stage.ts";
import { lazyModule } from "../../core/lazy.ts";

/** Modules loaded when first used (see `lazyModule`). */
const rtpPacketizerModule = lazyModule<typeof import("./rtp_packetizer.ts")>(
  new URL("./rtp_packetizer.ts", import.meta.url),
);
const rtpDepacketizerModule = lazyModule<typeof import("./rtp_depacketizer.ts")>(
  new URL("./rtp_depacketizer.ts", import.meta.url),
);
const jitterBufferModule = lazyModule<typeof import("./jitter_buffer.ts")>(
  new URL("./jitter_buffer.ts", import.meta.url),
);
const impairModule = lazyModule<typeof import("./impair.ts")>(new URL("./impair.ts", import.meta.url));
const rtcpModule = lazyModule<typeof import("./rtcp.ts")>(new URL("./rtcp.ts", import.meta.url));
const dtmfSenderModule = lazyModule<typeof import("./dtmf_sender.ts")>(new URL("./dtmf_sender.ts", import.meta.url));

/** Default tone duration of a digit (ms). */
export const DTMF_DEFAULT_DURATION_MS = 160;
/** Default pause between digits (ms). */
export const DTMF_DEFAULT_GAP_MS = 100;
/** Default update interval of an event's packets (ms; RFC 4733 suggests 50). */
export const DTMF_DEFAULT_INTERVAL_MS = 50;
/** Default volume, −dBm0. */
export const DTMF_DEFAULT_VOLUME = 10;

/** Options of the `rtp-packetizer` stage (its zod schema, built on first use). */
export const rtpPacketizerSchema = lazySchema(() =>
  z.strictObject({
    payload_type: z.number().int().min(0).max(127).optional().describe(
      "RTP payload type, 0..127. Default: the static payload type the input codec is registered with " +
        "(required for a codec with a dynamic one: the type negotiated in SDP).",
    ),
    ptime: z.number().int().min(10).max(60).optional().describe(
      "Packet duration in ms, 10..60. Default: the packet duration the codec is registered with " +
        "(20 ms for the built-in codecs).",
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
  })
);

/** Validated options of the `rtp-packetizer` stage. */
export type RtpPacketizerOptions = z.output<ReturnType<typeof rtpPacketizerSchema>>;

/** Options of the `rtp-depacketizer` stage (its zod schema, built on first use). */
export const rtpDepacketizerSchema = lazySchema(() =>
  z.strictObject({
    codec: z.string().min(1).optional().describe(
      "Codec of the payload: the name of a registered codec (e.g. the SIP control's ${codec}); set on every frame. " +
        "Default: the codec registered with `payload_type` as its static payload type, else the first registered codec.",
    ),
    payload_type: z.number().int().min(0).max(127).optional().describe(
      "Only packets of this payload type pass, 0..127; others are dropped and counted. " +
        "Default: the codec's static payload type (required for a codec with a dynamic one).",
    ),
    any_payload_type: z.boolean().default(false).describe(
      "Let packets of every payload type pass (default false).",
    ),
    dtmf_payload_type: z.number().int().min(0).max(127).default(0).describe(
      "Payload type of RFC 4733 telephone events (DTMF), as negotiated in SDP (the SIP control's " +
        "${dtmf.payloadType}), 0..127: its packets are reported as `dtmf` events and logged, never played as " +
        "audio. 0 (default): none.",
    ),
  })
);

/** Validated options of the `rtp-depacketizer` stage. */
export type RtpDepacketizerOptions = z.output<ReturnType<typeof rtpDepacketizerSchema>>;

/** Options of the `jitter-buffer` stage (its zod schema, built on first use). */
export const jitterBufferSchema = lazySchema(() =>
  z.strictObject({
    min_delay: z.number().min(0).max(1000).default(20).describe(
      "Smallest playout delay the adaptation may reach, 0..1000 ms (default 20).",
    ),
    max_delay: z.number().min(10).max(5000).default(500).describe(
      "Largest playout delay the adaptation may reach, 10..5000 ms (default 500).",
    ),
    initial_delay: z.number().min(0).max(5000).optional().describe(
      "Playout delay of the first packet, 0..5000 ms, within [min_delay, max_delay] " +
        "(default 60, raised to min_delay or lowered to max_delay when outside).",
    ),
    ptime: z.number().int().min(10).max(60).optional().describe(
      "Frame duration in ms, 10..60. Default: learned from the packets (until known: the codec's default, 20 ms for " +
        "the built-in codecs).",
    ),
    max_conceal: z.number().min(0).max(2000).default(100).describe(
      "How long missing audio is concealed (the recent audio repeated) before it fades into comfort noise, " +
        "0..2000 ms (default 100).",
    ),
    mode: z.enum(["auto", "playout", "record"]).default("auto").describe(
      '"playout": one frame per ptime on the media clock, the delay adapted by time-scaling the audio (for a ' +
        'speaker, a network sink, a bridge; the codec must register a pcm transcoder). "record": frames on the sender\'s timeline, as soon as they are in order, whatever the timing ' +
        '(nothing dropped or inserted but what the sequence numbers say was lost; for a file). Default "auto": ' +
        "record when the chain ends in a sink that is not real-time (a file), playout otherwise.",
    ),
    reorder_ms: z.number().min(0).max(5000).default(300).describe(
      "Record mode: how much of the sender's audio may arrive after a gap before the gap is declared lost and " +
        "concealed, 0..5000 ms (default 300).",
    ),
  }).refine((o) => o.min_delay <= o.max_delay, {
    message: "expected min_delay <= max_delay",
    path: ["max_delay"],
  }).refine(
    (o) => o.initial_delay === undefined || (o.min_delay <= o.initial_delay && o.initial_delay <= o.max_delay),
    { message: "expected min_delay <= initial_delay <= max_delay", path: ["initial_delay"] },
  )
);

/** Validated options of the `jitter-buffer` stage. */
export type JitterBufferOptions = z.output<ReturnType<typeof jitterBufferSchema>>;

/** Options of the `impair` stage (its zod schema, built on first use). */
export const impairSchema = lazySchema(() =>
  z.strictObject({
    loss: z.number().min(0).max(1).default(0).describe("Probability of dropping a frame, 0..1 (default 0)."),
    duplicate: z.number().min(0).max(1).default(0).describe(
      "Probability of sending a frame twice, 0..1 (default 0).",
    ),
    reorder: z.number().min(0).max(1).default(0).describe(
      "Probability of holding a frame back until after the next one, 0..1 (default 0).",
    ),
    delay_ms: z.number().min(0).max(10000).default(0).describe(
      "Fixed delay added to every frame, 0..10000 ms (default 0).",
    ),
    jitter_ms: z.number().min(0).max(10000).default(0).describe(
      "Maximum random extra delay, 0..10000 ms (default 0 = none).",
    ),
    jitter_distribution: z.enum(["uniform", "normal"]).default("uniform").describe(
      "Distribution of the extra delay: uniform in [0, jitter_ms), or normal with mean jitter_ms/2 and " +
        "standard deviation jitter_ms/4 clipped to [0, jitter_ms] (default uniform).",
    ),
    seed: z.number().int().min(0).max(0xffffffff).optional().describe(
      "Seed of the pseudo-random generator, 0..4294967295, for reproducible runs. Default: random (see stats).",
    ),
  })
);

/** Validated options of the `impair` stage. */
export type ImpairOptions = z.output<ReturnType<typeof impairSchema>>;

/** Matches `host:port`, `[ipv6]:port`. */
const REMOTE_PATTERN = /^(\[[0-9A-Fa-f:.]+\]|[^\s:\[\]]+):(\d{1,5})$/;

/** Options of the `rtcp` stage (its zod schema, built on first use). */
export const rtcpSchema = lazySchema(() =>
  z.strictObject({
    session: z.string().min(1).max(200).default("default").describe(
      "RTCP session id within the stage's session: rtcp stages of one call (or one pipeline file) with the same " +
        'id share one RTCP session. Default "default" (each call has its own session, so one id per call is ' +
        "not needed).",
    ),
    local_port: z.number().int().min(0).max(65535).default(0).describe(
      "Local UDP port of the RTCP socket, 0..65535, usually the RTP port + 1 (default 0 = ephemeral).",
    ),
    rtp_port: z.number().int().min(1).max(65534).optional().describe(
      "The session's local RTP port, 1..65534: when local_port is 0, RTCP binds rtp_port + 1 (RFC 3550 " +
        "section 11). Default: none.",
    ),
    bind: z.string().min(1).optional().describe(
      "Local address to bind. Default: 0.0.0.0, or :: when `remote` is an IPv6 address.",
    ),
    remote: z.string().regex(REMOTE_PATTERN).optional().describe(
      "The peer's RTCP address, host:port or [ipv6]:port. Default: none; reports go to the address the " +
        "peer's RTCP comes from, taken from the first report whose SSRC is that of the RTP this session received " +
        "(held until that RTP arrives when it comes first; or, once we sent RTP, a report on our SSRC): RTCP from " +
        "anyone else, sent first or not, is dropped. " +
        "Once the peer is known, RTCP from other addresses is ignored.",
    ),
    rtp_remote: z.string().regex(REMOTE_PATTERN).optional().describe(
      "The peer's RTP address, host:port or [ipv6]:port: when `remote` is not set, reports go to its port + 1 " +
        "(RFC 3550 section 11). Default: none.",
    ),
    interval: z.number().min(0.1).max(3600).default(5).describe(
      "Minimum report interval in seconds, 0.1..3600 (default 5, RFC 3550; smaller values are a reduced " +
        "minimum, RFC 3550 section 6.2). Each interval is randomized to 0.5–1.5 times; the first report " +
        "comes after half the minimum.",
    ),
    cname: z.string().min(1).max(255).optional().describe(
      "SDES CNAME. Default: a random 16-character identifier (RFC 7022).",
    ),
    bandwidth: z.number().min(1).max(100000).default(80).describe(
      "Session bandwidth in kbit/s, RTCP taking 5 % of it, 1..100000 (default 80: G.711 at 20 ms with " +
        "IP/UDP/RTP headers).",
    ),
    direction: z.enum(["auto", "send", "receive"]).default("auto").describe(
      'Which path this stage observes: "send" (packets we send), "receive" (packets we receive), or ' +
        '"auto": frames with an arrival time are received ones (default auto).',
    ),
  })
);

/** Validated options of the `rtcp` stage. */
export type RtcpOptions = z.output<ReturnType<typeof rtcpSchema>>;

/** Options of the `dtmf-sender` stage (its zod schema, built on first use). */
export const dtmfSenderSchema = lazySchema(() =>
  z.strictObject({
    payload_type: z.number().int().min(0).max(127).default(0).describe(
      "RTP payload type of telephone-event, as negotiated in SDP (the SIP control's ${dtmf.payloadType}), 0..127. " +
        "0 (default): none was negotiated; frames pass unchanged and no digit is sent.",
    ),
    dtmf: z.string().regex(/^[0-9*#A-Da-d]*$/, "expected DTMF digits: 0-9, *, #, A-D").default("").describe(
      'Digits to send, e.g. "1234#" (default none); more can be sent from the application (sendDtmf).',
    ),
    dtmf_at: z.number().min(0).max(86400).default(1).describe(
      "When `dtmf` starts, in seconds into the stream (from its first audio packet), 0..86400 (default 1).",
    ),
    duration: z.number().int().min(40).max(8000).default(DTMF_DEFAULT_DURATION_MS).describe(
      `Tone duration of each digit of \`dtmf\`, ms, 40..8000 (default ${DTMF_DEFAULT_DURATION_MS}).`,
    ),
    gap: z.number().int().min(0).max(10000).default(DTMF_DEFAULT_GAP_MS).describe(
      `Pause after each digit of \`dtmf\`, ms, 0..10000 (default ${DTMF_DEFAULT_GAP_MS}).`,
    ),
    volume: z.number().int().min(0).max(63).default(DTMF_DEFAULT_VOLUME).describe(
      `Volume of the digits of \`dtmf\`, in -dBm0, 0..63 (default ${DTMF_DEFAULT_VOLUME}).`,
    ),
    interval: z.number().int().min(10).max(1000).default(DTMF_DEFAULT_INTERVAL_MS).describe(
      `How often an event's duration is updated, ms, 10..1000 (default ${DTMF_DEFAULT_INTERVAL_MS}, as RFC 4733 ` +
        "suggests); at most one event packet goes with each audio packet.",
    ),
  })
);

/** Validated options of the `dtmf-sender` stage. */
export type DtmfSenderStageOptions = z.output<ReturnType<typeof dtmfSenderSchema>>;

/** The `rtp-packetizer` plugin definition. */
export const rtpPacketizer = definePlugin({
  name: "rtp-packetizer",
  kind: "transform",
  description: "Packs encoded frames of any registered codec into RTP packets of ptime ms (RFC 3550)",
  accepts: [{ kind: "encoded" }],
  produces: { kind: "rtp" },
  /** Passes an input payload on only to a next stage that borrows too; otherwise copies it (see the stage). */
  borrowsInput: true,
  get options() {
    return rtpPacketizerSchema();
  },
  /** Bridges encoded → rtp of the same codec. */
  bridges(from: Format, to: Format): StageConfig | undefined {
    if (from.kind !== "encoded" || to.kind !== "rtp") return undefined;
    if (from.codec !== undefined && to.codec !== undefined && from.codec !== to.codec) return undefined;
    return { use: "rtp-packetizer" };
  },
  create: async (opts, sctx): Promise<TransformStage> => (await rtpPacketizerModule()).createRtpPacketizer(opts, sctx),
});

/** The `rtp-depacketizer` plugin definition. */
export const rtpDepacketizer = definePlugin({
  name: "rtp-depacketizer",
  kind: "transform",
  description: "Parses datagrams into RTP frames; drops and counts malformed ones and foreign payload types",
  accepts: [{ kind: "packet" }],
  produces: { kind: "rtp" },
  get options() {
    return rtpDepacketizerSchema();
  },
  /** Bridges datagrams → rtp (of the codec asked for). */
  bridges(from: Format, to: Format): StageConfig | undefined {
    if (from.kind !== "packet" || to.kind !== "rtp") return undefined;
    return to.codec ? { use: "rtp-depacketizer", codec: to.codec } : { use: "rtp-depacketizer" };
  },
  create: async (opts, sctx): Promise<TransformStage> =>
    (await rtpDepacketizerModule()).createRtpDepacketizer(opts, sctx),
});

/** The `jitter-buffer` plugin definition. */
export const jitterBuffer = definePlugin({
  name: "jitter-buffer",
  kind: "transform",
  description: "Reorders RTP packets of any duration and plays one frame per ptime on the media clock, with " +
    "adaptive delay by time-scale modification (or records them on the sender's timeline)",
  accepts: [{ kind: "rtp" }],
  produces: { kind: "encoded" },
  realtime: true,
  get options() {
    return jitterBufferSchema();
  },
  /** Bridges rtp → encoded frames of the same codec. */
  bridges(from: Format, to: Format): StageConfig | undefined {
    if (from.kind !== "rtp" || to.kind !== "encoded") return undefined;
    if (from.codec !== undefined && to.codec !== undefined && from.codec !== to.codec) return undefined;
    return { use: "jitter-buffer" };
  },
  create: async (opts, sctx): Promise<TransformStage> => (await jitterBufferModule()).createJitterBuffer(opts, sctx),
});

/** The `impair` plugin definition. */
export const impair = definePlugin({
  name: "impair",
  kind: "transform",
  description: "Simulates loss, delay/jitter, reordering and duplication with a seeded PRNG",
  accepts: [{ kind: "packet" }, { kind: "rtp" }, { kind: "encoded" }, { kind: "pcm" }],
  get options() {
    return impairSchema();
  },
  create: async (opts, sctx): Promise<TransformStage> => (await impairModule()).createImpair(opts, sctx),
});

/** The `rtcp` plugin definition. */
export const rtcp = definePlugin({
  name: "rtcp",
  kind: "transform",
  description: "RTCP sender/receiver reports for the RTP passing through (RFC 3550), one session per call",
  accepts: [{ kind: "rtp" }],
  produces: { kind: "rtp" },
  /** Reads each frame (its header, the payload's length) while passing it on as it is. */
  passesInputThrough: true,
  get options() {
    return rtcpSchema();
  },
  create: async (opts): Promise<TransformStage> => (await rtcpModule()).createRtcp(opts),
});

/** The `dtmf-sender` plugin definition. */
export const dtmfSender = definePlugin({
  name: "dtmf-sender",
  kind: "transform",
  description: "Sends DTMF digits as RFC 4733 telephone events in the RTP stream passing through",
  accepts: [{ kind: "rtp" }],
  produces: { kind: "rtp" },
  /** Reads each frame (its header, the payload's length) while passing it on as it is. */
  passesInputThrough: true,
  get options() {
    return dtmfSenderSchema();
  },
  create: async (opts, sctx): Promise<TransformStage> => (await dtmfSenderModule()).createDtmfSender(opts, sctx),
});

/** The stage plugins of this family, registered as built-ins. */
export const plugins: AnyPlugin[] = [rtpPacketizer, rtpDepacketizer, jitterBuffer, impair, rtcp, dtmfSender];
