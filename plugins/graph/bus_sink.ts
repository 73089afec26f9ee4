/**
 * `bus-sink`: ends a chain on a named bus of its session.
 *
 * @module
 */
import type { Bus } from "../../core/bus.ts";
import { type Format, formatToString, type Frame } from "../../core/frame.ts";
import { FormatError, type SinkStage, type StageContext } from "../../core/stage.ts";
import { busSink, type BusSinkOptions, busSinkSchema } from "./plugins.ts";
import { mergeFormat, sameFormat, withoutLength } from "./_format.ts";

export { busSink, type BusSinkOptions };

/** Options of `bus-sink` (its zod schema; the plugin's `options`). */
export const busSinkOptions: ReturnType<typeof busSinkSchema> = busSinkSchema();

/**
 * Creates a `bus-sink` stage from validated options: the plugin's `create`, loaded when first used. What the stage
 * does is described on {@linkcode busSink}.
 */
export function createBusSink(options: BusSinkOptions, ctx: StageContext): SinkStage {
  return new BusSink(ctx.session.bus(options.bus));
}

/** The `bus-sink` plugin definition (the same object as `plugins.ts`'s; module-path plugins load the default export). */
export default busSink;

class BusSink implements SinkStage {
  readonly #bus: Bus;
  readonly #end: () => void;
  #frames = 0;
  #pushedBack = 0;

  constructor(bus: Bus) {
    this.#bus = bus;
    this.#end = bus.attachPublisher();
  }

  negotiate(input: Format | undefined): undefined {
    if (!input) return undefined;
    const known = this.#bus.format;
    if (known && !sameFormat(known, input)) {
      throw new FormatError(
        `bus "${this.#bus.name}" already carries ${formatToString(known)} from another publisher, but this chain ` +
          `produces ${formatToString(input)}: every publisher of a bus must produce the same format (insert a ` +
          `resampler or codec before this bus-sink, or publish on another bus)`,
      );
    }
    this.#bus.format = known ? mergeFormat(known, input) : withoutLength(input); // publishers come and go: no length
    return undefined;
  }

  write(frame: Frame): boolean {
    this.#frames++;
    if (this.#bus.publish(frame)) return true;
    this.#pushedBack++;
    return false;
  }

  drained(): Promise<void> {
    return this.#bus.drained();
  }

  end(): void {
    this.#end();
  }

  close(): void {
    this.#end();
  }

  stats(): Record<string, unknown> {
    return { bus: this.#bus.name, frames: this.#frames, pushed_back: this.#pushedBack, readers: this.#bus.subscribers };
  }
}
