/**
 * The WebSocket bridge with real WebSocket clients (Deno's `WebSocket`, and a
 * raw TCP one that never reads) on loopback, against a fake call service
 * whose far ends the test plays (tests/ws_util.ts). Media time is a
 * VirtualClock: audio a client sends is played into the call only when the
 * test moves the clock, so what reaches the call is checked frame by frame.
 * Real time is only waited on for messages to arrive, under guards that never
 * decide a result.
 */
import { assert, assertEquals, assertMatch } from "./assert.ts";
import { VirtualClock } from "../core/clock.ts";
import { Logger, MemoryOutput } from "../core/log.ts";
import type { PcmFrame } from "../core/frame.ts";
import { PipelineRunner } from "../core/runner.ts";
import { defineControl } from "../core/control.ts";
import { z } from "zod";
import { createRegistry } from "../mod.ts";
import { MULAW_DECODE, MULAW_ENCODE } from "../plugins/g711/tables.ts";
import { decodeAudio, encodeAudio, type WsBridgeOptions, wsBridgeOptions } from "../plugins/ws/mod.ts";
import { WsBridge } from "../plugins/ws/bridge.ts";
import {
  FakeCalls,
  mulawExactSamples,
  RawFrames,
  rawHeader,
  sendRawText,
  stuckClient,
  waitFor,
  WsClient,
} from "./ws_util.ts";
import { MAX_MARKS } from "../plugins/ws/player.ts";

const TOKEN = "s3cret-token";

interface Rig {
  clock: VirtualClock;
  calls: FakeCalls;
  bridge: WsBridge;
  logs: MemoryOutput;
  url(query: string): string;
  clients: WsClient[];
  connect(query: string, protocols?: string | string[]): Promise<WsClient>;
  close(): Promise<void>;
}

/** A text client (with the token) whose dial of `to` the far end has answered: its call is out-1. */
async function answeredCall(r: Rig, to: string) {
  const c = await r.connect(`token=${TOKEN}&protocol=text`);
  c.send(`CALL:${to}`);
  await c.next();
  r.calls.answerRemote("out-1");
  await c.next();
  return c;
}

async function rig(opts: Partial<WsBridgeOptions> = {}): Promise<Rig> {
  const clock = new VirtualClock();
  const calls = new FakeCalls(clock);
  const logs = new MemoryOutput();
  const log = new Logger({ level: "debug", outputs: [logs] });
  const bridge = new WsBridge(wsBridgeOptions.parse({ token: TOKEN, port: 0, ...opts }), { calls, clock, log });
  await bridge.start();
  const url = (q: string) => `ws://127.0.0.1:${bridge.port}/?${q}`;
  const clients: WsClient[] = [];
  return {
    clock,
    calls,
    bridge,
    logs,
    url,
    clients,
    async connect(query, protocols) {
      const c = new WsClient(url(query), protocols);
      clients.push(c);
      await c.opened;
      return c;
    },
    async close() {
      await Promise.all(clients.map((c) => c.close()));
      await bridge.close();
    },
  };
}

/** Concatenated samples of frames. */
function concat(frames: PcmFrame[]): Int16Array {
  const out = new Int16Array(frames.reduce((n, f) => n + f.samples.length, 0));
  let off = 0;
  for (const f of frames) {
    out.set(f.samples, off);
    off += f.samples.length;
  }
  return out;
}

/** The client audio in what was played: from the first frame with audio, `n` samples. */
function played(frames: PcmFrame[], n: number): Int16Array {
  const first = frames.findIndex((f) => f.type === "normal");
  assert(first >= 0, "no audio was played into the call");
  return concat(frames.slice(first)).slice(0, n);
}

const AUDIO = mulawExactSamples(1600, 5, MULAW_DECODE); // 200 ms that survive G.711 µ-law exactly

Deno.test("ws-bridge: an address that gives 3 wrong tokens in 60 s is refused (HTTP 403) for 60 s, right token or not", async () => {
  const r = await rig({
    auth_max_failures: 3,
    auth_failure_window: 60,
    auth_block_time: 60,
    auth_limit_loopback: true,
  });
  const refusal = async (query: string) => {
    try {
      (await stuckClient(r.bridge.port, query)).close();
      return "101";
    } catch (e) {
      return (e as Error).message;
    }
  };
  try {
    // A missing token is not a guess: it does not count.
    const silent = await r.connect("");
    silent.send("CALL:1");
    assertEquals((await silent.closed).code, 1008);
    for (const token of ["a", "b"]) {
      const c = await r.connect(`token=${token}&protocol=text`);
      assertEquals(await c.closed, { code: 1008, reason: "wrong token" });
    }
    const third = await r.connect("protocol=text");
    third.send("AUTH:c");
    assertEquals(await third.closed, { code: 1008, reason: "wrong token" });
    await waitFor(() => r.logs.lines.some((l) => l.includes("its connections are refused (403) for 60 s")), "block");
    // Now even the right token is refused before the handshake.
    assertMatch(await refusal(`token=${TOKEN}&protocol=text`), /handshake refused: HTTP\/1\.1 403/);
    assertEquals(r.bridge.stats().authBlocked, 1);
    assertEquals(r.bridge.stats().authFailures, 4);
    // Once the 60 s have passed, the right token gets in.
    r.clock.advance(60_000);
    assertEquals(await refusal(`token=${TOKEN}&protocol=text`), "101");
  } finally {
    await r.close();
  }
  // By default a loopback address is never refused: a local process with an old token cannot lock out the others.
  const d = await rig({ auth_max_failures: 3 });
  try {
    for (let k = 0; k < 5; k++) {
      const c = await d.connect(`token=guess-${k}&protocol=text`);
      assertEquals(await c.closed, { code: 1008, reason: "wrong token" });
    }
    const ok = await d.connect(`token=${TOKEN}&protocol=text`);
    assertEquals(await ok.sync(), []);
    assertEquals(d.bridge.stats().authBlocked, 0);
  } finally {
    await d.close();
  }
});

Deno.test("ws-bridge: the token is required, in the URL or the first message; wrong or missing closes with 1008", async () => {
  const r = await rig({ auth_timeout: 5 });
  try {
    const ok = await r.connect(`token=${TOKEN}&protocol=text`);
    assertEquals(await ok.sync(), []);

    const wrong = await r.connect("token=nope&protocol=text");
    assertEquals(await wrong.closed, { code: 1008, reason: "wrong token" });

    const missing = await r.connect("");
    missing.send("CALL:1234");
    assertEquals((await missing.closed).code, 1008);
    assertEquals(r.calls.log, [], "nothing was dialed");

    const byMessage = await r.connect("");
    byMessage.send(`AUTH:${TOKEN}`);
    assertEquals(await byMessage.next(), "AUTH_OK");
    assertEquals(await byMessage.sync(), []);

    const json = await r.connect("");
    json.json({ event: "auth", auth: { token: TOKEN } });
    assertEquals(await json.nextJson(), { event: "connected", protocol: "voxpipe-json", version: 1 });

    const badMessage = await r.connect("");
    badMessage.send("AUTH:guess");
    assertEquals(await badMessage.closed, { code: 1008, reason: "wrong token" });

    const silent = await r.connect("");
    const n = r.bridge.stats().accepted;
    await waitFor(() => r.logs.lines.some((l) => l.includes(`client ${n} `) && l.includes("connected")), "open");
    r.clock.advance(4999);
    await ok.sync(); // the bridge has run since
    assertEquals(silent.ws.readyState, WebSocket.OPEN, "still open before auth_timeout");
    r.clock.advance(1);
    assertEquals(await silent.closed, { code: 1008, reason: "no token within 5 s" });

    const lines = r.logs.lines.join("\n");
    assertMatch(lines, /WARN {2}\[WS\] client 2 \(127\.0\.0\.1:\d+\): wrong token: closed \(1008\)/);
    assertMatch(lines, /client 3 \(127\.0\.0\.1:\d+\): token required: closed \(1008\)/);
    assertMatch(lines, /client \d+ \(127\.0\.0\.1:\d+\): no token within 5 s: closed \(1008\)/);
    assertEquals(r.bridge.stats().authFailures, 4);
  } finally {
    await r.close();
  }
});

Deno.test("ws-bridge: text protocol: CALL, RING_ANS, CALL_ANS, audio both ways sample-exact, DTMF, MARK, HANGUP, BYE", async () => {
  const r = await rig({ jitter_ms: 60 });
  try {
    const c = await r.connect(`token=${TOKEN}&protocol=text`);
    c.send("CALL:sip:bob@127.0.0.1:5062");
    assertEquals(await c.next(), "RING_ANS:sip:bob@127.0.0.1:5062##out-1");
    r.calls.ring("out-1");
    r.calls.answerRemote("out-1");
    assertEquals(await c.next(), "CALL_ANS:out-1");
    assertEquals(r.calls.log, ["dial sip:bob@127.0.0.1:5062"]);

    // Client → call: 200 ms in ten 20 ms messages of l16, played at one frame per 20 ms.
    for (let k = 0; k < 10; k++) c.send(`RTP:out-1##${encodeAudio(AUDIO.subarray(k * 160, (k + 1) * 160), "l16")}`);
    c.send("MARK:out-1##greeting");
    assertEquals(await c.sync(), []);
    r.clock.advance(100);
    assertEquals(await c.sync(), [], "the mark waits for its audio to be played");
    r.clock.advance(200);
    assertEquals(await c.next(), "MARK:out-1##greeting");
    const heard = r.calls.heard("out-1");
    assertEquals(played(heard, AUDIO.length), AUDIO);
    heard.forEach((f, i) => assertEquals(f.pts, i * 160, "one continuous stream"));
    assertEquals(heard.every((f) => f.samples.length === 160 && f.sampleRate === 8000 && f.channels === 1), true);

    // Call → client: each frame of the peer's audio as one RTP message.
    r.calls.say("out-1", AUDIO.subarray(0, 800));
    const got: Int16Array[] = [];
    for (let k = 0; k < 5; k++) {
      const m = await c.next();
      assertMatch(m, /^RTP:out-1##/);
      got.push(decodeAudio(m.slice("RTP:out-1##".length), "l16"));
    }
    assertEquals(concat(got.map((s) => ({ samples: s }) as PcmFrame)), AUDIO.subarray(0, 800));

    // µ-law from now on, both ways.
    c.send("ENCODING:mulaw");
    await c.sync();
    r.calls.say("out-1", AUDIO.subarray(0, 160));
    const mu = await c.next();
    const bytes = Uint8Array.from(atob(mu.slice("RTP:out-1##".length)), (ch) => ch.charCodeAt(0));
    assertEquals([...bytes], [...AUDIO.subarray(0, 160)].map((s) => MULAW_ENCODE[s & 0xffff]));

    c.send("DTMF:out-1##12#");
    assertEquals(await c.sync(), []);
    assert(r.calls.log.includes("dtmf out-1 12#"));
    r.calls.dtmfRemote("out-1", "5");
    assertEquals(await c.next(), "DTMF:out-1##5");
    r.calls.dtmfRemote("out-1", "7", true); // the session's events are the source once attached: never twice
    assertEquals(await c.sync(), []);

    c.send("HANGUP:out-1");
    assertEquals(await c.next(), "BYE:out-1");
    assert(r.calls.log.includes("hangup out-1"));
    c.send(`RTP:out-1##${encodeAudio(AUDIO.subarray(0, 160), "l16")}`);
    assertMatch(await c.next(), /^ERROR:unknown call out-1: not one of your calls, or it has ended$/);
    assertMatch(r.logs.lines.join("\n"), /call out-1 ended \(local: BYE\): to client 6 frames/);
  } finally {
    await r.close();
  }
});

Deno.test("ws-bridge: JSON protocol: dial, ringing, start, µ-law media both ways, marks, clear, DTMF, stop", async () => {
  const r = await rig();
  try {
    const c = await r.connect(`token=${TOKEN}`, "voxpipe-json");
    assertEquals(c.ws.protocol, "voxpipe-json");
    assertEquals(await c.nextJson(), { event: "connected", protocol: "voxpipe-json", version: 1 });
    c.json({ event: "dial", ref: "r1", dial: { to: "sip:carol@127.0.0.1", ringTimeout: 20 } });
    assertEquals(await c.nextJson(), {
      event: "dialing",
      callId: "out-1",
      ref: "r1",
      dialing: { to: "sip:carol@127.0.0.1" },
    });
    r.calls.ring("out-1");
    assertEquals(await c.nextJson(), {
      event: "ringing",
      callId: "out-1",
      ringing: { status: 180, reason: "Ringing" },
    });
    r.calls.answerRemote("out-1");
    assertEquals(await c.nextJson(), {
      event: "start",
      callId: "out-1",
      start: {
        callId: "out-1",
        direction: "outbound",
        from: "sip:voxpipe@127.0.0.1",
        to: "sip:carol@127.0.0.1",
        mediaFormat: { encoding: "audio/x-mulaw", sampleRate: 8000, channels: 1 },
      },
    });
    assertEquals(r.calls.log, ["dial sip:carol@127.0.0.1 ring=20"]);

    // Client → call, µ-law, 100 ms at once (faster than real time), then a mark.
    const codes = [...AUDIO.subarray(0, 800)].map((s) => MULAW_ENCODE[s & 0xffff]);
    c.json({ event: "media", callId: "out-1", media: { payload: btoa(String.fromCharCode(...codes)) } });
    c.json({ event: "mark", callId: "out-1", mark: { name: "m1" } });
    assertEquals(await c.syncJson(), []);
    r.clock.advance(200);
    assertEquals(await c.nextJson(), { event: "mark", callId: "out-1", mark: { name: "m1" } });
    assertEquals(played(r.calls.heard("out-1"), 800), AUDIO.subarray(0, 800));

    // Clear: queued audio dropped, pending marks echoed at once.
    c.json({ event: "media", callId: "out-1", media: { payload: btoa(String.fromCharCode(...codes)) } });
    c.json({ event: "mark", callId: "out-1", mark: { name: "m2" } });
    c.json({ event: "clear", callId: "out-1" });
    assertEquals(await c.nextJson(), { event: "mark", callId: "out-1", mark: { name: "m2" } });
    r.clock.advance(200);
    assertEquals(r.calls.heard("out-1").every((f) => f.type === "silence"), true, "nothing played after clear");
    assertEquals(r.bridge.stats().calls[0].player.clearedSamples, 800);

    // Call → client: sequence numbers from 1, timestamps in ms of the call's audio.
    r.calls.say("out-1", AUDIO.subarray(0, 480));
    for (let k = 0; k < 3; k++) {
      const m = await c.nextJson() as {
        event: string;
        media: { payload: string; sequenceNumber: number; timestamp: number };
      };
      assertEquals([m.event, m.media.sequenceNumber, m.media.timestamp], ["media", k + 1, k * 20]);
      assertEquals(decodeAudio(m.media.payload, "mulaw"), AUDIO.subarray(k * 160, (k + 1) * 160));
    }

    c.json({ event: "dtmf", callId: "out-1", dtmf: { digits: "9*" } });
    assertEquals(await c.syncJson(), []);
    assert(r.calls.log.includes("dtmf out-1 9*"));
    r.calls.dtmfRemote("out-1", "#");
    assertEquals(await c.nextJson(), { event: "dtmf", callId: "out-1", dtmf: { digit: "#", durationMs: 100 } });

    r.calls.endRemote("out-1");
    assertEquals(await c.nextJson(), {
      event: "stop",
      callId: "out-1",
      stop: { answered: true, reason: "remote: BYE" },
    });
    c.json({ event: "stop", callId: "out-1" });
    assertEquals(await c.nextJson(), {
      event: "error",
      callId: "out-1",
      error: { message: "unknown call out-1: not one of your calls, or it has ended" },
    });
  } finally {
    await r.close();
  }
});

Deno.test("ws-bridge: a JSON client is recognised by its first message; l16 when it asks", async () => {
  const r = await rig();
  try {
    const c = await r.connect(`token=${TOKEN}&encoding=l16`);
    c.json({ event: "dial", dial: { to: "1234" } });
    assertEquals((await c.nextJson()).event, "connected");
    assertEquals((await c.nextJson()).event, "dialing");
    r.calls.answerRemote("out-1");
    const start = await c.nextJson() as { start: { mediaFormat: { encoding: string } } };
    assertEquals(start.start.mediaFormat.encoding, "audio/l16");
    c.json({ event: "media", callId: "out-1", media: { payload: encodeAudio(AUDIO, "l16") } });
    assertEquals(await c.syncJson(), []);
    r.clock.advance(300);
    assertEquals(played(r.calls.heard("out-1"), AUDIO.length), AUDIO);
  } finally {
    await r.close();
  }
});

Deno.test("ws-bridge: failed calls: CALL_FAILED with the status, CALL_IGNORE when unanswered, each closed by BYE", async () => {
  const r = await rig();
  try {
    r.calls.failing.set("sip:nowhere@h", 404);
    const c = await r.connect(`token=${TOKEN}&protocol=text`);
    c.send("CALL:sip:nowhere@h");
    assertEquals(await c.next(), "CALL_FAILED:404 cannot call sip:nowhere@h");
    c.send("CALL:sip:busy@h");
    assertEquals(await c.next(), "RING_ANS:sip:busy@h##out-1");
    r.calls.endRemote("out-1", "remote: 486 Busy Here", 486);
    assertEquals([await c.next(), await c.next()], ["CALL_FAILED:486 remote: 486 Busy Here", "BYE:out-1"]);
    c.send("CALL:sip:away@h");
    assertEquals(await c.next(), "RING_ANS:sip:away@h##out-2");
    r.calls.ring("out-2");
    r.calls.endRemote("out-2", "no answer within 30 s", 487);
    assertEquals([await c.next(), await c.next()], ["CALL_IGNORE:out-2", "BYE:out-2"]);

    const j = await r.connect(`token=${TOKEN}&protocol=json`);
    assertEquals((await j.nextJson()).event, "connected");
    j.json({ event: "dial", ref: "x", dial: { to: "sip:nowhere@h" } });
    assertEquals(await j.nextJson(), {
      event: "error",
      ref: "x",
      error: { message: "dial failed: cannot call sip:nowhere@h", status: 404 },
    });
    j.json({ event: "dial", ref: "y", dial: { to: "sip:busy@h" } });
    assertEquals((await j.nextJson()).callId, "out-3");
    r.calls.endRemote("out-3", "remote: 486 Busy Here", 486);
    assertEquals(await j.nextJson(), {
      event: "stop",
      callId: "out-3",
      stop: { answered: false, reason: "remote: 486 Busy Here", status: 486 },
    });
  } finally {
    await r.close();
  }
});

Deno.test("ws-bridge: incoming calls are offered to the clients that take them; first answer wins; reject; ring timeout; default policy without clients", async () => {
  const r = await rig({ ring_timeout: 30 });
  try {
    assertEquals(r.calls.hasDecider, false);
    const a = await r.connect(`token=${TOKEN}&protocol=text`);
    const b = await r.connect(`token=${TOKEN}&protocol=text`);
    const deaf = await r.connect(`token=${TOKEN}&protocol=text&incoming=0`);
    await a.sync();
    assertEquals(r.calls.hasDecider, true);

    const id1 = await r.calls.incoming("sip:alice@10.0.0.1");
    assertEquals(await a.next(), `INCOMING:sip:alice@10.0.0.1##${id1}`);
    assertEquals(await b.next(), `INCOMING:sip:alice@10.0.0.1##${id1}`);
    b.send(`ANSWER:${id1}`);
    assertEquals(await b.next(), `CALL_ANS:${id1}`);
    assertEquals(await a.next(), `INCOMING_END:${id1}##answered by another client`);
    a.send(`ANSWER:${id1}`);
    assertMatch(await a.next(), new RegExp(`^ERROR:call ${id1} is not offered to you`));
    assertEquals(await deaf.sync(), [], "a client with incoming=0 is offered nothing");
    // The one who answered owns it: audio flows to b only.
    r.calls.say(id1, AUDIO.subarray(0, 160));
    assertMatch(await b.next(), new RegExp(`^RTP:${id1}##`));
    assertEquals(await a.sync(), []);

    const id2 = await r.calls.incoming("sip:bob@10.0.0.2");
    await a.next();
    await b.next();
    a.send(`REJECT:${id2}##603`);
    assertEquals(await a.next(), `INCOMING_END:${id2}##rejected by client 1`);
    assertEquals(await b.next(), `INCOMING_END:${id2}##rejected by client 1`);
    assert(r.calls.log.includes(`reject ${id2} 603`));

    const id3 = await r.calls.incoming("sip:carl@10.0.0.3");
    await a.next();
    await b.next();
    r.clock.advance(29_999);
    assertEquals(await a.sync(), []);
    r.clock.advance(1);
    assertEquals(await a.next(), `INCOMING_END:${id3}##nobody answered within 30 s`);
    assert(r.calls.log.includes(`reject ${id3} 480`));

    const id4 = await r.calls.incoming("sip:dora@10.0.0.4");
    await a.next();
    await b.next();
    r.calls.endRemote(id4, "remote: CANCEL");
    assertEquals(await a.next(), `INCOMING_END:${id4}##ended before it was answered: remote: CANCEL`);

    // JSON clients get the same offers.
    const j = await r.connect(`token=${TOKEN}&protocol=json`);
    await j.nextJson();
    const id5 = await r.calls.incoming("sip:eve@10.0.0.5");
    assertEquals(await j.nextJson(), {
      event: "incoming",
      callId: id5,
      incoming: { from: "sip:eve@10.0.0.5", to: "sip:voxpipe@127.0.0.1" },
    });
    j.json({ event: "answer", callId: id5, answer: { mediaFormat: { encoding: "audio/l16" } } });
    const start = await j.nextJson() as {
      event: string;
      start: { direction: string; mediaFormat: { encoding: string } };
    };
    assertEquals([start.event, start.start.direction, start.start.mediaFormat.encoding], [
      "start",
      "inbound",
      "audio/l16",
    ]);

    // Without clients that take incoming calls, the control plugin's own policy applies.
    await a.close();
    await b.close();
    await j.close();
    await waitFor(() => !r.calls.hasDecider, "the decider to be removed");
    const id6 = await r.calls.incoming("sip:fred@10.0.0.6");
    assert(r.calls.log.includes(`decided ${id6} answer (default)`));
    assert(r.calls.log.includes(`hangup ${id1}`), "b's call was hung up when b left");
    assertEquals(await deaf.sync(), []);
  } finally {
    await r.close();
  }
});

Deno.test("ws-bridge: two clients never see each other's calls; naming another's call changes nothing", async () => {
  const r = await rig();
  try {
    const a = await r.connect(`token=${TOKEN}&protocol=text`);
    const b = await r.connect(`token=${TOKEN}&protocol=text`);
    a.send("CALL:sip:x@h");
    assertEquals(await a.next(), "RING_ANS:sip:x@h##out-1");
    b.send("CALL:sip:y@h");
    assertEquals(await b.next(), "RING_ANS:sip:y@h##out-2");
    r.calls.answerRemote("out-1");
    r.calls.answerRemote("out-2");
    assertEquals(await a.next(), "CALL_ANS:out-1");
    assertEquals(await b.next(), "CALL_ANS:out-2");

    const chunk = encodeAudio(AUDIO.subarray(0, 160), "l16");
    for (const m of [`RTP:out-1##${chunk}`, "HANGUP:out-1", "DTMF:out-1##1", "MARK:out-1##x", "CLEAR:out-1"]) {
      b.send(m);
      assertEquals(await b.next(), "ERROR:unknown call out-1: not one of your calls, or it has ended");
    }
    assertEquals(r.calls.log.filter((l) => l.includes("out-1")), [], "b changed nothing of a's call");

    r.calls.say("out-1", AUDIO.subarray(0, 320));
    r.calls.say("out-2", AUDIO.subarray(320, 480));
    assertMatch(await a.next(), /^RTP:out-1##/);
    assertMatch(await a.next(), /^RTP:out-1##/);
    assertMatch(await b.next(), /^RTP:out-2##/);
    r.calls.endRemote("out-1");
    assertEquals(await a.next(), "BYE:out-1");
    assertEquals(await b.sync(), [], "b saw nothing of out-1");

    // a's audio reached a's call only.
    b.send(`RTP:out-2##${encodeAudio(AUDIO, "l16")}`);
    await b.sync();
    r.clock.advance(300);
    assertEquals(played(r.calls.heard("out-2"), AUDIO.length), AUDIO);
  } finally {
    await r.close();
  }
});

Deno.test("ws-bridge: malformed messages get an error back and affect nothing else", async () => {
  const r = await rig({ max_message_bytes: 4096 });
  try {
    const c = await r.connect(`token=${TOKEN}&protocol=text`);
    const other = await r.connect(`token=${TOKEN}&protocol=json`);
    await other.nextJson();
    other.json({ event: "dial", dial: { to: "sip:z@h" } });
    await other.nextJson();
    r.calls.answerRemote("out-1");
    await other.nextJson();

    c.send("CALL:sip:x@h");
    await c.next();
    r.calls.answerRemote("out-2");
    await c.next();
    const cases: [string | Uint8Array, RegExp][] = [
      ["hello", /^ERROR:expected COMMAND:ARGUMENTS/],
      ["FOO:bar", /^ERROR:unknown command "FOO"/],
      [new Uint8Array([1, 2, 3]), /^ERROR:binary messages are not part of the protocol/],
      [`RTP:out-2##${"A".repeat(5000)}`, /^ERROR:message of 5011 bytes is longer than 4096: ignored$/],
      ["RTP:out-2##%%%%", /^ERROR:call out-2: the audio payload is not valid base64$/],
      ["RTP:out-2##AA==", /^ERROR:call out-2: l16 audio has 2 bytes per sample, got 1 bytes/],
      ["DTMF:out-2##xyz", /^ERROR:DTMF: DTMF digits are/],
      ["ANSWER:nope", /^ERROR:call nope is not offered to you/],
      ["CALL:a b", /^ERROR:CALL: the number has spaces/],
    ];
    for (const [m, re] of cases) {
      c.ws.send(m);
      assertMatch(await c.next(), re);
    }
    other.send("{oops");
    assertMatch((await other.nextJson() as { error: { message: string } }).error.message, /^not JSON/);
    other.json({ event: "media", callId: "out-1" });
    assertEquals(await other.nextJson(), {
      event: "error",
      callId: "out-1",
      error: { message: 'media: expected "media": {...}' },
    });

    // Both connections and both calls work as before.
    assertEquals(c.ws.readyState, WebSocket.OPEN);
    c.send(`RTP:out-2##${encodeAudio(AUDIO.subarray(0, 800), "l16")}`);
    c.send(`RTP:out-2##${encodeAudio(AUDIO.subarray(800), "l16")}`);
    other.json({ event: "media", callId: "out-1", media: { payload: encodeAudio(AUDIO, "mulaw") } });
    assertEquals(await c.sync(), []);
    assertEquals(await other.syncJson(), []);
    r.clock.advance(300);
    assertEquals(played(r.calls.heard("out-2"), AUDIO.length), AUDIO);
    assertEquals(played(r.calls.heard("out-1"), AUDIO.length), AUDIO);
    assertEquals(r.bridge.stats().errors, cases.length + 2);
    assertEquals(r.calls.log.filter((l) => l.startsWith("hangup")), []);
  } finally {
    await r.close();
  }
});

Deno.test("ws-bridge: a client that reads nothing loses audio, then is disconnected; the media and other clients never wait", async () => {
  const r = await rig({ client_buffer_bytes: 64 * 1024, slow_client_seconds: 2 });
  let stuck: Deno.Conn | undefined;
  try {
    const good = await r.connect(`token=${TOKEN}&protocol=text`);
    good.send("CALL:sip:good@h");
    assertEquals(await good.next(), "RING_ANS:sip:good@h##out-1");
    r.calls.answerRemote("out-1");
    assertEquals(await good.next(), "CALL_ANS:out-1");

    stuck = await stuckClient(r.bridge.port, `token=${TOKEN}`);
    await sendRawText(stuck, "CALL:sip:slow@h");
    await waitFor(() => r.calls.log.includes("dial sip:slow@h"), "the stuck client's dial");
    await waitFor(() => r.bridge.stats().calls.some((c) => c.callId === "out-2"), "its call");
    r.calls.answerRemote("out-2");

    // The far end of the stuck client's call talks faster than real time, until the client's socket (the
    // kernel's buffers full) holds more than the bound.
    const second = AUDIO.subarray(0, 1600);
    let pushedBack = false;
    let published = 0;
    const buffered = () => r.bridge.stats().clientList.find((c) => c.id === 2)!.buffered;
    await waitFor(
      () => {
        if (buffered() > 64 * 1024) return true;
        for (let i = 0; i < 10; i++) { // 44 KB at most past the bound, never 4 times it (an immediate disconnect)
          if (!r.calls.say("out-2", second)) pushedBack = true;
          published += 10;
        }
        return false;
      },
      "the stuck client's socket to fill",
      60000,
    );
    const dropped = () => r.bridge.stats().calls.find((c) => c.callId === "out-2")!.framesToClientDropped;
    const before = dropped();
    if (!r.calls.say("out-2", second)) pushedBack = true;
    published += 10;
    await waitFor(() => dropped() - before === 10, "above the bound, audio to it to be dropped");
    assertEquals(pushedBack, false, "the bridge never pushed back on the call's receive chain");
    const s = r.bridge.stats().calls.find((c) => c.callId === "out-2")!;
    assertEquals(s.framesToClient + s.framesToClientDropped, published, "every frame sent or dropped at once");

    // Meanwhile the good client's call is untouched.
    r.calls.say("out-1", AUDIO.subarray(0, 160));
    assertEquals(decodeAudio((await good.next()).slice("RTP:out-1##".length), "l16"), AUDIO.subarray(0, 160));

    // Still above the bound after slow_client_seconds of media time: disconnected, its call hung up.
    r.clock.advance(2000);
    r.calls.say("out-2", second);
    await waitFor(() => r.calls.log.includes("hangup out-2"), "the stuck client's call to be hung up");
    assertEquals(r.bridge.stats().slowDisconnects, 1);
    assertMatch(
      r.logs.lines.join("\n"),
      /WARN {2}\[WS\] client 2 \(127\.0\.0\.1:\d+\) too slow: \d+ bytes unsent for 2\.0 s: disconnected \(1008\)/,
    );
    assert(!r.calls.log.includes("hangup out-1"));

    good.send(`RTP:out-1##${encodeAudio(AUDIO, "l16")}`);
    await good.sync();
    r.calls.heard("out-1");
    r.clock.advance(300);
    assertEquals(played(r.calls.heard("out-1"), AUDIO.length), AUDIO);
  } finally {
    stuck?.close();
    await r.close();
  }
});

Deno.test("ws-bridge: a client that goes away has its calls hung up", async () => {
  const r = await rig();
  try {
    const c = await r.connect(`token=${TOKEN}&protocol=text`);
    c.send("CALL:sip:a@h");
    await c.next();
    c.send("CALL:sip:b@h");
    await c.next();
    r.calls.answerRemote("out-1");
    await c.next();
    await c.close();
    await waitFor(() => r.calls.log.includes("hangup out-2"), "hang-ups");
    assert(r.calls.log.includes("hangup out-1"));
    assertMatch(r.logs.lines.join("\n"), /client 1 \(127\.0\.0\.1:\d+\) gone: disconnected, 2 calls hung up/);
    assertEquals(r.bridge.stats().calls, []);
  } finally {
    await r.close();
  }
});

Deno.test("ws-bridge: a pipeline file's services section starts it on the control plugin's calls, token from a parameter", async () => {
  const clock = new VirtualClock();
  const calls = new FakeCalls(clock);
  let finish = () => {};
  const registry = createRegistry();
  registry.registerControl(defineControl({
    name: "fake-calls",
    kind: "control",
    description: "calls the test plays",
    variables: {},
    options: z.object({}),
    create: () => ({ calls, run: () => new Promise((resolve) => finish = () => resolve({ code: 0 })) }),
  }));
  const dir = await Deno.makeTempDir();
  const path = `${dir}/ws.json`;
  await Deno.writeTextFile(
    path,
    JSON.stringify({
      parameters: { ws_token: { default: "", description: "token" } },
      control: { use: "fake-calls" },
      services: [{ use: "ws-bridge", port: 0, token: "${ws_token}" }],
      pipelines: {},
    }),
  );
  const logs = new MemoryOutput();
  const runner = await PipelineRunner.load(path, {
    registry,
    clock,
    set: [`ws_token=${TOKEN}`],
    log: new Logger({ level: "info", outputs: [logs] }),
  });
  const run = runner.run();
  await waitFor(() => logs.lines.some((l) => l.includes("ws-bridge started at")), "the service");
  const port = Number(/ws-bridge started at ws:\/\/127\.0\.0\.1:(\d+)\//.exec(logs.lines.join("\n"))![1]);
  const c = new WsClient(`ws://127.0.0.1:${port}/?token=${TOKEN}&protocol=text`);
  try {
    await c.opened;
    c.send("CALL:1234");
    assertEquals(await c.next(), "RING_ANS:1234##out-1");
    finish();
    assertEquals((await run).code, 0);
    assertEquals((await c.closed).code, 1001, "closed when the run ends");
    assert(calls.log.includes("hangup out-1"));

    // With "optional", an empty token turns the bridge off (a log line), and the file runs.
    const optional = `${dir}/optional.json`;
    await Deno.writeTextFile(
      optional,
      JSON.stringify({
        parameters: { ws_token: { default: "", description: "token" } },
        control: { use: "fake-calls" },
        services: [{ use: "ws-bridge", port: 0, token: "${ws_token}", optional: true }],
        pipelines: {},
      }),
    );
    const quiet = new MemoryOutput();
    const runner3 = await PipelineRunner.load(optional, {
      registry,
      clock,
      log: new Logger({ level: "info", outputs: [quiet] }),
    });
    const run3 = runner3.run();
    await waitFor(() => quiet.lines.some((l) => l.includes("ws-bridge off")), "the off line");
    finish();
    assertEquals((await run3).code, 0);
    assertMatch(quiet.lines.join("\n"), /INFO {2}\[WS\] ws-bridge off: the token is empty \(optional\)/);
    // One line says it is off; no "started" line contradicts it.
    assertEquals(quiet.lines.filter((l) => l.includes("ws-bridge started")), []);

    // An empty token is refused at start, saying what to set.
    const runner2 = await PipelineRunner.load(path, { registry, clock, log: new Logger({ level: "silent" }) });
    const e = await runner2.run().then(() => undefined, (e) => e as Error);
    assertMatch(
      String(e?.message),
      /services\[0\]\.token: the token is empty: set one \(e\.g\. "token": "\$\{ws_token\}"/,
    );
  } finally {
    await c.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("ws-bridge: the token from an environment variable (token_env); neither or both refused", async () => {
  Deno.env.set("VOXPIPE_TEST_WS_TOKEN", TOKEN);
  const clock = new VirtualClock();
  const bridge = new WsBridge(wsBridgeOptions.parse({ token_env: "VOXPIPE_TEST_WS_TOKEN", port: 0 }), {
    calls: new FakeCalls(clock),
    clock,
  });
  await bridge.start();
  const ok = new WsClient(`ws://127.0.0.1:${bridge.port}/?token=${TOKEN}&protocol=text`);
  const wrong = new WsClient(`ws://127.0.0.1:${bridge.port}/?token=VOXPIPE_TEST_WS_TOKEN&protocol=text`);
  try {
    await ok.opened;
    assertEquals(await ok.sync(), []);
    assertEquals((await wrong.closed).code, 1008);
  } finally {
    await ok.close();
    await wrong.close();
    await bridge.close();
  }
  const neither = wsBridgeOptions.safeParse({});
  assertMatch(JSON.stringify(neither.error?.issues), /the token is empty: set one/);
  const both = wsBridgeOptions.safeParse({ token: "a", token_env: "B" });
  assertMatch(JSON.stringify(both.error?.issues), /set token or token_env, not both/);
  Deno.env.delete("VOXPIPE_TEST_WS_TOKEN");
  let err = "";
  try {
    new WsBridge(wsBridgeOptions.parse({ token_env: "VOXPIPE_TEST_WS_TOKEN" }), { calls: new FakeCalls(clock), clock });
  } catch (e) {
    err = String(e);
  }
  assertMatch(err, /token_env: the environment variable VOXPIPE_TEST_WS_TOKEN is not set or empty/);
});

Deno.test("ws-bridge: the client's audio starts once the call's chains have started (else after 25 ticks)", async () => {
  const r = await rig({ jitter_ms: 0 });
  try {
    r.calls.autoStart = false;
    const c = await r.connect(`token=${TOKEN}&protocol=text`);
    for (const n of [1, 2]) {
      c.send(`CALL:sip:x${n}@h`);
      await c.next();
      r.calls.answerRemote(`out-${n}`);
      await c.next();
      c.send(`RTP:out-${n}##${encodeAudio(AUDIO.subarray(0, 800), "l16")}`);
    }
    assertEquals(await c.sync(), []);
    r.clock.advance(200);
    assertEquals(r.calls.heard("out-1"), [], "nothing before the chains run: it would wait in their queue");
    r.calls.startChains("out-1");
    r.clock.advance(100);
    const heard = r.calls.heard("out-1");
    assert(heard.length >= 5, "a frame per tick from the start");
    heard.forEach((f, i) => assertEquals(f.pts, i * 160, "the stream starts at pts 0"));
    assertEquals(played(heard, 800), AUDIO.subarray(0, 800));
    // out-2's chains never say they started: it plays anyway after 25 ticks.
    assertEquals(r.calls.heard("out-2"), []);
    r.clock.advance(300);
    assertEquals(played(r.calls.heard("out-2"), 800), AUDIO.subarray(0, 800));
  } finally {
    await r.close();
  }
});

Deno.test("ws-bridge: commands under way are bounded per client (64); more get an error until they complete", async () => {
  const r = await rig();
  try {
    const c = await answeredCall(r, "sip:x@h");
    const hold = Promise.withResolvers<void>();
    r.calls.dtmfHold = hold.promise;
    for (let i = 0; i < 70; i++) c.send("DTMF:out-1##1");
    const errors: string[] = [];
    for (let i = 0; i < 6; i++) errors.push(await c.next());
    assertEquals(
      new Set(errors),
      new Set(["ERROR:64 commands are under way (DTMF takes its digits' time): wait for them"]),
    );
    assertEquals(r.calls.log.filter((l) => l.startsWith("dtmf")).length, 64);
    hold.resolve();
    assertEquals(await c.sync(), []);
    c.send("DTMF:out-1##2");
    assertEquals(await c.sync(), []);
    assertEquals(r.calls.log.at(-1), "dtmf out-1 2");
  } finally {
    await r.close();
  }
});

Deno.test("ws-bridge: refused connections free their max_clients slot at once; a peer that never answers the close has its TCP connection closed", async () => {
  const r = await rig({ max_clients: 2, auth_timeout: 5 });
  const raws: Deno.Conn[] = [];
  try {
    // Two connections without a token that never read past the handshake nor answer a close frame.
    for (let i = 0; i < 2; i++) raws.push(await stuckClient(r.bridge.port, ""));
    await waitFor(() => r.logs.lines.filter((l) => l.includes("connected, protocol")).length === 2, "both open");
    let full = "";
    try {
      raws.push(await stuckClient(r.bridge.port, `token=${TOKEN}`));
    } catch (e) {
      full = (e as Error).message;
    }
    assertMatch(full, /handshake refused: HTTP\/1\.1 503/, "max_clients are open");
    r.clock.advance(5000); // auth_timeout: both refused (1008)
    await waitFor(() => r.bridge.stats().authFailures === 2, "both refused");
    assertEquals(r.bridge.stats().connections, 0, "refused connections no longer count");

    // A client with the token gets in at once, while the refused peers still hold their TCP connections.
    const ok = await r.connect(`token=${TOKEN}&protocol=text`);
    assertEquals(await ok.sync(), []);

    // The refused peers got the close frame, then their TCP connections were closed by the bridge.
    for (const c of raws) {
      const f = new RawFrames(c);
      const close = await f.next();
      assertEquals(close && { code: close.code, reason: close.text }, { code: 1008, reason: "no token within 5 s" });
      await f.untilEnd();
      assert(f.ended);
    }
    await waitFor(() => r.bridge.stats().clientList.length === 1, "the refused connections forgotten");
  } finally {
    for (const c of raws) {
      try {
        c.close();
      } catch { /* closed */ }
    }
    await r.close();
  }
});

Deno.test("ws-bridge: a message longer than max_message_bytes is answered from its header, never held; bad frames closed 1002 / 1007", async () => {
  const r = await rig();
  const raws: Deno.Conn[] = [];
  try {
    // Authenticated: the error comes back before the payload is sent; the payload is then dropped as it comes.
    const c = await stuckClient(r.bridge.port, `token=${TOKEN}&protocol=text`);
    raws.push(c);
    const f = new RawFrames(c);
    await c.write(rawHeader(1, 60_000_000));
    assertEquals(await f.next(), {
      op: 1,
      text: `ERROR:message of 60000000 bytes is longer than ${256 * 1024}: ignored`,
    });
    const chunk = new Uint8Array(1 << 20).fill(0x41);
    for (let sent = 0; sent < 60_000_000;) {
      sent += await c.write(chunk.subarray(0, Math.min(chunk.length, 60_000_000 - sent)));
    }
    await sendRawText(c, "PING");
    assertEquals(await f.next(), { op: 1, text: "PONG" });
    assertEquals(r.bridge.stats().errors, 1);

    // Without a token: refused at once (1008), its connection closed.
    const u = await stuckClient(r.bridge.port, "");
    raws.push(u);
    const uf = new RawFrames(u);
    await u.write(rawHeader(1, 60_000_000));
    const close = await uf.next();
    assertEquals(close && [close.code, close.text], [1008, "token required (first message too long)"]);
    await uf.untilEnd();

    // An unmasked frame: 1002; a text message that is not UTF-8: 1007.
    const m = await stuckClient(r.bridge.port, `token=${TOKEN}&protocol=text`);
    raws.push(m);
    await m.write(new Uint8Array([0x81, 0x04, 0x50, 0x49, 0x4e, 0x47]));
    const mc = await new RawFrames(m).next();
    assertEquals(mc?.code, 1002);
    const x = await stuckClient(r.bridge.port, `token=${TOKEN}&protocol=text`);
    raws.push(x);
    await x.write(new Uint8Array([0x81, 0x83, 0, 0, 0, 0, 0x50, 0xff, 0xfe]));
    const xc = await new RawFrames(x).next();
    assertEquals(xc?.code, 1007);
    await waitFor(() => r.bridge.stats().connections === 1, "the two closed");
  } finally {
    for (const c of raws) {
      try {
        c.close();
      } catch { /* closed */ }
    }
    await r.close();
  }
});

Deno.test(`ws-bridge: marks waiting per call are bounded (${MAX_MARKS}); beyond, an error and the mark ignored`, async () => {
  const r = await rig();
  try {
    const c = await answeredCall(r, "sip:m@h");
    for (let i = 0; i < MAX_MARKS + 2; i++) c.send(`MARK:out-1##m${i}`);
    const before = await c.sync();
    assertEquals(before.length, 2);
    assertMatch(
      before[0],
      new RegExp(
        `^ERROR:call out-1: ${MAX_MARKS} marks wait for their audio already \\(at most ${MAX_MARKS} per call\\)`,
      ),
    );
    r.clock.advance(20);
    const echoed = (await c.until((m) => m === `MARK:out-1##m${MAX_MARKS - 1}`)).skipped.length + 1;
    assertEquals(echoed, MAX_MARKS);
    c.send("MARK:out-1##again");
    assertEquals(await c.sync(), []);
  } finally {
    await r.close();
  }
});

Deno.test("ws-bridge: a call's summary says how much of the client's audio was played, not queued", async () => {
  const r = await rig();
  try {
    const c = await answeredCall(r, "sip:s@h");
    c.send(`RTP:out-1##${encodeAudio(new Int16Array(8000 * 5).fill(100), "l16")}`); // 5 s
    await c.sync();
    r.clock.advance(400); // 20 frames
    c.send("HANGUP:out-1");
    await c.until((m) => m === "BYE:out-1");
    const line = r.logs.lines.find((l) => l.includes("call out-1 ended"))!;
    const m = /from client (\d+\.\d+) s played over (\d+) frames/.exec(line);
    assert(m, line);
    const secs = Number(m[1]);
    const frames = Number(m[2]);
    assert(secs > 0 && secs <= frames * 0.02, `${secs} s played over ${frames} frames of 20 ms: ${line}`);
  } finally {
    await r.close();
  }
});

Deno.test("ws-bridge: a flood of connections beyond max_clients gets 503 each, and the log one line, not one per connection", async () => {
  const r = await rig({ max_clients: 1 });
  try {
    const first = await r.connect(`token=${TOKEN}&protocol=text`);
    assertEquals(await first.sync(), []);
    let refused = 0;
    for (let i = 0; i < 30; i++) {
      try {
        (await stuckClient(r.bridge.port, `token=${TOKEN}`)).close();
      } catch (e) {
        if (/handshake refused: HTTP\/1\.1 503/.test((e as Error).message)) refused++;
      }
    }
    assertEquals(refused, 30);
    assertEquals(r.bridge.stats().refusedFull, 30);
    const lines = r.logs.lines.filter((l) => /WARN .*refus/.test(l));
    assertEquals(lines.length, 1, lines.join("\n"));
    assertMatch(lines[0], /refusing new connections: 1 connections open \(max_clients; last from 127\.0\.0\.1:\d+\)/);
  } finally {
    await r.close();
  }
});
