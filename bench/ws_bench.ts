/**
 * WebSocket bridge benchmark (a script: `deno run -A bench/ws_bench.ts`): N
 * concurrent calls, each driven by its own WebSocket client (JSON protocol,
 * µ-law), through our SIP server with the ws-bridge service
 * (tests/fixtures/ws/server_ws.json) running in its own process, to a far end
 * in this process (a SIP user agent answering every call, with one raw UDP
 * socket per call for its RTP).
 *
 * Every 20 ms each client sends 20 ms of audio and the far end sends one RTP
 * packet, each carrying a tag (two marker bytes and a 12-bit counter, µ-law
 * codes that survive decoding and re-encoding); the phases of the calls are
 * spread over the 20 ms. Printed:
 *
 * - client → wire: from the client's `WebSocket.send` of a chunk to the RTP
 *   packet carrying it arriving at the far end's socket, p50 / p99 / max. It
 *   holds the bridge's jitter allowance (`jitter_ms`, default 60: playing
 *   starts once that much is queued) and up to one tick of phase;
 * - wire → client: from the far end's send of an RTP packet to the client's
 *   receipt of the media message carrying it (the server's receive chain: its
 *   jitter buffer in record mode, the decoder, the bridge);
 * - tags sent and found each way, and the server process's CPU time per call.
 *
 * Both ends of each measurement are in this process (one clock); this process
 * also runs the 2 × N sockets and its own timers, so its own scheduling is in
 * the figures. The machine is shared: run it twice and report the spread.
 *
 * Options: `--calls 50`, `--seconds 20` (measured, after 2 s of warm-up),
 * `--jitter-ms 60` (the bridge's), `--pipeline tests/fixtures/ws/server_ws.json`.
 *
 * @module
 */
import { benchArgs } from "./_args.ts";
import { createRegistry } from "../mod.ts";
import { fromFileUrl } from "../tests/util.ts";
// CPU seconds (user + system, all threads) of a process, from /proc.
import { liveCpuSeconds as cpuSeconds } from "../tests/record_check.ts";
import { SipUserAgent } from "../plugins/sip/user_agent.ts";
import { createAnswer } from "../plugins/sip/sdp.ts";
import type { IncomingCall } from "../plugins/sip/incoming_call.ts";
import { parseRtp, serializeRtp } from "../plugins/rtp/header.ts";

const args = benchArgs(import.meta.url, {
  calls: { type: "string", default: "50" },
  seconds: { type: "string", default: "20" },
  "jitter-ms": { type: "string", default: "60" },
  pipeline: { type: "string", default: "tests/fixtures/ws/server_ws.json" },
});
const CALLS = Number(args.values.calls);
const SECONDS = Number(args.values.seconds);
const JITTER_MS = Number(args.values["jitter-ms"]);
const WARMUP_MS = 2000;
const SLOTS = 10; // phases of the calls, 2 ms apart
const HOST = "127.0.0.1";
const TOKEN = "bench-token";
const repo = fromFileUrl(new URL("../", import.meta.url));

// The tag: two marker codes, then a 12-bit counter in two codes 0x20..0x5F (never 0x7F/0xFF, which G.711
// decoders map to the same zero).
const MARK_A = 0x15, MARK_B = 0x9a;
const ID_SPACE = 4096;

function tagged(k: number): Uint8Array {
  const b = new Uint8Array(160).fill(0xfe);
  b[40] = MARK_A;
  b[41] = MARK_B;
  b[42] = 0x20 + (k & 0x3f);
  b[43] = 0x20 + ((k >> 6) & 0x3f);
  return b;
}

// Built once: the payload of every tag, and its base64 (what a media message carries when frames stay aligned).
const PAYLOADS = Array.from({ length: ID_SPACE }, (_, k) => tagged(k));
const BASE64 = PAYLOADS.map((b) => btoa(String.fromCharCode(...b)));
const BY_BASE64 = new Map(BASE64.map((b64, k) => [b64, k]));

function tagOf(b: Uint8Array): number | undefined {
  if (b[40] === MARK_A && b[41] === MARK_B) return (b[42] - 0x20) | ((b[43] - 0x20) << 6);
  for (let i = 0; i + 3 < b.length; i++) {
    if (b[i] === MARK_A && b[i + 1] === MARK_B) return (b[i + 2] - 0x20) | ((b[i + 3] - 0x20) << 6);
  }
  return undefined;
}

function freePort(kind: "tcp" | "udp"): number {
  if (kind === "tcp") {
    const l = Deno.listen({ hostname: HOST, port: 0 });
    const p = (l.addr as Deno.NetAddr).port;
    l.close();
    return p;
  }
  const s = Deno.listenDatagram({ transport: "udp", hostname: HOST, port: 0 });
  const p = (s.addr as Deno.NetAddr).port;
  s.close();
  return p;
}

function pct(xs: number[], p: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// ---- the server -----------------------------------------------------------------------------

const sipPort = freePort("udp"), wsPort = freePort("tcp");
const server = new Deno.Command(Deno.execPath(), {
  args: [
    "run",
    "-A",
    `${repo}mod.ts`,
    "--pipeline",
    `${repo}${args.values.pipeline}`,
    "--log-level",
    "warn",
    "--set",
    `port=${sipPort}`,
    "--set",
    `ws_port=${wsPort}`,
    "--set",
    `ws_token=${TOKEN}`,
    "--set",
    "codecs=PCMU",
    "--set",
    `jitter_ms=${JITTER_MS}`,
    "--set",
    `max_calls=${CALLS * 2}`,
    "--set",
    "rtp_timeout=30",
  ],
  stdout: "inherit",
  stderr: "inherit",
}).spawn();
const onInterrupt = () => {
  try {
    server.kill("SIGKILL");
  } catch { /* gone */ }
  Deno.exit(130);
};
Deno.addSignalListener("SIGINT", onInterrupt);
const hardStop = setTimeout(() => {
  console.error("ws_bench: time bound (5 min) reached, stopping");
  try {
    server.kill("SIGKILL");
  } catch { /* gone */ }
  Deno.exit(1);
}, 300_000);

for (let i = 0;; i++) {
  try {
    (await Deno.connect({ hostname: HOST, port: wsPort })).close();
    break;
  } catch {
    if (i > 300) throw new Error("the server's WebSocket port never opened");
    await sleep(100);
  }
}

// ---- the far end ----------------------------------------------------------------------------

interface Far {
  sock: Deno.DatagramConn;
  to: Deno.NetAddr;
  seq: number;
  ts: number;
  ssrc: number;
  k: number;
  sent: Float64Array; // send time by tag
}

interface Client {
  ws: WebSocket;
  callId?: string;
  started: boolean;
  k: number;
  sent: Float64Array; // send time by tag
  far?: Far;
}

const codecs = createRegistry().codecs;
// No overload refusals (503 when this process lags): the far end must answer every call.
const ua = new SipUserAgent({ hostname: HOST, port: 0, userName: "far", overload: false });
const farPort = ua.localAddress.port;
const clients: Client[] = [];
const toWire: number[] = [];
const toClient: number[] = [];
let measuring = false; // stamping what is sent
let matching = false; // matching what arrives (until the last stamped ones are in)
let sentToFar = 0, foundAtFar = 0, sentToClient = 0, foundAtClient = 0;

ua.onInvite((call: IncomingCall) => {
  const i = Number(/sip:c(\d+)@/.exec(call.localUri)?.[1]);
  const client = clients[i];
  if (!client) {
    call.reject(404);
    return;
  }
  const sock = Deno.listenDatagram({ transport: "udp", hostname: HOST, port: 0 });
  const answer = createAnswer(call.offer!, {
    address: HOST,
    port: (sock.addr as Deno.NetAddr).port,
    registry: codecs,
    codecs: ["PCMU"],
  });
  call.accept(answer);
  const m = call.media(codecs);
  const far: Far = {
    sock,
    to: { transport: "udp", hostname: m.remoteAddress, port: m.remotePort },
    seq: 1,
    ts: 0,
    ssrc: 0x1000 + i,
    k: 0,
    sent: new Float64Array(ID_SPACE),
  };
  client.far = far;
  (async () => {
    try {
      for await (const [data] of sock) {
        const now = performance.now();
        const p = parseRtp(data);
        if (typeof p === "string") continue;
        const k = tagOf(p.payload);
        if (k === undefined || !matching) continue;
        const t = client.sent[k];
        if (t > 0) {
          toWire.push(now - t);
          foundAtFar++;
          client.sent[k] = 0;
        }
      }
    } catch { /* closed */ }
  })();
});

// ---- the clients ----------------------------------------------------------------------------

const url = `ws://${HOST}:${wsPort}/?token=${TOKEN}&incoming=0`;
for (let i = 0; i < CALLS; i++) {
  const c: Client = { ws: new WebSocket(url, "voxpipe-json"), started: false, k: 0, sent: new Float64Array(ID_SPACE) };
  clients.push(c);
  c.ws.onmessage = (e) => {
    const now = performance.now();
    const data = e.data as string;
    if (data.startsWith('{"event":"media"')) {
      if (!matching || !c.far) return;
      const at = data.indexOf('"payload":"') + 11;
      const payload = data.slice(at, data.indexOf('"', at));
      const k = BY_BASE64.get(payload) ?? tagOf(Uint8Array.from(atob(payload), (ch) => ch.charCodeAt(0)));
      if (k === undefined) return;
      const t = c.far.sent[k];
      if (t > 0) {
        toClient.push(now - t);
        foundAtClient++;
        c.far.sent[k] = 0;
      }
      return;
    }
    const m = JSON.parse(data);
    if (m.event === "connected") {
      c.ws.send(JSON.stringify({ event: "dial", dial: { to: `sip:c${i}@${HOST}:${farPort}` } }));
    } else if (m.event === "dialing") c.callId = m.callId;
    else if (m.event === "start") c.started = true;
    else if (m.event === "stop" || m.event === "error") console.error(`call ${i}: ${data}`);
  };
}

for (let i = 0; clients.some((c) => !c.started || !c.far); i++) {
  if (i > 600) {
    console.error(`ws_bench: calls not answered within 30 s: ${clients.filter((c) => !c.started).length} of ${CALLS}`);
    try {
      server.kill("SIGKILL");
    } catch { /* gone */ }
    Deno.exit(1);
  }
  await sleep(50);
}

// ---- the traffic ----------------------------------------------------------------------------

function sendSlot(slot: number): void {
  for (let i = slot; i < clients.length; i += SLOTS) {
    const c = clients[i];
    const far = c.far!;
    // client → server
    const k = c.k++ % ID_SPACE;
    c.ws.send(`{"event":"media","callId":"${c.callId}","media":{"payload":"${BASE64[k]}"}}`);
    if (measuring) {
      c.sent[k] = performance.now();
      sentToFar++;
    }
    // far end → server
    const fk = far.k++ % ID_SPACE;
    const pkt = serializeRtp({
      kind: "rtp",
      payloadType: 0,
      sequence: far.seq++ & 0xffff,
      timestamp: far.ts >>> 0,
      ssrc: far.ssrc,
      marker: false,
      payload: PAYLOADS[fk],
    });
    far.ts += 160;
    far.sock.send(pkt, far.to).catch(() => {});
    if (measuring) {
      far.sent[fk] = performance.now();
      sentToClient++;
    }
  }
}

const cpu0 = cpuSeconds(server.pid);

const t0 = performance.now();
const end = t0 + WARMUP_MS + SECONDS * 1000;
let n = 0;
let cpuMeasured0 = cpu0;
let selfCpu0 = 0;
const load0 = Deno.loadavg()[0];
let measuredFrom = 0;
while (performance.now() < end) {
  const due = t0 + n * (20 / SLOTS);
  const wait = due - performance.now();
  if (wait > 0) await sleep(wait);
  if (!measuring && performance.now() - t0 >= WARMUP_MS) {
    measuring = true;
    matching = true;
    measuredFrom = performance.now();
    cpuMeasured0 = cpuSeconds(server.pid);
    selfCpu0 = cpuSeconds(Deno.pid);
  }
  sendSlot(n % SLOTS);
  n++;
}
const measuredMs = performance.now() - measuredFrom;
const cpuUsed = cpuSeconds(server.pid) - cpuMeasured0;
const selfUsed = cpuSeconds(Deno.pid) - selfCpu0;
measuring = false;
await sleep(1000); // what is still queued or in flight
matching = false;

// ---- results --------------------------------------------------------------------------------

const fmt = (x: number) => x.toFixed(1);
console.log(`ws_bench: ${CALLS} calls, ${SECONDS} s measured, jitter_ms ${JITTER_MS}, loopback`);
console.log(
  `client → wire (WebSocket send → RTP at the far end): p50 ${fmt(pct(toWire, 50))} ms, p99 ${
    fmt(pct(toWire, 99))
  } ms, max ${fmt(Math.max(...toWire))} ms; ${foundAtFar} of ${sentToFar} chunks found`,
);
console.log(
  `wire → client (RTP sent by the far end → WebSocket message): p50 ${fmt(pct(toClient, 50))} ms, p99 ${
    fmt(pct(toClient, 99))
  } ms, max ${fmt(Math.max(...toClient))} ms; ${foundAtClient} of ${sentToClient} packets found`,
);
console.log(
  `server CPU: ${(cpuUsed / (measuredMs / 1000) * 100).toFixed(1)} % of a core for ${CALLS} calls (${
    (cpuUsed / (measuredMs / 1000) * 100 / CALLS).toFixed(2)
  } % per call); this process (clients and far end): ${(selfUsed / (measuredMs / 1000) * 100).toFixed(1)} %; ` +
    `load average ${load0.toFixed(1)} → ${Deno.loadavg()[0].toFixed(1)} on ${navigator.hardwareConcurrency} CPUs`,
);

// ---- stop -----------------------------------------------------------------------------------

for (const c of clients) {
  try {
    c.ws.send(JSON.stringify({ event: "stop", callId: c.callId }));
  } catch { /* closed */ }
}
await sleep(500);
for (const c of clients) {
  c.ws.close();
  try {
    c.far?.sock.close();
  } catch { /* closed */ }
}
await ua.close();
try {
  server.kill("SIGTERM");
} catch { /* gone */ }
await server.status;
clearTimeout(hardStop);
Deno.removeSignalListener("SIGINT", onInterrupt);
