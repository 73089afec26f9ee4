/**
 * Stage-test helpers bound to the built-in registry: `testContext` and
 * `createStage` from core/testing.ts, whose contexts offer the codecs the
 * built-in plugins register (`ctx.codecs`) and their bridge suggestions
 * (`ctx.suggestBridge`), as a pipeline built with `createRegistry()` does.
 *
 * @module
 */
import type { AnyPlugin, Stage, StageContext } from "../core/stage.ts";
import {
  createStage as createStageWith,
  testContext as testContextWith,
  type TestContextOptions,
} from "../core/testing.ts";
import { createRegistry } from "../mod.ts";

/** The built-in registry the helpers use. */
export const registry = createRegistry();

/** The built-in codecs. */
export const codecs = registry.codecs;

/** {@linkcode testContextWith} with the built-in registry (unless `opts` names another). */
export function testContext(opts: TestContextOptions = {}): ReturnType<typeof testContextWith> {
  return testContextWith({ registry, ...opts });
}

/** {@linkcode createStageWith} with a context of the built-in registry by default. */
export function createStage<S extends Stage = Stage>(
  plugin: AnyPlugin,
  options: Record<string, unknown> = {},
  ctx: StageContext = testContext().ctx,
): Promise<S> {
  return createStageWith<S>(plugin, options, ctx);
}
