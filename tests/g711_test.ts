/**
 * Tests of the G.711 tables and of the `g711-encoder` / `g711-decoder` stages.
 *
 * @module
 */
import assert from "node:assert/strict";
import alawmulaw from "alawmulaw";
import { z } from "zod";
import type { EncodedFrame, PcmFrame } from "../core/frame.ts";
import type { G711Codec } from "../plugins/g711/codecs.ts";
import { FormatError, type TransformStage } from "../core/stage.ts";
import { runTransform } from "../core/testing.ts";
import { createStage } from "./registry_util.ts";
import g711Decoder from "../plugins/g711/g711_decoder.ts";
import g711Encoder from "../plugins/g711/g711_encoder.ts";
import { plugins } from "../plugins/g711/mod.ts";
import {
  ALAW_DECODE,
  ALAW_ENCODE,
  decode,
  DECODE_TABLES,
  encode,
  ENCODE_TABLES,
  MULAW_DECODE,
  MULAW_ENCODE,
  SILENCE_CODE,
} from "../plugins/g711/tables.ts";

const LAWS = { PCMU: alawmulaw.mulaw, PCMA: alawmulaw.alaw } as const;
const CODECS: G711Codec[] = ["PCMU", "PCMA"];

function pcm(samples: Int16Array, pts = 0, extra: Partial<PcmFrame> = {}): PcmFrame {
  return { kind: "pcm", samples, sampleRate: 8000, channels: 1, pts, ...extra };
}

function enc(codec: G711Codec, payload: Uint8Array, pts = 0, type?: EncodedFrame["type"]): EncodedFrame {
  const f: EncodedFrame = { kind: "encoded", codec, clockRate: 8000, payload, pts };
  if (type) f.type = type;
  return f;
}

/** Every 16-bit value once, in order -32768..32767. */
function allSamples(): Int16Array {
  const s = new Int16Array(65536);
  for (let i = 0; i < 65536; i++) s[i] = i - 32768;
  return s;
}

for (const codec of CODECS) {
  Deno.test(`${codec} decode table equals alawmulaw decodeSample for all 256 codes`, () => {
    const table = DECODE_TABLES[codec];
    assert.equal(table.length, 256);
    // `| 0`: alawmulaw returns -0 for the negative zero code; an Int16Array holds 0.
    for (let c = 0; c < 256; c++) assert.equal(table[c], LAWS[codec].decodeSample(c) | 0, `code ${c}`);
  });

  Deno.test(`${codec} encode table equals alawmulaw encodeSample & 0xFF for all 65 536 inputs`, () => {
    const table = ENCODE_TABLES[codec];
    assert.equal(table.length, 65536);
    let bad = 0;
    for (let s = -32768; s < 32768; s++) if (table[s & 0xffff] !== (LAWS[codec].encodeSample(s) & 0xff)) bad++;
    assert.equal(bad, 0);
  });

  Deno.test(`${codec} encode()/decode() use the tables and round-trip G.711-representable audio exactly`, () => {
    const all = allSamples();
    const bytes = encode(codec, all);
    for (let i = 0; i < all.length; i++) assert.equal(bytes[i], ENCODE_TABLES[codec][all[i] & 0xffff]);
    const codes = new Uint8Array(256).map((_, i) => i);
    const decoded = decode(codec, codes);
    // Decoded values are representable: encoding them and decoding again gives the same samples.
    assert.deepEqual(decode(codec, encode(codec, decoded)), decoded);
    // Writing into a caller's buffer returns it.
    const out = new Int16Array(256);
    assert.equal(decode(codec, codes, out), out);
  });

  Deno.test(`${codec} silence code is the code of 0 and decodes to the smallest level`, () => {
    assert.equal(ENCODE_TABLES[codec][0], SILENCE_CODE[codec]);
    // μ-law has an exact zero; A-law's smallest step is ±8.
    assert.equal(DECODE_TABLES[codec][SILENCE_CODE[codec]], codec === "PCMU" ? 0 : 8);
  });

  Deno.test(`g711-encoder ${codec}: exact bytes, pts, codec, clock rate and type carried`, async () => {
    const stage = await createStage<TransformStage>(g711Encoder, { codec });
    assert.deepEqual(stage.negotiate!({ kind: "pcm", sampleRate: 8000, channels: 1 }), {
      kind: "encoded",
      codec,
      clockRate: 8000,
    });
    const all = allSamples();
    const frames: PcmFrame[] = [];
    for (let i = 0; i < all.length; i += 160) frames.push(pcm(all.slice(i, i + 160), i));
    frames[3].type = "silence";
    const out = runTransform(stage, frames) as EncodedFrame[];
    assert.equal(out.length, frames.length);
    const table = ENCODE_TABLES[codec];
    for (let k = 0; k < out.length; k++) {
      const f = out[k];
      assert.equal(f.kind, "encoded");
      assert.equal(f.codec, codec);
      assert.equal(f.clockRate, 8000);
      assert.equal(f.pts, k * 160);
      assert.equal(f.type, k === 3 ? "silence" : undefined);
      const s = frames[k].samples;
      assert.equal(f.payload.length, s.length);
      for (let i = 0; i < s.length; i++) assert.equal(f.payload[i], LAWS[codec].encodeSample(s[i]) & 0xff);
      assert.equal(f.payload[0], table[s[0] & 0xffff]);
    }
    assert.deepEqual(stage.stats!(), { frames: out.length, samples: 65536 });
  });

  Deno.test(`g711-decoder ${codec}: exact samples for every code, pts and type carried`, async () => {
    const stage = await createStage<TransformStage>(g711Decoder, { plc: false });
    assert.deepEqual(stage.negotiate!({ kind: "encoded", codec, clockRate: 8000 }), {
      kind: "pcm",
      sampleRate: 8000,
      channels: 1,
    });
    const codes = new Uint8Array(256).map((_, i) => i);
    const out = runTransform(stage, [enc(codec, codes, 800), enc(codec, codes.slice(0, 80), 1056, "normal")]);
    assert.equal(out.length, 2);
    const [a, b] = out as PcmFrame[];
    assert.equal(a.kind, "pcm");
    assert.equal(a.sampleRate, 8000);
    assert.equal(a.channels, 1);
    assert.equal(a.pts, 800);
    assert.equal(a.type, undefined);
    assert.equal(b.type, "normal");
    assert.equal(b.pts, 1056);
    for (let c = 0; c < 256; c++) assert.equal(a.samples[c], LAWS[codec].decodeSample(c) | 0);
    assert.deepEqual(b.samples, a.samples.slice(0, 80));
  });

  Deno.test(`${codec} encoder → decoder through the stages equals alawmulaw's encode + decode`, async () => {
    const encoder = await createStage<TransformStage>(g711Encoder, { codec });
    const decoder = await createStage<TransformStage>(g711Decoder, {});
    const x = new Int16Array(1600);
    for (let i = 0; i < x.length; i++) x[i] = Math.round(12000 * Math.sin(i * 0.07) + 3000 * Math.sin(i * 1.3));
    const frames: PcmFrame[] = [];
    for (let i = 0; i < x.length; i += 160) frames.push(pcm(x.slice(i, i + 160), i));
    const decoded = runTransform(decoder, runTransform(encoder, frames)) as PcmFrame[];
    const y = new Int16Array(x.length);
    decoded.forEach((f) => y.set(f.samples, f.pts));
    assert.deepEqual(y, LAWS[codec].decode(LAWS[codec].encode(x)));
  });
}

Deno.test("table exports name the same arrays", () => {
  assert.equal(ENCODE_TABLES.PCMU, MULAW_ENCODE);
  assert.equal(ENCODE_TABLES.PCMA, ALAW_ENCODE);
  assert.equal(DECODE_TABLES.PCMU, MULAW_DECODE);
  assert.equal(DECODE_TABLES.PCMA, ALAW_DECODE);
  assert.deepEqual(SILENCE_CODE, { PCMU: 0xff, PCMA: 0xd5 });
});

Deno.test("g711-encoder refuses pcm at another rate or channel count, saying what to insert", async () => {
  const stage = await createStage<TransformStage>(g711Encoder, {});
  const refuse = (input: Parameters<NonNullable<TransformStage["negotiate"]>>[0]) => {
    try {
      stage.negotiate!(input);
    } catch (e) {
      assert.ok(e instanceof FormatError, `expected FormatError, got ${e}`);
      return e.message;
    }
    assert.fail("negotiate accepted " + JSON.stringify(input));
  };
  assert.equal(
    refuse({ kind: "pcm", sampleRate: 16000, channels: 1 }),
    'g711-encoder expects pcm 8000 Hz mono, but gets pcm 16000 Hz mono: insert {"use": "resampler", "rate": 8000, "channels": 1} before it',
  );
  assert.equal(
    refuse({ kind: "pcm", sampleRate: 8000, channels: 2 }),
    'g711-encoder expects pcm 8000 Hz mono, but gets pcm 8000 Hz stereo: insert {"use": "resampler", "rate": 8000, "channels": 1} before it',
  );
  assert.match(
    refuse({ kind: "encoded", codec: "PCMA", clockRate: 8000 })!,
    /gets encoded PCMA 8000 Hz: .*g711-decoder/,
  );
  assert.match(refuse(undefined)!, /cannot be a source/);
  // Unknown rate/channels are accepted (checked per frame).
  assert.deepEqual(stage.negotiate!({ kind: "pcm" }), { kind: "encoded", codec: "PCMU", clockRate: 8000 });
  // A frame that breaks the contract at run time fails loudly instead of being mis-encoded.
  assert.throws(
    () => stage.process(pcm(new Int16Array(320), 0, { sampleRate: 16000 }), () => true),
    /gets pcm 16000 Hz mono: insert \{"use": "resampler"/,
  );
});

Deno.test("g711-decoder refuses what it cannot decode, saying what to change", async () => {
  const stage = await createStage<TransformStage>(g711Decoder, {});
  const refuse = (input: Parameters<NonNullable<TransformStage["negotiate"]>>[0]) => {
    try {
      stage.negotiate!(input);
    } catch (e) {
      assert.ok(e instanceof FormatError, `expected FormatError, got ${e}`);
      return e.message;
    }
    assert.fail("negotiate accepted " + JSON.stringify(input));
  };
  assert.equal(
    refuse({ kind: "encoded", clockRate: 8000 }),
    'g711-decoder cannot tell the codec: upstream produces encoded 8000 Hz without one; set "codec": "PCMU" or "codec": "PCMA" in its options',
  );
  assert.match(refuse({ kind: "encoded", codec: "PCMU", clockRate: 16000 })!, /G\.711 runs at 8000 Hz/);
  assert.match(refuse({ kind: "pcm", sampleRate: 8000, channels: 1 })!, /already decoded; remove the decoder/);
  assert.match(refuse({ kind: "rtp", codec: "PCMU" })!, /insert \{"use": "jitter-buffer"\} before it/);
  // With the option set, an upstream that does not name the codec is fine.
  const withCodec = await createStage<TransformStage>(g711Decoder, { codec: "PCMA" });
  assert.deepEqual(withCodec.negotiate!({ kind: "encoded" }), { kind: "pcm", sampleRate: 8000, channels: 1 });
});

Deno.test("g711-decoder codec option overrides the codec the frames say", async () => {
  const stage = await createStage<TransformStage>(g711Decoder, { codec: "PCMA", plc: false });
  const codes = new Uint8Array([0x00, 0x55, 0xd5, 0xff]);
  const [f] = runTransform(stage, [enc("PCMU", codes)]) as PcmFrame[];
  assert.deepEqual(f.samples, Int16Array.from(codes, (c) => alawmulaw.alaw.decodeSample(c)));
});

Deno.test("g711-decoder: silence → zeros, concealed without plc → zeros of the payload's length; stats", async () => {
  const stage = await createStage<TransformStage>(g711Decoder, { plc: false });
  const out = runTransform(stage, [
    enc("PCMU", new Uint8Array(160).fill(0x10), 0),
    enc("PCMU", new Uint8Array(160), 160, "silence"),
    enc("PCMU", new Uint8Array(80), 320, "concealed"),
    enc("PCMU", new Uint8Array(0), 400, "concealed"),
  ]) as PcmFrame[];
  assert.deepEqual(out.map((f) => [f.pts, f.samples.length, f.type]), [
    [0, 160, undefined],
    [160, 160, "silence"],
    [320, 80, "concealed"],
    // An empty concealment request stands for one frame as long as the last real one.
    [400, 160, "concealed"],
  ]);
  assert.ok(out[0].samples.every((v) => v === alawmulaw.mulaw.decodeSample(0x10)));
  for (const f of out.slice(1)) assert.ok(f.samples.every((v) => v === 0));
  assert.deepEqual(stage.stats!(), { frames: 4, decoded: 1, concealed: 2, concealed_samples: 240, silence: 1 });
});

Deno.test("g711 plugins are registered and their options make a JSON Schema with descriptions and defaults", () => {
  assert.deepEqual(plugins.map((p) => p.name), ["g711-encoder", "g711-decoder"]);
  const enc = z.toJSONSchema(g711Encoder.options, { io: "input" }) as {
    properties: Record<string, { default?: unknown; description?: string; enum?: string[] }>;
  };
  assert.deepEqual(enc.properties.codec.enum, ["PCMU", "PCMA"]);
  assert.equal(enc.properties.codec.default, "PCMU");
  assert.match(enc.properties.codec.description!, /Default "PCMU"/);
  const dec = z.toJSONSchema(g711Decoder.options, { io: "input" }) as typeof enc;
  assert.equal(dec.properties.plc.default, true);
  assert.ok(dec.properties.codec.description);
  assert.throws(() => g711Encoder.options.parse({ codec: "G722" }));
});

Deno.test("g711-decoder: a frame carrying its decoded samples plays them (concealment included); plc false silences it", async () => {
  const decoded = Int16Array.from({ length: 160 }, (_, i) => (i * 37) % 1000 - 500);
  const frame = (type: "normal" | "concealed"): EncodedFrame => ({
    kind: "encoded",
    codec: "PCMU",
    clockRate: 8000,
    payload: new Uint8Array(160).fill(0xff),
    pts: 0,
    type,
    decoded,
  });
  const dec = await createStage<TransformStage>(g711Decoder, {});
  dec.negotiate!({ kind: "encoded", codec: "PCMU", clockRate: 8000 });
  const [n, c] = runTransform(dec, [frame("normal"), frame("concealed")]) as PcmFrame[];
  assert.deepEqual([...n.samples], [...decoded], "the decoded samples, not the payload's silence");
  assert.deepEqual([...c.samples], [...decoded], "the upstream concealment, not the decoder's");
  assert.equal(c.type, "concealed");
  const s = dec.stats!() as Record<string, number>;
  assert.deepEqual([s.decoded, s.concealed, s.concealed_samples], [1, 1, 160]);
  const quiet = await createStage<TransformStage>(g711Decoder, { plc: false });
  quiet.negotiate!({ kind: "encoded", codec: "PCMU", clockRate: 8000 });
  const [q] = runTransform(quiet, [frame("concealed")]) as PcmFrame[];
  assert.ok(q.samples.every((v) => v === 0));
});
