/**
 * The WebSocket family: the `ws-bridge` service plugin, through which
 * applications place, answer and hang up the calls of a pipeline file's
 * control plugin and exchange their audio over a WebSocket, with the model
 * server's text commands (`text_protocol.ts`) or JSON media-stream events
 * (`json_protocol.ts`).
 *
 * - `bridge.ts`: the server ({@linkcode WsBridge}): connections, tokens,
 *   ownership of calls, incoming-call offers, slow clients.
 * - `player.ts`: a client's audio paced into a call ({@linkcode CallPlayer}).
 * - `audio.ts`: the audio encodings (l16, µ-law) and base64.
 * - `protocol.ts`: the commands and notices both protocols share.
 *
 * The bridge is loaded when a pipeline file's `services` section uses it, so
 * registering the plugin costs nothing else.
 *
 * @example Pipeline file
 * ```json
 * "services": [{ "use": "ws-bridge", "port": 8765, "token": "${ws_token}" }]
 * ```
 *
 * @module
 */
import { type AnyServicePlugin, defineService } from "../../core/control.ts";
import { findToken, WS_BRIDGE_DESCRIPTION, wsBridgeOptions } from "./options.ts";

export { type WsBridgeOptions, wsBridgeOptions } from "./options.ts";
export { type AudioEncoding, AudioFormatError, decodeAudio, encodeAudio, MEDIA_TYPES, parseEncoding } from "./audio.ts";
export { CallPlayer, type CallPlayerOptions, type CallPlayerStats, type PlayerFrame } from "./player.ts";
export {
  type CallView,
  type Command,
  type Notice,
  ProtocolError,
  type ProtocolName,
  SUBPROTOCOLS,
  type WireProtocol,
} from "./protocol.ts";
export { textProtocol } from "./text_protocol.ts";
export { jsonProtocol, mediaFormat } from "./json_protocol.ts";
export type { WsBridge, WsBridgeContext, WsBridgeStats } from "./bridge.ts";

/** The `ws-bridge` service plugin (loads bridge.ts when started). */
export const wsBridgeService = defineService({
  name: "ws-bridge",
  kind: "service",
  description: WS_BRIDGE_DESCRIPTION,
  options: wsBridgeOptions,
  async create(options, ctx) {
    if (options.optional && !findToken(options)) {
      const where = options.token_env ? `the environment variable ${options.token_env} is unset` : "the token is empty";
      ctx.log.child("WS").info(`ws-bridge off: ${where} (optional)`);
      return { close: () => Promise.resolve() };
    }
    if (ctx.calls.noSessions) {
      // The bridge reads and writes each call's buses: they must be on this thread.
      throw new Error(`the bridge cannot reach the calls' audio: ${ctx.calls.noSessions}`);
    }
    const { WsBridge } = await import("./bridge.ts");
    const bridge = new WsBridge(options, { calls: ctx.calls, clock: ctx.clock, log: ctx.log });
    await bridge.start();
    return bridge;
  },
});

/** The service plugins of this family. */
export const services: AnyServicePlugin[] = [wsBridgeService];
