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
  vp_resample_isa: { parameters: [], result: "i32" },
} as const;

/** The library's functions. */
export type NativeLoops = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

let lib: NativeLoops | undefined;
let problem: string | undefined;

/**
 * The native loops, or undefined when they cannot run here: FFI not allowed (`--allow-ffi`, which `-A` gives), the
 * library not built (`scripts/setup.sh` builds it with a C compiler), or not loadable. The answer is kept.
 */
export function nativeLoops(): NativeLoops | undefined {
  if (lib || problem !== undefined) return lib;
  problem = findProblem();
  return lib;
}

/** Why the native loops do not run here, or undefined when they do. */
export function nativeLoopsProblem(): string | undefined {
  nativeLoops();
  return problem;
}

/** The instruction set the library runs on: "avx512", "avx2" or "sse2"; undefined when it does not load. */
export function nativeIsa(): "avx512" | "avx2" | "sse2" | undefined {
  const l = nativeLoops();
  if (!l) return undefined;
  const isa = l.vp_resample_isa();
  return isa === 3 ? "avx512" : isa === 2 ? "avx2" : "sse2";
}

function findProblem(): string | undefined {
  const path = decodeURIComponent(RESAMPLE_LIBRARY.pathname);
  try {
    // Asked first: a dlopen without the permission would prompt for it in a terminal.
    if (Deno.permissions.querySync({ name: "ffi", path }).state !== "granted") {
      return "FFI is not allowed (--allow-ffi)";
    }
  } catch (e) {
    return `FFI is not available: ${e instanceof Error ? e.message : e}`;
  }
  try {
    // No stat first (it costs a millisecond at start-up): a missing file is told by dlopen's error.
    lib = Deno.dlopen(path, SYMBOLS).symbols;
    return undefined;
  } catch (e) {
    const why = e instanceof Error ? e.message : String(e);
    if (/No such file/i.test(why)) {
      return `${path} is not built (run scripts/setup.sh, which needs a C compiler: apt-get install gcc)`;
    }
    return `cannot load ${path}: ${why}`;
  }
}
