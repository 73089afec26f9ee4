/**
 * The CLI's own parser of plain argument lists (core/cli_args.ts) against `node:util` `parseArgs`: the same result
 * for every plain list, and no result (the CLI then calls `parseArgs`) for every form it leaves to `parseArgs`.
 */
import { parseArgs } from "node:util";
import { assertEquals } from "./assert.ts";
import { parseSimpleArgs } from "../core/cli_args.ts";
import { CLI_OPTIONS, main } from "../mod.ts";

const plain: string[][] = [
  [],
  ["--help"],
  ["-h"],
  ["-V"],
  ["--version", "--help"],
  ["--pipeline", "pipelines/transcode.json"],
  ["-p", "p.json", "-s", "file=a.wav", "--set", "out=b.wav", "--set=codec=PCMA"],
  ["--pipeline=p.json", "--log-level", "debug", "--log-format=python", "--log-file", "out/x.log"],
  ["--check", "p.json"],
  ["--check", "--pipeline", "p.json", "--params"],
  ["--list-plugins"],
  ["--describe", "tone-source"],
  ["--describe=./my_plugin.ts"],
  ["--schema", "--list-devices"],
  ["--sip-trace=-", "--pipeline", "p.json"],
  ["--sip-trace=out/trace.txt", "--scheduler", "main", "-p", "a.json", "-p", "b.json"],
  ["--pipeline="],
  ["extra", "positional", "--check"],
  ["-s", "a=1", "-s", "b=2", "-s", "c=3"],
];

Deno.test("plain argument lists parse exactly as parseArgs parses them", () => {
  for (const args of plain) {
    const ours = parseSimpleArgs(args, CLI_OPTIONS, true);
    const theirs = parseArgs({ args, options: CLI_OPTIONS, allowPositionals: true, strict: true });
    assertEquals(ours !== undefined, true, `declined: ${JSON.stringify(args)}`);
    assertEquals({ values: { ...ours!.values }, positionals: ours!.positionals }, {
      values: { ...theirs.values },
      positionals: theirs.positionals,
    }, JSON.stringify(args));
    assertEquals(Object.getPrototypeOf(ours!.values), null);
  }
});

Deno.test("every other form is left to parseArgs (errors and rare forms keep its behaviour and messages)", () => {
  const left: string[][] = [
    ["--bogus"],
    ["-x"],
    ["--pipeline"],
    ["-p"],
    ["--pipeline", "-weird.json"],
    ["--check=yes"],
    ["-hV"],
    ["-pfile.json"],
    ["--", "--help"],
    ["--constructor"],
    ["--__proto__"],
    ["--set", "--pipeline", "p.json"],
  ];
  for (const args of left) assertEquals(parseSimpleArgs(args, CLI_OPTIONS, true), undefined, JSON.stringify(args));
  // Without positionals allowed, a positional is left to parseArgs too.
  assertEquals(parseSimpleArgs(["x"], CLI_OPTIONS, false), undefined);
});

Deno.test("the CLI still reports what parseArgs says about a bad argument list", async () => {
  const errors: string[] = [];
  const orig = console.error;
  console.error = (msg: string) => errors.push(msg);
  try {
    assertEquals(await main(["--pipelin", "p.json"]), 2);
    assertEquals(await main(["--pipeline"]), 2);
    assertEquals(await main(["--check=yes"]), 2);
  } finally {
    console.error = orig;
  }
  assertEquals(errors.length, 3);
  assertEquals(errors[0].startsWith("voxpipe: Unknown option '--pipelin' (did you mean --pipeline?)"), true, errors[0]);
  assertEquals(/argument missing/.test(errors[1]), true, errors[1]);
  assertEquals(/does not take an argument/.test(errors[2]), true, errors[2]);
});
