/**
 * Choosing the fast datagram path (`media_loop.ts`): the thread's
 * {@linkcode MediaLoop}, a network that falls back to `Deno.listenDatagram`
 * ({@linkcode udpNetwork}) where FFI cannot run, and the `VOXPIPE_NET`
 * environment variable the CLI reads (unset: the fast path where it can run).
 *
 * ```ts
 * const net = createFastNetwork(); // FFI sockets on this thread's MediaLoop, or udpNetwork with a warning
 * const { net, clock } = mediaFromEnv(); // the loop's network and clock where FFI runs; VOXPIPE_NET=deno: Deno's
 * ```
 *
 * @module
 */
import type { Clock } from "../clock_types.ts";
import { envVar } from "../env.ts";
import type { Network } from "./datagram.ts";
import { fastPathProblem, type PlatformFacts, platformProblem } from "./_libc.ts";
import { PACER_MAX_LEAD_MS, PACER_MAX_SPIN_MS, PACER_MIN_LEAD_MS, pacerProblem } from "./_pacer.ts";
import { MediaLoop, type MediaLoopOptions } from "./media_loop.ts";
import { udpNetwork } from "./udp.ts";

export type { PlatformFacts };

/**
 * Why the fast datagram path's struct layouts do not fit `platform`, or
 * undefined when they do: only x86_64 Linux is supported.
 *
 * @example
 * ```ts
 * fastUdpPlatformProblem({ os: "linux", arch: "aarch64" }); // "the FFI datagram path is written for x86_64 Linux only ..."
 * ```
 */
export function fastUdpPlatformProblem(platform: PlatformFacts): string | undefined {
  return platformProblem(platform);
}

let threadLoop: MediaLoop | undefined;

/**
 * Why the fast datagram path cannot run in this process (not x86_64 Linux, no
 * `ffi` permission, the C library does not load), or undefined when it can.
 * Never prompts for a permission.
 *
 * @example
 * ```ts
 * const why = fastUdpUnavailable();
 * if (why) console.warn(`using Deno.listenDatagram: ${why}`);
 * ```
 */
export function fastUdpUnavailable(): string | undefined {
  return fastPathProblem();
}

/**
 * This thread's {@linkcode MediaLoop}, created on first use with `opts` (a
 * worker gets its own). Throws the reason when the fast path cannot run here.
 *
 * @example
 * ```ts
 * const loop = defaultMediaLoop();
 * const session = new Session({ id: "call-1", clock: loop.clock, net: loop.network });
 * ```
 */
export function defaultMediaLoop(opts?: MediaLoopOptions): MediaLoop {
  if (!threadLoop || threadLoop.closed) threadLoop = new MediaLoop(opts);
  return threadLoop;
}

/** Options of {@linkcode createFastNetwork}. */
export interface FastNetworkOptions {
  /** The loop to bind on (default: {@linkcode defaultMediaLoop}). */
  loop?: MediaLoop;
  /**
   * Told why the fast path cannot run, when {@linkcode udpNetwork} is returned
   * instead (default: one `console.warn` per process).
   */
  onFallback?: (reason: string) => void;
}

let warned = false;

/**
 * The fast network (FFI sockets on a {@linkcode MediaLoop}) where it can run,
 * else {@linkcode udpNetwork} (`Deno.listenDatagram`), saying why through
 * `onFallback`.
 *
 * @example
 * ```ts
 * const net = createFastNetwork({ onFallback: (why) => log.warn(`fast UDP off: ${why}`) });
 * const sock = net.bind("0.0.0.0", 5060);
 * ```
 */
export function createFastNetwork(opts: FastNetworkOptions = {}): Network {
  if (opts.loop) return opts.loop.network;
  const why = fastPathProblem();
  if (why === undefined) return defaultMediaLoop().network;
  const tell = opts.onFallback ?? ((reason: string) => {
    if (!warned) console.warn(`voxpipe: fast UDP unavailable, using Deno.listenDatagram: ${reason}`);
    warned = true;
  });
  tell(why);
  return udpNetwork;
}

/** What {@linkcode mediaFromEnv} chose. */
export interface MediaChoice {
  /** The network to bind on; undefined: the default (`udpNetwork`). */
  net?: Network;
  /** The media clock; undefined: the default (`mediaClock()`). */
  clock?: Clock;
  /** One line saying what was chosen, and why when the fast path was asked for and is not available. */
  description: string;
  /** Set when `fast` was asked for but cannot run here (the defaults are used). */
  fallback?: string;
}

/**
 * Reads the `VOXPIPE_NET` environment variable. Unset or empty (the default)
 * selects this thread's {@linkcode MediaLoop} (its network and its clock:
 * sockets, chains and pacing on one loop) where the fast path can run, and
 * otherwise `Deno.listenDatagram` and the process media clock, its
 * description saying why. `fast` asks for the loop: where it cannot run, the
 * result's `fallback` gives the reason (the CLI warns). `deno` keeps
 * `Deno.listenDatagram` and the process media clock. Anything else is an
 * error saying what is accepted. Without the `env` permission it is unset.
 *
 * `VOXPIPE_SPIN_MS` (0..2, default 0) sets the loop's `spinMs`: each fine wait spins the last that many ms before a
 * send instead of sleeping through them, within the loop's default `spinBudget` (half a core). It applies to the fast
 * path only; set with `VOXPIPE_NET=deno`, unset where the fast path cannot run, or not a number in range, it is an
 * error saying so.
 *
 * `VOXPIPE_PACER_LEAD_MS` (0.5..50; unset or 0: off) turns on the loop's native pacer (see
 * `MediaLoopOptions.pacer`): a paced `udp-sink` hands each packet to a thread of its own that many ms before the
 * packet is due, and the thread sends it at its due time. `VOXPIPE_PACER_SPIN_MS` (0..2, default
 * {@linkcode PACER_SPIN_MS}) is how long before a due time that thread spins instead of sleeping, within
 * `VOXPIPE_PACER_BUDGET` (0.05..1, default {@linkcode PACER_SPIN_BUDGET}) of a core. They need the fast path (not
 * `VOXPIPE_NET=deno`) and the library built by `scripts/setup.sh`; otherwise, or out of range, they are an error
 * saying so.
 *
 * @param value the setting (default: `Deno.env.get("VOXPIPE_NET")`)
 * @param spin the `VOXPIPE_SPIN_MS` setting (default: `Deno.env.get("VOXPIPE_SPIN_MS")`)
 * @param pacer the `VOXPIPE_PACER_LEAD_MS`, `VOXPIPE_PACER_SPIN_MS` and `VOXPIPE_PACER_BUDGET` settings (default: from
 *   the environment)
 *
 * @example
 * ```ts
 * const media = mediaFromEnv(); // deno run -A mod.ts --pipeline ... (VOXPIPE_NET=deno for Deno.listenDatagram)
 * const runner = await PipelineRunner.load(file, { registry, net: media.net, clock: media.clock });
 * ```
 */
export function mediaFromEnv(
  value?: string,
  spin?: string,
  pacer?: { leadMs?: string; spinMs?: string; budget?: string },
): MediaChoice {
  const v = value ?? envVar("VOXPIPE_NET");
  const s = spin ?? envVar("VOXPIPE_SPIN_MS");
  const fromEnv = (key: "leadMs" | "spinMs" | "budget", name: string) => pacer ? pacer[key] : envVar(name);
  const lead = numberSetting("VOXPIPE_PACER_LEAD_MS", fromEnv("leadMs", "VOXPIPE_PACER_LEAD_MS"), 0, PACER_MAX_LEAD_MS);
  const pacerSpin = numberSetting(
    "VOXPIPE_PACER_SPIN_MS",
    fromEnv("spinMs", "VOXPIPE_PACER_SPIN_MS"),
    0,
    PACER_MAX_SPIN_MS,
  );
  const pacerBudget = numberSetting(
    "VOXPIPE_PACER_BUDGET",
    fromEnv("budget", "VOXPIPE_PACER_BUDGET"),
    0.05,
    1,
    "share of one core",
  );
  if (lead !== undefined && lead > 0 && lead < PACER_MIN_LEAD_MS) {
    throw new Error(
      `VOXPIPE_PACER_LEAD_MS: expected 0 (off) or ${PACER_MIN_LEAD_MS}..${PACER_MAX_LEAD_MS} ms, got ${lead}`,
    );
  }
  const pacing = lead !== undefined && lead > 0;
  if (pacerSpin !== undefined && !pacing) {
    throw new Error("VOXPIPE_PACER_SPIN_MS applies to the native pacer: set VOXPIPE_PACER_LEAD_MS too");
  }
  if (pacerBudget !== undefined && !pacing) {
    throw new Error("VOXPIPE_PACER_BUDGET applies to the native pacer: set VOXPIPE_PACER_LEAD_MS too");
  }
  const setting = (v ?? "").trim().toLowerCase();
  const spinSetting = numberSetting("VOXPIPE_SPIN_MS", s, 0, MAX_SPIN_MS);
  const spinSet = spinSetting !== undefined;
  const spinMs = spinSetting ?? 0;
  if (setting === "deno") {
    if (spinSet) throw new Error("VOXPIPE_SPIN_MS applies to the fast UDP path, which VOXPIPE_NET=deno turns off");
    if (pacing) throw new Error("VOXPIPE_PACER_LEAD_MS applies to the fast UDP path, which VOXPIPE_NET=deno turns off");
    return { description: "network: Deno.listenDatagram (VOXPIPE_NET=deno)" };
  }
  if (setting !== "" && setting !== "fast") {
    throw new Error(`VOXPIPE_NET: expected "fast" or "deno" (unset: fast where it can run), got "${v}"`);
  }
  const asked = setting === "fast";
  const why = fastPathProblem();
  if (why !== undefined) {
    if (asked) {
      return { description: `network: Deno.listenDatagram (VOXPIPE_NET=fast unavailable: ${why})`, fallback: why };
    }
    // The default where the fast path cannot run: settings that only it has are an error, not silently dropped.
    if (spinSet) throw new Error(`VOXPIPE_SPIN_MS applies to the fast UDP path, which cannot run here: ${why}`);
    if (pacing) throw new Error(`VOXPIPE_PACER_LEAD_MS applies to the fast UDP path, which cannot run here: ${why}`);
    return { description: `network: Deno.listenDatagram (the fast UDP path cannot run here: ${why})` };
  }
  if (pacing) {
    const problem = pacerProblem();
    if (problem !== undefined) throw new Error(`VOXPIPE_PACER_LEAD_MS: the native pacer cannot run: ${problem}`);
  }
  const opts: MediaLoopOptions = {};
  if (spinMs > 0) opts.spinMs = spinMs;
  const budget = pacerBudget ?? PACER_SPIN_BUDGET;
  if (pacing) opts.pacer = { leadMs: lead, spinMs: pacerSpin ?? PACER_SPIN_MS, spinBudget: budget };
  const loop = defaultMediaLoop(spinMs > 0 || pacing ? opts : undefined);
  if (pacing && loop.pacerStats() === undefined) {
    // This thread's loop was made earlier, without the pacer: say so rather than claim a pacer that is not there.
    throw new Error("VOXPIPE_PACER_LEAD_MS: this thread's MediaLoop already runs without the native pacer");
  }
  return {
    net: loop.network,
    clock: loop.clock,
    description:
      `network: FFI sockets and clock on this thread's MediaLoop (${asked ? "VOXPIPE_NET=fast" : "default"}` +
      (spinMs > 0 ? `, VOXPIPE_SPIN_MS=${spinMs}` : "") +
      (pacing
        ? `, native pacer: lead ${lead} ms, spin ${pacerSpin ?? PACER_SPIN_MS} ms` +
          (pacerBudget !== undefined ? ` within ${budget} of a core` : "")
        : "") +
      ")",
  };
}

/** The native pacer's default spin before a due time, ms (`VOXPIPE_PACER_SPIN_MS`). */
export const PACER_SPIN_MS = 1;
/**
 * The share of a core the native pacer's spins may take by default (`VOXPIPE_PACER_BUDGET`). Enough for a few
 * streams; a sender of hundreds of streams, whose due times are a fraction of a millisecond apart, needs 1 (the whole
 * core) for its thread never to sleep between them (see bench/README).
 */
export const PACER_SPIN_BUDGET = 0.25;

/** An optional number setting in `min..max` (in `unit`), or an error naming it. */
function numberSetting(
  name: string,
  raw: string | undefined,
  min: number,
  max: number,
  unit = "number of ms",
): number | undefined {
  if (raw === undefined || raw.trim() === "") return undefined;
  const n = Number(raw.trim());
  if (!(Number.isFinite(n) && n >= min && n <= max)) {
    throw new Error(`${name}: expected a ${unit}, ${min}..${max}, got "${raw}"`);
  }
  return n;
}

/** The largest `VOXPIPE_SPIN_MS`: the loop's default `fineWaitMs`. */
const MAX_SPIN_MS = 2;
