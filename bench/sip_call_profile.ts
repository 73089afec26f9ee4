/**
 * Where a call's set-up time goes: runs a callee (`pipelines/callee.json` as
 * `bench/sip_call_rate.ts` runs it: WAV per call, `max_calls` 10 000) under a
 * steady sipp load (`tests/fixtures/sipp/uac_nomedia.xml`, `--rate` calls per
 * second, `--calls` calls, `--hold` ms each) and prints
 *
 * - the callee's CPU time per call: its main thread (from
 *   `/proc/PID/task/PID/stat`) and the whole process, from sipp's start to its
 *   end, divided by the calls sipp completed;
 * - with `--heap`: V8's sampling heap profiler over the same span (allocations
 *   sampled every 16 KB, kept or not), bytes allocated per call by function
 *   (self) and by file: what feeds the garbage collector;
 * - with `--linger`: the live heap (after a full GC, through the inspector)
 *   right after the last call and again once the 64·T1 (32 s) that ended
 *   calls and their transactions linger has passed: the difference over the
 *   calls of the last 32 s is what a recently ended call keeps;
 * - with `--linger --snapshot`: also a heap snapshot after the last call,
 *   summed by constructor (self size and count per lingering call);
 * - with `--gc`: V8's own account of its collections on the main thread over
 *   the same span (`--trace-gc`): scavenges (the young generation, every few
 *   tens of ms under load) and mark-compacts, their count and pause time per
 *   call;
 * - with `--inflight`: the live heap per call in flight, with `--hold` longer
 *   than the load lasts (e.g. `--rate 300 --calls 1500 --hold 60000`): after a
 *   full GC once half the calls were answered and again once all were, the
 *   difference over the calls answered in between (counted by their WAVs), in
 *   all and by constructor. A call's objects live as long as it does, so every
 *   scavenge while it lasts copies them, and the old generation marks them:
 *   this is what the garbage collector's share of a call's CPU follows;
 * - with `--profile`: a V8 CPU profile of the main thread over the same span,
 *   taken through the inspector (`--inspect`, `Profiler.start`/`stop`), summed
 *   by function (self and total time), by file and by layer (self time: our
 *   modules, zod, Deno's JavaScript, its ops, GC, V8's compiler). `--save FILE`
 *   keeps the `.cpuprofile` (Chrome DevTools opens it).
 *
 * The profiler's sampling costs CPU itself, and so do the heap snapshots of
 * `--inflight` and `--linger`: read CPU per call from a run without them (or
 * with `--gc` only, which costs a line per collection), and theirs for where it
 * goes.
 *
 * `--record-dir DIR` makes the run's folder (the recordings, sipp's statistics) in DIR instead of the system's
 * temporary directory: where the WAVs go is part of what a call costs (see `recordDirProblem` in `_sipp.ts`).
 *
 * `--compare DIR` runs the callee of another checkout first, then this one,
 * alternating `--rounds` times, and prints both (same load).
 *
 * Run: `deno run -A bench/sip_call_profile.ts [--rate 200] [--calls 4000] [--hold 1000] [--profile | --heap |
 * --linger [--snapshot] | --gc | --inflight] [--top 40] [--save FILE] [--compare DIR] [--rounds 1] [--light]
 * [--record-dir DIR]`.
 *
 * @module
 */
import { benchArgs } from "./_args.ts";
import { type BoundedProcess, freeUdpPort, requireTool, spawnBounded } from "../tests/sip_util.ts";
import {
  fileCreateCost,
  removeDeferred,
  removeLater,
  setupLoadArgs,
  setupLoadCounts,
  setupLoadSettings,
  startCheckoutCallee,
  writeCalleeVariant,
} from "./_sipp.ts";
import { cpuSeconds } from "../tests/record_check.ts";

const OPTIONS = {
  rate: { type: "string", default: "200" },
  calls: { type: "string", default: "4000" },
  hold: { type: "string", default: "1000" },
  profile: { type: "boolean", default: false },
  heap: { type: "boolean", default: false },
  linger: { type: "boolean", default: false },
  snapshot: { type: "boolean", default: false },
  gc: { type: "boolean", default: false },
  inflight: { type: "boolean", default: false },
  top: { type: "string", default: "40" },
  save: { type: "string" },
  compare: { type: "string" },
  rounds: { type: "string", default: "1" },
  light: { type: "boolean", default: false },
  interval: { type: "string", default: "200" },
  "record-dir": { type: "string" },
} as const;
const { values: args } = benchArgs(import.meta.url, OPTIONS);
const { rate: RATE, calls: CALLS, holdMs: HOLD_MS } = setupLoadSettings(import.meta.url, OPTIONS, args);
const TOP = Number(args.top);
if (args.inflight && (args.light || HOLD_MS < (CALLS / RATE) * 1000 + 5000)) {
  console.error(
    "--inflight measures calls in flight, counted by their WAVs: give a --hold at least 5 s longer than the load " +
      `lasts (--calls / --rate = ${(CALLS / RATE).toFixed(1)} s here; e.g. --rate 300 --calls 1500 --hold 60000), ` +
      "without --light",
  );
  Deno.exit(2);
}

/** CPU ms of a process (all threads; `task` undefined) or of one of its threads; NaN once it is gone. */
function cpuMs(pid: number, task?: number): number {
  return (cpuSeconds(pid, task) ?? NaN) * 1000;
}

/** CPU ms of each thread of a process, summed by thread name. */
function threadCpu(pid: number): Map<string, number> {
  const out = new Map<string, number>();
  for (const e of Deno.readDirSync(`/proc/${pid}/task`)) {
    try {
      const tid = Number(e.name);
      const name = Deno.readTextFileSync(`/proc/${pid}/task/${tid}/comm`).trim().replace(/[0-9]+$/, "#");
      const ms = cpuMs(pid, tid);
      if (Number.isNaN(ms)) continue; // gone
      out.set(tid === pid ? "main" : name, (out.get(name) ?? 0) + ms);
    } catch { /* gone */ }
  }
  return out;
}

/** A node of a V8 `.cpuprofile`. */
interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number };
  hitCount?: number;
  children?: number[];
}

/** A V8 `.cpuprofile`. */
interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

/** Minimal inspector client: one WebSocket, requests by id. */
class Inspector {
  #ws: WebSocket;
  #next = 1;
  #pending = new Map<number, (r: { result?: unknown; error?: unknown }) => void>();
  /** Called with each event (a message without an id). */
  onEvent: ((m: { method: string; params: unknown }) => void) | undefined;
  private constructor(ws: WebSocket) {
    this.#ws = ws;
    ws.onmessage = (e) => {
      const m = JSON.parse(e.data);
      if (m.id !== undefined) {
        this.#pending.get(m.id)?.(m);
        this.#pending.delete(m.id);
      } else this.onEvent?.(m);
    };
  }
  static async connect(port: number): Promise<Inspector> {
    let url = "";
    for (let i = 0; i < 100 && !url; i++) {
      try {
        const list = await (await fetch(`http://127.0.0.1:${port}/json/list`)).json();
        url = list[0]?.webSocketDebuggerUrl ?? "";
      } catch {
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    if (!url) throw new Error("no inspector target");
    const ws = new WebSocket(url);
    await new Promise((resolve, reject) => {
      ws.onopen = resolve;
      ws.onerror = reject;
    });
    return new Inspector(ws);
  }
  send(method: string, params: Record<string, unknown> = {}): Promise<unknown> {
    const id = this.#next++;
    this.#ws.send(JSON.stringify({ id, method, params }));
    return new Promise((resolve, reject) => {
      this.#pending.set(id, (m) => m.error ? reject(new Error(JSON.stringify(m.error))) : resolve(m.result));
    });
  }
  close(): void {
    this.#ws.close();
  }
}

/** Prints the profile's top functions (self, total) and files (self), in ms per call. */
function summarize(profile: CpuProfile, calls: number): void {
  const byId = new Map<number, ProfileNode>();
  const parent = new Map<number, number>();
  for (const n of profile.nodes) {
    byId.set(n.id, n);
    for (const c of n.children ?? []) parent.set(c, n.id);
  }
  const key = (n: ProfileNode) => {
    const f = n.callFrame;
    const file = f.url.replace(/^file:\/\/.*?\/(core|plugins|node_modules|mod\.ts|tests|bench)/, "$1")
      .replace(/^ext:/, "ext:");
    return `${f.functionName || "(anonymous)"} ${file}${f.url ? `:${f.lineNumber + 1}` : ""}`;
  };
  const fileOf = (n: ProfileNode) => {
    const u = n.callFrame.url;
    if (!u) return n.callFrame.functionName || "(native)";
    return u.replace(/^file:\/\/.*?\/(core|plugins|node_modules|mod\.ts|tests|bench)/, "$1");
  };
  const self = new Map<string, number>();
  const total = new Map<string, number>();
  const files = new Map<string, number>();
  const layers = new Map<string, number>();
  let sum = 0;
  let idle = 0;
  for (let i = 0; i < profile.samples.length; i++) {
    const dt = (profile.timeDeltas[i + 1] ?? profile.timeDeltas[i] ?? 0) / 1000; // ms
    const node = byId.get(profile.samples[i])!;
    if (node.callFrame.functionName === "(idle)") {
      idle += dt;
      continue;
    }
    sum += dt;
    const k = key(node);
    self.set(k, (self.get(k) ?? 0) + dt);
    const f = fileOf(node);
    files.set(f, (files.get(f) ?? 0) + dt);
    const layer = layerOf(node.callFrame);
    layers.set(layer, (layers.get(layer) ?? 0) + dt);
    const seen = new Set<string>();
    for (let id: number | undefined = node.id; id !== undefined; id = parent.get(id)) {
      const kk = key(byId.get(id)!);
      if (seen.has(kk)) continue;
      seen.add(kk);
      total.set(kk, (total.get(kk) ?? 0) + dt);
    }
  }
  const per = (ms: number) => (ms / calls).toFixed(3);
  console.log(
    `profile: ${sum.toFixed(0)} ms busy, ${idle.toFixed(0)} ms idle over ${calls} calls: ${per(sum)} ms per call`,
  );
  const table = (title: string, m: Map<string, number>) => {
    console.log(`\n${title} (ms per call, % of busy)`);
    for (const [k, v] of [...m].sort((a, b) => b[1] - a[1]).slice(0, TOP)) {
      console.log(`  ${per(v).padStart(7)}  ${(100 * v / sum).toFixed(1).padStart(5)} %  ${k}`);
    }
  };
  table("self time by function", self);
  table("total time by function", total);
  table("self time by file", files);
  table("self time by layer", layers);
}

/**
 * Which layer a sample's function belongs to: voxpipe's own modules, zod, other npm packages, Deno's JavaScript (its
 * `ext:` and `node:` modules: the glue around ops, events, promises), Deno's ops (the Rust side, system calls
 * included), the garbage collector, V8's compiler and loader (`(program)`), or other native code (RegExp, ...).
 */
function layerOf(f: ProfileNode["callFrame"]): string {
  const u = f.url;
  if (!u) {
    if (f.functionName.startsWith("op_")) return "Deno ops (Rust side, system calls included)";
    if (f.functionName === "(garbage collector)") return "garbage collector (main thread part)";
    if (f.functionName === "(program)") return "V8 compiler and loader ((program))";
    return "other native code (RegExp, crypto, ...)";
  }
  if (u.includes("/node_modules/")) return u.includes("/zod@") ? "zod" : "other npm packages";
  if (u.startsWith("ext:") || u.startsWith("node:")) return "Deno's JavaScript (ext:, node:)";
  return "voxpipe's modules";
}

/** A node of V8's sampling heap profile. */
interface HeapNode {
  callFrame: ProfileNode["callFrame"];
  selfSize: number;
  children: HeapNode[];
}

/** V8's sampling heap profile. */
interface HeapProfile {
  head: HeapNode;
}

/** Prints the bytes allocated per call by function (self) and by file. */
function summarizeHeap(profile: HeapProfile, calls: number): void {
  const byFn = new Map<string, number>();
  const byFile = new Map<string, number>();
  let sum = 0;
  const visit = (n: HeapNode, parent: string) => {
    const f = n.callFrame;
    const file = f.url.replace(/^file:\/\/.*?\/(core|plugins|node_modules|mod\.ts|tests|bench)/, "$1");
    const k = `${f.functionName || "(anonymous)"} ${file}${f.url ? `:${f.lineNumber + 1}` : ""}` +
      (f.url ? "" : ` < ${parent}`);
    if (n.selfSize > 0) {
      sum += n.selfSize;
      byFn.set(k, (byFn.get(k) ?? 0) + n.selfSize);
      const fk = file || f.functionName || "(native)";
      byFile.set(fk, (byFile.get(fk) ?? 0) + n.selfSize);
    }
    for (const c of n.children) {
      visit(c, f.url ? `${f.functionName || "(anonymous)"} ${file}:${f.lineNumber + 1}` : parent);
    }
  };
  visit(profile.head, "");
  console.log(`allocated (sampled): ${(sum / calls / 1024).toFixed(1)} KB per call`);
  const table = (title: string, m: Map<string, number>) => {
    console.log(`\n${title} (bytes per call)`);
    for (const [k, v] of [...m].sort((a, b) => b[1] - a[1]).slice(0, TOP)) {
      console.log(`  ${(v / calls).toFixed(0).padStart(7)}  ${k}`);
    }
  };
  table("allocations by function (self)", byFn);
  table("allocations by file", byFile);
}

/** Takes a heap snapshot through the inspector and prints what it holds by constructor, per lingering call. */
async function snapshotSummary(inspector: Inspector, calls: number): Promise<void> {
  const { total, by } = await heapByConstructor(inspector);
  console.log(`  heap snapshot: ${(total / 1e6).toFixed(1)} MB; by constructor, per lingering call (bytes, count):`);
  for (const [k, e] of [...by].sort((a, b) => b[1].size - a[1].size).slice(0, TOP)) {
    console.log(`    ${(e.size / calls).toFixed(0).padStart(7)} ${(e.count / calls).toFixed(2).padStart(7)}  ${k}`);
  }
}

/** What a heap snapshot holds: its size, and self size and count by constructor (or node type). */
async function heapByConstructor(
  inspector: Inspector,
): Promise<{ total: number; by: Map<string, { size: number; count: number }> }> {
  const chunks: string[] = [];
  inspector.onEvent = (m) => {
    if (m.method === "HeapProfiler.addHeapSnapshotChunk") chunks.push((m.params as { chunk: string }).chunk);
  };
  await inspector.send("HeapProfiler.takeHeapSnapshot", { reportProgress: false });
  inspector.onEvent = undefined;
  if (args.save) await Deno.writeTextFile(args.save, chunks.join(""));
  const snap = JSON.parse(chunks.join("")) as {
    snapshot: { meta: { node_fields: string[]; node_types: [string[]] } };
    nodes: number[];
    strings: string[];
  };
  const f = snap.snapshot.meta.node_fields;
  const types = snap.snapshot.meta.node_types[0];
  const [iType, iName, iSize, w] = [f.indexOf("type"), f.indexOf("name"), f.indexOf("self_size"), f.length];
  const by = new Map<string, { size: number; count: number }>();
  let total = 0;
  for (let i = 0; i < snap.nodes.length; i += w) {
    const type = types[snap.nodes[i + iType]];
    const name = type === "object" || type === "closure" || type === "native"
      ? snap.strings[snap.nodes[i + iName]]
      : `(${type})`;
    const size = snap.nodes[i + iSize];
    total += size;
    const k = `${type === "closure" ? "closure " : ""}${name}`.slice(0, 100);
    const e = by.get(k) ?? { size: 0, count: 0 };
    e.size += size;
    e.count++;
    by.set(k, e);
  }
  return { total, by };
}

/**
 * `--inflight`: the live heap (after a full GC) and what it holds by constructor once half the calls were answered
 * and again once all were; prints the difference per call answered in between.
 */
async function inflightSummary(inspector: Inspector, dir: string, sipp: BoundedProcess): Promise<void> {
  const answered = () => {
    let n = 0;
    for (const e of Deno.readDirSync(dir)) if (e.name.startsWith("call-") && e.name.endsWith(".wav")) n++;
    return n;
  };
  const measure = async (n: number) => {
    while (answered() < n && !sipp.ended) await new Promise((r) => setTimeout(r, 50));
    await inspector.send("HeapProfiler.collectGarbage");
    await inspector.send("HeapProfiler.collectGarbage");
    const used = (await inspector.send("Runtime.getHeapUsage") as { usedSize: number }).usedSize;
    const calls = answered();
    return { used, calls, ...(await heapByConstructor(inspector)) };
  };
  const a = await measure(Math.floor(CALLS / 2));
  const b = await measure(CALLS);
  const n = b.calls - a.calls;
  if (n <= 0 || sipp.ended) {
    console.log(`  in flight: no measure (${a.calls} then ${b.calls} calls answered; sipp ended: ${sipp.ended})`);
    return;
  }
  console.log(
    `  live heap with ${a.calls} calls in flight ${(a.used / 1e6).toFixed(1)} MB, with ${b.calls} ` +
      `${(b.used / 1e6).toFixed(1)} MB: ${((b.used - a.used) / n / 1024).toFixed(1)} KB per call in flight; ` +
      "by constructor (bytes, count per call):",
  );
  const rows = [...b.by].map(([k, e]) => {
    const was = a.by.get(k) ?? { size: 0, count: 0 };
    return [k, (e.size - was.size) / n, (e.count - was.count) / n] as const;
  });
  for (const [k, size, count] of rows.sort((x, y) => y[1] - x[1]).slice(0, TOP)) {
    console.log(`    ${size.toFixed(0).padStart(7)} ${count.toFixed(2).padStart(7)}  ${k}`);
  }
}

/** `--gc`: sums the `--trace-gc` lines (V8's collections on the main thread) in `text`, per call. */
function gcSummary(text: string, calls: number): void {
  const kinds = new Map<string, { n: number; ms: number; steps: number }>();
  for (const line of text.split("\n")) {
    const m =
      /\d+ ms: (Scavenge|Minor Mark-Sweep|Mark-Compact|Incremental Mark-Compact|Mark-Compact \(reduce\))\b.*?MB, (?:pooled: [\d.]+ MB, )?([\d.]+) \/ [\d.]+ ms(?: \(\+ ([\d.]+) ms in)?/
        .exec(line);
    if (!m) continue;
    const kind = m[1].startsWith("Scavenge") || m[1].startsWith("Minor") ? m[1] : "Mark-Compact";
    const k = kinds.get(kind) ?? { n: 0, ms: 0, steps: 0 };
    k.n++;
    k.ms += Number(m[2]);
    k.steps += Number(m[3] ?? 0);
    kinds.set(kind, k);
  }
  if (kinds.size === 0) {
    console.log("  garbage collection: no --trace-gc line read from the callee");
    return;
  }
  const parts = [...kinds].map(([kind, k]) =>
    `${k.n} ${kind} (${k.ms.toFixed(0)} ms paused${k.steps ? ` + ${k.steps.toFixed(0)} ms of incremental steps` : ""}` +
    `, ${((k.ms + k.steps) / Math.max(1, calls)).toFixed(3)} ms per call)`
  );
  console.log(`  garbage collection on the main thread (V8 --trace-gc): ${parts.join(", ")}`);
}

interface RunResult {
  calls: number;
  failed: number;
  mainMs: number;
  procMs: number;
  seconds: number;
}

async function run(label: string, root: string | undefined, profile: boolean): Promise<RunResult> {
  const dir = await Deno.makeTempDir({ dir: args["record-dir"], prefix: "voxpipe-prof-" });
  let callee: BoundedProcess | undefined;
  let inspector: Inspector | undefined;
  try {
    // What creating a file costs in the folder (left there, removed with it: see fileCreateCost).
    const create = args.light ? undefined : fileCreateCost(dir, 200, false);
    const pipeline = await writeCalleeVariant(dir, { name: "callee.json", root, raiseLimits: true, light: args.light });
    const port = freeUdpPort();
    const inspectPort = freeUdpPort();
    const set: Record<string, string | number> = { calls: 0, rtp_timeout: 30 };
    if (!args.light) set.record = `${dir}/call-\${call.id}.wav`;
    callee = await startCheckoutCallee({
      pipeline,
      port,
      set,
      root,
      denoFlags: [
        ...(profile || args.heap || args.linger || args.inflight ? [`--inspect=127.0.0.1:${inspectPort}`] : []),
        ...(args.gc ? ["--v8-flags=--trace-gc"] : []),
      ],
      timeoutMs: (CALLS / RATE + 180) * 1000,
    });
    if (args.heap) {
      inspector = await Inspector.connect(inspectPort);
      await inspector.send("HeapProfiler.enable");
      await inspector.send("HeapProfiler.startSampling", {
        samplingInterval: 16384,
        includeObjectsCollectedByMajorGC: true,
        includeObjectsCollectedByMinorGC: true,
      });
    } else if (args.linger || args.inflight) {
      inspector = await Inspector.connect(inspectPort);
      await inspector.send("HeapProfiler.enable");
    } else if (profile) {
      inspector = await Inspector.connect(inspectPort);
      await inspector.send("Profiler.enable");
      await inspector.send("Profiler.setSamplingInterval", { interval: Number(args.interval) });
      await inspector.send("Profiler.start");
    }
    const pid = callee.pid;
    const main0 = cpuMs(pid, pid), proc0 = cpuMs(pid);
    const threads0 = threadCpu(pid);
    const t0 = performance.now();
    const gcFrom = callee.output().length;
    const sipp = spawnBounded(
      "sipp",
      setupLoadArgs({ calls: CALLS, rate: RATE, holdMs: HOLD_MS, port }),
      { cwd: dir, timeoutMs: (CALLS / RATE + HOLD_MS / 1000 + 120) * 1000, stopSignal: "SIGINT" },
    );
    if (inspector && args.inflight) await inflightSummary(inspector, dir, sipp);
    await sipp.result;
    const gcText = callee.output().slice(gcFrom);
    const seconds = (performance.now() - t0) / 1000;
    const mainMs = cpuMs(pid, pid) - main0, procMs = cpuMs(pid) - proc0;
    const threads = [...threadCpu(pid)].map(([k, v]) => [k, v - (threads0.get(k) ?? 0)] as const)
      .filter(([, v]) => v > 0).sort((a, b) => b[1] - a[1]);
    const { calls, failed } = await setupLoadCounts(dir);
    console.log(
      `${label}: ${calls} calls (${failed} failed) at ${RATE} cps in ${seconds.toFixed(1)} s: ` +
        `main thread ${(mainMs / Math.max(1, calls)).toFixed(2)} ms CPU per call, ` +
        `process ${(procMs / Math.max(1, calls)).toFixed(2)} ms per call` +
        `${create ? ` (creating a file in the run's folder, ${create.fs}: ${create.micros.toFixed(0)} µs)` : ""} ` +
        `[load ${Deno.readTextFileSync("/proc/loadavg").split(" ").slice(0, 3).join(" ")}; cpu pressure ${
          Deno.readTextFileSync("/proc/pressure/cpu").split("\n")[0].split(" ").slice(1, 3).join(" ")
        }]`,
    );
    console.log(
      `  CPU ms per call by thread (live at the end): ${
        threads.map(([k, v]) => `${k} ${(v / Math.max(1, calls)).toFixed(3)}`).join(", ")
      }`,
    );
    if (args.gc) gcSummary(gcText, calls);
    if (inspector && args.linger) {
      const live = async () => {
        await inspector!.send("HeapProfiler.collectGarbage");
        return (await inspector!.send("Runtime.getHeapUsage") as { usedSize: number }).usedSize;
      };
      const lingering = Math.min(calls, Math.round(RATE * 32));
      const a = await live();
      if (args.snapshot) await snapshotSummary(inspector, lingering);
      console.log(`  live heap after the last call: ${(a / 1e6).toFixed(1)} MB; waiting 40 s for the lingers to end`);
      await new Promise((r) => setTimeout(r, 40_000));
      const b = await live();
      console.log(
        `  live heap 40 s later: ${(b / 1e6).toFixed(1)} MB: ${((a - b) / lingering / 1024).toFixed(1)} KB ` +
          `per call ended in the last 32 s (${lingering} calls)`,
      );
    } else if (inspector && args.heap) {
      const r = await inspector.send("HeapProfiler.stopSampling") as { profile: HeapProfile };
      if (args.save) await Deno.writeTextFile(args.save, JSON.stringify(r.profile));
      summarizeHeap(r.profile, Math.max(1, calls));
    } else if (inspector && profile) {
      const r = await inspector.send("Profiler.stop") as { profile: CpuProfile };
      if (args.save) await Deno.writeTextFile(args.save, JSON.stringify(r.profile));
      summarize(r.profile, Math.max(1, calls));
    }
    return { calls, failed, mainMs, procMs, seconds };
  } finally {
    inspector?.close();
    if (callee) {
      callee.kill("SIGTERM");
      await callee.result;
    }
    removeLater(dir); // at the end of the script: see removeLater
  }
}

if (import.meta.main) {
  await requireTool("sipp");
  const rounds = Number(args.rounds);
  const results: Record<string, RunResult[]> = { before: [], after: [] };
  try {
    for (let i = 0; i < rounds; i++) {
      if (args.compare) results.before.push(await run(`before (${args.compare})`, args.compare, args.profile));
      results.after.push(await run("this checkout", undefined, args.profile));
    }
  } finally {
    await removeDeferred();
  }
  if (rounds > 1 || args.compare) {
    const median = (xs: number[]) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)];
    for (const [k, rs] of Object.entries(results)) {
      if (!rs.length) continue;
      console.log(
        `${k}: median main thread ${median(rs.map((r) => r.mainMs / Math.max(1, r.calls))).toFixed(2)} ms/call, ` +
          `process ${median(rs.map((r) => r.procMs / Math.max(1, r.calls))).toFixed(2)} ms/call over ${rs.length} runs`,
      );
    }
  }
}
