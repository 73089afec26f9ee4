/**
 * Small helpers shared by tests.
 *
 * @module
 */
import { fileURLToPath } from "node:url";
import type { VirtualClock } from "../core/clock.ts";

/** Converts a `file:` URL to a path. */
export function fromFileUrl(url: URL | string): string {
  return fileURLToPath(url);
}

/** Absolute path of a file in the repository. */
export function repoPath(rel: string): string {
  return fromFileUrl(new URL(`../${rel}`, import.meta.url));
}

/**
 * Waits until `done()` holds in a test on a virtual clock, when what it waits for follows real work (a recording's
 * file operations, which the clock does not wait for): moves `clock` 10 ms, then lets 10 ms of real time pass, in
 * turn, for at most `maxMs` of virtual time, so that the clock never outruns that work however busy the machine is;
 * then waits in real time only, the clock standing still, for at most 30 s. Throws naming `what` if it never holds.
 * With `maxMs` 0 the clock does not move at all.
 */
export async function settleUntil(clock: VirtualClock, done: () => boolean, what: string, maxMs = 2000): Promise<void> {
  for (let t = 0; t < maxMs && !done(); t += 10) {
    await clock.advanceAsync(10, 10);
    await new Promise((r) => setTimeout(r, 10));
  }
  for (let i = 0; i < 3000 && !done(); i++) await new Promise((r) => setTimeout(r, 10));
  if (!done()) throw new Error(`${what}: not within ${maxMs} ms of virtual time and 30 s of real time`);
}
