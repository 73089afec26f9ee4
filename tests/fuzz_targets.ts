/**
 * The parsers fuzzed by tests/fuzz_test.ts (a bounded number of seeded cases each) and bench/fuzz.ts (as many as
 * asked): each target has valid seed inputs (from the fixtures and the formats' own writers) and a `run` that feeds
 * one input to the parser and everything that reads its result. A run passes when the parser returns, or throws the
 * error type its module documents; anything else (a TypeError, a RangeError from a stack overflow, an error reported
 * by a socket's callbacks, a broken invariant) is a finding, thrown as {@linkcode FuzzFinding}.
 *
 * @module
 */
import { packets } from "rtp.js";
import { VirtualClock } from "../core/clock.ts";
import { MemoryNetwork } from "../core/net/memory.ts";
import { decodeAudio, encodeAudio } from "../plugins/console/protocol.ts";
import { LineSplitter, MAX_LINE, parseReply, parseRequest } from "../plugins/relay/protocol.ts";
import { parseRtp, serializeRtp } from "../plugins/rtp/header.ts";
import { checkRtcp, RtcpSession } from "../plugins/rtp/rtcp_session.ts";
import { describeReport } from "../plugins/rtp/rtcp.ts";
import { decodeTelephoneEvents, DtmfReceiver, encodeTelephoneEvent } from "../plugins/rtp/telephone_event.ts";
import { parseChallenges, parseCredentials } from "../plugins/sip/auth_header.ts";
import {
  bodyText,
  checkRequestSemantics,
  getCallId,
  getCSeq,
  getFrom,
  getTo,
  parseMessage,
  SipParseError,
  tagOf,
  topVia,
} from "../plugins/sip/message.ts";
import { agreedMedia, createAnswer, createOffer, negotiated, SdpError } from "../plugins/sip/sdp.ts";
import { parseSdpText, SdpSyntaxError } from "../plugins/sip/sdp_text.ts";
import { splitHeaderValue } from "../plugins/sip/headers.ts";
import { parseHostPort, parseParams } from "../plugins/sip/syntax.ts";
import { parseAddress, parseAnyUri, parseNameAddr, parseUri } from "../plugins/sip/uri.ts";
import { parseVia, responseTarget } from "../plugins/sip/via.ts";
import { WavStreamReader } from "../plugins/wav/wav_reader.ts";
import { readWavInfo, WavFormatError, wavHeader } from "../plugins/wav/wav_format.ts";
import { jsonProtocol } from "../plugins/ws/json_protocol.ts";
import { ProtocolError } from "../plugins/ws/protocol.ts";
import { textProtocol } from "../plugins/ws/text_protocol.ts";
import { AudioFormatError, decodeAudio as decodeWsAudio } from "../plugins/ws/audio.ts";
import { HeadError, parseHead, ServerWebSocket } from "../plugins/ws/_websocket.ts";
import { decodeFixture, FIXTURES } from "./rfc4475.ts";
import { formatTraceEvent } from "../plugins/sip/trace.ts";
import { Logger, MemoryOutput } from "../core/log.ts";
import { AudioLibrary } from "../plugins/console/files.ts";
import { CONSOLE_HUB_DEFAULTS, type ConsoleConnection, ConsoleHub } from "../plugins/console/hub.ts";
import { FakeCalls } from "./console_fake_calls.ts";
import { SipUserAgent } from "../plugins/sip/user_agent.ts";
import { JitterBuffer } from "../plugins/rtp/jitter_buffer.ts";
import { codecs } from "./registry_util.ts";

const te = new TextEncoder();
const utf8 = new TextDecoder();
const latin1 = new TextDecoder("latin1");

/** A misbehaviour of a parser: what it did with the input (the input is kept by the runner). */
export class FuzzFinding extends Error {
  /**
   * Creates the finding.
   * @param message what happened
   * @param cause the error thrown, if any
   */
  constructor(message: string, cause?: unknown) {
    super(message, { cause });
    this.name = "FuzzFinding";
  }
}

/** One parser under fuzzing. */
export interface FuzzTarget {
  /** Short name (`--only` in bench/fuzz.ts). */
  name: string;
  /** Valid inputs the mutations start from. */
  seeds: () => Uint8Array[];
  /** Longest input built. */
  maxLen: number;
  /** Feeds one input; throws {@linkcode FuzzFinding} on a misbehaviour. */
  run: (input: Uint8Array) => void | Promise<void>;
  /** Default cases of tests/fuzz_test.ts (a slow target gets fewer). */
  testCases: number;
}

/**
 * Longest error message accepted: messages go to log lines, reason phrases and replies, so what the input holds is
 * quoted in excerpts, never whole (a message growing with the input is a finding).
 */
export const MAX_ERROR_MESSAGE = 1024;

/** Runs `f`, letting through only errors that are instances of one of `allowed` (with a message of bounded length). */
function expectOnly<T>(what: string, f: () => T, ...allowed: (abstract new (...a: never[]) => Error)[]): T | undefined {
  try {
    return f();
  } catch (e) {
    if (allowed.some((A) => e instanceof A)) {
      const n = (e as Error).message.length;
      if (n > MAX_ERROR_MESSAGE) throw new FuzzFinding(`${what}: an error message of ${n} characters`, e);
      return undefined;
    }
    throw new FuzzFinding(`${what} threw ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}`, e);
  }
}

/** `f` must not throw at all. */
function never<T>(what: string, f: () => T): T {
  return expectOnly(what, f) as T;
}

function check(ok: boolean, what: string): void {
  if (!ok) throw new FuzzFinding(what);
}

// ---- SIP ---------------------------------------------------------------------------------------------------------

const SDP_OFFER = createOffer({
  registry: codecs,
  address: "192.0.2.10",
  port: 40000,
  sessionId: "42",
  telephoneEvent: true,
});

function sipSeeds(): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (const e of Deno.readDirSync(FIXTURES)) {
    if (e.name.endsWith(".txt")) out.push(decodeFixture(Deno.readTextFileSync(new URL(e.name, FIXTURES))));
  }
  out.sort((a, b) => a.length - b.length || (utf8.decode(a) < utf8.decode(b) ? -1 : 1));
  const via = "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776asdhds;rport\r\n";
  const common = 'From: "Alice" <sip:alice@atlanta.example.com>;tag=1928301774\r\n' +
    "To: <sip:bob@biloxi.example.com>\r\nCall-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n";
  out.push(te.encode(
    `INVITE sip:bob@biloxi.example.com SIP/2.0\r\n${via}Max-Forwards: 70\r\n${common}CSeq: 314159 INVITE\r\n` +
      "Contact: <sip:alice@192.0.2.1:5060;transport=udp>\r\nSupported: timer, 100rel\r\nAccept: application/sdp\r\n" +
      `Content-Type: application/sdp\r\nContent-Length: ${te.encode(SDP_OFFER).length}\r\n\r\n${SDP_OFFER}`,
  ));
  out.push(te.encode(
    `SIP/2.0 401 Unauthorized\r\n${via}${common.replace("\r\nCall-ID", ";tag=a6c85cf\r\nCall-ID")}` +
      "CSeq: 1 REGISTER\r\n" +
      'WWW-Authenticate: Digest realm="atlanta.example.com", nonce="ea9c8e88df84f1cec4341ae6cbe5a359", ' +
      'qop="auth", algorithm=MD5, opaque="", stale=FALSE\r\nContent-Length: 0\r\n\r\n',
  ));
  out.push(te.encode(
    `REGISTER sip:registrar.biloxi.example.com SIP/2.0\r\n${via}${common}CSeq: 2 REGISTER\r\n` +
      'Authorization: Digest username="bob", realm="atlanta.example.com", nonce="ea9c8e88df84f1cec4341ae6cbe5a359", ' +
      'uri="sip:registrar.biloxi.example.com", qop=auth, nc=00000001, cnonce="0a4f113b", ' +
      'response="6629fae49393a05397450978507c4ef1"\r\nContact: <sip:bob@192.0.2.4>;expires=3600, "B" <sip:b@x>;q=0.5\r\n' +
      "Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>\r\nl: 0\r\n\r\n",
  ));
  return out;
}

/** Everything the UA reads of a message that parsed: what a message that parses must survive. */
function readParsed(msg: ReturnType<typeof parseMessage>): void {
  const sip = (what: string, f: () => unknown) => expectOnly(what, f, SipParseError);
  sip("topVia", () => responseTarget(topVia(msg)));
  sip("getCSeq", () => getCSeq(msg));
  sip("getCallId", () => getCallId(msg));
  sip("getFrom", () => getFrom(msg));
  sip("getTo", () => getTo(msg));
  sip("tagOf(To)", () => tagOf(msg.headers.get("To")));
  for (const v of msg.headers.getAll("Via")) sip("parseVia", () => responseTarget(parseVia(v)));
  for (const n of ["Contact", "Route", "Record-Route"]) {
    for (const v of msg.headers.getAll(n)) if (v !== "*") sip(`parseNameAddr(${n})`, () => parseNameAddr(v));
  }
  for (const n of ["WWW-Authenticate", "Proxy-Authenticate"]) {
    for (const v of msg.headers.getAll(n)) sip(`parseChallenges(${n})`, () => parseChallenges(v));
  }
  for (const n of ["Authorization", "Proxy-Authorization"]) {
    for (const v of msg.headers.getAll(n)) sip(`parseCredentials(${n})`, () => parseCredentials(v));
  }
  if (msg.kind === "request") {
    const problem = never("checkRequestSemantics", () => checkRequestSemantics(msg, { supported: ["timer"] }));
    if (problem) check(!/[\r\n]/.test(problem.reason), `checkRequestSemantics: CR/LF in reason ${problem.reason}`);
  }
  if (msg.body.length > 0) sdpRun(bodyText(msg));
}

function sdpRun(text: string): void {
  expectOnly("parseSdpText", () => parseSdpText(text), SdpSyntaxError);
  const answer = expectOnly(
    "createAnswer",
    () => createAnswer(text, { registry: codecs, address: "192.0.2.20", port: 41000, telephoneEvent: true }),
    SdpError,
  );
  if (answer !== undefined) {
    check(!/\r(?!\n)|(?<!\r)\n/.test(answer), "createAnswer: a bare CR or LF in the answer");
    expectOnly("agreedMedia(offer, answer)", () => agreedMedia(text, answer, { registry: codecs }), SdpError);
  }
  expectOnly("negotiated", () => negotiated(text, { registry: codecs }), SdpError);
  expectOnly("agreedMedia(answer, offer)", () => agreedMedia(text, SDP_OFFER, { registry: codecs }), SdpError);
}

const sipMessage: FuzzTarget = {
  name: "sip-message",
  seeds: sipSeeds,
  maxLen: 65535,
  testCases: 4000,
  run(input) {
    never("formatTraceEvent", () =>
      formatTraceEvent({
        direction: "received",
        data: input,
        local: { hostname: "127.0.0.1", port: 5060 },
        remote: { hostname: "127.0.0.1", port: 5061 },
        time: new Date(0),
      }));
    const msg = expectOnly("parseMessage", () => parseMessage(input), SipParseError);
    if (msg) readParsed(msg);
    else {
      // A request refused: the 400 is built from what could be read, with no CR/LF in the reason.
      try {
        parseMessage(input);
      } catch (e) {
        const err = e as SipParseError;
        check(!/[\r\n]/.test(err.reason), `parseMessage: CR/LF in reason ${JSON.stringify(err.reason)}`);
        check(err.status === 400 || err.status === 505, `parseMessage: status ${err.status}`);
      }
    }
  },
};

/** A user agent on a memory network, answering INVITEs with an SDP answer, and a raw peer sending it datagrams. */
interface UaBench {
  clock: VirtualClock;
  out: MemoryOutput;
  ua: SipUserAgent;
  peer: ReturnType<MemoryNetwork["bind"]>;
  errors: unknown[];
  /** The start lines the peer received (the last case's). */
  answers: string[];
}

let uaBench: UaBench | undefined;

function openUa(): UaBench {
  const clock = new VirtualClock();
  const net = new MemoryNetwork({ clock, latencyMs: 1 });
  const out = new MemoryOutput();
  const log = new Logger({ level: "debug", outputs: [out] });
  const ua = new SipUserAgent({ transport: net.bind("10.0.0.2", 5060), clock, log, userName: "bob", overload: false });
  const errors: unknown[] = [];
  ua.onInvite((call) => {
    try {
      if (call.offer === undefined) return call.reject(488);
      let answer: string;
      try {
        answer = createAnswer(call.offer, { registry: codecs, address: "10.0.0.2", port: 41000 });
      } catch (e) {
        if (!(e instanceof SdpError)) throw e;
        return call.reject(e.status);
      }
      call.accept(answer);
    } catch (e) {
      errors.push(e);
    }
  });
  const peer = net.bind("10.0.0.1", 5060);
  const answers: string[] = [];
  peer.listen((d) => void answers.push(utf8.decode(d.subarray(0, 40)).split("\r\n")[0]));
  return { clock, out, ua, peer, errors, answers };
}

/** Log lines of a bug's: an error handling a datagram, an exception's name. */
const UA_BUG = /error handling datagram|TypeError|RangeError|ReferenceError|Cannot read propert|is not a function/;

const sipUa: FuzzTarget = {
  name: "sip-ua",
  seeds: () => sipSeeds().map((b) => te.encode(utf8.decode(b).replaceAll("biloxi.example.com", "10.0.0.2"))),
  maxLen: 65535,
  testCases: 1500,
  async run(input) {
    uaBench ??= openUa();
    const b = uaBench;
    b.out.lines.length = 0;
    b.answers.length = 0;
    await b.peer.send(input, { hostname: "10.0.0.2", port: 5060 });
    b.clock.advance(40);
    if (b.errors.length) {
      const e = b.errors.splice(0)[0];
      throw new FuzzFinding(`the INVITE handler threw ${e instanceof Error ? `${e.name}: ${e.message}` : e}`, e);
    }
    const bad = b.out.lines.find((l) => UA_BUG.test(l));
    if (bad) throw new FuzzFinding(`logged: ${bad.slice(0, 300)}`);
  },
};

/** Header values, one per line: `<kind> <value>`; each goes to its parser. */
const VALUE_SEEDS = [
  'addr "A. \\"Al\\" Lee" <sip:alice:pw@[2001:db8::1]:5070;transport=udp;lr?subject=hi&h=x>;tag=88sja8x;q=0.5',
  "addr sip:bob@biloxi.example.com;tag=1",
  "addr <tel:+1-201-555-0123;ext=22;phone-context=example.com>",
  "addr Bob <urn:service:sos>",
  "addr <sip:user;par=u%40example.net@example.com;%6C%72>",
  "via SIP/2.0/UDP [2001:db8::9]:5070;branch=z9hG4bK776;rport;received=192.0.2.1;ttl=16;maddr=224.2.0.1",
  "via SIP / 2.0 / UDP first.example.com: 4000;ttl=16 ;maddr=224.2.0.1 ;branch=z9hG4bKa7c6a8dlze.1 (Acme server)",
  "uri sips:alice@atlanta.example.com:5061;transport=tls?Subject=x&Priority=urgent",
  'params ;tag=1928301774;lr;x="a;b\\"c";y=[::1]',
  "hostport [2001:db8::1]:5070",
  'list Contact "Doe, J" <sip:j@x>, <sip:k@y;p=1,2>, sip:z@w',
  "list Supported timer,,100rel, ",
  'chal Digest realm="a", nonce="1", qop="auth,auth-int", Digest realm="b", nonce="2", algorithm=SHA-256',
  'cred Digest username="alice", realm="example.com", nonce="ab12", uri="sip:example.com", response="00", nc=00000001',
];

const sipValues: FuzzTarget = {
  name: "sip-values",
  seeds: () => VALUE_SEEDS.map((s) => te.encode(s)),
  maxLen: 16384,
  testCases: 6000,
  run(input) {
    const text = utf8.decode(input);
    const sp = text.indexOf(" ");
    const kind = text.slice(0, sp);
    const v = text.slice(sp + 1);
    const sip = (what: string, f: () => unknown) => expectOnly(what, f, SipParseError);
    switch (kind) {
      case "addr":
        sip("parseAddress", () => parseAddress(v));
        sip("parseNameAddr", () => parseNameAddr(v));
        break;
      case "via":
        sip("parseVia", () => responseTarget(parseVia(v)));
        break;
      case "uri":
        sip("parseUri", () => parseUri(v));
        sip("parseAnyUri", () => parseAnyUri(v));
        break;
      case "params":
        sip("parseParams", () => parseParams(v));
        break;
      case "hostport":
        sip("parseHostPort", () => parseHostPort(v));
        break;
      case "list": {
        const s2 = v.indexOf(" ");
        sip("splitHeaderValue", () => splitHeaderValue(v.slice(0, s2 < 0 ? v.length : s2), v.slice(s2 + 1)));
        break;
      }
      case "chal":
        sip("parseChallenges", () => parseChallenges(v));
        break;
      case "cred":
        sip("parseCredentials", () => parseCredentials(v));
        break;
      default: // a mutated kind: every parser gets the value
        for (const f of [parseAddress, parseVia, parseAnyUri, parseParams, parseHostPort, parseChallenges]) {
          sip(f.name, () => f(v));
        }
    }
  },
};

const sdpTarget: FuzzTarget = {
  name: "sdp",
  seeds: () => [
    te.encode(SDP_OFFER),
    te.encode(createOffer({ registry: codecs, address: "::1", port: 5004, codecs: ["PCMA"], rtcpPort: 5010 })),
    te.encode(
      "v=0\r\no=- 1 1 IN IP4 192.0.2.7\r\ns=-\r\nc=IN IP4 192.0.2.7\r\nt=0 0\r\na=sendonly\r\n" +
        "m=video 0 RTP/AVP 31\r\nm=audio 49170/2 RTP/AVP 96 0 8 101\r\nc=IN IP4 224.2.1.1/127/3\r\n" +
        "a=rtpmap:96 opus/48000/2\r\na=fmtp:96 useinbandfec=1\r\na=rtpmap:101 telephone-event/8000\r\n" +
        "a=fmtp:101 0-16\r\na=ptime:22.5\r\na=rtcp:53020 IN IP4 126.16.64.4\r\na=recvonly\r\n",
    ),
  ],
  maxLen: 65535,
  testCases: 3000,
  run(input) {
    sdpRun(utf8.decode(input));
  },
};

// ---- RTP, RTCP, telephone-event ---------------------------------------------------------------------------------

const rtpFrame = (over: Partial<Parameters<typeof serializeRtp>[0]> = {}) =>
  serializeRtp({
    kind: "rtp",
    payloadType: 0,
    sequence: 1,
    timestamp: 160,
    ssrc: 0x1234,
    marker: false,
    payload: new Uint8Array(160).fill(0xff),
    ...over,
  }).slice();

const rtp: FuzzTarget = {
  name: "rtp",
  seeds: () => {
    const ext = rtpFrame({ payload: new Uint8Array([0xbe, 0xde, 0, 1, 1, 2, 3, 4, 5, 6, 7, 8]) });
    ext[0] |= 0x10; // the first 4 payload bytes become an extension header of one word
    const pad = rtpFrame({ payload: new Uint8Array([1, 2, 3, 4, 0, 0, 0, 4]) });
    pad[0] |= 0x20;
    return [rtpFrame(), rtpFrame({ csrc: [1, 2, 3], marker: true }), ext, pad];
  },
  maxLen: 2048,
  testCases: 20000,
  run(input) {
    const r = never("parseRtp", () => parseRtp(input, 5));
    if (typeof r === "string") return;
    const p = r.payload;
    check(
      p.buffer === input.buffer && p.byteOffset >= input.byteOffset,
      "parseRtp: payload is not a view of the input",
    );
    check(p.byteOffset + p.length <= input.byteOffset + input.length, "parseRtp: payload past the end");
    check(p.byteOffset - input.byteOffset >= 12 + (r.csrc?.length ?? 0) * 4, "parseRtp: payload inside the header");
  },
};

/**
 * Packets, each as `<arrival delta ms: 1 byte> <length: 2 bytes> <bytes>`, through a jitter buffer (what a receive
 * chain does with what its socket gets, past rtp-depacketizer's payload-type filter).
 */
const rtpReceive: FuzzTarget = {
  name: "rtp-receive",
  seeds: () => {
    const pack = (frames: { dt: number; data: Uint8Array }[]) => {
      const out: number[] = [];
      for (const f of frames) out.push(f.dt, f.data.length >> 8, f.data.length & 0xff, ...f.data);
      return Uint8Array.from(out);
    };
    const audio = (seq: number, pt = 0, len = 160) =>
      rtpFrame({ sequence: seq, timestamp: 160 * seq, payloadType: pt, payload: new Uint8Array(len).fill(0x55) });
    const ev = (seq: number, end: boolean) =>
      rtpFrame({
        sequence: seq,
        timestamp: 160 * 3,
        payloadType: 101,
        payload: encodeTelephoneEvent({ event: 5, end, volume: 10, duration: 160 * (seq - 2) }),
      });
    return [
      pack([0, 1, 2, 3, 4, 5, 6, 7].map((i) => ({ dt: 20, data: audio(i) }))),
      pack([0, 2, 1, 5, 4, 3, 9, 12].map((i) => ({ dt: 15 + (i % 3) * 10, data: audio(i, 8) }))),
      pack([{ dt: 0, data: audio(1) }, { dt: 20, data: ev(3, false) }, { dt: 20, data: ev(4, true) }, {
        dt: 20,
        data: audio(5, 0, 320),
      }]),
    ];
  },
  maxLen: 8192,
  testCases: 3000,
  run(input) {
    const jb = new JitterBuffer({ min_delay: 20, max_delay: 500, initial_delay: 40, max_conceal: 100 }, { codecs });
    let now = 0;
    let played = 0;
    for (let o = 0; o + 3 <= input.length;) {
      now += input[o];
      const len = (input[o + 1] << 8) | input[o + 2];
      const data = input.subarray(o + 3, o + 3 + len);
      o += 3 + len;
      const f = parseRtp(data, now);
      if (typeof f === "string") continue;
      // rtp-depacketizer's filter: the negotiated audio and telephone-event.
      if (f.payloadType === 0) Object.assign(f, { codec: "PCMU", clockRate: 8000 });
      else if (f.payloadType === 8) Object.assign(f, { codec: "PCMA", clockRate: 8000 });
      else if (f.payloadType === 101) Object.assign(f, { codec: "telephone-event", clockRate: 8000 });
      else continue;
      never("JitterBuffer.tick", () => {
        while (jb.nextTickTime() !== undefined && jb.nextTickTime()! <= now) {
          jb.tick();
          check(++played <= now / 5 + 10, `${played} frames played in ${now} ms`);
        }
      });
      never("JitterBuffer.insert", () => jb.insert(f, now));
    }
    const rest = never("JitterBuffer.drain", () => jb.drain());
    check(rest.length <= 2000, `drain gave ${rest.length} frames`);
    never("JitterBuffer.stats", () => jb.stats());
  },
};

const { CompoundPacket, SenderReportPacket, ReceiverReportPacket, ReceptionReport, SdesPacket, ByePacket } = packets;

function rtcpSeeds(): Uint8Array[] {
  const bytes = (c: InstanceType<typeof CompoundPacket>) => {
    const v = c.getView();
    return new Uint8Array(v.buffer as ArrayBuffer, v.byteOffset, v.byteLength).slice();
  };
  const report = () => {
    const r = new ReceptionReport();
    r.setSsrc(0x5678);
    r.setFractionLost(12);
    r.setTotalLost(3);
    r.setHighestSeqNumber(1000);
    r.setJitter(80);
    r.setLastSRTimestamp(0x12345678);
    r.setDelaySinceLastSR(0x10000);
    return r;
  };
  const sdes = () => {
    const s = new SdesPacket();
    const ch = new packets.SdesChunk();
    ch.setSsrc(0x1234);
    ch.setItems([{ type: 1, text: "peer@example.com" }, { type: 6, text: "voxpipe" }]);
    s.addChunk(ch);
    return s;
  };
  const sr = new SenderReportPacket();
  sr.setSsrc(0x1234);
  sr.setNtpSeconds(3900000000);
  sr.setNtpFraction(0x80000000);
  sr.setRtpTimestamp(160);
  sr.setPacketCount(50);
  sr.setOctetCount(8000);
  sr.addReport(report());
  const c1 = new CompoundPacket();
  c1.addPacket(sr);
  c1.addPacket(sdes());
  const rr = new ReceiverReportPacket();
  rr.setSsrc(0x1234);
  rr.addReport(report());
  rr.addReport(report());
  const bye = new ByePacket();
  bye.addSsrc(0x1234);
  bye.setReason("done");
  const c2 = new CompoundPacket();
  c2.addPacket(rr);
  c2.addPacket(sdes());
  c2.addPacket(bye);
  const c3 = new CompoundPacket();
  const rr2 = new ReceiverReportPacket();
  rr2.setSsrc(0x1234);
  c3.addPacket(rr2);
  return [bytes(c1), bytes(c2), bytes(c3)];
}

/** One RTCP session (its peer known) fed every input: state carries over from case to case, as on a socket. */
function rtcpSession(): { session: RtcpSession; errors: unknown[] } {
  const clock = new VirtualClock(0);
  const net = new MemoryNetwork({ clock });
  const session = new RtcpSession({
    clock,
    socket: net.bind("127.0.0.1", 6001),
    remote: { hostname: "127.0.0.1", port: 7001 },
    cname: "me",
    minInterval: 5,
    bandwidthKbps: 80,
    ssrc: 0x5678,
    random: () => 0.5,
  });
  const errors: unknown[] = [];
  session.attach({
    direction: "receive",
    onReport(info) {
      try {
        describeReport(info);
        session.stats();
      } catch (e) {
        errors.push(e);
      }
    },
  });
  session.onSent({
    kind: "rtp",
    payloadType: 0,
    sequence: 1,
    timestamp: 160,
    ssrc: 0x5678,
    marker: false,
    payload: new Uint8Array(160),
  });
  return { session, errors };
}

let rtcpState: ReturnType<typeof rtcpSession> | undefined;

const rtcp: FuzzTarget = {
  name: "rtcp",
  seeds: rtcpSeeds,
  maxLen: 1500,
  testCases: 8000,
  run(input) {
    never("checkRtcp", () => checkRtcp(input));
    rtcpState ??= rtcpSession();
    const { session, errors } = rtcpState;
    never("RtcpSession.receive", () => session.receive(input, { hostname: "127.0.0.1", port: 7001 }));
    never("RtcpSession.stats", () => session.stats());
    if (errors.length) {
      const e = errors.splice(0)[0];
      throw new FuzzFinding(`a report published threw ${e instanceof Error ? `${e.name}: ${e.message}` : e}`, e);
    }
  },
};

let dtmf: { receiver: DtmfReceiver; now: number; events: number } | undefined;

const telephoneEvent: FuzzTarget = {
  name: "telephone-event",
  seeds: () => {
    const ev = (event: number, end: boolean, duration: number) =>
      encodeTelephoneEvent({ event, end, volume: 10, duration });
    const two = new Uint8Array(8);
    two.set(ev(1, true, 800));
    two.set(ev(2, false, 160), 4);
    // An RTP packet header (seq, ts, ssrc) in front: the receiver's input is a packet.
    const withHeader = (p: Uint8Array) => rtpFrame({ payloadType: 101, payload: p });
    return [withHeader(ev(5, false, 160)), withHeader(ev(5, true, 1280)), withHeader(two)];
  },
  maxLen: 600,
  testCases: 20000,
  run(input) {
    const frame = never("parseRtp", () => parseRtp(input));
    const payload = typeof frame === "string" ? input : frame.payload;
    const events = never("decodeTelephoneEvents", () => decodeTelephoneEvents(payload));
    if (typeof events !== "string") {
      for (const e of events) check(e.event <= 255 && e.volume <= 63 && e.duration <= 0xffff, "event out of range");
    }
    dtmf ??= { receiver: new DtmfReceiver({ clockRate: 8000, onEvent: () => dtmf!.events++ }), now: 0, events: 0 };
    dtmf.now += 20;
    const ssrc = typeof frame === "string" ? 1 : frame.ssrc;
    const ts = typeof frame === "string" ? 0 : frame.timestamp;
    const before = dtmf.events;
    never("DtmfReceiver.receive", () => dtmf!.receiver.receive({ ssrc, timestamp: ts, payload }, dtmf!.now));
    never("DtmfReceiver.expire", () => dtmf!.receiver.expire(dtmf!.now));
    never("DtmfReceiver.stats", () => dtmf!.receiver.stats());
    check(dtmf.events - before <= 16, `DtmfReceiver: ${dtmf.events - before} events from one packet`);
  },
};

// ---- relay line protocol -------------------------------------------------------------------------------------------

const relay: FuzzTarget = {
  name: "relay",
  seeds: () =>
    [
      "HELLO 40000 127.0.0.1 40002\nHEARTBEAT\r\nSTATS\nDISCONNECT\n",
      "HELLO 5004 ::ffff:192.0.2.1 6000\r\n",
      "OK 9999 120 127.0.0.1\nOK\nTARGET UP\nTARGET DOWN\nINVALID empty line\nBYE moved\nBUSY too many\nFULL\n",
      'STATS {"clients":1}\nTIMEOUT\n',
    ].map((s) => te.encode(s)),
  maxLen: 4096,
  testCases: 10000,
  run(input) {
    const splitter = new LineSplitter(MAX_LINE);
    const lines: string[] = [];
    let tooLong = 0;
    // Fed in two pieces, cut where the input says (as TCP may cut it).
    const cut = input.length ? input[0] % (input.length + 1) : 0;
    for (const piece of [input.subarray(0, cut), input.subarray(cut)]) {
      never("LineSplitter.push", () => splitter.push(piece, (l) => lines.push(l), () => tooLong++));
    }
    check(splitter.pending <= MAX_LINE, `LineSplitter holds ${splitter.pending} bytes`);
    for (const l of lines) {
      check(l.length <= MAX_LINE, `LineSplitter: a line of ${l.length} bytes`);
      const r = never("parseRequest", () => parseRequest(l));
      if ("invalid" in r) {
        check(!/[\r\n]/.test(r.invalid), `parseRequest: CR/LF in reason ${JSON.stringify(r.invalid)}`);
      }
      never("parseReply", () => parseReply(l));
    }
    const whole = latin1.decode(input);
    never("parseRequest", () => parseRequest(whole));
    never("parseReply", () => parseReply(whole));
  },
};

// ---- WebSocket bridge: text and JSON protocols, request head, frames -------------------------------------------

/** A media command's base64 audio, decoded as the bridge does in either encoding. */
function mediaPayload(payload: string): void {
  for (const encoding of ["l16", "mulaw"] as const) {
    const samples = expectOnly(`decodeAudio(${encoding})`, () => decodeWsAudio(payload, encoding), AudioFormatError);
    if (samples) check(samples.length <= payload.length, `${samples.length} samples from ${payload.length} characters`);
  }
}

const wsText: FuzzTarget = {
  name: "ws-text",
  seeds: () =>
    [
      "AUTH:secret",
      "CALL:sip:bob@127.0.0.1:5062",
      "ANSWER:c1",
      "REJECT:c1##603",
      "HANGUP:c1",
      "BYE:c1\r\n",
      "RTP:c1##AAAAAAAAAAA=",
      "DTMF:c1##123#*A",
      "MARK:c1##end-of-greeting",
      "CLEAR:c1",
      "ENCODING:mulaw",
      "PING",
    ].map((s) => te.encode(s)),
  maxLen: 4096,
  testCases: 20000,
  run(input) {
    const cmd = expectOnly("textProtocol.parse", () => textProtocol.parse(utf8.decode(input)), ProtocolError);
    if (cmd && "callId" in cmd) check(cmd.callId.length <= 256 && !/[\s#]/.test(cmd.callId), "bad call id accepted");
    if (cmd?.type === "media") mediaPayload(cmd.payload);
  },
};

const wsJson: FuzzTarget = {
  name: "ws-json",
  seeds: () =>
    [
      { event: "auth", auth: { token: "secret" } },
      {
        event: "dial",
        ref: "r1",
        dial: {
          to: "sip:bob@127.0.0.1",
          ringTimeout: 30,
          mediaFormat: { encoding: "audio/x-mulaw", sampleRate: 8000 },
        },
      },
      { event: "answer", callId: "c1", answer: { mediaFormat: { encoding: "audio/l16", channels: 1 } } },
      { event: "reject", callId: "c1", reject: { status: 486, reason: "busy" } },
      { event: "media", callId: "c1", media: { payload: "AAAA" } },
      { event: "dtmf", callId: "c1", dtmf: { digits: "12#" } },
      { event: "mark", callId: "c1", mark: { name: "m" } },
      { event: "clear", callId: "c1" },
      { event: "stop", callId: "c1" },
      { event: "ping" },
    ].map((o) => te.encode(JSON.stringify(o))),
  maxLen: 4096,
  testCases: 20000,
  run(input) {
    const cmd = expectOnly("jsonProtocol.parse", () => jsonProtocol.parse(utf8.decode(input)), ProtocolError);
    if (cmd?.type === "media") mediaPayload(cmd.payload);
  },
};

const REMOTE = { transport: "tcp", hostname: "127.0.0.1", port: 40000 } as Deno.NetAddr;

const wsHead: FuzzTarget = {
  name: "ws-head",
  seeds: () =>
    [
      "GET /?token=abc&protocol=json HTTP/1.1\r\nHost: 127.0.0.1:8089\r\nUpgrade: websocket\r\n" +
      "Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" +
      "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: voxpipe-text, voxpipe-json",
      "GET / HTTP/1.0\r\nUser-Agent: x",
      "POST /calls HTTP/1.1\r\nHost: a\r\nContent-Length: 0",
    ].map((s) => te.encode(s)),
  maxLen: 8192,
  testCases: 6000,
  run(input) {
    const req = expectOnly("parseHead", () => parseHead(input, REMOTE), HeadError);
    if (req?.upgrade) check(req.method === "GET" && req.headers.has("sec-websocket-key"), "bad upgrade accepted");
  },
};

/** A client frame: FIN, `op`, masked with `mask`. */
function clientFrame(op: number, payload: Uint8Array, fin = true, mask = [1, 2, 3, 4]): Uint8Array {
  const n = payload.length;
  const h = n < 126 ? 2 : n < 65536 ? 4 : 10;
  const out = new Uint8Array(h + 4 + n);
  out[0] = (fin ? 0x80 : 0) | op;
  if (n < 126) out[1] = 0x80 | n;
  else if (n < 65536) {
    out[1] = 0x80 | 126;
    out[2] = n >> 8;
    out[3] = n & 0xff;
  } else {
    out[1] = 0x80 | 127;
    new DataView(out.buffer).setUint32(6, n);
  }
  out.set(mask, h);
  for (let i = 0; i < n; i++) out[h + 4 + i] = payload[i] ^ mask[i & 3];
  return out;
}

/** A connection that reads `chunks` then its end, and takes every write. */
function fakeConn(chunks: Uint8Array[]): Deno.TcpConn {
  let i = 0;
  return {
    read(buf: Uint8Array): Promise<number | null> {
      if (i >= chunks.length) return Promise.resolve(null);
      const c = chunks[i];
      const n = Math.min(c.length, buf.length);
      buf.set(c.subarray(0, n));
      if (n < c.length) chunks[i] = c.subarray(n);
      else i++;
      return Promise.resolve(n);
    },
    write: (b: Uint8Array) => Promise.resolve(b.length),
    close() {},
    closeWrite: () => Promise.resolve(),
  } as unknown as Deno.TcpConn;
}

const WS_MAX_MESSAGE = 1024;

const wsFrames: FuzzTarget = {
  name: "ws-frames",
  seeds: () => {
    const t = (s: string) => te.encode(s);
    const close = new Uint8Array([0x03, 0xe8, ...t("bye")]);
    return [
      clientFrame(1, t("CALL:sip:bob@127.0.0.1")),
      Uint8Array.from([
        ...clientFrame(1, t("RTP:c1##"), false),
        ...clientFrame(0, t("AAAA"), false),
        ...clientFrame(0, t("AAAA")),
      ]),
      Uint8Array.from([...clientFrame(9, t("ping")), ...clientFrame(2, new Uint8Array(200)), ...clientFrame(8, close)]),
      Uint8Array.from([...clientFrame(10, t("")), ...clientFrame(1, t("\u00e9\u{1F600}"))]),
      clientFrame(2, new Uint8Array(2000)),
    ];
  },
  maxLen: 8192,
  testCases: 3000,
  async run(input) {
    const errors: unknown[] = [];
    // The first byte chooses what to do with a message that is too long, and where TCP cuts the stream.
    const tooLong = input.length && input[input.length - 1] & 1 ? "skip" : "close";
    const cut = input.length ? (input[0] * 31) % (input.length + 1) : 0;
    const socket = new ServerWebSocket(fakeConn([input.slice(0, cut), input.slice(cut)]), REMOTE, "", {
      maxMessageBytes: WS_MAX_MESSAGE,
      tooLong,
      maxHandshakes: 1,
      maxHeadBytes: 8192,
      headTimeoutMs: 1000,
      closeTimeoutMs: 60_000,
      onError: (e) => errors.push(e),
    });
    let closed = 0;
    socket.onmessage = (data) => {
      const n = typeof data === "string" ? te.encode(data).length : data.length;
      if (n > WS_MAX_MESSAGE) errors.push(new FuzzFinding(`a message of ${n} bytes delivered`));
    };
    socket.onclose = () => closed++;
    await socket._run(new Uint8Array(0), new Uint8Array(0));
    check(closed === 1, `onclose called ${closed} times`);
    if (errors.length) {
      const e = errors[0];
      throw new FuzzFinding(`the socket reported ${e instanceof Error ? `${e.name}: ${e.message}` : e}`, e);
    }
  },
};

// ---- WAV files, console audio ---------------------------------------------------------------------------------

let wavDir: string | undefined;

const wav: FuzzTarget = {
  name: "wav",
  seeds: () => {
    // A RIFF/WAVE file by hand: fmt (tag, channels, rate, bits; EXTENSIBLE with its GUID when asked), data.
    const riff = (tag: number, bits: number, frames: number, ch = 1, ext = false) => {
      const fmtLen = ext ? 40 : 16;
      const dataLen = frames * ch * (bits / 8);
      const out = new Uint8Array(12 + 8 + fmtLen + 8 + dataLen);
      const v = new DataView(out.buffer);
      out.set(te.encode("RIFF"), 0);
      v.setUint32(4, out.length - 8, true);
      out.set(te.encode("WAVEfmt "), 8);
      v.setUint32(16, fmtLen, true);
      v.setUint16(20, ext ? 0xfffe : tag, true);
      v.setUint16(22, ch, true);
      v.setUint32(24, 8000, true);
      v.setUint32(28, 8000 * ch * (bits / 8), true);
      v.setUint16(32, ch * (bits / 8), true);
      v.setUint16(34, bits, true);
      if (ext) {
        v.setUint16(36, 22, true);
        v.setUint16(38, bits, true);
        v.setUint32(44, tag, true);
        out.set([0x00, 0x00, 0x10, 0x00, 0x80, 0x00, 0x00, 0xaa, 0x00, 0x38, 0x9b, 0x71], 48);
      }
      const d = 20 + fmtLen;
      out.set(te.encode("data"), d);
      v.setUint32(d + 4, dataLen, true);
      for (let i = d + 8; i < out.length; i++) out[i] = (i * 37) & 0xff;
      return out;
    };
    const g711 = wavHeader({ encoding: "mulaw", sampleRate: 8000, channels: 1, dataBytes: 300 });
    return [
      Deno.readFileSync(new URL("../examples/audio/hello.wav", import.meta.url)).subarray(0, 1200),
      riff(1, 16, 400),
      riff(1, 24, 100, 2),
      riff(3, 32, 100, 1, true),
      riff(1, 8, 50, 3),
      Uint8Array.from([...g711, ...new Uint8Array(300).fill(0x7f)]),
    ];
  },
  maxLen: 4096,
  testCases: 1000,
  async run(input) {
    wavDir ??= Deno.makeTempDirSync({ prefix: "voxpipe-fuzz-" });
    const path = `${wavDir}/case.wav`;
    Deno.writeFileSync(path, input);
    let info;
    try {
      info = await readWavInfo(path, "fuzz", true);
    } catch (e) {
      if (e instanceof WavFormatError) return;
      throw new FuzzFinding(`readWavInfo threw ${e instanceof Error ? `${e.name}: ${e.message}` : e}`, e);
    }
    check(info.dataOffset + info.dataBytes <= input.length, "readWavInfo: data past the end of the file");
    check(Number.isInteger(info.frames) && info.frames >= 0, `readWavInfo: frames ${info.frames}`);
    let reader: WavStreamReader | undefined;
    try {
      reader = await WavStreamReader.open(info, 160, false, "fuzz", false, true, true);
      let total = 0;
      for (let s = await reader.next(); s; s = await reader.next()) {
        total += s.length;
        check(total <= info.frames * info.channels + 160 * info.channels, "WavStreamReader: more samples than frames");
      }
    } catch (e) {
      if (e instanceof FuzzFinding || !(e instanceof WavFormatError)) {
        throw e instanceof FuzzFinding ? e : new FuzzFinding(`WavStreamReader threw ${e}`, e);
      }
    } finally {
      reader?.close();
    }
  },
};

const consoleAudio: FuzzTarget = {
  name: "console-audio",
  seeds:
    () => [encodeAudio(new Int16Array([0, 1, -1, 32767, -32768]), 8000, 1), encodeAudio(new Int16Array(0), 48000, 2)],
  maxLen: 2048,
  testCases: 20000,
  run(input) {
    let r;
    try {
      r = decodeAudio(input);
    } catch (e) {
      if (e instanceof Error && e.constructor === Error && /^not a console audio message/.test(e.message)) return;
      throw new FuzzFinding(`decodeAudio threw ${e}`, e);
    }
    check(r.samples.length * 2 + 8 === input.length, "decodeAudio: sample count does not match the length");
  },
};

/** A console hub on fake calls, and a page connected to it: state carries over from case to case. */
interface ConsolePage {
  hub: ConsoleHub;
  calls: FakeCalls;
  conn: ConsoleConnection;
  msgs: Record<string, unknown>[];
  dir: string;
  clock: VirtualClock;
}

let consolePage: ConsolePage | undefined;

async function openConsole(): Promise<ConsolePage> {
  const clock = new VirtualClock();
  const log = new Logger({ level: "info", outputs: [new MemoryOutput()] });
  const calls = new FakeCalls({ clock, log, answerAfterMs: 300, epoch: 1_700_000_000_000 });
  const dir = Deno.makeTempDirSync({ prefix: "voxpipe-fuzz-console-" });
  const library = new AudioLibrary({
    libraryDir: new URL("../examples/audio", import.meta.url).pathname,
    uploadDir: `${dir}/uploads`,
  });
  const hub = new ConsoleHub({ ...CONSOLE_HUB_DEFAULTS, recordDir: `${dir}/rec`, calls, clock, log, library });
  hub.start();
  const msgs: Record<string, unknown>[] = [];
  const conn = await hub.connect({
    send: (m) => void msgs.push(JSON.parse(JSON.stringify(m))),
    sendAudio: () => true,
  });
  return { hub, calls, conn, msgs, dir, clock };
}

/** Error texts that are a bug's, not a refusal's: reading what is not there, calling what is not a function. */
const BUG_TEXT = /Cannot read propert|Cannot convert|is not a function|is not iterable|\[object Object\]/;

const consoleHub: FuzzTarget = {
  name: "console-hub",
  seeds: () =>
    [
      { op: "page", req: 1, size: 20, filter: "active", page: 0 },
      { op: "files", req: 2 },
      { op: "probe", req: 3, file: "library/hello.wav" },
      { op: "dial", req: 4, target: "sip:bob@127.0.0.1:5062", file: "library/hello.wav", loop: true },
      { op: "select", req: 5, id: "c1" },
      { op: "answer", req: 6, id: "c1" },
      { op: "reject", req: 7, id: "c1", status: 486 },
      { op: "hangup", req: 8, id: "c1" },
      { op: "play", req: 9, id: "c1" },
      { op: "pause", req: 10, id: "c1" },
      { op: "record", req: 11, id: "c1", on: true },
      { op: "auto_answer", req: 12, on: true },
      { op: "dtmf", req: 13, id: "c1", digits: "12#" },
    ].map((o) => te.encode(JSON.stringify(o))),
  maxLen: 2048,
  testCases: 1500,
  async run(input) {
    consolePage ??= await openConsole();
    const page = consolePage;
    page.msgs.length = 0;
    try {
      await page.conn.receive(utf8.decode(input));
    } catch (e) {
      throw new FuzzFinding(`receive threw ${e instanceof Error ? `${e.name}: ${e.message}` : e}`, e);
    }
    page.clock.advance(100);
    // The fake call service has no max_calls: calls placed by dial ops are ended once there are 8 (as a call server's
    // limit would bound them), else each case costs more than the last.
    if (page.calls.calls().filter((c) => c.state !== "ended").length > 8) page.calls.closeAll();
    const reply = page.msgs.find((m) => m.type === "reply");
    check(reply !== undefined, "no reply");
    if (reply!.ok === false) {
      const error = String(reply!.error);
      // The console quotes what the page sent (an unknown op, a call id) whole: bounded by the message, not beyond.
      check(error.length <= input.length + MAX_ERROR_MESSAGE, `an error of ${error.length} characters`);
      check(!BUG_TEXT.test(error), `the reply's error is a bug's: ${error.slice(0, 200)}`);
    }
  },
};

/** Every target, in the order they run. */
export const TARGETS: FuzzTarget[] = [
  sipMessage,
  sipValues,
  sdpTarget,
  sipUa,
  rtp,
  rtpReceive,
  rtcp,
  telephoneEvent,
  relay,
  wsText,
  wsJson,
  wsHead,
  wsFrames,
  wav,
  consoleAudio,
  consoleHub,
];

/** Removes what the targets left behind (the WAV target's directory). */
export async function cleanupTargets(): Promise<void> {
  if (wavDir) Deno.removeSync(wavDir, { recursive: true });
  wavDir = undefined;
  if (uaBench) {
    const b = uaBench;
    uaBench = undefined;
    await b.ua.close?.();
    await b.peer.close();
  }
  if (consolePage) {
    const p = consolePage;
    consolePage = undefined;
    p.calls.closeAll();
    await p.hub.close();
    Deno.removeSync(p.dir, { recursive: true });
  }
  rtcpState = undefined;
  dtmf = undefined;
}
