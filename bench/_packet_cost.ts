/**
 * The pure parts of `bench/packet_cost.ts` (the per-packet cost of the
 * callee's receive chain), kept apart so that `tests/bench_packet_cost_test.ts`
 * can check them without running the bench: the variants cut from the
 * callee's `receive` template, the generator's RTP packets and send schedule,
 * and the figures (per variant, per stage) computed from the measurements.
 *
 * Private to `bench/`.
 *
 * @module
 */
import type { StageConfig } from "../core/stage.ts";

/** Packet time of the generated streams, ms (20 ms PCMU: 160 samples, 160 payload bytes). */
export const PTIME_MS = 20;
/** RTP timestamp units per packet (8 kHz × 20 ms). */
export const SAMPLES_PER_PACKET = 160;
/** Size of a generated datagram: 12-byte RTP header + 160 bytes of PCMU. */
export const PACKET_BYTES = 12 + SAMPLES_PER_PACKET;

/** The stages of the callee's `receive` chain, in order, as the variants expect them. */
export const RECEIVE_STAGES = [
  "udp-source",
  "rtp-depacketizer",
  "rtcp",
  "jitter-buffer",
  "g711-decoder",
  "wav-sink",
] as const;

/** One variant: the first `stages` stages of the receive chain, ended by a `null-sink` unless it is the whole chain. */
export interface Variant {
  /** 1-based number: variant k holds k stages of the chain. */
  id: number;
  /** What it holds, e.g. `udp-source → rtp-depacketizer → null-sink`. */
  label: string;
  /** The stage variant `id` adds to the one before (`udp-source` for the first). */
  adds: string;
}

/** The six variants, each adding one stage of {@linkcode RECEIVE_STAGES}; the last is the whole chain. */
export const VARIANTS: readonly Variant[] = RECEIVE_STAGES.map((use, i) => ({
  id: i + 1,
  label: i === RECEIVE_STAGES.length - 1
    ? RECEIVE_STAGES.join(" → ")
    : [...RECEIVE_STAGES.slice(0, i + 1), "null-sink"].join(" → "),
  adds: i === RECEIVE_STAGES.length - 1 ? "wav-sink (instead of null-sink)" : use,
}));

/**
 * The chain of variant `id` (1..6) cut from the callee's `receive` template: its first `id` stages, followed by a
 * `null-sink` unless `id` is 6 (the template as it is). Throws when the template no longer holds
 * {@linkcode RECEIVE_STAGES} in that order (the bench would measure something else: update it).
 */
export function variantChain(receive: StageConfig[], id: number): StageConfig[] {
  const uses = receive.map((s) => s.use);
  if (uses.join(",") !== RECEIVE_STAGES.join(",")) {
    throw new Error(
      `pipelines/callee.json's receive chain is ${uses.join(" → ")}, but the packet-cost bench expects ` +
        `${RECEIVE_STAGES.join(" → ")}: update RECEIVE_STAGES and the variants in bench/_packet_cost.ts`,
    );
  }
  if (!Number.isInteger(id) || id < 1 || id > RECEIVE_STAGES.length) {
    throw new RangeError(`variant: expected 1..${RECEIVE_STAGES.length}, got ${id}`);
  }
  const stages = receive.slice(0, id).map((s) => ({ ...s }));
  return id === RECEIVE_STAGES.length ? stages : [...stages, { use: "null-sink" }];
}

/**
 * Parses a list of variants: `all`, or numbers and ranges (`1,3-6`). Returns them sorted, without repeats; throws
 * a clear error on anything else.
 */
export function parseVariants(text: string): number[] {
  if (text.trim() === "all") return VARIANTS.map((v) => v.id);
  const out = new Set<number>();
  for (const part of text.split(",")) {
    const m = /^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$/.exec(part);
    const a = m ? Number(m[1]) : NaN, b = m?.[2] !== undefined ? Number(m[2]) : a;
    if (!m || a < 1 || b > VARIANTS.length || a > b) {
      throw new Error(
        `--variants: expected "all" or numbers 1..${VARIANTS.length} and ranges (e.g. 1,3-6), got "${text}"`,
      );
    }
    for (let v = a; v <= b; v++) out.add(v);
  }
  return [...out].sort((x, y) => x - y);
}

// ---- the generator's streams -------------------------------------------------------------------

/** One call's RTP stream as the generator sends it. */
export interface CallStream {
  /** SSRC of the stream. */
  ssrc: number;
  /** Sequence number of packet 0. */
  seq0: number;
  /** RTP timestamp of packet 0. */
  ts0: number;
  /** When packet 0 is due, ms after the generator's start: calls are spread evenly over one packet time. */
  phaseMs: number;
}

/**
 * The stream of call `index` of `calls`: a distinct SSRC, sequence number and timestamp origins that differ per call
 * (deterministic, so a run can be replayed; the sequence wraps within the first minutes for some calls), and a phase
 * `index × 20 ms / calls`, so that the calls' packets are spread over the 20 ms period.
 */
export function callStream(index: number, calls: number): CallStream {
  if (!Number.isInteger(index) || !Number.isInteger(calls) || index < 0 || index >= calls) {
    throw new RangeError(`callStream: expected 0 <= index < calls, got index ${index} of ${calls}`);
  }
  return {
    ssrc: (0x5a000000 + index * 0x10001) >>> 0,
    seq0: (index * 40503 + 65000) & 0xffff,
    ts0: Math.imul(index + 1, 0x9e3779b1) >>> 0,
    phaseMs: (index * PTIME_MS) / calls,
  };
}

/** 160 bytes of PCMU: a µ-law pattern that is not silence (the decoder's table lookups do not depend on it). */
export const PCMU_PAYLOAD: Uint8Array = Uint8Array.from({ length: SAMPLES_PER_PACKET }, (_, i) => (i * 37 + 11) & 0xff);

/**
 * Packet `k` of `stream` (a new buffer: the sender may hold it until its batch is sent): RTP version 2, no padding,
 * extension or CSRC, marker on packet 0, payload type 0 (PCMU), sequence `seq0 + k` (mod 2^16), timestamp
 * `ts0 + 160·k` (mod 2^32), the stream's SSRC, then `payload`.
 */
export function rtpPacket(stream: CallStream, k: number, payload: Uint8Array = PCMU_PAYLOAD): Uint8Array {
  const out = new Uint8Array(12 + payload.length);
  const v = new DataView(out.buffer);
  out[0] = 0x80;
  out[1] = k === 0 ? 0x80 : 0x00; // marker on the first packet of the talkspurt; PT 0
  v.setUint16(2, (stream.seq0 + k) & 0xffff);
  v.setUint32(4, (stream.ts0 + SAMPLES_PER_PACKET * k) >>> 0);
  v.setUint32(8, stream.ssrc);
  out.set(payload, 12);
  return out;
}

/**
 * How many packets of a stream of phase `phaseMs` are due `elapsedMs` after the generator's start (packet k is due
 * at `phaseMs + k × 20 ms`): the generator sends each call's packets up to this count, so it keeps the real rate and
 * catches up after a stall instead of drifting.
 */
export function packetsDue(phaseMs: number, elapsedMs: number): number {
  return elapsedMs < phaseMs ? 0 : Math.floor((elapsedMs - phaseMs) / PTIME_MS) + 1;
}

// ---- figures -----------------------------------------------------------------------------------

/** One measurement: one variant on one network kind in one round, its own receiver process. */
export interface Measure {
  /** Variant id (1..6). */
  variant: number;
  /** Network kind: `deno` (Deno.listenDatagram) or `fast` (MediaLoop FFI sockets). */
  net: string;
  /** Round (0-based). */
  round: number;
  /** Packets the chains received (udp-source counters) in the measuring window. */
  packets: number;
  /** CPU seconds of the receiver process (user + system, all threads) in the window. */
  cpuS: number;
  /** Wall-clock seconds of the window. */
  wallS: number;
  /** Packets the generator sent over the whole run. */
  sent: number;
  /** Packets the chains received over the whole run. */
  received: number;
  /** Packets the rtcp stages counted lost (RFC 3550 cumulative loss, summed over calls), where the chain has one. */
  rtcpLost?: number;
  /** Packets the jitter buffers counted lost, where the chain has one. */
  jitterLost?: number;
  /** CPU seconds of the generator process in the window (context: a saturated generator paces badly). */
  generatorCpuS?: number;
  /** CPU pressure ("some", %) over the window. */
  pressure?: number;
  /** The receiver's resident memory per call, KB: (RSS at the window's end − RSS before the chains were built) / calls. */
  rssPerCallKB?: number;
  /** The same for the JavaScript heap in use (V8 `heapUsed`), KB per call. */
  heapPerCallKB?: number;
}

/** CPU µs per packet of a measurement (NaN without packets). */
export function usPerPacket(m: Pick<Measure, "cpuS" | "packets">): number {
  return m.packets > 0 ? (m.cpuS * 1e6) / m.packets : NaN;
}

/** The median (the mean of the middle two for an even count); NaN for none. */
export function median(xs: number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b), h = s.length >> 1;
  return s.length % 2 ? s[h] : (s[h - 1] + s[h]) / 2;
}

/** The figures of one variant on one network kind, over its rounds. */
export interface Row {
  /** Variant id. */
  variant: number;
  /** Network kind. */
  net: string;
  /** Measurements (rounds). */
  runs: number;
  /** Packets received in the windows, summed over rounds. */
  packets: number;
  /** Packets sent minus received over the whole runs, summed over rounds (not below 0). */
  lost: number;
  /** rtcp stages' loss count, summed over rounds, where the chain has one. */
  rtcpLost?: number;
  /** Median CPU, % of one core. */
  cpuPercent: number;
  /** Median CPU µs per packet. */
  usPerPacket: number;
  /** Smallest and largest µs per packet over the rounds. */
  usRange: [number, number];
  /** Median packets per second per core (packets / CPU seconds). */
  packetsPerCoreS: number;
  /** Median resident memory per call, KB (NaN when not measured). */
  rssPerCallKB: number;
  /** Median JavaScript heap per call, KB (NaN when not measured). */
  heapPerCallKB: number;
}

/** One {@linkcode Row} per variant and network kind measured, in variant order then network order. */
export function summarize(measures: Measure[], nets: string[]): Row[] {
  const rows: Row[] = [];
  const variants = [...new Set(measures.map((m) => m.variant))].sort((a, b) => a - b);
  for (const variant of variants) {
    for (const net of nets) {
      const ms = measures.filter((m) => m.variant === variant && m.net === net);
      if (ms.length === 0) continue;
      const us = ms.map(usPerPacket);
      const rtcp = ms.filter((m) => m.rtcpLost !== undefined);
      rows.push({
        variant,
        net,
        runs: ms.length,
        packets: ms.reduce((a, m) => a + m.packets, 0),
        lost: ms.reduce((a, m) => a + Math.max(0, m.sent - m.received), 0),
        ...(rtcp.length ? { rtcpLost: rtcp.reduce((a, m) => a + m.rtcpLost!, 0) } : {}),
        cpuPercent: median(ms.map((m) => (100 * m.cpuS) / m.wallS)),
        usPerPacket: median(us),
        usRange: [Math.min(...us), Math.max(...us)],
        packetsPerCoreS: median(ms.map((m) => (m.cpuS > 0 ? m.packets / m.cpuS : NaN))),
        rssPerCallKB: median(ms.flatMap((m) => m.rssPerCallKB === undefined ? [] : [m.rssPerCallKB])),
        heapPerCallKB: median(ms.flatMap((m) => m.heapPerCallKB === undefined ? [] : [m.heapPerCallKB])),
      });
    }
  }
  return rows;
}

/** The cost of one stage: the difference between a variant and the one before it, on one network kind. */
export interface StageCost {
  /** Network kind. */
  net: string;
  /** The variant that adds the stage. */
  variant: number;
  /** The stage it adds. */
  adds: string;
  /** Median µs/packet of the variant minus that of the one before. */
  usPerPacket: number;
  /**
   * The noise of that difference: half the spread over rounds of each of the two variants, added (undefined with one
   * round: the noise is not known).
   */
  noise?: number;
  /** True when the difference is larger than its noise (false when the noise is not known). */
  meaningful: boolean;
}

/**
 * The per-stage costs: for each network kind, each variant minus the variant just before it (both measured), in
 * µs of CPU per packet, with the noise of the difference.
 */
export function stageCosts(rows: Row[]): StageCost[] {
  const out: StageCost[] = [];
  for (const r of rows) {
    const prev = rows.find((p) => p.net === r.net && p.variant === r.variant - 1);
    if (!prev) continue;
    const diff = r.usPerPacket - prev.usPerPacket;
    const noise = r.runs > 1 && prev.runs > 1
      ? (r.usRange[1] - r.usRange[0]) / 2 + (prev.usRange[1] - prev.usRange[0]) / 2
      : undefined;
    out.push({
      net: r.net,
      variant: r.variant,
      adds: VARIANTS[r.variant - 1].adds,
      usPerPacket: diff,
      ...(noise !== undefined ? { noise } : {}),
      meaningful: noise !== undefined && Math.abs(diff) > noise,
    });
  }
  return out;
}

/** A Markdown table: a header row, a rule, then the rows, each column padded to its widest cell. */
export function table(rows: string[][]): string {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => (r[i] ?? "").length)));
  const line = (r: string[]) => `| ${r.map((c, i) => (c ?? "").padEnd(widths[i])).join(" | ")} |`;
  return [line(rows[0]), `|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`, ...rows.slice(1).map(line)].join("\n");
}

const fix = (x: number, d: number) => (Number.isFinite(x) ? x.toFixed(d) : "n/a");

/** The per-variant table (one line per variant and network kind). */
export function variantTable(rows: Row[]): string {
  return table([
    [
      "variant",
      "net",
      "runs",
      "packets",
      "lost (sent − received)",
      "rtcp lost",
      "CPU % of a core",
      "µs/packet (min–max)",
      "packets/s per core",
      "RSS/call KB",
      "heap/call KB",
    ],
    ...rows.map((r) => [
      `${r.variant} ${VARIANTS[r.variant - 1].label}`,
      r.net,
      String(r.runs),
      String(r.packets),
      String(r.lost),
      r.rtcpLost === undefined ? "—" : String(r.rtcpLost),
      fix(r.cpuPercent, 1),
      `${fix(r.usPerPacket, 2)} (${fix(r.usRange[0], 2)}–${fix(r.usRange[1], 2)})`,
      fix(r.packetsPerCoreS, 0),
      fix(r.rssPerCallKB, 1),
      fix(r.heapPerCallKB, 1),
    ]),
  ]);
}

/** The per-stage table (differences between consecutive variants). */
export function stageTable(costs: StageCost[]): string {
  return table([
    ["stage added", "net", "µs/packet", "noise ±", "beyond noise"],
    ...costs.map((c) => [
      `${c.variant}: ${c.adds}`,
      c.net,
      `${c.usPerPacket >= 0 ? "+" : ""}${fix(c.usPerPacket, 2)}`,
      c.noise === undefined ? "unknown (1 round)" : fix(c.noise, 2),
      c.meaningful ? "yes" : "no",
    ]),
  ]);
}
