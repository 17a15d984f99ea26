"""UTC timestamps: parsing what clients send, formatting what Tailor answers.

Accepted inputs: ISO-8601 strings with an offset or ``Z`` (a naive string is taken as UTC),
date-only strings (midnight UTC), and epoch numbers in seconds or milliseconds (values above
1e11 are milliseconds: 1e11 seconds is the year 5138). Everything is returned as UTC epoch
seconds (float).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

_MS_THRESHOLD = 1e11
# The range of accepted timestamps (UTC epoch seconds).
MIN_TS = datetime(1990, 1, 1, tzinfo=UTC).timestamp()
MAX_TS = datetime(2200, 1, 1, tzinfo=UTC).timestamp()


def parse_timestamp(value: object) -> float:
    """Parse a timestamp to UTC epoch seconds; raises ``ValueError`` with a precise reason."""
    if isinstance(value, bool):
        raise ValueError("expected an ISO-8601 string or epoch number, got a boolean")
    if isinstance(value, int | float):
        ts = float(value)
        if not math.isfinite(ts):
            raise ValueError("timestamp must be a finite number")
        if abs(ts) >= _MS_THRESHOLD:
            ts /= 1000.0
    elif isinstance(value, str):
        text = value.strip()
        if not text:
            raise ValueError("timestamp is empty")
        try:
            ts = float(text)
        except ValueError:
            try:
                dt = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
            except ValueError:
                raise ValueError(f"not an ISO-8601 timestamp: {text[:40]!r}") from None
            if dt.tzinfo is None:
                dt = dt.replace(tzinfo=UTC)
            ts = dt.timestamp()
        else:
            return parse_timestamp(ts)
    elif isinstance(value, datetime):
        dt = value if value.tzinfo else value.replace(tzinfo=UTC)
        ts = dt.timestamp()
    else:
        raise ValueError(f"expected an ISO-8601 string or epoch number, got {type(value).__name__}")
    if not MIN_TS <= ts <= MAX_TS:
        raise ValueError("timestamp out of range (1990-01-01 .. 2200-01-01)")
    return ts


def iso(ts: float | None) -> str | None:
    """Format UTC epoch seconds as ISO-8601 with a ``Z`` suffix (millisecond precision)."""
    if ts is None:
        return None
    dt = datetime.fromtimestamp(ts, tz=UTC)
    return dt.isoformat(timespec="milliseconds").replace("+00:00", "Z")
