/**
 * Path helpers (JSR's `@std/path` is not reachable here; `core/path.ts` holds what `node:path` and `node:url`
 * would give, without loading them).
 *
 * @module
 */
import { pathToFileUrl } from "./path.ts";

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
