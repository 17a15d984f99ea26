"""The Spark engine says what is missing: PySpark (and how to install it), or a Java 17+ runtime.
No JVM is started here."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from gateway.cli.main import main
from storage.spark import (
    INSTALL_HINT,
    SparkUnavailable,
    java_version,
    read_lake,
    require_spark,
)
from storage.types import StorageError


def fake_java(tmp_path: Path, version_line: str) -> Path:
    home = tmp_path / "jdk"
    (home / "bin").mkdir(parents=True)
    java = home / "bin" / "java"
    java.write_text(f"#!/bin/sh\necho '{version_line}' >&2\n")
    java.chmod(0o755)
    return home


def test_missing_pyspark_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyspark", None)  # import pyspark -> ImportError
    with pytest.raises(SparkUnavailable) as err:
        require_spark()
    assert "pip install 'tailor-gateway[spark]'" in str(err.value)
    assert "pip install 'tailor-gateway[spark]'" in INSTALL_HINT


def test_java_is_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("pyspark")
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))
    monkeypatch.delenv("JAVA_HOME", raising=False)
    with pytest.raises(SparkUnavailable, match=r"Java runtime 17\+.*no `java` on PATH"):
        require_spark()
    monkeypatch.setenv("JAVA_HOME", str(fake_java(tmp_path, 'openjdk version "11.0.2" 2019-01-15')))
    with pytest.raises(SparkUnavailable, match=r"needs Java 17\+; .* is Java 11"):
        require_spark()
    monkeypatch.setenv("JAVA_HOME", str(fake_java(tmp_path / "b", 'openjdk version "21.0.1"')))
    assert require_spark()


def test_java_version_parsing(tmp_path: Path) -> None:
    assert java_version(str(fake_java(tmp_path, 'java version "1.8.0_392"') / "bin/java")) == 8
    assert (
        java_version(str(fake_java(tmp_path / "b", 'openjdk version "17.0.15"') / "bin/java")) == 17
    )
    assert java_version(str(fake_java(tmp_path / "c", "garbage") / "bin/java")) is None
    assert java_version(str(tmp_path / "no-java")) is None


def test_cli_reports_a_missing_engine_cleanly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "pyspark", None)
    code = main(["train", "cf", "--engine", "spark", "--data-dir", str(tmp_path / "var")])
    assert code == 2
    assert "pip install 'tailor-gateway[spark]'" in capsys.readouterr().err.replace("\n", "")
    code = main(["train", "index", "--engine", "spark", "--data-dir", str(tmp_path / "var")])
    assert code == 2
    assert "--engine spark trains cf and segments" in capsys.readouterr().err


def test_read_lake_names_the_export_command(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="tailor export parquet"):
        read_lake(None, tmp_path, "events")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown lake table"):
        read_lake(None, tmp_path, "nope")  # type: ignore[arg-type]


def test_read_lake_of_an_empty_store(tmp_path: Path) -> None:
    from storage import open_store
    from storage.lake import LakeExporter

    store = open_store(tmp_path / "tailor.db")
    LakeExporter(store, tmp_path / "lake").export(as_of=1_767_225_600.0)
    store.close()
    with pytest.raises(StorageError, match="has no events rows"):
        read_lake(None, tmp_path / "lake", "events")  # type: ignore[arg-type]
