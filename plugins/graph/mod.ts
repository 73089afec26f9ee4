/**
 * The graph plugin family: stages that make a session's chains a graph rather than a line.
 *
 * - `bus-sink` ends a chain on a named bus of the session; `bus-source` starts a chain from one. Several bus
 *   sources on one bus are a tee (every reader gets every frame); `bus.connect()` bridges a bus into another
 *   session's (`core/bus.ts`).
 * - `mixer` reads several buses and mixes them, summed to mono or one input per output channel, paced on the clock
 *   (real time) or as fast as its inputs allow (file to file).
 * - `sequence` plays source stages one after the other as one stream (a greeting, then a tone, then silence).
 *
 * @module
 */
export { plugins } from "./plugins.ts";
