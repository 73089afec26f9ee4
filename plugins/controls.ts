/**
 * Every built-in control plugin.
 *
 * @module
 */
import type { AnyControlPlugin } from "../core/control.ts";
import { sipControl } from "./sip/control.ts";
import { controls as relay } from "./relay/mod.ts";

/** All built-in control plugins. */
export const builtinControls: AnyControlPlugin[] = [sipControl, ...relay];
