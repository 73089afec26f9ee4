/**
 * Measurements of a resampler's telephony quality, shared by tests/polyphase_test.ts and
 * bench/offline.ts: test tones (optionally with ±1 LSB triangular dither, so that int16
 * rounding errors are noise rather than harmonics that fall where aliases are measured), a
 * least-squares fit of several sines at once, and the figures the stage is held to.
 *
 * @module
 */
import { seededRandom } from "../core/random.ts";

/** Full-scale-ish test amplitude (−0.2 dBFS). */
export const FULL = 32000;

/**
 * A tone of `amp` at `freq` Hz, int16, `seconds` long; with `dither`, ±1 LSB triangular noise
 * (seeded: the same every run). With `channels` 2 the right channel is the negated left.
 */
export function tone(
  freq: number,
  rate: number,
  seconds: number,
  amp: number,
  dither = false,
  channels = 1,
): Int16Array {
  const n = Math.round(rate * seconds);
  const rnd = seededRandom(freq * 7 + rate);
  const x = new Int16Array(n * channels);
  for (let i = 0; i < n; i++) {
    const v = Math.round(amp * Math.sin((2 * Math.PI * freq * i) / rate) + (dither ? rnd() - rnd() : 0));
    for (let c = 0; c < channels; c++) x[i * channels + c] = c === 1 ? -v : v;
  }
  return x;
}

/** What {@linkcode fit} finds. */
export interface Fit {
  /** Amplitude of each frequency. */
  amps: number[];
  /** Delay of each sine in samples (phase / angular frequency). */
  delays: number[];
  /** Power of the first sine against everything the fit leaves, dB. */
  snrDb: number;
}

/**
 * Least-squares fit of sines at the given frequencies, all at once (so a strong tone does not
 * leak into the estimate of a weak one), over samples [from, to).
 */
export function fit(y: ArrayLike<number>, freqs: number[], rate: number, from: number, to: number): Fit {
  const k = freqs.length * 2;
  const basis = (i: number, j: number) => {
    const w = (2 * Math.PI * freqs[j >> 1] * i) / rate;
    return j & 1 ? Math.cos(w) : Math.sin(w);
  };
  const a = Array.from({ length: k }, () => new Float64Array(k + 1));
  const row = new Float64Array(k);
  for (let i = from; i < to; i++) {
    for (let j = 0; j < k; j++) row[j] = basis(i, j);
    for (let r = 0; r < k; r++) {
      for (let c = 0; c < k; c++) a[r][c] += row[r] * row[c];
      a[r][k] += row[r] * y[i];
    }
  }
  // Gauss-Jordan elimination with partial pivoting.
  for (let c = 0; c < k; c++) {
    let p = c;
    for (let r = c + 1; r < k; r++) if (Math.abs(a[r][c]) > Math.abs(a[p][c])) p = r;
    [a[c], a[p]] = [a[p], a[c]];
    for (let r = 0; r < k; r++) {
      if (r === c) continue;
      const f = a[r][c] / a[c][c];
      for (let q = c; q <= k; q++) a[r][q] -= f * a[c][q];
    }
  }
  const coef = a.map((r, i) => r[k] / a[i][i]);
  let sig = 0, err = 0;
  for (let i = from; i < to; i++) {
    let model = 0;
    for (let j = 0; j < k; j++) model += coef[j] * basis(i, j);
    const first = coef[0] * basis(i, 0) + coef[1] * basis(i, 1);
    sig += first * first;
    err += (y[i] - model) ** 2;
  }
  return {
    amps: freqs.map((_, j) => Math.hypot(coef[2 * j], coef[2 * j + 1])),
    delays: freqs.map((f, j) => -Math.atan2(coef[2 * j + 1], coef[2 * j]) / ((2 * Math.PI * f) / rate)),
    snrDb: 10 * Math.log10(sig / err),
  };
}

/** Amplitude ratio in dB. */
export const dB = (r: number): number => 20 * Math.log10(r);

/** The output window that leaves out the first and last 50 ms (filter edges). */
export function span(y: ArrayLike<number>, rate: number): [number, number] {
  return [Math.round(rate * 0.05), y.length - Math.round(rate * 0.05)];
}

/** A mono resampler under test: whole signal in, whole signal out (flushed). */
export type Convert = (x: Int16Array, inRate: number, outRate: number) => Int16Array | Promise<Int16Array>;

/** The telephony figures of one converter. */
export interface QualityFigures {
  /** 1 kHz at −0.2 dBFS, 44.1 → 8 kHz, int16 out: SNR in dB. */
  snrDb: number;
  /** Largest |level| in dB of 300, 1000, 2000, 3000, 3400 Hz, 44.1 → 8 kHz. */
  passbandDb: number;
  /** Level in dB of the alias of a 6 kHz tone (at 2 kHz), 44.1 → 8 kHz. */
  alias6kDb: number;
  /** Level in dB of the alias of a 10 kHz tone (at 2 kHz), 44.1 → 8 kHz. */
  alias10kDb: number;
  /** Worst image in dB of 300..3400 Hz tones, 8 → 16 kHz. */
  imageDb: number;
}

/** Measures {@linkcode QualityFigures} of `convert`. */
export async function qualityFigures(convert: Convert): Promise<QualityFigures> {
  const x = tone(1000, 44100, 2, FULL);
  const y = await convert(x, 44100, 8000);
  const snrDb = fit(y, [1000], 8000, ...span(y, 8000)).snrDb;
  let passbandDb = 0, imageDb = -Infinity;
  for (const f of [300, 1000, 2000, 3000, 3400]) {
    const z = await convert(tone(f, 44100, 1, 16000, true), 44100, 8000);
    passbandDb = Math.max(passbandDb, Math.abs(dB(fit(z, [f], 8000, ...span(z, 8000)).amps[0] / 16000)));
    const u = await convert(tone(f, 8000, 1, 16000, true), 8000, 16000);
    imageDb = Math.max(imageDb, dB(fit(u, [f, 8000 - f], 16000, ...span(u, 16000)).amps[1] / 16000));
  }
  const alias = async (f: number) => {
    const z = await convert(tone(f, 44100, 1, FULL, true), 44100, 8000);
    return dB(fit(z, [2000], 8000, ...span(z, 8000)).amps[0] / FULL);
  };
  return { snrDb, passbandDb, alias6kDb: await alias(6000), alias10kDb: await alias(10000), imageDb };
}

/** One line of figures, e.g. `SNR 99.1 dB, passband ±0.0001 dB, aliases 6k −144 dB / 10k −138 dB, images −113 dB`. */
export function formatFigures(q: QualityFigures): string {
  return `1 kHz SNR ${q.snrDb.toFixed(1)} dB, passband to 3.4 kHz ±${q.passbandDb.toFixed(4)} dB, ` +
    `aliases of 6 kHz ${q.alias6kDb.toFixed(1)} dB and 10 kHz ${q.alias10kDb.toFixed(1)} dB, ` +
    `8→16 kHz images ≤ ${q.imageDb.toFixed(1)} dB`;
}
