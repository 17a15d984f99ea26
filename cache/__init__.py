"""cache: async-aware TTL caches, canonical keys, single-flight and tag purges.

Pure machinery (stdlib + cachetools): the gateway's edge-cache middleware uses
``ResponseCache``; the profile cache uses ``ObjectCache``; resolvers feed ``compute_policy``.
``cache.redis_tier`` (redis-py, imported only by the wiring) is the fleet's shared level.
"""

from __future__ import annotations

from cache.keys import cache_key, canonical_json, scope_of, segment_scope, user_scope
from cache.objects import ObjectCache, approx_sizeof
from cache.policy import compute_policy, resolve_field_hint
from cache.response import CACHEABLE_STATUSES, ResponseCache, etag_for
from cache.singleflight import SingleFlight
from cache.tags import PurgeFence, TagIndex
from cache.ttl import BoundedTTLCache
from cache.types import (
    CachedResponse,
    CacheError,
    CacheHint,
    CachePolicy,
    CacheScope,
    CacheStats,
    FieldFact,
    LookupState,
    ResponseStats,
    SharedLevel,
    UpstreamError,
    XCacheState,
)

__all__ = [
    "CACHEABLE_STATUSES",
    "BoundedTTLCache",
    "CacheError",
    "CacheHint",
    "CachePolicy",
    "CacheScope",
    "CacheStats",
    "CachedResponse",
    "FieldFact",
    "LookupState",
    "ObjectCache",
    "PurgeFence",
    "ResponseCache",
    "ResponseStats",
    "SharedLevel",
    "SingleFlight",
    "TagIndex",
    "UpstreamError",
    "XCacheState",
    "approx_sizeof",
    "cache_key",
    "canonical_json",
    "compute_policy",
    "etag_for",
    "resolve_field_hint",
    "scope_of",
    "segment_scope",
    "user_scope",
]
