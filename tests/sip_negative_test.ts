/**
 * SIP failure paths of our caller and callee (the CLI, real UDP on loopback),
 * against a peer scripted step by step in TypeScript (`SipPeer` in
 * sip_util.ts), so it can misbehave on purpose:
 *
 * - the callee answers 486 or 503: the caller ACKs it and exits 1 with the status
 *   in its one-line reason;
 * - the callee only rings: after `ring_timeout` the caller sends a proper CANCEL,
 *   takes the 487, ACKs it and exits 1 saying there was no answer;
 * - the caller never sends BYE and stops its RTP: our callee hangs up by itself
 *   after `rtp_timeout` (BYE) and its recording is finalized and holds the audio;
 * - garbage datagrams in the middle of a call are ignored or answered with 400,
 *   and the call goes on and completes with every sample recorded;
 * - 30 % of SIP datagrams dropped both ways by a seeded relay (plus the first copy
 *   of the INVITE, its 200, the ACK and the BYE): the call completes through
 *   retransmissions.
 *
 * Nothing here needs an external tool. No test asserts a duration: time bounds
 * only stop a hung test.
 */
import { assert, assertEquals, assertMatch } from "./assert.ts";
import {
  assertSampleExact,
  buildInDialog,
  buildInvite,
  failureLine,
  freeUdpPort,
  g711Audio,
  LossyRelay,
  outputTail,
  ProcessGroup,
  readWav,
  sdpAudioAddress,
  sdpOffer,
  sendRtp,
  SipPeer,
  spawnCallee,
  spawnCaller,
  uriAddress,
  writeG711Wav,
} from "./sip_util.ts";
import { bodyText, createRequest, getCSeq, type SipRequest, type SipResponse, topVia } from "../plugins/sip/message.ts";

const opts = { sanitizeResources: false, sanitizeOps: false };

/** Test audio for our caller, written to `dir`. */
async function callerFile(dir: string, seconds = 2): Promise<string> {
  const path = `${dir}/source.wav`;
  await writeG711Wav(path, g711Audio("PCMU", seconds));
  return path;
}

for (const [status, reason] of [[486, "Busy Here"], [503, "Service Unavailable"]] as const) {
  Deno.test({
    name: `caller gets ${status} ${reason}: ACKs it in the INVITE transaction, exits 1 with "${status} ${reason}"`,
    ...opts,
    async fn() {
      const dir = await Deno.makeTempDir({ prefix: "voxpipe-neg-" });
      const procs = new ProcessGroup();
      const peer = SipPeer.open();
      try {
        const caller = procs.add(
          spawnCaller({ to: `sip:bob@${peer.hostPort}`, file: await callerFile(dir), timeoutMs: 30_000 }),
        );
        const inv = await peer.expectRequest("INVITE", 20_000);
        await peer.respond(inv.msg, 100, inv.from);
        await peer.respond(inv.msg, status, inv.from, { toTag: "peer486", reason });
        const ack = await peer.expectRequest("ACK", 5_000);
        // The ACK for a non-2xx final response belongs to the INVITE transaction (RFC 3261 §17.1.1.3).
        assertEquals(topVia(ack.msg).params.branch, topVia(inv.msg).params.branch);
        assertEquals(ack.msg.headers.get("CSeq"), `${getCSeq(inv.msg).seq} ACK`);
        assertMatch(ack.msg.headers.get("To")!, /tag=peer486/);
        const r = await caller.result;
        assertEquals(r.code, 1, outputTail(r));
        const line = failureLine(r.stderr);
        assert(line, `no one-line reason: ${outputTail(r)}`);
        assertMatch(line, new RegExp(`${status} ${reason}`));
        assertEquals(peer.received.filter((x) => x.msg?.kind === "request" && x.msg.method === "BYE").length, 0);
      } finally {
        await procs.stop();
        await peer.close();
        await Deno.remove(dir, { recursive: true });
      }
    },
  });
}

Deno.test({
  name: "caller with a short ring_timeout against a peer that only rings: CANCEL, 487, ACK, exit 1 'no answer'",
  ...opts,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "voxpipe-neg-" });
    const procs = new ProcessGroup();
    const peer = SipPeer.open();
    try {
      const caller = procs.add(spawnCaller({
        to: `sip:bob@${peer.hostPort}`,
        file: await callerFile(dir),
        ringTimeout: 1,
        timeoutMs: 30_000,
      }));
      const inv = await peer.expectRequest("INVITE", 20_000);
      await peer.respond(inv.msg, 100, inv.from);
      await peer.respond(inv.msg, 180, inv.from, { toTag: "ringonly" });
      const cancel = await peer.expectRequest("CANCEL", 10_000);
      // RFC 3261 §9.1: same Request-URI, Call-ID, From, To (no tag), CSeq number and top Via branch as the INVITE.
      assertEquals(cancel.msg.uri, inv.msg.uri);
      for (const h of ["Call-ID", "From", "To"]) assertEquals(cancel.msg.headers.get(h), inv.msg.headers.get(h), h);
      assertEquals(cancel.msg.headers.get("CSeq"), `${getCSeq(inv.msg).seq} CANCEL`);
      assertEquals(topVia(cancel.msg).params.branch, topVia(inv.msg).params.branch);
      await peer.respond(cancel.msg, 200, cancel.from);
      await peer.respond(inv.msg, 487, inv.from, { toTag: "ringonly" });
      const ack = await peer.expectRequest("ACK", 5_000);
      assertEquals(topVia(ack.msg).params.branch, topVia(inv.msg).params.branch);
      const r = await caller.result;
      assertEquals(r.code, 1, outputTail(r));
      const line = failureLine(r.stderr);
      assert(line, `no one-line reason: ${outputTail(r)}`);
      assertMatch(line, /no answer within 1 s/);
      assertMatch(r.stderr, /\[SIP\] CANCEL sent/);
      assertMatch(r.stderr, /\[SIP\] 487 Request Terminated/);
    } finally {
      await procs.stop();
      await peer.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

/** A call from the scripted peer to a callee, up to the ACK. */
interface PeerCall {
  invite: SipRequest;
  ok: { msg: import("../plugins/sip/message.ts").SipResponse };
  rtp: Deno.DatagramConn;
  remoteRtp: { hostname: string; port: number };
}

async function peerCalls(peer: SipPeer, calleeUri: string): Promise<PeerCall> {
  const rtp = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  const rtpPort = (rtp.addr as Deno.NetAddr).port;
  const invite = buildInvite({ target: calleeUri, local: peer.address, sdp: sdpOffer("127.0.0.1", rtpPort) });
  await peer.send(invite, uriAddress(calleeUri));
  const ok = await peer.expectResponse("INVITE", (s) => s >= 200, 10_000);
  assertEquals(ok.msg.status, 200, `callee answered ${ok.msg.status} ${ok.msg.reason}`);
  await peer.send(buildInDialog("ACK", invite, ok.msg, peer.address), uriAddress(calleeUri));
  return { invite, ok, rtp, remoteRtp: sdpAudioAddress(bodyText(ok.msg)) };
}

Deno.test({
  name: "BYE lost: the peer stops RTP and never hangs up; our callee sends BYE after rtp_timeout, WAV finalized",
  ...opts,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "voxpipe-neg-" });
    const procs = new ProcessGroup();
    const peer = SipPeer.open();
    let rtp: Deno.DatagramConn | undefined;
    try {
      const callee = procs.trackCallee(
        await spawnCallee({ record: `${dir}/rec.wav`, calls: 1, rtpTimeout: 2, timeoutMs: 40_000 }),
      );
      const call = await peerCalls(peer, callee.uri);
      rtp = call.rtp;
      const audio = g711Audio("PCMU", 1.5);
      await sendRtp({ socket: rtp, to: call.remoteRtp, bytes: audio.bytes, payloadType: 0 });
      // Silence from here on: no RTP, no BYE. The callee must end the call itself.
      const bye = await peer.expectRequest("BYE", 20_000, call.invite.headers.get("Call-ID"));
      assertMatch(bye.msg.headers.get("To")!, /tag=/);
      assertEquals(bye.msg.headers.get("From"), call.ok.msg.headers.get("To"), "BYE From is the callee's To");
      await peer.respond(bye.msg, 200, bye.from);
      const r = await callee.proc.result;
      assertEquals(r.code, 0, outputTail(r));
      assertMatch(r.stderr, /\[SIP\] BYE sent/);
      assertMatch(r.stderr, /no RTP received within the timeout/);
      const rec = await readWav(`${dir}/rec.wav`);
      assert(rec.finalized, "the recording was not finalized");
      assertEquals([rec.sampleRate, rec.channels], [8000, 1]);
      const c = assertSampleExact(audio.samples, rec.samples, { label: "until RTP stopped", concealTail: 800 });
      assertEquals(c.overlap, audio.samples.length);
    } finally {
      await procs.stop();
      rtp?.close();
      await peer.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "garbage datagrams in the middle of a call are ignored or answered 400; the call completes, nothing lost",
  ...opts,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "voxpipe-neg-" });
    const procs = new ProcessGroup();
    const peer = SipPeer.open();
    let rtp: Deno.DatagramConn | undefined;
    try {
      const callee = procs.trackCallee(
        await spawnCallee({ record: `${dir}/rec.wav`, calls: 1, rtpTimeout: 5, timeoutMs: 40_000 }),
      );
      const sip = uriAddress(callee.uri);
      const call = await peerCalls(peer, callee.uri);
      rtp = call.rtp;
      const audio = g711Audio("PCMU", 2.5);
      const hp = peer.hostPort;
      const garbage: (string | Uint8Array)[] = [
        // Random bytes.
        crypto.getRandomValues(new Uint8Array(300)),
        // A request whose Content-Length promises more than the datagram holds: answerable with 400.
        `OPTIONS sip:bob@${sip.hostname}:${sip.port} SIP/2.0\r\nVia: SIP/2.0/UDP ${hp};branch=z9hG4bKgarbage1\r\n` +
        `From: <sip:peer@${hp}>;tag=g1\r\nTo: <sip:bob@${sip.hostname}>\r\nCall-ID: garbage-1\r\n` +
        `CSeq: 1 OPTIONS\r\nContent-Length: 500\r\n\r\nshort`,
        // A request line and nothing else.
        "INVITE sip:bob@127.0.0.1 SIP/2.0\r\n\r\n",
        // A response to nothing, with a broken CSeq.
        `SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP ${hp};branch=z9hG4bKnothing\r\nCSeq: x\r\n\r\n`,
        // Text that is not SIP at all.
        "HELLO\r\n\r\n",
      ];
      await sendRtp({
        socket: rtp,
        to: call.remoteRtp,
        bytes: audio.bytes,
        payloadType: 0,
        onPacket: (n) => {
          if (n === 50) { for (const g of garbage) void peer.send(g, sip); }
        },
      });
      await peer.send(buildInDialog("BYE", call.invite, call.ok.msg, peer.address), sip);
      await peer.expectResponse("BYE", 200, 5_000);
      const r = await callee.proc.result;
      assertEquals(r.code, 0, outputTail(r));
      assertMatch(r.stderr, /\[SIP\] BYE received/);
      // Whatever answered the garbage is a 400 (for the datagram that could be answered), nothing else.
      const answers = peer.received.filter((x) =>
        x.msg?.kind === "response" && /^garbage/.test(x.msg.headers.get("Call-ID") ?? "")
      );
      for (const a of answers) assertEquals(a.msg?.kind === "response" && a.msg.status, 400);
      const rec = await readWav(`${dir}/rec.wav`);
      assert(rec.finalized, "the recording was not finalized");
      const c = assertSampleExact(audio.samples, rec.samples, { label: "call with garbage", concealTail: 800 });
      assertEquals(c.overlap, audio.samples.length);
    } finally {
      await procs.stop();
      rtp?.close();
      await peer.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "30 % of SIP datagrams dropped both ways (seeded relay): the call completes through retransmissions",
  ...opts,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "voxpipe-neg-" });
    const procs = new ProcessGroup();
    let relay: LossyRelay | undefined;
    try {
      const audio = g711Audio("PCMU", 2);
      await writeG711Wav(`${dir}/source.wav`, audio);
      const callee = procs.trackCallee(
        await spawnCallee({
          port: freeUdpPort(),
          record: `${dir}/rec.wav`,
          calls: 1,
          rtpTimeout: 10,
          timeoutMs: 60_000,
        }),
      );
      relay = new LossyRelay({
        server: uriAddress(callee.uri),
        lossRate: 0.3,
        seed: 20261122,
        // Whatever the PRNG says, lose the first copy of each: every retransmission path runs.
        dropFirst: ["INVITE", "200 INVITE", "ACK", "BYE"],
      });
      const caller = procs.add(spawnCaller({
        to: `sip:bob@127.0.0.1:${relay.address.port}`,
        file: `${dir}/source.wav`,
        timeoutMs: 50_000,
      }));
      const [cr, ce] = await Promise.all([caller.result, callee.proc.result]);
      const counts = JSON.stringify(relay.counts.byLabel);
      assertEquals(cr.code, 0, `caller failed (relay ${counts}): ${outputTail(cr)}`);
      assertEquals(ce.code, 0, `callee failed (relay ${counts}): ${outputTail(ce)}`);
      // The call was set up and torn down by SIP, not by the RTP timeout.
      assertMatch(ce.stderr, /\[SIP\] ACK received, call established/);
      assertMatch(ce.stderr, /\[SIP\] BYE received/, `relay ${counts}`);
      assert(relay.counts.byLabel["→ INVITE"][1] >= 1 && relay.counts.byLabel["← 200 INVITE"][1] >= 1, counts);
      const rec = await readWav(`${dir}/rec.wav`);
      assert(rec.finalized, "the recording was not finalized");
      // RTP does not go through the relay: nothing of the audio is lost.
      const c = assertSampleExact(audio.samples, rec.samples, { label: "lossy SIP", concealTail: 800 });
      assertEquals(c.overlap, audio.samples.length);
    } finally {
      await procs.stop();
      await relay?.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

// ---------------------------------------------------------------- calls that never reach anyone, or end early

Deno.test({
  name:
    "caller to a port where nothing listens: exit 1 at once on the ICMP port unreachable (the default fast UDP path), or 'no SIP response from 127.0.0.1:P within 2 s' (VOXPIPE_NET=deno)",
  ...opts,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "voxpipe-neg-" });
    const procs = new ProcessGroup();
    try {
      const file = await callerFile(dir);
      // The default (fast) path reads the socket's error queue: the ICMP port unreachable ends the call. The ring
      // timeout is long, so a caller that missed the ICMP would fail with a different reason.
      let port = freeUdpPort();
      const fast = procs.add(
        spawnCaller({ to: `sip:bob@127.0.0.1:${port}`, file, ringTimeout: 20, timeoutMs: 30_000 }),
      );
      const f = await fast.result;
      assertEquals(f.code, 1, outputTail(f));
      assertMatch(f.stderr, /INFO .*network: FFI sockets and clock on this thread's MediaLoop \(default\)/);
      assertEquals(
        failureLine(f.stderr),
        `voxpipe: call failed: 127.0.0.1:${port} unreachable (ICMP port unreachable)`,
      );
      // Deno.listenDatagram: the ICMP port unreachable is not reported to an unconnected socket, so only the ring
      // timeout can end this call; it must say what happened.
      port = freeUdpPort();
      const caller = procs.add(spawnCaller({
        to: `sip:bob@127.0.0.1:${port}`,
        file,
        ringTimeout: 2,
        timeoutMs: 30_000,
        env: { VOXPIPE_NET: "deno" },
      }));
      const r = await caller.result;
      assertEquals(r.code, 1, outputTail(r));
      assertMatch(r.stderr, /INFO .*network: Deno\.listenDatagram \(VOXPIPE_NET=deno\)/);
      assertEquals(failureLine(r.stderr), `voxpipe: no SIP response from 127.0.0.1:${port} within 2 s`);
    } finally {
      await procs.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

/** The peer answers our caller's INVITE with 200 (its SDP pointing at `rtp`) and takes the ACK. */
async function answerCaller(peer: SipPeer, rtp: Deno.DatagramConn) {
  const inv = await peer.expectRequest("INVITE", 20_000);
  const rtpPort = (rtp.addr as Deno.NetAddr).port;
  const ok = await peer.respond(inv.msg, 200, inv.from, {
    toTag: "early1",
    headers: [["Contact", `<sip:bob@${peer.hostPort}>`]],
    body: sdpOffer("127.0.0.1", rtpPort),
  });
  const ack = await peer.expectRequest("ACK", 5_000);
  return { inv, ok, ack };
}

/** A BYE from the peer (the callee) in the dialog of `inv`/`ok`, to the caller's Contact. */
function byeFromCallee(peer: SipPeer, inv: SipRequest, ok: SipResponse): SipRequest {
  const contact = /<([^>]+)>/.exec(inv.headers.get("Contact")!)![1];
  return createRequest({
    method: "BYE",
    uri: contact,
    headers: [
      ["Via", `SIP/2.0/UDP ${peer.hostPort};branch=z9hG4bK${crypto.randomUUID().replaceAll("-", "")};rport`],
      ["Max-Forwards", "70"],
      ["From", ok.headers.get("To")!],
      ["To", inv.headers.get("From")!],
      ["Call-ID", inv.headers.get("Call-ID")!],
      ["CSeq", "1 BYE"],
    ],
  });
}

/** Resolves once `n` datagrams arrived on `sock` (RTP from our caller). */
async function receiveDatagrams(sock: Deno.DatagramConn, n: number): Promise<void> {
  for (let i = 0; i < n; i++) await sock.receive();
}

Deno.test({
  name:
    "the peer hangs up at once: caller exits 1 'call ended by the peer (BYE) after … s, before the file was sent (n of 250 packets)'",
  ...opts,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "voxpipe-neg-" });
    const procs = new ProcessGroup();
    const peer = SipPeer.open();
    const rtp = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
    try {
      // 5 s of audio at ptime 20 ms: 250 packets.
      const caller = procs.add(spawnCaller({
        to: `sip:bob@${peer.hostPort}`,
        file: await callerFile(dir, 5),
        timeoutMs: 30_000,
      }));
      const { inv, ok } = await answerCaller(peer, rtp);
      await receiveDatagrams(rtp, 5);
      await peer.send(byeFromCallee(peer, inv.msg, ok), inv.from);
      await peer.expectResponse("BYE", 200, 5_000);
      const r = await caller.result;
      assertEquals(r.code, 1, outputTail(r));
      const line = failureLine(r.stderr);
      assert(line, `no one-line reason: ${outputTail(r)}`);
      assertMatch(
        line,
        /^voxpipe: call ended by the peer \(BYE\) after [\d.]+ s, before the file was sent \((\d+) of 250 packets\)$/,
      );
      const sent = Number(/\((\d+) of/.exec(line)![1]);
      assert(sent >= 5 && sent < 250, `${sent} packets sent`);
    } finally {
      await procs.stop();
      rtp.close();
      await peer.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

for (const when of ["ringing", "in the call"] as const) {
  Deno.test({
    name: `caller stopped with SIGINT (Ctrl-C) ${when}: ${
      when === "ringing" ? "CANCEL" : "BYE"
    }, exit 130 with the reason`,
    ...opts,
    async fn() {
      const dir = await Deno.makeTempDir({ prefix: "voxpipe-neg-" });
      const procs = new ProcessGroup();
      const peer = SipPeer.open();
      const rtp = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
      try {
        const caller = procs.add(spawnCaller({
          to: `sip:bob@${peer.hostPort}`,
          file: await callerFile(dir, 20),
          timeoutMs: 30_000,
        }));
        if (when === "ringing") {
          const inv = await peer.expectRequest("INVITE", 20_000);
          await peer.respond(inv.msg, 180, inv.from, { toTag: "ring1" });
          // The caller logs the 180 once it has it: then interrupt.
          await caller.waitForOutput(/\[SIP\] 180 Ringing/, 10_000);
          caller.kill("SIGINT");
          const cancel = await peer.expectRequest("CANCEL", 10_000);
          await peer.respond(cancel.msg, 200, cancel.from);
          await peer.respond(inv.msg, 487, inv.from, { toTag: "ring1" });
          const r = await caller.result;
          assertEquals(r.code, 130, outputTail(r));
          assertEquals(failureLine(r.stderr), "voxpipe: interrupted before the call was answered");
        } else {
          const { inv } = await answerCaller(peer, rtp);
          await receiveDatagrams(rtp, 5);
          caller.kill("SIGINT");
          const bye = await peer.expectRequest("BYE", 10_000);
          assertEquals(bye.msg.headers.get("Call-ID"), inv.msg.headers.get("Call-ID"));
          await peer.respond(bye.msg, 200, bye.from);
          const r = await caller.result;
          assertEquals(r.code, 130, outputTail(r));
          assertMatch(failureLine(r.stderr) ?? "", /^voxpipe: interrupted after [\d.]+ s of call \(BYE sent\)$/);
        }
      } finally {
        await procs.stop();
        rtp.close();
        await peer.close();
        await Deno.remove(dir, { recursive: true });
      }
    },
  });
}
