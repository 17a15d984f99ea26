"""Nobody ever receives another user's answer, through a shared cache (CDN test double honouring
Cache-Control and Vary per RFC 9111) in front of the gateway's own cache; segment tokens."""

from __future__ import annotations

import itertools

from gateway.edge.segment_tokens import SegmentTokens
from tests.conftest import NOW, FakeClock, Gateway
from tests.gateway.test_edge_helpers import SharedCache, bearer, edge, seed_items

__all__ = ["edge"]

ME = "{ me { id profile { events } } }"
OFFER = "{ segmentOffer }"
TRENDING = "{ trending(first: 2) { item { id } } }"


async def test_no_private_answer_reaches_another_caller(edge: Gateway) -> None:
    seed_items(edge)
    for user, n in (("u1", 1), ("u2", 3)):  # different profiles
        events = [{"messageId": f"{user}-{k}", "type": "view", "itemId": "i1"} for k in range(n)]
        r = await edge.client.post("/v1/events", json=events, headers=bearer(edge, user))
        assert r.status_code == 200
    shared = SharedCache(edge.client, edge.clock)
    callers = {
        "u1": bearer(edge, "u1"),
        "u2": bearer(edge, "u2"),
        "anonymous": {},
        "visitor": {"x-anonymous-id": "visitor-7"},
    }
    expected_me = {
        "u1": {"id": "u1", "profile": {"events": 1}},
        "u2": {"id": "u2", "profile": {"events": 3}},
        "anonymous": None,
        "visitor": {"id": "visitor-7", "profile": None},
    }
    # Every order of callers, several rounds, time moving: the shared cache and the gateway
    # cache are warm with everyone's answers and must still never cross them.
    for round_, order in enumerate(itertools.permutations(callers)):
        for name in order:
            r = await shared.get(f"/graphql?query={ME}", callers[name])
            assert r.json()["data"]["me"] == expected_me[name], (round_, name)
            t = await shared.get(f"/graphql?query={TRENDING}", callers[name])
            assert t.status_code == 200
        edge.clock.advance(7)
    assert shared.hits > 0  # the public trending answer was shared


async def test_segment_answers_are_shared_within_a_segment_only(edge: Gateway) -> None:
    shared = SharedCache(edge.client, edge.clock)
    url = f"/graphql?query={OFFER}"
    tokens: dict[str, str] = {}
    for user in ("u1", "u2", "u3"):  # segments 3, 5, 3
        r = await shared.get(url, bearer(edge, user))
        assert r.headers["cache-control"].startswith("private")  # from credentials: not shared
        tokens[user] = r.headers["x-tailor-segment"]
    # The edge worker forwards the token instead of the credentials.
    r1 = await shared.get(url, {"x-tailor-segment": tokens["u1"]})
    assert r1.json() == {"data": {"segmentOffer": "offer:3"}}
    hits = shared.hits
    r3 = await shared.get(url, {"x-tailor-segment": tokens["u3"]})
    assert r3.json() == {"data": {"segmentOffer": "offer:3"}}
    assert shared.hits == hits + 1  # users of one segment share the answer
    r2 = await shared.get(url, {"x-tailor-segment": tokens["u2"]})
    assert r2.json() == {"data": {"segmentOffer": "offer:5"}}
    assert shared.hits == hits + 1  # a different segment is a different variant
    generic = await shared.get(url)
    assert generic.json() == {"data": {"segmentOffer": "offer:generic"}}

    # A forged or expired token is ignored: the generic answer, never the named segment.
    forged = tokens["u1"].rsplit(".", 1)[0] + ".AAAA"
    r = await edge.client.get(
        "/graphql", params={"query": OFFER}, headers={"x-tailor-segment": forged}
    )
    assert r.json() == {"data": {"segmentOffer": "offer:generic"}}
    other = SegmentTokens("another-secret-0123456789abcdef", clock=edge.clock).issue("3")
    r = await edge.client.get(
        "/graphql", params={"query": OFFER}, headers={"x-tailor-segment": other}
    )
    assert r.json() == {"data": {"segmentOffer": "offer:generic"}}
    edge.clock.advance(3601)
    r = await edge.client.get(
        "/graphql", params={"query": OFFER}, headers={"x-tailor-segment": tokens["u2"]}
    )
    assert r.json() == {"data": {"segmentOffer": "offer:generic"}}


def test_segment_tokens_round_trip_expire_and_refuse_tampering() -> None:
    clock = FakeClock(NOW)
    tokens = SegmentTokens("s" * 32, ttl_s=400, clock=clock)
    token = tokens.issue("seg-7")
    assert tokens.verify(token) == "seg-7"
    assert tokens.issue("seg-7") == token  # same string within a quarter of the lifetime
    version, seg, exp, sig = token.split(".")
    assert tokens.verify(".".join([version, seg, str(int(exp) + 1000), sig])) is None
    assert tokens.verify(".".join([version, "c2VnLTg", exp, sig])) is None  # "seg-8"
    for junk in ("", "v1", "v1.a.b.c", "v2." + token[3:], token + "x", "x" * 600):
        assert tokens.verify(junk) is None
    clock.advance(400)
    assert tokens.verify(token) is None
