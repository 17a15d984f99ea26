"""The edge layer of ``/graphql``: persisted queries, the response cache and HTTP cache semantics.

Per request (``EdgeLayer.respond``): resolve the operation (APQ / safelist) -> work out who is
asking (``Audience``: private key, segment, whether the segment came from a valid token) ->
queries go through ``cache.ResponseCache.get_or_compute`` keyed by (operation id + name,
canonical variables, scope key, ``Accept``); mutations and invalid documents bypass it ->
``gateway.edge.headers.cache_headers`` turns the policy into ``Cache-Control``/``Vary``/``ETag``/
tags, and ``If-None-Match`` answers 304.

The scope of an operation's answer is only known after executing it, so the key is built for
the scope its last answer had (a bounded memo; ``PUBLIC`` for a new operation). The cache never
stores an answer under a key built for a wider scope than the answer's, so a wrong guess costs
one uncached execution, never a leak.

Invalidation: the ingestion writer thread calls ``on_events``; the purge runs on the event loop
through ``call_soon_threadsafe``. That callback is queued *before* the writer sets the result
the ingesting request awaits (listeners run first, and ``asyncio.wrap_future`` delivers the
result through ``call_soon_threadsafe`` too), and the loop runs callbacks in FIFO order -- so
the purge is done before the event's request is answered (read-your-writes), and the caches
stay single-threaded as ``cache/`` requires.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import sys
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import orjson
from graphql import OperationType
from starlette.requests import Request
from starlette.responses import Response

from cache import (
    CachedResponse,
    CachePolicy,
    CacheScope,
    ObjectCache,
    ResponseCache,
    cache_key,
    segment_scope,
    user_scope,
)
from gateway.edge.apq import PersistedQueries
from gateway.edge.headers import Audience, EdgeHeaders, Memo, not_modified
from gateway.edge.purge import CdnPurger
from gateway.edge.segment_tokens import SegmentTokens
from gateway.graphql.params import read_params
from gateway.graphql.types import Executor, GraphQLParams
from resolvers.cache_control import CacheControlRecorder, install
from resolvers.context import Services, TailorContext, Viewer
from storage.types import EventRecord, anonymous_key

log = logging.getLogger("tailor.edge")

# Internal marker on an error entry: the HTTP status to answer with. Execution errors are
# stored as status 500 entries so that ``ResponseCache`` applies stale-if-error to them, but on
# the wire GraphQL-over-HTTP answers field errors with 200 and partial data.
_STATUS = "x-tailor-status"
_BYPASS = "BYPASS"
_MAX_MEMO_URL = 4096  # bytes of query string worth memoizing
_MAX_MEMO_VARIABLES = 4096  # bytes of variables (sorted JSON) worth memoizing a key for
# The key component of a request that opted out of personalization (Sec-GPC: 1 / DNT: 1).
_OPT_OUT = ("x-tailor-personalization", "off")
# Marks a fleet purge message as an /admin/purge (its receivers run the purge listeners too).
_ADMIN = {"admin": True}
# (params as parsed, params with the query text, operation id, operation type)
_Resolved = tuple[GraphQLParams, GraphQLParams, str, OperationType | None]


def _parsed_bytes(raw: bytes, params: GraphQLParams) -> int:
    # The params parsed from a URL hold its text a few times over as Python objects.
    return 4 * len(raw) + 1024


def _resolved_bytes(_id: int, resolved: _Resolved) -> int:
    # The raw params are counted by ``_parsed``; a persisted query's text may be long.
    return sys.getsizeof(resolved[1].query) + 1024


@dataclasses.dataclass(frozen=True, slots=True)
class EdgeConfig:
    """Knobs of the edge layer (seconds for ages and windows)."""

    cache_enabled: bool = True
    default_max_age: int = 0
    default_swr: int = 0
    default_sie: int = 0
    browser_max_age: int = 60
    shared_max_age: int = 3600


class EdgeLayer:
    """Owns the response cache, the profile cache, APQ and segment tokens of one app."""

    def __init__(
        self,
        services: Services,
        *,
        responses: ResponseCache,
        profiles: ObjectCache[str, Any],
        persisted: PersistedQueries,
        tokens: SegmentTokens,
        config: EdgeConfig,
        purger: CdnPurger | None = None,
        purge_listeners: Sequence[Callable[[list[str] | None], Any]] = (),
    ) -> None:
        """``purge_listeners``: called with the purged tags (None: everything) on every
        ``/admin/purge``, so caches outside this layer (upstream answers) follow it."""
        self.services = services
        self.purge_listeners = tuple(purge_listeners)
        self.responses = responses
        self.profiles = profiles
        self.persisted = persisted
        self.tokens = tokens
        self.config = config
        self.headers = EdgeHeaders(
            browser_max_age=config.browser_max_age, shared_max_age=config.shared_max_age
        )
        self.purger = purger
        # Hit-path memos (see ``Memo``), bounded in bytes: their keys are client-written.
        # ``_resolved`` is keyed by the identity of a memoized GET's params and keeps that
        # object alive, so an id is never reused while in it.
        self._scopes: Memo[tuple[str, str], CacheScope] = Memo(16_384, max_bytes=2 << 20)
        self._keys: Memo[tuple[Any, ...], str] = Memo(65_536, max_bytes=8 << 20)
        self._parsed: Memo[bytes, GraphQLParams] = Memo(
            4096, max_bytes=8 << 20, sizeof=_parsed_bytes
        )
        self._resolved: Memo[int, _Resolved] = Memo(4096, max_bytes=8 << 20, sizeof=_resolved_bytes)
        self._statics: dict[tuple[str, str], Any] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def attach(self) -> None:
        """Bind to the running loop and subscribe to ingestion (call from the lifespan)."""
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self.services.ingest.subscribe(self.on_events)

    async def aclose(self) -> None:
        await self.responses.aclose()
        await self.profiles.aclose()
        if self.purger is not None:
            await self.purger.client.aclose()

    # -- who is asking ---------------------------------------------------------------------

    def audience(self, request: Request, viewer: Viewer) -> Audience:
        token_segment = self.tokens.verify(request.headers.get("x-tailor-segment"))
        key = viewer.profile_key
        # Credentials win over a token: the token may be stale, the profile is not.
        segment = token_segment if key is None else self.services.segment_of(key)
        return Audience(profile_key=key, segment=segment, token_segment=token_segment)

    # -- /graphql --------------------------------------------------------------------------

    async def read_params(
        self, request: Request, max_body: int
    ) -> GraphQLParams | list[GraphQLParams]:
        """``graphql_http.read_params`` with a memo of parsed GET query strings.

        A persisted query over GET is the same URL over and over (that is what makes it
        CDN-cacheable); parsing it costs more than the whole cache hit. Only successful parses
        of short URLs are kept; the parsed params are never mutated downstream.
        """
        if request.method != "GET":
            return await read_params(request, max_body)
        raw: bytes = request.scope.get("query_string", b"")
        found = self._parsed.get(raw)
        if found is None:
            parsed = await read_params(request, max_body)
            assert not isinstance(parsed, list)  # GET carries one operation
            found = parsed
            if len(raw) <= _MAX_MEMO_URL:
                self._parsed[raw] = found
        return found

    async def respond(
        self,
        executor: Executor,
        request: Request,
        params: GraphQLParams,
        viewer: Viewer,
        media: str,
    ) -> Response:
        memoized = self._resolved.get(id(params))
        if memoized is not None and memoized[0] is params:
            _raw, params, op_id, op_type = memoized
        else:
            raw_params = params
            params, op_id = await self.persisted.aresolve(params)
            op_type = executor.operation_type(params)
            # A hash names one text forever, so a resolved GET URL stays resolved. Only the
            # params of a memoized (short) URL: others are not seen again and may be large.
            if (
                request.method == "GET"
                and len(request.scope.get("query_string", b"")) <= _MAX_MEMO_URL
            ):
                self._resolved[id(raw_params)] = (raw_params, params, op_id, op_type)
        who = self.audience(request, viewer)
        method = request.method

        async def compute() -> CachedResponse:
            return await self._execute(executor, params, viewer, request, media, who, method)

        if op_type is not OperationType.QUERY or not self.config.cache_enabled:
            entry = await compute()
            if op_type is OperationType.MUTATION and entry.status < 400:
                self.invalidate_tags(who.private_tags)  # read-your-writes of what it changed
                await self.responses.flush_shared()  # ... on every instance of a fleet too
            return self._answer(request, entry, _BYPASS, who, media)
        memo = (op_id, params.operation_name or "")
        guess = self._scopes.get(memo, CacheScope.PUBLIC)
        # Sec-GPC/DNT turn personalization off for this request (PrivacySignalMiddleware):
        # answers that may be personalized (SEGMENT, PRIVATE) are keyed by the opt-out too, so
        # a personalized answer never reaches an opted-out request, nor the reverse. A PUBLIC
        # answer read nobody's data: the opt-out cannot change it.
        opt_out = (
            guess is not CacheScope.PUBLIC
            and not self.services.privacy.personalization_allowed(None)
        )
        key = self._key(memo, params.variables, self._scope_key(guess, who), media, opt_out)
        found, state = await self.responses.get_or_compute(key, compute, scope=guess)
        assert found is not None  # compute never answers None
        if found.policy.is_cacheable and found.policy.scope is not guess:
            self._scopes[memo] = found.policy.scope
        return self._answer(request, found, state.value, who, media, key=key)

    def _key(
        self,
        memo: tuple[str, str],
        variables: dict[str, Any] | None,
        scope_key: str,
        media: str,
        opt_out: bool = False,
    ) -> str:
        """``cache.cache_key`` through a memo: canonicalizing and hashing costs more than the
        rest of a cache hit. The memo is keyed by orjson's sorted dump of the variables; a
        different spelling of the same values is only another memo slot for the same key.
        ``opt_out``: the request opted out of personalization (``Sec-GPC: 1``/``DNT: 1``)."""
        spelled = orjson.dumps(variables, option=orjson.OPT_SORT_KEYS) if variables else b""
        memo_key = (memo, spelled, scope_key, media, opt_out)
        found = self._keys.get(memo_key)
        if found is None:
            vary = (("accept", media), _OPT_OUT) if opt_out else (("accept", media),)
            found = cache_key(f"{memo[0]}/{memo[1]}", variables, scope_key, vary)
            # Long variables are not kept: a key memo must not hold what clients send.
            if len(spelled) <= _MAX_MEMO_VARIABLES:
                self._keys[memo_key] = found
        return found

    @staticmethod
    def _scope_key(scope: CacheScope, who: Audience) -> str:
        if scope is CacheScope.PRIVATE:
            return user_scope(who.profile_key or "~anonymous")
        if scope is CacheScope.SEGMENT:
            return segment_scope(who.segment or "~none")
        return ""

    async def _execute(
        self,
        executor: Executor,
        params: GraphQLParams,
        viewer: Viewer,
        request: Request,
        media: str,
        who: Audience,
        method: str,
    ) -> CachedResponse:
        recorder = CacheControlRecorder(
            segment=who.segment,
            default_max_age=self.config.default_max_age,
            statics=self._statics,
        )
        context = TailorContext(self.services, viewer, request)
        install(context, recorder)
        status, body = await executor.run(params, context, method, media)
        # ``GraphQLEndpoint.encode`` writes "errors" first whenever there are any.
        failed = status != 200 or body.startswith(b'{"errors"')
        policy = (
            CachePolicy.uncacheable()
            if failed
            else recorder.policy(
                default_swr=self.config.default_swr, default_sie=self.config.default_sie
            )
        )
        tags = set(recorder.tags)
        if policy.scope is CacheScope.PRIVATE:
            tags.update(who.private_tags)
        elif policy.scope is CacheScope.SEGMENT and who.segment is not None:
            tags.add(f"segment:{who.segment}")
        headers = {"content-type": media}
        if failed and status == 200:
            headers[_STATUS] = "200"
            status = 500
        return self.responses.make_entry(
            body, policy=policy, status=status, headers=headers, tags=tags
        )

    def _answer(
        self,
        request: Request,
        entry: CachedResponse,
        x_cache: str,
        who: Audience,
        media: str,
        *,
        key: str | None = None,
    ) -> Response:
        status = int(entry.headers.get(_STATUS, entry.status))
        cacheable = entry.policy.is_cacheable and not entry.is_error and status == 200
        token = None
        if who.segment is not None and not self.headers.shared(entry.policy, who, cacheable):
            # Only on answers no shared cache keeps: a token is this caller's alone.
            token = self.tokens.issue(who.segment)
        if not cacheable:
            headers = self.headers.build(entry, who, cacheable=False, x_cache=x_cache)
            if token is not None:
                headers["X-Tailor-Segment"] = token
            return Response(entry.body, status_code=status, media_type=media, headers=headers)
        # The hot path (every cache hit): pre-encoded headers, only Age and X-Cache per request.
        raw = [
            *self.headers.encoded(entry, who, key),
            (b"age", str(self.responses.age(entry)).encode()),
            (b"x-cache", x_cache.encode()),
        ]
        if token is not None:
            raw.append((b"x-tailor-segment", token.encode()))
        if not_modified(request.headers.get("if-none-match"), entry.etag):
            response = Response(status_code=304)
        else:
            response = Response(entry.body, status_code=status, media_type=media)
        response.raw_headers.extend(raw)
        return response

    # -- invalidation ----------------------------------------------------------------------

    def invalidate_tags(self, tags: Iterable[str]) -> int:
        """Drop cached answers and profiles carrying any of ``tags`` (event loop only)."""
        tag_list = list(tags)
        self.profiles.invalidate_tags(tag_list)
        return self.responses.purge_tags(tag_list)

    def on_events(self, events: list[EventRecord]) -> None:
        """Ingestion listener (writer thread): purge the private answers of those users."""
        tags = set()
        for ev in events:
            tags.add(f"user:{ev.profile_key}")
            if ev.user_id:
                tags.add(f"user:{ev.user_id}")
            if ev.anonymous_id:
                tags.add(f"user:{anonymous_key(ev.anonymous_id)}")
        self._on_loop(self.invalidate_tags, tags)

    def items_changed(self, item_ids: Iterable[str]) -> None:
        """Call when items were written (any thread): drops every answer showing them."""
        self._on_loop(self.invalidate_tags, {f"item:{i}" for i in item_ids})

    def models_swapped(self) -> None:
        """Call after a model/index swap (any thread): drops every answer holding model output
        (``type:Recommendation``); profiles and item answers stay."""
        self._on_loop(self.invalidate_tags, {"type:Recommendation"})

    def _on_loop(self, fn: Callable[[set[str]], Any], tags: set[str]) -> None:
        loop = self._loop
        if loop is None or threading.get_ident() == self._loop_thread:
            fn(tags)
            return
        with contextlib.suppress(RuntimeError):  # a closed loop: its caches are gone with it
            loop.call_soon_threadsafe(fn, tags)

    # -- the fleet (a shared tier: cache/redis_tier.py) ------------------------------------

    def apply_fleet(self, message: dict[str, Any]) -> None:
        """A purge another instance made (event loop): applied here only, not sent on.

        ``op`` ``tags``/``keys``/``all`` with ``names``; ``admin`` marks an ``/admin/purge``,
        which the purge listeners (upstream answers) follow too."""
        op = message.get("op")
        names = [str(n) for n in message.get("names") or ()]
        if message.get("admin") and op in ("tags", "all"):
            for listener in self.purge_listeners:
                listener(None if op == "all" else names)
        if op == "tags":
            self.profiles.invalidate_tags(names)
            self.responses.purge_tags(names, fleet=False)
        elif op == "keys":
            self.responses.purge_keys(names, fleet=False)
        elif op == "all":
            self.drop_local()

    def drop_local(self) -> None:
        """Drop this instance's cached answers and profiles (after a shared-tier outage,
        purges made meanwhile may not have reached it)."""
        self.responses.purge_all(fleet=False)
        self.profiles.clear()

    # -- /admin/purge ----------------------------------------------------------------------

    async def purge(
        self, tags: list[str], keys: list[str], everything: bool = False
    ) -> dict[str, Any]:
        """Purge (tags, keys or everything) here and, with a shared tier, on every instance
        (answered once the purge reached it), and forward to the CDN if configured."""
        for listener in self.purge_listeners:
            listener(None if everything else tags)
        if everything:
            purged = self.responses.purge_all(note=_ADMIN)
            self.profiles.clear()
        else:
            self.profiles.invalidate_tags(tags)
            purged = self.responses.purge_tags(tags, note=_ADMIN)
            purged += self.responses.purge_keys(keys)
        await self.responses.flush_shared()
        cdn = await self.purger.purge(tags, keys) if self.purger is not None else None
        return {"purged": purged, "tags": tags, "keys": keys, "all": everything, "cdn": cdn}
