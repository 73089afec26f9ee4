/**
 * The relay server on a virtual clock, with in-memory TCP and UDP: the
 * registration protocol line by line, forwarding, limits, expiry and bad input.
 */
import { assert, assertEquals, assertMatch } from "./assert.ts";
import { Endpoint, LineClient, RELAY_IP, world } from "./relay_util.ts";

const relayUdp = { hostname: RELAY_IP, port: 9999 };

Deno.test("relay: two clients register, each told when its target is up; datagrams are forwarded one for one", async () => {
  const w = world();
  await w.relay.start();
  const ua = new Endpoint(w, "10.0.0.1", 40000), ub = new Endpoint(w, "10.0.0.2", 40002);
  const a = await LineClient.open(w, "10.0.0.1");
  a.send(w, "HELLO 40000 10.0.0.2 40002");
  assertEquals(a.take(), ["OK 9999 120 10.0.0.1", "TARGET DOWN"]);
  // Until B registers, A's datagrams are counted and dropped (the target is not a client).
  ua.sendToRelay(new Uint8Array([1, 2, 3]));
  w.clock.advance(5);
  assertEquals(ub.got.length, 0);
  const b = await LineClient.open(w, "10.0.0.2");
  b.send(w, "HELLO 40002 10.0.0.1 40000\r");
  assertEquals(b.take(), ["OK 9999 120 10.0.0.2", "TARGET UP"]);
  assertEquals(a.take(), ["TARGET UP"]);
  const before = w.net.delivered;
  const pkt = new Uint8Array(172).map((_, i) => i);
  ua.sendToRelay(pkt);
  ub.sendToRelay(new Uint8Array([9, 9]));
  w.clock.advance(5);
  // One datagram in, one out, unchanged, from the relay's UDP port; nothing back to the sender.
  assertEquals(ub.got.length, 1);
  assertEquals(ub.got[0].data, pkt);
  assertEquals(ub.got[0].from, relayUdp);
  assertEquals(ua.got.length, 1);
  assertEquals(ua.got[0].data, new Uint8Array([9, 9]));
  assertEquals(w.net.delivered - before, 4, "2 datagrams to the relay, 2 forwarded");
  const s = w.relay.stats();
  assertEquals(s.clients, 2);
  assertEquals(s.packets_in, 3);
  assertEquals(s.packets_out, 2);
  assertEquals(s.bytes_out, 174);
  assertEquals(s.dropped.target_down, 1);
  const pa = s.per_client.find((c) => c.source === "10.0.0.1:40000")!;
  assertEquals([pa.packets_in, pa.bytes_in, pa.packets_out, pa.bytes_out, pa.drops], [2, 175, 1, 172, 1]);
  assertEquals(pa.target, "10.0.0.2:40002");
  assert(pa.target_up && pa.connected);
  assert(w.logs.lines.some((l) => /\[RELAY\] register 10\.0\.0\.1:40000 → 10\.0\.0\.2:40002 clients=1\/10/.test(l)));
  // HEARTBEAT is acknowledged; DISCONNECT says BYE, removes the registration, closes, and tells the peer.
  a.send(w, "HEARTBEAT");
  assertEquals(a.take(), ["OK"]);
  a.send(w, "DISCONNECT");
  assertEquals(a.take(), ["BYE"]);
  w.clock.advance(5);
  assert(a.ended, "the relay closes after BYE");
  assertEquals(b.take(), ["TARGET DOWN"]);
  assertEquals(w.relay.clientCount, 1);
  assert(w.logs.lines.some((l) => /\[RELAY\] disconnect 10\.0\.0\.1:40000 packets_in=2 packets_out=1/.test(l)));
  await w.relay.close();
  w.clock.advance(5);
  assertEquals(b.take(), ["BYE shutting down"]);
  assert(b.ended);
});

Deno.test("relay: malformed lines get INVALID with the reason, and the connection stays usable", async () => {
  const w = world();
  await w.relay.start();
  const c = await LineClient.open(w, "10.0.0.1");
  const cases: [string, RegExp][] = [
    ["HELO 40000 10.0.0.2 40002", /^INVALID unknown command "HELO"/],
    ["hello 40000 10.0.0.2 40002", /^INVALID unknown command "hello"/],
    ["HELLO 40000", /^INVALID expected HELLO <listen_port> <target_ip> <target_port>$/],
    ["HELLO 40000 10.0.0.2 40002 extra", /^INVALID expected HELLO/],
    ["HELLO 0 10.0.0.2 40002", /^INVALID listen_port must be 1\.\.65535, got "0"$/],
    ["HELLO 70000 10.0.0.2 40002", /^INVALID listen_port must be 1\.\.65535, got "70000"$/],
    ["HELLO -5 10.0.0.2 40002", /^INVALID listen_port must be 1\.\.65535/],
    ["HELLO 40000 example.com 40002", /^INVALID target "example\.com" is not an IP address/],
    ["HELLO 40000 10.0.0.2 0", /^INVALID target_port must be 1\.\.65535/],
    ["HELLO 40000 0.0.0.0 40002", /^INVALID target is the unspecified address$/],
    ["HELLO 40000 239.1.2.3 40002", /^INVALID target is a multicast address$/],
    ["HELLO 40000 255.255.255.255 40002", /^INVALID target is the broadcast address$/],
    ["HELLO 40000 10.0.0.9 9999", /^INVALID the target is this relay's own UDP address$/],
    ["HEARTBEAT", /^INVALID not registered: send HELLO first$/],
    ["HEARTBEAT now", /^INVALID HEARTBEAT takes no arguments$/],
    ["HELLO 40000 10.0.0.2\t40002", /^INVALID only printable ASCII is allowed$/],
  ];
  for (const [line, want] of cases) {
    c.send(w, line);
    const got = c.take();
    assertEquals(got.length, 1, `${line}: ${got.join(" | ")}`);
    assertMatch(got[0], want, line);
    w.clock.advance(200); // stay under the rate limit
  }
  // Bytes that are not ASCII, and an over-long line that arrives in pieces.
  c.sendBytes(w, new Uint8Array([0xff, 0xfe, 0x00, 0x0a]));
  assertEquals(c.take(), ["INVALID only printable ASCII is allowed"]);
  w.clock.advance(200);
  c.send(w, "HELLO " + "1".repeat(200), true);
  c.send(w, "2".repeat(200), true);
  c.send(w, " more\n", true);
  assertEquals(c.take(), ["INVALID line longer than 256 bytes"]);
  w.clock.advance(200);
  // Blank lines are ignored; the connection still works.
  c.send(w, "");
  c.send(w, "HELLO 40000 10.0.0.2 40002");
  assertEquals(c.take(), ["OK 9999 120 10.0.0.1", "TARGET DOWN"]);
  w.clock.advance(200);
  c.send(w, "HELLO 40001 10.0.0.2 40002");
  assertEquals(c.take(), ["INVALID this connection registered listen port 40000: send DISCONNECT first"]);
  assertEquals(w.relay.clientCount, 1);
  assert(!c.ended);
  const s = w.relay.stats();
  assertEquals(s.invalid, cases.length + 3);
  // One log line for the first INVALID of the connection; the rest are summed up at the next check.
  assertEquals(w.logs.lines.filter((l) => l.includes("invalid line from")).length, 1);
  w.clock.advance(10_000);
  assert(w.logs.lines.some((l) => new RegExp(`since the last check: ${cases.length + 3} INVALID replies`).test(l)));
  await w.relay.close();
});

Deno.test("relay: lines beyond the rate limit are dropped with one INVALID per second", async () => {
  const w = world({ maxLinesPerSecond: 10 });
  await w.relay.start();
  const c = await LineClient.open(w, "10.0.0.1");
  c.send(w, "HEARTBEAT\n".repeat(25), true);
  const got = c.take();
  assertEquals(got.length, 11);
  assertEquals(got.slice(0, 10), new Array(10).fill("INVALID not registered: send HELLO first"));
  assertEquals(got[10], "INVALID too many lines: at most 10 per second, the rest are dropped");
  assertEquals(w.relay.stats().rate_limited, 15);
  w.clock.advance(1000);
  c.send(w, "HELLO 40000 10.0.0.2 40002");
  assertEquals(c.take()[0], "OK 9999 120 10.0.0.1");
  await w.relay.close();
});

Deno.test("relay: registrations beyond max_clients get FULL, nothing is stored, memory stays bounded", async () => {
  const w = world({ maxClients: 3, maxConnections: 6, maxConnectionsPerIp: 2 });
  await w.relay.start();
  const cs = [];
  for (let i = 1; i <= 3; i++) {
    const c = await LineClient.open(w, `10.0.0.${i}`);
    c.send(w, `HELLO 40000 10.0.0.${i + 1} 40000`);
    assertMatch(c.take()[0], /^OK 9999 120 /);
    cs.push(c);
  }
  // A flood of registrations from one connection: each gets FULL, none is stored.
  const f = await LineClient.open(w, "10.0.0.50");
  for (let i = 0; i < 1000; i++) {
    f.send(w, `HELLO ${1000 + i} 10.0.0.1 40000`);
    if (i % 10 === 9) w.clock.advance(1000);
  }
  const replies = f.take();
  assertEquals(replies.length, 1000);
  assert(replies.every((r) => r === "FULL"), replies.find((r) => r !== "FULL"));
  assertEquals(w.relay.clientCount, 3);
  assertEquals(w.relay.stats().per_client.length, 3);
  assertEquals(w.relay.stats().full, 1000);
  // Logged once for the connection, then summed up once per check.
  assertEquals(w.logs.lines.filter((l) => l.includes("full: refused")).length, 1);
  assert(w.logs.lines.some((l) => /since the last check: \d+ FULL replies/.test(l)));
  // Connections beyond the limits (per IP, then in all) are refused with BUSY and closed.
  const same = await LineClient.open(w, "10.0.0.50");
  const third = await LineClient.open(w, "10.0.0.50");
  w.clock.advance(5);
  assertEquals(same.take(), []);
  assertEquals(third.take(), ["BUSY too many connections from 10.0.0.50 (2)"]);
  assert(third.ended && !same.ended);
  const sixth = await LineClient.open(w, "10.0.0.60");
  const other = await LineClient.open(w, "10.0.0.61");
  w.clock.advance(5);
  assert(!sixth.ended);
  assertEquals(other.take(), ["BUSY too many connections (6)"]);
  assert(other.ended);
  assertEquals(w.relay.connectionCount, 6, "3 clients, the flooder's two, one more");
  assertEquals(w.relay.stats().busy, 2);
  // When a client leaves, a new one fits.
  cs[0].send(w, "DISCONNECT");
  w.clock.advance(5);
  f.send(w, "HELLO 2000 10.0.0.1 40000");
  assertMatch(f.take()[0], /^OK /);
  await w.relay.close();
});

Deno.test("relay: spoofed or unregistered UDP sources are dropped and counted, never forwarded", async () => {
  const w = world();
  await w.relay.start();
  const ua = new Endpoint(w, "10.0.0.1", 40000), ub = new Endpoint(w, "10.0.0.2", 40002);
  for (const [ip, l, t] of [["10.0.0.1", 40000, 40002], ["10.0.0.2", 40002, 40000]] as const) {
    const c = await LineClient.open(w, ip);
    c.send(w, `HELLO ${l} ${ip === "10.0.0.1" ? "10.0.0.2" : "10.0.0.1"} ${t}`);
  }
  const stranger = new Endpoint(w, "10.0.0.66", 40000); // an unregistered host
  const samehost = new Endpoint(w, "10.0.0.1", 40001); // a registered host, another port
  for (let i = 0; i < 5; i++) {
    stranger.sendToRelay(new Uint8Array(172));
    samehost.sendToRelay(new Uint8Array(172));
  }
  w.clock.advance(5);
  assertEquals(ub.got.length + ua.got.length, 0);
  let s = w.relay.stats();
  assertEquals(s.dropped.unregistered, 10);
  assertEquals(s.packets_in, 0);
  assertEquals(s.packets_out, 0);
  // Oversize datagrams from a registered source are dropped too, and counted against it.
  ua.sendToRelay(new Uint8Array(2201));
  ua.sendToRelay(new Uint8Array(2200));
  w.clock.advance(5);
  assertEquals(ub.got.length, 1);
  assertEquals(ub.got[0].data.length, 2200);
  s = w.relay.stats();
  assertEquals(s.dropped.oversize, 1);
  assertEquals(s.per_client.find((c) => c.source === "10.0.0.1:40000")!.drops, 1);
  w.clock.advance(10_000);
  assert(
    w.logs.lines.some((l) => /10 datagrams from unregistered sources dropped, last from 10\.0\.0\.1:40001/.test(l)),
    w.logs.lines.join("\n"),
  );
  await w.relay.close();
});

Deno.test("relay: a datagram read after its source's DISCONNECT is still forwarded for 2 s, then dropped; at most max_clients linger", async () => {
  const w = world({ maxClients: 2 });
  await w.relay.start();
  const ua = new Endpoint(w, "10.0.0.1", 40000), ub = new Endpoint(w, "10.0.0.2", 40002);
  const a = await LineClient.open(w, "10.0.0.1"), b = await LineClient.open(w, "10.0.0.2");
  a.send(w, "HELLO 40000 10.0.0.2 40002");
  b.send(w, "HELLO 40002 10.0.0.1 40000");
  w.clock.advance(5);
  a.take();
  b.take();
  // A sent its last datagram, then DISCONNECT; the relay reads the DISCONNECT first.
  a.send(w, "DISCONNECT");
  assertEquals(a.take(), ["BYE"]);
  w.clock.advance(5);
  assertEquals(b.take(), ["TARGET DOWN"]);
  assertEquals(w.relay.clientCount, 1);
  const last = new Uint8Array([0xee, 1, 2]);
  ua.sendToRelay(last);
  // B's datagrams to A are not forwarded: A is no target any more.
  ub.sendToRelay(new Uint8Array([7]));
  w.clock.advance(5);
  assertEquals(ub.got.map((g) => g.data), [last]);
  assertEquals(ua.got.length, 0);
  let s = w.relay.stats();
  assertEquals([s.packets_out, s.dropped.unregistered, s.dropped.target_down], [1, 0, 1]);
  // Once the 2 s have passed, A's address is unregistered again.
  w.clock.advance(2000);
  ua.sendToRelay(new Uint8Array([0xee, 3]));
  w.clock.advance(5);
  assertEquals(ub.got.length, 1);
  s = w.relay.stats();
  assertEquals([s.packets_out, s.dropped.unregistered], [1, 1]);

  // Registrations and disconnects in a row: at most max_clients (2) linger at a time, so memory stays bounded.
  const sources = ["10.0.0.3", "10.0.0.4", "10.0.0.5"];
  for (const ip of sources) {
    const c = await LineClient.open(w, ip);
    c.send(w, `HELLO 40000 10.0.0.2 40002`);
    w.clock.advance(5);
    assertEquals(c.take()[0], "OK 9999 120 " + ip);
    c.send(w, "DISCONNECT");
    w.clock.advance(5);
  }
  for (const ip of sources) new Endpoint(w, ip, 40000).sendToRelay(new Uint8Array([ip.length, 9]));
  w.clock.advance(5);
  // The first two still forward; the third found the lingering set full and is unregistered at once.
  assertEquals(ub.got.length, 3);
  s = w.relay.stats();
  assertEquals([s.packets_out, s.dropped.unregistered, s.clients], [3, 2, 1]);
  await w.relay.close();
});

Deno.test("relay: a client that stops heartbeating is removed at the first check 120 s after its last heartbeat", async () => {
  const w = world();
  await w.relay.start(); // checks at 10 s, 20 s, ...
  const ua = new Endpoint(w, "10.0.0.1", 40000), ub = new Endpoint(w, "10.0.0.2", 40002);
  const a = await LineClient.open(w, "10.0.0.1");
  a.send(w, "HELLO 40000 10.0.0.2 40002");
  const b = await LineClient.open(w, "10.0.0.2");
  b.send(w, "HELLO 40002 10.0.0.1 40000");
  // A heartbeats at 30 s and 60 s, then falls silent (its TCP connection stays open); B keeps heartbeating.
  for (let t = 30_000; t <= 180_000; t += 30_000) {
    w.clock.advance(t - w.clock.now());
    if (t <= 60_000) a.send(w, "HEARTBEAT");
    b.send(w, "HEARTBEAT");
  }
  a.take();
  b.take();
  // A's last heartbeat reached the relay at 60.001 s: it expires at the check at 190 s, not before.
  w.clock.advance(189_990 - w.clock.now());
  ua.sendToRelay(new Uint8Array([1]));
  w.clock.advance(9);
  assertEquals(w.relay.clientCount, 2);
  assertEquals(ub.got.length, 1, "still forwarded at 189.99 s");
  w.clock.advance(190_000 - w.clock.now());
  assertEquals(w.relay.clientCount, 1);
  assertEquals(w.relay.stats().expired, 1);
  assert(
    w.logs.lines.some((l) =>
      /\[RELAY\] expire 10\.0\.0\.1:40000: no heartbeat for 120 s packets_in=1 packets_out=1/.test(l)
    ),
  );
  w.clock.advance(5);
  assertEquals(a.take(), ["TIMEOUT"]);
  assert(a.ended, "its connection is closed");
  assertEquals(b.take(), ["TARGET DOWN"]);
  // Its datagrams are no longer forwarded.
  ua.sendToRelay(new Uint8Array([2]));
  w.clock.advance(5);
  assertEquals(ub.got.length, 1);
  assertEquals(w.relay.stats().dropped.unregistered, 1);
  await w.relay.close();
});

Deno.test("relay: a connection idle for idle_timeout without registering gets TIMEOUT at the next check", async () => {
  const w = world();
  await w.relay.start();
  w.clock.advance(3000);
  const c = await LineClient.open(w, "10.0.0.1"); // connected at 3.002 s
  w.clock.advance(10_000);
  c.send(w, "STATS"); // at 13.002 s: INVALID (not loopback), but a line: the idle time restarts
  assertEquals(c.take(), ["INVALID STATS is answered on loopback only"]);
  // 13.004 s + 30 s = 43.004 s: the check at 50 s closes it, the one at 40 s does not.
  w.clock.advance(49_999 - w.clock.now());
  assertEquals(c.take(), []);
  assert(!c.ended);
  w.clock.advance(50_000 - w.clock.now() + 5);
  assertEquals(c.take(), ["TIMEOUT"]);
  assert(c.ended);
  assertEquals(w.relay.stats().idle_timeouts, 1);
  await w.relay.close();
});

Deno.test("relay: a lost connection keeps the registration; HELLO from a new connection takes it over", async () => {
  const w = world();
  await w.relay.start();
  const ua = new Endpoint(w, "10.0.0.1", 40000), ub = new Endpoint(w, "10.0.0.2", 40002);
  const a = await LineClient.open(w, "10.0.0.1");
  a.send(w, "HELLO 40000 10.0.0.2 40002");
  const b = await LineClient.open(w, "10.0.0.2");
  b.send(w, "HELLO 40002 10.0.0.1 40000");
  a.conn.close();
  w.clock.advance(5);
  assertEquals(w.relay.clientCount, 2);
  assertEquals(w.relay.stats().per_client.find((c) => c.source === "10.0.0.1:40000")!.connected, false);
  ua.sendToRelay(new Uint8Array([7]));
  w.clock.advance(5);
  assertEquals(ub.got.length, 1, "still forwarded: a TCP hiccup does not cut the audio");
  const a2 = await LineClient.open(w, "10.0.0.1");
  a2.send(w, "HELLO 40000 10.0.0.2 40002");
  assertEquals(a2.take(), ["OK 9999 120 10.0.0.1", "TARGET UP"]);
  assertEquals(w.relay.clientCount, 2);
  assertEquals(w.relay.stats().registrations, 2);
  assert(w.logs.lines.some((l) => /register 10\.0\.0\.1:40000 → 10\.0\.0\.2:40002 \(re-registered/.test(l)));
  // A second takeover while the first connection is open: the old one is told and closed.
  const a3 = await LineClient.open(w, "10.0.0.1");
  a3.send(w, "HELLO 40000 10.0.0.2 40002");
  w.clock.advance(5);
  assertEquals(a2.take(), ["BYE registration moved to a new connection"]);
  assert(a2.ended);
  a3.send(w, "HEARTBEAT");
  assertEquals(a3.take(), ["OK 9999 120 10.0.0.1", "TARGET UP", "OK"]);
  await w.relay.close();
});

Deno.test("relay: targets 'any' forwards to a target that never registered; STATS from loopback", async () => {
  const w = world({ targets: "any", bind: "127.0.0.1" });
  await w.relay.start();
  const ua = new Endpoint(w, "127.0.0.1", 40000), sink = new Endpoint(w, "127.0.0.2", 5004);
  const a = await LineClient.open(w, "127.0.0.1", { hostname: "127.0.0.1", port: 9998 });
  a.send(w, "HELLO 40000 127.0.0.2 5004");
  assertEquals(a.take(), ["OK 9999 120 127.0.0.1"], "no TARGET lines in this mode");
  ua.sock.post(new Uint8Array([5, 6]), { hostname: "127.0.0.1", port: 9999 });
  w.clock.advance(5);
  assertEquals(sink.got.map((g) => [...g.data]), [[5, 6]]);
  a.send(w, "STATS");
  const line = a.take()[0];
  assertMatch(line, /^STATS \{/);
  const s = JSON.parse(line.slice(6));
  assertEquals([s.clients, s.packets_in, s.packets_out, s.udp], [1, 1, 1, "127.0.0.1:9999"]);
  a.send(w, "HELLO 40000 127.0.0.1 9999");
  assertEquals(a.take(), ["INVALID the target is this relay's own UDP address"]);
  await w.relay.close();
});

Deno.test("relay: a client naming its own address as target gets INVALID and nothing comes back to it", async () => {
  for (const targets of ["clients", "any"] as const) {
    const w = world({ targets });
    await w.relay.start();
    const ua = new Endpoint(w, "10.0.0.1", 40000);
    const a = await LineClient.open(w, "10.0.0.1");
    // Its own address, in any spelling: refused, nothing stored.
    for (const self of ["10.0.0.1", "::ffff:10.0.0.1"]) {
      a.send(w, `HELLO 40000 ${self} 40000`);
      assertEquals(a.take(), ["INVALID the target is your own address 10.0.0.1:40000"], `${targets}, ${self}`);
      w.clock.advance(200); // stay under the rate limit
    }
    assertEquals(w.relay.clientCount, 0);
    ua.sendToRelay(new Uint8Array([1]));
    w.clock.advance(5);
    assertEquals(ua.got.length, 0, `${targets}: nothing sent back to the source`);
    assertEquals(w.relay.stats().dropped.unregistered, 1);
    // The connection stays usable; another port of the same host is a valid target.
    a.send(w, "HELLO 40000 10.0.0.1 40001");
    assertMatch(a.take()[0], /^OK 9999 120 10\.0\.0\.1$/);
    w.clock.advance(200);
    // A registered client cannot move its target onto itself either: its registration keeps the old target.
    a.send(w, "HELLO 40000 10.0.0.1 40000");
    assertEquals(a.take(), ["INVALID the target is your own address 10.0.0.1:40000"]);
    assertEquals(w.relay.stats().per_client.map((c) => c.target), ["10.0.0.1:40001"]);
    ua.sendToRelay(new Uint8Array([2]));
    w.clock.advance(5);
    assertEquals(ua.got.length, 0, `${targets}: nothing sent back to the source`);
    // It went to 10.0.0.1:40001 (targets=any; nobody listens there) or was dropped as its target is not a client.
    const s = w.relay.stats();
    assertEquals([s.packets_out, s.dropped.target_down], targets === "any" ? [1, 0] : [0, 1]);
    await w.relay.close();
  }
});

Deno.test("relay: out of descriptors, a flood of connections all at once gets BUSY on every one: past 32 replies on their way, the next connection waits for one to go instead of being closed unanswered", async () => {
  // Every count says no descriptor is left: each new connection is refused.
  const w = world({ openFiles: () => ({ open: 1000, limit: 1000 }), maxConnections: 1000, maxConnectionsPerIp: 1000 });
  await w.relay.start();
  const n = 200;
  const got: string[][] = [];
  const ended: boolean[] = [];
  const connects: Promise<void>[] = [];
  for (let i = 0; i < n; i++) {
    got.push([]);
    ended.push(false);
    connects.push(
      w.streams.host(`10.0.${i >> 8}.${i & 255}`).connect({ hostname: RELAY_IP, port: 9998 }, 1000).then((c) =>
        c.start({
          data: (d) => got[i].push(...new TextDecoder().decode(d).split("\n").filter((l) => l !== "")),
          end: () => ended[i] = true,
        })
      ),
    );
  }
  // All of them arrive in the same millisecond; then the replies go, 32 at a time.
  await w.clock.advanceAsync(100, 1);
  await Promise.all(connects);
  const answered =
    got.filter((lines) =>
      lines.length === 1 && lines[0] === "BUSY the relay is out of file descriptors, try again later"
    ).length;
  assertEquals(answered, n, JSON.stringify(got.filter((l) => l.length !== 1).length) + " without BUSY");
  assert(ended.every((e) => e), "every refused connection is closed");
  assertEquals(w.relay.stats().busy, n);
  assertEquals(w.relay.connectionCount, 0);
  await w.relay.close();
});
