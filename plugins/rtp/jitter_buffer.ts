/**
 * `jitter-buffer`: RTP packets of any duration in, one encoded frame per `ptime`
 * out, paced by the media clock (a pull model, like pjmedia's jbuf), with the
 * playout decisions of WebRTC's NetEQ: the audio is time-scaled (stretched or
 * compressed in PCM) to follow the delay the network needs, never dropped or
 * inserted by whole frames.
 *
 * Two modes. `record` (plugins/rtp/record_buffer.ts) puts packets on the
 * sender's timeline for a chain that ends in a file. `playout`, described
 * here ({@linkcode JitterBuffer}), plays in real time for a speaker, a
 * network sink or a bridge. `auto` (the default) picks record when the chain
 * ends in a file, playout otherwise.
 *
 * ## Playout
 *
 * `process()` only inserts packets. From the first packet on, the stage runs a
 * drift-free tick grid on the media clock (tick n at t0 + n × ptime, t0 = first
 * arrival + `initial_delay`) and at every tick emits exactly one
 * {@linkcode EncodedFrame} of `ptime`, cut from a continuous PCM stream: its
 * `decoded` field holds the samples (the g711 decoder plays them as they are),
 * its `payload` the same audio encoded (through the codec's transcoder: a relay
 * that packetizes the frames again sends what a listener would hear), and its
 * `type` says what it holds:
 *
 * - `normal`: received audio (possibly time-scaled, or with a splice of
 *   concealment at one end);
 * - `concealed`: only concealment: the recent audio repeated where nothing was
 *   received (a decoder that ignores `decoded` conceals it itself);
 * - `silence`: only comfort noise (such a decoder plays silence).
 *
 * The buffer knows no codec by name: the codec's registration (looked up in the
 * stage's `ctx.codecs` by the name the packets carry) gives its clock rate, how
 * many bytes hold how many samples, its silence payload, and the transcoder
 * (`pcm`) that decodes and encodes it. A codec without one (or of more than one
 * channel) cannot be played in real time (the stage says so); it can still be
 * recorded.
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
 * adds those not held yet (one entirely held is a duplicate). Playout decodes
 * from the position `pos` on, so a frame is cut from one packet or joined
 * from several: ffmpeg's 1460-sample packets, GStreamer's 1388-sample ones,
 * 30 ms packets into a 20 ms buffer, or any mix.
 *
 * ## Delay and target
 *
 * A packet's relative transit time is `arrival − media time of its first
 * sample` (minus the part of a frame by which it is off the output's frame
 * grid: it is needed when the frame holding it is played). Over a sliding
 * window ({@linkcode JB_WINDOW_MS}, in 1 s blocks) the buffer keeps the
 * smallest and largest transit of each block. A sender's clock that runs fast
 * or slow shows as a transit that drifts: the drift is estimated from the
 * blocks' smallest transits (a line through them) and every transit is
 * extrapolated along it to now, so a clock running 1 % off is not mistaken for
 * 80 ms of jitter. The playout delay of a sample is how long after the arrival
 * of a packet of the smallest transit it is played; the target delay is the
 * transit spread plus 5 ms, within [`min_delay`, `max_delay`]. The target rises
 * at once; it does not fall below the delay the stream started at
 * (`initial_delay` after its first packet, or the target a new stream inherits)
 * before the stream has been observed for a full window, and then
 * falls by at most {@linkcode JB_TARGET_FALL_MS_PER_S} per second (a jitter peak
 * leaving the window does not ask for a sudden acceleration). Delay peaks that
 * recur (a stall every 10 s) are remembered beyond the window, like NetEQ's peak
 * detector: from the second one on, the target keeps the highest for twice the
 * longest interval between them.
 *
 * ## Decisions (NetEQ's operations, in PCM)
 *
 * Each tick takes what it needs from the decoded queue, and when the queue is
 * short decides, from the delay D of the next sample to decode and the target
 * T, one operation:
 *
 * - the samples at `pos` are there: *accelerate* when D ≥ T + 20 ms (remove
 *   a pitch period, or a chunk of quiet or unvoiced audio, from 30 ms of
 *   input: plugins/rtp/time_stretch.ts), *pre-emptive expand* when D < T
 *   (repeat one), else *normal* (at most one time-scaling per
 *   {@linkcode JB_STRETCH_INTERVAL_MS}, twice as long after each try that found
 *   the audio unfit, up to 0.5 s; every time when D ≥ 4 × (T + 20 ms));
 *   received samples that could only be played more than `max_delay` after
 *   their packet's due time are dropped as late;
 * - after concealment, *merge*: the concealment goes on for up to one of its
 *   periods more, to the point where it best matches the new audio, and
 *   cross-fades into the period that precedes it (its backward extension), so
 *   no received sample is altered;
 * - the samples at `pos` are missing: *expand* (conceal: repeat the recent
 *   audio, full level for 20 ms then decaying; after `max_conceal` fade into
 *   comfort noise at the recent background level). `pos` waits meanwhile, so
 *   a late packet that arrives during the expansion is played (merged): the
 *   expansion became growth of the delay (`recovered`). When a later packet is
 *   there, the expansion lasts as long as the missing audio (then `pos` jumps
 *   to the later packet: the gap was lost), shorter when D exceeds the target
 *   by a frame or more (the missing samples are *skipped*: a loss or the
 *   sender's silence is how the delay shrinks for free).
 *
 * Every delay played is counted in a histogram: the stats give its median, 95th
 * percentile and maximum over the call, with counts of the frames that hold
 * accelerated, pre-emptively expanded, expanded (concealment) audio and comfort
 * noise.
 *
 * ## Sequence and resets
 *
 * Packets tagged `telephone-event` (RFC 4733 events in the same stream, tagged
 * by the `rtp-depacketizer`) carry no audio: their sequence numbers count as
 * received (they are not losses) and nothing else of them is used.
 *
 * Sequence numbers (16 bits) and timestamps (32 bits) are extended across
 * wrap-around. Duplicates are dropped (by extended sequence number, or when
 * every sample is already held); a packet whose samples were all passed is
 * dropped as late (`late`; only its head: `trimmed`). The buffer resets (the
 * old stream's buffered samples still play, as far as they play within
 * `max_delay` of the new stream's first packet, then the new stream starts at
 * the current target, on the same tick grid) on an SSRC change, on a sequence jump
 * of more than 3000 confirmed by a second consecutive packet (RFC 3550 A.1),
 * and on a timestamp jump (a packet due more than 2 s late with a newer
 * sequence number, or more than `max_delay` + 2 s early). A packet that would
 * be late while nothing plays (after a pause in the stream) starts a new
 * talkspurt at the current target instead of being dropped.
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
import type { Timer } from "../../core/clock.ts";
import { type CodecInfo, type CodecRegistry, payloadSamples, type PcmTranscoder } from "../../core/codec.ts";
import type { EncodedFrame, Format, FrameType, RtpFrame } from "../../core/frame.ts";
import { expectFormat, type FormatCheck } from "../../core/format_check.ts";
import { RecordBuffer } from "./record_buffer.ts";
import { isTelephoneEvent } from "./telephone_event.ts";
import { FormatError, type RunContext, type StageContext, type TransformStage } from "../../core/stage.ts";
import {
  accelerate,
  backwardExtension,
  correlation,
  Expander,
  lagRange,
  preemptiveExpand,
  rms,
  stretchInput,
} from "./time_stretch.ts";
import { jitterBuffer, type JitterBufferOptions, jitterBufferSchema } from "./plugins.ts";

export { jitterBuffer, type JitterBufferOptions };

/** Options of the `jitter-buffer` stage (its zod schema; the plugin's `options`). */
export const jitterBufferOptions: ReturnType<typeof jitterBufferSchema> = jitterBufferSchema();

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
/** Above the target by this much (ms), the playout accelerates (NetEQ's delay adjustment granularity). */
export const JB_HIGH_MS = 20;
/** At most one time-scaling (accelerate, pre-emptive expand) per this many ms, unless far above the target. */
export const JB_STRETCH_INTERVAL_MS = 60;
/** Once the stream has been observed for a window, the target falls by at most this many ms per second. */
export const JB_TARGET_FALL_MS_PER_S = 20;
/** Longest packet accepted (ms of audio); longer ones are dropped and counted as `invalid`. */
export const JB_MAX_PACKET_MS = 1000;
/** A sequence jump larger than this (either way) starts a probation (RFC 3550 A.1 MAX_DROPOUT). */
const MAX_DROPOUT = 3000;
/** A packet this much newer or older than expected (ms) signals a timestamp jump. */
const TS_JUMP_MS = 2000;
/** Size of the duplicate-detection ring of sequence numbers. */
const SEQ_RING = 1024;
/** The sender's clock is taken to be at most this far off (5 %): a steeper transit drift is jitter. */
const MAX_SKEW = 0.05;
/** Delay peaks are remembered this long (ms). */
const PEAK_MEMORY_MS = 60000;
/** A rise of the spread within this long of a peak (ms) belongs to that peak. */
const PEAK_MERGE_MS = 2000;
/** The drift is estimated from blocks spanning at least this long (ms). */
const SKEW_SPAN_MS = 3000;
/** A drift estimated below this (0.25 %) is taken as none. */
const SKEW_DEADBAND = 0.0025;
/** Delay histogram: 1 ms bins up to this many ms (longer delays count in the last bin). */
const HIST_MS = 10000;

/** Counters and gauges of a {@linkcode JitterBuffer}. */
export interface JitterBufferStats {
  /** Unique packets received (late ones included, duplicates and invalid ones not). */
  received: number;
  /** Packets never received (expected from sequence numbers minus received). */
  lost: number;
  /** Packets dropped because all their samples arrived after their playout time (or beyond `max_delay`). */
  late: number;
  /**
   * Packets of which a part was dropped, the rest played: their head arrived after its playout time, or their tail
   * could only have played beyond `max_delay` (a new stream began behind it).
   */
  trimmed: number;
  /** Packets that arrived while their place was being concealed, and played (the concealment grew the delay). */
  recovered: number;
  /** Duplicate packets dropped (same sequence number, or every sample already held). */
  duplicate: number;
  /**
   * Packets dropped for their size (empty, longer than {@linkcode JB_MAX_PACKET_MS}, or not whole codec frames) or
   * their codec (not registered, none known, or no transcoder to play it in real time).
   */
  invalid: number;
  /** Frames emitted as `normal` (holding received audio). */
  normal: number;
  /** Frames emitted as `concealed` (only concealment). */
  concealed: number;
  /** Frames emitted as `silence` (only comfort noise). */
  silence: number;
  /** Frames holding audio compressed by accelerate. */
  accelerated: number;
  /** Frames holding audio stretched by pre-emptive expand. */
  preemptive_expanded: number;
  /** Frames holding expansion: concealment of missing audio, merges into the audio after it. */
  expanded: number;
  /** Frames holding comfort noise. */
  comfort_noise: number;
  /** Audio removed by accelerate (ms). */
  accelerated_ms: number;
  /** Audio added by pre-emptive expand (ms). */
  preemptive_ms: number;
  /** Audio synthesized by expansion (ms): concealment, comfort noise and merges. */
  expanded_ms: number;
  /** Missing audio (a loss, the sender's silence) skipped to shrink the delay (ms). */
  skipped_ms: number;
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
  /** Playout delay of the last received audio played (ms): how long after a packet of the smallest transit. */
  delay_ms: number;
  /** Median playout delay over the received audio played so far (ms, 1 ms resolution). */
  delay_p50_ms: number;
  /** 95th percentile of the playout delay (ms). */
  delay_p95_ms: number;
  /** Largest playout delay (ms). */
  delay_max_ms: number;
  /** Average playout delay (ms). */
  avg_delay_ms: number;
  /** Target playout delay (ms). */
  target_delay_ms: number;
  /** Transit spread over the window (ms): the jitter the target covers (with a 5 ms margin). */
  spread_ms: number;
  /** Estimated drift of the sender's clock against ours (ppm; positive: the sender's runs fast). */
  skew_ppm: number;
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

// What each sample of the playout queue is.
const RECEIVED = 0;
const ACCELERATED = 1;
const STRETCHED = 2;
const CONCEALED = 3;
const NOISE = 4;

/** The decoded samples waiting to be played, each with its kind and its place on the play timeline. */
class PlayQueue {
  samples = new Int16Array(4096);
  kind = new Uint8Array(4096);
  /** Play-timeline position of a received (or time-scaled) sample; NaN for synthesized ones. */
  pos = new Float64Array(4096);
  head = 0;
  end = 0;

  get length(): number {
    return this.end - this.head;
  }

  #room(n: number): void {
    if (this.end + n <= this.samples.length) return;
    const len = this.length;
    if (len + n <= this.samples.length) {
      // Move what is queued to the front.
      this.samples.copyWithin(0, this.head, this.end);
      this.kind.copyWithin(0, this.head, this.end);
      this.pos.copyWithin(0, this.head, this.end);
      this.head = 0;
      this.end = len;
      return;
    }
    const cap = Math.max(this.samples.length, 2 * (len + n));
    const s = new Int16Array(cap), k = new Uint8Array(cap), p = new Float64Array(cap);
    s.set(this.samples.subarray(this.head, this.end));
    k.set(this.kind.subarray(this.head, this.end));
    p.set(this.pos.subarray(this.head, this.end));
    this.samples = s;
    this.kind = k;
    this.pos = p;
    this.head = 0;
    this.end = len;
  }

  /** Appends samples of one kind; received ones map to positions `from + i × step`. */
  push(x: ArrayLike<number>, kind: number, from = NaN, step = 1): void {
    const n = x.length;
    this.#room(n);
    const e = this.end;
    if (x instanceof Int16Array) this.samples.set(x, e); // decoded audio: already whole and in range
    else {
      for (let i = 0; i < n; i++) {
        const v = Math.round(x[i]);
        this.samples[e + i] = v > 32767 ? 32767 : v < -32768 ? -32768 : v;
      }
    }
    if (Number.isNaN(from)) this.pos.fill(NaN, e, e + n);
    else for (let i = 0; i < n; i++) this.pos[e + i] = from + i * step;
    this.kind.fill(kind, e, e + n);
    this.end += n;
  }

  /** Removes the first `n` samples (all of them must be there). */
  drop(n: number): void {
    this.head += n;
    if (this.head === this.end) this.head = this.end = 0;
  }
}

/**
 * The jitter buffer's playout logic without timers: {@linkcode insert} packets as
 * they arrive, call {@linkcode tick} once per `ptime` at the times given by
 * {@linkcode nextTickTime}. The `jitter-buffer` stage drives it from the media
 * clock.
 *
 * @example
 * ```ts
 * const jb = new JitterBuffer({ min_delay: 20, max_delay: 500, initial_delay: 40, max_conceal: 100 }, { codec: PCMU });
 * jb.insert(rtpFrame, 0); // first packet at t = 0 ms: plays at t = 40
 * jb.nextTickTime(); // 40
 * const frame = jb.tick(); // { kind: "encoded", type: "normal", decoded: Int16Array(160), ... }
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
  #pcm: PcmTranscoder | undefined;
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
  /** Play-timeline position of the next sample to decode. */
  #pos = 0;
  /** Received samples from `#pos` on, sorted by position, never overlapping. */
  #ranges: Range[] = [];
  #stream: Stream | undefined;
  #seqRing = new Float64Array(SEQ_RING).fill(-1);
  #pendingJump: { frame: RtpFrame; arrival: number } | undefined;
  #outPts = 0;
  #learnCount = 0;
  #learnSamples = 0;
  #firstArrival: number | undefined;
  #firstPlayMs = 0;
  #maxPacket = 0;

  // Transit window: per block (1 s of arrival time) the min and max transit and when they were seen.
  #blockIdx = new Float64Array(BLOCKS).fill(-Infinity);
  #blockMin = new Float64Array(BLOCKS);
  #blockMinAt = new Float64Array(BLOCKS);
  #blockMax = new Float64Array(BLOCKS);
  #blockMaxAt = new Float64Array(BLOCKS);

  // PCM side: the decoded queue, the recent output (for expansion), the expander and its state.
  #q = new PlayQueue();
  #hist: Float32Array;
  #expander: Expander | undefined;
  /** True while the queue's tail is expansion (the samples at `#pos` were missing). */
  #expanding = false;
  /** Expansion samples generated before the current gap began to count (a new stream's gap starts now). */
  #gapBase = 0;
  /** True when this expansion's gap was given up (lost, skipped, dropped as late): its merge recovers nothing. */
  #gapLost = false;
  /** How much more expansion the next merge should add before its cross-fade (the rest of a lost gap). */
  #mergeWant = 0;
  #played = false;
  /** Background level of the received audio (RMS), for comfort noise: a floor that follows quiet blocks at once. */
  #floor = 0;
  #floorSet = false;
  /** When the next time-scaling may be tried, and how long a failure makes the one after wait. */
  #nextStretch = -Infinity;
  #stretchWait = JB_STRETCH_INTERVAL_MS;

  #target: number;
  #initialDelay: number;
  #skew = 0;
  #spread = 0;
  /** Recent delay peaks: when, and the transit spread they showed (ms). */
  #peaks: { t: number; h: number }[] = [];
  /** The spread at the previous tick: a sudden rise is a peak even when the target already covers it. */
  #spreadBefore = 0;
  #rawTarget = 0;
  /** True once a delay of the current stream was measured. */
  #measured = false;
  #lastDelay = 0;
  #delaySum = 0;
  #delayTicks = 0;
  #hist1ms = new Uint32Array(HIST_MS + 1);
  #delayMax = 0;
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
    accelerated: 0,
    preemptive_expanded: 0,
    expanded: 0,
    comfort_noise: 0,
    resets: 0,
    ssrc_changes: 0,
    discarded: 0,
    events: 0,
  };
  #accelSamples = 0;
  #stretchSamples = 0;
  #expandSamples = 0;
  #skipSamples = 0;

  /**
   * @param options validated options
   * @param codecs the codec assumed until packets name another, and where named codecs are looked up; packets
   *   arriving while no codec is known (or one without a transcoder, see {@linkcode CodecInfo.pcm}) are dropped
   *   as `invalid`
   */
  constructor(options: PlayoutOptions, codecs: JitterBufferCodecs = {}) {
    this.options = options;
    this.#codecs = codecs.codecs;
    this.#ptimeFixed = options.ptime !== undefined;
    this.ptime = options.ptime ?? codecs.codec?.ptime ?? 20;
    if (!(this.ptime >= 10 && this.ptime <= 60)) this.ptime = 20;
    this.#spf = this.#samplesPerFrame(this.ptime);
    this.#initialDelay = Math.max(options.min_delay, Math.min(options.max_delay, options.initial_delay ?? 60));
    this.#target = this.#initialDelay;
    this.#hist = new Float32Array(0);
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
    // Time-scaling works on one channel.
    this.#pcm = info.channels === 1 ? info.pcm?.() : undefined;
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
    this.#expander = new Expander({ sampleRate: info.clockRate, maxConcealMs: this.options.max_conceal });
    if (this.#hist.length !== this.#expander.historyLength) this.#hist = new Float32Array(this.#expander.historyLength);
    this.#expanding = false;
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

  /** `n` samples rounded down to whole codec frames (at least one frame when `n` > 0 and `up`). */
  #whole(n: number, up = false): number {
    if (this.#fs === 1) return n;
    const k = up ? Math.ceil(n / this.#fs) : Math.floor(n / this.#fs);
    return k * this.#fs;
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
      this.#info === undefined || this.#pcm === undefined
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
    const due = this.#t0! + this.#tick * this.ptime + ((at - this.#pos + this.#q.length) * 1000) / this.#clockRate;
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
    // Transit as seen by the tick grid: a packet is needed when the frame holding its first sample is played,
    // up to a frame before that sample (when packets are not cut on the output's frame grid).
    const rel = at - this.#pos + this.#q.length;
    const offGrid = ((rel % this.#spf) + this.#spf) % this.#spf;
    this.#observe(arrival, arrival - media, arrival - media + (offGrid * 1000) / this.#clockRate);
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
      if (!this.#talking() && !this.#hasAhead() && seqDiff > 0) {
        // Late, but nothing is playing: a talkspurt starting after a pause. Resynchronize on
        // it rather than drop it (its transit is already in the old stream's statistics).
        this.#n.received--;
        this.#reset();
        this.#anchor(frame, arrival);
        return;
      }
      if (end <= this.#pos) {
        this.#n.late++;
        return;
      }
      from = this.#pos;
    }
    const added = this.#store(from, frame.payload.subarray(this.#bytes(from - at)));
    if (added === 0) this.#n.duplicate++;
    else if (from > at) this.#n.trimmed++;
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

  /** True when samples at or after `#pos` are held. */
  #hasAhead(): boolean {
    const last = this.#ranges[this.#ranges.length - 1];
    return last !== undefined && last.end > this.#pos;
  }

  /** Moves the play position on by `n` samples and forgets the ranges passed. */
  #advance(n: number): void {
    this.#pos += n;
    const a = this.#ranges;
    let k = 0;
    while (k < a.length && a[k].end <= this.#pos) k++;
    if (k > 0) a.splice(0, k);
  }

  /** Forgets the received samples from `at` on (counted as late: they could only be played beyond max_delay). */
  #truncate(at: number): void {
    const a = this.#ranges;
    while (a.length > 0 && a[a.length - 1].start >= at) {
      a.pop();
      this.#n.late++;
    }
    const r = a[a.length - 1];
    if (r && r.end > at) {
      r.payload = r.payload.subarray(0, this.#bytes(at - r.start));
      r.end = at;
      this.#n.trimmed++;
    }
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
      // Play its first sample at arrival + the current target, and after what the previous stream still has
      // buffered, as far as that plays within max_delay of this arrival (the rest of it is dropped as late: a
      // peer that starts a new stream with every packet cannot make the buffer grow); the expansion in progress
      // (if any) fills the wait from now on.
      const last = this.#ranges[this.#ranges.length - 1];
      let tail = last && last.end > this.#pos ? last.end - this.#pos : 0;
      const samplesBy = (ms: number) =>
        Math.ceil(((arrival + ms - this.nextTickTime()!) * this.#clockRate) / 1000) - this.#q.length;
      const keep = this.#whole(Math.max(0, samplesBy(this.options.max_delay)));
      if (tail > keep) {
        this.#truncate(this.#pos + keep);
        tail = keep;
      }
      p0 = this.#pos + this.#whole(Math.max(0, tail, samplesBy(this.#target)), true);
      if (this.#expanding) this.#gapBase = this.#expander!.generated;
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
    this.#measured = false;
    const rel = p0 - this.#pos + this.#q.length;
    const offGrid = ((rel % this.#spf) + this.#spf) % this.#spf;
    this.#observe(arrival, arrival, arrival + (offGrid * 1000) / this.#clockRate);
    this.#store(p0, frame.payload);
  }

  /**
   * Forgets the stream; the tick grid, the play timeline and the playout go on. What the old
   * stream still has buffered plays first.
   */
  #reset(): void {
    const s = this.#stream;
    if (s) this.#lostBefore += Math.max(0, s.maxSeq - s.minSeq + 1 - s.received);
    this.#n.resets++;
    if (this.#pendingJump) this.#n.discarded++;
    this.#stream = undefined;
    this.#pendingJump = undefined;
    this.#seqRing.fill(-1);
    this.#blockIdx.fill(-Infinity);
    this.#skew = 0;
    this.#peaks.length = 0;
    this.#learnCount = 0;
  }

  /**
   * Records a transit time in the window block of `arrival`: `transit` for the smallest (the delay's reference),
   * `needed` (the transit by the time the frame holding the packet's first sample is played) for the largest.
   */
  #observe(arrival: number, transit: number, needed = transit): void {
    const b = Math.floor(arrival / BLOCK_MS);
    const i = ((b % BLOCKS) + BLOCKS) % BLOCKS;
    if (this.#blockIdx[i] !== b) {
      this.#blockIdx[i] = b;
      this.#blockMin[i] = transit;
      this.#blockMax[i] = needed;
      this.#blockMinAt[i] = this.#blockMaxAt[i] = arrival;
    } else {
      if (transit < this.#blockMin[i]) {
        this.#blockMin[i] = transit;
        this.#blockMinAt[i] = arrival;
      }
      if (needed > this.#blockMax[i]) {
        this.#blockMax[i] = needed;
        this.#blockMaxAt[i] = arrival;
      }
    }
  }

  /**
   * The drift of the transit time (ms per ms of arrival time) over the window ending at `now`: the least-squares
   * line through the blocks' smallest transits, once four blocks spanning 3 s are there (0 before, and below a
   * dead band of 0.25 %), within ±{@linkcode MAX_SKEW}.
   */
  #estimateSkew(now: number): number {
    const cur = Math.floor(now / BLOCK_MS);
    let n = 0, sx = 0, sy = 0, lo = Infinity, hi = -Infinity;
    for (let i = 0; i < BLOCKS; i++) {
      const b = this.#blockIdx[i];
      if (!(b > cur - BLOCKS && b <= cur)) continue;
      const x = this.#blockMinAt[i] - now;
      n++;
      sx += x;
      sy += this.#blockMin[i];
      if (x < lo) lo = x;
      if (x > hi) hi = x;
    }
    if (n < 4 || hi - lo < SKEW_SPAN_MS) return 0;
    const mx = sx / n, my = sy / n;
    let sxy = 0, sxx = 0;
    for (let i = 0; i < BLOCKS; i++) {
      const b = this.#blockIdx[i];
      if (!(b > cur - BLOCKS && b <= cur)) continue;
      const dx = this.#blockMinAt[i] - now - mx;
      sxy += dx * (this.#blockMin[i] - my);
      sxx += dx * dx;
    }
    const slope = sxx > 0 ? sxy / sxx : 0;
    // Jitter makes the line wobble: a drift below the dead band is left to the target's margin.
    if (Math.abs(slope) < SKEW_DEADBAND) return 0;
    return Math.max(-MAX_SKEW, Math.min(MAX_SKEW, slope));
  }

  /** Smallest and largest transit over the window ending at `now`, extrapolated to `now` along the drift. */
  #window(now: number): [number, number] | undefined {
    const cur = Math.floor(now / BLOCK_MS);
    const k = this.#skew;
    let lo = Infinity, hi = -Infinity;
    for (let i = 0; i < BLOCKS; i++) {
      const b = this.#blockIdx[i];
      if (b > cur - BLOCKS && b <= cur) {
        const mn = this.#blockMin[i] + k * (now - this.#blockMinAt[i]);
        const mx = this.#blockMax[i] + k * (now - this.#blockMaxAt[i]);
        if (mn < lo) lo = mn;
        if (mx > hi) hi = mx;
      }
    }
    return lo === Infinity ? undefined : [lo, hi];
  }

  /** Moves the target toward the transit spread: up at once, down slowly (see the module doc). */
  #updateTarget(now: number): void {
    const s = this.#stream;
    if (!s) return;
    this.#skew = this.#estimateSkew(now);
    const w = this.#window(now);
    if (!w) return;
    const o = this.options;
    const clamp = (v: number) => Math.max(o.min_delay, Math.min(o.max_delay, v));
    this.#spread = w[1] - w[0];
    const prev = this.#target;
    const raw = clamp(Math.max(this.#spread, this.#peakLevel(now, prev)) + GUARD_MS);
    this.#rawTarget = raw;
    if (raw >= prev) this.#target = raw;
    else if (now - s.start >= JB_WINDOW_MS) {
      this.#target = clamp(Math.max(raw, prev - (JB_TARGET_FALL_MS_PER_S * this.ptime) / 1000));
    }
  }

  /**
   * Delay peaks (stalls, bursts: the transit spread jumping by more than {@linkcode JB_HIGH_MS}, or above the
   * target by more than that) that recur are remembered beyond the window, as NetEQ's peak detector does: from the
   * second peak within {@linkcode PEAK_MEMORY_MS} on, the spread is taken to be at least the highest recent peak
   * for as long as twice the longest interval between them. Returns that level (0: no recurring peaks).
   */
  #peakLevel(now: number, target: number): number {
    const peaks = this.#peaks;
    while (peaks.length > 0 && now - peaks[0].t > PEAK_MEMORY_MS) peaks.shift();
    const last = peaks[peaks.length - 1];
    const jump = this.#spread > this.#spreadBefore + JB_HIGH_MS || this.#spread + GUARD_MS > target + JB_HIGH_MS;
    this.#spreadBefore = this.#spread;
    if (jump) {
      if (last && now - last.t < PEAK_MERGE_MS) last.h = Math.max(last.h, this.#spread);
      else peaks.push({ t: now, h: this.#spread });
    } else if (last && now - last.t < PEAK_MERGE_MS && this.#spread > last.h) last.h = this.#spread;
    if (peaks.length < 2) return 0;
    let gap = 0, h = 0;
    for (let i = 0; i < peaks.length; i++) {
      if (i > 0) gap = Math.max(gap, peaks[i].t - peaks[i - 1].t);
      h = Math.max(h, peaks[i].h);
    }
    return now - peaks[peaks.length - 1].t <= 2 * gap ? h : 0;
  }

  /**
   * The delay (ms) at which the sample at `#pos` would play if decoded now (after what is queued), or undefined
   * without a stream (or while the previous stream's last samples play).
   */
  #delayNext(now: number): number | undefined {
    const s = this.#stream;
    if (!s || this.#pos < s.p0) return undefined;
    const w = this.#window(now);
    if (!w) return undefined;
    const media = ((this.#pos - s.p0) * 1000) / this.#clockRate;
    return now + (this.#q.length * 1000) / this.#clockRate - media - w[0];
  }

  /** True while received audio plays or is being concealed (not comfort noise, not before the first packet). */
  #talking(): boolean {
    return this.#played && (!this.#expanding || this.#expander!.kindAt() === "conceal");
  }

  /**
   * Runs the tick due now (`now` = media-clock ms, normally {@linkcode nextTickTime})
   * and returns the frame to play: `ptime` of samples.
   */
  tick(now: number = this.nextTickTime() ?? 0): EncodedFrame {
    this.#updateTarget(now);
    if (!this.#measured) {
      const d = this.#delayNext(now);
      if (d !== undefined) {
        // The target keeps the delay the stream starts at (initial_delay after a packet that may not have had
        // the smallest transit) until the stream has been observed for a window.
        this.#measured = true;
        this.#target = Math.max(this.#target, Math.min(this.options.max_delay, d));
      }
    }
    for (let guard = 0; this.#q.length < this.#spf; guard++) {
      if (guard > 1000) this.#expand(this.#spf - this.#q.length); // cannot happen: every step makes progress
      else this.#produce(now);
    }
    this.#tick++;
    return this.#emit(this.#spf, now);
  }

  /** One playout decision: appends samples to the queue, or moves `#pos` on. */
  #produce(now: number): void {
    const rate = this.#clockRate;
    const o = this.options;
    const need = this.#spf - this.#q.length;
    const c = this.#cover(this.#pos, Infinity);
    const d = this.#delayNext(now);
    const T = this.#target;
    const s = this.#stream;
    if (c.present > 0) {
      // Accelerate from here (below max_delay by half the band, so that a merge's few ms stay within it).
      const high = Math.min(T + JB_HIGH_MS, o.max_delay - JB_HIGH_MS / 2);
      if (d !== undefined && d > o.max_delay + JB_HIGH_MS / 2) {
        // Played now, these samples would be later than max_delay allows: they are late. Drop down to where
        // accelerating starts, and the length of the merge that follows.
        const [, maxLag] = lagRange(rate);
        const n = Math.ceil(((d - high) * rate) / 1000) + Math.ceil(1.5 * maxLag);
        this.#dropLate(this.#whole(Math.min(c.present, n), true));
        return;
      }
      if (this.#expanding) return this.#merge(c.present);
      if (d !== undefined) {
        const low = Math.min(T, high - JB_HIGH_MS / 2);
        const fast = d >= 4 * high;
        const M = this.#whole(stretchInput(rate), true);
        if ((d >= high || d < low) && c.present >= M && (fast || now >= this.#nextStretch)) {
          const x = this.#decode(this.#pos, M);
          const r = d >= high ? accelerate(x, rate) : preemptiveExpand(x, rate);
          if (r) {
            this.#stretchWait = JB_STRETCH_INTERVAL_MS;
            const kind = d >= high ? ACCELERATED : STRETCHED;
            this.#queue(r.samples, kind, this.#pos, M / r.samples.length);
            if (kind === ACCELERATED) this.#accelSamples += r.removed;
            else this.#stretchSamples += r.removed;
          } else {
            this.#queue(x, RECEIVED, this.#pos);
          }
          // The next try waits; longer after each failure in a row (up to 0.5 s), so audio that will not stretch
          // (loud, neither periodic nor noise-like) costs little.
          this.#nextStretch = now + this.#stretchWait;
          if (!r) this.#stretchWait = Math.min(2 * this.#stretchWait, 480);
          this.#advance(M);
          this.#played = true;
          return;
        }
      }
      const n = Math.min(c.present, this.#whole(need, true));
      this.#queue(this.#decode(this.#pos, n), RECEIVED, this.#pos);
      this.#advance(n);
      this.#played = true;
      return;
    }
    if (c.next < Infinity) {
      // A later packet is there: the samples at #pos are lost (or late).
      const leap = c.next - this.#pos;
      const done = this.#expanding ? this.#expander!.generated - this.#gapBase : 0;
      // The delay the next packet will play at when the rest of the gap is concealed: the expansion so far
      // already stands for `done` of its samples.
      const after = d === undefined ? undefined : d - (done * 1000) / rate;
      // Skipping what is missing is inaudible: it may go down to the target the jitter asks for at once (not the
      // slowly falling one accelerations follow), once the stream has been observed for a window.
      const low = s && now - s.start >= JB_WINDOW_MS ? this.#rawTarget : T;
      if (after !== undefined && after - low >= this.ptime) {
        // Above the target: skip missing samples rather than conceal them (a loss or the sender's silence is
        // how the delay shrinks for free).
        const n = this.#whole(Math.min(leap - done, Math.floor(((after - low) * rate) / 1000)));
        if (n > 0) {
          this.#skip(n);
          this.#target = Math.max(low, Math.min(T, after - (n * 1000) / rate));
          return;
        }
      }
      if (!this.#expanding) this.#startExpansion();
      const e = this.#expander!;
      const { overlap, align } = this.#mergeShape();
      const left = leap - (e.generated - this.#gapBase) - overlap - (align >> 1);
      if (left <= 0) {
        // The missing audio has been concealed (the merge adds what is left): on to the next packet.
        this.#mergeWant = Math.max(0, leap - (e.generated - this.#gapBase) - overlap);
        this.#gapLost = true;
        this.#advance(leap);
        return;
      }
      this.#expand(Math.min(need, left));
      return;
    }
    this.#expand(need);
  }

  /** Shape of the merge out of the current expansion: the cross-fade length and the alignment range. */
  #mergeShape(): { overlap: number; align: number } {
    const e = this.#expander!;
    const rate = this.#clockRate;
    if (e.lag > 0 && e.kindAt() === "conceal") {
      return { overlap: Math.max(e.lag, Math.round(rate * 0.0025)), align: e.lag };
    }
    return { overlap: Math.round(rate * 0.005), align: 0 };
  }

  /** Starts concealing after the last sample queued. */
  #startExpansion(): void {
    this.#expander!.start(this.#hist, this.#floor);
    this.#expanding = true;
    this.#gapBase = 0;
    this.#gapLost = false;
  }

  /** Queues `n` samples of expansion (starting one if none is in progress). */
  #expand(n: number): void {
    if (!this.#expanding) this.#startExpansion();
    const e = this.#expander!;
    const t = e.generated;
    const x = e.generate(n);
    // Concealment first, then comfort noise (the kind changes once).
    let k = 0;
    while (k < n && e.kindAt(t + k) === "conceal") k++;
    if (k > 0) this.#queue(x.subarray(0, k), CONCEALED);
    if (k < n) this.#queue(x.subarray(k), NOISE);
    this.#expandSamples += n;
  }

  /** Skips `n` missing samples at `#pos` to shrink the delay (the splice is merged like a loss). */
  #skip(n: number): void {
    if (!this.#expanding) this.#startExpansion();
    this.#gapLost = true;
    this.#skipSamples += n;
    this.#advance(n);
  }

  /** Drops the `n` received samples at `#pos`: they could only be played beyond max_delay. */
  #dropLate(n: number): void {
    const end = this.#pos + n;
    for (const r of this.#ranges) {
      if (r.start >= end) break;
      if (r.end <= end) this.#n.late++;
      else if (r.start < end) this.#n.trimmed++;
    }
    if (!this.#expanding) this.#startExpansion();
    this.#gapLost = true;
    this.#advance(n);
  }

  /**
   * Ends an expansion on the received samples at `#pos` (`present` of them): the expansion goes on to the point
   * (within one of its periods) where it best matches the period that precedes the new audio, and cross-fades into
   * it; the received samples follow unaltered. `exact` (drain): no alignment, the fade as given.
   */
  #merge(present: number, exact?: { overlap: number }): void {
    const rate = this.#clockRate;
    const e = this.#expander!;
    const [, maxLag] = lagRange(rate);
    const len = Math.min(present, this.#whole(Math.max(this.#spf, 2 * maxLag), true));
    const x = this.#decode(this.#pos, len);
    const shape = exact ? { overlap: exact.overlap, align: 0 } : this.#mergeShape();
    const b = shape.overlap > 0 ? backwardExtension(x, shape.overlap, rate) : undefined;
    if (b) {
      let k = 0;
      if (shape.align > 0) {
        // The best match, and among about equal ones the one nearest to the length wanted.
        let best = -Infinity;
        const want = Math.min(shape.align - 1, this.#mergeWant);
        const ahead = e.peek(0, shape.align + shape.overlap);
        for (let j = 0; j < shape.align; j++) {
          const cj = correlation(ahead, j, b, 0, shape.overlap) - (0.1 * Math.abs(j - want)) / shape.align;
          if (cj > best + 1e-9) {
            best = cj;
            k = j;
          }
        }
      }
      if (k > 0) this.#expand(k);
      const kind = e.kindAt() === "conceal" ? CONCEALED : NOISE;
      const fade = e.generate(shape.overlap);
      const n = shape.overlap;
      for (let j = 0; j < n; j++) {
        const w = (j + 1) / (n + 1);
        fade[j] = fade[j] * (1 - w) + b[j] * w;
      }
      this.#queue(fade, kind);
      this.#expandSamples += n;
    } else {
      // Too little audio to extend backwards: fade the expansion into the audio itself.
      const n = Math.min(shape.overlap, len);
      const fade = e.generate(n);
      for (let j = 0; j < n; j++) {
        const w = (j + 1) / (n + 1);
        x[j] = Math.round(fade[j] * (1 - w) + x[j] * w);
      }
    }
    if (!this.#gapLost && e.generated - this.#gapBase > 0) this.#n.recovered++;
    this.#mergeWant = 0;
    this.#queue(x, RECEIVED, this.#pos);
    this.#advance(len);
    this.#expanding = false;
    this.#played = true;
  }

  /** Decodes the held samples `[from, from + n)`, and follows the background level of what was received. */
  #decode(from: number, n: number): Int16Array {
    const x = this.#pcm!.decode(this.#gather(from, n));
    const block = Math.max(1, Math.round(this.#clockRate / 100));
    for (let i = 0; i + block <= x.length; i += block) {
      const r = rms(x, i, block);
      // A floor: down at once to a quieter block, up slowly (doubling in about 1.4 s of audio).
      this.#floor = !this.#floorSet || r < this.#floor ? r : this.#floor * 1.005;
      this.#floorSet = true;
    }
    return x;
  }

  /** Queues samples of one kind, and keeps the last ones as the history an expansion starts from. */
  #queue(x: ArrayLike<number>, kind: number, from = NaN, step = 1): void {
    this.#q.push(x, kind, from, step);
    const h = this.#hist;
    const H = h.length;
    const n = Math.min(H, x.length);
    if (n < H) h.copyWithin(0, n);
    for (let i = 0; i < n; i++) h[H - n + i] = x[x.length - n + i];
  }

  /** Builds the frame of the taken samples, and counts it. */
  #emit(n: number, now: number): EncodedFrame {
    const info = this.#info!;
    const q = this.#q;
    const h = q.head;
    let rx = false, conceal = false, noise = false, acc = false, str = false, firstRx = -1;
    for (let i = 0; i < n; i++) {
      const k = q.kind[h + i];
      if (k <= STRETCHED) {
        rx = true;
        if (firstRx < 0) firstRx = i;
        if (k === ACCELERATED) acc = true;
        else if (k === STRETCHED) str = true;
      } else if (k === CONCEALED) conceal = true;
      else noise = true;
    }
    const firstPos = firstRx >= 0 ? q.pos[h + firstRx] : NaN;
    const type: FrameType = rx ? "normal" : conceal ? "concealed" : "silence";
    this.#n[type]++;
    if (acc) this.#n.accelerated++;
    if (str) this.#n.preemptive_expanded++;
    if (conceal) this.#n.expanded++;
    if (noise) this.#n.comfort_noise++;
    const s = this.#stream;
    if (firstRx >= 0 && s && firstPos >= s.p0) {
      const w = this.#window(now);
      if (w) {
        const d = now + (firstRx * 1000) / this.#clockRate - ((firstPos - s.p0) * 1000) / this.#clockRate - w[0];
        this.#lastDelay = d;
        this.#delaySum += d;
        this.#delayTicks++;
        this.#hist1ms[Math.max(0, Math.min(HIST_MS, Math.round(d)))]++;
        if (d > this.#delayMax) this.#delayMax = d;
      }
    }
    if (rx && this.#firstPlayMs === 0 && this.#firstArrival !== undefined) this.#firstPlayMs = now - this.#firstArrival;
    const whole = this.#whole(n, true);
    const pcm = new Int16Array(whole);
    pcm.set(q.samples.subarray(h, h + n));
    q.drop(n);
    const frame: EncodedFrame = {
      kind: "encoded",
      codec: info.name,
      clockRate: this.#clockRate,
      payload: this.#pcm!.encode(pcm),
      pts: this.#outPts,
      type,
      decoded: pcm,
    };
    this.#outPts += whole;
    return frame;
  }

  /**
   * End of stream: returns everything queued and every buffered sample in order, in frames (gaps between them
   * concealed by exactly their length, a last incomplete frame as it is), without waiting for their playout times
   * and without time-scaling.
   */
  drain(): EncodedFrame[] {
    const out: EncodedFrame[] = [];
    if (!this.#info || !this.#pcm) return out;
    const overlap = Math.round(this.#clockRate * 0.005);
    while (this.#hasAhead()) {
      const c = this.#cover(this.#pos, Infinity);
      if (c.present > 0) {
        if (this.#expanding) this.#merge(c.present, { overlap: 0 });
        else {
          this.#queue(this.#decode(this.#pos, c.present), RECEIVED, this.#pos);
          this.#advance(c.present);
        }
        continue;
      }
      const leap = c.next - this.#pos;
      if (!this.#expanding) this.#startExpansion();
      const ov = Math.min(overlap, leap);
      if (leap > ov) this.#expand(leap - ov);
      this.#gapLost = true;
      this.#advance(leap);
      this.#merge(this.#cover(this.#pos, Infinity).present, { overlap: ov });
    }
    this.#expanding = false;
    const now = this.nextTickTime() ?? 0;
    while (this.#q.length > 0) {
      const n = Math.min(this.#spf, this.#q.length);
      out.push(this.#emit(n, now));
      this.#tick++;
    }
    return out;
  }

  /** The delay below which a fraction `q` of the played audio was, in ms (1 ms bins). */
  #percentile(q: number): number {
    if (this.#delayTicks === 0) return 0;
    const want = q * this.#delayTicks;
    let acc = 0;
    for (let i = 0; i <= HIST_MS; i++) {
      acc += this.#hist1ms[i];
      if (acc >= want) return i;
    }
    return HIST_MS;
  }

  /** Counters and gauges. */
  stats(_now?: number): JitterBufferStats {
    const s = this.#stream;
    const lost = this.#lostBefore + (s ? Math.max(0, s.maxSeq - s.minSeq + 1 - s.received) : 0);
    let buffered = 0;
    for (const r of this.#ranges) if (r.end > this.#pos) buffered++;
    const ms = (samples: number) => (samples * 1000) / this.#clockRate;
    return {
      ...this.#n,
      lost,
      accelerated_ms: ms(this.#accelSamples),
      preemptive_ms: ms(this.#stretchSamples),
      expanded_ms: ms(this.#expandSamples),
      skipped_ms: ms(this.#skipSamples),
      buffered,
      max_packet_ms: this.#maxPacket,
      first_play_ms: this.#firstPlayMs,
      delay_ms: this.#lastDelay,
      delay_p50_ms: this.#percentile(0.5),
      delay_p95_ms: this.#percentile(0.95),
      delay_max_ms: this.#delayMax,
      avg_delay_ms: this.#delayTicks ? this.#delaySum / this.#delayTicks : 0,
      target_delay_ms: this.#target,
      spread_ms: this.#spread,
      skew_ppm: Math.round(-this.#skew * 1e6),
      ptime: this.ptime,
    };
  }
}

const NAME = jitterBuffer.name;
const round1 = (v: number) => Math.round(v * 10) / 10;
/** What the jitter buffer takes: RTP packets (of a codec registered in the stage's context), as declared. */
const ACCEPTS: Format[] = jitterBuffer.accepts!;

/** Creates a `jitter-buffer` stage from validated options: the plugin's `create`, loaded when first used. */
export function createJitterBuffer(opts: JitterBufferOptions, sctx: StageContext): TransformStage {
  const check: FormatCheck = { stage: NAME, ctx: sctx };
  /**
   * The playout buffer, made on first use: a chain in record mode (a file sink) never needs it, and a call's
   * set-up need not allocate its queues.
   */
  let jbMade: JitterBuffer | undefined;
  const playout = (): JitterBuffer => {
    if (jbMade) return jbMade;
    const made = new JitterBuffer(opts, { codecs: sctx.codecs, codec });
    made.onGrid = arm;
    return jbMade = made;
  };
  /** The codec once known (negotiated, or from the first packet): how many samples a payload holds. */
  let codec: CodecInfo | undefined;
  const samplesOf = (p: Uint8Array) => {
    if (!codec) return p.length;
    return payloadSamples(codec, p.length);
  };
  const rb = new RecordBuffer({ reorderMs: opts.reorder_ms, samplesOf });
  let mode: "playout" | "record" = opts.mode === "record" ? "record" : "playout";
  /** The mode for a chain: as the option says, or (`auto`) by the chain's sink. */
  const modeFor = (realtimeSink: boolean): "playout" | "record" =>
    opts.mode === "auto" ? (realtimeSink ? "playout" : "record") : opts.mode;
  const modeText = (m: "playout" | "record") =>
    m === "record"
      ? `mode record${opts.mode === "auto" ? ": the chain ends in a file" : ""}, frames follow the sender's timeline`
      : `mode playout${
        opts.mode === "auto" ? ": the chain ends in a real-time sink" : ""
      }, one frame per ptime on the media clock, adaptive delay by time-scaling`;
  const clock = sctx.clock;
  let ctx: RunContext | undefined;
  let timer: Timer | undefined;
  let stopped = false;
  let summarized = false;

  const arm = () => {
    timer?.cancel();
    timer = undefined;
    if (!ctx || stopped) return;
    const due = playout().nextTickTime();
    if (due === undefined) return;
    timer = clock.at(due, onTick);
  };
  /** What playout has added to the session's counters so far: live updates and the summary add the difference. */
  const added = { late: 0, concealed: 0, stretched: 0 };
  let nextPublish = 0;
  /** Playout's figures into the session's media statistics (each second while playing, and at the end). */
  const publishPlayout = (s: JitterBufferStats) => {
    const media = sctx.session.stats;
    media.lost = Math.max(media.lost, s.lost);
    media.late += s.late - added.late;
    media.concealedFrames += s.concealed - added.concealed;
    added.late = s.late;
    added.concealed = s.concealed;
    if (s.received === 0) return;
    media.playoutDelayMs = { p50: s.delay_p50_ms, p95: s.delay_p95_ms, max: round1(s.delay_max_ms) };
    const stretched = s.accelerated + s.preemptive_expanded;
    media.timeStretchedFrames = (media.timeStretchedFrames ?? 0) + stretched - added.stretched;
    added.stretched = stretched;
  };
  const onTick = () => {
    timer = undefined;
    if (stopped || !ctx) return;
    const jb = playout();
    const due = jb.nextTickTime()!;
    const frame = jb.tick(due);
    if (due >= nextPublish) {
      nextPublish = due + 1000;
      publishPlayout(jb.stats(due));
    }
    ctx.emit(frame);
    if (!timer) arm(); // (emit may have re-armed through onGrid)
  };
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
    const s = playout().stats(clock.now());
    publishPlayout(s);
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
      accelerated: s.accelerated,
      preemptive_expanded: s.preemptive_expanded,
      expanded: s.expanded,
      comfort_noise: s.comfort_noise,
      skipped_ms: round1(s.skipped_ms),
      max_packet_ms: s.max_packet_ms,
      ptime: s.ptime,
      first_play_ms: round1(s.first_play_ms),
      delay_p50_ms: s.delay_p50_ms,
      delay_p95_ms: s.delay_p95_ms,
      delay_max_ms: round1(s.delay_max_ms),
      target_delay_ms: round1(s.target_delay_ms),
      skew_ppm: s.skew_ppm,
    });
  };
  /** Playout needs the codec's transcoder; says what to do when it has none. */
  const requireTranscoder = (info: CodecInfo) => {
    if (mode === "playout" && !info.pcm) {
      throw new FormatError(
        `${NAME} cannot play ${info.name} in real time: its registration has no "pcm" transcoder (decode, ` +
          `encode) to time-scale the audio with; add one to the codec, or use "mode": "record" (a file)`,
      );
    }
    if (mode === "playout" && info.channels !== 1) {
      throw new FormatError(
        `${NAME} plays mono codecs in real time, but ${info.name} has ${info.channels} channels; ` +
          `use "mode": "record" (a file)`,
      );
    }
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
      if (opts.mode === "playout") requireTranscoder(info);
      jbMade?.setCodec(info);
      codec = info;
      return { kind: "encoded", codec: info.name, clockRate: info.clockRate };
    },
    plan(chain) {
      return modeText(modeFor(chain.realtimeSink));
    },
    start(runCtx) {
      ctx = runCtx;
      mode = modeFor(runCtx.realtimeSink);
      if (mode === "playout" && codec) requireTranscoder(codec);
      runCtx.log.info(modeText(mode));
      if (mode === "playout") arm();
    },
    process(frame, emit) {
      if (frame.kind !== "rtp" || stopped) return;
      if (mode === "record") {
        if (!codec && frame.codec && !isTelephoneEvent(frame)) codec = sctx.codecs.get(frame.codec);
        rb.insert(frame, emit);
        return;
      }
      playout().insert(frame, frame.arrival ?? clock.now());
    },
    flush(emit) {
      stopped = true;
      timer?.cancel();
      timer = undefined;
      if (mode === "record") rb.flush(emit);
      summarize();
      if (mode === "playout") { for (const f of playout().drain()) emit(f); }
    },
    close() {
      stopped = true;
      timer?.cancel();
      timer = undefined;
      summarize();
    },
    stats() {
      return mode === "record" ? { mode, ...rb.stats() } : { mode, ...playout().stats(clock.now()) };
    },
  };
}

export default jitterBuffer;
