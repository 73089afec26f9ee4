/**
 * `microphone`: captures pcm frames from an audio input device through
 * PortAudio (naudiodon's native binding).
 *
 * @module
 */
import type { Format, PcmFrame } from "../../core/frame.ts";
import type { RunContext, SourceStage, StageContext } from "../../core/stage.ts";
import type { AudioDeviceInfo, NaudiodonBinding } from "./binding.ts";
import { acquireStream, openDevice } from "./common.ts";
import type { DeviceStream, InputParty } from "./device_stream.ts";
import { microphone, type MicrophoneOptions, microphoneSchema } from "./plugins.ts";

export { microphone, type MicrophoneOptions };

/** Options of `microphone` (its zod schema; the plugin's `options`). */
export const microphoneOptions: ReturnType<typeof microphoneSchema> = microphoneSchema();

/**
 * Creates a `microphone` stage from validated options: the plugin's `create`, loaded when first used. Loads the
 * native binding and resolves the input device (throws with what is missing, or the devices there are).
 */
export function createMicrophone(options: MicrophoneOptions, ctx: StageContext): SourceStage {
  const { binding, device } = openDevice(options.device, "input");
  if (options.channels > device.maxInputChannels) {
    throw new Error(
      `input device ${device.id} "${device.name}" has ${device.maxInputChannels} channel(s), but "channels" is ${options.channels}`,
    );
  }
  return new Microphone(options, ctx, binding, device);
}

/**
 * Captures pcm from an audio input device.
 *
 * Emits frames of `frame_ms` at `sample_rate` with `channels`, as the device
 * delivers them (the device is the clock). `pts` counts samples from the
 * first captured one, so it follows the capture clock: frame n has pts
 * n × frame size, lost frames included.
 *
 * Overruns: when audio is not read in time (a blocked event loop, or
 * downstream backpressure held longer than the native queue's 200 ms),
 * PortAudio flags an input overflow; the binding then drops the frame it was
 * returning. The microphone counts `overruns` (flags) and `lost_frames`, and
 * emits a silent frame (`type: "silence"`) in the lost frame's place so the
 * timeline stays continuous.
 *
 * Stops within one frame when the pipeline stops (pending reads are released
 * by closing the device). With `duration` it ends by itself. When a `speaker`
 * in the same process uses the same device at the same rate, both share one
 * duplex PortAudio stream (`duplex: true`).
 *
 * stats: `device`, `rate`, `channels`, `stream` (how the device stream was opened: input or duplex), `frames`,
 * `captured_ms`, `overruns`, `lost_frames`, `waits` (backpressure waits).
 *
 * @example Pipeline config
 * ```json
 * { "use": "microphone", "sample_rate": 8000, "channels": 1, "frame_ms": 20 }
 * ```
 */
export default microphone;

/** The microphone stage: a source and the input party of a device stream. */
export class Microphone implements SourceStage, InputParty {
  readonly #opts: MicrophoneOptions;
  readonly #device: AudioDeviceInfo;
  readonly #stream: DeviceStream;
  readonly #own: boolean;
  /** Frames per read. */
  readonly frames: number;
  #rc: RunContext | undefined;
  #pts = 0;
  #emitted = 0;
  #limit: number;
  #done: (() => void) | undefined;
  #attached = false;
  #closed = false;
  // Counters.
  #overruns = 0;
  #lost = 0;
  #waits = 0;

  /**
   * Creates a microphone on a resolved device and registers it on the device
   * stream (the device opens when the pipeline runs).
   *
   * @param opts validated options
   * @param ctx stage context
   * @param binding the loaded native binding
   * @param device the resolved input device
   */
  constructor(opts: MicrophoneOptions, ctx: StageContext, binding: NaudiodonBinding, device: AudioDeviceInfo) {
    this.#opts = opts;
    this.#device = device;
    this.frames = Math.max(1, Math.round((opts.sample_rate * opts.frame_ms) / 1000));
    this.#limit = opts.duration ? Math.round(opts.duration * opts.sample_rate) : Infinity;
    const { stream, own } = acquireStream(
      ctx,
      binding,
      "input",
      device,
      opts.sample_rate,
      opts.channels,
      opts.duplex,
      this.frames,
    );
    this.#stream = stream;
    this.#own = own;
  }

  /** Captured channels (InputParty). */
  get channels(): number {
    return this.#opts.channels;
  }

  /** pcm at `sample_rate` with `channels`. */
  negotiate(): Format {
    return { kind: "pcm", sampleRate: this.#opts.sample_rate, channels: this.#opts.channels };
  }

  /** Opens the device and emits frames until `duration` is captured or the pipeline stops. */
  async run(ctx: RunContext): Promise<void> {
    this.#rc = ctx;
    if (ctx.signal.aborted) return;
    const finished = new Promise<void>((resolve) => (this.#done = resolve));
    const onAbort = () => this.#done?.();
    ctx.signal.addEventListener("abort", onAbort, { once: true });
    try {
      this.#attached = true;
      const opened = this.#stream.attach("input", this);
      await Promise.race([opened, finished]);
      if (!ctx.signal.aborted && this.#emitted < this.#limit) await finished;
    } finally {
      ctx.signal.removeEventListener("abort", onAbort);
      this.#done = undefined;
      await this.#detach();
    }
  }

  async #detach(): Promise<void> {
    if (!this.#attached) return;
    this.#attached = false;
    await this.#stream.detach("input", "abort");
  }

  /** A captured frame (or null: lost to an overrun). */
  onInput(samples: Int16Array | null, flags?: string[]): void | Promise<void> {
    const rc = this.#rc;
    if (!rc || !this.#done || rc.signal.aborted) return;
    if (!samples) {
      if (flags?.includes("input overflow")) this.#overruns++;
      this.#lost++;
    }
    const frame: PcmFrame = {
      kind: "pcm",
      samples: samples ?? new Int16Array(this.frames * this.channels),
      sampleRate: this.#opts.sample_rate,
      channels: this.#opts.channels,
      pts: this.#pts,
      ...(samples ? {} : { type: "silence" as const }),
    };
    let n = frame.samples.length / this.channels;
    if (this.#emitted + n > this.#limit) {
      n = this.#limit - this.#emitted;
      frame.samples = frame.samples.subarray(0, n * this.channels);
    }
    this.#pts += this.frames;
    this.#emitted += n;
    const ok = rc.emit(frame);
    if (this.#emitted >= this.#limit) {
      this.#done();
      return;
    }
    if (!ok) {
      this.#waits++;
      return rc.ready();
    }
  }

  /** Releases the device. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#done?.();
    if (this.#attached) await this.#detach();
    else this.#stream.unregister("input");
    if (this.#own) await this.#stream.close("ABORT");
  }

  /** Counters (see the plugin documentation). */
  /** The device it will use. */
  plan(): string {
    return `captures from device ${this.#device.id} "${this.#device.name}" (${this.#device.hostApi})`;
  }

  stats(): Record<string, unknown> {
    return {
      device: this.#device.name,
      device_id: this.#device.id,
      rate: this.#opts.sample_rate,
      channels: this.#opts.channels,
      stream: this.#stream.stats.openedAs,
      frames: Math.ceil(this.#emitted / this.frames),
      captured_ms: Math.round((this.#emitted / this.#opts.sample_rate) * 10000) / 10,
      overruns: this.#overruns,
      lost_frames: this.#lost,
      waits: this.#waits,
    };
  }
}
