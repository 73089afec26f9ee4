/**
 * `speaker`: plays pcm frames on an audio output device through PortAudio
 * (naudiodon's native binding).
 *
 * @module
 */
import { type Format, formatToString, type Frame } from "../../core/frame.ts";
import { FormatError, type RunContext, type SinkStage, type StageContext } from "../../core/stage.ts";
import type { AudioDeviceInfo, NaudiodonBinding } from "./binding.ts";
import { acquireStream, channelsText, openDevice } from "./common.ts";
import type { DeviceStream, OutputParty } from "./device_stream.ts";
import { speaker, type SpeakerOptions, speakerSchema } from "./plugins.ts";

export { speaker, type SpeakerOptions };

/** Options of `speaker` (its zod schema; the plugin's `options`). */
export const speakerOptions: ReturnType<typeof speakerSchema> = speakerSchema();

/**
 * Creates a `speaker` stage from validated options: the plugin's `create`, loaded when first used. Loads the native
 * binding and resolves the output device (throws with what is missing, or the devices there are).
 */
export function createSpeaker(options: SpeakerOptions, ctx: StageContext): SinkStage {
  const { binding, device } = openDevice(options.device, "output");
  return new Speaker(options, ctx, binding, device);
}

/** Queued audio beyond this many times `latency_ms` (or +200 ms) is dropped, oldest first (an upstream too fast). */
const OVERFLOW_FACTOR = 4;

/**
 * Plays pcm on an audio output device.
 *
 * The device is opened with the incoming format (any rate, any channel count
 * up to the device's maximum): conversion is the job of a `resampler` stage
 * before it. It opens when the pipeline starts (or at the first frame when
 * upstream leaves the format open until then); a rate the device refuses is
 * an error naming the device's default rate.
 *
 * Flow: frames are queued; playback starts once `latency_ms` of audio is
 * queued (or at end of stream), and the device is fed in 10 ms blocks paced by
 * the device (see `device_stream.ts`). `write()` returns false while
 * `latency_ms` or more is queued, and `drained()` resolves when it drops
 * below, so a file source plays at real time. Audio queued beyond 4 ×
 * `latency_ms` (an upstream that ignores backpressure and runs fast, or clock
 * drift) is dropped oldest first and counted.
 *
 * Underruns: when the device needs audio and none is queued while playing, the
 * sink feeds silence (so the device never starves and a duplex microphone keeps
 * capturing), counts one underrun per episode (`underruns`) and its length
 * (`underrun_ms`), and buffers `latency_ms` again before resuming. PortAudio's
 * own output-underflow flags (the device ran dry anyway) are counted apart in
 * `device_underflows`.
 *
 * Pause: `control("pause")` / `control("resume")` (through the pipeline API:
 * `pipeline.control("speaker", "pause")`). The device keeps running on
 * silence; what is already handed to it (at most ~30 ms) still plays. Frames
 * arriving while paused are dropped (`pause_mode: "drop"`, the default, for
 * live audio; counted in `dropped_paused`) or held with backpressure
 * (`"hold"`). Audio queued at the moment of the pause is kept and plays after
 * the resume, which buffers `latency_ms` first. `control("toggle")` flips.
 * Each command returns `{ paused }`.
 *
 * End and stop: at end of stream, `end()` plays everything queued and then
 * closes the device (PortAudio `WAIT`); when the pipeline is stopped (or
 * fails) the queue is dropped and the device aborted. A `speaker` and a
 * `microphone` of the same process on the same device at the same rate share
 * one duplex PortAudio stream (`duplex: true`, the default).
 *
 * stats: `device`, `rate`, `channels`, `stream` (how the device stream was opened: output or duplex), `state`
 * (idle, buffering, playing, paused, ended), `frames`, `played_ms`,
 * `queued_ms`, `ahead_ms` (handed to the device, not yet played),
 * `latency_ms` (queued + ahead now), `underruns`, `underrun_ms`,
 * `device_underflows`, `dropped_paused`, `overflow_drops`, `overflow_ms`,
 * `paused_ms`.
 *
 * @example Pipeline config
 * ```json
 * { "use": "speaker", "device": "default", "latency_ms": 60 }
 * ```
 */
export default speaker;

/** The speaker stage: a sink and the output party of a device stream. */
export class Speaker implements SinkStage, OutputParty {
  readonly #opts: SpeakerOptions;
  readonly #ctx: StageContext;
  readonly #binding: NaudiodonBinding;
  readonly #device: AudioDeviceInfo;
  #rate: number | undefined;
  #channels: number | undefined;
  #stream: DeviceStream | undefined;
  #ownStream = false;
  #attached = false;
  #rc: RunContext | undefined;
  // Queue of interleaved samples.
  #queue: Int16Array[] = [];
  #head = 0;
  #queuedSamples = 0;
  #ahead = 0;
  // State.
  #playing = false;
  #starved = false;
  #paused = false;
  #ending = false;
  #aborted = false;
  #ended = false;
  #waiters: (() => void)[] = [];
  // Counters.
  #frames = 0;
  #playedFrames = 0;
  #underruns = 0;
  #underrunMs = 0;
  #deviceUnderflows = 0;
  #droppedPaused = 0;
  #overflowDrops = 0;
  #overflowMs = 0;
  #pausedMs = 0;

  /**
   * Creates a speaker on a resolved device (the device opens at start).
   *
   * @param opts validated options
   * @param ctx stage context
   * @param binding the loaded native binding
   * @param device the resolved output device
   */
  constructor(opts: SpeakerOptions, ctx: StageContext, binding: NaudiodonBinding, device: AudioDeviceInfo) {
    this.#opts = opts;
    this.#ctx = ctx;
    this.#binding = binding;
    this.#device = device;
  }

  /** Channels of the open format (OutputParty). */
  get channels(): number {
    return this.#channels ?? 1;
  }

  /** Takes the upstream format (pcm, any rate, up to the device's channels) and registers on the device stream. */
  negotiate(input: Format | undefined): undefined {
    if (!input) return undefined;
    if (input.kind !== "pcm") {
      throw new FormatError(`speaker plays pcm, but the input is ${formatToString(input)}: insert a g711-decoder`);
    }
    if (input.channels !== undefined) this.#checkChannels(input.channels, FormatError);
    this.#rate = input.sampleRate;
    this.#channels = input.channels;
    // Register at build time so a microphone built alongside can share the device.
    if (this.#rate && this.#channels) this.#acquire();
    return undefined;
  }

  #checkChannels(channels: number, E: new (m: string) => Error): void {
    if (channels > this.#device.maxOutputChannels) {
      throw new E(
        `output device ${this.#device.id} "${this.#device.name}" has ${this.#device.maxOutputChannels} channel(s), ` +
          `but the input is ${
            channelsText(channels)
          }: insert {"use": "resampler", "channels": ${this.#device.maxOutputChannels}} before the speaker`,
      );
    }
  }

  #acquire(): void {
    if (this.#stream) return;
    const { stream, own } = acquireStream(
      this.#ctx,
      this.#binding,
      "output",
      this.#device,
      this.#rate!,
      this.#channels!,
      this.#opts.duplex,
    );
    this.#stream = stream;
    this.#ownStream = own;
  }

  /** Opens the device (or waits for a microphone that shares it); an error opening it fails the start. */
  async start(rc: RunContext): Promise<void> {
    this.#rc = rc;
    rc.signal.addEventListener("abort", () => this.#abort(), { once: true });
    if (this.#rate && this.#channels) {
      const opened = this.#attach();
      if (this.#stream && !this.#stream.pending) await opened; // opened (or failed) now: report it from start()
      else opened.catch((e) => rc.fail(e));
    }
  }

  #attach(): Promise<void> {
    this.#acquire();
    this.#attached = true;
    return this.#stream!.attach("output", this);
  }

  /** Queues a frame; false while `latency_ms` or more is queued (or paused in hold mode). */
  write(frame: Frame): boolean {
    if (frame.kind !== "pcm") {
      throw new Error(`speaker plays pcm frames, but got a ${frame.kind} frame: insert a g711-decoder`);
    }
    if (this.#rate === undefined || this.#channels === undefined || !this.#attached) {
      // Format left open by upstream until now: the first frame fixes it.
      this.#checkChannels(frame.channels, Error);
      this.#rate ??= frame.sampleRate;
      this.#channels ??= frame.channels;
      if (this.#rc && !this.#attached) this.#attach().catch((e) => this.#rc!.fail(e));
    }
    if (frame.sampleRate !== this.#rate || frame.channels !== this.#channels) {
      throw new Error(
        `speaker opened the device at pcm ${this.#rate} Hz ${
          channelsText(this.#channels!)
        }, but got a frame of pcm ${frame.sampleRate} Hz ${
          channelsText(frame.channels)
        }: put a resampler before the speaker to keep one format`,
      );
    }
    this.#frames++;
    if (this.#aborted || this.#ended) return false;
    if (this.#paused && this.#opts.pause_mode === "drop") {
      this.#droppedPaused++;
      return true;
    }
    if (frame.samples.length > 0) {
      this.#queue.push(frame.samples.slice());
      this.#queuedSamples += frame.samples.length;
      this.#trimOverflow();
      this.#stream?.wake();
    }
    return this.#canAccept();
  }

  #msOf(samples: number): number {
    return (samples / this.channels / (this.#rate ?? 8000)) * 1000;
  }

  #queuedMs(): number {
    return this.#msOf(this.#queuedSamples);
  }

  #canAccept(): boolean {
    if (this.#aborted || this.#ended) return true;
    if (this.#paused && this.#opts.pause_mode === "hold") return false;
    return this.#queuedMs() + this.#ahead < this.#opts.latency_ms;
  }

  #trimOverflow(): void {
    const latency = this.#opts.latency_ms;
    const cap = Math.max(OVERFLOW_FACTOR * latency, latency + 200);
    if (this.#queuedMs() <= cap) return;
    const keep = Math.round((latency / 1000) * (this.#rate ?? 8000)) * this.channels;
    const drop = this.#queuedSamples - keep;
    this.#skip(drop);
    this.#overflowDrops++;
    this.#overflowMs += this.#msOf(drop);
  }

  /** Removes `n` samples from the head of the queue. */
  #skip(n: number): void {
    while (n > 0 && this.#queue.length) {
      const first = this.#queue[0];
      const avail = first.length - this.#head;
      if (avail <= n) {
        n -= avail;
        this.#queuedSamples -= avail;
        this.#queue.shift();
        this.#head = 0;
      } else {
        this.#head += n;
        this.#queuedSamples -= n;
        n = 0;
      }
    }
  }

  /** Resolves when the queue is below `latency_ms` again (and not held by a pause). */
  drained(): Promise<void> {
    if (this.#canAccept()) return Promise.resolve();
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  #wakeWaiters(): void {
    if (!this.#waiters.length || !this.#canAccept()) return;
    const w = this.#waiters;
    this.#waiters = [];
    for (const f of w) f();
  }

  // --- OutputParty ---------------------------------------------------------

  /** Hands up to `frames` frames to the device pump, or null (paused, buffering, empty). */
  pull(frames: number, aheadMs: number): Int16Array | null {
    this.#ahead = aheadMs;
    if (this.#aborted || this.#paused || this.#queuedSamples === 0) return null;
    if (!this.#playing) {
      if (!this.#ending && this.#queuedMs() + aheadMs < this.#opts.latency_ms) return null;
      this.#playing = true;
    }
    const ch = this.channels;
    const n = Math.min(frames * ch, this.#queuedSamples - (this.#queuedSamples % ch));
    const out = new Int16Array(n);
    let filled = 0;
    while (filled < n) {
      const first = this.#queue[0];
      const take = Math.min(n - filled, first.length - this.#head);
      out.set(first.subarray(this.#head, this.#head + take), filled);
      filled += take;
      this.#head += take;
      if (this.#head >= first.length) {
        this.#queue.shift();
        this.#head = 0;
      }
    }
    this.#queuedSamples -= n;
    this.#playedFrames += n / ch;
    this.#starved = false;
    return out;
  }

  /** The pump fed silence: counts underruns (playing, queue empty) or paused time. */
  silence(ms: number): void {
    if (this.#paused) {
      this.#pausedMs += ms;
      return;
    }
    if (this.#starved) {
      this.#underrunMs += ms;
      return;
    }
    if (this.#playing && !this.#ending && !this.#aborted) {
      this.#underruns++;
      this.#underrunMs += ms;
      this.#starved = true;
      this.#playing = false; // buffer latency_ms again before resuming
    }
  }

  /** After each block handed to the device. */
  handed(aheadMs: number): void {
    this.#ahead = aheadMs;
    this.#wakeWaiters();
  }

  /** A PortAudio output status flag. */
  deviceStatus(flag: string): void {
    if (flag === "output underflow") this.#deviceUnderflows++;
  }

  /** Frames queued and not yet handed (0 once aborted, or while paused and not ending). */
  pendingFrames(): number {
    if (this.#aborted) return 0;
    return this.#queuedSamples / this.channels;
  }

  // --- control, end, close -----------------------------------------------

  /** `pause`, `resume` or `toggle`; returns `{ paused }`. */
  control(command: string): { paused: boolean } {
    switch (command) {
      case "pause":
        this.#paused = true;
        break;
      case "resume":
        if (this.#paused) {
          this.#paused = false;
          this.#playing = false; // buffer latency_ms before playing again
          this.#stream?.wake();
          this.#wakeWaiters();
        }
        break;
      case "toggle":
        return this.control(this.#paused ? "resume" : "pause");
      default:
        throw new Error(`speaker: unknown control "${command}"; it takes "pause", "resume" and "toggle"`);
    }
    return { paused: this.#paused };
  }

  #abort(): void {
    if (this.#aborted) return;
    this.#aborted = true;
    this.#queue = [];
    this.#head = 0;
    this.#queuedSamples = 0;
    const w = this.#waiters;
    this.#waiters = [];
    for (const f of w) f();
    this.#stream?.wake();
  }

  /** Plays what is queued, then closes the device; after a stop, drops the queue and aborts instead. */
  async end(): Promise<void> {
    if (this.#ended) return;
    if (this.#rc?.signal.aborted) this.#abort();
    this.#ending = true;
    const stream = this.#stream;
    if (stream && this.#attached) {
      stream.wake();
      // Let the pump hand over what is queued (at the device's pace), unless stopped meanwhile.
      while (!this.#aborted && this.pendingFrames() > 0 && (stream.isOpen || stream.pending)) {
        await new Promise((r) => setTimeout(r, 10));
      }
      await stream.detach("output", this.#aborted ? "abort" : "drain");
    }
    this.#ended = true;
  }

  /** Releases the device (aborting playback if still running). */
  async close(): Promise<void> {
    this.#abort();
    this.#ended = true;
    const stream = this.#stream;
    if (!stream) return;
    if (this.#attached) await stream.detach("output", "abort");
    else stream.unregister("output");
    if (this.#ownStream) await stream.close("ABORT");
  }

  /** Counters and state (see the plugin documentation). */
  /** The device it will use. */
  plan(): string {
    return `plays on device ${this.#device.id} "${this.#device.name}" (${this.#device.hostApi})`;
  }

  stats(): Record<string, unknown> {
    const state = this.#ended
      ? "ended"
      : this.#paused
      ? "paused"
      : this.#playing
      ? "playing"
      : this.#attached
      ? "buffering"
      : "idle";
    const queued = this.#queuedMs();
    const ahead = this.#stream?.aheadMs ?? 0;
    return {
      device: this.#device.name,
      device_id: this.#device.id,
      rate: this.#rate,
      channels: this.#channels,
      stream: this.#stream?.stats.openedAs ?? "none",
      state,
      frames: this.#frames,
      played_ms: round(this.#rate ? (this.#playedFrames / this.#rate) * 1000 : 0),
      queued_ms: round(queued),
      ahead_ms: round(ahead),
      latency_ms: round(queued + ahead),
      underruns: this.#underruns,
      underrun_ms: round(this.#underrunMs),
      device_underflows: this.#deviceUnderflows,
      dropped_paused: this.#droppedPaused,
      overflow_drops: this.#overflowDrops,
      overflow_ms: round(this.#overflowMs),
      paused_ms: round(this.#pausedMs),
    };
  }
}

function round(x: number): number {
  return Math.round(x * 10) / 10;
}
