/**
 * Frame memory reuse (`PluginDefinition.borrowsInput`, `StageContext.reuseOutput`): the pipeline lets a stage
 * overwrite its frames only when the next stage borrows them, and the stages that do so produce exactly what they
 * produced with a fresh array per frame, while stages that keep frames see every frame intact.
 */
import { assert, assertEquals } from "./assert.ts";
import { join } from "node:path";
import { z } from "zod";
import { VirtualClock } from "../core/clock.ts";
import type { EncodedFrame, Frame, PcmFrame, RtpFrame } from "../core/frame.ts";
import { MemoryNetwork } from "../core/net/memory.ts";
import { Session } from "../core/session.ts";
import { parseRtp } from "../plugins/rtp/header.ts";
import { buildPipeline } from "../core/pipeline.ts";
import { definePlugin, type StageConfig } from "../core/stage.ts";
import { createRegistry } from "../mod.ts";
import { readWavInfo } from "../plugins/wav/wav_format.ts";
import { WavStreamReader } from "../plugins/wav/wav_reader.ts";
import { PolyphaseResampler } from "../plugins/resample/polyphase.ts";
import { MULAW_TO_PCM16 } from "../plugins/wav/wav_format.ts";
import { g711RoundTrip, readWav, speechLikeSignal, writeWav } from "./media_util.ts";

/** What the `keep` sink was given: every frame as it arrived, kept (not borrowed). */
const kept: Frame[] = [];

/** A sink that keeps every frame it is given and reads them only at the end: it must not borrow. */
const keep = definePlugin({
  name: "keep",
  kind: "sink",
  description: "keeps every frame",
  accepts: [{ kind: "pcm" }, { kind: "encoded" }, { kind: "rtp" }],
  options: z.object({}),
  create: () => ({ write: (f: Frame) => (kept.push(f), true) }),
});

/** What each `probe-*` stage's context said about its output, by label. */
const seen = new Map<string, boolean | undefined>();

function probe(name: string, kind: "transform" | "sink", borrows: boolean | "through") {
  return definePlugin({
    name,
    kind,
    description: "records ctx.reuseOutput",
    accepts: [{ kind: "pcm" }],
    ...(kind === "transform" ? { produces: { kind: "pcm" } as const } : {}),
    ...(borrows === "through" ? { passesInputThrough: true } : borrows ? { borrowsInput: true } : {}),
    options: z.object({}),
    create: (_o: Record<string, never>, ctx) =>
      kind === "transform"
        ? {
          negotiate: (f) => (seen.set(ctx.label, ctx.reuseOutput === true), f),
          process: (f: Frame, emit) => emit(f),
        }
        : { negotiate: () => void seen.set(ctx.label, ctx.reuseOutput === true), write: () => true },
  });
}

/** A source of three frames that records what its context said about its output. */
const probeSource = definePlugin({
  name: "probe-source",
  kind: "source",
  description: "records ctx.reuseOutput",
  produces: { kind: "pcm", sampleRate: 8000, channels: 1 },
  options: z.object({}),
  create: (_o, ctx) => ({
    async run(rc) {
      seen.set(ctx.label, rc.reuseOutput === true);
      for (let i = 0; i < 3; i++) {
        if (!rc.emit({ kind: "pcm", samples: new Int16Array(160), sampleRate: 8000, channels: 1, pts: i * 160 })) {
          await rc.ready();
        }
      }
    },
  }),
});

/** A source of `count` frames of decoded G.711 (what a jitter buffer emits) that rewrites one array every frame. */
const decodedSource = definePlugin({
  name: "decoded-source",
  kind: "source",
  description: "encoded frames carrying their decoded samples, in one reused array",
  produces: { kind: "encoded", codec: "PCMU", clockRate: 8000 },
  options: z.object({ count: z.number().int() }),
  create: ({ count }, ctx) => ({
    async run(rc) {
      assert(ctx.reuseOutput === true, "g711-decoder borrows its input: its source may reuse its arrays");
      const decoded = new Int16Array(160);
      const payload = new Uint8Array(160);
      for (let i = 0; i < count; i++) {
        decoded.fill(i * 100);
        const f: EncodedFrame = { kind: "encoded", codec: "PCMU", clockRate: 8000, payload, pts: i * 160, decoded };
        if (!rc.emit(f)) await rc.ready();
      }
    },
  }),
});

function registry() {
  const r = createRegistry();
  for (
    const p of [
      keep,
      decodedSource,
      probeSource,
      probe("probe-a", "transform", true),
      probe("probe-b", "transform", false),
      probe("probe-pass", "transform", "through"),
    ]
  ) {
    r.register(p);
  }
  r.register(probe("probe-sink", "sink", true));
  return r;
}

async function run(stages: StageConfig[]): Promise<void> {
  kept.length = 0;
  const p = await buildPipeline("main", stages, { registry: registry(), clock: new VirtualClock() });
  const result = await p.run();
  assertEquals(result.reason, "eos", result.error?.message);
}

/** Fails naming the first differing sample (a deep-equal diff of arrays this long would be unreadable and slow). */
function assertSameSamples(actual: Int16Array, expected: Int16Array, what: string): void {
  assertEquals(actual.length, expected.length, `${what}: length`);
  const at = actual.findIndex((v, i) => v !== expected[i]);
  assert(at < 0, `${what}: sample ${at} is ${actual[at]}, expected ${expected[at]}`);
}

/** The samples the `keep` sink kept, end to end. */
function keptSamples(): Int16Array {
  const parts = kept.map((f) => (f as PcmFrame).samples);
  const out = new Int16Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) out.set(p, at), at += p.length;
  return out;
}

Deno.test("a stage may reuse its output only when the next stage borrows its input, or passes it through to one that may", async () => {
  seen.clear();
  await run([
    { use: "probe-source" },
    { use: "probe-a" }, // borrows: the source may reuse
    { use: "probe-b" }, // does not borrow: probe-a may not reuse
    { use: "probe-a", name: "a2" }, // borrows: probe-b may reuse
    { use: "probe-sink" }, // borrows, but nothing follows it
  ]);
  assertEquals(Object.fromEntries(seen), {
    "probe-source": true,
    "probe-a": false,
    "probe-b": true,
    a2: true,
    "probe-sink": false,
  });
  seen.clear();
  await run([{ use: "probe-source" }, { use: "probe-b" }, { use: "keep" }]);
  assertEquals(Object.fromEntries(seen), { "probe-source": false, "probe-b": false });
  // A stage that passes its input through is transparent: what comes after it decides (rtcp, dtmf-sender).
  seen.clear();
  await run([
    { use: "probe-source" },
    { use: "probe-pass" },
    { use: "probe-pass", name: "pass2" },
    { use: "probe-a" },
    { use: "probe-b" },
    { use: "probe-pass", name: "pass3" },
    { use: "keep" },
  ]);
  assertEquals(Object.fromEntries(seen), {
    "probe-source": true,
    "probe-pass": true,
    pass2: true,
    "probe-a": false,
    "probe-b": false,
    pass3: false,
  });
});

Deno.test("a transcode that reuses its frames writes the same samples as stages that keep every frame", async () => {
  const dir = await Deno.makeTempDir();
  try {
    // 8 s at 44.1 kHz: 706 KB, more than the reader's two 256 KB blocks, so a block is read into again.
    const input = speechLikeSignal({ seconds: 8, sampleRate: 44100 });
    const wav = join(dir, "in.wav");
    await writeWav(wav, input, 44100);
    const chain = [
      { use: "file-source", path: wav },
      { use: "resampler", rate: 8000, channels: 1 },
      { use: "g711-encoder", codec: "PCMU" },
      { use: "g711-decoder" },
    ];
    // Every stage reuses: the source (resampler borrows), the resampler (encoder borrows), the encoder (decoder
    // borrows) and the decoder (wav-sink borrows).
    await run([...chain, { use: "wav-sink", path: join(dir, "out.wav") }]);
    const written = (await readWav(join(dir, "out.wav"))).samples;
    // The same, but the decoder's frames are kept: it must hand out a fresh array per frame.
    await run([...chain, { use: "keep" }]);
    assert(kept.length > 100, `${kept.length} frames kept`);
    assertEquals(new Set(kept.map((f) => (f as PcmFrame).samples)).size, kept.length, "one array per kept frame");
    const samples = keptSamples();
    assertSameSamples(samples, written, "kept vs written");
    assert(samples.some((v) => v !== 0));
    // The encoder's frames kept: it must hand out a fresh payload per frame.
    await run([...chain.slice(0, 3), { use: "keep" }]);
    const payloads = kept.map((f) => (f as EncodedFrame).payload);
    assertEquals(new Set(payloads).size, payloads.length, "one payload per kept frame");
    const decoded = Int16Array.from(payloads.flatMap((p) => [...p]), (c) => MULAW_TO_PCM16[c]);
    assertSameSamples(decoded, written, "kept payloads vs written");
    // Kept straight from the source: the reader must not hand out its block.
    await run([{ use: "file-source", path: wav }, { use: "keep" }]);
    assertSameSamples(keptSamples(), input, "kept from the source");
    // Through a resampler that passes frames on (same rate): the source's arrays must not reach the keeper.
    await run([{ use: "file-source", path: wav }, { use: "resampler", rate: 44100 }, { use: "keep" }]);
    assertSameSamples(keptSamples(), input, "kept after a pass-through resampler");
    // The resampler's frames kept: each its own array, the samples of the resampler run alone on the same frames.
    await run([{ use: "file-source", path: wav }, { use: "resampler", rate: 8000 }, { use: "keep" }]);
    assertEquals(new Set(kept.map((f) => (f as PcmFrame).samples)).size, kept.length, "one array per resampled frame");
    const alone = new PolyphaseResampler({ inRate: 44100, outRate: 8000, inChannels: 1, outChannels: 1 });
    const parts: Int16Array[] = [];
    for (let at = 0; at < input.length; at += 882) parts.push(alone.process(input.subarray(at, at + 882)));
    parts.push(alone.flush());
    const expected = new Int16Array(parts.reduce((n, p) => n + p.length, 0));
    parts.reduce((at, p) => (expected.set(p, at), at + p.length), 0);
    assertSameSamples(keptSamples(), expected, "kept after the resampler");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("g711-decoder copies decoded input it passes on to a stage that keeps frames", async () => {
  await run([{ use: "decoded-source", count: 20 }, { use: "g711-decoder" }, { use: "keep" }]);
  assertEquals(kept.length, 20);
  kept.forEach((f, i) => assertEquals((f as PcmFrame).samples, new Int16Array(160).fill(i * 100), `frame ${i}`));
});

Deno.test("WavStreamReader with reuse yields the frames of a fresh-array reader, across blocks and the loop point", async () => {
  const dir = await Deno.makeTempDir();
  try {
    // 16-bit (handed out as views of the block) and 8-bit µ-law (converted into the reader's array); a frame size
    // that does not divide the file, so frames straddle the loop point.
    const pcm = speechLikeSignal({ seconds: 2, sampleRate: 8000 });
    const wav16 = join(dir, "a.wav");
    await writeWav(wav16, pcm, 8000);
    const mulaw = join(dir, "u.wav");
    const codes = new Uint8Array(pcm.length).map((_, i) => (i * 7) & 0xff);
    const header = new Uint8Array(44);
    const v = new DataView(header.buffer);
    header.set(new TextEncoder().encode("RIFF"), 0);
    v.setUint32(4, 36 + codes.length, true);
    header.set(new TextEncoder().encode("WAVEfmt "), 8);
    v.setUint32(16, 16, true);
    v.setUint16(20, 7, true); // µ-law
    v.setUint16(22, 1, true);
    v.setUint32(24, 8000, true);
    v.setUint32(28, 8000, true);
    v.setUint16(32, 1, true);
    v.setUint16(34, 8, true);
    header.set(new TextEncoder().encode("data"), 36);
    v.setUint32(40, codes.length, true);
    await Deno.writeFile(mulaw, new Uint8Array([...header, ...codes]));
    for (const [path, expected] of [[wav16, pcm], [mulaw, Int16Array.from(codes, (c) => MULAW_TO_PCM16[c])]] as const) {
      const info = await readWavInfo(path);
      const frames = Math.ceil((3 * expected.length) / 333); // three times through the file, looping
      const read = async (reuse: boolean) => {
        const r = await WavStreamReader.open(info, 333, true, "test", reuse);
        const out = new Int16Array(frames * 333);
        const arrays = new Set<ArrayBufferLike>();
        try {
          for (let i = 0; i < frames; i++) {
            let s = r.next();
            if (s instanceof Promise) s = await s;
            assert(s && s.length === 333, `frame ${i}`);
            out.set(s, i * 333); // used before the next call, as a borrowing stage does
            arrays.add(s.buffer);
          }
        } finally {
          r.close();
        }
        return { out, buffers: arrays.size };
      };
      const fresh = await read(false);
      const reused = await read(true);
      assertSameSamples(reused.out, fresh.out, `${path}: reused vs fresh`);
      assertSameSamples(fresh.out, fresh.out.map((_, i) => expected[i % expected.length]), path);
      // Reused: the two read blocks and one conversion array at most; fresh: a 64 KiB slab per ~98 frames.
      assert(reused.buffers <= 3, `${path}: ${reused.buffers} buffers`);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** The send chains after the packetizer: none, a caller's (`pipelines/caller.json`), a relay client's. */
const AFTER_PACKETIZER: [string, StageConfig[]][] = [
  ["packetizer alone", []],
  ["dtmf-sender and rtcp", [{ use: "dtmf-sender", payload_type: 101 }, { use: "rtcp", session: "send" }]],
  ["rtp-end-marker", [{ use: "rtp-end-marker" }]],
];

for (const [what, after] of AFTER_PACKETIZER) {
  Deno.test(`a file → RTP chain (${what}): the encoder reuses its payload array; a stage that keeps packets gets copies, a udp-sink sends each packet's own bytes`, async () => {
    const dir = await Deno.makeTempDir();
    try {
      // 3 s at 8 kHz, already G.711-representable: every packet's payload decodes back to its 160 samples.
      const input = g711RoundTrip(speechLikeSignal({ seconds: 3, sampleRate: 8000 }), "PCMU");
      const wav = join(dir, "in.wav");
      await writeWav(wav, input, 8000);
      const chain = [
        { use: "file-source", path: wav },
        { use: "g711-encoder", codec: "PCMU" },
        { use: "rtp-packetizer", ptime: 20 },
        ...after,
      ];
      // The audio packets (an end marker has no payload).
      const audio = (payloads: Uint8Array[]) => payloads.filter((p) => p.length > 0);
      const decode = (payloads: Uint8Array[]) =>
        Int16Array.from(payloads.flatMap((p) => [...p]), (c) => MULAW_TO_PCM16[c]);
      // Packets kept: each must be a copy of its own.
      await run([...chain, { use: "keep" }]);
      const payloads = audio(kept.map((f) => (f as RtpFrame).payload));
      assertEquals(payloads.length, 150);
      assertEquals(new Set(payloads).size, payloads.length, "one payload per kept packet");
      assertSameSamples(decode(payloads), input, "kept packets");
      // Packets sent: the udp-sink serializes each as it takes it (paced: most wait in its queue before they go).
      const clock = new VirtualClock(1000);
      const net = new MemoryNetwork({ clock, latencyMs: 0 });
      const got: Uint8Array[] = [];
      net.bind("10.0.0.2", 4000).listen((d) => void got.push(d.slice()));
      const p = await buildPipeline("send", [...chain, { use: "udp-sink", to: "10.0.0.2:4000", bind: "10.0.0.1" }], {
        registry: registry(),
        clock,
        session: new Session({ id: "send", clock, net }),
      });
      let finished = false;
      const done = p.start().finally(() => finished = true);
      // Virtual time moves on until the chain has ended, however long its file reads take (bound: 100 virtual s).
      for (let i = 0; !finished && i < 1000; i++) await clock.advanceAsync(100, 5);
      assert(finished, "the chain did not end within 100 virtual seconds");
      assertEquals((await done).reason, "eos");
      const sent = audio(got.map((d) => (parseRtp(d) as RtpFrame).payload));
      assertEquals(sent.length, 150);
      assertSameSamples(decode(sent), input, "sent packets");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
}
