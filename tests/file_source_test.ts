/**
 * Tests of `file-source`: FLAC/AIFF exact, MP3/Vorbis/Opus by level, length and
 * frequency (files made by ffmpeg from known audio), WAV streamed, loop, stop,
 * and errors.
 */
import { deepEqual, equal, ok, rejects } from "node:assert/strict";
import { join } from "node:path";
import wf from "wavefile";
import { z } from "zod";
import type { PcmFrame } from "../core/frame.ts";
import type { RunContext, SourceStage } from "../core/stage.ts";
import { createStage, testContext } from "../core/testing.ts";
import { plugins } from "../plugins/file/mod.ts";
import fileSource, { decodeAudioFile, MAX_DECODED_FILE_BYTES, probeAudioFile } from "../plugins/file/file_source.ts";

const dir = await Deno.makeTempDir({ prefix: "voxpipe_file_source_" });
const HAVE_FFMPEG = await new Deno.Command("ffmpeg", { args: ["-version"], stdout: "null", stderr: "null" }).output()
  .then((r) => r.success, () => false);
if (!HAVE_FFMPEG) console.warn("file_source_test: ffmpeg not found: skipping the tests that need encoded files");

async function ffmpeg(args: string[]): Promise<void> {
  const r = await new Deno.Command("ffmpeg", { args: ["-loglevel", "error", "-y", ...args], stderr: "piped" }).output();
  if (!r.success) throw new Error(`ffmpeg failed: ${new TextDecoder().decode(r.stderr)}`);
}

let n = 0;
async function wavOf(channels: number, rate: number, samples: number[] | Int16Array): Promise<string> {
  const w = new wf.WaveFile();
  w.fromScratch(channels, rate, "16", samples);
  const path = join(dir, `src${n++}.wav`);
  await Deno.writeFile(path, w.toBuffer());
  return path;
}

/** Converts `src` with ffmpeg to `ext` (extra args before the output). */
async function encode(src: string, ext: string, extra: string[] = []): Promise<string> {
  const out = join(dir, `enc${n++}.${ext}`);
  await ffmpeg(["-i", src, ...extra, out]);
  return out;
}

function sine(count: number, freq: number, rate: number, peak: number): Int16Array {
  return Int16Array.from({ length: count }, (_, i) => Math.round(peak * Math.sin((2 * Math.PI * freq * i) / rate)));
}

function noise(count: number, seed = 1): Int16Array {
  const out = new Int16Array(count);
  let x = seed;
  for (let i = 0; i < count; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    out[i] = (x >>> 16) - 32768;
  }
  out[0] = 32767;
  out[1] = -32768;
  return out;
}

async function readAll(options: Record<string, unknown>) {
  const t = testContext();
  const stage = await createStage<SourceStage>(fileSource, options, t.ctx);
  const format = stage.negotiate!(undefined)!;
  await stage.run(t.ctx);
  await stage.close?.();
  const frames = t.out as PcmFrame[];
  const total = frames.reduce((a, f) => a + f.samples.length, 0);
  const samples = new Int16Array(total);
  let off = 0;
  for (const f of frames) {
    samples.set(f.samples, off);
    off += f.samples.length;
  }
  return { frames, samples, format, stage };
}

function checkFraming(frames: PcmFrame[], perFrame: number, channels: number): void {
  let pts = 0;
  for (const [i, f] of frames.entries()) {
    equal(f.pts, pts);
    if (i < frames.length - 1) equal(f.samples.length, perFrame * channels);
    pts += f.samples.length / channels;
  }
}

function rms(s: Int16Array): number {
  let acc = 0;
  for (const v of s) acc += v * v;
  return Math.sqrt(acc / s.length);
}

/** Frequency estimated from rising zero crossings. */
function frequency(s: Int16Array, rate: number): number {
  let first = -1, last = -1, count = 0;
  for (let i = 1; i < s.length; i++) {
    if (s[i - 1] < 0 && s[i] >= 0) {
      if (first < 0) first = i;
      else count++;
      last = i;
    }
  }
  return (count * rate) / (last - first);
}

Deno.test("file-source: is registered in plugins/file/mod.ts with a described schema", () => {
  ok(plugins.includes(fileSource));
  const schema = z.toJSONSchema(fileSource.options) as { properties: Record<string, { description?: string }> };
  for (const key of ["path", "frame_ms", "loop"]) ok(schema.properties[key].description, key);
});

Deno.test({
  name: "file-source: FLAC decodes to exactly the samples it was made from (mono and stereo)",
  ignore: !HAVE_FFMPEG,
  async fn() {
    const mono = noise(16000 / 2 + 37, 3);
    const flac = await encode(await wavOf(1, 16000, mono), "flac");
    const r = await readAll({ path: flac });
    deepEqual(r.format, { kind: "pcm", sampleRate: 16000, channels: 1, frames: mono.length }); // what it decoded
    deepEqual(Array.from(r.samples), Array.from(mono));
    checkFraming(r.frames, 320, 1);
    ok(String(r.stage.stats!().file_format).startsWith("FLAC"));

    const stereo = noise(2 * 4410, 5);
    const flac2 = await encode(await wavOf(2, 44100, stereo), "flac");
    const r2 = await readAll({ path: flac2, frame_ms: 10 });
    deepEqual(r2.format, { kind: "pcm", sampleRate: 44100, channels: 2, frames: stereo.length / 2 });
    deepEqual(Array.from(r2.samples), Array.from(stereo));
    checkFraming(r2.frames, 441, 2);

    // 24-bit FLAC (the decoder scales by 2^23 - 1): the high 16 bits come back exactly.
    const flac24 = await encode(await wavOf(1, 16000, mono), "flac", ["-c:a", "flac", "-sample_fmt", "s32"]);
    const r3 = await readAll({ path: flac24 });
    deepEqual(Array.from(r3.samples), Array.from(mono));
  },
});

Deno.test({
  name: "file-source: AIFF (big-endian PCM) decodes exactly",
  ignore: !HAVE_FFMPEG,
  async fn() {
    const s = noise(8000, 11);
    const aiff = await encode(await wavOf(1, 8000, s), "aiff");
    const r = await readAll({ path: aiff });
    deepEqual(r.format, { kind: "pcm", sampleRate: 8000, channels: 1, frames: s.length });
    deepEqual(Array.from(r.samples), Array.from(s));
  },
});

Deno.test({
  name: "file-source: MP3 of a 1 kHz tone has the right length, level and frequency",
  ignore: !HAVE_FFMPEG,
  async fn() {
    const rate = 44100;
    const peak = Math.round(32767 * 10 ** (-6 / 20));
    const src = sine(rate, 1000, rate, peak); // 1 s at -6 dBFS
    const mp3 = await encode(await wavOf(1, rate, src), "mp3", ["-b:a", "128k"]);
    const r = await readAll({ path: mp3 });
    deepEqual(r.format, { kind: "pcm", sampleRate: rate, channels: 1, frames: r.samples.length });
    ok(Math.abs(r.samples.length - rate) <= 1152, `length ${r.samples.length} ≈ ${rate}`);
    const mid = r.samples.subarray(4410, rate - 4410);
    const levelDb = 20 * Math.log10(rms(mid) / rms(src.subarray(4410, rate - 4410)));
    ok(Math.abs(levelDb) < 0.5, `level within 0.5 dB (${levelDb.toFixed(2)} dB)`);
    const f = frequency(mid, rate);
    ok(Math.abs(f - 1000) < 5, `frequency ≈ 1000 Hz (${f.toFixed(1)})`);
    checkFraming(r.frames, 882, 1);
  },
});

Deno.test({
  name: "file-source: Ogg Vorbis and Opus decode with the right rate, length and frequency",
  ignore: !HAVE_FFMPEG,
  async fn() {
    const src = await wavOf(1, 48000, sine(48000, 440, 48000, 16000));
    for (const [ext, extra] of [["ogg", ["-c:a", "libvorbis"]], ["opus", ["-c:a", "libopus"]]] as const) {
      const path = await encode(src, ext, [...extra]);
      const r = await readAll({ path });
      equal(r.format.sampleRate, 48000, ext);
      ok(Math.abs(r.samples.length / r.format.channels! - 48000) <= 960, `${ext} length ${r.samples.length}`);
      const f = frequency(r.samples.subarray(4800, 43200), 48000);
      ok(Math.abs(f - 440) < 3, `${ext} frequency ≈ 440 Hz (${f.toFixed(1)})`);
    }
  },
});

Deno.test("file-source: WAV files are streamed exactly like wav-source", async () => {
  const s = noise(1000, 13);
  const r = await readAll({ path: await wavOf(1, 8000, s) });
  deepEqual(Array.from(r.samples), Array.from(s));
  ok(String(r.stage.stats!().file_format).startsWith("16-bit PCM 8000 Hz mono"));
});

Deno.test({
  name: "file-source: loop keeps full frames across the loop point; stop from another task ends it",
  ignore: !HAVE_FFMPEG,
  async fn() {
    const s = Int16Array.from({ length: 250 }, (_, i) => i * 10);
    const flac = await encode(await wavOf(1, 8000, s), "flac");
    const t = testContext();
    const frames: PcmFrame[] = [];
    const ctx: RunContext = {
      ...t.ctx,
      emit: (f) => {
        frames.push(f as PcmFrame);
        return true; // never pushes back: the source must still yield so the timer below can stop it
      },
    };
    const stage = await createStage<SourceStage>(fileSource, { path: flac, loop: true }, ctx);
    setTimeout(() => t.abort.abort(), 20);
    await stage.run(ctx);
    ok(frames.length > 10, `${frames.length} frames before stop`);
    frames.forEach((f, i) => {
      equal(f.samples.length, 160);
      equal(f.pts, i * 160);
      for (let k = 0; k < 160; k++) equal(f.samples[k], ((i * 160 + k) % 250) * 10);
    });
    ok((stage.stats!().loops as number) > 5);
  },
});

Deno.test("file-source: unknown, corrupt, empty and missing files fail with the path and the reason", async () => {
  const random = join(dir, "random.bin");
  await Deno.writeFile(random, new Uint8Array(noise(1000, 17).buffer).map((b) => b & 0x7f));
  await rejects(createStage(fileSource, { path: random }), (e: Error) => {
    equal(
      e.message,
      `file-source: ${random}: unrecognized audio format (supported: WAV, AIFF, FLAC, MP3, Ogg Vorbis, Opus, and more)`,
    );
    return true;
  });
  const corrupt = join(dir, "corrupt.flac");
  await Deno.writeFile(corrupt, new Uint8Array([0x66, 0x4c, 0x61, 0x43, ...new Uint8Array(noise(2000, 19).buffer)]));
  await rejects(createStage(fileSource, { path: corrupt }), (e: Error) => {
    ok(e.message.startsWith(`file-source: ${corrupt}: `), e.message);
    ok(/no audio decoded \(corrupt, truncated or empty FLAC file\)|cannot decode FLAC/.test(e.message), e.message);
    return true;
  });
  const empty = join(dir, "empty.mp3");
  await Deno.writeFile(empty, new Uint8Array(0));
  await rejects(createStage(fileSource, { path: empty }), new RegExp(`file-source: ${empty}: empty file`));
  const missing = join(dir, "missing.flac");
  await rejects(createStage(fileSource, { path: missing }), (e: Error) => {
    ok(e.message.startsWith(`file-source: ${missing}: cannot open`), e.message);
    return true;
  });
  const badWav = join(dir, "bad.wav");
  await Deno.writeFile(badWav, new TextEncoder().encode("RIFF\x04\x00\x00\x00WAVE"));
  await rejects(createStage(fileSource, { path: badWav }), new RegExp(`file-source: ${badWav}: no fmt chunk`));
});

Deno.test("file-source: a directory, a FIFO and a device (/dev/zero, which never ends) are refused with the path", async () => {
  const sub = join(dir, "a-directory.mp3");
  await Deno.mkdir(sub);
  const fifo = join(dir, "a-fifo.mp3");
  const made = await new Deno.Command("mkfifo", { args: [fifo] }).output().then((r) => r.success, () => false);
  const cases: [string, string][] = [[sub, "a directory"], ["/dev/zero", "a character device"]];
  if (made) cases.push([fifo, "a FIFO \\(named pipe\\)"]);
  else console.warn("file_source_test: mkfifo not found: the FIFO case is skipped");
  for (const [path, kind] of cases) {
    const re = new RegExp(`file-source: ${path}: ${kind}, not a regular file`);
    for (const realtime of [false, true]) {
      await rejects(createStage(fileSource, { path }, { ...testContext().ctx, realtime }), re);
    }
    await rejects(decodeAudioFile(path), re);
    await rejects(probeAudioFile(path), re);
  }
});

Deno.test("file-source: a file to decode in memory larger than MAX_DECODED_FILE_BYTES is refused with its size", async () => {
  const big = join(dir, "big.mp3");
  // A sparse file: its size without its bytes.
  using f = await Deno.open(big, { write: true, create: true });
  await f.truncate(MAX_DECODED_FILE_BYTES + 1);
  await rejects(
    createStage(fileSource, { path: big }),
    new RegExp(
      `file-source: ${big}: ${MAX_DECODED_FILE_BYTES + 1} bytes, more than the ${MAX_DECODED_FILE_BYTES} bytes`,
    ),
  );
});

Deno.test({
  name:
    "file-source: a file decoded once is not decoded again while unchanged (a greeting per call); changed, emptied or replaced by garbage it is read afresh, with its error",
  ignore: !HAVE_FFMPEG,
  async fn() {
    const s = noise(8000, 5);
    const aiff = await encode(await wavOf(1, 8000, s), "aiff");
    const path = join(dir, "greeting.aiff");
    await Deno.copyFile(aiff, path);
    const first = await decodeAudioFile(path);
    const again = await decodeAudioFile(path);
    ok(again.samples === first.samples, "the same samples: not decoded again");
    // Two chains play the shared samples: what one's consumer does to its frames does not reach the other.
    const t = testContext();
    t.ctx.emit = (f) => {
      (f as PcmFrame).samples.fill(0);
      return true;
    };
    const one = await createStage<SourceStage>(fileSource, { path }, t.ctx);
    one.negotiate!(undefined);
    await one.run(t.ctx);
    deepEqual(Array.from((await readAll({ path })).samples), Array.from(s));
    deepEqual(Array.from((await decodeAudioFile(path)).samples), Array.from(s));
    // Changed between two calls: decoded afresh.
    const shorter = await encode(await wavOf(1, 8000, s.subarray(0, 4000)), "aiff");
    await Deno.copyFile(shorter, path);
    deepEqual(Array.from((await readAll({ path })).samples), Array.from(s.subarray(0, 4000)));
    await Deno.writeFile(path, new Uint8Array(0));
    await rejects(readAll({ path }), /greeting\.aiff: empty file/);
    await Deno.writeFile(path, new Uint8Array(3000).map((_, i) => (i * 7919) & 0xff));
    await rejects(readAll({ path }), /greeting\.aiff: unrecognized audio format/);
    await Deno.copyFile(aiff, path);
    deepEqual(Array.from((await readAll({ path })).samples), Array.from(s));
  },
});

Deno.test("file-source: cleanup", async () => {
  await Deno.remove(dir, { recursive: true });
});
