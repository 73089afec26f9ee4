/**
 * Packet loss concealment for G.711, in the style of ITU-T G.711 Appendix I:
 * pitch-period waveform substitution from a history buffer.
 *
 * - A history of the last 48.75 ms of output is kept.
 * - When a loss starts, the pitch period P (5–15 ms, i.e. 66–200 Hz) is estimated by
 *   normalised cross-correlation of the last 20 ms with the history, and the history is
 *   frozen as the pitch buffer. The synthetic signal repeats the last pitch period; after
 *   10 ms the last two periods, after 20 ms the last three (so long losses do not buzz).
 *   Every wrap of the repeated stretch is smoothed by an overlap-add of P/4 samples, and so
 *   is each switch to more periods.
 * - From 10 ms into the loss, the level falls linearly by 20 % per 10 ms, reaching silence
 *   at 60 ms.
 * - When real audio resumes, its start is overlap-added with the continuation of the
 *   synthetic signal over P/4 samples plus 4 ms per extra 10 ms of loss (at most 10 ms).
 *
 * Unlike Appendix I, this concealer adds no delay (Appendix I delays the output by 3.75 ms
 * so it can cross-fade the last real samples into the synthetic ones). Here the real audio
 * before a loss is never modified; instead the offset between the last real sample and the
 * pitch copy is faded out over the first P/4 synthetic samples, so the junction is
 * continuous. Frames keep their timestamps exactly.
 *
 * @example
 * ```ts
 * const plc = new PacketLossConcealer();
 * plc.receive(decodedFrame);       // real audio: recorded (and smoothed after a loss)
 * const fill = plc.conceal(160);   // 20 ms of synthetic audio for a lost frame
 * ```
 *
 * @module
 */

/** Options of a {@linkcode PacketLossConcealer}. */
export interface PlcOptions {
  /** Sample rate in Hz (default 8000, the rate Appendix I is defined for). Times scale with it. */
  sampleRate?: number;
}

/** A window of the frozen pitch buffer, repeated in a loop, with a smoothed wrap. */
interface Loop {
  /** The repeated samples; the last P/4 are cross-faded into the samples preceding the first. */
  win: Float32Array;
  /** Read position in `win`. */
  pos: number;
}

/** The empty history of a concealer that has seen no samples yet. */
const NO_SAMPLES = new Float32Array(0);

/**
 * Conceals lost frames of a mono stream by pitch-period waveform substitution, and smooths
 * the return to real audio. Feed every real frame to {@linkcode receive} and ask
 * {@linkcode conceal} for the samples of every lost one, in stream order.
 *
 * @example
 * ```ts
 * const plc = new PacketLossConcealer({ sampleRate: 8000 });
 * for (const frame of frames) {
 *   const pcm = frame.lost ? plc.conceal(160) : plc.receive(frame.samples);
 * }
 * ```
 */
export class PacketLossConcealer {
  /** Sample rate in Hz. */
  readonly sampleRate: number;
  /** History of what was played, oldest first; allocated with the first samples (a call without audio makes none). */
  #hist: Float32Array = NO_SAMPLES;
  readonly #histLen: number;
  readonly #pitchMin: number;
  readonly #pitchMax: number;
  readonly #corrLen: number;
  /** Samples per 10 ms: the unit of attenuation, period growth and end overlap. */
  readonly #tenMs: number;

  /** Samples concealed in the current loss (0 when not concealing). */
  #erased = 0;
  #pitch = 0;
  #quarter = 0;
  #pb: Float32Array = NO_SAMPLES;
  #loop: Loop | undefined;
  #periods = 0;
  /** The loop being faded out after a switch to more periods, and how many fade samples remain. */
  #oldLoop: Loop | undefined;
  #fadeLeft = 0;
  /** Offset between the last real sample and the pitch copy, faded out over the first P/4 samples. */
  #offset = 0;

  /**
   * Creates a concealer with an empty (silent) history.
   *
   * @param options sample rate (default 8000 Hz)
   */
  constructor(options: PlcOptions = {}) {
    const fs = options.sampleRate ?? 8000;
    if (!(fs >= 4000 && fs <= 192000)) throw new RangeError(`PLC sample rate must be 4000..192000 Hz, got ${fs}`);
    this.sampleRate = fs;
    this.#tenMs = Math.round(fs / 100);
    this.#pitchMin = Math.round(fs / 200); // 200 Hz
    this.#pitchMax = Math.round(fs * 0.015); // 66.7 Hz
    this.#corrLen = Math.round(fs * 0.02); // 20 ms
    // Three of the longest periods plus a quarter period before them: 48.75 ms at 8 kHz.
    const histLen = 3 * this.#pitchMax + (this.#pitchMax >> 2);
    this.#histLen = Math.max(histLen, this.#corrLen + this.#pitchMax);
  }

  /** Allocates the history and pitch buffers (silent) on first use. */
  #allocate(): void {
    if (this.#hist.length !== 0) return;
    this.#hist = new Float32Array(this.#histLen);
    this.#pb = new Float32Array(this.#histLen);
  }

  /** True while a loss is being concealed (since the last {@linkcode conceal}, until {@linkcode receive}). */
  get concealing(): boolean {
    return this.#erased > 0;
  }

  /** The pitch period in samples chosen for the current or last loss (0 before any loss). */
  get pitch(): number {
    return this.#pitch;
  }

  /** Forgets the history and any loss in progress. */
  reset(): void {
    this.#hist.fill(0); // nothing to clear before the first samples
    this.#erased = 0;
    this.#loop = this.#oldLoop = undefined;
    this.#pitch = 0;
  }

  /**
   * Takes a frame of real audio. After a loss, its first samples are cross-faded in place
   * from the synthetic continuation; it is then recorded in the history.
   *
   * @param samples mono samples of the real frame (modified in place after a loss)
   * @returns `samples`
   */
  receive(samples: Int16Array): Int16Array {
    if (this.#erased > 0) {
      const extra = Math.max(0, Math.ceil(this.#erased / this.#tenMs) - 1);
      const len = Math.min(this.#quarter + extra * Math.round(this.#tenMs * 0.4), this.#tenMs, samples.length);
      for (let i = 0; i < len; i++) {
        const w = (i + 1) / (len + 1);
        samples[i] = toInt16(this.#next() * (1 - w) + samples[i] * w);
      }
      this.#erased = 0;
      this.#loop = this.#oldLoop = undefined;
    }
    this.#remember(samples);
    return samples;
  }

  /**
   * Synthesizes `n` samples to stand in for lost audio, continuing the current loss if one
   * is in progress.
   *
   * @param n number of samples to synthesize
   * @returns the synthetic samples
   */
  conceal(n: number): Int16Array {
    if (this.#erased === 0) this.#startLoss();
    const out = new Int16Array(n);
    for (let i = 0; i < n; i++) out[i] = toInt16(this.#next());
    this.#remember(out);
    return out;
  }

  /** Freezes the history as pitch buffer, estimates the pitch, and sets up the one-period loop. */
  #startLoss(): void {
    this.#allocate();
    this.#pb.set(this.#hist);
    const p = this.#estimatePitch();
    this.#pitch = p;
    this.#quarter = Math.max(1, p >> 2);
    this.#periods = 1;
    this.#loop = this.#makeLoop(1);
    this.#oldLoop = undefined;
    this.#fadeLeft = 0;
    const h = this.#pb;
    // The copy starts at h[H - P]; its natural predecessor is h[H - P - 1], not the last real sample.
    this.#offset = h[h.length - 1] - h[h.length - p - 1];
  }

  /** The next synthetic sample (attenuated), advancing the loss by one sample. */
  #next(): number {
    const t = this.#erased++;
    const ten = this.#tenMs;
    if (t >= 6 * ten) return 0;
    if (t === ten || t === 2 * ten) {
      // Repeat more periods from now on; fade from the old loop into the new over P/4 samples.
      const periods = t === ten ? 2 : 3;
      const loop = this.#makeLoop(periods);
      const old = this.#loop!;
      // Continue from the same sample of the pitch buffer: the new window starts earlier.
      loop.pos = old.pos + (periods - this.#periods) * this.#pitch;
      this.#periods = periods;
      this.#oldLoop = old;
      this.#fadeLeft = this.#quarter;
      this.#loop = loop;
    }
    let v = read(this.#loop!);
    if (this.#fadeLeft > 0) {
      const w = this.#fadeLeft / (this.#quarter + 1);
      v = v * (1 - w) + read(this.#oldLoop!) * w;
      if (--this.#fadeLeft === 0) this.#oldLoop = undefined;
    }
    if (t < this.#quarter) v += this.#offset * (1 - (t + 1) / (this.#quarter + 1));
    if (t >= ten) v *= 1 - (0.2 * (t - ten)) / ten;
    return v;
  }

  /** The last `periods` pitch periods of the frozen history, with the wrap cross-faded. */
  #makeLoop(periods: number): Loop {
    const h = this.#pb;
    const len = periods * this.#pitch;
    const start = h.length - len;
    const q = this.#quarter;
    const win = h.slice(start);
    // Fade the last q samples into the q samples that precede the window, so that the
    // wrap from the end back to the start flows like the original signal did.
    for (let k = 0; k < q; k++) {
      const w = (k + 1) / (q + 1);
      const j = len - q + k;
      win[j] = win[j] * (1 - w) + h[start - q + k] * w;
    }
    return { win, pos: 0 };
  }

  /**
   * The lag in [pitchMin, pitchMax] that maximises the normalised correlation of the last
   * 20 ms of history with the history that many samples earlier: a coarse search on every
   * second lag and sample, then a fine one around the best.
   */
  #estimatePitch(): number {
    const h = this.#pb;
    const n = this.#corrLen;
    const x0 = h.length - n;
    const score = (lag: number, step: number): number => {
      let c = 0;
      let e = 0;
      for (let j = 0; j < n; j += step) {
        const y = h[x0 + j - lag];
        c += h[x0 + j] * y;
        e += y * y;
      }
      return e > 0 ? c / Math.sqrt(e) : -Infinity;
    };
    let best = this.#pitchMax;
    let bestScore = -Infinity;
    for (let lag = this.#pitchMin; lag <= this.#pitchMax; lag += 2) {
      const s = score(lag, 2);
      if (s > bestScore) {
        bestScore = s;
        best = lag;
      }
    }
    const coarse = best;
    bestScore = -Infinity;
    for (let lag = Math.max(this.#pitchMin, coarse - 1); lag <= Math.min(this.#pitchMax, coarse + 1); lag++) {
      const s = score(lag, 1);
      if (s > bestScore) {
        bestScore = s;
        best = lag;
      }
    }
    return best;
  }

  /** Appends output samples to the history. */
  #remember(samples: Int16Array): void {
    this.#allocate();
    const h = this.#hist;
    const n = samples.length;
    if (n >= h.length) {
      h.set(samples.subarray(n - h.length)); // int16 → float32: exact
      return;
    }
    h.copyWithin(0, n);
    h.set(samples, h.length - n);
  }
}

function read(loop: Loop): number {
  const v = loop.win[loop.pos];
  if (++loop.pos === loop.win.length) loop.pos = 0;
  return v;
}

function toInt16(v: number): number {
  const r = Math.round(v);
  return r > 32767 ? 32767 : r < -32768 ? -32768 : r;
}
