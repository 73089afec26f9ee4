/**
 * The console service over HTTP on loopback (a fake call service, a
 * VirtualClock): the page and uPlot served locally with a strict content
 * policy, the upload checked like file-source reads it, the WebSocket, and
 * what keeps a loopback service safe (a page of another origin is refused, a
 * non-loopback bind needs a token, the token is checked).
 */
import { assert, assertEquals, assertMatch, assertRejects } from "./assert.ts";
import { VirtualClock } from "../core/clock.ts";
import { Logger, MemoryOutput } from "../core/log.ts";
import { MemoryNetwork } from "../core/net/memory.ts";
import { consoleOptions } from "../plugins/console/mod.ts";
import { AudioLibrary } from "../plugins/console/files.ts";
import { type ConsoleService, hostAllowedBy, isLoopback, startConsole } from "../plugins/console/service.ts";
import { FakeCalls } from "./console_fake_calls.ts";
import { repoPath } from "./util.ts";

async function start(extra: Record<string, unknown> = {}) {
  const clock = new VirtualClock();
  const out = new MemoryOutput();
  const log = new Logger({ level: "info", outputs: [out] });
  const calls = new FakeCalls({ clock, log });
  const dir = await Deno.makeTempDir({ prefix: "voxpipe-console-svc-" });
  const ac = new AbortController();
  const service: ConsoleService = await startConsole(
    consoleOptions.parse({ port: 0, library: repoPath("examples/audio"), uploads: "up", record_dir: "rec", ...extra }),
    {
      log,
      clock,
      signal: ac.signal,
      file: `${dir}/c.json`,
      baseDir: dir,
      params: {},
      calls,
      net: new MemoryNetwork({ clock }),
    },
  );
  const base = service.address!.replace(/\?.*$/, "");
  return {
    base,
    service,
    dir,
    out,
    clock,
    async close() {
      ac.abort();
      await service.close();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

/** Opens the console's WebSocket and returns its first message (hello), then closes it. */
function hello(url: string, headers?: Record<string, string>): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    // Deno's WebSocket takes headers (an Origin, as a browser would send).
    const ws = new WebSocket(url, headers ? { headers } as unknown as string[] : undefined);
    const timer = setTimeout(() => reject(new Error("no hello within 30 s")), 30_000);
    ws.onmessage = (e) => {
      clearTimeout(timer);
      ws.close();
      resolve(JSON.parse(e.data));
    };
    ws.onerror = (e) => {
      clearTimeout(timer);
      reject(new Error((e as ErrorEvent).message ?? "websocket error"));
    };
  });
}

/** Waits for a condition, checked every 10 ms, for at most `ms` (a bound, not a duration the test relies on). */
async function until(cond: () => boolean, what: string, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Opens a WebSocket and resolves once it is open (rejects if it is refused). */
function open(url: string): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    ws.onopen = () => resolve(ws);
    ws.onerror = () => reject(new Error("websocket refused"));
  });
}

/** Closes a WebSocket and resolves once the closing handshake is done. */
function shut(ws: WebSocket): Promise<void> {
  return new Promise((resolve) => {
    ws.onclose = () => resolve();
    ws.close();
  });
}

/** Sends one HTTP/1.1 request over TCP with the given head lines (a Host a fetch cannot forge); returns the status line and body. */
async function raw(base: string, lines: string[]): Promise<{ status: number; body: string }> {
  const u = new URL(base);
  const conn = await Deno.connect({ hostname: u.hostname, port: Number(u.port) });
  try {
    await conn.write(new TextEncoder().encode([...lines, "Connection: close", "", ""].join("\r\n")));
    const chunks: Uint8Array[] = [];
    const buf = new Uint8Array(65536);
    for (;;) {
      const n = await conn.read(buf);
      if (n === null) break;
      chunks.push(buf.slice(0, n));
      const text = new TextDecoder().decode(new Uint8Array(chunks.flatMap((c) => [...c])));
      // A 101 keeps the connection open: the head is all there is to read.
      if (/^HTTP\/1\.1 101/.test(text) && text.includes("\r\n\r\n")) break;
    }
    const text = new TextDecoder().decode(new Uint8Array(chunks.flatMap((c) => [...c])));
    const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(text)?.[1] ?? 0);
    return { status, body: text.slice(text.indexOf("\r\n\r\n") + 4) };
  } finally {
    conn.close();
  }
}

Deno.test("console service: the page, its files and uPlot are served from the process, with a strict content policy", async () => {
  const s = await start();
  try {
    assertMatch(s.base, /^http:\/\/127\.0\.0\.1:\d+\/$/);
    const page = await fetch(s.base);
    assertEquals(page.status, 200);
    assertMatch(page.headers.get("content-type")!, /text\/html/);
    assertMatch(page.headers.get("content-security-policy")!, /default-src 'self'/);
    const html = await page.text();
    assertMatch(html, /<script src="\/vendor\/uplot\.js"><\/script>/);
    assert(!/https?:\/\//.test(html.replace(/http:\/\/www\.w3\.org[^"]*/g, "")), "nothing from another host");
    for (
      const [path, type, text] of [
        ["/console.js", /javascript/, /new WebSocket/],
        ["/audio_worklet.js", /javascript/, /registerProcessor\("pcm-player"/],
        ["/console.css", /css/, /\.charts/],
        ["/vendor/uplot.js", /javascript/, /uPlot/],
        ["/vendor/uplot.css", /css/, /\.uplot/],
      ] as const
    ) {
      const r = await fetch(s.base + path.slice(1));
      assertEquals(r.status, 200, path);
      assertMatch(r.headers.get("content-type")!, type);
      assertMatch(await r.text(), text);
    }
    const missing = await fetch(`${s.base}../../etc/passwd`);
    assertEquals(missing.status, 404);
    await missing.body?.cancel();
    const nope = await fetch(`${s.base}static/index.html`);
    assertEquals(nope.status, 404);
    await nope.body?.cancel();
  } finally {
    await s.close();
  }
});

Deno.test("console service: uploads are checked like file-source reads them; a bad or too large file is refused, saying why", async () => {
  const s = await start({ max_upload_mb: 0.1 });
  try {
    const mp3 = await Deno.readFile(repoPath("examples/audio/hello.mp3"));
    const ok = await fetch(`${s.base}api/upload?name=${encodeURIComponent("my greeting.mp3")}`, {
      method: "POST",
      body: mp3,
    });
    const body = await ok.json();
    assertEquals(ok.status, 200, JSON.stringify(body));
    assertEquals(body.file.file, "upload/my_greeting-" + body.file.file.slice("upload/my_greeting-".length));
    assertEquals(body.file.type, "MP3");
    assert(body.file.seconds > 1 && body.file.seconds < 10, String(body.file.seconds));
    const stored = await Deno.stat(`${s.dir}/up/${body.file.name}`);
    assertEquals(stored.size, mp3.length);

    const bad = await fetch(`${s.base}api/upload?name=notes.wav`, {
      method: "POST",
      body: new TextEncoder().encode("RIFF but not really a wave file, just text"),
    });
    assertEquals(bad.status, 400);
    assertMatch((await bad.json()).error, /^notes\.wav cannot be played: /);
    const text = await fetch(`${s.base}api/upload?name=readme.txt`, { method: "POST", body: "plain text" });
    assertEquals(text.status, 400);
    assertMatch((await text.json()).error, /readme\.txt cannot be played: unrecognized audio format/);
    const listed = await (await fetch(`${s.base}api/files`)).json();
    assertEquals(
      listed.files.filter((f: { source: string }) => f.source === "upload").map((f: { name: string }) => f.name),
      [body.file.name],
      "refused files are deleted",
    );

    const big = await fetch(`${s.base}api/upload?name=big.wav`, { method: "POST", body: new Uint8Array(200_000) });
    assertEquals(big.status, 413);
    assertMatch((await big.json()).error, /larger than the console accepts \(max_upload_mb 0\.1 MB\)/);
    const get = await fetch(`${s.base}api/upload?name=x.wav`);
    assertEquals(get.status, 405);
    await get.body?.cancel();
  } finally {
    await s.close();
  }
});

Deno.test("console service: the WebSocket says hello; a page of another origin is refused", async () => {
  const s = await start();
  try {
    const ws = s.base.replace(/^http/, "ws") + "ws";
    const h = await hello(ws);
    assertEquals(h.type, "hello");
    assertEquals(h.version, 1);
    const host = new URL(s.base).host;
    assertEquals((await hello(ws, { origin: `http://${host}` })).type, "hello");
    const evil = await fetch(`${s.base}ws`, {
      headers: { origin: "http://evil.example", upgrade: "websocket", connection: "Upgrade" },
    });
    assertEquals(evil.status, 403);
    assertMatch((await evil.json()).error, /requests from http:\/\/evil\.example are refused/);
    const upload = await fetch(`${s.base}api/upload?name=a.wav`, {
      method: "POST",
      headers: { origin: "http://evil.example" },
      body: "x",
    });
    assertEquals(upload.status, 403);
    await upload.body?.cancel();
    const plain = await fetch(`${s.base}ws`);
    assertEquals(plain.status, 426);
    await plain.body?.cancel();
  } finally {
    await s.close();
  }
});

Deno.test("console service: Origin null (a sandboxed frame) and any origin but the console's own are refused on the WebSocket and the API", async () => {
  const s = await start();
  try {
    const host = new URL(s.base).host;
    const upgrade = { upgrade: "websocket", connection: "Upgrade" };
    for (
      const origin of [
        "null",
        `http://localhost:${new URL(s.base).port}`,
        `ftp://${host}`,
        `http://${host}.evil.example`,
        `http://${host}/x`,
      ]
    ) {
      const ws = await fetch(`${s.base}ws`, { headers: { origin, ...upgrade } });
      assertEquals(ws.status, 403, `WebSocket from ${origin}`);
      assertMatch((await ws.json()).error, /^requests from .* are refused: open the console itself$/);
      const up = await fetch(`${s.base}api/upload?name=a.mp3`, { method: "POST", headers: { origin }, body: "x" });
      assertEquals(up.status, 403, `upload from ${origin}`);
      await up.body?.cancel();
      const files = await fetch(`${s.base}api/files`, { headers: { origin } });
      assertEquals(files.status, 403, `files from ${origin}`);
      await files.body?.cancel();
      const post = await fetch(s.base, { method: "POST", headers: { origin }, body: "x" });
      assertEquals(post.status, 403, `POST / from ${origin}`);
      await post.body?.cancel();
    }
    const nul = await fetch(`${s.base}ws`, { headers: { origin: "null", ...upgrade } });
    assertMatch((await nul.json()).error, /requests from a page of origin null \(a sandboxed frame/);
    const listed = await fetch(`${s.base}api/files`);
    assertEquals(listed.status, 200, "no Origin: not a browser page, allowed");
    assertEquals(Array.isArray((await listed.json()).files), true);
    assertEquals((await hello(s.base.replace(/^http/, "ws") + "ws", { origin: `http://${host}` })).type, "hello");
    const own = await fetch(`${s.base}api/upload?name=notes.wav`, {
      method: "POST",
      headers: { origin: `http://${host}` },
      body: "not audio",
    });
    assertEquals(own.status, 400, "the console's own page may upload (this file is refused for what it is)");
    await own.body?.cancel();
  } finally {
    await s.close();
  }
});

Deno.test("console service: a Host that is not the console's address (DNS rebinding) is refused, on the WebSocket, the API and the page", async () => {
  const s = await start({ allowed_hosts: "console.example, Other.Example" });
  try {
    const port = new URL(s.base).port;
    const ws = (host: string, origin = `http://${host}`) => [
      "GET /ws HTTP/1.1",
      `Host: ${host}`,
      `Origin: ${origin}`,
      "Upgrade: websocket",
      "Connection: Upgrade",
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
      "Sec-WebSocket-Version: 13",
    ];
    for (const host of [`evil.example:${port}`, `127.0.0.1.evil.example:${port}`, `localhost.:${port}`, "evil/x"]) {
      const r = await raw(s.base, ws(host));
      assertEquals(r.status, 403, `WebSocket with Host ${host}`);
      assertMatch(JSON.parse(r.body).error, /is not an address of this console .*allowed_hosts/);
      for (const path of ["/api/files", "/"]) {
        const g = await raw(s.base, [`GET ${path} HTTP/1.1`, `Host: ${host}`]);
        assertEquals(g.status, 403, `GET ${path} with Host ${host}`);
      }
    }
    assertEquals((await raw(s.base, ["GET /api/files HTTP/1.0"])).status, 403, "no Host at all");
    for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, `127.0.0.2:${port}`, `[::1]:${port}`]) {
      assertEquals((await raw(s.base, ws(host))).status, 101, `WebSocket with Host ${host}`);
    }
    assertEquals((await raw(s.base, ws(`console.example:${port}`))).status, 101, "a name of allowed_hosts");
    assertEquals((await raw(s.base, ws("other.example"))).status, 101, "names compare without case");
    assertEquals((await raw(s.base, ["GET /api/files HTTP/1.1", `Host: localhost:${port}`])).status, 200);
  } finally {
    await s.close();
  }
  const loop = hostAllowedBy("127.0.0.1", []);
  assert(loop("127.0.0.1:8090") && loop("localhost") && loop("[::1]:8090") && loop("127.9.9.9"));
  assert(!loop("192.0.2.1:8090") && !loop("127.0.0.1.nip.io") && !loop("::1") && !loop("") && !loop(null));
  const lan = hostAllowedBy("192.0.2.7", ["pbx.lan"]);
  assert(lan("192.0.2.7:8090") && lan("pbx.lan:8090") && lan("PBX.LAN"));
  assert(!lan("127.0.0.1:8090") && !lan("localhost") && !lan("192.0.2.8") && !lan("evil.example"));
  const any = hostAllowedBy("0.0.0.0", []);
  assert(any("192.0.2.7:8090") && any("[2001:db8::1]:8090") && any("localhost:8090") && any("127.0.0.1"));
  assert(!any("evil.example:8090") && !any("pbx.lan"));
});

/**
 * Holds the console's file listings (the hub reads one for each page's hello, and for a "files" request): the n-th
 * listing (from 1) waits for `wait(n)` first. `restore()` puts the plain listing back.
 */
function holdListings(wait: (n: number) => Promise<void>): { calls: () => number; restore: () => void } {
  const list = AudioLibrary.prototype.list;
  let n = 0;
  AudioLibrary.prototype.list = async function (this: AudioLibrary) {
    await wait(++n);
    return await list.call(this);
  };
  return { calls: () => n, restore: () => void (AudioLibrary.prototype.list = list) };
}

Deno.test("console service: a page that leaves while the hub prepares its hello is forgotten", async () => {
  const s = await start();
  const gate = Promise.withResolvers<void>();
  // The hub reads the file list for the hello: hold it until the page has left.
  const held = holdListings(() => gate.promise);
  try {
    const url = s.base.replace(/^http/, "ws") + "ws";
    const pages = [];
    for (let i = 0; i < 5; i++) pages.push(await open(url));
    await until(() => s.service.pages === 5, "the hub to add the pages");
    for (const ws of pages) await shut(ws);
    await until(() => s.service.sockets === 0, "the service to see the pages leave");
    gate.resolve();
    held.restore();
    await until(() => s.service.pages === 0, `the hub to forget the pages (it serves ${s.service.pages})`);
    assertEquals((await hello(url)).type, "hello", "a page after them is served");
  } finally {
    gate.resolve();
    held.restore();
    await s.close();
  }
});

Deno.test("console service: what a page sends before its hello is ready is bounded: beyond 64 messages or 256 KiB it is closed (1008, saying why); within them, answered after the hello", async () => {
  const s = await start();
  const gate = Promise.withResolvers<void>();
  // The hub reads the file list for the hello: hold it while the pages send.
  const held = holdListings(() => gate.promise);
  /** Resolves with the close code and reason of `ws`, or rejects after 10 s (a bound: the close comes at once). */
  const closed = (ws: WebSocket) =>
    new Promise<{ code: number; reason: string }>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error("the page was not closed within 10 s")), 10_000);
      ws.onclose = (e) => {
        clearTimeout(timer);
        resolve({ code: e.code, reason: e.reason });
      };
    });
  const pages: WebSocket[] = [];
  try {
    const url = s.base.replace(/^http/, "ws") + "ws";
    // 1. Many small messages.
    const many = await open(url);
    pages.push(many);
    await until(() => s.service.pages === 1, "the hub to add the page");
    const manyClosed = closed(many);
    for (let i = 0; i < 65; i++) many.send(JSON.stringify({ op: "nope", req: i }));
    const a = await manyClosed;
    assertEquals(a.code, 1008);
    assertMatch(a.reason, /more than 64 messages or 262144 bytes sent before the hello/);
    // 2. A few large ones.
    const big = await open(url);
    pages.push(big);
    const bigClosed = closed(big);
    const filler = "x".repeat(100 * 1024);
    for (let i = 0; i < 3; i++) big.send(JSON.stringify({ op: "nope", req: i, filler }));
    assertEquals((await bigClosed).code, 1008);
    // 3. Within the bounds: queued, then answered in order once the hello is out.
    const fine = await open(url);
    pages.push(fine);
    const got: Record<string, unknown>[] = [];
    fine.onmessage = (e) => void got.push(JSON.parse(e.data));
    for (let i = 0; i < 3; i++) fine.send(JSON.stringify({ op: "nope", req: i }));
    await until(() => s.service.sockets === 1, "the closed pages to leave");
    // Only these three wait: the closed pages' queues went with them.
    await until(() => s.service.waiting === 3, `the three requests to wait for the hello (${s.service.waiting} wait)`);
    gate.resolve();
    held.restore();
    await until(() => got.filter((m) => m.type === "reply").length === 3, "the replies to the queued messages");
    assertEquals(got[0].type, "hello");
    assertEquals(got.filter((m) => m.type === "reply").map((m) => [m.req, m.ok]), [[0, false], [1, false], [2, false]]);
    assert(s.out.lines.some((l) => /a page sent 65 messages .* before its hello was ready/.test(l)), "logged");
    await until(() => s.service.pages === 1, `the hub to forget the closed pages (it serves ${s.service.pages})`);
  } finally {
    gate.resolve();
    held.restore();
    for (const ws of pages) if (ws.readyState !== WebSocket.CLOSED) await shut(ws);
    await s.close();
  }
});

Deno.test("console service: a message sent while those queued before the hello are handled waits behind them: replies in the order sent", async () => {
  const s = await start();
  const helloGate = Promise.withResolvers<void>();
  const filesGate = Promise.withResolvers<void>();
  // The first listing is the hello's, held until the page has queued a request; the next is that request's ("files"),
  // held while the page sends another.
  const held = holdListings((n) => n === 1 ? helloGate.promise : filesGate.promise);
  let page: WebSocket | undefined;
  try {
    page = await open(s.base.replace(/^http/, "ws") + "ws");
    const got: Record<string, unknown>[] = [];
    page.onmessage = (e) => void got.push(JSON.parse(e.data));
    await until(() => s.service.pages === 1, "the hub to add the page");
    page.send(JSON.stringify({ op: "files", req: 0 }));
    await until(() => s.service.waiting === 1, "the request to wait for the hello");
    helloGate.resolve();
    await until(() => got.some((m) => m.type === "hello") && held.calls() === 2, "the hello, then the queued request");
    page.send(JSON.stringify({ op: "nope", req: 1 }));
    // Give the second message time to be handled out of turn, were it (the order below holds however long this is).
    const deadline = Date.now() + 500;
    await until(() => got.some((m) => m.req === 1) || Date.now() > deadline, "the second request or 500 ms");
    filesGate.resolve();
    await until(() => got.filter((m) => m.type === "reply").length === 2, "both replies");
    assertEquals(got.filter((m) => m.type === "reply").map((m) => m.req), [0, 1]);
    assertEquals(s.service.waiting, 0);
  } finally {
    helloGate.resolve();
    filesGate.resolve();
    held.restore();
    if (page && page.readyState !== WebSocket.CLOSED) await shut(page);
    await s.close();
  }
});

Deno.test("console service: beyond max_clients a page gets 503 before the upgrade; a page that leaves frees its place", async () => {
  const s = await start({ max_clients: 2 });
  try {
    const url = s.base.replace(/^http/, "ws") + "ws";
    const a = await open(url), b = await open(url);
    const full = await fetch(`${s.base}ws`, {
      headers: { upgrade: "websocket", connection: "Upgrade", "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==" },
    });
    assertEquals(full.status, 503);
    assertMatch((await full.json()).error, /serves 2 pages at most \(max_clients\)/);
    await assertRejects(() => open(url), Error);
    await shut(a);
    await until(() => s.service.sockets === 1, "the service to see a page leave");
    assertEquals((await hello(url)).type, "hello");
    await shut(b);
  } finally {
    await s.close();
  }
});

Deno.test("console service: a non-loopback bind needs a token; a token is checked", async () => {
  assert(isLoopback("127.0.0.1") && isLoopback("::1") && isLoopback("localhost") && isLoopback("127.1.2.3"));
  assert(!isLoopback("0.0.0.0") && !isLoopback("192.0.2.1") && !isLoopback("::") && !isLoopback("127.0.0.1.nip.io"));
  const e = await assertRejects(() => start({ bind: "0.0.0.0" }), Error);
  assertMatch((e as Error).message, /bind 0\.0\.0\.0 lets anyone who reaches it place and hear calls: set a token/);
  const s = await start({ token: "s3cret" });
  try {
    assertMatch(s.service.address!, /\?token=s3cret$/);
    const page = await fetch(s.base);
    assertEquals(page.status, 200, "the page itself is public code");
    await page.body?.cancel();
    const denied = await fetch(`${s.base}api/files`);
    assertEquals(denied.status, 401);
    assertMatch((await denied.json()).error, /missing or wrong token/);
    const files = await fetch(`${s.base}api/files?token=s3cret`);
    assertEquals(files.status, 200);
    await files.body?.cancel();
    const ws = s.base.replace(/^http/, "ws") + "ws";
    await assertRejects(() => hello(ws), Error);
    assertEquals((await hello(`${ws}?token=s3cret`)).type, "hello");
  } finally {
    await s.close();
  }
});

Deno.test("console service: an address that gives 3 wrong tokens in 60 s is refused (403) for 60 s, right token or not", async () => {
  const s = await start({
    token: "s3cret",
    auth_max_failures: 3,
    auth_failure_window: 60,
    auth_block_time: 60,
    auth_limit_loopback: true,
  });
  const status = async (query: string) => {
    const r = await fetch(`${s.base}api/files${query}`);
    await r.body?.cancel();
    return r.status;
  };
  try {
    // No token is not a guess; three wrong ones are, the third starts the block.
    assertEquals([await status(""), await status("")], [401, 401]);
    assertEquals([await status("?token=a"), await status("?token=b"), await status("?token=c")], [401, 401, 401]);
    assertEquals(s.out.lines.filter((l) => l.includes("its requests are refused (403) for 60 s")).length, 1);
    // Now the right token is refused too, the WebSocket as well, until the 60 s have passed (the service's clock).
    const blocked = await fetch(`${s.base}api/files?token=s3cret`);
    assertEquals(blocked.status, 403);
    assertMatch((await blocked.json()).error, /too many wrong tokens from this address: retry in 60 s/);
    await assertRejects(() => hello(`${s.base.replace(/^http/, "ws")}ws?token=s3cret`), Error);
    s.clock.advance(60_000);
    assertEquals(await status("?token=s3cret"), 200);
  } finally {
    await s.close();
  }
  // By default a loopback address is never refused (a local page with an old token cannot lock out the others).
  const d = await start({ token: "s3cret", auth_max_failures: 3 });
  try {
    for (let k = 0; k < 5; k++) {
      const r = await fetch(`${d.base}api/files?token=guess-${k}`);
      await r.body?.cancel();
      assertEquals(r.status, 401);
    }
    const r = await fetch(`${d.base}api/files?token=s3cret`);
    await r.body?.cancel();
    assertEquals(r.status, 200);
  } finally {
    await d.close();
  }
});

Deno.test("console service: a port in use is a clear error", async () => {
  const s = await start();
  try {
    const port = Number(new URL(s.base).port);
    const e = await assertRejects(() => start({ port }), Error);
    assertMatch(
      (e as Error).message,
      new RegExp(`cannot listen on 127\\.0\\.0\\.1:${port}: .*another console runs\\?`),
    );
  } finally {
    await s.close();
  }
});

/** Sends `head` and the first `sent` bytes of a body that announces `length`, half-closes, reads the answer. */
async function cutUpload(base: string, head: string[], length: number, sent: number) {
  const u = new URL(base);
  const conn = await Deno.connect({ hostname: u.hostname, port: Number(u.port) });
  try {
    const h = new TextEncoder().encode([...head, `Content-Length: ${length}`, "", ""].join("\r\n"));
    await conn.write(Uint8Array.from([...h, ...new Uint8Array(sent).fill(0x52)]));
    await conn.closeWrite();
    let text = "";
    const buf = new Uint8Array(65536);
    for (let n = await conn.read(buf); n !== null; n = await conn.read(buf)) {
      text += new TextDecoder().decode(buf.subarray(0, n));
    }
    return {
      status: Number(/^HTTP\/1\.[01] (\d{3})/.exec(text)?.[1] ?? 0),
      body: text.slice(text.indexOf("\r\n\r\n") + 4),
    };
  } finally {
    conn.close();
  }
}

Deno.test("console service: what the fuzzer found: a refused WebSocket handshake, a cut upload, a long Host or name get a 4xx with a short error, not 500", async () => {
  const s = await start();
  try {
    const port = new URL(s.base).port;
    const host = `Host: 127.0.0.1:${port}`;
    // Upgrade: websocket with a Connection that does not say Upgrade: Deno refuses the handshake (it threw: 500).
    const ws = await raw(s.base, [
      "GET /ws HTTP/1.1",
      host,
      "Upgrade: websocket",
      "Connection: Uporade",
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
      "Sec-WebSocket-Version: 13",
    ]);
    assertEquals(ws.status, 400);
    assertMatch(JSON.parse(ws.body).error, /^not a WebSocket handshake: .*Upgrade/);
    // A body cut off by the client (it closed its side): the body read failed and escaped (500).
    const cut = await cutUpload(s.base, ["POST /api/upload?name=greeting.wav HTTP/1.1", host], 2044, 100);
    assertEquals(cut.status, 400);
    assertMatch(
      JSON.parse(cut.body).error,
      /^greeting\.wav: the upload was cut off after \d+ bytes \(.*\): send it again$/,
    );
    assertEquals([...Deno.readDirSync(s.dir)].filter((e) => e.name === "up").length, 0, "nothing stored");
    // A Host of 3 000 characters was quoted whole in the 403's error.
    const longHost = await raw(s.base, ["GET /api/files HTTP/1.1", `Host: 127.0.0.0${".0".repeat(1500)}`]);
    assertEquals(longHost.status, 403);
    const error = JSON.parse(longHost.body).error as string;
    assertMatch(error, /^Host "127(\.0)+\.?\.\.\." is not an address of this console/);
    assert(error.length < 400, `an error of ${error.length} characters`);
    // An upload name of 20 000 characters was quoted whole in the upload's errors.
    const name = "n".repeat(20_000);
    const longName = await raw(s.base, [`POST /api/upload?name=${name}.wav HTTP/1.1`, host, "Content-Length: 0"]);
    assertEquals(longName.status, 400);
    assertMatch(JSON.parse(longName.body).error, /^upload: the file name "n{80}\.\.\." is longer than 255 characters$/);
    const lines = s.out.lines.filter((l) => / ERROR /.test(l));
    assertEquals(lines, [], "no request failed");
  } finally {
    await s.close();
  }
});

/** A raw TCP connection to the console, and whether (and at what virtual time) the server closed it. */
async function rawConn(s: Awaited<ReturnType<typeof start>>) {
  const u = new URL(s.base);
  const conn = await Deno.connect({ hostname: u.hostname, port: Number(u.port) });
  const got: Uint8Array[] = [];
  const state = { closedAt: undefined as number | undefined, text: () => new TextDecoder().decode(concat(got)) };
  (async () => {
    const buf = new Uint8Array(65536);
    try {
      for (let n = await conn.read(buf); n !== null; n = await conn.read(buf)) got.push(buf.slice(0, n));
    } catch { /* reset */ }
    state.closedAt = s.clock.now();
  })();
  return {
    conn,
    state,
    write: (t: string | Uint8Array) => conn.write(typeof t === "string" ? new TextEncoder().encode(t) : t),
  };
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

/** Advances the console's virtual clock by `step` ms at a time (letting the server run between) until `done`. */
async function advanceUntil(s: Awaited<ReturnType<typeof start>>, done: () => boolean, what: string, maxMs: number) {
  const end = s.clock.now() + maxMs;
  while (!done() && s.clock.now() < end) {
    await s.clock.advanceAsync(250);
    await new Promise((r) => setTimeout(r, 5));
  }
  // The last timer ran: its close reaches the client in real time.
  await until(done, what, 10_000);
}

Deno.test("console service: a connection that sends half a request head, or nothing, is closed unanswered once its 5 s for the head are out", async () => {
  const s = await start();
  try {
    const t0 = s.clock.now();
    const half = await rawConn(s);
    await half.write(`GET / HTTP/1.1\r\nHost: ${new URL(s.base).host}\r\n`);
    const idle = await rawConn(s);
    // Not closed while its time runs (4 s of the console's clock; the server gets real time to act meanwhile).
    await s.clock.advanceAsync(4000);
    await new Promise((r) => setTimeout(r, 50));
    assertEquals([half.state.closedAt, idle.state.closedAt], [undefined, undefined], "open within the 5 s");
    await advanceUntil(
      s,
      () => half.state.closedAt !== undefined && idle.state.closedAt !== undefined,
      "both closed",
      10_000,
    );
    assert(half.state.closedAt! >= t0 + 5000 && idle.state.closedAt! >= t0 + 5000, "not before the 5 s");
    assertEquals([half.state.text(), idle.state.text()], ["", ""], "no answer");
    half.conn.close();
    idle.conn.close();
    // The console serves on.
    const page = await fetch(s.base);
    assertEquals(page.status, 200);
    await page.body?.cancel();
  } finally {
    await s.close();
  }
});

Deno.test("console service: an upload whose body stops coming is closed after 10 s plus 1 s per 64 KiB; a chunked one gets 411 saying to send a Content-Length", async () => {
  const s = await start();
  try {
    const host = `Host: ${new URL(s.base).host}`;
    const t0 = s.clock.now();
    const slow = await rawConn(s);
    await slow.write(`POST /api/upload?name=slow.wav HTTP/1.1\r\n${host}\r\nContent-Length: 65536\r\n\r\nRIFF`);
    await advanceUntil(s, () => slow.state.closedAt !== undefined, "the slow upload closed", 20_000);
    assert(slow.state.closedAt! >= t0 + 11_000, "not before its 11 s");
    slow.conn.close();
    assert(
      s.out.lines.some((l) => /upload "slow\.wav" cut off after 4 bytes: 4 of 65536 bytes came within 11 s/.test(l)),
    );
    assertEquals([...Deno.readDirSync(s.dir)].filter((e) => e.name === "up").length, 0, "nothing stored");

    const chunked = await raw(s.base, [
      "POST /api/upload?name=c.wav HTTP/1.1",
      host,
      "Transfer-Encoding: chunked",
      "",
      "4",
      "RIFF",
      "0",
    ]);
    assertEquals(chunked.status, 411);
    assertMatch(JSON.parse(chunked.body).error, /^c\.wav: send the file with a Content-Length/);
    const bad = await raw(s.base, ["POST /api/upload?name=c.wav HTTP/1.1", host, "Content-Length: -1"]);
    assertEquals(bad.status, 400);
    assertMatch(JSON.parse(bad.body).error, /^c\.wav: Content-Length "-1" is not a number of bytes$/);
  } finally {
    await s.close();
  }
});

Deno.test("console service: an upload that asks for 100-continue gets it before sending its body (as curl does above 1 MB), then its answer; one that does not, none", async () => {
  const s = await start();
  try {
    const host = `Host: ${new URL(s.base).host}`;
    const c = await rawConn(s);
    await c.write(
      `POST /api/upload?name=ask.wav HTTP/1.1\r\n${host}\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n`,
    );
    await until(() => c.state.text().includes("\r\n\r\n"), "the interim answer");
    assertEquals(c.state.text(), "HTTP/1.1 100 Continue\r\n\r\n", "100 Continue, and nothing else before the body");
    await c.write("RIFF");
    await until(() => /\r\n\r\nHTTP\/1\.1 400 [^]*\r\n\r\n\{/.test(c.state.text()), "the final answer");
    assertMatch(c.state.text(), /"error":"ask\.wav cannot be played: not a WAV file/);
    c.conn.close();
    // Without the expectation no interim answer. (With it and the body in the same write, none either when the
    // server reads both at once, which is not for a test to rely on: there the final answer is what is checked.)
    for (const extra of [[], ["Expect: 100-continue"]]) {
      const r = await rawConn(s);
      await r.write(
        [`POST /api/upload?name=plain.wav HTTP/1.1`, host, ...extra, "Content-Length: 4", "", "RIFF"].join("\r\n"),
      );
      await until(() => r.state.closedAt !== undefined, "the answer");
      assertMatch(
        r.state.text(),
        extra.length ? /^(HTTP\/1\.1 100 Continue\r\n\r\n)?HTTP\/1\.1 400 / : /^HTTP\/1\.1 400 /,
      );
      r.conn.close();
    }
  } finally {
    await s.close();
  }
});

Deno.test("console service: two uploads are received at once at most (each held in memory): a third gets 503 before its body is read; once one ends, uploads are taken again", async () => {
  const s = await start();
  try {
    const host = `Host: ${new URL(s.base).host}`;
    const slow = [await rawConn(s), await rawConn(s)];
    for (const [i, c] of slow.entries()) {
      await c.write(`POST /api/upload?name=slow${i}.wav HTTP/1.1\r\n${host}\r\nContent-Length: 65536\r\n\r\nRIFF`);
    }
    await until(() => s.service.uploads === 2, "both uploads under way");
    const third = await raw(s.base, [
      "POST /api/upload?name=third.wav HTTP/1.1",
      host,
      "Content-Length: 4",
      "",
      "RIFF",
    ]);
    assertEquals(third.status, 503);
    assertEquals(
      JSON.parse(third.body).error,
      "third.wav: 2 uploads are under way (the most at once): send this one when one of them ends",
    );
    // The first gives up: its upload is cut off, and the next one is received (and checked: not a WAV).
    slow[0].conn.close();
    await until(() => s.service.uploads === 1, "the first upload to end");
    const next = await raw(s.base, ["POST /api/upload?name=next.wav HTTP/1.1", host, "Content-Length: 4", "", "RIFF"]);
    assertEquals(next.status, 400);
    assertMatch(JSON.parse(next.body).error, /next\.wav/);
    slow[1].conn.close();
    await until(() => s.service.uploads === 0, "no upload left");
  } finally {
    await s.close();
  }
});

Deno.test("console service: a page's message longer than 128 KiB closes its WebSocket with 1009; the console serves on", async () => {
  const s = await start();
  try {
    const url = s.base.replace(/^http/, "ws") + "ws";
    const ws = new WebSocket(url);
    const greeted = Promise.withResolvers<void>();
    const closed = Promise.withResolvers<{ code: number; reason: string }>();
    ws.onmessage = (e) => JSON.parse(e.data).type === "hello" && greeted.resolve();
    ws.onclose = (e) => closed.resolve({ code: e.code, reason: e.reason });
    const timer = setTimeout(() => closed.reject(new Error("not closed within 20 s")), 20_000);
    try {
      await greeted.promise;
      ws.send(JSON.stringify({ op: "nope", req: 1, filler: "x".repeat(200 * 1024) }));
      const c = await closed.promise;
      assertEquals(c.code, 1009);
      assertMatch(c.reason, /message longer than 131072 bytes/);
    } finally {
      clearTimeout(timer);
    }
    await until(() => s.service.sockets === 0 && s.service.pages === 0, "the page to be forgotten");
    assertEquals((await hello(url)).type, "hello");
  } finally {
    await s.close();
  }
});

Deno.test("console service: a page that answers nothing (not even the server's ping) for 60 s is closed", async () => {
  const s = await start();
  try {
    const c = await rawConn(s);
    await c.write(
      [
        "GET /ws HTTP/1.1",
        `Host: ${new URL(s.base).host}`,
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version: 13",
        "",
        "",
      ].join("\r\n"),
    );
    await until(() => s.service.pages === 1 && c.state.text().includes("\r\n\r\n"), "the page's upgrade");
    assertMatch(c.state.text(), /^HTTP\/1\.1 101 /);
    const t0 = s.clock.now();
    await advanceUntil(s, () => c.state.closedAt !== undefined, "the silent page closed", 120_000);
    assert(c.state.closedAt! >= t0 + 60_000, "not before its 60 s");
    await until(() => s.service.sockets === 0 && s.service.pages === 0, "the page to be forgotten");
    c.conn.close();
  } finally {
    await s.close();
  }
});

Deno.test("console service: HEAD of a file gives its length and type without the body; every answer closes its connection", async () => {
  const s = await start();
  try {
    const host = `Host: ${new URL(s.base).host}`;
    const get = await raw(s.base, ["GET /vendor/uplot.js HTTP/1.1", host]);
    const head = await raw(s.base, ["HEAD /vendor/uplot.js HTTP/1.1", host]);
    assertEquals([get.status, head.status], [200, 200]);
    assertEquals(head.body, "");
    const expected = await Deno.readFile(repoPath("node_modules/uplot/dist/uPlot.iife.min.js")).catch(() => undefined);
    if (expected) assertEquals(new TextEncoder().encode(get.body).length, expected.length);
    // One request per connection: the server closes after its answer, whatever the client asked.
    const c = await rawConn(s);
    await c.write(`GET /console.css HTTP/1.1\r\n${host}\r\nConnection: keep-alive\r\n\r\n`);
    await until(() => c.state.closedAt !== undefined, "the connection closed after the answer");
    assertMatch(c.state.text(), /^HTTP\/1\.1 200 OK\r\n(.*\r\n)*content-type: text\/css; charset=utf-8\r\n/i);
    assertMatch(c.state.text(), /\r\nconnection: close\r\n/);
    c.conn.close();
  } finally {
    await s.close();
  }
});

Deno.test("console service: a HEAD gets no body from any refusal (a HEAD asking for the WebSocket included); a request pipelined after another, or bytes beyond a Content-Length, are dropped", async () => {
  const s = await start();
  const conns: Deno.Conn[] = []; // closed at the end whatever happens (the server waits for them)
  try {
    const host = `Host: ${new URL(s.base).host}`;
    const upgrade = ["Upgrade: websocket", "Connection: Upgrade", `Sec-WebSocket-Key: ${"A".repeat(22)}==`];
    // Found reviewing: the server's refusal of the handshake (the console defers it to check the Host, the Origin and
    // the token first) was written with its body to a HEAD, whose answer has none (RFC 9110 §9.3.2).
    const head = await rawConn(s);
    conns.push(head.conn);
    await head.write([`HEAD /ws HTTP/1.1`, host, ...upgrade, "Sec-WebSocket-Version: 13", "", ""].join("\r\n"));
    await until(() => head.state.closedAt !== undefined, "the answer to the HEAD");
    const text = head.state.text();
    assertMatch(text, /^HTTP\/1\.1 400 [^]*\r\ncontent-length: \d+\r\n/i);
    assertEquals(text.slice(text.indexOf("\r\n\r\n") + 4), "", "no body after the head");
    head.conn.close();
    // A HEAD is answered as the GET it stands for: the file list's length, no body (was 404 "no API /api/files").
    const [files, filesHead] = [
      await raw(s.base, ["GET /api/files HTTP/1.1", host]),
      await raw(s.base, ["HEAD /api/files HTTP/1.1", host]),
    ];
    assertEquals([files.status, filesHead.status, filesHead.body], [200, 200, ""]);
    const get = await raw(s.base, [`GET /ws HTTP/1.1`, host, ...upgrade, "Sec-WebSocket-Version: 8"]);
    assertEquals(get.status, 426); // a refusal to a GET has its text
    assertEquals(JSON.parse(get.body).error, "not a WebSocket handshake: Sec-WebSocket-Version 13 only");
    // One request per connection: a second one in the same bytes is never answered, a body longer than its
    // Content-Length is cut at it (the rest dropped, not read as a request).
    const piped = await rawConn(s);
    conns.push(piped.conn);
    await piped.write(
      `POST /api/upload?name=p.wav HTTP/1.1\r\n${host}\r\nContent-Length: 4\r\n\r\nRIFFGET / HTTP/1.1\r\n${host}\r\n\r\n` +
        `GET /app.js HTTP/1.1\r\n${host}\r\n\r\n`,
    );
    await until(() => piped.state.closedAt !== undefined, "the answer to the upload");
    piped.conn.close();
    const answers = piped.state.text().match(/HTTP\/1\.1 \d{3}/g);
    assertEquals(answers, ["HTTP/1.1 400"]); // the upload's 4 bytes are no WAV file: refused, saying why
    assertMatch(piped.state.text(), /\r\n\r\n\{"error":"[^"]*p\.wav/);
    assertEquals(s.service.uploads, 0);
    assertEquals(s.out.lines.filter((l) => / ERROR /.test(l)), [], "no request failed");
  } finally {
    for (const c of conns) {
      try {
        c.close();
      } catch { /* closed */ }
    }
    await s.close();
  }
});

/** A page's masked text frame (as a browser sends it). */
function pageFrame(text: string): Uint8Array {
  const p = new TextEncoder().encode(text);
  const h = p.length < 126 ? 2 : 4;
  const out = new Uint8Array(h + 4 + p.length);
  out[0] = 0x81;
  if (h === 2) out[1] = 0x80 | p.length;
  else out.set([0x80 | 126, p.length >> 8, p.length & 0xff], 1);
  const mask = [0x11, 0x22, 0x33, 0x44];
  out.set(mask, h);
  for (let i = 0; i < p.length; i++) out[h + 4 + i] = p[i] ^ mask[i & 3];
  return out;
}

/** Opens the page's WebSocket over raw TCP (a client that reads nothing unless told); resolves once the hub has it. */
async function rawPage(s: Awaited<ReturnType<typeof start>>, pages: number) {
  const u = new URL(s.base);
  const conn = await Deno.connect({ hostname: u.hostname, port: Number(u.port) });
  const write = async (b: Uint8Array) => {
    for (let at = 0; at < b.length;) at += await conn.write(b.subarray(at));
  };
  await write(new TextEncoder().encode(
    [
      "GET /ws HTTP/1.1",
      `Host: ${u.host}`,
      "Upgrade: websocket",
      "Connection: Upgrade",
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
      "Sec-WebSocket-Version: 13",
      "",
      "",
    ].join("\r\n"),
  ));
  await until(() => s.service.pages === pages, "the hub to add the page");
  return { conn, write };
}

Deno.test("console service: a page's requests are handled 8 at once; more than 64 waiting behind them close it (1008): a burst of requests holds no descriptor each", async () => {
  // Found reviewing: every message went to the hub at once, each `files` request holding a directory open while it
  // was read: 20 000 of them (400 KB) held 17 000 descriptors at once, 200 000 ran the process out of them.
  const s = await start();
  const gate = Promise.withResolvers<void>();
  const held = holdListings((n) => n === 1 ? Promise.resolve() : gate.promise); // the hello's listing goes through
  let page: Awaited<ReturnType<typeof rawPage>> | undefined;
  try {
    page = await rawPage(s, 1);
    await until(() => held.calls() === 1, "the hello's file list");
    const files = pageFrame(JSON.stringify({ op: "files" }));
    for (let i = 0; i < 20; i++) await page.write(files);
    await until(() => s.service.waiting === 12, `12 requests to wait (${s.service.waiting} wait)`);
    assertEquals([held.calls() - 1, s.service.handling], [8, 8], "8 listings under way, not 20");
    for (let i = 0; i < 53; i++) await page.write(files); // 8 handled, 65 waiting: one too many
    await until(() => s.service.waiting === 0 && s.out.lines.some((l) => /while 8 of its requests/.test(l)), "closed");
    assertEquals(held.calls() - 1, 8, "no other listing was started");
    assertMatch(
      s.out.lines.find((l) => /a page sent/.test(l))!,
      /a page sent 65 messages \(\d+ bytes\) while 8 of its requests were handled, more than 64 messages/,
    );
  } finally {
    gate.resolve();
    held.restore();
    page?.conn.close();
    await s.close();
  }
});

Deno.test("console service: a page that reads none of its replies is closed once 4 MiB wait for it", async () => {
  // Found reviewing: the replies to a page that never reads were queued without bound (its requests kept coming).
  const s = await start({ library: "lib" });
  const listings = holdListings(() => Promise.resolve()); // counts them
  let page: Awaited<ReturnType<typeof rawPage>> | undefined;
  try {
    // 200 files with long names: a `files` reply of about 60 KB.
    await Deno.mkdir(`${s.dir}/lib`);
    for (let i = 0; i < 200; i++) await Deno.writeFile(`${s.dir}/lib/${"n".repeat(200)}-${i}.wav`, new Uint8Array(0));
    page = await rawPage(s, 1);
    const files = pageFrame(JSON.stringify({ op: "files" }));
    const warned = () => s.out.lines.some((l) => /a page reads nothing of what it asked/.test(l));
    // 8 at a time, each batch answered before the next: up to 1000 replies (60 MB) if it is never closed.
    for (let sent = 0; sent < 1000 && !warned(); sent += 8) {
      for (let i = 0; i < 8; i++) await page.write(files);
      const answered = () => listings.calls() === 1 + sent + 8 && s.service.handling === 0;
      await until(() => answered() || warned(), "the batch answered");
    }
    assert(warned(), "closed for the replies waiting");
    // The close frame waits behind what the page does not read: its TCP connection is closed after the close timeout.
    await advanceUntil(s, () => s.service.sockets === 0, "the page's connection closed", 10_000);
    assertEquals(s.service.pages, 0);
  } finally {
    listings.restore();
    page?.conn.close();
    await s.close();
  }
});
