/**
 * The CPU cost per received RTP packet of the callee's receive chain
 * (`pipelines/callee.json`, `receive`: udp-source → rtp-depacketizer → rtcp →
 * jitter-buffer → g711-decoder → wav-sink), stage by stage, on real loopback
 * sockets and the real clock.
 *
 * ```sh
 * deno task bench:packet
 * deno run -A bench/packet_cost.ts [--calls 200] [--seconds 10] [--warmup 2] [--rounds 2] [--net deno,fast]
 *   [--variants all] [--json FILE]
 * ```
 *
 * Six variants, each adding one stage of the chain: (1) udp-source →
 * null-sink, (2) + rtp-depacketizer, (3) + rtcp, (4) + jitter-buffer, (5) +
 * g711-decoder (each ended by a null-sink), (6) the whole chain, ending in
 * wav-sink (files in a temporary directory, removed after each measurement).
 * The variants are cut from the callee's own `receive` template and built by
 * the real runner (`PipelineRunner`, the CLI's registry), one `Session` per
 * call holding its RTP/RTCP port pair, with the variables the SIP control
 * gives a call (PCMU, payload type 0, ptime 20, the peer's RTP and RTCP
 * addresses), on the media clock and network of the network kind:
 * - `deno`: `Deno.listenDatagram` (`udpNetwork`) and the process media clock,
 *   the CLI's default;
 * - `fast`: the FFI sockets and clock of the thread's `MediaLoop`
 *   (`VOXPIPE_NET=fast`).
 *
 * Each measurement runs in two processes of its own: the receiver (the N
 * chains, nothing else) and a generator that sends each call valid 20 ms PCMU
 * RTP (its own SSRC, sequence numbers and timestamps) at 50 packets/s, the
 * calls spread evenly over the 20 ms period, from one socket (`sendmmsg`
 * through a `MediaLoop` where FFI runs), at the real rate (a stalled
 * generator catches up). After `--warmup` seconds, the receiver's CPU time
 * (user + system of all its threads, `/proc/PID/stat`) and the packets its
 * chains received (the udp-source counters) are taken over `--seconds`. Then
 * the generator stops, the receiver reports what its chains counted over the
 * whole run (received; lost: sent − received, and the rtcp stages' RFC 3550
 * loss count where the chain has one), ends its chains as the SIP control does
 * at a hang-up (drain, close the session) and exits. Variants and network
 * kinds alternate within a round, in reverse order every other round, so that
 * load drifts hit them alike.
 *
 * Printed: one line per measurement; a table per variant and network kind
 * (packets, lost, CPU % of a core, µs of CPU per packet, packets/s per core,
 * resident memory and JavaScript heap per call with every chain receiving:
 * medians over rounds, with the range of µs/packet); the per-stage cost (the
 * difference of µs/packet between consecutive variants) with its noise (half
 * the spread of each variant over rounds, added); and the machine's load and
 * CPU pressure before and after. A difference under its noise is not
 * meaningful. `--json FILE` writes every figure.
 *
 * Bounded: every child process has a time bound and is killed on error, at
 * the bench's own deadline and on SIGINT/SIGTERM; the temporary directory is
 * removed on the way out.
 *
 * @module
 */
import { benchArgs } from "./_args.ts";
import { createInterface } from "node:readline";
import process from "node:process";
import { createRegistry } from "../mod.ts";
import { mediaClock } from "../core/media_clock.ts";
import { loadPipelineFile, type Variables } from "../core/config.ts";
import { PipelineRunner } from "../core/runner.ts";
import type { Pipeline } from "../core/pipeline.ts";
import { Session } from "../core/session.ts";
import { fastUdpUnavailable, mediaFromEnv } from "../core/net/fast.ts";
import { MediaLoop } from "../core/net/media_loop.ts";
import { parsePortRange, PortAllocator } from "../core/net/ports.ts";
import { udpNetwork } from "../core/net/udp.ts";
import type { Clock } from "../core/clock.ts";
import { type BoundedProcess, spawnBounded } from "../tests/media_util.ts";
import { cpuSeconds } from "../tests/record_check.ts";
import { repoPath } from "../tests/util.ts";
import { type MachineLoad, machineLoad, pressureBetween } from "./_sipp.ts";
import {
  callStream,
  type Measure,
  packetsDue,
  parseVariants,
  rtpPacket,
  stageCosts,
  stageTable,
  summarize,
  usPerPacket,
  variantChain,
  variantTable,
} from "./_packet_cost.ts";

const { values: args } = benchArgs(import.meta.url, {
  role: { type: "string", default: "main" },
  calls: { type: "string", default: "200" },
  seconds: { type: "string", default: "10" },
  warmup: { type: "string", default: "2" },
  rounds: { type: "string", default: "2" },
  net: { type: "string", default: "deno,fast" },
  variants: { type: "string", default: "all" },
  json: { type: "string" },
  // child roles
  variant: { type: "string" },
  peer: { type: "string" },
  "peer-rtcp": { type: "string" },
  dir: { type: "string" },
  "bound-s": { type: "string" },
});

function fail(message: string): never {
  console.error(`packet_cost: ${message}`);
  Deno.exit(2);
}

function positive(name: string, v: string | undefined, max: number, integer = false): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0 || n > max || (integer && !Number.isInteger(n))) {
    fail(`--${name}: expected ${integer ? "an integer" : "a number"} > 0 and <= ${max}, got ${JSON.stringify(v)}`);
  }
  return n;
}

const CALLS = positive("calls", args.calls, 5000, true);
const SECONDS = positive("seconds", args.seconds, 3600);
const WARMUP = Number(args.warmup);
if (!(WARMUP >= 0 && WARMUP <= 600)) fail(`--warmup: expected 0..600 s, got ${JSON.stringify(args.warmup)}`);
const SELF = new URL(import.meta.url).pathname;
const HOST = "127.0.0.1";

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** The lines of this process's standard input (the main process drives its children through it). */
function stdinLines(): AsyncIterator<string> {
  return createInterface({ input: process.stdin })[Symbol.asyncIterator]();
}

/** Ends the process once `boundS` seconds have passed, whatever it is doing (a child never outlives its bound). */
function selfBound(role: string): void {
  const boundS = positive("bound-s", args["bound-s"], 86400);
  setTimeout(() => {
    console.error(`packet_cost ${role}: still running after its bound of ${boundS} s: exiting`);
    Deno.exit(3);
  }, boundS * 1000);
}

// ---- receiver: the N chains of one variant -----------------------------------------------------

async function roleReceiver(): Promise<void> {
  selfBound("receiver");
  const variant = Number(args.variant);
  const kind = args.net;
  if (kind !== "deno" && kind !== "fast") throw new Error(`--net: expected deno or fast, got ${kind}`);
  const media = mediaFromEnv(kind);
  if (media.fallback) throw new Error(`--net fast cannot run here: ${media.fallback}`);
  const clock: Clock = media.clock ?? mediaClock();
  const net = media.net ?? udpNetwork;
  const dir = args.dir ?? fail("--dir is required");
  const peer = args.peer ?? fail("--peer is required"), peerRtcp = args["peer-rtcp"] ?? fail("--peer-rtcp is required");

  // The callee's own template, cut to the variant; built by the runner as the SIP control builds a call's chains.
  const file = await loadPipelineFile(repoPath("pipelines/callee.json"));
  file.pipelines = { receive: variantChain(file.pipelines.receive, variant) };
  const runner = new PipelineRunner(file, {
    registry: createRegistry(),
    clock,
    net,
    set: [`record=${dir}/call-\${call.id}.wav`],
  });
  const ports = new PortAllocator(net, parsePortRange(String(runner.params.rtp_ports)));
  const [peerHost, peerPort] = [peer.slice(0, peer.lastIndexOf(":")), Number(peer.slice(peer.lastIndexOf(":") + 1))];
  const rtcpPort = Number(peerRtcp.slice(peerRtcp.lastIndexOf(":") + 1));
  const mem0 = Deno.memoryUsage();
  const chains: Pipeline[] = [];
  for (let i = 0; i < CALLS; i++) {
    const pair = ports.pair(HOST);
    const session = new Session({ id: `bench ${i}`, clock, net, ports: pair });
    const vars: Variables = {
      "call.direction": "in",
      "call.id": `c${i}`,
      "call.n": i + 1,
      "call.from": "bench",
      "local.bind": HOST,
      "local.address": HOST,
      "local.rtp_port": pair.rtpPort,
      "local.rtcp_port": pair.rtcpPort,
      "remote.address": peerHost,
      "remote.rtp": peer,
      "remote.rtcp": peerRtcp,
      "remote.rtp_port": peerPort,
      "remote.rtcp_port": rtcpPort,
      "codec": "PCMU",
      "payloadType": 0,
      "ptime": 20,
      "dtmf.payloadType": 101,
    };
    chains.push(await runner.build("receive", vars, `receive#${i + 1}`, session));
  }
  for (const p of chains) p.start();
  const plan = chains[0].plan().map((s) => `${s.use}${s.note ? ` (${s.note})` : ""}`);
  console.log(`ready ${JSON.stringify({ ports: chains.map((p) => p.session.ports!.rtpPort), plan })}`);

  const sum = (stage: string, key: string): number | undefined => {
    let n = 0, found = false;
    for (const p of chains) {
      for (const s of p.stats()) {
        const v = s.use === stage ? s.extra?.[key] : undefined;
        if (typeof v === "number") {
          n += v;
          found = true;
        }
      }
    }
    return found ? n : undefined;
  };
  const lines = stdinLines();
  let snaps = 0;
  for (let r = await lines.next(); !r.done; r = await lines.next()) {
    if (r.value === "snap") {
      // Memory per call as it stands with every chain running and receiving (the second snapshot ends the window).
      const m = Deno.memoryUsage();
      const perCall = (now: number, before: number) => (now - before) / 1024 / CALLS;
      console.log(`snap#${++snaps} ${
        JSON.stringify({
          packets: sum("udp-source", "packets"),
          rssPerCallKB: perCall(m.rss, mem0.rss),
          heapPerCallKB: perCall(m.heapUsed, mem0.heapUsed),
        })
      }`);
    } else if (r.value === "final") {
      const counts = {
        received: sum("udp-source", "packets"),
        foreignDropped: sum("udp-source", "foreign_dropped"),
        rtcpLost: sum("rtcp", "lost"),
        jitterLost: sum("jitter-buffer", "lost"),
      };
      // As the SIP control ends a call: the receive chain drains what it holds, then the session closes.
      const results = await Promise.all(chains.map((p) => p.end()));
      await Promise.all(chains.map((p) => p.session.close()));
      const reasons: Record<string, number> = {};
      for (const res of results) reasons[res.reason] = (reasons[res.reason] ?? 0) + 1;
      const errors = results.filter((x) => x.error).map((x) => x.error!.message).slice(0, 3);
      console.log(`final ${JSON.stringify({ ...counts, reasons, errors })}`);
      Deno.exit(0);
    }
  }
  Deno.exit(1); // standard input closed: the main process is gone
}

// ---- generator: 20 ms PCMU RTP to every call ---------------------------------------------------

async function roleGenerator(): Promise<void> {
  selfBound("generator");
  const loop = fastUdpUnavailable() === undefined ? new MediaLoop({ sendBufferBytes: 1 << 20 }) : undefined;
  const net = loop?.network ?? udpNetwork;
  const sock = net.bind(HOST, 0);
  const rtcpSock = net.bind(HOST, 0); // the receivers' RTCP reports land here, unread
  console.log(`ready ${
    JSON.stringify({
      port: sock.port,
      rtcpPort: rtcpSock.port,
      sender: loop ? "MediaLoop (sendmmsg)" : "Deno.listenDatagram",
    })
  }`);
  const lines = stdinLines();
  const first = await lines.next();
  const m = first.done ? null : /^ports ([\d,]+)$/.exec(first.value);
  if (!m) throw new Error(`generator: expected "ports P1,P2,...", got ${JSON.stringify(first.value)}`);
  const ports = m[1].split(",").map(Number);
  let stop = false;
  (async () => {
    for (let r = await lines.next(); !r.done; r = await lines.next()) if (r.value === "stop") break;
    stop = true; // "stop", or standard input closed
  })();
  const streams = ports.map((port, i) => ({ s: callStream(i, ports.length), to: { hostname: HOST, port }, k: 0 }));
  let failed = 0;
  const listener = { sent: () => {}, failed: () => void failed++ };
  const tick = loop ? () => loop.clock.sleep(1) : () => sleep(1);
  const t0 = performance.now();
  while (!stop) {
    const elapsed = performance.now() - t0;
    for (const st of streams) {
      for (const due = packetsDue(st.s.phaseMs, elapsed); st.k < due; st.k++) {
        sock.post(rtpPacket(st.s, st.k), st.to, listener);
      }
    }
    await tick();
  }
  await sleep(50); // what was posted leaves
  const sent = streams.reduce((a, st) => a + st.k, 0);
  console.log(`sent ${JSON.stringify({ sent: sent - failed, failed, seconds: (performance.now() - t0) / 1000 })}`);
  await loop?.close();
  Deno.exit(0);
}

// ---- main ----------------------------------------------------------------------------------------

const procs = new Set<BoundedProcess>();
let tmp: string | undefined;

async function cleanup(): Promise<void> {
  for (const p of procs) p.kill("SIGKILL");
  await Promise.allSettled([...procs].map((p) => p.result));
  if (tmp) await Deno.remove(tmp, { recursive: true }).catch(() => {});
  tmp = undefined;
}

function child(role: string[], boundS: number): BoundedProcess {
  const p = spawnBounded(Deno.execPath(), ["run", "-A", SELF, ...role, "--bound-s", String(boundS)], {
    timeoutMs: (boundS + 5) * 1000,
    stdin: true,
  });
  procs.add(p);
  p.result.finally(() => procs.delete(p));
  return p;
}

/** The JSON of the first line `TAG {...}` the child prints (waits up to `timeoutMs`). */
async function reply<T>(p: BoundedProcess, tag: string, timeoutMs: number): Promise<T> {
  const re = new RegExp(`^${tag} (.*)\\n`, "m");
  await p.waitForOutput(re, timeoutMs);
  return JSON.parse(re.exec(p.output())![1]) as T;
}

interface RunInfo {
  plan: string[];
  sender: string;
  reasons: Record<string, number>;
  errors: string[];
}

async function measure(variant: number, net: string, round: number): Promise<Measure & { info: RunInfo }> {
  const dir = await Deno.makeTempDir({ dir: tmp, prefix: `v${variant}-${net}-` });
  const boundS = WARMUP + SECONDS + 120;
  const gen = child(["--role", "gen"], boundS);
  try {
    const g = await reply<{ port: number; rtcpPort: number; sender: string }>(gen, "ready", 60_000);
    const rx = child([
      "--role",
      "rx",
      "--variant",
      String(variant),
      "--net",
      net,
      "--calls",
      String(CALLS),
      "--peer",
      `${HOST}:${g.port}`,
      "--peer-rtcp",
      `${HOST}:${g.rtcpPort}`,
      "--dir",
      dir,
    ], boundS);
    try {
      const r = await reply<{ ports: number[]; plan: string[] }>(rx, "ready", 120_000);
      await gen.write(`ports ${r.ports.join(",")}\n`);
      await sleep(WARMUP * 1000);
      const load0 = machineLoad();
      const cpu0 = cpuSeconds(rx.pid), gcpu0 = cpuSeconds(gen.pid), t0 = performance.now();
      await rx.write("snap\n");
      const s0 = await reply<{ packets: number }>(rx, "snap#1", 30_000);
      await sleep(SECONDS * 1000);
      const cpu1 = cpuSeconds(rx.pid), gcpu1 = cpuSeconds(gen.pid), t1 = performance.now();
      const load1 = machineLoad();
      await rx.write("snap\n");
      const s1 = await reply<{ packets: number; rssPerCallKB: number; heapPerCallKB: number }>(rx, "snap#2", 30_000);
      if (cpu0 === undefined || cpu1 === undefined) throw new Error(`cannot read /proc/${rx.pid}/stat`);
      await gen.write("stop\n");
      const sent = await reply<{ sent: number; failed: number }>(gen, "sent", 30_000);
      await sleep(300); // the last datagrams arrive
      await rx.write("final\n");
      const fin = await reply<
        {
          received: number;
          rtcpLost?: number;
          jitterLost?: number;
          reasons: Record<string, number>;
          errors: string[];
        }
      >(rx, "final", 60_000);
      const [rr, gr] = await Promise.all([rx.result, gen.result]);
      if (rr.code !== 0) throw new Error(`receiver exited with ${rr.code}:\n${rx.output().slice(-2000)}`);
      if (gr.code !== 0) throw new Error(`generator exited with ${gr.code}:\n${gen.output().slice(-2000)}`);
      return {
        variant,
        net,
        round,
        packets: s1.packets - s0.packets,
        cpuS: cpu1 - cpu0,
        wallS: (t1 - t0) / 1000,
        sent: sent.sent,
        received: fin.received,
        ...(fin.rtcpLost !== undefined ? { rtcpLost: fin.rtcpLost } : {}),
        ...(fin.jitterLost !== undefined ? { jitterLost: fin.jitterLost } : {}),
        ...(gcpu0 !== undefined && gcpu1 !== undefined ? { generatorCpuS: gcpu1 - gcpu0 } : {}),
        pressure: pressureBetween(load0, load1),
        rssPerCallKB: s1.rssPerCallKB,
        heapPerCallKB: s1.heapPerCallKB,
        info: { plan: r.plan, sender: g.sender, reasons: fin.reasons, errors: fin.errors },
      };
    } finally {
      rx.kill("SIGKILL");
    }
  } finally {
    gen.kill("SIGKILL");
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

const loadText = (l: MachineLoad) =>
  `load average ${l.loadavg.map((x) => x.toFixed(2)).join(" ")}, CPU pressure some avg10 ${l.pressure10.toFixed(1)} %`;

async function main(): Promise<void> {
  const rounds = positive("rounds", args.rounds, 100, true);
  const nets = args.net.split(",").map((s) => s.trim()).filter(Boolean);
  if (nets.length === 0 || nets.some((n) => n !== "deno" && n !== "fast") || new Set(nets).size !== nets.length) {
    fail(`--net: expected deno, fast or deno,fast, got ${JSON.stringify(args.net)}`);
  }
  if (nets.includes("fast")) {
    const why = fastUdpUnavailable();
    if (why) fail(`--net fast cannot run here (${why}): use --net deno`);
  }
  let variants: number[];
  try {
    variants = parseVariants(args.variants);
  } catch (e) {
    fail((e as Error).message);
  }
  // Each measurement: start-up, warm-up, window, wind-down; twice that, and two minutes, is the bench's deadline.
  const deadlineS = 2 * rounds * variants.length * nets.length * (WARMUP + SECONDS + 15) + 120;
  const deadline = setTimeout(async () => {
    console.error(`packet_cost: not done within ${deadlineS.toFixed(0)} s: killing everything`);
    await cleanup();
    Deno.exit(1);
  }, deadlineS * 1000);
  const onSignal = async () => {
    await cleanup();
    Deno.exit(130);
  };
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);
  tmp = await Deno.makeTempDir({ prefix: "voxpipe-packet-cost-" });

  const before = machineLoad();
  console.log(
    `# packet cost of pipelines/callee.json's receive chain: ${CALLS} calls × 50 packets/s (20 ms PCMU) = ` +
      `${CALLS * 50} packets/s offered; ${WARMUP} s warm-up, ${SECONDS} s window, ${rounds} round(s), ` +
      `networks ${nets.join(", ")}, variants ${variants.join(",")}`,
  );
  console.log(`# before: ${loadText(before)}`);
  const measures: (Measure & { info: RunInfo })[] = [];
  const plans: Record<number, string[]> = {};
  for (let round = 0; round < rounds; round++) {
    const order = variants.flatMap((variant) => nets.map((net) => ({ variant, net })));
    if (round % 2 === 1) order.reverse();
    for (const { variant, net } of order) {
      const m = await measure(variant, net, round);
      measures.push(m);
      plans[variant] ??= m.info.plan;
      const notEnded = Object.entries(m.info.reasons).filter(([k]) => k !== "eos" && k !== "stopped");
      console.log(
        `round ${round + 1} variant ${variant} ${net.padEnd(4)}: ${m.packets} packets in ${m.wallS.toFixed(1)} s, ` +
          `CPU ${(100 * m.cpuS / m.wallS).toFixed(1)} % → ${usPerPacket(m).toFixed(2)} µs/packet, ` +
          `${(m.packets / m.cpuS).toFixed(0)} packets/s per core; sent ${m.sent}, received ${m.received}` +
          `${m.rtcpLost !== undefined ? `, rtcp lost ${m.rtcpLost}` : ""}; generator CPU ${
            m.generatorCpuS !== undefined ? (100 * m.generatorCpuS / m.wallS).toFixed(1) : "n/a"
          } %, CPU pressure ${m.pressure?.toFixed(1)} %` +
          (notEnded.length ? `; chains ended: ${JSON.stringify(m.info.reasons)} ${m.info.errors.join("; ")}` : ""),
      );
    }
  }
  const after = machineLoad();
  clearTimeout(deadline);

  const rows = summarize(measures, nets);
  const costs = stageCosts(rows);
  console.log("\n## Chains measured (as built, with what each stage says it does)\n");
  for (const v of variants) console.log(`${v}. ${plans[v].join(" → ")}`);
  console.log(`\n## Per variant (medians over ${rounds} round(s); generator: ${measures[0].info.sender})\n`);
  console.log(variantTable(rows));
  console.log("\n## Per stage: µs of CPU per packet added by each stage (difference of consecutive variants)\n");
  console.log(stageTable(costs));
  console.log(
    "\nA difference under its noise (half the spread over rounds of each of the two variants, added) is not " +
      "meaningful; with one round the noise is unknown and no difference is. Variant 1 holds the fixed costs of the " +
      "process (event loop, timers, socket reads) as well as udp-source; the last line is wav-sink minus null-sink.",
  );
  // /proc/PID/stat counts CPU time in clock ticks (1/100 s): each end of a window is up to one tick off.
  const fewest = Math.min(...measures.map((x) => x.packets));
  console.log(
    `CPU time is read in 10 ms ticks: a window's figure may be off by up to 20 ms of CPU, here up to ` +
      `${(20_000 / fewest).toFixed(2)} µs/packet (the window with the fewest packets, ${fewest}).`,
  );
  console.log(`\n# before: ${loadText(before)}`);
  console.log(`# after:  ${loadText(after)}`);
  console.log(`# CPU pressure over the whole run: ${pressureBetween(before, after).toFixed(1)} %`);
  if (args.json) {
    await Deno.writeTextFile(
      args.json,
      JSON.stringify(
        {
          config: { calls: CALLS, seconds: SECONDS, warmup: WARMUP, rounds, nets, variants },
          chains: plans,
          measures,
          rows,
          stageCosts: costs,
          machine: { before, after, pressure: pressureBetween(before, after) },
        },
        null,
        2,
      ) + "\n",
    );
    console.log(`# figures written to ${args.json}`);
  }
}

switch (args.role) {
  case "rx":
    await roleReceiver();
    break;
  case "gen":
    await roleGenerator();
    break;
  case "main":
    try {
      await main();
    } catch (e) {
      console.error(`packet_cost: ${e instanceof Error ? e.message : e}`);
      await cleanup();
      Deno.exit(1);
    }
    await cleanup();
    Deno.exit(0);
    break;
  default:
    fail(`unknown --role ${args.role}`);
}
