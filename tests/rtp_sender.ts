/**
 * A deterministic RTP test sender: a tone (or any samples) as G.711 packets with
 * their arrival times at a receiver, through a scripted network and sender
 * clock: the sender's clock may run fast or slow (drift), the network adds
 * jitter (uniform, seeded), loses packets, delivers them in bursts, or stalls
 * (holds every packet for a while and releases them together). Nothing here
 * looks at a real clock: the same options give the same packets and times, for
 * tests on a VirtualClock and for the playout bench (which also replays them
 * to GStreamer over loopback).
 *
 * @example Ten seconds of a 440 Hz tone from a sender 1 % fast, with 40 ± 20 ms of jitter
 * ```ts
 * const { packets } = rtpSender({ seconds: 10, drift: 0.01, delayMs: 40, jitterMs: 20 });
 * for (const p of packets) jb.insert(p.frame, p.arrival);
 * ```
 *
 * @module
 */
import type { RtpFrame } from "../core/frame.ts";
import { MULAW_DECODE, MULAW_ENCODE } from "../plugins/g711/tables.ts";

/** What {@linkcode rtpSender} sends and through what network. */
export interface RtpSenderOptions {
  /** Seconds of audio (sender's media time). */
  seconds: number;
  /** Packet duration, ms (default 20). */
  ptime?: number;
  /** Tone frequency, Hz (default 440). */
  frequency?: number;
  /** Tone amplitude, linear (default 8000, about −12 dBFS). */
  amplitude?: number;
  /**
   * How much faster the sender's clock runs than the receiver's (0.01: 1 % fast, it sends 1.01 s of media per
   * second; −0.01: 1 % slow). Default 0.
   */
  drift?: number;
  /** Base network delay, ms (default 20). */
  delayMs?: number;
  /** Jitter: each packet's delay is `delayMs` ± up to this, uniform (default 0). */
  jitterMs?: number;
  /** Fraction of packets lost, 0..1 (default 0). */
  loss?: number;
  /** Network stalls: from `first` ms on, every `every` ms, packets arriving within `length` ms are held to its end. */
  stalls?: { first: number; every: number; length: number };
  /** Bursts: packets are held and delivered `size` at a time (default: none). */
  burst?: number;
  /** Seed of the jitter and loss generator (default 1). */
  seed?: number;
  /** SSRC (default 0x1234). */
  ssrc?: number;
}

/** One packet and when it reaches the receiver. */
export interface SentPacket {
  /** Arrival time at the receiver, ms (receiver's clock, from 0). */
  arrival: number;
  /** When the sender sent it, ms (receiver's clock). */
  sent: number;
  /** The packet (µ-law payload, codec PCMU). */
  frame: RtpFrame;
  /** Index of the packet in the sender's stream. */
  index: number;
}

/** The sender's output. */
export interface RtpSenderResult {
  /** Packets that arrive, in order of arrival. */
  packets: SentPacket[];
  /** Packets sent (lost ones included). */
  sent: number;
  /** The samples sent (through G.711: what a perfect receiver would play). */
  reference: Int16Array;
  /** Samples per packet. */
  spf: number;
}

/** A small seeded generator (mulberry32): uniform in [0, 1). */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A tone through G.711 µ-law: `n` samples from sample `from`. */
export function muLawTone(from: number, n: number, frequency = 440, amplitude = 8000, rate = 8000): Int16Array {
  const out = new Int16Array(n);
  for (let i = 0; i < n; i++) {
    const v = Math.round(amplitude * Math.sin((2 * Math.PI * frequency * (from + i)) / rate));
    out[i] = MULAW_DECODE[MULAW_ENCODE[v & 0xffff]];
  }
  return out;
}

/**
 * The packets of `options.seconds` of a tone through the scripted sender clock and network, sorted by arrival.
 */
export function rtpSender(options: RtpSenderOptions): RtpSenderResult {
  const ptime = options.ptime ?? 20;
  const spf = (8000 * ptime) / 1000;
  const n = Math.round((options.seconds * 1000) / ptime);
  const f = options.frequency ?? 440;
  const amp = options.amplitude ?? 8000;
  const rnd = seededRandom(options.seed ?? 1);
  const drift = options.drift ?? 0;
  const base = options.delayMs ?? 20;
  const jitter = options.jitterMs ?? 0;
  const reference = muLawTone(0, n * spf, f, amp);
  const out: SentPacket[] = [];
  let held: SentPacket[] = [];
  for (let i = 0; i < n; i++) {
    // The sender's clock says packet i is due at i × ptime; on ours that is i × ptime / (1 + drift).
    const sent = (i * ptime) / (1 + drift);
    const lost = rnd() < (options.loss ?? 0);
    let arrival = sent + base + (jitter ? (rnd() * 2 - 1) * jitter : 0);
    const st = options.stalls;
    if (st && arrival >= st.first) {
      const k = Math.floor((arrival - st.first) / st.every);
      const start = st.first + k * st.every;
      if (arrival < start + st.length) arrival = start + st.length;
    }
    if (lost) continue;
    const payload = new Uint8Array(spf);
    for (let j = 0; j < spf; j++) payload[j] = MULAW_ENCODE[reference[i * spf + j] & 0xffff];
    const p: SentPacket = {
      arrival,
      sent,
      index: i,
      frame: {
        kind: "rtp",
        payloadType: 0,
        sequence: (1000 + i) & 0xffff,
        timestamp: (90000 + i * spf) >>> 0,
        ssrc: options.ssrc ?? 0x1234,
        marker: i === 0,
        payload,
        codec: "PCMU",
        clockRate: 8000,
      },
    };
    if (options.burst && options.burst > 1) {
      held.push(p);
      if (held.length === options.burst) {
        const t = Math.max(...held.map((h) => h.arrival));
        for (const h of held) out.push({ ...h, arrival: t });
        held = [];
      }
    } else out.push(p);
  }
  for (const h of held) out.push(h);
  out.sort((a, b) => a.arrival - b.arrival || a.index - b.index);
  return { packets: out, sent: n, reference, spf };
}
