/**
 * The call server under load: `--calls` (200) concurrent sipp calls into `pipelines/server.json` (greeting on, every
 * caller recorded), each streaming `--seconds` (20) of 20 ms PCMU with sipp's `rtp_stream`
 * (`tests/fixtures/sipp/uac_pcmu_stream.xml`: INVITE / 200 / ACK, the audio, a pause a little longer than it, BYE),
 * started at `--rate` calls per second, all up at once.
 *
 * Figures, printed at the end:
 * - calls completed (sipp's successful calls; failed ones) and the server's call summaries;
 * - RTP received and lost, from the server's summaries (what its receivers counted);
 * - recordings complete: each recording checked against the audio sipp sent with
 *   `/work/shared/tools/frames_found.py` (every 20 ms frame, sample-exact, in order), the number that hold every
 *   frame, the lowest fraction, and the timeline shifts found (`stereo`: the left channel, the caller; `mixed` is
 *   not checked: the caller is summed with the greeting);
 * - the server process's CPU time over the run (user + system, from /proc) and its peak resident memory.
 *
 * Run: `deno run -A bench/server_bench.ts [--calls 200] [--seconds 20] [--rate 20] [--record-mode caller]
 * [--media-workers N] [--keep]` (needs sipp and python3; `--keep` leaves the temporary directory with the recordings
 * and logs; `--media-workers N` runs the server's call media in N worker threads, `VOXPIPE_MEDIA_WORKERS`, and the
 * CPU line also gives the main thread's share).
 *
 * @module
 */
import { benchArgs } from "./_args.ts";
import {
  type BoundedProcess,
  freePortPair,
  freeUdpPort,
  g711Audio,
  readSippStats,
  requireTool,
  scenarioPath,
  sippArgs,
  sippCounter,
  sippErrors,
  spawnBounded,
  spawnSipp,
} from "../tests/sip_util.ts";
import { readWav, writeWav } from "../tests/media_util.ts";
import { repoPath } from "../tests/util.ts";
// utime + stime of a process (or of one of its threads), in seconds, from /proc.
import { liveCpuSeconds as cpuSeconds } from "../tests/record_check.ts";

const { values: args } = benchArgs(import.meta.url, {
  calls: { type: "string", default: "200" },
  seconds: { type: "string", default: "20" },
  rate: { type: "string", default: "20" },
  "record-mode": { type: "string", default: "caller" },
  "media-workers": { type: "string", default: "0" },
  keep: { type: "boolean", default: false },
});
const CALLS = Number(args.calls);
const SECONDS = Number(args.seconds);
const RATE = Number(args.rate);
const FRAMES_FOUND = "/work/shared/tools/frames_found.py";

/** Peak resident memory of a process, MB. */
async function peakRssMb(pid: number): Promise<number> {
  const status = await Deno.readTextFile(`/proc/${pid}/status`);
  const kb = Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? 0);
  return kb / 1024;
}

/** The machine's load: 1-minute load average and CPU pressure (share of time runnable tasks waited, avg10). */
async function load(): Promise<string> {
  const avg = (await Deno.readTextFile("/proc/loadavg").catch(() => "?")).split(" ")[0];
  const psi = await Deno.readTextFile("/proc/pressure/cpu").catch(() => "");
  const some = /some avg10=([\d.]+)/.exec(psi)?.[1];
  return `load ${avg}${some !== undefined ? `, CPU pressure ${some} %` : ""}`;
}

/**
 * Watches the UDP sockets of process `pid` bound to local ports `min`..`max` (the server's RTP/RTCP range), from
 * /proc/net/udp and the process's file descriptors: for each socket, the most datagrams it dropped because its receive
 * buffer was full (the reader did not keep up) and its fullest receive queue. `stop()` returns the totals over every
 * socket seen. (Other processes' sockets on those ports are not counted.)
 */
function watchUdpDrops(
  pid: number,
  min: number,
  max: number,
): { stop: () => { drops: number; maxQueueBytes: number } } {
  const drops = new Map<string, number>();
  let maxQueue = 0;
  const sample = () => {
    let text = "";
    const mine = new Set<string>();
    try {
      for (const e of Deno.readDirSync(`/proc/${pid}/fd`)) {
        try {
          const m = /^socket:\[(\d+)\]$/.exec(Deno.readLinkSync(`/proc/${pid}/fd/${e.name}`));
          if (m) mine.add(m[1]);
        } catch { /* closed meanwhile */ }
      }
      text = Deno.readTextFileSync("/proc/net/udp");
    } catch {
      return;
    }
    for (const line of text.split("\n").slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 13 || !mine.has(f[9])) continue;
      const port = parseInt(f[1].split(":")[1], 16);
      if (port < min || port > max) continue;
      drops.set(f[9], Math.max(drops.get(f[9]) ?? 0, Number(f[12]))); // by inode: a port is reused across calls
      maxQueue = Math.max(maxQueue, parseInt(f[4].split(":")[1], 16));
    }
  };
  const timer = setInterval(sample, 250);
  return {
    stop: () => {
      clearInterval(timer);
      sample();
      return { drops: [...drops.values()].reduce((a, b) => a + b, 0), maxQueueBytes: maxQueue };
    },
  };
}

interface Summary {
  sent: number;
  received: number;
  lost: number;
  recording?: string;
  endedBy: string;
}

function summaries(text: string): Summary[] {
  return text.split("\n").filter((l) => l.includes("call summary:")).map((l) => ({
    sent: Number(/ sent=(\d+)/.exec(l)?.[1] ?? 0),
    received: Number(/ received=(\d+)/.exec(l)?.[1] ?? 0),
    lost: Number(/ lost=(\d+)/.exec(l)?.[1] ?? 0),
    recording: / recording=(\S+) /.exec(l)?.[1],
    endedBy: /ended by (.*?)(?: recording=| call=|$)/.exec(l)?.[1] ?? "?",
  }));
}

/**
 * The most calls up at once, from the server's log (in time order): a call is up from its "call established" line
 * to its "call ended" line, matched by the `call=` field.
 */
function peakConcurrent(text: string): number {
  const up = new Set<string>();
  let peak = 0;
  for (const l of text.split("\n")) {
    const id = / call=(\S+)$/.exec(l)?.[1];
    if (id === undefined) continue;
    if (l.includes("ACK received, call established")) peak = Math.max(peak, up.add(id).size);
    else if (l.includes("] call ended by ")) up.delete(id);
  }
  return peak;
}

/**
 * Runs frames_found.py on one recording: `{ found, total, shifts }`. A stereo recording is checked on its left
 * channel (the caller), written to a mono WAV beside it.
 */
async function framesFound(ref: string, rec: string): Promise<{ found: number; total: number; shifts: number }> {
  const wav = await readWav(rec);
  if (wav.channels === 2) {
    const left = wav.samples.filter((_, i) => i % 2 === 0);
    rec = `${rec}.left.wav`;
    await writeWav(rec, left, wav.sampleRate);
  }
  const out = await new Deno.Command("python3", { args: [FRAMES_FOUND, ref, rec], stdout: "piped", stderr: "piped" })
    .output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  const m = /shifts=(\d+) .*frames_found=(\d+)\/(\d+)/.exec(text);
  if (!m) throw new Error(`frames_found.py ${rec}: ${text.trim()}`);
  return { shifts: Number(m[1]), found: Number(m[2]), total: Number(m[3]) };
}

/**
 * Where a recording's missing 20 ms frames of `ref` are: before its first frame found (head), after its last (tail),
 * or between (middle, in `gaps` runs); `found` counts the distinct frames of `ref` it holds. Says whether what is
 * missing never arrived at the ends of the stream (a caller that started late or stopped early) or went missing in
 * between.
 */
function missingFrames(
  ref: Int16Array,
  rec: Int16Array,
): { found: number; head: number; middle: number; tail: number; gaps: number } {
  const key = (a: Int16Array, i: number) =>
    String.fromCharCode(...new Uint16Array(a.buffer, a.byteOffset + i * 2, 160));
  const index = new Map<string, number>();
  const total = Math.floor(ref.length / 160);
  for (let k = 0; k < total; k++) if (!index.has(key(ref, k * 160))) index.set(key(ref, k * 160), k);
  const seen = new Set<number>();
  for (let i = 0; i + 160 <= rec.length; i += 160) {
    const k = index.get(key(rec, i));
    if (k !== undefined) seen.add(k);
  }
  if (seen.size === 0) return { found: 0, head: total, middle: 0, tail: 0, gaps: 0 };
  const first = Math.min(...seen), last = Math.max(...seen);
  let gaps = 0;
  for (let k = first; k < last; k++) if (seen.has(k) && !seen.has(k + 1)) gaps++;
  return { found: seen.size, head: first, middle: last - first + 1 - seen.size, tail: total - 1 - last, gaps };
}

async function main(): Promise<void> {
  await requireTool("sipp");
  const dir = await Deno.makeTempDir({ prefix: "voxpipe-server-bench-" });
  let server: BoundedProcess | undefined;
  try {
    // What every caller sends: SECONDS of speech-like µ-law (raw payload bytes for sipp), and its decoding.
    const audio = g711Audio("PCMU", SECONDS);
    await Deno.writeFile(`${dir}/voxpipe_pcmu.raw`, audio.bytes);
    await writeWav(`${dir}/sent.wav`, audio.samples, 8000);
    const port = freeUdpPort();
    server = spawnBounded(Deno.execPath(), [
      "run",
      "-A",
      repoPath("mod.ts"),
      "--pipeline",
      repoPath("pipelines/server.json"),
      "--set",
      `port=${port}`,
      "--set",
      `greeting=${repoPath("examples/audio/hello.wav")}`,
      "--set",
      `record=${dir}/rec/\${call.id}.wav`,
      "--set",
      `record_mode=${args["record-mode"]}`,
      "--set",
      `max_calls=${CALLS + 50}`,
      "--set",
      "rtp_ports=40000-44999",
      "--set",
      "rtp_timeout=15",
      "--log-file",
      `${dir}/server.log`,
    ], {
      cwd: repoPath("."),
      timeoutMs: (CALLS / RATE + SECONDS + 180) * 1000,
      stopSignal: "SIGINT",
      env: { VOXPIPE_MEDIA_WORKERS: args["media-workers"] },
    });
    await server.waitForOutput(/\[SIP\] listening on udp/, 30_000);
    const pid = server.pid; // `deno run` runs the CLI in its own process
    const cpu0 = cpuSeconds(pid);
    const main0 = cpuSeconds(pid, pid); // the main thread (SIP, and the media without workers)
    const t0 = performance.now();
    console.log(
      `server up (pid ${pid}); ${CALLS} sipp calls at ${RATE}/s, ${SECONDS} s of PCMU each; ${await load()}`,
    );
    const udp = watchUdpDrops(pid, 40000, 44999);
    const sipp = spawnSipp(
      sippArgs({
        scenario: scenarioPath("uac_pcmu_stream.xml"),
        mediaPort: freePortPair("127.0.0.1", 4),
        service: "bench",
        calls: CALLS,
        limit: CALLS,
        rate: RATE,
        pauseMs: SECONDS * 1000 + 1500,
        target: `127.0.0.1:${port}`,
      }),
      { cwd: dir, timeoutMs: (CALLS / RATE + SECONDS + 120) * 1000 },
    );
    const sr = await sipp.result;
    const kernel = udp.stop();
    const loadAfter = await load();
    const stats = await readSippStats(`${dir}/stats.csv`);
    // Every call's summary is logged once its media has stopped.
    const deadline = Date.now() + 30_000;
    while (summaries(server.output()).length < CALLS && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 200));
    }
    const cpu1 = cpuSeconds(pid);
    const main1 = cpuSeconds(pid, pid);
    const rss = await peakRssMb(pid);
    const wall = (performance.now() - t0) / 1000;
    server.kill("SIGINT");
    const rs = await server.result;
    const sums = summaries(rs.stderr);
    const received = sums.reduce((n, s) => n + s.received, 0);
    const lost = sums.reduce((n, s) => n + s.lost, 0);
    const serverSent = sums.reduce((n, s) => n + s.sent, 0);
    const sent = CALLS * (audio.bytes.length / 160);
    let complete = 0, worst = 1, shifts = 0, checked = 0;
    const incomplete: string[] = [];
    // A mixed recording sums the caller and the greeting: its frames are not the caller's; it is not checked.
    const recs = args["record-mode"] === "mixed"
      ? []
      : sums.map((s) => s.recording).filter((r): r is string => r !== undefined);
    for (let i = 0; i < recs.length; i += 4) {
      const batch = await Promise.all(recs.slice(i, i + 4).map((r) => framesFound(`${dir}/sent.wav`, r)));
      for (const [j, f] of batch.entries()) {
        checked++;
        if (f.found === f.total) complete++;
        else incomplete.push(recs[i + j]);
        worst = Math.min(worst, f.found / f.total);
        shifts += f.shifts;
      }
    }
    // An incomplete recording: where its frames went missing, and whether it holds every packet the server received.
    const where = { head: 0, middle: 0, tail: 0, gaps: 0, holdsAllReceived: 0, holdsAllButMerged: 0 };
    for (const r of incomplete) {
      const wav = await readWav(r);
      const caller = wav.channels === 2 ? wav.samples.filter((_, i) => i % 2 === 0) : wav.samples;
      const m = missingFrames(audio.samples, caller);
      where.head += m.head;
      where.middle += m.middle;
      where.tail += m.tail;
      where.gaps += m.gaps;
      const got = sums.find((s) => s.recording === r)?.received ?? -1;
      if (m.found === got) where.holdsAllReceived++;
      // The jitter buffer conceals a gap and cross-fades the packet after it: that one is not sample-exact.
      else if (m.found === got - m.gaps) where.holdsAllButMerged++;
    }
    const errors = sippErrors(dir);
    console.log(`sipp exit ${sr.code}${errors ? `; sipp errors: ${errors.slice(0, 400)}` : ""}`);
    console.log(
      `calls: ${sippCounter(stats, "SuccessfulCall(C)")} of ${CALLS} completed, ` +
        `${sippCounter(stats, "FailedCall(C)")} failed (sipp); server summaries ${sums.length} ` +
        `(${sums.filter((s) => s.endedBy === "remote: BYE").length} ended by the caller's BYE); ` +
        `peak ${peakConcurrent(rs.stderr)} calls up at once (server log)`,
    );
    console.log(
      `RTP: ${received} packets received of ${sent} in the callers' audio, ${lost} lost (${
        (100 * lost / Math.max(1, received + lost))
          .toFixed(3)
      } %), from the server's summaries; the server sent ${serverSent} (greeting, then silence)`,
    );
    console.log(
      `kernel: ${kernel.drops} datagrams dropped at the server's RTP/RTCP sockets because their receive buffer was full ` +
        `(the server did not read in time; /proc/net/udp and the server's sockets, sampled every 250 ms), fullest receive queue ` +
        `${(kernel.maxQueueBytes / 1024).toFixed(0)} KiB`,
    );
    console.log(
      `recordings: ${complete} of ${checked} complete (every 20 ms frame sipp sent, sample-exact, in order; ` +
        `frames_found.py); lowest fraction ${worst.toFixed(4)}; timeline shifts ${shifts}`,
    );
    if (incomplete.length > 0) {
      console.log(
        `incomplete recordings: ${incomplete.length}; frames missing at the head ${where.head}, in the middle ` +
          `${where.middle} (${where.gaps} gaps), at the tail ${where.tail}; ${where.holdsAllReceived} hold every ` +
          `packet the server received sample-exact, ${where.holdsAllButMerged} every one but the first after each ` +
          `gap (cross-faded with the concealment), the others lack received packets`,
      );
    }
    console.log(
      `server: CPU ${(cpu1 - cpu0).toFixed(1)} s over ${wall.toFixed(1)} s (${
        (100 * (cpu1 - cpu0) / wall).toFixed(0)
      } % of a core; main thread ${(100 * (main1 - main0) / wall).toFixed(0)} %; media_workers ${
        args["media-workers"]
      }), peak RSS ${rss.toFixed(0)} MB; exit ${rs.code}; at the end: ${loadAfter}`,
    );
  } finally {
    server?.kill("SIGINT");
    await server?.result;
    if (args.keep) console.log(`kept ${dir}`);
    else await Deno.remove(dir, { recursive: true });
  }
}

if (import.meta.main) await main();
