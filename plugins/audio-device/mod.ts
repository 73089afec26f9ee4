/**
 * The audio-device plugin family: `speaker` (plays pcm on an output device)
 * and `microphone` (captures pcm from an input device), through PortAudio by
 * way of naudiodon's native binding, plus the device listing for
 * `--list-devices`.
 *
 * The native binding is loaded only when a device stage is created or the
 * devices are listed; when it is missing, that call throws an
 * {@linkcode AudioBindingError} saying what to install, and every other plugin
 * keeps working.
 *
 * @module
 */
export {
  AudioBindingError,
  type AudioDeviceInfo,
  DeviceNotFoundError,
  formatDeviceList,
  listDevices,
  loadBinding,
} from "./binding.ts";

export { plugins } from "./plugins.ts";
