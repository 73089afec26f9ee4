/**
 * The G.711 loops in C (native/g711.c, loaded by plugins/g711/_native_g711.ts): they load here (scripts/setup.sh
 * builds them), they give the tables' bytes for every sample and every code (in the shipped build and in one built
 * for each narrower instruction set), long runs go to them once they add up to two minutes of audio and a call's 20 ms
 * frames never do (the library is not even loaded for those), and without FFI the JavaScript loops give the same
 * bytes.
 *
 * @module
 */
import { assert, assertEquals } from "./assert.ts";
import {
  ALAW_DECODE,
  ALAW_ENCODE,
  decodeWith,
  encodeWith,
  MULAW_DECODE,
  MULAW_ENCODE,
} from "../plugins/g711/tables.ts";
import { g711Loops, g711LoopsProblem, NATIVE_MIN_SAMPLES, useG711Library } from "../plugins/g711/_native_g711.ts";
import { repoPath } from "./util.ts";
import { disassemble, forEachIsaBuild, runScript } from "./native_util.ts";

/** Every 16-bit sample, −32 768 to 32 767. */
function everySample(): Int16Array {
  const x = new Int16Array(65536);
  for (let i = 0; i < x.length; i++) x[i] = i - 32768;
  return x;
}

/** Every code byte, four times over in a scrambled order (a run long enough for the C loop). */
function everyCode(): Uint8Array {
  const x = new Uint8Array(1024);
  for (let i = 0; i < x.length; i++) x[i] = (i * 37 + (i >> 8)) & 0xff;
  return x;
}

function firstDifference(a: ArrayLike<number>, b: ArrayLike<number>, what: (i: number) => string): string {
  if (a.length !== b.length) return `lengths ${a.length} and ${b.length}`;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return `${what(i)}: ${a[i]} and ${b[i]}`;
  return "none";
}

/** The loaded library's encoders and decoder against the tables; `build` names it in failure messages. */
function assertSameAsTables(build: string): void {
  const c = g711Loops();
  assert(c, `${build}: ${g711LoopsProblem()}`);
  const samples = everySample();
  for (
    const [name, table, encodeC] of [["PCMU", MULAW_ENCODE, c.mulawEncode], [
      "PCMA",
      ALAW_ENCODE,
      c.alawEncode,
    ]] as const
  ) {
    const want = new Uint8Array(samples.length);
    for (let i = 0; i < samples.length; i++) want[i] = table[samples[i] & 0xffff];
    const got = new Uint8Array(samples.length);
    encodeC(samples, got, samples.length);
    assertEquals(firstDifference(got, want, (i) => `${build}: ${name} sample ${samples[i]}`), "none");
    // An unaligned start and a length that leaves every vector loop a tail; nothing written past n.
    const from = 13, n = samples.length - 13 - 37;
    const part = new Uint8Array(samples.length).fill(0xaa);
    encodeC(samples.subarray(from), part.subarray(from), n);
    assertEquals(
      firstDifference(
        part.subarray(from, from + n),
        want.subarray(from, from + n),
        (i) => `${build}: ${name} cut at ${i}`,
      ),
      "none",
    );
    assertEquals(part[from - 1], 0xaa, `${build}: ${name} wrote before the run`);
    assertEquals(part[from + n], 0xaa, `${build}: ${name} wrote past the run`);
  }
  const codes = everyCode();
  for (const [name, table] of [["PCMU", MULAW_DECODE], ["PCMA", ALAW_DECODE]] as const) {
    const got = new Int16Array(codes.length + 1).fill(12345);
    c.decode(codes.subarray(1), got.subarray(1), codes.length - 1, table);
    const want = Array.from(codes.subarray(1), (b) => table[b]);
    assertEquals(
      firstDifference(got.subarray(1, codes.length), want, (i) => `${build}: ${name} code ${codes[i + 1]}`),
      "none",
    );
    assertEquals(got[0], 12345, `${build}: ${name} decode wrote before the run`);
  }
}

Deno.test("native G.711 loops: the library loads here, and gives the tables' bytes for every sample and code", () => {
  const why = g711LoopsProblem();
  assert(why === undefined, `the native G.711 loops cannot run: ${why}`);
  assertSameAsTables("the shipped build");
});

Deno.test("native G.711 loops: encodeWith and decodeWith give the tables' bytes for runs long and short", () => {
  const samples = everySample();
  for (const [table, decodeTable] of [[MULAW_ENCODE, MULAW_DECODE], [ALAW_ENCODE, ALAW_DECODE]] as const) {
    for (const n of [NATIVE_MIN_SAMPLES - 1, NATIVE_MIN_SAMPLES, 8000, samples.length]) {
      const from = samples.length - n; // the loudest samples at the end of the range: clipping is in every run
      const run = samples.subarray(from);
      const codes = new Uint8Array(n);
      encodeWith(table, run, codes, n);
      const decoded = new Int16Array(n);
      decodeWith(decodeTable, codes, decoded, n);
      for (let i = 0; i < n; i++) {
        const code = table[run[i] & 0xffff];
        if (codes[i] !== code || decoded[i] !== decodeTable[code]) {
          assert(false, `n ${n}, sample ${run[i]}: code ${codes[i]} (want ${code}), decoded ${decoded[i]}`);
        }
      }
    }
  }
});

Deno.test("native G.711 loops: the AVX2 and baseline bodies too, each built alone", async () => {
  try {
    await forEachIsaBuild("g711-isa-", async (isa, dir) => {
      const lib = `${dir}/libvoxg711-${isa}.so`;
      assert(!(await disassemble(lib)).includes("%zmm"), `${isa}: 512-bit registers in the build`);
      const problem = useG711Library(new URL(`file://${lib}`));
      assertEquals(problem, undefined, `${isa}: ${problem}`);
      assertSameAsTables(`built for ${isa} alone`);
    });
  } finally {
    useG711Library();
  }
});

// Encodes a 20 ms frame, one-second frames up to one short of NATIVE_AFTER_SAMPLES, then one more, saying each time
// whether the library is mapped into the process (reading /proc/self/maps needs --allow-all) and whether the codes
// are the table's; then why the C loops do not run, if they do not.
const PROBE = `
import { encodeWith, MULAW_ENCODE } from ${JSON.stringify(repoPath("plugins/g711/tables.ts"))};
import { g711LoopsProblem, NATIVE_AFTER_SAMPLES } from ${JSON.stringify(repoPath("plugins/g711/_native_g711.ts"))};
const mapped = () => {
  try {
    return Deno.readTextFileSync("/proc/self/maps").includes("libvoxg711") ? "mapped" : "not mapped";
  } catch {
    return "maps unreadable"; // without --allow-all
  }
};
const encode = (n) => {
  const x = new Int16Array(n).map((_, i) => Math.round(30000 * Math.sin(i / 5)));
  const codes = new Uint8Array(n);
  encodeWith(MULAW_ENCODE, x, codes, n);
  return codes.every((c, i) => c === MULAW_ENCODE[x[i] & 0xffff]);
};
const out = [];
const first = encode(160) ? "right" : "wrong";
out.push("160 " + mapped() + " " + first);
let right = true;
const before = Math.ceil(NATIVE_AFTER_SAMPLES / 8000) - 1;
for (let i = 0; i < before; i++) right = encode(8000) && right;
out.push(before + " s " + mapped() + " " + (right ? "right" : "wrong"));
const last = encode(8000) ? "right" : "wrong";
out.push("1 s more " + mapped() + " " + last);
out.push(g711LoopsProblem() ?? "loads");
console.log(out.join(" | "));
`;

Deno.test("native G.711 loops: loaded once long runs add up to two minutes, never for a call's frames; without FFI, JavaScript", async () => {
  const all = await runScript(PROBE, ["-A"]);
  assertEquals(all.stdout, "160 not mapped right | 119 s not mapped right | 1 s more mapped right | loads", all.stderr);
  const noFfi = await runScript(PROBE, ["--allow-read"]);
  assertEquals(
    noFfi.stdout,
    "160 maps unreadable right | 119 s maps unreadable right | 1 s more maps unreadable right | FFI is not allowed (--allow-ffi)",
    noFfi.stderr,
  );
});
