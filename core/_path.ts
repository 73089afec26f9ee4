/**
 * `resolve`, `dirname` and `isAbsolute` as `node:path` has them, computed here on POSIX systems. The first call
 * of a `node:path` function makes Deno load its Node compatibility implementation (15-35 ms at start-up here,
 * measured in the CPU profile of a file transcode, where only these three are called); on Windows they are
 * `node:path`'s own. A test holds them to `node:path`'s POSIX functions. Private to voxpipe.
 *
 * @module
 */
import * as nodePath from "node:path";

const WINDOWS = Deno.build.os === "windows";

/** `path` with `.` and `..` segments and repeated slashes removed (no leading or trailing slash). */
function normalizeSegments(path: string, aboveRoot: boolean): string {
  const out: string[] = [];
  for (const seg of path.split("/")) {
    if (seg === "" || seg === ".") continue;
    if (seg === "..") {
      if (out.length > 0 && out[out.length - 1] !== "..") out.pop();
      else if (aboveRoot) out.push("..");
      continue;
    }
    out.push(seg);
  }
  return out.join("/");
}

/**
 * The absolute path of the segments, as `node:path`'s `resolve`: from the right, each segment is prepended until
 * an absolute one is met (else the working directory is), then the result is normalised without a trailing slash.
 *
 * @example
 * ```ts
 * resolve("/a/b", "../c", "./d"); // "/a/c/d"
 * ```
 */
export function resolve(...segments: string[]): string {
  if (WINDOWS) return nodePath.resolve(...segments);
  let joined = "";
  let absolute = false;
  for (let i = segments.length - 1; i >= -1 && !absolute; i--) {
    const p = i >= 0 ? segments[i] : Deno.cwd();
    if (p.length === 0) continue;
    joined = `${p}/${joined}`;
    absolute = p.charCodeAt(0) === 47; // "/"
  }
  const normal = normalizeSegments(joined, !absolute);
  if (absolute) return `/${normal}`;
  return normal.length > 0 ? normal : ".";
}

/**
 * The directory part of a path, as `node:path`'s `dirname`: trailing slashes are ignored, `.` when there is none.
 *
 * @example
 * ```ts
 * dirname("/a/b/c.wav"); // "/a/b"
 * ```
 */
export function dirname(path: string): string {
  if (WINDOWS) return nodePath.dirname(path);
  if (path.length === 0) return ".";
  const hasRoot = path.charCodeAt(0) === 47;
  let end = -1;
  let matchedSlash = true;
  for (let i = path.length - 1; i >= 1; --i) {
    if (path.charCodeAt(i) === 47) {
      if (!matchedSlash) {
        end = i;
        break;
      }
    } else {
      matchedSlash = false;
    }
  }
  if (end === -1) return hasRoot ? "/" : ".";
  if (hasRoot && end === 1) return "//";
  return path.slice(0, end);
}

/**
 * True for an absolute path, as `node:path`'s `isAbsolute`.
 *
 * @example
 * ```ts
 * isAbsolute("/tmp/x"); // true
 * ```
 */
export function isAbsolute(path: string): boolean {
  if (WINDOWS) return nodePath.isAbsolute(path);
  return path.length > 0 && path.charCodeAt(0) === 47;
}
