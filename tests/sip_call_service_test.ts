/**
 * The SIP control's call service (core/calls.ts) on the in-memory network and a VirtualClock: incoming calls with
 * and without deciders (answer, reject, ring then answer() / reject() / ring timeout), CANCEL before the answer,
 * dial (URIs, numbers through a registrar or an outbound proxy, ring timeout, errors), hang-up either way, events
 * for every state change with status and reason, `message` events in ladder order, periodic `stats` from the
 * session's media statistics, max_calls (486 or 503), max_duration, the time variables in a recording's name,
 * DTMF's seam, and shutdown (every call gets its BYE).
 */
import { assert, assertEquals, assertMatch, assertRejects } from "./assert.ts";
import { codecs } from "./registry_util.ts";
import { startSipControl } from "./sip_control_util.ts";
import type { VirtualClock } from "../core/clock.ts";
import type { CallEvent, CallService } from "../core/calls.ts";
import type { Controller, ControlResult } from "../core/control.ts";
import type { MemoryOutput } from "../core/log.ts";
import type { MemoryNetwork } from "../core/net/memory.ts";
import { sanitizeFileComponent } from "../core/paths.ts";
import { serializeRtp } from "../plugins/rtp/header.ts";
import { encodeTelephoneEvent } from "../plugins/rtp/telephone_event.ts";
import {
  createAnswer,
  createOffer,
  createResponse,
  getCallId,
  getCSeq,
  type IncomingCall,
  parseMessage,
  serializeMessage,
  type SipRequest,
  type SipResponse,
  SipUserAgent,
} from "../plugins/sip/mod.ts";
import { wavHeader } from "../plugins/wav/wav_format.ts";
import { repoPath, settleUntil } from "./util.ts";

const SERVER = { hostname: "10.0.0.2", port: 5062 };
const SERVER_URI = "sip:voxpipe@10.0.0.2:5062";
/** A sink whose end takes clock time (a recording finalized on a slow disk). */
const SLOW_END_SINK = repoPath("tests/fixtures/plugins/slow_end_sink.ts");

interface Harness {
  clock: VirtualClock;
  net: MemoryNetwork;
  controller: Controller;
  calls: CallService;
  events: CallEvent[];
  out: MemoryOutput;
  run: Promise<ControlResult>;
  abort: AbortController;
  dir: string;
  /** A user agent at `host` (port 5060). */
  peer(host: string, user?: string): SipUserAgent;
  /** Lets virtual time pass in 10 ms steps. */
  advance(ms: number): Promise<void>;
  /** Stops the controller, closes the peers, removes the directory; returns the run's result. */
  close(): Promise<ControlResult>;
}

/** A receive chain that records the caller: RTP from the call's port, G.711 decoded, into a wav-sink of `sink`. */
function recordingChain(sink: Record<string, unknown>): Record<string, unknown>[] {
  return [
    { use: "udp-source", port: "${local.rtp_port}", bind: "${local.bind}", peer: "${remote.rtp}", timeout: 60 },
    { use: "rtp-depacketizer", codec: "${codec}", payload_type: "${payloadType}" },
    { use: "jitter-buffer", ptime: "${ptime}" },
    { use: "g711-decoder" },
    { use: "wav-sink", ...sink },
  ];
}

/** The sip control (role server unless told) on a memory network, with a receive chain into a null sink. */
async function start(
  control: Record<string, unknown> = {},
  pipelines?: Record<string, unknown>,
  parameters: Record<string, unknown> = {},
  prepare?: (net: MemoryNetwork, clock: VirtualClock) => void,
): Promise<Harness> {
  const dir = await Deno.makeTempDir({ prefix: "voxpipe-calls-" });
  const file = `${dir}/server.json`;
  const cfg = {
    parameters,
    control: {
      use: "sip",
      role: "server",
      bind: SERVER.hostname,
      port: SERVER.port,
      linger: 0,
      hangup_on: ["receive"],
      rtp_ports: "30000-30019",
      ...control,
    },
    pipelines: pipelines ?? {
      receive: [
        { use: "udp-source", port: "${local.rtp_port}", bind: "${local.bind}", peer: "${remote.rtp}", timeout: 60 },
        { use: "null-sink" },
      ],
    },
  };
  const rig = await startSipControl(dir, file, cfg, prepare);
  const { clock, net, out, controller, abort, advance } = rig;
  const calls = controller.calls!;
  const events: CallEvent[] = [];
  calls.onEvent((e) => events.push(e));
  const run = (await rig.run()).result;
  const peers: SipUserAgent[] = [];
  await advance(10);
  return {
    clock,
    net,
    controller,
    calls,
    events,
    out,
    run,
    abort,
    dir,
    peer(host, user = "alice") {
      const ua = new SipUserAgent({ transport: net.bind(host, 5060), clock, userName: user });
      peers.push(ua);
      return ua;
    },
    advance,
    async close() {
      abort.abort();
      let done = false;
      run.finally(() => done = true);
      for (let i = 0; i < 200 && !done; i++) await advance(100);
      assert(done, `the controller stopped\n${out.lines.slice(-10).join("\n")}`);
      for (const p of peers) await p.close();
      await Deno.remove(dir, { recursive: true });
      return await run;
    },
  };
}

/** Alice's offer, RTP at host:40000. */
function offer(host = "10.0.0.1") {
  return createOffer({ registry: codecs, address: host, port: 40000 });
}

/** Types of the events of one call (without `message` and `stats`). */
function phases(events: CallEvent[], id: string): string[] {
  return events.filter((e) => e.call.id === id && e.type !== "message" && e.type !== "stats").map((e) => e.type);
}

/** The `message` events of a call as `→ INVITE` (sent) / `← 180 Ringing` (received), retransmissions left out. */
function ladder(events: CallEvent[], id: string): string[] {
  return events.filter((e) => e.call.id === id && e.type === "message" && !e.detail!.retransmission)
    .map((e) => `${e.detail!.direction === "sent" ? "→" : "←"} ${e.detail!.label}`);
}

Deno.test("call service: an incoming call without a decider is answered; events, ladder, stats, session, BYE from the peer", async () => {
  const h = await start();
  try {
    const alice = h.peer("10.0.0.1");
    const call = alice.invite(SERVER_URI, { sdp: offer() });
    await h.advance(100);
    assertEquals(call.state, "established");
    const list = h.calls.calls();
    assertEquals(list.length, 1);
    const info = list[0];
    assertMatch(info.id, /^[A-Za-z0-9._-]+$/);
    assertEquals({ ...info, id: "", startedAt: 0, answeredAt: 0, stats: undefined }, {
      id: "",
      direction: "in",
      state: "answered",
      remote: "sip:alice@10.0.0.1",
      local: "sip:voxpipe@10.0.0.2:5062",
      codec: "PCMU",
      startedAt: 0,
      answeredAt: 0,
      stats: undefined,
    });
    assert(info.answeredAt! >= info.startedAt);
    const session = h.calls.session(info.id);
    assert(session, "an answered call has a session");
    // RTP from where Alice's SDP said: counted in the session's statistics, reported by the periodic stats events.
    const ours = call.media(codecs);
    const rtp = h.net.bind("10.0.0.1", 40000);
    for (let k = 0; k < 100; k++) {
      h.clock.after(20 * k, () =>
        void rtp.send(
          serializeRtp({
            kind: "rtp",
            payloadType: 0,
            sequence: k,
            timestamp: 160 * k,
            ssrc: 7,
            marker: false,
            payload: new Uint8Array(160).fill(0xff),
            codec: "PCMU",
            clockRate: 8000,
          }),
          { hostname: ours.remoteAddress, port: ours.remotePort },
        ));
    }
    await h.advance(6000);
    const stats = h.events.filter((e) => e.type === "stats" && e.call.id === info.id);
    assert(stats.length >= 1, "a stats event within 6 s (stats_interval 5)");
    assertEquals(stats[0].detail!.packetsReceived, 100);
    assertEquals(h.calls.call(info.id)!.stats!.packetsReceived, 100);
    void call.hangup();
    await h.advance(200);
    assertEquals(phases(h.events, info.id), ["incoming", "answered", "ended"]);
    const ended = h.events.find((e) => e.type === "ended")!;
    assertEquals(ended.call.state, "ended");
    assertEquals(ended.call.reason, "remote: BYE");
    assertEquals(ended.detail!.by, "remote");
    assertEquals((ended.detail!.summary as { packetsReceived: number }).packetsReceived, 100);
    assertEquals(h.events.find((e) => e.type === "answered")!.detail, { status: 200, codec: "PCMU" });
    assertEquals(h.calls.session(info.id), undefined);
    assertEquals(h.calls.call(info.id)!.state, "ended", "an ended call stays listed");
    // The ladder, as the server saw it: every message of the call, in order, with direction and peer.
    const l = ladder(h.events, info.id);
    const want = ["← INVITE", "→ 180 Ringing", "→ 200 OK", "← ACK", "← BYE", "→ 200 OK"];
    assertEquals(l.filter((x) => !x.includes("100 Trying")), want);
    const first = h.events.find((e) => e.type === "message")!;
    assertEquals(first.detail!.remote, "10.0.0.1:5060");
    assertEquals(first.detail!.cseq, "1 INVITE");
    assertEquals(first.detail!.sdp, true);
    // The INVITE's arrow comes before the incoming event.
    const iInvite = h.events.indexOf(first), iIncoming = h.events.findIndex((e) => e.type === "incoming");
    assert(iInvite < iIncoming);
  } finally {
    await h.close();
  }
});

Deno.test("call service: deciders: reject with a status; ring then answer(); ring then reject(); ring timeout 480; the newest decides", async () => {
  const h = await start({ ring_timeout: 5 });
  try {
    const alice = h.peer("10.0.0.1");
    const off = h.calls.onIncoming((c) =>
      c.remote === "sip:alice@10.0.0.1" ? { action: "reject", status: 486 } : { action: "answer" }
    );
    const c1 = alice.invite(SERVER_URI, { sdp: offer() });
    await h.advance(100);
    assertEquals(c1.state, "ended");
    assertEquals(c1.endInfo, { by: "remote", reason: "486 Busy Here", status: 486 });
    const id1 = h.events.find((e) => e.type === "incoming")!.call.id;
    assertEquals(phases(h.events, id1), ["incoming", "ended"]);
    assertEquals(h.calls.call(id1)!.reason, "local: 486 Busy Here");
    assertEquals(h.calls.call(id1)!.status, 486);

    // A newer decider rings; answer() later answers.
    const offRing = h.calls.onIncoming(() => ({ action: "ring" }));
    const c2 = alice.invite(SERVER_URI, { sdp: offer() });
    await h.advance(2000);
    assertEquals(c2.state, "proceeding");
    const id2 = h.calls.calls().find((c) => c.state === "ringing")!.id;
    await assertRejects(() => h.calls.answer("nope"), Error, 'no call "nope"');
    const answering = h.calls.answer(id2);
    await h.advance(50);
    await answering;
    assertEquals(c2.state, "established");
    await assertRejects(
      () => h.calls.answer(id2),
      Error,
      `cannot answer call ${id2}: it is an incoming call, answered`,
    );
    const hung = h.calls.hangup(id2);
    await h.advance(100);
    await hung;
    await h.advance(100);
    assertEquals(c2.state, "ended");

    // Ring then reject() with a status and reason.
    const c3 = alice.invite(SERVER_URI, { sdp: offer() });
    await h.advance(100);
    const id3 = h.calls.calls().find((c) => c.state === "ringing")!.id;
    await assertRejects(() => h.calls.reject(id3, 200), RangeError, "300–699");
    await h.calls.reject(id3, 603, "Not Today");
    await h.advance(50);
    assertEquals(c3.endInfo, { by: "remote", reason: "603 Not Today", status: 603 });

    // Left ringing: 480 after ring_timeout.
    const c4 = alice.invite(SERVER_URI, { sdp: offer() });
    await h.advance(4900);
    assertEquals(c4.state, "proceeding");
    await h.advance(200);
    assertEquals(c4.endInfo?.status, 480);

    // Without the ringing decider, the older one decides again; without any, calls are answered.
    offRing();
    const c5 = alice.invite(SERVER_URI, { sdp: offer() });
    await h.advance(100);
    assertEquals(c5.endInfo?.status, 486);
    off();
    const c6 = alice.invite(SERVER_URI, { sdp: offer() });
    await h.advance(100);
    assertEquals(c6.state, "established");
    void c6.hangup();

    // A decider that throws or answers nonsense: 500, logged.
    h.calls.onIncoming(() => ({ action: "maybe" } as never));
    const c7 = alice.invite(SERVER_URI, { sdp: offer() });
    await h.advance(100);
    assertEquals(c7.endInfo?.status, 500);
    assert(h.out.lines.some((l) => /decider failed: .*expected \{action/.test(l)));
  } finally {
    await h.close();
  }
});

Deno.test("call service: CANCEL before the answer ends the call (remote: CANCEL, 487); hangup() of a ringing call declines it", async () => {
  const h = await start();
  try {
    const alice = h.peer("10.0.0.1");
    h.calls.onIncoming(() => ({ action: "ring" }));
    const c = alice.invite(SERVER_URI, { sdp: offer() });
    await h.advance(100);
    const id = h.calls.calls()[0].id;
    c.cancel();
    await h.advance(100);
    assertEquals(c.endInfo, { by: "local", reason: "cancelled", status: 487 });
    const ended = h.events.find((e) => e.type === "ended" && e.call.id === id)!;
    assertEquals(ended.call.reason, "remote: CANCEL");
    assertEquals(ended.call.status, 487);
    assert(ladder(h.events, id).includes("← CANCEL"));
    assert(ladder(h.events, id).includes("→ 487 Request Terminated"));
    await assertRejects(() => h.calls.answer(id), Error, "cannot answer");

    const c2 = alice.invite(SERVER_URI, { sdp: offer() });
    await h.advance(100);
    const id2 = h.calls.calls().find((x) => x.state === "ringing")!.id;
    const hung = h.calls.hangup(id2);
    await h.advance(100);
    await hung;
    await h.advance(100);
    assertEquals(c2.endInfo?.status, 603);
  } finally {
    await h.close();
  }
});

/** Bob at `host` answers every call (SDP answer, RTP at host:42000); returns the calls he got. */
function answering(ua: SipUserAgent, host: string): IncomingCall[] {
  const got: IncomingCall[] = [];
  ua.onInvite((call) => {
    got.push(call);
    call.ringing();
    call.accept(createAnswer(call.offer!, { registry: codecs, address: host, port: 42000 }));
  });
  return got;
}

Deno.test("call service: dial a SIP URI: dialing, progress 180, answered, hangup() sends BYE; variables reach the chains", async () => {
  const h = await start({}, {
    receive: recordingChain({ path: "${pipeline.dir}/${greeting}.wav" }),
  }, { greeting: { default: "default-name" } });
  try {
    const bob = h.peer("10.0.0.3", "bob");
    const got = answering(bob, "10.0.0.3");
    // A parameter-like variable for this call's chains; the control's own variables cannot be set.
    await assertRejects(
      () => h.calls.dial("sip:bob@10.0.0.3", { variables: { "remote.rtp": "10.9.9.9:1" } }),
      Error,
      'variable "remote.rtp" is the sip control\'s own',
    );
    const info = await h.calls.dial("sip:bob@10.0.0.3", { variables: { greeting: "hello-sink" } });
    assertEquals(info.state, "dialing");
    assertEquals(info.direction, "out");
    assertEquals(info.remote, "sip:bob@10.0.0.3");
    await h.advance(100);
    assertEquals(got.length, 1);
    assertEquals(got[0].state, "established", h.out.lines.join("\n"));
    assertEquals(h.calls.call(info.id)!.state, "answered");
    assertEquals(phases(h.events, info.id), ["dialing", "progress", "answered"]);
    const progress = h.events.find((e) => e.type === "progress")!;
    assertEquals(progress.detail, { status: 180, reason: "Ringing", early_media: false });
    assertEquals(progress.call.state, "ringing");
    assert(h.calls.session(info.id), "an answered call has a session");
    const hung = h.calls.hangup(info.id);
    await h.advance(100);
    await hung;
    await h.advance(100);
    assertEquals(got[0].endInfo, { by: "remote", reason: "BYE" });
    const ended = h.calls.call(info.id)!;
    assertEquals(ended.reason, "local: hung up by the application");
    assertEquals(
      ladder(h.events, info.id).filter((x) => !x.includes("100 Trying")),
      ["→ INVITE", "← 180 Ringing", "← 200 OK", "→ ACK", "→ BYE", "← 200 OK"],
    );
    // The dial's variable named the recording (the file's parameter, for this call).
    const files = [...Deno.readDirSync(h.dir)].map((e) => e.name).filter((n) => n.endsWith(".wav"));
    assertEquals(files, ["hello-sink.wav"]);
  } finally {
    await h.close();
  }
});

Deno.test("call service: dial a number: through the registrar (sip:<number>@<registrar>), through the outbound proxy, or refused", async () => {
  // A registrar that also receives the calls (a PBX).
  {
    let pbx!: SipUserAgent;
    const h = await start({ registrar: "sip:10.0.0.9:5070", user: "server" }, undefined, {}, (net, clock) => {
      pbx = new SipUserAgent({ transport: net.bind("10.0.0.9", 5070), clock, userName: "pbx" });
      pbx.onRegister((r) => ({ status: 200, contacts: r.contacts.map((c) => ({ uri: c.uri, expires: 600 })) }));
    });
    try {
      const got: SipRequest[] = [];
      pbx.onInvite((call) => {
        got.push(call.request);
        call.reject(486);
      });
      await h.advance(1000);
      const info = await h.calls.dial("1002");
      await h.advance(200);
      assertEquals(got.length, 1);
      assertEquals(got[0].uri, "sip:1002@10.0.0.9:5070");
      assertEquals(info.remote, "sip:1002@10.0.0.9:5070");
      assertEquals(h.calls.call(info.id)!.reason, "remote: 486 Busy Here");
      assertEquals(h.calls.call(info.id)!.status, 486);
    } finally {
      await h.close();
      await pbx.close();
    }
  }
  {
    const h = await start({ outbound_proxy: "sip:10.0.0.8:5080" });
    const proxy = new SipUserAgent({ transport: h.net.bind("10.0.0.8", 5080), clock: h.clock, userName: "proxy" });
    try {
      const got: SipRequest[] = [];
      proxy.onInvite((call) => {
        got.push(call.request);
        call.reject(404);
      });
      await h.calls.dial("+33123");
      await h.advance(200);
      assertEquals(got[0].uri, "sip:+33123@10.0.0.8:5080");
      assertEquals(got[0].headers.get("Route"), "<sip:10.0.0.8:5080;lr>");
    } finally {
      await h.close();
      await proxy.close();
    }
  }
  {
    const h = await start();
    try {
      await assertRejects(() => h.calls.dial("1002"), Error, "there is no registrar or outbound proxy");
      await assertRejects(() => h.calls.dial("bob smith"), Error, "neither a SIP URI");
      await assertRejects(() => h.calls.dial(" "), Error, "the target is empty");
    } finally {
      await h.close();
    }
  }
  {
    const h = await start({ role: "callee" });
    try {
      await assertRejects(() => h.calls.dial("sip:bob@10.0.0.3"), Error, 'in role "server" (this one is "callee")');
    } finally {
      await h.close();
    }
  }
});

Deno.test("call service: dial with no answer: CANCEL after ringTimeout; nobody there: ended at once with the reason", async () => {
  const h = await start();
  try {
    const bob = h.peer("10.0.0.3", "bob");
    const got: IncomingCall[] = [];
    bob.onInvite((call) => {
      got.push(call);
      call.ringing();
    });
    const info = await h.calls.dial("sip:bob@10.0.0.3", { ringTimeout: 3 });
    await h.advance(2900);
    assertEquals(h.calls.call(info.id)!.state, "ringing");
    await h.advance(300);
    assertEquals(got[0].endInfo, { by: "remote", reason: "CANCEL", status: 487 });
    const ended = h.calls.call(info.id)!;
    assertEquals(ended.state, "ended");
    assertEquals(ended.reason, "local: no answer within 3 s");
    assert(ladder(h.events, info.id).includes("→ CANCEL"));

    const gone = await h.calls.dial("sip:nobody@10.0.0.99");
    await h.advance(100);
    assertMatch(h.calls.call(gone.id)!.reason!, /^error: 10\.0\.0\.99:5060 unreachable/);
    assertEquals(h.calls.call(gone.id)!.status, 503);
  } finally {
    await h.close();
  }
});

Deno.test("call service: max_calls: beyond it 486 (busy_status 486) or 503 with Retry-After (default); dial refused", async () => {
  for (const busy of [486, 503]) {
    const h = await start({ max_calls: 2, busy_status: busy });
    try {
      const alice = h.peer("10.0.0.1");
      const a = alice.invite(SERVER_URI, { sdp: offer() });
      const b = alice.invite(SERVER_URI, { sdp: offer() });
      await h.advance(100);
      const c = alice.invite(SERVER_URI, { sdp: offer() });
      await h.advance(100);
      assertEquals([a.state, b.state], ["established", "established"]);
      assertEquals(c.endInfo?.status, busy);
      assertEquals(h.calls.calls().length, 2, "a refused call is not listed");
      await assertRejects(() => h.calls.dial("sip:bob@10.0.0.3"), Error, "max_calls is 2");
      void a.hangup();
      await h.advance(100);
      const d = alice.invite(SERVER_URI, { sdp: offer() });
      await h.advance(100);
      assertEquals(d.state, "established", "room again once a call ended");
    } finally {
      await h.close();
    }
  }
});

Deno.test("call service: max_duration hangs up an answered call; shutdown sends BYE to every call and ends them all", async () => {
  const h = await start({ max_duration: 3 });
  try {
    const alice = h.peer("10.0.0.1");
    const a = alice.invite(SERVER_URI, { sdp: offer() });
    await h.advance(2000);
    const b = alice.invite(SERVER_URI, { sdp: offer() });
    await h.advance(1100);
    assertEquals(a.endInfo, { by: "remote", reason: "BYE" });
    const idA = h.events.find((e) => e.type === "incoming")!.call.id;
    assertEquals(h.calls.call(idA)!.reason, "local: max_duration (3 s) reached");
    assertEquals(b.state, "established");
    const bob = h.peer("10.0.0.3", "bob");
    answering(bob, "10.0.0.3");
    const out = await h.calls.dial("sip:bob@10.0.0.3");
    await h.advance(100);
    assertEquals(h.calls.call(out.id)!.state, "answered");
  } finally {
    const result = await h.close();
    assertEquals(result, { code: 0 });
  }
  // Every call got its BYE and its ended event.
  const ended = h.events.filter((e) => e.type === "ended");
  assertEquals(ended.length, 3);
  for (const e of ended.slice(1)) assertEquals(e.call.reason, "local: interrupted");
  assert(ended.slice(1).every((e) => ladder(h.events, e.call.id).includes("→ BYE")));
});

Deno.test("call service: call ids are the file-safe Call-ID; ${date} ${time} ${call.start} ${call.direction} name recordings", async () => {
  const h = await start({}, {
    receive: recordingChain({ path: "${pipeline.dir}/${date}_${time}_${call.start}_${call.direction}_${call.id}.wav" }),
  });
  try {
    const alice = h.peer("10.0.0.1");
    const c1 = alice.invite(SERVER_URI, { sdp: offer() });
    await h.advance(100);
    const id1 = h.calls.calls()[0].id;
    assertEquals(id1, sanitizeFileComponent(c1.callId));
    void c1.hangup();
    await h.advance(200);
    const info = h.calls.call(id1)!;
    const d = new Date(info.startedAt);
    const p = (n: number) => String(n).padStart(2, "0");
    const date = `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}`;
    const time = `${p(d.getHours())}-${p(d.getMinutes())}-${p(d.getSeconds())}`;
    const start = `${date.replaceAll("-", "")}-${time.replaceAll("-", "")}`;
    const files = [...Deno.readDirSync(h.dir)].map((e) => e.name).filter((n) => n.endsWith(".wav"));
    assertEquals(files, [`${date}_${time}_${start}_in_${id1}.wav`]);
  } finally {
    await h.close();
  }
});

Deno.test("call service: a call's duration and end time leave out its media's teardown (a sink that takes 800 ms to end)", async () => {
  const h = await start({}, {
    receive: [
      { use: "udp-source", port: "${local.rtp_port}", bind: "${local.bind}", peer: "${remote.rtp}", timeout: 60 },
      { use: SLOW_END_SINK, end_ms: 800 },
    ],
  });
  try {
    const alice = h.peer("10.0.0.1");
    const call = alice.invite(SERVER_URI, { sdp: offer() });
    await h.advance(100);
    assertEquals(call.state, "established");
    const id = h.calls.calls()[0].id;
    await h.advance(3000);
    void call.hangup();
    const byeAt = h.clock.now();
    await settleUntil(h.clock, () => h.events.some((e) => e.type === "ended"), "the ended event", 3000);
    const ended = h.events.find((e) => e.type === "ended")!;
    // The ended event came once the sink had ended, 800 ms after the BYE; the call ended with the BYE.
    assert(h.clock.now() - byeAt >= 800, `${h.clock.now() - byeAt} ms from the BYE to the ended event`);
    const info = h.calls.call(id)!;
    const lasted = info.endedAt! - info.answeredAt!;
    assert(lasted >= 3000 && lasted <= 3150, `the call lasted ${lasted} ms`);
    const summary = ended.detail!.summary as { duration: number };
    assertEquals(summary.duration, Math.round(lasted / 100) / 10);
    assert(h.out.lines.some((l) => l.includes(`call summary: duration=${summary.duration}s `)), h.out.lines.join("\n"));
  } finally {
    await h.close();
  }
});

Deno.test("call service: calls with the same Call-ID, one after the other and at once, get a recording each", async () => {
  const h = await start({ keep_summaries: 0 }, {
    receive: recordingChain({ path: "${pipeline.dir}/${call.id}.wav", if_exists: "number" }),
  });
  try {
    const alice = h.peer("10.0.0.1");
    const callId = "reused@10.0.0.1";
    // One after the other: the first call is forgotten (keep_summaries 0), so the second gets the same call id.
    for (let i = 0; i < 2; i++) {
      const c = alice.invite(SERVER_URI, { sdp: offer(), callId });
      await h.advance(100);
      assertEquals(c.state, "established");
      void c.hangup();
      await h.advance(300);
    }
    // At once: the same Call-ID with two From tags.
    const c3 = alice.invite(SERVER_URI, { sdp: offer(), callId });
    const c4 = alice.invite(SERVER_URI, { sdp: offer(), callId });
    await h.advance(100);
    assertEquals([c3.state, c4.state], ["established", "established"]);
    void c3.hangup();
    void c4.hangup();
    // Each call's ended event follows its recording's finalization (real file operations).
    await settleUntil(h.clock, () => h.events.filter((e) => e.type === "ended").length >= 4, "four ended events");
    assertEquals(h.events.filter((e) => e.type === "ended").length, 4);
    const files = [...Deno.readDirSync(h.dir)].map((e) => e.name).filter((n) => n.endsWith(".wav")).sort();
    assertEquals(files.length, 4, `four recordings, none overwritten: ${files.join(", ")}`);
    for (const f of files) {
      assertMatch(f, /^reused_10\.0\.0\.1/);
      const head = Deno.readFileSync(`${h.dir}/${f}`).subarray(0, 12);
      assertEquals(
        new TextDecoder().decode(head.subarray(0, 4)) + new TextDecoder().decode(head.subarray(8)),
        "RIFFWAVE",
      );
    }
  } finally {
    await h.close();
  }
});

Deno.test("call service: sendDtmf checks its digits and the call; without a dtmf-sender stage it says where to put one", async () => {
  const h = await start();
  try {
    const alice = h.peer("10.0.0.1");
    alice.invite(SERVER_URI, { sdp: offer() });
    await h.advance(100);
    const id = h.calls.calls()[0].id;
    await assertRejects(() => h.calls.sendDtmf(id, "12x"), Error, "expected DTMF digits");
    await assertRejects(() => h.calls.sendDtmf("nope", "1"), Error, 'no call "nope"');
    await assertRejects(() => h.calls.sendDtmf(id, "1#"), Error, "has no dtmf-sender stage");
  } finally {
    await h.close();
  }
});

Deno.test("call service: sendDtmf sends RFC 4733 events in the call's RTP stream, with the payload type of the offer", async () => {
  const h = await start({ hangup_on: ["send"] }, {
    send: [
      { use: "tone-source", duration: 3 },
      { use: "g711-encoder", codec: "${codec}" },
      { use: "rtp-packetizer", payload_type: "${payloadType}" },
      { use: "dtmf-sender", payload_type: "${dtmf.payloadType}" },
      { use: "udp-sink", to: "${remote.rtp}", bind: "${local.bind}", local_port: "${local.rtp_port}" },
    ],
  });
  try {
    const alice = h.peer("10.0.0.1");
    const sdp = createOffer({ registry: codecs, address: "10.0.0.1", port: 40000, telephoneEvent: true });
    const te = Number(/a=rtpmap:(\d+) telephone-event\/8000/.exec(sdp)![1]);
    const rtp = h.net.bind("10.0.0.1", 40000);
    const events: { pt: number; event: number; end: boolean }[] = [];
    let audio = 0;
    rtp.listen((data) => {
      const pt = data[1] & 0x7f;
      if (pt === te) events.push({ pt, event: data[12], end: (data[13] & 0x80) !== 0 });
      else audio++;
    });
    alice.invite(SERVER_URI, { sdp });
    await h.advance(200);
    const id = h.calls.calls()[0].id;
    const sent = h.calls.sendDtmf(id, "5#", { durationMs: 100, gapMs: 60 });
    await h.advance(1000);
    await sent;
    assert(audio > 0, "audio packets reached the caller");
    const ends = events.filter((e) => e.end);
    assertEquals([...new Set(ends.map((e) => e.event))], [5, 11], "digit 5 then # (event 11), each ended");
    assert(events.length > ends.length, "start/continuation packets before the end packets");
  } finally {
    await h.close();
  }
});

Deno.test("call service: DTMF received in a call's RTP (RFC 4733) is a dtmf event with the digit and how long it was held", async () => {
  const h = await start({}, {
    receive: [
      { use: "udp-source", port: "${local.rtp_port}", bind: "${local.bind}", peer: "${remote.rtp}", timeout: 60 },
      {
        use: "rtp-depacketizer",
        codec: "${codec}",
        payload_type: "${payloadType}",
        dtmf_payload_type: "${dtmf.payloadType}",
      },
      { use: "null-sink" },
    ],
  });
  try {
    const alice = h.peer("10.0.0.1");
    const sdp = createOffer({ registry: codecs, address: "10.0.0.1", port: 40000, telephoneEvent: true });
    const te = Number(/a=rtpmap:(\d+) telephone-event\/8000/.exec(sdp)![1]);
    const call = alice.invite(SERVER_URI, { sdp });
    await h.advance(100);
    assertEquals(call.state, "established");
    const id = h.calls.calls()[0].id;
    const ours = call.media(codecs);
    const rtp = h.net.bind("10.0.0.1", 40000);
    // Audio, then digit 9 held 120 ms (960 units: 6 packets, the last one sent three times with the E bit), audio.
    let seq = 0;
    const send = (at: number, payloadType: number, payload: Uint8Array, timestamp: number, marker = false) =>
      h.clock.after(at, () =>
        void rtp.send(
          serializeRtp({ kind: "rtp", payloadType, sequence: seq++, timestamp, ssrc: 9, marker, payload }),
          { hostname: ours.remoteAddress, port: ours.remotePort },
        ));
    for (let k = 0; k < 10; k++) send(20 * k, 0, new Uint8Array(160).fill(0xff), 160 * k);
    for (let k = 1; k <= 6; k++) {
      const end = k === 6;
      const payload = encodeTelephoneEvent({ event: 9, end, volume: 10, duration: 160 * k });
      for (let r = 0; r < (end ? 3 : 1); r++) send(200 + 20 * k + r, te, payload, 1600, k === 1);
    }
    for (let k = 0; k < 10; k++) send(400 + 20 * k, 0, new Uint8Array(160).fill(0xff), 3200 + 160 * k);
    await h.advance(1000);
    const dtmf = h.events.filter((e) => e.type === "dtmf");
    assertEquals(dtmf.map((e) => ({ id: e.call.id, ...e.detail }) as Record<string, unknown>), [
      { id, digit: "9", durationMs: 120 },
    ]);
    void call.hangup();
    await h.advance(200);
    assertEquals(phases(h.events, id), ["incoming", "answered", "dtmf", "ended"]);
  } finally {
    await h.close();
  }
});

// ---- a scripted peer that writes its requests by hand (what a real phone may send) --------------------------------

/** A SIP peer at host:5060 that sends hand-written requests and keeps every message it gets, parsed. */
function rawPeer(h: Harness, host = "10.0.0.1") {
  const sock = h.net.bind(host, 5060);
  const got: SipResponse[] = [];
  const requests: SipRequest[] = [];
  sock.listen((d) => {
    const m = parseMessage(d);
    if (m.kind === "response") got.push(m);
    else {
      requests.push(m);
      // A BYE gets its 200 (the controller waits for its BYEs' transactions when it stops).
      if (m.method === "BYE") void sock.send(serializeMessage(createResponse(m, 200)), SERVER);
    }
  });
  let n = 0;
  return {
    got,
    requests,
    /** Responses to the request with this Call-ID, CSeq number and method, as `status reason`. */
    answers(callId: string, seq: number, method: string): string[] {
      return got.filter((r) => getCallId(r) === callId && getCSeq(r).seq === seq && getCSeq(r).method === method)
        .map((r) => `${r.status} ${r.reason}`);
    },
    /** The To tag of the first response with one to this Call-ID. */
    toTag(callId: string): string {
      const r = got.find((r) => getCallId(r) === callId && /;tag=/.test(r.headers.get("To")!))!;
      return /;tag=([^;\s]+)/.exec(r.headers.get("To")!)![1];
    },
    /** Sends a request; returns its text. `toTag` makes it in-dialog. */
    send(o: {
      method: string;
      callId: string;
      seq: number;
      toTag?: string;
      branch?: string;
      sdp?: string;
      extra?: string[];
      /** The Contact URI (default `sip:alice@<host>:5060`, where the peer is). */
      contact?: string;
    }): string {
      const body = o.sdp ?? "";
      const text = [
        `${o.method} ${SERVER_URI} SIP/2.0`,
        `Via: SIP/2.0/UDP ${host}:5060;branch=${o.branch ?? `z9hG4bK-raw-${++n}`};rport`,
        "Max-Forwards: 70",
        `From: <sip:alice@${host}>;tag=raw-${o.callId}`,
        `To: <${SERVER_URI}>${o.toTag ? `;tag=${o.toTag}` : ""}`,
        `Call-ID: ${o.callId}`,
        `CSeq: ${o.seq} ${o.method}`,
        `Contact: <${o.contact ?? `sip:alice@${host}:5060`}>`,
        ...(o.extra ?? []),
        ...(body ? ["Content-Type: application/sdp"] : []),
        `Content-Length: ${new TextEncoder().encode(body).length}`,
        "",
        body,
      ].join("\r\n");
      void sock.send(new TextEncoder().encode(text), SERVER);
      return text;
    },
    resend(text: string) {
      void sock.send(new TextEncoder().encode(text), SERVER);
    },
  };
}

Deno.test("call service: a BYE in the early dialog (after 180, before the answer): 200 to the BYE, 487 to the INVITE; the call ends, never answered", async () => {
  const h = await start({ answer_after: 5 });
  try {
    const peer = rawPeer(h);
    const inv = peer.send({ method: "INVITE", callId: "early-bye", seq: 1, branch: "z9hG4bK-early-inv", sdp: offer() });
    await h.advance(100);
    assertEquals(peer.answers("early-bye", 1, "INVITE"), ["180 Ringing"]);
    const tag = peer.toTag("early-bye");
    peer.send({ method: "BYE", callId: "early-bye", seq: 2, toTag: tag });
    await h.advance(100);
    assertEquals(peer.answers("early-bye", 2, "BYE"), ["200 OK"]);
    assertEquals(peer.answers("early-bye", 1, "INVITE"), ["180 Ringing", "487 Request Terminated"]);
    // The INVITE's transaction completed: a retransmission of the INVITE gets the 487 again, not a 180.
    peer.resend(inv);
    await h.advance(100);
    assertEquals(peer.answers("early-bye", 1, "INVITE").slice(2), ["487 Request Terminated"]);
    peer.send({ method: "ACK", callId: "early-bye", seq: 1, toTag: tag, branch: "z9hG4bK-early-inv" });
    await settleUntil(h.clock, () => h.events.some((e) => e.type === "ended"), "the call's ended event");
    const id = h.events[0].call.id;
    assertEquals(phases(h.events, id), ["incoming", "ended"]);
    const ended = h.events.find((e) => e.type === "ended")!;
    assertEquals(ended.call.reason, "remote: BYE");
    const summary = ended.detail!.summary as { answered: boolean; packetsSent: number; endedBy: string };
    assertEquals([summary.answered, summary.packetsSent, summary.endedBy], [false, 0, "remote"]);
    assertEquals(h.calls.call(id)!.state, "ended");
    // answer_after passes: nothing is answered, no media starts.
    await h.advance(6000);
    assertEquals(peer.answers("early-bye", 1, "INVITE").filter((s) => s.startsWith("2")), []);
    assert(!h.out.lines.some((l) => l.includes("media:")), "no media started");
    assert(!h.out.lines.some((l) => l.includes("ERROR")), h.out.lines.filter((l) => l.includes("ERROR")).join("\n"));
  } finally {
    await h.close();
  }
});

Deno.test("call service: dialog_to_source (default): the BYE for a call we answered goes where its INVITE came from, never to a third host its Contact names; false: to the Contact", async () => {
  for (const toSource of [true, false]) {
    const h = await start(toSource ? {} : { dialog_to_source: false });
    try {
      const peer = rawPeer(h);
      // The "third party" the caller's Contact names: another port, where the caller does not listen.
      const third = h.net.bind("10.0.0.1", 5099);
      const thirdGot: SipRequest[] = [];
      third.listen((d) => {
        const m = parseMessage(d);
        if (m.kind !== "request") return;
        thirdGot.push(m);
        if (m.method === "BYE") void third.send(serializeMessage(createResponse(m, 200)), SERVER);
      });
      peer.send({ method: "INVITE", callId: "contact", seq: 1, sdp: offer(), contact: "sip:alice@10.0.0.1:5099" });
      await h.advance(100);
      assertEquals(peer.answers("contact", 1, "INVITE").at(-1), "200 OK");
      peer.send({ method: "ACK", callId: "contact", seq: 1, toTag: peer.toTag("contact") });
      await h.advance(100);
      const id = h.calls.calls()[0].id;
      assertEquals(h.calls.call(id)!.state, "answered");
      const hung = h.calls.hangup(id);
      await h.advance(100);
      await hung;
      const byes = (got: SipRequest[]) => got.filter((r) => r.method === "BYE" && getCallId(r) === "contact").length;
      if (toSource) {
        assert(byes(peer.requests) >= 1, "the BYE reached the caller, where its INVITE came from");
        assertEquals(thirdGot.length, 0, "nothing was sent to the host the Contact names");
      } else {
        assert(byes(thirdGot) >= 1, "dialog_to_source false: the BYE went to the Contact");
        assertEquals(byes(peer.requests), 0);
      }
      assertEquals(h.calls.call(id)!.state, "ended");
    } finally {
      await h.close();
    }
  }
});

Deno.test("call service: an offer the call's media cannot use is refused before answering (488 or 400, naming the problem in a Warning), never answered then hung up", async () => {
  const h = await start();
  try {
    const peer = rawPeer(h);
    const rtp: Uint8Array[] = [];
    h.net.bind("10.0.0.1", 40000).listen((d) => void rtp.push(d));
    const o = (lines: { c?: string; m?: string; extra?: string[] }) =>
      [
        "v=0",
        "o=- 1 1 IN IP4 10.0.0.1",
        "s=-",
        ...(lines.c === "" ? [] : [lines.c ?? "c=IN IP4 10.0.0.1"]),
        "t=0 0",
        lines.m ?? "m=audio 40000 RTP/AVP 0 101",
        "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:101 telephone-event/8000",
        ...(lines.extra ?? []),
        "",
      ].join("\r\n");
    const cases: [string, string, number, RegExp][] = [
      ["no-c", o({ c: "" }), 400, /no connection address/],
      ["dnsname", o({ c: "c=IN IP4 rtp.example.com" }), 488, /not an IP address/],
      ["c0000", o({ c: "c=IN IP4 0.0.0.0" }), 488, /0\.0\.0\.0 is the unspecified address/],
      ["multicast", o({ c: "c=IN IP4 239.1.1.1" }), 488, /multicast/],
      ["ipv6", o({ c: "c=IN IP6 2001:db8::1" }), 488, /IPv6, RTP is bound to 10\.0\.0\.2 \(IPv4\)/],
      ["ptime0", o({ extra: ["a=ptime:0"] }), 488, /a=ptime:0/],
      ["ptime2.5", o({ extra: ["a=ptime:2.5"] }), 488, /a=ptime:2\.5: the packet time must be a whole 10-60 ms/],
      ["ptime1000", o({ extra: ["a=ptime:1000"] }), 488, /a=ptime:1000/],
      ["pt200", o({ m: "m=audio 40000 RTP/AVP 200", extra: ["a=rtpmap:200 PCMU/8000"] }), 488, /payload type 200/],
      ["port65535", o({ m: "m=audio 65535 RTP/AVP 0" }), 488, /RTCP port 65536/],
    ];
    for (const [name, sdp] of cases) peer.send({ method: "INVITE", callId: `bad-${name}`, seq: 1, sdp });
    await h.advance(500);
    for (const [name, , status, why] of cases) {
      const finals = peer.got.filter((r) => getCallId(r) === `bad-${name}` && r.status >= 200);
      assertEquals(finals.map((r) => r.status), [status], name);
      assertMatch(finals[0].headers.get("Warning") ?? "", why, name);
      assertMatch(finals[0].reason, status === 400 ? /^Bad Request \(/ : /^Not Acceptable Here \(/, name);
    }
    await h.advance(2000);
    assertEquals(peer.requests.filter((r) => r.method === "BYE").length, 0, "no BYE");
    assertEquals(h.events.filter((e) => e.type === "answered").length, 0, "nothing answered");
    assertEquals(rtp.length, 0, "nothing sent to the offer's media address");
    const errors = h.out.lines.filter((l) => l.includes("ERROR"));
    assertEquals(errors, [], "no ERROR line");
    // A usable offer is still answered.
    peer.send({ method: "INVITE", callId: "good", seq: 1, sdp: o({}) });
    await h.advance(200);
    assertEquals(peer.answers("good", 1, "INVITE").at(-1), "200 OK");
  } finally {
    await h.close();
  }
});

Deno.test("call service: a call whose recording cannot be created is refused before answering (500 with a Warning saying why, no 200, no BYE); other calls are answered and recorded", async () => {
  const root = await Deno.makeTempDir({ prefix: "voxpipe-norec-" });
  const h = await start({}, {
    receive: recordingChain({ path: `${root}/\${call.id}/rec.wav` }),
  });
  try {
    const peer = rawPeer(h);
    const sdp = offer();
    // A directory where the file goes; a file where its directory goes.
    await Deno.mkdir(`${root}/${sanitizeFileComponent("dir-in-place")}/rec.wav`, { recursive: true });
    await Deno.writeTextFile(`${root}/${sanitizeFileComponent("file-in-place")}`, "not a directory");
    for (const callId of ["dir-in-place", "file-in-place", "fine"]) {
      peer.send({ method: "INVITE", callId, seq: 1, sdp });
    }
    const final = (callId: string) => peer.got.find((r) => getCallId(r) === callId && r.status >= 200);
    await settleUntil(h.clock, () => ["dir-in-place", "file-in-place", "fine"].every(final), "final responses");
    const cases: [string, RegExp][] = [
      ["dir-in-place", /a directory is in the file's place/],
      ["file-in-place", /exists but is not a directory/],
    ];
    for (const [callId, why] of cases) {
      assertEquals(peer.answers(callId, 1, "INVITE").filter((a) => !a.startsWith("1")), [
        "500 Server Internal Error (the recording could not be created)",
      ], callId);
      const warning = final(callId)!.headers.get("Warning") ?? "";
      assertMatch(warning, /^399 voxpipe "the recording could not be created: /, callId);
      assertMatch(warning, why, callId);
      assert(!warning.includes(root), `the peer is not told where our files are: ${warning}`);
    }
    assertEquals(peer.answers("fine", 1, "INVITE").at(-1), "200 OK");
    await h.advance(2000);
    assertEquals(peer.requests.filter((r) => r.method === "BYE").length, 0, "no BYE");
    assertEquals(h.events.filter((e) => e.type === "answered").map((e) => e.call.id), [sanitizeFileComponent("fine")]);
    const errors = h.out.lines.filter((l) => l.includes("ERROR"));
    assertEquals(errors.length, 2, errors.join("\n"));
    assert(errors.every((l) => l.includes(root)), "the log names the file");
    assert((await Deno.stat(`${root}/${sanitizeFileComponent("fine")}/rec.wav`)).isFile, "the good call records");
  } finally {
    await h.close();
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("call service: a re-INVITE that would change the media gets 488 and the call goes on unchanged; a session refresh or no offer gets 200 with our SDP", async () => {
  const h = await start();
  try {
    const peer = rawPeer(h);
    const sdp = (o: { port?: number; version?: number; m?: string[]; dir?: string } = {}) =>
      [
        "v=0",
        `o=- 1 ${o.version ?? 1} IN IP4 10.0.0.1`,
        "s=-",
        "c=IN IP4 10.0.0.1",
        "t=0 0",
        ...(o.m ?? [`m=audio ${o.port ?? 40000} RTP/AVP 0 8`, "a=rtpmap:0 PCMU/8000", "a=rtpmap:8 PCMA/8000"]),
        `a=${o.dir ?? "sendrecv"}`,
        "",
      ].join("\r\n");
    peer.send({ method: "INVITE", callId: "re", seq: 1, sdp: sdp() });
    await h.advance(100);
    const ok = peer.got.find((r) => getCallId(r) === "re" && r.status === 200)!;
    const ours = new TextDecoder().decode(ok.body);
    const tag = peer.toTag("re");
    peer.send({ method: "ACK", callId: "re", seq: 1, toTag: tag });
    await h.advance(100);
    const id = h.calls.calls()[0].id;
    assertEquals(h.calls.call(id)!.state, "answered");
    const cases: [string, string, number, RegExp][] = [
      ["new port", sdp({ port: 40002, version: 2 }), 488, /RTP port 40000 -> 40002/],
      ["hold", sdp({ version: 2, dir: "sendonly" }), 488, /direction sendrecv -> sendonly/],
      [
        "two streams",
        sdp({ version: 2, m: ["m=audio 40000 RTP/AVP 0", "m=video 40010 RTP/AVP 96", "a=rtpmap:96 H264/90000"] }),
        488,
        /2 media streams offered, the call has 1/,
      ],
      ["no common codec", sdp({ version: 2, m: ["m=audio 40000 RTP/AVP 18", "a=rtpmap:18 G729/8000"] }), 488, /no/],
      ["port 0", sdp({ version: 2, port: 0 }), 488, /port 0/],
      ["other codec", sdp({ version: 2, m: ["m=audio 40000 RTP/AVP 8", "a=rtpmap:8 PCMA/8000"] }), 488, /codec/],
    ];
    let seq = 2;
    for (const [name, offer, status, why] of cases) {
      const n = seq++;
      const text = peer.send({ method: "INVITE", callId: "re", seq: n, toTag: tag, sdp: offer });
      await h.advance(100);
      const finals = peer.got.filter((r) => getCallId(r) === "re" && getCSeq(r).seq === n && r.status >= 200);
      assertEquals(finals.map((r) => r.status).slice(0, 1), [status], name);
      assertMatch(finals[0].headers.get("Warning") ?? "", why, name);
      const branch = /branch=([^;\r\n]+)/.exec(text)![1];
      peer.send({ method: "ACK", callId: "re", seq: n, toTag: tag, branch });
      await h.advance(100);
      assertEquals(h.calls.call(id)!.state, "answered", `${name}: the call goes on`);
    }
    // A session refresh (the same media, a new o= version) and a re-INVITE without an offer: 200 with our SDP,
    // unchanged (nothing changed: the same version).
    for (const offer of [sdp({ version: 3 }), undefined]) {
      const n = seq++;
      peer.send({ method: "INVITE", callId: "re", seq: n, toTag: tag, ...(offer ? { sdp: offer } : {}) });
      await h.advance(100);
      const res = peer.got.find((r) => getCallId(r) === "re" && getCSeq(r).seq === n && r.status >= 200)!;
      assertEquals(res.status, 200);
      assertEquals(new TextDecoder().decode(res.body), ours);
      peer.send({ method: "ACK", callId: "re", seq: n, toTag: tag, ...(offer ? {} : { sdp: sdp() }) });
      await h.advance(100);
    }
    assertEquals(phases(h.events, id), ["incoming", "answered"]);
    assertEquals(h.out.lines.filter((l) => l.includes("ERROR")), []);
  } finally {
    await h.close();
  }
});

Deno.test("call service: max_calls counts calls not ended: a call while the last one's media still stop is answered; beyond it busy_status (503 with Retry-After, or 486)", async () => {
  for (const busy of [503, 486]) {
    const h = await start({ max_calls: 1, busy_status: busy }, {
      receive: [
        { use: "udp-source", port: "${local.rtp_port}", bind: "${local.bind}", peer: "${remote.rtp}", timeout: 60 },
        { use: SLOW_END_SINK, end_ms: 800 },
      ],
    });
    try {
      const alice = h.peer("10.0.0.1");
      const a = alice.invite(SERVER_URI, { sdp: offer() });
      await h.advance(100);
      assertEquals(a.state, "established");
      // Beyond max_calls while A is up: refused by the user agent's check or the control's, with busy_status.
      const b = alice.invite(SERVER_URI, { sdp: offer() });
      await h.advance(100);
      assertEquals(b.endInfo?.status, busy);
      void a.hangup();
      await h.advance(50); // A has ended (BYE answered); its sink takes 800 ms to end
      assertEquals(h.calls.calls()[0].state, "ended");
      assert(!h.events.some((e) => e.type === "ended"), "A's media are still stopping");
      const c = alice.invite(SERVER_URI, { sdp: offer() });
      await h.advance(100);
      assertEquals(c.state, "established", `a call right after the last one ended is answered (${c.endInfo?.reason})`);
      // And beyond max_calls again, the answer is busy_status, from whichever layer refuses it.
      const d = alice.invite(SERVER_URI, { sdp: offer() });
      await h.advance(100);
      assertEquals(d.endInfo?.status, busy);
      void c.hangup();
      await settleUntil(h.clock, () => h.events.filter((e) => e.type === "ended").length === 2, "both ended", 5000);
    } finally {
      await h.close();
    }
  }
});

Deno.test("call service: calls=1 counts answered calls only: a refused (488) and a cancelled INVITE do not use it up; the run ends once the answered call has finished", async () => {
  const h = await start({ role: "callee", calls: 1, answer_after: 1 });
  try {
    const alice = h.peer("10.0.0.1");
    const g729 = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n" +
      "m=audio 40000 RTP/AVP 18\r\na=rtpmap:18 G729/8000\r\n";
    const refused = alice.invite(SERVER_URI, { sdp: g729 });
    await h.advance(1500);
    assertEquals(refused.endInfo?.status, 488);
    const cancelled = alice.invite(SERVER_URI, { sdp: offer() });
    await h.advance(100);
    cancelled.cancel();
    await h.advance(100);
    assertEquals(cancelled.endInfo?.status, 487);
    const answered = alice.invite(SERVER_URI, { sdp: offer() });
    await h.advance(1500);
    assertEquals(answered.state, "established", `the first answered call (${answered.endInfo?.reason})`);
    let done = false;
    h.run.finally(() => done = true);
    await h.advance(500);
    assert(!done, "still running while the answered call is up");
    void answered.hangup();
    await settleUntil(h.clock, () => done, "the run's end after the answered call");
    assertEquals((await h.run).code, 0);
  } finally {
    await h.close();
  }
});

Deno.test("call service: with its media ports used up, a call gets 503 with Retry-After; the warning is logged at most once per 10 s, with a count", async () => {
  const h = await start({ rtp_ports: "30000-30001" }); // one RTP/RTCP pair
  try {
    const responses: SipResponse[] = [];
    const alice = new SipUserAgent({
      transport: h.net.bind("10.0.0.1", 5060),
      clock: h.clock,
      userName: "alice",
      trace: (e) => {
        if (e.direction !== "received") return;
        const m = parseMessage(e.data);
        if (m.kind === "response" && m.status === 503) responses.push(m);
      },
    });
    try {
      const c1 = alice.invite(SERVER_URI, { sdp: offer() });
      await h.advance(100);
      assertEquals(c1.state, "established"); // it holds the only pair
      const c2 = alice.invite(SERVER_URI, { sdp: offer() });
      const c3 = alice.invite(SERVER_URI, { sdp: offer() });
      await h.advance(100);
      assertEquals([c2.endInfo?.status, c3.endInfo?.status], [503, 503]);
      assertEquals(responses.map((r) => r.headers.get("Retry-After")), ["5", "5"]);
      const warnings = () => h.out.lines.filter((l) => l.includes("no media for the call"));
      assertEquals(warnings().length, 1, h.out.lines.join("\n"));
      await h.advance(10_000);
      const c4 = alice.invite(SERVER_URI, { sdp: offer() });
      await h.advance(100);
      assertEquals(c4.endInfo?.status, 503);
      assertEquals(warnings().length, 2);
      assertMatch(warnings()[1], /\(2 calls refused for this since the last such line\)/);
      assert(!h.out.lines.some((l) => l.includes("ERROR")), "no ERROR line");
      void c1.hangup();
      await h.advance(100);
    } finally {
      await alice.close();
    }
  } finally {
    await h.close();
  }
});

Deno.test("call service: a call whose recording cannot hold even its header (a full disk) is refused with 503 and Retry-After, not answered", async () => {
  const root = await Deno.makeTempDir({ prefix: "voxpipe-fullrec-" });
  const h = await start({}, {
    receive: recordingChain({ path: `${root}/rec/\${call.id}.wav` }),
  });
  // Every file write fails as on a full disk (creating the file itself takes no data block).
  const write = Deno.FsFile.prototype.write, writeSync = Deno.FsFile.prototype.writeSync;
  const full = () => Object.assign(new Error("No space left on device (os error 28)"), { code: "ENOSPC" });
  Deno.FsFile.prototype.write = () => Promise.reject(full());
  Deno.FsFile.prototype.writeSync = () => {
    throw full();
  };
  try {
    const peer = rawPeer(h);
    peer.send({ method: "INVITE", callId: "full", seq: 1, sdp: offer() });
    const final = () => peer.got.find((r) => getCallId(r) === "full" && r.status >= 200);
    await settleUntil(h.clock, () => final() !== undefined, "the final response");
    assertEquals(peer.answers("full", 1, "INVITE").filter((a) => !a.startsWith("1")), [
      "503 Service Unavailable (the recording could not be created)",
    ]);
    assertEquals(final()!.headers.get("Retry-After"), "60");
    const warning = final()!.headers.get("Warning") ?? "";
    assertMatch(
      warning,
      /^399 voxpipe "the recording could not be created: cannot write its header: No space left on device/,
    );
    assert(!warning.includes(root), `the peer is not told where our files are: ${warning}`);
    assertEquals([...Deno.readDirSync(`${root}/rec`)], [], "no empty, invalid WAV left behind");
  } finally {
    Deno.FsFile.prototype.write = write;
    Deno.FsFile.prototype.writeSync = writeSync;
    await h.close();
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("call service: a greeting file emptied, replaced by garbage or removed between calls refuses each new call (500, the Warning naming the file and what is wrong); truncated, it plays what is there; restored, calls are answered again", async () => {
  const root = await Deno.makeTempDir({ prefix: "voxpipe-greeting-" });
  const greeting = `${root}/greeting.wav`;
  const samples = new Uint8Array(16000); // 1 s of 8 kHz 16-bit silence
  const good = new Uint8Array([
    ...wavHeader({ encoding: "pcm16", sampleRate: 8000, channels: 1, dataBytes: 16000 }),
    ...samples,
  ]);
  await Deno.writeFile(greeting, good);
  const h = await start({}, {
    receive: [
      { use: "udp-source", port: "${local.rtp_port}", bind: "${local.bind}", peer: "${remote.rtp}", timeout: 60 },
      { use: "null-sink" },
    ],
    greeting: [{ use: "file-source", path: greeting }, { use: "null-sink" }],
  });
  try {
    const peer = rawPeer(h);
    const sdp = offer();
    const cases: [string, Uint8Array | undefined, string, RegExp | undefined][] = [
      ["good", good, "200 OK", undefined],
      ["emptied", new Uint8Array(0), "500 Server Internal Error (media could not start)", /greeting\.wav: empty file/],
      [
        "garbage",
        new Uint8Array(4000).map((_, i) => (i * 7919) & 0xff),
        "500 Server Internal Error (media could not start)",
        /greeting\.wav: unrecognized audio format/,
      ],
      ["removed", undefined, "500 Server Internal Error (media could not start)", /greeting\.wav: cannot open/],
      ["truncated", good.subarray(0, 44 + 1000), "200 OK", undefined],
      ["restored", good, "200 OK", undefined],
    ];
    for (const [callId, bytes, answer, why] of cases) {
      if (bytes) await Deno.writeFile(greeting, bytes);
      else await Deno.remove(greeting);
      peer.send({ method: "INVITE", callId, seq: 1, sdp });
      const final = () => peer.got.find((r) => getCallId(r) === callId && r.status >= 200);
      await settleUntil(h.clock, () => final() !== undefined, `the final response to ${callId}`);
      assertEquals(peer.answers(callId, 1, "INVITE").filter((a) => !a.startsWith("1")), [answer], callId);
      if (why) {
        const warning = final()!.headers.get("Warning") ?? "";
        assertMatch(warning, why, callId);
        assert(!warning.includes(root), `the peer is not told where our files are: ${warning}`);
      }
    }
    await h.advance(500);
    assertEquals(peer.requests.filter((r) => r.method === "BYE").length, 0, "no call answered then hung up");
    const errors = h.out.lines.filter((l) => l.includes("ERROR"));
    assertEquals(errors.length, 3, errors.join("\n"));
    assert(errors.every((l) => l.includes(greeting)), "the log names the file");
    assert(
      h.out.lines.some((l) => /WARN .*greeting\.wav: data chunk declares 16000 bytes but the file holds 1000/.test(l)),
    );
  } finally {
    await h.close();
    await Deno.remove(root, { recursive: true });
  }
});
