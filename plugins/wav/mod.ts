/**
 * The wav plugin family: `wav-source` (reads WAV files) and `wav-sink` (records
 * WAV files).
 *
 * @module
 */
import type { AnyPlugin } from "../../core/stage.ts";
import wavSource from "./wav_source.ts";
import wavSink from "./wav_sink.ts";

/** The stage plugins of this family, registered as built-ins. */
export const plugins: AnyPlugin[] = [wavSource, wavSink];
