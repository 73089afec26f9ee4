/**
 * SDP offer/answer for one audio stream (RFC 3264, RFC 8866; the text read
 * and written by `sdp_text.ts`), with the codecs of a {@linkcode CodecRegistry}:
 * each codec's `a=rtpmap` (name, clock rate, channels) and `a=fmtp` come from its
 * registration; a codec with a static payload type (RFC 3551) is offered on it,
 * one with a dynamic type on the first free one of 96..127; an answer keeps the
 * offer's payload types. A payload type without `a=rtpmap` is read as the
 * registry's static one.
 *
 * DTMF (RFC 4733): with `telephoneEvent`, an offer adds `telephone-event` at
 * the clock rate of each offered codec (`a=rtpmap:<pt> telephone-event/8000`,
 * `a=fmtp:<pt> 0-15`) on a free dynamic payload type, and an answer accepts the
 * offer's telephone-event of the chosen codec's clock rate, keeping its payload
 * type. What was agreed is {@linkcode NegotiatedAudio}'s `dtmf`.
 *
 * @example
 * ```ts
 * const offer = createOffer({ address: "127.0.0.1", port: 40000, registry: codecs, codecs: ["PCMU", "PCMA"] });
 * const answer = createAnswer(offer, { address: "127.0.0.1", port: 41000, registry: codecs });
 * negotiated(answer, { registry: codecs }).codec; // "PCMU"
 * ```
 *
 * @module
 */
import type { CodecInfo, CodecRegistry } from "../../core/codec.ts";
import { neverADestination } from "../../core/net/address.ts";
import { randomUint32 } from "../../core/random.ts";
import { excerpt, isIpAddress } from "./syntax.ts";
import {
  parseSdpText,
  type SdpMedia as MediaDescription,
  type SdpSession as SessionDescription,
  SdpSyntaxError,
  writeSdpText,
} from "./sdp_text.ts";

/** The encoding name of RFC 4733 events (the SIP library imports no other plugin: named here too). */
const TELEPHONE_EVENT = "telephone-event";
/** The events offered and accepted: the 16 DTMF events (RFC 4733 section 3.2). */
const DTMF_EVENTS_FMTP = "0-15";

/** First and last dynamic RTP payload type (RFC 3551 section 3). */
const DYNAMIC_PT_FIRST = 96;
const DYNAMIC_PT_LAST = 127;

/** A payload type as an SDP describes it: `a=rtpmap` name, clock rate and channels. */
interface PayloadDesc {
  /** Encoding name as written. */
  name: string;
  /** Clock rate (undefined when the rtpmap leaves it out). */
  rate: number | undefined;
  /** Channels (1 when not given). */
  channels: number;
}

/** A codec we can take: its canonical name (as registered) and what identifies it in SDP. */
interface Known {
  name: string;
  rate: number;
  channels: number;
  info?: CodecInfo;
}

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
  /** Codec names offered, distinct, in the offer's order (at most 16, each cut to 40 characters, then `(N more)`). */
  readonly offered: string[];
  /** Names of the codecs we support. */
  readonly supported: string[];
  /**
   * Creates the error.
   * @param offered codec names found in the offer
   * @param supported names of our codecs
   */
  constructor(offered: string[], supported: string[]) {
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
  /** The codecs that exist (e.g. `registry.codecs`, or a control context's `codecs`): rtpmap, payload types. */
  registry: CodecRegistry;
  /** Names of the codecs to offer or accept, in preference order (default: every codec of `registry`, in order). */
  codecs?: string[];
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
  /**
   * Offer (or accept, in an answer) RFC 4733 telephone events for DTMF (`telephone-event`, events 0-15) on a
   * dynamic payload type (default false).
   */
  telephoneEvent?: boolean;
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
  /** The codec's name, as registered (e.g. `PCMU`). */
  codec: string;
  /** RTP payload type for it (as signalled, static or dynamic). */
  payloadType: number;
  /** RTP clock rate of the codec. */
  clockRate: number;
  /** Channels of the codec. */
  channels: number;
  /** Packetization time the SDP author wants to receive (`a=ptime`, default 20). */
  ptime: number;
  /** Direction as declared by the SDP author. */
  direction: Direction;
  /** Address family of the connection address. */
  ipVersion: 4 | 6;
  /**
   * RFC 4733 telephone events (DTMF), when both sides listed `telephone-event` at the codec's clock rate: its
   * payload type (as the SDP author signalled it) and clock rate. Absent when not negotiated.
   */
  dtmf?: { payloadType: number; clockRate: number };
}

function randomSessionId(): string {
  return String((randomUint32() % 0x7fffffff) * 1000 + (randomUint32() % 1000) + 1);
}

function ipVersion(address: string): 4 | 6 {
  return address.includes(":") ? 6 : 4;
}

function baseSession(opts: OfferOptions | AnswerOptions): SessionDescription {
  const ver = ipVersion(opts.address);
  return {
    origin: {
      username: opts.userName ?? "voxpipe",
      sessionId: opts.sessionId ?? randomSessionId(),
      sessionVersion: opts.sessionVersion ?? 1,
      ipVer: ver,
      address: opts.address,
    },
    name: "voxpipe",
    connection: { version: ver, ip: opts.address },
    media: [],
  };
}

/** One payload type of an m-line we write: a codec, or telephone-event. */
interface Payload {
  name: string;
  rate: number;
  channels: number;
  fmtp?: string;
  pt: number;
}

function payloadOf(info: CodecInfo, pt: number): Payload {
  return {
    name: info.name,
    rate: info.clockRate,
    channels: info.channels,
    ...(info.fmtp ? { fmtp: info.fmtp } : {}),
    pt,
  };
}

/** telephone-event at `rate`, on `pt`. */
function telephoneEventPayload(rate: number, pt: number): Payload {
  return { name: TELEPHONE_EVENT, rate, channels: 1, fmtp: DTMF_EVENTS_FMTP, pt };
}

function audioMedia(opts: OfferOptions | AnswerOptions, codecs: Payload[]): MediaDescription {
  const m: MediaDescription = {
    type: "audio",
    port: opts.port,
    protocol: "RTP/AVP",
    payloads: codecs.map((c) => c.pt),
    rtp: codecs.map((c) => ({
      payload: c.pt,
      codec: c.name,
      rate: c.rate,
      ...(c.channels > 1 ? { encoding: String(c.channels) } : {}),
    })),
    fmtp: codecs.filter((c) => c.fmtp).map((c) => ({ payload: c.pt, config: c.fmtp! })),
    ptime: opts.ptime ?? 20,
    direction: opts.direction ?? "sendrecv",
  };
  if (opts.rtcpPort !== undefined) m.rtcp = { port: opts.rtcpPort };
  return m;
}

/** The registered codecs `names` names (default: all), in that order; throws naming the known ones. */
function ourCodecs(registry: CodecRegistry, names: string[] | undefined): CodecInfo[] {
  if (!names) return registry.list();
  return names.map((n) => registry.require(n, "SDP"));
}

/**
 * Payload types for an offer: the static ones, then the first free dynamic type for each dynamic codec, then (with
 * `telephoneEvent`) one for telephone-event at each clock rate of the codecs.
 */
function assignPayloadTypes(codecs: CodecInfo[], telephoneEvent: boolean): Payload[] {
  const used = new Set<number>();
  for (const c of codecs) if (typeof c.payloadType === "number") used.add(c.payloadType);
  let next = DYNAMIC_PT_FIRST;
  const free = () => {
    while (used.has(next)) next++;
    if (next > DYNAMIC_PT_LAST) throw new SdpError(`too many codecs with dynamic payload types to offer`);
    used.add(next);
    return next;
  };
  const out = codecs.map((info) => payloadOf(info, typeof info.payloadType === "number" ? info.payloadType : free()));
  if (telephoneEvent) {
    for (const rate of new Set(codecs.map((c) => c.clockRate))) out.push(telephoneEventPayload(rate, free()));
  }
  return out;
}

/**
 * Creates an SDP offer with one audio stream, one payload type per codec with
 * its `a=rtpmap` (and `a=fmtp` when the codec has one).
 *
 * @example
 * ```ts
 * const offer = createOffer({ address: "127.0.0.1", port: 40000, registry: codecs, codecs: ["PCMU", "PCMA"] });
 * // contains "m=audio 40000 RTP/AVP 0 8", "a=rtpmap:0 PCMU/8000", "a=ptime:20", "a=sendrecv"
 * ```
 */
export function createOffer(opts: OfferOptions): string {
  const codecs = ourCodecs(opts.registry, opts.codecs);
  if (codecs.length === 0) throw new SdpError("no codecs to offer");
  const s = baseSession(opts);
  s.media.push(audioMedia(opts, assignPayloadTypes(codecs, opts.telephoneEvent ?? false)));
  return writeSdpText(s);
}

/** The `a=rtpmap` lines of each media description read, by payload type (the first line of a type wins). */
const RTPMAPS = new WeakMap<MediaDescription, Map<number, MediaDescription["rtp"][number]>>();

/**
 * The `a=rtpmap` of payload type `pt` in `m`: looked up in a map made once per media description, so that an offer
 * listing thousands of payload types and rtpmaps costs time linear in its size, not their product.
 */
function rtpMapOf(m: MediaDescription, pt: number): MediaDescription["rtp"][number] | undefined {
  let maps = RTPMAPS.get(m);
  if (!maps) {
    maps = new Map();
    for (const r of m.rtp) if (!maps.has(r.payload)) maps.set(r.payload, r);
    RTPMAPS.set(m, maps);
  }
  return maps.get(pt);
}

/** How `m` describes payload type `pt`: its rtpmap, else what `fallback` knows (a static type, or our SDP's map). */
function describePt(
  m: MediaDescription,
  pt: number,
  fallback: (pt: number) => PayloadDesc | undefined,
): PayloadDesc | undefined {
  const map = rtpMapOf(m, pt);
  if (map) {
    return { name: map.codec, rate: map.rate, channels: map.encoding ? Number(map.encoding) || 1 : 1 };
  }
  return fallback(pt);
}

/** The registry's static payload types, as SDP descriptions. */
function staticTypes(registry: CodecRegistry | undefined): (pt: number) => PayloadDesc | undefined {
  return (pt) => {
    const c = pt < DYNAMIC_PT_FIRST ? registry?.byPayloadType(pt) : undefined;
    return c ? { name: c.name, rate: c.clockRate, channels: c.channels } : undefined;
  };
}

/** The codec among `known` that `d` describes (name case-insensitive, same clock rate and channels). */
function match(d: PayloadDesc, known: Known[]): Known | undefined {
  const name = d.name.toLowerCase();
  return known.find((k) =>
    k.name.toLowerCase() === name && (d.rate === undefined || d.rate === k.rate) && d.channels === k.channels
  );
}

function knownOf(codecs: CodecInfo[]): Known[] {
  return codecs.map((info) => ({ name: info.name, rate: info.clockRate, channels: info.channels, info }));
}

function parseSdp(text: string): SessionDescription {
  if (!/^\s*v=0/.test(text)) throw new SdpError("not an SDP body (no v=0 line)", 400);
  try {
    return parseSdpText(text);
  } catch (e) {
    if (e instanceof SdpSyntaxError) throw new SdpError(`malformed SDP: ${e.message}`, 400);
    throw e;
  }
}

/** The payload type `m` maps to telephone-event at clock rate `rate` (not `except`), if any. */
function telephoneEventPt(m: MediaDescription, rate: number, except?: number): number | undefined {
  for (const pt of m.payloads) {
    if (pt === except) continue;
    const map = rtpMapOf(m, pt);
    if (map && map.codec.toLowerCase() === TELEPHONE_EVENT && (map.rate ?? 8000) === rate) return pt;
  }
  return undefined;
}

/** Picks the first payload type of `m`, in its order, whose codec is among `known`. */
function pick(
  m: MediaDescription,
  known: Known[],
  fallback: (pt: number) => PayloadDesc | undefined,
): { codec: Known; pt: number } | undefined {
  for (const pt of m.payloads) {
    const d = describePt(m, pt, fallback);
    const k = d && match(d, known);
    if (k) return { codec: k, pt };
  }
  return undefined;
}

/** Most codec names an error about an offer lists (each cut to {@linkcode OFFERED_NAME_MAX} characters). */
const OFFERED_MAX = 16;
const OFFERED_NAME_MAX = 40;

/**
 * The distinct codec names of the audio streams of `s`, in order, for an error message: at most
 * {@linkcode OFFERED_MAX}, each at most {@linkcode OFFERED_NAME_MAX} characters (escaped), then `(N more)`. The
 * names come from the network: an offer of 65 KB listing one long rtpmap name 20 000 times made a 40 MB message,
 * which became a log line, a reason phrase and a Warning header.
 */
function offeredNames(s: SessionDescription, fallback: (pt: number) => PayloadDesc | undefined): string[] {
  const seen = new Set<string>();
  for (const m of s.media) {
    if (m.type !== "audio") continue;
    for (const pt of m.payloads) seen.add(excerpt(describePt(m, pt, fallback)?.name ?? String(pt), OFFERED_NAME_MAX));
  }
  const out = [...seen];
  if (out.length <= OFFERED_MAX) return out;
  return [...out.slice(0, OFFERED_MAX), `(${out.length - OFFERED_MAX} more)`];
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
 * const answer = createAnswer(offer, { address: "127.0.0.1", port: 41000, registry: codecs, codecs: ["PCMA", "PCMU"] });
 * negotiated(answer, { registry: codecs }).codec; // the offer's first codec that we support
 * ```
 */
export function createAnswer(offer: string, opts: AnswerOptions): string {
  const supported = ourCodecs(opts.registry, opts.codecs);
  const known = knownOf(supported);
  const fallback = staticTypes(opts.registry);
  const o = parseSdp(offer);
  const s = baseSession(opts);
  let accepted = false;
  let sawAudio = false;
  for (const m of o.media) {
    if (!accepted && m.type === "audio" && m.port !== 0 && /^RTP\/AVP$/i.test(m.protocol)) {
      sawAudio = true;
      const choice = pick(m, known, fallback);
      if (choice) {
        accepted = true;
        const offered = m.direction ?? o.direction ?? "sendrecv";
        const payloads = [payloadOf(choice.codec.info!, choice.pt)];
        const te = opts.telephoneEvent ? telephoneEventPt(m, choice.codec.rate, choice.pt) : undefined;
        if (te !== undefined) payloads.push(telephoneEventPayload(choice.codec.rate, te));
        s.media.push(audioMedia({ ...opts, direction: combine(offered, opts.direction ?? "sendrecv") }, payloads));
        continue;
      }
    }
    const first = m.payloads[0] ?? 0;
    s.media.push({ type: m.type, port: 0, protocol: m.protocol, payloads: [first], rtp: [], fmtp: [] });
  }
  if (!accepted) {
    if (!sawAudio) throw new SdpError("offer has no usable RTP/AVP audio stream");
    throw new NoCommonCodecError(offeredNames(o, fallback), supported.map((c) => c.name));
  }
  return writeSdpText(s);
}

/** Options of {@linkcode negotiated}. */
export interface NegotiatedOptions {
  /** The codecs that exist (rtpmap, static payload types). */
  registry: CodecRegistry;
  /** Names of the codecs we take (default: every codec of `registry`). */
  codecs?: string[];
}

/** The first live audio stream of `s` with a codec among `known`, as a {@linkcode NegotiatedAudio}. */
function readAudio(
  s: SessionDescription,
  known: Known[],
  fallback: (pt: number) => PayloadDesc | undefined,
  teRates?: Set<number>,
): NegotiatedAudio {
  const audio = s.media.filter((m) => m.type === "audio");
  if (audio.length === 0) throw new SdpError("no audio stream in SDP");
  const open = audio.filter((m) => m.port !== 0);
  if (open.length === 0) throw new SdpError("audio stream rejected (port 0)");
  // Only plain RTP/AVP is spoken (as createAnswer answers): a secure or feedback profile is refused here, up front.
  const live = open.filter((m) => /^RTP\/AVP$/i.test(m.protocol));
  if (live.length === 0) {
    throw new SdpError(`audio stream in profile ${excerpt(open[0].protocol)}: only RTP/AVP is supported`);
  }
  for (const m of live) {
    const choice = pick(m, known, fallback);
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
    const never = neverADestination(address);
    if (never) {
      throw new SdpError(`connection address ${excerpt(address)} is ${never}: never a destination for RTP`, 488);
    }
    const rate = choice.codec.rate;
    const te = !teRates || teRates.has(rate) ? telephoneEventPt(m, rate, choice.pt) : undefined;
    for (const [what, pt] of [[choice.codec.name, choice.pt], [TELEPHONE_EVENT, te]] as const) {
      if (pt !== undefined && pt > DYNAMIC_PT_LAST) {
        throw new SdpError(`${what} on payload type ${pt}: an RTP payload type is 0-127`, 488);
      }
    }
    const rtcpPort = m.rtcp?.port ?? m.port + 1;
    if (rtcpPort < 1 || rtcpPort > 65535) {
      throw new SdpError(
        `RTCP port ${rtcpPort} (${m.rtcp ? "a=rtcp" : `RTP port ${m.port} + 1`}) is not a port (1-65535)`,
        488,
      );
    }
    if (m.ptime !== undefined && !(m.ptime > 0)) throw new SdpError(`a=ptime:${m.ptime}: not a packet time`, 488);
    return {
      remoteAddress: address,
      remotePort: m.port,
      remoteRtcpPort: rtcpPort,
      codec: choice.codec.name,
      payloadType: choice.pt,
      clockRate: choice.codec.rate,
      channels: choice.codec.channels,
      ptime: m.ptime ?? 20,
      direction: m.direction ?? s.direction ?? "sendrecv",
      ipVersion: conn.version === 6 || address.includes(":") ? 6 : 4,
      ...(te !== undefined ? { dtmf: { payloadType: te, clockRate: rate } } : {}),
    };
  }
  throw new NoCommonCodecError(offeredNames(s, fallback), known.map((k) => k.name));
}

/**
 * Reads what an SDP (an answer, or an offer from the callee's side) says about
 * its audio stream: the first audio m-line with a non-zero port and a codec we
 * support. Media-level `c=` wins over session-level. Throws {@linkcode SdpError}
 * when the stream was rejected (port 0) or unusable — a connection address
 * that is a host name too (488: it is never resolved), or one that is never a
 * destination (488: unspecified `0.0.0.0` or `::`, multicast, broadcast), a
 * payload type above 127 for the codec or telephone-event, an RTCP port that
 * is not 1-65535 (RTP port 65535 without `a=rtcp`), `a=ptime` 0 —,
 * {@linkcode NoCommonCodecError} when its codecs are not ours.
 *
 * @example
 * ```ts
 * const n = negotiated("v=0\r\no=- 1 1 IN IP6 ::1\r\ns=-\r\nc=IN IP6 ::1\r\nt=0 0\r\nm=audio 5004 RTP/AVP 8\r\na=rtcp:5010\r\n",
 *   { registry: codecs });
 * // { remoteAddress: "::1", remotePort: 5004, remoteRtcpPort: 5010, codec: "PCMA", payloadType: 8, ptime: 20, ... }
 * ```
 */
export function negotiated(sdp: string, opts: NegotiatedOptions): NegotiatedAudio {
  const known = knownOf(ourCodecs(opts.registry, opts.codecs));
  return readAudio(parseSdp(sdp), known, staticTypes(opts.registry));
}

/**
 * Alias of {@linkcode negotiated} for reading an answer.
 *
 * @example
 * ```ts
 * const { remoteAddress, remotePort, codec } = parseAnswer(answerSdp, { registry: codecs });
 * ```
 */
export const parseAnswer: (sdp: string, opts: NegotiatedOptions) => NegotiatedAudio = negotiated;

/**
 * What to send to once offer and answer are both known, from either side: the
 * peer's address, ports, ptime and direction from `remoteSdp`, with the codec
 * both SDPs list, taken in `remoteSdp`'s order (for the caller the remote SDP is
 * the answer, whose first codec wins; for the callee our answer lists one codec).
 * Our codecs are the ones `localSdp` lists; a payload type the remote SDP does
 * not map is read as the one our SDP maps (an answer keeps the offer's types),
 * else as the registry's static type. `dtmf` is set when both SDPs list
 * telephone-event at the codec's clock rate (its payload type as the remote SDP
 * signals it). Throws like {@linkcode negotiated}.
 *
 * @example
 * ```ts
 * // Caller: remote = answer, local = offer. Callee: remote = offer, local = answer.
 * const media = agreedMedia(call.remoteSdp!, call.localSdp!, { registry: codecs });
 * // { remoteAddress, remotePort, remoteRtcpPort, codec, payloadType, ptime, ... }
 * ```
 */
export function agreedMedia(
  remoteSdp: string,
  localSdp: string,
  opts: { registry?: CodecRegistry; codecs?: string[] } = {},
): NegotiatedAudio {
  const registry = opts.registry;
  const only = opts.codecs?.map((n) => n.toLowerCase());
  const local = parseSdp(localSdp);
  const ours = local.media.find((m) => m.type === "audio" && m.port !== 0);
  const known: Known[] = [];
  const teRates = new Set<number>(); // telephone-event clock rates our SDP lists
  const localFallback = staticTypes(registry);
  if (ours) {
    for (const pt of ours.payloads) {
      const d = describePt(ours, pt, localFallback);
      if (!d || d.rate === undefined || match(d, known)) continue;
      if (d.name.toLowerCase() === TELEPHONE_EVENT) {
        teRates.add(d.rate);
        continue;
      }
      if (only && !only.includes(d.name.toLowerCase())) continue;
      const info = registry?.get(d.name);
      if (registry && (!info || info.clockRate !== d.rate || info.channels !== d.channels)) continue;
      known.push({ name: info?.name ?? d.name, rate: d.rate, channels: d.channels, info });
    }
  }
  if (known.length === 0) throw new SdpError("our SDP has no usable audio stream");
  const fallback = (pt: number) => (ours ? describePt(ours, pt, localFallback) : undefined) ?? localFallback(pt);
  return readAudio(parseSdp(remoteSdp), known, fallback, teRates);
}
