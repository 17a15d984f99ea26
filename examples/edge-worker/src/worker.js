/**
 * Tailor at the edge: a Cloudflare-Workers-style module worker (Fetch API + Cache API) in front
 * of the gateway.
 *
 * Bindings (wrangler.toml `[vars]`, or Miniflare `bindings`):
 *   ORIGIN       the gateway, e.g. "https://tailor.internal:8000"
 *   PURGE_TOKEN  the bearer token Tailor's purge fan-out sends (TAILOR_CDN_PURGE_TOKEN)
 *
 * What it does with `GET /graphql` persisted queries (the hash in `extensions`, so the URL is
 * the operation):
 *   - PUBLIC answers (`Cache-Control: public`, `Vary: Accept`) are kept at the edge, keyed by
 *     the URL, `Accept` and `Origin`, for the answer's `s-maxage`;
 *   - SEGMENT answers are fetched with the signed segment token (`X-Tailor-Segment`) INSTEAD of
 *     the user's credentials (Authorization, Cookie and X-Anonymous-Id are removed), and kept
 *     per token (`Vary: X-Tailor-Segment`): everyone of one segment shares one entry, two
 *     segments never do;
 *   - PRIVATE answers go through with the credentials and are never stored.
 * The scope of an operation is only known from an answer, so a request with credentials goes
 * through as it is until the gateway has answered that URL for a caller with credentials once
 * (a PUBLIC answer it brings back is stored); the worker then remembers the scope (per isolate):
 * PUBLIC and SEGMENT URLs are answered from the shared entries from then on, PRIVATE ones keep
 * going through. Only answers the gateway marks shareable (`public`) are ever stored, so a wrong
 * or lost memo costs a round trip, never a leak.
 *
 * Purge: Tailor's purge fan-out (`TAILOR_CDN_PURGE_URL` = `https://<worker>/__tailor/purge`)
 * POSTs `{"tags": [...], "keys": [...]}` with `Authorization: Bearer <PURGE_TOKEN>`. The Cache
 * API has no purge by tag, so the worker keeps, per tag (`Surrogate-Key` of the stored answers),
 * the list of its cache keys in the same cache; a purge deletes those entries.
 *
 * Every answer says what the edge did: `X-Edge-Cache: HIT | MISS | PASS`.
 */

const PURGE_PATH = "/__tailor/purge";
const CACHE_HOST = "https://edge-cache.tailor.invalid";
const CREDENTIALS = ["authorization", "cookie", "x-anonymous-id"];
const SEGMENT_HEADER = "x-tailor-segment";
// Headers of a stored copy that hold what the origin said (restored when it is served).
const ORIGIN_CACHE_CONTROL = "x-tailor-origin-cache-control";
const ORIGIN_VARY = "x-tailor-origin-vary";
const STORED_AT = "x-tailor-stored-at";
const TAG_INDEX_TTL_S = 86400;
const MAX_SCOPE_MEMO = 10000;

/** URL (+ Accept, Origin) -> "PUBLIC" | "SEGMENT" | "PRIVATE", learned from signed-in answers. */
const scopes = new Map();

export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    if (url.pathname === PURGE_PATH) return purge(request, env);
    if (!isPersistedGet(request, url)) return pass(request, env, url);
    return cached(request, env, url);
  },
};

// ---------------------------------------------------------------- requests

function isPersistedGet(request, url) {
  if (request.method !== "GET" || !url.pathname.endsWith("/graphql")) return false;
  try {
    return Boolean(JSON.parse(url.searchParams.get("extensions") || "{}").persistedQuery);
  } catch {
    return false;
  }
}

function originUrl(env, url) {
  if (!env.ORIGIN) throw new Error("the ORIGIN binding (the gateway's URL) is not set");
  return new URL(url.pathname + url.search, env.ORIGIN).toString();
}

const hasCredentials = (request) => CREDENTIALS.some((h) => request.headers.has(h));

/** The request as it is (credentials included): what the edge must not keep. */
async function pass(request, env, url) {
  const response = await fetch(new Request(originUrl(env, url), request));
  return withEdgeStatus(response, "PASS");
}

/** A copy of `request` for a shared answer: no credentials, no conditionals, the token only. */
function sharedRequest(request, env, url, token) {
  const headers = new Headers(request.headers);
  for (const name of [...CREDENTIALS, "if-none-match", "if-modified-since", SEGMENT_HEADER]) {
    headers.delete(name);
  }
  if (token) headers.set(SEGMENT_HEADER, token);
  return new Request(originUrl(env, url), { method: "GET", headers });
}

async function sha256Hex(text) {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** The Cache API key of one answer: URL, Accept and Origin, and the segment token if any. */
async function cacheKey(request, url, token) {
  const key = new URL(url.pathname + url.search, CACHE_HOST);
  key.searchParams.set("__accept", (request.headers.get("accept") || "").trim().toLowerCase());
  key.searchParams.set("__origin", request.headers.get("origin") || "");
  key.searchParams.set("__scope", token === undefined ? "public" : `segment:${await sha256Hex(token)}`);
  return key.toString();
}

// ---------------------------------------------------------------- the cached path

async function cached(request, env, url) {
  const token = request.headers.get(SEGMENT_HEADER) || "";
  const memo = `${url.search}|${request.headers.get("accept") || ""}|${request.headers.get("origin") || ""}`;
  if (hasCredentials(request)) {
    const learned = scopes.get(memo);
    // SEGMENT answers need the token to stand in for the credentials.
    if (learned !== "PUBLIC" && !(learned === "SEGMENT" && token)) {
      const response = await fetch(new Request(originUrl(env, url), request));
      const ttl = sharedTtl(response.headers.get("cache-control") || "");
      if (learn(memo, response) === "PUBLIC" && ttl > 0) {
        // `public` with no Vary on who is asking: the gateway computed it from nobody's data,
        // so a shared cache may keep it although the request had credentials (RFC 9111 §3.5).
        const body = await response.arrayBuffer();
        const key = await cacheKey(request, url, undefined);
        await store(caches.default, key, response, body, ttl);
        return serve(request, new Response(body, response), "PASS");
      }
      return withEdgeStatus(response, "PASS");
    }
  }
  const cache = caches.default;
  const publicKey = await cacheKey(request, url, undefined);
  const segmentKey = await cacheKey(request, url, token);
  for (const key of [publicKey, segmentKey]) {
    const hit = await cache.match(key);
    if (hit) return serve(request, hit, "HIT");
  }
  const response = await fetch(sharedRequest(request, env, url, token));
  const cacheControl = response.headers.get("cache-control") || "";
  const ttl = sharedTtl(cacheControl);
  if (response.status !== 200 || !/\bpublic\b/.test(cacheControl) || ttl <= 0) {
    // Not shareable (an error, a miss of the persisted query, or an answer that needs the
    // caller after all): never stored. A caller with credentials gets the answer made with
    // them, and the URL is learned again.
    if (hasCredentials(request)) {
      scopes.delete(memo);
      return pass(request, env, url);
    }
    return withEdgeStatus(response, "PASS");
  }
  const vary = (response.headers.get("vary") || "").toLowerCase();
  const key = vary.includes(SEGMENT_HEADER) ? segmentKey : publicKey;
  const body = await response.arrayBuffer();
  await store(cache, key, response, body, ttl);
  return serve(request, new Response(body, response), "MISS");
}

/** Remember the scope of a credentialed answer for its URL; returns it (undefined: none). */
function learn(memo, response) {
  const cacheControl = response.headers.get("cache-control") || "";
  if (response.status !== 200 || /no-store/.test(cacheControl)) return undefined;
  const vary = (response.headers.get("vary") || "").toLowerCase();
  const tags = (response.headers.get("surrogate-key") || "").split(/\s+/);
  let scope = "PRIVATE";
  if (/\bpublic\b/.test(cacheControl)) {
    scope = vary.includes(SEGMENT_HEADER) ? "SEGMENT" : "PUBLIC";
  } else if (tags.some((t) => t.startsWith("segment:")) && !tags.some((t) => t.startsWith("user:"))) {
    // A segment answer computed from the caller's credentials: private for this request, but
    // the segment token the gateway sent with it stands for the same answer.
    scope = "SEGMENT";
  }
  if (scopes.size >= MAX_SCOPE_MEMO) scopes.clear();
  scopes.set(memo, scope);
  return scope;
}

/** Seconds a shared cache may keep the answer: `s-maxage`, else `max-age`. */
function sharedTtl(cacheControl) {
  const shared = /s-maxage=(\d+)/.exec(cacheControl) || /max-age=(\d+)/.exec(cacheControl);
  return shared ? Number(shared[1]) : 0;
}

async function store(cache, key, response, body, ttl) {
  const headers = new Headers(response.headers);
  headers.set(ORIGIN_CACHE_CONTROL, response.headers.get("cache-control"));
  headers.set(ORIGIN_VARY, response.headers.get("vary") || "");
  headers.set(STORED_AT, String(Date.now()));
  headers.set("cache-control", `public, max-age=${ttl}`);
  headers.delete("vary"); // the key already holds what the answer varies on
  headers.delete("set-cookie");
  headers.delete("age");
  // fetch() hands the worker the decoded body: store it as such (the edge compresses for each
  // client again by its Accept-Encoding).
  headers.delete("content-encoding");
  headers.delete("content-length");
  await cache.put(key, new Response(body, { status: 200, headers }));
  const tags = (response.headers.get("surrogate-key") || "").split(/\s+/).filter(Boolean);
  // The index is written before the answer leaves, so a purge right after finds the entry.
  await Promise.all(tags.map((tag) => indexTag(cache, tag, key)));
}

/** The answer as the client gets it: the origin's Cache-Control and Vary, an Age, ETag/304. */
function serve(request, stored, edgeStatus) {
  const headers = new Headers(stored.headers);
  const originCacheControl = headers.get(ORIGIN_CACHE_CONTROL);
  if (originCacheControl) {
    headers.set("cache-control", originCacheControl);
    headers.set("vary", headers.get(ORIGIN_VARY) || "");
    const storedAt = Number(headers.get(STORED_AT) || Date.now());
    headers.set("age", String(Math.max(0, Math.floor((Date.now() - storedAt) / 1000))));
  }
  for (const name of [ORIGIN_CACHE_CONTROL, ORIGIN_VARY, STORED_AT]) headers.delete(name);
  headers.set("x-edge-cache", edgeStatus);
  // RFC 9110 weak comparison (a compressed answer's ETag is weak).
  const weak = (tag) => tag.trim().replace(/^W\//, "");
  const etag = headers.get("etag");
  const ifNoneMatch = request.headers.get("if-none-match");
  if (etag && ifNoneMatch && ifNoneMatch.split(",").some((t) => t.trim() === "*" || weak(t) === weak(etag))) {
    return new Response(null, { status: 304, headers });
  }
  return new Response(stored.body, { status: stored.status, headers });
}

function withEdgeStatus(response, edgeStatus) {
  const copy = new Response(response.body, response);
  copy.headers.set("x-edge-cache", edgeStatus);
  return copy;
}

// ---------------------------------------------------------------- purge by tag

const tagKey = (tag) => `${CACHE_HOST}/__tags/${encodeURIComponent(tag)}`;

async function indexTag(cache, tag, key) {
  const found = await cache.match(tagKey(tag));
  const keys = new Set(found ? await found.json() : []);
  if (keys.has(key)) return;
  keys.add(key);
  await cache.put(
    tagKey(tag),
    new Response(JSON.stringify([...keys]), {
      headers: { "content-type": "application/json", "cache-control": `public, max-age=${TAG_INDEX_TTL_S}` },
    }),
  );
}

/** `POST /__tailor/purge` `{"tags": [...], "keys": [...]}` from Tailor's purge fan-out. */
async function purge(request, env) {
  if (request.method !== "POST") return json({ error: "POST a purge" }, 405, { allow: "POST" });
  if (!env.PURGE_TOKEN || request.headers.get("authorization") !== `Bearer ${env.PURGE_TOKEN}`) {
    return json({ error: "a purge needs Authorization: Bearer <PURGE_TOKEN>" }, 401);
  }
  let data;
  try {
    data = await request.json();
  } catch {
    return json({ error: "the body is not JSON" }, 400);
  }
  const tags = Array.isArray(data?.tags) ? data.tags.filter((t) => typeof t === "string" && t) : null;
  if (!tags) return json({ error: 'the body is {"tags": [...], "keys": [...]}' }, 400);
  const cache = caches.default;
  let purged = 0;
  for (const tag of tags) {
    const found = await cache.match(tagKey(tag));
    if (!found) continue;
    for (const key of await found.json()) {
      if (await cache.delete(key)) purged += 1;
    }
    await cache.delete(tagKey(tag));
  }
  // `keys` name the gateway's own cache entries, which the edge does not hold.
  return json({ purged, tags });
}

function json(doc, status = 200, headers = {}) {
  return new Response(JSON.stringify(doc), {
    status,
    headers: { "content-type": "application/json", "cache-control": "no-store", ...headers },
  });
}
