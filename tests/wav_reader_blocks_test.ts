/**
 * The WAV reader's block sizes: a reader for a chain that ends in a real-time
 * sink reads small blocks (16–64 KB), an offline one large blocks (256 KB–1 MB),
 * and both hand out the same samples.
 *
 * @module
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { readWavInfo } from "../plugins/wav/wav_format.ts";
import { WavStreamReader } from "../plugins/wav/wav_reader.ts";
import { writeWav } from "./media_util.ts";

Deno.test("WavStreamReader: real-time readers read 16-64 KB blocks, offline ones 256 KB-1 MB; same samples", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = join(dir, "long.wav");
    const samples = Int16Array.from({ length: 600_000 }, (_, i) => ((i * 7919) % 65536) - 32768); // 1.2 MB of data
    await writeWav(path, samples, 8000);
    const info = await readWavInfo(path);
    const read = async (realtime: boolean) => {
      const r = await WavStreamReader.open(info, 160, false, "test", false, realtime);
      const out = new Int16Array(samples.length);
      let firstBlock = -1, n = 0;
      try {
        for (;;) {
          let f = r.next();
          if (f instanceof Promise) f = await f;
          if (!f) break;
          // The first frame is out once the first block was read; the read ahead may have added a second block.
          if (firstBlock < 0) firstBlock = r.bytesRead;
          out.set(f, n);
          n += f.length;
        }
      } finally {
        r.close();
      }
      return { out: out.subarray(0, n), firstBlock };
    };
    const live = await read(true);
    const offline = await read(false);
    assert.deepEqual(live.out, samples);
    assert.deepEqual(offline.out, samples);
    // Blocks are whole frames (320 bytes here): a little under the round sizes.
    assert.ok(live.firstBlock >= 15 * 1024 && live.firstBlock <= 2 * 64 * 1024, `real time: ${live.firstBlock} bytes`);
    assert.ok(offline.firstBlock >= 250 * 1024, `offline: ${offline.firstBlock} bytes`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
