import assert from "node:assert/strict";
import {
  agreedMedia,
  createAnswer,
  createOffer,
  negotiated,
  NoCommonCodecError,
  parseAnswer,
  SdpError,
} from "../plugins/sip/sdp.ts";
import { parseSdpText } from "../plugins/sip/sdp_text.ts";
// @ts-types="@types/sdp-transform"
import * as sdpTransform from "sdp-transform";
import { codecs } from "./registry_util.ts";

function sdp(lines: string[]): string {
  return lines.join("\r\n") + "\r\n";
}

Deno.test("createOffer: m=audio with PCMU 0 and PCMA 8, rtpmap, ptime, sendrecv", () => {
  const offer = createOffer({ registry: codecs, address: "192.0.2.10", port: 40000, ptime: 30, sessionId: "42" });
  const lines = offer.trim().split("\r\n");
  assert.equal(lines[0], "v=0");
  assert.ok(lines.includes("o=voxpipe 42 1 IN IP4 192.0.2.10"));
  assert.ok(lines.includes("c=IN IP4 192.0.2.10"));
  assert.ok(lines.includes("m=audio 40000 RTP/AVP 0 8"));
  assert.ok(lines.includes("a=rtpmap:0 PCMU/8000"));
  assert.ok(lines.includes("a=rtpmap:8 PCMA/8000"));
  assert.ok(lines.includes("a=ptime:30"));
  assert.ok(lines.includes("a=sendrecv"));
  const only = createOffer({ registry: codecs, address: "::1", port: 5004, codecs: ["PCMA"], rtcpPort: 5010 });
  assert.match(only, /m=audio 5004 RTP\/AVP 8\r\n/);
  assert.match(only, /c=IN IP6 ::1\r\n/);
  assert.match(only, /a=rtcp:5010\r\n/);
  assert.throws(() => createOffer({ registry: codecs, address: "1.2.3.4", port: 1, codecs: [] }), SdpError);
});

Deno.test("createAnswer: picks the first codec in the offer's order that we support", () => {
  const offer = sdp([
    "v=0",
    "o=- 1 1 IN IP4 198.51.100.1",
    "s=-",
    "c=IN IP4 198.51.100.1",
    "t=0 0",
    "m=audio 30000 RTP/AVP 18 8 0 101",
    "a=rtpmap:18 G729/8000",
    "a=rtpmap:101 telephone-event/8000",
    "a=ptime:20",
  ]);
  // We prefer PCMU, but the offerer listed PCMA first: RFC 3264 lets us follow the offer's order.
  const answer = createAnswer(offer, {
    registry: codecs,
    address: "203.0.113.5",
    port: 41000,
    codecs: ["PCMU", "PCMA"],
  });
  const n = negotiated(answer, { registry: codecs });
  assert.equal(n.codec, "PCMA");
  assert.equal(n.payloadType, 8);
  assert.equal(n.remoteAddress, "203.0.113.5");
  assert.equal(n.remotePort, 41000);
  assert.equal(n.remoteRtcpPort, 41001);
  assert.match(answer, /m=audio 41000 RTP\/AVP 8\r\n/);
  // The callee reads the offer the same way.
  const fromOffer = negotiated(offer, { registry: codecs });
  assert.equal(fromOffer.codec, "PCMA");
  assert.equal(fromOffer.remotePort, 30000);
  const onlyU = createAnswer(offer, { registry: codecs, address: "203.0.113.5", port: 41000, codecs: ["PCMU"] });
  assert.equal(negotiated(onlyU, { registry: codecs }).codec, "PCMU");
});

Deno.test("createAnswer: no common codec throws NoCommonCodecError (→ 488)", () => {
  const offer = sdp([
    "v=0",
    "o=- 1 1 IN IP4 198.51.100.1",
    "s=-",
    "c=IN IP4 198.51.100.1",
    "t=0 0",
    "m=audio 30000 RTP/AVP 18 9",
    "a=rtpmap:18 G729/8000",
    "a=rtpmap:9 G722/8000",
  ]);
  try {
    createAnswer(offer, { registry: codecs, address: "203.0.113.5", port: 41000 });
    assert.fail("expected NoCommonCodecError");
  } catch (e) {
    assert.ok(e instanceof NoCommonCodecError);
    assert.ok(e instanceof SdpError);
    assert.equal(e.status, 488);
    assert.deepEqual(e.offered, ["G729", "G722"]);
  }
  assert.throws(
    () => createAnswer("garbage", { registry: codecs, address: "1.2.3.4", port: 1 }),
    (e) => e instanceof SdpError && e.status === 400,
  );
  const video = sdp(["v=0", "o=- 1 1 IN IP4 1.1.1.1", "s=-", "c=IN IP4 1.1.1.1", "t=0 0", "m=video 5000 RTP/AVP 96"]);
  assert.throws(
    () => createAnswer(video, { registry: codecs, address: "1.2.3.4", port: 1 }),
    /no usable RTP\/AVP audio stream/,
  );
});

Deno.test("static vs dynamic payload types: PCMU signalled as bare 0, PCMA on a dynamic type", () => {
  const bare = sdp(["v=0", "o=- 1 1 IN IP4 10.0.0.1", "s=-", "c=IN IP4 10.0.0.1", "t=0 0", "m=audio 4000 RTP/AVP 0"]);
  const n = negotiated(bare, { registry: codecs });
  assert.equal(n.codec, "PCMU");
  assert.equal(n.payloadType, 0);
  assert.equal(n.ptime, 20);
  const dyn = sdp([
    "v=0",
    "o=- 1 1 IN IP4 10.0.0.1",
    "s=-",
    "c=IN IP4 10.0.0.1",
    "t=0 0",
    "m=audio 4000 RTP/AVP 97",
    "a=rtpmap:97 pcma/8000",
  ]);
  const answer = createAnswer(dyn, { registry: codecs, address: "10.0.0.2", port: 4002 });
  assert.match(answer, /m=audio 4002 RTP\/AVP 97\r\n/);
  assert.match(answer, /a=rtpmap:97 PCMA\/8000/);
  const d = negotiated(answer, { registry: codecs });
  assert.equal(d.codec, "PCMA");
  assert.equal(d.payloadType, 97);
  // A dynamic type mapped to something else does not count as PCMU.
  const wrong = sdp([
    "v=0",
    "o=- 1 1 IN IP4 1.1.1.1",
    "s=-",
    "c=IN IP4 1.1.1.1",
    "t=0 0",
    "m=audio 4000 RTP/AVP 0",
    "a=rtpmap:0 opus/48000/2",
  ]);
  assert.throws(() => negotiated(wrong, { registry: codecs }), NoCommonCodecError);
});

Deno.test("connection address: session-level c=, media-level override, IPv6, rtcp attribute", () => {
  const session = sdp([
    "v=0",
    "o=- 1 1 IN IP4 10.0.0.1",
    "s=-",
    "c=IN IP4 10.0.0.1",
    "t=0 0",
    "m=audio 4000 RTP/AVP 8",
    "a=ptime:40",
    "a=sendonly",
  ]);
  const s = negotiated(session, { registry: codecs });
  assert.equal(s.remoteAddress, "10.0.0.1");
  assert.equal(s.ptime, 40);
  assert.equal(s.direction, "sendonly");
  const media = sdp([
    "v=0",
    "o=- 1 1 IN IP4 10.0.0.1",
    "s=-",
    "c=IN IP4 10.0.0.1",
    "t=0 0",
    "m=audio 4000 RTP/AVP 0",
    "c=IN IP6 2001:db8::7",
    "a=rtcp:4005 IN IP6 2001:db8::7",
  ]);
  const m = negotiated(media, { registry: codecs });
  assert.equal(m.remoteAddress, "2001:db8::7");
  assert.equal(m.ipVersion, 6);
  assert.equal(m.remoteRtcpPort, 4005);
  // Answering a sendonly offer gives recvonly.
  assert.match(createAnswer(session, { registry: codecs, address: "10.0.0.2", port: 4002 }), /a=recvonly/);
  const missing = sdp(["v=0", "o=- 1 1 IN IP4 10.0.0.1", "s=-", "t=0 0", "m=audio 4000 RTP/AVP 0"]);
  assert.throws(() => negotiated(missing, { registry: codecs }), /no connection address/);
});

Deno.test("port 0: rejected streams are skipped in answers and reported by negotiated(, { registry: codecs })", () => {
  const offer = sdp([
    "v=0",
    "o=- 1 1 IN IP4 10.0.0.1",
    "s=-",
    "c=IN IP4 10.0.0.1",
    "t=0 0",
    "m=video 5000 RTP/AVP 96",
    "a=rtpmap:96 H264/90000",
    "m=audio 0 RTP/AVP 0",
    "m=audio 6000 RTP/AVP 8",
  ]);
  const answer = createAnswer(offer, { registry: codecs, address: "10.0.0.2", port: 7000 });
  const mlines = answer.split("\r\n").filter((l) => l.startsWith("m="));
  assert.deepEqual(mlines, ["m=video 0 RTP/AVP 96", "m=audio 0 RTP/AVP 0", "m=audio 7000 RTP/AVP 8"]);
  assert.equal(negotiated(answer, { registry: codecs }).remotePort, 7000);
  const rejected = sdp(["v=0", "o=- 1 1 IN IP4 10.0.0.1", "s=-", "c=IN IP4 10.0.0.1", "t=0 0", "m=audio 0 RTP/AVP 0"]);
  assert.throws(() => parseAnswer(rejected, { registry: codecs }), /audio stream rejected \(port 0\)/);
});

Deno.test("agreedMedia: same codec on both sides, each side sends to the other's address", () => {
  const offer = createOffer({
    registry: codecs,
    address: "10.0.0.1",
    port: 40000,
    codecs: ["PCMU", "PCMA"],
    ptime: 30,
  });
  const answer = createAnswer(offer, { registry: codecs, address: "10.0.0.2", port: 41000, codecs: ["PCMA"] });
  const caller = agreedMedia(answer, offer); // remote = answer
  const callee = agreedMedia(offer, answer); // remote = offer
  assert.equal(caller.codec, "PCMA");
  assert.equal(callee.codec, "PCMA");
  assert.equal(caller.payloadType, 8);
  assert.equal(callee.payloadType, 8);
  assert.deepEqual([caller.remoteAddress, caller.remotePort], ["10.0.0.2", 41000]);
  assert.deepEqual([callee.remoteAddress, callee.remotePort, callee.ptime], ["10.0.0.1", 40000, 30]);
  // A remote answer listing several codecs: its first one that we offered wins.
  const multi = sdp([
    "v=0",
    "o=- 1 1 IN IP4 10.0.0.3",
    "s=-",
    "c=IN IP4 10.0.0.3",
    "t=0 0",
    "m=audio 5000 RTP/AVP 8 0",
  ]);
  assert.equal(agreedMedia(multi, offer).codec, "PCMA");
  assert.equal(
    agreedMedia(multi, createOffer({ registry: codecs, address: "10.0.0.1", port: 1, codecs: ["PCMU"] })).codec,
    "PCMU",
  );
});

/** SDP bodies as peers write them: sipp's scenarios, baresip, linphone, a WebRTC-style offer, odd but legal forms. */
const CORPUS: Record<string, string> = {
  sipp: sdp([
    "v=0",
    "o=user1 53655765 2353687637 IN IP4 127.0.0.1",
    "s=-",
    "c=IN IP4 127.0.0.1",
    "t=0 0",
    "m=audio 6000 RTP/AVP 0",
    "a=rtpmap:0 PCMU/8000",
  ]),
  baresip: sdp([
    "v=0",
    "o=- 1804289383 846930886 IN IP4 192.0.2.4",
    "s=-",
    "c=IN IP4 192.0.2.4",
    "t=0 0",
    "m=audio 10004 RTP/AVP 9 0 8 101",
    "b=AS:64",
    "a=rtpmap:9 G722/8000",
    "a=rtpmap:0 PCMU/8000",
    "a=rtpmap:8 PCMA/8000",
    "a=rtpmap:101 telephone-event/8000",
    "a=fmtp:101 0-15",
    "a=sendrecv",
    "a=label:1",
    "a=ssrc:2030155434 cname:4f5b3c1d-0",
    "a=rtcp-rsize",
    "a=ptime:20",
  ]),
  linphone: sdp([
    "v=0",
    "o=alice 3466 1290 IN IP6 2001:db8::5",
    "s=Talk",
    "c=IN IP6 2001:db8::5",
    "t=0 0",
    "a=rtcp-xr:rcvr-rtt=all:10000 stat-summary=loss,dup,jitt,TTL voip-metrics",
    "m=audio 7078 RTP/AVP 96 97 98 0 8 18 101 99 100",
    "a=rtpmap:96 opus/48000/2",
    "a=fmtp:96 useinbandfec=1",
    "a=rtpmap:97 speex/16000",
    "a=fmtp:97 vbr=on",
    "a=rtpmap:98 speex/8000",
    "a=fmtp:98 vbr=on",
    "a=fmtp:18 annexb=yes",
    "a=rtpmap:101 telephone-event/48000",
    "a=rtpmap:99 telephone-event/16000",
    "a=rtpmap:100 telephone-event/8000",
    "a=rtcp:7079 IN IP6 2001:db8::5",
    "a=rtcp-fb:* trr-int 1000",
    "a=rtcp-fb:* ccm tmmbr",
  ]),
  webrtc: sdp([
    "v=0",
    "o=- 4611731400430051336 2 IN IP4 127.0.0.1",
    "s=-",
    "t=0 0",
    "a=group:BUNDLE 0 1",
    "a=msid-semantic: WMS",
    "m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126",
    "c=IN IP4 0.0.0.0",
    "a=rtcp:9 IN IP4 0.0.0.0",
    "a=ice-ufrag:8hhY",
    "a=ice-pwd:asd88fgpdd777uzjYhagZg",
    "a=fingerprint:sha-256 7B:8B:F0:65:5F:78:E2:51:3B:AC:6F:F3:3F:46:1B:35:DC:B8:5F:64:1A:24:C2:43:F0:A1:58:D0:A1:2C:19:08",
    "a=setup:actpass",
    "a=mid:0",
    "a=sendrecv",
    "a=rtcp-mux",
    "a=rtpmap:111 opus/48000/2",
    "a=fmtp:111 minptime=10;useinbandfec=1",
    "a=rtpmap:63 red/48000/2",
    "a=fmtp:63 111/111",
    "a=rtpmap:9 G722/8000",
    "a=rtpmap:0 PCMU/8000",
    "a=rtpmap:8 PCMA/8000",
    "a=rtpmap:13 CN/8000",
    "a=rtpmap:110 telephone-event/48000",
    "a=rtpmap:126 telephone-event/8000",
    "m=video 9 UDP/TLS/RTP/SAVPF 96 97",
    "c=IN IP4 0.0.0.0",
    "a=recvonly",
    "a=rtpmap:96 VP8/90000",
    "a=rtpmap:97 rtx/90000",
    "a=fmtp:97 apt=96",
  ]),
  "two audio streams, media-level c=, session direction, ptime with a fraction": sdp([
    "v=0",
    "o=- 7 7 IN IP4 198.51.100.9",
    "s= ",
    "c=IN IP4 198.51.100.9",
    "t=0 0",
    "a=sendonly",
    "m=audio 0 RTP/AVP 0",
    "m=audio 49170 RTP/AVP 8 0",
    "c=IN IP4 203.0.113.17/127",
    "a=ptime:22.5",
    "a=rtpmap:8 PCMA/8000/1",
    "a=inactive",
  ]),
  "LF line ends, spaces after values": [
    "v=0",
    "o=- 1 1 IN IP4 192.0.2.1",
    "s=-",
    "c=IN IP4 192.0.2.1 ",
    "t=0 0",
    "m=audio 4000 RTP/AVP 0 101 ",
    "a=rtpmap:101 telephone-event/8000 ",
    "a=fmtp:101 0-16",
    "a=recvonly ",
    "",
  ].join("\n"),
};

/** What offer/answer reads of a parsed SDP, from either parser. */
function readOf(s: {
  connection?: { version: number; ip: string };
  direction?: string;
  media: {
    type: string;
    port: number;
    protocol: string;
    payloads: number[] | string | undefined;
    rtp: { payload: number; codec: string; rate?: number; encoding?: string | number }[];
    fmtp: { payload: number; config: string }[];
    ptime?: number;
    direction?: string;
    rtcp?: { port: number };
    connection?: { version: number; ip: string };
  }[];
}) {
  const conn = (c?: { version: number; ip: string }) => (c ? { version: Number(c.version), ip: c.ip } : undefined);
  return {
    connection: conn(s.connection),
    direction: s.direction,
    media: s.media.map((m) => ({
      type: m.type,
      port: m.port,
      protocol: m.protocol,
      payloads: Array.isArray(m.payloads)
        ? m.payloads
        : String(m.payloads ?? "").trim().split(/\s+/).filter((p) => /^\d+$/.test(p)).map(Number),
      rtp: m.rtp.map((r) => ({
        payload: r.payload,
        codec: r.codec,
        rate: r.rate,
        encoding: r.encoding === undefined ? undefined : String(r.encoding),
      })),
      fmtp: m.fmtp.map((f) => ({ payload: f.payload, config: f.config.trim() })),
      ptime: m.ptime,
      direction: m.direction,
      rtcp: m.rtcp ? { port: m.rtcp.port } : undefined,
      connection: conn(m.connection),
    })),
  };
}

Deno.test("SDP text: what offer/answer reads agrees with sdp-transform's parse on peers' SDP", () => {
  for (const [name, text] of Object.entries(CORPUS)) {
    const ours = readOf(parseSdpText(text));
    // sdp-transform (the parser this one replaced, kept as an independent reading) keeps trailing spaces in some values.
    const theirs = readOf(sdpTransform.parse(text.replace(/ +(\r?\n)/g, "$1")) as Parameters<typeof readOf>[0]);
    assert.deepEqual(ours, theirs, name);
  }
  // Spot checks, so that agreeing on nothing cannot pass.
  const lin = parseSdpText(CORPUS.linphone);
  assert.deepEqual(lin.connection, { version: 6, ip: "2001:db8::5" });
  assert.deepEqual(lin.media[0].rtp[0], { payload: 96, codec: "opus", rate: 48000, encoding: "2" });
  assert.deepEqual(lin.media[0].rtcp, { port: 7079 });
  const two = parseSdpText(CORPUS["two audio streams, media-level c=, session direction, ptime with a fraction"]);
  assert.equal(two.direction, "sendonly");
  assert.deepEqual(two.media.map((m) => [m.port, m.direction, m.ptime]), [[0, undefined, undefined], [
    49170,
    "inactive",
    22.5,
  ]]);
  assert.deepEqual(two.media[1].connection, { version: 4, ip: "203.0.113.17/127" });
  // RFC 8866's <port>/<number of ports> (sdp-transform reads no m= line of that form).
  assert.equal(parseSdpText(CORPUS.sipp.replace("m=audio 6000 ", "m=audio 6000/2 ")).media[0].port, 6000);
  const lf = parseSdpText(CORPUS["LF line ends, spaces after values"]);
  assert.deepEqual(lf.media[0].payloads, [0, 101]);
  assert.equal(lf.media[0].direction, "recvonly");
});

Deno.test("SDP text: a broken m= line is a 400 naming the line; other broken lines are skipped", () => {
  const offer = (m: string, extra: string[] = []) =>
    sdp(["v=0", "o=- 1 1 IN IP4 192.0.2.1", "s=-", "c=IN IP4 192.0.2.1", "t=0 0", m, ...extra]);
  const opts = { registry: codecs, address: "192.0.2.2", port: 4000 };
  for (
    const m of ["m=audio x RTP/AVP 0", "m=audio 70000 RTP/AVP 0", "m=audio 4000", "m=audio", "m=audio -1 RTP/AVP 0"]
  ) {
    assert.throws(
      () => createAnswer(offer(m), opts),
      (e: unknown) =>
        e instanceof SdpError && e.status === 400 && e.message.startsWith("malformed SDP: m= line") &&
        e.message.includes(`'${m}'`),
      m,
    );
  }
  // Unparsable attributes and lines are skipped, as unknown ones are: PCMU (static 0) is still chosen.
  const answer = createAnswer(
    offer("m=audio 4000 RTP/AVP 0", [
      "a=rtpmap:x PCMA/8000",
      "a=rtpmap:0",
      "a=fmtp:0",
      "a=ptime:soon",
      "a=rtcp:99999",
      "garbage",
      "c=IN IP9 nowhere",
      "=",
    ]),
    opts,
  );
  assert.match(answer, /^m=audio 4000 RTP\/AVP 0\r\na=rtpmap:0 PCMU\/8000\r\na=ptime:20\r\na=sendrecv\r\n/m);
  const n = negotiated(answer, { registry: codecs });
  assert.deepEqual([n.remotePort, n.remoteRtcpPort], [4000, 4001]);
  // A declined stream is answered with port 0 and its first format, its other lines not echoed.
  const withVideo = createAnswer(
    offer("m=audio 4000 RTP/AVP 0", ["m=video 5000 RTP/SAVPF 96 97", "a=ice-ufrag:x"]),
    opts,
  );
  assert.ok(withVideo.endsWith("m=video 0 RTP/SAVPF 96\r\n"), withVideo);
});

Deno.test("SDP: negotiated reads only RTP/AVP audio streams, as createAnswer answers; a secure profile alone is 488", () => {
  const head = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n";
  const secure = `${head}m=audio 4000 RTP/SAVP 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:abcd\r\n`;
  assert.throws(
    () => negotiated(secure, { registry: codecs }),
    (e) => e instanceof SdpError && e.status === 488 && /profile RTP\/SAVP: only RTP\/AVP/.test(e.message),
  );
  assert.throws(() => createAnswer(secure, { address: "10.0.0.2", port: 5000, registry: codecs }), SdpError);
  // With a plain stream after the secure one, both read the plain one.
  const both = `${head}m=audio 4000 RTP/SAVP 0\r\nm=audio 4002 RTP/AVP 8\r\n`;
  assert.equal(negotiated(both, { registry: codecs }).remotePort, 4002);
  assert.match(
    createAnswer(both, { address: "10.0.0.2", port: 5000, registry: codecs }),
    /m=audio 5000 RTP\/AVP 8\r\n/,
  );
});

Deno.test("negotiated / agreedMedia: an address that is never a destination, a payload type above 127, an RTCP port beyond 65535, ptime 0: 488 naming it", () => {
  const offer = (o: { c?: string; m?: string; extra?: string[] }) =>
    sdp([
      "v=0",
      "o=- 1 1 IN IP4 198.51.100.1",
      "s=-",
      o.c ?? "c=IN IP4 198.51.100.1",
      "t=0 0",
      o.m ?? "m=audio 30000 RTP/AVP 0 101",
      "a=rtpmap:0 PCMU/8000",
      "a=rtpmap:101 telephone-event/8000",
      ...(o.extra ?? []),
    ]);
  const cases: [string, string, RegExp][] = [
    ["c=0.0.0.0", offer({ c: "c=IN IP4 0.0.0.0" }), /0\.0\.0\.0 is the unspecified address .*never a destination/],
    ["c=0.1.2.3", offer({ c: "c=IN IP4 0.1.2.3" }), /unspecified address \(0\.0\.0\.0\/8\)/],
    ["c=::", offer({ c: "c=IN IP6 ::" }), /:: is the unspecified address \(::\)/],
    ["c=::ffff:0.0.0.0", offer({ c: "c=IN IP6 ::ffff:0.0.0.0" }), /unspecified address/],
    ["c=multicast", offer({ c: "c=IN IP4 224.2.1.1/127" }), /224\.2\.1\.1 is a multicast address/],
    ["c=ff02::1", offer({ c: "c=IN IP6 ff02::1" }), /ff02::1 is a multicast address/],
    ["c=broadcast", offer({ c: "c=IN IP4 255.255.255.255" }), /is the broadcast address/],
    [
      "PT 200",
      offer({ m: "m=audio 30000 RTP/AVP 200", extra: ["a=rtpmap:200 PCMU/8000"] }),
      /PCMU on payload type 200/,
    ],
    ["port 65535", offer({ m: "m=audio 65535 RTP/AVP 0" }), /RTCP port 65536 \(RTP port 65535 \+ 1\)/],
    ["a=rtcp:0", offer({ extra: ["a=rtcp:0"] }), /RTCP port 0 \(a=rtcp\)/],
    ["a=ptime:0", offer({ extra: ["a=ptime:0"] }), /a=ptime:0/],
  ];
  for (const [name, text, why] of cases) {
    assert.throws(
      () => negotiated(text, { registry: codecs }),
      (e) => e instanceof SdpError && e.status === 488 && why.test(e.message),
      name,
    );
  }
  // telephone-event on a payload type above 127: refused when our SDP takes telephone-event.
  const te300 = offer({ m: "m=audio 30000 RTP/AVP 0 300", extra: ["a=rtpmap:300 telephone-event/8000"] });
  const answer = createAnswer(offer({}), {
    registry: codecs,
    address: "203.0.113.5",
    port: 41000,
    telephoneEvent: true,
  });
  assert.throws(() => agreedMedia(te300, answer, { registry: codecs }), /telephone-event on payload type 300/);
  // A usable address of each kind still passes.
  for (const c of ["c=IN IP4 198.51.100.1", "c=IN IP6 2001:db8::1", "c=IN IP4 10.0.0.255"]) {
    assert.equal(negotiated(offer({ c }), { registry: codecs }).remotePort, 30000, c);
  }
});

// Found by the fuzzer (tests/fuzz_test.ts, bench/fuzz.ts).

const SDP_HEAD = "v=0\r\no=- 1 1 IN IP4 192.0.2.7\r\ns=-\r\nc=IN IP4 192.0.2.7\r\nt=0 0\r\n";

Deno.test("sdp: an offer naming no codec of ours gets an error message of bounded size, whatever it repeats", () => {
  // 62 KB: one payload type listed 20 000 times, its rtpmap name 2 000 characters long. The error listed the name once
  // per payload type: a 40 MB message, logged, and sent as the reason phrase and Warning header of the 488 (a
  // 76 MB datagram that could not be sent: EMSGSIZE, the INVITE never answered).
  const offer = SDP_HEAD + "m=audio 4000 RTP/AVP " + Array(20_000).fill("96").join(" ") +
    `\r\na=rtpmap:96 ${"X".repeat(2000)}/8000\r\n`;
  assert.throws(
    () => createAnswer(offer, { registry: codecs, address: "192.0.2.20", port: 41000 }),
    (e: unknown) => {
      assert.ok(e instanceof NoCommonCodecError);
      assert.ok(e.message.length < 200, `message of ${e.message.length} characters`);
      assert.equal(e.offered.length, 1);
      assert.match(e.message, /^no common codec: offered X{40}\.\.\., supported PCMU, PCMA/);
      return true;
    },
  );
  // Many distinct names: the first 16, then how many more.
  let many = SDP_HEAD + "m=audio 4000 RTP/AVP " + Array.from({ length: 30 }, (_, i) => 96 + i).join(" ") + "\r\n";
  for (let i = 0; i < 30; i++) many += `a=rtpmap:${96 + i} C${i}/8000\r\n`;
  assert.throws(() => createAnswer(many, { registry: codecs, address: "192.0.2.20", port: 41000 }), (e: unknown) => {
    assert.ok(e instanceof NoCommonCodecError);
    assert.equal(e.offered.length, 17);
    assert.equal(e.offered[16], "(14 more)");
    return true;
  });
});

Deno.test("sdp: an offer of thousands of payload types and rtpmaps costs work linear in its size (operation count)", () => {
  // 6 000 payload types none of ours, 1 500 rtpmaps of others: each payload type's rtpmap was searched through all of
  // them (9 M predicate calls, 30-60 ms of CPU per 60 KB INVITE). Counted, not timed: Array.prototype.find's
  // predicate calls while the offer is answered.
  let offer = SDP_HEAD + "m=audio 4000 RTP/AVP " + Array(6000).fill("99").join(" ") + "\r\n";
  for (let i = 0; i < 1500; i++) offer += `a=rtpmap:${100 + (i % 20)} X/8000\r\n`;
  const find = Array.prototype.find;
  let calls = 0;
  Array.prototype.find = function (
    this: unknown[],
    pred: (v: unknown, i: number, a: unknown[]) => unknown,
    t?: unknown,
  ) {
    return find.call(this, (v: unknown, i: number, a: unknown[]) => {
      calls++;
      return pred.call(t, v, i, a);
    });
  } as typeof find;
  try {
    assert.throws(() => createAnswer(offer, { registry: codecs, address: "192.0.2.20", port: 41000 }), SdpError);
  } finally {
    Array.prototype.find = find;
  }
  assert.ok(calls < 4 * offer.length, `${calls} predicate calls for an offer of ${offer.length} bytes`);
});
