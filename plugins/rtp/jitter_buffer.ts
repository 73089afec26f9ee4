/**
 * `jitter-buffer`: RTP packets of any duration in, one encoded frame per `ptime`
 * out, paced by the media clock (a pull model, like pjmedia's jbuf).
 *
 * `process()` only inserts packets. From the first packet on, the stage runs a
 * drift-free tick grid on the media clock (tick n at t0 + n × ptime, t0 = first
 * arrival + `initial_delay`) and at every tick emits exactly one
 * {@linkcode EncodedFrame} whose `type` is:
 *
 * - `normal`: received audio: the `ptime` of samples due at this tick; or, where
 *   the received samples end inside that frame (a gap starts there, or the
 *   stream ends), those samples alone, a shorter frame, so that no received
 *   sample is dropped;
 * - `concealed`: the samples due are missing (lost, or late) while audio is
 *   flowing: a payload of `ptime` (samples per frame) whose content is to be
 *   ignored; the decoder synthesizes packet-loss concealment;
 * - `silence`: nothing to play (after a reset until the new stream's first
 *   packet is due, or once the stream has been missing for longer than
 *   `max_conceal`); `ptime` of the codec's silence.
 *
 * The buffer knows no codec by name: the codec's registration (looked up in the
 * stage's `ctx.codecs` by the name the packets carry) gives its clock rate, how
 * many bytes hold how many samples, its silence payload and which payloads are
 * quiet.
 *
 * ## Packets of any duration: a buffer of timestamp ranges
 *
 * A packet's duration is its payload length in the codec's frame geometry
 * (G.711: one byte per sample; from one codec frame up to
 * {@linkcode JB_MAX_PACKET_MS}; larger, empty or partial-frame packets are
 * dropped and counted as `invalid`) and its place is its RTP timestamp. The
 * buffer holds the received sample ranges `[start, end)` of a *play timeline*
 * (in samples: a stream maps its extended timestamp `ts` to `ts − ts0 + p0`),
 * sorted and never overlapping: a packet overlapping samples already held only
 * adds those not held yet (one entirely held is a duplicate). Each tick plays
 * the samples `[pos, pos + spf)` and moves `pos` on, so a frame is cut from one
 * packet or joined from several: ffmpeg's 1460-sample packets, GStreamer's
 * 1388-sample ones, 30 ms packets into a 20 ms buffer, or any mix, play
 * sample-exact.
 *
 * Losses are kept to the timeline: the samples received before a gap play (a
 * shorter normal frame where the gap starts inside a frame), the gap is
 * concealed by whole frames, and play resumes at the first received sample
 * after it (the frame in which the gap ends is concealed, and the delay grows
 * by the part of it that was received, unless that would exceed `max_delay`:
 * then that part is dropped). A lost packet is thus concealed by as many
 * frames as it covers: exactly its duration when it lies on the frame grid.
 *
 * ## Playout delay and its adaptation
 *
 * A packet is needed when the frame holding its first sample plays. Its
 * relative transit time is `arrival − media time of that frame's first sample`
 * (its RTP timestamp, minus the part of a frame by which it is off the frame
 * grid). Over a sliding window ({@linkcode JB_WINDOW_MS}, in 1 s blocks) the
 * buffer keeps the smallest and largest transit. The playout delay D is how
 * long a packet of the smallest transit waits before its first frame plays;
 * a packet is late when its transit exceeds the smallest by more than D. The
 * target delay is `(largest − smallest transit) + 5 ms`, clamped to
 * [`min_delay`, `max_delay`].
 *
 * A packet brings its whole duration at once, so a steady stream of long
 * packets (sent when full, or when their first sample is due as GStreamer's
 * udpsink does) needs no more delay than short ones: a 183 ms packet arriving
 * every 183 ms plays from `initial_delay` after it arrives, and the next one
 * is there before it is needed. A bursty sender (ffmpeg sends a 1460- and a
 * 588-sample packet together every 256 ms) shows its bursts as transit spread
 * (182.5 ms), which the target covers: the first burst already starts the
 * buffer with that delay, without concealment.
 *
 * - Growing is fast: as soon as D is below the target (a late packet widens the
 *   transit spread at once), each tick inserts a frame (concealed while talking,
 *   silence otherwise) without consuming samples, until D reaches the target.
 *   A late packet whose place has only been concealed so far (every frame since
 *   its first sample was due was concealed or silence) is played rather than
 *   dropped: `pos` moves back to its first sample, and the frames played while
 *   waiting for it become the growth (counted as `inserted`, the packet as
 *   `recovered`), up to the target plus one frame and `max_delay`. So a sender
 *   that switches to longer packets, or a reordered long packet, costs only the
 *   frames concealed while it was awaited.
 * - Shrinking is slow: only when D exceeds the target by a whole frame, and not
 *   before the stream has been observed for a full window (a jitter peak is
 *   remembered for the window's length). A frame is then removed by skipping a
 *   missing frame (a loss or silence: inaudible, one per tick), or while audio
 *   flows, at most one frame per {@linkcode JB_SHRINK_STEP_MS}, preferring a quiet
 *   frame (the codec's `isQuiet`, e.g. G.711 segment ≤ 2), any frame after
 *   {@linkcode JB_SHRINK_FORCE_MS}.
 *
 * ## Sequence and resets
 *
 * Packets tagged `telephone-event` (RFC 4733 events in the same stream, tagged
 * by the `rtp-depacketizer`) carry no audio: their sequence numbers count as
 * received (they are not losses) and nothing else of them is used.
 *
 * Sequence numbers (16 bits) and timestamps (32 bits) are extended across
 * wrap-around. Duplicates are dropped (by extended sequence number, or when
 * every sample is already held); a packet's samples whose tick has passed are
 * dropped as late (the whole packet: `late`; only its head: `trimmed`). The
 * buffer resets (the old stream's buffered samples still play at their ticks,
 * then the new stream starts at the current delay, on the same tick grid) on
 * an SSRC change, on a sequence jump of more than 3000 confirmed by a second
 * consecutive packet (RFC 3550 A.1), and on a timestamp jump (a packet due more
 * than 2 s late with a newer sequence number, or more than `max_delay` + 2 s
 * early). A packet that would be late while nothing plays (after a pause in the
 * stream) starts a new talkspurt at the current delay instead of being dropped.
 *
 * When `ptime` is not set it is learned: from the first packet's duration when it
 * is 10..60 ms, then from timestamps (three consecutive
 * packets whose timestamp step and size agree on another duration of 10..60 ms
 * switch it, from the next tick on, without losing buffered audio). Packets of
 * other durations (e.g. 183 ms) leave it as it is (until learned: the codec's
 * default packet duration, 20 ms for G.711).
 *
 * @example Pipeline entry
 * ```json
 * { "use": "jitter-buffer", "min_delay": 20, "max_delay": 300, "initial_delay": 60 }
 * ```
 *
 * @module
 */
import { z } from "zod";
import type { Timer } from "../../core/clock.ts";
import { type CodecInfo, type CodecRegistry, payloadSamples } from "../../core/codec.ts";
import type { EncodedFrame, Format, RtpFrame } from "../../core/frame.ts";
import { expectFormat, type FormatCheck } from "../../core/format_check.ts";
import type { StageConfig } from "../../core/pipeline.ts";
import { RecordBuffer } from "./record_buffer.ts";
import { isTelephoneEvent } from "./telephone_event.ts";
import { definePlugin, FormatError, type RunContext } from "../../core/stage.ts";

/** Options of the `jitter-buffer` stage. */
export const jitterBufferOptions = z.strictObject({
  min_delay: z.number().min(0).max(1000).default(20).describe(
    "Smallest playout delay the adaptation may reach, 0..1000 ms (default 20).",
  ),
  max_delay: z.number().min(10).max(5000).default(500).describe(
    "Largest playout delay the adaptation may reach, 10..5000 ms (default 500).",
  ),
  initial_delay: z.number().min(0).max(5000).optional().describe(
    "Playout delay of the first packet, 0..5000 ms, within [min_delay, max_delay] " +
      "(default 60, raised to min_delay or lowered to max_delay when outside).",
  ),
  ptime: z.number().int().min(10).max(60).optional().describe(
    "Frame duration in ms, 10..60. Default: learned from the packets (until known: the codec's default, 20 ms for " +
      "the built-in codecs).",
  ),
  max_conceal: z.number().min(0).max(2000).default(100).describe(
    "How long a missing stream is concealed before the buffer plays silence, 0..2000 ms (default 100).",
  ),
  mode: z.enum(["auto", "playout", "record"]).default("auto").describe(
    '"playout": one frame per ptime on the media clock, with adaptive delay (for a speaker, a network sink, a ' +
      'bridge). "record": frames on the sender\'s timeline, as soon as they are in order, whatever the timing ' +
      '(nothing dropped or inserted but what the sequence numbers say was lost; for a file). Default "auto": ' +
      "record when the chain ends in a sink that is not real-time (a file), playout otherwise.",
  ),
  reorder_ms: z.number().min(0).max(5000).default(300).describe(
    "Record mode: how much of the sender's audio may arrive after a gap before the gap is declared lost and " +
      "concealed, 0..5000 ms (default 300).",
  ),
}).refine((o) => o.min_delay <= o.max_delay, {
  message: "expected min_delay <= max_delay",
  path: ["max_delay"],
}).refine(
  (o) => o.initial_delay === undefined || (o.min_delay <= o.initial_delay && o.initial_delay <= o.max_delay),
  { message: "expected min_delay <= initial_delay <= max_delay", path: ["initial_delay"] },
);

/** Validated options of the `jitter-buffer` stage. */
export type JitterBufferOptions = z.output<typeof jitterBufferOptions>;

/** The options the playout buffer ({@linkcode JitterBuffer}) uses. */
export type PlayoutOptions = Pick<
  JitterBufferOptions,
  "min_delay" | "max_delay" | "initial_delay" | "ptime" | "max_conceal"
>;

/** Length of the window over which transit times are observed (ms). */
export const JB_WINDOW_MS = 8000;
/** Duration of one block of the window (ms). */
const BLOCK_MS = 1000;
const BLOCKS = JB_WINDOW_MS / BLOCK_MS;
/** Margin added to the measured transit spread (ms). */
const GUARD_MS = 5;
/** While audio flows, at most one frame is removed per this many ms. */
export const JB_SHRINK_STEP_MS = 500;
/** While audio flows, after wanting to shrink this long, any frame may be removed (ms). */
export const JB_SHRINK_FORCE_MS = 4000;
/** Longest packet accepted (ms of audio); longer ones are dropped and counted as `invalid`. */
export const JB_MAX_PACKET_MS = 1000;
/** A sequence jump larger than this (either way) starts a probation (RFC 3550 A.1 MAX_DROPOUT). */
const MAX_DROPOUT = 3000;
/** A packet this much newer or older than expected (ms) signals a timestamp jump. */
const TS_JUMP_MS = 2000;
/** Size of the duplicate-detection ring of sequence numbers. */
const SEQ_RING = 1024;

/** Counters and gauges of a {@linkcode JitterBuffer}. */
export interface JitterBufferStats {
  /** Unique packets received (late ones included, duplicates and invalid ones not). */
  received: number;
  /** Packets never received (expected from sequence numbers minus received). */
  lost: number;
  /** Packets dropped because all their samples arrived after their playout time. */
  late: number;
  /** Packets whose head arrived after its playout time: the head was dropped, the rest played. */
  trimmed: number;
  /** Late packets played by growing the delay over the frames concealed while waiting for them. */
  recovered: number;
  /** Duplicate packets dropped (same sequence number, or every sample already held). */
  duplicate: number;
  /**
   * Packets dropped for their size (empty, longer than {@linkcode JB_MAX_PACKET_MS}, or not whole codec frames) or
   * their codec (not registered, or none known).
   */
  invalid: number;
  /** Frames emitted as `normal`. */
  normal: number;
  /** Frames emitted as `concealed`. */
  concealed: number;
  /** Frames emitted as `silence`. */
  silence: number;
  /** Frames inserted to grow the delay (including frames concealed while waiting for a recovered packet). */
  inserted: number;
  /** Missing frames skipped to shrink the delay. */
  skipped: number;
  /** Buffered frames dropped to shrink the delay. */
  dropped: number;
  /** Resets (SSRC change, sequence or timestamp jump). */
  resets: number;
  /** Packets of telephone events (RFC 4733): their sequence numbers count as received; they carry no audio. */
  events: number;
  /** Resets caused by an SSRC change. */
  ssrc_changes: number;
  /** Packets discarded: an unconfirmed sequence jump. */
  discarded: number;
  /** Packets (or the parts of them not played yet) waiting in the buffer. */
  buffered: number;
  /** Longest packet received (ms of audio). */
  max_packet_ms: number;
  /** From the first packet's arrival to the tick that played its first sample (ms; 0 until then). */
  first_play_ms: number;
  /** Current playout delay (ms): how long the first sample of a packet of the smallest transit waits. */
  delay_ms: number;
  /** Target playout delay (ms). */
  target_delay_ms: number;
  /** Average playout delay over the ticks so far (ms). */
  avg_delay_ms: number;
  /** Frame duration in use (ms). */
  ptime: number;
}

interface Stream {
  ssrc: number;
  /** Timestamp of the stream's first packet (the origin of extended timestamps). */
  ts0: number;
  /** Position of ts0 on the play timeline. */
  p0: number;
  /** Highest extended timestamp seen. */
  maxTs: number;
  /** Highest extended sequence number seen, and the lowest. */
  maxSeq: number;
  minSeq: number;
  /** Timestamp of the packet holding maxSeq (for ptime learning). */
  maxSeqTs: number;
  received: number;
  start: number;
}

/** Received samples `[start, end)` of the play timeline; `payload` holds exactly them. */
interface Range {
  start: number;
  end: number;
  payload: Uint8Array;
}

/** What the buffer holds of the samples `[from, from + n)`. */
interface Coverage {
  /** Samples received contiguously from `from` on (0: `from` itself is missing), at most n. */
  present: number;
  /** First received sample at or after `from` (Infinity: none). */
  next: number;
}

/** What a {@linkcode JitterBuffer} knows of the codec of its packets. */
export interface JitterBufferCodecs {
  /** The codec assumed until packets name another (e.g. the negotiated one). */
  codec?: CodecInfo;
  /** Where the codecs packets name are looked up (a stage's `ctx.codecs`). */
  codecs?: CodecRegistry;
}

/**
 * The jitter buffer's logic without timers: {@linkcode insert} packets as they
 * arrive, call {@linkcode tick} once per `ptime` at the times given by
 * {@linkcode nextTickTime}. The `jitter-buffer` stage drives it from the media clock.
 *
 * @example
 * ```ts
 * const jb = new JitterBuffer({ min_delay: 20, max_delay: 500, initial_delay: 40, max_conceal: 100 }, { codec: PCMU });
 * jb.insert(rtpFrame, 0); // first packet at t = 0 ms: plays at t = 40
 * jb.nextTickTime(); // 40
 * const frame = jb.tick(); // { kind: "encoded", type: "normal", ... }
 * ```
 */
export class JitterBuffer {
  /** Options in effect. */
  readonly options: PlayoutOptions;
  /** Called when the grid changes (first packet, ptime change), so the driver re-arms its timer. */
  onGrid?: () => void;
  /** Frame duration (ms). */
  ptime: number;
  #ptimeFixed: boolean;
  #info: CodecInfo | undefined;
  #codecs: CodecRegistry | undefined;
  #clockRate = 8000;
  /** Samples in the longest packet accepted ({@linkcode JB_MAX_PACKET_MS}). */
  #maxSamples = (8000 * JB_MAX_PACKET_MS) / 1000;
  /** Samples per frame (ptime). */
  #spf: number;
  /** The codec's payload geometry: `#fb` bytes hold `#fs` samples. */
  #fs = 1;
  #fb = 1;

  // Tick grid: tick n is due at t0 + n × ptime; `#tick` is the next one to run.
  #t0: number | undefined;
  #tick = 0;
  /** Play-timeline position of the first sample the next tick plays. */
  #pos = 0;
  /** Received samples from `#pos` on, sorted by position, never overlapping. */
  #ranges: Range[] = [];
  /** Where the current run of frames not played from received samples began (undefined: the last was normal). */
  #gapFrom: number | undefined;
  #stream: Stream | undefined;
  #seqRing = new Float64Array(SEQ_RING).fill(-1);
  #pendingJump: { frame: RtpFrame; arrival: number } | undefined;
  #talking = false;
  #missingRun = 0;
  #outPts = 0;
  #learnCount = 0;
  #learnSamples = 0;
  #firstArrival: number | undefined;
  #firstPlayMs = 0;
  #maxPacket = 0;

  // Transit window: per block (1 s of arrival time) the min and max transit.
  #blockIdx = new Float64Array(BLOCKS).fill(-Infinity);
  #blockMin = new Float64Array(BLOCKS);
  #blockMax = new Float64Array(BLOCKS);

  #lastTarget: number;
  #initialDelay: number;
  #lastShrink = -Infinity;
  #shrinkSince: number | undefined;
  #delaySum = 0;
  #delayTicks = 0;
  #lostBefore = 0;
  #n = {
    received: 0,
    late: 0,
    trimmed: 0,
    recovered: 0,
    duplicate: 0,
    invalid: 0,
    normal: 0,
    concealed: 0,
    silence: 0,
    inserted: 0,
    skipped: 0,
    dropped: 0,
    resets: 0,
    ssrc_changes: 0,
    discarded: 0,
    events: 0,
  };

  /**
   * @param options validated options
   * @param codecs the codec assumed until packets name another, and where named codecs are looked up; packets
   *   arriving while no codec is known are dropped as `invalid`
   */
  constructor(options: PlayoutOptions, codecs: JitterBufferCodecs = {}) {
    this.options = options;
    this.#codecs = codecs.codecs;
    this.#ptimeFixed = options.ptime !== undefined;
    this.ptime = options.ptime ?? codecs.codec?.ptime ?? 20;
    if (!(this.ptime >= 10 && this.ptime <= 60)) this.ptime = 20;
    this.#spf = this.#samplesPerFrame(this.ptime);
    this.#initialDelay = Math.max(options.min_delay, Math.min(options.max_delay, options.initial_delay ?? 60));
    this.#lastTarget = this.#initialDelay;
    if (codecs.codec) this.setCodec(codecs.codec);
  }

  /** The codec in use (undefined until one is set or named by a packet). */
  get codec(): CodecInfo | undefined {
    return this.#info;
  }

  /**
   * Sets the codec of the packets (and of the frames played). A codec of another clock rate or payload geometry
   * starts a new stream: what is buffered of the old one is dropped.
   */
  setCodec(info: CodecInfo): void {
    const old = this.#info;
    this.#info = info;
    if (
      old && old.clockRate === info.clockRate && old.frameSamples === info.frameSamples &&
      old.frameBytes === info.frameBytes
    ) return;
    if (old && (this.#stream || this.#ranges.length > 0)) {
      this.#reset();
      this.#ranges.length = 0;
    }
    this.#clockRate = info.clockRate;
    this.#maxSamples = (info.clockRate * JB_MAX_PACKET_MS) / 1000;
    this.#fs = info.frameSamples;
    this.#fb = info.frameBytes;
    // Until packets say otherwise, frames last the codec's default packet time.
    if (!this.#ptimeFixed && this.#t0 === undefined && info.ptime >= 10 && info.ptime <= 60) this.ptime = info.ptime;
    this.#spf = this.#samplesPerFrame(this.ptime);
  }

  /** Samples in a frame of `ms` milliseconds, in whole codec frames. */
  #samplesPerFrame(ms: number): number {
    return Math.max(1, Math.round((ms * this.#clockRate) / 1000 / this.#fs)) * this.#fs;
  }

  /** Bytes holding `samples` samples (a whole number of codec frames). */
  #bytes(samples: number): number {
    return this.#fs === 1 ? samples * this.#fb : (samples / this.#fs) * this.#fb;
  }

  /** Samples held by `bytes` bytes of payload. */
  #samples(bytes: number): number {
    return this.#fb === 1 ? bytes * this.#fs : (bytes / this.#fb) * this.#fs;
  }

  /** Switches to the registered codec `name`; false when it is not registered. */
  #useCodec(name: string): boolean {
    const c = this.#codecs?.get(name);
    if (!c) return false;
    if (c !== this.#info) this.setCodec(c);
    return true;
  }

  /** Due time of the next tick, or undefined before the first packet. */
  nextTickTime(): number | undefined {
    return this.#t0 === undefined ? undefined : this.#t0 + this.#tick * this.ptime;
  }

  /** Inserts a received packet that arrived at `arrival` (media-clock ms). */
  insert(frame: RtpFrame, arrival: number): void {
    if (isTelephoneEvent(frame)) {
      this.#noteEvent(frame);
      return;
    }
    if (
      (frame.codec !== undefined && frame.codec !== this.#info?.name && !this.#useCodec(frame.codec)) ||
      this.#info === undefined
    ) {
      this.#n.invalid++;
      return;
    }
    const bytes = frame.payload.length;
    const samples = this.#samples(bytes);
    if (bytes === 0 || (this.#fb !== 1 && bytes % this.#fb !== 0) || samples > this.#maxSamples) {
      this.#n.invalid++;
      return;
    }
    const ms = (samples * 1000) / this.#clockRate;
    if (ms > this.#maxPacket) this.#maxPacket = ms;
    let s = this.#stream;
    if (s && s.ssrc !== frame.ssrc) {
      this.#n.ssrc_changes++;
      this.#reset();
      s = undefined;
    }
    if (!s) {
      this.#anchor(frame, arrival);
      return;
    }
    // Extend the sequence number around the highest seen.
    const seqDiff = ((frame.sequence - (s.maxSeq & 0xffff)) << 16) >> 16;
    const ext = s.maxSeq + seqDiff;
    if (seqDiff > MAX_DROPOUT || seqDiff < -MAX_DROPOUT) {
      const p = this.#pendingJump;
      if (p && frame.sequence === ((p.frame.sequence + 1) & 0xffff)) {
        // Two consecutive packets agree: the sender restarted its sequence.
        this.#reset();
        this.#anchor(p.frame, p.arrival);
        this.insert(frame, arrival);
      } else {
        if (p) this.#n.discarded++;
        this.#pendingJump = { frame, arrival };
      }
      return;
    }
    if (this.#pendingJump) {
      this.#pendingJump = undefined;
      this.#n.discarded++;
    }
    // Extend the timestamp around the highest seen.
    const tsLow = s.maxTs % 4294967296;
    const extTs = s.maxTs + ((frame.timestamp - tsLow) | 0);
    const media = ((extTs - s.ts0) * 1000) / this.#clockRate; // ms of media since the stream's first packet
    const at = extTs - s.ts0 + s.p0; // its first sample on the play timeline
    const due = this.#t0! + this.#tick * this.ptime + ((at - this.#pos) * 1000) / this.#clockRate;
    const lead = due - arrival;
    if (lead > this.options.max_delay + TS_JUMP_MS || (lead < -TS_JUMP_MS && seqDiff > 0)) {
      // The timestamp jumped while the sequence went on: a new timeline.
      this.#reset();
      this.#anchor(frame, arrival);
      return;
    }
    // Duplicate?
    const ri = ext % SEQ_RING;
    if (this.#seqRing[ri] === ext) {
      this.#n.duplicate++;
      return;
    }
    this.#seqRing[ri] = ext;
    this.#n.received++;
    s.received++;
    const consecutive = ext === s.maxSeq + 1;
    const tsStep = extTs - s.maxSeqTs;
    if (ext > s.maxSeq) {
      s.maxSeq = ext;
      s.maxSeqTs = extTs;
    } else if (ext < s.minSeq) {
      s.minSeq = ext;
    }
    if (extTs > s.maxTs) s.maxTs = extTs;
    // Transit as seen by the tick grid: a packet is needed when the frame holding its first sample plays,
    // up to a frame before that sample (when packets are not cut on the frame grid).
    const offGrid = (((at - this.#pos) % this.#spf) + this.#spf) % this.#spf;
    this.#observe(arrival, arrival - media + (offGrid * 1000) / this.#clockRate);
    if (consecutive) this.#learn(samples, tsStep);
    this.#place(frame, at, arrival, seqDiff);
  }

  /**
   * A packet of the stream that carries no audio (a telephone event): its sequence number counts as received, so
   * that it is not taken for a loss; its payload and timestamp are not used.
   */
  #noteEvent(frame: RtpFrame): void {
    this.#n.events++;
    const s = this.#stream;
    if (!s || s.ssrc !== frame.ssrc) return;
    const seqDiff = ((frame.sequence - (s.maxSeq & 0xffff)) << 16) >> 16;
    if (seqDiff > MAX_DROPOUT || seqDiff < -MAX_DROPOUT) return;
    const ext = s.maxSeq + seqDiff;
    const ri = ext % SEQ_RING;
    if (this.#seqRing[ri] === ext) return;
    this.#seqRing[ri] = ext;
    s.received++;
    // The highest sequence number moves on, its timestamp (for ptime learning) stays the last audio packet's.
    if (ext > s.maxSeq) s.maxSeq = ext;
    else if (ext < s.minSeq) s.minSeq = ext;
  }

  /** Stores a packet whose first sample is at `at` on the play timeline, minus what is late or held already. */
  #place(frame: RtpFrame, at: number, arrival: number, seqDiff: number): void {
    const end = at + this.#samples(frame.payload.length);
    let from = at;
    if (at < this.#pos) {
      if (!this.#talking && !this.#hasAhead() && seqDiff > 0) {
        // Late, but nothing is playing: a talkspurt starting after a pause. Resynchronize on
        // it rather than drop it (its transit is already in the old stream's statistics).
        this.#n.received--;
        this.#reset();
        this.#anchor(frame, arrival);
        return;
      }
      this.#rewind(at);
      if (end <= this.#pos) {
        this.#n.late++;
        return;
      }
      from = Math.max(at, this.#pos);
    }
    const added = this.#store(from, frame.payload.subarray(this.#bytes(from - at)));
    if (added === 0) this.#n.duplicate++;
    else if (from > at) this.#n.trimmed++;
  }

  /**
   * A packet starting at `at` (before `#pos`) arrived while the frames since it were concealed:
   * moves `#pos` back so it plays, as far as the run of missing frames, the target (plus a frame)
   * and `max_delay` allow. The frames concealed since then become the delay's growth.
   */
  #rewind(at: number): void {
    const gap = this.#gapFrom;
    const s = this.#stream!;
    if (gap === undefined) return;
    let lo = Math.max(at, gap, s.p0);
    if (lo >= this.#pos) return;
    const d = this.#delays(this.nextTickTime()!);
    if (!d) return;
    const room = Math.min(this.options.max_delay, d.target + this.ptime) - d.delay; // ms the delay may grow
    lo = Math.max(lo, this.#pos - Math.floor((room * this.#clockRate) / 1000));
    if (lo >= this.#pos) return;
    this.#n.inserted += Math.ceil((this.#pos - lo) / this.#spf);
    this.#n.recovered++;
    this.#pos = lo;
  }

  /** Adds the samples of `payload` starting at `from` that are not held yet. Returns how many were added. */
  #store(from: number, payload: Uint8Array): number {
    const a = this.#ranges;
    const n = this.#samples(payload.length);
    const end = from + n;
    const last = a[a.length - 1];
    if (!last || last.end <= from) {
      a.push({ start: from, end, payload });
      return n;
    }
    // Index of the first range ending after `from` (ranges are sorted and disjoint, so ends are sorted too).
    let i = a.length;
    while (i > 0 && a[i - 1].end > from) i--;
    let cur = from, added = 0;
    while (cur < end) {
      const r = a[i];
      const stop = r && r.start < end ? Math.max(cur, r.start) : end;
      if (stop > cur) {
        a.splice(i, 0, {
          start: cur,
          end: stop,
          payload: payload.subarray(this.#bytes(cur - from), this.#bytes(stop - from)),
        });
        added += stop - cur;
        i++;
      }
      if (!r || r.start >= end) break;
      cur = Math.max(cur, r.end);
      i++;
    }
    return added;
  }

  /** What is held of `[from, from + n)`. */
  #cover(from: number, n: number): Coverage {
    const a = this.#ranges;
    let i = 0;
    while (i < a.length && a[i].end <= from) i++;
    const r = a[i];
    if (!r) return { present: 0, next: Infinity };
    if (r.start > from) return { present: 0, next: r.start };
    let cur = r.end;
    for (let j = i + 1; j < a.length && cur < from + n && a[j].start === cur; j++) cur = a[j].end;
    return { present: Math.min(cur, from + n) - from, next: from };
  }

  /** The held samples `[from, from + n)` (all of them must be held). */
  #gather(from: number, n: number): Uint8Array {
    const a = this.#ranges;
    let i = 0;
    while (a[i].end <= from) i++;
    const r = a[i];
    if (r.start === from && r.end === from + n) return r.payload;
    if (r.end >= from + n) return r.payload.subarray(this.#bytes(from - r.start), this.#bytes(from - r.start + n));
    const out = new Uint8Array(this.#bytes(n));
    for (let k = 0; k < n; i++) {
      const q = a[i];
      const s0 = from + k - q.start;
      const s1 = Math.min(q.end, from + n) - q.start;
      out.set(q.payload.subarray(this.#bytes(s0), this.#bytes(s1)), this.#bytes(k));
      k += s1 - s0;
    }
    return out;
  }

  /** True when the held samples of `[from, from + n)` are all quiet (never, for a codec that cannot tell). */
  #quiet(from: number, n: number): boolean {
    const info = this.#info;
    if (!info?.isQuiet) return false;
    for (const r of this.#ranges) {
      if (r.end <= from) continue;
      if (r.start >= from + n) break;
      const part = r.payload.subarray(
        this.#bytes(Math.max(0, from - r.start)),
        this.#bytes(Math.min(r.end, from + n) - r.start),
      );
      if (!info.isQuiet(part)) return false;
    }
    return true;
  }

  /** True when samples at or after `#pos` are held. */
  #hasAhead(): boolean {
    const last = this.#ranges[this.#ranges.length - 1];
    return last !== undefined && last.end > this.#pos;
  }

  /** Moves the play position on by `n` samples and forgets the ranges played. */
  #advance(n: number): void {
    this.#pos += n;
    const a = this.#ranges;
    let k = 0;
    while (k < a.length && a[k].end <= this.#pos) k++;
    if (k > 0) a.splice(0, k);
  }

  /** Learns ptime from consecutive packets whose size and timestamp step agree. */
  #learn(samples: number, tsStep: number): void {
    if (this.#ptimeFixed) return;
    const ms = (samples * 1000) / this.#clockRate;
    if (samples === tsStep && samples !== this.#spf && Number.isInteger(ms) && ms >= 10 && ms <= 60) {
      if (samples === this.#learnSamples) this.#learnCount++;
      else {
        this.#learnSamples = samples;
        this.#learnCount = 1;
      }
      if (this.#learnCount >= 3) {
        this.#learnCount = 0;
        this.#regrid(ms);
      }
    } else {
      this.#learnCount = 0;
    }
  }

  /** Changes ptime from the next tick on, keeping its due time as the new grid origin (nothing buffered is lost). */
  #regrid(ptime: number): void {
    if (this.#t0 !== undefined) {
      this.#t0 += this.#tick * this.ptime;
      this.#tick = 0;
    }
    this.ptime = ptime;
    this.#spf = this.#samplesPerFrame(ptime);
    this.onGrid?.();
  }

  /** Starts a stream with `frame` as its first packet. */
  #anchor(frame: RtpFrame, arrival: number): void {
    if (this.#t0 === undefined && !this.#ptimeFixed) {
      const samples = this.#samples(frame.payload.length);
      const ms = (samples * 1000) / this.#clockRate;
      if (Number.isInteger(ms) && ms >= 10 && ms <= 60 && ms !== this.ptime) {
        this.ptime = ms;
        this.#spf = samples;
      }
    }
    let p0 = this.#pos;
    if (this.#t0 === undefined) {
      this.#t0 = arrival + this.#initialDelay;
      this.#tick = 0;
      this.#firstArrival = arrival;
      this.onGrid?.();
    } else {
      // Play its first sample at the first tick at or after arrival + the delay reached so far,
      // and after what the previous stream still has buffered.
      const want = Math.max(this.options.min_delay, Math.min(this.options.max_delay, this.#lastTarget));
      const last = this.#ranges[this.#ranges.length - 1];
      const tail = last && last.end > this.#pos ? Math.ceil((last.end - this.#pos) / this.#spf) : 0;
      const byTime = Math.ceil((arrival + want - this.#t0) / this.ptime - 1e-9) - this.#tick;
      p0 = this.#pos + Math.max(0, tail, byTime) * this.#spf;
    }
    const ext = frame.sequence + 16 * 65536;
    this.#stream = {
      ssrc: frame.ssrc,
      ts0: frame.timestamp,
      p0,
      maxTs: frame.timestamp,
      maxSeq: ext,
      minSeq: ext,
      maxSeqTs: frame.timestamp,
      received: 1,
      start: arrival,
    };
    this.#seqRing[ext % SEQ_RING] = ext;
    this.#n.received++;
    this.#observe(arrival, arrival);
    this.#store(p0, frame.payload);
  }

  /**
   * Forgets the stream; the tick grid and the play timeline go on. What the old
   * stream still has buffered plays first, at the ticks it was due.
   */
  #reset(): void {
    const s = this.#stream;
    if (s) this.#lostBefore += Math.max(0, s.maxSeq - s.minSeq + 1 - s.received);
    this.#n.resets++;
    if (this.#pendingJump) this.#n.discarded++;
    this.#stream = undefined;
    this.#pendingJump = undefined;
    this.#talking = false;
    this.#missingRun = 0;
    this.#gapFrom = undefined;
    this.#seqRing.fill(-1);
    this.#blockIdx.fill(-Infinity);
    this.#shrinkSince = undefined;
    this.#learnCount = 0;
  }

  /** Records a transit time in the window block of `arrival`. */
  #observe(arrival: number, transit: number): void {
    const b = Math.floor(arrival / BLOCK_MS);
    const i = ((b % BLOCKS) + BLOCKS) % BLOCKS;
    if (this.#blockIdx[i] !== b) {
      this.#blockIdx[i] = b;
      this.#blockMin[i] = transit;
      this.#blockMax[i] = transit;
    } else {
      if (transit < this.#blockMin[i]) this.#blockMin[i] = transit;
      if (transit > this.#blockMax[i]) this.#blockMax[i] = transit;
    }
  }

  /** Smallest and largest transit over the window ending at `now`. */
  #window(now: number): [number, number] | undefined {
    const cur = Math.floor(now / BLOCK_MS);
    let lo = Infinity, hi = -Infinity;
    for (let i = 0; i < BLOCKS; i++) {
      const b = this.#blockIdx[i];
      if (b > cur - BLOCKS && b <= cur) {
        if (this.#blockMin[i] < lo) lo = this.#blockMin[i];
        if (this.#blockMax[i] > hi) hi = this.#blockMax[i];
      }
    }
    return lo === Infinity ? undefined : [lo, hi];
  }

  /** Delay at the next tick and target at time `now`, or undefined without a stream. */
  #delays(now: number): { delay: number; target: number } | undefined {
    const s = this.#stream;
    if (!s || this.#t0 === undefined) return undefined;
    const w = this.#window(now);
    if (!w) return undefined;
    const media = ((this.#pos - s.p0) * 1000) / this.#clockRate;
    const delay = this.#t0 + this.#tick * this.ptime - media - w[0];
    const o = this.options;
    const target = Math.max(o.min_delay, Math.min(o.max_delay, w[1] - w[0] + GUARD_MS));
    return { delay, target };
  }

  #frame(type: "normal" | "concealed" | "silence", payload?: Uint8Array): EncodedFrame {
    const info = this.#info!;
    const p = payload ?? info.silence(this.#spf);
    const f: EncodedFrame = {
      kind: "encoded",
      codec: info.name,
      clockRate: this.#clockRate,
      payload: p,
      pts: this.#outPts,
      type,
    };
    this.#outPts += this.#samples(p.length);
    this.#n[type]++;
    return f;
  }

  /**
   * Runs the tick due now (`now` = media-clock ms, normally {@linkcode nextTickTime})
   * and returns the frame to play.
   */
  tick(now: number = this.nextTickTime() ?? 0): EncodedFrame {
    const s = this.#stream;
    // No adaptation while the previous stream's last samples play out (before the new stream's first).
    const d = s && this.#pos >= s.p0 ? this.#delays(now) : undefined;
    if (d) {
      this.#delaySum += d.delay;
      this.#delayTicks++;
      this.#lastTarget = d.target;
      if (d.delay < d.target) {
        // Grow: play a filler, the samples wait one more tick.
        this.#shrinkSince = undefined;
        this.#n.inserted++;
        this.#tick++;
        return this.#frame(this.#talking ? "concealed" : "silence");
      }
      if (d.delay - this.ptime >= d.target && now - s!.start >= JB_WINDOW_MS) {
        this.#shrinkSince ??= now;
        const c = this.#cover(this.#pos, this.#spf);
        if (c.present === 0 && c.next >= this.#pos + this.#spf) {
          this.#n.skipped++;
          this.#advance(this.#spf);
        } else if (
          now - this.#lastShrink >= JB_SHRINK_STEP_MS &&
          (this.#quiet(this.#pos, this.#spf) || now - this.#shrinkSince >= JB_SHRINK_FORCE_MS)
        ) {
          this.#n.dropped++;
          this.#advance(this.#spf);
          this.#lastShrink = now;
          this.#shrinkSince = undefined;
        }
      } else {
        this.#shrinkSince = undefined;
      }
    }
    this.#tick++;
    return this.#play(now, d);
  }

  /** Plays the frame at `#pos` and moves on. */
  #play(now: number, d: { delay: number; target: number } | undefined): EncodedFrame {
    const spf = this.#spf;
    const c = this.#cover(this.#pos, spf);
    if (c.present > 0) {
      // A whole frame; or the received samples end inside it (a loss or a late packet starts there, or the
      // stream ends): those play alone, a shorter frame, and the next tick goes on from the first missing one.
      const n = Math.min(c.present, spf);
      const payload = this.#gather(this.#pos, n);
      this.#gapFrom = undefined;
      this.#advance(n);
      this.#talking = true;
      this.#missingRun = 0;
      if (this.#firstPlayMs === 0 && this.#firstArrival !== undefined) this.#firstPlayMs = now - this.#firstArrival;
      return this.#frame("normal", payload);
    }
    this.#gapFrom ??= this.#pos;
    let step = spf;
    if (c.next < this.#pos + spf) {
      // A gap ends inside this frame: resume at the first received sample (the delay grows by the rest of
      // the frame) unless that would take it beyond max_delay.
      const growMs = ((spf - (c.next - this.#pos)) * 1000) / this.#clockRate;
      if (!d || d.delay + growMs <= this.options.max_delay) step = c.next - this.#pos;
    }
    this.#advance(step);
    this.#missingRun++;
    if (this.#talking && this.#missingRun * this.ptime <= this.options.max_conceal) return this.#frame("concealed");
    this.#talking = false;
    return this.#frame("silence");
  }

  /**
   * End of stream: returns every buffered sample in order, in frames (gaps
   * between them concealed, a last incomplete frame as it is), without waiting
   * for their playout times.
   */
  drain(): EncodedFrame[] {
    const out: EncodedFrame[] = [];
    const spf = this.#spf;
    this.#gapFrom = undefined;
    while (this.#hasAhead()) {
      const c = this.#cover(this.#pos, spf);
      this.#tick++;
      if (c.present > 0) {
        const n = Math.min(c.present, spf);
        out.push(this.#frame("normal", this.#gather(this.#pos, n)));
        this.#advance(n);
      } else {
        out.push(this.#frame("concealed"));
        this.#advance(Math.min(spf, c.next - this.#pos));
      }
    }
    return out;
  }

  /** Counters and gauges, at time `now` (for the delays). */
  stats(now?: number): JitterBufferStats {
    const s = this.#stream;
    const lost = this.#lostBefore + (s ? Math.max(0, s.maxSeq - s.minSeq + 1 - s.received) : 0);
    const d = this.#delays(now ?? this.nextTickTime() ?? 0);
    let buffered = 0;
    for (const r of this.#ranges) if (r.end > this.#pos) buffered++;
    return {
      ...this.#n,
      lost,
      buffered,
      max_packet_ms: this.#maxPacket,
      first_play_ms: this.#firstPlayMs,
      delay_ms: d ? d.delay : 0,
      target_delay_ms: d ? d.target : this.#lastTarget,
      avg_delay_ms: this.#delayTicks ? this.#delaySum / this.#delayTicks : 0,
      ptime: this.ptime,
    };
  }
}

const NAME = "jitter-buffer";
/** What the jitter buffer takes: RTP packets (of a codec registered in the stage's context). */
const ACCEPTS: Format[] = [{ kind: "rtp" }];

/** The `jitter-buffer` plugin definition. */
export const jitterBuffer = definePlugin({
  name: NAME,
  kind: "transform",
  description: "Reorders RTP packets of any duration and plays one frame per ptime on the media clock, with " +
    "adaptive delay",
  accepts: ACCEPTS,
  produces: { kind: "encoded" },
  realtime: true,
  options: jitterBufferOptions,
  /** Bridges rtp → encoded frames of the same codec. */
  bridges(from: Format, to: Format): StageConfig | undefined {
    if (from.kind !== "rtp" || to.kind !== "encoded") return undefined;
    if (from.codec !== undefined && to.codec !== undefined && from.codec !== to.codec) return undefined;
    return { use: NAME };
  },
  create(opts, sctx) {
    const check: FormatCheck = { stage: NAME, ctx: sctx };
    const jb = new JitterBuffer(opts, { codecs: sctx.codecs });
    /** The codec once known (negotiated, or from the first packet): how many samples a payload holds. */
    let codec: CodecInfo | undefined;
    const samplesOf = (p: Uint8Array) => {
      if (!codec) return p.length;
      return payloadSamples(codec, p.length);
    };
    const rb = new RecordBuffer({ reorderMs: opts.reorder_ms, samplesOf });
    let mode: "playout" | "record" = opts.mode === "record" ? "record" : "playout";
    const clock = sctx.clock;
    let ctx: RunContext | undefined;
    let timer: Timer | undefined;
    let stopped = false;
    let summarized = false;

    const arm = () => {
      timer?.cancel();
      timer = undefined;
      const due = jb.nextTickTime();
      if (due === undefined || !ctx || stopped) return;
      timer = clock.at(due, onTick);
    };
    const onTick = () => {
      timer = undefined;
      if (stopped || !ctx) return;
      const due = jb.nextTickTime()!;
      const frame = jb.tick(due);
      ctx.emit(frame);
      if (!timer) arm(); // (emit may have re-armed through onGrid)
    };
    jb.onGrid = arm;
    /** One line at the end of the stream: what was received and how it played. */
    const summarize = () => {
      if (summarized) return;
      summarized = true;
      if (mode === "record") {
        const r = rb.stats();
        const media = sctx.session.stats;
        media.lost = Math.max(media.lost, r.lost);
        media.late += r.late;
        media.concealedFrames += r.lost;
        if (r.received > 0) sctx.log.info("record buffer summary", { ...r });
        return;
      }
      const s = jb.stats(clock.now());
      const media = sctx.session.stats;
      media.lost = Math.max(media.lost, s.lost);
      media.late += s.late;
      media.concealedFrames += s.concealed;
      if (s.received === 0) return;
      sctx.log.info("jitter buffer summary", {
        received: s.received,
        lost: s.lost,
        late: s.late,
        trimmed: s.trimmed,
        recovered: s.recovered,
        duplicate: s.duplicate,
        invalid: s.invalid,
        normal: s.normal,
        concealed: s.concealed,
        inserted: s.inserted,
        max_packet_ms: s.max_packet_ms,
        ptime: s.ptime,
        first_play_ms: Math.round(s.first_play_ms * 10) / 10,
        delay_ms: Math.round(s.delay_ms * 10) / 10,
        target_delay_ms: Math.round(s.target_delay_ms * 10) / 10,
      });
    };

    return {
      negotiate(input: Format | undefined): Format {
        const fmt = expectFormat(input, ACCEPTS, check);
        if (fmt.codec === undefined) return { kind: "encoded" }; // learned from the packets
        const info = sctx.codecs.get(fmt.codec);
        if (!info) {
          throw new FormatError(
            `${NAME} cannot play ${fmt.codec}: no such codec is registered (known codecs: ${
              sctx.codecs.names().join(", ") || "none"
            })`,
          );
        }
        jb.setCodec(info);
        codec = info;
        return { kind: "encoded", codec: info.name, clockRate: info.clockRate };
      },
      start(runCtx) {
        ctx = runCtx;
        if (opts.mode === "auto") mode = runCtx.realtimeSink ? "playout" : "record";
        runCtx.log.info(
          mode === "record"
            ? "mode record: the chain ends in a file, frames follow the sender's timeline"
            : "mode playout: one frame per ptime on the media clock, adaptive delay",
        );
        if (mode === "playout") arm();
      },
      process(frame, emit) {
        if (frame.kind !== "rtp" || stopped) return;
        if (mode === "record") {
          if (!codec && frame.codec && !isTelephoneEvent(frame)) codec = sctx.codecs.get(frame.codec);
          rb.insert(frame, emit);
          return;
        }
        jb.insert(frame, frame.arrival ?? clock.now());
      },
      flush(emit) {
        stopped = true;
        timer?.cancel();
        timer = undefined;
        if (mode === "record") rb.flush(emit);
        summarize();
        if (mode === "playout") { for (const f of jb.drain()) emit(f); }
      },
      close() {
        stopped = true;
        timer?.cancel();
        timer = undefined;
        summarize();
      },
      stats() {
        return mode === "record" ? { mode, ...rb.stats() } : { mode, ...jb.stats(clock.now()) };
      },
    };
  },
});

export default jitterBuffer;
