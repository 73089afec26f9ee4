/**
 * The RFC 4475 torture messages of tests/fixtures/rfc4475/, decoded from the
 * RFC's notation to the bytes of each message (used by sip_torture_test.ts for
 * the parsers and by sip_harden_test.ts for a user agent's answers).
 *
 * @module
 */

/** The folder of the fixtures (one `<name>.txt` per message of RFC 4475 §3.1.1–§3.4). */
export const FIXTURES: URL = new URL("./fixtures/rfc4475/", import.meta.url);

const te = new TextEncoder();

/**
 * Decodes a fixture written in the RFC's notation (RFC 4475 §2): every line
 * ends in CRLF (whatever the file's line ends), `<hex>…</hex>` holds bytes in hex (whitespace ignored),
 * `<repeat count=N>…</repeat>` repeats its text N times.
 */
export function decodeFixture(file: string): Uint8Array {
  const text = file.replaceAll("\r\n", "\n");
  const out: number[] = [];
  const put = (s: string) => {
    for (const b of te.encode(s.replaceAll("\n", "\r\n"))) out.push(b);
  };
  let pos = 0;
  for (const m of text.matchAll(/<hex>([\s\S]*?)<\/hex>|<repeat count=(\d+)>([\s\S]*?)<\/repeat>/g)) {
    put(text.slice(pos, m.index));
    if (m[1] !== undefined) {
      const hex = m[1].replace(/\s+/g, "");
      for (let i = 0; i < hex.length; i += 2) out.push(parseInt(hex.slice(i, i + 2), 16));
    } else put(m[3].repeat(Number(m[2])));
    pos = m.index! + m[0].length;
  }
  put(text.slice(pos));
  return new Uint8Array(out);
}

/** The bytes of the message `name` (e.g. `wsinv`). */
export function loadRfc4475(name: string): Uint8Array {
  return decodeFixture(Deno.readTextFileSync(new URL(`${name}.txt`, FIXTURES)));
}

/** The names of every fixture, sorted. */
export function rfc4475Names(): string[] {
  return [...Deno.readDirSync(FIXTURES)].map((e) => e.name).filter((n) => n.endsWith(".txt")).map((n) => n.slice(0, -4))
    .sort();
}
