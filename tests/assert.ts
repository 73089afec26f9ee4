/**
 * Assertions for tests, on `node:assert/strict` (JSR's `@std/assert` is not
 * reachable here). Same names and argument order as `@std/assert`, so a user
 * with JSR can swap the import.
 *
 * @module
 */
import nodeAssert from "node:assert/strict";

/** Asserts that `cond` is truthy. */
export function assert(cond: unknown, msg?: string): asserts cond {
  nodeAssert.ok(cond, msg);
}

/** Asserts deep strict equality. */
export function assertEquals<T>(actual: T, expected: T, msg?: string): void {
  nodeAssert.deepStrictEqual(actual, expected, msg);
}

/** Asserts that `actual` matches the regular expression. */
export function assertMatch(actual: string, re: RegExp, msg?: string): void {
  nodeAssert.match(actual, re, msg);
}

/** Asserts that the function throws an instance of `cls`; returns the error. */
export function assertThrows<E extends Error>(fn: () => unknown, cls: new (...a: never[]) => E, includes?: string): E {
  try {
    fn();
  } catch (e) {
    nodeAssert.ok(e instanceof cls, `expected ${cls.name}, got ${e}`);
    if (includes) {
      nodeAssert.ok((e as Error).message.includes(includes), `"${(e as Error).message}" lacks "${includes}"`);
    }
    return e as E;
  }
  throw new nodeAssert.AssertionError({ message: `expected ${cls.name} to be thrown` });
}

/** Asserts that the promise returned by `fn` rejects with an instance of `cls`; returns the error. */
export async function assertRejects<E extends Error>(
  fn: () => Promise<unknown>,
  cls: new (...a: never[]) => E,
  includes?: string,
): Promise<E> {
  try {
    await fn();
  } catch (e) {
    nodeAssert.ok(e instanceof cls, `expected ${cls.name}, got ${e}`);
    if (includes) {
      nodeAssert.ok((e as Error).message.includes(includes), `"${(e as Error).message}" lacks "${includes}"`);
    }
    return e as E;
  }
  throw new nodeAssert.AssertionError({ message: `expected ${cls.name} to be rejected` });
}
