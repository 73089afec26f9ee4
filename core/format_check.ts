/**
 * One format check for every stage: a stage declares the formats it accepts once
 * (`const ACCEPTS: Format[]`), uses that list as its definition's `accepts`, and
 * checks its input against the same list in `negotiate` ({@linkcode expectFormat})
 * and, when a frame breaks the contract at run time, in `process`
 * ({@linkcode frameRefusal}). Refusals name the stage, both formats and what to
 * change: the stage's own advice, else the stage the registry's plugins suggest
 * inserting (`ctx.suggestBridge`), else a generic hint.
 *
 * @example In a transform stage
 * ```ts
 * const ACCEPTS: Format[] = [{ kind: "pcm", sampleRate: 8000, channels: 1 }];
 * // create(options, ctx):
 * const check = { stage: "my-stage", ctx };
 * // negotiate(input):
 * expectFormat(input, ACCEPTS, check);
 * // process(frame, emit):
 * if (frame.kind !== "pcm" || frame.sampleRate !== 8000 || frame.channels !== 1) throw frameRefusal(frame, ACCEPTS, check);
 * ```
 *
 * @module
 */
import { type Format, formatMismatch, formatToString, type Frame } from "./frame.ts";
import type { StageConfig } from "./stage.ts";
import { FormatError, type StageContext } from "./stage.ts";

/** Who checks, for the messages of {@linkcode expectFormat}. */
export interface FormatCheck {
  /** Stage name used in messages, e.g. `g711-encoder`. */
  stage: string;
  /** The stage's context: its `suggestBridge` names a stage to insert (absent: no suggestion). */
  ctx?: Pick<StageContext, "suggestBridge">;
  /**
   * Stage-specific advice for an input it refuses (`field` is the first field that does not match the closest
   * accepted format); it takes precedence over a suggested bridge. Return undefined to let those speak.
   */
  advice?(input: Format, field: keyof Format): string | undefined;
}

/**
 * Renders accepted formats for people, leaving out what is open: `pcm`, `pcm 8000 Hz mono`, `encoded 8000 Hz`,
 * several joined with "or".
 *
 * @example
 * ```ts
 * describeFormats([{ kind: "rtp" }, { kind: "packet" }]); // "rtp or packet"
 * ```
 */
export function describeFormats(accepted: readonly Format[]): string {
  return accepted.map((f) => {
    const parts: string[] = [f.kind];
    if (f.codec) parts.push(f.codec);
    if (f.kind === "pcm") {
      if (f.sampleRate) parts.push(`${f.sampleRate} Hz`);
      if (f.channels) parts.push(f.channels === 1 ? "mono" : f.channels === 2 ? "stereo" : `${f.channels} ch`);
    } else if (f.clockRate) {
      parts.push(`${f.clockRate} Hz`);
    }
    return parts.join(" ");
  }).join(" or ");
}

/**
 * A stage config as it is written in a pipeline file, for messages: `{"use": "resampler", "rate": 8000}`.
 *
 * @example
 * ```ts
 * stageConfigText({ use: "resampler", rate: 8000, channels: 1 }); // '{"use": "resampler", "rate": 8000, "channels": 1}'
 * ```
 */
export function stageConfigText(config: StageConfig): string {
  return `{${Object.entries(config).map(([k, v]) => `${JSON.stringify(k)}: ${JSON.stringify(v)}`).join(", ")}}`;
}

/**
 * The format of one frame (every field it carries).
 *
 * @example
 * ```ts
 * formatOf({ kind: "pcm", samples: new Int16Array(2), sampleRate: 16000, channels: 2, pts: 0 });
 * // { kind: "pcm", sampleRate: 16000, channels: 2 }
 * ```
 */
export function formatOf(frame: Frame): Format {
  switch (frame.kind) {
    case "pcm":
      return { kind: "pcm", sampleRate: frame.sampleRate, channels: frame.channels };
    case "encoded":
      return { kind: "encoded", codec: frame.codec, clockRate: frame.clockRate };
    case "rtp":
      return { kind: "rtp", codec: frame.codec, clockRate: frame.clockRate };
    default:
      return { kind: frame.kind };
  }
}

function hint(input: Format, want: Format, field: keyof Format, check: FormatCheck): string {
  const advice = check.advice?.(input, field);
  if (advice) return advice;
  const bridge = check.ctx?.suggestBridge(input, want);
  if (bridge) return `insert ${stageConfigText(bridge)} before it`;
  switch (field) {
    case "kind":
      return `connect it after a stage that produces ${describeFormats([want])}`;
    case "codec":
      return `it takes ${want.codec} only: make the upstream stage produce ${want.codec}`;
    default:
      return `make the upstream stage produce ${describeFormats([want])}`;
  }
}

/**
 * Why `input` does not fit any of `accepted`, as a {@linkcode FormatError} that
 * names the stage, both formats and what to change; undefined when it fits. A
 * field left undefined on either side matches anything (see `formatMismatch`).
 *
 * @example
 * ```ts
 * refuseFormat({ kind: "pcm", sampleRate: 8000, channels: 1 }, [{ kind: "encoded" }], "rtp-packetizer")?.message;
 * // "rtp-packetizer expects encoded, but gets pcm 8000 Hz mono: connect it after a stage that produces encoded"
 * ```
 */
export function refuseFormat(
  input: Format | undefined,
  accepted: readonly Format[],
  check: FormatCheck | string,
): FormatError | undefined {
  const c: FormatCheck = typeof check === "string" ? { stage: check } : check;
  if (!input) {
    return new FormatError(
      `${c.stage} cannot be a source: put it after a stage that produces ${describeFormats(accepted)}`,
    );
  }
  if (accepted.length === 0) return undefined;
  let best = -1;
  let field: keyof Format | undefined;
  for (let i = 0; i < accepted.length; i++) {
    const m = formatMismatch(input, accepted[i]);
    if (m === undefined) return undefined;
    if (best < 0 && accepted[i].kind === input.kind) {
      best = i;
      field = m;
    }
  }
  if (best < 0) {
    best = 0;
    field = "kind";
  }
  const want = accepted[best];
  return new FormatError(
    `${c.stage} expects ${describeFormats(accepted)}, but gets ${formatToString(input)}: ${
      hint(input, want, field!, c)
    }`,
  );
}

/**
 * Checks a stage's input format in `negotiate`: throws the {@linkcode FormatError}
 * of {@linkcode refuseFormat} when it fits none of `accepted`, else returns it.
 *
 * @example
 * ```ts
 * negotiate(input) {
 *   const fmt = expectFormat(input, ACCEPTS, { stage: "g711-encoder", ctx });
 *   return { kind: "encoded", codec, clockRate: 8000 };
 * }
 * ```
 */
export function expectFormat(
  input: Format | undefined,
  accepted: readonly Format[],
  check: FormatCheck | string,
): Format {
  const refusal = refuseFormat(input, accepted, check);
  if (refusal) throw refusal;
  return input!;
}

/**
 * The error for a frame a stage cannot take at run time (upstream broke the
 * negotiated contract): the same message as {@linkcode refuseFormat} for the
 * frame's format.
 *
 * @example
 * ```ts
 * if (frame.kind !== "pcm") throw frameRefusal(frame, ACCEPTS, check);
 * ```
 */
export function frameRefusal(frame: Frame, accepted: readonly Format[], check: FormatCheck | string): FormatError {
  const fmt = formatOf(frame);
  return refuseFormat(fmt, accepted, check) ??
    new FormatError(
      `${typeof check === "string" ? check : check.stage} cannot take a frame of ${formatToString(fmt)} here`,
    );
}
