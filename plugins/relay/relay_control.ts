/**
 * The `relay` control plugin: runs a {@linkcode RelayServer} (registration
 * over TCP, UDP forwarding on the control context's network) until the
 * process is asked to stop. A pipeline file for it (`pipelines/relay.json`)
 * has a control section and no chains.
 *
 * @module
 */
import { z } from "zod";
import { type Controller, type ControlResult, defineControl } from "../../core/control.ts";
import { MAX_LINE, RELAY_DEFAULTS } from "./protocol.ts";
import { RelayServer, type RelayStats } from "./server.ts";
import { TcpStreamNetwork } from "./stream.ts";

/** Options of the `relay` control plugin. */
export const relayOptions = z.object({
  port: z.number().int().min(0).max(65535).default(RELAY_DEFAULTS.port).describe(
    `TCP port of the registration protocol (0 = any free port)`,
  ),
  udp_port: z.number().int().min(0).max(65535).default(RELAY_DEFAULTS.udpPort).describe(
    `UDP port audio is sent to and forwarded from (0 = any free port)`,
  ),
  bind: z.string().min(1).default("0.0.0.0").describe(
    'local address of both ports ("0.0.0.0": every IPv4 interface; "::" for IPv6 too)',
  ),
  max_clients: z.number().int().min(1).max(100000).default(RELAY_DEFAULTS.maxClients).describe(
    `registrations at most; more HELLOs get FULL`,
  ),
  heartbeat_timeout: z.number().min(1).max(86400).default(RELAY_DEFAULTS.heartbeatTimeout).describe(
    `seconds without HELLO/HEARTBEAT after which a registration expires`,
  ),
  idle_timeout: z.number().min(1).max(86400).default(RELAY_DEFAULTS.idleTimeout).describe(
    `seconds a TCP connection without registration may send nothing before TIMEOUT`,
  ),
  check_interval: z.number().min(0.1).max(3600).default(RELAY_DEFAULTS.checkInterval).describe(
    `seconds between expiry checks; expiry happens within this of its time`,
  ),
  max_packet: z.number().int().min(12).max(65507).default(RELAY_DEFAULTS.maxPacket).describe(
    `largest datagram forwarded, bytes; larger ones are dropped and counted`,
  ),
  max_line: z.number().int().min(64).max(4096).default(MAX_LINE).describe(
    `longest protocol line, bytes; longer lines get INVALID`,
  ),
  max_lines_per_second: z.number().int().min(1).max(10000).default(10).describe(
    "lines per second per connection; more are dropped, with one INVALID per second",
  ),
  max_connections: z.number().int().min(1).max(100000).default(64).describe(
    "TCP connections at most; more get BUSY and are closed",
  ),
  max_connections_per_ip: z.number().int().min(1).max(100000).default(8).describe(
    "TCP connections from one IP at most; more get BUSY and are closed",
  ),
  targets: z.enum(["clients", "any"]).default("clients").describe(
    'where datagrams may go: "clients" (default) only to a registered client\'s address, "any" to any target',
  ),
  stats: z.enum(["loopback", "any", "off"]).default("loopback").describe(
    'who may ask STATS (the counters as JSON): "loopback" peers (default), "any", or nobody ("off")',
  ),
  max_send_backlog: z.number().int().min(16).max(1000000).default(4096).describe(
    "datagrams waiting on the UDP socket at most; beyond, forwards are dropped and counted",
  ),
});

class RelayController implements Controller {
  readonly #server: RelayServer;
  readonly #signal: AbortSignal;

  constructor(server: RelayServer, signal: AbortSignal) {
    this.#server = server;
    this.#signal = signal;
  }

  stats(): RelayStats {
    return this.#server.stats();
  }

  async run(): Promise<ControlResult> {
    try {
      await this.#server.start();
    } catch (e) {
      return { code: 1, reason: e instanceof Error ? e.message : String(e) };
    }
    const { promise, resolve } = Promise.withResolvers<void>();
    if (this.#signal.aborted) resolve();
    else this.#signal.addEventListener("abort", () => resolve(), { once: true });
    await promise;
    await this.#server.close();
    return { code: 0 };
  }
}

/** The `relay` control plugin definition. */
export const relayControl = defineControl({
  name: "relay",
  kind: "control",
  description: "Media relay: clients register over TCP (HELLO/HEARTBEAT/DISCONNECT); their UDP is forwarded",
  variables: {},
  options: relayOptions,
  create(o, ctx) {
    const server = new RelayServer({
      clock: ctx.clock,
      log: ctx.log,
      net: ctx.net,
      streams: new TcpStreamNetwork(ctx.clock),
      bind: o.bind,
      port: o.port,
      udpPort: o.udp_port,
      maxClients: o.max_clients,
      heartbeatTimeout: o.heartbeat_timeout,
      idleTimeout: o.idle_timeout,
      checkInterval: o.check_interval,
      maxPacket: o.max_packet,
      maxLine: o.max_line,
      maxLinesPerSecond: o.max_lines_per_second,
      maxConnections: o.max_connections,
      maxConnectionsPerIp: o.max_connections_per_ip,
      targets: o.targets,
      stats: o.stats,
      maxSendBacklog: o.max_send_backlog,
    });
    return new RelayController(server, ctx.signal);
  },
});

export default relayControl;
