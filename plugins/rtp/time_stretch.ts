/**
 * Time-scale modification of PCM for real-time playout, in the manner of
 * WOLA/WSOLA and of WebRTC NetEQ's operations (written here from their
 * descriptions): the jitter buffer's playout uses it to follow its target
 * delay without dropping or inserting whole frames.
 *
 * - {@linkcode findPeriod}: the lag (2.5..15 ms) at which a stretch of signal
 *   best repeats, by normalized cross-correlation.
 * - {@linkcode accelerate}: shortens a chunk by one lag: where the signal is
 *   periodic (correlation ≥ {@linkcode PERIODIC_CORRELATION}) one or more
 *   pitch periods; where it is quiet or unvoiced (noise-like), a chunk of the
 *   same length. The two periods around the cut are cross-faded, so a pure
 *   tone goes on without a step.
 * - {@linkcode preemptiveExpand}: lengthens a chunk of received audio by one
 *   lag, repeating a period with the same cross-fade.
 * - {@linkcode Expander}: synthesizes audio where none was received
 *   (concealment of a loss, and the wait for a late packet): the last
 *   periods of the output repeated, full level for 20 ms, then decaying;
 *   after `maxConcealMs` it fades into comfort noise at the background level
 *   the caller measured (never a hard cut to silence). Its samples are a pure
 *   function of their index, so the playout can look ahead ({@linkcode Expander.peek})
 *   to choose the best splice into the audio that follows.
 * - {@linkcode backwardExtension}: the period that would precede a chunk of
 *   audio, so that concealment can be cross-faded into the chunk's start
 *   without touching a received sample.
 *
 * Everything works on one channel of `Int16Array` / `Float32Array` samples at
 * any rate (lags and lengths scale with it).
 *
 * @example Shorten 30 ms of a 440 Hz tone by one or more of its periods
 * ```ts
 * const x = Int16Array.from({ length: 240 }, (_, i) => Math.round(8000 * Math.sin(2 * Math.PI * 440 * i / 8000)));
 * const r = accelerate(x, 8000);
 * r?.removed; // a lag at which the tone repeats (e.g. 109 samples, six periods)
 * ```
 *
 * @module
 */

/** Normalized correlation from which a chunk counts as periodic (voiced): NetEQ's 0.9. */
export const PERIODIC_CORRELATION = 0.9;
/** RMS below which a chunk counts as quiet and may be time-scaled whatever its shape (−40 dBFS). */
export const QUIET_RMS = 328;
/** Zero crossings per sample from which a chunk of low correlation counts as unvoiced (noise-like). */
const UNVOICED_ZCR = 0.3;
/** Shortest and longest lag, in ms (400 Hz .. 66.7 Hz pitch; multiples of shorter periods fit in the range). */
const MIN_LAG_MS = 2.5;
const MAX_LAG_MS = 15;
/** Comfort noise is never louder than this RMS (−50 dBFS), whatever the background measured. */
export const COMFORT_NOISE_MAX_RMS = 104;

/** Lag range for a sample rate: `[min, max]` in samples. */
export function lagRange(sampleRate: number): [number, number] {
  return [Math.max(2, Math.round((sampleRate * MIN_LAG_MS) / 1000)), Math.round((sampleRate * MAX_LAG_MS) / 1000)];
}

/**
 * Samples a chunk must hold for {@linkcode accelerate} or {@linkcode preemptiveExpand} at `sampleRate`: twice
 * the longest lag (30 ms).
 */
export function stretchInput(sampleRate: number): number {
  return 2 * lagRange(sampleRate)[1];
}

/** A lag and how well the signal repeats at it. */
export interface Period {
  /** Lag in samples. */
  lag: number;
  /** Normalized correlation of `x[from, from + lag)` with `x[from + lag, from + 2 lag)` (−1..1; 0 for silence). */
  corr: number;
}

/** Normalized correlation of `a[i, i + n)` with `b[j, j + n)`; 0 when either is silent. */
export function correlation(a: ArrayLike<number>, i: number, b: ArrayLike<number>, j: number, n: number): number {
  let c = 0, ea = 0, eb = 0;
  for (let k = 0; k < n; k++) {
    const x = a[i + k], y = b[j + k];
    c += x * y;
    ea += x * x;
    eb += y * y;
  }
  return ea > 0 && eb > 0 ? c / Math.sqrt(ea * eb) : 0;
}

/**
 * The lag in `[minLag, maxLag]` at which `x` best repeats from `from` on: the highest normalized correlation of
 * one lag of signal with the next (`x` must hold `from + 2 × maxLag` samples). Ties keep the longer lag.
 *
 * @example
 * ```ts
 * findPeriod(tone, 0, 20, 120).lag; // a multiple of the tone's period, to within a fraction of a sample
 * ```
 */
export function findPeriod(x: ArrayLike<number>, from: number, minLag: number, maxLag: number): Period {
  // Every lag: a tone whose period is not a whole number of samples repeats well only at some multiples of it
  // (440 Hz: 109 samples, six periods, off by 0.09 sample), which a coarse search on every second lag misses.
  let best: Period = { lag: maxLag, corr: -Infinity };
  for (let lag = maxLag; lag >= minLag; lag--) {
    const c = correlation(x, from, x, from + lag, lag);
    if (c > best.corr + 1e-9) best = { lag, corr: c };
  }
  if (best.corr === -Infinity) best.corr = 0;
  return best;
}

/** RMS of `x[from, from + n)`. */
export function rms(x: ArrayLike<number>, from = 0, n = x.length - from): number {
  let e = 0;
  for (let k = 0; k < n; k++) e += x[from + k] * x[from + k];
  return n > 0 ? Math.sqrt(e / n) : 0;
}

/** Zero crossings per sample in `x[from, from + n)`. */
function zeroCrossings(x: ArrayLike<number>, from: number, n: number): number {
  let z = 0;
  for (let k = 1; k < n; k++) if ((x[from + k - 1] < 0) !== (x[from + k] < 0)) z++;
  return n > 1 ? z / (n - 1) : 0;
}

/** Why a chunk may be time-scaled: it repeats (voiced), it is quiet, or it is noise-like (unvoiced). */
export type StretchReason = "periodic" | "quiet" | "unvoiced";

/** A time-scaled chunk. */
export interface Stretched {
  /** The output samples. */
  samples: Int16Array;
  /** Samples removed (accelerate) or added (pre-emptive expand): the lag used. */
  removed: number;
  /** Why the chunk could be time-scaled. */
  reason: StretchReason;
  /** Correlation at the lag. */
  corr: number;
}

/** Chooses the lag for time-scaling `x` (from its start), or undefined when the chunk must be played as it is. */
function chooseLag(
  x: ArrayLike<number>,
  sampleRate: number,
): { lag: number; corr: number; reason: StretchReason } | undefined {
  const [minLag, maxLag] = lagRange(sampleRate);
  if (x.length < 2 * maxLag) return undefined;
  const p = findPeriod(x, 0, minLag, maxLag);
  if (p.corr >= PERIODIC_CORRELATION) return { ...p, reason: "periodic" };
  if (rms(x, 0, 2 * maxLag) <= QUIET_RMS) return { lag: maxLag, corr: p.corr, reason: "quiet" };
  if (zeroCrossings(x, 0, 2 * maxLag) >= UNVOICED_ZCR) return { ...p, reason: "unvoiced" };
  return undefined;
}

function clip(v: number): number {
  const r = Math.round(v);
  return r > 32767 ? 32767 : r < -32768 ? -32768 : r;
}

/**
 * Shortens `x` by one lag: `x[0, L)` cross-fades into `x[L, 2L)` (the first sample is `x[0]`, the last of the fade
 * `x[2L − 1]`), then `x[2L, end)` follows unchanged. Undefined when `x` is shorter than {@linkcode stretchInput} or
 * neither periodic, quiet nor unvoiced (then it should play as it is).
 *
 * @example
 * ```ts
 * const r = accelerate(chunk, 8000);
 * if (r) play(r.samples); // chunk.length − r.removed samples
 * ```
 */
export function accelerate(x: Int16Array, sampleRate: number): Stretched | undefined {
  const c = chooseLag(x, sampleRate);
  if (!c) return undefined;
  const L = c.lag;
  const out = new Int16Array(x.length - L);
  for (let i = 0; i < L; i++) {
    const w = (i + 1) / (L + 1);
    out[i] = clip(x[i] * (1 - w) + x[L + i] * w);
  }
  out.set(x.subarray(2 * L), L);
  return { samples: out, removed: L, reason: c.reason, corr: c.corr };
}

/**
 * Lengthens `x` by one lag: `x[0, L)`, then `x[L, 2L)` cross-faded into a repeat of `x[0, L)`, then `x[L, end)`
 * again, so the period is played twice with continuous joins. Undefined when `x` is too short or its shape does
 * not allow it (see {@linkcode accelerate}).
 *
 * @example
 * ```ts
 * const r = preemptiveExpand(chunk, 8000);
 * if (r) play(r.samples); // chunk.length + r.removed samples
 * ```
 */
export function preemptiveExpand(x: Int16Array, sampleRate: number): Stretched | undefined {
  const c = chooseLag(x, sampleRate);
  if (!c) return undefined;
  const L = c.lag;
  const out = new Int16Array(x.length + L);
  out.set(x.subarray(0, L), 0);
  for (let i = 0; i < L; i++) {
    const w = (i + 1) / (L + 1);
    out[L + i] = clip(x[L + i] * (1 - w) + x[i] * w);
  }
  out.set(x.subarray(L), 2 * L);
  return { samples: out, removed: L, reason: c.reason, corr: c.corr };
}

/**
 * The `n` samples that would precede `x[0]` if `x` went back in time with its own period: `x` shifted by whole
 * periods (the best lag of `x`, or of as much of it as there is). Cross-fading into this ends exactly where
 * `x[0]` continues, so the received samples themselves are never altered. Undefined when `x` is too short to
 * tell (fewer than 2 × the shortest lag samples).
 *
 * @example
 * ```ts
 * const b = backwardExtension(decoded, 40, 8000); // b[39] flows into decoded[0]
 * ```
 */
export function backwardExtension(x: ArrayLike<number>, n: number, sampleRate: number): Float32Array | undefined {
  const [minLag, maxLag0] = lagRange(sampleRate);
  const maxLag = Math.min(maxLag0, Math.floor(x.length / 2));
  if (maxLag < minLag) return undefined;
  const p = findPeriod(x, 0, minLag, maxLag);
  const L = p.lag;
  const m = Math.ceil(n / L);
  if (m * L > x.length) return undefined;
  const out = new Float32Array(n);
  for (let j = 0; j < n; j++) out[j] = x[j - n + m * L];
  return out;
}

/** Samples in the comfort noise table. */
const NOISE_LENGTH = 8192;
let noiseTable: Float32Array | undefined;

/**
 * A fixed table of low-passed white noise of unit RMS, from a seeded generator: comfort noise is deterministic.
 * Made on first use (not when the module loads: the loop ran cold at every start-up, 5-15 ms, in processes that
 * never conceal anything).
 */
function comfortNoise(): Float32Array {
  return noiseTable ??= makeNoise();
}

function makeNoise(): Float32Array {
  const n = NOISE_LENGTH;
  const t = new Float32Array(n);
  let s = 0x2545f491;
  let prev = 0, e = 0;
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    const white = ((s >>> 0) / 4294967296) * 2 - 1;
    prev = 0.6 * prev + white; // a gentle low-pass: the background of a call is rarely white
    t[i] = prev;
    e += prev * prev;
  }
  const g = 1 / Math.sqrt(e / n);
  for (let i = 0; i < n; i++) t[i] *= g;
  return t;
}

/** Options of an {@linkcode Expander}. */
export interface ExpanderOptions {
  /** Sample rate, Hz. */
  sampleRate: number;
  /** How long the recent audio is repeated (decaying after 20 ms; its last `fadeMs` fading into comfort noise), ms. */
  maxConcealMs: number;
  /** Length of the fade from repeated audio into comfort noise, ms (default 30, at most `maxConcealMs`). */
  fadeMs?: number;
}

/** What an {@linkcode Expander} has synthesized at a given sample: repeated audio, the fade, or comfort noise. */
export type ExpandKind = "conceal" | "noise";

/**
 * Synthesizes audio where none was received: from {@linkcode start} on, sample `t` is a pure function of `t`
 * (generate in order with {@linkcode generate}, look ahead with {@linkcode peek}).
 *
 * @example
 * ```ts
 * const e = new Expander({ sampleRate: 8000, maxConcealMs: 100 });
 * e.start(lastOutput, 20); // the recent output, and the background RMS for comfort noise
 * const fill = e.generate(160);
 * ```
 */
export class Expander {
  /** Sample rate, Hz. */
  readonly sampleRate: number;
  readonly #fullLen: number;
  readonly #concealLen: number;
  readonly #fadeLen: number;
  #win = new Float32Array(0);
  #lag = 0;
  #offset = 0;
  #q = 1;
  #noise = 0;
  /** The comfort noise table, fetched once an expansion needs noise (not per sample). */
  #noiseTable: Float32Array | undefined;
  #noisePhase = 0;
  #t = 0;

  /**
   * Creates an expander (it synthesizes nothing before {@linkcode start}).
   * @param options sample rate, concealment length, fade length
   */
  constructor(options: ExpanderOptions) {
    this.sampleRate = options.sampleRate;
    this.#fullLen = Math.round(options.sampleRate * 0.02);
    this.#concealLen = Math.max(0, Math.round((options.sampleRate * options.maxConcealMs) / 1000));
    this.#fadeLen = Math.min(this.#concealLen, Math.round((options.sampleRate * (options.fadeMs ?? 30)) / 1000));
  }

  /** Samples of history {@linkcode start} looks at (60 ms and a quarter period). */
  get historyLength(): number {
    const [, maxLag] = lagRange(this.sampleRate);
    return 4 * maxLag + (maxLag >> 2);
  }

  /** The lag repeated (0 when the history was silent: comfort noise only). */
  get lag(): number {
    return this.#lag;
  }

  /** Samples generated since {@linkcode start}. */
  get generated(): number {
    return this.#t;
  }

  /** What sample `t` (default: the next one) is. */
  kindAt(t: number = this.#t): ExpandKind {
    return this.#lag > 0 && t < this.#concealLen ? "conceal" : "noise";
  }

  /**
   * Starts a new expansion after `history` (the output so far; its last sample is the one the expansion follows),
   * with comfort noise at `noiseRms` (capped at {@linkcode COMFORT_NOISE_MAX_RMS}).
   */
  start(history: ArrayLike<number>, noiseRms: number): void {
    const [minLag, maxLag] = lagRange(this.sampleRate);
    const H = history.length;
    this.#t = 0;
    this.#noise = Math.min(Math.max(0, noiseRms), COMFORT_NOISE_MAX_RMS);
    if (this.#noise > 0) this.#noiseTable ??= comfortNoise();
    this.#noisePhase = (this.#noisePhase + 1237) % NOISE_LENGTH;
    this.#lag = 0;
    if (H < 2 * maxLag + 2 || rms(history, H - 2 * maxLag, 2 * maxLag) < 1) return;
    // The lag at which the last maxLag samples best repeat the ones before them.
    let best = maxLag, bestC = -Infinity;
    for (let lag = maxLag; lag >= minLag; lag--) {
      const c = correlation(history, H - maxLag, history, H - maxLag - lag, maxLag);
      if (c > bestC + 1e-9) {
        bestC = c;
        best = lag;
      }
    }
    const L = best;
    // Repeat as many whole periods as fit in 2 × maxLag (up to three): a longer loop buzzes less on speech.
    const k = Math.max(1, Math.min(3, Math.floor((2 * maxLag) / L)));
    const len = Math.min(k * L, H - 1);
    const start = H - len;
    const q = Math.max(1, L >> 2);
    const win = new Float32Array(len);
    for (let i = 0; i < len; i++) win[i] = history[start + i];
    // The wrap from the window's end back to its start flows like the samples before the start did.
    for (let j = 0; j < q && start - q + j >= 0; j++) {
      const w = (j + 1) / (q + 1);
      const i = len - q + j;
      win[i] = win[i] * (1 - w) + history[start - q + j] * w;
    }
    this.#win = win;
    this.#lag = L;
    this.#q = q;
    // The copy starts at history[start]; its natural predecessor is history[start - 1], not the last sample.
    this.#offset = history[H - 1] - history[start - 1];
  }

  /** Sample `t` of the expansion (not rounded). */
  #at(t: number): number {
    let v = 0;
    const fadeStart = this.#concealLen - this.#fadeLen;
    if (this.#lag > 0 && t < this.#concealLen) {
      let s = this.#win[t % this.#win.length];
      if (t < this.#q) s += this.#offset * (1 - (t + 1) / (this.#q + 1));
      // Full level for 20 ms, then a linear decay to half level where the fade into comfort noise starts.
      let g = 1;
      if (t >= this.#fullLen) g = 1 - 0.5 * Math.min(1, (t - this.#fullLen) / Math.max(1, fadeStart - this.#fullLen));
      if (t >= fadeStart) g *= 1 - (t - fadeStart + 1) / (this.#fadeLen + 1);
      v = s * g;
    }
    if (this.#noise > 0) {
      // Comfort noise fades in as the repeated audio fades out (at once when there is none to repeat).
      let g = 1;
      if (this.#lag > 0) g = t < fadeStart ? 0 : Math.min(1, (t - fadeStart + 1) / (this.#fadeLen + 1));
      if (g > 0) v += g * this.#noise * this.#noiseTable![(this.#noisePhase + t) % NOISE_LENGTH];
    }
    return v;
  }

  /** The next `n` samples, advancing. */
  generate(n: number): Float32Array {
    const out = this.peek(0, n);
    this.#t += n;
    return out;
  }

  /** `n` samples from `ahead` samples after the next one, without advancing. */
  peek(ahead: number, n: number): Float32Array {
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = this.#at(this.#t + ahead + i);
    return out;
  }
}

/** Rounds and clips float samples to 16 bits. */
export function toInt16(x: ArrayLike<number>): Int16Array {
  const out = new Int16Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = clip(x[i]);
  return out;
}

/**
 * The largest absolute difference between consecutive samples (a click shows as a step far larger than the
 * signal's own), optionally across `prev` → `x[0]`.
 *
 * @example
 * ```ts
 * maxStep(new Int16Array([0, 100, -50])); // 150
 * ```
 */
export function maxStep(x: ArrayLike<number>, prev?: number): number {
  let m = 0;
  if (prev !== undefined && x.length > 0) m = Math.abs(x[0] - prev);
  for (let i = 1; i < x.length; i++) {
    const d = Math.abs(x[i] - x[i - 1]);
    if (d > m) m = d;
  }
  return m;
}
