/**
 * The resampler's native loops (native/resample.c, loaded by plugins/resample/_native_kernel.ts): they load here
 * (scripts/setup.sh builds them), they are what a resampler uses by default, and they give the WebAssembly kernel's
 * output bit for bit, over every kind of plan (half-band stages, exact phases, one phase, integer decimators), the
 * three qualities, channel maps, frame cuts and full-scale input that saturates; so do its AVX2 and SSE2 bodies, each
 * built alone (`target_clones` runs only the widest one the CPU has). And the choice of kernel:
 * `VOXPIPE_RESAMPLE_KERNEL`, the WebAssembly kernel when FFI is not allowed, and the resampler stage's choice by the
 * stream's length.
 */
import { assert, assertEquals, assertMatch } from "./assert.ts";
import {
  defaultKernel,
  FILTER_SPECS,
  NATIVE_MIN_SECONDS,
  OFFLINE_PASS_FRAMES,
  planResampler,
  PolyphaseResampler,
  stageTableNative,
  stageTableWasm,
} from "../plugins/resample/polyphase.ts";
import resampler, { type ResamplerStats } from "../plugins/resample/resampler.ts";
import type { TransformStage } from "../core/stage.ts";
import { createStage } from "./registry_util.ts";
import { nativeIsa, nativeLoopsProblem, useNativeLibrary } from "../plugins/resample/_native_kernel.ts";
import { repoPath } from "./util.ts";
import { disassemble, forEachIsaBuild, runScript } from "./native_util.ts";

/** Deterministic test signal: noise, a sweep, and stretches at full scale and beyond what rounding keeps in range. */
function signal(frames: number, channels: number, rate: number, seed: number): Int16Array {
  const half = Math.round(rate / 400); // a 200 Hz square wave: its overshoot after any of the filters saturates
  const x = new Int16Array(frames * channels);
  let s = seed >>> 0;
  for (let i = 0; i < frames; i++) {
    for (let c = 0; c < channels; c++) {
      s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
      const noise = ((s >>> 16) - 32768) / 4;
      const sweep = 12000 * Math.sin((i * i * 1e-5 + c) * 0.7);
      // Every 4 000 frames, 500 frames of a square wave at full scale: the outputs overshoot and saturate.
      const square = (i % 4000) < 500 ? (Math.floor(i / half) & 1 ? 32767 : -32768) : 0;
      const v = square !== 0 ? square : noise + sweep;
      x[i * channels + c] = Math.max(-32768, Math.min(32767, Math.round(v)));
    }
  }
  return x;
}

/** Resamples `x` in frames whose sizes cycle through `cuts`, then flushes; the whole output. */
function resample(
  x: Int16Array,
  opts: ConstructorParameters<typeof PolyphaseResampler>[0],
  cuts: number[],
): { out: Int16Array; describe: string } {
  const r = new PolyphaseResampler(opts);
  const parts: Int16Array[] = [];
  const ch = opts.inChannels;
  for (let i = 0, k = 0; i < x.length / ch; k++) {
    const n = Math.min(cuts[k % cuts.length], x.length / ch - i);
    parts.push(r.process(x.subarray(i * ch, (i + n) * ch)).slice());
    i += n;
  }
  parts.push(r.flush());
  const out = new Int16Array(parts.reduce((a, p) => a + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return { out, describe: r.describe };
}

function firstDifference(a: Int16Array, b: Int16Array): string {
  if (a.length !== b.length) return `lengths ${a.length} and ${b.length}`;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return `sample ${i}: ${a[i]} and ${b[i]}`;
  return "none";
}

Deno.test("native resampler loops: the library loads here, and resamplers use it by default", () => {
  const why = nativeLoopsProblem();
  assert(why === undefined, `the native resampler loops cannot run: ${why}`);
  // Chosen by default with AVX-512 only (built for AVX2 they are slower than the WebAssembly kernel).
  assertEquals(defaultKernel(), nativeIsa() === "avx512" ? "native" : "wasm");
  const r = new PolyphaseResampler({ inRate: 44100, outRate: 8000, inChannels: 1, outChannels: 1, kernel: "native" });
  assertEquals(r.kernel, "native");
  assertMatch(r.describe, new RegExp(`^polyphase native-${nativeIsa()}: 44100→22050 Hz half-band`));
  assertMatch(nativeIsa()!, /^(avx512|avx2|sse2)$/);
});

/** The first float that differs between two tables, bit for bit ("none" when they are the same). */
function firstTableDifference(a: Float32Array, b: Float32Array): string {
  if (a.length !== b.length) return `lengths ${a.length} and ${b.length}`;
  const x = new Uint32Array(a.buffer, a.byteOffset, a.length), y = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return `coefficient ${i}: ${a[i]} and ${b[i]}`;
  return "none";
}

/**
 * The native loops' output against the WebAssembly kernel's, over every kind of plan, the three qualities, channel
 * maps and frame cuts, on input that saturates; and the coefficient tables the library computes against the
 * WebAssembly kernel's. `build` names the library in failure messages.
 */
function assertSameAsWasm(build: string): void {
  // Tables with exact phases (320, 441, 160 rows) and interpolated rows (44.1 -> 7.999 kHz: 4 097 or 2 049 of them).
  for (const [inRate, outRate] of [[44100, 8000], [8000, 44100], [44100, 48000], [44100, 7999]]) {
    for (const quality of ["medium", "fastest", "best"] as const) {
      for (const s of planResampler(inRate, outRate, FILTER_SPECS[quality]).stages) {
        if (s.halfband || s.cutoff === 0) continue;
        const what = `${build}: table of ${inRate}→${outRate} Hz ${quality}, L ${s.L}, ${s.rows} rows of ${s.taps}`;
        assertEquals(firstTableDifference(stageTableNative(s), stageTableWasm(s)), "none", what);
      }
    }
  }
  const cases: [number, number, number, number][] = [
    [44100, 8000, 1, 1], // half-band, half-band, exact phases (L = 320)
    [48000, 8000, 1, 1], // half-band, half-band, two phases
    [32000, 8000, 1, 1], // half-band, then one phase (fir1)
    [16000, 8000, 1, 1], // one phase, decimation by 2
    [8000, 16000, 1, 1], // up-sampling, two phases
    [8000, 44100, 1, 1], // up-sampling, 441 phases
    [44100, 48000, 1, 1], // 160 phases
    [96000, 8000, 1, 1], // three half-bands
    [8000, 8000, 1, 1], // same rate: one phase, no decimation
    [44100, 8000, 2, 1], // down-mix
    [48000, 16000, 2, 2], // two channels filtered
    [16000, 8000, 1, 2], // mono to two channels
  ];
  for (const [inRate, outRate, inChannels, outChannels] of cases) {
    for (const quality of ["medium", "fastest", "best"] as const) {
      const x = signal(Math.round(inRate * 0.9) + 37, inChannels, inRate, inRate + outRate + inChannels);
      // Cuts: 20 ms frames, odd small ones, and one long frame (the long-frame path stages it whole); the long frame
      // again with the native loops in offline passes (their fir loop then shares a row among four outputs where a
      // pass makes 4 L of them, 44.1 -> 8 kHz's included) against the WebAssembly kernel in the default ones.
      const long = [x.length];
      const variants: [number[], number | undefined][] = [
        [[Math.round(inRate / 50)], undefined],
        [[1, 7, 160, 3, 999], undefined],
        [long, undefined],
        [long, OFFLINE_PASS_FRAMES],
      ];
      for (const [cuts, passFrames] of variants) {
        const opts = { inRate, outRate, inChannels, outChannels, filter: FILTER_SPECS[quality] };
        const wasm = resample(x, { ...opts, kernel: "wasm" }, cuts);
        const native = resample(x, { ...opts, kernel: "native", passFrames }, cuts);
        assertMatch(native.describe, /^polyphase native-/);
        assertMatch(wasm.describe, /^polyphase wasm-simd/);
        const what = `${build}: ${inRate}→${outRate} Hz, ${inChannels}→${outChannels} ch, ${quality}, cuts ${
          cuts.join("/")
        }${passFrames ? `, passes of ${passFrames}` : ""}`;
        assertEquals(firstDifference(native.out, wasm.out), "none", what);
        assert(native.out.some((v) => v === 32767) && native.out.some((v) => v === -32768), `${what}: saturates`);
      }
    }
  }
}

Deno.test("native resampler loops: the WebAssembly kernel's output, bit for bit, over plans, qualities, channels and cuts", () => {
  assertSameAsWasm("the built library");
});

Deno.test("native resampler loops: the AVX2 and SSE2 bodies too, each built alone, bit for bit", async () => {
  // target_clones runs only the widest body the CPU has (AVX-512 here): built for one instruction set each, the other
  // bodies run here too. They are not chosen by default (2-3x slower than WebAssembly SIMD), but kernel "native" runs
  // them on a CPU without AVX-512.
  try {
    await forEachIsaBuild("resample-isa-", async (isa, dir) => {
      const lib = `${dir}/libvoxresample-${isa}.so`;
      // Each build is the body it names: the baseline one uses no 256-bit register, the AVX2 one no 512-bit one.
      const asm = await disassemble(lib);
      assert(!asm.includes("%zmm"), `${isa}: 512-bit registers in the build`);
      assertEquals(asm.includes("%ymm"), isa === "avx2", `${isa}: 256-bit registers in the build`);
      const problem = useNativeLibrary(new URL(`file://${lib}`));
      assertEquals(problem, undefined, `${isa}: ${problem}`);
      assertSameAsWasm(`built for ${isa} alone`);
    });
  } finally {
    useNativeLibrary();
  }
});

const PROBE = `
import { defaultKernel, PolyphaseResampler } from ${JSON.stringify(repoPath("plugins/resample/polyphase.ts"))};
import { nativeLoopsProblem } from ${JSON.stringify(repoPath("plugins/resample/_native_kernel.ts"))};
try {
  const r = new PolyphaseResampler({ inRate: 16000, outRate: 8000, inChannels: 1, outChannels: 1 });
  console.log(defaultKernel() + " | " + r.describe.split(":")[0] + " | " + (nativeLoopsProblem() ?? "loads"));
} catch (e) {
  console.log("error: " + e.message);
}
`;

Deno.test("native resampler loops: VOXPIPE_RESAMPLE_KERNEL chooses, a wrong value is refused, no FFI means WebAssembly", async () => {
  const wasm = await runScript(PROBE, ["-A"], { VOXPIPE_RESAMPLE_KERNEL: "wasm" });
  assertEquals(wasm.stdout, "wasm | polyphase wasm-simd | loads", wasm.stderr);
  const js = await runScript(PROBE, ["-A"], { VOXPIPE_RESAMPLE_KERNEL: "js" });
  assertEquals(js.stdout, "js | polyphase js | loads", js.stderr);
  const wrong = await runScript(PROBE, ["-A"], { VOXPIPE_RESAMPLE_KERNEL: "avx" });
  assertEquals(
    wrong.stdout,
    'error: VOXPIPE_RESAMPLE_KERNEL: expected one of native, wasm, js, got "avx"',
    wrong.stderr,
  );
  const noFfi = await runScript(PROBE, ["--allow-read", "--allow-env"], { VOXPIPE_RESAMPLE_KERNEL: "" });
  assertEquals(noFfi.stdout, "wasm | polyphase wasm-simd | FFI is not allowed (--allow-ffi)", noFfi.stderr);
  const asked = await runScript(
    PROBE.replace("outChannels: 1 }", 'outChannels: 1, kernel: "native" }'),
    ["--allow-read", "--allow-env"],
  );
  assertEquals(
    asked.stdout,
    "error: resampler: the native kernel cannot run here: FFI is not allowed (--allow-ffi)",
    asked.stderr,
  );
});

Deno.test("resampler stage: the native kernel for streams of 2 minutes or more or of unknown length, WebAssembly below", async () => {
  const native = nativeIsa() === "avx512"
    ? /^polyphase native-avx512: 44100→22050/
    : /^polyphase wasm-simd: 44100→22050/;
  const cases: [number | undefined, RegExp][] = [
    [44100 * 600, native],
    [44100 * NATIVE_MIN_SECONDS, native],
    [44100 * NATIVE_MIN_SECONDS - 1, /^polyphase wasm-simd: 44100→22050/],
    [44100, /^polyphase wasm-simd: 44100→22050/],
    [undefined, native],
  ];
  for (const [frames, want] of cases) {
    const stage = await createStage<TransformStage>(resampler, { threads: 1 });
    stage.negotiate!({ kind: "pcm", sampleRate: 44100, channels: 1, ...(frames !== undefined ? { frames } : {}) });
    assertMatch(
      (stage.stats!() as unknown as ResamplerStats).converter,
      want,
      `a stream of ${frames ?? "unknown"} frames`,
    );
    await stage.close?.();
  }
});
