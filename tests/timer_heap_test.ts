/**
 * The timer heap the clocks share (`core/_timer_heap.ts`), through the clocks: a cancelled timer leaves the heap at
 * once, from anywhere in it, and the timers left run in order of due time, ties in scheduling order.
 */
import assert from "node:assert/strict";
import { VirtualClock } from "../core/virtual_clock.ts";
import { RealClock } from "../core/real_clock.ts";

/** A deterministic pseudo-random sequence (LCG), so that a failure replays. */
function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

Deno.test("timer heap: timers cancelled anywhere in the heap leave it; the rest run in (due, scheduling) order", () => {
  for (const seed of [1, 2, 3, 4, 5]) {
    const rnd = lcg(seed);
    const clock = new VirtualClock();
    const ran: number[] = [];
    const live = new Map<number, { due: number; cancel(): void }>();
    let id = 0;
    for (let step = 0; step < 3000; step++) {
      const r = rnd();
      if (r < 0.55) {
        // Due times on a coarse grid, so that ties (run in scheduling order) are common.
        const me = id++;
        const due = clock.now() + Math.floor(rnd() * 50);
        const t = clock.at(due, () => {
          ran.push(me);
          live.delete(me);
        });
        live.set(me, { due, cancel: () => t.cancel() });
      } else if (r < 0.9 && live.size > 0) {
        const keys = [...live.keys()];
        const victim = keys[Math.floor(rnd() * keys.length)];
        live.get(victim)!.cancel();
        live.delete(victim);
      } else {
        // Run what falls due in the next ms: exactly the live timers due by then, in order.
        const until = clock.now() + 1;
        const expected = [...live.entries()].filter(([, t]) => t.due <= until)
          .sort(([a, x], [b, y]) => x.due - y.due || a - b).map(([k]) => k);
        ran.length = 0;
        clock.advance(1);
        assert.deepEqual(ran, expected, `seed ${seed}, step ${step}`);
      }
      assert.equal(clock.pending, live.size);
    }
    const expected = [...live.entries()].sort(([a, x], [b, y]) => x.due - y.due || a - b).map(([k]) => k);
    ran.length = 0;
    clock.advance(1000);
    assert.deepEqual(ran, expected, `seed ${seed}: the rest`);
  }
});

Deno.test("timer heap: a real clock's cancelled timers leave the heap at once", () => {
  const clock = new RealClock();
  const timers = Array.from({ length: 100 }, (_, i) => clock.after(60_000 + i, () => {}));
  assert.equal(clock.pending, 100);
  // Cancelled from the middle and the top, not only from the top: each leaves at once.
  for (let i = 10; i < 100; i += 2) timers[i].cancel();
  timers[0].cancel();
  assert.equal(clock.pending, 54);
  for (const t of timers) t.cancel();
  assert.equal(clock.pending, 0);
});
