/**
 * Every built-in control plugin.
 *
 * @module
 */
import type { AnyControlPlugin } from "../core/control.ts";

/** All built-in control plugins. */
export const builtinControls: AnyControlPlugin[] = [];
