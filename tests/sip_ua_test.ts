/**
 * SipUserAgent end to end on an in-memory network with a VirtualClock:
 * full calls, 30 % loss, CANCEL, rejections, timeouts and garbage.
 */
import assert from "node:assert/strict";
import { VirtualClock } from "../core/clock.ts";
import { Logger, MemoryOutput } from "../core/log.ts";
import { createAnswer, createOffer, negotiated, NoCommonCodecError } from "../plugins/sip/sdp.ts";
import { parseMessage, type SipResponse } from "../plugins/sip/message.ts";
import type { DatagramTransport } from "../plugins/sip/transport.ts";
import { FilteredSocket } from "../core/net/filtered.ts";
import { LossySocket, MemoryNetwork } from "../core/net/memory.ts";
import {
  type CallEndInfo,
  CallFailedError,
  type IncomingCall,
  type OutgoingCall,
  SipUserAgent,
} from "../plugins/sip/mod.ts";
import { codecs } from "./registry_util.ts";

const te = new TextEncoder();
const td = new TextDecoder();

/** Drops outgoing datagrams whose text matches `drop`. */
class FilterTransport extends FilteredSocket {
  constructor(inner: DatagramTransport, drop: (text: string) => boolean) {
    super(inner, (data) => drop(td.decode(data)));
  }
}

interface Opts {
  /** Bob's `trying` option. */
  bobTrying?: "at-once" | "when-slow";
  lossRate?: number;
  seed?: number;
  wrapAlice?: (t: DatagramTransport) => DatagramTransport;
  wrapBob?: (t: DatagramTransport) => DatagramTransport;
}

function setup(opts: Opts = {}) {
  const clock = new VirtualClock();
  const net = new MemoryNetwork({ clock, latencyMs: 5 });
  const out = new MemoryOutput();
  const root = new Logger({ level: "debug", outputs: [out] });
  let ta: DatagramTransport = net.bind("10.0.0.1", 5060);
  let tb: DatagramTransport = net.bind("10.0.0.2", 5060);
  let lossA: LossySocket | undefined, lossB: LossySocket | undefined;
  if (opts.lossRate) {
    ta = lossA = new LossySocket(ta, { lossRate: opts.lossRate, seed: opts.seed ?? 1 });
    tb = lossB = new LossySocket(tb, { lossRate: opts.lossRate, seed: (opts.seed ?? 1) * 7919 + 1 });
  }
  if (opts.wrapAlice) ta = opts.wrapAlice(ta);
  if (opts.wrapBob) tb = opts.wrapBob(tb);
  const alice = new SipUserAgent({ transport: ta, clock, log: root.child("x", { ua: "alice" }), userName: "alice" });
  const bob = new SipUserAgent({
    transport: tb,
    clock,
    log: root.child("x", { ua: "bob" }),
    userName: "bob",
    trying: opts.bobTrying,
  });
  const probe = net.bind("10.0.0.66", 5060);
  const probeGot: string[] = [];
  probe.listen((d) => void probeGot.push(td.decode(d)));
  const close = async () => {
    await alice.close();
    await bob.close();
    await probe.close();
  };
  return { clock, net, out, alice, bob, probe, probeGot, close, lossA, lossB };
}

const OFFER = createOffer({ registry: codecs, address: "10.0.0.1", port: 40000, sessionId: "1" });

/** Bob answers every call: 180 at once, 200 after `answerAfter` ms. */
function autoAnswer(bob: SipUserAgent, clock: VirtualClock, answerAfter = 1000): IncomingCall[] {
  const calls: IncomingCall[] = [];
  bob.onInvite((call) => {
    calls.push(call);
    call.ringing();
    clock.after(answerAfter, () => {
      try {
        call.accept(createAnswer(call.offer!, { registry: codecs, address: "10.0.0.2", port: 41000 }));
      } catch (e) {
        call.reject(e instanceof NoCommonCodecError ? e.status : 500);
      }
    });
  });
  return calls;
}

function ends(call: { on(e: "ended", fn: (i: CallEndInfo) => void): unknown }): CallEndInfo[] {
  const list: CallEndInfo[] = [];
  call.on("ended", (e) => list.push(e));
  return list;
}

Deno.test('UA: trying "when-slow": no 100 before an at-once 180; 100 from the 200 ms timer when the callee waits', async () => {
  const { clock, alice, bob, close } = setup({ bobTrying: "when-slow" });
  const waiting: IncomingCall[] = [];
  let ringAtOnce = true;
  bob.onInvite((call) => {
    if (ringAtOnce) call.ringing();
    else waiting.push(call); // decides later: rings 500 ms after the INVITE left
  });
  const progressOf = (call: OutgoingCall) => {
    const seen: { status: number; at: number }[] = [];
    call.on("progress", (p) => seen.push({ status: p.status, at: clock.now() }));
    return seen;
  };
  const first = alice.invite("sip:bob@10.0.0.2", { sdp: OFFER });
  const firstSeen = progressOf(first);
  clock.advance(1000);
  assert.deepEqual(firstSeen.map((p) => p.status), [180]);
  ringAtOnce = false;
  const t0 = clock.now();
  const second = alice.invite("sip:bob@10.0.0.2", { sdp: OFFER });
  const secondSeen = progressOf(second);
  clock.advance(150);
  assert.equal(secondSeen.length, 0, "nothing yet: 100 comes from the timer at 200 ms");
  clock.advance(100);
  assert.deepEqual(secondSeen.map((p) => p.status), [100]);
  // 5 ms to bob, his transaction's 200 ms, 5 ms back: before alice's INVITE retransmission (500 ms).
  assert.equal(secondSeen[0].at - t0, 210);
  assert.equal(second.state, "proceeding");
  clock.advance(250);
  waiting[0].ringing();
  clock.advance(50);
  assert.deepEqual(secondSeen.map((p) => p.status), [100, 180]);
  assert.equal(waiting.length, 1, "one INVITE reached bob's application");
  first.cancel();
  second.cancel();
  clock.advance(1000);
  await close();
});

Deno.test("UA: INVITE / 100 / 180 / 200 / ACK / BYE between two user agents", async () => {
  const { clock, out, alice, bob, close } = setup();
  const incoming = autoAnswer(bob, clock, 300);
  const call = alice.invite("sip:bob@10.0.0.2", { sdp: OFFER });
  const progress: string[] = [];
  call.on("progress", (p) => progress.push(`${p.status} ${p.reason}`));
  const aliceEnds = ends(call);
  let established = 0;
  call.on("established", () => established++);
  clock.advance(100);
  assert.equal(call.state, "proceeding");
  assert.equal(incoming.length, 1);
  assert.equal(incoming[0].state, "ringing");
  const bobEnds = ends(incoming[0]);
  clock.advance(300);
  assert.equal(call.state, "established");
  assert.equal(incoming[0].state, "established");
  assert.deepEqual(progress, ["100 Trying", "180 Ringing"]);
  assert.equal(established, 1);
  const { sdp } = await call.established;
  const media = negotiated(sdp!, { registry: codecs });
  assert.equal(media.remoteAddress, "10.0.0.2");
  assert.equal(media.remotePort, 41000);
  assert.equal(media.codec, "PCMU");
  assert.equal((await incoming[0].established).sdp, OFFER);
  assert.deepEqual(
    [call.media().remoteAddress, call.media().remotePort, call.media().codec],
    ["10.0.0.2", 41000, "PCMU"],
  );
  assert.deepEqual(
    [incoming[0].media().remoteAddress, incoming[0].media().remotePort, incoming[0].media().codec],
    ["10.0.0.1", 40000, "PCMU"],
  );
  // Identity of the call on both sides.
  assert.equal(call.callId, incoming[0].callId);
  assert.equal(call.remoteTag, incoming[0].localTag);
  assert.equal(incoming[0].remoteTag, call.localTag);
  assert.equal(call.remoteTarget, "sip:bob@10.0.0.2:5060");
  assert.equal(incoming[0].remoteTarget, "sip:alice@10.0.0.1:5060");

  const done = call.hangup();
  clock.advance(50);
  await done;
  assert.deepEqual(aliceEnds, [{ by: "local", reason: "BYE" }]);
  assert.deepEqual(bobEnds, [{ by: "remote", reason: "BYE" }]);
  assert.deepEqual(await incoming[0].ended, { by: "remote", reason: "BYE" });
  for (
    const line of [
      "[SIP] INVITE sent to sip:bob@10.0.0.2",
      "[SIP] 180 Ringing",
      "[SIP] 200 OK received, sending ACK",
      "[SIP] BYE sent",
      "[SIP] BYE received",
    ]
  ) {
    assert.ok(out.lines.some((l) => l.includes(line)), `missing log line ${line}`);
  }
  assert.equal(alice.calls.length, 0);
  await close();
});

Deno.test("UA: callee hangs up with BYE; Contact/Via carry the bound address", async () => {
  const { clock, alice, bob, close } = setup();
  const incoming = autoAnswer(bob, clock, 10);
  const call = alice.invite("Bob <sip:bob@10.0.0.2:5060>", { sdp: OFFER });
  const aliceEnds = ends(call);
  clock.advance(100);
  assert.equal(call.state, "established");
  assert.match(call.invite.headers.get("Via")!, /^SIP\/2.0\/UDP 10.0.0.1:5060;branch=z9hG4bK[0-9a-f]{16};rport$/);
  assert.equal(call.invite.headers.get("Contact"), "<sip:alice@10.0.0.1:5060>");
  assert.equal(call.invite.headers.get("To"), "Bob <sip:bob@10.0.0.2:5060>");
  assert.equal(call.invite.headers.get("Max-Forwards"), "70");
  assert.equal(call.invite.headers.get("User-Agent"), "voxpipe/0.1");
  assert.equal(call.invite.headers.get("Allow"), "INVITE, ACK, BYE, CANCEL, OPTIONS");
  void incoming[0].hangup();
  clock.advance(50);
  assert.deepEqual(aliceEnds, [{ by: "remote", reason: "BYE" }]);
  assert.deepEqual(incoming[0].endInfo, { by: "local", reason: "BYE" });
  await close();
});

Deno.test("UA: full call completes over a 30 %-lossy network through retransmissions", async () => {
  for (const seed of [1, 2, 3, 4, 5]) {
    const { clock, alice, bob, close, lossA, lossB } = setup({ lossRate: 0.3, seed });
    const incoming = autoAnswer(bob, clock, 1000);
    const call = alice.invite("sip:bob@10.0.0.2", { sdp: OFFER });
    const aliceEnds = ends(call);
    let bobEstablished = false;
    bob.on("invite", (c) => c.on("established", () => (bobEstablished = true)));
    // Up to 60 s of virtual time for the call to be established.
    for (let t = 0; t < 60000 && call.state !== "established"; t += 100) clock.advance(100);
    assert.equal(call.state, "established", `seed ${seed}: call not established (${call.endInfo?.reason})`);
    // Let the ACK get through (the 2xx is retransmitted until it does), then hang up.
    for (let t = 0; t < 30000 && incoming[0].state !== "established"; t += 100) clock.advance(100);
    assert.ok(bobEstablished, `seed ${seed}: callee never saw the ACK`);
    void call.hangup();
    for (let t = 0; t < 40000 && incoming[0].state !== "ended"; t += 100) clock.advance(100);
    assert.deepEqual(aliceEnds, [{ by: "local", reason: "BYE" }]);
    assert.deepEqual(incoming[0].endInfo, { by: "remote", reason: "BYE" }, `seed ${seed}`);
    assert.ok(lossA!.dropped + lossB!.dropped > 0, `seed ${seed}: nothing was dropped`);
    await close();
  }
});

Deno.test("UA: CANCEL before answer → 200 to CANCEL, 487 to INVITE, both sides ended", async () => {
  const { clock, out, alice, bob, close } = setup();
  const incoming: IncomingCall[] = [];
  bob.onInvite((c) => {
    incoming.push(c);
    c.ringing();
  });
  const call = alice.invite("sip:bob@10.0.0.2", { sdp: OFFER });
  const aliceEnds = ends(call);
  clock.advance(100);
  const bobEnds = ends(incoming[0]);
  call.cancel();
  clock.advance(100);
  assert.deepEqual(aliceEnds, [{ by: "local", reason: "cancelled", status: 487 }]);
  assert.deepEqual(bobEnds, [{ by: "remote", reason: "CANCEL", status: 487 }]);
  await assert.rejects(call.established, (e) => e instanceof CallFailedError && e.info.status === 487);
  assert.ok(out.lines.some((l) => l.includes("[SIP] CANCEL sent")));
  assert.ok(out.lines.some((l) => l.includes("[SIP] CANCEL received")));
  assert.ok(out.lines.some((l) => l.includes("[SIP] 487 Request Terminated")));
  // The 487 was ACKed inside the INVITE client transaction: no more 487 retransmissions.
  assert.equal(bob.transactions.serverCount > 0, true);
  clock.advance(40000);
  assert.equal(bob.transactions.serverCount, 0);
  await close();
});

Deno.test("UA: cancel() before any provisional response waits for one (RFC 3261 9.1)", async () => {
  const { clock, alice, bob, close } = setup({
    // Bob's 100 Trying is lost once, so Alice sees no provisional for a while.
    wrapBob: (t) => {
      let first = true;
      return new FilterTransport(t, (s) => {
        if (first && s.startsWith("SIP/2.0 100")) {
          first = false;
          return true;
        }
        return false;
      });
    },
  });
  const incoming: IncomingCall[] = [];
  bob.onInvite((c) => incoming.push(c)); // no ringing: only the automatic 100
  const call = alice.invite("sip:bob@10.0.0.2", { sdp: OFFER });
  call.cancel(); // nothing received yet: deferred
  clock.advance(100);
  assert.equal(incoming[0].state, "incoming", "CANCEL not sent before a provisional response");
  clock.advance(1000); // INVITE retransmission at 500 ms → 100 Trying again → CANCEL goes out
  assert.deepEqual(call.endInfo, { by: "local", reason: "cancelled", status: 487 });
  assert.equal(incoming[0].endInfo?.reason, "CANCEL");
  await close();
});

Deno.test("UA: reject 486 and 488 (no common codec) end the caller's call with the status", async () => {
  const { clock, alice, bob, close } = setup();
  bob.onInvite((c) => {
    if (c.request.uri.includes("busy")) return c.reject(486);
    try {
      c.accept(createAnswer(c.offer!, { registry: codecs, address: "10.0.0.2", port: 41000, codecs: ["PCMA"] }));
    } catch (e) {
      c.reject((e as NoCommonCodecError).status);
    }
  });
  const busy = alice.invite("sip:busy@10.0.0.2", { sdp: OFFER });
  const pcmuOnly = alice.invite("sip:bob@10.0.0.2", {
    sdp: createOffer({ registry: codecs, address: "10.0.0.1", port: 40002, codecs: ["PCMU"] }),
  });
  clock.advance(100);
  assert.deepEqual(busy.endInfo, { by: "remote", reason: "486 Busy Here", status: 486 });
  assert.deepEqual(pcmuOnly.endInfo, { by: "remote", reason: "488 Not Acceptable Here", status: 488 });
  await assert.rejects(busy.established, CallFailedError);
  await close();
});

Deno.test("UA: no ACK for the 200 → callee ends by timeout after 64·T1 and sends BYE", async () => {
  const { clock, alice, bob, close } = setup({
    wrapAlice: (t) => new FilterTransport(t, (s) => s.startsWith("ACK ")),
  });
  const incoming = autoAnswer(bob, clock, 10);
  const call = alice.invite("sip:bob@10.0.0.2", { sdp: OFFER });
  clock.advance(100);
  assert.equal(call.state, "established");
  assert.equal(incoming[0].state, "accepting");
  clock.advance(31000);
  assert.equal(incoming[0].state, "accepting");
  clock.advance(1000);
  assert.deepEqual(incoming[0].endInfo, { by: "timeout", reason: "no ACK for 200 OK" });
  clock.advance(100);
  assert.deepEqual(call.endInfo, { by: "remote", reason: "BYE" });
  await close();
});

Deno.test("UA: INVITE to a host that never answers times out after Timer B", async () => {
  const { clock, net, alice, close } = setup();
  const ghost = net.bind("10.0.0.99", 5060); // bound (no port unreachable), but silent
  const call = alice.invite("sip:ghost@10.0.0.99", { sdp: OFFER });
  clock.advance(31000);
  assert.equal(call.state, "calling");
  clock.advance(1000);
  assert.deepEqual(call.endInfo, { by: "timeout", reason: "no response to INVITE", status: 408 });
  await ghost.close();
  await close();
});

Deno.test("UA: late offer (INVITE without SDP): offer in the 200, answer in the ACK", async () => {
  const { clock, alice, bob, close } = setup();
  let bobCall: IncomingCall | undefined;
  bob.onInvite((c) => {
    bobCall = c;
    assert.equal(c.offer, undefined);
    c.accept(createOffer({ registry: codecs, address: "10.0.0.2", port: 41000, codecs: ["PCMA"] }));
  });
  const call = alice.invite("sip:bob@10.0.0.2", {
    ackSdp: (offer) => createAnswer(offer, { registry: codecs, address: "10.0.0.1", port: 40000 }),
  });
  clock.advance(100);
  assert.equal(negotiated((await call.established).sdp!, { registry: codecs }).codec, "PCMA");
  const est = await bobCall!.established;
  assert.equal(negotiated(est.sdp!, { registry: codecs }).remotePort, 40000);
  await close();
});

Deno.test("UA: stray requests: BYE for an unknown dialog → 481, unsupported method → 405, OPTIONS → 200, no handler → 480", async () => {
  const { clock, alice, bob, probe, probeGot, close } = setup();
  const head = (method: string, toTag = "") =>
    [
      `${method} sip:bob@10.0.0.2 SIP/2.0`,
      `Via: SIP/2.0/UDP 10.0.0.66:5060;branch=z9hG4bK${method}${toTag}`,
      "From: <sip:probe@10.0.0.66>;tag=p",
      `To: <sip:bob@10.0.0.2>${toTag ? `;tag=${toTag}` : ""}`,
      `Call-ID: probe-${method}`,
      `CSeq: 1 ${method}`,
      "Content-Length: 0",
    ].join("\r\n") + "\r\n\r\n";
  const bobAddr = bob.localAddress;
  await probe.send(te.encode(head("BYE", "nosuch")), bobAddr);
  await probe.send(te.encode(head("INFO")), bobAddr);
  await probe.send(te.encode(head("OPTIONS")), bobAddr);
  await probe.send(te.encode(head("INVITE")), bobAddr); // bob has no invite handler
  clock.advance(20);
  const statuses = probeGot.map((s) => parseMessage(s) as SipResponse).map((r) => `${r.status} ${r.reason}`);
  assert.ok(statuses.includes("481 Call/Transaction Does Not Exist"), statuses.join());
  assert.ok(statuses.includes("405 Method Not Allowed"));
  assert.ok(statuses.includes("200 OK"));
  assert.ok(statuses.includes("480 Temporarily Unavailable"));
  const allow = probeGot.map((s) => parseMessage(s)).find((r) => (r as SipResponse).status === 405)!;
  assert.equal(allow.headers.getAll("Allow").join(", "), "INVITE, ACK, BYE, CANCEL, OPTIONS");
  // ua.options() from Alice.
  const p = alice.options("sip:bob@10.0.0.2");
  clock.advance(20);
  const res = await p;
  assert.equal(res?.status, 200);
  assert.equal(res?.headers.get("Accept"), "application/sdp");
  await close();
});

Deno.test("UA: garbage datagrams get 400 or are dropped; the UA keeps serving calls", async () => {
  const { clock, alice, bob, probe, probeGot, close } = setup();
  const bobAddr = bob.localAddress;
  await probe.send(new Uint8Array([0xff, 0x00, 0x13, 0x37]), bobAddr);
  await probe.send(te.encode("NOT SIP AT ALL\r\n\r\n"), bobAddr);
  const badCl = [
    "INVITE sip:bob@10.0.0.2 SIP/2.0",
    "Via: SIP/2.0/UDP 10.0.0.66:5060;branch=z9hG4bKbad",
    "From: <sip:probe@10.0.0.66>;tag=p",
    "To: <sip:bob@10.0.0.2>",
    "Call-ID: bad",
    "CSeq: 1 INVITE",
    "Content-Length: 500",
  ].join("\r\n") + "\r\n\r\nv=0\r\n";
  await probe.send(te.encode(badCl), bobAddr);
  clock.advance(20);
  assert.equal(probeGot.length, 1);
  const r = parseMessage(probeGot[0]) as SipResponse;
  assert.equal(r.status, 400);
  assert.equal(r.reason, "Bad Request (Content-Length larger than body)");
  assert.equal(bob.stats.malformedDropped, 2);
  assert.equal(bob.stats.badRequestsAnswered, 1);
  autoAnswer(bob, clock, 10);
  const call = alice.invite("sip:bob@10.0.0.2", { sdp: OFFER });
  clock.advance(100);
  assert.equal(call.state, "established");
  await close();
});

Deno.test("UA: 2xx retransmission after our ACK was lost is ACKed again", async () => {
  let acks = 0;
  const { clock, alice, bob, close } = setup({
    wrapAlice: (t) =>
      new FilterTransport(t, (s) => {
        if (!s.startsWith("ACK ")) return false;
        return ++acks === 1; // the first ACK is lost
      }),
  });
  const incoming = autoAnswer(bob, clock, 10);
  const call: OutgoingCall = alice.invite("sip:bob@10.0.0.2", { sdp: OFFER });
  clock.advance(100);
  assert.equal(call.state, "established");
  assert.equal(incoming[0].state, "accepting");
  clock.advance(600); // 200 retransmitted at T1 → ACK again
  assert.equal(acks, 2);
  assert.equal(incoming[0].state, "established");
  await close();
});

Deno.test("UA: close() ends open calls locally and leaves no timers", async () => {
  const { clock, alice, bob, close } = setup();
  autoAnswer(bob, clock, 10);
  const call = alice.invite("sip:bob@10.0.0.2", { sdp: OFFER });
  clock.advance(100);
  await alice.close();
  assert.equal(call.state, "ended");
  assert.equal(call.endInfo?.by, "local");
  await bob.close();
  await close();
  clock.advance(10); // datagrams still in flight on the memory network (the BYEs sent by close)
  assert.equal(clock.pending, 0);
});
