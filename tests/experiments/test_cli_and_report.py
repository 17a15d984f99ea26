"""`tailor experiments create|list|stop|report` and `tailor flags set|list` on a real data dir,
and the statistics of the report against independent computations."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from scipy import stats

from experiments import definitions as defs_file
from experiments.stats import compare, proportion_ci, relative_lift, srm, z_test
from gateway.cli.main import main as tailor
from storage import open_store
from storage.experiments import Attribution


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = tailor(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_create_list_stop_and_flags(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = ("--data-dir", str(tmp_path))
    code, _out, err = run(
        capsys,
        "experiments",
        "create",
        "reco-ab",
        "--variant",
        "control={}",
        "--variant",
        'short={"first": 3, "strategy": "trending"}',
        "--weights",
        "70,30",
        "--condition",
        '{"signedIn": true}',
        *d,
    )
    assert code == 0, err
    path = tmp_path / "experiments.json"
    rule = json.loads(path.read_text())["features"]["recommendations"]["rules"][0]
    assert rule["weights"] == pytest.approx([0.7, 0.3]) and rule["hashVersion"] == 2
    assert rule["condition"] == {"signedIn": True}
    code, out, _ = run(capsys, "experiments", "list", "--json", *d)
    (listed,) = json.loads(out)
    assert listed["key"] == "reco-ab" and listed["status"] == "running"
    assert listed["variants"] == pytest.approx({"control": 0.7, "short": 0.3})

    # Bad input: a clear message and exit code 2, and the file is left as it was.
    before = path.read_text()
    for argv in (
        ("experiments", "create", "reco-ab", "--variant", "a={}", "--variant", "b={}"),
        ("experiments", "create", "x", "--variant", "a={}", "--variant", 'b={"strategy": "?"}'),
        ("experiments", "create", "y", "--variant", "a={}", "--variant", "b=not json"),
        ("experiments", "create", "z", "--variant", "only={}"),
        ("experiments", "stop", "nope"),
    ):
        code, _out, err = run(capsys, *argv, *d)
        assert code == 2, argv
        assert err.strip(), argv
    assert path.read_text() == before

    code, _out, err = run(capsys, "flags", "set", "banner", "spring", *d)
    assert code == 0, err
    code, _out, err = run(capsys, "flags", "set", "beta", "true", "--coverage", "0.25", *d)
    assert code == 0, err
    code, out, _ = run(capsys, "flags", "list", "--json", *d)
    flags = {f["key"]: f for f in json.loads(out)}
    assert flags["banner"]["default"] == "spring"
    assert flags["beta"]["rules"] == [{"force": True, "hashAttribute": "id", "coverage": 0.25}]

    code, _out, err = run(capsys, "experiments", "stop", "reco-ab", *d)
    assert code == 0, err
    defs = defs_file.load(path)
    assert defs.features["recommendations"]["rules"] == []
    assert not defs.experiments["reco-ab"].running
    code, out, _ = run(capsys, "experiments", "list", *d)
    assert code == 0


def test_report_table_json_html_and_srm(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = ("--data-dir", str(tmp_path))
    assert (
        run(
            capsys,
            "experiments",
            "create",
            "e1",
            "--variant",
            "a={}",
            "--variant",
            'b={"diversity": 0.3}',
            *d,
        )[0]
        == 0
    )
    store = open_store(tmp_path / "tailor.db")
    try:
        # 600 exposed in a, 400 in b: a 50/50 experiment with a broken split.
        rows = [("e1", f"a{i}", "a", 0.0) for i in range(600)]
        rows += [("e1", f"b{i}", "b", 0.0) for i in range(400)]
        store.record_exposures(rows)
        attributions = [
            Attribution(f"m-a{i}", "e1", "a", f"a{i}", "click", "i1", "hybrid", "cf", 0.0, 1.0)
            for i in range(60)
        ] + [
            Attribution(f"m-b{i}", "e1", "b", f"b{i}", "click", "i2", "hybrid", "content", 0.0, 1.0)
            for i in range(80)
        ]
        store.record_attributions(attributions)
        assert store.record_attributions(attributions[:5]) == 0  # a replayed event: ignored
    finally:
        store.close()
    code, out, err = run(capsys, "experiments", "report", "e1", "--json", *d)
    assert code == 0, err
    report = json.loads(out)
    a, b = report["variants"]
    assert (a["exposed"], a["clickers"], b["exposed"], b["clickers"]) == (600, 60, 400, 80)
    assert report["srm"]["mismatch"] is True and report["srm"]["p_value"] < 1e-9
    (cmp,) = report["comparisons"]
    assert cmp["ctr"]["lift"] == pytest.approx(1.0)  # 20% against 10%
    assert cmp["ctr"]["p_value"] < 0.001
    assert {(x["variant"], x["source"]) for x in report["attributions"]} == {
        ("a", "cf"),
        ("b", "content"),
    }
    page = tmp_path / "r.html"
    code, _out, err = run(capsys, "experiments", "report", "e1", "--html", str(page), *d)
    assert code == 0, err
    assert "MISMATCH" in err  # the SRM verdict in the terminal
    assert "data:image/png;base64," in page.read_text()
    code, _out, err = run(capsys, "experiments", "report", "unknown", *d)
    assert code == 2 and "no experiment" in err


def test_statistics_against_independent_computations() -> None:
    # z-test: the square of z is the chi-squared of the 2x2 table without continuity correction.
    z, p = z_test(100, 1000, 130, 1000)
    chi2, p_chi, _dof, _exp = stats.chi2_contingency([[100, 900], [130, 870]], correction=False)
    assert z is not None and p is not None
    assert z * z == pytest.approx(chi2) and p == pytest.approx(p_chi)
    lift, low, high = relative_lift(100, 1000, 130, 1000)
    assert lift == pytest.approx(0.3)
    assert low is not None and high is not None and low < 0.3 < high
    # The log-ratio interval is symmetric on the log scale.
    assert math.log1p(high) - math.log(1.3) == pytest.approx(math.log(1.3) - math.log1p(low))
    assert compare(0, 10, 0, 10).p_value is None  # nothing varies: no test
    assert relative_lift(0, 10, 3, 10) == (None, None, None)
    assert srm([5000, 5000], [0.5, 0.5])[1] == pytest.approx(1.0)
    _c, p_srm = srm([5200, 4800], [0.5, 0.5])
    assert p_srm == pytest.approx(stats.chisquare([5200, 4800]).pvalue)
    low_ci, high_ci = proportion_ci(10, 100)
    assert low_ci < 0.1 < high_ci and proportion_ci(0, 0) == (0.0, 0.0)
