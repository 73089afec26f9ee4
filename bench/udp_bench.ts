/**
 * UDP throughput over loopback in one process: `Deno.listenDatagram` versus `node:dgram`.
 *
 * Each benchmark iteration moves {@linkcode BATCH} datagrams of 172 bytes (a 20 ms G.711 RTP
 * packet), so packets/s = BATCH / (time per iteration).
 *
 * - `send`: sends to a socket nobody reads (the kernel drops what overflows). For Deno, either
 *   awaiting each send (what a paced sink does: one or two sends in flight) or issuing the whole
 *   batch and awaiting `Promise.all` (many ops in flight; note that awaiting only the *last*
 *   promise is wrong: Deno resolves ops out of order, and thousands of pending send ops slow the
 *   event loop down for seconds afterwards). `UdpSocket.send` is the plugin's wrapper, which keeps
 *   one send op in flight and queues the rest so datagrams leave in call order.
 * - `send+receive`: bursts of {@linkcode BURST} packets, each burst fully received before the
 *   next, so the receive loop is measured without kernel drops. Receive cost per packet ≈
 *   (send+receive − send) time.
 *
 * Run: `deno bench -A bench/udp_bench.ts`.
 *
 * @module
 */
import dgram from "node:dgram";
import { UdpSocket } from "../core/net/udp.ts";

/** Datagrams per benchmark iteration. */
export const BATCH = 1000;
/** Datagrams sent before waiting for the receiver to catch up. */
export const BURST = 50;

const payload = new Uint8Array(172).fill(0x55);

// --- Deno.listenDatagram -------------------------------------------------------------------
const denoTx = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
const denoBlackhole = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
const denoRx = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
const denoBlackholeAddr = denoBlackhole.addr as Deno.NetAddr;
const denoRxAddr = denoRx.addr as Deno.NetAddr;

let denoCount = 0;
let denoWaiter: { target: number; resolve: () => void } | undefined;
(async () => {
  const buf = new Uint8Array(1501);
  try {
    for (;;) {
      await denoRx.receive(buf);
      denoCount++;
      if (denoWaiter && denoCount >= denoWaiter.target) {
        const w = denoWaiter;
        denoWaiter = undefined;
        w.resolve();
      }
    }
  } catch { /* closed */ }
})();

function denoWaitFor(target: number): Promise<void> {
  if (denoCount >= target) return Promise.resolve();
  return new Promise((resolve) => denoWaiter = { target, resolve });
}

Deno.bench(
  { name: `Deno.listenDatagram send ${BATCH} packets, await each`, group: "send", baseline: true },
  async () => {
    for (let i = 0; i < BATCH; i++) await denoTx.send(payload, denoBlackholeAddr);
  },
);

Deno.bench({ name: `Deno.listenDatagram send ${BATCH} packets, Promise.all`, group: "send" }, async () => {
  const all: Promise<number>[] = new Array(BATCH);
  for (let i = 0; i < BATCH; i++) all[i] = denoTx.send(payload, denoBlackholeAddr);
  await Promise.all(all);
});

// The plugin's socket wrapper: one send op in flight, the rest queued in order.
const wrapped = UdpSocket.bind("127.0.0.1", 0);
const wrappedTo = { hostname: "127.0.0.1", port: denoBlackholeAddr.port };
Deno.bench({ name: `UdpSocket.send ${BATCH} packets (ordered queue)`, group: "send" }, async () => {
  let last: Promise<number> | undefined;
  for (let i = 0; i < BATCH; i++) last = wrapped.send(payload, wrappedTo);
  await last; // in order: the last one settles last
});

Deno.bench(
  { name: `Deno.listenDatagram send+receive ${BATCH} packets`, group: "send+receive", baseline: true },
  async () => {
    for (let i = 0; i < BATCH; i += BURST) {
      const target = denoCount + BURST;
      for (let j = 0; j < BURST; j++) denoTx.send(payload, denoRxAddr);
      await denoWaitFor(target);
    }
  },
);

// --- node:dgram ----------------------------------------------------------------------------
function bindNode(): Promise<dgram.Socket> {
  return new Promise((resolve, reject) => {
    const s = dgram.createSocket("udp4");
    s.once("error", reject);
    s.bind(0, "127.0.0.1", () => resolve(s));
  });
}
const nodeTx = await bindNode();
const nodeBlackhole = await bindNode();
const nodeRx = await bindNode();
const nodeBlackholePort = nodeBlackhole.address().port;
const nodeRxPort = nodeRx.address().port;
// Node's binding always reads a bound socket: discard what arrives.
nodeBlackhole.on("message", () => {});

let nodeCount = 0;
let nodeWaiter: { target: number; resolve: () => void } | undefined;
nodeRx.on("message", () => {
  nodeCount++;
  if (nodeWaiter && nodeCount >= nodeWaiter.target) {
    const w = nodeWaiter;
    nodeWaiter = undefined;
    w.resolve();
  }
});
function nodeWaitFor(target: number): Promise<void> {
  if (nodeCount >= target) return Promise.resolve();
  return new Promise((resolve) => nodeWaiter = { target, resolve });
}

Deno.bench({ name: `node:dgram send ${BATCH} packets`, group: "send" }, async () => {
  await new Promise<void>((resolve) => {
    let done = 0;
    const cb = () => {
      if (++done === BATCH) resolve();
    };
    for (let i = 0; i < BATCH; i++) nodeTx.send(payload, nodeBlackholePort, "127.0.0.1", cb);
  });
});

Deno.bench({ name: `node:dgram send+receive ${BATCH} packets`, group: "send+receive" }, async () => {
  for (let i = 0; i < BATCH; i += BURST) {
    const target = nodeCount + BURST;
    for (let j = 0; j < BURST; j++) nodeTx.send(payload, nodeRxPort, "127.0.0.1");
    await nodeWaitFor(target);
  }
});
