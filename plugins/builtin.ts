/**
 * Every built-in stage plugin, by family, and the codecs the built-in families register.
 *
 * @module
 */
import type { CodecInfo } from "../core/codec.ts";
import type { AnyPlugin } from "../core/stage.ts";
import { plugins as wav } from "./wav/mod.ts";
import { plugins as file } from "./file/mod.ts";
import { plugins as tone } from "./tone/plugins.ts";
import { plugins as nul } from "./null/plugins.ts";
import { plugins as resample } from "./resample/plugins.ts";
import { codecs as g711Codecs, plugins as g711 } from "./g711/mod.ts";
import { plugins as rtp } from "./rtp/plugins.ts";
import { plugins as udp } from "./udp/plugins.ts";
import { plugins as device } from "./audio-device/plugins.ts";
import { plugins as graph } from "./graph/plugins.ts";
// The relay family's stages by their declarations: relay/mod.ts also exports the relay server and client.
import { rtpEndDetector, rtpEndMarker, rtpTimeline, silenceDetector } from "./relay/stage_plugins.ts";

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
  ...graph,
  rtpEndMarker,
  rtpEndDetector,
  rtpTimeline,
  silenceDetector,
];

/** The codecs the built-in plugin families register, in default preference order (the g711 family's: PCMU, PCMA). */
export const builtinCodecs: readonly CodecInfo[] = [...g711Codecs];
