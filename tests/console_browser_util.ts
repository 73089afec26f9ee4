// Code inside page.evaluate callbacks runs in the page; these files are type-checked with Deno's library only
// (the DOM library would clash with it in a whole-project check), so the page's globals are declared loosely here.
// deno-lint-ignore no-explicit-any
declare const document: any;
// deno-lint-ignore no-explicit-any
type HTMLElement = any;
// deno-lint-ignore no-explicit-any
type HTMLButtonElement = any;
/**
 * Helpers of the browser console's tests: Debian's Chromium, headless, driven
 * by puppeteer-core (no browser download: the system executable), waits on
 * DOM states with generous bounds (never on durations), screenshots into the
 * test output directory.
 */
import puppeteer, { type Browser, type Page } from "puppeteer-core";
import { repoPath } from "./util.ts";

/** The Chromium executable, or undefined when it is not installed (the tests are then skipped, saying so). */
export function chromiumPath(): string | undefined {
  for (const p of [Deno.env.get("VOXPIPE_CHROMIUM"), "/usr/bin/chromium", "/usr/bin/chromium-browser"]) {
    if (!p) continue;
    try {
      if (Deno.statSync(p).isFile) return p;
    } catch { /* next */ }
  }
  return undefined;
}

/** Why the browser tests are skipped, printed once, or undefined when they run. */
export function browserSkipReason(): string | undefined {
  if (chromiumPath()) return undefined;
  return "Chromium is not installed (apt-get install chromium, or deno task setup): the browser console tests are skipped";
}

/** Where the tests put their screenshots (created): `out/test-console/` or `$VOXPIPE_TEST_OUT/console/`. */
export async function screenshotDir(): Promise<string> {
  const base = Deno.env.get("VOXPIPE_TEST_OUT");
  const dir = base ? `${base}/console` : repoPath("out/test-console");
  await Deno.mkdir(dir, { recursive: true });
  return dir;
}

/** Starts headless Chromium (loopback pages only; audio plays without a gesture, to a fake device). */
export async function launchBrowser(): Promise<Browser> {
  const executablePath = chromiumPath();
  if (!executablePath) throw new Error(browserSkipReason());
  return await puppeteer.launch({
    executablePath,
    headless: true,
    timeout: 60_000,
    protocolTimeout: 120_000,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-dev-shm-usage",
      "--autoplay-policy=no-user-gesture-required",
      "--no-first-run",
      "--no-default-browser-check",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--mute-audio",
      // Two pages drive two consoles at once: neither is throttled as a background tab.
      "--disable-background-timer-throttling",
      "--disable-backgrounding-occluded-windows",
      "--disable-renderer-backgrounding",
    ],
  });
}

/** A page of `width`×`height` with the browser's errors collected. */
export async function openPage(browser: Browser, url: string, width = 1400, height = 1500): Promise<{
  page: Page;
  errors: string[];
}> {
  const page = await browser.newPage();
  const errors: string[] = [];
  page.on("pageerror", (e) => errors.push(`page error: ${e instanceof Error ? e.message : e}`));
  page.on("console", (m) => {
    if (m.type() === "error") errors.push(`console error: ${m.text()}`);
  });
  await page.setViewport({ width, height });
  await page.goto(url, { waitUntil: "load", timeout: 60_000 });
  return { page, errors };
}

/** Generous bound of one wait for a DOM state (the machine may be loaded). */
export const WAIT_MS = 60_000;

/**
 * Waits until `fn` (run in the page) returns a truthy value; fails with
 * `what` and the page's state on timeout.
 */
export async function waitFor<T>(
  page: Page,
  what: string,
  fn: () => T,
  timeout = WAIT_MS,
): Promise<T> {
  try {
    const h = await page.waitForFunction(fn, { timeout, polling: 100 });
    return (await h.jsonValue()) as T;
  } catch (e) {
    const state = await page.evaluate(() => ({
      caller: document.querySelector("#caller-state")?.textContent,
      error: document.querySelector("#caller-error")?.textContent,
      selected: document.querySelector("#selected-reason")?.textContent,
      audio: document.querySelector("#audio-status")?.textContent,
      rows: [...document.querySelectorAll("#calls tbody tr")].map((r) => (r as HTMLElement).innerText).slice(0, 5),
    })).catch(() => ({}));
    throw new Error(`waiting for ${what}: ${e instanceof Error ? e.message : e}; page: ${JSON.stringify(state)}`);
  }
}

/**
 * Clicks the element `selector` names once it exists, with a DOM click in the
 * page (no scrolling or waiting for rendering frames, which a page in the
 * background of a headless browser may not produce).
 */
export async function clickOn(page: Page, selector: string, timeout = WAIT_MS): Promise<void> {
  try {
    await page.waitForFunction(
      (s: string) => {
        const e = document.querySelector(s) as HTMLElement | null;
        if (!e || (e as HTMLButtonElement).disabled) return false;
        e.click();
        return true;
      },
      { timeout, polling: 100 },
      selector,
    );
  } catch (e) {
    throw new Error(`clicking ${selector}: ${e instanceof Error ? e.message : e}`);
  }
}
