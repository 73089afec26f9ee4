/**
 * The load ladder (the scale issue): N concurrent recorded calls for N = 100,
 * 200, 400, 800, 1000, each call 60 s of 20 ms PCMU RTP played by sipp from a
 * pcap, into our callee, and the same N calls against `sipp -sn uas -rtp_echo`
 * as the reference, on this machine, over loopback.
 *
 * Per step N:
 * - **voxpipe**: `deno run -A mod.ts --pipeline pipelines/callee.json`
 *   (`calls=N`, `max_calls=N`, one WAV per call via `${call.id}` in its own
 *   directory) and sipp as UAC (`tests/fixtures/sipp/uac_pcmu_pcap.xml`:
 *   `play_pcap_audio` of a pcap the bench writes, `--seconds` of distinct 20 ms
 *   PCMU frames, from media address 127.0.0.2 (see `UAC_MEDIA_IP`); or with
 *   `--sender stream`, `uac_pcmu_stream.xml`'s `rtp_stream`; `-m N -l N -r CPS`,
 *   so all N calls are up at once once ramped). Measured: calls completed and failed (sipp's statistics; refused
 *   with 503 from its error log), most calls up at once (sipp), RTP packets
 *   sent (pcap packets × calls that sent their ACK, from sipp's screen),
 *   received (the callee's call summaries), lost (the difference), datagrams
 *   the kernel dropped on the server's sockets (`/proc/net/udp`), CPU of the
 *   server and of the sipp UAC (`/proc/PID/stat` utime + stime, every thread)
 *   as % of one core over the step (sipp start to sipp end), peak resident
 *   memory (`VmHWM`) and per call ((peak − idle) / N), and recordings
 *   complete: every frame of what sipp sent found sample-exact, in order, with
 *   no shift (the TypeScript twin of `/work/shared/tools/frames_found.py`), and
 *   the WAV finalized.
 * - **reference**: the same sipp UAC against `sipp -sn uas -rtp_echo` (sipp's
 *   built-in UAS; its one echo thread sends every RTP packet back to where it
 *   came from). Measured the same way: calls, packets sent, packets echoed
 *   (`Total echo RTP pckts 1st stream` on the UAS's screen, dumped with
 *   SIGUSR2 once the calls have ended: sipp 3.6.1's UAC counts no RTP it
 *   receives, and its final screen omits the RTP lines), lost = sent − echoed,
 *   drops on the UAS's sockets, CPU and memory of the UAS.
 *
 * The machine's load (`/proc/loadavg`, `/proc/pressure/cpu`) is read at the
 * start and end of each run, and the CPU pressure over it. One table per step,
 * both rows and their ratios; `--json FILE` writes everything.
 *
 * Options passed to the server: `--net fast` (its environment gets
 * `VOXPIPE_NET=fast`), `--media-workers K` (its environment gets
 * `VOXPIPE_MEDIA_WORKERS=K`, and `--set media_workers=K` when the pipeline
 * declares that parameter), `--overload-lag-ms` (the callee's overload
 * protection, 500 as shipped), `--rtp-ports` (its RTP port range: must hold N
 * pairs).
 *
 * Every run ends by itself: every process is bounded in time and killed on the
 * way out, on error and on SIGINT/SIGTERM; the temporary directories are removed
 * (`--keep` keeps them).
 *
 * Run: `deno task bench:ladder`, or `deno run -A bench/ladder.ts [--steps 100,200,400,800,1000]
 * [--seconds 60] [--cps 50] [--only voxpipe|reference] [--sender pcap|stream] [--net fast] [--media-workers K]
 * [--overload-lag-ms 500] [--rtp-ports 10000-20000] [--json FILE] [--keep]` (needs sipp as root, for its
 * pcap play's raw socket: `bash scripts/setup.sh`). Small, for development: `--steps 10,20 --seconds 10`.
 *
 * @module
 */
import { benchArgs } from "./_args.ts";
import {
  type BoundedProcess,
  freePortPair,
  freeUdpPort,
  g711Audio,
  LISTENING_RE,
  outputTail,
  ProcessGroup,
  readSippStats,
  readWav,
  requireTool,
  sippArgs,
  sippCounter,
  sippErrors,
  sleep,
  spawnSipp,
} from "../tests/sip_util.ts";
import { spawnCli, waitForUdpPort } from "../tests/media_util.ts";
import { callSummaries, compareApartFromSilence, framesFound } from "../tests/record_check.ts";
import { repoPath } from "../tests/util.ts";
import {
  type MachineLoad,
  machineLoad,
  maxColumn,
  openFilesLimit,
  pressureBetween,
  ResourceWatch,
  sippScreenCounters,
  sippScreens,
  type SippSender,
  writeUacScenario,
} from "./_sipp.ts";

const { values: args } = benchArgs(import.meta.url, {
  steps: { type: "string", default: "100,200,400,800,1000" },
  seconds: { type: "string", default: "60" },
  cps: { type: "string", default: "50" },
  only: { type: "string", default: "" },
  net: { type: "string", default: "" },
  "media-workers": { type: "string", default: "" },
  "overload-lag-ms": { type: "string", default: "500" },
  sender: { type: "string", default: "pcap" },
  "rtp-ports": { type: "string", default: "10000-20000" },
  json: { type: "string", default: "" },
  keep: { type: "boolean", default: false },
});

function fail(message: string): never {
  console.error(`ladder: ${message}`);
  Deno.exit(2);
}
function positive(name: string, v: string | undefined, max: number): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0 || n > max) {
    fail(`--${name} must be a number in (0, ${max}], got ${JSON.stringify(v)}`);
  }
  return n;
}
const STEPS = (args.steps ?? "").split(",").map((s) => Math.round(positive("steps (each)", s.trim(), 5000)));
const SECONDS = positive("seconds", args.seconds, 3600);
const CPS = positive("cps", args.cps, 10000);
const OVERLOAD_LAG_MS = Math.round(positive("overload-lag-ms", args["overload-lag-ms"], 60000));
const ONLY = args.only ?? "";
if (!["", "voxpipe", "reference"].includes(ONLY)) {
  fail(`--only must be voxpipe or reference, got ${JSON.stringify(ONLY)}`);
}
const NET = args.net ?? "";
if (!["", "fast", "deno"].includes(NET)) fail(`--net must be fast or deno, got ${JSON.stringify(NET)}`);
const MEDIA_WORKERS = args["media-workers"] ? Math.round(positive("media-workers", args["media-workers"], 64)) : 0;
const RTP_PORTS = /^(\d+)-(\d+)$/.exec(args["rtp-ports"] ?? "");
if (!RTP_PORTS || Number(RTP_PORTS[2]) <= Number(RTP_PORTS[1])) {
  fail(`--rtp-ports must be LOW-HIGH, e.g. 10000-20000, got ${JSON.stringify(args["rtp-ports"])}`);
}
const PORT_PAIRS = Math.floor((Number(RTP_PORTS[2]) - Number(RTP_PORTS[1]) + 1) / 2);
for (const n of STEPS) {
  if (n > PORT_PAIRS) fail(`--rtp-ports ${args["rtp-ports"]} holds ${PORT_PAIRS} port pairs, fewer than ${n} calls`);
}
const SENDER = (args.sender ?? "pcap") as SippSender;
if (!["pcap", "stream"].includes(SENDER)) fail(`--sender must be pcap or stream, got ${JSON.stringify(SENDER)}`);
const PIPELINE = "pipelines/callee.json";

// ---------------------------------------------------------------------------
// Everything started is stopped on the way out.

const procs = new ProcessGroup();
const dirs = new Set<string>();
async function removeDir(d: string): Promise<void> {
  dirs.delete(d);
  if (args.keep) console.log(`kept ${d}`);
  else await Deno.remove(d, { recursive: true }).catch(() => {});
}
async function cleanup(): Promise<void> {
  await procs.stop();
  for (const d of [...dirs]) await removeDir(d);
}
const onSignal = async () => {
  console.error("ladder: interrupted: stopping every process it started");
  await cleanup();
  Deno.exit(130);
};
Deno.addSignalListener("SIGINT", onSignal);
Deno.addSignalListener("SIGTERM", onSignal);

// ---------------------------------------------------------------------------
// One run: N calls against one server

/** What one run measured. */
interface Run {
  system: "voxpipe" | "sipp -rtp_echo";
  calls: number;
  completed: number;
  failed: number;
  refused503: number;
  peakUp: number;
  packetsSent: number;
  /** sipp's "Total RTP pckts sent" on its last screen dump that printed it (up to a second before its end). */
  sippCountedSent: number;
  /** voxpipe: received by the callee's chains; reference: echoed by the UAS. */
  packetsReceived: number;
  packetsLost: number;
  socketDrops: number;
  /** Datagrams dropped on the sipp UAC's sockets (the reference's echoes land on its media socket, never read). */
  uacSocketDrops: number;
  rcvbufErrors: number;
  serverCpuS: number;
  serverCpuPct: number;
  uacCpuPct: number;
  uacThreads: number;
  serverThreads: number;
  idleRssMb: number;
  peakRssMb: number;
  rssPerCallKb: number;
  recordings?: { files: number; complete: number; framesExpected: number; framesFound: number; shifts: number };
  wallS: number;
  loadStart: MachineLoad;
  loadEnd: MachineLoad;
  pressurePct: number;
  /** What went wrong, and facts worth a line (the server's datagram path). */
  notes: string[];
}

/** The audio every call plays and the scenario that plays it, written once per run directory. */
interface Media {
  samples: Int16Array;
  bytes: Uint8Array;
}

/** sipp ends a test after 120 late main-loop turns (10 very late ones): on a busy machine that is not the test's end. */
const WATCHDOG = ["-watchdog_minor_maxtriggers", "1000000", "-watchdog_major_maxtriggers", "1000000"];

/**
 * The UAC's media address. sipp plays each pcap through a raw UDP socket bound to it, and the kernel hands a copy of
 * every UDP datagram addressed to that address to every such socket: N calls × every packet, charged to whoever sends
 * it. On 127.0.0.2 the RTP the UAC sends to the server (127.0.0.1) is not copied; what comes back to the UAC (the
 * reference's echoes, RTCP) still is.
 */
const UAC_MEDIA_IP = SENDER === "pcap" ? "127.0.0.2" : "127.0.0.1";

function uacArgs(scenario: string, n: number, target: string): string[] {
  return sippArgs({
    scenario,
    mediaIp: UAC_MEDIA_IP,
    // sipp binds its media port and the next ones (video at +2); rtp_stream takes a port pair per call from there.
    mediaPort: freePortPair(UAC_MEDIA_IP, SENDER === "stream" ? Math.max(4, 2 * n) : 4),
    service: "bob",
    calls: n,
    limit: n,
    rate: CPS,
    ratePeriodMs: 1000,
    pauseMs: Math.round(SECONDS * 1000) + 3000, // after the ACK: the pcap plays meanwhile, on its own thread
    extra: ["-trace_screen", ...WATCHDOG],
    target,
  });
}

/**
 * Runs the sipp UAC: N calls to 127.0.0.1:`port`, from `dir`, until it ends. Every second it is asked (SIGUSR2) to dump
 * its screens: the last dump with the RTP line gives sipp's own count of packets played.
 */
async function runUac(n: number, scenario: string, dir: string, port: number, notes: string[]) {
  const t0 = performance.now();
  const uac = procs.add(spawnSipp(uacArgs(scenario, n, `127.0.0.1:${port}`), {
    cwd: dir,
    timeoutMs: boundMs(n),
    statsFile: "uac.csv",
  }));
  const uw = new ResourceWatch(uac.pid);
  const dump = setInterval(() => uac.kill("SIGUSR2"), 1000);
  const ur = await uac.result;
  clearInterval(dump);
  uw.stop();
  const wallS = (performance.now() - t0) / 1000;
  if (ur.code !== 0) notes.push(`sipp UAC exit ${ur.code}${ur.timedOut ? " (timed out)" : ""}`);
  return { uw, wallS };
}

/** Time bound of a run's processes, ms: the ramp, the calls, and room for a loaded machine. */
function boundMs(n: number): number {
  return (n / CPS + SECONDS + 240) * 1000;
}

/**
 * The events in sipp's error log, each without its time stamp: an event starts with its date and may span lines (a SIP
 * message), and sipp omits the newline between some events.
 */
function sippEvents(log: string): string[] {
  return log.split(/(?=\d{4}-\d\d-\d\d\t\d)/).map((e) => e.replace(/^\S+\t\S+\t[\d.]+: /, "").trim())
    .filter((e) => e && !/^The following events/.test(e));
}

/**
 * A note on sipp's error log: its watchdog trips (its main loop ran late: the machine was busy; the limits are raised so
 * that they do not end the test) and messages for calls already ended counted, the first other lines quoted.
 */
function sippErrorNote(who: string, log: string, notes: string[]): void {
  const lines = sippEvents(log);
  const trips = lines.filter((l) => /watchdog timer/.test(l));
  const dead = lines.filter((l) => /^Dead call /.test(l));
  const other = lines.filter((l) => !/watchdog timer|^Dead call /.test(l));
  if (trips.length) notes.push(`${who}: ${trips.length} watchdog trips (its main loop ran late; the machine was busy)`);
  if (dead.length) {
    notes.push(`${who}: ${dead.length} messages for calls already ended (retransmissions that crossed a late answer)`);
  }
  if (other.length) {
    notes.push(`${who}: ${other.length} other errors, first: ${other[0].replaceAll("\n", " / ").slice(0, 300)}`);
  }
}

/** sipp's figures after a UAC run in `dir`. */
async function uacFigures(dir: string, packets: number, notes: string[]) {
  let completed = NaN, failed = NaN, peakUp = NaN;
  try {
    const st = await readSippStats(`${dir}/uac.csv`);
    completed = sippCounter(st, "SuccessfulCall(C)");
    failed = sippCounter(st, "FailedCall(C)");
    peakUp = maxColumn(await Deno.readTextFile(`${dir}/uac.csv`), "CurrentCall");
  } catch (e) {
    notes.push(`sipp statistics: ${(e as Error).message}`);
  }
  const errLog = sippErrors(dir);
  const refused503 = sippEvents(errLog).filter((e) => /^Aborting call .*received 'SIP\/2\.0 503/s.test(e)).length;
  sippErrorNote("sipp UAC", errLog, notes);
  // Calls that sent their ACK started their pcap: the last count on sipp's scenario screen.
  const acks = [...sippScreens(dir).matchAll(/ACK -+>\s+(\d+)/g)].map((m) => Number(m[1]));
  const started = acks.length ? acks[acks.length - 1] : completed;
  const sendFailures = errLog.match(/sendto failed/g)?.length ?? 0;
  if (sendFailures) notes.push(`sipp: ${sendFailures} pcap plays stopped on a send error`);
  // sipp's own count, from its last screen dump (every second while it ran) that printed it.
  const counted = sippScreenCounters(dir).rtpSent ?? NaN;
  return { completed, failed, peakUp, refused503, packetsSent: started * packets, sippCountedSent: counted };
}

async function runDir(
  n: number,
  system: string,
  media: Media,
): Promise<{ dir: string; scenario: string; packets: number }> {
  const dir = await Deno.makeTempDir({ prefix: `voxpipe-ladder-${system}-${n}-` });
  dirs.add(dir);
  const s = await writeUacScenario(dir, media.bytes, SENDER);
  return { dir, ...s };
}

const MB = 1024;

/** What the watches of the server (`sw`) and the sipp UAC (`uw`) saw over a run of `n` calls. */
function watched(n: number, sw: ResourceWatch, uw: ResourceWatch) {
  return {
    socketDrops: sw.socketDrops,
    uacSocketDrops: uw.socketDrops,
    rcvbufErrors: sw.udpErrors().rcvbuf,
    serverCpuS: sw.cpuSeconds,
    serverCpuPct: sw.cpuPercent,
    uacCpuPct: uw.cpuPercent,
    uacThreads: uw.peakThreads,
    serverThreads: sw.peakThreads,
    idleRssMb: sw.startRssKb / MB,
    peakRssMb: sw.peakRssKb / MB,
    rssPerCallKb: (sw.peakRssKb - sw.startRssKb) / n,
  };
}

/** The server of a run: how it starts, and how it is stopped once the UAC has ended. */
interface Server {
  /** `Run.system`. */
  system: Run["system"];
  /** Name of the run directory. */
  name: string;
  /** Starts the server for `n` calls with its files in `dir`; resolves once it listens, with its process and port. */
  start(n: number, dir: string): Promise<{ proc: BoundedProcess; port: number }>;
  /**
   * Stops the server once the UAC has ended, and says what it received: packets, and the recordings it wrote (to be
   * checked against what sipp sent). Notes what went wrong.
   */
  stop(proc: BoundedProcess, dir: string, notes: string[]): Promise<{ received: number; recordings?: string[] }>;
}

/**
 * One run: N calls from the sipp UAC against `server`, in a run directory of their own, measured (sipp's figures,
 * the watches of both processes, the machine's load from the server's start to its end). Every process is stopped and
 * the directory removed on the way out.
 */
async function runAgainst(n: number, media: Media, server: Server): Promise<Run> {
  const { dir, scenario, packets } = await runDir(n, server.name, media);
  const notes: string[] = [];
  try {
    const loadStart = machineLoad();
    const { proc, port } = await server.start(n, dir);
    const sw = new ResourceWatch(proc.pid);
    const { uw, wallS } = await runUac(n, scenario, dir, port, notes);
    sw.stop();
    const { received, recordings } = await server.stop(proc, dir, notes);
    const loadEnd = machineLoad();
    const u = await uacFigures(dir, packets, notes);
    return {
      system: server.system,
      calls: n,
      ...u,
      packetsReceived: received,
      packetsLost: u.packetsSent - received,
      ...watched(n, sw, uw),
      ...(recordings ? { recordings: await checkRecordings(media.samples, recordings) } : {}),
      wallS,
      loadStart,
      loadEnd,
      pressurePct: pressureBetween(loadStart, loadEnd),
      notes,
    };
  } finally {
    await procs.stop();
    await removeDir(dir);
  }
}

/** Our callee (`PIPELINE`): N calls, one WAV each, then it exits. */
const voxpipeServer: Server = {
  system: "voxpipe",
  name: "voxpipe",
  async start(n, dir) {
    await Deno.mkdir(`${dir}/rec`);
    const port = freeUdpPort();
    const set: Record<string, string | number> = {
      port,
      calls: n,
      max_calls: n,
      record: `${dir}/rec/call-\${call.id}.wav`,
      codecs: "PCMU",
      rtp_timeout: 30, // longer than sipp's pause after its audio: sipp, not the callee, hangs up
      rtp_ports: args["rtp-ports"]!,
      overload_lag_ms: OVERLOAD_LAG_MS,
    };
    const env: Record<string, string> = {};
    if (NET) env.VOXPIPE_NET = NET;
    if (MEDIA_WORKERS) {
      env.VOXPIPE_MEDIA_WORKERS = String(MEDIA_WORKERS);
      if (pipelineParameters.has("media_workers")) set.media_workers = MEDIA_WORKERS;
    }
    const cliArgs = ["--pipeline", PIPELINE, ...Object.entries(set).flatMap(([k, v]) => ["--set", `${k}=${v}`])];
    const proc = procs.add(spawnCli(cliArgs, { timeoutMs: boundMs(n) + 60_000, env, stopSignal: "SIGINT" }));
    await proc.waitForOutput(LISTENING_RE, 60_000);
    return { proc, port };
  },
  async stop(server, dir, notes) {
    // The callee exits after its N calls; calls that failed at sipp's end would keep it waiting.
    const grace = setTimeout(() => server.kill("SIGINT"), 30_000);
    const sr = await server.result;
    clearTimeout(grace);
    if (sr.code !== 0) notes.push(`callee exit ${sr.code}: ${outputTail(sr, 600)}`);
    if (args.keep) await Deno.writeTextFile(`${dir}/callee.log`, sr.stderr);
    // "overloaded (N calls in progress (max_calls N))" is expected once all calls are up; lag overload is not.
    const warnings = sr.stderr.split("\n").filter((l) =>
      (/\] (still )?overloaded \(/.test(l) && !/max_calls/.test(l)) || / ERROR /.test(l)
    );
    const network = /network: [^\n]*/.exec(sr.stderr)?.[0];
    if (network) notes.push(network); // which datagram path the server ran (VOXPIPE_NET)
    if (warnings.length) {
      notes.push(`callee: ${warnings.length} overload/error lines, first: ${warnings[0].slice(0, 300)}`);
    }
    const sums = callSummaries(sr.stderr);
    return {
      received: sums.reduce((a, s) => a + s.received, 0),
      recordings: sums.flatMap((s) => s.recording ? [s.recording] : []),
    };
  },
};

/**
 * Every recording checked against what sipp sent: all frames, sample-exact, in order, no shift, finalized. A recording
 * that is the reference sample for sample apart from silence at either end holds every frame in order (the quick test,
 * ~1 ms); any other is searched frame by frame (`framesFound`, ~0.3 s for 60 s).
 */
async function checkRecordings(ref: Int16Array, paths: string[]) {
  const frames = framesFound(ref, ref).total;
  let complete = 0, found = 0, shifts = 0;
  for (const p of paths) {
    try {
      const w = await readWav(p);
      const f = compareApartFromSilence(ref, w.samples).equal
        ? { found: frames, total: frames, shifts: 0 }
        : framesFound(ref, w.samples);
      found += f.found;
      shifts += f.shifts;
      if (f.found === f.total && f.shifts === 0 && w.finalized) complete++;
    } catch { /* unreadable: not complete */ }
  }
  return { files: paths.length, complete, framesExpected: frames * paths.length, framesFound: found, shifts };
}

/** The reference: sipp's built-in UAS echoing every RTP packet, counted on its screen. */
const referenceServer: Server = {
  system: "sipp -rtp_echo",
  name: "reference",
  async start(n, dir) {
    const uasDir = `${dir}/uas`;
    await Deno.mkdir(uasDir);
    const port = freeUdpPort();
    const proc = procs.add(spawnSipp(
      sippArgs({
        builtin: "uas",
        port,
        mediaPort: freePortPair("127.0.0.1", 4),
        rtpEcho: true, // no calls (-m): it runs until its echo count is read (a UAS that had ended would not say it)
        extra: ["-trace_screen", ...WATCHDOG],
      }),
      { cwd: uasDir, timeoutMs: boundMs(n) + 60_000, statsFile: "uas.csv" },
    ));
    await waitForUdpPort(port, 30_000);
    return { proc, port };
  },
  async stop(uas, dir, notes) {
    const uasDir = `${dir}/uas`;
    const echoed = await echoCount(uas, uasDir);
    if (echoed === undefined) notes.push("the UAS's screen never showed its echo counter");
    // SIGUSR1: no new calls, exit once the calls have ended; a second one aborts what remains (its built-in scenario
    // waits 4 s after each BYE).
    uas.kill("SIGUSR1");
    const grace = setTimeout(() => uas.kill("SIGUSR1"), 10_000);
    const sr = await uas.result;
    clearTimeout(grace);
    if (sr.code !== 0) notes.push(`sipp UAS exit ${sr.code}`);
    sippErrorNote("sipp UAS", sippErrors(uasDir), notes);
    return { received: echoed ?? NaN };
  },
};

/**
 * The UAS's echo counter, once the calls have ended: SIGUSR2 makes sipp dump its screens into its screen log; the
 * RTP lines are printed only when time has passed since its last display tick, and its main loop, which writes the dump,
 * may run seconds late on a starved machine: it is asked every second for up to 30 s.
 */
async function echoCount(uas: BoundedProcess, dir: string): Promise<number | undefined> {
  for (let i = 0; i < 30 && !uas.ended; i++) {
    uas.kill("SIGUSR2");
    await sleep(1000);
    const n = sippScreenCounters(dir).echoed;
    if (n !== undefined) return n;
  }
  return sippScreenCounters(dir).echoed;
}

/** Parameters the server's pipeline declares. */
const pipelineParameters = new Set(
  Object.keys(JSON.parse(await Deno.readTextFile(repoPath(PIPELINE))).parameters ?? {}),
);

// ---------------------------------------------------------------------------
// Output

const f0 = (x: number) => Number.isFinite(x) ? x.toFixed(0) : "n/a";
const f1 = (x: number) => Number.isFinite(x) ? x.toFixed(1) : "n/a";
const pct = (a: number, b: number) => b > 0 && Number.isFinite(a) ? `${((100 * a) / b).toFixed(2)} %` : "n/a";
const ratio = (a: number, b: number) =>
  b > 0 && Number.isFinite(a) && Number.isFinite(b) ? `×${(a / b).toFixed(2)}` : "n/a";
const loadText = (l: MachineLoad) =>
  `${l.loadavg.map((x) => x.toFixed(2)).join(" ")}, CPU pressure ${f1(l.pressure10)} %`;

function table(rows: string[][]): string {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => (r[i] ?? "").length)));
  const line = (r: string[]) => `| ${r.map((c, i) => c.padEnd(widths[i])).join(" | ")} |`;
  return [line(rows[0]), `|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`, ...rows.slice(1).map(line)].join("\n");
}

function row(r: Run): string[] {
  return [
    r.system,
    `${r.completed}/${r.calls}${r.failed ? ` (${r.failed} failed${r.refused503 ? `, ${r.refused503}×503` : ""})` : ""}`,
    f0(r.peakUp),
    // Calls that sent their ACK × the pcap, and sipp's own count when it is lower (plays cut short at a late BYE, or its
    // last screen dump came early: the truth lies between).
    `${f0(r.packetsSent)}${r.sippCountedSent < 0.99 * r.packetsSent ? ` (sipp ${f0(r.sippCountedSent)})` : ""}`,
    f0(r.packetsReceived),
    `${f0(r.packetsLost)} (${pct(r.packetsLost, r.packetsSent)})`,
    f0(r.socketDrops),
    `${f1(r.serverCpuPct)} %`,
    `${f1(r.uacCpuPct)} %`,
    f1(r.peakRssMb),
    f1(r.rssPerCallKb),
    r.recordings ? `${r.recordings.complete}/${r.calls}` : "—",
  ];
}

function printStep(n: number, runs: Run[]): void {
  const head = [
    "server",
    "calls ok",
    "peak up",
    "pkts sent",
    "recv/echoed",
    "lost",
    "sock drops",
    "server CPU",
    "sipp UAC CPU",
    "peak RSS MB",
    "RSS/call KB",
    "recordings complete",
  ];
  const rows = [head, ...runs.map(row)];
  const v = runs.find((r) => r.system === "voxpipe"), s = runs.find((r) => r.system !== "voxpipe");
  if (v && s) {
    rows.push([
      "voxpipe / sipp",
      ratio(v.completed, s.completed),
      "",
      ratio(v.packetsSent, s.packetsSent),
      ratio(v.packetsReceived, s.packetsReceived),
      "",
      "",
      ratio(v.serverCpuPct, s.serverCpuPct),
      ratio(v.uacCpuPct, s.uacCpuPct),
      ratio(v.peakRssMb, s.peakRssMb),
      ratio(v.rssPerCallKb, s.rssPerCallKb),
      "",
    ]);
  }
  console.log(`\n== step ${n} calls × ${SECONDS} s (PCMU 20 ms, sipp ${SENDER}, ${CPS} calls/s)`);
  console.log(table(rows));
  for (const r of runs) {
    const rec = r.recordings
      ? `; recordings ${r.recordings.files} files, frames ${r.recordings.framesFound}/${r.recordings.framesExpected}, ` +
        `shifts ${r.recordings.shifts}`
      : "";
    console.log(
      `${r.system}: sipp counted ${f0(r.sippCountedSent)} RTP packets sent by its last screen dump; ` +
        `wall ${f1(r.wallS)} s, server CPU ${f1(r.serverCpuS)} s, threads ${r.serverThreads} ` +
        `(sipp UAC ${r.uacThreads}), idle RSS ${
          f1(r.idleRssMb)
        } MB, drops on sipp UAC sockets ${r.uacSocketDrops}, machine UDP RcvbufErrors +${r.rcvbufErrors}${rec}; ` +
        `load at start ${loadText(r.loadStart)}, at end ${loadText(r.loadEnd)}, CPU pressure over the run ` +
        `${f1(r.pressurePct)} %`,
    );
    for (const e of r.notes) console.log(`  ${r.system}: ${e}`);
  }
}

// ---------------------------------------------------------------------------

const results: { calls: number; runs: Run[] }[] = [];
let ok = true;
try {
  await requireTool("sipp");
  if (Deno.uid?.() !== 0) console.log("ladder: not root: sipp's pcap play needs a raw socket; calls will send no RTP");
  const nofile = openFilesLimit();
  const biggest = Math.max(...STEPS);
  if (nofile < 4 * biggest + 200) {
    console.log(
      `ladder: open files limit ${nofile} is low for ${biggest} calls (ulimit -n ${4 * biggest + 200} or more)`,
    );
  }
  if (biggest / CPS > SECONDS) {
    console.log(`ladder: at ${CPS} calls/s the last of ${biggest} calls starts after the first has ended (--cps)`);
  }
  const audio = g711Audio("PCMU", SECONDS, 5); // seed 5: every 20 ms frame distinct
  const media: Media = { samples: audio.samples, bytes: audio.bytes };
  console.log(
    `ladder: steps ${STEPS.join(", ")}; ${SECONDS} s calls (${audio.bytes.length / 160} packets, sipp ${
      SENDER === "pcap" ? "play_pcap_audio" : "rtp_stream"
    }); ${CPS} calls/s; ` +
      `server ${PIPELINE}${NET ? `, VOXPIPE_NET=${NET}` : ""}${
        MEDIA_WORKERS ? `, media workers ${MEDIA_WORKERS}` : ""
      }; ` +
      `overload_lag_ms ${OVERLOAD_LAG_MS}; ${navigator.hardwareConcurrency} CPUs; open files limit ${nofile}; ` +
      `UDP rmem_default ${(await Deno.readTextFile("/proc/sys/net/core/rmem_default").catch(() => "?")).trim()}`,
  );
  for (const n of STEPS) {
    const runs: Run[] = [];
    if (ONLY !== "reference") runs.push(await runAgainst(n, media, voxpipeServer));
    if (ONLY !== "voxpipe") runs.push(await runAgainst(n, media, referenceServer));
    results.push({ calls: n, runs });
    printStep(n, runs);
    if (args.json) {
      await Deno.writeTextFile(
        args.json,
        JSON.stringify(
          { seconds: SECONDS, cps: CPS, sender: SENDER, net: NET, mediaWorkers: MEDIA_WORKERS, steps: results },
          null,
          2,
        ),
      );
    }
  }
} catch (e) {
  console.error(`ladder: ${(e as Error).stack ?? e}`);
  ok = false;
} finally {
  await cleanup();
}
Deno.exit(ok ? 0 : 1);
