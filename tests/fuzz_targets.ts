/**
 * The parsers fuzzed by tests/fuzz_test.ts (a bounded number of seeded cases each) and bench/fuzz.ts (as many as
 * asked): each target has valid seed inputs (from the fixtures and the formats' own writers) and a `run` that feeds
 * one input to the parser and everything that reads its result. A run passes when the parser returns, or throws the
 * error type its module documents; anything else (a TypeError, a RangeError from a stack overflow, an error reported
 * by a socket's callbacks, a broken invariant) is a finding, thrown as {@linkcode FuzzFinding}.
 *
 * Some targets drive a server whose state carries over from case to case (on a memory network and a virtual clock):
 * `sip-relay` (mutated REGISTERs and INVITEs to the SIP relay's registrar, Digest checks and B2BUA, from a few and from
 * ever new source addresses), `sip-dialog` (sequences of requests of one call to a callee: INVITE, ACK, re-INVITE,
 * UPDATE, INFO, PRACK, CANCEL, BYE, split at `~~~` lines), `sip-caller` (a call placed by a user agent, and the
 * callee's responses and requests to it, split the same way), `relay-session` (the relay's line protocol on several TCP
 * connections, with datagrams and waits, one command a line: `<0-7><line>` to a connection, `x<n>` closes it, `w<ms>`
 * waits, `u<n> <port> <bytes>` a datagram from connection n's address, `r<bytes>` bytes without their LF) and `console-http` (raw HTTP requests to the console's
 * server on loopback). Their seeds hold `@NAME@` placeholders the run fills in (a fresh branch, Call-ID, nonce, the
 * callee's tag) so that mutated cases do not all collide with the first. Besides what a parser target checks, they
 * check the documented bounds of the servers' tables, where datagrams go, the answers' statuses and lengths, and that
 * nothing is kept once the virtual clock ran past every timer.
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
import { HeadError, parseHead, ServerWebSocket } from "../core/net/websocket_server.ts";
import { decodeFixture, FIXTURES } from "./rfc4475.ts";
import { formatTraceEvent } from "../plugins/sip/trace.ts";
import { Logger, MemoryOutput } from "../core/log.ts";
import { AudioLibrary } from "../plugins/console/files.ts";
import { CONSOLE_HUB_DEFAULTS, type ConsoleConnection, ConsoleHub } from "../plugins/console/hub.ts";
import { FakeCalls } from "./console_fake_calls.ts";
import { SipUserAgent } from "../plugins/sip/user_agent.ts";
import type { OutgoingCall } from "../plugins/sip/outgoing_call.ts";
import { JitterBuffer } from "../plugins/rtp/jitter_buffer.ts";
import { codecs } from "./registry_util.ts";
import { SipRelay } from "../plugins/b2bua/sip_relay.ts";
import { digestAuthenticator, digestResponse, parseRegisterRequest } from "../plugins/sip/mod.ts";
import type { SipMessage } from "../plugins/sip/message.ts";
import { formatHostPort, type HostPort } from "../core/net/address.ts";
import type { MemorySocket } from "../core/net/memory.ts";
import { type ConsoleService, startConsole } from "../plugins/console/service.ts";
import { consoleOptions } from "../plugins/console/mod.ts";
import { RegistrationError as RelayRegistrationError, RelayRegistration } from "../plugins/relay/registration.ts";
import { MemoryStreamNetwork, type StreamConn } from "../plugins/relay/stream.ts";
import { LineClient, RELAY_IP as RELAY_TCP_IP, type World as RelayWorld, world as relayWorldOf } from "./relay_util.ts";

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

// ---- SIP relay: registrar, Digest server, B2BUA ----------------------------------------------------------------------

/**
 * Moves `clock` by `ms`, `step` at a time, letting promises settle between steps with microtasks only (no macrotask
 * turn: `advanceAsync`'s `setTimeout` would make each step cost a millisecond of real time).
 */
async function advanceQuick(clock: VirtualClock, ms: number, step: number): Promise<void> {
  for (let t = 0; t < ms; t += step) {
    for (let i = 0; i < 12; i++) await Promise.resolve();
    clock.advance(Math.min(step, ms - t));
  }
  for (let i = 0; i < 12; i++) await Promise.resolve();
}

/** `b` as a string of one character per byte (placeholders are ASCII: replaced without decoding the rest). */
function bytesText(b: Uint8Array): string {
  let s = "";
  for (let i = 0; i < b.length; i += 8192) s += String.fromCharCode(...b.subarray(i, i + 8192));
  return s;
}

/** `input` with each `@NAME@` placeholder of `subs` replaced (bytes other than the placeholders kept as they are). */
function fillIn(input: Uint8Array, subs: Record<string, string>): Uint8Array {
  let s = bytesText(input);
  for (const [k, v] of Object.entries(subs)) if (s.includes(k)) s = s.replaceAll(k, v);
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

const RELAY_USERS = new Map([["alice", "alice-pw-1"], ["bob", "bob-pw-2"], ["carol", "carol-pw-3"]]);
/** The two relays fuzzed: with Digest users (REGISTER and INVITE need credentials) and without. */
const AUTH_RELAY = "10.0.0.9", OPEN_RELAY = "10.0.0.8";
const SR = { maxClients: 8, maxContacts: 3, maxCalls: 4, maxExpires: 300, maxSources: 40, maxNonces: 20 };

interface RelayFuzz {
  clock: VirtualClock;
  net: MemoryNetwork;
  logs: MemoryOutput;
  relays: Map<string, SipRelay>;
  /** alice (10.0.0.1) and bob (10.0.0.2), registered at both relays; bob answers every call. */
  phones: { user: string; ua: SipUserAgent }[];
  /** Datagrams the relays sent during the case under way. */
  sent: { from: HostPort; to: HostPort; data: Uint8Array }[];
  /** Hosts that sent to a relay, and when (a relay may answer them, or call them once registered). */
  heard: Map<string, number>;
  /** Sockets of the sources fuzz datagrams come from. */
  pool: Map<string, MemorySocket>;
  /** Where nonces are fetched from (a REGISTER without credentials), and the 401s it got. */
  nonceSock: MemorySocket;
  nonceReplies: string[];
  n: number;
}

let relayFuzz: RelayFuzz | undefined;

async function openRelayFuzz(): Promise<RelayFuzz> {
  const clock = new VirtualClock();
  const sent: RelayFuzz["sent"] = [];
  const net = new MemoryNetwork({
    clock,
    latencyMs: 1,
    impair: (data, from, to) => {
      if (from.hostname === AUTH_RELAY || from.hostname === OPEN_RELAY) sent.push({ from, to, data });
      return { delayMs: 0 };
    },
  });
  const logs = new MemoryOutput();
  const log = new Logger({ level: "debug", outputs: [logs] });
  const relays = new Map<string, SipRelay>();
  for (const ip of [AUTH_RELAY, OPEN_RELAY]) {
    const relay = new SipRelay({
      clock,
      log,
      net,
      bind: ip,
      port: 5060,
      codecs,
      ...(ip === AUTH_RELAY
        ? {
          users: RELAY_USERS,
          authLimits: {
            maxFailures: 5,
            failureWindow: 60,
            blockTime: 5,
            limitLoopback: true,
            maxSources: SR.maxSources,
            maxNonces: SR.maxNonces,
          },
        }
        : {}),
      maxClients: SR.maxClients,
      maxContacts: SR.maxContacts,
      minExpires: 10,
      maxExpires: SR.maxExpires,
      defaultExpires: 120,
      retryAfter: 5,
      maxCalls: SR.maxCalls,
      ringTimeout: 10,
      mediaTimeout: 30,
      rtpPorts: [20000, 20099],
      latch: "signalling",
      maxPacket: 1500,
      nat: true,
    });
    relay.start();
    relays.set(ip, relay);
  }
  const phones = [["alice", "10.0.0.1"], ["bob", "10.0.0.2"]].map(([user, ip]) => {
    const ua = new SipUserAgent({
      transport: net.bind(ip, 5060),
      clock,
      userName: user,
      overload: false,
      authenticator: digestAuthenticator({ username: user, password: RELAY_USERS.get(user)! }),
    });
    ua.onInvite((call) => {
      try {
        call.accept(createAnswer(call.offer ?? "", { registry: codecs, address: ip, port: 30000 }));
      } catch {
        call.reject(488);
      }
    });
    return { user, ua };
  });
  const nonceSock = net.bind("10.0.0.77", 5060);
  const nonceReplies: string[] = [];
  nonceSock.listen((d) => void nonceReplies.push(utf8.decode(d)));
  const b: RelayFuzz = {
    clock,
    net,
    logs,
    relays,
    phones,
    sent,
    heard: new Map(),
    pool: new Map(),
    nonceSock,
    nonceReplies,
    n: 0,
  };
  await registerPhones(b);
  return b;
}

/** Registers alice and bob at both relays (again after a sweep: their bindings expired meanwhile). */
async function registerPhones(b: RelayFuzz): Promise<void> {
  const regs = [];
  for (const p of b.phones) {
    for (const ip of b.relays.keys()) {
      regs.push(
        p.ua.register({ registrar: `sip:${ip}:5060`, aor: `sip:${p.user}@${ip}`, expires: SR.maxExpires })
          .catch(() => {}),
      );
    }
  }
  await advanceQuick(b.clock, 100, 5);
  await Promise.all(regs);
}

/** A fresh nonce of the relay with users: the 401 to a REGISTER without credentials. */
async function freshNonce(b: RelayFuzz): Promise<string> {
  b.nonceReplies.length = 0;
  const n = b.n;
  b.nonceSock.post(
    te.encode(
      `REGISTER sip:${AUTH_RELAY} SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.77:5060;branch=z9hG4bKnonce${n};rport\r\n` +
        `From: <sip:alice@${AUTH_RELAY}>;tag=n${n}\r\nTo: <sip:alice@${AUTH_RELAY}>\r\nCall-ID: nonce${n}\r\n` +
        `CSeq: 1 REGISTER\r\nContact: <sip:alice@10.0.0.77>\r\nContent-Length: 0\r\n\r\n`,
    ),
    { hostname: AUTH_RELAY, port: 5060 },
  );
  await advanceQuick(b.clock, 4, 1);
  return /nonce="([^"]+)"/.exec(b.nonceReplies.join("\n"))?.[1] ?? "no-nonce";
}

/** Every call and transaction of the relays and phones has ended once time moved past every timer. */
async function sweepRelays(b: RelayFuzz): Promise<void> {
  await advanceQuick(b.clock, SR.maxExpires * 1000 + 20_000, 1000);
  for (const [ip, relay] of b.relays) {
    const s = relay.stats();
    check(s.calls.active === 0, `relay ${ip}: ${s.calls.active} calls still up after every timer ran`);
    check(s.registrar.bindings === 0, `relay ${ip}: ${s.registrar.bindings} bindings past their lifetime`);
    const u = relay.userAgent!.usage;
    check(
      u.calls === 0 && u.serverTransactions === 0 && u.clientTransactions === 0 && u.acceptedTransactions === 0,
      `relay ${ip}: the user agent keeps ${JSON.stringify(u)} after every timer ran`,
    );
  }
  for (const p of b.phones) {
    const u = p.ua.usage;
    check(u.calls === 0 && u.serverTransactions === 0, `${p.user}: ${JSON.stringify(u)} after every timer ran`);
  }
  for (const [host, at] of b.heard) if (b.clock.now() - at > 600_000) b.heard.delete(host);
  await registerPhones(b);
}

/** The digest response of alice for `method` and `uri` on the relay with users. */
function aliceResponse(method: string, uri: string, nonce: string): string {
  return digestResponse({
    algorithm: "MD5",
    username: "alice",
    realm: "voxpipe",
    password: RELAY_USERS.get("alice")!,
    method,
    uri,
    nonce,
    cnonce: "0a4f113b",
    nc: 1,
    qop: "auth",
  });
}

/** Log lines of a bug's in the relay: an exception handling a datagram, a handler that threw. */
const RELAY_BUG = new RegExp(`${UA_BUG.source}|registrar handler failed|invite listener failed`);

const sipRelaySeeds = (): Uint8Array[] => {
  const via = "Via: SIP/2.0/UDP 10.3.0.1:5060;branch=@BR@;rport\r\n";
  const head = (method: string, uri: string, to: string, cseq = 1) =>
    `${method} ${uri} SIP/2.0\r\n${via}Max-Forwards: 70\r\nFrom: "Alice" <sip:alice@@RELAY@>;tag=t@N@\r\n` +
    `To: <${to}>\r\nCall-ID: @CID@\r\nCSeq: ${cseq} ${method}\r\n`;
  const reg = (extra: string) =>
    head("REGISTER", "sip:@RELAY@", "sip:alice@@RELAY@") + extra + "Content-Length: 0\r\n\r\n";
  const cred = (header: string, uri: string, resp: string) =>
    `${header}: Digest username="alice", realm="voxpipe", nonce="@NONCE@", uri="${uri}", ` +
    `response="${resp}", algorithm=MD5, cnonce="0a4f113b", qop=auth, nc=00000001\r\n`;
  const sdp = SDP_OFFER;
  const invite = (extra: string) =>
    head("INVITE", "sip:bob@@RELAY@", "sip:bob@@RELAY@") + extra +
    "Contact: <sip:alice@10.3.0.1:5060>\r\nContent-Type: application/sdp\r\n" +
    `Content-Length: ${te.encode(sdp).length}\r\n\r\n${sdp}`;
  return [
    reg("Contact: <sip:alice@10.3.0.1:5060>;expires=60, <sip:alice@10.3.0.1:5062>;q=0.5\r\nExpires: 120\r\n"),
    reg(
      cred("Authorization", "sip:@RELAY@", "@RR@") +
        'Contact: "A" <sip:alice@10.3.0.1:5060;transport=udp>;expires=3600;q=1.0\r\nExpires: 120\r\n',
    ),
    reg(cred("Authorization", "sip:@RELAY@", "@RR@") + "Contact: *\r\nExpires: 0\r\n"),
    reg("Contact: <sip:dave@10.3.0.1>, <sip:dave@10.3.0.2>, <sip:dave@10.3.0.3>, <sip:dave@10.3.0.4>\r\n")
      .replaceAll("sip:alice@@RELAY@", "sip:dave@@RELAY@"),
    reg(cred("Authorization", "sip:@RELAY@", "@RR@") + "Contact: <sip:alice@10.3.0.1:5060>\r\nExpires: 0\r\n"),
    invite(cred("Proxy-Authorization", "sip:bob@@RELAY@", "@RI@")),
    invite(""),
  ].map((s) => te.encode(s));
};

const sipRelay: FuzzTarget = {
  name: "sip-relay",
  seeds: sipRelaySeeds,
  maxLen: 16384,
  testCases: 800,
  async run(input) {
    relayFuzz ??= await openRelayFuzz();
    const b = relayFuzz;
    const n = ++b.n;
    const relayIp = n % 2 ? AUTH_RELAY : OPEN_RELAY;
    // Half the cases from a few sources (their failures add up to a block), half from a new one each (the tables'
    // bounds), to either relay.
    const unique = n % 4 < 2;
    const host = unique ? `10.${64 + ((n >> 16) & 63)}.${(n >> 8) & 255}.${n & 255}` : `10.3.0.${1 + (n % 5)}`;
    const branch = `z9hG4bKfz${n}`;
    const subs: Record<string, string> = { "@RELAY@": relayIp, "@BR@": branch, "@CID@": `fz${n}`, "@N@": String(n) };
    if (relayIp === AUTH_RELAY && bytesText(input).includes("@NONCE@")) {
      const nonce = await freshNonce(b);
      subs["@NONCE@"] = nonce;
      subs["@RR@"] = aliceResponse("REGISTER", `sip:${relayIp}`, nonce);
      subs["@RI@"] = aliceResponse("INVITE", `sip:bob@${relayIp}`, nonce);
    }
    const data = fillIn(input, subs);
    let sock = b.pool.get(host);
    if (!sock) {
      sock = b.net.bind(host, 5060);
      if (!unique) b.pool.set(host, sock);
    }
    b.logs.lines.length = 0;
    b.sent.length = 0;
    b.heard.set(host, b.clock.now());
    sock.post(data, { hostname: relayIp, port: 5060 });
    await advanceQuick(b.clock, 300, 20);
    if (unique) await sock.close();
    const relay = b.relays.get(relayIp)!;
    // Where the relays sent: to hosts that sent to them (answers, calls to registered phones), nowhere else.
    const phoneHosts = ["10.0.0.1", "10.0.0.2", "10.0.0.77"];
    for (const s of b.sent) {
      check(
        b.heard.has(s.to.hostname) || phoneHosts.includes(s.to.hostname),
        `relay ${s.from.hostname} sent to ${formatHostPort(s.to)}, which never sent it anything: ` +
          utf8.decode(s.data.subarray(0, 80)).split("\r\n")[0],
      );
    }
    // The answers to the source, read by their status line (a 400's echo of a malformed request may not parse).
    const answers = b.sent.filter((s) => s.to.hostname === host && s.from.port === 5060).map((s) => {
      const text = latin1.decode(s.data);
      const m = /^SIP\/2\.0 (\d{3}) ([^\r\n]*)/.exec(text);
      return m ? { status: Number(m[1]), reason: m[2], text } : undefined;
    }).filter((a) => a !== undefined);
    for (const a of answers) {
      check(a.reason.length <= MAX_ERROR_MESSAGE, `a reason phrase of ${a.reason.length} characters (${a.status})`);
      check(
        a.status !== 500 || /CSeq out of order/.test(a.reason),
        `${a.status} ${a.reason} to ${/^CSeq:[^\r\n]{0,60}/m.exec(a.text)?.[0] ?? "(no CSeq)"}`,
      );
    }
    const bad = b.logs.lines.find((l) => RELAY_BUG.test(l));
    if (bad) throw new FuzzFinding(`logged: ${bad.slice(0, 300)}`);
    // A malformed request with a Via gets its 400 (or 505); a request that parses gets an answer.
    let msg: SipMessage | undefined;
    try {
      msg = parseMessage(data);
    } catch (e) {
      if (!(e instanceof SipParseError)) throw new FuzzFinding(`parseMessage threw ${e}`, e);
      const p = e.partial;
      if (p && p.method !== "ACK" && p.headers.some(([k]) => k === "Via")) {
        check(
          answers.some((a) => a.status === e.status),
          `a malformed ${excerptOf(p.method)} (${e.reason.slice(0, 120)}) got ${
            answers.map((a) => a.status).join(", ") || "no answer"
          } instead of ${e.status}`,
        );
      }
    }
    if (msg?.kind === "request" && msg.method !== "ACK" && msg.headers.getAll("Via").length === 1) {
      let mine = false;
      try {
        mine = topVia(msg).params.branch === branch;
      } catch { /* an unreadable Via: the 400 has no branch to match */ }
      if (mine) {
        check(
          answers.some((a) => a.text.includes(branch)),
          `${excerptOf(msg.method)} got no answer`,
        );
      }
      if (msg.method === "REGISTER") {
        const r = expectOnly(
          "parseRegisterRequest",
          () => parseRegisterRequest(msg, { hostname: host, port: 5060 }),
          SipParseError,
        );
        // Unreadable (and past the checks every request gets first): 400.
        if (r === undefined && mine && !checkRequestSemantics(msg, {})) {
          check(answers.some((a) => a.status === 400), `an unreadable REGISTER not answered 400`);
        }
      }
    }
    // The documented bounds.
    for (const [ip, r] of b.relays) {
      check(r.registrar.clientCount <= SR.maxClients, `relay ${ip}: ${r.registrar.clientCount} clients`);
      const s = r.registrar.stats();
      check(s.bindings <= SR.maxClients * SR.maxContacts, `relay ${ip}: ${s.bindings} bindings`);
      check(r.stats().calls.active <= SR.maxCalls, `relay ${ip}: ${r.stats().calls.active} calls`);
      const t = r.auth?.tableSizes;
      if (t) {
        check(
          t.nonces <= SR.maxNonces && t.failing <= SR.maxSources && t.blocked <= SR.maxSources,
          `relay ${ip}: Digest tables ${JSON.stringify(t)}`,
        );
      }
    }
    void relay;
    if (n % 150 === 0) await sweepRelays(b);
  },
};

function excerptOf(s: string): string {
  return JSON.stringify(s.slice(0, 40));
}

// ---- SIP dialogs: sequences of requests to a callee ------------------------------------------------------------------

/** Between the messages of a sequence. */
const SEQ_SEPARATOR = te.encode("~~~\r\n");

/** `input` cut at each `sep` (at most `max` pieces; the rest stays in the last). */
function splitBytes(input: Uint8Array, sep: Uint8Array, max: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  let start = 0;
  outer: for (let i = 0; i + sep.length <= input.length && out.length < max - 1; i++) {
    for (let k = 0; k < sep.length; k++) if (input[i + k] !== sep[k]) continue outer;
    out.push(input.subarray(start, i));
    start = i + sep.length;
    i = start - 1;
  }
  out.push(input.subarray(start));
  return out;
}

interface DialogBench {
  clock: VirtualClock;
  out: MemoryOutput;
  ua: SipUserAgent;
  peer: MemorySocket;
  errors: unknown[];
  /** What the peer received during the case: the text of each datagram. */
  got: string[];
  /** How the callee answers this case's INVITEs: 0 at once, 1 after ringing 50 ms, 2 rings only, 3 busy. */
  mode: number;
  n: number;
}

let dialogBench: DialogBench | undefined;

function openDialogBench(): DialogBench {
  const clock = new VirtualClock();
  const net = new MemoryNetwork({ clock, latencyMs: 1 });
  const out = new MemoryOutput();
  const log = new Logger({ level: "debug", outputs: [out] });
  const ua = new SipUserAgent({ transport: net.bind("10.0.0.2", 5060), clock, log, userName: "bob", overload: false });
  const peer = net.bind("10.0.0.1", 5060);
  const b: DialogBench = { clock, out, ua, peer, errors: [], got: [], mode: 0, n: 0 };
  peer.listen((d) => void b.got.push(bytesText(d)));
  ua.onInvite((call) => {
    try {
      const answer = () => {
        if (call.state !== "incoming" && call.state !== "ringing") return;
        let sdp: string;
        try {
          sdp = createAnswer(call.offer ?? "", { registry: codecs, address: "10.0.0.2", port: 41000 });
        } catch (e) {
          if (!(e instanceof SdpError)) throw e;
          return call.reject(e.status);
        }
        call.accept(sdp);
      };
      if (b.mode === 3) return call.reject(486);
      if (b.mode === 0) return answer();
      call.ringing();
      if (b.mode === 1) {
        clock.after(50, () => {
          try {
            answer();
          } catch (e) {
            b.errors.push(e);
          }
        });
      }
    } catch (e) {
      b.errors.push(e);
    }
  });
  return b;
}

/** The To tag of the last response the peer got (the callee's tag, for the requests of its dialog). */
function lastToTag(got: string[]): string {
  for (let i = got.length - 1; i >= 0; i--) {
    const m = /^(?:To|t):[^\r\n]*;\s*tag=([^;\s>\r\n]+)/im.exec(got[i]);
    if (m && got[i].startsWith("SIP/2.0 ")) return m[1];
  }
  return "none";
}

const dialogSeeds = (): Uint8Array[] => {
  const sdp = SDP_OFFER;
  const msg = (method: string, cseq: number, branch: string, inDialog: boolean, extra = "", body = "") =>
    `${method} sip:bob@10.0.0.2:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK@N@${branch};rport\r\n` +
    `Max-Forwards: 70\r\nFrom: <sip:alice@10.0.0.1>;tag=a@N@\r\nTo: <sip:bob@10.0.0.2>${
      inDialog ? ";tag=@TT@" : ""
    }\r\n` +
    `Call-ID: @CID@\r\nCSeq: ${cseq} ${method === "ACK" && extra === "ack-cancel" ? "ACK" : method}\r\n` +
    `Contact: <sip:alice@10.0.0.1:5060>\r\n${extra === "ack-cancel" ? "" : extra}` +
    (body
      ? `Content-Type: ${method === "INFO" ? "application/dtmf-relay" : "application/sdp"}\r\n` +
        `Content-Length: ${te.encode(body).length}\r\n\r\n${body}`
      : "Content-Length: 0\r\n\r\n");
  const invite = msg("INVITE", 1, "i1", false, "Supported: timer, 100rel\r\nSession-Expires: 1800\r\n", sdp);
  const seq = (...m: string[]) => te.encode(m.join("~~~\r\n"));
  return [
    seq(invite, msg("ACK", 1, "a1", true), msg("BYE", 2, "b2", true)),
    seq(invite, msg("CANCEL", 1, "i1", false), msg("ACK", 1, "i1", true, "ack-cancel")),
    seq(
      invite,
      msg("ACK", 1, "a1", true),
      msg("INVITE", 2, "i2", true, "", sdp),
      msg("ACK", 2, "a2", true),
      msg("UPDATE", 3, "u3", true, "", sdp),
      msg("INFO", 4, "n4", true, "", "Signal=5\r\nDuration=160\r\n"),
      msg("OPTIONS", 5, "o5", true),
      msg("BYE", 6, "b6", true),
    ),
    seq(invite, msg("PRACK", 2, "p2", true, "RAck: 1 1 INVITE\r\n"), msg("ACK", 1, "a1", true)),
    seq(invite, msg("BYE", 2, "b2", true), msg("ACK", 1, "a1", true), invite, msg("BYE", 3, "b3", true)),
    seq(invite, invite, msg("ACK", 1, "a1", true), msg("ACK", 1, "a1", true), msg("BYE", 2, "b2", true)),
  ];
};

const sipDialog: FuzzTarget = {
  name: "sip-dialog",
  seeds: dialogSeeds,
  maxLen: 16384,
  testCases: 1000,
  async run(input) {
    dialogBench ??= openDialogBench();
    const b = dialogBench;
    const n = ++b.n;
    b.mode = n % 4;
    b.out.lines.length = 0;
    b.got.length = 0;
    for (const part of splitBytes(input, SEQ_SEPARATOR, 16)) {
      const data = fillIn(part, { "@N@": String(n), "@CID@": `dlg${n}`, "@TT@": lastToTag(b.got) });
      b.peer.post(data, { hostname: "10.0.0.2", port: 5060 });
      await advanceQuick(b.clock, 30, 10);
    }
    // The callee hangs up what is still up; then every timer runs: nothing may stay.
    for (const c of b.ua.calls) {
      c.hangup().catch((e) => {
        if (e instanceof TypeError || e instanceof RangeError) b.errors.push(e);
      });
    }
    await advanceQuick(b.clock, 200_000, 500);
    if (b.errors.length) {
      const e = b.errors.splice(0)[0];
      throw new FuzzFinding(`the callee threw ${e instanceof Error ? `${e.name}: ${e.message}` : e}`, e);
    }
    const bad = b.out.lines.find((l) => UA_BUG.test(l));
    if (bad) throw new FuzzFinding(`logged: ${bad.slice(0, 300)}`);
    const u = b.ua.usage;
    check(
      u.calls === 0 && u.liveCalls === 0 && u.dialogs === 0 && u.serverTransactions === 0 &&
        u.clientTransactions === 0 && u.acceptedTransactions === 0,
      `after every timer ran the callee keeps ${JSON.stringify(u)}`,
    );
  },
};

// ---- SIP dialogs: a caller and the responses and requests of a callee ----------------------------------------------

interface CallerBench {
  clock: VirtualClock;
  out: MemoryOutput;
  ua: SipUserAgent;
  peer: MemorySocket;
  /** The requests the peer received during the case, as text. */
  got: string[];
  n: number;
}

let callerBench: CallerBench | undefined;

function openCallerBench(): CallerBench {
  const clock = new VirtualClock();
  const net = new MemoryNetwork({ clock, latencyMs: 1 });
  const out = new MemoryOutput();
  const log = new Logger({ level: "debug", outputs: [out] });
  const ua = new SipUserAgent({
    transport: net.bind("10.0.0.2", 5060),
    clock,
    log,
    userName: "alice",
    overload: false,
  });
  const peer = net.bind("10.0.0.1", 5060);
  const b: CallerBench = { clock, out, ua, peer, got: [], n: 0 };
  peer.listen((d) => void b.got.push(bytesText(d)));
  return b;
}

/** `name`'s value in the last request the peer got (`Via` is the top one), or `none`. */
function lastHeader(got: string[], name: string): string {
  for (let i = got.length - 1; i >= 0; i--) {
    if (got[i].startsWith("SIP/2.0 ")) continue;
    const m = new RegExp(`^${name}:[ \\t]*([^\\r\\n]*)`, "im").exec(got[i]);
    if (m) return m[1];
  }
  return "none";
}

const callerSeeds = (): Uint8Array[] => {
  const sdp = createAnswer(SDP_OFFER, { registry: codecs, address: "10.0.0.1", port: 42000 });
  const res = (status: string, body = "", extra = "") =>
    `SIP/2.0 ${status}\r\nVia: @VIA@\r\nFrom: @FROM@\r\nTo: <sip:bob@10.0.0.1>;tag=b1\r\nCall-ID: @CID@\r\n` +
    `CSeq: @CSEQ@\r\nContact: <sip:bob@10.0.0.1:5060>\r\n${extra}` +
    (body
      ? `Content-Type: application/sdp\r\nContent-Length: ${te.encode(body).length}\r\n\r\n${body}`
      : "Content-Length: 0\r\n\r\n");
  const req = (method: string, cseq: number, body = "") =>
    `${method} sip:alice@10.0.0.2:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKc@N@${method}${cseq};rport\r\n` +
    `Max-Forwards: 70\r\nFrom: <sip:bob@10.0.0.1>;tag=b1\r\nTo: @FROM@\r\nCall-ID: @CID@\r\nCSeq: ${cseq} ${method}\r\n` +
    `Contact: <sip:bob@10.0.0.1:5060>\r\n` +
    (body
      ? `Content-Type: application/sdp\r\nContent-Length: ${te.encode(body).length}\r\n\r\n${body}`
      : "Content-Length: 0\r\n\r\n");
  const seq = (...m: string[]) => te.encode(m.join("~~~\r\n"));
  return [
    seq(res("100 Trying"), res("180 Ringing"), res("200 OK", sdp), res("200 OK", sdp), req("BYE", 1)),
    seq(res("183 Session Progress", sdp, "Require: 100rel\r\nRSeq: 1\r\n"), res("486 Busy Here"), res("486 Busy Here")),
    seq(res("200 OK", sdp), req("INVITE", 1, sdp), req("ACK", 1), req("UPDATE", 2, sdp), req("BYE", 3)),
    seq(res("180 Ringing"), req("BYE", 1), res("487 Request Terminated"), res("200 OK", sdp)),
    seq(res("302 Moved Temporarily", "", "Contact: <sip:carol@10.0.0.3>\r\n"), res("200 OK", sdp), req("INFO", 2)),
  ];
};

const sipCaller: FuzzTarget = {
  name: "sip-caller",
  seeds: callerSeeds,
  maxLen: 16384,
  testCases: 800,
  async run(input) {
    callerBench ??= openCallerBench();
    const b = callerBench;
    const n = ++b.n;
    b.out.lines.length = 0;
    b.got.length = 0;
    const errors: unknown[] = [];
    let call: OutgoingCall | undefined;
    try {
      call = b.ua.invite("sip:bob@10.0.0.1:5060", { sdp: SDP_OFFER });
    } catch (e) {
      throw new FuzzFinding(`invite threw ${e}`, e);
    }
    call.on("ended", () => {});
    await advanceQuick(b.clock, 10, 5);
    for (const part of splitBytes(input, SEQ_SEPARATOR, 16)) {
      const data = fillIn(part, {
        "@N@": String(n),
        "@VIA@": lastHeader(b.got, "Via"),
        "@FROM@": lastHeader(b.got, "From"),
        "@CID@": lastHeader(b.got, "Call-ID"),
        "@CSEQ@": lastHeader(b.got, "CSeq"),
      });
      b.peer.post(data, { hostname: "10.0.0.2", port: 5060 });
      await advanceQuick(b.clock, 30, 10);
    }
    for (const c of b.ua.calls) {
      c.hangup().catch((e) => {
        if (e instanceof TypeError || e instanceof RangeError) errors.push(e);
      });
    }
    await advanceQuick(b.clock, 200_000, 500);
    if (errors.length) throw new FuzzFinding(`hangup threw ${errors[0]}`, errors[0]);
    const bad = b.out.lines.find((l) => UA_BUG.test(l) || /transaction user failed/.test(l));
    if (bad) throw new FuzzFinding(`logged: ${bad.slice(0, 300)}`);
    const u = b.ua.usage;
    check(
      u.calls === 0 && u.liveCalls === 0 && u.dialogs === 0 && u.serverTransactions === 0 &&
        u.clientTransactions === 0 && u.acceptedTransactions === 0,
      `after every timer ran the caller keeps ${JSON.stringify(u)}`,
    );
    check(call.state === "ended", `the call is ${call.state} after every timer ran`);
  },
};

// ---- the relay's line protocol: sessions of several connections -------------------------------------------------------

interface RelaySessionBench {
  w: RelayWorld;
  /** Datagrams the relay's UDP socket sent during the case, and their destinations' standing then. */
  out: { to: HostPort; registered: boolean }[];
  /** Datagrams sent to the relay's UDP port during the case. */
  in: number;
}

let relaySession: RelaySessionBench | undefined;

/** Connection `c` (0-7) of a case comes from one of two addresses (up to 4 share each: past the per-IP limit of 3). */
const relayConnIp = (c: number) => `10.0.1.${1 + (c % 2)}`;

async function openRelaySession(): Promise<RelaySessionBench> {
  const b = { out: [], in: 0 } as unknown as RelaySessionBench;
  b.w = relayWorldOf({ maxClients: 3, maxConnections: 6, maxConnectionsPerIp: 3, maxLinesPerSecond: 20 });
  b.w.net.impair = (_data, from, to) => {
    if (from.hostname === RELAY_TCP_IP && from.port === 9999) {
      const clients = b.w.relay.stats().per_client.map((c) => c.source);
      b.out.push({ to, registered: clients.includes(formatHostPort(to)) });
    } else if (to.hostname === RELAY_TCP_IP && to.port === 9999) b.in++;
    return { delayMs: 0 };
  };
  await b.w.relay.start();
  return b;
}

const relaySessionTarget: FuzzTarget = {
  name: "relay-session",
  seeds: () =>
    [
      "0HELLO 40000 10.0.1.2 40002\n1HELLO 40002 10.0.1.1 40000\nu0 40000 abcdef\nu1 40002 xyz\n0HEARTBEAT\n" +
      "w30000\n0HEARTBEAT\n1DISCONNECT\nu0 40000 late\n0STATS\nx0\n",
      "0HELLO 5004 10.0.1.1 5004\n0HELLO 5006 10.0.1.2 5008\n2HELLO 5008 10.0.1.1 5006\nu2 5008 hi\nw130000\n" +
      "u2 5008 expired\n2HEARTBEAT\n",
      "1HEARTBEAT\n1DISCONNECT\n1HELLO 1 ::ffff:10.0.1.1 1\nr0HELLO 40000 10.0.1.2\nr0 40002\n3STATS\nw31000\n3HELLO 9 x 9\n",
      "0HELLO 40000 10.0.1.2 40002\nx0\n0HELLO 40000 10.0.1.2 40002\n1HELLO 40002 10.0.1.1 40000\nu1 40002 again\n" +
      "1DISCONNECT\n1DISCONNECT\n1HELLO 40002 10.0.1.1 40000\n",
    ].map((s) => te.encode(s)),
  maxLen: 4096,
  testCases: 1500,
  async run(input) {
    relaySession ??= await openRelaySession();
    const b = relaySession;
    const { w } = b;
    b.out.length = 0;
    b.in = 0;
    w.logs.lines.length = 0;
    const conns = new Map<number, LineClient>();
    const conn = async (c: number) => {
      let l = conns.get(c);
      if (!l || l.ended) {
        l = await LineClient.open(w, relayConnIp(c));
        conns.set(c, l);
      }
      return l;
    };
    let lines = 0;
    for (const raw of splitBytes(input, te.encode("\n"), 64)) {
      lines++;
      const line = raw.subarray(1);
      const c0 = raw[0];
      if (c0 >= 0x30 && c0 <= 0x37) (await conn(c0 - 0x30)).conn.write(Uint8Array.from([...line, 10]));
      else if (c0 === 0x72 /* r */) (await conn(0)).conn.write(line);
      else if (c0 === 0x78 /* x */) conns.get((line[0] ?? 0x30) & 7)?.conn.close();
      else if (c0 === 0x77 /* w */) {
        const ms = Number(latin1.decode(line));
        await advanceQuick(w.clock, Number.isFinite(ms) ? Math.max(0, Math.min(300_000, ms)) : 1000, 1000);
      } else if (c0 === 0x75 /* u */) {
        const text = latin1.decode(line);
        const m = /^(\d) (\d{1,5}) /.exec(text);
        const port = m ? Math.max(1, Math.min(65535, Number(m[2]))) : 40000;
        const ip = relayConnIp(m ? Number(m[1]) : 0);
        let s: MemorySocket | undefined;
        try {
          s = w.net.bind(ip, port);
          s.post(line.subarray(m ? m[0].length : 0), { hostname: RELAY_TCP_IP, port: 9999 });
          await advanceQuick(w.clock, 3, 1);
        } finally {
          await s?.close();
        }
      } else if (raw.length) (await conn(0)).conn.write(Uint8Array.from([...raw, 10]));
      await advanceQuick(w.clock, 3, 1);
      const { maxClients, maxConnections } = w.options;
      check(w.relay.clientCount <= maxClients, `${w.relay.clientCount} registrations (max_clients ${maxClients})`);
      check(w.relay.connectionCount <= maxConnections, `${w.relay.connectionCount} connections`);
    }
    for (const l of conns.values()) {
      for (const reply of l.lines) {
        check(te.encode(reply).length <= 64 * 1024, `a reply line of ${reply.length} characters`);
        const text = latin1.decode(input);
        check(
          !/\[object /.test(reply) && (!reply.includes("undefined") || text.includes("undefined")),
          `reply ${JSON.stringify(reply.slice(0, 200))}`,
        );
      }
    }
    for (const o of b.out) {
      check(o.registered, `a datagram forwarded to ${formatHostPort(o.to)}, not a registered client`);
    }
    check(b.out.length <= b.in, `${b.out.length} datagrams out for ${b.in} in`);
    const bad = w.logs.lines.find((l) => UA_BUG.test(l) || / ERROR /.test(l));
    if (bad) throw new FuzzFinding(`logged: ${bad.slice(0, 300)}`);
    never("RelayServer.stats", () => w.relay.stats());
    // The peers leave; once every timeout has run, nothing is kept.
    for (const l of conns.values()) l.conn.close();
    await advanceQuick(w.clock, (w.options.heartbeatTimeout + 3 * w.options.checkInterval) * 1000 + 5000, 1000);
    check(
      w.relay.clientCount === 0 && w.relay.connectionCount === 0,
      `after every timeout ${w.relay.clientCount} registrations and ${w.relay.connectionCount} connections remain`,
    );
    void lines;
  },
};

// ---- the relay's client: registration, heartbeats, re-registration against a scripted relay -----------------------

/**
 * The relay a client talks to, scripted by the input, one line each: a reply line is sent when the next request
 * arrives; a line starting with `+` is sent at once after the previous one (a notification: `+TARGET UP`); `x` closes
 * the connection at that point; `w<ms>` waits before the next. Past the script's end, requests get no reply.
 */
const relayClientTarget: FuzzTarget = {
  name: "relay-client",
  seeds: () =>
    [
      "OK 9999 120 10.0.1.1\n+TARGET UP\nOK\nOK\n+TARGET DOWN\nOK\nBYE see you\n",
      "FULL\nOK 9999 120 10.0.1.1\nOK\n",
      "BUSY too many connections\nOK 9999 1 10.0.1.1\nOK\nOK\nOK\nTIMEOUT\nx\nOK 9999 120 10.0.1.1\n",
      "INVALID target 10.0.1.2 is not a registered client\n",
      "OK 9999 120 10.0.1.9\nw7000\nOK\nx\nOK 1 120 10.0.1.1\nSTATS {}\nOK\n",
      "OK 9999 120 10.0.1.1\nOK\n+BYE moved\nx\nOK 9999 120 10.0.1.1\nOK\nBYE\n",
    ].map((s) => te.encode(s)),
  maxLen: 4096,
  testCases: 600,
  async run(input) {
    const clock = new VirtualClock();
    const streams = new MemoryStreamNetwork({ clock, latencyMs: 1 });
    const out = new MemoryOutput();
    const log = new Logger({ level: "debug", outputs: [out] });
    const script = splitBytes(input, te.encode("\n"), 256).map((l) => latin1.decode(l));
    let next = 0;
    const send = (conn: StreamConn) => {
      for (;;) {
        if (next >= script.length || conn.closed) return;
        const line = script[next++];
        if (line === "x") return conn.close();
        if (line.startsWith("w")) {
          const ms = Number(line.slice(1));
          clock.after(Number.isFinite(ms) ? Math.max(0, Math.min(60_000, ms)) : 1000, () => send(conn));
          return;
        }
        conn.write(te.encode((line.startsWith("+") ? line.slice(1) : line) + "\n"));
        if (!script[next]?.startsWith("+")) return;
      }
    };
    await streams.listen("10.0.0.9", 9998, (conn) => {
      const splitter = new LineSplitter(MAX_LINE);
      conn.start({ data: (d) => splitter.push(d, () => send(conn), () => {}), end: () => {} });
    });
    const reg = new RelayRegistration({
      streams: streams.host("10.0.1.1"),
      clock,
      log,
      relay: { hostname: "10.0.0.9", port: 9998 },
      target: { hostname: "10.0.1.2", port: 40002 },
      listenPort: () => 40000,
      attempts: 3,
      retryDelayMs: 500,
      retryMaxMs: 4000,
      replyTimeoutMs: 2000,
      heartbeatMs: 3000,
    });
    const errors: unknown[] = [];
    const message = (what: string, e: unknown) => {
      if (!(e instanceof RelayRegistrationError)) return errors.push(e);
      if (e.message.length > MAX_ERROR_MESSAGE) {
        errors.push(new FuzzFinding(`${what}: an error message of ${e.message.length} characters`));
      }
    };
    reg.on({ lost: (why) => message("lost", new RelayRegistrationError(why)) });
    const registered = reg.register().then(() => true, (e) => {
      message("register", e);
      return false;
    });
    await advanceQuick(clock, 30_000, 100);
    await registered;
    const leaving = reg.disconnect().catch((e) => message("disconnect", e));
    await advanceQuick(clock, 10_000, 100);
    await leaving;
    // Stopped: no new connection, no timer left once every timeout ran.
    const connections = streams.connections;
    await advanceQuick(clock, 120_000, 1000);
    check(streams.connections === connections, `${streams.connections - connections} connections after disconnect`);
    check(reg.current === undefined, "still registered after disconnect");
    check(clock.pending === 0, `${clock.pending} timers left after disconnect and every timeout`);
    if (errors.length) {
      const e = errors[0];
      throw e instanceof FuzzFinding
        ? e
        : new FuzzFinding(`the client threw ${e instanceof Error ? e.name : ""} ${e}`, e);
    }
    for (const l of out.lines) check(l.length <= 2 * MAX_ERROR_MESSAGE, `a log line of ${l.length} characters`);
    const bad = out.lines.find((l) => UA_BUG.test(l));
    if (bad) throw new FuzzFinding(`logged: ${bad.slice(0, 300)}`);
  },
};

// ---- the console's HTTP side: paths, queries, uploads -------------------------------------------------------------

/** What the console-http target's files hold: found in a response, it was read from where nothing is served. */
const SECRET = "SECRET-7f3a9c-never-served";
const CONSOLE_TOKEN = "tok-5b1e";

interface ConsoleHttp {
  service: ConsoleService;
  port: number;
  ac: AbortController;
  /** The sandbox: `a/lib` (the library), `a/b/up` (uploads), `a/b/rec`, and `secret.txt` files around them. */
  dir: string;
  /** The files of the sandbox at the start (path → size). */
  files: Map<string, number>;
  n: number;
}

let consoleHttp: ConsoleHttp | undefined;

/** Every file under `dir`, relative path → size. */
function walkFiles(dir: string, prefix = ""): Map<string, number> {
  const out = new Map<string, number>();
  for (const e of Deno.readDirSync(`${dir}/${prefix}`)) {
    const rel = prefix ? `${prefix}/${e.name}` : e.name;
    if (e.isDirectory) { for (const [k, v] of walkFiles(dir, rel)) out.set(k, v); }
    else out.set(rel, Deno.lstatSync(`${dir}/${rel}`).size);
  }
  return out;
}

async function openConsoleHttp(): Promise<ConsoleHttp> {
  const dir = Deno.makeTempDirSync({ prefix: "voxpipe-fuzz-http-" });
  Deno.mkdirSync(`${dir}/a/lib`, { recursive: true });
  Deno.mkdirSync(`${dir}/a/b`, { recursive: true });
  Deno.copyFileSync(new URL("../examples/audio/hello.wav", import.meta.url), `${dir}/a/lib/hello.wav`);
  for (const p of ["secret.txt", "a/secret.txt", "a/b/secret.txt", "a/lib/.secret.wav"]) {
    Deno.writeTextFileSync(`${dir}/${p}`, SECRET);
  }
  const clock = new VirtualClock();
  const log = new Logger({ level: "info", outputs: [new MemoryOutput()] });
  const ac = new AbortController();
  const service = await startConsole(
    consoleOptions.parse({
      port: 0,
      library: "a/lib",
      uploads: "a/b/up",
      record_dir: "a/b/rec",
      token: CONSOLE_TOKEN,
      max_upload_mb: 0.1,
    }),
    {
      log,
      clock,
      signal: ac.signal,
      file: `${dir}/c.json`,
      baseDir: dir,
      params: {},
      calls: new FakeCalls({ clock, log }),
      net: new MemoryNetwork({ clock }),
    },
  );
  const port = Number(new URL(service.address!).port);
  return { service, port, ac, dir, files: walkFiles(dir), n: 0 };
}

/**
 * Sends `input` on a new connection and reads the first response: once it is whole (its head and `content-length`
 * bytes), or the server closed. When none has come 50 ms after the input, the input is a request cut short (a body
 * shorter than its length, a head without its end): the connection is half-closed and read to its end (5 s at most).
 */
async function httpExchange(port: number, input: Uint8Array): Promise<{ text: string; timedOut: boolean }> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  let text = "";
  let timedOut = false;
  const whole = () => {
    const end = text.indexOf("\r\n\r\n");
    if (end < 0) return false;
    if (/^HTTP\/1\.1 (101|1\d\d|204|304)/.test(text)) return true;
    const length = /\r\ncontent-length: *(\d+)/i.exec(text.slice(0, end));
    return length !== null && text.length - end - 4 >= Number(length[1]);
  };
  try {
    try {
      await conn.write(input);
    } catch { /* the server closed first (it refused the head) */ }
    const buf = new Uint8Array(65536);
    let halfClosed = false;
    const started = performance.now();
    while (!whole()) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const wait = halfClosed ? 5000 - (performance.now() - started) : 50;
      const n = await Promise.race([
        conn.read(buf).catch(() => null),
        new Promise<"late">((r) => timer = setTimeout(() => r("late"), Math.max(1, wait))),
      ]);
      clearTimeout(timer);
      if (n === "late") {
        if (halfClosed) {
          timedOut = true;
          break;
        }
        halfClosed = true;
        await conn.closeWrite().catch(() => {});
        continue;
      }
      if (n === null) break;
      text += latin1.decode(buf.subarray(0, n));
    }
  } finally {
    try {
      conn.close();
    } catch { /* closed */ }
  }
  return { text, timedOut };
}

const consoleHttpSeeds = (): Uint8Array[] => {
  const wavBody = Deno.readFileSync(new URL("../examples/audio/hello.wav", import.meta.url)).subarray(0, 2044);
  const le = new DataView(wavBody.buffer, wavBody.byteOffset, wavBody.byteLength);
  le.setUint32(4, 2036, true);
  // The data chunk of hello.wav is the second chunk after fmt: its size field is set to what is left.
  const dataAt = bytesText(wavBody).indexOf("data");
  if (dataAt > 0) le.setUint32(dataAt + 4, wavBody.length - dataAt - 8, true);
  const head = (lines: string[]) => lines.join("\r\n") + "\r\n\r\n";
  const host = "Host: 127.0.0.1:8080";
  /** A console WebSocket handshake's head (`method` GET, or HEAD to see it refused). */
  const upgradeHead = (method = "GET") =>
    head([
      `${method} /ws?token=${CONSOLE_TOKEN} HTTP/1.1`,
      host,
      "Upgrade: websocket",
      "Connection: Upgrade",
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
      "Sec-WebSocket-Version: 13",
    ]);
  const post = (path: string, type: string, body: Uint8Array) =>
    Uint8Array.from([
      ...te.encode(head([`POST ${path} HTTP/1.1`, host, `Content-Type: ${type}`, `Content-Length: ${body.length}`])),
      ...body,
    ]);
  const multipart = te.encode(
    '--xyz\r\nContent-Disposition: form-data; name="file"; filename="../../x.wav"\r\nContent-Type: audio/wav\r\n\r\n' +
      "RIFF....WAVEfmt \r\n--xyz--\r\n",
  );
  return [
    te.encode(head(["GET / HTTP/1.1", host])),
    te.encode(head(["GET /app.js?x=1 HTTP/1.1", host, "Connection: close"])),
    te.encode(head([`GET /api/files?token=${CONSOLE_TOKEN} HTTP/1.1`, host])),
    te.encode(head(["GET /../secret.txt HTTP/1.1", host])),
    te.encode(head(["GET /%2e%2e/%2e%2e/secret.txt HTTP/1.1", host])),
    te.encode(head(["GET /vendor/uplot.js HTTP/1.1", host, "Origin: http://127.0.0.1:8080"])),
    te.encode(head([`HEAD /api/nothing?token=${CONSOLE_TOKEN} HTTP/1.1`, host])),
    post(`/api/upload?name=greeting.wav&token=${CONSOLE_TOKEN}`, "audio/wav", wavBody),
    post(`/api/upload?name=..%2F..%2Fsecret.wav&token=${CONSOLE_TOKEN}`, "audio/wav", wavBody),
    post(`/api/upload?name=x.wav&token=${CONSOLE_TOKEN}`, "multipart/form-data; boundary=xyz", multipart),
    te.encode(
      upgradeHead(),
    ),
    // What a hostile client sends beyond one well-formed request: bytes after the head or after the body (a second
    // request pipelined), a body longer than its Content-Length, two Content-Lengths or one with Transfer-Encoding,
    // a HEAD asking for an upload or the WebSocket, odd bytes in header fields, frames in the upgrade's own segment.
    te.encode(head(["GET / HTTP/1.1", host]) + head([`GET /api/files?token=${CONSOLE_TOKEN} HTTP/1.1`, host])),
    Uint8Array.from([
      ...post(`/api/upload?name=long.wav&token=${CONSOLE_TOKEN}`, "audio/wav", wavBody.subarray(0, 64)).subarray(
        0,
        -64,
      ),
      ...wavBody.subarray(0, 200),
      ...te.encode(head(["GET /../secret.txt HTTP/1.1", host])),
    ]),
    te.encode(
      head([
        `POST /api/upload?name=cl2.wav&token=${CONSOLE_TOKEN} HTTP/1.1`,
        host,
        "Content-Length: 4",
        "Content-Length: 40",
      ]) + "RIFF",
    ),
    te.encode(
      head([
        `POST /api/upload?name=te.wav&token=${CONSOLE_TOKEN} HTTP/1.1`,
        host,
        "Content-Length: 4",
        "Transfer-Encoding: chunked",
      ]) + "4\r\nRIFF\r\n0\r\n\r\n",
    ),
    te.encode(
      head([`HEAD /api/upload?name=h.wav&token=${CONSOLE_TOKEN} HTTP/1.1`, host, "Content-Length: 4"]) + "RIFF",
    ),
    te.encode(
      upgradeHead("HEAD"),
    ),
    // Latin-1 bytes as they are: 0xe9, a NUL, a DEL, a bare LF; an obsolete line folding.
    Uint8Array.from(
      head([
        "GET / HTTP/1.1",
        host,
        "X-A: caf\u00e9\u0000\u007f",
        "X-B: a\nb",
        " folded: value",
        "Expect: 100-continue",
      ]),
      (c) => c.charCodeAt(0),
    ),
    Uint8Array.from([
      ...te.encode(upgradeHead()),
      ...clientFrame(1, te.encode('{"op":"files","req":1}')),
      ...clientFrame(1, te.encode('{"op":"page","page":0}'), false),
      ...clientFrame(0, new Uint8Array(0), false),
      ...clientFrame(0, te.encode(" ")),
      ...clientFrame(8, new Uint8Array([0x03, 0xe8])),
    ]),
  ];
};

/** True when `input` begins with a well-formed HEAD request (one whose head cannot be parsed names no method). */
function isHeadRequest(input: Uint8Array): boolean {
  if (!/^HEAD /.test(bytesText(input.subarray(0, 5)))) return false;
  const end = bytesText(input).indexOf("\r\n\r\n");
  if (end < 0) return false;
  try {
    parseHead(input.subarray(0, end), { transport: "tcp", hostname: "127.0.0.1", port: 1 }, true);
    return true;
  } catch {
    return false;
  }
}

const consoleHttpTarget: FuzzTarget = {
  name: "console-http",
  seeds: consoleHttpSeeds,
  maxLen: 16384,
  testCases: 200,
  async run(input) {
    consoleHttp ??= await openConsoleHttp();
    const c = consoleHttp;
    const n = ++c.n;
    const { text, timedOut } = await httpExchange(c.port, input);
    check(!timedOut, "no answer, and the connection still open, after 5 s");
    check(!text.includes(SECRET), "a response holds a file from outside the console's folders");
    for (const m of text.matchAll(/^HTTP\/1\.[01] (\d{3})[^\r\n]*\r\n((?:[^\r\n]+\r\n)*)\r\n/g)) {
      const status = Number(m[1]);
      // One request per connection, answered once: nothing follows its answer (a HEAD's has no body; what follows a
      // 101 is the WebSocket's).
      if (m.index === 0 && status !== 101) {
        const isHead = isHeadRequest(input);
        const length = isHead ? 0 : Number(/^content-length: *(\d+)/im.exec(m[2])?.[1] ?? 0);
        const after = text.length - m[0].length - length;
        check(after <= 0, `${after} bytes after the answer${isHead ? " to a HEAD" : ""}: ${text.slice(0, 300)}`);
      }
      check(status < 500 || status === 503, `status ${status}`);
      // Only the first response's body is read (a HEAD's has none: what follows is the next response).
      if (m.index !== 0 || /^HEAD /.test(bytesText(input.subarray(0, 5)))) continue;
      if (status < 400 || !/^content-type: application\/json/im.test(m[2])) continue;
      const length = Number(/^content-length: *(\d+)/im.exec(m[2])?.[1] ?? -1);
      const at = m.index! + m[0].length;
      const body = length >= 0 ? text.slice(at, at + length) : "";
      let error: unknown;
      try {
        error = JSON.parse(body).error;
      } catch {
        error = undefined;
      }
      check(typeof error === "string" && error.length > 0, `a ${status} without an error text: ${body.slice(0, 200)}`);
      const e = error as string;
      check(e.length <= MAX_ERROR_MESSAGE, `a ${status} error of ${e.length} characters: ${e.slice(0, 100)}...`);
    }
    // Only the uploads folder changes (new files in it); nothing else is written, nothing is deleted.
    const now = walkFiles(c.dir);
    for (const [p, size] of now) {
      if (p.startsWith("a/b/up/")) {
        check(!p.slice("a/b/up/".length).includes("/"), `a folder made in the uploads: ${p}`);
        continue;
      }
      check(c.files.get(p) === size, `${p} written (${size} bytes), outside the uploads folder`);
    }
    for (const p of c.files.keys()) check(now.has(p), `${p} removed`);
    if (n % 200 === 0) {
      try {
        Deno.removeSync(`${c.dir}/a/b/up`, { recursive: true });
      } catch { /* none yet */ }
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
  sipRelay,
  sipDialog,
  sipCaller,
  relaySessionTarget,
  relayClientTarget,
  consoleHttpTarget,
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
  if (consoleHttp) {
    const c = consoleHttp;
    consoleHttp = undefined;
    c.ac.abort();
    await c.service.close();
    Deno.removeSync(c.dir, { recursive: true });
  }
  if (callerBench) {
    const b = callerBench;
    callerBench = undefined;
    await b.ua.close();
    await b.peer.close();
  }
  if (dialogBench) {
    const b = dialogBench;
    dialogBench = undefined;
    await b.ua.close();
    await b.peer.close();
  }
  if (relaySession) {
    const b = relaySession;
    relaySession = undefined;
    const closing = b.w.relay.close();
    await advanceQuick(b.w.clock, 5000, 100);
    await closing;
  }
  if (relayFuzz) {
    const b = relayFuzz;
    relayFuzz = undefined;
    for (const r of b.relays.values()) {
      const closing = r.close(); // waits (5 s at most, virtual) for the calls' BYEs and CANCELs to end
      await advanceQuick(b.clock, 6000, 100);
      await closing;
    }
    for (const p of b.phones) await p.ua.close();
    for (const s of b.pool.values()) await s.close();
    await b.nonceSock.close();
  }
}
