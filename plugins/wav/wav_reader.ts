/**
 * Streams the data chunk of a WAV file as 16-bit PCM frames: reads blocks of
 * ~64 KB with `Deno.FsFile` and converts each frame through typed-array views
 * (`wavefile`'s `getSamples` manages 6.7 M samples/s and needs the whole file in
 * memory).
 *
 * @module
 */
import type { PcmChunkReader } from "./pcm_stream.ts";
import { toInt16, WavFormatError, type WavInfo } from "./wav_format.ts";

/** Target size of one file read. */
const BLOCK_BYTES = 64 * 1024;

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
  readonly #info: WavInfo;
  readonly #file: Deno.FsFile;
  readonly #frameBytes: number;
  readonly #loop: boolean;
  readonly #block: Uint8Array;
  #blockLen = 0;
  #blockPos = 0;
  #remaining: number;
  #closed = false;
  /** Times the reader went back to the start of the data. */
  loops = 0;
  /** Data bytes read from the file so far. */
  bytesRead = 0;

  private constructor(info: WavInfo, file: Deno.FsFile, frameSamples: number, loop: boolean) {
    this.#info = info;
    this.#file = file;
    this.#frameBytes = frameSamples * info.blockAlign;
    this.#loop = loop && info.dataBytes > 0;
    const blocks = Math.max(1, Math.floor(BLOCK_BYTES / this.#frameBytes));
    this.#block = new Uint8Array(blocks * this.#frameBytes);
    this.#remaining = info.dataBytes;
  }

  /**
   * Opens the file described by `info` and positions it at the data chunk.
   *
   * @param info header read by `readWavInfo`
   * @param frameSamples samples per channel per frame
   * @param loop restart at the beginning of the data when it ends (frames stay full-sized across the loop point)
   * @param who stage name for error messages
   * @throws WavFormatError `<who>: <path>: cannot open: ...` when the file is gone
   */
  static async open(info: WavInfo, frameSamples: number, loop: boolean, who = "wav"): Promise<WavStreamReader> {
    let file: Deno.FsFile;
    try {
      file = await Deno.open(info.path, { read: true });
    } catch (e) {
      throw new WavFormatError(who, info.path, `cannot open: ${e instanceof Error ? e.message : e}`);
    }
    try {
      await file.seek(info.dataOffset, Deno.SeekMode.Start);
    } catch (e) {
      file.close();
      throw e;
    }
    return new WavStreamReader(info, file, frameSamples, loop);
  }

  /** Reads the next block; false at the end of the data (after looping, if enabled). */
  async #refill(): Promise<boolean> {
    // Two attempts: in loop mode, a read that finds nothing (the file shrank since
    // its header was read) goes back to the start once before giving up.
    for (let attempt = 0; attempt < 2; attempt++) {
      if (this.#remaining === 0) {
        if (!this.#loop) return false;
        await this.#file.seek(this.#info.dataOffset, Deno.SeekMode.Start);
        this.#remaining = this.#info.dataBytes;
        this.loops++;
      }
      const want = Math.min(this.#block.length, this.#remaining);
      let got = 0;
      while (got < want) {
        const n = await this.#file.read(this.#block.subarray(got, want));
        if (n === null) break;
        got += n;
      }
      got -= got % this.#info.blockAlign;
      // Fewer bytes than the header promised: the file shrank; what is left is the end.
      this.#remaining = got < want ? 0 : this.#remaining - got;
      if (got > 0) {
        this.bytesRead += got;
        this.#blockLen = got;
        this.#blockPos = 0;
        return true;
      }
    }
    return false;
  }

  /** The next frame's samples (interleaved), shorter only at the very end, or null at the end. */
  async next(): Promise<Int16Array | null> {
    if (this.#closed) return null;
    const info = this.#info;
    const fb = this.#frameBytes;
    if (this.#blockPos >= this.#blockLen && !(await this.#refill())) return null;
    // Fast path: the whole frame is in the current block.
    if (this.#blockLen - this.#blockPos >= fb) {
      const out = toInt16(info, this.#block.subarray(this.#blockPos, this.#blockPos + fb), fb / info.bytesPerSample);
      this.#blockPos += fb;
      return out;
    }
    // Slow path: the frame straddles blocks (or the loop point).
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
    return toInt16(info, scratch.subarray(0, filled), filled / info.bytesPerSample);
  }

  /** Closes the file. Safe to call more than once. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#file.close();
    } catch { /* already closed */ }
  }
}
