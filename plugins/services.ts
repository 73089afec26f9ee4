/**
 * Every built-in service plugin (run by a pipeline file's `services` section
 * beside its control plugin, on its calls).
 *
 * @module
 */
import type { AnyServicePlugin } from "../core/control.ts";
import { services as ws } from "./ws/mod.ts";
import { consoleService } from "./console/mod.ts";

/** All built-in service plugins. */
export const builtinServices: AnyServicePlugin[] = [...ws, consoleService];
