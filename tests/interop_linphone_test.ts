/**
 * Interop with Linphone's console phone (`linphonec`, Debian `linphone-cli`),
 * both registered with the same Kamailio (MD5 digest here, SHA-256 in
 * interop_kamailio_test.ts): linphonec runs headless (HOME in a temporary
 * directory, sound from and to WAV files, commands on its standard input).
 *
 * - Our caller (alice) → Linphone (carol, auto answer): the call completes
 *   (our BYE ends it) and what Linphone recorded is our audio: at least 80 %
 *   of its 20 ms packets sample for sample, in order (Linphone's adaptive
 *   jitter buffer may drop or repeat a packet as it adapts).
 * - Linphone (carol) → our callee (bob): Linphone plays a G.711-representable
 *   file (in a loop); our recording is its first pass sample-exact, then its
 *   second pass.
 *
 * Skipped with a message when Kamailio or linphonec is not installed (or VOXPIPE_SKIP_INTEROP=1).
 */
import { assert, assertEquals, assertMatch } from "./assert.ts";
import { assertCallAudio, findPackets } from "./media_util.ts";
import {
  compareAligned,
  g711Audio,
  outputTail,
  ProcessGroup,
  readWav,
  SKIP_INTEROP,
  spawnCallee,
  spawnCaller,
  writeG711Wav,
} from "./sip_util.ts";
import { KAMAILIO_USERS, kamailioPath, linphonecInstalled, startKamailio, startLinphone } from "./sip_servers.ts";

const MISSING = [kamailioPath() ? "" : "kamailio", linphonecInstalled() ? "" : "linphonec (linphone-cli)"].filter(
  Boolean,
);
if (MISSING.length > 0 && !SKIP_INTEROP) {
  console.warn(
    `interop_linphone_test: ${MISSING.join(" and ")} not installed, skipping: install the Debian packages ` +
      "kamailio and linphone-cli (bash scripts/setup.sh as root)",
  );
}

const opts = { ignore: SKIP_INTEROP || MISSING.length > 0, sanitizeResources: false, sanitizeOps: false };

Deno.test({
  name: "linphone: our caller → Kamailio → Linphone (auto answer): the call completes, Linphone records our audio",
  ...opts,
  async fn() {
    const kam = await startKamailio({ algorithm: "MD5", timeoutMs: 90_000 });
    const dir = await Deno.makeTempDir({ prefix: "voxpipe-linphone-uas-" });
    const procs = new ProcessGroup();
    let phone;
    try {
      const audio = g711Audio("PCMU", 2.5, 9);
      await writeG711Wav(`${dir}/source.wav`, audio);
      phone = await startLinphone({
        identity: "sip:carol@127.0.0.1",
        proxy: kam.uri,
        password: KAMAILIO_USERS.carol,
        record: `${dir}/linphone-rec.wav`,
        autoAnswer: true,
        timeoutMs: 60_000,
      });
      await phone.waitRegistered(15_000);
      const caller = procs.add(spawnCaller({
        to: `sip:carol@127.0.0.1:${kam.port}`,
        file: `${dir}/source.wav`,
        codecs: "PCMU",
        timeoutMs: 40_000,
        extra: ["--set", "user=alice", "--set", `registrar=${kam.uri}`],
        env: { VOXPIPE_SIP_PASSWORD: KAMAILIO_USERS.alice },
      }));
      const cr = await caller.result;
      assertEquals(
        cr.code,
        0,
        `caller failed: ${outputTail(cr, 4000)}\nlinphonec:\n${phone.proc.output().slice(-3000)}`,
      );
      assertMatch(cr.stderr, /407 Proxy Authentication Required: re-sending INVITE with Proxy-Authorization/);
      assertMatch(cr.stderr, /\[SIP\] media: PCMU/);
      assertMatch(cr.stderr, /\[SIP\] BYE sent/);
      await phone.proc.waitForOutput(/Call \d+ with sip:alice@127\.0\.0\.1 ended/, 10_000);
      const out = phone.proc.output();
      assertMatch(out, /Receiving new incoming call from sip:alice@127\.0\.0\.1/);
      assertMatch(out, /Call \d+ with sip:alice@127\.0\.0\.1 connected/);
      await phone.stop();
      phone = undefined;

      const rec = await readWav(`${dir}/linphone-rec.wav`);
      assertEquals([rec.sampleRate, rec.channels], [8000, 1]);
      // Linphone plays out in real time through an adaptive jitter buffer, which may drop or repeat a packet
      // when it adapts, shifting what follows: so each 20 ms packet of our audio is looked for on its own. Most
      // must be in the recording sample for sample, in order.
      const f = findPackets(audio.samples, rec.samples);
      console.log(`our caller → Linphone: ${f.found} of ${f.total} packets found sample-exact, in order`);
      assert(f.found >= f.total * 0.8, `too little of our audio reached Linphone intact: ${JSON.stringify(f)}`);
    } finally {
      await phone?.stop();
      await procs.stop();
      await kam.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "linphone: Linphone → Kamailio → our callee (registered): our recording is Linphone's audio sample-exact",
  ...opts,
  async fn() {
    const kam = await startKamailio({ algorithm: "MD5", timeoutMs: 90_000 });
    const dir = await Deno.makeTempDir({ prefix: "voxpipe-linphone-uac-" });
    const procs = new ProcessGroup();
    let phone;
    try {
      const audio = g711Audio("PCMU", 2.5, 13);
      await writeG711Wav(`${dir}/linphone-source.wav`, audio);
      const callee = procs.trackCallee(
        await spawnCallee({
          record: `${dir}/rec.wav`,
          calls: 1,
          rtpTimeout: 10,
          timeoutMs: 60_000,
          extra: ["--set", "user=bob", "--set", `registrar=${kam.uri}`],
          env: { VOXPIPE_SIP_PASSWORD: KAMAILIO_USERS.bob },
        }),
      );
      await callee.proc.waitForOutput(/registered as sip:bob@127\.0\.0\.1 /, 20_000);
      phone = await startLinphone({
        identity: "sip:carol@127.0.0.1",
        proxy: kam.uri,
        password: KAMAILIO_USERS.carol,
        play: `${dir}/linphone-source.wav`,
        timeoutMs: 60_000,
      });
      await phone.waitRegistered(15_000);
      await phone.command(`call sip:bob@127.0.0.1:${kam.port}`);
      await callee.proc.waitForOutput(/\[SIP\] media: PCMU/, 15_000);
      // The file lasts 2.5 s; Linphone then sends silence until we hang up. Hang up once the callee has recorded 4 s
      // (its WAV grows as it records, 16-bit at 8 kHz): how long that takes depends on the machine's load.
      await phone.proc.waitForOutput(/Call \d+ with sip:bob@127\.0\.0\.1:\d+ connected/, 10_000);
      for (let waited = 0; waited < 30_000; waited += 100) {
        const size = await Deno.stat(`${dir}/rec.wav`).then((i) => i.size, () => 0);
        if (size > 44 + 2 * 8000 * 4) break;
        await new Promise((r) => setTimeout(r, 100));
      }
      await phone.command("terminate");
      const ce = await callee.proc.result;
      assertEquals(
        ce.code,
        0,
        `callee failed: ${outputTail(ce, 4000)}\nlinphonec:\n${phone.proc.output().slice(-3000)}`,
      );
      assertMatch(ce.stderr, /INVITE received from sip:carol@127\.0\.0\.1/);
      assertMatch(ce.stderr, /\[SIP\] BYE received/);
      await phone.stop();
      phone = undefined;

      const rec = await readWav(`${dir}/rec.wav`);
      assert(rec.finalized, "the recording was not finalized");
      // Linphone plays its file in a loop: the first pass sample-exact, then (after a pause) the file again.
      const first = compareAligned(audio.samples, rec.samples);
      const end = first.lag + audio.samples.length;
      assertCallAudio(audio.samples, rec.samples.subarray(0, end), ce.stderr, { label: "Linphone → callee" });
      // What follows (its length depends on when the hang-up came) is silence, then the file from its start.
      const again = rec.samples.subarray(end);
      const c = compareAligned(audio.samples, again);
      if (again.some((x) => x !== 0)) {
        assert(c.score > 0.95, `the rest of the recording is not Linphone's file again: ${JSON.stringify(c)}`);
      }
      console.log(`Linphone → our callee: first pass ${JSON.stringify(first)}; second pass ${JSON.stringify(c)}`);
    } finally {
      await phone?.stop();
      await procs.stop();
      await kam.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
