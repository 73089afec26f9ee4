/**
 * Test helpers for the WebSocket bridge: a fake {@linkcode CallService} whose
 * calls the test drives (the far end answers, rings, hangs up, sends DTMF),
 * each answered call with a real {@linkcode Session} whose `to-call` bus is
 * read like a send chain would and whose `from-call` bus the test publishes
 * on; and a WebSocket client that queues what it receives.
 *
 * @module
 */
import type { BusSubscription } from "../core/bus.ts";
import type { CallEvent, CallInfo, CallService, DialOptions, IncomingDecision } from "../core/calls.ts";
import type { Clock } from "../core/clock.ts";
import type { PcmFrame } from "../core/frame.ts";
import { Session } from "../core/session.ts";
import { MemoryNetwork } from "../core/net/memory.ts";

/** One call of the fake service. */
interface FakeCall {
  info: CallInfo;
  session?: Session;
  toCall?: BusSubscription;
  endFrom?: () => void;
  pts: number;
}

/** A call service whose far ends the test plays. */
export class FakeCalls implements CallService {
  readonly #clock: Clock;
  readonly #calls = new Map<string, FakeCall>();
  readonly #listeners = new Set<(e: CallEvent) => void>();
  #decider: ((c: CallInfo) => IncomingDecision | Promise<IncomingDecision>) | undefined;
  #n = 0;
  readonly #net: MemoryNetwork;
  /** What the bridge asked, in order (`dial sip:x`, `hangup out-1`, `reject in-1 486`, `dtmf out-1 12#`...). */
  readonly log: string[] = [];
  /** Dial targets that fail at once (dial() rejects), with the error's status. */
  readonly failing = new Map<string, number>();
  /** While set, sendDtmf resolves only when it does (DTMF takes time to send). */
  dtmfHold: Promise<void> | undefined;
  /** Whether an answered call's chains start at once (else: {@linkcode startChains}). */
  autoStart = true;
  /** What an incoming call gets when no decider is set: the control plugin's own policy. */
  defaultPolicy: IncomingDecision = { action: "answer" };

  /**
   * Creates the service.
   * @param clock the clock its sessions run on
   */
  constructor(clock: Clock) {
    this.#clock = clock;
    this.#net = new MemoryNetwork({ clock });
  }

  calls(): CallInfo[] {
    return [...this.#calls.values()].map((c) => ({ ...c.info }));
  }

  call(id: string): CallInfo | undefined {
    const c = this.#calls.get(id);
    return c ? { ...c.info } : undefined;
  }

  dial(target: string, opts?: DialOptions): Promise<CallInfo> {
    this.log.push(`dial ${target}${opts?.ringTimeout ? ` ring=${opts.ringTimeout}` : ""}`);
    const status = this.failing.get(target);
    if (status !== undefined) {
      return Promise.reject(Object.assign(new Error(`cannot call ${target}`), { status }));
    }
    const id = `out-${++this.#n}`;
    const info: CallInfo = {
      id,
      direction: "out",
      state: "dialing",
      remote: target,
      local: "sip:voxpipe@127.0.0.1",
      startedAt: this.#clock.now(),
    };
    this.#calls.set(id, { info, pts: 0 });
    this.#emit("dialing", id);
    return Promise.resolve({ ...info });
  }

  answer(id: string): Promise<void> {
    this.log.push(`answer ${id}`);
    const c = this.#calls.get(id);
    if (!c || c.info.state !== "ringing" || c.info.direction !== "in") {
      return Promise.reject(new Error(`call ${id} is not ringing`));
    }
    this.#answer(c);
    return Promise.resolve();
  }

  reject(id: string, status = 486, reason = "Busy Here"): Promise<void> {
    this.log.push(`reject ${id} ${status}`);
    const c = this.#calls.get(id);
    if (!c || c.info.state === "ended") return Promise.reject(new Error(`call ${id} is not ringing`));
    this.#end(c, `local: ${status} ${reason}`, status);
    return Promise.resolve();
  }

  hangup(id: string): Promise<void> {
    this.log.push(`hangup ${id}`);
    const c = this.#calls.get(id);
    if (!c || c.info.state === "ended") return Promise.resolve();
    const answered = c.info.state === "answered";
    this.#end(c, answered ? "local: BYE" : "local: CANCEL", answered ? undefined : 487);
    return Promise.resolve();
  }

  sendDtmf(id: string, digits: string): Promise<void> {
    this.log.push(`dtmf ${id} ${digits}`);
    return this.dtmfHold ?? Promise.resolve();
  }

  onIncoming(decide: (call: CallInfo) => IncomingDecision | Promise<IncomingDecision>): () => void {
    this.#decider = decide;
    return () => {
      if (this.#decider === decide) this.#decider = undefined;
    };
  }

  onEvent(listener: (event: CallEvent) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  session(id: string): Session | undefined {
    return this.#calls.get(id)?.session;
  }

  /** True while a decider (the bridge's) is set. */
  get hasDecider(): boolean {
    return this.#decider !== undefined;
  }

  // ---- the far end ----

  /** The far end rings (180). */
  ring(id: string): void {
    const c = this.#get(id);
    c.info.state = "ringing";
    this.#emit("progress", id, { status: 180, reason: "Ringing" });
  }

  /** The far end answers a call we dialed. */
  answerRemote(id: string): void {
    this.#answer(this.#get(id));
  }

  /** The far end hangs up (or fails the call with `status`). */
  endRemote(id: string, reason = "remote: BYE", status?: number): void {
    this.#end(this.#get(id), reason, status);
  }

  /** The call's chains start (their session says `started`). */
  startChains(id: string): void {
    this.#get(id).session?.emit({ type: "started", pipeline: "send" });
  }

  /**
   * The far end sends a DTMF digit: the call's receive chain publishes it on the session (`dtmf` event, as the
   * rtp-depacketizer does); with `asCallEvent`, the service reports it as a call event instead.
   */
  dtmfRemote(id: string, digit: string, asCallEvent = false): void {
    const session = this.#get(id).session;
    if (session && !asCallEvent) session.emit({ type: "dtmf", detail: { digit, duration_ms: 100 } });
    else this.#emit("dtmf", id, { digit, durationMs: 100 });
  }

  /** A call arrives from `from`: the decider (or the default policy) decides. Returns its id. */
  async incoming(from: string): Promise<string> {
    const id = `in-${++this.#n}`;
    const info: CallInfo = {
      id,
      direction: "in",
      state: "ringing",
      remote: from,
      local: "sip:voxpipe@127.0.0.1",
      startedAt: this.#clock.now(),
    };
    const c: FakeCall = { info, pts: 0 };
    this.#calls.set(id, c);
    this.#emit("incoming", id);
    const d = this.#decider ? await this.#decider({ ...info }) : this.defaultPolicy;
    this.log.push(`decided ${id} ${d.action}${this.#decider ? "" : " (default)"}`);
    if (d.action === "answer") this.#answer(c);
    else if (d.action === "reject") this.#end(c, `local: ${d.status ?? 486}`, d.status ?? 486);
    return id;
  }

  /**
   * Publishes `samples` (pcm 8000 Hz mono) on the call's from-call bus, as the receive chain would. Returns false
   * when a publish was pushed back (a reader held more than its high-water mark).
   */
  say(id: string, samples: Int16Array, frame = 160): boolean {
    const c = this.#get(id);
    if (!c.session) throw new Error(`call ${id} has no session`);
    const bus = c.session.bus("from-call");
    let ok = true;
    for (let off = 0; off < samples.length; off += frame) {
      const s = samples.slice(off, off + frame);
      const f: PcmFrame = { kind: "pcm", samples: s, sampleRate: 8000, channels: 1, pts: c.pts };
      c.pts += s.length;
      if (!bus.publish(f)) ok = false;
    }
    return ok;
  }

  /** Publishes one frame of another format on from-call. */
  sayFrame(id: string, frame: PcmFrame): void {
    this.#get(id).session!.bus("from-call").publish(frame);
  }

  /** What the bridge played into the call's to-call bus so far (read like its send chain would). */
  heard(id: string): PcmFrame[] {
    const sub = this.#get(id).toCall;
    const out: PcmFrame[] = [];
    if (!sub) return out;
    for (let f = sub.poll(); f; f = sub.poll()) out.push(f as PcmFrame);
    return out;
  }

  #get(id: string): FakeCall {
    const c = this.#calls.get(id);
    if (!c) throw new Error(`no call ${id}`);
    return c;
  }

  #answer(c: FakeCall): void {
    c.session = new Session({ id: c.info.id, clock: this.#clock, net: this.#net });
    // The call's chains are built at the answer: the send chain reads to-call, the receive chain publishes
    // from-call.
    c.toCall = c.session.bus("to-call").subscribe(100000, 100000);
    c.endFrom = c.session.bus("from-call").attachPublisher();
    // The chains start once built (after the answered event, as the SIP control does).
    if (this.autoStart) queueMicrotask(() => this.startChains(c.info.id));
    c.info.state = "answered";
    c.info.answeredAt = this.#clock.now();
    c.info.codec = "PCMU";
    this.#emit("answered", c.info.id);
  }

  #end(c: FakeCall, reason: string, status?: number): void {
    if (c.info.state === "ended") return;
    c.info.state = "ended";
    c.info.endedAt = this.#clock.now();
    c.info.reason = reason;
    if (status !== undefined) c.info.status = status;
    c.endFrom?.();
    c.session?.close();
    this.#emit("ended", c.info.id);
  }

  #emit(type: CallEvent["type"], id: string, detail?: Record<string, unknown>): void {
    const call = { ...this.#get(id).info };
    for (const l of [...this.#listeners]) l({ type, call, detail, time: this.#clock.now() });
  }
}

/** A closed connection's code and reason. */
export interface Closed {
  /** Close code. */
  code: number;
  /** Close reason. */
  reason: string;
}

/** A WebSocket client that queues the messages it receives. */
export class WsClient {
  readonly ws: WebSocket;
  readonly #queue: string[] = [];
  #waiter: (() => void) | undefined;
  /** Resolves when the connection closes. */
  readonly closed: Promise<Closed>;
  /** Resolves when it is open (rejects if it fails first). */
  readonly opened: Promise<void>;
  /** Every message received, in order. */
  readonly all: string[] = [];

  /**
   * Connects.
   * @param url the bridge's URL with its query
   * @param protocols subprotocols to offer
   */
  constructor(url: string, protocols?: string | string[]) {
    this.ws = new WebSocket(url, protocols);
    this.ws.onmessage = (e) => {
      const m = typeof e.data === "string" ? e.data : `<binary ${e.data}>`;
      this.#queue.push(m);
      this.all.push(m);
      const w = this.#waiter;
      this.#waiter = undefined;
      w?.();
    };
    this.closed = new Promise((resolve) => {
      this.ws.addEventListener("close", (e) => {
        resolve({ code: e.code, reason: e.reason });
        const w = this.#waiter;
        this.#waiter = undefined;
        w?.();
      });
    });
    this.opened = new Promise((resolve, reject) => {
      this.ws.addEventListener("open", () => resolve(), { once: true });
      this.ws.addEventListener("error", () => reject(new Error(`cannot connect to ${url}`)), { once: true });
    });
  }

  /** Sends a message. */
  send(m: string): void {
    this.ws.send(m);
  }

  /** Sends a JSON message. */
  json(m: unknown): void {
    this.ws.send(JSON.stringify(m));
  }

  /** The next message (rejects after `guardMs` of real time: only a guard against a hung test). */
  async next(guardMs = 10000): Promise<string> {
    const deadline = Date.now() + guardMs;
    while (this.#queue.length === 0) {
      if (this.ws.readyState === WebSocket.CLOSED) throw new Error("connection closed while waiting for a message");
      const left = deadline - Date.now();
      if (left <= 0) throw new Error("no message within the guard time");
      let t: ReturnType<typeof setTimeout> | undefined;
      await new Promise<void>((resolve) => {
        this.#waiter = resolve;
        t = setTimeout(resolve, left);
      });
      clearTimeout(t);
    }
    return this.#queue.shift()!;
  }

  /** The next message, parsed as JSON. */
  async nextJson(): Promise<Record<string, unknown>> {
    return JSON.parse(await this.next());
  }

  /** Messages until one matches `pred` (returned with the ones skipped). */
  async until(pred: (m: string) => boolean): Promise<{ match: string; skipped: string[] }> {
    const skipped: string[] = [];
    for (;;) {
      const m = await this.next();
      if (pred(m)) return { match: m, skipped };
      skipped.push(m);
    }
  }

  /** Messages queued and not read yet (taken). */
  drain(): string[] {
    return this.#queue.splice(0);
  }

  /** Text protocol: sends PING and returns what came before the PONG (everything sent before is handled). */
  async sync(ping = "PING", pong: (m: string) => boolean = (m) => m === "PONG"): Promise<string[]> {
    this.send(ping);
    return (await this.until(pong)).skipped;
  }

  /** JSON protocol: the same with `{"event":"ping"}`. */
  syncJson(): Promise<string[]> {
    return this.sync(JSON.stringify({ event: "ping" }), (m) => m === '{"event":"pong"}');
  }

  /** Closes and waits until closed. */
  async close(): Promise<void> {
    if (this.ws.readyState === WebSocket.OPEN || this.ws.readyState === WebSocket.CONNECTING) this.ws.close();
    await this.closed;
  }
}

/**
 * A WebSocket client that completes the handshake over raw TCP and then never reads: the bridge's sends pile up
 * in its socket (a slow client).
 */
export async function stuckClient(port: number, query: string): Promise<Deno.Conn> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const key = btoa("voxpipe-ws-test!");
  const req = `GET /?${query} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
    `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: voxpipe-text\r\n\r\n`;
  await conn.write(new TextEncoder().encode(req));
  // Read the 101 answer only (up to its blank line), then nothing more.
  const buf = new Uint8Array(1);
  let head = "";
  while (!head.endsWith("\r\n\r\n")) {
    const n = await conn.read(buf);
    if (n === null) throw new Error("connection closed during the handshake");
    head += String.fromCharCode(buf[0]);
  }
  if (!head.startsWith("HTTP/1.1 101")) throw new Error(`handshake refused: ${head.split("\r\n")[0]}`);
  return conn;
}

/** Sends one masked text frame from a raw TCP client (a client's frames must be masked). */
export async function sendRawText(conn: Deno.Conn, text: string): Promise<void> {
  const payload = new TextEncoder().encode(text);
  if (payload.length > 125) throw new Error("sendRawText: short messages only");
  const mask = new Uint8Array([1, 2, 3, 4]);
  const frame = new Uint8Array(6 + payload.length);
  frame[0] = 0x81;
  frame[1] = 0x80 | payload.length;
  frame.set(mask, 2);
  for (let i = 0; i < payload.length; i++) frame[6 + i] = payload[i] ^ mask[i % 4];
  await conn.write(frame);
}

/** Samples that survive G.711 µ-law exactly (decode of every code, in a pattern), `n` of them from `seed`. */
export function mulawExactSamples(n: number, seed = 1, decode: Int16Array): Int16Array {
  const out = new Int16Array(n);
  let x = seed >>> 0;
  for (let i = 0; i < n; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    out[i] = decode[(x >>> 16) & 0xff];
  }
  return out;
}

/** Waits (real time, polling) until `cond` holds; throws after `guardMs`, only a guard against a hung test. */
export async function waitFor(cond: () => boolean, what: string, guardMs = 10000): Promise<void> {
  const end = Date.now() + guardMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`gave up waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/**
 * One read from `conn`: the bytes, or null at its end (or a reset). Throws after `guardMs` of real time without
 * bytes: only a guard against a hung test, it decides nothing else.
 */
export async function readGuarded(conn: Deno.Conn, guardMs = 10000): Promise<Uint8Array | null> {
  const chunk = new Uint8Array(65536);
  let t: ReturnType<typeof setTimeout> | undefined;
  const guard = new Promise<"guard">((r) => t = setTimeout(() => r("guard"), guardMs));
  let n: number | null | "guard";
  try {
    n = await Promise.race([conn.read(chunk), guard]);
  } catch {
    n = null; // reset
  } finally {
    clearTimeout(t);
  }
  if (n === "guard") throw new Error("nothing arrived within the guard time");
  return n === null ? null : chunk.subarray(0, n);
}

/** Reads a raw client's connection: the server's frames, or its end. */
export class RawFrames {
  #buf = new Uint8Array(0);
  /** True once the server closed the connection. */
  ended = false;

  /**
   * Reads from `conn`.
   * @param conn a connection past its handshake (stuckClient's)
   */
  constructor(readonly conn: Deno.Conn) {}

  async #more(guardMs: number): Promise<boolean> {
    const got = await readGuarded(this.conn, guardMs);
    if (got === null) {
      this.ended = true;
      return false;
    }
    const b = new Uint8Array(this.#buf.length + got.length);
    b.set(this.#buf);
    b.set(got, this.#buf.length);
    this.#buf = b;
    return true;
  }

  /**
   * The next frame (a close frame's payload as `code` and `reason`), or null when the connection ended. Throws after
   * `guardMs` of real time without bytes: only a guard against a hung test.
   */
  async next(guardMs = 10000): Promise<{ op: number; text: string; code?: number } | null> {
    for (;;) {
      const b = this.#buf;
      if (b.length >= 2) {
        const l7 = b[1] & 0x7f;
        const at = l7 === 126 ? 4 : l7 === 127 ? 10 : 2;
        if (b.length >= at) {
          const len = l7 === 126
            ? (b[2] << 8) | b[3]
            : l7 === 127
            ? Number(new DataView(b.buffer, b.byteOffset).getBigUint64(2))
            : l7;
          if (b.length >= at + len) {
            this.#buf = b.slice(at + len);
            const p = b.subarray(at, at + len);
            const op = b[0] & 0x0f;
            if (op === 8) {
              return { op, code: (p[0] << 8) | p[1], text: new TextDecoder().decode(p.subarray(2)) };
            }
            return { op, text: new TextDecoder().decode(p) };
          }
        }
      }
      if (!await this.#more(guardMs)) return null;
    }
  }

  /** Reads (dropping frames) until the server closes the connection. */
  async untilEnd(guardMs = 10000): Promise<void> {
    while (await this.next(guardMs) !== null) { /* dropped */ }
  }
}

/** The header of a masked client frame declaring `length` payload bytes (the payload is for the caller to send). */
export function rawHeader(op: number, length: number): Uint8Array {
  const h = new Uint8Array(14);
  h[0] = 0x80 | op;
  h[1] = 0x80 | 127;
  new DataView(h.buffer).setBigUint64(2, BigInt(length));
  // mask key 0: the payload goes as it is
  return h;
}
