"""Segments trained on Apache Spark: features in Spark SQL from the lake, Spark MLlib k-means.

1. :func:`spark_profile_features` computes every profile's segment features from the lake's
   events and items with Spark SQL, as ``profiles.state.ProfileState.features`` computes them
   from a live profile (``identify`` events do not count; windows are UTC days up to ``now``).
2. The transform of ``segments.features`` (``log1p`` on heavy tails, then standard or robust
   scaling) is fitted from Spark aggregates and applied in Spark.
3. Spark MLlib k-means runs for every k of ``k_min..k_max``; k is chosen by silhouette on a
   sample of at most ``silhouette_sample_size`` profiles, as ``segments.fit`` does in process.
4. Cluster sizes and member means are Spark aggregates; names, traits and ids stable across
   retrains (Hungarian matching to the previous model) come from ``segments.naming`` and
   ``segments.identity``. The result is a normal :class:`segments.model.SegmentModel`.

PySpark is imported inside the functions only (it is an optional extra).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from segments.features import FeatureTransform, FloatArray
from segments.fit import FitMetrics, _sample, _silhouette, nearest
from segments.identity import match_ids, profile_distances
from segments.model import SegmentModel
from segments.naming import cluster_traits, name_segments
from segments.segments_file import SegmentsFile
from segments.types import FEATURE_NAMES, Segment, SegmentError, SegmentingConfig, SegmentKind
from storage.spark import epoch_seconds, event_weight_column, read_lake

if TYPE_CHECKING:
    from pyspark.ml.clustering import KMeansModel
    from pyspark.sql import Column, DataFrame, SparkSession

DAY = 86_400.0
NEVER_DAYS = 365.0  # profiles.state: recency of a profile without a visit or purchase
N_INIT = 3  # k-means starts per k (the lowest cost wins)
WINDOWS = {
    "view": "views",
    "click": "clicks",
    "add_to_cart": "add_to_cart",
    "purchase": "purchases",
}


def spark_profile_features(
    spark: SparkSession,
    lake: str | Path,
    *,
    now: float,
    weights: Mapping[str, float],
    features: Sequence[str] = FEATURE_NAMES,
) -> DataFrame:
    """``profile_key`` and one double column per feature, for every profile with events."""
    from pyspark.sql import functions as F

    events = read_lake(spark, lake, "events")
    items = read_lake(spark, lake, "items")
    today = float(now // DAY)
    ev = events.where(F.col("type") != "identify").select(
        "profile_key",
        "type",
        "session_id",
        "item_id",
        "message_id",
        "properties",
        epoch_seconds("ts").alias("t"),
        event_weight_column(weights).alias("weight"),
    )
    day = F.floor(F.col("t") / DAY)

    def count_of(etype: str, days: int | None = None) -> Column:
        hit = F.col("type") == etype
        if days is not None:
            hit = hit & (day > today - days) & (day <= today)
        return F.sum(F.when(hit, 1.0).otherwise(0.0))

    def prop(name: str) -> Column:
        return F.get_json_object("properties", f"$.{name}")

    purchase = F.col("type") == "purchase"
    quantity = prop("quantity").cast("double")
    quantity = F.when(quantity.isNull() | (quantity == 0), 1.0).otherwise(quantity.cast("int"))
    price = F.coalesce(prop("price").cast("double"), F.lit(0.0))
    order = F.coalesce(
        F.nullif(prop("orderId"), F.lit("")), F.nullif("session_id", F.lit("")), "message_id"
    )
    windows = [
        count_of(etype, days).alias(f"{name}_{days}d")
        for etype, name in WINDOWS.items()
        for days in (7, 30)
    ]
    base = ev.groupBy("profile_key").agg(
        F.max("t").alias("last_ts"),
        F.max(F.when(purchase, F.col("t"))).alias("last_purchase_ts"),
        F.sum(F.when(purchase, price * quantity).otherwise(0.0)).alias("monetary"),
        F.countDistinct(F.when(purchase, order)).cast("double").alias("frequency"),
        F.sum("weight").alias("engagement_score"),
        count_of("view").alias("views_total"),
        count_of("add_to_cart").alias("add_to_cart_total"),
        *windows,
    )
    sessions = (
        ev.where(F.col("session_id").isNotNull() & (F.col("session_id") != ""))
        .groupBy("profile_key", "session_id")
        .agg(
            (F.max("t") - F.min("t")).alias("duration"),
            count_of("view").alias("views"),
            F.max(purchase.cast("double")).alias("converted"),
        )
        .groupBy("profile_key")
        .agg(
            F.count(F.lit(1)).cast("double").alias("sessions"),
            F.sum("views").alias("session_views"),
            F.sum("duration").alias("duration"),
            F.sum("converted").alias("converted"),
        )
    )
    categories = (
        ev.where(F.col("item_id").isNotNull() & (F.col("item_id") != "") & (F.col("weight") > 0))
        .join(
            items.select(F.col("id").alias("item_id"), F.explode("categories").alias("category")),
            "item_id",
        )
        .groupBy("profile_key")
        .agg(F.countDistinct("category").cast("double").alias("category_diversity"))
    )
    joined = (
        events.select("profile_key")
        .distinct()
        .join(base, "profile_key", "left")
        .join(sessions, "profile_key", "left")
        .join(categories, "profile_key", "left")
        .fillna(
            0.0,
            subset=[
                c
                for c in (*base.columns, *sessions.columns, "category_diversity")
                if c not in ("profile_key", "last_ts", "last_purchase_ts")
            ],
        )
    )

    def ratio(num: str, den: str) -> Column:
        return F.when(F.col(den) > 0, F.col(num) / F.col(den)).otherwise(0.0)

    def days_since(column: str, clamp: bool) -> Column:
        days = (F.lit(float(now)) - F.col(column)) / DAY
        days = F.greatest(days, F.lit(0.0)) if clamp else days
        return F.when(F.col(column).isNull(), NEVER_DAYS).otherwise(days)

    exprs: dict[str, Column] = {
        "recency_days": days_since("last_ts", clamp=True),
        "days_since_last_purchase": days_since("last_purchase_ts", clamp=False),
        "avg_order_value": ratio("monetary", "frequency"),
        "views_per_session": ratio("session_views", "sessions"),
        "avg_session_duration_s": ratio("duration", "sessions"),
        "add_to_cart_rate": ratio("add_to_cart_total", "views_total"),
        "conversion_rate": ratio("converted", "sessions"),
    }
    unknown = [name for name in features if name not in exprs and name not in joined.columns]
    if unknown:
        raise SegmentError(f"the Spark engine cannot compute the features {unknown}")
    return joined.select(
        "profile_key",
        *(F.round(exprs.get(name, F.col(name)), 6).alias(name) for name in features),
    )


def _transform(
    feats: DataFrame, config: SegmentingConfig
) -> tuple[FeatureTransform, FloatArray, FloatArray]:
    """The fitted transform (from Spark aggregates of log space) and the population's log-space
    mean and standard deviation."""
    from pyspark.sql import functions as F

    names = config.features
    log_mask = np.array([name in config.log_features for name in names], dtype=bool)
    logs = [f"l{i}" for i in range(len(names))]
    aggs = [F.avg(c) for c in logs] + [F.stddev_pop(c) for c in logs]
    if config.scaler == "robust":
        aggs += [F.percentile_approx(c, [0.25, 0.5, 0.75], 10_000) for c in logs]
    row = feats.agg(*aggs).first()
    assert row is not None
    d = len(names)
    mean = np.array(row[:d], dtype=np.float64)
    std = np.array([v or 0.0 for v in row[d : 2 * d]], dtype=np.float64)
    if config.scaler == "robust":
        q = np.array(row[2 * d :], dtype=np.float64)
        center, iqr = q[:, 1], q[:, 2] - q[:, 0]
        scale = np.where(iqr > 1e-12, iqr, std)
    else:
        center, scale = mean, std
    scale = np.where(scale > 1e-12, scale, 1.0)
    return FeatureTransform(tuple(names), log_mask, center, scale), mean, std


def train_segments_spark(
    spark: SparkSession,
    lake: str | Path,
    config: SegmentingConfig,
    *,
    now: float,
    weights: Mapping[str, float],
    previous: SegmentModel | None = None,
    segments_file: SegmentsFile | None = None,
    n_init: int = N_INIT,
    step: Callable[[str], None] = lambda _msg: None,
) -> tuple[SegmentModel, dict[str, Any]]:
    """Fit a segment model on the lake (see the module docstring); returns it and its figures."""
    from pyspark.ml.clustering import KMeans
    from pyspark.ml.feature import VectorAssembler
    from pyspark.sql import functions as F

    if config.algorithm not in ("kmeans", "minibatch"):
        raise SegmentError(
            f"the Spark engine clusters with k-means; segment algorithm {config.algorithm!r} "
            "runs in process only (set TAILOR_SEGMENT_ALGORITHM=kmeans)"
        )
    if config.pca_components is not None:
        raise SegmentError("the Spark engine does not apply PCA: use pca_components=None")
    started = time.perf_counter()
    step("computing segment features with Spark SQL")
    names = config.features
    raw = spark_profile_features(spark, lake, now=now, weights=weights, features=names)
    logs = [
        (F.log1p(F.greatest(F.col(n), F.lit(0.0))) if n in config.log_features else F.col(n)).alias(
            f"l{i}"
        )
        for i, n in enumerate(names)
    ]
    feats = raw.select("profile_key", *names, *logs).cache()
    data: DataFrame | None = None
    try:
        n = feats.count()
        if n < max(10, config.k_min + 1):
            raise SegmentError(f"need at least 10 profiles to train segments, the lake has {n}")
        transform, log_mean, log_std = _transform(feats, config)
        z_cols = [f"z{i}" for i in range(len(names))]
        scaled = feats.select(
            "*",
            *(
                ((F.col(f"l{i}") - float(transform.center[i])) / float(transform.scale[i])).alias(z)
                for i, z in enumerate(z_cols)
            ),
        )
        # k-means makes many passes over these rows: cache them, in partitions of >= 50k rows
        # (one per core at most) so small populations do not pay for empty tasks.
        parts = max(1, min(spark.sparkContext.defaultParallelism, n // 50_000))
        assembled = VectorAssembler(inputCols=z_cols, outputCol="z").transform(scaled)
        data = assembled.coalesce(parts).cache()
        data.count()  # materialized once, before the concurrent fits read it
        ks = list(range(config.k_min, min(config.k_max, n - 1) + 1))
        step(f"k-means on {n:,} profiles: k in {ks[0]}..{ks[-1]}, {n_init} starts each")
        size = config.silhouette_sample_size
        sample = data if n <= size else data.sample(fraction=min(1.0, 1.5 * size / n), seed=7)
        zs = np.column_stack(
            [c.to_numpy() for c in sample.select(*z_cols).limit(size).toArrow().columns]
        ).astype(np.float64)

        def fit(k: int, start: int) -> KMeansModel:
            seed = config.random_seed + start
            return KMeans(k=k, seed=seed, featuresCol="z", maxIter=50).fit(data)

        # Like scikit-learn's n_init: several starts per k, the lowest cost wins. The fits are
        # small jobs whose time is mostly scheduling, so they are submitted concurrently.
        runs = [(k, start) for k in ks for start in range(n_init)]
        with ThreadPoolExecutor(max_workers=8) as pool:
            fits = list(pool.map(lambda run: fit(*run), runs))
        metrics = FitMetrics(algorithm="spark-kmeans", chosen_k=0)
        sil_rows = _sample(zs.shape[0], size, np.random.default_rng(config.random_seed))
        best: tuple[float, int, KMeansModel] | None = None
        for k in ks:
            fitted = min(
                (f for (kk, _), f in zip(runs, fits, strict=True) if kk == k),
                key=lambda f: f.summary.trainingCost,
            )
            centers = np.array(fitted.clusterCenters(), dtype=np.float64)
            metrics.inertia_by_k[k] = float(fitted.summary.trainingCost)
            score = _silhouette(zs, nearest(zs, centers), sil_rows)
            metrics.silhouette_by_k[k] = score
            if best is None or score > best[0]:
                best = (score, k, fitted)
        assert best is not None
        _, k, chosen = best
        metrics.chosen_k = k
        step(f"k = {k}: cluster sizes and member means")
        agg = (
            chosen.transform(data)
            .groupBy("prediction")
            .agg(
                F.count(F.lit(1)).alias("n"),
                *(F.avg(f"l{i}").alias(f"ml{i}") for i in range(len(names))),
                *(F.avg(name).alias(f"mr{i}") for i, name in enumerate(names)),
            )
            .collect()
        )
    finally:
        feats.unpersist()
        if data is not None:
            data.unpersist()
    d = len(names)
    sizes = np.zeros(k, dtype=np.int64)
    log_means = np.zeros((k, d))
    raw_means = np.zeros((k, d))
    for row in agg:
        j = int(row["prediction"])
        sizes[j] = int(row["n"])
        log_means[j] = [row[f"ml{i}"] for i in range(d)]
        raw_means[j] = [row[f"mr{i}"] for i in range(d)]
    centers = np.array(chosen.clusterCenters(), dtype=np.float64)
    model = assemble_model(
        config,
        transform,
        centers,
        sizes,
        log_means,
        raw_means,
        log_mean,
        log_std,
        metrics,
        previous,
    )
    if segments_file is not None:
        model = model.with_segments_file(segments_file)
    info = {
        "engine": "spark",
        "spark_version": spark.version,
        "master": spark.sparkContext.master,
        "profiles": n,
        "k": k,
        "silhouette": metrics.silhouette_by_k[k],
        "seconds": round(time.perf_counter() - started, 2),
    }
    return model, info


def assemble_model(
    config: SegmentingConfig,
    transform: FeatureTransform,
    centers: FloatArray,
    sizes: np.ndarray,
    log_means: FloatArray,
    raw_means: FloatArray,
    pop_mean: FloatArray,
    pop_std: FloatArray,
    metrics: FitMetrics,
    previous: SegmentModel | None,
) -> SegmentModel:
    """A :class:`SegmentModel` from cluster-level figures: clusters ordered by size (largest
    first), traits and names, ids inherited from ``previous`` where a cluster matches one."""
    k = centers.shape[0]
    order = np.argsort(-sizes, kind="stable")
    profiles, raw_means, sizes = log_means[order], raw_means[order], sizes[order]
    traits = cluster_traits(config.features, profiles, raw_means, pop_mean, pop_std)
    inherited: list[str | None] = [None] * k
    known: dict[str, Segment] = {}
    if previous is not None and previous.transform.features == transform.features:
        distances = profile_distances(
            previous.profiles, profiles, previous.transform.center, previous.transform.scale
        )
        inherited = match_ids(previous.segment_ids, distances, config.match_threshold)
        known = {seg.id: seg for seg in previous.segments}
    next_id = previous.next_id if previous is not None else 1
    fresh_names = iter(
        name_segments(
            [traits[j] for j in range(k) if inherited[j] is None],
            reserved={known[i].name for i in inherited if i is not None},
        )
    )
    ids: list[str] = []
    segments: list[Segment] = []
    for j, prev_id in enumerate(inherited):
        if prev_id is None:
            seg_id, next_id = f"c{next_id}", next_id + 1
            name, description = next(fresh_names)
        else:
            seg_id, name, description = prev_id, known[prev_id].name, known[prev_id].description
        ids.append(seg_id)
        segments.append(
            Segment(seg_id, name, description, SegmentKind.CLUSTER, int(sizes[j]), traits[j])
        )
    return SegmentModel(
        config=config,
        transform=transform,
        segment_ids=ids,
        centroids=centers[order],
        profiles=profiles,
        segments=segments,
        metrics=metrics,
        pop_mean=pop_mean,
        pop_std=pop_std,
        n_users=int(sizes.sum()),
        next_id=next_id,
        built_at=datetime.now(UTC),
    )
