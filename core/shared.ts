/**
 * Process-wide shared resources with reference counting: one UDP socket shared by
 * the source and sink of a call, one RTP session shared by its RTCP reporters.
 *
 * @module
 */

interface Entry {
  value: unknown;
  owners: Set<object>;
  dispose?: (value: unknown) => void | Promise<void>;
}

/**
 * A registry of shared resources keyed by string. Each owner (a pipeline) holds
 * at most one reference per key; the resource is disposed when the last owner
 * releases it.
 *
 * @example
 * ```ts
 * const owner = {};
 * const sock = sharedResources.acquire(owner, "udp:127.0.0.1:4000", () => ({ n: 1 }));
 * await sharedResources.releaseAll(owner);
 * ```
 */
export class SharedResources {
  readonly #entries = new Map<string, Entry>();

  /** Returns the resource for `key`, creating it on first use; `owner` holds a reference. */
  acquire<T>(owner: object, key: string, create: () => T, dispose?: (value: T) => void | Promise<void>): T {
    let e = this.#entries.get(key);
    if (!e) {
      e = { value: create(), owners: new Set(), dispose: dispose as Entry["dispose"] };
      this.#entries.set(key, e);
    }
    e.owners.add(owner);
    return e.value as T;
  }

  /** True when a resource is held under `key`. */
  has(key: string): boolean {
    return this.#entries.has(key);
  }

  /** Releases every reference `owner` holds, disposing resources no one holds any more. */
  async releaseAll(owner: object): Promise<void> {
    for (const [key, e] of [...this.#entries]) {
      if (!e.owners.delete(owner)) continue;
      if (e.owners.size === 0) {
        this.#entries.delete(key);
        await e.dispose?.(e.value);
      }
    }
  }
}

/** The process-wide registry. */
export const sharedResources: SharedResources = new SharedResources();
