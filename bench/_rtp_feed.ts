/**
 * Private to the benchmarks: the synthetic RTP source of `bench/pacing.ts`
 * and the `rtp-feed → udp-sink` streams it paces, shared by the main thread
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
import { definePlugin } from "../core/stage.ts";
import { plugins as udpPlugins } from "../plugins/udp/mod.ts";

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
 * Builds one `rtp-feed → udp-sink` pipeline per SSRC (to `127.0.0.1:port`,
 * random start phases within one packet time), on `clock`; with `net`, each in
 * a session of its own bound on that network. Returns a function that runs
 * them all and sums what the sinks saw.
 */
export async function buildStreams(
  opts: { ssrcs: number[]; count: number; port: number; clock: Clock; net?: Network },
): Promise<() => Promise<FeedResult>> {
  const registry = new Registry([rtpFeed, ...udpPlugins]);
  const { clock, net } = opts;
  const pipelines: Pipeline[] = [];
  for (const ssrc of opts.ssrcs) {
    pipelines.push(
      await buildPipeline(`s${ssrc}`, [
        { use: "rtp-feed", ssrc, count: opts.count, delay_ms: Math.random() * PTIME },
        { use: "udp-sink", to: `127.0.0.1:${opts.port}`, bind: "127.0.0.1" },
      ], { registry, clock, session: net && new Session({ id: `s${ssrc}`, clock, net }) }),
    );
  }
  return async () => {
    const results = await Promise.all(pipelines.map((p) => p.run()));
    if (net) { for (const p of pipelines) await p.session.close(); }
    const out: FeedResult = { late: 0, maxLate: 0, errors: 0, failures: [] };
    for (const r of results) {
      if (r.reason !== "eos") out.failures.push(`${r.reason} ${r.error?.message ?? ""}`);
      const x = r.stats[1].extra!;
      out.late += x.late_sends as number;
      out.maxLate = Math.max(out.maxLate, x.max_late_ms as number);
      out.errors += x.send_errors as number;
    }
    return out;
  };
}
