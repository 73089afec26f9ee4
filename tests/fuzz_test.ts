/**
 * Fuzzing of every parser that reads bytes from the network or from files, and of the servers built on them (the SIP
 * relay, a callee's dialogs, the relay's line protocol, the console's HTTP side; tests/fuzz_targets.ts): a bounded
 * number of seeded mutations of valid inputs per target, each of which must be parsed or refused with the module's own
 * error (never a TypeError, never an error reported by a socket, never a message that grows with the input, never a
 * table past its bound or a call that outlives its timers). The same seed
 * gives the same inputs on every run; `deno run -A bench/fuzz.ts --cases N --seed S` runs the same fuzzer longer.
 * The inputs it found, minimized, are regression tests beside the behaviour they broke (sdp_test.ts,
 * sip_auth_test.ts, ws_protocol_test.ts, ...).
 *
 * @module
 */
import assert from "node:assert/strict";
import { fuzzInputs } from "./fuzz_mutate.ts";
import { cleanupTargets, FuzzFinding, type FuzzTarget, TARGETS } from "./fuzz_targets.ts";

/** The seed of the suite's cases (bench/fuzz.ts takes any). */
const SEED = 20261205;

const hex = (b: Uint8Array) => [...b.subarray(0, 200)].map((x) => x.toString(16).padStart(2, "0")).join("");

async function fuzz(target: FuzzTarget, cases: number): Promise<void> {
  const findings: string[] = [];
  let index = 0;
  for (const input of fuzzInputs(target.seeds(), SEED, cases, target.maxLen)) {
    try {
      await target.run(input);
    } catch (e) {
      const what = e instanceof FuzzFinding ? e.message : `the harness threw ${e}`;
      findings.push(`case ${index} (${input.length} bytes, ${hex(input)}${input.length > 200 ? "..." : ""}): ${what}`);
      if (findings.length >= 3) break;
    }
    index++;
  }
  assert.deepEqual(findings, [], `${target.name}: the inputs that misbehaved (bench/fuzz.ts --only ${target.name})`);
}

for (const target of TARGETS) {
  Deno.test(`fuzz: ${target.name}: ${target.testCases} seeded cases parsed or refused with the module's error`, async () => {
    try {
      await fuzz(target, target.testCases);
    } finally {
      await cleanupTargets();
    }
  });
}
