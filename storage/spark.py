"""Apache Spark over the Parquet lake: the optional engine for warehouse-scale training.

Spark is an optional extra (``pip install 'tailor-gateway[spark]'``: PySpark 4) and needs a Java
runtime 17 or newer. :func:`require_spark` checks both and says what is missing;
:func:`spark_session` opens (or joins) a session configured for Tailor's jobs, and
:func:`read_lake` reads one table of a lake written by :mod:`storage.lake`.

PySpark is imported inside the functions only, so everything else works without it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from storage.lake import MANIFEST, TABLES
from storage.types import StorageError

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

INSTALL_HINT = (
    "install the Spark extra: pip install 'tailor-gateway[spark]' "
    "(in a checkout: pip install -e '.[spark]'; `make setup` does it)"
)
MIN_JAVA = 17


class SparkUnavailable(StorageError):
    """PySpark is not installed, or no suitable Java runtime was found."""


@dataclass(frozen=True, slots=True)
class SparkConfig:
    """How Tailor's Spark jobs run. ``master``: ``local[N]`` (N cores of this machine) or a
    cluster URL (``spark://host:7077``, ``yarn``, ``k8s://…``)."""

    master: str = "local[2]"
    app_name: str = "tailor"
    driver_memory: str = "2g"
    shuffle_partitions: int = 8
    log_level: str = "ERROR"


def java_command() -> str | None:
    """``$JAVA_HOME/bin/java`` when set, else ``java`` on PATH (None: not found)."""
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").is_file():
        return str(Path(home) / "bin" / "java")
    return shutil.which("java")


def java_version(java: str | None = None) -> int | None:
    """The major version of the Java runtime (``17`` for ``17.0.15``; ``8`` for ``1.8``), or
    None when there is none or its version cannot be read."""
    java = java or java_command()
    if java is None:
        return None
    try:
        out = subprocess.run(
            [java, "-version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if match is None:
        return None
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


def require_spark() -> str:
    """PySpark's version; ``SparkUnavailable`` with what to install when PySpark or a Java 17+
    runtime is missing."""
    try:
        import pyspark
    except ImportError:
        raise SparkUnavailable(
            f"the Spark engine needs PySpark, which is not installed: {INSTALL_HINT}"
        ) from None
    java = java_command()
    if java is None:
        raise SparkUnavailable(
            f"the Spark engine needs a Java runtime {MIN_JAVA}+ (JDK {MIN_JAVA} or newer): no "
            "`java` on PATH and JAVA_HOME is not set (Debian/Ubuntu: apt-get install "
            "openjdk-17-jre-headless)"
        )
    version = java_version(java)
    if version is None or version < MIN_JAVA:
        found = "an unreadable version" if version is None else f"Java {version}"
        raise SparkUnavailable(
            f"the Spark engine needs Java {MIN_JAVA}+; {java} is {found} (set JAVA_HOME to a "
            f"JDK {MIN_JAVA} or newer)"
        )
    return str(pyspark.__version__)


@contextlib.contextmanager
def spark_session(config: SparkConfig | None = None) -> Iterator[SparkSession]:
    """A Spark session for Tailor's jobs. An already active session (a test's, a notebook's) is
    joined and left running; a session started here is stopped on exit."""
    require_spark()
    from pyspark.sql import SparkSession

    config = config or SparkConfig()
    active = SparkSession.getActiveSession()
    if active is not None:
        yield active
        return
    builder = (
        SparkSession.builder.master(config.master)
        .appName(config.app_name)
        .config("spark.driver.memory", config.driver_memory)
        .config("spark.sql.shuffle.partitions", str(config.shuffle_partitions))
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
    )
    if config.master.startswith("local"):
        # Local mode talks to itself only: never bind the driver to a network interface.
        builder = builder.config("spark.driver.host", "127.0.0.1").config(
            "spark.driver.bindAddress", "127.0.0.1"
        )
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel(config.log_level)
    logging.getLogger("py4j").setLevel(logging.WARNING)  # its INFO lines are per connection
    try:
        yield session
    finally:
        session.stop()


def read_lake(spark: SparkSession, root: str | Path, table: str) -> DataFrame:
    """One table of a lake (``events`` comes with its ``event_date`` partition column)."""
    if table not in TABLES:
        raise ValueError(f"unknown lake table {table!r}; one of {TABLES}")
    root = Path(root)
    path = root / table
    if not (root / MANIFEST).is_file():
        raise StorageError(f"no lake at {root}: write it first with `tailor export parquet {root}`")
    if not path.is_dir() or next(path.rglob("*.parquet"), None) is None:
        raise StorageError(f"the lake at {root} has no {table} rows (the store had none)")
    return spark.read.option("basePath", str(path)).parquet(str(path))


def event_weight_column(weights: Mapping[str, float]) -> Column:
    """Each event's weight as a Spark SQL column over the lake's events: ``weights[type]`` (0 for
    types without one), times ``value / 5`` for ``rate`` events. The same rule as
    ``profiles.state.ProfileState.event_weight`` (the lake tests check both agree)."""
    from pyspark.sql import functions as F

    pairs = [F.lit(x) for name, w in sorted(weights.items()) for x in (name, float(w))]
    base = F.coalesce(F.create_map(*pairs)[F.col("type")], F.lit(0.0)) if pairs else F.lit(0.0)
    stars = F.coalesce(F.get_json_object("properties", "$.value").cast("double"), F.lit(0.0))
    return F.when(F.col("type") == "rate", base * stars / 5.0).otherwise(base)


def epoch_seconds(column: str) -> Column:
    """A lake timestamp column as UTC epoch seconds (double, microsecond precision)."""
    from pyspark.sql import functions as F

    return F.unix_micros(F.col(column)) / 1_000_000.0
