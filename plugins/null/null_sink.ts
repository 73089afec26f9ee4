/**
 * `null-sink`: discards every frame and counts what it saw.
 *
 * @module
 */
import { z } from "zod";
import type { Frame, FrameKind } from "../../core/frame.ts";
import { definePlugin, type SinkStage } from "../../core/stage.ts";

/** Options of `null-sink` (none). */
export const nullSinkOptions = z.object({});

/**
 * Accepts frames of any kind and drops them, as fast as they come (never
 * applies backpressure). Useful to measure a chain's throughput or to terminate
 * a pipeline whose output is not needed.
 *
 * stats: `frames` (all kinds), `frames_by_kind`, `samples` (pcm: samples per
 * channel; encoded: codec samples, i.e. payload bytes for G.711), `bytes`
 * (payload bytes of encoded, rtp and packet frames; pcm sample bytes),
 * `duration_s` (pcm audio seen, at its own rate).
 *
 * @example Pipeline config
 * ```json
 * { "use": "null-sink" }
 * ```
 */
export default definePlugin({
  name: "null-sink",
  kind: "sink",
  description: "Discards every frame (counts frames and samples)",
  accepts: [{ kind: "pcm" }, { kind: "encoded" }, { kind: "rtp" }, { kind: "packet" }],
  options: nullSinkOptions,
  create(): SinkStage {
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
  },
});
