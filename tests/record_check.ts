/**
 * Checks that a recording holds what was sent, for the recording proofs
 * (`bench/record_exact.ts`, `tests/record_exact_test.ts`): the frames of a
 * reference found sample-exact and in order, with the places where audio was
 * inserted or removed between two of them (the TypeScript twin of
 * `/work/shared/tools/frames_found.py`), a strict comparison apart from
 * leading and trailing silence, our callee's call summaries, and what
 * `/proc` says about a process (CPU time, UDP receive-buffer drops of its
 * sockets) and the machine (load).
 *
 * Nothing here imports the stages under test.
 *
 * @module
 */

/** What {@linkcode framesFound} found. */
export interface FramesFound {
  /** Reference frames that are neither all zero nor a repeat of an earlier one (the frames looked for). */
  total: number;
  /** Of those, frames found sample-exact in the recording, each after the previous one found. */
  found: number;
  /** Places where the distance between two consecutive found frames differs from the reference's. */
  shifts: number;
  /** Samples inserted or removed at those places, in all. */
  shiftedSamples: number;
  /** Recording index of the first found frame (-1 when none). */
  firstAt: number;
  /** Recording index after the last found frame (-1 when none). */
  endAt: number;
  /** Reference indices (in frames) of the frames looked for and not found, at most 20. */
  missing: number[];
}

/**
 * Where the reference's frames of `size` samples lie in `rec`, in order, as
 * `frames_found.py` counts them: a frame that is all zero or repeats an
 * earlier frame is ambiguous and skipped; each other frame is looked for after
 * the previous one found; a found frame whose distance to the previous found
 * one differs from the reference's is a shift (audio inserted or removed
 * between them). A recording of a lossless call finds every frame with no
 * shift; a recording that conceals a loss exactly its length misses the lost
 * frames and still has no shift.
 *
 * @example
 * ```ts
 * const f = framesFound(reference, recording); // { total: 250, found: 250, shifts: 0, ... }
 * ```
 */
export function framesFound(ref: Int16Array, rec: Int16Array, size = 160): FramesFound {
  const index = new RecordingIndex(rec, size);
  const seen = new Set<string>();
  let total = 0, found = 0, shifts = 0, shiftedSamples = 0;
  let pos = 0, lastRef = -1, lastRec = -1, firstAt = -1;
  const missing: number[] = [];
  for (let i = 0; i + size <= ref.length; i += size) {
    const f = ref.subarray(i, i + size);
    if (f.every((x) => x === 0)) continue;
    const key = frameKey(f);
    if (seen.has(key)) continue;
    seen.add(key);
    total++;
    // The first place at or after `pos`, as frames_found.py's `find`. Fast path: the frame right after the
    // previous one found in both (then `pos` is where the timeline says it is, and the first place to look).
    const j = lastRec >= 0 && i - lastRef === size && equalAt(rec, pos, f) ? pos : index.find(f, pos);
    if (j < 0) {
      if (missing.length < 20) missing.push(i / size);
      continue;
    }
    if (lastRec >= 0 && j - lastRec !== i - lastRef) {
      shifts++;
      shiftedSamples += Math.abs(j - lastRec - (i - lastRef));
    }
    if (firstAt < 0) firstAt = j;
    found++;
    pos = j + size;
    lastRef = i;
    lastRec = j;
  }
  return { total, found, shifts, shiftedSamples, firstAt, endAt: found > 0 ? pos : -1, missing };
}

function frameKey(f: Int16Array): string {
  return String.fromCharCode(...new Uint16Array(f.buffer, f.byteOffset, f.length));
}

function equalAt(rec: Int16Array, at: number, f: Int16Array): boolean {
  if (at < 0 || at + f.length > rec.length) return false;
  for (let k = 0; k < f.length; k++) if (rec[at + k] !== f[k]) return false;
  return true;
}

/**
 * Every position of a recording sorted by a hash of the 4 samples there, built
 * on first use: finding a frame anywhere costs a binary search, not a scan.
 */
class RecordingIndex {
  readonly #rec: Int16Array;
  readonly #size: number;
  #keys: Float64Array | undefined; // hash × 2^24 + position, sorted

  constructor(rec: Int16Array, size: number) {
    this.#rec = rec;
    this.#size = size;
  }

  static hash(a: Int16Array, i: number): number {
    let h = 0x811c9dc5;
    for (let k = 0; k < 4; k++) h = Math.imul(h ^ (a[i + k] & 0xffff), 0x01000193);
    return (h >>> 0) & 0x1fffffff; // 29 bits: with a 24-bit position, exact in a double
  }

  /** First index ≥ `from` where `f` lies in the recording, or -1. */
  find(f: Int16Array, from: number): number {
    const rec = this.#rec;
    if (rec.length >= 2 ** 24) throw new Error("framesFound: recordings longer than 2^24 samples are not supported");
    if (!this.#keys) {
      const n = Math.max(0, rec.length - this.#size + 1);
      const keys = new Float64Array(n);
      for (let i = 0; i < n; i++) keys[i] = RecordingIndex.hash(rec, i) * 2 ** 24 + i;
      this.#keys = keys.sort();
    }
    const keys = this.#keys;
    const h = RecordingIndex.hash(f, 0) * 2 ** 24;
    // First key ≥ h + from.
    let lo = 0, hi = keys.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (keys[mid] < h + from) lo = mid + 1;
      else hi = mid;
    }
    for (let k = lo; k < keys.length && keys[k] < h + 2 ** 24; k++) {
      const at = keys[k] - h;
      if (equalAt(rec, at, f)) return at;
    }
    return -1;
  }
}

/** What {@linkcode compareApartFromSilence} found. */
export interface SilenceTrimmedComparison {
  /** True when the recording, without its leading and trailing zero samples, equals the reference without its own. */
  equal: boolean;
  /** Zero samples before the recording's audio. */
  leading: number;
  /** Zero samples after it. */
  trailing: number;
  /** Length of the recording's audio (without them) and of the reference's. */
  recLength: number;
  /** Length of the reference without its leading and trailing zero samples. */
  refLength: number;
  /** Samples that differ over the common length. */
  mismatches: number;
  /** Index (in the trimmed reference) of the first difference, or -1. */
  firstMismatch: number;
}

/** `[start, end)` of `a` without its leading and trailing zero samples. */
export function audioSpan(a: Int16Array): [number, number] {
  let s = 0, e = a.length;
  while (s < e && a[s] === 0) s++;
  while (e > s && a[e - 1] === 0) e--;
  return [s, e];
}

/**
 * The strictest check of a recording: apart from silence (zero samples) at
 * either end, it is the reference, sample for sample, nothing more, nothing
 * less.
 *
 * @example
 * ```ts
 * compareApartFromSilence(ref, rec).equal; // true for a recording of a clean call
 * ```
 */
export function compareApartFromSilence(ref: Int16Array, rec: Int16Array): SilenceTrimmedComparison {
  const [rs, re] = audioSpan(ref);
  const [ts, te] = audioSpan(rec);
  const a = ref.subarray(rs, re), b = rec.subarray(ts, te);
  let mismatches = Math.abs(a.length - b.length), firstMismatch = -1;
  for (let i = 0; i < Math.min(a.length, b.length); i++) {
    if (a[i] !== b[i]) {
      mismatches++;
      if (firstMismatch < 0) firstMismatch = i;
    }
  }
  if (firstMismatch < 0 && a.length !== b.length) firstMismatch = Math.min(a.length, b.length);
  return {
    equal: mismatches === 0,
    leading: ts,
    trailing: rec.length - te,
    recLength: b.length,
    refLength: a.length,
    mismatches,
    firstMismatch,
  };
}

/** One `call summary` line of our callee. */
export interface CallSummary {
  /** The Call-ID (the line's `call=` field). */
  callId: string;
  /** RTP datagrams the call's receive chain received. */
  received: number;
  /** Packets its jitter buffer declared lost. */
  lost: number;
  /** Recording path, if the call recorded one. */
  recording?: string;
}

/** The `call summary` lines in a callee's log. */
export function callSummaries(log: string): CallSummary[] {
  const out: CallSummary[] = [];
  for (const line of log.split("\n")) {
    const m = /call summary: .* received=(\d+) lost=(\d+) .*?(?: recording=(\S+) \([\d.]+ s\))? call=(\S+)$/.exec(line);
    if (m) out.push({ received: Number(m[1]), lost: Number(m[2]), recording: m[3], callId: m[4] });
  }
  return out;
}

/** The `record buffer summary` counters of each receive pipeline (`pipeline=receive#N`) in a callee's log. */
export function recordBufferSummaries(log: string): Record<string, number>[] {
  const out: Record<string, number>[] = [];
  for (const line of log.split("\n")) {
    if (!line.includes("record buffer summary")) continue;
    const r: Record<string, number> = {};
    for (const m of line.matchAll(/ (\w+)=(-?[\d.]+)(?= |$)/g)) r[m[1]] = Number(m[2]);
    out.push(r);
  }
  return out;
}

// ---------------------------------------------------------------------------
// /proc

/** Clock ticks per second of `/proc/PID/stat` times (`getconf CLK_TCK`; 100 on Linux). */
const CLK_TCK = 100;

/**
 * CPU seconds (user + system) a process has used, all its threads (`task` undefined) or only its thread `task`; undefined
 * when it is gone.
 */
export function cpuSeconds(pid: number, task?: number): number | undefined {
  try {
    return statCpuSeconds(
      Deno.readTextFileSync(task === undefined ? `/proc/${pid}/stat` : `/proc/${pid}/task/${task}/stat`),
    );
  } catch {
    return undefined;
  }
}

/**
 * {@linkcode cpuSeconds} for a process that must still be running (a bench's server, or this process: `Deno.pid`):
 * throws, naming the process, when its `/proc` entry cannot be read.
 */
export function liveCpuSeconds(pid: number, task?: number): number {
  const s = cpuSeconds(pid, task);
  if (s === undefined) {
    const what = task === undefined ? `process ${pid}` : `thread ${task} of process ${pid}`;
    throw new Error(`cannot read the CPU time of ${what} from /proc: it has ended (or this is not Linux)`);
  }
  return s;
}

/** User + system CPU seconds in a `/proc/.../stat` line. */
export function statCpuSeconds(stat: string): number {
  // Fields after the command name (which may contain spaces and parentheses, in parentheses): state is field 3.
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(f[11]) + Number(f[12])) / CLK_TCK; // utime, stime: fields 14, 15
}

/** The `drops` column of `/proc/net/udp` and `udp6` by socket inode. */
export function udpDropsByInode(): Map<number, number> {
  const out = new Map<number, number>();
  for (const file of ["/proc/net/udp", "/proc/net/udp6"]) {
    let text = "";
    try {
      text = Deno.readTextFileSync(file);
    } catch {
      continue;
    }
    for (const line of text.split("\n").slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 13) continue;
      out.set(Number(f[9]), Number(f[12]));
    }
  }
  return out;
}

/** Inodes of the sockets a process holds open. */
export function socketInodes(pid: number): number[] {
  const out: number[] = [];
  try {
    for (const e of Deno.readDirSync(`/proc/${pid}/fd`)) {
      try {
        const m = /^socket:\[(\d+)\]$/.exec(Deno.readLinkSync(`/proc/${pid}/fd/${e.name}`));
        if (m) out.push(Number(m[1]));
      } catch { /* closed meanwhile */ }
    }
  } catch { /* process gone */ }
  return out;
}

/** The machine-wide UDP counters of `/proc/net/snmp` (`InDatagrams`, `RcvbufErrors`, `InErrors`, ...). */
export function udpCounters(): Record<string, number> {
  try {
    const lines = Deno.readTextFileSync("/proc/net/snmp").split("\n").filter((l) => l.startsWith("Udp:"));
    const names = lines[0].split(/\s+/).slice(1), values = lines[1].split(/\s+/).slice(1);
    return Object.fromEntries(names.map((n, i) => [n, Number(values[i])]));
  } catch {
    return {};
  }
}

/** CPU pressure (`/proc/pressure/cpu` "some avg10", %), or undefined where not available. */
export function cpuPressure(): number | undefined {
  try {
    const m = /some avg10=([\d.]+)/.exec(Deno.readTextFileSync("/proc/pressure/cpu"));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Watches a process while it runs: its CPU time and the receive-buffer drops
 * of its UDP sockets (sampled every `intervalMs`; a socket's count is kept
 * after it closes), and the machine's load average and CPU pressure.
 */
export class ProcessWatch {
  readonly #pid: number;
  readonly #timer: ReturnType<typeof setInterval>;
  readonly #drops = new Map<number, number>(); // inode → drops last seen
  readonly #cpu0: number;
  readonly #t0 = performance.now();
  readonly #snmp0 = udpCounters();
  #cpu: number;
  #t = performance.now();
  /** Load average (1 min) samples, one per interval. */
  readonly load: number[] = [];
  /** CPU pressure samples (some avg10, %). */
  readonly pressure: number[] = [];

  /** Starts watching `pid`. */
  constructor(pid: number, intervalMs = 500) {
    this.#pid = pid;
    this.#cpu0 = this.#cpu = cpuSeconds(pid) ?? 0;
    this.#timer = setInterval(() => this.sample(), intervalMs);
  }

  /** Takes one sample now (also done every interval). */
  sample(): void {
    const cpu = cpuSeconds(this.#pid);
    if (cpu !== undefined) {
      this.#cpu = cpu;
      this.#t = performance.now();
      const drops = udpDropsByInode();
      for (const inode of socketInodes(this.#pid)) {
        const d = drops.get(inode);
        if (d !== undefined) this.#drops.set(inode, d);
      }
    }
    this.load.push(Deno.loadavg()[0]);
    const p = cpuPressure();
    if (p !== undefined) this.pressure.push(p);
  }

  /** Stops sampling. */
  stop(): void {
    clearInterval(this.#timer);
  }

  /** CPU seconds used since the watch started (up to the last sample while it ran). */
  get cpuSeconds(): number {
    return this.#cpu - this.#cpu0;
  }

  /** Mean CPU while it ran, in % of one core. */
  get cpuPercent(): number {
    const wall = (this.#t - this.#t0) / 1000;
    return wall > 0 ? (100 * this.cpuSeconds) / wall : 0;
  }

  /** Datagrams the kernel dropped on the process's UDP sockets (full receive buffer), as last sampled. */
  get socketDrops(): number {
    let n = 0;
    for (const d of this.#drops.values()) n += d;
    return n;
  }

  /** Sockets seen. */
  get sockets(): number {
    return this.#drops.size;
  }

  /** Change of the machine-wide UDP `RcvbufErrors` and `InErrors` since the watch started. */
  udpErrors(): { rcvbuf: number; in: number } {
    const now = udpCounters();
    return {
      rcvbuf: (now.RcvbufErrors ?? 0) - (this.#snmp0.RcvbufErrors ?? 0),
      in: (now.InErrors ?? 0) - (this.#snmp0.InErrors ?? 0),
    };
  }
}

/** `min / mean / max` of a list of numbers, rounded to 2 decimals. */
export function spread(values: number[]): string {
  if (values.length === 0) return "n/a";
  const r = (v: number) => Math.round(v * 100) / 100;
  const mean = values.reduce((a, b) => a + b, 0) / values.length;
  return `${r(Math.min(...values))} / ${r(mean)} / ${r(Math.max(...values))}`;
}
