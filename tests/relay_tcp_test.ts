/**
 * The relay over real sockets on loopback: the TCP adapter (`Deno.listen`)
 * carries the line protocol (lines split across reads, over-long lines,
 * connection limits, shutdown), and clients registered with
 * `RelayRegistration` over TCP get their UDP datagrams forwarded. No timing is
 * asserted; every wait is bounded.
 */
import { assert, assertEquals, assertMatch } from "./assert.ts";
import { mediaClock } from "../core/clock.ts";
import { udpNetwork, UdpSocket } from "../core/net/udp.ts";
import { RelayServer, type RelayServerOptions } from "../plugins/relay/server.ts";
import { RelayRegistration } from "../plugins/relay/registration.ts";
import { TcpStreamNetwork } from "../plugins/relay/stream.ts";

const enc = new TextEncoder();

function relayOn(overrides: Partial<RelayServerOptions> = {}): RelayServer {
  const clock = mediaClock();
  return new RelayServer({
    clock,
    net: udpNetwork,
    streams: new TcpStreamNetwork(clock),
    bind: "127.0.0.1",
    port: 0,
    udpPort: 0,
    maxClients: 10,
    heartbeatTimeout: 120,
    idleTimeout: 30,
    checkInterval: 10,
    maxPacket: 2200,
    maxLine: 256,
    maxLinesPerSecond: 100,
    maxConnections: 64,
    maxConnectionsPerIp: 8,
    targets: "clients",
    stats: "loopback",
    ...overrides,
  });
}

/** A raw TCP client reading lines. */
class Raw {
  #buf = "";
  #eof = false;
  readonly #dec = new TextDecoder();
  private constructor(readonly conn: Deno.Conn) {}
  static async open(port: number): Promise<Raw> {
    return new Raw(await Deno.connect({ hostname: "127.0.0.1", port }));
  }
  async write(text: string): Promise<void> {
    await this.conn.write(enc.encode(text));
  }
  /** The next `n` lines (fewer at end of stream), within 10 s. */
  async lines(n: number): Promise<string[]> {
    const deadline = Date.now() + 10_000;
    const buf = new Uint8Array(4096);
    while (this.#buf.split("\n").length - 1 < n && !this.#eof) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${n} lines; have ${JSON.stringify(this.#buf)}`);
      const r = await this.conn.read(buf);
      if (r === null) this.#eof = true;
      else this.#buf += this.#dec.decode(buf.subarray(0, r));
    }
    const parts = this.#buf.split("\n");
    const out = parts.slice(0, Math.min(n, parts.length - 1));
    this.#buf = parts.slice(out.length).join("\n");
    return out;
  }
  /** True when the relay closed the connection (read returns end of stream). */
  async closedByPeer(): Promise<boolean> {
    await this.lines(1_000_000);
    return this.#eof;
  }
  close(): void {
    try {
      this.conn.close();
    } catch { /* closed */ }
  }
}

Deno.test({
  name: "relay over TCP: lines in pieces, malformed and over-long lines, limits, shutdown",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const relay = relayOn({ maxConnectionsPerIp: 2 });
    await relay.start();
    const port = relay.tcpAddress.port, udp = relay.udpAddress.port;
    const a = await Raw.open(port);
    try {
      await a.write("HELO 1 2 3\n");
      assertEquals(await a.lines(1), ['INVALID unknown command "HELO" (expected HELLO, HEARTBEAT or DISCONNECT)']);
      // One line in three TCP writes, then two lines in one.
      await a.write("HEL");
      await a.write("LO 4000");
      await a.write("0 127.0.0.1 40002\r\n");
      assertEquals(await a.lines(2), [`OK ${udp} 120 127.0.0.1`, "TARGET DOWN"]);
      await a.write("x".repeat(300) + "\nHEARTBEAT\n");
      assertEquals(await a.lines(2), ["INVALID line longer than 256 bytes", "OK"]);
      // The per-IP limit: a third connection from 127.0.0.1 is told BUSY and closed.
      const b = await Raw.open(port);
      const c = await Raw.open(port);
      assertEquals(await c.lines(1), ["BUSY too many connections from 127.0.0.1 (2)"]);
      assert(await c.closedByPeer());
      c.close();
      await b.write("STATS\n");
      const [stats] = await b.lines(1);
      assertMatch(stats, /^STATS \{/);
      const s = JSON.parse(stats.slice(6));
      assertEquals([s.clients, s.connections, s.busy, s.invalid], [1, 2, 1, 2]);
      // Shutdown: every connection is told BYE and closed.
      await relay.close();
      assertEquals(await a.lines(1), ["BYE shutting down"]);
      assert(await a.closedByPeer());
      assertEquals(await b.lines(1), ["BYE shutting down"]);
      b.close();
    } finally {
      a.close();
      await relay.close();
    }
  },
});

Deno.test({
  name: "relay over TCP and UDP: two registered clients exchange datagrams through the relay",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const relay = relayOn();
    await relay.start();
    const clock = mediaClock();
    const sa = UdpSocket.bind("127.0.0.1", 0), sb = UdpSocket.bind("127.0.0.1", 0);
    const got: { to: string; data: number[]; from: number }[] = [];
    const gotBoth = Promise.withResolvers<void>();
    for (const [name, s] of [["a", sa], ["b", sb]] as const) {
      s.listen((data, from) => {
        got.push({ to: name, data: [...data], from: from.port });
        if (got.length === 2) gotBoth.resolve();
      });
    }
    const reg = (mine: UdpSocket, theirs: UdpSocket) =>
      new RelayRegistration({
        streams: new TcpStreamNetwork(clock),
        clock,
        relay: relay.tcpAddress,
        target: { hostname: "127.0.0.1", port: theirs.port },
        listenPort: (conn) => {
          assertEquals(conn.local.hostname, "127.0.0.1");
          return mine.port;
        },
      });
    const ra = reg(sa, sb), rb = reg(sb, sa);
    const targetUp = Promise.withResolvers<void>();
    ra.on({ target: (up) => up && targetUp.resolve() });
    try {
      const [r1] = await Promise.all([ra.register(), rb.register()]);
      assertEquals(r1.udpPort, relay.udpAddress.port);
      const bound = setTimeout(() => targetUp.reject(new Error("no TARGET UP within 10 s")), 10_000);
      await targetUp.promise.finally(() => clearTimeout(bound));
      const to = { hostname: "127.0.0.1", port: r1.udpPort };
      await sa.send(new Uint8Array([1, 2, 3]), to);
      await sb.send(new Uint8Array([4, 5]), to);
      const bound2 = setTimeout(() => gotBoth.reject(new Error(`got ${JSON.stringify(got)} within 10 s`)), 10_000);
      await gotBoth.promise.finally(() => clearTimeout(bound2));
      got.sort((x, y) => x.to.localeCompare(y.to));
      assertEquals(got, [
        { to: "a", data: [4, 5], from: r1.udpPort },
        { to: "b", data: [1, 2, 3], from: r1.udpPort },
      ]);
      await Promise.all([ra.disconnect(), rb.disconnect()]);
      const s = relay.stats();
      assertEquals([s.registrations, s.disconnects, s.clients, s.packets_out, s.bytes_out], [2, 2, 0, 2, 5]);
    } finally {
      ra.close();
      rb.close();
      await Promise.all([sa.close(), sb.close(), relay.close()]);
    }
  },
});
