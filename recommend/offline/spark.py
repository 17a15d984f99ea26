"""``tailor evaluate`` with the Spark engine: the ``spark-als`` row, scored on the same split as
the in-process strategies (:func:`recommend.offline.harness.evaluate`), so its NDCG sits side by
side with ALS and EASE under one protocol."""

from __future__ import annotations

from typing import TYPE_CHECKING

from recommend.offline.evaluate import Row, evaluate_strategies
from recommend.offline.harness import EvaluationInputs, make_split, subsample_users
from recommend.spark_als import SparkALSConfig, SparkALSStrategy

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

SPARK_STRATEGIES = ("spark-als",)


def evaluate_spark_als(
    spark: SparkSession,
    inputs: EvaluationInputs,
    config: SparkALSConfig,
    *,
    split: str = "random",
    k: int = 10,
    seed: int = 42,
    last_n: int = 1,
    max_users: int | None = None,
) -> Row:
    """The ``spark-als`` row: the users (``max_users``) and split that ``evaluate`` draws for
    the same arguments, Spark ALS fitted on the training part, top-``k`` scored on the test part."""
    matrix = inputs.matrix
    if max_users is not None:
        matrix = subsample_users(matrix, max_users, seed)
    parts = make_split(matrix, split, seed, last_n)
    return evaluate_strategies([SparkALSStrategy(spark, config)], parts, k)[0]
