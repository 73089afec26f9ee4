/**
 * DTMF end to end over loopback, through the CLI: our caller sends "1234#"
 * (the `dtmf` parameter of `pipelines/caller.json`) as RFC 4733 telephone
 * events in its RTP stream; our callee logs each digit once, with its
 * duration, and its recording is the caller's audio, sample for sample, as in
 * a call without DTMF. With DTMF turned off at the callee (control option
 * `dtmf: false`), telephone-event is not negotiated and nothing is sent.
 */
import { assert, assertEquals, assertMatch } from "./assert.ts";
import { assertSampleExact, readWav, spawnCli } from "./media_util.ts";
import { repoPath } from "./util.ts";
import { freeUdpPort } from "./sip_util.ts";

/** The transcode pipeline's output for hello.wav: what the callee must record. */
async function reference(dir: string): Promise<Int16Array> {
  const ref = spawnCli(["--pipeline", "pipelines/transcode.json", "--set", `out=${dir}/ref.wav`], {
    timeoutMs: 30_000,
  });
  assertEquals((await ref.result).code, 0);
  return (await readWav(`${dir}/ref.wav`)).samples;
}

/** Runs our callee (with `calleeFile`) and our caller sending `digits`; both must exit 0. */
async function call(dir: string, digits: string, calleeFile = "pipelines/callee.json") {
  const port = freeUdpPort();
  const callee = spawnCli([
    "--pipeline",
    calleeFile,
    "--set",
    `port=${port}`,
    "--set",
    "calls=1",
    "--set",
    `record=${dir}/rec.wav`,
    "--set",
    "codecs=PCMU",
  ], { timeoutMs: 40_000 });
  await callee.waitForOutput(/\[SIP\] listening on udp 127\.0\.0\.1:\d+/, 20_000);
  const caller = spawnCli([
    "--pipeline",
    "pipelines/caller.json",
    "--set",
    `to=sip:bob@127.0.0.1:${port}`,
    "--set",
    `file=${repoPath("examples/audio/hello.wav")}`,
    "--set",
    `dtmf=${digits}`,
    "--set",
    "dtmf_at=1",
  ], { timeoutMs: 40_000 });
  const [cr, ce] = await Promise.all([caller.result, callee.result]);
  assertEquals(cr.code, 0, `caller: ${cr.stderr.slice(-2000)}`);
  assertEquals(ce.code, 0, `callee: ${ce.stderr.slice(-2000)}`);
  return { caller: cr.stderr, callee: ce.stderr };
}

Deno.test("DTMF: our caller sends 1234# in its RTP stream, our callee logs each digit once; its recording is unaffected", async () => {
  const dir = await Deno.makeTempDir({ prefix: "voxpipe-dtmf-" });
  try {
    const expected = await reference(dir);
    const { caller, callee } = await call(dir, "1234#");
    // Negotiated on a dynamic payload type, the same on both sides.
    const pt = /\[SIP\] media: PCMU \(PT 0, ptime 20 ms\), DTMF PT (\d+),/.exec(caller)?.[1];
    assert(pt && Number(pt) >= 96, `caller: no DTMF payload type in its media line\n${caller.slice(-2000)}`);
    assertMatch(callee, new RegExp(`\\[SIP\\] media: PCMU \\(PT 0, ptime 20 ms\\), DTMF PT ${pt},`));
    const sent = [...caller.matchAll(/DTMF (\S) sent \((\d+) ms\)/g)].map((m) => `${m[1]} ${m[2]}`);
    assertEquals(sent, ["1 160", "2 160", "3 160", "4 160", "# 160"]);
    // One line per digit, in order, each with the duration sent, whatever the redundant end packets.
    const received = [...callee.matchAll(/\[RTP-DEPACKETIZER\] DTMF (\S) received \((\d+) ms\)/g)]
      .map((m) => `${m[1]} ${m[2]}`);
    assertEquals(received, ["1 160", "2 160", "3 160", "4 160", "# 160"]);
    // The event packets are not losses, and the recording is the caller's audio, sample for sample.
    assertMatch(callee, /record buffer summary .*lost=0 concealed_samples=0 .* events=30\b/);
    assertMatch(callee, /call summary: .* lost=0 \(0%\)/);
    const got = await readWav(`${dir}/rec.wav`);
    const c = assertSampleExact(expected, got.samples, { label: "with DTMF", concealTail: 800 });
    assert(c.overlap >= expected.length - 1, JSON.stringify(c));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("DTMF turned off at the callee (control dtmf: false): not negotiated, the caller sends none and says so", async () => {
  const dir = await Deno.makeTempDir({ prefix: "voxpipe-dtmf-off-" });
  try {
    const file = JSON.parse(await Deno.readTextFile(repoPath("pipelines/callee.json")));
    file.control.dtmf = false;
    delete file.$schema;
    await Deno.writeTextFile(`${dir}/callee-no-dtmf.json`, JSON.stringify(file));
    const { caller, callee } = await call(dir, "12", `${dir}/callee-no-dtmf.json`);
    assertMatch(caller, /\[SIP\] media: PCMU \(PT 0, ptime 20 ms\), local/);
    assertMatch(caller, /DTMF "12" will not be sent: the peer did not accept telephone-event/);
    assert(!/DTMF \S sent/.test(caller), caller.slice(-2000));
    assertMatch(callee, /\[SIP\] media: PCMU \(PT 0, ptime 20 ms\), local/);
    assert(!/DTMF \S received/.test(callee), callee.slice(-2000));
    assertMatch(callee, /call summary: .* lost=0 \(0%\)/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
