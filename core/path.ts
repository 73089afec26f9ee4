/**
 * `resolve`, `dirname`, `isAbsolute`, `relative` and `SEP` as `node:path` has them, computed here on POSIX systems. The first call
 * of a `node:path` function makes Deno load its Node compatibility implementation (15-35 ms at start-up here,
 * measured in the CPU profile of a file transcode, where only these are called); on Windows they are
 * `node:path`'s own (loaded then, through `process.getBuiltinModule`). A test holds them to `node:path`'s POSIX functions.
 *
 * And `file:` URL ↔ path conversions as `node:url`'s `fileURLToPath` and `pathToFileURL` do them (on POSIX and,
 * by Node's rules, on Windows), because importing `node:url` evaluates a large part of Deno's Node compatibility
 * layer in every process (10-25 ms of a start-up). Tests hold them to `node:url` on POSIX and to Node's documented
 * results on Windows. Internal to voxpipe (not exported from mod.ts).
 *
 * @module
 */
const WINDOWS = Deno.build.os === "windows";

type NodePath = typeof import("node:path");
let nodePathModule: NodePath | undefined;
/** `node:path`, loaded on first use (on Windows, or for Windows rules): a static import would load it in every process. */
function nodePath(): NodePath {
  return nodePathModule ??= process.getBuiltinModule("node:path") as NodePath;
}

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
  if (WINDOWS) return nodePath().resolve(...segments);
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
  if (WINDOWS) return nodePath().dirname(path);
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
  if (WINDOWS) return nodePath().isAbsolute(path);
  return path.length > 0 && path.charCodeAt(0) === 47;
}

/** The path separator of this system: `/`, or `\\` on Windows (as `node:path`'s `sep`). */
export const SEP: string = WINDOWS ? "\\" : "/";

/**
 * The path from `from` to `to`, as `node:path`'s `relative`: both are resolved first; "" when they are the same.
 *
 * @example
 * ```ts
 * relative("/a/b", "/a/c/d"); // "../c/d"
 * ```
 */
export function relative(from: string, to: string): string {
  if (WINDOWS) return nodePath().relative(from, to);
  const a = resolve(from);
  const b = resolve(to);
  if (a === b) return "";
  const as = a === "/" ? [] : a.slice(1).split("/");
  const bs = b === "/" ? [] : b.slice(1).split("/");
  let common = 0;
  while (common < as.length && common < bs.length && as[common] === bs[common]) common++;
  const up: string[] = [];
  for (let k = common; k < as.length; k++) up.push("..");
  return [...up, ...bs.slice(common)].join("/");
}

/** Percent-encodes what the URL parser would take as syntax or drop in a path (as Node's `pathToFileURL`). */
function encodePathChars(path: string, windows: boolean): string {
  let p = path;
  if (p.includes("%")) p = p.replaceAll("%", "%25");
  if (!windows && p.includes("\\")) p = p.replaceAll("\\", "%5C");
  if (p.includes("\n")) p = p.replaceAll("\n", "%0A");
  if (p.includes("\r")) p = p.replaceAll("\r", "%0D");
  if (p.includes("\t")) p = p.replaceAll("\t", "%09");
  if (p.includes("?")) p = p.replaceAll("?", "%3F");
  if (p.includes("#")) p = p.replaceAll("#", "%23");
  return p;
}

/**
 * The `file:` URL of a path, as `node:url`'s `pathToFileURL(path).href`: the path is made absolute first (a
 * trailing separator is kept), `%`, `?`, `#`, control characters (and on POSIX `\\`) are percent-encoded, the rest
 * is left to the URL parser; on Windows a UNC path `\\\\server\\share\\x` becomes `file://server/share/x`.
 *
 * @param path the path (relative: to the working directory)
 * @param windows Windows rules (default: those of this system)
 * @example
 * ```ts
 * pathToFileUrl("/tmp/a b#1.ts"); // "file:///tmp/a%20b%231.ts"
 * ```
 */
export function pathToFileUrl(path: string, windows: boolean = WINDOWS): string {
  if (windows && path.startsWith("\\\\")) {
    const end = path.indexOf("\\", 2);
    if (end <= 2) throw new TypeError(`not a UNC path with a server name: ${path}`);
    const url = new URL("file://");
    url.hostname = path.slice(2, end);
    url.pathname = encodePathChars(path.slice(end).replaceAll("\\", "/"), true);
    return url.href;
  }
  let resolved = windows ? nodePath().win32.resolve(path) : (WINDOWS ? nodePath().posix.resolve(path) : resolve(path));
  const last = path.charCodeAt(path.length - 1);
  const sep = windows ? "\\" : "/";
  if ((last === 47 || (windows && last === 92)) && !resolved.endsWith(sep)) resolved += "/";
  return new URL(`file://${encodePathChars(resolved, windows)}`).href;
}

/**
 * The path of a `file:` URL, as `node:url`'s `fileURLToPath`: percent-decoded; an encoded separator (`%2F`, and on
 * Windows `%5C`) is refused; on POSIX the URL must have no host; on Windows a host makes a UNC path and a path
 * without a drive letter is refused.
 *
 * @param url a `file:` URL
 * @param windows Windows rules (default: those of this system)
 * @throws TypeError for another scheme, an encoded separator, a host on POSIX, a Windows path without a drive
 * @example
 * ```ts
 * fileUrlToPath("file:///tmp/a%20b.ts"); // "/tmp/a b.ts"
 * ```
 */
export function fileUrlToPath(url: string | URL, windows: boolean = WINDOWS): string {
  const u = typeof url === "string" ? new URL(url) : url;
  if (u.protocol !== "file:") throw new TypeError(`The URL must be of scheme file: ${u.href}`);
  const pathname = u.pathname;
  if (windows) {
    if (/%(2f|5c)/i.test(pathname)) {
      throw new TypeError(`File URL path must not include encoded \\ or / characters: ${u.href}`);
    }
    const p = decodeURIComponent(pathname.replaceAll("/", "\\"));
    if (u.hostname !== "") return `\\\\${u.hostname}${p}`;
    const letter = p.charCodeAt(1) | 0x20;
    if (letter < 97 || letter > 122 || p[2] !== ":") throw new TypeError(`File URL path must be absolute: ${u.href}`);
    return p.slice(1);
  }
  if (u.hostname !== "") throw new TypeError(`File URL host must be "localhost" or empty: ${u.href}`);
  if (/%2f/i.test(pathname)) throw new TypeError(`File URL path must not include encoded / characters: ${u.href}`);
  return decodeURIComponent(pathname);
}
