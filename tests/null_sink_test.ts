/**
 * Tests of `null-sink`: accepts every kind, never pushes back, counts.
 */
import { deepEqual, equal, ok } from "node:assert/strict";
import { z } from "zod";
import type { Frame } from "../core/frame.ts";
import type { SinkStage } from "../core/stage.ts";
import { createStage } from "../core/testing.ts";
import { plugins } from "../plugins/null/mod.ts";
import nullSink from "../plugins/null/null_sink.ts";

Deno.test("null-sink: is registered in plugins/null/mod.ts, accepts every frame kind, has an (empty) schema", () => {
  ok(plugins.includes(nullSink));
  deepEqual(nullSink.accepts?.map((f) => f.kind).sort(), ["encoded", "packet", "pcm", "rtp"]);
  deepEqual(z.toJSONSchema(nullSink.options).type, "object");
  deepEqual(nullSink.options.parse({}), {});
});

Deno.test("null-sink: discards frames of any kind and counts frames, samples and bytes", async () => {
  const sink = await createStage<SinkStage>(nullSink);
  equal(sink.negotiate?.({ kind: "rtp" }), undefined);
  const frames: Frame[] = [
    { kind: "pcm", samples: new Int16Array(320), sampleRate: 8000, channels: 2, pts: 0 },
    { kind: "pcm", samples: new Int16Array(160), sampleRate: 8000, channels: 1, pts: 160, type: "concealed" },
    { kind: "encoded", codec: "PCMU", clockRate: 8000, payload: new Uint8Array(160), pts: 0 },
    {
      kind: "rtp",
      payloadType: 0,
      sequence: 1,
      timestamp: 0,
      ssrc: 1,
      marker: false,
      payload: new Uint8Array(160),
    },
    { kind: "packet", data: new Uint8Array(172) },
  ];
  for (const f of frames) equal(sink.write(f), true);
  await sink.end?.();
  deepEqual(sink.stats!(), {
    frames: 5,
    frames_by_kind: { pcm: 2, encoded: 1, rtp: 1, packet: 1 },
    samples: 160 + 160 + 160,
    bytes: 640 + 320 + 160 + 160 + 172,
    duration_s: 0.04,
  });
});
