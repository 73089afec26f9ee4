import assert from "node:assert/strict";
import { packets } from "rtp.js";
import {
  parseRtp,
  RTP_HEADER_SIZE,
  RTP_MALFORMED_REASONS,
  rtpSize,
  serializeRtp,
  serializeRtpInto,
} from "../plugins/rtp/header.ts";
import type { RtpFrame } from "../core/frame.ts";

const view = (b: Uint8Array) => new DataView(b.buffer, b.byteOffset, b.byteLength);

Deno.test("serializeRtp: bytes of a hand-built packet", () => {
  const bytes = serializeRtp({
    kind: "rtp",
    payloadType: 8,
    sequence: 0x1234,
    timestamp: 0xdeadbeef,
    ssrc: 0xcafebabe,
    marker: true,
    payload: new Uint8Array([1, 2, 3]),
  });
  assert.deepEqual(
    [...bytes],
    [0x80, 0x88, 0x12, 0x34, 0xde, 0xad, 0xbe, 0xef, 0xca, 0xfe, 0xba, 0xbe, 1, 2, 3],
  );
  assert.equal(RTP_HEADER_SIZE, 12);
});

Deno.test("serializeRtp: CSRC list and field truncation", () => {
  const bytes = serializeRtp({
    kind: "rtp",
    payloadType: 0,
    sequence: 0x10001, // 17 bits: truncated to 1
    timestamp: 2 ** 32 + 5, // truncated to 5
    ssrc: 1,
    marker: false,
    csrc: [0x01020304, 0xa0b0c0d0],
    payload: new Uint8Array([9]),
  });
  assert.deepEqual(
    [...bytes],
    [0x82, 0x00, 0, 1, 0, 0, 0, 5, 0, 0, 0, 1, 1, 2, 3, 4, 0xa0, 0xb0, 0xc0, 0xd0, 9],
  );
});

Deno.test("serializeRtp matches rtp.js RtpPacket byte for byte", () => {
  for (
    const [pt, seq, ts, ssrc, marker, csrc] of [
      [0, 0, 0, 0, false, []],
      [8, 65535, 4294967295, 4294967295, true, [1]],
      [127, 40000, 3000000000, 0x80000000, false, [1, 2, 3]],
    ] as const
  ) {
    const payload = new Uint8Array(160).map((_, i) => i * 7);
    const ours = serializeRtp({
      kind: "rtp",
      payloadType: pt,
      sequence: seq,
      timestamp: ts,
      ssrc,
      marker,
      csrc: [...csrc],
      payload,
    });
    const p = new packets.RtpPacket();
    p.setPayloadType(pt);
    p.setSequenceNumber(seq);
    p.setTimestamp(ts);
    p.setSsrc(ssrc);
    p.setMarker(marker);
    p.setCsrcs([...csrc]);
    p.setPayload(view(payload));
    const v = p.getView();
    assert.deepEqual(ours, new Uint8Array(v.buffer, v.byteOffset, v.byteLength));
  }
});

Deno.test("parseRtp: round trip, and agreement with rtp.js parsing", () => {
  const f: RtpFrame = {
    kind: "rtp",
    payloadType: 0,
    sequence: 65535,
    timestamp: 4294967295,
    ssrc: 1,
    marker: false,
    csrc: [7, 0xffffffff],
    payload: new Uint8Array(160).fill(0xff),
  };
  const bytes = serializeRtp(f);
  const r = parseRtp(bytes, 42);
  assert.notEqual(typeof r, "string");
  assert.deepEqual(r, { ...f, arrival: 42 });
  const p = new packets.RtpPacket(view(bytes.slice()));
  assert.equal(p.getSequenceNumber(), 65535);
  assert.equal(p.getTimestamp(), 4294967295);
  assert.deepEqual(p.getCsrcs(), [7, 0xffffffff]);
  assert.equal(p.getPayload().byteLength, 160);
});

Deno.test("parseRtp: header extension skipped and padding removed (packet built by rtp.js)", () => {
  const p = new packets.RtpPacket();
  p.setPayloadType(8);
  p.setSequenceNumber(7);
  p.setTimestamp(1234);
  p.setSsrc(99);
  p.enableOneByteExtensions();
  p.setExtension(1, view(new Uint8Array([1, 2, 3])));
  p.setPayload(view(new Uint8Array([10, 20, 30, 40, 50])));
  p.padTo4Bytes();
  const v = p.getView();
  const bytes = new Uint8Array(v.buffer, v.byteOffset, v.byteLength).slice();
  assert.equal(bytes[0] & 0x30, 0x30, "X and P bits set by rtp.js");
  const r = parseRtp(bytes);
  if (typeof r === "string") throw new Error(r);
  assert.deepEqual([...r.payload], [10, 20, 30, 40, 50]);
  assert.equal(r.sequence, 7);
  assert.equal(r.timestamp, 1234);
  assert.equal(r.ssrc, 99);
  assert.equal(r.payloadType, 8);
  assert.equal(r.arrival, undefined);
});

Deno.test("parseRtp: every malformed reason is reported, never thrown", () => {
  const ok = serializeRtp({
    kind: "rtp",
    payloadType: 0,
    sequence: 1,
    timestamp: 2,
    ssrc: 3,
    marker: false,
    payload: new Uint8Array(4),
  });
  const cases: [Uint8Array, string][] = [
    [new Uint8Array(11).fill(0x80), "too short"],
    [new Uint8Array(0), "too short"],
    [Uint8Array.from(ok, (b, i) => (i === 0 ? 0x40 : b)), "version not 2"],
    [Uint8Array.from(ok, (b, i) => (i === 0 ? 0x00 : b)), "version not 2"],
    [Uint8Array.from(ok, (b, i) => (i === 0 ? 0x82 : b)), "CSRC count beyond length"],
    // X bit with only 4 payload bytes: the extension header fits but says 10 words.
    [Uint8Array.from(ok, (b, i) => (i === 0 ? 0x90 : i === 15 ? 10 : b)), "header extension beyond length"],
    [Uint8Array.from(ok.subarray(0, 14), (b, i) => (i === 0 ? 0x90 : b)), "header extension beyond length"],
    // P bit with a padding count of 0, and one larger than the payload.
    [Uint8Array.from(ok, (b, i) => (i === 0 ? 0xa0 : b)), "bad padding"],
    [Uint8Array.from(ok, (b, i) => (i === 0 ? 0xa0 : i === ok.length - 1 ? 5 : b)), "bad padding"],
  ];
  for (const [data, reason] of cases) {
    assert.equal(parseRtp(data), reason);
    assert.ok((RTP_MALFORMED_REASONS as readonly string[]).includes(reason));
  }
  // Padding that consumes the whole payload is valid: empty payload.
  const allPad = Uint8Array.from(ok, (b, i) => (i === 0 ? 0xa0 : i === ok.length - 1 ? 4 : b));
  const r = parseRtp(allPad);
  assert.ok(typeof r !== "string" && r.payload.length === 0);
});

Deno.test("serializeRtpInto writes at an offset; serializeRtp results never share bytes", () => {
  const f: RtpFrame = {
    kind: "rtp",
    payloadType: 8,
    sequence: 0x1234,
    timestamp: 0xdeadbeef,
    ssrc: 0xcafebabe,
    marker: true,
    csrc: [5],
    payload: new Uint8Array([1, 2, 3]),
  };
  const buf = new Uint8Array(40).fill(0xee);
  const n = serializeRtpInto(f, buf, 4);
  assert.equal(n, rtpSize(f));
  assert.equal(n, 19);
  assert.deepEqual(buf.subarray(4, 4 + n), serializeRtp(f));
  assert.equal(buf[3], 0xee);
  assert.equal(buf[4 + n], 0xee);
  assert.throws(() => serializeRtpInto(f, new Uint8Array(10)), RangeError);
  // Many packets (beyond one 64 KiB slab): each keeps its own content.
  const all: Uint8Array[] = [];
  for (let i = 0; i < 1000; i++) {
    all.push(serializeRtp({ ...f, csrc: undefined, sequence: i, payload: new Uint8Array(160).fill(i & 0xff) }));
  }
  all.forEach((b, i) => {
    assert.equal(b.length, 172);
    assert.equal((b[2] << 8) | b[3], i);
    assert.ok(b.subarray(12).every((x) => x === (i & 0xff)));
  });
  // A big payload gets its own buffer.
  assert.equal(serializeRtp({ ...f, csrc: undefined, payload: new Uint8Array(5000) }).length, 5012);
});
