/**
 * voxpipe: a plugin-based framework for real-time audio over IP. This module is
 * both the CLI, run when it is the main module, and the library: importing it
 * has no side effects (no clock, socket or timer is created, the CLI does not
 * run), so a user plugin can import {@linkcode definePlugin} and {@linkcode z}
 * from it even while the CLI is loading that plugin.
 *
 * What it exports: the core (frames, the stage and plugin API, option schemas,
 * pipelines, the registry, pipeline files and their runner, the control-plugin
 * API, clocks, logging, errors, Web Streams adapters, stage-testing helpers;
 * see `core/mod.ts`), the built-in plugins ({@linkcode builtinPlugins},
 * {@linkcode builtinControls}), {@linkcode createRegistry}, {@linkcode main},
 * {@linkcode VERSION}, and {@linkcode sendDtmf} (DTMF in a call's RTP stream). The plugin families live in `plugins/<family>/mod.ts`.
 *
 * Run as a CLI:
 *
 * ```sh
 * deno run -A mod.ts --pipeline pipelines/transcode.json --set file=in.mp3 --set out=out.wav
 * ```
 *
 * Or import it as a library (from another project: `import ... from "voxpipe"`, see the README):
 *
 * @example
 * ```ts
 * import { createRegistry, runPipelineFile } from "./mod.ts";
 * const result = await runPipelineFile("pipelines/transcode.json", { registry: createRegistry(), set: ["out=/tmp/x.wav"] });
 * ```
 *
 * @module
 */
import type { ParseArgsConfig } from "node:util";
import { parseSimpleArgs } from "./core/cli_args.ts";
import {
  FileOutput,
  LOG_FORMATS,
  LOG_LEVELS,
  type LogFormat,
  Logger,
  type LogLevel,
  type LogOutput,
  stderrOutput,
} from "./core/log.ts";
import { Registry } from "./core/registry.ts";
import { setSchedulerMode } from "./core/clock.ts";
import { TraceOutput } from "./core/trace_output.ts";
import { PipelineRunner } from "./core/runner.ts";
import { mediaFromEnv } from "./core/net/fast.ts";
import { describeNamed, listPluginLines, pipelineJsonSchema } from "./core/schema.ts";
import { formatCheckReport } from "./core/check.ts";
import { errorReport } from "./core/errors.ts";
import { didYouMean } from "./core/suggest.ts";
import { builtinCodecs, builtinPlugins } from "./plugins/builtin.ts";
import { builtinControls } from "./plugins/controls.ts";
import { builtinServices } from "./plugins/services.ts";
import { lazyModule } from "./core/lazy.ts";

/** Modules loaded when first used (see `lazyModule`). */
const audioDeviceModule = lazyModule<typeof import("./plugins/audio-device/mod.ts")>(
  new URL("./plugins/audio-device/mod.ts", import.meta.url),
);

export * from "./core/mod.ts";
export { builtinCodecs, builtinPlugins } from "./plugins/builtin.ts";
export { builtinControls } from "./plugins/controls.ts";
export { builtinServices } from "./plugins/services.ts";
// DTMF (RFC 4733) for applications: send digits in a call's session; received ones are its `dtmf` events.
// Straight from their modules, not the rtp family's mod.ts: starting the CLI does not load the whole family.
export { type DtmfSendOptions, type DtmfSendResult, sendDtmf, type SentDtmf } from "./plugins/rtp/dtmf_sender.ts";
export type { ReceivedDtmf, ReceivedTelephoneEvent } from "./plugins/rtp/telephone_event.ts";

/** The voxpipe version. */
export const VERSION = "0.1.0";

/**
 * A registry holding every built-in stage and control plugin and the codecs the
 * built-in plugins register (`registry.codecs`). Add your own with
 * `registry.register(plugin)` (its declared codecs come with it) or
 * `registry.codecs.register(codec)`.
 *
 * @example
 * ```ts
 * const registry = createRegistry();
 * registry.get("g711-encoder")?.kind; // "transform"
 * registry.codecs.names(); // ["PCMU", "PCMA"]
 * ```
 */
export function createRegistry(): Registry {
  const registry = new Registry(builtinPlugins, builtinControls, builtinCodecs);
  for (const s of builtinServices) registry.registerService(s);
  return registry;
}

const HELP = `voxpipe ${VERSION}: real-time audio over IP, as pipelines of plugin stages

Usage:
  deno run -A mod.ts --pipeline FILE [--set name=value ...] [options]
  deno run -A mod.ts --check FILE [--set name=value ...]
  deno run -A mod.ts --list-plugins | --describe NAME | --list-devices | --schema

Options:
  -p, --pipeline FILE     run the pipeline file FILE (JSON)
  -s, --set NAME=VALUE    set a parameter the pipeline file declares (repeatable); a relative path
                          given here is relative to the working directory (paths written in the
                          file are relative to the file's directory)
      --check [FILE]      check FILE (or the --pipeline FILE) completely without running it: prints
                          each chain with its stages, formats and modes, and the control plugin's
                          options; opens no socket, no device, no file for writing; exit 0 or 1
      --params            with --pipeline: list the file's parameters and exit
      --list-plugins      list plugins: name, kind, formats, description
      --describe NAME     show a plugin's formats and options (types, ranges, defaults); NAME is a
                          plugin name or the path of a plugin module (./my_plugin.ts)
      --list-devices      list audio devices (needs the naudiodon binding: deno task setup)
      --schema            print the JSON Schema of pipeline files
      --log-level LEVEL   debug, info, warn, error or silent (default: info)
      --log-file FILE     also append log lines to FILE (its directory is created)
      --log-format FMT    voxpipe (default: ISO time, level, message) or python
                          ([LEVEL] - local time - message, as Python's logging writes it)
      --sip-trace[=FILE]  print every SIP message sent and received (time, direction, addresses) to
                          stderr, or append it to FILE; digest responses are masked
      --scheduler MODE    with VOXPIPE_NET=deno: media clock wake-ups: thread (default; best for calls,
                          which also receive) or main (tighter pacing for a process that only sends
                          many streams); the default fast UDP path paces on its MediaLoop instead
  -h, --help              show this help
  -V, --version           print the version

Environment:
  VOXPIPE_NET=fast|deno   the datagram path. Unset (the default): the fast UDP path where it can run,
                          FFI sockets read and written in batches by a MediaLoop that also paces the
                          media (x86_64 Linux with FFI permission; elsewhere Deno.listenDatagram, and
                          the info line at start says why). fast: the same, with a warning when it
                          cannot run. deno: Deno.listenDatagram and the process media clock
  VOXPIPE_SPIN_MS=M       on the fast path: spin the last M ms (0..2) before each paced send
                          instead of sleeping through them, at most half a core per loop: steadier
                          pacing where an idle CPU wakes late (a busy virtual machine's host)
  VOXPIPE_PACER_LEAD_MS=L on the fast path: udp-sink hands each paced packet L ms (0.5..50) early
                          to a native thread (native/pacer.c, built by scripts/setup.sh) that sends it
                          at its due time; the stream leaves L ms later. Steadiest pacing: what the
                          JavaScript thread is doing at a due time no longer shows on the wire
  VOXPIPE_PACER_SPIN_MS=M with VOXPIPE_PACER_LEAD_MS: that thread spins the last M ms (0..2, default 1)
                          before each send, at most VOXPIPE_PACER_BUDGET of a core
  VOXPIPE_PACER_BUDGET=B  with VOXPIPE_PACER_LEAD_MS: the share of a core (0.05..1, default 0.25) that
                          thread may spin; 1 for hundreds of streams, whose packets are due a fraction
                          of a ms apart (it then takes a whole core). Each media worker
                          (VOXPIPE_MEDIA_WORKERS) has a pacer thread of its own, with this budget
  VOXPIPE_RESAMPLE_KERNEL=K
                          the resampler's loops: native (C, native/resample.c, built by
                          scripts/setup.sh; the default with AVX-512 for streams of 2 minutes or
                          more or of unknown length), wasm (the default elsewhere; the same output,
                          bit for bit) or js (float64 sums, within 1 LSB)

Exit status: 0 when the pipeline (or call) completed, 1 when it failed, 2 on a usage error,
130 when a call was interrupted (Ctrl-C).
Ctrl-C (SIGINT) or SIGTERM stops the pipeline cleanly: sinks finalize, calls hang up.`;

/**
 * The command-line options {@linkcode main} accepts, as a `node:util` `parseArgs` configuration (`--help` lists
 * every one of them; a test holds them to it).
 */
export const CLI_OPTIONS = {
  pipeline: { type: "string", short: "p" },
  set: { type: "string", short: "s", multiple: true },
  check: { type: "boolean" },
  params: { type: "boolean" },
  "list-plugins": { type: "boolean" },
  describe: { type: "string" },
  "list-devices": { type: "boolean" },
  schema: { type: "boolean" },
  "log-level": { type: "string" },
  "log-file": { type: "string" },
  "log-format": { type: "string" },
  scheduler: { type: "string" },
  "sip-trace": { type: "string" },
  help: { type: "boolean", short: "h" },
  version: { type: "boolean", short: "V" },
} as const satisfies ParseArgsConfig["options"];

/** What parseArgs returns for {@linkcode CLI_OPTIONS}. */
type ParsedCli = {
  values: {
    [K in keyof typeof CLI_OPTIONS]?: (typeof CLI_OPTIONS)[K] extends { multiple: true } ? string[]
      : (typeof CLI_OPTIONS)[K]["type"] extends "string" ? string
      : boolean;
  };
  positionals: string[];
};

/** A parseArgs error as one line, with the closest flag when an unknown one was misspelt. */
function usageError(e: unknown): string {
  const msg = e instanceof Error ? e.message : String(e);
  const unknown = /^Unknown option '(-{1,2}[^']*)'/.exec(msg);
  if (!unknown) return msg;
  const flags = Object.keys(CLI_OPTIONS).map((k) => `--${k}`);
  const flag = unknown[1].split("=")[0];
  return `Unknown option '${flag}'${didYouMean(flag, flags, (f) => f)}`;
}

function fail(msg: string, code = 1): number {
  console.error(`voxpipe: ${msg}`);
  return code;
}

/**
 * The command-line entry point. Returns the exit code.
 *
 * @param args command-line arguments (without the program name)
 */
export async function main(args: string[]): Promise<number> {
  let parsed;
  // A bare --sip-trace means stderr ("-"); --sip-trace=FILE names a file.
  const argv = args.map((a) => a === "--sip-trace" ? "--sip-trace=-" : a);
  try {
    // Plain arguments are parsed without loading node:util (start-up time); parseArgs parses the rest and says
    // what is wrong.
    parsed = parseSimpleArgs(argv, CLI_OPTIONS, true) as ParsedCli | undefined ??
      (await import("node:util")).parseArgs({ args: argv, options: CLI_OPTIONS, allowPositionals: true, strict: true });
  } catch (e) {
    return fail(`${usageError(e)}\nTry --help.`, 2);
  }
  const v = parsed.values;
  // The only positional argument: the file of `--check FILE`.
  if (parsed.positionals.length > (v.check ? 1 : 0)) {
    const extra = parsed.positionals[v.check ? 1 : 0];
    return fail(`unexpected argument "${extra}" (a pipeline file is given with --pipeline FILE)\nTry --help.`, 2);
  }
  if (v.check && parsed.positionals.length && v.pipeline) {
    return fail("--check FILE and --pipeline FILE: give the file once", 2);
  }
  const pipelineFile = v.check ? parsed.positionals[0] ?? v.pipeline : v.pipeline;
  if (v.help) {
    console.log(HELP);
    return 0;
  }
  if (v.version) {
    console.log(VERSION);
    return 0;
  }
  const registry = createRegistry();
  if (v["list-plugins"]) {
    for (const line of listPluginLines(registry)) console.log(line);
    return 0;
  }
  if (v.describe !== undefined) {
    try {
      console.log(await describeNamed(registry, v.describe));
    } catch (e) {
      return fail(e instanceof Error ? e.message : String(e), 2);
    }
    return 0;
  }
  if (v.schema) {
    console.log(JSON.stringify(pipelineJsonSchema(registry), null, 2));
    return 0;
  }
  if (v["list-devices"]) {
    try {
      const { formatDeviceList, listDevices } = await audioDeviceModule();
      for (const line of formatDeviceList(listDevices())) console.log(line);
      return 0;
    } catch (e) {
      return fail(e instanceof Error ? e.message : String(e));
    }
  }
  const level = (v["log-level"] ?? "info") as LogLevel;
  if (!LOG_LEVELS.includes(level)) {
    return fail(`--log-level: expected one of ${LOG_LEVELS.join(", ")}, got "${level}"`, 2);
  }
  const format = (v["log-format"] ?? "voxpipe") as LogFormat;
  if (!LOG_FORMATS.includes(format)) {
    return fail(`--log-format: expected one of ${LOG_FORMATS.join(", ")}, got "${format}"`, 2);
  }
  if (v.scheduler !== undefined) {
    if (v.scheduler !== "thread" && v.scheduler !== "main") {
      return fail(`--scheduler: expected thread or main, got "${v.scheduler}"`, 2);
    }
    setSchedulerMode(v.scheduler);
  }
  if (!pipelineFile) {
    return fail(
      v.check
        ? "--check: which file? --check FILE (or --check --pipeline FILE)"
        : "missing --pipeline FILE (or one of --check FILE, --list-plugins, --describe, --help)",
      2,
    );
  }
  // A --set without "=" is a usage error (exit 2), found before the file is read.
  const badSet = (v.set ?? []).find((s) => s.indexOf("=") <= 0);
  if (badSet !== undefined) return fail(`--set ${badSet}: expected name=value\nTry --help.`, 2);
  const outputs: LogOutput[] = [stderrOutput];
  let fileOut: FileOutput | undefined;
  if (v["log-file"]) {
    try {
      fileOut = new FileOutput(v["log-file"]);
      outputs.push(fileOut);
    } catch (e) {
      return fail(`--log-file ${v["log-file"]}: ${e instanceof Error ? e.message : e}`, 2);
    }
  }
  let trace: TraceOutput | undefined;
  if (v["sip-trace"] !== undefined) {
    try {
      trace = new TraceOutput(v["sip-trace"]);
    } catch (e) {
      fileOut?.close();
      return fail(`--sip-trace=${v["sip-trace"]}: ${e instanceof Error ? e.message : e}`, 2);
    }
  }
  const log = new Logger({ level, outputs, format });
  let media;
  try {
    media = mediaFromEnv();
  } catch (e) {
    fileOut?.close();
    trace?.close();
    return fail(e instanceof Error ? e.message : String(e), 2);
  }
  if (media.fallback) log.warn(media.description);
  else log.info(media.description);
  if (media.clock && v.scheduler !== undefined) {
    log.warn(
      `--scheduler ${v.scheduler} has no effect: the fast UDP path paces on its MediaLoop (VOXPIPE_NET=deno for the ` +
        "process media clock and its schedulers)",
    );
  }
  const abort = new AbortController();
  const signals: Deno.Signal[] = ["SIGINT", "SIGTERM"];
  let interrupts = 0;
  let firstInterrupt = 0;
  const onSignal = () => {
    // One Ctrl-C in a terminal reaches us twice under `deno task`: the terminal signals the whole process group and
    // `deno task` passes its own copy on. A repeat within a second is that same Ctrl-C, not a request to hurry.
    if (interrupts > 0 && performance.now() - firstInterrupt < 1000) return;
    if (interrupts++ === 0) firstInterrupt = performance.now();
    if (interrupts > 1) {
      log.warn("second interrupt: exiting without waiting");
      Deno.exit(130);
    }
    log.info("interrupt received: stopping (sinks finalize); press Ctrl-C again to exit at once");
    abort.abort(new DOMException("interrupted", "AbortError"));
  };
  for (const s of signals) Deno.addSignalListener(s, onSignal);
  try {
    const runner = await PipelineRunner.load(pipelineFile, {
      registry,
      set: v.set ?? [],
      log,
      signal: abort.signal,
      trace: trace && ((text) => trace.write(text)),
      net: media.net,
      clock: media.clock,
    });
    if (v.check) {
      for (const line of formatCheckReport(await runner.check())) console.log(line);
      return 0;
    }
    if (v.params) {
      const decl = runner.file.parameters;
      for (const [name, d] of Object.entries(decl)) {
        console.log(
          `${name}  ${d.type}, ${d.default === undefined ? "required" : `default ${JSON.stringify(d.default)}`}${
            d.description ? ` — ${d.description}` : ""
          }`,
        );
      }
      return 0;
    }
    const result = await runner.run();
    if (result.code !== 0) return fail(result.reason ?? `failed with exit code ${result.code}`, result.code);
    return 0;
  } catch (e) {
    return fail(e instanceof Error ? e.message : String(e));
  } finally {
    for (const s of signals) Deno.removeSignalListener(s, onSignal);
    fileOut?.close();
    trace?.close();
  }
}

// No top-level await: a user plugin that imports this module while the CLI loads it must find it evaluated (with
// `await` here, the plugin's import would wait for main(), which waits for the plugin: a deadlock).
if (import.meta.main) {
  let settled = false;
  // Safety net: when nothing is left to run (no timer, socket, file read or thread) but main() has not finished,
  // the pipeline waits for something that can never come (a bus nothing publishes on, behind a plugin the start-up
  // checks cannot see into). Deno would exit 0 there, as if it had completed: say so and fail instead.
  globalThis.addEventListener("beforeunload", () => {
    if (settled) return;
    console.error(
      "voxpipe: the pipeline stalled: it waits for something nothing will ever produce (e.g. a bus-source or mixer " +
        "reading a bus that no chain publishes on) and nothing else is left to run",
    );
    Deno.exit(1);
  });
  main(Deno.args).then(
    (code) => {
      settled = true;
      Deno.exit(code);
    },
    (e) => {
      settled = true;
      // Its stack, unless it says no descriptor is left: mapping a stack then makes Deno panic (errorReport).
      console.error(`voxpipe: ${errorReport(e)}`);
      Deno.exit(1);
    },
  );
}
