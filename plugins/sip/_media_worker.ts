/**
 * A media worker of the SIP control (`media_workers` > 0): a Web Worker that runs the media of the calls the front
 * gives it. It owns its clock and network (by default, this thread's MediaLoop; with `VOXPIPE_NET=deno`, or where
 * FFI cannot run, the real clock and `Deno.listenDatagram`), binds its calls' RTP/RTCP pairs in its slice of
 * `rtp_ports`, builds each call's chains from the same pipeline file and parameters as the front (built-in plugins,
 * and plugins the file names by path), and posts back chain ends, RTP timeouts, DTMF digits received, statistics
 * snapshots and its log lines.
 * The messages are those of `_media_protocol.ts`. Private to the folder.
 *
 * @module
 */
/// <reference lib="deno.worker" />
import { type Clock, mediaClock, schedulerMode, setSchedulerMode } from "../../core/clock.ts";
import { loadPipelineFile } from "../../core/config.ts";
import { Logger, type LogLevel } from "../../core/log.ts";
import { mediaFromEnv } from "../../core/net/fast.ts";
import { PortAllocator } from "../../core/net/ports.ts";
import { udpNetwork } from "../../core/net/udp.ts";
import { Registry } from "../../core/registry.ts";
import { PipelineRunner } from "../../core/runner.ts";
import { type MediaStats, newMediaStats, Session } from "../../core/session.ts";
import { builtinCodecs, builtinPlugins } from "../builtin.ts";
import { builtinControls } from "../controls.ts";
import { LocalCallMedia } from "./_call_media.ts";
import type { ChainEnded, FromWorker, StopReply, ToWorker, WorkerInit } from "./_media_protocol.ts";

function post(m: FromWorker): void {
  try {
    self.postMessage(m);
  } catch {
    // Something in it does not clone (a stage's statistics holding an object): send its JSON form.
    self.postMessage(JSON.parse(JSON.stringify(m)));
  }
}

function errText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** A call this worker runs. */
interface Call {
  media: LocalCallMedia;
  /** Set once the front asked to stop it: the chain ends from then on, told with the stop's reply. */
  ended?: ChainEnded[];
  /** The figures the front was last sent, as JSON (its copy starts as newMediaStats()). */
  sent?: string;
}

interface Worker {
  index: number;
  clock: Clock;
  runner: PipelineRunner;
  ports: PortAllocator;
  log: Logger;
  calls: Map<number, Call>;
}

/** The zeroed figures the front's copy of a call's statistics starts from, as JSON. */
const ZERO = JSON.stringify(newMediaStats());

let state: Worker | undefined;
let initializing: Promise<void> | undefined;

async function init(m: WorkerInit): Promise<void> {
  const log = new Logger({
    level: m.logLevel,
    format: m.logFormat,
    outputs: [{ write: (line: string, level: LogLevel) => post({ t: "log", line, level }) }],
  });
  const media = mediaFromEnv();
  if (media.fallback) log.child("MEDIA").warn(`media worker ${m.index}: ${media.description}`);
  if (!media.clock) setSchedulerMode(m.scheduler);
  const clock = media.clock ?? mediaClock();
  const net = media.net ?? udpNetwork;
  const registry = new Registry(builtinPlugins, builtinControls, builtinCodecs);
  const file = await loadPipelineFile(m.file);
  // The front's parameter values, as resolved there (defaults, --set, paths made absolute). Those without a default
  // are given as --set too: the runner requires them.
  const set = Object.entries(file.parameters)
    .filter(([name, d]) => d.default === undefined && name in m.params)
    .map(([name]) => `${name}=${m.params[name]}`);
  const runner = new PipelineRunner(file, { registry, log, clock, net, set });
  Object.assign(runner.params, m.params);
  state = { index: m.index, clock, runner, ports: new PortAllocator(net, m.range), log, calls: new Map() };
  const calls = state.calls;
  setInterval(() => {
    // Only the calls whose figures changed since they were last sent: the front keeps the last ones it got (a call
    // that receives nothing, like most of a set-up benchmark's, costs no snapshot at all).
    let list: [number, MediaStats][] | undefined;
    for (const [key, c] of calls) {
      const now = c.media.session.stats;
      const json = JSON.stringify(now);
      if (json === (c.sent ?? ZERO)) continue;
      c.sent = json;
      (list ??= []).push([key, now]); // posting copies it
    }
    if (list) post({ t: "stats", calls: list });
  }, m.statsEveryMs);
  post({ t: "ready", clock: media.clock ? "MediaLoop (fast UDP path)" : `real, scheduler ${schedulerMode()}` });
}

async function handle(m: Exclude<ToWorker, WorkerInit | { t: "crash" }>): Promise<unknown> {
  await initializing;
  const w = state;
  if (!w) throw new Error("the media worker did not start");
  switch (m.t) {
    case "alloc": {
      const pair = w.ports.pair(m.bind);
      const session = new Session({ id: m.id, clock: w.clock, log: w.log, net: w.ports.net, ports: pair });
      const media = new LocalCallMedia(session, (t, vars, name, s) => w.runner.build(t, vars, name, s));
      w.calls.set(m.key, { media });
      return { rtpPort: pair.rtpPort, rtcpPort: pair.rtcpPort };
    }
    case "start": {
      const call = callOf(w, m.key);
      const key = m.key;
      return await call.media.start(
        m.templates,
        m.vars,
        m.n,
        {
          ended: (chain, reason, error) => {
            const e: ChainEnded = { name: chain.name, template: chain.template, reason, ...(error ? { error } : {}) };
            if (call.ended) call.ended.push(e);
            else post({ t: "ended", key, ...e });
          },
          timeout: (chain) => post({ t: "timeout", key, name: chain.name, template: chain.template }),
          dtmf: (d) => post({ t: "dtmf", key, digit: d.digit, durationMs: d.durationMs }),
        },
        undefined,
        m.holdSends === true,
      );
    }
    case "answered":
      w.calls.get(m.key)?.media.answered();
      return undefined;
    case "stop": {
      const call = w.calls.get(m.key);
      if (!call) return { results: [], stats: undefined };
      const ended = call.ended ??= [];
      try {
        const results = await call.media.stop();
        return {
          results,
          ...(ended.length ? { ended } : {}),
          stats: { ...call.media.session.stats },
        } satisfies StopReply;
      } catch (e) {
        // The reply is an error: the chain ends go as the messages they would have been.
        for (const x of ended) post({ t: "ended", key: m.key, ...x });
        throw e;
      } finally {
        w.calls.delete(m.key);
      }
    }
    case "dtmf":
      await callOf(w, m.key).media.sendDtmf(m.digits, { durationMs: m.durationMs, gapMs: m.gapMs });
      return undefined;
    case "close": {
      const all = [...w.calls.values()];
      await Promise.allSettled(all.map((c) => c.media.stop()));
      w.calls.clear();
      return undefined;
    }
  }
}

function callOf(w: Worker, key: number): Call {
  const c = w.calls.get(key);
  if (!c) throw new Error(`media worker ${w.index} has no call ${key}`);
  return c;
}

self.onmessage = (ev: MessageEvent<ToWorker>) => {
  const m = ev.data;
  if (m.t === "init") {
    initializing = init(m).catch((e) => {
      // The front sees the failure as this worker's error event.
      setTimeout(() => {
        throw new Error(`cannot start: ${errText(e)}`);
      });
    });
    return;
  }
  if (m.t === "crash") {
    setTimeout(() => {
      throw new Error(m.message);
    });
    return;
  }
  handle(m).then(
    (value) => post({ t: "reply", req: m.req, ok: true, value }),
    (e) => post({ t: "reply", req: m.req, ok: false, error: errText(e) }),
  );
};
