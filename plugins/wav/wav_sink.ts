/**
 * `wav-sink`: records 16-bit PCM or G.711 frames to a WAV file that stays
 * playable while it is being written.
 *
 * @module
 */
import { outOfFilesHint } from "../../core/open_files.ts";
import { dirname, resolve } from "../../core/path.ts";
import { onMemoryFileSystem } from "../../core/paths.ts";
import { z } from "zod";
import type { Timer } from "../../core/clock.ts";
import { type Codec, type Format, formatToString, type Frame } from "../../core/frame.ts";
import type { Logger } from "../../core/log.ts";
import { pathOption } from "../../core/options.ts";
import { definePlugin, FormatError, type RunContext, type SinkStage } from "../../core/stage.ts";
import { MAX_RIFF_SIZE, wavHeader, wavHeaderProblem, type WavHeaderSpec } from "./wav_format.ts";

/** Options of `wav-sink`. */
export const wavSinkOptions = z.object({
  path: pathOption().describe(
    "WAV file to write (created when the chain starts, see if_exists; parent directories are created); relative to " +
      "the pipeline file's directory (a --set value: to the working directory)",
  ),
  format: z.enum(["pcm16", "g711"]).default("pcm16").describe(
    "pcm16: 16-bit linear PCM from pcm frames; g711: the G.711 bytes of encoded frames as they are (µ-law: format tag 7, A-law: 6)",
  ),
  header_interval_ms: z.number().int().min(100).max(60000).default(1000).describe(
    "How often buffered audio is written and the header sizes updated, so a killed process leaves a playable file (ms)",
  ),
  if_exists: z.enum(["replace", "number"]).default("replace").describe(
    'When the file exists: "replace" it (the default), or "number": write NAME-2.wav (-3, ...) instead, never ' +
      "touching an existing file (call recordings: two calls with the same Call-ID get two files)",
  ),
  max_gap_ms: z.number().int().min(0).max(3_600_000).default(10000).describe(
    "A forward jump in pts up to this long is filled with silence; a larger jump either way starts a new timeline written back to back (ms; 0 = never fill). In a real-time chain, also how far the file may run ahead of the time since the chain started (+5 %) before gaps are no longer filled",
  ),
});

/**
 * Bytes buffered before a write is started without waiting for the interval: one write per chunk of this size, in a
 * real-time chain (a call's recording: a 64 KB chunk is 4 s of 8 kHz audio).
 */
const FLUSH_BYTES = 64 * 1024;
/**
 * The chunk of a sink in a chain that is not real-time (a file transcoded offline): each asynchronous write costs the
 * chain's thread ~40 µs to hand over and complete, so fewer, larger writes (a 600 s transcode's 9.6 MB in 37 writes
 * instead of 147) take ~4-8 ms less.
 */
const OFFLINE_FLUSH_BYTES = 256 * 1024;
/** Directories this process made (or found) for its recordings, at most {@linkcode MADE_DIRS_MAX}. */
const madeDirs = new Set<string>();
const MADE_DIRS_MAX = 1024;
function rememberDir(dir: string): void {
  if (madeDirs.size >= MADE_DIRS_MAX) madeDirs.clear();
  madeDirs.add(dir);
}
/**
 * For `if_exists: "number"`: the number after the last one this process took, per path. A path that many recordings
 * share (calls with the same Call-ID, a peer's choice) would otherwise have each new one try every name taken before
 * it, one exclusive open each: the calls of one name together cost the square of their number. At most
 * {@linkcode NEXT_NUMBER_MAX} paths are remembered (the oldest is forgotten: its next recording starts over at 1).
 */
const nextNumber = new Map<string, number>();
const NEXT_NUMBER_MAX = 4096;
/** Discontinuities (pts jumps beyond max_gap_ms) a sink logs; the rest are counted in its stats. */
const DISCONTINUITIES_LOGGED = 3;
/** Highest number `if_exists: "number"` gives a path (NAME-10000.ext). */
const NUMBER_MAX = 10_000;
/** The empty chunk a sink starts with: the first bytes bring a real one. */
const NO_CHUNK = new Uint8Array(0);
/** `write` returns false (backpressure) above this many unwritten bytes ... */
const HIGH_WATER = 1024 * 1024;
/** ... and `drained()` resolves once fewer than this are left. */
const LOW_WATER = 256 * 1024;
/**
 * Written chunks kept for reuse: as many as can be waiting at the high-water mark, plus the one being filled and one
 * spare (`HIGH_WATER / chunk + 2`). A sink fed faster than the disk takes it (a file transcoded offline) cycles
 * through that many; with fewer kept, it allocated a fresh zeroed 64 KB for most chunks, and a new page costs ~10 µs
 * to map on a virtual machine like this one (a 600 s 44.1 kHz WAV copied through `file-source → wav-sink`: 0.29 s with
 * 4 kept, 0.22 s with 18). When the backlog has been below the low-water mark at two header ticks in a row
 * (`header_interval_ms` apart), the pool goes back to {@linkcode CALM_POOL_BYTES}: a call's sink that buffered a
 * megabyte while the disk stalled does not keep it for the rest of the call. (Trimmed at every flush instead, the pool
 * went with each dip below the low-water mark of a sink fed faster than the disk, and the copy above took 0.30 s
 * again.)
 */
const poolChunks = (chunk: number) => HIGH_WATER / chunk + 2;
/**
 * Bytes of written chunks kept for reuse while the backlog is below the low-water mark (a call's sink uses a chunk or
 * two).
 */
const CALM_POOL_BYTES = 4 * FLUSH_BYTES;

/** Silence byte of each G.711 law (the code for linear 0). */
const G711_SILENCE: Record<Codec, number> = { PCMU: 0xff, PCMA: 0xd5 };

async function writeAll(file: Deno.FsFile, bytes: Uint8Array): Promise<void> {
  let off = 0;
  while (off < bytes.length) off += await file.write(bytes.subarray(off));
}

/** The file being written is in no directory any more (nlink 0): thrown by a header tick, reported by #writeError. */
class FileRemoved extends Error {}

/** What to do about a file error, by its `code` (empty when there is nothing more to say than its message). */
function fileErrorHint(e: unknown): string {
  // Out of descriptors (EMFILE, ENFILE): said by code or by message (a Deno error may carry only the message).
  const files = outOfFilesHint(e);
  if (files) return files;
  switch ((e as { code?: unknown } | null)?.code) {
    case "ENOSPC":
      return " (the file system is full: free space there; new recordings start again once there is room)";
    case "EDQUOT":
      return " (the disk quota is used up: free space or raise the quota)";
    case "EROFS":
      return " (the file system is read-only)";
    case "EACCES":
    case "EPERM":
      return " (permission denied: let the user voxpipe runs as write there, or record elsewhere)";
    case "EISDIR":
      return " (a directory is in the file's place: remove it, or name another file)";
    case "ENOTDIR":
      return " (a file is in the place of one of its directories: remove it, or record elsewhere)";
    default:
      return "";
  }
}

function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/**
 * Records to a WAV file.
 *
 * - `format: "pcm16"` takes pcm frames of any rate and channel count (fixed by
 *   the negotiated format, or by the first frame when upstream leaves it open)
 *   and writes 16-bit PCM (format tag 1). Encoded input is refused at build time
 *   with a hint to insert a `g711-decoder` or set `format` to `g711`.
 * - `format: "g711"` takes encoded G.711 frames and writes their bytes as an
 *   8-bit µ-law (tag 7) or A-law (tag 6) WAV with a `fact` chunk. pcm input is
 *   refused at build time.
 *
 * The timeline follows pts: a forward gap (missing samples) up to `max_gap_ms` is
 * written as silence and counted in `gap_samples`; samples that overlap what was
 * already written (a late or duplicate frame) are dropped and counted in
 * `dropped_samples`; a jump larger than `max_gap_ms` either way (an RTP timestamp
 * reset, say) is counted in `discontinuities` (logged for the first three) and written back to back. In a
 * real-time chain a gap is filled only as far as the file stays within
 * `max_gap_ms` (+5 % of the time elapsed) of the time since the chain started;
 * the rest is counted in `cut_samples` (a peer whose timestamps leap ahead on
 * every packet would otherwise add up to `max_gap_ms` of silence per packet).
 * Frames of type `concealed` or `silence` are written like any other: they are
 * real output. An encoded frame with an empty payload (a concealment request)
 * writes nothing itself; the gap it leaves is filled with silence.
 *
 * In a real-time chain the file is created with Deno's asynchronous calls (on its
 * I/O threads), except in a directory on a memory file system (tmpfs), where it
 * is created and given its header synchronously: no disk to wait for there, and
 * two thread hops fewer per recording. A chain that is not real-time creates it
 * synchronously. Either way `start()` resolves once the file holds its header
 * (when the format is known by then), and rejects with `cannot create the
 * recording` and the reason when it cannot be created or cannot hold its header
 * (a full disk): a call's chains start before it is answered, so such a call is
 * refused rather than answered and hung up.
 *
 * A file (or its directory) renamed while recording is finished where it now
 * is: at the end the open file is compared with what its path names (one
 * `stat`), and when they differ `stats()` gives `path` where the file is now
 * (found among the process's open files, `/proc/self/fd`) and `moved_from` the
 * path it was created at (`moved_to: "unknown"` when it cannot be found), and a
 * warning says so; a call's summary names the new path.
 *
 * Writing never blocks the chain: `write` copies the samples into 64 KB memory
 * chunks and file writes run asynchronously, one at a time, when 64 KB are
 * buffered or every `header_interval_ms` on the media clock. Each interval also
 * rewrites the header with the sizes of the data on disk, so a file cut by a
 * crash is playable up to the last interval (at most `header_interval_ms` of
 * audio is lost). Async batched writes were chosen over small synchronous writes:
 * a synchronous write runs on the event loop, where one slow disk would stall
 * every call of the process, and it costs more even on a fast one (measured with
 * `bench/wav_bench.ts`: 0.11 µs of event-loop time per 20 ms frame batched, against
 * 0.6 µs for one `writeSync` per frame into the page cache); batching also keeps
 * it to about one write per second for an 8 kHz call. `write` returns false above
 * 1 MB of unwritten audio and `drained()` resolves below 256 KB. `end()` writes
 * everything, the pad byte of an odd-sized data chunk and the final header.
 *
 * A write that fails (a full disk) ends the recording, once, with an error that
 * names the file, says what to do and how much audio the file kept: the audio
 * still buffered is dropped, and the file is left a valid WAV of the samples that
 * reached it (its header rewritten with their sizes and the file cut after them,
 * which needs no room on a full disk), or removed when not even its header could
 * be written. A file removed while recording (it, or its directory, deleted: what
 * is written to it would be lost when it is closed) is found at the next header
 * tick (one `fstat`) and ends the recording the same way, with an error saying
 * so; a recording started after that creates the directory again.
 *
 * stats: `path`, `created` (the file exists: false before the start, when it could not be created, or when it was
 * removed holding no valid WAV), `frames`, `samples` (per channel, from frames), `gap_samples`,
 * `cut_samples`, `dropped_samples`, `discontinuities`, `bytes_written` (data bytes on disk),
 * `pending_bytes`, `buffer_bytes` (memory held for writing: the chunk being
 * filled, those waiting and those kept for reuse), `duration_s` (of the data
 * chunk), `header_updates`.
 *
 * @example Pipeline config
 * ```json
 * { "use": "wav-sink", "path": "out/call-${call.id}.wav", "format": "pcm16" }
 * ```
 */
export default definePlugin({
  name: "wav-sink",
  kind: "sink",
  description: "Records pcm (16-bit) or G.711 frames to a WAV file, kept playable while recording",
  accepts: [{ kind: "pcm" }, { kind: "encoded" }],
  /** Copies each frame into its write buffers before `write` returns (see `PluginDefinition.borrowsInput`). */
  borrowsInput: true,
  options: wavSinkOptions,
  create(options, ctx): SinkStage | Promise<SinkStage> {
    const path = resolve(ctx.baseDir, options.path);
    // Synchronous when running (callers may create it without awaiting); checking looks at the file system first.
    if (ctx.checking) return checkWritablePath(path).then(() => new WavSink(path, options, ctx.log));
    return new WavSink(path, options, ctx.log);
  },
});

type Options = z.output<typeof wavSinkOptions>;

/**
 * For checking, without creating anything: `path` is not a directory, and its nearest existing ancestor is a
 * directory (so the parent directories can be created when the chain starts).
 */
async function checkWritablePath(path: string): Promise<void> {
  const info = await Deno.stat(path).catch(() => undefined);
  if (info?.isDirectory) throw new Error(`wav-sink: ${path} is a directory; name a file`);
  for (let dir = dirname(path);; dir = dirname(dir)) {
    const d = await Deno.stat(dir).catch(() => undefined);
    if (d) {
      if (!d.isDirectory) {
        throw new Error(`wav-sink: ${path}: ${dir} is not a directory, so the file cannot be created`);
      }
      return;
    }
    if (dirname(dir) === dir) return;
  }
}

/**
 * Where the open file with `info`'s device and inode is now, read from the links of `/proc/self/fd` (Linux), or
 * undefined (not Linux, not found, not readable). Reads the whole directory: for a recording found moved, once.
 */
function findOpenFile(info: Deno.FileInfo): string | undefined {
  if (Deno.build.os !== "linux") return undefined;
  try {
    for (const e of Deno.readDirSync("/proc/self/fd")) {
      const link = `/proc/self/fd/${e.name}`;
      let st: Deno.FileInfo;
      try {
        st = Deno.statSync(link);
      } catch {
        continue; // closed meanwhile (the directory's own descriptor), or not statable
      }
      if (st.ino !== info.ino || st.dev !== info.dev || !st.isFile) continue;
      const target = Deno.readLinkSync(link);
      return target.endsWith(" (deleted)") ? undefined : target;
    }
  } catch { /* no /proc, or no descriptor left to read it */ }
  return undefined;
}

class WavSink implements SinkStage {
  #path: string;
  /** The path asked for, when the file was found elsewhere at the end (renamed while recording). */
  #movedFrom: string | undefined;
  /** Moved, and where to is not known. */
  #movedLost = false;
  readonly #opts: Options;
  readonly #log: Logger;
  // Format: what negotiation said, completed by the first frame.
  #wantRate: number | undefined;
  #wantChannels: number | undefined;
  #wantCodec: Codec | undefined;
  #spec: Omit<WavHeaderSpec, "dataBytes"> | undefined;
  #silenceByte = 0;
  #bytesPerFrame = 2; // bytes per sample frame (all channels)
  // Timeline.
  #expectedPts: number | undefined;
  // Buffers.
  /** Bytes of a chunk: FLUSH_BYTES, or OFFLINE_FLUSH_BYTES in a chain that is not real-time (set at start). */
  #chunkBytes = FLUSH_BYTES;
  /** Full chunks waiting to be written (each `#chunkBytes`, all bytes used). */
  #chunks: Uint8Array<ArrayBuffer>[] = [];
  /** The chunk being filled; {@linkcode NO_CHUNK} until the first bytes (a call that records nothing allocates none). */
  #cur: Uint8Array<ArrayBuffer> = NO_CHUNK;
  #curLen = 0;
  /** Chunks already written, for reuse (see poolChunks): no buffer of its own per chunk of audio. */
  #free: Uint8Array<ArrayBuffer>[] = [];
  /** Header ticks in a row that found the backlog below the low-water mark. */
  #calmTicks = 0;
  #unwritten = 0;
  #dataOnDisk = 0;
  #headerDataBytes = 0; // data size in the header on disk
  // Writer.
  #rc: RunContext | undefined;
  #file: Deno.FsFile | undefined;
  #chain: Promise<void> = Promise.resolve();
  #flushQueued = false;
  #headerDue = false;
  #headerOnDisk = false;
  /** True once anything was written to the file (until then its offset is 0). */
  #wroteAny = false;
  /**
   * True when the file's offset is known to be its end (data is appended there): a flush then writes without
   * seeking first (a seek per 64 KB flush was an async operation each, ~150 of them in a 10-minute transcode).
   */
  #atEnd = false;
  #timer: Timer | undefined;
  /** Due time of the first header tick (start + header_interval_ms); the ticks run once data has come. */
  #firstTick = 0;
  #drainWaiters: (() => void)[] = [];
  #failed: unknown;
  /** What made a file operation fail (the error #failed was made from). */
  #failedCause: unknown;
  /** True while start() waits for the header's write. */
  #starting = false;
  #ending: Promise<void> | undefined;
  // Counters.
  #frames = 0;
  #samples = 0;
  #gapSamples = 0;
  #droppedSamples = 0;
  #discontinuities = 0;
  #cutSamples = 0;
  /** Clock time the chain started, when it is real-time (gaps are filled only as far as it allows); else undefined. */
  #realtimeStart: number | undefined;
  #headerUpdates = 0;
  #warnedSize = false;
  /** True while the file exists: created by start(), until removed as holding no valid WAV (or by someone else). */
  #created = false;
  /** The file was found removed while recording (see #checkLinked). */
  #removed = false;

  constructor(path: string, opts: Options, log: Logger) {
    this.#path = path;
    this.#opts = opts;
    this.#log = log;
  }

  negotiate(input: Format | undefined): undefined {
    if (!input) return undefined;
    if (this.#opts.format === "pcm16") {
      if (input.kind !== "pcm") {
        throw new FormatError(
          `format "pcm16" writes linear PCM, but the input is ${formatToString(input)}: insert a g711-decoder ` +
            `before wav-sink, or set "format": "g711" to store the G.711 bytes as they are`,
        );
      }
      this.#wantRate = input.sampleRate;
      this.#wantChannels = input.channels;
      if (input.sampleRate !== undefined && input.channels !== undefined) {
        const problem = wavHeaderProblem({ encoding: "pcm16", sampleRate: input.sampleRate, channels: input.channels });
        if (problem) throw new FormatError(`wav-sink: ${this.#path}: ${problem}`);
      }
    } else {
      if (input.kind !== "encoded") {
        throw new FormatError(
          `format "g711" stores G.711 bytes, but the input is ${formatToString(input)}: insert a g711-encoder ` +
            `before wav-sink, or set "format": "pcm16" (the default) to write linear PCM`,
        );
      }
      if (input.clockRate !== undefined && input.clockRate !== 8000) {
        throw new FormatError(`format "g711" needs an 8000 Hz clock, but the input is ${formatToString(input)}`);
      }
      this.#wantCodec = input.codec;
    }
    return undefined;
  }

  /**
   * Creates the path, or NAME-2.ext, NAME-3.ext ... when it exists (exclusive creation: two sinks starting at once
   * never share a file), and remembers the name taken.
   */
  async #openNumbered(sync: boolean): Promise<Deno.FsFile> {
    const base = this.#path;
    const dot = base.lastIndexOf(".");
    const stem = dot > base.lastIndexOf("/") ? base.slice(0, dot) : base;
    const ext = dot > base.lastIndexOf("/") ? base.slice(dot) : "";
    for (let k = nextNumber.get(base) ?? 1; k <= NUMBER_MAX; k++) {
      const path = k === 1 ? base : `${stem}-${k}${ext}`;
      try {
        const file = sync
          ? Deno.openSync(path, { write: true, createNew: true })
          : await Deno.open(path, { write: true, createNew: true });
        if (k > 1) this.#log.info(`wav-sink: ${base} exists: recording to ${path}`);
        this.#path = path;
        nextNumber.delete(base);
        if (nextNumber.size >= NEXT_NUMBER_MAX) nextNumber.delete(nextNumber.keys().next().value!);
        nextNumber.set(base, k + 1);
        return file;
      } catch (e) {
        if (!(e instanceof Deno.errors.AlreadyExists)) throw e;
      }
    }
    throw new Error(`${base} and 10 000 numbered variants exist; clean the directory or choose another path`);
  }

  async start(rc: RunContext): Promise<void> {
    this.#rc = rc;
    if (rc.realtime === true) this.#realtimeStart = rc.clock.now();
    // A chain that runs as fast as it can (a file to a file) creates the file with the synchronous calls: each
    // asynchronous one hops to Deno's I/O threads and back (0.1-1 ms here) while the chain waits. A call's recording
    // (a real-time chain) leaves the event loop to the other calls meanwhile, unless the directory is on a memory
    // file system (tmpfs), where the synchronous calls wait for no disk and cost a call ~10 µs where the two hops
    // (open, then the header) cost ~60: there it creates the file and writes its header synchronously too. The
    // writes stay asynchronous either way: they go on while the chain computes, or the calls run.
    const dir = dirname(this.#path);
    const offline = rc.realtime !== true;
    const memory = !offline && onMemoryFileSystem(dir);
    const sync = offline || memory;
    if (offline) this.#chunkBytes = OFFLINE_FLUSH_BYTES;
    const open = () =>
      this.#opts.if_exists === "replace"
        ? sync
          ? Deno.openSync(this.#path, { write: true, create: true, truncate: true })
          : Deno.open(this.#path, { write: true, create: true, truncate: true })
        : this.#openNumbered(sync);
    const mkdir = async (dir: string) => {
      try {
        if (sync) Deno.mkdirSync(dir, { recursive: true });
        else await Deno.mkdir(dir, { recursive: true });
      } catch (e) {
        // mkdir says "File exists" when a file is where the directory goes.
        if (!(e instanceof Deno.errors.AlreadyExists)) throw e;
        throw Object.assign(new Error(`${dir} exists but is not a directory`), { code: "ENOTDIR" });
      }
    };
    try {
      // The directory is made once per process (a call per second to the same directory need not ask again),
      // and again when it has gone since.
      if (!madeDirs.has(dir)) {
        await mkdir(dir);
        rememberDir(dir);
      }
      try {
        this.#file = await open();
      } catch (e) {
        if (!(e instanceof Deno.errors.NotFound)) throw e;
        madeDirs.delete(dir);
        await mkdir(dir);
        rememberDir(dir);
        this.#file = await open();
      }
      this.#created = true;
    } catch (e) {
      throw new Error(`wav-sink: ${this.#path}: cannot create the recording: ${errorMessage(e)}${fileErrorHint(e)}`);
    }
    // A fully known format gives a valid (empty) WAV at once.
    if (this.#opts.format === "pcm16" && this.#wantRate && this.#wantChannels) {
      this.#setSpec({ encoding: "pcm16", sampleRate: this.#wantRate, channels: this.#wantChannels }, memory);
    } else if (this.#opts.format === "g711" && this.#wantCodec) {
      this.#setSpec(this.#g711Spec(this.#wantCodec), memory);
    }
    if (this.#spec && !this.#headerOnDisk) {
      // The header queued (a file on disk): its write is part of the start, so that a file that cannot hold even its
      // header (a full disk) fails the start, and a call is refused rather than answered and hung up.
      this.#starting = true;
      try {
        await this.#chain;
      } finally {
        this.#starting = false;
      }
      const e = this.#failedCause;
      if (this.#failed) {
        throw new Error(
          `wav-sink: ${this.#path}: cannot create the recording: cannot write its header: ${errorMessage(e)}${
            fileErrorHint(e)
          }; the empty file is removed`,
        );
      }
    }
    // The header ticks start with the first data (before it, a tick has nothing to write), on the grid they would
    // have had from the start: a recording that receives nothing (a call without RTP) costs no timer.
    this.#firstTick = rc.clock.now() + this.#opts.header_interval_ms;
  }

  /** Starts the header ticks at the first tick due from now on (see start()). */
  #startTicks(): void {
    const iv = this.#opts.header_interval_ms;
    const now = this.#rc!.clock.now();
    let due = this.#firstTick;
    if (due < now) due += Math.ceil((now - due) / iv) * iv;
    this.#schedule(due);
  }

  #schedule(due: number): void {
    const clock = this.#rc!.clock;
    this.#timer = clock.at(due, () => {
      if (this.#ending) return;
      if (this.#unwritten > 0 || this.#dataOnDisk !== this.#headerDataBytes) this.#kick(true);
      // Calm at this tick and the one before: the burst that filled the pool is over (see poolChunks).
      if (this.#unwritten >= LOW_WATER) this.#calmTicks = 0;
      else if (++this.#calmTicks >= 2) {
        const keep = Math.max(1, CALM_POOL_BYTES / this.#chunkBytes);
        if (this.#free.length > keep) this.#free.length = keep;
      }
      // Drift-free: the n-th tick is due at start + n × interval, whenever this one ran.
      this.#schedule(due + this.#opts.header_interval_ms);
    });
  }

  #g711Spec(codec: Codec): Omit<WavHeaderSpec, "dataBytes"> {
    return { encoding: codec === "PCMU" ? "mulaw" : "alaw", sampleRate: 8000, channels: 1 };
  }

  /**
   * Fixes the format and writes the header for it: queued after the file operations before it, or at once with
   * `now` (start() on a memory file system, when the file is new and nothing is queued: see start()).
   */
  #setSpec(spec: Omit<WavHeaderSpec, "dataBytes">, now = false): void {
    const problem = wavHeaderProblem(spec);
    if (problem) throw new Error(`wav-sink: ${this.#path}: ${problem}`);
    this.#spec = spec;
    this.#bytesPerFrame = (spec.encoding === "pcm16" ? 2 : 1) * spec.channels;
    this.#silenceByte = spec.encoding === "mulaw"
      ? G711_SILENCE.PCMU
      : spec.encoding === "alaw"
      ? G711_SILENCE.PCMA
      : 0;
    const header = wavHeader({ ...spec, dataBytes: 0 });
    if (now && !this.#wroteAny) {
      try {
        let off = 0;
        while (off < header.length) off += this.#file!.writeSync(header.subarray(off));
      } catch (e) {
        // Nothing valid in it: the empty (or cut) file is removed rather than left behind as a broken WAV.
        this.#failed = new Error(
          `wav-sink: ${this.#path}: cannot create the recording: cannot write its header: ${errorMessage(e)}${
            fileErrorHint(e)
          }; the empty file is removed`,
        );
        this.#discard();
        throw this.#failed;
      }
      this.#wroteAny = true;
      this.#atEnd = true; // the header is all the new file holds
      this.#headerOnDisk = true;
      return;
    }
    this.#enqueue(async () => {
      // A file nothing was written to yet is at offset 0 already.
      const rewrite = this.#wroteAny;
      if (rewrite) await this.#file!.seek(0, Deno.SeekMode.Start);
      this.#wroteAny = true;
      await writeAll(this.#file!, header);
      // A first header is all the file holds (it was created empty): the offset is its end.
      this.#atEnd = !rewrite;
      this.#headerOnDisk = true;
    });
  }

  #formatChanged(what: string, frameDesc: string): never {
    throw new Error(`wav-sink: ${this.#path}: ${what} (${frameDesc}); a WAV file holds one format`);
  }

  write(frame: Frame): boolean {
    if (this.#failed) throw this.#failed;
    if (this.#ending) throw new Error(`wav-sink: ${this.#path}: write after end`);
    if (!this.#file) throw new Error(`wav-sink: ${this.#path}: write before start`);
    let bytes: Uint8Array;
    let pts: number;
    if (this.#opts.format === "pcm16") {
      if (frame.kind !== "pcm") {
        throw new Error(`wav-sink: ${this.#path}: format "pcm16" cannot write ${frame.kind} frames`);
      }
      if (!this.#spec) {
        if (this.#wantRate !== undefined && frame.sampleRate !== this.#wantRate) {
          this.#formatChanged(`frame rate differs from the negotiated ${this.#wantRate} Hz`, `${frame.sampleRate} Hz`);
        }
        if (this.#wantChannels !== undefined && frame.channels !== this.#wantChannels) {
          this.#formatChanged(
            `frame channels differ from the negotiated ${this.#wantChannels}`,
            `${frame.channels} ch`,
          );
        }
        this.#setSpec({ encoding: "pcm16", sampleRate: frame.sampleRate, channels: frame.channels });
      } else if (frame.sampleRate !== this.#spec.sampleRate || frame.channels !== this.#spec.channels) {
        this.#formatChanged(
          `format changed from ${this.#spec.sampleRate} Hz ${this.#spec.channels} ch`,
          `now ${frame.sampleRate} Hz ${frame.channels} ch`,
        );
      }
      const s = frame.samples;
      bytes = new Uint8Array(s.buffer, s.byteOffset, s.byteLength - (s.byteLength % this.#bytesPerFrame));
      pts = frame.pts;
    } else {
      if (frame.kind !== "encoded") {
        throw new Error(`wav-sink: ${this.#path}: format "g711" cannot write ${frame.kind} frames`);
      }
      if (!this.#spec) {
        if (this.#wantCodec !== undefined && frame.codec !== this.#wantCodec) {
          this.#formatChanged(`frame codec differs from the negotiated ${this.#wantCodec}`, frame.codec);
        }
        this.#setSpec(this.#g711Spec(frame.codec));
      } else if (this.#g711Spec(frame.codec).encoding !== this.#spec.encoding) {
        this.#formatChanged(
          `codec changed from ${this.#spec.encoding === "mulaw" ? "PCMU" : "PCMA"}`,
          `now ${frame.codec}`,
        );
      }
      bytes = frame.payload;
      pts = frame.pts;
    }
    this.#frames++;
    const bpf = this.#bytesPerFrame;
    const n = bytes.length / bpf; // samples per channel in this frame
    const rate = this.#spec!.sampleRate;
    if (this.#expectedPts === undefined) this.#expectedPts = pts;
    const delta = pts - this.#expectedPts;
    const maxGap = Math.round((this.#opts.max_gap_ms * rate) / 1000);
    if (delta > 0 && delta <= maxGap) {
      // In a real-time chain, filled only as far as the file stays within max_gap_ms (+5 %) of the time elapsed.
      let fill = delta;
      if (this.#realtimeStart !== undefined) {
        const aheadMs = (this.#rc!.clock.now() - this.#realtimeStart) * 1.05 + this.#opts.max_gap_ms;
        const room = Math.floor((aheadMs * rate) / 1000) - (this.#samples + this.#gapSamples);
        fill = Math.max(0, Math.min(delta, room));
        this.#cutSamples += delta - fill;
      }
      this.#fill(fill * bpf);
      this.#gapSamples += fill;
    } else if (delta < 0 && -delta <= maxGap) {
      const skip = Math.min(-delta, n);
      this.#droppedSamples += skip;
      bytes = bytes.subarray(skip * bpf);
      pts += skip;
    } else if (delta !== 0) {
      // Logged for the first few only: a peer whose timestamps leap on every packet would write a line per packet.
      if (++this.#discontinuities <= DISCONTINUITIES_LOGGED) {
        this.#log.warn(
          `wav-sink: ${this.#path}: pts jumped by ${delta} samples (more than max_gap_ms ${this.#opts.max_gap_ms}); ` +
            `continuing without filling${
              this.#discontinuities === DISCONTINUITIES_LOGGED
                ? " (further jumps are only counted: discontinuities)"
                : ""
            }`,
        );
      }
    }
    if (bytes.length > 0) {
      this.#append(bytes);
      this.#samples += bytes.length / bpf;
      this.#expectedPts = pts + bytes.length / bpf;
    }
    if (this.#timer === undefined && this.#unwritten > 0) this.#startTicks();
    if (this.#chunks.length > 0) this.#kick(false);
    return this.#unwritten < HIGH_WATER;
  }

  /** Copies bytes into the memory chunks. */
  #append(bytes: Uint8Array): void {
    if (bytes.length < this.#cur.length - this.#curLen) {
      // The usual case: the frame fits in the current chunk.
      this.#cur.set(bytes, this.#curLen);
      this.#curLen += bytes.length;
      this.#unwritten += bytes.length;
      return;
    }
    if (this.#cur.length === 0) this.#cur = this.#free.pop() ?? new Uint8Array(this.#chunkBytes);
    let off = 0;
    while (off < bytes.length) {
      const take = Math.min(bytes.length - off, this.#cur.length - this.#curLen);
      this.#cur.set(bytes.subarray(off, off + take), this.#curLen);
      this.#curLen += take;
      off += take;
      if (this.#curLen === this.#cur.length) this.#rotate();
    }
    this.#unwritten += bytes.length;
  }

  /** Appends `count` bytes of silence. */
  #fill(count: number): void {
    if (count > 0 && this.#cur.length === 0) this.#cur = this.#free.pop() ?? new Uint8Array(this.#chunkBytes);
    let left = count;
    while (left > 0) {
      const take = Math.min(left, this.#cur.length - this.#curLen);
      this.#cur.fill(this.#silenceByte, this.#curLen, this.#curLen + take);
      this.#curLen += take;
      left -= take;
      if (this.#curLen === this.#cur.length) this.#rotate();
    }
    this.#unwritten += count;
  }

  #rotate(): void {
    this.#chunks.push(this.#cur);
    this.#cur = this.#free.pop() ?? new Uint8Array(this.#chunkBytes);
    this.#curLen = 0;
  }

  /** Runs `step` after every queued file operation; records the first failure. */
  #enqueue(step: () => Promise<void>): Promise<void> {
    this.#chain = this.#chain.then(async () => {
      if (this.#failed) return;
      try {
        await step();
      } catch (e) {
        this.#failedCause = e;
        if (e instanceof FileRemoved) {
          this.#removed = true;
          this.#created = false;
        }
        this.#failed = this.#writeError(e);
        await this.#salvage();
        if (!this.#starting) this.#rc?.fail(this.#failed); // a failure in start() is start()'s error
        this.#wakeDrainWaiters();
      }
    });
    return this.#chain;
  }

  /**
   * Throws {@linkcode FileRemoved} when the file is no longer in any directory (removed, or its directory removed,
   * while recording): what is written to it would be lost when it is closed. One `fstat` (~1 µs) at each header tick
   * and at the end.
   */
  #checkLinked(): Deno.FileInfo | undefined {
    let info: Deno.FileInfo | undefined;
    try {
      info = this.#file?.statSync();
    } catch {
      return; // the writes that follow report a file that cannot be used
    }
    if (info?.nlink === 0) throw new FileRemoved();
    return info;
  }

  /**
   * At the end: whether the path still names the file written (the open file's device and inode, from the fstat of
   * the last {@linkcode #checkLinked}, against a `stat` of the path: one call per recording). When it does not (the
   * file or its directory was renamed while recording), the path becomes where the file is now, found among the
   * process's open files (`/proc/self/fd`, Linux; read only then), and `moved_from` keeps the one asked for; where it
   * cannot be found, the path stays the one asked for, `moved_from` says it too and `moved_to` is `unknown`.
   */
  #checkPath(open: Deno.FileInfo | undefined): void {
    if (!open || open.ino === null || open.dev === null) return; // no inode numbers (Windows): nothing to compare
    // Synchronous: the path was just written through, its entries are in the kernel's cache (a few µs); an async
    // stat cost ~50 µs of CPU per recording (the op, its thread hop and promise), 10 % of a call's set-up and end.
    let named: Deno.FileInfo | undefined;
    try {
      named = Deno.statSync(this.#path);
    } catch {
      named = undefined;
    }
    if (named && named.ino === open.ino && named.dev === open.dev) return;
    const asked = this.#path;
    const now = findOpenFile(open);
    this.#movedFrom = asked;
    if (now !== undefined) this.#path = now;
    else this.#movedLost = true;
    this.#log.warn(
      `wav-sink: ${asked}: the recording was moved while it was written (the file or its directory was renamed): ` +
        (now !== undefined ? `it is now ${now}` : "it is no longer at that path, and where it went is not known"),
    );
  }

  /** The error a failed file operation ends the recording with: the file, what failed, what was kept, what to do. */
  #writeError(e: unknown): Error {
    if (e instanceof FileRemoved) {
      const rate = this.#spec?.sampleRate;
      const s = rate ? (Math.floor(this.#dataOnDisk / this.#bytesPerFrame) / rate).toFixed(2) : "0";
      return new Error(
        `wav-sink: ${this.#path}: the file was removed while recording (it, or its directory, was deleted): the ` +
          `${s} s written to it are lost; the recording stops here (keep the recording directory in place while ` +
          "calls record)",
      );
    }
    const rate = this.#spec?.sampleRate;
    const kept = !this.#headerOnDisk
      ? "the file is removed: it held no valid WAV yet"
      : `${rate ? (Math.floor(this.#dataOnDisk / this.#bytesPerFrame) / rate).toFixed(2) : 0} s of audio kept in it`;
    return new Error(
      `wav-sink: ${this.#path}: cannot write: ${errorMessage(e)}${
        fileErrorHint(e)
      }; the recording stops here (${kept})`,
    );
  }

  /**
   * After a failed write: the audio still buffered is dropped (nothing will write it), and the file is left a valid
   * WAV of what reached it (its header rewritten with those sizes, the file cut after them: neither needs room on a
   * full disk), or removed when it never held a header. Best effort: a failure here is ignored (the write's error is
   * the one reported).
   */
  async #salvage(): Promise<void> {
    const removed = this.#removed;
    this.#chunks = [];
    this.#cur = NO_CHUNK;
    this.#curLen = 0;
    this.#free = [];
    this.#unwritten = 0;
    const file = this.#file;
    if (!file || removed) return; // a removed file holds nothing anybody can read: no header to fix
    if (!this.#spec || !this.#headerOnDisk) {
      this.#discard();
      return;
    }
    try {
      const data = this.#dataOnDisk - (this.#dataOnDisk % this.#bytesPerFrame);
      const h = wavHeader({ ...this.#spec, dataBytes: data });
      this.#atEnd = false;
      await file.seek(0, Deno.SeekMode.Start);
      await writeAll(file, h);
      await file.truncate(h.length + data);
      this.#dataOnDisk = this.#headerDataBytes = data;
      this.#headerUpdates++;
    } catch { /* the write's error is reported */ }
  }

  /** Closes and removes a file that holds no valid WAV (its header could not be written). */
  #discard(): void {
    const file = this.#file;
    this.#file = undefined;
    if (!file) return;
    try {
      file.close();
    } catch { /* already closed */ }
    try {
      Deno.removeSync(this.#path);
      this.#created = false;
    } catch { /* gone already, or not ours to remove */ }
  }

  /** Queues one flush of everything buffered (plus a header update when asked), unless one is already queued. */
  #kick(header: boolean): void {
    if (header) this.#headerDue = true;
    if (this.#flushQueued) return;
    this.#flushQueued = true;
    this.#enqueue(() => this.#flushNow());
  }

  async #flushNow(): Promise<void> {
    this.#flushQueued = false;
    const header = this.#headerDue;
    this.#headerDue = false;
    if (header) this.#checkLinked(); // before writing more into a file nobody can open
    const parts = this.#chunks;
    const lens = parts.map((p) => p.length);
    if (this.#curLen > 0) {
      parts.push(this.#cur);
      lens.push(this.#curLen);
      this.#cur = this.#free.pop() ?? NO_CHUNK;
      this.#curLen = 0;
    }
    this.#chunks = [];
    let total = 0;
    for (const n of lens) total += n;
    if (total > 0) {
      this.#wroteAny = true;
      if (!this.#atEnd) {
        await this.#file!.seek(0, Deno.SeekMode.End);
        this.#atEnd = true;
      }
      for (let i = 0; i < parts.length; i++) {
        // Counted as each write returns: a write that fails part-way (a full disk) leaves the bytes before it counted,
        // and the header then written by #salvage() covers exactly what reached the file.
        for (let off = 0; off < lens[i];) {
          const n = await this.#file!.write(parts[i].subarray(off, lens[i]));
          off += n;
          this.#dataOnDisk += n;
          this.#unwritten -= n;
        }
        if (this.#free.length < poolChunks(this.#chunkBytes)) this.#free.push(parts[i]); // written: reusable
      }
    }
    if (header) await this.#writeHeader(false);
    if (this.#unwritten < LOW_WATER) this.#wakeDrainWaiters();
  }

  async #writeHeader(final: boolean): Promise<void> {
    if (!this.#spec || !this.#headerOnDisk) return;
    // The header on disk is already right when no data came since (and no pad byte changes its RIFF size).
    if (this.#dataOnDisk === this.#headerDataBytes && (!final || (this.#dataOnDisk & 1) === 0)) return;
    if (this.#dataOnDisk > MAX_RIFF_SIZE - 64 && !this.#warnedSize) {
      this.#warnedSize = true;
      this.#log.warn(`wav-sink: ${this.#path}: over 4 GiB of audio; the WAV header sizes stay at their 32-bit maximum`);
    }
    const h = wavHeader({ ...this.#spec, dataBytes: this.#dataOnDisk, padded: final });
    this.#atEnd = false;
    await this.#file!.seek(0, Deno.SeekMode.Start);
    await writeAll(this.#file!, h);
    if (!final) {
      await this.#file!.seek(0, Deno.SeekMode.End); // the final one: the file is closed next
      this.#atEnd = true;
    }
    this.#headerDataBytes = this.#dataOnDisk;
    this.#headerUpdates++;
  }

  #wakeDrainWaiters(): void {
    const w = this.#drainWaiters;
    this.#drainWaiters = [];
    for (const f of w) f();
  }

  drained(): Promise<void> {
    if (this.#unwritten < LOW_WATER || this.#failed || this.#ending) return Promise.resolve();
    this.#kick(false);
    return new Promise((resolve) => this.#drainWaiters.push(resolve));
  }

  end(): Promise<void> {
    return this.#ending ??= this.#finish();
  }

  async #finish(): Promise<void> {
    this.#timer?.cancel();
    this.#timer = undefined;
    if (!this.#file) return;
    if (!this.#spec && !this.#failed) {
      // No frame arrived: still leave a valid, empty WAV with the best known format.
      this.#setSpec(
        this.#opts.format === "pcm16"
          ? { encoding: "pcm16", sampleRate: this.#wantRate ?? 8000, channels: this.#wantChannels ?? 1 }
          : this.#g711Spec(this.#wantCodec ?? "PCMU"),
      );
    }
    this.#flushQueued = true; // no more kicks: this is the last flush
    await this.#enqueue(async () => {
      const open = this.#checkLinked();
      await this.#flushNow();
      if (this.#dataOnDisk & 1) await writeAll(this.#file!, new Uint8Array(1)); // RIFF pad byte
      await this.#writeHeader(true);
      this.#checkPath(open);
    });
    this.#wakeDrainWaiters();
    const file = this.#file;
    this.#file = undefined;
    try {
      file.close();
    } catch { /* already closed */ }
    if (this.#failed) throw this.#failed;
  }

  async close(): Promise<void> {
    // The runner calls end() first; this covers a stage closed without it.
    if (this.#file) await this.end().catch(() => {});
  }

  control(command: string): unknown {
    // "sync": resolves once every file operation queued so far has completed
    // (without forcing a flush) — for tests and tools that inspect the file.
    if (command === "sync") return this.#chain;
    throw new Error(`wav-sink: unknown control "${command}" (known: sync)`);
  }

  /** What it will write. */
  plan(): string {
    return `writes ${this.#path} (${this.#opts.format === "g711" ? "G.711" : "16-bit PCM"} WAV)`;
  }

  stats(): Record<string, unknown> {
    const rate = this.#spec?.sampleRate;
    return {
      path: this.#path,
      ...(this.#movedFrom !== undefined ? { moved_from: this.#movedFrom } : {}),
      ...(this.#movedLost ? { moved_to: "unknown" } : {}),
      created: this.#created,
      format: this.#spec
        ? `${this.#spec.encoding} ${this.#spec.sampleRate} Hz ${this.#spec.channels} ch`
        : "not yet known",
      frames: this.#frames,
      samples: this.#samples,
      gap_samples: this.#gapSamples,
      cut_samples: this.#cutSamples,
      dropped_samples: this.#droppedSamples,
      discontinuities: this.#discontinuities,
      bytes_written: this.#dataOnDisk,
      pending_bytes: this.#unwritten,
      buffer_bytes: this.#cur.length + this.#chunks.reduce((n, c) => n + c.length, 0) +
        this.#free.reduce((n, c) => n + c.length, 0),
      duration_s: rate ? (this.#samples + this.#gapSamples) / rate : 0,
      header_updates: this.#headerUpdates,
    };
  }
}
