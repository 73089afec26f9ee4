/**
 * The `sip` control plugin: places or answers calls with the SIP user agent,
 * negotiates media with SDP, and for each call fills the pipeline file's chain
 * templates with what was negotiated, starts them, and stops them (sinks
 * finalize) when the call ends.
 *
 * Template variables it provides: `call.id` (the Call-ID, sanitized so it is
 * safe in a file name), `call.n`, `call.from`, `local.bind`, `local.address`,
 * `local.rtp_port`, `local.rtcp_port`, `remote.address`, `remote.rtp`,
 * `remote.rtcp`, `remote.rtp_port`, `remote.rtcp_port`, `codec`, `payloadType`,
 * `ptime`, `dtmf.payloadType` (RFC 4733 telephone-event, 0 when not negotiated).
 *
 * @module
 */
import type { z } from "zod";
import type { Clock, Timer } from "../../core/clock.ts";
import type { Variables } from "../../core/config.ts";
import { type ControlContext, type Controller, type ControlResult, defineControl } from "../../core/control.ts";
import type { Logger } from "../../core/log.ts";
import { sanitizeFileComponent } from "../../core/paths.ts";
import type { Pipeline, PipelineResult } from "../../core/pipeline.ts";
import { formatHostPort } from "../../core/net/address.ts";
import { parsePortRange, PortAllocator, type PortPair } from "../../core/net/ports.ts";
import { type MediaStats, newMediaStats, Session } from "../../core/session.ts";
import { createAnswer, createOffer, type NegotiatedAudio, SdpError } from "./sdp.ts";
import {
  type Authenticator,
  type Call,
  CallFailedError,
  digestAuthenticator,
  formatTraceEvent,
  type IncomingCall,
  localAddressFacing,
  parseUri,
  RegistrationError,
  type RegistrationKeeper,
  SipUserAgent,
} from "./mod.ts";

import {
  SIP_CONTROL_DESCRIPTION,
  SIP_VARIABLES,
  sipControlOptions as options,
  sipExampleCalls,
} from "./control_options.ts";

type Options = z.output<typeof options>;

export { SIP_VARIABLES };

/** Summary of one finished call. */
export interface CallSummary {
  /** Call-ID as sent on the wire. */
  callId: string;
  /** Who ended the call and why. */
  endedBy: string;
  /** Reason text. */
  reason: string;
  /** Seconds from answer to end (0 when never answered). */
  duration: number;
  /** RTP packets sent. */
  packetsSent: number;
  /** RTP packets received. */
  packetsReceived: number;
  /** Packets lost (receive side). */
  lost: number;
  /** Interarrival jitter, ms (receive side, RFC 3550). */
  jitterMs: number;
  /** True when the call was answered. */
  answered: boolean;
  /** Pipeline failure, if any. */
  error?: string;
}

/** A call summary's media figures, from the call session's statistics. */
export function mediaFigures(
  m: MediaStats,
): Pick<CallSummary, "packetsSent" | "packetsReceived" | "lost" | "jitterMs"> {
  return {
    packetsSent: m.packetsSent,
    packetsReceived: m.packetsReceived,
    lost: m.lost,
    jitterMs: Math.round(m.jitterMs * 100) / 100,
  };
}

/** What the controller keeps per call. */
interface CallState {
  /** The call's media, once ports are allocated. */
  media?: CallMedia;
  /** Clock time of the answer. */
  answeredAt?: number;
  /** Resolves when the pipelines have been built and started (or failed to). */
  starting?: Promise<void>;
  /** Why we hung up, when we did. */
  why?: string;
  /** A media failure, if any. */
  error?: string;
  /** True once a `hangup_on` chain reached its end (the caller's file was sent). */
  sent?: boolean;
  /** Packet time of what we send, ms (once media is negotiated). */
  ptime?: number;
  /** RTP packets the caller's file makes, when its source knows its length (set when the call is finished). */
  total?: number;
}

/** One call's media: its session (port pair, sockets, RTCP, statistics), its pipelines, and their teardown. */
class CallMedia {
  readonly pipelines: Pipeline[] = [];
  #stopped: Promise<PipelineResult[]> | undefined;

  constructor(readonly session: Session) {}

  /** The call's RTP/RTCP port pair. */
  get pair(): PortPair {
    return this.session.ports!;
  }

  stop(): Promise<PipelineResult[]> {
    this.#stopped ??= (async () => {
      // Receive chains drain (the jitter buffer's last frames reach the recording or the speaker); chains fed
      // from files stop at once (nothing more is sent to a peer that has hung up).
      const results = await Promise.all(this.pipelines.map((p) => p.liveSource ? p.end() : p.stop()));
      await this.session.close();
      return results;
    })();
    return this.#stopped;
  }
}

class SipController implements Controller {
  readonly #o: Options;
  readonly #ctx: ControlContext;
  readonly #log: Logger;
  readonly #rtpLog: Logger;
  readonly #clock: Clock;
  /** Names of the codecs we offer and accept, as registered, in preference order. */
  readonly #codecs: string[];
  readonly #ports: PortAllocator;
  #ua!: SipUserAgent;
  /** The password (from `password` or `password_env`), when there is one. Never logged. */
  readonly #password?: string;
  /** Our address-of-record, with a registrar or when given. */
  readonly #aor?: string;
  #keeper?: RegistrationKeeper;
  #callN = 0;
  #sessions = 0;
  #active = new Map<Call, CallState>();
  /** BYE/CANCEL transactions in progress: the UA must not close before they end (retransmissions). */
  readonly #hangups = new Set<Promise<void>>();
  /** The last `keep_summaries` finished calls (every one is also logged). */
  readonly summaries: CallSummary[] = [];

  constructor(o: Options, ctx: ControlContext) {
    this.#o = o;
    this.#ctx = ctx;
    this.#log = ctx.log.child("SIP");
    this.#rtpLog = ctx.log.child("RTP");
    this.#clock = ctx.clock;
    this.#codecs = codecList(o.codecs, ctx);
    this.#ports = new PortAllocator(ctx.net, parsePortRange(o.rtp_ports));
    for (const t of o.hangup_on) {
      if (!ctx.templates.includes(t)) {
        throw new Error(
          `control.hangup_on names "${t}", but the file has no such chain (chains: ${ctx.templates.join(", ")})`,
        );
      }
    }
    if (o.role === "caller" && !o.to) {
      throw new Error("control.to: the caller needs a SIP URI to call (--set to=sip:user@host:port)");
    }
    if (o.password && o.password_env) {
      throw new Error("control.password and control.password_env are both set: give the password one way only");
    }
    const password = o.password || (o.password_env ? Deno.env.get(o.password_env) : undefined);
    if (password) this.#password = password;
    if (o.aor) this.#aor = o.aor;
    else if (o.registrar) {
      let host;
      try {
        host = parseUri(/^sips?:/i.test(o.registrar.trim()) ? o.registrar.trim() : `sip:${o.registrar.trim()}`).host;
      } catch (e) {
        throw new Error(
          `control.registrar "${o.registrar}" is not a SIP URI (${errText(e)}): use e.g. sip:pbx.example.com`,
        );
      }
      this.#aor = `sip:${o.user}@${host.includes(":") ? `[${host}]` : host}`;
    }
  }

  /** The user name we authenticate as. */
  get #authUser(): string {
    return this.#o.auth_user || this.#o.user;
  }

  /** A hint for a 401/403/407 that ended a registration or a call. */
  #authHint(status: number | undefined): string {
    if (status !== 401 && status !== 403 && status !== 407) return "";
    if (!this.#password) {
      const where = this.#o.password_env
        ? `the environment variable ${this.#o.password_env} is not set`
        : "no password";
      return ` (the server asks for credentials, but ${where}: set password_env or password)`;
    }
    const at = this.#aor ? this.#aor.replace(/^sips?:[^@]*@/i, "") : "";
    return ` (wrong password for ${this.#authUser}${at ? `@${at}` : ""}?)`;
  }

  /** Registers (with a registrar); resolves with a failure result, or undefined once registered. */
  async #register(): Promise<ControlResult | undefined> {
    const o = this.#o;
    if (!o.registrar) return undefined;
    if (!this.#password && o.password_env) {
      this.#log.warn(`${o.password_env} is not set: challenges from the registrar will not be answered`);
    }
    let keeper;
    try {
      keeper = this.#ua.keepRegistered({ registrar: o.registrar, aor: this.#aor!, expires: o.register_expires });
    } catch (e) {
      return { code: 2, reason: `cannot register: ${errText(e)}` };
    }
    this.#keeper = keeper;
    const { promise: aborted, resolve: abort } = Promise.withResolvers<"aborted">();
    const onAbort = () => abort("aborted");
    if (this.#ctx.signal.aborted) onAbort();
    this.#ctx.signal.addEventListener("abort", onAbort, { once: true });
    try {
      const r = await Promise.race([keeper.ready, aborted]);
      if (r === "aborted") return { code: 1, reason: "interrupted while registering" };
      this.#log.info(`registered as ${r.aor} (contact ${r.contact}) at ${r.registrar} for ${r.expires} s`);
      return undefined;
    } catch (e) {
      await keeper.stop({ unregister: false });
      this.#keeper = undefined;
      if (e instanceof RegistrationError && e.status !== undefined) {
        return {
          code: 1,
          reason: `registration failed: ${e.status} ${e.response!.reason}${this.#authHint(e.status)}`,
        };
      }
      const why = e instanceof RegistrationError ? "no response" : errText(e);
      return {
        code: 1,
        reason: `registration failed: ${why} from ${o.registrar} (is the registrar running and reachable?)`,
      };
    } finally {
      this.#ctx.signal.removeEventListener("abort", onAbort);
    }
  }

  stats(): unknown {
    return {
      active: [...this.#active.keys()].map((c) => ({ callId: c.callId, state: c.state, direction: c.direction })),
      finished: this.summaries,
    };
  }

  async run(): Promise<ControlResult> {
    try {
      this.#ua = new SipUserAgent({
        net: this.#ctx.net,
        hostname: this.#o.bind,
        port: this.#o.port,
        clock: this.#clock,
        log: this.#ctx.log,
        userName: this.#o.user,
        timers: { T1: this.#o.t1_ms, T2: this.#o.t2_ms, T4: this.#o.t4_ms },
        ...this.#sipIdentity(),
        resolveNames: this.#o.resolve_names,
        overload: {
          lagMs: this.#o.overload_lag_ms,
          maxTransactions: this.#o.max_transactions,
          maxCalls: this.#o.role === "callee" ? this.#o.max_calls : undefined,
        },
      });
    } catch (e) {
      if (e instanceof TypeError) return { code: 2, reason: errText(e) };
      return { code: 1, reason: `cannot listen for SIP on ${this.#o.bind}:${this.#o.port}: ${errText(e)}` };
    }
    const a = this.#ua.localAddress;
    this.#log.info(`listening on udp ${formatHostPort({ hostname: a.hostname, port: a.port })}`);
    try {
      const failed = await this.#register();
      if (failed) return failed;
      return this.#o.role === "caller" ? await this.#runCaller() : await this.#runCallee();
    } finally {
      await Promise.all([...this.#active.values()].map((s) => s.media?.stop()));
      await Promise.allSettled([...this.#hangups]);
      // Remove our binding (REGISTER with Expires: 0) before going away; when interrupted, wait 5 s at most.
      if (this.#keeper) {
        const unregistered = this.#keeper.stop();
        if (this.#ctx.signal.aborted) await Promise.race([unregistered, this.#clock.sleep(5000)]);
        else await unregistered;
      }
      // Stay reachable a moment so that retransmissions caused by a lost final message (a BYE whose 200 was
      // lost, a 486 whose ACK was lost) are still answered, unless we are being interrupted.
      if (this.#o.linger > 0 && !this.#ctx.signal.aborted) {
        await this.#clock.sleep(this.#o.linger * 1000, this.#ctx.signal).catch(() => {});
      }
      await this.#ua.close();
    }
  }

  /** The user agent options for credentials, outbound proxy, address-of-record and trace. */
  #sipIdentity(): {
    authenticator?: Authenticator;
    outboundProxy?: string;
    aor?: string;
    trace?: (e: Parameters<typeof formatTraceEvent>[0]) => void;
  } {
    const o = this.#o;
    const trace = this.#ctx.trace;
    return {
      ...(this.#password !== undefined
        ? {
          authenticator: digestAuthenticator(
            { username: this.#authUser, password: this.#password, ...(o.realm ? { realm: o.realm } : {}) },
            { log: this.#ctx.log.child("SIP") },
          ),
        }
        : {}),
      ...(o.outbound_proxy ? { outboundProxy: o.outbound_proxy } : {}),
      ...(this.#aor ? { aor: this.#aor } : {}),
      ...(trace ? { trace: (e) => trace(formatTraceEvent(e)) } : {}),
    };
  }

  // ---- media -------------------------------------------------------------------------------

  /** A session for a new call, with its RTP/RTCP port pair bound; and the address to put in our SDP. */
  #allocate(peerHost: string): { media: CallMedia; pair: PortPair; address: string } {
    const pair = this.#ports.pair(this.#o.bind);
    const id = `media ${++this.#sessions}`;
    const session = new Session({ id, clock: this.#clock, log: this.#ctx.log, net: this.#ctx.net, ports: pair });
    return { media: new CallMedia(session), pair, address: localAddressFacing(this.#o.bind, peerHost) };
  }

  #variables(call: Call, pair: PortPair, address: string, m: NegotiatedAudio, n: number): Variables {
    const remoteHost = m.remoteAddress;
    const from = /sips?:([^@;>:]+)@/i.exec(call.remoteUri)?.[1] ?? "anonymous";
    return {
      "call.id": sanitizeFileComponent(call.callId),
      "call.n": n,
      "call.from": sanitizeFileComponent(from),
      "local.bind": this.#o.bind,
      "local.address": address,
      "local.rtp_port": pair.rtpPort,
      "local.rtcp_port": pair.rtcpPort,
      "remote.address": remoteHost,
      "remote.rtp": formatHostPort({ hostname: remoteHost, port: m.remotePort }),
      "remote.rtcp": formatHostPort({ hostname: remoteHost, port: m.remoteRtcpPort }),
      "remote.rtp_port": m.remotePort,
      "remote.rtcp_port": m.remoteRtcpPort,
      "codec": m.codec,
      "payloadType": m.payloadType,
      "ptime": m.ptime,
      "dtmf.payloadType": this.#o.dtmf ? m.dtmf?.payloadType ?? 0 : 0,
    };
  }

  /** Builds every chain template for the call, then starts them all. Throws (after cleanup) on a build error. */
  async #startMedia(call: Call, media: CallMedia, vars: Variables): Promise<void> {
    const n = vars["call.n"];
    const state = this.#active.get(call);
    if (state) state.ptime = Number(vars.ptime);
    try {
      for (const t of this.#ctx.templates) {
        media.pipelines.push(await this.#ctx.buildPipeline(t, vars, `${t}#${n}`, media.session));
      }
    } catch (e) {
      await media.stop();
      throw e;
    }
    if (call.state === "ended") {
      // The call ended while its chains were being built: never start them.
      await media.stop();
      return;
    }
    const m = vars;
    const dtmf = m["dtmf.payloadType"] ? `, DTMF PT ${m["dtmf.payloadType"]}` : "";
    this.#log.info(
      `media: ${m.codec} (PT ${m.payloadType}, ptime ${m.ptime} ms)${dtmf}, local ${m["local.address"]}:${
        m["local.rtp_port"]
      }, remote ${m["remote.rtp"]}`,
      { call: call.callId },
    );
    for (const p of media.pipelines) {
      const template = p.name.replace(/#\d+$/, "");
      let timedOut = false;
      p.on("ended", (ev) => {
        const r = ev.detail as PipelineResult;
        if (r.reason === "error") {
          this.#log.error(`pipeline ${p.name} failed: ${r.error?.message}`, { call: call.callId });
          this.#hangup(call, `media failure: ${r.error?.message}`, r.error?.message);
        } else if (r.reason === "eos" && this.#o.hangup_on.includes(template)) {
          const s = this.#active.get(call);
          if (s && !timedOut) s.sent = true;
          this.#hangup(call, timedOut ? "no RTP received within the timeout" : `${template} chain ended`);
        }
      });
      p.on("timeout", () => {
        timedOut = true;
        this.#rtpLog.warn(`nothing received on ${p.name} for the timeout period`, { call: call.callId });
      });
      const sink = p.labels.at(-1);
      if (sink === "udp-sink") this.#rtpLog.info(`streaming to ${m["remote.rtp"]}`, { call: call.callId });
      p.start();
    }
  }

  #hangup(call: Call, why: string, error?: string): void {
    const s = this.#active.get(call);
    if (!s || call.state === "ended") return;
    s.why = why;
    if (error) s.error = error;
    this.#log.info(`hanging up: ${why}`, { call: call.callId });
    const p = call.hangup().catch((e) => this.#log.warn(`hangup failed: ${errText(e)}`, { call: call.callId }));
    this.#hangups.add(p);
    p.finally(() => this.#hangups.delete(p));
  }

  /** Waits for the call to end, stops its media, logs and records the summary. */
  async #finish(call: Call): Promise<CallSummary> {
    const info = await call.ended;
    const s: CallState = this.#active.get(call) ?? {};
    await s.starting;
    const results = s.media ? await s.media.stop() : [];
    this.#active.delete(call);
    const duration = s.answeredAt !== undefined ? (this.#clock.now() - s.answeredAt) / 1000 : 0;
    const why = s.why;
    const summary: CallSummary = {
      callId: call.callId,
      endedBy: info.by,
      reason: why && info.by === "local" ? why : info.reason,
      duration: Math.round(duration * 10) / 10,
      answered: s.answeredAt !== undefined,
      ...(s.media ? mediaFigures(s.media.session.stats) : mediaFigures(newMediaStats())),
      ...(s.error ? { error: s.error } : {}),
    };
    for (const r of results) if (r.reason === "error" && !summary.error) summary.error = r.error?.message;
    this.summaries.push(summary);
    while (this.summaries.length > this.#o.keep_summaries) this.summaries.shift();
    if (s.media && s.ptime) {
      // How many packets the files of the hangup_on chains make (when their sources say how long they are).
      let seconds = 0;
      s.media.pipelines.forEach((p, i) => {
        if (!this.#o.hangup_on.includes(p.name.replace(/#\d+$/, ""))) return;
        const d = results[i]?.stats[0]?.extra?.file_duration_s;
        seconds = typeof d === "number" && seconds >= 0 ? seconds + d : -1;
      });
      if (seconds > 0) s.total = Math.ceil((seconds * 1000) / s.ptime - 1e-9);
    }
    const lossPct = summary.packetsReceived + summary.lost > 0
      ? Math.round((summary.lost / (summary.packetsReceived + summary.lost)) * 1000) / 10
      : 0;
    this.#log.info(
      `call summary: duration=${summary.duration}s sent=${summary.packetsSent} received=${summary.packetsReceived} ` +
        `lost=${summary.lost} (${lossPct}%) jitter=${summary.jitterMs}ms ended by ${summary.endedBy}: ${summary.reason}`,
      { call: call.callId },
    );
    return summary;
  }

  // ---- caller ------------------------------------------------------------------------------

  async #runCaller(): Promise<ControlResult> {
    const o = this.#o;
    // The peer's host (from `sip:user@host:port`, a name-addr, or `[v6]`) chooses the local address we advertise;
    // with an outbound proxy, the proxy is the peer.
    const hostMatch = /^(?:sips?:)?(?:[^@]*@)?(\[[^\]]+\]|[^:;>]+)/i.exec(o.to.replace(/^.*</, ""));
    if (!hostMatch) return { code: 2, reason: `invalid SIP URI "${o.to}": expected sip:user@host[:port]` };
    const target = o.to;
    const proxyHost = o.outbound_proxy
      ? /^(?:sips?:)?(?:[^@]*@)?(\[[^\]]+\]|[^:;>]+)/i.exec(o.outbound_proxy.trim())?.[1]
      : undefined;
    const peerHost = (proxyHost ?? hostMatch[1]).replace(/^\[|\]$/g, "");
    let alloc;
    try {
      alloc = this.#allocate(peerHost);
    } catch (e) {
      return { code: 1, reason: errText(e) };
    }
    const media = alloc.media;
    const offer = createOffer({
      address: alloc.address,
      port: alloc.pair.rtpPort,
      registry: this.#ctx.codecs,
      codecs: this.#codecs,
      ptime: o.ptime,
      telephoneEvent: o.dtmf,
    });
    let call;
    try {
      call = this.#ua.invite(target, { sdp: offer });
    } catch (e) {
      media.stop();
      return { code: 2, reason: `cannot call ${o.to}: ${errText(e)}` };
    }
    const state: CallState = { media };
    this.#active.set(call, state);
    const finished = this.#finish(call);
    let ring: Timer | undefined = this.#clock.after(o.ring_timeout * 1000, () => {
      ring = undefined;
      if (call.state === "calling") {
        // Not even a provisional response: nobody is there (real UDP does not report ICMP port unreachable).
        state.why = `no SIP response from ${formatHostPort(call.destination)} within ${o.ring_timeout} s`;
        this.#log.info(`${state.why}: giving up`, { call: call.callId });
        call.giveUp(state.why);
      } else if (call.state === "proceeding") {
        state.why = `no answer within ${o.ring_timeout} s`;
        this.#log.info(`no answer within ${o.ring_timeout} s: sending CANCEL`, { call: call.callId });
        call.cancel();
      }
    });
    const interrupted = () => this.#ctx.signal.aborted;
    const onAbort = () => {
      state.why = "interrupted";
      if (call.state === "calling") call.giveUp("interrupted");
      else call.hangup().catch(() => {});
    };
    this.#ctx.signal.addEventListener("abort", onAbort, { once: true });
    try {
      try {
        await call.established;
      } catch (e) {
        const summary = await finished;
        if (e instanceof CallFailedError) {
          if (interrupted()) return { code: 130, reason: "interrupted before the call was answered" };
          const why = state.why;
          const status = call.endInfo?.status;
          // Gave up (no response at all): the reason says it all.
          if (why && call.endInfo?.by === "local" && call.endInfo.reason === why) return { code: 1, reason: why };
          const detail = status === 487 ? "CANCEL sent, 487 Request Terminated" : e.info.reason;
          return {
            code: 1,
            reason: why ? `${why} (${detail})` : `call failed: ${summary.reason}${this.#authHint(status)}`,
          };
        }
        throw e;
      } finally {
        ring?.cancel();
      }
      state.answeredAt = this.#clock.now();
      state.starting = this.#startCallMedia(call, media, alloc, ++this.#callN);
      const summary = await finished;
      if (interrupted()) {
        return { code: 130, reason: `interrupted after ${summary.duration} s of call (BYE sent)` };
      }
      if (summary.error) return { code: 1, reason: `call ended on a media failure: ${summary.error}` };
      if (o.hangup_on.length > 0 && !state.sent) {
        const info = call.endInfo!;
        const who = info.by === "remote" ? `by the peer (${info.reason})` : `(${info.reason})`;
        const packets = state.total !== undefined
          ? `${summary.packetsSent} of ${state.total} packets`
          : `${summary.packetsSent} packets sent`;
        return {
          code: 1,
          reason: `call ended ${who} after ${summary.duration} s, before the file was sent (${packets})`,
        };
      }
      return { code: 0 };
    } finally {
      this.#ctx.signal.removeEventListener("abort", onAbort);
    }
  }

  // ---- callee ------------------------------------------------------------------------------

  async #runCallee(): Promise<ControlResult> {
    const o = this.#o;
    let answered = 0;
    let failures = 0;
    let finishedCalls = 0;
    const { promise: done, resolve: finish } = Promise.withResolvers<void>();
    const pending = new Set<Promise<unknown>>();
    const onAbort = () => {
      for (const call of this.#active.keys()) {
        this.#active.get(call)!.why = "interrupted";
        call.hangup().catch(() => {});
      }
      finish();
    };
    this.#ctx.signal.addEventListener("abort", onAbort, { once: true });
    if (this.#ctx.signal.aborted) onAbort();
    this.#ua.onInvite((call) => {
      if (o.calls > 0 && answered >= o.calls) {
        call.reject(486, "Busy Here");
        return;
      }
      if (!call.offer) {
        call.reject(488, "Not Acceptable Here");
        return;
      }
      const n = ++this.#callN;
      answered++;
      const state: CallState = {};
      this.#active.set(call, state);
      const p = this.#answer(call, state, n).then(async () => {
        const summary = await this.#finish(call);
        if (summary.error) failures++;
        finishedCalls++;
        if (o.calls > 0 && finishedCalls >= o.calls) finish();
      }).catch((e) => {
        failures++;
        this.#log.error(`call handling failed: ${errText(e)}`, { call: call.callId });
        // Never leave the caller waiting: an unanswered call is refused, an answered one hung up.
        if (call.state === "incoming" || call.state === "ringing") call.reject(500);
        else call.hangup().catch(() => {});
      }).finally(() => pending.delete(p));
      pending.add(p);
    });
    try {
      await done;
      await Promise.allSettled([...pending]);
      if (failures > 0) return { code: 1, reason: `${failures} call(s) failed; see the log` };
      return { code: 0 };
    } finally {
      this.#ctx.signal.removeEventListener("abort", onAbort);
    }
  }

  async #answer(call: IncomingCall, state: CallState, n: number): Promise<void> {
    const o = this.#o;
    call.ringing();
    if (o.answer_after > 0) {
      await Promise.race([this.#clock.sleep(o.answer_after * 1000), call.ended]);
      if (call.state === "ended") return;
    }
    let alloc;
    try {
      alloc = this.#allocate(call.source.hostname);
    } catch (e) {
      this.#log.error(errText(e), { call: call.callId });
      call.reject(503, "Service Unavailable");
      return;
    }
    let answer: string;
    try {
      answer = createAnswer(call.offer!, {
        address: alloc.address,
        port: alloc.pair.rtpPort,
        registry: this.#ctx.codecs,
        codecs: this.#codecs,
        ptime: o.ptime,
        telephoneEvent: o.dtmf,
      });
    } catch (e) {
      await alloc.media.stop();
      const status = e instanceof SdpError ? e.status : 488;
      this.#log.info(`cannot answer the offer: ${errText(e)}`, { call: call.callId });
      call.reject(status, status === 488 ? "Not Acceptable Here" : undefined);
      return;
    }
    const media = alloc.media;
    state.media = media;
    call.accept(answer);
    state.answeredAt = this.#clock.now();
    state.starting = this.#startCallMedia(call, media, alloc, n);
    await state.starting;
  }

  /** Builds and starts the call's chains; on failure logs it and hangs up. Never rejects. */
  async #startCallMedia(call: Call, media: CallMedia, alloc: { pair: PortPair; address: string }, n: number) {
    try {
      const vars = this.#variables(call, alloc.pair, alloc.address, call.media(this.#ctx.codecs), n);
      await this.#startMedia(call, media, vars);
    } catch (e) {
      this.#log.error(`cannot start media: ${errText(e)}`, { call: call.callId });
      this.#hangup(call, "media could not start", errText(e));
    }
  }
}

/**
 * The codec names of the `codecs` option, as registered (default: every registered codec); throws naming an
 * unknown one and listing the known ones.
 */
function codecList(option: string | undefined, ctx: ControlContext): string[] {
  const known = ctx.codecs.names();
  if (known.length === 0) throw new Error("control.codecs: no codec is registered (register a codec plugin)");
  if (option === undefined) return known;
  const out: string[] = [];
  for (const raw of option.split(",")) {
    const name = raw.trim();
    const info = ctx.codecs.get(name);
    if (!info) {
      throw new Error(`control.codecs: unknown codec "${name}"; known codecs: ${known.join(", ")}`);
    }
    if (!out.includes(info.name)) out.push(info.name);
  }
  return out;
}

function errText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** The `sip` control plugin definition. */
export const sipControl = defineControl({
  name: "sip",
  kind: "control",
  description: SIP_CONTROL_DESCRIPTION,
  variables: SIP_VARIABLES,
  options,
  exampleVariables: (o, ctx) => sipExampleCalls(o, ctx.codecs),
  create: (o, ctx) => new SipController(o, ctx),
});

export default sipControl;
