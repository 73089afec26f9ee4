/**
 * Loading voxpipe's own native libraries (`native/*.c`, built by `scripts/setup.sh` into `native/build/`) through
 * Deno FFI, with one message for each way it can fail.
 *
 * @module
 */
import { fileUrlToPath } from "./path.ts";

/** A library loaded, or why it could not be. */
export type NativeLibrary<S extends Deno.ForeignLibraryInterface> =
  | { symbols: Deno.DynamicLibrary<S>["symbols"]; problem?: undefined }
  | { symbols?: undefined; problem: string };

/**
 * Opens the library at `url` with `symbols`, or says why it cannot: FFI not allowed (asked first, so that a terminal
 * is never prompted for the permission), the file not built (told by `dlopen`'s error: no `stat` first, which costs a
 * millisecond at start-up), or not loadable.
 *
 * @example
 * ```ts
 * const lib = openNativeLibrary(new URL("../native/build/libvoxpacer.so", import.meta.url), {
 *   vp_pacer_free: { parameters: ["pointer"], result: "void" },
 * });
 * if (lib.problem) console.log(lib.problem);
 * ```
 */
export function openNativeLibrary<S extends Deno.ForeignLibraryInterface>(url: URL, symbols: S): NativeLibrary<S> {
  const path = fileUrlToPath(url);
  try {
    if (Deno.permissions.querySync({ name: "ffi", path }).state !== "granted") {
      return { problem: "FFI is not allowed (--allow-ffi)" };
    }
  } catch (e) {
    return { problem: `FFI is not available: ${e instanceof Error ? e.message : e}` };
  }
  try {
    return { symbols: Deno.dlopen(path, symbols).symbols };
  } catch (e) {
    const why = e instanceof Error ? e.message : String(e);
    if (/No such file/i.test(why)) {
      return { problem: `${path} is not built (run scripts/setup.sh, which needs a C compiler: apt-get install gcc)` };
    }
    return { problem: `cannot load ${path}: ${why}` };
  }
}
