/**
 * A polyphase windowed-sinc resampler: int16 interleaved PCM at one rate to int16 interleaved
 * PCM at another, streaming, with exact rational phases, zero-phase alignment and identical
 * results however the input is cut into frames.
 *
 * How it works (the technique of GStreamer's `audioresample` and the speex resampler, written
 * here from their descriptions):
 *
 * - **Filter.** A low-pass prototype h(τ) = 2fc·sinc(2fc·τ)·w(τ), τ in input samples, with a
 *   Kaiser window w (β from the stopband attenuation A: β = 0.1102 (A − 8.7)) and a length from
 *   Kaiser's formula N = (A − 7.95) / (2.285 · 2π · Δf / fs), rounded up to a multiple of 16 (the
 *   SIMD loop takes 16 taps per step). The passband ends at `pass` and the stopband starts at
 *   `stop`, both fractions of the lower Nyquist frequency (of the output when down-sampling, of
 *   the input when up-sampling), so nothing above the output's Nyquist frequency folds back
 *   (down-sampling) and no image of the input band remains (up-sampling).
 * - **Phases.** For an output/input ratio L/M in lowest terms, output n falls at input time
 *   n·M/L: integer part `idx`, fraction `phase/L`. The L rows of taps (row p = h sampled at
 *   p/L + k) are computed once, so an output is one dot product of `taps` input samples with one
 *   row, and the phase advances by M mod L with integer arithmetic: no drift, ever. Each row is
 *   normalised to a DC gain of exactly 1. When L × taps would exceed {@linkcode MAX_TABLE_FLOATS}
 *   (unusual ratios such as 44 100 → 7 999), the table holds Q + 1 rows at fractions j/Q and each
 *   output interpolates linearly between the products with the two rows around its exact phase.
 * - **Cascade.** Down-sampling by a large factor costs N ∝ fs_in / Δf taps per output. When it is
 *   cheaper, the rate comes down first in steps whose transition bands are wide (each only has to
 *   remove what would fold into the final band [0, stop]), and the sharp polyphase filter runs at
 *   the lower rate: half-band decimators by 2 (transition band [stop, fs/2 − stop], centred on
 *   fs/4, so every tap at an even offset from the centre is zero and the others come in equal
 *   pairs: 4P − 1 taps cost P multiplies), then, if it helps, an integer decimator by D. 44.1 kHz →
 *   8 kHz runs as 44.1 → 22.05 kHz (half-band, 23 taps) → 11.025 kHz (half-band, 51 taps) → 8 kHz
 *   (128 taps, 320 phases). The plan that costs least is chosen. The half-band kernel takes its
 *   input split into even and odd samples, so that it makes four or eight neighbouring outputs at
 *   once from contiguous loads.
 * - **Alignment.** The filter is centred on each output's input time: output k of a stream is
 *   the band-limited input at time k / rate_out exactly (no group delay left in the output). The
 *   price is look-ahead: an output is made once the input `latency` seconds after it has arrived.
 *   At the end of a stream `flush` feeds zeros so the output has round(n_in × rate_out / rate_in)
 *   samples.
 * - **Kernel.** The loops (int16 → float, the dot products, float → int16 with rounding and
 *   saturation) run in WebAssembly with 128-bit SIMD (`kernel.wat`, assembled by
 *   `scripts/wat.ts`), called once per stage per frame, on float32 data in the module's memory.
 *   A JavaScript kernel with the same interface (Float32Array, float64 accumulation) is used where
 *   WebAssembly SIMD is unavailable, or when asked for (`kernel: "js"`). Where the native library
 *   is built (`native/resample.c`, by `scripts/setup.sh`) and FFI is allowed, the dot products and
 *   the half-band loops run in C on the same memory instead (`kernel: "native"`, the default
 *   there with AVX-512), 16 lanes at a time: the same floats as the WebAssembly loops, bit for bit.
 *   `VOXPIPE_RESAMPLE_KERNEL=wasm` (or `js`, `native`) sets the default kernel.
 *
 * @example
 * ```ts
 * const r = new PolyphaseResampler({ inRate: 44100, outRate: 8000, inChannels: 1, outChannels: 1 });
 * const out = r.process(new Int16Array(882)); // 20 ms in → 160 samples out, give or take the look-ahead
 * const tail = r.flush(); // the rest, so that the total is round(n × 8000 / 44100)
 * ```
 *
 * @module
 */
import { ReusedArrays, Slab } from "../../core/slab.ts";
import { wasmBytes } from "./_kernel_wasm.ts";
import { nativeIsa, nativeLoops, nativeLoopsProblem } from "./_native_kernel.ts";

/** Largest exact phase table (floats) before the interpolated table is used instead. */
export const MAX_TABLE_FLOATS = 1 << 18;
/** Rows of the interpolated table (at most; fewer for long filters, within the same memory). */
const INTERP_ROWS = 4096;
/**
 * Input sample frames processed per pass by default (frames longer than this are processed in pieces): a resampler's
 * memory at 44.1 → 8 kHz mono is ~70 KB beside its table, which suits the many resamplers of a process full of calls.
 */
export const PASS_FRAMES = 4096;
/**
 * Input sample frames per pass for a chain that runs faster than real time (a file to a file: one stream, so memory
 * does not count): ~265 KB beside the table at 44.1 → 8 kHz mono (~70 KB with {@linkcode PASS_FRAMES}). A pass then
 * gives that plan's last stage (L = 320) 2 972 outputs, over 4 L, and the native fir loop computes four outputs per
 * load of a coefficient row instead of two: in the 600 s transcode, its calls took ~26 instead of ~40 ms (V8 profile,
 * warm runs), the fewer, longer calls included. The output is the same, bit for bit, whatever the pass.
 */
export const OFFLINE_PASS_FRAMES = 16384;
/** Views of the memory a resampler keeps for copying its output out (output frames alternate between lengths). */
const VIEWS_KEPT = 4;
/** Taps per SIMD loop step: every row is a multiple of this. */
const TAP_BLOCK = 16;

/** A filter specification: stopband attenuation and band edges as fractions of the lower Nyquist frequency. */
export interface FilterSpec {
  /** Stopband attenuation in dB (Kaiser design); 0 selects the 2-tap linear interpolator (no filter). */
  attenuation: number;
  /** End of the passband, as a fraction of the lower Nyquist frequency (e.g. 0.85: 3.4 kHz at 8 kHz). */
  pass: number;
  /** Start of the stopband, as a fraction of the lower Nyquist frequency (1: nothing aliases). */
  stop: number;
}

/**
 * The named filter specifications of the `resampler` stage.
 *
 * - `fastest`: 70 dB; passband to 0.85 of Nyquist; stopband from 1.15 of Nyquist: what lies
 *   within 15 % above the output's Nyquist frequency folds back above the passband (3.4–4 kHz at
 *   8 kHz), attenuated by less than 70 dB.
 * - `medium`: 100 dB, passband to 0.85 (3.4 kHz at 8 kHz), stopband from the Nyquist frequency.
 * - `best`: 120 dB, passband to 0.91, stopband from the Nyquist frequency.
 * - `linear`: linear interpolation between neighbouring input samples, no anti-alias filter.
 */
export const FILTER_SPECS: Readonly<Record<"fastest" | "medium" | "best" | "linear", Readonly<FilterSpec>>> = {
  fastest: { attenuation: 70, pass: 0.85, stop: 1.15 },
  medium: { attenuation: 100, pass: 0.85, stop: 1 },
  best: { attenuation: 120, pass: 0.91, stop: 1 },
  linear: { attenuation: 0, pass: 0, stop: 0 },
};

/** Options of a {@linkcode PolyphaseResampler}. */
export interface PolyphaseOptions {
  /** Input sample rate, Hz (a positive integer). */
  inRate: number;
  /** Output sample rate, Hz (a positive integer). */
  outRate: number;
  /** Interleaved input channels. */
  inChannels: number;
  /**
   * Output channels: equal to `inChannels`, or 1 (down-mix: the average of the input channels),
   * or any count from a mono input (copies).
   */
  outChannels: number;
  /** Filter specification; default {@linkcode FILTER_SPECS}.medium. */
  filter?: FilterSpec;
  /**
   * Input frames processed per pass (1 024..65 536; default {@linkcode PASS_FRAMES}): larger passes take more memory
   * and less time ({@linkcode OFFLINE_PASS_FRAMES}). The output does not depend on it.
   */
  passFrames?: number;
  /**
   * `native` (the WebAssembly kernel with its hot loops in C; the default where the library is built, FFI is allowed
   * and the CPU has AVX-512: the same output as `wasm`, bit for bit), `wasm` (SIMD; the default elsewhere) or `js`
   * (the JavaScript kernel). `VOXPIPE_RESAMPLE_KERNEL` sets the default.
   */
  kernel?: ResamplerKernel;
  /**
   * `process` returns its output in one array of the resampler's, overwritten by the next call, instead of a new
   * array per call (for a stage whose next stage borrows its input). Default false.
   */
  reuseOutput?: boolean;
}

/** One filter stage of a plan. */
export interface StagePlan {
  /** Input rate of this stage, Hz (may be fractional inside a cascade). */
  inRate: number;
  /** Output rate of this stage, Hz. */
  outRate: number;
  /** Output/input ratio L/M in lowest terms: phases L, step M (in 1/L input samples). */
  L: number;
  /** See `L`. */
  M: number;
  /** Taps per row (a multiple of 16; the filter itself spans 2 × `half` of them). */
  taps: number;
  /** Half the filter span, in this stage's input samples: output time sits between taps half − 1 and half. */
  half: number;
  /** Cut-off of the prototype, cycles per input sample (0 for the linear interpolator). */
  cutoff: number;
  /** Kaiser β (0 for the linear interpolator). */
  beta: number;
  /** Rows of the table: L (exact) or Q + 1 (interpolated). */
  rows: number;
  /** True when rows are interpolated (L too large for an exact table). */
  interpolated: boolean;
  /**
   * For a half-band decimator by 2 (L = 1, M = 2): P, its pairs of non-zero taps at odd offsets
   * ±1, ±3 … ±(2P − 1) around the centre tap (`taps` is then the span 4P − 1, `half` 2P).
   * Absent for the polyphase stages.
   */
  halfband?: number;
}

/** A resampling plan: the stages and what they cost. */
export interface Plan {
  /** Stages in order: half-band decimators by 2, if any, then an integer decimator, if any, then the polyphase stage. */
  stages: StagePlan[];
  /** Multiply-adds per output sample (per channel), counting a 16-tap step of overhead per stage output. */
  macsPerOutput: number;
  /** Look-ahead: how much input, in seconds, must arrive after an output's time before that output is made. */
  latency: number;
}

/** Greatest common divisor of two non-negative integers. */
export function gcd(a: number, b: number): number {
  while (b) [a, b] = [b, a % b];
  return a;
}

/** Modified Bessel function of the first kind, order 0 (power series; converges for all x used here). */
export function besselI0(x: number): number {
  const q = (x * x) / 4;
  let term = 1;
  let sum = 1;
  for (let k = 1; k < 200; k++) {
    term *= q / (k * k);
    sum += term;
    if (term < sum * 1e-17) break;
  }
  return sum;
}

/**
 * 1 / (m!)² for m = 0..40: the power series of I0 in a = x²/4, enough terms for a ≤ 40
 * (β ≤ 12.6, attenuation ≤ 123 dB) to full double precision.
 */
const I0_TERMS: Float64Array = (() => {
  const c = new Float64Array(41);
  let f = 1;
  for (let m = 0; m < c.length; m++) {
    if (m > 0) f *= m;
    c[m] = 1 / (f * f);
  }
  return c;
})();

/**
 * Where the I0 series may stop: `I0_LIMITS[m]` is the largest a for which the terms after aᵐ / (m!)² add at most
 * 2⁻⁶⁰ to the sum (which is at least 1): the first dropped term is at most 2⁻⁶¹ and, with a ≤ (m + 2)² / 2, each one
 * after it at most half the one before. Increasing in m; the last is infinite (every term). A point of a Kaiser
 * window then sums only the terms its a needs: 41 near the centre of a 120 dB window, a handful near its edges. The
 * dropped terms are below the sum's own rounding, so the table comes out as with every term.
 */
const I0_LIMITS: Float64Array = (() => {
  const t = new Float64Array(I0_TERMS.length);
  for (let m = 0; m < t.length - 1; m++) {
    t[m] = Math.min(Math.pow(2 ** -61 / I0_TERMS[m + 1], 1 / (m + 1)), (m + 2) ** 2 / 2);
  }
  t[t.length - 1] = Infinity;
  return t;
})();

/** Kaiser's β for a stopband attenuation of `a` dB. */
export function kaiserBeta(a: number): number {
  if (a > 50) return 0.1102 * (a - 8.7);
  if (a >= 21) return 0.5842 * (a - 21) ** 0.4 + 0.07886 * (a - 21);
  return 0;
}

/** Taps (a multiple of 16) for attenuation `a` dB and a transition of `width` cycles per sample. */
function kaiserTaps(a: number, width: number): number {
  const n = Math.ceil((a - 7.95) / (2.285 * 2 * Math.PI * width)) + 1;
  return Math.ceil(n / TAP_BLOCK) * TAP_BLOCK;
}

function ratio(outRate: number, inRate: number): [number, number] {
  // Rates may be fractional inside a cascade (44100 / 4 is not, but 22050 / 4 is): scale to integers.
  let s = 1;
  while ((!Number.isInteger(outRate * s) || !Number.isInteger(inRate * s)) && s < 1e6) s *= 2;
  const o = Math.round(outRate * s), i = Math.round(inRate * s);
  const g = gcd(o, i);
  return [o / g, i / g];
}

function stage(inRate: number, outRate: number, taps: number, half: number, cutoff: number, beta: number): StagePlan {
  const [L, M] = ratio(outRate, inRate);
  const interpolated = L * taps > MAX_TABLE_FLOATS;
  const rows = interpolated ? Math.max(2, Math.min(INTERP_ROWS, Math.floor((2 * MAX_TABLE_FLOATS) / taps))) + 1 : L;
  return { inRate, outRate, L, M, taps, half, cutoff, beta, rows, interpolated };
}

/**
 * Plans the conversion from `inRate` to `outRate` with `spec`: a single polyphase stage, or,
 * when down-sampling and cheaper, half-band decimators by 2 and/or an integer decimator by D
 * followed by the polyphase stage.
 *
 * @example
 * ```ts
 * planResampler(44100, 8000).stages.map((s) => [s.outRate, s.taps, s.halfband ?? 0]); // [[22050, 23, 6], [11025, 51, 13], [8000, 128, 0]]
 * ```
 */
export function planResampler(inRate: number, outRate: number, spec: FilterSpec = FILTER_SPECS.medium): Plan {
  if (spec.attenuation === 0) {
    const s = stage(inRate, outRate, TAP_BLOCK, 1, 0, 0);
    return { stages: [s], macsPerOutput: 2 * TAP_BLOCK, latency: (TAP_BLOCK - 1) / inRate };
  }
  const a = spec.attenuation;
  const beta = kaiserBeta(a);
  const low = Math.min(inRate, outRate) / 2;
  const passHz = spec.pass * low, stopHz = spec.stop * low;
  const single = (fin: number): StagePlan => {
    const taps = kaiserTaps(a, (stopHz - passHz) / fin);
    return stage(fin, outRate, taps, taps / 2, (passHz + stopHz) / 2 / fin, beta);
  };
  const costOf = (stages: StagePlan[]) =>
    stages.reduce(
      (sum, s) =>
        sum +
        ((s.halfband
            ? HALFBAND_COST * s.halfband + HALFBAND_EXTRA
            : (s.taps + TAP_BLOCK) * (s.interpolated ? 1.5 : 1)) *
            s.outRate) / outRate,
      0,
    );
  // From `fin` on: the polyphase stage alone, or after an integer decimator by d when that costs less.
  const tail = (fin: number): StagePlan[] => {
    let best = [single(fin)];
    let bestCost = costOf(best);
    for (let d = 2; outRate < fin && fin / d > outRate; d++) {
      const fi = fin / d;
      // The decimator keeps the passband and removes what would fold into [0, stop] at fi.
      const stop1 = fi - stopHz;
      if (stop1 <= passHz) break;
      const taps1 = kaiserTaps(a, (stop1 - passHz) / fin);
      const s1 = stage(fin, fi, taps1, taps1 / 2, (passHz + stop1) / 2 / fin, beta);
      const plan = [s1, single(fi)];
      const cost = costOf(plan);
      if (cost < bestCost) (best = plan, bestCost = cost);
    }
    return best;
  };
  let best = tail(inRate);
  let bestCost = costOf(best);
  // Half-band decimators by 2 first, while one fits: its transition band [stop, fin/2 − stop] is centred on fin/4,
  // so it folds nothing into [0, stop] and keeps the passband; its zero and equal taps make it cheap.
  const halves: StagePlan[] = [];
  for (let fin = inRate; outRate < inRate && stopHz < fin / 4 && fin / 2 >= outRate; fin /= 2) {
    halves.push(halfbandStage(fin, a, (fin / 2 - 2 * stopHz) / fin, beta));
    const plan = [...halves, ...tail(fin / 2)];
    const cost = costOf(plan);
    if (cost < bestCost) (best = plan, bestCost = cost);
  }
  const latency = best.reduce((sum, s) => sum + (s.taps - s.half) / s.inRate, 0);
  return { stages: best, macsPerOutput: bestCost, latency };
}

/**
 * Cost of a half-band decimator per output, in the units of the polyphase stages' (one multiply-add of the
 * dot-product loop): HALFBAND_COST per pair of taps plus HALFBAND_EXTRA (the centre tap, the store and the split of
 * its input into even and odd samples). Calibrated in-process on 44.1 → 8 kHz, where the two half-bands (with the
 * load and split of their input) took about 0.6 of the sharp stage's time.
 */
const HALFBAND_COST = 2;
/** See {@linkcode HALFBAND_COST}. */
const HALFBAND_EXTRA = 5;

/**
 * A half-band decimator from `fin` to fin / 2 for attenuation `a` dB over a transition of `width` cycles per
 * sample centred on 1/4: a Kaiser-windowed sinc cut at fin / 4, whose taps at even offsets from the centre are
 * zero. Its span is 4P − 1 taps (P pairs at odd offsets), the smallest at least Kaiser's length.
 */
function halfbandStage(fin: number, a: number, width: number, beta: number): StagePlan {
  const n = Math.ceil((a - 7.95) / (2.285 * 2 * Math.PI * width)) + 1;
  const pairs = Math.max(1, Math.ceil((n + 1) / 4));
  return { ...stage(fin, fin / 2, 4 * pairs - 1, 2 * pairs, 0.25, beta), halfband: pairs };
}

/**
 * The coefficients of a half-band stage as the kernel reads them: c0 (the centre) then c1 … cP (the taps at
 * offsets ±1, ±3 … ±(2P − 1)), each repeated in 4 lanes; normalised to a DC gain of exactly 1 (c0 + 2 Σ ci).
 */
export function halfbandTable(s: StagePlan): Float32Array {
  const pairs = s.halfband ?? 0;
  if (pairs < 1) throw new RangeError("halfbandTable: not a half-band stage");
  const span = 2 * pairs; // the window's edge: offset 2P (an even offset, zero anyway)
  const i0b = besselI0(s.beta);
  const h = (j: number) => {
    const u = j / span;
    const w = besselI0(s.beta * Math.sqrt(1 - u * u)) / i0b;
    return j === 0 ? 0.5 * w : (Math.sin((Math.PI * j) / 2) / (Math.PI * j)) * w;
  };
  const c = [h(0)];
  for (let i = 0; i < pairs; i++) c.push(h(2 * i + 1));
  const sum = c[0] + 2 * c.slice(1).reduce((x, y) => x + y, 0);
  const t = new Float32Array((pairs + 1) * 4);
  for (let i = 0; i <= pairs; i++) t.fill(c[i] / sum, 4 * i, 4 * i + 4);
  return t;
}

/** Tables already computed in this process, by stage design. */
const tableCache = new Map<string, Float32Array>();

/**
 * The coefficient table of a stage: `rows` rows of `taps` floats; row r holds the prototype at
 * fraction f = r/D (D = L exact, or rows − 1 interpolated): tap k = h(f + half − 1 − k),
 * normalised to a sum of 1. Every τ falls on the grid j/D, and h is even, so h is evaluated
 * once per grid point of one half (20 481 points for 11 025 → 8 000 Hz instead of 40 960) and
 * the rows are gathered from there. The sines of the grid come from the recurrence
 * sin((j+1)θ) = 2 cos θ · sin(jθ) − sin((j−1)θ) (within 1e−12 of `Math.sin` over a whole grid).
 *
 * Computed once per design and process, by the same operations in the same order wherever it
 * runs, so every way gives the same table, bit for bit: with `native` (a resampler on the native
 * loops) by the C library's `vp_kaiser_table` ({@linkcode stageTableNative}: for the 320 rows of
 * 11 025 → 8 000 Hz its loop takes ~0.6 ms, and the call 2.3–2.9 ms in a fresh process, its memory
 * touched for the first time; the WebAssembly functions, run once in their baseline code there,
 * took 6–13 ms), else by the WebAssembly kernel's `kaiser_proto` and `kaiser_rows` where
 * WebAssembly SIMD runs ({@linkcode stageTableWasm}), else by {@linkcode stageTableJs} (run once
 * at start-up, the JavaScript loops are still cold, and took 40–80 ms for those 320 rows).
 *
 * @param s the stage
 * @param native compute it with the native library when it loads (the resampler runs on it anyway)
 */
export function stageTable(s: StagePlan, native = false): Float32Array {
  const key = `${s.L}/${s.rows}/${s.taps}/${s.half}/${s.cutoff}/${s.beta}`;
  let t = tableCache.get(key);
  if (!t) {
    t = s.cutoff === 0
      ? stageTableJs(s)
      : native && nativeLoops()
      ? stageTableNative(s)
      : wasmKernelAvailable()
      ? stageTableWasm(s)
      : stageTableJs(s);
    tableCache.set(key, t);
  }
  return t;
}

/** Grid points per unit of τ (D) and grid points in one half of the filter (span) of a stage. */
function grid(s: StagePlan): { d: number; span: number } {
  const d = s.interpolated ? s.rows - 1 : s.L;
  return { d, span: s.half * d };
}

/** The parameters of {@linkcode kaiserProto} for a windowed-sinc stage. */
function protoParams(s: StagePlan, d: number) {
  const th = (Math.PI * 2 * s.cutoff) / d; // sinc argument per grid step, in radians
  return { th, sin1: Math.sin(th), k2: 2 * Math.cos(th), c2: 2 * s.cutoff, i0b: besselI0(s.beta), b2: s.beta ** 2 / 4 };
}

/**
 * {@linkcode stageTable} computed in JavaScript (where WebAssembly SIMD does not run); gives the
 * same table as the WebAssembly kernel, which a test checks.
 */
export function stageTableJs(s: StagePlan): Float32Array {
  const { d, span } = grid(s);
  const proto = new Float64Array(span + 1); // proto[span] = 0: the window's edge
  if (s.cutoff === 0) {
    for (let j = 0; j < span; j++) proto[j] = Math.max(0, 1 - j / d); // linear interpolation
  } else {
    const { th, sin1, k2, c2, i0b, b2 } = protoParams(s, d);
    kaiserProto(proto, span, th, sin1, k2, c2, i0b, b2);
  }
  const t = new Float32Array(s.rows * s.taps);
  kaiserRows(proto, span, s.rows, s.taps, s.half, d, t);
  return t;
}

/** The prototype on its grid (see the WebAssembly kernel's `kaiser_proto`, which does the same). */
function kaiserProto(
  proto: Float64Array,
  span: number,
  th: number,
  sin1: number,
  k2: number,
  c2: number,
  i0b: number,
  b2: number,
): void {
  let prev = 0, cur = 0; // sin((j − 1)θ), sin(jθ)
  const top = I0_TERMS.length - 1;
  let n = top; // the highest term the point needs (see I0_LIMITS); a only falls as j grows
  for (let j = 0; j < span; j++) {
    if (j === 1) cur = sin1;
    if (j > 1) {
      const next = k2 * cur - prev;
      prev = cur;
      cur = next;
    }
    const sinc = j > 0 ? cur / (th * j) : 1;
    const u = j / span;
    // I0(β√(1 − u²)) = Σ aᵐ / (m!)², a = β²(1 − u²)/4, by Horner over the I0_TERMS it needs.
    const a = b2 * (1 - u * u);
    while (n > 0 && a <= I0_LIMITS[n - 1]) n--;
    while (a > I0_LIMITS[n]) n++;
    let w = I0_TERMS[n];
    for (let m = n - 1; m >= 0; m--) w = w * a + I0_TERMS[m];
    proto[j] = ((c2 * sinc) * w) / i0b;
  }
  proto[span] = 0;
}

/** The rows gathered from the prototype and normalised (see the WebAssembly kernel's `kaiser_rows`). */
function kaiserRows(
  proto: Float64Array,
  span: number,
  rows: number,
  taps: number,
  half: number,
  d: number,
  t: Float32Array,
): void {
  const row = new Float64Array(taps);
  for (let r = 0; r < rows; r++) {
    let sum = 0;
    for (let k = 0; k < taps; k++) {
      const j = Math.abs(r + (half - 1 - k) * d);
      const v = j < span ? proto[j] : 0;
      row[k] = v;
      sum += v;
    }
    for (let k = 0, o = r * taps; k < taps; k++) t[o + k] = row[k] / sum;
  }
}

/** Prototype points per `kaiser_proto` call (20 481 points for 11 025 → 8 000 Hz: 21 calls). */
const PROTO_RANGE = 1024;

/** The instance the tables are computed in (its memory grows to the largest table asked for). */
let tableBuilder: TableKernel | undefined;

/**
 * Where the table builders work, in bytes (the WebAssembly kernel's memory, or the native one's scratch): the I0
 * series' terms and their limits at `terms`, the recurrence state at `state` (two float64; the WebAssembly kernel's
 * ranges carry it), the prototype (span + 1 float64) at `proto`, one row of scratch (taps float64) at `row`, the table
 * (rows × taps float32) at `table`, `end` bytes in all.
 */
function tableLayout(s: StagePlan) {
  const { d, span } = grid(s);
  const terms = 0;
  const state = I0_TERMS.length * 16;
  const proto = state + 16;
  const row = proto + (span + 1) * 8;
  const table = row + s.taps * 8;
  return { d, span, terms, state, proto, row, table, end: table + s.rows * s.taps * 4 };
}

/** Writes the I0 series' terms and limits, and a zero recurrence state, at the start of a builder's memory. */
function writeSeries(buffer: ArrayBufferLike): void {
  const f64 = new Float64Array(buffer, 0, I0_TERMS.length * 2 + 2);
  f64.set(I0_TERMS);
  f64.set(I0_LIMITS, I0_TERMS.length);
  f64.fill(0, I0_TERMS.length * 2);
}

/**
 * {@linkcode stageTable} of a windowed-sinc stage, computed by the WebAssembly kernel (not cached).
 *
 * @throws Error where WebAssembly SIMD does not run
 */
export function stageTableWasm(s: StagePlan): Float32Array {
  const k = tableBuilder ??= wasmKernel();
  const { d, span, terms, state, proto, row, table, end } = tableLayout(s);
  const { th, sin1, k2, c2, i0b, b2 } = protoParams(s, d);
  const pages = Math.ceil(end / 65536) - k.memory.buffer.byteLength / 65536;
  if (pages > 0) k.memory.grow(pages);
  writeSeries(k.memory.buffer);
  // In ranges: the calls after the kernel's tier-up run optimized code (see kaiser_proto in kernel.wat).
  let from = 0;
  do {
    const to = Math.min(span, from + PROTO_RANGE);
    k.kaiser_proto(proto, span, th, sin1, k2, c2, i0b, b2, terms, I0_TERMS.length, from, to, state);
    from = to;
  } while (from < span);
  k.kaiser_rows(proto, span, s.rows, s.taps, s.half, d, row, table);
  return new Float32Array(k.memory.buffer.slice(table, end));
}

/**
 * {@linkcode stageTable} of a windowed-sinc stage, computed by the native library's `vp_kaiser_table` (not cached):
 * the WebAssembly kernel's table, bit for bit.
 *
 * @throws Error when the native library cannot run here (saying why)
 */
export function stageTableNative(s: StagePlan): Float32Array {
  const loops = nativeLoops();
  if (!loops) throw new Error(`resampler: the native kernel cannot run here: ${nativeLoopsProblem()}`);
  const { d, span, terms, proto, row, table, end } = tableLayout(s);
  const { th, sin1, k2, c2, i0b, b2 } = protoParams(s, d);
  const mem = new Uint8Array(end);
  writeSeries(mem.buffer);
  loops.vp_kaiser_table(
    mem,
    proto,
    span,
    th,
    sin1,
    k2,
    c2,
    i0b,
    b2,
    terms,
    I0_TERMS.length,
    s.rows,
    s.taps,
    s.half,
    d,
    row,
    table,
  );
  return new Float32Array(mem.buffer.slice(table, end)); // the table alone is kept (cached), not the scratch
}

// ---------------------------------------------------------------------------------------------
// Kernels

/** The kernel's functions; pointers are byte offsets into `memory`. */
interface Kernel {
  readonly memory: WebAssembly.Memory;
  load_mono(src: number, dst: number, n: number): void;
  load_chan(src: number, dst: number, n: number, stride: number): void;
  load_mix(src: number, dst: number, n: number, ch: number, scale: number): void;
  store_mono(src: number, dst: number, n: number): void;
  store_chan(src: number, dst: number, n: number, stride: number): void;
  fir(
    st: number,
    x: number,
    avail: number,
    coef: number,
    taps: number,
    L: number,
    si: number,
    sf: number,
    out: number,
    max: number,
  ): number;
  fir1(st: number, x: number, avail: number, coef: number, taps: number, si: number, out: number, max: number): number;
  split(src: number, n: number, e: number, o: number): void;
  hb(st: number, e: number, o: number, no: number, coef: number, pairs: number, out: number, max: number): number;
  fir_interp(
    st: number,
    x: number,
    avail: number,
    coef: number,
    taps: number,
    L: number,
    si: number,
    sf: number,
    scale: number,
    out: number,
    max: number,
  ): number;
}

/** The WebAssembly kernel's table functions (see {@linkcode stageTable}). */
interface TableKernel {
  readonly memory: WebAssembly.Memory;
  kaiser_proto(
    dst: number,
    span: number,
    th: number,
    sin1: number,
    k2: number,
    c2: number,
    i0b: number,
    b2: number,
    terms: number,
    nterms: number,
    from: number,
    to: number,
    state: number,
  ): void;
  kaiser_rows(
    proto: number,
    span: number,
    rows: number,
    taps: number,
    half: number,
    d: number,
    row: number,
    dst: number,
  ): void;
}

let wasmModule: WebAssembly.Module | null | undefined;

/** The compiled SIMD kernel, or null where this engine cannot run it. */
function kernelModule(): WebAssembly.Module | null {
  if (wasmModule === undefined) {
    try {
      wasmModule = new WebAssembly.Module(wasmBytes());
    } catch {
      wasmModule = null;
    }
  }
  return wasmModule;
}

/** True when the WebAssembly SIMD kernel can run here. */
export function wasmKernelAvailable(): boolean {
  return kernelModule() !== null;
}

/** Which loops resample: see {@linkcode PolyphaseOptions.kernel}. */
export type ResamplerKernel = "native" | "wasm" | "js";

const KERNELS: readonly ResamplerKernel[] = ["native", "wasm", "js"];

/**
 * Streams known to be shorter than this (seconds) get the WebAssembly kernel by default: loading the native library
 * costs 1.5–3 ms (Deno's `dlopen`), and the native loops save ~0.05 ms per second of 44.1 kHz audio.
 */
export const NATIVE_MIN_SECONDS = 120;

/**
 * The kernel a resampler uses when its options name none: `VOXPIPE_RESAMPLE_KERNEL` when set (native, wasm or js),
 * else `native` where it runs with AVX-512 (unless `seconds`, the stream's length when known, is below
 * {@linkcode NATIVE_MIN_SECONDS}), else `wasm` where WebAssembly SIMD runs, else `js`.
 *
 * @param seconds the stream's length, when known
 * @throws Error when `VOXPIPE_RESAMPLE_KERNEL` names no kernel
 */
export function defaultKernel(seconds?: number): ResamplerKernel {
  let env: string | undefined;
  try {
    env = Deno.env.get("VOXPIPE_RESAMPLE_KERNEL");
  } catch {
    env = undefined; // no --allow-env: the default
  }
  if (env !== undefined && env !== "") {
    if (!(KERNELS as readonly string[]).includes(env)) {
      throw new Error(`VOXPIPE_RESAMPLE_KERNEL: expected one of ${KERNELS.join(", ")}, got "${env}"`);
    }
    return env as ResamplerKernel;
  }
  if (!wasmKernelAvailable()) return "js";
  if (seconds !== undefined && seconds < NATIVE_MIN_SECONDS) return "wasm";
  // The C loops pay with AVX-512 (16 lanes: on 44.1 -> 8 kHz 1.5x the WebAssembly kernel's speed in 100 ms frames,
  // 1.05-1.3x in 20 ms ones; 1.5-2.9x on other plans); built for AVX2 or SSE2 alone they take 3.1x and 2.1x its time
  // (the 16-lane vectors split badly), so only AVX-512 chooses them.
  return nativeIsa() === "avx512" ? "native" : "wasm";
}

/**
 * The WebAssembly kernel with fir, fir1, split and hb in C (see `_native_kernel.ts`), on the instance's memory.
 *
 * @throws Error when the native loops cannot run here (saying why)
 */
function nativeKernel(): Kernel & TableKernel {
  const loops = nativeLoops();
  if (!loops) throw new Error(`resampler: the native kernel cannot run here: ${nativeLoopsProblem()}`);
  const w = wasmKernel();
  let buf = w.memory.buffer;
  let u8 = new Uint8Array(buf);
  // The memory's bytes as the C functions take them (a new view when the memory has grown).
  const mem = () => {
    if (w.memory.buffer !== buf) {
      buf = w.memory.buffer;
      u8 = new Uint8Array(buf);
    }
    return u8;
  };
  const { vp_fir, vp_fir1, vp_split, vp_hb } = loops;
  return {
    memory: w.memory,
    load_mono: w.load_mono,
    load_chan: w.load_chan,
    load_mix: w.load_mix,
    store_mono: w.store_mono,
    store_chan: w.store_chan,
    fir_interp: w.fir_interp,
    kaiser_proto: w.kaiser_proto,
    kaiser_rows: w.kaiser_rows,
    fir: (st, x, avail, coef, taps, L, si, sf, out, max) =>
      vp_fir(mem(), st, x, avail, coef, taps, L, si, sf, out, max),
    fir1: (st, x, avail, coef, taps, si, out, max) => vp_fir1(mem(), st, x, avail, coef, taps, si, out, max),
    split: (src, n, e, o) => vp_split(mem(), src, n, e, o),
    hb: (st, e, o, no, coef, pairs, out, max) => vp_hb(mem(), st, e, o, no, coef, pairs, out, max),
  };
}

function wasmKernel(): Kernel & TableKernel {
  const m = kernelModule();
  if (!m) throw new Error("resampler: this engine cannot run the WebAssembly SIMD kernel; use the js kernel");
  return new WebAssembly.Instance(m, {}).exports as unknown as Kernel & TableKernel;
}

const clamp16 = (v: number) => (v > 32767 ? 32767 : v < -32768 ? -32768 : v);

/** Rounds half to even, as the WebAssembly kernel does (f32x4.nearest). */
function nearest(x: number): number {
  const r = Math.round(x);
  return r - x === 0.5 && (r & 1) !== 0 ? r - 1 : r;
}

/** The JavaScript kernel: same functions, same memory layout, float64 accumulation. */
function jsKernel(): Kernel {
  const memory = new WebAssembly.Memory({ initial: 1 });
  let buf = memory.buffer;
  let f32 = new Float32Array(buf), i16 = new Int16Array(buf), i32 = new Int32Array(buf);
  const views = () => {
    if (memory.buffer !== buf) {
      buf = memory.buffer;
      f32 = new Float32Array(buf);
      i16 = new Int16Array(buf);
      i32 = new Int32Array(buf);
    }
  };
  function firLoop(
    st: number,
    x: number,
    avail: number,
    coef: number,
    taps: number,
    L: number,
    si: number,
    sf: number,
    scale: number,
    out: number,
    max: number,
  ): number {
    views();
    let idx = i32[st >> 2], ph = i32[(st >> 2) + 1];
    const lim = avail - taps, x0 = x >> 2, c0 = coef >> 2, o0 = out >> 2;
    let n = 0;
    for (; n < max && idx <= lim; n++) {
      const p = x0 + idx;
      let y: number;
      if (scale === 0) {
        const c = c0 + ph * taps;
        let s = 0;
        for (let k = 0; k < taps; k++) s += f32[p + k] * f32[c + k];
        y = s;
      } else {
        const pos = ph * scale, j = Math.trunc(pos), frac = pos - j;
        const c = c0 + j * taps, d = c + taps;
        let a = 0, b = 0;
        for (let k = 0; k < taps; k++) {
          const v = f32[p + k];
          a += v * f32[c + k];
          b += v * f32[d + k];
        }
        y = a + frac * (b - a);
      }
      f32[o0 + n] = y;
      idx += si;
      ph += sf;
      if (ph >= L) (ph -= L, idx++);
    }
    i32[st >> 2] = idx;
    i32[(st >> 2) + 1] = ph;
    return n;
  }
  return {
    memory,
    load_mono(src, dst, n) {
      views();
      const s = src >> 1, d = dst >> 2;
      for (let i = 0; i < n; i++) f32[d + i] = i16[s + i];
    },
    load_chan(src, dst, n, stride) {
      views();
      const d = dst >> 2;
      for (let i = 0, s = src >> 1; i < n; i++, s += stride) f32[d + i] = i16[s];
    },
    load_mix(src, dst, n, ch, scale) {
      views();
      const d = dst >> 2;
      for (let i = 0, s = src >> 1; i < n; i++) {
        let sum = 0;
        for (let c = 0; c < ch; c++) sum += i16[s++];
        f32[d + i] = sum * scale;
      }
    },
    store_mono(src, dst, n) {
      views();
      const s = src >> 2, d = dst >> 1;
      for (let i = 0; i < n; i++) i16[d + i] = clamp16(nearest(f32[s + i]));
    },
    store_chan(src, dst, n, stride) {
      views();
      const s = src >> 2;
      for (let i = 0, d = dst >> 1; i < n; i++, d += stride) i16[d] = clamp16(nearest(f32[s + i]));
    },
    fir: (st, x, avail, coef, taps, L, si, sf, out, max) => firLoop(st, x, avail, coef, taps, L, si, sf, 0, out, max),
    fir1: (st, x, avail, coef, taps, si, out, max) => firLoop(st, x, avail, coef, taps, 1, si, 0, 0, out, max),
    fir_interp: (st, x, avail, coef, taps, L, si, sf, scale, out, max) =>
      firLoop(st, x, avail, coef, taps, L, si, sf, scale, out, max),
    split(src, n, e, o) {
      views();
      const s0 = src >> 2, e0 = e >> 2, o0 = o >> 2;
      for (let i = 0; i < n; i++) f32[(i & 1 ? o0 : e0) + (i >> 1)] = f32[s0 + i];
    },
    hb(st, e, o, no, coef, pairs, out, max) {
      views();
      let m = i32[st >> 2], n = 0;
      const lim = no - pairs, e0 = e >> 2, o0 = o >> 2, c0 = coef >> 2, out0 = out >> 2;
      for (; n < max && m <= lim; n++, m++) {
        let y = f32[c0] * f32[e0 + m];
        for (let i = 0; i < pairs; i++) y += f32[c0 + 4 * (i + 1)] * (f32[o0 + m + i] + f32[o0 + m - 1 - i]);
        f32[out0 + n] = y;
      }
      i32[st >> 2] = m;
      return n;
    },
  };
}

// ---------------------------------------------------------------------------------------------
// The resampler

/** Per-stage run-time layout. */
interface StageRun {
  plan: StagePlan;
  coef: number;
  /** Byte offset of each channel's history buffer, and of its state (idx, phase). */
  buf: number[];
  st: number[];
  /** Buffer capacity in samples. */
  cap: number;
  /** Samples held in each channel's buffer (the same for every channel). */
  avail: number;
  /**
   * A half-band stage: byte offsets of each channel's even and odd samples (`buf` only stages its new input),
   * how many of each are held, and their capacity.
   */
  e: number[];
  o: number[];
  ne: number;
  no: number;
  eoCap: number;
  si: number;
  sf: number;
  scale: number;
}

/**
 * A streaming polyphase resampler for interleaved int16 PCM (see the module documentation).
 * No allocation per call beyond the returned array; state lives in the kernel's memory.
 */
export class PolyphaseResampler {
  /** The plan in use. */
  readonly plan: Plan;
  /** Which kernel runs it. */
  readonly kernel: ResamplerKernel;
  readonly #k: Kernel;
  readonly #inCh: number;
  readonly #outCh: number;
  /** Channels that are filtered: 1 when down-mixing or up-mixing from mono. */
  readonly #srcCh: number;
  readonly #stages: StageRun[];
  readonly #inPtr: number;
  readonly #outF: number[];
  readonly #outCap: number;
  readonly #outPtr: number;
  #acc = new Int16Array(0);
  readonly #slab = new Slab();
  /** `process` hands out views of `#reused` (see {@linkcode PolyphaseOptions.reuseOutput}). */
  readonly #reuse: boolean;
  readonly #reused = new ReusedArrays();
  /** Views of the kernel's memory, made again whenever it grows (`#growTo`, first called by the constructor). */
  #i16!: Int16Array;
  #i32!: Int32Array;
  #f32!: Float32Array;
  /** Bytes of the memory laid out; a long frame's staging areas go after them. */
  #end: number;
  /**
   * A frame longer than one pass is staged whole (input at `#longIn`, room for `#longInCap` samples; its output
   * gathered at `#longOut`, room for `#longOutCap` samples), so that it is copied in and out once, without a view per
   * pass. Both are made by the first such frame and grown (doubled) by a longer one.
   */
  #longIn = 0;
  #longInCap = 0;
  #longOut = 0;
  #longOutCap = 0;
  /** Views of the memory handed to `set` lately (`#viewOf`), a few: output frames alternate between lengths. */
  #views: Int16Array[] = [];
  #fed = 0;
  #emitted = 0;
  /** Output rate / input rate. */
  readonly #ratio: number;
  /** Input frames per pass (`passFrames`). */
  readonly #passFrames: number;
  /** Input frames of a long frame staged in the memory at once (a longer array goes in blocks of this). */
  readonly #stageFrames: number;

  /**
   * @param options rates, channels, filter and kernel
   * @throws RangeError for rates that are not positive integers or channel counts that cannot be mapped
   */
  constructor(options: PolyphaseOptions) {
    const { inRate, outRate, inChannels, outChannels } = options;
    for (const [k, v] of [["inRate", inRate], ["outRate", outRate]] as const) {
      if (!Number.isInteger(v) || v <= 0) {
        throw new RangeError(`PolyphaseResampler: ${k} must be a positive integer, got ${v}`);
      }
    }
    if (!Number.isInteger(inChannels) || inChannels < 1 || !Number.isInteger(outChannels) || outChannels < 1) {
      throw new RangeError(`PolyphaseResampler: channel counts must be positive integers`);
    }
    if (inChannels !== outChannels && outChannels !== 1 && inChannels !== 1) {
      throw new RangeError(`PolyphaseResampler: cannot map ${inChannels} channels to ${outChannels}`);
    }
    this.#inCh = inChannels;
    this.#outCh = outChannels;
    this.#srcCh = outChannels === 1 || inChannels === 1 ? 1 : inChannels;
    this.plan = planResampler(inRate, outRate, options.filter ?? FILTER_SPECS.medium);
    this.#ratio = outRate / inRate;
    const pass = options.passFrames ?? PASS_FRAMES;
    if (!Number.isInteger(pass) || pass < 1024 || pass > 65536) {
      throw new RangeError(`PolyphaseResampler: passFrames must be an integer in 1024..65536, got ${pass}`);
    }
    this.#passFrames = pass;
    this.#stageFrames = 4 * pass;
    this.#reuse = options.reuseOutput === true;
    const want = options.kernel ?? defaultKernel();
    this.kernel = want;
    this.#k = want === "native" ? nativeKernel() : want === "wasm" ? wasmKernel() : jsKernel();

    // Memory layout (bytes, 16-aligned): states, tables, channel buffers, staging areas.
    let at = 0;
    const take = (bytes: number) => {
      const p = at;
      at += Math.ceil(bytes / 16) * 16;
      return p;
    };
    const srcCh = this.#srcCh;
    const tables: [number, Float32Array][] = [];
    let maxIn = pass;
    this.#stages = this.plan.stages.map((plan) => {
      const table = plan.halfband ? halfbandTable(plan) : stageTable(plan, want === "native");
      const coef = take(table.length * 4 + 64);
      tables.push([coef, table]);
      // Room for the filter span and one pass of input (plus the previous stage's rounding); a half-band stage's
      // buffer only stages one pass of input, its history is in its even and odd halves.
      const cap = plan.halfband ? maxIn + 16 : plan.taps + maxIn + 16;
      const eoCap = plan.halfband ? 2 * plan.halfband + Math.ceil(cap / 2) + 16 : 0;
      const run: StageRun = {
        plan,
        coef,
        buf: [],
        st: [],
        cap,
        avail: 0,
        si: Math.floor(plan.M / plan.L),
        sf: plan.M % plan.L,
        scale: plan.interpolated ? (plan.rows - 1) / plan.L : 0,
        e: [],
        o: [],
        ne: 0,
        no: 0,
        eoCap,
      };
      for (let c = 0; c < srcCh; c++) {
        run.st.push(take(8));
        run.buf.push(take(cap * 4));
        if (plan.halfband) (run.e.push(take(eoCap * 4)), run.o.push(take(eoCap * 4)));
      }
      maxIn = Math.ceil((maxIn * plan.L) / plan.M) + 2;
      return run;
    });
    this.#outCap = maxIn;
    this.#outF = [];
    for (let c = 0; c < srcCh; c++) this.#outF.push(take(maxIn * 4));
    this.#inPtr = take(pass * inChannels * 2);
    this.#outPtr = take(maxIn * outChannels * 2);
    this.#end = at;
    this.#growTo(at);
    for (const [p, t] of tables) this.#f32.set(t, p >> 2);
    this.reset();
  }

  /** Input channels. */
  get inChannels(): number {
    return this.#inCh;
  }

  /** Output channels. */
  get outChannels(): number {
    return this.#outCh;
  }

  /** Sample frames (per channel) fed since the last reset. */
  get fed(): number {
    return this.#fed;
  }

  /** Sample frames (per channel) returned since the last reset. */
  get emitted(): number {
    return this.#emitted;
  }

  /** Look-ahead in seconds (see {@linkcode Plan.latency}); the output itself is not delayed. */
  get latency(): number {
    return this.plan.latency;
  }

  /**
   * What runs, for statistics: kernel and stages, e.g. `polyphase wasm-simd: 44100→22050 Hz half-band 23 taps,
   * →11025 Hz half-band 51 taps, →8000 Hz 128 taps × 320 phases`.
   */
  get describe(): string {
    const stages = this.plan.stages.map((s, i) =>
      `${i === 0 ? `${s.inRate}` : ""}→${s.outRate} Hz ${s.halfband ? "half-band " : ""}${s.taps} taps${
        s.L > 1 ? ` × ${s.interpolated ? `${s.rows - 1} interpolated` : s.L} phases` : ""
      }`
    );
    const kernel = this.kernel === "native" ? `native-${nativeIsa()}` : this.kernel === "wasm" ? "wasm-simd" : "js";
    return `polyphase ${kernel}: ${stages.join(", ")}`;
  }

  /** Nothing to free (the memory goes with the object); present for symmetry with other converters. */
  close(): void {}

  /** Starts a new stream: clears the history (as if preceded by silence) and the counters. */
  reset(): void {
    const i32 = this.#i32;
    for (const s of this.#stages) {
      // The history starts with half − 1 zeros, so output 0 is centred on input 0; a half-band stage's with P even
      // and P odd zeros (inputs −2P … −1), output 0 being centred on e[P].
      const pairs = s.plan.halfband ?? 0;
      s.avail = pairs ? 0 : s.plan.half - 1;
      s.ne = s.no = pairs;
      for (let c = 0; c < s.buf.length; c++) {
        this.#f32.fill(0, s.buf[c] >> 2, (s.buf[c] >> 2) + s.cap);
        if (pairs) {
          this.#f32.fill(0, s.e[c] >> 2, (s.e[c] >> 2) + s.eoCap);
          this.#f32.fill(0, s.o[c] >> 2, (s.o[c] >> 2) + s.eoCap);
        }
        i32[s.st[c] >> 2] = pairs;
        i32[(s.st[c] >> 2) + 1] = 0;
      }
    }
    this.#fed = 0;
    this.#emitted = 0;
  }

  /**
   * Resamples interleaved samples (`inChannels` per frame); returns what is ready (interleaved,
   * `outChannels` per frame), a new array the caller may keep (with `reuseOutput`: valid until the next call).
   */
  process(samples: Int16Array): Int16Array {
    const frames = samples.length / this.#inCh;
    if (!Number.isInteger(frames)) {
      throw new RangeError(
        `PolyphaseResampler: ${samples.length} samples is not a whole number of ${this.#inCh}-channel frames`,
      );
    }
    this.#fed += frames;
    const outPtr = this.#outPtr >> 1;
    if (frames <= this.#passFrames) {
      // One pass (the usual case): the only allocation is the returned array (a view into a slab, or none).
      this.#i16.set(samples, this.#inPtr >> 1);
      const produced = this.#pass(frames, false);
      this.#emitted += produced;
      const out = this.#output(produced * this.#outCh);
      out.set(this.#viewOf(outPtr, out.length));
      return out;
    }
    // Several passes (a long frame, e.g. a transcode's): the frame is copied into the memory whole, each pass's input
    // and output move within the memory (copyWithin), and the output is copied out once, into an array of its exact
    // length: no view per pass. A very long array (a caller's whole file) goes in blocks, so that the memory the
    // resampler keeps stays small.
    const inCh = this.#inCh, outCh = this.#outCh;
    const stageFrames = this.#stageFrames;
    const block = Math.min(frames, stageFrames);
    this.#stageLong(block * inCh, (Math.ceil(block * this.#ratio) + 3 + this.#outCap) * outCh);
    if (frames <= stageFrames) {
      this.#i16.set(samples, this.#longIn >> 1);
      const total = this.#staged(frames);
      this.#emitted += total / outCh;
      const out = this.#output(total);
      out.set(this.#viewOf(this.#longOut >> 1, total));
      return out;
    }
    // Output k needs the input up to time k / rate_out: at most ceil(fed × rate_out / rate_in) + 2 outputs in all.
    const bound = Math.max(0, Math.ceil(this.#fed * this.#ratio) + 2 - this.#emitted) * outCh;
    const out = this.#output(bound);
    let total = 0;
    for (let at = 0; at < frames; at += stageFrames) {
      const m = Math.min(stageFrames, frames - at);
      this.#i16.set(samples.subarray(at * inCh, (at + m) * inCh), this.#longIn >> 1);
      const n = this.#staged(m);
      if (total + n > out.length) throw new Error(`PolyphaseResampler: ${total + n} output samples exceed ${bound}`);
      out.set(this.#i16.subarray(this.#longOut >> 1, (this.#longOut >> 1) + n), total);
      total += n;
    }
    this.#emitted += total / outCh;
    return total === out.length ? out : out.subarray(0, total);
  }

  /**
   * Runs the passes over `frames` frames staged at `#longIn`, gathering their output at `#longOut`; returns the
   * output samples.
   */
  #staged(frames: number): number {
    const i16 = this.#i16, inCh = this.#inCh, outCh = this.#outCh;
    const outAt = this.#longOut >> 1, outPtr = this.#outPtr >> 1;
    const pass = this.#passFrames;
    let total = 0;
    for (let at = 0; at < frames; at += pass) {
      const n = Math.min(pass, frames - at);
      // Each pass loads its input from the staged frame itself (no copy to the pass's input area first).
      const produced = this.#pass(n, false, this.#longIn + at * inCh * 2) * outCh;
      if (total + produced > this.#longOutCap) {
        // Cannot happen (the room is what a block can make plus one pass's output): checked so that a wrong bound
        // fails loudly instead of writing past the staging area.
        throw new Error(`PolyphaseResampler: ${total + produced} output samples exceed the staging area`);
      }
      i16.copyWithin(outAt + total, outPtr, outPtr + produced);
      total += produced;
    }
    return total;
  }

  /** A view of `n` int16 samples of the memory at sample index `at` (one made lately, when there is one). */
  #viewOf(at: number, n: number): Int16Array {
    const views = this.#views, buf = this.#i16.buffer, offset = at * 2;
    for (let i = 0; i < views.length; i++) {
      const v = views[i];
      if (v.length === n && v.byteOffset === offset && v.buffer === buf) return v;
    }
    if (views.length === VIEWS_KEPT) views.shift();
    const v = this.#i16.subarray(at, at + n);
    views.push(v);
    return v;
  }

  /** Makes room to stage a frame of `inSamples` input samples and up to `outSamples` output samples whole. */
  #stageLong(inSamples: number, outSamples: number): void {
    if (inSamples <= this.#longInCap && outSamples <= this.#longOutCap) return;
    const inCap = Math.max(inSamples, 2 * this.#longInCap), outCap = Math.max(outSamples, 2 * this.#longOutCap);
    const at = this.#end;
    this.#longIn = at;
    this.#longOut = at + Math.ceil((inCap * 2) / 16) * 16;
    this.#growTo(this.#longOut + outCap * 2);
    this.#longInCap = inCap;
    this.#longOutCap = outCap;
  }

  /** Grows the memory to at least `bytes` and renews the views of it. */
  #growTo(bytes: number): void {
    const mem = this.#k.memory;
    const need = Math.ceil(bytes / 65536) - mem.buffer.byteLength / 65536;
    if (need > 0) mem.grow(need);
    if (this.#f32?.buffer !== mem.buffer) {
      this.#f32 = new Float32Array(mem.buffer);
      this.#i16 = new Int16Array(mem.buffer);
      this.#i32 = new Int32Array(mem.buffer);
    }
  }

  /** Ends the stream: returns the remaining output (the total is round(fed × outRate / inRate)), then resets. */
  flush(): Int16Array {
    const last = this.plan.stages[this.plan.stages.length - 1];
    const target = Math.round((this.#fed * last.outRate) / this.plan.stages[0].inRate);
    let total = 0;
    // Zeros push the look-ahead through; the bound is a safety net (a few passes suffice).
    for (let i = 0; this.#emitted + total < target && i < 64; i++) {
      total = this.#append(total, this.#pass(this.#passFrames, true));
    }
    const keep = Math.max(0, Math.min(total, target - this.#emitted));
    const out = this.#result(keep);
    this.reset();
    return out;
  }

  /**
   * Loads n input frames (from `src`, a byte offset in the memory: the pass input area by default; or zeros), runs
   * every stage; returns the output frames, left as int16 at #outPtr.
   */
  #pass(n: number, zeros: boolean, src = this.#inPtr): number {
    const k = this.#k;
    const s0 = this.#stages[0];
    for (let c = 0; c < this.#srcCh; c++) {
      const dst = s0.buf[c] + s0.avail * 4;
      if (zeros) this.#f32.fill(0, dst >> 2, (dst >> 2) + n);
      else if (this.#inCh === 1) k.load_mono(src, dst, n);
      else if (this.#srcCh === 1) k.load_mix(src, dst, n, this.#inCh, 1 / this.#inCh);
      else k.load_chan(src + c * 2, dst, n, this.#inCh);
    }
    s0.avail += n;
    let produced = 0;
    for (let si = 0; si < this.#stages.length; si++) {
      const s = this.#stages[si];
      const next = this.#stages[si + 1];
      const p = s.plan;
      if (p.halfband) {
        produced = this.#halfband(s, next);
        if (next) next.avail += produced;
        continue;
      }
      for (let c = 0; c < this.#srcCh; c++) {
        const out = next ? next.buf[c] + next.avail * 4 : this.#outF[c];
        const max = next ? next.cap - next.avail : this.#outCap;
        produced = p.L === 1 && s.scale === 0
          ? k.fir1(s.st[c], s.buf[c], s.avail, s.coef, p.taps, s.si, out, max)
          : s.scale === 0
          ? k.fir(s.st[c], s.buf[c], s.avail, s.coef, p.taps, p.L, s.si, s.sf, out, max)
          : k.fir_interp(s.st[c], s.buf[c], s.avail, s.coef, p.taps, p.L, s.si, s.sf, s.scale, out, max);
      }
      if (next) next.avail += produced;
      this.#compact(s);
    }
    if (produced > 0) {
      const outCh = this.#outCh;
      if (outCh === 1) k.store_mono(this.#outF[0], this.#outPtr, produced);
      else {
        for (let o = 0; o < outCh; o++) {
          k.store_chan(this.#outF[this.#srcCh === 1 ? 0 : o], this.#outPtr + o * 2, produced, outCh);
        }
      }
    }
    return produced;
  }

  /**
   * Runs a half-band stage: moves its staged input into the even and odd halves (the first sample to the odd half
   * when an even one is waiting for its pair), makes what outputs it can into the next stage's buffer (or the
   * output area), and drops the history no output needs any more. Returns the outputs made (per channel).
   */
  #halfband(s: StageRun, next: StageRun | undefined): number {
    const k = this.#k;
    const pairs = s.plan.halfband!;
    const held = s.ne + s.no + s.avail;
    let produced = 0;
    for (let c = 0; c < s.buf.length; c++) {
      const ne = s.ne;
      let src = s.buf[c], n = s.avail, no = s.no;
      if (n > 0 && ne > no) {
        this.#f32[(s.o[c] >> 2) + no++] = this.#f32[src >> 2];
        src += 4;
        n--;
      }
      k.split(src, n, s.e[c] + ne * 4, s.o[c] + no * 4);
      const out = next ? next.buf[c] + next.avail * 4 : this.#outF[c];
      const max = next ? next.cap - next.avail : this.#outCap;
      produced = k.hb(s.st[c], s.e[c], s.o[c], held >> 1, s.coef, pairs, out, max);
    }
    s.ne = (held + 1) >> 1;
    s.no = held >> 1;
    s.avail = 0;
    const drop = this.#i32[s.st[0] >> 2] - pairs;
    if (drop > 0) {
      for (let c = 0; c < s.buf.length; c++) {
        const e = s.e[c] >> 2, o = s.o[c] >> 2;
        this.#f32.copyWithin(e, e + drop, e + s.ne);
        this.#f32.copyWithin(o, o + drop, o + s.no);
        this.#i32[s.st[c] >> 2] -= drop;
      }
      s.ne -= drop;
      s.no -= drop;
    }
    return produced;
  }

  /** Appends the `produced` frames of the last pass to the accumulator after `total` frames; returns the new total. */
  #append(total: number, produced: number): number {
    const outCh = this.#outCh;
    if (this.#acc.length < (total + produced) * outCh) {
      const grown = new Int16Array(Math.max((total + produced) * outCh, this.#acc.length * 2));
      grown.set(this.#acc.subarray(0, total * outCh));
      this.#acc = grown;
    }
    const from = this.#outPtr >> 1;
    this.#acc.set(this.#i16.subarray(from, from + produced * outCh), total * outCh);
    return total + produced;
  }

  /** Drops history the next output no longer needs (every channel is at the same position). */
  #compact(s: StageRun): void {
    const i32 = this.#i32;
    const drop = i32[s.st[0] >> 2];
    if (drop <= 0) return;
    for (let c = 0; c < s.buf.length; c++) {
      const b = s.buf[c] >> 2;
      this.#f32.copyWithin(b, b + drop, b + s.avail);
      i32[s.st[c] >> 2] -= drop;
    }
    s.avail -= drop;
  }

  /** An array of `n` samples for `process` to return: a fresh slab view, or with `reuseOutput` a view of `#reused`. */
  #output(n: number): Int16Array {
    return this.#reuse ? this.#reused.int16(n) : this.#slab.int16(n);
  }

  #result(frames: number): Int16Array {
    this.#emitted += frames;
    return this.#acc.slice(0, frames * this.#outCh);
  }
}
