/**
 * Helpers shared by the RTP end-to-end and interop tests: test audio that is
 * already G.711-representable, WAV reading and writing, alignment of a
 * recording against its reference by cross-correlation and a sample-exact
 * comparison, free UDP port pairs, and subprocesses (our CLI, ffmpeg,
 * GStreamer, tshark) bounded in time and killed on failure.
 *
 * Nothing here imports the stages under test: the G.711 round trip uses
 * `alawmulaw` (the reference the project tests against) and the WAV reader is
 * independent of the wav plugin, so a bug there cannot hide itself.
 *
 * @module
 */
// Default import only: named imports type-check but are undefined at run time in Deno (DESIGN).
import alawmulaw from "alawmulaw";
import { repoPath } from "./util.ts";
import { seededRandom } from "../core/random.ts";

/** A G.711 law, as named in pipelines and SDP. */
export type G711Codec = "PCMU" | "PCMA";

/** True when `VOXPIPE_SKIP_INTEROP=1`: interop tests are ignored instead of failing without their tools. */
export const SKIP_INTEROP: boolean = Deno.env.get("VOXPIPE_SKIP_INTEROP") === "1";

/** Resolves after `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// ---------------------------------------------------------------------------
// Test audio

/** Options of {@linkcode speechLikeSignal}. */
export interface SignalOptions {
  /** Length in seconds (default 2.5). */
  seconds?: number;
  /** Sample rate in Hz (default 8000). */
  sampleRate?: number;
  /** PRNG seed (default 1). */
  seed?: number;
  /** Peak amplitude (default 12000, about −8.7 dBFS: far from G.711's clipping and µ-law's zero trap). */
  peak?: number;
}

/**
 * A deterministic, speech-like mono signal: a voiced part (harmonics of a
 * gliding pitch, 90–220 Hz) under a syllable-rate envelope, plus a little
 * noise. It never repeats, so cross-correlation has a single clear peak, and
 * it never falls silent for long, so every packet carries audio.
 *
 * @example
 * ```ts
 * const x = speechLikeSignal({ seconds: 2 }); // Int16Array(16000)
 * ```
 */
export function speechLikeSignal(opts: SignalOptions = {}): Int16Array {
  const rate = opts.sampleRate ?? 8000;
  const n = Math.round((opts.seconds ?? 2.5) * rate);
  const peak = opts.peak ?? 12000;
  const rnd = seededRandom(opts.seed ?? 1);
  const out = new Int16Array(n);
  let phase = 0;
  for (let i = 0; i < n; i++) {
    const t = i / rate;
    const f0 = 155 + 65 * Math.sin(2 * Math.PI * 0.7 * t) + 20 * Math.sin(2 * Math.PI * 2.3 * t);
    phase += (2 * Math.PI * f0) / rate;
    let v = 0;
    for (let h = 1; h <= 12; h++) {
      if (h * f0 >= rate / 2 - 200) break;
      // A formant-like spectral tilt that moves with time.
      const formant = 1 / (1 + ((h * f0 - (600 + 400 * Math.sin(2 * Math.PI * 1.1 * t))) / 500) ** 2);
      v += (formant / h ** 0.5) * Math.sin(h * phase + h * h * 0.3);
    }
    const envelope = 0.35 + 0.65 * Math.abs(Math.sin(2 * Math.PI * 2.1 * t + 0.4));
    const noise = (rnd() * 2 - 1) * 0.08;
    out[i] = Math.round(Math.max(-1, Math.min(1, (v / 2.2) * envelope + noise)) * peak);
  }
  return out;
}

/**
 * `decode(encode(x))` with the given law, per `alawmulaw`: audio every G.711
 * encoder maps back to itself, so encoders' rounding differences (DESIGN) do not
 * matter to a comparison.
 *
 * @example
 * ```ts
 * g711RoundTrip(new Int16Array([1000]), "PCMU"); // Int16Array [988]
 * ```
 */
export function g711RoundTrip(samples: Int16Array, codec: G711Codec): Int16Array {
  const law = codec === "PCMU" ? alawmulaw.mulaw : alawmulaw.alaw;
  const out = new Int16Array(samples.length);
  for (let i = 0; i < samples.length; i++) out[i] = law.decodeSample(law.encodeSample(samples[i]) & 0xff);
  return out;
}

/** True when every sample is a value the law decodes to (the audio went through G.711). */
export function isG711Representable(samples: Int16Array, codec: G711Codec): boolean {
  const law = codec === "PCMU" ? alawmulaw.mulaw : alawmulaw.alaw;
  const valid = new Set<number>();
  for (let c = 0; c < 256; c++) valid.add(law.decodeSample(c));
  return samples.every((s) => valid.has(s));
}

// ---------------------------------------------------------------------------
// WAV

/** The audio of a WAV file. */
export interface WavAudio {
  /** Samples per second. */
  sampleRate: number;
  /** Channels. */
  channels: number;
  /** Interleaved 16-bit samples. */
  samples: Int16Array;
  /** True when the data chunk's size in the header covers the data (the writer finalized the file). */
  finalized: boolean;
}

/**
 * Writes 16-bit PCM samples as a canonical 44-byte-header WAV file.
 *
 * @example
 * ```ts
 * await writeWav("/tmp/x.wav", new Int16Array(8000), 8000);
 * ```
 */
export async function writeWav(path: string, samples: Int16Array, sampleRate: number, channels = 1): Promise<void> {
  const bytes = new Uint8Array(44 + samples.length * 2);
  const v = new DataView(bytes.buffer);
  const ascii = (off: number, s: string) => {
    for (let i = 0; i < s.length; i++) bytes[off + i] = s.charCodeAt(i);
  };
  ascii(0, "RIFF");
  v.setUint32(4, 36 + samples.length * 2, true);
  ascii(8, "WAVE");
  ascii(12, "fmt ");
  v.setUint32(16, 16, true);
  v.setUint16(20, 1, true); // PCM
  v.setUint16(22, channels, true);
  v.setUint32(24, sampleRate, true);
  v.setUint32(28, sampleRate * channels * 2, true);
  v.setUint16(32, channels * 2, true);
  v.setUint16(34, 16, true);
  ascii(36, "data");
  v.setUint32(40, samples.length * 2, true);
  for (let i = 0; i < samples.length; i++) v.setInt16(44 + i * 2, samples[i], true);
  await Deno.writeFile(path, bytes);
}

/**
 * Reads a 16-bit PCM WAV file (format 1, or EXTENSIBLE with 16-bit PCM),
 * walking the chunks (LIST and other chunks are skipped). A data chunk whose
 * size is 0 or larger than the file (a writer that did not finalize) is read to
 * the end of the file, and `finalized` is false.
 */
export async function readWav(path: string): Promise<WavAudio> {
  const bytes = await Deno.readFile(path);
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const tag = (off: number) => String.fromCharCode(...bytes.subarray(off, off + 4));
  if (bytes.length < 12 || tag(0) !== "RIFF" || tag(8) !== "WAVE") throw new Error(`${path}: not a RIFF/WAVE file`);
  let fmt: { format: number; channels: number; rate: number; bits: number } | undefined;
  let off = 12;
  while (off + 8 <= bytes.length) {
    const id = tag(off);
    const size = v.getUint32(off + 4, true);
    const body = off + 8;
    if (id === "fmt ") {
      let format = v.getUint16(body, true);
      if (format === 0xfffe && size >= 40) format = v.getUint16(body + 24, true); // SubFormat GUID's first 2 bytes
      fmt = {
        format,
        channels: v.getUint16(body + 2, true),
        rate: v.getUint32(body + 4, true),
        bits: v.getUint16(body + 14, true),
      };
    } else if (id === "data") {
      if (!fmt) throw new Error(`${path}: data chunk before fmt chunk`);
      if (fmt.format !== 1 || fmt.bits !== 16) {
        throw new Error(`${path}: expected 16-bit PCM, got format ${fmt.format} with ${fmt.bits} bits`);
      }
      const available = bytes.length - body;
      const finalized = size > 0 && size <= available;
      const len = (finalized ? size : available) & ~1;
      const samples = new Int16Array(len / 2);
      for (let i = 0; i < samples.length; i++) samples[i] = v.getInt16(body + i * 2, true);
      return { sampleRate: fmt.rate, channels: fmt.channels, samples, finalized };
    }
    off = body + size + (size & 1);
  }
  throw new Error(`${path}: no data chunk`);
}

// ---------------------------------------------------------------------------
// Alignment and comparison

/** Where a reference lies in a recording. */
export interface Alignment {
  /** Index in the recording of the reference's first sample (negative: the recording starts inside it). */
  lag: number;
  /** Normalized cross-correlation at that lag, −1..1 (1 = identical shape). */
  score: number;
}

/**
 * Finds where `ref` lies in `rec` by normalized cross-correlation of a probe
 * (`probe` samples from the most energetic part of the reference) against
 * every position of the recording. Lags from `-(ref.length - probe)` to
 * `rec.length` are considered, so a recording that lost the start or the end
 * of the reference still aligns.
 *
 * @example
 * ```ts
 * const ref = speechLikeSignal({ seconds: 1 });
 * const rec = new Int16Array(9000);
 * rec.set(ref, 500);
 * findAlignment(ref, rec).lag; // 500
 * ```
 */
export function findAlignment(ref: Int16Array, rec: Int16Array, probe = 2400): Alignment {
  const len = Math.min(probe, ref.length);
  // Probe start: the most energetic window of the reference (step 80 samples).
  let start = 0, best = -1;
  for (let s = 0; s + len <= ref.length; s += 80) {
    let e = 0;
    for (let i = 0; i < len; i += 4) e += ref[s + i] * ref[s + i];
    if (e > best) {
      best = e;
      start = s;
    }
  }
  const p = new Float64Array(len);
  let pe = 0;
  for (let i = 0; i < len; i++) {
    p[i] = ref[start + i];
    pe += p[i] * p[i];
  }
  if (pe === 0) throw new Error("findAlignment: the reference is silent");
  const r = Float64Array.from(rec);
  let bestScore = -Infinity, bestPos = 0;
  // Sliding energy of the recording window.
  let we = 0;
  for (let i = 0; i < Math.min(len, r.length); i++) we += r[i] * r[i];
  for (let pos = 0; pos + len <= r.length; pos++) {
    if (pos > 0) we += r[pos + len - 1] * r[pos + len - 1] - r[pos - 1] * r[pos - 1];
    if (we <= 0) continue;
    let dot = 0;
    for (let i = 0; i < len; i++) dot += p[i] * r[pos + i];
    const score = dot / Math.sqrt(pe * we);
    if (score > bestScore) {
      bestScore = score;
      bestPos = pos;
    }
  }
  if (bestScore === -Infinity) return { lag: 0, score: 0 };
  return { lag: bestPos - start, score: bestScore };
}

/** The outcome of {@linkcode compareAligned}. */
export interface Comparison {
  /** Alignment used. */
  lag: number;
  /** Alignment score. */
  score: number;
  /** Reference samples that have a recorded counterpart. */
  overlap: number;
  /** Aligned samples that differ. */
  mismatches: number;
  /** Reference index of the first differing sample, or -1. */
  firstMismatch: number;
  /** Reference samples missing before the recording starts. */
  missingHead: number;
  /** Reference samples missing after the recording ends. */
  missingTail: number;
  /** Recorded samples before the reference starts (e.g. jitter-buffer silence). */
  extraHead: number;
  /** Recorded samples after the reference ends. */
  extraTail: number;
  /** Largest absolute value among the extra head samples (0 = pure silence). */
  headPeak: number;
  /**
   * Length of the non-silent part of the extra tail: the recorded samples after the reference up to
   * the last non-zero one (0 = pure silence; packet-loss concealment after the stream ends shows here).
   */
  tailAudio: number;
}

/**
 * Aligns `rec` on `ref` ({@linkcode findAlignment}) and compares them sample by
 * sample over their overlap.
 */
export function compareAligned(ref: Int16Array, rec: Int16Array): Comparison {
  const { lag, score } = findAlignment(ref, rec);
  const from = Math.max(0, -lag);
  const to = Math.min(ref.length, rec.length - lag);
  let mismatches = 0, firstMismatch = -1;
  for (let i = from; i < to; i++) {
    if (ref[i] !== rec[i + lag]) {
      mismatches++;
      if (firstMismatch < 0) firstMismatch = i;
    }
  }
  let headPeak = 0, tailAudio = 0;
  const extraHead = Math.max(0, lag);
  const tailStart = Math.max(0, lag + ref.length);
  for (let i = 0; i < Math.min(extraHead, rec.length); i++) headPeak = Math.max(headPeak, Math.abs(rec[i]));
  for (let i = tailStart; i < rec.length; i++) if (rec[i] !== 0) tailAudio = i - tailStart + 1;
  return {
    lag,
    score,
    overlap: Math.max(0, to - from),
    mismatches,
    firstMismatch,
    missingHead: from,
    missingTail: ref.length - Math.max(to, from),
    extraHead,
    extraTail: Math.max(0, rec.length - tailStart),
    headPeak,
    tailAudio,
  };
}

/** What {@linkcode assertSampleExact} tolerates. */
export interface ExactOptions {
  /** Reference samples that may be missing at the start and at the end (each; default 0). */
  maxMissing?: number;
  /** Largest absolute value allowed in the recording before the reference (default 0: silence only). */
  maxHeadPeak?: number;
  /**
   * Samples right after the reference that may be non-silent (default 0): a real-time receiver cannot
   * know the stream has ended and conceals the first missing packets (the jitter buffer's `max_conceal`).
   */
  concealTail?: number;
  /** Prefix of failure messages. */
  label?: string;
}

/**
 * Asserts that `rec` holds `ref` sample-exact after alignment: every aligned
 * sample equal, at most `maxMissing` reference samples missing at either end,
 * and only silence around it (up to `maxHeadPeak` before it, after `concealTail`
 * samples of concealment after it). Returns the comparison.
 */
export function assertSampleExact(ref: Int16Array, rec: Int16Array, opts: ExactOptions = {}): Comparison {
  const c = compareAligned(ref, rec);
  const label = opts.label ? `${opts.label}: ` : "";
  const summary = `${label}${JSON.stringify(c)} (reference ${ref.length} samples, recording ${rec.length})`;
  const maxMissing = opts.maxMissing ?? 0;
  if (c.overlap === 0) throw new Error(`${summary}: the recording does not contain the reference`);
  if (c.mismatches > 0) {
    const i = c.firstMismatch;
    throw new Error(
      `${summary}: ${c.mismatches} aligned samples differ; first at reference sample ${i}: ` +
        `expected ${ref[i]}, got ${rec[i + c.lag]}`,
    );
  }
  if (c.missingHead > maxMissing || c.missingTail > maxMissing) {
    throw new Error(`${summary}: more than ${maxMissing} reference samples missing at an end`);
  }
  if (c.headPeak > (opts.maxHeadPeak ?? 0)) {
    throw new Error(`${summary}: the recording has non-silent audio before the reference`);
  }
  if (c.tailAudio > (opts.concealTail ?? 0)) {
    throw new Error(`${summary}: the recording has non-silent audio after the reference (beyond concealment)`);
  }
  return c;
}

/**
 * How many of `ref`'s packets of `size` samples (those not silent) occur
 * verbatim in `rec`, each after the previous one found: for receivers that
 * play out in real time and may insert or drop whole frames, which shifts
 * everything after them.
 *
 * @example
 * ```ts
 * const f = findPackets(reference, recording); // { found: 125, total: 125 }
 * ```
 */
export function findPackets(ref: Int16Array, rec: Int16Array, size = 160): { found: number; total: number } {
  // Index the recording by its first 4 samples at every position.
  const index = new Map<string, number[]>();
  for (let i = 0; i + size <= rec.length; i++) {
    const key = `${rec[i]},${rec[i + 1]},${rec[i + 2]},${rec[i + 3]}`;
    const list = index.get(key);
    if (list) list.push(i);
    else index.set(key, [i]);
  }
  let found = 0, total = 0, last = -1;
  for (let p = 0; p + size <= ref.length; p += size) {
    const packet = ref.subarray(p, p + size);
    if (packet.every((x) => x === 0)) continue;
    total++;
    const at = (index.get(`${packet[0]},${packet[1]},${packet[2]},${packet[3]}`) ?? []).find((i) =>
      i > last && packet.every((x, k) => rec[i + k] === x)
    );
    if (at !== undefined) {
      found++;
      last = at;
    }
  }
  return { found, total };
}

/**
 * Asserts that a call's recording holds `ref`: sample-exact ({@linkcode assertSampleExact}) when the
 * receiver's jitter buffer (its `jitter buffer summary` line in `receiverLog`) concealed, inserted,
 * dropped and lost nothing; otherwise — a packet came later than its delay on a loaded machine — every
 * packet it did not report late or lost must be in the recording sample for sample, in order.
 */
export function assertCallAudio(
  ref: Int16Array,
  rec: Int16Array,
  receiverLog: string,
  opts: ExactOptions = {},
): void {
  const jb = jitterSummary(receiverLog);
  if (jb.concealed + jb.inserted + jb.late + jb.lost === 0) {
    assertSampleExact(ref, rec, opts);
    return;
  }
  const f = findPackets(ref, rec);
  if (f.found < f.total - jb.late - jb.lost) {
    throw new Error(
      `${opts.label ? `${opts.label}: ` : ""}packets missing from the recording: ${JSON.stringify(f)}, ` +
        `jitter buffer ${JSON.stringify(jb)}`,
    );
  }
}

// ---------------------------------------------------------------------------
// Ports

/**
 * A free even UDP port P on `hostname` whose P+1 is free too (RTP and RTCP),
 * found by binding port 0 and closing it again. Another process may take it in
 * between, but the kernel hands out ephemeral ports in a rotating order, so
 * parallel tests practically never collide. To keep the pair from anyone else
 * until it is used, hold it with {@linkcode holdUdpPortPair}.
 */
export function freeUdpPortPair(hostname = "127.0.0.1"): number {
  const { port, sockets } = holdUdpPortPair(hostname);
  for (const s of sockets) s.close();
  return port;
}

/**
 * An even UDP port P on `hostname` and P+1, both bound (by the returned sockets,
 * to close when done): a second search cannot return them, nor another process
 * take them in the meantime.
 */
export function holdUdpPortPair(hostname = "127.0.0.1"): { port: number; sockets: Deno.DatagramConn[] } {
  for (let attempt = 0; attempt < 200; attempt++) {
    const a = Deno.listenDatagram({ transport: "udp", hostname, port: 0 });
    const port = (a.addr as Deno.NetAddr).port;
    a.close();
    if (port % 2 !== 0 || port >= 65535) continue;
    const sockets: Deno.DatagramConn[] = [];
    try {
      for (const p of [port, port + 1]) sockets.push(Deno.listenDatagram({ transport: "udp", hostname, port: p }));
      return { port, sockets };
    } catch {
      for (const s of sockets) s.close(); // one of them is taken: try another
    }
  }
  throw new Error("no free UDP port pair found");
}

// ---------------------------------------------------------------------------
// Subprocesses

/** How a bounded subprocess ended. */
export interface ProcessResult {
  /** Exit code (or 128 + signal number when killed). */
  code: number;
  /** Signal that killed it, if any. */
  signal: Deno.Signal | null;
  /** Captured standard output. */
  stdout: string;
  /** Captured standard error. */
  stderr: string;
  /** True when the time bound expired and the process was killed. */
  timedOut: boolean;
}

/** A running subprocess with a time bound. */
export interface BoundedProcess {
  /** Process id. */
  readonly pid: number;
  /** Resolves when the process has ended (after the time bound at the latest, plus the kill grace). */
  readonly result: Promise<ProcessResult>;
  /** True once the process has exited. */
  readonly ended: boolean;
  /** Standard output and error so far, interleaved as read. */
  output(): string;
  /**
   * Resolves once the output (stdout or stderr) matches `re`; rejects when the process
   * ends first or `timeoutMs` passes, with the output so far.
   */
  waitForOutput(re: RegExp, timeoutMs: number): Promise<void>;
  /** Sends a signal (default SIGTERM); ignored when it has already ended. */
  kill(signal?: Deno.Signal): void;
  /** Writes to its standard input (when `stdin: true`), e.g. `q` to stop ffmpeg. */
  write(text: string): Promise<void>;
}

/** Options of {@linkcode spawnBounded}. */
export interface SpawnOptions {
  /** Kill it after this many ms (first `stopSignal`, SIGKILL 2 s later). Required: nothing runs unbounded. */
  timeoutMs: number;
  /** Signal sent first when the bound expires (default SIGTERM; SIGINT lets ffmpeg/gst finalize). */
  stopSignal?: Deno.Signal;
  /** Extra environment variables. */
  env?: Record<string, string>;
  /** Working directory. */
  cwd?: string;
  /** Keep standard input open for {@linkcode BoundedProcess.write}. */
  stdin?: boolean;
}

/**
 * Starts `cmd args` with output captured, killed when `timeoutMs` expires.
 * Throws a clear error when the program is not installed.
 *
 * @example
 * ```ts
 * const p = spawnBounded("gst-launch-1.0", ["-e", "..."], { timeoutMs: 20000, stopSignal: "SIGINT" });
 * await p.waitForOutput(/PLAYING/, 10000);
 * p.kill("SIGINT");
 * const r = await p.result;
 * ```
 */
export function spawnBounded(cmd: string, args: string[], opts: SpawnOptions): BoundedProcess {
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(cmd, {
      args,
      cwd: opts.cwd,
      env: { NO_COLOR: "1", ...opts.env },
      stdin: opts.stdin ? "piped" : "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw new Error(`${cmd} is not installed: ${installHint(cmd)}`);
    throw e;
  }
  let ended = false;
  let timedOut = false;
  let all = "";
  const watchers = new Set<() => void>();
  const kill = (signal: Deno.Signal = "SIGTERM") => {
    if (ended) return;
    try {
      child.kill(signal);
    } catch { /* already gone */ }
  };
  let hardKill: ReturnType<typeof setTimeout> | undefined;
  const bound = setTimeout(() => {
    timedOut = true;
    kill(opts.stopSignal ?? "SIGTERM");
    hardKill = setTimeout(() => kill("SIGKILL"), 2000);
  }, opts.timeoutMs);
  const collect = async (stream: ReadableStream<Uint8Array>): Promise<string> => {
    const dec = new TextDecoder();
    let text = "";
    for await (const chunk of stream) {
      const t = dec.decode(chunk, { stream: true });
      text += t;
      all += t;
      for (const w of [...watchers]) w();
    }
    return text;
  };
  const writer = opts.stdin ? child.stdin.getWriter() : undefined;
  const result = (async () => {
    const [status, out, err] = await Promise.all([child.status, collect(child.stdout), collect(child.stderr)]);
    ended = true;
    clearTimeout(bound);
    clearTimeout(hardKill);
    for (const w of [...watchers]) w();
    try {
      await writer?.close();
    } catch { /* the process closed its end */ }
    return { code: status.code, signal: status.signal, stdout: out, stderr: err, timedOut };
  })();
  return {
    pid: child.pid,
    result,
    get ended() {
      return ended;
    },
    output: () => all,
    kill,
    waitForOutput(re: RegExp, timeoutMs: number): Promise<void> {
      return new Promise((resolve, reject) => {
        const check = () => {
          if (re.test(all)) {
            done();
            resolve();
          } else if (ended) {
            done();
            reject(new Error(`${cmd} ended before printing ${re}; output:\n${all.slice(-2000)}`));
          }
        };
        const done = () => {
          watchers.delete(check);
          clearTimeout(timer);
        };
        const timer = setTimeout(() => {
          done();
          reject(new Error(`${cmd} did not print ${re} within ${timeoutMs} ms; output:\n${all.slice(-2000)}`));
        }, timeoutMs);
        watchers.add(check);
        check();
      });
    },
    async write(text: string) {
      if (!writer) throw new Error("spawned without stdin: true");
      await writer.write(new TextEncoder().encode(text));
    },
  };
}

/**
 * Waits until some process has a UDP socket bound to `port` (IPv4 or IPv6), read
 * from `/proc/net/udp` and `/proc/net/udp6` without touching the port itself (a
 * probe bind could make the real receiver fail). Where /proc is not available it
 * waits `fallbackMs` instead.
 */
export async function waitForUdpPort(port: number, timeoutMs: number, fallbackMs = 2000): Promise<void> {
  const hex = `:${port.toString(16).toUpperCase().padStart(4, "0")} `;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    let text: string;
    try {
      text = (await Deno.readTextFile("/proc/net/udp")) +
        (await Deno.readTextFile("/proc/net/udp6").catch(() => ""));
    } catch {
      await sleep(fallbackMs);
      return;
    }
    // Lines: "  sl  local_address rem_address ...": the local address is the second field.
    if (text.split("\n").some((l) => (l.trim().split(/\s+/)[1] ?? "").endsWith(hex.trim()))) return;
    if (Date.now() > deadline) throw new Error(`nothing bound UDP port ${port} within ${timeoutMs} ms`);
    await sleep(50);
  }
}

/** Runs `cmd args` to completion within `timeoutMs` and returns its result. */
export function runBounded(cmd: string, args: string[], opts: SpawnOptions): Promise<ProcessResult> {
  return spawnBounded(cmd, args, opts).result;
}

/**
 * Resolves with `proc` once `ready()` (what says it has started: a log line, a bound port) has resolved; when
 * `ready()` fails, kills `proc` (SIGKILL), waits for it to end and rethrows, so that a start that failed leaves no
 * process behind.
 *
 * @example
 * ```ts
 * const p = await readyOrKilled(spawnCli(args, { timeoutMs: 60_000 }), () => waitForUdpPort(port, 10_000));
 * ```
 */
export async function readyOrKilled<T extends BoundedProcess>(proc: T, ready: () => Promise<unknown>): Promise<T> {
  try {
    await ready();
  } catch (e) {
    proc.kill("SIGKILL");
    await proc.result;
    throw e;
  }
  return proc;
}

/** Starts our CLI (`deno run -A mod.ts ...args`) as a bounded subprocess. */
export function spawnCli(args: string[], opts: SpawnOptions): BoundedProcess {
  return spawnBounded(Deno.execPath(), ["run", "-A", repoPath("mod.ts"), ...args], {
    cwd: repoPath("."),
    ...opts,
  });
}

/** Debian packages of the external tools the interop tests use. */
const PACKAGES: Record<string, string> = {
  "ffmpeg": "ffmpeg",
  "gst-launch-1.0": "gstreamer1.0-tools and gstreamer1.0-plugins-good",
  "gst-inspect-1.0": "gstreamer1.0-tools and gstreamer1.0-plugins-good",
  "tshark": "tshark",
};

function installHint(cmd: string): string {
  const pkg = PACKAGES[cmd] ?? cmd;
  return `install the Debian package ${pkg} (scripts/setup.sh installs it: \`bash scripts/setup.sh\` as root), ` +
    "or set VOXPIPE_SKIP_INTEROP=1 to skip the interop tests";
}

/**
 * Fails with a message saying what to install when `cmd` cannot be run
 * (`cmd ...versionArgs` must exit 0). For GStreamer, also checks that every
 * element in `gstElements` exists (they come from gstreamer1.0-plugins-good/-base).
 */
export async function requireTool(cmd: string, versionArgs: string[], gstElements: string[] = []): Promise<void> {
  const r = await runBounded(cmd, versionArgs, { timeoutMs: 20000 });
  if (r.code !== 0) throw new Error(`${cmd} ${versionArgs.join(" ")} failed (${r.code}): ${installHint(cmd)}`);
  for (const el of gstElements) {
    const g = await runBounded("gst-inspect-1.0", ["--exists", el], { timeoutMs: 20000 });
    if (g.code !== 0) {
      throw new Error(`GStreamer element ${el} is missing: ${installHint("gst-launch-1.0")}`);
    }
  }
}

/** Formats the tail of a process's output for failure messages. */
export function outputTail(r: ProcessResult, chars = 2000): string {
  const tail = (s: string) => (s.length > chars ? "…" + s.slice(-chars) : s);
  return `exit ${r.code}${r.signal ? ` (${r.signal})` : ""}${r.timedOut ? ", timed out" : ""}\n` +
    `--- stdout\n${tail(r.stdout)}\n--- stderr\n${tail(r.stderr)}`;
}

// ---------------------------------------------------------------------------
// Our pipelines

/** Options of {@linkcode spawnReceiver}. */
export interface ReceiverOptions {
  /** RTP port (RTCP on port + 1). */
  port: number;
  /** WAV to record. */
  out: string;
  /** Codec expected. */
  codec: G711Codec;
  /** Local address (default 127.0.0.1). */
  bind?: string;
  /** Seconds without packets before it ends (default 3). */
  timeout?: number;
  /**
   * Seconds it waits for the first packet (default 45: the sender is another process, whose start on a loaded
   * machine can take longer than `timeout`; the process bound `timeoutMs` still ends a test whose sender failed).
   */
  firstTimeout?: number;
  /** RTCP report interval in seconds (default 0.5, so reports appear within a short clip). */
  rtcpInterval?: number;
  /** Time bound of the process in ms (default 60000). */
  timeoutMs?: number;
}

/**
 * Starts `pipelines/rtp-receive.json` through the CLI and resolves once it has
 * started and bound its RTP and RTCP ports.
 */
export async function spawnReceiver(o: ReceiverOptions): Promise<BoundedProcess> {
  const p = spawnCli([
    "--pipeline",
    "pipelines/rtp-receive.json",
    "--set",
    `port=${o.port}`,
    "--set",
    `bind=${o.bind ?? "127.0.0.1"}`,
    "--set",
    `codec=${o.codec}`,
    "--set",
    `out=${o.out}`,
    "--set",
    `timeout=${o.timeout ?? 3}`,
    "--set",
    `first_timeout=${o.firstTimeout ?? 45}`,
    "--set",
    `rtcp_interval=${o.rtcpInterval ?? 0.5}`,
  ], { timeoutMs: o.timeoutMs ?? 60000 });
  return await readyOrKilled(p, async () => {
    await p.waitForOutput(/pipeline "receive" started/, 30000);
    await waitForUdpPort(o.port, 10000);
    await waitForUdpPort(o.port + 1, 10000);
  });
}

/** Options of {@linkcode runSender}. */
export interface SenderOptions {
  /** Audio file to send. */
  file: string;
  /** Destination host:port. */
  to: string;
  /** Codec. */
  codec: G711Codec;
  /** Packet time in ms (default 20). */
  ptime?: number;
  /** RTCP report interval in seconds (default 0.5). */
  rtcpInterval?: number;
  /** Time bound of the process in ms (default 60000). */
  timeoutMs?: number;
}

/** Runs `pipelines/rtp-send.json` through the CLI to completion. */
export function runSender(o: SenderOptions): Promise<ProcessResult> {
  return spawnCli([
    "--pipeline",
    "pipelines/rtp-send.json",
    "--set",
    `file=${o.file}`,
    "--set",
    `to=${o.to}`,
    "--set",
    `codec=${o.codec}`,
    "--set",
    `ptime=${o.ptime ?? 20}`,
    "--set",
    `rtcp_interval=${o.rtcpInterval ?? 0.5}`,
  ], { timeoutMs: o.timeoutMs ?? 60000 }).result;
}

/** Test audio written to a directory. */
export interface Fixture {
  /** The signal as generated (not G.711-representable). */
  source: Int16Array;
  /** Its G.711 round trip with the fixture's codec. */
  reference: Int16Array;
  /** WAV of `source`. */
  sourcePath: string;
  /** WAV of `reference` (audio every G.711 encoder maps to itself). */
  referencePath: string;
}

/** Writes {@linkcode speechLikeSignal} and its G.711 round trip as 8 kHz mono WAVs in `dir`. */
export async function writeFixture(dir: string, codec: G711Codec, seconds = 2.5, seed = 1): Promise<Fixture> {
  const source = speechLikeSignal({ seconds, seed });
  const reference = g711RoundTrip(source, codec);
  const sourcePath = `${dir}/source.wav`;
  const referencePath = `${dir}/reference-${codec}.wav`;
  await writeWav(sourcePath, source, 8000);
  await writeWav(referencePath, reference, 8000);
  return { source, reference, sourcePath, referencePath };
}

// ---------------------------------------------------------------------------
// Checks on our receiver

/**
 * What our receiver's jitter buffer says at the end of the stream (its `jitter buffer summary` log line),
 * e.g. `{ received: 20, concealed: 5, first_play_ms: 60, delay_ms: 242.6, max_packet_ms: 182.5, ... }`.
 */
export function jitterSummary(stderr: string): Record<string, number> {
  const line = stderr.split("\n").find((l) =>
    l.includes("jitter buffer summary") || l.includes("record buffer summary")
  );
  if (!line) throw new Error(`no jitter buffer summary in the receiver's log:\n${stderr.slice(-2000)}`);
  const out: Record<string, number> = {};
  for (const m of line.matchAll(/ (\w+)=(-?[\d.]+)/g)) out[m[1]] = Number(m[2]);
  return out;
}

/**
 * Asserts what an external sender → our `rtp-receive` run must show: the receiver ended by its 3 s
 * timeout, the WAV is finalized 8 kHz mono and holds `reference` sample-exact, and the jitter buffer
 * lost, trimmed and concealed nothing inside the stream (only its 100 ms after the end), with packets of
 * `maxPacketMs`.
 */
export async function assertReceivedExact(
  rx: ProcessResult,
  out: string,
  reference: Int16Array,
  label: string,
  maxPacketMs: number,
): Promise<void> {
  if (rx.code !== 0) throw new Error(`receiver failed (${rx.code}): ${outputTail(rx)}`);
  if (!/no datagram for 3 s: ending/.test(rx.stderr)) throw new Error(`receiver did not end by its timeout`);
  const wav = await readWav(out);
  if (wav.sampleRate !== 8000 || wav.channels !== 1 || !wav.finalized) {
    throw new Error(`${label}: WAV is ${wav.sampleRate} Hz, ${wav.channels} ch, finalized ${wav.finalized}`);
  }
  const record = /\[JITTER-BUFFER\] mode record/.test(rx.stderr);
  // A recording follows the sender's timeline: exactly what was sent, nothing concealed at the end either.
  const c = assertSampleExact(reference, wav.samples, { concealTail: record ? 0 : 800, label });
  const jb = jitterSummary(rx.stderr);
  console.log(`${label}: jitter buffer ${JSON.stringify(jb)}, leading silence ${c.extraHead} samples`);
  const bad = record
    ? [jb.late, jb.lost, jb.concealed_samples, jb.duplicate, jb.foreign].some((v) => v !== 0) ||
      jb.max_packet_ms !== maxPacketMs
    : [jb.late, jb.trimmed, jb.lost, jb.invalid].some((v) => v !== 0) || jb.concealed > 5 ||
      jb.max_packet_ms !== maxPacketMs;
  if (bad) throw new Error(`${label}: jitter buffer ${JSON.stringify(jb)} (expected max_packet_ms ${maxPacketMs})`);
}
