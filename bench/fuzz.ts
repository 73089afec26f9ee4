/**
 * Fuzzes the parsers that read bytes from the network or from files (SIP, SDP, RTP, RTCP, telephone-event, the relay
 * line protocol, the WebSocket bridge's protocols, request head and frames, WAV files, the console's audio messages)
 * and the servers built on them (the SIP relay, a callee's dialogs, the relay's sessions, the console's HTTP side)
 * with the seeded mutations of tests/fuzz_test.ts, for as long as asked: `--cases N` per target from `--seed S` (the
 * same seed gives the same inputs). Each target runs in a worker; a case that runs longer than `--hang-ms` is reported
 * as a hang, with its input. `--growth N` also times N inputs with a piece repeated n and 10n times and reports those
 * more than 50 times slower (time superlinear in the input). Findings are printed and, with `--out DIR`, saved as
 * files (`<target>-<n>.bin`); the exit code is 1 when there was one.
 *
 * Run: `deno run -A bench/fuzz.ts --cases 200000 --seed 1 [--only sip-message,rtcp] [--growth 200] [--out out/fuzz]`
 *
 * @module
 */
import { benchArgs, benchFail } from "./_args.ts";
import { TARGETS } from "../tests/fuzz_targets.ts";
import type { FuzzJob, FuzzReport } from "./_fuzz_worker.ts";

const OPTIONS = {
  cases: { type: "string", default: "100000" },
  seed: { type: "string", default: "1" },
  only: { type: "string" },
  growth: { type: "string", default: "0" },
  "hang-ms": { type: "string", default: "20000" },
  out: { type: "string" },
} as const;
const { values } = benchArgs(import.meta.url, OPTIONS);
const fail = (message: string): never => benchFail(import.meta.url, OPTIONS, message);
const cases = Number(values.cases);
const seed = Number(values.seed);
const growth = Number(values.growth);
const hangMs = Number(values["hang-ms"]);
if (!(Number.isInteger(cases) && cases >= 0)) fail(`--cases: a count, got ${values.cases}`);
if (!Number.isInteger(seed)) fail(`--seed: an integer, got ${values.seed}`);
if (!(Number.isInteger(growth) && growth >= 0)) fail(`--growth: a count, got ${values.growth}`);
if (!(hangMs > 0)) fail(`--hang-ms: ms, got ${values["hang-ms"]}`);
const names = values.only?.split(",") ?? TARGETS.map((t) => t.name);
for (const n of names) {
  if (!TARGETS.some((t) => t.name === n)) fail(`--only: no target ${n} (${TARGETS.map((t) => t.name).join(", ")})`);
}
if (values.out) Deno.mkdirSync(values.out, { recursive: true });

const hex = (b: number[]) =>
  b.slice(0, 160).map((x) => x.toString(16).padStart(2, "0")).join("") + (b.length > 160 ? "..." : "");
let findings = 0;

function save(name: string, input: Uint8Array | number[]): string {
  if (!values.out) return "";
  const path = `${values.out}/${name}-${findings}.bin`;
  Deno.writeFileSync(path, Uint8Array.from(input));
  return ` (saved as ${path})`;
}

for (const name of names) {
  const shared = new SharedArrayBuffer(8 + 70_000);
  const head = new Int32Array(shared, 0, 2);
  const worker = new Worker(new URL("./_fuzz_worker.ts", import.meta.url), { type: "module" });
  const seen = new Map<string, number>();
  const result = await new Promise<{ cases: number; ms: number } | "hang" | "crash">((resolve) => {
    let last = -1;
    let since = performance.now();
    const watch = setInterval(() => {
      const now = Atomics.load(head, 0);
      if (now !== last) {
        last = now;
        since = performance.now();
      } else if (now !== 0 && performance.now() - since > hangMs) {
        clearInterval(watch);
        worker.terminate();
        const input = new Uint8Array(shared, 8, head[1]).slice();
        findings++;
        console.log(`${name}: HANG: case ${now - 1} ran over ${hangMs} ms: ${hex([...input])}${save(name, input)}`);
        resolve("hang");
      }
    }, 500);
    worker.onerror = (e) => {
      e.preventDefault();
      clearInterval(watch);
      findings++;
      const input = new Uint8Array(shared, 8, head[1]).slice();
      console.log(
        `${name}: WORKER DIED (${e.message}) at case ${Atomics.load(head, 0) - 1}: ${hex([...input])}${
          save(name, input)
        }`,
      );
      resolve("crash");
    };
    worker.onmessage = (m: MessageEvent<FuzzReport>) => {
      const r = m.data;
      if (r.type === "done") {
        clearInterval(watch);
        worker.terminate();
        resolve(r);
        return;
      }
      // One line per distinct message (numbers blanked), with the shortest input seen for it.
      const key = r.message.replace(/\d+/g, "N");
      const count = (seen.get(key) ?? 0) + 1;
      seen.set(key, count);
      if (count > 1) return;
      findings++;
      const what = r.type === "growth" ? `GROWTH x${r.ratio.toFixed(0)} (${r.message})` : r.message;
      const at = r.type === "finding" ? `case ${r.index}` : `n=${r.n}`;
      console.log(`${name}: ${what} [${at}, ${r.input.length} bytes]: ${hex(r.input)}${save(name, r.input)}`);
    };
    worker.postMessage({ target: name, seed, cases, growth, shared } satisfies FuzzJob);
  });
  if (typeof result === "object") {
    const repeats = [...seen.values()].reduce((a, b) => a + b - 1, 0);
    console.log(
      `${name}: ${result.cases} cases in ${(result.ms / 1000).toFixed(1)} s` +
        `${seen.size ? `, ${seen.size} distinct findings (${repeats} repeats)` : ", no finding"}`,
    );
  }
}
Deno.exit(findings ? 1 : 0);
