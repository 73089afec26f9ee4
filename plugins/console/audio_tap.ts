/**
 * A call's audio for the console: one reader of the call session's
 * `from-call` bus, shared by every page that plays the call and by a server
 * recording. The reader never pushes back on the call: it drains the bus as
 * frames come and each listener drops what it cannot take (a slow page), so a
 * browser can never stall a call's receive chain.
 *
 * @module
 */
import { dirname } from "node:path";
import type { Bus, BusSubscription } from "../../core/bus.ts";
import type { PcmFrame } from "../../core/frame.ts";
import { wavHeader } from "../wav/wav_format.ts";

/** Listener of a call's audio frames. */
export type AudioListener = (frame: PcmFrame) => void;

/** Frames the tap's subscription holds before the bus would push back (never reached while it reads). */
const TAP_QUEUE = 500;

/** Reads a bus while anyone listens; see the module documentation. */
export class AudioTap {
  readonly #bus: Bus;
  readonly #onEnd: () => void;
  readonly #listeners = new Set<AudioListener>();
  #sub?: BusSubscription;
  #ended = false;
  /** Frames read from the bus. */
  frames = 0;
  /** The format of the last frame read. */
  format?: { sampleRate: number; channels: number };

  /**
   * Creates a tap; it subscribes when its first listener is added.
   * @param bus the call's bus (e.g. `session.bus("from-call")`)
   * @param onEnd told once when the bus's stream ends (the call's chain stopped)
   */
  constructor(bus: Bus, onEnd: () => void) {
    this.#bus = bus;
    this.#onEnd = onEnd;
  }

  /** True once the bus's stream ended (or the tap was closed). */
  get ended(): boolean {
    return this.#ended;
  }

  /** Listeners now. */
  get listeners(): number {
    return this.#listeners.size;
  }

  /** Adds a listener; returns a function that removes it (the tap unsubscribes when none is left). */
  add(listener: AudioListener): () => void {
    if (this.#ended) throw new Error(`the call's audio (bus "${this.#bus.name}") has ended`);
    this.#listeners.add(listener);
    if (!this.#sub) {
      const sub = this.#bus.subscribe(TAP_QUEUE, TAP_QUEUE);
      this.#sub = sub;
      this.#read(sub);
    }
    return () => {
      this.#listeners.delete(listener);
      if (this.#listeners.size === 0 && this.#sub) {
        this.#sub.close();
        this.#sub = undefined;
      }
    };
  }

  async #read(sub: BusSubscription): Promise<void> {
    for (;;) {
      const f = sub.poll() ?? await sub.next();
      if (!f) break;
      if (f.kind !== "pcm") continue;
      this.frames++;
      this.format = { sampleRate: f.sampleRate, channels: f.channels };
      for (const l of [...this.#listeners]) l(f);
    }
    if (this.#sub === sub) {
      // The bus's stream ended (not a close by the last listener leaving).
      this.#sub = undefined;
      this.close();
    }
  }

  /** Stops reading and tells `onEnd` (once). */
  close(): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#sub?.close();
    this.#sub = undefined;
    this.#listeners.clear();
    this.#onEnd();
  }
}

/**
 * Records pcm frames to a 16-bit WAV file: the header is written first and
 * its sizes updated at each flush (once a second and at the end), so the file
 * is playable while it grows.
 */
export class WavRecorder {
  /** The file written. */
  readonly path: string;
  #file?: Deno.FsFile;
  #format?: { sampleRate: number; channels: number };
  #pending: Uint8Array[] = [];
  #pendingBytes = 0;
  #dataBytes = 0;
  #chain: Promise<void> = Promise.resolve();
  #closed = false;
  /** Frames of another format than the first (not written). */
  skipped = 0;

  /**
   * Creates a recorder; the file is created with the first frame.
   * @param path the WAV file (its folder is created)
   */
  constructor(path: string) {
    this.path = path;
  }

  /** Seconds written so far. */
  get seconds(): number {
    const f = this.#format;
    return f ? (this.#dataBytes + this.#pendingBytes) / 2 / f.channels / f.sampleRate : 0;
  }

  /** Takes a frame (buffered; written at the next flush). */
  write(frame: PcmFrame): void {
    if (this.#closed) return;
    const f = this.#format ??= { sampleRate: frame.sampleRate, channels: frame.channels };
    if (f.sampleRate !== frame.sampleRate || f.channels !== frame.channels) {
      this.skipped++;
      return;
    }
    const bytes = new Uint8Array(frame.samples.length * 2);
    const v = new DataView(bytes.buffer);
    for (let i = 0; i < frame.samples.length; i++) v.setInt16(i * 2, frame.samples[i], true);
    this.#pending.push(bytes);
    this.#pendingBytes += bytes.length;
  }

  /** Writes what is buffered and updates the header. */
  flush(): Promise<void> {
    this.#chain = this.#chain.then(() => this.#flush());
    return this.#chain;
  }

  async #flush(): Promise<void> {
    const fmt = this.#format;
    if (!fmt) return;
    if (!this.#file) {
      await Deno.mkdir(dirname(this.path), { recursive: true });
      this.#file = await Deno.open(this.path, { write: true, create: true, truncate: true });
      await writeAll(this.#file, wavHeader({ encoding: "pcm16", ...fmt, dataBytes: 0 }));
    }
    const file = this.#file;
    const chunks = this.#pending;
    this.#pending = [];
    this.#pendingBytes = 0;
    await file.seek(0, Deno.SeekMode.End);
    for (const c of chunks) {
      await writeAll(file, c);
      this.#dataBytes += c.length;
    }
    await file.seek(0, Deno.SeekMode.Start);
    await writeAll(file, wavHeader({ encoding: "pcm16", ...fmt, dataBytes: this.#dataBytes }));
  }

  /** Writes the rest and closes the file; the recorder takes no more frames. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return await this.#chain;
    this.#closed = true;
    await this.flush();
    this.#file?.close();
    this.#file = undefined;
  }
}

async function writeAll(file: Deno.FsFile, bytes: Uint8Array): Promise<void> {
  let off = 0;
  while (off < bytes.length) off += await file.write(bytes.subarray(off));
}
