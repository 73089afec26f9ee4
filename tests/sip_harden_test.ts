/**
 * Nothing a datagram says can cost a SipUserAgent memory, time or a stuck
 * transaction — on the in-memory network with a VirtualClock:
 *
 * - a request that fails after its server transaction exists (a header that
 *   parsed but cannot make a dialog, an application handler that throws) gets a
 *   final response at once, and the tables empty again on the timers;
 * - every RFC 4475 torture message gets the RFC's answer from a user agent
 *   (405, 406, 415 with Accept, 416, 420 with Unsupported, 481, 400/505, a
 *   stateless 400 for `badbranch`), with a To tag;
 * - responses go to the packet's source (never a Via `maddr`), and no host name
 *   from the network ever reaches a socket's `send` (a spy records every
 *   destination); names in the application's own targets are refused unless
 *   `resolveNames`;
 * - an ICMP port unreachable (simulated) ends an INVITE at once;
 * - overload: 503 with Retry-After above the lag or transaction limits while
 *   OPTIONS and calls in progress are served; a bounded transaction table;
 * - an ended call lingers 64·T1, then nothing of it is kept;
 * - a merged INVITE (a copy of one already here, on another branch) gets 482, not a second call, for as long as the
 *   first call is kept;
 * - an ACK whose CSeq is not the INVITE's does not establish the call (the 200 goes on until the real ACK).
 *
 * No assertion depends on time or machine speed.
 */
import { codecs } from "./registry_util.ts";
import assert from "node:assert/strict";
import { type Clock, type Timer, VirtualClock } from "../core/clock.ts";
import { Logger, MemoryOutput } from "../core/log.ts";
import type { HostPort } from "../core/net/address.ts";
import type { DatagramSocket } from "../core/net/datagram.ts";
import { FilteredSocket } from "../core/net/filtered.ts";
import { MemoryNetwork } from "../core/net/memory.ts";
import {
  createAnswer,
  createOffer,
  createResponse,
  getCallId,
  getCSeq,
  type IncomingCall,
  negotiated,
  parseMessage,
  SdpError,
  serializeMessage,
  SipParseError,
  type SipRequest,
  type SipResponse,
  SipTransport,
  SipUserAgent,
  type SipUserAgentOptions,
  TransactionLayer,
} from "../plugins/sip/mod.ts";
import { loadRfc4475, rfc4475Names } from "./rfc4475.ts";
import { processOpenFiles } from "../core/open_files.ts";
import { repoPath, settleUntil } from "./util.ts";

const te = new TextEncoder();
const td = new TextDecoder();
const T1 = 500;

/** A socket that records the destination of everything sent through it. */
function spy(inner: DatagramSocket, dests: string[]): DatagramSocket {
  return new FilteredSocket(inner, (_d, to) => {
    dests.push(to.hostname);
    return false;
  });
}

interface Got {
  text: string;
  res?: SipResponse;
  to: number;
}

/**
 * A raw peer: sends text, records every datagram it gets (on each port it
 * binds). Retransmissions are byte-identical, so each distinct datagram is
 * parsed once.
 */
function rawPeer(net: MemoryNetwork, hostname: string, ports = [5060]) {
  const got: Got[] = [];
  const parsed = new Map<string, SipResponse | undefined>();
  const socks = ports.map((port) => {
    const s = net.bind(hostname, port);
    s.listen((d) => {
      const text = td.decode(d);
      if (!parsed.has(text)) {
        let res: SipResponse | undefined;
        try {
          const m = parseMessage(d);
          if (m.kind === "response") res = m;
        } catch { /* recorded as text */ }
        parsed.set(text, res);
      }
      got.push({ text, res: parsed.get(text), to: port });
    }, { maxSize: 65535 });
    return s;
  });
  return {
    got,
    send: (text: string | Uint8Array, to: HostPort, from = 0) =>
      socks[from].send(typeof text === "string" ? te.encode(text) : text, to),
    close: () => Promise.all(socks.map((s) => s.close())),
  };
}

function setup<C extends Clock = VirtualClock>(opts: Partial<SipUserAgentOptions> = {}, clockIn?: C, ip = "10.0.0.2") {
  const clock = (clockIn ?? new VirtualClock()) as C;
  const net = new MemoryNetwork({ clock, latencyMs: 1 });
  const out = new MemoryOutput();
  const log = new Logger({ level: "debug", outputs: [out] });
  const dests: string[] = [];
  const bob = new SipUserAgent({
    transport: spy(net.bind(ip, 5060), dests),
    clock,
    log,
    userName: "bob",
    ...opts,
  });
  return { clock, net, out, bob, dests };
}

const SDP = createOffer({ registry: codecs, address: "10.0.0.1", port: 40000, sessionId: "7" });

function invite(i: number, o: { from?: string; contact?: string; extra?: string[]; callId?: string } = {}): string {
  const callId = o.callId ?? `flood-${i}`;
  return [
    "INVITE sip:bob@10.0.0.2 SIP/2.0",
    `Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK-${callId};rport`,
    "Max-Forwards: 70",
    `From: ${o.from ?? "<sip:alice@10.0.0.1>"};tag=f${i}`,
    "To: <sip:bob@10.0.0.2>",
    `Call-ID: ${callId}`,
    "CSeq: 1 INVITE",
    `Contact: ${o.contact ?? "<sip:alice@10.0.0.1:5060>"}`,
    ...(o.extra ?? []),
    "Content-Type: application/sdp",
    `Content-Length: ${te.encode(SDP).length}`,
    "",
    SDP,
  ].join("\r\n");
}

/** Final (≥ 200) responses received, by Call-ID: the statuses seen (retransmissions included). */
function finals(got: Got[]): Map<string, Set<string>> {
  const m = new Map<string, Set<string>>();
  for (const g of got) {
    if (!g.res || g.res.status < 200) continue;
    const id = getCallId(g.res);
    if (!m.has(id)) m.set(id, new Set());
    m.get(id)!.add(`${g.res.status} ${g.res.reason}`);
  }
  return m;
}

// ------------------------------------------------------------------ 1. failures after the transaction exists

Deno.test("10 000 INVITEs that fail after their transaction exists: each gets one final answer; nothing is kept after Timer H", async () => {
  const { clock, net, bob } = setup({ overload: false });
  const peer = rawPeer(net, "10.0.0.1");
  let offered = 0;
  bob.onInvite((call) => {
    offered++;
    if (call.callId.endsWith("-ring")) call.ringing();
    throw new Error("handler bug");
  });
  // Five ways to fail once the INVITE has its server transaction.
  const kinds: { make: (i: number) => string; answer: RegExp }[] = [
    // From parses (any URI scheme is valid there) but cannot serve in a dialog.
    { make: (i) => invite(i, { from: "<tel:+15551234>" }), answer: /^400 Bad Request \(bad From header: .*tel/ },
    // A Contact that is not a SIP URI: checkRequestSemantics.
    { make: (i) => invite(i, { contact: "<name:John_Smith>" }), answer: /^400 Bad Request \(Contact of INVITE/ },
    // A Record-Route that parses but is not a SIP name-addr.
    { make: (i) => invite(i, { extra: ["Record-Route: <tel:+1555>"] }), answer: /^400 Bad Request \(bad Record-Route/ },
    // The application's handler throws before answering.
    { make: (i) => invite(i), answer: /^500 Server Internal Error$/ },
    // ... or after ringing.
    { make: (i) => invite(i, { callId: `flood-${i}-ring` }), answer: /^500 Server Internal Error$/ },
  ];
  const N = 10_000;
  for (let i = 0; i < N; i++) {
    await peer.send(kinds[i % kinds.length].make(i), bob.localAddress);
    if (i % 10 === 9) clock.advance(1); // 10 per ms: 10 000 within one virtual second
  }
  clock.advance(50);
  const answered = finals(peer.got);
  assert.equal(answered.size, N, "every INVITE got a final response");
  for (const [id, statuses] of answered) {
    const i = Number(/^flood-(\d+)/.exec(id)![1]);
    assert.equal(statuses.size, 1, `${id}: one final status (retransmitted), got ${[...statuses]}`);
    assert.match([...statuses][0], kinds[i % kinds.length].answer, id);
  }
  assert.equal(offered, (2 * N) / kinds.length, "only the well-formed INVITEs reach the application");
  // While the final responses wait for their ACKs (none comes), the transactions hold them: bounded by Timer H.
  assert.equal(bob.usage.serverTransactions, N);
  clock.advance(64 * T1 + 1000); // Timer H, and the 64·T1 linger of the calls that were created
  assert.deepEqual(
    { ...bob.usage, lagMs: 0 },
    {
      serverTransactions: 0,
      inviteServerTransactions: 0,
      clientTransactions: 0,
      acceptedTransactions: 0,
      calls: 0,
      liveCalls: 0,
      dialogs: 0,
      lagMs: 0,
      refused: 0,
    },
  );
  assert.equal(clock.pending, 0, "no timer left");
  await bob.close();
  await peer.close();
});

Deno.test("an unanswered INVITE given up after ringing, or ended by a BYE before its answer, leaves no transaction once 64·T1 passed", async () => {
  // Found by the fuzzer (sip-caller): the 64·T1 end of the INVITE after its CANCEL was the call's guard, which the
  // call's end cancels: after giveUp(), or a BYE from the callee before any final response, with a callee that
  // never sends its final response, the INVITE client transaction (no timer in Proceeding) was kept forever.
  for (const how of ["giveUp", "BYE"] as const) {
    const { clock, net, bob } = setup({ overload: false });
    const peer = rawPeer(net, "10.0.0.1");
    const call = bob.invite("sip:alice@10.0.0.1:5060", { sdp: SDP });
    clock.advance(5);
    const invite = parseMessage(te.encode(peer.got[0].text)) as SipRequest;
    const provisional = createResponse(invite, how === "BYE" ? 100 : 180, undefined, { toTag: "b1" });
    await peer.send(serializeMessage(provisional), bob.localAddress);
    clock.advance(5);
    if (how === "giveUp") call.giveUp("test");
    else {
      const from = invite.headers.get("From")!;
      await peer.send(
        [
          "BYE sip:bob@10.0.0.2:5060 SIP/2.0",
          "Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKearlybye;rport",
          "Max-Forwards: 70",
          "From: <sip:alice@10.0.0.1:5060>;tag=b1",
          `To: ${from}`,
          `Call-ID: ${invite.headers.get("Call-ID")}`,
          "CSeq: 1 BYE",
          "Content-Length: 0",
          "",
          "",
        ].join("\r\n"),
        bob.localAddress,
      );
    }
    clock.advance(5);
    assert.equal(call.state, "ended", how);
    assert.ok(peer.got.some((g) => g.text.startsWith("CANCEL ")), `${how}: the INVITE is cancelled`);
    // The callee answers neither the CANCEL nor the INVITE.
    clock.advance(64 * T1 + 1000);
    assert.equal(bob.usage.clientTransactions, 0, how);
    assert.equal(bob.usage.calls, 0, how);
    await bob.close();
    await peer.close();
  }
});

Deno.test("a 2xx without To tag fails the call (it was ignored, and the call stayed 'calling' forever, hangup included)", async () => {
  // Found by the fuzzer (sip-caller): after the ignored 2xx the INVITE transaction was in Accepted (no Timer B), and
  // without a provisional response hangup() only deferred its CANCEL: the call never ended.
  const { clock, net, bob } = setup({ overload: false });
  const peer = rawPeer(net, "10.0.0.1");
  const call = bob.invite("sip:alice@10.0.0.1:5060", { sdp: SDP });
  clock.advance(5);
  const invite = parseMessage(te.encode(peer.got[0].text)) as SipRequest;
  const ok = createResponse(invite, 200); // no toTag: the To is the INVITE's, without a tag
  await peer.send(serializeMessage(ok), bob.localAddress);
  clock.advance(5);
  assert.equal(call.state, "ended");
  assert.deepEqual(call.endInfo, { by: "error", reason: "unusable 200 response: no To tag", status: 200 });
  void call.hangup();
  clock.advance(64 * T1 + 1000);
  assert.equal(bob.usage.calls, 0);
  assert.equal(bob.usage.liveCalls, 0);
  assert.equal(bob.usage.clientTransactions, 0);
  await bob.close();
  await peer.close();
});

Deno.test("a From or To tag without a value: 400 saying so, and nothing kept (the 481's To did not parse: its transaction stayed forever)", async () => {
  // Found by the fuzzer (sip-dialog): `To: <...>;tag` was read as no tag; the 481 answering it got `;tag;tag=x`, and
  // at Timer H reading that To threw before the transaction left the table. 1 000 such INVITEs kept 1 000.
  const { clock, net, bob } = setup({ overload: false });
  const peer = rawPeer(net, "10.0.0.1");
  bob.onInvite((call) => call.reject(486));
  const N = 1000;
  for (let i = 0; i < N; i++) {
    const text = i % 2
      ? invite(i).replace("To: <sip:bob@10.0.0.2>", "To: <sip:bob@10.0.0.2>;tag")
      : invite(i).replace(`;tag=f${i}`, ";tag");
    await peer.send(text, bob.localAddress);
  }
  clock.advance(50);
  const statuses = new Set(peer.got.map((g) => g.text.split("\r\n")[0]));
  assert.deepEqual([...statuses].sort(), [
    "SIP/2.0 400 Bad Request (bad From header: tag parameter without a value)",
    "SIP/2.0 400 Bad Request (bad To header: tag parameter without a value)",
  ]);
  clock.advance(64 * T1 + 1000);
  assert.equal(bob.usage.serverTransactions, 0);
  assert.equal(bob.usage.inviteServerTransactions, 0);
  assert.equal(clock.pending, 0, "no timer left");
  await bob.close();
  await peer.close();
});

Deno.test("the transaction layer's safety net: a TU that throws on a new request → 400 with the reason (SipParseError) or 500; Timer J/H end it", async () => {
  const clock = new VirtualClock();
  const net = new MemoryNetwork({ clock, latencyMs: 1 });
  const out = new MemoryOutput();
  const transport = new SipTransport({ transport: net.bind("10.0.0.2", 5060) });
  const layer = new TransactionLayer({ sender: transport, clock, log: new Logger({ level: "debug", outputs: [out] }) });
  transport.onRequest = (r, from) => layer.receiveRequest(r, from);
  layer.onRequest = (req) => {
    if (req.headers.get("Call-ID")!.startsWith("parse")) throw new SipParseError("the Foo header is unusable");
    throw new Error("bug");
  };
  const peer = rawPeer(net, "10.0.0.1");
  const req = (method: string, callId: string) =>
    [
      `${method} sip:bob@10.0.0.2 SIP/2.0`,
      `Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK${callId};rport`,
      "From: <sip:alice@10.0.0.1>;tag=a",
      "To: <sip:bob@10.0.0.2>",
      `Call-ID: ${callId}`,
      `CSeq: 1 ${method}`,
      "Content-Length: 0",
      "",
      "",
    ].join("\r\n");
  for (const [m, id] of [["OPTIONS", "parse-o"], ["OPTIONS", "bug-o"], ["INVITE", "parse-i"], ["INVITE", "bug-i"]]) {
    await peer.send(req(m, id), transport.localAddress);
  }
  clock.advance(10);
  const f = finals(peer.got);
  assert.deepEqual([...f.get("parse-o")!], ["400 Bad Request (the Foo header is unusable)"]);
  assert.deepEqual([...f.get("bug-o")!], ["500 Server Internal Error"]);
  assert.deepEqual([...f.get("parse-i")!], ["400 Bad Request (the Foo header is unusable)"]);
  assert.deepEqual([...f.get("bug-i")!], ["500 Server Internal Error"]);
  // With a To tag.
  for (const g of peer.got) if (g.res && g.res.status >= 200) assert.match(g.res.headers.get("To")!, /;tag=/);
  assert.ok(out.lines.some((l) => l.includes("WARN") && l.includes("400 sent for OPTIONS from 10.0.0.1:5060")));
  assert.ok(out.lines.some((l) => l.includes("ERROR") && l.includes("500 sent for INVITE from 10.0.0.1:5060: bug")));
  assert.equal(layer.serverCount, 4);
  clock.advance(64 * T1 + 10); // Timer J (non-INVITE), Timer H (INVITE, no ACK)
  assert.equal(layer.serverCount, 0);
  assert.equal(clock.pending, 0);
  await transport.close();
  await peer.close();
});

Deno.test("a handler that never answers a non-INVITE request does not hold its transaction: 500 after 64·T1, then Timer J", async () => {
  const { clock, net, bob } = setup({ overload: false });
  const peer = rawPeer(net, "10.0.0.1");
  bob.onRegister(() => new Promise(() => {})); // never settles
  await peer.send(
    [
      "REGISTER sip:10.0.0.2 SIP/2.0",
      "Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKnever;rport",
      "From: <sip:alice@10.0.0.2>;tag=r1",
      "To: <sip:alice@10.0.0.2>",
      "Call-ID: never-1",
      "CSeq: 1 REGISTER",
      "Contact: <sip:alice@10.0.0.1:5060>",
      "Content-Length: 0",
      "",
      "",
    ].join("\r\n"),
    bob.localAddress,
  );
  clock.advance(64 * T1 - 10);
  assert.equal(finals(peer.got).size, 0);
  assert.equal(bob.usage.serverTransactions, 1);
  clock.advance(20);
  assert.deepEqual([...finals(peer.got).get("never-1")!], ["500 Server Internal Error (no answer in time)"]);
  clock.advance(64 * T1);
  assert.equal(bob.usage.serverTransactions, 0);
  await bob.close();
  await peer.close();
});

/** Builds requests from alice (10.0.0.1, tag f1) to bob in the dialog `callId` with bob's tag `toTag`. */
function inDialogFrom(callId: string, toTag: string): (method: string, cseq: number, branch: string) => string {
  return (method, cseq, branch) =>
    [
      `${method} sip:bob@10.0.0.2:5060 SIP/2.0`,
      `Via: SIP/2.0/UDP 10.0.0.1:5060;branch=${branch};rport`,
      "Max-Forwards: 70",
      "From: <sip:alice@10.0.0.1>;tag=f1",
      `To: <sip:bob@10.0.0.2>;tag=${toTag}`,
      `Call-ID: ${callId}`,
      `CSeq: ${cseq} ${method}`,
      "Content-Length: 0",
      "",
      "",
    ].join("\r\n");
}

Deno.test("a BYE in the early dialog: 200, the INVITE gets 487, and both transactions end on their timers (RFC 3261 §15.1.2)", async () => {
  const { clock, net, bob } = setup({ overload: false });
  const peer = rawPeer(net, "10.0.0.1");
  bob.onInvite((c) => c.ringing()); // rings, never answers
  await peer.send(invite(1, { callId: "early" }), bob.localAddress);
  clock.advance(10);
  const ringing = peer.got.find((g) => g.res?.status === 180)!.res!;
  const toTag = /tag=([^;\s]+)/.exec(ringing.headers.get("To")!)![1];
  const inDialog = inDialogFrom("early", toTag);
  await peer.send(inDialog("BYE", 2, "z9hG4bKearlybye"), bob.localAddress);
  clock.advance(10);
  assert.deepEqual([...finals(peer.got).get("early")!], ["200 OK", "487 Request Terminated"]);
  assert.equal(bob.usage.liveCalls, 0);
  await peer.send(inDialog("ACK", 1, "z9hG4bK-early"), bob.localAddress); // the ACK for the 487
  clock.advance(64 * T1 + 1000);
  assert.equal(bob.usage.serverTransactions, 0, "no transaction left");
  assert.equal(bob.usage.inviteServerTransactions, 0);
  await bob.close();
  await peer.close();
});

// ------------------------------------------------------------------ 7. linger

Deno.test("an ended call stays findable for 64·T1 (late retransmissions answered), then nothing of it is kept", async () => {
  const { clock, net, bob } = setup({ overload: false });
  const peer = rawPeer(net, "10.0.0.1");
  let incoming: IncomingCall | undefined;
  bob.onInvite((c) => {
    incoming = c;
    c.accept(createAnswer(c.offer!, { registry: codecs, address: "10.0.0.2", port: 41000 }));
  });
  await peer.send(invite(1, { callId: "linger" }), bob.localAddress);
  clock.advance(10);
  const ok = peer.got.find((g) => g.res?.status === 200)!.res!;
  const toTag = /tag=([^;\s]+)/.exec(ok.headers.get("To")!)![1];
  const inDialog = inDialogFrom("linger", toTag);
  await peer.send(inDialog("ACK", 1, "z9hG4bKack1"), bob.localAddress);
  clock.advance(10);
  assert.equal(incoming!.state, "established");
  await peer.send(inDialog("BYE", 2, "z9hG4bKbye1"), bob.localAddress);
  clock.advance(10);
  assert.equal(incoming!.state, "ended");
  assert.equal(bob.usage.liveCalls, 0);
  assert.equal(bob.usage.calls, 1, "lingering");
  // The BYE retransmitted (same branch): its transaction answers 200 again.
  await peer.send(inDialog("BYE", 2, "z9hG4bKbye1"), bob.localAddress);
  clock.advance(10);
  const answers = (seq: number, method: string) =>
    peer.got.filter((g) => g.res && getCSeq(g.res).seq === seq && getCSeq(g.res).method === method)
      .map((g) => g.res!.status);
  assert.deepEqual(answers(2, "BYE"), [200, 200]);
  // Late, a copy of that BYE on a new branch (a new transaction) still finds the call: 200 as well. A new request
  // in the dialog that has ended, a second BYE or a re-INVITE, gets 481 (RFC 3261 §12.2.2).
  clock.advance(64 * T1 - 1000);
  await peer.send(inDialog("BYE", 2, "z9hG4bKbye2"), bob.localAddress);
  await peer.send(inDialog("BYE", 3, "z9hG4bKbye3"), bob.localAddress);
  await peer.send(inDialog("INVITE", 4, "z9hG4bKreinv"), bob.localAddress);
  clock.advance(10);
  assert.deepEqual(answers(2, "BYE"), [200, 200, 200]);
  assert.deepEqual(answers(3, "BYE"), [481]);
  assert.deepEqual(answers(4, "INVITE"), [481]);
  clock.advance(1000);
  assert.equal(bob.usage.calls, 0, "forgotten after 64·T1");
  clock.advance(64 * T1);
  assert.equal(bob.usage.serverTransactions, 0);
  assert.equal(clock.pending, 0);
  await bob.close();
  await peer.close();
});

// ------------------------------------------------------------------ 8. merged requests, ACK of the 2xx

/** The To tag of a response. */
function toTagOf(res: SipResponse): string {
  return /tag=([^;\s]+)/.exec(res.headers.get("To")!)![1];
}

Deno.test("a merged INVITE (same Call-ID, From tag and CSeq, another branch) gets 482 while the first rings, once answered and while the call lingers, then is forgotten (RFC 3261 §8.2.2.2)", async () => {
  const { clock, net, bob } = setup({ overload: false });
  const peer = rawPeer(net, "10.0.0.1");
  const offered: IncomingCall[] = [];
  bob.onInvite((c) => {
    offered.push(c);
    c.ringing();
  });
  const first = invite(1, { callId: "fork" });
  const copy = (branch: string) => first.replace("branch=z9hG4bK-fork;", `branch=${branch};`);
  const statuses = (branch: string) =>
    peer.got.filter((g) => g.res && g.res.status > 100 && g.res.headers.get("Via")!.includes(`branch=${branch};`))
      .map((g) => g.res!.status);
  await peer.send(first, bob.localAddress);
  clock.advance(10);
  assert.deepEqual(statuses("z9hG4bK-fork"), [180]);
  // The same INVITE forked upstream arrives again on another branch: 482, no second call.
  await peer.send(copy("z9hG4bK-fork-2"), bob.localAddress);
  clock.advance(10);
  assert.deepEqual(statuses("z9hG4bK-fork-2"), [482]);
  const loop = peer.got.find((g) => g.res?.status === 482)!.res!;
  assert.notEqual(toTagOf(loop), offered[0].localTag, "the 482 has a To tag of its own");
  assert.equal(offered.length, 1);
  assert.equal(bob.usage.liveCalls, 1);
  // Its retransmission (same branch) is answered by its transaction: 482 again.
  await peer.send(copy("z9hG4bK-fork-2"), bob.localAddress);
  clock.advance(10);
  assert.deepEqual(statuses("z9hG4bK-fork-2"), [482, 482]);
  // Answered and acknowledged: a copy is still merged.
  offered[0].accept(createAnswer(offered[0].offer!, { registry: codecs, address: "10.0.0.2", port: 41000 }));
  clock.advance(10);
  const inDialog = inDialogFrom("fork", offered[0].localTag);
  await peer.send(inDialog("ACK", 1, "z9hG4bKforkack"), bob.localAddress);
  clock.advance(10);
  assert.equal(offered[0].state, "established");
  await peer.send(copy("z9hG4bK-fork-3"), bob.localAddress);
  clock.advance(10);
  assert.deepEqual(statuses("z9hG4bK-fork-3"), [482]);
  assert.equal(offered.length, 1);
  assert.equal(bob.usage.liveCalls, 1);
  // Ended, the call lingers 64·T1: a copy then is merged too; once the call is forgotten, so is its INVITE.
  await peer.send(inDialog("BYE", 2, "z9hG4bKforkbye"), bob.localAddress);
  clock.advance(10);
  assert.equal(offered[0].state, "ended");
  await peer.send(copy("z9hG4bK-fork-4"), bob.localAddress);
  clock.advance(10);
  assert.deepEqual(statuses("z9hG4bK-fork-4"), [482]);
  clock.advance(64 * T1);
  assert.equal(bob.usage.calls, 0, "the call is forgotten");
  await peer.send(copy("z9hG4bK-fork-5"), bob.localAddress);
  clock.advance(10);
  assert.equal(offered.length, 2, "nothing of the first INVITE is kept: this one is a new call");
  assert.deepEqual(statuses("z9hG4bK-fork-5"), [180]);
  await bob.close();
  await peer.close();
});

Deno.test("not merged: the INVITE sent again with the next CSeq after a 407, and one with another From tag, are new calls", async () => {
  const { clock, net, bob } = setup({ overload: false });
  const peer = rawPeer(net, "10.0.0.1");
  const offered: IncomingCall[] = [];
  bob.onInvite((c) => {
    offered.push(c);
    if (offered.length === 1) c.reject(407, undefined, [["Proxy-Authenticate", 'Digest realm="x", nonce="n"']]);
    else c.ringing();
  });
  const first = invite(1, { callId: "auth" });
  await peer.send(first, bob.localAddress);
  clock.advance(10);
  const again = first.replace("branch=z9hG4bK-auth;", "branch=z9hG4bK-auth-2;").replace(
    "CSeq: 1 INVITE",
    "CSeq: 2 INVITE",
  );
  await peer.send(again, bob.localAddress);
  const other = first.replace("branch=z9hG4bK-auth;", "branch=z9hG4bK-auth-3;").replace(";tag=f1", ";tag=f9");
  await peer.send(other, bob.localAddress);
  clock.advance(10);
  assert.equal(offered.length, 3);
  assert.deepEqual(peer.got.filter((g) => g.res?.status === 482), []);
  await bob.close();
  await peer.close();
});

Deno.test("an ACK whose CSeq is not the INVITE's is not the ACK of the 200: the 200 is retransmitted until the real ACK, or the call times out after 64·T1 with a BYE (RFC 3261 §13.2.2.4, §17.1.1.3)", async () => {
  const { clock, net, bob } = setup({ overload: false });
  const peer = rawPeer(net, "10.0.0.1");
  const calls: IncomingCall[] = [];
  bob.onInvite((c) => {
    calls.push(c);
    c.accept(createAnswer(c.offer!, { registry: codecs, address: "10.0.0.2", port: 41000 }));
  });
  const oks = (callId: string) => peer.got.filter((g) => g.res?.status === 200 && getCallId(g.res) === callId).length;
  // 1. A wrong ACK, then the right one.
  await peer.send(invite(1, { callId: "wrong-ack" }), bob.localAddress);
  clock.advance(10);
  assert.equal(calls[0].state, "accepting");
  const inDialog = inDialogFrom("wrong-ack", calls[0].localTag);
  await peer.send(inDialog("ACK", 2, "z9hG4bKwrongack1"), bob.localAddress);
  clock.advance(10);
  assert.equal(calls[0].state, "accepting", "not established by an ACK of another CSeq");
  const before = oks("wrong-ack");
  clock.advance(4 * T1);
  assert(oks("wrong-ack") > before, "the 200 is still retransmitted");
  await peer.send(inDialog("ACK", 1, "z9hG4bKrightack"), bob.localAddress);
  clock.advance(10);
  assert.equal(calls[0].state, "established");
  const acked = oks("wrong-ack");
  clock.advance(8 * T1);
  assert.equal(oks("wrong-ack"), acked, "no retransmission after the real ACK");
  // 2. Only wrong ACKs: no ACK for the 200 within 64·T1: the call ends by timeout and gets a BYE.
  await peer.send(invite(2, { callId: "only-wrong" }), bob.localAddress);
  clock.advance(10);
  const wrong = inDialogFrom("only-wrong", calls[1].localTag);
  // From tag f1 in inDialogFrom, f2 in the INVITE: rewrite it so the ACK matches the dialog but for its CSeq.
  await peer.send(wrong("ACK", 7, "z9hG4bKonlywrong").replace(";tag=f1", ";tag=f2"), bob.localAddress);
  clock.advance(10);
  assert.equal(calls[1].state, "accepting");
  clock.advance(64 * T1);
  assert.equal(calls[1].state, "ended");
  assert.equal(calls[1].endInfo?.by, "timeout");
  assert(peer.got.some((g) => g.text.startsWith("BYE ") && g.text.includes("Call-ID: only-wrong")), "a BYE is sent");
  await bob.close();
  await peer.close();
});

// ------------------------------------------------------------------ 2. RFC 4475 at a user agent

/**
 * What a user agent answers to each RFC 4475 message: its status (`-` for no
 * answer: responses, and requests that cannot be answered), without a
 * registrar handler and with one. INVITEs that pass every check reach the
 * application, which rejects them with 486 here.
 */
const RFC4475_ANSWERS: Record<string, [plain: string, registrar: string]> = {
  // 3.1.1 valid messages
  wsinv: ["481", "481"], // a To tag that matches no dialog
  intmeth: ["501", "501"], // a method SIP does not define: 501 Not Implemented
  esc01: ["486", "486"],
  escnull: ["405", "200"],
  esc02: ["501", "501"], // RE%47IST%45R is not REGISTER (nor any method SIP defines)
  lwsdisp: ["200", "200"],
  longreq: ["486", "486"],
  dblreq: ["405", "200"], // the INVITE after Content-Length is ignored
  semiuri: ["200", "200"],
  transports: ["200", "200"],
  mpart01: ["405", "405"], // MESSAGE
  unreason: ["-", "-"],
  noreason: ["-", "-"],
  // 3.1.2 invalid messages: the transport answers what it can
  badinv01: ["400", "400"],
  clerr: ["400", "400"],
  ncl: ["400", "400"],
  scalar02: ["400", "400"],
  scalarlg: ["-", "-"], // a response
  quotbal: ["400", "400"],
  ltgtruri: ["400", "400"],
  lwsruri: ["400", "400"],
  lwsstart: ["400", "400"],
  trws: ["400", "400"],
  escruri: ["400", "400"],
  baddate: ["400", "400"],
  regbadct: ["400", "400"],
  badaspec: ["400", "400"],
  baddn: ["400", "400"],
  badvers: ["505", "505"],
  mismatch01: ["400", "400"],
  mismatch02: ["400", "400"],
  bigcode: ["-", "-"], // a response
  // 3.2 transaction layer
  badbranch: ["400", "400"], // statelessly
  // 3.3 application layer
  insuf: ["400", "400"],
  unkscm: ["416", "416"],
  novelsc: ["416", "416"],
  unksm2: ["405", "400"], // a registrar refuses a To that is not a SIP URI (and a Contact name: URI)
  bext01: ["420", "420"],
  invut: ["415", "415"],
  regaut01: ["405", "200"],
  multi01: ["400", "400"],
  mcl01: ["400", "400"],
  bcast: ["-", "-"], // a response with two Vias: dropped
  zeromf: ["200", "200"], // Max-Forwards 0 is processed by a UAS
  cparam01: ["405", "200"],
  cparam02: ["405", "200"],
  regescrt: ["405", "200"],
  sdp01: ["406", "406"],
  // 3.4 backward compatibility
  inv2543: ["486", "486"],
};

for (const withRegistrar of [false, true]) {
  Deno.test(`RFC 4475 at a user agent${withRegistrar ? " with a registrar handler" : ""}: each message gets the RFC's answer, with a To tag`, async () => {
    assert.deepEqual(Object.keys(RFC4475_ANSWERS).sort(), rfc4475Names());
    for (const [name, answers] of Object.entries(RFC4475_ANSWERS)) {
      // A user agent per message: some share a branch and sent-by (unkscm, novelsc), i.e. one transaction.
      const { clock, net, bob, dests } = setup({ overload: false });
      bob.onInvite((c) => c.reject(486));
      if (withRegistrar) {
        bob.onRegister((r) => ({ status: 200, contacts: r.contacts.map((c) => ({ uri: c.uri, expires: 60 })) }));
      }
      // Their Vias name host names (and ports 5050, 5070): answered at the source IP, on the Via's port or rport.
      const peer = rawPeer(net, "10.0.0.1", [5060, 5050, 5070]);
      const expected = answers[withRegistrar ? 1 : 0];
      await peer.send(loadRfc4475(name), bob.localAddress);
      clock.advance(20);
      const got = peer.got.filter((g) => g.res === undefined || g.res.status >= 200);
      if (expected === "-") {
        assert.equal(got.length, 0, `${name}: no answer, got ${got.map((g) => g.text.split("\r\n")[0])}`);
      } else {
        assert.equal(got.length, 1, `${name}: one final answer, got ${got.map((g) => g.text.split("\r\n")[0])}`);
        const status = /^SIP\/2\.0 (\d{3}) /.exec(got[0].text)?.[1];
        assert.equal(status, expected, `${name}: ${got[0].text.split("\r\n")[0]}`);
        const res = got[0].res;
        if (res) assert.match(res.headers.get("To") ?? "", /;\s*tag\s*=/i, `${name}: To tag`);
        if (name === "bext01") {
          assert.equal(res!.headers.getAll("Unsupported").join(", "), "nothingSupportsThis, nothingSupportsThisEither");
        }
        if (name === "invut") assert.equal(res!.headers.get("Accept"), "application/sdp");
        if (name === "intmeth" || name === "esc02") {
          assert.match(res!.headers.getAll("Allow").join(", "), /^INVITE, ACK, BYE/);
        }
        if (name === "badbranch") {
          assert.equal(res!.reason, "Bad Request (Via branch is the magic cookie z9hG4bK without an identifier)");
          assert.equal(bob.usage.serverTransactions, 0, "badbranch: answered without a transaction");
        }
        // mpart01's Via says 127.0.0.1:5070;rport: the source IP and port (RFC 3581), not the Via's.
        if (name === "mpart01") assert.equal(got[0].to, 5060, "mpart01: to the source port");
        if (name === "quotbal") assert.equal(got[0].to, 5050, "quotbal: no rport, to its Via port");
      }
      // Every Via there names a host name or another IP: nothing was sent anywhere but to the peer's IP.
      assert.ok(dests.every((d) => d === "10.0.0.1"), `${name}: sent to ${[...new Set(dests)]}`);
      clock.advance(64 * T1 + 1000);
      assert.equal(bob.usage.serverTransactions, 0, name);
      assert.equal(bob.usage.calls, 0, name);
      await bob.close();
      await peer.close();
    }
  });
}

// ------------------------------------------------------------------ 3. where responses and requests go; no names

function options(branch: string, via: string, callId = branch): string {
  return [
    "OPTIONS sip:bob@10.0.0.2 SIP/2.0",
    `Via: ${via.replace("BRANCH", branch)}`,
    "Max-Forwards: 70",
    "From: <sip:alice@10.0.0.1>;tag=o1",
    "To: <sip:bob@10.0.0.2>",
    `Call-ID: ${callId}`,
    "CSeq: 1 OPTIONS",
    "Content-Length: 0",
    "",
    "",
  ].join("\r\n");
}

Deno.test("responses go to the packet's source (RFC 3261 18.2.2, RFC 3581), never to a Via maddr, a spoofed received or a name", async () => {
  const { clock, net, bob, dests } = setup({ overload: false });
  const peer = rawPeer(net, "10.0.0.1", [5060, 5070]);
  const third = rawPeer(net, "10.0.0.77", [5060, 5070]); // the third party a Via tries to aim at
  const cases: [via: string, port: number][] = [
    // maddr (an IP) and rport: the source IP and port.
    ["SIP/2.0/UDP 10.0.0.1:5060;maddr=10.0.0.77;branch=z9hG4bKBRANCH;rport", 5060],
    // maddr and sent-by are names, no rport: the source IP at the sent-by port.
    ["SIP/2.0/UDP victim.example.net:5070;maddr=other.example.org;branch=z9hG4bKBRANCH", 5070],
    // A received the sender wrote itself, with its own IP as sent-by: overwritten with the source.
    ["SIP/2.0/UDP 10.0.0.1:5070;received=10.0.0.77;branch=z9hG4bKBRANCH", 5070],
    // An rport value the sender made up: the real source port.
    ["SIP/2.0/UDP 10.0.0.1:5070;rport=7777;branch=z9hG4bKBRANCH", 5060],
  ];
  for (const [i, [via]] of cases.entries()) await peer.send(options(`c${i}`, via), bob.localAddress);
  clock.advance(10);
  assert.equal(third.got.length, 0, "nothing reached the third party");
  for (const [i, [, port]] of cases.entries()) {
    const g = peer.got.filter((x) => x.res && getCallId(x.res) === `c${i}`);
    assert.deepEqual(g.map((x) => [x.res!.status, x.to]), [[200, port]], `case ${i}`);
    assert.match(g[0].res!.headers.get("Via")!, /;received=10\.0\.0\.1/, `case ${i}: received stamped`);
  }
  assert.deepEqual([...new Set(dests)], ["10.0.0.1"]);
  await bob.close();
  await peer.close();
  await third.close();
});

Deno.test("in-dialog requests: a host name in Contact or Record-Route is never resolved — they go to the address the peer's messages came from", async () => {
  // Incoming call: inv2543 (RFC 2543 INVITE, Via host name, Record-Route with maddr=ss1.example.com).
  {
    const { clock, net, bob, dests } = setup({ overload: false });
    const peer = rawPeer(net, "10.0.0.1");
    let call: IncomingCall | undefined;
    bob.onInvite((c) => {
      call = c;
      c.accept(createAnswer(c.offer!, { registry: codecs, address: "10.0.0.2", port: 41000 }));
    });
    const inv = loadRfc4475("inv2543");
    await peer.send(inv, bob.localAddress);
    clock.advance(10);
    const ok = peer.got.find((g) => g.res?.status === 200)!.res!;
    const ack = [
      "ACK sip:UserB@example.com SIP/2.0",
      "Via: SIP/2.0/UDP iftgw.example.com;branch=z9hG4bKack2543",
      "From: <sip:+13035551111@ift.client.example.net;user=phone>",
      `To: ${ok.headers.get("To")}`,
      "Call-ID: inv2543.1717@ift.client.example.com",
      "CSeq: 56 ACK",
      "Content-Length: 0",
      "",
      "",
    ].join("\r\n");
    await peer.send(ack, bob.localAddress);
    clock.advance(10);
    assert.equal(call!.state, "established");
    const done = call!.hangup();
    clock.advance(10);
    const bye = peer.got.map((g) => g.text).find((t) => t.startsWith("BYE "));
    assert.ok(bye, "the BYE reached the peer's address");
    // Strict routing (no lr): the route is the Request-URI; its maddr is a name, so the source address is used.
    assert.match(bye!, /^BYE sip:UserB@example\.com;maddr=ss1\.example\.com SIP\/2\.0\r\n/);
    peer.got.length = 0;
    clock.advance(64 * T1);
    await done;
    assert.deepEqual([...new Set(dests)], ["10.0.0.1"]);
    await bob.close();
    await peer.close();
  }
  // Outgoing call: the 2xx's Contact and Record-Route are names; the ACK and BYE go to where the 2xx came from.
  for (const recordRoute of [undefined, "<sip:proxy.example.net;lr>"]) {
    const { clock, net, bob: alice, dests } = setup({ overload: false });
    const carol = rawPeer(net, "10.0.0.3");
    const call = alice.invite("sip:carol@10.0.0.3", { sdp: SDP });
    clock.advance(5);
    const inviteText = carol.got.find((g) => g.text.startsWith("INVITE "))!.text;
    const invite = parseMessage(inviteText);
    const headers: [string, string][] = [["Contact", "<sip:carol@carol.example.com:5062>"]];
    if (recordRoute) headers.push(["Record-Route", recordRoute]);
    const ok = createResponse(invite as SipRequest, 200, undefined, {
      toTag: "carol1",
      headers: [...headers, ["Content-Type", "application/sdp"]],
      body: createAnswer(SDP, { registry: codecs, address: "10.0.0.3", port: 42000 }),
    });
    await carol.send(serializeMessage(ok), alice.localAddress);
    clock.advance(5);
    assert.equal(call.state, "established");
    const done = call.hangup();
    clock.advance(5);
    const texts = carol.got.map((g) => g.text);
    const ack = texts.find((t) => t.startsWith("ACK "));
    const bye = texts.find((t) => t.startsWith("BYE "));
    assert.ok(ack && bye, `ACK and BYE reached the 2xx's source (${recordRoute ?? "no Record-Route"})`);
    assert.match(ack!, /^ACK sip:carol@carol\.example\.com:5062 SIP\/2\.0\r\n/);
    if (recordRoute) assert.match(bye!, /\r\nRoute: <sip:proxy\.example\.net;lr>\r\n/);
    await carol.send(serializeMessage(createResponse(parseMessage(bye!) as SipRequest, 200)), alice.localAddress);
    clock.advance(5);
    await done;
    assert.deepEqual([...new Set(dests)], ["10.0.0.3"]);
    await alice.close();
    await carol.close();
  }
});

Deno.test("in-dialog requests: a next hop that is never a destination (0.0.0.0, multicast, broadcast) or loopback named by a remote peer is not used — the peer's source is", async () => {
  const hops = [
    "<sip:carol@0.0.0.0:5070>",
    "<sip:carol@[::]:5070>",
    "<sip:carol@224.0.0.1:5070>",
    "<sip:carol@255.255.255.255:5070>",
    "<sip:carol@127.0.0.1:5070>",
    "<sip:carol@[::ffff:127.0.0.1]:5070>",
    "<sip:carol@carol.example.com;maddr=0.0.0.0>",
  ];
  for (const contact of hops) {
    for (const recordRoute of [false, true]) {
      const { clock, net, bob: alice, dests } = setup({ overload: false });
      const carol = rawPeer(net, "10.0.0.3");
      const call = alice.invite("sip:carol@10.0.0.3", { sdp: SDP });
      clock.advance(5);
      const invite = parseMessage(carol.got.find((g) => g.text.startsWith("INVITE "))!.text) as SipRequest;
      const route = contact.replace(/^<sip:carol@/, "<sip:").replace(/>$/, ";lr>");
      const headers: [string, string][] = recordRoute
        ? [["Contact", "<sip:carol@10.0.0.3>"], ["Record-Route", route]]
        : [["Contact", contact]];
      const ok = createResponse(invite, 200, undefined, {
        toTag: "carol1",
        headers: [...headers, ["Content-Type", "application/sdp"]],
        body: createAnswer(SDP, { registry: codecs, address: "10.0.0.3", port: 42000 }),
      });
      await carol.send(serializeMessage(ok), alice.localAddress);
      clock.advance(5);
      assert.equal(call.state, "established");
      void call.hangup();
      clock.advance(5);
      const what = recordRoute ? `Record-Route ${route}` : `Contact ${contact}`;
      const methods = carol.got.map((g) => g.text.split(" ")[0]);
      assert.ok(methods.includes("ACK") && methods.includes("BYE"), `${what}: ACK and BYE reached the 2xx's source`);
      assert.deepEqual([...new Set(dests)], ["10.0.0.3"], what);
      await alice.close();
      await carol.close();
    }
  }
  // A loopback next hop is used when the peer is on loopback too (everything on one host).
  const { clock, net, bob: alice, dests } = setup({ overload: false }, new VirtualClock(), "127.0.0.1");
  const carol = rawPeer(net, "127.0.0.1", [5062, 5070]);
  const call = alice.invite("sip:carol@127.0.0.1:5062", { sdp: SDP });
  clock.advance(5);
  const invite = parseMessage(carol.got.find((g) => g.text.startsWith("INVITE "))!.text) as SipRequest;
  const ok = createResponse(invite, 200, undefined, {
    toTag: "carol1",
    headers: [["Contact", "<sip:carol@127.0.0.1:5070>"], ["Content-Type", "application/sdp"]],
    body: createAnswer(SDP, { registry: codecs, address: "127.0.0.1", port: 42000 }),
  });
  await carol.send(serializeMessage(ok), alice.localAddress);
  clock.advance(5);
  assert.equal(call.state, "established");
  void call.hangup();
  clock.advance(5);
  assert.deepEqual(carol.got.filter((g) => g.to === 5070).map((g) => g.text.split(" ")[0]).sort(), ["ACK", "BYE"]);
  assert.ok(dests.every((d) => d === "127.0.0.1"));
  await alice.close();
  await carol.close();
});

Deno.test("the application's own targets: a host name is refused with a clear error unless resolveNames; SDP names are refused (488)", async () => {
  const { clock, net, bob: alice, dests } = setup({ overload: false });
  assert.throws(
    () => alice.invite("sip:bob@example.com", { sdp: SDP }),
    /sip:bob@example\.com: its next hop example\.com is a host name, and host names are not resolved: use an IP address \(or allow resolution: .*resolve_names: true\)/,
  );
  assert.throws(() => alice.options("sip:bob@example.com:5070"), /next hop example\.com is a host name/);
  assert.throws(
    () => alice.invite("sip:bob@10.0.0.9", { sdp: SDP, proxy: { hostname: "proxy.example.com", port: 5060 } }),
    /destination proxy\.example\.com is a host name/,
  );
  // A maddr that is an IP decides the next hop, even with a name as host.
  const ghost = rawPeer(net, "10.0.0.9");
  alice.invite("sip:bob@bob.example.com;maddr=10.0.0.9", { sdp: SDP });
  clock.advance(5);
  assert.equal(ghost.got.filter((g) => g.text.startsWith("INVITE sip:bob@bob.example.com;maddr=10.0.0.9 ")).length, 1);
  assert.ok(dests.every((d) => d === "10.0.0.9"));
  await alice.close();
  await ghost.close();

  // With resolveNames the name is handed to the socket (the system resolves it; here the memory network has no such host).
  const named = setup({ overload: false, resolveNames: true });
  const call = named.bob.invite("sip:bob@example.com", { sdp: SDP });
  named.clock.advance(5);
  assert.deepEqual(named.dests, ["example.com"]);
  assert.equal(call.endInfo?.reason, "example.com:5060 unreachable (ICMP port unreachable)");
  await named.bob.close();

  // An SDP whose connection address is a name: never used (RTP would have to resolve it).
  const named2 = SDP.replace("c=IN IP4 10.0.0.1", "c=IN IP4 media.example.com");
  assert.throws(
    () => negotiated(named2, { registry: codecs }),
    (e) => e instanceof SdpError && e.status === 488 && /'media\.example\.com' is not an IP address/.test(e.message),
  );
});

Deno.test("the transport refuses to send to a host name (a bug can never make it resolve one)", async () => {
  const clock = new VirtualClock();
  const net = new MemoryNetwork({ clock });
  const dests: string[] = [];
  const t = new SipTransport({ transport: spy(net.bind("10.0.0.2", 5060), dests) });
  const req = parseMessage(options("x1", "SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKBRANCH")) as SipRequest;
  await assert.rejects(
    t.sendRequest(req, { hostname: "evil.example.com", port: 5060 }),
    /not sending to evil\.example\.com:5060: evil\.example\.com is a host name, and host names are not resolved/,
  );
  assert.equal(t.stats.sendErrors, 1);
  assert.deepEqual(dests, []);
  await t.close();
});

// ------------------------------------------------------------------ 4. calls that never reach anyone

Deno.test("an ICMP port unreachable for the INVITE's destination ends the call at once (RFC 3261 8.1.3.1), no Timer B wait", async () => {
  const { clock, bob: alice, dests } = setup({ overload: false });
  const call = alice.invite("sip:bob@10.0.0.99:5998", { sdp: SDP }); // nothing bound there
  clock.advance(10); // the INVITE, then the (simulated) ICMP back: 2 ms
  assert.deepEqual(call.endInfo, {
    by: "error",
    reason: "10.0.0.99:5998 unreachable (ICMP port unreachable)",
    status: 503,
  });
  assert.equal(dests.length, 1, "one INVITE, no retransmission");
  assert.equal(alice.usage.clientTransactions, 0);
  await assert.rejects(call.established, /unreachable \(ICMP port unreachable\)/);
  await alice.close();
});

/**
 * Runs a pipeline file on a memory network and a virtual clock until it ends; `elapsed` is the virtual time from the
 * moment its SIP control listened (its file loaded, its templates checked, its socket bound: real work, which the
 * clock does not wait for) to its end.
 */
async function runOnMemory(file: string, set: string[], prepare?: (net: MemoryNetwork) => void) {
  const { createRegistry, runPipelineFile } = await import("../mod.ts");
  const clock = new VirtualClock();
  const net = new MemoryNetwork({ clock, latencyMs: 1 });
  prepare?.(net);
  const out = new MemoryOutput();
  let done = false;
  const run = runPipelineFile(repoPath(file), {
    registry: createRegistry(),
    set,
    clock,
    net,
    log: new Logger({ level: "info", outputs: [out] }),
  }).finally(() => done = true);
  await settleUntil(clock, () => done || out.lines.some((l) => l.includes("[SIP] listening on udp")), "listening");
  const t0 = clock.now();
  for (let i = 0; i < 2000 && !done; i++) await clock.advanceAsync(100);
  assert.ok(done, "the run ended");
  return { result: await run, out, clock, elapsed: clock.now() - t0 };
}

Deno.test("caller (the sip control) on a memory network: unreachable → exit 1 at once with the reason; silence → the ring timeout names it", async () => {
  const unreachable = await runOnMemory("pipelines/caller.json", ["to=sip:bob@127.0.0.1:5998", "ring_timeout=30"]);
  assert.deepEqual(unreachable.result, {
    code: 1,
    reason: "call failed: 127.0.0.1:5998 unreachable (ICMP port unreachable)",
  });
  assert.ok(
    unreachable.elapsed < 5000,
    `ended ${unreachable.elapsed} ms after it listened, not after the ring timeout`,
  );
  // Something is bound there but never answers (on real UDP a dead port looks like this too: Deno does not
  // report ICMP errors on unconnected sockets).
  const silent = await runOnMemory(
    "pipelines/caller.json",
    ["to=sip:bob@127.0.0.1:5998", "ring_timeout=2"],
    (net) => void net.bind("127.0.0.1", 5998),
  );
  assert.deepEqual(silent.result, { code: 1, reason: "no SIP response from 127.0.0.1:5998 within 2 s" });
  assert.ok(silent.out.lines.some((l) => l.includes("no SIP response from 127.0.0.1:5998 within 2 s: giving up")));
  // A host name as the target: refused before anything is sent, unless the file allows resolution.
  const named = await runOnMemory("pipelines/caller.json", ["to=sip:bob@example.com"]);
  assert.equal(named.result.code, 2);
  assert.match(
    named.result.reason!,
    /^cannot call sip:bob@example\.com: .*example\.com is a host name.*resolve_names: true/,
  );
});

Deno.test("caller (the sip control): a remote callee's answer naming a loopback address gets no RTP — the call is hung up with the reason", async () => {
  let rtp = 0;
  let byes = 0;
  const run = await runOnMemory("pipelines/caller.json", ["to=sip:bob@10.0.0.2", "bind=10.0.0.1"], (net) => {
    const callee = net.bind("10.0.0.2", 5060);
    net.bind("127.0.0.1", 9999).listen(() => void rtp++);
    callee.listen((d, from) => {
      const m = parseMessage(d);
      if (m.kind !== "request") return;
      let res: SipResponse | undefined;
      if (m.method === "INVITE") {
        res = createResponse(m, 200, undefined, {
          toTag: "bob1",
          headers: [["Contact", "<sip:bob@10.0.0.2>"], ["Content-Type", "application/sdp"]],
          body: createAnswer(SDP, { registry: codecs, address: "127.0.0.1", port: 9999 }),
        });
      } else if (m.method === "BYE") {
        byes++;
        res = createResponse(m, 200);
      }
      if (res) void callee.send(serializeMessage(res), from);
    });
  });
  assert.deepEqual(run.result, {
    code: 1,
    reason:
      "call ended on a media failure: the media address 127.0.0.1 is a loopback address, the peer 10.0.0.2:5060 " +
      "is not",
  });
  assert.equal(rtp, 0, "nothing was sent to 127.0.0.1:9999");
  assert.equal(byes, 1);
});

Deno.test("OutgoingCall.giveUp before any response: ends now; a late 180 still gets its CANCEL, a late 200 its ACK and BYE", async () => {
  for (const late of [180, 200]) {
    const { clock, net, bob: alice } = setup({ overload: false });
    const peer = rawPeer(net, "10.0.0.3");
    const call = alice.invite("sip:carol@10.0.0.3", { sdp: SDP });
    clock.advance(5);
    call.giveUp("no SIP response from 10.0.0.3:5060 within 0.005 s");
    assert.deepEqual(call.endInfo, { by: "local", reason: "no SIP response from 10.0.0.3:5060 within 0.005 s" });
    const invite = parseMessage(peer.got.find((g) => g.text.startsWith("INVITE "))!.text) as SipRequest;
    const res = createResponse(invite, late, undefined, {
      toTag: "late1",
      headers: late === 200 ? [["Contact", "<sip:carol@10.0.0.3>"], ["Content-Type", "application/sdp"]] : [],
      body: late === 200 ? createAnswer(SDP, { registry: codecs, address: "10.0.0.3", port: 42000 }) : undefined,
    });
    await peer.send(serializeMessage(res), alice.localAddress);
    clock.advance(5);
    const sent = peer.got.map((g) => g.text.split(" ")[0]);
    if (late === 180) assert.ok(sent.includes("CANCEL"), `CANCEL after the late 180: ${sent}`);
    else assert.ok(sent.includes("ACK") && sent.includes("BYE"), `ACK and BYE after the late 200: ${sent}`);
    assert.equal(call.endInfo?.reason, "no SIP response from 10.0.0.3:5060 within 0.005 s", "still how it ended");
    await alice.close();
    await peer.close();
  }
});

Deno.test("2xx from other forks: each is ACKed and hung up once, its retransmissions ACKed again; at most 16 forks per call", async () => {
  const { clock, net, out, bob: alice } = setup({ overload: false });
  const carol = rawPeer(net, "10.0.0.3");
  // Where the forks' Contact points: another host, which the flood would otherwise make us send to.
  const victim = rawPeer(net, "10.0.0.9", [5070]);
  const call = alice.invite("sip:carol@10.0.0.3", { sdp: SDP });
  clock.advance(5);
  const invite = parseMessage(carol.got.find((g) => g.text.startsWith("INVITE "))!.text) as SipRequest;
  const answer = createAnswer(SDP, { registry: codecs, address: "10.0.0.3", port: 42000 });
  const ok = (toTag: string, contact: string) =>
    serializeMessage(createResponse(invite, 200, undefined, {
      toTag,
      headers: [["Contact", contact], ["Content-Type", "application/sdp"]],
      body: answer,
    }));
  await carol.send(ok("carol1", "<sip:carol@10.0.0.3>"), alice.localAddress);
  clock.advance(5);
  assert.equal(call.state, "established");
  // One fork answers, and its 2xx is retransmitted twice (it did not see our ACK yet).
  for (let i = 0; i < 3; i++) await carol.send(ok("fork1", "<sip:x@10.0.0.9:5070>"), alice.localAddress);
  clock.advance(5);
  const methods = () => victim.got.map((g) => g.text.split(" ")[0]);
  assert.deepEqual(methods().sort(), ["ACK", "ACK", "ACK", "BYE"], "one BYE, an ACK for each 2xx");
  const acks = victim.got.filter((g) => g.text.startsWith("ACK "));
  assert.equal(new Set(acks.map((g) => g.text)).size, 1, "the same ACK again");
  assert.match(acks[0].text, /\r\nTo: <sip:carol@10\.0\.0\.3>;tag=fork1\r\n/);
  // A flood of 2xx with new To tags: 15 more forks are hung up, the rest ignored (one warning).
  for (let i = 0; i < 200; i++) await carol.send(ok(`flood${i}`, "<sip:x@10.0.0.9:5070>"), alice.localAddress);
  clock.advance(5);
  assert.equal(methods().filter((m) => m === "BYE").length, 16);
  assert.equal(methods().filter((m) => m === "ACK").length, 3 + 15);
  assert.equal(alice.usage.clientTransactions, 1 + 16, "the INVITE's, and one BYE per fork");
  assert.equal(out.lines.filter((l) => l.includes("other forks: ignored")).length, 1);
  assert.equal(call.state, "established", "the call itself goes on");
  await alice.close();
  await carol.close();
  await victim.close();
});

// ------------------------------------------------------------------ 6. overload

/**
 * A VirtualClock whose process can "stall": time jumps ahead by `ms` at once
 * and every timer that fell due meanwhile runs that much late, as when the
 * event loop is busy — what the user agent's lag sampler must notice.
 */
class StallingClock implements Clock {
  readonly inner = new VirtualClock();
  #skew = 0;
  now(): number {
    return this.inner.now() + this.#skew;
  }
  at(due: number, fn: () => void): Timer {
    return this.inner.at(due - this.#skew, fn);
  }
  after(ms: number, fn: () => void): Timer {
    return this.at(this.now() + ms, fn);
  }
  sleepUntil(due: number, signal?: AbortSignal): Promise<void> {
    return this.inner.sleepUntil(due - this.#skew, signal);
  }
  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return this.inner.sleep(ms, signal);
  }
  /** The process is busy for `ms`: the clock jumps, timers due meanwhile run late. */
  stall(ms: number): void {
    this.#skew += ms;
  }
  advance(ms: number): void {
    this.inner.advance(ms);
  }
  get pending(): number {
    return this.inner.pending;
  }
}

/** A minimal in-dialog request from the peer at 10.0.0.1 for a call answered with `ok`. */
function inDialog(method: string, ok: SipResponse, cseq: number, branch: string): string {
  return [
    `${method} sip:bob@10.0.0.2:5060 SIP/2.0`,
    `Via: SIP/2.0/UDP 10.0.0.1:5060;branch=${branch};rport`,
    "Max-Forwards: 70",
    `From: ${ok.headers.get("From")}`,
    `To: ${ok.headers.get("To")}`,
    `Call-ID: ${getCallId(ok)}`,
    `CSeq: ${cseq} ${method}`,
    "Content-Length: 0",
    "",
    "",
  ].join("\r\n");
}

/** The statuses the peer got for `callId` (finals only, retransmissions once). */
function statusesOf(got: Got[], callId: string, method = "INVITE"): number[] {
  const seen = new Set<string>();
  const out: number[] = [];
  for (const g of got) {
    if (!g.res || g.res.status < 200 || getCallId(g.res) !== callId || getCSeq(g.res).method !== method) continue;
    if (seen.has(g.text)) continue;
    seen.add(g.text);
    out.push(g.res.status);
  }
  return out;
}

Deno.test("overload: event-loop lag above the limit → new INVITEs get 503 + Retry-After; calls in progress, OPTIONS and BYE are served; it recovers", async () => {
  const clock = new StallingClock();
  const { net, bob, out } = setup({ overload: { lagMs: 200, sampleMs: 100, retryAfter: 7 } }, clock);
  const peer = rawPeer(net, "10.0.0.1");
  bob.onInvite((c) => c.accept(createAnswer(c.offer!, { registry: codecs, address: "10.0.0.2", port: 41000 })));
  await peer.send(invite(1, { callId: "before" }), bob.localAddress);
  clock.advance(10);
  assert.deepEqual(statusesOf(peer.got, "before"), [200]);
  const ok = peer.got.find((g) => g.res?.status === 200 && getCallId(g.res) === "before")!.res!;
  await peer.send(inDialog("ACK", ok, 1, "z9hG4bKack-before"), bob.localAddress);
  clock.advance(10);
  assert.equal(bob.usage.liveCalls, 1);
  assert.equal(bob.usage.overloaded, undefined);

  // One stall of 450 ms (the next lag sample, due 100 ms after the start, runs that late) is a hiccup: INVITEs are
  // still accepted.
  clock.stall(450);
  clock.advance(90);
  assert.equal(bob.usage.lagMs, 450);
  assert.equal(bob.usage.overloaded, undefined, "one late sample is not overload");
  // It stalls again: two samples in a row ran late, the process cannot keep up.
  clock.stall(450);
  clock.advance(100);
  assert.equal(bob.usage.lagMs, 450);
  assert.match(bob.usage.overloaded ?? "", /^event-loop lag \d+ ms > 200 ms$/);
  assert.ok(out.lines.some((l) => /WARN .*overloaded \(event-loop lag \d+ ms > 200 ms\): new INVITEs get 503/.test(l)));

  await peer.send(invite(2, { callId: "during" }), bob.localAddress);
  await peer.send(options("opt-during", "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKBRANCH;rport"), bob.localAddress);
  await peer.send(inDialog("BYE", ok, 2, "z9hG4bKbye-before"), bob.localAddress);
  clock.advance(10);
  assert.deepEqual(statusesOf(peer.got, "during"), [503]);
  const refused = peer.got.find((g) => g.res && getCallId(g.res) === "during" && g.res.status === 503)!.res!;
  assert.equal(refused.headers.get("Retry-After"), "7");
  assert.match(refused.headers.get("To")!, /;tag=/);
  assert.deepEqual(statusesOf(peer.got, "opt-during", "OPTIONS"), [200], "OPTIONS served");
  assert.deepEqual(statusesOf(peer.got, "before", "BYE"), [200], "the call in progress is served");
  assert.equal(bob.usage.refused, 1);
  assert.equal(bob.usage.calls, 1, "the 503 made no call (only the ended one lingers)");
  assert.equal(bob.usage.inviteServerTransactions, 1, "nor a transaction (only the call's INVITE's)");

  // No more stalls: the estimate halves each sample and the INVITEs are accepted again.
  clock.advance(500);
  assert.equal(bob.usage.overloaded, undefined);
  assert.ok(out.lines.some((l) => l.includes("no longer overloaded: 1 new INVITE(s) got 503 meanwhile")));
  await peer.send(invite(3, { callId: "after" }), bob.localAddress);
  clock.advance(10);
  assert.deepEqual(statusesOf(peer.got, "after"), [200]);
  await bob.close();
  await peer.close();
  assert.equal(clock.pending, 0, "close() stops the sampler");
});

Deno.test("overload: near the open-file limit new INVITEs get 503 saying so (the calls in progress keep their descriptors, the process does not run out); it recovers", async () => {
  // The process's open files as the probe reports them: 300 allowed.
  let open = 100;
  let counts = 0;
  const { clock, net, bob, out } = setup({
    overload: { lagMs: Infinity, openFiles: () => (counts++, { open, limit: 300 }) },
  });
  const peer = rawPeer(net, "10.0.0.1");
  bob.onInvite((c) => c.accept(createAnswer(c.offer!, { registry: codecs, address: "10.0.0.2", port: 41000 })));
  await peer.send(invite(1, { callId: "room" }), bob.localAddress);
  clock.advance(10);
  assert.deepEqual(statusesOf(peer.got, "room"), [200]);
  // The descriptors fill up (calls, recordings): fewer than the 64 kept free are left.
  open = 240;
  clock.advance(1000); // the count is at most a second old
  await peer.send(invite(2, { callId: "full" }), bob.localAddress);
  clock.advance(10);
  assert.deepEqual(statusesOf(peer.got, "full"), [503]);
  assert.match(
    bob.usage.overloaded ?? "",
    /240 of the 300 open files allowed are in use.*raise the limit \(ulimit -n\)/,
  );
  assert.ok(out.lines.some((l) => /WARN .*overloaded \(240 of the 300 open files .*\): new INVITEs get 503/.test(l)));
  // A burst that comes at once is counted as it is let in (each call will open its sockets and recording), not only
  // at the next count.
  open = 150;
  clock.advance(1000);
  const burst = Array.from({ length: 40 }, (_, i) => `burst-${i}`);
  for (const [i, id] of burst.entries()) await peer.send(invite(10 + i, { callId: id }), bob.localAddress);
  clock.advance(10);
  const statuses = burst.map((id) => statusesOf(peer.got, id)[0]);
  assert.ok(statuses.filter((s) => s === 200).length <= (300 - 64 - 150) / 4 + 1, statuses.join(" "));
  assert.ok(statuses.includes(503), "the burst is cut before the reserve is used up");
  // Calls end, descriptors come back: INVITEs are accepted again.
  open = 100;
  clock.advance(1000);
  await peer.send(invite(99, { callId: "again" }), bob.localAddress);
  clock.advance(10);
  assert.deepEqual(statusesOf(peer.got, "again"), [200]);
  assert.ok(counts < 200, `counted ${counts} times`);
  await bob.close();
  await peer.close();
});

Deno.test("overload: near the open-file limit the state flips at each count, but the log gets one line per 10 s, not two per flip", async () => {
  // Each count finds the process just over, then just under, the line (calls setting up and ending around it).
  let counts = 0;
  const { clock, net, bob, out } = setup({
    overload: { lagMs: Infinity, openFiles: () => ({ open: counts++ % 2 === 0 ? 240 : 100, limit: 300 }) },
  });
  const peer = rawPeer(net, "10.0.0.1");
  bob.onInvite((c) => c.reject(486));
  // 5 s of INVITEs, one per 10 ms: the count is taken again every 100 ms near the limit, every second away from it.
  for (let i = 0; i < 500; i++) {
    await peer.send(invite(1 + i, { callId: `flip-${i}` }), bob.localAddress);
    clock.advance(10);
  }
  const statuses = Array.from({ length: 500 }, (_, i) => statusesOf(peer.got, `flip-${i}`).at(-1));
  const flips = statuses.filter((s, i) => i > 0 && (s === 503) !== (statuses[i - 1] === 503)).length;
  assert.ok(flips >= 6, `${flips} flips between 503 and 486 (${counts} counts)`);
  const lines = out.lines.filter((l) => /overloaded/.test(l));
  // One "overloaded" and one "no longer overloaded", for the first spell; the later ones are counted, not logged.
  assert.ok(lines.length <= 2, lines.join("\n"));
  // 10 s on, a new spell gets its line again, with the 503s of the spells between.
  clock.advance(10_000);
  for (let i = 0; i < 30; i++) {
    await peer.send(invite(300 + i, { callId: `later-${i}` }), bob.localAddress);
    clock.advance(10);
  }
  const later = out.lines.filter((l) => /WARN .*\] overloaded \(240 of the 300 open files/.test(l));
  assert.equal(later.length, 2, out.lines.join("\n"));
  assert.match(later[1], /\(\d+ got 503 in short spells since the last line\)/);
  await bob.close();
  await peer.close();
});

Deno.test("overload: a steady stream of calls up to the open-file reserve: a call is not counted twice once its descriptors are open, and the count is not re-read at every INVITE near the limit", async () => {
  // Each call answered opens 3 descriptors (RTP, RTCP, recording), seen at the next count: 1 000 allowed, 100 open.
  let answered = 0;
  let counts = 0;
  const { clock, net, bob } = setup({
    overload: {
      lagMs: Infinity,
      maxTransactions: 10_000,
      openFiles: () => (counts++, { open: 100 + 3 * answered, limit: 1000 }),
    },
  });
  const peer = rawPeer(net, "10.0.0.1");
  bob.onInvite((c) => {
    answered++;
    c.accept(createAnswer(c.offer!, { registry: codecs, address: "10.0.0.2", port: 41000 }));
  });
  // 400 INVITEs, one per ms: room for 279 calls (each let in while 64 or more are left: 1000 - 100 - 3 * 278 = 66).
  for (let i = 0; i < 400; i++) {
    await peer.send(invite(1 + i, { callId: `steady-${i}` }), bob.localAddress);
    clock.advance(1);
  }
  clock.advance(10);
  const ok = Array.from({ length: 400 }, (_, i) => statusesOf(peer.got, `steady-${i}`)[0]).filter((s) => s === 200);
  // Counting a call both as open and as let in until the next periodic count refused from ~119 calls on.
  assert.ok(ok.length >= 260 && ok.length <= 279, `${ok.length} calls answered`);
  // Near the limit the count is re-read at most every 20 ms (400 ms: about 20 counts), not at every INVITE.
  assert.ok(counts <= 30, `counted ${counts} times`);
  await bob.close();
  await peer.close();
});

Deno.test("overload: calls that end between two counts give their descriptors back: a busy server near its file limit is not refused for calls already gone", async () => {
  // 1 000 allowed, 800 open: room for 34 more calls at once (4 each, 64 kept free), but every call here ends at once.
  const { clock, net, bob } = setup({
    overload: { lagMs: Infinity, maxTransactions: 10_000, openFiles: () => ({ open: 800, limit: 1000 }) },
  });
  const peer = rawPeer(net, "10.0.0.1");
  bob.onInvite((c) => c.reject(486));
  // All within one instant: no count is taken between them.
  for (let i = 0; i < 100; i++) await peer.send(invite(1 + i, { callId: `brief-${i}` }), bob.localAddress);
  clock.advance(10);
  const statuses = Array.from({ length: 100 }, (_, i) => statusesOf(peer.got, `brief-${i}`).at(-1));
  assert.deepEqual(statuses.filter((s) => s !== 486), [], "every call got its own answer, none a 503");
  await bob.close();
  await peer.close();
});

Deno.test({
  name: "overload: the process's open files are counted from /proc/self (each file opened counts one)",
  ignore: Deno.build.os !== "linux",
  fn: () => {
    const before = processOpenFiles()!;
    assert.ok(before.limit > 0 && before.open > 0 && before.open <= before.limit, JSON.stringify(before));
    const files = Array.from({ length: 10 }, () => Deno.openSync("/dev/null"));
    try {
      assert.equal(processOpenFiles()!.open, before.open + 10);
    } finally {
      for (const f of files) f.close();
    }
  },
});

Deno.test("overload: max_transactions caps the table — beyond it INVITEs get a 503 and OPTIONS a 200, both stateless; in-dialog requests still get a transaction", async () => {
  const { clock, net, bob } = setup({ overload: { lagMs: Infinity, maxTransactions: 50 } });
  const peer = rawPeer(net, "10.0.0.1");
  const ringing: IncomingCall[] = [];
  bob.onInvite((c) => {
    ringing.push(c);
    c.ringing(); // never answered: each INVITE transaction stays open
  });
  for (let i = 0; i < 500; i++) await peer.send(invite(i, { callId: `cap-${i}` }), bob.localAddress);
  clock.advance(10);
  // 50 calls fill the table; beyond it every INVITE gets a 503 sent without a transaction.
  assert.equal(ringing.length, 50);
  assert.equal(bob.usage.serverTransactions, 50);
  let refused = 0;
  for (let i = 50; i < 500; i++) {
    const s = statusesOf(peer.got, `cap-${i}`);
    assert.deepEqual(s, [503], `cap-${i}`);
    refused++;
  }
  assert.equal(bob.usage.refused, refused);
  assert.match(bob.usage.overloaded!, /transaction table full/);
  // The table is full, and stays so: the 503s kept nothing.
  assert.equal(bob.usage.serverTransactions, 50);
  assert.equal(bob.usage.calls, 50);
  // OPTIONS is still answered, statelessly.
  await peer.send(options("opt-full", "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKBRANCH;rport"), bob.localAddress);
  clock.advance(10);
  assert.deepEqual(statusesOf(peer.got, "opt-full", "OPTIONS"), [200]);
  assert.equal(bob.usage.serverTransactions, 50);
  // A CANCEL for a ringing call (an in-dialog matter) is handled as usual.
  const first = parseMessage(invite(0, { callId: "cap-0" })) as SipRequest;
  const cancel = [
    "CANCEL sip:bob@10.0.0.2 SIP/2.0",
    `Via: ${first.headers.get("Via")}`, // the INVITE's branch
    "Max-Forwards: 70",
    `From: ${first.headers.get("From")}`,
    `To: ${first.headers.get("To")}`,
    "Call-ID: cap-0",
    "CSeq: 1 CANCEL",
    "Content-Length: 0",
    "",
    "",
  ].join("\r\n");
  await peer.send(cancel, bob.localAddress);
  clock.advance(10);
  assert.deepEqual(statusesOf(peer.got, "cap-0", "CANCEL"), [200]);
  assert.deepEqual(statusesOf(peer.got, "cap-0"), [487]);
  // Everything ends: the table drains, and INVITEs are accepted again.
  for (const c of ringing) void c.hangup(); // 603
  clock.advance(64 * T1 + 100);
  assert.equal(bob.usage.serverTransactions, 0);
  assert.equal(bob.usage.overloaded, undefined);
  await peer.send(invite(1000, { callId: "cap-after" }), bob.localAddress);
  clock.advance(10);
  assert.equal(ringing.length, 51);
  await bob.close();
  await peer.close();
});

Deno.test("overload: max_calls → the next INVITE gets 503 with Retry-After; once a call ends, INVITEs are accepted again", async () => {
  const { clock, net, bob } = setup({ overload: { maxCalls: 2 } });
  const peer = rawPeer(net, "10.0.0.1");
  const calls: IncomingCall[] = [];
  bob.onInvite((c) => {
    calls.push(c);
    c.accept(createAnswer(c.offer!, { registry: codecs, address: "10.0.0.2", port: 41000 }));
  });
  for (const id of ["m1", "m2", "m3"]) await peer.send(invite(1, { callId: id }), bob.localAddress);
  clock.advance(10);
  assert.deepEqual(["m1", "m2", "m3"].map((id) => statusesOf(peer.got, id)), [[200], [200], [503]]);
  const refused = peer.got.find((g) => g.res?.status === 503)!.res!;
  assert.equal(refused.headers.get("Retry-After"), "5");
  assert.match(bob.usage.overloaded!, /^2 calls in progress \(max_calls 2\)$/);
  void calls[0].hangup();
  clock.advance(10);
  await peer.send(invite(4, { callId: "m4" }), bob.localAddress);
  clock.advance(10);
  assert.deepEqual(statusesOf(peer.got, "m4"), [200]);
  await bob.close();
  await peer.close();
});
