/**
 * The relay's registration protocol: one ASCII line per message over TCP,
 * ended by LF (a CR before it is ignored), tokens separated by spaces.
 *
 * Client → relay:
 *
 * | line | meaning |
 * |---|---|
 * | `HELLO <listen_port> <target_ip> <target_port>` | register: forward the UDP datagrams I send from `<my TCP address>:<listen_port>` to `<target_ip>:<target_port>` |
 * | `HEARTBEAT` | keep my registration alive |
 * | `DISCONNECT` | remove my registration |
 * | `STATS` | the relay's counters as one JSON line (loopback peers only, by default) |
 *
 * Relay → client (one reply per request, in order; `TARGET` lines may come at any time):
 *
 * | line | meaning |
 * |---|---|
 * | `OK <udp_port> <heartbeat_timeout_s> <your_ip>` | HELLO accepted: send audio to the relay's `<udp_port>`; heartbeat well within the timeout; `<your_ip>` is the address the relay saw |
 * | `OK` | HEARTBEAT accepted |
 * | `FULL` | HELLO refused: the relay has `max_clients` registrations |
 * | `INVALID <reason>` | the line was malformed or out of place; nothing changed, the connection stays usable |
 * | `BYE [<reason>]` | reply to DISCONNECT, or the relay is shutting down / the registration moved to a new connection; the relay closes the connection |
 * | `TIMEOUT` | the connection had no registration and no line for `idle_timeout` s, or the registration got no heartbeat for `heartbeat_timeout` s; the relay closes the connection |
 * | `BUSY <reason>` | connection refused by a limit (connections in all, or from one IP); the relay closes it |
 * | `TARGET UP` / `TARGET DOWN` | the client's target registered at the relay / went away |
 * | `STATS <json>` | reply to STATS |
 *
 * Everything here is pure: parsing and formatting, no I/O.
 *
 * @module
 */
import { canonicalHost, ipVersion } from "../../core/net/address.ts";

/** Defaults of the model relay (and ours). */
export const RELAY_DEFAULTS = {
  /** TCP port of the registration protocol. */
  port: 9998,
  /** UDP port audio is sent to and forwarded from (the model's). */
  udpPort: 9999,
  /** Registered clients at most (the model's). */
  maxClients: 10,
  /** Seconds without HELLO/HEARTBEAT after which a registration expires (the model's). */
  heartbeatTimeout: 120,
  /** Seconds a TCP connection without registration may stay without sending a line (the model's). */
  idleTimeout: 30,
  /** Seconds between expiry checks (the model's). */
  checkInterval: 10,
  /** Largest datagram forwarded, bytes (the model's). */
  maxPacket: 2200,
  /** Seconds between a client's heartbeats (the model's). */
  heartbeatInterval: 30,
  /** Handshake attempts of a client before it gives up (the model's 3 retries). */
  attempts: 3,
} as const;

/** Longest line (bytes, without the LF) a relay accepts. */
export const MAX_LINE = 256;

/** A request line a client sends. */
export type RelayRequest =
  | { type: "HELLO"; listenPort: number; targetIp: string; targetPort: number }
  | { type: "HEARTBEAT" }
  | { type: "DISCONNECT" }
  | { type: "STATS" };

/** A line a relay sends. */
export type RelayReply =
  | { type: "OK"; udpPort?: number; heartbeatTimeout?: number; observedIp?: string }
  | { type: "FULL" }
  | { type: "INVALID"; reason: string }
  | { type: "BYE"; reason: string }
  | { type: "TIMEOUT" }
  | { type: "BUSY"; reason: string }
  | { type: "TARGET"; up: boolean }
  | { type: "STATS"; json: string };

/** What {@linkcode parseRequest} returns for a line it cannot accept: the reason for `INVALID`. */
export interface ParseProblem {
  /** Why the line is invalid, for the `INVALID` reply. */
  invalid: string;
}

const PORT_RE = /^[0-9]{1,5}$/;

/** A decimal port 1..65535, or undefined. */
function port(text: string): number | undefined {
  if (!PORT_RE.test(text)) return undefined;
  const n = Number(text);
  return n >= 1 && n <= 65535 ? n : undefined;
}

/**
 * Why `ip` cannot be a forwarding target, or undefined when it can: it must be
 * an IPv4 or IPv6 literal (no host names: nothing from the network is looked
 * up), not the unspecified address, not multicast or broadcast.
 */
export function targetProblem(ip: string): string | undefined {
  const v = ipVersion(ip);
  if (v === 0) return `target "${ip}" is not an IP address (host names are not resolved)`;
  const c = canonicalHost(ip);
  if (c === "0.0.0.0" || c === "::") return "target is the unspecified address";
  if (ipVersion(c) === 4) {
    const first = Number(c.split(".")[0]);
    if (first >= 224 && first <= 239) return "target is a multicast address";
    if (c === "255.255.255.255") return "target is the broadcast address";
  } else if (c.startsWith("ff")) {
    return "target is a multicast address";
  }
  return undefined;
}

/**
 * Parses one request line (without its LF; a trailing CR is allowed).
 * Returns the request or the reason it is invalid.
 *
 * @example
 * ```ts
 * parseRequest("HELLO 40000 127.0.0.1 40002"); // { type: "HELLO", listenPort: 40000, targetIp: "127.0.0.1", targetPort: 40002 }
 * parseRequest("HELLO 0 x 1"); // { invalid: "listen_port must be 1..65535, got \"0\"" }
 * ```
 */
export function parseRequest(line: string): RelayRequest | ParseProblem {
  const text = line.endsWith("\r") ? line.slice(0, -1) : line;
  if (/[^\x20-\x7e]/.test(text)) return { invalid: "only printable ASCII is allowed" };
  const t = text.split(" ").filter((x) => x !== "");
  if (t.length === 0) return { invalid: "empty line" };
  const cmd = t[0];
  switch (cmd) {
    case "HELLO": {
      if (t.length !== 4) return { invalid: "expected HELLO <listen_port> <target_ip> <target_port>" };
      const listenPort = port(t[1]);
      if (listenPort === undefined) return { invalid: `listen_port must be 1..65535, got "${t[1].slice(0, 16)}"` };
      const bad = targetProblem(t[2]);
      if (bad) return { invalid: bad };
      const targetPort = port(t[3]);
      if (targetPort === undefined) return { invalid: `target_port must be 1..65535, got "${t[3].slice(0, 16)}"` };
      return { type: "HELLO", listenPort, targetIp: canonicalHost(t[2]), targetPort };
    }
    case "HEARTBEAT":
    case "DISCONNECT":
    case "STATS":
      if (t.length !== 1) return { invalid: `${cmd} takes no arguments` };
      return { type: cmd };
    default:
      return { invalid: `unknown command "${cmd.slice(0, 16)}" (expected HELLO, HEARTBEAT or DISCONNECT)` };
  }
}

/**
 * Formats a request line (without the LF).
 *
 * @example
 * ```ts
 * formatRequest({ type: "HELLO", listenPort: 40000, targetIp: "::1", targetPort: 40002 }); // "HELLO 40000 ::1 40002"
 * ```
 */
export function formatRequest(r: RelayRequest): string {
  return r.type === "HELLO" ? `HELLO ${r.listenPort} ${r.targetIp} ${r.targetPort}` : r.type;
}

/**
 * Formats a reply line (without the LF).
 *
 * @example
 * ```ts
 * formatReply({ type: "INVALID", reason: "empty line" }); // "INVALID empty line"
 * ```
 */
export function formatReply(r: RelayReply): string {
  switch (r.type) {
    case "OK":
      return r.udpPort === undefined ? "OK" : `OK ${r.udpPort} ${r.heartbeatTimeout} ${r.observedIp}`;
    case "INVALID":
    case "BUSY":
      return `${r.type} ${r.reason}`;
    case "BYE":
      return r.reason ? `BYE ${r.reason}` : "BYE";
    case "TARGET":
      return r.up ? "TARGET UP" : "TARGET DOWN";
    case "STATS":
      return `STATS ${r.json}`;
    default:
      return r.type;
  }
}

/**
 * Parses a reply line from a relay; undefined when it is not one.
 *
 * @example
 * ```ts
 * parseReply("OK 9999 120 127.0.0.1"); // { type: "OK", udpPort: 9999, heartbeatTimeout: 120, observedIp: "127.0.0.1" }
 * ```
 */
export function parseReply(line: string): RelayReply | undefined {
  const text = line.endsWith("\r") ? line.slice(0, -1) : line;
  const sp = text.indexOf(" ");
  const head = sp < 0 ? text : text.slice(0, sp);
  const rest = sp < 0 ? "" : text.slice(sp + 1);
  switch (head) {
    case "OK": {
      if (rest === "") return { type: "OK" };
      const t = rest.split(" ");
      const udpPort = port(t[0] ?? "");
      const timeout = Number(t[1]);
      if (t.length !== 3 || udpPort === undefined || !(timeout > 0) || ipVersion(t[2]) === 0) return undefined;
      return { type: "OK", udpPort, heartbeatTimeout: timeout, observedIp: t[2] };
    }
    case "FULL":
    case "TIMEOUT":
      return rest === "" ? { type: head } : undefined;
    case "INVALID":
    case "BUSY":
      return { type: head, reason: rest };
    case "BYE":
      return { type: "BYE", reason: rest };
    case "TARGET":
      return rest === "UP" ? { type: "TARGET", up: true } : rest === "DOWN" ? { type: "TARGET", up: false } : undefined;
    case "STATS":
      return { type: "STATS", json: rest };
    default:
      return undefined;
  }
}

/**
 * Splits a byte stream into lines of at most `maxLine` bytes (without the
 * LF), with memory bounded by `maxLine`: a longer line is reported once as
 * too long and skipped up to its LF, and the lines after it are read as usual.
 */
export class LineSplitter {
  readonly #buf: Uint8Array;
  #len = 0;
  #skipping = false;
  static readonly #decoder = new TextDecoder("latin1");

  /**
   * Creates a splitter.
   * @param maxLine longest line accepted, in bytes, without the LF
   */
  constructor(readonly maxLine: number) {
    this.#buf = new Uint8Array(maxLine);
  }

  /** Bytes of an incomplete line held. */
  get pending(): number {
    return this.#len;
  }

  /**
   * Feeds received bytes; calls `line(text)` for each complete line and
   * `tooLong()` once for each line over the limit. `stop()` returning true
   * (e.g. the connection closed meanwhile) ends the loop.
   */
  push(chunk: Uint8Array, line: (text: string) => void, tooLong: () => void, stop?: () => boolean): void {
    let start = 0;
    while (start < chunk.length) {
      if (stop?.()) return;
      const nl = chunk.indexOf(0x0a, start);
      const end = nl < 0 ? chunk.length : nl;
      if (this.#skipping) {
        if (nl >= 0) this.#skipping = false;
      } else if (this.#len + (end - start) > this.maxLine) {
        this.#len = 0;
        tooLong();
        this.#skipping = nl < 0;
      } else {
        this.#buf.set(chunk.subarray(start, end), this.#len);
        this.#len += end - start;
        if (nl >= 0) {
          const text = LineSplitter.#decoder.decode(this.#buf.subarray(0, this.#len));
          this.#len = 0;
          line(text);
        }
      }
      if (nl < 0) return;
      start = nl + 1;
    }
  }
}
