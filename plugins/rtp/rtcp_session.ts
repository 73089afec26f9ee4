/**
 * One RTP session's RTCP (RFC 3550 section 6): what the local side sent,
 * reception statistics per remote source (A.1 sequence validation, A.3 loss,
 * A.8 interarrival jitter), the report interval (6.2, 6.3), compound
 * SR/RR + SDES CNAME reports and BYE, built and parsed with `rtp.js`, and the
 * peer's reports (loss and jitter it sees, round-trip time from LSR/DLSR).
 *
 * The `rtcp` stage creates one {@linkcode RtcpSession} per session id and shares
 * it between the send and the receive pipeline of a call.
 *
 * @module
 */
import { packets } from "rtp.js";
import type { Clock, Timer } from "../../core/clock.ts";
import type { RtpFrame } from "../../core/frame.ts";
import { canonicalHost, type HostPort } from "../../core/net/address.ts";
import type { DatagramSocket } from "../../core/net/datagram.ts";
import { type Random, randomUint32 } from "../../core/random.ts";
import { isTelephoneEvent } from "./telephone_event.ts";

const { ByePacket, CompoundPacket, ReceiverReportPacket, ReceptionReport, SdesChunk, SdesPacket, SenderReportPacket } =
  packets;

/** A UDP address (the network layer's {@linkcode HostPort}). */
export type RtcpAddress = HostPort;

// ---------------------------------------------------------------------------
// Time: NTP timestamps (RFC 3550 section 4)

/** Seconds from 1900-01-01 (NTP epoch) to 1970-01-01 (Unix epoch). */
const NTP_UNIX_OFFSET = 2208988800;

/**
 * Splits a wallclock time (ms since the Unix epoch) into NTP seconds and fraction.
 *
 * @example
 * ```ts
 * toNtp(0); // { seconds: 2208988800, fraction: 0 }
 * ```
 */
export function toNtp(unixMs: number): { seconds: number; fraction: number } {
  const secs = Math.floor(unixMs / 1000);
  const fraction = Math.floor(((unixMs - secs * 1000) / 1000) * 4294967296) >>> 0;
  return { seconds: (secs + NTP_UNIX_OFFSET) >>> 0, fraction };
}

/**
 * The middle 32 bits of an NTP timestamp (16 bits of seconds, 16 of fraction):
 * the unit of LSR, DLSR and round-trip computations, 1/65536 s.
 *
 * @example
 * ```ts
 * ntpMiddle(toNtp(Date.now()));
 * ```
 */
export function ntpMiddle(t: { seconds: number; fraction: number }): number {
  return (((t.seconds & 0xffff) << 16) | (t.fraction >>> 16)) >>> 0;
}

/**
 * Round-trip time in ms from a report block (RFC 3550 section 6.4.1):
 * `A − LSR − DLSR`, A being the middle 32 bits of the NTP time the report
 * arrived. Undefined when LSR is 0 (no SR received yet by the peer) or the
 * result is negative (clock trouble).
 *
 * @example
 * ```ts
 * rttMs(0x00010000 + 0x8000, 0x00010000, 0x4000); // 250: 0.5 s − 0.25 s of DLSR
 * ```
 */
export function rttMs(arrivalMiddle: number, lsr: number, dlsr: number): number | undefined {
  if (lsr === 0) return undefined;
  const v = (arrivalMiddle - lsr - dlsr) | 0;
  if (v < 0) return undefined;
  return (v / 65536) * 1000;
}

// ---------------------------------------------------------------------------
// Interval (RFC 3550 sections 6.2, 6.3.1, A.7)

/** Inputs of {@linkcode rtcpInterval}. */
export interface IntervalParams {
  /** Members of the session, including us (at least 2 in a call). */
  members: number;
  /** Members that sent RTP recently, including us. */
  senders: number;
  /** RTCP bandwidth in octets per second (5 % of the session bandwidth). */
  rtcpBandwidth: number;
  /** True when we sent RTP since the second-to-last report. */
  weSent: boolean;
  /** Average compound RTCP packet size in octets, lower-layer headers included. */
  avgRtcpSize: number;
  /** True before the first report: the minimum is halved. */
  initial: boolean;
  /** Minimum interval in seconds (5 s per RFC 3550, or a reduced minimum). */
  minInterval: number;
}

/**
 * The randomized interval in seconds until the next report (RFC 3550 6.3.1):
 * `Td = max(Tmin, n × C)`, where C is the average report size over the
 * bandwidth share of senders (25 %) or receivers (75 %), then
 * `T = Td × random[0.5, 1.5)`. Tmin is halved for the first report. The RFC's
 * further division by e − 3/2 compensates timer reconsideration, which only
 * matters for sessions whose membership changes; in a point-to-point call it
 * would just shorten every interval, so it is not applied.
 *
 * @example
 * ```ts
 * rtcpInterval({ members: 2, senders: 2, rtcpBandwidth: 500, weSent: true, avgRtcpSize: 100,
 *   initial: false, minInterval: 5 }, () => 0.5); // 5
 * ```
 */
export function rtcpInterval(p: IntervalParams, random: Random): number {
  const tmin = p.initial ? p.minInterval / 2 : p.minInterval;
  let n = p.members;
  let bw = p.rtcpBandwidth;
  if (p.senders <= p.members * 0.25) {
    if (p.weSent) {
      bw *= 0.25;
      n = p.senders;
    } else {
      bw *= 0.75;
      n -= p.senders;
    }
  }
  const td = Math.max(tmin, (p.avgRtcpSize * n) / bw);
  return td * (random() + 0.5);
}

// ---------------------------------------------------------------------------
// Reception statistics (RFC 3550 A.1, A.3, A.8)

const RTP_SEQ_MOD = 65536;
const MAX_DROPOUT = 3000;
const MAX_MISORDER = 100;
const MIN_SEQUENTIAL = 2;

/** The fields of a report block about one source. */
export interface ReportBlock {
  /** Source the block is about. */
  ssrc: number;
  /** Fraction lost since the previous report, 0..255 (/256). */
  fractionLost: number;
  /** Cumulative packets lost (clamped at 0: rtp.js writes it unsigned). */
  totalLost: number;
  /** Extended highest sequence number received. */
  highestSeq: number;
  /** Interarrival jitter in timestamp units. */
  jitter: number;
}

/**
 * Reception statistics of one remote source, per RFC 3550 appendix A.1
 * (sequence validation with probation), A.3 (expected, lost, fraction lost)
 * and A.8 (interarrival jitter).
 *
 * @example
 * ```ts
 * const s = new ReceptionStats(0x1234, 8000);
 * s.onPacket(1000, 160, 0); // seq, RTP timestamp, arrival ms
 * s.onPacket(1001, 320, 20);
 * s.report().highestSeq; // 1001
 * ```
 */
export class ReceptionStats {
  /** The source's SSRC. */
  readonly ssrc: number;
  /** RTP clock rate of the source (Hz). */
  clockRate: number;
  /** Highest sequence number seen. */
  maxSeq = 0;
  /** Shifted count of sequence number cycles. */
  cycles = 0;
  /** First sequence number counted. */
  baseSeq = 0;
  /** Last 'bad' sequence number + 1. */
  badSeq = RTP_SEQ_MOD + 1;
  /** Sequential packets still needed before the source is valid. */
  probation = MIN_SEQUENTIAL;
  /** Packets received (counted from the end of probation). */
  received = 0;
  /** Expected at the last report. */
  expectedPrior = 0;
  /** Received at the last report. */
  receivedPrior = 0;
  /** Interarrival jitter estimate in timestamp units (floating point). */
  jitter = 0;
  /** Every packet seen, probation included. */
  packets = 0;
  /** Fraction lost in the last report made, 0..255. */
  lastFraction = 0;
  /** True when a packet arrived since the last report. */
  heard = false;
  /** Middle 32 bits of the NTP time of the last SR from this source (0 if none). */
  lsr = 0;
  /** Media-clock time the last SR arrived (ms). */
  lsrTime = 0;
  #lastArrival: number | undefined;
  #lastTs = 0;

  /**
   * @param ssrc the source
   * @param clockRate its RTP clock rate
   */
  constructor(ssrc: number, clockRate: number) {
    this.ssrc = ssrc;
    this.clockRate = clockRate;
  }

  #initSeq(seq: number): void {
    this.baseSeq = seq;
    this.maxSeq = seq;
    this.badSeq = RTP_SEQ_MOD + 1;
    this.cycles = 0;
    this.received = 0;
    this.receivedPrior = 0;
    this.expectedPrior = 0;
  }

  /** RFC 3550 A.1 `update_seq`: returns true when the packet counts as valid. */
  updateSeq(seq: number): boolean {
    if (this.packets === 0) {
      this.#initSeq(seq);
      this.maxSeq = (seq - 1) & 0xffff;
      this.probation = MIN_SEQUENTIAL;
    }
    const udelta = (seq - this.maxSeq) & 0xffff;
    if (this.probation) {
      if (seq === ((this.maxSeq + 1) & 0xffff)) {
        this.probation--;
        this.maxSeq = seq;
        if (this.probation === 0) {
          this.#initSeq(seq);
          this.received++;
          return true;
        }
      } else {
        this.probation = MIN_SEQUENTIAL - 1;
        this.maxSeq = seq;
      }
      return false;
    } else if (udelta < MAX_DROPOUT) {
      if (seq < this.maxSeq) this.cycles += RTP_SEQ_MOD;
      this.maxSeq = seq;
    } else if (udelta <= RTP_SEQ_MOD - MAX_MISORDER) {
      if (seq === this.badSeq) {
        // Two sequential packets after a jump: the source restarted.
        this.#initSeq(seq);
      } else {
        this.badSeq = (seq + 1) & 0xffff;
        return false;
      }
    }
    // else: duplicate or reordered packet
    this.received++;
    return true;
  }

  /**
   * Accounts for one RTP packet: sequence (A.1) and interarrival jitter (A.8),
   * with `arrival` in ms. The jitter uses differences (`(Rj − Ri) − (Sj − Si)`)
   * so that timestamp wrap-around does no harm. With `timing` false (a packet
   * whose timestamp is not its media time: an RFC 4733 event) only the sequence counts.
   */
  onPacket(seq: number, timestamp: number, arrival: number, timing = true): void {
    const valid = this.updateSeq(seq);
    this.packets++;
    this.heard = true;
    if (!valid || !timing) return;
    if (this.#lastArrival !== undefined) {
      const dArrival = ((arrival - this.#lastArrival) * this.clockRate) / 1000;
      const dTs = (timestamp - this.#lastTs) | 0;
      const d = Math.abs(dArrival - dTs);
      this.jitter += (d - this.jitter) / 16;
    }
    this.#lastArrival = arrival;
    this.#lastTs = timestamp;
  }

  /** Extended highest sequence number. */
  get extendedMax(): number {
    return this.cycles + this.maxSeq;
  }

  /** Packets expected (A.3). */
  get expected(): number {
    return this.extendedMax - this.baseSeq + 1;
  }

  /**
   * Cumulative packets lost (A.3), may be negative with duplicates. 0 while the source is on probation (A.1):
   * nothing is counted yet, though `expected` already covers the first packet.
   */
  get lost(): number {
    return this.probation > 0 ? 0 : this.expected - this.received;
  }

  /** Interarrival jitter in ms. */
  get jitterMs(): number {
    return (this.jitter / this.clockRate) * 1000;
  }

  /** Makes a report block (A.3), starting a new interval for the fraction lost. */
  report(): ReportBlock {
    const expected = this.expected;
    const expectedInterval = expected - this.expectedPrior;
    this.expectedPrior = expected;
    const receivedInterval = this.received - this.receivedPrior;
    this.receivedPrior = this.received;
    const lostInterval = expectedInterval - receivedInterval;
    const fraction = expectedInterval === 0 || lostInterval <= 0
      ? 0
      : Math.min(255, Math.floor((lostInterval * 256) / expectedInterval));
    this.lastFraction = fraction;
    this.heard = false;
    return {
      ssrc: this.ssrc,
      fractionLost: fraction,
      totalLost: Math.max(0, Math.min(0x7fffff, this.lost)),
      highestSeq: this.extendedMax >>> 0,
      jitter: Math.floor(this.jitter) >>> 0,
    };
  }
}

// ---------------------------------------------------------------------------
// The session

/** What a report sent or received says, as published to stages. */
export interface RtcpReportInfo {
  /** `sent` or `received`. */
  direction: "sent" | "received";
  /** SR, RR, or BYE. */
  type: "SR" | "RR" | "BYE";
  /** SSRC of the report's sender. */
  ssrc: number;
  /** Sender info (SR only): packets and octets sent. */
  packets?: number;
  /** Sender info (SR only). */
  octets?: number;
  /** From the report block about the other side's stream: fraction lost 0..1. */
  fractionLost?: number;
  /** Cumulative lost packets of that block. */
  lost?: number;
  /** Jitter of that block in ms. */
  jitterMs?: number;
  /** Round-trip time in ms (received reports with LSR). */
  rttMs?: number;
  /** BYE reason, if any. */
  reason?: string;
}

/** A listener attached to a session (an `rtcp` stage). */
export interface RtcpListener {
  /** Which pipeline the stage is on: reports sent go to `send` ones, received to `receive` ones. */
  direction: "send" | "receive";
  /** Called once per report sent or received. */
  onReport(info: RtcpReportInfo): void;
}

/** Options of an {@linkcode RtcpSession}. */
export interface RtcpSessionOptions {
  /** The media clock driving the report timer. */
  clock: Clock;
  /**
   * The RTCP socket (a UDP socket, or a memory one in tests). The session
   * listens on it while open; it does not close it (its owner, the call's
   * session, does).
   */
  socket: DatagramSocket;
  /**
   * Where to send reports. Without it, to where the peer's RTCP comes from: the session latches to the source of the
   * first valid compound whose report (its first packet, an SR or RR) carries the SSRC of an RTP stream the session
   * has received (`onReceived`), or, once it sent RTP, has a report block about our SSRC; RTCP from anyone else is
   * dropped (counted in `rtcp_dropped`). A report that comes before the RTP of its SSRC is held (the last one of each
   * SSRC, {@linkcode MAX_HELD_RTCP} at most) and taken when that RTP arrives.
   */
  remote?: RtcpAddress;
  /** SDES CNAME. */
  cname: string;
  /** Minimum report interval in seconds. */
  minInterval: number;
  /** Session bandwidth in kbit/s (RTCP gets 5 %). */
  bandwidthKbps: number;
  /** Uniform [0, 1) source for the interval randomization (default Math.random). */
  random?: Random;
  /** Wallclock in ms since the Unix epoch, for NTP timestamps (default Date.now). */
  wallclock?: () => number;
  /** The local SSRC until RTP is sent (default random). */
  ssrc?: number;
  /**
   * While it says true, no report is sent (the timer goes on), and closing sends no BYE: the call's session holds what
   * it sends (an incoming call before its answer has been sent: `Session.holdSends`), so nothing was sent, though RTP
   * may have passed on its way to a sink that holds it.
   */
  held?: () => boolean;
}

/**
 * Remote sources a session keeps reception statistics for at most: a new one beyond this replaces the one that sent
 * the fewest packets (a peer that changes its SSRC on every packet cannot make the session grow; the stream that
 * flows keeps its statistics).
 */
export const MAX_RTCP_SOURCES = 64;

/**
 * Compounds a session without a known peer holds at most (the last one of each SSRC) until RTP of that SSRC arrives:
 * a sender's first report may come before its first RTP packet. A new one beyond this replaces the oldest (dropped).
 */
export const MAX_HELD_RTCP = 4;

/** Lower-layer (IPv4 + UDP) header octets counted in the average RTCP size. */
const LOWER_HEADERS = 28;

/** Validity checks of a compound RTCP packet (RFC 3550 A.2); returns the problem, if any. */
export function checkRtcp(data: Uint8Array): string | undefined {
  if (data.length < 8 || data.length % 4 !== 0) return "bad length";
  const pt = data[1];
  if (pt !== 200 && pt !== 201) return "first packet not SR or RR";
  if (data[0] & 0x20) return "padding on the first packet";
  let off = 0;
  while (off < data.length) {
    if (data[off] >> 6 !== 2) return "version not 2";
    const len = (((data[off + 2] << 8) | data[off + 3]) + 1) * 4;
    if ((data[off] & 0x20) && off + len !== data.length) return "padding before the last packet";
    off += len;
  }
  return off === data.length ? undefined : "lengths do not add up";
}

/**
 * One RTP session's RTCP: counters, reception statistics, the report timer,
 * the socket. Shared by the `rtcp` stages of a call.
 *
 * @example
 * ```ts
 * const session = new RtcpSession({ clock, socket: udpNetwork.bind("0.0.0.0", 0),
 *   remote: { hostname: "127.0.0.1", port: 4001 }, cname: "me", minInterval: 5, bandwidthKbps: 80 });
 * session.start();
 * session.onSent(rtpFrame);      // send path
 * session.onReceived(rtpFrame);  // receive path (frame.arrival set)
 * await session.close();         // sends BYE
 * ```
 */
export class RtcpSession {
  /** Options in effect. */
  readonly options: RtcpSessionOptions;
  /** Local SSRC (that of the RTP we send, once seen). */
  ssrc: number;
  /** Where reports go, once known. */
  remote: RtcpAddress | undefined;
  #random: Random;
  #wallBase: number;
  #clock: Clock;
  #timer: Timer | undefined;
  #listeners = new Set<RtcpListener>();
  #sources = new Map<number, ReceptionStats>();
  /** The busiest source that left with a BYE: its final statistics stay readable in stats(). */
  #departed: ReceptionStats | undefined;
  #closed = false;
  #initial = true;
  #avgRtcpSize = 0;
  #pending = new Set<Promise<unknown>>();
  readonly #unlisten: () => void;

  // Sender state
  #packetsSent = 0;
  /** True once any RTP packet went out (`#packetsSent` wraps). */
  #sentRtp = false;
  #octetsSent = 0;
  #lastSentTs = 0;
  #lastSentAt = 0;
  #sendClockRate = 8000;
  #sentAtReport: [number, number] = [0, 0]; // packet counts at the last two reports

  // What the peer tells us
  #remote = {
    ssrc: undefined as number | undefined,
    cname: undefined as string | undefined,
    fractionLost: undefined as number | undefined,
    lost: undefined as number | undefined,
    jitterMs: undefined as number | undefined,
    rttMs: undefined as number | undefined,
    packets: undefined as number | undefined,
    octets: undefined as number | undefined,
  };
  #n = { reports_sent: 0, reports_received: 0, rtcp_dropped: 0, bye_received: 0, packets_received: 0 };
  /** Before the peer is known: the last compound of each SSRC not (yet) seen in RTP, oldest first. */
  #held = new Map<number, { data: Uint8Array; from: RtcpAddress; at: number }>();

  /** @param options session options */
  constructor(options: RtcpSessionOptions) {
    this.options = options;
    this.#clock = options.clock;
    this.#random = options.random ?? Math.random;
    this.#wallBase = (options.wallclock ?? Date.now)() - options.clock.now();
    this.ssrc = options.ssrc ?? randomUint32();
    this.remote = options.remote;
    this.#unlisten = options.socket.listen((data, from) => this.receive(data, from));
  }

  /** The local RTCP port. */
  get localPort(): number {
    return this.options.socket.port;
  }

  /** Attaches a stage; returns a function that detaches it. */
  attach(listener: RtcpListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Starts the report timer: the first report after half the minimum interval, randomized. */
  start(): void {
    if (this.#timer || this.#closed) return;
    this.#schedule();
  }

  /**
   * Observes an RTP packet we send. A telephone event (RFC 4733, tagged `telephone-event`) counts as a packet
   * sent, but its timestamp (its event's start) does not time the sender reports.
   */
  onSent(frame: RtpFrame): void {
    this.ssrc = frame.ssrc >>> 0;
    this.#packetsSent = (this.#packetsSent + 1) >>> 0;
    this.#sentRtp = true;
    this.#octetsSent = (this.#octetsSent + frame.payload.length) >>> 0;
    if (isTelephoneEvent(frame)) return;
    this.#lastSentTs = frame.timestamp;
    this.#lastSentAt = this.#clock.now();
    if (frame.clockRate) this.#sendClockRate = frame.clockRate;
  }

  /**
   * Observes an RTP packet we receive (its `arrival`, else the clock's time). A telephone event (RFC 4733, tagged
   * `telephone-event`) counts in the sequence statistics, not in the jitter (its timestamp is its event's start).
   */
  onReceived(frame: RtpFrame): void {
    this.#n.packets_received++;
    let s = this.#sources.get(frame.ssrc);
    if (!s) s = this.#addSource(frame.ssrc, frame.clockRate ?? 8000);
    else if (frame.clockRate) s.clockRate = frame.clockRate;
    s.onPacket(frame.sequence, frame.timestamp, frame.arrival ?? this.#clock.now(), !isTelephoneEvent(frame));
    if (!this.remote && this.#held.size > 0) {
      // A report held before this stream's RTP arrived: its sender is the RTP peer.
      const held = this.#held.get(frame.ssrc >>> 0);
      if (held) {
        this.#held.delete(frame.ssrc >>> 0);
        this.#latch(held.from);
        const v = new DataView(held.data.buffer, held.data.byteOffset, held.data.byteLength);
        this.#process(new CompoundPacket(v).getPackets(), held.at);
      }
    }
  }

  /** Starts the statistics of a new remote source, in place of the one with the fewest packets when full. */
  #addSource(ssrc: number, clockRate: number): ReceptionStats {
    if (this.#sources.size >= MAX_RTCP_SOURCES) {
      let least: ReceptionStats | undefined;
      for (const s of this.#sources.values()) if (!least || s.packets < least.packets) least = s;
      this.#sources.delete(least!.ssrc);
    }
    const s = new ReceptionStats(ssrc, clockRate);
    this.#sources.set(ssrc, s);
    return s;
  }

  /** The NTP time of media-clock time `now`. */
  ntpAt(now: number): { seconds: number; fraction: number } {
    return toNtp(this.#wallBase + now);
  }

  #schedule(): void {
    const members = 1 + Math.max(1, this.#sources.size);
    const weSent = this.#weSent();
    let senders = weSent ? 1 : 0;
    for (const s of this.#sources.values()) if (s.heard || s.packets > 0) senders++;
    const t = rtcpInterval({
      members,
      senders,
      rtcpBandwidth: (this.options.bandwidthKbps * 1000 * 0.05) / 8,
      weSent,
      avgRtcpSize: this.#avgRtcpSize || 100,
      initial: this.#initial,
      minInterval: this.options.minInterval,
    }, this.#random);
    this.#initial = false;
    this.#timer = this.#clock.after(t * 1000, () => {
      this.#timer = undefined;
      if (this.#closed) return;
      this.sendReport();
      this.#schedule();
    });
  }

  #weSent(): boolean {
    return this.#packetsSent !== this.#sentAtReport[0];
  }

  /** Builds the compound report due now: SR (if we sent RTP recently) or RR, then SDES CNAME. */
  buildReport(now = this.#clock.now()): { data: Uint8Array; info: RtcpReportInfo } {
    const blocks: ReportBlock[] = [];
    const lsrs: [number, number][] = [];
    for (const s of this.#sources.values()) {
      // Only valid sources (past A.1 probation) heard since the last report.
      if (!s.heard || s.received === 0) continue;
      if (blocks.length === 31) break;
      blocks.push(s.report());
      lsrs.push([s.lsr, s.lsr ? Math.round(((now - s.lsrTime) / 1000) * 65536) >>> 0 : 0]);
    }
    const reports = blocks.map((b, i) => {
      const r = new ReceptionReport();
      r.setSsrc(b.ssrc);
      r.setFractionLost(b.fractionLost);
      r.setTotalLost(b.totalLost);
      r.setHighestSeqNumber(b.highestSeq);
      r.setJitter(b.jitter);
      r.setLastSRTimestamp(lsrs[i][0]);
      r.setDelaySinceLastSR(lsrs[i][1]);
      return r;
    });
    const isSr = this.#packetsSent !== this.#sentAtReport[1];
    this.#sentAtReport = [this.#packetsSent, this.#sentAtReport[0]];
    const compound = new CompoundPacket();
    const info: RtcpReportInfo = { direction: "sent", type: isSr ? "SR" : "RR", ssrc: this.ssrc };
    if (isSr) {
      const sr = new SenderReportPacket();
      const ntp = this.ntpAt(now);
      sr.setSsrc(this.ssrc);
      sr.setNtpSeconds(ntp.seconds);
      sr.setNtpFraction(ntp.fraction);
      const elapsed = ((now - this.#lastSentAt) * this.#sendClockRate) / 1000;
      sr.setRtpTimestamp((this.#lastSentTs + Math.round(elapsed)) >>> 0);
      sr.setPacketCount(this.#packetsSent);
      sr.setOctetCount(this.#octetsSent);
      for (const r of reports) sr.addReport(r);
      compound.addPacket(sr);
      info.packets = this.#packetsSent;
      info.octets = this.#octetsSent;
    } else {
      const rr = new ReceiverReportPacket();
      rr.setSsrc(this.ssrc);
      for (const r of reports) rr.addReport(r);
      compound.addPacket(rr);
    }
    if (blocks.length) {
      const s = this.#sources.get(blocks[0].ssrc)!;
      info.fractionLost = blocks[0].fractionLost / 256;
      info.lost = blocks[0].totalLost;
      info.jitterMs = s.jitterMs;
    }
    compound.addPacket(this.#sdes());
    return { data: viewBytes(compound.getView()), info };
  }

  #sdes() {
    const sdes = new SdesPacket();
    const chunk = new SdesChunk();
    chunk.setSsrc(this.ssrc);
    chunk.addItem(1, this.options.cname); // CNAME
    sdes.addChunk(chunk);
    return sdes;
  }

  /** Builds the report due now and sends it (when the peer is known). */
  sendReport(): void {
    const { data, info } = this.buildReport();
    this.#avgRtcpSize = this.#avgRtcpSize
      ? (data.length + LOWER_HEADERS) / 16 + (this.#avgRtcpSize * 15) / 16
      : data.length + LOWER_HEADERS;
    if (!this.remote) return; // nowhere to send yet
    if (this.options.held?.()) return; // nothing before the call's answer
    this.#n.reports_sent++;
    this.#send(data);
    this.#publish("send", info);
  }

  #send(data: Uint8Array): void {
    if (!this.remote) return;
    // Best effort: a send error (e.g. nobody listening) is not the session's failure.
    const p = this.options.socket.send(data, this.remote).catch(() => {});
    this.#pending.add(p);
    p.finally(() => this.#pending.delete(p));
  }

  #publish(direction: "send" | "receive", info: RtcpReportInfo): void {
    let target: RtcpListener | undefined;
    for (const l of this.#listeners) {
      if (l.direction === direction) {
        target = l;
        break;
      }
      target ??= l;
    }
    target?.onReport(info);
  }

  /** Handles a datagram that arrived on the RTCP socket. */
  receive(data: Uint8Array, from: RtcpAddress): void {
    if (this.#closed) return;
    if (this.remote) {
      if (canonicalHost(from.hostname) !== canonicalHost(this.remote.hostname) || from.port !== this.remote.port) {
        this.#n.rtcp_dropped++;
        return;
      }
    }
    if (checkRtcp(data)) {
      this.#n.rtcp_dropped++;
      return;
    }
    let parsed;
    try {
      parsed = new CompoundPacket(new DataView(data.buffer, data.byteOffset, data.byteLength)).getPackets();
    } catch {
      this.#n.rtcp_dropped++;
      return;
    }
    const now = this.#clock.now();
    if (!this.remote) {
      // Latch only to the RTP peer (see #fromRtpPeer). A report that cannot be told yet (a sender's first SR often
      // comes before its first RTP packet: ffmpeg's does) is held, by its SSRC, until RTP of that SSRC arrives.
      if (!this.#fromRtpPeer(parsed[0])) {
        this.#hold(parsed[0], data, from, now);
        return;
      }
      this.#latch(from);
    }
    this.#process(parsed, now);
  }

  /** Holds a compound from a source not known yet (see {@linkcode MAX_HELD_RTCP}); what it replaces is dropped. */
  #hold(first: unknown, data: Uint8Array, from: RtcpAddress, at: number): void {
    if (!(first instanceof SenderReportPacket || first instanceof ReceiverReportPacket)) {
      this.#n.rtcp_dropped++;
      return;
    }
    const ssrc = first.getSsrc() >>> 0;
    if (this.#held.delete(ssrc)) this.#n.rtcp_dropped++;
    else if (this.#held.size >= MAX_HELD_RTCP) {
      this.#held.delete(this.#held.keys().next().value!);
      this.#n.rtcp_dropped++;
    }
    this.#held.set(ssrc, { data: data.slice(), from: { hostname: from.hostname, port: from.port }, at });
  }

  /** Takes `from` as the peer: reports go there, RTCP from elsewhere is dropped; what is still held is dropped. */
  #latch(from: RtcpAddress): void {
    this.remote = { hostname: canonicalHost(from.hostname), port: from.port };
    this.#n.rtcp_dropped += this.#held.size;
    this.#held.clear();
  }

  /** Handles the packets of a valid compound from the peer, received at `now`. */
  #process(parsed: ReturnType<InstanceType<typeof CompoundPacket>["getPackets"]>, now: number): void {
    const hasBye = parsed.some((p) => p instanceof ByePacket);
    // One compound is one report (RFC 3550 6.1: an SR or RR first; further RRs only carry more report blocks) and at
    // most one BYE: only the first of each is published (logged, sent to the stages' listeners), however many
    // packets a peer packs into it.
    let published = hasBye, byePublished = false;
    for (const p of parsed) {
      if (p instanceof SenderReportPacket || p instanceof ReceiverReportPacket) {
        // The report that leads a BYE compound is not published: the BYE is.
        const info = this.#onReport(p, now);
        if (!published) this.#publish("receive", info);
        published = true;
      } else if (p instanceof SdesPacket) {
        for (const c of p.getChunks()) {
          const cname = c.getItems().find((i) => i.type === 1);
          if (cname && c.getSsrc() === this.#remote.ssrc) this.#remote.cname = cname.text;
          else if (cname && this.#remote.cname === undefined) this.#remote.cname = cname.text;
        }
      } else if (p instanceof ByePacket) {
        this.#n.bye_received++;
        for (const ssrc of p.getSsrcs()) {
          const gone = this.#sources.get(ssrc);
          if (gone && (!this.#departed || gone.packets > this.#departed.packets)) this.#departed = gone;
          this.#sources.delete(ssrc);
        }
        if (byePublished) continue;
        byePublished = true;
        this.#publish("receive", {
          direction: "received",
          type: "BYE",
          ssrc: p.getSsrcs()[0] ?? 0,
          reason: p.getReason(),
        });
      }
    }
  }

  /**
   * True when the report that leads a compound (`first`, an SR or RR) comes from the RTP peer: its SSRC is that of
   * an RTP stream that reached the session (through the RTP side's own source filter), or, once we sent RTP, one of
   * its report blocks is about our SSRC (the peer receives our stream). Both are 32 random bits that only someone who
   * sees the RTP knows.
   */
  #fromRtpPeer(first: unknown): boolean {
    if (!(first instanceof SenderReportPacket || first instanceof ReceiverReportPacket)) return false;
    if ((this.#sources.get(first.getSsrc() >>> 0)?.packets ?? 0) > 0) return true;
    return this.#sentRtp && first.getReports().some((r) => r.getSsrc() >>> 0 === this.ssrc >>> 0);
  }

  #onReport(
    p: InstanceType<typeof SenderReportPacket> | InstanceType<typeof ReceiverReportPacket>,
    now: number,
  ): RtcpReportInfo {
    this.#n.reports_received++;
    const ssrc = p.getSsrc();
    this.#remote.ssrc = ssrc;
    const info: RtcpReportInfo = { direction: "received", type: "RR", ssrc };
    if (p instanceof SenderReportPacket) {
      info.type = "SR";
      info.packets = this.#remote.packets = p.getPacketCount();
      info.octets = this.#remote.octets = p.getOctetCount();
      const s = this.#sources.get(ssrc) ?? this.#addSource(ssrc, 8000);
      s.lsr = ntpMiddle({ seconds: p.getNtpSeconds(), fraction: p.getNtpFraction() });
      s.lsrTime = now;
    }
    const block = p.getReports().find((r) => r.getSsrc() === this.ssrc);
    if (block) {
      const arrival = ntpMiddle(this.ntpAt(now));
      const rtt = rttMs(arrival, block.getLastSRTimestamp(), block.getDelaySinceLastSR());
      this.#remote.fractionLost = info.fractionLost = block.getFractionLost() / 256;
      this.#remote.lost = info.lost = block.getTotalLost();
      this.#remote.jitterMs = info.jitterMs = (block.getJitter() / this.#sendClockRate) * 1000;
      if (rtt !== undefined) this.#remote.rttMs = info.rttMs = rtt;
    }
    return info;
  }

  /** Statistics: what we sent, what we receive, what the peer reports, round-trip time. */
  stats(): Record<string, unknown> {
    let src: ReceptionStats | undefined = this.#departed;
    for (const s of this.#sources.values()) if (!src || s.packets > src.packets) src = s;
    return {
      ssrc: this.ssrc,
      cname: this.options.cname,
      local_port: this.localPort,
      remote: this.remote ? `${this.remote.hostname}:${this.remote.port}` : undefined,
      packets_sent: this.#packetsSent,
      octets_sent: this.#octetsSent,
      ...this.#n,
      sources: this.#sources.size,
      remote_ssrc: src?.ssrc ?? this.#remote.ssrc,
      remote_cname: this.#remote.cname,
      lost: src ? Math.max(0, src.lost) : 0,
      fraction_lost: src ? src.lastFraction / 256 : 0,
      jitter_ms: src ? src.jitterMs : 0,
      remote_packets_sent: this.#remote.packets,
      remote_fraction_lost: this.#remote.fractionLost,
      remote_lost: this.#remote.lost,
      remote_jitter_ms: this.#remote.jitterMs,
      rtt_ms: this.#remote.rttMs,
    };
  }

  /**
   * Stops the timer, sends BYE (RR + SDES + BYE) and stops listening (the socket stays its owner's). A session that
   * never sent an RTP packet or an RTCP report sends no BYE (RFC 3550, 6.3.7): the peer never counted it a member;
   * neither does one closed while `held` says true (a call refused or cancelled before its answer: what passed here
   * never left its sink).
   */
  async close(reason?: string): Promise<void> {
    if (this.#closed) return;
    this.#timer?.cancel();
    this.#timer = undefined;
    this.#held.clear();
    if (this.remote && (this.#sentRtp || this.#n.reports_sent > 0) && !this.options.held?.()) {
      const compound = new CompoundPacket();
      const rr = new ReceiverReportPacket();
      rr.setSsrc(this.ssrc);
      compound.addPacket(rr);
      compound.addPacket(this.#sdes());
      const bye = new ByePacket();
      bye.addSsrc(this.ssrc);
      if (reason) bye.setReason(reason);
      compound.addPacket(bye);
      this.#send(viewBytes(compound.getView()));
    }
    this.#closed = true;
    await Promise.all([...this.#pending]);
    this.#unlisten();
  }
}

function viewBytes(v: DataView): Uint8Array {
  return new Uint8Array(v.buffer as ArrayBuffer, v.byteOffset, v.byteLength).slice();
}
