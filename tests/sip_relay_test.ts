/**
 * The SIP relay (registrar + B2BUA, plugins/b2bua/) on an in-memory network
 * and a virtual clock: nothing here depends on time or machine speed.
 *
 * - Registrar: bindings expire exactly at their granted lifetime and a
 *   re-REGISTER refreshes them; `Expires: 0` and `Contact: *` remove them;
 *   423 below the minimum; stale CSeq refused; the client limit answers 503
 *   with Retry-After; contacts per user are bounded.
 * - Digest: REGISTER challenged (401) and accepted with the right password,
 *   refused with a wrong one, another user's AOR refused (403); INVITE
 *   challenged (407); stale nonces, replayed nonce counts.
 * - B2BUA: two legs with their own sessions and port pairs; SDP rewritten to
 *   the relay; codec agreed; RTP and RTCP relayed packet for packet through
 *   the relay's ports, latched to a NATed source (the phone's packets come
 *   from another address and port than its SDP says; its Contact names an
 *   unreachable private address); foreign sources dropped; counters.
 * - Call state mirrored: ringing, answer, BYE either side, CANCEL, failures
 *   with their status passed back, ring timeout, call limit.
 */
import { assert, assertEquals, assertMatch } from "./assert.ts";
import { Phone, registerAll, RELAY_IP, relayWorld, rtcpPacket, rtpPacket, run } from "./sip_relay_util.ts";
import { DigestChallenger, parseUsers, Registrar } from "../plugins/b2bua/mod.ts";
import { VirtualClock } from "../core/clock.ts";
import {
  bodyText,
  createAnswer,
  createOffer,
  createRequest,
  digestAuthenticator,
  negotiated,
  parseRegisterRequest,
  RegistrationError,
  type SipRequest,
  SipUserAgent,
} from "../plugins/sip/mod.ts";
import { codecs } from "./registry_util.ts";
import { repoPath, settleUntil } from "./util.ts";
import { Logger, MemoryOutput } from "../core/log.ts";
import { MemoryNetwork } from "../core/net/memory.ts";
import { createRegistry, PipelineRunner } from "../mod.ts";

const USERS = new Map([["alice", "alice-pw-1"], ["bob", "bob-pw-2"], ["carol", "carol-pw-3"]]);

async function failure(p: Promise<unknown>): Promise<RegistrationError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof RegistrationError) return e;
    throw e;
  }
  throw new Error("expected the registration to fail");
}

// ---- registrar ----------------------------------------------------------------------------

Deno.test("registrar: a binding lives exactly its granted lifetime; a re-REGISTER refreshes it", async () => {
  const w = relayWorld({ maxExpires: 300 });
  const alice = new Phone(w, { user: "alice", ip: "10.0.0.1" });
  try {
    const reg = alice.register(600); // asks 600, the relay grants 300
    await run(w, 20);
    const r = await reg;
    assertEquals(r.expires, 300);
    assertEquals(w.relay.registrar.lookup("alice")?.contact, "sip:alice@10.0.0.1:5060");
    assertEquals(w.relay.registrar.lookup("alice")?.source, { hostname: "10.0.0.1", port: 5060 });
    const registeredAt = w.clock.now() - 2; // the REGISTER arrived 1 ms after it was sent, its 200 1 ms later
    // Refresh at 200 s: the binding now lasts until 200 + 300 s.
    w.clock.advance(registeredAt + 200_000 - w.clock.now());
    const refresh = r.refresh(300);
    await run(w, 20);
    await refresh;
    const refreshedAt = registeredAt + 200_001;
    w.clock.advance(refreshedAt + 300_000 - 1 - w.clock.now());
    assert(w.relay.registrar.lookup("alice"), "still registered 1 ms before its refreshed expiry");
    w.clock.advance(1);
    assertEquals(w.relay.registrar.lookup("alice"), undefined);
    assertEquals(w.relay.registrar.stats().clients, 0);
    assertEquals(w.relay.registrar.stats().expired, 1);
    assert(
      w.logs.lines.some((l) => /expire alice: sip:alice@10\.0\.0\.1:5060 \(no re-REGISTER within its 300 s\)/.test(l)),
    );
  } finally {
    await alice.close();
    await w.relay.close();
  }
});

Deno.test("registrar: Expires: 0 unregisters; 423 below min_expires (the client retries with Min-Expires)", async () => {
  const w = relayWorld({ minExpires: 120 });
  const alice = new Phone(w, { user: "alice", ip: "10.0.0.1" });
  try {
    const reg = alice.register(30);
    await run(w, 50);
    const r = await reg;
    assertEquals(r.expires, 120);
    assertEquals(alice.responses("REGISTER", 423).length, 1);
    assertEquals(alice.responses("REGISTER", 423)[0].headers.get("Min-Expires"), "120");
    const un = r.unregister();
    await run(w, 20);
    await un;
    assertEquals(w.relay.registrar.lookup("alice"), undefined);
    assertEquals(w.relay.registrar.stats().unregistered, 1);
  } finally {
    await alice.close();
    await w.relay.close();
  }
});

Deno.test("registrar: client limit → 503 with Retry-After; contacts per user bounded (oldest replaced)", async () => {
  const w = relayWorld({ maxClients: 2, maxContacts: 2, retryAfter: 17 });
  const phones = ["alice", "bob", "carol"].map((user, i) => new Phone(w, { user, ip: `10.0.0.${i + 1}` }));
  try {
    for (const p of phones.slice(0, 2)) {
      const r = p.register();
      await run(w, 20);
      await r;
    }
    const third = failure(phones[2].register());
    await run(w, 20);
    const e = await third;
    assertEquals(e.status, 503);
    assertEquals(e.response?.headers.get("Retry-After"), "17");
    assertEquals(w.relay.registrar.stats().clients, 2);
    assertEquals(w.relay.registrar.stats().refused_full, 1);
    // A registered user may still add contacts: three from alice keep the two newest.
    for (const port of [5070, 5072, 5074]) {
      const r = phones[0].ua.register({
        registrar: `sip:${RELAY_IP}`,
        aor: phones[0].aor,
        contact: `sip:alice@10.0.0.1:${port}`,
        expires: 600,
      });
      await run(w, 20);
      await r;
    }
    const contacts = w.relay.registrar.bindingsOf("alice").map((b) => b.contact);
    assertEquals(contacts.length, 2);
    assertEquals(contacts.sort(), ["sip:alice@10.0.0.1:5072", "sip:alice@10.0.0.1:5074"]);
    assertEquals(w.relay.registrar.lookup("alice")?.contact, "sip:alice@10.0.0.1:5074");
    assertEquals(w.relay.registrar.stats().replaced, 2);
  } finally {
    for (const p of phones) await p.close();
    await w.relay.close();
  }
});

Deno.test("registrar: Contact: * removes every binding; a stale CSeq of the same Call-ID is refused", () => {
  const clock = new VirtualClock();
  const reg = new Registrar({
    clock,
    maxClients: 10,
    maxContacts: 4,
    minExpires: 60,
    maxExpires: 3600,
    defaultExpires: 3600,
    retryAfter: 30,
  });
  const req = (cseq: number, contact: string, expires?: number) =>
    createRequest({
      method: "REGISTER",
      uri: `sip:${RELAY_IP}`,
      headers: [
        ["Via", "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1"],
        ["From", "<sip:alice@x>;tag=1"],
        ["To", "<sip:alice@x>"],
        ["Call-ID", "reg-1"],
        ["CSeq", `${cseq} REGISTER`],
        ["Contact", contact],
        ...(expires !== undefined ? [["Expires", String(expires)] as [string, string]] : []),
      ],
    });
  const from = { hostname: "10.0.0.1", port: 5060 };
  assertEquals(reg.handle(parseRegisterRequest(req(1, "<sip:alice@10.0.0.1:5060>"), from)).status, 200);
  assertEquals(reg.handle(parseRegisterRequest(req(2, "<sip:alice@10.0.0.1:5062>"), from)).contacts?.length, 2);
  const stale = reg.handle(parseRegisterRequest(req(2, "<sip:alice@10.0.0.1:5062>"), from));
  assertEquals(stale.status, 500);
  assertEquals(reg.bindingsOf("alice").length, 2);
  const all = reg.handle(parseRegisterRequest(req(3, "*", 0), from));
  assertEquals(all.status, 200);
  assertEquals(reg.bindingsOf("alice").length, 0);
  assertEquals(reg.stats().unregistered, 2);
  reg.close();
});

// ---- digest ------------------------------------------------------------------------------

Deno.test("auth: REGISTER is challenged (401) and accepted with the right password only, for one's own AOR", async () => {
  const w = relayWorld({ users: USERS, realm: "relay.test" });
  const alice = new Phone(w, { user: "alice", ip: "10.0.0.1", password: "alice-pw-1" });
  const mallory = new Phone(w, { user: "alice", ip: "10.0.0.66", sipPort: 5066, password: "guess" });
  const nopass = new Phone(w, { user: "bob", ip: "10.0.0.2" });
  try {
    const ok = alice.register();
    await run(w, 20);
    await ok;
    const ch = alice.responses("REGISTER", 401);
    assertEquals(ch.length, 1);
    assertMatch(
      ch[0].headers.get("WWW-Authenticate")!,
      /^Digest realm="relay\.test", nonce="[0-9a-z]+\.[0-9a-f]{16}\.[0-9a-f]{32}", qop="auth", algorithm=MD5$/,
    );
    assertEquals(w.relay.registrar.lookup("alice")?.source.hostname, "10.0.0.1");

    const bad = failure(mallory.register());
    await run(w, 20);
    assertEquals((await bad).status, 401); // wrong password: challenged again, the client gives up
    assertEquals(w.relay.registrar.bindingsOf("alice").length, 1);

    const none = failure(nopass.register());
    await run(w, 20);
    assertEquals((await none).status, 401);

    // bob's credentials for alice's address-of-record: 403.
    const bobAsAlice = new Phone(w, { user: "bob", ip: "10.0.0.3", password: "bob-pw-2" });
    const forged = failure(bobAsAlice.ua.register({ registrar: `sip:${RELAY_IP}`, aor: alice.aor }));
    await run(w, 20);
    assertEquals((await forged).status, 403);
    // Found by the fuzzer (sip-relay): the AOR's user was quoted whole in the 403's reason (6 133 characters).
    const long = "a".repeat(3000);
    const longAor = failure(bobAsAlice.ua.register({ registrar: `sip:${RELAY_IP}`, aor: `sip:${long}@${RELAY_IP}` }));
    await run(w, 20);
    assertEquals((await longAor).status, 403);
    assertEquals(
      bobAsAlice.responses("REGISTER", 403).map((r) => r.kind === "response" ? r.reason : ""),
      ["Forbidden (bob may not register alice)", `Forbidden (bob may not register ${long.slice(0, 64)}...)`],
    );
    await bobAsAlice.close();
    assertEquals(w.relay.registrar.stats().auth_failures, 3);
    const text = w.logs.lines.join("\n");
    for (const pw of USERS.values()) assert(!text.includes(pw), "a password is in the log");
    assert(!text.includes("guess"), "a password is in the log");
  } finally {
    for (const p of [alice, mallory, nopass]) await p.close();
    await w.relay.close();
  }
});

Deno.test("auth: an address that fails 10 times in 60 s is refused (403) for 300 s, right password or not; others are not", async () => {
  const w = relayWorld({ users: USERS, realm: "relay.test" });
  const phones: Phone[] = [];
  const phone = (ip: string, password: string, sipPort = 5060) => {
    const p = new Phone(w, { user: "alice", ip, sipPort, rtpPort: 30000 + 2 * phones.length, password });
    phones.push(p);
    return p;
  };
  try {
    // Ten guesses from one address, each from a new port (a new phone): challenged, then refused, ten times; the
    // tenth failure starts the block and gets 403 instead of a challenge.
    const statuses: number[] = [];
    for (let k = 0; k < 10; k++) {
      const bad = failure(phone("10.0.0.66", `guess-${k}`, 5100 + k).register());
      await run(w, 20);
      statuses.push((await bad).status ?? 0);
    }
    assertEquals(statuses, [401, 401, 401, 401, 401, 401, 401, 401, 401, 403]);
    // The right password from that address is refused too, without a challenge; from another address it works.
    const right = phone("10.0.0.66", "alice-pw-1", 5200);
    const refused = failure(right.register());
    await run(w, 20);
    const e = await refused;
    assertEquals(e.status, 403);
    assertMatch(e.message, /too many failed authentications from this address; retry in \d+ s/);
    assertEquals(right.responses("REGISTER", 401).length, 0);
    const elsewhere = phone("10.0.0.1", "alice-pw-1");
    const ok = elsewhere.register();
    await run(w, 20);
    await ok;
    assertEquals(w.relay.registrar.lookup("alice")?.source.hostname, "10.0.0.1");
    // An INVITE from the blocked address gets 403 too, not a challenge.
    const caller = phone("10.0.0.66", "alice-pw-1", 5202);
    const call = caller.call("alice");
    await run(w, 20);
    assertEquals(call.state, "ended");
    assertEquals(caller.responses("INVITE", 403).length, 1);
    assertEquals(caller.responses("INVITE", 407).length, 0);
    const st = w.relay.stats();
    assertEquals(st.calls.auth_failures, 10);
    assertEquals(st.calls.auth_blocked, 3); // the tenth failure, the right password after it, the INVITE
    assertEquals(w.logs.lines.filter((l) => l.includes("its requests are refused (403) for 300 s")).length, 1);
    // After the block's 300 s, the right password registers from that address.
    w.clock.advance(300_000);
    const later = phone("10.0.0.66", "alice-pw-1", 5201);
    const ok2 = later.register();
    await run(w, 20);
    await ok2;
    assertEquals(w.relay.registrar.bindingsOf("alice").map((b) => b.source.hostname).sort(), ["10.0.0.1", "10.0.0.66"]);
  } finally {
    for (const p of phones) await p.close();
    await w.relay.close();
  }
});

Deno.test("auth: failures are counted per address over a window; no credentials and expired nonces are not failures; tables bounded", () => {
  const clock = new VirtualClock();
  const auth = new DigestChallenger({
    realm: "r",
    users: parseUsers("alice:pw-a"),
    clock,
    nonceLifetime: 60,
    maxFailures: 3,
    failureWindow: 10,
    blockTime: 30,
    maxSources: 4,
  });
  const req: SipRequest = createRequest({
    method: "REGISTER",
    uri: "sip:10.0.0.9",
    headers: [["Call-ID", "x"], ["CSeq", "1 REGISTER"], ["From", "<sip:alice@r>;tag=1"], ["To", "<sip:alice@r>"]],
  });
  const signed = (password: string, by = auth) => {
    const ch = by.challenge("WWW-Authenticate");
    const answer = digestAuthenticator({ username: "alice", password }, { cnonce: () => "c1" });
    const creds = answer({ ...req, kind: "response", status: 401, reason: "", headers: headersOf(ch) } as never, req)!;
    return createRequest({ method: "REGISTER", uri: "sip:10.0.0.9", headers: [...req.headers, creds] });
  };
  // Two failures, then the window passes: two more do not block (the count started again).
  auth.check(signed("x"), "Authorization", "1.1.1.1");
  auth.check(signed("x"), "Authorization", "1.1.1.1");
  clock.advance(10_000);
  auth.check(signed("x"), "Authorization", "1.1.1.1");
  const second = auth.check(signed("x"), "Authorization", "1.1.1.1");
  assertEquals(second.ok || second.blocked, undefined);
  // Requests without credentials, and right answers to an expired nonce, are no failures.
  for (let k = 0; k < 5; k++) assertEquals(auth.check(req, "Authorization", "1.1.1.1").ok, false);
  const old = signed("pw-a");
  clock.advance(60_001);
  assertEquals(auth.check(old, "Authorization", "1.1.1.1"), {
    ok: false,
    stale: true,
    user: "alice",
    reason: "nonce expired",
  });
  assertEquals(auth.check(signed("pw-a"), "Authorization", "1.1.1.1"), { ok: true, user: "alice" });
  // Three failures within the window block for 30 s; the third says so once.
  for (const [k, want] of [[1, undefined], [2, undefined], [3, 30]] as const) {
    const r = auth.check(signed("x"), "Authorization", "2.2.2.2");
    assertEquals(r.ok ? "ok" : r.blocked, want, `failure ${k}`);
    if (k === 3) assertEquals(!r.ok && r.blockStarted, true);
  }
  clock.advance(29_000);
  const still = auth.check(signed("pw-a"), "Authorization", "2.2.2.2");
  assertEquals(still.ok ? 0 : still.blocked, 1);
  assertEquals(!still.ok && still.blockStarted, undefined);
  clock.advance(1_000);
  assertEquals(auth.check(signed("pw-a"), "Authorization", "2.2.2.2").ok, true);
  // Without a source nothing is counted; blocked sources are kept at most maxSources (4).
  for (let k = 0; k < 5; k++) assertEquals(auth.check(signed("x"), "Authorization").ok, false);
  for (let a = 0; a < 6; a++) for (let k = 0; k < 3; k++) auth.check(signed("x"), "Authorization", `3.3.3.${a}`);
  assertEquals(auth.blocking.sources, 4);
  assertEquals(auth.check(signed("pw-a"), "Authorization", "3.3.3.5").ok, false);
  assertEquals(auth.check(signed("pw-a"), "Authorization", "3.3.3.0").ok, true); // forgotten first
  // Loopback sources are never counted unless limitLoopback; an IPv4-mapped address is its IPv4 address.
  for (let k = 0; k < 5; k++) auth.check(signed("x"), "Authorization", "127.0.0.1");
  assertEquals(auth.check(signed("pw-a"), "Authorization", "::ffff:127.0.0.1").ok, true);
  for (let k = 0; k < 3; k++) auth.check(signed("x"), "Authorization", "::ffff:4.4.4.4");
  assertEquals(auth.check(signed("pw-a"), "Authorization", "4.4.4.4").ok, false);
  const strict = new DigestChallenger({
    realm: "r",
    users: parseUsers("alice:pw-a"),
    clock,
    maxFailures: 3,
    limitLoopback: true,
  });
  for (let k = 0; k < 3; k++) strict.check(signed("x", strict), "Authorization", "127.0.0.1");
  assertEquals(strict.check(signed("pw-a", strict), "Authorization", "127.0.0.1").ok, false);
});

Deno.test("auth: stale nonce → stale=true; a nonce count used twice is a replay; SHA-256 offered first", () => {
  const clock = new VirtualClock();
  const auth = new DigestChallenger({
    realm: "r",
    users: parseUsers("alice:pw-a\nbob: pw-b\n# comment\n"),
    clock,
    nonceLifetime: 60,
    algorithms: ["SHA-256", "MD5"],
  });
  const ch = auth.challenge("WWW-Authenticate");
  assertEquals(ch.length, 2);
  assertMatch(ch[0][1], /algorithm=SHA-256$/);
  const req: SipRequest = createRequest({
    method: "REGISTER",
    uri: "sip:10.0.0.9",
    headers: [["Call-ID", "x"], ["CSeq", "1 REGISTER"], ["From", "<sip:alice@r>;tag=1"], ["To", "<sip:alice@r>"]],
  });
  const answer = digestAuthenticator({ username: "alice", password: "pw-a" }, { cnonce: () => "c1" });
  const challenge = (hs: [string, string][]) => ({
    ...req,
    kind: "response" as const,
    status: 401,
    reason: "",
    headers: headersOf(hs),
  });
  const creds = answer(challenge(ch) as never, req)!;
  const signed = createRequest({ method: "REGISTER", uri: "sip:10.0.0.9", headers: [...req.headers, creds] });
  assertEquals(auth.check(signed, "Authorization"), { ok: true, user: "alice" });
  const replay = auth.check(signed, "Authorization");
  assertEquals(replay.ok, false);
  assertMatch((replay as { reason: string }).reason, /replay/);
  // The next nonce count of the same nonce is fine; after the lifetime, the right answer is only stale.
  const creds2 = answer(challenge(ch) as never, req)!;
  const signed2 = createRequest({ method: "REGISTER", uri: "sip:10.0.0.9", headers: [...req.headers, creds2] });
  clock.advance(60_001);
  const stale = auth.check(signed2, "Authorization");
  assertEquals(stale, { ok: false, stale: true, user: "alice", reason: "nonce expired" });
  // bob's password was given with a space after the colon: trimmed.
  assert(auth.hasUser("bob"));
});

Deno.test("auth: two clients challenged in the same millisecond get distinct nonces; each one's nc=1 is accepted", () => {
  const clock = new VirtualClock(); // the clock stands still: both challenges are issued at the same instant
  const auth = new DigestChallenger({ realm: "r", users: parseUsers("alice:pw-a\nbob:pw-b\n"), clock });
  const signedBy = (user: string, password: string) => {
    const req: SipRequest = createRequest({
      method: "REGISTER",
      uri: "sip:10.0.0.9",
      headers: [["Call-ID", user], ["CSeq", "1 REGISTER"], ["From", `<sip:${user}@r>;tag=1`], [
        "To",
        `<sip:${user}@r>`,
      ]],
    });
    const ch = auth.challenge("WWW-Authenticate");
    const answer = digestAuthenticator({ username: user, password }, { cnonce: () => "c1" });
    const response = { ...req, kind: "response" as const, status: 401, reason: "", headers: headersOf(ch) };
    const creds = answer(response as never, req)!;
    return {
      nonce: /nonce="([^"]+)"/.exec(ch[0][1])![1],
      req: { ...req, headers: headersOf([...req.headers, creds]) },
    };
  };
  const a = signedBy("alice", "pw-a");
  const b = signedBy("bob", "pw-b");
  assert(a.nonce !== b.nonce, `the same nonce twice: ${a.nonce}`);
  assertEquals(auth.check(a.req, "Authorization"), { ok: true, user: "alice" });
  assertEquals(auth.check(b.req, "Authorization"), { ok: true, user: "bob" });
  // A nonce whose random part was changed is not one this server issued.
  const [issued, , mac] = a.nonce.split(".");
  const forged = createRequest({
    method: "REGISTER",
    uri: "sip:10.0.0.9",
    headers: [...a.req.headers].map(([k, v]) =>
      [k, k === "Authorization" ? v.replace(a.nonce, `${issued}.0000000000000000.${mac}`) : v] as [string, string]
    ),
  });
  assertMatch((auth.check(forged, "Authorization") as { reason: string }).reason, /did not issue/);
});

function headersOf(hs: [string, string][]) {
  return createRequest({ method: "X", uri: "sip:x", headers: hs }).headers;
}

// ---- B2BUA -------------------------------------------------------------------------------

/** Alice (behind NAT) and bob registered at a relay; alice calls bob, bob rings, answers. */
async function establishedCall(over: Parameters<typeof relayWorld>[0] = {}) {
  const w = relayWorld({ users: USERS, ...over });
  // Alice is behind NAT: her Contact, Via and SDP say 192.168.1.10 (unreachable here); her packets come from
  // 203.0.113.5, her RTP from port 40002 while her SDP says 30000.
  const alice = new Phone(w, {
    user: "alice",
    ip: "203.0.113.5",
    privateIp: "192.168.1.10",
    password: "alice-pw-1",
    rtpPort: 40002,
    sdpPort: 30000,
  });
  const bob = new Phone(w, { user: "bob", ip: "10.0.0.2", password: "bob-pw-2", rtpPort: 32000 });
  await registerAll(w, alice, bob);
  const a = alice.call("bob");
  await run(w, 20);
  assertEquals(bob.incoming.length, 1, w.logs.lines.join("\n"));
  const b = bob.incoming[0];
  b.ringing();
  await run(w, 20);
  b.accept(bob.answer(b.offer!));
  await run(w, 30);
  assertEquals(a.state, "established", w.logs.lines.join("\n"));
  assertEquals(b.state, "established");
  return { w, alice, bob, a, b };
}

Deno.test("b2bua: an INVITE between registered users becomes two legs, each with its own port pair at the relay", async () => {
  const { w, alice, bob, a, b } = await establishedCall();
  try {
    // The INVITE was challenged (407) before it was relayed.
    assertEquals(alice.responses("INVITE", 407).length, 1);
    // Bob's leg: a new call with the caller's From (her URI, a new tag), to bob's registered contact, SDP
    // pointing at the relay.
    assertMatch(b.request.headers.get("From")!, /^<sip:alice@192\.168\.1\.10>;tag=/);
    assert(b.request.headers.get("From") !== a.invite.headers.get("From"));
    assertEquals(b.request.uri, "sip:bob@10.0.0.2:5060");
    assert(b.callId !== a.callId, "the legs are separate dialogs");
    const offerB = negotiated(b.offer!, { registry: codecs });
    assertEquals(offerB.remoteAddress, RELAY_IP);
    const answerA = negotiated(a.remoteSdp!, { registry: codecs });
    assertEquals(answerA.remoteAddress, RELAY_IP);
    assert(offerB.remotePort !== answerA.remotePort, "two port pairs");
    assert(offerB.remotePort >= 20000 && offerB.remotePort <= 20099 && offerB.remotePort % 2 === 0);
    // Alice offered PCMU, PCMA: bob was offered both, chose PCMU; alice's answer carries PCMU only.
    assertMatch(bodyText(b.request), /m=audio \d+ RTP\/AVP 0 8\r\n/);
    assertMatch(a.remoteSdp!, /m=audio \d+ RTP\/AVP 0\r\n/);
    assertEquals(alice.responses("INVITE", 180).length, 1, "bob's ringing reached alice");
    const st = w.relay.stats();
    assertEquals(st.calls.active, 1);
    assertEquals(st.active[0].codec, "PCMU");
    assertEquals(st.active[0].state, "answered");
    assertEquals([st.active[0].from, st.active[0].to], ["alice", "bob"]);
    assert(w.logs.lines.some((l) => /call 1: answered by bob, PCMU/.test(l)));
  } finally {
    void a.hangup();
    await run(w, 50);
    await alice.close();
    await bob.close();
    await w.relay.close();
  }
});

Deno.test("b2bua: RTP and RTCP relayed packet for packet, latched to a NATed source; foreign sources dropped", async () => {
  const { w, alice, bob, a, b } = await establishedCall();
  try {
    const relayA = negotiated(a.remoteSdp!, { registry: codecs }); // where alice sends
    const relayB = negotiated(b.offer!, { registry: codecs }); // where bob sends
    const toA = { hostname: RELAY_IP, port: relayA.remotePort };
    const toB = { hostname: RELAY_IP, port: relayB.remotePort };
    // Bob talks first: alice's SDP names another IP (private) than her SIP messages', so nothing goes to it
    // until she is heard.
    bob.rtp.post(rtpPacket(0, 1, 0xb0b), toB);
    await run(w, 10);
    assertEquals(alice.gotRtp.length, 0);
    assertEquals(w.net.undeliverable, 0, "a packet went to alice's SDP address");
    // Alice talks from 203.0.113.5:40002 (SDP said 192.168.1.10:30000): the relay latches to it.
    const sentA: Uint8Array[] = [], sentB: Uint8Array[] = [];
    for (let i = 0; i < 50; i++) {
      const pa = rtpPacket(0, 1000 + i, 0xa11ce, i), pb = rtpPacket(0, 2 + i, 0xb0b, 200 - i);
      sentA.push(pa);
      sentB.push(pb);
      alice.rtp.post(pa, toA);
      bob.rtp.post(pb, toB);
      await run(w, 20);
    }
    alice.rtcp.post(rtcpPacket(0xa11ce), { hostname: RELAY_IP, port: relayA.remotePort + 1 });
    bob.rtcp.post(rtcpPacket(0xb0b), { hostname: RELAY_IP, port: relayB.remotePort + 1 });
    // A stranger, and alice's own IP from another port while her latched source talks: dropped.
    const stranger = w.net.bind("10.6.6.6", 7000);
    const sameIp = w.net.bind("203.0.113.5", 40100);
    stranger.post(rtpPacket(0, 9, 0xbad), toA);
    sameIp.post(rtpPacket(0, 9, 0xbad), toA);
    await run(w, 20);
    // Bob got all of alice's packets, byte for byte, in order, from his leg's relay port.
    assertEquals(bob.gotRtp.map((g) => [...g.data]), sentA.map((p) => [...p]));
    assert(bob.gotRtp.every((g) => g.from.hostname === RELAY_IP && g.from.port === relayB.remotePort));
    // Alice got bob's packets sent after she was heard (the first one was not sent).
    assertEquals(alice.gotRtp.map((g) => [...g.data]), sentB.map((p) => [...p]));
    assert(alice.gotRtp.every((g) => g.from.hostname === RELAY_IP && g.from.port === relayA.remotePort));
    assertEquals(alice.gotRtcp.length, 1);
    assertEquals(bob.gotRtcp.length, 1);
    assertEquals(alice.gotRtcp[0].from.port, relayA.remotePort + 1);

    const [c] = w.relay.stats().active;
    assertEquals(c.legs.a.sdp, "192.168.1.10:30000");
    assertEquals(c.legs.a.latched_rtp, "203.0.113.5:40002");
    assertEquals(c.legs.a.latched_rtcp, "203.0.113.5:40003");
    assertEquals(c.legs.b.latched_rtp, "10.0.0.2:32000");
    assertEquals(c.legs.a.rtp, { packets_in: 50, bytes_in: 50 * 172, packets_out: 50, bytes_out: 50 * 172 });
    assertEquals(c.legs.b.rtp, { packets_in: 51, bytes_in: 51 * 172, packets_out: 50, bytes_out: 50 * 172 });
    assertEquals(c.legs.a.rtcp.packets_in, 1);
    assertEquals(c.legs.a.dropped.foreign, 2);
    assertEquals(c.legs.b.dropped.foreign, 0);
    assertEquals(c.legs.b.dropped.not_ready, 1, "bob's first packet, before alice was heard");
    assertEquals(w.net.undeliverable, 0);
    assert(
      w.logs.lines.some((l) => /leg a RTP latched to 203\.0\.113\.5:40002 \(SDP said 192\.168\.1\.10:30000\)/.test(l)),
    );
    await stranger.close();
    await sameIp.close();
  } finally {
    void a.hangup();
    await run(w, 50);
    await alice.close();
    await bob.close();
    await w.relay.close();
  }
});

Deno.test("b2bua: an SDP naming another host than the phone's (the relay's loopback, a third party) gets nothing before the phone is heard; 0.0.0.0 or multicast: 488", async () => {
  for (const named of ["127.0.0.1", "10.9.9.9", "0.0.0.0", "224.0.0.1"]) {
    const w = relayWorld({});
    const alice = new Phone(w, { user: "alice", ip: "10.0.0.1" });
    const bob = new Phone(w, { user: "bob", ip: "10.0.0.2", rtpPort: 32000 });
    // A service at the address bob's answer names, e.g. on the relay's own host.
    const victim = w.net.bind(named === "0.0.0.0" || named === "224.0.0.1" ? "10.9.9.8" : named, 9999);
    const hit: Uint8Array[] = [];
    victim.listen((d) => void hit.push(d));
    try {
      await registerAll(w, alice, bob);
      const a = alice.call("bob");
      await run(w, 20);
      const b = bob.incoming[0];
      b.accept(
        bob.answer(b.offer!).replace(/c=IN IP4 10\.0\.0\.2/, `c=IN IP4 ${named}`).replace(
          /m=audio 32000 /,
          "m=audio 9999 ",
        ),
      );
      await run(w, 30);
      if (named === "0.0.0.0" || named === "224.0.0.1") {
        // Never a destination: the answer itself is refused (488 to alice, bob's leg hung up), nothing sent.
        assertEquals(a.endInfo?.status, 488, `${named}: ${w.logs.lines.join("\n")}`);
        assertEquals(b.state, "ended");
        assertEquals([hit.length, w.net.undeliverable], [0, 0]);
        continue;
      }
      assertEquals(a.state, "established", `${named}: ${w.logs.lines.join("\n")}`);
      const toA = { hostname: RELAY_IP, port: negotiated(a.remoteSdp!, { registry: codecs }).remotePort };
      const toB = { hostname: RELAY_IP, port: negotiated(b.offer!, { registry: codecs }).remotePort };
      for (let i = 0; i < 5; i++) alice.rtp.post(rtpPacket(0, i, 0xa11ce), toA);
      // A service on the relay's loopback sends to bob's leg: bob does not signal from loopback, so the leg does
      // not latch to it.
      if (named === "127.0.0.1") victim.post(rtpPacket(0, 1, 0xbad), toB);
      await run(w, 20);
      assertEquals(hit.length, 0, `${named}: the relay sent to the address bob's SDP named`);
      assertEquals(w.net.undeliverable, 0, `${named}: the relay sent to the address bob's SDP named`);
      let [c] = w.relay.stats().active;
      assertEquals(c.legs.b.latched_rtp, undefined, named);
      assertEquals(c.legs.a.dropped.not_ready, 5, named);
      assertEquals(c.legs.b.dropped.foreign, named === "127.0.0.1" ? 1 : 0, named);
      // Once bob is heard (from his signalling IP), his leg latches and alice's packets reach him.
      bob.rtp.post(rtpPacket(0, 1, 0xb0b), toB);
      await run(w, 20);
      alice.rtp.post(rtpPacket(0, 9, 0xa11ce), toA);
      await run(w, 20);
      [c] = w.relay.stats().active;
      assertEquals(c.legs.b.latched_rtp, "10.0.0.2:32000", named);
      assertEquals(bob.gotRtp.length, 1, named);
      assertEquals(hit.length, 0, named);
    } finally {
      for (const call of [...alice.ua.calls]) void call.hangup().catch(() => {});
      await run(w, 50);
      await victim.close();
      await alice.close();
      await bob.close();
      await w.relay.close();
    }
  }
});

Deno.test("b2bua: BYE from the callee reaches the caller behind NAT (at her public address); summary logged", async () => {
  const { w, alice, bob, a, b } = await establishedCall();
  try {
    await Promise.all([b.hangup(), run(w, 50)]);
    assertEquals(a.state, "ended");
    assertEquals(a.endInfo?.by, "remote");
    assertEquals(alice.requests("BYE").length, 1);
    assertEquals(w.relay.stats().calls.active, 0);
    const [done] = w.relay.stats().finished;
    assertMatch(done.ended!, /BYE from bob/);
    assert(
      w.logs.lines.some((l) =>
        /call 1 alice → bob ended: BYE from bob .*after [\d.]+ s, PCMU; a: rtp in 0 out 0/.test(l)
      ),
    );
  } finally {
    await alice.close();
    await bob.close();
    await w.relay.close();
  }
});

Deno.test("b2bua: BYE from the caller reaches the callee; the media ports are released", async () => {
  const { w, alice, bob, a, b } = await establishedCall();
  try {
    const port = negotiated(a.remoteSdp!, { registry: codecs }).remotePort;
    await Promise.all([a.hangup(), run(w, 50)]);
    assertEquals(b.state, "ended");
    assertEquals(b.endInfo?.by, "remote");
    assertEquals(b.endInfo?.reason, "BYE");
    // The port is free again: binding it works.
    const s = w.net.bind(RELAY_IP, port);
    await s.close();
  } finally {
    await alice.close();
    await bob.close();
    await w.relay.close();
  }
});

/** Alice and bob registered (no auth); alice calls bob; returns before bob answers. */
async function ringingCall(over: Parameters<typeof relayWorld>[0] = {}) {
  const w = relayWorld(over);
  const alice = new Phone(w, { user: "alice", ip: "10.0.0.1" });
  const bob = new Phone(w, { user: "bob", ip: "10.0.0.2" });
  await registerAll(w, alice, bob);
  const a = alice.call("bob");
  await run(w, 20);
  assertEquals(bob.incoming.length, 1, w.logs.lines.join("\n"));
  const b = bob.incoming[0];
  b.ringing();
  await run(w, 20);
  assertEquals(a.state, "proceeding");
  return { w, alice, bob, a, b };
}

Deno.test("b2bua: CANCEL from the caller cancels the callee's leg", async () => {
  const { w, alice, bob, a, b } = await ringingCall();
  try {
    a.cancel();
    await run(w, 50);
    assertEquals(b.state, "ended");
    assertEquals(b.endInfo?.reason, "CANCEL");
    assertEquals(a.state, "ended");
    assertEquals(a.endInfo?.status, 487);
    assertEquals(bob.requests("CANCEL").length, 1);
    assertMatch(w.relay.stats().finished[0].ended!, /CANCEL from alice/);
  } finally {
    await alice.close();
    await bob.close();
    await w.relay.close();
  }
});

Deno.test("b2bua: the callee's rejection is passed back with its status (486)", async () => {
  const { w, alice, bob, a, b } = await ringingCall();
  try {
    b.reject(486);
    await run(w, 50);
    assertEquals(a.state, "ended");
    assertEquals(a.endInfo?.status, 486);
    assertEquals(a.endInfo?.reason, "486 Busy Here");
    assertEquals(w.relay.stats().calls.active, 0);
  } finally {
    await alice.close();
    await bob.close();
    await w.relay.close();
  }
});

Deno.test("b2bua: no answer within ring_timeout → CANCEL to the callee, 408 to the caller", async () => {
  const { w, alice, bob, a, b } = await ringingCall({ ringTimeout: 5 });
  try {
    await run(w, 5000, 100);
    assertEquals(a.state, "ended");
    assertEquals(a.endInfo?.status, 408);
    assertEquals(b.state, "ended");
    assertEquals(b.endInfo?.reason, "CANCEL");
  } finally {
    await alice.close();
    await bob.close();
    await w.relay.close();
  }
});

Deno.test("b2bua: refusals: unregistered caller 403, unknown callee 404, unregistered user 480, call limit 503", async () => {
  const w = relayWorld({ maxCalls: 1, retryAfter: 9 });
  const alice = new Phone(w, { user: "alice", ip: "10.0.0.1" });
  const bob = new Phone(w, { user: "bob", ip: "10.0.0.2" });
  const carol = new Phone(w, { user: "carol", ip: "10.0.0.3" });
  try {
    const early = alice.call("bob");
    await run(w, 20);
    assertEquals(early.endInfo?.status, 403, "alice is not registered yet");
    for (const p of [alice, bob, carol]) {
      const r = p.register();
      await run(w, 20);
      await r;
    }
    const nobody = alice.call("dave");
    await run(w, 20);
    assertEquals(nobody.endInfo?.status, 404);
    const first = alice.call("bob");
    await run(w, 20);
    assertEquals(first.state, "proceeding"); // bob has not answered: the call is in progress
    const second = carol.call("alice");
    await run(w, 20);
    assertEquals(second.endInfo?.status, 503);
    assertEquals(carol.responses("INVITE", 503)[0].headers.get("Retry-After"), "9");
    const st = w.relay.stats();
    assertEquals(st.calls.refused_busy, 1);
    first.cancel();
    await run(w, 50);
  } finally {
    for (const p of [alice, bob, carol]) await p.close();
    await w.relay.close();
  }
  // With users configured, a configured user who is not registered is 480, not 404.
  const w2 = relayWorld({ users: USERS });
  const a2 = new Phone(w2, { user: "alice", ip: "10.0.0.1", password: "alice-pw-1" });
  try {
    const r = a2.register();
    await run(w2, 20);
    await r;
    const call = a2.call("carol");
    await run(w2, 30);
    assertEquals(call.endInfo?.status, 480);
  } finally {
    await a2.close();
    await w2.relay.close();
  }
});

Deno.test("b2bua: near the descriptor limit, a relayed call is counted as the 4 descriptors it holds (two port pairs), not as two calls that record (8)", async () => {
  // 100 descriptors open of 204: 40 free beyond the 64 kept. INVITEs that come together are admitted before a count
  // sees their sockets: each is taken to hold what a relayed call holds, 4, so 11 are relayed (the 11th leaves 60),
  // then 503. Counted as two calls of 4 each (8), only 6 were, with room for 10.
  const w = relayWorld({ openFiles: () => ({ open: 100, limit: 204 }) });
  const alice = new Phone(w, { user: "alice", ip: "10.0.0.1" });
  const bob = new Phone(w, { user: "bob", ip: "10.0.0.2" });
  try {
    await registerAll(w, alice, bob);
    const calls = Array.from({ length: 14 }, () => alice.call("bob"));
    await run(w, 20);
    assertEquals(bob.incoming.length, 11, w.logs.lines.join("\n"));
    assertEquals(calls.filter((c) => c.endInfo?.status === 503).length, 3);
    assertEquals(calls.filter((c) => c.state === "proceeding").length, 11);
    assert(w.logs.lines.some((l) => /overloaded \(\d+ of the 204 open files allowed are in use/.test(l)));
    for (const c of calls) if (c.state === "proceeding") c.cancel();
    await run(w, 50);
  } finally {
    await alice.close();
    await bob.close();
    await w.relay.close();
  }
});

Deno.test("b2bua: codec negotiation: the callee is offered the caller's codecs the relay allows; no common codec → 488", async () => {
  const w = relayWorld({ allowedCodecs: ["PCMA", "PCMU"] });
  const alice = new Phone(w, { user: "alice", ip: "10.0.0.1", codecs: ["PCMA", "PCMU"] });
  const bob = new Phone(w, { user: "bob", ip: "10.0.0.2", codecs: ["PCMU"] });
  try {
    await registerAll(w, alice, bob);
    const a = alice.call("bob");
    await run(w, 20);
    const b = bob.incoming[0];
    assertMatch(bodyText(b.request), /m=audio \d+ RTP\/AVP 8 0\r\n/); // alice's order
    b.accept(bob.answer(b.offer!)); // bob takes PCMU only
    await run(w, 30);
    assertEquals(negotiated(a.remoteSdp!, { registry: codecs }).codec, "PCMU");
    assertMatch(a.remoteSdp!, /m=audio \d+ RTP\/AVP 0\r\n/);
    void a.hangup();
    await run(w, 50);
    // An offer of a codec the relay does not carry: 488, nobody is called.
    const odd = alice.ua.invite(`sip:bob@${RELAY_IP}:5060`, {
      sdp: "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n" +
        "m=audio 30000 RTP/AVP 96\r\na=rtpmap:96 opus/48000/2\r\n",
    });
    await run(w, 20);
    assertEquals(odd.endInfo?.status, 488);
    assertEquals(bob.incoming.length, 1);
    // A secure profile (RTP/SAVP) the relay cannot answer: 488 at once, before bob's phone rings.
    const secure = alice.ua.invite(`sip:bob@${RELAY_IP}:5060`, {
      sdp: "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n" +
        "m=audio 30000 RTP/SAVP 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz\r\n",
    });
    await run(w, 20);
    assertEquals(secure.endInfo?.status, 488);
    assertEquals(bob.incoming.length, 1, "bob was called for an offer the relay cannot answer");
    // Bob answers with a codec he was not offered: the caller gets 488 (not 480), bob's leg is hung up.
    const bad = alice.call("bob");
    await run(w, 20);
    assertEquals(bob.incoming.length, 2);
    const b2 = bob.incoming[1];
    b2.accept(
      "v=0\r\no=- 1 1 IN IP4 10.0.0.2\r\ns=-\r\nc=IN IP4 10.0.0.2\r\nt=0 0\r\n" +
        "m=audio 32000 RTP/AVP 96\r\na=rtpmap:96 opus/48000/2\r\n",
    );
    await run(w, 50);
    assertEquals(bad.endInfo?.status, 488, `the caller got ${bad.endInfo?.reason}`);
    assertEquals(b2.state, "ended");
    assertMatch(w.relay.stats().finished.at(-1)!.ended!, /^488 \(/);
  } finally {
    await alice.close();
    await bob.close();
    await w.relay.close();
  }
});

Deno.test("b2bua: DTMF: telephone-event offered through the relay; its packets relayed with each side's payload type", async () => {
  const w = relayWorld({ users: USERS });
  const alice = new Phone(w, { user: "alice", ip: "10.0.0.1", password: "alice-pw-1" });
  const bob = new Phone(w, { user: "bob", ip: "10.0.0.2", password: "bob-pw-2", rtpPort: 32000 });
  try {
    await registerAll(w, alice, bob);
    // Alice offers PCMU and telephone-event on payload type 120.
    const plain = createOffer({
      address: "10.0.0.1",
      port: 30000,
      registry: codecs,
      codecs: ["PCMU"],
      telephoneEvent: true,
    });
    const te = /a=rtpmap:(\d+) telephone-event\/8000/.exec(plain)![1];
    const offer = plain.replace(` ${te}\r\n`, " 120\r\n").replace(`a=rtpmap:${te} `, "a=rtpmap:120 ")
      .replace(`a=fmtp:${te} `, "a=fmtp:120 ");
    assertMatch(offer, /m=audio 30000 RTP\/AVP 0 120\r\n/);
    const a = alice.call("bob", offer);
    await run(w, 20);
    const b = bob.incoming[0];
    const relayTe = Number(/a=rtpmap:(\d+) telephone-event\/8000/.exec(b.offer!)?.[1]);
    assert(relayTe >= 96 && relayTe !== 120, `the callee is offered telephone-event (${relayTe}):\n${b.offer}`);
    b.accept(createAnswer(b.offer!, { address: "10.0.0.2", port: 32000, registry: codecs, telephoneEvent: true }));
    await run(w, 30);
    assertMatch(a.remoteSdp!, /m=audio \d+ RTP\/AVP 0 120\r\n/, "the caller is answered on its own numbers");
    const toA = { hostname: RELAY_IP, port: negotiated(a.remoteSdp!, { registry: codecs }).remotePort };
    const toB = { hostname: RELAY_IP, port: negotiated(b.offer!, { registry: codecs }).remotePort };
    alice.rtp.post(rtpPacket(0, 1, 0xa11ce), toA);
    alice.rtp.post(rtpPacket(120, 2, 0xa11ce), toA);
    await run(w, 20);
    bob.rtp.post(rtpPacket(0, 1, 0xb0b), toB);
    bob.rtp.post(rtpPacket(relayTe, 2, 0xb0b), toB);
    await run(w, 20);
    assertEquals(bob.gotRtp.map((g) => g.data[1] & 0x7f), [0, relayTe], "alice's DTMF arrives on bob's number");
    assertEquals(alice.gotRtp.map((g) => g.data[1] & 0x7f), [0, 120], "bob's DTMF arrives on alice's number");
    assertEquals(
      [...bob.gotRtp[1].data.subarray(2)],
      [...rtpPacket(120, 2, 0xa11ce).subarray(2)],
      "only the type changed",
    );
    void a.hangup();
    await run(w, 50);
  } finally {
    await alice.close();
    await bob.close();
    await w.relay.close();
  }
});

Deno.test("b2bua: media_timeout hangs up both legs of a call where nobody sends media, on time", async () => {
  const { w, alice, bob, a, b } = await establishedCall({ mediaTimeout: 10 });
  try {
    // The call was answered less than 100 ms ago: still up just short of 10 s, over well within a second after.
    await run(w, 9_800, 100);
    assertEquals(a.state, "established");
    await run(w, 1_000, 100);
    assertEquals(a.state, "ended");
    assertEquals(b.state, "ended");
    assertMatch(w.relay.stats().finished[0].ended!, /no media for 10 s/);
  } finally {
    await alice.close();
    await bob.close();
    await w.relay.close();
  }
});

// ---- the control plugin --------------------------------------------------------------------

Deno.test("sip-relay control: pipelines/sip-relay.json runs on a memory network; users from a file; stops on abort", async () => {
  const dir = await Deno.makeTempDir({ prefix: "voxpipe-sip-relay-ctl-" });
  try {
    await Deno.writeTextFile(`${dir}/users`, "# users\nalice:alice-pw-1\n\nbob:bob-pw-2\n");
    const clock = new VirtualClock();
    const net = new MemoryNetwork({ clock, latencyMs: 1 });
    const out = new MemoryOutput();
    const abort = new AbortController();
    const runner = await PipelineRunner.load(repoPath("pipelines/sip-relay.json"), {
      registry: createRegistry(),
      clock,
      net,
      log: new Logger({ level: "info", outputs: [out] }),
      signal: abort.signal,
      set: [`bind=${RELAY_IP}`, `users_file=${dir}/users`, "rtp_ports=20000-20009"],
    });
    let ended = false;
    const running = runner.run().finally(() => ended = true);
    // It listens once its start is done: reading the users file, binding its socket (real work).
    await settleUntil(clock, () => ended || net.bound(RELAY_IP, 5060), "the relay listening");
    // A phone on the same network registers with its password.
    const alice = new SipUserAgent({
      transport: net.bind("10.0.0.1", 5060),
      clock,
      userName: "alice",
      overload: false,
      authenticator: digestAuthenticator({ username: "alice", password: "alice-pw-1" }),
    });
    const reg = alice.register({ registrar: `sip:${RELAY_IP}`, aor: `sip:alice@${RELAY_IP}`, expires: 600 });
    await clock.advanceAsync(20, 5);
    assertEquals((await reg).expires, 600);
    abort.abort();
    await clock.advanceAsync(100, 10);
    assertEquals((await running).code, 0);
    await alice.close();
    const log = out.lines.join("\n");
    assertMatch(
      log,
      /\[B2BUA\] registrar and B2BUA on udp 10\.0\.0\.9:5060: .*digest auth \(realm "voxpipe", 2 users\)/,
    );
    assertMatch(log, /\[REGISTRAR\] register alice: sip:alice@10\.0\.0\.1:5060 from 10\.0\.0\.1:5060 for 600 s/);
    assert(!log.includes("alice-pw-1") && !log.includes("bob-pw-2"), "a password is in the log");
    // Bad users: a clear error naming the option, never the password.
    for (
      const [set, re] of [
        [[`users_file=${dir}/missing`], /control\.users_file: cannot read .*missing/],
        [["users=alice"], /control\.users: entry 1 is not user:password/],
        [["users=alice:x", `users_file=${dir}/users`], /user alice is in both control\.users and control\.users_file/],
      ] as const
    ) {
      const r = await PipelineRunner.load(repoPath("pipelines/sip-relay.json"), {
        registry: createRegistry(),
        clock,
        net,
        set: [...set],
      });
      const e = await r.run().then(() => undefined, (e) => e);
      assert(e instanceof Error, `expected an error for ${set}`);
      assertMatch(e.message, re);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("b2bua: early media: the callee's 183 with SDP gives the caller a 183 with the relay's SDP; media flows before the answer", async () => {
  const w = relayWorld();
  const alice = new Phone(w, { user: "alice", ip: "10.0.0.1" });
  const bob = new Phone(w, { user: "bob", ip: "10.0.0.2", rtpPort: 32000 });
  try {
    await registerAll(w, alice, bob);
    const a = alice.call("bob");
    const early: string[] = [];
    a.on("progress", (p) => p.sdp && early.push(p.sdp));
    await run(w, 20);
    const b = bob.incoming[0];
    const answer = bob.answer(b.offer!);
    b.ringing(answer); // 183 Session Progress with SDP
    await run(w, 20);
    assertEquals(early.length, 1);
    const relayA = negotiated(early[0], { registry: codecs });
    assertEquals(relayA.remoteAddress, RELAY_IP);
    const relayB = negotiated(b.offer!, { registry: codecs });
    // A ringback tone from bob reaches alice through the relay before anyone answered.
    alice.rtp.post(rtpPacket(0, 1, 0xa), { hostname: RELAY_IP, port: relayA.remotePort }); // alice is heard: latched
    for (let i = 0; i < 5; i++) {
      bob.rtp.post(rtpPacket(0, 10 + i, 0xb), { hostname: RELAY_IP, port: relayB.remotePort });
    }
    await run(w, 20);
    assertEquals(alice.gotRtp.length, 5);
    assertEquals(bob.gotRtp.length, 1);
    assertEquals(a.state, "proceeding");
    b.accept(answer);
    await run(w, 30);
    assertEquals(a.state, "established");
    assertEquals(a.remoteSdp, early[0], "the 200's SDP is the 183's");
    void a.hangup();
    await run(w, 50);
  } finally {
    await alice.close();
    await bob.close();
    await w.relay.close();
  }
});

Deno.test("b2bua: a latched source silent for 2 s is replaced by a new one from the same IP (NAT rebinding)", async () => {
  const { w, alice, bob, a, b } = await establishedCall();
  try {
    const toA = { hostname: RELAY_IP, port: negotiated(a.remoteSdp!, { registry: codecs }).remotePort };
    const toB = { hostname: RELAY_IP, port: negotiated(b.offer!, { registry: codecs }).remotePort };
    alice.rtp.post(rtpPacket(0, 1, 0xa), toA);
    await run(w, 20);
    const rebound = w.net.bind("203.0.113.5", 40010);
    const got: number[] = [];
    rebound.listen((d) => void got.push(d[3]));
    rebound.post(rtpPacket(0, 2, 0xa), toA); // too soon: alice's latched source talked 20 ms ago
    await run(w, 20);
    assertEquals(w.relay.stats().active[0].legs.a.dropped.foreign, 1);
    await run(w, 2000, 100);
    rebound.post(rtpPacket(0, 3, 0xa), toA); // 2 s of silence: the NAT's new mapping takes over
    await run(w, 20);
    bob.rtp.post(rtpPacket(0, 7, 0xb), toB);
    await run(w, 20);
    assertEquals(got, [7], "bob's packet went to the new source");
    assertEquals(w.relay.stats().active[0].legs.a.latched_rtp, "203.0.113.5:40010");
    assertEquals(bob.gotRtp.length, 2);
    await rebound.close();
  } finally {
    void a.hangup();
    await run(w, 50);
    await alice.close();
    await bob.close();
    await w.relay.close();
  }
});
