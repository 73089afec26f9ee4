/**
 * The resample plugin family: the `resampler` stage.
 *
 * @module
 */
import type { AnyPlugin } from "../../core/stage.ts";
import resampler from "./resampler.ts";

export { createResampler, type ResampleQuality, type ResamplerOptions, resamplerOptions } from "./resampler.ts";

/** The stage plugins of this family, registered as built-ins. */
export const plugins: AnyPlugin[] = [resampler];
