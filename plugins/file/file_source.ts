/**
 * `file-source`: reads compressed and other audio files (AIFF, FLAC, MP3, Ogg
 * Vorbis, Opus, ...) through `audio-decode`, and WAV by streaming, as 16-bit PCM
 * frames.
 *
 * @module
 */
import { resolve } from "../../core/path.ts";
import { z } from "zod";
import { pathOption } from "../../core/options.ts";
import { definePlugin, type SourceStage } from "../../core/stage.ts";
import { emitPcmFrames, frameSamples, MemoryPcmReader, type PcmChunkReader } from "../wav/pcm_stream.ts";
import { describeWav, readWavInfo, statRegularFile, type WavInfo } from "../wav/wav_format.ts";
import { WavStreamReader } from "../wav/wav_reader.ts";
import { lazyModule } from "../../core/lazy.ts";
import { outOfFilesHint } from "../../core/open_files.ts";

/** Modules loaded when first used (see `lazyModule`). */
const audioDecodeModule = lazyModule<typeof import("audio-decode")>("audio-decode");

/** Options of `file-source`. */
export const fileSourceOptions = z.object({
  path: pathOption().describe(
    "Audio file to read (WAV, AIFF, FLAC, MP3, Ogg Vorbis, Opus, ...); relative to the pipeline file's directory " +
      "(a --set value: to the working directory)",
  ),
  frame_ms: z.number().int().min(1).max(1000).default(20).describe(
    "Frame duration in milliseconds (the last frame of the file may be shorter)",
  ),
  loop: z.boolean().default(false).describe(
    "Start again at the beginning when the file ends, until the pipeline is stopped",
  ),
});

/** A file decoded to memory. */
export interface DecodedAudio {
  /** Interleaved 16-bit samples. */
  samples: Int16Array;
  /** Samples per second per channel. */
  sampleRate: number;
  /** Channels (as decoded: may differ from what the file declares, e.g. a dual-mono MP3 decodes to mono). */
  channels: number;
  /** Container or codec, as sniffed from the first bytes, e.g. `FLAC`. */
  type: string;
}

/** Names the format of a file from its first bytes, for messages. */
function sniff(b: Uint8Array): string | undefined {
  const s = String.fromCharCode(...b.subarray(0, 12));
  if (s.startsWith("fLaC")) return "FLAC";
  if (s.startsWith("OggS")) return "Ogg";
  if (s.startsWith("FORM") && (s.slice(8, 12) === "AIFF" || s.slice(8, 12) === "AIFC")) return "AIFF";
  if (s.startsWith("ID3") || (b[0] === 0xff && (b[1] & 0xe0) === 0xe0)) return "MP3";
  if (s.startsWith("RIFF") || s.startsWith("RF64") || s.startsWith("RIFX")) return "WAV";
  if (s.slice(4, 8) === "ftyp") return "MP4/M4A";
  return undefined;
}

/**
 * Bits per sample of a native FLAC stream, from its STREAMINFO block (the
 * mandatory first metadata block), or undefined.
 */
function flacBitsPerSample(b: Uint8Array): number | undefined {
  if (b.length < 8 + 14 || (b[4] & 0x7f) !== 0) return undefined;
  return (((b[8 + 12] & 0x01) << 4) | (b[8 + 13] >> 4)) + 1;
}

/**
 * Converts decoded float channels to interleaved 16-bit.
 *
 * Scaling follows what each decoder does, as measured: most return
 * `v / 2^(bits−1)`, so `x × 32768` (rounded, clamped) restores 16-bit sources
 * exactly; the FLAC decoder returns `v / (2^(bits−1) − 1)`, so for FLAC the
 * integer is restored with the stream's own bit depth first, then reduced to
 * 16 bits like `wav-source` does (high 16 bits, rounded).
 */
function interleave(channels: Float32Array[], flacBits: number | undefined): Int16Array {
  const nch = channels.length;
  const len = channels[0].length;
  const out = new Int16Array(len * nch);
  const full = flacBits ? 2 ** (flacBits - 1) - 1 : 32768;
  const shift = flacBits ? 2 ** (flacBits - 16) : 1; // < 1 for sources below 16 bits
  for (let c = 0; c < nch; c++) {
    const src = channels[c];
    for (let i = 0, j = c; i < len; i++, j += nch) {
      let x = src[i] * full;
      if (x !== x) x = 0;
      if (flacBits) x = Math.floor(Math.round(x) / shift + 0.5);
      out[j] = x >= 32767 ? 32767 : x <= -32768 ? -32768 : Math.round(x);
    }
  }
  return out;
}

/**
 * The largest file `file-source` decodes whole in memory (256 MiB): a compressed file decodes to many times its size
 * (an MP3 at 128 kb/s to 44 times as many bytes of float samples), so a larger one is refused with its path and size
 * instead of filling the memory. WAV files are streamed and have no such limit.
 */
export const MAX_DECODED_FILE_BYTES = 256 * 1024 * 1024;

/**
 * Decodes a whole audio file to interleaved 16-bit PCM in memory with
 * `audio-decode`. The first call takes 50–100 ms (WebAssembly set-up).
 *
 * A file decoded before and unchanged since (same device, inode, size and modification time) gives the same samples
 * again without decoding (up to 64 MiB of samples are kept, the least recently used dropped first): the samples are
 * shared, so they must not be written to.
 *
 * @param path file to decode
 * @param who stage name for error messages
 * @throws Error `<who>: <path>: <reason>` for unreadable, unknown, corrupt or empty files, what is not a regular
 *   file (a directory, FIFO, device, socket) and files larger than {@linkcode MAX_DECODED_FILE_BYTES}
 * @example
 * ```ts
 * const { samples, sampleRate, channels } = await decodeAudioFile("examples/audio/hello.mp3");
 * ```
 */
export async function decodeAudioFile(path: string, who = "file-source"): Promise<DecodedAudio> {
  const info = await statRegularFile(path, who);
  // The same file, unchanged since it was decoded (a call server's greeting, decoded for every call before: a 20 s
  // MP3 held the event loop, and so every call's audio, 35 ms per new call here; a 10-minute one 1.5 s): its samples
  // again, shared (frames are read-only downstream). Changed, replaced or removed, it is read afresh.
  const stamp = info.mtime ? `${info.dev}:${info.ino}:${info.size}:${info.mtime.getTime()}` : undefined;
  const hit = stamp ? decoded.get(path) : undefined;
  if (hit && hit.stamp === stamp) {
    decoded.delete(path); // most recently used last
    decoded.set(path, hit);
    return hit.audio;
  }
  if (hit) forget(path);
  const audio = decodeFile(path, who, info);
  if (!stamp || info.size > DECODED_CACHE_BYTES) return audio;
  // Kept while it decodes, so that calls arriving together decode it once; a failure is not kept.
  const entry: CachedDecode = { stamp, audio, bytes: 0 };
  decoded.set(path, entry);
  try {
    const a = await audio;
    if (decoded.get(path) !== entry) return a; // dropped (or replaced by a newer file) meanwhile
    entry.bytes = a.samples.byteLength;
    decodedBytes += entry.bytes;
    if (entry.bytes > DECODED_CACHE_BYTES) forget(path);
    for (const [p] of decoded) {
      if (decodedBytes <= DECODED_CACHE_BYTES) break;
      forget(p);
    }
    return a;
  } catch (e) {
    if (decoded.get(path) === entry) forget(path);
    throw e;
  }
}

/** A decoded file kept by {@linkcode decodeAudioFile}: its stat stamp, its samples (or their decode), their size. */
interface CachedDecode {
  stamp: string;
  audio: Promise<DecodedAudio>;
  bytes: number;
}

/** Decoded files by path, least recently used first, at most {@linkcode DECODED_CACHE_BYTES} of samples in all. */
const decoded = new Map<string, CachedDecode>();
let decodedBytes = 0;
/** Bytes of decoded samples kept for the next chains that play the same files (a minute of 44.1 kHz stereo: 10 MB). */
const DECODED_CACHE_BYTES = 64 * 1024 * 1024;

function forget(path: string): void {
  const e = decoded.get(path);
  if (!e) return;
  decoded.delete(path);
  decodedBytes -= e.bytes;
}

async function decodeFile(path: string, who: string, info: Deno.FileInfo): Promise<DecodedAudio> {
  const fail = (reason: string) => new Error(`${who}: ${path}: ${reason}`);
  if (info.size > MAX_DECODED_FILE_BYTES) {
    throw fail(
      `${info.size} bytes, more than the ${MAX_DECODED_FILE_BYTES} bytes (256 MiB) ${who} decodes in memory: ` +
        "convert it to WAV, which is streamed",
    );
  }
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (e) {
    throw fail(`cannot open: ${e instanceof Error ? e.message : e}${outOfFilesHint(e)}`);
  }
  if (bytes.length === 0) throw fail("empty file");
  const type = sniff(bytes);
  let data: { channelData: Float32Array[]; sampleRate: number };
  try {
    // Loaded on first use: a pipeline that reads WAV files never loads the decoders.
    const { default: decode } = await audioDecodeModule();
    data = await decode(bytes);
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    if (/unknown audio format/i.test(msg)) {
      throw fail("unrecognized audio format (supported: WAV, AIFF, FLAC, MP3, Ogg Vorbis, Opus, and more)");
    }
    throw fail(`cannot decode${type ? ` ${type}` : ""}: ${msg}`);
  }
  const len = data.channelData[0]?.length ?? 0;
  if (data.channelData.length === 0 || len === 0 || !(data.sampleRate > 0)) {
    throw fail(`no audio decoded (corrupt, truncated or empty${type ? ` ${type}` : ""} file)`);
  }
  const flacBits = type === "FLAC" ? flacBitsPerSample(bytes) : undefined;
  return {
    samples: interleave(data.channelData, flacBits),
    sampleRate: data.sampleRate,
    channels: data.channelData.length,
    type: type ?? "audio",
  };
}

/** What {@linkcode probeAudioFile} found in a file that `file-source` can play. */
export interface AudioFileInfo {
  /** Container or codec, e.g. `WAV`, `FLAC`, `MP3`. */
  type: string;
  /** The format for people, e.g. `16-bit PCM 8000 Hz mono` or `MP3 44100 Hz 2 ch`. */
  format: string;
  /** Samples per second per channel. */
  sampleRate: number;
  /** Channels (as `file-source` will produce them). */
  channels: number;
  /** Duration in seconds. */
  seconds: number;
}

/**
 * Checks that `file-source` can play a file, the way it does when its chain is
 * built: a WAV file by its header (streamed later), any other format by
 * decoding it whole. For applications that take a file from a user (the
 * browser console) and want to refuse it with a clear message before a call.
 *
 * @param path file to check
 * @throws Error `file-source: <path>: <reason>` for a missing, empty, unknown, corrupt or silent-by-construction (no samples) file
 * @example
 * ```ts
 * const info = await probeAudioFile("examples/audio/hello.wav"); // { type: "WAV", format: "16-bit PCM 8000 Hz mono", ... }
 * ```
 */
export async function probeAudioFile(path: string): Promise<AudioFileInfo> {
  await statRegularFile(path, "file-source");
  let head: Uint8Array;
  try {
    using f = await Deno.open(path, { read: true });
    head = new Uint8Array(12);
    head = head.subarray(0, (await f.read(head)) ?? 0);
  } catch (e) {
    throw new Error(`file-source: ${path}: cannot open: ${e instanceof Error ? e.message : e}${outOfFilesHint(e)}`);
  }
  if (head.length === 0) throw new Error(`file-source: ${path}: empty file`);
  if (sniff(head) === "WAV") {
    const wav = await readWavInfo(path, "file-source");
    if (wav.frames === 0) throw new Error(`file-source: ${path}: the WAV file holds no samples`);
    return {
      type: "WAV",
      format: describeWav(wav),
      sampleRate: wav.sampleRate,
      channels: wav.channels,
      seconds: wav.frames / wav.sampleRate,
    };
  }
  const mem = await decodeAudioFile(path, "file-source");
  return {
    type: mem.type,
    format: `${mem.type} ${mem.sampleRate} Hz ${mem.channels} ch`,
    sampleRate: mem.sampleRate,
    channels: mem.channels,
    seconds: mem.samples.length / mem.channels / mem.sampleRate,
  };
}

/**
 * Reads an audio file and emits 16-bit PCM frames of `frame_ms`, pts in samples,
 * as fast as downstream accepts them; `loop` repeats the file until stopped.
 *
 * WAV files (recognised by their RIFF/RF64 header) are streamed from disk exactly
 * as `wav-source` does. Every other format (AIFF, FLAC, MP3, Ogg Vorbis, Opus,
 * and whatever else `audio-decode` knows) is **decoded whole into memory when the
 * pipeline is built** (2 bytes per sample per channel are kept: ~5 MB per minute
 * of 44.1 kHz stereo), so the produced format is known before audio flows and a
 * bad file fails the build with `file-source: <path>: <reason>`. The channel
 * count is what the decoder returns, which can differ from the file's (a
 * dual-mono MP3 decodes to mono). Such a file larger than {@linkcode MAX_DECODED_FILE_BYTES} (256 MiB) is refused
 * (convert it to WAV). Only regular files are read: a directory, a FIFO, a device (`/dev/zero`) or a socket is
 * refused when the pipeline is built, before it is opened.
 *
 * @example Pipeline config
 * ```json
 * { "use": "file-source", "path": "../examples/audio/hello.mp3", "loop": true }
 * ```
 */
export default definePlugin({
  name: "file-source",
  kind: "source",
  description: "Reads an audio file (WAV streamed; AIFF, FLAC, MP3, Ogg Vorbis, Opus decoded in memory) as PCM frames",
  produces: { kind: "pcm" },
  options: fileSourceOptions,
  async create(options, ctx): Promise<SourceStage> {
    const path = resolve(ctx.baseDir, options.path);
    // A chain that runs as fast as it can opens and reads with the synchronous calls (see readWavInfo).
    const sync = ctx.realtime !== true;
    // A directory, a FIFO or a device is refused before it is opened (a FIFO's open would block).
    await statRegularFile(path, "file-source", sync);
    let head: Uint8Array;
    try {
      using f = sync ? Deno.openSync(path, { read: true }) : await Deno.open(path, { read: true });
      head = new Uint8Array(12);
      const n = (sync ? f.readSync(head) : await f.read(head)) ?? 0;
      head = head.subarray(0, n);
    } catch (e) {
      throw new Error(`file-source: ${path}: cannot open: ${e instanceof Error ? e.message : e}${outOfFilesHint(e)}`);
    }
    let wav: WavInfo | undefined;
    let mem: DecodedAudio | undefined;
    const type = sniff(head);
    if (ctx.checking && type !== "WAV") {
      // Checking: a WAV header says the format; any other file would have to be decoded whole to know it, so its
      // format stays open (downstream stages take any rate) and is known when the chain runs.
      if (head.length === 0) throw new Error(`file-source: ${path}: empty file`);
      return {
        negotiate: () => ({ kind: "pcm" }),
        run: () => Promise.reject(new Error("file-source: built for checking only")),
        plan: () => `${path}: ${type ?? "audio"} file, decoded when the chain runs`,
      };
    }
    if (type === "WAV") {
      wav = await readWavInfo(path, "file-source", sync);
      if (wav.truncated) {
        ctx.log.warn(
          `file-source: ${path}: data chunk declares ${wav.declaredDataBytes} bytes but the file holds ${wav.dataBytes}; playing what exists`,
        );
      }
    } else {
      mem = await decodeAudioFile(path, "file-source");
    }
    const sampleRate = wav ? wav.sampleRate : mem!.sampleRate;
    const channels = wav ? wav.channels : mem!.channels;
    const perFrame = frameSamples(sampleRate, options.frame_ms);
    const fileFormat = wav ? describeWav(wav) : `${mem!.type} ${sampleRate} Hz ${channels} ch`;
    const counters = { frames: 0, samples: 0 };
    // The whole file's length (per channel), for whoever wants to know how much was left unsent.
    const fileFrames = wav ? wav.frames : mem!.samples.length / channels;
    let reader: (PcmChunkReader & { loops: number; close?(): void }) | undefined;
    return {
      // A file read once says its length (a looped one has none): e.g. the resampler's automatic threads use it.
      negotiate: () =>
        options.loop
          ? { kind: "pcm", sampleRate, channels }
          : { kind: "pcm", sampleRate, channels, frames: fileFrames },
      plan: () =>
        `${path}: ${wav ? `WAV ${fileFormat}, streamed` : `${fileFormat}, decoded in memory`}${
          options.loop ? ", looped" : ""
        }`,
      async run(rc) {
        reader = wav
          ? await WavStreamReader.open(
            wav,
            perFrame,
            options.loop,
            "file-source",
            rc.reuseOutput === true,
            rc.realtimeSink,
            sync,
          )
          : new MemoryPcmReader(mem!.samples, channels, perFrame, options.loop, true);
        try {
          await emitPcmFrames(rc, { sampleRate, channels }, reader, counters);
        } finally {
          reader.close?.();
        }
      },
      close() {
        reader?.close?.();
        mem = undefined;
      },
      stats: () => ({
        file_format: fileFormat,
        frames: counters.frames,
        samples: counters.samples,
        duration_s: counters.samples / sampleRate,
        ...(options.loop ? {} : { file_duration_s: fileFrames / sampleRate }),
        loops: reader?.loops ?? 0,
      }),
    };
  },
});
