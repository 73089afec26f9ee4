/**
 * SIP over UDP (RFC 3261 §18): {@linkcode SipTransport}, on a datagram socket
 * of the core network layer (real UDP, or in-memory in tests), turns
 * datagrams into parsed messages, answers malformed requests with `400`, stamps
 * `received`/`rport` on incoming requests (§18.2.1, RFC 3581) and sends
 * responses to the address the top Via names (§18.2.2) — the packet's source
 * IP, never a `maddr` or a host name. Nothing it sends goes to a host name
 * unless told to (`resolveNames`), so nothing a datagram says makes the process
 * resolve a name.
 *
 * @module
 */
import { type Logger, silentLogger } from "../../core/log.ts";
import type { HostPort } from "../../core/net/address.ts";
import { type DatagramSocket, PortUnreachableError } from "../../core/net/datagram.ts";
import { type PartialRequest, SipParseError } from "./errors.ts";
import { SipHeaders, splitHeaderValue } from "./headers.ts";
import {
  createResponse,
  parseMessage,
  type ParseOptions,
  reasonPhrase,
  serializeMessage,
  type SipRequest,
  type SipResponse,
  topVia,
} from "./message.ts";
import { newTag } from "./ids.ts";
import { excerpt, formatHostPort, isIpAddress } from "./syntax.ts";
import { formatVia, parseVia, responseTarget } from "./via.ts";

/** A UDP address: the network layer's {@linkcode HostPort}. */
export type Address = HostPort;

/**
 * What SIP runs on: the network layer's datagram socket (a real UDP socket,
 * or a socket of a `MemoryNetwork` in tests).
 */
export type DatagramTransport = DatagramSocket;

/** Counters kept by {@linkcode SipTransport}. */
export interface SipTransportStats {
  /** Datagrams received. */
  received: number;
  /** Keep-alive datagrams (only CR/LF) ignored. */
  keepalives: number;
  /** Requests passed up. */
  requests: number;
  /** Responses passed up. */
  responses: number;
  /** Malformed requests answered with 400 (or 505 for an unsupported SIP version). */
  badRequestsAnswered: number;
  /** Malformed datagrams dropped without answer (unrecoverable requests, ACKs, bad responses, garbage). */
  malformedDropped: number;
  /** Warnings about malformed datagrams not written because more than the limit arrived within a second. */
  malformedLogsSuppressed: number;
  /** Responses dropped because they carried more than one Via (RFC 3261 §18.1.2). */
  misroutedResponses: number;
  /** Messages sent. */
  sent: number;
  /** Send failures. */
  sendErrors: number;
}

/** One SIP message sent or received, as {@linkcode SipTransport.onMessage} reports it. */
export interface SipMessageEvent {
  /** `sent` by us or `received` from the peer. */
  direction: "sent" | "received";
  /** The parsed message (do not modify it). */
  message: SipRequest | SipResponse;
  /** The peer's address: where it came from, or where it is sent. */
  remote: Address;
  /** True when the same message object was sent before (a retransmission by a transaction timer). */
  retransmission: boolean;
}

/** Options of {@linkcode SipTransport}. */
export interface SipTransportOptions {
  /** The datagram transport. */
  transport: DatagramTransport;
  /** Logger (lines are tagged by the caller, e.g. `log.child("SIP")`). */
  log?: Logger;
  /** Parser limits. */
  parse?: ParseOptions;
  /**
   * Most warnings about malformed datagrams written per second (default 20); the
   * others are counted, and one line says how many were left out. Bounds the log
   * under a flood of garbage without keeping anything per source.
   */
  malformedLogLimit?: number;
  /** Monotonic milliseconds for that limit (default `performance.now`; tests pass a virtual clock's `now`). */
  now?: () => number;
  /**
   * Allow sending to a host name (the system resolves it). Default false: a
   * send to anything but an IP address is refused with an error, so a name can
   * never be looked up because of a bug that lets one through from the network.
   */
  resolveNames?: boolean;
  /** See {@linkcode SipTransport.onMessage}. */
  onMessage?: (e: SipMessageEvent) => void;
}

/**
 * SIP message transport over a datagram socket. Never throws out of its receive
 * path. A malformed request whose request line and a Via can be read gets
 * `400 Bad Request (<reason>)` (or `505 Version Not Supported (<reason>)`), sent
 * to the datagram's source address (never to a host name or `maddr` from the
 * message, so nothing is resolved); the reason says what is wrong, with no raw
 * bytes that could break the reply's framing. Everything else malformed (ACKs,
 * responses, garbage) is dropped. Each malformed datagram is counted and logged
 * as one warning line saying what and from where (rate-limited); nothing is kept.
 *
 * @example
 * ```ts
 * const sip = new SipTransport({ transport: udpNetwork.bind("0.0.0.0", 5060) });
 * sip.onRequest = (req, from) => sip.sendResponse(createResponse(req, 200));
 * ```
 */
export class SipTransport {
  readonly #dgram: DatagramTransport;
  readonly #unlisten: () => void;
  readonly #log: Logger;
  readonly #parse: ParseOptions;
  readonly #inflight = new Set<Promise<unknown>>();
  readonly #now: () => number;
  readonly #logLimit: number;
  readonly #resolveNames: boolean;
  /** Each response's bytes and target, so that retransmissions (the same object again) cost no work. */
  readonly #wire = new WeakMap<SipResponse, { data: Uint8Array; to: Address }>();
  #logWindow = -Infinity;
  #logged = 0;
  #suppressed = 0;
  /** Called with each well-formed request (top Via already stamped with received/rport). */
  onRequest: (req: SipRequest, from: Address) => void = () => {};
  /** Called with each well-formed response. */
  onResponse: (res: SipResponse, from: Address) => void = () => {};
  /**
   * Called when the network reports that a datagram sent to `to` found nobody
   * listening (ICMP port unreachable). The socket reports it only when it knows
   * the destination: a `MemoryNetwork` does. Real UDP sockets in Deno do not:
   * on an unconnected socket (and a SIP socket sends to many peers) neither
   * `Deno.listenDatagram` nor `node:dgram` surfaces the ICMP error (checked on
   * Deno 2.9.6, Linux), so there a dead destination shows only as silence.
   */
  onUnreachable: (to: Address) => void = () => {};
  /**
   * Called with each well-formed message received (before it is handled) and
   * each message sent (as it is handed to the socket), e.g. to draw a call's
   * message ladder. Malformed datagrams and keep-alives are not reported. An
   * exception it throws is ignored.
   */
  onMessage: ((e: SipMessageEvent) => void) | undefined;
  /** Requests sent at least once, to tell retransmissions. */
  readonly #sentRequests = new WeakSet<SipRequest>();
  /** Counters. */
  readonly stats: SipTransportStats = {
    received: 0,
    keepalives: 0,
    requests: 0,
    responses: 0,
    badRequestsAnswered: 0,
    malformedDropped: 0,
    malformedLogsSuppressed: 0,
    misroutedResponses: 0,
    sent: 0,
    sendErrors: 0,
  };

  /**
   * Attaches to the datagram transport.
   * @param opts transport, logger and parser limits
   */
  constructor(opts: SipTransportOptions) {
    this.#dgram = opts.transport;
    this.#log = opts.log ?? silentLogger;
    this.#parse = opts.parse ?? {};
    this.#now = opts.now ?? (() => performance.now());
    this.#logLimit = opts.malformedLogLimit ?? 20;
    this.#resolveNames = opts.resolveNames ?? false;
    this.onMessage = opts.onMessage;
    this.#unlisten = this.#dgram.listen((data, from) => this.receive(data, from), {
      maxSize: this.#parse.maxSize ?? 65535,
      onOversize: (from) => {
        this.stats.received++;
        this.stats.malformedDropped++;
        this.#warn(`datagram from ${formatHostPort(from.hostname, from.port)} over the size limit dropped`);
      },
      onError: (e) => {
        if (e instanceof PortUnreachableError && e.to) {
          this.#log.debug(`ICMP port unreachable from ${formatHostPort(e.to.hostname, e.to.port)}`);
          this.onUnreachable({ hostname: e.to.hostname, port: e.to.port });
          return;
        }
        this.#log.debug(`UDP receive error: ${e instanceof Error ? e.message : e}`);
      },
    });
  }

  /** The bound local address. */
  get localAddress(): Address {
    return this.#dgram.local;
  }

  /** Handles one datagram as if it had been received from `from` (used by the socket; public for tests). */
  receive(data: Uint8Array, from: Address): void {
    try {
      this.stats.received++;
      if (isKeepalive(data)) {
        this.stats.keepalives++;
        return;
      }
      let msg;
      try {
        msg = parseMessage(data, this.#parse);
      } catch (e) {
        this.#malformed(e, data, from);
        return;
      }
      if (msg.kind === "request") {
        stampVia(msg.headers, from);
        this.stats.requests++;
        if (this.onMessage) this.#observe("received", msg, from, false);
        this.onRequest(msg, from);
      } else {
        if (msg.headers.getAll("Via").length > 1) {
          this.stats.misroutedResponses++;
          this.#log.debug(`dropped response with more than one Via from ${formatHostPort(from.hostname, from.port)}`);
          return;
        }
        this.stats.responses++;
        if (this.onMessage) this.#observe("received", msg, from, false);
        this.onResponse(msg, from);
      }
    } catch (e) {
      this.#log.error(`error handling datagram from ${formatHostPort(from.hostname, from.port)}: ${errText(e)}`);
    }
  }

  /** Writes one warning about a malformed datagram, unless the per-second limit is reached. */
  #warn(line: string, level: "warn" | "error" = "warn"): void {
    const now = this.#now();
    if (now - this.#logWindow >= 1000) {
      if (this.#suppressed > 0) {
        this.#log.warn(`${this.#suppressed} more malformed datagrams were not logged (limit ${this.#logLimit}/s)`);
      }
      this.#logWindow = now;
      this.#logged = 0;
      this.#suppressed = 0;
    }
    if (this.#logged < this.#logLimit) {
      this.#logged++;
      this.#log[level](line);
    } else {
      this.#suppressed++;
      this.stats.malformedLogsSuppressed++;
    }
  }

  #malformed(e: unknown, data: Uint8Array, from: Address): void {
    const where = formatHostPort(from.hostname, from.port);
    if (!(e instanceof SipParseError)) {
      this.stats.malformedDropped++;
      this.#warn(`parser failure on datagram from ${where}: ${errText(e)}`, "error");
      return;
    }
    const reason = oneLine(e.reason, 160);
    const p = e.partial;
    if (p && p.method !== "ACK") {
      const reply = malformedReply(p, e.status, reason, from);
      if (reply) {
        this.stats.badRequestsAnswered++;
        const to = formatHostPort(reply.to.hostname, reply.to.port);
        this.#warn(
          `${e.status} ${reasonPhrase(e.status)} sent to ${to} (${reason}) for malformed ${
            excerpt(p.method)
          } from ${where}`,
        );
        void this.#sendTo(reply.data, reply.to);
        return;
      }
    }
    this.stats.malformedDropped++;
    const what = p ? `request ${excerpt(p.method)}` : looksLikeResponse(data) ? "response" : "datagram";
    this.#warn(`dropped malformed ${what} from ${where} (${reason})`);
  }

  /** Sends a request to `to`. Rejects on a socket error. */
  async sendRequest(req: SipRequest, to: Address): Promise<void> {
    if (this.onMessage) {
      const again = this.#sentRequests.has(req);
      if (!again) this.#sentRequests.add(req);
      this.#observe("sent", req, to, again);
    }
    await this.#sendTo(serializeMessage(req), to, true);
  }

  #observe(direction: "sent" | "received", message: SipRequest | SipResponse, remote: Address, again: boolean) {
    try {
      this.onMessage?.({ direction, message, remote, retransmission: again });
    } catch {
      // An observer must never break signalling.
    }
  }

  /**
   * Sends a response where its top Via says (RFC 3261 §18.2.2, RFC 3581): the
   * `received` address (the packet's source IP, stamped on receipt) at the
   * `rport` or sent-by port. A `maddr` is ignored (a response never goes to a
   * third party) and a sent-by host name is never resolved. Rejects on a socket
   * error, and when the Via names no IP address. A response is serialized once:
   * sending the same object again (a retransmission) sends the same bytes.
   */
  async sendResponse(res: SipResponse): Promise<void> {
    let w = this.#wire.get(res);
    const again = w !== undefined;
    if (!w) {
      w = { data: serializeMessage(res), to: responseTarget(topVia(res)) };
      this.#wire.set(res, w);
    }
    if (this.onMessage) this.#observe("sent", res, w.to, again);
    await this.#sendTo(w.data, w.to, true);
  }

  async #sendTo(data: Uint8Array, to: Address, rethrow = false): Promise<void> {
    if (!this.#resolveNames && !isIpAddress(to.hostname)) {
      this.stats.sendErrors++;
      const e = new Error(
        `not sending to ${formatHostPort(to.hostname, to.port)}: ${excerpt(to.hostname)} is a host name, ` +
          "and host names are not resolved (use an IP address, or allow resolution: resolveNames)",
      );
      this.#log.warn(e.message);
      if (rethrow) throw e;
      return;
    }
    const p = this.#dgram.send(data, to);
    this.#inflight.add(p);
    try {
      await p;
      this.stats.sent++;
    } catch (e) {
      this.stats.sendErrors++;
      this.#log.warn(`send to ${formatHostPort(to.hostname, to.port)} failed: ${errText(e)}`);
      if (rethrow) throw e;
    } finally {
      this.#inflight.delete(p);
    }
  }

  /** Waits until every datagram handed to the socket so far has been sent (or failed). */
  async flush(): Promise<void> {
    while (this.#inflight.size > 0) await Promise.allSettled([...this.#inflight]);
  }

  /** Waits for pending sends, then stops listening and closes the underlying socket. */
  async close(): Promise<void> {
    await this.flush();
    this.#unlisten();
    await this.#dgram.close();
  }
}

/** An error's message on one line (no stack, no control characters). */
function errText(e: unknown): string {
  return oneLine(e instanceof Error ? e.message : String(e), 300);
}

/** `s` cut to `max` characters with control characters (and line separators) written as `\xHH`. */
function oneLine(s: string, max: number): string {
  // deno-lint-ignore no-control-regex -- control characters are what is replaced
  const t = s.slice(0, max).replace(/[\x00-\x1f\x7f-\x9f\u2028\u2029]/g, (c) => {
    const h = c.charCodeAt(0).toString(16);
    return "\\x" + (h.length < 2 ? "0" + h : h);
  });
  return s.length > max ? t + "..." : t;
}

/**
 * A Reason-Phrase (RFC 3261 §25.1: reserved, unreserved, escaped, UTF-8, SP, HTAB) saying `text`:
 * other ASCII characters are %-escaped, so nothing from a datagram can end the status line.
 */
function toReasonPhrase(text: string): string {
  let out = "";
  for (const ch of text.slice(0, 200)) {
    const c = ch.codePointAt(0)!;
    const ok = c >= 0x80 ? !(c < 0xa0 || c === 0x2028 || c === 0x2029) : /[A-Za-z0-9;/?:@&=+$,\-_.!~*'() \t]/.test(ch);
    out += ok ? ch : "%" + c.toString(16).toUpperCase().padStart(2, "0");
  }
  return out;
}

/**
 * The 400/505 answer to a malformed request, or undefined when it has no Via to answer along.
 * It goes to the datagram's source IP (at the rport or the Via port, RFC 3261 §18.2.2 / RFC 3581),
 * never to a host name or `maddr` taken from the message; the top Via gets received/rport when it
 * parses, and is echoed as sent otherwise (then the reply goes to the source port).
 */
function malformedReply(
  p: PartialRequest,
  status: 400 | 505,
  reason: string,
  from: Address,
): { data: Uint8Array; to: Address } | undefined {
  // One entry per Via element (a line that cannot be split is kept whole, as received).
  const vias: string[] = [];
  for (const [n, v] of p.headers) {
    if (n !== "Via") continue;
    try {
      vias.push(...splitHeaderValue("Via", v));
    } catch {
      vias.push(v);
    }
  }
  if (vias.length === 0) return undefined;
  let to: Address = { hostname: from.hostname, port: from.port };
  try {
    const top = parseVia(vias[0]);
    if (top.params.rport === null) {
      top.params.received = from.hostname;
      top.params.rport = String(from.port);
    } else {
      if (top.host !== from.hostname) top.params.received = from.hostname;
      to = { hostname: from.hostname, port: top.port ?? 5060 };
    }
    vias[0] = formatVia(top);
  } catch {
    // An unreadable top Via: answer the source address, echoing the Vias as received.
  }
  const h = new SipHeaders(vias.map((v) => ["Via", v] as const));
  for (const [n, v] of p.headers) if (n !== "Via" && REPLY_HEADERS.has(n)) h.append(n, v);
  // A To tag, as on every final response to a request without one (RFC 3261 §8.2.6.2).
  const res = createResponse(
    { method: p.method, uri: p.uri, headers: h.toArray() },
    status,
    `${reasonPhrase(status)} (${toReasonPhrase(reason)})`,
    { toTag: newTag() },
  );
  try {
    return { data: serializeMessage(res), to };
  } catch {
    return undefined;
  }
}

const REPLY_HEADERS: ReadonlySet<string> = new Set(["Via", "From", "To", "Call-ID", "CSeq"]);

function isKeepalive(data: Uint8Array): boolean {
  for (const b of data) if (b !== 13 && b !== 10 && b !== 32 && b !== 9) return false;
  return true;
}

function looksLikeResponse(data: Uint8Array): boolean {
  return data.length > 4 && data[0] === 0x53 && data[1] === 0x49 && data[2] === 0x50 && data[3] === 0x2f;
}

/**
 * Stamps the top Via of an incoming request (RFC 3261 §18.2.1, RFC 3581 §4):
 * `received` is set to the source IP whenever the sent-by host (or a
 * `received` the sender wrote itself) is not that IP, or `rport` is present;
 * `rport`, when present, is set to the source port. So the response target
 * (`responseTarget`) is always the packet's source IP: a request cannot steer
 * its responses to a third party.
 */
function stampVia(headers: SipHeaders, from: Address): void {
  const v = headers.get("Via");
  if (v === undefined) return;
  const via = parseVia(v);
  const p = via.params;
  const port = String(from.port);
  let changed = false;
  if (p.rport !== undefined && p.rport !== port) {
    p.rport = port;
    changed = true;
  }
  const needsReceived = p.received !== undefined || p.rport !== undefined || via.host !== from.hostname;
  if (needsReceived && p.received !== from.hostname) {
    p.received = from.hostname;
    changed = true;
  }
  if (changed) headers.setFirst("Via", formatVia(via));
}
