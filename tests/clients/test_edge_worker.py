"""The edge worker (examples/edge-worker) under Miniflare/workerd in front of a live gateway:
public hits at the edge, one entry per segment token, private answers never stored, purge by
tag through the gateway's purge fan-out. The assertions are in edge-worker/test/edge.test.mjs."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pytest

from tests.clients.conftest import PURGE_TOKEN, DemoGateway, assert_node_tests, run_node


def pick_users(gateway: DemoGateway) -> tuple[list[str], str]:
    """Two users of one segment and one of another, from segments that have popular items."""
    by_segment: dict[str, list[str]] = defaultdict(list)
    for user, segment in gateway.segments_of_users().items():
        by_segment[segment].append(user)
    served = [
        s
        for s in sorted(by_segment, key=lambda s: -len(by_segment[s]))
        if gateway.gql(f'{{ segmentRecommendations(segmentId: "{s}", first: 1) {{ score }} }}')[
            "segmentRecommendations"
        ]
    ]
    pair = next((s for s in served if len(by_segment[s]) >= 2), None)
    other = next((s for s in served if s != pair), None)
    assert pair and other, f"the demo world needs two served segments: {dict(by_segment)}"
    return by_segment[pair][:2], by_segment[other][0]


@pytest.mark.slow
def test_edge_worker_under_miniflare(examples_built: Path, demo_gateway: DemoGateway) -> None:
    same, other = pick_users(demo_gateway)
    out = run_node(
        "edge-worker",
        ["--test", "--test-reporter=spec", "test/"],
        cwd=examples_built / "edge-worker",
        env={
            "TAILOR_URL": demo_gateway.url,
            "TAILOR_ADMIN_TOKEN": demo_gateway.admin_token,
            "TAILOR_PURGE_TOKEN": PURGE_TOKEN,
            "EDGE_PORT": str(demo_gateway.edge_port),
            "TAILOR_SAME_SEGMENT_TOKENS": json.dumps([demo_gateway.token(u) for u in same]),
            "TAILOR_OTHER_SEGMENT_TOKEN": demo_gateway.token(other),
        },
        timeout=180,
    )
    assert_node_tests(out, passed=4)
