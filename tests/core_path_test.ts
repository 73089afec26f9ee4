/** core/path.ts: `resolve`, `dirname`, `isAbsolute`, `relative` give what `node:path` gives, on every path form tried. */
import { posix } from "node:path";
import { assertEquals } from "./assert.ts";
import { dirname, isAbsolute, relative, resolve, SEP } from "../core/path.ts";

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

Deno.test("pathToFileUrl and fileUrlToPath agree with node:url on POSIX, errors included", async () => {
  if (Deno.build.os === "windows") return;
  const { fileURLToPath, pathToFileURL } = await import("node:url");
  const { fileUrlToPath, pathToFileUrl } = await import("../core/path.ts");
  const odd = [
    "/tmp/a b.ts",
    "/x/y#z?w%v\\u",
    "/tab\there/new\nline/cr\r",
    "/ünï/çødé €.wav",
    "/a/b/",
    "rel/x.ts",
    "./",
  ];
  for (const p of [...paths, ...odd]) {
    assertEquals(pathToFileUrl(p), pathToFileURL(p).href, `pathToFileUrl(${JSON.stringify(p)})`);
    const url = pathToFileURL(p).href;
    assertEquals(fileUrlToPath(url), fileURLToPath(url), `fileUrlToPath(${url})`);
  }
  for (const u of ["file:///a/%2F/b", "file:///a/%2f", "file://host/x", "http://x/y", "file:///%E2%82%AC/x%20y"]) {
    let theirs: string | Error, ours: string | Error;
    try {
      theirs = fileURLToPath(u);
    } catch (e) {
      theirs = e as Error;
    }
    try {
      ours = fileUrlToPath(u);
    } catch (e) {
      ours = e as Error;
    }
    assertEquals(typeof ours === "string" ? ours : "throws", typeof theirs === "string" ? theirs : "throws", u);
  }
});

Deno.test("pathToFileUrl and fileUrlToPath follow Node's Windows rules: drive letters, UNC paths, backslashes", async () => {
  const { fileUrlToPath, pathToFileUrl } = await import("../core/path.ts");
  assertEquals(pathToFileUrl("C:\\a b\\c#d.ts", true), "file:///C:/a%20b/c%23d.ts");
  assertEquals(pathToFileUrl("C:\\dir\\", true), "file:///C:/dir/");
  assertEquals(pathToFileUrl("\\\\server\\share\\x y.ts", true), "file://server/share/x%20y.ts");
  assertEquals(fileUrlToPath("file:///C:/a%20b/c.ts", true), "C:\\a b\\c.ts");
  assertEquals(fileUrlToPath("file:///C:/dir/", true), "C:\\dir\\");
  assertEquals(fileUrlToPath("file://server/share/x%20y.ts", true), "\\\\server\\share\\x y.ts");
  for (const bad of ["file:///no/drive", "file:///C:/a%5Cb", "file:///C:/a%2Fb"]) {
    let threw = false;
    try {
      fileUrlToPath(bad, true);
    } catch {
      threw = true;
    }
    assertEquals(threw, true, bad);
  }
});

Deno.test("relative agrees with node:path (POSIX) for every pair of the paths tried; SEP is the separator", () => {
  if (Deno.build.os === "windows") return;
  equalSep();
  for (const from of paths) {
    for (const to of paths) {
      assertEquals(
        relative(from, to),
        posix.relative(from, to),
        `relative(${JSON.stringify(from)}, ${JSON.stringify(to)})`,
      );
    }
  }
});

function equalSep(): void {
  assertEquals(SEP, posix.sep);
}
