/**
 * G.711 benchmarks: encode/decode throughput per codec (the C loops and the JavaScript table loop), the encoder and
 * decoder stages per 20 ms frame, and packet loss concealment per 20 ms frame.
 *
 * Run with `deno bench -A bench/g711_bench.ts`. Bench names say the work per iteration:
 * for the "1M samples/iter" benches, samples/s = 1e15 ÷ (ns/iter).
 *
 * @module
 */
import type { EncodedFrame, PcmFrame } from "../core/frame.ts";
import type { G711Codec } from "../plugins/g711/codecs.ts";
import type { TransformStage } from "../core/stage.ts";
import { createStage, testContext } from "../core/testing.ts";
import { createRegistry } from "../mod.ts";
import g711Decoder from "../plugins/g711/g711_decoder.ts";
import g711Encoder from "../plugins/g711/g711_encoder.ts";
import { PacketLossConcealer } from "../plugins/g711/plc.ts";
import { decode, encode } from "../plugins/g711/tables.ts";

const N = 1_000_000;
const samples = new Int16Array(N);
for (let i = 0; i < N; i++) samples[i] = Math.round(12000 * Math.sin(i * 0.05) + 4000 * Math.sin(i * 1.7));
const bytes = new Uint8Array(N);
const pcmOut = new Int16Array(N);
const noop = () => true;

/** Stages get the built-in codecs, as in a pipeline built with createRegistry(). */
const ctx = testContext({ registry: createRegistry() }).ctx;

for (const codec of ["PCMU", "PCMA"] as G711Codec[]) {
  const payload = encode(codec, samples);

  // One call of 1M samples goes to the C loops (native/g711.c) where they load; calls of 1 000 (below
  // NATIVE_MIN_SAMPLES) stay in the JavaScript table loop.
  Deno.bench(`${codec} encode, 1M samples/iter in one call (C)`, { group: "table", baseline: codec === "PCMU" }, () => {
    encode(codec, samples, bytes);
  });

  Deno.bench(`${codec} encode, 1M samples/iter in calls of 1 000 (JavaScript table)`, { group: "table" }, () => {
    for (let i = 0; i < N; i += 1000) encode(codec, samples.subarray(i, i + 1000), bytes.subarray(i, i + 1000));
  });

  Deno.bench(`${codec} decode, 1M samples/iter in one call (C)`, { group: "table" }, () => {
    decode(codec, payload, pcmOut);
  });

  Deno.bench(`${codec} decode, 1M samples/iter in calls of 1 000 (JavaScript table)`, { group: "table" }, () => {
    for (let i = 0; i < N; i += 1000) decode(codec, payload.subarray(i, i + 1000), pcmOut.subarray(i, i + 1000));
  });

  const encoder = await createStage<TransformStage>(g711Encoder, { codec }, ctx);
  const frame: PcmFrame = { kind: "pcm", samples: samples.subarray(0, 160), sampleRate: 8000, channels: 1, pts: 0 };
  Deno.bench(`g711-encoder stage ${codec}, 1 frame of 160 samples/iter`, { group: "stage" }, () => {
    encoder.process(frame, noop);
  });

  const decoder = await createStage<TransformStage>(g711Decoder, { plc: true }, ctx);
  const enc: EncodedFrame = { kind: "encoded", codec, clockRate: 8000, payload: payload.subarray(0, 160), pts: 0 };
  Deno.bench(`g711-decoder stage ${codec} (plc on), 1 frame of 160 samples/iter`, { group: "stage" }, () => {
    decoder.process(enc, noop);
  });
}

const plc = new PacketLossConcealer();
const real = decode("PCMU", encode("PCMU", samples.subarray(0, 160)));
Deno.bench("PLC: 1 real frame + 1 concealed frame of 160 samples/iter", { group: "plc" }, () => {
  plc.receive(real.slice());
  plc.conceal(160);
});
