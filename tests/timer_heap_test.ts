/**
 * The timer heap the clocks share: order by (due, scheduling order), cancelled timers removed at once from anywhere
 * in the heap, and the walk of the earliest due times.
 */
import assert from "node:assert/strict";
import { type TimerEntry, TimerHeap } from "../core/_timer_heap.ts";

/** A deterministic pseudo-random sequence (LCG), so that a failure replays. */
function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

/** Checks the heap property and every entry's index. */
function checkShape(h: TimerHeap): void {
  const a = h.items;
  for (let i = 0; i < a.length; i++) {
    assert.equal(a[i].index, i, `entry at ${i} knows its place`);
    if (i > 0) {
      const p = a[(i - 1) >> 1];
      assert.ok(p.due < a[i].due || (p.due === a[i].due && p.seq < a[i].seq), `heap order at ${i}`);
    }
  }
}

Deno.test("TimerHeap: cancelling removes a timer at once, from anywhere, and the rest run in order", () => {
  for (const seed of [1, 2, 3, 4, 5]) {
    const rnd = lcg(seed);
    const h = new TimerHeap();
    const live = new Set<TimerEntry>();
    const ran: TimerEntry[] = [];
    for (let step = 0; step < 3000; step++) {
      const r = rnd();
      if (r < 0.55) {
        // Due times on a coarse grid, so that ties (run in scheduling order) are common.
        const e = h.add(Math.floor(rnd() * 200), () => {});
        live.add(e);
      } else if (r < 0.9 && live.size > 0) {
        const victims = [...live];
        const e = victims[Math.floor(rnd() * victims.length)];
        e.cancel();
        live.delete(e);
        assert.equal(e.index, -1, "a cancelled timer is out of the heap");
      } else {
        const e = h.pop();
        if (e) {
          live.delete(e);
          ran.push(e);
        }
      }
      assert.equal(h.size, live.size, "the heap holds exactly the live timers");
      if (step % 97 === 0) checkShape(h);
    }
    checkShape(h);
    // What is left comes out in (due, scheduling order).
    const expected = [...live].sort((a, b) => a.due - b.due || a.seq - b.seq);
    const out: TimerEntry[] = [];
    for (let e = h.pop(); e; e = h.pop()) out.push(e);
    assert.deepEqual(out.map((e) => e.seq), expected.map((e) => e.seq), `seed ${seed}`);
    assert.ok(ran.length > 0);
  }
});

Deno.test("TimerHeap: earliest lists the first distinct due times of live timers", () => {
  const rnd = lcg(42);
  const h = new TimerHeap();
  const all: TimerEntry[] = [];
  for (let i = 0; i < 500; i++) all.push(h.add(Math.floor(rnd() * 1000), () => {}));
  // Cancel most of the early ones, as a SIP server's answered retransmissions are.
  for (const e of all) if (e.due < 600 && rnd() < 0.9) e.cancel();
  const liveDues = [...new Set(all.filter((e) => !e.cancelled).map((e) => e.due))].sort((a, b) => a - b);
  const out: number[] = [];
  const frontier: TimerEntry[] = [];
  assert.deepEqual(h.earliest(8, out, frontier), liveDues.slice(0, 8));
  // A timer the owner marked cancelled without cancel() (a clock's popped-and-run timer) is skipped, not listed.
  const top = h.peek()!;
  top.cancelled = true;
  const without = [...new Set(all.filter((e) => !e.cancelled).map((e) => e.due))].sort((a, b) => a - b);
  assert.deepEqual(h.earliest(8, out, frontier), without.slice(0, 8));
  checkShape(h);
});
