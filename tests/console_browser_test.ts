// Code inside page.evaluate callbacks runs in the page; these files are type-checked with Deno's library only
// (the DOM library would clash with it in a whole-project check), so the page's globals are declared loosely here.
// deno-lint-ignore no-explicit-any
declare const document: any;
// deno-lint-ignore no-explicit-any
type HTMLElement = any;
/**
 * The browser console in a real browser (Debian's headless Chromium through
 * puppeteer-core), on a call service without SIP (tests/console_fake_calls.ts):
 * the page's controls and what it shows, independent of the SIP stack. The
 * end-to-end tests with real SIP calls are in console_sip_browser_test.ts.
 *
 * Every wait is for a DOM state with a generous bound; nothing asserts a
 * duration. Screenshots go to out/test-console/.
 */
import { assert, assertEquals, assertMatch } from "./assert.ts";
import { mediaClock } from "../core/clock.ts";
import { Logger, MemoryOutput } from "../core/log.ts";
import { startConsole } from "../plugins/console/service.ts";
import { consoleOptions } from "../plugins/console/mod.ts";
import { FakeCalls } from "./console_fake_calls.ts";
import { browserSkipReason, clickOn, launchBrowser, openPage, screenshotDir, waitFor } from "./console_browser_util.ts";
import { repoPath } from "./util.ts";
import { MemoryNetwork } from "../core/net/memory.ts";

const skip = browserSkipReason();
if (skip) console.warn(`console_browser_test: ${skip}`);

async function startFakeConsole(answerAfterMs = 1500) {
  const clock = mediaClock();
  const out = new MemoryOutput();
  const log = new Logger({ level: "info", outputs: [out] });
  const calls = new FakeCalls({ clock, log, answerAfterMs, epoch: Date.now() - clock.now() });
  const dir = await Deno.makeTempDir({ prefix: "voxpipe-console-browser-" });
  const ac = new AbortController();
  const service = await startConsole(
    consoleOptions.parse({
      port: 0,
      library: repoPath("examples/audio"),
      uploads: `${dir}/up`,
      record_dir: `${dir}/rec`,
    }),
    {
      log,
      clock,
      signal: ac.signal,
      file: `${dir}/console.json`,
      baseDir: dir,
      params: {},
      calls,
      net: new MemoryNetwork({ clock }),
    },
  );
  return {
    calls,
    url: service.address!,
    dir,
    async close() {
      calls.closeAll();
      ac.abort();
      await service.close();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

Deno.test({
  name:
    "console in Chromium (fake calls): bad file refused, call placed, charts, play/pause, end with reason, incoming answered",
  ignore: skip !== undefined,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const con = await startFakeConsole();
    const browser = await launchBrowser();
    const shots = await screenshotDir();
    try {
      const { page, errors } = await openPage(browser, con.url);
      await waitFor(
        page,
        "the connection",
        () => document.querySelector("#conn")?.getAttribute("data-state") === "open",
      );
      await waitFor(page, "the library's files", () => document.querySelectorAll("#file-select option").length > 2);

      // A file that is not audio: refused with the reason, and a call cannot start.
      const bogus = `${con.dir}/minutes.mp3`;
      await Deno.writeTextFile(bogus, "Minutes of the meeting: nothing audible here.\n".repeat(20));
      const input = await page.$("#upload");
      await (input as unknown as { uploadFile(p: string): Promise<void> }).uploadFile(bogus);
      const msg = await waitFor(page, "the upload's error", () => {
        const m = document.querySelector("#file-message") as HTMLElement;
        return m.dataset.state === "error" && m.textContent;
      });
      assertMatch(String(msg), /minutes\.mp3 cannot be played: .*(unrecognized audio format|cannot decode)/);
      await page.type("#target", "sip:bob@127.0.0.1:5062");
      await clickOn(page, "#start");
      const refused = await waitFor(page, "the refusal", () => {
        const e = document.querySelector("#caller-error") as HTMLElement;
        return !e.hidden && e.textContent;
      });
      assertMatch(String(refused), /Choose an audio file the console can play/);
      assertEquals(con.calls.dials.length, 0);
      await page.screenshot({ path: `${shots}/fake-invalid-file.png` });

      // A good file, then the call.
      await page.select("#file-select", "library/hello.wav");
      await waitFor(
        page,
        "the file's check",
        () => document.querySelector("#file-message")?.getAttribute("data-state") === "ok",
      );
      await clickOn(page, "#loop");
      await clickOn(page, "#start");
      await waitFor(
        page,
        "INVITE sent",
        () => document.querySelector("#caller-timeline")?.textContent?.includes("INVITE sent"),
      );
      await waitFor(
        page,
        "180 Ringing",
        () => document.querySelector("#caller-timeline")?.textContent?.includes("180 Ringing"),
      );
      await waitFor(
        page,
        "answered",
        () => document.querySelector("#caller-state")?.getAttribute("data-state") === "answered",
      );
      assertEquals(con.calls.dials[0].variables.loop, true);
      await waitFor(page, "3 chart samples with packets", () => {
        const c = document.querySelector("#chart-packets") as HTMLElement;
        return Number(c.dataset.points) >= 3 && JSON.parse(c.dataset.last ?? "{}").sendRate > 0;
      });
      await waitFor(
        page,
        "the ladder",
        () => Number(document.querySelector("#ladder")?.getAttribute("data-count")) >= 4,
      );
      await waitFor(page, "log lines", () => Number(document.querySelector("#logs")?.getAttribute("data-count")) >= 3);

      // Audio in the browser: play, pause, play again.
      await clickOn(page, "#sel-play");
      await waitFor(page, "audio played", () => {
        const a = document.querySelector("#audio-status") as HTMLElement;
        return a.dataset.state === "playing" && Number(a.dataset.received) >= 8000 && Number(a.dataset.played) > 0;
      });
      await clickOn(page, "#sel-pause");
      await waitFor(
        page,
        "paused",
        () => document.querySelector("#audio-status")?.getAttribute("data-state") === "paused",
      );
      const before = await page.$eval("#audio-status", (a) => Number((a as HTMLElement).dataset.received));
      await clickOn(page, "#sel-play");
      await waitFor(page, "audio again", () => {
        const a = document.querySelector("#audio-status") as HTMLElement;
        return a.dataset.state === "playing" && Number(a.dataset.received) > 0;
      });
      await page.waitForFunction(
        (n) => Number((document.querySelector("#audio-status") as HTMLElement).dataset.received) > n + 8000,
        { timeout: 60_000 },
        before,
      );
      await page.screenshot({ path: `${shots}/fake-call-answered.png`, fullPage: true });

      // End: the state says why.
      await clickOn(page, "#end");
      const ended = await waitFor(page, "ended", () => {
        const s = document.querySelector("#caller-state") as HTMLElement;
        return s.dataset.state === "ended" && s.textContent;
      });
      assertMatch(String(ended), /Ended — local: BYE/);

      // An incoming call rings here: answer it; another is rejected.
      const a = con.calls.incoming("sip:alice@127.0.0.1:5070");
      await waitFor(page, "a ringing call", () => document.querySelector("#incoming li[data-state=ringing] .answer"));
      await clickOn(page, "#incoming li[data-state=ringing] .answer");
      await waitFor(page, "answered incoming", () => document.querySelector("#incoming li[data-state=answered]"));
      const id = await a;
      assertEquals(con.calls.call(id)?.state, "answered");
      const b = con.calls.incoming("sip:carol@127.0.0.1:5070");
      await waitFor(
        page,
        "another ringing call",
        () => document.querySelector("#incoming li[data-state=ringing] .reject"),
      );
      await clickOn(page, "#incoming li[data-state=ringing] .reject");
      const bid = await b;
      await waitFor(page, "the rejected call's row", () => document.querySelector(`#calls tr[data-state=ended]`));
      // That row may be an earlier call's: the rejection itself is asynchronous, so wait for this call to end
      // (a failure bound of 60 s, not a timing assertion).
      for (let t = 0; con.calls.call(bid)?.state !== "ended" && t < 3000; t++) {
        await new Promise((r) => setTimeout(r, 20));
      }
      assertEquals(con.calls.call(bid)?.reason, "local: 486 Busy Here");
      // The refused upload's 400 is the browser reporting the answer the page showed; nothing else.
      assertEquals(errors.filter((e) => !/status of 400/.test(e)), []);
    } finally {
      await browser.close();
      await con.close();
    }
  },
});

Deno.test({
  name: "console in Chromium (fake calls): many calls page in the table, the charts follow the selected call",
  ignore: skip !== undefined,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const con = await startFakeConsole(200);
    const browser = await launchBrowser();
    try {
      const ids: string[] = [];
      for (let i = 0; i < 23; i++) ids.push((await con.calls.dial(`sip:user${i}@127.0.0.1:5062`)).id);
      const { page, errors } = await openPage(browser, con.url);
      await waitFor(
        page,
        "3 pages",
        () => document.querySelector("#page-info")?.textContent?.startsWith("page 1 of 3"),
      );
      assertEquals(await page.$$eval("#calls tbody tr[data-id]", (r) => r.length), 10);
      await clickOn(page, "#next-page");
      await waitFor(
        page,
        "the second page",
        () => document.querySelector("#page-info")?.textContent?.startsWith("page 2 of 3"),
      );
      await clickOn(page, "#next-page");
      await waitFor(
        page,
        "the last page",
        () => document.querySelector("#page-info")?.textContent?.startsWith("page 3 of 3"),
      );
      assertEquals(await page.$$eval("#calls tbody tr[data-id]", (r) => r.length), 3);
      // Select the oldest call (last page, last row): its charts and title follow it.
      await clickOn(page, `#calls tbody tr[data-id="${ids[0]}"]`);
      await waitFor(page, "the selection", () => document.querySelector("#selected")?.getAttribute("data-id") !== "");
      assertEquals(await page.$eval("#selected", (s) => (s as HTMLElement).dataset.id), ids[0]);
      await waitFor(
        page,
        "charts of the selected call",
        () => Number(document.querySelector("#chart-packets")?.getAttribute("data-points")) >= 2,
      );
      assertMatch(await page.$eval("#selected-title", (t) => t.textContent ?? ""), /To sip:user0@127\.0\.0\.1:5062/);
      await page.select("#filter", "ended");
      await waitFor(
        page,
        "no ended call",
        () => document.querySelector("#page-info")?.textContent?.includes("(0 calls)"),
      );
      assert(errors.length === 0, errors.join("\n"));
    } finally {
      await browser.close();
      await con.close();
    }
  },
});
