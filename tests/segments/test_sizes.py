from __future__ import annotations

from segments import SegmentSizes


def test_counts_follow_reassignments() -> None:
    sizes = SegmentSizes()
    assert sizes.assign("u1", "c1") is None
    sizes.assign("u2", "c1")
    sizes.assign("u3", "c2")
    assert sizes.sizes() == {"c1": 2, "c2": 1}
    assert sizes.assign("u1", "c2") == "c1"
    assert sizes.assign("u1", "c2") == "c2"  # idempotent
    assert (sizes.size("c1"), sizes.size("c2"), sizes.size("c9")) == (1, 2, 0)
    assert sizes.remove("u2") == "c1"
    assert sizes.sizes() == {"c2": 2}  # emptied segments disappear
    assert sizes.remove("nobody") is None
    assert sizes.segment_of("u3") == "c2" and len(sizes) == 2
    sizes.reset({"a": "c5", "b": "c5"})
    assert sizes.sizes() == {"c5": 2} and sizes.segment_of("u1") is None
