/**
 * `--help` tells the truth: every flag it lists exists, and every flag that
 * exists is listed (with its short form).
 */
import { assert, assertEquals } from "./assert.ts";
import { CLI_OPTIONS, main } from "../mod.ts";

/** Runs main() with console.log and console.error captured. */
async function run(args: string[]): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const log = console.log;
  const error = console.error;
  console.log = (...a: unknown[]) => out.push(a.join(" "));
  console.error = (...a: unknown[]) => err.push(a.join(" "));
  try {
    const code = await main(args);
    return { code, out: out.join("\n"), err: err.join("\n") };
  } finally {
    console.log = log;
    console.error = error;
  }
}

Deno.test("--help lists every flag main() accepts, and only those", async () => {
  const { code, out } = await run(["--help"]);
  assertEquals(code, 0);
  // Option lines: "  -p, --pipeline FILE  ..." or "      --params  ...": the flag that starts the line.
  const listed = new Map<string, string | undefined>();
  for (const line of out.split("\n")) {
    const m = /^\s{2,}(?:-([A-Za-z]), )?--([a-z][a-z0-9-]*)/.exec(line);
    if (m) listed.set(m[2], m[1]);
  }
  const options = CLI_OPTIONS as Record<string, { short?: string }>;
  assertEquals([...listed.keys()].sort(), Object.keys(options).sort(), "the option lines of --help vs parseArgs");
  for (const [name, short] of listed) assertEquals(short, options[name].short, `short form of --${name}`);
  // Every flag named anywhere in the text (usage lines, explanations) exists.
  for (const m of out.matchAll(/(?<![\w-])--([a-z][a-z0-9-]*)/g)) {
    assert(m[1] in options, `--help mentions --${m[1]}, which main() does not accept`);
  }
});

Deno.test("every flag --help lists is accepted by main()", async () => {
  const { out } = await run(["--help"]);
  const names = [...out.matchAll(/^\s{2,}(?:-[A-Za-z], )?--([a-z][a-z0-9-]*)/gm)].map((m) => m[1]);
  assert(names.length >= 10, names.join(", "));
  for (const name of names) {
    const opt = (CLI_OPTIONS as Record<string, { type: string }>)[name];
    // A usage error other than "Unknown option" is fine (a value missing, another flag needed).
    const args = opt.type === "string" ? [`--${name}=x`, "--help"] : [`--${name}`, "--help"];
    const r = await run(args);
    assert(!/Unknown option/.test(r.err), `--${name}: ${r.err}`);
  }
});
