/**
 * Private to the fast network: the native pacer (`native/pacer.c`, built by `scripts/setup.sh` into
 * `native/build/libvoxpacer.so`), one thread per {@linkcode MediaLoop} that sends datagrams at their due times.
 *
 * The loop hands it each paced packet `leadMs` before the packet is due; the thread sleeps until shortly before the
 * earliest due time, spins the rest within a CPU budget, and sends. So whatever the JavaScript thread is doing at
 * the due time (collecting garbage, running another call's work, waking late) does not move the packet on the wire.
 *
 * @module
 */

import { openNativeLibrary } from "../native.ts";

/** Where `scripts/setup.sh` builds the library. */
export const PACER_LIBRARY = new URL("../../native/build/libvoxpacer.so", import.meta.url);

/** The shortest and longest lead a pacer takes, ms (`PacerSettings.leadMs`, `VOXPIPE_PACER_LEAD_MS`). */
export const PACER_MIN_LEAD_MS = 0.5;
/** See {@linkcode PACER_MIN_LEAD_MS}. */
export const PACER_MAX_LEAD_MS = 50;
/** The longest spin before a due time, ms (`PacerSettings.spinMs`, `VOXPIPE_PACER_SPIN_MS`). */
export const PACER_MAX_SPIN_MS = 2;

/** Packets one pacer holds at most (a packet beyond is sent by the loop at once instead). */
export const PACER_CAPACITY = 8192;

const SYMBOLS = {
  vp_pacer_new: { parameters: ["u32", "f64", "f64"], result: "pointer" },
  vp_pacer_post: { parameters: ["pointer", "i32", "f64", "buffer", "u32", "buffer", "u32"], result: "i32" },
  vp_pacer_pending: { parameters: ["pointer", "i32"], result: "u32" },
  vp_pacer_forget: { parameters: ["pointer", "i32"], result: "u32" },
  vp_pacer_stats: { parameters: ["pointer", "buffer"], result: "void" },
  vp_pacer_free: { parameters: ["pointer"], result: "void" },
} as const;

type PacerSymbols = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

let lib: PacerSymbols | undefined;
let loadError: string | undefined;

/** Why the native pacer cannot run here (the library is missing or cannot load), or undefined when it can. */
export function pacerProblem(): string | undefined {
  if (lib) return undefined;
  if (loadError !== undefined) return loadError;
  const opened = openNativeLibrary(PACER_LIBRARY, SYMBOLS);
  lib = opened.symbols;
  return loadError = opened.problem;
}

/** Settings of a {@linkcode NativePacer}. */
export interface PacerSettings {
  /** How long before its due time a packet is handed to the pacer, ms (0.5..50). */
  leadMs: number;
  /** How long before a due time the thread stops sleeping and spins, ms (0..2; 0 never spins). */
  spinMs: number;
  /** The most CPU the spins may take, as a share of one core (0..1). */
  spinBudget: number;
}

/** Counters of a {@linkcode NativePacer}. */
export interface PacerStats {
  /** Datagrams sent. */
  sent: number;
  /** Sends that failed (the last one's errno is `lastErrno`). */
  errors: number;
  /** Datagrams refused because the pacer was full (the loop sent them at once instead). */
  refused: number;
  /** Steps spun (of at most 50 µs each: the thread looks at its queue again between steps). */
  spins: number;
  /** Time spun, ms. */
  spunMs: number;
  /** The latest a send left after its due time, ms. */
  lateMaxMs: number;
  /** The mean lateness of a send, ms. */
  lateMeanMs: number;
  /** errno of the last failed send (0: none). */
  lastErrno: number;
  /** Datagrams waiting. */
  queued: number;
}

/** One pacer thread. */
export class NativePacer {
  readonly settings: Readonly<PacerSettings>;
  readonly #lib: PacerSymbols;
  #p: Deno.PointerValue;
  /** CLOCK_MONOTONIC ms − performance.now() on this thread. */
  readonly #offset: number;
  readonly #stats = new Float64Array(9);

  /**
   * Starts the thread. Throws when the library cannot load (see {@linkcode pacerProblem}) or the thread cannot start.
   *
   * @param settings lead, spin and budget
   * @param monoOffsetMs CLOCK_MONOTONIC (ms) − `performance.now()` on the calling thread, as its loop calibrated it:
   *   what turns the due times given to {@linkcode NativePacer.post} into the pacer's clock
   */
  constructor(settings: PacerSettings, monoOffsetMs: number) {
    const why = pacerProblem();
    if (why !== undefined) throw new Error(`native pacer: ${why}`);
    const { leadMs, spinMs, spinBudget } = settings;
    if (!(leadMs >= PACER_MIN_LEAD_MS && leadMs <= PACER_MAX_LEAD_MS)) {
      throw new RangeError(`native pacer: leadMs must be ${PACER_MIN_LEAD_MS}..${PACER_MAX_LEAD_MS}, got ${leadMs}`);
    }
    if (!(spinMs >= 0 && spinMs <= PACER_MAX_SPIN_MS)) {
      throw new RangeError(`native pacer: spinMs must be 0..${PACER_MAX_SPIN_MS}, got ${spinMs}`);
    }
    if (!(spinBudget >= 0 && spinBudget <= 1)) {
      throw new RangeError(`native pacer: spinBudget must be 0..1, got ${spinBudget}`);
    }
    this.settings = { leadMs, spinMs, spinBudget };
    this.#lib = lib!;
    this.#p = this.#lib.vp_pacer_new(PACER_CAPACITY, spinMs, spinBudget);
    if (this.#p === null) throw new Error("native pacer: could not start its thread");
    this.#offset = monoOffsetMs;
  }

  /**
   * Queues `data` (copied) to be sent from socket `fd` to the socket address `addr` (its first `addrLen` bytes) at
   * `due` (performance.now() ms). False when the pacer is full or closed, or the datagram is over 1 500 bytes: the
   * caller sends it itself.
   */
  post(fd: number, due: number, data: Uint8Array, addr: Uint8Array<ArrayBuffer>, addrLen: number): boolean {
    if (this.#p === null) return false;
    const refused = this.#lib.vp_pacer_post(
      this.#p,
      fd,
      due + this.#offset,
      data as Uint8Array<ArrayBuffer>,
      data.length,
      addr,
      addrLen,
    );
    return refused === 0;
  }

  /** Datagrams waiting (or being sent) for socket `fd`. */
  pending(fd: number): number {
    return this.#p === null ? 0 : this.#lib.vp_pacer_pending(this.#p, fd);
  }

  /** Drops what waits for `fd` and waits out a send on it in progress: `fd` may be closed afterwards. */
  forget(fd: number): number {
    return this.#p === null ? 0 : this.#lib.vp_pacer_forget(this.#p, fd);
  }

  /** The counters. */
  stats(): PacerStats {
    const s = this.#stats;
    if (this.#p !== null) this.#lib.vp_pacer_stats(this.#p, s);
    return {
      sent: s[0],
      errors: s[1],
      refused: s[2],
      spins: s[3],
      spunMs: s[4],
      lateMaxMs: s[5],
      lateMeanMs: s[0] > 0 ? s[6] / s[0] : 0,
      lastErrno: s[7],
      queued: s[8],
    };
  }

  /** Stops the thread; what still waits is dropped. Idempotent. */
  close(): void {
    if (this.#p === null) return;
    const p = this.#p;
    this.#p = null;
    this.#lib.vp_pacer_free(p);
  }
}
