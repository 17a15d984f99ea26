from __future__ import annotations

from segments import SegmentTrait
from segments.naming import name_segments


def _traits(**z: float) -> list[SegmentTrait]:
    """Traits from z-scores; raw value 5 (so "no purchases" does not kick in) unless given."""
    out = [SegmentTrait(name, 5.0, score) for name, score in z.items()]
    return sorted(out, key=lambda t: -abs(t.z_score))


LOYAL = _traits(frequency=1.6, monetary=1.4, avg_order_value=1.0, recency_days=-0.6)


def test_unrecognised_pattern_gets_a_generic_name_from_top_traits() -> None:
    odd = _traits(category_diversity=2.0, avg_session_duration_s=-1.2, frequency=0.1)
    [(name, description)] = name_segments([odd])
    assert name == "Broad category interest, short sessions"
    assert description == "Broad category interest, short sessions."


def test_each_persona_name_goes_to_the_best_fitting_cluster_only() -> None:
    weaker = _traits(frequency=0.9, monetary=0.8)
    names = name_segments([weaker, LOYAL])
    assert names[1][0] == "High-value loyalists"
    assert names[1][1].startswith("Frequent purchases, high order value, recent visits")
    assert names[0][0] == "Frequent purchases, high total spend"


def test_reserved_names_are_not_handed_out_again() -> None:
    [(name, _)] = name_segments([LOYAL], reserved={"High-value loyalists"})
    assert name != "High-value loyalists"
    twice = name_segments([_traits(), _traits()])
    assert [n for n, _ in twice] == ["Average users", "Average users (2)"]
