/**
 * `speaker` for real: PortAudio through naudiodon, on an ALSA `file` device
 * (tests/fixtures/alsa/asound.conf.in), in a subprocess with ALSA_CONFIG_PATH.
 * What was played is read back from the raw file and checked sample by sample,
 * and for level, frequency and duration.
 *
 * Fails when the naudiodon binding is not built ("deno task setup"); set
 * VOXPIPE_SKIP_AUDIO=1 to skip.
 */
import { assert, assertEquals } from "./assert.ts";
import { alsaSandbox, expectOk, runHelper, skipAudio, warnSkip } from "./fixtures/alsa/run.ts";
import { firstDifference, frequency, readRaw, rmsDbfs, stripSilence, tone } from "./fixtures/alsa/signal.ts";

warnSkip();

/** Silence runs at least this long (frames) are inserted silence (the test tones never hold 0). */
const MIN_GAP = 40;

type Stats = Record<string, number | string>;

Deno.test({
  name: "speaker: a 1 kHz tone at -6 dBFS for 1 s lands in the ALSA file device, sample for sample",
  ignore: skipAudio,
  async fn() {
    const sb = await alsaSandbox();
    try {
      // latency_ms 200: the content checks must not depend on how loaded the machine is.
      const r = await runHelper(sb, "play", {
        rate: 8000,
        channels: 1,
        seconds: 1,
        freq: 1000,
        dbfs: -6,
        latency_ms: 200,
      });
      const res = expectOk(r);
      // The binding's printf chatter goes to stderr: stdout holds only our JSON line.
      assertEquals(r.stdout.trim().split("\n").length, 1, `stdout: ${r.stdout}`);
      const stats = res.stats as Stats;
      const got = readRaw(sb.play);
      const { audio, gaps } = stripSilence(got, 1, MIN_GAP);
      const want = tone(8000, 1, 1, 1000, -6);
      assertEquals(audio.length, want.length, `gaps ${JSON.stringify(gaps)}`);
      assertEquals(firstDifference(audio, want), -1);
      // Level, frequency and duration measured on the file itself.
      const level = rmsDbfs(audio, 1);
      assert(Math.abs(level - (-6 - 3.0103)) < 0.05, `level ${level} dBFS`);
      const f = frequency(audio, 1, 8000);
      assert(Math.abs(f - 1000) < 0.5, `frequency ${f}`);
      assertEquals(audio.length / 8000, 1);
      // Only leading (device priming) and trailing (last buffer) silence, nothing in between.
      assert(gaps.every((g) => g.at === 0 || g.at === audio.length), JSON.stringify(gaps));
      assertEquals(stats.underruns, 0);
      assertEquals(stats.played_ms, 1000);
      assertEquals(stats.state, "ended");
      // Played at real time: backpressure held the writer back for the tone's length less the 200 ms queue
      // (a lower bound only: a loaded machine takes longer).
      const marks = res.marks as Record<string, number>;
      assert(marks.ended >= 800, `took ${marks.ended} ms`);
      assert((res.falses as number) > 10, "write() pushed back");
    } finally {
      await sb.cleanup();
    }
  },
});

Deno.test({
  name: "speaker: stereo 48 kHz keeps channel order and opens the device at the incoming format",
  ignore: skipAudio,
  async fn() {
    const sb = await alsaSandbox();
    try {
      const res = expectOk(
        await runHelper(sb, "play", { rate: 48000, channels: 2, seconds: 0.3, device: "default", latency_ms: 200 }),
      );
      const got = readRaw(sb.play);
      const { audio } = stripSilence(got, 2, MIN_GAP);
      const want = tone(48000, 2, 0.3, 1000, -6);
      assertEquals(audio.length, want.length);
      assertEquals(firstDifference(audio, want), -1);
      // Channel 1 is 6 dB below channel 0 (as generated): the order survived.
      const l0 = rmsDbfs(audio, 2, 0), l1 = rmsDbfs(audio, 2, 1);
      assert(Math.abs(l0 - l1 - 6) < 0.05, `${l0} vs ${l1}`);
      const stats = res.stats as Stats;
      assertEquals(stats.rate, 48000);
      assertEquals(stats.channels, 2);
    } finally {
      await sb.cleanup();
    }
  },
});

Deno.test({
  name: "speaker: a stalled source is counted as one underrun, filled with silence, then playback resumes",
  ignore: skipAudio,
  async fn() {
    const sb = await alsaSandbox();
    try {
      const res = expectOk(await runHelper(sb, "play", { seconds: 0.6, stall_at: 10, stall_ms: 250 }));
      const stats = res.stats as Stats;
      // One underrun for the stall (a very loaded machine may add more).
      assert((stats.underruns as number) >= 1, `underruns ${stats.underruns}`);
      // 250 ms stall minus the ~60 ms that was queued, in 10 ms blocks, within timer slack.
      assert((stats.underrun_ms as number) >= 120, `underrun_ms ${stats.underrun_ms}`);
      const { audio, gaps } = stripSilence(readRaw(sb.play), 1, MIN_GAP);
      assertEquals(firstDifference(audio, tone(8000, 1, 0.6, 1000, -6)), -1);
      assertEquals(audio.length, 4800);
      const inner = gaps.filter((g) => g.at > 0 && g.at < audio.length);
      assert(inner.some((g) => g.at === 10 * 160), `a gap where the source stalled: ${JSON.stringify(gaps)}`);
      // The silence in the file covers what the speaker counted (plus the rebuffering before resuming).
      const gapMs = inner.reduce((n, g) => n + g.frames, 0) / 8;
      assert(gapMs >= (stats.underrun_ms as number) - 10, `gap ${gapMs} ms vs ${stats.underrun_ms}`);
    } finally {
      await sb.cleanup();
    }
  },
});

Deno.test({
  name: "speaker: pause/resume with pause_mode drop discards frames of a live source while paused",
  ignore: skipAudio,
  async fn() {
    const sb = await alsaSandbox();
    try {
      const res = expectOk(
        await runHelper(sb, "pause", { seconds: 1, realtime: true, pause_at: 15, pause_ms: 200, mode: "drop" }),
      );
      const stats = res.stats as Stats;
      const dropped = stats.dropped_paused as number;
      // Exactly the frames the live source wrote while the speaker was paused were dropped (how many depends
      // on how the machine scheduled the writer, but at least the first one is due before the resume).
      assertEquals(dropped, (res.marks as Record<string, number>).writtenWhilePaused);
      assert(dropped >= 1, `dropped ${dropped}`);
      assert((stats.paused_ms as number) > 0, `paused_ms ${stats.paused_ms}`);
      const { audio, gaps } = stripSilence(readRaw(sb.play), 1, MIN_GAP);
      assertEquals(audio.length, (50 - dropped) * 160);
      // What played is the tone minus the frames written while paused (15 .. 15 + dropped), in order.
      const want = tone(8000, 1, 1, 1000, -6);
      const cut = 15 * 160;
      assertEquals(firstDifference(audio.subarray(0, cut), want.subarray(0, cut)), -1);
      assertEquals(firstDifference(audio.subarray(cut), want.subarray(cut + dropped * 160)), -1);
      // The pause is a silence before the cut: the audio queued at the pause plays after the resume. How much
      // was queued depends on how the machine scheduled the live writer (a late writer catches up in a burst):
      // at most the speaker's queue cap (max(4 × latency_ms, latency_ms + 200 ms), latency_ms 60 by default)
      // plus latency_ms in the device, i.e. 320 ms or 16 frames.
      const gap = gaps.find((g) => g.at <= cut && g.at >= cut - 16 * 160);
      assert(gap, JSON.stringify(gaps));
      assert(gap.frames > 0, JSON.stringify(gaps));
    } finally {
      await sb.cleanup();
    }
  },
});

Deno.test({
  name: "speaker: pause_mode hold keeps every frame and holds the writer back until resume",
  ignore: skipAudio,
  async fn() {
    const sb = await alsaSandbox();
    try {
      const res = expectOk(await runHelper(sb, "pause", { seconds: 0.6, pause_at: 10, pause_ms: 250, mode: "hold" }));
      const stats = res.stats as Stats;
      assertEquals(stats.dropped_paused, 0);
      const { audio, gaps } = stripSilence(readRaw(sb.play), 1, MIN_GAP);
      assertEquals(audio.length, 4800);
      assertEquals(firstDifference(audio, tone(8000, 1, 0.6, 1000, -6)), -1);
      const inner = gaps.filter((g) => g.at > 0 && g.at < audio.length);
      const longest = Math.max(0, ...inner.map((g) => g.frames)) / 8;
      assert(longest >= 150, `pause gap ${longest} ms: ${JSON.stringify(gaps)}`);
    } finally {
      await sb.cleanup();
    }
  },
});

Deno.test({
  name: "speaker: a stop drops what is queued and closes the device at once",
  ignore: skipAudio,
  async fn() {
    const sb = await alsaSandbox();
    try {
      const res = expectOk(await runHelper(sb, "play", { seconds: 2, abort_at_ms: 300 }));
      const marks = res.marks as Record<string, number>;
      assert(marks.abort !== undefined && marks.ended >= marks.abort);
      const { audio } = stripSilence(readRaw(sb.play), 1, MIN_GAP);
      // What played is a prefix of the tone, and the queue at the stop was dropped: never all 2 s.
      assertEquals(firstDifference(audio, tone(8000, 1, 2, 1000, -6).subarray(0, audio.length)), -1);
      assert(audio.length > 0 && audio.length < 16000, `${audio.length / 8} ms played`);
    } finally {
      await sb.cleanup();
    }
  },
});

Deno.test({
  name: "speaker: an unknown device names the devices there are",
  ignore: skipAudio,
  async fn() {
    const sb = await alsaSandbox();
    try {
      const r = await runHelper(sb, "create", { stage: "speaker", options: { device: "nope" } });
      const msg = String(r.result.error);
      assert(
        msg.includes('no audio output device matches "nope"') && msg.includes('"vp_play"') &&
          msg.includes('"default"') && msg.includes("--list-devices"),
        msg,
      );
      const r2 = await runHelper(sb, "create", { stage: "speaker", options: { device: 99 } });
      assert(String(r2.result.error).includes("no audio device with id 99"), String(r2.result.error));
      const ok = await runHelper(sb, "create", { stage: "speaker", options: { device: "vp_pl" } });
      assertEquals(expectOk(ok).created, true);
    } finally {
      await sb.cleanup();
    }
  },
});

Deno.test({
  name: "speaker: in a pipeline, pipeline.control pauses and resumes it and pipeline.stop aborts it",
  ignore: skipAudio,
  async fn() {
    const sb = await alsaSandbox();
    try {
      const res = expectOk(await runHelper(sb, "pipeline", { seconds: 0.6, pause_at_ms: 200, pause_ms: 250 }));
      assertEquals(res.reason, "eos");
      assertEquals(res.controls, [{ paused: true }, { paused: false }]);
      const { audio, gaps } = stripSilence(readRaw(sb.play), 1, MIN_GAP);
      assertEquals(firstDifference(audio, tone(8000, 1, 0.6, 1000, -6)), -1);
      assertEquals(audio.length, 4800);
      const inner = gaps.filter((g) => g.at > 0 && g.at < audio.length);
      const longest = Math.max(0, ...inner.map((g) => g.frames)) / 8;
      assert(longest >= 150, `pause gap ${longest} ms: ${JSON.stringify(gaps)}`);
      // Real time: 0.6 s of audio plus the pause.
      assert((res.elapsed as number) >= 700, `${res.elapsed} ms`);

      const stop = expectOk(await runHelper(sb, "pipeline", { seconds: 5, stop_at_ms: 300 }));
      assertEquals(stop.reason, "stopped");
      const played = stripSilence(readRaw(sb.play), 1, MIN_GAP).audio.length / 8;
      assert(played > 0 && played < 5000, `${played} ms played`);
    } finally {
      await sb.cleanup();
    }
  },
});
