/**
 * libsamplerate (`@alexanderolsen/libsamplerate-js`, WebAssembly) behind the interface the
 * `resampler` stage uses for its own kernel: int16 interleaved in, int16 interleaved out,
 * streaming, a flush that makes the total round(n × rate_out / rate_in). Imported only when a
 * pipeline asks for one of the `lsr-*` qualities, so other pipelines never load the package.
 *
 * @module
 */
// The package is CommonJS: in Deno only its default export exists at run time (named
// imports type-check but are undefined).
import lsr from "libsamplerate";

/** A libsamplerate converter instance (one WebAssembly module instance each). */
type Converter = Awaited<ReturnType<typeof lsr.create>>;

/** libsamplerate's converters. */
export type LsrQuality = "best" | "medium" | "fastest" | "linear";

const TYPES = {
  best: lsr.ConverterType.SRC_SINC_BEST_QUALITY,
  medium: lsr.ConverterType.SRC_SINC_MEDIUM_QUALITY,
  fastest: lsr.ConverterType.SRC_SINC_FASTEST,
  linear: lsr.ConverterType.SRC_LINEAR,
};

/** A libsamplerate converter configured for one input format at a time. */
export class LsrConverter {
  readonly #src: Converter;
  readonly #type: (typeof TYPES)[LsrQuality];
  readonly #outRate: number;
  #inRate = 0;
  #inCh = 1;
  #outCh = 1;
  #srcCh = 1;
  #fed = 0;
  #emitted = 0;
  #scratch = new Float32Array(0);

  private constructor(src: Converter, type: (typeof TYPES)[LsrQuality], outRate: number) {
    this.#src = src;
    this.#type = type;
    this.#outRate = outRate;
  }

  /** Instantiates the WebAssembly converter (for a placeholder rate; {@linkcode configure} sets the real one). */
  static async create(quality: LsrQuality, outRate: number): Promise<LsrConverter> {
    const type = TYPES[quality];
    const src = await lsr.create(1, outRate === 48000 ? 44100 : 48000, outRate, { converterType: type });
    return new LsrConverter(src, type, outRate);
  }

  /** What runs, for statistics. */
  get describe(): string {
    return "libsamplerate (WebAssembly)";
  }

  /** libsamplerate does not say its look-ahead; 0 here. */
  get latency(): number {
    return 0;
  }

  /** Sets the input format; starts a fresh stream. */
  configure(inRate: number, inCh: number, outCh: number): void {
    const srcCh = outCh === 1 || inCh === 1 ? 1 : inCh;
    const src = this.#src;
    // Each setter re-initialises the converter (fresh state); `ratio` is not updated by them.
    let fresh = false;
    if (src.nChannels !== srcCh) (src.nChannels = srcCh, fresh = true);
    if (src.inputSampleRate !== inRate) (src.inputSampleRate = inRate, fresh = true);
    if (!fresh) src.converterType = this.#type;
    src.ratio = this.#outRate / inRate;
    this.#inRate = inRate;
    this.#inCh = inCh;
    this.#outCh = outCh;
    this.#srcCh = srcCh;
    this.#fed = 0;
    this.#emitted = 0;
  }

  /** Int16 interleaved input → float in [-1, 1) with `srcCh` channels (down-mixed when needed). */
  #toFloat(samples: Int16Array): Float32Array {
    const n = samples.length / this.#inCh;
    const len = n * this.#srcCh;
    if (this.#scratch.length < len) this.#scratch = new Float32Array(Math.max(len, this.#scratch.length * 2));
    const f = this.#scratch;
    if (this.#srcCh === this.#inCh) {
      for (let i = 0; i < len; i++) f[i] = samples[i] / 32768;
    } else {
      const ch = this.#inCh;
      const k = 1 / (32768 * ch);
      for (let i = 0, j = 0; i < n; i++) {
        let sum = 0;
        for (let c = 0; c < ch; c++) sum += samples[j++];
        f[i] = sum * k;
      }
    }
    return f.subarray(0, len);
  }

  /** Float converter output → Int16 interleaved with `outCh` channels. */
  #toInt16(f: Float32Array, frames: number): Int16Array {
    const out = new Int16Array(frames * this.#outCh);
    const up = this.#outCh / this.#srcCh;
    for (let i = 0, j = 0; i < frames * this.#srcCh; i++) {
      let v = Math.round(f[i] * 32768);
      v = v > 32767 ? 32767 : v < -32768 ? -32768 : v;
      for (let u = 0; u < up; u++) out[j++] = v;
    }
    return out;
  }

  /** Converts interleaved samples; returns what is ready. */
  process(samples: Int16Array): Int16Array {
    this.#fed += samples.length / this.#inCh;
    const res = this.#src.full(this.#toFloat(samples));
    const frames = res.length / this.#srcCh;
    this.#emitted += frames;
    return this.#toInt16(res, frames);
  }

  /** Emits the tail so the stream has round(in × rate / inRate) samples, then starts afresh. */
  flush(): Int16Array {
    const total = Math.round((this.#fed * this.#outRate) / this.#inRate);
    let missing = total - this.#emitted;
    let out: Int16Array = new Int16Array(0);
    if (missing > 0) {
      const chunk = Math.max(256, Math.ceil(this.#inRate / 100));
      const zeros = new Float32Array(chunk * this.#srcCh);
      const parts: Float32Array[] = [];
      let got = 0;
      // The sinc filters hold back well under a second of input; the bound is a safety net.
      for (let i = 0; got < missing && i * chunk < this.#inRate * 2; i++) {
        const part = this.#src.full(zeros);
        parts.push(part);
        got += part.length / this.#srcCh;
      }
      missing = Math.min(missing, got);
      const all = new Float32Array(got * this.#srcCh);
      let at = 0;
      for (const p of parts) (all.set(p, at), at += p.length);
      if (missing > 0) out = this.#toInt16(all, missing);
    }
    this.configure(this.#inRate, this.#inCh, this.#outCh);
    return out;
  }

  /** Frees the WebAssembly instance. */
  close(): void {
    if (!this.#src.isDestroyed) this.#src.destroy();
  }
}
