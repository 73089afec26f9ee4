/**
 * A worker of `bench/relay_bench.ts`: owns some of the streams (pairs of UDP
 * sockets, each registered at the relay and targeting the other), sends one
 * packet per stream every 20 ms at the phases it is given, and records the
 * one-way latency of what comes back (sender and receiver are both here, so
 * one clock measures it).
 *
 * Messages in: `{ type: "open", count, first, total, tcpPort, host }`,
 * `{ type: "run", to: "direct" | "relay", udpPort, startEpochMs, ms, warmupMs }`, `{ type: "close" }`.
 * Messages out: `{ type: "opened" }`, `{ type: "ran", sent, received, latencies }`, `{ type: "closed" }`,
 * `{ type: "error", message }`.
 *
 * @module
 */

/** The worker's global scope (typed here: the file is type-checked with the window types). */
const scope = self as unknown as {
  postMessage(msg: unknown, opts?: { transfer: ArrayBuffer[] }): void;
  onmessage: ((ev: MessageEvent) => void) | null;
};

const PTIME = 20;
const PACKET = 172;
const enc = new TextEncoder(), dec = new TextDecoder();

interface State {
  host: string;
  socks: Deno.DatagramConn[];
  ports: number[];
  conns: Deno.Conn[];
  first: number;
  total: number;
  lat: Float64Array;
  n: number;
  received: number;
  recording: boolean;
  closed: boolean;
  loops: Promise<void>[];
}

let st: State | undefined;

async function readLines(conn: Deno.Conn, want: number): Promise<string[]> {
  const buf = new Uint8Array(4096);
  let text = "";
  while (text.split("\n").length - 1 < want) {
    const n = await conn.read(buf);
    if (n === null) throw new Error("the relay closed the connection");
    text += dec.decode(buf.subarray(0, n));
  }
  return text.split("\n").slice(0, want);
}

async function open(m: { count: number; first: number; total: number; tcpPort: number; host: string }) {
  const s: State = {
    host: m.host,
    socks: [],
    ports: [],
    conns: [],
    first: m.first,
    total: m.total,
    lat: new Float64Array(1),
    n: 0,
    received: 0,
    recording: false,
    closed: false,
    loops: [],
  };
  st = s;
  for (let i = 0; i < m.count; i++) {
    const sock = Deno.listenDatagram({ transport: "udp", hostname: m.host, port: 0 });
    s.socks.push(sock);
    s.ports.push((sock.addr as Deno.NetAddr).port);
  }
  for (const sock of s.socks) {
    s.loops.push((async () => {
      const buf = new Uint8Array(2048);
      const view = new DataView(buf.buffer);
      for (;;) {
        try {
          await sock.receive(buf);
        } catch {
          if (s.closed) return;
          continue;
        }
        const now = performance.now();
        s.received++;
        if (s.recording && s.n < s.lat.length) s.lat[s.n++] = now - view.getFloat64(0);
      }
    })());
  }
  for (let i = 0; i < m.count; i++) {
    const conn = await Deno.connect({ hostname: m.host, port: m.tcpPort });
    await conn.write(enc.encode(`HELLO ${s.ports[i]} ${m.host} ${s.ports[i ^ 1]}\n`));
    const [ok] = await readLines(conn, 1);
    if (!ok.startsWith("OK ")) throw new Error(`registration refused: ${ok}`);
    s.conns.push(conn);
  }
}

/** Sends one packet per stream every 20 ms for `ms` from `startEpochMs`; stream j's phase is j × 20 / total ms. */
async function run(m: { to: "direct" | "relay"; udpPort: number; startEpochMs: number; ms: number; warmupMs: number }) {
  const s = st!;
  const count = s.socks.length;
  s.lat = new Float64Array(Math.ceil((count * m.ms) / PTIME) + 1000);
  s.n = 0;
  s.received = 0;
  const addrs: Deno.NetAddr[] = s.socks.map((_, i) => ({
    transport: "udp",
    hostname: s.host,
    port: m.to === "relay" ? m.udpPort : s.ports[i ^ 1],
  }));
  const bufs = s.socks.map(() => [new Uint8Array(PACKET), new Uint8Array(PACKET)]);
  const start = m.startEpochMs - performance.timeOrigin; // on this worker's performance.now() timeline
  const end = start + m.ms;
  const phase = (i: number) => ((s.first + i) * PTIME) / s.total;
  let k = 0, next = 0, sent = 0;
  for (;;) {
    const now = performance.now();
    if (!s.recording && now >= start + m.warmupMs) s.recording = true;
    if (now >= end) break;
    // Everything due by now; the sends of a burst are awaited (hundreds left pending starve the receives).
    const pending: Promise<unknown>[] = [];
    while (start + k * PTIME + phase(next) <= now) {
      const b = bufs[next][k & 1];
      new DataView(b.buffer).setFloat64(0, performance.now());
      pending.push(s.socks[next].send(b, addrs[next]).catch(() => 0));
      sent++;
      if (++next === count) {
        next = 0;
        k++;
      }
    }
    if (pending.length) await Promise.all(pending);
    const wait = start + k * PTIME + phase(next) - performance.now();
    await new Promise((r) => setTimeout(r, Math.max(0, wait - 1)));
  }
  s.recording = false;
  await new Promise((r) => setTimeout(r, 300));
  const latencies = s.lat.slice(0, s.n);
  scope.postMessage({ type: "ran", sent, received: s.received, latencies }, { transfer: [latencies.buffer] });
}

async function close() {
  const s = st!;
  for (const c of s.conns) {
    try {
      await c.write(enc.encode("DISCONNECT\n"));
      await readLines(c, 1);
      c.close();
    } catch { /* closed */ }
  }
  s.closed = true;
  for (const sock of s.socks) sock.close();
  await Promise.all(s.loops);
}

scope.onmessage = async (ev: MessageEvent) => {
  const m = ev.data;
  try {
    if (m.type === "open") {
      await open(m);
      scope.postMessage({ type: "opened" });
    } else if (m.type === "run") {
      await run(m);
    } else if (m.type === "close") {
      await close();
      scope.postMessage({ type: "closed" });
    }
  } catch (e) {
    scope.postMessage({ type: "error", message: e instanceof Error ? e.message : String(e) });
  }
};
