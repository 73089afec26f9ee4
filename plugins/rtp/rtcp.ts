/**
 * `rtcp`: RTCP reporting (RFC 3550 section 6) as a pass-through stage on rtp frames.
 *
 * Put one after the `rtp-packetizer` of a send pipeline (it counts the packets and
 * octets sent and maps RTP timestamps to NTP time for sender reports) and/or one
 * after the `rtp-depacketizer` of a receive pipeline (it computes loss, extended
 * highest sequence number and interarrival jitter from arrival times). The
 * stages of one session (a call's send and receive chains, or the chains of one
 * pipeline file) with the same `session` id share one {@linkcode RtcpSession}
 * and its socket, so a call sends one compound report (SR with a report block,
 * or RR, plus SDES CNAME) per interval, receives the peer's, and sends BYE when
 * the call's session closes.
 *
 * The first stage to start creates the RTCP session with its socket options
 * (`local_port` or `rtp_port`, `bind`, `remote` or `rtp_remote`, `interval`,
 * `cname`, `bandwidth`); give the stages of a session the same ones. The
 * socket comes from the session (`ctx.session.socket`), so the RTCP port of a
 * call's port pair is the one used.
 *
 * Every report sent or received is logged on one line (`SR sent: packets=…, octets=…`,
 * `RR received: loss=…%, jitter=… ms, rtt=… ms`) and published as the event `rtcp`
 * with the report's fields and the session's statistics; a BYE from the peer is
 * published as `rtcp` with `type: "BYE"`. A compound packet received is one
 * report: only its first SR or RR (or its first BYE) is logged and published.
 * Received reports get at most 10 lines per 10 s (a peer reports every few
 * seconds; a flood would write a line per datagram): beyond, they are counted,
 * and the count is logged as a warning when the next 10 s begin.
 *
 * @example Send and receive pipelines of one call
 * ```json
 * { "use": "rtcp", "local_port": 40001, "remote": "192.0.2.7:30001" }
 * ```
 *
 * @module
 */
import type { Format } from "../../core/frame.ts";
import { expectFormat, type FormatCheck } from "../../core/format_check.ts";
import type { RunContext, TransformStage } from "../../core/stage.ts";
import { type HostPort, parseHostPort, resolveHost } from "../../core/net/address.ts";
import { type MediaStats, ResourceKind } from "../../core/session.ts";
import type { RtcpReportInfo, RtcpSession } from "./rtcp_session.ts";
import { rtcp, type RtcpOptions, rtcpSchema } from "./plugins.ts";
import { lazyModule } from "../../core/lazy.ts";
import { LogRation } from "../../core/log.ts";
import { randomBytes } from "../../core/random.ts";

/** Modules loaded when first used (see `lazyModule`). */
const rtcpSessionModule = lazyModule<typeof import("./rtcp_session.ts")>(new URL("./rtcp_session.ts", import.meta.url));

/**
 * The RTCP sessions of a media session, by the stage's `session` id: the send
 * and receive `rtcp` stages of a call share one, which sends BYE when the
 * call's session closes.
 */
export const RTCP_SESSIONS: ResourceKind<RtcpSession> = new ResourceKind("RTCP session", (s) => s.close());

export { rtcp, type RtcpOptions };

/** Options of the `rtcp` stage (its zod schema; the plugin's `options`). */
export const rtcpOptions: ReturnType<typeof rtcpSchema> = rtcpSchema();

/** A random RFC 7022 style CNAME: 96 random bits in base64. */
function randomCname(): string {
  return btoa(String.fromCharCode(...randomBytes(new Uint8Array(12))));
}

const pct = (x: number | undefined) => (x === undefined ? "n/a" : `${(x * 100).toFixed(1)}%`);
const ms = (x: number | undefined) => (x === undefined ? "n/a" : `${x.toFixed(1)} ms`);

/** Copies what RTCP knows into the session's media statistics. */
function publishMedia(media: MediaStats, stats: Record<string, unknown>): void {
  const num = (v: unknown) => (typeof v === "number" && Number.isFinite(v) ? v : undefined);
  media.jitterMs = num(stats.jitter_ms) ?? media.jitterMs;
  media.lost = Math.max(media.lost, num(stats.lost) ?? 0);
  media.rttMs = num(stats.rtt_ms) ?? media.rttMs;
  media.remoteLost = num(stats.remote_lost) ?? media.remoteLost;
  media.remoteJitterMs = num(stats.remote_jitter_ms) ?? media.remoteJitterMs;
}

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

/** Lines for received reports (and BYEs) one stage logs per {@linkcode REPORT_LOG_WINDOW_MS} at most. */
const REPORT_LOG_LINES = 10;
const REPORT_LOG_WINDOW_MS = 10_000;

/**
 * Rations the log lines of received reports: a peer sends a report every few seconds (RFC 3550 §6.2: 5 s at least on
 * average), but a flood of RTCP datagrams would write a line each. Reports we send are ours and always logged.
 */
const reportLines = (): LogRation =>
  new LogRation(
    REPORT_LOG_LINES,
    REPORT_LOG_WINDOW_MS,
    (n) =>
      `${n} more RTCP packets received were not logged (more than ${REPORT_LOG_LINES} in ` +
      `${REPORT_LOG_WINDOW_MS / 1000} s: a peer reports every few seconds)`,
  );

/** What the rtcp stage takes (and passes on): RTP packets, as declared. */
const ACCEPTS: Format[] = rtcp.accepts!;
const CHECK: FormatCheck = {
  stage: "rtcp",
  advice: () => "put it after an rtp-packetizer (send) or an rtp-depacketizer (receive)",
};

/** Creates an `rtcp` stage from validated options: the plugin's `create`, loaded when first used. */
export function createRtcp(opts: RtcpOptions): TransformStage {
  let session: RtcpSession | undefined;
  let sessionCtx: RunContext | undefined;
  let detach: (() => void) | undefined;
  let inferred: "send" | "receive" | undefined = opts.direction === "auto" ? undefined : opts.direction;
  const cname = opts.cname ?? randomCname();
  const logged = reportLines();

  return {
    negotiate(input: Format | undefined): Format {
      return expectFormat(input, ACCEPTS, CHECK);
    },
    async start(ctx: RunContext) {
      sessionCtx = ctx;
      let remote: HostPort | undefined = opts.remote ? parseHostPort(opts.remote) : undefined;
      if (!remote && opts.rtp_remote) {
        const rtp = parseHostPort(opts.rtp_remote);
        if (rtp.port >= 65535) throw new Error(`rtp_remote: no port + 1 for RTCP after ${opts.rtp_remote}`);
        remote = { hostname: rtp.hostname, port: rtp.port + 1 };
      }
      const localPort = opts.local_port || (opts.rtp_port ? opts.rtp_port + 1 : 0);
      if (remote) remote.hostname = await resolveHost(remote.hostname);
      const bind = opts.bind ?? (remote?.hostname.includes(":") ? "::" : "0.0.0.0");
      // rtp.js (through rtcp_session.ts) is loaded here, by the first RTCP stage, not at start-up.
      const { RtcpSession } = await rtcpSessionModule();
      const s = ctx.session.resource(RTCP_SESSIONS, opts.session, () =>
        new RtcpSession({
          clock: ctx.clock,
          socket: ctx.session.socket(bind, localPort),
          remote,
          cname,
          minInterval: opts.interval,
          bandwidthKbps: opts.bandwidth,
          held: () => ctx.session.sendsHeld,
        }));
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
          if (ctx.log.enabled("info") && (info.direction === "sent" || logged.allow(ctx.clock.now(), ctx.log))) {
            ctx.log.info(describeReport(info)); // formatted only when it is written
          }
          const stats = s.stats();
          publishMedia(ctx.session.stats, stats);
          ctx.event("rtcp", { ...info, stats });
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
      if (session && sessionCtx) publishMedia(sessionCtx.session.stats, session.stats());
    },
    stats() {
      return { direction: inferred ?? opts.direction, session: opts.session, ...(session?.stats() ?? {}) };
    },
  };
}

export default rtcp;
