/**
 * Media anchored at the relay: each call leg ({@linkcode MediaLeg}) has its
 * own session with an RTP/RTCP port pair at the relay, and a
 * {@linkcode MediaBridge} forwards what one leg's phone sends to the other's,
 * packet for packet (no decoding: both legs agreed on the codec; a payload
 * type number that differs between the legs is rewritten, one byte).
 *
 * **Latching (symmetric RTP).** A phone behind NAT writes its private address
 * in its SDP, but its packets arrive from the NAT's public address and port.
 * So each leg sends to where its phone's packets come from: the first valid
 * RTP (and, separately, RTCP) packet from an acceptable source latches the
 * leg to that source. Until then the leg sends to the SDP address only when
 * it has the IP of the leg's SIP messages (an SDP names any address it likes:
 * the relay's own loopback, `0.0.0.0`, a multicast group, a third party), and
 * else sends nothing. With `latch: "signalling"` (the default) an acceptable
 * source has the IP of the leg's SIP messages or of its SDP (the SDP's not
 * when it is loopback and the SIP messages do not come from loopback; an SDP
 * naming an unspecified, multicast or broadcast address never gets here:
 * `readAudio` refuses it); with `"any"`, any source. Packets from
 * another source than the latched one are dropped and counted, unless the
 * latched source has been silent for {@linkcode RELATCH_AFTER_MS} (a NAT that
 * changed its mapping): then the new acceptable source takes over.
 *
 * **No amplification.** One datagram in, at most one out, never larger; only
 * to the other leg's latched address, or its SDP address when that is the
 * IP its SIP messages come from; nothing is sent back to a
 * source; datagrams that are not RTP/RTCP version 2 are dropped; sends
 * waiting on a socket are bounded.
 *
 * **Counters** per leg (RTP and RTCP in and out, and drops by reason) are
 * kept here and in the leg's `session.stats` (`packetsReceived`,
 * `packetsSent`, `foreignDropped`...). A latch is logged once and published
 * on the leg's session as a `latched` event.
 *
 * @module
 */
import { canonicalHost, formatHostPort, type HostPort, isLoopbackAddress } from "../../core/net/address.ts";
import type { DatagramSocket, SendListener } from "../../core/net/datagram.ts";
import type { PortPair } from "../../core/net/ports.ts";
import type { Logger } from "../../core/log.ts";
import type { Session } from "../../core/session.ts";

/** A latched source silent this long may be replaced by another acceptable source. */
export const RELATCH_AFTER_MS = 2000;

/** How a leg picks the source it latches to: the IP of its SIP messages or SDP, or any. */
export type LatchPolicy = "signalling" | "any";

/** Counters of one direction pair (RTP or RTCP) of a leg. */
export interface PathStats {
  /** Datagrams accepted from the leg's phone. */
  packets_in: number;
  /** Bytes of those. */
  bytes_in: number;
  /** Datagrams sent to the leg's phone (forwarded from the other leg). */
  packets_out: number;
  /** Bytes of those. */
  bytes_out: number;
}

/** What {@linkcode MediaLeg.stats} returns. */
export interface LegStats {
  /** The relay's RTP address of this leg, as put in the SDP this leg's phone got. */
  relay: string;
  /** Where the phone's SDP said to send RTP (once known). */
  sdp?: string;
  /** The RTP source the leg latched to (once latched). */
  latched_rtp?: string;
  /** The RTCP source the leg latched to (once latched). */
  latched_rtcp?: string;
  /** RTP counters. */
  rtp: PathStats;
  /** RTCP counters. */
  rtcp: PathStats;
  /** Datagrams received and not forwarded, by reason. */
  dropped: {
    /** From another source than the latched one (or, before latching, an unacceptable one). */
    foreign: number;
    /** Not RTP/RTCP version 2, or too short. */
    invalid: number;
    /**
     * The other leg could not take it yet: its SDP not known, the call not bridged, or its phone not heard yet
     * while its SDP names another IP than its SIP messages'.
     */
    not_ready: number;
    /** Larger than the relay's `max_packet`. */
    oversize: number;
    /** The other leg's socket had too many sends waiting. */
    backlog: number;
    /** The send failed. */
    send_errors: number;
  };
}

/** One direction pair (RTP or RTCP) of a leg: its socket, addresses and counters. */
class Path {
  sdp: HostPort | undefined;
  latched: HostPort | undefined;
  lastIn = -Infinity;
  packetsIn = 0;
  bytesIn = 0;
  packetsOut = 0;
  bytesOut = 0;
  readonly listener: SendListener;

  constructor(readonly leg: MediaLeg, readonly kind: "RTP" | "RTCP", readonly socket: DatagramSocket) {
    this.listener = {
      sent: () => {},
      failed: () => {
        leg.drops.send_errors++;
      },
    };
  }

  /** Where datagrams to the phone go: the latched source, else the SDP address when it is the signalling IP. */
  get destination(): HostPort | undefined {
    if (this.latched) return this.latched;
    const sdp = this.sdp;
    return sdp !== undefined && sdp.hostname === this.leg.signalIp ? sdp : undefined;
  }

  get stats(): PathStats {
    return {
      packets_in: this.packetsIn,
      bytes_in: this.bytesIn,
      packets_out: this.packetsOut,
      bytes_out: this.bytesOut,
    };
  }
}

/** Options of a {@linkcode MediaLeg}. */
export interface MediaLegOptions {
  /** `a` (the caller's leg) or `b` (the callee's); for logs. */
  name: string;
  /** The leg's session, holding its port pair (it closes them). */
  session: Session;
  /** The address put in this leg's SDP (what its phone sends to). */
  address: string;
  /** The IP the leg's SIP messages come from. */
  signalIp: string;
}

/** One call leg's media at the relay: its session, port pair, peer addresses, latching and counters. */
export class MediaLeg {
  /** `a` or `b`. */
  readonly name: string;
  /** The leg's session (its port pair, statistics, events). */
  readonly session: Session;
  /** Its port pair. */
  readonly ports: PortPair;
  /** The address put in this leg's SDP. */
  readonly address: string;
  /** The IP the leg's SIP messages come from. */
  signalIp: string;
  /** @internal */
  readonly rtp: Path;
  /** @internal */
  readonly rtcp: Path;
  /** @internal Drops by reason. */
  readonly drops = { foreign: 0, invalid: 0, not_ready: 0, oversize: 0, backlog: 0, send_errors: 0 };

  /**
   * Creates the leg on its session's port pair.
   * @param opts name, session (with `ports` set), SDP address, signalling IP
   */
  constructor(opts: MediaLegOptions) {
    const ports = opts.session.ports;
    if (!ports) throw new Error(`media leg ${opts.name}: its session has no port pair`);
    this.name = opts.name;
    this.session = opts.session;
    this.ports = ports;
    this.address = opts.address;
    this.signalIp = canonicalHost(opts.signalIp);
    this.rtp = new Path(this, "RTP", ports.rtp);
    this.rtcp = new Path(this, "RTCP", ports.rtcp);
  }

  /** Where the phone's SDP says to send RTP and RTCP. */
  setRemote(rtp: HostPort, rtcp: HostPort): void {
    this.rtp.sdp = { hostname: canonicalHost(rtp.hostname), port: rtp.port };
    this.rtcp.sdp = { hostname: canonicalHost(rtcp.hostname), port: rtcp.port };
  }

  /** When the phone last sent RTP or RTCP (clock ms; -Infinity when never). */
  get lastHeard(): number {
    return Math.max(this.rtp.lastIn, this.rtcp.lastIn);
  }

  /**
   * Where RTP to the phone goes now: the latched source, else the SDP address when it has the IP of the phone's SIP
   * messages, else nowhere yet.
   */
  get rtpDestination(): HostPort | undefined {
    return this.rtp.destination;
  }

  /** Counters and addresses. */
  stats(): LegStats {
    const out: LegStats = {
      relay: formatHostPort({ hostname: this.address, port: this.ports.rtpPort }),
      rtp: this.rtp.stats,
      rtcp: this.rtcp.stats,
      dropped: { ...this.drops },
    };
    if (this.rtp.sdp) out.sdp = formatHostPort(this.rtp.sdp);
    if (this.rtp.latched) out.latched_rtp = formatHostPort(this.rtp.latched);
    if (this.rtcp.latched) out.latched_rtcp = formatHostPort(this.rtcp.latched);
    return out;
  }
}

/** Options of a {@linkcode MediaBridge}. */
export interface MediaBridgeOptions {
  /** Clock ms, for latching and silence. */
  now: () => number;
  /** Logger for latch events (one line each). */
  log: Logger;
  /** Log fields (e.g. the call). */
  fields?: Record<string, string | number>;
  /** Latching policy. */
  latch: LatchPolicy;
  /** Largest datagram forwarded, bytes. */
  maxPacket: number;
  /** Sends waiting on one socket, at most (default 256). */
  maxBacklog?: number;
}

/**
 * Forwards RTP and RTCP between two legs. Listening starts at construction
 * (packets latch and are counted at once); forwarding starts with
 * {@linkcode MediaBridge.connect}, once both legs' SDPs are known.
 *
 * @example
 * ```ts
 * const bridge = new MediaBridge(legA, legB, { now: () => clock.now(), log, latch: "signalling", maxPacket: 1500 });
 * legA.setRemote(aRtp, aRtcp); legB.setRemote(bRtp, bRtcp);
 * bridge.connect({ aToB: [0, 0], bToA: [0, 0] });
 * ```
 */
export class MediaBridge {
  readonly #a: MediaLeg;
  readonly #b: MediaLeg;
  readonly #o: MediaBridgeOptions;
  readonly #maxBacklog: number;
  readonly #stops: (() => void)[] = [];
  #connected = false;
  /** Payload type rewrites: [from, to] per direction (audio, then telephone-event), only where the numbers differ. */
  #aToB: [number, number][] = [];
  #bToA: [number, number][] = [];

  /**
   * Starts listening on both legs' sockets.
   * @param a the caller's leg
   * @param b the callee's leg
   * @param opts clock, log, latching, limits
   */
  constructor(a: MediaLeg, b: MediaLeg, opts: MediaBridgeOptions) {
    this.#a = a;
    this.#b = b;
    this.#o = opts;
    this.#maxBacklog = opts.maxBacklog ?? 256;
    for (const [from, to] of [[a, b], [b, a]] as const) {
      for (const kind of ["rtp", "rtcp"] as const) {
        const src = from[kind], dst = to[kind];
        this.#stops.push(src.socket.listen((data, remote) => this.#receive(src, dst, data, remote), {
          maxSize: opts.maxPacket,
          onOversize: () => from.drops.oversize++,
          onError: () => {/* an ICMP error for something sent: counted per send */},
        }));
      }
    }
  }

  /** True once {@linkcode MediaBridge.connect} ran. */
  get connected(): boolean {
    return this.#connected;
  }

  /**
   * Starts forwarding. `aToB` is `[payload type a sends, payload type b expects]`
   * for the agreed codec, `bToA` the same the other way, and `dtmfAToB` /
   * `dtmfBToA` the same for telephone-event when both legs agreed on it; equal
   * numbers need no rewrite.
   */
  connect(pt: {
    aToB: [number, number];
    bToA: [number, number];
    dtmfAToB?: [number, number];
    dtmfBToA?: [number, number];
  }): void {
    const differ = (m: [number, number] | undefined): m is [number, number] => m !== undefined && m[0] !== m[1];
    this.#aToB = [pt.aToB, pt.dtmfAToB].filter(differ);
    this.#bToA = [pt.bToA, pt.dtmfBToA].filter(differ);
    this.#connected = true;
  }

  /** Stops listening (the legs' sessions close the sockets). */
  close(): void {
    this.#connected = false;
    for (const s of this.#stops.splice(0)) s();
  }

  #receive(src: Path, dst: Path, data: Uint8Array, remote: HostPort): void {
    const leg = src.leg;
    const n = data.length;
    // RTP/RTCP version 2, with a full fixed header.
    if ((data[0] >> 6) !== 2 || n < (src.kind === "RTP" ? 12 : 8)) {
      leg.drops.invalid++;
      return;
    }
    const now = this.#o.now();
    const latched = src.latched;
    if (latched === undefined || latched.port !== remote.port || latched.hostname !== canonicalHost(remote.hostname)) {
      if (!this.#latch(src, remote, now)) {
        leg.drops.foreign++;
        leg.session.stats.foreignDropped++;
        return;
      }
    }
    src.lastIn = now;
    src.packetsIn++;
    src.bytesIn += n;
    if (src.kind === "RTP") {
      leg.session.stats.packetsReceived++;
      leg.session.stats.bytesReceived += n;
    }
    const to = dst.destination;
    if (!this.#connected || to === undefined) {
      leg.drops.not_ready++;
      return;
    }
    if (dst.socket.sendBacklog >= this.#maxBacklog) {
      leg.drops.backlog++;
      return;
    }
    if (src.kind === "RTP") {
      const maps = leg === this.#a ? this.#aToB : this.#bToA;
      for (let i = 0; i < maps.length; i++) {
        if ((data[1] & 0x7f) === maps[i][0]) {
          data[1] = (data[1] & 0x80) | maps[i][1];
          break;
        }
      }
      dst.leg.session.stats.packetsSent++;
      dst.leg.session.stats.bytesSent += n;
    }
    dst.packetsOut++;
    dst.bytesOut += n;
    dst.socket.post(data, to, dst.listener);
  }

  /** Latches `path` to `remote` when the policy allows; true when it did. */
  #latch(path: Path, remote: HostPort, now: number): boolean {
    const ip = canonicalHost(remote.hostname);
    const old = path.latched;
    if (old !== undefined && now - path.lastIn < RELATCH_AFTER_MS) return false;
    if (this.#o.latch === "signalling" && ip !== path.leg.signalIp) {
      // The SDP's IP, but not a loopback one for a phone that does not signal from loopback (the relay's own host).
      if (ip !== path.sdp?.hostname || (isLoopbackAddress(ip) && !isLoopbackAddress(path.leg.signalIp))) return false;
    }
    const to = { hostname: ip, port: remote.port };
    path.latched = to;
    const leg = path.leg;
    const was = old ? `was ${formatHostPort(old)}` : path.sdp ? `SDP said ${formatHostPort(path.sdp)}` : "no SDP yet";
    this.#o.log.info(`leg ${leg.name} ${path.kind} latched to ${formatHostPort(to)} (${was})`, this.#o.fields);
    leg.session.emit({ type: "latched", detail: { kind: path.kind, address: formatHostPort(to) } });
    return true;
  }
}
