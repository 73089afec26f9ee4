/**
 * Interop with SIPp (Debian `sip-tester`), both ways, over loopback:
 *
 * - sipp calls our callee with our UAC scenario (`tests/fixtures/sipp/uac_pcmu_stream.xml`),
 *   streaming µ-law audio with its `rtp_stream` action: sipp's call succeeds and
 *   our recording holds sipp's audio sample-exact (the audio is G.711-representable
 *   and nothing is lost on loopback).
 * - our caller calls `sipp -sn uas` (with `-rtp_echo`): INVITE / 180 / 200 / ACK / BYE
 *   complete, sipp counts one successful call and no failure, no unexpected or
 *   out-of-call message (a retransmission we left unanswered would show there).
 *
 * Without sipp these tests fail with an install hint, unless VOXPIPE_SKIP_INTEROP=1.
 */
import { assert, assertEquals, assertMatch } from "./assert.ts";
import {
  assertSampleExact,
  freePortPair,
  freeUdpPort,
  g711Audio,
  interop,
  outputTail,
  ProcessGroup,
  readSippStats,
  readWav,
  requireTool,
  scenarioPath,
  sippArgs,
  sippCounter,
  sippErrors,
  spawnCallee,
  spawnCaller,
  spawnSipp,
  writeG711Wav,
} from "./sip_util.ts";
import { waitForUdpPort } from "./media_util.ts";

Deno.test({
  name: "sipp UAC streaming PCMU (rtp_stream) → our callee: call completes, recording is sipp's audio sample-exact",
  ...interop,
  async fn() {
    await requireTool("sipp");
    const dir = await Deno.makeTempDir({ prefix: "voxpipe-sipp-uac-" });
    const procs = new ProcessGroup();
    try {
      // 2.5 s of speech-like µ-law, sent by sipp as raw payload bytes (the file name is in the scenario).
      const audio = g711Audio("PCMU", 2.5);
      await Deno.writeFile(`${dir}/voxpipe_pcmu.raw`, audio.bytes);
      const callee = procs.trackCallee(
        await spawnCallee({ record: `${dir}/rec.wav`, calls: 1, codecs: "PCMU", rtpTimeout: 10 }),
      );
      const sipp = procs.add(spawnSipp(
        sippArgs({
          scenario: scenarioPath("uac_pcmu_stream.xml"),
          service: "bob",
          calls: 1,
          pauseMs: 3500, // after the ACK: longer than the audio
          target: `127.0.0.1:${callee.port}`,
        }),
        { cwd: dir, timeoutMs: 30_000 },
      ));
      const sr = await sipp.result;
      if (sr.code !== 0) callee.proc.kill(); // it would wait for its call until its own time bound
      const cr = await callee.proc.result;
      assertEquals(sr.code, 0, `sipp failed: ${outputTail(sr)}\nerrors: ${sippErrors(dir)}\ncallee: ${outputTail(cr)}`);
      assertEquals(cr.code, 0, `callee failed: ${outputTail(cr)}`);
      const stats = await readSippStats(`${dir}/stats.csv`);
      assertEquals(sippCounter(stats, "SuccessfulCall(C)"), 1);
      assertEquals(sippCounter(stats, "FailedCall(C)"), 0);
      assertEquals(sippErrors(dir), "", "sipp logged errors");
      assertMatch(cr.stderr, /\[SIP\] INVITE received from sip:sipp@127\.0\.0\.1/);
      assertMatch(cr.stderr, /\[SIP\] media: PCMU \(PT 0, ptime 20 ms\)/);
      assertMatch(cr.stderr, /\[SIP\] BYE received/);
      assertMatch(cr.stderr, /call summary: .*received=125 lost=0/);

      const rec = await readWav(`${dir}/rec.wav`);
      assert(rec.finalized, "the recording was not finalized");
      assertEquals([rec.sampleRate, rec.channels], [8000, 1]);
      // sipp stops streaming after 125 packets and sends BYE 1 s later: the jitter buffer may conceal a little.
      const c = assertSampleExact(audio.samples, rec.samples, { label: "sipp → callee", concealTail: 800 });
      assertEquals(c.overlap, audio.samples.length);
    } finally {
      await procs.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "our caller → sipp -sn uas: INVITE/180/200/ACK/BYE complete, no failed call, no unanswered retransmission",
  ...interop,
  async fn() {
    await requireTool("sipp");
    const dir = await Deno.makeTempDir({ prefix: "voxpipe-sipp-uas-" });
    const procs = new ProcessGroup();
    try {
      const audio = g711Audio("PCMU", 2.5);
      await writeG711Wav(`${dir}/source.wav`, audio);
      const port = freeUdpPort();
      const sipp = procs.add(spawnSipp(
        sippArgs({
          builtin: "uas",
          port,
          mediaPort: freePortPair("127.0.0.1", 4),
          rtpEcho: true, // sipp echoes our RTP back: our receive chain gets media too
          calls: 1,
        }),
        { cwd: dir, timeoutMs: 40_000 },
      ));
      await waitForUdpPort(port, 10_000);
      const caller = procs.add(spawnCaller({
        to: `sip:service@127.0.0.1:${port}`,
        file: `${dir}/source.wav`,
        codecs: "PCMU,PCMA",
        timeoutMs: 30_000,
      }));
      const cr = await caller.result;
      if (cr.code !== 0) sipp.kill("SIGINT"); // it would wait for a call until its own time bound
      const sr = await sipp.result; // sipp -sn uas waits 4 s after the BYE (timewait) before it exits
      assertEquals(cr.code, 0, `caller failed: ${outputTail(cr)}`);
      assertEquals(sr.code, 0, `sipp failed: ${outputTail(sr)}\nerrors: ${sippErrors(dir)}`);
      assertMatch(cr.stderr, /\[SIP\] 180 Ringing/);
      assertMatch(cr.stderr, /\[SIP\] 200 OK received, sending ACK/);
      assertMatch(cr.stderr, /\[SIP\] BYE sent/);
      // sipp's -sn uas answers with PCMU only; all 125 packets sent, and sipp's echo came back.
      assertMatch(cr.stderr, /media: PCMU \(PT 0/);
      const summary = /call summary: .*sent=(\d+) received=(\d+)/.exec(cr.stderr);
      assert(summary, "no call summary");
      assertEquals(Number(summary[1]), 125);
      assert(Number(summary[2]) > 0, "no echoed RTP came back from sipp");

      const stats = await readSippStats(`${dir}/stats.csv`);
      const count = (n: string) => sippCounter(stats, n);
      assertEquals(count("SuccessfulCall(C)"), 1, JSON.stringify(stats));
      assertEquals(count("FailedCall(C)"), 0);
      assertEquals(count("FailedMaxUDPRetrans(C)"), 0);
      assertEquals(count("FailedUnexpectedMessage(C)"), 0);
      assertEquals(count("OutOfCallMsgs(C)"), 0, "messages outside any call reached sipp");
      assertEquals(count("DeadCallMsgs(C)"), 0, "messages for a finished call reached sipp");
      assertEquals(sippErrors(dir), "", "sipp logged errors");
    } finally {
      await procs.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
