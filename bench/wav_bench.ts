/**
 * `deno bench -A bench/wav_bench.ts`: WAV reading and writing costs.
 *
 * - wav-source: 60 s of 48 kHz stereo 16-bit and 24-bit read into a counting emit
 *   (compare with wavefile's `getSamples`, 6.7 M samples/s per DESIGN).
 * - wav-sink: 60 s of 8 kHz mono in 20 ms frames, as the stage does it (copy into
 *   64 KB chunks, asynchronous batched writes) against one synchronous
 *   `writeSync` per frame, the simpler alternative. The figure that matters for
 *   the chain is the time spent on the event loop per frame.
 *
 * @module
 */
import { VirtualClock } from "../core/clock.ts";
import type { PcmFrame } from "../core/frame.ts";
import type { SinkStage, SourceStage } from "../core/stage.ts";
import { createStage, testContext } from "../core/testing.ts";
import wavSink from "../plugins/wav/wav_sink.ts";
import wavSource from "../plugins/wav/wav_source.ts";
import { wavHeader } from "../plugins/wav/wav_format.ts";

const dir = await Deno.makeTempDir({ prefix: "voxpipe_wav_bench_" });

async function makeWav(bits: 16 | 24): Promise<string> {
  const frames = 48000 * 60;
  const bytes = new Uint8Array(44 + frames * 2 * (bits / 8));
  bytes.set(wavHeader({ encoding: "pcm16", sampleRate: 48000, channels: 2, dataBytes: frames * 4 }));
  const v = new DataView(bytes.buffer);
  if (bits === 24) {
    // Patch the header for 24-bit: byte rate, block align, bits, sizes.
    v.setUint32(28, 48000 * 6, true);
    v.setUint16(32, 6, true);
    v.setUint16(34, 24, true);
    v.setUint32(40, frames * 6, true);
    v.setUint32(4, 36 + frames * 6, true);
  }
  for (let i = 44; i < bytes.length; i++) bytes[i] = (i * 7919) & 0xff;
  const path = `${dir}/in${bits}.wav`;
  await Deno.writeFile(path, bytes);
  return path;
}

const in16 = await makeWav(16);
const in24 = await makeWav(24);

async function readAll(path: string): Promise<number> {
  const t = testContext();
  let samples = 0;
  const ctx = {
    ...t.ctx,
    emit: (f: unknown) => {
      samples += (f as PcmFrame).samples.length;
      return true;
    },
  };
  const stage = await createStage<SourceStage>(wavSource, { path }, ctx);
  await stage.run(ctx);
  return samples;
}

Deno.bench("wav-source: 60 s 48 kHz stereo 16-bit (5.76 M samples)", { group: "read" }, async () => {
  await readAll(in16);
});

Deno.bench("wav-source: 60 s 48 kHz stereo 24-bit (5.76 M samples)", { group: "read" }, async () => {
  await readAll(in24);
});

const FRAMES = 3000; // 60 s of 20 ms
const frame: PcmFrame = { kind: "pcm", samples: new Int16Array(160).fill(1234), sampleRate: 8000, channels: 1, pts: 0 };

Deno.bench("wav-sink: 60 s 8 kHz mono, 3000 frames (batched async writes)", { group: "write" }, async (b) => {
  const clock = new VirtualClock();
  const t = testContext({ clock });
  const sink = await createStage<SinkStage>(wavSink, { path: `${dir}/out_sink.wav` }, t.ctx);
  sink.negotiate!({ kind: "pcm", sampleRate: 8000, channels: 1 });
  await sink.start!(t.ctx);
  b.start();
  for (let i = 0; i < FRAMES; i++) {
    sink.write({ ...frame, pts: i * 160 });
    if (i % 50 === 49) clock.advance(1000); // one header update per second of audio
  }
  b.end();
  await sink.end!();
});

Deno.bench("writeSync per frame: 3000 × 320 bytes", { group: "write" }, (b) => {
  const f = Deno.openSync(`${dir}/out_sync.wav`, { write: true, create: true, truncate: true });
  const bytes = new Uint8Array(frame.samples.buffer);
  b.start();
  for (let i = 0; i < FRAMES; i++) f.writeSync(bytes);
  b.end();
  f.close();
});

globalThis.addEventListener("unload", () => {
  try {
    Deno.removeSync(dir, { recursive: true });
  } catch { /* gone */ }
});
