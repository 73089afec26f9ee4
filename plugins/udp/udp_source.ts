/**
 * `udp-source`: receives UDP datagrams and emits them as `packet` frames.
 *
 * The socket is bound when the stage is created, so the port is known (stats
 * `port`, event `listening`) before the pipeline starts, and a port in use is a
 * build error. Once the peer is known (the `peer` option, or learned with
 * `learn_peer` once one sender has sent `learn_after` datagrams in a row: RFC
 * 3550's probation, so one forged datagram cannot capture the stream), datagrams from any other address or port
 * are dropped and counted (`foreign_dropped`): nobody else can inject media. A
 * `timeout` without datagrams ends the source, so the pipeline reaches end of
 * stream and its sinks finalize (a WAV header is written), after a `timeout`
 * event. Stopping the pipeline ends the source at once. Ending it gracefully
 * (`Pipeline.end`, e.g. a call's receive chain when the peer's BYE comes) first
 * reads what the kernel already holds for the socket: the source sends itself
 * a marker datagram and ends when the marker comes back, so every datagram that
 * arrived before the end was asked for reaches the chain, however late this
 * process was scheduled (a stalled callee used to read the BYE before the last
 * RTP packets queued behind it, and lose them). A stop, or the end's grace
 * running out, ends the drain at once. Like every live source,
 * it never waits for downstream backpressure: datagrams are handed on as they
 * arrive (a sink that cannot keep up drops or queues them itself).
 *
 * The socket belongs to the session (`ctx.session.socket`): a `udp-sink` of the
 * same session whose `bind` and `local_port` are the same sends from it
 * (symmetric RTP), and a port pair the session holds (a call's, allocated
 * when its SDP was made) is used as it is.
 *
 * @example Pipeline entry
 * ```json
 * { "use": "udp-source", "port": 10000, "peer": "192.0.2.7:4000", "timeout": 30 }
 * ```
 *
 * @module
 */
import type { PacketFrame } from "../../core/frame.ts";
import type { Timer } from "../../core/clock.ts";
import type { RunContext, SourceStage, StageContext } from "../../core/stage.ts";
import { udpSource, type UdpSourceOptions, udpSourceSchema } from "./plugins.ts";
import {
  canonicalHost,
  formatHostPort,
  type HostPort,
  ipVersion,
  parseHostPort,
  resolveHost,
  sameAddress,
} from "../../core/net/address.ts";
import { PortUnreachableError } from "../../core/net/datagram.ts";
import { parsePortRange } from "../../core/net/ports.ts";
import { randomBytes } from "../../core/random.ts";

/** Receive errors (other than a closed peer port) logged per chain, at debug level; the rest are counted. */
const ERRORS_LOGGED = 3;

export { udpSource, type UdpSourceOptions };

/** Options of the `udp-source` stage (its zod schema; the plugin's `options`). */
export const udpSourceOptions: ReturnType<typeof udpSourceSchema> = udpSourceSchema();

/** Creates a `udp-source` stage from validated options: the plugin's `create`, loaded when first used. */
export async function createUdpSource(opts: UdpSourceOptions, sctx: StageContext): Promise<SourceStage> {
  let peer: HostPort | undefined;
  if (opts.peer) {
    const p = parseHostPort(opts.peer);
    // Checking: a host name is not resolved (no DNS query).
    const host = sctx.checking && ipVersion(p.hostname) === 0 ? p.hostname : await resolveHost(p.hostname);
    peer = { hostname: canonicalHost(host), port: p.port };
  }
  const range = opts.port === 0 ? parsePortRange(opts.port_range) : undefined;
  const sock = sctx.session.socket(opts.bind, opts.port, range);
  const timeoutMs = opts.timeout * 1000;
  /** How long to wait for the first datagram (ms; 0: forever). */
  const firstTimeoutMs = opts.first_timeout > 0 ? opts.first_timeout * 1000 : timeoutMs;
  let packets = 0, bytes = 0, foreignDropped = 0, oversizeDropped = 0, receiveErrors = 0, portUnreachable = 0;
  let lastArrival: number | undefined;
  /** Without a peer: the sender on probation and how many datagrams in a row came from it. */
  let candidate: HostPort | undefined;
  let candidateRun = 0;
  let stopListening: (() => void) | undefined;

  return {
    plan: () =>
      `receives on ${
        opts.port ? formatHostPort({ hostname: sock.hostname, port: opts.port }) : `a port of ${opts.port_range}`
      }${
        peer
          ? ` from ${formatHostPort(peer)} only`
          : opts.learn_peer
          ? `, latches to the first sender heard ${opts.learn_after} time(s) in a row`
          : ", from anyone"
      }${opts.first_timeout > 0 ? `, waits ${opts.first_timeout} s for the first packet` : ""}${
        opts.timeout > 0 ? `, ends after ${opts.timeout} s without packets` : ""
      }`,
    stats: () => ({
      bind: sock.hostname,
      port: sock.port,
      peer: peer ? formatHostPort(peer) : null,
      packets,
      bytes,
      foreign_dropped: foreignDropped,
      oversize_dropped: oversizeDropped,
      receive_errors: receiveErrors,
      port_unreachable: portUnreachable,
    }),

    run(ctx: RunContext): Promise<void> {
      const clock = ctx.clock;
      const startedAt = clock.now();
      ctx.event("listening", { bind: sock.hostname, port: sock.port });
      return new Promise<void>((resolve) => {
        let timer: Timer | undefined;
        let ended = false;
        const finish = () => {
          if (ended) return;
          ended = true;
          stopListening?.();
          stopListening = undefined;
          timer?.cancel();
          ctx.signal.removeEventListener("abort", onSignal);
          ctx.stopSignal?.removeEventListener("abort", finish);
          resolve();
        };
        // Asked to end gracefully (not stopped): read up to a marker sent to ourselves, which the kernel queues
        // behind every datagram received so far; a stop (or the end's grace running out) ends at once.
        let marker: { to: HostPort; token: Uint8Array } | undefined;
        const onSignal = () => {
          const stop = ctx.stopSignal;
          if (!stop || stop.aborted || marker || ended) return finish();
          stop.addEventListener("abort", finish, { once: true });
          marker = { to: { hostname: loopbackFor(sock.hostname), port: sock.port }, token: drainToken() };
          sock.post(marker.token, marker.to, { sent: () => {}, failed: () => finish() });
        };
        if (ctx.signal.aborted) return finish();
        ctx.signal.addEventListener("abort", onSignal, { once: true });

        // One timer re-armed lazily at (last arrival + timeout), not one per datagram; before the first datagram
        // it is due at (start + first_timeout).
        const checkTimeout = () => {
          const since = lastArrival ?? startedAt;
          const limitMs = lastArrival === undefined ? firstTimeoutMs : timeoutMs;
          const now = clock.now();
          if (limitMs > 0 && now - since >= limitMs) {
            ctx.log.info(`no datagram for ${limitMs / 1000} s: ending`, { port: sock.port });
            ctx.event("timeout", {
              seconds: limitMs / 1000,
              port: sock.port,
              packets,
              peer: peer ? formatHostPort(peer) : null,
            });
            finish();
          } else if (limitMs > 0) {
            timer = clock.at(since + limitMs, checkTimeout);
          } else {
            timer = undefined; // no limit now (e.g. first_timeout only, and the first datagram came)
          }
        };
        if (firstTimeoutMs > 0) timer = clock.at(startedAt + firstTimeoutMs, checkTimeout);

        stopListening = sock.listen((data, remote) => {
          if (ended) return;
          if (marker && isMarker(data, remote, marker)) return finish();
          if (peer) {
            const match = peer.port === 0
              ? canonicalHost(remote.hostname) === peer.hostname
              : sameAddress(peer, remote);
            if (!match) {
              foreignDropped++;
              ctx.session.stats.foreignDropped++;
              if (foreignDropped === 1) {
                ctx.log.warn(
                  `dropping datagrams from ${formatHostPort(remote)}: not the peer ${formatHostPort(peer)}`,
                );
              }
              return;
            }
            if (peer.port === 0 && opts.learn_peer) {
              peer = remote;
              ctx.event("peer", { address: formatHostPort(remote), learned: true });
            }
          } else if (opts.learn_peer) {
            if (candidate && sameAddress(candidate, remote)) candidateRun++;
            else {
              candidate = remote;
              candidateRun = 1;
            }
            if (candidateRun >= opts.learn_after) {
              peer = remote;
              candidate = undefined;
              ctx.log.info(
                `latched to ${formatHostPort(remote)} after ${candidateRun} consecutive datagram(s); ` +
                  "datagrams from anyone else are dropped from now on",
              );
              ctx.event("peer", { address: formatHostPort(remote), learned: true });
            }
          }
          const arrival = clock.now();
          if (lastArrival === undefined && firstTimeoutMs !== timeoutMs) {
            // The first datagram: from now on the timeout counts from the last arrival.
            timer?.cancel();
            timer = timeoutMs > 0 ? clock.at(arrival + timeoutMs, checkTimeout) : undefined;
          }
          lastArrival = arrival;
          packets++;
          bytes += data.length;
          const media = ctx.session.stats;
          media.packetsReceived++;
          media.bytesReceived += data.length;
          const frame: PacketFrame = { kind: "packet", data, remote, arrival };
          // A live source does not wait for downstream: the sender will not slow down, and holding the socket
          // unread only moves the loss into the kernel. (Waiting also deadlocked a playout chain: a jitter buffer
          // keeps a speaker's queue full on its own clock, so the drain this source waited for never came.)
          ctx.emit(frame);
        }, {
          maxSize: opts.max_size,
          onOversize: (remote) => {
            oversizeDropped++;
            if (oversizeDropped === 1) {
              ctx.log.warn(`dropping datagrams over max_size ${opts.max_size} bytes from ${formatHostPort(remote)}`);
            }
          },
          onError: (e) => {
            receiveErrors++;
            if (e instanceof PortUnreachableError) {
              // What this socket sends (a call's RTP, its RTCP) reaches a closed port: the peer's end has gone, or
              // not started yet. Said once per chain; then counted. The chain goes on: datagrams that come are
              // taken, and `timeout` ends it when none do.
              if (++portUnreachable === 1) {
                const to = e.to ? ` ${formatHostPort(e.to)}` : "";
                ctx.log.info(
                  `the peer's port${to} is closed (ICMP port unreachable for what we send there; counted, not ` +
                    `logged again: port_unreachable)${
                      opts.timeout > 0 ? `; the stream ends after ${opts.timeout} s without packets` : ""
                    }`,
                );
              }
              return;
            }
            // Logged for the first few only: an error a socket reports for every datagram would flood the log.
            if (receiveErrors - portUnreachable <= ERRORS_LOGGED) {
              ctx.log.debug(`receive error: ${(e as Error).message}`);
            }
          },
          onFatal: (e) => {
            receiveErrors++;
            ctx.fail(new Error(`UDP receive on port ${sock.port} keeps failing: ${(e as Error).message}`));
            finish();
          },
        });
      });
    },

    close() {
      stopListening?.();
      stopListening = undefined;
      // The socket itself is released with the pipeline's shared resources.
    },
  };
}

/** Where a socket bound to `hostname` reaches itself: the address, or loopback for a wildcard bind. */
function loopbackFor(hostname: string): string {
  if (hostname === "0.0.0.0") return "127.0.0.1";
  if (hostname === "::") return "::1";
  return hostname;
}

/** A drain marker's payload: random, so no peer can guess it and end the stream early. */
function drainToken(): Uint8Array {
  return randomBytes(new Uint8Array(16));
}

/**
 * True when `data` from `remote` is our drain marker: its random token, from our own port (the source address
 * is not compared: a wildcard-bound socket may see itself as 127.0.0.1 or as its bound address).
 */
function isMarker(data: Uint8Array, remote: HostPort, m: { to: HostPort; token: Uint8Array }): boolean {
  if (data.length !== m.token.length || remote.port !== m.to.port) return false;
  for (let i = 0; i < data.length; i++) if (data[i] !== m.token[i]) return false;
  return true;
}
