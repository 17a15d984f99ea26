"""One immutable settings object, read from ``TAILOR_*`` environment variables and an optional TOML file.

Precedence (highest first): explicit overrides passed to :func:`load_settings`, environment
variables, the TOML file, the defaults below. Every default runs on one machine with no external
service: data lives under ``./var``.

Environment variables are the upper-cased field names with a ``TAILOR_`` prefix, e.g.
``TAILOR_DATA_DIR=/srv/tailor``, ``TAILOR_PRODUCTION=true``. In TOML the same names are used
without the prefix, at the top level (``data_dir = "/srv/tailor"``).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.graphql.limits import OperationLimits

_DEFAULT_WEIGHTS = {
    "view": 0.5,
    "click": 1.0,
    "add_to_cart": 3.0,
    "remove_from_cart": -1.0,
    "purchase": 5.0,
    "search": 0.0,
    "rate": 1.0,
    "identify": 0.0,
}


_LIMITS = OperationLimits()


# Production JWT secrets: HS256 needs a key of at least 256 bits (RFC 7518 section 3.2).
MIN_SECRET_BYTES = 32


class SettingsError(ValueError):
    """A setting has a value of the wrong type or out of range; the message names the setting."""


@dataclass(frozen=True, slots=True)
class Settings:
    # --- runtime ---
    data_dir: Path = Path("var")
    host: str = "127.0.0.1"
    port: int = 8000
    production: bool = False
    graphiql: bool = True  # forced off in production
    log_level: str = "info"

    # --- auth ---
    jwt_secret: str = "dev-insecure-secret-change-me-before-production"
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    token_ttl_s: int = 3600
    # Tokens whose lifetime (exp - iat; exp - now without iat) exceeds this are refused (401).
    # Also how long an erasure keeps refusing the person's older tokens (its tombstone).
    max_token_ttl_s: int = 30 * 86_400
    # How often a running gateway reads the erasure log that `tailor forget` (or another
    # gateway) writes: the bound on how long another process's erasure takes to reach it.
    erasure_poll_s: float = 1.0

    # --- HTTP / GraphQL limits ---
    max_body_bytes: int = 1_000_000
    max_batch_events: int = 1000
    max_first: int = _LIMITS.max_first
    graphql_batch_max: int = 0  # operations per batched POST (a JSON array); 0 = batching off
    # Parts of a GraphQL request, refused (413) before any parsing beyond the JSON body: the
    # query text (UTF-8 bytes) and the variables (bytes of their JSON), both well below the
    # body limit: walking huge variables (cache keys, coercion) costs event-loop time.
    max_query_bytes: int = 100_000
    max_variables_bytes: int = 256_000
    document_cache_max_bytes: int = 16 * 1024 * 1024  # parsed + validated GraphQL documents
    # Request bodies are read before a request takes an execution slot: the whole body must
    # arrive within body_read_timeout_s plus one second per body_min_bytes_per_s bytes
    # received (a minimum data rate), else 408 and the connection is closed.
    body_read_timeout_s: float = 10.0
    body_min_bytes_per_s: float = 1024.0

    # --- ingestion ---
    custom_event_types: tuple[str, ...] = ()
    clock_skew_s: int = 300
    group_commit_ms: float = 2.0
    event_weights: Mapping[str, float] = field(default_factory=lambda: dict(_DEFAULT_WEIGHTS))

    # --- trending ---
    trending_half_life_h: float = 48.0
    trending_window_days: int = 30
    trending_cache_s: float = 30.0

    # --- embeddings and content retrieval ---
    encoder: str = "minilm"  # "minilm" (bundled model) or "hashing" (unit tests only)
    # How MiniLM runs: "int8" = ONNX Runtime on an int8 export made once under
    # <data_dir>/encoders (~4x the items/s of fp32 here, no PyTorch at serving), "fp32" =
    # PyTorch. Each has its own model id, so indexes and cached vectors never mix the two.
    encoder_backend: str = "int8"
    model_path: str | None = None  # a sentence-transformers directory of your own
    item_text_template: str | None = None  # None: embeddings.DEFAULT_ITEM_TEMPLATE
    hnsw_threshold: int = 10_000  # exact inner-product search below this many items
    hnsw_m: int = 24  # M 24 / efConstruction 80 / efSearch 192: measured in docs/SPEED.md
    hnsw_ef_construction: int = 80
    hnsw_ef_search: int = 192
    user_vector_half_life_days: float = 14.0
    search_personal_weight: float = 0.3  # share of the user vector in a personalized query
    model_poll_s: float = 10.0  # how often a running gateway looks for new models and items
    # With items but no stored index, a gateway builds one itself before it is ready (the
    # embedded default). Off: it serves without content similarity and search until another
    # process (`tailor train index`, or `tailor demo`'s background build) stores a version, and
    # /readyz lists the index under "warming" instead of failing.
    index_build_on_start: bool = True

    # --- segmentation ---
    segments_file: Path | None = (
        None  # TOML/JSON: names/descriptions per segment id, [[rule]] segments
    )
    segment_algorithm: str = "kmeans"  # kmeans | minibatch | dbscan | ward
    segment_k_min: int = 2
    segment_k_max: int = 8
    segment_scaler: str = "standard"  # standard | robust (robust breaks on sparse counts: IQR 0)

    # --- edge caching: gateway response cache, HTTP cache headers, APQ, purge ---
    edge_cache: bool = True  # the gateway's own response cache (headers are sent either way)
    edge_cache_max_bytes: int = 64 * 1024 * 1024
    edge_default_max_age: int = 0  # seconds, for root/object fields without a hint (Apollo: 0)
    edge_default_swr: int = 0  # stale-while-revalidate when no field states one (seconds)
    edge_default_sie: int = 0  # stale-if-error when no field states one (seconds)
    edge_browser_max_age: int = 60  # cap on `max-age=` (browsers, private caches)
    edge_shared_max_age: int = 3600  # cap on `s-maxage=` (CDNs, shared caches)
    segment_token_ttl_s: int = 3600  # lifetime of an X-Tailor-Segment token
    persisted_queries_safelist: bool = False  # only registered operations run
    apq_max_bytes: int = 8 * 1024 * 1024  # in-memory APQ registry (sum of query lengths)
    cdn_purge_url: str | None = None  # POST {"tags": [...], "keys": [...]} here on purges
    cdn_purge_token: str | None = None  # sent as `Authorization: Bearer ...` to that URL
    profile_cache_ttl_s: float = 30.0
    profile_cache_max_bytes: int = 16 * 1024 * 1024

    # --- security and privacy (see gateway/graphql/limits.py, gateway/security/,
    # apikeys.py and profiles/privacy.py). 0 disables a numeric limit. ---
    # Operation limits: the defaults are OperationLimits' own.
    limits_enabled: bool = True  # all operation limits below at once
    max_depth: int = _LIMITS.max_depth
    max_aliases: int = _LIMITS.max_aliases
    max_root_fields: int = _LIMITS.max_root_fields
    max_directives: int = _LIMITS.max_directives
    max_tokens: int = _LIMITS.max_tokens
    max_cost: int = _LIMITS.max_cost
    max_duplicate_fields: int = _LIMITS.max_duplicate_fields
    introspection: bool = True  # forced off in production
    request_timeout_s: float = 10.0  # 504 after this
    max_concurrency: int = 64  # requests in flight; 503 + Retry-After beyond
    concurrency_reserve: int = 8  # extra slots only /admin/* may use (health checks are exempt)
    rate_limit_per_s: float = 50.0  # per client (token subject, API key or IP); 429 beyond
    rate_limit_burst: int = 100
    trust_forwarded_for: bool = False  # key IP limits on X-Forwarded-For (behind a proxy only)
    # Proxies (IPs or CIDRs) whose X-Forwarded-For hops are believed: the client is the
    # right-most hop not in this list. Also uvicorn's forwarded_allow_ips when trusted.
    trusted_proxies: tuple[str, ...] = ("127.0.0.1", "::1")
    auth_cookie: str | None = None  # cookie carrying the JWT; when set, CSRF checks apply
    honor_gpc: bool = True  # Sec-GPC: 1 / DNT: 1 = no tracking for that request
    pii_traits: tuple[str, ...] = ("email", "phone")  # stored only as salted hashes
    pii_salt: str | None = None  # default: derived from jwt_secret
    retention_days: int = 365  # `tailor retention` prunes older events

    # --- upstream services (upstream/, REST contract in the README).
    # No URL set: items and traits come from the local store only. Times are seconds. ---
    upstream_catalog_url: str | None = None  # e.g. http://catalog.internal/v1 (GET /items)
    upstream_crm_url: str | None = None  # e.g. http://crm.internal/v1 (GET /users)
    upstream_token: str | None = None  # sent as `Authorization: Bearer ...` to both
    upstream_catalog_map: tuple[
        str, ...
    ] = ()  # field renames UPSTREAM=TAILOR, e.g. sku=id,name=title
    upstream_crm_map: tuple[str, ...] = ()  # same for CRM rows, e.g. customer_id=id
    upstream_connect_timeout_s: float = 1.0
    upstream_read_timeout_s: float = 2.0
    upstream_total_timeout_s: float = 3.0  # one call, retries and backoff included
    upstream_max_connections: int = 32  # per upstream (one shared httpx.AsyncClient each)
    upstream_max_keepalive: int = 16
    upstream_retries: int = 2  # extra attempts for idempotent calls (backoff with jitter)
    upstream_backoff_s: float = 0.05  # first backoff; doubles per attempt
    upstream_backoff_max_s: float = 1.0
    upstream_breaker_failures: int = 5  # consecutive failures that open the circuit
    upstream_breaker_reset_s: float = 10.0  # open -> half-open (one probe) after this
    upstream_cache_ttl_s: float = 60.0  # upstream answers are fresh this long
    upstream_stale_if_error_s: float = 3600.0  # then served this long more while it fails
    upstream_cache_max_bytes: int = 16 * 1024 * 1024  # per upstream
    upstream_batch_max: int = 100  # ids per upstream request
    upstream_sync_interval_s: float = (
        0.0  # `tailor serve` runs sync items+users this often (0: off)
    )
    upstream_sync_page_size: int = 500

    # --- recommendations and conversion (see recommend/engine.py, gateway/models.py).
    # Blend weights per source, merged over the defaults (cf 1, content 0.5, segment 0.3,
    # trending 0.2, context 0.8); weights that `tailor evaluate --tune` saved next to the
    # serving CF version win over these. ---
    recommend_weights: Mapping[str, float] = field(default_factory=dict)
    recommend_exclude_types: tuple[str, ...] = ("purchase",)  # never recommend items with these
    cf_kind: str = "auto"  # auto (EASE up to cf_ease_max_items items, ALS above), ease, knn, als
    cf_ease_max_items: int = 20_000  # EASE holds a dense items x items matrix (4 n^2 bytes)
    # Seconds a CF training run (the gateway's background or `tailor train cf` without --budget)
    # spends tuning the CF setting and then the blend weights; 0: train the defaults untuned.
    cf_tune_budget_s: float = 60.0
    conversion_horizon_days: float = 7.0  # conversionScore: P(purchase within this many days)
    conversion_cutoffs: int = 6  # training snapshots one horizon apart (the last is the holdout)

    # --- the Parquet lake and the Spark engine (`tailor export parquet`, `tailor train cf|segments
    # --engine spark`; docs/LAKE.md). Spark is an optional extra and needs Java 17+. ---
    lake_dir: Path | None = None  # where `train --engine spark` exports (default data_dir/lake)
    spark_master: str = "local[2]"  # local[N] cores, or a cluster URL (spark://host:7077, yarn)
    spark_driver_memory: str = "2g"
    spark_shuffle_partitions: int = 8  # Spark's default 200 is for clusters, not one machine
    # Spark MLlib ALS (implicit preferences; confidence 1 + alpha * event weight). The defaults
    # suit catalogs of 10k-100k items: on MovieLens (9.7k items) they beat the in-process ALS.
    spark_als_rank: int = 64
    spark_als_reg_param: float = 0.1  # scaled per user/item by their number of ratings (ALS-WR)
    spark_als_alpha: float = 2.0
    spark_als_max_iter: int = 10
    spark_als_blocks: int = 0  # user/item blocks; 0 = the session's parallelism (its cores)

    # --- observability (docs/OPERATIONS.md) ---
    metrics_enabled: bool = True  # GET /metrics (Prometheus text format)
    # Bearer token /metrics asks for; in production /metrics on the main port needs it (or
    # metrics_port, a separate bind that only the monitoring network should reach).
    metrics_token: str | None = None
    metrics_port: int = 0  # > 0: serve /metrics on this port instead of the main one
    metrics_host: str = "127.0.0.1"
    tracing: bool = False  # OpenTelemetry spans; off costs nothing on the request path
    tracing_endpoint: str | None = None  # OTLP/HTTP traces URL; unset: OTEL_EXPORTER_OTLP_* vars
    tracing_sample_ratio: float = 1.0  # share of new traces recorded (parent-based)
    service_name: str = "tailor"  # service.name of the spans
    log_format: str = "auto"  # auto (JSON in production or off a terminal), json, text
    access_log: bool = True  # one `tailor.access` line per request
    progress_interval_s: float = 10.0  # progress lines of long commands when not on a terminal
    shutdown_grace_s: float = 30.0  # seconds in-flight requests get to finish on SIGTERM

    # --- clients: browsers, edge workers, mobile (issue 17; docs/clients.md) ---
    # Browser origins allowed to call (scheme://host[:port], or * for any origin without
    # credentials). Listed origins alone get credentials. Outside production, local dev servers
    # (localhost / 127.0.0.1 / [::1], any port) are allowed too; in production only these.
    cors_origins: tuple[str, ...] = ()
    cors_max_age: int = 7200  # seconds browsers may cache a preflight answer (Chrome caps at 2h)
    # zstd / brotli / gzip by Accept-Encoding for bodies of at least compress_min_bytes;
    # compressed answers carry a weak ETag (the strong one names the identity body).
    compression: bool = True
    compress_min_bytes: int = 1024
    # Tokens of an identity provider (Auth0, Cognito, Firebase…): its JWKS URL, and the
    # algorithms accepted with those keys. HS256 tokens signed with jwt_secret stay accepted
    # (API-key exchange, `tailor token`); iss/aud are checked with jwt_issuer/jwt_audience.
    jwks_url: str | None = None
    jwt_algorithms: tuple[str, ...] = ("RS256", "ES256")
    jwks_cache_s: float = 300.0  # cache lifetime; refetched in the background every half of it
    jwks_refresh_cooldown_s: float = 30.0  # an unknown kid refetches at most this often
    # The CDN purge API that POST /admin/purge forwards to (cdn_purge_url / _token above):
    # generic = POST {"tags","keys"} to cdn_purge_url; cloudflare = the zone's purge_cache
    # (cdn_purge_id = zone id); fastly = purge by Surrogate-Key (cdn_purge_id = service id).
    # For cloudflare/fastly, cdn_purge_url, when set, replaces the API base URL.
    cdn_purge_provider: str = "generic"
    cdn_purge_id: str | None = None
    cdn_soft_purge: bool = False  # fastly: mark stale instead of evicting (Fastly-Soft-Purge)

    # --- fleet: shared rate limits (issue 14; gateway/security/ratelimit.py; redis_url below) ---
    rate_limit_redis_prefix: str = "tailor:ratelimit"  # key prefix of the shared limits in Redis

    # --- the PostgreSQL system of record (docs/POSTGRES.md). Unset: the embedded SQLite file
    # data_dir/tailor.db. Set: postgresql://user:password@host:5432/dbname (migrated at start;
    # `tailor migrate` does it ahead and copies an existing SQLite store in). ---
    database_url: str | None = None
    database_pool_min: int = 1  # connections kept open per process
    database_pool_max: int = 10  # per process; size the server's max_connections for the fleet
    database_connect_timeout_s: float = 5.0  # start-up fails with a clear error after this

    # --- event stream and fleet processes (issue 14; docs/FLEET.md) ---
    # Unset: events are group-committed to the store by the gateway that accepts them (embedded).
    event_stream_url: str | None = None  # nats://127.0.0.1:4222 (NATS JetStream)
    event_stream_name: str = "TAILOR_EVENTS"  # the JetStream stream (file storage)
    event_stream_subject: str = "tailor.events"  # events on <subject>.in, notes on .applied
    event_stream_consumer: str = "tailor-workers"  # the durable consumer every consumer shares
    event_stream_ack_wait_s: float = 30.0  # an unacknowledged delivery is redelivered after this
    event_stream_max_age_h: float = 168.0  # how long the stream keeps messages
    event_stream_batch: int = 64  # stream messages per fetch (each holds up to 256 KB of events)
    # The gateway applies events itself; false when only `tailor worker` processes do.
    event_stream_inline_consumer: bool = True

    # --- Redis shared tier (cache/redis_tier.py, docs/REDIS.md). Unset: everything stays
    # in-process, as embedded. Set: a response-cache level and APQ registry shared by every
    # instance, single-flight across them, purges and model announcements fanned out. ---
    redis_url: str | None = None  # redis://host:6379/0 (rediss:// for TLS, unix:// a socket)
    redis_prefix: str = "tailor:"  # every key and the channel start with it
    redis_max_bytes: int = 256 * 1024 * 1024  # this prefix's entries together (Tailor evicts)
    redis_max_entry_bytes: int = 1024 * 1024  # a larger answer stays in-process only
    redis_timeout_s: float = 0.5  # connect and per-command timeout
    redis_lock_s: float = 5.0  # a single-flight lease's lifetime
    redis_lock_wait_s: float = 1.0  # how long an instance waits for another's identical miss
    redis_apq_ttl_s: int = 7 * 86_400  # persisted queries registered through APQ
    redis_retry_s: float = 1.0  # reconnect interval while Redis is unavailable
    # models/ and index/ live here (default: data_dir); a path every instance of a fleet shares.
    artifacts_dir: Path | None = None

    # --- experiments and flags (docs/EXPERIMENTS.md) ---
    experiments_file: Path | None = (
        None  # GrowthBook definitions (JSON); default data_dir/experiments.json
    )
    experiments_poll_s: float = (
        2.0  # a running gateway re-reads the file this often when it changed
    )

    @property
    def introspection_enabled(self) -> bool:
        return self.introspection and not self.production

    @property
    def db_path(self) -> Path:
        return self.data_dir / "tailor.db"

    @property
    def database(self) -> str | Path:
        """Where the store lives: ``database_url`` when set, else the SQLite file ``db_path``."""
        return self.database_url or self.db_path

    @property
    def artifacts_root(self) -> Path:
        """Where ``models/`` and ``index/`` live: ``artifacts_dir``, by default ``data_dir``."""
        return self.artifacts_dir or self.data_dir

    @property
    def experiments_path(self) -> Path:
        return self.experiments_file or self.data_dir / "experiments.json"

    @property
    def graphiql_enabled(self) -> bool:
        return self.graphiql and not self.production

    @property
    def insecure_secret(self) -> bool:
        return self.jwt_secret == Settings.__dataclass_fields__["jwt_secret"].default


def _coerce(name: str, raw: Any, annotation: Any) -> Any:
    """Coerce a raw value (string from the environment, or TOML value) to the field's type."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (types.UnionType, typing.Union):
        non_none = [a for a in args if a is not type(None)]
        if raw is None or (isinstance(raw, str) and raw.strip() == ""):
            return None
        return _coerce(name, raw, non_none[0])
    try:
        if annotation is bool:
            if isinstance(raw, bool):
                return raw
            value = str(raw).strip().lower()
            if value in ("1", "true", "yes", "on"):
                return True
            if value in ("0", "false", "no", "off"):
                return False
            raise ValueError(f"expected a boolean, got {raw!r}")
        if annotation is int:
            if isinstance(raw, bool):
                raise ValueError("expected an integer")
            return int(raw)
        if annotation is float:
            return float(raw)
        if annotation is str:
            return str(raw)
        if annotation is Path:
            return Path(str(raw))
        if origin is tuple:
            if isinstance(raw, str):
                return tuple(p.strip() for p in raw.split(",") if p.strip())
            return tuple(str(x) for x in raw)
        if origin is Mapping or annotation is Mapping:
            if isinstance(raw, str):
                pairs = (p.split("=", 1) for p in raw.split(",") if p.strip())
                raw = {k.strip(): v for k, v in pairs}
            return {str(k): float(v) for k, v in dict(raw).items()}
    except (TypeError, ValueError) as exc:
        raise SettingsError(f"setting {name!r}: {exc}") from exc
    return raw


def load_settings(
    config_file: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
    **overrides: Any,
) -> Settings:
    """Build :class:`Settings` from defaults, a TOML file, ``TAILOR_*`` variables and overrides."""
    env = os.environ if environ is None else environ
    hints = typing.get_type_hints(Settings)
    values: dict[str, Any] = {}
    path = config_file or env.get("TAILOR_CONFIG")
    if path:
        try:
            with open(path, "rb") as fh:
                doc = tomllib.load(fh)
        except FileNotFoundError as exc:
            raise SettingsError(f"config file not found: {path}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError(f"config file {path}: {exc}") from exc
        unknown = set(doc) - set(hints)
        if unknown:
            raise SettingsError(f"config file {path}: unknown settings {sorted(unknown)}")
        values.update(doc)
    for name in hints:
        key = f"TAILOR_{name.upper()}"
        if key in env:
            values[name] = env[key]
    values.update({k: v for k, v in overrides.items() if v is not None})
    unknown = set(values) - set(hints)
    if unknown:
        raise SettingsError(f"unknown settings {sorted(unknown)}")
    coerced = {name: _coerce(name, raw, hints[name]) for name, raw in values.items()}
    if "event_weights" in coerced:
        coerced["event_weights"] = {**_DEFAULT_WEIGHTS, **coerced["event_weights"]}
    settings = Settings(**coerced)
    _validate(settings)
    return settings


def _validate(s: Settings) -> None:
    positive = (
        "port",
        "max_body_bytes",
        "max_batch_events",
        "max_first",
        "token_ttl_s",
        "max_query_bytes",
        "max_variables_bytes",
        "document_cache_max_bytes",
        "body_read_timeout_s",
    )
    for name in positive:
        if getattr(s, name) <= 0:
            raise SettingsError(f"setting {name!r} must be positive, got {getattr(s, name)}")
    non_negative = (
        "max_depth",
        "max_aliases",
        "max_root_fields",
        "max_directives",
        "max_tokens",
        "max_cost",
        "max_duplicate_fields",
        "request_timeout_s",
        "max_concurrency",
        "rate_limit_per_s",
        "rate_limit_burst",
        "retention_days",
        "concurrency_reserve",
        "body_min_bytes_per_s",
        "cf_tune_budget_s",
    )
    for name in non_negative:
        if getattr(s, name) < 0:
            raise SettingsError(
                f"setting {name!r} must be >= 0 (0 disables), got {getattr(s, name)}"
            )
    for proxy in s.trusted_proxies:
        try:
            ipaddress.ip_network(proxy, strict=False)
        except ValueError:
            raise SettingsError(
                f"setting 'trusted_proxies': {proxy!r} is not an IP address or CIDR network"
            ) from None
    if s.log_format not in ("auto", "json", "text"):
        raise SettingsError("setting 'log_format' must be auto, json or text")
    if not 0.0 <= s.tracing_sample_ratio <= 1.0:
        raise SettingsError("setting 'tracing_sample_ratio' must be between 0 and 1")
    if s.progress_interval_s <= 0:
        raise SettingsError("setting 'progress_interval_s' must be positive")
    if not 0 <= s.metrics_port <= 65535:
        raise SettingsError("setting 'metrics_port' must be a port number (0: off)")
    if s.trending_half_life_h <= 0:
        raise SettingsError("setting 'trending_half_life_h' must be positive")
    if s.encoder_backend not in ("int8", "fp32"):
        raise SettingsError(
            f"setting 'encoder_backend' must be 'int8' or 'fp32', got {s.encoder_backend!r}"
        )
    for name in ("spark_shuffle_partitions", "spark_als_rank", "spark_als_max_iter"):
        if getattr(s, name) < 1:
            raise SettingsError(f"setting {name!r} must be >= 1, got {getattr(s, name)}")
    if s.spark_als_alpha <= 0 or s.spark_als_reg_param < 0 or s.spark_als_blocks < 0:
        raise SettingsError(
            "settings 'spark_als_alpha' must be > 0, 'spark_als_reg_param' and "
            f"'spark_als_blocks' >= 0; got {s.spark_als_alpha}, {s.spark_als_reg_param}, "
            f"{s.spark_als_blocks}"
        )
    if not s.spark_master.strip():
        raise SettingsError("setting 'spark_master' is empty: local[2] or a cluster URL")
    if s.production and s.insecure_secret:
        raise SettingsError("production mode needs TAILOR_JWT_SECRET set to a real secret")
    if s.production and len(s.jwt_secret.encode()) < MIN_SECRET_BYTES:
        raise SettingsError(
            f"production mode needs TAILOR_JWT_SECRET of at least {MIN_SECRET_BYTES} bytes "
            f"(got {len(s.jwt_secret.encode())}); generate one with "
            "`python -c 'import secrets; print(secrets.token_urlsafe(48))'`"
        )
    if s.max_token_ttl_s <= 0:
        raise SettingsError(f"setting 'max_token_ttl_s' must be positive, got {s.max_token_ttl_s}")
    if s.token_ttl_s > s.max_token_ttl_s:
        raise SettingsError(
            f"setting 'token_ttl_s' ({s.token_ttl_s}) must not exceed 'max_token_ttl_s' "
            f"({s.max_token_ttl_s}): such tokens would be refused"
        )
    if s.erasure_poll_s <= 0:
        raise SettingsError(f"setting 'erasure_poll_s' must be positive, got {s.erasure_poll_s}")
    _validate_database(s)
    _validate_stream(s)
    _validate_redis(s)


def _validate_database(s: Settings) -> None:
    if s.database_url is not None and not s.database_url.startswith(
        ("postgresql://", "postgres://")
    ):
        raise SettingsError(
            "setting 'database_url' must be a postgresql:// URL "
            "(e.g. postgresql://tailor@127.0.0.1:5432/tailor); unset it to use SQLite under "
            "data_dir"
        )
    if s.database_pool_min < 1 or s.database_pool_max < s.database_pool_min:
        raise SettingsError(
            "settings 'database_pool_min' must be >= 1 and 'database_pool_max' >= it; got "
            f"{s.database_pool_min}, {s.database_pool_max}"
        )
    if s.database_connect_timeout_s <= 0:
        raise SettingsError(
            "setting 'database_connect_timeout_s' must be positive, got "
            f"{s.database_connect_timeout_s}"
        )


def _validate_stream(s: Settings) -> None:
    if s.event_stream_url is not None and not s.event_stream_url.startswith(("nats://", "tls://")):
        raise SettingsError(
            f"setting 'event_stream_url' must be a nats:// (or tls://) URL, got {s.event_stream_url!r}"
        )
    for name in ("event_stream_ack_wait_s", "event_stream_max_age_h", "event_stream_batch"):
        if getattr(s, name) <= 0:
            raise SettingsError(f"setting {name!r} must be positive, got {getattr(s, name)}")
    for name in ("event_stream_name", "event_stream_consumer"):
        value = getattr(s, name)
        if not value or any(c in value for c in " .*>\t"):
            raise SettingsError(
                f"setting {name!r} must be a name without spaces, dots, '*' or '>', got {value!r}"
            )
    subject = s.event_stream_subject
    if not subject or any(c in subject for c in " *>") or subject.strip(".") != subject:
        raise SettingsError(
            f"setting 'event_stream_subject' must be a NATS subject like 'tailor.events', got {subject!r}"
        )


def _validate_redis(s: Settings) -> None:
    if s.redis_url is not None and not s.redis_url.startswith(("redis://", "rediss://", "unix://")):
        raise SettingsError(
            f"setting 'redis_url' must start with redis://, rediss:// or unix://, "
            f"got {s.redis_url!r}"
        )
    if not s.redis_prefix or any(c.isspace() for c in s.redis_prefix):
        raise SettingsError(
            f"setting 'redis_prefix' must be non-empty without spaces, got {s.redis_prefix!r}"
        )
    for name in (
        "redis_max_bytes",
        "redis_max_entry_bytes",
        "redis_timeout_s",
        "redis_lock_s",
        "redis_apq_ttl_s",
        "redis_retry_s",
    ):
        if getattr(s, name) <= 0:
            raise SettingsError(f"setting {name!r} must be positive, got {getattr(s, name)}")
    if s.redis_lock_wait_s < 0:
        raise SettingsError(f"setting 'redis_lock_wait_s' must be >= 0, got {s.redis_lock_wait_s}")
    if s.redis_max_entry_bytes > s.redis_max_bytes:
        raise SettingsError(
            f"setting 'redis_max_entry_bytes' ({s.redis_max_entry_bytes}) must not exceed "
            f"'redis_max_bytes' ({s.redis_max_bytes})"
        )


def replace(settings: Settings, **changes: Any) -> Settings:
    return dataclasses.replace(settings, **changes)
