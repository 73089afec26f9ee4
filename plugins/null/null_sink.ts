/**
 * `null-sink`: discards every frame and counts what it saw.
 *
 * @module
 */
import type { Frame, FrameKind } from "../../core/frame.ts";
import type { SinkStage, StageContext } from "../../core/stage.ts";
import { nullSink, type NullSinkOptions, nullSinkSchema } from "./plugins.ts";

export { nullSink, type NullSinkOptions };

/** Options of `null-sink` (none; its zod schema, the plugin's `options`). */
export const nullSinkOptions: ReturnType<typeof nullSinkSchema> = nullSinkSchema();

/**
 * Creates a `null-sink` stage: the plugin's `create`, loaded when first used. What the stage does is described on
 * {@linkcode nullSink}.
 */
export function createNullSink(_options: NullSinkOptions, _ctx: StageContext): SinkStage {
  let frames = 0;
  let samples = 0;
  let bytes = 0;
  let duration = 0;
  const byKind: Record<FrameKind, number> = { pcm: 0, encoded: 0, rtp: 0, packet: 0 };
  return {
    negotiate: () => undefined,
    write(frame: Frame): boolean {
      frames++;
      byKind[frame.kind]++;
      switch (frame.kind) {
        case "pcm": {
          const n = frame.samples.length / frame.channels;
          samples += n;
          bytes += frame.samples.byteLength;
          duration += n / frame.sampleRate;
          break;
        }
        case "encoded":
          samples += frame.payload.length;
          bytes += frame.payload.length;
          break;
        case "rtp":
          bytes += frame.payload.length;
          break;
        case "packet":
          bytes += frame.data.length;
          break;
      }
      return true;
    },
    stats: () => ({ frames, frames_by_kind: { ...byKind }, samples, bytes, duration_s: duration }),
  };
}

/** The `null-sink` plugin definition (the same object as `plugins.ts`'s; module-path plugins load the default export). */
export default nullSink;
