/**
 * The fast datagram path (`core/net/media_loop.ts`: FFI sockets on a
 * `MediaLoop`) against `Deno.listenDatagram` (`udpNetwork`, one op per
 * datagram), and its pacing against GStreamer, all measured in the same run,
 * on loopback, bounded in time.
 *
 * ```sh
 * deno run -A bench/fastudp_bench.ts [--only throughput|pacing] [--seconds 3] [--rounds 2]
 *   [--sockets 1,100,1000] [--pacing-seconds 20] [--streams 1,200] [--pacing-workers 2] [--capture]
 *   [--chain feed|file] [--pacing-spin-ms 0.3] [--pacing-pacer-lead-ms 5] [--pacing-pacer-spin-ms 1]
 *   [--pacing-pacer-budget 0.25] [--pacing-rounds 1]
 * ```
 *
 * **Throughput** (packets per second per core of CPU time the measured
 * process used, all its threads). Each measurement is its own process,
 * binding N sockets through the `DatagramSocket` interface (`fast`: a
 * `MediaLoop`'s network; `deno`: `udpNetwork`), the two alternating (which
 * goes first swaps every round):
 * - `receive flood`: a generator process (fast path, one socket, `sendmmsg`)
 *   sends 172-byte datagrams round-robin to the N sockets as fast as it can;
 *   the measured process counts what its handlers get. What it cannot take is
 *   dropped by the kernel: the figure is its capacity.
 * - `receive 50k/s`: the same at 50 000 datagrams/s offered (1 000 sockets:
 *   1 000 calls of 20 ms packets): CPU share and loss.
 * - `send flood`: the measured process sends round-robin from its N sockets
 *   as fast as they take it (each socket keeps a few datagrams queued) to a
 *   socket of this process that is never read (the kernel drops what
 *   overflows; loopback delivery is charged to the sender either way).
 * The window is `--seconds` after a 0.5 s warm-up.
 *
 * **Pacing**: `bench/pacing.ts`'s receiver and method (a separate receiving
 * process, p50/p99/max of |inter-arrival − 20 ms| per stream) for N streams
 * of 20 ms PCMU, from
 * - `fast`: `bench/pacing.ts --net fast` (udp-sink pipelines on a MediaLoop's
 *   clock and network, on the main thread),
 * - `fast spin`: the same with `--spin-ms M` (`--pacing-spin-ms`, default 0.3; 0 leaves it out): the loop
 *   spins the last M ms before each send instead of sleeping (at most half a core; `MediaLoopOptions.spinMs`),
 * - `fast pacer`: the same with `--pacer-lead-ms L` (`--pacing-pacer-lead-ms`, default 5; 0 leaves it out): the
 *   native pacer's thread sends each packet at its due time (`VOXPIPE_PACER_LEAD_MS`), spinning the last
 *   `--pacing-pacer-spin-ms` before it within `--pacing-pacer-budget` of a core (`bench/pacing.ts`'s defaults
 *   when not given),
 * - `fast Kw` (more than one stream): the same spread over K media workers
 *   (`--workers K`, default 2: one per core here), each with its own loop,
 *   all in one process,
 * - `default`: `bench/pacing.ts` (the process media clock, `RealClock` with
 *   its timer thread, and `Deno.listenDatagram`),
 * - `gstreamer`: one `gst-launch-1.0` with N branches `audiotestsrc ! mulawenc
 *   ! rtppcmupay ! udpsink sync=true` (random `ts-offset` phases, like the
 *   voxpipe streams), received by the same receiver,
 * in that order, `--pacing-rounds` times (alternating), then per sender the median p99 over the rounds and the
 * median of its per-round ratios to GStreamer's p99. `--chain file` makes every
 * voxpipe stream a full `file-source → g711-encoder → rtp-packetizer →
 * udp-sink` chain and every GStreamer branch `filesrc ! wavparse ! mulawenc !
 * rtppcmupay ! udpsink` (the payloader cuts the 20 ms packets), both reading the same
 * generated WAV (see `bench/pacing.ts`). With `--capture`, every run is
 * also recorded with `dumpcap` on `lo`, and the same figures are printed from
 * the kernel's timestamps, taken as each datagram is sent (`kernel` lines):
 * each sender's pacing without the receiving process's own wake-up latency,
 * which on this VM is of the same order as the senders' (see bench/README).
 *
 * @module
 */
import { benchArgs } from "./_args.ts";
import process from "node:process";
import { setImmediate } from "node:timers";
import type { DatagramSocket, Network } from "../core/net/datagram.ts";
import { MediaLoop } from "../core/net/media_loop.ts";
import { udpNetwork } from "../core/net/udp.ts";
import { type PacingStats, startCapture } from "./_pacing_stats.ts";
import { writeChainWav } from "./_rtp_feed.ts";

const args = benchArgs(import.meta.url, {
  role: { type: "string", default: "main" },
  kind: { type: "string" },
  sockets: { type: "string", default: "1,100,1000" },
  seconds: { type: "string", default: "3" },
  rounds: { type: "string", default: "2" },
  rate: { type: "string" },
  ports: { type: "string" },
  to: { type: "string" },
  only: { type: "string" },
  streams: { type: "string", default: "1,200" },
  "pacing-seconds": { type: "string", default: "20" },
  "pacing-workers": { type: "string", default: "2" },
  "pacing-spin-ms": { type: "string", default: "0.3" },
  "pacing-pacer-lead-ms": { type: "string", default: "5" },
  "pacing-pacer-spin-ms": { type: "string" },
  "pacing-pacer-budget": { type: "string" },
  "pacing-rounds": { type: "string", default: "1" },
  capture: { type: "boolean", default: false },
  chain: { type: "string", default: "feed" },
});

const SIZE = 172;
const WARMUP_MS = 500;
const seconds = Number(args.values.seconds);

function cpuSeconds(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}

function network(kind: string | undefined): { net: Network; loop?: MediaLoop } {
  if (kind === "fast") {
    const loop = new MediaLoop({ receiveBufferBytes: 1 << 20 });
    return { net: loop.network, loop };
  }
  if (kind === "deno") return { net: udpNetwork };
  throw new Error(`--kind: expected fast or deno, got ${kind}`);
}

/** A line from a child's stdout. */
async function* lines(stream: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  let pending = "";
  for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
    pending += chunk;
    for (let i = pending.indexOf("\n"); i >= 0; i = pending.indexOf("\n")) {
      yield pending.slice(0, i);
      pending = pending.slice(i + 1);
    }
  }
  if (pending) yield pending;
}

// ---- child roles -------------------------------------------------------------------------------

/** Measured receiver: binds N sockets, counts; stdin `start`/`stop` bound the window; prints the result. */
async function roleReceiver(): Promise<void> {
  const n = Number(args.values.sockets);
  const { net } = network(args.values.kind);
  let count = 0;
  const socks: DatagramSocket[] = [];
  for (let i = 0; i < n; i++) {
    const s = net.bind("127.0.0.1", 0);
    s.listen(() => {
      count++;
    });
    socks.push(s);
  }
  console.log(JSON.stringify({ ports: socks.map((s) => s.port) }));
  let c0 = 0, cpu0 = 0, t0 = 0;
  for await (const line of lines(Deno.stdin.readable)) {
    if (line === "start") {
      c0 = count;
      cpu0 = cpuSeconds();
      t0 = performance.now();
    } else if (line === "stop") {
      const cpu = cpuSeconds() - cpu0, wall = (performance.now() - t0) / 1000;
      console.log(JSON.stringify({ received: count - c0, cpu, wall }));
      Deno.exit(0);
    }
  }
}

/** Load generator (fast path, one socket): `rate` datagrams/s (0 = as fast as it can) round-robin to `ports`. */
async function roleGenerator(): Promise<void> {
  const ports = (args.values.ports ?? "").split(",").map(Number);
  const rate = Number(args.values.rate ?? 0);
  const loop = new MediaLoop({ sendBufferBytes: 1 << 20 });
  const s = loop.network.bind("127.0.0.1", 0);
  const targets = ports.map((port) => ({ hostname: "127.0.0.1", port }));
  const pkt = new Uint8Array(SIZE);
  const t0 = performance.now();
  const end = t0 + WARMUP_MS + seconds * 1000 + 1000;
  let sent = 0, k = 0;
  while (performance.now() < end) {
    const due = rate > 0 ? Math.floor(((performance.now() - t0) / 1000) * rate) : sent + 4096;
    for (; sent < due; sent++) {
      s.post(pkt, targets[k]);
      if (++k === targets.length) k = 0;
    }
    if (rate > 0) await loop.clock.sleep(1);
    else await new Promise((r) => setImmediate(r));
  }
  await loop.close();
  console.log(JSON.stringify({ offered: sent }));
}

/** Measured sender: N sockets flood `to` for the window; prints what left and the CPU it took. */
async function roleSender(): Promise<void> {
  const n = Number(args.values.sockets);
  const [host, port] = (args.values.to ?? "").split(":");
  const to = { hostname: host, port: Number(port) };
  const { net, loop } = network(args.values.kind);
  const socks = Array.from({ length: n }, () => net.bind("127.0.0.1", 0));
  const depth = Math.max(2, Math.ceil(256 / n));
  let sent = 0, failed = 0;
  const listener = { sent: () => sent++, failed: () => failed++ };
  const pkt = new Uint8Array(SIZE);
  const start = performance.now() + WARMUP_MS, stop = start + seconds * 1000;
  let c0 = 0, cpu0 = 0, t0 = 0, measuring = false;
  for (;;) {
    const now = performance.now();
    if (!measuring && now >= start) {
      measuring = true;
      c0 = sent;
      cpu0 = cpuSeconds();
      t0 = now;
    }
    if (now >= stop) break;
    for (const s of socks) while (s.sendBacklog < depth) s.post(pkt, to, listener);
    await new Promise((r) => setImmediate(r));
  }
  const cpu = cpuSeconds() - cpu0, wall = (performance.now() - t0) / 1000;
  console.log(JSON.stringify({ sent: sent - c0, failed, cpu, wall }));
  await loop?.close();
  Deno.exit(0);
}

// ---- throughput --------------------------------------------------------------------------------

interface Measure {
  packets: number;
  cpu: number;
  wall: number;
  offered?: number;
}

function child(roleArgs: string[], stdin = false): Deno.ChildProcess {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", import.meta.filename!, ...roleArgs],
    stdin: stdin ? "piped" : "null",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
}

async function measureReceive(kind: string, n: number, rate: number): Promise<Measure> {
  const rx = child(["--role", "rx", "--kind", kind, "--sockets", String(n)], true);
  const out = lines(rx.stdout);
  const { ports } = JSON.parse((await out.next()).value as string) as { ports: number[] };
  const gen = child([
    "--role",
    "gen",
    "--ports",
    ports.join(","),
    "--rate",
    String(rate),
    "--seconds",
    String(seconds),
  ]);
  const genOut = (async () => {
    let last = "";
    for await (const l of lines(gen.stdout)) last = l;
    await gen.status;
    return JSON.parse(last) as { offered: number };
  })();
  const w = rx.stdin.getWriter();
  await new Promise((r) => setTimeout(r, WARMUP_MS));
  await w.write(new TextEncoder().encode("start\n"));
  await new Promise((r) => setTimeout(r, seconds * 1000));
  await w.write(new TextEncoder().encode("stop\n"));
  const r = JSON.parse((await out.next()).value as string) as { received: number; cpu: number; wall: number };
  await w.close().catch(() => {});
  await rx.status;
  await genOut;
  return { packets: r.received, cpu: r.cpu, wall: r.wall, offered: rate > 0 ? rate * r.wall : undefined };
}

async function measureSend(kind: string, n: number): Promise<Measure> {
  const sink = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 }); // never read
  try {
    const tx = child([
      "--role",
      "tx",
      "--kind",
      kind,
      "--sockets",
      String(n),
      "--to",
      `127.0.0.1:${(sink.addr as Deno.NetAddr).port}`,
      "--seconds",
      String(seconds),
    ]);
    let last = "";
    for await (const l of lines(tx.stdout)) last = l;
    await tx.status;
    const r = JSON.parse(last) as { sent: number; cpu: number; wall: number };
    return { packets: r.sent, cpu: r.cpu, wall: r.wall };
  } finally {
    sink.close();
  }
}

const fmtK = (x: number) => `${(x / 1000).toFixed(1)} k`;

async function throughput(): Promise<void> {
  const counts = args.values.sockets.split(",").map(Number);
  const rounds = Number(args.values.rounds);
  console.log(`# throughput: ${seconds} s windows, ${rounds} rounds, 172-byte datagrams, loopback`);
  console.log(`# load at start: ${(await Deno.readTextFile("/proc/loadavg")).trim()}`);
  const results = new Map<string, Measure[]>();
  const add = (key: string, m: Measure) => {
    results.set(key, [...(results.get(key) ?? []), m]);
    const perCore = m.packets / m.cpu;
    console.log(
      `${key.padEnd(34)} ${fmtK(m.packets / m.wall)}/s at ${(100 * m.cpu / m.wall).toFixed(0)} % CPU → ` +
        `${fmtK(perCore)} packets/s per core` +
        (m.offered ? `, loss ${(100 * Math.max(0, 1 - m.packets / m.offered)).toFixed(2)} %` : ""),
    );
  };
  for (let round = 0; round < rounds; round++) {
    const kinds = round % 2 === 0 ? ["fast", "deno"] : ["deno", "fast"];
    for (const n of counts) {
      for (const kind of kinds) add(`receive flood ${n} sockets ${kind}`, await measureReceive(kind, n, 0));
      for (const kind of kinds) add(`receive 50k/s ${n} sockets ${kind}`, await measureReceive(kind, n, 50_000));
      for (const kind of kinds) add(`send flood ${n} sockets ${kind}`, await measureSend(kind, n));
    }
  }
  console.log("# summary: median over rounds, packets/s per core (fast / deno = ratio)");
  // A true median (see median): with 2 rounds, the default, the mean of the middle two, not the higher one.
  for (const what of ["receive flood", "receive 50k/s", "send flood"]) {
    for (const n of counts) {
      const f = results.get(`${what} ${n} sockets fast`)!, d = results.get(`${what} ${n} sockets deno`)!;
      const pf = median(f.map((m) => m.packets / m.cpu)), pd = median(d.map((m) => m.packets / m.cpu));
      let extra = "";
      if (what === "receive 50k/s") {
        const cpu = (ms: Measure[]) => median(ms.map((m) => 100 * m.cpu / m.wall)).toFixed(0);
        const loss = (ms: Measure[]) => median(ms.map((m) => 100 * Math.max(0, 1 - m.packets / m.offered!))).toFixed(2);
        extra = `; CPU ${cpu(f)} % vs ${cpu(d)} %, loss ${loss(f)} % vs ${loss(d)} %`;
      }
      console.log(
        `${what} ${String(n).padStart(4)} sockets: fast ${fmtK(pf)} / deno ${fmtK(pd)} = ${
          (pf / pd).toFixed(2)
        }×${extra}`,
      );
    }
  }
}

// ---- pacing ------------------------------------------------------------------------------------

interface Pacing {
  p50: number;
  p99: number;
  max: number;
  /** p99 leaving out each stream's first second. */
  p99AfterFirstSecond: number;
  lost: number;
  cpu?: string;
  /** The same run's figures from the kernel's timestamps (`--capture`). */
  kernel?: Pick<PacingStats, "p50" | "p99" | "max" | "lost" | "p99AfterFirstSecond">;
}

function parsePacingLine(text: string): Pacing {
  const find = (prefix: string) => text.split("\n").find((l) => l.startsWith(prefix));
  const line = find("pacing ");
  if (!line) throw new Error(`no pacing line in:\n${text.slice(-2000)}`);
  const ms = (l: string, k: string) => Number(new RegExp(` ${k}=([\\d.]+)ms`).exec(l)![1]);
  const cap = find("pacing-capture ");
  return {
    p50: ms(line, "p50"),
    p99: ms(line, "p99"),
    max: ms(line, "max"),
    p99AfterFirstSecond: ms(line, "p99_after_1s"),
    lost: Number(/ lost=(\d+)/.exec(line)![1]),
    cpu: / cpu=([\d.]+%)/.exec(line)?.[1],
    ...(cap
      ? {
        kernel: {
          p50: ms(cap, "p50"),
          p99: ms(cap, "p99"),
          max: ms(cap, "max"),
          p99AfterFirstSecond: ms(cap, "p99_after_1s"),
          lost: Number(/ lost=(\d+)/.exec(cap)![1]),
        },
      }
      : {}),
  };
}

async function pacingVoxpipe(streams: number, secs: number, extra: string[]): Promise<Pacing> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      new URL("./pacing.ts", import.meta.url).pathname,
      "--streams",
      String(streams),
      "--seconds",
      String(secs),
      ...extra,
      ...(args.values.capture ? ["--capture"] : []),
      "--chain",
      args.values.chain,
    ],
    stdout: "piped",
    stderr: "inherit",
    signal: AbortSignal.timeout((secs + 60) * 1000),
  }).output();
  return parsePacingLine(new TextDecoder().decode(out.stdout));
}

async function pacingGStreamer(streams: number, secs: number): Promise<Pacing> {
  const receiver = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      new URL("./pacing.ts", import.meta.url).pathname,
      "--role",
      "receiver",
      "--streams",
      String(streams),
      "--seconds",
      String(secs),
    ],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const out = lines(receiver.stdout);
  const port = (JSON.parse((await out.next()).value as string) as { ready: number }).ready;
  const buffers = Math.round(secs * 50);
  const capture = args.values.capture ? await startCapture(port, streams, buffers) : undefined;
  const branches: string[] = [];
  let file: string | undefined;
  if (args.values.chain === "file") {
    file = await Deno.makeTempFile({ prefix: "pacing-gst-", suffix: ".wav" });
    await writeChainWav(file, buffers);
  }
  for (let i = 0; i < streams; i++) {
    branches.push(
      ...(file ? [`filesrc location=${file}`, "!", "wavparse"] : [
        `audiotestsrc is-live=false num-buffers=${buffers} samplesperbuffer=160 wave=silence`,
        "!",
        "audio/x-raw,format=S16LE,rate=8000,channels=1",
      ]),
      "!",
      "mulawenc",
      "!",
      `rtppcmupay pt=0 ssrc=${i + 1} min-ptime=20000000 max-ptime=20000000`,
      "!",
      `udpsink host=127.0.0.1 port=${port} sync=true ts-offset=${Math.floor(Math.random() * 20e6)}`,
    );
  }
  const cpu0 = await childrenCpu();
  const gst = await new Deno.Command("gst-launch-1.0", {
    args: ["-q", ...branches.flatMap((b) => b.split(" "))],
    stdout: "null",
    stderr: "piped",
    signal: AbortSignal.timeout((secs + 60) * 1000),
  }).output();
  const cpu = (await childrenCpu()) - cpu0;
  if (gst.code !== 0) throw new Error(`gst-launch-1.0 failed: ${new TextDecoder().decode(gst.stderr).slice(-1000)}`);
  await new Promise((r) => setTimeout(r, 200));
  const end = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  const magic = new Uint8Array(4);
  new DataView(magic.buffer).setUint32(0, 0x454e4421); // "END!", what the receiver waits for
  await end.send(magic, { transport: "udp", hostname: "127.0.0.1", port });
  end.close();
  const report = JSON.parse((await out.next()).value as string) as Pacing;
  await receiver.status;
  const kernel = await capture?.stop();
  if (file) await Deno.remove(file);
  return { ...report, cpu: `${(100 * cpu / secs).toFixed(1)}%`, ...(kernel ? { kernel } : {}) };
}

/** CPU seconds of this process's waited-for children (getrusage RUSAGE_CHILDREN via /proc/self/stat cutime+cstime). */
async function childrenCpu(): Promise<number> {
  const stat = await Deno.readTextFile("/proc/self/stat");
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(f[13]) + Number(f[14])) / 100; // cutime, cstime in clock ticks (100 Hz)
}

async function pacing(): Promise<void> {
  const secs = Number(args.values["pacing-seconds"]);
  const counts = args.values.streams.split(",").map(Number);
  const workers = Number(args.values["pacing-workers"]);
  const spin = Number(args.values["pacing-spin-ms"]);
  const lead = Number(args.values["pacing-pacer-lead-ms"]);
  const pacerSpin = args.values["pacing-pacer-spin-ms"], pacerBudget = args.values["pacing-pacer-budget"];
  const pacerArgs = [
    "--pacer-lead-ms",
    String(lead),
    ...(pacerSpin !== undefined ? ["--pacer-spin-ms", pacerSpin] : []),
    ...(pacerBudget !== undefined ? ["--pacer-budget", pacerBudget] : []),
  ];
  const rounds = Number(args.values["pacing-rounds"]);
  if (!(Number.isInteger(rounds) && rounds >= 1)) throw new Error("--pacing-rounds: a whole number, at least 1");
  console.log(`# pacing: ${secs} s per run; |inter-arrival − 20 ms| at bench/pacing.ts's receiver (another process)`);
  for (const n of counts) {
    const senders: { label: string; run: () => Promise<Pacing> }[] = [
      { label: "fast", run: () => pacingVoxpipe(n, secs, ["--net", "fast"]) },
      ...(spin > 0
        ? [{ label: "fast spin", run: () => pacingVoxpipe(n, secs, ["--net", "fast", "--spin-ms", String(spin)]) }]
        : []),
      ...(lead > 0
        ? [{
          label: "fast pacer",
          run: () => pacingVoxpipe(n, secs, ["--net", "fast", ...pacerArgs]),
        }]
        : []),
      ...(n > 1 && workers > 0
        ? [{
          label: `fast ${workers}w`,
          run: () => pacingVoxpipe(n, secs, ["--net", "fast", "--workers", String(workers)]),
        }]
        : []),
      { label: "default", run: () => pacingVoxpipe(n, secs, []) },
      { label: "gstreamer", run: () => pacingGStreamer(n, secs) },
    ];
    const got = new Map<string, Pacing[]>(senders.map((x) => [x.label, []]));
    for (let r = 1; r <= rounds; r++) {
      console.log(
        `# ${n} streams, round ${r} of ${rounds}; load at start: ${(await Deno.readTextFile("/proc/loadavg")).trim()}`,
      );
      for (const x of senders) {
        const p = await x.run();
        got.get(x.label)!.push(p);
        console.log(
          `pacing ${String(n).padStart(3)} streams ${x.label.padEnd(10)} p50 ${p.p50.toFixed(3)} ms  p99 ${
            p.p99.toFixed(3)
          } ms  (after 1 s ${p.p99AfterFirstSecond.toFixed(3)} ms)  max ${p.max.toFixed(3)} ms  lost ${p.lost}${
            p.cpu ? `  sender CPU ${p.cpu}` : ""
          }` + (p.kernel
            ? `  | kernel p50 ${p.kernel.p50.toFixed(3)} ms  p99 ${p.kernel.p99.toFixed(3)} ms  (after 1 s ${
              p.kernel.p99AfterFirstSecond.toFixed(3)
            } ms)  max ${p.kernel.max.toFixed(3)} ms  lost ${p.kernel.lost}`
            : ""),
        );
      }
    }
    // Per sender: the median p99 over the rounds, and the median of its per-round ratios to GStreamer's p99.
    const gst = got.get("gstreamer")!;
    const line = (what: string, pick: (p: Pacing) => number | undefined) => {
      const parts = senders.filter((x) => x.label !== "gstreamer").map((x) => {
        const ps = got.get(x.label)!;
        const ratios = ps.map((p, i) => pick(p)! / pick(gst[i])!);
        return `${x.label} ${median(ps.map((p) => pick(p)!)).toFixed(3)} ms (${median(ratios).toFixed(2)}×)`;
      });
      console.log(
        `pacing ${String(n).padStart(3)} streams ${what}, median of ${rounds} round(s): ${parts.join(", ")}; ` +
          `gstreamer ${median(gst.map((p) => pick(p)!)).toFixed(3)} ms`,
      );
    };
    line("p99 at the receiver", (p) => p.p99);
    line("p99 at the receiver after 1 s", (p) => p.p99AfterFirstSecond);
    if (gst[0].kernel) {
      line("p99 at the kernel", (p) => p.kernel?.p99);
      line("p99 at the kernel after 1 s", (p) => p.kernel?.p99AfterFirstSecond);
    }
  }
}

/** The median; with an even count, the mean of the middle two. */
function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b), h = s.length >> 1;
  return s.length % 2 ? s[h] : (s[h - 1] + s[h]) / 2;
}

// ---- main --------------------------------------------------------------------------------------

switch (args.values.role) {
  case "rx":
    await roleReceiver();
    break;
  case "gen":
    await roleGenerator();
    break;
  case "tx":
    await roleSender();
    break;
  case "main":
    if (args.values.only !== "pacing") await throughput();
    if (args.values.only !== "throughput") await pacing();
    break;
  default:
    throw new Error(`unknown --role ${args.values.role}`);
}
