// A real browser for the end-to-end tests: Debian's Chromium driven by
// puppeteer-core (no browser download), headless, in a throw-away profile.
import { existsSync, rmSync } from "node:fs";
import puppeteer, { type Browser, type Page } from "puppeteer-core";
import { ensureCommands } from "./packages";
import { tempDir } from "./proxy";

/** The binary itself: Debian's /usr/bin/chromium wrapper script does not start here. */
export const CHROMIUM = "/usr/lib/chromium/chromium";

export interface TestBrowser {
  browser: Browser;
  /** A fresh incognito-like context (its own cookies) and one page in it, at width × height. */
  page(width: number, height: number): Promise<Page>;
  close(): Promise<void>;
}

/**
 * Launch Chromium, or return why not (for a visible SKIP message naming it).
 * The caller closes it (in afterAll) whatever happens.
 */
export async function launchBrowser(): Promise<TestBrowser | string> {
  const missing = existsSync(CHROMIUM) ? null : ensureCommands([CHROMIUM], ["chromium"]);
  if (missing !== null || !existsSync(CHROMIUM)) return `chromium (${CHROMIUM}): ${missing ?? "missing"}`;
  const profile = tempDir("mcproxy-chromium-");
  const args = ["--disable-gpu", "--no-first-run", "--no-default-browser-check", "--disable-dev-shm-usage"];
  if (process.getuid?.() === 0) args.push("--no-sandbox");
  let browser: Browser;
  try {
    browser = await puppeteer.launch({
      executablePath: CHROMIUM,
      headless: true,
      userDataDir: profile,
      args,
      timeout: 30_000,
      protocolTimeout: 30_000,
    });
  } catch (e) {
    rmSync(profile, { recursive: true, force: true });
    return `chromium (${CHROMIUM}) did not start: ${(e as Error).message}`;
  }
  return {
    browser,
    async page(width, height) {
      const ctx = await browser.createBrowserContext();
      const p = await ctx.newPage();
      p.setDefaultTimeout(15_000);
      await p.setViewport({ width, height });
      return p;
    },
    async close() {
      await browser.close().catch(() => {});
      // Chromium's own child processes may still be writing the profile for a moment.
      rmSync(profile, { recursive: true, force: true, maxRetries: 5, retryDelay: 100 });
    },
  };
}
