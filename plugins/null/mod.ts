/**
 * The null plugin family: `null-sink` (discards frames).
 *
 * @module
 */
import type { AnyPlugin } from "../../core/stage.ts";
import nullSink from "./null_sink.ts";

/** The stage plugins of this family, registered as built-ins. */
export const plugins: AnyPlugin[] = [nullSink];
