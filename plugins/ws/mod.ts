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
 * The plugin is declared in `options.ts` (plugins/services.ts registers it
 * from there, without loading this module); the bridge is loaded when a
 * pipeline file's `services` section uses it, so registering the plugin costs
 * nothing else.
 *
 * @example Pipeline file
 * ```json
 * "services": [{ "use": "ws-bridge", "port": 8765, "token": "${ws_token}" }]
 * ```
 *
 * @module
 */
import { wsBridgeOptionsSchema } from "./options.ts";

export { services, type WsBridgeOptions, wsBridgeOptionsSchema, wsBridgeService } from "./options.ts";
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

/**
 * Options of the `ws-bridge` service plugin: options.ts's schema, built when this module loads (the same instance as
 * the plugin's `options`).
 */
export const wsBridgeOptions: ReturnType<typeof wsBridgeOptionsSchema> = wsBridgeOptionsSchema();
