/**
 * Helpers for the relay tests: a relay on a virtual clock with in-memory TCP
 * and UDP, and a line-protocol client that records what it is told.
 *
 * @module
 */
import { VirtualClock } from "../core/clock.ts";
import { Logger, MemoryOutput } from "../core/log.ts";
import type { HostPort } from "../core/net/address.ts";
import { MemoryNetwork, type MemorySocket } from "../core/net/memory.ts";
import { RelayServer, type RelayServerOptions } from "../plugins/relay/server.ts";
import { MemoryStreamNetwork, type StreamConn } from "../plugins/relay/stream.ts";

/** The relay's address in these tests. */
export const RELAY_IP = "10.0.0.9";

/** A test world: clock, UDP and TCP networks, a log, and a relay (not started). */
export interface World {
  /** The clock. */
  clock: VirtualClock;
  /** Datagrams. */
  net: MemoryNetwork;
  /** Byte streams. */
  streams: MemoryStreamNetwork;
  /** Log lines. */
  logs: MemoryOutput;
  /** The logger writing them. */
  log: Logger;
  /** The relay. */
  relay: RelayServer;
  /** Relay options used. */
  options: RelayServerOptions;
}

/** Builds a world; `overrides` change the relay's options (defaults are the model's). */
export function world(overrides: Partial<RelayServerOptions> = {}): World {
  const clock = new VirtualClock();
  const net = new MemoryNetwork({ clock, latencyMs: 1 });
  const streams = new MemoryStreamNetwork({ clock, latencyMs: 1 });
  const logs = new MemoryOutput();
  const log = new Logger({ level: "debug", outputs: [logs] });
  const options: RelayServerOptions = {
    clock,
    log,
    net,
    streams,
    bind: RELAY_IP,
    port: 9998,
    udpPort: 9999,
    maxClients: 10,
    heartbeatTimeout: 120,
    idleTimeout: 30,
    checkInterval: 10,
    maxPacket: 2200,
    maxLine: 256,
    maxLinesPerSecond: 10,
    maxConnections: 64,
    maxConnectionsPerIp: 8,
    targets: "clients",
    stats: "loopback",
    ...overrides,
  };
  return { clock, net, streams, logs, log, relay: new RelayServer(options), options };
}

const enc = new TextEncoder();

/** A protocol client: sends lines, keeps every line it receives. */
export class LineClient {
  /** Lines received, in order. */
  readonly lines: string[] = [];
  /** True once the connection ended. */
  ended = false;
  #partial = "";

  private constructor(readonly conn: StreamConn) {
    conn.start({
      data: (d) => {
        const text = this.#partial + new TextDecoder().decode(d);
        const parts = text.split("\n");
        this.#partial = parts.pop()!;
        this.lines.push(...parts);
      },
      end: () => this.ended = true,
    });
  }

  /** Connects from `ip` to the relay; advances the clock until connected. */
  static async open(w: World, ip: string, to: HostPort = { hostname: RELAY_IP, port: 9998 }): Promise<LineClient> {
    const p = w.streams.host(ip).connect(to, 1000);
    w.clock.advance(2);
    return new LineClient(await p);
  }

  /** Sends `text` (a newline is appended unless `raw`) and lets it arrive and be answered. */
  send(w: World, text: string, raw = false): void {
    this.conn.write(enc.encode(raw ? text : text + "\n"));
    w.clock.advance(2);
  }

  /** Sends raw bytes and lets them arrive. */
  sendBytes(w: World, bytes: Uint8Array): void {
    this.conn.write(bytes);
    w.clock.advance(2);
  }

  /** The lines received since the last call. */
  take(): string[] {
    return this.lines.splice(0);
  }
}

/** A UDP endpoint that records what it receives. */
export class Endpoint {
  /** Datagrams received: bytes and sender. */
  readonly got: { data: Uint8Array; from: HostPort }[] = [];
  /** The socket. */
  readonly sock: MemorySocket;

  /**
   * Binds `ip:port` on the world's network.
   * @param w the world
   * @param ip address
   * @param port port
   */
  constructor(w: World, ip: string, port: number) {
    this.sock = w.net.bind(ip, port);
    this.sock.listen((data, from) => {
      this.got.push({ data, from });
    }, { maxSize: 65507 });
  }

  /** Sends a datagram to the relay's UDP port. */
  sendToRelay(data: Uint8Array): void {
    this.sock.post(data, { hostname: RELAY_IP, port: 9999 });
  }
}
