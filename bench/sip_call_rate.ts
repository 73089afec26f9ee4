/**
 * Call set-up rate: the highest rate (calls per second) at which sipp can call
 * a callee for 10 s (`--duration`) with zero failed calls, for
 *
 * 1. our callee, `pipelines/callee.json` as shipped except `max_calls` (recording
 *    every call to a WAV in a temporary directory; log level warn);
 * 2. with `--light` (or `--only light`): our callee with a light media chain
 *    (`udp-source` → `null-sink`: no jitter buffer, RTCP or WAV per call), to
 *    see what the per-call pipelines cost;
 * 3. `sipp -sn uas`, the reference.
 *
 * The caller is sipp with `tests/fixtures/sipp/uac_nomedia.xml`: INVITE (with
 * SDP) / 180 / 200 / ACK / pause (`--hold`, default 1000 ms) / BYE / 200, no RTP.
 * A trial at rate R runs R × duration calls (`-r R -m R·duration`) against a
 * fresh callee; it passes when sipp exits 0 with every call successful. The rate
 * doubles from `--start` (default 100) until a trial fails (or `--max`), then is
 * bisected `--refine` times between the last good and the first bad rate. sipp
 * writes its statistics each second; a trial is stopped at its first failed call
 * (it has failed: no need to wait for the rest, whose INVITEs may retransmit
 * for a minute). The searches run side by side, one trial at a time, their
 * trials alternating (voxpipe, sipp, voxpipe, ...), so that both see the same
 * load of a shared machine; each line gives the load average. A full run
 * (voxpipe and sipp, `--media-workers 2`) takes about 15 minutes (13 here with
 * `--max 12800`; sipp's UAS goes on to ~17 000 cps on a 2-core machine, a
 * minute or two more). Both sipp processes get 4 MB socket buffers
 * (`SIPP_BUFFER_ARGS` in `_sipp.ts`): with sipp's default 64 KB the
 * reference's ceiling was its buffers' (~1 500–3 500 cps), not its own.
 *
 * `max_calls` (concurrent calls, 100 in callee.json's control section, not a
 * parameter) is raised to 10 000 in a temporary copy of the file, and
 * `max_transactions` (10 000 by default) to 1 000 000: at 1 s hold time a rate
 * above ~100 cps would otherwise be refused with 503 by design (max_calls), and
 * above ~150 cps once the table of transactions that outlive their calls by
 * 64·T1 is full.
 *
 * Prints, last: `call setup rate: voxpipe callee N cps (0 failed over 10 s); sipp -sn uas M cps; ratio R`,
 * with the machine's load average, then the same for the rates each kept up with: a trial passes with 0 failed calls
 * even when the callee fell behind and completed its calls late through retransmissions; "kept up with" also needs
 * sipp's cumulative rate at 90 % or more of what a callee answering at once gives (bisected like the first, between
 * the highest rate kept up with and the lowest one not: `--refine` trials more). Each trial line also gives the
 * callee's CPU time per call (user + system, all its threads, read from `/proc/PID/stat` while sipp ran), and the
 * next line compares them at the highest rate each kept up with: sipp's UAS spends ~0.04–0.06 ms per call, ours
 * 13–33 times that. The last line gives the descriptor ceiling of the host (`descriptorCeilingLine` in `_sipp.ts`):
 * how many recorded calls its open-files limit lets a callee hold, and the rate that allows.
 *
 * Run: `deno run -A bench/sip_call_rate.ts [--duration 10] [--hold 1000] [--start 100] [--max 51200]
 * [--refine 3] [--light] [--only voxpipe|light|sipp] [--compare DIR] [--media-workers K] [--record-dir DIR]` (needs sipp:
 * `bash scripts/setup.sh`). `--media-workers K` adds the same callee with its calls' media in K media workers
 * (`VOXPIPE_MEDIA_WORKERS=K`), searched in the same run.
 * `--record-dir DIR` makes each trial's folder (the recordings, sipp's statistics) in DIR instead of the system's
 * temporary directory: where the WAVs go is part of what a call costs (see `recordDirProblem` in `_sipp.ts`). The
 * run prints what creating a file costs there, and each trial line what it cost in that trial's folder. The folders of
 * recording trials are removed at the end of the run, not after each trial (see `removeLater` in `_sipp.ts`): a full
 * run keeps up to ~400 000 small WAVs meanwhile (~1.6 GB in 4 KB blocks, or of memory on a tmpfs).
 * `--compare DIR` adds the callee of another checkout (e.g. an export of an older commit, with a `node_modules`),
 * searched in the same run: before and after a change, under the same load.
 *
 * @module
 */
import { benchArgs, benchFail } from "./_args.ts";
import {
  type BoundedProcess,
  freeUdpPort,
  readSippStats,
  requireTool,
  sippCounter,
  spawnBounded,
} from "../tests/sip_util.ts";
import {
  descriptorCeilingLine,
  fileCreateCost,
  recordDirProblem,
  removeDeferred,
  removeLater,
  setupLoadArgs,
  sippBufferNote,
  startCheckoutCallee,
  startSippUas,
  writeCalleeVariant,
} from "./_sipp.ts";
import { cpuSeconds } from "../tests/record_check.ts";

const OPTIONS = {
  duration: { type: "string", default: "10" },
  hold: { type: "string", default: "1000" },
  start: { type: "string", default: "100" },
  max: { type: "string", default: "51200" },
  refine: { type: "string", default: "3" },
  light: { type: "boolean", default: false },
  compare: { type: "string" },
  only: { type: "string" },
  "media-workers": { type: "string" },
  "record-dir": { type: "string" },
} as const;
const { values: args } = benchArgs(import.meta.url, OPTIONS);
const recordDir = recordDirProblem(args["record-dir"]);
if (recordDir) benchFail(import.meta.url, OPTIONS, recordDir);
const WORKERS = args["media-workers"] === undefined ? 0 : Number(args["media-workers"]);
if (!(Number.isInteger(WORKERS) && WORKERS >= 1 && WORKERS <= 64) && args["media-workers"] !== undefined) {
  benchFail(
    import.meta.url,
    OPTIONS,
    `--media-workers: expected a whole number 1..64, got ${JSON.stringify(args["media-workers"])}`,
  );
}
const DURATION = Number(args.duration);
const HOLD_MS = Number(args.hold);
const START = Number(args.start);
const MAX = Number(args.max);
const REFINE = Number(args.refine);

/** A callee under test, started fresh for each trial. */
interface Target {
  name: string;
  /** It records each call to a WAV in the trial's folder (the trial then measures what creating a file costs there). */
  records?: boolean;
  start(dir: string): Promise<{ proc: BoundedProcess; port: number }>;
}

/** Outcome of one trial. */
interface Trial {
  rate: number;
  ok: boolean;
  successful: number;
  failed: number;
  retransmissions: number;
  /** sipp's cumulative call rate at the end (calls created / elapsed time, hold tail included). */
  achieved: number;
  /**
   * The callee's CPU time (user + system, all its threads) while sipp ran, per successful call, ms; undefined when no
   * call succeeded or the callee was gone.
   */
  cpuPerCall?: number;
  /** What creating a file cost in the trial's folder just before it, µs (median; see `fileCreateCost`). */
  createMicros?: number;
  note: string;
}

function voxpipeTarget(name: string, light: boolean, root?: string, workers = 0): Target {
  return {
    name,
    records: !light,
    async start(dir) {
      const pipeline = await writeCalleeVariant(dir, {
        name: `callee-${light ? "light" : "stock"}.json`,
        root,
        raiseLimits: true,
        light,
      });
      const port = freeUdpPort();
      const set: Record<string, string | number> = { calls: 0, rtp_timeout: 30 };
      if (!light) set.record = `${dir}/call-\${call.id}.wav`;
      const proc = await startCheckoutCallee({
        pipeline,
        port,
        set,
        root,
        timeoutMs: (DURATION + 120) * 1000,
        ...(workers ? { env: { VOXPIPE_MEDIA_WORKERS: String(workers) } } : {}),
      });
      return { proc, port };
    },
  };
}

const sippUasTarget: Target = {
  name: "sipp -sn uas",
  start: (dir) => startSippUas(dir, (DURATION + 120) * 1000),
};

async function trial(target: Target, rate: number): Promise<Trial> {
  const dir = await Deno.makeTempDir({ dir: args["record-dir"], prefix: "voxpipe-cps-" });
  const calls = Math.round(rate * DURATION);
  let callee: { proc: BoundedProcess; port: number } | undefined;
  try {
    // Left in the folder, removed with it: see fileCreateCost.
    const createMicros = target.records ? fileCreateCost(dir, 200, false).micros : undefined;
    callee = await target.start(dir);
    const pid = callee.proc.pid;
    const cpu = () => (cpuSeconds(pid) ?? NaN) * 1000; // ms; NaN once the callee is gone
    const cpu0 = cpu();
    const sipp = spawnBounded(
      "sipp",
      setupLoadArgs({ calls, rate, holdMs: HOLD_MS, port: callee.port }),
      { cwd: dir, timeoutMs: (DURATION + 90) * 1000, stopSignal: "SIGINT" },
    );
    // Stop at the first failed call: the trial has failed. SIGINT asks sipp to end its calls in progress, which an
    // overloaded sipp takes up to its time limit to do (a minute and more of retransmissions): 5 s later, SIGKILL (its
    // statistics then end with the last row it wrote, a second earlier at most).
    let stoppedEarly = false;
    let hardStop: ReturnType<typeof setTimeout> | undefined;
    const watch = setInterval(async () => {
      try {
        if (!stoppedEarly && sippCounter(await readSippStats(`${dir}/uac.csv`), "FailedCall(C)") > 0 && !sipp.ended) {
          stoppedEarly = true;
          sipp.kill("SIGINT");
          hardStop = setTimeout(() => sipp.ended || sipp.kill("SIGKILL"), 5000);
        }
      } catch { /* no statistics row yet */ }
    }, 1000);
    const r = await sipp.result;
    const cpu1 = cpu();
    clearInterval(watch);
    clearTimeout(hardStop);
    const alive = await Promise.race([callee.proc.result.then(() => false), Promise.resolve(true)]);
    let successful = 0, failed = 0, retransmissions = 0, achieved = 0;
    try {
      const stats = await readSippStats(`${dir}/uac.csv`);
      successful = sippCounter(stats, "SuccessfulCall(C)");
      failed = sippCounter(stats, "FailedCall(C)");
      retransmissions = sippCounter(stats, "Retransmissions(C)");
      achieved = sippCounter(stats, "CallRate(C)");
    } catch (e) {
      return {
        rate,
        ok: false,
        successful,
        failed,
        retransmissions,
        achieved,
        createMicros,
        note: `no sipp statistics: ${e}`,
      };
    }
    const ok = r.code === 0 && !r.timedOut && failed === 0 && successful === calls && alive;
    const note = ok ? "" : [
      stoppedEarly ? "stopped at the first failed call" : "",
      r.code !== 0 ? `sipp exit ${r.code}${r.timedOut ? " (timed out)" : ""}` : "",
      !alive ? "callee died" : "",
      successful !== calls ? `${successful}/${calls} successful` : "",
    ].filter(Boolean).join(", ");
    const used = cpu1 - cpu0;
    const cpuPerCall = successful > 0 && Number.isFinite(used) ? used / successful : undefined;
    return { rate, ok, successful, failed, retransmissions, achieved, cpuPerCall, createMicros, note };
  } finally {
    if (callee) {
      callee.proc.kill("SIGTERM");
      await callee.proc.result;
    }
    // A recording callee's folder stays until the end of the run (see `removeLater`); sipp's goes now.
    if (target.records) removeLater(dir);
    else await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

/** The 1, 5 and 15 minute load averages (the machine is shared: figures depend on it). */
function loadAverage(): string {
  try {
    return Deno.readTextFileSync("/proc/loadavg").split(" ").slice(0, 3).join(" ");
  } catch {
    return "unknown";
  }
}

function report(name: string, t: Trial): void {
  console.log(
    `  ${name}: ${t.rate} cps × ${DURATION} s: ${t.ok ? "ok" : "FAILED"} — ${t.successful} successful, ` +
      `${t.failed} failed, ${t.retransmissions} retransmissions, sipp's cumulative rate ${t.achieved.toFixed(1)} cps` +
      `${t.cpuPerCall !== undefined ? `, callee CPU ${t.cpuPerCall.toFixed(3)} ms per call` : ""}` +
      `${t.createMicros !== undefined ? `, creating a file there ${t.createMicros.toFixed(0)} µs` : ""}` +
      `${t.note ? ` (${t.note})` : ""} [load ${loadAverage()}]`,
  );
}

/**
 * Share of the ideal call rate a passing trial must reach to count as kept up with: sipp's cumulative rate is calls
 * made over the time since its start, so a callee that answers at once gives `rate × duration / (duration + hold)`
 * (90.9 cps at 100 cps, 10 s and 1 s calls); one that falls behind completes its calls late, through retransmissions,
 * at a lower cumulative rate, and still fails none.
 */
const KEPT_UP = 0.9;

/** True when a passing trial's calls were made at (nearly) the rate asked: see {@linkcode KEPT_UP}. */
function keptUp(t: Trial): boolean {
  return t.ok && t.achieved >= KEPT_UP * t.rate * DURATION / (DURATION + HOLD_MS / 1000);
}

/**
 * Result of a search: the highest passing rate tried, the highest one that needed no SIP retransmission, and the
 * highest one kept up with (see {@linkcode keptUp}; bisected too, `--refine` trials more, which may pass a rate above
 * the first search's: a shared machine's noise).
 */
interface Found {
  rate: number;
  clean: number;
  kept: number;
  /** The callee's CPU ms per call in the trial at the `kept` rate (see {@linkcode Trial.cpuPerCall}). */
  keptCpu?: number;
  capped: boolean;
}

/** The end of the queue of trials: one runs at a time, in the order asked. */
let queue: Promise<unknown> = Promise.resolve();

/**
 * Runs `f` after every trial asked for before it. The searches ask in turn (each asks for its next trial once its
 * last one has ended), so their trials alternate and each target sees the same load of the shared machine.
 */
function oneAtATime<T>(f: () => Promise<T>): Promise<T> {
  const run = queue.then(f);
  queue = run.catch(() => {});
  return run;
}

/** The highest passing rate: doubling, then bisection. */
async function search(target: Target): Promise<Found> {
  let good = 0;
  let bad = 0;
  let clean = 0;
  let kept = 0;
  let keptCpu: number | undefined;
  let notKept = Infinity; // the lowest rate tried that was not kept up with
  let passed = 0; // the highest rate tried that passed (the kept-up bisection may pass one above `good`)
  const run = async (rate: number) => {
    const t = await oneAtATime(() => trial(target, rate));
    report(target.name, t);
    if (t.ok) passed = Math.max(passed, rate);
    if (t.ok && t.retransmissions === 0) clean = Math.max(clean, rate);
    if (!keptUp(t)) notKept = Math.min(notKept, rate);
    else if (rate >= kept) {
      kept = rate;
      keptCpu = t.cpuPerCall;
    }
    return t.ok;
  };
  // The rate kept up with, bisected in turn between the highest kept and the lowest not kept (the search for 0 failed
  // calls leaves a gap there when the callee fell behind without failing: 400 kept, 800 passed late).
  const refineKept = async () => {
    for (let i = 0; i < REFINE && Number.isFinite(notKept) && notKept - kept > 1; i++) {
      await run(Math.round((kept + notKept) / 2));
    }
  };
  for (let rate = START; rate <= MAX; rate *= 2) {
    if (!(await run(rate))) {
      bad = rate;
      break;
    }
    good = rate;
  }
  if (bad === 0) {
    console.log(`  ${target.name}: no failure up to --max ${MAX} cps`);
    await refineKept();
    return { rate: Math.max(good, passed), clean, kept, keptCpu, capped: true };
  }
  for (let i = 0; i < REFINE && bad - good > 1; i++) {
    const rate = Math.round((good + bad) / 2);
    if (await run(rate)) good = rate;
    else bad = rate;
  }
  await refineKept();
  return { rate: Math.max(good, passed), clean, kept, keptCpu, capped: false };
}

if (import.meta.main) {
  await requireTool("sipp");
  const targets: [string, Target][] = [
    ["voxpipe", voxpipeTarget("voxpipe callee (callee.json, WAV per call)", false)],
    ["light", voxpipeTarget("voxpipe callee (udp-source → null-sink)", true)],
    ["sipp", sippUasTarget],
  ];
  if (WORKERS) {
    targets.splice(1, 0, [
      "workers",
      voxpipeTarget(
        `voxpipe callee, media in ${WORKERS} workers (callee.json, WAV per call)`,
        false,
        undefined,
        WORKERS,
      ),
    ]);
  }
  if (args.compare) {
    targets.unshift([
      "compare",
      voxpipeTarget(`voxpipe callee of ${args.compare} (callee.json, WAV per call)`, false, args.compare),
    ]);
  }
  console.log(`load average at start: ${loadAverage()}`);
  console.log(sippBufferNote());
  if (targets.some(([, t]) => t.records)) {
    const where = args["record-dir"] ?? (Deno.env.get("TMPDIR") || "/tmp");
    const c = fileCreateCost(where);
    console.log(
      `recordings in ${where} (${c.fs}): creating a file there (exclusive create, 44-byte header, close) takes ` +
        `${c.micros.toFixed(0)} µs (median of 200; each trial measures its own folder again, as "creating a file ` +
        `there"): a callee creates one per call`,
    );
  }
  const results: Record<string, Found> = {};
  try {
    await Promise.all(
      targets.filter(([key]) =>
        args.only ? args.only === key || key === "compare" || key === "workers" : key !== "light" || args.light
      ).map(
        async ([key, t]) => {
          results[key] = await search(t);
        },
      ),
    );
  } finally {
    await removeDeferred();
  }
  console.log("");
  const fmt = (f: Found) => `${f.capped ? "≥ " : ""}${f.rate} cps`;
  for (const [key, target] of targets) {
    const f = results[key];
    if (f) {
      console.log(
        `${target.name}: ${fmt(f)} with 0 failed; ${f.kept} cps kept up with (sipp's rate ≥ ${KEPT_UP * 100} % of ` +
          `the ideal); ${f.clean} cps without any SIP retransmission`,
      );
    }
  }
  const n = results.voxpipe, m = results.sipp;
  const parts: string[] = [];
  if (n) parts.push(`voxpipe callee ${fmt(n)} (0 failed over ${DURATION} s)`);
  if (m) parts.push(`sipp -sn uas ${fmt(m)}`);
  if (n && m && m.rate > 0) parts.push(`ratio ${(n.rate / m.rate).toFixed(2)}`);
  const w = results.workers;
  if (w && m && m.rate > 0) {
    parts.push(`with ${WORKERS} media workers ${fmt(w)}, ratio ${(w.rate / m.rate).toFixed(2)}`);
  }
  const c = results.compare;
  if (c && m && m.rate > 0) parts.push(`${args.compare}: ${fmt(c)}, ratio ${(c.rate / m.rate).toFixed(2)}`);
  if (parts.length) console.log(`call setup rate: ${parts.join("; ")} (load average ${loadAverage()})`);
  if (n && m && m.kept > 0) {
    const kept = [
      `voxpipe callee ${n.kept} cps`,
      `sipp -sn uas ${m.kept} cps`,
      `ratio ${(n.kept / m.kept).toFixed(2)}`,
    ];
    if (w) kept.push(`with ${WORKERS} media workers ${w.kept} cps, ratio ${(w.kept / m.kept).toFixed(2)}`);
    console.log(`kept up with (calls made at the rate asked, 0 failed): ${kept.join("; ")}`);
  }
  // What a call costs each callee, at the highest rate it kept up with: what the rate ratio comes from.
  const costs: string[] = [];
  const cost = (name: string, f: Found | undefined) => {
    if (f?.keptCpu !== undefined) costs.push(`${name} ${f.keptCpu.toFixed(3)} ms at ${f.kept} cps`);
  };
  cost("voxpipe callee", n);
  cost(`with ${WORKERS} media workers`, w);
  if (args.compare) cost(args.compare, c);
  cost("sipp -sn uas", m);
  if (costs.length) {
    const x = (f: Found | undefined) =>
      f?.keptCpu !== undefined && m?.keptCpu ? ` ${(f.keptCpu / m.keptCpu).toFixed(1)}×` : "";
    // Only when a callee of ours was measured (not with --only sipp).
    const ours = [x(n), x(w) && `${x(w)} with workers`].filter((s) => s !== "");
    const times = m?.keptCpu && ours.length ? `; voxpipe / sipp:${ours.join(",")}` : "";
    console.log(`CPU per call (the whole process, at the highest rate kept up with): ${costs.join("; ")}${times}`);
  }
  const ceiling = (n || w) ? descriptorCeilingLine(HOLD_MS, m?.rate) : undefined;
  if (ceiling) console.log(ceiling);
}
