/**
 * The SIP relay: a registrar and a back-to-back user agent (B2BUA) on one SIP
 * port, with every call's media anchored at the relay.
 *
 * **Calls.** An INVITE from a registered user to another registered user
 * becomes two calls of the relay's user agent: the caller's (leg `a`, the
 * incoming INVITE) and a new INVITE to the callee's freshest registered
 * Contact (leg `b`), sent with the caller's From. Each leg has its own
 * {@linkcode Session} with an RTP/RTCP port pair at the relay; the SDPs are
 * rewritten so that both phones send to the relay (`sdp_relay.ts`), on one
 * codec both accept, and a {@linkcode MediaBridge} forwards their packets
 * (latching to where each phone's media really comes from, `media.ts`).
 *
 * **State is mirrored** leg to leg: the callee's 180 (or 183 with SDP: early
 * media through the relay) rings the caller; its 2xx answers the caller; its
 * failure is passed back with its status (a timeout as 408, an unreachable
 * phone as 480); a BYE from either side hangs up the other; the caller's
 * CANCEL cancels the callee; `ring_timeout` without an answer cancels both
 * (408); with `media_timeout`, a call where neither phone sent anything for
 * that long is hung up on both sides.
 *
 * **Who may call.** The caller must be registered (its From user has a
 * binding); with users configured, its INVITE must also carry credentials of
 * that user (`407` with a challenge otherwise). The callee must be registered
 * (`404` when unknown, `480` for a configured user that is not). Beyond
 * `max_calls` calls, `503` with `Retry-After`.
 *
 * **NAT.** With `nat` (the default), requests to a registered phone go to the
 * address its REGISTER came from, and in-dialog requests to where the phone's
 * messages come from (`SipUserAgentOptions.dialogToSource`); media latches.
 *
 * One log line per event (tag `B2BUA`): INVITE, ringing, answer, refusal,
 * latch, and at the end a summary with the legs' counters.
 *
 * @module
 */
import type { CodecRegistry } from "../../core/codec.ts";
import type { Clock, Timer } from "../../core/clock.ts";
import { type Logger, silentLogger } from "../../core/log.ts";
import { formatHostPort, type HostPort } from "../../core/net/address.ts";
import type { Network } from "../../core/net/datagram.ts";
import { PortAllocator } from "../../core/net/ports.ts";
import type { OpenFiles } from "../../core/open_files.ts";
import { Session } from "../../core/session.ts";
import {
  type CallEndInfo,
  type DatagramTransport,
  type DigestAlgorithm,
  formatNameAddr,
  type IncomingCall,
  localAddressFacing,
  negotiated,
  type NegotiatedAudio,
  type OutgoingCall,
  parseNameAddr,
  parseUri,
  SdpError,
  type SipTracer,
  SipUserAgent,
  type TimerSettings,
} from "../sip/mod.ts";
import { DigestChallenger, type DigestChallengerOptions } from "./digest_server.ts";
import { type LatchPolicy, type LegStats, MediaBridge, MediaLeg } from "./media.ts";
import { blockedLine, blockedReply, Registrar, type RegistrarStats } from "./registrar.ts";
import { type Agreement, calleeOffer, callerAnswer, offeredCodecs } from "./sdp_relay.ts";

/**
 * Descriptors each leg of a relayed call holds: its media port pair (an RTP and an RTCP socket). The relay records
 * nothing, so a relayed call holds 4.
 */
const RELAYED_FILES_PER_LEG = 2;

/** Options of a {@linkcode SipRelay} (times in seconds). */
export interface SipRelayOptions {
  /** Clock of every timer. */
  clock: Clock;
  /** Logger (lines tagged `SIP`, `REGISTRAR`, `B2BUA`). */
  log?: Logger;
  /** Network the SIP socket (unless `transport` is given) and the media ports are bound on. */
  net: Network;
  /** Address of the SIP socket and the media ports. */
  bind: string;
  /** SIP port (0 = any free port). */
  port: number;
  /** A SIP socket to use instead of binding one (tests). */
  transport?: DatagramTransport;
  /** Address to advertise in Contact, Via and SDP (e.g. a public address); default the address facing each peer. */
  publicAddress?: string;
  /** Codecs that exist (the registry's). */
  codecs: CodecRegistry;
  /** Codecs the relay lets through, in no particular order (default: every registered one). */
  allowedCodecs?: string[];
  /** Users and passwords: with them, REGISTER and INVITE need Digest credentials. */
  users?: ReadonlyMap<string, string>;
  /** Digest realm (default `voxpipe`). */
  realm?: string;
  /** Digest algorithms challenged with (default MD5). */
  algorithms?: readonly DigestAlgorithm[];
  /** Seconds a nonce is accepted (default 300). */
  nonceLifetime?: number;
  /**
   * Failed credentials per source address before it is refused, over what window, and for how long (s); the sizes of
   * the Digest checker's tables (nonce counts, sources counted; default 10 000 each).
   */
  authLimits?: Pick<
    DigestChallengerOptions,
    "maxFailures" | "failureWindow" | "blockTime" | "limitLoopback" | "maxSources" | "maxNonces"
  >;
  /** Users registered at once, at most. */
  maxClients: number;
  /** Contacts per user, at most. */
  maxContacts: number;
  /** Shortest registration accepted, s. */
  minExpires: number;
  /** Longest registration granted, s. */
  maxExpires: number;
  /** Registration lifetime when none is asked, s. */
  defaultExpires: number;
  /** `Retry-After` of 503s, s. */
  retryAfter: number;
  /** Relayed calls at once, at most. */
  maxCalls: number;
  /** Seconds a callee may ring before both legs are cancelled. */
  ringTimeout: number;
  /** Seconds without media from either phone after which an answered call is hung up (0 = never). */
  mediaTimeout: number;
  /** Range of the media port pairs. */
  rtpPorts: [number, number];
  /** Latching policy. */
  latch: LatchPolicy;
  /** Largest media datagram forwarded, bytes. */
  maxPacket: number;
  /** Reach registered phones where their messages come from (phones behind NAT). */
  nat: boolean;
  /** Finished calls kept in stats (each is also logged). */
  keepCalls?: number;
  /** SIP message traces. */
  trace?: SipTracer;
  /** SIP timers. */
  timers?: Partial<TimerSettings>;
  /** Counts the process's open files and their limit (default: from `/proc/self`; for tests). */
  openFiles?: () => OpenFiles | undefined;
}

/** One relayed call, as {@linkcode SipRelay.stats} shows it. */
export interface RelayedCallStats {
  /** Call number in this process. */
  n: number;
  /** The caller's user. */
  from: string;
  /** The callee's user. */
  to: string;
  /** `ringing`, `answered` or `ended`. */
  state: "ringing" | "answered" | "ended";
  /** The codec both legs use, once agreed. */
  codec?: string;
  /** Seconds since the INVITE. */
  age_s: number;
  /** Seconds since the answer, once answered. */
  talk_s?: number;
  /** How it ended, once ended. */
  ended?: string;
  /** Leg a (the caller's) and leg b (the callee's). */
  legs: { a: LegStats; b: LegStats };
}

/** What {@linkcode SipRelay.stats} returns. */
export interface SipRelayStats {
  /** The SIP address. */
  sip: string;
  /** The registrar's counters and bindings. */
  registrar: RegistrarStats;
  /** Call counters. */
  calls: {
    /** Calls in progress. */
    active: number;
    /** The limit. */
    max_calls: number;
    /** INVITEs that became relayed calls. */
    relayed: number;
    /** Of which answered. */
    answered: number;
    /** INVITEs refused (not registered, unknown callee, no codec, limit...). */
    refused: number;
    /** Of which with 503 for the call limit. */
    refused_busy: number;
    /** INVITEs (and REGISTERs) challenged or refused for their credentials. */
    auth_failures: number;
    /** INVITEs (and REGISTERs) refused (403) because their source address failed authentication too often. */
    auth_blocked: number;
  };
  /** Calls in progress. */
  active: RelayedCallStats[];
  /** The last finished calls. */
  finished: RelayedCallStats[];
}

/** A relayed call. */
class Relayed {
  b: OutgoingCall | undefined;
  agreement: Agreement | undefined;
  state: "ringing" | "answered" | "ended" = "ringing";
  answeredAt: number | undefined;
  endedAt: number | undefined;
  ended: string | undefined;
  ringTimer: Timer | undefined;
  offerB = "";
  final: RelayedCallStats | undefined;

  constructor(
    readonly n: number,
    readonly from: string,
    readonly to: string,
    readonly a: IncomingCall,
    readonly legA: MediaLeg,
    readonly legB: MediaLeg,
    readonly bridge: MediaBridge,
    readonly codecs: string[],
    readonly startedAt: number,
  ) {}
}

/**
 * The registrar and B2BUA.
 *
 * @example
 * ```ts
 * const relay = new SipRelay({ clock, net: udpNetwork, bind: "0.0.0.0", port: 5060, codecs: registry.codecs,
 *   maxClients: 100, maxContacts: 4, minExpires: 60, maxExpires: 3600, defaultExpires: 3600, retryAfter: 30,
 *   maxCalls: 50, ringTimeout: 60, mediaTimeout: 60, rtpPorts: [20000, 30000], latch: "signalling",
 *   maxPacket: 1500, nat: true, users: new Map([["alice", "secret"], ["bob", "secret2"]]) });
 * relay.start();
 * // ... phones register and call each other ...
 * await relay.close();
 * ```
 */
export class SipRelay {
  readonly #o: SipRelayOptions;
  readonly #clock: Clock;
  readonly #log: Logger;
  readonly #auth: DigestChallenger | undefined;
  readonly #allowed: string[];
  readonly #ports: PortAllocator;
  /** The registrar. */
  readonly registrar: Registrar;
  #ua: SipUserAgent | undefined;
  readonly #calls = new Set<Relayed>();
  readonly #finished: RelayedCallStats[] = [];
  readonly #hangups = new Set<Promise<void>>();
  #n = 0;
  #check: Timer | undefined;
  #closed = false;
  readonly #counts = { relayed: 0, answered: 0, refused: 0, refusedBusy: 0, authFailures: 0, authBlocked: 0 };

  /**
   * Creates the relay (nothing is bound until {@linkcode SipRelay.start}). Throws on options that cannot work.
   * @param opts options
   */
  constructor(opts: SipRelayOptions) {
    this.#o = opts;
    this.#clock = opts.clock;
    this.#log = (opts.log ?? silentLogger).child("B2BUA");
    this.#allowed = (opts.allowedCodecs ?? opts.codecs.list().map((c) => c.name)).map((n) =>
      opts.codecs.require(n, "sip-relay codecs").name
    );
    if (this.#allowed.length === 0) throw new Error("sip-relay: no codec to relay (register a codec plugin)");
    this.#ports = new PortAllocator(opts.net, opts.rtpPorts);
    if (opts.users && opts.users.size > 0) {
      this.#auth = new DigestChallenger({
        realm: opts.realm ?? "voxpipe",
        users: opts.users,
        algorithms: opts.algorithms,
        clock: opts.clock,
        nonceLifetime: opts.nonceLifetime,
        ...opts.authLimits,
      });
    }
    this.registrar = new Registrar({
      clock: opts.clock,
      log: opts.log,
      auth: this.#auth,
      maxClients: opts.maxClients,
      maxContacts: opts.maxContacts,
      minExpires: opts.minExpires,
      maxExpires: opts.maxExpires,
      defaultExpires: opts.defaultExpires,
      retryAfter: opts.retryAfter,
    });
  }

  /** The SIP address (after start). */
  get address(): HostPort {
    const a = this.#ua?.localAddress;
    return a ? { hostname: a.hostname, port: a.port } : { hostname: this.#o.bind, port: this.#o.port };
  }

  /** The relay's user agent (after start), for tests and diagnostics. */
  get userAgent(): SipUserAgent | undefined {
    return this.#ua;
  }

  /** The Digest checker of REGISTERs and INVITEs (undefined without users), for tests and diagnostics. */
  get auth(): DigestChallenger | undefined {
    return this.#auth;
  }

  /** Binds the SIP socket and starts answering. Throws when the port is taken. */
  start(): void {
    const o = this.#o;
    const ua = new SipUserAgent({
      ...(o.transport ? { transport: o.transport } : { net: o.net, hostname: o.bind, port: o.port }),
      clock: o.clock,
      log: o.log,
      userName: "relay",
      ...(o.publicAddress ? { contactHost: o.publicAddress } : {}),
      ...(o.trace ? { trace: o.trace } : {}),
      ...(o.timers ? { timers: o.timers } : {}),
      dialogToSource: o.nat,
      // Our own limit answers first (with our Retry-After); the user agent's is a backstop for both legs. A relayed
      // call is two calls of the user agent (its legs), each holding an RTP and an RTCP socket and no file: 4
      // descriptors in all, not the 2 × 4 of two calls that record.
      overload: {
        maxCalls: 2 * o.maxCalls + 2,
        retryAfter: o.retryAfter,
        filesPerCall: RELAYED_FILES_PER_LEG,
        ...(o.openFiles ? { openFiles: o.openFiles } : {}),
      },
    });
    this.#ua = ua;
    ua.onRegister((r) => this.registrar.handle(r));
    ua.onInvite((call) => this.#onInvite(call));
    if (o.mediaTimeout > 0) this.#armCheck();
    this.#log.info(
      `registrar and B2BUA on udp ${formatHostPort(this.address)}: media ports ${o.rtpPorts.join("-")}, ` +
        `codecs ${this.#allowed.join(", ")}, ${
          this.#auth ? `digest auth (realm "${this.#auth.realm}", ${this.#auth.userCount} users)` : "no auth"
        }, at most ${o.maxClients} clients and ${o.maxCalls} calls`,
    );
  }

  /** Hangs up every call (BYE or CANCEL on both legs), releases the media ports, closes the SIP socket. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#check?.cancel();
    for (const c of [...this.#calls]) this.#hangupBoth(c, "the relay is shutting down");
    // Let the BYE/CANCEL transactions end (their answers are retransmitted otherwise), 5 s at most.
    if (this.#hangups.size > 0) {
      await Promise.race([Promise.allSettled([...this.#hangups]), this.#clock.sleep(5000)]);
    }
    for (const c of [...this.#calls]) await this.#finish(c, "the relay is shutting down");
    this.registrar.close();
    await this.#ua?.close();
    this.#log.info(
      `stopped: ${this.#counts.relayed} calls relayed (${this.#counts.answered} answered), ` +
        `${this.#counts.refused} refused, ${this.registrar.stats().registered} registrations`,
    );
  }

  // ---- calls -----------------------------------------------------------------------------

  /** The address put in a leg's SDP, facing `peer`. */
  #mediaAddress(peer: string): string {
    return this.#o.publicAddress || localAddressFacing(this.#o.bind, peer);
  }

  #refuse(a: IncomingCall, status: number, reason: string, why: string, headers: [string, string][] = []): void {
    this.#counts.refused++;
    this.#log.info(`INVITE from ${formatHostPort(a.source)} refused: ${status} (${why})`);
    a.reject(status, reason, headers);
  }

  #onInvite(a: IncomingCall): void {
    const o = this.#o;
    if (this.#closed) return this.#refuse(a, 503, "Service Unavailable", "shutting down");
    let fromUri, display: string | undefined, toUser: string | undefined;
    try {
      const na = parseNameAddr(a.remoteUri);
      fromUri = na.uri;
      display = na.displayName;
      toUser = parseUri(a.request.uri).user;
    } catch (e) {
      return this.#refuse(a, 400, `Bad Request (${errText(e)})`, errText(e));
    }
    const fromUser = fromUri.user ?? "";
    if (this.#auth) {
      const check = this.#auth.check(a.request, "Proxy-Authorization", a.source.hostname);
      if (!check.ok) {
        if (check.blocked !== undefined && !check.blockStarted) {
          this.#counts.authBlocked++;
          const b = blockedReply(check.blocked);
          a.reject(b.status, b.reason);
          return;
        }
        if (check.user !== undefined) {
          this.#counts.authFailures++;
          this.#log.info(
            `INVITE from ${fromUser || "?"} at ${formatHostPort(a.source)}: credentials of ${check.user} refused ` +
              `(${check.reason})`,
          );
        }
        if (check.blocked !== undefined) {
          this.#counts.authBlocked++;
          this.#log.warn(blockedLine(a.source.hostname, check.blocked));
          const b = blockedReply(check.blocked);
          a.reject(b.status, b.reason);
          return;
        }
        a.reject(407, undefined, this.#auth.challenge("Proxy-Authenticate", check.stale));
        return;
      }
      if (check.user !== fromUser) {
        this.#counts.authFailures++;
        return this.#refuse(a, 403, `Forbidden (authenticated as ${check.user})`, `${check.user} calls as ${fromUser}`);
      }
    }
    if (!fromUser || !this.registrar.lookup(fromUser)) {
      return this.#refuse(a, 403, "Forbidden (register first)", `caller ${fromUser || "(no user)"} not registered`);
    }
    if (!toUser) return this.#refuse(a, 404, "Not Found", "no user in the Request-URI");
    const binding = this.registrar.lookup(toUser);
    if (!binding) {
      const known = this.#auth?.hasUser(toUser) ?? false;
      return known
        ? this.#refuse(a, 480, "Temporarily Unavailable", `${toUser} is not registered`)
        : this.#refuse(a, 404, "Not Found", `no user ${toUser}`);
    }
    if (this.#calls.size >= o.maxCalls) {
      this.#counts.refusedBusy++;
      return this.#refuse(a, 503, "Service Unavailable (too many calls)", `${o.maxCalls} calls in progress`, [[
        "Retry-After",
        String(o.retryAfter),
      ]]);
    }
    if (a.offer === undefined) {
      return this.#refuse(a, 488, "Not Acceptable Here (an SDP offer is required)", "INVITE without SDP");
    }
    let codecs: string[], caller: NegotiatedAudio;
    try {
      codecs = offeredCodecs(a.offer, o.codecs, this.#allowed);
      if (codecs.length === 0) {
        return this.#refuse(
          a,
          488,
          "Not Acceptable Here (no common codec)",
          `no codec of the offer is relayed (${this.#allowed.join(", ")})`,
        );
      }
      caller = negotiated(a.offer, { registry: o.codecs, codecs });
    } catch (e) {
      const status = e instanceof SdpError ? e.status : 400;
      return this.#refuse(a, status, `${status === 400 ? "Bad Request" : "Not Acceptable Here"}`, errText(e));
    }
    const n = ++this.#n;
    let sessA: Session | undefined, sessB: Session | undefined;
    try {
      sessA = new Session({ id: `relay-${n}a`, clock: this.#clock, log: o.log, net: o.net });
      sessA.ports = this.#ports.pair(o.bind);
      sessB = new Session({ id: `relay-${n}b`, clock: this.#clock, log: o.log, net: o.net });
      sessB.ports = this.#ports.pair(o.bind);
    } catch (e) {
      void sessA?.close();
      void sessB?.close();
      return this.#refuse(a, 503, "Service Unavailable (no media ports)", errText(e), [[
        "Retry-After",
        String(o.retryAfter),
      ]]);
    }
    const fields = { call: n };
    const legA = new MediaLeg({
      name: "a",
      session: sessA,
      address: this.#mediaAddress(a.source.hostname),
      signalIp: a.source.hostname,
    });
    legA.setRemote(
      { hostname: caller.remoteAddress, port: caller.remotePort },
      { hostname: caller.remoteAddress, port: caller.remoteRtcpPort },
    );
    const legB = new MediaLeg({
      name: "b",
      session: sessB,
      address: this.#mediaAddress(binding.source.hostname),
      signalIp: binding.source.hostname,
    });
    const bridge = new MediaBridge(legA, legB, {
      now: () => this.#clock.now(),
      log: this.#log,
      fields,
      latch: o.latch,
      maxPacket: o.maxPacket,
    });
    const c = new Relayed(n, fromUser, toUser, a, legA, legB, bridge, codecs, this.#clock.now());
    this.#calls.add(c);
    this.#counts.relayed++;
    c.offerB = calleeOffer({ address: legB.address, port: legB.ports.rtpPort, registry: o.codecs, codecs, caller });
    a.on("ended", (info) => this.#onCallerEnded(c, info));
    this.#log.info(
      `call ${n}: ${fromUser} (${formatHostPort(a.source)}) → ${toUser} at ${binding.contact}` +
        `${o.nat ? ` via ${formatHostPort(binding.source)}` : ""}; offered ${codecs.join(", ")}`,
      fields,
    );
    let b: OutgoingCall;
    try {
      b = this.#ua!.invite(binding.contact, {
        sdp: c.offerB,
        from: formatNameAddr({
          ...(display ? { displayName: display } : {}),
          uri: { ...fromUri, params: {}, headers: {} },
          params: {},
        }),
        ...(o.nat ? { proxy: binding.source } : {}),
      });
    } catch (e) {
      this.#log.info(`call ${n}: cannot call ${binding.contact}: ${errText(e)}`, fields);
      a.reject(480, "Temporarily Unavailable");
      void this.#finish(c, `480 (${errText(e)})`);
      return;
    }
    c.b = b;
    b.on("progress", (p) => this.#onProgress(c, p.status, p.sdp));
    b.on("established", (e) => this.#onAnswered(c, e.sdp));
    b.on("ended", (info) => this.#onCalleeEnded(c, info));
    c.ringTimer = this.#clock.after(o.ringTimeout * 1000, () => {
      if (c.state !== "ringing") return;
      this.#log.info(`call ${n}: no answer within ${o.ringTimeout} s`, fields);
      c.ended = `no answer within ${o.ringTimeout} s`;
      a.reject(408, "Request Timeout (no answer)"); // before the callee's leg ends (see #agree)
      this.#hangup(c.b);
    });
  }

  #onProgress(c: Relayed, status: number, sdp: string | undefined): void {
    const a = c.a;
    if (status === 100 || (a.state !== "incoming" && a.state !== "ringing")) return;
    if (sdp !== undefined && !c.agreement) {
      // Early media: the callee's SDP arrives now; media flows through the relay from here.
      if (!this.#agree(c, sdp)) return;
      this.#log.info(`call ${c.n}: ${status} with SDP, early media (${c.agreement!.codec})`, { call: c.n });
      a.ringing(c.agreement!.callerAnswer);
      return;
    }
    if (a.state === "incoming") {
      this.#log.info(`call ${c.n}: ringing (${status})`, { call: c.n });
      if (c.agreement) a.ringing(c.agreement.callerAnswer);
      else a.ringing();
    }
  }

  /** Reads the callee's SDP and connects the media; false (both legs ended with 488) when it cannot be used. */
  #agree(c: Relayed, sdp: string): boolean {
    const o = this.#o;
    let ag: Agreement;
    try {
      ag = callerAnswer({
        callerOffer: c.a.offer!,
        calleeOffer: c.offerB,
        calleeAnswer: sdp,
        address: c.legA.address,
        port: c.legA.ports.rtpPort,
        registry: o.codecs,
        codecs: c.codecs,
      });
    } catch (e) {
      this.#log.info(`call ${c.n}: unusable SDP from ${c.to}: ${errText(e)}`, { call: c.n });
      c.ended = `488 (${errText(e)})`;
      // The caller first: hanging up an answered callee ends its leg at once, and that would answer the caller 480.
      c.a.reject(488, "Not Acceptable Here");
      this.#hangup(c.b);
      return false;
    }
    c.agreement = ag;
    c.legB.setRemote(
      { hostname: ag.callee.remoteAddress, port: ag.callee.remotePort },
      { hostname: ag.callee.remoteAddress, port: ag.callee.remoteRtcpPort },
    );
    c.legA.setRemote(
      { hostname: ag.caller.remoteAddress, port: ag.caller.remotePort },
      { hostname: ag.caller.remoteAddress, port: ag.caller.remoteRtcpPort },
    );
    c.bridge.connect({
      aToB: ag.callerToCallee,
      bToA: ag.calleeToCaller,
      dtmfAToB: ag.dtmfCallerToCallee,
      dtmfBToA: ag.dtmfCalleeToCaller,
    });
    return true;
  }

  #onAnswered(c: Relayed, sdp: string | undefined): void {
    const a = c.a;
    if (a.state !== "incoming" && a.state !== "ringing") {
      // The caller gave up meanwhile: the callee's answer is hung up at once.
      this.#hangup(c.b);
      return;
    }
    if (sdp === undefined && !c.agreement) {
      this.#log.info(`call ${c.n}: ${c.to} answered without SDP`, { call: c.n });
      c.ended = "488 (answer without SDP)";
      a.reject(488, "Not Acceptable Here"); // before the callee's leg ends (see #agree)
      this.#hangup(c.b);
      return;
    }
    if (!c.agreement && !this.#agree(c, sdp!)) return;
    c.ringTimer?.cancel();
    c.state = "answered";
    c.answeredAt = this.#clock.now();
    this.#counts.answered++;
    const ag = c.agreement!;
    a.accept(ag.callerAnswer);
    const leg = (l: MediaLeg) => `${l.name} ${formatHostPort({ hostname: l.address, port: l.ports.rtpPort })}`;
    this.#log.info(
      `call ${c.n}: answered by ${c.to}, ${ag.codec}; ${leg(c.legA)} ↔ ${
        formatHostPort({ hostname: ag.caller.remoteAddress, port: ag.caller.remotePort })
      }, ${leg(c.legB)} ↔ ${formatHostPort({ hostname: ag.callee.remoteAddress, port: ag.callee.remotePort })}`,
      { call: c.n },
    );
  }

  #onCalleeEnded(c: Relayed, info: CallEndInfo): void {
    const a = c.a;
    if (a.state === "incoming" || a.state === "ringing") {
      const [status, reason] = passBack(info);
      c.ended ??= `${c.to}: ${info.reason}`;
      this.#log.info(`call ${c.n}: ${c.to} did not answer: ${info.reason}; ${status} sent back`, { call: c.n });
      a.reject(status, reason);
    } else if (a.state !== "ended") {
      c.ended ??= `${info.by === "remote" ? "BYE from" : "ended by"} ${c.to} (${info.reason})`;
      this.#hangup(a);
    }
    void this.#finish(c, c.ended ?? info.reason);
  }

  #onCallerEnded(c: Relayed, info: CallEndInfo): void {
    if (info.by === "remote") c.ended ??= info.reason === "CANCEL" ? `CANCEL from ${c.from}` : `BYE from ${c.from}`;
    else if (info.by === "timeout") c.ended ??= `${c.from}: ${info.reason}`;
    this.#hangup(c.b);
    void this.#finish(c, c.ended ?? info.reason);
  }

  /** Hangs up a leg if it is still up (BYE, CANCEL or a decline, as its state requires). */
  #hangup(call: IncomingCall | OutgoingCall | undefined): void {
    if (!call || call.state === "ended") return;
    const p = call.hangup().catch(() => {});
    this.#hangups.add(p);
    void p.finally(() => this.#hangups.delete(p));
  }

  #hangupBoth(c: Relayed, why: string): void {
    c.ended ??= why;
    if (c.a.state === "incoming" || c.a.state === "ringing") c.a.reject(503, "Service Unavailable");
    else this.#hangup(c.a);
    this.#hangup(c.b);
  }

  /** Ends the call's media at once (the first leg that ends ends it), logs its summary, forgets it. */
  async #finish(c: Relayed, how: string): Promise<void> {
    if (!this.#calls.delete(c)) return;
    c.ringTimer?.cancel();
    c.bridge.close();
    c.state = "ended";
    c.endedAt = this.#clock.now();
    c.ended = how;
    const s = this.#callStats(c);
    c.final = s;
    this.#finished.push(s);
    while (this.#finished.length > (this.#o.keepCalls ?? 100)) this.#finished.shift();
    const l = (x: LegStats) =>
      `rtp in ${x.rtp.packets_in} out ${x.rtp.packets_out}, rtcp in ${x.rtcp.packets_in} out ${x.rtcp.packets_out}` +
      `${x.latched_rtp ? `, latched ${x.latched_rtp}` : ""}, dropped ${dropText(x.dropped)}`;
    this.#log.info(
      `call ${c.n} ${c.from} → ${c.to} ended: ${how}` +
        `${s.talk_s !== undefined ? ` after ${s.talk_s} s` : ""}${s.codec ? `, ${s.codec}` : ""}; ` +
        `a: ${l(s.legs.a)}; b: ${l(s.legs.b)}`,
      { call: c.n },
    );
    await Promise.all([c.legA.session.close(), c.legB.session.close()]);
  }

  #callStats(c: Relayed): RelayedCallStats {
    const now = c.endedAt ?? this.#clock.now();
    const out: RelayedCallStats = {
      n: c.n,
      from: c.from,
      to: c.to,
      state: c.state,
      age_s: round1((now - c.startedAt) / 1000),
      legs: { a: c.legA.stats(), b: c.legB.stats() },
    };
    if (c.agreement) out.codec = c.agreement.codec;
    if (c.answeredAt !== undefined) out.talk_s = round1((now - c.answeredAt) / 1000);
    if (c.ended !== undefined && c.state === "ended") out.ended = c.ended;
    return out;
  }

  /**
   * Hangs up answered calls where neither phone sent media for `media_timeout`. It wakes when the first of them
   * is due (media heard since only puts that later) or, with no call answered, `media_timeout` from now: no call
   * answered later can be due before that.
   */
  #armCheck(after = this.#o.mediaTimeout * 1000): void {
    this.#check = this.#clock.after(after, () => {
      if (this.#closed) return;
      const now = this.#clock.now();
      const limit = this.#o.mediaTimeout * 1000;
      let next = now + limit;
      for (const c of [...this.#calls]) {
        if (c.state !== "answered") continue;
        const heard = Math.max(c.legA.lastHeard, c.legB.lastHeard, c.answeredAt!);
        if (now - heard < limit) {
          next = Math.min(next, heard + limit);
          continue;
        }
        this.#log.info(`call ${c.n}: no media from either phone for ${this.#o.mediaTimeout} s, hanging up`, {
          call: c.n,
        });
        this.#hangupBoth(c, `no media for ${this.#o.mediaTimeout} s`);
        void this.#finish(c, c.ended!);
      }
      this.#armCheck(Math.max(1, next - now));
    });
  }

  // ---- status ----------------------------------------------------------------------------

  /** Registrar, calls in progress with their legs' counters, and the last finished calls. */
  stats(): SipRelayStats {
    const c = this.#counts;
    return {
      sip: formatHostPort(this.address),
      registrar: this.registrar.stats(),
      calls: {
        active: this.#calls.size,
        max_calls: this.#o.maxCalls,
        relayed: c.relayed,
        answered: c.answered,
        refused: c.refused,
        refused_busy: c.refusedBusy,
        auth_failures: c.authFailures + this.registrar.stats().auth_failures,
        auth_blocked: c.authBlocked + this.registrar.stats().auth_blocked,
      },
      active: [...this.#calls].map((x) => this.#callStats(x)),
      finished: [...this.#finished],
    };
  }
}

/** The status and reason passed back to the caller when the callee's leg failed. */
function passBack(info: CallEndInfo): [number, string | undefined] {
  if (info.by === "timeout") return [408, "Request Timeout"];
  if (info.by === "error") return [480, "Temporarily Unavailable"];
  const s = info.status;
  if (s === undefined || s < 300 || s > 699) return [480, "Temporarily Unavailable"];
  // A challenge from the callee's phone is not the caller's to answer.
  if (s === 401 || s === 407) return [403, "Forbidden (the callee asked for credentials)"];
  const m = /^\d{3} (.+)$/.exec(info.reason);
  return [s, m ? m[1] : undefined];
}

/** `0`, or the total with its non-zero reasons: `13 (invalid 12, not_ready 1)`. */
function dropText(d: LegStats["dropped"]): string {
  const parts = Object.entries(d).filter(([, v]) => v > 0);
  const total = parts.reduce((p, [, v]) => p + v, 0);
  return total === 0 ? "0" : `${total} (${parts.map(([k, v]) => `${k} ${v}`).join(", ")})`;
}

function round1(x: number): number {
  return Math.round(x * 10) / 10;
}

function errText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
