/**
 * Keeps ALSA's start-up chatter out of the terminal, and keeps PortAudio from
 * aborting the process on an ALSA configuration it cannot handle. Private to
 * this folder.
 *
 * Every time PortAudio initializes (naudiodon's `getDevices()`,
 * `getHostAPIs()` and `create()` each do), its ALSA host API probes every PCM
 * the ALSA configuration defines, and libasound prints an `ALSA lib ...` line
 * on standard error for each one that fails: some sixty lines per call on a
 * machine without a sound card. {@linkcode quietNative} points file descriptor
 * 2 at a temporary file for the duration of such a call (it is synchronous, on
 * the main thread), then prints one line that summarizes the ALSA messages
 * (once per process) and passes any other line on. `VOXPIPE_NATIVE_STDERR=keep`
 * leaves standard error alone.
 *
 * PortAudio 19.6 (the one naudiodon bundles) asserts, and so aborts the whole
 * process, while it builds its device list when the configuration defines no
 * `default` or `dmix` PCM (e.g. an empty `ALSA_CONFIG_PATH` file):
 * {@linkcode alsaConfigProblem} finds that out first through libasound's own
 * configuration API, so the caller can refuse with a message instead.
 *
 * @module
 */

import { envVar } from "../../core/env.ts";

type Libc = Deno.DynamicLibrary<{
  dup: { parameters: ["i32"]; result: "i32" };
  dup2: { parameters: ["i32", "i32"]; result: "i32" };
  open: { parameters: ["buffer", "i32", "i32"]; result: "i32" };
  close: { parameters: ["i32"]; result: "i32" };
}>;

let libc: Libc | null | undefined;

function openLibc(): Libc | null {
  if (libc !== undefined) return libc;
  try {
    libc = Deno.dlopen("libc.so.6", {
      dup: { parameters: ["i32"], result: "i32" },
      dup2: { parameters: ["i32", "i32"], result: "i32" },
      open: { parameters: ["buffer", "i32", "i32"], result: "i32" },
      close: { parameters: ["i32"], result: "i32" },
    });
  } catch {
    libc = null; // no FFI permission, or not glibc
  }
  return libc;
}

const cstr = (s: string) => new TextEncoder().encode(s + "\0");
const O_WRONLY = 1;
const O_APPEND = 0o2000;

let summarized = false;

/** One line for what ALSA printed while PortAudio initialized, or undefined when it printed nothing. */
export function summarizeAlsaLines(lines: string[]): string | undefined {
  if (lines.length === 0) return undefined;
  const noCard = lines.some((l) => /cannot find card/.test(l));
  const first = lines[0].replace(/^ALSA lib [^ ]*\) ?/, "").trim();
  return `voxpipe: ALSA printed ${lines.length} line${
    lines.length === 1 ? "" : "s"
  } while PortAudio probed the audio ` +
    `devices (${noCard ? "no sound card" : `first: ${first}`}); set VOXPIPE_NATIVE_STDERR=keep to see them`;
}

/**
 * Runs `fn`, a synchronous call into the native binding that initializes PortAudio, with standard error captured:
 * `ALSA lib ...` lines become one summary line (the first time only), anything else is printed as it was.
 * Without FFI access to libc, or with `VOXPIPE_NATIVE_STDERR=keep`, runs `fn` as it is.
 */
export function quietNative<T>(fn: () => T): T {
  if (Deno.build.os !== "linux" || envVar("VOXPIPE_NATIVE_STDERR") === "keep") return fn();
  const c = openLibc();
  if (!c) return fn();
  let tmp: string;
  try {
    tmp = Deno.makeTempFileSync({ prefix: "voxpipe-native-stderr-" });
  } catch {
    return fn();
  }
  const saved = c.symbols.dup(2);
  const fd = saved < 0 ? -1 : c.symbols.open(cstr(tmp), O_WRONLY | O_APPEND, 0);
  if (fd < 0) {
    if (saved >= 0) c.symbols.close(saved);
    Deno.removeSync(tmp);
    return fn();
  }
  c.symbols.dup2(fd, 2);
  c.symbols.close(fd);
  try {
    return fn();
  } finally {
    c.symbols.dup2(saved, 2);
    c.symbols.close(saved);
    let text = "";
    try {
      text = Deno.readTextFileSync(tmp);
      Deno.removeSync(tmp);
    } catch { /* nothing to report */ }
    const lines = text.split("\n").filter((l) => l.trim() !== "");
    const alsa = lines.filter((l) => l.startsWith("ALSA lib "));
    const other = lines.filter((l) => !l.startsWith("ALSA lib "));
    const summary = summarized ? undefined : summarizeAlsaLines(alsa);
    if (summary) summarized = true;
    const out = [...(summary ? [summary] : []), ...other];
    if (out.length) {
      try {
        Deno.stderr.writeSync(new TextEncoder().encode(out.join("\n") + "\n"));
      } catch { /* stderr closed */ }
    }
  }
}

let configChecked: string | null | undefined;

/**
 * Why PortAudio would abort the process while listing devices under the current ALSA configuration, or undefined
 * when it would not (or libasound cannot be asked). Checked once per process, before PortAudio first initializes.
 */
export function alsaConfigProblem(): string | undefined {
  if (configChecked !== undefined) return configChecked ?? undefined;
  configChecked = null;
  if (Deno.build.os !== "linux") return undefined;
  let names: string[] | undefined;
  try {
    names = alsaPcmNames();
  } catch {
    return undefined; // libasound missing (loading the binding says so) or no FFI access
  }
  if (names === undefined || names.includes("default") || names.includes("dmix")) return undefined;
  const path = envVar("ALSA_CONFIG_PATH");
  configChecked = `the ALSA configuration${path ? ` (ALSA_CONFIG_PATH=${path})` : ""} defines no "default" PCM ` +
    `device${names.length ? ` (it defines ${names.join(", ")})` : " (it defines no PCM at all)"}, and PortAudio ` +
    `aborts the process listing the devices then: define pcm.!default in it (tests/fixtures/alsa/asound.conf.in ` +
    `is an example)${path ? ", or unset ALSA_CONFIG_PATH" : ""}`;
  return configChecked;
}

/** The ids under `pcm` in the ALSA configuration as libasound loads it (ALSA_CONFIG_PATH, else the system's). */
function alsaPcmNames(): string[] | undefined {
  const lib = Deno.dlopen("libasound.so.2", {
    snd_config_update_r: { parameters: ["buffer", "buffer", "buffer"], result: "i32" },
    snd_config_update_free: { parameters: ["pointer"], result: "i32" },
    snd_config_delete: { parameters: ["pointer"], result: "i32" },
    snd_config_search: { parameters: ["pointer", "buffer", "buffer"], result: "i32" },
    snd_config_iterator_first: { parameters: ["pointer"], result: "pointer" },
    snd_config_iterator_next: { parameters: ["pointer"], result: "pointer" },
    snd_config_iterator_end: { parameters: ["pointer"], result: "pointer" },
    snd_config_iterator_entry: { parameters: ["pointer"], result: "pointer" },
    snd_config_get_id: { parameters: ["pointer", "buffer"], result: "i32" },
  });
  const s = lib.symbols;
  const top = new BigUint64Array(1);
  const update = new BigUint64Array(1);
  try {
    if (s.snd_config_update_r(top, update, null) < 0 || !top[0]) return undefined;
    const topPtr = Deno.UnsafePointer.create(top[0]);
    const node = new BigUint64Array(1);
    const names: string[] = [];
    if (s.snd_config_search(topPtr, cstr("pcm"), node) >= 0 && node[0]) {
      const pcm = Deno.UnsafePointer.create(node[0]);
      const end = s.snd_config_iterator_end(pcm);
      for (
        let i = s.snd_config_iterator_first(pcm);
        i !== null && !Deno.UnsafePointer.equals(i, end);
        i = s.snd_config_iterator_next(i)
      ) {
        const id = new BigUint64Array(1);
        if (s.snd_config_get_id(s.snd_config_iterator_entry(i), id) >= 0 && id[0]) {
          names.push(Deno.UnsafePointerView.getCString(Deno.UnsafePointer.create(id[0])!));
        }
      }
    }
    return names;
  } finally {
    if (top[0]) s.snd_config_delete(Deno.UnsafePointer.create(top[0]));
    if (update[0]) s.snd_config_update_free(Deno.UnsafePointer.create(update[0]));
    lib.close();
  }
}
