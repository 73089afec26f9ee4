/**
 * The floor under target 4 (call set-up rate): what a recorded call's set-up costs on Deno's own APIs with none of
 * voxpipe's code, against voxpipe's callee and `sipp -sn uas`, in one run.
 *
 * Each process answers the same sipp load (`tests/fixtures/sipp/uac_nomedia.xml`: INVITE / 180 / 200 / ACK / pause
 * `--hold` / BYE / 200, `--rate` calls per second, `--calls` calls), one at a time, alternating, `--rounds` times;
 * each run reads the process's CPU time (user + system, all threads, `/proc/PID/stat`) over sipp's run and divides by
 * the calls completed. The processes:
 *
 * - `sipp -sn uas`: the reference of the issue (no media, no file);
 * - `floor sip`, `floor sockets`, `floor wav` (`_call_floor_uas.ts`): a bare UAS on `Deno.listenDatagram` and
 *   `Deno.open` doing only the system work of `pipelines/callee.json`'s calls, cumulatively: SIP (receive 3, send
 *   4); an RTP/RTCP port pair bound per call with a receive pending on each, an RTCP BYE, both closed; the WAV
 *   file created with its header, the header written again at the end, closed;
 * - `floor ffi`: the work of `floor wav`, the port pair and the file through the C library by Deno FFI (synchronous
 *   calls, the sockets watched by an epoll set), SIP still on `Deno.listenDatagram`;
 * - `floor ffi-all`: the same with SIP through the C library too (`recvfrom` until empty after an `epoll_wait` on
 *   another thread, `sendto`): no asynchronous operation of Deno per message;
 * - `voxpipe callee.json` (as `bench/sip_call_rate.ts` runs it: a WAV per call, limits raised; by default SIP and the
 *   calls' port pairs are FFI sockets on the thread's MediaLoop), and the same with `VOXPIPE_NET=deno`
 *   (`voxpipe-deno`: `Deno.listenDatagram` and the process media clock).
 *
 * Prints each run, then per process the median CPU ms per call and its ratio to sipp's UAS, and the budget the
 * target leaves: half of sipp's ceiling (`--sipp-cps`, the call-rate bench's figure) on what of the two cores the
 * load generator leaves; last, the host's descriptor ceiling (`descriptorCeilingLine` in `_sipp.ts`: the rate its
 * open-files limit allows a recording callee, against `--sipp-cps`). The WAVs go to a fresh folder of each run in
 * `--record-dir` (default: the system's temporary directory; see `recordDirProblem` in `_sipp.ts` for why it
 * matters).
 *
 * Run: `deno run -A bench/call_floor.ts [--rate 300] [--calls 3000] [--hold 1000] [--rounds 3] [--sipp-cps 17400]
 * [--record-dir DIR] [--only sip,sockets,wav,ffi,ffi-all,voxpipe,voxpipe-deno]` (needs sipp; `--only` picks the
 * processes measured besides sipp's UAS, which is always measured: a higher rate than voxpipe's callee keeps up with,
 * for the floors).
 *
 * @module
 */
import { benchArgs, benchFail } from "./_args.ts";
import { waitForUdpPort } from "../tests/media_util.ts";
import { type BoundedProcess, freeUdpPort, requireTool, spawnBounded } from "../tests/sip_util.ts";
import {
  descriptorCeilingLine,
  setupLoadArgs,
  setupLoadCounts,
  setupLoadSettings,
  startCheckoutCallee,
  startSippUas,
  writeCalleeVariant,
} from "./_sipp.ts";
import { cpuSeconds } from "../tests/record_check.ts";
import { median } from "./_packet_cost.ts";

const OPTIONS = {
  rate: { type: "string", default: "300" },
  calls: { type: "string", default: "3000" },
  hold: { type: "string", default: "1000" },
  rounds: { type: "string", default: "3" },
  "sipp-cps": { type: "string", default: "17400" },
  "record-dir": { type: "string" },
  only: { type: "string" },
} as const;
const { values: args } = benchArgs(import.meta.url, OPTIONS);
const { rate: RATE, calls: CALLS, holdMs: HOLD_MS } = setupLoadSettings(import.meta.url, OPTIONS, args);
const ROUNDS = Number(args.rounds);
const SIPP_CPS = Number(args["sipp-cps"]);
/** CPU ms per call of sipp's UAC (see the budget at the end). */
const UAC_MS = 0.06;
for (const [k, v] of [["rounds", ROUNDS], ["sipp-cps", SIPP_CPS]] as const) {
  if (!(Number.isInteger(v) && v > 0)) benchFail(import.meta.url, OPTIONS, `--${k}: expected a positive integer`);
}
await requireTool("sipp");

interface Target {
  name: string;
  start(dir: string): Promise<{ proc: BoundedProcess; port: number }>;
}

const timeoutMs = (CALLS / RATE + 120) * 1000;

function floor(mode: "sip" | "sockets" | "wav" | "ffi" | "ffi-all"): Target {
  return {
    name: `floor ${mode}`,
    async start(dir) {
      const port = freeUdpPort();
      const proc = spawnBounded(Deno.execPath(), [
        "run",
        "-A",
        new URL("./_call_floor_uas.ts", import.meta.url).pathname,
        "--port",
        String(port),
        "--mode",
        mode,
        "--dir",
        dir,
      ], { timeoutMs });
      await waitForUdpPort(port, 30_000);
      return { proc, port };
    },
  };
}

/** Our callee as the call-rate bench runs it (the default fast UDP path); `deno`: with `VOXPIPE_NET=deno`. */
function voxpipe(deno: boolean): Target {
  return {
    name: `voxpipe callee.json${deno ? " VOXPIPE_NET=deno" : ""}`,
    async start(dir) {
      const pipeline = await writeCalleeVariant(dir, { name: "callee.json", raiseLimits: true });
      const port = freeUdpPort();
      const proc = await startCheckoutCallee({
        pipeline,
        port,
        set: { calls: 0, rtp_timeout: 30, record: `${dir}/call-\${call.id}.wav` },
        timeoutMs,
        ...(deno ? { env: { VOXPIPE_NET: "deno" } } : {}),
      });
      return { proc, port };
    },
  };
}

const targets: Target[] = [
  { name: "sipp -sn uas", start: (dir) => startSippUas(dir, timeoutMs) },
  floor("sip"),
  floor("sockets"),
  floor("wav"),
  floor("ffi"),
  floor("ffi-all"),
  voxpipe(false),
  voxpipe(true),
];

const NAMES = ["sipp", "sip", "sockets", "wav", "ffi", "ffi-all", "voxpipe", "voxpipe-deno"];
const only = args.only?.split(",").map((s) => s.trim());
const unknown = only?.find((n) => !NAMES.includes(n));
if (unknown !== undefined) {
  benchFail(import.meta.url, OPTIONS, `--only: "${unknown}" is none of ${NAMES.join(", ")}`);
}
const chosen = only ? targets.filter((_, i) => i === 0 || only.includes(NAMES[i])) : targets;

/** One run: CPU ms per call of the target's process, or undefined when a call failed. */
async function runOnce(target: Target): Promise<number | undefined> {
  const dir = await Deno.makeTempDir({ dir: args["record-dir"], prefix: "voxpipe-floor-" });
  let callee: { proc: BoundedProcess; port: number } | undefined;
  try {
    callee = await target.start(dir);
    const pid = callee.proc.pid;
    const cpu0 = cpuSeconds(pid) ?? NaN;
    const sipp = spawnBounded(
      "sipp",
      setupLoadArgs({ calls: CALLS, rate: RATE, holdMs: HOLD_MS, port: callee.port }),
      { cwd: dir, timeoutMs, stopSignal: "SIGINT" },
    );
    await sipp.result;
    const ms = ((cpuSeconds(pid) ?? NaN) - cpu0) * 1000;
    const { calls, failed } = await setupLoadCounts(dir); // no statistics: 0 calls, not counted below
    const perCall = ms / Math.max(1, calls);
    const ok = failed === 0 && calls === CALLS && Number.isFinite(perCall);
    console.log(
      `${target.name.padEnd(20)} ${calls} calls, ${failed} failed: ${perCall.toFixed(3)} ms CPU per call [load ${
        Deno.readTextFileSync("/proc/loadavg").split(" ").slice(0, 3).join(" ")
      }]${ok ? "" : " (not counted: a call failed)"}`,
    );
    return ok ? perCall : undefined;
  } finally {
    if (callee) {
      callee.proc.kill("SIGKILL");
      await callee.proc.result.catch(() => {});
    }
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

console.log(
  `call set-up floor: ${CALLS} calls at ${RATE} cps, ${HOLD_MS} ms each, ${ROUNDS} rounds alternating; ` +
    `WAVs in ${args["record-dir"] ?? "the system's temporary directory"}`,
);
const results = new Map<string, number[]>(chosen.map((t) => [t.name, []]));
for (let r = 0; r < ROUNDS; r++) {
  for (const t of r % 2 === 0 ? chosen : [...chosen].reverse()) {
    const ms = await runOnce(t);
    if (ms !== undefined) results.get(t.name)!.push(ms);
  }
}
const ref = median(results.get("sipp -sn uas")!);
console.log("\nmedian CPU ms per call (runs counted), ratio to sipp -sn uas:");
for (const [name, xs] of results) {
  const m = median(xs);
  console.log(`  ${name.padEnd(20)} ${m.toFixed(3)} ms (${xs.length}/${ROUNDS})  ${(m / ref).toFixed(1)}×`);
}
// sipp's UAC, the load generator, spends ~0.06 ms of CPU per call (0.061–0.076 ms measured at 800–2 000 cps,
// bench/README.md): at half of sipp's ceiling it takes that share of the 2 cores.
const target = SIPP_CPS / 2;
const budget = (2 - target * UAC_MS / 1000) / target * 1000;
console.log(
  `budget of target 4: ${target} cps (0.5 × ${SIPP_CPS}) on the 2 cores less sipp's UAC at that rate: ` +
    `${budget.toFixed(3)} ms CPU per call`,
);
const ceiling = descriptorCeilingLine(HOLD_MS, SIPP_CPS);
if (ceiling) console.log(ceiling);
