/**
 * Private to the resampler: the polyphase kernel's hot loops in C (`native/resample.c`, built by `scripts/setup.sh`
 * into `native/build/libvoxresample.so`), loaded through Deno FFI.
 *
 * The C functions work on the WebAssembly kernel's own memory and give its floats bit for bit (see the C file), with
 * 16 lanes at a time where the CPU has AVX-512 (8 with AVX2). polyphase.ts uses them when the library loads and FFI
 * is allowed, and the WebAssembly kernel otherwise: the output does not depend on which ran.
 *
 * @module
 */

import { openNativeLibrary } from "../../core/native.ts";

/** Where `scripts/setup.sh` builds the library. */
export const RESAMPLE_LIBRARY = new URL("../../native/build/libvoxresample.so", import.meta.url);

const SYMBOLS = {
  vp_fir: {
    parameters: ["buffer", "i32", "i32", "i32", "i32", "i32", "i32", "i32", "i32", "i32", "i32"],
    result: "i32",
  },
  vp_fir1: { parameters: ["buffer", "i32", "i32", "i32", "i32", "i32", "i32", "i32", "i32"], result: "i32" },
  vp_split: { parameters: ["buffer", "i32", "i32", "i32", "i32"], result: "void" },
  vp_hb: { parameters: ["buffer", "i32", "i32", "i32", "i32", "i32", "i32", "i32", "i32"], result: "i32" },
  vp_kaiser_table: {
    parameters: [
      "buffer",
      "i32",
      "i32",
      "f64",
      "f64",
      "f64",
      "f64",
      "f64",
      "f64",
      "i32",
      "i32",
      "i32",
      "i32",
      "i32",
      "i32",
      "i32",
      "i32",
    ],
    result: "void",
  },
  vp_resample_isa: { parameters: [], result: "i32" },
} as const;

/** The library's functions. */
export type NativeLoops = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

let lib: NativeLoops | undefined;
let problem: string | undefined;
let isa: "avx512" | "avx2" | "sse2" | undefined;

/**
 * The native loops, or undefined when they cannot run here: FFI not allowed (`--allow-ffi`, which `-A` gives), the
 * library not built (`scripts/setup.sh` builds it with a C compiler), or not loadable. The answer is kept.
 */
export function nativeLoops(): NativeLoops | undefined {
  if (lib || problem !== undefined) return lib;
  useNativeLibrary();
  return lib;
}

/**
 * Loads the loops from `url` from now on instead of the built library (`undefined`: the built library again), and
 * says why they cannot run, or undefined when they can. For a test of a build for one instruction set:
 * `target_clones` runs only the widest body the CPU has, so on an AVX-512 machine the AVX2 and SSE2 bodies run
 * nowhere else. `nativeIsa()` still says what the CPU has.
 */
export function useNativeLibrary(url?: URL): string | undefined {
  const opened = openNativeLibrary(url ?? RESAMPLE_LIBRARY, SYMBOLS);
  lib = opened.symbols;
  problem = opened.problem;
  return problem;
}

/** Why the native loops do not run here, or undefined when they do. */
export function nativeLoopsProblem(): string | undefined {
  nativeLoops();
  return problem;
}

/** The instruction set the library runs on: "avx512", "avx2" or "sse2"; undefined when it does not load. */
export function nativeIsa(): "avx512" | "avx2" | "sse2" | undefined {
  if (isa) return isa;
  const l = nativeLoops();
  if (!l) return undefined;
  const n = l.vp_resample_isa();
  return isa = n === 3 ? "avx512" : n === 2 ? "avx2" : "sse2";
}
