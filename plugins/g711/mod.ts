/**
 * The g711 plugin family.
 *
 * @module
 */
import type { AnyPlugin } from "../../core/stage.ts";

/** The stage plugins of this family, registered as built-ins. */
export const plugins: AnyPlugin[] = [];
