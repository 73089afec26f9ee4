/**
 * Where protocol message traces go (the CLI's `--sip-trace`): stderr, or a
 * file they are appended to. Writes are synchronous and whole, so a trace
 * ends with the last message even when the process is killed.
 *
 * @module
 */

/**
 * A trace destination: `-` for stderr, else a file path (created, appended to).
 *
 * @example
 * ```ts
 * const out = new TraceOutput("/tmp/sip.trace");
 * out.write("----- 2026-11-22T10:00:00.123Z\nUDP message sent ...\n\n");
 * out.close();
 * ```
 */
export class TraceOutput {
  readonly #file?: Deno.FsFile;
  readonly #enc = new TextEncoder();

  /**
   * Opens the destination. Throws when the file cannot be opened, or for an empty name.
   * @param target `-` for stderr, or a file path
   */
  constructor(target: string) {
    if (target === "") throw new Error("expected a file name after =, or the flag alone for stderr");
    if (target !== "-") this.#file = Deno.openSync(target, { append: true, create: true });
  }

  /** Writes `text` entirely. */
  write(text: string): void {
    const data = this.#enc.encode(text);
    const out = this.#file ?? Deno.stderr;
    for (let off = 0; off < data.length;) off += out.writeSync(data.subarray(off));
  }

  /** Closes the file (nothing for stderr). */
  close(): void {
    this.#file?.close();
  }
}
