"""The variant case of the no-leak test, through the shared-cache double (RFC 9111 Cache-Control
and Vary) in front of the gateway: SEGMENT answers shaped by an experiment are keyed by segment
AND variant (the signed segment token carries both), so two users of one segment and variant
share an entry and users of different variants never do; PUBLIC answers ignore variants."""

from __future__ import annotations

import itertools
import os
from urllib.parse import quote

import pytest

from experiments import Subject
from experiments import definitions as defs_file
from experiments.editing import create_experiment
from gateway.edge.segment_tokens import SegmentTokens
from tests.conftest import SECRET, Gateway
from tests.gateway.test_edge_helpers import BACKEND, SharedCache, bearer, edge, seed_items

__all__ = ["edge"]

SEG = "{ segmentRecommendations(first: 4) { item { id } variant } }"
TRENDING = "{ trending(first: 2) { item { id } } }"
FAST = pytest.mark.parametrize("edge", [{"experiments_poll_s": 0.0}], indirect=True)


def start_experiment(gw: Gateway) -> None:
    defs = create_experiment(
        defs_file.Definitions(), "reco-ab", [("control", {}), ("short", {"first": 2})]
    )
    path = gw.data_dir / "experiments.json"
    defs_file.save(path, defs)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


def users_by_variant(gw: Gateway, n: int = 2) -> dict[str, list[str]]:
    """Users of segment 3, ``n`` per variant (found through the assignment itself)."""
    found: dict[str, list[str]] = {"control": [], "short": []}
    for i in itertools.count():
        user = f"s{i}"
        BACKEND.segments[user] = "3"
        variant = gw.services.experiments.assign(Subject(user, user)).variants["reco-ab"]
        if len(found[variant]) < n:
            found[variant].append(user)
        if all(len(v) == n for v in found.values()):
            return found
    raise AssertionError("unreachable")


@FAST
async def test_segment_answers_are_shared_per_segment_and_variant_only(edge: Gateway) -> None:
    seed_items(edge)
    start_experiment(edge)
    groups = users_by_variant(edge)
    shared = SharedCache(edge.client, edge.clock)
    url = f"/graphql?query={quote(SEG)}"
    tokens: dict[str, str] = {}
    expected: dict[str, dict[str, object]] = {}
    for variant, users in groups.items():
        for user in users:
            r = await shared.get(url, bearer(edge, user))
            assert r.status_code == 200, r.text
            assert r.headers["cache-control"].startswith("private")  # credentials: not shared
            tokens[user] = r.headers["x-tailor-segment"]
            rows = r.json()["data"]["segmentRecommendations"]
            assert len(rows) == (2 if variant == "short" else 4)
            assert {row["variant"] for row in rows} == {f"reco-ab={variant}"}
            expected[user] = r.json()
            # Served through the edge: the credentialed caller is exposed to its variant.
            assert edge.services.store.exposures_of(user) == {"reco-ab": variant}
    (c1, c2), (s1, s2) = groups["control"], groups["short"]
    # One token per (segment, variant): the CDN's Vary key.
    assert tokens[c1] == tokens[c2] and tokens[s1] == tokens[s2]
    assert tokens[c1] != tokens[s1]
    assert SegmentTokens(SECRET, clock=edge.clock).verify_cohort(tokens[s1]) == (
        "3",
        "reco-ab=short",
    )

    # The edge worker forwards the token only. Same segment and variant: one shared entry.
    r = await shared.get(url, {"x-tailor-segment": tokens[c1]})
    assert r.json() == expected[c1] and "public" in r.headers["cache-control"]
    hits = shared.hits
    r = await shared.get(url, {"x-tailor-segment": tokens[c2]})
    assert r.json() == expected[c1] and shared.hits == hits + 1
    # The other variant never gets that entry, and gets its own.
    r = await shared.get(url, {"x-tailor-segment": tokens[s1]})
    assert r.json() == expected[s1] and shared.hits == hits + 1
    r = await shared.get(url, {"x-tailor-segment": tokens[s2]})
    assert r.json() == expected[s1] and shared.hits == hits + 2

    # Every order of callers, credentials or tokens, time moving: never the other variant's.
    callers = {u: bearer(edge, u) for u in (c1, s1)} | {
        f"{u}-token": {"x-tailor-segment": tokens[u]} for u in (c2, s2)
    }
    owner = {c1: c1, s1: s1, f"{c2}-token": c1, f"{s2}-token": s1}
    for order in itertools.permutations(callers):
        for name in order:
            r = await shared.get(url, callers[name])
            assert r.json() == expected[owner[name]], name
        edge.clock.advance(5)


@FAST
async def test_the_gateway_cache_shares_an_entry_per_segment_and_variant(edge: Gateway) -> None:
    seed_items(edge)
    start_experiment(edge)
    groups = users_by_variant(edge)
    (c1, c2), (s1, _s2) = groups["control"], groups["short"]
    url = f"/graphql?query={quote(SEG)}"
    # The first answer teaches the layer the operation's scope (SEGMENT); the next is stored.
    await edge.client.get(url, headers=bearer(edge, c1))
    first = await edge.client.get(url, headers=bearer(edge, c1))
    assert first.headers["x-cache"] == "MISS"
    same = await edge.client.get(url, headers=bearer(edge, c2))
    assert same.headers["x-cache"] == "HIT" and same.json() == first.json()
    other = await edge.client.get(url, headers=bearer(edge, s1))
    assert other.headers["x-cache"] == "MISS" and other.json() != first.json()


@FAST
async def test_public_answers_never_depend_on_a_variant(edge: Gateway) -> None:
    seed_items(edge)
    start_experiment(edge)
    groups = users_by_variant(edge)
    shared = SharedCache(edge.client, edge.clock)
    url = f"/graphql?query={quote(TRENDING)}"
    answers = []
    for user in (*groups["control"], *groups["short"]):
        r = await shared.get(url, bearer(edge, user))
        assert "public" in r.headers["cache-control"]
        assert "x-tailor-segment" not in r.headers
        answers.append(r.json())
    assert all(a == answers[0] for a in answers)
    assert shared.hits == 3  # one entry served every variant
