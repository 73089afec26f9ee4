import { assert, assertEquals, assertMatch } from "./assert.ts";
import { randomBytes, randomHexString, randomUint32 } from "../core/random.ts";
import { newBranch, newCallId, newTag } from "../plugins/sip/ids.ts";

Deno.test("randomBytes, randomHexString, randomUint32: the sizes asked, never the same value twice across pool refills, every byte value", () => {
  const seen = new Set<string>();
  const counts = new Array(256).fill(0);
  // 3 000 tokens of 16 bytes and as many hex strings and 32-bit values: ~12 refills of the 4 KB pool.
  for (let i = 0; i < 3000; i++) {
    const t = randomBytes(new Uint8Array(16));
    assertEquals(t.length, 16);
    for (const b of t) counts[b]++;
    const hex = [...t].map((b) => b.toString(16).padStart(2, "0")).join("");
    assert(!seen.has(hex), "a 128-bit token repeated");
    seen.add(hex);
    const h = randomHexString(6);
    assertMatch(h, /^[0-9a-f]{12}$/);
    const u = randomUint32();
    assert(Number.isInteger(u) && u >= 0 && u < 2 ** 32, `randomUint32 gave ${u}`);
  }
  // 48 000 bytes: each of the 256 values ~188 times; none missing, none absurdly frequent.
  assert(
    counts.every((c) => c > 60 && c < 400),
    `byte counts out of range: ${Math.min(...counts)}..${Math.max(...counts)}`,
  );
  // Larger than the pool: straight from the source.
  const big = randomBytes(new Uint8Array(10_000));
  assert(big.some((b) => b !== 0));
  assertMatch(randomHexString(5000), /^[0-9a-f]{10000}$/);
  // The top bit of randomUint32 is set about half the time (an unsigned value, not a sign).
  let high = 0;
  for (let i = 0; i < 2000; i++) if (randomUint32() >= 2 ** 31) high++;
  assert(high > 800 && high < 1200, `top bit set ${high} times of 2000`);
});

Deno.test("SIP identifiers: tags, branches and Call-IDs are fresh lowercase hex of their sizes", () => {
  const tags = new Set<string>();
  for (let i = 0; i < 1000; i++) {
    const t = newTag();
    assertMatch(t, /^[0-9a-f]{12}$/);
    assert(!tags.has(t));
    tags.add(t);
    assertMatch(newBranch(), /^z9hG4bK[0-9a-f]{16}$/);
    assertMatch(newCallId(), /^[0-9a-f]{32}$/);
  }
});
