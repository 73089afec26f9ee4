/**
 * The main job: a real SIP call on this machine. Starts the callee
 * (pipelines/callee.json, answers one call and records it), then the caller
 * (pipelines/caller.json, streams a file and hangs up when it has been sent),
 * shows both logs, and prints the path of the recording the call wrote (the
 * callee numbers it, demo-call-2.wav, ..., when the --out file exists).
 *
 * Usage: `deno run -A examples/call_demo.ts [--file F] [--out WAV] [--port N] [--codec PCMU|PCMA]`
 * (`deno task demo` runs it with the defaults: the callee takes a free SIP port,
 * so the demo runs even where 5062 is taken). If the callee cannot start, the
 * demo stops at once with its reason.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("../", import.meta.url));
const { values } = parseArgs({
  args: Deno.args,
  options: {
    file: { type: "string", default: "examples/audio/hello.wav" },
    out: { type: "string", default: "out/demo-call.wav" },
    port: { type: "string", default: "0" },
    codec: { type: "string", default: "PCMU" },
    help: { type: "boolean", short: "h" },
  },
});
if (values.help) {
  console.log(
    "usage: deno run -A examples/call_demo.ts [--file F] [--out WAV] [--port N (default 0: a free port)] " +
      "[--codec PCMU|PCMA]",
  );
  Deno.exit(0);
}
const out = resolve(values.out!);

/** The recordings the callee's call summaries name, in order (the callee numbers the file when `--out` exists). */
const recorded: string[] = [];
const RECORDING = / recording=(.+?) \(\d+(?:\.\d+)? s\)/g;

function start(
  name: string,
  args: string[],
  readyLine?: RegExp,
): { proc: Deno.ChildProcess; done: Promise<number>; ready: Promise<RegExpExecArray | undefined> } {
  const { promise: ready, resolve: setReady } = Promise.withResolvers<RegExpExecArray | undefined>();
  const proc = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "mod.ts", ...args],
    cwd: root,
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const pump = async (stream: ReadableStream<Uint8Array>) => {
    let buf = "";
    for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
      buf += chunk;
      let nl;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, nl);
        console.log(`${name} | ${line}`);
        const m = readyLine?.exec(line);
        if (m) setReady(m);
        if (name === "callee" && line.includes("call summary")) {
          for (const r of line.matchAll(RECORDING)) recorded.push(r[1]);
        }
        buf = buf.slice(nl + 1);
      }
    }
    if (buf) console.log(`${name} | ${buf}`);
  };
  const pumps = Promise.all([pump(proc.stdout), pump(proc.stderr)]);
  const done = proc.status.then(async (s) => (await pumps, s.code));
  done.then(() => setReady(undefined));
  return { proc, done, ready };
}

const callee = start("callee", [
  "--pipeline",
  "pipelines/callee.json",
  "--set",
  `port=${values.port}`,
  "--set",
  "calls=1",
  "--set",
  `record=${out}`,
], /\[SIP\] listening on udp [^\s]*:(\d+)/);
// Call once the callee has bound its SIP port (the port it tells, when it took a free one).
const listening = await callee.ready;
if (!listening) {
  console.error(`demo failed: the callee could not start (exit ${await callee.done}); see its lines above`);
  Deno.exit(1);
}
const caller = start("caller", [
  "--pipeline",
  "pipelines/caller.json",
  "--set",
  `to=sip:callee@127.0.0.1:${listening[1]}`,
  "--set",
  `file=${values.file}`,
  "--set",
  `codecs=${values.codec}`,
]);
const callerCode = await caller.done;
const timer = setTimeout(() => callee.proc.kill("SIGTERM"), 15_000);
const calleeCode = await callee.done;
clearTimeout(timer);
if (callerCode !== 0 || calleeCode !== 0) {
  console.error(`demo failed: caller exit ${callerCode}, callee exit ${calleeCode}`);
  Deno.exit(1);
}
// The callee records to --out, or to a numbered name beside it (demo-call-2.wav, ...) when that file exists: report
// the file this call wrote, as its summary line names it, not a recording left by an earlier run.
const path = recorded.at(-1);
if (path === undefined) {
  console.error(`demo failed: the callee's call summary names no recording (expected one at ${out})`);
  Deno.exit(1);
}
const size = (await Deno.stat(path)).size;
console.log(`\nrecording: ${path} (${size} bytes) — play it with: ffplay ${path}  (or aplay, or sox's play)`);
