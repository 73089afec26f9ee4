import assert from "node:assert/strict";
import { PacketQueue } from "../core/net/packet_queue.ts";
import type { HostPort } from "../core/net/address.ts";

const to = (port: number): HostPort => ({ hostname: "127.0.0.1", port });

/** Drains `q`, returning what it held in order as [first byte, port, extra, time] rows. */
function drain(q: PacketQueue<string>): [number, number, string, number][] {
  const out: [number, number, string, number][] = [];
  while (q.length > 0) {
    out.push([q.data(0)[0], q.to(0).port, q.extra(0), q.time(0)]);
    q.shift();
  }
  return out;
}

Deno.test("PacketQueue: entries come out in order with their destination, value and time", () => {
  const q = new PacketQueue<string>();
  assert.equal(q.length, 0);
  for (let i = 0; i < 5; i++) q.push(new Uint8Array([i]), to(4000 + i), `p${i}`, i * 20.5);
  assert.equal(q.length, 5);
  assert.equal(q.lastTime(), 82);
  assert.equal(q.data(2)[0], 2);
  assert.equal(q.to(4).port, 4004);
  assert.equal(q.extra(1), "p1");
  assert.deepEqual(drain(q), [0, 1, 2, 3, 4].map((i) => [i, 4000 + i, `p${i}`, i * 20.5]));
});

Deno.test("PacketQueue: interleaved pushes and shifts past every growth and compaction keep FIFO order", () => {
  // A model (a plain array) against the queue: a steady queue of ~n entries (compaction), then a long one (growth).
  const q = new PacketQueue<string>();
  const model: [number, number, string, number][] = [];
  let next = 0;
  const push = () => {
    const k = next++;
    q.push(new Uint8Array([k & 0xff]), to(1 + (k % 60000)), `e${k}`, k + 0.25);
    model.push([k & 0xff, 1 + (k % 60000), `e${k}`, k + 0.25]);
  };
  const shift = () => {
    assert.deepEqual([q.data(0)[0], q.to(0).port, q.extra(0), q.time(0)], model.shift());
    q.shift();
  };
  for (let i = 0; i < 7; i++) push();
  for (let round = 0; round < 3000; round++) {
    push();
    if (round % 500 < 250) push(); // grows for a while, then holds
    shift();
    assert.equal(q.length, model.length);
    if (model.length > 0) assert.equal(q.lastTime(), model[model.length - 1][3]);
  }
  assert.ok(model.length > 100, "the queue grew past its first capacities");
  assert.deepEqual(drain(q), model);
});

Deno.test("PacketQueue: after clear it is empty and takes new entries from the front", () => {
  const q = new PacketQueue<{ big: Uint8Array }>();
  for (let i = 0; i < 4; i++) q.push(new Uint8Array(8), to(5000), { big: new Uint8Array(1) }, i);
  q.shift();
  assert.equal(q.length, 3);
  assert.equal(q.time(0), 1);
  q.clear();
  assert.equal(q.length, 0);
  q.push(new Uint8Array([9]), to(5001), { big: new Uint8Array(2) }, 7);
  assert.equal(q.length, 1);
  assert.equal(q.data(0)[0], 9);
  assert.equal(q.time(0), 7);
  assert.equal(q.lastTime(), 7);
});
