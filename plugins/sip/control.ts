/**
 * The `sip` control plugin: places or answers calls with the SIP user agent,
 * negotiates media with SDP, and for each call fills the pipeline file's chain
 * templates with what was negotiated, starts them, and stops them (sinks
 * finalize) when the call ends. Roles: `caller` (one call to `to`), `callee`
 * (answers), `server` (answers, and places calls on request).
 *
 * Template variables it provides: `call.id` (the Call-ID, sanitized so it is
 * safe in a file name), `call.n`, `call.from`, `local.bind`, `local.address`,
 * `local.rtp_port`, `local.rtcp_port`, `remote.address`, `remote.rtp`,
 * `remote.rtcp`, `remote.rtp_port`, `remote.rtcp_port`, `codec`, `payloadType`,
 * `ptime`, `dtmf.payloadType` (RFC 4733 telephone-event, 0 when not negotiated), `call.direction`, `call.start`, `date`, `time`.
 *
 * Its calls are offered to the file's services (and to a library user) as a
 * {@linkcode CallService} (`controller.calls`): list, dial (role `server`),
 * answer, reject, hang up, incoming-call deciders, and call events (state
 * changes with SIP status and reason, periodic media `stats`, and a `message`
 * event per SIP message of the call, for a ladder).
 *
 * @module
 */
import type { z } from "zod";
import type { CallEvent, CallInfo, CallPhase, CallService, DialOptions, IncomingDecision } from "../../core/calls.ts";
import type { Clock, Timer } from "../../core/clock.ts";
import type { Variables } from "../../core/config.ts";
import { type ControlContext, type Controller, type ControlResult, defineControl } from "../../core/control.ts";
import type { Logger } from "../../core/log.ts";
import { sanitizeFileComponent } from "../../core/paths.ts";
import { canonicalHost, formatHostPort, ipVersion, isLoopbackAddress, isWildcard } from "../../core/net/address.ts";
import { parsePortRange } from "../../core/net/ports.ts";
import { MemoryNetwork } from "../../core/net/memory.ts";
import { VirtualClock } from "../../core/virtual_clock.ts";
import { type MediaStats, newMediaStats } from "../../core/session.ts";
import {
  type CallMediaHandle,
  InProcessMediaHost,
  type MediaHost,
  type MediaWorkerStats,
  WorkerMediaHost,
} from "./media_host.ts";
import { quote } from "./syntax.ts";
import { createAnswer, createOffer, type NegotiatedAudio, SdpError } from "./sdp.ts";
import {
  type Authenticator,
  type Call,
  CallFailedError,
  digestAuthenticator,
  formatTraceEvent,
  getCallId,
  type IncomingCall,
  localAddressFacing,
  OutgoingCall,
  parseNameAddr,
  parseUri,
  RegistrationError,
  type RegistrationKeeper,
  type SipMessageEvent,
  SipUserAgent,
} from "./mod.ts";
import {
  callTimeVariables,
  checkDecision,
  checkRejectStatus,
  dialTarget,
  DTMF_DIGITS,
  hostPortOf,
  mediaFailureResponse,
  messageDetail,
  uriOf,
} from "./_call_service.ts";

import { SIP_CONTROL_DESCRIPTION, SIP_VARIABLES, sipControlOptionsSchema, sipExampleCalls } from "./control_options.ts";

/** Options of the `sip` control plugin: control_options.ts's schema, built when this module loads (same instance). */
export const sipControlOptions: ReturnType<typeof sipControlOptionsSchema> = sipControlOptionsSchema();

type Options = z.output<typeof sipControlOptions>;

/** The `Retry-After` of a 503 at `max_calls` or without media ports: the user agent's default for its stateless 503s. */
const RETRY_AFTER_S = 5;

/** At most one warning per this many clock ms about calls refused for want of media ports. */
const NO_MEDIA_LOG_MS = 10_000;

/** Our RTP and RTCP ports. */
interface Ports {
  rtpPort: number;
  rtcpPort: number;
}

export { SIP_VARIABLES };

/** Summary of one finished call. */
export interface CallSummary {
  /** Call-ID as sent on the wire. */
  callId: string;
  /** Who ended the call and why. */
  endedBy: string;
  /** Reason text. */
  reason: string;
  /** Seconds from answer to end (the BYE sent or received), without the media's teardown; 0 when never answered. */
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
  /** The files the call's chains wrote (a sink with a `path` in its stats), with their length in seconds. */
  recordings?: CallRecording[];
}

/** A file a call's chain wrote, in its {@linkcode CallSummary}. */
export interface CallRecording {
  /** Where the file is (where it was written to, when it was renamed while recording and could be found). */
  path: string;
  /** Its length, s. */
  seconds: number;
  /** The path it was created at, when the file or its directory was renamed while recording. */
  movedFrom?: string;
  /** True when it was renamed while recording and where it is now is not known (`path` is where it was created). */
  lost?: boolean;
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
  /** The call service's id of the call (the sanitized Call-ID, made unique). */
  id: string;
  /** The Call-ID, as on the wire. */
  callId: string;
  /** The call as the service shows it (kept up to date). */
  info: CallInfo;
  /** Extra template variables for its chains (from `dial`). */
  extra?: Variables;
  /** The call's media, once ports are allocated (in process or in a media worker). */
  media?: CallMediaHandle;
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
  /** An incoming call waiting for its answer: takes the decision (the decider's, answer(), reject()). */
  decide?: (d: IncomingDecision) => void;
  /** An incoming call's answer: resolves once the 200 OK is sent, rejects when it cannot be answered. */
  accepted?: PromiseWithResolvers<void>;
  /** The `max_duration` timer of an answered call. */
  limit?: Timer;
  /** Resolves once the call is finished (media stopped, summary logged, `ended` emitted). */
  finished?: Promise<CallSummary>;
}

class SipController implements Controller {
  readonly #o: Options;
  readonly #ctx: ControlContext;
  readonly #log: Logger;
  readonly #rtpLog: Logger;
  readonly #clock: Clock;
  /** Names of the codecs we offer and accept, as registered, in preference order. */
  readonly #codecs: string[];
  /** Where the calls' media run: in process, or in media workers (created when the control runs). */
  #media: MediaHost;
  /** `rtp_ports`, parsed. */
  readonly #range: [number, number];
  /** How many media workers (`media_workers`, else VOXPIPE_MEDIA_WORKERS, else 0; 0 when the context cannot). */
  readonly #workers: number;
  /** Media workers were asked for, but this run's clock or network cannot be shared with them. */
  readonly #unfit?: { requested: number; why: string };
  #ua!: SipUserAgent;
  /** The password (from `password` or `password_env`), when there is one. Never logged. */
  readonly #password?: string;
  /** Our address-of-record, with a registrar or when given. */
  readonly #aor?: string;
  #keeper?: RegistrationKeeper;
  #callN = 0;
  #sessions = 0;
  #active = new Map<Call, CallState>();
  /**
   * Calls not ended (what `max_calls` counts): one less as soon as a call ends, while `#active` keeps it until its
   * media have stopped.
   */
  #live = 0;
  /** Calls refused for want of media since the last line saying so, and when that line was logged. */
  #noMediaCount = 0;
  #noMediaLoggedAt = -Infinity;
  /** Calls by service id: those not ended and the last `keep_summaries` ended ones. */
  readonly #byId = new Map<string, CallState>();
  /** The calls listed, by Call-ID as on the wire (for `message` events, late ones included). */
  readonly #byCallId = new Map<string, CallState>();
  /** Ended calls still listed, oldest first. */
  readonly #recent: CallState[] = [];
  /** An INVITE seen on the wire before its call was known (its call is tracked right after, synchronously). */
  #unclaimed?: { callId: string; detail: Record<string, unknown>; time: number };
  readonly #listeners = new Set<(e: CallEvent) => void>();
  /** Incoming-call deciders, newest last: the newest decides. */
  readonly #deciders: ((call: CallInfo) => IncomingDecision | Promise<IncomingDecision>)[] = [];
  /** Wall-clock ms (since the Unix epoch) at clock time 0: call times follow the media clock (virtual in tests). */
  readonly #epoch: number;
  /** Resolves once the user agent listens (and has registered); rejects if it cannot. */
  readonly #ready = Promise.withResolvers<void>();
  #running = false;
  #stopped = false;
  /** Calls answered by direction, and calls dialed. */
  readonly #counts = { in: 0, out: 0, dialed: 0 };
  #statsTimer?: Timer;
  /** Calls placed with dial, until finished. */
  readonly #dialed = new Set<Promise<unknown>>();
  /** BYE/CANCEL transactions in progress: the UA must not close before they end (retransmissions). */
  readonly #hangups = new Set<Promise<void>>();
  /** The last `keep_summaries` finished calls (every one is also logged). */
  readonly summaries: CallSummary[] = [];
  /** The calls, for services and library users. */
  readonly calls: CallService;

  constructor(o: Options, ctx: ControlContext) {
    this.#o = o;
    this.#ctx = ctx;
    this.#log = ctx.log.child("SIP");
    this.#rtpLog = ctx.log.child("RTP");
    this.#clock = ctx.clock;
    this.#epoch = Date.now() - ctx.clock.now();
    this.#ready.promise.catch(() => {}); // a failed start is reported by run(); dial() rejects with it
    this.#codecs = codecList(o.codecs, ctx);
    this.#range = parsePortRange(o.rtp_ports);
    const workers = mediaWorkerCount(o.media_workers);
    // Workers run their media on their own real clock and UDP sockets: a run on a virtual clock or an in-memory
    // network (a test, or checking the file) cannot share those with them.
    const unfit = workers === 0
      ? undefined
      : ctx.clock instanceof VirtualClock
      ? "a virtual clock"
      : ctx.net instanceof MemoryNetwork
      ? "an in-memory network"
      : undefined;
    this.#workers = unfit ? 0 : workers;
    if (unfit) this.#unfit = { requested: workers, why: unfit };
    this.#media = this.#inProcessMedia();
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
    this.calls = this.#service();
  }

  /** The user name we authenticate as. */
  get #authUser(): string {
    return this.#o.auth_user || this.#o.user;
  }

  /**
   * The servers the credentials are for (see `DigestCredentials.servers`): the outbound proxy and the registrar; a
   * caller with neither calls its server directly, so the host of `to`. Only entries that parse: a bad one is
   * reported by the option's own check.
   */
  #authServers(): string[] {
    const o = this.#o;
    const named = [o.outbound_proxy, o.registrar, o.registrar ? hostPortOf(o.registrar) ?? "" : ""];
    if (o.role === "caller" && !o.outbound_proxy && !o.registrar) named.push(o.to);
    return named.filter((t) => {
      const v = t.trim();
      if (!v) return false;
      try {
        if (v.includes("<")) parseNameAddr(v);
        else parseUri(/^sips?:/i.test(v) ? v : `sip:${v}`);
        return true;
      } catch {
        return false;
      }
    });
  }

  /** A hint for a 401/403/407 that ended a registration or a call (none when the credentials were not sent). */
  #authHint(status: number | undefined, declined?: string): string {
    if (declined !== undefined) return "";
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
          reason: `registration failed: ${e.status} ${e.response!.reason}${
            e.declined !== undefined ? ` (${e.declined})` : this.#authHint(e.status)
          }`,
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
    const workers: MediaWorkerStats[] | undefined = this.#media.workers();
    return {
      active: [...this.#active.keys()].map((c) => ({ callId: c.callId, state: c.state, direction: c.direction })),
      finished: this.summaries,
      ...(workers ? { mediaWorkers: workers } : {}),
    };
  }

  /** Media on this thread, with the control's clock, network and logger. */
  #inProcessMedia(): MediaHost {
    return new InProcessMediaHost({
      clock: this.#clock,
      net: this.#ctx.net,
      log: this.#ctx.log,
      range: this.#range,
      build: (t, vars, name, session) => this.#ctx.buildPipeline(t, vars, name, session),
    });
  }

  /** With media_workers > 0: starts the workers; a failure to start them is the run's result. */
  async #startWorkers(): Promise<ControlResult | undefined> {
    const unfit = this.#unfit;
    if (unfit) {
      if (this.#o.media_workers !== undefined) {
        return {
          code: 2,
          reason: `control.media_workers: media workers run on their own real clock and UDP sockets, but this run ` +
            `has ${unfit.why}: set media_workers 0`,
        };
      }
      this.#log.warn(
        `VOXPIPE_MEDIA_WORKERS=${unfit.requested} ignored: this run has ${unfit.why}; media run in process`,
      );
      return undefined;
    }
    if (this.#workers === 0) return undefined;
    try {
      this.#media = new WorkerMediaHost({
        count: this.#workers,
        file: this.#ctx.file,
        params: this.#ctx.params,
        range: this.#range,
        log: this.#ctx.log,
      });
      await this.#media.ready();
    } catch (e) {
      await this.#media.close();
      return { code: 1, reason: `cannot start ${this.#workers} media workers: ${errText(e)}` };
    }
    const n = this.#workers;
    this.#log.info(`media of calls in ${n} worker thread${n === 1 ? "" : "s"} (media_workers ${n})`);
    return undefined;
  }

  async run(): Promise<ControlResult> {
    if (this.#running || this.#stopped) throw new Error("the sip control runs once");
    this.#running = true;
    try {
      const result = await this.#run();
      if (result.code !== 0) this.#ready.reject(new Error(`the SIP control could not start: ${result.reason}`));
      return result;
    } catch (e) {
      this.#ready.reject(e);
      throw e;
    } finally {
      this.#running = false;
      this.#stopped = true;
      this.#statsTimer?.cancel();
      this.#statsTimer = undefined;
    }
  }

  async #run(): Promise<ControlResult> {
    // The media workers first: once we listen, an INVITE must find the control ready for it.
    const noWorkers = await this.#startWorkers();
    if (noWorkers) return noWorkers;
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
        dialogToSource: this.#o.dialog_to_source,
        overload: {
          lagMs: this.#o.overload_lag_ms,
          maxTransactions: this.#o.max_transactions,
          maxCalls: this.#o.role !== "caller" && this.#o.busy_status === 503 ? this.#o.max_calls : undefined,
        },
        onMessage: (e) => this.#onMessage(e),
        // An incoming call rings (180) or is refused at once (see #answer): a 100 Trying before that says nothing.
        trying: "when-slow",
      });
    } catch (e) {
      await this.#media.close();
      if (e instanceof TypeError) return { code: 2, reason: errText(e) };
      return { code: 1, reason: `cannot listen for SIP on ${this.#o.bind}:${this.#o.port}: ${errText(e)}` };
    }
    const a = this.#ua.localAddress;
    this.#log.info(`listening on udp ${formatHostPort({ hostname: a.hostname, port: a.port })}`);
    try {
      const failed = await this.#register();
      if (failed) return failed;
      this.#ready.resolve();
      this.#armStats();
      return this.#o.role === "caller" ? await this.#runCaller() : await this.#runCallee();
    } finally {
      this.#stopped = true; // no more dials
      for (const s of this.#active.values()) {
        s.why ??= "interrupted";
        this.#endCall(s);
      }
      await Promise.allSettled([...this.#active.values()].map((s) => s.finished));
      await Promise.allSettled([...this.#dialed]);
      await Promise.all([...this.#active.values()].map((s) => s.media?.stop()));
      await this.#media.close();
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
            {
              username: this.#authUser,
              password: this.#password,
              ...(o.realm ? { realm: o.realm } : {}),
              servers: this.#authServers(),
            },
            {
              log: this.#ctx.log.child("SIP"),
              serversHint: o.role === "caller"
                ? "they go only to the outbound_proxy or the registrar (without either, to the host of `to`): " +
                  "if this next hop is the server of the account, set outbound_proxy or registrar to it"
                : "they go only to the outbound_proxy or the registrar: if this next hop is the server of the " +
                  "account, set outbound_proxy or registrar to it (a number dialed goes to the registrar)",
            },
          ),
        }
        : {}),
      ...(o.outbound_proxy ? { outboundProxy: o.outbound_proxy } : {}),
      ...(this.#aor ? { aor: this.#aor } : {}),
      ...(trace ? { trace: (e) => trace(formatTraceEvent(e)) } : {}),
    };
  }

  // ---- the call service --------------------------------------------------------------------

  /** Wall-clock ms since the Unix epoch, following the media clock. */
  #wall(): number {
    return Math.round(this.#epoch + this.#clock.now());
  }

  /** The peer's host for a target URI (with an outbound proxy, the proxy is the peer), or undefined when invalid. */
  #peerHost(target: string): string | undefined {
    // From `sip:user@host:port`, a name-addr, or `[v6]`: it chooses the local address we advertise.
    const hostMatch = /^(?:sips?:)?(?:[^@]*@)?(\[[^\]]+\]|[^:;>]+)/i.exec(target.replace(/^.*</, ""));
    if (!hostMatch) return undefined;
    const proxyHost = this.#o.outbound_proxy
      ? /^(?:sips?:)?(?:[^@]*@)?(\[[^\]]+\]|[^:;>]+)/i.exec(this.#o.outbound_proxy.trim())?.[1]
      : undefined;
    return (proxyHost ?? hostMatch[1]).replace(/^\[|\]$/g, "");
  }

  /**
   * Registers a new call with the call service: gives it an id (its sanitized Call-ID, made unique), its
   * {@linkcode CallInfo}, and a finisher (media teardown, summary, `ended` event) that runs when it ends. Tells
   * listeners (`incoming` or `dialing`, after the INVITE's `message` event).
   */
  #track(call: Call, init: Partial<CallState>): CallState {
    let id = sanitizeFileComponent(call.callId);
    for (let k = 2; this.#byId.has(id); k++) id = `${sanitizeFileComponent(call.callId)}-${k}`;
    const incoming = call.direction === "incoming";
    const state: CallState = {
      ...init,
      id,
      callId: call.callId,
      info: {
        id,
        direction: incoming ? "in" : "out",
        state: incoming ? "ringing" : "dialing",
        remote: uriOf(call.remoteUri),
        local: uriOf(call.localUri),
        startedAt: this.#wall(),
      },
    };
    if (incoming) {
      state.accepted = Promise.withResolvers<void>();
      state.accepted.promise.catch(() => {});
    }
    this.#active.set(call, state);
    this.#live++;
    void call.ended.then(() => this.#live--);
    this.#byId.set(id, state);
    this.#byCallId.set(call.callId, state);
    const u = this.#unclaimed;
    this.#unclaimed = undefined;
    if (u && u.callId === call.callId) this.#emit(state, "message", u.detail, u.time);
    if (call instanceof OutgoingCall) {
      call.on("progress", (e) => {
        if (e.status === 100) return; // hop by hop: a `message` event shows it
        if (state.info.state === "dialing") state.info.state = "ringing";
        this.#emit(state, "progress", { status: e.status, reason: e.reason, early_media: e.sdp !== undefined });
      });
    }
    state.finished = this.#finish(call, state);
    this.#emit(state, incoming ? "incoming" : "dialing");
    return state;
  }

  /** The call is answered (incoming: 200 sent; outgoing: 200 received): tells listeners, arms max_duration. */
  #answered(call: Call, state: CallState): void {
    state.answeredAt = this.#clock.now();
    this.#counts[state.info.direction]++;
    state.info.state = "answered";
    state.info.answeredAt = this.#wall();
    try {
      state.info.codec = call.media(this.#ctx.codecs).codec;
    } catch { /* no usable SDP: the media start says why */ }
    const max = this.#o.max_duration;
    if (max > 0) {
      state.limit = this.#clock.after(max * 1000, () => this.#hangup(call, `max_duration (${max} s) reached`));
    }
    this.#emit(state, "answered", { status: 200, ...(state.info.codec ? { codec: state.info.codec } : {}) });
  }

  /** Ends a call in whatever way its state requires; resolves when the BYE/CANCEL transaction is done. */
  #endCall(state: CallState, why?: string): Promise<void> {
    const call = this.#callOf(state);
    if (!call || call.state === "ended") return Promise.resolve();
    if (why) state.why ??= why;
    if (call instanceof OutgoingCall && (call.state === "calling" || call.state === "proceeding")) {
      // Ends now for us; the CANCEL goes out as soon as the peer has answered provisionally (RFC 3261 §9.1).
      call.giveUp(state.why ?? "cancelled");
      return Promise.resolve();
    }
    if (call.state === "incoming" || call.state === "ringing") {
      state.decide?.({ action: "reject", status: 603, reason: "Decline" });
      if (call.state === "incoming" || call.state === "ringing") (call as IncomingCall).reject(603, "Decline");
      return Promise.resolve();
    }
    const p = call.hangup().catch((e) => this.#log.warn(`hangup failed: ${errText(e)}`, { call: call.callId }));
    this.#hangups.add(p);
    p.finally(() => this.#hangups.delete(p));
    return p;
  }

  #callOf(state: CallState): Call | undefined {
    for (const [call, s] of this.#active) if (s === state) return call;
    return undefined;
  }

  /** A copy of a call's info, with its media statistics so far. */
  #snapshot(state: CallState): CallInfo {
    const stats = state.info.state === "answered" && state.media ? { ...state.media.stats } : state.info.stats;
    return { ...state.info, ...(stats ? { stats } : {}) };
  }

  #emit(state: CallState, type: CallEvent["type"], detail?: Record<string, unknown>, time = this.#wall()): void {
    if (this.#listeners.size === 0) return;
    const event: CallEvent = { type, call: this.#snapshot(state), ...(detail ? { detail } : {}), time };
    for (const l of [...this.#listeners]) {
      try {
        l(event);
      } catch (e) {
        this.#log.error(`call event listener failed on "${type}": ${errText(e)}`, { call: state.id });
      }
    }
  }

  /** An ended call stays listed among the last `keep_summaries` ended ones, without its media (released). */
  #retire(state: CallState): void {
    state.media = undefined;
    state.extra = undefined;
    this.#recent.push(state);
    while (this.#recent.length > this.#o.keep_summaries) {
      const old = this.#recent.shift()!;
      if (this.#byId.get(old.id) === old) this.#byId.delete(old.id);
      if (this.#byCallId.get(old.callId) === old) this.#byCallId.delete(old.callId);
    }
  }

  /** A SIP message sent or received: a `message` event of its call. */
  #onMessage(e: SipMessageEvent): void {
    if (this.#listeners.size === 0) return;
    let callId: string;
    try {
      callId = getCallId(e.message);
    } catch {
      return;
    }
    const state = this.#byCallId.get(callId);
    if (state) {
      this.#emit(state, "message", messageDetail(e));
    } else if (e.message.kind === "request" && e.message.method === "INVITE") {
      // The call is tracked right after this (an incoming call once the INVITE is dispatched, an outgoing one once
      // invite() returns): its first arrow is kept until then.
      this.#unclaimed = { callId, detail: messageDetail(e), time: this.#wall() };
    }
  }

  /** Periodic `stats` events of answered calls, one timer for all of them. */
  #armStats(): void {
    const every = this.#o.stats_interval * 1000;
    if (every <= 0) return;
    const tick = () => {
      this.#statsTimer = this.#clock.after(every, tick);
      if (this.#listeners.size === 0) return;
      for (const state of this.#active.values()) {
        if (state.info.state !== "answered" || !state.media) continue;
        const stats = { ...state.media.stats };
        this.#emit(state, "stats", stats as unknown as Record<string, unknown>);
      }
    };
    this.#statsTimer = this.#clock.after(every, tick);
  }

  #find(id: string): CallState {
    const state = this.#byId.get(id);
    if (!state) throw new Error(`no call "${id}" (calls: ${[...this.#byId.keys()].join(", ") || "none"})`);
    return state;
  }

  /** The call service over this controller's calls. */
  #service(): CallService {
    const workers = () => this.#workers;
    return {
      calls: () => [...this.#byId.values()].map((s) => this.#snapshot(s)),
      call: (id) => {
        const s = this.#byId.get(id);
        return s ? this.#snapshot(s) : undefined;
      },
      dial: (target, opts) => this.#dial(target, opts),
      answer: async (id) => {
        const s = this.#find(id);
        if (s.info.direction !== "in" || !s.decide) throw new Error(this.#notRinging(s, "answer"));
        s.decide({ action: "answer" });
        await s.accepted!.promise;
      },
      reject: (id, status = 486, reason) => {
        try {
          checkRejectStatus(status);
          const s = this.#find(id);
          if (s.info.direction !== "in" || !s.decide) throw new Error(this.#notRinging(s, "reject"));
          s.decide({ action: "reject", status, ...(reason ? { reason } : {}) });
          return Promise.resolve();
        } catch (e) {
          return Promise.reject(e);
        }
      },
      hangup: async (id) => {
        const s = this.#find(id);
        await this.#endCall(s, "hung up by the application");
      },
      sendDtmf: async (id, digits, opts) => {
        if (typeof digits !== "string" || !DTMF_DIGITS.test(digits)) {
          throw new Error(`sendDtmf: expected DTMF digits (0-9, *, #, A-D), got ${JSON.stringify(digits)}`);
        }
        const s = this.#find(id);
        if (s.info.state !== "answered" || !s.media) {
          throw new Error(`sendDtmf: call ${id} is ${s.info.state}; DTMF is sent in an answered call`);
        }
        await null; // a listener of the `answered` event calls this before the media start is set
        await s.starting; // its chains (the dtmf-sender among them) are built and started
        if (!s.media) throw new Error(`sendDtmf: call ${id} has ended`);
        await s.media.sendDtmf(digits, opts ?? {});
      },
      onIncoming: (decide) => {
        if (typeof decide !== "function") throw new TypeError("onIncoming needs a function (call) => decision");
        this.#deciders.push(decide);
        return () => {
          const i = this.#deciders.lastIndexOf(decide);
          if (i >= 0) this.#deciders.splice(i, 1);
        };
      },
      onEvent: (listener) => {
        if (typeof listener !== "function") throw new TypeError("onEvent needs a function (event) => void");
        const l = (e: CallEvent) => listener(e);
        this.#listeners.add(l);
        return () => this.#listeners.delete(l);
      },
      session: (id) => {
        const s = this.#byId.get(id);
        const session = s?.info.state === "answered" ? s.media?.session : undefined;
        return session && !session.closed ? session : undefined;
      },
      get noSessions() {
        const n = workers();
        return n > 0
          ? `the calls' media run in ${n} media workers (media_workers ${n}): their sessions and buses are in ` +
            "other threads; set media_workers 0 for an audio bridge or tap"
          : undefined;
      },
    };
  }

  #notRinging(s: CallState, what: string): string {
    const phase: CallPhase = s.info.state;
    const side = s.info.direction === "in" ? "incoming" : "outgoing";
    return `cannot ${what} call ${s.id}: it is an ${side} call, ${phase}` +
      (s.info.direction === "in" && phase === "ringing" ? " and already being answered or rejected" : "") +
      "; only a ringing incoming call waiting for a decision can be answered or rejected";
  }

  /** Places a call for the call service (role server). */
  async #dial(target: string, opts: DialOptions = {}): Promise<CallInfo> {
    const o = this.#o;
    if (o.role !== "server") {
      throw new Error(`dial: the sip control places calls on request in role "server" (this one is "${o.role}")`);
    }
    if (typeof target !== "string") throw new TypeError("dial: the target must be a string (a SIP URI or a number)");
    const extra: Variables = {};
    for (const [k, v] of Object.entries(opts.variables ?? {})) {
      if (k in SIP_VARIABLES) {
        throw new Error(`dial: variable "${k}" is the sip control's own (${SIP_VARIABLES[k]}); it cannot be set`);
      }
      if (!/^[A-Za-z_][A-Za-z0-9_.]*$/.test(k) || !["string", "number", "boolean"].includes(typeof v)) {
        throw new Error(`dial: variables.${k}: expected a name and a string, number or boolean value`);
      }
      extra[k] = v;
    }
    const ringTimeout = opts.ringTimeout ?? o.ring_timeout;
    if (!(ringTimeout > 0 && ringTimeout <= 3600)) {
      throw new RangeError(`dial: ringTimeout must be 0 < s <= 3600, got ${opts.ringTimeout}`);
    }
    if (this.#stopped) throw new Error("dial: the sip control is not running");
    await this.#ready.promise;
    if (this.#stopped || this.#ctx.signal.aborted) throw new Error("dial: the sip control is stopping");
    if (this.#live >= o.max_calls) {
      throw new Error(`dial: ${this.#live} calls in progress, max_calls is ${o.max_calls}: try again later`);
    }
    const uri = dialTarget(target, {
      registrar: o.registrar ? hostPortOf(o.registrar) : undefined,
      proxy: o.outbound_proxy ? hostPortOf(o.outbound_proxy) : undefined,
    });
    const peerHost = this.#peerHost(uri);
    if (peerHost === undefined) throw new Error(`dial: invalid SIP URI "${uri}": expected sip:user@host[:port]`);
    // Like an INVITE coming in, a call placed is refused before it opens its sockets and recording when the process
    // is near its file-descriptor limit (at EMFILE, Deno can panic and end every call); until it is a call of the user
    // agent it counts in the estimate, so that calls placed together are all counted.
    const slot = this.#ua.placeCall();
    if (typeof slot === "string") throw new Error(`dial: ${slot}`);
    let call: OutgoingCall;
    let alloc: { media: CallMediaHandle; pair: Ports; address: string };
    try {
      alloc = await this.#allocate(peerHost);
      const offer = this.#offer(alloc);
      try {
        call = this.#ua.invite(uri, { sdp: offer });
      } catch (e) {
        await alloc.media.stop();
        throw new Error(`dial: cannot call ${uri}: ${errText(e)}`);
      }
    } finally {
      slot(); // a call of the user agent now (counted as such), or failed
    }
    const media = alloc.media;
    const state = this.#track(call, { media, extra });
    this.#counts.dialed++;
    let ring: Timer | undefined = this.#clock.after(ringTimeout * 1000, () => {
      ring = undefined;
      if (call.state === "calling") {
        state.why = `no SIP response from ${formatHostPort(call.destination)} within ${ringTimeout} s`;
        this.#log.info(`${state.why}: giving up`, { call: call.callId });
        call.giveUp(state.why);
      } else if (call.state === "proceeding") {
        state.why = `no answer within ${ringTimeout} s`;
        this.#log.info(`no answer within ${ringTimeout} s: sending CANCEL`, { call: call.callId });
        call.cancel();
      }
    });
    const n = ++this.#callN;
    const placed = call.established.then(
      () => {
        ring?.cancel();
        this.#answered(call, state);
        state.starting = this.#startCallMedia(call, media, alloc, n);
      },
      () => ring?.cancel(),
    ).then(() => state.finished);
    this.#dialed.add(placed);
    placed.finally(() => this.#dialed.delete(placed));
    return this.#snapshot(state);
  }

  // ---- media -------------------------------------------------------------------------------

  /** The media of a new call, with its RTP/RTCP port pair bound (here or in a worker); and the address for our SDP. */
  async #allocate(peerHost: string): Promise<{ media: CallMediaHandle; pair: Ports; address: string }> {
    const address = localAddressFacing(this.#o.bind, peerHost);
    const media = await this.#media.allocate(this.#o.bind, `media ${++this.#sessions}`);
    return { media, pair: { rtpPort: media.rtpPort, rtcpPort: media.rtcpPort }, address };
  }

  /**
   * A call that got no media (its port pair could not be bound: the range is used up, or the system refused): a
   * warning, at most one line per {@linkcode NO_MEDIA_LOG_MS} with the count of those not logged, so that a flood
   * of INVITEs cannot flood the log.
   */
  #noMedia(why: string, callId: string): void {
    this.#noMediaCount++;
    const now = this.#clock.now();
    if (now - this.#noMediaLoggedAt < NO_MEDIA_LOG_MS) return;
    const more = this.#noMediaCount > 1
      ? ` (${this.#noMediaCount} calls refused for this since the last such line)`
      : "";
    this.#log.warn(`503 Service Unavailable: no media for the call: ${why}${more}`, { call: callId });
    this.#noMediaLoggedAt = now;
    this.#noMediaCount = 0;
  }

  #variables(call: Call, pair: Ports, address: string, m: NegotiatedAudio, n: number): Variables {
    const remoteHost = m.remoteAddress;
    const from = /sips?:([^@;>:]+)@/i.exec(call.remoteUri)?.[1] ?? "anonymous";
    const state = this.#active.get(call);
    const started = state?.info.startedAt ?? this.#wall();
    return {
      ...state?.extra,
      ...callTimeVariables(started),
      "call.direction": call.direction === "incoming" ? "in" : "out",
      "call.incoming": call.direction === "incoming",
      "call.id": state?.id ?? sanitizeFileComponent(call.callId),
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

  /**
   * Builds every chain template for the call, then starts them all. Throws (after cleanup) on a build error. With
   * `holdSends` (an incoming call, started before its 200 OK), nothing they send goes out before `media.answered()`.
   */
  async #startMedia(call: Call, media: CallMediaHandle, vars: Variables, holdSends = false): Promise<void> {
    const n = Number(vars["call.n"]);
    const state = this.#active.get(call);
    if (state) state.ptime = Number(vars.ptime);
    const timedOut = new Set<string>();
    const started = await media.start(
      this.#ctx.templatesFor?.(vars) ?? this.#ctx.templates,
      vars,
      n,
      {
        ended: (chain, reason, error) => {
          if (reason === "error") {
            this.#log.error(`pipeline ${chain.name} failed: ${error}`, { call: call.callId });
            this.#hangup(call, `media failure: ${error}`, error);
          } else if (reason === "eos" && this.#o.hangup_on.includes(chain.template)) {
            const s = this.#active.get(call);
            const timeout = timedOut.has(chain.name);
            if (s && !timeout) s.sent = true;
            this.#hangup(call, timeout ? "no RTP received within the timeout" : `${chain.template} chain ended`);
          }
        },
        timeout: (chain) => {
          timedOut.add(chain.name);
          this.#rtpLog.warn(`nothing received on ${chain.name} for the timeout period`, { call: call.callId });
        },
        lost: (why) => this.#hangup(call, why, why),
        dtmf: (d) => {
          const s = this.#active.get(call);
          if (s) this.#emit(s, "dtmf", { digit: d.digit, durationMs: d.durationMs });
        },
      },
      () => call.state === "ended",
      holdSends,
    );
    if (started.length === 0) return; // the call ended while its chains were being built: never started
    const m = vars;
    const dtmf = m["dtmf.payloadType"] ? `, DTMF PT ${m["dtmf.payloadType"]}` : "";
    const where = media.worker !== undefined ? ` (media worker ${media.worker})` : "";
    this.#log.info(
      `media: ${m.codec} (PT ${m.payloadType}, ptime ${m.ptime} ms)${dtmf}, local ${m["local.address"]}:${
        m["local.rtp_port"]
      }, remote ${m["remote.rtp"]}${where}`,
      { call: call.callId },
    );
    for (const p of started) {
      if (p.sink === "udp-sink") this.#rtpLog.info(`streaming to ${m["remote.rtp"]}`, { call: call.callId });
    }
  }

  #hangup(call: Call, why: string, error?: string): void {
    const s = this.#active.get(call);
    if (!s || call.state === "ended") return;
    s.why = why;
    if (error) s.error = error;
    if (error && (call.state === "incoming" || call.state === "ringing")) {
      // Not answered yet (its chains start before the answer): refused with the failure, not declined.
      const r = mediaFailureResponse(error);
      this.#log.info(`refusing the call (${r.status}): ${why}`, { call: call.callId });
      (call as IncomingCall).reject(r.status, r.reason, r.headers);
      return;
    }
    this.#log.info(`hanging up: ${why}`, { call: call.callId });
    const p = call.hangup().catch((e) => this.#log.warn(`hangup failed: ${errText(e)}`, { call: call.callId }));
    this.#hangups.add(p);
    p.finally(() => this.#hangups.delete(p));
  }

  /** Waits for the call to end, stops its media, logs and records the summary, tells the call service's listeners. */
  async #finish(call: Call, s: CallState): Promise<CallSummary> {
    const info = await call.ended;
    // The call's duration and end time are taken now: its media's teardown (a recording finalized on a slow disk, a
    // sink playing its queue out) is not part of the call.
    const endedAt = this.#clock.now();
    s.limit?.cancel();
    s.decide?.({ action: "reject" }); // nobody waits for a decision any more
    s.accepted?.reject(new Error(`call ${s.id} ended (${info.by}: ${info.reason}) before it was answered`));
    // For the service at once, with its reason (a view taken while the media stops must not show an ended call
    // without one); the ended event follows once the media has stopped.
    s.info.state = "ended";
    s.info.endedAt = this.#wall();
    s.info.reason = `${info.by}: ${s.why && info.by === "local" ? s.why : info.reason}`;
    if (info.status !== undefined) s.info.status = info.status;
    await s.starting;
    const results = s.media ? await s.media.stop() : [];
    this.#active.delete(call);
    const duration = s.answeredAt !== undefined ? (endedAt - s.answeredAt) / 1000 : 0;
    const why = s.why;
    const summary: CallSummary = {
      callId: call.callId,
      endedBy: info.by,
      reason: why && info.by === "local" ? why : info.reason,
      duration: Math.round(duration * 10) / 10,
      answered: s.answeredAt !== undefined,
      ...(s.media ? mediaFigures(s.media.stats) : mediaFigures(newMediaStats())),
      ...(s.error ? { error: s.error } : {}),
    };
    for (const r of results) if (r.reason === "error" && !summary.error) summary.error = r.error;
    const recordings: CallRecording[] = [];
    for (const r of results) {
      const sink = r.stats.at(-1)?.extra;
      if (typeof sink?.path === "string" && typeof sink.duration_s === "number" && sink.created !== false) {
        const rec: CallRecording = { path: sink.path, seconds: Math.round(sink.duration_s * 1000) / 1000 };
        // Renamed while recording (wav-sink checks at the end): where it is now, or that it is not known.
        if (typeof sink.moved_from === "string") rec.movedFrom = sink.moved_from;
        if (sink.moved_to === "unknown") rec.lost = true;
        recordings.push(rec);
      }
    }
    if (recordings.length) summary.recordings = recordings;
    this.summaries.push(summary);
    while (this.summaries.length > this.#o.keep_summaries) this.summaries.shift();
    if (s.media && s.ptime) {
      // How many packets the files of the hangup_on chains make (when their sources say how long they are).
      let seconds = 0;
      results.forEach((r) => {
        if (!this.#o.hangup_on.includes(r.name.replace(/#\d+$/, ""))) return;
        const d = r.stats[0]?.extra?.file_duration_s;
        seconds = typeof d === "number" && seconds >= 0 ? seconds + d : -1;
      });
      if (seconds > 0) s.total = Math.ceil((seconds * 1000) / s.ptime - 1e-9);
    }
    const lossPct = summary.packetsReceived + summary.lost > 0
      ? Math.round((summary.lost / (summary.packetsReceived + summary.lost)) * 1000) / 10
      : 0;
    const files = recordings.map((r) =>
      ` recording=${r.path} (${r.seconds} s${
        r.lost
          ? ", moved while recording: no longer at this path"
          : r.movedFrom !== undefined
          ? `, moved while recording from ${r.movedFrom}`
          : ""
      })`
    ).join("");
    this.#log.info(
      `call summary: duration=${summary.duration}s sent=${summary.packetsSent} received=${summary.packetsReceived} ` +
        `lost=${summary.lost} (${lossPct}%) jitter=${summary.jitterMs}ms ended by ${summary.endedBy}: ${summary.reason}` +
        files,
      { call: call.callId },
    );
    s.info.reason = `${info.by}: ${summary.reason}`;
    if (info.status !== undefined) s.info.status = info.status;
    if (s.media) s.info.stats = { ...s.media.stats };
    this.#retire(s);
    this.#emit(s, "ended", {
      by: info.by,
      reason: summary.reason,
      ...(info.status !== undefined ? { status: info.status } : {}),
      summary,
    });
    return summary;
  }

  // ---- caller ------------------------------------------------------------------------------

  /** The SDP offer of a call we place, on the media address and port pair `alloc` chose. */
  #offer(alloc: { pair: Ports; address: string }): string {
    return createOffer({
      address: alloc.address,
      port: alloc.pair.rtpPort,
      registry: this.#ctx.codecs,
      codecs: this.#codecs,
      ptime: this.#o.ptime,
      telephoneEvent: this.#o.dtmf,
    });
  }

  async #runCaller(): Promise<ControlResult> {
    const o = this.#o;
    // The peer's host (from `sip:user@host:port`, a name-addr, or `[v6]`) chooses the local address we advertise;
    // with an outbound proxy, the proxy is the peer.
    const peerHost = this.#peerHost(o.to);
    if (peerHost === undefined) {
      return { code: 2, reason: `invalid SIP URI "${o.to}": expected sip:user@host[:port]` };
    }
    const target = o.to;
    let alloc;
    try {
      alloc = await this.#allocate(peerHost);
    } catch (e) {
      return { code: 1, reason: errText(e) };
    }
    const media = alloc.media;
    const offer = this.#offer(alloc);
    let call;
    try {
      call = this.#ua.invite(target, { sdp: offer });
    } catch (e) {
      await media.stop();
      return { code: 2, reason: `cannot call ${o.to}: ${errText(e)}` };
    }
    const state = this.#track(call, { media });
    const finished = state.finished!;
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
            reason: why
              ? `${why} (${detail})`
              : `call failed: ${summary.reason}${this.#authHint(status, call.endInfo?.declined)}`,
          };
        }
        throw e;
      } finally {
        ring?.cancel();
      }
      this.#answered(call, state);
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

  // ---- callee, server -----------------------------------------------------------------------

  async #runCallee(): Promise<ControlResult> {
    const o = this.#o;
    let incoming = 0;
    let failures = 0;
    /** Answered incoming calls that have finished (`calls` counts these). */
    let finishedCalls = 0;
    let refused = 0;
    const { promise: done, resolve: finish } = Promise.withResolvers<void>();
    const pending = new Set<Promise<unknown>>();
    const onAbort = () => {
      for (const state of this.#active.values()) {
        state.why = "interrupted";
        this.#endCall(state);
      }
      finish();
    };
    this.#ctx.signal.addEventListener("abort", onAbort, { once: true });
    if (this.#ctx.signal.aborted) onAbort();
    this.#ua.onInvite((call) => {
      // `calls`: only answered calls count (a refused or cancelled INVITE does not).
      if (o.calls > 0 && this.#counts.in >= o.calls) {
        call.reject(486, "Busy Here");
        return;
      }
      if (!call.offer) {
        call.reject(488, "Not Acceptable Here");
        return;
      }
      if (this.#live >= o.max_calls) {
        // With busy_status 503 the user agent refuses most of these before they get here, statelessly; the ones it
        // lets through (its count and ours differ for a moment) get the same answer.
        refused++;
        const busy = o.busy_status;
        this.#log.info(`${this.#live} calls in progress (max_calls): ${busy}`, { call: call.callId });
        if (busy === 503) call.reject(503, "Service Unavailable", [["Retry-After", String(RETRY_AFTER_S)]]);
        else call.reject(486, "Busy Here");
        return;
      }
      const n = ++this.#callN;
      incoming++;
      const state = this.#track(call, {});
      const p = this.#answer(call, state, n).then(async () => {
        const summary = await state.finished!;
        if (summary.error) failures++;
        if (summary.answered) finishedCalls++;
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
      if (o.role === "server") {
        const c = this.#counts;
        this.#log.info(
          `server stopped: ${incoming} incoming calls (${c.in} answered), ${refused} refused at max_calls, ` +
            `${c.dialed} dialed (${c.out} answered), ${failures} failed`,
        );
      }
      if (failures > 0) return { code: 1, reason: `${failures} call(s) failed; see the log` };
      return { code: 0 };
    } finally {
      this.#ctx.signal.removeEventListener("abort", onAbort);
    }
  }

  /**
   * What to do with an incoming call: the newest decider's answer (a `ring` waits for answer() or reject()), or,
   * without a decider, an answer after `answer_after` s. Resolves with the decision, or undefined when the call
   * ended first; an undecided call is refused with 480 after `ring_timeout` s.
   */
  async #decide(call: IncomingCall, state: CallState): Promise<IncomingDecision | undefined> {
    const o = this.#o;
    const decided = Promise.withResolvers<IncomingDecision>();
    state.decide = (d) => {
      state.decide = undefined;
      decided.resolve(d);
    };
    const ended = call.ended.then(() => undefined);
    const decider = this.#deciders.at(-1);
    let timer: Timer | undefined;
    if (decider) {
      timer = this.#clock.after(o.ring_timeout * 1000, () => {
        this.#log.info(`no decision within ring_timeout (${o.ring_timeout} s): 480`, { call: call.callId });
        state.decide?.({ action: "reject", status: 480, reason: "Temporarily Unavailable" });
      });
      (async () => checkDecision(await decider(this.#snapshot(state))))().then(
        (d) => {
          if (d.action !== "ring") state.decide?.(d);
        },
        (e) => {
          this.#log.error(`incoming-call decider failed: ${errText(e)}`, { call: call.callId });
          state.decide?.({ action: "reject", status: 500, reason: "Server Internal Error" });
        },
      );
    } else if (o.answer_after > 0) {
      timer = this.#clock.after(o.answer_after * 1000, () => state.decide?.({ action: "answer" }));
    } else {
      state.decide({ action: "answer" });
    }
    try {
      return await Promise.race([decided.promise, ended]);
    } finally {
      timer?.cancel();
      state.decide = undefined;
    }
  }

  async #answer(call: IncomingCall, state: CallState, n: number): Promise<void> {
    const o = this.#o;
    call.ringing();
    const decision = await this.#decide(call, state);
    if (!decision || call.state === "ended") return;
    if (decision.action === "reject") {
      const status = decision.status ?? 486;
      this.#log.info(`rejected: ${status}${decision.reason ? ` ${decision.reason}` : ""}`, { call: call.callId });
      call.reject(status, decision.reason);
      return;
    }
    let alloc;
    try {
      alloc = await this.#allocate(call.source.hostname);
    } catch (e) {
      this.#noMedia(errText(e), call.callId);
      if (!ended(call)) {
        call.reject(503, "Service Unavailable (no media ports)", [["Retry-After", String(RETRY_AFTER_S)]]);
      }
      return;
    }
    if (ended(call)) {
      // Cancelled while its media was being set up.
      await alloc.media.stop();
      return;
    }
    let answer: string;
    let agreed: NegotiatedAudio;
    try {
      answer = createAnswer(call.offer!, {
        address: alloc.address,
        port: alloc.pair.rtpPort,
        registry: this.#ctx.codecs,
        codecs: this.#codecs,
        ptime: o.ptime,
        telephoneEvent: o.dtmf,
      });
      // What the call's media will read once answered, read now: an offer it cannot use is refused, not answered
      // and then hung up.
      agreed = call.mediaWith(answer, this.#ctx.codecs);
      this.#checkMedia(agreed, call);
    } catch (e) {
      await alloc.media.stop();
      const status = e instanceof SdpError ? e.status : 488;
      const detail = errText(e);
      this.#log.info(`cannot answer the offer: ${status} (${detail})`, { call: call.callId });
      call.reject(status, `${status === 400 ? "Bad Request" : "Not Acceptable Here"} (${detail})`, [
        ["Warning", `399 voxpipe ${quote(detail)}`],
      ]);
      return;
    }
    const media = alloc.media;
    state.media = media;
    // The chains start before the answer: a recording that cannot be created (a stage that cannot start) refuses the
    // INVITE with a final error, where answering first made a call of no time, hung up at once.
    // What they send (a greeting, the console's audio, DTMF) is held until the 200 has been sent: an answerer sends
    // media once it has sent its answer (RFC 3264 §6), and a caller's SDP is only its word until then.
    const starting = this.#startMedia(
      call,
      media,
      this.#variables(call, alloc.pair, alloc.address, agreed, n),
      true,
    );
    state.starting = starting.catch(() => {});
    try {
      await starting;
    } catch (e) {
      if (ended(call)) return;
      const r = mediaFailureResponse(errText(e));
      state.why = `media could not start: ${errText(e)}`;
      state.error = errText(e);
      this.#log.error(`cannot answer: the call's media could not start: ${errText(e)}: ${r.status}`, {
        call: call.callId,
      });
      call.reject(r.status, r.reason, r.headers);
      return;
    }
    if (ended(call)) return; // cancelled while its chains started: #finish stops them
    // What the chains held goes out once the 200 has left: not as soon as it is queued here. A call whose media runs
    // in a media worker sends from another thread, which would otherwise get ahead of this one's socket whenever this
    // thread is late to flush it (the fast UDP path sends at the end of the turn): RTP before the 200 on the wire.
    void call.accept(answer).then((sent) => {
      if (sent) media.answered();
    });
    this.#answered(call, state);
    state.accepted?.resolve();
  }

  /**
   * Throws an {@linkcode SdpError} (488) when the call's chains could not take what was negotiated: a packet time
   * other than a whole 10-60 ms (the RTP stages' range), a peer's address of the other family than the address
   * our RTP sockets are bound to (`bind`; an IPv6 `bind` other than `::` takes IPv6 peers only), or a loopback
   * address from a peer that is not on loopback (where its INVITE came from, or where ours went): our RTP would go to
   * this host's own services.
   */
  #checkMedia(m: NegotiatedAudio, call: Call): void {
    const peer = call instanceof OutgoingCall ? call.destination : (call as IncomingCall).source;
    if (isLoopbackAddress(canonicalHost(m.remoteAddress)) && !isLoopbackAddress(canonicalHost(peer.hostname))) {
      throw new SdpError(
        `the media address ${m.remoteAddress} is a loopback address, the peer ${formatHostPort(peer)} is not`,
        488,
      );
    }
    if (!Number.isInteger(m.ptime) || m.ptime < 10 || m.ptime > 60) {
      throw new SdpError(`a=ptime:${m.ptime}: the packet time must be a whole 10-60 ms`, 488);
    }
    const bound = ipVersion(this.#o.bind);
    if ((bound === 4 && m.ipVersion === 6) || (bound === 6 && m.ipVersion === 4 && !isWildcard(this.#o.bind))) {
      throw new SdpError(
        `the media address ${m.remoteAddress} is IPv${m.ipVersion}, RTP is bound to ${this.#o.bind} (IPv${bound})`,
        488,
      );
    }
  }

  /** Builds and starts the call's chains; on failure logs it and hangs up. Never rejects. */
  async #startCallMedia(call: Call, media: CallMediaHandle, alloc: { pair: Ports; address: string }, n: number) {
    try {
      const agreed = call.media(this.#ctx.codecs);
      if (call instanceof OutgoingCall) this.#checkMedia(agreed, call); // an incoming call's offer was checked before
      const vars = this.#variables(call, alloc.pair, alloc.address, agreed, n);
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

/**
 * How many media workers: the `media_workers` option, else the environment variable VOXPIPE_MEDIA_WORKERS (an
 * integer 0-64), else 0. Throws saying what is wrong with a bad variable.
 */
function mediaWorkerCount(option: number | undefined): number {
  if (option !== undefined) return option;
  let v: string | undefined;
  try {
    v = Deno.env.get("VOXPIPE_MEDIA_WORKERS");
  } catch {
    return 0; // no env permission
  }
  if (v === undefined || v.trim() === "") return 0;
  const n = Number(v.trim());
  if (!Number.isInteger(n) || n < 0 || n > 64) {
    throw new Error(`VOXPIPE_MEDIA_WORKERS: expected an integer 0-64, got "${v}"`);
  }
  return n;
}

/** True once the call has ended (read afresh: it may have ended while we awaited). */
function ended(call: Call): boolean {
  return call.state === "ended";
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
  options: sipControlOptions,
  exampleVariables: (o, ctx) => sipExampleCalls(o, ctx.codecs),
  create: (o, ctx) => new SipController(o, ctx),
});

export default sipControl;
