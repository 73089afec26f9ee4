/**
 * End to end: our caller calls our callee over loopback (SIP + RTP + RTCP); the
 * callee's recording must equal the source passed through G.711 (the transcode
 * pipeline's output), sample by sample after alignment, since nothing is lost.
 */
import { assert, assertEquals, assertMatch } from "./assert.ts";
import { assertSampleExact, readWav, spawnCli } from "./media_util.ts";
import { repoPath } from "./util.ts";
import { freeUdpPort } from "./sip_util.ts";

for (const codec of ["PCMU", "PCMA"] as const) {
  Deno.test(`call: caller → callee (${codec}), the recording equals the source through G.711`, async () => {
    const dir = await Deno.makeTempDir();
    try {
      // The reference: the same file through the same resampler and G.711 round trip, offline.
      const ref = spawnCli([
        "--pipeline",
        "pipelines/transcode.json",
        "--set",
        `out=${dir}/ref.wav`,
        "--set",
        `codec=${codec}`,
      ], { timeoutMs: 30_000 });
      assertEquals((await ref.result).code, 0);
      const port = freeUdpPort();
      const callee = spawnCli([
        "--pipeline",
        "pipelines/callee.json",
        "--set",
        `port=${port}`,
        "--set",
        "calls=1",
        "--set",
        `record=${dir}/call-\${call.id}.wav`,
        "--set",
        `codecs=${codec}`,
      ], { timeoutMs: 40_000 });
      await callee.waitForOutput(/\[SIP\] listening on udp 127\.0\.0\.1:\d+/, 20_000);
      const caller = spawnCli([
        "--pipeline",
        "pipelines/caller.json",
        "--set",
        `to=sip:bob@127.0.0.1:${port}`,
        "--set",
        `file=${repoPath("examples/audio/hello.wav")}`,
      ], { timeoutMs: 40_000 });
      const [cr, ce] = await Promise.all([caller.result, callee.result]);
      assertEquals(cr.code, 0, `caller: ${cr.stderr.slice(-2000)}`);
      assertEquals(ce.code, 0, `callee: ${ce.stderr.slice(-2000)}`);
      assertMatch(cr.stderr, /\[SIP\] INVITE sent to sip:bob@127\.0\.0\.1/);
      assertMatch(cr.stderr, /\[SIP\] 180 Ringing/);
      assertMatch(cr.stderr, /\[SIP\] 200 OK received, sending ACK/);
      assertMatch(cr.stderr, /\[RTP\] streaming to 127\.0\.0\.1:\d+/);
      assertMatch(cr.stderr, /\[SIP\] BYE sent/);
      assertMatch(ce.stderr, new RegExp(`media: ${codec}`));
      assertMatch(ce.stderr, /call summary: .* lost=0 \(0%\)/);
      // One recording, named from the sanitized Call-ID.
      const files = [...Deno.readDirSync(dir)].map((e) => e.name).filter((n) => n.startsWith("call-"));
      assertEquals(files.length, 1, files.join(", "));
      assertMatch(files[0], /^call-[A-Za-z0-9._-]+\.wav$/);
      const expected = await readWav(`${dir}/ref.wav`);
      const got = await readWav(`${dir}/${files[0]}`);
      assertEquals(got.sampleRate, 8000);
      const c = assertSampleExact(expected.samples, got.samples, { label: codec, concealTail: 800 });
      assert(c.overlap >= expected.samples.length - 1, JSON.stringify(c));
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
}
