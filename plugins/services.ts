/**
 * Every built-in service plugin (run by a pipeline file's `services` section
 * beside its control plugin, on its calls).
 *
 * They are registered from their declarations (ws/options.ts, console/options.ts):
 * their option schemas are built on first use (`lazySchema`) and their
 * implementations load when a file starts them, so registering them at start-up
 * loads neither the families' protocols nor builds a schema.
 *
 * @module
 */
import type { AnyServicePlugin } from "../core/control.ts";
import { services as ws } from "./ws/options.ts";
import { consoleService } from "./console/options.ts";

/** All built-in service plugins. */
export const builtinServices: AnyServicePlugin[] = [...ws, consoleService];
