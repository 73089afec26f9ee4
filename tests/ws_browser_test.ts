/**
 * The WebSocket bridge with a browser's WebSocket (Debian's Chromium,
 * headless, through puppeteer-core) on loopback, against the fake call
 * service of tests/ws_util.ts: the handshake with a subprotocol, messages both
 * ways, a message over max_message_bytes answered with an error, and the
 * browser's close. Waits are on conditions, under guards that decide nothing.
 */
import { assertEquals, assertMatch } from "./assert.ts";
import { VirtualClock } from "../core/clock.ts";
import { Logger, MemoryOutput } from "../core/log.ts";
import { wsBridgeOptions } from "../plugins/ws/mod.ts";
import { WsBridge } from "../plugins/ws/bridge.ts";
import { FakeCalls, waitFor } from "./ws_util.ts";
import { browserSkipReason, launchBrowser } from "./console_browser_util.ts";

const skip = browserSkipReason();
if (skip) console.log(skip);

Deno.test({
  name: "ws-bridge in Chromium: subprotocol voxpipe-json, dial, audio to the page, a too long message, ping, close",
  ignore: skip !== undefined,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const clock = new VirtualClock();
    const calls = new FakeCalls(clock);
    const logs = new MemoryOutput();
    const log = new Logger({ level: "debug", outputs: [logs] });
    const bridge = new WsBridge(wsBridgeOptions.parse({ token: "tok", port: 0 }), { calls, clock, log });
    await bridge.start();
    const browser = await launchBrowser();
    try {
      const page = await browser.newPage();
      const url = `ws://127.0.0.1:${bridge.port}/?token=tok`;
      await page.evaluate((u: string) => {
        // deno-lint-ignore no-explicit-any
        const g = globalThis as any;
        g.msgs = [];
        g.ws = new WebSocket(u, "voxpipe-json");
        g.ws.onmessage = (e: MessageEvent) => g.msgs.push(e.data);
        g.ws.onclose = (e: CloseEvent) => g.closeCode = e.code;
      }, url);
      // deno-lint-ignore no-explicit-any
      const msgs = async () => await page.evaluate(() => (globalThis as any).msgs as string[]);
      // deno-lint-ignore no-explicit-any
      const send = (m: string) => page.evaluate((x: string) => (globalThis as any).ws.send(x), m);
      let seen: string[] = [];
      const until = async (pred: (m: string[]) => boolean, what: string) => {
        const end = Date.now() + 20000;
        while (!pred(seen = await msgs())) {
          if (Date.now() > end) throw new Error(`gave up waiting for ${what}: ${seen.join("\n")}`);
          await new Promise((r) => setTimeout(r, 20));
        }
      };
      await until((m) => m.length >= 1, "connected");
      assertEquals(JSON.parse(seen[0]), { event: "connected", protocol: "voxpipe-json", version: 1 });
      // deno-lint-ignore no-explicit-any
      assertEquals(await page.evaluate(() => (globalThis as any).ws.protocol), "voxpipe-json");

      await send(JSON.stringify({ event: "dial", dial: { to: "sip:b@h" } }));
      await until((m) => m.some((x) => x.includes('"dialing"')), "dialing");
      calls.answerRemote("out-1");
      await until((m) => m.some((x) => x.includes('"start"')), "start");
      calls.say("out-1", new Int16Array(160).fill(1000));
      await until((m) => m.some((x) => x.includes('"media"')), "the peer's audio");

      await send("x".repeat(300 * 1024));
      await send(JSON.stringify({ event: "ping" }));
      await until((m) => m.includes('{"event":"pong"}'), "pong");
      const error = seen.map((m) => JSON.parse(m)).find((m) => m.event === "error");
      assertMatch(error.error.message, /^message of 307200 bytes is longer than 262144: ignored$/);

      // deno-lint-ignore no-explicit-any
      await page.evaluate(() => (globalThis as any).ws.close(1000, "done"));
      await waitFor(() => calls.log.includes("hangup out-1"), "the call hung up", 20000);
      // deno-lint-ignore no-explicit-any
      const closeCode = () => page.evaluate(() => (globalThis as any).closeCode as number | undefined);
      const end = Date.now() + 20000;
      while (await closeCode() === undefined && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
      assertEquals(await closeCode(), 1000, "the page saw the bridge answer its close");
      assertMatch(logs.lines.join("\n"), /client 1 \(127\.0\.0\.1:\d+\) gone: disconnected, 1 call hung up/);
    } finally {
      await browser.close();
      await bridge.close();
    }
  },
});
