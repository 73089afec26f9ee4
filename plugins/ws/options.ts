/**
 * What the `ws-bridge` service plugin declares before it runs: its options
 * schema (built on first use, {@linkcode wsBridgeOptionsSchema}), its
 * description and the plugin definition ({@linkcode wsBridgeService}). Kept
 * apart from the bridge itself (bridge.ts and what it imports) and from the
 * family's mod.ts (which re-exports the protocols and the audio encodings) so
 * registering the plugin at start-up loads nothing else and builds no schema:
 * plugins/services.ts registers it from here, and it loads bridge.ts when a
 * pipeline file's `services` section uses `"use": "ws-bridge"`.
 *
 * @module
 */
import { z } from "zod";
import { type AnyServicePlugin, defineService } from "../../core/control.ts";
import { lazySchema } from "../../core/options.ts";
import { failureLimitOptions } from "../_failure_limit_options.ts";
import { lazyModule } from "../../core/lazy.ts";

/** Modules loaded when first used (see `lazyModule`). */
const bridgeModule = lazyModule<typeof import("./bridge.ts")>(new URL("./bridge.ts", import.meta.url));

/** One line for `--list-plugins`. */
export const WS_BRIDGE_DESCRIPTION =
  "WebSocket server through which applications place, answer and hang up calls and exchange their audio " +
  "(text commands, or JSON media-stream events)";

/**
 * Options of the `ws-bridge` service plugin: the schema, built on the first call (the same instance every time;
 * mod.ts exports it as `wsBridgeOptions`).
 */
export const wsBridgeOptionsSchema = lazySchema(() =>
  z.object({
    bind: z.string().min(1).default("127.0.0.1").describe(
      "address the WebSocket server listens on (default loopback; 0.0.0.0 or :: for all, behind TLS termination)",
    ),
    port: z.number().int().min(0).max(65535).default(8765).describe("TCP port of the WebSocket server (0 = any free)"),
    token: z.string().max(512).default("").describe(
      "the shared secret clients present as ?token= in the URL or in their first message (AUTH:... or " +
        '{"event":"auth","auth":{"token":...}}); a wrong or missing one closes the connection (1008). ' +
        "Required, unless token_env names where to read it",
    ),
    token_env: z.string().regex(/^([A-Za-z_][A-Za-z0-9_]*)?$/, "expected an environment variable name").default("")
      .describe(
        "name of an environment variable holding the token, instead of token (keeps it off the command line and " +
          "out of --check)",
      ),
    max_clients: z.number().int().min(1).max(100000).default(100).describe(
      "WebSocket connections at once (more are refused with HTTP 503 before the upgrade; one the bridge has closed " +
        "no longer counts)",
    ),
    max_calls_per_client: z.number().int().min(1).max(100000).default(100).describe(
      "calls one client may own at once (dialed or answered); a dial beyond is refused",
    ),
    ptime: z.number().int().min(10).max(60).default(20).describe(
      "ms of audio per frame played into a call's to-call bus (one frame per ptime, on the media clock)",
    ),
    jitter_ms: z.number().int().min(0).max(1000).default(60).describe(
      "audio a client sends is played once this much is queued (or the first of it has waited this long), " +
        "and again after the queue ran dry: late sends up to this much leave no gap; it is the latency it adds",
    ),
    max_queue_seconds: z.number().min(1).max(600).default(30).describe(
      "audio from a client queued per call at most, seconds (a client may send faster than real time; beyond, " +
        "the excess is dropped and counted, with one error message)",
    ),
    client_buffer_bytes: z.number().int().min(1024).max(1 << 28).default(256 * 1024).describe(
      "bytes waiting in a client's socket above which audio to it is dropped (counted) instead of queued",
    ),
    slow_client_seconds: z.number().min(0.1).max(3600).default(2).describe(
      "a client whose socket stays above client_buffer_bytes this long (or goes above 4x it) is disconnected " +
        "(1008 too slow) and its calls hung up",
    ),
    ring_timeout: z.number().min(0.1).max(3600).default(30).describe(
      "seconds an incoming call offered to the connected clients rings before it is rejected (480)",
    ),
    auth_timeout: z.number().min(0.1).max(3600).default(5).describe(
      "seconds a connection without ?token= has to send its token (AUTH:...) before it is closed (1008)",
    ),
    ...failureLimitOptions("wrong tokens", "its connections refused (HTTP 403)"),
    max_message_bytes: z.number().int().min(1024).max(16 * 1024 * 1024).default(256 * 1024).describe(
      "longest message a client may send (longer: an error message back as soon as its header says so, the message " +
        "dropped as it arrives, never held)",
    ),
    from_bus: z.string().min(1).default("from-call").describe(
      "session bus carrying the peer's decoded audio (pcm 8000 Hz mono) that is sent to the client",
    ),
    to_bus: z.string().min(1).default("to-call").describe(
      "session bus the client's audio is played into (the call's send chain reads it: a bus-source with " +
        '"rate": 8000, "channels": 1)',
    ),
    optional: z.boolean().default(false).describe(
      "true: without a token (token empty, or token_env's variable unset) the bridge is off, said in one log line, " +
        "instead of failing the start (a shipped file whose bridge a --set turns on)",
    ),
  }).superRefine((o, c) => {
    if (!o.token && !o.token_env && !o.optional) {
      c.addIssue({
        code: "custom",
        path: ["token"],
        message: 'the token is empty: set one (e.g. "token": "${ws_token}" in the file and --set ws_token=SECRET), ' +
          'name an environment variable holding it with token_env, or set "optional": true to run without the bridge',
      });
    } else if (o.token && o.token_env) {
      c.addIssue({ code: "custom", path: ["token_env"], message: "set token or token_env, not both" });
    }
  })
);

/** Validated options of `ws-bridge`. */
export type WsBridgeOptions = z.output<ReturnType<typeof wsBridgeOptionsSchema>>;

/**
 * The token the options give: `token`, or the value of the environment variable `token_env`; throws saying what to
 * set when that is unset or empty.
 */
export function resolveToken(o: Pick<WsBridgeOptions, "token" | "token_env">): string {
  const v = findToken(o);
  if (!v) {
    throw new Error(
      `token_env: the environment variable ${o.token_env || "(none)"} is not set or empty: export it with the ` +
        "clients' token",
    );
  }
  return v;
}

/** The token the options give, or "" when there is none (`token` empty and `token_env` unset or empty). */
export function findToken(o: Pick<WsBridgeOptions, "token" | "token_env">): string {
  if (o.token) return o.token;
  return (o.token_env ? Deno.env.get(o.token_env) : undefined) ?? "";
}

/** The `ws-bridge` service plugin (loads bridge.ts when started). */
export const wsBridgeService = defineService({
  name: "ws-bridge",
  kind: "service",
  description: WS_BRIDGE_DESCRIPTION,
  get options() {
    return wsBridgeOptionsSchema();
  },
  async create(options, ctx) {
    if (options.optional && !findToken(options)) {
      const where = options.token_env ? `the environment variable ${options.token_env} is unset` : "the token is empty";
      ctx.log.child("WS").info(`ws-bridge off: ${where} (optional)`);
      return { off: true, close: () => Promise.resolve() };
    }
    if (ctx.calls.noSessions) {
      // The bridge reads and writes each call's buses: they must be on this thread.
      throw new Error(`the bridge cannot reach the calls' audio: ${ctx.calls.noSessions}`);
    }
    const { WsBridge } = await bridgeModule();
    const bridge = new WsBridge(options, { calls: ctx.calls, clock: ctx.clock, log: ctx.log });
    await bridge.start();
    return bridge;
  },
});

/** The service plugins of this family. */
export const services: AnyServicePlugin[] = [wsBridgeService];
