/**
 * A media worker of `bench/pacing.ts --net fast --workers K`: its own
 * `MediaLoop` paces the streams it is given (sockets, chains and timers all on
 * this worker's thread). Message in: `{ ssrcs, count, port, file, gate, loopOptions }`; it posts
 * `{ ready: true }` once its pipelines are built, runs them on `"go"`, and
 * posts the sinks' summary (`FeedResult`) with the loop's counters.
 *
 * @module
 */
import { MediaLoop, type MediaLoopOptions } from "../core/net/media_loop.ts";
import { buildStreams } from "./_rtp_feed.ts";

const self = globalThis as unknown as {
  postMessage(m: unknown): void;
  onmessage: ((e: MessageEvent) => void) | null;
};

let run: (() => Promise<unknown>) | undefined;
let loop: MediaLoop | undefined;
self.onmessage = async (e: MessageEvent) => {
  if (e.data === "go") {
    const result = await run!();
    const stats = loop!.stats();
    await loop!.close();
    self.postMessage({ result, stats });
    return;
  }
  const { ssrcs, count, port, file, gate, loopOptions } = e.data as {
    ssrcs: number[];
    count: number;
    port: number;
    file?: string;
    gate?: boolean;
    loopOptions?: MediaLoopOptions;
  };
  loop = new MediaLoop(loopOptions);
  run = await buildStreams({ ssrcs, count, port, clock: loop.clock, net: loop.network, file, gate });
  self.postMessage({ ready: true });
};
