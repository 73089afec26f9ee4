/**
 * A tiny typed event emitter used by the user agent and its calls.
 *
 * @module
 */

/** A listener for an event carrying `T`. */
export type Listener<T> = (event: T) => void;

/**
 * Typed event emitter: `Events` maps event names to payload types.
 * Listener exceptions are caught and passed to `onListenerError` so that one
 * faulty listener never breaks the SIP stack.
 *
 * @example
 * ```ts
 * const e = new Emitter<{ ended: { reason: string } }>();
 * e.on("ended", (ev) => console.log(ev.reason));
 * e.emit("ended", { reason: "BYE" });
 * ```
 */
export class Emitter<Events extends object> {
  #listeners = new Map<keyof Events, Set<Listener<never>>>();
  /** Called when a listener throws (default: `console.error`). */
  onListenerError: (error: unknown, event: keyof Events) => void = (e) => console.error(e);

  /** Adds a listener; returns a function that removes it. */
  on<K extends keyof Events>(event: K, fn: Listener<Events[K]>): () => void {
    let set = this.#listeners.get(event);
    if (!set) this.#listeners.set(event, set = new Set());
    set.add(fn as Listener<never>);
    return () => this.off(event, fn);
  }

  /** Adds a listener that runs at most once; returns a function that removes it. */
  once<K extends keyof Events>(event: K, fn: Listener<Events[K]>): () => void {
    const off = this.on(event, (ev) => {
      off();
      fn(ev);
    });
    return off;
  }

  /** Removes a listener. */
  off<K extends keyof Events>(event: K, fn: Listener<Events[K]>): void {
    this.#listeners.get(event)?.delete(fn as Listener<never>);
  }

  /** Number of listeners for `event`. */
  listenerCount<K extends keyof Events>(event: K): number {
    return this.#listeners.get(event)?.size ?? 0;
  }

  /** Calls every listener of `event` with `payload`; returns how many of them threw. */
  emit<K extends keyof Events>(event: K, payload: Events[K]): number {
    const set = this.#listeners.get(event);
    if (!set) return 0;
    let failed = 0;
    for (const fn of [...set]) {
      try {
        (fn as Listener<Events[K]>)(payload);
      } catch (e) {
        failed++;
        this.onListenerError(e, event);
      }
    }
    return failed;
  }
}
