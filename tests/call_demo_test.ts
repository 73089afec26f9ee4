/**
 * `deno task demo`, the README's first command: a real call on this machine, recorded. Run twice into the same
 * `--out`, each run must name the file its own call wrote (the callee numbers a recording whose name exists) and that
 * file must hold the call's audio, while the first run's recording stays as it was.
 */
import { notDeepStrictEqual } from "node:assert/strict";
import { assert, assertEquals, assertMatch } from "./assert.ts";
import { repoPath } from "./util.ts";

const HEADER = 44;

async function runDemo(out: string): Promise<{ path: string; bytes: number; text: string }> {
  const r = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", repoPath("examples/call_demo.ts"), "--out", out],
    cwd: repoPath("."),
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(120_000),
  }).output();
  const text = new TextDecoder().decode(r.stdout) + new TextDecoder().decode(r.stderr);
  assertEquals(r.code, 0, text);
  const m = /\nrecording: (.+) \((\d+) bytes\)/.exec(text);
  assert(m, `no recording line in the demo's output:\n${text}`);
  return { path: m[1], bytes: Number(m[2]), text };
}

/** Seconds of 8 kHz 16-bit mono audio in the WAV at `path`, after checking its header agrees with its size. */
function wavSeconds(path: string): number {
  const bytes = Deno.readFileSync(path);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  assertEquals(new TextDecoder().decode(bytes.subarray(0, 4)), "RIFF", path);
  assertEquals(view.getUint32(4, true), bytes.length - 8, `${path}: RIFF size`);
  assertEquals(view.getUint32(24, true), 8000, `${path}: sample rate`);
  assertEquals(view.getUint32(40, true), bytes.length - HEADER, `${path}: data size`);
  return (bytes.length - HEADER) / 2 / 8000;
}

Deno.test("demo: each run reports the recording its call wrote, also when the --out file exists", async () => {
  const dir = await Deno.makeTempDir({ prefix: "voxpipe-demo-" });
  try {
    const out = `${dir}/demo.wav`;
    const first = await runDemo(out);
    assertEquals(first.path, out);
    const firstBytes = Deno.readFileSync(out);
    assertEquals(first.bytes, firstBytes.length);
    // examples/audio/hello.wav lasts ~5 s; the recording holds it (losses are concealed, so the length stays).
    assert(wavSeconds(out) > 4, `${out}: ${wavSeconds(out)} s`);

    const second = await runDemo(out);
    notDeepStrictEqual(second.path, out, "the second run reported the first run's file");
    assertMatch(second.path, /demo-2\.wav$/);
    assertEquals(second.bytes, Deno.statSync(second.path).size);
    assert(wavSeconds(second.path) > 4, `${second.path}: ${wavSeconds(second.path)} s`);
    assertEquals(Deno.readFileSync(out), firstBytes, "the first recording changed");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
