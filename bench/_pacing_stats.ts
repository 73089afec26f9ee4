/**
 * Private to the pacing benchmarks (`pacing.ts`, `fastudp_bench.ts`): the
 * statistics of received RTP streams (|inter-arrival − 20 ms| percentiles,
 * drift, losses) and the `dumpcap` capture that gives them from the kernel's
 * timestamps on `lo`, taken as each datagram is sent: the sender's pacing
 * without the receiving process's own wake-up latency.
 *
 * @module
 */
import { PTIME } from "./_rtp_feed.ts";

/** Pacing statistics of a set of streams. */
export interface PacingStats {
  p50: number;
  p99: number;
  max: number;
  drift: number;
  driftWorst: number;
  received: number;
  lost: number;
  streams: number;
  /**
   * p99 and max of the deviations after each stream's first second (its packets from the 51st on): steady-state
   * pacing, without the start of the run, when every stream starts at once.
   */
  p99AfterFirstSecond: number;
  maxAfterFirstSecond: number;
}

/** Arrival times of one stream, indexed by packet number n (from the RTP timestamp). */
export interface Arrivals {
  ts0: number;
  t: Float64Array;
  seen: Uint8Array;
}

function percentile(sorted: Float64Array, q: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[s.length >> 1] : NaN;
}

/**
 * Records that the packet of stream `ssrc` with RTP timestamp `ts` (8 kHz, 20 ms packets) arrived at `now` (ms);
 * streams have `packetsPerStream` packets.
 */
export function record(
  streams: Map<number, Arrivals>,
  ssrc: number,
  ts: number,
  now: number,
  packetsPerStream: number,
): boolean {
  let s = streams.get(ssrc);
  if (!s) {
    s = { ts0: ts, t: new Float64Array(packetsPerStream + 8), seen: new Uint8Array(packetsPerStream + 8) };
    streams.set(ssrc, s);
  }
  const n = Math.round(((ts - s.ts0) >>> 0) / (8 * PTIME));
  if (n >= s.t.length || s.seen[n]) return false;
  s.t[n] = now;
  s.seen[n] = 1;
  return true;
}

/** Inter-arrival deviation percentiles and drift over all streams (`expectStreams` of `packetsPerStream` packets). */
export function analyze(
  streams: Map<number, Arrivals>,
  expectStreams: number,
  packetsPerStream: number,
): PacingStats {
  const devs: number[] = [];
  const later: number[] = [];
  const firstSecond = 1000 / PTIME;
  const drifts: number[] = [];
  let lost = 0, received = 0;
  for (const s of streams.values()) {
    const offsets: number[] = [];
    for (let n = 0; n < packetsPerStream; n++) {
      if (!s.seen[n]) {
        lost++;
        continue;
      }
      received++;
      offsets.push(s.t[n] - s.t[0] - n * PTIME);
      if (n > 0 && s.seen[n - 1]) {
        const dev = Math.abs(s.t[n] - s.t[n - 1] - PTIME);
        devs.push(dev);
        if (n > firstSecond) later.push(dev);
      }
    }
    const k = Math.min(50, offsets.length >> 1);
    if (k > 0) drifts.push(median(offsets.slice(-k)) - median(offsets.slice(0, k)));
  }
  lost += Math.max(0, expectStreams - streams.size) * packetsPerStream;
  const sorted = Float64Array.from(devs).sort();
  const sortedLater = Float64Array.from(later).sort();
  return {
    p50: percentile(sorted, 0.5),
    p99: percentile(sorted, 0.99),
    max: sorted.length ? sorted[sorted.length - 1] : NaN,
    drift: drifts.reduce((a, b) => a + b, 0) / Math.max(1, drifts.length),
    driftWorst: drifts.reduce((a, b) => Math.abs(b) > Math.abs(a) ? b : a, 0),
    received,
    lost,
    streams: streams.size,
    p99AfterFirstSecond: percentile(sortedLater, 0.99),
    maxAfterFirstSecond: sortedLater.length ? sortedLater[sortedLater.length - 1] : NaN,
  };
}

/**
 * Captures the datagrams to `port` on the loopback interface with `dumpcap`: the
 * kernel timestamps them as they are sent, so these figures are the sender's
 * pacing without the receiving process's wake-up latency. `keep`: a path to
 * copy the capture file to.
 */
export async function startCapture(
  port: number,
  expectStreams: number,
  packetsPerStream: number,
  keep?: string,
): Promise<{ stop(): Promise<PacingStats>; stopStreams(): Promise<Map<number, Arrivals>> }> {
  const file = await Deno.makeTempFile({ prefix: "pacing-", suffix: ".pcap" });
  const child = new Deno.Command("dumpcap", {
    args: ["-i", "lo", "-f", `udp dst port ${port}`, "-P", "-B", "64", "-w", file],
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const reader = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  while (!text.includes("Capturing on")) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`dumpcap failed: ${text}`);
    text += value;
  }
  (async () => {
    while (!(await reader.read()).done) { /* drain */ }
  })();
  await new Promise((r) => setTimeout(r, 300)); // let the capture filter settle before the first packet
  const stopStreams = async () => {
    // dumpcap writes what it captured in blocks: stopped at once after a sender's last datagram, it lost the last
    // ~100 ms of that sender's packets (6 of 250 in one test; a receiving socket had them all), which showed as loss.
    await new Promise((r) => setTimeout(r, 500));
    child.kill("SIGINT");
    await child.status;
    const bytes = await Deno.readFile(file);
    if (keep) await Deno.writeFile(keep, bytes);
    await Deno.remove(file);
    return parsePcap(bytes, packetsPerStream);
  };
  return {
    /** Ends the capture: the statistics of all the streams together. */
    stop: async () => analyze(await stopStreams(), expectStreams, packetsPerStream),
    /** Ends the capture: each stream's arrivals, by SSRC. */
    stopStreams,
  };
}

/** Reads RTP arrival times (ms) per SSRC from a classic pcap file of IPv4/UDP/RTP. */
export function parsePcap(b: Uint8Array, packetsPerStream: number): Map<number, Arrivals> {
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const magic = v.getUint32(0, true);
  const le = magic === 0xa1b2c3d4 || magic === 0xa1b23c4d;
  const nanos = magic === 0xa1b23c4d || magic === 0x4d3cb2a1;
  const link = v.getUint32(20, le);
  const linkLen = link === 1 ? 14 : link === 113 ? 16 : link === 276 ? 20 : link === 0 ? 4 : -1;
  if (linkLen < 0) throw new Error(`pcap link type ${link} not handled`);
  const out = new Map<number, Arrivals>();
  for (let o = 24; o + 16 <= b.length;) {
    const sec = v.getUint32(o, le), frac = v.getUint32(o + 4, le), incl = v.getUint32(o + 8, le);
    const p = o + 16;
    o = p + incl;
    const ip = p + linkLen;
    const ihl = (b[ip] & 0x0f) * 4;
    const rtp = ip + ihl + 8;
    if (rtp + 12 > o) continue;
    const t = sec * 1000 + (nanos ? frac / 1e6 : frac / 1e3);
    if (o - rtp === 4) continue; // END marker
    record(out, v.getUint32(rtp + 8), v.getUint32(rtp + 4), t, packetsPerStream);
  }
  return out;
}
