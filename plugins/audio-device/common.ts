/**
 * What the speaker and microphone share: device resolution and the
 * process-wide device streams (their shared options are declared in
 * `plugins.ts` and re-exported here).
 *
 * @module
 */
import { ResourceKind } from "../../core/session.ts";
import type { StageContext } from "../../core/stage.ts";
import {
  type AudioDeviceInfo,
  type Direction,
  listDevices,
  loadBinding,
  type NaudiodonBinding,
  resolveDevice,
} from "./binding.ts";
import { DeviceStream } from "./device_stream.ts";
import { deviceOptionSchema, duplexOptionSchema } from "./plugins.ts";

/** The `device` option: a PortAudio id, or (part of) a device name (the schema the plugins' options use). */
export const deviceOption: ReturnType<typeof deviceOptionSchema> = deviceOptionSchema();

/** The `duplex` option (the schema the plugins' options use). */
export const duplexOption: ReturnType<typeof duplexOptionSchema> = duplexOptionSchema();

/** Loads the binding and resolves the device for `direction` (throws with what is missing, or the devices there are). */
export function openDevice(
  spec: string | number | undefined,
  direction: Direction,
): { binding: NaudiodonBinding; device: AudioDeviceInfo } {
  const binding = loadBinding();
  const device = resolveDevice(spec, direction, listDevices());
  return { binding, device };
}

let privateStreams = 0;

/** The device streams a session's speaker and microphone stages share, by device and rate. */
const DEVICE_STREAMS: ResourceKind<DeviceStream> = new ResourceKind("audio device stream", (s) => s.close("ABORT"));

/**
 * The device stream a stage uses: its session's one for this device and rate
 * (so a speaker and a microphone of a call share one duplex stream), or a private
 * one when sharing is off or the shared one cannot take this direction.
 * Returns the stream and whether it is private (the stage closes private ones).
 */
export function acquireStream(
  ctx: StageContext,
  binding: NaudiodonBinding,
  dir: Direction,
  device: AudioDeviceInfo,
  rate: number,
  channels: number,
  share: boolean,
  frames?: number,
): { stream: DeviceStream; own: boolean } {
  const key = `audio-device:${device.id}@${rate}`;
  if (share) {
    const shared = ctx.session.resource(DEVICE_STREAMS, key, () => new DeviceStream(binding, key, rate, ctx.log));
    if (shared.register(dir, device, channels, frames)) return { stream: shared, own: false };
  }
  const own = new DeviceStream(binding, `${key}#${++privateStreams}`, rate, ctx.log);
  own.register(dir, device, channels, frames);
  return { stream: own, own: true };
}

/** `mono`, `stereo` or `N ch`. */
export function channelsText(n: number): string {
  return n === 1 ? "mono" : n === 2 ? "stereo" : `${n} ch`;
}
