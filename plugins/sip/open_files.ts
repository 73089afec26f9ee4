/**
 * How many file descriptors the process has open, and its limit (`RLIMIT_NOFILE`, `ulimit -n`), read from
 * Linux's `/proc/self`. The overload protection refuses new calls before the process runs out: a call takes an RTP
 * and an RTCP socket and its recording, and a process that has none left fails in places it cannot recover from (Deno
 * 2.9 itself panics when, at that moment, it must read a module again to map an error's stack trace: the whole
 * process and every call in it end).
 *
 * Layer: user agent, lowest tier (imports nothing).
 *
 * @module
 */

/** Open file descriptors and their limit. */
export interface OpenFiles {
  /** Descriptors open now. */
  open: number;
  /** The soft limit (`ulimit -n`). */
  limit: number;
}

/**
 * Counts this process's open descriptors (`/proc/self/fd`) and reads its soft limit (`/proc/self/limits`); undefined
 * where that cannot be told (not Linux, no `/proc`, no read permission, no limit). ~20 µs on Linux 6.2 and later
 * (the directory's size is the count); before, the directory is read (~15 ms at 10 000 descriptors).
 */
export function processOpenFiles(): OpenFiles | undefined {
  if (Deno.build.os !== "linux") return undefined;
  let limit: number;
  try {
    const m = /^Max open files\s+(\d+|unlimited)/m.exec(Deno.readTextFileSync("/proc/self/limits"));
    if (!m || m[1] === "unlimited") return undefined;
    limit = Number(m[1]);
  } catch (e) {
    // Out of descriptors already: reading needs one.
    return (e as { code?: unknown }).code === "EMFILE" ? { open: Infinity, limit: 0 } : undefined;
  }
  try {
    // Linux 6.2 and later give the count as the directory's size (a few µs); before, it is 0 and the entries are
    // counted (~15 ms at 10 000 descriptors).
    const size = Deno.statSync("/proc/self/fd").size;
    if (size > 0) return { open: size, limit };
    let open = -1; // the directory being read holds one while it is read
    for (const _ of Deno.readDirSync("/proc/self/fd")) open++;
    return { open, limit };
  } catch (e) {
    return (e as { code?: unknown }).code === "EMFILE" ? { open: limit, limit } : undefined;
  }
}
