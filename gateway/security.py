"""Assembly of the security and privacy pieces from settings (called by ``gateway/app.py``).

- :func:`operation_limits`: the GraphQL operation limits (``gateway/limits.py``) or None.
- :func:`security_middleware`: outermost first: cookie credentials + CSRF (only when
  ``auth_cookie`` is set), API keys -> internal bearer token, request guards (rate limit,
  concurrency, timeout), and the ``Sec-GPC``/``DNT`` opt-out (when ``honor_gpc``).
- :func:`wire_security`: the privacy service (consent hook on ingestion, PII hashing on every
  user write, erasure) and the API-key registry, stored in ``services.extras``.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Sequence
from typing import Any

from starlette.middleware import Middleware

from gateway.apikeys import ApiKeyMiddleware, ApiKeyRegistry
from gateway.csrf import CookieAuthMiddleware, PrivacySignalMiddleware
from gateway.limits import OperationLimits
from gateway.ratelimit import ClientKey, GuardConfig, RequestGuard
from gateway.settings import Settings
from profiles.privacy import FunctionEraser, PrivacyService
from resolvers.context import Services


def operation_limits(settings: Settings) -> OperationLimits | None:
    if not settings.limits_enabled:
        return None
    return OperationLimits(
        max_depth=settings.max_depth,
        max_aliases=settings.max_aliases,
        max_root_fields=settings.max_root_fields,
        max_directives=settings.max_directives,
        max_tokens=settings.max_tokens,
        max_cost=settings.max_cost,
        max_duplicate_fields=settings.max_duplicate_fields,
        max_first=settings.max_first,
    )


def guard_config(settings: Settings) -> GuardConfig:
    return GuardConfig(
        rate_per_s=settings.rate_limit_per_s,
        burst=settings.rate_limit_burst,
        max_concurrency=settings.max_concurrency,
        timeout_s=settings.request_timeout_s,
        trust_forwarded_for=settings.trust_forwarded_for,
    )


def security_middleware(
    settings: Settings, registry: Callable[[], ApiKeyRegistry | None]
) -> list[Middleware]:
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
    )
    out.append(Middleware(RequestGuard, config=guard_config(settings), client_key=client_key))
    if settings.honor_gpc:
        out.append(Middleware(PrivacySignalMiddleware))
    return out


def pii_salt(settings: Settings) -> str:
    if settings.pii_salt:
        return settings.pii_salt
    # Derived, not the JWT secret itself: a leaked digest must not help forge tokens.
    return hmac.new(settings.jwt_secret.encode(), b"tailor-pii-salt", hashlib.sha256).hexdigest()


def wire_security(settings: Settings, services: Services) -> PrivacyService:
    """Build the privacy service and API-key registry into ``services`` (app and CLI)."""
    store, ingest = services.store, services.ingest
    state_cache = getattr(ingest, "_state_cache", None)

    def forget_state(keys: Sequence[str]) -> None:
        # The ingestion writer keeps recent profile states in memory; erasure drops them too.
        if state_cache is not None:
            for key in keys:
                state_cache.pop(key, None)

    privacy = PrivacyService(
        store,
        pii_traits=settings.pii_traits,
        salt=pii_salt(settings),
        clock=services.clock,
        state_lock=ingest._lock,
        forget_state=forget_state,
    )
    ingest.tracking_allowed = privacy.tracking_allowed
    # Every writer of user rows (GraphQL identify traits, CRM imports) goes through the store,
    # so hashing there means no configured PII trait reaches the disk in clear.
    store.upsert_users = privacy.hashing_upsert(store.upsert_users)  # type: ignore[method-assign,assignment]
    services.extras["privacy"] = privacy
    services.extras["apikeys"] = ApiKeyRegistry(store, clock=services.clock)
    return privacy


def register_edge_eraser(services: Services, edge: Any) -> None:
    """Erasure also drops every cached answer and profile tagged with the person's keys.

    The edge layer tags private answers and cached profiles ``user:<profile key>``; its
    ``invalidate_tags`` runs on the event loop, which is where erasers are called from.
    """
    privacy: PrivacyService | None = services.extras.get("privacy")
    if privacy is None:
        return

    def erase(_user_id: str, profile_keys: Sequence[str]) -> int:
        return int(edge.invalidate_tags([f"user:{k}" for k in profile_keys]))

    privacy.add_eraser(FunctionEraser("edge.cache", erase))
