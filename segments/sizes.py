"""`SegmentSizes`: live member counts per segment as users are (re)assigned online."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping


class SegmentSizes:
    """user -> segment map plus counts per segment, every update O(1).

    Not locked: call it from one thread (the event loop) or guard it externally.
    """

    def __init__(self) -> None:
        self._segment_of: dict[str, str] = {}
        self._counts: Counter[str] = Counter()

    def assign(self, user_id: str, segment_id: str) -> str | None:
        """Put `user_id` in `segment_id`; returns the segment they left (None if new)."""
        old = self._segment_of.get(user_id)
        if old == segment_id:
            return old
        if old is not None:
            self._decrement(old)
        self._segment_of[user_id] = segment_id
        self._counts[segment_id] += 1
        return old

    def remove(self, user_id: str) -> str | None:
        """Forget a user (e.g. erasure); returns the segment they were in."""
        old = self._segment_of.pop(user_id, None)
        if old is not None:
            self._decrement(old)
        return old

    def _decrement(self, segment_id: str) -> None:
        self._counts[segment_id] -= 1
        if self._counts[segment_id] == 0:
            del self._counts[segment_id]

    def segment_of(self, user_id: str) -> str | None:
        return self._segment_of.get(user_id)

    def size(self, segment_id: str) -> int:
        return self._counts.get(segment_id, 0)

    def sizes(self) -> dict[str, int]:
        """Snapshot of the non-empty segments' sizes."""
        return dict(self._counts)

    def reset(self, assignments: Mapping[str, str]) -> None:
        """Replace everything, e.g. after a retrain reassigned the whole population."""
        self._segment_of = dict(assignments)
        self._counts = Counter(self._segment_of.values())

    def __len__(self) -> int:
        return len(self._segment_of)
