/**
 * A relay client's registration (`RelayRegistration`) on a virtual clock with
 * in-memory TCP and UDP: retries with backoff, heartbeats, leaving, and a
 * relay restart after which the client registers again by itself.
 */
import { assert, assertEquals, assertMatch, assertRejects } from "./assert.ts";
import { Endpoint, RELAY_IP, type World, world } from "./relay_util.ts";
import { heartbeatInterval, RegistrationError, RelayRegistration } from "../plugins/relay/registration.ts";
import { RelayServer } from "../plugins/relay/server.ts";
import type { StreamConn } from "../plugins/relay/stream.ts";

const relayTcp = { hostname: RELAY_IP, port: 9998 };

function registration(w: World, ip: string, port: number, target: number, extra = {}): RelayRegistration {
  return new RelayRegistration({
    streams: w.streams.host(ip),
    clock: w.clock,
    log: w.log,
    relay: relayTcp,
    target: { hostname: ip === "10.0.0.1" ? "10.0.0.2" : "10.0.0.1", port: target },
    listenPort: () => port,
    ...extra,
  });
}

/**
 * Advances the virtual clock by `ms` (every timer at its time, promises settled after each), then returns what
 * `p` settled with; `settledAt` gets the virtual time at which it settled.
 */
async function drive<T>(w: World, p: Promise<T>, ms: number, settledAt: number[] = []): Promise<T> {
  let settled = false;
  p.then(() => settled = true, () => settled = true).finally(() => settledAt.push(w.clock.now()));
  await w.clock.advanceAsync(ms);
  if (!settled) throw new Error(`not settled within ${ms} ms of virtual time`);
  return await p;
}

Deno.test("relay client: 3 attempts, 1 s then 2 s apart, then a clear failure", async () => {
  const w = world(); // the relay is never started
  const reg = registration(w, "10.0.0.1", 40000, 40002);
  const started = w.clock.now();
  const at: number[] = [];
  const err = await assertRejects(() => drive(w, reg.register(), 10_000, at), RegistrationError);
  assertEquals(
    err.message,
    "cannot register at relay 10.0.0.9:9998 after 3 attempts: cannot connect to 10.0.0.9:9998: connection refused",
  );
  assertEquals(reg.attemptsMade, 3);
  // Each refusal takes one round trip (2 ms); the waits between tries are 1 s and 2 s.
  assertEquals(at[0] - started, 2 + 1000 + 2 + 2000 + 2);
  const warns = w.logs.lines.filter((l) => l.includes("registration attempt"));
  assertEquals(warns.length, 2);
  assertMatch(warns[0], /attempt 1\/3 failed: .*connection refused; retrying in 1 s/);
  assertMatch(warns[1], /attempt 2\/3 failed: .*retrying in 2 s/);
});

Deno.test("relay client: the relay comes up during the retries: registered at the next attempt", async () => {
  const w = world();
  const reg = registration(w, "10.0.0.1", 40000, 40002);
  const p = reg.register();
  await w.clock.advanceAsync(1500);
  await w.relay.start(); // between the second and the third try
  const r = await drive(w, p, 5000);
  assertEquals(r.udpPort, 9999);
  assertEquals(r.observedIp, "10.0.0.1");
  assertEquals(reg.attemptsMade, 3);
  assertEquals(w.relay.clientCount, 1);
  reg.close();
  await w.relay.close();
});

Deno.test("relay client: heartbeats every 30 s keep the registration for 10 minutes; DISCONNECT removes it", async () => {
  const w = world();
  await w.relay.start();
  const reg = registration(w, "10.0.0.1", 40000, 40002);
  await drive(w, reg.register(), 100);
  await w.clock.advanceAsync(600_000);
  assertEquals(reg.heartbeats, 20);
  assertEquals(w.relay.clientCount, 1);
  assertEquals(w.relay.stats().expired, 0);
  assert(w.relay.stats().per_client[0].silent_s <= 30);
  await drive(w, reg.disconnect(), 100);
  assertEquals(w.relay.clientCount, 0);
  assertEquals(w.relay.stats().disconnects, 1);
  assert(w.logs.lines.some((l) => l.includes("disconnected from the relay")));
  await w.relay.close();
});

Deno.test("relay client: FULL is retried; INVALID fails at once", async () => {
  const w = world({ maxClients: 1 });
  await w.relay.start();
  const first = registration(w, "10.0.0.3", 40000, 40002);
  await drive(w, first.register(), 100);
  const full = registration(w, "10.0.0.1", 40000, 40002);
  const err = await assertRejects(() => drive(w, full.register(), 10_000), RegistrationError);
  assertMatch(err.message, /after 3 attempts: the relay is full \(FULL\)/);
  assertEquals(full.attemptsMade, 3);
  const bad = registration(w, "10.0.0.1", 40000, 9999, {
    target: { hostname: RELAY_IP, port: 9999 },
  });
  const e2 = await assertRejects(() => drive(w, bad.register(), 10_000), RegistrationError);
  assertEquals(
    e2.message,
    "relay 10.0.0.9:9998 refused the registration: INVALID the target is this relay's own UDP address",
  );
  assert(e2.fatal);
  assertEquals(bad.attemptsMade, 1);
  first.close();
  await w.relay.close();
});

Deno.test("relay client: after a relay restart, clients register again by themselves and forwarding resumes", async () => {
  const w = world();
  await w.relay.start();
  const ua = new Endpoint(w, "10.0.0.1", 40000), ub = new Endpoint(w, "10.0.0.2", 40002);
  const a = registration(w, "10.0.0.1", 40000, 40002), b = registration(w, "10.0.0.2", 40002, 40000);
  const again: number[] = [];
  a.on({ registered: (_r, isAgain) => isAgain && again.push(w.clock.now()) });
  await drive(w, Promise.all([a.register(), b.register()]), 100);
  await w.clock.advanceAsync(5);
  assert(a.targetUp && b.targetUp);
  ua.sendToRelay(new Uint8Array([1]));
  await w.clock.advanceAsync(5);
  assertEquals(ub.got.length, 1);

  // The relay stops (its clients are told BYE) and a new one starts on the same ports 5 s later.
  const down = w.clock.now();
  await w.relay.close();
  await w.clock.advanceAsync(5);
  assert(w.logs.lines.some((l) => /lost the relay \(the relay said BYE shutting down\): registering again/.test(l)));
  assertEquals(a.current, undefined);
  ua.sendToRelay(new Uint8Array([2]));
  await w.clock.advanceAsync(4995);
  assertEquals(ub.got.length, 1, "nothing forwarded while the relay is down");
  const relay2 = new RelayServer(w.options);
  await relay2.start();
  // Tries at +1 s and +3 s were refused; the one at +7 s (1 + 2 + 4 s of backoff) succeeds.
  await w.clock.advanceAsync(3000);
  assertEquals(relay2.clientCount, 2);
  assertEquals(again.length, 1);
  const t = again[0] - down;
  assert(t >= 7000 && t < 7100, `registered again ${t} ms after the relay went down`);
  assertEquals(a.registrations, 2);
  await w.clock.advanceAsync(10);
  assert(a.targetUp && b.targetUp);
  ua.sendToRelay(new Uint8Array([3]));
  await w.clock.advanceAsync(5);
  assertEquals(ub.got.map((g) => g.data[0]), [1, 3]);
  // And the heartbeats go to the new relay.
  await w.clock.advanceAsync(200_000);
  assertEquals(relay2.clientCount, 2);
  assertEquals(relay2.stats().expired, 0);
  a.close();
  b.close();
  await relay2.close();
});

Deno.test("relay client: a heartbeat left unanswered counts as a lost relay", async () => {
  const w = world();
  // A relay that registers but never answers HEARTBEAT.
  const conns: StreamConn[] = [];
  let hellos = 0;
  await w.streams.listen(RELAY_IP, 9998, (conn) => {
    conns.push(conn);
    conn.start({
      data: (d) => {
        if (new TextDecoder().decode(d).startsWith("HELLO")) {
          hellos++;
          conn.write(new TextEncoder().encode("OK 9999 120 10.0.0.1\n"));
        }
      },
      end: () => {},
    });
  });
  const reg = registration(w, "10.0.0.1", 40000, 40002, { replyTimeoutMs: 5000 });
  await drive(w, reg.register(), 100);
  // Heartbeat at 30 s, no reply by 35 s: the connection is dropped and the client registers again 1 s later.
  await w.clock.advanceAsync(37_000);
  assertEquals(hellos, 2);
  assertEquals(reg.registrations, 2);
  assert(w.logs.lines.some((l) => /lost the relay/.test(l)), w.logs.lines.join("\n"));
  reg.close();
});

/** A scripted relay on the world's streams: `answer` gives the reply to each line (none: no reply); never closes. */
async function fakeRelay(w: World, answer: (line: string, conn: number) => string | undefined) {
  const conns: { lines: { at: number; line: string }[]; ended: boolean; conn: StreamConn }[] = [];
  await w.streams.listen(RELAY_IP, 9998, (conn) => {
    const c = { lines: [] as { at: number; line: string }[], ended: false, conn };
    const n = conns.push(c) - 1;
    let partial = "";
    conn.start({
      data: (d) => {
        const parts = (partial + new TextDecoder().decode(d)).split("\n");
        partial = parts.pop()!;
        for (const line of parts) {
          c.lines.push({ at: w.clock.now(), line });
          const reply = answer(line, n);
          if (reply !== undefined) conn.write(new TextEncoder().encode(reply + "\n"));
        }
      },
      end: () => c.ended = true,
    });
  });
  return conns;
}

Deno.test("relay client: heartbeats within the relay's announced timeout: a third of it, not below 0.25 s, nor above the configured interval", () => {
  assertEquals(heartbeatInterval(30_000, 120), 30_000);
  assertEquals(heartbeatInterval(30_000, 90), 30_000);
  assertEquals(heartbeatInterval(30_000, 60), 20_000);
  assertEquals(heartbeatInterval(30_000, 4), 1333);
  assertEquals(heartbeatInterval(30_000, 1), 333);
  assertEquals(heartbeatInterval(30_000, 0.1), 250);
  assertEquals(heartbeatInterval(30_000, 0.001), 250);
  assertEquals(heartbeatInterval(100, 0.1), 100);
  assertEquals(heartbeatInterval(5000, 4), 1333);
});

Deno.test("relay client: a relay announcing a 4 s heartbeat timeout gets a HEARTBEAT every 1.333 s, logged once", async () => {
  const w = world();
  const conns = await fakeRelay(w, (line) => line.startsWith("HELLO") ? "OK 9999 4 10.0.0.1" : "OK");
  const reg = registration(w, "10.0.0.1", 40000, 40002); // heartbeat 30 s configured (the default)
  const r = await drive(w, reg.register(), 100);
  await w.clock.advanceAsync(10_000);
  const hello = conns[0].lines[0];
  assertEquals(hello.line, "HELLO 40000 10.0.0.2 40002");
  const beats = conns[0].lines.slice(1);
  assert(beats.every((b) => b.line === "HEARTBEAT"), JSON.stringify(beats));
  // HELLO reached the relay at t, OK came back at t + 1; each HEARTBEAT takes 1 ms to arrive.
  const gaps = beats.map((b, i) => b.at - (i === 0 ? hello.at + 1 : beats[i - 1].at));
  assertEquals(gaps[0], 1 + 1333);
  assertEquals(gaps.slice(1), Array(beats.length - 1).fill(1333));
  assertEquals(beats.length, 7);
  assertEquals(reg.heartbeats, 7);
  assertEquals(r.heartbeatMs, 1333);
  // Registered again (the relay closed the connection): still 1.333 s, and the log said it only once.
  conns[0].conn.close();
  await w.clock.advanceAsync(3000);
  assertEquals(reg.registrations, 2);
  assertEquals(conns[1].lines.map((l) => l.line), ["HELLO 40000 10.0.0.2 40002", "HEARTBEAT"]);
  const said = w.logs.lines.filter((l) => l.includes("heartbeating every"));
  assertEquals(said.length, 1, said.join("\n"));
  assertMatch(said[0], /the relay expires registrations after 4 s: heartbeating every 1\.333 s instead of 30 s/);
  reg.close();
});

Deno.test("relay client: a relay with a 4 s heartbeat timeout keeps the registration for 2 minutes", async () => {
  const w = world({ heartbeatTimeout: 4, checkInterval: 1 });
  await w.relay.start();
  const reg = registration(w, "10.0.0.1", 40000, 40002);
  await drive(w, reg.register(), 100);
  await w.clock.advanceAsync(120_000);
  assertEquals(w.relay.stats().expired, 0);
  assertEquals(w.relay.stats().registrations, 1);
  assertEquals(reg.registrations, 1);
  assertEquals(reg.heartbeats, 90); // 120 s / 1.333 s
  await w.relay.close();
  reg.close();
});

Deno.test("relay client: every failed registration attempt closes its connection (BUSY, FULL, INVALID, odd or no reply, no UDP socket, stopped)", async () => {
  const cases: { reply: string | undefined; attempts: number; error: RegExp; listenPortFails?: boolean }[] = [
    { reply: "BUSY too many connections (test)", attempts: 3, error: /after 3 attempts: BUSY too many connections/ },
    { reply: "FULL", attempts: 3, error: /after 3 attempts: the relay is full \(FULL\)/ },
    { reply: "INVALID no", attempts: 1, error: /refused the registration: INVALID no$/ },
    { reply: "OK", attempts: 3, error: /after 3 attempts: unexpected reply to HELLO: OK$/ },
    { reply: "TIMEOUT", attempts: 3, error: /after 3 attempts: unexpected reply to HELLO: TIMEOUT$/ },
    { reply: "BYE later", attempts: 3, error: /after 3 attempts: unexpected reply to HELLO: BYE$/ },
    { reply: "nonsense", attempts: 3, error: /after 3 attempts: no reply to HELLO within 5 s$/ },
    { reply: undefined, attempts: 3, error: /after 3 attempts: no reply to HELLO within 5 s$/ },
    { reply: undefined, attempts: 1, error: /cannot open the local UDP socket: no port$/, listenPortFails: true },
  ];
  for (const c of cases) {
    const w = world();
    const conns = await fakeRelay(w, () => c.reply);
    const reg = registration(w, "10.0.0.1", 40000, 40002, {
      listenPort: () => {
        if (c.listenPortFails) throw new Error("no port");
        return 40000;
      },
    });
    const err = await assertRejects(() => drive(w, reg.register(), 30_000), RegistrationError);
    assertMatch(err.message, c.error);
    await w.clock.advanceAsync(10);
    assertEquals(conns.length, c.attempts, c.reply);
    assertEquals(conns.map((x) => x.ended), Array(c.attempts).fill(true), `${c.reply}: every connection closed`);
  }
  // Stopped while waiting for the reply to HELLO.
  const w = world();
  const conns = await fakeRelay(w, () => undefined);
  const reg = registration(w, "10.0.0.1", 40000, 40002);
  const p = reg.register();
  await w.clock.advanceAsync(100);
  reg.close();
  const err = await assertRejects(() => drive(w, p, 100), RegistrationError);
  assertEquals(err.message, "stopped");
  await w.clock.advanceAsync(10);
  assertEquals(conns.map((x) => x.ended), [true]);
});

Deno.test("relay client: a relay's reason of thousands of characters is quoted as 200 in errors, events and log lines", async () => {
  // Found by the fuzzer (relay-client): INVALID, BUSY and BYE reasons were copied whole into the RegistrationError, the
  // `lost` event and the log (4 136 characters from a 4 KB line).
  const long = "r".repeat(5000);
  const short = `${long.slice(0, 200)}...`;
  for (const reply of [`INVALID ${long}`, `BUSY ${long}`]) {
    const w = world();
    await fakeRelay(w, () => reply);
    const reg = registration(w, "10.0.0.1", 40000, 40002);
    const err = await assertRejects(() => drive(w, reg.register(), 30_000), RegistrationError);
    assert(err.message.endsWith(`${reply.slice(0, reply.indexOf(" "))} ${short}`), err.message.slice(0, 300));
  }
  // Registered, then a BYE with a long reason, unsolicited: the `lost` reason and the log lines are cut too.
  const w = world();
  const conns = await fakeRelay(w, (line) => line.startsWith("HELLO") ? "OK 9999 120 10.0.0.1" : undefined);
  const reg = registration(w, "10.0.0.1", 40000, 40002);
  const lost: string[] = [];
  reg.on({ lost: (why) => lost.push(why) });
  await drive(w, reg.register(), 100);
  conns[0].conn.write(new TextEncoder().encode(`BYE ${long}\n`));
  await w.clock.advanceAsync(5);
  conns[0].conn.close();
  await w.clock.advanceAsync(5);
  assertEquals(lost, [`the relay said BYE ${short}`]);
  const longest = Math.max(...w.logs.lines.map((l) => l.length));
  assert(longest < 400, `a log line of ${longest} characters`);
  reg.close();
  // Control characters in a reason (a terminal escape, a CR) are written as \xHH, never passed to a log or an error.
  const v = world();
  await fakeRelay(v, () => "INVALID bad\x1b[2J\rname");
  const err = await assertRejects(
    () => drive(v, registration(v, "10.0.0.1", 40000, 40002).register(), 30_000),
    RegistrationError,
  );
  assert(err.message.endsWith("INVALID bad\\x1b[2J\\x0dname"), JSON.stringify(err.message));
});
