/**
 * The copy of zod voxpipe loads (`vendor/zod/zod.js`, see scripts/vendor_zod.ts): it is what the script makes from
 * the version `vendor/zod/zod_api.d.ts` pins, the import map's `zod` is that file, and the `z` that `mod.ts` exports is
 * that copy's, so that a plugin written with it and voxpipe's own schemas are recognised as one zod.
 */
import assert from "node:assert/strict";
import { bundleZod, LEFT_OUT, ZOD_BUNDLE, zodSpecifier } from "../scripts/vendor_zod.ts";
import { z } from "../mod.ts";

Deno.test("vendor/zod/zod.js is exactly what scripts/vendor_zod.ts makes from the pinned zod (rerun it after a change)", async () => {
  const committed = await Deno.readTextFile(ZOD_BUNDLE);
  const made = await bundleZod();
  assert.ok(committed === made, `${ZOD_BUNDLE} differs from a fresh bundle: run deno run -A scripts/vendor_zod.ts`);
  assert.match(committed, /^\/\/ @ts-self-types="\.\/zod\.d\.ts"\n/);
  assert.ok(committed.includes(`from ${zodSpecifier()}`), "the header names the pinned version");
  assert.doesNotMatch(committed, /^\/\/ \S*(node_modules|\.cache)\//m, "no path of the machine that made it");
});

Deno.test("the import map's zod is the bundle, and mod.ts's z is its namespace", async () => {
  assert.equal(import.meta.resolve("zod"), new URL("../vendor/zod/zod.js", import.meta.url).href);
  const bundled = await import("zod");
  assert.equal(z, bundled.z);
  const [major, minor, patch] = zodSpecifier().replace("npm:zod@", "").split(".").map(Number);
  assert.deepEqual(
    { major: z.core.version.major, minor: z.core.version.minor, patch: z.core.version.patch },
    { major, minor, patch },
  );
  // A schema from the bundle validates, fills defaults and reports paths as the package does.
  const s = z.object({ rate: z.number().int().min(8000).default(8000), codec: z.enum(["PCMU", "PCMA"]) }).strict();
  assert.deepEqual(s.parse({ codec: "PCMA" }), { rate: 8000, codec: "PCMA" });
  const bad = s.safeParse({ rate: 7999.5, codec: "G722", extra: 1 });
  assert.equal(bad.success, false);
  assert.deepEqual(bad.error!.issues.map((i) => [i.path.join("."), i.code]).sort(), [
    ["", "unrecognized_keys"],
    ["codec", "invalid_value"],
    ["rate", "invalid_type"],
  ]);
});

Deno.test("the bundle's z is the package's API but for what the script leaves out: fromJSONSchema, locales but en", async () => {
  const pkg = (await import(zodSpecifier())).z as unknown as Record<string, unknown>;
  const ours = z as unknown as Record<string, unknown>;
  const missing = Object.keys(pkg).filter((k) => !(k in ours));
  assert.deepEqual(missing, [...LEFT_OUT], "names of the package's z that the bundle lacks");
  assert.deepEqual(Object.keys(ours).filter((k) => !(k in pkg)), [], "names the package's z lacks");
  for (const k of Object.keys(pkg)) {
    if (!LEFT_OUT.includes(k)) assert.equal(typeof ours[k], typeof pkg[k], `z.${k}`);
  }
  // English alone, in both places zod keeps its locales; it is what zod's messages use.
  assert.deepEqual(Object.keys(z.locales), ["en"]);
  assert.deepEqual(Object.keys(z.core.locales), ["en"]);
  assert.equal(z.locales.en, z.core.locales.en);
  assert.equal(z.number().min(3).safeParse(1).error?.issues[0].message, "Too small: expected number to be >=3");
});
