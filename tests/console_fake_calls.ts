/**
 * A call service without SIP for the console's tests: calls placed with dial
 * ring, answer and carry a tone on their session's `from-call` bus, with
 * media statistics that grow as the clock runs; incoming calls arrive with
 * {@linkcode FakeCalls.incoming} and follow the deciders; every step emits the
 * events (and `message` ladder entries, and log lines with `call=`) the SIP
 * control emits.
 */
import type { CallEvent, CallInfo, CallService, DialOptions, IncomingDecision } from "../core/calls.ts";
import type { Clock, Timer } from "../core/clock.ts";
import type { Logger } from "../core/log.ts";
import { MemoryNetwork } from "../core/net/memory.ts";
import { sanitizeFileComponent } from "../core/paths.ts";
import { Session } from "../core/session.ts";

interface FakeCall {
  /** The Call-ID "on the wire" (log lines carry it); the id is it sanitized, like the SIP control's. */
  wire: string;
  info: CallInfo;
  session?: Session;
  timers: Timer[];
  end?: () => void;
  decide?: (d: IncomingDecision) => void;
  variables?: Record<string, string | number | boolean>;
}

/** Options of {@linkcode FakeCalls}. */
export interface FakeCallsOptions {
  /** Clock the calls run on. */
  clock: Clock;
  /** Where the calls log (lines carry `call=`). */
  log: Logger;
  /** ms from INVITE to 180 (default 50). */
  ringAfterMs?: number;
  /** ms from INVITE to 200 for dialed calls (default 300); `Infinity`: never answered. */
  answerAfterMs?: number;
  /** Frequency of the tone the calls carry (default 440 Hz). */
  toneHz?: number;
  /** Wall-clock ms at clock time 0 (default 0). */
  epoch?: number;
}

/** See the module documentation. */
export class FakeCalls implements CallService {
  readonly #o: Required<FakeCallsOptions>;
  readonly #calls = new Map<string, FakeCall>();
  readonly #listeners = new Set<(e: CallEvent) => void>();
  readonly #deciders: ((c: CallInfo) => IncomingDecision | Promise<IncomingDecision>)[] = [];
  readonly #net: MemoryNetwork;
  #n = 0;
  /** Variables of every dial, in order. */
  readonly dials: { target: string; variables: Record<string, string | number | boolean> }[] = [];
  /** Hang-ups asked, in order. */
  readonly hangups: string[] = [];

  /**
   * Creates the service.
   * @param o clock, logger, timings
   */
  constructor(o: FakeCallsOptions) {
    this.#o = { ringAfterMs: 50, answerAfterMs: 300, toneHz: 440, epoch: 0, ...o };
    this.#net = new MemoryNetwork({ clock: o.clock });
  }

  #wall(): number {
    return this.#o.epoch + this.#o.clock.now();
  }

  #snapshot(c: FakeCall): CallInfo {
    return { ...c.info, ...(c.session && c.info.state === "answered" ? { stats: { ...c.session.stats } } : {}) };
  }

  #emit(c: FakeCall, type: CallEvent["type"], detail?: Record<string, unknown>): void {
    const e: CallEvent = { type, call: this.#snapshot(c), ...(detail ? { detail } : {}), time: this.#wall() };
    for (const l of [...this.#listeners]) l(e);
  }

  #message(c: FakeCall, direction: "sent" | "received", label: string, cseq: string, sdp = false): void {
    const status = /^\d{3}/.test(label) ? Number(label.slice(0, 3)) : undefined;
    this.#emit(c, "message", {
      direction,
      remote: "127.0.0.1:5062",
      cseq,
      sdp,
      retransmission: false,
      label,
      ...(status ? { status, reason: label.slice(4) } : { method: label }),
    });
    this.#o.log.child("SIP").info(`${label} ${direction}`, { call: c.wire });
  }

  calls(): CallInfo[] {
    return [...this.#calls.values()].map((c) => this.#snapshot(c));
  }

  call(id: string): CallInfo | undefined {
    const c = this.#calls.get(id);
    return c ? this.#snapshot(c) : undefined;
  }

  dial(target: string, opts: DialOptions = {}): Promise<CallInfo> {
    if (!/^sip:/.test(target)) return Promise.reject(new Error(`dial: "${target}" is not a SIP URI`));
    const wire = `out-${++this.#n}@fake`;
    const id = sanitizeFileComponent(wire);
    const c: FakeCall = {
      wire,
      info: {
        id,
        direction: "out",
        state: "dialing",
        remote: target,
        local: "sip:voxpipe@127.0.0.1",
        startedAt: this.#wall(),
      },
      timers: [],
      variables: opts.variables ?? {},
    };
    this.dials.push({ target, variables: c.variables! });
    this.#calls.set(id, c);
    this.#message(c, "sent", "INVITE", "1 INVITE", true);
    this.#emit(c, "dialing");
    const clock = this.#o.clock;
    c.timers.push(clock.after(this.#o.ringAfterMs, () => {
      this.#message(c, "received", "180 Ringing", "1 INVITE");
      c.info.state = "ringing";
      this.#emit(c, "progress", { status: 180, reason: "Ringing" });
    }));
    if (Number.isFinite(this.#o.answerAfterMs)) {
      c.timers.push(clock.after(this.#o.answerAfterMs, () => {
        this.#message(c, "received", "200 OK", "1 INVITE", true);
        this.#message(c, "sent", "ACK", "1 ACK");
        this.#answered(c);
      }));
    }
    return Promise.resolve(this.#snapshot(c));
  }

  /** An incoming call from `remote`: the newest decider decides (answer, reject, ring); without one it is answered. */
  async incoming(remote: string): Promise<string> {
    const wire = `in-${++this.#n}@fake`;
    const id = sanitizeFileComponent(wire);
    const c: FakeCall = {
      wire,
      info: { id, direction: "in", state: "ringing", remote, local: "sip:voxpipe@127.0.0.1", startedAt: this.#wall() },
      timers: [],
    };
    this.#calls.set(id, c);
    this.#message(c, "received", "INVITE", "1 INVITE", true);
    this.#message(c, "sent", "180 Ringing", "1 INVITE");
    this.#emit(c, "incoming");
    const decider = this.#deciders.at(-1);
    const d = decider ? await decider(this.#snapshot(c)) : { action: "answer" as const };
    this.#apply(c, d);
    return id;
  }

  #apply(c: FakeCall, d: IncomingDecision): void {
    if (d.action === "answer") {
      this.#message(c, "sent", "200 OK", "1 INVITE", true);
      this.#message(c, "received", "ACK", "1 ACK");
      this.#answered(c);
    } else if (d.action === "reject") {
      const status = d.status ?? 486;
      this.#message(c, "sent", `${status} ${d.reason ?? "Busy Here"}`, "1 INVITE");
      this.#ended(c, `local: ${status} ${d.reason ?? "Busy Here"}`, status);
    } else {
      c.decide = (x) => {
        c.decide = undefined;
        this.#apply(c, x);
      };
    }
  }

  #answered(c: FakeCall): void {
    c.info.state = "answered";
    c.info.answeredAt = this.#wall();
    c.info.codec = "PCMU";
    const session = new Session({ id: c.info.id, clock: this.#o.clock, net: this.#net });
    c.session = session;
    const bus = session.bus("from-call");
    bus.format = { kind: "pcm", sampleRate: 8000, channels: 1 };
    const endBus = bus.attachPublisher();
    let pts = 0;
    let frames = 0;
    const clock = this.#o.clock;
    const start = clock.now();
    const tick = () => {
      frames++;
      const t = clock.after(start + (frames + 1) * 20 - clock.now(), tick);
      c.timers.push(t);
      if (c.timers.length > 8) c.timers.splice(0, c.timers.length - 8);
      const samples = new Int16Array(160);
      for (let i = 0; i < 160; i++) {
        samples[i] = Math.round(8000 * Math.sin((2 * Math.PI * this.#o.toneHz * (pts + i)) / 8000));
      }
      bus.publish({ kind: "pcm", samples, sampleRate: 8000, channels: 1, pts });
      pts += 160;
      const s = session.stats;
      s.packetsSent++;
      s.bytesSent += 172;
      s.packetsReceived++;
      s.bytesReceived += 172;
      if (frames % 50 === 0) s.lost++;
      s.jitterMs = 1.5 + (frames % 7) / 10;
      if (frames >= 50) {
        s.rttMs = 0.4;
        s.remoteLost = Math.floor(frames / 100);
        s.remoteJitterMs = 2;
        s.playoutDelayMs = { p50: 40, p95: 60, max: 80 };
      }
      if (frames % 25 === 0) s.concealedFrames++;
    };
    c.timers.push(clock.after(20, tick));
    c.end = () => {
      endBus();
      session.close();
    };
    this.#emit(c, "answered", { status: 200, codec: "PCMU" });
  }

  #ended(c: FakeCall, reason: string, status?: number): void {
    if (c.info.state === "ended") return;
    for (const t of c.timers) t.cancel();
    c.timers = [];
    const stats = c.session ? { ...c.session.stats } : undefined;
    c.end?.();
    c.info.state = "ended";
    c.info.endedAt = this.#wall();
    c.info.reason = reason;
    if (status !== undefined) c.info.status = status;
    if (stats) c.info.stats = stats;
    this.#o.log.child("SIP").info(`call ended: ${reason}`, { call: c.wire });
    this.#emit(c, "ended");
  }

  /** The peer hangs up (BYE received). */
  remoteHangup(id: string): void {
    const c = this.#calls.get(id);
    if (!c) throw new Error(`no call ${id}`);
    this.#message(c, "received", "BYE", "2 BYE");
    this.#message(c, "sent", "200 OK", "2 BYE");
    this.#ended(c, "remote: BYE");
  }

  answer(id: string): Promise<void> {
    const c = this.#calls.get(id);
    if (!c?.decide) return Promise.reject(new Error(`cannot answer call ${id}: it is not ringing`));
    c.decide({ action: "answer" });
    return Promise.resolve();
  }

  reject(id: string, status = 486, reason?: string): Promise<void> {
    const c = this.#calls.get(id);
    if (!c?.decide) return Promise.reject(new Error(`cannot reject call ${id}: it is not ringing`));
    c.decide({ action: "reject", status, ...(reason ? { reason } : {}) });
    return Promise.resolve();
  }

  hangup(id: string): Promise<void> {
    const c = this.#calls.get(id);
    if (!c) return Promise.reject(new Error(`no call "${id}"`));
    this.hangups.push(id);
    if (c.info.state === "answered") {
      this.#message(c, "sent", "BYE", "2 BYE");
      this.#ended(c, "local: BYE");
    } else if (c.info.direction === "out") {
      this.#message(c, "sent", "CANCEL", "1 CANCEL");
      this.#ended(c, "local: CANCEL");
    } else {
      this.#apply(c, { action: "reject", status: 603, reason: "Decline" });
    }
    return Promise.resolve();
  }

  sendDtmf(): Promise<void> {
    return Promise.resolve();
  }

  onIncoming(decide: (call: CallInfo) => IncomingDecision | Promise<IncomingDecision>): () => void {
    this.#deciders.push(decide);
    return () => {
      const i = this.#deciders.lastIndexOf(decide);
      if (i >= 0) this.#deciders.splice(i, 1);
    };
  }

  onEvent(listener: (event: CallEvent) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  session(id: string): Session | undefined {
    const c = this.#calls.get(id);
    return c?.info.state === "answered" ? c.session : undefined;
  }

  /** Ends every call (for the end of a test). */
  closeAll(): void {
    for (const c of this.#calls.values()) if (c.info.state !== "ended") this.#ended(c, "local: test over");
  }
}
