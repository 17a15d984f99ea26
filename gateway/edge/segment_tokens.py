"""Signed, expiring segment tokens (``X-Tailor-Segment``).

An edge worker forwards this token instead of the user's credentials, so a shared cache can key
SEGMENT-scoped answers by it (``Vary: X-Tailor-Segment``). Format::

    v1.<segment id, base64url>[~<variants, base64url>].<expiry, unix seconds>.<HMAC-SHA256, base64url>

The optional variants part names the caller's recommendation variants (``exp=variant;…``,
docs/EXPERIMENTS.md): a SEGMENT answer that honours experiments is keyed by the segment *and*
the variants, so a CDN keeps one entry per (segment, variant) and never mixes them.

The HMAC key is derived from the gateway secret with a fixed label, so a segment token can
never be replayed as a JWT or the other way round. A token that is malformed, forged or
expired verifies to ``None`` (the caller gets the generic answer); it is never an error.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Callable

HEADER = "X-Tailor-Segment"
_VERSION = "v1"
_LABEL = b"tailor segment token v1"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SegmentTokens:
    """Issues and verifies segment tokens. ``ttl_s``: lifetime in seconds; ``clock``: unix s."""

    def __init__(
        self, secret: str, *, ttl_s: int = 3600, clock: Callable[[], float] = time.time
    ) -> None:
        self._key = hmac.new(secret.encode("utf-8"), _LABEL, hashlib.sha256).digest()
        self.ttl_s = ttl_s
        self._clock = clock

    def _sign(self, payload: str) -> str:
        return _b64(hmac.new(self._key, payload.encode("ascii"), hashlib.sha256).digest())

    def issue(self, segment: str, variants: str = "") -> str:
        """A token for ``segment``, valid for between 3/4 of ``ttl_s`` and ``ttl_s``.

        The expiry is rounded down to a quarter of the lifetime, so every token issued for a
        segment within one quarter is the same string: a CDN keeping a variant per header value
        (``Vary: X-Tailor-Segment``) then holds a handful of variants per segment, not one per
        second of issuance.
        """
        step = max(1, self.ttl_s // 4)
        expires = int(self._clock()) // step * step + self.ttl_s
        cohort = _b64(segment.encode("utf-8"))
        if variants:
            cohort += "~" + _b64(variants.encode("utf-8"))
        payload = f"{_VERSION}.{cohort}.{expires}"
        return f"{payload}.{self._sign(payload)}"

    def verify(self, token: str | None) -> str | None:
        """The segment id of a valid, unexpired token; ``None`` otherwise."""
        found = self.verify_cohort(token)
        return found[0] if found is not None else None

    def verify_cohort(self, token: str | None) -> tuple[str, str] | None:
        """(segment id, variants) of a valid, unexpired token; ``None`` otherwise."""
        if not token or len(token) > 512:
            return None
        parts = token.strip().split(".")
        if len(parts) != 4 or parts[0] != _VERSION or not parts[2].isdigit():
            return None
        payload = ".".join(parts[:3])
        if not hmac.compare_digest(self._sign(payload), parts[3]):
            return None
        if int(parts[2]) <= self._clock():
            return None
        seg_part, _, var_part = parts[1].partition("~")
        try:
            segment = _unb64(seg_part).decode("utf-8")
            variants = _unb64(var_part).decode("utf-8") if var_part else ""
        except (binascii.Error, ValueError):
            return None
        return (segment, variants) if segment else None
