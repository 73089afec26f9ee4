/**
 * Runs packets of {@linkcode rtpSender} through the real-time receive chain's
 * stages, jitter-buffer (mode playout) → g711-decoder, on a VirtualClock, and
 * measures what a listener gets: the PCM, the largest step between samples
 * (a click), the playout delay against the target at every tick, and the
 * buffer's counters.
 *
 * @module
 */
import { VirtualClock } from "../core/clock.ts";
import { Logger, MemoryOutput } from "../core/log.ts";
import type { EncodedFrame, Frame, PcmFrame } from "../core/frame.ts";
import type { TransformStage } from "../core/stage.ts";
import type { MediaStats } from "../core/session.ts";
import { createStage, testContext } from "./registry_util.ts";
import jitterBuffer, { type JitterBufferStats } from "../plugins/rtp/jitter_buffer.ts";
import g711Decoder from "../plugins/g711/g711_decoder.ts";
import type { SentPacket } from "./rtp_sender.ts";

/** What a listener got. */
export interface PlayoutRun {
  /** Every sample played, in order. */
  pcm: Int16Array;
  /** Frame types, one per tick. */
  types: string[];
  /** At every tick that played received audio: the delay played and the target then (ms). */
  delays: { t: number; delay: number; target: number }[];
  /** The jitter buffer's counters at the end. */
  stats: JitterBufferStats;
  /** The decoder's counters. */
  decoder: Record<string, number>;
  /** The jitter buffer's summary line fields (logged at the end of the stream). */
  summary: Record<string, unknown> | undefined;
  /** The session's media statistics (the jitter buffer adds its delay distribution at the end). */
  media: MediaStats;
}

/**
 * Plays `packets` (sorted by arrival, ms from 0) through jitter-buffer → g711-decoder until `untilMs`, with the
 * jitter buffer's `options` (mode playout).
 */
export async function playout(
  packets: SentPacket[],
  untilMs: number,
  options: Record<string, unknown> = {},
): Promise<PlayoutRun> {
  const clock = new VirtualClock(0);
  const mem = new MemoryOutput();
  const log = new Logger({ level: "info", outputs: [mem] });
  const base = testContext({ clock });
  const chunks: Int16Array[] = [];
  const types: string[] = [];
  const delays: PlayoutRun["delays"] = [];
  const dctx = { ...base.ctx, log };
  const dec = await createStage<TransformStage>(g711Decoder, {}, dctx);
  dec.negotiate!({ kind: "encoded", codec: "PCMU", clockRate: 8000 });
  const ref: { jb?: TransformStage } = {};
  const toDecoder = (f: Frame) => {
    dec.process(f as EncodedFrame, (p) => {
      const pcm = p as PcmFrame;
      chunks.push(pcm.samples);
      types.push(pcm.type ?? "normal");
      return true;
    });
    if ((f as EncodedFrame).type === "normal") {
      const s = ref.jb!.stats!() as unknown as JitterBufferStats;
      delays.push({ t: clock.now(), delay: s.delay_ms, target: s.target_delay_ms });
    }
    return true;
  };
  const ctx = { ...base.ctx, log, emit: toDecoder };
  const jb = await createStage<TransformStage>(jitterBuffer, { mode: "playout", ...options }, ctx);
  ref.jb = jb;
  jb.negotiate!({ kind: "rtp", codec: "PCMU", clockRate: 8000 });
  await jb.start!(ctx);
  for (const p of packets) {
    if (p.arrival > clock.now()) clock.advance(p.arrival - clock.now());
    jb.process({ ...p.frame, arrival: clock.now() }, () => true);
  }
  if (untilMs > clock.now()) clock.advance(untilMs - clock.now());
  const stats = jb.stats!() as unknown as JitterBufferStats;
  await jb.close!();
  const pcm = new Int16Array(chunks.reduce((n, c) => n + c.length, 0));
  let k = 0;
  for (const c of chunks) {
    pcm.set(c, k);
    k += c.length;
  }
  return {
    pcm,
    types,
    delays,
    stats,
    decoder: dec.stats!() as Record<string, number>,
    summary: summaryOf(mem.lines),
    media: base.ctx.session.stats,
  };
}

/** The fields of the `jitter buffer summary` line among `lines` (numbers where they are numbers). */
function summaryOf(lines: string[]): Record<string, unknown> | undefined {
  const line = lines.find((l) => l.includes("jitter buffer summary"));
  if (!line) return undefined;
  const out: Record<string, unknown> = {};
  for (const m of line.matchAll(/(\w+)=(\S+)/g)) out[m[1]] = Number.isNaN(Number(m[2])) ? m[2] : Number(m[2]);
  return out;
}

/** The largest step between consecutive samples of `x[from, to)`. */
export function largestStep(x: Int16Array, from = 0, to = x.length): number {
  let m = 0;
  for (let i = Math.max(1, from); i < to; i++) {
    const d = Math.abs(x[i] - x[i - 1]);
    if (d > m) m = d;
  }
  return m;
}
