/**
 * Tests of the polyphase resampler kernel (plugins/resample/polyphase.ts): telephony quality
 * (tone SNR after int16 rounding, passband flatness to 3.4 kHz, aliases and images at or below
 * −90 dB), printed beside libsamplerate `medium` on the same signals; identical output however
 * the input is cut; time alignment; exact output lengths; plans; both kernels.
 *
 * @module
 */
import assert from "node:assert/strict";
import { seededRandom } from "../core/random.ts";
import { dB, fit, formatFigures, FULL, qualityFigures, span, tone } from "./resample_quality.ts";
import { LsrConverter } from "../plugins/resample/_lsr.ts";
import {
  FILTER_SPECS,
  halfbandTable,
  MAX_TABLE_FLOATS,
  OFFLINE_PASS_FRAMES,
  planResampler,
  PolyphaseResampler,
  type StagePlan,
  stageTable,
  stageTableJs,
  wasmKernelAvailable,
} from "../plugins/resample/polyphase.ts";

function concat(parts: Int16Array[]): Int16Array {
  const out = new Int16Array(parts.reduce((a, p) => a + p.length, 0));
  let at = 0;
  for (const p of parts) (out.set(p, at), at += p.length);
  return out;
}

function poly(
  x: Int16Array,
  inRate: number,
  outRate: number,
  opts: Partial<ConstructorParameters<typeof PolyphaseResampler>[0]> = {},
) {
  const r = new PolyphaseResampler({ inRate, outRate, inChannels: 1, outChannels: 1, ...opts });
  return concat([r.process(x), r.flush()]);
}

async function lsrMedium(x: Int16Array, inRate: number, outRate: number): Promise<Int16Array> {
  const c = await LsrConverter.create("medium", outRate);
  c.configure(inRate, 1, 1);
  const parts: Int16Array[] = [];
  for (let i = 0; i < x.length; i += 4410) parts.push(c.process(x.subarray(i, i + 4410)));
  parts.push(c.flush());
  c.close();
  return concat(parts);
}

Deno.test("polyphase 44.1 kHz → 8 kHz: 1 kHz tone SNR ≥ 90 dB after int16 rounding (figures beside libsamplerate medium)", async () => {
  const x = tone(1000, 44100, 2, FULL);
  const rows: string[] = [];
  for (
    const [name, y] of [
      ["polyphase medium (wasm)", poly(x, 44100, 8000)],
      ["polyphase medium (js)", poly(x, 44100, 8000, { kernel: "js" })],
      ["polyphase best", poly(x, 44100, 8000, { filter: FILTER_SPECS.best })],
      ["polyphase fastest", poly(x, 44100, 8000, { filter: FILTER_SPECS.fastest })],
      ["libsamplerate medium", await lsrMedium(x, 44100, 8000)],
    ] as const
  ) {
    const f = fit(y, [1000], 8000, ...span(y, 8000));
    rows.push(`${name}: SNR ${f.snrDb.toFixed(2)} dB, level ${dB(f.amps[0] / FULL).toFixed(5)} dB`);
    if (name.startsWith("polyphase medium")) assert.ok(f.snrDb >= 90, `${name}: SNR ${f.snrDb} dB`);
  }
  console.log("1 kHz at −0.2 dBFS, 44.1 → 8 kHz, int16 out:\n  " + rows.join("\n  "));
});

// Besides tones that fold straight to the output band, tones at the edges of each cascade stage's stopband: through a
// half-band stage (44.1 → 22.05 → 11.025 kHz; 48 → 24 → 12 kHz) 18 100 Hz folds to 3 950 Hz and 7 100 Hz (at 22.05 kHz)
// to 3 925 Hz, which the residual below catches wherever an alias lands.
const DOWN: [number, number, number[]][] = [
  [44100, 8000, [4100, 6000, 7100, 10000, 15000, 18100, 21000]],
  [48000, 8000, [4100, 6000, 8100, 10000, 15000, 20100, 23000]],
  [16000, 8000, [4100, 6000, 7900]],
];

Deno.test("polyphase down to 8 kHz: passband flat ±0.1 dB to 3.4 kHz, everything above 4 kHz aliased ≤ −90 dB", async () => {
  const lines: string[] = [];
  for (const [inRate, outRate, stops] of DOWN) {
    const flat: string[] = [], alias: string[] = [];
    for (const f of [300, 1000, 2000, 3000, 3400]) {
      const x = tone(f, inRate, 1, 16000, true);
      const y = poly(x, inRate, outRate), z = await lsrMedium(x, inRate, outRate);
      const a = dB(fit(y, [f], outRate, ...span(y, outRate)).amps[0] / 16000);
      const b = dB(fit(z, [f], outRate, ...span(z, outRate)).amps[0] / 16000);
      assert.ok(Math.abs(a) <= 0.1, `${inRate}→${outRate} ${f} Hz: ${a} dB`);
      flat.push(`${f} Hz ${a.toFixed(4)} (lsr ${b.toFixed(4)})`);
    }
    for (const f of stops) {
      const x = tone(f, inRate, 1, FULL, true);
      const fa = Math.abs(f - Math.round(f / outRate) * outRate);
      const y = poly(x, inRate, outRate), z = await lsrMedium(x, inRate, outRate);
      const a = dB(fit(y, [fa], outRate, ...span(y, outRate)).amps[0] / FULL);
      const b = dB(fit(z, [fa], outRate, ...span(z, outRate)).amps[0] / FULL);
      assert.ok(a <= -90, `${inRate}→${outRate}: ${f} Hz folds to ${fa} Hz at ${a} dB`);
      // Everything left, wherever it landed (a cascade stage folds at its own rate): the output's RMS against the
      // tone's, which is rounding noise alone when nothing aliased.
      const [from, to] = span(y, outRate);
      let sq = 0;
      for (let i = from; i < to; i++) sq += y[i] * y[i];
      const rest = dB(Math.sqrt((2 * sq) / (to - from)) / FULL);
      assert.ok(rest <= -90, `${inRate}→${outRate}: ${f} Hz leaves ${rest} dB`);
      alias.push(`${f}→${fa} Hz ${a.toFixed(1)} (lsr ${b.toFixed(1)}; all that is left ${rest.toFixed(1)})`);
    }
    lines.push(`${inRate} → ${outRate}: passband dB ${flat.join(", ")}`);
    lines.push(`${inRate} → ${outRate}: aliases dB ${alias.join(", ")}`);
  }
  console.log("polyphase medium (libsamplerate medium), dithered tones, int16 out:\n  " + lines.join("\n  "));
});

Deno.test("polyphase up from 8 kHz to 16 and 48 kHz: passband flat ±0.1 dB to 3.4 kHz, images ≤ −90 dB", async () => {
  const lines: string[] = [];
  for (const outRate of [16000, 48000]) {
    const parts: string[] = [];
    for (const f of [300, 1000, 2000, 3000, 3400]) {
      const images: number[] = [];
      for (let k = 8000; k - f < outRate / 2; k += 8000) {
        images.push(k - f);
        if (k + f < outRate / 2) images.push(k + f);
      }
      const x = tone(f, 8000, 1, 16000, true);
      const y = poly(x, 8000, outRate), z = await lsrMedium(x, 8000, outRate);
      const fy = fit(y, [f, ...images], outRate, ...span(y, outRate));
      const fz = fit(z, [f, ...images], outRate, ...span(z, outRate));
      const level = dB(fy.amps[0] / 16000);
      const worst = Math.max(...fy.amps.slice(1).map((a) => dB(a / 16000)));
      const worstLsr = Math.max(...fz.amps.slice(1).map((a) => dB(a / 16000)));
      assert.ok(Math.abs(level) <= 0.1, `8000→${outRate} ${f} Hz: ${level} dB`);
      assert.ok(worst <= -90, `8000→${outRate} ${f} Hz: an image at ${worst} dB`);
      parts.push(`${f} Hz ${level.toFixed(4)}, images ≤ ${worst.toFixed(1)} (lsr ${worstLsr.toFixed(1)})`);
    }
    lines.push(`8000 → ${outRate}: ${parts.join("; ")}`);
  }
  console.log("polyphase medium (libsamplerate medium), dithered tones, int16 out:\n  " + lines.join("\n  "));
});

Deno.test("polyphase output is identical however the input is cut (random frame sizes), for every plan shape", () => {
  const rnd = seededRandom(7);
  const cases: [number, number, number, number, Partial<ConstructorParameters<typeof PolyphaseResampler>[0]>][] = [
    [44100, 8000, 1, 1, {}], // two half-bands + 320 phases
    [48000, 8000, 2, 1, {}], // down-mix, two half-bands + 2 phases
    [48000, 16000, 2, 2, {}], // stereo kept, a half-band + 2 phases
    [44100, 11025, 2, 2, {}], // stereo kept, a half-band + an integer decimator
    [48000, 8000, 1, 1, { kernel: "js" }], // the JavaScript half-band
    [8000, 48000, 1, 2, {}], // up-sampling, up-mix
    [44100, 7999, 1, 1, {}], // interpolated phases
    [22050, 44100, 1, 1, { filter: FILTER_SPECS.best }],
    [16000, 8000, 1, 1, { kernel: "js" }],
    [44100, 8000, 1, 1, { filter: FILTER_SPECS.linear }],
    [44100, 8000, 2, 2, { passFrames: OFFLINE_PASS_FRAMES }], // stereo in offline passes (the whole input: two)
    [48000, 8000, 2, 1, { passFrames: OFFLINE_PASS_FRAMES, kernel: "js" }],
  ];
  for (const [inRate, outRate, inCh, outCh, opts] of cases) {
    const x = new Int16Array(Math.round(inRate * 0.7) * inCh);
    for (let i = 0; i < x.length; i++) x[i] = Math.round((rnd() - 0.5) * 40000 * Math.sin(i / 300));
    const make = () => new PolyphaseResampler({ inRate, outRate, inChannels: inCh, outChannels: outCh, ...opts });
    const one = make();
    const whole = concat([one.process(x), one.flush()]);
    const r = make();
    const parts: Int16Array[] = [];
    for (let at = 0; at < x.length / inCh;) {
      const n = Math.min(Math.floor(rnd() * rnd() * 9000), x.length / inCh - at); // 0 .. ~9000 frames, mostly small
      parts.push(r.process(x.subarray(at * inCh, (at + n) * inCh)));
      at += n;
    }
    parts.push(r.flush());
    const label = `${inRate}→${outRate} ${inCh}→${outCh} ch ${JSON.stringify(opts)}`;
    assert.equal(whole.length, Math.round((x.length / inCh) * outRate / inRate) * outCh, label);
    assert.deepEqual(concat(parts), whole, label);
    // After flush the object starts a new stream: the same input gives the same output again.
    assert.deepEqual(concat([r.process(x), r.flush()]), whole, `${label}, second stream`);
  }
});

Deno.test("polyphase output sample k is the input at time k / rate_out: no residual delay (cascade, phases, up, interpolated)", () => {
  for (
    const [inRate, outRate, f] of [[44100, 8000, 1000], [48000, 8000, 700], [8000, 48000, 1000], [44100, 7999, 1000], [
      8000,
      44100,
      3000,
    ]]
  ) {
    const x = tone(f, inRate, 1, 20000);
    const y = poly(x, inRate, outRate);
    const r = fit(y, [f], outRate, ...span(y, outRate));
    assert.ok(Math.abs(r.delays[0]) < 0.005, `${inRate}→${outRate}: delay ${r.delays[0]} output samples`);
    // Clean too, the interpolated phases (44 100 → 7 999) included: only int16 rounding is left.
    assert.ok(r.snrDb > 90, `${inRate}→${outRate}: SNR ${r.snrDb} dB`);
  }
  // An impulse comes out centred on its time: input sample 100 at 8 kHz is output sample 600 at 48 kHz.
  const imp = new Int16Array(400);
  imp[100] = 30000;
  const y = poly(imp, 8000, 48000);
  let peak = 0;
  for (let i = 1; i < y.length; i++) if (y[i] > y[peak]) peak = i;
  assert.equal(peak, 600);
  for (let k = 1; k < 30; k++) assert.ok(Math.abs(y[600 - k] - y[600 + k]) <= 1, `symmetric at ±${k}`);
});

Deno.test("polyphase total output is round(n × out / in) for any n", () => {
  for (const [inRate, outRate] of [[44100, 8000], [8000, 48000], [48000, 8000], [44100, 7999], [11025, 8000]]) {
    for (const n of [0, 1, 2, 7, 100, 881, 882, 4095, 4096, 4097, 9000, 44101]) {
      const r = new PolyphaseResampler({ inRate, outRate, inChannels: 1, outChannels: 1 });
      const got = r.process(new Int16Array(n)).length + r.flush().length;
      assert.equal(got, Math.round((n * outRate) / inRate), `${inRate}→${outRate}, ${n} in`);
    }
  }
});

Deno.test("polyphase plans: half-bands and integer pre-decimation when cheaper, exact phases, interpolated rows for huge L", () => {
  const p = planResampler(44100, 8000);
  const shape = (q: typeof p) => q.stages.map((s) => [s.inRate, s.outRate, s.L, s.M, s.taps, s.halfband ?? 0]);
  // Half-bands to 11 025 Hz (transition bands [4 000, 18 050] and [4 000, 7 025] Hz), then the sharp polyphase stage.
  assert.deepEqual(shape(p), [[44100, 22050, 1, 2, 23, 6], [22050, 11025, 1, 2, 51, 13], [
    11025,
    8000,
    320,
    441,
    128,
    0,
  ]]);
  assert.ok(p.macsPerOutput < 250, `${p.macsPerOutput} multiply-adds per output`);
  assert.deepEqual(planResampler(48000, 8000).stages.map((s) => [s.L, s.M, s.halfband ?? 0]), [[1, 2, 6], [1, 2, 11], [
    2,
    3,
    0,
  ]]);
  // No half-band where its transition band cannot lie above the stopband (16 kHz → 8 kHz), nor when up-sampling.
  assert.deepEqual(shape(planResampler(16000, 8000)), [[16000, 8000, 1, 2, 176, 0]]);
  // A half-band then an integer decimator.
  assert.deepEqual(shape(planResampler(44100, 11025)).map((s) => s.slice(2)), [[1, 2, 27, 7], [1, 2, 176, 0]]);
  // Its coefficients: the centre and the odd taps, each in 4 lanes, DC gain exactly 1, centre near 1/2.
  const hb = halfbandTable(p.stages[0]);
  assert.equal(hb.length, 4 * 7);
  let dc = hb[0];
  for (let i = 1; i <= 6; i++) dc += 2 * hb[4 * i];
  assert.ok(Math.abs(dc - 1) < 1e-6 && Math.abs(hb[0] - 0.5) < 1e-3, `DC ${dc}, centre ${hb[0]}`);
  const up = planResampler(8000, 48000);
  assert.deepEqual(up.stages.map((s) => [s.L, s.M, s.interpolated]), [[6, 1, false]]);
  const odd = planResampler(44100, 7999);
  const last = odd.stages[odd.stages.length - 1];
  assert.equal(last.interpolated, true);
  assert.ok(last.rows * last.taps <= 2 * MAX_TABLE_FLOATS + last.taps);
  // Look-ahead of a few milliseconds.
  assert.ok(p.latency > 0.002 && p.latency < 0.01, `latency ${p.latency}`);
});

/**
 * A windowed-sinc stage's table from its definition, every term of the I0 series summed (m = 0..40, by Horner's rule,
 * as the kernels did before they learned to stop at the terms a point needs), with the kernels' sine recurrence and
 * their order of operations: the tables must come out identical, bit for bit.
 */
function referenceTable(s: StagePlan): Float32Array {
  const d = s.interpolated ? s.rows - 1 : s.L, span = s.half * d;
  const terms: number[] = [];
  for (let m = 0, f = 1; m <= 40; m++) (f *= m || 1, terms.push(1 / (f * f)));
  const i0 = (a: number) => {
    let w = terms[40];
    for (let m = 39; m >= 0; m--) w = w * a + terms[m];
    return w;
  };
  const th = (Math.PI * 2 * s.cutoff) / d, k2 = 2 * Math.cos(th), b2 = s.beta ** 2 / 4;
  let i0b = 1, term = 1; // besselI0(β), as the kernels' callers compute it
  for (let k = 1; k < 200; k++) {
    term *= b2 / (k * k);
    i0b += term;
    if (term < i0b * 1e-17) break;
  }
  const proto = new Float64Array(span + 1);
  let prev = 0, cur = 0;
  for (let j = 0; j < span; j++) {
    if (j === 1) cur = Math.sin(th);
    if (j > 1) [prev, cur] = [cur, k2 * cur - prev];
    const sinc = j > 0 ? cur / (th * j) : 1, u = j / span;
    proto[j] = ((2 * s.cutoff * sinc) * i0(b2 * (1 - u * u))) / i0b;
  }
  const t = new Float32Array(s.rows * s.taps), row = new Float64Array(s.taps);
  for (let r = 0; r < s.rows; r++) {
    let sum = 0;
    for (let k = 0; k < s.taps; k++) {
      const j = Math.abs(r + (s.half - 1 - k) * d);
      sum += row[k] = j < span ? proto[j] : 0;
    }
    for (let k = 0; k < s.taps; k++) t[r * s.taps + k] = row[k] / sum;
  }
  return t;
}

Deno.test("polyphase tables: both kernels give the table of the whole I0 series, bit for bit (fastest, medium, best)", () => {
  let checked = 0;
  for (const [inRate, outRate] of [[44100, 8000], [48000, 8000], [8000, 48000], [16000, 8000], [44100, 7999]]) {
    for (const spec of [FILTER_SPECS.fastest, FILTER_SPECS.medium, FILTER_SPECS.best]) {
      for (const s of planResampler(inRate, outRate, spec).stages) {
        if (s.halfband || s.cutoff === 0) continue;
        const want = referenceTable(s);
        const js = stageTableJs(s);
        const at = js.findIndex((v, i) => v !== want[i]);
        assert.equal(at, -1, `${inRate} → ${outRate} Hz, β ${s.beta.toFixed(2)}: JavaScript table differs at ${at}`);
        if (wasmKernelAvailable()) {
          const wasm = stageTable(s);
          const w = wasm.findIndex((v, i) => v !== want[i]);
          assert.equal(w, -1, `${inRate} → ${outRate} Hz, β ${s.beta.toFixed(2)}: WebAssembly table differs at ${w}`);
        }
        checked++;
      }
    }
  }
  assert.ok(checked >= 12, `${checked} tables`);
});

Deno.test("polyphase maps channels: stereo independent, down-mix averages, up-mix copies", () => {
  const st = tone(1000, 48000, 0.5, 16000, false, 2); // right = −left
  const r = new PolyphaseResampler({ inRate: 48000, outRate: 16000, inChannels: 2, outChannels: 2 });
  const y = concat([r.process(st), r.flush()]);
  assert.equal(y.length, 8000 * 2);
  for (let i = 0; i < y.length; i += 2) assert.equal(y[i] + y[i + 1], 0);
  const mono = new PolyphaseResampler({ inRate: 48000, outRate: 16000, inChannels: 2, outChannels: 1 });
  const m = concat([mono.process(st), mono.flush()]);
  assert.ok(m.every((v) => Math.abs(v) <= 1), "opposite channels cancel");
  const up = new PolyphaseResampler({ inRate: 8000, outRate: 16000, inChannels: 1, outChannels: 3 });
  const u = concat([up.process(tone(500, 8000, 0.2, 10000)), up.flush()]);
  for (let i = 0; i < u.length; i += 3) assert.ok(u[i] === u[i + 1] && u[i] === u[i + 2]);
  assert.throws(
    () => new PolyphaseResampler({ inRate: 8000, outRate: 16000, inChannels: 3, outChannels: 2 }),
    /3 channels to 2/,
  );
  assert.throws(
    () => new PolyphaseResampler({ inRate: 8000.5, outRate: 16000, inChannels: 1, outChannels: 1 }),
    /inRate/,
  );
});

Deno.test("polyphase JavaScript kernel agrees with the WebAssembly one within 1 LSB", () => {
  assert.ok(wasmKernelAvailable(), "this Deno runs WebAssembly SIMD");
  const rnd = seededRandom(3);
  const x = new Int16Array(44100);
  for (let i = 0; i < x.length; i++) x[i] = Math.round(12000 * Math.sin(i / 7) + (rnd() - 0.5) * 8000);
  for (const [inRate, outRate] of [[44100, 8000], [8000, 48000], [44100, 7999], [44100, 11025], [16000, 8000]]) {
    const a = poly(x, inRate, outRate), b = poly(x, inRate, outRate, { kernel: "js" });
    assert.equal(a.length, b.length);
    let worst = 0;
    for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]));
    assert.ok(worst <= 1, `${inRate}→${outRate}: ${worst} LSB`);
  }
});

Deno.test("polyphase medium summary figures beside libsamplerate medium (the bench's quality line)", async () => {
  const q = await qualityFigures((x, a, b) => poly(x, a, b));
  const l = await qualityFigures((x, a, b) => lsrMedium(x, a, b));
  console.log(`polyphase medium:     ${formatFigures(q)}\nlibsamplerate medium: ${formatFigures(l)}`);
  assert.ok(q.snrDb >= 90 && q.passbandDb <= 0.1 && q.alias6kDb <= -90 && q.alias10kDb <= -90 && q.imageDb <= -90);
});

Deno.test("polyphase passFrames: a size outside 1024..65536 is refused, saying what is allowed", () => {
  for (const passFrames of [100, 4096.5, 100000]) {
    assert.throws(
      () => new PolyphaseResampler({ inRate: 44100, outRate: 8000, inChannels: 1, outChannels: 1, passFrames }),
      new RegExp(`passFrames must be an integer in 1024\\.\\.65536, got ${passFrames}`),
    );
  }
});
