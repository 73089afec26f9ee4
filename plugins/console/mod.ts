/**
 * The browser console (`"services": [{"use": "console"}]`): a page served on
 * loopback to place calls with an audio file, answer or reject incoming ones,
 * hear them, and watch every call of the process live (state, RTP/RTCP charts,
 * SIP ladder, log lines). The plugin is declared in options.ts (plugins/services.ts
 * registers it from there, building no schema); the service (service.ts, with
 * the HTTP server and the call logic) is loaded when a pipeline file starts it.
 *
 * @module
 */
import { consoleOptionsSchema, consoleService } from "./options.ts";

export { CONSOLE_DESCRIPTION, type ConsoleOptions, consoleOptionsSchema, consoleService } from "./options.ts";

/**
 * Options of the `console` service plugin: options.ts's schema, built when this module loads (the same instance as
 * the plugin's `options`).
 */
export const consoleOptions: ReturnType<typeof consoleOptionsSchema> = consoleOptionsSchema();

export default consoleService;
