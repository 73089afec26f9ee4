import assert from "node:assert/strict";
import { parseRtp, RTP_HEADER_SIZE, serializeRtp } from "../plugins/rtp/header.ts";
import type { RtpFrame } from "../core/frame.ts";

Deno.test("serializeRtp: bytes of a hand-built packet", () => {
  const payload = new Uint8Array([1, 2, 3]);
  const bytes = serializeRtp({
    kind: "rtp",
    payloadType: 8,
    sequence: 0x1234,
    timestamp: 0xdeadbeef,
    ssrc: 0xcafebabe,
    marker: true,
    payload,
  });
  assert.deepEqual(
    [...bytes],
    [0x80, 0x88, 0x12, 0x34, 0xde, 0xad, 0xbe, 0xef, 0xca, 0xfe, 0xba, 0xbe, 1, 2, 3],
  );
  assert.equal(RTP_HEADER_SIZE, 12);
});

Deno.test("parseRtp: round trip", () => {
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
  const r = parseRtp(serializeRtp(f), 42);
  assert.notEqual(typeof r, "string");
  assert.deepEqual(r, { ...f, arrival: 42 });
});
