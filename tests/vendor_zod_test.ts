/**
 * The copy of zod voxpipe loads (`vendor/zod/zod.js`, see scripts/vendor_zod.ts): it is what the script makes from
 * the version `vendor/zod/zod.d.ts` pins, the import map's `zod` is that file, and the `z` that `mod.ts` exports is
 * that copy's, so that a plugin written with it and voxpipe's own schemas are recognised as one zod.
 */
import assert from "node:assert/strict";
import { bundleZod, ZOD_BUNDLE, zodSpecifier } from "../scripts/vendor_zod.ts";
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
