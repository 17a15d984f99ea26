import { useEffect, useRef, useState } from "react";
import { useApolloClient, useMutation, useQuery } from "@apollo/client/react";
import {
  IDENTIFY,
  ITEM_PAGE,
  RECOMMENDED_FOR_YOU,
  SEARCH,
  SEGMENT_PICKS,
  TRENDING,
  VIEWER,
} from "./operations.js";
import { revalidate } from "./client.js";
import { EVENT, cameFrom, fromRecommendation, useEventLog, useTrack } from "./events.js";
import * as identity from "./identity.js";

function useRoute() {
  const [hash, setHash] = useState(window.location.hash);
  useEffect(() => {
    const onChange = () => setHash(window.location.hash);
    window.addEventListener("hashchange", onChange);
    return () => window.removeEventListener("hashchange", onChange);
  }, []);
  const [, page, arg] = hash.split("/");
  if (page === "item" && arg) return { page: "item", id: decodeURIComponent(arg) };
  if (page === "search" && arg) return { page: "search", text: decodeURIComponent(arg) };
  return { page: "home" };
}

const price = (item) =>
  item.price == null ? "" : `${item.price.toFixed(2)} ${item.currency}`;

function RecList({ testId, title, recs, list, loading, error, note }) {
  const track = useTrack();
  return (
    <section className="block" data-testid={testId}>
      <h2>{title}</h2>
      {note && <p className="note">{note}</p>}
      {loading && <p className="note">Loading…</p>}
      {error && <p className="error">{error.message}</p>}
      <ol className="recs">
        {(recs || []).map((rec, i) => (
          <li
            key={rec.item.id}
            className="rec"
            data-testid="rec"
            data-item-id={rec.item.id}
            data-recommendation-id={rec.recommendationId}
          >
            <a
              href={`#/item/${encodeURIComponent(rec.item.id)}`}
              onClick={() => track(EVENT.click, rec.item.id, fromRecommendation(rec, list, i))}
            >
              <span className="title">{rec.item.title}</span>
            </a>
            <span className="price">{price(rec.item)}</span>
            <span className="reason" data-testid="reason">{rec.reason}</span>
            <span className="source">{rec.source}</span>
          </li>
        ))}
      </ol>
    </section>
  );
}

function Trending() {
  const { data, loading, error } = useQuery(TRENDING, { variables: { first: 6 } });
  return (
    <RecList
      testId="trending"
      title="Trending now"
      list="trending"
      recs={data?.trending}
      loading={loading}
      error={error}
      note="The same for everyone: a PUBLIC answer any CDN may keep."
    />
  );
}

function RecommendedForYou() {
  const { data, loading, error } = useQuery(RECOMMENDED_FOR_YOU, {
    variables: { first: 6 },
    fetchPolicy: "network-only",
    context: revalidate,
  });
  return (
    <RecList
      testId="for-you"
      title="Recommended for you"
      list="for-you"
      recs={data?.me?.recommendations}
      loading={loading}
      error={error}
      note="From your own history, with the reason for each: PRIVATE, never in a shared cache."
    />
  );
}

function SegmentPicks() {
  const { data, loading, error } = useQuery(SEGMENT_PICKS, {
    variables: { first: 4 },
    context: { segmentOnly: true },
  });
  return (
    <RecList
      testId="segment-picks"
      title="Popular with shoppers like you"
      list="segment"
      recs={data?.segmentRecommendations}
      loading={loading}
      error={error}
      note="The same for your whole segment: sent with the segment token only, cached per segment."
    />
  );
}

function Home() {
  return (
    <>
      <RecommendedForYou />
      <Trending />
      <SegmentPicks />
    </>
  );
}

function ItemPage({ id }) {
  const { data, loading, error } = useQuery(ITEM_PAGE, { variables: { id, first: 6 } });
  const track = useTrack();
  const viewed = useRef(null);
  useEffect(() => {
    if (data?.item && viewed.current !== id) {
      viewed.current = id;
      track(EVENT.view, id, { ...cameFrom(id), page: "item" });
    }
  }, [data, id, track]);
  if (loading) return <p className="note">Loading…</p>;
  if (error) return <p className="error">{error.message}</p>;
  if (!data.item) return <p className="error">No item {id}.</p>;
  const { item } = data;
  return (
    <>
      <section className="block item" data-testid="item">
        <h2 data-testid="item-title">{item.title}</h2>
        <p className="price">{price(item)}</p>
        <p>{item.description}</p>
        <p className="note">{item.categories.join(" · ")}</p>
        <button
          data-testid="add-to-cart"
          onClick={() => track(EVENT.addToCart, item.id, { ...cameFrom(item.id), page: "item" })}
        >
          Add to cart
        </button>
      </section>
      <RecList testId="similar" title="Similar items" list="similar" recs={data.similarItems} />
    </>
  );
}

function SearchPage({ text }) {
  const { data, loading, error } = useQuery(SEARCH, {
    variables: { text, first: 8 },
    context: revalidate,
  });
  return (
    <RecList
      testId="search-results"
      title={`Search: ${text}`}
      list="search"
      recs={data?.search}
      loading={loading}
      error={error}
    />
  );
}

/** Who is browsing, sign-in with a demo token, a new anonymous visitor, and the merge. */
function IdentityPanel({ onSwitch, merge, setMerge }) {
  const { data } = useQuery(VIEWER, { fetchPolicy: "network-only", context: revalidate });
  const [identify] = useMutation(IDENTIFY);
  const [jwt, setJwt] = useState("");
  const me = data?.me;
  const events = me?.profile?.events ?? 0;
  const signedIn = Boolean(identity.token());

  async function signIn(event) {
    event.preventDefault();
    setMerge(null);
    const before = { events, id: me?.id ?? identity.anonymousId() };
    identity.signIn(jwt);
    try {
      // The same request carries the token and this session's X-Anonymous-Id: the evidence
      // the gateway asks for before it links the anonymous history to the user.
      const { data: linked } = await identify({
        variables: { anonymousId: identity.anonymousId() },
      });
      setMerge({ before, ...linked.identify });
    } catch (error) {
      setMerge({ error: error.message });
    }
    await onSwitch();
  }

  async function anonymous() {
    identity.newAnonymousVisitor();
    setMerge(null);
    setJwt("");
    await onSwitch();
  }

  return (
    <section className="identity" data-testid="identity">
      <p>
        {signedIn ? "Signed in as " : "Anonymous visitor "}
        <strong data-testid="viewer-id">{me?.id ?? (signedIn ? identity.tokenSubject() : identity.anonymousId())}</strong>
        {" · "}
        <span data-testid="profile-events">{events}</span> events in the profile
        {me?.segment && (
          <>
            {" · segment "}
            <span data-testid="segment">{me.segment.name}</span>
          </>
        )}
      </p>
      {me?.profile?.topCategories?.length > 0 && (
        <p className="note">
          Likes: {me.profile.topCategories.map((c) => c.category).join(", ")}
        </p>
      )}
      {!signedIn && (
        <form onSubmit={signIn}>
          <input
            data-testid="token-input"
            placeholder="paste the user token printed by `tailor demo`"
            value={jwt}
            onChange={(e) => setJwt(e.target.value)}
          />
          <button data-testid="sign-in" disabled={!jwt.trim()}>
            Sign in
          </button>
        </form>
      )}
      <button data-testid="new-visitor" onClick={anonymous}>
        {signedIn ? "Sign out (new anonymous visitor)" : "New anonymous visitor"}
      </button>
      {merge?.userId && (
        <p className="merge" data-testid="merge-status">
          Identity merge ({merge.status}): the anonymous visitor {merge.anonymousId} with{" "}
          {merge.before.events} events is now user {merge.userId}, whose profile holds{" "}
          <span data-testid="merged-events">{events}</span> events.
        </p>
      )}
      {merge?.error && (
        <p className="error" data-testid="merge-error">
          {merge.error}
        </p>
      )}
    </section>
  );
}

function EventLog() {
  const entries = useEventLog();
  return (
    <section className="block log" data-testid="event-log">
      <h2>Events sent</h2>
      <ol>
        {entries.map((e, i) => (
          <li key={i} data-testid="event" data-type={e.type} data-status={e.status}>
            {e.type} {e.itemId} → {e.status}
            {e.reason ? ` (${e.reason})` : ""}
            {e.properties.recommendationId ? ` rec ${e.properties.recommendationId}` : ""}
          </li>
        ))}
      </ol>
    </section>
  );
}

export default function App() {
  const route = useRoute();
  const client = useApolloClient();
  const [query, setQuery] = useState("");
  const [generation, setGeneration] = useState(0);
  // Kept here, not in the panel: switching identity remounts the page (a new generation).
  const [merge, setMerge] = useState(null);

  async function onSwitch() {
    await client.clearStore(); // nothing of the previous identity stays on screen
    setGeneration((g) => g + 1);
  }

  function search(event) {
    event.preventDefault();
    if (query.trim()) window.location.hash = `#/search/${encodeURIComponent(query.trim())}`;
  }

  return (
    <div className="page" key={generation}>
      <header>
        <h1>
          <a href="#/">Tailor storefront</a>
        </h1>
        <form onSubmit={search} className="search">
          <input
            data-testid="search-input"
            placeholder="Search the catalog"
            value={query}
            onChange={(e) => setQuery(e.target.value)}
          />
          <button data-testid="search-button">Search</button>
        </form>
      </header>
      <IdentityPanel onSwitch={onSwitch} merge={merge} setMerge={setMerge} />
      <main>
        {route.page === "home" && <Home />}
        {route.page === "item" && <ItemPage id={route.id} />}
        {route.page === "search" && <SearchPage text={route.text} />}
      </main>
      <EventLog />
    </div>
  );
}
