/**
 * The browser console's WebSocket protocol: the JSON messages the page and the
 * service exchange, the binary audio frames, and the pure functions that turn
 * a call and its media statistics into what the page shows (a table row, one
 * chart sample per second).
 *
 * Page → service (text, JSON): `{ "op": ..., "req": n, ... }`; every op is
 * answered by `{ "type": "reply", "req": n, "ok": true, "result": ... }` or
 * `{ "type": "reply", "req": n, "ok": false, "error": "what went wrong" }`.
 *
 * | op | fields | does |
 * |---|---|---|
 * | `dial` | `target`, `file`, `loop` | checks the file, places a call that plays it (template variables `file`, `loop`) |
 * | `probe` | `file` | checks a file of the library: `{ file }` with its format, or the reason it cannot play |
 * | `answer` / `reject` | `id` (`status`) | decides a ringing incoming call |
 * | `hangup` | `id` | ends a call in whatever state (BYE, CANCEL, rejection); replies at once |
 * | `select` | `id` or null | the call whose charts, ladder and log lines the page follows |
 * | `play` / `pause` | `id` | starts / stops streaming the call's `from-call` audio to this page |
 * | `record` | `id`, `on` | starts / stops recording the call's audio on the server |
 * | `page` | `page`, `size`, `filter` | which page of the call table this page shows (`all`, `active`, `ended`) |
 * | `auto_answer` | `on` | answer incoming calls at once instead of letting them ring here |
 * | `dtmf` | `id`, `digits` | sends DTMF in an answered call |
 *
 * Service → page (text, JSON), by `type`: `hello`, `reply`, `calls` (a page of the table), `incoming` (incoming
 * calls not ended), `event` (a call event of a call the page placed or follows), `selected` (the selected call
 * with its chart history, ladder and log lines), `sample` (one chart sample of the selected call, each second),
 * `ladder` (a SIP message of the selected call), `log` (log lines of the selected call), `audio` (the playing
 * call's audio started, paused, ended), `record` (`{ id, recording: false, path, error }`: a recording stopped
 * because its file could not be written), `settings`, `files`.
 *
 * Service → page (binary): audio of the call the page plays, one frame per message (see {@linkcode encodeAudio}).
 *
 * @module
 */
import type { CallEvent, CallInfo } from "../../core/calls.ts";
import type { MediaStats } from "../../core/session.ts";

/** Protocol version in `hello`. */
export const PROTOCOL_VERSION = 1;

/** One row of the call table (a call without its bulky details). */
export interface CallRow {
  /** The call service's id. */
  id: string;
  /** `in` or `out`. */
  direction: "in" | "out";
  /** `dialing`, `ringing`, `answered`, `ended`. */
  state: CallInfo["state"];
  /** The peer. */
  remote: string;
  /** Our side. */
  local: string;
  /** Negotiated codec. */
  codec?: string;
  /** Start, answer and end (ms since the Unix epoch). */
  startedAt: number;
  /** When answered. */
  answeredAt?: number;
  /** When ended. */
  endedAt?: number;
  /** Who ended it and why. */
  reason?: string;
  /** SIP status of a failure. */
  status?: number;
  /** RTP packets sent. */
  sent: number;
  /** RTP packets received. */
  received: number;
  /** Packets lost of what we receive, % of the call. */
  lossPct: number;
  /** Interarrival jitter of what we receive, ms. */
  jitterMs: number;
  /** Round-trip time from RTCP, ms, once known. */
  rttMs?: number;
  /** True while the console records it. */
  recording?: boolean;
}

/** One chart sample of a call, taken each second from its media statistics. */
export interface StatsSample {
  /** When (ms since the Unix epoch). */
  t: number;
  /** RTP packets sent so far. */
  sent: number;
  /** RTP packets received so far. */
  received: number;
  /** Packets sent per second over the last interval. */
  sendRate: number;
  /** Packets received per second over the last interval. */
  recvRate: number;
  /** Loss of what we receive over the last interval, %. */
  lossPct: number;
  /** Loss of what we receive over the call, %. */
  lossPctCall: number;
  /** Loss the peer reports (RTCP) of what we send, % of the call, once known. */
  remoteLossPct: number | null;
  /** Interarrival jitter of what we receive, ms. */
  jitterMs: number;
  /** Jitter the peer reports (RTCP) of what we send, ms, once known. */
  remoteJitterMs: number | null;
  /** Round-trip time (RTCP), ms, once known. */
  rttMs: number | null;
  /** Playout (jitter-buffer) delay over the call, median and 95th percentile, ms, once played. */
  delayP50: number | null;
  /** See `delayP50`. */
  delayP95: number | null;
  /** Frames concealed per second over the last interval. */
  concealedRate: number;
  /** Frames concealed so far. */
  concealed: number;
  /** Packets that came too late to play, so far. */
  late: number;
}

/** One arrow of a call's SIP ladder (from a `message` call event). */
export interface LadderEntry {
  /** When (ms since the Unix epoch). */
  t: number;
  /** `sent` or `received`. */
  direction: string;
  /** `INVITE`, `180 Ringing`, ... */
  label: string;
  /** CSeq, e.g. `1 INVITE`. */
  cseq?: string;
  /** The peer's address. */
  remote?: string;
  /** True when it carried SDP. */
  sdp?: boolean;
  /** True for a retransmission. */
  retransmission?: boolean;
}

/** One log line of a call. */
export interface LogEntry {
  /** `debug`, `info`, `warn`, `error`. */
  level: string;
  /** The line as the server wrote it. */
  line: string;
}

/** A ladder entry from a `message` call event's details. */
export function ladderEntry(e: CallEvent): LadderEntry {
  const d = e.detail ?? {};
  const str = (v: unknown) => (typeof v === "string" ? v : undefined);
  const label = str(d.label) ?? (str(d.method) ??
    (typeof d.status === "number" ? `${d.status} ${str(d.reason) ?? ""}`.trim() : "message"));
  const entry: LadderEntry = { t: e.time, direction: str(d.direction) ?? "sent", label };
  if (str(d.cseq)) entry.cseq = str(d.cseq);
  if (str(d.remote)) entry.remote = str(d.remote);
  if (d.sdp === true) entry.sdp = true;
  if (d.retransmission === true) entry.retransmission = true;
  return entry;
}

const round = (x: number, d = 1) => Math.round(x * 10 ** d) / 10 ** d;

/** Loss of what we receive over the call, %. */
function callLoss(s: MediaStats): number {
  const expected = s.packetsReceived + s.lost;
  return expected > 0 ? round((s.lost / expected) * 100, 2) : 0;
}

/** The table row of a call. */
export function callRow(c: CallInfo, recording = false): CallRow {
  const s = c.stats;
  const row: CallRow = {
    id: c.id,
    direction: c.direction,
    state: c.state,
    remote: c.remote,
    local: c.local,
    startedAt: c.startedAt,
    sent: s?.packetsSent ?? 0,
    received: s?.packetsReceived ?? 0,
    lossPct: s ? callLoss(s) : 0,
    jitterMs: s ? round(s.jitterMs) : 0,
  };
  if (c.codec) row.codec = c.codec;
  if (c.answeredAt !== undefined) row.answeredAt = c.answeredAt;
  if (c.endedAt !== undefined) row.endedAt = c.endedAt;
  if (c.reason) row.reason = c.reason;
  if (c.status !== undefined) row.status = c.status;
  if (s?.rttMs !== undefined) row.rttMs = round(s.rttMs);
  if (recording) row.recording = true;
  return row;
}

/**
 * The chart sample at `t` from the statistics `now`, with rates over the
 * interval since the sample `prev` (none for the first: rates 0).
 */
export function statsSample(t: number, now: MediaStats, prev?: { t: number; stats: MediaStats }): StatsSample {
  const dt = prev ? Math.max(0.001, (t - prev.t) / 1000) : 0;
  const p = prev?.stats;
  const d = (k: "packetsSent" | "packetsReceived" | "lost" | "concealedFrames") => p ? Math.max(0, now[k] - p[k]) : 0;
  const dRecv = d("packetsReceived"), dLost = d("lost");
  return {
    t,
    sent: now.packetsSent,
    received: now.packetsReceived,
    sendRate: dt ? round(d("packetsSent") / dt) : 0,
    recvRate: dt ? round(dRecv / dt) : 0,
    lossPct: dRecv + dLost > 0 ? round((dLost / (dRecv + dLost)) * 100, 2) : 0,
    lossPctCall: callLoss(now),
    remoteLossPct: now.remoteLost !== undefined && now.packetsSent > 0
      ? round((now.remoteLost / now.packetsSent) * 100, 2)
      : null,
    jitterMs: round(now.jitterMs, 2),
    remoteJitterMs: now.remoteJitterMs !== undefined ? round(now.remoteJitterMs, 2) : null,
    rttMs: now.rttMs !== undefined ? round(now.rttMs, 2) : null,
    delayP50: now.playoutDelayMs ? round(now.playoutDelayMs.p50) : null,
    delayP95: now.playoutDelayMs ? round(now.playoutDelayMs.p95) : null,
    concealedRate: dt ? round(d("concealedFrames") / dt) : 0,
    concealed: now.concealedFrames,
    late: now.late,
  };
}

/** Bytes before the samples of a binary audio message. */
export const AUDIO_HEADER_BYTES = 8;

/** Binary message kind: 16-bit PCM audio. */
export const AUDIO_KIND_PCM16 = 1;

/**
 * A binary audio message: byte 0 = 1 (16-bit PCM), byte 1 = channels, bytes
 * 2–3 = 0, bytes 4–7 = sample rate (uint32, little-endian), then the
 * interleaved samples as int16 little-endian.
 *
 * @example
 * ```ts
 * const bytes = encodeAudio(new Int16Array([1, -1]), 8000, 1); // 12 bytes
 * ```
 */
export function encodeAudio(samples: Int16Array, sampleRate: number, channels: number): Uint8Array {
  const out = new Uint8Array(AUDIO_HEADER_BYTES + samples.length * 2);
  const v = new DataView(out.buffer);
  v.setUint8(0, AUDIO_KIND_PCM16);
  v.setUint8(1, channels);
  v.setUint32(4, sampleRate, true);
  for (let i = 0; i < samples.length; i++) v.setInt16(AUDIO_HEADER_BYTES + i * 2, samples[i], true);
  return out;
}

/** Reads a binary audio message (the inverse of {@linkcode encodeAudio}); throws on anything else. */
export function decodeAudio(bytes: Uint8Array): { samples: Int16Array; sampleRate: number; channels: number } {
  if (bytes.length < AUDIO_HEADER_BYTES || bytes[0] !== AUDIO_KIND_PCM16 || (bytes.length - AUDIO_HEADER_BYTES) % 2) {
    throw new Error(`not a console audio message (${bytes.length} bytes, kind ${bytes[0]})`);
  }
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = (bytes.length - AUDIO_HEADER_BYTES) / 2;
  const samples = new Int16Array(n);
  for (let i = 0; i < n; i++) samples[i] = v.getInt16(AUDIO_HEADER_BYTES + i * 2, true);
  return { samples, sampleRate: v.getUint32(4, true), channels: bytes[1] };
}
