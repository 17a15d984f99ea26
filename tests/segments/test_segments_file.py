from __future__ import annotations

import json
from pathlib import Path

import pytest

from segments import SegmentModel, SegmentsFileError, load_segments_file, train_segments
from segments.features import FeatureRow

Personas = tuple[list[FeatureRow], list[str]]

TOML = """
[segments.c1]
name = "Bargain regulars"

[segments.c3]
name = "VIPs"
description = "Our best customers"

[[rule]]
id = "cart-abandoners"
name = "Cart abandoners"
description = "Added to cart this week, bought nothing"
expression = "add_to_cart_7d > 0 and purchases_7d == 0"

[[rule]]
id = "shoe-fans"
name = "Shoe fans"
expression = '"shoes" in top_categories'
"""


def test_toml_overrides_names_and_adds_rule_segments(
    tmp_path: Path, kmeans_model: SegmentModel, personas: Personas
) -> None:
    path = tmp_path / "segments.toml"
    path.write_text(TOML)
    file = load_segments_file(path)
    model = kmeans_model.with_segments_file(file)
    by_id = {s.id: s for s in model.all_segments()}
    assert by_id["c1"].name == "Bargain regulars"
    assert by_id["c1"].description == kmeans_model.segment("c1").description  # not overridden
    assert (by_id["c3"].name, by_id["c3"].description) == ("VIPs", "Our best customers")
    assert by_id["c2"] == kmeans_model.segment("c2")
    assert by_id["cart-abandoners"].kind.value == "rule"
    user = {"add_to_cart_7d": 2.0, "purchases_7d": 0.0}
    assert model.rule_segments(user, ["shoes"]) == ["cart-abandoners", "shoe-fans"]
    assert model.rule_segments({"add_to_cart_7d": 2.0, "purchases_7d": 1.0}, []) == []
    # Overrides survive a retrain via the same file; ids stay, so names stay.
    rows, _ = personas
    retrained = train_segments(rows[:1_500], kmeans_model.config, kmeans_model, segments_file=file)
    assert retrained.segment("c3").name == "VIPs"


def test_json_file_has_the_same_shape(tmp_path: Path) -> None:
    path = tmp_path / "segments.json"
    path.write_text(json.dumps({"segments": {"c2": {"name": "X"}}, "rule": []}))
    assert load_segments_file(path).overrides["c2"].name == "X"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ('[[rule]]\nid = "r"\nexpression = "views_7d >> 1"\n', "rule 'r': column 11"),
        ('[[rule]]\nid = "r"\nexpression = "viewz > 1"\n', "unknown feature 'viewz'"),
        ('[segments.c1]\ncolour = "red"\n', "only 'name' and 'description'"),
        ("[[rule]]\nexpression = 'views_7d > 1'\n", "rule[0].id must be a string"),
        ("[other]\nx = 1\n", "unknown top-level keys"),
        ("not toml = = =", "segments.toml"),
    ],
)
def test_malformed_files_are_reported(tmp_path: Path, text: str, fragment: str) -> None:
    path = tmp_path / "segments.toml"
    path.write_text(text)
    with pytest.raises(SegmentsFileError) as info:
        load_segments_file(path)
    assert fragment in str(info.value)
