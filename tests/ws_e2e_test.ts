/**
 * The WebSocket bridge end to end, on loopback: our SIP server
 * (tests/fixtures/ws/server_ws.json: the sip control in role server, each
 * call's audio on the from-call / to-call buses, the ws-bridge service) in its
 * own process, driven by a WebSocket client in the test.
 *
 * - A client dials our callee (tests/fixtures/ws/callee_talks.json: it
 *   records what it hears and plays a file and two DTMF digits back), sends
 *   3 s of audio and two digits and receives the callee's, hangs up: the
 *   callee's recording is the client's audio sample-exact through G.711, the
 *   client got the callee's audio sample-exact, the digits crossed both ways.
 * - The same through Kamailio: the server registers and dials a user name
 *   (`bob`), which goes to the registrar's domain through Kamailio as outbound
 *   proxy (407 challenge), to the callee registered there (JSON protocol).
 * - Our caller calls the server: the connected client is offered the call,
 *   answers it, and hears the caller's file sample-exact.
 *
 * The client sends its audio ahead of time (the bridge paces it), so nothing
 * depends on the test's own timing. Should a receiver's jitter buffer have had
 * to conceal or drop a late packet on a loaded machine (which it reports),
 * every other packet must be there sample-exact, in order.
 */
import { assert, assertEquals, assertMatch } from "./assert.ts";
import { assertCallAudio, jitterSummary, spawnCli } from "./media_util.ts";
import {
  freeUdpPort,
  g711Audio,
  outputTail,
  ProcessGroup,
  readWav,
  SKIP_INTEROP,
  spawnCallee,
  spawnCaller,
  writeG711Wav,
} from "./sip_util.ts";
import { KAMAILIO_USERS, kamailioPath, startKamailio } from "./sip_servers.ts";
import { decodeAudio, encodeAudio } from "../plugins/ws/mod.ts";
import { WsClient } from "./ws_util.ts";

const TOKEN = "e2e-token-5150";
const opts = { sanitizeResources: false, sanitizeOps: false };

/** Our server with the bridge, in its own process; resolves once both listen. */
async function startServer(procs: ProcessGroup, extra: string[] = [], env?: Record<string, string>) {
  const port = freeUdpPort();
  const proc = procs.add(spawnCli([
    "--pipeline",
    "tests/fixtures/ws/server_ws.json",
    "--set",
    `port=${port}`,
    "--set",
    `ws_token=${TOKEN}`,
    "--set",
    "codecs=PCMU",
    ...extra,
  ], { timeoutMs: 90_000, env }));
  await proc.waitForOutput(/ws-bridge started at ws:\/\/127\.0\.0\.1:\d+\//, 30_000);
  await proc.waitForOutput(/\[SIP\] listening on udp 127\.0\.0\.1:\d+/, 30_000);
  const ws = Number(/ws-bridge started at ws:\/\/127\.0\.0\.1:(\d+)\//.exec(proc.output())![1]);
  return { proc, port, url: (q: string) => `ws://127.0.0.1:${ws}/?token=${TOKEN}&${q}` };
}

/** The samples of the RTP (text) or media (JSON) messages of call `id` among `messages`. */
function audioOf(messages: string[], id: string, encoding: "l16" | "mulaw"): Int16Array {
  const parts: Int16Array[] = [];
  for (const m of messages) {
    if (m.startsWith(`RTP:${id}##`)) parts.push(decodeAudio(m.slice(`RTP:${id}##`.length), encoding));
    else if (m.startsWith("{")) {
      const j = JSON.parse(m);
      if (j.event === "media" && j.callId === id) parts.push(decodeAudio(j.media.payload, encoding));
    }
  }
  const out = new Int16Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

/** Messages until `pred` matches, keeping them all (guarded). */
async function collectUntil(c: WsClient, pred: (m: string) => boolean, into: string[]): Promise<string> {
  for (;;) {
    const m = await c.next(30_000);
    into.push(m);
    if (pred(m)) return m;
  }
}

Deno.test({
  name: "ws e2e: a client dials our callee, audio both ways sample-exact through G.711, DTMF both ways, hangs up",
  ...opts,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "voxpipe-ws-e2e-" });
    const procs = new ProcessGroup();
    const clients: WsClient[] = [];
    try {
      const toFar = g711Audio("PCMU", 3, 21); // what the client says
      const fromFar = g711Audio("PCMU", 2, 22); // what the callee plays
      await writeG711Wav(`${dir}/far.wav`, fromFar);
      const callee = procs.trackCallee(
        await spawnCallee({
          pipeline: "tests/fixtures/ws/callee_talks.json",
          record: `${dir}/rec.wav`,
          calls: 1,
          codecs: "PCMU",
          timeoutMs: 90_000,
          extra: ["--set", `file=${dir}/far.wav`, "--set", "dtmf=5*", "--set", "dtmf_at=0.5"],
        }),
      );
      const server = await startServer(procs);

      // A wrong token is refused.
      const intruder = new WsClient(server.url("protocol=text").replace(TOKEN, "guess"));
      clients.push(intruder);
      assertEquals(await intruder.closed, { code: 1008, reason: "wrong token" });

      const c = new WsClient(server.url("protocol=text"));
      clients.push(c);
      await c.opened;
      c.send(`CALL:${callee.uri}`);
      const ring = await c.next(30_000);
      const id = new RegExp(`^RING_ANS:${callee.uri.replaceAll(".", "\\.")}##(\\S+)$`).exec(ring)?.[1];
      assert(id, `expected RING_ANS, got ${ring}`);
      const got: string[] = [];
      await collectUntil(c, (m) => m === `CALL_ANS:${id}`, got);

      // The whole utterance at once, in 20 ms messages, then 400 ms of silence and a mark: the bridge plays it
      // in real time; once the mark is back, the utterance has left (the send chain sends each frame as it
      // comes, the silence covers what its sink may still hold), and the client hangs up.
      const said = new Int16Array(toFar.samples.length + 3200);
      said.set(toFar.samples);
      for (let off = 0; off < said.length; off += 160) {
        c.send(`RTP:${id}##${encodeAudio(said.subarray(off, off + 160), "l16")}`);
      }
      c.send(`DTMF:${id}##1#`);
      c.send(`MARK:${id}##sent`);
      await collectUntil(c, (m) => m === `MARK:${id}##sent`, got);
      // The callee's file (2 s, its digits at 0.5 s) has long been played by now, and the mark came after 3.4 s.
      c.send(`HANGUP:${id}`);
      await collectUntil(c, (m) => m === `BYE:${id}`, got);

      const ce = await callee.proc.result;
      assertEquals(ce.code, 0, `callee failed: ${outputTail(ce)}`);
      const rec = await readWav(`${dir}/rec.wav`);
      assertCallAudio(toFar.samples, rec.samples, ce.stderr, { label: "client → callee", maxHeadPeak: 0 });
      // DTMF both ways (RFC 4733 events beside the audio, which goes on unchanged).
      assertMatch(ce.stderr, /DTMF 1 received[^]*DTMF # received/);
      assertEquals(got.filter((m) => m.startsWith("DTMF:")), [`DTMF:${id}##5`, `DTMF:${id}##*`]);

      await server.proc.waitForOutput(/record buffer summary/, 20_000);
      const heard = audioOf(got, id, "l16");
      assertCallAudio(fromFar.samples, heard, server.proc.output(), { label: "callee → client" });
      assertMatch(
        server.proc.output(),
        new RegExp(`\\[WS\\] call ${id} ended \\(local: hung up by the application\\): to client \\d+ frames`),
      );
    } finally {
      await Promise.all(clients.map((c) => c.close()));
      await procs.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "ws e2e: through Kamailio: the server registers and dials a user name; JSON protocol; audio both ways",
  ignore: SKIP_INTEROP || kamailioPath() === undefined,
  ...opts,
  async fn() {
    const kam = await startKamailio({ algorithm: "SHA-256", timeoutMs: 120_000 });
    const dir = await Deno.makeTempDir({ prefix: "voxpipe-ws-kamailio-" });
    const procs = new ProcessGroup();
    const clients: WsClient[] = [];
    try {
      const toFar = g711Audio("PCMU", 2, 31);
      const fromFar = g711Audio("PCMU", 1.5, 32);
      await writeG711Wav(`${dir}/far.wav`, fromFar);
      const callee = procs.trackCallee(
        await spawnCallee({
          pipeline: "tests/fixtures/ws/callee_talks.json",
          record: `${dir}/rec.wav`,
          calls: 1,
          codecs: "PCMU",
          timeoutMs: 90_000,
          extra: ["--set", `file=${dir}/far.wav`, "--set", "user=bob", "--set", `registrar=${kam.uri}`],
          env: { VOXPIPE_SIP_PASSWORD: KAMAILIO_USERS.bob },
        }),
      );
      await callee.proc.waitForOutput(/registered as sip:bob@127\.0\.0\.1 /, 20_000);
      const server = await startServer(procs, [
        "--set",
        "user=alice",
        "--set",
        "registrar=sip:voxpipe.test",
        "--set",
        `outbound_proxy=${kam.uri}`,
      ], { VOXPIPE_SIP_PASSWORD: KAMAILIO_USERS.alice });
      await server.proc.waitForOutput(/registered as sip:alice@voxpipe\.test /, 20_000);

      const c = new WsClient(server.url(""), "voxpipe-json");
      clients.push(c);
      assertEquals(await c.nextJson(), { event: "connected", protocol: "voxpipe-json", version: 1 });
      c.json({ event: "dial", ref: "k1", dial: { to: "bob" } });
      const dialing = await c.nextJson() as { event: string; callId: string; ref: string };
      assertEquals([dialing.event, dialing.ref], ["dialing", "k1"]);
      const id = dialing.callId;
      const got: string[] = [];
      const start = JSON.parse(await collectUntil(c, (m) => JSON.parse(m).event === "start", got));
      assertEquals(start.start.to, "sip:bob@voxpipe.test");
      assertEquals(start.start.mediaFormat, { encoding: "audio/x-mulaw", sampleRate: 8000, channels: 1 });

      const said = new Uint8Array(toFar.bytes.length + 3200).fill(0xff); // and 400 ms of silence (µ-law 0xFF)
      said.set(toFar.bytes);
      for (let off = 0; off < said.length; off += 800) {
        const payload = btoa(String.fromCharCode(...said.subarray(off, off + 800)));
        c.json({ event: "media", callId: id, media: { payload } });
      }
      c.json({ event: "mark", callId: id, mark: { name: "sent" } });
      await collectUntil(c, (m) => JSON.parse(m).event === "mark", got);
      c.json({ event: "stop", callId: id });
      const stop = JSON.parse(await collectUntil(c, (m) => JSON.parse(m).event === "stop", got));
      assertEquals(stop.stop.answered, true);

      const ce = await callee.proc.result;
      assertEquals(ce.code, 0, `callee failed: ${outputTail(ce)}\nkamailio:\n${kam.proc.output().slice(-3000)}`);
      assertMatch(server.proc.output(), /407 Proxy Authentication Required: re-sending INVITE/);
      const rec = await readWav(`${dir}/rec.wav`);
      assertCallAudio(toFar.samples, rec.samples, ce.stderr, { label: "client → callee", maxHeadPeak: 0 });
      await server.proc.waitForOutput(/record buffer summary/, 20_000);
      assertCallAudio(fromFar.samples, audioOf(got, id, "mulaw"), server.proc.output(), { label: "callee → client" });
    } finally {
      await Promise.all(clients.map((c) => c.close()));
      await procs.stop();
      await kam.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "ws e2e: our caller calls the server: the connected client is offered the call, answers, hears it sample-exact",
  ...opts,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "voxpipe-ws-incoming-" });
    const procs = new ProcessGroup();
    const clients: WsClient[] = [];
    try {
      const speech = g711Audio("PCMU", 2, 41);
      await writeG711Wav(`${dir}/caller.wav`, speech);
      const server = await startServer(procs);
      const c = new WsClient(server.url("protocol=text&encoding=mulaw"));
      clients.push(c);
      await c.opened;
      assertEquals(await c.sync(), []);
      const caller = procs.add(spawnCaller({
        to: `sip:voxpipe@127.0.0.1:${server.port}`,
        file: `${dir}/caller.wav`,
        codecs: "PCMU",
        timeoutMs: 60_000,
      }));
      const incoming = await c.next(30_000);
      const id = /^INCOMING:sip:voxpipe@127\.0\.0\.1##(\S+)$/.exec(incoming)?.[1] ??
        /^INCOMING:[^#]+##(\S+)$/.exec(incoming)?.[1];
      assert(id, `expected INCOMING, got ${incoming}`);
      c.send(`ANSWER:${id}`);
      const got: string[] = [];
      await collectUntil(c, (m) => m === `CALL_ANS:${id}`, got);
      // The caller hangs up once its file is sent.
      await collectUntil(c, (m) => m === `BYE:${id}`, got);
      const cr = await caller.result;
      assertEquals(cr.code, 0, `caller failed: ${outputTail(cr)}`);
      await server.proc.waitForOutput(/record buffer summary/, 20_000);
      assertCallAudio(speech.samples, audioOf(got, id, "mulaw"), server.proc.output(), { label: "caller → client" });
      const jb = jitterSummary(server.proc.output());
      assert(jb.received > 0);
    } finally {
      await Promise.all(clients.map((c) => c.close()));
      await procs.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
