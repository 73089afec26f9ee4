// Code inside page.evaluate callbacks runs in the page; these files are type-checked with Deno's library only
// (the DOM library would clash with it in a whole-project check), so the page's globals are declared loosely here.
// deno-lint-ignore no-explicit-any
declare const document: any;
// deno-lint-ignore no-explicit-any
type HTMLElement = any;
// deno-lint-ignore no-explicit-any
type SVGElement = any;
/**
 * The browser console end to end, with real SIP on loopback: two voxpipe
 * processes run `pipelines/console.json` (as `deno task console` does), one
 * page drives each in headless Chromium (the Python GUI caller and callee they
 * replace): the caller's page refuses a file it cannot play, places a call
 * with a good one, sees INVITE sent, ringing, answered; the callee's page sees
 * the call ring, answers it, plays its audio in the browser (pause, resume);
 * both pages chart non-zero packets each way with RTCP round-trip times; the
 * caller ends it and both pages say why. And a call placed by sipp shows in a
 * console that only watches it.
 *
 * Waits are for DOM states with generous bounds, never durations. Screenshots
 * go to out/test-console/; with VOXPIPE_UPDATE_DOCS=1 the caller's page during the call is also written to
 * docs/console.png, the README's screenshot.
 */
import { assert, assertEquals, assertMatch } from "./assert.ts";
import { type BoundedProcess, spawnCli } from "./media_util.ts";
import {
  freeUdpPort,
  g711Audio,
  interop,
  outputTail,
  ProcessGroup,
  requireTool,
  scenarioPath,
  sippArgs,
  spawnSipp,
} from "./sip_util.ts";
import { browserSkipReason, clickOn, launchBrowser, openPage, screenshotDir, waitFor } from "./console_browser_util.ts";
import { repoPath } from "./util.ts";

const skip = browserSkipReason();
if (skip) console.warn(`console_sip_browser_test: ${skip}`);

interface RunningConsole {
  proc: BoundedProcess;
  url: string;
  sipPort: number;
}

/** Starts `pipelines/console.json` through the CLI; resolves with its page's URL once it listens for SIP and HTTP. */
async function spawnConsole(procs: ProcessGroup, set: string[] = []): Promise<RunningConsole> {
  const sipPort = freeUdpPort();
  const proc = procs.add(spawnCli([
    "--pipeline",
    "pipelines/console.json",
    "--set",
    `port=${sipPort}`,
    "--set",
    "http_port=0",
    ...set.flatMap((s) => ["--set", s]),
  ], { timeoutMs: 240_000 }));
  await proc.waitForOutput(/\[CONSOLE\] open http:\/\/127\.0\.0\.1:\d+\/ in a browser/, 60_000);
  await proc.waitForOutput(new RegExp(`\\[SIP\\] listening on udp 127\\.0\\.0\\.1:${sipPort}`), 60_000);
  const url = /\[CONSOLE\] open (http:\/\/127\.0\.0\.1:\d+\/) in a browser/.exec(proc.output())![1];
  return { proc, url, sipPort };
}

Deno.test({
  name:
    "console e2e in Chromium: caller page → callee page over SIP: refused file, INVITE, ringing, answer, audio play/pause, charts, end and reasons",
  ignore: skip !== undefined,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const procs = new ProcessGroup();
    const browser = await launchBrowser();
    const shots = await screenshotDir();
    const dir = await Deno.makeTempDir({ prefix: "voxpipe-console-e2e-" });
    try {
      const [caller, callee] = await Promise.all([spawnConsole(procs), spawnConsole(procs, ["user=bob"])]);
      const a = await openPage(browser, caller.url);
      const b = await openPage(browser, callee.url);
      for (const p of [a.page, b.page]) {
        await waitFor(
          p,
          "the connection",
          () => document.querySelector("#conn")?.getAttribute("data-state") === "open",
        );
      }
      const page = a.page;
      await page.bringToFront();
      await waitFor(page, "the library", () => document.querySelectorAll("#file-select option").length > 2);

      // Not audio: refused on the server with the reason, shown on the page; the call cannot start.
      const bogus = `${dir}/speech.flac`;
      await Deno.writeFile(bogus, new TextEncoder().encode("fLaC but then nothing a decoder could use".repeat(8)));
      await (await page.$("#upload") as unknown as { uploadFile(p: string): Promise<void> }).uploadFile(bogus);
      const refused = await waitFor(page, "the upload refused", () => {
        const m = document.querySelector("#file-message") as HTMLElement;
        return m.dataset.state === "error" && m.textContent;
      });
      assertMatch(String(refused), /speech\.flac cannot be played: /);
      const target = `sip:bob@127.0.0.1:${callee.sipPort}`;
      await page.type("#target", target);
      await clickOn(page, "#start");
      await waitFor(page, "start refused", () => !(document.querySelector("#caller-error") as HTMLElement).hidden);
      await page.screenshot({ path: `${shots}/e2e-invalid-file.png` });

      // A real file: the call.
      await page.select("#file-select", "library/hello.wav");
      await waitFor(
        page,
        "the file checked",
        () => document.querySelector("#file-message")?.getAttribute("data-state") === "ok",
      );
      await clickOn(page, "#loop");
      await clickOn(page, "#start");
      await waitFor(
        page,
        "INVITE sent",
        () => document.querySelector("#caller-timeline")?.textContent?.includes("INVITE sent to"),
      );
      await waitFor(
        page,
        "ringing",
        () => document.querySelector("#caller-state")?.getAttribute("data-state") === "ringing",
      );
      assertMatch(await page.$eval("#caller-timeline", (t) => t.textContent ?? ""), /180 Ringing received/);

      // The callee's page: the call rings there; answer it.
      await waitFor(
        b.page,
        "the incoming call",
        () => document.querySelector("#incoming li[data-state=ringing] .answer"),
      );
      await b.page.screenshot({ path: `${shots}/e2e-callee-ringing.png` });
      await clickOn(b.page, "#incoming li[data-state=ringing] .answer");
      await waitFor(
        page,
        "answered",
        () => document.querySelector("#caller-state")?.getAttribute("data-state") === "answered",
      );
      await waitFor(
        b.page,
        "answered here too",
        () => document.querySelector("#incoming li[data-state=answered] .play"),
      );

      // The callee hears the caller's file in the browser; pause, resume.
      await clickOn(b.page, "#incoming li[data-state=answered] .play");
      await waitFor(b.page, "audio playing", () => {
        const s = document.querySelector("#audio-status") as HTMLElement;
        return s.dataset.state === "playing" && Number(s.dataset.received) >= 8000 && Number(s.dataset.played) > 0;
      });
      await clickOn(b.page, "#incoming li[data-state=answered] .pause");
      await waitFor(
        b.page,
        "paused",
        () => document.querySelector("#audio-status")?.getAttribute("data-state") === "paused",
      );
      const heard = await b.page.$eval("#audio-status", (s) => Number((s as HTMLElement).dataset.received));
      await clickOn(b.page, "#incoming li[data-state=answered] .play");
      await b.page.waitForFunction(
        (n) => {
          const s = document.querySelector("#audio-status") as HTMLElement;
          return s.dataset.state === "playing" && Number(s.dataset.received) > n + 8000;
        },
        { timeout: 60_000, polling: 100 },
        heard,
      );

      // Charts on both sides: packets each way, RTCP round-trip time.
      for (const [p, who] of [[page, "caller"], [b.page, "callee"]] as const) {
        await p.bringToFront();
        if (who === "callee") {
          await clickOn(p, "#incoming li[data-state=answered] .show");
        }
        const last = await waitFor(p, `${who}: packets both ways and an RTT`, () => {
          const get = (id: string) => JSON.parse(document.querySelector(id)?.getAttribute("data-last") ?? "{}");
          const pk = get("#chart-packets"), rtt = get("#chart-rtt");
          const points = Number(document.querySelector("#chart-packets")?.getAttribute("data-points"));
          return points >= 3 && pk.sendRate > 0 && pk.recvRate > 0 && rtt.rttMs !== null && rtt.rttMs !== undefined &&
            JSON.stringify({ pk, rtt });
        });
        assert(String(last).includes("sendRate"), String(last));
        const row = await p.$eval("#calls tbody tr[data-state=answered]", (r) => (r as HTMLElement).innerText);
        assertMatch(row, /answered/);
      }
      await waitFor(
        page,
        "the ladder",
        () => Number(document.querySelector("#ladder")?.getAttribute("data-count")) >= 4,
      );
      await waitFor(page, "log lines", () => Number(document.querySelector("#logs")?.getAttribute("data-count")) >= 2);
      const ladder = await page.$$eval("#ladder g.msg", (g) => g.map((x) => (x as SVGElement).dataset.label));
      assertEquals(ladder.slice(0, 1), ["INVITE"]);
      assert(ladder.includes("180 Ringing") && ladder.includes("200 OK") && ladder.includes("ACK"), ladder.join(", "));
      await b.page.screenshot({ path: `${shots}/e2e-callee-answered.png`, fullPage: true });
      await page.bringToFront();
      await page.screenshot({ path: `${shots}/e2e-caller-answered.png`, fullPage: true });
      if (Deno.env.get("VOXPIPE_UPDATE_DOCS") === "1") {
        // The README's screenshot (docs/console.png): taken again on request only, so a test run leaves git clean.
        await page.screenshot({ path: repoPath("docs/console.png"), fullPage: true });
      }

      // The caller ends it: both pages say it ended and why.
      await page.bringToFront();
      await clickOn(page, "#end");
      const ended = await waitFor(page, "ended", () => {
        const s = document.querySelector("#caller-state") as HTMLElement;
        return s.dataset.state === "ended" && s.textContent;
      });
      assertMatch(String(ended), /Ended — local: /);
      const why = await waitFor(b.page, "ended on the callee's page", () => {
        const s = document.querySelector("#selected") as HTMLElement;
        return s.dataset.state === "ended" && document.querySelector("#selected-reason")?.textContent;
      });
      assertMatch(String(why), /Ended: remote: BYE/);
      const endedRow = await waitFor(page, "the table says ended", () => {
        const r = document.querySelector("#calls tbody tr[data-state=ended]") as HTMLElement | null;
        return r && r.innerText;
      });
      assertMatch(String(endedRow), /local: hung up by the application/);
      await page.screenshot({ path: `${shots}/e2e-caller-ended.png`, fullPage: true });
      assertEquals(a.errors.filter((e) => !/status of 400/.test(e)), []);
      assertEquals(b.errors, []);
    } finally {
      await browser.close();
      await procs.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "console e2e in Chromium: a call placed by sipp shows in the console that only watches it, until its BYE",
  ...interop,
  ignore: interop.ignore || skip !== undefined,
  async fn() {
    await requireTool("sipp");
    const procs = new ProcessGroup();
    const browser = await launchBrowser();
    const shots = await screenshotDir();
    const dir = await Deno.makeTempDir({ prefix: "voxpipe-console-sipp-" });
    try {
      const con = await spawnConsole(procs, ["auto_answer=true"]);
      const { page, errors } = await openPage(browser, con.url);
      await waitFor(
        page,
        "the connection",
        () => document.querySelector("#conn")?.getAttribute("data-state") === "open",
      );
      const audio = g711Audio("PCMU", 4);
      await Deno.writeFile(`${dir}/voxpipe_pcmu.raw`, audio.bytes);
      const sipp = procs.add(spawnSipp(
        sippArgs({
          scenario: scenarioPath("uac_pcmu_stream.xml"),
          service: "console",
          calls: 1,
          pauseMs: 5000,
          target: `127.0.0.1:${con.sipPort}`,
        }),
        { cwd: dir, timeoutMs: 60_000 },
      ));
      const row = await waitFor(page, "sipp's call answered in the table", () => {
        const r = document.querySelector("#calls tbody tr[data-state=answered]") as HTMLElement | null;
        return r && r.innerText;
      });
      assertMatch(String(row), /sip:sipp@127\.0\.0\.1/);
      await clickOn(page, "#calls tbody tr[data-state=answered]");
      await waitFor(page, "sipp's packets charted", () => {
        const pk = JSON.parse(document.querySelector("#chart-packets")?.getAttribute("data-last") ?? "{}");
        return pk.recvRate > 0;
      });
      await page.screenshot({ path: `${shots}/e2e-sipp-call.png`, fullPage: true });
      const reason = await waitFor(page, "sipp's BYE", () => {
        const s = document.querySelector("#selected") as HTMLElement;
        return s.dataset.state === "ended" && document.querySelector("#selected-reason")?.textContent;
      });
      assertMatch(String(reason), /Ended: remote: BYE/);
      const sr = await sipp.result;
      assertEquals(sr.code, 0, `sipp: ${outputTail(sr)}`);
      assertEquals(errors, []);
    } finally {
      await browser.close();
      await procs.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
