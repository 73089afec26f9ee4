/**
 * The relay family's stage plugins, declared: names, formats, option schemas (built on first use) and a `create`
 * that loads the stage's module (`end_marker.ts`, `rtp_timeline.ts`, `silence_detector.ts`) when a pipeline first
 * builds one. Loading this module costs next to nothing, so a pipeline that does not use these stages does not pay
 * for them. (The family's controls, `relay` and `relay-client`, are declared in their own modules.)
 *
 * @module
 */
import { z } from "zod";
import { lazySchema } from "../../core/options.ts";
import { type AnyPlugin, definePlugin, type TransformStage } from "../../core/stage.ts";
import { lazyModule } from "../../core/lazy.ts";

/** Modules loaded when first used (see `lazyModule`). */
const endMarkerModule = lazyModule<typeof import("./end_marker.ts")>(new URL("./end_marker.ts", import.meta.url));
const rtpTimelineModule = lazyModule<typeof import("./rtp_timeline.ts")>(new URL("./rtp_timeline.ts", import.meta.url));
const silenceDetectorModule = lazyModule<typeof import("./silence_detector.ts")>(
  new URL("./silence_detector.ts", import.meta.url),
);

/** Options of the `rtp-end-marker` stage: none (its zod schema, built on first use). */
export const rtpEndMarkerSchema = lazySchema(() => z.strictObject({}));

/** Options of the `rtp-end-detector` stage: none (its zod schema, built on first use). */
export const rtpEndDetectorSchema = lazySchema(() => z.strictObject({}));

/** Options of the `rtp-timeline` stage: none (its zod schema, built on first use). */
export const rtpTimelineSchema = lazySchema(() => z.strictObject({}));

/** Options of the `silence-detector` stage (its zod schema, built on first use). */
export const silenceDetectorSchema = lazySchema(() =>
  z.strictObject({
    seconds: z.number().min(0.1).max(3600).default(10).describe(
      "Seconds of silent input before the warning, 0.1..3600 (default 10).",
    ),
    threshold_dbfs: z.number().min(-96).max(0).default(-60).describe(
      "A sample is silent when its level is at or below this, in dB of full scale, -96..0 (default -60: |sample| <= 32).",
    ),
  })
);

/** Validated options of the `silence-detector` stage. */
export type SilenceDetectorOptions = z.output<ReturnType<typeof silenceDetectorSchema>>;

/** The `rtp-end-marker` plugin definition (the stage: `end_marker.ts`). */
export const rtpEndMarker = definePlugin({
  name: "rtp-end-marker",
  kind: "transform",
  description: "Passes RTP through and, at end of stream, sends the end-of-transmission marker (empty, marker bit)",
  accepts: [{ kind: "rtp" }],
  produces: { kind: "rtp" },
  /** Passes each frame on as it is; of the last it reads only header fields and the payload's length. */
  passesInputThrough: true,
  get options() {
    return rtpEndMarkerSchema();
  },
  create: async (): Promise<TransformStage> => (await endMarkerModule()).createRtpEndMarker(),
});

/** The `rtp-end-detector` plugin definition (the stage: `end_marker.ts`). */
export const rtpEndDetector = definePlugin({
  name: "rtp-end-detector",
  kind: "transform",
  description: 'Drops end-of-transmission markers and raises the event "end-of-transmission"; passes the rest',
  accepts: [{ kind: "rtp" }],
  produces: { kind: "rtp" },
  get options() {
    return rtpEndDetectorSchema();
  },
  create: async (_opts, sctx): Promise<TransformStage> => (await endMarkerModule()).createRtpEndDetector(sctx),
});

/** The `rtp-timeline` plugin definition (the stage: `rtp_timeline.ts`). */
export const rtpTimeline = definePlugin({
  name: "rtp-timeline",
  kind: "transform",
  description: "RTP → encoded frames at their RTP timestamps, no playout clock (record on the sender's timeline)",
  accepts: [{ kind: "rtp" }],
  produces: { kind: "encoded" },
  get options() {
    return rtpTimelineSchema();
  },
  create: async (): Promise<TransformStage> => (await rtpTimelineModule()).createRtpTimeline(),
});

/** The `silence-detector` plugin definition (the stage: `silence_detector.ts`). */
export const silenceDetector = definePlugin({
  name: "silence-detector",
  kind: "transform",
  description: "Passes PCM through; warns once when the input stays silent for a number of seconds",
  accepts: [{ kind: "pcm" }],
  produces: { kind: "pcm" },
  get options() {
    return silenceDetectorSchema();
  },
  create: async (opts, sctx): Promise<TransformStage> =>
    (await silenceDetectorModule()).createSilenceDetector(opts, sctx),
});

/** The relay family's stage plugins, registered as built-ins (in the order of the family's `plugins`). */
export const plugins: AnyPlugin[] = [rtpEndMarker, rtpEndDetector, rtpTimeline, silenceDetector];
