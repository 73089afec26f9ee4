/**
 * The authentication seam (RFC 3261 §22) on the in-memory network with a
 * VirtualClock, against a scripted peer: a 401/407 to any request we send is
 * offered to the user agent's `authenticator`; when it answers, the request is
 * re-sent in a new transaction with CSeq + 1 and the credentials header (an
 * INVITE keeps its call); without an answer the 401/407 is final, as before.
 * The authenticator here is a fake (no digest yet): the tests check what goes
 * on the wire and what the call does.
 */
import { codecs } from "./registry_util.ts";
import { MemoryNetwork } from "../core/net/memory.ts";
import assert from "node:assert/strict";
import { VirtualClock } from "../core/clock.ts";
import { Logger, MemoryOutput } from "../core/log.ts";
import {
  type Authenticator,
  CallFailedError,
  createAnswer,
  createOffer,
  getCSeq,
  getFrom,
  MAX_AUTH_ROUNDS,
  SipUserAgent,
  topVia,
} from "../plugins/sip/mod.ts";
import { MemoryPeer } from "./sip_memory_peer.ts";

const OFFER = createOffer({ registry: codecs, address: "10.0.0.1", port: 40000, sessionId: "1" });
const ANSWER = createAnswer(OFFER, { registry: codecs, address: "10.0.0.2", port: 41000 });
const PROXY_CHALLENGE: [string, string] = ["Proxy-Authenticate", 'Digest realm="proxy", nonce="n1", algorithm=MD5'];
const UAS_CHALLENGE: [string, string] = ["WWW-Authenticate", 'Digest realm="far", nonce="f1", algorithm=MD5'];

function setup(authenticator?: Authenticator) {
  const clock = new VirtualClock();
  const net = new MemoryNetwork({ clock, latencyMs: 5 });
  const out = new MemoryOutput();
  const log = new Logger({ level: "debug", outputs: [out] });
  const alice = new SipUserAgent({
    transport: net.bind("10.0.0.1", 5060),
    clock,
    log,
    userName: "alice",
    authenticator,
  });
  const peer = new MemoryPeer(net, "10.0.0.2");
  const close = async () => {
    await alice.close();
    await peer.close();
    clock.advance(100);
  };
  return { clock, out, alice, peer, close };
}

/** A fake authenticator that records what it was offered and answers with a recognizable header. */
function fakeAuthenticator(answer: (n: number) => boolean = () => true) {
  const offered: { status: number; cseq: string; credentials: string[] }[] = [];
  const authenticator: Authenticator = (challenge, request) => {
    offered.push({
      status: challenge.status,
      cseq: request.headers.get("CSeq")!,
      credentials: [...request.headers.getAll("Authorization"), ...request.headers.getAll("Proxy-Authorization")],
    });
    if (!answer(offered.length)) return undefined;
    const realm = /realm="([^"]*)"/.exec(
      challenge.headers.get("Proxy-Authenticate") ?? challenge.headers.get("WWW-Authenticate") ?? "",
    )?.[1];
    const nonce = /nonce="([^"]*)"/.exec(
      challenge.headers.get("Proxy-Authenticate") ?? challenge.headers.get("WWW-Authenticate") ?? "",
    )?.[1];
    const value = `Digest username="alice", realm="${realm}", nonce="${nonce}", response="fake${offered.length}"`;
    return [challenge.status === 407 ? "Proxy-Authorization" : "Authorization", value];
  };
  return { authenticator, offered };
}

Deno.test("auth: INVITE 407 → re-sent with Proxy-Authorization and CSeq 2 → 200: the same call is established", async () => {
  const { authenticator, offered } = fakeAuthenticator();
  const { clock, alice, peer, close } = setup(authenticator);
  peer.onRequest = (req, from) => {
    if (req.method === "INVITE" && !req.headers.has("Proxy-Authorization")) {
      peer.respond(req, 407, from, { toTag: "proxy1", headers: [PROXY_CHALLENGE] });
    } else if (req.method === "INVITE") {
      peer.respond(req, 180, from, { toTag: "bob1" });
      peer.respond(req, 200, from, { toTag: "bob1", headers: [["Contact", "<sip:bob@10.0.0.2:5060>"]], sdp: ANSWER });
    } else if (req.method === "BYE") {
      peer.respond(req, 200, from);
    }
  };
  const call = alice.invite("sip:bob@10.0.0.2", { sdp: OFFER });
  const first = call.invite;
  const progress: number[] = [];
  call.on("progress", (p) => progress.push(p.status));
  clock.advance(100);

  assert.equal(call.state, "established");
  assert.equal((await call.established).sdp, ANSWER);
  assert.deepEqual(progress, [180]);
  const [inv1, inv2] = peer.requests("INVITE");
  assert.equal(peer.requests("INVITE").length, 2);
  // The first INVITE had no credentials; the authenticator saw it with the 407.
  assert.equal(inv1.headers.get("Proxy-Authorization"), undefined);
  assert.deepEqual(offered, [{ status: 407, cseq: "1 INVITE", credentials: [] }]);
  // The second: same call (Call-ID, From with tag, To, body), CSeq + 1, a new branch, the credentials.
  assert.equal(inv2.headers.get("Call-ID"), inv1.headers.get("Call-ID"));
  assert.equal(inv2.headers.get("From"), inv1.headers.get("From"));
  assert.equal(inv2.headers.get("To"), inv1.headers.get("To"));
  assert.equal(inv2.uri, inv1.uri);
  assert.equal(inv2.headers.get("CSeq"), "2 INVITE");
  assert.notEqual(topVia(inv2).params.branch, topVia(inv1).params.branch);
  assert.deepEqual(inv2.headers.getAll("Proxy-Authorization"), [
    'Digest username="alice", realm="proxy", nonce="n1", response="fake1"',
  ]);
  assert.equal(new TextDecoder().decode(inv2.body), OFFER);
  // The call object follows: same Call-ID and tag, `invite` is the re-sent one.
  assert.equal(call.callId, inv1.headers.get("Call-ID"));
  assert.equal(call.localTag, getFrom(first).params.tag);
  assert.equal(call.invite.headers.get("CSeq"), "2 INVITE");
  assert.equal(call.remoteTag, "bob1");
  // The 407 was ACKed inside the first transaction (CSeq 1, its branch); the 200 end to end (CSeq 2).
  const acks = peer.requests("ACK");
  assert.deepEqual(acks.map((a) => a.headers.get("CSeq")), ["1 ACK", "2 ACK"]);
  assert.equal(topVia(acks[0]).params.branch, topVia(inv1).params.branch);
  assert.match(acks[0].headers.get("To")!, /;tag=proxy1$/);
  assert.match(acks[1].headers.get("To")!, /;tag=bob1$/);

  // The dialog took CSeq 2 from the re-sent INVITE: the BYE is 3.
  const done = call.hangup();
  clock.advance(50);
  await done;
  assert.deepEqual(peer.requests("BYE").map((b) => b.headers.get("CSeq")), ["3 BYE"]);
  assert.deepEqual(call.endInfo, { by: "local", reason: "BYE" });
  await close();
});

Deno.test("auth: INVITE 401 without an authenticator fails the call with the 401, as before", async () => {
  const { clock, alice, peer, close } = setup();
  peer.onRequest = (req, from) => {
    if (req.method === "INVITE") peer.respond(req, 401, from, { toTag: "far1", headers: [UAS_CHALLENGE] });
  };
  const call = alice.invite("sip:bob@10.0.0.2", { sdp: OFFER });
  const ended: unknown[] = [];
  call.on("ended", (e) => ended.push(e));
  clock.advance(100);
  assert.deepEqual(ended, [{ by: "remote", reason: "401 Unauthorized", status: 401 }]);
  await assert.rejects(call.established, (e) => e instanceof CallFailedError && e.info.status === 401);
  clock.advance(40_000);
  assert.equal(peer.requests("INVITE").length, 1, "no second INVITE");
  assert.deepEqual(peer.requests("ACK").map((a) => a.headers.get("CSeq")), ["1 ACK"]);
  await close();
});

Deno.test("auth: an authenticator that gives up (undefined) leaves the 401 final", async () => {
  const { authenticator, offered } = fakeAuthenticator(() => false);
  const { clock, alice, peer, close } = setup(authenticator);
  peer.onRequest = (req, from) => {
    if (req.method === "INVITE") peer.respond(req, 401, from, { toTag: "far1", headers: [UAS_CHALLENGE] });
  };
  const call = alice.invite("sip:bob@10.0.0.2", { sdp: OFFER });
  clock.advance(100);
  assert.deepEqual(call.endInfo, { by: "remote", reason: "401 Unauthorized", status: 401 });
  assert.deepEqual(offered, [{ status: 401, cseq: "1 INVITE", credentials: [] }]);
  assert.equal(peer.requests("INVITE").length, 1);
  await close();
});

Deno.test(`auth: a peer that keeps challenging gets ${MAX_AUTH_ROUNDS} re-sent INVITEs, then the 407 is final`, async () => {
  const { authenticator, offered } = fakeAuthenticator();
  const { clock, out, alice, peer, close } = setup(authenticator);
  peer.onRequest = (req, from) => {
    if (req.method === "INVITE") peer.respond(req, 407, from, { toTag: "p", headers: [PROXY_CHALLENGE] });
  };
  const call = alice.invite("sip:bob@10.0.0.2", { sdp: OFFER });
  clock.advance(1000);
  const seqs = peer.requests("INVITE").map((r) => getCSeq(r).seq);
  assert.deepEqual(seqs, Array.from({ length: MAX_AUTH_ROUNDS + 1 }, (_, i) => i + 1));
  assert.equal(offered.length, MAX_AUTH_ROUNDS, "the last 407 is not offered");
  // Each re-send carries one Proxy-Authorization for the realm: the newest replaces the older one.
  assert.deepEqual(offered.map((o) => o.credentials.length), [0, ...Array(MAX_AUTH_ROUNDS - 1).fill(1)]);
  assert.deepEqual(call.endInfo, { by: "remote", reason: "407 Proxy Authentication Required", status: 407 });
  assert.ok(out.lines.some((l) => l.includes(`rounds of credentials: giving up`)));
  await close();
});

Deno.test("auth: OPTIONS answered 407 then 401 then a stale 407: the credentials of both realms accumulate, one per realm", async () => {
  const { authenticator, offered } = fakeAuthenticator();
  const { clock, alice, peer, close } = setup(authenticator);
  let n = 0;
  peer.onRequest = (req, from) => {
    if (req.method !== "OPTIONS") return;
    n++;
    if (n === 1 || n === 3) peer.respond(req, 407, from, { toTag: `p${n}`, headers: [PROXY_CHALLENGE] });
    else if (n === 2) peer.respond(req, 401, from, { toTag: "f", headers: [UAS_CHALLENGE] });
    else peer.respond(req, 200, from, { toTag: "ok", headers: [["Allow", "INVITE, ACK, BYE"]] });
  };
  const p = alice.options("sip:bob@10.0.0.2");
  clock.advance(200);
  const res = await p;
  assert.equal(res?.status, 200);
  const sent = peer.requests("OPTIONS");
  assert.deepEqual(sent.map((r) => r.headers.get("CSeq")), ["1 OPTIONS", "2 OPTIONS", "3 OPTIONS", "4 OPTIONS"]);
  assert.equal(new Set(sent.map((r) => r.headers.get("Call-ID"))).size, 1, "one Call-ID");
  assert.equal(new Set(sent.map((r) => topVia(r).params.branch)).size, 4, "a new branch each time");
  assert.deepEqual(offered.map((o) => [o.status, o.cseq, o.credentials.length]), [
    [407, "1 OPTIONS", 0],
    [401, "2 OPTIONS", 1],
    [407, "3 OPTIONS", 2],
  ]);
  const last = sent[3];
  assert.deepEqual(last.headers.getAll("Authorization"), [
    'Digest username="alice", realm="far", nonce="f1", response="fake2"',
  ]);
  assert.deepEqual(last.headers.getAll("Proxy-Authorization"), [
    'Digest username="alice", realm="proxy", nonce="n1", response="fake3"',
  ]);
  await close();
});

Deno.test("auth: a BYE answered 407 is re-sent with the dialog's next CSeq and the credentials", async () => {
  const { authenticator } = fakeAuthenticator();
  const { clock, alice, peer, close } = setup(authenticator);
  let byes = 0;
  peer.onRequest = (req, from) => {
    if (req.method === "INVITE") {
      peer.respond(req, 200, from, { toTag: "bob1", headers: [["Contact", "<sip:bob@10.0.0.2:5060>"]], sdp: ANSWER });
    } else if (req.method === "BYE") {
      if (++byes === 1) peer.respond(req, 407, from, { headers: [PROXY_CHALLENGE] });
      else peer.respond(req, 200, from);
    }
  };
  const call = alice.invite("sip:bob@10.0.0.2", { sdp: OFFER });
  clock.advance(50);
  assert.equal(call.state, "established");
  let answered = false;
  const done = call.hangup().then(() => (answered = true));
  clock.advance(50);
  await done;
  assert.ok(answered);
  const sent = peer.requests("BYE");
  assert.deepEqual(sent.map((b) => b.headers.get("CSeq")), ["2 BYE", "3 BYE"]);
  assert.equal(sent[1].headers.get("Proxy-Authorization")?.includes('realm="proxy"'), true);
  assert.equal(sent[1].uri, "sip:bob@10.0.0.2:5060");
  assert.equal(call.dialog?.localSeq, 3, "the dialog's counter moved with the re-sent BYE");
  await close();
});

Deno.test("auth: CANCEL is never re-sent with credentials; a broken authenticator answer is refused and logged", async () => {
  // CANCEL: the peer (wrongly) challenges it; the authenticator is not asked.
  {
    const { authenticator, offered } = fakeAuthenticator();
    const { clock, alice, peer, close } = setup(authenticator);
    peer.onRequest = (req, from) => {
      if (req.method === "INVITE") peer.respond(req, 180, from, { toTag: "bob1" });
      else if (req.method === "CANCEL") peer.respond(req, 407, from, { headers: [PROXY_CHALLENGE] });
    };
    const call = alice.invite("sip:bob@10.0.0.2", { sdp: OFFER });
    clock.advance(50);
    call.cancel();
    clock.advance(40_000); // no 487 ever comes: the call gives up after 64·T1
    assert.equal(peer.requests("CANCEL").length, 1);
    assert.deepEqual(offered, []);
    assert.deepEqual(call.endInfo, { by: "local", reason: "cancelled" });
    await close();
  }
  // An answer that is not a credentials header: refused with a message saying what is expected.
  {
    const bad = (() => ["X-Credentials", "secret"]) as unknown as Authenticator;
    const { clock, out, alice, peer, close } = setup(bad);
    peer.onRequest = (req, from) => {
      if (req.method === "INVITE") peer.respond(req, 401, from, { toTag: "f", headers: [UAS_CHALLENGE] });
    };
    const call = alice.invite("sip:bob@10.0.0.2", { sdp: OFFER });
    clock.advance(100);
    assert.equal(call.endInfo?.status, 401);
    assert.equal(peer.requests("INVITE").length, 1);
    assert.ok(
      out.lines.some((l) =>
        l.includes(
          'authenticator returned ["X-Credentials","secret"]: expected ["Authorization" | "Proxy-Authorization"',
        )
      ),
      out.lines.join("\n"),
    );
    await close();
  }
});
