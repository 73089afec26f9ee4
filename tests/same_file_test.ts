/**
 * A sink that would write the file a source of the same run reads is refused at start and by `--check`, naming both:
 * the sink opens its file for writing (truncated) before the source has read it, which destroyed the input.
 */
import { assert, assertEquals, assertMatch, assertRejects } from "./assert.ts";
import { spawnCli } from "./media_util.ts";
import { repoPath } from "./util.ts";
import { createRegistry } from "../mod.ts";
import { ConfigError } from "../core/errors.ts";
import { PipelineRunner } from "../core/runner.ts";
import { sameFile } from "../core/paths.ts";

const TRANSCODE = repoPath("pipelines/transcode.json");

async function withInput(fn: (dir: string, input: string, bytes: Uint8Array) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir();
  try {
    const input = `${dir}/in.wav`;
    await Deno.copyFile(repoPath("examples/audio/hello.wav"), input);
    await fn(dir, input, await Deno.readFile(input));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("CLI: --set file=X --set out=X is refused (exit 1, both paths named) and X is left as it was", async () => {
  await withInput(async (_dir, input, bytes) => {
    for (const mode of ["--pipeline", "--check"]) {
      const r = await spawnCli([mode, TRANSCODE, "--set", `file=${input}`, "--set", `out=${input}`], {
        timeoutMs: 60_000,
      }).result;
      assertEquals(r.code, 1, r.stderr);
      assertMatch(
        r.stderr,
        /pipelines\.main\[4\]\.path: wav-sink would write .*in\.wav, the file file-source reads \(pipelines\.main\[0\]\.path: .*in\.wav\)/,
      );
      assertEquals(await Deno.readFile(input), bytes, `${mode}: the input was changed`);
    }
  });
});

Deno.test("the same file under another name (a symbolic link, a hard link, ../) is refused too; another file is not", async () => {
  await withInput(async (dir, input, bytes) => {
    await Deno.symlink(input, `${dir}/link.wav`);
    await Deno.link(input, `${dir}/hard.wav`);
    await Deno.mkdir(`${dir}/sub`);
    for (
      const [file, out] of [[`${dir}/link.wav`, input], [input, `${dir}/hard.wav`], [input, `${dir}/sub/../in.wav`]]
    ) {
      const runner = await PipelineRunner.load(TRANSCODE, {
        registry: createRegistry(),
        set: [`file=${file}`, `out=${out}`],
      });
      const e = await assertRejects(() => runner.run(), ConfigError);
      assertMatch(e.message, /wav-sink would write/);
      assertEquals(await Deno.readFile(input), bytes);
    }
    const ok = await PipelineRunner.load(TRANSCODE, {
      registry: createRegistry(),
      set: [`file=${input}`, `out=${dir}/out.wav`],
    });
    assertEquals((await ok.run()).code, 0);
    assert(sameFile(`${dir}/out.wav`, `${dir}/sub/../out.wav`));
    assert(!sameFile(`${dir}/out.wav`, input));
  });
});
