/**
 * Every built-in stage plugin, by family.
 *
 * @module
 */
import type { AnyPlugin } from "../core/stage.ts";
import { plugins as wav } from "./wav/mod.ts";
import { plugins as file } from "./file/mod.ts";
import { plugins as tone } from "./tone/mod.ts";
import { plugins as nul } from "./null/mod.ts";
import { plugins as resample } from "./resample/mod.ts";
import { plugins as g711 } from "./g711/mod.ts";
import { plugins as rtp } from "./rtp/mod.ts";
import { plugins as udp } from "./udp/mod.ts";
import { plugins as device } from "./audio-device/mod.ts";
import { plugins as relay } from "./relay/mod.ts";

/** All built-in stage plugins. */
export const builtinPlugins: AnyPlugin[] = [
  ...wav,
  ...file,
  ...tone,
  ...nul,
  ...resample,
  ...g711,
  ...rtp,
  ...udp,
  ...device,
  ...relay,
];
