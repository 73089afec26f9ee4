/**
 * Private to the real clock: what a waker (a strategy that wakes the main
 * thread when the earliest timer falls due) needs from the clock it serves.
 *
 * @module
 */

/** The clock's side of a waker. */
export interface WakerHost {
  /** The clock's time, ms. */
  now(): number;
  /** Due time of the earliest live timer, or undefined when none is left. */
  nextDue(): number | undefined;
  /** Runs every timer due at or before `time`, in due order. Returns how many ran. */
  runDue(time: number): number;
}
