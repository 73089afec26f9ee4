/**
 * A worker thread of {@linkcode BlockResampler} (`blocks.ts`): takes submitted blocks from the shared slots, oldest
 * first, resamples each with a fresh resampler and writes the kept output into the slot. Started with one message
 * (`BlockWorkerInit`); leaves when told to quit.
 *
 * @module
 */
/// <reference lib="deno.worker" />
import {
  type BlockWorkerInit,
  controlWords,
  R_COUNT,
  R_IN,
  R_LAST,
  R_MADE,
  R_SEQ,
  R_SKIP,
  R_STATE,
  recordIndex as rec,
  resampleBlock,
  S_DONE,
  S_FAILED,
  S_SUBMITTED,
  S_WORKING,
  W_QUIT,
  W_WORK,
} from "./blocks.ts";
import { OFFLINE_PASS_FRAMES, PolyphaseResampler } from "./polyphase.ts";

/** Runs the worker's loop until told to quit. */
function run(init: BlockWorkerInit): void {
  const { sab, slots } = init;
  const ctrl = controlWords(sab, slots.length);
  const views = slots.map((s) => ({
    input: new Int16Array(sab, s.input, s.inFrames * init.inChannels),
    output: new Int16Array(sab, s.output, s.outFrames * init.outChannels),
  }));
  const r = new PolyphaseResampler({
    inRate: init.inRate,
    outRate: init.outRate,
    inChannels: init.inChannels,
    outChannels: init.outChannels,
    filter: init.filter,
    // Copied into the slot at once: one array of its own, overwritten block after block, makes no garbage.
    reuseOutput: true,
    passFrames: OFFLINE_PASS_FRAMES,
  });
  for (;;) {
    const seen = Atomics.load(ctrl, W_WORK);
    if (Atomics.load(ctrl, W_QUIT) === 1) return;
    // The oldest submitted block, taken from the stream's thread (and the other workers) by compare-and-swap.
    let slot = -1;
    for (let i = 0; i < slots.length; i++) {
      if (Atomics.load(ctrl, rec(i, R_STATE)) !== S_SUBMITTED) continue;
      if (slot < 0 || ctrl[rec(i, R_SEQ)] < ctrl[rec(slot, R_SEQ)]) slot = i;
    }
    if (slot < 0) {
      Atomics.wait(ctrl, W_WORK, seen);
      continue;
    }
    const st = rec(slot, R_STATE);
    if (Atomics.compareExchange(ctrl, st, S_SUBMITTED, S_WORKING) !== S_SUBMITTED) continue;
    let state = S_DONE;
    try {
      const v = views[slot];
      const input = v.input.subarray(0, ctrl[rec(slot, R_IN)] * init.inChannels);
      ctrl[rec(slot, R_MADE)] = resampleBlock(
        r,
        input,
        ctrl[rec(slot, R_SKIP)],
        ctrl[rec(slot, R_COUNT)],
        ctrl[rec(slot, R_LAST)] === 1,
        v.output,
      );
    } catch {
      state = S_FAILED;
    }
    Atomics.store(ctrl, st, state);
    Atomics.notify(ctrl, st);
  }
}

self.onmessage = (e: MessageEvent<BlockWorkerInit>) => {
  self.onmessage = null;
  run(e.data);
  self.close();
};
