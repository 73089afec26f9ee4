/**
 * `dtmf-sender`: injects RFC 4733 telephone events (DTMF) into an RTP stream.
 *
 * Put it after the `rtp-packetizer` (before `rtcp` and `udp-sink`). Audio
 * packets pass through; each key press becomes a train of event packets in the
 * same stream:
 *
 * - same SSRC as the audio, sequence numbers continuing the stream's (the
 *   audio packets after an event packet are renumbered so that the stream's
 *   sequence has no gap);
 * - RTP timestamp: the event's start, the timestamp of the audio packet at
 *   which it begins; the same in every packet of the event;
 * - the first packet has the marker bit; each carries the event code, the
 *   volume (−dBm0) and the duration so far, which grows every `interval` ms
 *   (50 by default); when it reaches the digit's duration three final packets
 *   with the E bit carry it, sent with the next three audio packets;
 * - the next digit begins `gap` ms after the previous one ended, and never
 *   before its final packets have gone out.
 *
 * Event packets are timed by the audio they travel with: each is emitted right
 * after the audio packet whose end marks its time (the stream time is the RTP
 * timestamp, so a pipeline paced by its `udp-sink` sends them at the right
 * moment). The audio goes on unchanged during an event (RFC 4733 lets a sender
 * carry events and audio in one stream; ours never contains the tones), so a
 * receiver's recording is not disturbed. Pending digits wait while no audio
 * flows.
 *
 * Digits come from the `dtmf` option (`dtmf_at` seconds into the stream), or
 * from the application: the stage registers itself in its session, and
 * {@linkcode sendDtmf}`(session, "123#")` queues digits on it.
 *
 * With `payload_type` 0 (the SIP control's `${dtmf.payloadType}` when the peer
 * did not accept telephone-event) the stage passes frames through unchanged and
 * sends nothing.
 *
 * @example Pipeline entry
 * ```json
 * { "use": "dtmf-sender", "payload_type": "${dtmf.payloadType}", "dtmf": "1234#", "dtmf_at": 1.0 }
 * ```
 *
 * @module
 */
import { payloadSamples } from "../../core/codec.ts";
import type { Format, RtpFrame } from "../../core/frame.ts";
import { expectFormat, type FormatCheck } from "../../core/format_check.ts";
import { ResourceKind, type Session } from "../../core/session.ts";
import type { Emit, StageContext, TransformStage } from "../../core/stage.ts";
import { DTMF_DIGITS, dtmfCodes, encodeTelephoneEvent, isTelephoneEvent, TELEPHONE_EVENT } from "./telephone_event.ts";
import {
  DTMF_DEFAULT_DURATION_MS,
  DTMF_DEFAULT_GAP_MS,
  DTMF_DEFAULT_INTERVAL_MS,
  DTMF_DEFAULT_VOLUME,
  dtmfSender,
  type DtmfSenderStageOptions,
} from "./plugins.ts";

export { DTMF_DEFAULT_DURATION_MS, DTMF_DEFAULT_GAP_MS, DTMF_DEFAULT_INTERVAL_MS, DTMF_DEFAULT_VOLUME };
/** How many packets with the E bit end an event (RFC 4733: the final packet is sent three times). */
export const DTMF_END_PACKETS = 3;

/** How digits are sent: {@linkcode sendDtmf}'s options. */
export interface DtmfSendOptions {
  /** Tone duration of each digit, ms, 40..8000 (default 160). */
  duration?: number;
  /** Pause after each digit, ms, 0..10000 (default 100). */
  gap?: number;
  /** Volume, −dBm0, 0..63 (default 10). */
  volume?: number;
}

/** What {@linkcode sendDtmf} resolves with once every digit's final packets have been emitted. */
export interface DtmfSendResult {
  /** The digits sent, as given (letters upper-cased). */
  digits: string;
  /** Event packets emitted for them. */
  packets: number;
}

/** One digit sent, as the sender reports it (event `dtmf-sent`). */
export interface SentDtmf {
  /** The DTMF character. */
  digit: string;
  /** Event code. */
  code: number;
  /** Its duration, ms. */
  duration_ms: number;
  /** RTP timestamp of its start. */
  timestamp: number;
  /** SSRC of the stream. */
  ssrc: number;
  /** Event packets emitted for it (updates and the final packets). */
  packets: number;
}

interface Job {
  digits: string;
  remaining: number;
  packets: number;
  resolve: (r: DtmfSendResult) => void;
  reject: (e: Error) => void;
}

interface Pending {
  code: number;
  durationMs: number;
  gapMs: number;
  volume: number;
  /** Earliest start, ms into the stream (from the first audio packet). */
  atMs?: number;
  job: Job;
}

interface Active extends Pending {
  /** Stream position (samples) of its start, and its raw RTP timestamp. */
  start: number;
  ts: number;
  /** Duration and update interval in timestamp units. */
  dur: number;
  every: number;
  /** Packets emitted; final packets emitted; the last duration sent; the next update's elapsed time. */
  sent: number;
  ends: number;
  lastDuration: number;
  nextUpdate: number;
}

/** Options of a {@linkcode DtmfSender}. */
export interface DtmfSenderOptions {
  /** The telephone-event payload type; 0: none negotiated (frames pass unchanged, `send` rejects). */
  payloadType: number;
  /** Update interval, ms (default 50). */
  interval?: number;
  /** Samples of an audio packet (default: one per payload byte, as G.711). */
  samplesOf?: (frame: RtpFrame) => number;
  /** Called once per digit when its final packets have been emitted. */
  onSent?: (d: SentDtmf) => void;
}

/** Checks the options of one send; throws a RangeError naming the wrong one. */
function checkSendOptions(o: DtmfSendOptions): Required<DtmfSendOptions> {
  const r = {
    duration: o.duration ?? DTMF_DEFAULT_DURATION_MS,
    gap: o.gap ?? DTMF_DEFAULT_GAP_MS,
    volume: o.volume ?? DTMF_DEFAULT_VOLUME,
  };
  const check = (name: string, v: number, lo: number, hi: number) => {
    if (typeof v !== "number" || !Number.isFinite(v) || v < lo || v > hi) {
      throw new RangeError(`DTMF ${name} must be ${lo}..${hi}, got ${v}`);
    }
  };
  check("duration (ms)", r.duration, 40, 8000);
  check("gap (ms)", r.gap, 0, 10000);
  check("volume (-dBm0)", r.volume, 0, 63);
  if (!Number.isInteger(r.volume)) throw new RangeError(`DTMF volume must be an integer 0..63, got ${r.volume}`);
  return r;
}

/**
 * The sending logic of the `dtmf-sender` stage, without a clock: audio frames
 * drive it ({@linkcode process}), and it emits event packets between them.
 *
 * @example
 * ```ts
 * const tx = new DtmfSender({ payloadType: 101 });
 * const done = tx.send("12");
 * for (const audio of packets) tx.process(audio, emit); // audio renumbered, event packets between
 * await done; // { digits: "12", packets: ... }
 * ```
 */
export class DtmfSender {
  /** The telephone-event payload type (0: none). */
  readonly payloadType: number;
  readonly #interval: number;
  readonly #samplesOf: (frame: RtpFrame) => number;
  readonly #onSent?: (d: SentDtmf) => void;
  readonly #queue: Pending[] = [];
  #active: Active | undefined;
  #closed: string | undefined;
  // Stream state, from the audio frames.
  #firstTs: number | undefined;
  #lastTs = 0;
  #pos = 0; // extended position (samples since the first audio packet) of the last audio packet
  #clockRate = 8000;
  #ssrc = 0;
  #offset = 0; // event packets inserted: added to the audio's sequence numbers
  #lastSeq: number | undefined; // the last sequence number emitted
  #nextFree = 0; // earliest start of the next event (stream position)
  #n = { audio: 0, events: 0, packets: 0, digits: 0 };

  /**
   * Creates a sender.
   * @param opts payload type, update interval, payload size rule, listener
   */
  constructor(opts: DtmfSenderOptions) {
    if (!Number.isInteger(opts.payloadType) || opts.payloadType < 0 || opts.payloadType > 127) {
      throw new RangeError(`dtmf-sender: payload type must be 0..127, got ${opts.payloadType}`);
    }
    this.payloadType = opts.payloadType;
    this.#interval = opts.interval ?? DTMF_DEFAULT_INTERVAL_MS;
    this.#samplesOf = opts.samplesOf ?? ((f) => f.payload.length);
    this.#onSent = opts.onSent;
  }

  /** Digits queued and not finished (the one being sent included). */
  get pending(): number {
    return this.#queue.length + (this.#active ? 1 : 0);
  }

  /** Counters: audio packets passed, event packets emitted, digits sent, digits pending. */
  stats(): Record<string, number> {
    return {
      payload_type: this.payloadType,
      audio_packets: this.#n.audio,
      event_packets: this.#n.packets,
      digits_sent: this.#n.digits,
      digits_pending: this.pending,
    };
  }

  /**
   * Queues `digits` (`0`–`9`, `*`, `#`, `A`–`D`). They start at the next audio
   * packet after the digits queued before them (and with `atMs`, no earlier than
   * that many ms into the stream). Resolves once the last one's final packets
   * have been emitted; rejects when the stream ends first, or at once when no
   * telephone-event payload type was negotiated or the digits or options are
   * invalid.
   */
  send(digits: string, opts: DtmfSendOptions & { atMs?: number } = {}): Promise<DtmfSendResult> {
    try {
      if (this.#closed) throw new Error(`cannot send DTMF ${JSON.stringify(digits)}: ${this.#closed}`);
      if (this.payloadType === 0) {
        throw new Error(
          `cannot send DTMF ${JSON.stringify(digits)}: telephone-event (RFC 4733) was not negotiated with the peer`,
        );
      }
      const codes = dtmfCodes(digits);
      if (codes.length === 0) return Promise.resolve({ digits: "", packets: 0 });
      const o = checkSendOptions(opts);
      const { promise, resolve, reject } = Promise.withResolvers<DtmfSendResult>();
      const job: Job = {
        digits: codes.map((c) => DTMF_DIGITS[c]).join(""),
        remaining: codes.length,
        packets: 0,
        resolve,
        reject,
      };
      codes.forEach((code, i) => {
        this.#queue.push({
          code,
          durationMs: o.duration,
          gapMs: o.gap,
          volume: o.volume,
          ...(i === 0 && opts.atMs !== undefined ? { atMs: opts.atMs } : {}),
          job,
        });
      });
      return promise;
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /**
   * Passes an RTP frame on (audio renumbered past the event packets already
   * inserted) and emits the event packets due by the end of it. Returns false
   * when an emit asked to slow down.
   */
  process(frame: RtpFrame, emit: Emit): boolean {
    if (this.payloadType === 0) return emit(frame);
    if (frame.payloadType === this.payloadType && !isTelephoneEvent(frame)) {
      throw new Error(
        `dtmf-sender: the audio uses payload type ${frame.payloadType}, the one set for telephone-event: ` +
          `set "payload_type" to the telephone-event type negotiated in SDP`,
      );
    }
    if (isTelephoneEvent(frame) || frame.payload.length === 0) return this.#forward(frame, emit);
    // The stream position of this packet, from its timestamp (unwrapped).
    const ts = frame.timestamp >>> 0;
    if (this.#firstTs === undefined) {
      this.#firstTs = ts;
      this.#pos = 0;
    } else {
      this.#pos += (ts - this.#lastTs) | 0;
    }
    this.#lastTs = ts;
    this.#ssrc = frame.ssrc >>> 0;
    if (frame.clockRate) this.#clockRate = frame.clockRate;
    this.#n.audio++;
    if (!this.#active) this.#maybeStart(ts);
    let ok = this.#forward(frame, emit);
    const a = this.#active;
    if (a) ok = this.#emitDue(a, this.#pos + this.#samplesOf(frame) - a.start, emit) && ok;
    return ok;
  }

  /**
   * End of stream: the digit under way is ended at once (its final packets, with
   * the duration reached), so that the peer sees no key stuck down; digits not
   * begun are dropped and their sends rejected.
   */
  finish(emit: Emit): void {
    const a = this.#active;
    if (a) {
      while (a.ends < DTMF_END_PACKETS) this.#packet(a, true, a.lastDuration, emit);
      this.#done(a);
    }
    this.close("the stream ended before they could be sent");
  }

  /** Stops taking digits; rejects the sends not finished with `why`. */
  close(why = "the sender was closed"): void {
    this.#closed ??= why;
    const jobs = new Set(this.#queue.map((p) => p.job));
    if (this.#active) jobs.add(this.#active.job);
    this.#queue.length = 0;
    this.#active = undefined;
    for (const j of jobs) {
      const unsent = j.digits.slice(j.digits.length - j.remaining);
      j.reject(new Error(`DTMF ${JSON.stringify(unsent)} not sent: ${why}`));
    }
  }

  #forward(frame: RtpFrame, emit: Emit): boolean {
    const seq = (frame.sequence + this.#offset) & 0xffff;
    this.#lastSeq = seq;
    return emit(this.#offset === 0 ? frame : { ...frame, sequence: seq });
  }

  /** Starts the next queued digit at the audio packet at the current position, if it is due. */
  #maybeStart(ts: number): void {
    const p = this.#queue[0];
    if (!p) return;
    const rate = this.#clockRate;
    const at = p.atMs !== undefined ? Math.round((p.atMs * rate) / 1000) : 0;
    if (this.#pos < Math.max(this.#nextFree, at)) return;
    this.#queue.shift();
    const dur = Math.max(1, Math.round((p.durationMs * rate) / 1000));
    if (dur > 0xffff) {
      p.job.reject(new RangeError(`DTMF duration ${p.durationMs} ms is longer than one event at ${rate} Hz`));
      this.#queue.splice(0, this.#queue.length, ...this.#queue.filter((q) => q.job !== p.job));
      return;
    }
    this.#active = {
      ...p,
      start: this.#pos,
      ts,
      dur,
      every: Math.max(1, Math.round((this.#interval * rate) / 1000)),
      sent: 0,
      ends: 0,
      lastDuration: 0,
      nextUpdate: 0,
    };
  }

  /** Emits what the digit under way owes at `elapsed` (timestamp units since its start). */
  #emitDue(a: Active, elapsed: number, emit: Emit): boolean {
    let ok = true;
    if (a.ends > 0) {
      // Retransmissions of the final packet, one with each audio packet.
      ok = this.#packet(a, true, a.dur, emit);
    } else if (elapsed >= a.dur) {
      ok = this.#packet(a, true, a.dur, emit);
    } else if (a.sent === 0 || elapsed >= a.nextUpdate) {
      ok = this.#packet(a, false, elapsed, emit);
      a.nextUpdate = (Math.floor(elapsed / a.every) + 1) * a.every;
    }
    if (a.ends >= DTMF_END_PACKETS) {
      this.#done(a);
      this.#nextFree = a.start + a.dur + Math.round((a.gapMs * this.#clockRate) / 1000);
    }
    return ok;
  }

  /** Emits one event packet of `a`. */
  #packet(a: Active, end: boolean, duration: number, emit: Emit): boolean {
    const payload = encodeTelephoneEvent({ event: a.code, end, volume: a.volume, duration });
    const seq = this.#lastSeq === undefined ? 0 : (this.#lastSeq + 1) & 0xffff;
    this.#lastSeq = seq;
    this.#offset++;
    const frame: RtpFrame = {
      kind: "rtp",
      payloadType: this.payloadType,
      sequence: seq,
      timestamp: a.ts,
      ssrc: this.#ssrc,
      marker: a.sent === 0,
      payload,
      codec: TELEPHONE_EVENT,
      clockRate: this.#clockRate,
    };
    a.sent++;
    a.lastDuration = duration;
    if (end) a.ends++;
    a.job.packets++;
    this.#n.packets++;
    return emit(frame);
  }

  /** The digit `a` is finished: report it, settle its send when it was the last digit. */
  #done(a: Active): void {
    this.#active = undefined;
    this.#n.digits++;
    this.#onSent?.({
      digit: DTMF_DIGITS[a.code],
      code: a.code,
      duration_ms: Math.round((a.lastDuration * 1000) / this.#clockRate),
      timestamp: a.ts,
      ssrc: this.#ssrc,
      packets: a.sent,
    });
    if (--a.job.remaining === 0) a.job.resolve({ digits: a.job.digits, packets: a.job.packets });
  }
}

/** Where a session's `dtmf-sender` stage registers itself, for {@linkcode sendDtmf}. */
export class DtmfSenderSlot {
  /** The sender of the session's send chain, while it runs. */
  sender: DtmfSender | undefined;
  /** Why the last sender went away (for the error of a late send). */
  gone: string | undefined;
}

/** The per-session resource the `dtmf-sender` stage registers in. */
export const DTMF_SENDER: ResourceKind<DtmfSenderSlot> = new ResourceKind("DTMF sender");

/**
 * Sends DTMF digits in a session's RTP stream, through the `dtmf-sender` stage
 * of its send chain: they start at the next audio packet (after any digits
 * already queued). Resolves when the last digit's final packets have been
 * emitted; rejects with a clear error when the session has no `dtmf-sender`,
 * telephone-event was not negotiated, the digits or options are invalid, or the
 * stream ends first.
 *
 * @example
 * ```ts
 * await sendDtmf(session, "123#", { duration: 120, gap: 80 });
 * ```
 */
export function sendDtmf(session: Session, digits: string, opts: DtmfSendOptions = {}): Promise<DtmfSendResult> {
  let slot: DtmfSenderSlot;
  try {
    slot = session.resource(DTMF_SENDER, "", () => new DtmfSenderSlot());
  } catch (e) {
    return Promise.reject(new Error(`cannot send DTMF: ${e instanceof Error ? e.message : e}`));
  }
  if (!slot.sender) {
    return Promise.reject(
      new Error(
        slot.gone
          ? `cannot send DTMF ${JSON.stringify(digits)}: ${slot.gone}`
          : `cannot send DTMF: session ${session.id} has no dtmf-sender stage (put {"use": "dtmf-sender", ` +
            `"payload_type": "\${dtmf.payloadType}"} after the rtp-packetizer of its send chain)`,
      ),
    );
  }
  return slot.sender.send(digits, opts);
}

export { dtmfSender, type DtmfSenderStageOptions };

/** The stage's name and what it takes, as its declaration (plugins.ts) says. */
const NAME = dtmfSender.name;
const ACCEPTS: Format[] = dtmfSender.accepts!;

/** Creates a `dtmf-sender` stage from validated options: the plugin's `create`, loaded when first used. */
export function createDtmfSender(opts: DtmfSenderStageOptions, sctx: StageContext): TransformStage {
  const check: FormatCheck = {
    stage: NAME,
    ctx: sctx,
    advice: () => "put it after the rtp-packetizer",
  };
  const slot = sctx.session.resource(DTMF_SENDER, "", () => new DtmfSenderSlot());
  if (slot.sender) {
    throw new Error(`${NAME}: session ${sctx.session.id} already has a dtmf-sender; use one per session`);
  }
  const samplesOf = (f: RtpFrame) => {
    const info = f.codec ? sctx.codecs.get(f.codec) : undefined;
    return info ? payloadSamples(info, f.payload.length) : f.payload.length;
  };
  const sender = new DtmfSender({
    payloadType: opts.payload_type,
    interval: opts.interval,
    samplesOf,
    onSent(d) {
      sctx.log.info(`DTMF ${d.digit} sent (${d.duration_ms} ms)`);
      sctx.event("dtmf-sent", d);
    },
  });
  slot.sender = sender;
  slot.gone = undefined;
  const release = (why: string) => {
    if (slot.sender === sender) {
      slot.sender = undefined;
      slot.gone = why;
    }
  };
  if (opts.dtmf) {
    if (opts.payload_type === 0) {
      sctx.log.warn(
        `DTMF ${JSON.stringify(opts.dtmf)} will not be sent: the peer did not accept telephone-event (RFC 4733)`,
      );
    } else {
      sender.send(opts.dtmf, {
        atMs: opts.dtmf_at * 1000,
        duration: opts.duration,
        gap: opts.gap,
        volume: opts.volume,
      })
        .catch((e) => sctx.log.warn(e instanceof Error ? e.message : String(e)));
    }
  }
  return {
    negotiate(input: Format | undefined): Format {
      return expectFormat(input, ACCEPTS, check);
    },
    process(frame, emit) {
      if (frame.kind !== "rtp") return emit(frame);
      return sender.process(frame, emit); // forwarded as it is (passesInputThrough)
    },
    flush(emit) {
      release("the send chain has ended");
      sender.finish(emit);
    },
    close() {
      release("the send chain has ended");
      sender.close("the send chain has ended");
    },
    stats() {
      return sender.stats();
    },
  };
}

export default dtmfSender;
