/**
 * Subprocess for `fast_udp_test.ts`, run with chosen permissions; prints one
 * JSON line.
 *
 * - `fallback` (run without `--allow-ffi`): what the fast path says and does
 *   when FFI is refused (asked for, and as the default), and that the
 *   fallback network works.
 * - `forgotten` (run with `-A --v8-flags=--expose-gc`): a loop and its socket
 *   dropped without being closed; after garbage collection the port is free.
 * - `idle-exit` (run with `-A`): receives three datagrams and runs a timer on
 *   the thread's MediaLoop, then stops listening without closing anything;
 *   the process must then exit by itself (the test bounds it).
 *
 * @module
 */
import { createFastNetwork, defaultMediaLoop, fastUdpUnavailable, mediaFromEnv } from "../core/net/fast.ts";
import { MediaLoop } from "../core/net/media_loop.ts";
import { udpNetwork } from "../core/net/udp.ts";

const mode = Deno.args[0];
if (mode === "fallback") {
  let loopError = "";
  try {
    new MediaLoop();
  } catch (e) {
    loopError = (e as Error).message;
  }
  let told = "";
  const net = createFastNetwork({ onFallback: (why) => told = why });
  const env = mediaFromEnv("fast");
  const byDefault = mediaFromEnv("");
  let spinError = "";
  try {
    mediaFromEnv("", "0.3");
  } catch (e) {
    spinError = (e as Error).message;
  }
  const a = net.bind("127.0.0.1", 0), b = net.bind("127.0.0.1", 0);
  const echoed: number[] = [];
  const done = Promise.withResolvers<void>();
  b.listen((d) => {
    echoed.push(...d);
    done.resolve();
  });
  await a.send(new Uint8Array([7, 8]), b.local);
  await done.promise;
  await a.close();
  await b.close();
  console.log(JSON.stringify({
    unavailable: fastUdpUnavailable(),
    loopError,
    createdIsUdpNetwork: net === udpNetwork,
    onFallback: told,
    envNet: env.net !== undefined,
    envDescription: env.description,
    defaultNet: byDefault.net !== undefined,
    defaultFallback: byDefault.fallback,
    defaultDescription: byDefault.description,
    spinError,
    echoed,
  }));
} else if (mode === "forgotten") {
  const bindAndForget = (): number => {
    const loop = new MediaLoop();
    return loop.network.bind("127.0.0.1", 0).port;
  };
  const port = bindAndForget();
  const gc = (globalThis as unknown as { gc: () => void }).gc;
  let inUseBefore = false;
  try {
    Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port }).close();
  } catch {
    inUseBefore = true;
  }
  let freed = false;
  for (let i = 0; i < 100 && !freed; i++) {
    gc();
    await new Promise((r) => setTimeout(r, 20)); // finalizers run in a later task
    try {
      Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port }).close();
      freed = true;
    } catch { /* still bound */ }
  }
  console.log(JSON.stringify({ inUseBefore, freed }));
} else if (mode === "idle-exit") {
  const loop = defaultMediaLoop();
  const rx = loop.network.bind("127.0.0.1", 0), tx = loop.network.bind("127.0.0.1", 0);
  const received: number[] = [];
  let timerRan = false;
  const stop = rx.listen((d) => {
    received.push(d[0]);
    if (received.length === 3) {
      stop(); // nothing listens any more, no timer is left: the loop lets the process end
      loop.clock.after(5, () => {
        timerRan = true;
        globalThis.addEventListener("unload", () => console.log(JSON.stringify({ received, timerRan })));
      });
    }
  });
  for (const x of [1, 2, 3]) tx.post(new Uint8Array([x]), rx.local);
} else {
  throw new Error(`unknown mode ${mode}`);
}
