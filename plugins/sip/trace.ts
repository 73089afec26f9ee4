/**
 * SIP message traces (the `--sip-trace` of the CLI, like `sipp -trace_msg`):
 * {@linkcode TracingTransport} wraps a datagram transport and reports every
 * datagram sent and received, with the time and both addresses;
 * {@linkcode formatTraceEvent} turns one into a text block. The digest
 * `response` of `Authorization` / `Proxy-Authorization` is masked in that
 * text (it would allow an offline guess of the password); passwords never
 * travel in SIP at all.
 *
 * Layer: transport (imports transport types).
 *
 * @module
 */
import type { ListenOptions, PacketHandler } from "../../core/net/datagram.ts";
import { FilteredSocket } from "../../core/net/filtered.ts";
import type { Address, DatagramTransport } from "./transport.ts";

/** One datagram that went through a {@linkcode TracingTransport}. */
export interface SipTraceEvent {
  /** `sent` by us or `received` from the peer. */
  direction: "sent" | "received";
  /** When (wall-clock time). */
  time: Date;
  /** Our address (the bound one, may be `0.0.0.0`). */
  local: Address;
  /** The peer's address. */
  remote: Address;
  /** The datagram's bytes. */
  data: Uint8Array;
}

/** Receives trace events. Called synchronously; an exception is ignored. */
export type SipTracer = (event: SipTraceEvent) => void;

/**
 * A datagram socket that reports each datagram to a tracer, then passes it
 * on unchanged.
 *
 * @example
 * ```ts
 * const udp = new TracingTransport(udpNetwork.bind("0.0.0.0", 0), (e) => console.error(formatTraceEvent(e)));
 * ```
 */
export class TracingTransport extends FilteredSocket {
  readonly #tracer: SipTracer;
  readonly #now: () => Date;

  /**
   * Wraps `inner`.
   * @param inner the socket to trace
   * @param tracer receives each event
   * @param now the time source (default `new Date()`)
   */
  constructor(inner: DatagramTransport, tracer: SipTracer, now: () => Date = () => new Date()) {
    super(inner, (data, to) => {
      this.#report("sent", to, data);
      return false;
    });
    this.#tracer = tracer;
    this.#now = now;
  }

  #report(direction: "sent" | "received", remote: Address, data: Uint8Array): void {
    try {
      this.#tracer({ direction, time: this.#now(), local: this.inner.local, remote, data });
    } catch {
      // A trace must never break signalling.
    }
  }

  /** Listens on the wrapped socket; each datagram is reported before it is handled. */
  override listen(handler: PacketHandler, opts?: ListenOptions): () => void {
    return this.inner.listen((data, from) => {
      this.#report("received", from, data);
      return handler(data, from);
    }, opts);
  }
}

function hostPort(a: Address): string {
  return a.hostname.includes(":") ? `[${a.hostname}]:${a.port}` : `${a.hostname}:${a.port}`;
}

/**
 * Replaces the `response` parameter of `Authorization` and
 * `Proxy-Authorization` header lines in a SIP message text with `"…"`.
 *
 * @example
 * ```ts
 * maskCredentials('Authorization: Digest username="a", response="6629fae4"\r\n');
 * // 'Authorization: Digest username="a", response="…"\r\n'
 * ```
 */
export function maskCredentials(text: string): string {
  return text.replace(
    /^((?:proxy-)?authorization[ \t]*:.*)$/gim,
    (line) => line.replace(/(\bresponse[ \t]*=[ \t]*)(?:"[^"]*"|[^\s,]+)/gi, '$1"…"'),
  );
}

const td = new TextDecoder();

/**
 * `s` without the LFs at its end, found by a loop from the end. (`replace(/\n+$/, "")` tried a match at every run of
 * LFs, each scanned to its end: 1.4 s for a 60 KB datagram of empty lines.)
 */
function withoutTrailingLf(s: string): string {
  let end = s.length;
  while (end > 0 && s.charCodeAt(end - 1) === 10) end--;
  return s.slice(0, end);
}

/**
 * One trace event as text: a separator line with the time, a line with the
 * direction, size and addresses, an empty line, then the message (line breaks
 * as `\n`, credentials masked), ending with an empty line.
 *
 * @example
 * ```ts
 * formatTraceEvent(event);
 * // ----------------------------------------------- 2026-11-22T10:00:00.123Z
 * // UDP message sent (512 bytes) from 127.0.0.1:5061 to 127.0.0.1:5062:
 * //
 * // INVITE sip:bob@127.0.0.1:5062 SIP/2.0
 * // ...
 * ```
 */
export function formatTraceEvent(e: SipTraceEvent): string {
  const head = e.direction === "sent"
    ? `UDP message sent (${e.data.length} bytes) from ${hostPort(e.local)} to ${hostPort(e.remote)}:`
    : `UDP message received (${e.data.length} bytes) from ${hostPort(e.remote)} on ${hostPort(e.local)}:`;
  const text = withoutTrailingLf(maskCredentials(td.decode(e.data)).replace(/\r\n/g, "\n"));
  return `----------------------------------------------- ${e.time.toISOString()}\n${head}\n\n${text}\n\n`;
}
