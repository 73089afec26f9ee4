/**
 * The tone plugin family: `tone-source` (sine, sweep, silence).
 *
 * @module
 */
export { plugins } from "./plugins.ts";
