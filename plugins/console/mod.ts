/**
 * The browser console (`"services": [{"use": "console"}]`): a page served on
 * loopback to place calls with an audio file, answer or reject incoming ones,
 * hear them, and watch every call of the process live (state, RTP/RTCP charts,
 * SIP ladder, log lines). The service (service.ts, with the HTTP server and the
 * call logic) is loaded when a pipeline file starts it.
 *
 * @module
 */
import { defineService } from "../../core/control.ts";
import { CONSOLE_DESCRIPTION, consoleOptions } from "./options.ts";

export { CONSOLE_DESCRIPTION, type ConsoleOptions, consoleOptions } from "./options.ts";

/**
 * The `console` service plugin.
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
  options: consoleOptions,
  create: async (options, ctx) => (await import("./service.ts")).startConsole(options, ctx),
});

export default consoleService;
