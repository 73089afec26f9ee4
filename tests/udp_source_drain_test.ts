/**
 * udp-source, ended gracefully (`Pipeline.end`, as a call's receive chain is
 * when the peer's BYE comes), still hands on every datagram the kernel had
 * already received for it. A callee that was not scheduled for a while reads
 * the BYE and the RTP packets queued before it in any order; the packets used
 * to be lost when the BYE came first (issue 11: a recording must hold every
 * frame that arrived). Here the process is blocked while another process sends
 * 50 datagrams, and the end is asked for before the event loop runs again:
 * nothing depends on timing.
 */
import assert from "node:assert/strict";
import { buildPipeline } from "../core/pipeline.ts";
import { Registry } from "../core/registry.ts";
import { definePlugin } from "../core/stage.ts";
import { z } from "zod";
import { plugins } from "../plugins/udp/mod.ts";
import type { Frame } from "../core/frame.ts";

/** Sends datagrams 1..n to 127.0.0.1:port from another process, synchronously: this process's event loop waits. */
function sendFromChildSync(port: number, n: number): void {
  const script = `const c = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
for (let i = 1; i <= ${n}; i++) await c.send(new Uint8Array([i]), { transport: "udp", hostname: "127.0.0.1", port: ${port} });
c.close();`;
  const r = new Deno.Command(Deno.execPath(), {
    args: ["eval", "--unstable-net", script],
    stdout: "null",
    stderr: "piped",
  })
    .outputSync();
  if (!r.success) throw new Error(`sender failed: ${new TextDecoder().decode(r.stderr)}`);
}

function collectingRegistry(got: number[]): Registry {
  const collect = definePlugin({
    name: "collect-sink",
    kind: "sink",
    description: "test sink: keeps the first byte of each datagram",
    accepts: [{ kind: "packet" }],
    options: z.object({}),
    create: () => ({
      write(f: Frame) {
        if (f.kind === "packet") got.push(f.data[0]);
        return true;
      },
    }),
  });
  return new Registry([...plugins, collect]);
}

Deno.test("udp-source ended gracefully: the datagrams already queued in the kernel reach the chain, in order", async () => {
  const got: number[] = [];
  const p = await buildPipeline("rx", [
    { use: "udp-source", bind: "127.0.0.1", port: 0, port_range: "30000-39999" },
    { use: "collect-sink" },
  ], { registry: collectingRegistry(got) });
  const port = p.stats()[0].extra!.port as number;
  p.start();
  try {
    await new Promise((r) => setTimeout(r, 0)); // the source is listening
    sendFromChildSync(port, 50); // all 50 wait in the socket's receive queue: this process did not run meanwhile
    const r = await p.end(60_000); // asked before the event loop reads any of them
    assert.equal(r.reason, "stopped");
    assert.deepEqual(got, Array.from({ length: 50 }, (_, i) => i + 1));
  } finally {
    await p.stop();
  }
});

Deno.test("udp-source stopped (not ended): it ends at once, without draining", async () => {
  const got: number[] = [];
  const p = await buildPipeline("rx", [
    { use: "udp-source", bind: "127.0.0.1", port: 0, port_range: "30000-39999" },
    { use: "collect-sink" },
  ], { registry: collectingRegistry(got) });
  const port = p.stats()[0].extra!.port as number;
  p.start();
  await new Promise((r) => setTimeout(r, 0));
  sendFromChildSync(port, 50);
  const r = await p.stop();
  assert.equal(r.reason, "stopped");
  assert.ok(got.length < 50, `a stop does not wait for the queue (got ${got.length})`);
});
