/**
 * `bus-sink`: ends a chain on a named bus of its session.
 *
 * @module
 */
import { z } from "zod";
import type { Bus } from "../../core/bus.ts";
import { type Format, formatToString, type Frame } from "../../core/frame.ts";
import { definePlugin, FormatError, type SinkStage } from "../../core/stage.ts";
import { mergeFormat, sameFormat } from "./_format.ts";

/** Options of `bus-sink`. */
export const busSinkOptions = z.object({
  bus: z.string().min(1).describe(
    "Name of the session bus to publish on; chains starting with a bus-source (or a mixer) on that name read it",
  ),
});

/**
 * Publishes every frame on the session's bus `bus` (`ctx.session.bus(name)`), for every `bus-source` and `mixer`
 * reading it, and for buses connected to it (bridges to other sessions).
 *
 * - It attaches as a publisher when it is built, so readers of a bus whose publishing chain has not started yet
 *   wait for it instead of seeing end of stream; the bus's stream ends when every publisher has ended (this one at
 *   the end of its chain, or when the chain stops).
 * - It sets `bus.format` from its negotiated input, so a `bus-source` built after it knows what it produces; two
 *   publishers of one bus must produce the same format (a build-time error otherwise).
 * - Backpressure: `write` returns false while any reader (here or across a bridge) holds more than its high-water
 *   mark, and `drained()` waits for the bus to drain, so a file played into a bus is paced by its slowest reader.
 * - Frames are shared by every reader, not copied: nobody downstream may modify them.
 *
 * stats: `frames` published, `pushed_back` (writes that returned false), `readers` (subscribers now).
 *
 * @example Pipeline config
 * ```json
 * { "use": "bus-sink", "bus": "caller" }
 * ```
 */
export default definePlugin({
  name: "bus-sink",
  kind: "sink",
  description: "Publishes frames on a named bus of the session (read by bus-source and mixer stages)",
  accepts: [{ kind: "pcm" }, { kind: "encoded" }, { kind: "rtp" }, { kind: "packet" }],
  options: busSinkOptions,
  create(options, ctx): SinkStage {
    return new BusSink(ctx.session.bus(options.bus));
  },
});

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
    this.#bus.format = known ? mergeFormat(known, input) : { ...input };
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
