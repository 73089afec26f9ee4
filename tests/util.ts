/**
 * Small helpers shared by tests.
 *
 * @module
 */
import { fileURLToPath } from "node:url";

/** Converts a `file:` URL to a path. */
export function fromFileUrl(url: URL | string): string {
  return fileURLToPath(url);
}

/** Absolute path of a file in the repository. */
export function repoPath(rel: string): string {
  return fromFileUrl(new URL(`../${rel}`, import.meta.url));
}
