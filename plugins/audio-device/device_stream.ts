/**
 * One open PortAudio stream on one device, shared by at most one speaker
 * (output) and one microphone (input) of the process.
 *
 * How the native binding behaves (read from its C++ sources) shapes this
 * class:
 *
 * - Its PortAudio callback *waits* when the output queue is empty, and waits
 *   when the input queue is full. A duplex stream therefore stalls in both
 *   directions as soon as either side stops being serviced. So while the
 *   stream runs, the output side is always fed (audio, else silence) and the
 *   input side always read (delivered, else discarded).
 * - `write()` resolves as soon as the chunk is queued (it waits only while
 *   `maxQueue` chunks are queued). The output pump hands the device one block
 *   (10 ms) at a time and keeps an estimate of how much handed audio has not
 *   been played yet (`ahead`, from the wall clock and the sample rate). It hands
 *   a block when `ahead` drops below {@linkcode AHEAD_TARGET_BLOCKS} blocks, and
 *   inserts a silent block only when nothing is queued and `ahead` drops below
 *   one block: the moment a real device would run dry. A write that waited
 *   (native queue full: the device is behind the estimate) pulls the estimate
 *   forward; a PortAudio "output underflow" flag pulls it back. Pacing by the
 *   estimate rather than by the native queue alone also keeps devices that
 *   consume without a clock (ALSA's `null`/`file` plugins, used by the tests)
 *   at real time, with the same behaviour as a sound card.
 * - `read(n)` resolves with exactly `n` bytes. When PortAudio raised a status
 *   flag since the last call, it resolves with the flag text instead and the
 *   chunk it pulled is lost; such frames are reported as lost.
 * - `quit()` (either mode) first waits until the native output queue is played,
 *   then stops (`WAIT`: lets the device buffer play; `ABORT`: drops it) and
 *   closes. The native queue is kept at 2 blocks so an abort is quick.
 *
 * Device timing uses the wall clock (`performance.now()` and `setTimeout`),
 * not the pipeline's media clock: the device is the clock here, and a virtual
 * test clock must not stop it.
 *
 * @module
 */
import type { Logger } from "../../core/log.ts";
import type { AudioDeviceInfo, NativeAudioIO, NativeDirectionOptions, NaudiodonBinding } from "./binding.ts";

/** Block handed to the device per PortAudio callback, in ms. */
export const BLOCK_MS = 10;
/** The pump keeps at most this many blocks handed to the device and not yet played. */
export const AHEAD_TARGET_BLOCKS = 3;
/** Chunks the native output queue holds (each one block). */
const NATIVE_OUT_QUEUE = 2;
/** Chunks the native input queue holds (each one callback block): 200 ms before the device overruns. */
const NATIVE_IN_QUEUE = 20;
/** How long the first stage ready waits for the other registered direction before opening without it. */
export const JOIN_GRACE_MS = 250;
/** Longest wait for the native quit before giving up on it (a dead device must not hang shutdown). */
const QUIT_TIMEOUT_MS = 3000;

/** What a speaker offers the output pump. */
export interface OutputParty {
  /** Interleaved channels of the samples it hands out. */
  readonly channels: number;
  /**
   * Returns up to `frames` frames to play now, or null when there is nothing to
   * play (paused, still buffering, or empty). `aheadMs`: audio handed and not yet played.
   */
  pull(frames: number, aheadMs: number): Int16Array | null;
  /** The pump fed `ms` of silence because `pull` had nothing while the device needed data. */
  silence(ms: number): void;
  /** After each hand-over: the new estimate of audio handed and not yet played. */
  handed(aheadMs: number): void;
  /** PortAudio raised an output status flag (e.g. `output underflow`). */
  deviceStatus(flag: string): void;
  /** Frames still queued and not yet handed to the device (a drain waits for 0). */
  pendingFrames(): number;
}

/** What a microphone offers the input reader. */
export interface InputParty {
  /** Interleaved channels it wants. */
  readonly channels: number;
  /** Frames per read (its frame size). */
  readonly frames: number;
  /**
   * A captured frame, or null when the frame was lost (PortAudio status flag).
   * A returned promise delays the next read (backpressure).
   */
  onInput(samples: Int16Array | null, flags?: string[]): void | Promise<void>;
}

/** Counters of a device stream. */
export interface DeviceStreamStats {
  /** Native streams opened over this object's life. */
  opens: number;
  /** Directions of the open stream: `input`, `output`, `duplex`, or `closed`. */
  mode: string;
  /** Directions the stream was last opened with (kept after it closes), or `none`. */
  openedAs: string;
  /** Blocks written to the device (audio and silence). */
  blocksWritten: number;
  /** Silent blocks written (starvation, pause, or no speaker on a duplex stream). */
  silenceBlocks: number;
  /** Input frames read and discarded because no microphone was attached. */
  discardedInput: number;
  /** PortAudio status flags seen (all directions). */
  statusFlags: number;
}

type Dir = "input" | "output";
type Want = { device: AudioDeviceInfo; channels: number; frames?: number };

/**
 * A PortAudio stream on one device at one sample rate, opened lazily when its
 * registered directions are ready, shared by a speaker and a microphone.
 *
 * @example
 * ```ts
 * const s = new DeviceStream(loadBinding(), "audio-device:2@8000", 8000, log);
 * s.register("output", device, 1);
 * await s.attach("output", speakerParty);
 * ```
 */
export class DeviceStream {
  /** Sharing key (device and rate). */
  readonly key: string;
  /** Sample rate of both directions. */
  readonly rate: number;
  /** Frames per block (10 ms). */
  readonly blockFrames: number;
  readonly #binding: NaudiodonBinding;
  readonly #log: Logger;
  // Registration (build time) and attachment (start time).
  #want: Record<Dir, Want | undefined> = {
    input: undefined,
    output: undefined,
  };
  // Registrations the open after the grace left out (their stage had not attached yet): attaching one reopens.
  #gaveUp: Record<Dir, Want | undefined> = { input: undefined, output: undefined };
  #out: OutputParty | undefined;
  #in: InputParty | undefined;
  #inReady = false;
  #outReady = false;
  // The native stream.
  #native: NativeAudioIO | undefined;
  #dirs: Record<Dir, boolean> = { input: false, output: false };
  #opening: { promise: Promise<void>; resolve: () => void; reject: (e: unknown) => void } | undefined;
  #openError: unknown;
  #grace: ReturnType<typeof setTimeout> | undefined;
  #running = false;
  #closing: Promise<void> | undefined;
  #generation = 0;
  // Output pump state.
  #playEnd = 0;
  #silence: Uint8Array = new Uint8Array(0);
  #wakeUp: (() => void) | undefined;
  #sleepTimer: ReturnType<typeof setTimeout> | undefined;
  #inFrames = 0;
  #inChannels = 1;
  #outChannels = 1;
  #stats: DeviceStreamStats = {
    opens: 0,
    mode: "closed",
    openedAs: "none",
    blocksWritten: 0,
    silenceBlocks: 0,
    discardedInput: 0,
    statusFlags: 0,
  };

  /**
   * Creates a closed stream; it opens when stages attach.
   *
   * @param binding the loaded native binding
   * @param key sharing key
   * @param rate sample rate of the stream
   * @param log logger for device events
   */
  constructor(binding: NaudiodonBinding, key: string, rate: number, log: Logger) {
    this.#binding = binding;
    this.key = key;
    this.rate = rate;
    this.blockFrames = Math.max(1, Math.round((rate * BLOCK_MS) / 1000));
    this.#log = log;
  }

  /** Counters (copy). */
  get stats(): DeviceStreamStats {
    return { ...this.#stats };
  }

  /** True while a native stream is open. */
  get isOpen(): boolean {
    return this.#native !== undefined;
  }

  /** True while an open is waiting for the other direction. */
  get pending(): boolean {
    return this.#opening !== undefined && this.#native === undefined && this.#openError === undefined;
  }

  /** Estimated audio handed to the device and not yet played, in ms. */
  get aheadMs(): number {
    return Math.max(0, this.#playEnd - performance.now());
  }

  /**
   * Declares (at build time) that a stage will use `dir` with `channels`.
   * Returns false when that direction is taken, or the stream is already open
   * without it: the caller then opens a stream of its own.
   */
  register(dir: "input" | "output", device: AudioDeviceInfo, channels: number, frames?: number): boolean {
    if (this.#want[dir]) return false;
    if (this.#native || this.#opening) {
      // Joining an open stream works only for a direction it was opened with (a restarted stage).
      if (!this.#dirs[dir] || (dir === "input" ? this.#inChannels : this.#outChannels) !== channels) return false;
      if (dir === "input" && frames !== undefined && frames !== this.#inFrames) return false;
    }
    this.#want[dir] = { device, channels, frames };
    return true;
  }

  /** Gives up a registration that was never attached (build failed, or the stage closed before start). */
  unregister(dir: "input" | "output"): void {
    if (dir === "output" && this.#out) return;
    if (dir === "input" && this.#in) return;
    this.#want[dir] = undefined;
    this.#gaveUp[dir] = undefined;
  }

  /**
   * Attaches a registered stage. Resolves once the native stream is open (it
   * opens when every registered direction is attached, or {@linkcode JOIN_GRACE_MS}
   * after the first one). When it can open at once, it opens synchronously, so
   * an error is already recorded when this returns (see {@linkcode pending}).
   * A registered stage that attaches after the grace opened the stream without
   * it (its chain took longer to start: real work, e.g. a module loaded by its
   * first RTCP stage on a busy machine) has the stream opened again with both
   * directions; it resolves once that stream is open.
   */
  attach(dir: "output", party: OutputParty): Promise<void>;
  /** Attaches a registered microphone. */
  attach(dir: "input", party: InputParty): Promise<void>;
  attach(dir: Dir, party: OutputParty | InputParty): Promise<void> {
    const late = !this.#want[dir] && this.#gaveUp[dir] !== undefined && this.#native !== undefined && !this.#closing;
    if (late) {
      this.#want[dir] = this.#gaveUp[dir];
      this.#gaveUp[dir] = undefined;
    }
    if (!this.#want[dir]) return Promise.reject(new Error(`audio ${dir} was not registered on ${this.key}`));
    if (dir === "output") {
      this.#out = party as OutputParty;
      this.#outReady = true;
    } else {
      this.#in = party as InputParty;
      this.#inReady = true;
    }
    if (late) return this.#reopen(dir);
    if (this.#native) {
      this.#wake();
      return Promise.resolve();
    }
    if (!this.#opening) {
      let resolve!: () => void, reject!: (e: unknown) => void;
      const promise = new Promise<void>((res, rej) => {
        resolve = res;
        reject = rej;
      });
      promise.catch(() => {}); // callers observe it; avoid an unhandled rejection if none does
      this.#opening = { promise, resolve, reject };
      this.#openError = undefined;
    }
    const promise = this.#opening!.promise;
    const allReady = (!this.#want.input || this.#inReady) && (!this.#want.output || this.#outReady);
    if (allReady) {
      this.#open();
    } else if (!this.#grace) {
      this.#grace = setTimeout(() => {
        this.#grace = undefined;
        if (!this.#native && this.#opening) this.#open();
      }, JOIN_GRACE_MS);
    }
    return promise;
  }

  /** Opens the native stream with the attached directions. */
  #open(): void {
    if (this.#grace) clearTimeout(this.#grace);
    this.#grace = undefined;
    const opening = this.#opening!;
    // Directions registered but not attached in time give up their place (until they attach: see attach()).
    this.#gaveUp = {
      input: this.#inReady ? undefined : this.#want.input,
      output: this.#outReady ? undefined : this.#want.output,
    };
    if (!this.#inReady) this.#want.input = undefined;
    if (!this.#outReady) this.#want.output = undefined;
    const wantIn = this.#want.input;
    const wantOut = this.#want.output;
    const base = {
      sampleFormat: 16,
      sampleRate: this.rate,
      closeOnError: true,
      framesPerBuffer: this.blockFrames,
    };
    const inOptions: NativeDirectionOptions | undefined = wantIn
      ? { ...base, channelCount: wantIn.channels, deviceId: wantIn.device.id, maxQueue: NATIVE_IN_QUEUE }
      : undefined;
    const outOptions: NativeDirectionOptions | undefined = wantOut
      ? { ...base, channelCount: wantOut.channels, deviceId: wantOut.device.id, maxQueue: NATIVE_OUT_QUEUE }
      : undefined;
    const mode = wantIn && wantOut ? "duplex" : wantIn ? "input" : "output";
    const dev = (wantOut ?? wantIn)!.device;
    try {
      this.#native = this.#binding.create({
        ...(inOptions ? { inOptions } : {}),
        ...(outOptions ? { outOptions } : {}),
      });
    } catch (e) {
      const chans = [wantIn ? `${wantIn.channels} ch in` : "", wantOut ? `${wantOut.channels} ch out` : ""]
        .filter(Boolean).join(", ");
      const err = new Error(
        `cannot open audio device ${dev.id} "${dev.name}" (${mode}, ${this.rate} Hz, ${chans}): ${
          e instanceof Error ? e.message : String(e)
        }${
          /sample rate|format/i.test(String(e))
            ? `; the device's default rate is ${dev.defaultSampleRate} Hz: insert {"use": "resampler"} to a rate it takes`
            : ""
        }`,
        { cause: e },
      );
      this.#openError = err;
      this.#opening = undefined;
      this.#want = { input: undefined, output: undefined };
      this.#gaveUp = { input: undefined, output: undefined };
      this.#out = undefined;
      this.#in = undefined;
      this.#inReady = this.#outReady = false;
      opening.reject(err);
      return;
    }
    this.#generation++;
    this.#stats.opens++;
    this.#stats.mode = mode;
    this.#stats.openedAs = mode;
    this.#dirs = { input: !!wantIn, output: !!wantOut };
    this.#inChannels = wantIn?.channels ?? 1;
    this.#inFrames = wantIn?.frames ?? this.blockFrames * 2;
    this.#outChannels = wantOut?.channels ?? 1;
    this.#silence = new Uint8Array(this.blockFrames * this.#outChannels * 2);
    this.#playEnd = 0;
    this.#running = false;
    this.#log.info(`audio device open`, { device: dev.name, id: dev.id, mode, rate: this.rate });
    this.#opening = undefined;
    const gen = this.#generation;
    if (wantIn) {
      this.#startNative();
      this.#reader(gen).catch((e) => this.#log.error(`audio input reader failed: ${e?.message ?? e}`));
    }
    if (wantOut) this.#pump(gen).catch((e) => this.#log.error(`audio output pump failed: ${e?.message ?? e}`));
    opening.resolve();
  }

  /**
   * Closes the open stream and opens it again with `dir` too (attached late, see {@linkcode attach}): the old
   * stream's pump and reader stop with its generation; the attached stages stay attached. Resolves once it is open.
   */
  #reopen(dir: Dir): Promise<void> {
    const native = this.#native!;
    this.#log.info(`audio ${dir} attached after the device opened without it: opening it again with both directions`, {
      key: this.key,
    });
    this.#generation++;
    this.#native = undefined;
    this.#running = false;
    this.#dirs = { input: false, output: false };
    const { promise, resolve, reject } = Promise.withResolvers<void>();
    promise.catch(() => {}); // callers observe it; avoid an unhandled rejection if none does
    const opening = { promise, resolve, reject };
    this.#opening = opening;
    this.#openError = undefined;
    this.#wake();
    void this.#quit(native, "ABORT")
      .catch((e) => this.#log.warn(`audio device failed to stop: ${e instanceof Error ? e.message : e}`))
      .then(() => {
        if (this.#opening === opening) this.#open(); // else closed meanwhile (close() rejected it)
      });
    return promise;
  }

  /** Stops and closes `native`, giving up on it after {@linkcode QUIT_TIMEOUT_MS} (a dead device must not hang). */
  async #quit(native: NativeAudioIO, mode: "WAIT" | "ABORT"): Promise<void> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<"timeout">((r) => timer = setTimeout(() => r("timeout"), QUIT_TIMEOUT_MS));
    const result = await Promise.race([native.quit(mode).then(() => "ok" as const), timeout]);
    clearTimeout(timer);
    if (result === "timeout") this.#log.warn(`audio device did not stop within ${QUIT_TIMEOUT_MS} ms`);
    this.#log.info(`audio device closed`, { key: this.key, mode });
  }

  #startNative(): void {
    if (this.#running || !this.#native) return;
    this.#native.start();
    this.#running = true;
    this.#playEnd = performance.now();
  }

  /** Wakes the output pump (new audio queued, resumed, ending). */
  wake(): void {
    this.#wake();
  }

  #wake(): void {
    const w = this.#wakeUp;
    this.#wakeUp = undefined;
    if (this.#sleepTimer !== undefined) clearTimeout(this.#sleepTimer);
    this.#sleepTimer = undefined;
    w?.();
  }

  #sleep(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      this.#wakeUp = resolve;
      if (Number.isFinite(ms)) {
        this.#sleepTimer = setTimeout(() => {
          this.#sleepTimer = undefined;
          this.#wakeUp = undefined;
          resolve();
        }, Math.max(0, ms));
      }
    });
  }

  #statusFlags(text: string): string[] {
    const flags = ["input underflow", "input overflow", "output underflow", "output overflow", "priming output"]
      .filter((f) => text.includes(f));
    this.#stats.statusFlags += flags.length || 1;
    for (const f of flags) {
      if (f === "output underflow") {
        // The device ran dry before the estimate said so: pull the estimate back.
        this.#playEnd = Math.min(this.#playEnd, performance.now());
        this.#out?.deviceStatus(f);
      } else if (f === "output overflow") {
        this.#out?.deviceStatus(f);
      }
    }
    return flags.length ? flags : [text.trim()];
  }

  async #pump(gen: number): Promise<void> {
    const blockMs = (this.blockFrames * 1000) / this.rate;
    const target = AHEAD_TARGET_BLOCKS * blockMs;
    while (gen === this.#generation && !this.#closing && this.#native) {
      const native = this.#native;
      const now = performance.now();
      const ahead = Math.max(0, this.#playEnd - now);
      let bytes: Uint8Array | undefined;
      let frames = 0;
      if (ahead <= target - blockMs) {
        const samples = this.#out?.pull(this.blockFrames, ahead) ?? null;
        if (samples && samples.length > 0) {
          bytes = new Uint8Array(samples.buffer, samples.byteOffset, samples.byteLength);
          frames = samples.length / this.#outChannels;
        } else if (this.#running && ahead < blockMs) {
          // The device would run dry: feed silence (keeps a duplex capture going, avoids xruns).
          bytes = this.#silence;
          frames = this.blockFrames;
          this.#stats.silenceBlocks++;
          this.#out?.silence(blockMs);
        }
      }
      if (bytes) {
        if (!this.#running) this.#startNative();
        const t0 = performance.now();
        this.#playEnd = Math.max(this.#playEnd, t0) + (frames * 1000) / this.rate;
        this.#stats.blocksWritten++;
        const err = await native.write(bytes);
        if (gen !== this.#generation) return;
        const t1 = performance.now();
        if (t1 - t0 > blockMs) {
          // The write waited for room: the device is behind the estimate.
          this.#playEnd = Math.max(this.#playEnd, t1 + NATIVE_OUT_QUEUE * blockMs);
        }
        if (err) this.#statusFlags(err);
        this.#out?.handed(Math.max(0, this.#playEnd - t1));
        continue;
      }
      // Nothing to hand now: sleep until there is room for a block, or until the
      // device would need silence, or until woken by new audio.
      let wait: number;
      if (ahead > target - blockMs) wait = ahead - (target - blockMs);
      else if (this.#running) wait = ahead - blockMs + 0.5;
      else wait = Infinity;
      await this.#sleep(wait);
    }
  }

  async #reader(gen: number): Promise<void> {
    while (gen === this.#generation && !this.#closing && this.#native) {
      const native = this.#native;
      const party = this.#in;
      const frames = party?.frames ?? this.#inFrames;
      const r = await native.read(frames * this.#inChannels * 2);
      if (gen !== this.#generation || this.#closing) return;
      if (r.finished) return;
      const target = this.#in;
      if (r.err) {
        const flags = this.#statusFlags(r.err);
        if (target) await target.onInput(null, flags);
        continue;
      }
      if (!target) {
        this.#stats.discardedInput++;
        continue;
      }
      const buf = r.buf ?? new Uint8Array(0);
      const samples = new Int16Array(buf.byteLength >> 1);
      new Uint8Array(samples.buffer).set(buf.subarray(0, samples.byteLength));
      await target.onInput(samples);
    }
  }

  /**
   * Detaches a stage. `drain` (speaker only) waits until its queued audio has
   * been handed over and played; `abort` drops it. The native stream closes
   * when no stage is attached any more (`WAIT` after a drain, else `ABORT`).
   */
  async detach(dir: "input" | "output", how: "drain" | "abort"): Promise<void> {
    if (dir === "output" && this.#out) {
      if (how === "drain" && this.#native) {
        const last = this.#in === undefined;
        // Wait until the speaker has nothing left (its pull returns null when empty and ending).
        while (this.#native && !this.#closing && this.#outPending()) await delay(BLOCK_MS);
        if (!last) {
          // Duplex: the stream keeps running; wait until the estimate says it was played.
          while (this.#native && !this.#closing && this.aheadMs > 0) await delay(Math.min(BLOCK_MS, this.aheadMs));
        }
      }
      this.#out = undefined;
      this.#outReady = false;
      this.#want.output = undefined;
    } else if (dir === "input") {
      this.#in = undefined;
      this.#inReady = false;
      this.#want.input = undefined;
    } else {
      this.#want[dir] = undefined;
    }
    if (!this.#out && !this.#in) {
      await this.close(how === "drain" ? "WAIT" : "ABORT");
    }
  }

  /** True while the attached speaker still has audio to hand over. */
  #outPending(): boolean {
    return (this.#out?.pendingFrames() ?? 0) > 0;
  }

  /** Closes the native stream (idempotent); the object can be opened again by new stages. */
  close(mode: "WAIT" | "ABORT" = "ABORT"): Promise<void> {
    if (this.#closing) return this.#closing;
    if (this.#grace) clearTimeout(this.#grace);
    this.#grace = undefined;
    if (this.#opening) {
      this.#opening.reject(new Error("audio device stream closed before it opened"));
      this.#opening = undefined;
    }
    const native = this.#native;
    this.#closing = (async () => {
      this.#wake();
      if (native) await this.#quit(native, mode);
    })();
    return this.#closing.finally(() => {
      this.#generation++;
      this.#native = undefined;
      this.#running = false;
      this.#dirs = { input: false, output: false };
      this.#stats.mode = "closed";
      this.#out = undefined;
      this.#in = undefined;
      this.#inReady = this.#outReady = false;
      this.#want = { input: undefined, output: undefined };
      this.#gaveUp = { input: undefined, output: undefined };
      this.#closing = undefined;
    });
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, Math.max(1, ms)));
}
