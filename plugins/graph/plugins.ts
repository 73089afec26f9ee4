/**
 * The graph family's stage plugins, declared: names, formats, option schemas (built on first use) and a `create`
 * that loads the stage's module (`bus_sink.ts`, `bus_source.ts`, `mixer.ts`, `sequence.ts`) when a pipeline first
 * builds one. Loading this module costs next to nothing, so a pipeline that does not use these stages does not pay
 * for them.
 *
 * @module
 */
import { z } from "zod";
import { lazySchema } from "../../core/options.ts";
import { type AnyPlugin, definePlugin, type SinkStage, type SourceStage } from "../../core/stage.ts";
import { lazyModule } from "../../core/lazy.ts";

/** Modules loaded when first used (see `lazyModule`). */
const busSinkModule = lazyModule<typeof import("./bus_sink.ts")>(new URL("./bus_sink.ts", import.meta.url));
const busSourceModule = lazyModule<typeof import("./bus_source.ts")>(new URL("./bus_source.ts", import.meta.url));
const mixerModule = lazyModule<typeof import("./mixer.ts")>(new URL("./mixer.ts", import.meta.url));
const sequenceModule = lazyModule<typeof import("./sequence.ts")>(new URL("./sequence.ts", import.meta.url));

/** Options of `bus-sink` (its zod schema, built on first use). */
export const busSinkSchema = lazySchema(() =>
  z.object({
    bus: z.string().min(1).describe(
      "Name of the session bus to publish on; chains starting with a bus-source (or a mixer) on that name read it",
    ),
  })
);

/** Validated options of `bus-sink`. */
export type BusSinkOptions = z.output<ReturnType<typeof busSinkSchema>>;

/** Options of `bus-source` (its zod schema, built on first use). */
export const busSourceSchema = lazySchema(() =>
  z.object({
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
  })
);

/** Validated options of `bus-source`. */
export type BusSourceOptions = z.output<ReturnType<typeof busSourceSchema>>;

/** Options of `mixer` (its zod schema, built on first use). */
export const mixerSchema = lazySchema(() =>
  z.object({
    buses: z.array(z.string().min(1)).min(1).max(32).describe(
      "Session buses to mix (each published by a bus-sink, or bridged in); input i is buses[i]",
    ),
    mode: z.enum(["sum", "channels"]).default("sum").describe(
      "sum: add the inputs into one mono channel, saturating at full scale; channels: input i becomes output channel i (e.g. a stereo recording, the caller left and us right)",
    ),
    rate: z.number().int().min(1000).max(384000).default(8000).describe(
      "Sample rate in Hz of the inputs and the output (inputs must be pcm mono at this rate)",
    ),
    ptime: z.number().int().min(1).max(1000).default(20).describe("Duration of each output frame in ms"),
    clocked: z.boolean().default(true).describe(
      "true: one frame every ptime on the media clock, silence for an input that has nothing (live calls); false: a frame as soon as every input still running has a frame's worth (file to file, as fast as the inputs)",
    ),
    high_water: z.number().int().min(1).max(10000).default(50).describe(
      "Frames the mixer may hold per input before that bus pushes back on its publishers",
    ),
    until: z.enum(["inputs_end", "stopped"]).default("inputs_end").describe(
      "inputs_end: end once every input's stream has ended and been mixed; stopped (clocked only): keep emitting " +
        "(silence once nothing is left) until the pipeline stops, e.g. what a call sends while its inputs come and go",
    ),
  })
);

/** Validated options of `mixer`. */
export type MixerOptions = z.output<ReturnType<typeof mixerSchema>>;

/** Options of `sequence` (its zod schema, built on first use). */
export const sequenceSchema = lazySchema(() =>
  z.object({
    items: z.array(
      z.looseObject({
        use: z.string().min(1).describe("Source plugin name, or path to a user plugin"),
        name: z.string().optional().describe("Label for logs and stats"),
      }).meta({ $ref: "#/$defs/sourceStage" }),
    ).min(1).describe(
      'Source stages to play in order, each a stage config like {"use": "file-source", "path": "greeting.wav"}; all must produce the same format',
    ),
    then: z.enum(["end", "silence"]).default("end").describe(
      "After the last item: end the stream, or keep emitting silence frames (paced on the media clock) until the pipeline stops",
    ),
    frame_ms: z.number().int().min(1).max(1000).default(20).describe("Duration of each silence frame in ms"),
  })
);

/** Validated options of `sequence`. */
export type SequenceOptions = z.output<ReturnType<typeof sequenceSchema>>;

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
export const busSink = definePlugin({
  name: "bus-sink",
  kind: "sink",
  description: "Publishes frames on a named bus of the session (read by bus-source and mixer stages)",
  accepts: [{ kind: "pcm" }, { kind: "encoded" }, { kind: "rtp" }, { kind: "packet" }],
  get options() {
    return busSinkSchema();
  },
  create: async (options, ctx): Promise<SinkStage> => (await busSinkModule()).createBusSink(options, ctx),
});

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
export const busSource = definePlugin({
  name: "bus-source",
  kind: "source",
  description: "Reads frames from a named bus of the session (a tee when several read one bus)",
  get options() {
    return busSourceSchema();
  },
  create: async (options, ctx): Promise<SourceStage> => (await busSourceModule()).createBusSource(options, ctx),
});

/**
 * Mixes the frames of several buses of the session into one pcm stream at `rate`.
 *
 * - `mode: "sum"` adds every input into one mono channel, saturating at −32768..32767; `mode: "channels"` puts input
 *   i on output channel i (as many channels as buses).
 * - Inputs must be pcm mono at `rate`: a bus whose format is known when the mixer is built or started and is
 *   anything else is refused with a message saying which resampler to insert; a frame in another format fails the
 *   pipeline the same way.
 * - `clocked: true` (live): frame n is emitted at start + n × ptime on the media clock (drift-free), taking a frame's
 *   worth of samples from each input's queue; an input that has less (it started later, or its packets are late)
 *   is completed with silence, and the frame counts as an underrun of that input. An input whose stream ended gives
 *   silence without counting. Input pts are not used: each input's samples are played in arrival order.
 * - `clocked: false` (file to file): a frame is mixed as soon as every input still running has a frame's worth, as
 *   fast as the inputs come; inputs that ended give silence.
 * - A running input contributes a whole frame's worth or nothing (an underrun, counted): what arrived is never split
 *   around a gap of silence. An input whose stream ended gives what it has left.
 * - It ends when every input's stream has ended and every sample has been mixed; the last frame holds what is left
 *   (it may be shorter than ptime). With `until: "stopped"` it never ends by itself: once every input has ended it
 *   emits silence until the pipeline stops. pts counts output samples from 0.
 * - Backpressure: it holds at most `high_water` frames per input before that bus pushes back on its publishers.
 *
 * Per frame it allocates only the frame it emits; samples are mixed in plain loops.
 *
 * stats: `frames`, and per input (`inputs[i]`): `bus`, `samples` taken, `underruns`, `queued` frames, `dropped`
 * (frames lost because the input ran 4 × high_water ahead of the mixer).
 *
 * @example Pipeline config: the caller left, our side right, recorded as it happens
 * ```json
 * { "use": "mixer", "buses": ["caller", "callee"], "mode": "channels", "rate": 8000, "ptime": 20 }
 * ```
 */
export const mixer = definePlugin({
  name: "mixer",
  kind: "source",
  description: "Mixes session buses into one pcm stream: summed to mono, or one input per channel",
  produces: { kind: "pcm" },
  get options() {
    return mixerSchema();
  },
  create: async (options, ctx): Promise<SourceStage> => (await mixerModule()).createMixer(options, ctx),
});

/**
 * Plays its `items`, source stages built from their configs through the registry like any stage of the chain, one
 * after the other as one continuous pcm stream: pts continue across items (an item's pts are shifted to start
 * where the previous item ended). Every item must produce the same format; a mismatch fails the build with a
 * message naming the item and both formats. Items are created when the pipeline is built (a missing file fails
 * the build), each is started just before it plays and closed when it ends.
 *
 * After the last item, `then: "end"` ends the stream; `then: "silence"` keeps emitting frames of zeros of
 * `frame_ms`, frame k at (end of the last item) + k × frame_ms on the media clock, until the pipeline stops.
 *
 * control: `skip` ends the item playing now and goes on with the next one.
 *
 * stats: `item` (index playing; `items.length` once in silence or ended), `samples` emitted (per channel),
 * `silence_frames`, and `items[i]`: each item's own stats.
 *
 * @example Pipeline config: a greeting, a beep, then silence until the call ends
 * ```json
 * { "use": "sequence", "then": "silence", "items": [
 *   { "use": "file-source", "path": "greeting.wav" },
 *   { "use": "tone-source", "frequency": 1000, "duration": 0.3, "sample_rate": 16000 }
 * ] }
 * ```
 */
export const sequence = definePlugin({
  name: "sequence",
  kind: "source",
  description: "Plays source stages one after the other as one stream (then ends, or emits silence)",
  produces: { kind: "pcm" },
  get options() {
    return sequenceSchema();
  },
  create: async (options, ctx): Promise<SourceStage> => (await sequenceModule()).createSequence(options, ctx),
});

/** The stage plugins of this family, registered as built-ins. */
export const plugins: AnyPlugin[] = [busSink, busSource, mixer, sequence];
