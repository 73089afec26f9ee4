/**
 * One call's media where it runs (the main thread, or a media worker): its session (port pair, sockets, RTCP,
 * statistics), the chains built for it, their start with the events the SIP control acts on, and their teardown so
 * that every recording is complete. Private to the folder.
 *
 * @module
 */
import type { Variables } from "../../core/config.ts";
import type { Pipeline, PipelineResult } from "../../core/pipeline.ts";
import type { Session } from "../../core/session.ts";
import { sendDtmf } from "../rtp/dtmf_sender.ts";
import type { ChainResult, StartedChain } from "./_media_protocol.ts";

/** How long a chain that records what buses carry may take to finish once the call ended, ms. */
export const RECORDER_GRACE_MS = 5000;

/** What the control is told about a call's chains while they run. */
export interface MediaHooks {
  /** A chain ended: `eos` (its source ended), `stopped`, or `error` with the error's text. */
  ended(chain: { name: string; template: string }, reason: "eos" | "stopped" | "error", error?: string): void;
  /** A chain's source received nothing for its timeout period (RTP inactivity); the chain ends next. */
  timeout(chain: { name: string; template: string }): void;
  /** The call's media is gone without its chains ending (its media worker failed): `why` says what happened. */
  lost(why: string): void;
  /** A DTMF digit received (RFC 4733, from the call's `rtp-depacketizer`), once per digit at its end. */
  dtmf(digit: ReceivedDigit): void;
}

/** A DTMF digit received in a call, as it crosses a thread. */
export interface ReceivedDigit {
  /** The digit: 0-9, *, #, A-D. */
  digit: string;
  /** How long the key was held, ms. */
  durationMs: number;
}

/** Builds a chain `template` with `vars` in `session`, named `name` (the runner's buildPipeline). */
export type BuildChain = (template: string, vars: Variables, name: string, session: Session) => Promise<Pipeline>;

/** The template a chain was built from (`receive#3` → `receive`). */
export function templateOf(name: string): string {
  return name.replace(/#\d+$/, "");
}

/** A chain's result as it crosses a thread: its error as text. */
export function chainResult(name: string, r: PipelineResult): ChainResult {
  return {
    name,
    reason: r.reason,
    ...(r.error ? { error: r.error.message } : {}),
    stats: r.stats,
  };
}

/** One call's session and chains, on the thread that runs them. */
export class LocalCallMedia {
  /** The chains built for the call, in build order. */
  readonly pipelines: Pipeline[] = [];
  readonly #build: BuildChain;
  #stopped: Promise<ChainResult[]> | undefined;
  /** Releases the session's hold on sends of a `holdSends` start (see {@linkcode answered}). */
  #releaseSends: (() => void) | undefined;

  /**
   * Wraps a call's session (its port pair already bound).
   * @param session the call's session
   * @param build builds a chain in it
   */
  constructor(readonly session: Session, build: BuildChain) {
    this.#build = build;
  }

  /**
   * Builds every template for the call (`${t}#${n}`), then, unless `ended()` says the call ended meanwhile, starts
   * them all, telling `hooks` when a chain ends or times out, and each DTMF digit received. Resolves once every
   * chain's stages have started (a recording's file is created, sockets bound, devices opened), so that an incoming
   * call is answered only when its media can run. Throws (after stopping what was built) on a build error, or on a
   * stage that failed to start (its chain's error: then `hooks` hear of no chain's end). Returns the chains started
   * (none when the call ended first). With `holdSends` (an incoming call, started before its answer is sent), what
   * the chains send is held by the session until {@linkcode answered}.
   */
  async start(
    templates: string[],
    vars: Variables,
    n: number | string,
    hooks: Pick<MediaHooks, "ended" | "timeout" | "dtmf">,
    ended: () => boolean = () => false,
    holdSends = false,
  ): Promise<StartedChain[]> {
    try {
      for (const t of templates) this.pipelines.push(await this.#build(t, vars, `${t}#${n}`, this.session));
    } catch (e) {
      await this.stop();
      throw e;
    }
    if (ended()) {
      await this.stop();
      return [];
    }
    this.session.on((e) => {
      if (e.type !== "dtmf") return;
      const d = e.detail as { digit?: unknown; duration_ms?: unknown } | undefined;
      if (typeof d?.digit !== "string") return;
      hooks.dtmf({ digit: d.digit, durationMs: typeof d.duration_ms === "number" ? d.duration_ms : 0 });
    });
    // What the chains tell while they start is held until all have started: passed on then, dropped when one failed
    // to start (the start's error says it all).
    let held: (() => void)[] | undefined = [];
    let dropped = false;
    const tell = (f: () => void) => {
      if (held) held.push(f);
      else if (!dropped) f();
    };
    // An incoming call's chains start before its answer is sent: what they send waits for it (see answered()).
    if (holdSends && !this.#releaseSends) this.#releaseSends = this.session.holdSends();
    let waiting = this.pipelines.length;
    const allStarted = Promise.withResolvers<void>();
    let startError: Error | undefined;
    const started: StartedChain[] = [];
    for (const p of this.pipelines) {
      const chain = { name: p.name, template: templateOf(p.name) };
      let up = false;
      p.on("error", (ev) => {
        if (!up) startError ??= ev.detail as Error;
      });
      p.on("started", () => {
        up = true;
        if (--waiting === 0) allStarted.resolve();
      });
      p.on("ended", (ev) => {
        const r = ev.detail as PipelineResult;
        tell(() => hooks.ended(chain, r.reason, r.error?.message));
      });
      p.on("timeout", () => tell(() => hooks.timeout(chain)));
      started.push({ ...chain, sink: p.labels.at(-1) });
      p.start();
    }
    if (waiting > 0) await allStarted.promise;
    const h = held;
    held = undefined;
    if (startError) {
      dropped = true;
      await this.stop();
      throw startError;
    }
    for (const f of h) f();
    return started;
  }

  /** The call's answer has been sent: what its chains hold since a `holdSends` start goes out now. */
  answered(): void {
    this.#releaseSends?.();
    this.#releaseSends = undefined;
  }

  /**
   * Stops the call's chains so that every recording holds all that was received: chains fed by the network
   * (the RTP receiver) end gracefully, draining what they hold; chains that read buses into a file (a recorder)
   * finish what their buses carry (bounded by {@linkcode RECORDER_GRACE_MS}); every other chain (files, tones,
   * mixers and the send chain: nothing more goes to a peer that has hung up) stops at once, which ends the buses
   * it publishes on. Then the session closes (RTCP BYE unless its sends are still held, sockets, ports). Idempotent.
   */
  stop(): Promise<ChainResult[]> {
    this.#stopped ??= (async () => {
      const clock = this.session.clock;
      const results = await Promise.all(this.pipelines.map((p) => {
        if (p.state === "built") return p.stop();
        if (p.liveSource) return p.end();
        if (isRecorder(p)) {
          const limit = clock.after(RECORDER_GRACE_MS, () => void p.stop());
          return p.done.finally(() => limit.cancel());
        }
        return p.stop();
      }));
      await this.session.close();
      return results.map((r, i) => chainResult(this.pipelines[i].name, r));
    })();
    return this.#stopped;
  }

  /** Sends DTMF (RFC 4733) through the call's `dtmf-sender` stage. */
  async sendDtmf(digits: string, opts: { durationMs?: number; gapMs?: number }): Promise<void> {
    await sendDtmf(this.session, digits, { duration: opts.durationMs, gap: opts.gapMs });
  }
}

/** A chain that reads buses (a bus source or a mixer) into a sink that is neither real-time nor another bus. */
function isRecorder(p: Pipeline): boolean {
  const plan = p.plan();
  const first = plan[0]?.use, last = plan.at(-1)?.use;
  return (first === "bus-source" || first === "mixer") && !p.realtimeSink && last !== "bus-sink";
}
