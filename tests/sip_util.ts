/**
 * Helpers for the SIP interop, negative-path and call-rate tests: free ports,
 * our callee and caller as bounded subprocesses (waiting for the callee's
 * `[SIP] listening on udp HOST:PORT` line instead of sleeping), sipp and
 * baresip runs with their statistics, a scripted SIP peer and RTP sender on a
 * raw UDP socket, and a seeded lossy UDP relay.
 *
 * Audio helpers (WAV, alignment, sample-exact comparison, bounded processes)
 * come from `media_util.ts`; G.711 bytes are made with `alawmulaw`, the
 * project's reference, never with the stages under test.
 *
 * @module
 */
// Default import only: named imports type-check but are undefined at run time in Deno (DESIGN).
import alawmulaw from "alawmulaw";
import {
  type BoundedProcess,
  type G711Codec,
  outputTail,
  type ProcessResult,
  readyOrKilled,
  runBounded,
  SKIP_INTEROP,
  sleep,
  spawnBounded,
  spawnCli,
  speechLikeSignal,
  writeWav,
} from "./media_util.ts";
import {
  createRequest,
  createResponse,
  getCSeq,
  parseMessage,
  serializeMessage,
  type SipMessage,
  type SipRequest,
  type SipResponse,
} from "../plugins/sip/message.ts";
import { repoPath } from "./util.ts";
import { seededRandom } from "../core/random.ts";

export {
  type Alignment,
  assertSampleExact,
  type BoundedProcess,
  compareAligned,
  type Comparison,
  type ExactOptions,
  findAlignment,
  type G711Codec,
  outputTail,
  type ProcessResult,
  readWav,
  SKIP_INTEROP,
  sleep,
  spawnBounded,
  type SpawnOptions,
  type WavAudio,
  writeWav,
} from "./media_util.ts";
export type { SipHeaders, SipMessage, SipRequest, SipResponse } from "../plugins/sip/message.ts";

/** A UDP address. */
export interface UdpAddress {
  /** Host (IP literal). */
  hostname: string;
  /** Port. */
  port: number;
}

// ---------------------------------------------------------------------------
// Ports and tools

/**
 * A UDP port on `hostname` that was free a moment ago (bound to port 0, then
 * closed). Another process may take it in between; the kernel hands ephemeral
 * ports out in a rotating order, so parallel tests practically never collide.
 *
 * @example
 * ```ts
 * const port = freeUdpPort(); // e.g. 41873
 * ```
 */
export function freeUdpPort(hostname = "127.0.0.1"): number {
  const s = Deno.listenDatagram({ transport: "udp", hostname, port: 0 });
  const port = (s.addr as Deno.NetAddr).port;
  s.close();
  return port;
}

/**
 * A free even UDP port P with P+1 … P+count-1 free too, on both UDP and TCP
 * (baresip binds its SIP port on TCP as well; sipp's `-rtp_echo` also uses
 * P+2 for video), for tools that take one port and use the next ones.
 *
 * @example
 * ```ts
 * const rtp = freePortPair(); // RTP on rtp, RTCP on rtp + 1
 * ```
 */
export function freePortPair(hostname = "127.0.0.1", count = 2): number {
  for (let attempt = 0; attempt < 200; attempt++) {
    const port = freeUdpPort(hostname);
    if (port % 2 !== 0 || port + count > 65536) continue;
    const held: { close(): void }[] = [];
    try {
      for (let i = 0; i < count; i++) {
        if (i > 0) held.push(Deno.listenDatagram({ transport: "udp", hostname, port: port + i }));
        held.push(Deno.listen({ hostname, port: port + i }));
      }
      return port;
    } catch {
      // taken: try another
    } finally {
      for (const h of held) h.close();
    }
  }
  throw new Error("no free port range found");
}

/** Debian package of each external tool. */
const PACKAGES: Record<string, string> = { sipp: "sip-tester", baresip: "baresip" };

/** The message for a missing tool: what to install and how. */
export function installHint(tool: string): string {
  return `install the Debian package ${PACKAGES[tool] ?? tool}: run scripts/setup.sh ` +
    "(`bash scripts/setup.sh` as root, or `deno task setup`), or set VOXPIPE_SKIP_INTEROP=1 to skip the interop tests";
}

/**
 * Fails (throws) with an install hint when `tool` (`sipp` or `baresip`) cannot
 * be run. Interop tests call this first; they are ignored instead only when
 * `VOXPIPE_SKIP_INTEROP=1`.
 *
 * @example
 * ```ts
 * await requireTool("sipp"); // throws "sipp is not installed: install the Debian package sip-tester: run scripts/setup.sh ..."
 * ```
 */
export async function requireTool(tool: "sipp" | "baresip"): Promise<void> {
  // `sipp -v` and `baresip -h` print their version; their exit codes are not 0 in every version.
  let r: ProcessResult;
  try {
    r = await runBounded(tool, tool === "sipp" ? ["-v"] : ["-h"], { timeoutMs: 20_000 });
  } catch (e) {
    const why = e instanceof Error ? e.message : String(e);
    // spawnBounded says "not installed" itself (with a generic package name): ours names the Debian package.
    throw new Error(
      `${tool} is not installed: ${installHint(tool)}${why.includes("not installed") ? "" : ` (${why})`}`,
    );
  }
  const text = r.stdout + r.stderr;
  const ok = tool === "sipp" ? /SIPp v\d/.test(text) : /baresip v\d/.test(text);
  if (!ok) throw new Error(`${tool} does not run properly (${outputTail(r, 500)}): ${installHint(tool)}`);
}

/** `Deno.test` options for an interop test: ignored only when `VOXPIPE_SKIP_INTEROP=1`. */
export const interop: { ignore: boolean; sanitizeResources: boolean; sanitizeOps: boolean } = {
  ignore: SKIP_INTEROP,
  sanitizeResources: false,
  sanitizeOps: false,
};

// ---------------------------------------------------------------------------
// Test audio

/** G.711-representable test audio: the bytes on the wire and what any decoder makes of them. */
export interface G711Audio {
  /** The codec. */
  codec: G711Codec;
  /** Encoded bytes, one per sample (8 kHz). */
  bytes: Uint8Array;
  /** Their decoding: audio every G.711 encoder maps back to `bytes`. */
  samples: Int16Array;
}

/**
 * A deterministic speech-like signal encoded with `alawmulaw`. The length is
 * rounded up to whole 20 ms packets (160 samples). µ-law's two zero codes (0x7F,
 * 0xFF) are replaced by 0xFE (+8): decoders disagree on them (alawmulaw gives 0,
 * baresip gives 2).
 *
 * @example
 * ```ts
 * const a = g711Audio("PCMU", 2.5); // a.bytes.length === 20000
 * ```
 */
export function g711Audio(codec: G711Codec, seconds = 2.5, seed = 7): G711Audio {
  const n = Math.ceil((seconds * 8000) / 160) * 160;
  const src = speechLikeSignal({ seconds: n / 8000, seed });
  const law = codec === "PCMU" ? alawmulaw.mulaw : alawmulaw.alaw;
  const bytes = new Uint8Array(n);
  const samples = new Int16Array(n);
  for (let i = 0; i < n; i++) {
    let b = law.encodeSample(src[i]) & 0xff;
    if (codec === "PCMU" && (b & 0x7f) === 0x7f) b = 0xfe;
    bytes[i] = b;
    samples[i] = law.decodeSample(b);
  }
  return { codec, bytes, samples };
}

/** Writes `audio.samples` as an 8 kHz mono 16-bit WAV (input for our caller or for baresip). */
export async function writeG711Wav(path: string, audio: G711Audio): Promise<void> {
  await writeWav(path, audio.samples, 8000);
}

// ---------------------------------------------------------------------------
// Our CLI

/** Options of {@linkcode spawnCallee}. */
export interface CalleeOptions {
  /** SIP port (default: a free one). */
  port?: number;
  /** `record` parameter (a path; may contain `${call.id}`). */
  record: string;
  /** Exit after this many calls (default 1). */
  calls?: number;
  /** Seconds of ringing before answering (default 0). */
  answerAfter?: number;
  /** Seconds without RTP before the callee hangs up (default 10). */
  rtpTimeout?: number;
  /** Codecs accepted (default `PCMU,PCMA`). */
  codecs?: string;
  /** Pipeline file (default `pipelines/callee.json`). */
  pipeline?: string;
  /** More CLI arguments (e.g. `--log-level debug`). */
  extra?: string[];
  /** Time bound of the process in ms (default 60 s). */
  timeoutMs?: number;
  /** Extra environment variables (e.g. the SIP password). */
  env?: Record<string, string>;
}

/** A callee that is listening. */
export interface RunningCallee {
  /** The process. */
  proc: BoundedProcess;
  /** Its SIP port. */
  port: number;
  /** `sip:bob@127.0.0.1:PORT`. */
  uri: string;
}

/** Matches the line the callee prints once its SIP socket is bound. */
export const LISTENING_RE: RegExp = /\[SIP\] listening on udp 127\.0\.0\.1:(\d+)/;

/**
 * Starts `pipelines/callee.json` through the CLI and resolves once it logs
 * `[SIP] listening on udp 127.0.0.1:PORT`. Killed (and the error rethrown) if
 * it does not.
 */
export async function spawnCallee(o: CalleeOptions): Promise<RunningCallee> {
  const port = o.port ?? freeUdpPort();
  const proc = spawnCli([
    "--pipeline",
    o.pipeline ?? "pipelines/callee.json",
    "--set",
    `port=${port}`,
    "--set",
    `calls=${o.calls ?? 1}`,
    "--set",
    `record=${o.record}`,
    "--set",
    `answer_after=${o.answerAfter ?? 0}`,
    "--set",
    `rtp_timeout=${o.rtpTimeout ?? 10}`,
    "--set",
    `codecs=${o.codecs ?? "PCMU,PCMA"}`,
    ...(o.extra ?? []),
  ], { timeoutMs: o.timeoutMs ?? 60_000, env: o.env });
  await readyOrKilled(proc, () => proc.waitForOutput(LISTENING_RE, 30_000));
  return { proc, port, uri: `sip:bob@127.0.0.1:${port}` };
}

/** Options of {@linkcode spawnCaller}. */
export interface CallerOptions {
  /** SIP URI to call. */
  to: string;
  /** Audio file to send. */
  file: string;
  /** Codecs offered (default `PCMU,PCMA`). */
  codecs?: string;
  /** Seconds before CANCEL (default 30). */
  ringTimeout?: number;
  /** Local SIP port (default 0: any). */
  port?: number;
  /** More CLI arguments. */
  extra?: string[];
  /** Time bound in ms (default 60 s). */
  timeoutMs?: number;
  /** Extra environment variables (e.g. the SIP password). */
  env?: Record<string, string>;
}

/** Starts `pipelines/caller.json` through the CLI. */
export function spawnCaller(o: CallerOptions): BoundedProcess {
  return spawnCli([
    "--pipeline",
    "pipelines/caller.json",
    "--set",
    `to=${o.to}`,
    "--set",
    `file=${o.file}`,
    "--set",
    `port=${o.port ?? 0}`,
    "--set",
    `codecs=${o.codecs ?? "PCMU,PCMA"}`,
    "--set",
    `ring_timeout=${o.ringTimeout ?? 30}`,
    ...(o.extra ?? []),
  ], { timeoutMs: o.timeoutMs ?? 60_000, env: o.env });
}

/**
 * The processes a test started, so that its `finally` can stop whatever is
 * still running when an assertion failed half-way (SIGKILL, then wait).
 *
 * @example
 * ```ts
 * const procs = new ProcessGroup();
 * try {
 *   const caller = procs.add(spawnCaller({ to, file }));
 *   // ...
 * } finally {
 *   await procs.stop();
 * }
 * ```
 */
export class ProcessGroup {
  readonly #procs: BoundedProcess[] = [];

  /** Tracks `p`; returns it. */
  add<T extends BoundedProcess>(p: T): T {
    this.#procs.push(p);
    return p;
  }

  /** Tracks a callee's process; returns the callee. */
  trackCallee(c: RunningCallee): RunningCallee {
    this.#procs.push(c.proc);
    return c;
  }

  /** Kills every tracked process that has not ended and waits for all of them. */
  async stop(): Promise<void> {
    for (const p of this.#procs) p.kill("SIGKILL");
    await Promise.allSettled(this.#procs.map((p) => p.result));
  }
}

/** The one-line reason our CLI prints on failure (`voxpipe: ...`), or undefined. */
export function failureLine(stderr: string): string | undefined {
  return stderr.split("\n").reverse().find((l) => l.startsWith("voxpipe: "));
}

/** Names of the files in `dir` that start with `prefix` and end with `.wav`, sorted. */
export function wavFiles(dir: string, prefix = ""): string[] {
  return [...Deno.readDirSync(dir)]
    .filter((e) => e.isFile && e.name.startsWith(prefix) && e.name.endsWith(".wav"))
    .map((e) => e.name)
    .sort();
}

// ---------------------------------------------------------------------------
// sipp

/** Path of one of our sipp scenario files. */
export function scenarioPath(name: string): string {
  return repoPath(`tests/fixtures/sipp/${name}`);
}

/** Options of {@linkcode sippArgs}: one sipp UAC or UAS command line. */
export interface SippArgsOptions {
  /** Scenario file (`-sf FILE`). Give this or `builtin`, not both. */
  scenario?: string;
  /** sipp's built-in scenario (`-sn uac` or `-sn uas`). Give this or `scenario`, not both. */
  builtin?: "uac" | "uas";
  /** Where the calls go (`HOST:PORT`, the last argument); a UAS has none. */
  target?: string;
  /** Local SIP address (`-i`; default 127.0.0.1). */
  local?: string;
  /** Local media address (`-mi`; default 127.0.0.1). */
  mediaIp?: string;
  /** Local SIP port (`-p`; default a free UDP port on `local`). */
  port?: number;
  /**
   * First local media port (`-mp`; default {@linkcode freePortPair} on `mediaIp`: two ports). sipp binds it and the
   * next ones (video at +2, `rtp_stream` a pair per call): pass `freePortPair(ip, count)` when it needs more.
   */
  mediaPort?: number;
  /** Echo the RTP it receives back to its sender (`-rtp_echo`). */
  rtpEcho?: boolean;
  /** User part of the request URI (`-s`). */
  service?: string;
  /** Stop after this many calls (`-m`). */
  calls?: number;
  /** At most this many calls at once (`-l`). */
  limit?: number;
  /** New calls per `ratePeriodMs` (`-r`). */
  rate?: number;
  /** The period of `rate`, ms (`-rp`; sipp's default 1000). */
  ratePeriodMs?: number;
  /** Length of the scenario's pauses that give none, ms (`-d`): how long a call stays up after its ACK. */
  pauseMs?: number;
  /**
   * Statistics: `-nostdin -trace_stat -stf FILE`, and `-fd PERIOD` (seconds between rows) when `periodS` is given.
   * (For {@linkcode spawnSipp}, which adds its own, leave it out.)
   */
  stats?: { file: string; periodS?: number };
  /** More arguments, placed after the others and before `stats` and `target` (e.g. `-trace_screen`). */
  extra?: string[];
}

/**
 * The argument list of a sipp UAC or UAS, in one fixed order: the scenario, `-i`, `-mi`, `-p`, `-mp`,
 * `-rtp_echo`, `-s`, `-m`, `-l`, `-r`, `-rp`, `-d`, `extra`, the statistics, the target (sipp reads its options
 * in any order and takes its one argument without a leading `-` as the remote host). Each option is written only
 * when given, except the addresses and ports, which have defaults.
 *
 * Throws when neither or both of `scenario` and `builtin` are given, or a number is not finite (a bench option that
 * did not parse), naming the option.
 *
 * @example
 * ```ts
 * sippArgs({ scenario: "uac.xml", port: 5070, mediaPort: 6000, service: "bob", calls: 1, target: "127.0.0.1:5062" });
 * // ["-sf", "uac.xml", "-i", "127.0.0.1", "-mi", "127.0.0.1", "-p", "5070", "-mp", "6000",
 * //  "-s", "bob", "-m", "1", "127.0.0.1:5062"]
 * ```
 */
export function sippArgs(o: SippArgsOptions): string[] {
  if ((o.scenario === undefined) === (o.builtin === undefined)) {
    throw new Error("sippArgs: give either scenario (a file, -sf) or builtin (uac or uas, -sn), exactly one");
  }
  const num = (name: keyof SippArgsOptions, flag: string): string[] => {
    const v = o[name];
    if (v === undefined) return [];
    if (typeof v !== "number" || !Number.isFinite(v)) {
      throw new Error(`sippArgs: ${name} (${flag}) must be a finite number, got ${JSON.stringify(v)}`);
    }
    return [flag, String(v)];
  };
  const local = o.local ?? "127.0.0.1", mediaIp = o.mediaIp ?? "127.0.0.1";
  const args = o.scenario !== undefined ? ["-sf", o.scenario] : ["-sn", o.builtin as string];
  args.push("-i", local, "-mi", mediaIp);
  args.push(...(o.port === undefined ? ["-p", String(freeUdpPort(local))] : num("port", "-p")));
  args.push(...(o.mediaPort === undefined ? ["-mp", String(freePortPair(mediaIp))] : num("mediaPort", "-mp")));
  if (o.rtpEcho) args.push("-rtp_echo");
  if (o.service !== undefined) args.push("-s", o.service);
  args.push(
    ...num("calls", "-m"),
    ...num("limit", "-l"),
    ...num("rate", "-r"),
    ...num("ratePeriodMs", "-rp"),
    ...num("pauseMs", "-d"),
    ...(o.extra ?? []),
  );
  if (o.stats) args.push(...statsArgs(o.stats.file, o.stats.periodS));
  if (o.target !== undefined) args.push(o.target);
  return args;
}

/** `-nostdin -trace_stat -stf FILE [-fd PERIOD]`: sipp without a keyboard, writing its statistics to FILE. */
function statsArgs(file: string, periodS?: number): string[] {
  return ["-nostdin", "-trace_stat", "-stf", file, ...(periodS === undefined ? [] : ["-fd", String(periodS)])];
}

/** Options of {@linkcode spawnSipp}. */
export interface SippOptions {
  /** Working directory: sipp writes its trace files here and opens relative media files from here. */
  cwd: string;
  /** Time bound in ms. */
  timeoutMs: number;
  /** Name of the statistics CSV (`-trace_stat -stf NAME`; default `stats.csv`). */
  statsFile?: string;
}

/**
 * Starts sipp with `args` (from {@linkcode sippArgs}, without its `stats`) plus
 * `-nostdin -trace_stat -stf <stats> -fd 1 -trace_err`, bounded in time. The
 * statistics are read afterwards with {@linkcode readSippStats}.
 */
export function spawnSipp(args: string[], o: SippOptions): BoundedProcess {
  return spawnBounded("sipp", [...args, ...statsArgs(o.statsFile ?? "stats.csv", 1), "-trace_err"], {
    cwd: o.cwd,
    timeoutMs: o.timeoutMs,
    stopSignal: "SIGINT",
  });
}

/**
 * The last row of a sipp `-trace_stat` CSV as a map from column name (e.g.
 * `SuccessfulCall(C)`, `FailedCall(C)`, `Retransmissions(C)`) to value.
 */
export async function readSippStats(path: string): Promise<Record<string, string>> {
  const lines = (await Deno.readTextFile(path)).split("\n").map((l) => l.trim()).filter((l) => l.length > 0);
  if (lines.length < 2) throw new Error(`${path}: no statistics row`);
  const head = lines[0].split(";");
  const last = lines[lines.length - 1].split(";");
  const out: Record<string, string> = {};
  head.forEach((name, i) => {
    if (name) out[name] = last[i] ?? "";
  });
  return out;
}

/** A numeric counter of {@linkcode readSippStats}' result (throws when absent). */
export function sippCounter(stats: Record<string, string>, name: string): number {
  const v = stats[name];
  if (v === undefined || v === "" || !Number.isFinite(Number(v))) {
    throw new Error(`sipp statistics have no numeric "${name}"`);
  }
  return Number(v);
}

/** Contents of sipp's `*_errors.log` files in `dir` (unexpected messages and other errors), "" when none. */
export function sippErrors(dir: string): string {
  let text = "";
  for (const e of Deno.readDirSync(dir)) {
    if (e.isFile && e.name.endsWith("_errors.log")) text += Deno.readTextFileSync(`${dir}/${e.name}`);
  }
  return text.trim();
}

// ---------------------------------------------------------------------------
// baresip

/** Options of {@linkcode writeBaresipConfig}. */
export interface BaresipConfig {
  /** SIP port to listen on (UDP and TCP, 127.0.0.1). */
  sipPort: number;
  /** First port of its RTP range (two ports: RTP and RTCP). */
  rtpPort: number;
  /** User part of its account (default `alice`). */
  user?: string;
  /** `audio_source` value: `aufile,/path.wav` or `ausine,440`. */
  source: string;
  /** Directory where the `sndfile` module dumps what it sent and received (`dump-*-enc.wav`, `dump-*-dec.wav`). */
  dumpDir: string;
}

/**
 * Writes baresip's `config` and `accounts` into `dir` from the templates in
 * `tests/fixtures/baresip/` (`{{NAME}}` placeholders).
 */
export async function writeBaresipConfig(dir: string, c: BaresipConfig): Promise<void> {
  const values: Record<string, string> = {
    SIP_PORT: String(c.sipPort),
    RTP_MIN: String(c.rtpPort),
    RTP_MAX: String(c.rtpPort + 1),
    USER: c.user ?? "alice",
    SOURCE: c.source,
    DUMP_DIR: c.dumpDir,
    MODULE_PATH: "/usr/lib/baresip/modules",
  };
  const fill = (text: string) =>
    text.replace(/\{\{([A-Z_]+)\}\}/g, (_, k: string) => {
      if (!(k in values)) throw new Error(`baresip template: unknown placeholder {{${k}}}`);
      return values[k];
    });
  for (const name of ["config", "accounts"]) {
    const tpl = await Deno.readTextFile(repoPath(`tests/fixtures/baresip/${name}.template`));
    await Deno.writeTextFile(`${dir}/${name}`, fill(tpl));
  }
}

/**
 * Starts baresip headless with the config directory `dir`, bound to 127.0.0.1
 * (`-n`), quitting after `quitAfter` seconds at the latest (`-t`), running
 * `commands` at start (`-e`, e.g. `/dial sip:...`).
 */
export function spawnBaresip(
  dir: string,
  o: { commands?: string[]; quitAfter: number; timeoutMs: number },
): BoundedProcess {
  const args = ["-f", dir, "-n", "127.0.0.1", "-t", String(o.quitAfter)];
  for (const c of o.commands ?? []) args.push("-e", c);
  return spawnBounded("baresip", args, { timeoutMs: o.timeoutMs, stopSignal: "SIGINT" });
}

/** baresip's console output without its status-line noise (carriage returns and `[0:00:01] audio=...` ticks). */
export function cleanBaresipOutput(text: string): string {
  // deno-lint-ignore no-control-regex -- strip terminal colour codes and NULs
  return text.replace(/\x1b\[[0-9;]*m/g, "").replace(/\x00/g, "").replace(/\r/g, "\n")
    .split("\n").filter((l) => !/^\s*\[\d+:\d\d:\d\d\]\s+audio=/.test(l) && l.trim() !== "").join("\n");
}

// ---------------------------------------------------------------------------
// A scripted SIP peer

/** One datagram a {@linkcode SipPeer} received. */
export interface Received {
  /** The parsed message (undefined when it did not parse). */
  msg?: SipMessage;
  /** Raw bytes. */
  raw: Uint8Array;
  /** Sender. */
  from: UdpAddress;
}

/**
 * A SIP endpoint scripted step by step on a plain UDP socket: it sends exactly
 * what the test builds and hands over what it receives, so a test can play a
 * misbehaving peer (never answering, never sending BYE, sending garbage).
 *
 * @example
 * ```ts
 * const peer = SipPeer.open();
 * const inv = await peer.expectRequest("INVITE", 5000);
 * await peer.respond(inv.msg as SipRequest, 486, { toTag: "x1" });
 * await peer.expectRequest("ACK", 5000);
 * peer.close();
 * ```
 */
export class SipPeer {
  /** Everything received, in order. */
  readonly received: Received[] = [];
  readonly #socket: Deno.DatagramConn;
  readonly #taken = new Set<Received>();
  readonly #waiters = new Set<() => void>();
  readonly #done: Promise<void>;
  #closed = false;

  private constructor(socket: Deno.DatagramConn) {
    this.#socket = socket;
    this.#done = (async () => {
      try {
        for await (const [data, addr] of socket) {
          const a = addr as Deno.NetAddr;
          let msg: SipMessage | undefined;
          try {
            msg = parseMessage(data);
          } catch {
            msg = undefined;
          }
          this.received.push({ msg, raw: data, from: { hostname: a.hostname, port: a.port } });
          for (const w of [...this.#waiters]) w();
        }
      } catch {
        // socket closed
      }
    })();
  }

  /** Binds a peer on `hostname`, any free port. */
  static open(hostname = "127.0.0.1", port = 0): SipPeer {
    return new SipPeer(Deno.listenDatagram({ transport: "udp", hostname, port }));
  }

  /** The bound address. */
  get address(): UdpAddress {
    const a = this.#socket.addr as Deno.NetAddr;
    return { hostname: a.hostname, port: a.port };
  }

  /** `host:port` of the socket. */
  get hostPort(): string {
    return `${this.address.hostname}:${this.address.port}`;
  }

  /** Sends a message (or raw text/bytes) to `to`. */
  async send(msg: SipMessage | string | Uint8Array, to: UdpAddress): Promise<void> {
    const bytes = typeof msg === "string"
      ? new TextEncoder().encode(msg)
      : msg instanceof Uint8Array
      ? msg
      : serializeMessage(msg);
    await this.#socket.send(bytes, { transport: "udp", hostname: to.hostname, port: to.port });
  }

  /** Sends a response to a request back where its top Via's received/rport (or sender) says: here, `to`. */
  async respond(
    req: SipRequest,
    status: number,
    to: UdpAddress,
    init: { toTag?: string; reason?: string; headers?: [string, string][]; body?: string } = {},
  ): Promise<SipResponse> {
    const headers: [string, string][] = [...(init.headers ?? [])];
    if (init.body !== undefined) headers.push(["Content-Type", "application/sdp"]);
    const res = createResponse(req, status, init.reason, { toTag: init.toTag, headers, body: init.body });
    await this.send(res, to);
    return res;
  }

  /**
   * Resolves with the first received datagram (not taken before) that `match`
   * accepts, and marks it taken; rejects after `timeoutMs` with what was received.
   */
  expect(match: (r: Received) => boolean, timeoutMs: number, what: string): Promise<Received> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const hit = this.received.find((r) => !this.#taken.has(r) && match(r));
        if (hit) {
          this.#taken.add(hit);
          done();
          resolve(hit);
        }
      };
      const done = () => {
        this.#waiters.delete(check);
        clearTimeout(timer);
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`peer: no ${what} within ${timeoutMs} ms; received:\n${this.summary()}`));
      }, timeoutMs);
      this.#waiters.add(check);
      check();
    });
  }

  /** Waits for a request with this method (optionally only in the dialog of `callId`). */
  async expectRequest(method: string, timeoutMs: number, callId?: string): Promise<Received & { msg: SipRequest }> {
    const r = await this.expect(
      (r) =>
        r.msg?.kind === "request" && r.msg.method === method &&
        (callId === undefined || r.msg.headers.get("Call-ID") === callId),
      timeoutMs,
      `${method} request`,
    );
    return r as Received & { msg: SipRequest };
  }

  /** Waits for a response to `method` with a status accepted by `status` (a number or a predicate). */
  async expectResponse(
    method: string,
    status: number | ((s: number) => boolean),
    timeoutMs: number,
  ): Promise<Received & { msg: SipResponse }> {
    const ok = typeof status === "number" ? (s: number) => s === status : status;
    const r = await this.expect(
      (r) => r.msg?.kind === "response" && getCSeq(r.msg).method === method && ok(r.msg.status),
      timeoutMs,
      `response to ${method} (${typeof status === "number" ? status : "matching"})`,
    );
    return r as Received & { msg: SipResponse };
  }

  /** One line per received datagram, for failure messages. */
  summary(): string {
    return this.received.map((r) => {
      if (!r.msg) return `  (unparseable, ${r.raw.length} bytes) from ${r.from.port}`;
      return r.msg.kind === "request"
        ? `  ${r.msg.method} ${r.msg.uri} (CSeq ${r.msg.headers.get("CSeq")}) from ${r.from.port}`
        : `  ${r.msg.status} ${r.msg.reason} (CSeq ${r.msg.headers.get("CSeq")}) from ${r.from.port}`;
    }).join("\n") || "  nothing";
  }

  /** Closes the socket. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#socket.close();
    } catch { /* closed */ }
    await this.#done;
  }
}

/** Options of {@linkcode buildInvite}. */
export interface InviteInit {
  /** Request-URI and To, e.g. `sip:bob@127.0.0.1:5062`. */
  target: string;
  /** Where the peer listens (Via, Contact, From). */
  local: UdpAddress;
  /** SDP offer. */
  sdp: string;
  /** Call-ID (default: random). */
  callId?: string;
  /** From tag (default: random). */
  fromTag?: string;
}

/** An INVITE built by hand, as a scripted peer sends it. */
export function buildInvite(o: InviteInit): SipRequest {
  const hp = `${o.local.hostname}:${o.local.port}`;
  return createRequest({
    method: "INVITE",
    uri: o.target,
    headers: [
      ["Via", `SIP/2.0/UDP ${hp};branch=z9hG4bK${crypto.randomUUID().replaceAll("-", "")};rport`],
      ["Max-Forwards", "70"],
      ["From", `<sip:peer@${hp}>;tag=${o.fromTag ?? crypto.randomUUID().slice(0, 8)}`],
      ["To", `<${o.target}>`],
      ["Call-ID", o.callId ?? `${crypto.randomUUID()}@peer`],
      ["CSeq", "1 INVITE"],
      ["Contact", `<sip:peer@${hp}>`],
      ["User-Agent", "voxpipe-test-peer"],
      ["Content-Type", "application/sdp"],
    ],
    body: o.sdp,
  });
}

/**
 * A request in the dialog of `invite` after its 2xx `ok` (ACK or BYE), sent to
 * the callee's Contact. ACK reuses the INVITE's CSeq number; BYE takes `cseq`.
 */
export function buildInDialog(
  method: "ACK" | "BYE",
  invite: SipRequest,
  ok: SipResponse,
  local: UdpAddress,
  cseq = 2,
): SipRequest {
  const hp = `${local.hostname}:${local.port}`;
  const contact = /<([^>]+)>/.exec(ok.headers.get("Contact") ?? "")?.[1] ?? invite.uri;
  return createRequest({
    method,
    uri: contact,
    headers: [
      ["Via", `SIP/2.0/UDP ${hp};branch=z9hG4bK${crypto.randomUUID().replaceAll("-", "")};rport`],
      ["Max-Forwards", "70"],
      ["From", invite.headers.get("From")!],
      ["To", ok.headers.get("To")!],
      ["Call-ID", invite.headers.get("Call-ID")!],
      ["CSeq", `${method === "ACK" ? getCSeq(invite).seq : cseq} ${method}`],
      ["User-Agent", "voxpipe-test-peer"],
    ],
  });
}

/** Where a SIP URI's requests go (`sip:user@host:port` → host, port; default port 5060). */
export function uriAddress(uri: string): UdpAddress {
  const m = /^sips?:(?:[^@]*@)?(\[[^\]]+\]|[^:;>]+)(?::(\d+))?/i.exec(uri);
  if (!m) throw new Error(`not a SIP URI: ${uri}`);
  return { hostname: m[1].replace(/^\[|\]$/g, ""), port: m[2] ? Number(m[2]) : 5060 };
}

/** A minimal SDP offer for one audio stream. */
export function sdpOffer(address: string, port: number, codecs: G711Codec[] = ["PCMU"]): string {
  const pts = codecs.map((c) => (c === "PCMU" ? 0 : 8));
  return [
    "v=0",
    `o=peer 1 1 IN IP4 ${address}`,
    "s=peer",
    `c=IN IP4 ${address}`,
    "t=0 0",
    `m=audio ${port} RTP/AVP ${pts.join(" ")}`,
    ...codecs.map((c, i) => `a=rtpmap:${pts[i]} ${c}/8000`),
    "a=ptime:20",
    "a=sendrecv",
    "",
  ].join("\r\n");
}

/** The audio address in an SDP (`c=` and `m=audio` port). */
export function sdpAudioAddress(sdp: string): UdpAddress {
  const c = /^c=IN IP[46] (\S+)/m.exec(sdp);
  const m = /^m=audio (\d+) /m.exec(sdp);
  if (!c || !m) throw new Error(`no audio address in SDP:\n${sdp}`);
  return { hostname: c[1], port: Number(m[1]) };
}

// ---------------------------------------------------------------------------
// RTP

/** Options of {@linkcode sendRtp}. */
export interface RtpSendOptions {
  /** Socket to send from (its port is the one announced in SDP). */
  socket: Deno.DatagramConn;
  /** Destination. */
  to: UdpAddress;
  /** Encoded audio: sent as 160-byte (20 ms) payloads. */
  bytes: Uint8Array;
  /** Payload type (0 PCMU, 8 PCMA). */
  payloadType: number;
  /** SSRC (default 0x5eed0001). */
  ssrc?: number;
  /** Called after each packet with its index; return false to stop early. */
  onPacket?: (index: number) => boolean | void;
}

/**
 * Sends `bytes` as RTP packets of 20 ms, paced in real time on a drift-free
 * schedule (packet n due at start + 20·n ms). Resolves with the number sent.
 */
export async function sendRtp(o: RtpSendOptions): Promise<number> {
  const ssrc = o.ssrc ?? 0x5eed0001;
  const seq0 = 1000, ts0 = 160_000;
  const start = performance.now();
  let n = 0;
  for (let off = 0; off < o.bytes.length; off += 160, n++) {
    const due = start + n * 20;
    const wait = due - performance.now();
    if (wait > 0) await sleep(wait);
    const payload = o.bytes.subarray(off, Math.min(off + 160, o.bytes.length));
    const pkt = new Uint8Array(12 + payload.length);
    const v = new DataView(pkt.buffer);
    pkt[0] = 0x80;
    pkt[1] = (n === 0 ? 0x80 : 0) | (o.payloadType & 0x7f);
    v.setUint16(2, (seq0 + n) & 0xffff);
    v.setUint32(4, (ts0 + n * 160) >>> 0);
    v.setUint32(8, ssrc >>> 0);
    pkt.set(payload, 12);
    await o.socket.send(pkt, { transport: "udp", hostname: o.to.hostname, port: o.to.port });
    if (o.onPacket?.(n) === false) return n + 1;
  }
  return n;
}

// ---------------------------------------------------------------------------
// A lossy UDP relay

/** The seeded PRNG (core/random.ts), re-exported for the tests that use it from here. */
export { seededRandom };

/** Options of {@linkcode LossyRelay}. */
export interface RelayOptions {
  /** Where the relay forwards what the client side sends (the callee's SIP address). */
  server: UdpAddress;
  /** Fraction of datagrams dropped in each direction, 0..1. */
  lossRate: number;
  /** PRNG seed. */
  seed: number;
  /**
   * Labels (`INVITE`, `ACK`, `BYE`, `CANCEL`, or `200 INVITE` / `200 BYE` for responses) whose first
   * copy is always dropped, whatever the PRNG says: every retransmission path is then exercised.
   */
  dropFirst?: string[];
}

/** What went through a {@linkcode LossyRelay}, per direction and label. */
export interface RelayCounts {
  /** Datagrams forwarded. */
  passed: number;
  /** Datagrams dropped. */
  dropped: number;
  /** Per label (`→ INVITE`, `← 200 INVITE`, ...): [passed, dropped]. */
  byLabel: Record<string, [number, number]>;
}

/**
 * A UDP relay for SIP between one client and one server that drops datagrams
 * in both directions (seeded) and rewrites Contact headers so that in-dialog
 * requests (ACK, BYE) also go through it: towards the server our client side
 * is the relay's server-facing socket, towards the client the server is the
 * relay's client-facing socket (what a SIP-aware NAT does). RTP does not go
 * through it.
 */
export class LossyRelay {
  /** Counters. */
  readonly counts: RelayCounts = { passed: 0, dropped: 0, byLabel: {} };
  readonly #front: Deno.DatagramConn;
  readonly #back: Deno.DatagramConn;
  readonly #rand: () => number;
  readonly #opts: RelayOptions;
  readonly #firstSeen = new Set<string>();
  #client?: UdpAddress;
  readonly #loops: Promise<void>[];

  /** Binds both sockets on 127.0.0.1 and starts relaying. */
  constructor(opts: RelayOptions) {
    this.#opts = opts;
    this.#rand = seededRandom(opts.seed);
    this.#front = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
    this.#back = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
    this.#loops = [this.#pump(this.#front, "→"), this.#pump(this.#back, "←")];
  }

  /** The address clients send to (put it in the Request-URI). */
  get address(): UdpAddress {
    return { hostname: "127.0.0.1", port: (this.#front.addr as Deno.NetAddr).port };
  }

  async #pump(sock: Deno.DatagramConn, dir: "→" | "←"): Promise<void> {
    try {
      for await (const [data, addr] of sock) {
        const from = addr as Deno.NetAddr;
        if (dir === "→") this.#client = { hostname: from.hostname, port: from.port };
        const to = dir === "→" ? this.#opts.server : this.#client;
        if (!to) continue;
        const { bytes, label } = this.#rewrite(data, dir);
        const key = `${dir} ${label}`;
        const stat = this.counts.byLabel[key] ??= [0, 0];
        const forced = (this.#opts.dropFirst ?? []).includes(label) && !this.#firstSeen.has(key);
        this.#firstSeen.add(key);
        if (forced || this.#rand() < this.#opts.lossRate) {
          this.counts.dropped++;
          stat[1]++;
          continue;
        }
        this.counts.passed++;
        stat[0]++;
        const out = dir === "→" ? this.#back : this.#front;
        await out.send(bytes, { transport: "udp", hostname: to.hostname, port: to.port }).catch(() => {});
      }
    } catch {
      // closed
    }
  }

  /** Rewrites Contact to the relay socket facing the receiver; labels the datagram. */
  #rewrite(data: Uint8Array, dir: "→" | "←"): { bytes: Uint8Array; label: string } {
    let msg: SipMessage;
    try {
      msg = parseMessage(data);
    } catch {
      return { bytes: data, label: "garbage" };
    }
    const label = msg.kind === "request" ? msg.method : `${msg.status} ${getCSeq(msg).method}`;
    const contact = msg.headers.get("Contact");
    if (contact === undefined) return { bytes: data, label };
    // Towards the server, the client is reachable at the back socket; towards the client, the server at the front one.
    const relay = (dir === "→" ? this.#back : this.#front).addr as Deno.NetAddr;
    const rewritten = contact.replace(/@[^>;]+/, `@127.0.0.1:${relay.port}`);
    msg.headers.set("Contact", rewritten);
    return { bytes: serializeMessage(msg), label };
  }

  /** Closes both sockets. */
  async close(): Promise<void> {
    for (const s of [this.#front, this.#back]) {
      try {
        s.close();
      } catch { /* closed */ }
    }
    await Promise.all(this.#loops);
  }
}
