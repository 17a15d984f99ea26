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

    @property
    def introspection_enabled(self) -> bool:
        return self.introspection and not self.production

    @property
    def db_path(self) -> Path:
        return self.data_dir / "tailor.db"

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


def replace(settings: Settings, **changes: Any) -> Settings:
    return dataclasses.replace(settings, **changes)
