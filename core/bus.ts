/**
 * Buses: named links between chains, so a pipeline is a graph, not only a
 * line. A chain ending in a bus sink publishes its frames on a bus of its
 * session; every chain starting with a bus source on that bus receives them
 * all (fan-out, like a tee); a mixer source reads several buses. A control
 * plugin connects a bus of one session to a bus of another (a bridge: one
 * call's audio into another call, or into a WebSocket).
 *
 * Frames on a bus are shared by every subscriber: nobody may modify one.
 * Backpressure holds: `publish` returns false while any subscriber holds more
 * than its high-water mark, and `drained()` resolves when all are below half
 * of it, so a file played into a bus is paced by the slowest consumer.
 *
 * @example
 * ```ts
 * const bus = session.bus("caller");
 * const sub = bus.subscribe();
 * const done = bus.attachPublisher();
 * bus.publish(frame);
 * done(); // end of stream: sub.next() resolves undefined once drained
 * ```
 *
 * @module
 */
import type { Format, Frame } from "./frame.ts";

/** Frames a subscriber holds by default before the bus pushes back. */
export const DEFAULT_HIGH_WATER = 50;

/** One reader of a bus. */
export class BusSubscription {
  readonly #bus: Bus;
  readonly #highWater: number;
  #queue: Frame[] = [];
  #head = 0;
  #waiter: ((f: Frame | undefined) => void) | undefined;
  #closed = false;
  /** Frames dropped because the subscription was over `maxQueue` (a consumer that stopped reading). */
  dropped = 0;
  /** Largest number of frames queued is bounded by this; beyond, the oldest are dropped. */
  readonly maxQueue: number;

  /**
   * Use {@linkcode Bus.subscribe}.
   * @param bus the bus
   * @param highWater frames held before the bus pushes back
   * @param maxQueue frames held at most (oldest dropped beyond)
   */
  constructor(bus: Bus, highWater: number, maxQueue: number) {
    this.#bus = bus;
    this.#highWater = highWater;
    this.maxQueue = maxQueue;
  }

  /** Frames waiting to be read. */
  get queued(): number {
    return this.#queue.length - this.#head;
  }

  /** True while this subscription holds more than its high-water mark. */
  get full(): boolean {
    return this.queued >= this.#highWater;
  }

  /** True while it holds at most half its high-water mark. */
  get low(): boolean {
    return this.queued <= this.#highWater / 2;
  }

  /** Hands a frame to the reader (called by the bus). */
  push(frame: Frame): void {
    if (this.#closed) return;
    const w = this.#waiter;
    if (w) {
      this.#waiter = undefined;
      w(frame);
      return;
    }
    if (this.queued >= this.maxQueue) {
      this.#head++;
      this.dropped++;
    }
    this.#queue.push(frame);
  }

  /** Wakes a reader waiting at end of stream (called by the bus). */
  end(): void {
    const w = this.#waiter;
    this.#waiter = undefined;
    w?.(undefined);
  }

  /** A frame already queued, or undefined; never waits. */
  poll(): Frame | undefined {
    if (this.#head >= this.#queue.length) return undefined;
    const f = this.#queue[this.#head];
    this.#queue[this.#head++] = undefined as unknown as Frame;
    if (this.#head > 1024 && this.#head * 2 > this.#queue.length) {
      this.#queue = this.#queue.slice(this.#head);
      this.#head = 0;
    }
    if (this.low) this.#bus.subscriberLow();
    return f;
  }

  /** The next frame; undefined at end of stream (every publisher ended and the queue is empty) or after close. */
  next(): Promise<Frame | undefined> {
    const f = this.poll();
    if (f || this.#closed || this.#bus.ended) return Promise.resolve(f);
    return new Promise((resolve) => this.#waiter = resolve);
  }

  /** Stops reading: the bus forgets this subscription (a pending `next()` resolves undefined). */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#queue = [];
    this.#head = 0;
    this.#bus.unsubscribe(this);
    this.end();
  }
}

/** A named link between chains; see the module documentation. */
export class Bus {
  /** The bus name (from the pipeline file). */
  readonly name: string;
  /** The format of the frames published, once a publisher said it (bus sources use it at build time). */
  format: Format | undefined;
  readonly #subs = new Set<BusSubscription>();
  readonly #targets = new Map<Bus, () => void>();
  #publishers = 0;
  #hadPublisher = false;
  #drainWaiters: (() => void)[] = [];
  /** Frames published. */
  published = 0;

  /**
   * Creates a bus; sessions create theirs with `session.bus(name)`.
   * @param name the bus name
   */
  constructor(name: string) {
    this.name = name;
  }

  /** True once every publisher that attached has ended (and at least one did). */
  get ended(): boolean {
    return this.#hadPublisher && this.#publishers === 0;
  }

  /** Publishers attached and not ended (bus sinks, and buses connected into this one). */
  get publishers(): number {
    return this.#publishers;
  }

  /** Subscribers right now. */
  get subscribers(): number {
    return this.#subs.size;
  }

  /**
   * Adds a reader. It receives every frame published from now on.
   * @param highWater frames it may hold before the bus pushes back (default 50)
   * @param maxQueue frames it may hold at all (oldest dropped beyond; default 4 × highWater)
   */
  subscribe(highWater = DEFAULT_HIGH_WATER, maxQueue = highWater * 4): BusSubscription {
    const s = new BusSubscription(this, highWater, maxQueue);
    this.#subs.add(s);
    return s;
  }

  /** Removes a reader (called by {@linkcode BusSubscription.close}). */
  unsubscribe(s: BusSubscription): void {
    this.#subs.delete(s);
    this.subscriberLow();
  }

  /**
   * Declares a publisher; returns the function it calls at its end of stream.
   * When every publisher has ended, readers get end of stream.
   */
  attachPublisher(): () => void {
    this.#publishers++;
    this.#hadPublisher = true;
    let done = false;
    return () => {
      if (done) return;
      done = true;
      if (--this.#publishers === 0) {
        for (const s of this.#subs) s.end();
        // The stream ended here: it ends on every bus it was bridged into too.
        for (const end of [...this.#targets.values()]) end();
        this.#wakeDrain();
      }
    };
  }

  /**
   * Sends a frame to every reader (and every connected bus). Returns false when
   * a reader is above its high-water mark: wait for {@linkcode drained}.
   */
  publish(frame: Frame): boolean {
    this.published++;
    let ok = true;
    for (const s of this.#subs) {
      s.push(frame);
      if (s.full) ok = false;
    }
    for (const t of this.#targets.keys()) if (!t.publish(frame)) ok = false;
    return ok;
  }

  /**
   * Resolves when every reader is at or below half its high-water mark, and
   * every connected bus has drained too (`publish` reports their readers'
   * backpressure, so a chain published into a bridge is paced by the far side).
   */
  drained(): Promise<void> {
    const own = this.#allLow() ? undefined : new Promise<void>((resolve) => this.#drainWaiters.push(resolve));
    if (this.#targets.size === 0) return own ?? Promise.resolve();
    return (async () => {
      await own;
      for (const t of [...this.#targets.keys()]) await t.drained();
    })();
  }

  /**
   * Also publishes everything published here on `target` (a bridge, e.g. to a
   * bus of another call's session), which counts the bridge as one of its
   * publishers: when this bus's stream ends, the bridge ends too. Returns a
   * function that disconnects (ending the bridge's share of the target's
   * stream).
   */
  connect(target: Bus): () => void {
    if (target === this) throw new Error(`bus "${this.name}" cannot be connected to itself`);
    if (this.#targets.has(target)) return this.#targets.get(target)!;
    if (this.ended) return () => {};
    target.format ??= this.format;
    target.#publishers++;
    target.#hadPublisher = true;
    let done = false;
    const end = () => {
      if (done) return;
      done = true;
      this.#targets.delete(target);
      if (--target.#publishers === 0) {
        for (const s of target.#subs) s.end();
      }
    };
    this.#targets.set(target, end);
    return end;
  }

  /** A reader fell to its low-water mark (called by the subscription). */
  subscriberLow(): void {
    if (this.#drainWaiters.length > 0 && this.#allLow()) this.#wakeDrain();
  }

  #allLow(): boolean {
    for (const s of this.#subs) if (!s.low) return false;
    return true;
  }

  #wakeDrain(): void {
    const w = this.#drainWaiters;
    this.#drainWaiters = [];
    for (const f of w) f();
  }
}
