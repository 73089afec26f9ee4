/**
 * Interop with a real SIP server: Kamailio (Debian `kamailio`) as registrar
 * and proxy with digest authentication (tests/fixtures/kamailio/kamailio.cfg),
 * started by each test on a free loopback port and stopped at its end.
 *
 * - Our callee registers as bob (401 → SHA-256 digest; it asks 30 s, Kamailio
 *   answers 423 with Min-Expires 60, it registers for 60 s); our caller
 *   registers as alice through Kamailio as its outbound proxy (Route, domain
 *   `voxpipe.test`) and calls sip:bob@voxpipe.test; the INVITE is challenged
 *   (407) and re-sent with credentials; Kamailio forwards it to bob's
 *   registered contact; the recording is the caller's audio sample-exact
 *   (should the callee's jitter buffer have had to conceal or drop a late
 *   packet on a loaded machine, which it reports: every other packet
 *   sample-exact, in order);
 *   both unregister at the end. Neither password appears in any output, at
 *   debug level with `--sip-trace` on.
 * - A wrong password, a missing password, and a call with a wrong password
 *   fail with a clear reason and exit status 1.
 *
 * Skipped with a message when Kamailio is not installed (or VOXPIPE_SKIP_INTEROP=1).
 */
import { assert, assertEquals, assertMatch } from "./assert.ts";
import { assertCallAudio, jitterSummary } from "./media_util.ts";
import {
  failureLine,
  g711Audio,
  outputTail,
  ProcessGroup,
  readWav,
  SKIP_INTEROP,
  spawnCallee,
  spawnCaller,
  writeG711Wav,
} from "./sip_util.ts";
import { KAMAILIO_USERS, kamailioPath, startKamailio } from "./sip_servers.ts";

const INSTALLED = kamailioPath() !== undefined;
if (!INSTALLED && !SKIP_INTEROP) {
  console.warn(
    "interop_kamailio_test: kamailio is not installed, skipping: install the Debian package kamailio " +
      "(bash scripts/setup.sh as root)",
  );
}

const opts = { ignore: SKIP_INTEROP || !INSTALLED, sanitizeResources: false, sanitizeOps: false };

Deno.test({
  name:
    "kamailio: callee registers (digest SHA-256, 423 → Min-Expires), caller calls it through Kamailio (407): audio sample-exact",
  ...opts,
  async fn() {
    const kam = await startKamailio({ algorithm: "SHA-256", timeoutMs: 90_000 });
    const dir = await Deno.makeTempDir({ prefix: "voxpipe-kamailio-call-" });
    const procs = new ProcessGroup();
    try {
      const audio = g711Audio("PCMU", 2.5, 5);
      await writeG711Wav(`${dir}/source.wav`, audio);
      const callee = procs.trackCallee(
        await spawnCallee({
          record: `${dir}/rec.wav`,
          calls: 1,
          rtpTimeout: 10,
          timeoutMs: 60_000,
          extra: [
            "--set",
            "user=bob",
            "--set",
            `registrar=${kam.uri}`,
            "--set",
            "register_expires=30",
            "--log-level",
            "debug",
            `--sip-trace=${dir}/callee.trace`,
          ],
          env: { VOXPIPE_SIP_PASSWORD: KAMAILIO_USERS.bob },
        }),
      );
      await callee.proc.waitForOutput(/registered as sip:bob@127\.0\.0\.1 /, 20_000);
      const caller = procs.add(spawnCaller({
        to: "sip:bob@voxpipe.test",
        file: `${dir}/source.wav`,
        codecs: "PCMU",
        timeoutMs: 40_000,
        extra: [
          "--set",
          "user=alice",
          "--set",
          "registrar=sip:voxpipe.test",
          "--set",
          `outbound_proxy=${kam.uri}`,
          "--log-level",
          "debug",
          "--sip-trace",
        ],
        env: { VOXPIPE_SIP_PASSWORD: KAMAILIO_USERS.alice },
      }));
      const cr = await caller.result;
      const ce = await callee.proc.result;
      const kamLog = kam.proc.output();
      assertEquals(
        cr.code,
        0,
        `caller failed: ${outputTail(cr, 6000)}\ncallee:\n${outputTail(ce)}\nkamailio:\n${kamLog.slice(-3000)}`,
      );
      assertEquals(ce.code, 0, `callee failed: ${outputTail(ce, 6000)}`);

      // The callee: 401 answered with SHA-256, 423 → Min-Expires 60, registered, unregistered at the end.
      assertMatch(ce.stderr, /answering 401 for REGISTER: Digest user bob, realm "voxpipe\.test", SHA-256, qop=auth/);
      assertMatch(ce.stderr, /423 Interval Too Brief: registering again with expires 60 \(Min-Expires\)/);
      assertMatch(
        ce.stderr,
        /registered as sip:bob@127\.0\.0\.1 \(contact sip:bob@127\.0\.0\.1:\d+\) at sip:127\.0\.0\.1:\d+ for 60 s/,
      );
      assertMatch(ce.stderr, /INVITE received from sip:alice@voxpipe\.test/);
      assertMatch(ce.stderr, /unregistered sip:bob@127\.0\.0\.1/);
      // The caller: registered through the proxy, INVITE challenged and re-sent, the call, unregistered.
      assertMatch(cr.stderr, /registered as sip:alice@voxpipe\.test .* at sip:voxpipe\.test for \d+ s/);
      assertMatch(cr.stderr, /407 Proxy Authentication Required: re-sending INVITE with Proxy-Authorization/);
      assertMatch(cr.stderr, /\[SIP\] BYE sent/);
      assertMatch(cr.stderr, /unregistered sip:alice@voxpipe\.test/);

      // The caller's trace (stderr): every message, with the proxy's Route; digest responses masked.
      assertMatch(
        cr.stderr,
        /UDP message sent \(\d+ bytes\) from 127\.0\.0\.1:\d+ to 127\.0\.0\.1:\d+:\n\nINVITE sip:bob@voxpipe\.test SIP\/2\.0\n/,
      );
      assertMatch(cr.stderr, /\nRoute: <sip:127\.0\.0\.1:\d+;lr>\n/);
      assertMatch(
        cr.stderr,
        /UDP message received \(\d+ bytes\) from 127\.0\.0\.1:\d+ on 127\.0\.0\.1:\d+:\n\nSIP\/2\.0 407 Proxy Authentication Required/,
      );
      assertMatch(
        cr.stderr,
        /Proxy-Authorization: Digest username="alice", realm="voxpipe\.test", .*response="…", algorithm=SHA-256/,
      );
      const calleeTrace = await Deno.readTextFile(`${dir}/callee.trace`);
      assertMatch(calleeTrace, /\n\nINVITE sip:bob@127\.0\.0\.1:\d+ SIP\/2\.0\n/);
      assertMatch(calleeTrace, /Authorization: Digest username="bob", .*response="…"/);
      // No password anywhere: logs at debug level, traces.
      for (
        const [what, text] of [["caller", cr.stdout + cr.stderr], ["callee", ce.stdout + ce.stderr], [
          "callee trace",
          calleeTrace,
        ]]
      ) {
        for (const pw of Object.values(KAMAILIO_USERS)) {
          assert(!text.includes(pw), `a password appears in the ${what}'s output`);
        }
        assert(!/response="[0-9a-f]{32,}"/.test(text), `an unmasked digest response in the ${what}'s output`);
      }

      // The audio went caller → callee directly (Kamailio carries only SIP), sample for sample.
      const rec = await readWav(`${dir}/rec.wav`);
      assert(rec.finalized, "the recording was not finalized");
      const jb = jitterSummary(ce.stderr);
      assertEquals(jb.received + jb.lost, 125, JSON.stringify(jb));
      assertCallAudio(audio.samples, rec.samples, ce.stderr, { label: "caller → Kamailio → callee", concealTail: 800 });
    } finally {
      await procs.stop();
      await kam.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "kamailio: a wrong password, a missing password and a call with a wrong password fail with a clear reason",
  ...opts,
  async fn() {
    const kam = await startKamailio({ algorithm: "MD5", timeoutMs: 90_000 });
    const procs = new ProcessGroup();
    try {
      const base = ["--set", "user=alice", "--set", `registrar=${kam.uri}`];
      const wrong = procs.add(spawnCaller({
        to: "sip:bob@127.0.0.1",
        file: "examples/audio/hello.wav",
        timeoutMs: 30_000,
        extra: [...base, "--log-level", "debug", "--sip-trace"],
        env: { VOXPIPE_SIP_PASSWORD: "not-alices-password" },
      }));
      const missing = procs.add(spawnCaller({
        to: "sip:bob@127.0.0.1",
        file: "examples/audio/hello.wav",
        timeoutMs: 30_000,
        extra: [...base, "--set", "password_env=VOXPIPE_TEST_UNSET_PASSWORD_VARIABLE"],
      }));
      // No registrar: the INVITE itself is challenged (407) and the credentials are wrong.
      const call = procs.add(spawnCaller({
        to: `sip:bob@127.0.0.1:${kam.port}`,
        file: "examples/audio/hello.wav",
        timeoutMs: 30_000,
        extra: ["--set", "user=alice"],
        env: { VOXPIPE_SIP_PASSWORD: "not-alices-password" },
      }));
      const [w, m, c] = await Promise.all([wrong.result, missing.result, call.result]);
      assertEquals(w.code, 1, outputTail(w));
      assertEquals(
        failureLine(w.stderr),
        "voxpipe: registration failed: 401 Unauthorized (wrong password for alice@127.0.0.1?)",
      );
      // Answered once, then the second 401 is final (no loop): two REGISTERs on the wire.
      assertEquals([...w.stderr.matchAll(/\n\nREGISTER sip:127\.0\.0\.1:\d+ SIP\/2\.0\n/g)].length, 2, w.stderr);
      assertMatch(w.stderr, /the credentials of alice for realm "voxpipe\.test" were rejected/);
      assert(!w.stderr.includes("not-alices-password"), "the password appears in the output");
      assertEquals(m.code, 1, outputTail(m));
      assertEquals(
        failureLine(m.stderr),
        "voxpipe: registration failed: 401 Unauthorized (the server asks for credentials, but the environment " +
          "variable VOXPIPE_TEST_UNSET_PASSWORD_VARIABLE is not set: set password_env or password)",
      );
      assertEquals(c.code, 1, outputTail(c));
      assertEquals(
        failureLine(c.stderr),
        "voxpipe: call failed: 407 Proxy Authentication Required (wrong password for alice?)",
      );
    } finally {
      await procs.stop();
      await kam.stop();
    }
  },
});
