/**
 * The tone plugin family: `tone-source` (sine, sweep, silence).
 *
 * @module
 */
import type { AnyPlugin } from "../../core/stage.ts";
import toneSource from "./tone_source.ts";

/** The stage plugins of this family, registered as built-ins. */
export const plugins: AnyPlugin[] = [toneSource];
