/**
 * The resample plugin family: the `resampler` stage.
 *
 * @module
 */
export { createResampler, type ResampleQuality, type ResamplerOptions, resamplerOptions } from "./resampler.ts";
export { plugins } from "./plugins.ts";
