/**
 * `mixer`: mixes the frames of several session buses into one stream.
 *
 * @module
 */
import type { Bus, BusSubscription } from "../../core/bus.ts";
import type { Timer } from "../../core/clock.ts";
import { type Format, formatToString, type Frame, type PcmFrame } from "../../core/frame.ts";
import { FormatError, type RunContext, type SourceStage, type StageContext } from "../../core/stage.ts";
import { mixer, type MixerOptions, mixerSchema } from "./plugins.ts";
import { frameSamples, yieldToEventLoop } from "../wav/pcm_stream.ts";

export { mixer, type MixerOptions };

/** Options of `mixer` (its zod schema; the plugin's `options`). */
export const mixerOptions: ReturnType<typeof mixerSchema> = mixerSchema();

type Options = MixerOptions;

/** Frames the unclocked loop mixes between two yields to the event loop. */
const YIELD_EVERY = 32;

/** One input: its bus, its subscription, and the frames taken from it not yet mixed (a small ring). */
class Input {
  readonly bus: Bus;
  readonly sub: BusSubscription;
  ring: (PcmFrame | undefined)[] = new Array(8);
  head = 0;
  count = 0;
  /** Samples of the head frame already mixed. */
  off = 0;
  /** Samples held (all frames in the ring, less `off`). */
  avail = 0;
  /** The bus's stream ended and nothing is left in the subscription. */
  done = false;
  /** Frames the mixer emitted while this input was running but had less than a frame's worth. */
  underruns = 0;
  /** Samples taken from it. */
  samples = 0;

  constructor(bus: Bus, highWater: number) {
    this.bus = bus;
    this.sub = bus.subscribe(highWater);
  }

  push(f: PcmFrame): void {
    const cap = this.ring.length;
    if (this.count === cap) {
      const grown: (PcmFrame | undefined)[] = new Array(cap * 2);
      for (let k = 0; k < cap; k++) grown[k] = this.ring[(this.head + k) % cap];
      this.ring = grown;
      this.head = 0;
    }
    this.ring[(this.head + this.count) % this.ring.length] = f;
    this.count++;
    this.avail += f.samples.length;
  }
}

/**
 * Creates a `mixer` stage from validated options: the plugin's `create`, loaded when first used. What the stage does
 * is described on {@linkcode mixer}. Throws when `until: "stopped"` is not clocked or a bus is listed twice.
 */
export function createMixer(options: MixerOptions, ctx: StageContext): SourceStage {
  if (options.until === "stopped" && !options.clocked) {
    throw new Error(
      'mixer: until "stopped" needs clocked: true (an unclocked mixer would emit silence as fast as it can)',
    );
  }
  const names = new Set<string>();
  for (const b of options.buses) {
    if (names.has(b)) throw new Error(`mixer: bus "${b}" is listed twice in "buses"; list each bus once`);
    names.add(b);
  }
  return new Mixer(options.buses.map((b) => new Input(ctx.session.bus(b), options.high_water)), options);
}

/** The `mixer` plugin definition (the same object as `plugins.ts`'s; module-path plugins load the default export). */
export default mixer;

/** What {@linkcode Mixer.mix} returns when every input has ended and nothing is left. */
const END = null;

class Mixer implements SourceStage {
  readonly #in: Input[];
  readonly #o: Options;
  /** Samples per channel per output frame. */
  readonly #n: number;
  /** Output channels. */
  readonly #ch: number;
  /** Sum mode's accumulator, one output frame long. */
  readonly #acc: Int32Array;
  #pts = 0;
  #frames = 0;

  constructor(inputs: Input[], o: Options) {
    this.#in = inputs;
    this.#o = o;
    this.#n = frameSamples(o.rate, o.ptime);
    this.#ch = o.mode === "sum" ? 1 : inputs.length;
    this.#acc = new Int32Array(o.mode === "sum" ? this.#n : 0);
  }

  /** Throws when a bus's known format is not what the mixer takes. */
  #checkBuses(): void {
    for (let i = 0; i < this.#in.length; i++) {
      const f = this.#in[i].bus.format;
      if (f) this.#checkFormat(i, f, "carries");
    }
  }

  #checkFormat(i: number, f: Format, verb: string): void {
    const rate = this.#o.rate;
    if (f.kind === "pcm" && (f.sampleRate === undefined || f.sampleRate === rate) && (f.channels ?? 1) === 1) {
      return;
    }
    const name = this.#in[i].bus.name;
    const fix = f.kind === "pcm"
      ? `insert {"use": "resampler", "rate": ${rate}, "channels": 1}`
      : `insert a decoder (e.g. {"use": "g711-decoder"}) and {"use": "resampler", "rate": ${rate}, "channels": 1}`;
    throw new FormatError(
      `input ${i} (bus "${name}") ${verb} ${formatToString(f)}, but the mixer takes pcm ${rate} Hz mono: ` +
        `${fix} before the bus-sink of "${name}"`,
    );
  }

  negotiate(): Format {
    this.#checkBuses();
    return { kind: "pcm", sampleRate: this.#o.rate, channels: this.#ch };
  }

  start(rc: RunContext): void {
    // Every chain of the session is built by now: the formats of buses published later are known.
    this.#checkBuses();
    for (const inp of this.#in) {
      if (inp.bus.publishers === 0 && !inp.bus.ended) {
        // Live (clocked), such an input is silence until something publishes on it (a bridge may come later).
        const line = `mixer: bus "${inp.bus.name}" has no publisher yet (no bus-sink or bridge feeds it); waiting`;
        if (this.#o.clocked) rc.log.debug(line);
        else rc.log.warn(line);
      }
    }
  }

  /** Moves frames from the subscription into the ring until it holds `want` samples; never waits. */
  #pull(i: number, want: number): void {
    const inp = this.#in[i];
    while (inp.avail < want) {
      const f = inp.sub.poll();
      if (!f) {
        if (inp.bus.ended) inp.done = true;
        return;
      }
      this.#accept(i, f);
    }
  }

  #accept(i: number, f: Frame): void {
    if (f.kind !== "pcm" || f.sampleRate !== this.#o.rate || f.channels !== 1) {
      const fmt: Format = f.kind === "pcm" ? { kind: "pcm", sampleRate: f.sampleRate, channels: f.channels } : {
        kind: f.kind,
      };
      this.#checkFormat(i, fmt, "sent a frame of");
    }
    this.#in[i].push(f as PcmFrame);
  }

  /** Copies up to `len` samples of input `i` into the output (channels) or the accumulator (sum). */
  #take(i: number, len: number, out: Int16Array): number {
    const inp = this.#in[i];
    const sum = this.#o.mode === "sum";
    const acc = this.#acc;
    const ch = this.#ch;
    let filled = 0;
    while (filled < len && inp.count > 0) {
      const f = inp.ring[inp.head]!;
      const s = f.samples;
      let off = inp.off;
      const k = Math.min(len - filled, s.length - off);
      if (sum) {
        for (let j = 0; j < k; j++) acc[filled + j] += s[off + j];
      } else {
        for (let j = 0, o = filled * ch + i; j < k; j++, o += ch) out[o] = s[off + j];
      }
      filled += k;
      off += k;
      if (off >= s.length) {
        inp.ring[inp.head] = undefined;
        inp.head = (inp.head + 1) % inp.ring.length;
        inp.count--;
        off = 0;
      }
      inp.off = off;
    }
    inp.avail -= filled;
    inp.samples += filled;
    return filled;
  }

  /** Mixes one frame from what the inputs hold, or returns END when every input ended and nothing is left. */
  #mix(): PcmFrame | typeof END {
    const n = this.#n;
    let allDone = true;
    let most = 0;
    for (const inp of this.#in) {
      if (!inp.done) allDone = false;
      if (inp.avail > most) most = inp.avail;
    }
    const len = allDone && this.#o.until !== "stopped" ? Math.min(n, most) : n;
    if (len === 0) return END;
    const ch = this.#ch;
    const out = new Int16Array(len * ch);
    const sum = this.#o.mode === "sum";
    if (sum) this.#acc.fill(0, 0, len);
    for (let i = 0; i < this.#in.length; i++) {
      const inp = this.#in[i];
      if (!inp.done && inp.avail < len) {
        inp.underruns++;
        continue;
      }
      this.#take(i, len, out);
    }
    if (sum) {
      const acc = this.#acc;
      for (let j = 0; j < len; j++) {
        const v = acc[j];
        out[j] = v > 32767 ? 32767 : v < -32768 ? -32768 : v;
      }
    }
    const frame: PcmFrame = { kind: "pcm", samples: out, sampleRate: this.#o.rate, channels: ch, pts: this.#pts };
    this.#pts += len;
    this.#frames++;
    return frame;
  }

  run(rc: RunContext): Promise<void> {
    return this.#o.clocked ? this.#runClocked(rc) : this.#runOffline(rc);
  }

  /** One frame every ptime on the clock: frame k is due at start + k × frame duration. */
  #runClocked(rc: RunContext): Promise<void> {
    const { promise, resolve, reject } = Promise.withResolvers<void>();
    const clock = rc.clock;
    const start = clock.now();
    const frameMs = (this.#n * 1000) / this.#o.rate;
    let k = 0;
    let timer: Timer | undefined;
    let finished = false;
    const finish = (error?: unknown) => {
      if (finished) return;
      finished = true;
      timer?.cancel();
      rc.signal.removeEventListener("abort", onAbort);
      if (error === undefined) resolve();
      else reject(error);
    };
    const onAbort = () => finish();
    const schedule = () => {
      if (rc.signal.aborted) return finish();
      timer = clock.at(start + k * frameMs, tick);
    };
    const tick = () => {
      timer = undefined;
      if (rc.signal.aborted) return finish();
      let frame: PcmFrame | typeof END;
      try {
        for (let i = 0; i < this.#in.length; i++) if (!this.#in[i].done) this.#pull(i, this.#n);
        frame = this.#mix();
      } catch (e) {
        return finish(e);
      }
      if (frame === END) return finish();
      k++;
      if (rc.emit(frame)) schedule();
      else rc.ready().then(schedule, finish);
    };
    rc.signal.addEventListener("abort", onAbort, { once: true });
    schedule();
    return promise;
  }

  /** As fast as the inputs: a frame once every input still running holds a frame's worth. */
  async #runOffline(rc: RunContext): Promise<void> {
    const n = this.#n;
    const ins = this.#in;
    // A stop wakes inputs waiting in next() (closed subscriptions resolve undefined).
    const onAbort = () => {
      for (const inp of ins) inp.sub.close();
    };
    rc.signal.addEventListener("abort", onAbort, { once: true });
    let sinceYield = 0;
    try {
      while (!rc.signal.aborted) {
        for (let i = 0; i < ins.length; i++) {
          const inp = ins[i];
          if (inp.done) continue;
          this.#pull(i, n);
          while (!inp.done && inp.avail < n) {
            const f = await inp.sub.next();
            if (rc.signal.aborted) return;
            if (f) this.#accept(i, f);
            else inp.done = true;
          }
        }
        const frame = this.#mix();
        if (frame === END) return;
        if (!rc.emit(frame)) {
          await rc.ready();
          sinceYield = 0;
        } else if (++sinceYield >= YIELD_EVERY) {
          sinceYield = 0;
          await yieldToEventLoop();
        }
      }
    } finally {
      rc.signal.removeEventListener("abort", onAbort);
    }
  }

  close(): void {
    for (const inp of this.#in) inp.sub.close();
  }

  stats(): Record<string, unknown> {
    return {
      frames: this.#frames,
      inputs: this.#in.map((inp) => ({
        bus: inp.bus.name,
        samples: inp.samples,
        underruns: inp.underruns,
        queued: inp.sub.queued,
        dropped: inp.sub.dropped,
      })),
    };
  }
}
