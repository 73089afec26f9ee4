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
import { parseArgs } from "node:util";
import { FileOutput, LOG_LEVELS, Logger, type LogLevel, type LogOutput, stderrOutput } from "./core/log.ts";
import { Registry } from "./core/registry.ts";
import { setSchedulerMode } from "./core/clock.ts";
import { TraceOutput } from "./core/trace_output.ts";
import { PipelineRunner } from "./core/runner.ts";
import { describePlugin, listPluginLines, pipelineJsonSchema } from "./core/schema.ts";
import { builtinCodecs, builtinPlugins } from "./plugins/builtin.ts";
import { builtinControls } from "./plugins/controls.ts";

export * from "./core/mod.ts";
export { builtinCodecs, builtinPlugins } from "./plugins/builtin.ts";
export { builtinControls } from "./plugins/controls.ts";
// DTMF (RFC 4733) for applications: send digits in a call's session; received ones are its `dtmf` events.
export {
  type DtmfSendOptions,
  type DtmfSendResult,
  type ReceivedDtmf,
  type ReceivedTelephoneEvent,
  sendDtmf,
  type SentDtmf,
} from "./plugins/rtp/mod.ts";

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
  return new Registry(builtinPlugins, builtinControls, builtinCodecs);
}

const HELP = `voxpipe ${VERSION}: real-time audio over IP, as pipelines of plugin stages

Usage:
  deno run -A mod.ts --pipeline FILE [--set name=value ...] [options]
  deno run -A mod.ts --list-plugins | --describe NAME | --list-devices | --schema

Options:
  -p, --pipeline FILE     run the pipeline file FILE (JSON)
  -s, --set NAME=VALUE    set a parameter the pipeline file declares (repeatable)
      --params            with --pipeline: list the file's parameters and exit
      --list-plugins      list plugins: name, kind, formats, description
      --describe NAME     show a plugin's formats and options (types, ranges, defaults)
      --list-devices      list audio devices (needs the naudiodon binding: deno task setup)
      --schema            print the JSON Schema of pipeline files
      --log-level LEVEL   debug, info, warn, error or silent (default: info)
      --log-file FILE     also append log lines to FILE
      --sip-trace[=FILE]  print every SIP message sent and received (time, direction, addresses) to
                          stderr, or append it to FILE; digest responses are masked
      --scheduler MODE    media clock wake-ups: thread (default; best for calls, which also receive)
                          or main (tighter pacing for a process that only sends many streams)
  -h, --help              show this help
  -V, --version           print the version

Exit status: 0 when the pipeline (or call) completed, 1 when it failed, 2 on a usage error.
Ctrl-C (SIGINT) or SIGTERM stops the pipeline cleanly: sinks finalize, calls hang up.`;

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
  try {
    parsed = parseArgs({
      // A bare --sip-trace means stderr ("-"); --sip-trace=FILE names a file.
      args: args.map((a) => a === "--sip-trace" ? "--sip-trace=-" : a),
      options: {
        pipeline: { type: "string", short: "p" },
        set: { type: "string", short: "s", multiple: true },
        params: { type: "boolean" },
        "list-plugins": { type: "boolean" },
        describe: { type: "string" },
        "list-devices": { type: "boolean" },
        schema: { type: "boolean" },
        "log-level": { type: "string" },
        "log-file": { type: "string" },
        scheduler: { type: "string" },
        "sip-trace": { type: "string" },
        help: { type: "boolean", short: "h" },
        version: { type: "boolean", short: "V" },
      },
      allowPositionals: false,
      strict: true,
    });
  } catch (e) {
    return fail(`${e instanceof Error ? e.message : e}\nTry --help.`, 2);
  }
  const v = parsed.values;
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
    const p = registry.get(v.describe) ?? registry.listControls().find((c) => c.name === v.describe);
    if (!p) {
      const known = [...registry.list(), ...registry.listControls()].map((x) => x.name).join(", ");
      return fail(`no plugin named "${v.describe}"; known plugins: ${known}`, 2);
    }
    console.log(describePlugin(p));
    return 0;
  }
  if (v.schema) {
    console.log(JSON.stringify(pipelineJsonSchema(registry), null, 2));
    return 0;
  }
  if (v["list-devices"]) {
    try {
      const { formatDeviceList, listDevices } = await import("./plugins/audio-device/mod.ts");
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
  if (v.scheduler !== undefined) {
    if (v.scheduler !== "thread" && v.scheduler !== "main") {
      return fail(`--scheduler: expected thread or main, got "${v.scheduler}"`, 2);
    }
    setSchedulerMode(v.scheduler);
  }
  if (!v.pipeline) return fail("missing --pipeline FILE (or one of --list-plugins, --describe, --help)", 2);
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
  const log = new Logger({ level, outputs });
  const abort = new AbortController();
  const signals: Deno.Signal[] = ["SIGINT", "SIGTERM"];
  let interrupts = 0;
  const onSignal = () => {
    interrupts++;
    if (interrupts > 1) {
      log.warn("second interrupt: exiting without waiting");
      Deno.exit(130);
    }
    log.info("interrupt received: stopping (sinks finalize); press Ctrl-C again to exit at once");
    abort.abort(new DOMException("interrupted", "AbortError"));
  };
  for (const s of signals) Deno.addSignalListener(s, onSignal);
  try {
    const runner = await PipelineRunner.load(v.pipeline, {
      registry,
      set: v.set ?? [],
      log,
      signal: abort.signal,
      trace: trace && ((text) => trace.write(text)),
    });
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
  main(Deno.args).then(
    (code) => Deno.exit(code),
    (e) => {
      console.error(`voxpipe: ${e instanceof Error ? e.stack ?? e.message : e}`);
      Deno.exit(1);
    },
  );
}
