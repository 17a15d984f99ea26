"""Argument checks shared by every resolver: `first` clamping and id arguments."""

from __future__ import annotations

from typing import Any

from strawberry.types import Info

from resolvers.context import TailorContext
from resolvers.errors import BadUserInput
from storage.fields import FieldError, ident


def clamp_first(info: Info[TailorContext, Any], first: int) -> int:
    """`first` must be >= 0; above the configured maximum it is clamped, not refused."""
    if first < 0:
        raise BadUserInput("`first` must be >= 0")
    return min(first, info.context.services.max_first)


def id_arg(value: str, name: str) -> str:
    """An id argument with the same rules as ids in events and imports (BAD_USER_INPUT otherwise)."""
    try:
        out = ident({name: value}, name)
    except FieldError as exc:
        raise BadUserInput(f"`{name}` {exc.reason}") from None
    assert out is not None
    return out
