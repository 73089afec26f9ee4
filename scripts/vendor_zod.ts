/**
 * Makes `vendor/zod/zod.js`, the copy of zod that voxpipe loads: the npm package that `vendor/zod/zod_api.d.ts` names
 * (one file pins the version), bundled into one ES module by `deno bundle`. The import map of `deno.json` maps `zod`
 * to it, and the bundle's first line points type checking at `zod.d.ts`, which re-exports the npm package's own types
 * (through `zod_api.d.ts`).
 *
 * Why one file: Deno loads zod's 106 modules from `node_modules` one by one, and that costs more than their code.
 * Importing zod and building a first schema took ~20 ms less from the bundle than from the package on this machine
 * (`perf stat -r 20`: 0.089 against 0.112 s for the whole process), and the CLI's 1 s transcode 1.09× less time
 * (`alternate.sh`, 15 alternating runs). Every start of the CLI imports zod (`mod.ts` exports it as `z`).
 *
 * Minified: the CLI pays for every byte of it at each start, and on this machine importing the minified bundle took
 * ~5 ms less than the plain one (21 against 26 ms; it maps ~450 fewer pages of memory, 1 100 against 1 550), and the
 * CLI's 1 s transcode ~3 % less time (`alternate`, 25 runs). zod's names in stack traces are shortened; its error
 * messages are not (they are strings).
 *
 * What is left out: `z.fromJSONSchema` (JSON Schema → zod) and zod's translations of its messages into 63 languages
 * (`z.locales` and `z.core.locales` hold English alone, `en`, the one zod uses unless told otherwise). Option schemas
 * have no use for either (voxpipe words zod's issues itself, in `core/errors.ts`), and they were most of the bundle:
 * without them it is 181 instead of 458 KB, and its import took 13 instead of 22 ms here (in-process, 11 fresh
 * processes each). `vendor/zod/zod_api.d.ts` says so in the types. The rest of zod's API is all there, as the package
 * exports it.
 *
 * The output is the same on every machine (the bundler's comments that name source files are cut down to the path
 * inside the package), so `tests/vendor_zod_test.ts` can check that the committed file is what this script makes.
 *
 * ```sh
 * deno run -A scripts/vendor_zod.ts           # writes vendor/zod/zod.js
 * deno run -A scripts/vendor_zod.ts --check   # exit 1 when vendor/zod/zod.js is not what it would write
 * ```
 *
 * To move to another zod version: change the version in `vendor/zod/zod_api.d.ts`, run this script, run the tests.
 *
 * @module
 */
import { fileUrlToPath, resolve } from "../core/path.ts";

const ROOT = fileUrlToPath(new URL("..", import.meta.url));
/** The bundle's path. */
export const ZOD_BUNDLE: string = resolve(ROOT, "vendor", "zod", "zod.js");
/** The path of the types of the bundle's API, which also name the npm package the bundle is made from. */
export const ZOD_TYPES: string = resolve(ROOT, "vendor", "zod", "zod_api.d.ts");

/**
 * The npm specifier `vendor/zod/zod_api.d.ts` re-exports (e.g. `npm:zod@4.6.7`).
 *
 * @throws Error when the file names no exact version, or more than one
 */
export function zodSpecifier(): string {
  const text = Deno.readTextFileSync(ZOD_TYPES);
  const found = [...new Set([...text.matchAll(/"(npm:zod@[^"/]*)/g)].map((m) => m[1]))];
  if (found.length !== 1 || !/^npm:zod@\d+\.\d+\.\d+$/.test(found[0])) {
    throw new Error(
      `${ZOD_TYPES}: expected one exact "npm:zod@x.y.z" throughout the file, found ${found.join(", ") || "none"}`,
    );
  }
  return found[0];
}

/** Names of zod's API left out of the bundle (see the module's documentation); `locales` and `core` are trimmed. */
export const LEFT_OUT: readonly string[] = ["fromJSONSchema"];

/** Bundles the package {@linkcode zodSpecifier} names and returns the text of `vendor/zod/zod.js`. */
export async function bundleZod(): Promise<string> {
  const spec = zodSpecifier();
  // Every name the package's `z` has, but those left out and the two namespaces rebuilt below.
  const { z } = await import(spec) as { z: Record<string, unknown> };
  const names = Object.keys(z).filter((n) => !LEFT_OUT.includes(n) && n !== "core" && n !== "locales").sort();
  // The entry lives in the repository, so that the bundler resolves the package as voxpipe does (deno.json, lock).
  const dir = Deno.makeTempDirSync({ dir: ROOT, prefix: ".vendor-zod-" });
  try {
    const entry = resolve(dir, "entry.ts");
    const out = resolve(dir, "zod.js");
    // zod's core, whose `locales` (shadowing the package's, which holds them all) is English alone.
    Deno.writeTextFileSync(
      resolve(dir, "core.ts"),
      `export * from "${spec}/v4/core";\nimport en from "${spec}/v4/locales/en.js";\nexport const locales = { en };\n`,
    );
    // The API (what `z` holds), then the entry: the API, and `z` as a name and the default export, as the package's.
    Deno.writeTextFileSync(
      resolve(dir, "api.ts"),
      `export { ${names.join(", ")} } from "${spec}";\n` +
        `import * as core from "./core.ts";\nexport { core };\nexport const locales = { en: core.locales.en };\n`,
    );
    Deno.writeTextFileSync(
      entry,
      `export * from "./api.ts";\nimport * as z from "./api.ts";\nexport { z, z as default };\n`,
    );
    const r = await new Deno.Command(Deno.execPath(), {
      args: ["bundle", "--platform", "deno", "--minify", "--output", out, entry],
      cwd: ROOT,
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (!r.success) {
      throw new Error(`deno bundle of ${spec} failed (exit ${r.code}):\n${new TextDecoder().decode(r.stderr)}`);
    }
    const body = Deno.readTextFileSync(out)
      // "// ../../root/.cache/deno/npm/registry.npmjs.org/zod/4.6.7/v4/core/core.js" or
      // "// node_modules/.deno/zod@4.6.7/node_modules/zod/v4/core/core.js" → "// zod/v4/core/core.js"
      .replace(/^\/\/ \S*?zod(?:\/\d+\.\d+\.\d+|@\d+\.\d+\.\d+\/node_modules\/zod)\//gm, "// zod/")
      .replace(/^\n+/, "");
    if (/^\/\/ \S*(node_modules|\.cache)\//m.test(body)) {
      throw new Error("vendor_zod: a source path of this machine is left in the bundle's comments");
    }
    return `// @ts-self-types="./zod.d.ts"\n` +
      `// GENERATED by \`deno run -A scripts/vendor_zod.ts\` from ${spec} (MIT license: LICENSE beside this file):\n` +
      `// do not edit. zod's modules in one minified file, because Deno loads it faster than 106 (see the script).\n\n` +
      body;
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
}

if (import.meta.main) {
  const check = Deno.args.includes("--check");
  const unknown = Deno.args.filter((a) => a !== "--check");
  if (unknown.length > 0) {
    console.error(`vendor_zod: unknown argument ${unknown[0]}; usage: deno run -A scripts/vendor_zod.ts [--check]`);
    Deno.exit(2);
  }
  const text = await bundleZod();
  if (check) {
    let old = "";
    try {
      old = Deno.readTextFileSync(ZOD_BUNDLE);
    } catch { /* missing: differs */ }
    if (old !== text) {
      console.error(`${ZOD_BUNDLE} is not what scripts/vendor_zod.ts makes: run deno run -A scripts/vendor_zod.ts`);
      Deno.exit(1);
    }
    console.log(`${ZOD_BUNDLE}: up to date (${zodSpecifier()})`);
  } else {
    Deno.writeTextFileSync(ZOD_BUNDLE, text);
    console.log(`wrote ${ZOD_BUNDLE} (${zodSpecifier()}, ${text.length} characters)`);
  }
}
