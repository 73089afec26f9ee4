/**
 * Lazy loader for naudiodon's native PortAudio binding, with errors that say
 * exactly what is missing and how to fix it.
 *
 * naudiodon's own `index.js` cannot be used under Deno: it requires
 * `segfault-handler`, a legacy nan addon Deno refuses to load. Its N-API
 * binding (`build/Release/naudiodon.node`) loads fine through
 * `createRequire`, so this module loads that file directly and types the few
 * calls it offers: `getDevices()`, `getHostAPIs()` and `create(options)`, which
 * returns a stream object with `start()`, `write(buffer)`, `read(bytes)` and
 * `quit("WAIT" | "ABORT")`.
 *
 * Nothing here touches the native module at import time: it is loaded on the
 * first {@linkcode loadBinding} call (by a device stage's `create`, or by
 * `--list-devices`), so the rest of voxpipe works on machines where the binding
 * was never built.
 *
 * Environment:
 * - `VOXPIPE_NAUDIODON_PATH`: path of the `naudiodon.node` file to load
 *   (default: `node_modules/naudiodon/build/Release/naudiodon.node` of the
 *   project, else of the current directory).
 * - `VOXPIPE_NATIVE_STDOUT`: the binding prints a few lines with C `printf`
 *   (PortAudio version, stream options, "Finishing output ..."). By default
 *   (`stderr`) C's `stdout` stream is pointed at standard error when the binding
 *   is loaded, so that chatter never mixes with data a CLI writes to standard
 *   output. `null` discards it; `keep` leaves C's `stdout` alone.
 * - `VOXPIPE_NATIVE_STDERR`: each PortAudio initialization (listing devices,
 *   opening a stream) makes libasound print an `ALSA lib ...` line per PCM it
 *   cannot open, dozens on a machine without a sound card. By default they are
 *   captured and summarized in one line, once per process (`_alsa.ts`); `keep`
 *   lets them through.
 *
 * An ALSA configuration without a `default` PCM (an empty `ALSA_CONFIG_PATH`
 * file) makes PortAudio abort the process: the binding refuses it first with an
 * {@linkcode AudioBindingError} (`alsa-config`) that says what to define.
 *
 * @example
 * ```ts
 * import { formatDeviceList, listDevices } from "./binding.ts";
 * for (const line of formatDeviceList(listDevices())) console.log(line);
 * ```
 *
 * @module
 */
import { dirname, join, resolve } from "node:path";
import { envVar } from "../../core/env.ts";
import { fileUrlToPath } from "../../core/path.ts";
import { alsaConfigProblem, quietNative } from "./_alsa.ts";

/** A device as the native `getDevices()` reports it. */
export interface NativeDeviceInfo {
  /** PortAudio device index. */
  id: number;
  /** Device name (for ALSA: the PCM name, e.g. `default`, `hw:0,0`, or the card's description). */
  name: string;
  /** Maximum capture channels (0: not an input). */
  maxInputChannels: number;
  /** Maximum playback channels (0: not an output). */
  maxOutputChannels: number;
  /** Default sample rate in Hz. */
  defaultSampleRate: number;
  /** Host API name, e.g. `ALSA`. */
  hostAPIName: string;
}

/** One host API as the native `getHostAPIs()` reports it. */
export interface NativeHostApi {
  /** Host API index. */
  id: number;
  /** Name, e.g. `ALSA`. */
  name: string;
  /** Type, e.g. `ALSA`, `OSS`, `CoreAudio`. */
  type: string;
  /** Number of devices of this host API. */
  deviceCount: number;
  /** Default input device index (4294967295: none). */
  defaultInput: number;
  /** Default output device index (4294967295: none). */
  defaultOutput: number;
}

/** What the native `getHostAPIs()` returns. */
export interface NativeHostApis {
  /** Index of the default host API. */
  defaultHostAPI: number;
  /** Every host API. */
  HostAPIs: NativeHostApi[];
}

/** Options of one direction of a native stream (`inOptions` / `outOptions`). */
export interface NativeDirectionOptions {
  /** Interleaved channels. */
  channelCount: number;
  /** 1: float32; 8, 16, 24, 32: integer bits. voxpipe uses 16. */
  sampleFormat: number;
  /** Sample rate in Hz (the same for both directions). */
  sampleRate: number;
  /** PortAudio device index; -1: the default device. */
  deviceId: number;
  /** True: a PortAudio status flag (underflow, overflow) is returned by the next read/write instead of printed. */
  closeOnError: boolean;
  /** Frames per PortAudio callback (the larger of both directions is used). */
  framesPerBuffer: number;
  /** Chunks the native queue holds before `write` (or the device callback, for input) waits. */
  maxQueue: number;
}

/** The stream object returned by the native `create()`. */
export interface NativeAudioIO {
  /** Starts the PortAudio stream (throws on failure). */
  start(): void;
  /**
   * Queues bytes for playback (copied at once). Resolves when they are queued,
   * which waits while `maxQueue` chunks are already waiting; resolves to an
   * error string when PortAudio reported a status flag since the last call.
   */
  write(chunk: Uint8Array): Promise<string | undefined>;
  /** Reads exactly `bytes` captured bytes (waits for them), or an error string, or `finished` after quit. */
  read(bytes: number): Promise<{ buf?: Uint8Array; finished?: boolean; err?: string }>;
  /** Stops and closes the stream: `WAIT` plays what is queued first, `ABORT` stops at once after the queue. */
  quit(mode: "WAIT" | "ABORT"): Promise<void>;
}

/** The native module's exports. */
export interface NaudiodonBinding {
  /** Lists PortAudio devices (initializes and terminates PortAudio). */
  getDevices(): NativeDeviceInfo[];
  /** Lists host APIs and their default devices. */
  getHostAPIs(): NativeHostApis;
  /** Opens a stream (input, output, or both on one device clock). Throws on failure. */
  create(options: { inOptions?: NativeDirectionOptions; outOptions?: NativeDirectionOptions }): NativeAudioIO;
}

/** Why the binding could not be loaded. */
export type BindingProblem =
  | "not-installed"
  | "not-built"
  | "libasound-missing"
  | "portaudio-missing"
  | "permission"
  | "load-failed"
  | "alsa-config";

/**
 * The native binding is unavailable. The message says what is missing and
 * the command that fixes it; `problem` classifies it for programs.
 */
export class AudioBindingError extends Error {
  /** What went wrong. */
  readonly problem: BindingProblem;
  /** The `.node` file that was (or would have been) loaded. */
  readonly path: string;
  /**
   * Creates the error.
   *
   * @param problem classification
   * @param path the binding path
   * @param message what is missing and how to fix it
   * @param cause the underlying error, if any
   */
  constructor(problem: BindingProblem, path: string, message: string, cause?: unknown) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = "AudioBindingError";
    this.problem = problem;
    this.path = path;
  }
}

/** Options for {@linkcode loadBinding}. */
export interface LoadOptions {
  /** Explicit path of `naudiodon.node` (overrides `VOXPIPE_NAUDIODON_PATH`). */
  path?: string;
}

const SETUP_HINT = 'run "deno task setup" (needs python3, make, g++ and npm_config_nodedir=/usr)';
const RELATIVE = join("node_modules", "naudiodon", "build", "Release", "naudiodon.node");

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

/** The project root (two levels above this file) when loaded from a local path. */
function projectRoot(): string | undefined {
  if (!import.meta.url.startsWith("file:")) return undefined;
  return resolve(dirname(fileUrlToPath(import.meta.url)), "..", "..");
}

/**
 * Where the binding is looked for, in order: the explicit path, then
 * `VOXPIPE_NAUDIODON_PATH`, then the project's and the current directory's
 * `node_modules`. Returns the path to load and whether it was given explicitly.
 */
export function bindingPath(opts: LoadOptions = {}): { path: string; explicit: "option" | "env" | undefined } {
  if (opts.path) return { path: resolve(opts.path), explicit: "option" };
  const env = envVar("VOXPIPE_NAUDIODON_PATH");
  if (env) return { path: resolve(env), explicit: "env" };
  const candidates: string[] = [];
  const root = projectRoot();
  if (root) candidates.push(join(root, RELATIVE));
  try {
    candidates.push(join(Deno.cwd(), RELATIVE));
  } catch { /* no read permission for cwd */ }
  // Prefer a candidate whose package is installed, so the error names the right place.
  const pkgOf = (p: string) => resolve(dirname(p), "..", "..", "package.json");
  return {
    path: candidates.find(exists) ?? candidates.find((p) => exists(pkgOf(p))) ?? candidates[0],
    explicit: undefined,
  };
}

function which(cmd: string): boolean {
  const path = envVar("PATH") ?? "/usr/local/bin:/usr/bin:/bin";
  return path.split(":").some((d) => d && exists(join(d, cmd)));
}

/** What the build of the binding needs that this machine lacks, with the Debian packages that provide it. */
export function missingBuildTools(): { tools: string[]; packages: string[] } {
  const tools: string[] = [];
  const packages: string[] = [];
  for (const [cmd, pkg] of [["python3", "python3"], ["make", "make"], ["g++", "g++"]]) {
    if (!which(cmd)) {
      tools.push(cmd);
      packages.push(pkg);
    }
  }
  const nodedir = envVar("npm_config_nodedir") ?? "/usr";
  if (!exists(join(nodedir, "include", "node", "node_api.h"))) {
    tools.push(`Node.js headers (${join(nodedir, "include", "node")})`);
    packages.push("nodejs (with headers) or libnode-dev");
  }
  return { tools, packages };
}

/**
 * Turns a failure to load the binding into an {@linkcode AudioBindingError}
 * that names what is missing. Exported for tests.
 */
export function classifyLoadError(path: string, error: unknown): AudioBindingError {
  const msg = error instanceof Error ? error.message : String(error);
  const name = error instanceof Error ? error.name : "";
  if (/libasound\.so/.test(msg)) {
    return new AudioBindingError(
      "libasound-missing",
      path,
      "libasound.so.2 missing (the ALSA library PortAudio needs): apt-get install libasound2 " +
        "(libasound2t64 on Debian 13 / Ubuntu 24.04)",
      error,
    );
  }
  if (/libportaudio\.so/.test(msg)) {
    return new AudioBindingError(
      "portaudio-missing",
      path,
      `libportaudio.so.2 missing next to the naudiodon binding (${dirname(path)}): the build is incomplete or was ` +
        `moved; ${SETUP_HINT}`,
      error,
    );
  }
  if (name === "NotCapable" || name === "PermissionDenied" || /--allow-ffi|ffi access/i.test(msg)) {
    return new AudioBindingError(
      "permission",
      path,
      "loading the naudiodon native binding needs FFI permission: run deno with --allow-ffi (or -A)",
      error,
    );
  }
  if (/invalid ELF header|wrong ELF class|file too short|not a dynamic executable|exec format/i.test(msg)) {
    return new AudioBindingError(
      "load-failed",
      path,
      `${path} is not a native module for this machine (${msg.split("\n")[0]}): ${SETUP_HINT} to rebuild it`,
      error,
    );
  }
  return new AudioBindingError(
    "load-failed",
    path,
    `could not load the naudiodon native binding ${path}: ${msg.split("\n")[0]}`,
    error,
  );
}

/**
 * Explains a missing `naudiodon.node`: package not installed, or installed but
 * not built (and what the build lacks here). Exported for tests.
 */
export function missingBindingError(path: string, explicit: "option" | "env" | undefined): AudioBindingError {
  const { tools, packages } = missingBuildTools();
  const lacking = tools.length
    ? `; this machine lacks ${tools.join(", ")} (apt-get install ${packages.join(" ")})`
    : "";
  if (explicit) {
    const via = explicit === "env" ? " (set by VOXPIPE_NAUDIODON_PATH)" : "";
    return new AudioBindingError(
      "not-built",
      path,
      `naudiodon native binding not found at ${path}${via}: fix the path, or unset it and ${SETUP_HINT}${lacking}`,
    );
  }
  const pkg = resolve(dirname(path), "..", "..");
  if (!exists(join(pkg, "package.json"))) {
    return new AudioBindingError(
      "not-installed",
      path,
      `naudiodon is not installed (no ${pkg}): ${SETUP_HINT}${lacking}`,
    );
  }
  return new AudioBindingError(
    "not-built",
    path,
    `naudiodon native binding not built (${path} is missing): ${SETUP_HINT}${lacking}`,
  );
}

let nativeStdoutDone = false;

/**
 * Points C's `stdout` at standard error, or /dev/null (see the module doc), best effort:
 * needs FFI permission (which loading the binding needs anyway) and glibc.
 */
function redirectNativeStdout(): void {
  if (nativeStdoutDone) return;
  nativeStdoutDone = true;
  const mode = envVar("VOXPIPE_NATIVE_STDOUT") ?? "stderr";
  if ((mode !== "stderr" && mode !== "null") || Deno.build.os !== "linux") return;
  try {
    const libc = Deno.dlopen("libc.so.6", {
      dlsym: { parameters: ["pointer", "buffer"], result: "pointer" },
      fdopen: { parameters: ["i32", "buffer"], result: "pointer" },
      fopen: { parameters: ["buffer", "buffer"], result: "pointer" },
      setvbuf: { parameters: ["pointer", "pointer", "i32", "usize"], result: "i32" },
      fflush: { parameters: ["pointer"], result: "i32" },
      memcpy: { parameters: ["pointer", "buffer", "usize"], result: "pointer" },
    });
    const cstr = (s: string) => new TextEncoder().encode(s + "\0");
    const slot = libc.symbols.dlsym(null, cstr("stdout")); // address of the `FILE *stdout` variable
    if (!slot) return;
    const err = mode === "null" ? libc.symbols.fopen(cstr("/dev/null"), cstr("w")) : libc.symbols.fdopen(2, cstr("w"));
    if (!err) return;
    libc.symbols.setvbuf(err, null, 1, /* _IOLBF */ 0n);
    libc.symbols.fflush(null);
    const value = new BigUint64Array([BigInt(Deno.UnsafePointer.value(err))]);
    libc.symbols.memcpy(slot, new Uint8Array(value.buffer), 8n);
  } catch {
    // No FFI permission or not glibc: the native lines stay on stdout.
  }
}

const loaded = new Map<string, NaudiodonBinding>();

/**
 * Loads the native binding (once per path) or throws an
 * {@linkcode AudioBindingError} saying what is missing and how to fix it.
 *
 * @example
 * ```ts
 * const binding = loadBinding();
 * console.log(binding.getDevices().length);
 * ```
 */
export function loadBinding(opts: LoadOptions = {}): NaudiodonBinding {
  const { path, explicit } = bindingPath(opts);
  const cached = loaded.get(path);
  if (cached) return cached;
  if (!path || !exists(path)) throw missingBindingError(path ?? RELATIVE, explicit);
  redirectNativeStdout();
  let mod: NaudiodonBinding;
  try {
    // node:module is loaded here, on first use, not when the plugin registers.
    const { createRequire } = process.getBuiltinModule("node:module") as typeof import("node:module");
    const require = createRequire(import.meta.url);
    mod = require(path) as NaudiodonBinding;
  } catch (e) {
    throw classifyLoadError(path, e);
  }
  if (typeof mod?.create !== "function" || typeof mod?.getDevices !== "function") {
    throw new AudioBindingError(
      "load-failed",
      path,
      `${path} loaded but is not the naudiodon binding (no create/getDevices): ${SETUP_HINT}`,
    );
  }
  // Every call that initializes PortAudio: refused under an ALSA configuration PortAudio would abort on, and
  // with ALSA's start-up chatter summarized.
  const guarded = <T>(fn: () => T): T => {
    const problem = alsaConfigProblem();
    if (problem) throw new AudioBindingError("alsa-config", path, problem);
    return quietNative(fn);
  };
  const binding: NaudiodonBinding = {
    getDevices: () => guarded(() => mod.getDevices()),
    getHostAPIs: () => guarded(() => mod.getHostAPIs()),
    create: (options) => guarded(() => mod.create(options)),
  };
  loaded.set(path, binding);
  return binding;
}

/** An audio device, for `--list-devices` and device selection. */
export interface AudioDeviceInfo {
  /** PortAudio device index (usable as the `device` option). */
  id: number;
  /** Device name (a substring of it is usable as the `device` option). */
  name: string;
  /** Host API, e.g. `ALSA`. */
  hostApi: string;
  /** Maximum capture channels (0: cannot capture). */
  maxInputChannels: number;
  /** Maximum playback channels (0: cannot play). */
  maxOutputChannels: number;
  /** Default sample rate in Hz. */
  defaultSampleRate: number;
  /** True for the default input device. */
  defaultInput: boolean;
  /** True for the default output device. */
  defaultOutput: boolean;
}

const NO_DEVICE = 0xffffffff;
let deviceCache: { path: string; devices: AudioDeviceInfo[] } | undefined;

/**
 * Lists the audio devices PortAudio sees (loading the binding on first use).
 * The list is enumerated once per process and cached; pass `refresh` to
 * enumerate again (hot-plugged devices). Throws an {@linkcode AudioBindingError}
 * when the binding is unavailable.
 *
 * @example
 * ```ts
 * const out = listDevices().filter((d) => d.maxOutputChannels > 0);
 * ```
 */
export function listDevices(opts: LoadOptions & { refresh?: boolean } = {}): AudioDeviceInfo[] {
  const binding = loadBinding(opts);
  const path = bindingPath(opts).path;
  if (deviceCache && deviceCache.path === path && !opts.refresh) return deviceCache.devices;
  const raw = binding.getDevices();
  let defIn = -1;
  let defOut = -1;
  try {
    const apis = binding.getHostAPIs();
    const def = apis.HostAPIs.find((h) => h.id === apis.defaultHostAPI);
    if (def && def.defaultInput !== NO_DEVICE) defIn = def.defaultInput;
    if (def && def.defaultOutput !== NO_DEVICE) defOut = def.defaultOutput;
  } catch { /* defaults unknown */ }
  const devices = raw.map((d) => ({
    id: d.id,
    name: d.name,
    hostApi: d.hostAPIName,
    maxInputChannels: d.maxInputChannels,
    maxOutputChannels: d.maxOutputChannels,
    defaultSampleRate: d.defaultSampleRate,
    defaultInput: d.id === defIn,
    defaultOutput: d.id === defOut,
  }));
  deviceCache = { path, devices };
  return devices;
}

/**
 * Printable lines for `--list-devices`: a header, then one line per device
 * with its id, in/out channels, default rate, host API and name, marking the
 * defaults. Without an argument it lists the devices itself
 * ({@linkcode listDevices}, which throws an {@linkcode AudioBindingError} when
 * the binding is unavailable).
 *
 * @example
 * ```ts
 * formatDeviceList().forEach((l) => console.log(l));
 * // "  id  in  out  rate    api   name"
 * // "   2 128  128  44100   ALSA  default  (default input, default output)"
 * ```
 */
export function formatDeviceList(devices: AudioDeviceInfo[] = listDevices()): string[] {
  if (devices.length === 0) {
    return ["no audio devices found (PortAudio sees none: no sound card, or no ALSA configuration for one)"];
  }
  const apiWidth = Math.max(3, ...devices.map((d) => d.hostApi.length));
  const lines = [
    `${"id".padStart(4)} ${"in".padStart(4)} ${"out".padStart(4)}  ${"rate".padEnd(6)}  ${
      "api".padEnd(apiWidth)
    }  name`,
  ];
  for (const d of devices) {
    const marks = [d.defaultInput ? "default input" : "", d.defaultOutput ? "default output" : ""].filter(Boolean);
    lines.push(
      `${String(d.id).padStart(4)} ${String(d.maxInputChannels).padStart(4)} ${
        String(d.maxOutputChannels).padStart(4)
      }  ${String(d.defaultSampleRate).padEnd(6)}  ${d.hostApi.padEnd(apiWidth)}  ${d.name}${
        marks.length ? `  (${marks.join(", ")})` : ""
      }`,
    );
  }
  return lines;
}

/** The direction a device is wanted for. */
export type Direction = "input" | "output";

/** No device matches the `device` option (or there is no default one). */
export class DeviceNotFoundError extends Error {
  /**
   * Creates the error.
   *
   * @param message what was asked, and the devices there are
   */
  constructor(message: string) {
    super(message);
    this.name = "DeviceNotFoundError";
  }
}

/**
 * Picks the device for `spec`: a numeric id (number or digits), else a name:
 * an exact (case-insensitive) match, else the only device whose name contains
 * it; undefined means the default device. Only devices with channels in the
 * wanted direction qualify. Throws a {@linkcode DeviceNotFoundError} that lists
 * the candidates.
 *
 * @example
 * ```ts
 * const dev = resolveDevice("USB", "output", listDevices());
 * ```
 */
export function resolveDevice(
  spec: string | number | undefined,
  direction: Direction,
  devices: AudioDeviceInfo[],
): AudioDeviceInfo {
  const usable = devices.filter((d) => direction === "input" ? d.maxInputChannels > 0 : d.maxOutputChannels > 0);
  const listing = usable.length
    ? `${direction} devices: ${usable.map((d) => `${d.id} "${d.name}"`).join(", ")}`
    : `PortAudio sees no ${direction} device`;
  const hint = `(list them with --list-devices)`;
  if (usable.length === 0) {
    throw new DeviceNotFoundError(
      `no audio ${direction} device: PortAudio sees none (no sound card, or no ALSA configuration for one)` +
        (spec === undefined || spec === "" ? "" : `, so "${spec}" cannot be opened`),
    );
  }
  if (spec === undefined || spec === "") {
    const def = usable.find((d) => direction === "input" ? d.defaultInput : d.defaultOutput);
    if (def) return def;
    throw new DeviceNotFoundError(
      `no default audio ${direction} device; set "device" to one of the ${listing} ${hint}`,
    );
  }
  if (typeof spec === "number" || /^\d+$/.test(spec.trim())) {
    const id = Number(spec);
    const dev = devices.find((d) => d.id === id);
    if (!dev) throw new DeviceNotFoundError(`no audio device with id ${id}; ${listing} ${hint}`);
    if (!usable.includes(dev)) {
      throw new DeviceNotFoundError(
        `audio device ${id} "${dev.name}" has no ${direction} channels; ${listing} ${hint}`,
      );
    }
    return dev;
  }
  const want = spec.toLowerCase();
  const exact = usable.filter((d) => d.name.toLowerCase() === want);
  if (exact.length >= 1) return exact[0];
  const partial = usable.filter((d) => d.name.toLowerCase().includes(want));
  if (partial.length === 1) return partial[0];
  if (partial.length > 1) {
    throw new DeviceNotFoundError(
      `audio ${direction} device "${spec}" is ambiguous: it matches ${
        partial.map((d) => `${d.id} "${d.name}"`).join(", ")
      }; use the id or a longer part of the name`,
    );
  }
  throw new DeviceNotFoundError(`no audio ${direction} device matches "${spec}"; ${listing} ${hint}`);
}
