/**
 * Tests of `wav-sink`: exact samples (checked with `wavefile` and by reading the
 * header bytes), a header kept valid while recording (virtual clock), G.711
 * mode, refusals at negotiation, the pts timeline, backpressure and finalizing.
 */
import { deepEqual, equal, ok, rejects, throws } from "node:assert/strict";
import { join } from "node:path";
import wf from "wavefile";
import alawmulaw from "alawmulaw";
import { z } from "zod";
import { VirtualClock } from "../core/clock.ts";
import { Logger, MemoryOutput } from "../core/log.ts";
import { fileSystemType, onMemoryFileSystem } from "../core/paths.ts";
import type { EncodedFrame, PcmFrame } from "../core/frame.ts";
import { FormatError, type SinkStage } from "../core/stage.ts";
import { createStage, testContext } from "../core/testing.ts";
import { plugins } from "../plugins/wav/mod.ts";
import wavSink from "../plugins/wav/wav_sink.ts";
import { wavHeader, wavHeaderProblem } from "../plugins/wav/wav_format.ts";
import wavSource from "../plugins/wav/wav_source.ts";
import toneSource from "../plugins/tone/tone_source.ts";
import nullSink from "../plugins/null/null_sink.ts";
import { buildPipeline } from "../core/pipeline.ts";
import { Registry } from "../core/registry.ts";

const dir = await Deno.makeTempDir({ prefix: "voxpipe_wav_sink_" });
const HAVE_FFMPEG = await new Deno.Command("ffmpeg", { args: ["-version"], stdout: "null", stderr: "null" }).output()
  .then((r) => r.success, () => false);
if (!HAVE_FFMPEG) console.warn("wav_sink_test: ffmpeg not found: skipping the ffmpeg interop test");
let n = 0;
const nextPath = (ext = "wav") => join(dir, `out${n++}.${ext}`);

function pcm(samples: number[] | Int16Array, pts: number, sampleRate = 8000, channels = 1): PcmFrame {
  return { kind: "pcm", samples: Int16Array.from(samples), sampleRate, channels, pts };
}

function ramp(count: number, seed = 1): number[] {
  const out: number[] = [32767, -32768, 0];
  let x = seed;
  while (out.length < count) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    out.push((x >>> 16) - 32768);
  }
  return out.slice(0, count);
}

/**
 * Creates, negotiates and starts a sink; `realtime`: as in a real-time chain (the file made with Deno's asynchronous
 * calls; else with the synchronous ones).
 */
async function openSink(
  options: Record<string, unknown>,
  input: Parameters<NonNullable<SinkStage["negotiate"]>>[0],
  realtime = false,
) {
  const clock = new VirtualClock();
  const t = testContext({ clock });
  const ctx = realtime ? { ...t.ctx, realtime: true } : t.ctx;
  const sink = await createStage<SinkStage>(wavSink, options, ctx);
  sink.negotiate?.(input);
  await sink.start!(ctx);
  return { sink, clock, errors: t.errors };
}

/** The two ways a sink makes its file: as in a chain that runs as fast as it can, and as in a real-time one. */
const MODES = [["file to file", false], ["real-time", true]] as const;

/** Header fields read by hand (canonical layout) and checked against the file length. */
function checkHeader(bytes: Uint8Array, expect: { tag: number; bits: number; rate: number; channels: number }) {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  const str = (o: number) => String.fromCharCode(...bytes.subarray(o, o + 4));
  equal(str(0), "RIFF");
  equal(str(8), "WAVE");
  equal(str(12), "fmt ");
  const fmtSize = v.getUint32(16, true);
  equal(v.getUint16(20, true), expect.tag);
  equal(v.getUint16(22, true), expect.channels);
  equal(v.getUint32(24, true), expect.rate);
  const blockAlign = expect.channels * expect.bits / 8;
  equal(v.getUint32(28, true), expect.rate * blockAlign);
  equal(v.getUint16(32, true), blockAlign);
  equal(v.getUint16(34, true), expect.bits);
  let p = 20 + fmtSize;
  let factSamples: number | undefined;
  if (str(p) === "fact") {
    factSamples = v.getUint32(p + 8, true);
    p += 12;
  }
  equal(str(p), "data");
  const dataSize = v.getUint32(p + 4, true);
  const dataOffset = p + 8;
  const pad = bytes.length - dataOffset - dataSize;
  ok(pad === 0 || pad === 1, `file length matches the data size (pad ${pad})`);
  equal(v.getUint32(4, true), bytes.length - 8, "RIFF size is the file length - 8");
  if (factSamples !== undefined) equal(factSamples, dataSize / blockAlign);
  return { dataOffset, dataSize, data: bytes.subarray(dataOffset, dataOffset + dataSize) };
}

function samplesOf(data: Uint8Array): number[] {
  return Array.from(new Int16Array(data.slice().buffer));
}

Deno.test("wav-sink: is registered in plugins/wav/mod.ts with a described schema", () => {
  ok(plugins.includes(wavSink));
  const schema = z.toJSONSchema(wavSink.options) as { properties: Record<string, { description?: string }> };
  for (const key of ["path", "format", "header_interval_ms", "if_exists", "max_gap_ms"]) {
    ok(schema.properties[key].description, key);
  }
  deepEqual(wavSink.options.parse({ path: "x.wav" }), {
    path: "x.wav",
    format: "pcm16",
    header_interval_ms: 1000,
    if_exists: "replace",
    max_gap_ms: 10000,
  });
  equal(wavSink.options.safeParse({ path: "x.wav", format: "mp3" }).success, false);
});

Deno.test("wav-sink: writes exact 16-bit mono samples; wavefile and a hand check agree", async () => {
  const path = nextPath();
  const { sink } = await openSink({ path }, { kind: "pcm", sampleRate: 8000, channels: 1 });
  const all = ramp(160 * 7 + 33);
  for (let i = 0; i < all.length; i += 160) equal(sink.write(pcm(all.slice(i, i + 160), i)), true);
  await sink.end!();
  await sink.close?.();
  const bytes = await Deno.readFile(path);
  const { data } = checkHeader(bytes, { tag: 1, bits: 16, rate: 8000, channels: 1 });
  equal(bytes.length, 44 + all.length * 2);
  deepEqual(samplesOf(data), all);
  const w = new wf.WaveFile(bytes);
  const fmt = w.fmt as { audioFormat: number; numChannels: number; sampleRate: number; bitsPerSample: number };
  deepEqual([fmt.audioFormat, fmt.numChannels, fmt.sampleRate, fmt.bitsPerSample], [1, 1, 8000, 16]);
  deepEqual(Array.from(w.getSamples(false, Int16Array) as unknown as Int16Array), all);
  const st = sink.stats!();
  equal(st.frames, 8);
  equal(st.samples, all.length);
  equal(st.bytes_written, all.length * 2);
  equal(st.duration_s, all.length / 8000);
});

Deno.test("wav-sink: stereo 48 kHz, format taken from the first frame when negotiation leaves it open", async () => {
  const path = nextPath();
  const { sink } = await openSink({ path }, { kind: "pcm" });
  const all = ramp(2 * 960 * 3, 9);
  for (let i = 0; i < 3; i++) sink.write(pcm(all.slice(i * 1920, (i + 1) * 1920), i * 960, 48000, 2));
  await sink.end!();
  const bytes = await Deno.readFile(path);
  const { data } = checkHeader(bytes, { tag: 1, bits: 16, rate: 48000, channels: 2 });
  deepEqual(samplesOf(data), all);
  const w = new wf.WaveFile(bytes);
  const ch = w.getSamples(false, Int16Array) as unknown as Int16Array[];
  deepEqual(Array.from(ch[0]).slice(0, 3), [all[0], all[2], all[4]]);
  deepEqual(Array.from(ch[1]).slice(0, 3), [all[1], all[3], all[5]]);
});

for (const [mode, realtime] of MODES) {
  Deno.test(`wav-sink: creates missing parent directories (${mode})`, async () => {
    const path = join(dir, mode, "a", "b", "c", "rec.wav");
    const { sink } = await openSink({ path }, { kind: "pcm", sampleRate: 16000, channels: 1 }, realtime);
    sink.write(pcm([1, 2, 3], 0, 16000));
    await sink.end!();
    deepEqual(samplesOf(checkHeader(await Deno.readFile(path), { tag: 1, bits: 16, rate: 16000, channels: 1 }).data), [
      1,
      2,
      3,
    ]);
  });

  Deno.test(`wav-sink: if_exists number never touches an existing file (NAME-2.wav, NAME-3.wav); replace replaces (${mode})`, async () => {
    const path = join(dir, mode, "numbered", "rec.wav");
    await Deno.mkdir(join(dir, mode, "numbered"), { recursive: true });
    await Deno.writeTextFile(path, "not mine");
    const fmt = { kind: "pcm", sampleRate: 8000, channels: 1 } as const;
    for (const v of [[5], [6]]) {
      const { sink } = await openSink({ path, if_exists: "number" }, fmt, realtime);
      sink.write(pcm(v, 0, 8000));
      await sink.end!();
    }
    equal(await Deno.readTextFile(path), "not mine");
    const rate = { tag: 1, bits: 16, rate: 8000, channels: 1 };
    deepEqual(samplesOf(checkHeader(await Deno.readFile(join(dir, mode, "numbered", "rec-2.wav")), rate).data), [5]);
    deepEqual(samplesOf(checkHeader(await Deno.readFile(join(dir, mode, "numbered", "rec-3.wav")), rate).data), [6]);
    const { sink } = await openSink({ path }, fmt, realtime);
    sink.write(pcm([7], 0, 8000));
    await sink.end!();
    deepEqual(samplesOf(checkHeader(await Deno.readFile(path), rate).data), [7]);
  });

  Deno.test(`wav-sink: writing fails with the path when the directory cannot be created (${mode})`, async () => {
    const blocker = join(dir, `blocker-${realtime}`);
    await Deno.writeTextFile(blocker, "a file, not a directory");
    const t = testContext();
    const ctx = realtime ? { ...t.ctx, realtime: true } : t.ctx;
    const sink = await createStage<SinkStage>(wavSink, { path: join(blocker, "x.wav") }, ctx);
    sink.negotiate!({ kind: "pcm", sampleRate: 8000, channels: 1 });
    await rejects(Promise.resolve(sink.start!(ctx)), (e: Error) => {
      ok(e.message.startsWith(`wav-sink: ${join(blocker, "x.wav")}: cannot create the recording: `), e.message);
      // What is wrong, in words: not mkdir's "File exists".
      ok(e.message.includes(`${blocker} exists but is not a directory`), e.message);
      return true;
    });
  });
}

Deno.test("wav-sink: if_exists number: many recordings of one path each open one name, not every name taken before", async () => {
  const path = join(dir, "many-of-one", "rec.wav");
  const fmt = { kind: "pcm", sampleRate: 8000, channels: 1 } as const;
  const openSync = Deno.openSync;
  let opens = 0;
  Deno.openSync = (...a: Parameters<typeof Deno.openSync>) => {
    if (a[1]?.createNew) opens++;
    return openSync(...a);
  };
  try {
    for (let i = 0; i < 30; i++) {
      const { sink } = await openSink({ path, if_exists: "number" }, fmt, false);
      sink.write(pcm([i], 0, 8000));
      await sink.end!();
    }
  } finally {
    Deno.openSync = openSync;
  }
  // One exclusive open each (trying NAME, NAME-2, ... from the start each time took 1 + 2 + ... + 30 = 465).
  equal(opens, 30);
  const rate = { tag: 1, bits: 16, rate: 8000, channels: 1 };
  deepEqual(samplesOf(checkHeader(await Deno.readFile(path), rate).data), [0]);
  deepEqual(samplesOf(checkHeader(await Deno.readFile(join(dir, "many-of-one", "rec-30.wav")), rate).data), [29]);
});

Deno.test("paths: the file system of a path from the mount table; a memory one is told from a disk", () => {
  equal(typeof fileSystemType("/"), "string");
  equal(fileSystemType("/proc/self"), "proc");
  const shm = fileSystemType("/dev/shm");
  equal(onMemoryFileSystem("/dev/shm"), shm === "tmpfs" || shm === "ramfs");
  equal(onMemoryFileSystem("/proc"), false);
  equal(onMemoryFileSystem(join(dir, "not-made-yet")), false); // not there: not a memory file system, asked again
});

/** `Deno.open` and `FsFile.write` refused (when `refuse`), and the opens counted, while `fn` runs. */
async function withAsyncFileCalls<T>(refuse: boolean, fn: () => Promise<T>): Promise<{ opens: number; result: T }> {
  const open = Deno.open, write = Deno.FsFile.prototype.write;
  let opens = 0;
  Deno.open = (...a: Parameters<typeof Deno.open>) => {
    opens++;
    return refuse ? Promise.reject(new Error("asynchronous open")) : open(...a);
  };
  Deno.FsFile.prototype.write = function (this: Deno.FsFile, p: Uint8Array) {
    return refuse ? Promise.reject(new Error("asynchronous write")) : write.call(this, p);
  };
  try {
    const result = await fn();
    return { opens, result };
  } finally {
    Deno.open = open;
    Deno.FsFile.prototype.write = write;
  }
}

Deno.test({
  name: "wav-sink: on a memory file system a real-time recording is created and given its header synchronously",
  ignore: !onMemoryFileSystem("/dev/shm"),
  fn: async () => {
    const base = await Deno.makeTempDir({ dir: "/dev/shm", prefix: "voxpipe_wav_sink_mem_" });
    try {
      const path = join(base, "calls", "rec.wav");
      await Deno.mkdir(join(base, "calls"));
      const fmt = { kind: "pcm", sampleRate: 8000, channels: 1 } as const;
      // No asynchronous open or write while it starts (both refused): the file and its header exist once start() ends.
      const { result: { sink } } = await withAsyncFileCalls(true, () => openSink({ path }, fmt, true));
      const bytes = Deno.readFileSync(path);
      equal(bytes.length, 44);
      equal(checkHeader(bytes, { tag: 1, bits: 16, rate: 8000, channels: 1 }).dataSize, 0);
      // The audio is written as anywhere else (asynchronously), after the header.
      sink.write(pcm([1, -2, 3], 0));
      await sink.end!();
      deepEqual(samplesOf(checkHeader(Deno.readFileSync(path), { tag: 1, bits: 16, rate: 8000, channels: 1 }).data), [
        1,
        -2,
        3,
      ]);
      // A second recording in the same directory is numbered, still without an asynchronous open.
      const second = await withAsyncFileCalls(true, () => openSink({ path, if_exists: "number" }, fmt, true));
      await second.result.sink.end!();
      equal(Deno.readFileSync(join(base, "calls", "rec-2.wav")).length, 44);
    } finally {
      await Deno.remove(base, { recursive: true });
    }
  },
});

Deno.test("wav-sink: elsewhere a real-time recording is created with the asynchronous open", async () => {
  const sub = join(dir, "disk-calls");
  await Deno.mkdir(sub, { recursive: true });
  const path = join(sub, "rec.wav");
  const { opens, result: { sink } } = await withAsyncFileCalls(
    false,
    () => openSink({ path }, { kind: "pcm", sampleRate: 8000, channels: 1 }, true),
  );
  // On a disk the open went to Deno's I/O threads; where the test's temporary directory is a tmpfs, it did not.
  equal(opens, onMemoryFileSystem(sub) ? 0 : 1);
  await sink.end!();
  equal(Deno.readFileSync(path).length, 44);
});

Deno.test("wav-sink: the header stays valid while recording (updated every header_interval_ms of the media clock)", async () => {
  const path = nextPath();
  const { sink, clock } = await openSink({ path }, { kind: "pcm", sampleRate: 8000, channels: 1 });
  await sink.control!("sync");
  // At start: already a valid, empty WAV.
  equal(checkHeader(await Deno.readFile(path), { tag: 1, bits: 16, rate: 8000, channels: 1 }).dataSize, 0);
  const all = ramp(8000 * 3, 4);
  let pts = 0;
  const feed = (ms: number) => {
    for (let t = 0; t < ms; t += 20, pts += 160) sink.write(pcm(all.slice(pts, pts + 160), pts));
  };
  feed(1200); // 19 200 bytes: below the 64 KB write threshold, so only the interval writes them
  clock.advance(999);
  await sink.control!("sync");
  equal(checkHeader(await Deno.readFile(path), { tag: 1, bits: 16, rate: 8000, channels: 1 }).dataSize, 0);
  clock.advance(1); // t = 1000 ms: interval tick
  await sink.control!("sync");
  let bytes = await Deno.readFile(path);
  let h = checkHeader(bytes, { tag: 1, bits: 16, rate: 8000, channels: 1 });
  equal(h.dataSize, 1200 * 16);
  deepEqual(samplesOf(h.data), all.slice(0, 1200 * 8));
  // wavefile parses the file as it is mid-recording (as a player would after a crash).
  deepEqual(Array.from(new wf.WaveFile(bytes).getSamples(false, Int16Array) as unknown as Int16Array).length, 9600);
  feed(800);
  clock.advance(1000); // t = 2000 ms
  await sink.control!("sync");
  bytes = await Deno.readFile(path);
  h = checkHeader(bytes, { tag: 1, bits: 16, rate: 8000, channels: 1 });
  equal(h.dataSize, 2000 * 16);
  ok((sink.stats!().header_updates as number) >= 2);
  feed(1000);
  await sink.end!();
  h = checkHeader(await Deno.readFile(path), { tag: 1, bits: 16, rate: 8000, channels: 1 });
  deepEqual(samplesOf(h.data), all);
});

Deno.test("wav-sink: a recording that receives nothing holds no timer; the header ticks start with the first data, on the grid from start", async () => {
  const path = nextPath();
  const { sink, clock } = await openSink({ path }, { kind: "pcm", sampleRate: 8000, channels: 1 });
  await sink.control!("sync");
  equal(clock.pending, 0);
  clock.advance(2500); // t = 2500 ms: nothing came, no tick ran
  equal(clock.pending, 0);
  const samples = ramp(160 * 5, 3);
  for (let i = 0; i < 5; i++) sink.write(pcm(samples.slice(i * 160, (i + 1) * 160), i * 160));
  equal(clock.pending, 1);
  clock.advance(499); // t = 2999 ms: the next tick of the grid (start + k × 1000 ms) is at 3000 ms
  await sink.control!("sync");
  equal(checkHeader(await Deno.readFile(path), { tag: 1, bits: 16, rate: 8000, channels: 1 }).dataSize, 0);
  clock.advance(1); // t = 3000 ms: the tick writes the data and the header
  await sink.control!("sync");
  const h = checkHeader(await Deno.readFile(path), { tag: 1, bits: 16, rate: 8000, channels: 1 });
  equal(h.dataSize, 160 * 5 * 2);
  deepEqual(samplesOf(h.data), samples);
  await sink.end!();
  equal(clock.pending, 0);
});

Deno.test("wav-sink: a recording process killed with SIGKILL leaves a playable file (real clock)", async () => {
  const path = nextPath();
  const child = join(dir, "recorder.ts");
  const sinkUrl = new URL("../plugins/wav/wav_sink.ts", import.meta.url).href;
  const testingUrl = new URL("../core/testing.ts", import.meta.url).href;
  const clockUrl = new URL("../core/clock.ts", import.meta.url).href;
  await Deno.writeTextFile(
    child,
    `import sinkPlugin from "${sinkUrl}";
import { testContext } from "${testingUrl}";
import { RealClock } from "${clockUrl}";
const t = testContext({ clock: new RealClock() });
const sink = sinkPlugin.create(sinkPlugin.options.parse({ path: ${JSON.stringify(path)} }), t.ctx);
sink.negotiate({ kind: "pcm", sampleRate: 8000, channels: 1 });
await sink.start(t.ctx);
let pts = 0;
const samples = Int16Array.from({ length: 160 }, (_, i) => i * 100);
setInterval(() => {
  sink.write({ kind: "pcm", samples, sampleRate: 8000, channels: 1, pts });
  pts += 160;
  if (sink.stats().header_updates >= 1) console.log("synced");
}, 20);
`,
  );
  const proc = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--no-check", "--config", new URL("../deno.json", import.meta.url).pathname, child],
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const reader = proc.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let seen = "";
  while (!seen.includes("synced")) {
    const { value, done } = await reader.read();
    if (done) break;
    seen += value;
  }
  proc.kill("SIGKILL");
  await proc.status;
  await reader.cancel();
  ok(seen.includes("synced"), "the child recorded past its first header update");
  const bytes = await Deno.readFile(path);
  const h = checkHeader(bytes.subarray(0, 44 + new DataView(bytes.buffer).getUint32(40, true)), {
    tag: 1,
    bits: 16,
    rate: 8000,
    channels: 1,
  });
  ok(h.dataSize >= 320 && h.dataSize % 320 === 0, `whole frames in the header (${h.dataSize} bytes)`);
  const got = samplesOf(h.data);
  for (let i = 0; i < got.length; i++) equal(got[i], (i % 160) * 100);
  equal(new wf.WaveFile(bytes).getSamples(false, Int16Array).length, h.dataSize / 2);
});

Deno.test("wav-sink: g711 mode writes µ-law (tag 7) and A-law (tag 6) bytes as they are, with a fact chunk", async () => {
  for (const [codec, tag] of [["PCMU", 7], ["PCMA", 6]] as const) {
    const path = nextPath();
    const { sink } = await openSink({ path, format: "g711" }, { kind: "encoded", codec, clockRate: 8000 });
    const payload = new Uint8Array(161).map((_, i) => (i * 37) & 0xff); // odd size: needs a pad byte
    const frame: EncodedFrame = { kind: "encoded", codec, clockRate: 8000, payload, pts: 1234 };
    sink.write(frame);
    await sink.end!();
    const bytes = await Deno.readFile(path);
    equal(bytes.length % 2, 0, "the RIFF chunk is padded to an even length");
    const h = checkHeader(bytes, { tag, bits: 8, rate: 8000, channels: 1 });
    equal(h.dataSize, 161);
    deepEqual(Array.from(h.data), Array.from(payload));
    const w = new wf.WaveFile(bytes);
    equal((w.fmt as { audioFormat: number }).audioFormat, tag);
    equal(w.bitDepth, codec === "PCMU" ? "8m" : "8a");
  }
});

Deno.test({
  name: "wav-sink: ffmpeg reads the G.711 and PCM files it writes (interop)",
  ignore: !HAVE_FFMPEG,
  async fn() {
    const all = new Uint8Array(256).map((_, i) => i);
    for (const codec of ["PCMU", "PCMA"] as const) {
      const path = nextPath();
      const { sink } = await openSink({ path, format: "g711" }, { kind: "encoded", codec, clockRate: 8000 });
      sink.write({ kind: "encoded", codec, clockRate: 8000, payload: all, pts: 0 });
      await sink.end!();
      const r = await new Deno.Command("ffmpeg", {
        args: ["-loglevel", "error", "-i", path, "-f", "s16le", "-c:a", "pcm_s16le", "-"],
        stdout: "piped",
        stderr: "piped",
      }).output();
      ok(r.success, new TextDecoder().decode(r.stderr));
      const decoded = Array.from(new Int16Array(r.stdout.slice().buffer));
      const law = codec === "PCMU" ? alawmulaw.mulaw : alawmulaw.alaw;
      deepEqual(decoded, Array.from(all, (b) => law.decodeSample(b)), codec);
    }
  },
});

Deno.test("wav-sink: g711 codec taken from the first frame; a codec change is refused", async () => {
  const path = nextPath();
  const { sink } = await openSink({ path, format: "g711" }, { kind: "encoded" });
  const f = (codec: "PCMU" | "PCMA", pts: number): EncodedFrame => ({
    kind: "encoded",
    codec,
    clockRate: 8000,
    payload: new Uint8Array(160).fill(0x12),
    pts,
  });
  sink.write(f("PCMA", 0));
  throws(() => sink.write(f("PCMU", 160)), /codec changed from PCMA.*now PCMU.*one format/);
  await sink.end!();
  checkHeader(await Deno.readFile(path), { tag: 6, bits: 8, rate: 8000, channels: 1 });
});

Deno.test("wav-sink: refuses encoded input in pcm16 mode and pcm input in g711 mode, saying what to do", () => {
  const t = testContext();
  const mk = (format: string) =>
    wavSink.create(wavSink.options.parse({ path: nextPath(), format }), t.ctx) as SinkStage;
  throws(() => mk("pcm16").negotiate!({ kind: "encoded", codec: "PCMU", clockRate: 8000 }), (e: Error) => {
    ok(e instanceof FormatError);
    ok(/encoded PCMU 8000 Hz/.test(e.message) && /g711-decoder/.test(e.message) && /"format": "g711"/.test(e.message));
    return true;
  });
  throws(() => mk("g711").negotiate!({ kind: "pcm", sampleRate: 8000, channels: 1 }), (e: Error) => {
    ok(e instanceof FormatError);
    ok(/pcm 8000 Hz mono/.test(e.message) && /g711-encoder/.test(e.message) && /"format": "pcm16"/.test(e.message));
    return true;
  });
  equal(mk("pcm16").negotiate!({ kind: "pcm", sampleRate: 8000, channels: 1 }), undefined);
});

Deno.test("wav-sink: a rate or channel change mid-stream is an error naming the file", async () => {
  const path = nextPath();
  const { sink } = await openSink({ path }, { kind: "pcm", sampleRate: 8000, channels: 1 });
  sink.write(pcm([1, 2], 0));
  throws(() => sink.write(pcm([1, 2], 2, 16000)), (e: Error) => e.message.includes(path) && /16000 Hz/.test(e.message));
  await sink.end!();
});

Deno.test("wav-sink: pts gaps are filled with silence, overlaps dropped, big jumps written back to back", async () => {
  const path = nextPath();
  const { sink } = await openSink({ path, max_gap_ms: 1000 }, { kind: "pcm", sampleRate: 8000, channels: 1 });
  const a = Array(160).fill(100);
  const b = Array(160).fill(200);
  const c = Array(160).fill(300);
  const d = Array(160).fill(400);
  sink.write(pcm(a, 1000)); // timeline starts at the first pts
  sink.write(pcm(b, 1160));
  sink.write({ ...pcm(c, 1480), type: "concealed" }); // 160 samples missing before it
  sink.write(pcm(c, 1480)); // duplicate: dropped
  sink.write(pcm(d.slice(0, 100).concat(Array(60).fill(401)), 1580)); // its first 60 samples overlap c
  sink.write({ ...pcm(b, 900000), type: "silence" }); // jump > 1 s: a new timeline
  await sink.end!();
  const h = checkHeader(await Deno.readFile(path), { tag: 1, bits: 16, rate: 8000, channels: 1 });
  const expected = [...a, ...b, ...Array(160).fill(0), ...c, ...Array(40).fill(400), ...Array(60).fill(401), ...b];
  deepEqual(samplesOf(h.data), expected);
  const st = sink.stats!();
  equal(st.gap_samples, 160);
  equal(st.dropped_samples, 160 + 60);
  equal(st.discontinuities, 1);
  equal(st.frames, 6);
});

Deno.test("wav-sink: pts jumps beyond max_gap_ms are logged for the first 3 only, all counted", async () => {
  const path = nextPath();
  const lines = new MemoryOutput();
  const t = testContext();
  const ctx = { ...t.ctx, log: new Logger({ level: "info", outputs: [lines] }) };
  const sink = await createStage<SinkStage>(wavSink, { path, max_gap_ms: 1000 }, ctx);
  sink.negotiate!({ kind: "pcm", sampleRate: 8000, channels: 1 });
  await sink.start!(ctx);
  // A peer whose timestamps leap 2 s on every packet: a jump each time.
  for (let i = 0; i < 50; i++) sink.write(pcm(Array(160).fill(i), i * 16000));
  await sink.end!();
  equal(sink.stats!().discontinuities, 49);
  const jumps = lines.lines.filter((l) => l.includes("pts jumped"));
  equal(jumps.length, 3);
  ok(jumps[2].includes("further jumps are only counted"), jumps[2]);
  equal(checkHeader(await Deno.readFile(path), { tag: 1, bits: 16, rate: 8000, channels: 1 }).dataSize, 50 * 320);
});

Deno.test("wav-sink: in a real-time chain, gaps are filled only as far as the time elapsed allows", async () => {
  // A peer whose timestamps leap ~10 s ahead on every 20 ms packet (rtp-timeline passes them on as pts): before, 10 s
  // of silence were written per packet (500 packets: 5 000 s, 80 MB).
  const path = nextPath();
  const { sink, clock } = await openSink({ path }, { kind: "pcm", sampleRate: 8000, channels: 1 }, true);
  const a = Array(160).fill(100);
  for (let i = 0; i < 500; i++) {
    sink.write(pcm(a, i * 80_000));
    clock.advance(20);
  }
  await sink.end!();
  const h = checkHeader(await Deno.readFile(path), { tag: 1, bits: 16, rate: 8000, channels: 1 });
  const st = sink.stats!() as Record<string, number>;
  // At most 10 s (max_gap_ms) + 5 % of the 10 s elapsed ahead of it, and every frame's audio.
  const samples = h.data.length / 2;
  ok(samples <= 8000 * (10 * 1.05 + 10) + 500 * 160, `${samples / 8000} s written`);
  equal(st.samples, 500 * 160);
  equal(samples, st.samples + st.gap_samples);
  equal(st.gap_samples + st.cut_samples, 499 * (80_000 - 160));
  // The file keeps the audio of every frame, in order.
  const got = samplesOf(h.data);
  equal(got.filter((v) => v === 100).length, 500 * 160);
});

Deno.test("wav-sink: g711 gaps (and empty concealment requests) are filled with the codec's silence byte", async () => {
  const path = nextPath();
  const { sink } = await openSink({ path, format: "g711" }, { kind: "encoded", codec: "PCMU", clockRate: 8000 });
  const f = (pts: number, len: number, type?: "concealed"): EncodedFrame => ({
    kind: "encoded",
    codec: "PCMU",
    clockRate: 8000,
    payload: new Uint8Array(len).fill(0x42),
    pts,
    type,
  });
  sink.write(f(0, 160));
  sink.write(f(160, 0, "concealed"));
  sink.write(f(320, 160));
  await sink.end!();
  const h = checkHeader(await Deno.readFile(path), { tag: 7, bits: 8, rate: 8000, channels: 1 });
  deepEqual(Array.from(h.data), [...Array(160).fill(0x42), ...Array(160).fill(0xff), ...Array(160).fill(0x42)]);
  equal(sink.stats!().gap_samples, 160);
});

for (const [mode, realtime] of MODES) {
  Deno.test(`wav-sink: a burst's write buffers are kept for reuse, and given back after two calm header ticks (${mode})`, async () => {
    const path = nextPath();
    const { sink, clock } = await openSink({ path }, { kind: "pcm", sampleRate: 48000, channels: 2 }, realtime);
    const frame = ramp(96000, 2); // 1 s of 48 kHz stereo = 192 000 bytes
    // 1.15 MB at once, faster than any disk: chunks (eighteen of 64 KB in a real-time chain, five of 256 KB in a file
    // to file one) wait, then are written.
    const held = () => sink.stats!().buffer_bytes as number;
    sink.write(pcm(frame, 0, 48000, 2));
    equal(held(), realtime ? 3 * 64 * 1024 : 256 * 1024, "the first second's chunks");
    for (let i = 1; i < 6; i++) sink.write(pcm(frame, i * 48000, 48000, 2));
    await sink.control!("sync");
    equal(sink.stats!().pending_bytes, 0);
    // Kept for the next burst (a sink fed faster than the disk cycles through them instead of allocating new ones).
    ok(held() >= 1024 * 1024, `buffer_bytes ${held()}`);
    clock.advance(1000); // the first header tick: calm once
    await sink.control!("sync");
    ok(held() >= 1024 * 1024, `buffer_bytes ${held()} after one calm tick`);
    clock.advance(1000); // the second: the burst is over, the pool shrinks to 256 KB (one chunk being filled aside)
    await sink.control!("sync");
    ok(held() <= (realtime ? 5 * 64 : 2 * 256) * 1024, `buffer_bytes ${held()} after two calm ticks`);
    // Recording goes on, into the kept chunks.
    sink.write(pcm(frame, 6 * 48000, 48000, 2));
    await sink.end!();
    const h = checkHeader(await Deno.readFile(path), { tag: 1, bits: 16, rate: 48000, channels: 2 });
    equal(h.dataSize, 7 * 192000);
    deepEqual(samplesOf(h.data.subarray(6 * 192000)), frame);
  });
}

Deno.test("wav-sink: backpressure: write returns false above 1 MB unwritten, drained() resolves, end() writes all", async () => {
  const path = nextPath();
  const { sink } = await openSink({ path }, { kind: "pcm", sampleRate: 48000, channels: 2 });
  const frame = ramp(96000, 2); // 1 s of 48 kHz stereo = 192 000 bytes
  const results: boolean[] = [];
  for (let i = 0; i < 6; i++) results.push(sink.write(pcm(frame, i * 48000, 48000, 2)) !== false);
  deepEqual(results, [true, true, true, true, true, false]);
  await sink.drained!();
  ok((sink.stats!().pending_bytes as number) < 256 * 1024);
  for (let i = 6; i < 8; i++) sink.write(pcm(frame, i * 48000, 48000, 2));
  await sink.end!();
  const h = checkHeader(await Deno.readFile(path), { tag: 1, bits: 16, rate: 48000, channels: 2 });
  equal(h.dataSize, 8 * 192000);
  deepEqual(samplesOf(h.data.subarray(7 * 192000)), frame);
});

Deno.test("wav-sink: end() with no frames leaves a valid empty WAV in the negotiated format; end() is idempotent", async () => {
  const path = nextPath();
  const { sink } = await openSink({ path }, { kind: "pcm", sampleRate: 16000, channels: 2 });
  await Promise.all([sink.end!(), sink.end!()]);
  await sink.close?.();
  const bytes = await Deno.readFile(path);
  equal(bytes.length, 44);
  checkHeader(bytes, { tag: 1, bits: 16, rate: 16000, channels: 2 });
  await rejects(Promise.resolve().then(() => sink.write(pcm([1], 0, 16000, 2))), /write after end/);
});

Deno.test("through the pipeline runner: wav-source → wav-sink copies a file exactly; tone-source → wav-sink", async () => {
  const registry = new Registry([wavSource, wavSink, toneSource, nullSink]);
  const src = nextPath();
  const w = new wf.WaveFile();
  const all = ramp(2 * 22050 + 2 * 77, 21); // 1 s + 77 samples, stereo
  w.fromScratch(2, 22050, "16", all);
  await Deno.writeFile(src, w.toBuffer());
  const dst = join(dir, "copy", "copy.wav");
  const p = await buildPipeline("copy", [{ use: "wav-source", path: src }, { use: "wav-sink", path: dst }], {
    registry,
    clock: new VirtualClock(),
  });
  const result = await p.start();
  equal(result.reason, "eos");
  const h = checkHeader(await Deno.readFile(dst), { tag: 1, bits: 16, rate: 22050, channels: 2 });
  deepEqual(samplesOf(h.data), all);

  const toneDst = nextPath();
  const p2 = await buildPipeline("tone", [
    { use: "tone-source", duration: 0.5, sample_rate: 16000 },
    { use: "wav-sink", path: toneDst },
  ], { registry, clock: new VirtualClock() });
  equal((await p2.start()).reason, "eos");
  equal(checkHeader(await Deno.readFile(toneDst), { tag: 1, bits: 16, rate: 16000, channels: 1 }).dataSize, 16000);
});

Deno.test("through the pipeline runner: stopping a looping source finalizes a valid file", async () => {
  const registry = new Registry([wavSource, wavSink]);
  const src = nextPath();
  const w = new wf.WaveFile();
  w.fromScratch(1, 8000, "16", ramp(1000, 23));
  await Deno.writeFile(src, w.toBuffer());
  const dst = nextPath();
  const p = await buildPipeline("loop", [{ use: "wav-source", path: src, loop: true }, {
    use: "wav-sink",
    path: dst,
  }], { registry, clock: new VirtualClock() });
  p.start();
  // Stop once the sink has taken more than one pass of the 1 000-sample file (frames of 160), whatever the speed
  // of the machine: a fixed delay could stop it before anything was written.
  while ((p.stats().at(-1)?.framesIn ?? 0) < 10 && (p.state === "built" || p.state === "running")) {
    await new Promise((r) => setTimeout(r, 5));
  }
  p.stop();
  const result = await p.done;
  equal(result.reason, "stopped");
  const h = checkHeader(await Deno.readFile(dst), { tag: 1, bits: 16, rate: 8000, channels: 1 });
  ok(h.dataSize > 0 && h.dataSize % 320 === 0, `whole frames written (${h.dataSize} bytes)`);
  const got = samplesOf(h.data);
  const ref = ramp(1000, 23);
  for (let i = 0; i < got.length; i += 97) equal(got[i], ref[i % 1000]);
});

Deno.test("through the pipeline runner: the g711 refusal names both stages and says what to change", async () => {
  const registry = new Registry([toneSource, wavSink]);
  await rejects(
    buildPipeline("rec", [{ use: "tone-source" }, { use: "wav-sink", path: nextPath(), format: "g711" }], {
      registry,
      clock: new VirtualClock(),
    }),
    (e: Error) => {
      ok(e instanceof FormatError);
      ok(/tone-source/.test(e.message) && /wav-sink/.test(e.message) && /g711-encoder/.test(e.message), e.message);
      return true;
    },
  );
});

Deno.test("wav-sink: refuses a format whose byte rate does not fit the header's 32 bits (it wrapped), naming the file", async () => {
  const path = nextPath();
  const sink = await createStage<SinkStage>(wavSink, { path }, testContext().ctx);
  throws(
    () => sink.negotiate!({ kind: "pcm", sampleRate: 384000, channels: 6000 }),
    (e: Error) => {
      ok(e instanceof FormatError);
      ok(e.message.startsWith(`wav-sink: ${path}: byte rate 4608000000 `), e.message);
      return true;
    },
  );
  // A format known only from the first frame is refused there.
  const { sink: open } = await openSink({ path: nextPath() }, undefined);
  throws(() => open.write(pcm(new Array(70000).fill(0), 0, 40000, 70000)), /70000 channels cannot be written/);
  await open.close?.();
  throws(() => wavHeader({ encoding: "pcm16", sampleRate: 4294967295, channels: 1, dataBytes: 0 }), RangeError);
  equal(wavHeaderProblem({ encoding: "pcm16", sampleRate: 48000, channels: 2 }), undefined);
});

Deno.test("wav-sink: cleanup", async () => {
  await Deno.remove(dir, { recursive: true });
});

Deno.test("wav-sink: a recording directory removed between calls is made again; an empty call leaves a valid WAV", async () => {
  const root = await Deno.makeTempDir({ prefix: "voxpipe-wavdir-" });
  try {
    const dir = join(root, "calls", "today");
    const fmt = { kind: "pcm" as const, sampleRate: 8000, channels: 1 };
    for (const name of ["a", "b"]) {
      const { sink } = await openSink({ path: join(dir, `${name}.wav`), if_exists: "number" }, fmt);
      await sink.end!();
      const bytes = await Deno.readFile(join(dir, `${name}.wav`));
      equal(bytes.length, 44);
      checkHeader(bytes, { tag: 1, bits: 16, rate: 8000, channels: 1 });
      // The next sink of this process finds the directory gone: it must make it again, not fail.
      await Deno.remove(join(root, "calls"), { recursive: true });
    }
    // With data: the header's sizes follow it, and the pad byte of an odd size is there.
    const { sink } = await openSink({ path: join(dir, "g.wav"), format: "g711" }, {
      kind: "encoded",
      codec: "PCMU",
      clockRate: 8000,
    });
    const frame: EncodedFrame = {
      kind: "encoded",
      codec: "PCMU",
      clockRate: 8000,
      payload: new Uint8Array(161).fill(0x7f),
      pts: 0,
    };
    sink.write(frame);
    await sink.end!();
    const g = await Deno.readFile(join(dir, "g.wav"));
    const v = new DataView(g.buffer, g.byteOffset, g.length);
    equal(g.length % 2, 0);
    equal(v.getUint32(4, true), g.length - 8);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

/**
 * While `fn` runs, the files written through `Deno.FsFile` share `room` bytes of disk, as a full file system would: a
 * write takes what fits and the next one fails with ENOSPC, the error Deno gives (`code` "ENOSPC"). Overwriting bytes
 * a file already has takes no room, as on a disk.
 */
async function withDiskRoom<T>(room: number, fn: (grow: (bytes: number) => void) => Promise<T>): Promise<T> {
  const write = Deno.FsFile.prototype.write, writeSync = Deno.FsFile.prototype.writeSync;
  const full = () => Object.assign(new Error("No space left on device (os error 28)"), { code: "ENOSPC" });
  /** How many bytes of `length` written at `pos` in a file of `size` fit. */
  const fits = (pos: number, size: number, length: number) => {
    const n = Math.min(length, Math.max(0, size - pos) + room);
    room -= Math.max(0, pos + n - size);
    return n;
  };
  Deno.FsFile.prototype.write = async function (this: Deno.FsFile, p: Uint8Array) {
    const pos = await this.seek(0, Deno.SeekMode.Current);
    const n = fits(pos, (await this.stat()).size, p.length);
    if (n === 0 && p.length > 0) throw full();
    return write.call(this, p.subarray(0, n));
  };
  Deno.FsFile.prototype.writeSync = function (this: Deno.FsFile, p: Uint8Array) {
    const n = fits(this.seekSync(0, Deno.SeekMode.Current), this.statSync().size, p.length);
    if (n === 0 && p.length > 0) throw full();
    return writeSync.call(this, p.subarray(0, n));
  };
  try {
    return await fn((bytes) => room += bytes);
  } finally {
    Deno.FsFile.prototype.write = write;
    Deno.FsFile.prototype.writeSync = writeSync;
  }
}

for (const [mode, realtime] of MODES) {
  Deno.test(`wav-sink: a full disk mid-recording: one error naming the file, the file a valid WAV of what reached it, the buffers dropped (${mode})`, async () => {
    const root = await Deno.makeTempDir({ prefix: "voxpipe-wavfull-" });
    try {
      const path = join(root, "call.wav");
      const fmt = { kind: "pcm" as const, sampleRate: 8000, channels: 1 };
      // Room for the header and 10 001 bytes of audio: the disk fills in the middle of a sample.
      await withDiskRoom(44 + 10_001, async () => {
        const { sink, clock, errors } = await openSink({ path }, fmt, realtime);
        const all = ramp(8000 * 2, 7);
        for (let pts = 0; pts < 8000; pts += 160) sink.write(pcm(all.slice(pts, pts + 160), pts));
        clock.advance(1000); // the header tick writes the second of audio: 16 000 bytes, only 10 001 fit
        await sink.control!("sync");
        equal(errors.length, 1, "the chain is failed once");
        const message = (errors[0] as Error).message;
        ok(message.includes(path), `the error names the file: ${message}`);
        ok(message.includes("No space left on device"), message);
        ok(message.includes("free space there"), `the error says what to do: ${message}`);
        ok(message.includes("0.63 s of audio kept"), message);
        // The file is a valid WAV of the whole samples that reached it: sizes in the header equal to the file's.
        const h = checkHeader(await Deno.readFile(path), { tag: 1, bits: 16, rate: 8000, channels: 1 });
        equal(h.dataSize, 10_000);
        deepEqual(samplesOf(h.data), all.slice(0, 5000));
        // Nothing more is buffered: the audio that will never be written is not kept.
        equal(sink.stats!().pending_bytes, 0);
        equal(sink.stats!().buffer_bytes, 0);
        throws(() => sink.write(pcm(all.slice(8000, 8160), 8000)), (e) => e === errors[0]);
        await rejects(async () => await sink.end!(), (e: unknown) => e === errors[0]);
        equal(errors.length, 1);
        checkHeader(await Deno.readFile(path), { tag: 1, bits: 16, rate: 8000, channels: 1 });
      });
    } finally {
      await Deno.remove(root, { recursive: true });
    }
  });

  Deno.test(`wav-sink: a disk already full: the recording fails naming the file and leaves no empty file behind; with room again the next one records (${mode})`, async () => {
    const root = await Deno.makeTempDir({ prefix: "voxpipe-wavfull-" });
    try {
      const path = join(root, "call.wav");
      const fmt = { kind: "pcm" as const, sampleRate: 8000, channels: 1 };
      await withDiskRoom(0, async (grow) => {
        let failure: unknown;
        try {
          const { sink, errors } = await openSink({ path, if_exists: "number" }, fmt, realtime);
          await sink.control!("sync");
          failure = errors[0];
          await Promise.resolve(sink.end!()).catch(() => {});
        } catch (e) {
          failure = e; // where the header is written synchronously (a memory file system), start() fails
        }
        ok(failure instanceof Error, "the recording failed");
        ok(failure.message.includes(path), failure.message);
        ok(failure.message.includes("No space left on device"), failure.message);
        deepEqual([...Deno.readDirSync(root)], [], "no empty, invalid WAV left behind");
        grow(1 << 20);
        const { sink } = await openSink({ path, if_exists: "number" }, fmt, realtime);
        sink.write(pcm([1, 2, 3], 0));
        await sink.end!();
        const written = sink.stats!().path as string;
        deepEqual(
          samplesOf(checkHeader(await Deno.readFile(written), { tag: 1, bits: 16, rate: 8000, channels: 1 }).data),
          [
            1,
            2,
            3,
          ],
        );
      });
    } finally {
      await Deno.remove(root, { recursive: true });
    }
  });
}

Deno.test("wav-sink: the recording directory removed mid-recording: one error naming the file at the next header tick, saying the audio is lost; a recording started after makes the directory again; one in another directory goes on", async () => {
  const root = await Deno.makeTempDir({ prefix: "voxpipe-wavgone-" });
  try {
    const fmt = { kind: "pcm" as const, sampleRate: 8000, channels: 1 };
    const gone = join(root, "gone", "call.wav"), kept = join(root, "kept", "call.wav");
    const a = await openSink({ path: gone }, fmt, true);
    const b = await openSink({ path: kept }, fmt, true);
    const all = ramp(8000 * 3, 9);
    const feed = (s: typeof a, from: number, to: number) => {
      for (let pts = from; pts < to; pts += 160) s.sink.write(pcm(all.slice(pts, pts + 160), pts));
    };
    feed(a, 0, 8000);
    feed(b, 0, 8000);
    a.clock.advance(1000);
    b.clock.advance(1000);
    await a.sink.control!("sync");
    await b.sink.control!("sync");
    equal(a.errors.length, 0);
    await Deno.remove(join(root, "gone"), { recursive: true }); // as `rm -rf` does, root or not
    feed(a, 8000, 16000);
    feed(b, 8000, 16000);
    a.clock.advance(1000);
    b.clock.advance(1000);
    await a.sink.control!("sync");
    await b.sink.control!("sync");
    equal(a.errors.length, 1, "the chain is failed once");
    const message = (a.errors[0] as Error).message;
    ok(message.includes(gone), `the error names the file: ${message}`);
    ok(message.includes("was removed while recording"), message);
    ok(message.includes("1.00 s written to it are lost"), message);
    equal(a.sink.stats!().created, false);
    equal(a.sink.stats!().pending_bytes, 0, "nothing more is buffered for a file nobody can read");
    await rejects(async () => await a.sink.end!(), (e: unknown) => e === a.errors[0]);
    equal(a.errors.length, 1);
    // The other recording is untouched and complete.
    feed(b, 16000, 24000);
    await b.sink.end!();
    equal(b.errors.length, 0);
    deepEqual(
      samplesOf(checkHeader(await Deno.readFile(kept), { tag: 1, bits: 16, rate: 8000, channels: 1 }).data),
      all,
    );
    // Removed after the last tick: found by end().
    const late = join(root, "late.wav");
    const d = await openSink({ path: late }, fmt, true);
    feed(d, 0, 800);
    await Deno.remove(late);
    await rejects(async () => await d.sink.end!(), (e: Error) => e.message.includes(`${late}: the file was removed`));
    equal(d.errors.length, 1);
    // The next call's recording in the removed directory makes it again.
    const c = await openSink({ path: gone }, fmt, true);
    feed(c, 0, 800);
    await c.sink.end!();
    equal(c.errors.length, 0);
    deepEqual(
      samplesOf(checkHeader(await Deno.readFile(gone), { tag: 1, bits: 16, rate: 8000, channels: 1 }).data),
      all.slice(0, 800),
    );
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("wav-sink: a recording whose directory (or file) is renamed mid-recording is finished there, and its stats and a warning name where it is now, not the path it was created at", async () => {
  const root = await Deno.realPath(await Deno.makeTempDir({ prefix: "voxpipe-wavmoved-" }));
  try {
    const fmt = { kind: "pcm" as const, sampleRate: 8000, channels: 1 };
    const all = ramp(8000 * 2, 5);
    for (const realtime of [true, false]) {
      const dir = join(root, `calls-${realtime}`), renamed = join(root, `renamed-${realtime}`);
      const asked = join(dir, "call.wav"), now = join(renamed, "call.wav");
      const logs = new MemoryOutput();
      const t = testContext({ clock: new VirtualClock() });
      const ctx = { ...t.ctx, log: new Logger({ level: "info", outputs: [logs] }), ...(realtime ? { realtime } : {}) };
      const sink = await createStage<SinkStage>(wavSink, { path: asked }, ctx);
      sink.negotiate?.(fmt);
      await sink.start!(ctx);
      for (let pts = 0; pts < 8000; pts += 160) sink.write(pcm(all.slice(pts, pts + 160), pts));
      await sink.control!("sync");
      await Deno.rename(dir, renamed); // as `mv calls renamed` while the call records
      for (let pts = 8000; pts < all.length; pts += 160) sink.write(pcm(all.slice(pts, pts + 160), pts));
      await sink.end!();
      equal(t.errors.length, 0);
      // All the audio is in the file, where it is now.
      deepEqual(
        samplesOf(checkHeader(await Deno.readFile(now), { tag: 1, bits: 16, rate: 8000, channels: 1 }).data),
        all,
      );
      const st = sink.stats!();
      equal(st.path, now, `realtime ${realtime}`);
      equal(st.moved_from, asked);
      equal(st.moved_to, undefined);
      ok(
        logs.lines.some((l) =>
          l.includes(`wav-sink: ${asked}: the recording was moved`) && l.includes(`it is now ${now}`)
        ),
        logs.lines.join("\n"),
      );
    }
    // The file itself renamed: the same. A recording left in place: its path, nothing moved.
    const asked = join(root, "a.wav"), now = join(root, "b.wav"), still = join(root, "still.wav");
    const a = await openSink({ path: asked }, fmt, true);
    const b = await openSink({ path: still }, fmt, true);
    a.sink.write(pcm(all.slice(0, 160), 0));
    b.sink.write(pcm(all.slice(0, 160), 0));
    await a.sink.control!("sync");
    await Deno.rename(asked, now);
    await a.sink.end!();
    await b.sink.end!();
    equal(a.sink.stats!().path, now);
    equal(a.sink.stats!().moved_from, asked);
    equal(b.sink.stats!().path, still);
    equal(b.sink.stats!().moved_from, undefined);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
