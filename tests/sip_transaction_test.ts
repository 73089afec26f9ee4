import assert from "node:assert/strict";
import { VirtualClock } from "../core/clock.ts";
import { Logger, MemoryOutput } from "../core/log.ts";
import {
  createRequest,
  createResponse,
  getCSeq,
  type SipMessage,
  type SipRequest,
  type SipResponse,
  topVia,
} from "../plugins/sip/message.ts";
import {
  type ClientTransaction,
  type MessageSender,
  type ServerTransaction,
  TransactionLayer,
} from "../plugins/sip/transaction.ts";
import type { Address } from "../plugins/sip/transport.ts";

const PEER: Address = { hostname: "10.0.0.2", port: 5060 };
const FROM: Address = { hostname: "10.0.0.9", port: 5070 };

interface Sent {
  t: number;
  msg: SipMessage;
}

/** Records what transactions send, with the virtual time. */
class Recorder implements MessageSender {
  sent: Sent[] = [];
  fail = false;
  constructor(readonly clock: VirtualClock) {}
  sendRequest(req: SipRequest): Promise<void> {
    if (this.fail) return Promise.reject(new Error("network unreachable"));
    this.sent.push({ t: this.clock.now(), msg: req });
    return Promise.resolve();
  }
  sendResponse(res: SipResponse): Promise<void> {
    this.sent.push({ t: this.clock.now(), msg: res });
    return Promise.resolve();
  }
  times(pred: (m: SipMessage) => boolean): number[] {
    return this.sent.filter((s) => pred(s.msg)).map((s) => s.t);
  }
}

function setup() {
  const clock = new VirtualClock();
  const rec = new Recorder(clock);
  const layer = new TransactionLayer({ sender: rec, clock });
  return { clock, rec, layer };
}

function request(method: string, branch: string, opts: { cseq?: number; toTag?: string; cseqMethod?: string } = {}) {
  return createRequest({
    method,
    uri: "sip:bob@10.0.0.2",
    headers: [
      ["Via", `SIP/2.0/UDP 10.0.0.9:5070;branch=${branch}`],
      ["Max-Forwards", "70"],
      ["From", "<sip:alice@10.0.0.9>;tag=ft"],
      ["To", `<sip:bob@10.0.0.2>${opts.toTag ? `;tag=${opts.toTag}` : ""}`],
      ["Call-ID", "call-1"],
      ["CSeq", `${opts.cseq ?? 1} ${opts.cseqMethod ?? method}`],
    ],
  });
}

const isReq = (method: string) => (m: SipMessage) => m.kind === "request" && m.method === method;
const isRes = (status: number) => (m: SipMessage) => m.kind === "response" && m.status === status;

function diffs(times: number[]): number[] {
  return times.slice(1).map((t, i) => t - times[i]);
}

Deno.test("INVITE client: Timer A doubles (not capped at T2) until Timer B = 64·T1", () => {
  const { clock, rec, layer } = setup();
  let timeouts = 0;
  const tx = layer.sendRequest(request("INVITE", "z9hG4bKa1"), PEER, {
    onResponse: () => assert.fail("no response expected"),
    onTimeout: () => timeouts++,
  });
  clock.advance(40000);
  const sends = rec.times(isReq("INVITE"));
  assert.deepEqual(sends, [0, 500, 1500, 3500, 7500, 15500, 31500]);
  assert.deepEqual(diffs(sends), [500, 1000, 2000, 4000, 8000, 16000]);
  assert.equal(timeouts, 1);
  assert.equal(tx.state, "terminated");
  assert.equal(layer.clientCount, 0);
});

Deno.test("INVITE client: 1xx stops retransmissions; non-2xx final is ACKed in the transaction (same branch), retransmissions re-ACKed, Timer D", () => {
  const { clock, rec, layer } = setup();
  const inv = request("INVITE", "z9hG4bKa2");
  const seen: number[] = [];
  const tx = layer.sendRequest(inv, PEER, { onResponse: (r) => seen.push(r.status) });
  clock.advance(600); // one retransmission at 500
  layer.receiveResponse(createResponse(inv, 180, undefined, { toTag: "tt" }), PEER);
  assert.equal(tx.state, "proceeding");
  clock.advance(10000);
  assert.deepEqual(rec.times(isReq("INVITE")), [0, 500]);
  const busy = createResponse(inv, 486, undefined, { toTag: "tt" });
  layer.receiveResponse(busy, PEER);
  assert.equal(tx.state, "completed");
  const acks = rec.sent.filter((s) => isReq("ACK")(s.msg)).map((s) => s.msg as SipRequest);
  assert.equal(acks.length, 1);
  assert.equal(topVia(acks[0]).params.branch, "z9hG4bKa2");
  assert.equal(acks[0].uri, inv.uri);
  assert.equal(acks[0].headers.get("To"), "<sip:bob@10.0.0.2>;tag=tt");
  assert.deepEqual(getCSeq(acks[0]), { seq: 1, method: "ACK" });
  layer.receiveResponse(busy, PEER); // retransmitted 486: ACK again, not passed up
  assert.equal(rec.times(isReq("ACK")).length, 2);
  assert.deepEqual(seen, [180, 486]);
  clock.advance(31999);
  assert.equal(tx.state, "completed");
  clock.advance(1);
  assert.equal(tx.state, "terminated");
});

Deno.test("INVITE client: 2xx moves to Accepted; 2xx retransmissions reach the TU until Timer M", () => {
  const { clock, layer } = setup();
  const inv = request("INVITE", "z9hG4bKa3");
  const seen: number[] = [];
  const tx = layer.sendRequest(inv, PEER, { onResponse: (r) => seen.push(r.status) });
  const ok = createResponse(inv, 200, undefined, { toTag: "x" });
  layer.receiveResponse(ok, PEER);
  assert.equal(tx.state, "accepted");
  layer.receiveResponse(ok, PEER);
  layer.receiveResponse(createResponse(inv, 486, undefined, { toTag: "x" }), PEER); // ignored in Accepted
  assert.deepEqual(seen, [200, 200]);
  clock.advance(32000);
  assert.equal(tx.state, "terminated");
});

Deno.test("non-INVITE client: Timer E doubles capped at T2, Timer F = 64·T1", () => {
  const { clock, rec, layer } = setup();
  let timeouts = 0;
  const tx = layer.sendRequest(request("OPTIONS", "z9hG4bKn1"), PEER, {
    onResponse: () => {},
    onTimeout: () => timeouts++,
  });
  clock.advance(33000);
  const sends = rec.times(isReq("OPTIONS"));
  assert.deepEqual(diffs(sends), [500, 1000, 2000, 4000, 4000, 4000, 4000, 4000, 4000, 4000]);
  assert.equal(sends.at(-1), 31500);
  assert.equal(timeouts, 1);
  assert.equal(tx.state, "terminated");
});

Deno.test("non-INVITE client: after a provisional E fires every T2; final → Completed absorbs retransmissions, Timer K = T4", () => {
  const { clock, rec, layer } = setup();
  const bye = request("BYE", "z9hG4bKn2", { toTag: "tt" });
  const seen: number[] = [];
  const tx = layer.sendRequest(bye, PEER, { onResponse: (r) => seen.push(r.status) });
  clock.advance(100);
  layer.receiveResponse(createResponse(bye, 100), PEER);
  assert.equal(tx.state, "proceeding");
  clock.advance(9000); // now 9100
  // Timer E was armed for 500 in Trying; from then on it fires every T2.
  assert.deepEqual(rec.times(isReq("BYE")), [0, 500, 4500, 8500]);
  const ok = createResponse(bye, 200);
  layer.receiveResponse(ok, PEER);
  layer.receiveResponse(ok, PEER);
  assert.deepEqual(seen, [100, 200]);
  assert.equal(tx.state, "completed");
  clock.advance(4999);
  assert.equal(tx.state, "completed");
  clock.advance(1);
  assert.equal(tx.state, "terminated");
  assert.equal(rec.times(isReq("BYE")).length, 4);
});

Deno.test("INVITE server: automatic 100 after 200 ms, retransmitted INVITE gets the last response", () => {
  const { clock, rec, layer } = setup();
  const inv = request("INVITE", "z9hG4bKs1");
  let st: ServerTransaction | undefined;
  let tus = 0;
  layer.onRequest = (_r, tx) => {
    tus++;
    st = tx;
  };
  layer.receiveRequest(inv, FROM);
  assert.equal(st?.state, "proceeding");
  clock.advance(199);
  assert.equal(rec.sent.length, 0);
  clock.advance(1);
  assert.deepEqual(rec.times(isRes(100)), [200]);
  layer.receiveRequest(inv, FROM); // retransmission: absorbed, last response again
  assert.deepEqual(rec.times(isRes(100)), [200, 200]);
  st!.respond(createResponse(inv, 180, undefined, { toTag: "b" }));
  layer.receiveRequest(inv, FROM);
  assert.deepEqual(rec.times(isRes(180)), [200, 200]);
  assert.equal(tus, 1);
});

Deno.test("INVITE server: non-2xx final retransmitted on Timer G (capped at T2) until ACK; ACK → Confirmed; Timer I", () => {
  const { clock, rec, layer } = setup();
  const inv = request("INVITE", "z9hG4bKs2");
  let st: ServerTransaction | undefined;
  layer.onRequest = (_r, tx) => (st = tx);
  layer.receiveRequest(inv, FROM);
  const busy = createResponse(inv, 486, undefined, { toTag: "b" });
  st!.respond(busy);
  assert.equal(st!.state, "completed");
  clock.advance(12000);
  const sends = rec.times(isRes(486));
  assert.deepEqual(diffs(sends), [500, 1000, 2000, 4000, 4000]);
  layer.receiveRequest(inv, FROM); // retransmitted INVITE → 486 again
  assert.equal(rec.times(isRes(486)).length, sends.length + 1);
  let acksUp = 0;
  layer.onRequest = () => acksUp++;
  const ack = request("ACK", "z9hG4bKs2", { toTag: "b", cseqMethod: "ACK" });
  layer.receiveRequest(ack, FROM);
  assert.equal(st!.state, "confirmed");
  assert.equal(acksUp, 0, "ACK for a non-2xx is absorbed by the transaction");
  const count = rec.sent.length;
  clock.advance(20000);
  assert.equal(rec.sent.length, count, "no retransmission after the ACK");
  assert.equal(st!.state, "terminated"); // Timer I = T4
});

Deno.test("INVITE server: Timer H without ACK → timeout to the TU after 64·T1", () => {
  const { clock, rec, layer } = setup();
  const inv = request("INVITE", "z9hG4bKs3");
  let st: ServerTransaction | undefined;
  layer.onRequest = (_r, tx) => (st = tx);
  layer.receiveRequest(inv, FROM);
  let timedOut = 0;
  st!.user = { onTimeout: () => timedOut++ };
  st!.respond(createResponse(inv, 603, undefined, { toTag: "b" }));
  clock.advance(31999);
  assert.equal(timedOut, 0);
  clock.advance(1);
  assert.equal(timedOut, 1);
  assert.equal(st!.state, "terminated");
  const sends = rec.times(isRes(603));
  assert.deepEqual(sends, [0, 500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500]);
});

Deno.test("INVITE server: a final response whose To does not parse still leaves the table at Timer H (it stayed forever)", () => {
  // Found by the fuzzer (sip-dialog): an INVITE with `To: <...>;tag` got a 481 whose To was `;tag;tag=x`; at Timer H
  // reading that To threw in terminate(), before the transaction left the table: one kept per such INVITE, forever.
  const { clock, layer } = setup();
  const inv = request("INVITE", "z9hG4bKbadto");
  inv.headers.set("To", "<sip:bob@10.0.0.2>;tag");
  let st: ServerTransaction | undefined;
  layer.onRequest = (_r, tx) => (st = tx);
  layer.receiveRequest(inv, FROM);
  st!.respond(createResponse(inv, 481, undefined, { toTag: "x" }));
  assert.equal(layer.serverCount, 1);
  clock.advance(32_000);
  assert.equal(st!.state, "terminated");
  assert.equal(layer.serverCount, 0);
  assert.equal(layer.inviteServerCount, 0);
});

Deno.test("INVITE server: 2xx retransmitted on Timer G until the ACK (new branch, matched by dialog)", () => {
  const { clock, rec, layer } = setup();
  const inv = request("INVITE", "z9hG4bKs4");
  let st: ServerTransaction | undefined;
  const up: string[] = [];
  layer.onRequest = (r, tx) => {
    up.push(r.method);
    if (tx) st = tx;
  };
  layer.receiveRequest(inv, FROM);
  let acked = 0;
  st!.user = { onAck: () => acked++, onTimeout: () => assert.fail("no timeout expected") };
  st!.respond(createResponse(inv, 200, undefined, { toTag: "b" }));
  assert.equal(st!.state, "accepted");
  clock.advance(8000);
  assert.deepEqual(rec.times(isRes(200)), [0, 500, 1500, 3500, 7500]);
  layer.receiveRequest(inv, FROM); // INVITE retransmission before ACK: 200 again
  assert.equal(rec.times(isRes(200)).length, 6);
  const ack = request("ACK", "z9hG4bKnewbranch", { toTag: "b", cseqMethod: "ACK" });
  layer.receiveRequest(ack, FROM);
  assert.equal(acked, 1);
  assert.deepEqual(up, ["INVITE", "ACK"], "the 2xx ACK also reaches the TU");
  clock.advance(10000);
  assert.equal(rec.times(isRes(200)).length, 6, "no retransmission after the ACK");
  layer.receiveRequest(inv, FROM); // absorbed silently after the ACK
  assert.equal(rec.times(isRes(200)).length, 6);
  assert.deepEqual(up, ["INVITE", "ACK"]);
  clock.advance(30000);
  assert.equal(st!.state, "terminated"); // Timer L
});

Deno.test("non-INVITE server: Trying absorbs silently; final re-sent on retransmission; Timer J", () => {
  const { clock, rec, layer } = setup();
  const bye = request("BYE", "z9hG4bKs5", { toTag: "b" });
  let st: ServerTransaction | undefined;
  let up = 0;
  layer.onRequest = (_r, tx) => {
    up++;
    st = tx;
  };
  layer.receiveRequest(bye, FROM);
  layer.receiveRequest(bye, FROM);
  assert.equal(rec.sent.length, 0);
  st!.respond(createResponse(bye, 200));
  layer.receiveRequest(bye, FROM);
  layer.receiveRequest(bye, FROM);
  assert.equal(rec.times(isRes(200)).length, 3);
  assert.equal(up, 1);
  st!.respond(createResponse(bye, 500)); // ignored after a final response
  assert.equal(rec.times(isRes(500)).length, 0);
  clock.advance(32000);
  assert.equal(st!.state, "terminated");
  layer.receiveRequest(bye, FROM); // now a new transaction
  assert.equal(up, 2);
});

Deno.test("matching: CANCEL has its own transaction but finds its INVITE by branch; responses match by branch + CSeq method", () => {
  const { layer } = setup();
  const inv = request("INVITE", "z9hG4bKm1");
  const servers: ServerTransaction[] = [];
  layer.onRequest = (_r, tx) => tx && servers.push(tx);
  layer.receiveRequest(inv, FROM);
  const cancel = request("CANCEL", "z9hG4bKm1");
  layer.receiveRequest(cancel, FROM);
  assert.equal(servers.length, 2);
  assert.equal(layer.matchCancel(cancel), servers[0]);
  assert.equal(layer.matchCancel(request("CANCEL", "z9hG4bKother")), undefined);

  // Client side: a 200 for CANCEL must not reach the INVITE transaction.
  const out = request("INVITE", "z9hG4bKm2");
  const inviteSeen: number[] = [];
  const cancelSeen: number[] = [];
  const stray: number[] = [];
  layer.onStrayResponse = (r) => stray.push(r.status);
  layer.sendRequest(out, PEER, { onResponse: (r) => inviteSeen.push(r.status) });
  const outCancel = request("CANCEL", "z9hG4bKm2");
  layer.sendRequest(outCancel, PEER, { onResponse: (r) => cancelSeen.push(r.status) });
  layer.receiveResponse(createResponse(outCancel, 200), PEER);
  layer.receiveResponse(createResponse(out, 487, undefined, { toTag: "z" }), PEER);
  layer.receiveResponse(createResponse(request("BYE", "z9hG4bKunknown"), 200), PEER);
  assert.deepEqual(inviteSeen, [487]);
  assert.deepEqual(cancelSeen, [200]);
  assert.deepEqual(stray, [200]);
});

Deno.test("matching: RFC 2543 requests without the magic cookie still match their transaction", () => {
  const { rec, layer } = setup();
  const old = request("OPTIONS", "oldbranch1");
  let up = 0;
  let st: ServerTransaction | undefined;
  layer.onRequest = (_r, tx) => {
    up++;
    st = tx;
  };
  layer.receiveRequest(old, FROM);
  st!.respond(createResponse(old, 200, undefined, { toTag: "q" }));
  layer.receiveRequest(old, FROM);
  assert.equal(up, 1);
  assert.equal(rec.times(isRes(200)).length, 2);
});

Deno.test("transport error terminates the client transaction and tells the TU", async () => {
  const { rec, layer } = setup();
  rec.fail = true;
  const errors: unknown[] = [];
  let tx: ClientTransaction | undefined;
  await new Promise<void>((resolve) => {
    tx = layer.sendRequest(request("OPTIONS", "z9hG4bKe1"), PEER, {
      onResponse: () => {},
      onTransportError: (_t, e) => {
        errors.push(e);
        resolve();
      },
    });
  });
  assert.equal(errors.length, 1);
  assert.equal(tx!.state, "terminated");
  assert.equal(layer.clientCount, 0);
});

Deno.test("server transaction: lastResponseSent follows the latest response's first send (not its retransmissions): true once handed over, false when its send failed", async () => {
  const clock = new VirtualClock();
  // A sender whose sends complete when the test says (a socket that sends at the end of the thread's turn).
  const pending: { res: SipResponse; done: (ok: boolean) => void }[] = [];
  const sender: MessageSender = {
    sendRequest: () => Promise.resolve(),
    sendResponse: (res) =>
      new Promise((resolve, reject) =>
        pending.push({ res, done: (ok) => ok ? resolve() : reject(new Error("network unreachable")) })
      ),
  };
  const layer = new TransactionLayer({ sender, clock });
  let st: ServerTransaction | undefined;
  layer.onRequest = (_r, tx) => st = tx;
  const inv = request("INVITE", "z9hG4bKls1");
  layer.receiveRequest(inv, FROM);
  assert.equal(await st!.lastResponseSent, false, "nothing sent yet");
  st!.respond(createResponse(inv, 180, undefined, { toTag: "b" }));
  st!.respond(createResponse(inv, 200, undefined, { toTag: "b" }));
  let sent: boolean | undefined;
  void st!.lastResponseSent.then((ok) => sent = ok);
  clock.advance(600); // Timer G: the 200 again, while its first send is still pending
  assert.deepEqual(pending.map((p) => p.res.status), [180, 200, 200]);
  pending[0].done(true); // the 180
  pending[2].done(true); // the retransmission
  await Promise.resolve();
  await Promise.resolve();
  assert.equal(sent, undefined, "not before the 200's first send completes");
  pending[1].done(true);
  assert.equal(await st!.lastResponseSent, true);
  assert.equal(sent, true);
  // A send that fails: false (and the transaction ends on the transport error).
  const inv2 = request("INVITE", "z9hG4bKls2");
  layer.receiveRequest(inv2, FROM);
  st!.respond(createResponse(inv2, 200, undefined, { toTag: "c" }));
  pending.at(-1)!.done(false);
  assert.equal(await st!.lastResponseSent, false);
  assert.equal(st!.state, "terminated");
  layer.close();
});

Deno.test("close() terminates every transaction and cancels timers", () => {
  const { clock, layer } = setup();
  layer.sendRequest(request("INVITE", "z9hG4bKc1"), PEER, { onResponse: () => {} });
  layer.receiveRequest(request("INVITE", "z9hG4bKc2"), FROM);
  assert.equal(layer.clientCount + layer.serverCount, 2);
  layer.close();
  assert.equal(layer.clientCount + layer.serverCount, 0);
  assert.equal(clock.pending, 0);
});

Deno.test("a transaction user that throws 'out of descriptors' is logged by its message and what to do, its stack never read (reading it at EMFILE makes Deno panic)", () => {
  const clock = new VirtualClock();
  const rec = new Recorder(clock);
  const out = new MemoryOutput();
  const layer = new TransactionLayer({ sender: rec, clock, log: new Logger({ level: "debug", outputs: [out] }) });
  let stackRead = 0;
  const emfile = Object.assign(new Error("Too many open files (os error 24)"), { code: "EMFILE" });
  Object.defineProperty(emfile, "stack", {
    get: () => {
      stackRead++;
      return "Error: Too many open files (os error 24)\n    at file:///x.ts:1:1";
    },
  });
  const opt = request("OPTIONS", "z9hG4bKemfile");
  layer.sendRequest(opt, PEER, {
    onResponse: () => {
      throw emfile;
    },
  });
  layer.receiveResponse(createResponse(opt, 200, undefined, { toTag: "t" }), PEER);
  assert.equal(stackRead, 0, "the stack was read");
  assert.ok(
    out.lines.some((l) =>
      l.includes(
        "transaction user failed: Too many open files (os error 24) (the process is out of file descriptors: " +
          "raise the limit (ulimit -n))",
      )
    ),
    out.lines.join("\n"),
  );
  // Any other error is still logged with its stack (where it was thrown).
  const bug = new Error("bug");
  const opt2 = request("OPTIONS", "z9hG4bKbug");
  layer.sendRequest(opt2, PEER, {
    onResponse: () => {
      throw bug;
    },
  });
  layer.receiveResponse(createResponse(opt2, 200, undefined, { toTag: "t" }), PEER);
  assert.ok(
    out.lines.some((l) => l.includes("transaction user failed: Error: bug") && l.includes("sip_transaction_test.ts:")),
    out.lines.join("\n"),
  );
});
