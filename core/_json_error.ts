/**
 * Finds where a JSON text is broken and says what is wrong there, in words a
 * person editing a pipeline file understands (`JSON.parse` names a position
 * for some errors and only quotes text for others).
 *
 * @module
 */

/** Where and why a JSON text is not valid. */
export interface JsonProblem {
  /** 1-based line. */
  line: number;
  /** 1-based column. */
  column: number;
  /** What is wrong, and usually what to do. */
  problem: string;
}

/** Options of {@linkcode locateJsonError}. */
export interface JsonScanOptions {
  /**
   * Also report a key that appears twice in the object at this path of keys (`["pipelines"]`: the chains of a
   * pipeline file), which `JSON.parse` silently resolves to the last one.
   */
  uniqueKeysAt?: readonly string[];
  /** What such a key is, for the message (default `key`), e.g. `chain name`. */
  what?: string;
}

const MAX_DEPTH = 1000;

class Broken extends Error {
  constructor(readonly at: number, message: string) {
    super(message);
  }
}

/**
 * Scans `text` as JSON (RFC 8259) and returns the first problem, or undefined
 * when it is valid (and, with `opts.uniqueKeysAt`, has no key twice in that object).
 *
 * @example
 * ```ts
 * locateJsonError('{\n  "a": [1, 2,]\n}'); // { line: 2, column: 14, problem: "trailing comma before ]: remove it" }
 * ```
 */
export function locateJsonError(text: string, opts: JsonScanOptions = {}): JsonProblem | undefined {
  let i = 0;
  // The keys of the objects being scanned, outermost first (for uniqueKeysAt).
  const keyPath: string[] = [];
  const unique = opts.uniqueKeysAt;
  const atUnique = () =>
    unique !== undefined && unique.length === keyPath.length && unique.every((k, j) => keyPath[j] === k);
  const lineOf = (at: number) => text.slice(0, at).split("\n").length;
  const ws = () => {
    for (;;) {
      const c = text.charCodeAt(i);
      if (c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d) i++;
      else if (c === 0x2f && (text[i + 1] === "/" || text[i + 1] === "*")) {
        throw new Broken(i, 'comments are not allowed in JSON: remove them (use a "description" field instead)');
      } else return;
    }
  };
  const what = (at: number) => {
    if (at >= text.length) return "the end of the file";
    const c = text[at];
    return c.charCodeAt(0) < 0x20 ? `character ${JSON.stringify(c)}` : `'${c}'`;
  };
  const string = () => {
    const start = i++;
    for (;;) {
      const c = text[i];
      if (c === undefined) throw new Broken(start, 'unterminated string: add the closing "');
      if (c === '"') {
        i++;
        return;
      }
      if (c === "\n") throw new Broken(start, "unterminated string (a line break inside quotes): close the string");
      if (c === "\\") {
        const e = text[i + 1];
        if (e === "u") {
          if (!/^[0-9a-fA-F]{4}$/.test(text.slice(i + 2, i + 6))) {
            throw new Broken(i, "bad \\u escape: expected four hex digits");
          }
          i += 6;
          continue;
        }
        if (e === undefined || !'"\\/bfnrt'.includes(e)) {
          throw new Broken(i, `bad escape \\${e ?? ""} in a string: write \\\\ for a backslash`);
        }
        i += 2;
        continue;
      }
      if (c.charCodeAt(0) < 0x20) throw new Broken(i, "control character in a string: escape it");
      i++;
    }
  };
  const value = (depth: number) => {
    if (depth > MAX_DEPTH) throw new Broken(i, `nested more than ${MAX_DEPTH} levels deep`);
    ws();
    const c = text[i];
    if (c === "{") return object(depth);
    if (c === "[") return array(depth);
    if (c === '"') return string();
    const lit = /^(true|false|null)\b/.exec(text.slice(i, i + 6));
    if (lit) {
      i += lit[1].length;
      return;
    }
    const num = /^-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/.exec(text.slice(i, i + 400));
    if (num && num[0] !== "-") {
      i += num[0].length;
      return;
    }
    if (c === "'") throw new Broken(i, "strings take double quotes in JSON, not single quotes");
    if (c === undefined) throw new Broken(i, "unexpected end of the file: a value is missing");
    throw new Broken(i, `unexpected ${what(i)}: expected a value (string, number, object, array, true, false, null)`);
  };
  const object = (depth: number) => {
    i++;
    ws();
    if (text[i] === "}") {
      i++;
      return;
    }
    const checkUnique = atUnique();
    const seen = new Map<string, number>();
    for (;;) {
      ws();
      if (text[i] !== '"') {
        if (text[i] === "}") throw new Broken(i, "trailing comma before }: remove it");
        throw new Broken(i, `unexpected ${what(i)}: expected a property name in double quotes`);
      }
      const keyAt = i;
      string();
      const key = JSON.parse(text.slice(keyAt, i)) as string;
      if (checkUnique) {
        const first = seen.get(key);
        if (first !== undefined) {
          throw new Broken(
            keyAt,
            `${opts.what ?? "key"} "${key}" appears twice (first at line ${lineOf(first)}): JSON would keep only the ` +
              "last one; rename or remove one",
          );
        }
        seen.set(key, keyAt);
      }
      ws();
      if (text[i] !== ":") throw new Broken(i, `unexpected ${what(i)}: expected ':' after the property name`);
      i++;
      keyPath.push(key);
      value(depth + 1);
      keyPath.pop();
      ws();
      if (text[i] === ",") {
        i++;
        continue;
      }
      if (text[i] === "}") {
        i++;
        return;
      }
      throw new Broken(i, `unexpected ${what(i)}: expected ',' or '}' after a property (a comma is missing?)`);
    }
  };
  const array = (depth: number) => {
    i++;
    ws();
    if (text[i] === "]") {
      i++;
      return;
    }
    for (;;) {
      ws();
      if (text[i] === "]") throw new Broken(i, "trailing comma before ]: remove it");
      value(depth + 1);
      ws();
      if (text[i] === ",") {
        i++;
        continue;
      }
      if (text[i] === "]") {
        i++;
        return;
      }
      throw new Broken(i, `unexpected ${what(i)}: expected ',' or ']' after an array element (a comma is missing?)`);
    }
  };
  try {
    if (text.charCodeAt(0) === 0xfeff) i = 1;
    value(0);
    ws();
    if (i < text.length) throw new Broken(i, `unexpected ${what(i)} after the end of the JSON value`);
    return undefined;
  } catch (e) {
    if (!(e instanceof Broken)) throw e;
    const before = text.slice(0, e.at);
    const line = before.split("\n").length;
    const column = e.at - before.lastIndexOf("\n");
    return { line, column, problem: e.message };
  }
}
