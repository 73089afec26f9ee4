/**
 * WAV (RIFF/WAVE) container helpers shared by `wav-source`, `wav-sink` and
 * `file-source`: a chunk scanner that reads only the header of a file (the data
 * chunk is streamed separately), sample conversion to 16-bit PCM, G.711
 * expansion, and a writer for canonical headers.
 *
 * Why our own scanner instead of `wavefile`: `wavefile` parses from a buffer
 * holding the whole file, which defeats streaming, and it reads a
 * WAVE_FORMAT_EXTENSIBLE float file (what ffmpeg writes for `pcm_f32le`) as
 * 32-bit integers. Scanning RIFF chunks is a few lines; the tests use
 * `wavefile` as the independent oracle for every format.
 *
 * Deno only runs on little-endian targets (x86_64, aarch64), so samples are read
 * through typed-array views without byte swapping.
 *
 * @module
 */
import { outOfFilesHint } from "../../core/open_files.ts";

/** How samples are encoded in the data chunk. */
export type WavEncoding = "pcm" | "float" | "alaw" | "mulaw";

/** What {@linkcode readWavInfo} learned from a WAV file's header. */
export interface WavInfo {
  /** Path the file was opened with. */
  path: string;
  /** `RIFF` or `RF64`. */
  container: "RIFF" | "RF64";
  /** Sample encoding (after resolving WAVE_FORMAT_EXTENSIBLE). */
  encoding: WavEncoding;
  /** Format tag of the fmt chunk (0xFFFE for extensible). */
  formatTag: number;
  /** Effective format code (the subformat for extensible files). */
  formatCode: number;
  /** Container bits per sample (8, 16, 24, 32 or 64). */
  bitsPerSample: number;
  /** Bytes per sample of one channel. */
  bytesPerSample: number;
  /** Interleaved channels. */
  channels: number;
  /** Samples per second per channel. */
  sampleRate: number;
  /** Bytes per sample frame (all channels). */
  blockAlign: number;
  /** File offset of the first data byte. */
  dataOffset: number;
  /** Data bytes that can actually be read, a multiple of `blockAlign`. */
  dataBytes: number;
  /** Data size the header declares (may exceed what the file holds). */
  declaredDataBytes: number;
  /** True when the file holds fewer data bytes than the header declares. */
  truncated: boolean;
  /** Sample frames (per channel) that can be read: `dataBytes / blockAlign`. */
  frames: number;
}

/** An error about a WAV file; its message names the stage, the path and the reason. */
export class WavFormatError extends Error {
  /**
   * Creates the error; the message reads `<who>: <path>: <reason>`.
   *
   * @param who the stage name, e.g. `wav-source`
   * @param path the file path
   * @param reason what is wrong
   */
  constructor(who: string, path: string, reason: string) {
    super(`${who}: ${path}: ${reason}`);
    this.name = "WavFormatError";
  }
}

/** WAVE format tags used here. */
export const WAVE_FORMAT = {
  /** Integer PCM. */
  PCM: 1,
  /** Microsoft ADPCM (not supported, named in errors). */
  ADPCM: 2,
  /** IEEE float. */
  IEEE_FLOAT: 3,
  /** G.711 A-law. */
  ALAW: 6,
  /** G.711 µ-law. */
  MULAW: 7,
  /** IMA ADPCM (not supported, named in errors). */
  IMA_ADPCM: 0x11,
  /** MPEG layer 3 in WAV (not supported, named in errors). */
  MPEGLAYER3: 0x55,
  /** WAVE_FORMAT_EXTENSIBLE: the real format is the subformat GUID. */
  EXTENSIBLE: 0xfffe,
} as const;

const FORMAT_NAMES: Record<number, string> = {
  1: "PCM",
  2: "Microsoft ADPCM",
  3: "IEEE float",
  6: "G.711 A-law",
  7: "G.711 µ-law",
  0x11: "IMA ADPCM",
  0x31: "GSM 6.10",
  0x50: "MPEG",
  0x55: "MPEG layer 3",
};

/** Tail shared by every KSDATAFORMAT_SUBTYPE GUID: xxxxxxxx-0000-0010-8000-00AA00389B71. */
const GUID_TAIL = [0x00, 0x00, 0x10, 0x00, 0x80, 0x00, 0x00, 0xaa, 0x00, 0x38, 0x9b, 0x71];

const SUPPORTED = "supported: integer PCM 8/16/24/32-bit, IEEE float 32/64-bit, G.711 A-law/µ-law 8-bit";

function fourcc(b: Uint8Array, off: number): string {
  return String.fromCharCode(b[off], b[off + 1], b[off + 2], b[off + 3]);
}

/** `length` bytes at `offset` (fewer at the end of the file); `sync`: with the synchronous calls. */
async function readAt(file: Deno.FsFile, offset: number, length: number, sync: boolean): Promise<Uint8Array> {
  if (sync) file.seekSync(offset, Deno.SeekMode.Start);
  else await file.seek(offset, Deno.SeekMode.Start);
  const buf = new Uint8Array(length);
  let got = 0;
  while (got < length) {
    const n = sync ? file.readSync(buf.subarray(got)) : await file.read(buf.subarray(got));
    if (n === null) break;
    got += n;
  }
  return buf.subarray(0, got);
}

/** The lowest sample rate a WAV file may declare to be read (Hz). */
export const MIN_WAV_RATE = 1000;
/** The highest sample rate a WAV file may declare to be read (Hz). */
export const MAX_WAV_RATE = 768000;
/** The most channels a WAV file may declare to be read. */
export const MAX_WAV_CHANNELS = 256;

/** What a file that is not a regular one is, for messages. */
function fileKind(info: Deno.FileInfo): string {
  if (info.isDirectory) return "a directory";
  if (info.isFifo) return "a FIFO (named pipe)";
  if (info.isCharDevice) return "a character device";
  if (info.isBlockDevice) return "a block device";
  if (info.isSocket) return "a socket";
  return "not a regular file";
}

/**
 * Stats `path` (following symbolic links) and refuses anything but a regular file with a {@linkcode WavFormatError}
 * `<who>: <path>: <reason>`: a directory, a FIFO (opening one for reading would wait for a writer, and a synchronous
 * open blocks the whole process, signals included), a device (`/dev/zero` never ends), a socket. Sources that read a
 * file (`wav-source`, `file-source`) call it before they open it.
 *
 * @param path the file
 * @param who stage name used in error messages
 * @param sync with the synchronous call (see {@linkcode readWavInfo})
 * @returns the file's information (its size, for a caller that reads it whole)
 * @example
 * ```ts
 * await statRegularFile("/dev/zero", "file-source"); // throws: file-source: /dev/zero: a character device, not a regular file ...
 * ```
 */
export async function statRegularFile(path: string, who: string, sync = false): Promise<Deno.FileInfo> {
  let info: Deno.FileInfo;
  try {
    info = sync ? Deno.statSync(path) : await Deno.stat(path);
  } catch (e) {
    throw new WavFormatError(who, path, `cannot open: ${e instanceof Error ? e.message : e}${outOfFilesHint(e)}`);
  }
  if (!info.isFile) {
    throw new WavFormatError(
      who,
      path,
      `${fileKind(info)}, not a regular file: ${who} reads only regular files (a device, FIFO or socket could ` +
        "block or never end)",
    );
  }
  return info;
}

/**
 * Reads and validates the header of a WAV file without reading its audio: scans
 * the RIFF chunks, decodes the fmt chunk (including WAVE_FORMAT_EXTENSIBLE and
 * RF64's ds64), and locates the data chunk.
 *
 * A file whose data chunk is shorter than declared is accepted with
 * `truncated: true` (the caller plays what exists and warns); a file that is not
 * RIFF/WAVE, has no or a cut fmt chunk, no data chunk, or an unsupported encoding
 * is refused with a {@linkcode WavFormatError}.
 *
 * @param path file to read
 * @param who stage name used in error messages
 * @param sync open and read with Deno's synchronous calls, on this thread: for a chain that runs as fast as it can
 *   (not `StageContext.realtime`), where each asynchronous call's hop to Deno's I/O threads and back (0.1-1 ms here,
 *   the first ~1.5 ms) would add to the chain's time; the default, asynchronous, leaves the event loop free meanwhile
 * @example
 * ```ts
 * const info = await readWavInfo("examples/audio/hello.wav");
 * console.log(info.sampleRate, info.channels, info.frames);
 * ```
 */
export async function readWavInfo(path: string, who = "wav", sync = false): Promise<WavInfo> {
  await statRegularFile(path, who, sync);
  let file: Deno.FsFile;
  try {
    file = sync ? Deno.openSync(path, { read: true }) : await Deno.open(path, { read: true });
  } catch (e) {
    throw new WavFormatError(who, path, `cannot open: ${e instanceof Error ? e.message : e}${outOfFilesHint(e)}`);
  }
  try {
    return await scan(file, path, who, sync);
  } catch (e) {
    // Every error names the file: one from reading it (an I/O error) too.
    if (e instanceof WavFormatError) throw e;
    throw new WavFormatError(who, path, `cannot read: ${e instanceof Error ? e.message : e}${outOfFilesHint(e)}`);
  } finally {
    file.close();
  }
}

async function scan(file: Deno.FsFile, path: string, who: string, sync: boolean): Promise<WavInfo> {
  const fail = (reason: string) => new WavFormatError(who, path, reason);
  const size = (sync ? file.statSync() : await file.stat()).size;
  const head = await readAt(file, 0, 12, sync);
  if (head.length < 12) {
    throw fail(`not a WAV file (${head.length === 0 ? "empty file" : `only ${head.length} bytes`})`);
  }
  const container = fourcc(head, 0);
  if (container === "RIFX") throw fail("unsupported big-endian WAV (RIFX)");
  if ((container !== "RIFF" && container !== "RF64") || fourcc(head, 8) !== "WAVE") {
    throw fail("not a WAV file (no RIFF/WAVE header)");
  }
  let fmt: Uint8Array | undefined;
  let ds64DataSize: number | undefined;
  let data: { offset: number; size: number } | undefined;
  let pos = 12;
  // Chunks are scanned with positioned reads, so a data chunk before the fmt
  // chunk (legal, rare) is skipped over without reading it.
  while (pos + 8 <= size && (!fmt || !data)) {
    const h = await readAt(file, pos, 8, sync);
    if (h.length < 8) break;
    const id = fourcc(h, 0);
    const chunkSize = new DataView(h.buffer, h.byteOffset, 8).getUint32(4, true);
    const body = pos + 8;
    if (id === "fmt ") {
      if (chunkSize < 16) throw fail(`fmt chunk too small (${chunkSize} bytes, need at least 16)`);
      const want = Math.min(chunkSize, 64);
      fmt = await readAt(file, body, want, sync);
      if (fmt.length < Math.min(want, 16) || (chunkSize <= 64 && fmt.length < chunkSize)) {
        throw fail(`fmt chunk is truncated (${fmt.length} of ${chunkSize} bytes present)`);
      }
    } else if (id === "ds64") {
      const b = await readAt(file, body, 16, sync);
      if (b.length === 16) {
        const v = new DataView(b.buffer, b.byteOffset, 16);
        ds64DataSize = v.getUint32(8, true) + v.getUint32(12, true) * 2 ** 32;
      }
    } else if (id === "data") {
      let declared = chunkSize;
      if (container === "RF64" && chunkSize === 0xffffffff && ds64DataSize !== undefined) declared = ds64DataSize;
      data = { offset: body, size: declared };
      // A data chunk of unknown size (streamed writers put 0xFFFFFFFF) runs to the end of the file.
      if (chunkSize === 0xffffffff) break;
    }
    pos = body + chunkSize + (chunkSize & 1);
  }
  if (!fmt) {
    throw fail("no fmt chunk (missing, or the file is cut inside its header)");
  }
  const info = decodeFmt(fmt, fail);
  if (!data) throw fail("no data chunk (no audio in file, or file cut inside the header)");
  const present = Math.max(0, Math.min(data.size, size - data.offset));
  const usable = present - (present % info.blockAlign);
  return {
    path,
    container: container as "RIFF" | "RF64",
    ...info,
    dataOffset: data.offset,
    dataBytes: usable,
    declaredDataBytes: data.size,
    truncated: data.size !== 0xffffffff && present < data.size,
    frames: usable / info.blockAlign,
  };
}

type FmtInfo = Pick<
  WavInfo,
  | "encoding"
  | "formatTag"
  | "formatCode"
  | "bitsPerSample"
  | "bytesPerSample"
  | "channels"
  | "sampleRate"
  | "blockAlign"
>;

function decodeFmt(fmt: Uint8Array, fail: (reason: string) => Error): FmtInfo {
  const v = new DataView(fmt.buffer, fmt.byteOffset, fmt.length);
  const formatTag = v.getUint16(0, true);
  const channels = v.getUint16(2, true);
  const sampleRate = v.getUint32(4, true);
  const blockAlign = v.getUint16(12, true);
  const bitsPerSample = v.getUint16(14, true);
  let formatCode = formatTag;
  if (formatTag === WAVE_FORMAT.EXTENSIBLE) {
    if (fmt.length < 40) throw fail(`WAVE_FORMAT_EXTENSIBLE fmt chunk is truncated (${fmt.length} of 40 bytes)`);
    const guid = fmt.subarray(24, 40);
    if (GUID_TAIL.some((b, i) => guid[4 + i] !== b)) {
      throw fail(`unsupported WAVE_FORMAT_EXTENSIBLE subformat (unknown GUID); ${SUPPORTED}`);
    }
    formatCode = v.getUint32(24, true);
  }
  if (channels === 0) throw fail("invalid channel count 0");
  if (sampleRate === 0) throw fail("invalid sample rate 0");
  // Absurd values (a damaged or hostile header) are refused here, naming the field, rather than failing later with
  // an allocation error or producing a file whose own header no longer fits its 32-bit fields.
  if (sampleRate < MIN_WAV_RATE || sampleRate > MAX_WAV_RATE) {
    throw fail(`fmt chunk: sample rate ${sampleRate} Hz is out of range (${MIN_WAV_RATE}..${MAX_WAV_RATE})`);
  }
  if (channels > MAX_WAV_CHANNELS) {
    throw fail(`fmt chunk: ${channels} channels is out of range (1..${MAX_WAV_CHANNELS})`);
  }
  let encoding: WavEncoding;
  switch (formatCode) {
    case WAVE_FORMAT.PCM:
      if (![8, 16, 24, 32].includes(bitsPerSample)) {
        throw fail(`unsupported bit depth ${bitsPerSample} for integer PCM (supported: 8, 16, 24, 32)`);
      }
      encoding = "pcm";
      break;
    case WAVE_FORMAT.IEEE_FLOAT:
      if (bitsPerSample !== 32 && bitsPerSample !== 64) {
        throw fail(`unsupported bit depth ${bitsPerSample} for IEEE float (supported: 32, 64)`);
      }
      encoding = "float";
      break;
    case WAVE_FORMAT.ALAW:
    case WAVE_FORMAT.MULAW:
      if (bitsPerSample !== 8) throw fail(`unsupported bit depth ${bitsPerSample} for G.711 (must be 8)`);
      encoding = formatCode === WAVE_FORMAT.ALAW ? "alaw" : "mulaw";
      break;
    default: {
      const name = FORMAT_NAMES[formatCode];
      throw fail(
        `unsupported encoding: format tag ${formatCode}${name ? ` (${name})` : ""}; ${SUPPORTED}`,
      );
    }
  }
  const bytesPerSample = bitsPerSample / 8;
  if (blockAlign !== bytesPerSample * channels) {
    throw fail(
      `inconsistent fmt chunk: block align ${blockAlign} but ${channels} channel(s) of ${bitsPerSample} bits`,
    );
  }
  // The byte rate field is not read: it only repeats rate × block align, and files whose writer got it wrong play.
  return { encoding, formatTag, formatCode, bitsPerSample, bytesPerSample, channels, sampleRate, blockAlign };
}

/**
 * Describes a WAV file's format for people, e.g. `24-bit PCM 48000 Hz stereo`.
 *
 * @example
 * ```ts
 * describeWav(await readWavInfo("a.wav")); // "16-bit PCM 16000 Hz mono"
 * ```
 */
export function describeWav(info: WavInfo): string {
  const enc = info.encoding === "pcm"
    ? `${info.bitsPerSample}-bit PCM`
    : info.encoding === "float"
    ? `${info.bitsPerSample}-bit float`
    : info.encoding === "alaw"
    ? "G.711 A-law"
    : "G.711 µ-law";
  const ch = info.channels === 1 ? "mono" : info.channels === 2 ? "stereo" : `${info.channels} ch`;
  return `${enc} ${info.sampleRate} Hz ${ch}${info.formatTag === WAVE_FORMAT.EXTENSIBLE ? " (extensible)" : ""}`;
}

/** µ-law byte → 16-bit linear (ITU-T G.711), for all 256 codes. */
export const MULAW_TO_PCM16: Int16Array = (() => {
  const t = new Int16Array(256);
  for (let i = 0; i < 256; i++) {
    const u = ~i & 0xff;
    let m = ((u & 0x0f) << 3) + 0x84;
    m <<= (u & 0x70) >> 4;
    t[i] = u & 0x80 ? 0x84 - m : m - 0x84;
  }
  return t;
})();

/** A-law byte → 16-bit linear (ITU-T G.711), for all 256 codes. */
export const ALAW_TO_PCM16: Int16Array = (() => {
  const t = new Int16Array(256);
  for (let i = 0; i < 256; i++) {
    const a = i ^ 0x55;
    let m = (a & 0x0f) << 4;
    const seg = (a & 0x70) >> 4;
    if (seg === 0) m += 8;
    else {
      m += 0x108;
      if (seg > 1) m <<= seg - 1;
    }
    t[i] = a & 0x80 ? m : -m;
  }
  return t;
})();

function clamp16(v: number): number {
  return v > 32767 ? 32767 : v < -32768 ? -32768 : v;
}

/**
 * Converts `count` interleaved samples encoded as in `info` to 16-bit PCM.
 *
 * - 16-bit: copied as is.
 * - 8-bit (unsigned): `(v - 128) << 8`.
 * - 24/32-bit integer: the high 16 bits, rounded to nearest, clamped.
 * - float: `x × 32768`, rounded to nearest, clamped to −32768..32767 (NaN → 0),
 *   so `s / 32768` floats come back exactly.
 * - G.711: expanded with the ITU-T G.711 tables.
 *
 * `bytes.byteOffset` must be a multiple of the sample size (true for any
 * buffer allocated by the caller and sliced at sample boundaries). `out`
 * (default: a new array of `count`) receives the samples and is returned.
 *
 * @example
 * ```ts
 * const info = await readWavInfo("a.wav");
 * const pcm = toInt16(info, bytesOfTheDataChunk, 160);
 * ```
 */
export function toInt16(
  info: Pick<WavInfo, "encoding" | "bitsPerSample">,
  bytes: Uint8Array,
  count: number,
  out: Int16Array = new Int16Array(count),
): Int16Array {
  const off = bytes.byteOffset;
  const buf = bytes.buffer;
  switch (info.encoding) {
    case "pcm":
      switch (info.bitsPerSample) {
        case 16:
          out.set(new Int16Array(buf, off, count));
          break;
        case 8:
          for (let i = 0; i < count; i++) out[i] = (bytes[i] - 128) << 8;
          break;
        case 24:
          for (let i = 0, j = 0; i < count; i++, j += 3) {
            const v = ((bytes[j + 2] << 24) | (bytes[j + 1] << 16) | (bytes[j] << 8)) >> 8;
            out[i] = clamp16((v + 128) >> 8);
          }
          break;
        case 32: {
          const src = new Int32Array(buf, off, count);
          for (let i = 0; i < count; i++) out[i] = clamp16(Math.floor((src[i] + 32768) / 65536));
          break;
        }
      }
      break;
    case "float": {
      const src = info.bitsPerSample === 64 ? new Float64Array(buf, off, count) : new Float32Array(buf, off, count);
      for (let i = 0; i < count; i++) {
        const x = src[i] * 32768;
        out[i] = x >= 32767 ? 32767 : x <= -32768 ? -32768 : x === x ? Math.round(x) : 0;
      }
      break;
    }
    case "alaw":
      for (let i = 0; i < count; i++) out[i] = ALAW_TO_PCM16[bytes[i]];
      break;
    case "mulaw":
      for (let i = 0; i < count; i++) out[i] = MULAW_TO_PCM16[bytes[i]];
      break;
  }
  return out;
}

/** Largest value of a 32-bit RIFF size field. */
export const MAX_RIFF_SIZE = 0xffffffff;

/** Parameters of a header written by {@linkcode wavHeader}. */
export interface WavHeaderSpec {
  /** `pcm16` for 16-bit integer PCM, `alaw`/`mulaw` for 8-bit G.711. */
  encoding: "pcm16" | "alaw" | "mulaw";
  /** Samples per second per channel. */
  sampleRate: number;
  /** Interleaved channels. */
  channels: number;
  /** Data bytes that follow the header. */
  dataBytes: number;
  /**
   * True when the file is final and an odd-sized data chunk is followed by its
   * pad byte, which the RIFF size then counts (default false).
   */
  padded?: boolean;
}

/**
 * Why a WAV header cannot hold this format, or undefined when it can: the fmt chunk stores the channel count in 16
 * bits and the sample rate and the byte rate (rate × bytes per sample × channels) in 32, and a value past them would
 * wrap (a file other programs refuse).
 *
 * @example
 * ```ts
 * wavHeaderProblem({ encoding: "pcm16", sampleRate: 384000, channels: 6000 }); // "byte rate 4608000000 ... does not fit"
 * ```
 */
export function wavHeaderProblem(spec: Omit<WavHeaderSpec, "dataBytes">): string | undefined {
  const bytesPerSample = spec.encoding === "pcm16" ? 2 : 1;
  if (!Number.isInteger(spec.channels) || spec.channels < 1 || spec.channels > 0xffff) {
    return `${spec.channels} channels cannot be written in a WAV header (1..65535)`;
  }
  if (!Number.isInteger(spec.sampleRate) || spec.sampleRate < 1 || spec.sampleRate > 0xffffffff) {
    return `sample rate ${spec.sampleRate} Hz cannot be written in a WAV header (1..4294967295)`;
  }
  const byteRate = spec.sampleRate * bytesPerSample * spec.channels;
  if (byteRate > 0xffffffff) {
    return `byte rate ${byteRate} (${spec.sampleRate} Hz × ${spec.channels} channels × ${bytesPerSample} bytes) does ` +
      "not fit the WAV header's 32-bit field: lower the rate or the channel count";
  }
  return undefined;
}

/**
 * Builds a canonical WAV header for `dataBytes` of data: 44 bytes for PCM,
 * 58 bytes for G.711 (with a `fact` chunk). With `padded`, the RIFF
 * size includes the pad byte an odd-sized data chunk needs at the end of a file.
 *
 * @example
 * ```ts
 * const h = wavHeader({ encoding: "pcm16", sampleRate: 8000, channels: 1, dataBytes: 320 });
 * // h.length === 44
 * ```
 * @throws RangeError when the format does not fit a WAV header (see {@linkcode wavHeaderProblem})
 */
export function wavHeader(spec: WavHeaderSpec): Uint8Array {
  const problem = wavHeaderProblem(spec);
  if (problem) throw new RangeError(problem);
  // PCM: 44 bytes (16-byte fmt chunk). G.711: 58 bytes (18-byte fmt chunk plus
  // the `fact` chunk non-PCM formats require).
  const headerBytes = spec.encoding === "pcm16" ? 44 : 58;
  const factOffset = 46;
  const h = new Uint8Array(headerBytes);
  const v = new DataView(h.buffer);
  const ascii = (off: number, s: string) => {
    for (let i = 0; i < 4; i++) h[off + i] = s.charCodeAt(i);
  };
  const bytesPerSample = spec.encoding === "pcm16" ? 2 : 1;
  const blockAlign = bytesPerSample * spec.channels;
  const pad = spec.padded ? spec.dataBytes & 1 : 0;
  // RIFF sizes are 32-bit: past 4 GiB the sizes are capped at the maximum (readers
  // then stop there) rather than wrapping around to a small, wrong value.
  const dataSize = Math.min(spec.dataBytes, MAX_RIFF_SIZE - (headerBytes - 8) - pad);
  ascii(0, "RIFF");
  v.setUint32(4, headerBytes - 8 + dataSize + pad, true);
  ascii(8, "WAVE");
  ascii(12, "fmt ");
  const fmtSize = spec.encoding === "pcm16" ? 16 : 18;
  v.setUint32(16, fmtSize, true);
  const tag = spec.encoding === "pcm16"
    ? WAVE_FORMAT.PCM
    : spec.encoding === "alaw"
    ? WAVE_FORMAT.ALAW
    : WAVE_FORMAT.MULAW;
  v.setUint16(20, tag, true);
  v.setUint16(22, spec.channels, true);
  v.setUint32(24, spec.sampleRate, true);
  v.setUint32(28, spec.sampleRate * blockAlign, true);
  v.setUint16(32, blockAlign, true);
  v.setUint16(34, bytesPerSample * 8, true);
  let p = 36;
  if (fmtSize === 18) {
    v.setUint16(36, 0, true); // cbSize
    p = 38;
    ascii(p, "fact");
    v.setUint32(p + 4, 4, true);
    v.setUint32(factOffset, Math.floor(dataSize / blockAlign), true);
    p += 12;
  }
  ascii(p, "data");
  v.setUint32(p + 4, dataSize, true);
  return h;
}
