/**
 * `rtcp`: RTCP reporting (RFC 3550 section 6) as a pass-through stage on rtp frames.
 *
 * Put one after the `rtp-packetizer` of a send pipeline (it counts the packets and
 * octets sent and maps RTP timestamps to NTP time for sender reports) and/or one
 * after the `rtp-depacketizer` of a receive pipeline (it computes loss, extended
 * highest sequence number and interarrival jitter from arrival times). Stages with
 * the same `session` share one {@linkcode RtcpSession} and one UDP socket, so a call
 * sends one compound report (SR with a report block, or RR, plus SDES CNAME) per
 * interval, receives the peer's, and sends BYE when the last of its pipelines stops.
 *
 * The first stage to start creates the session with its socket options
 * (`local_port` or `rtp_port`, `bind`, `remote` or `rtp_remote`, `interval`, `cname`,
 * `bandwidth`); give the stages of a session the same ones. Use one `session` id per
 * call. The socket is opened with the udp plugin's `openUdpSocket`, so an RTCP port
 * reserved with `allocatePortPair` is taken over.
 *
 * Every report sent or received is logged on one line (`SR sent: packets=…, octets=…`,
 * `RR received: loss=…%, jitter=… ms, rtt=… ms`) and published as the event `rtcp`
 * with the report's fields and the session's statistics; a BYE from the peer is
 * published as `rtcp` with `type: "BYE"`.
 *
 * @example Send and receive pipelines of one call
 * ```json
 * { "use": "rtcp", "session": "${call.id}", "local_port": 40001, "remote": "192.0.2.7:30001" }
 * ```
 *
 * @module
 */
import { z } from "zod";
import type { Format } from "../../core/frame.ts";
import { expectFormat, type FormatCheck } from "../../core/format_check.ts";
import { definePlugin, type RunContext } from "../../core/stage.ts";
import { type RtcpAddress, type RtcpReportInfo, RtcpSession, UdpRtcpTransport } from "./rtcp_session.ts";

/** Matches `host:port`, `[ipv6]:port`. */
const REMOTE_PATTERN = /^(\[[0-9A-Fa-f:.]+\]|[^\s:\[\]]+):(\d{1,5})$/;

/** Options of the `rtcp` stage. */
export const rtcpOptions = z.strictObject({
  session: z.string().min(1).max(200).default("default").describe(
    "RTP session id shared by the send and receive rtcp stages of one call, e.g. the call id " +
      '(default "default"; use a distinct id per concurrent call).',
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
      "peer's RTCP comes from. Once the peer is known, RTCP from other addresses is ignored.",
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
});

/** Validated options of the `rtcp` stage. */
export type RtcpOptions = z.output<typeof rtcpOptions>;

/** Parses `host:port` / `[v6]:port`. */
export function parseHostPort(s: string): RtcpAddress {
  const m = REMOTE_PATTERN.exec(s);
  if (!m) throw new Error(`expected host:port, got "${s}"`);
  const host = m[1].startsWith("[") ? m[1].slice(1, -1) : m[1];
  const port = Number(m[2]);
  if (port < 1 || port > 65535) throw new Error(`port out of range in "${s}"`);
  return { hostname: host, port };
}

/** Resolves a host name to an address (IP literals as they are, `localhost` as 127.0.0.1). */
async function resolveHost(host: string): Promise<string> {
  if (/^\d+\.\d+\.\d+\.\d+$/.test(host) || host.includes(":")) return host;
  if (host === "localhost") return "127.0.0.1";
  try {
    return (await Deno.resolveDns(host, "A"))[0];
  } catch {
    return (await Deno.resolveDns(host, "AAAA"))[0];
  }
}

/** A random RFC 7022 style CNAME: 96 random bits in base64. */
function randomCname(): string {
  return btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(12))));
}

const pct = (x: number | undefined) => (x === undefined ? "n/a" : `${(x * 100).toFixed(1)}%`);
const ms = (x: number | undefined) => (x === undefined ? "n/a" : `${x.toFixed(1)} ms`);

/** One log line for a report. */
export function describeReport(r: RtcpReportInfo): string {
  const what = `${r.type} ${r.direction}`;
  if (r.type === "BYE") return `${what}: ssrc=${r.ssrc}${r.reason ? `, reason=${JSON.stringify(r.reason)}` : ""}`;
  const parts: string[] = [];
  if (r.direction === "sent" && r.type === "SR") parts.push(`packets=${r.packets}`, `octets=${r.octets}`);
  if (r.fractionLost !== undefined) {
    parts.push(`loss=${pct(r.fractionLost)}`, `jitter=${ms(r.jitterMs)}`);
    if (r.direction === "received") parts.push(`rtt=${ms(r.rttMs)}`);
  } else if (r.direction === "received") {
    if (r.type === "SR") parts.push(`packets=${r.packets}`, `octets=${r.octets}`);
    else parts.push("no report about our stream");
  } else if (r.type === "RR") {
    parts.push("no RTP received since the last report");
  }
  return `${what}: ${parts.join(", ")}`;
}

/** What the rtcp stage takes (and passes on): RTP packets. */
const ACCEPTS: Format[] = [{ kind: "rtp" }];
const CHECK: FormatCheck = {
  stage: "rtcp",
  advice: () => "put it after an rtp-packetizer (send) or an rtp-depacketizer (receive)",
};

/** The `rtcp` plugin definition. */
export const rtcp = definePlugin({
  name: "rtcp",
  kind: "transform",
  description: "RTCP sender/receiver reports for the RTP passing through (RFC 3550), one session per call",
  accepts: ACCEPTS,
  produces: { kind: "rtp" },
  options: rtcpOptions,
  create(opts) {
    let session: RtcpSession | undefined;
    let detach: (() => void) | undefined;
    let inferred: "send" | "receive" | undefined = opts.direction === "auto" ? undefined : opts.direction;
    const cname = opts.cname ?? randomCname();

    return {
      negotiate(input: Format | undefined): Format {
        return expectFormat(input, ACCEPTS, CHECK);
      },
      async start(ctx: RunContext) {
        let remote = opts.remote ? parseHostPort(opts.remote) : undefined;
        if (!remote && opts.rtp_remote) {
          const rtp = parseHostPort(opts.rtp_remote);
          if (rtp.port >= 65535) throw new Error(`rtp_remote: no port + 1 for RTCP after ${opts.rtp_remote}`);
          remote = { hostname: rtp.hostname, port: rtp.port + 1 };
        }
        const localPort = opts.local_port || (opts.rtp_port ? opts.rtp_port + 1 : 0);
        if (remote) remote.hostname = await resolveHost(remote.hostname);
        const bind = opts.bind ?? (remote?.hostname.includes(":") ? "::" : "0.0.0.0");
        const s = ctx.shared(
          "rtcp:" + opts.session,
          () => {
            return new RtcpSession({
              clock: ctx.clock,
              transport: new UdpRtcpTransport(bind, localPort),
              remote,
              cname,
              minInterval: opts.interval,
              bandwidthKbps: opts.bandwidth,
            });
          },
          (s) => s.close(),
        );
        session = s;
        if (localPort && s.localPort !== localPort) {
          ctx.log.warn(`session ${opts.session} already bound to port ${s.localPort}; local_port ignored`);
        }
        if (remote && s.remote && (s.remote.hostname !== remote.hostname || s.remote.port !== remote.port)) {
          ctx.log.warn(`session ${opts.session} already reports to ${s.remote.hostname}:${s.remote.port}`);
        }
        detach = s.attach({
          get direction() {
            return inferred ?? "send";
          },
          onReport(info) {
            ctx.log.info(describeReport(info));
            ctx.event("rtcp", { ...info, stats: s.stats() });
          },
        });
        s.start();
      },
      process(frame, emit) {
        if (frame.kind === "rtp" && session) {
          const dir = opts.direction === "auto" ? (frame.arrival !== undefined ? "receive" : "send") : opts.direction;
          inferred = dir;
          if (dir === "send") session.onSent(frame);
          else session.onReceived(frame);
        }
        return emit(frame);
      },
      close() {
        detach?.();
        detach = undefined;
      },
      stats() {
        return { direction: inferred ?? opts.direction, session: opts.session, ...(session?.stats() ?? {}) };
      },
    };
  },
});

export default rtcp;
