"""Lake benchmark: Parquet export rows/s, and Spark ALS training time against the in-process ALS
on the same events, at 100k and 1M synthetic events.

    python benchmarks/lake.py            # 100k and 1M events
    python benchmarks/lake.py --quick    # 10k and 100k events

Baselines measured in the same run (this machine is shared, absolute times drift):
- export: rows/s of `tailor export parquet` against reading the same events out of the store
  (`iter_events`), the floor of any export;
- training: Spark ALS (`local[2]`; session start and a warm-up job excluded; the lake is read by
  Spark) against the in-process ALS (``implicit``, 2 threads; the events are read from the
  store), same rank and iterations; and how each grows with 10x the events.

Needs the spark extra (pip install -e '.[spark]') and Java 17+.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from profiles.types import ProfileConfig
from recommend.cf import ALS
from recommend.spark_als import SparkALSConfig, train_als_on_lake
from recommend.training import interaction_matrix
from storage import open_store
from storage.lake import LakeExporter
from storage.spark import SparkConfig, spark_session
from storage.sqlite import SQLiteStore
from storage.types import EventRecord

T0 = 1_767_225_600.0
TYPES = np.array(["view", "click", "add_to_cart", "purchase"])
TYPE_P = np.array([0.70, 0.18, 0.08, 0.04])
RANK, ITERATIONS = 32, 10


def fill(store: SQLiteStore, n_events: int, seed: int = 1) -> tuple[int, int]:
    """``n_events`` synthetic events over 90 days: users grow with the events (20 each on
    average), 5,000 items with Zipf-like popularity."""
    rng = np.random.default_rng(seed)
    n_users, n_items = max(n_events // 20, 10), 5_000
    users = rng.integers(0, n_users, n_events)
    items = np.minimum(rng.zipf(1.3, n_events) - 1, n_items - 1)
    items = (items * 7919) % n_items  # popular items spread over the ids
    types = TYPES[rng.choice(len(TYPES), n_events, p=TYPE_P)]
    ts = np.sort(T0 + rng.uniform(0, 90 * 86_400.0, n_events))
    chunk = 20_000
    for lo in range(0, n_events, chunk):
        store.insert_events(
            [
                EventRecord(
                    message_id=f"m{i}",
                    type=str(types[i]),
                    profile_key=f"u{users[i]}",
                    ts=float(ts[i]),
                    received_at=float(ts[i]),
                    payload_hash="h",
                    user_id=f"u{users[i]}",
                    item_id=f"i{items[i]}",
                    session_id=f"s{users[i]}-{int(ts[i] // 3600)}",
                    properties={"price": 20.0} if types[i] == "purchase" else {},
                )
                for i in range(lo, min(lo + chunk, n_events))
            ]
        )
    return n_users, n_items


def run(n_events: int, workdir: Path, spark: object) -> dict[str, float]:
    store = open_store(workdir / f"{n_events}.db")
    try:
        started = time.perf_counter()
        fill(store, n_events)
        print(f"  {n_events:>9,} events: store filled in {time.perf_counter() - started:.1f}s")
        started = time.perf_counter()
        read = sum(1 for _ in store.iter_events())
        read_rate = read / (time.perf_counter() - started)
        lake = workdir / f"lake-{n_events}"
        result = LakeExporter(store, lake).export(as_of=T0 + 91 * 86_400.0)
        export_rate = result.events_written / result.seconds

        started = time.perf_counter()
        weights = ProfileConfig()
        matrix = interaction_matrix(store.iter_events(), weights)
        ALS(factors=RANK, iterations=ITERATIONS, threads=2).fit(matrix)
        python_s = time.perf_counter() - started
    finally:
        store.close()
    started = time.perf_counter()
    config = SparkALSConfig(rank=RANK, max_iter=ITERATIONS)
    _, info = train_als_on_lake(spark, lake, config, weights.weights)  # type: ignore[arg-type]
    spark_s = time.perf_counter() - started
    print(
        f"    export {export_rate:>10,.0f} rows/s  (store read {read_rate:,.0f} rows/s: "
        f"{export_rate / read_rate:.2f}x)"
    )
    print(
        f"    train  spark {spark_s:6.1f}s  in-process {python_s:6.1f}s  "
        f"(spark/in-process {spark_s / python_s:.2f}x; {info['users']:,} users x "
        f"{info['items']:,} items, {info['interactions']:,} interactions)"
    )
    return {"export": export_rate, "spark": spark_s, "python": python_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10k and 100k events")
    parser.add_argument("--master", default="local[2]", help="Spark master (default local[2])")
    args = parser.parse_args()
    small, large = (10_000, 100_000) if args.quick else (100_000, 1_000_000)
    print(f"lake export and Spark ALS (rank {RANK}, {ITERATIONS} iterations), {args.master}:")
    started = time.perf_counter()
    with (
        tempfile.TemporaryDirectory(prefix="tailor-lake-bench-") as tmp,
        spark_session(SparkConfig(master=args.master, shuffle_partitions=4)) as spark,
    ):
        # The first Spark ML job also warms the JVM (class loading, JIT): excluded, like the
        # session start, so both sizes are measured on a warm engine.
        warm = open_store(Path(tmp) / "warm.db")
        fill(warm, 2_000)
        LakeExporter(warm, Path(tmp) / "lake-warm").export(as_of=T0 + 91 * 86_400.0)
        warm.close()
        train_als_on_lake(
            spark, Path(tmp) / "lake-warm", SparkALSConfig(rank=4, max_iter=2), {"view": 1.0}
        )
        print(f"  Spark session and warm-up in {time.perf_counter() - started:.1f}s (excluded)")
        a = run(small, Path(tmp), spark)
        b = run(large, Path(tmp), spark)
    print(
        f"  {large // small}x events -> export rate {b['export'] / a['export']:.2f}x, "
        f"spark time {b['spark'] / a['spark']:.1f}x, in-process time "
        f"{b['python'] / a['python']:.1f}x"
    )


if __name__ == "__main__":
    main()
