/**
 * `sequence`: plays source stages one after the other as one stream.
 *
 * @module
 */
import { type Format, formatToString, type Frame, type PcmFrame } from "../../core/frame.ts";
import type { RunContext, SourceStage, StageContext, SubStage } from "../../core/stage.ts";
import { sequence, type SequenceOptions, sequenceSchema } from "./plugins.ts";
import { frameSamples } from "../wav/pcm_stream.ts";
import { mergeFormat, sameFormat, withoutLength } from "./_format.ts";

export { sequence, type SequenceOptions };

/** Options of `sequence` (its zod schema; the plugin's `options`). */
export const sequenceOptions: ReturnType<typeof sequenceSchema> = sequenceSchema();

type Options = SequenceOptions;

/**
 * Creates a `sequence` stage from validated options, building its items through `ctx.buildStage`: the plugin's
 * `create`, loaded when first used. What the stage does is described on {@linkcode sequence}.
 */
export async function createSequence(options: SequenceOptions, ctx: StageContext): Promise<SourceStage> {
  if (!ctx.buildStage) {
    throw new Error(
      "sequence: its items are built through the pipeline (ctx.buildStage); build it with buildPipeline",
    );
  }
  const items: SubStage[] = [];
  try {
    for (let i = 0; i < options.items.length; i++) {
      items.push(await ctx.buildStage(options.items[i] as { use: string }, `.items[${i}]`, "source"));
    }
    return new Sequence(items, itemsFormat(items), options, ctx);
  } catch (e) {
    for (const it of items) await closeQuietly(it);
    throw e;
  }
}

/** The `sequence` plugin definition (the same object as `plugins.ts`'s; module-path plugins load the default export). */
export default sequence;

async function closeQuietly(it: SubStage): Promise<void> {
  try {
    await it.stage.close?.();
  } catch { /* already failing, or closing */ }
}

function describeItem(items: SubStage[], i: number): string {
  return `items[${i}] (${items[i].plugin.name})`;
}

/** The format every item produces; throws naming the first item that differs. */
function itemsFormat(items: SubStage[]): Format {
  let fmt: Format | undefined;
  let from = 0;
  for (let i = 0; i < items.length; i++) {
    const { plugin, stage } = items[i];
    let f: Format | undefined;
    try {
      f = stage.negotiate ? stage.negotiate(undefined) : plugin.produces;
    } catch (e) {
      throw new Error(`sequence: ${describeItem(items, i)}: ${e instanceof Error ? e.message : e}`);
    }
    f ??= plugin.produces;
    if (!f || f.kind !== "pcm") {
      throw new Error(
        `sequence: ${describeItem(items, i)} produces ${
          f ? formatToString(f) : "an unknown format"
        }, but a sequence plays pcm sources`,
      );
    }
    if (!fmt) {
      fmt = withoutLength(f); // a sequence plays several items: the first one's length is not its own
      from = i;
    } else if (!sameFormat(fmt, f)) {
      throw new Error(
        `sequence: ${describeItem(items, i)} produces ${formatToString(f)}, but ${describeItem(items, from)} ` +
          `produces ${formatToString(fmt)}: every item must produce the same format (set the item's rate and ` +
          `channels, or convert the file)`,
      );
    } else {
      fmt = mergeFormat(fmt, f);
    }
  }
  return fmt!;
}

class Sequence implements SourceStage {
  readonly #items: SubStage[];
  readonly #closed: boolean[];
  readonly #fmt: Format;
  readonly #o: Options;
  readonly #ctx: StageContext;
  #current = 0;
  #skip: AbortController | undefined;
  #samples = 0;
  #silenceFrames = 0;

  constructor(items: SubStage[], fmt: Format, o: Options, ctx: StageContext) {
    this.#items = items;
    this.#closed = items.map(() => false);
    this.#fmt = fmt;
    this.#o = o;
    this.#ctx = ctx;
  }

  negotiate(): Format {
    return this.#fmt;
  }

  async run(rc: RunContext): Promise<void> {
    /** Output pts of the next sample. */
    let next = 0;
    let rate = this.#fmt.sampleRate;
    let channels = this.#fmt.channels;
    for (let i = 0; i < this.#items.length && !rc.signal.aborted; i++) {
      this.#current = i;
      const item = this.#items[i];
      const skip = this.#skip = new AbortController();
      const signal = AbortSignal.any([rc.signal, skip.signal]);
      // The item's pts are shifted so that its first sample lands on `next`.
      let shift: number | undefined;
      let end = next;
      const emit = (f: Frame): boolean => {
        if (f.kind !== "pcm") {
          throw new Error(`sequence: ${describeItem(this.#items, i)} emitted a ${f.kind} frame; a sequence plays pcm`);
        }
        if (shift === undefined) shift = next - f.pts;
        const n = f.samples.length / f.channels;
        const pts = f.pts + shift;
        if (pts + n > end) end = pts + n;
        rate = f.sampleRate;
        channels = f.channels;
        this.#samples += n;
        return rc.emit(pts === f.pts ? f : { ...f, pts });
      };
      const itemCtx: RunContext = {
        ...item.ctx,
        signal,
        emit,
        ready: rc.ready,
        fail: rc.fail,
        realtimeSink: rc.realtimeSink,
      };
      try {
        await item.stage.start?.(itemCtx);
        await (item.stage as SourceStage).run(itemCtx);
      } catch (e) {
        // A skipped item may end with an abort error; anything else fails the pipeline.
        if (!(skip.signal.aborted && !rc.signal.aborted)) throw e;
      } finally {
        this.#skip = undefined;
        await this.#closeItem(i);
      }
      next = end;
    }
    this.#current = this.#items.length;
    if (this.#o.then !== "silence" || rc.signal.aborted) return;
    if (!rate || !channels) {
      throw new Error("sequence: cannot emit silence: the items' sample rate and channels are unknown");
    }
    const n = frameSamples(rate, this.#o.frame_ms);
    const frameMs = (n * 1000) / rate;
    const start = rc.clock.now();
    for (let k = 0; !rc.signal.aborted; k++) {
      try {
        await rc.clock.sleepUntil(start + k * frameMs, rc.signal);
      } catch {
        return; // stopped
      }
      const frame: PcmFrame = {
        kind: "pcm",
        samples: new Int16Array(n * channels),
        sampleRate: rate,
        channels,
        pts: next,
        type: "silence",
      };
      next += n;
      this.#silenceFrames++;
      this.#samples += n;
      if (!rc.emit(frame)) await rc.ready();
    }
  }

  async #closeItem(i: number): Promise<void> {
    if (this.#closed[i]) return;
    this.#closed[i] = true;
    try {
      await this.#items[i].stage.close?.();
    } catch (e) {
      this.#ctx.log.warn(
        `sequence: ${describeItem(this.#items, i)} failed to close: ${e instanceof Error ? e.message : e}`,
      );
    }
  }

  async close(): Promise<void> {
    for (let i = 0; i < this.#items.length; i++) await this.#closeItem(i);
  }

  control(command: string): unknown {
    if (command !== "skip") throw new Error(`sequence: unknown command "${command}" (commands: skip)`);
    if (!this.#skip) return false;
    this.#skip.abort(new DOMException("sequence item skipped", "AbortError"));
    return true;
  }

  stats(): Record<string, unknown> {
    return {
      item: this.#current,
      samples: this.#samples,
      silence_frames: this.#silenceFrames,
      items: this.#items.map((it) => {
        try {
          return it.stage.stats?.() ?? {};
        } catch {
          return {};
        }
      }),
    };
  }
}
