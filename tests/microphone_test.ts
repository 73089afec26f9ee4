/**
 * `microphone` for real: PortAudio through naudiodon, capturing from an ALSA
 * `file` device whose input is a known raw file, in a subprocess with
 * ALSA_CONFIG_PATH. The captured frames must equal the file, sample for sample.
 *
 * Fails when the naudiodon binding is not built ("deno task setup"); set
 * VOXPIPE_SKIP_AUDIO=1 to skip.
 */
import { join } from "node:path";
import { assert, assertEquals } from "./assert.ts";
import { alsaSandbox, expectOk, runHelper, skipAudio, warnSkip } from "./fixtures/alsa/run.ts";
import { firstDifference, noise, readRaw } from "./fixtures/alsa/signal.ts";

warnSkip();

type Stats = Record<string, number | string>;

Deno.test({
  name: "microphone: captures a known raw file sample for sample, 20 ms frames, pts from the sample count",
  ignore: skipAudio,
  async fn() {
    const input = noise(16000, 42); // 1 s at 16 kHz mono
    const sb = await alsaSandbox(input);
    try {
      const out = join(sb.dir, "captured.raw");
      const res = expectOk(await runHelper(sb, "capture", { rate: 16000, channels: 1, seconds: 0.8, out }));
      assertEquals(res.format, { kind: "pcm", sampleRate: 16000, channels: 1 });
      const got = readRaw(out);
      assertEquals(got.length, 12800);
      // The ALSA file device delivers the file from its first sample: no offset.
      assertEquals(firstDifference(got, input), -1);
      assertEquals(res.frames, 40);
      assertEquals(res.sizes, [320]);
      assertEquals(res.pts, [0, 320, 640, 960, 1280]);
      assertEquals(res.ptsOk, true);
      assertEquals(res.types, ["normal"]);
      const stats = res.stats as Stats;
      assertEquals(stats.overruns, 0);
      assertEquals(stats.lost_frames, 0);
      assertEquals(stats.captured_ms, 800);
    } finally {
      await sb.cleanup();
    }
  },
});

Deno.test({
  name: "microphone: stereo 48 kHz with 10 ms frames keeps the interleaving",
  ignore: skipAudio,
  async fn() {
    const input = noise(48000 * 2 / 2, 7); // 0.5 s stereo
    const sb = await alsaSandbox(input);
    try {
      const out = join(sb.dir, "captured.raw");
      const res = expectOk(
        await runHelper(sb, "capture", { rate: 48000, channels: 2, frame_ms: 10, seconds: 0.4, out }),
      );
      const got = readRaw(out);
      assertEquals(got.length, 48000 * 0.4 * 2);
      assertEquals(firstDifference(got, input), -1);
      assertEquals(res.sizes, [960]);
      assertEquals(res.pts, [0, 480, 960, 1440, 1920]);
    } finally {
      await sb.cleanup();
    }
  },
});

Deno.test({
  name: "microphone: stops promptly when the pipeline stops",
  ignore: skipAudio,
  async fn() {
    const sb = await alsaSandbox(noise(8000, 3));
    try {
      // A silent speaker on the same device makes the stream duplex, which paces capture at real
      // time (the file device alone has no clock): a 60 s capture, stopped after 300 ms.
      const res = expectOk(await runHelper(sb, "capture", { rate: 8000, seconds: 60, paced: true, abort_at_ms: 300 }));
      const stats = res.stats as Stats;
      assertEquals(stats.stream, "duplex");
      const captured = stats.captured_ms as number;
      // Some audio came, and the stop ended the 60 s capture (how much came before it depends on the load).
      assert(captured > 0 && captured < 30_000, `captured ${captured} ms in ${res.elapsed} ms`);
      assert((res.elapsed as number) >= (res.aborted as number), "run() returned after the stop");
    } finally {
      await sb.cleanup();
    }
  },
});

Deno.test({
  name: "microphone: an unknown device names the input devices; part of a name selects one",
  ignore: skipAudio,
  async fn() {
    const sb = await alsaSandbox();
    try {
      const r = await runHelper(sb, "create", { stage: "microphone", options: { device: "nope" } });
      const msg = String(r.result.error);
      assert(msg.includes('no audio input device matches "nope"') && msg.includes('"vp_capture"'), msg);
      const r2 = await runHelper(sb, "create", { stage: "microphone", options: { device: "VP_CAP", channels: 2 } });
      assertEquals(expectOk(r2).created, true);
    } finally {
      await sb.cleanup();
    }
  },
});
