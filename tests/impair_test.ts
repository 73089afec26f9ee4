import assert from "node:assert/strict";
import { VirtualClock } from "../core/clock.ts";
import type { Frame, PacketFrame } from "../core/frame.ts";
import type { TransformStage } from "../core/stage.ts";
import { createStage, testContext } from "../core/testing.ts";
import impair from "../plugins/rtp/impair.ts";
import { normalDeviate, seededRandom } from "../core/random.ts";

/** Runs `n` packets (one every 20 ms, arrival stamped) through impair; returns what came out and when. */
async function run(options: Record<string, unknown>, n: number) {
  const clock = new VirtualClock();
  const base = testContext({ clock });
  const out: { t: number; id: number; arrival?: number }[] = [];
  const emit = (f: Frame) => {
    const p = f as PacketFrame;
    out.push({ t: clock.now(), id: p.data[0] | (p.data[1] << 8), arrival: p.arrival });
    return true;
  };
  const ctx = { ...base.ctx, emit };
  const st = await createStage<TransformStage>(impair, options, ctx);
  assert.deepEqual(st.negotiate!({ kind: "packet" }), { kind: "packet" });
  await st.start!(ctx);
  for (let i = 0; i < n; i++) {
    st.process({ kind: "packet", data: new Uint8Array([i & 0xff, i >> 8]), arrival: clock.now() }, emit);
    clock.advance(20);
  }
  clock.advance(10000);
  st.flush!(emit);
  await st.close!();
  return { out, stats: st.stats!() as Record<string, number>, clock };
}

Deno.test("random: mulberry32 is reproducible and roughly uniform; normal deviates", () => {
  const a = seededRandom(123), b = seededRandom(123), c = seededRandom(124);
  const sa = Array.from({ length: 5 }, a), sb = Array.from({ length: 5 }, b), sc = Array.from({ length: 5 }, c);
  assert.deepEqual(sa, sb);
  assert.notDeepEqual(sa, sc);
  const r = seededRandom(9);
  const bins = new Array(10).fill(0);
  let sum = 0, sq = 0;
  const g = seededRandom(10);
  for (let i = 0; i < 100000; i++) {
    const x = r();
    assert.ok(x >= 0 && x < 1);
    bins[Math.floor(x * 10)]++;
    const z = normalDeviate(g);
    sum += z;
    sq += z * z;
  }
  for (const b of bins) assert.ok(Math.abs(b - 10000) < 400, `bin ${b}`);
  assert.ok(Math.abs(sum / 100000) < 0.02);
  assert.ok(Math.abs(sq / 100000 - 1) < 0.03);
});

Deno.test("impair: nothing configured passes every packet synchronously", async () => {
  const { out, stats } = await run({}, 100);
  assert.equal(out.length, 100);
  assert.ok(out.every((o, i) => o.id === i && o.t === i * 20));
  assert.equal(stats.emitted, 100);
});

Deno.test("impair: the same seed gives the same run; another seed another", async () => {
  const opts = { loss: 0.1, jitter_ms: 50, reorder: 0.05, duplicate: 0.05, seed: 42 };
  const a = await run(opts, 500);
  const b = await run(opts, 500);
  const c = await run({ ...opts, seed: 43 }, 500);
  assert.deepEqual(a.out, b.out);
  assert.deepEqual(a.stats, b.stats);
  assert.notDeepEqual(a.out, c.out);
  assert.equal(a.stats.seed, 42);
});

Deno.test("impair: rates within tolerance over many packets", async () => {
  const n = 20000;
  const { out, stats } = await run({ loss: 0.05, duplicate: 0.02, reorder: 0.03, seed: 7 }, n);
  // Binomial standard deviations: loss √(n·0.05·0.95) ≈ 31, so ±4σ ≈ 125.
  assert.ok(Math.abs(stats.dropped - 1000) < 125, `dropped ${stats.dropped}`);
  assert.ok(Math.abs(stats.duplicated - 0.02 * (n - stats.dropped)) < 90, `duplicated ${stats.duplicated}`);
  assert.ok(Math.abs(stats.reordered - 0.03 * (n - stats.dropped)) < 100, `reordered ${stats.reordered}`);
  assert.equal(stats.received, n);
  assert.equal(out.length, n - stats.dropped + stats.duplicated);
  assert.equal(stats.emitted, out.length);
  // Every received id appears, duplicates twice; reorders swap neighbours.
  const count = new Map<number, number>();
  for (const o of out) count.set(o.id, (count.get(o.id) ?? 0) + 1);
  assert.equal(count.size, n - stats.dropped);
  let inversions = 0;
  for (let i = 1; i < out.length; i++) if (out[i].id < out[i - 1].id) inversions++;
  assert.ok(Math.abs(inversions - stats.reordered) <= stats.reordered * 0.1 + 5, `inversions ${inversions}`);
});

Deno.test("impair: delay and uniform jitter, arrival restamped; delayed packets go out on clock timers", async () => {
  const { out, stats } = await run({ delay_ms: 30, jitter_ms: 40, seed: 3 }, 2000);
  assert.equal(out.length, 2000);
  assert.equal(stats.delayed, 2000);
  let sum = 0;
  for (const o of out) {
    const d = o.t - o.id * 20;
    assert.ok(d >= 30 && d < 70, `delay ${d}`);
    assert.equal(o.arrival, o.t, "arrival is when it left impair");
    sum += d;
  }
  assert.ok(Math.abs(sum / 2000 - 50) < 1.5, `mean ${sum / 2000}`);
  // 40 ms of jitter on a 20 ms spacing reorders some packets.
  let inversions = 0;
  for (let i = 1; i < out.length; i++) if (out[i].id < out[i - 1].id) inversions++;
  assert.ok(inversions > 100);
});

Deno.test("impair: normal jitter is centred on jitter_ms/2 and clipped to [0, jitter_ms]", async () => {
  const { out } = await run({ jitter_ms: 80, jitter_distribution: "normal", seed: 11 }, 4000);
  const ds = out.map((o) => o.t - o.id * 20);
  const mean = ds.reduce((a, b) => a + b, 0) / ds.length;
  const sd = Math.sqrt(ds.reduce((a, b) => a + (b - mean) ** 2, 0) / ds.length);
  assert.ok(ds.every((d) => d >= 0 && d <= 80));
  assert.ok(Math.abs(mean - 40) < 1.5, `mean ${mean}`);
  assert.ok(Math.abs(sd - 20) < 2, `sd ${sd}`);
});

Deno.test("impair: flush releases what is still delayed, in due order; close cancels timers", async () => {
  const clock = new VirtualClock();
  const base = testContext({ clock });
  const got: number[] = [];
  const ctx = { ...base.ctx, emit: (f: Frame) => (got.push((f as PacketFrame).data[0]), true) };
  const st = await createStage<TransformStage>(impair, { delay_ms: 100, jitter_ms: 50, seed: 1 }, ctx);
  await st.start!(ctx);
  for (let i = 0; i < 5; i++) st.process({ kind: "packet", data: new Uint8Array([i]) }, ctx.emit);
  assert.equal(got.length, 0);
  assert.equal(st.stats!().pending, 5);
  st.flush!(ctx.emit);
  assert.equal(got.length, 5);
  assert.equal(clock.pending, 0);
  for (let i = 0; i < 5; i++) st.process({ kind: "packet", data: new Uint8Array([i]) }, ctx.emit);
  await st.close!();
  assert.equal(clock.pending, 0);
  clock.advance(1000);
  assert.equal(got.length, 5, "nothing after close");
});
