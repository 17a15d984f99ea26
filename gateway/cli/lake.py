"""`tailor export parquet`, and the Spark engine of `tailor train` and `tailor evaluate`.

The lake layout and schema are in docs/LAKE.md (`storage/lake.py` writes it); the Spark jobs are
`recommend/spark_als.py` (ALS) and `segments/spark.py` (k-means).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from rich.markup import escape

from gateway.cli.common import Common, console, open_services, progress_bar, settings_from
from gateway.settings import Settings
from profiles.state import ProfileState
from recommend.offline.evaluate import Row
from recommend.offline.harness import EvaluationInputs
from resolvers.context import Services
from storage.lake import LakeExport, LakeExporter, parse_day, read_manifest
from storage.timeutil import iso


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser], common: Common) -> None:
    p = sub.add_parser(
        "export",
        help="export events, items, users and profile features as a Parquet lake",
        description="Write the store as Parquet files a warehouse reads as they are (Spark, "
        "DuckDB, Snowflake, BigQuery, Hive; schema in docs/LAKE.md): events partitioned by UTC "
        "day, items, users and profile features. Every file is written atomically. Re-running "
        "resumes: days whose events did not change since they were written are skipped.",
    )
    p.add_argument("format", choices=["parquet"], help="the file format (Parquet)")
    p.add_argument("dir", type=Path, help="the lake directory (created if missing)")
    p.add_argument("--since", help="first UTC day of events to write, YYYY-MM-DD (default: oldest)")
    p.add_argument("--until", help="last UTC day of events to write, inclusive (default: newest)")
    p.add_argument(
        "--overwrite", action="store_true", help="rewrite every day in range, changed or not"
    )
    common(p)
    p.set_defaults(func=cmd_export)


def profile_feature_rows(
    services: Services, now: float
) -> Iterator[tuple[str, Mapping[str, float]]]:
    """Every stored profile's features as of ``now`` (``ProfileState.features``)."""
    store, config = services.store, services.profile_config
    keys = sorted(store.iter_profile_keys())
    for lo in range(0, len(keys), 500):
        chunk = keys[lo : lo + 500]
        docs = store.get_profile_states(chunk)
        for key in chunk:
            yield key, ProfileState.from_json(docs.get(key)).features(now, config)


def export_lake(
    services: Services,
    root: Path,
    *,
    first_day: int | None = None,
    last_day: int | None = None,
    overwrite: bool = False,
) -> LakeExport:
    now = services.clock()
    return LakeExporter(services.store, root).export(
        as_of=now,
        first_day=first_day,
        last_day=last_day,
        overwrite=overwrite,
        profile_features=profile_feature_rows(services, now),
        feature_names=sorted(ProfileState().features(now, services.profile_config)),
        progress=progress_bar,
    )


def export_summary(result: LakeExport) -> str:
    rate = result.rows_written / result.seconds if result.seconds > 0 else 0.0
    return (
        f"lake {result.root}: {result.events_written:,} events in "
        f"{len(result.partitions_written)} day partitions written "
        f"({len(result.partitions_skipped)} unchanged, {len(result.partitions_removed)} "
        f"removed), {result.items:,} items, {result.users:,} users, {result.profiles:,} "
        f"profiles in {result.seconds:.1f}s ({rate:,.0f} rows/s; as of {iso(result.as_of)})"
    )


def cmd_export(args: argparse.Namespace) -> int:
    try:
        first = parse_day(args.since) if args.since else None
        last = parse_day(args.until) if args.until else None
    except ValueError as exc:
        console.print(f"[red]--since/--until: {exc}[/red]")
        return 2
    if first is not None and last is not None and first > last:
        console.print(f"[red]--since {args.since} is after --until {args.until}[/red]")
        return 2
    settings = settings_from(args)
    with open_services(settings) as services:
        result = export_lake(
            services, args.dir, first_day=first, last_day=last, overwrite=args.overwrite
        )
    # Plain print: the summary is the command's result (scripts parse it).
    print(export_summary(result), flush=True)
    return 0


class _Steps:
    """Progress of a Spark job: one line per phase, with the time since the command started."""

    def __init__(self) -> None:
        self.started = time.perf_counter()

    def __call__(self, message: str) -> None:
        console.print(f"[dim]{time.perf_counter() - self.started:6.1f}s[/dim] {message}")


def spark_missing() -> bool:
    """True (after printing what to install) when PySpark or a Java 17+ runtime is missing."""
    from storage.spark import SparkUnavailable, require_spark

    try:
        require_spark()
    except SparkUnavailable as exc:
        console.print(f"[red]error:[/red] {escape(str(exc))}")
        return True
    return False


def cmd_train_spark(args: argparse.Namespace) -> int:
    """`tailor train cf|segments --engine spark`: export the lake (incrementally) unless
    ``--lake`` names one, then train on it with Spark and write a normal model version."""
    from storage.spark import require_spark, spark_session

    if args.what not in ("cf", "segments"):
        console.print(
            f"[red]--engine spark trains cf and segments; `tailor train {args.what}` runs in "
            "process (drop --engine)[/red]"
        )
        return 2
    if spark_missing():
        return 2
    settings = settings_from(args)
    step = _Steps()
    step(f"PySpark {require_spark()}")
    with open_services(settings) as services:
        lake = _lake_for(services, settings, args.lake, step)
        from gateway.wiring import spark_config

        with spark_session(spark_config(settings, args.master)) as spark:
            step(f"Spark {spark.version} on {spark.sparkContext.master}")
            if args.what == "cf":
                return _train_cf(spark, services, settings, lake, step)
            return _train_segments(spark, services, lake, step)


def _lake_for(services: Services, settings: Settings, given: str | None, step: _Steps) -> Path:
    from gateway.wiring import lake_root

    if given:
        return Path(given)
    root = lake_root(settings)
    step(f"exporting the store to the lake at {root}")
    console.print(export_summary(export_lake(services, root)), soft_wrap=True)
    return root


def _train_cf(spark: Any, services: Services, settings: Settings, lake: Path, step: _Steps) -> int:
    from gateway.wiring import model_stores, spark_als_config
    from recommend.spark_als import train_cf_spark
    from recommend.types import RecommendError

    config = spark_als_config(settings)
    try:
        version, info, model = train_cf_spark(
            spark,
            lake,
            config,
            services.profile_config.weights,
            model_stores(settings).cf,
            step=step,
        )
    except RecommendError as exc:
        console.print(f"[red]{exc}[/red]")
        return 1
    services.recommender.cf.swap(model, version)
    print(
        f"CF model {version}: als trained on Spark {info['spark_version']} ({info['master']}): "
        f"{info['events_read']:,} events read, {info['users']:,} users, {info['items']:,} items, "
        f"{info['interactions']:,} interactions in {info['seconds']}s (rank {config.rank}, "
        f"regParam {config.reg_param:g}, alpha {config.alpha:g}, {config.max_iter} iterations); "
        f"a running gateway swaps to it within {settings.model_poll_s:g}s",
        flush=True,
    )
    return 0


def _train_segments(spark: Any, services: Services, lake: Path, step: _Steps) -> int:
    from segments import ModelNotFound, SegmentError, load_segments_file
    from segments.spark import train_segments_spark
    from storage.lake import lake_as_of

    seg = services.segments
    try:
        previous = seg.model or seg.models.latest()
    except ModelNotFound:
        previous = None
    file = (
        load_segments_file(seg.segments_file)
        if seg.segments_file and seg.segments_file.exists()
        else None
    )
    try:
        model, info = train_segments_spark(
            spark,
            lake,
            seg.config,
            now=lake_as_of(lake),
            weights=services.profile_config.weights,
            previous=previous,
            segments_file=file,
            step=step,
        )
    except SegmentError as exc:
        console.print(f"[red]{exc}[/red]")
        return 1
    version = seg.models.write(model)
    seg.load_latest()
    events = read_manifest(lake).get("tables", {}).get("events", {}).get("rows", 0)
    print(
        f"segments {version}: {model.k} clusters (Spark k-means, silhouette "
        f"{info['silhouette']:.3f}) on {info['profiles']:,} profiles from {events:,} events "
        f"in {info['seconds']}s on Spark {info['spark_version']} ({info['master']})",
        flush=True,
    )
    for s in seg.all_segments():
        console.print(f"  {s.id:>12}  {s.size:>7}  {s.name}")
    return 0


def spark_evaluation_row(
    settings: Settings, inputs: EvaluationInputs, args: argparse.Namespace
) -> Row:
    """The ``spark-als`` row of `tailor evaluate` (same users and split as the other rows)."""
    from gateway.wiring import spark_als_config, spark_config
    from recommend.offline.spark import evaluate_spark_als
    from storage.spark import spark_session

    with spark_session(spark_config(settings, getattr(args, "master", None))) as spark:
        return evaluate_spark_als(
            spark,
            inputs,
            spark_als_config(settings),
            split=args.split,
            k=args.k,
            seed=args.seed,
            last_n=args.last_n,
            max_users=args.max_users,
        )
