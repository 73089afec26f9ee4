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

/** The file a {@linkcode WavRecorder} writes: what it needs of a `Deno.FsFile`. */
export interface RecorderFile {
  /** Writes some of `p`; returns how many bytes. */
  write(p: Uint8Array): Promise<number>;
  /** Moves the file position. */
  seek(offset: number, whence: Deno.SeekMode): Promise<number>;
  /** Closes the file. */
  close(): void;
}

/** Options of a {@linkcode WavRecorder}. */
export interface WavRecorderOptions {
  /** Told once when a write fails: the recorder has then stopped (its buffer dropped, its file closed). */
  onError?: (e: Error) => void;
  /** Creates the file (its folder exists); default: `Deno.open` with createNew (`Deno.errors.AlreadyExists` if it is there). */
  openFile?: (path: string) => Promise<RecorderFile>;
}

/** The format written in the header of a recording that got no audio. */
const EMPTY_FORMAT = { sampleRate: 8000, channels: 1 };

/**
 * Records pcm frames to a 16-bit WAV file: the header is written first and
 * its sizes updated at each flush (once a second and at the end), so the file
 * is playable while it grows. {@linkcode WavRecorder.open} creates the file, so
 * that a folder that cannot be written is an error at once; a write that fails
 * later stops the recording (see {@linkcode WavRecorderOptions.onError}).
 */
export class WavRecorder {
  /** The file written. */
  readonly path: string;
  readonly #o: WavRecorderOptions;
  #file?: RecorderFile;
  #opened?: Promise<void>;
  #format?: { sampleRate: number; channels: number };
  #pending: Uint8Array[] = [];
  #pendingBytes = 0;
  #dataBytes = 0;
  #chain: Promise<void> = Promise.resolve();
  #closed = false;
  #failed?: Error;
  /** True once the header is in the file (the data follows it). */
  #headed = false;
  /** Frames of another format than the first (not written). */
  skipped = 0;

  /**
   * Creates a recorder; {@linkcode open} creates the file (else the first flush does).
   * @param path the WAV file (its folder is created)
   * @param o what to do when a write fails; how to create the file
   */
  constructor(path: string, o: WavRecorderOptions = {}) {
    this.path = path;
    this.#o = o;
  }

  /** Seconds written so far. */
  get seconds(): number {
    const f = this.#format;
    return f ? (this.#dataBytes + this.#pendingBytes) / 2 / f.channels / f.sampleRate : 0;
  }

  /** Why the recording stopped, once a write failed. */
  get error(): Error | undefined {
    return this.#failed;
  }

  /**
   * Creates the folder and the file, never over an existing file; rejects saying why it cannot (the recorder is
   * then closed; `Deno.errors.AlreadyExists` when the file is there). Idempotent.
   */
  open(): Promise<void> {
    this.#opened ??= (async () => {
      try {
        await Deno.mkdir(dirname(this.path), { recursive: true });
        this.#file = await (this.#o.openFile ?? openNew)(this.path);
      } catch (e) {
        this.#closed = true;
        this.#pending = [];
        this.#pendingBytes = 0;
        throw e;
      }
    })();
    return this.#opened;
  }

  /** Takes a frame (buffered; written at the next flush). */
  write(frame: PcmFrame): void {
    if (this.#closed || this.#failed) return;
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

  /** Writes what is buffered and updates the header; a failure stops the recording (never rejects). */
  flush(): Promise<void> {
    this.#chain = this.#chain.then(() => this.#flush()).catch((e) => this.#fail(e));
    return this.#chain;
  }

  async #flush(): Promise<void> {
    if (this.#failed) return;
    const fmt = this.#format;
    if (!fmt) return;
    await this.open();
    const file = this.#file!;
    if (!this.#headed) {
      await writeAll(file, wavHeader({ encoding: "pcm16", ...fmt, dataBytes: 0 }));
      this.#headed = true;
    }
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

  #fail(e: unknown): void {
    if (this.#failed) return;
    this.#failed = e instanceof Error ? e : new Error(String(e));
    this.#pending = [];
    this.#pendingBytes = 0;
    try {
      this.#file?.close();
    } catch { /* already closed */ }
    this.#file = undefined;
    this.#o.onError?.(this.#failed);
  }

  /** Writes the rest and closes the file; the recorder takes no more frames. Idempotent; never rejects. */
  async close(): Promise<void> {
    if (this.#closed) return await this.#chain;
    this.#closed = true;
    await this.flush();
    if (this.#file && !this.#format && !this.#failed) {
      // No audio came: still a valid (empty) WAV file.
      const file = this.#file;
      this.#chain = this.#chain.then(() =>
        writeAll(file, wavHeader({ encoding: "pcm16", ...EMPTY_FORMAT, dataBytes: 0 }))
      )
        .catch((e) => this.#fail(e));
      await this.#chain;
    }
    try {
      this.#file?.close();
    } catch { /* closed after a failure */ }
    this.#file = undefined;
  }
}

function openNew(path: string): Promise<RecorderFile> {
  return Deno.open(path, { write: true, createNew: true });
}

async function writeAll(file: RecorderFile, bytes: Uint8Array): Promise<void> {
  let off = 0;
  while (off < bytes.length) off += await file.write(bytes.subarray(off));
}
