/**
 * Real-time playout under loss, jitter and clock drift, side by side with
 * GStreamer's `rtpjitterbuffer` on the same packets.
 *
 * The deterministic test sender (tests/rtp_sender.ts) makes a 440 Hz tone as
 * PCMU RTP with arrival times: 0 %, 5 % and 15 % loss with 40 ± 20 ms of
 * jitter, and a sender clock 1 % fast and 1 % slow. voxpipe's jitter-buffer →
 * g711-decoder plays them on a VirtualClock (10 minutes of drift take seconds);
 * GStreamer gets the same packets over loopback UDP at their arrival times
 * (`udpsrc ! rtpjitterbuffer latency=200 ! rtppcmudepay ! mulawdec ! wavenc`),
 * in real time, so its runs are shorter (`--gst-seconds`, default 20; drift
 * `--gst-drift-seconds`, default 30; `--no-gst` skips them).
 *
 * Figures: playout delay p50/p95/max (voxpipe), concealment, frames stretched
 * and compressed, the largest step between samples on the tone (its own is
 * 2750: more is a click) and the number of such clicks, and the audio length
 * played against the audio sent.
 *
 * ```sh
 * deno run -A bench/playout_bench.ts [--no-gst] [--gst-seconds 20] [--gst-drift-seconds 30]
 * ```
 *
 * @module
 */
import { benchArgs } from "./_args.ts";
import dgram from "node:dgram";
import { serializeRtp } from "../plugins/rtp/header.ts";
import { rtpSender, type RtpSenderOptions } from "../tests/rtp_sender.ts";
import { largestStep, playout } from "../tests/playout_util.ts";

const { values: args } = benchArgs(import.meta.url, {
  "no-gst": { type: "boolean", default: false },
  "gst-seconds": { type: "string", default: "20" },
  "gst-drift-seconds": { type: "string", default: "30" },
  "seconds": { type: "string", default: "120" },
  "drift-seconds": { type: "string", default: "600" },
});

interface Scenario {
  name: string;
  sender: Omit<RtpSenderOptions, "seconds">;
  seconds: number;
  gstSeconds: number;
}

const jitter = { delayMs: 40, jitterMs: 20 };
const scenarios: Scenario[] = [
  { name: "0 % loss, 40±20 ms", sender: { ...jitter, seed: 11 } },
  { name: "5 % loss, 40±20 ms", sender: { ...jitter, loss: 0.05, seed: 12 } },
  { name: "15 % loss, 40±20 ms", sender: { ...jitter, loss: 0.15, seed: 13 } },
].map((s) => ({ ...s, seconds: Number(args.seconds), gstSeconds: Number(args["gst-seconds"]) }));
for (const drift of [0.01, -0.01]) {
  scenarios.push({
    name: `drift ${drift > 0 ? "+" : "−"}1 %, 20±5 ms`,
    sender: { drift, delayMs: 20, jitterMs: 5, seed: 14 },
    seconds: Number(args["drift-seconds"]),
    gstSeconds: Number(args["gst-drift-seconds"]),
  });
}

/** Steps larger than this many times the tone's own are counted as clicks. */
const CLICK = 1.1;

/** Number of steps in `x` larger than `limit`. */
function clicks(x: Int16Array, limit: number): number {
  let n = 0;
  for (let i = 1; i < x.length; i++) if (Math.abs(x[i] - x[i - 1]) > limit) n++;
  return n;
}

/** The 16-bit samples of a WAV file's data chunk. */
function wavSamples(bytes: Uint8Array): Int16Array {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let p = 12;
  while (p + 8 <= bytes.length) {
    const id = String.fromCharCode(...bytes.subarray(p, p + 4));
    const size = v.getUint32(p + 4, true);
    if (id === "data") {
      const n = Math.min(size, bytes.length - p - 8) >> 1;
      const out = new Int16Array(n);
      for (let i = 0; i < n; i++) out[i] = v.getInt16(p + 8 + 2 * i, true);
      return out;
    }
    p += 8 + size + (size & 1);
  }
  return new Int16Array(0);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, Math.max(0, ms)));

/** Plays the packets to GStreamer's rtpjitterbuffer over loopback at their arrival times; returns its output. */
async function gstreamer(sc: Scenario, latency: number): Promise<Int16Array | undefined> {
  const tx = rtpSender({ ...sc.sender, seconds: sc.gstSeconds });
  const dir = await Deno.makeTempDir({ prefix: "voxpipe-playout-bench-" });
  const port = 20000 + Math.floor(Math.random() * 20000);
  const out = `${dir}/gst.wav`;
  const caps = "application/x-rtp,media=audio,clock-rate=8000,encoding-name=PCMU,payload=0";
  const cmd = new Deno.Command("gst-launch-1.0", {
    args: [
      "-e",
      "udpsrc",
      "address=127.0.0.1",
      `port=${port}`,
      `caps=${caps}`,
      "!",
      "rtpjitterbuffer",
      `latency=${latency}`,
      "!",
      "rtppcmudepay",
      "!",
      "mulawdec",
      "!",
      "wavenc",
      "!",
      "filesink",
      `location=${out}`,
    ],
    stdout: "null",
    stderr: "null",
  });
  const child = cmd.spawn();
  try {
    await sleep(1000); // pipeline up
    const sock = dgram.createSocket("udp4");
    const t0 = performance.now() + 50;
    for (const p of tx.packets) {
      const due = t0 + p.arrival;
      const wait = due - performance.now();
      if (wait > 2) await sleep(wait - 1);
      sock.send(serializeRtp(p.frame), port, "127.0.0.1");
    }
    await sleep(latency + 1000);
    sock.close();
    child.kill("SIGINT");
    const timer = setTimeout(() => child.kill("SIGKILL"), 5000);
    await child.status;
    clearTimeout(timer);
    return wavSamples(await Deno.readFile(out));
  } catch (e) {
    console.error(`gstreamer run failed: ${e instanceof Error ? e.message : e}`);
    try {
      child.kill("SIGKILL");
    } catch { /* gone */ }
    return undefined;
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const haveGst = !args["no-gst"] &&
  (await new Deno.Command("gst-launch-1.0", { args: ["--version"], stdout: "null", stderr: "null" }).output()
    .then((o) => o.success).catch(() => false));

const rows: string[][] = [];
const gstRows: string[][] = [];
const overRows: string[][] = [];
for (const sc of scenarios) {
  const tx = rtpSender({ ...sc.sender, seconds: sc.seconds });
  const natural = largestStep(tx.reference);
  const drift = sc.sender.drift ?? 0;
  const wall = (sc.seconds * 1000) / (1 + drift);
  const run = await playout(tx.packets, wall + 2000);
  const s = run.stats;
  const streamEnd = run.types.lastIndexOf("normal") + 1;
  const played = run.pcm.subarray(0, streamEnd * 160);
  // Within the stream (the tail after the last packet is concealment, then comfort noise, by design).
  const inStream = run.types.slice(0, streamEnd);
  const concealed = inStream.filter((t) => t === "concealed").length;
  const noise = inStream.filter((t) => t === "silence").length;
  // How far the delay went above its target, and when (the target adapts; the start plays at the initial delay).
  const over = run.delays.filter((d) => d.delay > d.target + 40);
  let worst = -Infinity;
  for (const d of run.delays) worst = Math.max(worst, d.delay - d.target);
  overRows.push([
    sc.name,
    `${worst.toFixed(1)} ms`,
    over.length === 0
      ? "0"
      : `${over.length} of ${run.delays.length} (t = ${(over[0].t / 1000).toFixed(2)}–${
        (over[over.length - 1].t / 1000).toFixed(2)
      } s)`,
  ]);
  rows.push([
    sc.name,
    `${sc.seconds} s`,
    `${s.delay_p50_ms} / ${s.delay_p95_ms} / ${s.delay_max_ms.toFixed(1)}`,
    `${s.target_delay_ms.toFixed(1)}`,
    `${s.lost} lost, ${s.late} late`,
    `${concealed} + ${noise} fr`,
    `${s.accelerated} fr / ${(s.accelerated_ms / 1000).toFixed(2)} s`,
    `${s.preemptive_expanded} fr / ${(s.preemptive_ms / 1000).toFixed(2)} s`,
    `${largestStep(played)} (${clicks(played, CLICK * natural)})`,
    `${(played.length / 8000).toFixed(2)} s of ${(tx.sent * 0.02).toFixed(2)} s`,
  ]);
  if (haveGst) {
    const g = await gstreamer(sc, 200);
    if (g) {
      gstRows.push([
        sc.name,
        `${sc.gstSeconds} s`,
        `${largestStep(g)} (${clicks(g, CLICK * natural)})`,
        `${(g.length / 8000).toFixed(2)} s of ${sc.gstSeconds.toFixed(2)} s`,
      ]);
    }
  }
}

const table = (head: string[], body: string[][]) => {
  const w = head.map((h, i) => Math.max(h.length, ...body.map((r) => r[i].length)));
  const line = (r: string[]) => `| ${r.map((c, i) => c.padEnd(w[i])).join(" | ")} |`;
  return [line(head), `| ${w.map((n) => "-".repeat(n)).join(" | ")} |`, ...body.map(line)].join("\n");
};

console.log("voxpipe jitter-buffer (playout) → g711-decoder, 440 Hz tone at −12 dBFS (own largest step 2750):\n");
console.log(table([
  "scenario",
  "audio",
  "delay p50 / p95 / max ms",
  "target ms",
  "packets",
  "concealed + noise",
  "accelerated",
  "pre-emptive expanded",
  "largest step (clicks)",
  "played",
], rows));
console.log("\nplayout delay above its target (frames with received audio):\n");
console.log(table(["scenario", "largest delay − target", "frames more than 40 ms above"], overRows));
if (haveGst) {
  console.log(
    "\nGStreamer udpsrc ! rtpjitterbuffer latency=200 ! rtppcmudepay ! mulawdec ! wavenc, same packets, loopback:\n",
  );
  console.log(table(["scenario", "audio", "largest step (clicks)", "played"], gstRows));
} else console.log("\n(GStreamer comparison skipped)");
