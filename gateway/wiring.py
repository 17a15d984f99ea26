"""Wiring: the one module that turns settings into objects.

Everything the gateway and the CLI run is assembled here from one immutable :class:`Settings`:
the store, ingestion, models and their artifact stores, segments, the recommender, privacy,
the edge layer, upstream record sources and the security middleware. Objects get what they need
as constructor arguments and listeners, never by being changed after construction.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import hmac
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import strawberry
from starlette.middleware import Middleware

from cache import ObjectCache, ResponseCache
from cache.redis_tier import Message, RedisConfig, RedisTier
from catalog.lookup import CatalogLookup
from embeddings import (
    CachedEncoder,
    EmbeddingCache,
    Encoder,
    HashingEncoder,
    IndexStore,
    OnnxInt8Encoder,
    SentenceTransformerEncoder,
)
from experiments import ExperimentService
from gateway.edge.apq import PersistedQueries
from gateway.edge.compression import Compression
from gateway.edge.layer import CdnPurger, EdgeConfig, EdgeLayer
from gateway.edge.purge import CloudflarePurger, FastlyPurger
from gateway.edge.segment_tokens import SegmentTokens
from gateway.fleet import StreamRuntime, process_origin
from gateway.graphql.endpoint import GraphQLEndpoint
from gateway.graphql.limits import OperationLimits
from gateway.graphql.params import PartLimits
from gateway.graphql.types import ResponseLayer
from gateway.http import authenticate
from gateway.security.apikeys import ApiKeyMiddleware, ApiKeyRegistry
from gateway.security.cors import CorsError, CorsPolicy, check_origin
from gateway.security.csrf import CookieAuthMiddleware, PrivacySignalMiddleware
from gateway.security.guard import ClientKey, GuardConfig, RequestGuard, TokenBuckets
from gateway.security.jwks import JwksKeys
from gateway.security.ratelimit import RateLimiter, RedisRateLimiter
from gateway.settings import Settings, SettingsError
from profiles.ingest import IngestionService
from profiles.privacy import FunctionEraser, PiiHasher, PrivacyService
from profiles.types import IngestConfig, ProfileConfig
from recommend.content import ContentService
from recommend.conversion_store import ConversionModelStore
from recommend.engine import DEFAULT_WEIGHTS, ModelSlot, Recommender
from recommend.ranker import RankerStore
from recommend.segment_popular import SegmentPopularity
from recommend.spark_als import SparkALSConfig
from recommend.training import CF_KINDS, CFStore
from recommend.trending import TrendingModel, anchored_since
from recommend.types import CFConfig
from resolvers.context import Services, Viewer
from segments import SegmentingConfig
from segments.service import SegmentService
from segments.types import SegmentError
from storage import open_store
from storage.spark import SparkConfig
from storage.stream import EventStream
from storage.types import Store
from upstream.service import TraitsView, Upstreams, build_upstreams
from upstream.sources import parse_field_map
from upstream.types import UpstreamConfig

SEGMENT_POPULAR_WINDOW_S = 30 * 86400.0
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ModelStores:
    """Where each kind of model lives (``<data dir>/models/<kind>``), and how CF is trained."""

    cf: CFStore
    conversion: ConversionModelStore
    cf_config: CFConfig
    configured_weights: dict[str, float]
    conversion_horizon_days: float
    conversion_cutoffs: int
    poll_s: float
    ranker: RankerStore
    # CF training tunes the CF setting, then the blend weights, within this budget
    # (settings.cf_tune_budget_s; `tailor train cf --budget` overrides it).
    tune_budget_s: float = 60.0
    # A refresh that finds items but no stored index builds one (settings.index_build_on_start).
    build_index: bool = True


# ---------------------------------------------------------------------- settings -> configs
def encoder_factory(settings: Settings) -> Callable[[], Encoder]:
    """A zero-argument factory (the model loads lazily, off the request path)."""
    if settings.encoder not in ("minilm", "hashing"):
        raise SettingsError(
            f"setting 'encoder' must be 'minilm' or 'hashing', got {settings.encoder!r}"
        )

    def make() -> Encoder:
        if settings.encoder == "hashing":
            return HashingEncoder(384)
        base: Encoder
        if settings.encoder_backend == "int8":
            # The int8 export is made once (with PyTorch) and kept under the data dir.
            base = OnnxInt8Encoder(settings.model_path, cache_dir=settings.data_dir / "encoders")
        else:
            base = SentenceTransformerEncoder(settings.model_path)
        return CachedEncoder(base, EmbeddingCache(settings.data_dir / "embeddings.db"))

    return make


def build_content(settings: Settings) -> ContentService:
    return ContentService(
        encoder_factory(settings),
        IndexStore(settings.artifacts_root / "index"),
        template=settings.item_text_template,
        hnsw_threshold=settings.hnsw_threshold,
        hnsw_m=settings.hnsw_m,
        ef_construction=settings.hnsw_ef_construction,
        ef_search=settings.hnsw_ef_search,
        half_life_days=settings.user_vector_half_life_days,
    )


def cf_config(settings: Settings, kind: str | None = None) -> CFConfig:
    """The CF settings (``kind`` overrides ``settings.cf_kind``)."""
    chosen = kind or settings.cf_kind
    if chosen not in CF_KINDS:
        raise SettingsError(f"setting 'cf_kind' must be one of {CF_KINDS}, got {chosen!r}")
    return CFConfig(kind=chosen, ease_max_items=settings.cf_ease_max_items)  # type: ignore[arg-type]


def blend_weights(settings: Settings) -> dict[str, float]:
    """Configured blend weights: the defaults, overridden source by source by the setting."""
    unknown = set(settings.recommend_weights) - set(DEFAULT_WEIGHTS)
    if unknown:
        raise SettingsError(
            f"setting 'recommend_weights' has unknown sources {sorted(unknown)}; "
            f"known: {sorted(DEFAULT_WEIGHTS)}"
        )
    return {**DEFAULT_WEIGHTS, **settings.recommend_weights}


def model_stores(settings: Settings) -> ModelStores:
    root = settings.artifacts_root / "models"
    return ModelStores(
        cf=CFStore(root / "cf"),
        conversion=ConversionModelStore(root / "conversion"),
        cf_config=cf_config(settings),
        configured_weights=blend_weights(settings),
        conversion_horizon_days=settings.conversion_horizon_days,
        conversion_cutoffs=settings.conversion_cutoffs,
        poll_s=settings.model_poll_s,
        ranker=RankerStore(root / "ranker"),
        tune_budget_s=settings.cf_tune_budget_s,
        build_index=settings.index_build_on_start,
    )


def lake_root(settings: Settings) -> Path:
    """Where `tailor train --engine spark` exports the lake it trains on."""
    return settings.lake_dir or settings.data_dir / "lake"


def spark_config(settings: Settings, master: str | None = None) -> SparkConfig:
    """The Spark session of the Spark engine (``master`` overrides ``settings.spark_master``)."""
    return SparkConfig(
        master=master or settings.spark_master,
        driver_memory=settings.spark_driver_memory,
        shuffle_partitions=settings.spark_shuffle_partitions,
    )


def spark_als_config(settings: Settings) -> SparkALSConfig:
    return configured(SparkALSConfig, settings, "spark_als_")


def segmenting_config(settings: Settings) -> SegmentingConfig:
    try:
        return SegmentingConfig(
            algorithm=settings.segment_algorithm,  # type: ignore[arg-type]
            k_min=settings.segment_k_min,
            k_max=settings.segment_k_max,
            scaler=settings.segment_scaler,  # type: ignore[arg-type]
        )
    except (SegmentError, ValueError) as exc:
        raise SettingsError(f"segment settings: {exc}") from exc


def pii_salt(settings: Settings) -> str:
    if settings.pii_salt:
        return settings.pii_salt
    # Derived, not the JWT secret itself: a leaked digest must not help forge tokens.
    return hmac.new(settings.jwt_secret.encode(), b"tailor-pii-salt", hashlib.sha256).hexdigest()


def configured(cls: type[T], settings: Settings, prefix: str = "", **explicit: Any) -> T:
    """An instance of the dataclass ``cls`` whose fields take the settings named
    ``prefix + field`` (fields without such a setting keep their defaults); ``explicit`` wins."""
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    values = {n: getattr(settings, prefix + n) for n in names if hasattr(settings, prefix + n)}
    return cls(**{**values, **explicit})


def operation_limits(settings: Settings) -> OperationLimits | None:
    return configured(OperationLimits, settings) if settings.limits_enabled else None


def guard_config(settings: Settings) -> GuardConfig:
    return GuardConfig(
        rate_per_s=settings.rate_limit_per_s,
        burst=settings.rate_limit_burst,
        max_concurrency=settings.max_concurrency,
        timeout_s=settings.request_timeout_s,
        trust_forwarded_for=settings.trust_forwarded_for,
    )


def upstream_configs(settings: Settings) -> dict[str, UpstreamConfig]:
    """The configured upstreams by name (``catalog``, ``crm``), from the ``upstream_*`` settings."""
    urls = {
        "catalog": (settings.upstream_catalog_url, settings.upstream_catalog_map),
        "crm": (settings.upstream_crm_url, settings.upstream_crm_map),
    }
    return {
        name: configured(
            UpstreamConfig,
            settings,
            "upstream_",
            name=name,
            base_url=url.rstrip("/"),
            field_map=parse_field_map(fmap),
            backoff_base_s=settings.upstream_backoff_s,
        )
        for name, (url, fmap) in urls.items()
        if url
    }


def upstreams(
    settings: Settings,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    clock: Callable[[], float] = time.time,
) -> Upstreams | None:
    """Clients and sources of the configured upstreams; None when no upstream URL is set."""
    return build_upstreams(upstream_configs(settings), transport=transport, clock=clock)


# ---------------------------------------------------------------------- store
def open_configured_store(
    settings: Settings,
    *,
    traits_filter: Callable[[Mapping[str, Any]], Mapping[str, Any]] | None = None,
) -> Store:
    """The configured store: PostgreSQL at ``database_url`` when set, else SQLite under
    ``data_dir``; migrated to the current schema."""
    return open_store(
        settings.database,
        traits_filter=traits_filter,
        pool_min=settings.database_pool_min,
        pool_max=settings.database_pool_max,
        connect_timeout_s=settings.database_connect_timeout_s,
    )


# ---------------------------------------------------------------------- services
def build_services(
    settings: Settings,
    *,
    clock: Callable[[], float] = time.time,
    segment_of: Callable[[str], str | None] | None = None,
    upstream: Upstreams | None = None,
    role: str = "gateway",
) -> Services:
    """Open the store and build the domain services (the app's lifespan and the CLI).

    ``segment_of`` replaces the live segment lookup (a test seam); ``upstream`` points the
    request loaders at remote record sources; ``role`` names the process in the event
    stream's applied notes.
    """
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    hasher = PiiHasher(settings.pii_traits, pii_salt(settings))
    # Every writer of user rows (identify traits, CRM imports, sync) goes through the store,
    # so hashing there means no configured PII trait reaches the disk in clear.
    store = open_configured_store(settings, traits_filter=hasher.hash_traits)
    catalog = CatalogLookup(store)
    profile_config = ProfileConfig(weights=dict(settings.event_weights))
    ingest = IngestionService(
        store,
        config=IngestConfig(
            custom_event_types=settings.custom_event_types,
            clock_skew_s=settings.clock_skew_s,
            max_batch_events=settings.max_batch_events,
            group_commit_ms=settings.group_commit_ms,
        ),
        profile_config=profile_config,
        categories=catalog.categories,
        clock=clock,
        # Identify events carry traits too: hashed like user rows before they are stored.
        traits_filter=hasher.hash_traits,
        stream=event_stream(settings),
        origin=process_origin(role),
        prefetch_items=catalog.prefetch,
    )
    privacy = PrivacyService(
        store,
        hasher=hasher,
        clock=clock,
        forget=ingest.forget,
        tombstone_s=settings.max_token_ttl_s,
    )
    ingest.tracking_allowed = privacy.tracking_allowed_many
    trending = TrendingModel(
        half_life_s=settings.trending_half_life_h * 3600.0,
        categories=catalog.categories,
        clock=clock,
        cache_s=settings.trending_cache_s,
    )
    segments = SegmentService(
        store,
        settings.artifacts_root / "models" / "segments",
        profile_config=profile_config,
        clock=clock,
        segments_file=settings.segments_file,
        config=segmenting_config(settings),
    )
    lookup = segment_of or segments.segment_of
    popular = SegmentPopularity(
        lookup,
        events_since=lambda ts: store.iter_events(since=ts),
        newest_event_ts=store.newest_event_ts,
        window_s=SEGMENT_POPULAR_WINDOW_S,
        clock=clock,
        categories=catalog.categories,
    )
    segments.on_swap(popular.rebuild)
    # Erasure takes the person out of segment membership and sizes before it reports success
    # (and when another process's erasure reaches this one through the log).
    privacy.add_eraser(FunctionEraser("segments", lambda _u, keys: segments.forget(keys)))
    # Order matters: a profile is re-assigned before its events count for its segment.
    ingest.subscribe(trending.add_events)
    ingest.subscribe_profiles(segments.on_profiles)
    ingest.subscribe(popular.add_events)
    content = build_content(settings)
    recommender = Recommender(
        content=content,
        trending=trending,
        cf=ModelSlot(),
        item_of=catalog.item,
        all_items=catalog.all_items,
        weights=blend_weights(settings),
        exclude_types=settings.recommend_exclude_types,
        segment_popular=popular.popular,
    )
    traits_source = None
    if upstream is not None and upstream.crm is not None:
        traits_source = TraitsView(upstream.crm, privacy.hash_traits)
    return Services(
        store=store,
        ingest=ingest,
        trending=trending,
        profile_config=profile_config,
        catalog=catalog,
        content=content,
        recommender=recommender,
        segments=segments,
        privacy=privacy,
        segment_of=lookup,
        max_first=settings.max_first,
        search_personal_weight=settings.search_personal_weight,
        clock=clock,
        item_source=upstream.catalog if upstream is not None else None,
        traits_source=traits_source,
        experiments=build_experiments(settings, store, ingest, privacy, clock),
    )


def build_experiments(
    settings: Settings,
    store: Store,
    ingest: IngestionService,
    privacy: PrivacyService,
    clock: Callable[[], float],
) -> ExperimentService:
    """Flags and experiments over the store: definitions from ``experiments_path``, exposures
    moved on identify and events attributed (an ingestion listener), erased with the person."""
    service = ExperimentService(
        store,
        settings.experiments_path,
        secret=settings.jwt_secret,
        poll_s=settings.experiments_poll_s,
        clock=clock,
    )
    ingest.subscribe(service.on_events)
    privacy.add_eraser(
        FunctionEraser("experiments", lambda _u, keys: store.forget_experiment_subjects(keys))
    )
    return service


def bootstrap_trending(services: Services, settings: Settings) -> None:
    """Load trending from the recent event log (at start-up)."""
    store = services.store
    window = settings.trending_window_days * 86_400.0
    since = anchored_since(services.clock(), store.newest_event_ts(), window)
    services.trending.add_events(store.iter_events(since=since))


# ---------------------------------------------------------------------- HTTP layers
def cdn_purger(
    settings: Settings, transport: httpx.AsyncBaseTransport | None = None
) -> CdnPurger | None:
    """The CDN purge adapter of ``cdn_purge_provider`` (generic, cloudflare, fastly), or None
    when the CDN is not configured."""
    provider = settings.cdn_purge_provider
    client = functools.partial(httpx.AsyncClient, transport=transport, timeout=10.0)
    token = settings.cdn_purge_token
    if provider == "generic":
        if not settings.cdn_purge_url:
            return None
        return CdnPurger(settings.cdn_purge_url, token=token, client=client())
    if not settings.cdn_purge_id:
        raise SettingsError(
            f"setting 'cdn_purge_id' is needed for cdn_purge_provider={provider!r} "
            "(the Cloudflare zone id or the Fastly service id)"
        )
    if not token:
        raise SettingsError(
            f"setting 'cdn_purge_token' is needed for cdn_purge_provider={provider!r}"
        )
    if provider == "cloudflare":
        return CloudflarePurger(
            settings.cdn_purge_id, token=token, client=client(), api=settings.cdn_purge_url
        )
    if provider == "fastly":
        return FastlyPurger(
            settings.cdn_purge_id,
            token=token,
            client=client(),
            api=settings.cdn_purge_url,
            soft=settings.cdn_soft_purge,
        )
    raise SettingsError(
        f"setting 'cdn_purge_provider' must be generic, cloudflare or fastly, got {provider!r}"
    )


def build_edge(
    settings: Settings,
    services: Services,
    *,
    clock: Callable[[], float],
    cdn_transport: httpx.AsyncBaseTransport | None = None,
    purge_listeners: Sequence[Callable[[list[str] | None], Any]] = (),
    shared: RedisTier | None = None,
) -> EdgeLayer:
    """The app's edge layer (caches on the app clock, so tests move time).

    Erasure also drops every cached answer and profile tagged with the person's keys.
    ``shared``: the Redis tier (:func:`redis_tier`) under the response cache and APQ."""
    purger = cdn_purger(settings, cdn_transport)
    profiles: ObjectCache[str, Any] = ObjectCache(
        settings.profile_cache_max_bytes, default_ttl=settings.profile_cache_ttl_s, timer=clock
    )
    edge = EdgeLayer(
        services,
        responses=ResponseCache(settings.edge_cache_max_bytes, timer=clock, shared=shared),
        profiles=profiles,
        persisted=PersistedQueries(
            services.store,
            safelist=settings.persisted_queries_safelist,
            max_bytes=settings.apq_max_bytes,
            shared=shared,
        ),
        tokens=SegmentTokens(settings.jwt_secret, ttl_s=settings.segment_token_ttl_s, clock=clock),
        config=configured(EdgeConfig, settings, "edge_", cache_enabled=settings.edge_cache),
        purger=purger,
        purge_listeners=purge_listeners,
    )
    services.profile_cache = profiles
    # The edge layer tags private answers and cached profiles ``user:<profile key>``; erasers
    # run on the event loop, where the caches live.
    services.privacy.add_eraser(
        FunctionEraser(
            "edge.cache", lambda _u, keys: edge.invalidate_tags([f"user:{k}" for k in keys])
        )
    )
    return edge


def security_middleware(
    settings: Settings,
    registry: Callable[[], ApiKeyRegistry | None],
    *,
    keys: JwksKeys | None = None,
) -> list[Middleware]:
    """Outermost first: cookie credentials + CSRF (only when ``auth_cookie`` is set), API keys ->
    internal bearer token, request guards (rate limit, concurrency, timeout), and the
    ``Sec-GPC``/``DNT`` opt-out (when ``honor_gpc``)."""
    out: list[Middleware] = []
    if settings.auth_cookie:
        out.append(Middleware(CookieAuthMiddleware, cookie_name=settings.auth_cookie))
    out.append(
        Middleware(
            ApiKeyMiddleware,
            registry=registry,
            secret=settings.jwt_secret,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
        )
    )
    client_key = ClientKey(
        settings.jwt_secret,
        settings.jwt_issuer,
        settings.jwt_audience,
        trust_forwarded_for=settings.trust_forwarded_for,
        trusted_proxies=settings.trusted_proxies,
        keys=keys,
    )
    config = dataclasses.replace(
        guard_config(settings),
        reserve=settings.concurrency_reserve,
        max_body=settings.max_body_bytes,
        body_read_timeout_s=settings.body_read_timeout_s,
        body_min_bytes_per_s=settings.body_min_bytes_per_s,
    )
    out.append(
        Middleware(
            RequestGuard,
            config=config,
            client_key=client_key,
            shared_limiter=shared_rate_limiter(settings),
        )
    )
    if settings.honor_gpc:
        out.append(Middleware(PrivacySignalMiddleware))
    return out


def cors_middleware(settings: Settings) -> list[Middleware]:
    """The CORS policy (outermost, so every answer — 401, 429, 500 — carries its headers):
    ``cors_origins``, plus local dev servers outside production; nothing when neither applies."""
    if settings.cors_max_age < 0:
        raise SettingsError(f"setting 'cors_max_age' must be >= 0, got {settings.cors_max_age}")
    try:
        origins = [check_origin(o) for o in settings.cors_origins]
    except CorsError as exc:
        raise SettingsError(f"setting 'cors_origins': {exc}") from None
    if not origins and settings.production:
        return []
    return [
        Middleware(
            CorsPolicy,
            origins=origins,
            dev_servers=not settings.production,
            max_age=settings.cors_max_age,
        )
    ]


def compression_middleware(settings: Settings) -> list[Middleware]:
    """Response compression above ``compress_min_bytes`` (inside CORS, outside everything else,
    so error answers are compressed too); nothing when ``compression`` is off."""
    if settings.compress_min_bytes < 0:
        raise SettingsError(
            f"setting 'compress_min_bytes' must be >= 0, got {settings.compress_min_bytes}"
        )
    if not settings.compression:
        return []
    return [Middleware(Compression, minimum_size=settings.compress_min_bytes)]


def jwks_keys(settings: Settings) -> JwksKeys | None:
    """The identity provider's key set (``jwks_url``; the app holds one, shared by the rate
    limiter and authentication), or None when only HS256 tokens are accepted."""
    if not settings.jwks_url:
        return None
    if not settings.jwks_url.startswith(("https://", "http://")):
        raise SettingsError(f"setting 'jwks_url' must be an http(s) URL, got {settings.jwks_url!r}")
    if settings.jwks_cache_s <= 0 or settings.jwks_refresh_cooldown_s < 0:
        raise SettingsError(
            "settings 'jwks_cache_s' must be > 0 and 'jwks_refresh_cooldown_s' >= 0, got "
            f"{settings.jwks_cache_s} and {settings.jwks_refresh_cooldown_s}"
        )
    try:
        return JwksKeys(
            settings.jwks_url,
            algorithms=settings.jwt_algorithms,
            cache_s=settings.jwks_cache_s,
            cooldown_s=settings.jwks_refresh_cooldown_s,
        )
    except ValueError as exc:
        raise SettingsError(f"setting 'jwt_algorithms': {exc}") from None


def shared_rate_limiter(settings: Settings) -> Callable[[TokenBuckets], RateLimiter] | None:
    """With ``redis_url``: ``fallback buckets -> limiter`` sharing the per-client limits of every
    instance in Redis (keys under ``rate_limit_redis_prefix``); None keeps them in-process."""
    url = settings.redis_url
    if not url:
        return None
    if not url.startswith(("redis://", "rediss://", "unix://", "redis+unix://")):
        raise SettingsError(f"setting 'redis_url' must be a redis:// or rediss:// URL, got {url!r}")

    def limiter(fallback: TokenBuckets) -> RateLimiter:
        return RedisRateLimiter(
            url,
            rate_per_s=settings.rate_limit_per_s,
            burst=settings.rate_limit_burst,
            prefix=settings.rate_limit_redis_prefix,
            fallback=fallback,
        )

    return limiter


def api_keys(services: Services) -> ApiKeyRegistry:
    return ApiKeyRegistry(services.store, clock=services.clock)


def authenticator(
    settings: Settings, services: Services, keys: JwksKeys | None = None
) -> Callable[[str | None, str | None], Viewer]:
    """``(authorization, anonymous_id) -> Viewer`` for every route: the JWT settings, the longest
    token lifetime accepted, and tokens issued before the user's erasure refused; ``keys``: the
    identity provider's key set (:func:`jwks_keys`)."""
    return functools.partial(
        authenticate,
        secret=settings.jwt_secret,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        max_ttl_s=settings.max_token_ttl_s,
        erased_at=services.privacy.erased_at,
        keys=keys,
    )


def graphql_endpoint(
    settings: Settings,
    services: Services,
    schema: strawberry.Schema,
    layer: ResponseLayer,
    *,
    keys: JwksKeys | None = None,
) -> GraphQLEndpoint:
    return GraphQLEndpoint(
        schema,
        services,
        max_body=settings.max_body_bytes,
        production=settings.production,
        graphiql=settings.graphiql_enabled,
        authenticate=authenticator(settings, services, keys),
        limits=operation_limits(settings),
        introspection=settings.introspection_enabled,
        batch_max=settings.graphql_batch_max,
        layer=layer,
        parts=PartLimits(
            max_query_bytes=settings.max_query_bytes,
            max_variables_bytes=settings.max_variables_bytes,
        ),
        document_cache_bytes=settings.document_cache_max_bytes,
    )


def start_sync(
    settings: Settings,
    upstreams: Upstreams,
    services: Services,
    *,
    on_written: Callable[[str, Sequence[Any]], None],
) -> None:
    """The background sync of every upstream source into the store (off at interval 0)."""
    upstreams.start_sync(
        services.store,
        settings.upstream_sync_interval_s,
        page_size=settings.upstream_sync_page_size,
        on_written=on_written,
    )


# ---------------------------------------------------------------------- observability


def tracer_provider(settings: Settings, exporter: Any = None) -> Any:
    """The OpenTelemetry tracer provider of an app, or None when tracing is off.

    ``exporter``: a span exporter to use instead of OTLP (tests pass the in-memory one, and
    then tracing is on whatever the setting)."""
    if exporter is None and not settings.tracing:
        return None
    from observability.tracing import provider

    return provider(
        settings.service_name,
        exporter=exporter,
        endpoint=settings.tracing_endpoint,
        batch=exporter is None,
    )


def telemetry_middleware(settings: Settings, provider: Any) -> list[Middleware]:
    """The outermost middleware: the OpenTelemetry ASGI server span (when tracing), then the
    request id, request metrics and access log."""
    from gateway.telemetry import TelemetryMiddleware

    out = []
    if provider is not None:
        from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

        from observability.tracing import SampledASGI

        def traced(app: Any) -> SampledASGI:
            otel = OpenTelemetryMiddleware(
                app,
                tracer_provider=provider,
                exclude_spans=["receive", "send"],
                excluded_urls="healthz,readyz,metrics",
            )
            return SampledASGI(app, traced=otel, ratio=settings.tracing_sample_ratio)

        out.append(Middleware(traced))
    out.append(
        Middleware(
            TelemetryMiddleware, count=settings.metrics_enabled, log_access=settings.access_log
        )
    )
    return out


def instrument_upstreams(upstreams: Upstreams | None, provider: Any) -> None:
    """Client spans (with trace-context headers) for every upstream call when tracing."""
    if upstreams is None or provider is None:
        return
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    for client in upstreams.clients.values():
        HTTPXClientInstrumentor.instrument_client(client.http, tracer_provider=provider)


# ---------------------------------------------------------------------- Redis shared tier
def redis_config(settings: Settings) -> RedisConfig:
    return configured(RedisConfig, settings, "redis_")


def redis_tier(settings: Settings) -> RedisTier | None:
    """The shared tier over ``redis_url`` (None when unset: the embedded in-process tier).

    Nothing connects here: the first command or :func:`start_fleet` does, and an unreachable
    Redis only degrades the instance (``/readyz``), it does not stop it."""
    if not settings.redis_url:
        return None
    import redis.asyncio as aioredis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff
    from redis.exceptions import ConnectionError as RedisConnectionError

    client = aioredis.Redis.from_url(
        settings.redis_url,
        socket_timeout=settings.redis_timeout_s,
        socket_connect_timeout=settings.redis_timeout_s,
        # One immediate retry: a pooled connection left over from before a Redis restart.
        retry=Retry(NoBackoff(), 1),
        retry_on_error=[RedisConnectionError],
    )
    return RedisTier(client, redis_config(settings))


async def start_fleet(
    tier: RedisTier, edge: EdgeLayer, on_models: Callable[[Message], Any]
) -> None:
    """Listen to the fleet: purges by other instances reach ``edge``; model version
    announcements go to ``on_models``; after an outage the in-process caches are dropped."""

    def on_message(message: Message) -> None:
        if message.get("op") == "models":
            on_models(message)
        else:
            edge.apply_fleet(message)

    await tier.start(on_message, edge.drop_local)


def announce_models(settings: Settings, versions: dict[str, str | None]) -> bool:
    """Tell a fleet's gateways (from the CLI, after training) to load the new versions now
    rather than at their next poll; False without ``redis_url`` or when Redis is unreachable."""
    if not settings.redis_url:
        return False
    import json

    import redis

    client = redis.Redis.from_url(
        settings.redis_url,
        socket_timeout=settings.redis_timeout_s,
        socket_connect_timeout=settings.redis_timeout_s,
    )
    message = {"op": "models", "from": "cli", "versions": versions}
    try:
        client.publish(settings.redis_prefix + "events", json.dumps(message))
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()
    return True


# ---------------------------------------------------------------------- event stream and fleet
def event_stream(settings: Settings) -> EventStream | None:
    """The configured event stream (NATS JetStream), or None: direct group commit (embedded)."""
    if not settings.event_stream_url:
        return None
    from storage.nats_stream import NatsEventStream

    return NatsEventStream(
        settings.event_stream_url,
        stream=settings.event_stream_name,
        subject=settings.event_stream_subject,
        consumer=settings.event_stream_consumer,
        ack_wait_s=settings.event_stream_ack_wait_s,
        max_age_s=settings.event_stream_max_age_h * 3600.0,
    )


def stream_runtime(settings: Settings, services: Services) -> StreamRuntime | None:
    """The gateway's consumer and applied-note feed, when the stream is configured."""
    stream = services.ingest.stream
    return None if stream is None else StreamRuntime(settings, services.ingest, stream)


def shared_tier_missing(settings: Settings) -> list[str]:
    """What several gateway processes need to agree, and is not configured (empty: all set).

    Without the stream each process keeps its own trending, segment counters and caches from
    only the events it accepted itself; without Redis the response cache, persisted queries
    and rate limits stay per process (a purge reaches one, the limit multiplies)."""
    missing = []
    if not settings.event_stream_url:
        missing.append(
            "TAILOR_EVENT_STREAM_URL (e.g. nats://127.0.0.1:4222): events and what they change "
            "(trending, segment counters and sizes, profile caches) reach every process"
        )
    if not settings.redis_url:
        missing.append(
            "TAILOR_REDIS_URL (e.g. redis://127.0.0.1:6379/0): one response cache, persisted-query "
            "store, purge fan-out and rate limit for all processes"
        )
    return missing
