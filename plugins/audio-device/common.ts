/**
 * What the speaker and microphone share: options, device resolution and the
 * process-wide device streams.
 *
 * @module
 */
import { z } from "zod";
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

/** The `device` option: a PortAudio id, or (part of) a device name. */
export const deviceOption = z
  .union([z.string().min(1), z.number().int().min(0)])
  .optional()
  .describe(
    'Device: its id or (part of) its name as `--list-devices` prints them (e.g. "default", "USB"); default: the system default device',
  );

/** The `duplex` option. */
export const duplexOption = z.boolean().default(true).describe(
  "Share one PortAudio stream (one device clock) with the microphone/speaker of this process that uses the same device at the same rate",
);

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
