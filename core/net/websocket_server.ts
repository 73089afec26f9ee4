/**
 * The server side of the WebSocket protocol (RFC 6455) and of plain HTTP/1.1
 * requests, over Deno's TCP connections, with every resource bounded: what the
 * WebSocket bridge and the browser console need and nothing more (no
 * extensions, no keep-alive, no chunked bodies, no TLS: put TLS termination in
 * front). Used by `plugins/ws/bridge.ts` and `plugins/console/service.ts`.
 *
 * - **Handshake.** An HTTP/1.1 request head of at most `maxHeadBytes` (else
 *   431), within `headTimeoutMs` (else the connection is closed); at most
 *   `maxHandshakes` connections in that phase (or with a request under way,
 *   see below) at once, and `maxHandshakesPerSource` (a quarter) of them from
 *   one IP address, loopback exempt (more are closed at once, unanswered; a
 *   warning says so, then a line per 10 s while it lasts). A request asking for a
 *   WebSocket without what §4.2.1 requires (GET, HTTP/1.1, Host, Connection:
 *   Upgrade, a 16-byte Sec-WebSocket-Key) gets 400, a Sec-WebSocket-Version
 *   other than 13 gets 426; every other request, upgrade or not, goes to the
 *   handler, which answers it with a status (and a body, text or bytes, with
 *   its content type; none to a HEAD) or accepts it (choosing a subprotocol).
 * - **Plain requests.** One request per connection: the answer says
 *   `connection: close`, our side is shut once it is written, and the peer has
 *   `closeTimeoutMs` to read it and go (what it sends meanwhile is dropped).
 *   A handler may answer later (a promise): the connection then counts among
 *   the `maxHandshakes` until it is answered, and may read the request's body
 *   ({@linkcode UpgradeRequest.readBody}: a `Content-Length` body of at most
 *   `maxBodyBytes`, kept in a buffer that grows as its bytes come, which must
 *   come within `bodyTimeoutMs` plus one second per `minBodyBytesPerSecond`,
 *   else the connection is closed).
 * - **Frames.** A client's frames must be masked, with no reserved bit and a
 *   known opcode (else close 1002); control frames at most 125 bytes and
 *   unfragmented. A message longer than `maxMessageBytes` (the declared
 *   length of its frames is enough to know) is refused before any of it is
 *   kept: closed 1009, or, with `tooLong: "skip"`, its payload read and
 *   dropped as it comes and the application told its size. Fragments are
 *   reassembled within the same bound, in one buffer (however many frames,
 *   empty ones included, a message holds its bytes); a frame's buffer grows as its bytes
 *   come (a header declaring a long frame reserves nothing by itself); a text
 *   message that is not UTF-8 is closed 1007. Pings are answered (one pong
 *   waiting at most).
 * - **Descriptors.** Once fewer than `minFreeFiles` (64) file descriptors
 *   would be left under the process's limit (`ulimit -n`), a new connection
 *   gets `503` at once and is closed (a warning names the limit, then a line
 *   per 10 s while it lasts), so the sockets open keep working; a failed
 *   accept (out of descriptors all the same) is retried after a wait, never at
 *   once.
 * - **Closing.** After a close frame is sent, the peer has `closeTimeoutMs`
 *   to answer it (or to go), then the TCP connection is closed by the server;
 *   a socket whose peer reads nothing is closed the same way. With
 *   `idleTimeoutMs`, a socket that received nothing for half of it is pinged,
 *   and one that received nothing for all of it is closed (a peer gone without
 *   a word). `onclose` is called once, when the TCP connection is closed.
 * - **Time.** The head, body, close and idle timeouts run on `timers` (real
 *   time by default; a virtual clock in tests).
 *
 * @module
 */

import type { Clock, Timer } from "../clock.ts";
import { type Logger, silentLogger } from "../log.ts";
import { acceptLoop, RefusalLog } from "./accept.ts";
import { canonicalHost, formatHostPort, isLoopbackAddress } from "./address.ts";
import { FileReserve, type OpenFiles } from "../open_files.ts";

const GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

const encoder = new TextEncoder();

/** The opcodes RFC 6455 defines: continuation, text, binary, close, ping, pong. */
const OPCODES = new Set([0, 1, 2, 8, 9, 10]);
/** A data frame's buffer starts at most this long and doubles as its bytes come. */
const FIRST_CHUNK = 16 * 1024;

/** The `Sec-WebSocket-Accept` value of a `Sec-WebSocket-Key`: base64 of SHA-1(key + the RFC 6455 GUID). */
export async function acceptValue(key: string): Promise<string> {
  const d = new Uint8Array(await crypto.subtle.digest("SHA-1", encoder.encode(key + GUID)));
  return btoa(String.fromCharCode(...d));
}

/** A request head as the handler sees it. */
export interface UpgradeRequest {
  /** The method (`GET`). */
  method: string;
  /** The request target as sent (`/?token=...`). */
  target: string;
  /** The target as a URL (host `localhost`: only its path and query mean anything). */
  url: URL;
  /** The header fields. */
  headers: Headers;
  /** The peer's address. */
  remote: Deno.NetAddr;
  /** The minor HTTP version: `1` for HTTP/1.1, `0` for HTTP/1.0. */
  httpMinor: number;
  /**
   * True when it asks for a WebSocket (`Upgrade: websocket`): checked valid, unless the server defers handshake
   * errors ({@linkcode WebSocketServerOptions.deferHandshakeErrors}), which then sets `handshakeError`.
   */
  upgrade: boolean;
  /** What makes it no valid WebSocket handshake (with `deferHandshakeErrors` only): accepting it answers this. */
  handshakeError?: HeadError;
  /**
   * Reads the request's body, `length` bytes (the `Content-Length` the caller checked), at most once; to an HTTP/1.1
   * client that sent `Expect: 100-continue` and none of the body yet, it first sends `100 Continue` (RFC 9110
   * §10.1.1), so that the client sends the body at once instead of after a wait of its own. Rejects with a
   * {@linkcode BodyError} when the peer ends first, or (the connection then closed) when the bytes do not come in
   * time; with a {@linkcode HeadError} (413) when `length` is above the server's `maxBodyBytes`.
   */
  readBody(length: number): Promise<Uint8Array>;
}

/** A request body that did not come whole: `received` bytes of it did. */
export class BodyError extends Error {
  /**
   * Creates the error.
   * @param message what happened (the peer ended, the time ran out)
   * @param received bytes of the body received
   */
  constructor(message: string, readonly received: number) {
    super(message);
  }
}

/**
 * The handler's answer: a plain HTTP response (the connection is then closed; `headers` may set `content-type`, text
 * by default), or the upgrade accepted.
 */
export type UpgradeAnswer =
  | { status: number; body: string | Uint8Array; headers?: Record<string, string> }
  | {
    /** Called with the new socket before it opens: set its callbacks here. */
    accept: (socket: ServerWebSocket) => void;
    /** The subprotocol chosen (one the client offered), if any. */
    protocol?: string;
  };

/** Options of a {@linkcode WebSocketServer}. */
export interface WebSocketServerOptions {
  /** Local address to listen on. */
  hostname: string;
  /** TCP port (0: any free one). */
  port: number;
  /** Longest message (payload bytes, fragments together). */
  maxMessageBytes: number;
  /** A longer message: `close` (1009, the default) or `skip` (dropped as it comes, `ontoolong` told). */
  tooLong?: "close" | "skip";
  /** Connections still sending their request head at once (default 64). */
  maxHandshakes?: number;
  /**
   * Of those, from one IP address at most (default a quarter of `maxHandshakes`, 16), so that one host cannot take
   * them all with idle connections; loopback addresses are exempt unless `limitLoopback` (every local client, a
   * browser included, is one address there).
   */
  maxHandshakesPerSource?: number;
  /** Applies `maxHandshakesPerSource` to loopback addresses too (default false; for tests). */
  limitLoopback?: boolean;
  /** Longest request head, bytes (default 8192). */
  maxHeadBytes?: number;
  /** Time a connection has to send its request head, ms (default 5000). */
  headTimeoutMs?: number;
  /** Time a peer has to answer a close frame (or to read what was sent before it), ms (default 2000). */
  closeTimeoutMs?: number;
  /** Longest request body {@linkcode UpgradeRequest.readBody} reads, bytes (default 0: none). */
  maxBodyBytes?: number;
  /** Time a request body has to come, ms (default 10 000), plus one second per `minBodyBytesPerSecond` ... */
  bodyTimeoutMs?: number;
  /** ... bytes of it (default 65 536). */
  minBodyBytesPerSecond?: number;
  /**
   * A WebSocket that received nothing (no message, no pong) for half this time is pinged, and one that received
   * nothing for all of it is closed, ms (default 0: never).
   */
  idleTimeoutMs?: number;
  /** Runs the head, body, close and idle timeouts (default: `setTimeout`, real time). */
  timers?: Pick<Clock, "after">;
  /**
   * The body (and header fields, e.g. a content type) of the answers the server gives itself: a head it refuses (400,
   * 426, 431), a body too long for `maxBodyBytes` (413), a connection refused for want of descriptors (503). Default:
   * the message as plain text.
   */
  formatError?: (e: HeadError) => { body: string | Uint8Array; headers?: Record<string, string> };
  /**
   * A request asking for a WebSocket that is no valid handshake goes to the handler all the same
   * ({@linkcode UpgradeRequest.handshakeError}), so that the handler's own refusals (a Host, an Origin, a token) come
   * first; accepting it answers the handshake's error. Default false: refused before the handler.
   */
  deferHandshakeErrors?: boolean;
  /** Errors thrown by the handler or a socket callback (default: reported as uncaught). */
  onError?: (e: unknown) => void;
  /**
   * File descriptors kept free (default 64): once fewer would be left under the process's limit (`ulimit -n`), new
   * connections get `503` and are closed at once.
   */
  minFreeFiles?: number;
  /** Counts the process's open files and their limit (default: from `/proc/self`; for tests). */
  openFiles?: () => OpenFiles | undefined;
  /** Where refusals for want of descriptors and failed accepts are reported (default silent). */
  log?: Logger;
  /** Times the waits after a failed accept and the refusal reports (default: `performance.now` and `setTimeout`). */
  clock?: Pick<Clock, "now" | "sleep">;
}

type Settings = Required<
  Omit<WebSocketServerOptions, "hostname" | "port" | "minFreeFiles" | "openFiles" | "log" | "clock">
>;

/** What a {@linkcode ServerWebSocket} uses of the settings (the timers and the idle timeout optional). */
type SocketSettings =
  & Pick<Settings, "maxMessageBytes" | "tooLong" | "closeTimeoutMs" | "onError">
  & Partial<Settings>;

/** Timeouts on `setTimeout` (the default {@linkcode WebSocketServerOptions.timers}). */
const realTimers: Pick<Clock, "after"> = {
  after: (ms, fn) => {
    const t = setTimeout(fn, ms);
    return { due: performance.now() + ms, cancel: () => clearTimeout(t) };
  },
};

/**
 * Connections refused for want of descriptors whose `503` is still being sent, at most: beyond, a new one is closed
 * at once, unanswered (each one waiting holds a descriptor, and a flood must not use up those kept free).
 */
const MAX_REFUSED_OPEN = 32;

const timeoutClock: Pick<Clock, "now" | "sleep"> = {
  now: () => performance.now(),
  sleep: (ms) => new Promise((r) => setTimeout(r, ms)),
};

/** A request head that cannot be served: answered with `status`. */
export class HeadError extends Error {
  /**
   * Creates the error.
   * @param status the HTTP status of the answer
   * @param message what is wrong (the answer's body)
   * @param headers header fields of the answer
   * @param handshake true when the request asked for a WebSocket and is not a valid handshake (RFC 6455 §4.2.1)
   */
  constructor(
    readonly status: number,
    message: string,
    readonly headers: Record<string, string> = {},
    readonly handshake = false,
  ) {
    super(message);
  }
}

const REASONS: Record<number, string> = {
  200: "OK",
  400: "Bad Request",
  401: "Unauthorized",
  403: "Forbidden",
  404: "Not Found",
  405: "Method Not Allowed",
  408: "Request Timeout",
  411: "Length Required",
  413: "Content Too Large",
  426: "Upgrade Required",
  431: "Request Header Fields Too Large",
  500: "Internal Server Error",
  503: "Service Unavailable",
};

/** The interim answer to `Expect: 100-continue` (RFC 9110 §15.2.1). */
const CONTINUE = encoder.encode("HTTP/1.1 100 Continue\r\n\r\n");

/** Header fields the server writes itself: the handler's are dropped. */
const OWN_FIELDS = new Set(["content-length", "connection", "transfer-encoding"]);

/**
 * A whole response (the connection is closed after it): `content-type` text unless `headers` set one; the body left
 * out (its length still given) when `noBody` (the answer to a HEAD).
 */
function response(
  status: number,
  body: string | Uint8Array,
  headers: Record<string, string> = {},
  noBody = false,
): Uint8Array {
  const b = typeof body === "string" ? encoder.encode(body) : body;
  let h = `HTTP/1.1 ${status} ${REASONS[status] ?? (status < 400 ? "OK" : "Error")}\r\n`;
  if (!Object.keys(headers).some((k) => k.toLowerCase() === "content-type")) {
    h += "content-type: text/plain; charset=utf-8\r\n";
  }
  h += `content-length: ${b.length}\r\nconnection: close\r\n`;
  for (const [k, v] of Object.entries(headers)) if (!OWN_FIELDS.has(k.toLowerCase())) h += `${k}: ${v}\r\n`;
  const head = encoder.encode(h + "\r\n");
  if (noBody) return head;
  const out = new Uint8Array(head.length + b.length);
  out.set(head);
  out.set(b, head.length);
  return out;
}

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

/** True when a comma-separated header value lists `token` (case-insensitive). */
function lists(value: string | null, token: string): boolean {
  return (value ?? "").split(",").some((s) => s.trim().toLowerCase() === token);
}

/**
 * Trims spaces and tabs at both ends, in one pass. (`replace(/^[ \t]+|[ \t]+$/g, "")` took time quadratic in a run
 * of spaces inside the value: 80 ms of the event loop for one 8 KB request head.)
 */
function trimOws(s: string): string {
  let a = 0;
  let b = s.length;
  while (a < b && (s.charCodeAt(a) === 32 || s.charCodeAt(a) === 9)) a++;
  while (b > a && (s.charCodeAt(b - 1) === 32 || s.charCodeAt(b - 1) === 9)) b--;
  return s.slice(a, b);
}

/** True when `s` holds a control character other than HTAB (a header value cannot). */
function hasCtl(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if ((c < 32 && c !== 9) || c === 127) return true;
  }
  return false;
}

/**
 * Parses a request head (its bytes without the blank line); throws {@linkcode HeadError}. A header value is scanned
 * by loops, never by a regular expression: its length is the client's to choose (up to `maxHeadBytes`).
 */
export function parseHead(bytes: Uint8Array, remote: Deno.NetAddr, deferHandshakeErrors = false): UpgradeRequest {
  const text = String.fromCharCode(...bytes); // latin1: any byte is one character
  const lines = text.split("\r\n");
  const m = /^([^ ]+) ([^ ]+) HTTP\/(\d)\.(\d)$/.exec(lines[0]);
  if (!m || !TOKEN.test(m[1])) throw new HeadError(400, "malformed request line");
  const [, method, target, major, minor] = m;
  if (major !== "1") throw new HeadError(400, "HTTP/1.x only");
  if (!target.startsWith("/")) throw new HeadError(400, "the request target must be a path");
  const headers = new Headers();
  for (const line of lines.slice(1)) {
    const i = line.indexOf(":");
    const name = line.slice(0, i);
    const value = trimOws(line.slice(i + 1));
    if (i <= 0 || !TOKEN.test(name) || hasCtl(value)) {
      throw new HeadError(400, "malformed header field");
    }
    try {
      headers.append(name, value);
    } catch {
      throw new HeadError(400, "malformed header field");
    }
  }
  let url: URL;
  try {
    url = new URL(target, "http://localhost");
  } catch {
    throw new HeadError(400, "malformed request target");
  }
  const upgrade = lists(headers.get("upgrade"), "websocket");
  const handshakeError = upgrade ? checkHandshake(method, minor, headers) : undefined;
  if (handshakeError && !deferHandshakeErrors) throw handshakeError;
  const readBody = () => Promise.reject(new BodyError("no connection to read a body from", 0));
  return {
    method,
    target,
    url,
    headers,
    remote,
    httpMinor: Number(minor),
    upgrade,
    readBody,
    ...(handshakeError ? { handshakeError } : {}),
  };
}

/** What makes a request asking for a WebSocket no valid handshake (RFC 6455 §4.2.1), or undefined. */
function checkHandshake(method: string, minor: string, headers: Headers): HeadError | undefined {
  if (method !== "GET") return new HeadError(400, "a WebSocket upgrade is a GET", {}, true);
  if (minor === "0") return new HeadError(400, "a WebSocket upgrade needs HTTP/1.1", {}, true);
  if (!headers.has("host")) return new HeadError(400, "no Host", {}, true);
  if (!lists(headers.get("connection"), "upgrade")) {
    return new HeadError(400, "Connection: Upgrade is missing", {}, true);
  }
  if (headers.get("sec-websocket-version") !== "13") {
    return new HeadError(426, "Sec-WebSocket-Version 13 only", { "sec-websocket-version": "13" }, true);
  }
  const key = headers.get("sec-websocket-key") ?? "";
  let ok = false;
  try {
    ok = /^[A-Za-z0-9+/]{22}==$/.test(key) && atob(key).length === 16;
  } catch { /* not base64 */ }
  if (!ok) return new HeadError(400, "Sec-WebSocket-Key is not 16 bytes in base64", {}, true);
  return undefined;
}

/** Writes all of `b`. */
async function writeAll(conn: Deno.Conn, b: Uint8Array): Promise<void> {
  let off = 0;
  while (off < b.length) off += await conn.write(b.subarray(off));
}

/** Reads until `ms` pass (then closes `conn`) or the peer's end (what it sends is dropped), then resolves. */
async function drain(conn: Deno.Conn, ms: number, timers: Pick<Clock, "after">): Promise<void> {
  const buf = new Uint8Array(4096);
  const t = timers.after(ms, () => closeQuietly(conn));
  try {
    while ((await conn.read(buf)) !== null) { /* dropped */ }
  } catch {
    /* closed */
  } finally {
    t.cancel();
  }
}

function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch { /* already closed */ }
}

/** A WebSocket server: listens, runs the handshakes, and hands each accepted connection to its handler. */
export class WebSocketServer {
  readonly #o: Settings;
  readonly #hostname: string;
  readonly #port: number;
  readonly #handler: (req: UpgradeRequest) => UpgradeAnswer | Promise<UpgradeAnswer>;
  #listener: Deno.TcpListener | undefined;
  #accepting: Promise<void> | undefined;
  readonly #heads = new Set<Deno.Conn>();
  /** Connections whose request the handler is answering (a promise not settled yet). */
  readonly #busy = new Set<Deno.Conn>();
  /** Connections whose answer is written, left open for the peer to read it (closed by close() at once). */
  readonly #answered = new Set<Deno.Conn>();
  readonly #sockets = new Set<ServerWebSocket>();
  readonly #tasks = new Set<Promise<void>>();
  #closed = false;
  readonly #log: Logger;
  readonly #clock: Pick<Clock, "now" | "sleep">;
  readonly #files: FileReserve;
  #refusals: RefusalLog;
  /** Connections closed unanswered because `maxHandshakes` are under way. */
  #fullRefusals: RefusalLog;
  /** Connections closed unanswered because `maxHandshakesPerSource` of their address are under way. */
  #sourceRefusals: RefusalLog;
  /** The (canonical) IP address of each connection in its handshake or with a request under way. */
  readonly #sources = new WeakMap<Deno.Conn, string>();
  /** Connections refused for want of descriptors whose socket is not closed yet. */
  #refusedOpen = 0;

  /**
   * Creates a server (not listening yet: {@linkcode listen}).
   * @param options address, bounds
   * @param handler answers each request (a plain response, or the upgrade accepted); answering at once (not a
   *   promise), nothing else runs between its decision and the socket's accept
   */
  constructor(
    options: WebSocketServerOptions,
    handler: (req: UpgradeRequest) => UpgradeAnswer | Promise<UpgradeAnswer>,
  ) {
    this.#hostname = options.hostname;
    this.#port = options.port;
    this.#handler = handler;
    this.#o = {
      maxMessageBytes: options.maxMessageBytes,
      tooLong: options.tooLong ?? "close",
      maxHandshakes: options.maxHandshakes ?? 64,
      maxHandshakesPerSource: options.maxHandshakesPerSource ??
        Math.max(1, Math.floor((options.maxHandshakes ?? 64) / 4)),
      limitLoopback: options.limitLoopback ?? false,
      maxHeadBytes: options.maxHeadBytes ?? 8192,
      headTimeoutMs: options.headTimeoutMs ?? 5000,
      closeTimeoutMs: options.closeTimeoutMs ?? 2000,
      maxBodyBytes: options.maxBodyBytes ?? 0,
      bodyTimeoutMs: options.bodyTimeoutMs ?? 10_000,
      minBodyBytesPerSecond: options.minBodyBytesPerSecond ?? 65_536,
      idleTimeoutMs: options.idleTimeoutMs ?? 0,
      timers: options.timers ?? realTimers,
      deferHandshakeErrors: options.deferHandshakeErrors ?? false,
      formatError: options.formatError ?? ((e) => ({ body: `${e.message}\n` })),
      onError: options.onError ?? ((e) => reportError(e)),
    };
    this.#log = options.log ?? silentLogger;
    this.#clock = options.clock ?? timeoutClock;
    this.#files = new FileReserve(this.#clock, {
      reserve: options.minFreeFiles ?? 64,
      keptFor: "the connections open",
      units: () => this.#heads.size + this.#busy.size + this.#sockets.size + this.#refusedOpen,
      ...(options.openFiles ? { openFiles: options.openFiles } : {}),
    });
    this.#refusals = this.#refusalLog(options.port);
    this.#fullRefusals = this.#refusalLog(options.port);
    this.#sourceRefusals = this.#refusalLog(options.port);
  }

  #refusalLog(port: number): RefusalLog {
    const where = formatHostPort({ hostname: this.#hostname, port });
    return new RefusalLog(this.#clock, this.#log, `new connections on TCP ${where}`);
  }

  /** Starts listening (throws as `Deno.listen` does); returns the address. */
  listen(): Deno.NetAddr {
    const l = Deno.listen({ hostname: this.#hostname, port: this.#port, transport: "tcp" });
    this.#listener = l;
    this.#refusals = this.#refusalLog(l.addr.port);
    this.#fullRefusals = this.#refusalLog(l.addr.port);
    this.#sourceRefusals = this.#refusalLog(l.addr.port);
    this.#accepting = acceptLoop(l, {
      clock: this.#clock,
      log: this.#log,
      where: `TCP ${formatHostPort(l.addr)}`,
      closed: () => this.#closed,
      handle: (conn) => this.#accepted(conn),
    });
    return l.addr;
  }

  /** Connections still in their handshake now. */
  get handshakes(): number {
    return this.#heads.size;
  }

  /** Connections whose request the handler is still answering (reading its body, say) now. */
  get requests(): number {
    return this.#busy.size;
  }

  /** WebSocket connections whose TCP connection is open now (open or closing). */
  get sockets(): number {
    return this.#sockets.size;
  }

  /**
   * Stops: no new connections, those in their handshake (or whose answer is written) closed, open sockets closed with
   * 1001 (the peer has `closeTimeoutMs` to answer); an answer being written has `closeTimeoutMs`. Resolves when every
   * connection is closed. Idempotent.
   */
  async close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      try {
        this.#listener?.close();
      } catch { /* closed */ }
      for (const c of this.#heads) closeQuietly(c);
      for (const c of this.#busy) closeQuietly(c);
      for (const c of this.#answered) closeQuietly(c);
      for (const s of this.#sockets) s.close(1001, "the server is shutting down");
    }
    await this.#accepting;
    while (this.#tasks.size > 0) await Promise.allSettled([...this.#tasks]);
  }

  #accepted(conn: Deno.TcpConn): void {
    if (this.#closed) return closeQuietly(conn);
    const max = this.#o.maxHandshakes;
    if (this.#heads.size + this.#busy.size >= max) {
      this.#fullRefusals.refused(
        `the ${max} connections allowed at once to send their request are all taken (idle ones are closed ` +
          `${this.#o.headTimeoutMs / 1000} s after they connected): new ones are closed unanswered meanwhile`,
      );
      return closeQuietly(conn);
    }
    this.#fullRefusals.admitted();
    const source = canonicalHost((conn.remoteAddr as Deno.NetAddr).hostname);
    if (this.#o.limitLoopback || !isLoopbackAddress(source)) {
      const most = this.#o.maxHandshakesPerSource;
      if (this.#underWayFrom(source) >= most) {
        this.#sourceRefusals.refused(
          `${source} has ${most} connections sending their request already (the most one address may have at once): ` +
            `its new ones are closed unanswered meanwhile`,
        );
        return closeQuietly(conn);
      }
      this.#sourceRefusals.admitted();
    }
    this.#sources.set(conn, source);
    const short = this.#files.short();
    if (short !== undefined) return this.#refuseForFiles(conn, short);
    this.#refusals.admitted();
    const task = this.#serve(conn).catch((e) => this.#o.onError(e)).finally(() => this.#tasks.delete(task));
    this.#tasks.add(task);
  }

  /** Connections from `source` in their handshake or with a request under way (at most `maxHandshakes` to look at). */
  #underWayFrom(source: string): number {
    let n = 0;
    for (const c of this.#heads) if (this.#sources.get(c) === source) n++;
    for (const c of this.#busy) if (this.#sources.get(c) === source) n++;
    return n;
  }

  /** Answers 503 without reading the request, and closes as soon as that is sent (at once in a flood). */
  #refuseForFiles(conn: Deno.TcpConn, why: string): void {
    this.#refusals.refused(why);
    if (this.#refusedOpen >= MAX_REFUSED_OPEN) return closeQuietly(conn);
    this.#refusedOpen++;
    const e = new HeadError(503, "the server is out of file descriptors, try again later", { "retry-after": "5" });
    const a = this.#o.formatError(e);
    const bytes = response(503, a.body, { ...e.headers, ...a.headers });
    const task = conn.write(bytes).then(() => {}, () => {}).finally(() => {
      closeQuietly(conn);
      this.#refusedOpen--;
      this.#tasks.delete(task);
    });
    this.#tasks.add(task);
  }

  async #serve(conn: Deno.TcpConn): Promise<void> {
    const remote = conn.remoteAddr as Deno.NetAddr;
    this.#heads.add(conn);
    let head: { head: Uint8Array; rest: Uint8Array } | null | HeadError;
    const timer = this.#o.timers.after(this.#o.headTimeoutMs, () => closeQuietly(conn));
    try {
      head = await this.#readHead(conn);
    } catch (e) {
      head = e instanceof HeadError ? e : null;
    } finally {
      timer.cancel();
      this.#heads.delete(conn);
    }
    if (head === null) return closeQuietly(conn);
    let req: UpgradeRequest | undefined;
    try {
      if (!(head instanceof HeadError)) req = parseHead(head.head, remote, this.#o.deferHandshakeErrors);
    } catch (e) {
      if (!(e instanceof HeadError)) throw e;
      head = e;
    }
    if (head instanceof HeadError || !req || this.#closed) {
      const e = head instanceof HeadError ? head : new HeadError(503, "shutting down");
      const a = this.#o.formatError(e);
      return await this.#refuse(conn, e.status, a.body, { ...e.headers, ...a.headers }, req?.method === "HEAD");
    }
    // Computed first: between the handler's decision and the socket's accept nothing else runs.
    const accept = req.upgrade && !req.handshakeError ? await acceptValue(req.headers.get("sec-websocket-key")!) : "";
    const rest = head.rest;
    // The answer to a HEAD has no body, whoever gives it (RFC 9110 §9.3.2): a refusal of the server's own too.
    const noBody = req.method === "HEAD";
    let bodyRead = false;
    req.readBody = (length) => {
      if (bodyRead) return Promise.reject(new BodyError("the body was read already", 0));
      bodyRead = true;
      const proceed = req.httpMinor >= 1 && rest.length === 0 && length > 0 &&
        lists(req.headers.get("expect"), "100-continue");
      return this.#readBody(conn, rest, length, proceed);
    };
    let answer: UpgradeAnswer;
    try {
      const a = this.#handler(req);
      if (a instanceof Promise) {
        // Answered later: the connection counts as one in its handshake until then.
        this.#busy.add(conn);
        try {
          answer = await a;
        } finally {
          this.#busy.delete(conn);
        }
        if (this.#closed) return closeQuietly(conn);
      } else {
        answer = a;
      }
    } catch (e) {
      this.#o.onError(e);
      return await this.#refuse(conn, 500, "internal error\n", {}, noBody);
    }
    if (!("accept" in answer)) {
      return await this.#refuse(conn, answer.status, answer.body, answer.headers, noBody);
    }
    // close() closes the sockets there are, once: none may open after it (the accept value and a handler's promise
    // leave time for it to come).
    if (this.#closed) return closeQuietly(conn);
    if (!req.upgrade) return await this.#refuse(conn, 400, "not a WebSocket request\n", {}, noBody);
    if (req.handshakeError) {
      const e = req.handshakeError;
      const a = this.#o.formatError(e);
      return await this.#refuse(conn, e.status, a.body, { ...e.headers, ...a.headers }, noBody);
    }
    let h = "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n" +
      `sec-websocket-accept: ${accept}\r\n`;
    if (answer.protocol) h += `sec-websocket-protocol: ${answer.protocol}\r\n`;
    const socket = new ServerWebSocket(conn, remote, answer.protocol ?? "", this.#o);
    this.#sockets.add(socket);
    try {
      try {
        answer.accept(socket);
      } catch (e) {
        closeQuietly(conn);
        throw e;
      }
      await socket._run(encoder.encode(h + "\r\n"), (head as { rest: Uint8Array }).rest);
    } finally {
      this.#sockets.delete(socket);
    }
  }

  /** Reads a request head; null when the peer went (or took too long) before sending one. */
  async #readHead(conn: Deno.Conn): Promise<{ head: Uint8Array; rest: Uint8Array } | null> {
    const max = this.#o.maxHeadBytes;
    const buf = new Uint8Array(max + 4);
    let n = 0;
    for (;;) {
      // The blank line: CR LF CR LF (searched from just before the new bytes).
      const got = await conn.read(buf.subarray(n));
      if (got === null) return null;
      const from = Math.max(0, n - 3);
      n += got;
      for (let i = from; i + 3 < n; i++) {
        if (buf[i] === 13 && buf[i + 1] === 10 && buf[i + 2] === 13 && buf[i + 3] === 10) {
          if (i > max) throw new HeadError(431, `request head longer than ${max} bytes`);
          return { head: buf.slice(0, i), rest: buf.slice(i + 4, n) };
        }
      }
      if (n >= max + 4) throw new HeadError(431, `request head longer than ${max} bytes`);
    }
  }

  /**
   * Reads a request body of `length` bytes, `rest` (read with the head) first; see {@linkcode UpgradeRequest.readBody}.
   * The buffer grows as the bytes come: a `Content-Length` by itself reserves nothing.
   */
  async #readBody(conn: Deno.TcpConn, rest: Uint8Array, length: number, proceed: boolean): Promise<Uint8Array> {
    const max = this.#o.maxBodyBytes;
    if (length > max) throw new HeadError(413, `request body longer than ${max} bytes`);
    if (proceed) {
      try {
        await writeAll(conn, CONTINUE);
      } catch (e) {
        throw new BodyError(`the connection failed: ${e instanceof Error ? e.message : e}`, 0);
      }
    }
    let buf = new Uint8Array(Math.min(length, Math.max(rest.length, FIRST_CHUNK)));
    let n = Math.min(length, rest.length);
    buf.set(rest.subarray(0, n));
    if (n === length) return buf;
    const ms = this.#o.bodyTimeoutMs + Math.ceil((length / this.#o.minBodyBytesPerSecond) * 1000);
    let late = false;
    const timer = this.#o.timers.after(ms, () => {
      late = true;
      closeQuietly(conn);
    });
    try {
      while (n < length) {
        if (n === buf.length) {
          const b = new Uint8Array(Math.min(length, buf.length * 2));
          b.set(buf);
          buf = b;
        }
        let got: number | null;
        try {
          got = await conn.read(buf.subarray(n));
        } catch (e) {
          if (late) break;
          throw new BodyError(`the connection failed: ${e instanceof Error ? e.message : e}`, n);
        }
        if (got === null) throw new BodyError(`the peer ended its side after ${n} of ${length} bytes`, n);
        n += got;
      }
    } finally {
      timer.cancel();
    }
    if (n < length) throw new BodyError(`${n} of ${length} bytes came within ${ms / 1000} s: closed`, n);
    return buf;
  }

  /** Answers with a plain response and closes (the peer has closeTimeoutMs to read it). */
  async #refuse(
    conn: Deno.TcpConn,
    status: number,
    body: string | Uint8Array,
    headers?: Record<string, string>,
    noBody = false,
  ): Promise<void> {
    try {
      const t = this.#o.timers.after(this.#o.closeTimeoutMs, () => closeQuietly(conn));
      try {
        await writeAll(conn, response(status, body, headers, noBody));
      } finally {
        t.cancel();
      }
      await conn.closeWrite();
      // Written whole: close() need not wait for the peer to read it and go.
      if (this.#closed) return closeQuietly(conn);
      this.#answered.add(conn);
      try {
        await drain(conn, this.#o.closeTimeoutMs, this.#o.timers);
      } finally {
        this.#answered.delete(conn);
      }
    } catch { /* the peer went */ }
    closeQuietly(conn);
  }
}

/** Close codes a peer may send (RFC 6455 §7.4: the defined ones but 1004-1006 and 1015; 3000-4999). */
function validCloseCode(c: number): boolean {
  return (c >= 1000 && c <= 1003) || (c >= 1007 && c <= 1014) || (c >= 3000 && c <= 4999);
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

/** One queued write. */
interface Out {
  bytes: Uint8Array;
  pong?: boolean;
}

/**
 * One accepted WebSocket connection, with the part of the browser `WebSocket` API the bridge uses: callbacks
 * (`onopen`, `onmessage`, `ontoolong`, `onclose`), `send`, `close`, `bufferedAmount`, `readyState`.
 */
export class ServerWebSocket {
  /** Called once the handshake's answer is written. */
  onopen: (() => void) | undefined;
  /** A message: a string (text) or bytes (binary). */
  onmessage: ((data: string | Uint8Array) => void) | undefined;
  /** With `tooLong: "skip"`: a message of `bytes` was longer than the bound and dropped. */
  ontoolong: ((bytes: number) => void) | undefined;
  /** Called once when the TCP connection is closed: the peer's close code (1005 none, 1006 no close frame). */
  onclose: ((code: number, reason: string) => void) | undefined;
  /** The peer's address. */
  readonly remote: Deno.NetAddr;
  /** The subprotocol chosen ("" for none). */
  readonly protocol: string;

  readonly #conn: Deno.TcpConn;
  readonly #o: SocketSettings;
  readonly #timers: Pick<Clock, "after">;
  #state: "connecting" | "open" | "closing" | "closed" = "connecting";
  readonly #queue: Out[] = [];
  #queued = 0;
  #writing = false;
  #drained: (() => void) | undefined;
  #closeSent = false;
  #closeTimer: Timer | undefined;
  #idleTimer: Timer | undefined;
  /** Bytes came since the idle timer last looked; a ping was sent for the silence it saw. */
  #heard = false;
  #pinged = false;
  /** Input no longer trusted (a protocol error): read and dropped until the end. */
  #discard = false;
  #peerCode = 1006;
  #peerReason = "";
  #ended = false;
  #end: (() => void) | undefined;

  // Frame parser state.
  readonly #hdr = new Uint8Array(14);
  #hdrLen = 0;
  #op = 0;
  #fin = false;
  #mask = new Uint8Array(4);
  #left = 0; // payload bytes of the current frame still to come
  #pos = 0; // payload bytes of the current frame seen
  #skip = false; // the current frame's payload is dropped
  #payload: Uint8Array | undefined; // where it goes
  // Message state (data frames).
  #msgOp = 0; // 0: none under way
  /** The message's frames so far, one after the other (not one buffer per frame: a frame may be empty). */
  #msg: Uint8Array | undefined;
  #msgLen = 0;
  #msgBytes = 0;
  #msgSkip = false;
  #msgTooLong = false;

  /** Made by {@linkcode WebSocketServer} only. */
  constructor(conn: Deno.TcpConn, remote: Deno.NetAddr, protocol: string, o: SocketSettings) {
    this.#conn = conn;
    this.#timers = o.timers ?? realTimers;
    this.remote = remote;
    this.protocol = protocol;
    this.#o = o;
  }

  /** `connecting`, `open`, `closing` (a close frame sent or received) or `closed`. */
  get readyState(): "connecting" | "open" | "closing" | "closed" {
    return this.#state;
  }

  /** Bytes queued and not yet handed to the kernel. */
  get bufferedAmount(): number {
    return this.#queued;
  }

  /** Sends a text (string) or binary message; ignored unless open. */
  send(data: string | Uint8Array): void {
    if (this.#state !== "open") return;
    const payload = typeof data === "string" ? encoder.encode(data) : data;
    this.#push({ bytes: frame(typeof data === "string" ? 1 : 2, payload) });
  }

  /** Starts the closing handshake with `code` and `reason` (at most 123 bytes); the peer has closeTimeoutMs. */
  close(code = 1000, reason = ""): void {
    if (this.#state === "closed" || this.#closeSent) return;
    if (this.#state === "connecting") {
      this.#state = "closing";
      return this.#abort();
    }
    this.#sendClose(code, reason);
  }

  // ---- internals ----

  #sendClose(code: number, reason: string): void {
    this.#closeSent = true;
    this.#state = "closing";
    const r = encoder.encode(reason).subarray(0, 123);
    const p = code === 1005 ? new Uint8Array(0) : new Uint8Array(2 + r.length);
    if (p.length) {
      p[0] = code >> 8;
      p[1] = code & 0xff;
      p.set(r, 2);
    }
    // Nothing is sent after it: a pong waiting is dropped.
    for (let i = this.#queue.length - 1; i > 0; i--) if (this.#queue[i].pong) this.#unqueue(i);
    this.#push({ bytes: frame(8, p) });
    this.#closeTimer ??= this.#timers.after(this.#o.closeTimeoutMs, () => this.#abort());
  }

  #unqueue(i: number): void {
    this.#queued -= this.#queue[i].bytes.length;
    this.#queue.splice(i, 1);
  }

  /** Fails the connection (RFC 6455 §7.1.7): a close frame with `code`, then the input is dropped. */
  #fail(code: number, reason: string): void {
    this.#discard = true;
    if (this.#closeSent) return;
    this.#sendClose(code, reason);
    // Then our end of the TCP connection (the peer need not answer a stream it broke), the rest read and dropped.
    this.#whenDrained().then(() => this.#conn.closeWrite()).catch(() => {});
  }

  /** Closes the TCP connection now. */
  #abort(): void {
    this.#state = "closing";
    closeQuietly(this.#conn);
    this.#end?.();
  }

  #push(o: Out): void {
    this.#queue.push(o);
    this.#queued += o.bytes.length;
    if (!this.#writing) this.#flush();
  }

  async #flush(): Promise<void> {
    this.#writing = true;
    try {
      while (this.#queue.length > 0) {
        const o = this.#queue[0];
        let off = 0;
        while (off < o.bytes.length) {
          const n = await this.#conn.write(off ? o.bytes.subarray(off) : o.bytes);
          off += n;
        }
        this.#queue.shift();
        this.#queued -= o.bytes.length;
      }
    } catch {
      // The connection is gone (or aborted): what is queued will never be sent.
      this.#queue.length = 0;
      this.#queued = 0;
      this.#abort();
    } finally {
      this.#writing = false;
    }
    const d = this.#drained;
    this.#drained = undefined;
    d?.();
  }

  /** Resolves when the write queue is empty (or the connection gone). */
  #whenDrained(): Promise<void> {
    if (!this.#writing && this.#queue.length === 0) return Promise.resolve();
    return new Promise((r) => {
      const prev = this.#drained;
      this.#drained = () => {
        prev?.();
        r();
      };
    });
  }

  /** Runs the connection: writes the handshake's answer, then reads until the end. @internal */
  async _run(answer: Uint8Array, rest: Uint8Array): Promise<void> {
    const ended = new Promise<void>((r) => this.#end = r);
    this.#push({ bytes: answer });
    if (this.#state === "connecting") {
      this.#state = "open";
      this.#call(() => this.onopen?.());
    }
    if ((this.#o.idleTimeoutMs ?? 0) > 0) this.#idle();
    const reading = this.#read(rest);
    await Promise.race([reading, ended]);
    if (this.#closeSent || this.#state === "closing") {
      // The close frame (and what came before it) is written, bounded by the close timer.
      await Promise.race([this.#whenDrained(), ended]);
    }
    this.#closeTimer?.cancel();
    this.#idleTimer?.cancel();
    closeQuietly(this.#conn);
    await reading;
    if (this.#writing) await this.#whenDrained();
    this.#state = "closed";
    this.#queue.length = 0;
    this.#queued = 0;
    this.#call(() => this.onclose?.(this.#peerCode, this.#peerReason));
  }

  /**
   * Every half `idleTimeoutMs`: after a silent half, a ping (the peer's pong is something heard); after a second
   * silent half, the connection is closed.
   */
  #idle(): void {
    this.#idleTimer = this.#timers.after(this.#o.idleTimeoutMs! / 2, () => {
      if (this.#state === "closed") return;
      if (this.#heard) {
        this.#heard = false;
        this.#pinged = false;
      } else if (this.#pinged) {
        return this.#abort();
      } else if (this.#state === "open") {
        this.#pinged = true;
        this.#push({ bytes: frame(9, new Uint8Array(0)) });
      }
      this.#idle();
    });
  }

  #call(f: () => void): void {
    try {
      f();
    } catch (e) {
      this.#o.onError(e);
    }
  }

  async #read(rest: Uint8Array): Promise<void> {
    const buf = new Uint8Array(64 * 1024);
    try {
      if (rest.length && this.#consume(rest)) return;
      for (;;) {
        const n = await this.#conn.read(buf);
        if (n === null) return;
        this.#heard = true;
        if (this.#consume(buf.subarray(0, n))) return;
      }
    } catch { /* closed (by us, or reset) */ }
  }

  /** Parses bytes; true once the connection is done (a close answered). */
  #consume(b: Uint8Array): boolean {
    let i = 0;
    while (i < b.length) {
      if (this.#discard) return false;
      if (this.#left === 0) {
        // Header.
        this.#hdr[this.#hdrLen++] = b[i++];
        if (this.#hdrLen < 2) continue;
        const b1 = this.#hdr[1];
        const need = 2 + ((b1 & 0x7f) === 126 ? 2 : (b1 & 0x7f) === 127 ? 8 : 0) + (b1 & 0x80 ? 4 : 0);
        if (this.#hdrLen === 2 && !this.#checkStart()) return false;
        if (this.#hdrLen < need) continue;
        this.#hdrLen = 0;
        if (this.#header()) return true;
        continue;
      }
      // Payload.
      const k = Math.min(this.#left, b.length - i);
      if (!this.#skip && this.#payload) {
        let p = this.#payload;
        if (this.#pos + k > p.length) p = this.#grow(this.#pos + k);
        const m = this.#mask;
        for (let j = 0; j < k; j++) p[this.#pos + j] = b[i + j] ^ m[(this.#pos + j) & 3];
      }
      this.#pos += k;
      this.#left -= k;
      i += k;
      if (this.#left === 0 && this.#frameDone()) return true;
    }
    return false;
  }

  /**
   * Makes room for `need` bytes of the current frame's payload: doubling, never past the frame's declared length. A
   * frame's buffer grows as its bytes come, so a header declaring a long frame reserves nothing by itself.
   */
  #grow(need: number): Uint8Array {
    const old = this.#payload!;
    const p = new Uint8Array(Math.min(this.#pos + this.#left, Math.max(need, old.length * 2)));
    p.set(old.subarray(0, this.#pos));
    return this.#payload = p;
  }

  /** Bytes held for the message under way (its frames so far and the current frame's buffer). */
  get pendingBytes(): number {
    return (this.#payload?.length ?? 0) + (this.#msg?.length ?? 0);
  }

  /** Checks the first two header bytes; false after failing the connection. */
  #checkStart(): boolean {
    const b0 = this.#hdr[0];
    const b1 = this.#hdr[1];
    const op = b0 & 0x0f;
    if (b0 & 0x70) return this.#failed(1002, "reserved bits set (no extension was negotiated)");
    if (!OPCODES.has(op)) return this.#failed(1002, `unknown opcode ${op}`);
    if (!(b1 & 0x80)) return this.#failed(1002, "a client's frames must be masked");
    if (op >= 8 && (!(b0 & 0x80) || (b1 & 0x7f) > 125)) {
      return this.#failed(1002, "a control frame is unfragmented and at most 125 bytes");
    }
    if (op === 0 && this.#msgOp === 0) return this.#failed(1002, "a continuation frame without a message");
    if ((op === 1 || op === 2) && this.#msgOp !== 0) return this.#failed(1002, "a new message inside a fragmented one");
    return true;
  }

  #failed(code: number, reason: string): false {
    this.#fail(code, reason);
    return false;
  }

  /** A whole header is in #hdr (`n` bytes): sets up its payload. True when the connection is done. */
  #header(): boolean {
    const h = this.#hdr;
    this.#fin = (h[0] & 0x80) !== 0;
    this.#op = h[0] & 0x0f;
    let len = h[1] & 0x7f;
    let at = 2;
    if (len === 126) {
      len = (h[2] << 8) | h[3];
      at = 4;
    } else if (len === 127) {
      if (h[2] & 0x80) return this.#failed(1002, "a frame length's top bit must be 0");
      len = (((h[2] << 24) >>> 0) + (h[3] << 16) + (h[4] << 8) + h[5]) * 2 ** 32 +
        (((h[6] << 24) >>> 0) + (h[7] << 16) + (h[8] << 8) + h[9]);
      at = 10;
    }
    this.#mask = h.slice(at, at + 4);
    this.#left = len;
    this.#pos = 0;
    this.#skip = false;
    this.#payload = undefined;
    if (this.#op >= 8) {
      this.#payload = new Uint8Array(len);
    } else {
      if (this.#op !== 0) {
        this.#msgOp = this.#op;
        this.#msgBytes = 0;
        this.#msgSkip = false;
        this.#msgTooLong = false;
        this.#msg = undefined;
        this.#msgLen = 0;
      }
      this.#msgBytes += len;
      if (this.#state !== "open") {
        this.#msgSkip = true; // closing: messages are no longer delivered
      } else if (this.#msgBytes > this.#o.maxMessageBytes && !this.#msgSkip) {
        if (this.#o.tooLong === "close") {
          return this.#failed(1009, `message longer than ${this.#o.maxMessageBytes} bytes`);
        }
        this.#msgSkip = true;
        this.#msgTooLong = true;
        this.#msg = undefined;
        this.#msgLen = 0;
      }
      if (this.#msgSkip) this.#skip = true;
      else this.#payload = new Uint8Array(Math.min(len, FIRST_CHUNK));
      // Its last frame's header gives the whole size: told now, before its payload comes.
      if (this.#msgTooLong && this.#fin && this.#state === "open") {
        const bytes = this.#msgBytes;
        this.#call(() => this.ontoolong?.(bytes));
      }
    }
    if (len === 0) return this.#frameDone();
    return false;
  }

  /** The current frame's payload is complete. True when the connection is done. */
  #frameDone(): boolean {
    const op = this.#op;
    const p = this.#payload ?? new Uint8Array(0);
    this.#payload = undefined;
    this.#skip = false;
    if (op === 8) return this.#onClose(p);
    if (op === 9) {
      if (this.#state === "open") this.#pong(p);
      return false;
    }
    if (op === 10) return false;
    if (!this.#msgSkip) this.#append(p);
    if (!this.#fin) return false;
    const msgOp = this.#msgOp;
    const msg = this.#msg;
    const bytes = this.#msgLen;
    const skipped = this.#msgSkip;
    this.#msgOp = 0;
    this.#msg = undefined;
    this.#msgLen = 0;
    this.#msgBytes = 0;
    this.#msgSkip = false;
    this.#msgTooLong = false;
    if (this.#state !== "open" || skipped) return false;
    const data = !msg ? new Uint8Array(0) : msg.length === bytes ? msg : msg.slice(0, bytes);
    if (msgOp === 1) {
      let text: string;
      try {
        text = utf8.decode(data);
      } catch {
        this.#fail(1007, "a text message must be UTF-8");
        return false;
      }
      this.#call(() => this.onmessage?.(text));
    } else {
      this.#call(() => this.onmessage?.(data));
    }
    return false;
  }

  /**
   * Adds a data frame's payload to the message under way: kept in one buffer that doubles as frames come (at most the
   * message's bound), so that a message's memory is its bytes whatever the number of its frames (an empty frame, 6
   * bytes on the wire, held 240 bytes of heap as a buffer of its own: 40 times what was sent, with no bound).
   */
  #append(p: Uint8Array): void {
    if (p.length === 0) return;
    const n = this.#msgLen + p.length;
    let m = this.#msg;
    if (!m) {
      m = this.#msg = p; // a message of one frame is not copied
    } else {
      if (n > m.length) {
        const grown = new Uint8Array(Math.min(Math.max(n, m.length * 2), Math.max(n, this.#o.maxMessageBytes)));
        grown.set(m.subarray(0, this.#msgLen));
        m = this.#msg = grown;
      }
      m.set(p, this.#msgLen);
    }
    this.#msgLen = n;
  }

  /** Answers a ping: one pong waits at most (a newer ping's payload replaces it, RFC 6455 §5.5.3). */
  #pong(p: Uint8Array): void {
    const bytes = frame(10, p);
    const last = this.#queue.length - 1;
    if (last > 0 && this.#queue[last].pong) {
      this.#queued += bytes.length - this.#queue[last].bytes.length;
      this.#queue[last].bytes = bytes;
      return;
    }
    this.#push({ bytes, pong: true });
  }

  /** The peer's close frame. True: the connection is done (ours answered or already sent). */
  #onClose(p: Uint8Array): boolean {
    let code = 1005;
    let reason = "";
    if (p.length === 1) {
      this.#fail(1002, "a close frame's payload is empty or a 2-byte code");
      return false;
    }
    if (p.length >= 2) {
      code = (p[0] << 8) | p[1];
      if (!validCloseCode(code)) {
        this.#fail(1002, `close code ${code} is not one a peer may send`);
        return false;
      }
      try {
        reason = utf8.decode(p.subarray(2));
      } catch {
        this.#fail(1007, "a close reason must be UTF-8");
        return false;
      }
    }
    this.#peerCode = code;
    this.#peerReason = reason;
    if (!this.#closeSent) this.#sendClose(code, reason);
    return true;
  }
}

/** A server's frame (unmasked, FIN). */
function frame(op: number, payload: Uint8Array): Uint8Array {
  const n = payload.length;
  const h = n < 126 ? 2 : n < 65536 ? 4 : 10;
  const out = new Uint8Array(h + n);
  out[0] = 0x80 | op;
  if (n < 126) out[1] = n;
  else if (n < 65536) {
    out[1] = 126;
    out[2] = n >> 8;
    out[3] = n & 0xff;
  } else {
    out[1] = 127;
    const hi = Math.floor(n / 2 ** 32);
    new DataView(out.buffer).setUint32(2, hi);
    new DataView(out.buffer).setUint32(6, n >>> 0);
  }
  out.set(payload, h);
  return out;
}
