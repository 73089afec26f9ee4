/**
 * Private to the benchmarks: the synthetic RTP source of `bench/pacing.ts`
 * and the streams it paces (`rtp-feed → udp-sink`, or full `file-source →
 * g711-encoder → rtp-packetizer → udp-sink` chains), shared by the main thread
 * and the media workers of `--workers` (`_pacing_worker.ts`).
 *
 * @module
 */
import { z } from "zod";
import type { Clock } from "../core/clock.ts";
import type { RtpFrame } from "../core/frame.ts";
import type { Network } from "../core/net/datagram.ts";
import { buildPipeline, type Pipeline } from "../core/pipeline.ts";
import { Registry } from "../core/registry.ts";
import { Session } from "../core/session.ts";
import { StartGate } from "../core/start_gate.ts";
import { definePlugin } from "../core/stage.ts";
import { plugins as udpPlugins } from "../plugins/udp/mod.ts";
import { plugins as filePlugins } from "../plugins/file/mod.ts";
import { plugins as g711Plugins } from "../plugins/g711/mod.ts";
import { plugins as rtpPlugins } from "../plugins/rtp/mod.ts";
import { wavHeader } from "../plugins/wav/wav_format.ts";

/** Packet time of the streams, ms. */
export const PTIME = 20;

/** A synthetic RTP source: `count` packets of 20 ms PCMU, as fast as the sink accepts. */
export const rtpFeed = definePlugin({
  name: "rtp-feed",
  kind: "source",
  description: "synthetic RTP packets for the pacing benchmark",
  produces: { kind: "rtp", codec: "PCMU", clockRate: 8000 },
  options: z.object({
    ssrc: z.number().int().describe("SSRC"),
    count: z.number().int().describe("packets"),
    delay_ms: z.number().describe("start delay in ms"),
  }),
  create: (o) => ({
    async run(ctx) {
      await ctx.clock.sleep(o.delay_ms, ctx.signal);
      const payload = new Uint8Array(160).fill(0xff);
      const ts0 = (Math.random() * 0xffffffff) >>> 0;
      for (let i = 0; i < o.count && !ctx.signal.aborted; i++) {
        const f: RtpFrame = {
          kind: "rtp",
          payloadType: 0,
          sequence: i & 0xffff,
          timestamp: (ts0 + i * 160) >>> 0,
          ssrc: o.ssrc,
          marker: i === 0,
          payload,
          codec: "PCMU",
          clockRate: 8000,
        };
        if (!ctx.emit(f)) await ctx.ready();
      }
    },
  }),
});

/** What the sinks of a set of streams saw. */
export interface FeedResult {
  /** Packets sent more than 1 ms after their due time. */
  late: number;
  /** Largest lateness, ms. */
  maxLate: number;
  /** Send errors. */
  errors: number;
  /** Pipelines that did not end with eos, with why. */
  failures: string[];
}

/**
 * Writes `path`: a WAV file of `packets` × 20 ms of 8 kHz 16-bit mono noise,
 * what the `file` chains of {@linkcode buildStreams} send.
 */
export async function writeChainWav(path: string, packets: number): Promise<void> {
  const samples = packets * 160;
  const header = wavHeader({ encoding: "pcm16", sampleRate: 8000, channels: 1, dataBytes: samples * 2 });
  const b = new Uint8Array(header.length + samples * 2);
  b.set(header);
  const v = new DataView(b.buffer);
  for (let i = 0; i < samples; i++) v.setInt16(header.length + 2 * i, (Math.random() * 2 - 1) * 8000, true);
  await Deno.writeFile(path, b);
}

/**
 * Builds one pipeline per SSRC sending to `127.0.0.1:port`, on `clock`; with
 * `net`, each in a session of its own bound on that network. With `file` (a WAV
 * of `count` packets, see {@linkcode writeChainWav}) each is the full chain
 * `file-source → g711-encoder → rtp-packetizer → udp-sink`, else `rtp-feed →
 * udp-sink`. Streams start at random phases within one packet time (a file
 * chain's sink has a random `offset_ms`, a feed waits a random delay). Returns a
 * function that runs them all and sums what the sinks saw. Two or more file chains start together, as a pipeline
 * file's chains do (a {@linkcode StartGate}: every sink fills its queue, then all start their timelines), unless `gate`
 * is false.
 */
export async function buildStreams(
  opts: { ssrcs: number[]; count: number; port: number; clock: Clock; net?: Network; file?: string; gate?: boolean },
): Promise<() => Promise<FeedResult>> {
  const registry = new Registry([rtpFeed, ...udpPlugins, ...filePlugins, ...g711Plugins, ...rtpPlugins]);
  const { clock, net, file } = opts;
  const pipelines: Pipeline[] = [];
  for (const ssrc of opts.ssrcs) {
    const delay = Math.random() * PTIME;
    // A file chain's first packet reaches its sink when its file is open, and 200 opens complete in a few batches:
    // its phase is set by the sink's offset (GStreamer's ts-offset), not by a delay before it starts.
    const sink = {
      use: "udp-sink",
      to: `127.0.0.1:${opts.port}`,
      bind: "127.0.0.1",
      ...(file ? { offset_ms: delay } : {}),
    };
    const stages = file
      ? [
        { use: "file-source", path: file },
        { use: "g711-encoder", codec: "PCMU" },
        { use: "rtp-packetizer", ptime: PTIME, ssrc },
        sink,
      ]
      : [{ use: "rtp-feed", ssrc, count: opts.count, delay_ms: delay }, sink];

    pipelines.push(
      await buildPipeline(`s${ssrc}`, stages, {
        registry,
        clock,
        session: net && new Session({ id: `s${ssrc}`, clock, net }),
      }),
    );
  }
  return async () => {
    const gate = file && opts.gate !== false && pipelines.length >= 2 ? new StartGate(clock) : undefined;
    const running = pipelines.map((p) => p.run(gate ? { gate } : {}));
    gate?.seal();
    const results = await Promise.all(running);
    if (net) { for (const p of pipelines) await p.session.close(); }
    const out: FeedResult = { late: 0, maxLate: 0, errors: 0, failures: [] };
    for (const r of results) {
      if (r.reason !== "eos") out.failures.push(`${r.reason} ${r.error?.message ?? ""}`);
      const x = r.stats[r.stats.length - 1].extra!;
      out.late += x.late_sends as number;
      out.maxLate = Math.max(out.maxLate, x.max_late_ms as number);
      out.errors += x.send_errors as number;
    }
    return out;
  };
}
