/**
 * Helpers of the tests of voxpipe's native libraries (`tests/resample_native_test.ts`, `tests/g711_native_test.ts`):
 * each body of a library built alone, its disassembly, and a script run in a process of its own.
 *
 * @module
 */
import { assert } from "./assert.ts";
import { repoPath } from "./util.ts";

/** The CPU's flags, from /proc/cpuinfo (empty where it cannot be read). */
export function cpuFlags(): Set<string> {
  try {
    const line = Deno.readTextFileSync("/proc/cpuinfo").split("\n").find((l) => l.startsWith("flags"));
    return new Set(line ? line.slice(line.indexOf(":") + 1).trim().split(/\s+/) : []);
  } catch {
    return new Set();
  }
}

/**
 * Builds the libraries for each instruction set this CPU runs below AVX-512 (`scripts/build_native.sh --isa`: the
 * baseline, and AVX2 where the CPU has it) into a temporary directory, and calls `check` with each set's name and the
 * directory; removes the directory after. `target_clones` runs only the widest body the CPU has: built for one set
 * each, the other bodies run here too.
 */
export async function forEachIsaBuild(
  prefix: string,
  check: (isa: "sse2" | "avx2", dir: string) => Promise<void> | void,
): Promise<void> {
  await Deno.mkdir(repoPath("out"), { recursive: true });
  const dir = await Deno.makeTempDir({ dir: repoPath("out"), prefix });
  try {
    for (const isa of cpuFlags().has("avx2") ? ["sse2", "avx2"] as const : ["sse2"] as const) {
      const built = await new Deno.Command("bash", {
        args: [repoPath("scripts/build_native.sh"), "--isa", isa, dir],
        stdout: "piped",
        stderr: "piped",
      }).output();
      assert(built.success, `build_native.sh --isa ${isa}: ${new TextDecoder().decode(built.stderr)}`);
      await check(isa, dir);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** The disassembly of a library (`objdump -d`). */
export async function disassemble(lib: string): Promise<string> {
  const dis = await new Deno.Command("objdump", { args: ["-d", lib], stdout: "piped", stderr: "piped" }).output();
  assert(dis.success, `objdump -d ${lib}: ${new TextDecoder().decode(dis.stderr)}`);
  return new TextDecoder().decode(dis.stdout);
}

/** Runs a script with the given permissions and environment in a Deno process of its own; its stdout and stderr. */
export async function runScript(
  code: string,
  perms: string[],
  env: Record<string, string> = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  await Deno.mkdir(repoPath("out"), { recursive: true });
  const file = await Deno.makeTempFile({ dir: repoPath("out"), suffix: ".ts" });
  try {
    await Deno.writeTextFile(file, code);
    const r = await new Deno.Command(Deno.execPath(), {
      args: ["run", ...perms, file],
      env,
      stdout: "piped",
      stderr: "piped",
    }).output();
    const dec = new TextDecoder();
    return { code: r.code, stdout: dec.decode(r.stdout).trim(), stderr: dec.decode(r.stderr) };
  } finally {
    await Deno.remove(file);
  }
}
