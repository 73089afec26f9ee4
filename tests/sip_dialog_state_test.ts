/**
 * A dialog owns its state: transitions (early → confirmed → terminated),
 * remote target updates (from the 2xx that confirms it and from target
 * refreshes: a re-INVITE or the 2xx to ours), route set and CSeq counters
 * change only through Dialog methods; the fields are read-only. And a call
 * sends to its dialog's current remote target: after the peer's re-INVITE with
 * a new Contact, our BYE goes there (in-memory network, VirtualClock).
 */
import { codecs } from "./registry_util.ts";
import { MemoryNetwork } from "../core/net/memory.ts";
import assert from "node:assert/strict";
import { VirtualClock } from "../core/clock.ts";
import {
  createAnswer,
  createOffer,
  createRequest,
  createResponse,
  Dialog,
  getCSeq,
  type IncomingCall,
  type SipRequest,
  type SipResponse,
  SipUserAgent,
} from "../plugins/sip/mod.ts";
import { MemoryPeer } from "./sip_memory_peer.ts";

const VIA = "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKv";

function invite(extra: [string, string][] = []): SipRequest {
  return createRequest({
    method: "INVITE",
    uri: "sip:bob@biloxi.example.com",
    headers: [
      ["Via", "SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKnashds8"],
      ["From", "<sip:alice@atlanta.example.com>;tag=alice1"],
      ["To", "<sip:bob@biloxi.example.com>"],
      ["Call-ID", "d1"],
      ["CSeq", "10 INVITE"],
      ["Contact", "<sip:alice@pc33.atlanta.example.com>"],
      ...extra,
    ],
  });
}

/** A request from the peer in dialog `d` (From = their tag, To = ours). */
function fromPeer(d: Dialog, method: string, seq: number, extra: [string, string][] = []): SipRequest {
  return createRequest({
    method,
    uri: "sip:x@example.com",
    headers: [
      ["Via", VIA],
      ["From", `${d.remoteUri};tag=${d.remoteTag}`],
      ["To", `${d.localUri};tag=${d.localTag}`],
      ["Call-ID", d.callId],
      ["CSeq", `${seq} ${method}`],
      ...extra,
    ],
  });
}

Deno.test("dialog state: early → confirmed → terminated through methods; the fields cannot be written", () => {
  const d = Dialog.fromUas(invite(), "bob1");
  assert.equal(d.state, "early");
  assert.equal(d.confirm(), true);
  assert.equal(d.state, "confirmed");
  assert.equal(d.confirm(), true, "confirming again changes nothing");
  d.terminate();
  assert.equal(d.state, "terminated");
  assert.equal(d.confirm(), false, "a terminated dialog stays terminated");
  assert.equal(d.state, "terminated");
  const w = d as unknown as Record<string, unknown>;
  for (const field of ["state", "remoteTarget", "routeSet", "localSeq", "remoteSeq"]) {
    assert.throws(() => (w[field] = "x"), TypeError, `${field} is writable`);
  }
  assert.throws(() => (d.routeSet as string[]).push("<sip:evil>"), TypeError);
});

Deno.test("dialog state: the 2xx that confirms an early UAC dialog sets its remote target and route set", () => {
  const inv = invite();
  const ringing = createResponse(inv, 180, undefined, {
    toTag: "bob1",
    headers: [["Contact", "<sip:bob@early.example.com>"], ["Record-Route", "<sip:p1.example.com;lr>"]],
  });
  const d = Dialog.fromUac(inv, ringing);
  assert.equal(d.state, "early");
  assert.equal(d.remoteTarget, "sip:bob@early.example.com");
  const ok = createResponse(inv, 200, undefined, {
    toTag: "bob1",
    headers: [
      ["Contact", "<sip:bob@192.0.2.4:5062>"],
      ["Record-Route", "<sip:p1.example.com;lr>"],
      ["Record-Route", "<sip:p2.example.com;lr>"],
    ],
  });
  assert.equal(d.confirm(ok), true);
  assert.equal(d.state, "confirmed");
  assert.equal(d.remoteTarget, "sip:bob@192.0.2.4:5062");
  assert.deepEqual(d.routeSet, ["<sip:p2.example.com;lr>", "<sip:p1.example.com;lr>"]);
  // Once confirmed, another 2xx (a retransmission) does not move the target; target refreshes do.
  const other = createResponse(inv, 200, undefined, { toTag: "bob1", headers: [["Contact", "<sip:bob@elsewhere>"]] });
  d.confirm(other);
  assert.equal(d.remoteTarget, "sip:bob@192.0.2.4:5062");
  // A non-2xx cannot confirm; a 2xx from another fork is another dialog.
  const early = Dialog.fromUac(inv, ringing);
  assert.throws(() => early.confirm(createResponse(inv, 486, undefined, { toTag: "bob1" })), /confirmed by a 2xx/);
  assert.throws(
    () => early.confirm(createResponse(inv, 200, undefined, { toTag: "fork2" })),
    /200 response \(Call-ID d1\) does not belong to dialog d1;alice1;bob1/,
  );
});

Deno.test("dialog state: target refresh from the peer's re-INVITE and from the 2xx to ours; nothing else moves the target", () => {
  const d = Dialog.fromUas(invite(), "bob1");
  d.confirm();
  const target0 = d.remoteTarget;
  assert.equal(d.refreshTarget(fromPeer(d, "BYE", 11, [["Contact", "<sip:alice@nope>"]])), false, "BYE");
  assert.equal(d.refreshTarget(fromPeer(d, "INVITE", 12)), false, "re-INVITE without Contact");
  assert.equal(d.remoteTarget, target0);
  assert.equal(d.refreshTarget(fromPeer(d, "INVITE", 13, [["Contact", "<sip:alice@10.9.9.9:5070>"]])), true);
  assert.equal(d.remoteTarget, "sip:alice@10.9.9.9:5070");
  assert.equal(d.refreshTarget(fromPeer(d, "UPDATE", 14, [["Contact", "<sip:alice@10.9.9.9:5080>"]])), true);
  assert.equal(d.remoteTarget, "sip:alice@10.9.9.9:5080");
  // Our own re-INVITE: its 2xx refreshes, a 1xx or the 2xx to a BYE does not.
  const { request: reinvite } = d.createRequest("INVITE", { via: VIA });
  const provisional = createResponse(reinvite, 180, undefined, { headers: [["Contact", "<sip:alice@a:1>"]] });
  assert.equal(d.refreshTarget(provisional), false);
  assert.equal(
    d.refreshTarget(createResponse(reinvite, 200, undefined, { headers: [["Contact", "<sip:alice@b:2>"]] })),
    true,
  );
  assert.equal(d.remoteTarget, "sip:alice@b:2");
  const { request: bye } = d.createRequest("BYE", { via: VIA });
  assert.equal(bye.uri, "sip:alice@b:2", "the next request goes to the new target");
  assert.equal(
    d.refreshTarget(createResponse(bye, 200, undefined, { headers: [["Contact", "<sip:alice@c:3>"]] })),
    false,
  );
  // Another dialog's request is refused loudly; a terminated dialog ignores refreshes.
  const stranger = createRequest({
    method: "INVITE",
    uri: "sip:x@y",
    headers: [["Via", VIA], ["From", "<sip:m@x>;tag=zz"], ["To", "<sip:bob@b>;tag=bob1"], ["Call-ID", "d1"], [
      "CSeq",
      "20 INVITE",
    ], ["Contact", "<sip:m@x>"]],
  });
  assert.throws(() => d.refreshTarget(stranger), /does not belong to dialog/);
  d.terminate();
  assert.equal(d.refreshTarget(fromPeer(d, "INVITE", 21, [["Contact", "<sip:alice@d:4>"]])), false);
  assert.equal(d.remoteTarget, "sip:alice@b:2");
});

Deno.test("dialog state: CSeq counters: the UAC continues from its INVITE, the UAS starts at random; ACK takes none", () => {
  const inv = invite();
  const uac = Dialog.fromUac(inv, createResponse(inv, 200, undefined, { toTag: "bob1" }));
  assert.equal(uac.nextLocalSeq(), 11);
  assert.equal(getCSeq(uac.createRequest("BYE", { via: VIA }).request).seq, 12);
  assert.equal(getCSeq(uac.createAck(10, { via: VIA }).request).seq, 10);
  assert.equal(uac.localSeq, 12);
  const uas = Dialog.fromUas(inv, "bob1");
  assert.equal(uas.localSeq, 0);
  const first = uas.nextLocalSeq();
  assert.ok(first >= 1 && first <= 10000, `random start ${first}`);
  assert.equal(getCSeq(uas.createRequest("BYE", { via: VIA }).request).seq, first + 1);
  // Remote CSeq: recorded through acceptRemoteCSeq only.
  assert.equal(uas.remoteSeq, 10);
  assert.equal(uas.acceptRemoteCSeq(fromPeer(uas, "BYE", 10)), false);
  assert.equal(uas.acceptRemoteCSeq(fromPeer(uas, "BYE", 11)), true);
  assert.equal(uas.remoteSeq, 11);
});

/** Alice (our user agent) and a scripted peer with a second address it can move its Contact to. */
function setup() {
  const clock = new VirtualClock();
  const net = new MemoryNetwork({ clock, latencyMs: 5 });
  const alice = new SipUserAgent({ transport: net.bind("10.0.0.1", 5060), clock, userName: "alice" });
  const peer = new MemoryPeer(net, "10.0.0.9", 5060);
  const moved = new MemoryPeer(net, "10.0.0.9", 5070);
  const close = async () => {
    await alice.close();
    await peer.close();
    await moved.close();
    clock.advance(100);
  };
  return { clock, alice, peer, moved, close };
}

const PEER_SDP = createOffer({ registry: codecs, address: "10.0.0.9", port: 42000, sessionId: "9" });

/** The peer's re-INVITE in the dialog of `call` (as seen by alice), with a new Contact. */
function peerReinvite(call: { callId: string; localTag: string; remoteTag?: string }, seq: number, contact: string) {
  return createRequest({
    method: "INVITE",
    uri: "sip:alice@10.0.0.1:5060",
    headers: [
      ["Via", `SIP/2.0/UDP 10.0.0.9:5060;branch=z9hG4bKre${seq}`],
      ["From", `<sip:peer@10.0.0.9>;tag=${call.remoteTag}`],
      ["To", `<sip:alice@10.0.0.1>;tag=${call.localTag}`],
      ["Call-ID", call.callId],
      ["CSeq", `${seq} INVITE`],
      ["Contact", contact],
      ["Content-Type", "application/sdp"],
    ],
    body: PEER_SDP,
  });
}

Deno.test("dialog state: incoming call — after the peer's re-INVITE with a new Contact, our BYE goes to it", async () => {
  const { clock, alice, peer, moved, close } = setup();
  let call: IncomingCall | undefined;
  alice.onInvite((c) => {
    call = c;
    c.accept(createAnswer(c.offer!, { registry: codecs, address: "10.0.0.1", port: 40000 }));
  });
  const inv = createRequest({
    method: "INVITE",
    uri: "sip:alice@10.0.0.1:5060",
    headers: [
      ["Via", "SIP/2.0/UDP 10.0.0.9:5060;branch=z9hG4bKinv1"],
      ["From", "<sip:peer@10.0.0.9>;tag=peer1"],
      ["To", "<sip:alice@10.0.0.1>"],
      ["Call-ID", "refresh-1"],
      ["CSeq", "1 INVITE"],
      ["Contact", "<sip:peer@10.0.0.9:5060>"],
      ["Content-Type", "application/sdp"],
    ],
    body: PEER_SDP,
  });
  peer.onRequest = () => {};
  peer.send(inv, alice.localAddress);
  clock.advance(20);
  const ok = peer.responses("INVITE").find((r) => r.status === 200)!;
  peer.send(
    createRequest({
      method: "ACK",
      uri: "sip:alice@10.0.0.1:5060",
      headers: [
        ["Via", "SIP/2.0/UDP 10.0.0.9:5060;branch=z9hG4bKack1"],
        ["From", "<sip:peer@10.0.0.9>;tag=peer1"],
        ["To", ok.headers.get("To")!],
        ["Call-ID", "refresh-1"],
        ["CSeq", "1 ACK"],
      ],
    }),
    alice.localAddress,
  );
  clock.advance(20);
  assert.equal(call!.state, "established");
  assert.equal(call!.remoteTarget, "sip:peer@10.0.0.9:5060");

  peer.send(peerReinvite(call!, 2, "<sip:peer@10.0.0.9:5070>"), alice.localAddress);
  clock.advance(20);
  const reOk = peer.responses("INVITE").find((r) => getCSeq(r).seq === 2) as SipResponse;
  assert.equal(reOk.status, 200);
  assert.equal(call!.remoteTarget, "sip:peer@10.0.0.9:5070");
  assert.equal(call!.dialog?.remoteTarget, "sip:peer@10.0.0.9:5070");

  void call!.hangup();
  clock.advance(20);
  assert.equal(peer.requests("BYE").length, 0, "no BYE to the old target");
  const [bye] = moved.requests("BYE");
  assert.equal(bye.uri, "sip:peer@10.0.0.9:5070");
  await close();
});

Deno.test("dialog state: outgoing call — the re-INVITE's Contact replaces the 2xx's; a malformed one gets 400 and changes nothing", async () => {
  const { clock, alice, peer, moved, close } = setup();
  peer.onRequest = (req, from) => {
    if (req.method === "INVITE") {
      peer.respond(req, 200, from, {
        toTag: "peer1",
        headers: [["Contact", "<sip:peer@10.0.0.9:5060>"]],
        sdp: createAnswer(new TextDecoder().decode(req.body), { registry: codecs, address: "10.0.0.9", port: 42000 }),
      });
    }
  };
  moved.onRequest = (req, from) => {
    if (req.method === "BYE") moved.respond(req, 200, from);
  };
  const call = alice.invite("sip:peer@10.0.0.9", {
    sdp: createOffer({ registry: codecs, address: "10.0.0.1", port: 40000 }),
  });
  clock.advance(20);
  assert.equal(call.state, "established");
  assert.equal(call.remoteTarget, "sip:peer@10.0.0.9:5060");

  peer.send(peerReinvite(call, 7, "<sip:peer@[bad"), alice.localAddress);
  clock.advance(20);
  const bad = peer.responses("INVITE").find((r) => getCSeq(r).seq === 7)!;
  assert.equal(bad.status, 400);
  // Refused by the parser already; characters a reason phrase may not hold are %-escaped.
  assert.match(bad.reason, /^Bad Request \(bad Contact header: missing '%3E' in '%3Csip:peer@%5Bbad'\)$/);
  assert.equal(call.remoteTarget, "sip:peer@10.0.0.9:5060");

  peer.send(peerReinvite(call, 8, "<sip:peer@10.0.0.9:5070>"), alice.localAddress);
  clock.advance(20);
  assert.equal(peer.responses("INVITE").find((r) => getCSeq(r).seq === 8)?.status, 200);
  assert.equal(call.remoteTarget, "sip:peer@10.0.0.9:5070");

  const done = call.hangup();
  clock.advance(20);
  await done;
  assert.equal(peer.requests("BYE").length, 0);
  assert.deepEqual(moved.requests("BYE").map((b) => [b.uri, b.headers.get("CSeq")]), [[
    "sip:peer@10.0.0.9:5070",
    "2 BYE",
  ]]);
  assert.equal(call.dialog?.state, "terminated");
  await close();
});
