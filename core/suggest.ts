/**
 * "Did you mean": the known names closest to a misspelt one, for error
 * messages (unknown plugins, options, flags).
 *
 * @module
 */

/**
 * The edit distance between `a` and `b`: how many single-character insertions,
 * deletions and substitutions turn one into the other.
 *
 * @example
 * ```ts
 * levenshtein("ptme", "ptime"); // 1
 * ```
 */
export function levenshtein(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      row[j] = Math.min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = row;
  }
  return prev[b.length];
}

/**
 * The edit distance between `a` and `b` that typing mistakes make: like {@linkcode levenshtein}, but swapping two
 * adjacent characters (`prot` for `port`) counts as one edit (the optimal string alignment distance).
 *
 * @example
 * ```ts
 * editDistance("prot", "port"); // 1 (levenshtein: 2)
 * ```
 */
export function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => [i]);
  for (let j = 1; j <= b.length; j++) d[0][j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[a.length][b.length];
}

/**
 * The names in `known` that `name` is probably a misspelling of, closest first:
 * those within an edit distance ({@linkcode editDistance}) of about a third of
 * the name (at least 1, at most 3, case ignored), and those that contain it or that it contains
 * (`jitter` → `jitter-buffer`).
 *
 * @example
 * ```ts
 * closestNames("wav-snk", ["wav-sink", "wav-source", "null-sink"]); // ["wav-sink"]
 * ```
 */
export function closestNames(name: string, known: Iterable<string>): string[] {
  const want = name.toLowerCase();
  if (!want) return [];
  const limit = Math.min(3, Math.max(1, Math.round(want.length / 3)));
  const scored: { name: string; d: number }[] = [];
  for (const k of new Set(known)) {
    const lk = k.toLowerCase();
    if (lk === want) return [k];
    const d = editDistance(want, lk);
    const contains = want.length >= 3 && (lk.includes(want) || want.includes(lk));
    if (d <= limit || contains) scored.push({ name: k, d });
  }
  return scored.sort((a, b) => a.d - b.d || a.name.localeCompare(b.name)).map((s) => s.name);
}

/**
 * ` (did you mean "a" or "b"?)` for the names closest to `name`, or `""` when
 * none is close. `quote` wraps each name (default: double quotes).
 *
 * @example
 * ```ts
 * `unknown option "ptme"${didYouMean("ptme", ["ptime", "payload_type"])}`; // 'unknown option "ptme" (did you mean "ptime"?)'
 * ```
 */
export function didYouMean(name: string, known: Iterable<string>, quote = (s: string) => `"${s}"`): string {
  const close = closestNames(name, known).slice(0, 3);
  return close.length ? ` (did you mean ${close.map(quote).join(" or ")}?)` : "";
}
