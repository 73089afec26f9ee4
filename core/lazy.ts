/**
 * Modules loaded when first used, and not before: {@linkcode lazyModule}.
 *
 * @module
 */

/**
 * A loader of the module at `specifier` (a `URL` made with `new URL("./x.ts", import.meta.url)`, or a bare specifier
 * of the import map such as an npm package's name): the first call imports it, later calls return the same promise. A
 * failed import stays failed: Deno keeps a module that failed to load as failed for the life of the process.
 *
 * Unlike `await import("./x.ts")` written out, the module's name here is not a string literal, so Deno does not read
 * the module and everything it imports when it loads the module that holds the loader (it reads every statically
 * written dynamic import at start-up, used or not). The built-in plugin families load their stages, controls and
 * services this way: starting a pipeline reads from disk only the modules its stages use. Name the module's type
 * with `typeof import("./x.ts")` (a type, which type checking follows and running does not).
 *
 * @example
 * ```ts
 * const gainStage = lazyModule<typeof import("./gain_stage.ts")>(new URL("./gain_stage.ts", import.meta.url));
 * const gain = definePlugin({
 *   name: "gain", kind: "transform", description: "…", accepts: [{ kind: "pcm" }], options: z.object({}),
 *   create: async (o, ctx) => (await gainStage()).createGain(o, ctx),
 * });
 * ```
 */
export function lazyModule<M>(specifier: URL | string): () => Promise<M> {
  const href = specifier instanceof URL ? specifier.href : specifier;
  let loading: Promise<M> | undefined;
  return () => loading ??= import(href) as Promise<M>;
}
