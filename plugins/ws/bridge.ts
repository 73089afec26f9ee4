/**
 * The WebSocket bridge: a WebSocket server (its own RFC 6455 server over
 * TCP, `core/net/websocket_server.ts`, every resource bounded) through which applications
 * drive the calls of a control plugin's {@linkcode CallService} and exchange
 * their audio.
 *
 * - **Connecting.** `ws://HOST:PORT/?token=TOKEN` (or the token as the first
 *   message); the protocol is the subprotocol `voxpipe-text` /
 *   `voxpipe-json`, or `?protocol=text|json`, or else the first message's
 *   (`{` → JSON); `?encoding=l16|mulaw` sets the connection's audio encoding,
 *   `?incoming=0` opts out of incoming-call offers. A wrong or missing token
 *   closes the connection with 1008 and a log line.
 * - **Ownership.** A client sees only the calls it dialed or answered; a call
 *   it names that it does not own is unknown to it. When it disconnects its
 *   calls are hung up.
 * - **Incoming calls.** While at least one client takes incoming calls, the
 *   bridge decides for the call service: every such client is offered the
 *   call, the first to answer owns it, the others are told it is gone; a
 *   reject rejects it; unclaimed after `ring_timeout` it is rejected (480).
 *   With no such client, the control plugin's own policy applies.
 * - **Audio.** The peer's audio (the session's `from-call` bus) goes to the
 *   owner as it comes; when the owner's socket holds more than
 *   `client_buffer_bytes` it is dropped (counted), and a client that stays
 *   above it for `slow_client_seconds` is disconnected: a slow client never
 *   slows the media. The client's audio is paced into `to-call` by a
 *   {@linkcode CallPlayer} on one ticker shared by all calls.
 * - **Errors.** A message that does not parse, or names a call the client
 *   does not own, gets an error back and changes nothing.
 *
 * @module
 */
import type { CallEvent, CallInfo, CallService, IncomingDecision } from "../../core/calls.ts";
import type { Clock, Timer } from "../../core/clock.ts";
import type { Frame } from "../../core/frame.ts";
import { type Logger, LogRation, silentLogger } from "../../core/log.ts";
import { RefusalLog } from "../../core/net/accept.ts";
import { canonicalHost, formatHostPort, isLoopbackAddress } from "../../core/net/address.ts";
import { FailureLimiter, sameSecret } from "../../core/net/failure_limit.ts";
import { type AudioEncoding, AudioFormatError, decodeAudio, encodeAudio, parseEncoding } from "./audio.ts";
import { CallLink, type CallLinkHost, type CallLinkStats } from "./_call_link.ts";
import { jsonProtocol } from "./json_protocol.ts";
import { resolveToken, type WsBridgeOptions } from "./options.ts";
import {
  type Command,
  type Notice,
  ProtocolError,
  type ProtocolName,
  SUBPROTOCOLS,
  type WireProtocol,
} from "./protocol.ts";
import { textProtocol } from "./text_protocol.ts";
import { Ticker } from "./_ticker.ts";
import { MAX_MARKS } from "./player.ts";
import {
  type ServerWebSocket,
  type UpgradeAnswer,
  type UpgradeRequest,
  WebSocketServer,
} from "../../core/net/websocket_server.ts";

/** WebSocket close codes the bridge uses. */
export const CLOSE_CODES = {
  /** Wrong or missing token, bad connection parameters, too slow. */
  policy: 1008,
  /** The bridge is shutting down. */
  goingAway: 1001,
} as const;

const PROTOCOLS: Record<ProtocolName, WireProtocol> = { text: textProtocol, json: jsonProtocol };

/** Commands of one client under way at once (dials, answers, hang-ups, DTMF). */
const MAX_PENDING = 64;

/** Connections still sending their HTTP request head at once (more are closed at once). */
export const MAX_HANDSHAKES = 64;

/** Time a connection has to send its HTTP request head, ms. */
export const HEAD_TIMEOUT_MS = 5000;

/** Time a client has to answer the bridge's close frame before its TCP connection is closed, ms. */
export const CLOSE_TIMEOUT_MS = 2000;

/** What the bridge needs around it. */
export interface WsBridgeContext {
  /** The calls it drives. */
  calls: CallService;
  /** The media clock (ticks, timeouts). */
  clock: Clock;
  /** Logger (lines tagged `WS`). */
  log?: Logger;
}

/** Counters of a {@linkcode WsBridge}. */
export interface WsBridgeStats {
  /** WebSocket connections open now (authenticated or not; not those the bridge has closed). */
  connections: number;
  /** Authenticated clients now. */
  clients: number;
  /** Connections accepted since start. */
  accepted: number;
  /** Connections refused because `max_clients` were open. */
  refusedFull: number;
  /** Connections closed for a wrong or missing token. */
  authFailures: number;
  /** Connections refused (HTTP 403) because their address gave a wrong token too often. */
  authBlocked: number;
  /** Messages answered with an error. */
  errors: number;
  /** Clients disconnected for being too slow. */
  slowDisconnects: number;
  /** Incoming calls offered to clients. */
  offered: number;
  /** Ticks of the media clock skipped after stalls. */
  skippedTicks: number;
  /** The connections open now. */
  clientList: WsClientStats[];
  /** The calls clients own now. */
  calls: CallLinkStats[];
  /** Totals over the calls that ended. */
  ended: { calls: number; framesToClient: number; framesToClientDropped: number; samplesDropped: number };
}

/** One connection, in {@linkcode WsBridgeStats}. */
export interface WsClientStats {
  /** The bridge's number for it (in its log lines). */
  id: number;
  /** Its address. */
  remote: string;
  /** `text`, `json`, or undefined until its first message says. */
  protocol?: ProtocolName;
  /** True once its token was accepted. */
  authenticated: boolean;
  /** The calls it owns. */
  calls: string[];
  /** Bytes waiting in its socket. */
  buffered: number;
  /** Messages answered with an error. */
  errors: number;
  /** Audio frames to it dropped because its socket was full. */
  framesDropped: number;
}

/** One WebSocket connection. */
class Client {
  readonly id: number;
  /** Its address and port, as logged. */
  readonly remote: string;
  /** Its IP address (what wrong tokens are counted against). */
  readonly address: string;
  readonly ws: ServerWebSocket;
  protocol: WireProtocol | undefined;
  authed = false;
  encoding: AudioEncoding;
  readonly incoming: boolean;
  /** Calls it owns. */
  readonly calls = new Set<string>();
  /** Incoming calls offered to it. */
  readonly offered = new Set<string>();
  /** Async commands under way (a ping answers after them). */
  readonly pending = new Set<Promise<unknown>>();
  /** Dials not yet resolved. */
  dialing = 0;
  /** False once dropped (its calls hung up, nothing more sent). */
  active = true;
  /** Since when its socket has been above the audio bound. */
  slowSince: number | undefined;
  authTimer: Timer | undefined;
  errors = 0;
  framesDropped = 0;

  constructor(
    id: number,
    remote: string,
    address: string,
    ws: ServerWebSocket,
    encoding: AudioEncoding,
    incoming: boolean,
  ) {
    this.id = id;
    this.remote = remote;
    this.address = address;
    this.ws = ws;
    this.encoding = encoding;
    this.incoming = incoming;
  }

  /** Takes incoming-call offers now. */
  get ready(): boolean {
    return this.active && this.authed && this.protocol !== undefined && this.incoming;
  }

  get label(): string {
    return `client ${this.id} (${this.remote})`;
  }
}

/** An incoming call on offer to clients. */
interface Offer {
  call: CallInfo;
  clients: Set<Client>;
  timer: Timer;
}

function message(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** A close reason fits in 123 bytes. */
function closeReason(s: string): string {
  const b = new TextEncoder().encode(s);
  return b.length <= 123 ? s : new TextDecoder().decode(b.subarray(0, 120)).replace(/\uFFFD+$/, "") + "...";
}

/** See the module documentation. */
export class WsBridge implements CallLinkHost {
  readonly calls: CallService;
  readonly fromBus: string;
  readonly toBus: string;
  readonly #o: WsBridgeOptions;
  readonly #token: string;
  readonly #clock: Clock;
  readonly #log: Logger;
  readonly #ticker: Ticker;
  readonly #frame: number;
  readonly #sockets = new Set<Client>();
  readonly #links = new Map<string, CallLink>();
  readonly #owners = new Map<string, Client>();
  readonly #offers = new Map<string, Offer>();
  #server: WebSocketServer | undefined;
  #port = 0;
  #nextClient = 1;
  #offEvents: (() => void) | undefined;
  #offDecider: (() => void) | undefined;
  #offTick: (() => void) | undefined;
  #closing: Promise<void> | undefined;
  #stats = { accepted: 0, refusedFull: 0, authFailures: 0, authBlocked: 0, errors: 0, slowDisconnects: 0, offered: 0 };
  /** Wrong tokens per client address. */
  readonly #guesses: FailureLimiter;
  /** Lines for connections refused while their address is blocked. */
  readonly #blockedLines = new LogRation(
    10,
    10_000,
    (n) => `${n} more connections from addresses refused for wrong tokens were not logged`,
  );
  /** Connections refused at max_clients: a line when it starts, one per 10 s while it lasts, one when it ends. */
  #fullRefusals?: RefusalLog;
  #totals = { calls: 0, framesToClient: 0, framesToClientDropped: 0, samplesDropped: 0 };

  /**
   * Creates a bridge (not listening yet: {@linkcode start}).
   * @param options validated options
   * @param ctx the call service, clock and logger
   */
  constructor(options: WsBridgeOptions, ctx: WsBridgeContext) {
    this.#o = options;
    this.#token = resolveToken(options);
    this.calls = ctx.calls;
    this.#clock = ctx.clock;
    this.#log = (ctx.log ?? silentLogger).child("WS");
    this.#guesses = new FailureLimiter({
      maxFailures: options.auth_max_failures,
      windowMs: options.auth_failure_window * 1000,
      blockMs: options.auth_block_time * 1000,
      exempt: options.auth_limit_loopback ? undefined : isLoopbackAddress,
    });
    this.fromBus = options.from_bus;
    this.toBus = options.to_bus;
    this.#frame = Math.round(8000 * options.ptime / 1000);
    // A stall of the process is caught up (frames played back to back) up to 1 s: skipping ticks would leave the
    // clients' audio that much later for the rest of their calls. Beyond, the send chain's sink restarts its
    // timeline anyway.
    this.#ticker = new Ticker(ctx.clock, options.ptime, Math.ceil(1000 / options.ptime));
    this.#ticker.onError = (e) => this.#log.error(`tick failed: ${message(e)}`);
  }

  /** Starts listening; resolves once the server accepts connections. */
  start(): Promise<void> {
    const o = this.#o;
    this.#offEvents = this.calls.onEvent((e) => this.#onEvent(e));
    const server = new WebSocketServer({
      hostname: o.bind,
      port: o.port,
      maxMessageBytes: o.max_message_bytes,
      tooLong: "skip",
      maxHandshakes: MAX_HANDSHAKES,
      headTimeoutMs: HEAD_TIMEOUT_MS,
      closeTimeoutMs: CLOSE_TIMEOUT_MS,
      onError: (e) => this.#log.error(`connection failed: ${message(e)}`),
      log: this.#log,
      clock: this.#clock,
    }, (req) => this.#handle(req));
    try {
      this.#port = server.listen().port;
    } catch (e) {
      this.#offEvents?.();
      return Promise.reject(
        new Error(
          `cannot listen on ${formatHostPort({ hostname: o.bind, port: o.port })}: ${message(e)}` +
            (e instanceof Deno.errors.AddrInUse ? ' (another process uses the port: choose another "port")' : ""),
        ),
      );
    }
    this.#server = server;
    return Promise.resolve();
  }

  /** The port it listens on. */
  get port(): number {
    return this.#port;
  }

  /** Its URL, e.g. `ws://127.0.0.1:8765/`. */
  get address(): string {
    return `ws://${formatHostPort({ hostname: this.#o.bind, port: this.#port })}/`;
  }

  /** Counters. */
  stats(): WsBridgeStats {
    let clients = 0;
    for (const c of this.#sockets) if (c.active && c.authed) clients++;
    return {
      ...this.#stats,
      connections: this.#live(),
      clients,
      skippedTicks: this.#ticker.skipped,
      clientList: [...this.#sockets].map((c) => ({
        id: c.id,
        remote: c.remote,
        protocol: c.protocol?.name,
        authenticated: c.authed,
        calls: [...c.calls],
        buffered: c.ws.bufferedAmount,
        errors: c.errors,
        framesDropped: c.framesDropped,
      })),
      calls: [...this.#links.values()].map((l) => l.stats()),
      ended: { ...this.#totals },
    };
  }

  /** Stops: no new connections, every client told 1001 and dropped (its calls hung up). Idempotent. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#offEvents?.();
      this.#offDecider?.();
      this.#offDecider = undefined;
      const hangups: Promise<unknown>[] = [];
      for (const c of [...this.#sockets]) {
        hangups.push(...this.#drop(c, "the bridge is shutting down", CLOSE_CODES.goingAway));
      }
      for (const [id, offer] of [...this.#offers]) {
        offer.timer.cancel();
        this.#offers.delete(id);
        hangups.push(this.calls.reject(id, 480, "Temporarily Unavailable").catch(() => {}));
      }
      this.#offTick?.();
      this.#ticker.stop();
      await Promise.allSettled(hangups);
      // Every connection is closed: a peer that does not answer the close frame within CLOSE_TIMEOUT_MS (or reads
      // nothing) has its TCP connection closed then.
      await this.#server?.close();
    })();
    return this.#closing;
  }

  // ---- connections ----

  /** Connections the bridge serves (a connection it has closed no longer counts, while its peer answers). */
  #live(): number {
    let n = 0;
    for (const c of this.#sockets) if (c.active) n++;
    return n;
  }

  #handle(req: UpgradeRequest): UpgradeAnswer {
    if (!req.upgrade) {
      return {
        status: 426,
        body: "voxpipe ws-bridge: connect with a WebSocket (ws://HOST:PORT/?token=...)\n",
        headers: { upgrade: "websocket" },
      };
    }
    const remote = formatHostPort({ hostname: req.remote.hostname, port: req.remote.port });
    const now = this.#clock.now();
    const left = this.#guesses.blocked(canonicalHost(req.remote.hostname), now);
    if (left !== undefined) {
      this.#stats.authBlocked++;
      const secs = Math.max(1, Math.ceil(left / 1000));
      if (this.#blockedLines.allow(now, this.#log)) {
        this.#log.warn(
          `connection from ${remote} refused (403): its address gave too many wrong tokens (${secs} s left)`,
        );
      }
      return { status: 403, body: `too many wrong tokens from this address: retry in ${secs} s\n` };
    }
    if (this.#live() >= this.#o.max_clients || this.#closing) {
      this.#stats.refusedFull++;
      this.#fullRefusals ??= new RefusalLog(this.#clock, this.#log, "new connections");
      this.#fullRefusals.refused(
        this.#closing
          ? `shutting down (last from ${remote})`
          : `${this.#o.max_clients} connections open (max_clients; last from ${remote})`,
      );
      return { status: 503, body: "too many connections\n", headers: { "retry-after": "5" } };
    }
    const url = req.url;
    const problems: string[] = [];
    // The protocol: a subprotocol the client offers, else ?protocol=, else its first message.
    const offered = (req.headers.get("sec-websocket-protocol") ?? "").split(",").map((s) => s.trim()).filter(Boolean);
    let protocol: ProtocolName | undefined;
    let subprotocol: string | undefined;
    for (const name of ["json", "text"] as const) {
      if (!protocol && offered.includes(SUBPROTOCOLS[name])) {
        protocol = name;
        subprotocol = SUBPROTOCOLS[name];
      }
    }
    const qp = url.searchParams.get("protocol");
    if (qp !== null && !protocol) {
      if (qp === "text" || qp === "json") protocol = qp;
      else problems.push(`?protocol= is text or json, got ${JSON.stringify(qp.slice(0, 20))}`);
    }
    let encoding: AudioEncoding = protocol === "json" ? "mulaw" : "l16";
    const qe = url.searchParams.get("encoding");
    if (qe !== null) {
      const e = parseEncoding(qe);
      if (e) encoding = e;
      else problems.push(`?encoding= is l16 or mulaw, got ${JSON.stringify(qe.slice(0, 20))}`);
    }
    const qi = url.searchParams.get("incoming");
    const incoming = qi === null || !["0", "false", "no"].includes(qi);
    const token = url.searchParams.get("token");

    return {
      protocol: subprotocol,
      accept: (socket) => {
        this.#fullRefusals?.admitted();
        const client = new Client(
          this.#nextClient++,
          remote,
          canonicalHost(req.remote.hostname),
          socket,
          encoding,
          incoming,
        );
        client.protocol = protocol ? PROTOCOLS[protocol] : undefined;
        // Without an explicit protocol, a JSON client is found by its first message; audio defaults follow it.
        const explicitEncoding = qe !== null;
        this.#sockets.add(client);
        this.#stats.accepted++;
        socket.onopen = () => this.#opened(client, problems, token);
        socket.onmessage = (data) => this.#message(client, data, explicitEncoding);
        socket.ontoolong = (bytes) => this.#tooLong(client, bytes);
        socket.onclose = () => {
          this.#sockets.delete(client);
          if (client.active) this.#drop(client, "disconnected");
        };
      },
    };
  }

  #opened(client: Client, problems: string[], token: string | null): void {
    if (!client.active) return;
    const proto = client.protocol ? client.protocol.name : "chosen by its first message";
    this.#log.info(`${client.label} connected, protocol ${proto}`);
    if (problems.length > 0) {
      this.#log.warn(`${client.label}: ${problems.join("; ")}: closed (1008)`);
      this.#drop(client, problems.join("; "), CLOSE_CODES.policy);
      return;
    }
    if (token !== null) {
      if (!sameSecret(token, this.#token)) return this.#refuse(client, "wrong token", true);
      this.#authenticated(client);
      return;
    }
    client.authTimer = this.#clock.after(this.#o.auth_timeout * 1000, () => {
      if (!client.authed && client.active) this.#refuse(client, `no token within ${this.#o.auth_timeout} s`);
    });
  }

  /** Closes a client that did not authenticate; `guess`: it gave a wrong token, counted against its address. */
  #refuse(client: Client, why: string, guess = false): void {
    this.#stats.authFailures++;
    this.#log.warn(`${client.label}: ${why}: closed (1008)`);
    this.#drop(client, why, CLOSE_CODES.policy);
    if (!guess) return;
    const block = this.#guesses.fail(client.address, this.#clock.now());
    if (block !== undefined) {
      this.#log.warn(
        `${client.address}: ${this.#o.auth_max_failures} wrong tokens within ${this.#o.auth_failure_window} s: ` +
          `its connections are refused (403) for ${block / 1000} s`,
      );
    }
  }

  #authenticated(client: Client): void {
    client.authed = true;
    client.authTimer?.cancel();
    client.authTimer = undefined;
    if (client.protocol) this.#welcome(client);
  }

  /** The client is authenticated and its protocol known. */
  #welcome(client: Client): void {
    this.#send(client, { type: "connected" });
    this.#updateDecider();
  }

  /**
   * Stops serving a client: it is told `why` (closed with `code`), its offers withdrawn, its calls hung up.
   * Returns the hang-ups under way.
   */
  #drop(client: Client, why: string, code?: number): Promise<unknown>[] {
    if (!client.active) return [];
    client.active = false;
    client.authTimer?.cancel();
    if (code !== undefined) {
      try {
        client.ws.close(code, closeReason(why));
      } catch { /* already closing */ }
    }
    for (const id of client.offered) {
      const offer = this.#offers.get(id);
      if (!offer) continue;
      offer.clients.delete(client);
      if (offer.clients.size === 0) this.#unclaimed(id, "no client is left to answer it");
    }
    client.offered.clear();
    const hangups: Promise<unknown>[] = [];
    for (const id of [...client.calls]) {
      const link = this.#links.get(id);
      if (link) this.#unlink(link, undefined);
      hangups.push(this.calls.hangup(id).catch(() => {}));
    }
    this.#updateDecider();
    if (client.authed || code === undefined) {
      const extra = hangups.length ? `, ${hangups.length} call${hangups.length > 1 ? "s" : ""} hung up` : "";
      const errors = client.errors ? `, ${client.errors} messages answered with an error` : "";
      const dropped = client.framesDropped ? `, ${client.framesDropped} audio frames to it dropped` : "";
      this.#log.info(`${client.label} gone: ${why}${extra}${errors}${dropped}`);
    }
    return hangups;
  }

  // ---- messages ----

  #message(client: Client, data: unknown, explicitEncoding: boolean): void {
    if (!client.active) return;
    if (typeof data !== "string") {
      this.#error(client, "binary messages are not part of the protocol: send text messages");
      if (!client.authed) this.#refuse(client, "token required (first message was binary)");
      return;
    }
    if (!client.protocol) {
      client.protocol = /^\s*\{/.test(data) ? jsonProtocol : textProtocol;
      if (client.protocol === jsonProtocol && !explicitEncoding) client.encoding = "mulaw";
      if (client.authed) this.#welcome(client);
    }
    let cmd: Command;
    try {
      cmd = client.protocol.parse(data);
    } catch (e) {
      if (!client.authed) return this.#refuse(client, 'token required (AUTH:... or {"event":"auth",...})');
      if (!(e instanceof ProtocolError)) throw e;
      this.#error(client, e.message, e.callId, e.ref);
      return;
    }
    if (!client.authed) {
      if (cmd.type !== "auth") return this.#refuse(client, "token required");
      if (!sameSecret(cmd.token, this.#token)) return this.#refuse(client, "wrong token", true);
      this.#authenticated(client);
      this.#send(client, { type: "authOk" });
      return;
    }
    this.#command(client, cmd);
  }

  /** A message longer than max_message_bytes: its payload was dropped as it came (never held whole). */
  #tooLong(client: Client, bytes: number): void {
    if (!client.active) return;
    if (!client.authed) return this.#refuse(client, "token required (first message too long)");
    this.#error(client, `message of ${bytes} bytes is longer than ${this.#o.max_message_bytes}: ignored`);
  }

  #command(client: Client, cmd: Command): void {
    switch (cmd.type) {
      case "auth":
        this.#send(client, { type: "authOk" });
        return;
      case "ping": {
        const pending = [...client.pending];
        if (pending.length === 0) this.#send(client, { type: "pong" });
        else Promise.allSettled(pending).then(() => this.#send(client, { type: "pong" }));
        return;
      }
      case "encoding":
        client.encoding = cmd.encoding;
        return;
      case "dial":
        return this.#track(client, () => this.#dial(client, cmd));
      case "answer":
        return this.#track(client, () => this.#answer(client, cmd.callId, cmd.encoding));
      case "reject":
        return this.#track(client, () => this.#reject(client, cmd.callId, cmd.status, cmd.reason));
      default:
        break;
    }
    const link = this.#owned(client, cmd.callId);
    if (!link) return;
    switch (cmd.type) {
      case "hangup":
        return this.#track(
          client,
          () => this.calls.hangup(link.id).catch((e) => this.#error(client, `hangup failed: ${message(e)}`, link.id)),
        );
      case "dtmf":
        return this.#track(
          client,
          () =>
            this.calls.sendDtmf(link.id, cmd.digits).catch((e) =>
              this.#error(client, `DTMF failed: ${message(e)}`, link.id)
            ),
        );
      case "media":
        return this.#media(client, link, cmd.payload);
      case "mark":
        if (!link.player.mark(cmd.name)) {
          this.#error(
            client,
            `call ${link.id}: ${link.player.marks} marks wait for their audio already (at most ${MAX_MARKS} per ` +
              `call): mark ${JSON.stringify(cmd.name.slice(0, 40))} ignored`,
            link.id,
          );
        }
        return;
      case "clear":
        for (const name of link.player.clear()) this.#send(client, { type: "mark", callId: link.id, name });
        return;
    }
  }

  /** Runs an asynchronous command, bounded: a client sending them faster than they complete gets errors. */
  #track(client: Client, run: () => Promise<unknown>): void {
    if (client.pending.size >= MAX_PENDING) {
      this.#error(client, `${MAX_PENDING} commands are under way (DTMF takes its digits' time): wait for them`);
      return;
    }
    const q = run().catch((e) => this.#log.error(`${client.label}: ${message(e)}`)).finally(() =>
      client.pending.delete(q)
    );
    client.pending.add(q);
  }

  /** The link of a call the client owns, or undefined after telling it the call is unknown. */
  #owned(client: Client, id: string): CallLink | undefined {
    const link = this.#links.get(id);
    if (link && this.#owners.get(id) === client) return link;
    this.#error(client, `unknown call ${id}: not one of your calls, or it has ended`, id);
    return undefined;
  }

  #error(client: Client, msg: string, callId?: string, ref?: string): void {
    client.errors++;
    this.#stats.errors++;
    if (client.errors === 1) this.#log.info(`${client.label}: ${msg} (further errors are counted)`);
    else this.#log.debug(`${client.label}: ${msg}`);
    this.#send(client, { type: "error", message: msg, callId, ref });
  }

  #media(client: Client, link: CallLink, payload: string): void {
    let samples: Int16Array;
    try {
      samples = decodeAudio(payload, link.encoding ?? client.encoding);
    } catch (e) {
      if (!(e instanceof AudioFormatError)) throw e;
      this.#error(client, `call ${link.id}: ${e.message}`, link.id);
      return;
    }
    const dropped = link.player.enqueue(samples, this.#clock.now());
    if (dropped > 0 && !link.overflowReported) {
      link.overflowReported = true;
      this.#error(
        client,
        `call ${link.id}: ${this.#o.max_queue_seconds} s of audio are queued (max_queue_seconds): ` +
          `${dropped} samples dropped (further drops are counted)`,
        link.id,
      );
    }
  }

  // ---- calls ----

  #newLink(client: Client, id: string, direction: "inbound" | "outbound", encoding?: AudioEncoding): CallLink {
    const o = this.#o;
    const link = new CallLink(this, id, client.id, direction, {
      frame: this.#frame,
      jitter: Math.round(8 * o.jitter_ms),
      jitterMs: o.jitter_ms,
      maxQueue: Math.round(8000 * o.max_queue_seconds),
    });
    link.encoding = encoding;
    this.#links.set(id, link);
    this.#owners.set(id, client);
    client.calls.add(id);
    return link;
  }

  async #dial(client: Client, cmd: Extract<Command, { type: "dial" }>): Promise<void> {
    if (client.calls.size + client.dialing >= this.#o.max_calls_per_client) {
      this.#send(client, {
        type: "dialFailed",
        status: 0,
        reason: `you own ${this.#o.max_calls_per_client} calls already (max_calls_per_client)`,
        ref: cmd.ref,
      });
      return;
    }
    client.dialing++;
    let info: CallInfo;
    try {
      info = await this.calls.dial(cmd.to, cmd.ringTimeout !== undefined ? { ringTimeout: cmd.ringTimeout } : {});
    } catch (e) {
      const status = (e as { status?: unknown }).status;
      this.#send(client, {
        type: "dialFailed",
        status: typeof status === "number" ? status : 0,
        reason: message(e),
        ref: cmd.ref,
      });
      return;
    } finally {
      client.dialing--;
    }
    if (!client.active) {
      await this.calls.hangup(info.id).catch(() => {});
      return;
    }
    const link = this.#newLink(client, info.id, "outbound", cmd.encoding);
    this.#log.info(`${client.label} dialed ${cmd.to}: call ${info.id}`);
    this.#send(client, { type: "dialing", callId: info.id, to: cmd.to, ref: cmd.ref });
    this.#catchUp(link, this.calls.call(info.id) ?? info);
  }

  /** Brings a new link up to its call's state (events before the link existed were not routed to it). */
  #catchUp(link: CallLink, call: CallInfo): void {
    if (call.state === "ringing") this.#ringing(link, undefined);
    else if (call.state === "answered") this.#answered(link, call);
    else if (call.state === "ended") this.#ended(link, call);
  }

  async #answer(client: Client, id: string, encoding: AudioEncoding | undefined): Promise<void> {
    const offer = this.#offers.get(id);
    if (!offer || !offer.clients.has(client)) {
      this.#error(client, `call ${id} is not offered to you (unknown, answered by another client, or ended)`, id);
      return;
    }
    if (client.calls.size + client.dialing >= this.#o.max_calls_per_client) {
      this.#error(client, `you own ${this.#o.max_calls_per_client} calls already (max_calls_per_client)`, id);
      return;
    }
    this.#withdraw(id, "answered by another client", client);
    const link = this.#newLink(client, id, "inbound", encoding);
    this.#log.info(`${client.label} answers call ${id} from ${offer.call.remote}`);
    try {
      await this.calls.answer(id);
    } catch (e) {
      if (!link.closed) this.#error(client, `answer failed: ${message(e)}`, id);
    }
    const now = this.calls.call(id);
    if (now && !link.closed) this.#catchUp(link, now);
  }

  async #reject(client: Client, id: string, status?: number, reason?: string): Promise<void> {
    const offer = this.#offers.get(id);
    if (!offer || !offer.clients.has(client)) {
      this.#error(client, `call ${id} is not offered to you (unknown, answered by another client, or ended)`, id);
      return;
    }
    this.#withdraw(id, `rejected by client ${client.id}`);
    this.#log.info(`${client.label} rejects call ${id}${status ? ` (${status})` : ""}`);
    try {
      await this.calls.reject(id, status, reason);
    } catch (e) {
      this.#error(client, `reject failed: ${message(e)}`, id);
    }
  }

  /** Ends an offer: every client it was offered to (but `except`) is told `reason`. */
  #withdraw(id: string, reason: string, except?: Client): void {
    const offer = this.#offers.get(id);
    if (!offer) return;
    offer.timer.cancel();
    this.#offers.delete(id);
    for (const c of offer.clients) {
      c.offered.delete(id);
      if (c !== except) this.#send(c, { type: "incomingEnd", callId: id, reason });
    }
  }

  /** Nobody took an offered call: it is rejected with 480. */
  #unclaimed(id: string, why: string): void {
    this.#withdraw(id, why);
    this.#log.info(`call ${id} rejected (480): ${why}`);
    this.calls.reject(id, 480, "Temporarily Unavailable").catch((e) =>
      this.#log.debug(`rejecting call ${id}: ${message(e)}`)
    );
  }

  #updateDecider(): void {
    let ready = false;
    for (const c of this.#sockets) {
      if (c.ready) {
        ready = true;
        break;
      }
    }
    if (ready && !this.#offDecider && !this.#closing) {
      this.#offDecider = this.calls.onIncoming((call) => this.#decide(call));
      this.#log.info("incoming calls are offered to the connected clients");
    } else if (!ready && this.#offDecider) {
      this.#offDecider();
      this.#offDecider = undefined;
      this.#log.info("no client takes incoming calls: the control plugin's own policy applies");
    }
  }

  #decide(call: CallInfo): IncomingDecision {
    const clients = new Set<Client>();
    for (const c of this.#sockets) if (c.ready) clients.add(c);
    if (clients.size === 0) return { action: "reject", status: 480, reason: "Temporarily Unavailable" };
    this.#stats.offered++;
    const timer = this.#clock.after(this.#o.ring_timeout * 1000, () => {
      if (this.#offers.has(call.id)) this.#unclaimed(call.id, `nobody answered within ${this.#o.ring_timeout} s`);
    });
    this.#offers.set(call.id, { call, clients, timer });
    const from = call.remote;
    for (const c of clients) {
      c.offered.add(call.id);
      this.#send(c, { type: "incoming", callId: call.id, from, to: call.local });
    }
    this.#log.info(`incoming call ${call.id} from ${from} offered to ${clients.size} client(s)`);
    return { action: "ring" };
  }

  #onEvent(e: CallEvent): void {
    const id = e.call.id;
    const link = this.#links.get(id);
    if (!link) {
      if (e.type === "ended" && this.#offers.has(id)) {
        this.#withdraw(id, `ended before it was answered${e.call.reason ? `: ${e.call.reason}` : ""}`);
      }
      return;
    }
    switch (e.type) {
      case "progress":
        this.#ringing(link, e.detail);
        return;
      case "answered":
        this.#answered(link, e.call);
        return;
      case "ended":
        this.#ended(link, e.call);
        return;
      case "dtmf":
        // Once the link reads the call's session, digits come from its `dtmf` events (onPeerDtmf): a service that
        // reports them as call events too would deliver each twice.
        if (!link.attached) this.onPeerDtmf(link, e.detail);
        return;
    }
  }

  #ringing(link: CallLink, detail: Record<string, unknown> | undefined): void {
    if (link.rang || link.answered) return;
    link.rang = true;
    const owner = this.#owners.get(link.id);
    if (!owner) return;
    const status = typeof detail?.status === "number" ? detail.status : undefined;
    const reason = typeof detail?.reason === "string" ? detail.reason : undefined;
    this.#send(owner, { type: "ringing", callId: link.id, status, reason });
  }

  #answered(link: CallLink, call: CallInfo): void {
    if (link.answered || link.closed) return;
    link.answered = true;
    const owner = this.#owners.get(link.id);
    if (!owner) return;
    const inbound = link.direction === "inbound";
    this.#send(owner, {
      type: "answered",
      call: {
        callId: link.id,
        direction: link.direction,
        from: inbound ? call.remote : call.local,
        to: inbound ? call.local : call.remote,
      },
      encoding: link.encoding ?? owner.encoding,
    });
    this.#attach(link);
    if (!this.#offTick) this.#offTick = this.#ticker.add((n, now, late) => this.#tick(n, now, late));
  }

  #attach(link: CallLink): void {
    if (!link.attach()) return;
    const f = link.toBus?.format;
    if (f && (f.kind !== "pcm" || f.sampleRate !== 8000 || f.channels !== 1)) {
      this.#log.warn(
        `call ${link.id}: bus "${this.toBus}" carries ${f.kind} ${f.sampleRate ?? ""} Hz, but the bridge plays pcm ` +
          `8000 Hz mono into it: read it with a bus-source declaring "rate": 8000, "channels": 1 and resample after`,
      );
    }
  }

  #ended(link: CallLink, call: CallInfo): void {
    const owner = this.#owners.get(link.id);
    this.#unlink(link, call);
    if (owner?.active) {
      this.#send(owner, {
        type: "ended",
        callId: link.id,
        direction: link.direction,
        answered: link.answered || call.answeredAt !== undefined,
        status: call.status,
        reason: call.reason ?? "ended",
      });
    }
  }

  /** Forgets a link: its media stops; its summary is logged. */
  #unlink(link: CallLink, call: CallInfo | undefined): void {
    if (link.closed) return;
    link.close();
    this.#links.delete(link.id);
    const owner = this.#owners.get(link.id);
    this.#owners.delete(link.id);
    owner?.calls.delete(link.id);
    const p = link.player.stats();
    this.#totals.calls++;
    this.#totals.framesToClient += link.framesToClient;
    this.#totals.framesToClientDropped += link.framesToClientDropped;
    this.#totals.samplesDropped += p.droppedSamples;
    const why = call?.reason ?? "its client went away";
    this.#log.info(
      `call ${link.id} ended (${why}): to client ${link.framesToClient} frames` +
        (link.framesToClientDropped ? ` (${link.framesToClientDropped} dropped: socket full)` : "") +
        `, from client ${(p.playedSamples / 8000).toFixed(2)} s played over ${p.frames} frames, ` +
        `ran dry ${p.ranDry}×` + (p.droppedSamples ? `, ${p.droppedSamples} samples dropped (queue full)` : ""),
    );
    if (this.#links.size === 0 && this.#offTick) {
      this.#offTick();
      this.#offTick = undefined;
    }
  }

  // ---- media ----

  #tick(n: number, now: number, late: number): void {
    for (const link of this.#links.values()) {
      if (!link.answered) continue;
      if (!link.attached) this.#attach(link);
      link.tick(n, now, late);
    }
    for (const c of this.#sockets) if (c.slowSince !== undefined && c.active) this.#checkSlow(c, now);
  }

  /** The peer's audio: to the owner, unless its socket is full (dropped, counted). */
  onPeerAudio(link: CallLink, frame: Frame): void {
    if (frame.kind !== "pcm" || frame.sampleRate !== 8000 || frame.channels !== 1) {
      link.framesWrongFormat++;
      if (!link.formatReported) {
        link.formatReported = true;
        const what = frame.kind === "pcm" ? `pcm ${frame.sampleRate} Hz ${frame.channels} ch` : frame.kind;
        this.#log.warn(
          `call ${link.id}: bus "${this.fromBus}" carries ${what}; the bridge sends pcm 8000 Hz mono: insert ` +
            `{"use": "resampler", "rate": 8000, "channels": 1} before its bus-sink (these frames are dropped)`,
        );
      }
      return;
    }
    const owner = this.#owners.get(link.id);
    if (!owner?.active || !owner.protocol) return;
    const timestamp = Math.round(link.samplesToClient / 8);
    link.samplesToClient += frame.samples.length;
    const now = this.#clock.now();
    if (owner.ws.bufferedAmount > this.#o.client_buffer_bytes) {
      link.framesToClientDropped++;
      owner.framesDropped++;
      owner.slowSince ??= now;
      this.#checkSlow(owner, now);
      return;
    }
    owner.slowSince = undefined;
    link.framesToClient++;
    this.#send(owner, {
      type: "media",
      callId: link.id,
      payload: encodeAudio(frame.samples, link.encoding ?? owner.encoding),
      sequenceNumber: ++link.seqToClient,
      timestamp,
    });
  }

  /** A digit from the peer: to the owner. */
  onPeerDtmf(link: CallLink, detail: unknown): void {
    const owner = this.#owners.get(link.id);
    const d = (detail ?? {}) as Record<string, unknown>;
    if (!owner || typeof d.digit !== "string") return;
    const ms = d.durationMs ?? d.duration_ms ?? d.duration;
    this.#send(owner, {
      type: "dtmf",
      callId: link.id,
      digit: d.digit,
      durationMs: typeof ms === "number" ? ms : undefined,
    });
  }

  /** Marks played: echoed to the owner. */
  onMarks(link: CallLink, marks: string[]): void {
    const owner = this.#owners.get(link.id);
    if (!owner) return;
    for (const name of marks) this.#send(owner, { type: "mark", callId: link.id, name });
  }

  #checkSlow(c: Client, now: number): void {
    const buffered = c.ws.bufferedAmount;
    if (buffered <= this.#o.client_buffer_bytes) {
      c.slowSince = undefined;
      return;
    }
    c.slowSince ??= now;
    if (now - c.slowSince >= this.#o.slow_client_seconds * 1000 || buffered > 4 * this.#o.client_buffer_bytes) {
      this.#tooSlow(c, buffered);
    }
  }

  #tooSlow(c: Client, buffered: number): void {
    this.#stats.slowDisconnects++;
    const secs = c.slowSince !== undefined ? ((this.#clock.now() - c.slowSince) / 1000).toFixed(1) : "0";
    this.#log.warn(`${c.label} too slow: ${buffered} bytes unsent for ${secs} s: disconnected (1008)`);
    this.#drop(c, `too slow: ${buffered} bytes unsent`, CLOSE_CODES.policy);
  }

  #send(c: Client, n: Notice): void {
    if (!c.active || !c.protocol) return;
    for (const m of c.protocol.format(n)) {
      try {
        c.ws.send(m);
      } catch {
        return; // closing: onclose drops it
      }
    }
    if (c.ws.bufferedAmount > 4 * this.#o.client_buffer_bytes) {
      c.slowSince ??= this.#clock.now();
      this.#tooSlow(c, c.ws.bufferedAmount);
    }
  }
}
