"""HTTP cache semantics of GraphQL answers: Cache-Control, Vary, ETag/304, purge-tag headers.

================  ===============================================================  ==========================================
answer            Cache-Control                                                    Vary
================  ===============================================================  ==========================================
PUBLIC            ``public, max-age=B, s-maxage=S[, stale-while-revalidate=W]``     ``Accept``
                  ``[, stale-if-error=E]``
SEGMENT, keyed    same as PUBLIC                                                   ``Accept, X-Tailor-Segment``
by the request's
segment token
SEGMENT from      ``private, max-age=B[, ...]`` (+ a fresh ``X-Tailor-Segment``)    ``Accept, Authorization, Cookie, DNT,
credentials                                                                        Sec-GPC, X-Anonymous-Id, X-Tailor-Channel,
                                                                                   X-Tailor-Segment``
PRIVATE           ``private, max-age=B[, ...]`` -- never ``public``/``s-maxage``     as above
not cacheable     ``no-store`` (mutations, errors, APQ misses, 4xx/5xx)            --
================  ===============================================================  ==========================================

``B = min(max_age, browser cap)``, ``S = min(max_age, shared cap)``; windows in seconds.
A SEGMENT answer is shared only when the request's valid token names the very segment the
answer was computed for (no token and no segment counts as "the generic answer"): a shared
cache keys it by that header. Otherwise the segment came from the caller's credentials, which
a shared cache does not key by, so the answer stays private.

A private answer varies on every header that says who is asking or what they allow: the
credentials (``Authorization``, the ``auth_cookie`` in ``Cookie``, ``X-Anonymous-Id``) and the
privacy signals (``Sec-GPC``/``DNT`` turn personalization off), so a browser cache never serves
one person's answer to another session, nor a personalized one after an opt-out.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from cache import CachedResponse, CachePolicy, CacheScope

K = TypeVar("K")
V = TypeVar("V")

# X-Tailor-Channel: flags and experiments may target the channel (docs/EXPERIMENTS.md).
_PRIVATE_VARY = (
    "Accept, Authorization, Cookie, DNT, Sec-GPC, X-Anonymous-Id, X-Tailor-Channel, "
    "X-Tailor-Segment"
)
# Header size budget for Surrogate-Key / Cache-Tag (CDNs cap these around 16 KiB).
_MAX_TAG_CHARS = 8000


def approx_bytes(value: object, _depth: int = 0) -> int:
    """A cheap estimate of the memory a memo key or value holds (strings, bytes and the
    tuples/lists/sets of them a memo uses; anything else counts a flat 64 bytes)."""
    if isinstance(value, str | bytes):
        return 49 + len(value)
    if isinstance(value, tuple | list | frozenset | set):
        if _depth >= 3:
            return 56 + 64 * len(value)
        return 56 + 8 * len(value) + sum(approx_bytes(v, _depth + 1) for v in value)
    return 64


def _pair_bytes(key: object, value: object) -> int:
    return approx_bytes(key) + approx_bytes(value) + 100  # + the dict slot and its hash


class Memo(dict[K, V], Generic[K, V]):
    """A bounded memo for the hit path: a plain dict (a get is one hash lookup, unlike an LRU
    that reorders on every read), emptied when it reaches ``max_entries`` or when its entries
    would pass ``max_bytes`` (``sizeof(key, value)`` estimates one entry; keys are often
    client-written, so the bound is in bytes, not only entries). An entry bigger than the whole
    budget is not kept. Only for values that can be recomputed: forgetting costs one
    recomputation, never correctness."""

    def __init__(
        self,
        max_entries: int,
        *,
        max_bytes: int = 4 << 20,
        sizeof: Callable[[K, V], int] = _pair_bytes,
    ) -> None:
        super().__init__()
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.sizeof = sizeof
        self.nbytes = 0

    def __setitem__(self, key: K, value: V) -> None:
        size = self.sizeof(key, value)
        if size > self.max_bytes:
            self.pop(key, None)
            return
        if len(self) >= self.max_entries or self.nbytes + size > self.max_bytes:
            self.clear()
        super().__setitem__(key, value)
        self.nbytes += size  # an overwrite counts twice: the memo is emptied a little early

    def clear(self) -> None:
        super().clear()
        self.nbytes = 0


@dataclass(frozen=True, slots=True)
class Audience:
    """Who a request is answered for.

    ``profile_key``: the viewer's profile key (user id or ``anon:<id>``), ``None`` without
    credentials. ``segment``: the segment the answer is computed for (``None``: generic).
    ``token_segment``: the segment of the request's valid ``X-Tailor-Segment`` token, if any.
    ``variants``: the recommendation variants the SEGMENT answer is computed for (``exp=v;…``,
    '' for none); ``token_variants``: those the token names. ``personal``: a digest of every
    flag and variant of the viewer (PRIVATE answers are keyed by it; '' without experiments).
    """

    profile_key: str | None = None
    segment: str | None = None
    token_segment: str | None = None
    variants: str = ""
    token_variants: str = ""
    personal: str = ""

    @property
    def private_tags(self) -> tuple[str, ...]:
        return (f"user:{self.profile_key}",) if self.profile_key else ()


def shared_cacheable(policy: CachePolicy, who: Audience) -> bool:
    """Whether a shared cache may store this answer (given it is cacheable at all)."""
    if policy.scope is CacheScope.PUBLIC:
        return True
    return (
        policy.scope is CacheScope.SEGMENT
        and who.token_segment == who.segment
        and who.token_variants == who.variants
    )


def tag_header_values(tags: frozenset[str]) -> tuple[str, str]:
    """``(Surrogate-Key, Cache-Tag)`` values: type tags first, cut to the size budget."""
    ordered = sorted(tags, key=lambda t: (not t.startswith("type:"), t))
    kept: list[str] = []
    size = 0
    for tag in ordered:
        size += len(tag) + 1
        if size > _MAX_TAG_CHARS:
            break
        kept.append(tag)
    return " ".join(kept), ",".join(kept)


def not_modified(if_none_match: str | None, etag: str) -> bool:
    """RFC 9110 §13.1.2 weak comparison of ``If-None-Match`` against our strong ETag."""
    if not if_none_match or not etag:
        return False
    for candidate in if_none_match.split(","):
        candidate = candidate.strip()
        if candidate == "*":
            return True
        if candidate.startswith("W/"):
            candidate = candidate[2:]
        if candidate == etag:
            return True
    return False


class EdgeHeaders:
    """Builds response headers. Caps in seconds: ``max-age`` (browsers), ``s-maxage`` (CDNs).

    Cache-Control/Vary strings and tag headers are memoized: a cache hit should cost a dict
    lookup, not string formatting (policies are few; tag sets repeat with their entries).
    """

    def __init__(self, *, browser_max_age: int = 60, shared_max_age: int = 3600) -> None:
        self.browser_max_age = browser_max_age
        self.shared_max_age = shared_max_age
        self._cc: Memo[tuple[CachePolicy, bool], tuple[str, str]] = Memo(1024)
        self._tags: Memo[frozenset[str], tuple[str, str]] = Memo(4096)
        self._encoded: Memo[tuple[object, ...], list[tuple[bytes, bytes]]] = Memo(8192)

    def shared(self, policy: CachePolicy, who: Audience, cacheable: bool) -> bool:
        return cacheable and shared_cacheable(policy, who)

    def cache_control(self, policy: CachePolicy, who: Audience) -> tuple[str, str]:
        """``(Cache-Control, Vary)`` for a cacheable answer."""
        shared = shared_cacheable(policy, who)
        found = self._cc.get((policy, shared))
        if found is None:
            found = self._cc[(policy, shared)] = self._cache_control(policy, shared)
        return found

    def _cache_control(self, policy: CachePolicy, shared: bool) -> tuple[str, str]:
        parts = [f"max-age={min(policy.max_age, self.browser_max_age)}"]
        if shared:
            parts.insert(0, "public")
            parts.append(f"s-maxage={min(policy.max_age, self.shared_max_age)}")
            vary = "Accept" if policy.scope is CacheScope.PUBLIC else "Accept, X-Tailor-Segment"
        else:
            parts.insert(0, "private")
            vary = _PRIVATE_VARY
        if policy.stale_while_revalidate:
            parts.append(f"stale-while-revalidate={policy.stale_while_revalidate}")
        if policy.stale_if_error:
            parts.append(f"stale-if-error={policy.stale_if_error}")
        return ", ".join(parts), vary

    def tag_headers(self, tags: frozenset[str]) -> tuple[str, str]:
        found = self._tags.get(tags)
        if found is None:
            found = self._tags[tags] = tag_header_values(tags)
        return found

    def encoded(
        self, entry: CachedResponse, who: Audience, key: str | None
    ) -> list[tuple[bytes, bytes]]:
        """``build``'s headers of a cacheable answer, ASGI-encoded, without Age and X-Cache."""
        shared = shared_cacheable(entry.policy, who)
        memo = (key, entry.stored_at, entry.etag, shared)
        found = self._encoded.get(memo)
        if found is None:
            headers = self.build(entry, who, cacheable=True, x_cache="", key=key)
            del headers["Age"], headers["X-Cache"]
            found = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
            self._encoded[memo] = found
        return found

    def build(
        self,
        entry: CachedResponse,
        who: Audience,
        *,
        cacheable: bool,
        x_cache: str,
        age: int = 0,
        key: str | None = None,
    ) -> dict[str, str]:
        if not cacheable:
            return {"Cache-Control": "no-store", "X-Cache": x_cache}
        cache_control, vary = self.cache_control(entry.policy, who)
        headers = {
            "Cache-Control": cache_control,
            "Vary": vary,
            "ETag": entry.etag,
            "Age": str(age),
            "X-Cache": x_cache,
        }
        if entry.tags:
            headers["Surrogate-Key"], headers["Cache-Tag"] = self.tag_headers(entry.tags)
        if key is not None:
            headers["X-Cache-Key"] = key
        return headers
