"""Behavioural event simulation: sessions of views, clicks, carts, purchases and searches.

Each user draws items from a private taste distribution (Zipf popularity x gender line x
style x price band, restricted mostly to their 1-3 categories), so CF and content models
have real structure to find. Sessions have one focus category, a persona-specific funnel
(view -> click -> add_to_cart -> purchase) and realistic gaps. Trending items (recent
arrivals) take a share of views that ramps up over the final week, so "trending" is
measurable. Some first sessions happen logged out (``anonymousId``) and end with an
``identify`` that links them; a few bounce visitors never log in at all.
"""

from __future__ import annotations

import numpy as np

from demo.behaviour import BEHAVIOUR, PersonaBehaviour, session_count, session_starts
from demo.types import DemoItem, DemoUser, Persona, Row, SimulationResult
from demo.vocabulary import CATEGORIES, STYLES

# (offset s from session start, type, item index or -1, props) before placement in time.
_Draft = tuple[int, str, int, dict[str, object] | None]

TREND_DAYS = 7
TREND_MAX_SHARE = 0.2
FOCUS_SHARE = 0.85
OTHER_TASTE_SHARE = 0.08  # the rest of views explore the whole catalog by popularity
MIN_SESSION_GAP_S = 1200
BOUNCE_VISITOR_SHARE = 0.05
EMAIL_SESSION_SHARE = 0.15
ENGAGEMENT_SIGMA = 0.25
_ANONYMOUS_FIRST_SESSION = {
    Persona.HIGH_VALUE_LOYALIST: 0.10,
    Persona.BROWSING_ENTHUSIAST: 0.15,
    Persona.OCCASIONAL_BUYER: 0.15,
    Persona.NEW_VISITOR: 0.60,
}


def _draw(members: np.ndarray, cdf: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Inverse-CDF sampling: map uniforms ``u`` in [0, 1) to items of ``members``."""
    picks = np.searchsorted(cdf, u * cdf[-1], side="right")
    return members[np.minimum(picks, len(members) - 1)]


class EventSimulator:
    """Simulates every user's sessions over ``[window_start_s, end_s)`` (epoch seconds)."""

    def __init__(
        self,
        rng: np.random.Generator,
        items: list[DemoItem],
        window_start_s: int,
        end_s: int,
    ) -> None:
        self.rng = rng
        self.items = items
        self.window_start_s = window_start_s
        self.end_s = end_s
        self.trend_start_s = end_s - TREND_DAYS * 86_400
        self.category = np.asarray([i.category for i in items])
        self.gender = np.asarray([i.gender for i in items])
        self.style = np.asarray([STYLES.index(i.style) for i in items])
        self.log_ratio = np.log(np.asarray([i.price_ratio for i in items]))
        self.popularity = np.asarray([i.popularity for i in items])
        self.trending = np.asarray([i.trending for i in items])
        self.available = [i.available for i in items]
        # How strongly each trending item trends (some fads are bigger than others).
        self.trend_strength = np.where(self.trending, rng.uniform(0.5, 1.5, len(items)), 0.0)
        steady = np.flatnonzero(~self.trending)
        self.members = [
            np.flatnonzero((self.category == c) & ~self.trending) for c in range(len(CATEGORIES))
        ]
        self.gender_fit = {
            g: np.where(self.gender == g, 1.0, np.where(self.gender == "unisex", 0.7, 0.03))
            for g in ("women", "men")
        }
        self.global_pool = (steady, np.cumsum(self.popularity[steady]))
        self.seq = 0
        self.n_sessions = 0
        self.rows: list[Row] = []

    # -- taste --------------------------------------------------------------------------

    def _taste_weights(self, user: DemoUser) -> np.ndarray:
        style_fit = np.full(len(STYLES), 0.2)
        style_fit[[STYLES.index(s) for s in user.styles]] = 1.0
        price_fit = np.exp(-((self.log_ratio - user.price_band) ** 2) / (2 * 0.35**2))
        return self.popularity * self.gender_fit[user.gender] * style_fit[self.style] * price_fit

    def in_categories(self, categories: tuple[int, ...]) -> np.ndarray:
        """Boolean mask over items: does the item belong to one of ``categories``?"""
        mask = np.zeros(len(CATEGORIES), dtype=bool)
        mask[list(categories)] = True
        return mask[self.category]

    def _pools(self, user: DemoUser, weights: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        pools = []
        for c in user.categories:
            members = self.members[c]
            if len(members) == 0:  # tiny catalogs: fall back to anything
                members = self.global_pool[0]
            pools.append((members, np.cumsum(weights[members])))
        return pools

    def _trend_pool(self, user: DemoUser) -> tuple[np.ndarray, np.ndarray]:
        mine = self.trending & self.in_categories(user.categories)
        members = np.flatnonzero(mine if mine.any() else self.trending)
        gender_fit = np.where(self.gender[members] == user.gender, 1.0, 0.3)
        return members, np.cumsum(self.trend_strength[members] * gender_fit)

    def _user_views(
        self,
        starts: np.ndarray,
        counts: np.ndarray,
        pools: list[tuple[np.ndarray, np.ndarray]],
        trend_pool: tuple[np.ndarray, np.ndarray],
    ) -> list[list[int]]:
        """Viewed items of each session (``counts[k]`` of them), drawn for all at once.

        Each session has a focus category (most views) and explores the user's other
        categories and the whole catalog a little; late sessions swap some views for
        trending items.
        """
        rng = self.rng
        n_sessions = len(counts)
        # Draw twice as many as needed and keep first occurrences: people do revisit an
        # item within a session, but not five times because it is the category's top seller.
        session_of = np.repeat(np.arange(n_sessions), 2 * counts)
        total = len(session_of)
        focus = rng.integers(len(pools), size=n_sessions)[session_of]
        other = rng.integers(len(pools), size=n_sessions)[session_of]
        source = rng.random(total)
        u = rng.random(total)
        by_pool = np.stack([_draw(members, cdf, u) for members, cdf in pools])
        column = np.arange(total)
        views = np.where(
            source < FOCUS_SHARE,
            by_pool[focus, column],
            np.where(
                source < FOCUS_SHARE + OTHER_TASTE_SHARE,
                by_pool[other, column],
                _draw(*self.global_pool, u),
            ),
        )
        span = self.end_s - self.trend_start_s
        ramp = np.clip((starts - self.trend_start_s) / span, 0.0, 1.0)[session_of]
        hot = rng.random(total) < TREND_MAX_SHARE * ramp**1.5
        if hot.any():
            views[hot] = _draw(*trend_pool, rng.random(int(hot.sum())))
        out: list[list[int]] = []
        flat = views.tolist()
        offset = 0
        for n in counts.tolist():
            candidates = flat[offset : offset + 2 * n]
            offset += 2 * n
            unique = list(dict.fromkeys(candidates))
            out.append(unique[:n] if len(unique) >= n else unique + candidates[: n - len(unique)])
        return out

    # -- one session --------------------------------------------------------------------

    def _session(self, b: PersonaBehaviour, views: list[int], converting: bool) -> list[_Draft]:
        rng = self.rng
        n = len(views)
        drafts: list[_Draft] = []
        t = 0
        if rng.random() < b.p_search:
            drafts.append((0, "search", views[0], None))  # query filled at placement
            t = int(rng.integers(5, 25))
        gaps = (rng.lognormal(np.log(b.gap_s), 0.6, n).astype(np.int64) + 2).tolist()
        clicks = (rng.random(n) < b.p_click).tolist()
        carts = (rng.random(n) < b.p_cart).tolist()
        delays = rng.integers(3, 25, size=(n, 2)).tolist()
        cart: list[tuple[int, int]] = []  # (item, quantity)
        cart_times: list[int] = []
        for k, item in enumerate(views):
            if k:
                t += gaps[k]
            drafts.append((t, "view", item, None))
            at = t
            if clicks[k]:
                at += delays[k][0]
                drafts.append((at, "click", item, None))
            if carts[k] and self.available[item]:
                at += delays[k][1]
                qty = 2 if rng.random() < 0.1 else 1
                drafts.append((at, "add_to_cart", item, self._props(item, qty)))
                cart.append((item, qty))
                cart_times.append(at)
        if converting and not cart:
            buyable = [i for i in views if self.available[i]]
            if buyable:
                item = buyable[-1]
                t += int(rng.integers(10, 40))
                drafts.append((t, "add_to_cart", item, self._props(item, 1)))
                cart.append((item, 1))
                cart_times.append(t)
        end = t
        kept: list[tuple[int, int]] = []
        for (item, qty), added in zip(cart, cart_times, strict=True):
            must_keep = converting and not kept and (item, qty) == cart[-1]
            if not must_keep and rng.random() < b.p_remove:
                removed = added + int(rng.integers(20, 300))
                drafts.append((removed, "remove_from_cart", item, None))
                end = max(end, removed)
            else:
                kept.append((item, qty))
        if converting and kept:
            checkout = end + int(rng.integers(60, 240))
            for k, (item, qty) in enumerate(kept[: b.max_basket]):
                drafts.append((checkout + k, "purchase", item, self._props(item, qty)))
        drafts.sort(key=lambda d: d[0])
        return drafts

    def _props(self, item: int, quantity: int) -> dict[str, object]:
        return {"price": self.items[item].price, "quantity": quantity}

    # -- placement ----------------------------------------------------------------------

    def _emit(
        self,
        ts: int,
        kind: str,
        user_id: str | None,
        anon_id: str | None,
        item: int,
        session_id: str,
        channel: str,
        props: dict[str, object] | None,
    ) -> None:
        self.rows.append((ts, self.seq, kind, user_id, anon_id, item, session_id, channel, props))
        self.seq += 1

    def _new_session_id(self) -> str:
        self.n_sessions += 1
        return f"s{self.n_sessions:07d}"

    def new_anonymous_id(self) -> str:
        """A fresh ``a`` + 12 hex digit anonymous id (unique within the world)."""
        return f"a{self.seq:06x}{int(self.rng.integers(16**6)):06x}"

    def simulate_user(self, user: DemoUser) -> int:
        """Emit one user's sessions; returns the start (epoch s) of their first session."""
        rng = self.rng
        b = BEHAVIOUR[user.persona]
        weights = self._taste_weights(user)
        pools = self._pools(user, weights)
        trend_pool = self._trend_pool(user)
        n = session_count(rng, b)
        starts = session_starts(rng, n, b, self.window_start_s, self.end_s, user.arrival_s)
        n = len(starts)
        converting = rng.random(n) < b.p_convert
        missing = b.min_converting - int(converting.sum())
        if missing > 0:
            idle = np.flatnonzero(~converting)
            converting[rng.choice(idle, size=min(missing, len(idle)), replace=False)] = True
        # Users of one persona still differ in how deep they browse.
        views_extra = b.views_extra * float(rng.lognormal(0.0, ENGAGEMENT_SIGMA))
        counts = b.views_base + rng.poisson(views_extra, size=n)
        views = self._user_views(starts, counts, pools, trend_pool)
        drafts = [self._session(b, views[k], bool(converting[k])) for k in range(n)]
        # Sessions never overlap; if pushing them apart runs past the window, slide back.
        placed: list[int] = []
        previous_end = -(10**12)
        for k in range(n):
            s = max(int(starts[k]), previous_end + MIN_SESSION_GAP_S)
            placed.append(s)
            previous_end = s + drafts[k][-1][0]
        overflow = previous_end - (self.end_s - 1)
        if overflow > 0:
            placed = [s - overflow for s in placed]
        anonymous = 1 if rng.random() < _ANONYMOUS_FIRST_SESSION[user.persona] else 0
        anon_id = self.new_anonymous_id() if anonymous else None
        for k in range(n):
            channel = self._channel(user)
            if k < anonymous:
                channel = "mobile" if channel == "mobile" else "web"
            self._place(user, drafts[k], placed[k], channel, anon_id if k < anonymous else None)
        offline = int(rng.binomial(n, b.p_offline)) if b.p_offline else 0
        for _ in range(offline):
            members, cdf = pools[int(rng.integers(len(pools)))]
            item = int(_draw(members, cdf, rng.random(1))[0])
            if self.available[item]:
                ts = int(rng.integers(self.window_start_s, self.end_s - 3600))
                sid = self._new_session_id()
                self._emit(
                    ts, "purchase", user.id, None, item, sid, "offline", self._props(item, 1)
                )
        return placed[0]

    def _channel(self, user: DemoUser) -> str:
        rng = self.rng
        if user.newsletter and rng.random() < EMAIL_SESSION_SHARE:
            return "email"
        return "mobile" if rng.random() < user.mobile_share else "web"

    def _place(
        self,
        user: DemoUser,
        drafts: list[_Draft],
        start_s: int,
        channel: str,
        anon_id: str | None,
    ) -> None:
        sid = self._new_session_id()
        who: str | None = None if anon_id else user.id
        for offset, kind, item, props in drafts:
            if anon_id and who is None and kind == "purchase":
                # Logged-out shoppers sign in at checkout: identify just before paying.
                self._emit(
                    start_s + offset - 1, "identify", user.id, anon_id, -1, sid, channel, None
                )
                who = user.id
            if kind == "search":
                self._emit(
                    start_s + offset,
                    kind,
                    who,
                    None if who else anon_id,
                    -1,
                    sid,
                    channel,
                    {"query": self.query_for(item)},
                )
            else:
                self._emit(
                    start_s + offset, kind, who, None if who else anon_id, item, sid, channel, props
                )
        if anon_id and who is None:
            last = start_s + drafts[-1][0]
            self._emit(
                last + int(self.rng.integers(5, 60)),
                "identify",
                user.id,
                anon_id,
                -1,
                sid,
                channel,
                None,
            )

    def query_for(self, item: int) -> str:
        """A search query a shopper looking for ``item`` would plausibly type."""
        record = self.items[item].record
        attributes = record["attributes"]
        assert isinstance(attributes, dict)
        category = CATEGORIES[self.items[item].category].name.lower()
        form = int(self.rng.integers(4))
        if form == 0:
            return f"{attributes['color']} {category}"
        if form == 1:
            return f"{attributes['brand']} {category}".lower()
        if form == 2:
            return f"{self.items[item].style} {category}"
        return f"{attributes['material']} {category}"

    def simulate_bounce_visitors(self, n: int) -> None:
        """``n`` logged-out visitors with one short session who never sign in."""
        rng = self.rng
        members, cdf = self.global_pool
        for _ in range(n):
            anon_id = self.new_anonymous_id()
            sid = self._new_session_id()
            channel = "mobile" if rng.random() < 0.55 else "web"
            t = int(rng.integers(self.window_start_s, self.end_s - 3600))
            for item in _draw(members, cdf, rng.random(1 + int(rng.poisson(1.5)))).tolist():
                self._emit(t, "view", None, anon_id, item, sid, channel, None)
                t += int(rng.integers(10, 120))


def simulate(
    rng: np.random.Generator,
    items: list[DemoItem],
    users: list[DemoUser],
    window_start_s: int,
    end_s: int,
) -> SimulationResult:
    """Simulate every user plus bounce visitors; rows come back sorted by time."""
    sim = EventSimulator(rng, items, window_start_s, end_s)
    first_seen = {user.index: sim.simulate_user(user) for user in users}
    sim.simulate_bounce_visitors(round(BOUNCE_VISITOR_SHARE * len(users)))
    sim.rows.sort(key=lambda r: (r[0], r[1]))
    return SimulationResult(rows=sim.rows, n_sessions=sim.n_sessions, first_seen_s=first_seen)
