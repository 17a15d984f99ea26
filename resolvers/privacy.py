"""Privacy fields: ``Query.consent``, ``Mutation.setConsent``, ``forgetMe`` and admin ``forgetUser``.

Merged into the root types by ``resolvers/schema.py``. The domain work lives in
``profiles/privacy.py`` (the app's :class:`PrivacyService`, ``Services.privacy``).
"""

from __future__ import annotations

import asyncio
from typing import Any

import strawberry
from strawberry.types import Info

from profiles.privacy import Consent, ErasureReceipt, PrivacyService
from resolvers.context import TailorContext
from resolvers.errors import BadUserInput, Forbidden, Unauthenticated
from storage.fields import FieldError, ident
from storage.timeutil import iso


@strawberry.type(description="What the user agreed to.")
class ConsentState:
    personalization: bool = strawberry.field(description="Answers may be personalized.")
    tracking: bool = strawberry.field(description="Behavioural events may be stored.")

    @classmethod
    def of(cls, c: Consent) -> ConsentState:
        return cls(personalization=c.personalization, tracking=c.tracking)


@strawberry.type(description="Rows or entries removed from one store or cache tier.")
class ErasureCount:
    store: str
    count: int = strawberry.field(description="Entries removed; -1 when that tier failed (retry).")


@strawberry.type(description="The receipt of an erasure.")
class ErasureReceiptType:
    user_id: str
    total: int
    erased_at: str | None
    counts: list[ErasureCount]

    @classmethod
    def of(cls, r: ErasureReceipt) -> ErasureReceiptType:
        return cls(
            user_id=r.user_id,
            total=r.total,
            erased_at=iso(r.erased_at),
            counts=[ErasureCount(store=k, count=v) for k, v in sorted(r.counts.items())],
        )


def _privacy(info: Info[TailorContext, Any]) -> PrivacyService:
    return info.context.services.privacy


def _signed_in(info: Info[TailorContext, Any], what: str) -> str:
    uid = info.context.viewer.user_id
    if uid is None:
        raise Unauthenticated(f"{what} needs a signed-in user")
    return uid


@strawberry.type
class PrivacyQuery:
    @strawberry.field(description="The signed-in user's consent; null for anonymous callers.")
    def consent(self, info: Info[TailorContext, Any]) -> ConsentState | None:
        uid = info.context.viewer.user_id
        return None if uid is None else ConsentState.of(_privacy(info).consent(uid))


@strawberry.type
class PrivacyMutation:
    @strawberry.mutation(
        description="Set the caller's consent (omitted flags keep their value). A token with the "
        "admin or service scope may set another user's with userId (e.g. a CRM sync)."
    )
    def set_consent(
        self,
        info: Info[TailorContext, Any],
        personalization: bool | None = None,
        tracking: bool | None = None,
        user_id: strawberry.ID | None = None,
    ) -> ConsentState:
        viewer = info.context.viewer
        if user_id is not None and str(user_id) != viewer.user_id:
            if not viewer.is_privileged:
                raise Forbidden("only the admin or service scope may set another user's consent")
            uid = _valid_id(str(user_id))
        else:
            uid = _signed_in(info, "setConsent")
        return ConsentState.of(
            _privacy(info).set_consent(uid, personalization=personalization, tracking=tracking)
        )

    @strawberry.mutation(
        description="Erase everything about the signed-in user; returns a receipt."
    )
    async def forget_me(self, info: Info[TailorContext, Any]) -> ErasureReceiptType:
        return ErasureReceiptType.of(await _erase(info, _signed_in(info, "forgetMe")))

    @strawberry.mutation(description="Erase everything about a user. Needs the admin scope.")
    async def forget_user(
        self, info: Info[TailorContext, Any], id: strawberry.ID
    ) -> ErasureReceiptType:
        if "admin" not in info.context.viewer.scopes:
            raise Forbidden("forgetUser needs a token with the admin scope")
        return ErasureReceiptType.of(await _erase(info, _valid_id(str(id))))


async def _erase(info: Info[TailorContext, Any], user_id: str) -> ErasureReceipt:
    privacy = _privacy(info)
    # Store deletes and the WAL checkpoint block: off the loop. Cache tiers live on the loop.
    counts, keys = await asyncio.to_thread(privacy.erase_stores, user_id)
    return privacy.run_erasers(user_id, keys, counts)


def _valid_id(value: str) -> str:
    try:
        out = ident({"id": value}, "id")
    except FieldError as exc:
        raise BadUserInput(f"`id` {exc.reason}") from None
    assert out is not None
    return out
