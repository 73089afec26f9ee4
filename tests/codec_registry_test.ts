/**
 * Open formats: codecs are registered by their plugins (core/codec.ts), and a
 * codec that core and the RTP stages have never heard of — the example L16
 * plugin folder (examples/plugins/l16/: 16-bit linear PCM, two bytes per
 * sample, a dynamic payload type) — runs through packetizer → depacketizer →
 * jitter buffer → decoder, SDP offer/answer, link hints and a real SIP call.
 *
 * @module
 */
import { MemoryNetwork } from "../core/net/memory.ts";
import { z } from "zod";
import { assert, assertEquals, assertMatch, assertRejects, assertThrows } from "./assert.ts";
import { VirtualClock } from "../core/clock.ts";
import { CodecRegistry, defineCodec, payloadBytes, payloadSamples, UnknownCodecError } from "../core/codec.ts";
import type { ControlContext } from "../core/control.ts";
import type { EncodedFrame, Format, Frame, PcmFrame, RtpFrame } from "../core/frame.ts";
import { silentLogger } from "../core/log.ts";
import { buildPipeline } from "../core/pipeline.ts";
import { Registry } from "../core/registry.ts";
import { listPluginLines } from "../core/schema.ts";
import { definePlugin, FormatError, type TransformStage } from "../core/stage.ts";
import { createStage, runTransform, testContext } from "../core/testing.ts";
import { createRegistry } from "../mod.ts";
import { PCMA, PCMU } from "../plugins/g711/codecs.ts";
import { plugins as resamplePlugins } from "../plugins/resample/mod.ts";
import { serializeRtp } from "../plugins/rtp/header.ts";
import jitterBuffer from "../plugins/rtp/jitter_buffer.ts";
import rtpDepacketizer from "../plugins/rtp/rtp_depacketizer.ts";
import rtpPacketizer from "../plugins/rtp/rtp_packetizer.ts";
import sipControl from "../plugins/sip/control.ts";
import { agreedMedia, createAnswer, createOffer, negotiated, NoCommonCodecError } from "../plugins/sip/sdp.ts";
import { decodeL16, encodeL16, L16, plugins as l16Plugins } from "../examples/plugins/l16/mod.ts";
import l16Decoder from "../examples/plugins/l16/l16_decoder.ts";
import l16Encoder from "../examples/plugins/l16/l16_encoder.ts";
import { readWav, spawnCli } from "./media_util.ts";
import { freeUdpPort } from "./sip_util.ts";
import { fromFileUrl, repoPath } from "./util.ts";

const TESTS_DIR = fromFileUrl(new URL(".", import.meta.url));

/** The built-in registry plus the example L16 plugin folder (its stages register L16). */
function registryWithL16(): Registry {
  const registry = createRegistry();
  for (const p of l16Plugins) registry.register(p);
  return registry;
}

/** `n` frames of 160 distinct samples (a sine plus the frame number), 20 ms each at 8000 Hz. */
function pcmFrames(n: number, rate = 8000, size = 160): PcmFrame[] {
  return Array.from({ length: n }, (_, k) => ({
    kind: "pcm" as const,
    samples: Int16Array.from({ length: size }, (_, i) => Math.round(9000 * Math.sin((k * size + i) * 0.07)) + k),
    sampleRate: rate,
    channels: 1,
    pts: k * size,
  }));
}

Deno.test("CodecRegistry: lookups by name (any case) and static payload type; bad registrations say what is wrong", () => {
  const codecs = new CodecRegistry([PCMU, PCMA]);
  assertEquals(codecs.names(), ["PCMU", "PCMA"]);
  assert(codecs.get("pcma") === PCMA);
  assert(codecs.byPayloadType(0) === PCMU);
  assert(codecs.byPayloadType(8) === PCMA);
  assertEquals(codecs.byPayloadType(96), undefined);
  codecs.register(PCMU); // the same registration again: nothing happens
  codecs.register(L16); // dynamic: no payload type taken
  assertEquals(codecs.names(), ["PCMU", "PCMA", "L16"]);
  assertEquals(codecs.byPayloadType(96), undefined);
  const base = { clockRate: 8000, silence: (n: number) => new Uint8Array(n), concealment: "none" as const };
  assertThrows(() => codecs.register(defineCodec({ ...base, name: "pcmu", payloadType: "dynamic" })), Error, "already");
  assertThrows(
    () => codecs.register(defineCodec({ ...base, name: "X", payloadType: 8 })),
    Error,
    "static payload type 8 is already PCMA's",
  );
  const e = assertThrows(() => codecs.require("G729", "my-stage"), UnknownCodecError);
  assertMatch(e.message, /^my-stage: unknown codec "G729"; known codecs: PCMU, PCMA, L16/);
  assertThrows(() => defineCodec({ ...base, name: "X", payloadType: 100 }), TypeError, "static RTP payload type");
  assertThrows(() => defineCodec({ ...base, name: "L16/8000", payloadType: "dynamic" }), TypeError, "encoding name");
  assertThrows(
    () => defineCodec({ ...base, name: "X", payloadType: "dynamic", frameBytes: 0 }),
    TypeError,
    "frameBytes",
  );
  // Payload geometry: whole codec frames.
  assertEquals(payloadSamples(L16, 320), 160);
  assertEquals(payloadBytes(L16, 160), 320);
  assertEquals(payloadSamples({ frameSamples: 80, frameBytes: 10 }, 25), 160);
  assertEquals(payloadBytes({ frameSamples: 80, frameBytes: 10 }, 170), 20);
});

Deno.test("plugins register their codecs: registered with the plugin, or when its module is loaded by path", async () => {
  assertEquals(createRegistry().codecs.names(), ["PCMU", "PCMA"]);
  assert(new Registry([l16Encoder]).codecs.get("L16") === L16);
  const registry = createRegistry();
  assertEquals(registry.codecs.get("L16"), undefined);
  const p = await registry.resolve("../examples/plugins/l16/l16_decoder.ts", TESTS_DIR);
  assertEquals(p.name, "l16-decoder");
  assert(registry.codecs.get("L16") === L16);
  assertEquals(registry.codecs.names(), ["PCMU", "PCMA", "L16"]);
  // --list-plugins lists them after the plugins.
  const lines = listPluginLines(registry);
  assertMatch(lines.find((l) => l.startsWith("PCMA "))!, /codec +RTP codec: payload type 8, 8000 Hz mono, 1 byte per/);
  assertMatch(lines.at(-1)!, /^L16 +codec +RTP codec: dynamic payload type, 8000 Hz mono, 2 bytes per sample, 20 ms/);
});

Deno.test("L16 (2 bytes per sample, dynamic payload type) through packetizer → depacketizer → jitter buffer → decoder", async () => {
  const registry = registryWithL16();
  const clock = new VirtualClock(1000);
  const base = testContext({ registry, clock });
  const played: EncodedFrame[] = [];
  const ctx = {
    ...base.ctx,
    emit: (f: Frame) => {
      played.push(f as EncodedFrame);
      return true;
    },
  };
  const frames = pcmFrames(8);

  const enc = await createStage<TransformStage>(l16Encoder, {}, ctx);
  assertEquals(enc.negotiate!({ kind: "pcm", sampleRate: 8000, channels: 1 }), {
    kind: "encoded",
    codec: "L16",
    clockRate: 8000,
  });
  const encoded = runTransform(enc, frames) as EncodedFrame[];

  // A dynamic payload type must be given (it is the one SDP negotiated).
  const noPt = await createStage<TransformStage>(rtpPacketizer, {}, ctx);
  assertThrows(() => noPt.negotiate!({ kind: "encoded", codec: "L16", clockRate: 8000 }), FormatError, "payload_type");
  const pz = await createStage<TransformStage>(
    rtpPacketizer,
    { payload_type: 97, ssrc: 7, initial_sequence: 100, initial_timestamp: 1000 },
    ctx,
  );
  assertEquals(pz.negotiate!({ kind: "encoded", codec: "L16", clockRate: 8000 }), {
    kind: "rtp",
    codec: "L16",
    clockRate: 8000,
  });
  const packets = runTransform(pz, encoded) as RtpFrame[];
  assertEquals(packets.length, 8);
  // 20 ms = 160 samples = 320 bytes; timestamps count samples, not bytes.
  assertEquals(packets.map((p) => p.payload.length), new Array(8).fill(320));
  assertEquals(packets.map((p) => p.timestamp), frames.map((_, k) => 1000 + 160 * k));
  assertEquals(packets.map((p) => p.payloadType), new Array(8).fill(97));
  // Network byte order on the wire: sample 0 of frame 0, high byte first.
  const wire0 = serializeRtp(packets[0]);
  assertEquals([...wire0.subarray(12, 16)], [...encodeL16(frames[0].samples.subarray(0, 2))]);
  assertEquals((frames[0].samples[0] >> 8) & 0xff, wire0[12]);

  const dp = await createStage<TransformStage>(rtpDepacketizer, { codec: "L16", payload_type: 97 }, ctx);
  assertEquals(dp.negotiate!({ kind: "packet" }), { kind: "rtp", codec: "L16", clockRate: 8000 });
  // Packet 3 is lost on the way.
  const received = runTransform(
    dp,
    packets.filter((_, k) => k !== 3).map((p) => ({ kind: "packet" as const, data: serializeRtp(p) })),
  ) as RtpFrame[];
  assertEquals(received.length, 7);
  assert(received.every((r) => r.codec === "L16" && r.clockRate === 8000));

  const jb = await createStage<TransformStage>(jitterBuffer, { initial_delay: 40 }, ctx);
  assertEquals(jb.negotiate!({ kind: "rtp", codec: "L16", clockRate: 8000 }), {
    kind: "encoded",
    codec: "L16",
    clockRate: 8000,
  });
  await jb.start!(ctx);
  for (const r of received) {
    const k = (r.timestamp - 1000) / 160;
    clock.advance(1000 + 20 * k - clock.now());
    jb.process({ ...r, arrival: clock.now() }, () => true);
  }
  clock.advance(200);
  await jb.close!();
  // Real-time playout decodes L16 through the codec's transcoder (its registration's "pcm"): the frames received
  // play sample-exact and in order, the lost one is concealed (for its length, to within half a pitch period:
  // the merge into the next frame picks the best match), frames are 320 bytes with continuous pts.
  const live = played.slice(0, 10);
  assertEquals(live.map((f) => f.payload.length), new Array(10).fill(320));
  assertEquals(live.map((f) => f.pts), live.map((_, k) => 160 * k));
  assertEquals(live.slice(0, 3).map((f) => f.type), ["normal", "normal", "normal"]);
  const out = Int16Array.from(live.flatMap((f) => Array.from(decodeL16(f.payload))));
  for (const k of [0, 1, 2]) assertEquals(out.subarray(160 * k, 160 * k + 160), frames[k].samples, `frame ${k}`);
  const next = frames[4].samples.subarray(0, 100);
  const at = out.findIndex((_, i) => next.every((v, j) => out[i + j] === v));
  assert(Math.abs(at - 640) <= 60, `frame 4 plays from output sample ${at}`);
  assertEquals((jb.stats!() as { lost: number }).lost, 1);

  // At the end of the stream (flush) the buffer drains as fast as it can, a gap concealed by exactly its length:
  // frame by frame, a concealed frame of the codec's silence for the lost one (the decoder conceals it).
  const jb20 = await createStage<TransformStage>(jitterBuffer, { ptime: 20 }, ctx);
  jb20.negotiate!({ kind: "rtp", codec: "L16", clockRate: 8000 });
  for (const r of received) jb20.process({ ...r, arrival: 0 }, () => true);
  const first8: EncodedFrame[] = [];
  jb20.flush!((f) => first8.push(f as EncodedFrame) > 0);
  assertEquals(first8.map((f) => f.type), [
    "normal",
    "normal",
    "normal",
    "concealed",
    "normal",
    "normal",
    "normal",
    "normal",
  ]);
  assertEquals(first8.map((f) => f.pts), frames.map((f) => f.pts));
  assertEquals(first8.map((f) => f.payload.length), new Array(8).fill(320));
  // The concealed frame carries the buffer's concealment, decoded and encoded (what a relay would send on).
  assertEquals([...first8[3].payload], [...encodeL16(first8[3].decoded!)]);

  // Frames cut out of packets: a 10 ms buffer plays each 20 ms packet as two 160-byte frames, the loss as two
  // concealed ones, sample-exact.
  const jb10 = await createStage<TransformStage>(jitterBuffer, { ptime: 10 }, ctx);
  jb10.negotiate!({ kind: "rtp", codec: "L16", clockRate: 8000 });
  for (const r of received) jb10.process({ ...r, arrival: 0 }, () => true);
  const halves: EncodedFrame[] = [];
  jb10.flush!((f) => halves.push(f as EncodedFrame) > 0);
  assertEquals(halves.map((f) => f.payload.length), new Array(16).fill(160));
  assertEquals(halves.map((f) => f.type === "concealed"), halves.map((_, i) => i === 6 || i === 7));
  for (let i = 0; i < 16; i++) {
    if (i === 6 || i === 7) continue;
    assertEquals([...halves[i].payload], [
      ...encodeL16(frames[i >> 1].samples.subarray(80 * (i & 1), 80 * (i & 1) + 80)),
    ]);
  }

  const dec = await createStage<TransformStage>(l16Decoder, {}, ctx);
  assertEquals(dec.negotiate!({ kind: "encoded", codec: "L16", clockRate: 8000 }), {
    kind: "pcm",
    sampleRate: 8000,
    channels: 1,
  });
  const pcm = runTransform(dec, first8) as PcmFrame[];
  for (const k of [0, 1, 2, 4, 5, 6, 7]) assertEquals(pcm[k].samples, frames[k].samples, `frame ${k} sample-exact`);
  // The concealment registered with the codec: the last real frame at half level.
  assertEquals(pcm[3].type, "concealed");
  assertEquals(pcm[3].samples, frames[2].samples.map((v) => Math.round(v / 2)));
});

Deno.test("the clock rate comes from the codec: L16 registered at 16000 Hz runs at 16000 through the same stages", async () => {
  const l16Wide = defineCodec({ ...L16, clockRate: 16000 });
  const registry = new Registry(resamplePlugins, [], [l16Wide]);
  const ctx = testContext({ registry }).ctx;
  const enc = await createStage<TransformStage>(l16Encoder, {}, ctx);
  // The encoder takes the codec's rate; the registry's resampler is suggested for anything else.
  assertThrows(
    () => enc.negotiate!({ kind: "pcm", sampleRate: 8000, channels: 1 }),
    FormatError,
    'l16-encoder expects pcm 16000 Hz mono, but gets pcm 8000 Hz mono: insert {"use": "resampler", "rate": 16000, "channels": 1} before it',
  );
  const pz = await createStage<TransformStage>(rtpPacketizer, { payload_type: 98, initial_timestamp: 0 }, ctx);
  pz.negotiate!({ kind: "encoded", codec: "L16", clockRate: 16000 });
  const packets = runTransform(pz, runTransform(enc, pcmFrames(3, 16000, 320))) as RtpFrame[];
  assertEquals(packets.map((p) => [p.timestamp, p.payload.length]), [[0, 640], [320, 640], [640, 640]]);
  const dp = await createStage<TransformStage>(rtpDepacketizer, { codec: "L16", payload_type: 98 }, ctx);
  assertEquals(dp.negotiate!({ kind: "packet" }), { kind: "rtp", codec: "L16", clockRate: 16000 });
  const jb = await createStage<TransformStage>(jitterBuffer, {}, ctx);
  jb.negotiate!({ kind: "rtp", codec: "L16", clockRate: 16000 });
  for (const p of packets) jb.process({ ...p, arrival: 0 }, () => true);
  const drained: EncodedFrame[] = [];
  jb.flush!((f) => drained.push(f as EncodedFrame) > 0);
  assertEquals(drained.map((f) => [f.pts, f.payload.length, f.clockRate]), [[0, 640, 16000], [320, 640, 16000], [
    640,
    640,
    16000,
  ]]);
  assertEquals((jb.stats!() as { ptime: number }).ptime, 20, "640 bytes at 16000 Hz are 20 ms");
});

/** A test source of one encoded frame of `codec`. */
const encodedSource = definePlugin({
  name: "encoded-source",
  kind: "source",
  description: "one encoded frame",
  produces: { kind: "encoded" },
  options: z.object({ codec: z.string() }),
  create: ({ codec }) => ({
    negotiate: (): Format => ({ kind: "encoded", codec, clockRate: 8000 }),
    run: () => Promise.resolve(),
  }),
});

/** A sink that takes pcm only. */
const pcmSink = definePlugin({
  name: "pcm-sink",
  kind: "sink",
  description: "takes pcm",
  accepts: [{ kind: "pcm" }],
  options: z.object({}),
  create: () => ({ write: () => true }),
});

Deno.test("link errors name the stage a registered plugin offers to bridge the formats (core names none)", async () => {
  const registry = registryWithL16();
  registry.register(encodedSource);
  registry.register(pcmSink);
  const opts = { registry, clock: new VirtualClock() };
  const build = (codec: string) => buildPipeline("main", [{ use: "encoded-source", codec }, { use: "pcm-sink" }], opts);
  let e = await assertRejects(() => build("L16"), FormatError);
  assertMatch(
    e.message,
    /pcm-sink \(stage 1\) expects pcm any rate any channels, but encoded-source \(stage 0\) produces encoded L16 8000 Hz: insert \{"use": "l16-decoder"\} between them$/,
  );
  e = await assertRejects(() => build("PCMU"), FormatError);
  assertMatch(e.message, /produces encoded PCMU 8000 Hz: insert \{"use": "g711-decoder"\} between them$/);
  // A plugin loaded by path is suggested by the path it was loaded with.
  const bare = createRegistry();
  bare.register(encodedSource);
  bare.register(pcmSink);
  await bare.resolve("../examples/plugins/l16/l16_decoder.ts", TESTS_DIR);
  e = await assertRejects(
    () =>
      buildPipeline("main", [{ use: "encoded-source", codec: "L16" }, { use: "pcm-sink" }], {
        ...opts,
        registry: bare,
      }),
    FormatError,
  );
  assertMatch(e.message, /insert \{"use": "\.\.\/examples\/plugins\/l16\/l16_decoder\.ts"\} between them$/);
  // A stage's own check asks the same plugins: the packetizer fed pcm names the encoder to insert.
  const pz = await createStage<TransformStage>(rtpPacketizer, {}, testContext({ registry }).ctx);
  assertThrows(
    () => pz.negotiate!({ kind: "pcm", sampleRate: 8000, channels: 1 }),
    FormatError,
    'rtp-packetizer expects encoded, but gets pcm 8000 Hz mono: insert {"use": "g711-encoder"} before it',
  );
});

Deno.test("SDP: offers and answers a registered codec on a dynamic payload type, rtpmap from its registration", () => {
  const L8 = defineCodec({
    name: "L8",
    payloadType: "dynamic",
    clockRate: 8000,
    silence: (n) => new Uint8Array(n).fill(0x80),
    concealment: "none",
  });
  const codecs = new CodecRegistry([PCMU, PCMA, L16, L8]);
  const lines = (sdp: string) => sdp.trim().split("\r\n");
  const offer = createOffer({ registry: codecs, codecs: ["L16", "PCMU"], address: "10.0.0.1", port: 4000 });
  assert(lines(offer).includes("m=audio 4000 RTP/AVP 96 0"), offer);
  assert(lines(offer).includes("a=rtpmap:96 L16/8000"), offer);
  assert(lines(offer).includes("a=rtpmap:0 PCMU/8000"), offer);
  // By default every registered codec, static types kept, dynamic ones numbered from 96.
  const all = createOffer({ registry: codecs, address: "10.0.0.1", port: 4000 });
  assert(lines(all).includes("m=audio 4000 RTP/AVP 0 8 96 97"), all);
  assert(lines(all).includes("a=rtpmap:97 L8/8000"), all);
  assertThrows(() => createOffer({ registry: codecs, codecs: ["G729"], address: "10.0.0.1", port: 1 }), Error, "G729");

  // A callee that takes L16 only answers on the offer's payload type.
  const answer = createAnswer(offer, { registry: codecs, codecs: ["L16"], address: "10.0.0.2", port: 5000 });
  assert(lines(answer).includes("m=audio 5000 RTP/AVP 96"), answer);
  assert(lines(answer).includes("a=rtpmap:96 L16/8000"), answer);
  const n = negotiated(answer, { registry: codecs });
  assertEquals([n.codec, n.payloadType, n.clockRate, n.channels], ["L16", 96, 8000, 1]);
  const caller = agreedMedia(answer, offer, { registry: codecs });
  assertEquals([caller.codec, caller.payloadType, caller.remotePort], ["L16", 96, 5000]);

  // A peer's offer: its own dynamic numbers, a name in any case; L16 at another rate is another codec.
  const foreign = [
    "v=0",
    "o=- 1 1 IN IP4 10.0.0.3",
    "s=-",
    "c=IN IP4 10.0.0.3",
    "t=0 0",
    "m=audio 6000 RTP/AVP 113 112",
    "a=rtpmap:113 L16/16000",
    "a=rtpmap:112 l16/8000",
    "",
  ].join("\r\n");
  const a2 = createAnswer(foreign, { registry: codecs, address: "10.0.0.2", port: 5002 });
  assert(lines(a2).includes("m=audio 5002 RTP/AVP 112"), a2);
  assert(lines(a2).includes("a=rtpmap:112 L16/8000"), a2);
  assertEquals(negotiated(foreign, { registry: codecs }).payloadType, 112);
  const none = assertThrows(
    () => createAnswer(foreign, { registry: codecs, codecs: ["PCMU"], address: "10.0.0.2", port: 5002 }),
    NoCommonCodecError,
  );
  assertEquals(none.offered, ["L16", "l16"]);
  assertEquals(none.supported, ["PCMU"]);
});

Deno.test("sip control: the codecs option is checked against the registry and the error lists the known codecs", async () => {
  const ctx = (codecs: CodecRegistry): ControlContext => ({
    net: new MemoryNetwork({ clock: new VirtualClock() }),
    log: silentLogger,
    clock: new VirtualClock(),
    signal: new AbortController().signal,
    file: "test.json",
    baseDir: ".",
    params: {},
    templates: [],
    codecs,
    buildPipeline: () => Promise.reject(new Error("not in this test")),
  });
  const options = (codecs?: string) => sipControl.options.parse({ role: "callee", ...(codecs ? { codecs } : {}) });
  const builtin = createRegistry().codecs;
  await assertRejects(
    async () => await sipControl.create(options("PCMU,G729"), ctx(builtin)),
    Error,
    'control.codecs: unknown codec "G729"; known codecs: PCMU, PCMA',
  );
  await assertRejects(async () => await sipControl.create(options("L16"), ctx(builtin)), Error, "unknown codec");
  // Registered, it is accepted (in any case); the default takes every registered codec.
  await sipControl.create(options("l16,pcmu"), ctx(registryWithL16().codecs));
  await sipControl.create(options(), ctx(builtin));
  assertThrows(() => options("PCMU;PCMA"), Error, "codec names separated by commas");
});

/**
 * Asserts that `rec` holds every frame of `ref` (160 samples; the last may be shorter), sample-exact and in order,
 * from its first sample on; the only other frames allowed are those the jitter buffer inserted to grow its delay
 * (a stall of the process under load), which the L16 decoder conceals as the last real frame at half level, a
 * quarter for the next, and so on. Returns how many were inserted.
 */
function assertFramesInOrder(ref: Int16Array, rec: Int16Array): number {
  const F = 160;
  let r = 0, i = 0, inserted = 0, run = 0;
  let last: Int16Array = new Int16Array(F);
  const same = (a: Int16Array, b: ArrayLike<number>) => a.length === b.length && a.every((v, k) => v === b[k]);
  while (r < ref.length) {
    const want = ref.subarray(r, Math.min(r + F, ref.length));
    const got = rec.subarray(i, i + want.length);
    if (same(got, want)) {
      last = want;
      r += want.length;
      i += want.length;
      run = 0;
      continue;
    }
    const gain = 0.5 ** (run + 1);
    const frame = rec.subarray(i, i + F);
    if (frame.length === F && same(frame, Array.from(last, (v) => Math.round(v * gain)))) {
      inserted++;
      run++;
      i += F;
      continue;
    }
    throw new Error(`recording differs from the reference at reference sample ${r} (recording sample ${i})`);
  }
  assert(rec.subarray(i).every((v) => v === 0), "only silence after the reference");
  return inserted;
}

Deno.test("call: caller → callee with the example L16 codec loaded by path; the recording equals the source", async () => {
  const dir = await Deno.makeTempDir();
  try {
    // Our shipped call pipelines with the G.711 stages swapped for the example codec's, loaded by path.
    const swap = (name: string) => {
      const file = JSON.parse(Deno.readTextFileSync(repoPath(`pipelines/${name}.json`)));
      delete file.$schema;
      for (const chain of Object.values(file.pipelines) as { use: string; codec?: string }[][]) {
        for (const stage of chain) {
          if (stage.use === "g711-encoder" || stage.use === "g711-decoder") {
            stage.use = repoPath(`examples/plugins/l16/${stage.use.replace("g711", "l16").replace("-", "_")}.ts`);
            delete stage.codec;
          }
          // A playout delay that absorbs stalls of a loaded machine (the recording is drained at the end).
          if (stage.use === "jitter-buffer") {
            Object.assign(stage, { min_delay: 1000, initial_delay: 1000, max_delay: 5000 });
          }
        }
      }
      const path = `${dir}/${name}.json`;
      Deno.writeTextFileSync(path, JSON.stringify(file));
      return path;
    };
    const callerFile = swap("caller");
    const calleeFile = swap("callee");
    // The reference: the source at 8000 Hz mono, through the same resampler (L16 itself is lossless).
    Deno.writeTextFileSync(
      `${dir}/ref.json`,
      JSON.stringify({
        pipelines: {
          main: [
            { use: "file-source", path: repoPath("examples/audio/hello.wav") },
            { use: "resampler", rate: 8000, channels: 1 },
            { use: "wav-sink", path: `${dir}/ref.wav` },
          ],
        },
      }),
    );
    const ref = spawnCli(["--pipeline", `${dir}/ref.json`], { timeoutMs: 30_000 });
    assertEquals((await ref.result).code, 0);
    const port = freeUdpPort();
    const callee = spawnCli([
      "--pipeline",
      calleeFile,
      "--set",
      `port=${port}`,
      "--set",
      "calls=1",
      "--set",
      `record=${dir}/call.wav`,
      "--set",
      "codecs=L16",
    ], { timeoutMs: 40_000 });
    await callee.waitForOutput(/\[SIP\] listening on udp 127\.0\.0\.1:\d+/, 20_000);
    const caller = spawnCli([
      "--pipeline",
      callerFile,
      "--set",
      `to=sip:bob@127.0.0.1:${port}`,
      "--set",
      `file=${repoPath("examples/audio/hello.wav")}`,
      "--set",
      "codecs=PCMA,L16",
    ], { timeoutMs: 40_000 });
    const [cr, ce] = await Promise.all([caller.result, callee.result]);
    assertEquals(cr.code, 0, `caller: ${cr.stderr.slice(-2000)}`);
    assertEquals(ce.code, 0, `callee: ${ce.stderr.slice(-2000)}`);
    // The callee took L16 from the offer (PCMA first, L16 on dynamic type 96).
    assertMatch(ce.stderr, /media: L16 \(PT 96, ptime 20 ms\)/);
    assertMatch(cr.stderr, /media: L16 \(PT 96, ptime 20 ms\)/);
    assertMatch(ce.stderr, /call summary: .* lost=0 \(0%\)/);
    const expected = await readWav(`${dir}/ref.wav`);
    const got = await readWav(`${dir}/call.wav`);
    assertEquals(got.sampleRate, 8000);
    const inserted = assertFramesInOrder(expected.samples, got.samples);
    // The recording follows the sender's timeline (the jitter buffer records, as the chain ends in a file):
    // nothing inserted, whatever the load.
    assertMatch(ce.stderr, /\[JITTER-BUFFER\] mode record/);
    assertEquals(inserted, 0, "frames inserted into the recording");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
