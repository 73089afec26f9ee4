/**
 * The `relay` control plugin: runs a {@linkcode RelayServer} (registration
 * over TCP, UDP forwarding on the control context's network) until the
 * process is asked to stop. A pipeline file for it (`pipelines/relay.json`)
 * has a control section and no chains.
 *
 * @module
 */
import { type Controller, type ControlResult, defineControl } from "../../core/control.ts";
import { RELAY_DESCRIPTION, relayOptionsSchema } from "./control_options.ts";
import { RelayServer, type RelayStats } from "./server.ts";
import { TcpStreamNetwork } from "./stream.ts";

/** Options of the `relay` control plugin: control_options.ts's schema, built when this module loads (same instance). */
export const relayOptions: ReturnType<typeof relayOptionsSchema> = relayOptionsSchema();

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
  description: RELAY_DESCRIPTION,
  variables: {},
  options: relayOptions,
  create(o, ctx) {
    const server = new RelayServer({
      clock: ctx.clock,
      log: ctx.log,
      net: ctx.net,
      streams: new TcpStreamNetwork(ctx.clock, ctx.log.child("RELAY")),
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
