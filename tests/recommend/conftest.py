"""Small hand-made interaction data with obvious co-occurrence answers."""

from __future__ import annotations

import pytest

from recommend.interactions import InteractionMatrix

# Two taste clusters: {a, b, c, d} and {x, y, z}; "lonely" is seen by one user only.
CLUSTER_ROWS = [
    ("u1", "a", 1.0, 1.0),
    ("u1", "b", 1.0, 2.0),
    ("u1", "c", 1.0, 3.0),
    ("u2", "a", 1.0, 1.0),
    ("u2", "b", 1.0, 2.0),
    ("u2", "c", 1.0, 3.0),
    ("u2", "d", 1.0, 4.0),
    ("u3", "a", 1.0, 1.0),
    ("u3", "c", 1.0, 2.0),
    ("u3", "d", 1.0, 3.0),
    ("u4", "b", 1.0, 1.0),
    ("u4", "c", 1.0, 2.0),
    ("u5", "x", 1.0, 1.0),
    ("u5", "y", 1.0, 2.0),
    ("u5", "z", 1.0, 3.0),
    ("u6", "x", 1.0, 1.0),
    ("u6", "y", 1.0, 2.0),
    ("u7", "x", 1.0, 1.0),
    ("u7", "z", 1.0, 2.0),
    ("u8", "y", 1.0, 1.0),
    ("u8", "z", 1.0, 2.0),
    ("u9", "lonely", 1.0, 1.0),
]


@pytest.fixture
def clusters() -> InteractionMatrix:
    return InteractionMatrix.from_rows(CLUSTER_ROWS)
