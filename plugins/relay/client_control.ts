/**
 * The `relay-client` control plugin: registers at a relay (TCP, with retries
 * and heartbeats: `registration.ts`), then runs the file's chains with the
 * relay's UDP address filled in, and leaves with `DISCONNECT`.
 *
 * The UDP socket is bound first, on `bind` (default: the local address of the
 * TCP connection to the relay, so the relay sees our datagrams come from the
 * IP it registered) and `port`; every chain of the client runs in one session,
 * so the `udp-source` and the `udp-sink` naming `${local.port}` share it: our
 * audio leaves from the port we registered, which is what the relay forwards.
 *
 * Chains ending in a `udp-sink` are send chains; the others receive. Receive
 * chains start as soon as we are registered; send chains too, or, with
 * `wait_for_target`, once the relay says our target has registered (so the
 * peer hears everything from the first sample). A receive chain that raises
 * `end-of-transmission` (the peer's marker, see `end_marker.ts`) is ended
 * gracefully when `end_on_peer_end`. The client exits when every chain has
 * ended (a file sent and the peer's marker received), or when interrupted:
 * then send chains end gracefully too (their queue and the marker go out),
 * and the registration is removed with `DISCONNECT`.
 *
 * Template variables: `relay.udp` (host:port to send to), `relay.address`,
 * `local.bind`, `local.port`, `target`.
 *
 * @module
 */
import type { Variables } from "../../core/config.ts";
import { type ControlContext, type Controller, type ControlResult, defineControl } from "../../core/control.ts";
import type { Logger } from "../../core/log.ts";
import { formatHostPort, type HostPort, parseHostPort, resolveHost } from "../../core/net/address.ts";
import type { DatagramSocket } from "../../core/net/datagram.ts";
import type { Pipeline, PipelineResult } from "../../core/pipeline.ts";
import { Session } from "../../core/session.ts";
import {
  RELAY_CLIENT_DESCRIPTION,
  RELAY_CLIENT_VARIABLES,
  type RelayClientControlOptions as Options,
  relayClientOptionsSchema,
} from "./control_options.ts";
import { RelayRegistration } from "./registration.ts";
import { TcpStreamNetwork } from "./stream.ts";

export { RELAY_CLIENT_VARIABLES } from "./control_options.ts";

/**
 * Options of the `relay-client` control plugin: control_options.ts's schema, built when this module loads (same
 * instance).
 */
export const relayClientOptions: ReturnType<typeof relayClientOptionsSchema> = relayClientOptionsSchema();

class RelayClientController implements Controller {
  readonly #o: Options;
  readonly #ctx: ControlContext;
  readonly #log: Logger;
  #reg: RelayRegistration | undefined;
  readonly #pipelines: Pipeline[] = [];

  constructor(o: Options, ctx: ControlContext) {
    this.#o = o;
    this.#ctx = ctx;
    this.#log = ctx.log.child("RELAY");
    if (ctx.templates.length === 0) {
      throw new Error("relay-client needs at least one chain (a send chain ending in udp-sink, a receive chain)");
    }
  }

  stats(): unknown {
    return {
      registered: this.#reg?.current !== undefined,
      registrations: this.#reg?.registrations ?? 0,
      target_up: this.#reg?.targetUp ?? false,
      heartbeats: this.#reg?.heartbeats ?? 0,
      pipelines: Object.fromEntries(this.#pipelines.map((p) => [p.name, p.stats()])),
    };
  }

  async run(): Promise<ControlResult> {
    const o = this.#o, ctx = this.#ctx, clock = ctx.clock;
    let relay: HostPort, target: HostPort;
    try {
      const r = parseHostPort(o.relay), t = parseHostPort(o.target);
      relay = { hostname: await resolveHost(r.hostname), port: r.port };
      target = { hostname: await resolveHost(t.hostname), port: t.port };
    } catch (e) {
      return { code: 2, reason: errText(e) };
    }
    const session = new Session({ id: "relay-client", clock, log: ctx.log, net: ctx.net });
    let sock: DatagramSocket | undefined;
    const reg = new RelayRegistration({
      streams: new TcpStreamNetwork(clock),
      clock,
      log: ctx.log,
      relay,
      target,
      attempts: o.attempts,
      retryDelayMs: o.retry_delay * 1000,
      retryMaxMs: o.retry_max * 1000,
      replyTimeoutMs: o.reply_timeout * 1000,
      heartbeatMs: o.heartbeat * 1000,
      listenPort: (conn) => {
        if (!sock) {
          sock = session.socket(o.bind || conn.local.hostname, o.port);
          this.#log.info(`udp socket ${formatHostPort(sock.local)}`);
        } else if (!o.bind && conn.local.hostname !== sock.hostname) {
          this.#log.warn(
            `the connection to the relay now leaves from ${conn.local.hostname}, but our UDP socket is on ` +
              `${sock.hostname}: the relay will not recognize our datagrams (set bind)`,
          );
        }
        return sock.port;
      },
    });
    this.#reg = reg;
    try {
      let first;
      // Interrupted while registering: stop trying. (Once registered, an interrupt ends the chains first; the
      // registration is then removed with DISCONNECT.)
      const stopTrying = () => reg.close();
      ctx.signal.addEventListener("abort", stopTrying, { once: true });
      if (ctx.signal.aborted) stopTrying();
      try {
        first = await reg.register();
      } catch (e) {
        if (ctx.signal.aborted) {
          return { code: 1, reason: "interrupted before the registration at the relay completed" };
        }
        return { code: 1, reason: errText(e) };
      } finally {
        ctx.signal.removeEventListener("abort", stopTrying);
      }
      const relayUdp = formatHostPort({ hostname: relay.hostname, port: first.udpPort });
      reg.on({
        registered: (r) => {
          if (r.udpPort !== first.udpPort) {
            this.#log.warn(
              `the relay's UDP port changed from ${first.udpPort} to ${r.udpPort}: our audio still goes to ` +
                `${relayUdp}; restart this client`,
            );
          }
        },
      });
      const vars: Variables = {
        "relay.udp": relayUdp,
        "relay.address": relay.hostname,
        "local.bind": sock!.hostname,
        "local.port": sock!.port,
        "target": formatHostPort(target),
      };
      return await this.#runChains(vars, reg, session);
    } finally {
      await reg.disconnect();
      await session.close();
    }
  }

  async #runChains(vars: Variables, reg: RelayRegistration, session: Session): Promise<ControlResult> {
    const ctx = this.#ctx, o = this.#o;
    try {
      for (const t of ctx.templates) this.#pipelines.push(await ctx.buildPipeline(t, vars, t, session));
    } catch (e) {
      await Promise.all(this.#pipelines.map((p) => p.stop()));
      return { code: 1, reason: errText(e) };
    }
    const isSend = (p: Pipeline) => p.stats().at(-1)?.use === "udp-sink";
    const sends = this.#pipelines.filter(isSend), receives = this.#pipelines.filter((p) => !isSend(p));
    let failure: string | undefined;
    for (const p of this.#pipelines) {
      p.on("end-of-transmission", () => {
        if (o.end_on_peer_end && !isSend(p)) {
          this.#log.info(`the peer ended its transmission: ending ${p.name}`);
          p.end();
        }
      });
      p.on("ended", (ev) => {
        const r = ev.detail as PipelineResult;
        if (r.reason === "error") {
          failure ??= r.error?.message;
          this.#log.error(`pipeline ${p.name} failed: ${r.error?.message}`);
          for (const q of this.#pipelines) q.stop();
        } else {
          this.#log.info(`pipeline ${p.name} ended (${r.reason})`);
        }
      });
    }
    const onAbort = () => {
      for (const p of this.#pipelines) p.end();
    };
    ctx.signal.addEventListener("abort", onAbort, { once: true });
    try {
      for (const p of receives) p.start();
      if (o.wait_for_target && !reg.targetUp && !ctx.signal.aborted) {
        this.#log.info(`waiting for the target ${vars.target} to register at the relay`);
        let off = () => {};
        await new Promise<void>((resolve) => {
          off = reg.on({ target: (up) => up && resolve() });
          ctx.signal.addEventListener("abort", () => resolve(), { once: true });
        });
        off();
      }
      for (const p of sends) {
        if (ctx.signal.aborted) p.stop();
        else {
          this.#log.info(`sending to the relay at ${vars["relay.udp"]}`);
          p.start();
        }
      }
      await Promise.all(this.#pipelines.map((p) => p.done));
    } finally {
      ctx.signal.removeEventListener("abort", onAbort);
    }
    return failure ? { code: 1, reason: `pipeline failed: ${failure}` } : { code: 0 };
  }
}

function errText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** The `relay-client` control plugin definition. */
export const relayClientControl = defineControl({
  name: "relay-client",
  kind: "control",
  description: RELAY_CLIENT_DESCRIPTION,
  variables: RELAY_CLIENT_VARIABLES,
  options: relayClientOptions,
  create: (o, ctx) => new RelayClientController(o, ctx),
});

export default relayClientControl;
