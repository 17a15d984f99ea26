"""Persisted queries: Apollo's automatic persisted queries (APQ) and a production safelist.

APQ (``extensions.persistedQuery = {"version": 1, "sha256Hash": "<64 hex>"}``), over GET and POST:

* hash only, known   -> the stored query runs (GET URLs stay short and CDN-cacheable);
* hash only, unknown -> HTTP 200 ``PERSISTED_QUERY_NOT_FOUND`` (``no-store``); Apollo Client
  then retries with hash + query;
* hash + query       -> the hash must be the sha256 of the query (else 400), then it registers.

Safelist mode (``persisted_queries_safelist``): only operations registered with
``tailor persisted-queries register FILE`` (kept in the store) run; registering through APQ and
free-form queries are refused (400 ``PERSISTED_QUERY_NOT_IN_LIST``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import sys
from collections.abc import Sequence
from typing import Any, NamedTuple, Protocol

from cachetools import LRUCache

from gateway.graphql.types import GraphQLParams
from gateway.http import HTTPProblem

_HASH = re.compile(r"\A[0-9a-f]{64}\Z")


class PersistedQueryStore(Protocol):
    """Where registered (safelisted) operations live: sha256 hex -> query text."""

    def get_persisted_query(self, sha256: str) -> str | None: ...

    def put_persisted_queries(self, rows: Sequence[tuple[str, str, str | None]]) -> int: ...


class SharedQueries(Protocol):
    """APQ registrations shared by a fleet (``cache.redis_tier.RedisTier``): a hash registered
    on one instance is known on all. Both answer None/False when the level is unavailable."""

    async def get_query(self, digest: str) -> str | None: ...

    async def put_query(self, digest: str, query: str) -> bool: ...


class ManifestError(ValueError):
    """A persisted-query manifest is malformed or an id is not the sha256 of its body."""


def sha256_hex(query: str) -> str:
    return hashlib.sha256(query.encode("utf-8")).hexdigest()


# What one cached entry costs besides its text: the 64-character key, the str objects and the
# LRU's bookkeeping. Without it, a flood of one-character registrations would hold far more
# memory than the budget says.
ENTRY_OVERHEAD = 512
# Texts longer than this are hashed on every request rather than memoized (hashing them costs
# little next to parsing; memoizing them would keep what clients send).
_MAX_MEMO_QUERY = 16_384


def _entry_bytes(query: str) -> int:
    return sys.getsizeof(query) + ENTRY_OVERHEAD


class _Hashed(NamedTuple):
    digest: str
    nbytes: int


class PersistedQueries:
    """Resolves a request's operation text and its id (the sha256 of the text).

    ``max_bytes``: bound on the in-memory APQ registry (bytes of the query texts plus a fixed
    overhead per entry, LRU). The text -> hash memo has its own budget, ``max_bytes // 4``.
    """

    def __init__(
        self,
        store: PersistedQueryStore,
        *,
        safelist: bool = False,
        max_bytes: int = 8 << 20,
        shared: SharedQueries | None = None,
    ) -> None:
        """``shared``: the fleet's APQ registry, read on a local miss and written on every new
        registration (not used in safelist mode: the store is already shared)."""
        self.store = store
        self.safelist = safelist
        self.shared = None if safelist else shared
        self._registered: LRUCache[str, str] = LRUCache(max_bytes, getsizeof=_entry_bytes)
        # Text -> hash memo, so free-form queries are not rehashed on every request; bounded in
        # bytes: its keys are client-written texts.
        self._hashes: LRUCache[str, _Hashed] = LRUCache(
            max(max_bytes // 4, 1), getsizeof=lambda hashed: hashed.nbytes
        )

    def _hash_of(self, query: str) -> str:
        hashed = self._hashes.get(query)
        if hashed is not None:
            return hashed.digest
        digest = sha256_hex(query)
        size = 2 * ENTRY_OVERHEAD + sys.getsizeof(query)
        if len(query) <= _MAX_MEMO_QUERY and size <= self._hashes.maxsize:
            self._hashes[query] = _Hashed(digest, size)
        return digest

    def _lookup(self, digest: str) -> str | None:
        query = None if self.safelist else self._registered.get(digest)
        if query is None:
            query = self.store.get_persisted_query(digest)
            if (
                query is not None
                and not self.safelist
                and _entry_bytes(query) <= self._registered.maxsize
            ):
                self._registered[digest] = query
        return query

    def _not_in_list(self) -> HTTPProblem:
        return HTTPProblem(
            400,
            "this gateway only runs registered operations (safelist mode)",
            "PERSISTED_QUERY_NOT_IN_LIST",
        )

    def resolve(self, params: GraphQLParams) -> tuple[GraphQLParams, str]:
        """``(params with the query text, operation id)``; raises ``HTTPProblem``."""
        ext = (params.extensions or {}).get("persistedQuery")
        if ext is None:
            digest = self._hash_of(params.query)
            if self.safelist and self.store.get_persisted_query(digest) is None:
                raise self._not_in_list()
            return params, digest
        digest = _requested_hash(ext)
        if params.query:
            if self._hash_of(params.query) != digest:
                raise HTTPProblem(400, "provided sha does not match query", "BAD_REQUEST")
            if self.safelist:
                if self.store.get_persisted_query(digest) is None:
                    raise self._not_in_list()
            elif _entry_bytes(params.query) <= self._registered.maxsize:
                self._registered[digest] = params.query
            return params, digest
        query = self._lookup(digest)
        if query is None:
            # Apollo clients look for this exact message/code and retry with the full query.
            raise HTTPProblem(200, "PersistedQueryNotFound", "PERSISTED_QUERY_NOT_FOUND")
        return dataclasses.replace(params, query=query), digest

    async def aresolve(self, params: GraphQLParams) -> tuple[GraphQLParams, str]:
        """``resolve`` with the fleet's registry: an unknown hash is looked up there, and a
        new registration is written there before the request is answered."""
        shared = self.shared
        if shared is None:
            return self.resolve(params)
        ext = (params.extensions or {}).get("persistedQuery")
        if ext is None:
            return self.resolve(params)
        if params.query:
            digest = _requested_hash(ext)
            known = digest in self._registered
            resolved = self.resolve(params)
            if not known:
                await shared.put_query(digest, params.query)
            return resolved
        try:
            return self.resolve(params)
        except HTTPProblem as problem:
            if problem.code != "PERSISTED_QUERY_NOT_FOUND":
                raise
            digest = _requested_hash(ext)
            query = await shared.get_query(digest)
            # A hash names exactly one text: never trust the shared copy without checking.
            if query is None or sha256_hex(query) != digest:
                raise
            if _entry_bytes(query) <= self._registered.maxsize:
                self._registered[digest] = query
            return dataclasses.replace(params, query=query), digest


def _requested_hash(ext: Any) -> str:
    if not isinstance(ext, dict) or ext.get("version") != 1:
        raise HTTPProblem(
            400, "unsupported persisted query version (use 1)", "PERSISTED_QUERY_NOT_SUPPORTED"
        )
    digest = ext.get("sha256Hash")
    if not isinstance(digest, str) or not _HASH.match(digest.lower()):
        raise HTTPProblem(400, "`sha256Hash` must be 64 hex characters", "BAD_REQUEST")
    return digest.lower()


def has_persisted_query(extensions: Any) -> bool:
    """Whether a request's ``extensions`` names a persisted query (the query may be absent)."""
    return isinstance(extensions, dict) and "persistedQuery" in extensions


def parse_manifest(data: Any) -> list[tuple[str, str, str | None]]:
    """``(sha256, query, operation name)`` rows from a manifest document.

    Accepts Apollo's ``{"format": "apollo-persisted-query-manifest", "version": 1,
    "operations": [{"id", "body", "name"}]}`` and a plain ``{"<sha256>": "<query>"}`` map
    (as written by ``relay-compiler`` or ``graphql-codegen``). Every id must be the sha256 of
    its body, so a hash in a request always names exactly that text.
    """
    rows: list[tuple[str, str, str | None]] = []
    if isinstance(data, dict) and isinstance(data.get("operations"), list):
        for n, op in enumerate(data["operations"]):
            if not isinstance(op, dict) or not isinstance(op.get("body"), str):
                raise ManifestError(f"operations[{n}] needs a string `body`")
            name = op.get("name")
            rows.append(
                (str(op.get("id", "")), op["body"], name if isinstance(name, str) else None)
            )
    elif isinstance(data, dict):
        for digest, body in data.items():
            if not isinstance(body, str):
                raise ManifestError(f"{digest}: the query must be a string")
            rows.append((str(digest), body, None))
    else:
        raise ManifestError("a manifest is a JSON object (Apollo manifest or {hash: query})")
    for digest, body, _name in rows:
        if digest.lower() != sha256_hex(body):
            raise ManifestError(f"id {digest!r} is not the sha256 of its body")
    return [(d.lower(), b, n) for d, b, n in rows]
