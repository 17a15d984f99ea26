"""The demo catalog: fashion items with composed titles, descriptions and realistic prices.

Items of one category and style share vocabulary (nouns, materials, occasions), so text
embeddings of similar items land close together; prices follow a per-category log-normal
scaled by the brand's price level. Hidden facts (style, popularity, trending) travel on
`DemoItem` for the event simulator and never reach ``items.jsonl`` except through the text.
"""

from __future__ import annotations

import math

import numpy as np

from demo.draws import cdf_of, draw_index
from demo.timefmt import DAY_S, iso_z
from demo.types import CategorySpec, DemoItem
from demo.vocabulary import (
    BRANDS,
    CATEGORIES,
    COLORS,
    DEFAULT_FITS,
    EXTRA_TAGS,
    FIT_BY_ADJECTIVE,
    OCCASIONS,
    SEASON_PHRASES,
)

AVAILABLE_SHARE = 0.95
TRENDING_SHARE = 0.01
ZIPF_EXPONENT = 0.9
# Offset of the Zipf rank: keeps the very top items from swallowing their category.
ZIPF_OFFSET = 10.0
# Trending items are recent arrivals: released this many days before the window end.
TRENDING_RELEASE_DAYS = (8, 21)
# Catalog items outside the trend existed before the window (up to two years of back catalog).
BACK_CATALOG_DAYS = 720


def allocate(total: int, weights: np.ndarray) -> np.ndarray:
    """Split ``total`` into integer counts proportional to ``weights`` (largest remainder).

    Every bucket gets at least one when ``total >= len(weights)``.
    """
    shares = weights / weights.sum() * total
    counts = np.floor(shares).astype(np.int64)
    if total >= len(weights):
        counts = np.maximum(counts, 1)
    remainder = total - int(counts.sum())
    order = np.argsort(-(shares - np.floor(shares)), kind="stable")
    i = 0
    while remainder != 0:
        j = order[i % len(order)]
        if remainder > 0:
            counts[j] += 1
            remainder -= 1
        elif counts[j] > 1:
            counts[j] -= 1
            remainder += 1
        i += 1
    return counts


def retail_price(raw: float) -> float:
    """Round a raw price to a shop price: x.99 below 100, x.95 below 300, then x9.00."""
    euros = max(3, math.floor(raw))
    if euros < 100:
        return round(euros - 0.01, 2)
    if euros < 300:
        return round(euros - 0.05, 2)
    return float(round(euros, -1) - 1)


def _brands_for(category: CategorySpec) -> tuple[list[int], np.ndarray]:
    """Brands selling ``category`` and the CDF to draw among them."""
    eligible: list[int] = []
    weights: list[float] = []
    for b, (_, _, only) in enumerate(BRANDS):
        if not only:
            eligible.append(b)
            weights.append(1.0)
        elif category.name in only:
            # Specialists dominate their own categories, as on a real marketplace.
            eligible.append(b)
            weights.append(4.0)
    return eligible, cdf_of(weights)


def _describe(
    rng: np.random.Generator,
    brand: str,
    adjective: str,
    color: str,
    material: str,
    noun: str,
    season: str,
    style: str,
) -> str:
    fit = FIT_BY_ADJECTIVE.get(adjective) or DEFAULT_FITS[int(rng.integers(len(DEFAULT_FITS)))]
    occasions = OCCASIONS[style]
    first, second = rng.choice(len(occasions), size=2, replace=False)
    return (
        f"{adjective} {color.lower()} {noun.lower()} by {brand} in {material.lower()}, "
        f"with {fit} and made for {SEASON_PHRASES[season]}. "
        f"A {style} piece for {occasions[int(first)]} "
        f"and {occasions[int(second)]}."
    )


def generate_items(
    rng: np.random.Generator, n_items: int, window_start_s: int, end_s: int
) -> list[DemoItem]:
    """Build ``n_items`` unique-titled items; ids are ``i00001``.. in a shuffled category order."""
    weights = np.asarray([c.weight for c in CATEGORIES])
    per_category = allocate(n_items, weights)
    category_of = np.repeat(np.arange(len(CATEGORIES)), per_category)
    category_of = category_of[rng.permutation(n_items)]

    ranks = rng.permutation(n_items)
    popularity = (ranks + ZIPF_OFFSET) ** -ZIPF_EXPONENT
    n_trending = max(1, round(TRENDING_SHARE * n_items))
    trending = np.zeros(n_items, dtype=bool)
    # Trending items come from the long tail: they are new, so they have no history yet.
    trending[
        rng.choice(np.argsort(-popularity)[n_items // 4 :], size=n_trending, replace=False)
    ] = True
    available = rng.random(n_items) < AVAILABLE_SHARE
    available[trending] = True

    brand_tables = [_brands_for(c) for c in CATEGORIES]
    # The first listed style is the category's main one.
    style_cdfs = [cdf_of(np.linspace(2.0, 1.0, len(c.styles))) for c in CATEGORIES]
    gender_cdfs = [cdf_of(list(c.genders.values())) for c in CATEGORIES]
    titles: set[str] = set()
    items: list[DemoItem] = []
    for index in range(n_items):
        c = int(category_of[index])
        category = CATEGORIES[c]
        eligible, brand_cdf = brand_tables[c]
        gender = list(category.genders)[draw_index(rng, gender_cdfs[c])]
        style = category.styles[draw_index(rng, style_cdfs[c])]
        season = category.seasons[int(rng.integers(len(category.seasons)))]
        for _attempt in range(1000):
            brand_name, brand_level, _ = BRANDS[eligible[draw_index(rng, brand_cdf)]]
            adjective = category.adjectives[int(rng.integers(len(category.adjectives)))]
            color = COLORS[int(rng.integers(len(COLORS)))]
            material = category.materials[int(rng.integers(len(category.materials)))]
            noun = category.nouns[int(rng.integers(len(category.nouns)))]
            title = f"{brand_name} {adjective} {color} {material} {noun}"
            if title not in titles:
                break
        else:  # pragma: no cover - needs ~10^5 items in one category
            title = f"{title} No. {index + 1}"
        titles.add(title)

        raw = category.median_price * brand_level * float(rng.lognormal(0.0, category.price_sigma))
        price = retail_price(raw)
        if trending[index]:
            lo, hi = TRENDING_RELEASE_DAYS
            created_s = end_s - int(rng.integers(lo * DAY_S, hi * DAY_S))
        else:
            created_s = window_start_s - int(rng.integers(DAY_S, BACK_CATALOG_DAYS * DAY_S))
        tags = [style, color.lower(), material.lower(), season, noun.lower()]
        if trending[index]:
            tags.append("new-in")
        elif rng.random() < 0.2:
            tags.append(EXTRA_TAGS[1 + int(rng.integers(len(EXTRA_TAGS) - 1))])
        item_id = f"i{index + 1:05d}"
        record: dict[str, object] = {
            "id": item_id,
            "title": title,
            "description": _describe(
                rng, brand_name, adjective, color, material, noun, season, style
            ),
            "categories": [category.name]
            if gender == "unisex"
            else [category.name, gender.capitalize()],
            "tags": tags,
            "price": price,
            "currency": "EUR",
            "available": bool(available[index]),
            "attributes": {
                "brand": brand_name,
                "color": color.lower(),
                "material": material.lower(),
                "season": season,
                "gender": gender,
            },
            "created_at": iso_z(created_s),
        }
        items.append(
            DemoItem(
                index=index,
                id=item_id,
                category=c,
                gender=gender,
                style=style,
                price=price,
                price_ratio=price / category.median_price,
                popularity=float(popularity[index]),
                available=bool(available[index]),
                trending=bool(trending[index]),
                created_s=created_s,
                record=record,
            )
        )
    return items
