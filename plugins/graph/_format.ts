/**
 * Format helpers shared by the graph stages.
 *
 * @module
 */
import { type Format, formatMismatch } from "../../core/frame.ts";

/** True when two formats can be the same stream: same kind, and equal in every field both know. */
export function sameFormat(a: Format, b: Format): boolean {
  return formatMismatch(a, b) === undefined;
}

/**
 * The fields of `f` that negotiation compares, without its length (`frames`): what a bus or a sequence carries on.
 */
export function withoutLength(f: Format): Format {
  return mergeFormat(f, f);
}

/**
 * `a` completed with the fields only `b` knows. The result has no `frames`: a stream's length does not survive a
 * bus or a sequence (publishers and items come and go, and a sequence plays several).
 */
export function mergeFormat(a: Format, b: Format): Format {
  const out: Format = { kind: a.kind };
  const sampleRate = a.sampleRate ?? b.sampleRate, channels = a.channels ?? b.channels;
  const codec = a.codec ?? b.codec, clockRate = a.clockRate ?? b.clockRate;
  if (sampleRate !== undefined) out.sampleRate = sampleRate;
  if (channels !== undefined) out.channels = channels;
  if (codec !== undefined) out.codec = codec;
  if (clockRate !== undefined) out.clockRate = clockRate;
  return out;
}
