/**
 * `pathOptionKeys` (which options of a plugin are file paths, for `--set` values) read from the zod schemas
 * directly gives what the JSON Schema of the options says, for every built-in plugin and for wrapped fields.
 */
import { assertEquals } from "./assert.ts";
import { createRegistry, pathOption, z } from "../mod.ts";
import { pathOptionKeys, pathOptionKeysFromJsonSchema } from "../core/path_options.ts";

Deno.test("path options from the schema agree with the JSON Schema for every built-in plugin", () => {
  const r = createRegistry();
  const all = [...r.list(), ...r.listControls(), ...r.listServices()];
  let withPaths = 0;
  for (const p of all) {
    const ours = pathOptionKeys(p.options);
    assertEquals(ours, pathOptionKeysFromJsonSchema(p.options), p.name);
    if (ours.length) withPaths++;
  }
  // file-source, wav-source, wav-sink, the console service at least.
  assertEquals(withPaths >= 4, true);
});

Deno.test("path options are found through optional, default, nullable and union, and described ones", () => {
  const schema = z.object({
    a: pathOption(),
    b: pathOption().optional(),
    c: pathOption().default("x.wav").describe("a file"),
    d: pathOption().nullable(),
    e: z.union([z.literal(false), pathOption()]),
    f: z.string(),
    g: z.number().default(1),
    h: z.array(pathOption()).optional(),
  });
  assertEquals(pathOptionKeys(schema), ["a", "b", "c", "d", "e"]);
  assertEquals(pathOptionKeys(schema), pathOptionKeysFromJsonSchema(schema));
});
