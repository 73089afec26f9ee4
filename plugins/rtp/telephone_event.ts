/**
 * RFC 4733 telephone events (DTMF in RTP): the 4-byte payload format, the
 * DTMF event codes, and {@linkcode DtmfReceiver}, which turns the packets of a
 * stream into one report per key press, whatever the redundancy.
 *
 * ```
 *  0                   1                   2                   3
 *  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |     event     |E|R| volume    |          duration             |
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * ```
 *
 * `event` is the event code (DTMF: 0–9, `*` 10, `#` 11, A–D 12–15), `E` marks
 * the last packets of an event, `R` is reserved (sent 0, ignored on receipt),
 * `volume` is the power level in −dBm0 (0..63), `duration` the time since the
 * event began, in RTP timestamp units. Every packet of one event carries the
 * event's start as its RTP timestamp; the duration grows with each update, and
 * the final packet (E set) is sent three times. Events travel in the same RTP
 * stream as the audio (same SSRC, sequence numbers shared), under the dynamic
 * payload type SDP negotiated for `telephone-event/8000` (`a=fmtp:<pt> 0-15`).
 *
 * RTP frames that carry telephone events are tagged with the codec name
 * {@linkcode TELEPHONE_EVENT} on their way through a chain: the stages that
 * play, record, pace or report audio (jitter buffer, RTCP, UDP sink) use such a
 * packet's sequence number and never its payload or timing.
 *
 * @module
 */
import type { RtpFrame } from "../../core/frame.ts";

/** The encoding name of RFC 4733 events (SDP `a=rtpmap:<pt> telephone-event/8000`, and RTP frames' `codec`). */
export const TELEPHONE_EVENT = "telephone-event";

/** The events we offer and accept in SDP (`a=fmtp:<pt> 0-15`): the 16 DTMF events. */
export const DTMF_EVENTS_FMTP = "0-15";

/** Bytes of one event in a payload. */
export const TELEPHONE_EVENT_SIZE = 4;

/** The DTMF characters, indexed by their event code (RFC 4733 section 3.2). */
export const DTMF_DIGITS = "0123456789*#ABCD";

/** The largest `duration` one event (segment) can carry. */
export const MAX_EVENT_DURATION = 0xffff;

/** One event of a telephone-event payload. */
export interface TelephoneEvent {
  /** Event code, 0..255 (DTMF 0..15). */
  event: number;
  /** The E bit: the event has ended (its final packets). */
  end: boolean;
  /** Power level in −dBm0, 0..63 (0 is loudest). */
  volume: number;
  /** Time since the event began, in RTP timestamp units, 0..65535. */
  duration: number;
}

/**
 * True for a frame that carries telephone events: tagged so by the
 * `rtp-depacketizer` or the `dtmf-sender`. Such a frame takes a sequence
 * number of its stream but carries no audio and no media timing.
 */
export function isTelephoneEvent(frame: { codec?: string }): boolean {
  return frame.codec === TELEPHONE_EVENT;
}

/**
 * Writes one event (4 bytes, R bit 0) into `out` at `offset` (default: new bytes). Throws a RangeError naming
 * the field that is out of range.
 *
 * @example
 * ```ts
 * encodeTelephoneEvent({ event: 9, end: true, volume: 10, duration: 1600 }); // 09 8a 06 40
 * ```
 */
export function encodeTelephoneEvent(e: TelephoneEvent, out?: Uint8Array, offset = 0): Uint8Array {
  if (!Number.isInteger(e.event) || e.event < 0 || e.event > 255) {
    throw new RangeError(`telephone-event: event code must be 0..255, got ${e.event}`);
  }
  if (!Number.isInteger(e.volume) || e.volume < 0 || e.volume > 63) {
    throw new RangeError(`telephone-event: volume must be 0..63 (-dBm0), got ${e.volume}`);
  }
  if (!Number.isInteger(e.duration) || e.duration < 0 || e.duration > MAX_EVENT_DURATION) {
    throw new RangeError(`telephone-event: duration must be 0..65535 timestamp units, got ${e.duration}`);
  }
  const b = out ?? new Uint8Array(TELEPHONE_EVENT_SIZE);
  b[offset] = e.event;
  b[offset + 1] = (e.end ? 0x80 : 0) | e.volume;
  b[offset + 2] = e.duration >>> 8;
  b[offset + 3] = e.duration & 0xff;
  return b;
}

/**
 * Reads the events of a payload: one per 4 bytes (RFC 4733 lets a packet carry several consecutive events, the
 * last one current). Returns a string saying why the payload is malformed instead.
 *
 * @example
 * ```ts
 * decodeTelephoneEvents(new Uint8Array([0x0b, 0x0a, 0x00, 0xa0])); // [{ event: 11, end: false, volume: 10, duration: 160 }]
 * ```
 */
export function decodeTelephoneEvents(payload: Uint8Array): TelephoneEvent[] | string {
  if (payload.length === 0) return "empty payload";
  if (payload.length % TELEPHONE_EVENT_SIZE !== 0) {
    return `payload of ${payload.length} bytes is not a whole number of 4-byte events`;
  }
  const out: TelephoneEvent[] = [];
  for (let o = 0; o < payload.length; o += TELEPHONE_EVENT_SIZE) {
    out.push({
      event: payload[o],
      end: (payload[o + 1] & 0x80) !== 0,
      volume: payload[o + 1] & 0x3f,
      duration: (payload[o + 2] << 8) | payload[o + 3],
    });
  }
  return out;
}

/** The DTMF character of an event code (`0`–`9`, `*`, `#`, `A`–`D`), or undefined for other codes. */
export function dtmfDigit(code: number): string | undefined {
  return Number.isInteger(code) && code >= 0 && code < 16 ? DTMF_DIGITS[code] : undefined;
}

/**
 * The event codes of a string of DTMF digits (`0`–`9`, `*`, `#`, `A`–`D`, letters in either case). Throws a
 * RangeError naming the first character that is not a digit.
 *
 * @example
 * ```ts
 * dtmfCodes("12#a"); // [1, 2, 11, 12]
 * ```
 */
export function dtmfCodes(digits: string): number[] {
  const out: number[] = [];
  for (const ch of digits) {
    const code = DTMF_DIGITS.indexOf(ch.toUpperCase());
    if (code < 0) {
      throw new RangeError(
        `${JSON.stringify(digits)}: ${JSON.stringify(ch)} is not a DTMF digit (use 0-9, *, #, A-D)`,
      );
    }
    out.push(code);
  }
  return out;
}

/** One telephone event as a receiver reports it, once it has ended. */
export interface ReceivedTelephoneEvent {
  /** The DTMF character (`0`–`9`, `*`, `#`, `A`–`D`); absent for codes beyond 15. */
  digit?: string;
  /** Event code. */
  code: number;
  /** How long it lasted, in ms (the largest duration received, over all its segments). */
  duration_ms: number;
  /** The same in RTP timestamp units. */
  duration: number;
  /** Power level in −dBm0 (0..63) of its last packet. */
  volume: number;
  /** RTP timestamp of its start. */
  timestamp: number;
  /** SSRC of the stream it came in. */
  ssrc: number;
  /**
   * How its end was known: `end-bit` (a packet with E set), `timeout` (no packet of it for the receiver's timeout:
   * its final packets were lost), `next-event` (another event began), `stream-end` (the stream ended first).
   */
  end: "end-bit" | "timeout" | "next-event" | "stream-end";
}

/** A {@linkcode ReceivedTelephoneEvent} of a DTMF key (its `digit` is set). */
export interface ReceivedDtmf extends ReceivedTelephoneEvent {
  /** The DTMF character. */
  digit: string;
}

/** Options of a {@linkcode DtmfReceiver}. */
export interface DtmfReceiverOptions {
  /** RTP clock rate of the events (the audio's, e.g. 8000), for `duration_ms`. */
  clockRate: number;
  /** Called once per event, when it has ended. */
  onEvent: (e: ReceivedTelephoneEvent) => void;
  /**
   * An event none of whose packets arrived for this long (ms) has ended (its final packets were lost); default
   * {@linkcode DTMF_END_TIMEOUT_MS}.
   */
  timeoutMs?: number;
}

/**
 * Events of one packet a receiver reads at most: the last ones (RFC 4733 section 2.5.1.5: a packet may repeat the
 * events before the current one, which comes last). A real sender packs a few; a peer that packed 350 distinct events
 * into each packet made the receiver report (and log) 350 events per packet.
 */
export const MAX_EVENTS_PER_PACKET = 8;

/** Default time without a packet of an event after which a receiver ends it (ms). */
export const DTMF_END_TIMEOUT_MS = 500;

/** Counters of a {@linkcode DtmfReceiver}. */
export interface DtmfReceiverStats {
  /** Telephone-event packets received. */
  packets: number;
  /** Events reported. */
  events: number;
  /** Packets (or events in them) of events already reported: retransmitted final packets, late duplicates. */
  duplicates: number;
  /** Packets whose payload is not telephone events. */
  malformed: number;
  /** Events not read: those before the last {@linkcode MAX_EVENTS_PER_PACKET} of a packet. */
  ignored: number;
  /** Segments of the event under way remembered to absorb their packets once it is reported (at most 32). */
  segments: number;
}

interface Current {
  ssrc: number;
  /** Start of the current segment (RTP timestamp). */
  ts: number;
  code: number;
  /** Duration of the current segment so far. */
  duration: number;
  /** Durations of the segments before it (long events). */
  base: number;
  /**
   * Timestamps of its last {@linkcode DONE_RING} segments (each one's packets are duplicates once it is reported;
   * the ring of reported events keeps no more).
   */
  starts: number[];
  /** Timestamp of the first segment. */
  first: number;
  volume: number;
  /** When its last packet arrived (ms). */
  last: number;
}

/** Recently reported events remembered for deduplication. */
const DONE_RING = 32;

/**
 * Turns received telephone-event packets into one report per event: updates,
 * the redundant final packets and duplicates of an event already reported are
 * absorbed; an event is reported when its first E packet arrives, or when the
 * next event begins, or after `timeoutMs` without a packet of it (call
 * {@linkcode expire} at {@linkcode deadline}), or at the end of the stream
 * ({@linkcode finish}). An event is identified by its SSRC, RTP timestamp and
 * code; a long event sent as several segments (RFC 4733 section 2.5.1.3) is
 * reported once, with their total duration. Of a packet that carries several
 * events, the last {@linkcode MAX_EVENTS_PER_PACKET} are read.
 *
 * @example
 * ```ts
 * const rx = new DtmfReceiver({ clockRate: 8000, onEvent: (e) => console.log(e.digit, e.duration_ms) });
 * rx.receive(rtpFrame, clock.now()); // an RTP frame of the telephone-event payload type
 * ```
 */
export class DtmfReceiver {
  readonly #clockRate: number;
  readonly #onEvent: (e: ReceivedTelephoneEvent) => void;
  readonly #timeoutMs: number;
  #cur: Current | undefined;
  readonly #done: string[] = [];
  readonly #n: Omit<DtmfReceiverStats, "segments"> = {
    packets: 0,
    events: 0,
    duplicates: 0,
    malformed: 0,
    ignored: 0,
  };

  /**
   * Creates a receiver.
   * @param opts clock rate, listener, timeout
   */
  constructor(opts: DtmfReceiverOptions) {
    if (!(opts.clockRate > 0)) throw new RangeError(`DtmfReceiver: clockRate must be positive, got ${opts.clockRate}`);
    this.#clockRate = opts.clockRate;
    this.#onEvent = opts.onEvent;
    this.#timeoutMs = opts.timeoutMs ?? DTMF_END_TIMEOUT_MS;
  }

  /** Counters. */
  stats(): DtmfReceiverStats {
    return { ...this.#n, segments: this.#cur?.starts.length ?? 0 };
  }

  /** When the event under way times out (media-clock ms), or undefined when none is. */
  get deadline(): number | undefined {
    return this.#cur ? this.#cur.last + this.#timeoutMs : undefined;
  }

  /**
   * Takes one telephone-event packet (its SSRC, timestamp and payload) that arrived at `now` (ms). Returns false
   * when its payload is malformed.
   */
  receive(frame: Pick<RtpFrame, "ssrc" | "timestamp" | "payload">, now: number): boolean {
    const events = decodeTelephoneEvents(frame.payload);
    if (typeof events === "string") {
      this.#n.malformed++;
      return false;
    }
    this.#n.packets++;
    // Several events in one packet follow each other: each starts where the previous one ended. Only the last
    // MAX_EVENTS_PER_PACKET are read.
    const skip = Math.max(0, events.length - MAX_EVENTS_PER_PACKET);
    this.#n.ignored += skip;
    let start = frame.timestamp >>> 0;
    for (let i = 0; i < events.length; i++) {
      const e = events[i];
      if (i >= skip) this.#take(frame.ssrc >>> 0, start, e, now);
      start = (start + e.duration) >>> 0;
    }
    return true;
  }

  /** Ends the event under way when its deadline has passed at `now`. */
  expire(now: number): void {
    const d = this.deadline;
    if (d !== undefined && now >= d) this.#report("timeout");
  }

  /** The stream ended: reports the event under way, if any. */
  finish(): void {
    if (this.#cur) this.#report("stream-end");
  }

  #take(ssrc: number, ts: number, e: TelephoneEvent, now: number): void {
    if (this.#done.includes(key(ssrc, ts, e.event))) {
      this.#n.duplicates++;
      return;
    }
    const c = this.#cur;
    if (c && c.ssrc === ssrc && c.code === e.event) {
      const sameSegment = c.ts === ts;
      // A long event goes on in a new segment that starts where the previous one ended (RFC 4733 2.5.1.3).
      const nextSegment = !sameSegment && c.duration >= 0x8000 && ((ts - c.ts) | 0) > 0 &&
        ((ts - c.ts) | 0) <= MAX_EVENT_DURATION;
      if (sameSegment || nextSegment) {
        if (nextSegment) {
          c.base += (ts - c.ts) | 0;
          c.ts = ts;
          c.duration = 0;
          c.starts.push(ts);
          if (c.starts.length > DONE_RING) c.starts.shift();
        }
        c.duration = Math.max(c.duration, e.duration);
        c.volume = e.volume;
        c.last = now;
        if (e.end) this.#report("end-bit");
        return;
      }
    }
    if (c) this.#report("next-event");
    this.#cur = {
      ssrc,
      ts,
      code: e.event,
      duration: e.duration,
      base: 0,
      starts: [ts],
      first: ts,
      volume: e.volume,
      last: now,
    };
    if (e.end) this.#report("end-bit");
  }

  #report(end: ReceivedTelephoneEvent["end"]): void {
    const c = this.#cur!;
    this.#cur = undefined;
    for (const s of c.starts) {
      this.#done.push(key(c.ssrc, s, c.code));
      if (this.#done.length > DONE_RING) this.#done.shift();
    }
    const duration = c.base + c.duration;
    const digit = dtmfDigit(c.code);
    this.#n.events++;
    this.#onEvent({
      ...(digit !== undefined ? { digit } : {}),
      code: c.code,
      duration_ms: Math.round((duration * 1000) / this.#clockRate),
      duration,
      volume: c.volume,
      timestamp: c.first,
      ssrc: c.ssrc,
      end,
    });
  }
}

function key(ssrc: number, ts: number, code: number): string {
  return `${ssrc}:${ts}:${code}`;
}
