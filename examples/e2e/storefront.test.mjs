// The React storefront in Chromium against a live `tailor demo` (tests/clients/test_browser.py
// passes STOREFRONT_URL, TAILOR_URL, TAILOR_SAMPLE_USER_TOKEN: a demo user with a history,
// TAILOR_NEW_USER_TOKEN: a user without one, TAILOR_ARTIFACTS: where screenshots go).
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { artifacts, env, launch, recordGraphql, until } from "./lib.mjs";

const site = `${env("STOREFRONT_URL")}?gateway=${encodeURIComponent(env("TAILOR_URL"))}`;
const shots = artifacts();
let visitor; // one browser profile: the anonymous visitor who later signs in

before(async () => {
  visitor = await launch();
});
after(async () => {
  await visitor?.close();
});

async function open(browser) {
  const page = await browser.context.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  const graphql = recordGraphql(page);
  await page.goto(site);
  return { page, errors, graphql };
}

async function recs(page, block) {
  await page.waitForSelector(`[data-testid=${block}] [data-testid=rec]`);
  return page.locator(`[data-testid=${block}] [data-testid=rec]`).evaluateAll((nodes) =>
    nodes.map((n) => ({
      id: n.dataset.itemId,
      reason: n.querySelector("[data-testid=reason]").textContent,
      source: n.querySelector(".source").textContent,
      ...(n.dataset.recommendationId ? { recommendationId: n.dataset.recommendationId } : {}),
    })),
  );
}

const profileEvents = async (page) =>
  Number(await page.textContent("[data-testid=profile-events]"));

/** Every GraphQL call of the page went by its persisted id, and none failed. */
function assertPersistedAndClean(graphql, errors) {
  assert.deepEqual(errors, []);
  assert.ok(graphql.length > 0);
  for (const call of graphql) {
    assert.equal(call.status, 200, `${call.operation}: ${call.status}`);
    if (call.method === "GET") {
      const url = new URL(call.url);
      assert.equal(url.searchParams.get("query"), null, `${call.operation} sent its text`);
      assert.match(url.searchParams.get("extensions"), /sha256Hash/);
    }
  }
}

test("signed in: trending and personal recommendations, each with its reason", async () => {
  const browser = await launch();
  try {
    const { page, errors, graphql } = await open(browser);
    await page.fill("[data-testid=token-input]", env("TAILOR_SAMPLE_USER_TOKEN"));
    await page.click("[data-testid=sign-in]");
    await page.waitForSelector("[data-testid=merge-status]");
    await until("the profile's events", async () => (await profileEvents(page)) > 0);
    const trending = await recs(page, "trending");
    assert.ok(trending.length >= 3);
    for (const rec of trending) assert.match(rec.reason, /\S/);
    const mine = await recs(page, "for-you");
    assert.ok(mine.length >= 3);
    for (const rec of mine) assert.match(rec.reason, /\S/);
    // A user with a history gets more than the trending list.
    assert.ok(
      mine.some((rec) => rec.source !== "trending"),
      `personal sources expected: ${JSON.stringify(mine)}`,
    );
    const segment = await recs(page, "segment-picks");
    assert.ok(segment.length > 0);
    assert.match(segment[0].reason, /Popular with/);
    await page.screenshot({ path: join(shots, "storefront-signed-in.png"), fullPage: true });

    // The next visit asks for the segment block with the segment token alone: a shareable
    // answer (public, keyed by the token), no credentials on the wire.
    const before = graphql.length;
    await page.reload();
    await recs(page, "segment-picks");
    const call = await until("the segment block's request", () =>
      graphql.slice(before).find((c) => c.operation === "SegmentPicks"),
    );
    assert.ok(call.requestHeaders["x-tailor-segment"], "sent with the segment token");
    assert.equal(call.requestHeaders.authorization, undefined);
    assert.equal(call.requestHeaders["x-anonymous-id"], undefined);
    assert.match(call.headers["cache-control"], /public/);
    assert.match(call.headers.vary, /X-Tailor-Segment/);
    assertPersistedAndClean(graphql, errors);
  } finally {
    await browser.close();
  }
});

let historyBeforeSignIn;

test("a click sends a tracked event and the next 'recommended for you' changes", async () => {
  const { page, errors, graphql } = await open(visitor);
  const first = await recs(page, "for-you");
  const target = first[2];
  await page.click(`[data-testid=for-you] [data-item-id="${target.id}"] a`);
  await page.waitForSelector("[data-testid=item-title]");
  await page.waitForSelector('[data-testid=event][data-type=click][data-status=accepted]');
  await page.waitForSelector('[data-testid=event][data-type=view][data-status=accepted]');
  const tracked = graphql.find((c) => c.operation === "Track" && c.method === "POST");
  assert.ok(tracked, "the click went to the gateway as a Track mutation");
  const [click] = JSON.parse(tracked.body).variables.events;
  assert.equal(click.type, "click");
  assert.equal(click.itemId, target.id);
  assert.deepEqual(
    { list: click.properties.list, position: click.properties.position },
    { list: "for-you", position: 2 },
  );
  assert.equal(click.properties.source, target.source);
  // The recommendation's id (signed by the gateway, for attribution) goes along with the click.
  assert.ok(target.recommendationId, "recommendations carry a recommendationId");
  assert.equal(click.properties.recommendationId, target.recommendationId);
  await recs(page, "similar");
  await page.click("[data-testid=add-to-cart]");
  await page.waitForSelector('[data-testid=event][data-type=add_to_cart][data-status=accepted]');
  await page.screenshot({ path: join(shots, "storefront-item.png"), fullPage: true });

  await page.click("header h1 a");
  const next = await until("different recommendations", async () => {
    const now = await recs(page, "for-you");
    return JSON.stringify(now) !== JSON.stringify(first) && now;
  });
  assert.ok(
    next.some((rec) => rec.reason.includes("Because you")),
    `reasons from the visitor's own events: ${JSON.stringify(next)}`,
  );
  historyBeforeSignIn = await until("the visitor's events", async () => {
    const n = await profileEvents(page);
    return n >= 3 && n;
  });
  await page.screenshot({ path: join(shots, "storefront-after-click.png"), fullPage: true });

  // Search answers too.
  await page.fill("[data-testid=search-input]", first[0].id === target.id ? "dress" : "shoes");
  await page.click("[data-testid=search-button]");
  assert.ok((await recs(page, "search-results")).length > 0);
  assertPersistedAndClean(graphql, errors);
  await page.close();
});

test("anonymous -> signed in: the identity merge keeps the history", async () => {
  assert.ok(historyBeforeSignIn, "runs after the click test (same visitor)");
  const { page, errors, graphql } = await open(visitor);
  // localStorage kept the visitor: the profile is the one that clicked.
  await until("the visitor's profile", async () => (await profileEvents(page)) === historyBeforeSignIn);
  const anonymousReasons = (await recs(page, "for-you")).map((r) => r.reason);
  await page.fill("[data-testid=token-input]", env("TAILOR_NEW_USER_TOKEN"));
  await page.click("[data-testid=sign-in]");
  await page.waitForSelector("[data-testid=merge-status]");
  const status = await page.textContent("[data-testid=merge-status]");
  assert.match(status, /\(accepted\)/);
  // The new user had no events of their own: everything in the profile came from the merge.
  const merged = await until("the merged profile", async () => {
    const n = Number(await page.textContent("[data-testid=merged-events]"));
    return n >= historyBeforeSignIn && n;
  });
  assert.equal(merged, historyBeforeSignIn);
  assert.equal(
    await page.textContent("[data-testid=viewer-id]"),
    status.match(/is now user (\S+),/)[1],
  );
  const signedInReasons = (await recs(page, "for-you")).map((r) => r.reason);
  assert.ok(
    signedInReasons.some((r) => r.includes("Because you")),
    `the merged history drives the recommendations: ${signedInReasons}`,
  );
  assert.ok(anonymousReasons.length > 0);
  await page.screenshot({ path: join(shots, "storefront-merged.png"), fullPage: true });
  assertPersistedAndClean(graphql, errors);
  await page.close();
});

test("the second load of a public block is a cache hit", async () => {
  const firstVisitor = await launch();
  const secondVisitor = await launch();
  try {
    const one = await open(firstVisitor);
    await recs(one.page, "trending");
    const first = await until("Trending", () => one.graphql.find((c) => c.operation === "Trending"));
    assert.match(first.headers["cache-control"], /public/);
    assert.match(first.headers["cache-control"], /s-maxage=\d+/);
    const two = await open(secondVisitor);
    await recs(two.page, "trending");
    const second = await until("Trending", () => two.graphql.find((c) => c.operation === "Trending"));
    assert.equal(second.url, first.url, "the persisted query's URL is the cache key");
    assert.equal(second.headers["x-cache"], "HIT");
    assert.equal(second.headers.etag, first.headers.etag);
    assert.ok(Number(second.headers.age) >= 0);
    await two.page.screenshot({ path: join(shots, "storefront-anonymous.png"), fullPage: true });
    assertPersistedAndClean([...one.graphql, ...two.graphql], [...one.errors, ...two.errors]);
  } finally {
    await firstVisitor.close();
    await secondVisitor.close();
  }
});
