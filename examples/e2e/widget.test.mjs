// The Vue widget, dropped into a page of another origin, in Chromium against a live
// `tailor demo` (WIDGET_URL and TAILOR_URL from tests/clients/test_browser.py).
import assert from "node:assert/strict";
import { join } from "node:path";
import { test } from "node:test";
import { artifacts, env, launch, recordGraphql, until } from "./lib.mjs";

test("the widget renders recommendations with reasons and tracks a click", async () => {
  const browser = await launch();
  try {
    const page = await browser.context.newPage();
    const errors = [];
    page.on("pageerror", (e) => errors.push(e.message));
    const graphql = recordGraphql(page);
    await page.goto(`${env("WIDGET_URL")}?gateway=${encodeURIComponent(env("TAILOR_URL"))}`);
    const read = () =>
      page.locator("[data-testid=widget-rec]").evaluateAll((nodes) =>
        nodes.map((n) => `${n.dataset.itemId}: ${n.querySelector("small").textContent}`),
      );
    await page.waitForSelector("[data-testid=widget-rec]");
    const first = await read();
    assert.equal(first.length, 4); // data-first="4" on the host page
    for (const row of first) assert.match(row, /: \S/);

    await page.locator("[data-testid=widget-rec] a").first().click();
    await page.waitForSelector("[data-testid=widget-event][data-status=accepted]");
    const tracked = graphql.find((c) => c.operation === "Track");
    assert.ok(tracked, "the click went out as the persisted Track mutation");
    assert.equal(tracked.status, 200);
    const next = await until("recommendations after the click", async () => {
      const now = await read();
      return JSON.stringify(now) !== JSON.stringify(first) && now;
    });
    assert.ok(next.some((row) => row.includes("Because you")), next.join("\n"));
    await page.screenshot({ path: join(artifacts(), "vue-widget.png"), fullPage: true });

    assert.deepEqual(errors, []);
    for (const call of graphql) {
      assert.equal(call.status, 200, call.operation);
      assert.equal(new URL(call.url).searchParams.get("query"), null, "sent by persisted id");
    }
    assert.ok(graphql.some((c) => c.operation === "RecommendedForYou" && c.method === "GET"));
  } finally {
    await browser.close();
  }
});
