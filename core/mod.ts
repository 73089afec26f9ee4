/**
 * The framework core: what every plugin and every embedding program builds on,
 * with no codec, protocol or plugin names in it. This module re-exports its
 * public API (the repository's `mod.ts` re-exports this).
 *
 * What lives here:
 * - `frame.ts`: the frames that flow through chains (`pcm`, `encoded`, `rtp`,
 *   `packet`) and their formats; `codec.ts`: the codec registry plugins fill
 *   (name, payload type, clock rate, framing, silence, concealment);
 *   `format_check.ts`: the one format check stages share;
 * - `stage.ts`: the stage and plugin API (`definePlugin`, source, transform and
 *   sink stages, `FormatError`, `PluginResolver`); `options.ts`: option schemas
 *   (`z`, `OptionsSchema`, `OptionsOf`, `lazySchema`); `lazy.ts`: modules
 *   loaded when first used (`lazyModule`);
 * - `pipeline.ts`: building, checking and running a chain (`buildPipeline`);
 *   `registry.ts`: plugins by name or module path; `config.ts`: pipeline files
 *   and their parameters; `runner.ts`: running a pipeline file
 *   (`PipelineRunner`); `check.ts`: what checking a file found (`--check`);
 *   `control.ts`: the control-plugin API (`defineControl`);
 *   `schema.ts`: the JSON Schema of pipeline files and plugin descriptions;
 *   `calls.ts`: the call service a control plugin offers to the file's
 *   services (a WebSocket bridge, the console);
 * - `clock.ts`: the `Clock` interface and drift-free `Pacer`, re-exporting
 *   `VirtualClock` (`virtual_clock.ts`), `RealClock` (`real_clock.ts`, its
 *   wake-up strategies in the private `_thread_waker.ts`, `_timeout_waker.ts`
 *   and `_fine_waker.ts`, its heap in `_timer_heap.ts`) and the process clock
 *   `mediaClock()` (`media_clock.ts`);
 * - `session.ts`: a call's (or a standalone run's) share of the process: its
 *   port pair and sockets, per-session resources, event bus and media
 *   statistics; `bus.ts`: buses that link a session's chains into a graph and
 *   bridge sessions; `net/`: the network layer (addresses, datagram sockets
 *   real and in-memory, port pairs; its own `mod.ts`);
 * - `log.ts`: leveled, tagged logging; `errors.ts`: configuration errors with
 *   file and JSON path, and where an exception was thrown; `suggest.ts`: "did
 *   you mean" for misspelt names; `open_files.ts`: the file descriptors open against the
 *   process's limit, and the reserve servers keep free (`FileReserve`); `streams.ts`: Web Streams adapters at the edges of a
 *   chain; `testing.ts`: running one stage in a test; `paths.ts`: file names
 *   made safe.
 *
 * Not re-exported, used by the built-in plugins: `random.ts` (seeded random
 * numbers). Files whose names start with `_` are private to this folder.
 *
 * @example
 * ```ts
 * import { buildPipeline, VirtualClock } from "./mod.ts";
 * import { createRegistry } from "../mod.ts";
 * const pipeline = await buildPipeline("main", [
 *   { use: "tone-source", duration: 1 },
 *   { use: "null-sink" },
 * ], { registry: createRegistry(), clock: new VirtualClock() });
 * ```
 *
 * @module
 */
export * from "./frame.ts";
export * from "./codec.ts";
export * from "./format_check.ts";
export * from "./stage.ts";
export * from "./options.ts";
export * from "./lazy.ts";
export * from "./clock.ts";
export * from "./log.ts";
export * from "./errors.ts";
export * from "./suggest.ts";
export * from "./pipeline.ts";
export * from "./start_gate.ts";
export * from "./registry.ts";
export * from "./config.ts";
export * from "./control.ts";
export * from "./runner.ts";
export * from "./check.ts";
export * from "./schema.ts";
export * from "./streams.ts";
export * from "./testing.ts";
export * from "./session.ts";
export * from "./calls.ts";
export * from "./bus.ts";
export * from "./open_files.ts";
export * from "./net/mod.ts";
export { sanitizeFileComponent } from "./paths.ts";
