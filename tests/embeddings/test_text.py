"""Item text rendering."""

from __future__ import annotations

from embeddings import DEFAULT_ITEM_TEMPLATE, render_item_text


def test_default_template_renders_all_fields_in_order() -> None:
    item = {
        "title": "Floral  Sundress",
        "categories": ["Dresses", "Summer"],
        "tags": {"light", "cotton"},
        "description": "A breezy\n dress\tfor hot days.",
        "attributes": {"color": "yellow", "size": None, "fit": "relaxed"},
    }
    assert render_item_text(item) == (
        "Floral Sundress. Categories: Dresses, Summer. Tags: cotton, light. "
        "A breezy dress for hot days. color: yellow; fit: relaxed."
    )


def test_missing_and_empty_fields_drop_their_sections() -> None:
    assert render_item_text({"title": "Boots", "tags": [], "categories": None}) == "Boots."
    assert render_item_text({}) == ""
    assert "Tags" not in render_item_text({"title": "x", "tags": ["", None]})


def test_custom_template_with_dotted_fields_and_optional_sections() -> None:
    template = "{title} ({attributes.color})[[ by {brand}]][[ | {attributes.material}]]"
    item = {"title": "Scarf", "attributes": {"color": "blue"}, "brand": "Acme"}
    assert render_item_text(item, template) == "Scarf (blue) by Acme"


def test_default_template_is_exported() -> None:
    assert "{title}" in DEFAULT_ITEM_TEMPLATE and "{tags}" in DEFAULT_ITEM_TEMPLATE
