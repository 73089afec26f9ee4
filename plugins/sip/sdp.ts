/**
 * SDP offer/answer for one audio stream (RFC 3264, RFC 4566) with G.711
 * (PCMU payload type 0, PCMA 8), on top of `sdp-transform`.
 *
 * @module
 */
// @ts-types="@types/sdp-transform"
import * as sdpTransform from "sdp-transform";
import { excerpt, isIpAddress } from "./syntax.ts";

type SessionDescription = sdpTransform.SessionDescription;
type MediaDescription = sdpTransform.MediaDescription;

/** Codecs this module negotiates. */
export type AudioCodec = "PCMU" | "PCMA";

/** Static RTP payload types of the supported codecs (RFC 3551). */
export const STATIC_PAYLOAD_TYPES: Readonly<Record<AudioCodec, number>> = { PCMU: 0, PCMA: 8 };

const STATIC_BY_PT: Readonly<Record<number, AudioCodec>> = { 0: "PCMU", 8: "PCMA" };

/** The SDP is malformed or cannot be used. `status` is the SIP status to answer with (400 or 488). */
export class SdpError extends Error {
  /** SIP status to answer an offer with. */
  readonly status: number;
  /**
   * Creates the error.
   * @param message what is wrong
   * @param status SIP status for the answer (default 488)
   */
  constructor(message: string, status = 488) {
    super(message);
    this.name = "SdpError";
    this.status = status;
  }
}

/** The offer has no audio codec in common with ours (answer `488 Not Acceptable Here`). */
export class NoCommonCodecError extends SdpError {
  /** Codec names offered (in the offer's order). */
  readonly offered: string[];
  /** Codecs we support. */
  readonly supported: AudioCodec[];
  /**
   * Creates the error.
   * @param offered codec names found in the offer
   * @param supported our codecs
   */
  constructor(offered: string[], supported: AudioCodec[]) {
    super(`no common codec: offered ${offered.join(", ") || "none"}, supported ${supported.join(", ")}`, 488);
    this.name = "NoCommonCodecError";
    this.offered = offered;
    this.supported = supported;
  }
}

/** Options of {@linkcode createOffer}. */
export interface OfferOptions {
  /** Our RTP address (IPv4 or IPv6), put in `c=` and `o=`. */
  address: string;
  /** Our RTP port. */
  port: number;
  /** Codecs in preference order (default `["PCMU", "PCMA"]`). */
  codecs?: AudioCodec[];
  /** Packetization time in ms we want to receive (default 20). */
  ptime?: number;
  /** Session id for `o=` (default: random digits). */
  sessionId?: string;
  /** Session version for `o=` (default 1). */
  sessionVersion?: number;
  /** User name for `o=` (default `voxpipe`). */
  userName?: string;
  /** Direction (default `sendrecv`). */
  direction?: Direction;
  /** RTCP port to announce with `a=rtcp` (default: none, meaning port + 1). */
  rtcpPort?: number;
}

/** Media direction attribute. */
export type Direction = "sendrecv" | "sendonly" | "recvonly" | "inactive";

/** Options of {@linkcode createAnswer}. */
export interface AnswerOptions extends Omit<OfferOptions, "direction"> {
  /** Our preferred direction; combined with the offer's (default `sendrecv`). */
  direction?: Direction;
}

/** What was agreed for the audio stream, as seen from the side that reads the SDP. */
export interface NegotiatedAudio {
  /** Where to send RTP (the SDP author's address). */
  remoteAddress: string;
  /** The SDP author's RTP port. */
  remotePort: number;
  /** The SDP author's RTCP port (`a=rtcp`, else RTP port + 1). */
  remoteRtcpPort: number;
  /** The codec. */
  codec: AudioCodec;
  /** RTP payload type for it (as signalled, static or dynamic). */
  payloadType: number;
  /** RTP clock rate (8000). */
  clockRate: number;
  /** Packetization time the SDP author wants to receive (`a=ptime`, default 20). */
  ptime: number;
  /** Direction as declared by the SDP author. */
  direction: Direction;
  /** Address family of the connection address. */
  ipVersion: 4 | 6;
}

function randomSessionId(): string {
  const b = crypto.getRandomValues(new Uint32Array(2));
  return String((b[0] % 0x7fffffff) * 1000 + (b[1] % 1000) + 1);
}

function ipVersion(address: string): 4 | 6 {
  return address.includes(":") ? 6 : 4;
}

function baseSession(opts: OfferOptions | AnswerOptions): SessionDescription {
  const ver = ipVersion(opts.address);
  return {
    version: 0,
    origin: {
      username: opts.userName ?? "voxpipe",
      sessionId: opts.sessionId ?? randomSessionId(),
      sessionVersion: opts.sessionVersion ?? 1,
      netType: "IN",
      ipVer: ver,
      address: opts.address,
    },
    name: "voxpipe",
    timing: { start: 0, stop: 0 },
    connection: { version: ver, ip: opts.address },
    media: [],
  };
}

function audioMedia(opts: OfferOptions | AnswerOptions, codecs: { codec: AudioCodec; pt: number }[]): MediaDescription {
  const m: MediaDescription = {
    type: "audio",
    port: opts.port,
    protocol: "RTP/AVP",
    payloads: codecs.map((c) => c.pt).join(" "),
    rtp: codecs.map((c) => ({ payload: c.pt, codec: c.codec, rate: 8000 })),
    fmtp: [],
    ptime: opts.ptime ?? 20,
    direction: opts.direction ?? "sendrecv",
  };
  if (opts.rtcpPort !== undefined) m.rtcp = { port: opts.rtcpPort };
  return m;
}

/**
 * Creates an SDP offer with one audio stream.
 *
 * @example
 * ```ts
 * const offer = createOffer({ address: "127.0.0.1", port: 40000, codecs: ["PCMU", "PCMA"], ptime: 20 });
 * // contains "m=audio 40000 RTP/AVP 0 8", "a=rtpmap:0 PCMU/8000", "a=ptime:20", "a=sendrecv"
 * ```
 */
export function createOffer(opts: OfferOptions): string {
  const codecs = opts.codecs ?? ["PCMU", "PCMA"];
  if (codecs.length === 0) throw new SdpError("no codecs to offer");
  const s = baseSession(opts);
  s.media.push(audioMedia(opts, codecs.map((c) => ({ codec: c, pt: STATIC_PAYLOAD_TYPES[c] }))));
  return sdpTransform.write(s);
}

/** Codec name for a payload type of a media description (rtpmap first, then the static table). */
function codecOf(m: MediaDescription, pt: number): { name: string; rate: number; channels: number } | undefined {
  const map = m.rtp?.find((r) => r.payload === pt);
  if (map) return { name: map.codec.toUpperCase(), rate: map.rate ?? 8000, channels: map.encoding ?? 1 };
  const st = STATIC_BY_PT[pt];
  return st ? { name: st, rate: 8000, channels: 1 } : undefined;
}

function payloadList(m: MediaDescription): number[] {
  return String(m.payloads ?? "").trim().split(/\s+/).filter((p) => /^\d+$/.test(p)).map(Number);
}

function parseSdp(text: string): SessionDescription {
  if (!/^\s*v=0/.test(text)) throw new SdpError("not an SDP body (no v=0 line)", 400);
  let s: SessionDescription;
  try {
    s = sdpTransform.parse(text);
  } catch (e) {
    throw new SdpError(`malformed SDP: ${e instanceof Error ? e.message : e}`, 400);
  }
  if (!Array.isArray(s.media)) throw new SdpError("malformed SDP: no media", 400);
  return s;
}

/** Picks the first payload type of `m`, in its order, whose codec we support. */
function pick(m: MediaDescription, supported: AudioCodec[]): { codec: AudioCodec; pt: number } | undefined {
  for (const pt of payloadList(m)) {
    const c = codecOf(m, pt);
    if (!c || c.rate !== 8000 || c.channels !== 1) continue;
    const name = c.name as AudioCodec;
    if (supported.includes(name)) return { codec: name, pt };
  }
  return undefined;
}

function offeredNames(s: SessionDescription): string[] {
  const out: string[] = [];
  for (const m of s.media) {
    if (m.type !== "audio") continue;
    for (const pt of payloadList(m)) out.push(codecOf(m, pt)?.name ?? String(pt));
  }
  return out;
}

const ANSWER_DIRECTION: Record<Direction, Direction> = {
  sendrecv: "sendrecv",
  sendonly: "recvonly",
  recvonly: "sendonly",
  inactive: "inactive",
};

function combine(offered: Direction, ours: Direction): Direction {
  const mirror = ANSWER_DIRECTION[offered];
  const send = (mirror === "sendrecv" || mirror === "sendonly") && (ours === "sendrecv" || ours === "sendonly");
  const recv = (mirror === "sendrecv" || mirror === "recvonly") && (ours === "sendrecv" || ours === "recvonly");
  return send && recv ? "sendrecv" : send ? "sendonly" : recv ? "recvonly" : "inactive";
}

/**
 * Answers an offer (RFC 3264 §6): the first audio stream with a usable port is
 * accepted with the first codec *in the offer's order* that we support, keeping
 * the offer's payload type; every other m-line is answered with port 0.
 * Throws {@linkcode NoCommonCodecError} (→ 488) when no codec matches, and
 * {@linkcode SdpError} when the offer is malformed or has no audio stream.
 *
 * @example
 * ```ts
 * const answer = createAnswer(offer, { address: "127.0.0.1", port: 41000, codecs: ["PCMA", "PCMU"] });
 * negotiated(answer).codec; // the offer's first codec that we support
 * ```
 */
export function createAnswer(offer: string, opts: AnswerOptions): string {
  const supported = opts.codecs ?? ["PCMU", "PCMA"];
  const o = parseSdp(offer);
  const s = baseSession(opts);
  let accepted = false;
  let sawAudio = false;
  for (const m of o.media) {
    if (!accepted && m.type === "audio" && m.port !== 0 && /^RTP\/AVP$/i.test(m.protocol)) {
      sawAudio = true;
      const choice = pick(m, supported);
      if (choice) {
        accepted = true;
        const offered = (m.direction ?? o.direction ?? "sendrecv") as Direction;
        s.media.push(audioMedia({ ...opts, direction: combine(offered, opts.direction ?? "sendrecv") }, [choice]));
        continue;
      }
    }
    const first = payloadList(m)[0] ?? 0;
    s.media.push({ type: m.type, port: 0, protocol: m.protocol, payloads: String(first), rtp: [], fmtp: [] });
  }
  if (!accepted) {
    if (!sawAudio) throw new SdpError("offer has no usable RTP/AVP audio stream");
    throw new NoCommonCodecError(offeredNames(o), supported);
  }
  return sdpTransform.write(s);
}

/**
 * Reads what an SDP (an answer, or an offer from the callee's side) says about
 * its audio stream: the first audio m-line with a non-zero port and a codec we
 * support. Media-level `c=` wins over session-level. Throws {@linkcode SdpError}
 * when the stream was rejected (port 0) or unusable — a connection address
 * that is a host name too (488: it is never resolved) —, {@linkcode NoCommonCodecError}
 * when its codecs are not ours.
 *
 * @example
 * ```ts
 * const n = negotiated("v=0\r\no=- 1 1 IN IP6 ::1\r\ns=-\r\nc=IN IP6 ::1\r\nt=0 0\r\nm=audio 5004 RTP/AVP 8\r\na=rtcp:5010\r\n");
 * // { remoteAddress: "::1", remotePort: 5004, remoteRtcpPort: 5010, codec: "PCMA", payloadType: 8, ptime: 20, ... }
 * ```
 */
export function negotiated(sdp: string, opts: { codecs?: AudioCodec[] } = {}): NegotiatedAudio {
  const supported = opts.codecs ?? ["PCMU", "PCMA"];
  const s = parseSdp(sdp);
  const audio = s.media.filter((m) => m.type === "audio");
  if (audio.length === 0) throw new SdpError("no audio stream in SDP");
  const live = audio.filter((m) => m.port !== 0);
  if (live.length === 0) throw new SdpError("audio stream rejected (port 0)");
  for (const m of live) {
    const choice = pick(m, supported);
    if (!choice) continue;
    const conn = m.connection ?? s.connection;
    if (!conn?.ip) throw new SdpError("no connection address (c=) for the audio stream", 400);
    const address = conn.ip.split("/")[0];
    if (!isIpAddress(address)) {
      // RTP would go to that name: nothing from the network makes the process resolve one.
      throw new SdpError(
        `connection address '${excerpt(address)}' is not an IP address (host names in SDP are not resolved)`,
        488,
      );
    }
    return {
      remoteAddress: address,
      remotePort: m.port,
      remoteRtcpPort: m.rtcp?.port ?? m.port + 1,
      codec: choice.codec,
      payloadType: choice.pt,
      clockRate: 8000,
      ptime: m.ptime ?? 20,
      direction: (m.direction ?? s.direction ?? "sendrecv") as Direction,
      ipVersion: conn.version === 6 || address.includes(":") ? 6 : 4,
    };
  }
  throw new NoCommonCodecError(offeredNames(s), supported);
}

/**
 * Alias of {@linkcode negotiated} for reading an answer.
 *
 * @example
 * ```ts
 * const { remoteAddress, remotePort, codec } = parseAnswer(answerSdp);
 * ```
 */
export const parseAnswer: (sdp: string, opts?: { codecs?: AudioCodec[] }) => NegotiatedAudio = negotiated;

/**
 * What to send to once offer and answer are both known, from either side: the
 * peer's address, ports, ptime and direction from `remoteSdp`, with the codec
 * both SDPs list, taken in `remoteSdp`'s order (for the caller the remote SDP is
 * the answer, whose first codec wins; for the callee our answer lists one codec).
 * Throws like {@linkcode negotiated}.
 *
 * @example
 * ```ts
 * // Caller: remote = answer, local = offer. Callee: remote = offer, local = answer.
 * const media = agreedMedia(call.remoteSdp!, call.localSdp!);
 * // { remoteAddress, remotePort, remoteRtcpPort, codec, payloadType, ptime, ... }
 * ```
 */
export function agreedMedia(
  remoteSdp: string,
  localSdp: string,
  opts: { codecs?: AudioCodec[] } = {},
): NegotiatedAudio {
  const supported = opts.codecs ?? ["PCMU", "PCMA"];
  const local = parseSdp(localSdp);
  const mine = new Set<AudioCodec>();
  for (const m of local.media) {
    if (m.type !== "audio" || m.port === 0) continue;
    for (const pt of payloadList(m)) {
      const c = codecOf(m, pt);
      if (c && supported.includes(c.name as AudioCodec)) mine.add(c.name as AudioCodec);
    }
    break;
  }
  if (mine.size === 0) throw new SdpError("our SDP has no usable audio stream");
  return negotiated(remoteSdp, { codecs: [...mine] });
}
