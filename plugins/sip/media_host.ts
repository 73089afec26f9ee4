/**
 * Where the SIP control's calls run their media: on the main thread beside the SIP stack
 * ({@linkcode InProcessMediaHost}, `media_workers` 0), or spread over N Web Workers ({@linkcode WorkerMediaHost}),
 * each with its own clock, network (its own sockets) and share of `rtp_ports`. The control sees one interface,
 * {@linkcode CallMediaHandle}, either way. Used by control.ts; tests reach the worker host through
 * {@linkcode onWorkerMediaHost}.
 *
 * Design:
 * - Port pairs: each worker binds its calls' RTP/RTCP pairs itself, in a disjoint slice of `rtp_ports` (the range
 *   cut into N even-aligned parts), and answers the front's `alloc` request with the port numbers the SDP needs.
 *   Sockets cannot cross threads, so the binding must happen where the media runs; the slices mean two workers
 *   never race for one port, and a port taken by another process is found before the SDP is sent.
 * - Everything else is plain data over postMessage (see `_media_protocol.ts`): the chain templates to build and
 *   the call's variables; back come chain ends, RTP timeouts, DTMF digits received, statistics snapshots (every
 *   second, of the calls whose figures changed, and the final ones with `stop`'s reply) and log lines. A chain that
 *   ends once its call's stop was asked is told with the stop's reply, not by a message of its own.
 * - A worker that fails (an `error` event) ends its calls with `media worker N failed: ...`; a worker that had
 *   started is restarted in its slot, so new calls keep using both cores.
 *
 * @module
 */
import type { Variables } from "../../core/config.ts";
import { type Clock, schedulerMode } from "../../core/clock.ts";
import type { Logger } from "../../core/log.ts";
import type { Network } from "../../core/net/datagram.ts";
import { PortAllocator } from "../../core/net/ports.ts";
import { type MediaStats, newMediaStats, Session } from "../../core/session.ts";
import { type BuildChain, LocalCallMedia, type MediaHooks } from "./_call_media.ts";
import type {
  AllocReply,
  ChainResult,
  FromWorker,
  StartedChain,
  StopReply,
  ToWorker,
  WorkerInit,
} from "./_media_protocol.ts";

export type { MediaHooks } from "./_call_media.ts";
export type { ChainResult, StartedChain } from "./_media_protocol.ts";

/** One call's media, wherever it runs. */
export interface CallMediaHandle {
  /** Our RTP port (even), for the SDP. */
  readonly rtpPort: number;
  /** Our RTCP port. */
  readonly rtcpPort: number;
  /** Media statistics: live in process; in a worker, the latest snapshot (about every second, final after stop). */
  readonly stats: MediaStats;
  /** The call's session, when its media runs on this thread (undefined in a media worker). */
  readonly session: Session | undefined;
  /** The media worker running it (1-based), undefined in process. */
  readonly worker: number | undefined;
  /**
   * Builds the call's chains from `templates` with `vars`, then starts them (unless `ended()` says the call ended
   * meanwhile), telling `hooks` what happens to them. Throws with the build error.
   */
  start(
    templates: string[],
    vars: Variables,
    n: number,
    hooks: MediaHooks,
    ended: () => boolean,
    holdSends?: boolean,
  ): Promise<StartedChain[]>;
  /**
   * The call's answer has been sent: what its chains send, held since a start with `holdSends` (an incoming call's
   * chains start before its 200 OK), goes out from now.
   */
  answered(): void;
  /** Stops the chains (recordings complete) and releases the session; resolves with each chain's result. */
  stop(): Promise<ChainResult[]>;
  /** Sends DTMF through the call's `dtmf-sender` stage. */
  sendDtmf(digits: string, opts: { durationMs?: number; gapMs?: number }): Promise<void>;
}

/** One media worker's figures. */
export interface MediaWorkerStats {
  /** Its number (1-based). */
  worker: number;
  /** `starting`, `ready` or `failed`. */
  state: "starting" | "ready" | "failed";
  /** Calls it runs now. */
  calls: number;
  /** Calls it has been given since the control started. */
  total: number;
  /** Its share of `rtp_ports`. */
  ports: string;
  /** Times it failed. */
  failures: number;
}

/** Runs calls' media. */
export interface MediaHost {
  /** Resolves once the host can take calls; rejects saying why it cannot. */
  ready(): Promise<void>;
  /** A session for a new call with its port pair bound on `bind`; throws (rejects) when none is free. */
  allocate(bind: string, id: string): Promise<CallMediaHandle>;
  /** Per-worker figures, undefined in process. */
  workers(): MediaWorkerStats[] | undefined;
  /** Stops every call still running and releases the workers. */
  close(): Promise<void>;
}

// ---- in process ------------------------------------------------------------------------------------------------

class InProcessCall implements CallMediaHandle {
  readonly #m: LocalCallMedia;
  readonly worker = undefined;
  constructor(m: LocalCallMedia) {
    this.#m = m;
  }
  get rtpPort(): number {
    return this.#m.session.ports!.rtpPort;
  }
  get rtcpPort(): number {
    return this.#m.session.ports!.rtcpPort;
  }
  get stats(): MediaStats {
    return this.#m.session.stats;
  }
  get session(): Session {
    return this.#m.session;
  }
  start(templates: string[], vars: Variables, n: number, hooks: MediaHooks, ended: () => boolean, holdSends = false) {
    return this.#m.start(templates, vars, n, hooks, ended, holdSends);
  }
  answered(): void {
    this.#m.answered();
  }
  stop(): Promise<ChainResult[]> {
    return this.#m.stop();
  }
  sendDtmf(digits: string, opts: { durationMs?: number; gapMs?: number }): Promise<void> {
    return this.#m.sendDtmf(digits, opts);
  }
}

/** Media on the main thread, with the SIP stack (`media_workers` 0): today's behaviour. */
export class InProcessMediaHost implements MediaHost {
  readonly #ports: PortAllocator;

  /**
   * @param o the clock, network and logger of the sessions, the port range and the chain builder
   */
  constructor(
    readonly o: { clock: Clock; net: Network; log: Logger; range: [number, number]; build: BuildChain },
  ) {
    this.#ports = new PortAllocator(o.net, o.range);
  }

  ready(): Promise<void> {
    return Promise.resolve();
  }

  allocate(bind: string, id: string): Promise<CallMediaHandle> {
    try {
      const pair = this.#ports.pair(bind);
      const session = new Session({ id, clock: this.o.clock, log: this.o.log, net: this.o.net, ports: pair });
      return Promise.resolve(new InProcessCall(new LocalCallMedia(session, this.o.build)));
    } catch (e) {
      return Promise.reject(e);
    }
  }

  workers(): undefined {
    return undefined;
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}

// ---- in workers ------------------------------------------------------------------------------------------------

/** Options of a {@linkcode WorkerMediaHost}. */
export interface WorkerHostOptions {
  /** How many workers. */
  count: number;
  /** The pipeline file the workers build chains from. */
  file: string;
  /** The resolved parameters of the file. */
  params: Variables;
  /** `rtp_ports`, inclusive; cut into one slice per worker. */
  range: [number, number];
  /** The front's logger: the workers' lines are written to its outputs. */
  log: Logger;
  /** Milliseconds between statistics snapshots (default 1000). */
  statsEveryMs?: number;
  /** The worker module (default `./_media_worker.ts`). */
  url?: URL;
}

interface Pending {
  resolve(v: unknown): void;
  reject(e: Error): void;
}

class Slot {
  worker!: Worker;
  state: "starting" | "ready" | "failed" = "starting";
  ready!: PromiseWithResolvers<void>;
  readonly calls = new Map<number, WorkerCall>();
  readonly pending = new Map<number, Pending>();
  total = 0;
  failures = 0;
  /** Set once the worker answered `ready` at least once: a later failure restarts it. */
  everReady = false;
  constructor(readonly index: number, readonly range: [number, number]) {}
}

class WorkerCall implements CallMediaHandle {
  stats: MediaStats = newMediaStats();
  readonly session = undefined;
  hooks?: MediaHooks;
  /** Why the call's media is gone (its worker failed). */
  lost?: string;
  #stopped?: Promise<ChainResult[]>;
  constructor(
    readonly host: WorkerMediaHost,
    readonly slot: Slot,
    readonly key: number,
    readonly rtpPort: number,
    readonly rtcpPort: number,
  ) {}
  get worker(): number {
    return this.slot.index;
  }
  async start(
    templates: string[],
    vars: Variables,
    n: number,
    hooks: MediaHooks,
    ended: () => boolean,
    holdSends = false,
  ) {
    this.hooks = hooks;
    if (this.lost) throw new Error(this.lost);
    if (ended()) {
      await this.stop();
      return [];
    }
    const msg = { t: "start" as const, key: this.key, templates, vars, n, ...(holdSends ? { holdSends } : {}) };
    return await this.host.request(this.slot, msg) as StartedChain[];
  }
  answered(): void {
    // The worker releases the hold when it reads this, after the 200 has gone from here.
    if (!this.lost) this.host.request(this.slot, { t: "answered", key: this.key }).catch(() => {});
  }
  stop(): Promise<ChainResult[]> {
    this.#stopped ??= (async () => {
      if (this.lost) return [];
      try {
        const r = await this.host.request(this.slot, { t: "stop", key: this.key }) as StopReply;
        if (r.stats) this.stats = r.stats;
        // The chains that ended once the stop was asked come with its reply, not as `ended` messages.
        for (const e of r.ended ?? []) this.hooks?.ended({ name: e.name, template: e.template }, e.reason, e.error);
        return r.results;
      } catch {
        return []; // its worker failed meanwhile: the call's reason says so
      } finally {
        this.slot.calls.delete(this.key);
      }
    })();
    return this.#stopped;
  }
  async sendDtmf(digits: string, opts: { durationMs?: number; gapMs?: number }): Promise<void> {
    await this.host.request(this.slot, { t: "dtmf", key: this.key, digits, ...opts });
  }
}

const created = new Set<(host: WorkerMediaHost) => void>();

/**
 * Tells `listener` about each {@linkcode WorkerMediaHost} created from now on (tests reach a control's workers
 * through it); returns a function that stops telling it.
 */
export function onWorkerMediaHost(listener: (host: WorkerMediaHost) => void): () => void {
  created.add(listener);
  return () => created.delete(listener);
}

/** Calls' media spread over Web Workers, the least busy first. */
export class WorkerMediaHost implements MediaHost {
  readonly #o: WorkerHostOptions;
  readonly #log: Logger;
  readonly #slots: Slot[] = [];
  #req = 0;
  #key = 0;
  #closing = false;

  /** Starts `o.count` workers. */
  constructor(o: WorkerHostOptions) {
    this.#o = o;
    this.#log = o.log.child("MEDIA");
    const [min, max] = o.range;
    const first = min % 2 === 0 ? min : min + 1;
    const pairs = Math.floor((max - 1 - first) / 2) + 1;
    if (pairs < o.count) {
      throw new Error(
        `rtp_ports ${min}-${max} holds ${pairs} RTP/RTCP pairs, fewer than media_workers (${o.count}): ` +
          "widen rtp_ports or use fewer workers",
      );
    }
    for (let i = 0; i < o.count; i++) {
      const lo = first + 2 * Math.floor((pairs * i) / o.count);
      const hi = first + 2 * Math.floor((pairs * (i + 1)) / o.count) - 1;
      const slot = new Slot(i + 1, [lo, hi]);
      this.#slots.push(slot);
      this.#spawn(slot);
    }
    for (const l of created) l(this);
  }

  #spawn(slot: Slot): void {
    slot.state = "starting";
    slot.ready = Promise.withResolvers<void>();
    slot.ready.promise.catch(() => {});
    const w = new Worker(this.#o.url ?? new URL("./_media_worker.ts", import.meta.url), {
      type: "module",
      name: `media worker ${slot.index}`,
    });
    slot.worker = w;
    w.onmessage = (ev: MessageEvent<FromWorker>) => this.#onMessage(slot, w, ev.data);
    w.onerror = (ev: ErrorEvent) => {
      ev.preventDefault(); // the worker's failure is its calls', not the process's
      this.#fail(slot, w, ev.message || String(ev.error));
    };
    w.onmessageerror = () => this.#fail(slot, w, "a message from it could not be read");
    const init: WorkerInit = {
      t: "init",
      index: slot.index,
      file: this.#o.file,
      params: this.#o.params,
      range: slot.range,
      logLevel: this.#o.log.level,
      logFormat: this.#o.log.format,
      statsEveryMs: this.#o.statsEveryMs ?? 1000,
      scheduler: schedulerMode(),
    };
    w.postMessage(init);
  }

  #onMessage(slot: Slot, w: Worker, m: FromWorker): void {
    if (slot.worker !== w) return; // a failed worker's last words
    switch (m.t) {
      case "ready":
        slot.state = "ready";
        slot.everReady = true;
        this.#log.debug(
          `media worker ${slot.index} ready (RTP ports ${slot.range[0]}-${slot.range[1]}, clock: ${m.clock})`,
        );
        slot.ready.resolve();
        return;
      case "reply": {
        const p = slot.pending.get(m.req);
        if (!p) return;
        slot.pending.delete(m.req);
        if (m.ok) p.resolve(m.value);
        else p.reject(new Error(m.error));
        return;
      }
      case "ended":
        slot.calls.get(m.key)?.hooks?.ended({ name: m.name, template: m.template }, m.reason, m.error);
        return;
      case "timeout":
        slot.calls.get(m.key)?.hooks?.timeout({ name: m.name, template: m.template });
        return;
      case "dtmf":
        slot.calls.get(m.key)?.hooks?.dtmf({ digit: m.digit, durationMs: m.durationMs });
        return;
      case "stats":
        for (const [key, stats] of m.calls) {
          const c = slot.calls.get(key);
          if (c) c.stats = stats;
        }
        return;
      case "log":
        this.#o.log.writeLine(m.line, m.level);
        return;
    }
  }

  #fail(slot: Slot, w: Worker, message: string): void {
    if (slot.worker !== w || slot.state === "failed") return;
    const why = `media worker ${slot.index} failed: ${message}`;
    slot.state = "failed";
    slot.failures++;
    w.terminate();
    const calls = [...slot.calls.values()];
    this.#log.error(`${why}${calls.length ? ` (ending its ${calls.length} calls)` : ""}`);
    slot.ready.reject(new Error(why));
    const pending = [...slot.pending.values()];
    slot.pending.clear();
    slot.calls.clear();
    for (const c of calls) {
      c.lost = why;
      c.hooks?.lost(why);
    }
    for (const p of pending) p.reject(new Error(why));
    if (slot.everReady && !this.#closing) {
      this.#log.info(`restarting media worker ${slot.index}`);
      this.#spawn(slot);
    }
  }

  /** Sends a request to a worker; resolves with its reply's value, rejects with its error. */
  request(slot: Slot, msg: DistributiveOmit<Exclude<ToWorker, WorkerInit | { t: "crash" }>, "req">): Promise<unknown> {
    if (slot.state === "failed") return Promise.reject(new Error(`media worker ${slot.index} has failed`));
    const req = ++this.#req;
    const { promise, resolve, reject } = Promise.withResolvers<unknown>();
    slot.pending.set(req, { resolve, reject });
    slot.worker.postMessage({ ...msg, req });
    return promise;
  }

  ready(): Promise<void> {
    // One worker up is enough to take calls; all failing is an error with the first reason.
    return Promise.any(this.#slots.map((s) => s.ready.promise)).then(
      () => {},
      (e: AggregateError) => {
        throw e.errors[0];
      },
    );
  }

  async allocate(bind: string, id: string): Promise<CallMediaHandle> {
    const live = this.#slots.filter((s) => s.state !== "failed");
    if (live.length === 0) throw new Error("every media worker has failed: see the log");
    // The least busy first; then a ready worker before one still starting; then the one given fewer calls so far
    // (calls that never overlap take turns).
    const rank = (x: Slot) => x.state === "ready" ? 0 : 1;
    live.sort((a, b) => a.calls.size - b.calls.size || rank(a) - rank(b) || a.total - b.total);
    const slot = live[0];
    const key = ++this.#key;
    // Counted at once, so that calls arriving together spread before the first reply.
    const placeholder = new WorkerCall(this, slot, key, 0, 0);
    slot.calls.set(key, placeholder);
    slot.total++;
    try {
      await slot.ready.promise;
      const r = await this.request(slot, { t: "alloc", key, id, bind }) as AllocReply;
      const call = new WorkerCall(this, slot, key, r.rtpPort, r.rtcpPort);
      if (slot.calls.get(key) !== placeholder) {
        // Its worker failed between the reply and now.
        call.lost = placeholder.lost ?? `media worker ${slot.index} failed`;
      } else slot.calls.set(key, call);
      return call;
    } catch (e) {
      if (slot.calls.get(key) === placeholder) slot.calls.delete(key);
      throw e;
    }
  }

  workers(): MediaWorkerStats[] {
    return this.#slots.map((s) => ({
      worker: s.index,
      state: s.state,
      calls: s.calls.size,
      total: s.total,
      ports: `${s.range[0]}-${s.range[1]}`,
      failures: s.failures,
    }));
  }

  /** For tests: makes worker `index` (1-based) fail as a crash would (an uncaught error in it). */
  crashWorker(index: number, message = "crashed on request"): void {
    const slot = this.#slots[index - 1];
    if (!slot) throw new RangeError(`no media worker ${index} (there are ${this.#slots.length})`);
    slot.worker.postMessage({ t: "crash", message } satisfies ToWorker);
  }

  async close(): Promise<void> {
    if (this.#closing) return;
    this.#closing = true;
    await Promise.all(this.#slots.map(async (slot) => {
      if (slot.state === "ready") {
        let timer: ReturnType<typeof setTimeout> | undefined;
        const bound = new Promise((r) => timer = setTimeout(r, 15_000));
        try {
          await Promise.race([this.request(slot, { t: "close" }), bound]);
        } catch { /* failed meanwhile */ }
        clearTimeout(timer);
      }
      slot.state = "failed";
      slot.worker.terminate();
      for (const p of slot.pending.values()) p.reject(new Error(`media worker ${slot.index} closed`));
      slot.pending.clear();
    }));
  }
}

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;
