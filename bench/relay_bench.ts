/**
 * Relay benchmark (a script: `deno task bench:relay`): the relay
 * (`pipelines/relay.json`) runs in its own process; this process registers N
 * clients over TCP (pairs, each targeting the other: N streams) and sends a
 * 172-byte packet (an RTP packet of 20 ms of G.711) every 20 ms per stream,
 * phases spread evenly over the 20 ms, for a fixed time; every stream's
 * packets come back to its partner's socket here.
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
import { parseArgs } from "node:util";
import { fromFileUrl } from "../tests/util.ts";

const args = parseArgs({
  args: Deno.args,
  options: {
    streams: { type: "string", default: "100,500" },
    seconds: { type: "string", default: "10" },
    "flood-seconds": { type: "string", default: "4" },
  },
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

const CLK_TCK = 100;

/** CPU seconds (user + system, all threads) of a process, from /proc. */
function cpuSeconds(pid: number | "self"): number {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(f[11]) + Number(f[12])) / CLK_TCK;
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

// ---- streams -----------------------------------------------------------------------------

interface Streams {
  socks: Deno.DatagramConn[];
  ports: number[];
  lines: Line[];
  /** Latencies (ms) recorded while `recording`. */
  lat: Float64Array;
  n: number;
  received: number;
  recording: boolean;
  loops: Promise<void>[];
}

async function openStreams(count: number, maxSamples: number): Promise<Streams> {
  const s: Streams = {
    socks: [],
    ports: [],
    lines: [],
    lat: new Float64Array(maxSamples),
    n: 0,
    received: 0,
    recording: false,
    loops: [],
  };
  for (let i = 0; i < count; i++) {
    const sock = Deno.listenDatagram({ transport: "udp", hostname: HOST, port: 0 });
    s.socks.push(sock);
    s.ports.push((sock.addr as Deno.NetAddr).port);
  }
  for (const sock of s.socks) {
    s.loops.push((async () => {
      const buf = new Uint8Array(2048);
      const view = new DataView(buf.buffer);
      for (;;) {
        let got;
        try {
          got = await sock.receive(buf);
        } catch {
          return; // closed
        }
        const now = performance.now();
        s.received++;
        if (s.recording && got[0].length >= 8 && s.n < s.lat.length) s.lat[s.n++] = now - view.getFloat64(0);
      }
    })());
  }
  // Register: stream i targets its partner i ^ 1.
  for (let i = 0; i < count; i++) {
    const l = await Line.open();
    const r = await l.request(`HELLO ${s.ports[i]} ${HOST} ${s.ports[i ^ 1]}`, 2);
    if (!r[0].startsWith("OK ")) throw new Error(`registration ${i}: ${r.join(" | ")}`);
    s.lines.push(l);
  }
  return s;
}

async function closeStreams(s: Streams): Promise<void> {
  for (const l of s.lines) {
    try {
      await l.request("DISCONNECT");
      l.conn.close();
    } catch { /* closed */ }
  }
  for (const sock of s.socks) sock.close();
  await Promise.all(s.loops);
}

/** Sends one packet per stream every 20 ms for `ms` (phases spread over the period); returns packets sent. */
async function pace(s: Streams, to: (i: number) => Deno.NetAddr, ms: number, record: boolean): Promise<number> {
  const count = s.socks.length;
  const bufs = s.socks.map(() => [new Uint8Array(PACKET), new Uint8Array(PACKET)]);
  const addrs = s.socks.map((_, i) => to(i));
  const start = performance.now() + 50;
  let sent = 0, k = 0;
  const order = Array.from({ length: count }, (_, i) => i); // stream i due at start + i * PTIME / count
  let next = 0; // index into the schedule: packet (k, order[next])
  const end = start + ms;
  s.recording = false;
  while (true) {
    const now = performance.now();
    if (record && !s.recording && now >= start + WARMUP_MS) s.recording = true;
    if (now >= end) break;
    // Send everything due by now.
    for (;;) {
      const i = order[next];
      const due = start + k * PTIME + (i * PTIME) / count;
      if (due > now) break;
      const b = bufs[i][k & 1];
      new DataView(b.buffer).setFloat64(0, performance.now());
      s.socks[i].send(b, addrs[i]).catch(() => {});
      sent++;
      if (++next === count) {
        next = 0;
        k++;
      }
    }
    const i = order[next];
    const due = start + k * PTIME + (i * PTIME) / count;
    const wait = due - performance.now();
    // Sleep until ~1 ms before it is due; the receive loops run meanwhile.
    await new Promise((r) => setTimeout(r, Math.max(0, wait - 1)));
  }
  s.recording = false;
  await new Promise((r) => setTimeout(r, 300)); // the last packets arrive
  return sent;
}

function percentile(a: Float64Array, n: number, p: number): number {
  const sorted = a.slice(0, n).sort();
  return sorted[Math.min(n - 1, Math.floor((p / 100) * n))];
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
    const s = await openStreams(count, Math.ceil((count * SECONDS * 1000) / PTIME) + 1000);
    // Baseline: the same sockets, straight to the partner.
    s.received = 0;
    const sentDirect = await pace(
      s,
      (i) => ({ transport: "udp", hostname: HOST, port: s.ports[i ^ 1] }),
      (SECONDS / 2) * 1000,
      true,
    );
    const directN = s.n, direct = s.lat.slice(0, s.n);
    const directLost = sentDirect - s.received;
    s.n = 0;
    s.received = 0;
    // Through the relay.
    const st0 = await relayStats();
    const cpu0 = cpuSeconds(relay.pid), self0 = cpuSeconds("self"), t0 = performance.now();
    const sent = await pace(s, () => relayAddr, SECONDS * 1000, true);
    const cpu1 = cpuSeconds(relay.pid), self1 = cpuSeconds("self"), t1 = performance.now();
    const st1 = await relayStats();
    const fwd = st1.packets_out - st0.packets_out;
    const wall = (t1 - t0) / 1000;
    const relayCpu = cpu1 - cpu0;
    console.log(
      `\n${count} streams (${count / 2} pairs), ${fmt(sent / wall, 0)} packets/s offered:\n` +
        `  through the relay: latency p50 ${fmt(percentile(s.lat, s.n, 50), 3)} ms, p99 ${
          fmt(percentile(s.lat, s.n, 99), 3)
        } ms` +
        ` (${s.n} samples); lost ${sent - s.received} of ${sent}\n` +
        `  direct (baseline): latency p50 ${fmt(percentile(direct, directN, 50), 3)} ms, p99 ${
          fmt(percentile(direct, directN, 99), 3)
        } ms; lost ${directLost} of ${sentDirect}\n` +
        `  added by the relay: p50 ${fmt(percentile(s.lat, s.n, 50) - percentile(direct, directN, 50), 3)} ms, p99 ${
          fmt(percentile(s.lat, s.n, 99) - percentile(direct, directN, 99), 3)
        } ms\n` +
        `  relay forwarded ${fwd} (${fmt(fwd / wall, 0)}/s), dropped ${JSON.stringify(st1.dropped)}; relay CPU ${
          fmt((relayCpu / wall) * 100, 1)
        } % of a core → ${fmt(fwd / Math.max(relayCpu, 0.01), 0)} packets/s per core; this process ${
          fmt(((self1 - self0) / wall) * 100, 1)
        } %`,
    );
    await closeStreams(s);
  }

  // Flood: as fast as possible from 8 sockets for FLOOD_SECONDS.
  if (FLOOD_SECONDS > 0) {
    const s = await openStreams(8, 16);
    const st0 = await relayStats();
    const cpu0 = cpuSeconds(relay.pid), t0 = performance.now();
    const end = t0 + FLOOD_SECONDS * 1000;
    let sent = 0;
    await Promise.all(s.socks.map(async (sock) => {
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
    await closeStreams(s);
  }
  console.log(`\nload average at the end: ${Deno.readTextFileSync("/proc/loadavg").split(" ").slice(0, 3).join(" ")}`);
} finally {
  clearTimeout(hardStop);
  await stopRelay();
}
Deno.exit(0);
