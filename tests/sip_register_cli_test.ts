/**
 * Registration and `--sip-trace` through the CLI, against a registrar run in
 * this test process on loopback (our own `SipUserAgent.onRegister`, checking
 * digest credentials itself), so it needs no external server:
 *
 * - the callee registers (401 → digest → 200), logs at debug level without
 *   ever printing the password, traces every message to a file with time,
 *   direction and addresses (the digest response masked), and removes its
 *   binding (`Expires: 0`) when stopped with SIGTERM;
 * - a wrong password ends the process at once with exit status 1 and
 *   `registration failed: 401 Unauthorized (wrong password for carol@127.0.0.1?)`;
 * - a registrar that does not answer: `registration failed: no response ...`;
 * - `--sip-trace` alone traces to stderr; `--sip-trace=` is a usage error.
 */
import { repoPath } from "./util.ts";
import { assert, assertEquals, assertMatch } from "./assert.ts";
import {
  digestResponse,
  parseCredentials,
  type RegisterRequest,
  type RegistrarReply,
  SipUserAgent,
} from "../plugins/sip/mod.ts";
import { failureLine, outputTail, ProcessGroup, spawnCallee, spawnCaller } from "./sip_util.ts";
import { spawnCli } from "./media_util.ts";

const PASSWORD = "c4rol-Pa55word-do-not-log";

/** A registrar on 127.0.0.1 that challenges with MD5 digest and checks the answer with `password`. */
function registrar(password: string) {
  const ua = new SipUserAgent({ hostname: "127.0.0.1", port: 0, userName: "registrar" });
  const seen: RegisterRequest[] = [];
  const bindings = new Map<string, number>();
  let nonce = 0;
  ua.onRegister((r): RegistrarReply => {
    seen.push(r);
    const v = r.request.headers.get("Authorization");
    const p = v ? parseCredentials(v).params : undefined;
    const ok = p !== undefined && p.nonce === `nonce${nonce}` && p.response === digestResponse({
          username: p.username,
          realm: p.realm,
          password,
          method: "REGISTER",
          uri: p.uri,
          nonce: p.nonce,
          cnonce: p.cnonce,
          nc: parseInt(p.nc, 16),
          qop: "auth",
        });
    if (!ok) {
      return {
        status: 401,
        headers: [["WWW-Authenticate", `Digest realm="cli.test", nonce="nonce${++nonce}", qop="auth"`]],
      };
    }
    for (const c of r.contacts) {
      const e = c.expires ?? r.expires ?? 3600;
      if (e === 0) bindings.delete(c.uri);
      else bindings.set(c.uri, e);
    }
    return { status: 200, contacts: [...bindings].map(([uri, expires]) => ({ uri, expires })) };
  });
  return { ua, seen, bindings, uri: `sip:127.0.0.1:${ua.localAddress.port}` };
}

Deno.test({
  name:
    "register CLI: the callee registers with digest, traces to a file, never logs the password, unregisters on SIGTERM",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const reg = registrar(PASSWORD);
    const dir = await Deno.makeTempDir({ prefix: "voxpipe-register-cli-" });
    const procs = new ProcessGroup();
    try {
      const callee = procs.trackCallee(
        await spawnCallee({
          record: `${dir}/rec.wav`,
          calls: 0,
          timeoutMs: 30_000,
          extra: [
            "--set",
            "user=carol",
            "--set",
            `registrar=${reg.uri}`,
            "--set",
            "password_env=CLI_TEST_SIP_PASSWORD",
            "--log-level",
            "debug",
            `--sip-trace=${dir}/trace.txt`,
          ],
          env: { CLI_TEST_SIP_PASSWORD: PASSWORD },
        }),
      );
      await callee.proc.waitForOutput(/registered as sip:carol@127\.0\.0\.1 /, 15_000);
      assertEquals(reg.bindings.size, 1);
      const [contact] = reg.bindings.keys();
      assertEquals(contact, `sip:carol@127.0.0.1:${callee.port}`);
      callee.proc.kill("SIGTERM");
      const r = await callee.proc.result;
      assertEquals(r.code, 0, outputTail(r));
      // Stopping removed the binding: the last REGISTER asked Expires 0, same Call-ID.
      assertEquals(reg.bindings.size, 0);
      const last = reg.seen.at(-1)!;
      assertEquals(last.expires, 0);
      assertEquals(last.callId, reg.seen[0].callId);
      assertEquals(reg.seen.map((s) => s.cseq), [1, 2, 3, 4], "challenge + answer for the binding and for its removal");
      assertMatch(r.stderr, /unregistered sip:carol@127\.0\.0\.1 at sip:127\.0\.0\.1:\d+/);
      assertMatch(r.stderr, / DEBUG /);
      assert(!r.stderr.includes(PASSWORD) && !r.stdout.includes(PASSWORD), "the password appears in the log");

      // The trace: one block per datagram, both directions, with time and addresses; credentials masked.
      const trace = await Deno.readTextFile(`${dir}/trace.txt`);
      assert(!trace.includes(PASSWORD), "the password appears in the trace");
      const blocks = trace.split(/^-{47} /m).filter(Boolean);
      const port = reg.uri.split(":")[2];
      const sentRe = new RegExp(
        `^\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d\\.\\d{3}Z\\nUDP message sent \\(\\d+ bytes\\) ` +
          `from 127\\.0\\.0\\.1:${callee.port} to 127\\.0\\.0\\.1:${port}:\\n\\nREGISTER sip:127\\.0\\.0\\.1:${port} SIP/2\\.0\\n`,
      );
      const gotRe = new RegExp(
        `^\\S+Z\\nUDP message received \\(\\d+ bytes\\) from 127\\.0\\.0\\.1:${port} on 127\\.0\\.0\\.1:${callee.port}:` +
          `\\n\\nSIP/2\\.0 (401 Unauthorized|200 OK)\\n`,
      );
      // Four REGISTERs and their four answers (more blocks only if a retransmission was needed).
      assert(blocks.length >= 8, trace);
      for (const [i, b] of blocks.entries()) assert(sentRe.test(b) || gotRe.test(b), `block ${i}:\n${b}`);
      assertEquals(
        blocks.filter((b) => sentRe.test(b)).map((b) => /\nCSeq: (\d+)/.exec(b)![1]).filter((c, i, a) =>
          a[i - 1] !== c
        ),
        [
          "1",
          "2",
          "3",
          "4",
        ],
      );
      const answer = blocks.find((b) => b.includes("\nAuthorization:"))!;
      assertMatch(
        answer,
        /\nAuthorization: Digest username="carol", realm="cli\.test", nonce="nonce1", uri="sip:127\.0\.0\.1:\d+", response="…", cnonce="[0-9a-f]{32}", qop=auth, nc=00000001\n/,
      );
      assert(!/response="[0-9a-f]{32}"/.test(trace), "an unmasked response in the trace");
    } finally {
      await procs.stop();
      await reg.ua.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "register CLI: a wrong password and a registrar that never answers end the process with a clear reason",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const reg = registrar(PASSWORD);
    const silent = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
    const procs = new ProcessGroup();
    const dir = await Deno.makeTempDir({ prefix: "voxpipe-register-fail-" });
    try {
      // The caller with T1 = 50 ms, so that a REGISTER nobody answers times out after 64·T1 = 3.2 s.
      const file = JSON.parse(await Deno.readTextFile("pipelines/caller.json"));
      file.control.t1_ms = 50;
      await Deno.writeTextFile(`${dir}/caller-fast.json`, JSON.stringify(file));
      const wrong = procs.add(spawnCaller({
        to: "sip:nobody@127.0.0.1:9",
        file: "examples/audio/hello.wav",
        timeoutMs: 30_000,
        extra: ["--set", "user=carol", "--set", `registrar=${reg.uri}`, "--log-level", "debug"],
        env: { VOXPIPE_SIP_PASSWORD: "not-the-password" },
      }));
      const deaf = procs.add(spawnCli([
        "--pipeline",
        `${dir}/caller-fast.json`,
        "--set",
        "to=sip:nobody@127.0.0.1:9",
        "--set",
        "user=carol",
        "--set",
        `registrar=sip:127.0.0.1:${(silent.addr as Deno.NetAddr).port}`,
        "--set",
        `file=${repoPath("examples/audio/hello.wav")}`, // the copy's default is relative to the copy's directory
      ], { timeoutMs: 30_000 }));
      const [w, d] = await Promise.all([wrong.result, deaf.result]);
      assertEquals(w.code, 1, outputTail(w));
      assertEquals(
        failureLine(w.stderr),
        "voxpipe: registration failed: 401 Unauthorized (wrong password for carol@127.0.0.1?)",
      );
      assert(!w.stderr.includes("not-the-password"));
      assertEquals(reg.seen.length, 2, "one answer, then the rejection is final");
      assertEquals(d.code, 1, outputTail(d));
      assertMatch(
        failureLine(d.stderr)!,
        /^voxpipe: registration failed: no response from sip:127\.0\.0\.1:\d+ \(is the registrar running and reachable\?\)$/,
      );
    } finally {
      await procs.stop();
      await reg.ua.close();
      silent.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "sip trace CLI: --sip-trace alone traces a call to stderr (both sides' messages); --sip-trace= is a usage error",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "voxpipe-trace-cli-" });
    const procs = new ProcessGroup();
    try {
      const callee = procs.trackCallee(await spawnCallee({ record: `${dir}/rec.wav`, calls: 1, timeoutMs: 30_000 }));
      const caller = procs.add(spawnCaller({
        to: callee.uri,
        file: "examples/audio/hello.wav",
        timeoutMs: 30_000,
        extra: ["--sip-trace"],
      }));
      const [cr, ce] = await Promise.all([caller.result, callee.proc.result]);
      assertEquals(cr.code, 0, outputTail(cr));
      assertEquals(ce.code, 0, outputTail(ce));
      const sent = [
        ...cr.stderr.matchAll(/UDP message sent \(\d+ bytes\) from [\d.]+:\d+ to 127\.0\.0\.1:(\d+):\n\n(\S+)/g),
      ];
      const got = [
        ...cr.stderr.matchAll(/UDP message received \(\d+ bytes\) from 127\.0\.0\.1:(\d+) on [\d.]+:\d+:\n\n(.+)/g),
      ];
      // Consecutive repeats would be retransmissions (only under heavy load): compare without them.
      const distinct = (xs: string[]) => xs.filter((x, i) => xs[i - 1] !== x);
      assertEquals(distinct(sent.map((m) => m[2])), ["INVITE", "ACK", "BYE"]);
      assert(sent.every((m) => m[1] === String(callee.port)));
      // No 100 Trying: the sip control rings at once (SipUserAgentOptions.trying "when-slow").
      assertEquals(distinct(got.map((m) => m[2])), ["SIP/2.0 180 Ringing", "SIP/2.0 200 OK"]);
      assertMatch(
        cr.stderr,
        /UDP message received \(\d+ bytes\) [^\n]+\n\nSIP\/2\.0 200 OK\n(?:[^\n]+\n)*CSeq: 2 BYE\n/,
      );
      // The callee printed none (no flag).
      assert(!ce.stderr.includes("UDP message"), "the callee traced without --sip-trace");

      const bad = await spawnCli(["--pipeline", "pipelines/caller.json", "--sip-trace="], { timeoutMs: 20_000 }).result;
      assertEquals(bad.code, 2);
      assertEquals(
        failureLine(bad.stderr),
        "voxpipe: --sip-trace=: expected a file name after =, or the flag alone for stderr",
      );
      const help = await spawnCli(["--help"], { timeoutMs: 20_000 }).result;
      assertMatch(help.stdout, /--sip-trace\[=FILE\]/);
    } finally {
      await procs.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
