/**
 * The udp family's stage plugins, declared: names, formats, option schemas (built on first use) and a `create`
 * that loads the stage's module (`udp_source.ts`, `udp_sink.ts`) when a pipeline first builds one. Loading this
 * module costs next to nothing, so a pipeline that does not use these stages does not pay for them.
 *
 * @module
 */
import { z } from "zod";
import { lazySchema } from "../../core/options.ts";
import { type AnyPlugin, definePlugin, type SinkStage, type SourceStage } from "../../core/stage.ts";
import { hostPortProblem } from "../../core/net/address.ts";
import { lazyModule } from "../../core/lazy.ts";

/** Modules loaded when first used (see `lazyModule`). */
const udpSourceModule = lazyModule<typeof import("./udp_source.ts")>(new URL("./udp_source.ts", import.meta.url));
const udpSinkModule = lazyModule<typeof import("./udp_sink.ts")>(new URL("./udp_sink.ts", import.meta.url));

const hostPort = (what: string) =>
  z.string().superRefine((v, c) => {
    if (v === "") return; // none (a pipeline file's parameter left empty)
    const p = hostPortProblem(v);
    if (p) c.addIssue({ code: "custom", message: `${what}: ${p}` });
  });

/** Options of the `udp-source` stage (its zod schema, built on first use). */
export const udpSourceSchema = lazySchema(() =>
  z.strictObject({
    port: z.number().int().min(0).max(65535).default(0).describe(
      "Local UDP port to receive on, 0..65535. Default 0: allocate an even port from port_range with port+1 free " +
        "(RTP/RTCP pair; port+1 stays reserved for the RTCP stage).",
    ),
    bind: z.string().min(1).default("0.0.0.0").describe(
      'Local address to bind. Default "0.0.0.0" (every IPv4 interface); "::" for IPv6 and IPv4, ' +
        '"127.0.0.1" or "::1" for loopback only.',
    ),
    port_range: z.string().regex(/^\s*\d{1,5}\s*-\s*\d{1,5}\s*$/).default("10000-20000").describe(
      'Range "min-max" in which port 0 allocates the RTP/RTCP pair. Default "10000-20000".',
    ),
    peer: hostPort("peer").optional().describe(
      'Expected sender "host:port" (IPv6 as "[::1]:4000"; port 0 = any port of that host). Datagrams from ' +
        "anyone else are dropped and counted. Default (or an empty string): none, see learn_peer.",
    ),
    learn_peer: z.boolean().default(true).describe(
      "Without a peer: latch to the first sender heard learn_after times in a row (datagrams from every sender are " +
        "passed on until then) and drop datagrams from anyone else afterwards; with peer port 0: take the port of " +
        "that host's first datagram. Default true; false accepts every sender.",
    ),
    learn_after: z.number().int().min(1).max(1000).default(2).describe(
      "Probation: consecutive datagrams from one sender, with none from anyone else between them, before it is " +
        "latched to, 1..1000. Default 2 (a single forged datagram cannot capture the stream).",
    ),
    timeout: z.number().min(0).max(86400).default(0).describe(
      'Seconds without a datagram after which the source ends with a "timeout" event (0..86400; counted ' +
        "from the start too, unless first_timeout is set). Default 0: never.",
    ),
    first_timeout: z.number().min(0).max(86400).default(0).describe(
      'Seconds to wait for the first datagram before ending with a "timeout" event, when that wait should differ ' +
        "from timeout (0..86400), e.g. a receiver started well before its sender. Default 0: timeout applies from " +
        "the start.",
    ),
    max_size: z.number().int().min(1).max(65507).default(1500).describe(
      "Largest datagram accepted, in bytes, 1..65507. Default 1500. Larger datagrams are dropped and counted.",
    ),
  })
);

/** Validated options of the `udp-source` stage. */
export type UdpSourceOptions = z.output<ReturnType<typeof udpSourceSchema>>;

/** Options of the `udp-sink` stage (its zod schema, built on first use). */
export const udpSinkSchema = lazySchema(() =>
  z.strictObject({
    to: z.string().superRefine((v, c) => {
      const p = hostPortProblem(v);
      if (p) c.addIssue({ code: "custom", message: `to: ${p}` });
    }).describe(
      'Destination "host:port" (required), e.g. "127.0.0.1:4000" or "[::1]:4000"; a host name is resolved once ' +
        "when the stage is created.",
    ),
    bind: z.string().min(1).optional().describe(
      'Local address to send from. Default "0.0.0.0", or "::" when `to` is IPv6. Must match the udp-source\'s ' +
        "bind to share its socket.",
    ),
    local_port: z.number().int().min(0).max(65535).default(0).describe(
      "Local port to send from, 0..65535. Default 0: ephemeral. Equal to a udp-source's port (same bind): " +
        "both share one socket (symmetric RTP).",
    ),
    pace: z.boolean().default(true).describe(
      "Send in real time: rtp frames at start + (timestamp - first timestamp) / clock rate, packet frames every " +
        "ptime ms. Default true; false sends each frame as soon as it is written.",
    ),
    ptime: z.number().min(1).max(1000).default(20).describe(
      "Interval in ms between packet frames (which carry no timestamp) when pacing, 1..1000. Default 20.",
    ),
    clock_rate: z.number().int().min(1000).max(192000).default(8000).describe(
      "RTP clock rate in Hz for rtp frames that do not carry one, 1000..192000. Default 8000 (G.711).",
    ),
    queue_ms: z.number().min(10).max(10000).default(100).describe(
      "High-water mark in ms of queued packets ahead of now, 10..10000: above it write() asks upstream to " +
        "wait; drained() resolves at half of it. Default 100.",
    ),
    offset_ms: z.number().min(0).max(1000).default(0).describe(
      "When pacing, send every packet this many ms after its due time, 0..1000 (like GStreamer's ts-offset): " +
        "streams started at the same moment can be spread over a packet time. The delay counts toward " +
        "queue_ms. Default 0.",
    ),
    resync_ms: z.number().min(100).max(600000).default(1000).describe(
      "When a packet falls due more than this many ms in the future or past (a timestamp jump, a stall), the " +
        "timeline restarts at that packet, 100..600000. Default 1000.",
    ),
    wait_for_peer: z.boolean().default(false).describe(
      "Send nothing until the session has received a datagram from its peer (through a udp-source of the same " +
        "session, which drops other senders). Paced, the stream is held meanwhile (queue_ms of it, upstream waits) " +
        "and its timeline starts when the peer is heard; what is held when it ends unheard is counted " +
        "(unheard_dropped). Unpaced, packets are dropped until then. For RTP to an address that came from the " +
        "network (an incoming call's SDP): nothing goes there on its word alone. Default false.",
    ),
    use_frame_remote: z.boolean().default(false).describe(
      "Send packet frames to their own `remote` address when they carry one. Default false: always `to` " +
        "(frames straight from a udp-source carry their sender's address).",
    ),
  })
);

/** Validated options of the `udp-sink` stage. */
export type UdpSinkOptions = z.output<ReturnType<typeof udpSinkSchema>>;

/** The `udp-source` plugin definition. */
export const udpSource = definePlugin({
  name: "udp-source",
  kind: "source",
  description: "Receives UDP datagrams as packet frames; drops foreign senders; ends after a timeout",
  produces: { kind: "packet" },
  realtime: true,
  get options() {
    return udpSourceSchema();
  },
  create: async (opts, sctx): Promise<SourceStage> => (await udpSourceModule()).createUdpSource(opts, sctx),
});

/** The `udp-sink` plugin definition. */
export const udpSink = definePlugin({
  name: "udp-sink",
  kind: "sink",
  description: "Sends rtp or packet frames over UDP, paced in real time; shares the udp-source socket",
  accepts: [{ kind: "rtp" }, { kind: "packet" }],
  realtime: true,
  /** Queues a copy of each packet (serialized, or a packet frame's bytes copied), never the frame's own arrays. */
  borrowsInput: true,
  get options() {
    return udpSinkSchema();
  },
  create: async (opts, sctx): Promise<SinkStage> => (await udpSinkModule()).createUdpSink(opts, sctx),
});

/** The stage plugins of this family, registered as built-ins. */
export const plugins: AnyPlugin[] = [udpSource, udpSink];
