/**
 * End to end over loopback, every part in its own process: a relay
 * (`pipelines/relay.json`) and two file-driven clients
 * (`pipelines/relay-client-file.json`), each targeting the other. Each
 * recording must equal what the other sent, through G.711, sample by sample;
 * the relay's counters (STATS over its TCP port) must show every datagram
 * passing through it.
 */
import { assert, assertEquals, assertMatch } from "./assert.ts";
import { assertSampleExact, type BoundedProcess, readWav, spawnCli, writeWav } from "./media_util.ts";
import { freeUdpPort, g711Audio, ProcessGroup } from "./sip_util.ts";
import { parseReply } from "../plugins/relay/protocol.ts";
import type { RelayStats } from "../plugins/relay/server.ts";

/** A TCP port that was free a moment ago. */
function freeTcpPort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/** Asks the relay for its counters (STATS over a TCP connection). */
async function relayStats(port: number): Promise<RelayStats> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    await conn.write(new TextEncoder().encode("STATS\n"));
    const dec = new TextDecoder();
    let text = "";
    const buf = new Uint8Array(65536);
    while (!text.includes("\n")) {
      const n = await conn.read(buf);
      if (n === null) break;
      text += dec.decode(buf.subarray(0, n));
    }
    const reply = parseReply(text.split("\n")[0]);
    assert(reply?.type === "STATS", `STATS reply: ${text.slice(0, 200)}`);
    return JSON.parse(reply.json) as RelayStats;
  } finally {
    conn.close();
  }
}

function client(
  relayPort: number,
  port: number,
  target: number,
  file: string,
  out: string,
  codec: string,
  extra: string[] = [],
): BoundedProcess {
  return spawnCli([
    "--pipeline",
    "pipelines/relay-client-file.json",
    "--set",
    `relay=127.0.0.1:${relayPort}`,
    "--set",
    `port=${port}`,
    "--set",
    `target=127.0.0.1:${target}`,
    "--set",
    `file=${file}`,
    "--set",
    `out=${out}`,
    "--set",
    `codec=${codec}`,
    ...extra,
  ], { timeoutMs: 60_000 });
}

function relayProcess(tcp: number, udp: number): BoundedProcess {
  return spawnCli([
    "--pipeline",
    "pipelines/relay.json",
    "--set",
    `port=${tcp}`,
    "--set",
    `udp_port=${udp}`,
    "--set",
    "bind=127.0.0.1",
  ], { timeoutMs: 90_000, stopSignal: "SIGINT" });
}

for (const codec of ["PCMU", "PCMA"] as const) {
  Deno.test({
    name: `relay e2e (${codec}): two file clients through one relay; each hears the other sample-exact`,
    sanitizeResources: false,
    sanitizeOps: false,
    async fn() {
      const dir = await Deno.makeTempDir({ prefix: "voxpipe-relay-" });
      const procs = new ProcessGroup();
      try {
        // G.711-representable audio: what arrives must equal it exactly. A: 2.5 s, B: 1.8 s (different lengths,
        // so a mix-up shows).
        const a = g711Audio(codec, 2.5, 11), b = g711Audio(codec, 1.8, 12);
        await writeWav(`${dir}/a.wav`, a.samples, 8000);
        await writeWav(`${dir}/b.wav`, b.samples, 8000);
        const tcp = freeTcpPort(), udp = freeUdpPort();
        const portA = freeUdpPort(), portB = freeUdpPort();
        const relay = procs.add(spawnCli([
          "--pipeline",
          "pipelines/relay.json",
          "--set",
          `port=${tcp}`,
          "--set",
          `udp_port=${udp}`,
          "--set",
          "bind=127.0.0.1",
        ], { timeoutMs: 90_000, stopSignal: "SIGINT" }));
        await relay.waitForOutput(/\[RELAY\] listening on tcp 127\.0\.0\.1:\d+/, 30_000);
        const ca = procs.add(client(tcp, portA, portB, `${dir}/a.wav`, `${dir}/rec-a.wav`, codec));
        const cb = procs.add(client(tcp, portB, portA, `${dir}/b.wav`, `${dir}/rec-b.wav`, codec));
        const [ra, rb] = await Promise.all([ca.result, cb.result]);
        assertEquals(ra.code, 0, `client A: ${ra.stderr.slice(-2500)}`);
        assertEquals(rb.code, 0, `client B: ${rb.stderr.slice(-2500)}`);
        for (const r of [ra, rb]) {
          assertMatch(r.stderr, /\[RELAY\] registered at 127\.0\.0\.1:\d+/);
          assertMatch(r.stderr, /end of transmission received/);
          assertMatch(r.stderr, /\[RELAY\] disconnected from the relay/);
        }
        // A's recording holds what B sent, B's what A sent.
        const atA = await readWav(`${dir}/rec-a.wav`), atB = await readWav(`${dir}/rec-b.wav`);
        assertEquals(atA.sampleRate, 8000);
        const cA = assertSampleExact(b.samples, atA.samples, { label: "B → A" });
        const cB = assertSampleExact(a.samples, atB.samples, { label: "A → B" });
        assertEquals(cA.overlap, b.samples.length);
        assertEquals(cB.overlap, a.samples.length);
        assertEquals(atA.samples.length, b.samples.length, "nothing but B's audio at A");
        assertEquals(atB.samples.length, a.samples.length, "nothing but A's audio at B");

        // The relay forwarded every datagram: 20 ms packets plus the end-of-transmission marker, each way.
        const stats = await relayStats(tcp);
        const pa = a.samples.length / 160 + 1, pb = b.samples.length / 160 + 1;
        assertEquals(stats.registrations, 2);
        assertEquals(stats.disconnects, 2);
        assertEquals(stats.clients, 0);
        assertEquals(stats.packets_in, pa + pb);
        assertEquals(stats.packets_out, pa + pb);
        assertEquals(stats.bytes_out, (pa + pb) * 12 + a.samples.length + b.samples.length);
        assertEquals(stats.dropped, {
          unregistered: 0,
          oversize: 0,
          target_down: 0,
          backlog: 0,
          send_errors: 0,
        });
        relay.kill("SIGINT");
        const rr = await relay.result;
        assertEquals(rr.code, 0, rr.stderr.slice(-2000));
        assertMatch(rr.stderr, new RegExp(`\\[RELAY\\] register 127\\.0\\.0\\.1:${portA} → 127\\.0\\.0\\.1:${portB}`));
        // Each client's disconnect line gives its figures when its DISCONNECT was read. Its last datagrams (the
        // end-of-transmission marker at least) race the DISCONNECT on another socket: one read after it is still
        // forwarded (the DISCONNECT grace) and counted in the totals above, which are exact, but not in that line.
        for (const [port, total] of [[portA, pa], [portB, pb]]) {
          const line = new RegExp(`\\[RELAY\\] disconnect 127\\.0\\.0\\.1:${port} packets_in=(\\d+) packets_out=(\\d+)`)
            .exec(rr.stderr);
          assert(line, `no disconnect line for 127.0.0.1:${port}: ${rr.stderr.slice(-2000)}`);
          const [inAt, outAt] = [Number(line[1]), Number(line[2])];
          assertEquals(inAt, outAt, `forwarded all it had received at its DISCONNECT: ${line[0]}`);
          assert(inAt >= 1 && inAt <= total, `${inAt} of its ${total} datagrams by its DISCONNECT: ${line[0]}`);
        }
      } finally {
        await procs.stop();
        await Deno.remove(dir, { recursive: true });
      }
    },
  });
}

Deno.test({
  name: "relay restart: the clients register again by themselves and the audio flows again",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "voxpipe-relay-" });
    const procs = new ProcessGroup();
    try {
      // 12 s each way; the relay is stopped once both clients are sending and restarted on the same ports.
      const a = g711Audio("PCMU", 12, 21), b = g711Audio("PCMU", 12, 22);
      await writeWav(`${dir}/a.wav`, a.samples, 8000);
      await writeWav(`${dir}/b.wav`, b.samples, 8000);
      const tcp = freeTcpPort(), udp = freeUdpPort(), portA = freeUdpPort(), portB = freeUdpPort();
      const relay1 = procs.add(relayProcess(tcp, udp));
      await relay1.waitForOutput(/\[RELAY\] listening on tcp/, 30_000);
      // The receive chains end 5 s after the last datagram, should an end marker be lost in the outage.
      const extra = ["--set", "timeout=5"];
      const ca = procs.add(client(tcp, portA, portB, `${dir}/a.wav`, `${dir}/rec-a.wav`, "PCMU", extra));
      const cb = procs.add(client(tcp, portB, portA, `${dir}/b.wav`, `${dir}/rec-b.wav`, "PCMU", extra));
      await Promise.all([
        ca.waitForOutput(/sending to the relay/, 30_000),
        cb.waitForOutput(/sending to the relay/, 30_000),
      ]);
      // Once the first relay has forwarded audio both ways, it stops.
      for (let i = 0;; i++) {
        const st = await relayStats(tcp);
        if (st.per_client.length === 2 && st.per_client.every((c) => c.packets_out >= 25)) break;
        if (i > 300) throw new Error(`relay 1 did not forward: ${JSON.stringify(st)}`);
        await new Promise((r) => setTimeout(r, 100));
      }
      relay1.kill("SIGINT");
      assertEquals((await relay1.result).code, 0);
      const relay2 = procs.add(relayProcess(tcp, udp));
      await relay2.waitForOutput(/\[RELAY\] listening on tcp/, 30_000);
      await Promise.all([
        ca.waitForOutput(/\[RELAY\] registered at 127\.0\.0\.1:\d+ again/, 40_000),
        cb.waitForOutput(/\[RELAY\] registered at 127\.0\.0\.1:\d+ again/, 40_000),
      ]);
      const [ra, rb] = await Promise.all([ca.result, cb.result]);
      assertEquals(ra.code, 0, `client A: ${ra.stderr.slice(-2500)}`);
      assertEquals(rb.code, 0, `client B: ${rb.stderr.slice(-2500)}`);
      for (const r of [ra, rb]) {
        assertMatch(r.stderr, /lost the relay \(the relay said BYE shutting down\): registering again/);
      }
      // The new relay forwarded audio both ways; what it forwarded arrived sample-exact on the sender's timeline:
      // each recording ends with the sender's last second.
      const stats = await relayStats(tcp);
      assertEquals(stats.registrations, 2);
      assertEquals(stats.disconnects, 2);
      assertEquals(stats.clients, 0);
      relay2.kill("SIGINT");
      const r2 = await relay2.result;
      for (const port of [portA, portB]) {
        const m = new RegExp(`disconnect 127\\.0\\.0\\.1:${port} packets_in=(\\d+) packets_out=(\\d+)`).exec(r2.stderr);
        assert(m, r2.stderr.slice(-2000));
        // (A datagram may arrive before the target has registered again: dropped as target_down.)
        assert(
          Number(m[2]) >= 50 && Number(m[1]) >= Number(m[2]),
          `relay 2 forwarded ${m[2]} of ${m[1]} datagrams from ${port}`,
        );
      }
      for (const [rec, src] of [[`${dir}/rec-a.wav`, b.samples], [`${dir}/rec-b.wav`, a.samples]] as const) {
        const got = (await readWav(rec)).samples;
        assertEquals(got.length, src.length, `${rec}: the recording spans the sender's whole timeline`);
        assertEquals(got.subarray(got.length - 8000), src.subarray(src.length - 8000), `${rec}: the last second`);
      }
    } finally {
      await procs.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
