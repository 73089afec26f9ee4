/**
 * No wall of `ALSA lib ...` lines: each PortAudio initialization makes
 * libasound print a line per device it cannot open (sixty without a sound
 * card); voxpipe prints one summary line instead. And an ALSA configuration
 * without a `default` PCM, which makes PortAudio abort the process, is refused
 * with a message. Run in subprocesses: `ALSA_CONFIG_PATH` is read once, when
 * PortAudio first initializes.
 */
import { assert, assertEquals, assertMatch } from "./assert.ts";
import { summarizeAlsaLines } from "../plugins/audio-device/_alsa.ts";
import { alsaSandbox, skipAudio, warnSkip } from "./fixtures/alsa/run.ts";
import { runBounded } from "./media_util.ts";
import { repoPath } from "./util.ts";

async function listDevices(env: Record<string, string>, clear: string[] = []) {
  const cmdEnv = { ...Deno.env.toObject(), ...env };
  for (const k of clear) delete cmdEnv[k];
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", repoPath("mod.ts"), "--list-devices"],
    cwd: repoPath("."),
    env: cmdEnv,
    clearEnv: true,
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(60_000),
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, signal: out.signal, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

const alsaLines = (text: string) => text.split("\n").filter((l) => l.startsWith("ALSA lib "));

Deno.test("summarizeAlsaLines: one line, saying when there is no sound card", () => {
  assertEquals(summarizeAlsaLines([]), undefined);
  assertMatch(
    summarizeAlsaLines([
      "ALSA lib confmisc.c:855:(parse_card) cannot find card '0'",
      "ALSA lib pcm.c:2666:(snd_pcm_open_noupdate) Unknown PCM sysdefault",
    ])!,
    /^voxpipe: ALSA printed 2 lines while PortAudio probed the audio devices \(no sound card\); set VOXPIPE_NATIVE_STDERR=keep/,
  );
  assertMatch(
    summarizeAlsaLines(["ALSA lib pcm_file.c:935:(snd_pcm_file_open) open /x/c.raw for reading failed: No such file"])!,
    /ALSA printed 1 line .*\(first: open \/x\/c\.raw for reading failed: No such file\)/,
  );
});

Deno.test({
  name: "--list-devices: the tests' ALSA configuration lists its devices, with no ALSA lines",
  ignore: skipAudio,
  async fn() {
    warnSkip();
    const sandbox = await alsaSandbox();
    try {
      const r = await listDevices({ ALSA_CONFIG_PATH: sandbox.config });
      assertEquals(r.code, 0, r.stderr);
      assertMatch(r.stdout, / ALSA +default +\(default input, default output\)$/m);
      assertEquals(r.stderr, "");
      // Its capture file missing: libasound complains; one summary line, naming the first problem.
      await Deno.remove(sandbox.capture);
      const m = await listDevices({ ALSA_CONFIG_PATH: sandbox.config });
      assertEquals(m.code, 0, m.stderr);
      assertEquals(alsaLines(m.stderr), []);
      const lines = m.stderr.trim().split("\n");
      assertEquals(lines.length, 1, m.stderr);
      assertMatch(lines[0], /ALSA printed \d+ lines? .*first: open .*capture\.raw for reading failed/);
      // VOXPIPE_NATIVE_STDERR=keep lets them through.
      const k = await listDevices({ ALSA_CONFIG_PATH: sandbox.config, VOXPIPE_NATIVE_STDERR: "keep" });
      assert(alsaLines(k.stderr).length >= 1, k.stderr);
    } finally {
      await sandbox.cleanup();
    }
  },
});

Deno.test({
  name: "--list-devices with an empty ALSA configuration: a message, not an abort",
  ignore: skipAudio,
  async fn() {
    const dir = await Deno.makeTempDir();
    try {
      const config = `${dir}/empty.conf`;
      await Deno.writeTextFile(config, "");
      const r = await listDevices({ ALSA_CONFIG_PATH: config });
      assertEquals(r.signal, null, `killed by ${r.signal}: ${r.stderr}`);
      assertEquals(r.code, 1, r.stderr);
      assertMatch(
        r.stderr,
        /^voxpipe: the ALSA configuration \(ALSA_CONFIG_PATH=.*empty\.conf\) defines no "default" PCM/,
      );
      assert(!/Assertion|ALSA lib/.test(r.stderr), r.stderr);
      // Only a null device (PortAudio ignores it): the same refusal.
      await Deno.writeTextFile(config, "pcm.null { type null }\n");
      const n = await listDevices({ ALSA_CONFIG_PATH: config });
      assertEquals([n.signal, n.code], [null, 1], n.stderr);
      assertMatch(n.stderr, /defines no "default" PCM device \(it defines null\)/);
      // A speaker in a pipeline: the same message, with the file and JSON path, instead of an abort.
      const s = await runBounded(Deno.execPath(), [
        "run",
        "-A",
        repoPath("mod.ts"),
        "--check",
        repoPath("pipelines/callee-speaker.json"),
      ], { env: { ALSA_CONFIG_PATH: config }, timeoutMs: 60_000 });
      assertEquals([s.signal ?? null, s.code], [null, 1], s.stderr);
      assertMatch(s.stderr, /pipelines\.receive\[5\]: speaker: the ALSA configuration .* defines no "default" PCM/);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "--list-devices with the system's ALSA configuration: at most one line about ALSA",
  ignore: skipAudio,
  async fn() {
    const r = await listDevices({}, ["ALSA_CONFIG_PATH"]);
    assertEquals(r.code, 0, r.stderr);
    assertEquals(alsaLines(r.stderr), []);
    assert(r.stderr.split("\n").filter((l) => /ALSA/.test(l)).length <= 1, r.stderr);
  },
});
