/**
 * Random identifiers: Via branches, tags and Call-IDs (RFC 3261 §8.1.1.4, §8.1.1.7, §19.3).
 *
 * @module
 */
import { randomHexString } from "../../core/random.ts";

/** The RFC 3261 magic cookie that starts every branch we generate (§8.1.1.7). */
export const MAGIC_COOKIE = "z9hG4bK";

/**
 * Returns `bytes` random bytes as lowercase hex (from `crypto.getRandomValues`, through `core/random.ts`'s pool).
 *
 * @example
 * ```ts
 * randomHex(4); // e.g. "9f86d081"
 * ```
 */
export function randomHex(bytes: number): string {
  return randomHexString(bytes);
}

/**
 * A new Via branch: the magic cookie followed by 64 random bits.
 *
 * @example
 * ```ts
 * newBranch(); // e.g. "z9hG4bK5f1c0e8d2a7b3c4d"
 * ```
 */
export function newBranch(): string {
  return MAGIC_COOKIE + randomHex(8);
}

/**
 * A new From/To tag (48 random bits as hex).
 *
 * @example
 * ```ts
 * newTag(); // e.g. "a84b4c76e667"
 * ```
 */
export function newTag(): string {
  return randomHex(6);
}

/**
 * A new globally unique Call-ID (128 random bits as hex).
 *
 * @example
 * ```ts
 * newCallId(); // e.g. "3f2a...e1"
 * ```
 */
export function newCallId(): string {
  return randomHex(16);
}
