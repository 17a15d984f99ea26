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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import strawberry
from starlette.middleware import Middleware

from cache import ObjectCache, ResponseCache
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
from gateway.edge.apq import PersistedQueries
from gateway.edge.layer import CdnPurger, EdgeConfig, EdgeLayer
from gateway.edge.segment_tokens import SegmentTokens
from gateway.graphql.endpoint import GraphQLEndpoint
from gateway.graphql.limits import OperationLimits
from gateway.graphql.params import PartLimits
from gateway.graphql.types import ResponseLayer
from gateway.http import authenticate
from gateway.security.apikeys import ApiKeyMiddleware, ApiKeyRegistry
from gateway.security.csrf import CookieAuthMiddleware, PrivacySignalMiddleware
from gateway.security.guard import ClientKey, GuardConfig, RequestGuard
from gateway.settings import Settings, SettingsError
from profiles.ingest import IngestionService
from profiles.privacy import FunctionEraser, PiiHasher, PrivacyService
from profiles.types import IngestConfig, ProfileConfig
from recommend.content import ContentService
from recommend.conversion import ConversionModelStore
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
    # `tailor train cf` tunes the CF setting, then the blend weights, each within this budget.
    tune_budget_s: float = 60.0


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
        IndexStore(settings.data_dir / "index"),
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
    root = settings.data_dir / "models"
    return ModelStores(
        cf=CFStore(root / "cf"),
        conversion=ConversionModelStore(root / "conversion"),
        cf_config=cf_config(settings),
        configured_weights=blend_weights(settings),
        conversion_horizon_days=settings.conversion_horizon_days,
        conversion_cutoffs=settings.conversion_cutoffs,
        poll_s=settings.model_poll_s,
        ranker=RankerStore(root / "ranker"),
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


# ---------------------------------------------------------------------- services
def build_services(
    settings: Settings,
    *,
    clock: Callable[[], float] = time.time,
    segment_of: Callable[[str], str | None] | None = None,
    upstream: Upstreams | None = None,
) -> Services:
    """Open the store and build the domain services (the app's lifespan and the CLI).

    ``segment_of`` replaces the live segment lookup (a test seam); ``upstream`` points the
    request loaders at remote record sources.
    """
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    hasher = PiiHasher(settings.pii_traits, pii_salt(settings))
    # Every writer of user rows (identify traits, CRM imports, sync) goes through the store,
    # so hashing there means no configured PII trait reaches the disk in clear.
    store = open_store(settings.db_path, traits_filter=hasher.hash_traits)
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
        prefetch_items=catalog.prefetch,
    )
    privacy = PrivacyService(
        store,
        hasher=hasher,
        clock=clock,
        forget=ingest.forget,
        tombstone_s=settings.max_token_ttl_s,
    )
    ingest.tracking_allowed = privacy.tracking_allowed
    trending = TrendingModel(
        half_life_s=settings.trending_half_life_h * 3600.0,
        categories=catalog.categories,
        clock=clock,
        cache_s=settings.trending_cache_s,
    )
    segments = SegmentService(
        store,
        settings.data_dir / "models" / "segments",
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
    )


def bootstrap_trending(services: Services, settings: Settings) -> None:
    """Load trending from the recent event log (at start-up)."""
    store = services.store
    window = settings.trending_window_days * 86_400.0
    since = anchored_since(services.clock(), store.newest_event_ts(), window)
    services.trending.add_events(store.iter_events(since=since))


# ---------------------------------------------------------------------- HTTP layers
def build_edge(
    settings: Settings,
    services: Services,
    *,
    clock: Callable[[], float],
    cdn_transport: httpx.AsyncBaseTransport | None = None,
    purge_listeners: Sequence[Callable[[list[str] | None], Any]] = (),
) -> EdgeLayer:
    """The app's edge layer (caches on the app clock, so tests move time).

    Erasure also drops every cached answer and profile tagged with the person's keys."""
    purger = None
    if settings.cdn_purge_url:
        purger = CdnPurger(
            settings.cdn_purge_url,
            token=settings.cdn_purge_token,
            client=httpx.AsyncClient(transport=cdn_transport),
        )
    profiles: ObjectCache[str, Any] = ObjectCache(
        settings.profile_cache_max_bytes, default_ttl=settings.profile_cache_ttl_s, timer=clock
    )
    edge = EdgeLayer(
        services,
        responses=ResponseCache(settings.edge_cache_max_bytes, timer=clock),
        profiles=profiles,
        persisted=PersistedQueries(
            services.store,
            safelist=settings.persisted_queries_safelist,
            max_bytes=settings.apq_max_bytes,
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
    settings: Settings, registry: Callable[[], ApiKeyRegistry | None]
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
    )
    config = dataclasses.replace(
        guard_config(settings),
        reserve=settings.concurrency_reserve,
        max_body=settings.max_body_bytes,
        body_read_timeout_s=settings.body_read_timeout_s,
        body_min_bytes_per_s=settings.body_min_bytes_per_s,
    )
    out.append(Middleware(RequestGuard, config=config, client_key=client_key))
    if settings.honor_gpc:
        out.append(Middleware(PrivacySignalMiddleware))
    return out


def api_keys(services: Services) -> ApiKeyRegistry:
    return ApiKeyRegistry(services.store, clock=services.clock)


def authenticator(
    settings: Settings, services: Services
) -> Callable[[str | None, str | None], Viewer]:
    """``(authorization, anonymous_id) -> Viewer`` for every route: the JWT settings, the longest
    token lifetime accepted, and tokens issued before the user's erasure refused."""
    return functools.partial(
        authenticate,
        secret=settings.jwt_secret,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        max_ttl_s=settings.max_token_ttl_s,
        erased_at=services.privacy.erased_at,
    )


def graphql_endpoint(
    settings: Settings, services: Services, schema: strawberry.Schema, layer: ResponseLayer
) -> GraphQLEndpoint:
    return GraphQLEndpoint(
        schema,
        services,
        max_body=settings.max_body_bytes,
        production=settings.production,
        graphiql=settings.graphiql_enabled,
        authenticate=authenticator(settings, services),
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
