/**
 * Private to the G.711 plugins: the encode and decode loops in C (`native/g711.c`, built by `scripts/setup.sh` into
 * `native/build/libvoxg711.so`), loaded through Deno FFI once the long frames ({@linkcode NATIVE_MIN_SAMPLES}) encoded
 * or decoded in the process add up to two minutes at 8 kHz ({@linkcode NATIVE_AFTER_SAMPLES}). They give the tables'
 * bytes (see the C file); `tables.ts` uses the JavaScript loops until then, and when the library does not load.
 *
 * @module
 */

import { openNativeLibrary } from "../../core/native.ts";

/** Where `scripts/setup.sh` builds the library. */
export const G711_LIBRARY = new URL("../../native/build/libvoxg711.so", import.meta.url);

/**
 * Frames of at least this many samples go to the C loops (once {@linkcode NATIVE_AFTER_SAMPLES} are done). A 20 ms
 * frame (160 samples) costs ~0.2 µs in the JavaScript loop, less than the FFI call, and a process that only handles
 * calls never loads the library; a transcode's one-second frame (8 000 samples) costs ~6-10 µs there, ~1.5 µs in C
 * with the call.
 */
export const NATIVE_MIN_SAMPLES = 1024;

/**
 * Samples of long frames the JavaScript loops encode or decode in a process before the C loops are loaded: two
 * minutes at 8 kHz. Loading them costs ~2 ms at the first call (the process's first FFI library: `Deno.dlopen` and
 * the permission check), which the ~8 µs they save per second of audio, encoded or decoded, pays back after about as
 * much audio; so a short file is never slower for them (the resampler's native loops start at two minutes too).
 */
export const NATIVE_AFTER_SAMPLES = 960_000;

let longSamples = 0;

/**
 * The C loops for a long run of `n` samples, once the process's long runs have added up to
 * {@linkcode NATIVE_AFTER_SAMPLES} (counting this one), and where they load; else undefined (the JavaScript loops).
 */
export function g711LoopsFor(n: number): G711Loops | undefined {
  if (longSamples < NATIVE_AFTER_SAMPLES) {
    longSamples += n;
    if (longSamples < NATIVE_AFTER_SAMPLES) return undefined;
  }
  return g711Loops();
}

// The count is a struct parameter (native/g711.c's vp_count): Deno then compiles no fast-call trampoline for these
// functions (~2.5 ms in a process's first FFI use, with Cranelift); once per long frame, the generic call costs less.
const COUNT = { struct: ["i32"] } as const;
const SYMBOLS = {
  vp_mulaw_encode: { parameters: ["buffer", "buffer", COUNT], result: "void" },
  vp_alaw_encode: { parameters: ["buffer", "buffer", COUNT], result: "void" },
  vp_g711_decode: { parameters: ["buffer", "buffer", COUNT, "buffer"], result: "void" },
} as const;

/** The C loops: each does `n` samples (the arrays hold at least `n`). */
export interface G711Loops {
  /** μ-law codes of `samples` into `out`. */
  mulawEncode(samples: Int16Array, out: Uint8Array, n: number): void;
  /** A-law codes of `samples` into `out`. */
  alawEncode(samples: Int16Array, out: Uint8Array, n: number): void;
  /** `out[i] = table[payload[i]]`, with a 256-sample decode table. */
  decode(payload: Uint8Array, out: Int16Array, n: number, table: Int16Array): void;
}

/** The loops over the library's functions, with one count buffer for their calls (they never nest). */
function wrap(c: Deno.DynamicLibrary<typeof SYMBOLS>["symbols"]): G711Loops {
  const count = new Int32Array(1);
  const bytes = new Uint8Array(count.buffer);
  return {
    mulawEncode(samples, out, n) {
      count[0] = n;
      c.vp_mulaw_encode(samples, out, bytes);
    },
    alawEncode(samples, out, n) {
      count[0] = n;
      c.vp_alaw_encode(samples, out, bytes);
    },
    decode(payload, out, n, table) {
      count[0] = n;
      c.vp_g711_decode(payload, out, bytes, table);
    },
  };
}

let lib: G711Loops | undefined;
let problem: string | undefined;

/**
 * The C loops, or undefined when they cannot run here: FFI not allowed (`--allow-ffi`, which `-A` gives), the library
 * not built (`scripts/setup.sh` builds it with a C compiler), or not loadable. Loaded at the first call; the answer is
 * kept.
 */
export function g711Loops(): G711Loops | undefined {
  if (lib || problem !== undefined) return lib;
  useG711Library();
  return lib;
}

/**
 * Loads the loops from `url` from now on instead of the built library (`undefined`: the built library again), and
 * says why they cannot run, or undefined when they can. For a test of a build for one instruction set:
 * `target_clones` runs only the widest body the CPU has.
 */
export function useG711Library(url?: URL): string | undefined {
  const opened = openNativeLibrary(url ?? G711_LIBRARY, SYMBOLS);
  lib = opened.symbols ? wrap(opened.symbols) : undefined;
  problem = opened.problem;
  return problem;
}

/** Why the C loops do not run here, or undefined when they do. */
export function g711LoopsProblem(): string | undefined {
  g711Loops();
  return problem;
}
