"""UTC timestamp formatting for the demo files (whole seconds since the epoch in, text out)."""

from __future__ import annotations

import time
from datetime import UTC, datetime

DAY_S = 86_400


def iso_z(seconds: int) -> str:
    """Format epoch seconds as ISO-8601 UTC with a ``Z`` suffix, e.g. ``2026-11-26T14:00:00Z``."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def iso_date(seconds: int) -> str:
    """Format epoch seconds as the ISO calendar date (UTC) they fall on, e.g. ``2026-11-26``."""
    return time.strftime("%Y-%m-%d", time.gmtime(seconds))


def to_epoch(moment: datetime) -> int:
    """Whole epoch seconds of ``moment``; a naive datetime is taken to be UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp())


def from_epoch(seconds: int) -> datetime:
    """Aware UTC datetime for epoch seconds."""
    return datetime.fromtimestamp(seconds, tz=UTC)
