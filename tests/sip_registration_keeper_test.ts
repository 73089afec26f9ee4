/**
 * The registration lifecycle on the in-memory network with a VirtualClock:
 * `ua.keepRegistered()` against a registrar handler (`ua.onRegister`) — the
 * refresh before expiry (half the grant, or 5 s before its end), with the same
 * Call-ID and the next CSeq; `423 Interval Too Brief` answered with
 * `Min-Expires`; registering again after failures with a doubling backoff and
 * `Retry-After`; removal (`Expires: 0`) on stop; digest challenges on every
 * refresh; and the outbound proxy (requests to the proxy, `Route: <...;lr>`,
 * Request-URI unchanged).
 */
import { MemoryNetwork } from "../core/net/memory.ts";
import { codecs } from "./registry_util.ts";
import assert from "node:assert/strict";
import { VirtualClock } from "../core/clock.ts";
import { Logger, MemoryOutput } from "../core/log.ts";
import {
  createOffer,
  digestAuthenticator,
  digestResponse,
  type KeeperFailure,
  parseCredentials,
  refreshDelay,
  type RegisterRequest,
  type RegistrarReply,
  type Registration,
  RegistrationError,
  type SipRequest,
  SipUserAgent,
  type SipUserAgentOptions,
} from "../plugins/sip/mod.ts";
import { MemoryPeer } from "./sip_memory_peer.ts";

function setup(opts: Partial<SipUserAgentOptions> = {}) {
  const clock = new VirtualClock();
  const net = new MemoryNetwork({ clock, latencyMs: 5 });
  const out = new MemoryOutput();
  const log = new Logger({ level: "debug", outputs: [out] });
  const alice = new SipUserAgent({
    transport: net.bind("10.0.0.1", 5060),
    clock,
    log,
    userName: "alice",
    ...opts,
  });
  const registrar = new SipUserAgent({ transport: net.bind("10.0.0.2", 5060), clock, log, userName: "reg" });
  /** Every REGISTER the registrar saw, with the time it arrived. */
  const seen: { at: number; r: RegisterRequest }[] = [];
  let reply: (r: RegisterRequest) => RegistrarReply = (r) => ({
    status: 200,
    contacts: r.contacts.map((c) => ({ uri: c.uri, expires: c.expires ?? r.expires ?? 3600 })),
  });
  registrar.onRegister((r) => {
    seen.push({ at: clock.now(), r });
    return reply(r);
  });
  const close = async () => {
    await alice.close();
    await registrar.close();
    clock.advance(100);
  };
  return {
    clock,
    net,
    out,
    alice,
    seen,
    setReply: (f: typeof reply) => (reply = f),
    close,
  };
}

/** Advances the virtual clock by `ms` in steps, letting promise callbacks run between steps. */
async function run(clock: VirtualClock, ms: number, step = 50): Promise<void> {
  for (let t = 0; t < ms; t += step) {
    clock.advance(Math.min(step, ms - t));
    for (let i = 0; i < 4; i++) await Promise.resolve();
  }
}

Deno.test("keeper: refresh delay is min(expires/2, expires − 5 s), never under 1 s", () => {
  assert.equal(refreshDelay(3600), 1800);
  assert.equal(refreshDelay(600), 300);
  assert.equal(refreshDelay(10), 5);
  assert.equal(refreshDelay(8), 3);
  assert.equal(refreshDelay(4), 1);
});

Deno.test("keeper: registers, refreshes at half the grant with the same Call-ID and the next CSeq, unregisters on stop", async () => {
  const { clock, alice, seen, setReply, close } = setup();
  // The registrar grants at most 120 s, whatever is asked.
  setReply((r) => ({
    status: 200,
    contacts: r.contacts.map((c) => ({ uri: c.uri, expires: Math.min(r.expires ?? 3600, 120) })),
  }));
  const keeper = alice.keepRegistered({ registrar: "sip:10.0.0.2", aor: "sip:alice@example.com", expires: 600 });
  const registered: Registration[] = [];
  keeper.on("registered", (r) => registered.push(r));
  await run(clock, 100);
  const first = await keeper.ready;
  assert.equal(first.expires, 120);
  assert.equal(keeper.state, "registered");
  assert.equal(seen.length, 1);

  // Nothing until 60 s (half of 120); then a refresh.
  await run(clock, 59_000 - 100);
  assert.equal(seen.length, 1, "no refresh before half the granted lifetime");
  await run(clock, 1_200);
  assert.equal(seen.length, 2, "refreshed at 60 s");
  assert.ok(seen[1].at >= 60_000 && seen[1].at < 60_100, `refresh at ${seen[1].at} ms`);
  assert.equal(seen[1].r.callId, seen[0].r.callId);
  assert.equal(seen[1].r.cseq, seen[0].r.cseq + 1);
  assert.equal(seen[1].r.expires, 600, "a refresh asks for the configured lifetime again");
  await run(clock, 60_000);
  assert.equal(seen.length, 3, "and again 60 s later");
  assert.equal(registered.length, 3);
  assert.equal(keeper.current, registered[2]);

  // Stop: Expires 0, same Call-ID, next CSeq; no more refreshes.
  const stopped = keeper.stop();
  await run(clock, 200);
  await stopped;
  assert.equal(seen.length, 4);
  assert.equal(seen[3].r.expires, 0);
  assert.equal(seen[3].r.callId, seen[0].r.callId);
  assert.equal(seen[3].r.cseq, 4);
  assert.equal(keeper.state, "stopped");
  await run(clock, 300_000, 1000);
  assert.equal(seen.length, 4, "nothing after stop");
  await close();
});

Deno.test("keeper: a short grant is refreshed 5 s before it ends", async () => {
  const { clock, alice, seen, setReply, close } = setup();
  setReply((r) => ({ status: 200, contacts: r.contacts.map((c) => ({ uri: c.uri, expires: 8 })) }));
  const keeper = alice.keepRegistered({ registrar: "sip:10.0.0.2", aor: "sip:alice@example.com", expires: 8 });
  await run(clock, 3_000, 10);
  assert.equal(seen.length, 1);
  await run(clock, 100, 10);
  assert.equal(seen.length, 2, "refreshed 3 s after the grant (8 − 5), before half (4 s)");
  await keeper.stop({ unregister: false });
  await close();
});

Deno.test("keeper: 423 Interval Too Brief → REGISTER again with Min-Expires, and refreshes keep it", async () => {
  const { clock, alice, seen, setReply, out, close } = setup();
  setReply((r) =>
    (r.expires ?? 0) > 0 && (r.expires ?? 0) < 300
      ? { status: 423, headers: [["Min-Expires", "300"]] }
      : { status: 200, contacts: r.contacts.map((c) => ({ uri: c.uri, expires: r.expires ?? 300 })) }
  );
  const keeper = alice.keepRegistered({ registrar: "sip:10.0.0.2", aor: "sip:alice@example.com", expires: 60 });
  await run(clock, 200);
  const reg = await keeper.ready;
  assert.deepEqual(seen.map((s) => s.r.expires), [60, 300]);
  assert.equal(seen[1].r.callId, seen[0].r.callId);
  assert.equal(seen[1].r.cseq, 2);
  assert.equal(reg.expires, 300);
  assert.ok(
    out.lines.some((l) => l.includes("423 Interval Too Brief: registering again with expires 300 (Min-Expires)")),
  );
  await run(clock, 150_000, 500);
  assert.deepEqual(seen.map((s) => s.r.expires), [60, 300, 300], "the refresh asks for Min-Expires directly");

  // A 423 without a usable Min-Expires is a failure.
  const { clock: c2, alice: a2, setReply: r2, close: close2 } = setup();
  r2(() => ({ status: 423 }));
  const err = await Promise.all([
    a2.register({ registrar: "sip:10.0.0.2", aor: "sip:alice@example.com", expires: 60 }).then(
      () => undefined,
      (e) => e,
    ),
    run(c2, 200),
  ]).then(([e]) => e);
  assert.ok(err instanceof RegistrationError);
  assert.match(err.message, /423 Interval Too Brief without a Min-Expires above 60/);
  await keeper.stop({ unregister: false });
  await close();
  await close2();
});

Deno.test("keeper: failures → ready rejects, then registers again after 5, 10, 20 s (doubling), honouring Retry-After; success resets", async () => {
  const { clock, alice, seen, setReply, close } = setup();
  let failuresLeft = 3;
  setReply((r) => {
    if (failuresLeft-- > 0) return { status: 503, reason: "Service Unavailable" };
    return { status: 200, contacts: r.contacts.map((c) => ({ uri: c.uri, expires: 3600 })) };
  });
  const failures: KeeperFailure[] = [];
  const keeper = alice.keepRegistered({ registrar: "sip:10.0.0.2", aor: "sip:alice@example.com" });
  keeper.on("failed", (f) => failures.push(f));
  await run(clock, 100);
  const err = await keeper.ready.then(() => undefined, (e) => e);
  assert.ok(err instanceof RegistrationError);
  assert.equal(err.status, 503);
  assert.equal(keeper.state, "retrying");
  await run(clock, 40_000, 100);
  assert.deepEqual(failures.map((f) => [f.attempt, f.retryInMs]), [[1, 5000], [2, 10_000], [3, 20_000]]);
  const at = seen.map((s) => s.at);
  assert.equal(at.length, 4);
  assert.ok(at[1] - at[0] >= 5000 && at[1] - at[0] < 5250, `${at}`);
  assert.ok(at[2] - at[1] >= 10_000 && at[2] - at[1] < 10_250, `${at}`);
  assert.ok(at[3] - at[2] >= 20_000 && at[3] - at[2] < 20_250, `${at}`);
  assert.equal(keeper.state, "registered");

  // A failed refresh: Retry-After 60 s beats the 5 s backoff (which restarted after the success).
  setReply(() => ({ status: 500, reason: "Server Internal Error", headers: [["Retry-After", "60"]] }));
  await run(clock, seen[3].at + 1_800_000 + 1000 - clock.now(), 1000);
  assert.equal(failures.length, 4);
  assert.deepEqual([failures[3].attempt, failures[3].retryInMs], [1, 60_000]);
  assert.equal(seen.at(-1)!.r.callId, seen[3].r.callId, "a refresh keeps the Call-ID after a failure too");
  await keeper.stop({ unregister: false });
  await close();
});

Deno.test("keeper: a 2xx that grants no lifetime (expires=0) is a failure whose backoff doubles like the others", async () => {
  const { clock, alice, seen, setReply, close } = setup();
  setReply((r) => ({ status: 200, contacts: r.contacts.map((c) => ({ uri: c.uri, expires: 0 })) }));
  const failures: KeeperFailure[] = [];
  const keeper = alice.keepRegistered({ registrar: "sip:10.0.0.2", aor: "sip:alice@example.com" });
  keeper.on("failed", (f) => failures.push(f));
  await run(clock, 40_000, 100);
  assert.deepEqual(failures.map((f) => [f.attempt, f.retryInMs]), [[1, 5000], [2, 10_000], [3, 20_000], [4, 40_000]]);
  assert.match(failures[0].error.message, /no lifetime \(expires 0\)/);
  assert.equal(seen.length, 4, "REGISTERs at 0, 5, 15 and 35 s");
  assert.equal(keeper.state, "retrying");
  await keeper.stop({ unregister: false });
  await close();
});

Deno.test("keeper: digest challenges on the first REGISTER and on each refresh", async () => {
  const password = "refresh-secret";
  const authenticator = digestAuthenticator({ username: "alice", password });
  const { clock, alice, seen, setReply, close } = setup({ authenticator });
  let nonce = 0;
  setReply((r) => {
    const value = r.request.headers.get("Authorization");
    const p = value ? parseCredentials(value).params : undefined;
    const ok = p && p.nonce === `n${nonce}` && p.response === digestResponse({
          algorithm: "SHA-256",
          username: p.username,
          realm: p.realm,
          password,
          method: "REGISTER",
          uri: p.uri,
          nonce: p.nonce,
          cnonce: p.cnonce,
          nc: parseInt(p.nc, 16),
          qop: "auth",
        });
    if (!ok) {
      return {
        status: 401,
        headers: [["WWW-Authenticate", `Digest realm="r", nonce="n${++nonce}", qop="auth", algorithm=SHA-256`]],
      };
    }
    return { status: 200, contacts: r.contacts.map((c) => ({ uri: c.uri, expires: 60 })) };
  });
  const keeper = alice.keepRegistered({ registrar: "sip:10.0.0.2", aor: "sip:alice@example.com", expires: 60 });
  await run(clock, 200);
  await keeper.ready;
  await run(clock, 30_000);
  assert.deepEqual(seen.map((s) => s.r.cseq), [1, 2, 3, 4], "challenge + answer, twice");
  assert.equal(keeper.state, "registered");
  await keeper.stop({ unregister: false });
  await close();
});

Deno.test("outbound proxy: INVITE, REGISTER and OPTIONS go to the proxy with Route <...;lr>; the Request-URI stays the target", async () => {
  const clock = new VirtualClock();
  const net = new MemoryNetwork({ clock, latencyMs: 5 });
  const alice = new SipUserAgent({
    transport: net.bind("10.0.0.1", 5060),
    clock,
    userName: "alice",
    outboundProxy: "sip:10.0.0.3:5070",
    aor: "sip:alice@example.com",
  });
  const proxy = new MemoryPeer(net, "10.0.0.3", 5070);
  proxy.onRequest = (req, from) => {
    if (req.method !== "ACK") proxy.respond(req, 404, from, { toTag: "px" });
  };
  const call = alice.invite("sip:bob@example.com", {
    sdp: createOffer({ registry: codecs, address: "10.0.0.1", port: 40000 }),
  });
  const reg = alice.register({ registrar: "sip:example.com", aor: "sip:alice@example.com" }).catch((e) => e);
  const opt = alice.options("sip:bob@example.com");
  await run(clock, 200, 10);
  const got: SipRequest[] = proxy.requests().filter((r) => r.method !== "ACK");
  assert.deepEqual(got.map((r) => [r.method, r.uri]).sort(), [
    ["INVITE", "sip:bob@example.com"],
    ["OPTIONS", "sip:bob@example.com"],
    ["REGISTER", "sip:example.com"],
  ]);
  for (const r of got) {
    assert.deepEqual(r.headers.getAll("Route"), ["<sip:10.0.0.3:5070;lr>"], r.method);
    assert.match(r.headers.get("From")!, /^<sip:alice@example\.com>;tag=/, r.method);
    assert.equal(r.headers.get("Contact"), "<sip:alice@10.0.0.1:5060>", r.method);
  }
  // The ACK for the 404 carries the INVITE's Route too (RFC 3261 §17.1.1.3).
  const ack = proxy.requests("ACK")[0];
  assert.deepEqual(ack.headers.getAll("Route"), ["<sip:10.0.0.3:5070;lr>"]);
  assert.equal(call.state, "ended");
  assert.equal((await reg).status, 404);
  assert.equal((await opt)?.status, 404);
  await alice.close();
  await proxy.close();
  assert.throws(
    () => new SipUserAgent({ transport: net.bind("10.0.0.9", 5060), clock, outboundProxy: "sip:[bad" }),
    /outboundProxy "sip:\[bad" is not a SIP URI .*use e.g. sip:proxy.example.com:5060/,
  );
  clock.advance(100);
});
