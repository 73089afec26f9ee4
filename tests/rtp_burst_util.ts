/**
 * A test source stage shared by the fast-network tests: `rtp-burst` emits `count` RTP packets (160-byte PCMU
 * payloads, sequence i, timestamp i × 160, payload bytes i & 0xff), as fast as the sink takes them.
 *
 * @module
 */
import { z } from "zod";
import { definePlugin } from "../core/stage.ts";
import type { RtpFrame } from "../core/frame.ts";

/** A source of `count` RTP packets (160-byte PCMU payloads), as fast as the sink takes them. */
export const rtpBurst = definePlugin({
  name: "rtp-burst",
  kind: "source",
  description: "test RTP packets",
  produces: { kind: "rtp", codec: "PCMU", clockRate: 8000 },
  options: z.object({ count: z.number().int() }),
  create: (o) => ({
    async run(ctx) {
      for (let i = 0; i < o.count && !ctx.signal.aborted; i++) {
        const f: RtpFrame = {
          kind: "rtp",
          payloadType: 0,
          sequence: i,
          timestamp: i * 160,
          ssrc: 0x5eed,
          marker: i === 0,
          payload: new Uint8Array(160).fill(i & 0xff),
          codec: "PCMU",
          clockRate: 8000,
        };
        if (!ctx.emit(f)) await ctx.ready();
      }
    },
  }),
});
