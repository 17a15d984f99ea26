"""Implicit ALS trained on Apache Spark (MLlib) from the Parquet lake, served as a normal CF model.

The interactions are built in Spark SQL exactly as :func:`recommend.training.interaction_matrix`
builds them in process: item events other than ``identify``, each weighted per its type as
profiles weigh it (``rate``: per 5 stars), exact duplicates (same profile, item, weight and time)
counted once, weights summed per profile/item pair, pairs whose sum is <= 0 dropped. Spark's ALS
takes the summed weight as the rating with ``implicitPrefs`` (confidence ``1 + alpha * w``).

Only the item factors leave Spark. They are saved in the layout of the in-process
:class:`recommend.cf.ALS` (kind ``als``), whose serving solves each user's factors from their
*current* history at query time, so a running gateway loads, serves, explains and filters a
Spark-trained model like its own. Spark scales its regularization by each user's number of
ratings (ALS-WR); the served fold-in uses ``regParam`` times the median number of items per user.

PySpark is imported inside the functions only (it is an optional extra).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from recommend.cf import ALS
from recommend.interactions import InteractionMatrix
from recommend.training import CFStore
from recommend.types import RecommendError
from storage.spark import epoch_seconds, event_weight_column, read_lake

if TYPE_CHECKING:
    import scipy.sparse as sp
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger("tailor.recommend.spark")


@dataclass(frozen=True, slots=True)
class SparkALSConfig:
    """Spark MLlib ALS hyper-parameters. ``blocks``: user and item blocks of the factorization
    (0: the session's default parallelism, its number of cores)."""

    rank: int = 64
    reg_param: float = 0.1
    alpha: float = 2.0
    max_iter: int = 10
    blocks: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.rank < 1 or self.max_iter < 1:
            raise RecommendError("Spark ALS needs rank >= 1 and max_iter >= 1")
        if self.reg_param < 0 or self.alpha <= 0 or self.blocks < 0:
            raise RecommendError("Spark ALS needs reg_param >= 0, alpha > 0 and blocks >= 0")


def lake_interactions(events: DataFrame, weights: Mapping[str, float]) -> DataFrame:
    """``(profile_key, item_id, weight)``: the lake's events as the interactions CF trains on."""
    from pyspark.sql import functions as F

    item_events = events.where(
        F.col("item_id").isNotNull() & (F.col("item_id") != "") & (F.col("type") != "identify")
    ).select(
        "profile_key",
        "item_id",
        event_weight_column(weights).alias("weight"),
        epoch_seconds("ts").alias("t"),
    )
    return (
        item_events.dropDuplicates(["profile_key", "item_id", "weight", "t"])
        .groupBy("profile_key", "item_id")
        .agg(F.sum("weight").alias("weight"))
        .where(F.col("weight") > 0)
    )


def fit_item_factors(
    spark: SparkSession, ratings: DataFrame, n_items: int, config: SparkALSConfig
) -> np.ndarray:
    """Spark ALS on ``(user int, item int, weight)`` rows; the ``(n_items, rank)`` item factors
    (zero rows for item ints that had no rating)."""
    from pyspark.ml.recommendation import ALS as SparkALS

    blocks = config.blocks or max(spark.sparkContext.defaultParallelism, 1)
    als = SparkALS(
        rank=config.rank,
        maxIter=config.max_iter,
        regParam=config.reg_param,
        alpha=config.alpha,
        implicitPrefs=True,
        userCol="user",
        itemCol="item",
        ratingCol="weight",
        numUserBlocks=blocks,
        numItemBlocks=blocks,
        seed=config.seed,
    )
    table = als.fit(ratings).itemFactors.toArrow()
    ids = table.column("id").to_numpy()
    factors = np.zeros((n_items, config.rank), dtype=np.float32)
    if ids.size:
        flat = table.column("features").combine_chunks().flatten().to_numpy()
        factors[ids] = flat.reshape(ids.size, config.rank)
    return factors


def served_model(
    item_ids: Sequence[str], factors: np.ndarray, config: SparkALSConfig, median_items: float
) -> ALS:
    """Spark's item factors as the in-process ALS model (same artifact layout and serving)."""
    model = ALS(
        factors=config.rank,
        iterations=config.max_iter,
        regularization=fold_in_regularization(config, median_items),
        alpha=config.alpha,
        seed=config.seed,
    )
    model._set_items(item_ids)
    model._restore({"item_factors": np.ascontiguousarray(factors, dtype=np.float32)})
    model._fitted = True
    return model


def fold_in_regularization(config: SparkALSConfig, median_items: float) -> float:
    """Spark's weighted-lambda regularization (``regParam`` x ratings) of the median user."""
    return round(config.reg_param * max(float(median_items), 1.0), 6)


def train_als_on_lake(
    spark: SparkSession,
    lake: str | Path,
    config: SparkALSConfig,
    weights: Mapping[str, float],
    *,
    step: Callable[[str], None] = lambda _msg: None,
) -> tuple[ALS, dict[str, Any]]:
    """Read the lake's events, train Spark ALS, return the served model and its figures."""
    from pyspark.ml.feature import StringIndexer
    from pyspark.sql import functions as F

    started = time.perf_counter()
    step("reading the lake's events")
    events = read_lake(spark, lake, "events")
    n_events = events.count()
    pairs = lake_interactions(events, weights).cache()
    try:
        n_pairs = pairs.count()
        if n_pairs == 0:
            raise RecommendError(f"no interactions in the lake at {lake}: export events first")
        step(f"indexing {n_pairs:,} interactions")
        indexer = StringIndexer(
            inputCols=["profile_key", "item_id"],
            outputCols=["user_ix", "item_ix"],
            stringOrderType="alphabetAsc",
        ).fit(pairs)
        user_labels, item_labels = (list(labels) for labels in indexer.labelsArray)
        ratings = indexer.transform(pairs).select(
            F.col("user_ix").cast("int").alias("user"),
            F.col("item_ix").cast("int").alias("item"),
            F.col("weight").cast("float").alias("weight"),
        )
        median_items = (
            pairs.groupBy("profile_key")
            .count()
            .agg(F.percentile_approx("count", 0.5).alias("m"))
            .first()["m"]  # type: ignore[index]
        )
        step(
            f"training ALS (rank {config.rank}, {config.max_iter} iterations) on "
            f"{len(user_labels):,} users x {len(item_labels):,} items"
        )
        factors = fit_item_factors(spark, ratings, len(item_labels), config)
    finally:
        pairs.unpersist()
    model = served_model(item_labels, factors, config, float(median_items))
    info: dict[str, Any] = {
        "kind": model.kind,
        "engine": "spark",
        "spark_version": spark.version,
        "master": spark.sparkContext.master,
        "events_read": int(n_events),
        "users": len(user_labels),
        "items": len(item_labels),
        "interactions": int(n_pairs),
        "params": {**asdict(config), "fold_in_regularization": model.regularization},
        "trained_at": datetime.now(UTC).isoformat(),
        "seconds": round(time.perf_counter() - started, 2),
    }
    return model, info


def train_cf_spark(
    spark: SparkSession,
    lake: str | Path,
    config: SparkALSConfig,
    weights: Mapping[str, float],
    store: CFStore,
    *,
    step: Callable[[str], None] = lambda _msg: None,
) -> tuple[str, dict[str, Any], ALS]:
    """Train on the lake with Spark and write the model as a new version of ``store``."""
    model, info = train_als_on_lake(spark, lake, config, weights, step=step)
    version = store.write(model, info)
    log.info(
        "trained Spark ALS CF model %s on %d interactions in %.1fs",
        version,
        info["interactions"],
        info["seconds"],
    )
    return version, {"version": version, **info}, model


class SparkALSStrategy:
    """Spark ALS as an offline-evaluation strategy (``spark-als``): fitted with Spark on the
    split's training matrix, scored like the served model (fold-in from each user's history)."""

    name = "spark-als"

    def __init__(self, spark: SparkSession, config: SparkALSConfig) -> None:
        self.spark = spark
        self.config = config
        self.model: ALS | None = None

    def fit(self, interactions: InteractionMatrix) -> SparkALSStrategy:
        import pyarrow as pa

        coo = interactions.matrix.tocoo()
        table = pa.table(
            {
                "user": pa.array(coo.row.astype(np.int32)),
                "item": pa.array(coo.col.astype(np.int32)),
                "weight": pa.array(coo.data.astype(np.float32)),
            }
        )
        ratings = self.spark.createDataFrame(table)
        factors = fit_item_factors(self.spark, ratings, interactions.n_items, self.config)
        per_user = np.diff(interactions.matrix.indptr)
        median = float(np.median(per_user[per_user > 0])) if per_user.any() else 1.0
        self.model = served_model(interactions.item_ids, factors, self.config, median)
        return self

    def recommend_batch(
        self, user_items: sp.csr_matrix, k: int, *, exclude_seen: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        if self.model is None:
            raise RecommendError("spark-als has not been fitted")
        return self.model.recommend_batch(user_items, k, exclude_seen=exclude_seen)
