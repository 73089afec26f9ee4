/**
 * Path helpers (JSR's `@std/path` is not reachable here; `core/path.ts` holds what `node:path` and `node:url`
 * would give, without loading them).
 *
 * @module
 */
import { dirname, pathToFileUrl, resolve } from "./path.ts";

/**
 * Converts an absolute path to a `file:` URL string.
 *
 * @example
 * ```ts
 * toFileUrl("/tmp/a b.ts"); // "file:///tmp/a%20b.ts"
 * ```
 */
export function toFileUrl(path: string): string {
  return pathToFileUrl(path);
}

/**
 * Turns untrusted text (a SIP Call-ID, a user name) into a safe file-name
 * component: only `[A-Za-z0-9._-]`, no leading dot, at most 64 characters, never
 * empty, never `.` or `..`. Different inputs that sanitize alike get a short hash
 * suffix so they do not collide.
 *
 * @example
 * ```ts
 * sanitizeFileComponent("../../etc/passwd@host"); // "etc_passwd_host-…"
 * ```
 */
export function sanitizeFileComponent(input: string): string {
  let s = input.replace(/[^A-Za-z0-9._-]+/g, "_").replace(/^[._]+/, "").replace(/_+$/, "");
  const changed = s !== input;
  if (s.length > 48) s = s.slice(0, 48);
  if (!s) s = "x";
  if (changed || input.length > 48) s += "-" + fnv1a(input).toString(16).padStart(8, "0");
  return s;
}

function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

/** File systems whose files live in memory: creating or writing one waits for no disk. */
const MEMORY_FILE_SYSTEMS: ReadonlySet<string> = new Set(["tmpfs", "ramfs"]);

/**
 * The type of the file system that `path` is on (`ext4`, `tmpfs`, ...), read from the mount table
 * (`/proc/self/mounts`: the last-mounted of the longest mount points containing `path`), or undefined where there is
 * none to read (not Linux, or no read permission for it). `path` should be absolute with no symbolic link in it (see
 * `Deno.realPathSync`).
 *
 * @example
 * ```ts
 * fileSystemType("/dev/shm/calls"); // "tmpfs" on most Linux systems
 * ```
 */
export function fileSystemType(path: string): string | undefined {
  let table: string;
  try {
    table = Deno.readTextFileSync("/proc/self/mounts");
  } catch {
    return undefined;
  }
  let longest = -1;
  let type: string | undefined;
  for (const line of table.split("\n")) {
    const fields = line.split(" ");
    if (fields.length < 3) continue;
    // Spaces and the like are octal escapes there (`\040`).
    const mount = fields[1].replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
    const inside = mount === "/" || path === mount || path.startsWith(`${mount}/`);
    if (inside && mount.length >= longest) {
      longest = mount.length;
      type = fields[2];
    }
  }
  return type;
}

/** Answers of {@linkcode onMemoryFileSystem}, by directory as given; emptied when full. */
const memoryDirs = new Map<string, boolean>();
const MEMORY_DIRS_MAX = 256;

/**
 * Whether the existing directory `dir` is on a memory file system (tmpfs, ramfs), where a synchronous file operation
 * costs only CPU time: there is no disk to wait for (short of a tmpfs page swapped out). Follows symbolic links;
 * answered once per existing directory; false when it cannot be told (no such directory, no `/proc`, no permission).
 *
 * @example
 * ```ts
 * if (onMemoryFileSystem("/dev/shm")) Deno.openSync("/dev/shm/x.wav", { write: true, createNew: true });
 * ```
 */
export function onMemoryFileSystem(dir: string): boolean {
  let answer = memoryDirs.get(dir);
  if (answer === undefined) {
    let real: string;
    try {
      real = Deno.realPathSync(dir);
    } catch {
      return false; // not there (yet), or not readable: asked again next time
    }
    const type = fileSystemType(real);
    answer = type !== undefined && MEMORY_FILE_SYSTEMS.has(type);
    if (memoryDirs.size >= MEMORY_DIRS_MAX) memoryDirs.clear();
    memoryDirs.set(dir, answer);
  }
  return answer;
}

/**
 * True when `a` and `b` name the same file: the same path once symbolic links are followed (for a file that does not
 * exist yet, its directory's), or, when both exist, the same device and inode (a hard link).
 *
 * @example
 * ```ts
 * sameFile("out/a.wav", "./out/../out/a.wav"); // true
 * ```
 */
export function sameFile(a: string, b: string): boolean {
  const real = (p: string) => {
    const abs = resolve(p);
    try {
      return Deno.realPathSync(abs);
    } catch {
      try {
        return resolve(Deno.realPathSync(dirname(abs)), abs.slice(dirname(abs).length + 1));
      } catch {
        return abs;
      }
    }
  };
  if (real(a) === real(b)) return true;
  try {
    const sa = Deno.statSync(a);
    const sb = Deno.statSync(b);
    return sa.dev === sb.dev && sa.ino !== null && sa.ino === sb.ino;
  } catch {
    return false;
  }
}
