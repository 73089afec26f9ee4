/**
 * SIP parser and serializer speed: a typical INVITE with an SDP body (about
 * 650 bytes, the shape a softphone sends), the 49 messages of RFC 4475, and
 * adversarial inputs of up to 64 KB (tests/sip_pathological.ts): long runs of
 * one character, deep nesting of comments and angle brackets, thousands of
 * parameters, headers and folded lines, 60 KB lines, random bytes. Each must be
 * parsed or refused in time linear in its size: well under 5 ms for 64 KB.
 *
 * Run: `deno bench -A bench/sip_parse_bench.ts` (the table), or
 * `deno run -A --v8-flags=--expose-gc bench/sip_parse_bench.ts` (median, p99
 * and worst single parse of each pathological input over 300 runs, in µs).
 */
import { parseMessage, serializeMessage, SipParseError } from "../plugins/sip/message.ts";
import { createOffer } from "../plugins/sip/sdp.ts";
import { parseParams, readQuoted, splitOutside } from "../plugins/sip/syntax.ts";
import { parseAddress, parseAnyUri } from "../plugins/sip/uri.ts";
import { parseVia } from "../plugins/sip/via.ts";
import { datagramCases, valueCases } from "../tests/sip_pathological.ts";
import { CodecRegistry } from "../core/codec.ts";
import { builtinCodecs } from "../plugins/builtin.ts";

const codecs = new CodecRegistry(builtinCodecs);

const sdp = createOffer({ registry: codecs, address: "192.0.2.10", port: 40000, sessionId: "3724394400" });
const body = new TextEncoder().encode(sdp);
const head = [
  "INVITE sip:bob@192.0.2.20:5060 SIP/2.0",
  "Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK74bf9a3c5d21e8f0;rport",
  "Max-Forwards: 70",
  'From: "Alice Example" <sip:alice@192.0.2.10>;tag=9fxced76sl',
  "To: <sip:bob@192.0.2.20:5060>",
  "Call-ID: 3848276298220188511@192.0.2.10",
  "CSeq: 1 INVITE",
  "Contact: <sip:alice@192.0.2.10:5060>",
  "Allow: INVITE, ACK, BYE, CANCEL, OPTIONS",
  "Supported: replaces, timer",
  "User-Agent: voxpipe/0.1",
  "Content-Type: application/sdp",
  `Content-Length: ${body.length}`,
].join("\r\n") + "\r\n\r\n";
const datagram = new Uint8Array([...new TextEncoder().encode(head), ...body]);
const parsed = parseMessage(datagram);

/** The RFC 4475 messages, decoded from tests/fixtures/rfc4475 (see tests/sip_torture_test.ts for the notation). */
function rfc4475(): Uint8Array[] {
  const dir = new URL("../tests/fixtures/rfc4475/", import.meta.url);
  const te = new TextEncoder();
  const out: Uint8Array[] = [];
  for (const e of [...Deno.readDirSync(dir)].filter((e) => e.name.endsWith(".txt"))) {
    const text = Deno.readTextFileSync(new URL(e.name, dir)).replaceAll("\r\n", "\n");
    const bytes: number[] = [];
    const put = (s: string) => bytes.push(...te.encode(s.replaceAll("\n", "\r\n")));
    let pos = 0;
    for (const m of text.matchAll(/<hex>([\s\S]*?)<\/hex>|<repeat count=(\d+)>([\s\S]*?)<\/repeat>/g)) {
      put(text.slice(pos, m.index));
      if (m[1] !== undefined) {
        const hex = m[1].replace(/\s+/g, "");
        for (let i = 0; i < hex.length; i += 2) bytes.push(parseInt(hex.slice(i, i + 2), 16));
      } else put(m[3].repeat(Number(m[2])));
      pos = m.index! + m[0].length;
    }
    put(text.slice(pos));
    out.push(new Uint8Array(bytes));
  }
  return out;
}

/** Parses, swallowing the SipParseError a refused input gives (anything else is a bug and is thrown). */
function attempt(f: () => unknown): void {
  try {
    f();
  } catch (e) {
    if (!(e instanceof SipParseError)) throw e;
  }
}

const LIFTED = { maxSize: 65535, maxHeaders: 1_000_000, maxLineLength: 65535 };
const VALUE_PARSERS = {
  via: parseVia,
  address: parseAddress,
  uri: parseAnyUri,
  params: (s: string) => parseParams(s),
  quoted: (s: string) => readQuoted(s, 0),
  split: (s: string) => splitOutside(s, ","),
};

/** Every pathological run as [label, function]. */
function pathological(): [string, () => void][] {
  const runs: [string, () => void][] = [];
  for (const c of datagramCases()) {
    runs.push([`datagram ${c.data.length} B, default limits: ${c.name}`, () => attempt(() => parseMessage(c.data))]);
    runs.push([
      `datagram ${c.data.length} B, limits lifted: ${c.name}`,
      () => attempt(() => parseMessage(c.data, LIFTED)),
    ]);
  }
  for (const c of valueCases()) {
    runs.push([
      `value ${c.value.length} chars, ${c.parser}: ${c.name}`,
      () => attempt(() => VALUE_PARSERS[c.parser](c.value)),
    ]);
  }
  return runs;
}

Deno.bench({ name: `parse INVITE (${datagram.length} bytes)`, group: "sip", baseline: true }, () => {
  parseMessage(datagram);
});

Deno.bench({ name: "serialize INVITE", group: "sip" }, () => {
  serializeMessage(parsed);
});

const torture = rfc4475();
Deno.bench({ name: `parse or refuse all ${torture.length} RFC 4475 messages`, group: "sip" }, () => {
  for (const m of torture) attempt(() => parseMessage(m));
});

for (const [label, run] of pathological()) Deno.bench({ name: label, group: "pathological" }, run);

if (import.meta.main) {
  // Per input: the fastest, median, p99 and slowest of 300 single runs. The parse of one input is
  // the same work every time, so min and median measure the parser; p99 and max add whatever the
  // machine did meanwhile (other processes, preemption). With `--v8-flags=--expose-gc` a collection
  // runs before each timed run, so that no run pays for the garbage of the ones before it.
  const gc = (globalThis as { gc?: () => void }).gc;
  const rows: { label: string; min: number; median: number; p99: number; max: number }[] = [];
  for (const [label, run] of pathological()) {
    for (let i = 0; i < 30; i++) run();
    const times: number[] = [];
    for (let i = 0; i < 300; i++) {
      gc?.();
      const t0 = performance.now();
      run();
      times.push((performance.now() - t0) * 1000);
    }
    times.sort((a, b) => a - b);
    rows.push({ label, min: times[0], median: times[150], p99: times[296], max: times[299] });
  }
  const load = (() => {
    try {
      return Deno.loadavg().map((l) => l.toFixed(1)).join(" ");
    } catch {
      return "unknown";
    }
  })();
  console.log(
    `300 runs per input${
      gc ? ", gc() before each" : ""
    }; load average ${load} on ${navigator.hardwareConcurrency} CPUs`,
  );
  console.log("   min µs  median µs     p99 µs     max µs   input");
  const f = (n: number) => n.toFixed(1).padStart(9);
  for (const r of rows) console.log(`${f(r.min)}  ${f(r.median)}  ${f(r.p99)}  ${f(r.max)}   ${r.label}`);
  const worst = (rs: typeof rows, k: "median" | "p99" | "max") => rs.reduce((a, b) => (b[k] > a[k] ? b : a));
  const def = rows.filter((r) => r.label.includes("default limits"));
  const values = rows.filter((r) => r.label.startsWith("value "));
  for (
    const [name, rs] of [
      ["datagrams of up to 64 KB, default limits", def],
      ["60 000-character values, inner parsers", values],
      ["every input", rows],
    ] as const
  ) {
    for (const k of ["median", "p99", "max"] as const) {
      const w = worst(rs, k);
      console.log(`worst ${k}, ${name}: ${w[k].toFixed(1)} µs (${w.label})`);
    }
  }
}
