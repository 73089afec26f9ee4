/**
 * Interop with baresip (Debian `baresip`), both ways, over loopback. baresip
 * runs headless from a config directory written at test time from
 * `tests/fixtures/baresip/*.template`: no audio device (aufile source,
 * aubridge player), auto answer, a local account that never registers, and the
 * sndfile module dumping the audio it sent and received.
 *
 * - our caller → baresip (answers automatically): the call completes (our BYE
 *   closes it) and what baresip decoded from our RTP is our audio.
 * - baresip → our callee (`/dial` at start; baresip hangs up when its file
 *   ends): the call completes and our recording is baresip's audio sample-exact
 *   (the file is G.711-representable, so baresip's encoder cannot round differently).
 *
 * Without baresip these tests fail with an install hint, unless VOXPIPE_SKIP_INTEROP=1.
 */
import { assert, assertEquals, assertMatch } from "./assert.ts";
import {
  assertSampleExact,
  cleanBaresipOutput,
  compareAligned,
  freePortPair,
  g711Audio,
  interop,
  outputTail,
  ProcessGroup,
  readWav,
  requireTool,
  spawnBaresip,
  spawnCallee,
  spawnCaller,
  wavFiles,
  writeBaresipConfig,
  writeG711Wav,
} from "./sip_util.ts";
import { speechLikeSignal, writeWav } from "./media_util.ts";

Deno.test({
  name: "our caller → baresip (auto answer): call completes, baresip decodes our audio",
  ...interop,
  async fn() {
    await requireTool("baresip");
    const dir = await Deno.makeTempDir({ prefix: "voxpipe-baresip-uas-" });
    const procs = new ProcessGroup();
    try {
      const audio = g711Audio("PCMU", 2.5);
      await writeG711Wav(`${dir}/source.wav`, audio);
      // baresip's own source outlasts our file, so the call ends with our BYE, not baresip's hang-up at its end.
      await writeWav(`${dir}/baresip_source.wav`, speechLikeSignal({ seconds: 12, seed: 3 }), 8000);
      await Deno.mkdir(`${dir}/cfg`);
      await Deno.mkdir(`${dir}/dump`);
      const sipPort = freePortPair();
      await writeBaresipConfig(`${dir}/cfg`, {
        sipPort,
        rtpPort: freePortPair(),
        user: "alice",
        source: `aufile,${dir}/baresip_source.wav`,
        dumpDir: `${dir}/dump`,
      });
      const baresip = procs.add(spawnBaresip(`${dir}/cfg`, { quitAfter: 25, timeoutMs: 35_000 }));
      try {
        await baresip.waitForOutput(/baresip is ready/, 15_000);
        const caller = procs.add(spawnCaller({
          to: `sip:alice@127.0.0.1:${sipPort}`,
          file: `${dir}/source.wav`,
          codecs: "PCMU",
          timeoutMs: 30_000,
        }));
        const cr = await caller.result;
        assertEquals(cr.code, 0, `caller failed: ${outputTail(cr)}\nbaresip:\n${cleanBaresipOutput(baresip.output())}`);
        assertMatch(cr.stderr, /\[SIP\] 200 \S.* received, sending ACK/);
        assertMatch(cr.stderr, /\[SIP\] BYE sent/);
        assertMatch(cr.stderr, /call summary: .*sent=125 /);
        // baresip reports the call closed by the peer (our BYE).
        await baresip.waitForOutput(/Call with sip:voxpipe@127\.0\.0\.1 terminated/, 15_000);
      } finally {
        baresip.kill("SIGINT");
      }
      const br = await baresip.result;
      const log = cleanBaresipOutput(br.stdout + br.stderr);
      assertMatch(log, /answering call on line \d+ from sip:voxpipe@127\.0\.0\.1/);
      assertMatch(log, /Call established: sip:voxpipe@127\.0\.0\.1/);
      assertMatch(log, /audio: Set audio decoder: PCMU 8000Hz 1ch/);
      assertMatch(log, /incoming rtp for 'audio' established, receiving from 127\.0\.0\.1:\d+/);

      // What baresip decoded (after its jitter buffer): our audio, sample for sample where it has it.
      const dec = wavFiles(`${dir}/dump`).find((n) => n.endsWith("-dec.wav"));
      assert(dec, `no decode dump in ${wavFiles(`${dir}/dump`)}`);
      const got = await readWav(`${dir}/dump/${dec}`);
      const c = compareAligned(audio.samples, got.samples);
      assert(c.score > 0.99, `baresip's audio does not match ours: ${JSON.stringify(c)}`);
      assertEquals(c.mismatches, 0, `aligned samples differ: ${JSON.stringify(c)}`);
      // Its player-driven dump may start late or stop early by a few frames; most of the audio must be there.
      assert(c.overlap >= audio.samples.length * 0.8, `too little of our audio reached baresip: ${JSON.stringify(c)}`);
    } finally {
      await procs.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "baresip → our callee: baresip dials, hangs up at the end of its file; recording is its audio sample-exact",
  ...interop,
  async fn() {
    await requireTool("baresip");
    const dir = await Deno.makeTempDir({ prefix: "voxpipe-baresip-uac-" });
    const procs = new ProcessGroup();
    try {
      const audio = g711Audio("PCMU", 2.5, 11);
      await writeG711Wav(`${dir}/baresip_source.wav`, audio);
      await Deno.mkdir(`${dir}/cfg`);
      await Deno.mkdir(`${dir}/dump`);
      const callee = procs.trackCallee(
        await spawnCallee({ record: `${dir}/rec.wav`, calls: 1, rtpTimeout: 10, timeoutMs: 40_000 }),
      );
      await writeBaresipConfig(`${dir}/cfg`, {
        sipPort: freePortPair(),
        rtpPort: freePortPair(),
        user: "carol",
        source: `aufile,${dir}/baresip_source.wav`,
        dumpDir: `${dir}/dump`,
      });
      const baresip = procs.add(spawnBaresip(`${dir}/cfg`, {
        commands: [`/dial ${callee.uri}`],
        quitAfter: 25,
        timeoutMs: 35_000,
      }));
      let cr;
      try {
        // If baresip ends first (it could not call), the callee would wait for a call until its time bound.
        void baresip.result.then(() => callee.proc.kill());
        cr = await callee.proc.result;
        await baresip.waitForOutput(/terminated/, 10_000).catch(() => {});
      } finally {
        baresip.kill("SIGINT");
      }
      const br = await baresip.result;
      const log = cleanBaresipOutput(br.stdout + br.stderr);
      assertEquals(cr.code, 0, `callee failed: ${outputTail(cr)}\nbaresip:\n${log}`);
      assertMatch(cr.stderr, /\[SIP\] INVITE received from sip:carol@127\.0\.0\.1/);
      assertMatch(cr.stderr, /\[SIP\] media: PCMU/);
      assertMatch(cr.stderr, /\[SIP\] BYE received/);
      assertMatch(log, /Call established: sip:bob@127\.0\.0\.1/);
      assertMatch(log, /audio error \(0,end of file\)/); // baresip hangs up because its file ended

      const rec = await readWav(`${dir}/rec.wav`);
      assert(rec.finalized, "the recording was not finalized");
      // baresip starts with a little silence; after its file ends it hangs up.
      const c = assertSampleExact(audio.samples, rec.samples, { label: "baresip → callee", concealTail: 800 });
      assertEquals(c.overlap, audio.samples.length);
    } finally {
      await procs.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
