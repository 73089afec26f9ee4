/**
 * The messages between the SIP control (the front, on the main thread) and its media workers
 * (`_media_worker.ts`): plain structured-clone data, no functions, no shared objects. A call is named by a number
 * the front gives it (`key`), unique per worker; a request that expects an answer carries a request number (`req`)
 * and is answered by one `reply` with that number. Private to the folder.
 *
 * @module
 */
import type { SchedulerMode } from "../../core/clock.ts";
import type { LogLevel } from "../../core/log.ts";
import type { LogFormat } from "../../core/log.ts";
import type { Variables } from "../../core/config.ts";
import type { StageStats } from "../../core/pipeline.ts";
import type { MediaStats } from "../../core/session.ts";

/** What a worker is told once, first: which file it builds chains from, with which parameters, where it binds. */
export interface WorkerInit {
  /** Message type. */
  t: "init";
  /** The worker's number (1-based), for logs. */
  index: number;
  /** The pipeline file (absolute or relative to the working directory). */
  file: string;
  /** The front's resolved parameters (defaults and `--set`, paths made absolute). */
  params: Variables;
  /** The worker's share of `rtp_ports`, inclusive. */
  range: [number, number];
  /** Log threshold and line format of the front's logger. */
  logLevel: LogLevel;
  /** Line format. */
  logFormat: LogFormat;
  /** Milliseconds between statistics snapshots. */
  statsEveryMs: number;
  /** How the worker's real clock wakes up: the front's `--scheduler` (ignored with `VOXPIPE_NET=fast`). */
  scheduler: SchedulerMode;
}

/** Front → worker. */
export type ToWorker =
  | WorkerInit
  | { t: "alloc"; req: number; key: number; id: string; bind: string }
  | { t: "start"; req: number; key: number; templates: string[]; vars: Variables; n: number; holdSends?: boolean }
  | { t: "answered"; req: number; key: number }
  | { t: "stop"; req: number; key: number }
  | { t: "dtmf"; req: number; key: number; digits: string; durationMs?: number; gapMs?: number }
  | { t: "close"; req: number }
  | { t: "crash"; message: string };

/** A chain's result, as it crosses the thread (its error as text). */
export interface ChainResult {
  /** Pipeline name (`template#n`). */
  name: string;
  /** How it ended. */
  reason: "eos" | "stopped" | "error";
  /** The error message when reason is `error`. */
  error?: string;
  /** Final per-stage statistics. */
  stats: StageStats[];
}

/** A chain once started: its name and the label of its last stage. */
export interface StartedChain {
  /** Pipeline name (`template#n`). */
  name: string;
  /** Template it was built from. */
  template: string;
  /** Label of its last stage (e.g. `udp-sink`). */
  sink: string | undefined;
}

/** Worker → front. */
export type FromWorker =
  | { t: "ready"; clock: string }
  | { t: "reply"; req: number; ok: true; value?: unknown }
  | { t: "reply"; req: number; ok: false; error: string }
  | ({ t: "ended"; key: number } & ChainEnded)
  | { t: "timeout"; key: number; name: string; template: string }
  | { t: "dtmf"; key: number; digit: string; durationMs: number }
  /** The figures of the calls that changed since the last snapshot (a call not listed keeps its last figures). */
  | { t: "stats"; calls: [number, MediaStats][] }
  | { t: "log"; line: string; level: LogLevel };

/** The reply to `alloc`. */
export interface AllocReply {
  /** RTP port (even). */
  rtpPort: number;
  /** RTCP port. */
  rtcpPort: number;
}

/** A chain's end, as the `ended` message or inside a {@linkcode StopReply} tells it. */
export interface ChainEnded {
  /** Pipeline name (`template#n`). */
  name: string;
  /** Template it was built from. */
  template: string;
  /** How it ended. */
  reason: "eos" | "stopped" | "error";
  /** The error message when reason is `error`. */
  error?: string;
}

/** The reply to `stop`. */
export interface StopReply {
  /** Each chain's result, in build order. */
  results: ChainResult[];
  /**
   * The chains that ended once the stop was asked, in the order they ended: told here rather than each by an
   * `ended` message of its own (one message less per chain, on both threads, for every call). The front tells its
   * hooks about them before the stop resolves, as it would have on those messages.
   */
  ended?: ChainEnded[];
  /** The session's final statistics (undefined when the worker had no such call). */
  stats?: MediaStats;
}
