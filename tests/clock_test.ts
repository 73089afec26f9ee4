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
  assert.equal(clock.pending, 1, "a cancelled timer leaves the heap at once");
  a.cancel();
  assert.equal(clock.pending, 0);
});

/** Runs `code` in a fresh `deno eval` process (killed after 20 s); its exit code and standard output. */
async function evalProcess(code: string): Promise<{ code: number; stdout: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["eval", code],
    stdout: "piped",
    stderr: "inherit",
    signal: AbortSignal.timeout(20_000),
  }).output();
  return { code: out.code, stdout: new TextDecoder().decode(out.stdout) };
}

const CLOCK_URL = JSON.stringify(new URL("../core/clock.ts", import.meta.url).href);

Deno.test("RealClock: the process exits when only cancelled timers remain", async () => {
  const out = await evalProcess(`
    import { RealClock } from ${CLOCK_URL};
    const c = new RealClock();
    c.after(20, () => console.log("fired"));
    const t = c.after(600_000, () => console.log("never"));
    c.after(40, () => t.cancel());
  `);
  assert.equal(out.code, 0);
  assert.equal(out.stdout.trim(), "fired");
});

Deno.test("RealClock: a process whose only timer is far ahead calls no setTimeout to arm it, stays alive, fires on time", async () => {
  // Deno's setTimeout loads node:timers on first use (~9 ms); a file conversion's only timer (the WAV header tick, a
  // second ahead) must not pay for it. The far sleep holds the process like a pending setTimeout.
  const out = await evalProcess(`
    let timeouts = 0;
    const st = globalThis.setTimeout;
    globalThis.setTimeout = (...a) => (timeouts++, st(...a));
    const { RealClock } = await import(${CLOCK_URL});
    const c = new RealClock();
    const due = c.now() + 400;
    c.at(due, () => console.log(JSON.stringify({ armed, early: c.now() < due })));
    const armed = timeouts;
  `);
  assert.equal(out.code, 0);
  assert.deepEqual(JSON.parse(out.stdout), { armed: 0, early: false });
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

Deno.test("RealClock: a far timer sleeps without setTimeout and an earlier one re-arms it", async () => {
  const clock = new RealClock();
  const seen: string[] = [];
  const far = clock.after(600_000, () => seen.push("far"));
  clock.after(10, () => seen.push("near"));
  await clock.sleep(30);
  assert.deepEqual(seen, ["near"]);
  assert.equal(clock.pending, 1, "the far timer is still pending");
  far.cancel();
  await idle(clock);
  assert.equal(clock.pending, 0);
});

/**
 * Runs 200 streams of timers every 20 ms (one due every 0.1 ms), each
 * re-armed drift-free from its own callback, until `stop()`; counts timers that
 * ran before their due time.
 */
function denseTimers(clock: RealClock): { stop(): void; fired(): number; early(): number } {
  let stopped = false, fired = 0, early = 0;
  const t0 = clock.now() + 2;
  for (let s = 0; s < 200; s++) {
    let k = 0;
    const due = () => t0 + (s * 20) / 200 + k * 20;
    const tick = () => {
      if (clock.now() < due()) early++;
      fired++;
      k++;
      if (!stopped) clock.at(due(), tick);
    };
    clock.at(due(), tick);
  }
  return { stop: () => stopped = true, fired: () => fired, early: () => early };
}

/**
 * Sends one datagram to ourselves while `timers` run and resolves with whether
 * it arrived before they were stopped. The timers run until the datagram is
 * read (or 20 s pass: a starved event loop), so how fast this machine is does
 * not matter, only that socket reads are not held off by the scheduler.
 */
async function datagramWhileTimersRun(clock: RealClock, timers: { stop(): void }): Promise<boolean> {
  // Timers run in due order: once this sleep ends, every stream has fired at least once.
  await clock.sleep(25);
  const a = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  const b = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  let guard: ReturnType<typeof setTimeout> | undefined;
  try {
    const received = b.receive().then(() => true);
    const starved = new Promise<boolean>((r) => guard = setTimeout(() => r(false), 20_000));
    await a.send(new Uint8Array([1, 2, 3]), b.addr);
    return await Promise.race([received, starved]);
  } finally {
    clearTimeout(guard);
    timers.stop();
    a.close();
    b.close();
  }
}

Deno.test("RealClock: dense timers never keep socket reads waiting (timer thread)", async () => {
  const clock = new RealClock();
  // Wait for the timer thread (its start blocks the main thread once, tens of ms).
  while (clock.schedulerStats().mode !== "thread") await clock.sleep(5);
  const timers = denseTimers(clock);
  assert.ok(await datagramWhileTimersRun(clock, timers), "the datagram was not read while timers ran");
  assert.ok(timers.fired() >= 200, `${timers.fired()} timers fired`);
  assert.equal(timers.early(), 0, "a timer ran before its due time");
  // The event loop parked between timer batches: no busy fine phase ever ran.
  assert.equal(clock.schedulerStats().fineTurns, 0);
  await idle(clock, 10_000);
});

Deno.test("RealClock: while the timer thread starts, timers wake from setTimeout, never from a busy loop", async () => {
  const clock = new RealClock();
  const timers = denseTimers(clock); // scheduled before the thread can be ready
  assert.ok(await datagramWhileTimersRun(clock, timers), "the datagram was not read while timers ran");
  assert.equal(timers.early(), 0, "a timer ran before its due time");
  assert.equal(clock.schedulerStats().fineTurns, 0, "the busy fine phase ran while the thread was starting");
  await idle(clock, 10_000);
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

Deno.test("RealClock: a far timer does not start the timer thread; prepare() or a near timer does", async () => {
  const clock = new RealClock();
  const far = clock.after(5_000, () => {});
  const t0 = performance.now();
  while (performance.now() - t0 < 50) await new Promise((r) => setTimeout(r, 5));
  assert.equal(clock.schedulerStats().mode, "main", "a timer 5 s away started the thread");
  far.cancel();
  clock.prepare();
  while (clock.schedulerStats().mode !== "thread") await clock.sleep(5);
  const other = new RealClock();
  await other.sleep(1); // due at once: the thread starts for it
  while (other.schedulerStats().mode !== "thread") await other.sleep(5);
  await idle(clock, 10_000);
  await idle(other, 10_000);
});

/**
 * A RealClock whose time runs `skewMs` behind `performance.now()`: to it, its timer thread (which reads
 * `performance.timeOrigin + performance.now()`) is `skewMs` ahead. Threads disagree like that for real: in a
 * Deno Worker, the timer thread it starts was measured 0.064 ms ahead of it.
 */
class SkewedClock extends RealClock {
  constructor(readonly skewMs: number) {
    super();
  }
  override now(): number {
    return performance.now() - this.skewMs;
  }
}

Deno.test("RealClock: a timer thread whose clock is ahead wakes it early; every timer still runs, never early", async () => {
  for (const skew of [0.2, 30]) {
    const clock = new SkewedClock(skew);
    clock.prepare();
    const t0 = performance.now();
    while (clock.schedulerStats().mode !== "thread") {
      if (performance.now() - t0 > 30_000) throw new Error("the timer thread did not start");
      await new Promise((r) => setTimeout(r, 5));
    }
    // A chain of timers, each set by the one before, as a pacing sink sets them: one lost wake-up stops it.
    const ran: { due: number; at: number }[] = [];
    const done = Promise.withResolvers<void>();
    const next = () => {
      const due = clock.now() + 2;
      clock.at(due, () => {
        ran.push({ due, at: clock.now() });
        if (ran.length < 20) next();
        else done.resolve();
      });
    };
    next();
    // A bound against hanging, not a timing assertion: 20 timers 2 ms apart, whatever the machine's load.
    const guard = setTimeout(() => done.reject(new Error(`skew ${skew} ms: ${ran.length} of 20 timers ran`)), 30_000);
    await done.promise.finally(() => clearTimeout(guard));
    for (const r of ran) assert.ok(r.at >= r.due, `skew ${skew} ms: a timer ran ${r.due - r.at} ms early`);
    await idle(clock, 10_000);
  }
});
