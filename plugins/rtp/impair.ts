/**
 * `impair`: a network impairment simulator for any kind of frame (usually
 * `packet` right after a udp-source, or `rtp`).
 *
 * For each frame, in this order, with a seeded PRNG so a run is reproducible:
 *
 * 1. `loss`: dropped with this probability.
 * 2. `duplicate`: with this probability a second copy is sent too (it gets its own delay).
 * 3. delay: `delay_ms` plus a random extra delay drawn from `jitter_distribution`:
 *    - `uniform`: uniform in [0, `jitter_ms`);
 *    - `normal`: normal with mean `jitter_ms`/2 and standard deviation `jitter_ms`/4,
 *      clipped to [0, `jitter_ms`] (about 95 % of draws fall inside without clipping).
 *    A frame with no delay passes synchronously; delayed frames are sent later from
 *    media-clock timers through `ctx.emit`, so frames overtake each other when their
 *    delays differ by more than their spacing.
 * 4. `reorder`: with this probability the frame is held back and sent right after the
 *    next frame (a swap), or after 100 ms if no other frame comes.
 *
 * A frame that carries an `arrival` time gets the time at which it leaves this stage,
 * as if it had arrived then.
 *
 * @example Pipeline entry: 5 % loss, 0–40 ms jitter
 * ```json
 * { "use": "impair", "loss": 0.05, "jitter_ms": 40, "seed": 7 }
 * ```
 *
 * @module
 */
import type { Format, Frame } from "../../core/frame.ts";
import type { Timer } from "../../core/clock.ts";
import { type Emit, FormatError, type RunContext, type StageContext, type TransformStage } from "../../core/stage.ts";
import { normalDeviate, randomUint32, seededRandom } from "../../core/random.ts";
import { impair, type ImpairOptions, impairSchema } from "./plugins.ts";

export { impair, type ImpairOptions };

/** Options of the `impair` stage (its zod schema; the plugin's `options`). */
export const impairOptions: ReturnType<typeof impairSchema> = impairSchema();

/** How long a frame held for reordering waits for a successor before it is sent anyway. */
const REORDER_HOLD_MS = 100;

/** Creates an `impair` stage from validated options: the plugin's `create`, loaded when first used. */
export function createImpair(opts: ImpairOptions, sctx: StageContext): TransformStage {
  const seed = opts.seed ?? randomUint32();
  const rnd = seededRandom(seed);
  const clock = sctx.clock;
  let ctx: RunContext | undefined;
  const delayed = new Set<{ frame: Frame; timer: Timer }>();
  let held: Frame | undefined;
  let heldTimer: Timer | undefined;
  let closed = false;
  const n = { received: 0, dropped: 0, duplicated: 0, delayed: 0, reordered: 0, emitted: 0 };

  const stamp = (f: Frame): Frame => {
    if ((f.kind === "packet" || f.kind === "rtp") && f.arrival !== undefined) {
      return { ...f, arrival: clock.now() };
    }
    return f;
  };

  const out = (f: Frame, emit: Emit) => {
    n.emitted++;
    emit(stamp(f));
  };

  /** Sends `f` now or after its delay; a held (reordered) frame follows the next one sent. */
  const release = (f: Frame, emit: Emit) => {
    out(f, emit);
    if (held) {
      const h = held;
      held = undefined;
      heldTimer?.cancel();
      heldTimer = undefined;
      out(h, emit);
    }
  };

  const extraDelay = (): number => {
    let d = opts.delay_ms;
    if (opts.jitter_ms > 0) {
      if (opts.jitter_distribution === "normal") {
        const j = opts.jitter_ms / 2 + normalDeviate(rnd) * (opts.jitter_ms / 4);
        d += Math.min(opts.jitter_ms, Math.max(0, j));
      } else {
        d += rnd() * opts.jitter_ms;
      }
    }
    return d;
  };

  const schedule = (f: Frame, emit: Emit) => {
    const d = extraDelay();
    if (d <= 0 || !ctx) {
      release(f, emit);
      return;
    }
    n.delayed++;
    const entry = {
      frame: f,
      timer: clock.after(d, () => {
        delayed.delete(entry);
        if (!closed && ctx) release(f, ctx.emit);
      }),
    };
    delayed.add(entry);
  };

  return {
    negotiate(input: Format | undefined): Format {
      if (!input) throw new FormatError("impair needs an upstream stage: it cannot be a source");
      return input;
    },
    start(runCtx) {
      ctx = runCtx;
    },
    process(frame, emit) {
      n.received++;
      if (opts.loss > 0 && rnd() < opts.loss) {
        n.dropped++;
        return;
      }
      const dup = opts.duplicate > 0 && rnd() < opts.duplicate;
      if (opts.reorder > 0 && !held && rnd() < opts.reorder) {
        n.reordered++;
        held = frame;
        if (ctx) {
          const c = ctx;
          heldTimer = clock.after(REORDER_HOLD_MS, () => {
            heldTimer = undefined;
            if (held && !closed) {
              const h = held;
              held = undefined;
              out(h, c.emit);
            }
          });
        }
      } else {
        schedule(frame, emit);
      }
      if (dup) {
        n.duplicated++;
        schedule(frame, emit);
      }
    },
    flush(emit) {
      // End of stream: what is still delayed goes out now, in due order.
      const pending = [...delayed].sort((a, b) => a.timer.due - b.timer.due);
      delayed.clear();
      for (const e of pending) {
        e.timer.cancel();
        release(e.frame, emit);
      }
      if (held) {
        heldTimer?.cancel();
        const h = held;
        held = undefined;
        out(h, emit);
      }
    },
    close() {
      closed = true;
      for (const e of delayed) e.timer.cancel();
      delayed.clear();
      heldTimer?.cancel();
    },
    stats() {
      return { ...n, pending: delayed.size + (held ? 1 : 0), seed };
    },
  };
}

export default impair;
