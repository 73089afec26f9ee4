/**
 * The first run's install output stays short: `scripts/setup.sh` prints one
 * line per step, and a step's own output (apt, npm, node-gyp) only when it
 * fails. Run on a copy of the scripts, with stand-ins for apt-get and deno on a
 * PATH of their own: nothing is installed, the checkout is not touched.
 */
import { assert, assertEquals, assertMatch } from "./assert.ts";
import { repoPath } from "./util.ts";

const TOOLS = ["bash", "dirname", "ls", "id", "mktemp", "rm", "tail", "sed", "mkdir", "mv", "touch"];

/** A directory with the scripts, a bin/ of stand-ins and of the few real tools the scripts use. */
async function sandbox(present: string[]): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "voxpipe-setup-" });
  await Deno.mkdir(`${dir}/scripts`);
  for (const f of ["setup.sh", "setup_audio.sh", "build_native.sh"]) {
    await Deno.copyFile(repoPath(`scripts/${f}`), `${dir}/scripts/${f}`);
  }
  await Deno.mkdir(`${dir}/native`);
  for (const f of ["pacer.c", "resample.c", "g711.c"]) {
    await Deno.copyFile(repoPath(`native/${f}`), `${dir}/native/${f}`);
  }
  await Deno.mkdir(`${dir}/bin`);
  for (const t of TOOLS) {
    const which = new Deno.Command("bash", { args: ["-c", `command -v ${t}`], stdout: "piped" }).outputSync();
    await Deno.symlink(new TextDecoder().decode(which.stdout).trim(), `${dir}/bin/${t}`);
  }
  const stub = async (name: string, body: string) => {
    await Deno.writeTextFile(`${dir}/bin/${name}`, `#!/bin/bash\n${body}\n`);
    await Deno.chmod(`${dir}/bin/${name}`, 0o755);
  };
  for (const t of present) await stub(t, "exit 0");
  // apt-get and deno talk a lot, like the real ones; STUB_FAIL makes them fail.
  await stub(
    "apt-get",
    'for i in $(seq 1 40 2>/dev/null || echo 1 2 3); do echo "Get:$i http://deb.debian.org/debian trixie/main $*"; done\n' +
      '[ -n "$STUB_FAIL" ] && { echo "E: Unable to locate package $STUB_FAIL" >&2; exit 100; }; exit 0',
  );
  await stub("debconf-set-selections", "cat >/dev/null 2>&1; exit 0");
  await stub(
    "deno",
    'i=0; while [ $i -lt 80 ]; do echo "Download https://registry.npmjs.org/pkg-$i"; i=$((i+1)); done\n' +
      'echo "gyp info it worked if it ends with ok" >&2\n' +
      '[ -n "$STUB_DENO_FAIL" ] && { echo "gyp ERR! build error: $STUB_DENO_FAIL" >&2; exit 1; }\n' +
      "mkdir -p node_modules/naudiodon/build/Release 2>/dev/null || /bin/mkdir -p node_modules/naudiodon/build/Release\n" +
      ": > node_modules/naudiodon/build/Release/naudiodon.node; exit 0",
  );
  // cc: writes the file named after -o (STUB_CC_FAIL makes it fail like a compile error).
  await stub(
    "cc",
    '[ -n "$STUB_CC_FAIL" ] && { echo "pacer.c:1: error: $STUB_CC_FAIL" >&2; exit 1; }\n' +
      'while [ $# -gt 0 ]; do [ "$1" = -o ] && { touch "$2"; exit 0; }; shift; done; exit 1',
  );
  await Deno.mkdir(`${dir}/node/include/node`, { recursive: true });
  await Deno.writeTextFile(`${dir}/node/include/node/node_api.h`, "");
  return dir;
}

async function setup(dir: string, env: Record<string, string> = {}) {
  const out = await new Deno.Command(`${dir}/bin/bash`, {
    args: [`${dir}/scripts/setup.sh`],
    env: { PATH: `${dir}/bin`, HOME: dir, TMPDIR: dir, npm_config_nodedir: `${dir}/node`, ...env },
    clearEnv: true,
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(60_000),
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

const ALL = [
  "sipp",
  "baresip",
  "ffmpeg",
  "sox",
  "espeak-ng",
  "gst-launch-1.0",
  "tshark",
  "chromium",
  "make",
  "g++",
  "cc",
  "python3",
];
const root = Deno.uid() === 0;

Deno.test("setup.sh: one line per step when everything goes well", async () => {
  const dir = await sandbox(ALL);
  try {
    const r = await setup(dir);
    assertEquals(r.code, 0, r.stdout + r.stderr);
    const lines = r.stdout.trim().split("\n");
    // Debian packages (present, or installed in one line), the npm/binding step, the native libraries, done.
    assert(lines.length <= 4, r.stdout);
    assertMatch(r.stdout, /^setup: npm dependencies and the naudiodon binding \(speaker, microphone\): ok$/m);
    assertMatch(
      r.stdout,
      /^setup: native libraries \(native\/build: libvoxpacer.so, libvoxresample.so, libvoxg711.so\): ok$/m,
    );
    assert((await Deno.stat(`${dir}/native/build/libvoxpacer.so`)).isFile);
    assert((await Deno.stat(`${dir}/native/build/libvoxresample.so`)).isFile);
    assert((await Deno.stat(`${dir}/native/build/libvoxg711.so`)).isFile);
    assertMatch(lines.at(-1)!, /^setup: done$/);
    assert(!/Download|gyp|Get:/.test(r.stdout + r.stderr), r.stdout + r.stderr);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name: "setup.sh: apt output stays hidden when it works, and is shown when it fails",
  ignore: !root, // the Debian step runs only as root (or with sudo)
  async fn() {
    const dir = await sandbox(ALL.filter((t) => t !== "sox"));
    try {
      const r = await setup(dir);
      assertEquals(r.code, 0, r.stdout + r.stderr);
      assertMatch(r.stdout, /^setup: Debian packages \(.*sox.*\): ok$/m);
      assert(!/Get:/.test(r.stdout + r.stderr), r.stdout + r.stderr);
      const f = await setup(dir, { STUB_FAIL: "sox" });
      assertMatch(f.stderr, /^setup: Debian packages \(.*sox.*\): FAILED \(exit 100\); its last lines:$/m);
      assertMatch(f.stderr, /E: Unable to locate package sox/);
      assertMatch(f.stderr, /^setup: full output in /m);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("setup.sh: a native library that does not compile shows the compiler's lines and exits 1", async () => {
  const dir = await sandbox(ALL);
  try {
    const r = await setup(dir, { STUB_CC_FAIL: "expected ';'" });
    assertEquals(r.code, 1);
    assertMatch(
      r.stderr,
      /setup: native libraries \(native\/build: libvoxpacer.so, libvoxresample.so, libvoxg711.so\): FAILED/,
    );
    assertMatch(r.stderr, /\| pacer.c:1: error: expected ';'/);
    assertMatch(r.stderr, /the native libraries were not built/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("setup.sh: a failing build shows its last lines and exits 1", async () => {
  const dir = await sandbox(ALL);
  try {
    const r = await setup(dir, { STUB_DENO_FAIL: "make failed" });
    assertEquals(r.code, 1);
    assertMatch(r.stderr, /setup: npm dependencies and the naudiodon binding \(speaker, microphone\): FAILED/);
    assertMatch(r.stderr, /\| gyp ERR! build error: make failed/);
    assertMatch(r.stderr, /the naudiodon binding was not built/);
    // Only the tail: not the 80 download lines.
    assert(r.stderr.split("\n").filter((l) => /Download/.test(l)).length < 30, r.stderr);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
