from __future__ import annotations

import base64
import json
import re
from pathlib import Path

from segments import SegmentModel
from segments.features import FeatureRow
from segments.report import render_report

Personas = tuple[list[FeatureRow], list[str]]


def test_report_is_self_contained_html_plus_json(
    tmp_path: Path, kmeans_model: SegmentModel, personas: Personas
) -> None:
    rows, _ = personas
    out_html, out_json = tmp_path / "report.html", tmp_path / "report.json"
    doc = render_report(kmeans_model, rows, out_html, out_json)
    page = out_html.read_text()
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) == 5  # silhouette, elbow, sizes, heatmap, projection
    for data in images:
        assert base64.b64decode(data).startswith(b"\x89PNG\r\n\x1a\n")
    assert "http" not in page  # nothing fetched from elsewhere
    for seg in kmeans_model.segments:
        assert seg.name in page

    stored = json.loads(out_json.read_text())
    assert stored == json.loads(json.dumps(doc))
    assert stored["metrics"]["chosen_k"] == 4
    assert set(stored["metrics"]["silhouette_by_k"]) == {str(k) for k in range(2, 9)}
    assert sum(s["size"] for s in stored["segments"]) == len(rows)
    heat = stored["heatmap"]
    assert len(heat["z_scores"]) == 4 and len(heat["z_scores"][0]) == len(heat["features"])
    proj = stored["projection"]
    assert len(proj["x"]) == len(proj["y"]) == len(proj["segment"]) == len(rows)
    assert 0 < sum(proj["explained_variance_ratio"]) <= 1
