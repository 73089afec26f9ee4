/**
 * Every built-in control plugin.
 *
 * @module
 */
import type { AnyControlPlugin } from "../core/control.ts";
import { sipControl } from "./sip/control.ts";

/** All built-in control plugins. */
export const builtinControls: AnyControlPlugin[] = [sipControl];
