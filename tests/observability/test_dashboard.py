"""The Grafana dashboard in docs/ queries only families the gateway exports, and covers what the
issue names: latency, hit ratio, ingest, errors, model age."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Gateway

DASHBOARD = Path(__file__).resolve().parents[2] / "docs" / "grafana-dashboard.json"


async def test_dashboard_queries_exported_families(gateway: Gateway) -> None:
    await gateway.client.post("/graphql", json={"query": "{ trending { score } }"})
    text = (await gateway.client.get("/metrics")).text
    families = {f.name for f in text_string_to_metric_families(text)}
    doc = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in doc["panels"] for t in p.get("targets", [])]
    assert exprs
    for expr in exprs:
        for name in re.findall(r"\btailor_\w+", expr):
            family = re.sub(r"_(total|bucket|sum|count)$", "", name)
            assert family in families, (name, expr)
    titles = " ".join(p["title"].lower() for p in doc["panels"])
    for topic in ("latency", "hit ratio", "ingest", "errors", "model age"):
        assert topic in titles, topic
    ids = [(p["gridPos"]["x"], p["gridPos"]["y"]) for p in doc["panels"]]
    assert len(ids) == len(set(ids))  # no two panels in one place
