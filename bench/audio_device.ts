/**
 * Measures the speaker and microphone on an ALSA `file` device (no sound
 * hardware needed) and prints figures:
 *
 * 1. Latency the `speaker` adds at its default setting: a live source writes
 *    a 20 ms frame every 20 ms; the time from `write()` of a frame to the moment
 *    its first sample lands in the ALSA output file (polled every ~1 ms). The
 *    file device consumes without a clock, so this is the sink's own queue plus
 *    the ALSA/PortAudio buffering of one callback period; a sound card adds its
 *    hardware buffer (PortAudio's default low output latency) on top.
 * 2. CPU per active device stream: process CPU time (user + system, all
 *    threads, from /proc/self/stat) over 10 s of real-time playback at 8 kHz
 *    mono, 48 kHz stereo, and a duplex speaker + microphone at 8 kHz, minus a
 *    baseline run of the same live source writing to nothing. The sandbox's
 *    capture device has no clock (it gives its samples as fast as they are
 *    read), so the duplex figure is the cost of draining it at full speed; the
 *    bench says so when capture ran faster than real time.
 *
 * Run: `deno run -A bench/audio_device.ts` (after `deno task setup`).
 * Options: `--seconds N` per CPU run (default 10).
 *
 * @module
 */
import { fileURLToPath } from "node:url";
import { benchArgs } from "./_args.ts";
import type { PcmFrame } from "../core/frame.ts";
import type { SinkStage, SourceStage } from "../core/stage.ts";
import { createStage, testContext } from "../core/testing.ts";
import speaker from "../plugins/audio-device/speaker.ts";
import microphone from "../plugins/audio-device/microphone.ts";
import { alsaSandbox } from "../tests/fixtures/alsa/run.ts";
import { noise, tone } from "../tests/fixtures/alsa/signal.ts";
import { liveCpuSeconds } from "../tests/record_check.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, Math.max(0, ms)));

/** CPU time of this process (all threads) in ms, from /proc. */
function cpuMs(): number {
  return Math.round(liveCpuSeconds(Deno.pid) * 1000);
}

function framesOf(samples: Int16Array, rate: number, channels: number, frameMs: number): PcmFrame[] {
  const per = Math.round((rate * frameMs) / 1000) * channels;
  const out: PcmFrame[] = [];
  for (let i = 0; i + per <= samples.length; i += per) {
    out.push({ kind: "pcm", samples: samples.subarray(i, i + per), sampleRate: rate, channels, pts: i / channels });
  }
  return out;
}

/** A live source: frame k is written at t0 + 20k ms (drift-free), whatever the sink says. */
async function liveSource(frames: PcmFrame[], write: (f: PcmFrame, k: number) => void): Promise<number> {
  const t0 = performance.now();
  for (let k = 0; k < frames.length; k++) {
    const due = t0 + k * 20;
    const now = performance.now();
    if (due > now) await sleep(due - now);
    write(frames[k], k);
  }
  return t0;
}

async function childLatency(playPath: string): Promise<unknown> {
  const rate = 8000;
  const seconds = 3;
  const frames = framesOf(tone(rate, 1, seconds, 1000, -6), rate, 1, 20);
  const { ctx, release } = testContext();
  const stage = await createStage<SinkStage>(speaker, {}, ctx);
  stage.negotiate?.({ kind: "pcm", sampleRate: rate, channels: 1 });
  await stage.start?.(ctx);
  const writes: number[] = [];
  const polls: [number, number][] = [];
  let polling = true;
  const file = await Deno.open(playPath, { read: true });
  const poller = (async () => {
    while (polling) {
      const size = (await file.stat()).size;
      polls.push([performance.now(), size]);
      await sleep(1);
    }
  })();
  const latencies: number[] = [];
  await liveSource(frames, (f, k) => {
    writes[k] = performance.now();
    stage.write(f);
  });
  const statsDuring = stage.stats?.();
  await stage.end?.();
  polling = false;
  await poller;
  file.close();
  await stage.close?.();
  await release();
  // Where the tone starts in the file (after the device's priming silence).
  const bytes = Deno.readFileSync(playPath);
  const view = new Int16Array(bytes.buffer, 0, bytes.byteLength >> 1);
  const lead = view.findIndex((v) => v !== 0) * 2;
  for (let k = 0; k < frames.length; k++) {
    const need = lead + k * 320 + 2; // first sample of frame k
    const hit = polls.find(([, size]) => size >= need);
    if (hit) latencies.push(hit[0] - writes[k]);
  }
  return { latencies, stats: statsDuring, leadBytes: lead, polls: polls.length };
}

async function childCpu(kind: string, seconds: number): Promise<unknown> {
  const rate = kind === "play48" ? 48000 : 8000;
  const channels = kind === "play48" ? 2 : 1;
  const frames = framesOf(tone(rate, channels, seconds, 1000, -6), rate, channels, 20);
  let sink: SinkStage | undefined;
  let mic: SourceStage | undefined;
  const spkCtx = testContext();
  const micCtx = testContext();
  let micRun: Promise<void> | undefined;
  if (kind !== "baseline") {
    if (kind === "duplex") {
      mic = await createStage<SourceStage>(microphone, { sample_rate: rate, channels: 1 }, micCtx.ctx);
    }
    sink = await createStage<SinkStage>(speaker, {}, spkCtx.ctx);
    sink.negotiate?.({ kind: "pcm", sampleRate: rate, channels });
    await sink.start?.(spkCtx.ctx);
    if (mic) micRun = mic.run(micCtx.ctx);
  }
  await sleep(200); // let the device open and settle
  const c0 = cpuMs();
  const t0 = performance.now();
  let sum = 0;
  await liveSource(frames, (f) => {
    if (sink) sink.write(f);
    else sum += f.samples[0]; // baseline: the same loop, writing to nothing
  });
  const wall = performance.now() - t0;
  const cpu = cpuMs() - c0;
  const stats = sink?.stats?.();
  const micStats = mic?.stats?.();
  micCtx.abort.abort();
  await micRun;
  await sink?.end?.();
  await mic?.close?.();
  await sink?.close?.();
  await spkCtx.release();
  await micCtx.release();
  return { cpuMs: cpu, wallMs: wall, stats, micStats, sum };
}

async function child(scenario: string, arg: string): Promise<void> {
  let result: unknown;
  try {
    result = scenario === "latency" ? await childLatency(arg) : await childCpu(scenario, Number(arg));
  } catch (e) {
    result = { error: e instanceof Error ? e.message : String(e) };
  }
  console.log(JSON.stringify(result));
}

async function runChild(config: string, scenario: string, arg: string): Promise<Record<string, unknown>> {
  const self = fileURLToPath(import.meta.url);
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", self, "--child", scenario, "--child-arg", arg],
    env: { ALSA_CONFIG_PATH: config },
    stdout: "piped",
    stderr: "null",
  }).output();
  const lines = new TextDecoder().decode(out.stdout).trim().split("\n");
  const result = JSON.parse(lines[lines.length - 1]);
  if (result.error) throw new Error(`${scenario}: ${result.error}`);
  return result;
}

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
}

const { values } = benchArgs(import.meta.url, {
  seconds: { type: "string", default: "10" },
  // Internal: this process runs one scenario (`runChild`), with its argument.
  child: { type: "string" },
  "child-arg": { type: "string" },
});

async function main(): Promise<void> {
  const seconds = Number(values.seconds);
  const sb = await alsaSandbox(noise(8000 * 20, 9));
  try {
    const lat = await runChild(sb.config, "latency", sb.play);
    const l = (lat.latencies as number[]).slice(10); // steady state (after the first 200 ms)
    const st = lat.stats as Record<string, number>;
    console.log("speaker latency at the default setting (latency_ms 60), 8 kHz, live 20 ms frames:");
    console.log(
      `  write() -> first sample in the ALSA file: p50 ${pct(l, 50).toFixed(1)} ms, p90 ${
        pct(l, 90).toFixed(1)
      } ms, p99 ${pct(l, 99).toFixed(1)} ms, max ${Math.max(...l).toFixed(1)} ms (${l.length} frames)`,
    );
    console.log(
      `  speaker queue at the end: queued ${st.queued_ms} ms + handed to the device ${st.ahead_ms} ms; ` +
        `device priming (ALSA buffer) ${(lat.leadBytes as number) / 16} ms; underruns ${st.underruns}`,
    );
    const base = await runChild(sb.config, "baseline", String(seconds));
    const baseCpu = base.cpuMs as number;
    console.log(`CPU over ${seconds} s of real-time audio (process user+system, all threads):`);
    console.log(`  baseline (live source writing to nothing): ${baseCpu} ms`);
    for (
      const [kind, label] of [["play8", "speaker 8 kHz mono"], ["play48", "speaker 48 kHz stereo"], [
        "duplex",
        "speaker + microphone 8 kHz (one duplex stream)",
      ]]
    ) {
      const r = await runChild(sb.config, kind, String(seconds));
      const net = (r.cpuMs as number) - baseCpu;
      const stats = r.stats as Record<string, number>;
      console.log(
        `  ${label}: ${r.cpuMs} ms total, ${net} ms above baseline = ${
          ((net / (r.wallMs as number)) * 100).toFixed(2)
        } % of one core (underruns ${stats?.underruns ?? "-"})`,
      );
      const mic = r.micStats as Record<string, number> | undefined;
      if (mic && mic.captured_ms > 1.5 * (r.wallMs as number)) {
        // The sandbox's capture device (ALSA `file` over `null`) has no clock: PortAudio hands over its samples as
        // fast as they are read, so this figure is the cost of draining it, not of a clocked sound card.
        console.log(
          `    not a sound card's figure: the sandbox's capture device has no clock (it gave ${
            (mic.captured_ms / 1000).toFixed(0)
          } s of audio in ${((r.wallMs as number) / 1000).toFixed(1)} s), so this measures draining it at full speed`,
        );
      }
    }
  } finally {
    await sb.cleanup();
  }
}

if (values.child !== undefined) await child(values.child, values["child-arg"] ?? "");
else await main();
