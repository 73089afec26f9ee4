/**
 * Calls through real audio devices made of files (ALSA `file` plugin, see
 * tests/fixtures/alsa): the callee plays the caller's audio on the speaker, and a
 * caller speaks from the microphone until interrupted (Ctrl-C sends BYE).
 */
import { assert, assertEquals, assertMatch } from "./assert.ts";
import { readWav, spawnCli, writeWav } from "./media_util.ts";
import { alsaSandbox, skipAudio } from "./fixtures/alsa/run.ts";
import { freeUdpPort } from "./sip_util.ts";
import { frequency, readRaw, rmsDbfs, tone } from "./fixtures/alsa/signal.ts";

/** The samples between the first and the last non-silent one (|v| > 64). */
function trim(s: Int16Array): Int16Array {
  let a = 0, b = s.length;
  while (a < b && Math.abs(s[a]) <= 64) a++;
  while (b > a && Math.abs(s[b - 1]) <= 64) b--;
  return s.subarray(a, b);
}

/** Samples outside runs of 4 or more near-silent ones (|v| <= 64): the tone never has two such samples in a row. */
function audible(s: Int16Array): number {
  let n = 0, run = 0;
  for (let i = 0; i < s.length; i++) {
    if (Math.abs(s[i]) <= 64) {
      run++;
      continue;
    }
    n += run < 4 ? run + 1 : 1;
    run = 0;
  }
  return n;
}

Deno.test({
  name: "callee-speaker: a call's audio is played on the speaker (ALSA file device)",
  ignore: skipAudio,
  async fn() {
    const alsa = await alsaSandbox();
    try {
      const src = `${alsa.dir}/tone.wav`;
      await writeWav(src, tone(8000, 1, 2, 1000, -6), 8000);
      const port = freeUdpPort();
      const callee = spawnCli(
        ["--pipeline", "pipelines/callee-speaker.json", "--set", `port=${port}`, "--set", "calls=1"],
        { timeoutMs: 40_000, env: { ALSA_CONFIG_PATH: alsa.config, VOXPIPE_NATIVE_STDOUT: "null" } },
      );
      await callee.waitForOutput(/\[SIP\] listening on udp/, 20_000);
      const caller = spawnCli(
        ["--pipeline", "pipelines/caller.json", "--set", `to=sip:bob@127.0.0.1:${port}`, "--set", `file=${src}`],
        { timeoutMs: 40_000 },
      );
      const [cr, ce] = await Promise.all([caller.result, callee.result]);
      assertEquals(cr.code, 0, cr.stderr.slice(-1500));
      assertEquals(ce.code, 0, ce.stderr.slice(-1500));
      const played = trim(readRaw(alsa.play));
      // 2 s of 1 kHz at -6 dBFS went through G.711 and the network to the device, all of it (the end of the
      // call lets the jitter buffer and the device queue play out). A loaded machine may make the device
      // underrun (silence inserted), so count only the audible samples.
      const heard = audible(played);
      // The device plays in real time: on a loaded machine the playout buffer time-scales (accelerate removes pitch
      // periods to get its delay back after a stall) and late packets are concealed, so how much of the tone is
      // heard depends on the machine (exactness is tested on a virtual clock in jitter_buffer_test.ts). What holds
      // at any load: most of the 2 s is heard, nothing is heard that was not sent, and what is heard is the tone.
      assert(heard >= 8000 && heard <= 16800, `played ${heard} audible samples (${played.length} in all)`);
      let crossings = 0, loud = 0;
      for (let i = 1; i < played.length; i++) {
        if (Math.abs(played[i]) <= 64 || Math.abs(played[i - 1]) <= 64) continue;
        loud++;
        if ((played[i] < 0) !== (played[i - 1] < 0)) crossings++;
      }
      // 1 kHz at 8 kHz: 2 zero crossings per 8 samples.
      assert(Math.abs(crossings / loud - 0.25) < 0.03, `${crossings} zero crossings in ${loud} loud sample pairs`);
      assert(Math.abs(frequency(played, 1, 8000) - 1000) < 5, `frequency ${frequency(played, 1, 8000)}`);
      assert(Math.abs(rmsDbfs(played, 1) - -9.03) < 0.3, `level ${rmsDbfs(played, 1)}`);
    } finally {
      await alsa.cleanup();
    }
  },
});

Deno.test({
  name: "caller-mic: the microphone is sent until SIGINT, which hangs up with BYE and exits 130",
  ignore: skipAudio,
  async fn() {
    const alsa = await alsaSandbox(tone(8000, 1, 30, 440, -12));
    try {
      const port = freeUdpPort();
      const rec = `${alsa.dir}/rec.wav`;
      const callee = spawnCli(
        ["--pipeline", "pipelines/callee.json", "--set", `port=${port}`, "--set", "calls=1", "--set", `record=${rec}`],
        { timeoutMs: 40_000 },
      );
      await callee.waitForOutput(/\[SIP\] listening on udp/, 20_000);
      const caller = spawnCli(["--pipeline", "pipelines/caller-mic.json", "--set", `to=sip:bob@127.0.0.1:${port}`], {
        timeoutMs: 40_000,
        env: { ALSA_CONFIG_PATH: alsa.config, VOXPIPE_NATIVE_STDOUT: "null" },
      });
      await caller.waitForOutput(/\[RTP\] streaming to/, 20_000);
      // Hang up once the callee has recorded more than a second of the microphone (its WAV grows as it records):
      // how long that takes depends on the machine's load, not on a fixed wait.
      for (let waited = 0; waited < 30_000; waited += 100) {
        const size = await Deno.stat(rec).then((i) => i.size, () => 0);
        if (size > 44 + 2 * 8000 * 1.25) break;
        await new Promise((r) => setTimeout(r, 100));
      }
      caller.kill("SIGINT");
      const [cr, ce] = await Promise.all([caller.result, callee.result]);
      // Interrupted: 130, like any program stopped with Ctrl-C, after a clean hang-up.
      assertEquals(cr.code, 130, cr.stderr.slice(-1500));
      assertMatch(cr.stderr, /\[SIP\] BYE sent/);
      assertMatch(cr.stderr, /voxpipe: interrupted after [\d.]+ s of call \(BYE sent\)/);
      assertEquals(ce.code, 0, ce.stderr.slice(-1500));
      assertMatch(ce.stderr, /\[SIP\] BYE received/);
      const got = trim((await readWav(rec)).samples);
      assert(got.length > 8000, `recorded ${got.length} samples`);
      assert(Math.abs(frequency(got, 1, 8000) - 440) < 5, `frequency ${frequency(got, 1, 8000)}`);
    } finally {
      await alsa.cleanup();
    }
  },
});
