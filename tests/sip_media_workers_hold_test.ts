/**
 * An incoming call's chains start before its 200 OK, and its session holds what they send until the 200 has gone
 * (`Session.holdSends`): in a media worker (`media_workers` 2) as on the main thread (0). A raw SIP peer on one UDP
 * socket, which is also the call's RTP and RTCP address (its SDP's `m=audio` and `a=rtcp` name that socket), records
 * every datagram in the order the kernel queued them. The 200 waits as long as the test likes: the receive chain ends
 * in a sink whose start waits for a file (as a recording created on a slow disk), while the send chain (a file to a
 * paced `udp-sink` without `wait_for_peer`, with RTCP every 0.1-0.3 s) has started.
 *
 * - Nothing of the call reaches the peer before the 200; after it, its stream starts from the file's first sample,
 *   and the peer receives exactly what the call's media counted as sent.
 * - The front on the fast UDP path (as the CLI runs it) sends the 200 at the end of its thread's turn: a worker must
 *   not be told to send before that (the front's thread busy right after the answer).
 * - A call refused once its chains started (its sink fails to start, as a recording on a full disk: 503), and a call
 *   cancelled while they start, leave nothing running: no call in the workers, every port of the range free again,
 *   and nothing of the call reached the peer (no RTP, no RTCP, not even an RTCP BYE); the next call works.
 */
import { existsSync } from "node:fs";
import alawmulaw from "alawmulaw";
import { assert, assertEquals, assertMatch } from "./assert.ts";
import { readWav, writeWav } from "./media_util.ts";
import { repoPath } from "./util.ts";
import {
  buildInDialog,
  buildInvite,
  freePortPair,
  freeUdpPort,
  type Received,
  SipPeer,
  type SipRequest,
  type SipResponse,
  type UdpAddress,
} from "./sip_util.ts";
import { createRequest, getCSeq } from "../plugins/sip/message.ts";
import { createRegistry, Logger, MemoryOutput, PipelineRunner } from "../mod.ts";
import type { CallService } from "../core/calls.ts";
import type { Clock } from "../core/clock.ts";
import type { Network } from "../core/net/datagram.ts";
import { mediaFromEnv } from "../core/net/fast.ts";
import { onWorkerMediaHost, type WorkerMediaHost } from "../plugins/sip/media_host.ts";

const GATED = repoPath("tests/fixtures/plugins/gated_start_sink.ts");

/** RTP ports of the callee: 4 pairs (2 per worker with 2 workers). */
const RTP_PORTS = 8;

/** Polls `cond` every 20 ms until it holds; fails after `ms` (a bound against hanging, not a timing assertion). */
async function until(cond: () => boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/**
 * A callee with its media in `workers` workers: its send chain streams `file` (8 kHz mono) paced to the caller's SDP
 * address at once (no wait_for_peer), with RTCP; its receive chain ends in the gated sink of `${dir}/gate-${call.n}`.
 */
async function calleeFile(dir: string, workers: number): Promise<string> {
  const path = `${dir}/callee-hold.json`;
  const rtcp = { use: "rtcp", local_port: "${local.rtcp_port}", bind: "${local.bind}", remote: "${remote.rtcp}" };
  await Deno.writeTextFile(
    path,
    JSON.stringify({
      parameters: {
        port: { default: 5062 },
        rtp_ports: { default: "10000-10007" },
        file: { default: "" },
        dir: { default: "" },
      },
      control: {
        use: "sip",
        role: "callee",
        port: "${port}",
        bind: "127.0.0.1",
        codecs: "PCMU",
        rtp_ports: "${rtp_ports}",
        media_workers: workers,
        linger: 0,
      },
      pipelines: {
        send: [
          { use: "file-source", path: "${file}" },
          { use: "g711-encoder", codec: "${codec}" },
          { use: "rtp-packetizer", payload_type: "${payloadType}", ptime: "${ptime}" },
          // A report every 0.1-0.3 s (the first within 0.15 s) when nothing holds it.
          { ...rtcp, interval: 0.2 },
          { use: "udp-sink", to: "${remote.rtp}", bind: "${local.bind}", local_port: "${local.rtp_port}" },
        ],
        receive: [
          { use: "udp-source", port: "${local.rtp_port}", bind: "${local.bind}", peer: "${remote.rtp}" },
          { use: "rtp-depacketizer", codec: "${codec}", payload_type: "${payloadType}" },
          rtcp,
          { use: GATED, gate: "${dir}/gate-${call.n}" },
        ],
      },
    }),
  );
  return path;
}

/** The callee in this process (so that the test reaches its workers and call service), and its log lines. */
interface Callee {
  done: Promise<unknown>;
  calls: CallService;
  lines: string[];
  /** Its media workers (undefined with 0). */
  host: WorkerMediaHost | undefined;
  /** Its SIP address. */
  sip: UdpAddress;
  /** Its RTP port range, `lo-hi`. */
  ports: string;
}

async function startCallee(
  dir: string,
  workers: number,
  signal: AbortSignal,
  media: { net?: Network; clock?: Clock } = {},
): Promise<Callee> {
  const samples = new Int16Array(8000 * 6);
  for (let i = 0; i < samples.length; i++) {
    samples[i] = Math.round(8000 * Math.sin(i / 7) + 3000 * Math.sin(i / 53)); // differs in every packet
  }
  await writeWav(`${dir}/send.wav`, samples, 8000);
  const port = freeUdpPort();
  const rtp = freePortPair("127.0.0.1", RTP_PORTS);
  const out = new MemoryOutput();
  let host: WorkerMediaHost | undefined;
  const off = onWorkerMediaHost((h) => host = h);
  const runner = await PipelineRunner.load(await calleeFile(dir, workers), {
    registry: createRegistry(),
    set: [`port=${port}`, `rtp_ports=${rtp}-${rtp + RTP_PORTS - 1}`, `file=${dir}/send.wav`, `dir=${dir}`],
    log: new Logger({ level: "info", outputs: [out] }),
    signal,
    ...media,
  });
  const done = runner.run().finally(off);
  const calls = await runner.callService();
  if (workers > 0) {
    const started = new RegExp(`media of calls in ${workers} worker thread`);
    await until(() => out.lines.some((l) => started.test(l)), 60_000, "the workers started");
    assert(host, "the callee created a worker media host");
  } else {
    await until(() => out.lines.some((l) => l.includes("[SIP] listening on udp")), 60_000, "the callee listens");
  }
  return {
    done,
    calls,
    lines: out.lines,
    host,
    sip: { hostname: "127.0.0.1", port },
    ports: `${rtp}-${rtp + RTP_PORTS - 1}`,
  };
}

/** The 8 kHz samples the callee sends. */
async function sentSamples(dir: string): Promise<Int16Array> {
  return (await readWav(`${dir}/send.wav`)).samples;
}

/** The peer's INVITE: its SDP sends RTP and RTCP to its own SIP socket (`a=rtcp`), so one socket sees them all. */
function invite(peer: SipPeer, callee: Callee): SipRequest {
  const { hostname, port } = peer.address;
  const sdp = [
    "v=0",
    `o=peer 1 1 IN IP4 ${hostname}`,
    "s=peer",
    `c=IN IP4 ${hostname}`,
    "t=0 0",
    `m=audio ${port} RTP/AVP 0`,
    "a=rtpmap:0 PCMU/8000",
    "a=ptime:20",
    `a=rtcp:${port}`,
    "a=sendrecv",
    "",
  ].join("\r\n");
  return buildInvite({ target: `sip:voxpipe@127.0.0.1:${callee.sip.port}`, local: peer.address, sdp });
}

/**
 * CANCEL for `inv`, or the ACK of its non-2xx final response `final`: the INVITE's own Via (its branch), Call-ID,
 * From and CSeq number (RFC 3261 §9.1, §17.1.1.3).
 */
function hopByHop(method: "CANCEL" | "ACK", inv: SipRequest, final?: SipResponse): SipRequest {
  return createRequest({
    method,
    uri: inv.uri,
    headers: [
      ["Via", inv.headers.get("Via")!],
      ["Max-Forwards", "70"],
      ["From", inv.headers.get("From")!],
      ["To", final ? final.headers.get("To")! : inv.headers.get("To")!],
      ["Call-ID", inv.headers.get("Call-ID")!],
      ["CSeq", `${getCSeq(inv).seq} ${method}`],
    ],
  });
}

/** What a datagram the peer received is: `200 INVITE` (a response and its method), `BYE` (a request), rtp, rtcp. */
function kind(r: Received): string {
  if (r.msg) return r.msg.kind === "response" ? `${r.msg.status} ${getCSeq(r.msg).method}` : r.msg.method;
  const b = r.raw;
  if (new TextDecoder().decode(b) === "marker") return "marker";
  if (b.length >= 8 && b[0] >> 6 === 2) return b[1] >= 200 && b[1] <= 204 ? "rtcp" : "rtp";
  return `? (${b.length} bytes)`;
}

function kinds(peer: SipPeer): string[] {
  return peer.received.map(kind);
}

/** Sends a marker datagram to the peer and waits until it has read it: then it has read all sent to it before. */
async function mark(peer: SipPeer): Promise<void> {
  const s = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  try {
    await s.send(new TextEncoder().encode("marker"), { transport: "udp", ...peer.address });
    await until(() => peer.received.some((r) => kind(r) === "marker"), 30_000, "the marker read");
  } finally {
    s.close();
  }
}

/** True when every port of `range` (`lo-hi`) can be bound on 127.0.0.1 (UDP): no call's socket holds one. */
function portsFree(range: string): boolean {
  const [lo, hi] = range.split("-").map(Number);
  for (let p = lo; p <= hi; p++) {
    try {
      Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: p }).close();
    } catch {
      return false;
    }
  }
  return true;
}

function summaries(callee: Callee): string[] {
  return callee.lines.filter((l) => l.includes("call summary:"));
}

/** Ends an answered call with a BYE from the peer; resolves once the callee has logged `n` call summaries. */
/**
 * Sends the first INVITE to `callee` and waits for its 180 and for its chains to start (the receive chain's sink
 * waits for its gate; the send chain runs, held): the call rings with its media started.
 */
async function ringing(peer: SipPeer, callee: Callee, dir: string): Promise<SipRequest> {
  const inv = invite(peer, callee);
  await peer.send(inv, callee.sip);
  await peer.expectResponse("INVITE", 180, 30_000);
  await until(() => existsSync(`${dir}/gate-1.starting`), 30_000, "the chains started");
  return inv;
}

async function hangUp(peer: SipPeer, callee: Callee, inv: SipRequest, ok: SipResponse, n: number): Promise<string> {
  await peer.send(buildInDialog("BYE", inv, ok, peer.address), callee.sip);
  await peer.expectResponse("BYE", 200, 30_000);
  await until(() => summaries(callee).length >= n, 30_000, `${n} call summaries`);
  return summaries(callee)[n - 1];
}

for (const workers of [2, 0]) {
  const where = workers ? `media_workers ${workers}` : "media on the main thread";

  Deno.test(`${where}: an incoming call's chains, started before its 200 OK, send no RTP nor RTCP before the 200; the held stream starts from its first sample after it`, async () => {
    const dir = await Deno.makeTempDir();
    const abort = new AbortController();
    const peer = SipPeer.open();
    try {
      const callee = await startCallee(dir, workers, abort.signal);
      const inv = await ringing(peer, callee, dir);
      assertEquals(callee.calls.calls().map((c) => c.state), ["ringing"]);
      if (callee.host) assertEquals(callee.host.workers().reduce((n, w) => n + w.calls, 0), 1);
      // Long enough for the send chain to send some 100 packets and several RTCP reports if nothing held them: none
      // may reach the peer, whose 200 cannot have been sent. (A slower machine only makes the check weaker.)
      await new Promise((r) => setTimeout(r, 2000));
      await mark(peer);
      assertEquals(kinds(peer).filter((k) => k === "rtp" || k === "rtcp"), [], `before the 200: ${kinds(peer)}`);
      await Deno.writeTextFile(`${dir}/gate-1`, "");
      const ok = await peer.expectResponse("INVITE", 200, 30_000);
      await peer.send(buildInDialog("ACK", inv, ok.msg, peer.address), callee.sip);
      const rtp = () => peer.received.filter((r) => kind(r) === "rtp");
      await until(() => rtp().length >= 50 && kinds(peer).includes("rtcp"), 30_000, "50 RTP packets and a report");
      // In the order the kernel queued them at the one socket: the 200 before any RTP or RTCP.
      const order = kinds(peer);
      const firstMedia = order.findIndex((k) => k === "rtp" || k === "rtcp");
      assert(order.indexOf("200 INVITE") < firstMedia, `datagrams at the peer: ${order.slice(0, 12).join(", ")}`);
      // The held stream starts from its beginning: the first packets carry the file's first samples, in a row.
      const packets = rtp().map((r) => r.raw).slice(0, 50);
      const seq = (p: Uint8Array) => (p[2] << 8) | p[3];
      const ts = (p: Uint8Array) => new DataView(p.buffer, p.byteOffset).getUint32(4);
      for (let i = 1; i < packets.length; i++) {
        assertEquals((seq(packets[i]) - seq(packets[0]) + 65536) % 65536, i);
        assertEquals((ts(packets[i]) - ts(packets[0]) + 2 ** 32) % 2 ** 32, i * 160);
      }
      const expected = alawmulaw.mulaw.encode((await sentSamples(dir)).subarray(0, 50 * 160));
      const got = new Uint8Array(50 * 160);
      packets.forEach((p, i) => got.set(p.subarray(12, 12 + 160), i * 160));
      assertEquals(got, expected, "the payload of the first 50 packets: the file's first second through G.711");
      // What the call's media counted as sent is what reached the peer: nothing was sent and lost before the 200.
      const summary = await hangUp(peer, callee, inv, ok.msg, 1);
      await mark(peer);
      assertMatch(summary, new RegExp(` sent=${rtp().length} `), `${rtp().length} RTP packets at the peer`);
      abort.abort();
      await callee.done;
    } finally {
      abort.abort();
      await peer.close();
      await Deno.remove(dir, { recursive: true });
    }
  });

  Deno.test(`${where}, the front on the fast UDP path: the call's sends are released once the 200 has left the front, not when it is queued there (the front's thread busy right after the answer)`, async () => {
    const dir = await Deno.makeTempDir();
    const abort = new AbortController();
    const peer = SipPeer.open();
    try {
      await Deno.writeTextFile(`${dir}/gate-1`, ""); // no wait: the call is answered once its chains started
      // The front as the CLI runs it: SIP on this thread's MediaLoop, which sends what was queued at the end of the
      // thread's turn (where FFI cannot run, Deno's sockets: the check then only holds).
      const fast = mediaFromEnv();
      const callee = await startCallee(
        dir,
        workers,
        abort.signal,
        fast.clock ? { net: fast.net, clock: fast.clock } : {},
      );
      // Right after the answer the front's thread is busy (here a listener; in a server, other calls' signalling, a
      // collection, a slow log): a worker, on its own thread, must not send before the 200 has left.
      callee.calls.onEvent((e) => {
        if (e.type !== "answered") return;
        const end = performance.now() + 1500;
        while (performance.now() < end) { /* the thread is busy */ }
      });
      const inv = invite(peer, callee);
      await peer.send(inv, callee.sip);
      const ok = await peer.expectResponse("INVITE", 200, 30_000);
      await peer.send(buildInDialog("ACK", inv, ok.msg, peer.address), callee.sip);
      await until(() => peer.received.filter((r) => kind(r) === "rtp").length >= 10, 30_000, "10 RTP packets");
      const order = kinds(peer);
      const firstMedia = order.findIndex((k) => k === "rtp" || k === "rtcp");
      assert(order.indexOf("200 INVITE") < firstMedia, `datagrams at the peer: ${order.slice(0, 12).join(", ")}`);
      await hangUp(peer, callee, inv, ok.msg, 1);
      abort.abort();
      await callee.done;
    } finally {
      abort.abort();
      await peer.close();
      await Deno.remove(dir, { recursive: true });
    }
  });

  for (const ending of ["refused", "cancelled"] as const) {
    const what = ending === "refused"
      ? "refused with 503 once its chains started (a stage cannot start: the disk is full)"
      : "cancelled while its chains start";
    Deno.test(`${where}: a call ${what} stops its chains and frees its ports; nothing of it reaches the peer, no RTCP BYE either`, async () => {
      const dir = await Deno.makeTempDir();
      const abort = new AbortController();
      const peer = SipPeer.open();
      try {
        const callee = await startCallee(dir, workers, abort.signal);
        const inv = await ringing(peer, callee, dir);
        // The chains run (the send chain held, its RTCP too): the call's ports are bound, in its worker if any.
        assert(!portsFree(callee.ports), `the call's ports are bound (${callee.ports})`);
        if (callee.host) assertEquals(callee.host.workers().reduce((n, w) => n + w.calls, 0), 1);
        // The send chain has had time to pass packets to its (held) sink and its RTCP stage.
        await new Promise((r) => setTimeout(r, 500));
        let final: Received & { msg: SipResponse };
        if (ending === "refused") {
          await Deno.writeTextFile(`${dir}/gate-1`, "fail: cannot create the recording: No space left on device");
          final = await peer.expectResponse("INVITE", (s) => s >= 300, 30_000);
          assertEquals(final.msg.status, 503);
          assertMatch(final.msg.headers.get("Warning") ?? "", /No space left on device/);
        } else {
          await peer.send(hopByHop("CANCEL", inv), callee.sip);
          await peer.expectResponse("CANCEL", 200, 30_000);
          final = await peer.expectResponse("INVITE", (s) => s >= 300, 30_000);
          assertEquals(final.msg.status, 487);
          // The chains finish starting after the call ended: they are stopped then.
          await Deno.writeTextFile(`${dir}/gate-1`, "");
        }
        await peer.send(hopByHop("ACK", inv, final.msg), callee.sip);
        await until(() => summaries(callee).length === 1, 30_000, "the call's summary");
        // Nothing left: no call in the workers, every port free again (the call's sockets closed).
        if (callee.host) {
          await until(() => callee.host!.workers().every((w) => w.calls === 0), 30_000, "no call in the workers");
        }
        await until(() => portsFree(callee.ports), 30_000, "the call's ports free");
        assertMatch(summaries(callee)[0], / sent=0 /);
        const [info] = callee.calls.calls();
        assertEquals([info.state, info.answeredAt], ["ended", undefined]);
        // Nothing of the call reached the peer: no RTP, no RTCP (not even a BYE), no 200. What was sent for the call
        // was sent before its media's stop ended, before the summary: before this marker, read after all of it.
        await mark(peer);
        const media = kinds(peer).filter((k) => k === "rtp" || k === "rtcp" || k === "200 INVITE");
        assertEquals(media, [], kinds(peer).join(", "));
        // The next call is answered and streams.
        await Deno.writeTextFile(`${dir}/gate-2`, "");
        const inv2 = invite(peer, callee);
        await peer.send(inv2, callee.sip);
        const ok = await peer.expectResponse("INVITE", 200, 30_000);
        await peer.send(buildInDialog("ACK", inv2, ok.msg, peer.address), callee.sip);
        await until(() => kinds(peer).includes("rtp"), 30_000, "RTP of the second call");
        await hangUp(peer, callee, inv2, ok.msg, 2);
        abort.abort();
        await callee.done;
      } finally {
        abort.abort();
        await peer.close();
        await Deno.remove(dir, { recursive: true });
      }
    });
  }
}
