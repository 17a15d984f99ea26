// The React storefront in Chromium through the edge worker (Miniflare) in front of a live
// `tailor demo`: CORS and persisted queries work through the edge, the public block of the
// second visitor comes from the edge, personal blocks never do. EDGE_BROWSER_PORT,
// STOREFRONT_URL and TAILOR_URL from tests/clients/test_browser.py.
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { createWorker } from "../edge-worker/scripts/dev.mjs";
import { artifacts, env, launch, recordGraphql, until } from "./lib.mjs";

let worker;
let edge;

before(async () => {
  worker = createWorker({
    origin: env("TAILOR_URL"),
    purgeToken: "not-used-here",
    port: Number(env("EDGE_BROWSER_PORT")),
  });
  edge = (await worker.ready).toString().replace(/\/$/, "");
});
after(async () => {
  await worker?.dispose();
});

async function visit(name) {
  const browser = await launch();
  try {
    const page = await browser.context.newPage();
    const errors = [];
    page.on("pageerror", (e) => errors.push(e.message));
    const graphql = recordGraphql(page);
    await page.goto(`${env("STOREFRONT_URL")}?gateway=${encodeURIComponent(edge)}`);
    for (const block of ["trending", "for-you"]) {
      await page.waitForSelector(`[data-testid=${block}] [data-testid=rec]`);
    }
    const calls = {};
    for (const op of ["Trending", "RecommendedForYou"]) {
      calls[op] = await until(op, () => graphql.find((c) => c.operation === op));
    }
    await page.screenshot({ path: join(artifacts(), `storefront-edge-${name}.png`), fullPage: true });
    assert.deepEqual(errors, []);
    for (const call of graphql) assert.equal(call.status, 200, call.operation);
    return calls;
  } finally {
    await browser.close();
  }
}

test("through the edge worker: public blocks from the edge, personal ones never", async () => {
  const first = await visit("first");
  // A browser always sends its X-Anonymous-Id: the first answer goes through with it.
  assert.equal(first.Trending.headers["x-edge-cache"], "PASS");
  assert.match(first.Trending.headers["cache-control"], /public/);
  assert.equal(first.RecommendedForYou.headers["x-edge-cache"], "PASS");
  assert.match(first.RecommendedForYou.headers["cache-control"], /private/);

  const second = await visit("second");
  assert.equal(second.Trending.url, first.Trending.url);
  assert.equal(second.Trending.headers["x-edge-cache"], "HIT");
  assert.equal(second.Trending.headers.etag, first.Trending.headers.etag);
  // CORS headers of the stored answer are for this origin (the edge keys by Origin).
  assert.equal(
    second.Trending.headers["access-control-allow-origin"],
    new URL(env("STOREFRONT_URL")).origin,
  );
  assert.equal(second.RecommendedForYou.headers["x-edge-cache"], "PASS");
});
