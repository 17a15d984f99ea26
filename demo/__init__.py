"""Synthetic demo world (catalog, users, events, ground-truth personas) for ``tailor demo``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from demo.types import InvalidWorldParameters, Persona, WorldSummary

if TYPE_CHECKING:
    from demo.world import generate_world


def __getattr__(name: str) -> Any:
    # Lazy so `python -m demo.world` does not import demo.world twice (runpy warns).
    if name == "generate_world":
        from demo.world import generate_world

        return generate_world
    raise AttributeError(f"module 'demo' has no attribute {name!r}")


__all__ = ["InvalidWorldParameters", "Persona", "WorldSummary", "generate_world"]
