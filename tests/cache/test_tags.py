"""TagIndex and PurgeFence."""

from __future__ import annotations

from cache import PurgeFence, TagIndex


def test_invalidate_returns_every_key_with_any_tag_and_forgets_them() -> None:
    index: TagIndex[str] = TagIndex()
    index.add("k1", ["item:1", "list:trending"])
    index.add("k2", ["item:2", "list:trending"])
    index.add("k3", ["item:3"])
    assert index.invalidate(["item:1", "item:3"]) == {"k1", "k3"}
    assert "k1" not in index and "k3" not in index
    assert index.keys_for("list:trending") == {"k2"}
    assert index.invalidate(["item:1"]) == set()


def test_discard_drops_empty_tags_so_nothing_leaks() -> None:
    index: TagIndex[str] = TagIndex()
    for i in range(1000):
        index.add(f"k{i}", [f"user:{i}", "all"])
    for i in range(1000):
        index.discard(f"k{i}")
    assert len(index) == 0
    assert index.tag_count == 0


def test_add_replaces_previous_tags() -> None:
    index: TagIndex[str] = TagIndex()
    index.add("k", ["a", "b"])
    index.add("k", ["c"])
    assert index.tags_for("k") == {"c"}
    assert index.invalidate(["a", "b"]) == set()
    assert index.tag_count == 1


def test_fence_blocks_stores_of_loads_overlapping_a_purge() -> None:
    fence: PurgeFence[str] = PurgeFence()
    by_tag = fence.begin("k1")
    by_key = fence.begin("k2")
    untouched = fence.begin("k3")
    fence.purged_tags(["user:1"])
    fence.purged_keys(["k2"])
    assert not by_tag.may_store(["user:1", "x"])
    assert by_tag.may_store(["user:2"])
    assert not by_key.may_store([])
    assert untouched.may_store(["x"])
    for fill in (by_tag, by_key, untouched):
        fence.end(fill)
    assert len(fence) == 0
    later = fence.begin("k1")
    assert later.may_store(["user:1"])  # purges before a load began do not block it
