/**
 * Overload: sipp `-sn uac` floods our callee with INVITEs at `--factor` (10)
 * times its sustainable call rate for `--duration` (30) s on loopback, while a
 * second sipp sends OPTIONS at a low rate (`tests/fixtures/sipp/options_ping.xml`).
 * The callee is `pipelines/callee.json` with a light media chain (`udp-source`
 * → `null-sink`: no recording), as shipped otherwise: `max_calls` 100,
 * `overload_lag_ms` 500, `max_transactions` 10 000.
 *
 * Prints: the flood's rate and what sipp saw (calls completed, failed); the
 * 503s the callee sent (summed from its overload log lines); the OPTIONS it
 * answered (%); its peak RSS (`VmRSS` in /proc/<pid>/status, sampled every
 * 100 ms) against its RSS before the flood; and recovery: a normal call
 * (`tests/fixtures/sipp/uac_nomedia.xml`, one call) placed as soon as the
 * flood's sipp has exited, and how long it took.
 *
 * `--sustainable` is the callee's sustainable rate in calls per second, from
 * `bench/sip_call_rate.ts --only light` (default 75: 75 cps passed and 88 cps
 * failed there in 10 s trials on this machine, under load, on 2026-12-01).
 *
 * Run: `deno run -A bench/sip_flood.ts [--sustainable 75] [--factor 10] [--duration 30] [--options-rate 5]
 * [--hold 1000]` (needs sipp: `bash scripts/setup.sh`).
 *
 * @module
 */
import { benchArgs } from "./_args.ts";
import {
  type BoundedProcess,
  freeUdpPort,
  readSippStats,
  requireTool,
  scenarioPath,
  sippArgs,
  type SippArgsOptions,
  sippCounter,
  spawnBounded,
} from "../tests/sip_util.ts";
import { startCheckoutCallee, writeCalleeVariant } from "./_sipp.ts";

const { values: args } = benchArgs(import.meta.url, {
  sustainable: { type: "string", default: "75" },
  factor: { type: "string", default: "10" },
  duration: { type: "string", default: "30" },
  "options-rate": { type: "string", default: "5" },
  hold: { type: "string", default: "1000" },
});
const SUSTAINABLE = Number(args.sustainable);
const RATE = Math.round(SUSTAINABLE * Number(args.factor));
const DURATION = Number(args.duration);
const OPTIONS_RATE = Number(args["options-rate"]);
const HOLD_MS = Number(args.hold);

/** VmRSS of `pid` in MB, or undefined once it is gone. */
function rssMb(pid: number): number | undefined {
  try {
    const m = /^VmRSS:\s+(\d+) kB/m.exec(Deno.readTextFileSync(`/proc/${pid}/status`));
    return m ? Number(m[1]) / 1024 : undefined;
  } catch {
    return undefined;
  }
}

/** CPU pressure ("some avg10") and the 1-minute load average, to say how busy the machine was. */
function load(): string {
  let pressure = "?";
  try {
    pressure = /some avg10=([\d.]+)/.exec(Deno.readTextFileSync("/proc/pressure/cpu"))?.[1] ?? "?";
  } catch { /* not available */ }
  const avg = Deno.readTextFileSync("/proc/loadavg").split(" ")[0];
  return `cpu pressure ${pressure} %, load ${avg}`;
}

/** sipp running `o` from `dir`, its statistics written every 5 s to `dir/stats`. */
function sipp(dir: string, o: SippArgsOptions, stats: string, timeoutMs: number): BoundedProcess {
  return spawnBounded("sipp", sippArgs({ ...o, stats: { file: stats, periodS: 5 } }), {
    cwd: dir,
    timeoutMs,
    stopSignal: "SIGINT",
  });
}

async function counters(path: string): Promise<{ ok: number; failed: number; created: number }> {
  const s = await readSippStats(path);
  return {
    ok: sippCounter(s, "SuccessfulCall(C)"),
    failed: sippCounter(s, "FailedCall(C)"),
    created: sippCounter(s, "TotalCallCreated"),
  };
}

if (import.meta.main) {
  await requireTool("sipp");
  const dir = await Deno.makeTempDir({ prefix: "voxpipe-flood-" });
  const port = freeUdpPort();
  const target = `127.0.0.1:${port}`;
  console.log(`machine before: ${load()}`);
  let callee: BoundedProcess | undefined;
  try {
    callee = await startCheckoutCallee({
      pipeline: await writeCalleeVariant(dir, { name: "callee-flood.json", light: true }),
      port,
      set: { calls: 0, rtp_timeout: 30 },
      // Each full GC prints the heap it kept: the live memory, as opposed to the RSS V8 sizes for its garbage.
      denoFlags: ["--v8-flags=--trace-gc"],
      timeoutMs: (DURATION + 180) * 1000,
    });
    await new Promise((r) => setTimeout(r, 1000));
    const pid = callee.pid;
    const before = rssMb(pid) ?? 0;
    let peak = before;
    const timeline: string[] = [];
    let ticks = 0;
    const sampler = setInterval(() => {
      const r = rssMb(pid);
      if (r !== undefined && r > peak) peak = r;
      if (r !== undefined && ++ticks % 50 === 0) timeline.push(`${ticks / 10}s ${r.toFixed(0)}`);
    }, 100);

    const optionsCount = Math.round(OPTIONS_RATE * (DURATION + 5));
    const ping = sipp(
      dir,
      { scenario: scenarioPath("options_ping.xml"), service: "bob", rate: OPTIONS_RATE, calls: optionsCount, target },
      "options.csv",
      (DURATION + 90) * 1000,
    );
    const floodCalls = RATE * DURATION;
    console.log(
      `flood: sipp -sn uac at ${RATE} INVITE/s (${args.factor}× ${SUSTAINABLE} cps) for ${DURATION} s ` +
        `(${floodCalls} calls, hold ${HOLD_MS} ms); OPTIONS at ${OPTIONS_RATE}/s (${optionsCount})`,
    );
    const started = performance.now();
    const flood = sipp(
      dir,
      {
        builtin: "uac",
        service: "bob",
        rate: RATE,
        calls: floodCalls,
        pauseMs: HOLD_MS,
        extra: ["-timeout", `${DURATION + 60}s`],
        target,
      },
      "flood.csv",
      (DURATION + 90) * 1000,
    );
    const fr = await flood.result;
    const floodSeconds = (performance.now() - started) / 1000;
    console.log(`machine during: ${load()}`);

    // Recovery: one normal call as soon as the flood has stopped.
    const t0 = performance.now();
    const one = sipp(
      dir,
      { scenario: scenarioPath("uac_nomedia.xml"), service: "bob", rate: 1, calls: 1, pauseMs: 100, target },
      "recovery.csv",
      60_000,
    );
    const rr = await one.result;
    const recoveryMs = performance.now() - t0;
    await ping.result;
    // Stay a while: the calls that were answered linger 64·T1 (32 s) for late retransmissions, then go.
    await new Promise((r) => setTimeout(r, 40_000));
    const after = rssMb(pid) ?? 0;
    clearInterval(sampler);

    const f = await counters(`${dir}/flood.csv`);
    const o = await counters(`${dir}/options.csv`);
    const rec = await counters(`${dir}/recovery.csv`).catch(() => ({ ok: 0, failed: 1, created: 1 }));
    callee.kill("SIGINT");
    const cr = await callee.result;
    // The callee's overload lines: "... N new INVITE(s) got 503 ..." (every 10 s while it lasts, and at the end).
    // "Mark-Compact 210.3 (240.1) -> 150.2 (230.5) MB": live heap after each full collection.
    const live = [...cr.stdout.matchAll(/Mark-Compact[^\n]*?-> ([\d.]+) \(/g)].map((m) => Number(m[1]));
    let refused = 0;
    for (const m of cr.stderr.matchAll(/(\d+) new INVITE\(s\) got 503/g)) refused += Number(m[1]);
    const overloadLines = cr.stderr.split("\n").filter((l) => /overloaded \(/.test(l));
    const reasons = [
      ["event-loop lag", /event-loop lag/],
      ["transaction table full", /transaction table full/],
      ["max_calls", /calls in progress/],
    ].filter(([, re]) => overloadLines.some((l) => (re as RegExp).test(l))).map(([name]) => name);
    const maxLag = Math.max(0, ...[...cr.stderr.matchAll(/event-loop lag (\d+) ms/g)].map((m) => Number(m[1])));

    console.log("");
    console.log(
      `flood sipp: exit ${fr.code}${fr.timedOut ? " (timed out)" : ""} after ${floodSeconds.toFixed(1)} s; ` +
        `${f.created} INVITEs, ${f.ok} calls completed, ${f.failed} failed`,
    );
    console.log(
      `503 Service Unavailable sent by the callee: ${refused} (overload reasons seen: ${reasons.join(", ") || "none"}` +
        `${maxLag ? `; largest lag logged ${maxLag} ms` : ""})`,
    );
    console.log(
      `OPTIONS answered: ${o.ok} of ${o.created} (${(o.created ? (100 * o.ok) / o.created : 0).toFixed(1)} %), ` +
        `${o.failed} unanswered`,
    );
    console.log(
      `callee RSS: ${before.toFixed(1)} MB before the flood, peak ${peak.toFixed(1)} MB, ` +
        `${after.toFixed(1)} MB 40 s after it (every 5 s, MB: ${timeline.join(", ")})`,
    );
    if (live.length) {
      console.log(
        `callee heap after each full GC (live data), MB: first ${live[0]}, largest ${Math.max(...live)}, ` +
          `last ${live.at(-1)} (${live.length} full GCs)`,
      );
    }
    console.log(
      `recovery: one normal call right after the flood: ${rec.ok === 1 ? "succeeded" : "FAILED"} ` +
        `(sipp exit ${rr.code}) in ${(recoveryMs / 1000).toFixed(2)} s`,
    );
    console.log(`callee exit ${cr.code}`);
  } finally {
    if (callee) {
      callee.kill("SIGKILL");
      await callee.result;
    }
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}
