"""Recommendation latency through the GraphQL schema: hybrid vs the trending path, same run.

    python benchmarks/recommend.py            # 20,000 items, 5,000 users (~2-4 min with set-up)
    python benchmarks/recommend.py --quick    # 4,000 items, 1,000 users
    python benchmarks/recommend.py --cf ease  # force a CF model (default: auto, see below)
    python benchmarks/recommend.py --hnsw-threshold 10000   # HNSW instead of the exact scan
    python benchmarks/recommend.py --no-ranker  # the tuned blend orders (no learned ranker)

Set-up: a synthetic shop (items in 40 categories; each user browses mostly two favourite
categories, ~30 events over 30 days) written through the real import paths (catalog upsert,
`IngestionService.ingest_sync`), the item index built with the hashing encoder (the encoder's
speed is not the point here: queries are user vectors, not text), and the CF model trained with
`gateway.models.train_cf`, which asks ``choose_cf_model`` for the items that have interactions
(``--cf auto``): EASE up to ``cf_ease_max_items`` (10,000 here: EASE's dense 20k x 20k inverse
would be 1.6 GB and minutes of CPU on this machine), ALS above; ``--cf`` forces one. CF tuning is
skipped (``--tune-budget``, default 0: the set-up time is not the point); then the learned ranker
is trained (`gateway.models.train_ranker`, published even if it does not beat the blend, so its
path is what is measured) unless ``--no-ranker``: the hybrid then asks every source for 50
candidates and orders their union with the ranker's trees.

Measured: ``me { recommendations(first: 10) { item { id title } score reason source } }``
executed on the schema in-process the way the gateway's /graphql endpoint does it (document
parsed and validated once, as its document cache does; then graphql-core ``execute``), with no
HTTP and no response cache: every request computes. Random users; hybrid and
``strategy: TRENDING`` interleaved so both see the same machine load.
Targets: hybrid p99 <= 20 ms and <= 5x the trending path.

The item index follows the settings: with the default ``hnsw_threshold`` (20,000) a 20,000-item
catalog is still searched exactly, a ~30 MB scan per content query (384-d float32), which is
most of the hybrid's cost here; ``--hnsw-threshold`` shows the HNSW side of that switch.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from graphql import ExecutionResult, execute, parse, validate

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from catalog.importer import validate_item
from gateway.models import ensure_index, refresh_models, train_cf, train_ranker
from gateway.settings import load_settings
from gateway.wiring import build_services, model_stores
from resolvers.context import Services, TailorContext, Viewer
from resolvers.schema import build_schema

NOW = time.time()
DAY = 86_400.0
QUERY = """query($s: Strategy) { me { recommendations(first: 10, strategy: $s) {
  item { id title } score reason source } } }"""
ADJ = ["red", "blue", "black", "linen", "wool", "silk", "leather", "denim", "summer", "classic"]
NOUNS = [f"kind{c}" for c in range(40)]


def build_world(services: Services, n_items: int, n_users: int, seed: int) -> int:
    rng = random.Random(seed)
    rows = []
    for k in range(n_items):
        cat = k % 40
        adj = rng.sample(ADJ, 2)
        rows.append(
            {
                "id": f"p{k}",
                "title": f"{adj[0]} {adj[1]} {NOUNS[cat]} {k}",
                "description": f"a {adj[0]} {NOUNS[cat]} for every day, model {k % 97}",
                "categories": [f"Category {cat}"],
                "price": float(5 + k % 300),
                "available": k % 50 != 0,
                "attributes": {"color": adj[0]},
            }
        )
    items = [validate_item(r, NOW - 60 * DAY) for r in rows]
    services.store.upsert_items(items)
    services.catalog.update(items)
    # Skewed popularity inside each category (low ranks sell most), every item reachable.
    per_cat = [[k for k in range(c, n_items, 40)] for c in range(40)]
    events: list[dict[str, Any]] = []
    for u in range(n_users):
        favs = rng.sample(range(40), 2)
        t = NOW - 30 * DAY + rng.uniform(0, DAY)
        for n in range(rng.randint(15, 45)):
            roll = rng.random()
            cat = favs[0] if roll < 0.6 else favs[1] if roll < 0.9 else rng.randrange(40)
            pool = per_cat[cat]
            item = pool[int(len(pool) * rng.random() ** 2)]  # head-heavy, whole catalog
            etype = rng.choices(["view", "click", "add_to_cart", "purchase"], [70, 20, 7, 3])[0]
            t += rng.expovariate(1 / (0.6 * DAY))
            event: dict[str, Any] = {
                "messageId": f"u{u}-{n}",
                "type": etype,
                "userId": f"u{u}",
                "itemId": f"p{item}",
                "timestamp": min(t, NOW - 60) * 1000,
            }
            if etype == "purchase":
                event["properties"] = {"price": 20.0, "quantity": 1}
            events.append(event)
    for lo in range(0, len(events), 20_000):
        services.ingest.ingest_sync(events[lo : lo + 20_000])
    return len(events)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


async def measure(
    services: Services, n_users: int, requests: int, seed: int
) -> dict[str, list[float]]:
    schema = build_schema()._schema
    document = parse(QUERY)
    if errors := validate(schema, document):
        raise SystemExit(f"invalid query: {errors}")
    rng = random.Random(seed + 1)
    times: dict[str, list[float]] = {"HYBRID": [], "TRENDING": []}
    for i in range(requests * 2 + 40):
        strategy = "HYBRID" if i % 2 == 0 else "TRENDING"
        user = f"u{rng.randrange(n_users)}"
        ctx = TailorContext(services, Viewer(user_id=user))
        started = time.perf_counter()
        result = execute(schema, document, context_value=ctx, variable_values={"s": strategy})
        if not isinstance(result, ExecutionResult):
            result = await result
        elapsed = (time.perf_counter() - started) * 1000
        if result.errors:
            raise SystemExit(f"query failed: {result.errors}")
        assert result.data is not None
        if len(result.data["me"]["recommendations"]) != 10:
            raise SystemExit(f"{strategy} for {user}: fewer than 10 results")
        if i >= 40:  # warm-up: first-call allocations, lazy imports
            times[strategy].append(elapsed)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4,000 items, 1,000 users")
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--users", type=int, default=5_000)
    parser.add_argument("--requests", type=int, default=500, help="per strategy")
    parser.add_argument("--cf", choices=["auto", "ease", "als", "knn"], default="auto")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--hnsw-threshold", type=int, help="default: the setting's (20,000)")
    parser.add_argument("--no-ranker", action="store_true", help="serve the blend, no ranker")
    parser.add_argument("--tune-budget", type=float, default=0.0, help="CF tuning seconds")
    args = parser.parse_args()
    n_items, n_users = (4_000, 1_000) if args.quick else (args.items, args.users)

    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(
            environ={},
            data_dir=Path(tmp) / "var",
            encoder="hashing",
            jwt_secret="benchmark-secret-0123456789abcdef0123",
            cf_kind=args.cf,
            cf_ease_max_items=n_items if args.cf == "ease" else 10_000,
            hnsw_threshold=args.hnsw_threshold,
        )
        services = build_services(settings)
        try:
            t0 = time.perf_counter()
            n_events = build_world(services, n_items, n_users, args.seed)
            t1 = time.perf_counter()
            ensure_index(services)
            t2 = time.perf_counter()
            _, info = train_cf(services, model_stores(settings), tune_budget_s=args.tune_budget)
            t3 = time.perf_counter()
            ranker = "none"
            if not args.no_ranker:
                version, summary = train_ranker(services, model_stores(settings), force=True)
                ranker = f"{version} ({summary['rounds']} rounds, {time.perf_counter() - t3:.0f}s)"
            refresh_models(services, model_stores(settings))
            print(
                f"world: {n_items} items, {n_users} users, {n_events} events in {t1 - t0:.0f}s; "
                f"index (hashing encoder) {t2 - t1:.0f}s; CF {info['kind']} over {info['items']} "
                f"items {t3 - t2:.0f}s; index kind {services.content.holder.snapshot()[0].kind}; "
                f"ranker {ranker}"
            )
            times = asyncio.run(measure(services, n_users, args.requests, args.seed))
        finally:
            services.store.close()

    stats = {
        name: (statistics.median(v), percentile(v, 99), statistics.fmean(v))
        for name, v in times.items()
    }
    print(f"\n{'path':<10} {'n':>5} {'p50 ms':>8} {'p99 ms':>8} {'mean ms':>8}")
    for name, (p50, p99, mean) in stats.items():
        print(f"{name.lower():<10} {len(times[name]):>5} {p50:>8.2f} {p99:>8.2f} {mean:>8.2f}")
    ratio_p99 = stats["HYBRID"][1] / stats["TRENDING"][1]
    ratio_p50 = stats["HYBRID"][0] / stats["TRENDING"][0]
    ok = stats["HYBRID"][1] <= 20.0 and ratio_p99 <= 5.0
    print(
        f"\nhybrid vs trending (same run): p50 {ratio_p50:.2f}x, p99 {ratio_p99:.2f}x; "
        f"target hybrid p99 <= 20 ms and <= 5x trending: {'MET' if ok else 'MISSED'}"
    )


if __name__ == "__main__":
    main()
