import assert from "node:assert/strict";
import { VirtualClock } from "../core/clock.ts";
import { Logger, MemoryOutput } from "../core/log.ts";
import { createResponse, parseMessage, type SipRequest, type SipResponse, topVia } from "../plugins/sip/message.ts";
import { type Address, SipTransport } from "../plugins/sip/transport.ts";
import { LossySocket, MemoryNetwork } from "../core/net/memory.ts";
import { udpNetwork } from "../core/net/udp.ts";
import { seededRandom } from "../core/random.ts";

const te = new TextEncoder();
const td = new TextDecoder();

function setup() {
  const clock = new VirtualClock();
  const net = new MemoryNetwork({ clock, latencyMs: 1 });
  const out = new MemoryOutput();
  const log = new Logger({ level: "debug", outputs: [out] }).child("SIP");
  const server = new SipTransport({ transport: net.bind("10.0.0.2", 5060), log });
  const peer = net.bind("10.0.0.1", 5999);
  const received: { data: string; from: Address }[] = [];
  peer.listen((d, from) => void received.push({ data: td.decode(d), from }));
  return { clock, net, server, peer, received, out };
}

const GOOD = [
  "OPTIONS sip:bob@10.0.0.2 SIP/2.0",
  "Via: SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bKt1;rport",
  "From: <sip:alice@10.0.0.1>;tag=a",
  "To: <sip:bob@10.0.0.2>",
  "Call-ID: t1",
  "CSeq: 1 OPTIONS",
];

Deno.test("transport: received/rport stamped on requests; responses routed per RFC 3261 18.2.2 / RFC 3581", async () => {
  const { clock, server, peer, received } = setup();
  const reqs: SipRequest[] = [];
  server.onRequest = (r) => reqs.push(r);
  await peer.send(te.encode(GOOD.join("\r\n") + "\r\n\r\n"), server.localAddress);
  clock.advance(1);
  assert.equal(reqs.length, 1);
  const via = topVia(reqs[0]);
  assert.equal(via.params.received, "10.0.0.1");
  assert.equal(via.params.rport, "5999");
  await server.sendResponse(createResponse(reqs[0], 200, undefined, { toTag: "b" }));
  clock.advance(1);
  // Sent to the source port (rport), not to the Via port 5070.
  assert.equal(received.length, 1);
  assert.match(received[0].data, /^SIP\/2.0 200 OK\r\n/);
});

Deno.test("transport: malformed request with recoverable headers gets 400 with the reason", async () => {
  const { clock, server, peer, received, out } = setup();
  let passed = 0;
  server.onRequest = () => passed++;
  const bad = [...GOOD, "Content-Length: 50"].join("\r\n") + "\r\n\r\nshort body";
  await peer.send(te.encode(bad), server.localAddress);
  clock.advance(2);
  assert.equal(passed, 0);
  assert.equal(received.length, 1);
  const res = parseMessage(received[0].data) as SipResponse;
  assert.equal(res.status, 400);
  assert.equal(res.reason, "Bad Request (Content-Length larger than body)");
  assert.equal(res.headers.get("Call-ID"), "t1");
  assert.equal(server.stats.badRequestsAnswered, 1);
  assert.ok(
    out.lines.some((l) => l.includes("[SIP] 400 Bad Request sent to 10.0.0.1:5999 (Content-Length larger than body)")),
  );
});

Deno.test("transport: garbage, malformed responses, unanswerable requests and ACKs are dropped and counted", async () => {
  const { clock, server, peer, received } = setup();
  let up = 0;
  server.onRequest = () => up++;
  server.onResponse = () => up++;
  const sends = [
    new Uint8Array([0, 1, 2, 3, 255, 254]),
    te.encode("SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP x;branch=z9hG4bK1\r\n\r\n"), // response missing headers
    te.encode("INVITE sip:bob@10.0.0.2 SIP/2.0\r\nFrom: <sip:a@b>;tag=1\r\n\r\n"), // no Via: cannot answer
    te.encode(
      [...GOOD.slice(0, 5), "CSeq: 1 ACK"].join("\r\n").replace("OPTIONS sip", "ACK sip") +
        "\r\nContent-Length: 9\r\n\r\n",
    ),
    te.encode("\r\n\r\n"), // keep-alive
  ];
  for (const s of sends) await peer.send(s, server.localAddress);
  clock.advance(2);
  assert.equal(up, 0);
  assert.equal(received.length, 0);
  assert.equal(server.stats.malformedDropped, 4);
  assert.equal(server.stats.keepalives, 1);
  // Still serving.
  await peer.send(te.encode(GOOD.join("\r\n") + "\r\n\r\n"), server.localAddress);
  clock.advance(2);
  assert.equal(up, 1);
});

Deno.test("transport: responses with more than one Via are dropped; handler exceptions never escape", async () => {
  const { clock, server, peer } = setup();
  let responses = 0;
  server.onResponse = () => responses++;
  const twoVias = [
    "SIP/2.0 200 OK",
    "Via: SIP/2.0/UDP 10.0.0.2;branch=z9hG4bK1",
    "Via: SIP/2.0/UDP 10.0.0.3;branch=z9hG4bK2",
    "From: <sip:a@b>;tag=1",
    "To: <sip:c@d>;tag=2",
    "Call-ID: x",
    "CSeq: 1 OPTIONS",
  ].join("\r\n") + "\r\n\r\n";
  await peer.send(te.encode(twoVias), server.localAddress);
  server.onRequest = () => {
    throw new Error("boom");
  };
  await peer.send(te.encode(GOOD.join("\r\n") + "\r\n\r\n"), server.localAddress);
  clock.advance(2);
  assert.equal(responses, 0);
  assert.equal(server.stats.misroutedResponses, 1);
  assert.equal(server.stats.requests, 1);
});

Deno.test("lossy transport: seeded, reproducible drop pattern near the requested rate", async () => {
  const clock = new VirtualClock();
  const net = new MemoryNetwork({ clock });
  const a = new LossySocket(net.bind("10.0.0.1", 1), { lossRate: 0.3, seed: 99 });
  const b = net.bind("10.0.0.2", 1);
  let got = 0;
  b.listen(() => void got++);
  for (let i = 0; i < 1000; i++) await a.send(new Uint8Array([i & 255]), b.local);
  clock.advance(5);
  assert.equal(got + a.dropped, 1000);
  assert.ok(a.dropped > 250 && a.dropped < 350, `dropped ${a.dropped}`);
  const r1 = seededRandom(5), r2 = seededRandom(5);
  for (let i = 0; i < 10; i++) assert.equal(r1(), r2());
});

Deno.test("udp socket (the network layer's): loopback datagrams, clean close", async () => {
  const a = udpNetwork.bind("127.0.0.1", 0);
  const b = udpNetwork.bind("127.0.0.1", 0);
  try {
    const got = new Promise<{ data: string; from: Address }>((resolve) =>
      b.listen((d, from) => resolve({ data: td.decode(d), from }))
    );
    await a.send(te.encode("hello"), b.local);
    const r = await got;
    assert.equal(r.data, "hello");
    assert.deepEqual(r.from, a.local);
  } finally {
    await a.close();
    await b.close();
  }
});
