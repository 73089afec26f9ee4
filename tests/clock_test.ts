/**
 * Tests of the media clock: the real-time scheduler's ordering guarantees
 * (in order, never early, cancellation, re-entrancy, going idle), the virtual
 * clock and the drift-free pacer. No test asserts how *late* a real timer
 * runs: that is measured by `bench/pacing.ts`.
 */
import assert from "node:assert/strict";
import { mediaClock, Pacer, RealClock, VirtualClock } from "../core/clock.ts";

/** Waits until the clock has no pending timers (bounded). */
async function idle(clock: RealClock, ms = 2000): Promise<void> {
  const end = performance.now() + ms;
  while (clock.pending > 0) {
    if (performance.now() > end) throw new Error("scheduler did not go idle");
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** The scheduler configurations under test: timer thread, main-thread futex, main-thread spin. */
const MODES: [string, () => RealClock][] = [
  ["timer thread", () => new RealClock()],
  ["main thread, futex", () => {
    const c = new RealClock();
    c.useTimerThread = false;
    return c;
  }],
  ["main thread, spin", () => {
    const c = new RealClock(1.5, 0.5, 1);
    c.useTimerThread = false;
    return c;
  }],
];

for (const [mode, make] of MODES) {
  Deno.test(`RealClock (${mode}): timers run in due order, never early`, async () => {
    const clock = make();
    const t0 = clock.now();
    const ran: { due: number; at: number; id: number }[] = [];
    // 300 timers over 30 ms in random order, several sharing a due time.
    const dues = Array.from({ length: 300 }, (_, i) => t0 + 2 + Math.floor(i / 3) * 0.3);
    const order = dues.map((_, i) => i).sort(() => Math.random() - 0.5);
    let scheduling = true;
    let reentered = false;
    for (const i of order) {
      clock.at(dues[i], () => {
        if (scheduling) reentered = true;
        ran.push({ due: dues[i], at: clock.now(), id: i });
      });
    }
    scheduling = false;
    assert.ok(!reentered, "no timer runs inside at(), even while the timer thread starts");
    await clock.sleepUntil(t0 + 40);
    await idle(clock);
    assert.equal(ran.length, 300);
    for (const r of ran) assert.ok(r.at >= r.due, `timer ${r.id} ran ${r.due - r.at} ms early`);
    for (let i = 1; i < ran.length; i++) {
      assert.ok(ran[i].due >= ran[i - 1].due, "due order");
    }
  });
}

Deno.test("RealClock: cancelling the last timer leaves nothing pending", () => {
  const clock = new RealClock();
  const a = clock.after(60_000, () => {});
  const b = clock.after(30_000, () => {});
  assert.equal(clock.pending, 2);
  b.cancel();
  assert.equal(clock.pending, 2, "a cancelled entry waits in the heap while others live");
  a.cancel();
  assert.equal(clock.pending, 0);
});

Deno.test("RealClock: the process exits when only cancelled timers remain", async () => {
  const code = `
    import { RealClock } from ${JSON.stringify(new URL("../core/clock.ts", import.meta.url).href)};
    const c = new RealClock();
    c.after(20, () => console.log("fired"));
    const t = c.after(600_000, () => console.log("never"));
    c.after(40, () => t.cancel());
  `;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["eval", code],
    stdout: "piped",
    stderr: "inherit",
    signal: AbortSignal.timeout(20_000),
  }).output();
  assert.equal(out.code, 0);
  assert.equal(new TextDecoder().decode(out.stdout).trim(), "fired");
});

Deno.test("RealClock: equal due times run in scheduling order", async () => {
  const clock = new RealClock();
  const due = clock.now() + 3;
  const seen: number[] = [];
  for (let i = 0; i < 20; i++) clock.at(due, () => seen.push(i));
  await clock.sleepUntil(due + 1);
  assert.deepEqual(seen, Array.from({ length: 20 }, (_, i) => i));
});

Deno.test("RealClock: cancel, past due times, timers set from callbacks, sleep abort", async () => {
  const clock = new RealClock();
  const seen: string[] = [];
  const t = clock.after(5, () => seen.push("cancelled"));
  t.cancel();
  clock.at(clock.now() - 100, () => seen.push("past"));
  // A chain of 10 timers, each scheduling the next 1 ms later from inside its callback.
  let n = 0;
  const chainStart = clock.now();
  const step = () => {
    seen.push(`chain${n}`);
    assert.ok(clock.now() >= chainStart + n, "chain timer never early");
    if (++n < 10) clock.at(chainStart + n, step);
  };
  clock.at(chainStart, step);
  await clock.sleep(25);
  assert.ok(seen.includes("past"));
  assert.ok(!seen.includes("cancelled"));
  assert.equal(seen.filter((s) => s.startsWith("chain")).length, 10);

  const abort = new AbortController();
  const p = clock.sleep(10_000, abort.signal);
  abort.abort(new Error("stop"));
  await assert.rejects(p, /stop/);
  await idle(clock);
});

Deno.test("RealClock: a far timer sleeps on setTimeout and an earlier one re-arms it", async () => {
  const clock = new RealClock();
  const seen: string[] = [];
  const far = clock.after(200, () => seen.push("far"));
  clock.after(10, () => seen.push("near"));
  await clock.sleep(30);
  assert.deepEqual(seen, ["near"]);
  far.cancel();
  await idle(clock);
  assert.equal(clock.pending, 0);
});

Deno.test("RealClock: I/O callbacks keep running while timers are dense", async () => {
  const clock = new RealClock();
  const t0 = clock.now();
  let fired = 0;
  // 200 streams at 20 ms for 60 ms: the fine phase is active the whole time.
  for (let s = 0; s < 200; s++) {
    const start = t0 + 2 + (s * 20) / 200;
    for (let k = 0; k < 3; k++) clock.at(start + k * 20, () => fired++);
  }
  // Meanwhile macrotasks (standing in for socket callbacks) must still run.
  let ticks = 0;
  const iv = setInterval(() => ticks++, 1);
  await clock.sleepUntil(t0 + 70);
  clearInterval(iv);
  assert.equal(fired, 600);
  assert.ok(ticks >= 2, `event loop starved: ${ticks} interval ticks in 70 ms`);
  await idle(clock);
});

Deno.test("mediaClock: one process-wide RealClock", () => {
  assert.equal(mediaClock(), mediaClock());
  assert.ok(mediaClock() instanceof RealClock);
});

Deno.test("VirtualClock: advance runs each timer at its own time", async () => {
  const clock = new VirtualClock(100);
  const seen: number[] = [];
  clock.at(130, () => seen.push(clock.now()));
  clock.at(110, () => seen.push(clock.now()));
  clock.after(5, () => clock.after(5, () => seen.push(clock.now())));
  clock.advance(50);
  assert.deepEqual(seen, [105 + 5, 110, 130].sort((a, b) => a - b));
  assert.equal(clock.now(), 150);
  let woke = 0;
  clock.sleep(20).then(() => woke = clock.now());
  await clock.advanceAsync(25);
  assert.equal(woke, 170);
});

Deno.test("Pacer: frame n is due at start + n × period, whatever the lateness", async () => {
  const clock = new VirtualClock();
  const pacer = new Pacer(clock, 20);
  const at: number[] = [];
  const run = (async () => {
    for (let n = 0; n < 5; n++) {
      await pacer.wait(n);
      at.push(clock.now());
      if (n === 1) clock.advance(7); // the work for frame 1 took 7 ms
    }
  })();
  await clock.advanceAsync(100, 1);
  await run;
  assert.deepEqual(at, [0, 20, 40, 60, 80]);
  assert.equal(pacer.dueTime(1500), 30000, "no accumulated drift");
});
