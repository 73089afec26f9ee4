/**
 * The console's state and logic, apart from HTTP: it follows every call of
 * the call service (events, a chart sample of each answered call each second,
 * each call's SIP ladder and log lines, bounded), and serves the pages
 * connected to it (the protocol of protocol.ts): a page of the call table,
 * incoming calls, the selected call's details as they change, a call's audio.
 *
 * @example
 * ```ts
 * const hub = new ConsoleHub({ calls, clock, log, library, ...CONSOLE_HUB_DEFAULTS });
 * hub.start();
 * const conn = await hub.connect({ send: (m) => ws.send(JSON.stringify(m)), sendAudio: (b) => (ws.send(b), true) });
 * ws.onmessage = (e) => conn.receive(e.data);
 * ```
 *
 * @module
 */
import { join } from "node:path";
import type { CallEvent, CallInfo, CallService } from "../../core/calls.ts";
import type { Clock, Timer } from "../../core/clock.ts";
import type { Logger } from "../../core/log.ts";
import { sanitizeFileComponent } from "../../core/paths.ts";
import { outOfFilesHint } from "../../core/open_files.ts";
import type { MediaStats } from "../../core/session.ts";
import { AudioTap, type RecorderFile, WavRecorder } from "./audio_tap.ts";
import type { AudioLibrary } from "./files.ts";
import { CallLogTap, logKeyMatches } from "./log_tap.ts";
import {
  callRow,
  encodeAudio,
  type LadderEntry,
  ladderEntry,
  type LogEntry,
  PROTOCOL_VERSION,
  type StatsSample,
  statsSample,
} from "./protocol.ts";

/** A connected page, as the hub sees it. */
export interface ConsoleClient {
  /** Sends a JSON message. */
  send(msg: Record<string, unknown>): void;
  /** Sends a binary audio message; returns false when it was dropped (the page is behind). */
  sendAudio(bytes: Uint8Array): boolean;
}

/** A page's connection: what it receives, and its end. */
export interface ConsoleConnection {
  /** Handles one message from the page (JSON text); the reply goes through `send`. */
  receive(text: string): Promise<void>;
  /** The page left: stops its audio and forgets it. */
  close(): void;
}

/** Options of {@linkcode ConsoleHub}. */
export interface ConsoleHubOptions {
  /** The calls to show and drive. */
  calls: CallService;
  /** Clock of the one-second sampling and of the table updates. */
  clock: Clock;
  /** Logger (tagged `CONSOLE`). */
  log: Logger;
  /** Audio files the caller may play. */
  library: AudioLibrary;
  /** Wall-clock time, ms since the Unix epoch (default `Date.now`). */
  wallNow?: () => number;
  /** Answer incoming calls at once (else they ring in the pages until answered or rejected). */
  autoAnswer: boolean;
  /** Decide incoming calls (answer or ring); false leaves them to the control plugin's own policy. */
  decideIncoming: boolean;
  /** Seconds of chart samples kept per call. */
  historySeconds: number;
  /** Ended calls kept in the table (the oldest are forgotten). */
  keepEnded: number;
  /** Rows per page of the call table, unless the page asks for another size. */
  pageSize: number;
  /** The session bus carrying a call's received audio as pcm. */
  audioBus: string;
  /** Folder of server recordings. */
  recordDir: string;
  /** SIP messages kept per call. */
  ladderMax: number;
  /** Log lines kept per call. */
  logLinesMax: number;
  /** Creates a recording's file (default: `Deno.open`); tests give one whose writes fail. */
  openRecording?: (path: string) => Promise<RecorderFile>;
}

/** Defaults of the tunable {@linkcode ConsoleHubOptions}. */
export const CONSOLE_HUB_DEFAULTS: Omit<
  ConsoleHubOptions,
  "calls" | "clock" | "log" | "library" | "wallNow" | "openRecording"
> = {
  autoAnswer: false,
  decideIncoming: true,
  historySeconds: 300,
  keepEnded: 200,
  pageSize: 10,
  audioBus: "from-call",
  recordDir: "out/console",
  ladderMax: 200,
  logLinesMax: 300,
};

/** Incoming calls listed at most in `incoming` messages. */
const INCOMING_LISTED = 20;
/** Table updates are sent at most this often (ms) when calls change between the one-second samples. */
const FLUSH_MS = 250;

interface Tracked {
  info: CallInfo;
  history: StatsSample[];
  prev?: { t: number; stats: MediaStats };
  ladder: LadderEntry[];
  tap?: AudioTap;
  recorder?: { rec: WavRecorder; off: () => void };
}

interface Client {
  client: ClientSink;
  page: number;
  size: number;
  filter: "all" | "active" | "ended";
  selected?: string;
  playing?: { id: string; off: () => void };
  dialed: Set<string>;
  audioDropped: number;
}

type ClientSink = ConsoleClient;

const OPS = [
  "dial",
  "probe",
  "answer",
  "reject",
  "hangup",
  "select",
  "play",
  "pause",
  "record",
  "page",
  "auto_answer",
  "dtmf",
  "files",
];

/** See the module documentation. */
export class ConsoleHub {
  readonly #o: ConsoleHubOptions;
  readonly #calls: CallService;
  readonly #log: Logger;
  readonly #wall: () => number;
  readonly #tracked = new Map<string, Tracked>();
  /** Ended calls, oldest first. */
  readonly #ended: string[] = [];
  readonly #clients = new Set<Client>();
  /** The per-call log lines (add it to the process logger with `log.tap(hub.logTap)`). */
  readonly logTap: CallLogTap;
  #autoAnswer: boolean;
  #offEvents?: () => void;
  #offDecider?: () => void;
  #tick?: Timer;
  #flushTimer?: Timer;
  #lastIncoming = "";
  #closed = false;

  /**
   * Creates the hub; {@linkcode start} makes it follow the calls.
   * @param o the call service, clock, logger, audio library and limits
   */
  constructor(o: ConsoleHubOptions) {
    this.#o = o;
    this.#calls = o.calls;
    this.#log = o.log.child("CONSOLE");
    this.#wall = o.wallNow ?? (() => Date.now());
    this.#autoAnswer = o.autoAnswer;
    this.logTap = new CallLogTap({
      perCall: o.logLinesMax,
      calls: Math.max(64, o.keepEnded * 2),
      onLine: (key, entry) => this.#onLogLine(key, entry),
    });
  }

  /** Follows the calls: every call listed now, every event from now on, a sample of each answered call each second. */
  start(): void {
    for (const c of this.#calls.calls()) this.#track(c);
    this.#offEvents = this.#calls.onEvent((e) => this.#onEvent(e));
    if (this.#o.decideIncoming) {
      this.#offDecider = this.#calls.onIncoming(() => this.#autoAnswer ? { action: "answer" } : { action: "ring" });
    }
    const tick = () => {
      if (this.#closed) return;
      this.#tick = this.#o.clock.after(1000, tick);
      this.#sample();
    };
    this.#tick = this.#o.clock.after(1000, tick);
  }

  /** Pages connected now. */
  get clients(): number {
    return this.#clients.size;
  }

  /** Calls the hub keeps (not ended, and the last `keepEnded` ended ones). */
  get tracked(): number {
    return this.#tracked.size;
  }

  /** The chart samples kept of a call (for tests and status). */
  history(id: string): readonly StatsSample[] {
    return this.#tracked.get(id)?.history ?? [];
  }

  /** Connects a page: it gets `hello`, the table and the incoming calls at once. */
  async connect(client: ConsoleClient): Promise<ConsoleConnection> {
    const c: Client = { client, page: 0, size: this.#o.pageSize, filter: "all", dialed: new Set(), audioDropped: 0 };
    this.#clients.add(c);
    safeSend(c, {
      type: "hello",
      version: PROTOCOL_VERSION,
      autoAnswer: this.#autoAnswer,
      decideIncoming: this.#o.decideIncoming,
      pageSize: this.#o.pageSize,
      audioBus: this.#o.audioBus,
      files: await this.#o.library.list().catch(() => []),
    });
    this.#sendPage(c);
    safeSend(c, this.#incomingMessage());
    return {
      receive: (text) => this.#receive(c, text),
      close: () => this.#disconnect(c),
    };
  }

  /** Stops following the calls: pages, audio and recordings end. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#offEvents?.();
    this.#offDecider?.();
    this.#tick?.cancel();
    this.#flushTimer?.cancel();
    for (const c of [...this.#clients]) this.#disconnect(c);
    const recordings: Promise<void>[] = [];
    for (const t of this.#tracked.values()) {
      if (t.recorder) recordings.push(this.#stopRecording(t));
      t.tap?.close();
    }
    await Promise.allSettled(recordings);
  }

  // ---- calls ----------------------------------------------------------------------------------

  #track(info: CallInfo): Tracked {
    let t = this.#tracked.get(info.id);
    if (!t) {
      t = { info, history: [], ladder: [] };
      this.#tracked.set(info.id, t);
      if (info.state === "ended") this.#retire(info.id);
    } else {
      const wasEnded = t.info.state === "ended";
      t.info = info;
      if (!wasEnded && info.state === "ended") this.#retire(info.id);
    }
    return t;
  }

  #retire(id: string): void {
    this.#ended.push(id);
    const t = this.#tracked.get(id)!;
    t.tap?.close();
    if (t.recorder) {
      this.#stopRecording(t).catch((e) => this.#log.warn(`recording of ${id}: ${errText(e)}`));
    }
    while (this.#ended.length > this.#o.keepEnded) {
      const old = this.#ended.shift()!;
      const o = this.#tracked.get(old);
      if (o && o.info.state === "ended") {
        this.#tracked.delete(old);
        this.logTap.forget(old);
      }
    }
  }

  #onEvent(e: CallEvent): void {
    if (this.#closed) return;
    const t = this.#track(e.call);
    if (e.type === "stats") return; // sampled each second by the hub itself
    if (e.type === "message") {
      const entry = ladderEntry(e);
      t.ladder.push(entry);
      if (t.ladder.length > this.#o.ladderMax) t.ladder.splice(0, t.ladder.length - this.#o.ladderMax);
      for (const c of this.#clients) {
        if (c.selected === e.call.id) safeSend(c, { type: "ladder", id: e.call.id, entry });
      }
    }
    const row = callRow(e.call, !!t.recorder);
    for (const c of this.#clients) {
      if (c.dialed.has(e.call.id) || c.selected === e.call.id) {
        safeSend(c, {
          type: "event",
          event: { type: e.type, id: e.call.id, call: row, ...(e.detail ? { detail: e.detail } : {}), time: e.time },
        });
      }
    }
    if (e.type === "ended") {
      for (const c of this.#clients) if (c.playing?.id === e.call.id) this.#stopPlaying(c, "ended");
    }
    if (e.type !== "message") this.#dirty();
  }

  /** One chart sample of every answered call; the table and the selected calls' charts follow. */
  #sample(): void {
    const now = this.#wall();
    for (const [id, t] of this.#tracked) {
      if (t.info.state !== "answered") continue;
      const info = this.#calls.call(id);
      if (info) t.info = info;
      const stats = info?.stats ?? this.#calls.session(id)?.stats;
      if (!stats) continue;
      const sample = statsSample(now, stats, t.prev);
      t.prev = { t: now, stats: { ...stats } };
      t.history.push(sample);
      if (t.history.length > this.#o.historySeconds) t.history.splice(0, t.history.length - this.#o.historySeconds);
      for (const c of this.#clients) if (c.selected === id) safeSend(c, { type: "sample", id, sample });
      if (t.recorder) t.recorder.rec.flush().catch((e) => this.#log.warn(`recording of ${id}: ${errText(e)}`));
    }
    this.#flush();
  }

  #dirty(): void {
    if (this.#flushTimer || this.#closed) return;
    this.#flushTimer = this.#o.clock.after(FLUSH_MS, () => this.#flush());
  }

  #flush(): void {
    this.#flushTimer?.cancel();
    this.#flushTimer = undefined;
    for (const c of this.#clients) this.#sendPage(c);
    const incoming = this.#incomingMessage();
    const text = JSON.stringify(incoming);
    if (text !== this.#lastIncoming) {
      this.#lastIncoming = text;
      for (const c of this.#clients) safeSend(c, incoming);
    }
  }

  #rows(filter: Client["filter"]): Tracked[] {
    const list = [...this.#tracked.values()].filter((t) =>
      filter === "all" || (filter === "ended" ? t.info.state === "ended" : t.info.state !== "ended")
    );
    return list.sort((a, b) => b.info.startedAt - a.info.startedAt || (a.info.id < b.info.id ? -1 : 1));
  }

  #sendPage(c: Client): void {
    const rows = this.#rows(c.filter);
    const pages = Math.max(1, Math.ceil(rows.length / c.size));
    if (c.page >= pages) c.page = pages - 1;
    const counts = { total: this.#tracked.size, dialing: 0, ringing: 0, answered: 0, ended: 0 };
    for (const t of this.#tracked.values()) counts[t.info.state]++;
    safeSend(c, {
      type: "calls",
      filter: c.filter,
      page: c.page,
      pageSize: c.size,
      pages,
      matching: rows.length,
      counts,
      rows: rows.slice(c.page * c.size, (c.page + 1) * c.size).map((t) => callRow(t.info, !!t.recorder)),
    });
  }

  #incomingMessage(): Record<string, unknown> {
    const order = { ringing: 0, dialing: 1, answered: 2, ended: 3 };
    const list = [...this.#tracked.values()]
      .filter((t) => t.info.direction === "in" && t.info.state !== "ended")
      .sort((a, b) => order[a.info.state] - order[b.info.state] || b.info.startedAt - a.info.startedAt);
    return {
      type: "incoming",
      calls: list.slice(0, INCOMING_LISTED).map((t) => callRow(t.info, !!t.recorder)),
      more: Math.max(0, list.length - INCOMING_LISTED),
    };
  }

  #onLogLine(key: string, entry: LogEntry): void {
    if (this.#closed) return;
    for (const c of this.#clients) {
      if (c.selected !== undefined && logKeyMatches(key, c.selected)) {
        safeSend(c, { type: "log", id: c.selected, entries: [entry] });
      }
    }
  }

  // ---- pages ----------------------------------------------------------------------------------

  #disconnect(c: Client): void {
    if (!this.#clients.delete(c)) return;
    c.playing?.off();
    c.playing = undefined;
  }

  async #receive(c: Client, text: string): Promise<void> {
    let msg: Record<string, unknown>;
    try {
      const parsed = JSON.parse(text);
      if (!parsed || typeof parsed !== "object" || Array.isArray(parsed)) throw new Error("not an object");
      msg = parsed;
    } catch (e) {
      safeSend(c, { type: "reply", ok: false, error: `not a JSON object: ${errText(e)}` });
      return;
    }
    const req = typeof msg.req === "number" ? msg.req : undefined;
    try {
      const result = await this.#op(c, msg);
      safeSend(c, { type: "reply", ...(req !== undefined ? { req } : {}), op: msg.op, ok: true, result });
    } catch (e) {
      safeSend(c, { type: "reply", ...(req !== undefined ? { req } : {}), op: msg.op, ok: false, error: errText(e) });
    }
  }

  async #op(c: Client, m: Record<string, unknown>): Promise<unknown> {
    if (this.#closed) throw new Error("the console is closing");
    const id = () => {
      if (typeof m.id !== "string" || !m.id) throw new Error(`${m.op}: which call? ("id" is missing)`);
      return m.id;
    };
    switch (m.op) {
      case "dial":
        return await this.#dial(c, m);
      case "probe":
        return { file: await this.#o.library.probe(m.file) };
      case "files":
        return { files: await this.#o.library.list() };
      case "answer":
        await this.#calls.answer(id());
        return {};
      case "reject":
        await this.#calls.reject(id(), typeof m.status === "number" ? m.status : 486);
        return {};
      case "hangup": {
        const callId = id();
        if (!this.#calls.call(callId)) throw new Error(`hangup: no call "${callId}"`);
        // Replies at once: a BYE's transaction may take up to 32 s when its answer is lost; the call ends meanwhile.
        this.#calls.hangup(callId).catch((e) => this.#log.warn(`hangup ${callId}: ${errText(e)}`));
        return {};
      }
      case "select":
        return this.#select(c, m.id === null || m.id === undefined ? undefined : id());
      case "play":
        return this.#play(c, id());
      case "pause": {
        const callId = id();
        if (c.playing?.id === callId) this.#stopPlaying(c, "paused");
        return {};
      }
      case "record":
        return await this.#record(id(), m.on !== false);
      case "page": {
        const size = typeof m.size === "number" ? Math.trunc(m.size) : c.size;
        if (!(size >= 1 && size <= 500)) throw new Error(`page: size must be 1..500, got ${m.size}`);
        const filter = m.filter ?? c.filter;
        if (filter !== "all" && filter !== "active" && filter !== "ended") {
          throw new Error(`page: filter must be all, active or ended, got ${JSON.stringify(m.filter)}`);
        }
        const page = typeof m.page === "number" ? Math.max(0, Math.trunc(m.page)) : c.page;
        Object.assign(c, { size, filter, page });
        this.#sendPage(c);
        return {};
      }
      case "auto_answer":
        this.#autoAnswer = m.on === true;
        for (const o of this.#clients) safeSend(o, { type: "settings", autoAnswer: this.#autoAnswer });
        return {};
      case "dtmf": {
        // A JSON value: String() of an object whose toString is not a function threw a TypeError ("Cannot convert
        // object to primitive value"), which was the page's answer.
        const digits = m.digits ?? "";
        if (typeof digits !== "string" && typeof digits !== "number") {
          throw new Error(`dtmf: "digits" is a string of 0-9 * # A-D, got ${typeof digits}`);
        }
        await this.#calls.sendDtmf(id(), String(digits));
        return {};
      }
      default:
        throw new Error(`unknown op ${JSON.stringify(m.op)} (ops: ${OPS.join(", ")})`);
    }
  }

  async #dial(c: Client, m: Record<string, unknown>): Promise<unknown> {
    if (typeof m.target !== "string" || !m.target.trim()) {
      throw new Error("dial: no SIP URI to call: type one, e.g. sip:bob@127.0.0.1:5062");
    }
    const file = await this.#o.library.probe(m.file);
    const info = await this.#calls.dial(m.target.trim(), {
      variables: { file: file.path, loop: m.loop === true },
    });
    const t = this.#track(this.#calls.call(info.id) ?? info);
    c.dialed.add(info.id);
    // Keep the set of calls placed by this page bounded: forget those no longer tracked.
    for (const d of c.dialed) if (!this.#tracked.has(d)) c.dialed.delete(d);
    this.#dirty();
    this.#log.info(`call to ${m.target} placed from the console, playing ${file.name} (${file.format})`, {
      call: info.id,
    });
    return { call: callRow(t.info, !!t.recorder), ladder: t.ladder, file };
  }

  #select(c: Client, id: string | undefined): unknown {
    c.selected = id;
    const t = id !== undefined ? this.#tracked.get(id) : undefined;
    if (id !== undefined && !t) throw new Error(`select: no call "${id}" (it ended long ago, or never existed)`);
    const msg = {
      type: "selected",
      id: id ?? null,
      call: t ? callRow(t.info, !!t.recorder) : null,
      history: t?.history ?? [],
      ladder: t?.ladder ?? [],
      logs: id !== undefined ? this.logTap.linesOf(id) : [],
    };
    safeSend(c, msg);
    return {};
  }

  /** The call's audio tap, created on first use; throws saying why a call has none. */
  #tapOf(id: string): { t: Tracked; tap: AudioTap } {
    const t = this.#tracked.get(id);
    if (!t) throw new Error(`no call "${id}"`);
    if (t.tap && !t.tap.ended) return { t, tap: t.tap };
    if (t.info.state !== "answered") throw new Error(`call ${id} is ${t.info.state}: only an answered call has audio`);
    const session = this.#calls.session(id);
    if (!session) {
      throw new Error(
        this.#calls.noSessions
          ? `call ${id}: no audio: ${this.#calls.noSessions}`
          : `call ${id} has no media session now`,
      );
    }
    const bus = session.bus(this.#o.audioBus);
    if (bus.ended) throw new Error(`call ${id}: its audio has ended`);
    if (bus.publishers === 0) {
      throw new Error(
        `call ${id}: its chains publish nothing on the bus "${this.#o.audioBus}": end the pipeline file's receive ` +
          `chain with {"use": "bus-sink", "bus": "${this.#o.audioBus}"} after the g711-decoder`,
      );
    }
    const tap = new AudioTap(bus, () => {
      if (t.tap === tap) t.tap = undefined;
    });
    t.tap = tap;
    return { t, tap };
  }

  #play(c: Client, id: string): unknown {
    if (c.playing?.id === id) return { playing: id };
    const { tap } = this.#tapOf(id);
    if (c.playing) this.#stopPlaying(c, "paused");
    let announced = false;
    const off = tap.add((f) => {
      if (!announced) {
        announced = true;
        safeSend(c, { type: "audio", id, state: "playing", sampleRate: f.sampleRate, channels: f.channels });
      }
      if (!c.client.sendAudio(encodeAudio(f.samples, f.sampleRate, f.channels))) c.audioDropped++;
    });
    c.playing = { id, off };
    safeSend(c, { type: "audio", id, state: "waiting" });
    return { playing: id };
  }

  #stopPlaying(c: Client, state: "paused" | "ended"): void {
    const p = c.playing;
    if (!p) return;
    c.playing = undefined;
    p.off();
    safeSend(c, { type: "audio", id: p.id, state });
  }

  async #record(id: string, on: boolean): Promise<unknown> {
    const t0 = this.#tracked.get(id);
    if (!t0) throw new Error(`no call "${id}"`);
    if (!on) {
      if (!t0.recorder) return { recording: false };
      const path = t0.recorder.rec.path;
      await this.#stopRecording(t0);
      this.#dirty();
      return { recording: false, path };
    }
    if (t0.recorder) return { recording: true, path: t0.recorder.rec.path };
    const { t, tap } = this.#tapOf(id);
    const stamp = new Date(this.#wall()).toISOString().replace(/[-:]/g, "").replace(/\..*$/, "");
    const base = join(this.#o.recordDir, `console-${sanitizeFileComponent(id)}-${stamp}`);
    let rec: WavRecorder;
    // Never over another recording: one of this call started in the same second gets -2, -3, ...
    for (let n = 1;; n++) {
      const r = new WavRecorder(`${base}${n > 1 ? `-${n}` : ""}.wav`, {
        onError: (e) => this.#recordingFailed(t, r, e),
        openFile: this.#o.openRecording,
      });
      try {
        await r.open();
        rec = r;
        break;
      } catch (e) {
        if (e instanceof Deno.errors.AlreadyExists && n < 1000) continue;
        this.#log.warn(`cannot record to ${r.path}: ${errText(e)}`, { call: id });
        throw new Error(`record: cannot write ${r.path}: ${errText(e)}`);
      }
    }
    if (t.recorder || tap.ended || this.#closed) {
      // Another Record of this call, or the call's end, came while the file was created: that one stands.
      await rec.close();
      await Deno.remove(rec.path).catch(() => {});
      if (t.recorder) return { recording: true, path: t.recorder.rec.path };
      throw new Error(`record: call ${id}: its audio has ended`);
    }
    const off = tap.add((f) => rec.write(f));
    t.recorder = { rec, off };
    this.#dirty();
    this.#log.info(`recording to ${rec.path}`, { call: id });
    return { recording: true, path: rec.path };
  }

  /** A recording's write failed: it has stopped; say so once, in the log and to the pages. */
  #recordingFailed(t: Tracked, rec: WavRecorder, e: Error): void {
    if (t.recorder?.rec !== rec) return;
    t.recorder.off();
    t.recorder = undefined;
    const error = `recording to ${rec.path} stopped: ${errText(e)}`;
    this.#log.warn(error, { call: t.info.id });
    for (const c of this.#clients) {
      safeSend(c, { type: "record", id: t.info.id, recording: false, path: rec.path, error });
    }
    this.#dirty();
  }

  async #stopRecording(t: Tracked): Promise<void> {
    const r = t.recorder;
    if (!r) return;
    t.recorder = undefined;
    r.off();
    await r.rec.close();
    this.#log.info(`recording ended: ${r.rec.path} (${r.rec.seconds.toFixed(1)} s)`, { call: t.info.id });
  }
}

function safeSend(c: Client, msg: Record<string, unknown>): void {
  try {
    c.client.send(msg);
  } catch { /* a page that left: its close handler forgets it */ }
}

/** An error's message; for one saying no file descriptor is left, with what to do (its stack is never read). */
function errText(e: unknown): string {
  return `${e instanceof Error ? e.message : String(e)}${outOfFilesHint(e)}`;
}
