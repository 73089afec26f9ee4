/**
 * `wav-source`: streams a WAV file as 16-bit PCM frames.
 *
 * @module
 */
import { resolve } from "../../core/path.ts";
import { z } from "zod";
import { pathOption } from "../../core/options.ts";
import { definePlugin, type SourceStage } from "../../core/stage.ts";
import { emitPcmFrames, frameSamples } from "./pcm_stream.ts";
import { describeWav, readWavInfo } from "./wav_format.ts";
import { WavStreamReader } from "./wav_reader.ts";

/** Options of `wav-source`. */
export const wavSourceOptions = z.object({
  path: pathOption().describe(
    "WAV file to read; relative to the pipeline file's directory (a --set value: to the working directory)",
  ),
  frame_ms: z.number().int().min(1).max(1000).default(20).describe(
    "Frame duration in milliseconds (the last frame of the file may be shorter)",
  ),
  loop: z.boolean().default(false).describe(
    "Start again at the beginning when the file ends, until the pipeline is stopped",
  ),
});

/**
 * Reads a WAV file and emits 16-bit PCM frames of `frame_ms`, pts in samples,
 * as fast as downstream accepts them (a paced sink downstream sets real time).
 *
 * Reads integer PCM 8/16/24/32-bit, IEEE float 32/64-bit and G.711 A-law/µ-law,
 * any rate and channel count, plain or WAVE_FORMAT_EXTENSIBLE (ffmpeg's
 * `pcm_f32le` and >2-channel files), RIFF or RF64. Conversion to 16 bits: 8-bit
 * `(v − 128) << 8`; 24/32-bit the high 16 bits rounded; float `x × 32768` rounded
 * and clamped.
 *
 * The header is read when the pipeline is built, so the produced format is known
 * then and a bad file fails the build with `wav-source: <path>: <reason>`; so does what is not a regular file (a
 * directory, a FIFO, a device, a socket), refused before it is opened. The
 * data chunk is streamed in 64 KB reads. A file holding less data than its header
 * declares plays what exists, with a warning.
 *
 * @example Pipeline config
 * ```json
 * { "use": "wav-source", "path": "../examples/audio/hello.wav", "frame_ms": 20, "loop": false }
 * ```
 */
export default definePlugin({
  name: "wav-source",
  kind: "source",
  description: "Reads a WAV file (8/16/24/32-bit int, float, G.711, extensible) as 16-bit PCM frames",
  produces: { kind: "pcm" },
  options: wavSourceOptions,
  async create(options, ctx): Promise<SourceStage> {
    const path = resolve(ctx.baseDir, options.path);
    // A chain that runs as fast as it can opens and reads with the synchronous calls (see readWavInfo).
    const sync = ctx.realtime !== true;
    const info = await readWavInfo(path, "wav-source", sync);
    if (info.truncated) {
      ctx.log.warn(
        `wav-source: ${path}: data chunk declares ${info.declaredDataBytes} bytes but the file holds ${info.dataBytes}; playing what exists`,
      );
    }
    const perFrame = frameSamples(info.sampleRate, options.frame_ms);
    const counters = { frames: 0, samples: 0 };
    let reader: WavStreamReader | undefined;
    return {
      // A file read once says its length (a looped one has none).
      negotiate: () =>
        options.loop
          ? { kind: "pcm", sampleRate: info.sampleRate, channels: info.channels }
          : { kind: "pcm", sampleRate: info.sampleRate, channels: info.channels, frames: info.frames },
      plan: () => `${path}: WAV ${describeWav(info)}${options.loop ? ", looped" : ""}`,
      async run(rc) {
        reader = await WavStreamReader.open(
          info,
          perFrame,
          options.loop,
          "wav-source",
          rc.reuseOutput === true,
          rc.realtimeSink,
          sync,
        );
        try {
          await emitPcmFrames(rc, info, reader, counters);
        } finally {
          reader.close();
        }
      },
      close() {
        reader?.close();
      },
      stats: () => ({
        file_format: describeWav(info),
        file_samples: info.frames,
        frames: counters.frames,
        samples: counters.samples,
        duration_s: counters.samples / info.sampleRate,
        loops: reader?.loops ?? 0,
        truncated: info.truncated,
      }),
    };
  },
});
