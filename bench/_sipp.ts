/**
 * Helpers for the benches that load a server with sipp (`bench/ladder.ts`,
 * `bench/record_exact.ts`, `bench/sip_call_rate.ts`, `bench/sip_call_profile.ts`,
 * `bench/call_floor.ts`, `bench/sip_flood.ts`): the call set-up load and `sipp -sn uas` as those benches run them, a variant of `pipelines/callee.json` (raised limits, a
 * light receive chain) and the callee of this checkout or another started on
 * it, a pcap of RTP for sipp's `play_pcap_audio`, sipp's final screen counters
 * (RTP packets played, RTP packets echoed) and the peak of a statistics column,
 * a process's CPU time and memory sampled from `/proc` while it runs, and the
 * machine's load and CPU pressure; the socket buffers the call benches give sipp
 * (`SIPP_BUFFER_ARGS`). sipp's command lines come from `sippArgs` in
 * `tests/sip_util.ts`.
 *
 * Private to `bench/`.
 *
 * @module
 */
import type { ParseArgsOptionsConfig } from "node:util";
import { benchFail } from "./_args.ts";
import { type BoundedProcess, readyOrKilled, spawnBounded, waitForUdpPort } from "../tests/media_util.ts";
import { ProcessWatch } from "../tests/record_check.ts";
import { freeUdpPort, readSippStats, scenarioPath, sippArgs, sippCounter } from "../tests/sip_util.ts";
import { repoPath } from "../tests/util.ts";
import { fileSystemType } from "../core/paths.ts";

export { ProcessWatch };

// ---------------------------------------------------------------------------
// sipp's socket buffers

/** The socket buffer size, in bytes, the call benches ask sipp for ({@linkcode SIPP_BUFFER_ARGS}). */
export const SIPP_BUFFER_BYTES = 4 * 1024 * 1024;

/**
 * `-buff_size 4194304`: sipp's SIP socket buffers (send and receive) at 4 MB instead of its default 64 KB. With 64 KB,
 * sipp against sipp (`-sn uas`, `uac_nomedia.xml`, 1 s calls) on this project's 2-core machine dropped datagrams at its
 * receive buffers (`RcvbufErrors` in `/proc/net/snmp`) from ~1 500 calls a second and failed calls through them (2 000
 * cps: 125 drops, 43 failed of 20 000; 3 000 cps: 49 and 14); with 4 MB, none at 2 000, 3 000 or 4 000 cps. So the
 * reference's ceiling in `sip_call_rate.ts` was its buffers' (it moved between 1 488 and 3 450 cps from run to run), and
 * the load generator could lose our callee's responses the same way. The kernel caps the size at
 * `net.core.rmem_max` / `wmem_max` ({@linkcode sippBufferNote}).
 */
export const SIPP_BUFFER_ARGS: readonly string[] = ["-buff_size", String(SIPP_BUFFER_BYTES)];

/**
 * What the kernel lets sipp have of {@linkcode SIPP_BUFFER_BYTES}, for a bench's header: the `net.core.rmem_max` and
 * `wmem_max` caps, and what to do when they are lower.
 */
export function sippBufferNote(): string {
  const read = (name: string) => {
    try {
      return Number(Deno.readTextFileSync(`/proc/sys/net/core/${name}`).trim());
    } catch {
      return NaN;
    }
  };
  const rmem = read("rmem_max"), wmem = read("wmem_max");
  const mb = (b: number) => `${(b / 1048576).toFixed(b >= 1048576 ? 0 : 2)} MB`;
  const caps = `net.core.rmem_max ${Number.isFinite(rmem) ? mb(rmem) : "unknown"}, wmem_max ${
    Number.isFinite(wmem) ? mb(wmem) : "unknown"
  }`;
  if (rmem >= SIPP_BUFFER_BYTES && wmem >= SIPP_BUFFER_BYTES) {
    return `sipp's socket buffers: ${mb(SIPP_BUFFER_BYTES)} (-buff_size; ${caps})`;
  }
  return `sipp's socket buffers: ${mb(SIPP_BUFFER_BYTES)} asked (-buff_size), capped by ${caps}: sipp may drop ` +
    `datagrams at high rates; as root, sysctl -w net.core.rmem_max=${SIPP_BUFFER_BYTES} ` +
    `net.core.wmem_max=${SIPP_BUFFER_BYTES} lifts the cap`;
}

// ---------------------------------------------------------------------------
// The callee under load

/** A voxpipe checkout's file: this one's (`root` undefined) or that of the checkout at `root` (`--compare DIR`). */
export function checkoutPath(root: string | undefined, rel: string): string {
  return root ? `${root.replace(/\/$/, "")}/${rel}` : repoPath(rel);
}

/** Options of {@linkcode writeCalleeVariant}. */
export interface CalleeVariantOptions {
  /** Name of the file written in the directory. */
  name: string;
  /** The checkout whose `pipelines/callee.json` is read (default: this one). */
  root?: string;
  /**
   * `max_calls` 10 000 and `max_transactions` 1 000 000 instead of the shipped 100 and 10 000: at a 1 s hold a rate
   * above ~100 cps would be refused with 503 by design (max_calls), and above ~150 cps once the transactions that
   * outlive their calls by 64·T1 fill the table.
   */
  raiseLimits?: boolean;
  /** A light receive chain, `udp-source` → `null-sink` (no jitter buffer, RTCP or WAV), and no `record` parameter. */
  light?: boolean;
}

/** Writes a variant of `pipelines/callee.json` into `dir` (without its `$schema`) and returns its path. */
export async function writeCalleeVariant(dir: string, o: CalleeVariantOptions): Promise<string> {
  const file = JSON.parse(await Deno.readTextFile(checkoutPath(o.root, "pipelines/callee.json")));
  delete file.$schema;
  if (o.raiseLimits) {
    file.control.max_calls = 10000;
    file.control.max_transactions = 1000000;
  }
  if (o.light) {
    file.pipelines = {
      receive: [
        {
          use: "udp-source",
          port: "${local.rtp_port}",
          bind: "${local.address}",
          peer: "${remote.rtp}",
          timeout: "${rtp_timeout}",
        },
        { use: "null-sink" },
      ],
    };
    delete file.parameters.record;
  }
  const path = `${dir}/${o.name}`;
  await Deno.writeTextFile(path, JSON.stringify(file, null, 2));
  return path;
}

/**
 * What is wrong with a `--record-dir` value, or undefined when it names a directory that exists (each run makes its
 * own folder in it, calls' WAVs included, and removes it); a script refuses it with `benchFail`. Where the recordings
 * go changes what a call costs: on this machine's `/tmp` (ext4 without a journal) creating a file took 10–800 µs of
 * kernel time depending on which inodes were freed before it (see bench/README.md); on a tmpfs (`/dev/shm`) ~10 µs.
 */
export function recordDirProblem(dir: string | undefined): string | undefined {
  if (dir === undefined) return undefined;
  try {
    if (Deno.statSync(dir).isDirectory) return undefined;
  } catch { /* not there: said below */ }
  return `--record-dir ${dir}: not a directory; give one that exists (e.g. /dev/shm)`;
}

/**
 * What creating a recording costs in `dir`: `count` files made there as a callee makes its WAVs (exclusive create, a
 * 44-byte header, close; synchronously, so the figure is the file system's and not Deno's thread hops), in a folder
 * of their own removed afterwards unless `remove` is false (a trial's folder, removed with it: deleting files just
 * before a callee creates its own would make those dearer on ext4).
 * Returns the median of the per-file times in µs and the file system's type. On this machine's ext4 it ranged from
 * ~25 µs to ~800 µs per file depending on what was deleted there before (see `recordDirProblem`), on tmpfs ~10 µs:
 * printed beside a call-rate figure, it says how much of that rate is the disk's.
 */
export function fileCreateCost(dir: string, count = 200, remove = true): { micros: number; fs: string } {
  const probe = Deno.makeTempDirSync({ dir, prefix: "create-cost-" });
  const header = new Uint8Array(44);
  const times: number[] = [];
  try {
    for (let i = 0; i < count; i++) {
      const t0 = performance.now();
      const f = Deno.openSync(`${probe}/probe-${i}.wav`, { write: true, createNew: true });
      try {
        f.writeSync(header);
      } finally {
        f.close();
      }
      times.push((performance.now() - t0) * 1000);
    }
  } finally {
    if (remove) Deno.removeSync(probe, { recursive: true });
  }
  times.sort((a, b) => a - b);
  return { micros: times[Math.floor(times.length / 2)], fs: fileSystemType(Deno.realPathSync(dir)) ?? "unknown" };
}

/**
 * Folders of recording runs, removed when the script is done ({@linkcode removeDeferred}) rather than after each run:
 * on ext4 without a journal (this machine's `/tmp`), files created right after thousands were deleted there cost up
 * to ~0.8 ms each (the allocator skips the inodes freed recently, reading each), so each run's callee would pay for
 * the clean-up of the one before it.
 */
const deferred: string[] = [];

/** Removes `dir` (recursively) when {@linkcode removeDeferred} runs. */
export function removeLater(dir: string): void {
  deferred.push(dir);
}

/** Removes every folder given to {@linkcode removeLater} so far; failures are ignored (already gone). */
export async function removeDeferred(): Promise<void> {
  for (const dir of deferred.splice(0)) await Deno.remove(dir, { recursive: true }).catch(() => {});
}

/** Options of {@linkcode startCheckoutCallee}. */
export interface CheckoutCalleeOptions {
  /** The pipeline file (e.g. from {@linkcode writeCalleeVariant}). */
  pipeline: string;
  /** Its SIP port (`--set port=PORT`, the first `--set`). */
  port: number;
  /** The other `--set` values, in order (e.g. `{ calls: 0, rtp_timeout: 30 }`). */
  set?: Record<string, string | number>;
  /** The checkout whose `mod.ts` runs, from its own folder (default: this one). */
  root?: string;
  /** Flags for `deno run` before the script (e.g. `--inspect=127.0.0.1:PORT`, `--v8-flags=--trace-gc`). */
  denoFlags?: string[];
  /** Time bound of the process, ms. */
  timeoutMs: number;
  /** Extra environment variables of the process (e.g. `VOXPIPE_MEDIA_WORKERS`). */
  env?: Record<string, string>;
}

/**
 * Starts `deno run -A [denoFlags] ROOT/mod.ts --pipeline FILE --log-level warn --set port=PORT --set K=V ...` in
 * the checkout's folder, bounded in time, and resolves once its SIP port is bound (at log level warn it prints no
 * "listening" line: the port is watched in `/proc/net/udp`). Killed, and the error rethrown, when that does not
 * happen within 30 s.
 */
export async function startCheckoutCallee(o: CheckoutCalleeOptions): Promise<BoundedProcess> {
  const sets = [`port=${o.port}`, ...Object.entries(o.set ?? {}).map(([k, v]) => `${k}=${v}`)];
  const proc = spawnBounded(Deno.execPath(), [
    "run",
    "-A",
    ...(o.denoFlags ?? []),
    checkoutPath(o.root, "mod.ts"),
    "--pipeline",
    o.pipeline,
    "--log-level",
    "warn",
    ...sets.flatMap((s) => ["--set", s]),
  ], { cwd: checkoutPath(o.root, "."), timeoutMs: o.timeoutMs, ...(o.env ? { env: o.env } : {}) });
  return await readyOrKilled(proc, () => waitForUdpPort(o.port, 30_000));
}

// ---------------------------------------------------------------------------
// the call set-up load

/** What {@linkcode setupLoadArgs} loads. */
export interface SetupLoadOptions {
  /** Calls in all (`-m`). */
  calls: number;
  /** Calls per second (`-r`). */
  rate: number;
  /** How long each call lasts between its ACK and its BYE, ms. */
  holdMs: number;
  /** The callee's SIP port on 127.0.0.1. */
  port: number;
}

/**
 * sipp's arguments for the call set-up load of `sip_call_rate.ts`, `sip_call_profile.ts` and `call_floor.ts`:
 * `tests/fixtures/sipp/uac_nomedia.xml` (INVITE with SDP / 180 / 200 / ACK / pause / BYE / 200, no RTP), statistics
 * each second in `uac.csv` of sipp's working directory, 4 MB socket buffers.
 */
export function setupLoadArgs(o: SetupLoadOptions): string[] {
  return sippArgs({
    scenario: scenarioPath("uac_nomedia.xml"),
    service: "bob",
    calls: o.calls,
    rate: o.rate,
    pauseMs: o.holdMs,
    stats: { file: "uac.csv", periodS: 1 },
    extra: [...SIPP_BUFFER_ARGS],
    target: `127.0.0.1:${o.port}`,
  });
}

/** The set-up load's settings, as {@linkcode setupLoadSettings} reads them. */
export interface SetupLoadSettings {
  /** Calls per second. */
  rate: number;
  /** Calls in all. */
  calls: number;
  /** How long each call lasts, ms. */
  holdMs: number;
}

/**
 * Reads the options the call set-up benches share, `--rate`, `--calls`, `--hold` and `--record-dir`, and ends the
 * script with its usage (`benchFail`) when one is wrong: a rate or call count that is not a positive integer, a hold
 * below 0 ms, a record directory that is not one (see {@linkcode recordDirProblem}).
 */
export function setupLoadSettings(
  scriptUrl: string,
  options: ParseArgsOptionsConfig,
  args: { rate?: string; calls?: string; hold?: string; "record-dir"?: string },
): SetupLoadSettings {
  const problem = recordDirProblem(args["record-dir"]);
  if (problem) benchFail(scriptUrl, options, problem);
  const rate = Number(args.rate), calls = Number(args.calls), holdMs = Number(args.hold);
  for (const [k, v] of [["rate", rate], ["calls", calls]] as const) {
    if (!(Number.isInteger(v) && v > 0)) benchFail(scriptUrl, options, `--${k}: expected a positive integer`);
  }
  if (!(Number.isFinite(holdMs) && holdMs >= 0)) benchFail(scriptUrl, options, "--hold: expected ms >= 0");
  return { rate, calls, holdMs };
}

/** The calls the load of {@linkcode setupLoadArgs} run in `dir` completed and failed (none of either without statistics). */
export async function setupLoadCounts(dir: string): Promise<{ calls: number; failed: number }> {
  try {
    const stats = await readSippStats(`${dir}/uac.csv`);
    return { calls: sippCounter(stats, "SuccessfulCall(C)"), failed: sippCounter(stats, "FailedCall(C)") };
  } catch {
    return { calls: 0, failed: 0 };
  }
}

/** The soft limit on open files this process (and what it starts) has, from `/proc/self/limits`; NaN when unread. */
export function openFilesLimit(): number {
  try {
    return Number(/Max open files\s+(\d+)/.exec(Deno.readTextFileSync("/proc/self/limits"))?.[1] ?? NaN);
  } catch {
    return NaN;
  }
}

/**
 * What the open-files limit allows a recording callee, as a line for the call set-up benches: each call in flight
 * holds three descriptors (its RTP and RTCP sockets and its WAV), so at most (limit − 100) / 3 calls can be in
 * flight, and with calls of `holdMs` at most that many per hold time start each second. `sippRate` (sipp's UAS rate,
 * measured in the same run or given) gives the ratio that caps. On this machine (limit 20 000) the bare floor of
 * `call_floor.ts` failed with `EMFILE` at 8 000 cps of 1 s calls and passed at 6 000 (bench/README.md).
 */
export function descriptorCeilingLine(holdMs: number, sippRate?: number): string | undefined {
  const limit = openFilesLimit();
  if (!(limit > 100) || !(holdMs > 0)) return undefined;
  const inFlight = Math.floor((limit - 100) / 3);
  const cps = Math.floor(inFlight / (holdMs / 1000));
  const ratio = sippRate ? ` (${(cps / sippRate).toFixed(2)}× sipp's UAS at ${sippRate} cps)` : "";
  return `descriptor ceiling: open files limit ${limit}, 3 per recorded call in flight (RTP, RTCP, WAV): at most ` +
    `~${inFlight} calls in flight, ~${cps} cps with ${holdMs} ms calls${ratio}, whatever the callee's code`;
}

/**
 * Starts `sipp -sn uas`, the reference of the call set-up benches, on a free port with 4 MB socket buffers and its
 * statistics in `dir/uas.csv`; resolves once it listens. Stopped with SIGINT after `timeoutMs`.
 */
export async function startSippUas(dir: string, timeoutMs: number): Promise<{ proc: BoundedProcess; port: number }> {
  const port = freeUdpPort();
  const proc = spawnBounded(
    "sipp",
    sippArgs({ builtin: "uas", port, stats: { file: "uas.csv" }, extra: [...SIPP_BUFFER_ARGS] }),
    { cwd: dir, timeoutMs, stopSignal: "SIGINT" },
  );
  await waitForUdpPort(port, 10_000);
  return { proc, port };
}

// ---------------------------------------------------------------------------
// pcap

/** Options of {@linkcode rtpPcap}. */
export interface RtpPcapOptions {
  /** RTP payload type (default 0, PCMU). */
  payloadType?: number;
  /** Payload bytes per packet (default 160: 20 ms of G.711). */
  bytesPerPacket?: number;
  /** Packet interval in ms (default 20); also the RTP timestamp step in 8 kHz ticks (`bytesPerPacket`). */
  ptimeMs?: number;
  /** SSRC (default 0x766f7870). */
  ssrc?: number;
  /** UDP source and destination ports written in the packets (sipp rewrites both; default 6000 → 6002). */
  srcPort?: number;
  /** See `srcPort`. */
  dstPort?: number;
}

/**
 * A classic pcap file (little-endian, Ethernet link type) holding `payload` as
 * RTP over UDP over IPv4, 127.0.0.1 → 127.0.0.1, one packet of
 * `bytesPerPacket` every `ptimeMs`, sequence numbers from 0 and timestamps
 * from 0, one SSRC: what sipp's `play_pcap_audio` replays with the packets'
 * timing. `payload.length` must be a multiple of `bytesPerPacket`.
 *
 * @example
 * ```ts
 * const pcap = rtpPcap(g711Audio("PCMU", 60).bytes); // 3000 packets, 60 s
 * ```
 */
export function rtpPcap(payload: Uint8Array, o: RtpPcapOptions = {}): Uint8Array {
  const per = o.bytesPerPacket ?? 160, ptime = o.ptimeMs ?? 20, pt = o.payloadType ?? 0;
  const ssrc = o.ssrc ?? 0x766f7870;
  if (per <= 0 || payload.length % per !== 0) {
    throw new Error(`rtpPcap: the payload (${payload.length} bytes) is not a whole number of ${per}-byte packets`);
  }
  const packets = payload.length / per;
  const frame = 14 + 20 + 8 + 12 + per; // Ethernet, IPv4, UDP, RTP, payload
  const out = new Uint8Array(24 + packets * (16 + frame));
  const v = new DataView(out.buffer);
  v.setUint32(0, 0xa1b2c3d4, true); // magic: microsecond timestamps, written little-endian
  v.setUint16(4, 2, true);
  v.setUint16(6, 4, true);
  v.setUint32(16, 65535, true); // snaplen
  v.setUint32(20, 1, true); // LINKTYPE_ETHERNET
  for (let i = 0, at = 24; i < packets; i++, at += 16 + frame) {
    const us = i * ptime * 1000;
    v.setUint32(at, Math.floor(us / 1e6), true);
    v.setUint32(at + 4, us % 1e6, true);
    v.setUint32(at + 8, frame, true);
    v.setUint32(at + 12, frame, true);
    const e = at + 16;
    out.set([2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2], e); // locally administered MACs
    v.setUint16(e + 12, 0x0800); // IPv4
    const ip = e + 14;
    out.set([0x45, 0], ip);
    v.setUint16(ip + 2, 20 + 8 + 12 + per);
    v.setUint16(ip + 4, i & 0xffff);
    v.setUint16(ip + 6, 0x4000); // don't fragment
    out.set([64, 17], ip + 8); // TTL, UDP
    out.set([127, 0, 0, 1, 127, 0, 0, 1], ip + 12);
    let sum = 0;
    for (let k = 0; k < 20; k += 2) sum += v.getUint16(ip + k);
    while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
    v.setUint16(ip + 10, ~sum & 0xffff);
    const udp = ip + 20;
    v.setUint16(udp, o.srcPort ?? 6000);
    v.setUint16(udp + 2, o.dstPort ?? 6002);
    v.setUint16(udp + 4, 8 + 12 + per);
    v.setUint16(udp + 6, 0); // no checksum (sipp computes its own)
    const rtp = udp + 8;
    out[rtp] = 0x80;
    out[rtp + 1] = pt & 0x7f;
    v.setUint16(rtp + 2, i & 0xffff);
    v.setUint32(rtp + 4, (i * per) >>> 0);
    v.setUint32(rtp + 8, ssrc >>> 0);
    out.set(payload.subarray(i * per, (i + 1) * per), rtp + 12);
  }
  return out;
}

/** How sipp's UAC sends its RTP: `pcap` (`play_pcap_audio`) or `stream` (`rtp_stream`). */
export type SippSender = "pcap" | "stream";

/**
 * Writes the UAC scenario and its audio into `dir`: for `pcap`,
 * `tests/fixtures/sipp/uac_pcmu_pcap.xml` and the pcap it plays
 * (`voxpipe_pcmu.pcap`, `payload` as 20 ms PCMU RTP; sipp finds a pcap next to
 * its scenario); for `stream`, `tests/fixtures/sipp/uac_pcmu_stream.xml` and
 * the raw µ-law file it streams (`voxpipe_pcmu.raw`, opened from sipp's working
 * directory: run sipp in `dir`). Returns the scenario's path and the number of
 * RTP packets each call sends.
 */
export async function writeUacScenario(
  dir: string,
  payload: Uint8Array,
  sender: SippSender,
): Promise<{ scenario: string; packets: number }> {
  const name = sender === "pcap" ? "uac_pcmu_pcap.xml" : "uac_pcmu_stream.xml";
  const scenario = `${dir}/${name}`;
  await Deno.copyFile(scenarioPath(name), scenario);
  if (sender === "pcap") await Deno.writeFile(`${dir}/voxpipe_pcmu.pcap`, rtpPcap(payload));
  else await Deno.writeFile(`${dir}/voxpipe_pcmu.raw`, payload);
  return { scenario, packets: payload.length / 160 };
}

// ---------------------------------------------------------------------------
// sipp's own figures

/** The screens sipp dumped into the `*_screen.log` files in `dir` (`-trace_screen`, or SIGUSR2), "" when none. */
export function sippScreens(dir: string): string {
  let text = "";
  for (const e of Deno.readDirSync(dir)) {
    if (e.isFile && e.name.endsWith("_screen.log")) text += Deno.readTextFileSync(`${dir}/${e.name}`);
  }
  return text;
}

/**
 * The RTP counters on the last screen sipp dumped (`-trace_screen`: the
 * `*_screen.log` files in `dir`): packets played from pcaps (`Total RTP pckts
 * sent`, the pcap play line), packets sent by `rtp_stream`, and packets
 * `-rtp_echo` echoed (`Total echo RTP pckts 1st stream`). A counter sipp did not
 * print is undefined.
 */
export function sippScreenCounters(dir: string): { rtpSent?: number; echoed?: number } {
  const text = sippScreens(dir);
  const last = (re: RegExp) => {
    const all = [...text.matchAll(re)];
    return all.length ? Number(all[all.length - 1][1]) : undefined;
  };
  return {
    rtpSent: last(/(\d+) Total RTP pckts sent/g),
    echoed: last(/(\d+) Total echo RTP pckts 1st stream/g),
  };
}

/** The largest value of a column of sipp's statistics CSV (`-trace_stat`, one row per `-fd` period); NaN when absent. */
export function maxColumn(csv: string, name: string): number {
  const rows = csv.split("\n").filter((l) => l.trim()).map((l) => l.split(";"));
  const i = rows[0]?.indexOf(name) ?? -1;
  return i < 0 ? NaN : Math.max(...rows.slice(1).map((r) => Number(r[i])).filter(Number.isFinite));
}

// ---------------------------------------------------------------------------
// /proc

/** Resident memory of a process from `/proc/PID/status`, KiB: now (`VmRSS`) and its peak (`VmHWM`), threads. */
export function memoryKb(pid: number): { rss: number; hwm: number; threads: number } | undefined {
  try {
    const s = Deno.readTextFileSync(`/proc/${pid}/status`);
    const field = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+)`, "m").exec(s)?.[1] ?? NaN);
    return { rss: field("VmRSS"), hwm: field("VmHWM"), threads: field("Threads") };
  } catch {
    return undefined;
  }
}

/**
 * {@linkcode ProcessWatch} (CPU time, socket drops, load) plus memory: the
 * peak resident set (`VmHWM`, read while the process lives: it is gone with
 * it), the resident set when the watch started, and the most threads seen.
 */
export class ResourceWatch extends ProcessWatch {
  readonly #pid: number;
  readonly #timer: ReturnType<typeof setInterval>;
  /** Resident set when the watch started, KiB. */
  readonly startRssKb: number;
  /** Highest `VmHWM` seen, KiB. */
  peakRssKb = 0;
  /** Most threads seen. */
  peakThreads = 0;

  /** Starts watching `pid`. */
  constructor(pid: number, intervalMs = 500) {
    super(pid, intervalMs);
    this.#pid = pid;
    this.startRssKb = memoryKb(pid)?.rss ?? NaN;
    this.#memory();
    this.#timer = setInterval(() => this.#memory(), intervalMs);
  }

  #memory(): void {
    const m = memoryKb(this.#pid);
    if (!m) return;
    this.peakRssKb = Math.max(this.peakRssKb, m.hwm);
    this.peakThreads = Math.max(this.peakThreads, m.threads);
  }

  /** Takes a last sample (CPU and memory) and stops. */
  override stop(): void {
    this.sample();
    this.#memory();
    clearInterval(this.#timer);
    super.stop();
  }
}

/** The machine's load at one moment: load averages and `/proc/pressure/cpu` "some" (avg10 %, total µs). */
export interface MachineLoad {
  /** 1, 5 and 15-minute load averages. */
  loadavg: [number, number, number];
  /** CPU pressure "some avg10", % (NaN where unavailable). */
  pressure10: number;
  /** CPU pressure "some total", µs since boot (NaN where unavailable). */
  pressureTotalUs: number;
  /** `performance.now()` when read. */
  at: number;
}

/** Reads {@linkcode MachineLoad} now. */
export function machineLoad(): MachineLoad {
  let psi = "";
  try {
    psi = Deno.readTextFileSync("/proc/pressure/cpu");
  } catch { /* not available */ }
  const [l1, l5, l15] = Deno.loadavg();
  return {
    loadavg: [l1, l5, l15],
    pressure10: Number(/some avg10=([\d.]+)/.exec(psi)?.[1] ?? NaN),
    pressureTotalUs: Number(/some .*total=(\d+)/.exec(psi)?.[1] ?? NaN),
    at: performance.now(),
  };
}

/** CPU pressure between two readings: the share of the time some runnable task waited for a CPU, %. */
export function pressureBetween(a: MachineLoad, b: MachineLoad): number {
  return (100 * (b.pressureTotalUs - a.pressureTotalUs) / 1000) / (b.at - a.at);
}
