/**
 * Digest credentials go only to the servers they are for. The `sip` control on the in-memory network with a
 * VirtualClock, a hostile callee at 127.0.0.2 and the account's server (registrar or outbound proxy) at 127.0.0.1,
 * both raw sockets that record every byte they receive:
 *
 * - a call placed directly to the hostile callee (a target an application dials) is challenged: the callee gets no
 *   `Authorization` / `Proxy-Authorization`, no digest response and not even the authentication user name, even
 *   when it challenges with the configured `realm` (the realm is no secret: our domain is in From); the call fails
 *   with a reason that says why and which option to set;
 * - the same kind of call through the registrar (a number dialed) or through the outbound proxy is challenged and
 *   answered with credentials the server verifies;
 * - a caller with a registrar calling another host directly fails with that reason; a caller with neither a
 *   registrar nor an outbound proxy calls its server directly (the host of `to`), and is answered;
 * - the library: `digestAuthenticator` with `servers` compares the request's next hop, never a name resolved.
 *
 * No assertion depends on time or machine speed.
 */
import { assert, assertEquals, assertMatch, assertThrows } from "./assert.ts";
import { startSipControl } from "./sip_control_util.ts";
import type { VirtualClock } from "../core/clock.ts";
import type { CallService } from "../core/calls.ts";
import type { ControlResult } from "../core/control.ts";
import type { MemoryOutput } from "../core/log.ts";
import type { HostPort } from "../core/net/address.ts";
import type { MemoryNetwork } from "../core/net/memory.ts";
import {
  type ChallengeContext,
  createRequest,
  createResponse,
  type DigestAlgorithm,
  digestAuthenticator,
  digestResponse,
  parseCredentials,
  parseMessage,
  serializeMessage,
  type SipRequest,
} from "../plugins/sip/mod.ts";

const td = new TextDecoder();
const PASSWORD = "pw-Secret-7";
const AUTH_USER = "alice-auth-id";
const REALM = "voxpipe.test";

/**
 * A raw SIP peer: records every datagram it receives (as text), challenges every request that carries no
 * credentials with `status` (401 or 407) for `realm`, and answers one that does with `answer` (after checking the
 * digest with the password: `verified`).
 */
function challenger(net: MemoryNetwork, at: HostPort, status: 401 | 407, realm = REALM) {
  const got: string[] = [];
  const verified: string[] = [];
  const sock = net.bind(at.hostname, at.port);
  sock.listen((d, from) => {
    const text = td.decode(d);
    got.push(text);
    let m;
    try {
      m = parseMessage(d);
    } catch {
      return;
    }
    if (m.kind !== "request" || m.method === "ACK") return;
    const header = status === 401 ? "Authorization" : "Proxy-Authorization";
    const creds = m.headers.get(header);
    let res;
    if (creds === undefined) {
      res = createResponse(m, status, undefined, {
        toTag: "ch1",
        headers: [[
          status === 401 ? "WWW-Authenticate" : "Proxy-Authenticate",
          `Digest realm="${realm}", nonce="n-${got.length}", qop="auth", algorithm=MD5`,
        ]],
      });
    } else {
      const p = parseCredentials(creds).params;
      const expected = digestResponse({
        algorithm: (p.algorithm ?? "MD5") as DigestAlgorithm,
        username: p.username,
        realm: p.realm,
        password: PASSWORD,
        method: m.method,
        uri: p.uri,
        nonce: p.nonce,
        cnonce: p.cnonce,
        nc: p.nc ? parseInt(p.nc, 16) : undefined,
        qop: p.qop as "auth" | undefined,
        body: m.body,
      });
      if (p.response === expected && p.username === AUTH_USER) verified.push(m.method);
      res = m.method === "REGISTER"
        ? createResponse(m, 200, undefined, {
          toTag: "r1",
          headers: [["Contact", `${m.headers.get("Contact")};expires=600`]],
        })
        : createResponse(m, 486, undefined, { toTag: "b1" });
    }
    void sock.send(serializeMessage(res), from);
  }, { maxSize: 65535 });
  return { got, verified, close: () => sock.close() };
}

/** What a hostile peer received that would help it: credentials headers, a digest response, our auth user name. */
function leaks(got: string[]): string[] {
  const out: string[] = [];
  for (const t of got) {
    if (/^(Proxy-)?Authorization\s*:/im.test(t)) out.push("a credentials header");
    if (/response\s*=/i.test(t)) out.push("a digest response");
    if (t.includes(AUTH_USER)) out.push("the authentication user name");
  }
  return out;
}

interface Run {
  clock: VirtualClock;
  net: MemoryNetwork;
  out: MemoryOutput;
  calls?: CallService;
  run: Promise<ControlResult>;
  advance(ms: number): Promise<void>;
  close(): Promise<ControlResult>;
}

/** The sip control (role server unless told) at 127.0.0.1:5062 on a memory network, with a receive chain. */
async function start(control: Record<string, unknown>, prepare: (net: MemoryNetwork) => void): Promise<Run> {
  const dir = await Deno.makeTempDir({ prefix: "voxpipe-auth-" });
  const file = `${dir}/p.json`;
  const cfg = {
    control: {
      use: "sip",
      role: "server",
      bind: "127.0.0.1",
      port: 5062,
      linger: 0,
      user: "alice",
      auth_user: AUTH_USER,
      password: PASSWORD,
      rtp_ports: "30000-30019",
      ...control,
    },
    pipelines: {
      receive: [{ use: "udp-source", port: "${local.rtp_port}", bind: "${local.bind}", timeout: 60 }, {
        use: "null-sink",
      }],
    },
  };
  const rig = await startSipControl(dir, file, cfg, (net) => prepare(net));
  const { clock, net, out, controller, abort, advance } = rig;
  const run = (await rig.run()).result;
  let done = false;
  run.finally(() => done = true);
  await advance(100);
  return {
    clock,
    net,
    out,
    calls: controller.calls,
    run,
    advance,
    async close() {
      abort.abort();
      for (let i = 0; i < 300 && !done; i++) await advance(100);
      assert(done, `the controller stopped\n${out.lines.slice(-10).join("\n")}`);
      await Deno.remove(dir, { recursive: true });
      return await run;
    },
  };
}

const HOSTILE = { hostname: "127.0.0.2", port: 5060 };
const SERVER = { hostname: "127.0.0.1", port: 5070 };

Deno.test("auth scope: a callee dialed directly gets no credentials, even challenging with our realm; a number through the registrar is answered", async () => {
  let hostile!: ReturnType<typeof challenger>, registrar!: ReturnType<typeof challenger>;
  const h = await start({ registrar: "sip:127.0.0.1:5070", realm: REALM }, (net) => {
    hostile = challenger(net, HOSTILE, 401);
    registrar = challenger(net, SERVER, 401);
  });
  try {
    // Registered first, with credentials the registrar verified.
    assertEquals(registrar.verified, ["REGISTER"]);
    // An application dials a SIP URI: the callee there challenges with our own realm.
    const direct = await h.calls!.dial("sip:x@127.0.0.2");
    await h.advance(2000);
    const invites = hostile.got.filter((t) => t.startsWith("INVITE "));
    assertEquals(new Set(invites).size, 1, "one INVITE (no second one with credentials)");
    assert(hostile.got.some((t) => t.startsWith("ACK ")), "the 401 was ACKed");
    assertEquals(leaks(hostile.got), []);
    const ended = h.calls!.call(direct.id)!;
    assertEquals(ended.state, "ended");
    assertEquals(ended.status, 401);
    assertMatch(
      ended.reason!,
      /^remote: 401 Unauthorized \(credentials not sent: those of alice-auth-id are for 127\.0\.0\.1:5070 only, and this INVITE went to 127\.0\.0\.2:5060; .*set outbound_proxy or registrar to it/,
    );
    assert(
      h.out.lines.some((l) =>
        /401 Unauthorized from 127\.0\.0\.2:5060 not answered: credentials not sent: .*127\.0\.0\.2:5060/.test(l)
      ),
      h.out.lines.join("\n"),
    );
    // A number goes to the registrar: its challenge is answered.
    const viaServer = await h.calls!.dial("1002");
    await h.advance(2000);
    assertEquals(registrar.verified, ["REGISTER", "INVITE"]);
    assertEquals(h.calls!.call(viaServer.id)!.reason, "remote: 486 Busy Here");
  } finally {
    await h.close();
    await hostile.close();
    await registrar.close();
  }
});

Deno.test("auth scope: with an outbound proxy, a call to any target goes to the proxy, whose 407 is answered", async () => {
  let proxy!: ReturnType<typeof challenger>, hostile!: ReturnType<typeof challenger>;
  const h = await start({ outbound_proxy: "sip:127.0.0.1:5070" }, (net) => {
    proxy = challenger(net, SERVER, 407);
    hostile = challenger(net, HOSTILE, 401);
  });
  try {
    const info = await h.calls!.dial("sip:x@127.0.0.2");
    await h.advance(2000);
    assertEquals(proxy.verified, ["INVITE"]);
    assertEquals(h.calls!.call(info.id)!.reason, "remote: 486 Busy Here");
    assertEquals(hostile.got, [], "nothing went to the target itself");
  } finally {
    await h.close();
    await proxy.close();
    await hostile.close();
  }
});

Deno.test("auth scope: a caller with a registrar calling another host directly fails saying why; without a registrar, the host of `to` is its server", async () => {
  {
    let hostile!: ReturnType<typeof challenger>, registrar!: ReturnType<typeof challenger>;
    const h = await start({ role: "caller", to: "sip:x@127.0.0.2", registrar: "sip:127.0.0.1:5070" }, (net) => {
      hostile = challenger(net, HOSTILE, 407);
      registrar = challenger(net, SERVER, 401);
    });
    let done = false;
    h.run.finally(() => done = true);
    for (let i = 0; i < 100 && !done; i++) await h.advance(100);
    const result = await h.close();
    assertEquals(result.code, 1);
    assertMatch(
      result.reason!,
      /^call failed: 407 Proxy Authentication Required \(credentials not sent: those of alice-auth-id are for 127\.0\.0\.1:5070 only, and this INVITE went to 127\.0\.0\.2:5060; they go only to the outbound_proxy or the registrar \(without either, to the host of `to`\): if this next hop is the server of the account, set outbound_proxy or registrar to it\)$/,
    );
    assertEquals(leaks(hostile.got), []);
    assertEquals(registrar.verified, ["REGISTER", "REGISTER"], "registered, then unregistered");
    await hostile.close();
    await registrar.close();
  }
  {
    let pbx!: ReturnType<typeof challenger>;
    const h = await start({ role: "caller", to: "sip:x@127.0.0.1:5070" }, (net) => {
      pbx = challenger(net, SERVER, 407);
    });
    let done = false;
    h.run.finally(() => done = true);
    for (let i = 0; i < 100 && !done; i++) await h.advance(100);
    const result = await h.close();
    assertEquals(result, { code: 1, reason: "call failed: 486 Busy Here" });
    assertEquals(pbx.verified, ["INVITE"]);
    await pbx.close();
  }
});

Deno.test("auth scope: digestAuthenticator with servers compares the request's next hop as written (names never resolved)", () => {
  const auth = digestAuthenticator({
    username: "alice",
    password: PASSWORD,
    servers: ["sip:pbx.example.com", "192.0.2.5:5070", "sip:[2001:db8::1]", "sip:x@10.1.1.1;maddr=192.0.2.9"],
  }, { cnonce: () => "c1", serversHint: "set servers" });
  const req: SipRequest = createRequest({
    method: "INVITE",
    uri: "sip:bob@example.com",
    headers: [["Call-ID", "c"], ["CSeq", "1 INVITE"], ["From", "<sip:alice@example.com>;tag=1"], [
      "To",
      "<sip:bob@example.com>",
    ]],
  });
  const res = parseMessage(new TextEncoder().encode(
    'SIP/2.0 401 Unauthorized\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\r\nFrom: <sip:alice@example.com>;tag=1\r\nTo: <sip:bob@example.com>;tag=2\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\nWWW-Authenticate: Digest realm="example.com", nonce="n1"\r\nContent-Length: 0\r\n\r\n',
  ));
  assert(res.kind === "response");
  const at = (hostname: string, port: number) => {
    const declined: string[] = [];
    const context: ChallengeContext = {
      destination: { hostname, port },
      source: { hostname: "198.51.100.1", port: 5060 },
      decline: (r) => declined.push(r),
    };
    return { answer: auth(res, req, context), declined };
  };
  for (
    const [host, port] of [["PBX.example.com", 5060], ["192.0.2.5", 5070], ["2001:db8:0::1", 5060], [
      "192.0.2.9",
      5060,
    ]] as const
  ) {
    const r = at(host, port);
    assertEquals(r.answer?.[0], "Authorization", `${host}:${port}`);
    assertEquals(r.declined, []);
  }
  for (
    const [host, port] of [["192.0.2.5", 5060], ["pbx.example.com.evil", 5060], ["10.1.1.1", 5060], [
      "198.51.100.1",
      5060,
    ]] as const
  ) {
    const r = at(host, port);
    assertEquals(r.answer, undefined, `${host}:${port}`);
    assertEquals(r.declined.length, 1);
    assertMatch(
      r.declined[0],
      /^credentials not sent: those of alice are for .* only, and this INVITE went to .*; set servers$/,
    );
  }
  // Without a context (a caller that does not say where the request went), bound credentials answer nothing.
  assertEquals(auth(res, req), undefined);
  // Unbound credentials answer any next hop, as before; a servers entry that is not an address is refused at once.
  const unbound = digestAuthenticator({ username: "alice", password: PASSWORD });
  const anywhere = { destination: { hostname: "203.0.113.9", port: 5060 }, source: HOSTILE, decline: () => {} };
  assertEquals(unbound(res, req, anywhere)?.[0], "Authorization");
  assertThrows(
    () => digestAuthenticator({ username: "alice", password: "x", servers: ["sip:"] }),
    TypeError,
    'servers entry "sip:" of alice is not a SIP URI or host[:port]',
  );
});
