/**
 * The shared accept loop (`core/net/accept.ts`) and the descriptor reserve (`core/open_files.ts`), on a virtual
 * clock with a scripted listener and scripted counts:
 *
 * - an accept that fails with EMFILE is retried after a growing wait (50 ms doubling to 1 s), not at once: over 10 s
 *   of a process out of descriptors, a few dozen attempts, where the relay's old loop retried at once, without end;
 *   one warning names the limit and what to do, one says it accepts again, and the connection waiting is taken;
 * - RefusalLog writes one line when refusing starts, at most one per 10 s after, one when it ends;
 * - FileReserve counts the units let in since its last count, and says the figures and `ulimit -n`.
 *
 * @module
 */
import { assert, assertEquals, assertMatch } from "./assert.ts";
import { VirtualClock } from "../core/clock.ts";
import { Logger, MemoryOutput } from "../core/log.ts";
import { acceptLoop, RefusalLog } from "../core/net/accept.ts";
import { FileReserve, isOutOfFiles } from "../core/open_files.ts";

/** An error as Deno's accept gives it when the process has no descriptor left. */
function emfile(): Error {
  return Object.assign(new Error("Too many open files (os error 24)"), { code: "EMFILE" });
}

Deno.test("accept loop: EMFILE is retried after a growing wait, never at once; one warning names the limit, one says it accepts again", async () => {
  const clock = new VirtualClock();
  const out = new MemoryOutput();
  const log = new Logger({ level: "debug", outputs: [out] });
  let outOfFiles = true;
  let attempts = 0;
  let closed = false;
  const taken: number[] = [];
  const listener = {
    accept(): Promise<number> {
      attempts++;
      if (closed) return Promise.reject(new Deno.errors.BadResource("closed"));
      return outOfFiles ? Promise.reject(emfile()) : Promise.resolve(attempts);
    },
  };
  let stopAfterAccept = false;
  const done = acceptLoop(listener, {
    clock,
    log,
    where: "TCP 127.0.0.1:9998",
    closed: () => closed,
    handle: (n) => {
      taken.push(n);
      if (stopAfterAccept) {
        closed = true;
        outOfFiles = true;
      }
    },
  });
  // 10 s out of descriptors: 50, 100, 200, 400, 800 ms, then every second.
  await clock.advanceAsync(10_000, 10);
  assert(attempts >= 10 && attempts <= 20, `${attempts} accept attempts in 10 s`);
  const warnings = out.lines.filter((l) => /WARN/.test(l));
  assertEquals(warnings.length, 1, out.lines.join("\n"));
  assertMatch(warnings[0], /cannot accept connections on TCP 127\.0\.0\.1:9998: no file descriptor left.*ulimit -n/);
  // Descriptors back: the connection waiting is taken, and the loop says so.
  outOfFiles = false;
  stopAfterAccept = true;
  await clock.advanceAsync(1000, 10);
  assertEquals(taken.length, 1);
  assert(
    out.lines.some((l) => /WARN .*accepting connections on TCP 127\.0\.0\.1:9998 again/.test(l)),
    out.lines.join("\n"),
  );
  // Closed: the loop ends.
  await clock.advanceAsync(2000, 10);
  await done;
});

Deno.test("RefusalLog: one line when refusing starts, at most one per 10 s while it lasts (with the count), one when it ends", () => {
  const clock = new VirtualClock();
  const out = new MemoryOutput();
  const r = new RefusalLog(clock, new Logger({ level: "debug", outputs: [out] }), "new connections on TCP x:1");
  for (let i = 0; i < 1000; i++) {
    r.refused("10 of the 100 open files allowed are in use: raise the limit (ulimit -n)");
    clock.advance(25); // 25 s in all
  }
  assertEquals(r.total, 1000);
  assertEquals(out.lines.length, 3, out.lines.join("\n")); // at 0, 10 and 20 s
  assertMatch(out.lines[0], /WARN .*refusing new connections on TCP x:1: 10 of the 100 .*ulimit -n/);
  assertMatch(out.lines[1], /still refusing .*\(400 refused since the last line\)/);
  r.admitted();
  assertMatch(out.lines[3], /new connections on TCP x:1 accepted again: 199 more refused since the last line/);
  r.admitted();
  assertEquals(out.lines.length, 4);
});

Deno.test("FileReserve: units let in since the last count are counted before the next; short says the figures and ulimit -n", () => {
  const clock = new VirtualClock();
  let open = 100;
  let units = 0;
  const reserve = new FileReserve(clock, {
    reserve: 64,
    keptFor: "the connections open",
    units: () => units,
    openFiles: () => ({ open, limit: 200 }),
  });
  assertEquals(reserve.short(), undefined);
  // Connections come at once (before any recount): each is let in while 64 or more are left (the 37th leaves 63).
  let admitted = 0;
  while (reserve.short() === undefined) {
    units++;
    admitted++;
  }
  assertEquals(admitted, 37);
  assertMatch(
    reserve.short()!,
    /^137 of the 200 open files allowed are in use, 64 are kept free for the connections open: raise the limit \(ulimit -n\)$/,
  );
  // They close; the next count (at most 100 ms later near the limit) gives their descriptors back.
  units = 0;
  open = 100;
  clock.advance(100);
  assertEquals(reserve.short(), undefined);
  assert(isOutOfFiles(emfile()) && !isOutOfFiles(new Error("connection reset")));
});
