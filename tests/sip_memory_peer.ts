/**
 * A SIP peer scripted step by step on the in-memory network
 * ({@linkcode MemoryNetwork}, on a VirtualClock): it records every message it
 * receives (parsed, with the raw text) and answers what the test's script
 * says, so tests can check the bytes our user agent puts on the wire without
 * sockets or real time. (`SipPeer` in sip_util.ts is the same idea on real UDP.)
 *
 * @module
 */
import type { MemoryNetwork, MemorySocket } from "../core/net/memory.ts";
import {
  type Address,
  createResponse,
  getCSeq,
  parseMessage,
  serializeMessage,
  type SipMessage,
  type SipRequest,
  type SipResponse,
} from "../plugins/sip/mod.ts";

const td = new TextDecoder();

/** One message the peer received. */
export interface Got {
  /** The parsed message. */
  msg: SipMessage;
  /** Its text as received. */
  raw: string;
  /** Where it came from. */
  from: Address;
}

/** Options of {@linkcode MemoryPeer.respond}. */
export interface RespondInit {
  /** To tag to add (ignored when the request's To has one). */
  toTag?: string;
  /** Reason phrase. */
  reason?: string;
  /** More headers. */
  headers?: [string, string][];
  /** SDP body (Content-Type application/sdp is added). */
  sdp?: string;
}

/** A scripted SIP peer on a {@linkcode MemoryNetwork}. */
export class MemoryPeer {
  /** Everything received, in order. */
  readonly received: Got[] = [];
  /** Called for each request received, after it is recorded: the script. */
  onRequest: (req: SipRequest, from: Address) => void = () => {};
  readonly #t: MemorySocket;

  /** Binds the peer at `hostname:port` on `net`. */
  constructor(net: MemoryNetwork, hostname: string, port = 5060) {
    this.#t = net.bind(hostname, port);
    this.#t.listen((data, from) => {
      const msg = parseMessage(data);
      this.received.push({ msg, raw: td.decode(data), from });
      if (msg.kind === "request") this.onRequest(msg, from);
    });
  }

  /** The peer's address. */
  get address(): Address {
    return this.#t.local;
  }

  /** Requests received (of `method`, when given), in order. */
  requests(method?: string): SipRequest[] {
    return this.received.map((g) => g.msg).filter((m): m is SipRequest =>
      m.kind === "request" && (method === undefined || m.method === method)
    );
  }

  /** Responses received (to `method`, when given), in order. */
  responses(method?: string): SipResponse[] {
    return this.received.map((g) => g.msg).filter((m): m is SipResponse =>
      m.kind === "response" && (method === undefined || getCSeq(m).method === method)
    );
  }

  /** Sends a message to `to`. */
  send(msg: SipMessage, to: Address): void {
    void this.#t.send(serializeMessage(msg), to);
  }

  /** Answers `req` with `status`, sent to `to` (where the request came from); returns the response. */
  respond(req: SipRequest, status: number, to: Address, init: RespondInit = {}): SipResponse {
    const headers: [string, string][] = [...(init.headers ?? [])];
    if (init.sdp !== undefined) headers.push(["Content-Type", "application/sdp"]);
    const res = createResponse(req, status, init.reason, { toTag: init.toTag, headers, body: init.sdp });
    this.send(res, to);
    return res;
  }

  /** Detaches the peer from the network. */
  close(): Promise<void> {
    return this.#t.close();
  }
}
