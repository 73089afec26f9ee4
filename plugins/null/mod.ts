/**
 * The null plugin family: `null-sink` (discards frames).
 *
 * @module
 */
export { plugins } from "./plugins.ts";
