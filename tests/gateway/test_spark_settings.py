"""Spark engine settings: defaults, environment overrides, validation, and what wiring builds."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.settings import SettingsError, load_settings
from gateway.wiring import lake_root, spark_als_config, spark_config


def test_defaults_and_overrides(tmp_path: Path) -> None:
    settings = load_settings(environ={}, data_dir=tmp_path)
    assert lake_root(settings) == tmp_path / "lake"
    als = spark_als_config(settings)
    assert (als.rank, als.reg_param, als.alpha, als.max_iter, als.blocks) == (64, 0.1, 2.0, 10, 0)
    assert spark_config(settings).master == "local[2]"
    assert spark_config(settings, "local[1]").master == "local[1]"
    env = {
        "TAILOR_LAKE_DIR": str(tmp_path / "elsewhere"),
        "TAILOR_SPARK_MASTER": "spark://h:7077",
        "TAILOR_SPARK_ALS_RANK": "16",
        "TAILOR_SPARK_ALS_ALPHA": "5",
        "TAILOR_SPARK_SHUFFLE_PARTITIONS": "2",
    }
    settings = load_settings(environ=env, data_dir=tmp_path)
    assert lake_root(settings) == tmp_path / "elsewhere"
    assert spark_config(settings).master == "spark://h:7077"
    assert spark_config(settings).shuffle_partitions == 2
    assert (spark_als_config(settings).rank, spark_als_config(settings).alpha) == (16, 5.0)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("TAILOR_SPARK_ALS_RANK", "0", "spark_als_rank"),
        ("TAILOR_SPARK_ALS_MAX_ITER", "0", "spark_als_max_iter"),
        ("TAILOR_SPARK_SHUFFLE_PARTITIONS", "0", "spark_shuffle_partitions"),
        ("TAILOR_SPARK_ALS_ALPHA", "0", "spark_als_alpha"),
        ("TAILOR_SPARK_ALS_REG_PARAM", "-1", "spark_als_reg_param"),
        ("TAILOR_SPARK_MASTER", " ", "spark_master"),
    ],
)
def test_bad_values_are_refused(name: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        load_settings(environ={name: value})
