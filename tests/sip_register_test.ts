/**
 * The REGISTER seams against each other on the in-memory network with a
 * VirtualClock: `ua.register()` on one user agent, a registrar handler
 * (`ua.onRegister`) keeping bindings in a Map on the other. Checks the request
 * on the wire, the granted expiry, unregister, 405 without a handler, 400 for
 * unreadable REGISTERs, 500 when the handler fails, and a 401 answered through
 * the authenticator seam.
 */
import { FilteredSocket } from "../core/net/filtered.ts";
import { MemoryNetwork } from "../core/net/memory.ts";
import assert from "node:assert/strict";
import { VirtualClock } from "../core/clock.ts";
import { Logger, MemoryOutput } from "../core/log.ts";
import {
  type Authenticator,
  type DatagramTransport,
  parseMessage,
  type RegisterRequest,
  type RegistrarHandler,
  RegistrationError,
  type SipRequest,
  type SipResponse,
  SipUserAgent,
  topVia,
} from "../plugins/sip/mod.ts";

const td = new TextDecoder();

/** Records every datagram a transport sends. */
class Recorder extends FilteredSocket {
  readonly sent: string[] = [];
  constructor(inner: DatagramTransport) {
    super(inner, (data) => {
      this.sent.push(td.decode(data));
      return false;
    });
  }
}

function setup(opts: { authenticator?: Authenticator } = {}) {
  const clock = new VirtualClock();
  const net = new MemoryNetwork({ clock, latencyMs: 5 });
  const out = new MemoryOutput();
  const log = new Logger({ level: "debug", outputs: [out] });
  const wire = new Recorder(net.bind("10.0.0.1", 5060));
  const alice = new SipUserAgent({ transport: wire, clock, log, userName: "alice", ...opts });
  const registrar = new SipUserAgent({ transport: net.bind("10.0.0.2", 5060), clock, log, userName: "reg" });
  const probe = net.bind("10.0.0.66", 5060);
  const probeGot: SipResponse[] = [];
  probe.listen((d) => void probeGot.push(parseMessage(d) as SipResponse));
  const close = async () => {
    await alice.close();
    await registrar.close();
    await probe.close();
    clock.advance(100);
  };
  const requests = (method: string) =>
    wire.sent.map((s) => parseMessage(s)).filter((m): m is SipRequest => m.kind === "request" && m.method === method);
  return { clock, out, alice, registrar, probe, probeGot, requests, close };
}

/** A registrar: bindings per AOR, lifetimes capped at `max` seconds. */
function bindingStore(max = 600) {
  const bindings = new Map<string, Map<string, number>>();
  const seen: RegisterRequest[] = [];
  const handler: RegistrarHandler = (r) => {
    seen.push(r);
    const aor = bindings.get(r.aor) ?? new Map<string, number>();
    if (r.wildcard) aor.clear();
    for (const c of r.contacts) {
      const lifetime = Math.min(c.expires ?? r.expires ?? 3600, max);
      if (lifetime === 0) aor.delete(c.uri);
      else aor.set(c.uri, lifetime);
    }
    bindings.set(r.aor, aor);
    return { status: 200, contacts: [...aor].map(([uri, expires]) => ({ uri, expires })) };
  };
  return { bindings, seen, handler };
}

/** Advances the clock until `p` settles (async handlers need microtasks between steps). */
async function settle<T>(clock: VirtualClock, p: Promise<T>, ms = 200): Promise<T> {
  let done = false;
  const q = p.finally(() => (done = true));
  for (let t = 0; t < ms && !done; t += 5) {
    clock.advance(5);
    await Promise.resolve();
    await Promise.resolve();
  }
  return await q;
}

Deno.test("register: REGISTER on the wire, the registrar handler sees the binding, the granted expiry comes back; unregister removes it", async () => {
  const { clock, alice, registrar, requests, close } = setup();
  const store = bindingStore(600);
  registrar.onRegister(store.handler);
  const reg = await settle(clock, alice.register({ registrar: "sip:10.0.0.2", aor: "sip:alice@example.com" }));

  // What went out: the registrar as Request-URI, the AOR in To/From, our Contact, Expires, the usual headers.
  const [req] = requests("REGISTER");
  assert.equal(req.uri, "sip:10.0.0.2");
  assert.equal(req.headers.get("To"), "<sip:alice@example.com>");
  assert.match(req.headers.get("From")!, /^<sip:alice@example\.com>;tag=[0-9a-f]{12}$/);
  assert.equal(req.headers.get("Contact"), "<sip:alice@10.0.0.1:5060>");
  assert.equal(req.headers.get("Expires"), "3600");
  assert.equal(req.headers.get("CSeq"), "1 REGISTER");
  assert.equal(req.headers.get("Max-Forwards"), "70");
  assert.equal(req.headers.get("User-Agent"), "voxpipe/0.1");
  assert.match(req.headers.get("Via")!, /^SIP\/2.0\/UDP 10.0.0.1:5060;branch=z9hG4bK[0-9a-f]{16};rport$/);

  // What the registrar's handler saw.
  assert.equal(store.seen.length, 1);
  const seen = store.seen[0];
  assert.equal(seen.aor, "sip:alice@example.com");
  assert.deepEqual(seen.contacts, [{ uri: "sip:alice@10.0.0.1:5060" }]);
  assert.equal(seen.expires, 3600);
  assert.equal(seen.cseq, 1);
  assert.equal(seen.callId, req.headers.get("Call-ID"));
  assert.deepEqual(seen.source, { hostname: "10.0.0.1", port: 5060 });
  assert.deepEqual([...store.bindings.get("sip:alice@example.com")!], [["sip:alice@10.0.0.1:5060", 600]]);

  // What the client got: the 2xx, the granted (capped) expiry, the bound contact.
  assert.equal(reg.response.status, 200);
  assert.equal(reg.response.headers.get("Contact"), "<sip:alice@10.0.0.1:5060>;expires=600");
  assert.equal(reg.expires, 600);
  assert.equal(reg.contact, "sip:alice@10.0.0.1:5060");
  assert.equal(reg.aor, "sip:alice@example.com");

  // Unregister: same Call-ID, next CSeq, Expires: 0; the registrar drops the binding.
  const res = await settle(clock, reg.unregister());
  assert.equal(res.status, 200);
  const un = requests("REGISTER")[1];
  assert.equal(un.headers.get("Expires"), "0");
  assert.equal(un.headers.get("CSeq"), "2 REGISTER");
  assert.equal(un.headers.get("Call-ID"), req.headers.get("Call-ID"));
  assert.equal(un.headers.get("From"), req.headers.get("From"));
  assert.equal(un.headers.get("Contact"), "<sip:alice@10.0.0.1:5060>");
  assert.equal(store.seen[1].expires, 0);
  assert.equal(store.bindings.get("sip:alice@example.com")!.size, 0);
  await close();
});

Deno.test("register: expires and contact are passed through; the grant comes from the Expires header when the Contact has none", async () => {
  const { clock, alice, registrar, close } = setup();
  const seen: RegisterRequest[] = [];
  registrar.onRegister(async (r) => {
    seen.push(r);
    await Promise.resolve(); // an asynchronous handler
    return { status: 200, headers: [["Expires", "120"]] };
  });
  const reg = await settle(
    clock,
    alice.register({ registrar: "10.0.0.2", aor: "alice@example.com", expires: 300, contact: "sip:a@192.0.2.9:5099" }),
  );
  assert.deepEqual(seen[0].contacts, [{ uri: "sip:a@192.0.2.9:5099" }]);
  assert.equal(seen[0].expires, 300);
  assert.equal(reg.expires, 120);
  assert.equal(reg.contact, "sip:a@192.0.2.9:5099");
  await close();
});

Deno.test("register: a grant of more seconds than delta-seconds holds (2^32-1) is read as 2^32-1, not Infinity", async () => {
  const { clock, alice, registrar, close } = setup();
  registrar.onRegister(() => ({
    status: 200,
    headers: [["Expires", "9".repeat(400)]],
    contacts: [{ uri: "sip:b@192.0.2.9:5099", expires: 60 }],
  }));
  const reg = await settle(
    clock,
    alice.register({ registrar: "10.0.0.2", aor: "alice@example.com", expires: 300, contact: "sip:a@192.0.2.9:5099" }),
  );
  assert.equal(reg.expires, 4294967295);
  await close();
});

Deno.test("register: without a registrar handler REGISTER gets 405 with Allow, as before; with one, Allow lists REGISTER", async () => {
  const { clock, alice, registrar, close } = setup();
  const err = await settle(clock, alice.register({ registrar: "sip:10.0.0.2", aor: "sip:alice@example.com" }))
    .then(() => undefined, (e) => e);
  assert.ok(err instanceof RegistrationError, String(err));
  assert.equal(err.status, 405);
  assert.equal(err.response?.headers.getAll("Allow").join(", "), "INVITE, ACK, BYE, CANCEL, OPTIONS");
  assert.match(err.message, /registering sip:alice@example\.com at sip:10\.0\.0\.2: 405 Method Not Allowed/);

  const off = registrar.onRegister(bindingStore().handler);
  assert.throws(() => registrar.onRegister(bindingStore().handler), /a registrar handler is already set/);
  const opts = await settle(clock, alice.options("sip:10.0.0.2"));
  assert.equal(opts?.headers.getAll("Allow").join(", "), "INVITE, ACK, BYE, CANCEL, OPTIONS, REGISTER");
  const ok = await settle(clock, alice.register({ registrar: "sip:10.0.0.2", aor: "sip:alice@example.com" }));
  assert.equal(ok.response.status, 200);

  off();
  const again = await settle(clock, alice.register({ registrar: "sip:10.0.0.2", aor: "sip:alice@example.com" }))
    .then(() => undefined, (e) => e);
  assert.equal((again as RegistrationError).status, 405);
  await close();
});

Deno.test("register: a 401 from the registrar is answered through the authenticator, then 200", async () => {
  const offered: string[] = [];
  const authenticator: Authenticator = (challenge, request) => {
    offered.push(`${challenge.status} ${request.headers.get("CSeq")}`);
    return ["Authorization", 'Digest username="alice", realm="example.com", nonce="r1", response="fake"'];
  };
  const { clock, alice, registrar, requests, close } = setup({ authenticator });
  const store = bindingStore();
  registrar.onRegister((r) => {
    if (!r.request.headers.has("Authorization")) {
      return { status: 401, headers: [["WWW-Authenticate", 'Digest realm="example.com", nonce="r1"']] };
    }
    return store.handler(r);
  });
  const reg = await settle(clock, alice.register({ registrar: "sip:10.0.0.2", aor: "sip:alice@example.com" }));
  assert.equal(reg.response.status, 200);
  assert.deepEqual(offered, ["401 1 REGISTER"]);
  const sent = requests("REGISTER");
  assert.deepEqual(sent.map((r) => r.headers.get("CSeq")), ["1 REGISTER", "2 REGISTER"]);
  assert.notEqual(topVia(sent[0]).params.branch, topVia(sent[1]).params.branch);
  assert.equal(sent[1].headers.get("Expires"), "3600");
  // The registration's CSeq moved with the re-sent REGISTER: unregister uses 3.
  await settle(clock, reg.unregister());
  assert.deepEqual(requests("REGISTER").slice(2).map((r) => r.headers.get("CSeq")), ["3 REGISTER", "4 REGISTER"]);
  await close();
});

Deno.test("register: failures — 403 from the handler, a handler that throws (500), no answer at all, bad options", async () => {
  const { clock, out, alice, registrar, close } = setup();
  let mode: "forbid" | "throw" = "forbid";
  registrar.onRegister(() => {
    if (mode === "throw") throw new Error("database down");
    return { status: 403, reason: "Forbidden (not yours)" };
  });
  const fail = (p: Promise<unknown>, ms?: number) =>
    settle(clock, p, ms).then(() => undefined, (e) => e as RegistrationError);
  const forbidden = await fail(alice.register({ registrar: "sip:10.0.0.2", aor: "sip:bob@example.com" }));
  assert.equal(forbidden?.status, 403);
  assert.equal(forbidden?.response?.reason, "Forbidden (not yours)");
  mode = "throw";
  const broken = await fail(alice.register({ registrar: "sip:10.0.0.2", aor: "sip:bob@example.com" }));
  assert.equal(broken?.status, 500);
  assert.ok(out.lines.some((l) => l.includes("registrar handler failed: database down")));
  // Nobody at 10.0.0.99: Timer F (64·T1) ends it without a response.
  const nobody = await fail(alice.register({ registrar: "sip:10.0.0.99", aor: "sip:bob@example.com" }), 40_000);
  assert.ok(nobody instanceof RegistrationError);
  assert.equal(nobody.status, undefined);
  assert.match(nobody.message, /at sip:10\.0\.0\.99: no response$/);
  await assert.rejects(
    alice.register({ registrar: "http://example.com", aor: "sip:a@example.com" }),
    /register: registrar "http:\/\/example.com" is not a SIP URI .*: use e.g. sip:example.com/,
  );
  await assert.rejects(
    alice.register({ registrar: "sip:example.com", aor: "sip:a@example.com", expires: -5 }),
    /register: expires must be a whole number of seconds from 0 to 4294967295, got -5/,
  );
  await close();
});

Deno.test("register: unreadable REGISTERs get 400 before the handler; Contact: * needs Expires: 0", async () => {
  const { clock, registrar, probe, probeGot, close } = setup();
  const store = bindingStore();
  registrar.onRegister(store.handler);
  const te = new TextEncoder();
  const reg = (id: string, extra: string[]) =>
    te.encode(
      [
        "REGISTER sip:10.0.0.2 SIP/2.0",
        `Via: SIP/2.0/UDP 10.0.0.66:5060;branch=z9hG4bK${id}`,
        "From: <sip:probe@example.com>;tag=p",
        "To: <sip:probe@example.com>",
        `Call-ID: ${id}`,
        "CSeq: 1 REGISTER",
        ...extra,
        "Content-Length: 0",
      ].join("\r\n") + "\r\n\r\n",
    );
  await probe.send(reg("badexp", ["Contact: <sip:probe@10.0.0.66>", "Expires: soon"]), registrar.localAddress);
  await probe.send(reg("star", ["Contact: *", "Expires: 60"]), registrar.localAddress);
  await probe.send(reg("starok", ["Contact: *", "Expires: 0"]), registrar.localAddress);
  await probe.send(reg("two", ["Contact: <sip:a@10.0.0.66>;expires=30, <sip:b@10.0.0.66>"]), registrar.localAddress);
  // Found by the fuzzer (sip-relay): an expiry of thousands of characters was quoted whole in the 400's reason.
  const long = "12" + "02".repeat(4000) + "x";
  await probe.send(reg("longexp", ["Contact: <sip:probe@10.0.0.66>", `Expires: ${long}`]), registrar.localAddress);
  await probe.send(reg("longcexp", [`Contact: <sip:probe@10.0.0.66>;expires=${long}`]), registrar.localAddress);
  clock.advance(20);
  const byId = new Map(probeGot.map((r) => [r.headers.get("Call-ID"), r]));
  assert.equal(byId.get("badexp")?.status, 400);
  assert.equal(byId.get("badexp")?.reason, "Bad Request (Expires is not a number of seconds: 'soon')");
  assert.equal(byId.get("longexp")?.status, 400);
  assert.equal(
    byId.get("longexp")?.reason,
    `Bad Request (Expires is not a number of seconds: '${long.slice(0, 40)}...')`,
  );
  assert.equal(byId.get("longcexp")?.status, 400);
  assert.equal(
    byId.get("longcexp")?.reason,
    `Bad Request (Contact expires is not a number of seconds: '${long.slice(0, 40)}...')`,
  );
  assert.equal(byId.get("star")?.status, 400);
  assert.equal(byId.get("star")?.reason, "Bad Request (Contact: * must be the only Contact, with Expires: 0)");
  assert.equal(byId.get("starok")?.status, 200);
  assert.equal(byId.get("two")?.status, 200);
  assert.deepEqual(store.seen.map((s) => [s.callId, s.wildcard, s.contacts]), [
    ["starok", true, []],
    ["two", false, [{ uri: "sip:a@10.0.0.66", expires: 30 }, { uri: "sip:b@10.0.0.66" }]],
  ]);
  assert.deepEqual(byId.get("two")?.headers.getAll("Contact"), [
    "<sip:a@10.0.0.66>;expires=30",
    "<sip:b@10.0.0.66>;expires=600", // no expiry asked: 3600, capped by the registrar
  ]);
  await close();
});
