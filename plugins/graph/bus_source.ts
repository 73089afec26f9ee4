/**
 * `bus-source`: starts a chain from a named bus of its session.
 *
 * @module
 */
import { z } from "zod";
import type { Bus, BusSubscription } from "../../core/bus.ts";
import { type Format, formatToString } from "../../core/frame.ts";
import { definePlugin, FormatError, type RunContext, type SourceStage } from "../../core/stage.ts";
import { mergeFormat, sameFormat } from "./_format.ts";

/** Options of `bus-source`. */
export const busSourceOptions = z.object({
  bus: z.string().min(1).describe("Name of the session bus to read (published by a bus-sink, or bridged in)"),
  kind: z.enum(["pcm", "encoded", "rtp", "packet"]).optional().describe(
    "Kind of frames on the bus, when its publishing chain is built after this one (else taken from the bus)",
  ),
  rate: z.number().int().min(1000).max(384000).optional().describe(
    "pcm: sample rate in Hz, when the publishing chain is built after this one",
  ),
  channels: z.number().int().min(1).max(32).optional().describe(
    "pcm: channels, when the publishing chain is built after this one",
  ),
  codec: z.enum(["PCMU", "PCMA"]).optional().describe(
    "encoded / rtp: codec, when the publishing chain is built after this one",
  ),
  high_water: z.number().int().min(1).max(10000).default(50).describe(
    "Frames this reader may hold before the bus pushes back on its publishers (it holds at most 4× as many; the oldest are dropped beyond)",
  ),
});

type Options = z.output<typeof busSourceOptions>;

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
 * Emits every frame published on the session's bus `bus`, in order, until the bus's stream ends (every publisher
 * ended and nothing is left) or the pipeline stops.
 *
 * - It subscribes when it is built, so it misses nothing a chain started before it publishes. Several bus sources
 *   on one bus are a tee: each gets every frame (shared, not copied: nobody may modify them).
 * - Produced format: the bus's (`bus.format`, set by the bus-sink that publishes on it) when that chain was built
 *   first; else the format these options declare (`kind`, `rate`, `channels`, `codec`), checked against the bus's
 *   when the pipeline starts. With neither, the build fails saying to declare it.
 * - Backpressure: it holds up to `high_water` frames before the bus pushes back on the publishers; when its own
 *   downstream pushes back it stops reading, so the publishers slow down too. Stopping the chain unsubscribes it,
 *   so it never holds the others back.
 *
 * stats: `frames` emitted, `queued` (frames waiting), `dropped` (frames lost because this reader fell 4 × high_water
 * behind).
 *
 * @example Pipeline config
 * ```json
 * { "use": "bus-source", "bus": "caller", "rate": 8000, "channels": 1 }
 * ```
 */
export default definePlugin({
  name: "bus-source",
  kind: "source",
  description: "Reads frames from a named bus of the session (a tee when several read one bus)",
  options: busSourceOptions,
  create(options, ctx): SourceStage {
    return new BusSource(ctx.session.bus(options.bus), options);
  },
});

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
      return declared ? mergeFormat(known, declared) : { ...known };
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
