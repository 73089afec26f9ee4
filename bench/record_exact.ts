/**
 * Proof that a call recorded over a clean network is sample-exact (issue 11,
 * "Playout and recording quality"): the callee's receive chain ends in a
 * `wav-sink`, so its jitter buffer runs in record mode and the file must hold
 * every frame the sender sent, in order, with nothing inserted or removed.
 *
 * 1. **caller → callee** (`--part call`): our CLI callee (`pipelines/callee.json`,
 *    recording to a temporary directory) and our CLI caller
 *    (`pipelines/caller.json`) sending a generated `--seconds` (600) long
 *    speech-like file with a sweep and noise (every 20 ms frame distinct;
 *    `--rate` 8000 or 44100 Hz mono), over loopback, in real time. The
 *    reference is the same file through `pipelines/transcode.json` (the same
 *    resampler and G.711 encoder as the caller's send chain). Checked with
 *    `/work/shared/tools/frames_found.py REF TEST --min 1.0 --max-shifts 0`
 *    (its output is printed) and its TypeScript twin, and strictly: apart from
 *    leading and trailing silence, the recording is the reference, sample for
 *    sample.
 * 2. **N concurrent sipp calls** (`--part sipp`): sipp runs
 *    `tests/fixtures/sipp/uac_pcmu_stream.xml` (`rtp_stream` of a raw µ-law
 *    file of `--call-seconds` (20) s; each 20 ms frame distinct) `--calls` (200)
 *    times, all at once (`-r N -l N -m N`), into `pipelines/callee.json`
 *    (`calls=N`, `max_calls=N`, one WAV per call via `${call.id}`). Every
 *    recording is checked against the file as sipp sent it: every frame, in
 *    order, no shift, and the strict comparison; per call and in total.
 *
 * The callee runs with its shipped overload protection: new INVITEs get 503
 * while its event loop lags more than `overload_lag_ms` (`--overload-lag-ms`,
 * default 500 as shipped; 60000, the most it takes, turns it off in effect) or
 * while `max_calls` (= `--calls`) calls are in progress. The second is why the
 * callee logs `overloaded (200 calls in progress (max_calls 200))` once all
 * calls are up: it refuses nothing, since sipp places exactly that many. A call
 * refused for lag would be a failed sipp call (counted as "refused with 503")
 * and make the result NOT EXACT for a reason that is not the recording; on
 * 2026-12-01 at load 10 none was.
 *
 * Each part prints the callee's CPU (% of one core, from `/proc/PID/stat`), the
 * datagrams the kernel dropped on the callee's sockets (full receive buffers,
 * `/proc/net/udp`), and the machine's load average and CPU pressure during the
 * run, then one summary line (`RESULT caller→callee ...`, `RESULT sipp ...`).
 * Exit status 0 when every recording is exact, 1 otherwise.
 *
 * Everything runs on 127.0.0.1 in a temporary directory removed at the end
 * (`--keep` keeps it); every process is bounded in time and the whole run is
 * killed after its deadline.
 *
 * Run: `deno task bench:record`, or
 * `deno run -A bench/record_exact.ts [--part call|sipp|all] [--seconds 600] [--rate 8000]
 * [--calls 200] [--call-seconds 20] [--cps 25] [--overload-lag-ms 60000] [--keep]` (needs sipp and python3: `bash scripts/setup.sh`).
 *
 * @module
 */
import { benchArgs } from "./_args.ts";
import { readWav, spawnCli, speechLikeSignal, writeWav } from "../tests/media_util.ts";
import {
  type BoundedProcess,
  freePortPair,
  freeUdpPort,
  g711Audio,
  LISTENING_RE,
  outputTail,
  readSippStats,
  requireTool,
  scenarioPath,
  sippArgs,
  sippCounter,
  sippErrors,
  spawnBounded,
  spawnSipp,
} from "../tests/sip_util.ts";
import {
  callSummaries,
  compareApartFromSilence,
  type FramesFound,
  framesFound,
  ProcessWatch,
  recordBufferSummaries,
  type SilenceTrimmedComparison,
  spread,
} from "../tests/record_check.ts";
import { seededRandom } from "../core/random.ts";
import { maxColumn } from "./_sipp.ts";

const { values: args } = benchArgs(import.meta.url, {
  part: { type: "string", default: "all" },
  seconds: { type: "string", default: "600" },
  rate: { type: "string", default: "8000" },
  calls: { type: "string", default: "200" },
  "call-seconds": { type: "string", default: "20" },
  cps: { type: "string", default: "25" },
  "overload-lag-ms": { type: "string", default: "500" },
  keep: { type: "boolean", default: false },
});

function positive(name: string, v: string | undefined, max: number): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0 || n > max) {
    console.error(`record_exact: --${name} must be a number in (0, ${max}], got ${JSON.stringify(v)}`);
    Deno.exit(2);
  }
  return n;
}
const PART = args.part ?? "all";
if (!["call", "sipp", "all"].includes(PART)) {
  console.error(`record_exact: --part must be call, sipp or all, got ${JSON.stringify(PART)}`);
  Deno.exit(2);
}
const SECONDS = positive("seconds", args.seconds, 7200);
const RATE = positive("rate", args.rate, 192000);
const CALLS = Math.round(positive("calls", args.calls, 2000));
const CALL_SECONDS = positive("call-seconds", args["call-seconds"], 3600);
const CPS = positive("cps", args.cps, 10000);
const OVERLOAD_LAG_MS = Math.round(positive("overload-lag-ms", args["overload-lag-ms"], 60000));
const FRAMES_FOUND_PY = "/work/shared/tools/frames_found.py";

// ---------------------------------------------------------------------------
// Bounded run: every process and directory is tracked, and removed on the way out.

const procs = new Set<BoundedProcess>();
const dirs = new Set<string>();
function track<T extends BoundedProcess>(p: T): T {
  procs.add(p);
  p.result.finally(() => procs.delete(p));
  return p;
}
async function cleanup(): Promise<void> {
  for (const p of procs) p.kill("SIGKILL");
  await Promise.allSettled([...procs].map((p) => p.result));
  for (const d of dirs) {
    if (args.keep) console.log(`kept ${d}`);
    else await Deno.remove(d, { recursive: true }).catch(() => {});
  }
  dirs.clear();
}
const deadlineS = (PART !== "sipp" ? SECONDS + 300 : 0) + (PART !== "call" ? CALL_SECONDS + 300 : 0);
const deadline = setTimeout(async () => {
  console.error(`record_exact: not done within ${deadlineS} s: killing everything`);
  await cleanup();
  Deno.exit(1);
}, deadlineS * 1000);
const onSignal = async () => {
  await cleanup();
  Deno.exit(130);
};
Deno.addSignalListener("SIGINT", onSignal);
Deno.addSignalListener("SIGTERM", onSignal);

async function tempDir(prefix: string): Promise<string> {
  const d = await Deno.makeTempDir({ prefix });
  dirs.add(d);
  return d;
}

/** Load and pressure over the run, as one text. */
function machine(w: ProcessWatch): string {
  const [l1, l5, l15] = Deno.loadavg();
  return `load average during the run (1 min; min/mean/max) ${spread(w.load)}, at the end ${l1.toFixed(2)} ${
    l5.toFixed(2)
  } ${l15.toFixed(2)}; ` +
    `CPU pressure some avg10 ${spread(w.pressure)} %`;
}

/** Starts our callee and resolves once it listens. */
async function startCallee(set: Record<string, string | number>, timeoutMs: number) {
  const port = freeUdpPort();
  const a = [
    "--pipeline",
    "pipelines/callee.json",
    "--set",
    `port=${port}`,
    "--set",
    `overload_lag_ms=${OVERLOAD_LAG_MS}`,
  ];
  for (const [k, v] of Object.entries(set)) a.push("--set", `${k}=${v}`);
  const proc = track(spawnCli(a, { timeoutMs }));
  await proc.waitForOutput(LISTENING_RE, 60_000);
  return { proc, port };
}

/**
 * frames_found.py's output line and exit status for each recording, in one Python process (the script is run
 * once per file with `runpy`, exactly as from the command line; a process per file costs seconds on a busy
 * machine).
 */
async function framesFoundPy(ref: string, tests: string[]): Promise<Map<string, { line: string; ok: boolean }>> {
  const driver = [
    "import contextlib, io, runpy, sys",
    "script, ref = sys.argv[1], sys.argv[2]",
    "for test in sys.argv[3:]:",
    "    sys.argv = [script, ref, test, '--min', '1.0', '--max-shifts', '0']",
    "    out, code = io.StringIO(), 0",
    "    with contextlib.redirect_stdout(out):",
    "        try:",
    "            runpy.run_path(script, run_name='__main__')",
    "        except SystemExit as e:",
    "            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)",
    "    print(f'{code}\\t{test}\\t{out.getvalue().strip()}', flush=True)",
  ].join("\n");
  const r = await track(
    spawnBounded("python3", ["-c", driver, FRAMES_FOUND_PY, ref, ...tests], { timeoutMs: 600_000 }),
  ).result;
  const out = new Map<string, { line: string; ok: boolean }>();
  for (const l of r.stdout.split("\n")) {
    const [code, test, line] = l.split("\t");
    if (line !== undefined) out.set(test, { line, ok: code === "0" });
  }
  if (out.size < tests.length) console.log(`frames_found.py: ${outputTail(r, 800)}`);
  return out;
}

function describe(f: FramesFound, c: SilenceTrimmedComparison, rate = 8000): string {
  const ms = (n: number) => `${Math.round((n * 1000) / rate)} ms`;
  return `frames ${f.found}/${f.total}, shifts ${f.shifts}` +
    `${f.missing.length ? ` (first missing frames: ${f.missing.join(",")})` : ""}; ` +
    (c.equal
      ? `sample-exact apart from ${ms(c.leading)} leading and ${ms(c.trailing)} trailing silence`
      : `NOT sample-exact: ${c.mismatches} samples differ, first at ${c.firstMismatch} ` +
        `(audio ${c.recLength} samples, reference ${c.refLength})`);
}

// ---------------------------------------------------------------------------
// Part 1: our caller → our callee

/**
 * A non-repeating test signal: speech-like (gliding pitch, harmonics, syllable envelope, noise) plus a
 * logarithmic sweep 150 Hz → 3.4 kHz and back every 9.7 s. The noise makes every 20 ms frame distinct.
 */
function testSignal(seconds: number, rate: number): Int16Array {
  const x = speechLikeSignal({ seconds, sampleRate: rate, seed: 11, peak: 9000 });
  const rnd = seededRandom(23);
  let phase = 0;
  for (let i = 0; i < x.length; i++) {
    const t = i / rate;
    const u = (t % 9.7) / 9.7; // 0..1
    const f = 150 * Math.pow(3400 / 150, u < 0.5 ? 2 * u : 2 - 2 * u);
    phase += (2 * Math.PI * f) / rate;
    const v = x[i] + 3000 * Math.sin(phase) + (rnd() * 2 - 1) * 300;
    x[i] = Math.max(-32768, Math.min(32767, Math.round(v)));
  }
  return x;
}

async function partCall(): Promise<boolean> {
  console.log(`\n== caller → callee: ${SECONDS} s of ${RATE} Hz mono through pipelines/caller.json → callee.json`);
  const dir = await tempDir("voxpipe-record-call-");
  const source = `${dir}/source.wav`, ref = `${dir}/ref.wav`, rec = `${dir}/rec.wav`;
  await writeWav(source, testSignal(SECONDS, RATE), RATE);
  const tr = await track(
    spawnCli(["--pipeline", "pipelines/transcode.json", "--set", `file=${source}`, "--set", `out=${ref}`], {
      timeoutMs: 300_000,
    }),
  ).result;
  if (tr.code !== 0) throw new Error(`transcode failed: ${outputTail(tr)}`);

  const bound = (SECONDS + 120) * 1000;
  const callee = await startCallee({ calls: 1, record: rec, codecs: "PCMU", rtp_timeout: 10 }, bound);
  const calleeWatch = new ProcessWatch(callee.proc.pid);
  const t0 = performance.now();
  const caller = track(spawnCli([
    "--pipeline",
    "pipelines/caller.json",
    "--set",
    `to=sip:bob@127.0.0.1:${callee.port}`,
    "--set",
    `file=${source}`,
    "--set",
    "codecs=PCMU",
  ], { timeoutMs: bound }));
  const callerWatch = new ProcessWatch(caller.pid);
  const cr = await caller.result;
  if (cr.code !== 0) callee.proc.kill("SIGTERM");
  const ce = await callee.proc.result;
  const wall = (performance.now() - t0) / 1000;
  calleeWatch.stop();
  callerWatch.stop();
  if (cr.code !== 0) throw new Error(`caller failed: ${outputTail(cr)}`);
  if (ce.code !== 0) throw new Error(`callee failed: ${outputTail(ce)}`);

  const refAudio = (await readWav(ref)).samples;
  const recWav = await readWav(rec);
  const f = framesFound(refAudio, recWav.samples);
  const c = compareApartFromSilence(refAudio, recWav.samples);
  const py = (await framesFoundPy(ref, [rec])).get(rec) ?? { line: "did not run", ok: false };
  const sum = callSummaries(ce.stderr)[0];
  const rb = recordBufferSummaries(ce.stderr)[0] ?? {};
  const sent = /call summary: .* sent=(\d+)/.exec(cr.stderr)?.[1];
  const udp = calleeWatch.udpErrors();
  console.log(`frames_found.py ${ref} ${rec} --min 1.0 --max-shifts 0: ${py.line} (exit ${py.ok ? 0 : 1})`);
  console.log(`TypeScript check: ${JSON.stringify({ ...f, missing: undefined })}, strict: ${JSON.stringify(c)}`);
  console.log(
    `caller sent ${sent} packets; callee received ${sum?.received} (record buffer: ${JSON.stringify(rb)}); ` +
      `recording finalized ${recWav.finalized}, ${recWav.samples.length / 8000} s`,
  );
  console.log(
    `wall ${wall.toFixed(1)} s; callee CPU ${calleeWatch.cpuPercent.toFixed(1)} % of a core ` +
      `(${calleeWatch.cpuSeconds.toFixed(1)} s), caller ${callerWatch.cpuPercent.toFixed(1)} %; ` +
      `socket drops at the callee ${calleeWatch.socketDrops} (${calleeWatch.sockets} sockets), ` +
      `machine UDP RcvbufErrors +${udp.rcvbuf}; ${machine(calleeWatch)}`,
  );
  const ok = py.ok && f.found === f.total && f.shifts === 0 && c.equal && recWav.finalized;
  console.log(
    `RESULT caller→callee ${SECONDS} s at ${RATE} Hz: ${ok ? "EXACT" : "NOT EXACT"}: ${describe(f, c)}; ` +
      `callee CPU ${calleeWatch.cpuPercent.toFixed(1)} %, load ${spread(calleeWatch.load)}`,
  );
  return ok;
}

// ---------------------------------------------------------------------------
// Part 2: N concurrent sipp calls

interface CallCheck {
  callId: string;
  received: number;
  f?: FramesFound;
  c?: SilenceTrimmedComparison;
  py?: string;
  error?: string;
}

async function partSipp(): Promise<boolean> {
  console.log(
    `\n== sipp: ${CALLS} calls of ${CALL_SECONDS} s (rtp_stream, PCMU), ${CPS} new calls/s → pipelines/callee.json`,
  );
  const dir = await tempDir("voxpipe-record-sipp-");
  await Deno.mkdir(`${dir}/rec`);
  const audio = g711Audio("PCMU", CALL_SECONDS, 5);
  const packets = audio.bytes.length / 160;
  await Deno.writeFile(`${dir}/voxpipe_pcmu.raw`, audio.bytes);
  const ref = `${dir}/ref.wav`;
  await writeWav(ref, audio.samples, 8000);

  const bound = (CALL_SECONDS + 240) * 1000;
  const callee = await startCallee({
    calls: CALLS,
    max_calls: CALLS,
    record: `${dir}/rec/call-\${call.id}.wav`,
    codecs: "PCMU",
    rtp_timeout: 30, // longer than sipp's 10 s after its audio: sipp, not the callee, hangs up
  }, bound);
  const watch = new ProcessWatch(callee.proc.pid);
  const t0 = performance.now();
  const sipp = track(spawnSipp(
    sippArgs({
      scenario: scenarioPath("uac_pcmu_stream.xml"),
      mediaPort: freePortPair("127.0.0.1", 2 * CALLS), // sipp's rtp_stream takes a port pair per call from here
      service: "bob",
      calls: CALLS,
      limit: CALLS,
      rate: CPS,
      ratePeriodMs: 1000,
      pauseMs: Math.round(CALL_SECONDS * 1000) + 10_000, // after the ACK: the audio, and 10 s for a late sender
      target: `127.0.0.1:${callee.port}`,
    }),
    { cwd: dir, timeoutMs: bound },
  ));
  const sippWatch = new ProcessWatch(sipp.pid);
  const sr = await sipp.result;
  sippWatch.stop();
  console.log(`sipp ended (exit ${sr.code}) after ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  // The callee exits after its N calls; calls that failed at sipp's end would keep it waiting.
  const grace = setTimeout(() => callee.proc.kill("SIGTERM"), 20_000);
  const ce = await callee.proc.result;
  clearTimeout(grace);
  console.log(`callee ended (exit ${ce.code}) after ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  const wall = (performance.now() - t0) / 1000;
  watch.stop();
  const udp = watch.udpErrors();

  let successful = NaN, failed = NaN, peak = NaN;
  try {
    const st = await readSippStats(`${dir}/stats.csv`);
    successful = sippCounter(st, "SuccessfulCall(C)");
    failed = sippCounter(st, "FailedCall(C)");
    peak = maxColumn(await Deno.readTextFile(`${dir}/stats.csv`), "CurrentCall");
  } catch (e) {
    console.log(`sipp statistics: ${(e as Error).message}`);
  }
  if (sr.code !== 0) {
    console.log(`sipp exit ${sr.code}: ${outputTail(sr, 600)}\nerrors: ${sippErrors(dir).slice(0, 600)}`);
  }
  if (ce.code !== 0) console.log(`callee exit ${ce.code}: ${outputTail(ce, 1500)}`);

  await Deno.writeTextFile(`${dir}/callee.log`, ce.stderr);
  for (const l of ce.stderr.split("\n")) if (/overloaded|WARN|ERROR/.test(l)) console.log(`callee: ${l}`);
  const sums = callSummaries(ce.stderr);
  const rbs = recordBufferSummaries(ce.stderr);
  const checks: CallCheck[] = [];
  for (const s of sums) {
    const k: CallCheck = { callId: s.callId, received: s.received };
    checks.push(k);
    if (!s.recording) {
      k.error = "no recording";
      continue;
    }
    try {
      const w = await readWav(s.recording);
      k.f = framesFound(audio.samples, w.samples);
      k.c = compareApartFromSilence(audio.samples, w.samples);
      if (!w.finalized) k.error = "not finalized";
    } catch (e) {
      k.error = (e as Error).message;
    }
  }
  const pys = await framesFoundPy(ref, sums.flatMap((s) => s.recording ? [s.recording] : []));
  sums.forEach((s, i) => {
    if (s.recording) checks[i].py = pys.get(s.recording)?.line;
  });
  const exact = (k: CallCheck) =>
    !k.error && k.f !== undefined && k.c !== undefined && k.f.found === k.f.total && k.f.shifts === 0 && k.c.equal;
  console.log(`per call (${checks.length} call summaries; ${packets} packets sent per call):`);
  for (const k of checks) {
    const pyOk = k.py ? new RegExp(`shifts=0 .*frames_found=${packets}/${packets} `).test(k.py) : false;
    console.log(
      `  ${k.callId}: received ${k.received}; ` +
        (k.f && k.c ? describe(k.f, k.c) : "") + (k.error ? ` ERROR ${k.error}` : "") +
        `; frames_found.py: ${k.py ?? "not run"}${k.py && pyOk !== exact(k) ? " (DISAGREES)" : ""}`,
    );
  }
  // Calls sipp aborted on a 503 (the callee's overload protection), from sipp's error log.
  const refused = sippErrors(dir).match(/received 'SIP\/2\.0 503/g)?.length ?? 0;
  const sumOf = (a: number[]) => a.reduce((x, y) => x + y, 0);
  const found = sumOf(checks.map((k) => k.f?.found ?? 0));
  const expected = CALLS * packets;
  const complete = checks.filter(exact).length;
  const shifted = checks.filter((k) => (k.f?.shifts ?? 0) > 0).length;
  const received = sumOf(sums.map((s) => s.received));
  const late = sumOf(rbs.map((r) => r.late ?? 0)), lost = sumOf(rbs.map((r) => r.lost ?? 0));
  console.log(
    `sipp: exit ${sr.code}, successful calls ${successful}, failed ${failed} (refused with 503: ${refused}), ` +
      `most calls at once ${peak}; callee exit ${ce.code}; ` +
      `wall ${wall.toFixed(1)} s`,
  );
  console.log(
    `datagrams: in sipp's file × calls ${expected}, received by the callee's chains ${received}, ` +
      `record buffers lost ${lost} late ${late}; socket drops at the callee ${watch.socketDrops} ` +
      `(${watch.sockets} sockets), machine UDP RcvbufErrors +${udp.rcvbuf} InErrors +${udp.in}`,
  );
  console.log(
    `callee CPU ${watch.cpuPercent.toFixed(1)} % of a core (${watch.cpuSeconds.toFixed(1)} s), ` +
      `sipp CPU ${sippWatch.cpuPercent.toFixed(1)} %; ${machine(watch)}`,
  );
  const ok = complete === CALLS && sr.code === 0 && ce.code === 0;
  console.log(
    `RESULT sipp ${CALLS} calls × ${CALL_SECONDS} s: ${ok ? "EXACT" : "NOT EXACT"}: calls ${CALLS}, ` +
      `recordings ${checks.filter((k) => k.f).length}, complete and sample-exact ${complete}, ` +
      `frames expected ${expected} found ${found}, calls with a shift ${shifted}; ` +
      `callee CPU ${watch.cpuPercent.toFixed(1)} %, load ${spread(watch.load)}`,
  );
  return ok;
}

// ---------------------------------------------------------------------------

let ok = true;
try {
  if (PART !== "call") await requireTool("sipp");
  if (PART !== "sipp") ok = (await partCall()) && ok;
  if (PART !== "call") ok = (await partSipp()) && ok;
} catch (e) {
  console.error(`record_exact: ${(e as Error).message}`);
  ok = false;
} finally {
  clearTimeout(deadline);
  await cleanup();
}
Deno.exit(ok ? 0 : 1);
