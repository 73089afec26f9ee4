/**
 * DTMF (RFC 4733 telephone events) with real peers, over loopback:
 *
 * - our caller → baresip (auto answer): our caller sends "1234#" (`dtmf`
 *   parameter); baresip reports each key pressed and released, in order, and
 *   decodes our audio unchanged.
 * - baresip → our callee: baresip dials, then is told `sndcode 1234#` over its
 *   `ctrl_tcp` module (its menu's command; the same as typing the digits); our
 *   callee logs each digit once, with baresip's duration (180 ms: nine 20 ms
 *   updates), and records baresip's audio sample-exact, as without DTMF.
 * - sipp → our callee: SIPp 3.6's `play_dtmf` action (scenario
 *   `tests/fixtures/sipp/uac_dtmf.xml`) sends "1234#" in an RTP stream of its
 *   own (no audio); our callee logs each digit once (200 ms) and records no
 *   audio at all: nothing of the events was played as audio.
 *
 * Without baresip or sipp these tests fail with an install hint, unless VOXPIPE_SKIP_INTEROP=1.
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
  readSippStats,
  readWav,
  requireTool,
  scenarioPath,
  sippArgs,
  sippCounter,
  sippErrors,
  spawnBaresip,
  spawnCallee,
  spawnCaller,
  spawnSipp,
  wavFiles,
  writeBaresipConfig,
  writeG711Wav,
} from "./sip_util.ts";
import { speechLikeSignal, writeWav } from "./media_util.ts";

const DIGITS = "1234#";

/** The digits our callee's log says it received, as `digit duration` strings. */
function received(log: string): string[] {
  return [...log.matchAll(/\[RTP-DEPACKETIZER\] DTMF (\S) received \((\d+) ms\)/g)].map((m) => `${m[1]} ${m[2]}`);
}

/** Sends one command to baresip's ctrl_tcp module (a netstring of JSON) and returns its response. */
async function baresipCommand(port: number, command: string, params: string): Promise<Record<string, unknown>> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    const json = JSON.stringify({ command, params, token: "voxpipe" });
    await conn.write(new TextEncoder().encode(`${new TextEncoder().encode(json).length}:${json},`));
    let text = "";
    const buf = new Uint8Array(4096);
    const deadline = Date.now() + 5000;
    while (!/^\d+:.*,$/s.test(text) && Date.now() < deadline) {
      const n = await conn.read(buf);
      if (n === null) break;
      text += new TextDecoder().decode(buf.subarray(0, n));
    }
    const m = /^\d+:(.*),$/s.exec(text);
    if (!m) throw new Error(`baresip ctrl_tcp: no response to ${command} (got ${JSON.stringify(text)})`);
    return JSON.parse(m[1]);
  } finally {
    conn.close();
  }
}

Deno.test({
  name: "DTMF: our caller → baresip: baresip reports 1234# pressed and released, in order; our audio is unchanged",
  ...interop,
  async fn() {
    await requireTool("baresip");
    const dir = await Deno.makeTempDir({ prefix: "voxpipe-dtmf-baresip-uas-" });
    const procs = new ProcessGroup();
    try {
      const audio = g711Audio("PCMU", 3.5, 5);
      await writeG711Wav(`${dir}/source.wav`, audio);
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
      let cr;
      try {
        await baresip.waitForOutput(/baresip is ready/, 15_000);
        const caller = procs.add(spawnCaller({
          to: `sip:alice@127.0.0.1:${sipPort}`,
          file: `${dir}/source.wav`,
          codecs: "PCMU",
          extra: ["--set", `dtmf=${DIGITS}`, "--set", "dtmf_at=0.8"],
          timeoutMs: 30_000,
        }));
        cr = await caller.result;
        await baresip.waitForOutput(/Call with sip:voxpipe@127\.0\.0\.1 terminated/, 15_000);
      } finally {
        baresip.kill("SIGINT");
      }
      const log = cleanBaresipOutput((await baresip.result).stdout);
      assertEquals(cr.code, 0, `caller failed: ${outputTail(cr)}\nbaresip:\n${log}`);
      // We offered telephone-event; baresip accepted it on our payload type.
      const pt = /\[SIP\] media: PCMU \(PT 0, ptime 20 ms\), DTMF PT (\d+),/.exec(cr.stderr)?.[1];
      assert(pt, `no DTMF in the negotiated media: ${outputTail(cr)}`);
      const sent = [...cr.stderr.matchAll(/DTMF (\S) sent \((\d+) ms\)/g)].map((m) => m[1]).join("");
      assertEquals(sent, DIGITS);
      // baresip (libre's telev receiver) reports the start of each event and its end, once each.
      const events = [...log.matchAll(/received event: '(.)' \(end=(\d)\)/g)].map((m) => `${m[1]}${m[2]}`);
      assertEquals(events, ["10", "11", "20", "21", "30", "31", "40", "41", "#0", "#1"], log);
      // What baresip decoded is our audio, sample for sample where it has it: no event was taken for audio.
      const dec = wavFiles(`${dir}/dump`).find((n) => n.endsWith("-dec.wav"));
      assert(dec, `no decode dump in ${wavFiles(`${dir}/dump`)}`);
      const got = await readWav(`${dir}/dump/${dec}`);
      const c = compareAligned(audio.samples, got.samples);
      assert(c.score > 0.99, `baresip's audio does not match ours: ${JSON.stringify(c)}`);
      assertEquals(c.mismatches, 0, `aligned samples differ: ${JSON.stringify(c)}`);
    } finally {
      await procs.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "DTMF: baresip → our callee (sndcode 1234# over ctrl_tcp): each digit logged once; the recording is unaffected",
  ...interop,
  async fn() {
    await requireTool("baresip");
    const dir = await Deno.makeTempDir({ prefix: "voxpipe-dtmf-baresip-uac-" });
    const procs = new ProcessGroup();
    try {
      const audio = g711Audio("PCMU", 5, 13);
      await writeG711Wav(`${dir}/baresip_source.wav`, audio);
      await Deno.mkdir(`${dir}/cfg`);
      await Deno.mkdir(`${dir}/dump`);
      const callee = procs.trackCallee(
        await spawnCallee({ record: `${dir}/rec.wav`, calls: 1, codecs: "PCMU", rtpTimeout: 10, timeoutMs: 40_000 }),
      );
      await writeBaresipConfig(`${dir}/cfg`, {
        sipPort: freePortPair(),
        rtpPort: freePortPair(),
        user: "carol",
        source: `aufile,${dir}/baresip_source.wav`,
        dumpDir: `${dir}/dump`,
      });
      // baresip's ctrl_tcp module takes commands (JSON netstrings) on a TCP port.
      const ctrlPort = freePortPair();
      await Deno.writeTextFile(
        `${dir}/cfg/config`,
        `\nmodule_app\t\tctrl_tcp.so\nctrl_tcp_listen\t\t127.0.0.1:${ctrlPort}\n`,
        { append: true },
      );
      const baresip = procs.add(spawnBaresip(`${dir}/cfg`, {
        commands: [`/dial ${callee.uri}`],
        quitAfter: 25,
        timeoutMs: 35_000,
      }));
      let cr, response;
      try {
        void baresip.result.then(() => callee.proc.kill());
        await baresip.waitForOutput(/Call established: sip:bob@127\.0\.0\.1/, 15_000);
        response = await baresipCommand(ctrlPort, "sndcode", DIGITS);
        cr = await callee.proc.result;
        await baresip.waitForOutput(/terminated/, 10_000).catch(() => {});
      } finally {
        baresip.kill("SIGINT");
      }
      const log = cleanBaresipOutput((await baresip.result).stdout);
      assertEquals(response.ok, true, `baresip refused sndcode: ${JSON.stringify(response)}`);
      assertEquals(cr.code, 0, `callee failed: ${outputTail(cr)}\nbaresip:\n${log}`);
      assertMatch(log, /audio: send DTMF digit: '1'/);
      assertMatch(cr.stderr, /\[SIP\] media: PCMU \(PT 0, ptime 20 ms\), DTMF PT 101,/); // baresip's type, kept
      // libre sends nine updates 20 ms apart (180 ms), then three end packets, per digit.
      assertEquals(received(cr.stderr), ["1 180", "2 180", "3 180", "4 180", "# 180"]);
      assertMatch(cr.stderr, /record buffer summary .*lost=0 concealed_samples=0 .*events=60\b/);
      assertMatch(cr.stderr, /call summary: .* lost=0 \(0%\)/);
      const rec = await readWav(`${dir}/rec.wav`);
      assert(rec.finalized, "the recording was not finalized");
      const c = assertSampleExact(audio.samples, rec.samples, {
        label: "baresip with DTMF → callee",
        concealTail: 800,
      });
      assertEquals(c.overlap, audio.samples.length);
    } finally {
      await procs.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "DTMF: sipp play_dtmf 1234# → our callee: each digit logged once (200 ms), nothing recorded as audio",
  ...interop,
  async fn() {
    await requireTool("sipp");
    const dir = await Deno.makeTempDir({ prefix: "voxpipe-dtmf-sipp-" });
    const procs = new ProcessGroup();
    try {
      const callee = procs.trackCallee(
        await spawnCallee({ record: `${dir}/rec.wav`, calls: 1, codecs: "PCMU", rtpTimeout: 10 }),
      );
      const sipp = procs.add(spawnSipp(
        sippArgs({
          scenario: scenarioPath("uac_dtmf.xml"),
          service: "bob",
          calls: 1,
          pauseMs: 3500, // after the ACK: the digits take 2.6 s
          target: `127.0.0.1:${callee.port}`,
        }),
        { cwd: dir, timeoutMs: 30_000 },
      ));
      const sr = await sipp.result;
      if (sr.code !== 0) callee.proc.kill();
      const cr = await callee.proc.result;
      assertEquals(sr.code, 0, `sipp failed: ${outputTail(sr)}\nerrors: ${sippErrors(dir)}\ncallee: ${outputTail(cr)}`);
      assertEquals(cr.code, 0, `callee failed: ${outputTail(cr)}`);
      const stats = await readSippStats(`${dir}/stats.csv`);
      assertEquals(sippCounter(stats, "SuccessfulCall(C)"), 1);
      assertMatch(cr.stderr, /\[SIP\] media: PCMU \(PT 0, ptime 20 ms\), DTMF PT 96,/);
      assertEquals(received(cr.stderr), ["1 200", "2 200", "3 200", "4 200", "# 200"]);
      // 20 "noop" packets (payload type 97, dropped), then 13 per digit: nothing but events reached the recording.
      assertMatch(cr.stderr, /call summary: .*received=85 /);
      // A WAV header and an empty data chunk: no sample (readWav cannot tell an empty chunk from an unfinalized one).
      assertEquals((await Deno.stat(`${dir}/rec.wav`)).size, 44, "telephone events were recorded as audio");
      assertEquals((await readWav(`${dir}/rec.wav`)).samples.length, 0);
    } finally {
      await procs.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
