// Shared by the browser tests: Debian's Chromium driven by playwright-core (no browser download),
// and the settings the pytest harness (tests/clients/) passes in the environment.
import { mkdtempSync, mkdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

export function env(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set (the pytest harness in tests/clients/ sets it)`);
  return value;
}

/** Chromium from the machine's packages, headless, with a throw-away profile directory (its
 * own HTTP cache and storage: each launch is a new visitor). */
export async function launch() {
  const executablePath = process.env.CHROMIUM_PATH || "/usr/bin/chromium";
  const profile = mkdtempSync(join(tmpdir(), "tailor-chromium-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath,
    headless: true,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  const browser = {
    context,
    async close() {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
  return browser;
}

/** Every /graphql response a page receives, with its operation, headers and status. */
export function recordGraphql(page) {
  const seen = [];
  page.on("response", async (response) => {
    const url = new URL(response.url());
    if (!url.pathname.endsWith("/graphql") || response.request().method() === "OPTIONS") return;
    const request = response.request();
    let operation = url.searchParams.get("operationName");
    if (!operation && request.postData()) {
      try {
        operation = JSON.parse(request.postData()).operationName;
      } catch {
        operation = null;
      }
    }
    seen.push({
      operation,
      method: request.method(),
      status: response.status(),
      headers: response.headers(),
      requestHeaders: request.headers(),
      body: request.postData(),
      url: response.url(),
    });
  });
  return seen;
}

export function artifacts() {
  const dir = env("TAILOR_ARTIFACTS");
  mkdirSync(dir, { recursive: true });
  return dir;
}

/** Wait until `fn` returns a truthy value (polling), or fail with `what`. */
export async function until(what, fn, { timeout = 15000, every = 200 } = {}) {
  const deadline = Date.now() + timeout;
  let last;
  while (Date.now() < deadline) {
    last = await fn();
    if (last) return last;
    await new Promise((r) => setTimeout(r, every));
  }
  throw new Error(`timed out waiting for ${what} (last: ${JSON.stringify(last)})`);
}
