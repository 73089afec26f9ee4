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
