/**
 * Pacing accuracy of `udp-sink` on the process media clock, measured at the
 * receiving socket.
 *
 * ```sh
 * deno run -A bench/pacing.ts [--streams N] [--seconds S] [--receiver process|inline] [--capture]
 *   [--coalesce-ms C] [--main-thread] [--spin-ms M] [--spin-budget B] [--nice=N] [--net fast [--workers K]
 *   [--pacer-lead-ms L [--pacer-spin-ms M] [--pacer-budget B]]]
 *   [--chain feed|file [--start-gate on|off]] [--keep-capture FILE]
 * ```
 *
 * Starts N pipelines `rtp-feed → udp-sink` through the real pipeline runner and
 * the real plugin on `mediaClock()` (the one `RealClock` of the process). Each
 * feed is synthetic (RTP, PCMU, 160-byte payloads, timestamps +160 = 20 ms) and
 * behaves like a file source: it emits as fast as the sink accepts and waits
 * on backpressure, so the sink's queue and `drained()` are exercised exactly as
 * in a file→network pipeline. Streams start at random phases across one
 * 20 ms period, as independent calls would.
 *
 * The receiver runs in a separate process by default (`--receiver process`), so
 * its receive load does not disturb the sender's scheduler; it binds one
 * socket, timestamps every datagram with `performance.now()` right after
 * `receive()` resolves, and tells streams apart by SSRC. `--receiver inline`
 * receives in the sending process instead (the worst case: the sender's event
 * loop carries the receive load too).
 *
 * Printed, one line per run:
 * - `p50`/`p99`/`max`: |inter-arrival − 20 ms| over consecutive packets of every
 *   stream (a lost packet's neighbours are skipped); `p99_after_1s` and
 *   `max_after_1s` leave out each stream's first second (every stream starts
 *   within the same 20 ms, and starting 200 chains takes the loop ~0.1 s: that
 *   shows in the whole-run figures, not in these);
 * - `drift`: per stream, arrival(n) − arrival(0) − n·20 ms, median of the last
 *   50 packets minus median of the first 50; the mean over streams, and the
 *   largest magnitude (`drift_worst`);
 * - `late`: packets the sinks sent more than 1 ms after their due time, and the
 *   largest lateness the sinks saw;
 * - `cpu`: CPU time of the sending process over the run, as % of one core;
 * - `load`: the 1-minute load average at the start (2-core machine);
 * - `scheduler`: `thread` (the timer thread), or `main(...)` with the main-thread
 *   mode's fine-phase duty and wait style.
 *
 * `--capture` also records the datagrams with `dumpcap` on `lo` and prints a
 * `pacing-capture` line from the kernel's timestamps, taken as each datagram is
 * sent: the sender's pacing without the receiver's own wake-up latency;
 * `--keep-capture FILE` keeps the capture (pcap) there.
 * `--coalesce-ms` sets the timer thread's `coalesceMs` (default 0.3).
 * `--main-thread`, `--spin-ms` and `--spin-budget` run the streams on a
 * `RealClock` in main-thread mode with those parameters instead of `mediaClock()`. `--nice=-10` raises the sender's scheduling priority (needs root), to see how
 * much of the jitter is other processes taking the CPU. `--net fast` runs the streams on a `MediaLoop`
 * (`core/net/media_loop.ts`) instead: its clock paces them and each pipeline's session binds its socket on the
 * loop's network (FFI sockets); with `--workers K` the streams are spread over K media workers (Web Workers in
 * this process), each with its own `MediaLoop`; there `--spin-ms M` and `--spin-budget B` are the loops'
 * `spinMs` and `spinBudget` (the last M ms before each send spun, at most B of a core). `--pacer-lead-ms L` (with
 * `--net fast`) gives the loops the native pacer (`VOXPIPE_PACER_LEAD_MS`): each sink hands its packets to the
 * pacer's thread L ms early, and the thread sends them at their due times (`--pacer-spin-ms M`: its spin, default 1;
 * `--pacer-budget B`: the share of a core it may spin, default 0.25).
 *
 * `--chain file` makes each stream the full chain `file-source → g711-encoder
 * → rtp-packetizer → udp-sink`, reading one generated 8 kHz WAV of the run's
 * length (noise), instead of `rtp-feed → udp-sink`. Two or more file chains
 * start together, as a pipeline file's chains do: each sink fills its queue,
 * then all start their timelines when a `StartGate` opens; `--start-gate off`
 * starts each sink's timeline at its first packet instead.
 *
 * @module
 */
import { benchArgs } from "./_args.ts";
import os from "node:os";
import process from "node:process";
import { mediaClock, RealClock } from "../core/clock.ts";
import { MediaLoop } from "../core/net/media_loop.ts";
import { PACER_SPIN_BUDGET, PACER_SPIN_MS } from "../core/net/fast.ts";
import { buildStreams, type FeedResult, PTIME, writeChainWav } from "./_rtp_feed.ts";
import { analyze, type Arrivals, type PacingStats, record, startCapture } from "./_pacing_stats.ts";

const END_MAGIC = 0x454e4421; // "END!"

const args = benchArgs(import.meta.url, {
  streams: { type: "string", default: "1" },
  seconds: { type: "string", default: "30" },
  receiver: { type: "string", default: "process" },
  role: { type: "string", default: "sender" },
  "spin-ms": { type: "string" },
  "spin-budget": { type: "string" },
  "pacer-lead-ms": { type: "string" },
  "pacer-spin-ms": { type: "string" },
  "pacer-budget": { type: "string" },
  "main-thread": { type: "boolean", default: false },
  "coalesce-ms": { type: "string" },
  capture: { type: "boolean", default: false },
  "keep-capture": { type: "string" },
  nice: { type: "string" },
  net: { type: "string", default: "deno" },
  workers: { type: "string", default: "0" },
  chain: { type: "string", default: "feed" },
  "start-gate": { type: "string", default: "on" },
});

const streams = Number(args.values.streams);
const seconds = Number(args.values.seconds);
const packetsPerStream = Math.round((seconds * 1000) / PTIME);

// ---- receiver ------------------------------------------------------------------------------

/** What the receiver process reports. */
interface ReceiverReport extends PacingStats {
  cpuPct: number;
}

/** Receives until END; returns the statistics. `onReady` gets the bound port. */
async function receive(onReady: (port: number) => void, expectStreams: number): Promise<ReceiverReport> {
  const sock = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  onReady((sock.addr as Deno.NetAddr).port);
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const streams = new Map<number, Arrivals>();
  const buf = new Uint8Array(2048);
  for (;;) {
    const [d] = await sock.receive(buf);
    const now = performance.now();
    const v = new DataView(d.buffer, d.byteOffset, d.byteLength);
    if (d.length === 4 && v.getUint32(0) === END_MAGIC) break;
    if (d.length < 12) continue;
    record(streams, v.getUint32(8), v.getUint32(4), now, packetsPerStream);
  }
  const cpu = process.cpuUsage(cpu0);
  const wall = performance.now() - t0;
  sock.close();
  return {
    ...analyze(streams, expectStreams, packetsPerStream),
    cpuPct: ((cpu.user + cpu.system) / 1000 / wall) * 100,
  };
}

if (args.values.role === "receiver") {
  const report = await receive((port) => console.log(JSON.stringify({ ready: port })), streams);
  console.log(JSON.stringify(report));
  Deno.exit(0);
}

// ---- sender --------------------------------------------------------------------------------

async function startReceiverProcess(): Promise<{ port: number; report: Promise<ReceiverReport> }> {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      import.meta.filename!,
      "--role",
      "receiver",
      "--streams",
      String(streams),
      "--seconds",
      String(seconds),
    ],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let pending = "";
  const nextLine = async (): Promise<string> => {
    for (;;) {
      const i = pending.indexOf("\n");
      if (i >= 0) {
        const line = pending.slice(0, i);
        pending = pending.slice(i + 1);
        return line;
      }
      const { value, done } = await lines.read();
      if (done) throw new Error("receiver exited early");
      pending += value;
    }
  };
  const ready = JSON.parse(await nextLine());
  const report = (async () => {
    const r = JSON.parse(await nextLine()) as ReceiverReport;
    await child.status;
    return r;
  })();
  return { port: ready.ready, report };
}

const load = (await Deno.readTextFile("/proc/loadavg")).split(" ")[0];
if (args.values.nice !== undefined) {
  // Raise (negative) or lower the sender's priority: the process nice value, and its autogroup's, which is
  // what the kernel weighs against processes of other sessions when autogroup scheduling is on.
  const n = Number(args.values.nice);
  os.setPriority(n);
  try {
    await Deno.writeTextFile("/proc/self/autogroup", String(n));
  } catch { /* no autogroup */ }
}
function schedulerLabel(c: RealClock): string {
  const st = c.schedulerStats();
  return st.mode === "thread" ? "thread" : `main(duty=${st.duty.toFixed(2)},${st.spinning ? "spin" : "futex"})`;
}

const spin = args.values["spin-ms"];
const budget = args.values["spin-budget"];
const mainThread = args.values["main-thread"];
if (args.values.net !== "deno" && args.values.net !== "fast") throw new Error(`--net: expected deno or fast`);
const workers = Number(args.values.workers);
if (!(Number.isInteger(workers) && workers >= 0) || (workers > 0 && args.values.net !== "fast")) {
  throw new Error("--workers: a whole number, with --net fast");
}
// With --net fast, --spin-ms and --spin-budget are the MediaLoop's spinMs and spinBudget (in each worker too).
// --pacer-lead-ms L: the loops' native pacer (MediaLoopOptions.pacer), with the CLI's spin and budget.
const pacerLead = args.values["pacer-lead-ms"];
if (pacerLead !== undefined && args.values.net !== "fast") throw new Error("--pacer-lead-ms: with --net fast");
const loopOptions = args.values.net === "fast"
  ? {
    spinMs: Number(spin ?? 0),
    ...(budget !== undefined ? { spinBudget: Number(budget) } : {}),
    ...(pacerLead !== undefined
      ? {
        pacer: {
          leadMs: Number(pacerLead),
          spinMs: Number(args.values["pacer-spin-ms"] ?? PACER_SPIN_MS),
          spinBudget: Number(args.values["pacer-budget"] ?? PACER_SPIN_BUDGET),
        },
      }
      : {}),
  }
  : undefined;
const fastLoop = loopOptions && workers === 0 ? new MediaLoop(loopOptions) : undefined;
const clock = fastLoop
  ? fastLoop.clock
  : spin === undefined && budget === undefined && !mainThread
  ? mediaClock()
  : new RealClock(Number(spin ?? 1.5), 0.5, Number(budget ?? 0));
if (mainThread) (clock as RealClock).useTimerThread = false;
const coalesce = args.values["coalesce-ms"];
if (coalesce !== undefined) (clock as RealClock).coalesceMs = Number(coalesce);

let port: number;
let report: Promise<ReceiverReport>;
if (args.values.receiver === "inline") {
  let ready!: (p: number) => void;
  const portP = new Promise<number>((r) => ready = r);
  report = receive(ready, streams);
  port = await portP;
} else {
  ({ port, report } = await startReceiverProcess());
}

const capture = args.values.capture
  ? await startCapture(port, streams, packetsPerStream, args.values["keep-capture"])
  : undefined;
if (args.values.chain !== "feed" && args.values.chain !== "file") throw new Error("--chain: expected feed or file");
if (args.values["start-gate"] !== "on" && args.values["start-gate"] !== "off") {
  throw new Error("--start-gate: expected on or off");
}
const gate = args.values["start-gate"] === "on";
let file: string | undefined;
if (args.values.chain === "file") {
  file = await Deno.makeTempFile({ prefix: "pacing-", suffix: ".wav" });
  await writeChainWav(file, packetsPerStream);
}
const ssrcs = Array.from({ length: streams }, (_, i) => i + 1);
let runStreams: () => Promise<FeedResult[]>;
const loopStats: unknown[] = [];
if (workers > 0) {
  // Media workers: each paces its share of the streams on its own MediaLoop.
  const ws = Array.from(
    { length: workers },
    () => new Worker(new URL("./_pacing_worker.ts", import.meta.url), { type: "module" }),
  );
  const replies = ws.map((w) => {
    const queue: unknown[] = [];
    let wake: (() => void) | undefined;
    w.onmessage = (e) => {
      queue.push(e.data);
      wake?.();
    };
    w.onerror = (e) => console.error(`worker failed: ${e.message}`);
    return async () => {
      while (queue.length === 0) await new Promise<void>((r) => wake = r);
      return queue.shift() as Record<string, unknown>;
    };
  });
  ws.forEach((w, k) =>
    w.postMessage({
      ssrcs: ssrcs.filter((_, i) => i % workers === k),
      count: packetsPerStream,
      port,
      file,
      gate,
      loopOptions,
    })
  );
  await Promise.all(replies.map((next) => next()));
  runStreams = async () => {
    ws.forEach((w) => w.postMessage("go"));
    const done = await Promise.all(replies.map((next) => next()));
    ws.forEach((w) => w.terminate());
    for (const d of done) loopStats.push(d.stats);
    return done.map((d) => d.result as FeedResult);
  };
} else {
  const run = await buildStreams({
    ssrcs,
    count: packetsPerStream,
    port,
    clock,
    net: fastLoop?.network,
    file,
    gate,
  });
  runStreams = async () => [await run()];
}
const cpu0 = process.cpuUsage();
const t0 = performance.now();
const results = await runStreams();
const wall = performance.now() - t0;
const cpu = process.cpuUsage(cpu0);
let late = 0, maxLate = 0, errors = 0;
for (const r of results) {
  for (const f of r.failures) console.error(`pipeline ended: ${f}`);
  late += r.late;
  maxLate = Math.max(maxLate, r.maxLate);
  errors += r.errors;
}
if (fastLoop) loopStats.push(fastLoop.stats());
await new Promise((r) => setTimeout(r, 200));
const end = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
const magic = new Uint8Array(4);
new DataView(magic.buffer).setUint32(0, END_MAGIC);
await end.send(magic, { transport: "udp", hostname: "127.0.0.1", port });
end.close();
const r = await report;
const cap = await capture?.stop();
const ms = (x: number, sign = false) => `${sign && x >= 0 ? "+" : ""}${x.toFixed(3)}ms`;
console.log(
  `pacing streams=${streams} packets=${r.received} p50=${ms(r.p50)} p99=${ms(r.p99)} max=${ms(r.max)} ` +
    `p99_after_1s=${ms(r.p99AfterFirstSecond)} max_after_1s=${ms(r.maxAfterFirstSecond)} ` +
    `drift=${ms(r.drift, true)} drift_worst=${ms(r.driftWorst, true)} lost=${r.lost} ` +
    `late=${late} max_late=${maxLate.toFixed(3)}ms send_errors=${errors} ` +
    `cpu=${((cpu.user + cpu.system) / 1000 / wall * 100).toFixed(1)}% receiver=${args.values.receiver}` +
    (args.values.receiver === "process" ? ` receiver_cpu=${r.cpuPct.toFixed(1)}%` : "") +
    ` seconds=${seconds} chain=${args.values.chain}${
      file && streams > 1 ? ` start_gate=${args.values["start-gate"]}` : ""
    } load=${load}` + (spin !== undefined ? ` spin_ms=${spin}` : "") +
    (budget !== undefined ? ` spin_budget=${budget}` : "") +
    (pacerLead !== undefined ? ` pacer_lead_ms=${pacerLead} pacer=${JSON.stringify(fastLoop?.pacerStats())}` : "") +
    (coalesce !== undefined ? ` coalesce_ms=${coalesce}` : "") +
    (args.values.nice !== undefined ? ` nice=${args.values.nice}` : "") +
    (args.values.net === "fast"
      ? ` net=fast workers=${workers} scheduler=media-loop(${JSON.stringify(loopStats)})`
      : clock instanceof RealClock
      ? ` scheduler=${schedulerLabel(clock)}`
      : ""),
);
if (file) await Deno.remove(file);
if (cap) {
  console.log(
    `pacing-capture streams=${streams} packets=${cap.received} p50=${ms(cap.p50)} p99=${ms(cap.p99)} ` +
      `p99_after_1s=${ms(cap.p99AfterFirstSecond)} max_after_1s=${ms(cap.maxAfterFirstSecond)} ` +
      `max=${ms(cap.max)} drift=${ms(cap.drift, true)} drift_worst=${ms(cap.driftWorst, true)} lost=${cap.lost} ` +
      `(kernel timestamps on lo)`,
  );
}
Deno.exit(0);
