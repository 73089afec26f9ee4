/**
 * The audio-device family's stage plugins, declared: names, formats, option schemas (built on first use) and a
 * `create` that loads the stage's module (`speaker.ts`, `microphone.ts`, and with them the native binding's loader)
 * when a pipeline first builds one. Loading this module costs next to nothing: it loads neither the binding nor the
 * device streams, so a pipeline without device stages does not pay for them.
 *
 * @module
 */
import { z } from "zod";
import { lazySchema } from "../../core/options.ts";
import { type AnyPlugin, definePlugin, type SinkStage, type SourceStage } from "../../core/stage.ts";
import { lazyModule } from "../../core/lazy.ts";

/** Modules loaded when first used (see `lazyModule`). */
const speakerModule = lazyModule<typeof import("./speaker.ts")>(new URL("./speaker.ts", import.meta.url));
const microphoneModule = lazyModule<typeof import("./microphone.ts")>(new URL("./microphone.ts", import.meta.url));

/** The `device` option: a PortAudio id, or (part of) a device name (its zod schema, built on first use). */
export const deviceOptionSchema = lazySchema(() =>
  z
    .union([z.string().min(1), z.number().int().min(0)])
    .optional()
    .describe(
      'Device: its id or (part of) its name as `--list-devices` prints them (e.g. "default", "USB"); default: the system default device',
    )
);

/** The `duplex` option (its zod schema, built on first use). */
export const duplexOptionSchema = lazySchema(() =>
  z.boolean().default(true).describe(
    "Share one PortAudio stream (one device clock) with the microphone/speaker of this process that uses the same device at the same rate",
  )
);

/** Options of `speaker` (its zod schema, built on first use). */
export const speakerSchema = lazySchema(() =>
  z.object({
    device: deviceOptionSchema(),
    latency_ms: z.number().int().min(10).max(2000).default(60).describe(
      "Audio kept queued ahead of the device (ms): playback starts (and restarts after an underrun) once this much is " +
        "queued, and write() asks upstream to wait above it. The sink adds about this much latency, plus the device's " +
        "own buffer; more absorbs more jitter",
    ),
    pause_mode: z.enum(["drop", "hold"]).default("drop").describe(
      'While paused: "drop" discards arriving frames (live audio: a call); "hold" keeps them and holds upstream ' +
        "back through backpressure (a file: playback resumes where it paused)",
    ),
    duplex: duplexOptionSchema(),
  })
);

/** Validated options of `speaker`. */
export type SpeakerOptions = z.output<ReturnType<typeof speakerSchema>>;

/** Options of `microphone` (its zod schema, built on first use). */
export const microphoneSchema = lazySchema(() =>
  z.object({
    device: deviceOptionSchema(),
    sample_rate: z.number().int().min(8000).max(192000).default(16000).describe(
      "Capture rate in Hz (the device must support it; 8000 for G.711 without a resampler)",
    ),
    channels: z.number().int().min(1).max(32).default(1).describe("Captured channels (interleaved)"),
    frame_ms: z.number().int().min(5).max(200).default(20).describe("Duration of each emitted frame (ms)"),
    duration: z.number().positive().optional().describe(
      "Stop after capturing this many seconds (end of stream); default: capture until the pipeline stops",
    ),
    duplex: duplexOptionSchema(),
  })
);

/** Validated options of `microphone`. */
export type MicrophoneOptions = z.output<ReturnType<typeof microphoneSchema>>;

/**
 * The `speaker` plugin definition: plays pcm on an audio output device (the stage and its behaviour: `speaker.ts`).
 * Creating one loads the native binding and resolves the device.
 */
export const speaker = definePlugin({
  name: "speaker",
  kind: "sink",
  description: "Plays pcm on an audio output device (PortAudio through naudiodon)",
  accepts: [{ kind: "pcm" }],
  realtime: true,
  get options() {
    return speakerSchema();
  },
  create: async (options, ctx): Promise<SinkStage> => (await speakerModule()).createSpeaker(options, ctx),
});

/**
 * The `microphone` plugin definition: captures pcm from an audio input device (the stage and its behaviour:
 * `microphone.ts`). Creating one loads the native binding and resolves the device.
 */
export const microphone = definePlugin({
  name: "microphone",
  kind: "source",
  description: "Captures pcm from an audio input device (PortAudio through naudiodon)",
  produces: { kind: "pcm" },
  realtime: true,
  get options() {
    return microphoneSchema();
  },
  create: async (options, ctx): Promise<SourceStage> => (await microphoneModule()).createMicrophone(options, ctx),
});

/** The stage plugins of this family, registered as built-ins. */
export const plugins: AnyPlugin[] = [speaker, microphone];
