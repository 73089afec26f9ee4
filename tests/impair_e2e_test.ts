/**
 * The RTP media plane under network impairment, in one process with the library
 * API, over real loopback UDP:
 *
 *   send:    wav-source → g711-encoder → rtp-packetizer → rtcp → udp-sink (paced)
 *   receive: udp-source → impair (5 % loss, 0–40 ms jitter, 2 % reorder) → rtp-depacketizer
 *            → [tap] → rtcp → jitter-buffer → g711-decoder → [collect]
 *
 * `tap` records the RTP sequence numbers that got through impair and `collect`
 * the decoded frames with their type, so the test can check, against what was
 * really injected: no gap in the played audio (its length is the sent duration
 * within a frame or two, and every missing packet is concealed, never silent),
 * every played frame is a sent frame in order, and the loss and jitter reported
 * by the jitter buffer and by RTCP (both ends) agree with impair's own counts
 * and with the jitter distribution.
 *
 * @module
 */
import { z } from "zod";
import { assert, assertEquals } from "./assert.ts";
import { createRegistry, definePlugin, type Frame, type PipelineResult } from "../mod.ts";
import { buildPipeline } from "../core/pipeline.ts";
import { freeUdpPortPair, g711RoundTrip, speechLikeSignal, writeWav } from "./media_util.ts";

const SECONDS = 3;
const PTIME = 20;
const SPF = (8000 * PTIME) / 1000; // samples per frame
const PACKETS = (SECONDS * 1000) / PTIME;
/** Close to the 16-bit wrap, so sequence extension is exercised by JB and RTCP too. */
const FIRST_SEQ = 65486;
/** PRNG seed of impair (VOXPIPE_IMPAIR_SEED overrides it, to try other loss patterns). */
const SEED = Number(Deno.env.get("VOXPIPE_IMPAIR_SEED") ?? 7);

interface Played {
  type: string;
  samples: Int16Array;
}

function testRegistry(seqs: number[], played: Played[]) {
  const registry = createRegistry();
  registry.register(definePlugin({
    name: "test-seq-tap",
    kind: "transform",
    description: "records the sequence numbers of rtp frames passing through",
    accepts: [{ kind: "rtp" }],
    produces: { kind: "rtp" },
    options: z.object({}),
    create: () => ({
      negotiate: (input) => input,
      process(frame: Frame, emit) {
        if (frame.kind === "rtp") seqs.push(frame.sequence);
        return emit(frame);
      },
    }),
  }));
  registry.register(definePlugin({
    name: "test-collect",
    kind: "sink",
    description: "keeps decoded frames and their type",
    accepts: [{ kind: "pcm" }],
    options: z.object({}),
    create: () => ({
      write(frame: Frame) {
        if (frame.kind === "pcm") played.push({ type: frame.type ?? "normal", samples: frame.samples });
      },
    }),
  }));
  return registry;
}

/**
 * Cumulative loss as RFC 3550 A.1 and A.3 define it, for arrivals given as unwrapped sequence numbers:
 * the source becomes valid at the first packet that directly follows the one before it
 * (MIN_SEQUENTIAL = 2), which is the base; every packet from there on counts as received (reordered
 * older ones too); expected = highest − base + 1.
 */
function rfc3550Lost(arrivals: number[]): number {
  let i = 1;
  while (i < arrivals.length && arrivals[i] !== arrivals[i - 1] + 1) i++;
  if (i >= arrivals.length) return 0;
  const base = arrivals[i];
  let highest = base;
  for (const s of arrivals.slice(i)) highest = Math.max(highest, s);
  return Math.max(0, highest - base + 1 - (arrivals.length - i));
}

function extraOf(r: PipelineResult, label: string): Record<string, number> {
  const s = r.stats.find((x) => x.label === label);
  assert(s?.extra, `no stats for ${label}`);
  return s.extra as Record<string, number>;
}

Deno.test("impair e2e: 5 % loss, 40 ms jitter, 2 % reorder over loopback: no gaps, losses concealed, loss and jitter reported as injected", async () => {
  const dir = await Deno.makeTempDir({ prefix: "voxpipe-impair-" });
  try {
    const codec = "PCMA";
    const source = speechLikeSignal({ seconds: SECONDS, seed: 3 });
    const reference = g711RoundTrip(source, codec);
    await writeWav(`${dir}/source.wav`, source, 8000);
    const port = freeUdpPortPair();
    const seqs: number[] = [];
    const played: Played[] = [];
    const registry = testRegistry(seqs, played);

    const receive = await buildPipeline("receive", [
      { use: "udp-source", port, bind: "127.0.0.1", timeout: 1.5 },
      { use: "impair", loss: 0.05, jitter_ms: 40, reorder: 0.02, seed: SEED },
      { use: "rtp-depacketizer", codec },
      { use: "test-seq-tap" },
      { use: "rtcp", session: `impair-rx-${port}`, rtp_port: port, bind: "127.0.0.1", interval: 0.5 },
      { use: "jitter-buffer", mode: "playout" }, // a live playout, though this test collects the frames
      { use: "g711-decoder" },
      { use: "test-collect" },
    ], { registry });
    const send = await buildPipeline("send", [
      { use: "wav-source", path: `${dir}/source.wav` },
      { use: "g711-encoder", codec },
      { use: "rtp-packetizer", ptime: PTIME, initial_sequence: FIRST_SEQ },
      { use: "rtcp", session: `impair-tx-${port}`, rtp_remote: `127.0.0.1:${port}`, bind: "127.0.0.1", interval: 0.5 },
      { use: "udp-sink", to: `127.0.0.1:${port}`, bind: "127.0.0.1" },
    ], { registry });
    // Packets that got through before the sender's BYE (RTCP is not impaired: it can overtake the last RTP).
    let beforeBye: number | undefined;
    receive.on("rtcp", (ev) => {
      const d = ev.detail as { type?: string; direction?: string };
      if (d.type === "BYE" && d.direction === "received") beforeBye ??= seqs.length;
    });
    const received = receive.start();
    const sent = await send.run();
    const rx = await received;
    assertEquals(sent.reason, "eos", String(sent.error));
    assertEquals(rx.reason, "eos", String(rx.error));

    const impair = extraOf(rx, "impair");
    const jb = extraOf(rx, "jitter-buffer");
    const dec = extraOf(rx, "g711-decoder");
    const rtcpRx = extraOf(rx, "rtcp");
    const rtcpTx = extraOf(sent, "rtcp");
    const summary = JSON.stringify({ seed: SEED, impair, jb, dec, rtcpRx, rtcpTx });
    console.log(
      `seed ${SEED}: impair dropped ${impair.dropped}, reordered ${impair.reordered}; jitter-buffer lost ${jb.lost}, ` +
        `late ${jb.late}, concealed ${jb.concealed}, accelerated ${jb.accelerated}, stretched ${jb.preemptive_expanded}, target ${
          jb.target_delay_ms.toFixed(1)
        } ms; ` +
        `RTCP lost ${rtcpRx.lost}, jitter ${rtcpRx.jitter_ms.toFixed(1)} ms; last RR at the sender: lost ` +
        `${rtcpTx.remote_lost}, jitter ${rtcpTx.remote_jitter_ms} ms`,
    );

    // What impair injected is what the wire (after it) shows.
    assertEquals(impair.received, PACKETS, summary);
    assert(impair.dropped >= 2 && impair.dropped <= 20, `5 % of ${PACKETS} dropped: ${impair.dropped}`);
    const ext = (s: number) => (s - FIRST_SEQ + 65536) % 65536; // 0..PACKETS-1 in send order
    const got = seqs.map(ext);
    assertEquals(new Set(got).size, got.length, "no duplicates");
    assertEquals(PACKETS - got.length, impair.dropped, "missing packets = impair's drops");
    let inversions = 0;
    for (let i = 1; i < got.length; i++) if (got[i] < got[i - 1]) inversions++;
    assert(inversions > 0, "jitter larger than the packet spacing reorders packets");
    const first = Math.min(...got), last = Math.max(...got);
    const interiorLost = last - first + 1 - got.length;

    // Loss as reported: the jitter buffer and RTCP count the packets missing between the first and the last.
    assertEquals(jb.lost, interiorLost, `jitter-buffer lost vs injected: ${summary}`);
    assertEquals(jb.received, got.length);
    assertEquals(jb.duplicate, 0);
    // RTCP counts as RFC 3550 A.1/A.3 do, from the arrivals before the BYE (which ends the source).
    assert(beforeBye !== undefined, "the sender's BYE arrived");
    const a1 = rfc3550Lost(got.slice(0, beforeBye));
    assertEquals(rtcpRx.lost, a1, `RTCP lost ${rtcpRx.lost}, RFC 3550 A.1 on what arrived: ${a1}: ${summary}`);
    assert(Math.abs(a1 - interiorLost) <= 3, `A.1 ${a1} vs ${interiorLost} injected`);
    // The sender learns it through receiver reports (the last one comes before the end of the stream).
    assert(rtcpTx.reports_received >= 2, "receiver reports reached the sender");
    // (A report counts reordered packets still in flight as lost: up to a few more than in the end.)
    assert(rtcpTx.remote_lost >= 1 && rtcpTx.remote_lost <= rtcpRx.lost + 3, `RR cumulative lost: ${summary}`);

    // Jitter: for delays uniform in [0, 40) ms, RFC 3550's estimator tracks E|D| = 40/3 ≈ 13.3 ms.
    assert(rtcpRx.jitter_ms >= 6 && rtcpRx.jitter_ms <= 25, `RTCP jitter ${rtcpRx.jitter_ms} ms`);
    assert(rtcpTx.remote_jitter_ms >= 6 && rtcpTx.remote_jitter_ms <= 25, `RR jitter ${rtcpTx.remote_jitter_ms} ms`);
    // The jitter buffer's target covers the transit spread (≈ 40 ms + margin), within its bounds.
    assert(jb.target_delay_ms >= 35 && jb.target_delay_ms <= 250, `target delay ${jb.target_delay_ms} ms`);

    // No gaps: from the first frame to the last real one, every slot is audio (real or concealed).
    const lastNormal = played.findLastIndex((f) => f.type === "normal");
    const stream = played.slice(0, lastNormal + 1);
    assert(stream.every((f) => f.type !== "silence"), "silence inside the stream");
    assert(stream.every((f) => f.samples.length === SPF));
    const streamSamples = stream.length * SPF;
    const sentSpan = (last - first + 1) * SPF;
    // The playout time-scales to follow its target delay: what it plays differs from what was sent by as much as
    // its delay changed (at most its largest delay), never by whole frames dropped or inserted.
    const slack = Math.ceil(((jb.delay_max_ms + 20) * 8000) / 1000);
    assert(
      Math.abs(streamSamples - sentSpan) <= slack,
      `played ${streamSamples} samples for ${sentSpan} sent (accelerated ${jb.accelerated_ms} ms, stretched ${jb.preemptive_ms} ms)`,
    );

    // Every loss concealed: each lost packet's 20 ms by at least its length less half a pitch period.
    assert(jb.expanded_ms >= 12.5 * jb.lost, `${jb.expanded_ms} ms of expansion for ${jb.lost} lost: ${summary}`);
    const concealed = stream.filter((f) => f.type === "concealed");
    assert(concealed.every((f) => f.samples.some((s) => s !== 0)), "a concealed frame is silent (no PLC)");
    assertEquals([dec.concealed, dec.silence, dec.decoded], [jb.concealed, jb.silence, jb.normal]);

    // Every sent frame that arrived plays, in order: reordering was undone, nothing garbled. Each is looked for
    // by 40 of its samples (concealment and merges never alter a received sample; an acceleration cuts a period
    // out of one or two frames, a pre-emptive expansion puts one inside a frame, which may split those 40).
    const out = new Int16Array(streamSamples);
    stream.forEach((f, i) => out.set(f.samples, i * SPF));
    const arrived = new Set(got);
    let cursor = 0, found = 0, missing = 0;
    for (let k = first; k <= last; k++) {
      if (!arrived.has(k)) continue;
      const sig = reference.subarray(k * SPF + 60, k * SPF + 100);
      let at = -1;
      for (let i = cursor; i + 40 <= out.length && i < cursor + 16000 && at < 0; i++) {
        if (out[i] === sig[0] && sig.every((v, j) => out[i + j] === v)) at = i;
      }
      if (at < 0) missing++;
      else {
        found++;
        cursor = at + 40;
      }
    }
    assert(
      missing <= jb.late + 2 * jb.accelerated + jb.preemptive_expanded,
      `${missing} received frames not played in order (late ${jb.late}, accelerated ${jb.accelerated}): ${summary}`,
    );
    assert(found >= got.length - jb.late - 2 * jb.accelerated - jb.preemptive_expanded - 2);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
