// Apollo Client over Tailor: persisted queries by the manifest's ids, sent as GET (so the URL
// is the cache key of every HTTP cache on the way), credentials per request.
import { ApolloClient, ApolloLink, HttpLink, InMemoryCache } from "@apollo/client";
import { PersistedQueryLink } from "@apollo/client/link/persisted-queries";
import { generatePersistedQueryIdsFromManifest } from "@apollo/persisted-query-lists";
import { map } from "rxjs";
import { gatewayUrl } from "./config.js";
import * as identity from "./identity.js";

/**
 * Headers per operation. Private operations carry the credentials (the demo token and the
 * anonymous id). An operation with `context: { segmentOnly: true }` (the segment block) sends
 * only the signed segment token the gateway issued earlier: the answer is then the same for
 * everyone in the segment, and shared caches keep one copy per segment
 * (`Vary: X-Tailor-Segment`). Without a token yet it goes with the credentials, and the
 * gateway's answer carries a token for next time.
 */
const identityLink = new ApolloLink((operation, forward) => {
  const segmentOnly = operation.getContext().segmentOnly && identity.segmentToken();
  const headers = {};
  if (segmentOnly) {
    headers["X-Tailor-Segment"] = identity.segmentToken();
  } else {
    headers["X-Anonymous-Id"] = identity.anonymousId();
    const jwt = identity.token();
    if (jwt) headers.Authorization = `Bearer ${jwt}`;
  }
  operation.setContext(({ headers: previous = {} }) => ({ headers: { ...previous, ...headers } }));
  return forward(operation).pipe(
    map((result) => {
      const issued = operation.getContext().response?.headers?.get("x-tailor-segment");
      if (issued) identity.setSegmentToken(issued);
      return result;
    }),
  );
});

const persisted = new PersistedQueryLink({
  ...generatePersistedQueryIdsFromManifest({
    loadManifest: () => import("../../persisted-query-manifest.json"),
  }),
  useGETForHashedQueries: true,
});

export function createClient() {
  return new ApolloClient({
    link: ApolloLink.from([
      identityLink,
      persisted,
      new HttpLink({ uri: `${gatewayUrl()}/graphql` }),
    ]),
    cache: new InMemoryCache(),
  });
}

/**
 * Fetch options of personal (PRIVATE) queries: the browser revalidates its copy with the ETag
 * (`If-None-Match` -> 304 when unchanged) instead of reusing it for `max-age`, so an event's
 * effect shows on the next read.
 */
export const revalidate = { fetchOptions: { cache: "no-cache" } };
