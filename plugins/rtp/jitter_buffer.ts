/**
 * `jitter-buffer`: RTP packets in, one encoded frame per `ptime` out, paced by
 * the media clock (a pull model, like pjmedia's jbuf).
 *
 * `process()` only inserts packets. From the first packet on, the stage runs a
 * drift-free tick grid on the media clock (tick n at t0 + n × ptime, t0 = first
 * arrival + `initial_delay`) and at every tick emits exactly one
 * {@linkcode EncodedFrame} whose `type` is:
 *
 * - `normal`: the packet due at this tick;
 * - `concealed`: the packet due is missing (lost, or late) while audio is
 *   flowing: a payload of the right length (samples per frame) whose content
 *   is to be ignored; the decoder synthesizes packet-loss concealment;
 * - `silence`: nothing to play (after a reset until the new stream's first
 *   packet is due, or once the stream has been missing for longer than
 *   `max_conceal`); the payload holds G.711 silence.
 *
 * ## Playout delay and its adaptation
 *
 * Each packet's relative transit time is `arrival − media time of its RTP
 * timestamp`. Over a sliding window ({@linkcode JB_WINDOW_MS}, in 1 s blocks)
 * the buffer keeps the smallest and largest transit. The playout delay D is
 * how long a packet with the smallest transit waits before it is played; a
 * packet is late when its transit exceeds the smallest by more than D. The
 * target delay is `(largest − smallest transit) + 5 ms`, clamped to
 * [`min_delay`, `max_delay`].
 *
 * - Growing is fast: as soon as D is below the target (a late packet widens the
 *   transit spread at once), each tick inserts a frame (concealed while talking,
 *   silence otherwise) without consuming a packet, until D reaches the target.
 * - Shrinking is slow: only when D exceeds the target by a whole frame, and not
 *   before the stream has been observed for a full window (a jitter peak is
 *   remembered for the window's length). A frame is then removed by skipping a
 *   missing slot (a loss or silence: inaudible, one per tick), or while audio
 *   flows, at most one frame per {@linkcode JB_SHRINK_STEP_MS}, preferring a quiet
 *   frame (G.711 segment ≤ 2), any frame after {@linkcode JB_SHRINK_FORCE_MS}.
 *
 * ## Sequence and resets
 *
 * Sequence numbers (16 bits) and timestamps (32 bits) are extended across
 * wrap-around. Duplicates are dropped (by extended sequence number), packets
 * arriving after their playout tick are dropped as late. The buffer resets
 * (the old stream's buffered packets still play at their ticks, then the new
 * stream starts at the current delay, on the same tick grid) on an SSRC change, on a sequence jump of more than 3000 confirmed
 * by a second consecutive packet (RFC 3550 A.1), and on a timestamp jump (a packet
 * due more than 2 s late with a newer sequence number, or more than
 * `max_delay` + 2 s early). A packet that would be late while nothing plays
 * (after a pause in the stream) starts a new talkspurt at the current delay
 * instead of being dropped.
 *
 * When `ptime` is not set it is learned: from the first packet's size (G.711 is one
 * byte per sample), then from timestamps (three consecutive packets whose timestamp
 * step and size agree on another duration switch it).
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
import { type Codec, type EncodedFrame, type Format, formatToString, type RtpFrame } from "../../core/frame.ts";
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
    "Frame duration in ms, 10..60. Default: learned from the packets (20 until known).",
  ),
  max_conceal: z.number().min(0).max(2000).default(100).describe(
    "How long a missing stream is concealed before the buffer plays silence, 0..2000 ms (default 100).",
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
/** A sequence jump larger than this (either way) starts a probation (RFC 3550 A.1 MAX_DROPOUT). */
const MAX_DROPOUT = 3000;
/** A packet this much newer or older than expected (ms) signals a timestamp jump. */
const TS_JUMP_MS = 2000;
/** Size of the duplicate-detection ring of sequence numbers. */
const SEQ_RING = 1024;

/** Counters and gauges of a {@linkcode JitterBuffer}. */
export interface JitterBufferStats {
  /** Unique packets received (late ones included, duplicates not). */
  received: number;
  /** Packets never received (expected from sequence numbers minus received). */
  lost: number;
  /** Packets dropped because they arrived after their playout time. */
  late: number;
  /** Duplicate packets dropped. */
  duplicate: number;
  /** Frames emitted as `normal`. */
  normal: number;
  /** Frames emitted as `concealed`. */
  concealed: number;
  /** Frames emitted as `silence`. */
  silence: number;
  /** Frames inserted to grow the delay. */
  inserted: number;
  /** Missing slots skipped to shrink the delay. */
  skipped: number;
  /** Buffered frames dropped to shrink the delay. */
  dropped: number;
  /** Resets (SSRC change, sequence or timestamp jump, ptime change). */
  resets: number;
  /** Resets caused by an SSRC change. */
  ssrc_changes: number;
  /** Packets discarded: an unconfirmed sequence jump, or buffered when ptime changed. */
  discarded: number;
  /** Packets waiting in the buffer. */
  buffered: number;
  /** Current playout delay (ms): how long a packet of the smallest transit waits. */
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
  /** Extended timestamp of slot 0. */
  ts0: number;
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

/** Payload byte of silence for a codec. */
function silenceByte(codec: Codec): number {
  return codec === "PCMA" ? 0xd5 : 0xff;
}

/** True when every sample of a G.711 payload is in segment 0..2 (below about −30 dBFS). */
function isQuiet(payload: Uint8Array, codec: Codec): boolean {
  const x = codec === "PCMA" ? 0x55 : 0xff;
  for (let i = 0; i < payload.length; i++) {
    if (((payload[i] ^ x) & 0x70) > 0x20) return false;
  }
  return true;
}

/**
 * The jitter buffer's logic without timers: {@linkcode insert} packets as they
 * arrive, call {@linkcode tick} once per `ptime` at the times given by
 * {@linkcode nextTickTime}. The `jitter-buffer` stage drives it from the media clock.
 *
 * @example
 * ```ts
 * const jb = new JitterBuffer({ min_delay: 20, max_delay: 500, initial_delay: 40, max_conceal: 100 });
 * jb.insert(rtpFrame, 0); // first packet at t = 0 ms: plays at t = 40
 * jb.nextTickTime(); // 40
 * const frame = jb.tick(); // { kind: "encoded", type: "normal", ... }
 * ```
 */
export class JitterBuffer {
  /** Options in effect. */
  readonly options: JitterBufferOptions;
  /** Called when the grid changes (first packet, ptime change), so the driver re-arms its timer. */
  onGrid?: () => void;
  /** Frame duration (ms). */
  ptime: number;
  #ptimeFixed: boolean;
  #clockRate = 8000;
  #spf: number;
  #codec: Codec = "PCMU";

  // Tick grid: tick n is due at t0 + n × ptime; `#tick` is the next one to run.
  #t0: number | undefined;
  #tick = 0;
  /** Slot (frame index relative to the stream's first timestamp) played at the next tick. */
  #slot = 0;
  #buffer = new Map<number, RtpFrame>();
  /** After a reset: the old stream's buffered frames, by the absolute tick that plays them. */
  #tail = new Map<number, RtpFrame>();
  #tailEnd = 0;
  #stream: Stream | undefined;
  #seqRing = new Float64Array(SEQ_RING).fill(-1);
  #pendingJump: { frame: RtpFrame; arrival: number } | undefined;
  #talking = false;
  #missingRun = 0;
  #outPts = 0;
  #learnCount = 0;
  #learnSamples = 0;

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
    duplicate: 0,
    normal: 0,
    concealed: 0,
    silence: 0,
    inserted: 0,
    skipped: 0,
    dropped: 0,
    resets: 0,
    ssrc_changes: 0,
    discarded: 0,
  };

  /** @param options validated options */
  constructor(options: JitterBufferOptions) {
    this.options = options;
    this.#ptimeFixed = options.ptime !== undefined;
    this.ptime = options.ptime ?? 20;
    this.#spf = Math.round((this.ptime * this.#clockRate) / 1000);
    this.#initialDelay = Math.max(options.min_delay, Math.min(options.max_delay, options.initial_delay ?? 60));
    this.#lastTarget = this.#initialDelay;
  }

  /** Sets the codec and clock rate assumed until packets say otherwise. */
  setFormat(codec: Codec | undefined, clockRate: number | undefined): void {
    if (codec) this.#codec = codec;
    if (clockRate && clockRate !== this.#clockRate) {
      this.#clockRate = clockRate;
      this.#spf = Math.round((this.ptime * clockRate) / 1000);
    }
  }

  /** Due time of the next tick, or undefined before the first packet. */
  nextTickTime(): number | undefined {
    return this.#t0 === undefined ? undefined : this.#t0 + this.#tick * this.ptime;
  }

  /** Inserts a received packet that arrived at `arrival` (media-clock ms). */
  insert(frame: RtpFrame, arrival: number): void {
    if (frame.codec) this.#codec = frame.codec;
    if (frame.clockRate && frame.clockRate !== this.#clockRate) this.setFormat(undefined, frame.clockRate);
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
    const media = ((extTs - s.ts0) * 1000) / this.#clockRate; // ms of media since slot 0
    const slot = Math.round(media / this.ptime);
    const due = this.#t0! + (this.#tick + slot - this.#slot) * this.ptime;
    const lead = due - arrival;
    if (lead > this.options.max_delay + TS_JUMP_MS || (lead < -TS_JUMP_MS && seqDiff > 0)) {
      // The timestamp jumped while the sequence went on: a new timeline.
      this.#reset();
      this.#anchor(frame, arrival);
      return;
    }
    if (ext === s.maxSeq + 1 && this.#learn(frame, extTs - s.maxSeqTs)) {
      // ptime changed: this packet starts the stream again on the new grid.
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
    if (ext > s.maxSeq) {
      s.maxSeq = ext;
      s.maxSeqTs = extTs;
    } else if (ext < s.minSeq) {
      s.minSeq = ext;
    }
    if (extTs > s.maxTs) s.maxTs = extTs;
    this.#observe(arrival, arrival - media);
    if (slot < this.#slot) {
      if (!this.#talking && this.#buffer.size === 0 && this.#tail.size === 0 && seqDiff > 0) {
        // Late, but nothing is playing: a talkspurt starting after a pause. Resynchronize on
        // it rather than drop it (its transit is already in the old stream's statistics).
        this.#n.received--;
        this.#reset();
        this.#anchor(frame, arrival);
        return;
      }
      this.#n.late++;
      return;
    }
    if (this.#buffer.has(slot)) {
      // Same timestamp, other sequence number: treat as a duplicate of the slot.
      this.#n.duplicate++;
      return;
    }
    this.#buffer.set(slot, frame);
  }

  /**
   * Learns ptime from consecutive packets whose size and timestamp step agree.
   * Returns true when it switched ptime (the stream has been reset).
   */
  #learn(frame: RtpFrame, tsStep: number): boolean {
    if (this.#ptimeFixed) return false;
    const samples = frame.payload.length; // G.711: one byte per sample
    const ms = (samples * 1000) / this.#clockRate;
    if (samples === tsStep && samples !== this.#spf && Number.isInteger(ms) && ms >= 10 && ms <= 60) {
      if (samples === this.#learnSamples) this.#learnCount++;
      else {
        this.#learnSamples = samples;
        this.#learnCount = 1;
      }
      if (this.#learnCount >= 3) {
        this.#learnCount = 0;
        this.#reset(true);
        this.#regrid(ms);
        return true;
      }
    } else {
      this.#learnCount = 0;
    }
    return false;
  }

  /** Changes ptime, keeping the next tick's due time as the new grid origin. */
  #regrid(ptime: number): void {
    if (this.#t0 !== undefined) {
      this.#t0 += this.#tick * this.ptime;
      this.#tick = 0;
      this.#slot = 0;
      this.#tailEnd = 0;
    }
    this.ptime = ptime;
    this.#spf = Math.round((ptime * this.#clockRate) / 1000);
    this.onGrid?.();
  }

  /** Starts a stream with `frame` as its first packet (slot 0). */
  #anchor(frame: RtpFrame, arrival: number): void {
    if (this.#t0 === undefined && !this.#ptimeFixed) {
      const ms = (frame.payload.length * 1000) / this.#clockRate;
      if (Number.isInteger(ms) && ms >= 10 && ms <= 60 && ms !== this.ptime) {
        this.ptime = ms;
        this.#spf = frame.payload.length;
      }
    }
    const ext = frame.sequence + 16 * 65536;
    this.#stream = {
      ssrc: frame.ssrc,
      ts0: frame.timestamp,
      maxTs: frame.timestamp,
      maxSeq: ext,
      minSeq: ext,
      maxSeqTs: frame.timestamp,
      received: 1,
      start: arrival,
    };
    this.#seqRing[ext % SEQ_RING] = ext;
    this.#n.received++;
    if (this.#t0 === undefined) {
      this.#t0 = arrival + this.#initialDelay;
      this.#tick = 0;
      this.#slot = 0;
      this.onGrid?.();
    } else {
      // Play slot 0 at the first tick at or after arrival + the delay reached so far.
      const want = Math.max(this.options.min_delay, Math.min(this.options.max_delay, this.#lastTarget));
      const k = Math.max(this.#tick, this.#tailEnd, Math.ceil((arrival + want - this.#t0) / this.ptime - 1e-9));
      this.#slot = this.#tick - k;
    }
    this.#observe(arrival, arrival);
    this.#buffer.set(0, frame);
  }

  /**
   * Forgets the stream; the tick grid goes on. What the old stream still has
   * buffered plays first, at the ticks it was due (unless `discard`).
   */
  #reset(discard = false): void {
    const s = this.#stream;
    if (s) this.#lostBefore += Math.max(0, s.maxSeq - s.minSeq + 1 - s.received);
    this.#n.resets++;
    if (this.#pendingJump) this.#n.discarded++;
    if (discard) {
      this.#n.discarded += this.#buffer.size + this.#tail.size;
      this.#tail.clear();
    } else {
      for (const [slot, f] of this.#buffer) {
        const t = this.#tick + slot - this.#slot;
        this.#tail.set(t, f);
        if (t + 1 > this.#tailEnd) this.#tailEnd = t + 1;
      }
    }
    this.#buffer.clear();
    this.#stream = undefined;
    this.#pendingJump = undefined;
    this.#talking = false;
    this.#missingRun = 0;
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

  /** Current delay and target at time `now`, or undefined without a stream. */
  #delays(now: number): { delay: number; target: number } | undefined {
    if (!this.#stream || this.#t0 === undefined) return undefined;
    const w = this.#window(now);
    if (!w) return undefined;
    const delay = this.#t0 + (this.#tick - this.#slot) * this.ptime - w[0];
    const o = this.options;
    const target = Math.max(o.min_delay, Math.min(o.max_delay, w[1] - w[0] + GUARD_MS));
    return { delay, target };
  }

  #frame(type: "normal" | "concealed" | "silence", payload?: Uint8Array): EncodedFrame {
    let p = payload;
    if (!p) {
      p = new Uint8Array(this.#spf);
      p.fill(silenceByte(this.#codec));
    }
    const f: EncodedFrame = {
      kind: "encoded",
      codec: this.#codec,
      clockRate: this.#clockRate,
      payload: p,
      pts: this.#outPts,
      type,
    };
    this.#outPts += p.length;
    this.#n[type]++;
    return f;
  }

  /**
   * Runs the tick due now (`now` = media-clock ms, normally {@linkcode nextTickTime})
   * and returns the frame to play.
   */
  tick(now: number = this.nextTickTime() ?? 0): EncodedFrame {
    const tail = this.#tail.get(this.#tick);
    if (tail) {
      // The previous stream's last packets play out before the new one starts.
      this.#tail.delete(this.#tick);
      this.#tick++;
      this.#slot++;
      this.#talking = true;
      this.#missingRun = 0;
      return this.#frame("normal", tail.payload);
    }
    const d = this.#delays(now);
    if (d) {
      this.#delaySum += d.delay;
      this.#delayTicks++;
      this.#lastTarget = d.target;
      if (d.delay < d.target) {
        // Grow: play a filler, the slot waits one more tick.
        this.#shrinkSince = undefined;
        this.#n.inserted++;
        this.#tick++;
        return this.#frame(this.#talking ? "concealed" : "silence");
      }
      const s = this.#stream!;
      if (d.delay - this.ptime >= d.target && now - s.start >= JB_WINDOW_MS) {
        this.#shrinkSince ??= now;
        const f = this.#buffer.get(this.#slot);
        if (!f) {
          this.#n.skipped++;
          this.#slot++;
        } else if (
          now - this.#lastShrink >= JB_SHRINK_STEP_MS &&
          (isQuiet(f.payload, this.#codec) || now - this.#shrinkSince >= JB_SHRINK_FORCE_MS)
        ) {
          this.#n.dropped++;
          this.#buffer.delete(this.#slot);
          this.#slot++;
          this.#lastShrink = now;
          this.#shrinkSince = undefined;
        }
      } else {
        this.#shrinkSince = undefined;
      }
    }
    this.#tick++;
    return this.#play();
  }

  /** Plays the current slot and moves to the next. */
  #play(): EncodedFrame {
    const f = this.#buffer.get(this.#slot);
    this.#slot++;
    if (f) {
      this.#buffer.delete(this.#slot - 1);
      this.#talking = true;
      this.#missingRun = 0;
      return this.#frame("normal", f.payload);
    }
    this.#missingRun++;
    if (this.#talking && this.#missingRun * this.ptime <= this.options.max_conceal) return this.#frame("concealed");
    this.#talking = false;
    return this.#frame("silence");
  }

  /**
   * End of stream: returns every buffered packet in order (gaps between them
   * concealed), without waiting for their playout times.
   */
  drain(): EncodedFrame[] {
    const out: EncodedFrame[] = [];
    for (const t of [...this.#tail.keys()].sort((a, b) => a - b)) {
      out.push(this.#frame("normal", this.#tail.get(t)!.payload));
    }
    this.#tail.clear();
    if (this.#buffer.size === 0) return out;
    const last = Math.max(...this.#buffer.keys());
    while (this.#slot <= last) {
      const f = this.#buffer.get(this.#slot);
      this.#buffer.delete(this.#slot);
      this.#slot++;
      this.#tick++;
      out.push(f ? this.#frame("normal", f.payload) : this.#frame("concealed"));
    }
    return out;
  }

  /** Counters and gauges, at time `now` (for the delays). */
  stats(now?: number): JitterBufferStats {
    const s = this.#stream;
    const lost = this.#lostBefore + (s ? Math.max(0, s.maxSeq - s.minSeq + 1 - s.received) : 0);
    const d = this.#delays(now ?? this.nextTickTime() ?? 0);
    return {
      ...this.#n,
      lost,
      buffered: this.#buffer.size + this.#tail.size,
      delay_ms: d ? d.delay : 0,
      target_delay_ms: d ? d.target : this.#lastTarget,
      avg_delay_ms: this.#delayTicks ? this.#delaySum / this.#delayTicks : 0,
      ptime: this.ptime,
    };
  }
}

/** The `jitter-buffer` plugin definition. */
export const jitterBuffer = definePlugin({
  name: "jitter-buffer",
  kind: "transform",
  description: "Reorders RTP packets and plays one frame per ptime on the media clock, with adaptive delay",
  accepts: [{ kind: "rtp" }],
  produces: { kind: "encoded" },
  realtime: true,
  options: jitterBufferOptions,
  create(opts, sctx) {
    const jb = new JitterBuffer(opts);
    const clock = sctx.clock;
    let ctx: RunContext | undefined;
    let timer: Timer | undefined;
    let stopped = false;

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

    return {
      negotiate(input: Format | undefined): Format {
        if (!input || input.kind !== "rtp") {
          throw new FormatError(
            `jitter-buffer expects rtp frames, but got ${
              input ? formatToString(input) : "nothing"
            }: put an rtp-depacketizer before it`,
          );
        }
        jb.setFormat(input.codec, input.clockRate);
        return { kind: "encoded", codec: input.codec, clockRate: input.clockRate ?? 8000 };
      },
      start(runCtx) {
        ctx = runCtx;
        arm();
      },
      process(frame) {
        if (frame.kind !== "rtp" || stopped) return;
        jb.insert(frame, frame.arrival ?? clock.now());
      },
      flush(emit) {
        stopped = true;
        timer?.cancel();
        timer = undefined;
        for (const f of jb.drain()) emit(f);
      },
      close() {
        stopped = true;
        timer?.cancel();
        timer = undefined;
      },
      stats() {
        return { ...jb.stats(clock.now()) };
      },
    };
  },
});

export default jitterBuffer;
