/**
 * The servers of voxpipe near the process's file-descriptor limit, for real: the CLI runs a shipped pipeline under
 * `prlimit --nofile=N:N` (a few dozen descriptors above what it needs at start), the test floods its TCP port over
 * loopback with more connections than the limit allows, and checks that the process lives on and says why it refuses:
 *
 * - the media relay (`pipelines/relay.json`): every connection gets an answer (`OK`, or `BUSY` once fewer than 64
 *   descriptors would be left), none waits in the backlog unanswered; a client registered before keeps its
 *   heartbeat; once the flood goes, new clients register again. Before, the relay accepted until `EMFILE`, then
 *   retried its accept at once in a loop at 100 % of a core, the connections left in the backlog with no answer.
 * - the WebSocket bridge (`pipelines/server.json`): every connection gets an answer (`101`, or `503`), a client
 *   connected before still gets its `PONG`. Before, connections beyond the limit waited unanswered.
 * - the console (`pipelines/console.json`, on the same server as the bridge): a flood of idle connections gets
 *   `503` (once fewer than 64 descriptors would be left) or is closed when its 5 s for a request head are out, none
 *   is left waiting; the listener never closes; the page connected before stays connected, and a request after the
 *   flood is served. Before (`Deno.serve`), the idle connections were held with no time limit until the process had
 *   no descriptor left, `Deno.serve`'s accept loop then ended and the service restarted it after 1 s (doubling to
 *   30 s), its port refusing connections meanwhile.
 *
 * Each wait is for an event (a log line, a reply, a socket closing), bounded only as a hang guard; nothing asserts a
 * duration. Linux only (`prlimit`, `/proc`).
 *
 * @module
 */
import { assert, assertEquals, assertMatch } from "./assert.ts";
import { type BoundedProcess, spawnBounded } from "./media_util.ts";
import { repoPath } from "./util.ts";

/** What an error at EMFILE says to do. */
const ADVICE = "(the process is out of file descriptors: raise the limit (ulimit -n))";

const opts = { ignore: Deno.build.os !== "linux", sanitizeResources: false, sanitizeOps: false };

/** Descriptors the child may open: enough to start (about 30) and some connections, far fewer than the flood. */
const LIMIT = 130;
/** Connections in each flood: more than the limit. */
const FLOOD = LIMIT + 20;
/** Hang guard for one answer (the fixed servers answer in ms; an unanswered connection waits forever). */
const ANSWER_MS = 15_000;

/** The CLI on `pipeline` with `--set`s, under a descriptor limit of `limit`. */
function startCli(pipeline: string, sets: string[], env: Record<string, string> = {}, limit = LIMIT): BoundedProcess {
  const args = [`--nofile=${limit}:${limit}`, Deno.execPath(), "run", "-A", repoPath("mod.ts")];
  args.push("--pipeline", repoPath(`pipelines/${pipeline}`));
  for (const s of sets) args.push("--set", s);
  return spawnBounded("prlimit", args, { timeoutMs: 120_000, cwd: repoPath("."), env });
}

/** The port the child printed (first group of `re`). */
async function portOf(p: BoundedProcess, re: RegExp): Promise<number> {
  await p.waitForOutput(re, 60_000);
  return Number(re.exec(p.output())![1]);
}

/** Lines of a connection, read as they come. */
class Lines {
  #buf = "";
  #ended = false;
  constructor(readonly conn: Deno.Conn) {}

  /**
   * The next line not matching `skip`: `<closed>` when the connection ended (or failed) first, `<none>` when nothing
   * came in {@linkcode ANSWER_MS} (a hang guard).
   */
  async next(skip?: RegExp): Promise<string> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const guard = new Promise<"<none>">((resolve) => timer = setTimeout(() => resolve("<none>"), ANSWER_MS));
    try {
      return await Promise.race([this.#next(skip), guard]);
    } finally {
      clearTimeout(timer);
    }
  }

  async #next(skip?: RegExp): Promise<string> {
    const buf = new Uint8Array(4096);
    for (;;) {
      const nl = this.#buf.indexOf("\n");
      if (nl >= 0) {
        const line = this.#buf.slice(0, nl).replace(/\r$/, "");
        this.#buf = this.#buf.slice(nl + 1);
        if (skip?.test(line)) continue;
        return line;
      }
      if (this.#ended) return "<closed>";
      const n = await this.conn.read(buf).catch(() => null);
      if (n === null) this.#ended = true;
      else this.#buf += new TextDecoder().decode(buf.subarray(0, n));
    }
  }
}

/** What a connection got first: its first line, `<closed>` (closed without a word) or `<none>` (nothing in time). */
function firstLine(conn: Deno.Conn): Promise<string> {
  return new Lines(conn).next();
}

/** Opens `n` connections to `port` (each sending `request(i)`, if given) and returns them with their first lines. */
async function flood(port: number, n: number, request?: (i: number) => string) {
  const conns: Deno.Conn[] = [];
  let refused = 0;
  for (let i = 0; i < n; i++) {
    // (A listener closed, as the console's was between Deno.serve's end and its restart, refuses connections.)
    const c = await Deno.connect({ hostname: "127.0.0.1", port }).catch(() => undefined);
    if (!c) {
      refused++;
      continue;
    }
    conns.push(c);
    if (request) await c.write(new TextEncoder().encode(request(i))).catch(() => {});
  }
  const answers = await Promise.all(conns.map(firstLine));
  const counts: Record<string, number> = refused > 0 ? { "<refused>": refused } : {};
  for (const a of answers) {
    const k = a.startsWith("HTTP/") ? a.split(" ").slice(0, 2).join(" ") : a.split(" ")[0];
    counts[k] = (counts[k] ?? 0) + 1;
  }
  return {
    counts,
    close: () => {
      for (const c of conns) {
        try {
          c.close();
        } catch { /* closed by the server */ }
      }
    },
  };
}

/** Lines of the child's output matching `re`. */
function lines(p: BoundedProcess, re: RegExp): string[] {
  return p.output().split("\n").filter((l) => re.test(l));
}

async function stop(p: BoundedProcess): Promise<void> {
  p.kill("SIGTERM");
  await p.result;
}

Deno.test({
  name: "fd limit: the relay answers every connection of a flood past its descriptor limit (BUSY near it), keeps " +
    "its registered clients, and registers again once the flood is gone",
  ...opts,
  fn: async () => {
    const p = startCli("relay.json", [
      "port=0",
      "udp_port=0",
      "bind=127.0.0.1",
      "max_connections=1000",
      "max_connections_per_ip=1000",
      "max_clients=1000",
    ]);
    try {
      const port = await portOf(p, /listening on tcp 127\.0\.0\.1:(\d+)/);
      // A client registered before the flood.
      const old = await Deno.connect({ hostname: "127.0.0.1", port });
      const oldLines = new Lines(old);
      await old.write(new TextEncoder().encode("HELLO 40000 127.0.0.1 40002\n"));
      assertMatch(await oldLines.next(), /^OK /);

      const f = await flood(port, FLOOD, (i) => `HELLO ${41000 + i} 127.0.0.1 40000\n`);
      // Every connection had its answer: registered, or refused with BUSY; none left waiting in the backlog, none
      // closed without a word.
      assertEquals(f.counts["<none>"], undefined, JSON.stringify(f.counts));
      assertEquals(f.counts["<closed>"], undefined, JSON.stringify(f.counts));
      assert((f.counts["BUSY"] ?? 0) > 0, JSON.stringify(f.counts));
      assert((f.counts["OK"] ?? 0) > 0, JSON.stringify(f.counts));
      const warned = lines(
        p,
        /WARN +\[\w+\] refusing new connections on TCP .*open files allowed are in use.*ulimit -n/,
      );
      assertEquals(warned.length, 1, p.output().slice(-3000));
      // The client registered before still has its relay.
      await old.write(new TextEncoder().encode("HEARTBEAT\n"));
      assertEquals(await oldLines.next(/^TARGET /), "OK");
      old.close();
      f.close();
      // Descriptors back: a new client registers (once the relay has counted them again).
      for (let i = 0;; i++) {
        const c = await Deno.connect({ hostname: "127.0.0.1", port });
        await c.write(new TextEncoder().encode(`HELLO ${45000 + i} 127.0.0.1 40000\n`));
        const a = await firstLine(c);
        c.close();
        if (a.startsWith("OK ")) break;
        assert(i < 100 && a.startsWith("BUSY"), a);
        await new Promise((r) => setTimeout(r, 100));
      }
      assert(!p.ended, "the relay is still running");
    } finally {
      await stop(p);
    }
  },
});

Deno.test({
  name: "fd limit: the WebSocket bridge answers every connection of a flood past its descriptor limit (503 near " +
    "it), and its connected clients keep working",
  ...opts,
  fn: async () => {
    const p = startCli("server.json", ["port=0", "ws_port=0", "record="], { VOXPIPE_WS_TOKEN: "fd-secret" });
    try {
      const port = await portOf(p, /ws-bridge started at ws:\/\/127\.0\.0\.1:(\d+)\//);
      const ws = new WebSocket(`ws://127.0.0.1:${port}/?token=fd-secret&protocol=text`);
      const got: string[] = [];
      const opened = new Promise((resolve, reject) => {
        ws.onopen = resolve;
        ws.onerror = reject;
      });
      let closed = false;
      ws.onclose = () => closed = true;
      let onMessage = () => {};
      ws.onmessage = (e) => {
        got.push(String(e.data));
        onMessage();
      };
      await opened;
      const pong = () =>
        new Promise<void>((resolve) => {
          const before = got.filter((m) => m.startsWith("PONG")).length;
          onMessage = () => {
            if (got.filter((m) => m.startsWith("PONG")).length > before) resolve();
          };
          ws.send("PING");
        });
      await pong();

      const request = () =>
        `GET /?token=fd-secret&protocol=text HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\n` +
        `Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`;
      const f = await flood(port, FLOOD, request);
      assertEquals(f.counts["<none>"], undefined, JSON.stringify(f.counts));
      assert((f.counts["HTTP/1.1 503"] ?? 0) > 0, JSON.stringify(f.counts));
      const warned = lines(
        p,
        /WARN +\[\w+\] refusing new connections on TCP .*open files allowed are in use.*ulimit -n/,
      );
      assertEquals(warned.length, 1, p.output().slice(-3000));
      // The client connected before the flood is served.
      await pong();
      assert(!closed, "the client connected before is still connected");
      f.close();
      ws.close();
      assert(!p.ended, "the server is still running");
    } finally {
      await stop(p);
    }
  },
});

Deno.test({
  name: "fd limit: the console answers a flood of idle connections with 503 or closes them after the head timeout, " +
    "its port never refuses, its open page stays connected, and it serves the next request",
  ...opts,
  fn: async () => {
    const p = startCli("console.json", ["http_port=0", "port=0", "rtp_ports=42000-42100"]);
    try {
      const port = await portOf(p, /open http:\/\/127\.0\.0\.1:(\d+)\//);
      const ws = new WebSocket(`ws://127.0.0.1:${port}/ws`);
      let closed = false;
      let messages = 0;
      await new Promise((resolve, reject) => {
        ws.onopen = resolve;
        ws.onerror = reject;
      });
      ws.onclose = () => closed = true;
      ws.onmessage = () => messages++;

      // Idle connections, held open by the test: each must get 503 or be closed (its head never comes), none waits.
      const f = await flood(port, FLOOD);
      f.close();
      assertEquals(
        Object.keys(f.counts).filter((k) => k !== "HTTP/1.1 503" && k !== "<closed>"),
        [],
        JSON.stringify(f.counts),
      );
      assert((f.counts["HTTP/1.1 503"] ?? 0) > 0, `some got 503 (${JSON.stringify(f.counts)})`);
      assertEquals(
        lines(p, /WARN .*refusing new connections on TCP 127\.0\.0\.1:\d+: .*raise the limit \(ulimit -n\)/).length,
        1,
        "one warning names the limit",
      );
      assertEquals(lines(p, /ERROR|stopped|panic/), [], "no error, the server never stopped");
      // The flood is gone: the page loads (the descriptors are counted again at the next connection).
      for (let i = 0;; i++) {
        const r = await fetch(`http://127.0.0.1:${port}/`).catch((e) => e as Error);
        if (r instanceof Response) {
          await r.body?.cancel();
          if (r.status === 200) break;
        }
        assert(i < 100, `GET / after the flood: ${r instanceof Response ? r.status : r.message}`);
        await new Promise((r) => setTimeout(r, 100));
      }
      assert(!p.ended, "the console is still running");
      assert(!closed, "the page connected before the flood is still connected");
      assert(messages > 0);
      ws.close();
    } finally {
      await stop(p);
    }
  },
});

Deno.test({
  name: "fd limit: calls placed through the WebSocket bridge are refused near the descriptor limit, saying so, " +
    "before they bind their sockets (they went on until EMFILE)",
  ...opts,
  fn: async () => {
    // A peer that never answers: each call placed keeps ringing, its RTP/RTCP sockets bound.
    const silent = Deno.listenDatagram({ hostname: "127.0.0.1", port: 0, transport: "udp" });
    const peer = (silent.addr as Deno.NetAddr).port;
    const p = startCli("server.json", ["port=0", "ws_port=0", "record="], { VOXPIPE_WS_TOKEN: "fd-secret" });
    try {
      const port = await portOf(p, /ws-bridge started at ws:\/\/127\.0\.0\.1:(\d+)\//);
      const ws = new WebSocket(`ws://127.0.0.1:${port}/?token=fd-secret&protocol=text&incoming=0`);
      const failed: string[] = [];
      let rung = 0;
      ws.onmessage = (e) => {
        const m = String(e.data);
        if (m.startsWith("RING_ANS:")) rung++;
        else if (m.startsWith("CALL_FAILED:")) failed.push(m);
      };
      await new Promise((resolve, reject) => {
        ws.onopen = resolve;
        ws.onerror = reject;
      });
      // More calls than the limit leaves room for (two sockets each), placed 32 at a time: the bridge takes at most
      // 64 commands under way from a client and refuses the others, and how many a burst leaves under way depends on
      // how fast the server places them (all of them, when they wait for the SIP control's start).
      const calls = Math.ceil(LIMIT / 2);
      const deadline = Date.now() + 60_000; // hang guard
      for (let sent = 0; sent < calls;) {
        const n = Math.min(32, calls - sent);
        for (let i = 0; i < n; i++) ws.send(`CALL:sip:silent@127.0.0.1:${peer}`);
        sent += n;
        while (rung + failed.length < sent && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      }
      assertEquals(rung + failed.length, calls, `${rung} ringing, ${failed.length} failed`);
      assert(failed.length > 0 && rung > 0, `${rung} ringing, ${failed.length} failed`);
      // Each refused with the reason, none by running out.
      for (const f of failed) assertMatch(f, /open files allowed are in use.*raise the limit \(ulimit -n\)/);
      assert(!/EMFILE|Too many open files/.test(p.output()), p.output().slice(-3000));
      assert(!p.ended, "the server is still running");
      ws.close();
    } finally {
      await stop(p);
      silent.close();
    }
  },
});

Deno.test({
  name: "fd limit: a pipeline whose file cannot be opened for want of descriptors ends with the error, not a Deno " +
    "panic (its stack is not mapped)",
  ...opts,
  fn: async () => {
    const out = await Deno.makeTempDir();
    try {
      // From too few descriptors for the runtime itself (it panics inside Deno, before any of voxpipe runs) to
      // enough: wherever the pipeline starts and then cannot open its files, it must end with the error.
      let started = 0;
      for (let limit = 20; limit <= 40; limit++) {
        const p = startCli("transcode.json", [`out=${out}/t.wav`], {}, limit);
        const r = await p.result;
        const text = r.stdout + r.stderr;
        if (!/pipeline "main" started/.test(text)) continue;
        started++;
        assert(!/Deno has panicked/.test(text), `limit ${limit}: ${text.slice(0, 3000)}`);
        assert(
          r.code === 0 || /Too many open files/.test(text),
          `limit ${limit}: exit ${r.code}: ${text.slice(-2000)}`,
        );
        // And the error says what to do.
        assert(
          r.code === 0 || text.includes(ADVICE),
          `limit ${limit}: the error does not say what to do: ${text.slice(-2000)}`,
        );
      }
      assert(started > 0, "the pipeline started at some limit");
    } finally {
      await Deno.remove(out, { recursive: true });
    }
  },
});

Deno.test({
  name: "fd limit: every stage that opens a file says, when none is left, that the process is out of descriptors " +
    "and to raise the limit",
  ...opts,
  fn: async () => {
    const out = await Deno.makeTempDir();
    try {
      // The fixture loads the stages, opens /dev/null until EMFILE, then has each stage open its file.
      const args = ["--nofile=64:64", Deno.execPath(), "run", "-A", repoPath("tests/fixtures/out_of_files_stages.ts")];
      args.push(repoPath("examples/audio/hello.wav"), repoPath("examples/audio/hello.mp3"), out);
      const r = await spawnBounded("prlimit", args, { timeoutMs: 120_000, cwd: repoPath(".") }).result;
      assertEquals(r.code, 0, r.stdout + r.stderr);
      const results = r.stdout.split("\n").filter((l) => l.startsWith("{")).map((l) =>
        JSON.parse(l) as { stage: string; ok?: true; error?: string }
      );
      assertEquals(results.map((x) => x.stage), [
        "file-source",
        "file-source (real time)",
        "file-source (mp3 decode)",
        "probeAudioFile",
        "wav-source",
        "readWavInfo",
        "wav-sink",
        "wav-sink (real time)",
      ]);
      for (const x of results) {
        assertMatch(x.error ?? "(opened)", /Too many open files/, x.stage);
        assert(x.error!.endsWith(ADVICE), `${x.stage}: ${x.error}`);
      }
    } finally {
      await Deno.remove(out, { recursive: true });
    }
  },
});
