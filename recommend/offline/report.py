"""What ``tailor evaluate`` prints and writes: the report of one split, the verdict lines, JSON
for every split of a run, and a self-contained HTML page (``--html``).

Per split the page shows every strategy side by side, overall and for cold users (1 to 3
training interactions), with NDCG@k, recall@k, MAP, coverage and novelty (and precision and hit
rate); the best value of each column is bold, the default answer's row highlighted, and the
notes (what the default answer is, what the pipeline chose) follow the tables.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recommend.offline.evaluate import Row

DATASETS = ("movielens", "store")
SPLITS = ("random", "temporal", "leave-last-n")
COLUMNS = (
    "strategy",
    "users",
    "precision",
    "recall",
    "ndcg",
    "hit_rate",
    "map",
    "coverage",
    "novelty",
)


@dataclass
class EvaluationReport:
    """What ``tailor evaluate`` prints and writes for one split: one row per strategy (and per
    strategy on the cold users alone), plus the context."""

    rows: list[Row]
    data: str
    split: str
    seed: int
    k: int
    users: int
    items: int
    interactions: int
    weights: dict[str, float]
    tuned: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)
    cold_rows: list[Row] = field(default_factory=list)
    pipeline: dict[str, Any] | None = None

    def ndcg(self, strategy: str, *, cold: bool = False) -> float:
        rows = self.cold_rows if cold else self.rows
        return float(next(r["ndcg"] for r in rows if r["strategy"] == strategy))

    def as_json(self) -> dict[str, Any]:
        return {
            "data": self.data,
            "split": self.split,
            "seed": self.seed,
            "k": self.k,
            "users": self.users,
            "items": self.items,
            "interactions": self.interactions,
            "weights": self.weights,
            "tuned": self.tuned,
            "notes": self.notes,
            "rows": self.rows,
            "cold_rows": self.cold_rows,
            "pipeline": self.pipeline,
        }


#: Rows that are one strategy on its own (the default answer must beat each of them).
SINGLE = ("popularity", "ease", "knn", "als", "trending", "content", "cf(tuned)")


def summary_lines(report: EvaluationReport) -> list[str]:
    """The verdict lines under the table: the best strategy against popularity, and the
    default answer against the best single strategy (overall) and trending (cold users)."""
    ndcg = {r["strategy"]: r["ndcg"] for r in report.rows}
    best = max((s for s in ndcg if s != "popularity"), key=lambda s: ndcg[s])
    base = ndcg["popularity"]
    ratio = ndcg[best] / base if base > 0 else float("inf")
    lines = [
        f"best: {best} NDCG@{report.k} {ndcg[best]:.4f} = {ratio:.2f}x popularity ({base:.4f})",
    ]
    if "default" in ndcg:
        singles = [s for s in SINGLE if s in ndcg]
        top = max(singles, key=lambda s: ndcg[s])
        chosen = (report.pipeline or {}).get("default", "?")
        lines.append(
            f"default answer ({chosen}): NDCG@{report.k} {ndcg['default']:.4f} vs the best "
            f"single strategy {top} {ndcg[top]:.4f} = {ndcg['default'] / max(ndcg[top], 1e-12):.3f}x"
        )
        cold = {r["strategy"]: r for r in report.cold_rows}
        if "default" in cold and "trending" in cold and cold["default"]["users"]:
            lines.append(
                f"cold users ({cold['default']['users']} with 1-3 training interactions): default "
                f"NDCG@{report.k} {cold['default']['ndcg']:.4f} vs trending "
                f"{cold['trending']['ndcg']:.4f}"
            )
    if report.tuned:
        where = report.tuned["saved_to"] or "not saved"
        lines.append(
            f"tuned weights {report.tuned['weights']} "
            f"(validation NDCG {report.tuned['validation_ndcg']:.4f}; {where})"
        )
    return lines + [f"note: {n}" for n in report.notes]


def columns(rows: Sequence[Row]) -> list[str]:
    return [c for c in COLUMNS if rows and c in rows[0]]


def write_json(report: EvaluationReport | Sequence[EvaluationReport], path: Path) -> None:
    """One report as JSON; several (one per split): the first at the top level, all under
    ``splits``."""
    reports = [report] if isinstance(report, EvaluationReport) else list(report)
    doc = {**reports[0].as_json(), "splits": [r.as_json() for r in reports]}
    path.write_text(json.dumps(doc, indent=2, sort_keys=True), encoding="utf-8")


def render_text(reports: Sequence[EvaluationReport]) -> str:
    """Every split's tables (overall, then cold users) and verdict lines, as plain text."""
    from recommend.offline.evaluate import render_table

    out: list[str] = []
    for report in reports:
        if len(reports) > 1:
            out.append(f"== split {report.split} ==")
        out.append(render_table(report.rows, columns(report.rows)))
        if report.cold_rows and report.cold_rows[0]["users"]:
            out.append(f"cold users (1-3 training interactions), split {report.split}:")
            out.append(render_table(report.cold_rows, columns(report.cold_rows)))
        elif report.cold_rows:
            out.append(f"cold users: none in split {report.split}")
        out += summary_lines(report)
        out.append("")
    return "\n".join(out).rstrip("\n")


_CSS = """body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}th,td{padding:.25em .7em;text-align:right}
th:first-child,td:first-child{text-align:left}thead th{border-bottom:2px solid #444}
tr.default td{background:#fff3c4}td.best{font-weight:bold}caption{text-align:left;
font-weight:bold;padding:.3em 0}.notes li{color:#555}"""


def _html_table(rows: Sequence[Row], caption: str) -> str:
    cols = columns(rows)
    best: dict[str, float] = {}
    for c in cols[2:]:
        values = [r[c] for r in rows if isinstance(r.get(c), float)]
        if values:
            best[c] = max(values)
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = []
    for r in rows:
        cells = []
        for c in cols:
            v = r.get(c, "")
            text = f"{v:.4f}" if isinstance(v, float) else html.escape(str(v))
            mark = ' class="best"' if c in best and v == best[c] and r["users"] else ""
            cells.append(f"<td{mark}>{text}</td>")
        cls = ' class="default"' if r["strategy"] == "default" else ""
        body.append(f"<tr{cls}>{''.join(cells)}</tr>")
    return (
        f"<table><caption>{html.escape(caption)}</caption><thead><tr>{head}</tr></thead>"
        f"<tbody>{''.join(body)}</tbody></table>"
    )


def render_html(reports: Sequence[EvaluationReport], path: Path) -> None:
    """A self-contained HTML page of every split (see the module docstring)."""
    first = reports[0]
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>tailor evaluate: {html.escape(first.data)}</title><style>{_CSS}</style>",
        "</head><body>",
        f"<h1>Recommendation quality: {html.escape(first.data)}</h1>",
        f"<p>{first.users} users, {first.items} items, {first.interactions} interactions; "
        f"top-{first.k}; seed {first.seed}. Bold: the best value of each column; highlighted: "
        "the default answer.</p>",
    ]
    for report in reports:
        parts.append(f"<h2>Split: {html.escape(report.split)}</h2>")
        parts.append(_html_table(report.rows, f"All users ({report.split} split)"))
        if report.cold_rows and report.cold_rows[0]["users"]:
            parts.append(_html_table(report.cold_rows, "Cold users (1 to 3 training interactions)"))
        else:
            parts.append("<p>No cold users (1 to 3 training interactions) in this split.</p>")
        items = "".join(f"<li>{html.escape(line)}</li>" for line in summary_lines(report))
        parts.append(f"<ul class='notes'>{items}</ul>")
        if report.pipeline:
            dump = html.escape(json.dumps(report.pipeline, indent=2, sort_keys=True, default=str))
            parts.append(f"<details><summary>pipeline</summary><pre>{dump}</pre></details>")
    parts.append("</body></html>")
    path.write_text("".join(parts), encoding="utf-8")
