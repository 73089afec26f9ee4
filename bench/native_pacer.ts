/**
 * The native pacer alone (`native/pacer.c`), without any JavaScript work at the due times:
 *
 * ```sh
 * deno run -A bench/native_pacer.ts [--packets 1000] [--spin-ms 0,0.3,1] [--budget 0.25]
 * ```
 *
 * For each spin setting, one `MediaLoop` with the pacer gets every packet of one 20 ms stream up front (due times
 * 20 ms apart), and `dumpcap` on `lo` records when each left; printed: p50, p99 and max of |inter-departure − 20 ms|
 * from the kernel's timestamps, and the pacer's own counters (CPU spun, its lateness). This is the floor the
 * `VOXPIPE_PACER_LEAD_MS` path can reach on this machine; `bench/pacing_together.ts --pacer-lead-ms 5` measures the
 * whole CLI against GStreamer.
 *
 * @module
 */
import { benchArgs } from "./_args.ts";
import process from "node:process";
import { FastUdpSocket, MediaLoop } from "../core/net/media_loop.ts";
import { startCapture } from "./_pacing_stats.ts";
import { freeUdpPort } from "../tests/sip_util.ts";

const { values } = benchArgs(import.meta.url, {
  packets: { type: "string", default: "1000" },
  "spin-ms": { type: "string", default: "0,0.3,1" },
  budget: { type: "string", default: "0.25" },
});
const N = Number(values.packets);
const budget = Number(values.budget);
const spins = values["spin-ms"].split(",").map(Number);
if (!(Number.isInteger(N) && N >= 10) || spins.some((s) => !(s >= 0 && s <= 2)) || !(budget >= 0 && budget <= 1)) {
  console.error("--packets: a whole number ≥ 10; --spin-ms: numbers 0..2, comma-separated; --budget: 0..1");
  Deno.exit(2);
}

for (const spinMs of spins) {
  const port = freeUdpPort();
  const sink = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port });
  const draining = (async () => {
    try {
      for (;;) await sink.receive();
    } catch { /* closed */ }
  })();
  const cap = await startCapture(port, 1, N);
  const loop = new MediaLoop({ pacer: { leadMs: 5, spinMs, spinBudget: budget } });
  const s = new FastUdpSocket(loop, "127.0.0.1", 0);
  const t0 = performance.now() + 200;
  for (let i = 0; i < N; i++) {
    const b = new Uint8Array(172);
    const v = new DataView(b.buffer);
    b[0] = 0x80;
    v.setUint16(2, i);
    v.setUint32(4, i * 160);
    v.setUint32(8, 0x5eed);
    s.postAt(b, { hostname: "127.0.0.1", port }, t0 + i * 20);
  }
  const started = performance.now();
  const cpu0 = process.cpuUsage();
  while (s.timedPending > 0) await new Promise((r) => setTimeout(r, 50));
  const wall = performance.now() - started;
  const cpu1 = process.cpuUsage();
  const ps = loop.pacerStats()!;
  await s.close();
  await loop.close();
  const st = await cap.stop();
  sink.close();
  await draining;
  const cpu = (cpu1.user - cpu0.user + cpu1.system - cpu0.system) / 1000 / wall * 100;
  console.log(
    `spin ${spinMs} ms (budget ${budget}): kernel p50 ${st.p50.toFixed(3)} p99 ${st.p99.toFixed(3)} max ${
      st.max.toFixed(3)
    } ms, ${st.received}/${N} captured; pacer spun ${ps.spunMs.toFixed(0)} ms, late max ${
      ps.lateMaxMs.toFixed(3)
    } mean ${ps.lateMeanMs.toFixed(3)} ms; process CPU ${cpu.toFixed(1)} %`,
  );
}
