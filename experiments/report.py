"""``tailor experiments report KEY``: per variant exposures, click-through, conversions and revenue
per user, each treatment against the control (the first variant), the SRM check, as a dict
(``--json``), terminal rows, or a self-contained HTML page with matplotlib plots (PNG inlined).

Metrics (see docs/EXPERIMENTS.md): ``ctr`` = exposed subjects with at least one attributed click
/ exposed subjects (the primary metric, compared with the two-proportion z-test);
``conversion`` = exposed subjects with an attributed purchase / exposed; the guardrail
``revenue_per_user`` = every purchase of exposed subjects after their exposure / exposed.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any, Protocol

from experiments.definitions import ExperimentInfo
from experiments.stats import SRM_ALPHA, compare, proportion_ci, srm
from storage.experiments import VariantCounts


class ReportStore(Protocol):
    def experiment_counts(self, experiment: str) -> dict[str, VariantCounts]: ...

    def attributions_by(self, experiment: str) -> list[tuple[str, str, str, str, int]]: ...


def build(info: ExperimentInfo, store: ReportStore, level: float = 0.95) -> dict[str, Any]:
    """The report of one experiment as plain data (what ``--json`` prints)."""
    counts = store.experiment_counts(info.key)
    names = list(info.variants) + sorted(set(counts) - set(info.variants))
    rows = []
    for name in names:
        c = counts.get(name, VariantCounts())
        n = c.exposed
        low, high = proportion_ci(c.clickers, n, level)
        rows.append(
            {
                "variant": name,
                **asdict(c),
                "ctr": c.clickers / n if n else None,
                "ctr_ci": [low, high],
                "conversion": c.purchasers / n if n else None,
                "revenue_per_user": c.revenue / n if n else None,
            }
        )
    control = rows[0]
    comparisons = []
    for row in rows[1:]:
        ctr = compare(
            control["clickers"], control["exposed"], row["clickers"], row["exposed"], level
        )
        conv = compare(
            control["purchasers"], control["exposed"], row["purchasers"], row["exposed"], level
        )
        rpu_c, rpu_t = control["revenue_per_user"], row["revenue_per_user"]
        comparisons.append(
            {
                "variant": row["variant"],
                "against": control["variant"],
                "ctr": asdict(ctr),
                "conversion": asdict(conv),
                "revenue_per_user_change": (rpu_t / rpu_c - 1)
                if rpu_c and rpu_t is not None
                else None,
            }
        )
    chi2, p_srm = srm([r["exposed"] for r in rows[: len(info.weights)]], list(info.weights))
    return {
        "experiment": info.key,
        "feature": info.feature,
        "status": "running" if info.running else "stopped",
        "control": control["variant"],
        "confidence_level": level,
        "variants": rows,
        "comparisons": comparisons,
        "srm": {
            "chi2": chi2,
            "p_value": p_srm,
            "weights": list(info.weights),
            "mismatch": p_srm is not None and p_srm < SRM_ALPHA,
        },
        "attributions": [
            {"variant": v, "type": t, "strategy": st, "source": so, "events": n}
            for v, t, st, so, n in store.attributions_by(info.key)
        ],
    }


def _pct(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "–"
    return f"{value:+.2%}" if signed else f"{value:.2%}"


def _p(value: float | None) -> str:
    return "–" if value is None else (f"{value:.2e}" if value < 1e-4 else f"{value:.4f}")


def table_rows(report: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    """(header, rows) for a terminal table: one row per variant."""
    header = ["variant", "exposed", "clickers", "CTR", "lift (CI)", "p", "conv.", "rev/user"]
    by_variant = {c["variant"]: c for c in report["comparisons"]}
    rows = []
    for v in report["variants"]:
        cmp = by_variant.get(v["variant"])
        if cmp is None:
            lift, p = "control", ""
        else:
            ctr = cmp["ctr"]
            lift = (
                f"{_pct(ctr['lift'], True)} [{_pct(ctr['ci_low'], True)}, "
                f"{_pct(ctr['ci_high'], True)}]"
            )
            p = _p(ctr["p_value"])
        rpu = v["revenue_per_user"]
        rows.append(
            [
                v["variant"],
                str(v["exposed"]),
                str(v["clickers"]),
                _pct(v["ctr"]),
                lift,
                p,
                _pct(v["conversion"]),
                "–" if rpu is None else f"{rpu:.2f}",
            ]
        )
    return header, rows


def srm_line(report: Mapping[str, Any]) -> str:
    s = report["srm"]
    if s["p_value"] is None:
        return "SRM check: not enough data"
    verdict = "MISMATCH, do not trust this split" if s["mismatch"] else "ok"
    return f"SRM check: chi2 = {s['chi2']:.3f}, p = {_p(s['p_value'])} ({verdict})"


def _figure(report: Mapping[str, Any]) -> str:
    """Three panels (exposures, CTR with its CI, revenue per user) as an inline PNG."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    rows = report["variants"]
    names = [r["variant"] for r in rows]
    fig = Figure(figsize=(11, 3.4), dpi=100)
    axes = fig.subplots(1, 3)
    axes[0].bar(names, [r["exposed"] for r in rows], color="#4C72B0")
    axes[0].set_title("Exposed subjects")
    ctr = [r["ctr"] or 0.0 for r in rows]
    err = [
        [c - r["ctr_ci"][0] for c, r in zip(ctr, rows, strict=True)],
        [r["ctr_ci"][1] - c for c, r in zip(ctr, rows, strict=True)],
    ]
    axes[1].bar(names, ctr, yerr=err, capsize=6, color="#55A868")
    axes[1].set_title(f"Click-through ({report['confidence_level']:.0%} CI)")
    axes[1].yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
    revenue = [r["revenue_per_user"] or 0.0 for r in rows]
    axes[2].bar(names, revenue, color="#C44E52")
    axes[2].set_ylim(0, max(max(revenue) * 1.15, 1.0))
    axes[2].set_title("Revenue per user (guardrail)")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def to_html(report: Mapping[str, Any]) -> str:
    """A self-contained page: the table, the SRM line, the plots (PNG as a data URI)."""
    header, rows = table_rows(report)
    esc = html.escape
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>" for r in rows)
    attributions = "".join(
        f"<tr><td>{esc(a['variant'])}</td><td>{esc(a['type'])}</td><td>{esc(a['strategy'])}"
        f"</td><td>{esc(a['source'])}</td><td>{a['events']}</td></tr>"
        for a in report["attributions"]
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Experiment {esc(report["experiment"])}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; color: #222; }}
table {{ border-collapse: collapse; margin: 1rem 0; }}
th, td {{ border: 1px solid #ccc; padding: .3rem .6rem; text-align: right; }}
th:first-child, td:first-child {{ text-align: left; }}
.note {{ color: #555; max-width: 60rem; }}
</style></head><body>
<h1>Experiment <code>{esc(report["experiment"])}</code> ({esc(report["status"])})</h1>
<p>Feature <code>{esc(report["feature"])}</code>; control <code>{esc(report["control"])}</code>.</p>
<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>
<p>{esc(srm_line(report))}</p>
<img alt="exposures, click-through and revenue per user per variant"
 src="data:image/png;base64,{_figure(report)}">
<h2>Attributed events</h2>
<table><thead><tr><th>variant</th><th>type</th><th>strategy</th><th>source</th><th>events</th>
</tr></thead><tbody>{attributions}</tbody></table>
<p class="note">CTR: exposed subjects with at least one click on a recommendation citing its
<code>recommendationId</code>, over exposed subjects. Lift: relative to the control, with a
{report["confidence_level"]:.0%} confidence interval (delta method on the log ratio); p: two-sided
two-proportion z-test (pooled). SRM: chi-squared of exposures against the configured weights
(mismatch below p = {SRM_ALPHA}). Revenue per user: every purchase of exposed subjects after
exposure, a guardrail.</p>
</body></html>
"""
