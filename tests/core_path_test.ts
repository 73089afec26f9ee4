/** core/_path.ts: `resolve`, `dirname`, `isAbsolute` give what `node:path` gives, on every path form tried. */
import { posix } from "node:path";
import { assertEquals } from "./assert.ts";
import { dirname, isAbsolute, resolve } from "../core/_path.ts";

const paths = [
  "",
  ".",
  "..",
  "/",
  "//",
  "///",
  "a",
  "a/",
  "a//",
  "/a",
  "/a/",
  "//a",
  "//a/b",
  "/a/b/c.wav",
  "/a/b/c/",
  "a/b/../c",
  "../../x",
  "./x/./y/",
  "/a/../../b",
  "a/../..",
  "x/.hidden",
  "/tmp/out dir/rec-1.wav",
  "/..",
  "/.",
  "...",
  "a/.../b",
  "ü/ñ.wav",
];

Deno.test("dirname and isAbsolute agree with node:path (POSIX) on every path tried", () => {
  if (Deno.build.os === "windows") return; // node:path's own functions there
  for (const p of paths) {
    assertEquals(dirname(p), posix.dirname(p), `dirname(${JSON.stringify(p)})`);
    assertEquals(isAbsolute(p), posix.isAbsolute(p), `isAbsolute(${JSON.stringify(p)})`);
  }
});

Deno.test("resolve agrees with node:path (POSIX) for one, two and three segments, relative ones against the cwd", () => {
  if (Deno.build.os === "windows") return;
  for (const a of paths) {
    assertEquals(resolve(a), posix.resolve(a), `resolve(${JSON.stringify(a)})`);
    for (const b of paths) {
      assertEquals(resolve(a, b), posix.resolve(a, b), `resolve(${JSON.stringify(a)}, ${JSON.stringify(b)})`);
    }
    assertEquals(resolve("/base/dir", a, "x.wav"), posix.resolve("/base/dir", a, "x.wav"));
    assertEquals(resolve(a, "../y", ""), posix.resolve(a, "../y", ""));
  }
  assertEquals(resolve(), posix.resolve());
  assertEquals(resolve("/a/b", "../c", "./d"), "/a/c/d");
});
