/**
 * The record-mode buffer: RTP packets in, encoded frames out on the *sender's*
 * timeline, for a receive chain that ends in a file. Nothing here looks at the
 * clock: a recording depends only on the packets (which arrived, in which
 * order), never on how promptly the sender or the receiver was scheduled.
 * Their arrival times serve one bound only: no sender's timeline outruns real
 * time (below).
 *
 * - Packets are put in order by extended RTP timestamp and played out as soon
 *   as the samples before them are there; `pts` is the position on the sender's
 *   timeline (in clock-rate samples since the stream's first packet).
 * - A gap is waited for while the packets received after it hold less than
 *   `reorder_ms` of the sender's media; beyond that (or at the end of the
 *   stream) it is declared lost. A gap the sequence numbers say was lost is
 *   concealed, exactly its length (a `concealed` frame the decoder fills with
 *   PLC); a gap with no missing sequence number is the sender's silence
 *   (discontinuous transmission): nothing is emitted, the sink fills it.
 * - A packet that arrives after its gap was declared lost is dropped (`late`).
 * - Packets tagged `telephone-event` (RFC 4733 events sharing the stream's
 *   sequence numbers) carry no audio: their sequence numbers are known not to
 *   be audio, so a gap they account for is the sender's silence (a sender that
 *   mutes its audio during an event), never a loss.
 * - RFC 3550 A.1: a new source is accepted only after `probation` packets
 *   with nearby sequence numbers (consecutive but for reordering) during which
 *   the current source sent nothing: a forged SSRC never displaces a flowing
 *   stream, and probation loses none of a real new source's packets. Sources on
 *   probation live in a fixed table of slots indexed by a hash of the SSRC, so
 *   a flood of forged SSRCs costs no memory. A sequence jump larger than
 *   MAX_DROPOUT, a packet more than MAX_MISORDER behind, or a timestamp that
 *   leaps more than `maxGapMs` beyond what the sequence numbers explain must be
 *   confirmed by the next packet (a resynchronized sender) and otherwise is
 *   dropped (its place is concealed like a loss).
 * - A gap (a loss, or the sender's silence) is filled only as far as real time
 *   allows: the recording's end may run ahead of the packets' arrival times
 *   (from the first packet on, plus {@linkcode MAX_SENDER_SKEW} for a fast
 *   clock) by at most `maxGapMs`, and the rest of a longer gap is cut (counted
 *   in `cut_samples`). No real sender gets there; a peer whose sequence numbers
 *   or timestamps leap ahead on every packet made a 10 s call a recording of
 *   8 hours (480 MB). Audio received is never cut.
 * - A stream's start waits for one reorder window of audio, so packets that
 *   came reordered at the very start still play in order; a new stream
 *   (confirmed SSRC change, resynchronized sender) continues the output
 *   timeline where the old one ended, so a recording never jumps back.
 *
 * Memory is bounded by `reorderMs` of held audio plus one packet, the
 * probation slots, and {@linkcode MAX_EVENT_RUNS} runs of event sequence numbers.
 *
 * @module
 */
import type { EncodedFrame, RtpFrame } from "../../core/frame.ts";
import { isTelephoneEvent } from "./telephone_event.ts";

/** RFC 3550 A.1: a sequence jump beyond this needs confirmation. */
export const MAX_DROPOUT = 3000;
/** RFC 3550 A.1: packets this far behind the highest are old (duplicates or stale). */
export const MAX_MISORDER = 100;
/**
 * Runs of consecutive telephone-event sequence numbers a buffer remembers at most: a stream of events (however long)
 * is one run, so only packets forged to leave holes between them fill this; beyond it the oldest run is forgotten
 * (its sequence numbers would count as lost, were audio still to come before them).
 */
export const MAX_EVENT_RUNS = 4 * MAX_MISORDER;
/** The sender's clock may run this much faster than ours (5 %) before its gaps are cut (see the module doc). */
export const MAX_SENDER_SKEW = 0.05;
/** A source on probation counts packets whose sequence numbers lie this close together (reordering allowed). */
const PROBATION_SPREAD = 4;

/** Options of a {@linkcode RecordBuffer}. */
export interface RecordBufferOptions {
  /** Audio received after a gap, in ms of the sender's media, before the gap is declared lost (default 300). */
  reorderMs?: number;
  /** Consecutive packets a new source needs before it is accepted (default 2). */
  probation?: number;
  /**
   * Slots for candidate sources (SSRCs on probation), indexed by a hash of the
   * SSRC: a flood of forged SSRCs overwrites slots but never grows memory, and
   * rarely hits the slot of a real new source between two of its packets
   * (default 256).
   */
  sourceSlots?: number;
  /** Samples of a payload (default: one per byte, as G.711). */
  samplesOf?: (payload: Uint8Array) => number;
  /**
   * Largest forward leap of the timestamp, in ms beyond what the sequence
   * numbers explain, taken as the sender's silence (default 10 000); a larger
   * one, or any leap back, must be confirmed by the next packet and then
   * starts a new timeline where the recording ended. Also how far the
   * recording may run ahead of the packets' arrival times before gaps are cut.
   */
  maxGapMs?: number;
}

/** Counters of a {@linkcode RecordBuffer}. */
export interface RecordBufferStats {
  /** Packets accepted into the recording. */
  received: number;
  /** Packets declared lost (from sequence numbers). */
  lost: number;
  /** Samples concealed for them. */
  concealed_samples: number;
  /** Packets that arrived after their gap had been declared lost. */
  late: number;
  /** Duplicates dropped. */
  duplicate: number;
  /** Packets of sources not (yet) accepted: probation, or forged. */
  foreign: number;
  /** Packets dropped for an unconfirmed sequence jump. */
  jumps: number;
  /** Streams started (first source, then each confirmed change). */
  streams: number;
  /** Samples of sender silence (timestamp gaps without missing packets). */
  silence_samples: number;
  /** Samples of gaps (losses, silence) not filled: the sender's timeline ran ahead of real time. */
  cut_samples: number;
  /** Packets held waiting for a gap right now. */
  held: number;
  /** Most packets held at once. */
  max_held: number;
  /** Longest packet received (ms of audio). */
  max_packet_ms: number;
  /** Telephone-event packets (no audio; their sequence numbers are not losses). */
  events: number;
  /**
   * Runs of consecutive telephone-event sequence numbers remembered now (those the output has not passed), at most
   * {@linkcode MAX_EVENT_RUNS}.
   */
  event_runs: number;
}

interface Held {
  /** Extended sequence number. */
  seq: number;
  /** Extended timestamp of its first sample. */
  ts: number;
  /** Samples. */
  n: number;
  payload: Uint8Array;
}

interface Candidate {
  ssrc: number;
  /** Its packets on probation (played once it is accepted, so probation loses nothing). */
  packets: RtpFrame[];
  /** Packets of the current source when this candidate began: one more since then resets it. */
  mark: number;
}

/**
 * A set of sequence numbers kept as sorted runs `[from, to)` of consecutive ones, at most `max` runs: adding and
 * counting cost the number of runs at worst, and a stream of consecutive numbers costs one run however long.
 */
class SeqRuns {
  /** Starts and ends (exclusive) of the runs, sorted, disjoint and never adjacent. */
  #from: number[] = [];
  #to: number[] = [];

  constructor(readonly max: number) {}

  /** Runs held. */
  get size(): number {
    return this.#from.length;
  }

  /** Adds `seq`; forgets the runs wholly below `floor` first when full, then the oldest. */
  add(seq: number, floor: number): void {
    const from = this.#from, to = this.#to;
    // The last run starting at or before seq (most numbers come in order: at the end).
    let i = from.length - 1;
    while (i >= 0 && from[i] > seq) i--;
    if (i >= 0 && seq < to[i]) return; // held already
    if (i >= 0 && seq === to[i]) {
      to[i]++;
      if (i + 1 < from.length && from[i + 1] === to[i]) {
        to[i] = to[i + 1];
        from.splice(i + 1, 1);
        to.splice(i + 1, 1);
      }
      return;
    }
    if (i + 1 < from.length && from[i + 1] === seq + 1) {
      from[i + 1] = seq;
      return;
    }
    from.splice(i + 1, 0, seq);
    to.splice(i + 1, 0, seq + 1);
    if (from.length > this.max) {
      let k = 0;
      while (k < from.length && to[k] <= floor) k++;
      const drop = Math.max(k, 1);
      from.splice(0, drop);
      to.splice(0, drop);
    }
  }

  /** How many of `[a, b)` are held. */
  count(a: number, b: number): number {
    let n = 0;
    for (let i = 0; i < this.#from.length; i++) {
      const lo = Math.max(a, this.#from[i]), hi = Math.min(b, this.#to[i]);
      if (hi > lo) n += hi - lo;
    }
    return n;
  }

  /** Forgets every number. */
  clear(): void {
    this.#from.length = 0;
    this.#to.length = 0;
  }
}

type Emit = (f: EncodedFrame) => void;

/**
 * Orders packets for a recording; see the module documentation.
 *
 * @example
 * ```ts
 * const rb = new RecordBuffer({ reorderMs: 300 });
 * const out: EncodedFrame[] = [];
 * rb.insert(rtp, (f) => out.push(f)); // frames come out as soon as they are in order
 * rb.flush((f) => out.push(f)); // end of stream: declare what is missing lost
 * ```
 */
export class RecordBuffer {
  readonly #reorderMs: number;
  readonly #probation: number;
  readonly #samplesOf: (payload: Uint8Array) => number;
  readonly #maxGapMs: number;
  readonly #slots: (Candidate | undefined)[];
  #codec = "";
  #clockRate = 8000;

  // Current stream.
  #ssrc: number | undefined;
  #currentPackets = 0;
  #maxSeq = 0; // extended
  #maxTs = 0; // extended
  #lastN = 160; // samples of the newest packet (what a sequence step is worth)
  #pendingJump: { seq: number; ts: number; n: number; payload: Uint8Array } | undefined;
  /** True from a stream's start until its first reorder window is held (earlier packets may still come). */
  #priming = false;
  /** pts = extended timestamp − #tsBase. */
  #tsBase = 0;
  /** Next extended timestamp to play, and the sequence number expected there. */
  #nextTs = 0;
  #nextSeq = 0;
  #held: Held[] = []; // sorted by ts
  #heldSamples = 0;
  #outEnd = 0; // pts after the last sample emitted
  #concealedSeqs = new Set<number>(); // sequence numbers declared lost recently (to count late ones)
  /** Arrival of the first packet and the latest arrival (ms), when packets carry them. */
  #firstArrival: number | undefined;
  #lastArrival = 0;
  readonly #n: RecordBufferStats = {
    received: 0,
    lost: 0,
    concealed_samples: 0,
    late: 0,
    duplicate: 0,
    foreign: 0,
    jumps: 0,
    streams: 0,
    silence_samples: 0,
    cut_samples: 0,
    held: 0,
    max_held: 0,
    max_packet_ms: 0,
    events: 0,
    event_runs: 0,
  };
  /** Extended sequence numbers of the current stream's telephone-event packets not yet passed by the output. */
  #eventSeqs = new SeqRuns(MAX_EVENT_RUNS);

  /**
   * Creates a buffer.
   * @param opts reorder window, probation, source slots, payload size rule, silence limit
   */
  constructor(opts: RecordBufferOptions = {}) {
    this.#reorderMs = opts.reorderMs ?? 300;
    this.#probation = Math.max(1, opts.probation ?? 2);
    this.#samplesOf = opts.samplesOf ?? ((p) => p.length);
    this.#maxGapMs = opts.maxGapMs ?? 10_000;
    this.#slots = new Array(Math.max(1, opts.sourceSlots ?? 256));
  }

  /** Counters. */
  stats(): RecordBufferStats {
    return { ...this.#n, held: this.#held.length, event_runs: this.#eventSeqs.size };
  }

  /** Takes a received packet; emits whatever is now in order. */
  insert(frame: RtpFrame, emit: Emit): void {
    if (isTelephoneEvent(frame)) {
      this.#noteEvent(frame);
      return;
    }
    if (frame.codec) this.#codec = frame.codec;
    if (frame.clockRate) this.#clockRate = frame.clockRate;
    if (frame.arrival !== undefined) {
      this.#firstArrival ??= frame.arrival;
      if (frame.arrival > this.#lastArrival) this.#lastArrival = frame.arrival;
    }
    if (this.#samplesOf(frame.payload) <= 0) return;
    if (frame.ssrc !== this.#ssrc) {
      const accepted = this.#probe(frame);
      if (!accepted) {
        this.#n.foreign++;
        return;
      }
      // Start from the oldest of its packets (they may have come reordered), then take the others.
      accepted.sort((a, b) => ((a.sequence - b.sequence) << 16) >> 16);
      this.#restart(accepted[0], emit);
      this.#ssrc = frame.ssrc;
      for (const p of accepted.slice(1)) this.#accept(p, emit);
      return;
    }
    this.#currentPackets++;
    this.#accept(frame, emit);
  }

  /** A telephone-event packet of the current stream: its sequence number is not audio. */
  #noteEvent(frame: RtpFrame): void {
    this.#n.events++;
    if (frame.ssrc !== this.#ssrc || this.#ssrc === undefined) return;
    const dSeq = ((frame.sequence - (this.#maxSeq & 0xffff)) << 16) >> 16;
    if (dSeq > MAX_DROPOUT || dSeq < -MAX_MISORDER) return;
    const seq = this.#maxSeq + dSeq;
    if (seq < this.#nextSeq) return;
    this.#eventSeqs.add(seq, this.#nextSeq);
    // The next audio packet follows it: its sequence step is one, its timestamp step one packet.
    if (dSeq > 0) this.#maxSeq = seq;
  }

  /** Telephone-event packets among the sequence numbers `[from, to)`. */
  #eventsIn(from: number, to: number): number {
    return this.#eventSeqs.count(from, to);
  }

  /** End of stream: whatever is missing before the held packets is declared lost; everything held is emitted. */
  flush(emit: Emit): void {
    this.#drain(emit, true);
  }

  /**
   * RFC 3550 A.1 probation of a source that is not the current one: its packets
   * once it has sent `probation` with nearby sequence numbers while the current
   * source sent nothing, else undefined.
   */
  #probe(frame: RtpFrame): RtpFrame[] | undefined {
    if (this.#probation <= 1) return [frame];
    const slot = Math.imul(frame.ssrc, 0x9e3779b1) >>> 0;
    const i = slot % this.#slots.length;
    let c = this.#slots[i];
    if (!c || c.ssrc !== frame.ssrc) c = this.#slots[i] = { ssrc: frame.ssrc, packets: [], mark: this.#currentPackets };
    const near = (p: RtpFrame) => {
      const d = Math.abs(((p.sequence - frame.sequence) << 16) >> 16);
      return d > 0 && d <= PROBATION_SPREAD;
    };
    if (c.mark !== this.#currentPackets || !c.packets.every(near)) {
      c.packets.length = 0;
      c.mark = this.#currentPackets;
    }
    c.packets.push(frame);
    if (c.packets.length < this.#probation) return undefined;
    this.#slots[i] = undefined;
    // The packets counted as foreign while on probation are part of the stream after all.
    this.#n.foreign -= c.packets.length - 1;
    return c.packets;
  }

  /** Starts a new timeline at `frame` (a new source, or a sender that restarted), after the old one. */
  #restart(frame: RtpFrame, emit: Emit): void {
    this.#drain(emit, true); // what the old stream left is played out
    this.#n.streams++;
    this.#currentPackets = 0;
    this.#pendingJump = undefined;
    this.#maxSeq = frame.sequence;
    this.#maxTs = frame.timestamp;
    this.#nextTs = frame.timestamp;
    this.#nextSeq = frame.sequence;
    this.#priming = true;
    this.#concealedSeqs.clear();
    this.#eventSeqs.clear();
    this.#hold(frame, this.#maxSeq, this.#maxTs, this.#samplesOf(frame.payload));
    this.#n.received++;
    this.#drain(emit, false);
  }

  /** A packet of the current source. */
  #accept(frame: RtpFrame, emit: Emit): void {
    const n = this.#samplesOf(frame.payload);
    // Extend sequence and timestamp around the highest seen.
    const dSeq = ((frame.sequence - (this.#maxSeq & 0xffff)) << 16) >> 16;
    const seq = this.#maxSeq + dSeq;
    const ts = this.#maxTs + ((frame.timestamp - (this.#maxTs % 4294967296)) | 0);
    // Where the timestamp should be for this sequence number: a timestamp far from it is a jump too.
    const off = ts - (this.#maxTs + dSeq * this.#lastN);
    const rate = this.#clockRate / 1000;
    const leap = off > this.#maxGapMs * rate || off < -(this.#reorderMs * rate + Math.abs(dSeq) * this.#lastN);
    if (dSeq > MAX_DROPOUT || dSeq < -MAX_MISORDER || leap) {
      // A jump: accepted only when the next packet confirms it (the sender restarted its sequence or clock).
      const p = this.#pendingJump;
      if (p && frame.sequence === ((p.seq + 1) & 0xffff) && ((frame.timestamp - p.ts) | 0) === p.n) {
        this.#restart({ ...frame, sequence: p.seq, timestamp: p.ts, payload: p.payload }, emit);
        this.#accept(frame, emit);
      } else {
        this.#pendingJump = { seq: frame.sequence, ts: frame.timestamp, n, payload: frame.payload };
        this.#n.jumps++;
      }
      return;
    }
    this.#pendingJump = undefined;
    if (ts + n <= this.#nextTs && !this.#priming) {
      // Entirely played already: a duplicate, or a packet whose gap was declared lost.
      if (this.#concealedSeqs.has(seq)) this.#n.late++;
      else this.#n.duplicate++;
      return;
    }
    for (const h of this.#held) {
      if (h.seq === seq) {
        this.#n.duplicate++;
        return;
      }
    }
    if (dSeq > 0) {
      this.#maxSeq = seq;
      this.#maxTs = Math.max(this.#maxTs, ts);
      this.#lastN = n;
    }
    if (this.#priming && ts < this.#nextTs) {
      // An earlier packet of a stream that has not played yet: the stream starts there.
      this.#nextTs = ts;
      this.#nextSeq = seq;
    }
    this.#hold(frame, seq, ts, n);
    this.#n.received++;
    this.#drain(emit, false);
  }

  #hold(frame: RtpFrame, seq: number, ts: number, n: number): void {
    const ms = (n * 1000) / this.#clockRate;
    if (ms > this.#n.max_packet_ms) this.#n.max_packet_ms = Math.round(ms * 10) / 10;
    let payload = frame.payload;
    if (ts < this.#nextTs) {
      // Its head was played (or concealed) already: keep the rest.
      const cut = this.#nextTs - ts;
      payload = payload.subarray(cut);
      n -= cut;
      ts = this.#nextTs;
    }
    const a = this.#held;
    let i = a.length;
    while (i > 0 && a[i - 1].ts > ts) i--;
    a.splice(i, 0, { seq, ts, n, payload });
    this.#heldSamples += n;
    if (a.length > this.#n.max_held) this.#n.max_held = a.length;
  }

  /** Emits what is in order; with `force`, or when the audio held after a gap exceeds the window, crosses gaps. */
  #drain(emit: Emit, force: boolean): void {
    const a = this.#held;
    const window = (this.#reorderMs * this.#clockRate) / 1000;
    if (this.#priming) {
      if (!force && this.#heldSamples < window) return;
      this.#priming = false;
      if (a.length > 0) this.#tsBase = this.#nextTs - this.#outEnd;
    }
    while (a.length > 0) {
      const h = a[0];
      if (h.ts > this.#nextTs) {
        // A gap before the first held packet: packets the sequence numbers say never came (wait for them,
        // within the window), or the sender's silence (nothing is missing: go on at once).
        const missing = h.seq - this.#nextSeq - this.#eventsIn(this.#nextSeq, h.seq);
        if (missing > 0 && !force && this.#heldSamples < window) return;
        let gap = h.ts - this.#nextTs;
        // Filled only as far as real time allows (see the module doc); the rest is cut after the part filled.
        const cut = Math.max(0, gap - this.#room());
        gap -= cut;
        if (missing > 0) {
          this.#n.lost += missing;
          this.#n.concealed_samples += gap;
          for (let s = this.#nextSeq; s < h.seq; s++) this.#concealedSeqs.add(s);
          if (this.#concealedSeqs.size > 4 * MAX_MISORDER) {
            this.#concealedSeqs = new Set([...this.#concealedSeqs].slice(-2 * MAX_MISORDER));
          }
          if (gap > 0) emit(this.#frame(new Uint8Array(gap), gap, this.#nextTs, "concealed"));
        } else {
          this.#n.silence_samples += gap; // sender silence: the sink fills it from the pts gap
        }
        this.#tsBase += cut;
        this.#n.cut_samples += cut;
        this.#nextTs = h.ts;
        this.#nextSeq = h.seq;
      }
      a.shift();
      this.#heldSamples -= h.n;
      if (h.ts + h.n <= this.#nextTs) continue; // overlapped entirely by what was played
      const skip = this.#nextTs - h.ts; // > 0: its head overlaps what was played
      const payload = skip > 0 ? h.payload.subarray(skip) : h.payload;
      emit(this.#frame(payload, h.n - Math.max(0, skip), this.#nextTs, "normal"));
      this.#nextTs = h.ts + h.n;
      this.#nextSeq = Math.max(this.#nextSeq, h.seq + 1);
    }
  }

  /**
   * Samples a gap at the output's end may fill: how far the recording may still run ahead of the latest arrival
   * (`maxGapMs`, with {@linkcode MAX_SENDER_SKEW}); unbounded for packets without arrival times.
   */
  #room(): number {
    if (this.#firstArrival === undefined) return Infinity;
    const aheadMs = (this.#lastArrival - this.#firstArrival) * (1 + MAX_SENDER_SKEW) + this.#maxGapMs;
    return Math.max(0, Math.floor((aheadMs * this.#clockRate) / 1000) - (this.#nextTs - this.#tsBase));
  }

  #frame(payload: Uint8Array, samples: number, ts: number, type: "normal" | "concealed"): EncodedFrame {
    const pts = ts - this.#tsBase;
    this.#outEnd = Math.max(this.#outEnd, pts + samples);
    const codec = this.#codec as EncodedFrame["codec"];
    return { kind: "encoded", codec, clockRate: this.#clockRate, payload, pts, type };
  }
}
