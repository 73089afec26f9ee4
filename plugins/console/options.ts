/**
 * What the `console` service plugin declares before it starts: its options
 * (schema built on first use, {@linkcode consoleOptionsSchema}), its
 * description and the plugin definition ({@linkcode consoleService}). Kept
 * apart from the service (service.ts, loaded when a pipeline file asks for
 * `"services": [{"use": "console"}]`), so that registering it (plugins/services.ts
 * does, from here) costs nothing and builds no schema.
 *
 * @module
 */
import { z } from "zod";
import { defineService } from "../../core/control.ts";
import { lazySchema, pathOption } from "../../core/options.ts";
import { failureLimitOptions } from "../_failure_limit_options.ts";
import { lazyModule } from "../../core/lazy.ts";

/** Modules loaded when first used (see `lazyModule`). */
const serviceModule = lazyModule<typeof import("./service.ts")>(new URL("./service.ts", import.meta.url));

/** One line for `--list-plugins`. */
export const CONSOLE_DESCRIPTION =
  "Browser console: place, answer and watch calls, hear them, live RTP/RTCP charts, SIP ladder and logs per call";

/**
 * Options of the `console` service plugin: the schema, built on the first call (the same instance every time;
 * mod.ts exports it as `consoleOptions`).
 */
export const consoleOptionsSchema = lazySchema(() =>
  z.object({
    port: z.number().int().min(0).max(65535).default(8090).describe("HTTP port of the console (0 = any free port)"),
    bind: z.string().min(1).default("127.0.0.1").describe(
      "address the console listens on; anything but a loopback address needs a token",
    ),
    token: z.string().default("").describe(
      "secret the page must give (open http://HOST:PORT/?token=...); required when bind is not a loopback address",
    ),
    ...failureLimitOptions("wrong tokens", "its requests refused (HTTP 403)"),
    allowed_hosts: z.string().default("").describe(
      "host names, separated by commas, that the console also answers to (a name in front of it, e.g. a proxy); " +
        "else only its own address, and on loopback or a wildcard bind 127.x, ::1 and localhost",
    ),
    library: pathOption().optional().describe(
      "folder of audio files the caller may choose from (read only); relative to the pipeline file; default none",
    ),
    uploads: pathOption().default("out/console/uploads").describe(
      "folder where uploaded audio files are stored; relative to the pipeline file",
    ),
    record_dir: pathOption().default("out/console").describe(
      "folder of the recordings made from the console (Record); relative to the pipeline file",
    ),
    max_clients: z.number().int().min(1).max(10000).default(32).describe(
      "console pages (WebSockets) served at once; beyond, a page gets HTTP 503",
    ),
    max_upload_mb: z.number().min(0.1).max(2048).default(50).describe("largest upload accepted, MB"),
    auto_answer: z.boolean().default(false).describe(
      "answer incoming calls at once (else they ring in the console until Answer or Reject; the page can change it)",
    ),
    decide_incoming: z.boolean().default(true).describe(
      "the console decides incoming calls (ring or answer); false leaves them to the control plugin (answer_after)",
    ),
    audio_bus: z.string().min(1).default("from-call").describe(
      "session bus carrying a call's received audio as pcm (the receive chain's bus-sink)",
    ),
    page_size: z.number().int().min(1).max(500).default(10).describe("rows per page of the call table"),
    history_seconds: z.number().int().min(10).max(86400).default(300).describe(
      "seconds of chart samples kept per call",
    ),
    keep_ended: z.number().int().min(0).max(100000).default(200).describe(
      "ended calls kept in the table with their charts, ladder and log lines",
    ),
  })
);

/** Validated options of the `console` service. */
export type ConsoleOptions = z.output<ReturnType<typeof consoleOptionsSchema>>;

/**
 * The `console` service plugin (loads service.ts when started).
 *
 * @example Pipeline file
 * ```json
 * "services": [{ "use": "console", "port": 8090, "library": "../examples/audio" }]
 * ```
 */
export const consoleService = defineService({
  name: "console",
  kind: "service",
  description: CONSOLE_DESCRIPTION,
  get options() {
    return consoleOptionsSchema();
  },
  create: async (options, ctx) => (await serviceModule()).startConsole(options, ctx),
});
