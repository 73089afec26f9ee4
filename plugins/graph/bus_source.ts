/**
 * `bus-source`: starts a chain from a named bus of its session.
 *
 * @module
 */
import type { Bus, BusSubscription } from "../../core/bus.ts";
import { type Format, formatToString } from "../../core/frame.ts";
import { FormatError, type RunContext, type SourceStage, type StageContext } from "../../core/stage.ts";
import { busSource, type BusSourceOptions, busSourceSchema } from "./plugins.ts";
import { mergeFormat, sameFormat, withoutLength } from "./_format.ts";

export { busSource, type BusSourceOptions };

/** Options of `bus-source` (its zod schema; the plugin's `options`). */
export const busSourceOptions: ReturnType<typeof busSourceSchema> = busSourceSchema();

type Options = BusSourceOptions;

/** The format the options declare, or undefined when they declare none. */
function declaredFormat(o: Options): Format | undefined {
  const kind = o.kind ?? (o.rate || o.channels ? "pcm" : o.codec ? "encoded" : undefined);
  if (!kind) return undefined;
  const f: Format = { kind };
  if (o.rate !== undefined) f.sampleRate = o.rate;
  if (o.channels !== undefined) f.channels = o.channels;
  if (o.codec !== undefined) {
    f.codec = o.codec;
    f.clockRate = 8000;
  }
  return f;
}

/**
 * Creates a `bus-source` stage from validated options: the plugin's `create`, loaded when first used. What the stage
 * does is described on {@linkcode busSource}.
 */
export function createBusSource(options: BusSourceOptions, ctx: StageContext): SourceStage {
  return new BusSource(ctx.session.bus(options.bus), options);
}

/** The `bus-source` plugin definition (the same object as `plugins.ts`'s; module-path plugins load the default export). */
export default busSource;

class BusSource implements SourceStage {
  readonly #bus: Bus;
  readonly #sub: BusSubscription;
  readonly #declared: Format | undefined;
  #frames = 0;

  constructor(bus: Bus, o: Options) {
    this.#bus = bus;
    this.#declared = declaredFormat(o);
    this.#sub = bus.subscribe(o.high_water);
  }

  negotiate(): Format {
    const known = this.#bus.format;
    const declared = this.#declared;
    if (known) {
      if (declared && !sameFormat(known, declared)) throw this.#mismatch(known, declared);
      return declared ? mergeFormat(known, declared) : withoutLength(known);
    }
    if (declared) return declared;
    throw new FormatError(
      `bus "${this.#bus.name}" has no format yet (the chain publishing on it is built after this one): put that ` +
        `chain first in the file, or declare the format here, e.g. "kind": "pcm", "rate": 8000, "channels": 1`,
    );
  }

  #mismatch(known: Format, declared: Format): FormatError {
    return new FormatError(
      `bus "${this.#bus.name}" carries ${formatToString(known)}, but this bus-source declares ` +
        `${formatToString(declared)}: make the declared fields match, or leave them out`,
    );
  }

  start(): void {
    // Every chain of the session is built by now: check what was declared against what is published.
    const known = this.#bus.format;
    if (known && this.#declared && !sameFormat(known, this.#declared)) throw this.#mismatch(known, this.#declared);
  }

  async run(rc: RunContext): Promise<void> {
    const sub = this.#sub;
    const bus = this.#bus;
    // A stop wakes a pending next() (it resolves undefined once closed).
    const onAbort = () => sub.close();
    rc.signal.addEventListener("abort", onAbort, { once: true });
    try {
      while (!rc.signal.aborted) {
        let f = sub.poll();
        if (!f) {
          if (bus.ended) return;
          f = await sub.next();
          if (!f || rc.signal.aborted) return;
        }
        this.#frames++;
        if (!rc.emit(f)) await rc.ready();
      }
    } finally {
      rc.signal.removeEventListener("abort", onAbort);
      sub.close();
    }
  }

  close(): void {
    this.#sub.close();
  }

  stats(): Record<string, unknown> {
    return { bus: this.#bus.name, frames: this.#frames, queued: this.#sub.queued, dropped: this.#sub.dropped };
  }
}
