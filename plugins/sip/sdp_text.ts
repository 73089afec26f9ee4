/**
 * The SDP text (RFC 8866, formerly RFC 4566) that offer/answer needs, read and written: the session's and
 * each media description's connection (`c=`), direction attribute and, per media, its `m=` line, `a=rtpmap`,
 * `a=fmtp`, `a=ptime` and `a=rtcp`. Every other line is skipped (`b=`, `a=ssrc`, ICE, crypto ...): an answer to it is
 * written from our own state, never echoed.
 *
 * Reading is lenient where RFC 8866's receivers are (lines may end in CRLF, LF or CR; an attribute that does not parse
 * is skipped, as an unknown one is) and strict where a wrong guess would matter: an `m=` line whose port is not a
 * port, or that lacks its protocol, is an {@linkcode SdpSyntaxError}. Every value kept is a token of its line (no
 * line break), so nothing read can add a line to what is written from it.
 *
 * @module
 */
import { excerpt } from "./syntax.ts";

/** Media direction attribute (RFC 3264 section 5.1). */
export type SdpDirection = "sendrecv" | "sendonly" | "recvonly" | "inactive";

/** `a=rtpmap:<payload type> <encoding name>/<clock rate>[/<encoding parameters>]`. */
export interface SdpRtpMap {
  /** Payload type. */
  payload: number;
  /** Encoding name as written. */
  codec: string;
  /** Clock rate, when given. */
  rate?: number;
  /** Encoding parameters (for audio, the channels), when given. */
  encoding?: string;
}

/** `a=fmtp:<payload type> <format parameters>`. */
export interface SdpFmtp {
  /** Payload type. */
  payload: number;
  /** The parameters, as written. */
  config: string;
}

/** `c=IN IP4|IP6 <address>[/<ttl>][/<count>]`. */
export interface SdpConnection {
  /** 4 or 6 (the address type). */
  version: 4 | 6;
  /** The address as written (a multicast one keeps its `/ttl`). */
  ip: string;
}

/** One media description (`m=` and the lines after it). */
export interface SdpMedia {
  /** Media type (`audio`, `video` ...). */
  type: string;
  /** Transport port (0: rejected or disabled stream). */
  port: number;
  /** Transport protocol (`RTP/AVP` ...). */
  protocol: string;
  /** The format list: payload types, for RTP (only the numeric entries are kept). */
  payloads: number[];
  /** `a=rtpmap` lines, in order. */
  rtp: SdpRtpMap[];
  /** `a=fmtp` lines, in order. */
  fmtp: SdpFmtp[];
  /** `a=ptime` in ms. */
  ptime?: number;
  /** Direction attribute. */
  direction?: SdpDirection;
  /** `a=rtcp` port (RFC 3605). */
  rtcp?: { port: number };
  /** Media-level `c=`. */
  connection?: SdpConnection;
}

/** `o=<username> <sess-id> <sess-version> IN <addrtype> <address>`. */
export interface SdpOrigin {
  /** User name (`-` when none). */
  username: string;
  /** Session id (digits). */
  sessionId: string;
  /** Session version. */
  sessionVersion: number;
  /** 4 or 6. */
  ipVer: 4 | 6;
  /** Unicast address of the originator. */
  address: string;
}

/** A session description as offer/answer reads and writes it. */
export interface SdpSession {
  /** `o=` (always written; not read). */
  origin?: SdpOrigin;
  /** `s=` (written; not read). */
  name?: string;
  /** Session-level `c=`. */
  connection?: SdpConnection;
  /** Session-level direction attribute. */
  direction?: SdpDirection;
  /** The media descriptions, in order. */
  media: SdpMedia[];
}

/** The SDP text is malformed where offer/answer cannot guess. */
export class SdpSyntaxError extends Error {
  /**
   * Creates the error.
   * @param message what is wrong
   */
  constructor(message: string) {
    super(message);
    this.name = "SdpSyntaxError";
  }
}

const DIRECTIONS = new Set<string>(["sendrecv", "sendonly", "recvonly", "inactive"]);
const DIGITS = /^\d{1,10}$/;
/** A port: 0–65535, at most five digits. */
const PORT = /^\d{1,5}$/;
/** A decimal number of ms (`a=ptime:20`, `a=ptime:22.5`). */
const DECIMAL = /^\d{1,6}(?:\.\d{1,6})?$/;
/** Longest excerpt of a bad line quoted in an error. */
const QUOTE_MAX = 60;

/** The tokens of a field value: separated by spaces (RFC 8866 asks for one; tabs and runs are tolerated). */
function tokens(value: string): string[] {
  return value.split(/[ \t]+/).filter((t) => t !== "");
}

function parseConnection(value: string): SdpConnection | undefined {
  const [net, type, address] = tokens(value);
  if (net !== "IN" || address === undefined) return undefined;
  if (type === "IP4") return { version: 4, ip: address };
  if (type === "IP6") return { version: 6, ip: address };
  return undefined;
}

function parseMedia(value: string, line: string): SdpMedia {
  const t = tokens(value);
  if (t.length < 3) throw new SdpSyntaxError(`m= line without media, port and protocol: '${excerpt(line, QUOTE_MAX)}'`);
  const portText = t[1].split("/", 1)[0];
  const port = PORT.test(portText) ? Number(portText) : NaN;
  if (!(port <= 65535)) {
    throw new SdpSyntaxError(`m= line with a port that is not 0–65535: '${excerpt(line, QUOTE_MAX)}'`);
  }
  const payloads: number[] = [];
  for (let i = 3; i < t.length; i++) if (DIGITS.test(t[i])) payloads.push(Number(t[i]));
  return { type: t[0], port, protocol: t[2], payloads, rtp: [], fmtp: [] };
}

/** `<payload type> <rest>` of an rtpmap or fmtp value, or undefined. */
function payloadAndRest(value: string): [number, string] | undefined {
  const space = value.search(/[ \t]/);
  if (space <= 0) return undefined;
  const pt = value.slice(0, space);
  if (!DIGITS.test(pt)) return undefined;
  const rest = value.slice(space + 1).trim();
  return rest === "" ? undefined : [Number(pt), rest];
}

function parseRtpMap(value: string): SdpRtpMap | undefined {
  const pr = payloadAndRest(value);
  if (!pr) return undefined;
  const [name, rate, encoding] = pr[1].split("/");
  if (!name || /[ \t]/.test(name)) return undefined;
  const map: SdpRtpMap = { payload: pr[0], codec: name };
  if (rate !== undefined) {
    if (!DIGITS.test(rate.trim())) return undefined;
    map.rate = Number(rate.trim());
  }
  if (encoding !== undefined && encoding.trim() !== "") map.encoding = encoding.trim();
  return map;
}

/**
 * Reads an SDP body. Lines other than `c=`, `m=` and the attributes named in the module comment are skipped.
 * Throws {@linkcode SdpSyntaxError} for an `m=` line that does not parse.
 */
export function parseSdpText(text: string): SdpSession {
  const session: SdpSession = { media: [] };
  let media: SdpMedia | undefined;
  for (const raw of text.split(/\r\n|\r|\n/)) {
    if (raw.length < 2 || raw.charCodeAt(1) !== 61 /* = */) continue;
    const type = raw[0];
    const value = raw.slice(2);
    if (type === "m") {
      media = parseMedia(value, raw);
      session.media.push(media);
    } else if (type === "c") {
      const c = parseConnection(value);
      if (c) (media ?? session).connection = c;
    } else if (type === "a") {
      const colon = value.indexOf(":");
      const name = colon < 0 ? value.trim() : value.slice(0, colon);
      const arg = colon < 0 ? "" : value.slice(colon + 1).trim();
      if (DIRECTIONS.has(name)) {
        (media ?? session).direction = name as SdpDirection;
      } else if (!media) {
        continue; // the other attributes we read are media-level
      } else if (name === "rtpmap") {
        const m = parseRtpMap(arg);
        if (m) media.rtp.push(m);
      } else if (name === "fmtp") {
        const pr = payloadAndRest(arg);
        if (pr) media.fmtp.push({ payload: pr[0], config: pr[1] });
      } else if (name === "ptime") {
        if (DECIMAL.test(arg)) media.ptime = Number(arg);
      } else if (name === "rtcp") {
        const port = tokens(arg)[0];
        if (port !== undefined && PORT.test(port) && Number(port) <= 65535) media.rtcp = { port: Number(port) };
      }
    }
  }
  return session;
}

/**
 * Writes a session description: `v=`, `o=`, `s=`, the session's `c=`, `t=0 0`, then each media description: `m=`,
 * its `c=`, `a=rtpmap`s, `a=fmtp`s, `a=rtcp`, `a=ptime` and the direction. Lines end in CRLF.
 */
export function writeSdpText(s: SdpSession): string {
  const o = s.origin;
  let out = "v=0\r\n";
  if (o) out += `o=${o.username} ${o.sessionId} ${o.sessionVersion} IN IP${o.ipVer} ${o.address}\r\n`;
  out += `s=${s.name ?? "-"}\r\n`;
  if (s.connection) out += `c=IN IP${s.connection.version} ${s.connection.ip}\r\n`;
  out += "t=0 0\r\n";
  if (s.direction) out += `a=${s.direction}\r\n`;
  for (const m of s.media) {
    out += `m=${m.type} ${m.port} ${m.protocol} ${m.payloads.join(" ")}\r\n`;
    if (m.connection) out += `c=IN IP${m.connection.version} ${m.connection.ip}\r\n`;
    for (const r of m.rtp) {
      out += `a=rtpmap:${r.payload} ${r.codec}${r.rate !== undefined ? `/${r.rate}` : ""}${
        r.encoding !== undefined ? `/${r.encoding}` : ""
      }\r\n`;
    }
    for (const f of m.fmtp) out += `a=fmtp:${f.payload} ${f.config}\r\n`;
    if (m.rtcp) out += `a=rtcp:${m.rtcp.port}\r\n`;
    if (m.ptime !== undefined) out += `a=ptime:${m.ptime}\r\n`;
    if (m.direction) out += `a=${m.direction}\r\n`;
  }
  return out;
}
