/**
 * Relay benchmark (a script: `deno task bench:relay`): the relay
 * (`pipelines/relay.json`) runs in its own process; this process registers N
 * clients over TCP (pairs, each targeting the other: N streams) and sends a
 * 172-byte packet (an RTP packet of 20 ms of G.711) every 20 ms per stream,
 * phases spread evenly over the 20 ms, for a fixed time; every stream's
 * packets come back to its partner's socket here. The sockets live in worker
 * threads of this process (`_relay_bench_worker.ts`, at most 128 each: one
 * event loop does not keep up with hundreds of UDP sockets).
 *
 * Printed per N (default 100 and 500):
 *
 * - one-way latency p50/p99 through the relay, and the same traffic sent
 *   directly between the same sockets (the baseline: both run in this
 *   process, on loopback); the difference is what the relay adds;
 * - packets forwarded (the relay's own STATS counters), losses;
 * - the relay process's CPU time (from /proc) and so its forwarding cost:
 *   packets per second per core = forwarded / CPU seconds.
 *
 * Then a flood: 8 sockets (4 pairs) send as fast as they can for a few
 * seconds; the relay's forwarded packets per second and CPU give its ceiling
 * on one process.
 *
 * Loopback only; every phase is bounded in time and the relay is stopped at
 * the end (or when the script is interrupted). The machine is shared: run it
 * twice and report the spread.
 *
 * Options: `--streams 100,500`, `--seconds 10` (per relay phase; the direct
 * baseline takes half), `--flood-seconds 4`.
 *
 * @module
 */
import { benchArgs } from "./_args.ts";
import { fromFileUrl } from "../tests/util.ts";
// CPU seconds (user + system, all threads) of a process, from /proc.
import { liveCpuSeconds as cpuSeconds } from "../tests/record_check.ts";

const args = benchArgs(import.meta.url, {
  streams: { type: "string", default: "100,500" },
  seconds: { type: "string", default: "10" },
  "flood-seconds": { type: "string", default: "4" },
});
const STREAMS = args.values.streams!.split(",").map(Number).filter((n) => n >= 2);
const SECONDS = Number(args.values.seconds);
const FLOOD_SECONDS = Number(args.values["flood-seconds"]);
const PTIME = 20;
const PACKET = 172;
const WARMUP_MS = 1000;
const HOST = "127.0.0.1";
const repo = fromFileUrl(new URL("../", import.meta.url));

function freeTcpPort(): number {
  const l = Deno.listen({ hostname: HOST, port: 0 });
  const p = (l.addr as Deno.NetAddr).port;
  l.close();
  return p;
}

function freeUdpPort(): number {
  const s = Deno.listenDatagram({ transport: "udp", hostname: HOST, port: 0 });
  const p = (s.addr as Deno.NetAddr).port;
  s.close();
  return p;
}

// ---- the relay process -------------------------------------------------------------------

const tcpPort = freeTcpPort(), udpPort = freeUdpPort();
const maxClients = Math.max(...STREAMS, 8) + 16;
const relay = new Deno.Command(Deno.execPath(), {
  args: [
    "run",
    "-A",
    `${repo}mod.ts`,
    "--pipeline",
    `${repo}pipelines/relay.json`,
    "--log-level",
    "warn",
    "--set",
    `port=${tcpPort}`,
    "--set",
    `udp_port=${udpPort}`,
    "--set",
    `bind=${HOST}`,
    "--set",
    `max_clients=${maxClients}`,
    "--set",
    `max_connections=${maxClients + 8}`,
    "--set",
    `max_connections_per_ip=${maxClients + 8}`,
  ],
  stdout: "inherit",
  stderr: "inherit",
}).spawn();
const hardStop = setTimeout(() => {
  console.error("relay_bench: time bound (10 min) reached, stopping");
  try {
    relay.kill("SIGKILL");
  } catch { /* gone */ }
  Deno.exit(1);
}, 600_000);
const stopRelay = async () => {
  try {
    relay.kill("SIGINT");
  } catch { /* gone */ }
  await relay.status;
};
Deno.addSignalListener("SIGINT", () => {
  stopRelay().then(() => Deno.exit(130));
});

const enc = new TextEncoder(), dec = new TextDecoder();

/** A line-protocol connection to the relay. */
class Line {
  #buf = "";
  readonly #chunk = new Uint8Array(1 << 20);
  constructor(readonly conn: Deno.Conn) {}
  static async open(): Promise<Line> {
    return new Line(await Deno.connect({ hostname: HOST, port: tcpPort }));
  }
  async request(line: string, want = 1): Promise<string[]> {
    await this.conn.write(enc.encode(line + "\n"));
    const out: string[] = [];
    while (out.length < want) {
      const nl = this.#buf.indexOf("\n");
      if (nl >= 0) {
        out.push(this.#buf.slice(0, nl));
        this.#buf = this.#buf.slice(nl + 1);
        continue;
      }
      const n = await this.conn.read(this.#chunk);
      if (n === null) throw new Error(`relay closed the connection after ${line}`);
      this.#buf += dec.decode(this.#chunk.subarray(0, n));
    }
    return out;
  }
}

async function waitForRelay(): Promise<void> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    try {
      (await Deno.connect({ hostname: HOST, port: tcpPort })).close();
      return;
    } catch {
      if (Date.now() > deadline) throw new Error("the relay did not start within 30 s");
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

async function relayStats(): Promise<{ packets_out: number; packets_in: number; dropped: Record<string, number> }> {
  const l = await Line.open();
  try {
    const [line] = await l.request("STATS");
    return JSON.parse(line.slice(6));
  } finally {
    l.conn.close();
  }
}

// ---- streams (in workers) ----------------------------------------------------------------

/** Streams per worker at most: one Deno event loop keeps up with about this many sockets here. */
const PER_WORKER = 128;

interface RunResult {
  sent: number;
  received: number;
  latencies: Float64Array;
}

/** A worker of this process owning some of the streams (`_relay_bench_worker.ts`). */
class StreamWorker {
  readonly #w = new Worker(new URL("./_relay_bench_worker.ts", import.meta.url), { type: "module" });
  #waiting: ((m: Record<string, unknown>) => void) | undefined;
  constructor() {
    this.#w.onmessage = (e) => {
      const w = this.#waiting;
      this.#waiting = undefined;
      if (e.data.type === "error") throw new Error(`bench worker: ${e.data.message}`);
      w?.(e.data);
    };
  }
  #ask(msg: Record<string, unknown>): Promise<Record<string, unknown>> {
    return new Promise((resolve) => {
      this.#waiting = resolve;
      this.#w.postMessage(msg);
    });
  }
  async open(count: number, first: number, total: number): Promise<void> {
    await this.#ask({ type: "open", count, first, total, tcpPort, host: HOST });
  }
  async run(to: "direct" | "relay", startEpochMs: number, ms: number): Promise<RunResult> {
    const r = await this.#ask({ type: "run", to, udpPort, startEpochMs, ms, warmupMs: WARMUP_MS });
    return r as unknown as RunResult;
  }
  async close(): Promise<void> {
    await this.#ask({ type: "close" });
    this.#w.terminate();
  }
}

/** N streams over workers of at most PER_WORKER each (an even number per worker: pairs stay together). */
async function openStreams(total: number): Promise<StreamWorker[]> {
  const workers: StreamWorker[] = [];
  const nw = Math.ceil(total / PER_WORKER);
  let first = 0;
  for (let w = 0; w < nw; w++) {
    let count = Math.round((total - first) / (nw - w));
    if (count % 2) count++;
    count = Math.min(count, total - first);
    const sw = new StreamWorker();
    await sw.open(count, first, total);
    workers.push(sw);
    first += count;
  }
  return workers;
}

/** Runs every worker for `ms` from a common start; merges what they measured. */
async function runAll(workers: StreamWorker[], to: "direct" | "relay", ms: number): Promise<RunResult> {
  const startEpochMs = performance.timeOrigin + performance.now() + 200;
  const rs = await Promise.all(workers.map((w) => w.run(to, startEpochMs, ms)));
  const n = rs.reduce((a, r) => a + r.latencies.length, 0);
  const latencies = new Float64Array(n);
  let o = 0;
  for (const r of rs) {
    latencies.set(r.latencies, o);
    o += r.latencies.length;
  }
  return {
    sent: rs.reduce((a, r) => a + r.sent, 0),
    received: rs.reduce((a, r) => a + r.received, 0),
    latencies,
  };
}

function percentile(a: Float64Array, p: number): number {
  if (a.length === 0) return NaN;
  const sorted = a.slice().sort();
  return sorted[Math.min(a.length - 1, Math.floor((p / 100) * a.length))];
}

function fmt(x: number, d = 2): string {
  return x.toFixed(d);
}

// ---- run ---------------------------------------------------------------------------------

try {
  await waitForRelay();
  console.log(
    `relay_bench: relay pid ${relay.pid} on tcp ${HOST}:${tcpPort} / udp ${HOST}:${udpPort}; ` +
      `${PACKET}-byte packets every ${PTIME} ms per stream; ${SECONDS} s per relay phase (first ${
        WARMUP_MS / 1000
      } s ` +
      `not measured), ${SECONDS / 2} s direct; load average ${Deno.readTextFileSync("/proc/loadavg").split(" ")[0]} ` +
      `on ${navigator.hardwareConcurrency} CPUs`,
  );
  const relayAddr: Deno.NetAddr = { transport: "udp", hostname: HOST, port: udpPort };
  for (const n of STREAMS) {
    const count = n % 2 === 0 ? n : n + 1;
    const workers = await openStreams(count);
    // Baseline: the same sockets, straight to the partner.
    const d = await runAll(workers, "direct", (SECONDS / 2) * 1000);
    // Through the relay.
    const st0 = await relayStats();
    const cpu0 = cpuSeconds(relay.pid), self0 = cpuSeconds(Deno.pid), t0 = performance.now();
    const r = await runAll(workers, "relay", SECONDS * 1000);
    const cpu1 = cpuSeconds(relay.pid), self1 = cpuSeconds(Deno.pid), t1 = performance.now();
    const st1 = await relayStats();
    const fwd = st1.packets_out - st0.packets_out;
    const wall = (t1 - t0) / 1000;
    const relayCpu = cpu1 - cpu0;
    const [r50, r99, d50, d99] = [
      percentile(r.latencies, 50),
      percentile(r.latencies, 99),
      percentile(d.latencies, 50),
      percentile(d.latencies, 99),
    ];
    console.log(
      `\n${count} streams (${count / 2} pairs, ${workers.length} sender/receiver workers), ${
        fmt(r.sent / wall, 0)
      } packets/s offered:\n` +
        `  through the relay: latency p50 ${fmt(r50, 3)} ms, p99 ${fmt(r99, 3)} ms (${r.latencies.length} samples); ` +
        `lost ${r.sent - r.received} of ${r.sent}\n` +
        `  direct (baseline): latency p50 ${fmt(d50, 3)} ms, p99 ${fmt(d99, 3)} ms; lost ${
          d.sent - d.received
        } of ${d.sent}\n` +
        `  added by the relay: p50 ${fmt(r50 - d50, 3)} ms, p99 ${fmt(r99 - d99, 3)} ms\n` +
        `  relay forwarded ${fwd} (${fmt(fwd / wall, 0)}/s), dropped ${JSON.stringify(st1.dropped)}; relay CPU ${
          fmt((relayCpu / wall) * 100, 1)
        } % of a core → ${fmt(fwd / Math.max(relayCpu, 0.01), 0)} packets/s per core; this process ${
          fmt(((self1 - self0) / wall) * 100, 1)
        } %`,
    );
    await Promise.all(workers.map((w) => w.close()));
  }

  // Flood: as fast as possible from 8 sockets (4 registered pairs) for FLOOD_SECONDS.
  if (FLOOD_SECONDS > 0) {
    const socks = Array.from({ length: 8 }, () => Deno.listenDatagram({ transport: "udp", hostname: HOST, port: 0 }));
    const ports = socks.map((x) => (x.addr as Deno.NetAddr).port);
    const lines: Line[] = [];
    for (let i = 0; i < 8; i++) {
      const l = await Line.open();
      const [ok] = await l.request(`HELLO ${ports[i]} ${HOST} ${ports[i ^ 1]}`);
      if (!ok.startsWith("OK ")) throw new Error(`flood registration: ${ok}`);
      lines.push(l);
    }
    let closed = false;
    // The forwarded datagrams are read and discarded (so nothing queues up here).
    const sinks = socks.map(async (x) => {
      const b = new Uint8Array(2048);
      while (!closed) await x.receive(b).catch(() => {});
    });
    const st0 = await relayStats();
    const cpu0 = cpuSeconds(relay.pid), t0 = performance.now();
    const end = t0 + FLOOD_SECONDS * 1000;
    let sent = 0;
    await Promise.all(socks.map(async (sock) => {
      const b = new Uint8Array(PACKET);
      while (performance.now() < end) {
        // A few in flight at a time: thousands of pending sends slow Deno's event loop down.
        const batch = [];
        for (let j = 0; j < 16; j++) batch.push(sock.send(b, relayAddr).catch(() => 0));
        await Promise.all(batch);
        sent += 16;
      }
    }));
    const cpu1 = cpuSeconds(relay.pid), t1 = performance.now();
    await new Promise((r) => setTimeout(r, 300));
    const st1 = await relayStats();
    const wall = (t1 - t0) / 1000;
    const fwd = st1.packets_out - st0.packets_out, rin = st1.packets_in - st0.packets_in;
    const relayCpu = cpu1 - cpu0;
    console.log(
      `\nflood, 8 sockets for ${FLOOD_SECONDS} s: offered ${fmt(sent / wall, 0)}/s, relay received ${
        fmt(rin / wall, 0)
      }/s, forwarded ${fmt(fwd / wall, 0)}/s, relay CPU ${fmt((relayCpu / wall) * 100, 1)} % of a core → ${
        fmt(fwd / Math.max(relayCpu, 0.01), 0)
      } packets/s per core`,
    );
    for (const l of lines) {
      await l.request("DISCONNECT").catch(() => []);
      l.conn.close();
    }
    closed = true;
    for (const x of socks) x.close();
    await Promise.all(sinks);
  }
  console.log(`\nload average at the end: ${Deno.readTextFileSync("/proc/loadavg").split(" ").slice(0, 3).join(" ")}`);
} finally {
  clearTimeout(hardStop);
  await stopRelay();
}
Deno.exit(0);
