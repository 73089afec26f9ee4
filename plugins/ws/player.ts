/**
 * Paces a client's audio into a call: what the client sends is queued, and
 * each tick of the media clock takes one frame (`ptime`) of it, or silence
 * when there is nothing to play, so the call's send chain gets a steady
 * real-time stream whatever the client's timing.
 *
 * **Jitter.** Playing starts once `jitter` samples are queued, or once the
 * first of them has waited `jitterMs` (a short sound is not held back
 * forever); when a frame falls due and the queue holds less than a frame
 * (it ran dry), the rest of that frame is silence and playing starts again
 * the same way. A client whose sends come up to
 * `jitterMs` late therefore leaves no gap; the price is that much latency.
 *
 * **Bounds.** At most `maxQueue` samples wait; what a client sends beyond is
 * dropped (counted). A client may send faster than real time (a synthesized
 * sentence at once): it is played at real time.
 *
 * **Marks.** A mark is placed after the audio queued so far, and released
 * when that audio has been played (handed to the call), or at once when the
 * queue is cleared. At most `maxMarks` (default {@linkcode MAX_MARKS}) wait:
 * a mark beyond is refused (`mark` returns false).
 *
 * @example
 * ```ts
 * const p = new CallPlayer({ frame: 160, jitter: 480, jitterMs: 60, maxQueue: 8000 * 30 });
 * p.enqueue(new Int16Array(480), 0);
 * p.next(0).samples; // the first 160 samples
 * ```
 *
 * @module
 */

/** Marks waiting for their audio per call, by default. */
export const MAX_MARKS = 1000;

/** Options of a {@linkcode CallPlayer} (in samples, but `jitterMs`). */
export interface CallPlayerOptions {
  /** Samples per frame (one frame per tick). */
  frame: number;
  /** Samples queued before playing starts. */
  jitter: number;
  /** Or: ms the first queued sample may wait before playing starts anyway. */
  jitterMs: number;
  /** Samples queued at most. */
  maxQueue: number;
  /** Marks waiting at most (default {@linkcode MAX_MARKS}). */
  maxMarks?: number;
}

/** One frame the player hands to the call. */
export interface PlayerFrame {
  /** `frame` samples (a fresh array). */
  samples: Int16Array;
  /** Samples of it that came from the client (the rest is silence). */
  audio: number;
  /** Marks whose audio has now been played, in order. */
  marks: string[];
}

/** Counters of a {@linkcode CallPlayer}. */
export interface CallPlayerStats {
  /** Samples the client sent that were queued. */
  queuedSamples: number;
  /** Samples the client sent beyond `maxQueue` (dropped). */
  droppedSamples: number;
  /** Samples played into the call. */
  playedSamples: number;
  /** Samples dropped by `clear`. */
  clearedSamples: number;
  /** Samples that fell due while the bridge's clock stalled past its catch-up (dropped: played late, they would delay all the rest). */
  skippedSamples: number;
  /** Frames handed over (audio or silence). */
  frames: number;
  /** Frames that were wholly silence (nothing to play). */
  silentFrames: number;
  /** Frames due while playing that the queue could not fill (every end of an utterance counts one). */
  ranDry: number;
  /** Samples waiting now. */
  waiting: number;
}

/** See the module documentation. */
export class CallPlayer {
  readonly #o: CallPlayerOptions;
  #chunks: Int16Array[] = [];
  #head = 0; // index of the first chunk in use
  #offset = 0; // samples of chunks[head] already played
  #queued = 0;
  #playing = false;
  #firstAt = 0; // when the oldest waiting sample arrived (while not playing)
  #enqueued = 0; // position after everything queued, in samples since the start
  #played = 0; // position played up to
  #marks: { name: string; at: number }[] = [];
  readonly #stats: CallPlayerStats = {
    queuedSamples: 0,
    droppedSamples: 0,
    playedSamples: 0,
    clearedSamples: 0,
    skippedSamples: 0,
    frames: 0,
    silentFrames: 0,
    ranDry: 0,
    waiting: 0,
  };

  /**
   * Creates a player.
   * @param opts frame size, jitter allowance, bound
   */
  constructor(opts: CallPlayerOptions) {
    this.#o = opts;
  }

  /** Samples waiting. */
  get queued(): number {
    return this.#queued;
  }

  /** True while playing (false while filling up to the jitter allowance). */
  get playing(): boolean {
    return this.#playing;
  }

  /**
   * Queues the client's samples at time `now` (ms); returns how many were dropped (beyond `maxQueue`).
   * The player keeps `samples` (the caller must not reuse it).
   */
  enqueue(samples: Int16Array, now: number): number {
    const room = Math.max(0, this.#o.maxQueue - this.#queued);
    const take = Math.min(room, samples.length);
    const dropped = samples.length - take;
    this.#stats.droppedSamples += dropped;
    if (take === 0) return dropped;
    if (this.#queued === 0 && !this.#playing) this.#firstAt = now;
    this.#chunks.push(take === samples.length ? samples : samples.subarray(0, take));
    this.#queued += take;
    this.#enqueued += take;
    this.#stats.queuedSamples += take;
    return dropped;
  }

  /** Marks waiting for their audio now. */
  get marks(): number {
    return this.#marks.length;
  }

  /** Places a mark after the audio queued so far; false (refused) when `maxMarks` wait already. */
  mark(name: string): boolean {
    if (this.#marks.length >= (this.#o.maxMarks ?? MAX_MARKS)) return false;
    this.#marks.push({ name, at: this.#enqueued });
    return true;
  }

  /**
   * The bridge's clock skipped `samples` of playing time (a stall longer than it catches up): while playing, the
   * audio that fell due meanwhile is dropped (counted in `skippedSamples`), so the stall costs that audio once
   * instead of delaying everything after it. Returns the marks whose audio is now behind.
   */
  skip(samples: number): string[] {
    if (!this.#playing || samples <= 0) return [];
    let left = Math.min(samples, this.#queued);
    this.#stats.skippedSamples += left;
    this.#queued -= left;
    this.#played += left;
    while (left > 0) {
      const c = this.#chunks[this.#head];
      const k = Math.min(left, c.length - this.#offset);
      left -= k;
      this.#offset += k;
      if (this.#offset === c.length) {
        this.#chunks[this.#head++] = undefined as unknown as Int16Array;
        this.#offset = 0;
      }
    }
    if (this.#queued === 0) this.#playing = false;
    let k = 0;
    while (k < this.#marks.length && this.#marks[k].at <= this.#played) k++;
    const marks = this.#marks.slice(0, k).map((m) => m.name);
    this.#marks = this.#marks.slice(k);
    return marks;
  }

  /** Drops the queued audio; returns the marks released by it (all pending ones). */
  clear(): string[] {
    this.#stats.clearedSamples += this.#queued;
    this.#chunks = [];
    this.#head = 0;
    this.#offset = 0;
    this.#queued = 0;
    this.#played = this.#enqueued;
    this.#playing = false;
    const marks = this.#marks.map((m) => m.name);
    this.#marks = [];
    return marks;
  }

  /** The frame to play at time `now` (ms): the client's audio when playing, silence otherwise. */
  next(now: number): PlayerFrame {
    const o = this.#o;
    const out = new Int16Array(o.frame);
    if (!this.#playing && this.#queued > 0 && (this.#queued >= o.jitter || now - this.#firstAt >= o.jitterMs)) {
      this.#playing = true;
    }
    let n = 0;
    if (this.#playing) {
      while (n < o.frame && this.#queued > 0) {
        const c = this.#chunks[this.#head];
        const k = Math.min(o.frame - n, c.length - this.#offset);
        out.set(c.subarray(this.#offset, this.#offset + k), n);
        n += k;
        this.#offset += k;
        this.#queued -= k;
        if (this.#offset === c.length) {
          this.#chunks[this.#head++] = undefined as unknown as Int16Array;
          this.#offset = 0;
        }
      }
      if (this.#head > 64 && this.#head * 2 > this.#chunks.length) {
        this.#chunks = this.#chunks.slice(this.#head);
        this.#head = 0;
      }
      if (n < o.frame) {
        // Nothing (or not enough) to play when it was due: an underrun. Fill up again before playing on.
        this.#playing = false;
        this.#stats.ranDry++;
      }
    }
    this.#played += n;
    this.#stats.playedSamples += n;
    this.#stats.frames++;
    if (n === 0) this.#stats.silentFrames++;
    let marks: string[] = [];
    if (this.#marks.length > 0 && this.#marks[0].at <= this.#played) {
      let k = 0;
      while (k < this.#marks.length && this.#marks[k].at <= this.#played) k++;
      marks = this.#marks.slice(0, k).map((m) => m.name);
      this.#marks = this.#marks.slice(k);
    }
    return { samples: out, audio: n, marks };
  }

  /** Counters. */
  stats(): CallPlayerStats {
    return { ...this.#stats, waiting: this.#queued };
  }
}
