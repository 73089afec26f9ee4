/**
 * One paced RTP stream from GStreamer and one from voxpipe, sent **at the same time** to one receiving socket, and
 * the pacing of each from the kernel's timestamps (one `dumpcap` capture on `lo` for both): side by side in the
 * literal sense, so that both senders meet the same moments of a noisy host, which alternating runs cannot promise.
 *
 * ```sh
 * deno run -A bench/pacing_together.ts [--seconds 20] [--rounds 3] [--spin-ms M] [--pacer-lead-ms L]
 * ```
 *
 * Each round writes a WAV of noise (8 kHz, `--seconds` long), starts a socket that reads and drops what it gets and
 * the capture, then `gst-launch-1.0 filesrc ! wavparse ! mulawenc ! rtppcmupay ! udpsink sync=true` and
 * `deno run -A mod.ts --pipeline pipelines/rtp-send.json` with `VOXPIPE_NET=fast` (and `VOXPIPE_SPIN_MS` with
 * `--spin-ms`, and `VOXPIPE_PACER_LEAD_MS` with `--pacer-lead-ms`: the native pacer), which one first alternating from round to round. The streams are told apart by SSRC. Printed per
 * round and sender: p50, p99, p99 after the first second and max of |inter-arrival − 20 ms|, and the sends more than
 * 0.5 ms off; then the medians over the rounds and the median of the per-round p99 ratios (voxpipe / GStreamer).
 *
 * @module
 */
import { benchArgs } from "./_args.ts";
import { analyze, startCapture } from "./_pacing_stats.ts";
import { PTIME, writeChainWav } from "./_rtp_feed.ts";

const args = benchArgs(import.meta.url, {
  seconds: { type: "string", default: "20" },
  rounds: { type: "string", default: "3" },
  "spin-ms": { type: "string" },
  "pacer-lead-ms": { type: "string" },
});
const seconds = Number(args.values.seconds);
const rounds = Number(args.values.rounds);
if (!(seconds >= 2 && seconds <= 600)) throw new Error("--seconds: 2..600");
if (!(Number.isInteger(rounds) && rounds >= 1)) throw new Error("--rounds: a whole number, at least 1");
const GST_SSRC = 0x47535431; // "GST1"
const packets = Math.round((seconds * 1000) / PTIME);
const root = new URL("..", import.meta.url).pathname;

interface Figures {
  p50: number;
  p99: number;
  p99After1s: number;
  max: number;
  off: number;
  received: number;
}

/** Figures of one stream's arrivals (kernel timestamps). */
function figures(arr: Parameters<typeof analyze>[0]): Figures {
  const st = analyze(arr, 1, packets);
  let off = 0;
  for (const s of arr.values()) {
    for (let n = 1; n < packets; n++) {
      if (s.seen[n] && s.seen[n - 1] && Math.abs(s.t[n] - s.t[n - 1] - PTIME) > 0.5) off++;
    }
  }
  return { p50: st.p50, p99: st.p99, p99After1s: st.p99AfterFirstSecond, max: st.max, off, received: st.received };
}

async function round(r: number): Promise<{ gst: Figures; vox: Figures }> {
  const wav = await Deno.makeTempFile({ prefix: "pacing-together-", suffix: ".wav" });
  await writeChainWav(wav, packets);
  const sink = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  const port = (sink.addr as Deno.NetAddr).port;
  (async () => {
    try {
      for await (const _ of sink) { /* read and drop */ }
    } catch { /* closed */ }
  })();
  const capture = await startCapture(port, 2, packets);
  const gst = () =>
    new Deno.Command("gst-launch-1.0", {
      args: [
        "-q",
        "filesrc",
        `location=${wav}`,
        "!",
        "wavparse",
        "!",
        "mulawenc",
        "!",
        "rtppcmupay",
        "pt=0",
        `ssrc=${GST_SSRC}`,
        "min-ptime=20000000",
        "max-ptime=20000000",
        "!",
        "udpsink",
        "host=127.0.0.1",
        `port=${port}`,
        "sync=true",
      ],
      stdout: "null",
      stderr: "piped",
      signal: AbortSignal.timeout((seconds + 60) * 1000),
    }).output();
  const vox = () =>
    new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        `${root}mod.ts`,
        "--log-level",
        "warn",
        "--pipeline",
        `${root}pipelines/rtp-send.json`,
        "--set",
        `file=${wav}`,
        "--set",
        `to=127.0.0.1:${port}`,
      ],
      env: {
        VOXPIPE_NET: "fast",
        ...(args.values["spin-ms"] ? { VOXPIPE_SPIN_MS: args.values["spin-ms"] } : {}),
        ...(args.values["pacer-lead-ms"] ? { VOXPIPE_PACER_LEAD_MS: args.values["pacer-lead-ms"] } : {}),
      },
      stdout: "null",
      stderr: "piped",
      signal: AbortSignal.timeout((seconds + 60) * 1000),
    }).output();
  const [a, b] = r % 2 ? [gst(), vox()] : [vox(), gst()];
  const outs = await Promise.all([a, b]);
  for (const o of outs) {
    if (o.code !== 0) throw new Error(`a sender failed: ${new TextDecoder().decode(o.stderr).slice(-1000)}`);
  }
  const streams = await capture.stopStreams();
  sink.close();
  await Deno.remove(wav);
  const g = streams.get(GST_SSRC);
  const v = [...streams.entries()].find(([ssrc]) => ssrc !== GST_SSRC)?.[1];
  if (!g || !v) throw new Error(`expected two streams in the capture, got ${streams.size}`);
  return { gst: figures(new Map([[GST_SSRC, g]])), vox: figures(new Map([[0, v]])) };
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b), h = s.length >> 1;
  return s.length % 2 ? s[h] : (s[h - 1] + s[h]) / 2;
};
const show = (f: Figures) =>
  `p50 ${f.p50.toFixed(3)}  p99 ${f.p99.toFixed(3)}  (after 1 s ${f.p99After1s.toFixed(3)})  max ${
    f.max.toFixed(3)
  } ms  >0.5 ms off ${String(f.off).padStart(3)}  received ${f.received}/${packets}`;

console.log(
  `# one stream each from GStreamer and voxpipe (VOXPIPE_NET=fast${
    (args.values["spin-ms"] ? `, VOXPIPE_SPIN_MS=${args.values["spin-ms"]}` : "") +
    (args.values["pacer-lead-ms"] ? `, VOXPIPE_PACER_LEAD_MS=${args.values["pacer-lead-ms"]}` : "")
  }) at the same time, ${seconds} s, kernel timestamps; load ${(await Deno.readTextFile("/proc/loadavg")).trim()}`,
);
const all: { gst: Figures; vox: Figures }[] = [];
for (let r = 1; r <= rounds; r++) {
  const x = await round(r);
  all.push(x);
  console.log(`round ${r} gstreamer ${show(x.gst)}`);
  console.log(`round ${r} voxpipe   ${show(x.vox)}`);
}
const m = (pick: (f: Figures) => number, who: "gst" | "vox") => median(all.map((x) => pick(x[who])));
console.log(
  `median of ${rounds}: p99 voxpipe ${m((f) => f.p99, "vox").toFixed(3)} ms, gstreamer ${
    m((f) => f.p99, "gst").toFixed(3)
  } ms, ratio ${median(all.map((x) => x.vox.p99 / x.gst.p99)).toFixed(2)}; after 1 s ratio ${
    median(all.map((x) => x.vox.p99After1s / x.gst.p99After1s)).toFixed(2)
  }; sends >0.5 ms off voxpipe ${m((f) => f.off, "vox")}, gstreamer ${m((f) => f.off, "gst")}`,
);
