/**
 * Tests of `wav-source`: every supported encoding (against `wavefile`, ffmpeg and
 * alawmulaw as oracles), framing, loop, backpressure, stop, and refusals.
 */
import { deepEqual, equal, ok, rejects } from "node:assert/strict";
import { join } from "node:path";
import wf from "wavefile";
import alawmulaw from "alawmulaw";
import { z } from "zod";
import type { Frame, PcmFrame } from "../core/frame.ts";
import { Logger, MemoryOutput } from "../core/log.ts";
import type { RunContext, SourceStage } from "../core/stage.ts";
import { createStage, testContext } from "../core/testing.ts";
import { plugins } from "../plugins/wav/mod.ts";
import wavSource from "../plugins/wav/wav_source.ts";
import { readWavInfo, wavHeader } from "../plugins/wav/wav_format.ts";

const dir = await Deno.makeTempDir({ prefix: "voxpipe_wav_source_" });
const HAVE_FFMPEG = await hasTool("ffmpeg");
if (!HAVE_FFMPEG) console.warn("wav_source_test: ffmpeg not found: skipping the WAVE_FORMAT_EXTENSIBLE tests");

async function hasTool(cmd: string): Promise<boolean> {
  try {
    const r = await new Deno.Command(cmd, { args: ["-version"], stdout: "null", stderr: "null" }).output();
    return r.success;
  } catch {
    return false;
  }
}

async function run(cmd: string, args: string[]): Promise<void> {
  const r = await new Deno.Command(cmd, { args, stdout: "null", stderr: "piped" }).output();
  if (!r.success) throw new Error(`${cmd} failed: ${new TextDecoder().decode(r.stderr)}`);
}

let n = 0;
async function writeWavefile(channels: number, rate: number, bitDepth: string, samples: number[]): Promise<string> {
  const w = new wf.WaveFile();
  w.fromScratch(channels, rate, bitDepth, samples);
  const path = join(dir, `f${n++}.wav`);
  await Deno.writeFile(path, w.toBuffer());
  return path;
}

async function writeBytes(bytes: Uint8Array): Promise<string> {
  const path = join(dir, `b${n++}.wav`);
  await Deno.writeFile(path, bytes);
  return path;
}

/** A RIFF/WAVE file from chunks given as [id, body]. */
function riff(chunks: [string, Uint8Array][], riffId = "RIFF"): Uint8Array {
  let len = 12;
  for (const [, b] of chunks) len += 8 + b.length + (b.length & 1);
  const out = new Uint8Array(len);
  const v = new DataView(out.buffer);
  const id = (off: number, s: string) => [...s].forEach((c, i) => (out[off + i] = c.charCodeAt(0)));
  id(0, riffId);
  v.setUint32(4, len - 8, true);
  id(8, "WAVE");
  let p = 12;
  for (const [cid, b] of chunks) {
    id(p, cid);
    v.setUint32(p + 4, b.length, true);
    out.set(b, p + 8);
    p += 8 + b.length + (b.length & 1);
  }
  return out;
}

function fmtChunk(tag: number, channels: number, rate: number, bits: number, blockAlign = channels * bits / 8) {
  const b = new Uint8Array(16);
  const v = new DataView(b.buffer);
  v.setUint16(0, tag, true);
  v.setUint16(2, channels, true);
  v.setUint32(4, rate, true);
  v.setUint32(8, rate * blockAlign, true);
  v.setUint16(12, blockAlign, true);
  v.setUint16(14, bits, true);
  return b;
}

function le16(values: number[]): Uint8Array {
  return new Uint8Array(new Int16Array(values).buffer);
}

/** Runs the source to the end; returns its frames, the stage and the context. */
async function readAll(options: Record<string, unknown>, ctxOverride: Partial<RunContext> = {}) {
  const t = testContext();
  const ctx = { ...t.ctx, ...ctxOverride } as RunContext;
  const stage = await createStage<SourceStage>(wavSource, options, ctx);
  const format = stage.negotiate!(undefined);
  await stage.run(ctx);
  await stage.close?.();
  return { frames: t.out as PcmFrame[], stage, format };
}

function concat(frames: PcmFrame[]): Int16Array {
  const total = frames.reduce((a, f) => a + f.samples.length, 0);
  const out = new Int16Array(total);
  let off = 0;
  for (const f of frames) {
    out.set(f.samples, off);
    off += f.samples.length;
  }
  return out;
}

function ramp(count: number, seed = 1): number[] {
  // Deterministic pseudo-random int16 values covering the extremes.
  const out = [32767, -32768, 0, 1, -1];
  let x = seed;
  while (out.length < count) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    out.push((x >>> 16) - 32768);
  }
  return out.slice(0, count);
}

Deno.test("wav-source: is registered in plugins/wav/mod.ts with a JSON-Schema-representable, described schema", () => {
  ok(plugins.includes(wavSource));
  const schema = z.toJSONSchema(wavSource.options) as { properties: Record<string, { description?: string }> };
  for (const key of ["path", "frame_ms", "loop"]) ok(schema.properties[key].description, key);
  equal(wavSource.options.parse({ path: "a.wav" }).frame_ms, 20);
  equal(wavSource.options.safeParse({ path: "a.wav", frame_ms: 0 }).success, false);
  equal(wavSource.options.safeParse({ path: "a.wav", frame_ms: 1001 }).success, false);
});

Deno.test("wav-source: 16-bit mono round-trips exactly, 20 ms frames, pts in samples, short last frame", async () => {
  const samples = ramp(8000 + 50); // 1.00625 s at 8 kHz
  const path = await writeWavefile(1, 8000, "16", samples);
  const { frames, stage, format } = await readAll({ path });
  deepEqual(format, { kind: "pcm", sampleRate: 8000, channels: 1, frames: 8050 }); // its length: a file read once
  equal(frames.length, 51);
  for (let i = 0; i < 50; i++) {
    equal(frames[i].samples.length, 160);
    equal(frames[i].pts, i * 160);
    equal(frames[i].sampleRate, 8000);
    equal(frames[i].channels, 1);
    equal(frames[i].kind, "pcm");
  }
  equal(frames[50].samples.length, 50);
  equal(frames[50].pts, 8000);
  deepEqual(Array.from(concat(frames)), samples);
  const st = stage.stats!();
  equal(st.frames, 51);
  equal(st.samples, 8050);
});

Deno.test("wav-source: stereo 44.1 kHz keeps both channels interleaved; frame_ms is honoured", async () => {
  const samples = ramp(2 * 44100 / 10, 7); // 100 ms stereo
  const path = await writeWavefile(2, 44100, "16", samples);
  const { frames, format } = await readAll({ path, frame_ms: 10 });
  deepEqual(format, { kind: "pcm", sampleRate: 44100, channels: 2, frames: 4410 });
  equal(frames.length, 10);
  for (const [i, f] of frames.entries()) {
    equal(f.samples.length, 441 * 2);
    equal(f.pts, 441 * i);
    equal(f.channels, 2);
  }
  deepEqual(Array.from(concat(frames)), samples);
});

Deno.test("wav-source: 8-bit unsigned converts as (v - 128) << 8", async () => {
  const values = [0, 1, 127, 128, 129, 255];
  const path = await writeWavefile(1, 8000, "8", values);
  const { frames } = await readAll({ path });
  deepEqual(Array.from(concat(frames)), values.map((v) => (v - 128) << 8));
});

Deno.test("wav-source: 24-bit takes the high 16 bits, rounded to nearest and clamped", async () => {
  const values = [0, 8388607, -8388608, 127, 128, -128, -129, 0x123456, -0x123456, 8388480, 8388479];
  const path = await writeWavefile(1, 16000, "24", values);
  const { frames } = await readAll({ path });
  const expected = values.map((v) => Math.max(-32768, Math.min(32767, Math.floor(v / 256 + 0.5))));
  deepEqual(Array.from(concat(frames)), expected);
  // Spot checks written out by hand.
  deepEqual(Array.from(concat(frames)).slice(0, 7), [0, 32767, -32768, 0, 1, 0, -1]);
});

Deno.test("wav-source: 32-bit integer takes the high 16 bits, rounded to nearest and clamped", async () => {
  const values = [0, 2147483647, -2147483648, 32767, 32768, -32768, -32769, 0x12345678, -0x12345678];
  const path = await writeWavefile(1, 48000, "32", values);
  const { frames } = await readAll({ path });
  deepEqual(Array.from(concat(frames)), [0, 32767, -32768, 0, 1, 0, -1, 0x1234, -0x1234]);
});

Deno.test("wav-source: 32-bit float (format 3) scales by 32768, rounds and clamps", async () => {
  const values = [0, 0.5, -0.5, 1, -1, 1.5, -2, 100 / 32768, -100.4 / 32768, 100.6 / 32768];
  const path = await writeWavefile(1, 8000, "32f", values);
  const { frames } = await readAll({ path });
  deepEqual(Array.from(concat(frames)), [0, 16384, -16384, 32767, -32768, 32767, -32768, 100, -100, 101]);
});

Deno.test("wav-source: 64-bit float is read too", async () => {
  const path = await writeWavefile(1, 8000, "64", [0.25, -0.25]);
  const { frames } = await readAll({ path });
  deepEqual(Array.from(concat(frames)), [8192, -8192]);
});

Deno.test({
  name: "wav-source: WAVE_FORMAT_EXTENSIBLE float from ffmpeg (pcm_f32le) comes back exactly, not as int32 garbage",
  ignore: !HAVE_FFMPEG,
  async fn() {
    const samples = ramp(2 * 1600, 3); // 100 ms stereo at 16 kHz
    const src = await writeWavefile(2, 16000, "16", samples);
    const ext = join(dir, "ext_float.wav");
    await run("ffmpeg", ["-loglevel", "error", "-y", "-i", src, "-c:a", "pcm_f32le", ext]);
    const bytes = await Deno.readFile(ext);
    const v = new DataView(bytes.buffer);
    equal(v.getUint16(20, true), 0xfffe, "ffmpeg wrote WAVE_FORMAT_EXTENSIBLE");
    const { frames, format, stage } = await readAll({ path: ext });
    deepEqual(format, { kind: "pcm", sampleRate: 16000, channels: 2, frames: 1600 });
    deepEqual(Array.from(concat(frames)), samples);
    ok(String(stage.stats!().file_format).includes("32-bit float"));
  },
});

Deno.test({
  name: "wav-source: WAVE_FORMAT_EXTENSIBLE 24-bit, 3 channels from ffmpeg",
  ignore: !HAVE_FFMPEG,
  async fn() {
    const samples = ramp(3 * 800, 5);
    const src = await writeWavefile(3, 8000, "16", samples);
    const ext = join(dir, "ext_24_3ch.wav");
    await run("ffmpeg", ["-loglevel", "error", "-y", "-i", src, "-c:a", "pcm_s24le", ext]);
    equal(new DataView((await Deno.readFile(ext)).buffer).getUint16(20, true), 0xfffe);
    const { frames, format } = await readAll({ path: ext });
    deepEqual(format, { kind: "pcm", sampleRate: 8000, channels: 3, frames: 800 });
    equal(frames[0].samples.length, 160 * 3);
    deepEqual(Array.from(concat(frames)), samples);
  },
});

Deno.test("wav-source: G.711 µ-law and A-law WAVs expand like alawmulaw", async () => {
  const all = new Uint8Array(256).map((_, i) => i);
  for (
    const [encoding, decodeSample] of [
      ["mulaw", alawmulaw.mulaw.decodeSample],
      ["alaw", alawmulaw.alaw.decodeSample],
    ] as const
  ) {
    const h = wavHeader({ encoding, sampleRate: 8000, channels: 1, dataBytes: 256 });
    const file = new Uint8Array(h.length + 256);
    file.set(h);
    file.set(all, h.length);
    const { frames } = await readAll({ path: await writeBytes(file) });
    deepEqual(Array.from(concat(frames)), Array.from(all, (b) => decodeSample(b)), encoding);
  }
});

Deno.test("wav-source: skips unknown and odd-sized chunks before the data chunk", async () => {
  const data = le16([1, 2, 3, -4]);
  const file = riff([["fmt ", fmtChunk(1, 1, 8000, 16)], ["LIST", new Uint8Array(5)], ["data", data]]);
  const { frames } = await readAll({ path: await writeBytes(file) });
  deepEqual(Array.from(concat(frames)), [1, 2, 3, -4]);
});

Deno.test("wav-source: a relative path is resolved against the pipeline's base directory", async () => {
  await writeWavefile(1, 8000, "16", [5, 6, 7]);
  const t = testContext({ baseDir: dir });
  const stage = await createStage<SourceStage>(wavSource, { path: `f${n - 1}.wav` }, t.ctx);
  await stage.run(t.ctx);
  deepEqual(Array.from(concat(t.out as PcmFrame[])), [5, 6, 7]);
});

Deno.test("wav-source: loop repeats the file with full frames across the loop point until stopped", async () => {
  const samples = Array.from({ length: 250 }, (_, i) => i);
  const path = await writeWavefile(1, 8000, "16", samples);
  const t = testContext();
  const frames: PcmFrame[] = [];
  const ctx: RunContext = {
    ...t.ctx,
    emit: (f: Frame) => {
      frames.push(f as PcmFrame);
      if (frames.length === 40) t.abort.abort();
      return true;
    },
  };
  const stage = await createStage<SourceStage>(wavSource, { path, loop: true }, ctx);
  await stage.run(ctx);
  equal(frames.length, 40, "stops at once when the signal aborts");
  for (const [i, f] of frames.entries()) {
    equal(f.samples.length, 160);
    equal(f.pts, i * 160);
  }
  const all = concat(frames);
  for (let i = 0; i < all.length; i++) equal(all[i], i % 250);
  ok((stage.stats!().loops as number) >= 25);
});

Deno.test("wav-source: honours backpressure: nothing is emitted while waiting for ready()", async () => {
  const path = await writeWavefile(1, 8000, "16", ramp(1600));
  const t = testContext();
  let waiting = false;
  let release: (() => void) | undefined;
  let emittedWhileWaiting = 0;
  let count = 0;
  const ctx: RunContext = {
    ...t.ctx,
    emit: () => {
      if (waiting) emittedWhileWaiting++;
      count++;
      return count % 3 !== 0; // every third frame asks the source to wait
    },
    ready: () => {
      waiting = true;
      return new Promise<void>((r) => {
        release = () => {
          waiting = false;
          r();
        };
      });
    },
  };
  const stage = await createStage<SourceStage>(wavSource, { path }, ctx);
  let finished = false;
  const done = stage.run(ctx).then(() => (finished = true));
  let waits = 0;
  while (!finished) {
    await new Promise((r) => setTimeout(r, 1));
    if (release) {
      const r = release;
      release = undefined;
      waits++;
      r();
    }
  }
  await done;
  equal(count, 10);
  equal(waits, 3);
  equal(emittedWhileWaiting, 0);
});

Deno.test("wav-source: refuses a non-WAV file with the path and the reason", async () => {
  const path = join(dir, "notes.txt");
  await Deno.writeTextFile(path, "this is not audio, just some text that is long enough");
  await rejects(createStage(wavSource, { path }), (e: Error) => {
    equal(e.message, `wav-source: ${path}: not a WAV file (no RIFF/WAVE header)`);
    return true;
  });
  const empty = join(dir, "empty.wav");
  await Deno.writeFile(empty, new Uint8Array(0));
  await rejects(createStage(wavSource, { path: empty }), /wav-source: .*empty\.wav: not a WAV file \(empty file\)/);
});

Deno.test("wav-source: refuses a missing file with the path", async () => {
  const path = join(dir, "nope.wav");
  await rejects(
    createStage(wavSource, { path }),
    (e: Error) => e.message.startsWith(`wav-source: ${path}: cannot open`),
  );
});

Deno.test("wav-source: refuses a file whose fmt chunk is cut or missing", async () => {
  const good = riff([["fmt ", fmtChunk(1, 1, 8000, 16)], ["data", le16([1, 2])]]);
  const cut = await writeBytes(good.subarray(0, 30)); // inside the fmt chunk
  await rejects(createStage(wavSource, { path: cut }), (e: Error) => {
    ok(e.message.startsWith(`wav-source: ${cut}: `), e.message);
    ok(/fmt chunk is truncated/.test(e.message), e.message);
    return true;
  });
  const headerOnly = await writeBytes(good.subarray(0, 12));
  await rejects(createStage(wavSource, { path: headerOnly }), (e: Error) => {
    ok(e.message.includes(headerOnly) && /no fmt chunk/.test(e.message), e.message);
    return true;
  });
  const noData = await writeBytes(riff([["fmt ", fmtChunk(1, 1, 8000, 16)]]));
  await rejects(createStage(wavSource, { path: noData }), (e: Error) => {
    ok(e.message.includes(noData) && /no data chunk/.test(e.message), e.message);
    return true;
  });
});

Deno.test("wav-source: a data chunk shorter than its header says plays what exists and warns", async () => {
  const full = riff([["fmt ", fmtChunk(1, 1, 8000, 16)], ["data", le16(ramp(400))]]);
  const path = await writeBytes(full.subarray(0, 44 + 301)); // 150.5 samples present of 400
  const mem = new MemoryOutput();
  const { frames } = await readAll({ path }, { log: new Logger({ outputs: [mem], level: "debug" }) });
  deepEqual(Array.from(concat(frames)), ramp(150));
  equal(mem.lines.length, 1);
  ok(mem.lines[0].includes(path) && /declares 800 bytes but the file holds 300/.test(mem.lines[0]), mem.lines[0]);
});

Deno.test("wav-source: refuses unsupported encodings with the path and the reason", async () => {
  const cases: [Uint8Array, RegExp][] = [
    [fmtChunk(1, 1, 8000, 12, 2), /unsupported bit depth 12 for integer PCM/],
    [fmtChunk(2, 1, 8000, 4, 256), /unsupported encoding: format tag 2 \(Microsoft ADPCM\)/],
    [fmtChunk(0x55, 1, 8000, 0, 1), /unsupported encoding: format tag 85 \(MPEG layer 3\)/],
    [fmtChunk(1, 0, 8000, 16, 0), /invalid channel count 0/],
    [fmtChunk(1, 1, 0, 16), /invalid sample rate 0/],
    [fmtChunk(3, 1, 8000, 16), /unsupported bit depth 16 for IEEE float/],
    [fmtChunk(1, 2, 8000, 16, 2), /inconsistent fmt chunk: block align 2/],
  ];
  for (const [fmt, reason] of cases) {
    const path = await writeBytes(riff([["fmt ", fmt], ["data", new Uint8Array(8)]]));
    await rejects(createStage(wavSource, { path }), (e: Error) => {
      ok(e.message.startsWith(`wav-source: ${path}: `), e.message);
      ok(reason.test(e.message), `${e.message} should match ${reason}`);
      return true;
    });
  }
  const rifx = await writeBytes(riff([["fmt ", fmtChunk(1, 1, 8000, 16)], ["data", new Uint8Array(4)]], "RIFX"));
  await rejects(createStage(wavSource, { path: rifx }), /big-endian WAV \(RIFX\)/);
});

Deno.test("wav-source: an empty data chunk ends at once, even with loop", async () => {
  const path = await writeBytes(riff([["fmt ", fmtChunk(1, 1, 8000, 16)], ["data", new Uint8Array(0)]]));
  equal((await readAll({ path })).frames.length, 0);
  equal((await readAll({ path, loop: true })).frames.length, 0);
});

Deno.test("readWavInfo: the synchronous calls (a chain that is not real-time) read and refuse what the asynchronous do", async () => {
  // Good files of several encodings and layouts, and files cut, truncated, empty, unsupported, not WAV, missing.
  const fmt16 = fmtChunk(1, 1, 8000, 16);
  const good = riff([["fmt ", fmt16], ["data", le16(ramp(400))]]);
  const paths = [
    await writeWavefile(2, 44100, "16", ramp(200)),
    await writeWavefile(1, 8000, "24", ramp(100)),
    await writeWavefile(1, 8000, "32f", ramp(100).map((v) => v / 32768)),
    await writeBytes(riff([["LIST", new Uint8Array(7)], ["fmt ", fmt16], ["data", le16(ramp(10))]])),
    await writeBytes(riff([["data", le16(ramp(10))], ["fmt ", fmt16]])),
    await writeBytes(good.subarray(0, 44 + 301)),
    await writeBytes(good.subarray(0, 30)),
    await writeBytes(good.subarray(0, 12)),
    await writeBytes(riff([["fmt ", fmt16]])),
    await writeBytes(riff([["fmt ", fmtChunk(2, 1, 8000, 4, 256)], ["data", new Uint8Array(8)]])),
    await writeBytes(riff([["fmt ", fmt16], ["data", new Uint8Array(4)]], "RIFX")),
    await writeBytes(new TextEncoder().encode("this is not audio, just some text that is long enough")),
    await writeBytes(new Uint8Array(0)),
    join(dir, "missing.wav"),
  ];
  const outcome = (p: Promise<unknown>) => p.then((v) => ({ ok: v }), (e: Error) => ({ error: e.message }));
  let refused = 0;
  for (const path of paths) {
    const sync = await outcome(readWavInfo(path, "wav-source", true));
    deepEqual(sync, await outcome(readWavInfo(path, "wav-source", false)), path);
    if ("error" in sync) refused++;
  }
  equal(refused, 8, "the broken files are refused, the good and the truncated ones read");
  // A chain that is not real-time reads with them, a real-time one without; both give the same frames.
  const path = await writeWavefile(1, 8000, "16", ramp(500));
  deepEqual(concat((await readAll({ path })).frames), concat((await readAll({ path }, { realtime: true })).frames));
});

Deno.test("wav-source: a directory, a FIFO and a device are refused with the path before they are opened (no hang)", async () => {
  const sub = join(dir, "a-directory.wav");
  await Deno.mkdir(sub);
  const fifo = join(dir, "a-fifo.wav");
  const made = await new Deno.Command("mkfifo", { args: [fifo] }).output().then((r) => r.success, () => false);
  const cases: [string, string][] = [[sub, "a directory"], ["/dev/zero", "a character device"]];
  if (made) cases.push([fifo, "a FIFO \\(named pipe\\)"]);
  else console.warn("wav_source_test: mkfifo not found: the FIFO case is skipped");
  for (const [path, kind] of cases) {
    for (const realtime of [false, true]) {
      // Without the check, the FIFO's synchronous open (realtime: false) blocked the thread for good: no timer, no
      // signal could end the test.
      await rejects(
        createStage(wavSource, { path }, { ...testContext().ctx, realtime }),
        new RegExp(`wav-source: ${path}: ${kind}, not a regular file`),
      );
      await rejects(
        readWavInfo(path, "wav-source", !realtime),
        new RegExp(`wav-source: ${path}: ${kind}, not a regular`),
      );
    }
  }
});

Deno.test({
  name:
    "wav-source: an error while reading the header names the file (/proc/self/mem: a regular file that fails with EIO)",
  ignore: Deno.build.os !== "linux",
  fn: async () => {
    const path = "/proc/self/mem";
    for (const realtime of [false, true]) {
      await rejects(
        createStage(wavSource, { path }, { ...testContext().ctx, realtime }),
        new RegExp(`wav-source: ${path}: cannot read: `),
      );
    }
  },
});

Deno.test("wav-source: absurd fmt values are refused with the path and the field (no allocation failure)", async () => {
  const withByteRate = (fmt: Uint8Array, byteRate: number) => {
    new DataView(fmt.buffer).setUint32(8, byteRate, true);
    return fmt;
  };
  const cases: [Uint8Array, RegExp][] = [
    // The review's huge_rate_ch.wav: 4294967295 Hz, 32767 channels ("Array buffer allocation failed", no path).
    [withByteRate(fmtChunk(1, 32767, 4294967295, 16), 4294901762), /sample rate 4294967295 Hz is out of range/],
    // huge_rate.wav: it played, and the copy's byte rate wrapped.
    [withByteRate(fmtChunk(1, 1, 4294967295, 16), 4294967294), /sample rate 4294967295 Hz is out of range/],
    [fmtChunk(1, 1, 1, 16), /sample rate 1 Hz is out of range \(1000\.\.768000\)/],
    [fmtChunk(7, 65535, 8000, 8), /65535 channels is out of range \(1\.\.256\)/],
  ];
  for (const [fmt, re] of cases) {
    const path = await writeBytes(riff([["fmt ", fmt], ["data", le16(ramp(100))]]));
    await rejects(createStage(wavSource, { path }), (e: Error) => {
      ok(e.message.startsWith(`wav-source: ${path}: `), e.message);
      ok(re.test(e.message), e.message);
      return true;
    });
  }
  // A wrong byte rate field (it only repeats rate × block align) does not stop a file from playing.
  const path = await writeBytes(
    riff([["fmt ", withByteRate(fmtChunk(1, 1, 8000, 16), 12345)], ["data", le16(ramp(100))]]),
  );
  const stage = await createStage(wavSource, { path });
  ok(stage, "a file with a wrong byte rate field is read");
});

Deno.test("wav-source: cleanup", async () => {
  await Deno.remove(dir, { recursive: true });
});
