/**
 * The common case of command-line parsing without `node:util`: loading `node:util` (for `parseArgs`) costs
 * start-up time in every CLI run (its Node compatibility module and what it pulls in), for a handful of flags.
 * {@linkcode parseSimpleArgs} parses argument lists made only of plain forms (`--name`, `--name=value`,
 * `--name value`, `-x`, `-x value`, positionals) exactly as `parseArgs` does in strict mode, and declines
 * (returns undefined) anything else, so the caller hands that to `parseArgs` itself: an unknown or misspelt
 * option, a missing value, a value that starts with `-`, `--`, grouped short flags, a boolean given a value.
 * Every error message therefore still comes from `parseArgs`. Internal to voxpipe (not exported from mod.ts).
 *
 * @module
 */

/** One option as `parseArgs` declares it (the subset voxpipe uses). */
export interface SimpleOption {
  /** `string` takes a value, `boolean` does not. */
  type: "string" | "boolean";
  /** One-letter alias. */
  short?: string;
  /** Collect every occurrence into an array. */
  multiple?: boolean;
}

/** What `parseArgs` returns, for the options and positionals of {@linkcode parseSimpleArgs}. */
export interface SimpleParsed {
  /** Option values by name: a string or boolean, or an array of them for `multiple` options. */
  values: Record<string, string | boolean | (string | boolean)[]>;
  /** Positional arguments in order. */
  positionals: string[];
}

/**
 * Parses `args` as `parseArgs({ args, options, allowPositionals, strict: true })` would, when every argument is in
 * a plain form (see the module documentation); returns undefined otherwise, and then the caller must use
 * `parseArgs` (which parses it or reports the error).
 *
 * @example
 * ```ts
 * parseSimpleArgs(["--pipeline", "p.json", "-s", "a=1"], { pipeline: { type: "string" }, set: { type: "string", short: "s", multiple: true } }, false);
 * // { values: { pipeline: "p.json", set: ["a=1"] }, positionals: [] }
 * ```
 */
export function parseSimpleArgs(
  args: readonly string[],
  options: Readonly<Record<string, Readonly<SimpleOption>>>,
  allowPositionals: boolean,
): SimpleParsed | undefined {
  // Like parseArgs: a null-prototype object, so option names never meet Object.prototype.
  const values = Object.create(null) as SimpleParsed["values"];
  const positionals: string[] = [];
  const store = (name: string, opt: Readonly<SimpleOption>, value: string | boolean) => {
    if (opt.multiple) {
      const list = values[name];
      if (Array.isArray(list)) list.push(value);
      else values[name] = [value];
    } else {
      values[name] = value;
    }
  };
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    let name: string | undefined;
    let inline: string | undefined;
    if (a.startsWith("--")) {
      if (a.length === 2) return undefined; // "--": positionals follow
      const eq = a.indexOf("=");
      name = eq < 0 ? a.slice(2) : a.slice(2, eq);
      if (eq >= 0) inline = a.slice(eq + 1);
      if (!Object.hasOwn(options, name)) return undefined;
    } else if (a.startsWith("-") && a.length > 1) {
      if (a.length !== 2) return undefined; // grouped short flags, or -xVALUE
      name = Object.keys(options).find((k) => options[k].short === a[1]);
      if (name === undefined) return undefined;
    } else {
      if (!allowPositionals) return undefined;
      positionals.push(a);
      continue;
    }
    const opt = options[name];
    if (opt.type === "boolean") {
      if (inline !== undefined) return undefined; // parseArgs refuses a value for a boolean
      store(name, opt, true);
    } else if (inline !== undefined) {
      store(name, opt, inline);
    } else {
      const next = args[i + 1];
      if (next === undefined || next.startsWith("-")) return undefined; // missing, or ambiguous
      store(name, opt, next);
      i++;
    }
  }
  return { values, positionals };
}
