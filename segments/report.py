"""A self-contained HTML report of a segmentation (PNG images embedded as base64) plus the same
numbers as JSON: silhouette and elbow curves over k, segment sizes, a heatmap of centroid trait
z-scores, and a 2-D PCA projection of users coloured by segment.
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display, no GUI toolkit; must precede pyplot
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from segments.features import FeatureRow, FloatArray, feature_matrix
from segments.model import SegmentModel

# Plotting more points adds ink, not information, and bloats the page.
MAX_PLOTTED_USERS = 3_000


def _png(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _curve(by_k: dict[int, float], title: str, ylabel: str, chosen: int) -> str | None:
    if not by_k:
        return None
    ks = sorted(by_k)
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.plot(ks, [by_k[k] for k in ks], marker="o")
    if chosen in by_k:
        ax.axvline(chosen, color="grey", linestyle="--", label=f"chosen k={chosen}")
        ax.legend()
    ax.set(title=title, xlabel="k", ylabel=ylabel)
    return _png(fig)


def _projection(model: SegmentModel, x: FloatArray, ids: np.ndarray) -> dict[str, Any]:
    """2-D PCA of the users' scaled features (sampled), for plotting."""
    rng = np.random.default_rng(model.config.random_seed)
    idx = np.arange(x.shape[0])
    if idx.size > MAX_PLOTTED_USERS:
        idx = np.sort(rng.choice(idx, MAX_PLOTTED_USERS, replace=False))
    scaled = model.transform.scaled(x[idx])
    centered = scaled - scaled.mean(axis=0)
    _, sv, vt = np.linalg.svd(centered, full_matrices=False)
    coords = centered @ vt[:2].T
    if coords.shape[1] < 2:  # a single feature: plot it on a line
        coords = np.hstack([coords, np.zeros((coords.shape[0], 1))])
    variance = sv**2 / max(float((sv**2).sum()), 1e-12)
    return {
        "explained_variance_ratio": [float(v) for v in variance[:2]],
        "x": [round(float(v), 4) for v in coords[:, 0]],
        "y": [round(float(v), 4) for v in coords[:, 1]],
        "segment": [str(s) for s in ids[idx]],
    }


def render_report(
    model: SegmentModel,
    rows: Sequence[FeatureRow],
    out_html: str | Path,
    out_json: str | Path,
) -> dict[str, Any]:
    """Write the HTML page and the JSON document for `model` over `rows`; returns the JSON."""
    _, x = feature_matrix(rows, model.config.features)
    ids = model.assign_many(x)
    counts = Counter(str(s) for s in ids)
    names = {seg.id: seg.name for seg in model.segments}
    order = [seg.id for seg in model.segments]
    metrics = model.metrics
    features = list(model.config.features)
    heat = np.array(
        [
            [{t.name: t.z_score for t in seg.traits}.get(f, 0.0) for f in features]
            for seg in model.segments
        ]
    ).reshape(len(model.segments), len(features))
    projection = _projection(model, x, ids)

    doc: dict[str, Any] = {
        "version": model.version,
        "built_at": model.built_at.isoformat(),
        "n_users_trained": model.n_users,
        "n_users_reported": len(rows),
        "metrics": metrics.to_json(),
        "segments": [
            {
                "id": seg.id,
                "name": seg.name,
                "description": seg.description,
                "trained_size": seg.size,
                "size": counts.get(seg.id, 0),
                "traits": [
                    {"name": t.name, "value": t.value, "z_score": t.z_score} for t in seg.traits
                ],
            }
            for seg in model.segments
        ],
        "rules": [{"id": r.id, "name": r.name, "expression": r.expression} for r in model.rules],
        "heatmap": {"segments": order, "features": features, "z_scores": heat.round(4).tolist()},
        "projection": projection,
    }

    images: dict[str, str | None] = {
        "Silhouette over k": _curve(
            metrics.silhouette_by_k, "Silhouette (higher is better)", "silhouette", metrics.chosen_k
        ),
        "Elbow (inertia over k)": _curve(
            metrics.inertia_by_k, "Inertia (within-cluster SS)", "inertia", metrics.chosen_k
        ),
    }
    fig, ax = plt.subplots(figsize=(6, 3))
    labels = [names.get(s, s) for s in order]
    ax.barh(labels[::-1], [counts.get(s, 0) for s in order][::-1])
    ax.set(title="Segment sizes", xlabel="users")
    images["Segment sizes"] = _png(fig)

    fig, ax = plt.subplots(figsize=(10, 0.6 * len(order) + 2))
    bound = max(float(np.abs(heat).max()) if heat.size else 1.0, 1e-6)
    im = ax.imshow(heat, cmap="RdBu_r", vmin=-bound, vmax=bound, aspect="auto")
    ax.set_xticks(range(len(features)), features, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(order)), labels, fontsize=8)
    fig.colorbar(im, ax=ax, label="z-score vs population")
    ax.set_title("Centroid traits")
    images["Centroid traits (z-scores)"] = _png(fig)

    fig, ax = plt.subplots(figsize=(6, 5))
    seg_arr = np.array(projection["segment"], dtype=object)
    px, py = np.array(projection["x"]), np.array(projection["y"])
    for sid in order:
        mask = seg_arr == sid
        if mask.any():
            ax.scatter(px[mask], py[mask], s=6, alpha=0.6, label=names.get(sid, sid))
    ev = projection["explained_variance_ratio"]
    ax.set(title="Users, PCA projection", xlabel=f"PC1 ({ev[0]:.0%})")
    ax.set_ylabel(f"PC2 ({ev[1]:.0%})" if len(ev) > 1 else "PC2")
    ax.legend(fontsize=7, markerscale=2)
    images["Users by segment (PCA)"] = _png(fig)

    rows_html = "".join(
        f"<tr><td>{html.escape(s['id'])}</td><td>{html.escape(s['name'])}</td>"
        f"<td>{s['size']}</td><td>{html.escape(s['description'])}</td></tr>"
        for s in doc["segments"]
    )
    figures = "".join(
        f'<figure><img alt="{html.escape(title)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{html.escape(title)}</figcaption></figure>"
        for title, data in images.items()
        if data is not None
    )
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Tailor segments report</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1100px}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left}}
figure{{display:inline-block;margin:1em}}</style></head><body>
<h1>Segments report</h1>
<p>Model {html.escape(str(model.version))}, built {html.escape(doc["built_at"])};
algorithm {html.escape(metrics.algorithm)}, k = {metrics.chosen_k};
{len(rows)} users reported.</p>
<table><tr><th>id</th><th>name</th><th>users</th><th>description</th></tr>{rows_html}</table>
{figures}
</body></html>
"""
    Path(out_html).write_text(page, encoding="utf-8")
    Path(out_json).write_text(json.dumps(doc, indent=1), encoding="utf-8")
    return doc
