/**
 * Private to the G.711 plugins: the encode and decode loops in C (`native/g711.c`, built by `scripts/setup.sh` into
 * `native/build/libvoxg711.so`), loaded through Deno FFI the first time a long frame asks for them
 * ({@linkcode NATIVE_MIN_SAMPLES}). They give the tables' bytes (see the C file); `tables.ts` uses the JavaScript loops
 * when the library does not load.
 *
 * @module
 */

import { openNativeLibrary } from "../../core/native.ts";

/** Where `scripts/setup.sh` builds the library. */
export const G711_LIBRARY = new URL("../../native/build/libvoxg711.so", import.meta.url);

/**
 * Frames of at least this many samples go to the C loops. A 20 ms frame (160 samples) costs ~0.2 µs in the
 * JavaScript loop, less than an FFI call, and a process that only handles calls never loads the library; a
 * transcode's one-second frame (8 000) costs ~12 µs there and under 2 µs in C.
 */
export const NATIVE_MIN_SAMPLES = 1024;

const SYMBOLS = {
  vp_mulaw_encode: { parameters: ["buffer", "buffer", "i32"], result: "void" },
  vp_alaw_encode: { parameters: ["buffer", "buffer", "i32"], result: "void" },
  vp_g711_decode: { parameters: ["buffer", "buffer", "i32", "buffer"], result: "void" },
} as const;

/** The library's functions. */
export type G711Loops = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

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
  lib = opened.symbols;
  problem = opened.problem;
  return problem;
}

/** Why the C loops do not run here, or undefined when they do. */
export function g711LoopsProblem(): string | undefined {
  g711Loops();
  return problem;
}
