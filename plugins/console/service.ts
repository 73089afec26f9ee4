/**
 * The `console` service: an HTTP server (loopback by default) that serves the browser console (static files of
 * `static/`, uPlot from node_modules: no build step, no CDN), the page's WebSocket (protocol.ts) and the audio
 * upload, over a {@linkcode ConsoleHub} that follows the control plugin's calls.
 *
 * HTTP:
 * - `GET /` the page; `GET /<file>` its files; `GET /vendor/uplot.js`, `/vendor/uplot.css` the chart library;
 * - `GET /ws` the WebSocket;
 * - `GET /api/files` the audio files (`{ files }`);
 * - `POST /api/upload?name=<file name>` with the file as the body (`Content-Length`, at most `max_upload_mb`; a
 *   chunked body gets 411): stored and checked like `file-source` reads it; `200 { file }`, or `400 { error }`
 *   saying why it cannot be played (the file is then deleted). Two uploads are received at once at most (each is
 *   held in memory until checked): a third gets `503` before its body is read.
 *
 * Every request must name in its Host header an address the console serves (see {@linkcode hostAllowedBy}), else
 * 403. With a `token`, `/ws` and `/api/*` need `?token=`. `/ws`, `/api/*` and every method but GET and HEAD refuse a
 * request whose `Origin` is not the console's own, `Origin: null` included (a loopback service is reachable from any
 * site a browser visits, sandboxed frames included); see {@linkcode originRefused}.
 *
 * The server is voxpipe's own (core/net/websocket_server.ts, as the WebSocket bridge's), every resource bounded: one
 * request per connection (answered, then closed); a request head of at most 32 KiB within 5 s (else the connection
 * is closed; longer: 431); at most 64 connections reading their head or their upload at once, 16 from one
 * non-loopback address (more are closed at once); an upload's body must come within 10 s plus 1 s per 64 KiB (else the connection is closed); a page's
 * message is at most 128 KiB (longer: the page is closed with 1009), and a page that sends nothing (not even the pong
 * of the server's ping) for 60 s is closed; a page's requests are handled 8 at once, at most 64 more (256 KiB)
 * waiting (more: closed with 1008, as before the hello), and a page that leaves more than 4 MiB of replies unread is
 * closed (1008). Once fewer than 64 file descriptors would be left under the process's
 * limit (`ulimit -n`), a new connection gets `503` at once and is closed (a new page's WebSocket included), so that
 * the calls and pages open keep theirs; a warning names the limit (then one line per 10 s while it lasts). An accept
 * that fails all the same (out of descriptors) is retried after 50 ms, doubling up to 1 s: the server never stops.
 *
 * @module
 */
import { dirname, extname, join, resolve } from "node:path";
import { createRequire } from "node:module";
import type { Service, ServiceContext } from "../../core/control.ts";
import {
  BodyError,
  HeadError,
  type ServerWebSocket,
  type UpgradeAnswer,
  type UpgradeRequest,
  WebSocketServer,
} from "../../core/net/websocket_server.ts";
import {
  canonicalHost,
  formatHostPort,
  ipVersion,
  isLoopbackAddress,
  isWildcard,
  parseHostPort,
} from "../../core/net/address.ts";
import { FailureLimiter, sameSecret } from "../../core/net/failure_limit.ts";
import { LogRation } from "../../core/log.ts";
import { outOfFilesHint } from "../../core/open_files.ts";
import { AudioLibrary } from "./files.ts";
import { ConsoleHub } from "./hub.ts";
import type { ConsoleOptions } from "./options.ts";
import { excerpt } from "../../core/text.ts";

const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".ico": "image/x-icon",
};

/** A page's WebSocket stops getting audio while this much is queued to it (bytes). */
const AUDIO_BACKLOG = 256 * 1024;

/**
 * Most messages a page may send before the hub has its hello ready (they wait in a queue until then), and most bytes
 * (UTF-8) of them: beyond either, the page is closed with {@linkcode PRE_HELLO_CLOSE}. The page itself sends nothing
 * before its hello; these leave room for a page that sends a few requests at once.
 */
const PRE_HELLO_MESSAGES = 64;
const PRE_HELLO_BYTES = 256 * 1024;

/** The close code for a page that sent too much before its hello: 1008, Policy Violation (RFC 6455 §7.4.1). */
const PRE_HELLO_CLOSE = 1008;

/**
 * Requests of a page handled at once, at most: those after them wait in its queue (bounded as before the hello), so
 * that a page cannot start any number of them (each `files` request held a directory open: 20 000 of them, 400 KB
 * sent, held 17 000 descriptors at once).
 */
const PAGE_REQUESTS_AT_ONCE = 8;
/**
 * Bytes queued to a page's WebSocket beyond which it is closed (1008): a page that sends requests and reads none of
 * the replies (or a page on a link too slow for what it asked) would otherwise have them kept without bound.
 */
const PAGE_BACKLOG = 4 * 1024 * 1024;

/** Longest upload file name (`?name=`), characters: a longer one is refused (it is quoted in errors). */
const MAX_NAME = 255;
/**
 * Uploads received at once, at most: each holds its body in memory (up to `max_upload_mb`) until it is checked, so a
 * further one gets 503 before any of its body is read. A person uploads one file at a time; this leaves room for two
 * tabs.
 */
const MAX_UPLOADS = 2;
/**
 * Longest message a page may send, bytes: beyond, it is closed with 1009 (Message Too Big). The page's requests are
 * a few hundred bytes; this leaves room for long file names and filters.
 */
const MAX_PAGE_MESSAGE = 128 * 1024;
/** Longest request head, bytes (a long upload name is refused by the console itself, saying so). */
const MAX_HEAD = 32 * 1024;
/** Time a connection has to send its request head, ms. */
const HEAD_TIMEOUT_MS = 5000;
/** A page's WebSocket that sends nothing for this long (ms) is pinged at half of it, and closed at its end. */
const PAGE_IDLE_MS = 60_000;

/** True for loopback addresses (127.0.0.0/8, ::1, localhost). */
export function isLoopback(host: string): boolean {
  const h = canonicalHost(host);
  return h === "localhost" || isLoopbackAddress(h);
}

/**
 * A test of the request's Host header: true when it names an address this console serves, so that a page that
 * reached the console through a name of its own (DNS rebinding: an attacker's name resolved to 127.0.0.1) is refused.
 * Allowed: a name of `allowed`; the bound address; on a loopback bind, any loopback literal and `localhost`; on a
 * wildcard bind, those and any IP literal (a browser sends an IP literal only when it was told that address, so the
 * page's origin is that address: no name was rebound).
 */
export function hostAllowedBy(bind: string, allowed: readonly string[]): (host: string | null) => boolean {
  const own = canonicalHost(bind);
  const names = new Set(allowed.map((h) => canonicalHost(h.trim())).filter((h) => h !== ""));
  const wildcard = isWildcard(bind);
  const loopback = wildcard || isLoopback(bind);
  return (host) => {
    if (host === null) return false;
    let name: string;
    try {
      name = parseHostPort(host, 80).hostname;
    } catch {
      return false;
    }
    if (ipVersion(name) === 6 && !host.trim().startsWith("[")) return false;
    const h = canonicalHost(name);
    if (h === own || names.has(h)) return true;
    if (loopback && isLoopback(h)) return true;
    return wildcard && ipVersion(h) !== 0;
  };
}

/** The static files of the page, and uPlot's, by URL path: read once at start. */
async function loadFiles(): Promise<Map<string, { body: Uint8Array<ArrayBuffer>; type: string }>> {
  const files = new Map<string, { body: Uint8Array<ArrayBuffer>; type: string }>();
  const dir = new URL("./static/", import.meta.url);
  for await (const e of Deno.readDir(dir)) {
    if (!e.isFile || e.name.startsWith(".")) continue;
    const type = TYPES[extname(e.name)];
    if (type) files.set(`/${e.name}`, { body: await Deno.readFile(new URL(e.name, dir)), type });
  }
  const index = files.get("/index.html");
  if (!index) throw new Error(`the console's page is missing (${dir.pathname}index.html)`);
  files.set("/", index);
  const uplot = uplotDir();
  files.set("/vendor/uplot.js", { body: await Deno.readFile(join(uplot, "uPlot.iife.min.js")), type: TYPES[".js"] });
  files.set("/vendor/uplot.css", { body: await Deno.readFile(join(uplot, "uPlot.min.css")), type: TYPES[".css"] });
  return files;
}

/** The folder of uPlot's built files in node_modules; throws saying how to install it. */
function uplotDir(): string {
  const tries: string[] = [];
  try {
    const url = import.meta.resolve("uplot");
    if (url.startsWith("file:")) return dirname(new URL(url).pathname);
    tries.push(url);
  } catch (e) {
    tries.push(e instanceof Error ? e.message : String(e));
  }
  try {
    return dirname(createRequire(import.meta.url).resolve("uplot/dist/uPlot.iife.min.js"));
  } catch (e) {
    tries.push(e instanceof Error ? e.message : String(e));
  }
  throw new Error(
    `the chart library uplot is not installed in node_modules (${tries.join("; ")}): run \`deno install\` ` +
      "(or `deno task setup`) in the voxpipe checkout",
  );
}

/** The running console service: a {@linkcode Service} that also says how many pages it serves. */
export interface ConsoleService extends Service {
  /** WebSockets open now (at most `max_clients`). */
  readonly sockets: number;
  /** Pages the hub serves now (a WebSocket that closed is no longer one, whenever it closed). */
  readonly pages: number;
  /**
   * Messages the pages sent that wait in their queues now (all pages together): sent before the hub was ready for
   * them, or beyond the requests a page has handled at once.
   */
  readonly waiting: number;
  /** Requests of the pages the hub is handling now (at most 8 a page; the rest wait, see `waiting`). */
  readonly handling: number;
  /** Uploads being received or checked now (at most two: more get 503). */
  readonly uploads: number;
}

/** Starts the console service (see the module documentation). */
export async function startConsole(o: ConsoleOptions, ctx: ServiceContext): Promise<ConsoleService> {
  if (!isLoopback(o.bind) && !o.token) {
    throw new Error(
      `bind ${o.bind} lets anyone who reaches it place and hear calls: set a token (token: "...", then open ` +
        `http://HOST:${o.port}/?token=...), or bind 127.0.0.1`,
    );
  }
  const files = await loadFiles();
  const library = new AudioLibrary({
    libraryDir: o.library ? resolve(ctx.baseDir, o.library) : "",
    uploadDir: resolve(ctx.baseDir, o.uploads),
  });
  const log = ctx.log.child("CONSOLE");
  const hub = new ConsoleHub({
    calls: ctx.calls,
    clock: ctx.clock,
    log: ctx.log,
    library,
    autoAnswer: o.auto_answer,
    decideIncoming: o.decide_incoming,
    historySeconds: o.history_seconds,
    keepEnded: o.keep_ended,
    pageSize: o.page_size,
    audioBus: o.audio_bus,
    recordDir: resolve(ctx.baseDir, o.record_dir),
    ladderMax: 200,
    logLinesMax: 300,
  });
  const untap = ctx.log.tap(hub.logTap);
  hub.start();
  const sockets = new Set<ServerWebSocket>();
  const maxUpload = Math.round(o.max_upload_mb * 1024 * 1024);
  const hostAllowed = hostAllowedBy(o.bind, o.allowed_hosts.split(","));

  const guesses = new FailureLimiter({
    maxFailures: o.auth_max_failures,
    windowMs: o.auth_failure_window * 1000,
    blockMs: o.auth_block_time * 1000,
    exempt: o.auth_limit_loopback ? undefined : isLoopbackAddress,
  });
  const blockedLines = new LogRation(
    10,
    10_000,
    (n) => `${n} more requests from addresses refused for wrong tokens were not logged`,
  );
  /** The token check (a wrong one counted against the address; an address that guessed too often refused). */
  const authorized = (req: UpgradeRequest, address: string): UpgradeAnswer | undefined => {
    if (o.token) {
      const now = ctx.clock.now();
      const left = guesses.blocked(address, now);
      if (left !== undefined) {
        const secs = Math.max(1, Math.ceil(left / 1000));
        if (blockedLines.allow(now, log)) log.warn(`${address}: refused (403), too many wrong tokens (${secs} s left)`);
        return json({ error: `too many wrong tokens from this address: retry in ${secs} s` }, 403);
      }
      const given = req.url.searchParams.get("token");
      if (given === null || !sameSecret(given, o.token)) {
        // A missing token is a page opened without it, not a guess.
        const block = given === null ? undefined : guesses.fail(address, now);
        if (block !== undefined) {
          log.warn(
            `${address}: ${o.auth_max_failures} wrong tokens within ${o.auth_failure_window} s: its requests are ` +
              `refused (403) for ${block / 1000} s`,
          );
        }
        return json({ error: "missing or wrong token: open the console with ?token=..." }, 401);
      }
    }
    return originRefused(req);
  };

  /** Answers a request: at once (a static file, the WebSocket's upgrade, a refusal), or later (the API). */
  const handler = (req: UpgradeRequest): UpgradeAnswer | Promise<UpgradeAnswer> => {
    const address = canonicalHost(req.remote.hostname);
    const host = req.headers.get("host");
    if (!hostAllowed(host)) {
      return json({
        error: `Host ${host === null ? "(none)" : quoted(host)} is not an address of this console ` +
          `(a name that resolves here, as in DNS rebinding, is refused): open the address it prints, or add ` +
          `the name to the console's allowed_hosts`,
      }, 403);
    }
    const path = req.url.pathname;
    if (path === "/ws") {
      const denied = authorized(req, address);
      if (denied) return denied;
      if (!req.upgrade) {
        return json({ error: "this is the console's WebSocket: connect with a WebSocket client" }, 426);
      }
      // Decided and accepted at once (nothing runs between): never more than max_clients sockets.
      if (sockets.size >= o.max_clients) {
        return json({
          error: `the console serves ${o.max_clients} pages at most (max_clients): close another console tab`,
        }, 503);
      }
      return { accept: attach };
    }
    if (path.startsWith("/api/")) {
      const denied = authorized(req, address);
      if (denied) return denied;
      if (path === "/api/files" && (req.method === "GET" || req.method === "HEAD")) {
        return library.list().then((files) => json({ files }));
      }
      if (path === "/api/upload") {
        if (req.method !== "POST") return json({ error: "upload with POST /api/upload?name=FILE" }, 405);
        return upload(req);
      }
      return json({ error: `no API ${cut(path)}` }, 404);
    }
    if (req.method !== "GET" && req.method !== "HEAD") {
      return originRefused(req) ?? json({ error: `${cut(req.method)} not allowed` }, 405);
    }
    const f = files.get(path);
    if (!f) return { status: 404, body: "not found", headers: { "content-type": "text/plain" } };
    return {
      status: 200,
      body: f.body,
      headers: {
        "content-type": f.type,
        "cache-control": "no-cache",
        "x-content-type-options": "nosniff",
        "content-security-policy":
          "default-src 'self'; connect-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; " +
          "frame-ancestors 'none'",
      },
    };
  };

  /** Uploads whose body is being received or checked now (see {@linkcode MAX_UPLOADS}). */
  let uploading = 0;
  const upload = async (req: UpgradeRequest): Promise<UpgradeAnswer> => {
    const name = req.url.searchParams.get("name") ?? "";
    if (!name) return json({ error: "upload: give the file name (?name=...)" }, 400);
    if (name.length > MAX_NAME) {
      return json({ error: `upload: the file name ${quoted(name)} is longer than ${MAX_NAME} characters` }, 400);
    }
    if (req.headers.has("transfer-encoding")) {
      return json({
        error: `${name}: send the file with a Content-Length (a chunked or otherwise encoded upload is not accepted)`,
      }, 411);
    }
    const given = req.headers.get("content-length") ?? "0";
    if (!/^\d{1,16}$/.test(given)) {
      return json({ error: `${name}: Content-Length ${quoted(given)} is not a number of bytes` }, 400);
    }
    const declared = Number(given);
    if (declared > maxUpload) {
      return json({ error: `${name} is larger than the console accepts (max_upload_mb ${o.max_upload_mb} MB)` }, 413);
    }
    if (uploading >= MAX_UPLOADS) {
      return json(
        {
          error:
            `${name}: ${MAX_UPLOADS} uploads are under way (the most at once): send this one when one of them ends`,
        },
        503,
        { "retry-after": "5" },
      );
    }
    uploading++;
    try {
      let bytes: Uint8Array;
      try {
        bytes = await req.readBody(declared);
      } catch (e) {
        if (e instanceof HeadError) return json({ error: e.message }, e.status);
        // The client went away (or half-closed, or was too slow) before the body's end: nothing is stored.
        const size = e instanceof BodyError ? e.received : 0;
        const why = e instanceof Error ? e.message : String(e);
        log.info(`upload ${quoted(name)} cut off after ${size} bytes: ${why}`);
        return json({ error: `${name}: the upload was cut off after ${size} bytes (${why}): send it again` }, 400);
      }
      try {
        const file = await library.upload(name, bytes);
        log.info(`upload ${name}: stored as ${file.file} (${file.format}, ${file.seconds.toFixed(1)} s)`);
        return json({ file });
      } catch (e) {
        const error = e instanceof Error ? e.message : String(e);
        log.info(`upload ${name} refused: ${error}`);
        return json({ error }, 400);
      }
    } finally {
      uploading--;
    }
  };

  let waiting = 0;
  let handlingAll = 0;
  const attach = (socket: ServerWebSocket) => {
    sockets.add(socket);
    let conn: Awaited<ReturnType<ConsoleHub["connect"]>> | undefined;
    let gone = false;
    const queue: string[] = [];
    let queuedBytes = 0;
    /** Requests handed to the hub and not answered yet. */
    let handling = 0;
    /** Hands the hub what waits in the queue, in order, while fewer than PAGE_REQUESTS_AT_ONCE are under way. */
    const pump = () => {
      while (conn && !gone && queue.length > 0 && handling < PAGE_REQUESTS_AT_ONCE) {
        const t = queue.shift()!;
        waiting--;
        queuedBytes -= utf8Length(t);
        handle(conn, t);
      }
    };
    const handle = (c: NonNullable<typeof conn>, t: string) => {
      handling++;
      handlingAll++;
      const done = () => {
        handling--;
        handlingAll--;
        pump();
      };
      c.receive(t).then(done, done);
    };
    socket.onopen = async () => {
      const c = await hub.connect({
        send: (m) => {
          if (socket.readyState !== "open") return;
          if (socket.bufferedAmount > PAGE_BACKLOG) {
            log.warn(`a page reads nothing of what it asked (${socket.bufferedAmount} bytes wait for it): closed`);
            gone = true;
            socket.close(PRE_HELLO_CLOSE, `more than ${PAGE_BACKLOG} bytes sent to the page wait for it to read them`);
            return;
          }
          socket.send(JSON.stringify(m));
        },
        sendAudio: (bytes) => {
          if (socket.readyState !== "open" || socket.bufferedAmount > AUDIO_BACKLOG) return false;
          socket.send(bytes);
          return true;
        },
      });
      // The page may have left while the hub was preparing its hello: forget it now.
      if (gone) return c.close();
      // What the page sent meanwhile goes first, in order: a message arriving while these are handled joins the
      // queue behind them (`conn` is set only once it is empty), so the hub sees them all in the order sent.
      while (queue.length > 0) {
        const t = queue.shift()!;
        waiting--;
        queuedBytes -= utf8Length(t);
        handling++;
        handlingAll++;
        try {
          await c.receive(t);
        } finally {
          handling--;
          handlingAll--;
        }
        if (gone) return c.close();
      }
      conn = c;
    };
    socket.onmessage = (data) => {
      if (typeof data !== "string" || gone) return;
      if (conn && queue.length === 0 && handling < PAGE_REQUESTS_AT_ONCE) return handle(conn, data);
      queuedBytes += utf8Length(data);
      if (queue.length < PRE_HELLO_MESSAGES && queuedBytes <= PRE_HELLO_BYTES) {
        queue.push(data);
        waiting++;
        return;
      }
      // The hub is still preparing the hello, or handling the page's earlier requests: a page that sends this much
      // meanwhile is closed, not queued.
      const when = conn ? `while ${PAGE_REQUESTS_AT_ONCE} of its requests were handled` : "before its hello was ready";
      log.warn(
        `a page sent ${queue.length + 1} messages (${queuedBytes} bytes) ${when}, more than ` +
          `${PRE_HELLO_MESSAGES} messages or ${PRE_HELLO_BYTES} bytes: closed`,
      );
      waiting -= queue.length;
      queue.length = 0;
      gone = true;
      socket.close(
        PRE_HELLO_CLOSE,
        `more than ${PRE_HELLO_MESSAGES} messages or ${PRE_HELLO_BYTES} bytes sent ` +
          (conn ? "waiting to be handled" : "before the hello"),
      );
    };
    socket.onclose = () => {
      gone = true;
      waiting -= queue.length;
      queue.length = 0;
      sockets.delete(socket);
      conn?.close();
    };
  };

  const server = new WebSocketServer({
    hostname: o.bind,
    port: o.port,
    maxMessageBytes: MAX_PAGE_MESSAGE,
    maxHeadBytes: MAX_HEAD,
    headTimeoutMs: HEAD_TIMEOUT_MS,
    maxBodyBytes: maxUpload,
    idleTimeoutMs: PAGE_IDLE_MS,
    log,
    clock: ctx.clock,
    timers: ctx.clock,
    deferHandshakeErrors: true,
    formatError: (e) => json({ error: e.handshake ? `not a WebSocket handshake: ${e.message}` : e.message }, e.status),
    onError: (e) => log.error(`request failed: ${e instanceof Error ? e.message : e}${outOfFilesHint(e)}`),
  }, handler);
  let addr: Deno.NetAddr;
  try {
    addr = server.listen();
  } catch (e) {
    untap();
    await hub.close();
    const why = e instanceof Error ? e.message : String(e);
    throw new Error(
      `cannot listen on ${formatHostPort({ hostname: o.bind, port: o.port })}: ${why}` +
        (e instanceof Deno.errors.AddrInUse ? " (another console runs? set the console's port, or 0 for any)" : ""),
    );
  }
  const host = addr.hostname.includes(":") ? `[${addr.hostname}]` : addr.hostname;
  const address = `http://${host}:${addr.port}/${o.token ? `?token=${encodeURIComponent(o.token)}` : ""}`;
  log.info(`open ${address} in a browser`);
  let closed: Promise<void> | undefined;
  const close = () =>
    closed ??= (async () => {
      untap();
      await hub.close();
      // Pages get 1001 (the server is shutting down); resolves once every connection is closed.
      await server.close();
    })();
  ctx.signal.addEventListener("abort", () => close(), { once: true });
  return {
    address,
    close,
    get sockets() {
      return sockets.size;
    },
    get pages() {
      return hub.clients;
    },
    get waiting() {
      return waiting;
    },
    get handling() {
      return handlingAll;
    },
    get uploads() {
      return uploading;
    },
  };
}

/**
 * The answer refusing a request sent by a page of another origin, or undefined when it may go on. A browser names
 * the page that sends a request in `Origin` (always on a WebSocket and on a POST): only the console's own page,
 * `http://` (or `https://`, behind a TLS proxy) + the request's Host, may. `Origin: null` (a sandboxed frame, a `file:` page, a redirect across origins)
 * names no page that could be the console's, so it is refused too. A request without `Origin` comes from no page
 * (curl, scripts): allowed, since anything that can send it can also send a forged Origin.
 */
function originRefused(req: UpgradeRequest): UpgradeAnswer | undefined {
  const origin = req.headers.get("origin");
  if (origin === null) return undefined;
  let own = false;
  try {
    const page = new URL(origin);
    const host = req.headers.get("host");
    own = (page.protocol === "http:" || page.protocol === "https:") && host !== null && page.origin === origin &&
      page.host === new URL(`http://${host}`).host;
  } catch { /* not a URL (e.g. "null"): refused */ }
  if (own) return undefined;
  const who = origin === "null" ? "a page of origin null (a sandboxed frame, a local file)" : cut(origin);
  return json({ error: `requests from ${who} are refused: open the console itself` }, 403);
}

/** `s` (from the client) for an error text or a log line: {@linkcode excerpt} of 80 characters. */
function cut(s: string): string {
  return excerpt(s, 80);
}

/** {@linkcode cut}, in double quotes. */
function quoted(s: string): string {
  return `"${cut(s)}"`;
}

/** The length of `s` in UTF-8, in bytes (a lone surrogate counts 2, not the 3 of the U+FFFD it is sent as). */
function utf8Length(s: string): number {
  let n = s.length;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0x80) n += c >= 0x800 && (c < 0xd800 || c > 0xdfff) ? 2 : 1;
  }
  return n;
}

/** A JSON answer (not cached). */
function json(body: unknown, status = 200, headers: Record<string, string> = {}): UpgradeAnswer & { body: string } {
  return {
    status,
    body: JSON.stringify(body),
    headers: { "content-type": "application/json; charset=utf-8", "cache-control": "no-store", ...headers },
  };
}
