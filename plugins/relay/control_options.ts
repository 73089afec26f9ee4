/**
 * The declarations of the relay family's control plugins, `relay` and `relay-client`: their options (schemas built
 * on first use: {@linkcode relayOptionsSchema}, {@linkcode relayClientOptionsSchema}), variables and descriptions. `plugins/controls.ts` registers the plugins from these alone and loads their implementations
 * (`relay_control.ts`, `client_control.ts`, with the relay server, the registration protocol and TCP streams) when
 * a pipeline file uses one, so a process that never does (a transcode) does not load them.
 *
 * @module
 */
import { z } from "zod";
import { hostPortProblem } from "../../core/net/address.ts";
import { lazySchema } from "../../core/options.ts";
import { MAX_LINE, RELAY_DEFAULTS } from "./protocol.ts";

/** One line for `--list-plugins`: the `relay-client` control plugin. */
export const RELAY_CLIENT_DESCRIPTION =
  "Registers at a relay (TCP, retries, heartbeats, DISCONNECT) and runs the chains over its UDP port";

/** One line for `--list-plugins`: the `relay` control plugin. */
export const RELAY_DESCRIPTION =
  "Media relay: clients register over TCP (HELLO/HEARTBEAT/DISCONNECT); their UDP is forwarded";

const hostPort = (what: string) =>
  z.string().superRefine((v, c) => {
    const p = hostPortProblem(v);
    if (p) c.addIssue({ code: "custom", message: `${what}: ${p}` });
  });

/**
 * Options of the `relay-client` control plugin: the schema, built on the first call (the same instance every time;
 * client_control.ts exports it as `relayClientOptions`).
 */
export const relayClientOptionsSchema = lazySchema(() =>
  z.object({
    relay: hostPort("relay").describe(
      `the relay's TCP address, host:port (its default port is ${RELAY_DEFAULTS.port})`,
    ),
    target: hostPort("target").describe("where the relay is to forward our audio: the peer client's UDP host:port"),
    bind: z.string().default("").describe(
      'local address of our UDP socket (default "": the address our TCP connection to the relay leaves from)',
    ),
    port: z.number().int().min(0).max(65535).default(0).describe(
      "local UDP port we send from and receive on, registered as listen_port (default 0: any free port)",
    ),
    attempts: z.number().int().min(1).max(100).default(RELAY_DEFAULTS.attempts).describe(
      `tries of the first registration before giving up`,
    ),
    retry_delay: z.number().min(0.01).max(60).default(1).describe(
      "seconds before the second try; doubles each time",
    ),
    retry_max: z.number().min(0.01).max(3600).default(30).describe("longest delay between tries, s"),
    reply_timeout: z.number().min(0.1).max(60).default(5).describe(
      "seconds allowed for connecting and for each reply",
    ),
    heartbeat: z.number().min(0.1).max(3600).default(RELAY_DEFAULTS.heartbeatInterval).describe(
      `seconds between heartbeats at most (a relay announcing a shorter timeout gets one every third of it, ≥ 0.25 s)`,
    ),
    wait_for_target: z.boolean().default(false).describe(
      "start the send chains only once the relay says the target has registered",
    ),
    end_on_peer_end: z.boolean().default(true).describe(
      "end a receive chain when the peer's end-of-transmission marker arrives",
    ),
  })
);

/** Variables the plugin provides to chain templates. */
export const RELAY_CLIENT_VARIABLES: Record<string, string> = {
  "relay.udp": "the relay's UDP host:port (send there; it is also the only sender we accept)",
  "relay.address": "the relay's IP address",
  "local.bind": "the address our UDP socket is bound to",
  "local.port": "our UDP port (registered as listen_port)",
  "target": "the target host:port we registered",
};

/**
 * Options of the `relay` control plugin: the schema, built on the first call (the same instance every time;
 * relay_control.ts exports it as `relayOptions`).
 */
export const relayOptionsSchema = lazySchema(() =>
  z.object({
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
  })
);

/** Validated options of the `relay` control plugin. */
export type RelayControlOptions = z.output<ReturnType<typeof relayOptionsSchema>>;

/** Validated options of the `relay-client` control plugin. */
export type RelayClientControlOptions = z.output<ReturnType<typeof relayClientOptionsSchema>>;
