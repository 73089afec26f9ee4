/**
 * Adapters between stages and Web Streams, for composing pipelines with the
 * wider ecosystem at their edges (inside a chain, frames move by synchronous
 * calls; see DESIGN).
 *
 * @module
 */
import type { Format, Frame } from "./frame.ts";
import type { RunContext, SinkStage, SourceStage } from "./stage.ts";

/**
 * A source stage that reads frames from a `ReadableStream`.
 *
 * @example
 * ```ts
 * const src = readableSource(someStreamOfFrames, { kind: "pcm", sampleRate: 8000, channels: 1 });
 * ```
 */
export function readableSource(stream: ReadableStream<Frame>, format: Format): SourceStage {
  return {
    negotiate: () => format,
    async run(ctx: RunContext) {
      const reader = stream.getReader();
      const onAbort = () => reader.cancel(ctx.signal.reason).catch(() => {});
      ctx.signal.addEventListener("abort", onAbort, { once: true });
      try {
        while (!ctx.signal.aborted) {
          const { value, done } = await reader.read();
          if (done) break;
          if (!ctx.emit(value)) await ctx.ready();
        }
      } finally {
        ctx.signal.removeEventListener("abort", onAbort);
        reader.releaseLock();
      }
    },
  };
}

/**
 * A sink stage that writes frames into a `WritableStream`, honouring its
 * backpressure (desiredSize) and closing it at end of stream.
 *
 * @example
 * ```ts
 * const frames: Frame[] = [];
 * const sink = writableSink(new WritableStream({ write: (f) => { frames.push(f); } }));
 * ```
 */
export function writableSink(stream: WritableStream<Frame>): SinkStage {
  const writer = stream.getWriter();
  let pending: Promise<void> = Promise.resolve();
  let failure: unknown;
  return {
    write(frame) {
      if (failure) throw failure;
      pending = writer.write(frame).catch((e) => {
        failure = e;
      });
      return (writer.desiredSize ?? 1) > 0;
    },
    drained: () => writer.ready,
    async end() {
      await pending;
      if (failure) throw failure;
      await writer.close();
    },
  };
}

/**
 * A sink stage plus the `ReadableStream` its frames come out of, for consuming
 * a pipeline's output with `for await` or `pipeTo`.
 *
 * @example
 * ```ts
 * const { sink, readable } = streamSink();
 * for await (const frame of readable) console.log(frame.kind);
 * ```
 */
export function streamSink(highWaterMark = 16): { sink: SinkStage; readable: ReadableStream<Frame> } {
  const { readable, writable } = new TransformStream<Frame, Frame>(undefined, { highWaterMark }, { highWaterMark });
  return { sink: writableSink(writable), readable };
}
