/**
 * Tests of core/slab.ts: the arrays it hands out are zeroed, never overlap, are aligned, and
 * stay valid (a new slab is taken when one is full; large requests get their own buffer).
 *
 * @module
 */
import assert from "node:assert/strict";
import { ReusedArrays, Slab } from "../core/slab.ts";

Deno.test("Slab hands out zeroed, aligned, disjoint views; a full slab is replaced, never reused", () => {
  const slab = new Slab();
  const taken: (Int16Array | Uint8Array)[] = [];
  for (let i = 0; i < 400; i++) {
    const a = i % 3 === 0 ? slab.uint8(161) : slab.int16(160 + (i % 7));
    assert.ok(a.every((v) => v === 0), "zeroed");
    if (a instanceof Int16Array) assert.equal(a.byteOffset % 2, 0, "aligned");
    a.fill(i % 3 === 0 ? 0xff : -1); // what a stage writes into its frame
    taken.push(a);
  }
  // Nothing handed out later overwrote an earlier array.
  for (let i = 0; i < taken.length; i++) {
    const a = taken[i];
    assert.ok(a.every((v) => v === (i % 3 === 0 ? 0xff : -1)), `array ${i} intact`);
  }
  const buffers = new Set(taken.map((a) => a.buffer));
  assert.ok(buffers.size > 1 && buffers.size < 20, `${buffers.size} slabs for ~110 KB`);
  const big = slab.int16(100_000);
  assert.equal(big.length, 100_000);
  assert.equal(big.byteOffset, 0, "large arrays get a buffer of their own");
  assert.equal(slab.int16(0).length, 0);
});

Deno.test("ReusedArrays hands out one buffer per type, the same view for the same length, grown when asked for more", () => {
  const r = new ReusedArrays();
  const a = r.int16(160);
  a.fill(7);
  assert.equal(r.int16(160), a, "the same view again");
  const b = r.int16(80);
  assert.equal(b.buffer, a.buffer, "a shorter array is a view of the same buffer");
  assert.ok(b.every((v) => v === 7), "it holds what the last frame left");
  const c = r.int16(1000);
  assert.equal(c.length, 1000);
  assert.notEqual(c.buffer, a.buffer, "a longer one grows the buffer");
  assert.equal(r.int16(1000), c);
  const u = r.uint8(160);
  assert.equal(u.length, 160);
  assert.equal(r.uint8(160), u);
  assert.notEqual(u.buffer, c.buffer, "one buffer per element type");
  assert.equal(r.int16(0).length, 0);
});

Deno.test("ReusedArrays: lengths that alternate (a resampled stream's frames) get their views again, none of an old buffer", () => {
  const r = new ReusedArrays();
  r.int16(1024); // the buffer: longer arrays than this one would grow it
  const [a, b, c] = [r.int16(800), r.int16(801), r.int16(799)];
  for (let i = 0; i < 3; i++) {
    assert.equal(r.int16(801), b);
    assert.equal(r.int16(800), a);
    assert.equal(r.int16(799), c);
  }
  const u = [r.uint8(161), r.uint8(160)];
  assert.equal(r.uint8(161), u[0]);
  assert.equal(r.uint8(160), u[1]);
  // A longer array grows the buffer: the views of the old one are not handed out again.
  const big = r.int16(5000);
  const again = r.int16(800);
  assert.notEqual(again, a);
  assert.equal(again.buffer, big.buffer);
  // Only a few are kept: the oldest of five lengths is made anew.
  const v = [1, 2, 3, 4].map((n) => r.int16(n));
  assert.equal(r.int16(4), v[3]);
  assert.notEqual(r.int16(800), again, "800 was the oldest of five: dropped");
});
