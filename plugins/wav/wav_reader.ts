/**
 * Streams the data chunk of a WAV file as 16-bit PCM frames: reads blocks of
 * 256 KB to 1 MB with `Deno.FsFile` and cuts them into frames (`wavefile`'s
 * `getSamples` manages 6.7 M samples/s and needs the whole file in memory).
 *
 * The blocks are read into two reused buffers and each frame is copied out of
 * them (16-bit PCM by one `set`, other encodings converted) into a view of a
 * 64 KB slab (`core/slab.ts`). Reading into a fresh buffer per block and
 * handing out views of it, without the copy, was measured slower: 53 MB read
 * in 1 MB blocks took 320-470 ms into fresh buffers (page faults on new
 * memory) against 25-75 ms into one reused buffer. A frame is returned
 * synchronously while the current block holds it. While the frames of one
 * block are handed out, the next is being read (the read runs on Deno's I/O
 * thread pool), so `next()` waits only when the file is slower than the
 * pipeline. A reader opened with `reuse` (its stage's next stage borrows its input: see
 * `StageContext.reuseOutput`) takes no memory per frame: a 16-bit frame is a view of the block
 * itself, others are converted into one array of the reader's, each valid until the next call to
 * `next()`. Blocks hold 16 frames, at least 256 KB and at most 1 MB (and never
 * less than one frame): a transcode of 1 s frames reads 1 MB at a time (fewer,
 * larger reads; async reads of 64 KB took 3× as long in all as 256 KB here).
 * A reader opened for a chain that ends in a real-time sink (`realtime`) reads
 * 16 frames, at least 16 KB and at most 64 KB, instead: it needs a read only
 * every second or so, and 200 streams started at once would otherwise zero
 * 100 MB of blocks (2 × 256 KB each), which stalled the loop pacing them for
 * ~100 ms.
 *
 * @module
 */
import { ReusedArrays, Slab } from "../../core/slab.ts";
import type { PcmChunkReader } from "./pcm_stream.ts";
import { toInt16, WavFormatError, type WavInfo } from "./wav_format.ts";
import { outOfFilesHint } from "../../core/open_files.ts";

/** Smallest and largest target size of one file read (a block holds at least one frame). */
const MIN_BLOCK_BYTES = 256 * 1024;
const MAX_BLOCK_BYTES = 1024 * 1024;
/** The same, for a reader whose frames are paced in real time. */
const REALTIME_MIN_BLOCK_BYTES = 16 * 1024;
const REALTIME_MAX_BLOCK_BYTES = 64 * 1024;
/** Frames per block, within those bounds. */
const BLOCK_FRAMES = 16;

/**
 * Reads frames from a WAV file opened with {@linkcode WavStreamReader.open}.
 *
 * @example
 * ```ts
 * const info = await readWavInfo("a.wav");
 * const reader = await WavStreamReader.open(info, 160, false);
 * try {
 *   for (let s = await reader.next(); s; s = await reader.next()) console.log(s.length);
 * } finally {
 *   reader.close();
 * }
 * ```
 */
export class WavStreamReader implements PcmChunkReader {
  /** The stage name, for error messages. */
  readonly #who: string;
  readonly #info: WavInfo;
  readonly #file: Deno.FsFile;
  readonly #frameBytes: number;
  readonly #loop: boolean;
  readonly #slab = new Slab();
  /** Frames are handed out in the reader's own memory, valid until the next `next()` (see `open`). */
  readonly #reuse: boolean;
  /** Where frames are converted into when `#reuse` is set. */
  readonly #reused = new ReusedArrays();
  /** Bytes of one block (a whole number of frames). */
  readonly #blockBytes: number;
  #block: Uint8Array;
  /** The other block, being read into while `#block` is consumed. */
  #back: Uint8Array;
  /** The read into `#back` in flight: resolves to the bytes read (0 at the end). */
  #ahead: Promise<number> | undefined;
  #blockLen = 0;
  #blockPos = 0;
  #remaining: number;
  #closed = false;
  /** Times the reader went back to the start of the data. */
  loops = 0;
  /** Data bytes read from the file so far. */
  bytesRead = 0;

  private constructor(
    info: WavInfo,
    file: Deno.FsFile,
    frameSamples: number,
    loop: boolean,
    reuse: boolean,
    realtime: boolean,
    who: string,
  ) {
    this.#who = who;
    this.#info = info;
    this.#reuse = reuse;
    this.#file = file;
    this.#frameBytes = frameSamples * info.blockAlign;
    this.#loop = loop && info.dataBytes > 0;
    const [min, max] = realtime
      ? [REALTIME_MIN_BLOCK_BYTES, REALTIME_MAX_BLOCK_BYTES]
      : [MIN_BLOCK_BYTES, MAX_BLOCK_BYTES];
    const target = Math.min(max, Math.max(min, BLOCK_FRAMES * this.#frameBytes));
    // Never more than the data holds (a short file gets a short buffer), never less than one frame.
    const want = Math.max(
      1,
      Math.min(Math.floor(target / this.#frameBytes), Math.ceil(info.dataBytes / this.#frameBytes)),
    );
    this.#blockBytes = want * this.#frameBytes;
    this.#block = new Uint8Array(0);
    this.#back = new Uint8Array(this.#blockBytes);
    this.#remaining = info.dataBytes;
  }

  /**
   * Opens the file described by `info` and positions it at the data chunk.
   *
   * @param info header read by `readWavInfo`
   * @param frameSamples samples per channel per frame
   * @param loop restart at the beginning of the data when it ends (frames stay full-sized across the loop point)
   * @param who stage name for error messages
   * @param reuse hand out each frame in memory of the reader's that the next call to `next()` may overwrite, instead
   *   of a fresh array the caller may keep (for a stage whose next stage borrows its input)
   * @param realtime the frames are paced in real time (the chain ends in a real-time sink): read smaller blocks
   * @param sync open and position the file with the synchronous calls (see `readWavInfo`)
   * @throws WavFormatError `<who>: <path>: cannot open: ...` when the file is gone
   */
  static async open(
    info: WavInfo,
    frameSamples: number,
    loop: boolean,
    who = "wav",
    reuse = false,
    realtime = false,
    sync = false,
  ): Promise<WavStreamReader> {
    let file: Deno.FsFile;
    try {
      file = sync ? Deno.openSync(info.path, { read: true }) : await Deno.open(info.path, { read: true });
    } catch (e) {
      throw new WavFormatError(
        who,
        info.path,
        `cannot open: ${e instanceof Error ? e.message : e}${outOfFilesHint(e)}`,
      );
    }
    try {
      if (sync) file.seekSync(info.dataOffset, Deno.SeekMode.Start);
      else await file.seek(info.dataOffset, Deno.SeekMode.Start);
    } catch (e) {
      file.close();
      throw new WavFormatError(
        who,
        info.path,
        `cannot read: ${e instanceof Error ? e.message : e}${outOfFilesHint(e)}`,
      );
    }
    return new WavStreamReader(info, file, frameSamples, loop, reuse, realtime, who);
  }

  /** Reads the next block of data into `buf` (looping if enabled); the bytes read, 0 at the end. */
  async #read(buf: Uint8Array): Promise<number> {
    try {
      return await this.#readBlock(buf);
    } catch (e) {
      // A read that fails (an I/O error, the file replaced by a directory) names the file.
      throw new WavFormatError(
        this.#who,
        this.#info.path,
        `cannot read: ${e instanceof Error ? e.message : e}${outOfFilesHint(e)}`,
      );
    }
  }

  /** {@linkcode #read}'s work. */
  async #readBlock(buf: Uint8Array): Promise<number> {
    // Two attempts: in loop mode, a read that finds nothing (the file shrank since
    // its header was read) goes back to the start once before giving up.
    for (let attempt = 0; attempt < 2; attempt++) {
      if (this.#remaining === 0) {
        if (!this.#loop || this.#closed) return 0;
        await this.#file.seek(this.#info.dataOffset, Deno.SeekMode.Start);
        this.#remaining = this.#info.dataBytes;
        this.loops++;
      }
      const want = Math.min(buf.length, this.#remaining);
      let got = 0;
      while (got < want) {
        const n = await this.#file.read(buf.subarray(got, want));
        if (n === null) break;
        got += n;
      }
      got -= got % this.#info.blockAlign;
      // Fewer bytes than the header promised: the file shrank; what is left is the end.
      this.#remaining = got < want ? 0 : this.#remaining - got;
      if (got > 0) {
        this.bytesRead += got;
        return got;
      }
    }
    return 0;
  }

  /** Makes the block read ahead current and starts reading the next one; false at the end of the data. */
  async #refill(): Promise<boolean> {
    const got = await (this.#ahead ?? this.#read(this.#back));
    this.#ahead = undefined;
    if (got === 0 || this.#closed) return false;
    const more = this.#remaining > 0 || this.#loop;
    // The block just consumed becomes the next read's buffer (allocated once, at the first refill).
    const spent = this.#block;
    this.#block = this.#back;
    this.#back = spent.length ? spent : new Uint8Array(this.#blockBytes);
    this.#blockLen = got;
    this.#blockPos = 0;
    if (more) {
      // Read ahead while this block is consumed (a failure surfaces at the next refill).
      const ahead = this.#read(this.#back);
      ahead.catch(() => {});
      this.#ahead = ahead;
    }
    return true;
  }

  /**
   * `bytes` bytes of the block at the read position, converted (16-bit: copied) into a slab view; with `#reuse`, a
   * view of the block itself (16-bit) or converted into `#reused`.
   */
  #frame(bytes: number): Int16Array {
    const info = this.#info;
    const count = bytes / info.bytesPerSample;
    const at = this.#blockPos;
    this.#blockPos += bytes;
    const block = this.#block;
    const offset = block.byteOffset + at;
    if (this.#reuse && info.encoding === "pcm" && info.bitsPerSample === 16 && (offset & 1) === 0) {
      return new Int16Array(block.buffer, offset, count); // the one allocation: no view of the block first
    }
    return toInt16(info, block.subarray(at, at + bytes), count, this.#out(count));
  }

  /** Where a frame of `count` samples is converted to: a fresh slab view, or with `#reuse` the reader's own array. */
  #out(count: number): Int16Array {
    return this.#reuse ? this.#reused.int16(count) : this.#slab.int16(count);
  }

  /**
   * The next frame's samples (interleaved), shorter only at the very end, or null at the end;
   * synchronous while the current block holds the whole frame.
   */
  next(): Int16Array | null | Promise<Int16Array | null> {
    if (this.#closed) return null;
    const fb = this.#frameBytes;
    if (this.#blockLen - this.#blockPos >= fb) return this.#frame(fb);
    return this.#nextSlow();
  }

  /** A frame that needs a read first, or straddles two blocks (or the loop point). */
  async #nextSlow(): Promise<Int16Array | null> {
    const info = this.#info;
    const fb = this.#frameBytes;
    if (this.#blockPos >= this.#blockLen) {
      if (!(await this.#refill())) return null;
      if (this.#blockLen - this.#blockPos >= fb) return this.#frame(fb);
    }
    const scratch = new Uint8Array(fb);
    let filled = 0;
    while (filled < fb) {
      if (this.#blockPos >= this.#blockLen && !(await this.#refill())) break;
      const take = Math.min(fb - filled, this.#blockLen - this.#blockPos);
      scratch.set(this.#block.subarray(this.#blockPos, this.#blockPos + take), filled);
      filled += take;
      this.#blockPos += take;
    }
    if (filled === 0) return null;
    const count = filled / info.bytesPerSample;
    return toInt16(info, scratch.subarray(0, filled), count, this.#out(count));
  }

  /** Closes the file (once a read ahead in flight has finished). Safe to call more than once. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    const close = () => {
      try {
        this.#file.close();
      } catch { /* already closed */ }
    };
    if (this.#ahead) this.#ahead.then(close, close);
    else close();
  }
}
