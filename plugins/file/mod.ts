/**
 * The file plugin family: `file-source` (reads AIFF, FLAC, MP3, Ogg Vorbis, Opus
 * and WAV files).
 *
 * @module
 */
import type { AnyPlugin } from "../../core/stage.ts";
import fileSource from "./file_source.ts";

/** The stage plugins of this family, registered as built-ins. */
export const plugins: AnyPlugin[] = [fileSource];
