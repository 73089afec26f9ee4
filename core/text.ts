/**
 * Untrusted text (from the network, a file) quoted in error reasons and log lines.
 *
 * @module
 */

/**
 * A short, printable, single-line rendering of untrusted text for error reasons
 * and log lines: at most `max` characters, control characters and backslashes
 * written as `\xHH`, an ellipsis when cut. Never contains CR or LF.
 *
 * @example
 * ```ts
 * excerpt("abc\r\nX-Injected: 1", 8); // "abc\\x0d\\x0aX-In..."
 * ```
 */
export function excerpt(s: string, max = 40): string {
  let out = "";
  const n = Math.min(s.length, max);
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i);
    if (c < 32 || c === 127 || c === 0x5c || (c >= 0x80 && c < 0xa0) || c === 0x2028 || c === 0x2029) {
      out += "\\x" + (c < 16 ? "0" : "") + c.toString(16);
    } else out += s[i];
  }
  return s.length > max ? out + "..." : out;
}
