/**
 * Helpers for the SIP relay tests: a relay (registrar + B2BUA) on a virtual
 * clock and an in-memory network, and phones (SIP user agents with an RTP
 * socket) that may sit behind a simulated NAT: their Contact, Via and SDP
 * name a private address, while their datagrams come from the public one they
 * are bound on, from another port than their SDP says.
 *
 * @module
 */
import { VirtualClock } from "../core/clock.ts";
import { Logger, MemoryOutput } from "../core/log.ts";
import type { HostPort } from "../core/net/address.ts";
import type { DatagramSocket } from "../core/net/datagram.ts";
import { MemoryNetwork } from "../core/net/memory.ts";
import { SipRelay, type SipRelayOptions } from "../plugins/b2bua/mod.ts";
import {
  createAnswer,
  createOffer,
  digestAuthenticator,
  type IncomingCall,
  parseMessage,
  type Registration,
  type SipMessage,
  SipUserAgent,
} from "../plugins/sip/mod.ts";
import { codecs } from "./registry_util.ts";

/** The relay's address in these tests. */
export const RELAY_IP = "10.0.0.9";

/** A relay on a virtual clock and a memory network, started. */
export interface RelayWorld {
  /** The clock. */
  clock: VirtualClock;
  /** The network. */
  net: MemoryNetwork;
  /** Log lines of the relay. */
  logs: MemoryOutput;
  /** The relay. */
  relay: SipRelay;
  /** The relay's SIP address. */
  sip: HostPort;
}

/** Starts a relay at 10.0.0.9:5060 with the defaults of the control plugin, changed by `over`. */
export function relayWorld(over: Partial<SipRelayOptions> = {}): RelayWorld {
  const clock = new VirtualClock();
  const net = new MemoryNetwork({ clock, latencyMs: 1 });
  const logs = new MemoryOutput();
  const log = new Logger({ level: "debug", outputs: [logs] });
  const relay = new SipRelay({
    clock,
    log,
    net,
    bind: RELAY_IP,
    port: 5060,
    codecs,
    maxClients: 100,
    maxContacts: 4,
    minExpires: 60,
    maxExpires: 3600,
    defaultExpires: 3600,
    retryAfter: 30,
    maxCalls: 50,
    ringTimeout: 60,
    mediaTimeout: 0,
    rtpPorts: [20000, 20099],
    latch: "signalling",
    maxPacket: 1500,
    nat: true,
    ...over,
  });
  relay.start();
  return { clock, net, logs, relay, sip: { hostname: RELAY_IP, port: 5060 } };
}

/** Options of a {@linkcode Phone}. */
export interface PhoneOptions {
  /** User name (and AOR user). */
  user: string;
  /** The address the phone is bound on (behind NAT: the NAT's public address). */
  ip: string;
  /** SIP port (default 5060). */
  sipPort?: number;
  /** Password for Digest challenges. */
  password?: string;
  /** Behind NAT: the private address its Contact, Via and SDP name (unreachable on this network). */
  privateIp?: string;
  /** Port its RTP socket is bound on (default 30000; RTCP on the next one). */
  rtpPort?: number;
  /** Port its SDP names (default `rtpPort`; behind NAT the mapped port differs). */
  sdpPort?: number;
  /** Codecs it offers and accepts (default PCMU, PCMA). */
  codecs?: string[];
}

/** One datagram a phone received. */
export interface Got {
  /** Bytes. */
  data: Uint8Array;
  /** Sender. */
  from: HostPort;
}

/** A SIP phone for the tests: a user agent, an RTP/RTCP socket pair, and what it received. */
export class Phone {
  /** Its user agent. */
  readonly ua: SipUserAgent;
  /** Its RTP socket. */
  readonly rtp: DatagramSocket;
  /** Its RTCP socket. */
  readonly rtcp: DatagramSocket;
  /** RTP datagrams received. */
  readonly gotRtp: Got[] = [];
  /** RTCP datagrams received. */
  readonly gotRtcp: Got[] = [];
  /** SIP messages received (parsed). */
  readonly sip: SipMessage[] = [];
  /** Incoming calls. */
  readonly incoming: IncomingCall[] = [];
  readonly #o: PhoneOptions;
  readonly #world: RelayWorld;

  /**
   * Creates the phone on the world's network.
   * @param world the relay world
   * @param o who and where
   */
  constructor(world: RelayWorld, o: PhoneOptions) {
    this.#o = o;
    this.#world = world;
    const { net, clock } = world;
    this.ua = new SipUserAgent({
      transport: net.bind(o.ip, o.sipPort ?? 5060),
      clock,
      userName: o.user,
      overload: false,
      ...(o.privateIp ? { contactHost: o.privateIp } : {}),
      ...(o.password ? { authenticator: digestAuthenticator({ username: o.user, password: o.password }) } : {}),
      trace: (e) => {
        if (e.direction !== "received") return;
        try {
          this.sip.push(parseMessage(e.data));
        } catch { /* not SIP */ }
      },
    });
    this.ua.onInvite((call) => this.incoming.push(call));
    const port = o.rtpPort ?? 30000;
    this.rtp = net.bind(o.ip, port);
    this.rtcp = net.bind(o.ip, port + 1);
    this.rtp.listen((data, from) => void this.gotRtp.push({ data, from }));
    this.rtcp.listen((data, from) => void this.gotRtcp.push({ data, from }));
  }

  /** The user. */
  get user(): string {
    return this.#o.user;
  }

  /** Its address-of-record at the relay. */
  get aor(): string {
    return `sip:${this.#o.user}@${RELAY_IP}`;
  }

  /** Registers at the relay (rejects with the RegistrationError). */
  register(expires = 600): Promise<Registration> {
    return this.ua.register({ registrar: `sip:${RELAY_IP}:5060`, aor: this.aor, expires });
  }

  /** Its SDP offer: the private address and SDP port behind NAT. */
  offer(codecList = this.#o.codecs ?? ["PCMU", "PCMA"]): string {
    return createOffer({
      address: this.#o.privateIp ?? this.#o.ip,
      port: this.#o.sdpPort ?? this.#o.rtpPort ?? 30000,
      registry: codecs,
      codecs: codecList,
    });
  }

  /** Its SDP answer to `offer`. */
  answer(offer: string): string {
    return createAnswer(offer, {
      address: this.#o.privateIp ?? this.#o.ip,
      port: this.#o.sdpPort ?? this.#o.rtpPort ?? 30000,
      registry: codecs,
      codecs: this.#o.codecs ?? ["PCMU", "PCMA"],
    });
  }

  /** Calls `user` through the relay. */
  call(user: string, sdp = this.offer()): ReturnType<SipUserAgent["invite"]> {
    return this.ua.invite(`sip:${user}@${RELAY_IP}:5060`, { sdp });
  }

  /** SIP responses received to `method` with `status`. */
  responses(method: string, status?: number): SipMessage[] {
    return this.sip.filter((m) =>
      m.kind === "response" && m.headers.get("CSeq")?.endsWith(` ${method}`) &&
      (status === undefined || m.status === status)
    );
  }

  /** SIP requests received with `method`. */
  requests(method: string): SipMessage[] {
    return this.sip.filter((m) => m.kind === "request" && m.method === method);
  }

  /** Closes the user agent and sockets. */
  async close(): Promise<void> {
    await this.ua.close();
    await this.rtp.close();
    await this.rtcp.close();
    void this.#world;
  }
}

/** An RTP packet: version 2, payload type `pt`, sequence `seq`, timestamp `seq * 160`, SSRC, 160 payload bytes. */
export function rtpPacket(pt: number, seq: number, ssrc: number, fill = seq & 0xff): Uint8Array {
  const p = new Uint8Array(12 + 160);
  const v = new DataView(p.buffer);
  p[0] = 0x80;
  p[1] = pt & 0x7f;
  v.setUint16(2, seq & 0xffff);
  v.setUint32(4, (seq * 160) >>> 0);
  v.setUint32(8, ssrc >>> 0);
  p.fill(fill, 12);
  return p;
}

/** An RTCP receiver report (empty), version 2. */
export function rtcpPacket(ssrc: number): Uint8Array {
  const p = new Uint8Array(8);
  p[0] = 0x80;
  p[1] = 201;
  new DataView(p.buffer).setUint16(2, 1);
  new DataView(p.buffer).setUint32(4, ssrc >>> 0);
  return p;
}

/** Registers each phone in turn, each REGISTER answered before the next. */
export async function registerAll(world: RelayWorld, ...phones: Phone[]): Promise<void> {
  for (const p of phones) {
    const r = p.register();
    await run(world, 20);
    await r;
  }
}

/** Advances virtual time by `ms`, letting promises settle every `step` ms. */
export function run(world: RelayWorld, ms: number, step = 10): Promise<void> {
  return world.clock.advanceAsync(ms, step);
}
