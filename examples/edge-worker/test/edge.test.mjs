// The edge worker under Miniflare (workerd) in front of a live gateway. Run by
// tests/clients/test_edge_worker.py, which starts `tailor demo` and passes, in the environment:
//   TAILOR_URL, TAILOR_ADMIN_TOKEN, TAILOR_PURGE_TOKEN, EDGE_PORT (the gateway's
//   TAILOR_CDN_PURGE_URL points at it), TAILOR_SAME_SEGMENT_TOKENS (JSON: two users' tokens of
//   one segment), TAILOR_OTHER_SEGMENT_TOKEN (a user of another segment).
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { after, before, test } from "node:test";
import { createWorker } from "../scripts/dev.mjs";

function env(name) {
  const value = process.env[name];
  assert.ok(value, `${name} is not set (tests/clients/test_edge_worker.py sets it)`);
  return value;
}

const gateway = env("TAILOR_URL");
const [userA, userB] = JSON.parse(env("TAILOR_SAME_SEGMENT_TOKENS"));
const userC = env("TAILOR_OTHER_SEGMENT_TOKEN");
const manifest = JSON.parse(
  readFileSync(new URL("../../persisted-query-manifest.json", import.meta.url), "utf8"),
);
const hashOf = (name) => manifest.operations.find((op) => op.name === name).id;

let mf;
let edge;

before(async () => {
  mf = createWorker({
    origin: gateway,
    purgeToken: env("TAILOR_PURGE_TOKEN"),
    port: Number(env("EDGE_PORT")),
  });
  edge = (await mf.ready).toString();
});

after(async () => {
  await mf?.dispose();
});

/** GET a persisted query through the worker, as Apollo Client sends it (hash only). */
async function get(name, variables, { token, segment } = {}) {
  const url = new URL("/graphql", edge);
  url.searchParams.set("operationName", name);
  url.searchParams.set("variables", JSON.stringify(variables));
  url.searchParams.set(
    "extensions",
    JSON.stringify({ persistedQuery: { version: 1, sha256Hash: hashOf(name) } }),
  );
  const headers = { accept: "application/graphql-response+json" };
  if (token) headers.authorization = `Bearer ${token}`;
  if (segment) headers["x-tailor-segment"] = segment;
  const response = await fetch(url, { headers });
  const body = await response.text();
  assert.equal(response.status, 200, `${name}: ${body}`);
  assert.ok(!JSON.parse(body).errors, `${name}: ${body}`);
  return {
    edge: response.headers.get("x-edge-cache"),
    cacheControl: response.headers.get("cache-control") || "",
    etag: response.headers.get("etag"),
    segment: response.headers.get("x-tailor-segment"),
    body,
    data: JSON.parse(body).data,
  };
}

test("a public answer is served from the edge, to anyone", async () => {
  const first = await get("Trending", { first: 5 });
  assert.equal(first.edge, "MISS");
  assert.match(first.cacheControl, /public/);
  const second = await get("Trending", { first: 5 });
  assert.equal(second.edge, "HIT");
  assert.equal(second.etag, first.etag);
  assert.equal(second.body, first.body);
  // A signed-in caller: the first answer for signed-in callers tells the worker the operation
  // is PUBLIC (it goes through once); from then on the edge answers without the credentials.
  assert.equal((await get("Trending", { first: 5 }, { token: userA })).edge, "PASS");
  const signedIn = await get("Trending", { first: 5 }, { token: userA });
  assert.equal(signedIn.edge, "HIT");
  assert.equal(signedIn.body, first.body);
});

test("segment answers: one entry per segment token, shared in a segment, never across", async () => {
  const vars = { first: 4 };
  // Signed in, no token yet: the gateway answers privately and issues the segment token.
  const a0 = await get("SegmentPicks", vars, { token: userA });
  assert.equal(a0.edge, "PASS");
  assert.match(a0.cacheControl, /private/);
  assert.ok(a0.segment, "the gateway issues a segment token with a private segment answer");
  // With the token, the worker forwards the token instead of the credentials: the gateway's
  // answer is then shareable (it would be private with the credentials).
  const a1 = await get("SegmentPicks", vars, { token: userA, segment: a0.segment });
  assert.equal(a1.edge, "MISS");
  assert.match(a1.cacheControl, /public/);
  assert.match(a1.cacheControl, /s-maxage/);
  assert.deepEqual(a1.data, a0.data);
  assert.ok(a1.data.segmentRecommendations.length > 0);

  const b0 = await get("SegmentPicks", vars, { token: userB });
  assert.equal(b0.edge, "PASS");
  // Tokens of one segment are one string within a quarter of their lifetime.
  assert.equal(b0.segment, a0.segment, "users A and B are in one segment");
  const b1 = await get("SegmentPicks", vars, { token: userB, segment: b0.segment });
  assert.equal(b1.edge, "HIT", "B shares A's entry");
  assert.equal(b1.body, a1.body);

  const c0 = await get("SegmentPicks", vars, { token: userC });
  assert.notEqual(c0.segment, a0.segment, "user C is in another segment");
  const c1 = await get("SegmentPicks", vars, { token: userC, segment: c0.segment });
  assert.equal(c1.edge, "MISS", "another segment never gets A's entry");
  assert.notEqual(c1.body, a1.body);
  assert.deepEqual(c1.data, c0.data);

  // The token alone (a visitor whose app kept it) is the key: A's segment entry.
  const anonymous = await get("SegmentPicks", vars, { segment: a0.segment });
  assert.equal(anonymous.edge, "HIT");
  assert.equal(anonymous.body, a1.body);
});

test("a private answer is never stored", async () => {
  const vars = { first: 3 };
  for (let i = 0; i < 2; i++) {
    const mine = await get("RecommendedForYou", vars, { token: userA });
    assert.equal(mine.edge, "PASS");
    assert.match(mine.cacheControl, /private/);
    assert.equal(mine.data.me.anonymous, false);
  }
  const userId = (await get("RecommendedForYou", vars, { token: userA })).data.me.id;
  // The same URL without credentials never gets A's answer ...
  const anonymous = await get("RecommendedForYou", vars);
  assert.notEqual(anonymous.edge, "HIT");
  assert.ok(!anonymous.body.includes(userId), anonymous.body);
  // ... nor does A get whatever the anonymous request left at the edge.
  const again = await get("RecommendedForYou", vars, { token: userA });
  assert.equal(again.edge, "PASS");
  assert.equal(again.data.me.id, userId);
  // Another user of A's segment, same URL: their own answer.
  const other = await get("RecommendedForYou", vars, { token: userB });
  assert.equal(other.edge, "PASS");
  assert.notEqual(other.data.me.id, userId);
});

test("a purge by tag through Tailor's fan-out empties the edge entries", async () => {
  assert.equal((await get("Trending", { first: 5 })).edge, "HIT");
  const segment = (await get("SegmentPicks", { first: 4 }, { token: userA })).segment;
  assert.equal((await get("SegmentPicks", { first: 4 }, { token: userA, segment })).edge, "HIT");

  const refused = await fetch(new URL("/__tailor/purge", edge), {
    method: "POST",
    headers: { "content-type": "application/json", authorization: "Bearer wrong" },
    body: JSON.stringify({ tags: ["type:Recommendation"] }),
  });
  assert.equal(refused.status, 401);
  assert.equal((await get("Trending", { first: 5 })).edge, "HIT");

  // The gateway's admin purge forwards to the worker (TAILOR_CDN_PURGE_URL).
  const purge = await fetch(new URL("/admin/purge", gateway), {
    method: "POST",
    headers: {
      "content-type": "application/json",
      authorization: `Bearer ${env("TAILOR_ADMIN_TOKEN")}`,
    },
    body: JSON.stringify({ tags: ["type:Recommendation"] }),
  });
  const summary = await purge.json();
  assert.equal(purge.status, 200, JSON.stringify(summary));
  assert.equal(summary.cdn?.forwarded, true, JSON.stringify(summary));

  assert.equal((await get("Trending", { first: 5 })).edge, "MISS");
  assert.equal((await get("SegmentPicks", { first: 4 }, { token: userA, segment })).edge, "MISS");
  assert.equal((await get("Trending", { first: 5 })).edge, "HIT");
});
