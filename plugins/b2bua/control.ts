/**
 * The `sip-relay` control plugin: runs a {@linkcode SipRelay} (registrar and
 * B2BUA with media anchored at the relay) on the control context's network
 * and clock until the process is asked to stop. A pipeline file for it
 * (`pipelines/sip-relay.json`) has a control section and no chains.
 *
 * Users and passwords come from the `users` option (`user:password,...`,
 * usually a pipeline parameter) and/or `users_file` (one `user:password` per
 * line; a relative path is looked for in the pipeline file's directory, then
 * in the working directory); with none, nothing is authenticated (a caller must still be
 * registered). Passwords are never logged: the start line gives their count.
 *
 * @module
 */
import { isAbsolute, resolve } from "node:path";
import {
  type Controller,
  type ControlPluginDefinition,
  type ControlResult,
  defineControl,
} from "../../core/control.ts";
import { parsePortRange } from "../../core/net/ports.ts";
import { DIGEST_ALGORITHMS, type DigestAlgorithm, formatTraceEvent } from "../sip/mod.ts";
import { parseUsers } from "./digest_server.ts";
import { SIP_RELAY_DESCRIPTION, type SipRelayControlOptions, sipRelayOptionsSchema } from "./options.ts";
import { SipRelay, type SipRelayStats } from "./sip_relay.ts";

/** Options of the `sip-relay` control plugin: options.ts's schema, built when this module loads (same instance). */
export const sipRelayOptions: ReturnType<typeof sipRelayOptionsSchema> = sipRelayOptionsSchema();

class SipRelayController implements Controller {
  readonly #relay: SipRelay;
  readonly #signal: AbortSignal;

  constructor(relay: SipRelay, signal: AbortSignal) {
    this.#relay = relay;
    this.#signal = signal;
  }

  stats(): SipRelayStats {
    return this.#relay.stats();
  }

  async run(): Promise<ControlResult> {
    try {
      this.#relay.start();
    } catch (e) {
      return { code: 1, reason: `cannot start the SIP relay: ${e instanceof Error ? e.message : e}` };
    }
    const { promise, resolve } = Promise.withResolvers<void>();
    if (this.#signal.aborted) resolve();
    else this.#signal.addEventListener("abort", () => resolve(), { once: true });
    await promise;
    await this.#relay.close();
    return { code: 0 };
  }
}

/** The users of `users` and `users_file` together; throws naming the option (never a password). */
function usersOf(o: SipRelayControlOptions, baseDir: string): Map<string, string> {
  const users = parseUsers(o.users, "control.users");
  if (o.users_file) {
    // Relative: to the pipeline file's directory (written in the file), else to the working directory (--set).
    const tried = isAbsolute(o.users_file)
      ? [o.users_file]
      : [...new Set([resolve(baseDir, o.users_file), resolve(Deno.cwd(), o.users_file)])];
    const path = tried.find((p) => existsFile(p)) ?? tried[0];
    let text: string;
    try {
      text = Deno.readTextFileSync(path);
    } catch (e) {
      throw new Error(
        `control.users_file: cannot read ${tried.join(" or ")}: ${e instanceof Error ? e.message : e}`,
      );
    }
    for (const [user, password] of parseUsers(text, `control.users_file ${path}`)) {
      if (users.has(user)) throw new Error(`user ${user} is in both control.users and control.users_file`);
      users.set(user, password);
    }
  }
  return users;
}

function existsFile(path: string): boolean {
  try {
    return Deno.statSync(path).isFile;
  } catch {
    return false;
  }
}

function algorithmsOf(text: string): DigestAlgorithm[] {
  return text.split(",").map((a) => a.trim()).map((a) => {
    const known = DIGEST_ALGORITHMS.find((k) => k.toLowerCase() === a.toLowerCase() && !k.endsWith("-sess"));
    if (!known) {
      throw new Error(`control.auth_algorithms: unknown algorithm ${a} (known: MD5, SHA-256, SHA-512-256)`);
    }
    return known;
  });
}

/** The `sip-relay` control plugin definition. */
export const sipRelayControl: ControlPluginDefinition<typeof sipRelayOptions> = defineControl({
  name: "sip-relay",
  kind: "control",
  description: SIP_RELAY_DESCRIPTION,
  variables: {},
  options: sipRelayOptions,
  create(o, ctx) {
    if (o.min_expires > o.max_expires) {
      throw new Error(`control.min_expires (${o.min_expires}) is above control.max_expires (${o.max_expires})`);
    }
    const trace = ctx.trace;
    const relay = new SipRelay({
      clock: ctx.clock,
      log: ctx.log,
      net: ctx.net,
      bind: o.bind,
      port: o.port,
      ...(o.public_address ? { publicAddress: o.public_address } : {}),
      codecs: ctx.codecs,
      ...(o.codecs ? { allowedCodecs: o.codecs.split(",").map((c) => c.trim()) } : {}),
      users: usersOf(o, ctx.baseDir),
      realm: o.realm,
      algorithms: algorithmsOf(o.auth_algorithms),
      nonceLifetime: o.nonce_lifetime,
      authLimits: {
        maxFailures: o.auth_max_failures,
        failureWindow: o.auth_failure_window,
        blockTime: o.auth_block_time,
        limitLoopback: o.auth_limit_loopback,
      },
      maxClients: o.max_clients,
      maxContacts: o.max_contacts,
      minExpires: o.min_expires,
      maxExpires: o.max_expires,
      defaultExpires: Math.min(o.default_expires, o.max_expires),
      retryAfter: o.retry_after,
      maxCalls: o.max_calls,
      ringTimeout: o.ring_timeout,
      mediaTimeout: o.media_timeout,
      rtpPorts: parsePortRange(o.rtp_ports),
      latch: o.latch,
      maxPacket: o.max_packet,
      nat: o.nat,
      keepCalls: o.keep_calls,
      timers: { T1: o.t1_ms },
      ...(trace ? { trace: (e) => trace(formatTraceEvent(e)) } : {}),
    });
    return new SipRelayController(relay, ctx.signal);
  },
});

export default sipRelayControl;
