"""Conversion propensity: temporal training, no leakage, artifacts, and the demo world."""

from __future__ import annotations

import json
import random
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import sklearn
from sklearn.ensemble import HistGradientBoostingClassifier
from threadpoolctl import threadpool_limits

from profiles.events import validate_event
from profiles.state import DAY, ProfileState
from profiles.types import ProfileConfig
from recommend.conversion import (
    ConversionModel,
    ConversionModelNotFound,
    ConversionModelStore,
    InsufficientTrainingData,
    TreeEnsemble,
    TreeExportError,
    build_dataset,
    conversion_cutoffs,
    conversion_features,
    feature_names,
    train_conversion,
)
from storage.types import EventRecord
from tests.conftest import NOW

CONFIG = ProfileConfig()
CATS = {f"i{k}": (["Shoes", "Bags", "Dresses", "Coats"][k % 4],) for k in range(60)}


def categories(item_id: str) -> tuple[str, ...]:
    return CATS.get(item_id, ())


def _event(n: int, etype: str, user: str, ts: float, sid: str, item: str) -> EventRecord:
    props: dict[str, object] = {}
    if etype in ("add_to_cart", "purchase"):
        props = {"price": 40.0, "quantity": 1}
    return EventRecord(
        message_id=f"m{n}",
        type=etype,
        profile_key=user,
        ts=ts,
        received_at=ts,
        payload_hash="h",
        user_id=user,
        item_id=item,
        session_id=sid,
        channel="web",
        properties=props,
    )


def synthetic_log(seed: int, n_users: int = 300, days: int = 63) -> list[EventRecord]:
    """Sessions of views; a session with an add_to_cart is usually followed, 1-4 days later,
    by a purchase session. Users differ in how often they cart, so carting (recent, open) is
    the behavioural signal of an upcoming purchase."""
    rng = random.Random(seed)
    start = NOW - days * DAY
    rows: list[tuple[float, str, str, str, str]] = []
    for u in range(n_users):
        user = f"u{u:04d}"
        cart_p = rng.choice([0.02, 0.1, 0.4])
        t = start + rng.uniform(0, 10 * DAY)
        s = 0
        while t < NOW:
            sid = f"{user}-s{s}"
            s += 1
            for k in range(rng.randint(1, 5)):
                rows.append((t + k * 60, "view", user, sid, f"i{rng.randrange(60)}"))
            if rng.random() < cart_p:
                item = f"i{rng.randrange(60)}"
                rows.append((t + 400, "add_to_cart", user, sid, item))
                if rng.random() < 0.8:
                    bt = t + rng.uniform(1, 4) * DAY
                    rows.append((bt, "view", user, f"{sid}b", item))
                    rows.append((bt + 120, "purchase", user, f"{sid}b", item))
            t += rng.expovariate(1 / (6 * DAY))
    rows.sort()
    return [_event(n, e, u, ts, sid, i) for n, (ts, e, u, sid, i) in enumerate(rows)]


@pytest.fixture(scope="module")
def log() -> list[EventRecord]:
    return synthetic_log(7)


@pytest.fixture(scope="module")
def trained(log: list[EventRecord]) -> tuple[ConversionModel, dict[str, float]]:
    return train_conversion(
        log, horizon_days=7, config=CONFIG, categories=categories, now=NOW, n_cutoffs=6, seed=3
    )


def test_holdout_ranks_converters_and_beats_base_rate(
    log: list[EventRecord],
    trained: tuple[ConversionModel, dict[str, float]],
) -> None:
    model, metrics = trained
    assert metrics["roc_auc"] > 0.75
    assert metrics["brier"] < metrics["brier_base_rate"]
    assert metrics["pr_auc"] > metrics["base_rate"]
    assert 0.0 < metrics["base_rate"] < 1.0
    # One row per profile with an event before each cutoff; the last cutoff is the holdout.
    rows = [len({e.profile_key for e in log if e.ts < t}) for t in conversion_cutoffs(NOW, 7, 6)]
    assert (metrics["n_train"], metrics["n_holdout"]) == (sum(rows[:-1]), rows[-1])
    assert metrics["holdout_cutoff"] == NOW - 7 * DAY
    assert model.metrics == metrics


def test_open_cart_scores_higher_than_browsing(
    trained: tuple[ConversionModel, dict[str, float]],
) -> None:
    model, _ = trained
    browse, cart = ProfileState(), ProfileState()
    for n, (state, last) in enumerate(((browse, "view"), (cart, "add_to_cart"))):
        for k, etype in enumerate(["view", "view", last]):
            state.apply(
                _event(n * 10 + k, etype, "u", NOW - 3600 + k, "s", "i1"), CONFIG, categories
            )
    p_browse, p_cart = model.predict(browse, NOW), model.predict(cart, NOW)
    assert 0.0 <= p_browse < p_cart <= 1.0
    assert p_cart > 0.3


def test_features_at_cutoff_never_see_events_at_or_after_it() -> None:
    log = synthetic_log(5, n_users=80, days=35)
    cutoffs = conversion_cutoffs(NOW, 7, 4)
    t = cutoffs[1]
    # Loud future behaviour exactly at and after the cutoff for every user.
    users = sorted({e.profile_key for e in log if e.ts < t})
    future = [
        _event(10_000_000 + k, etype, u, t + k % 3, f"{u}-future", "i2")
        for k, (u, etype) in enumerate((u, e) for u in users for e in ("add_to_cart", "purchase"))
    ]
    before = [e for e in log if e.ts < t]
    after = [e for e in log if e.ts >= t]
    with_future = before + sorted(future + after, key=lambda e: e.ts)
    kw = dict(cutoffs=cutoffs, horizon_days=7, config=CONFIG, categories=categories)
    plain = build_dataset(log, **kw)  # type: ignore[arg-type]
    loud = build_dataset(with_future, **kw)  # type: ignore[arg-type]
    at_t = plain.cutoff_index == 1
    assert np.array_equal(plain.X[at_t], loud.X[loud.cutoff_index == 1])
    # ...while the labels at t do see the future purchases: every row becomes positive.
    assert loud.y[loud.cutoff_index == 1].all() and not plain.y[at_t].all()

    # And each snapshot equals a state built from only the events strictly before t.
    key = plain.profile_keys[int(np.flatnonzero(at_t)[0])]
    state = ProfileState()
    for e in log:
        if e.profile_key == key and e.ts < t:
            state.apply(e, CONFIG, categories)
    row = plain.X[np.flatnonzero(at_t)[0]]
    assert row.tolist() == [conversion_features(state, t, CONFIG)[n] for n in feature_names()]


def test_labels_are_purchases_within_the_horizon() -> None:
    t0 = NOW - 20 * DAY
    events = [
        _event(1, "view", "a", t0 - DAY, "s1", "i1"),
        _event(2, "view", "b", t0 - DAY, "s2", "i1"),
        _event(3, "view", "c", t0 - DAY, "s3", "i1"),
        _event(4, "purchase", "a", t0 + 6.9 * DAY, "s4", "i1"),  # inside [t0, t0 + 7d)
        _event(5, "purchase", "b", t0 + 7 * DAY, "s5", "i1"),  # at the window end: outside
        _event(6, "purchase", "c", t0 - 60, "s6", "i1"),  # before the cutoff: a feature
    ]
    events.sort(key=lambda e: e.ts)
    data = build_dataset(events, cutoffs=[t0], horizon_days=7, config=CONFIG, categories=categories)
    assert dict(zip(data.profile_keys, data.y.tolist(), strict=True)) == {"a": 1, "b": 0, "c": 0}
    assert data.X[data.profile_keys.index("c"), list(feature_names()).index("frequency")] == 1.0


def test_unordered_events_are_refused() -> None:
    events = [
        _event(1, "view", "a", NOW - DAY, "s", "i1"),
        _event(2, "view", "a", NOW - 2 * DAY, "s", "i1"),
    ]
    with pytest.raises(ValueError, match="timestamp order"):
        build_dataset(
            events, cutoffs=[NOW - 3 * DAY], horizon_days=7, config=CONFIG, categories=categories
        )


def test_too_short_log_is_insufficient() -> None:
    log = synthetic_log(1, n_users=30, days=5)
    with pytest.raises(InsufficientTrainingData):
        train_conversion(
            log, horizon_days=7, config=CONFIG, categories=categories, now=NOW, n_cutoffs=3, seed=0
        )


def test_deterministic_for_a_seed(
    log: list[EventRecord], trained: tuple[ConversionModel, dict[str, float]]
) -> None:
    again, metrics = train_conversion(
        log, horizon_days=7, config=CONFIG, categories=categories, now=NOW, n_cutoffs=6, seed=3
    )
    model, first = trained
    assert metrics == first
    for name in TreeEnsemble.ARRAYS:
        assert np.array_equal(getattr(again.trees, name), getattr(model.trees, name))


def test_exported_trees_match_sklearn() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(2000, 6))
    X[rng.random(X.shape) < 0.15] = np.nan
    y = ((np.nan_to_num(X[:, 0]) + np.isnan(X[:, 1]) + rng.normal(size=2000)) > 0.8).astype(int)
    with threadpool_limits(limits=1, user_api="openmp"):  # a busy shared machine: no contention
        clf = HistGradientBoostingClassifier(max_iter=60, random_state=0).fit(X, y)
        expected = clf.predict_proba(X)[:, 1]
    trees = TreeEnsemble.from_estimator(clf)
    mine = 1.0 / (1.0 + np.exp(-trees.raw(X)))
    assert np.allclose(mine, expected, rtol=0, atol=1e-9)


def test_save_load_round_trip(
    tmp_path: Path, log: list[EventRecord], trained: tuple[ConversionModel, dict[str, float]]
) -> None:
    model, metrics = trained
    model.save(tmp_path / "m")
    loaded = ConversionModel.load(tmp_path / "m")
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    assert manifest["horizon_days"] == 7 and manifest["feature_names"] == list(feature_names())
    assert manifest["metrics"] == metrics
    assert datetime.fromisoformat(manifest["trained_at"]).utcoffset() is not None
    assert not [p for p in (tmp_path / "m").iterdir() if p.name.startswith(".tmp")]

    recent = [e for e in log if e.ts >= NOW - 10 * DAY]
    states: dict[str, ProfileState] = {}
    for e in recent:
        states.setdefault(e.profile_key, ProfileState()).apply(e, CONFIG, categories)
    some = [states[k] for k in sorted(states)]
    X = np.vstack([[conversion_features(s, NOW, CONFIG)[n] for n in feature_names()] for s in some])
    assert np.array_equal(loaded.predict_proba(X), model.predict_proba(X))
    assert loaded.predict_many(some, NOW).tolist() == [model.predict(s, NOW) for s in some]
    assert loaded.config == CONFIG and loaded.horizon_days == 7


def test_store_versions(tmp_path: Path, trained: tuple[ConversionModel, dict[str, float]]) -> None:
    store = ConversionModelStore(tmp_path / "conversion")
    with pytest.raises(ConversionModelNotFound):
        store.latest()
    model, _ = trained
    first = store.write(replace(model))  # a copy: write() sets .version on its argument
    older = replace(model, horizon_days=14.0, version=None)
    second = store.write(older)
    assert (first, second) == ("v000001", "v000002")
    assert store.versions() == [first, second]
    assert store.latest().horizon_days == 14.0 and store.latest().version == second
    assert store.load(first).version == first
    assert (
        json.loads((tmp_path / "conversion" / first / "manifest.json").read_text())["version"]
        == first
    )
    with pytest.raises(ConversionModelNotFound):
        store.load("v000009")
    with pytest.raises(ConversionModelNotFound):
        store.load("../etc")


def _small_classifier() -> tuple[HistGradientBoostingClassifier, np.ndarray]:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(600, 4))
    X[rng.random(X.shape) < 0.2] = np.nan
    y = ((np.nan_to_num(X[:, 0]) + np.isnan(X[:, 2]) + rng.normal(size=600)) > 0.5).astype(int)
    with threadpool_limits(limits=1, user_api="openmp"):
        return HistGradientBoostingClassifier(max_iter=20, random_state=0).fit(X, y), X


def test_export_records_and_checks_its_scikit_learn(
    tmp_path: Path, trained: tuple[ConversionModel, dict[str, float]]
) -> None:
    model, _ = trained
    made = model.trees.provenance
    assert made["scikit-learn"] == sklearn.__version__
    assert made["checked_rows"] > model.metrics["n_train"] + model.metrics["n_holdout"]
    assert made["checked_max_abs_log_odds_diff"] <= 1e-9
    model.save(tmp_path / "m")
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    assert manifest["trees"] == made
    assert ConversionModel.load(tmp_path / "m").trees.provenance == made


def test_export_refuses_an_unverified_scikit_learn(monkeypatch: pytest.MonkeyPatch) -> None:
    clf, X = _small_classifier()
    monkeypatch.setattr(sklearn, "__version__", "1.10.0")
    with pytest.raises(TreeExportError, match=r"scikit-learn 1\.10\.0 is outside >=1\.4,<1\.10"):
        TreeEnsemble.from_estimator(clf, X)


@pytest.mark.parametrize("change", ["baseline", "missing", "threshold"])
def test_export_fails_when_the_internals_change_meaning(
    monkeypatch: pytest.MonkeyPatch, change: str
) -> None:
    """A scikit-learn whose private tree layout still reads but means something else (a
    different baseline, NaN routing, or split rule) must fail the export, not be served."""
    clf, _ = _small_classifier()
    read = TreeEnsemble._read_private

    def changed(cls: type[TreeEnsemble], c: HistGradientBoostingClassifier) -> TreeEnsemble:
        t = read(c)
        if change == "baseline":
            return replace(t, baseline=t.baseline + 1e-6)
        if change == "missing":
            return replace(t, missing_left=~t.missing_left)
        return replace(t, threshold=np.nextafter(t.threshold, -np.inf))  # x < threshold

    monkeypatch.setattr(TreeEnsemble, "_read_private", classmethod(changed))
    with pytest.raises(TreeExportError, match="disagree"):
        TreeEnsemble.from_estimator(clf)  # the probe rows alone catch it


def test_damaged_artifact_is_not_found(
    tmp_path: Path, trained: tuple[ConversionModel, dict[str, float]]
) -> None:
    model, _ = trained
    arrays = model.trees.arrays()
    outside = dict(arrays, left=np.full_like(arrays["left"], arrays["left"].shape[1]))
    shallow = dict(arrays, baseline_depth=np.asarray([model.trees.baseline, 1.0]))
    missing = {k: v for k, v in arrays.items() if k != "value"}
    for name, bad in (("outside", outside), ("shallow", shallow), ("missing", missing)):
        model.save(tmp_path / name)
        np.savez(tmp_path / name / "trees.npz", **bad)
        with pytest.raises(ConversionModelNotFound):
            ConversionModel.load(tmp_path / name)
    model.save(tmp_path / "features")
    doc = json.loads((tmp_path / "features" / "manifest.json").read_text())
    doc["feature_names"] = doc["feature_names"][:1]  # the trees split on later columns
    (tmp_path / "features" / "manifest.json").write_text(json.dumps(doc))
    with pytest.raises(ConversionModelNotFound, match="features"):
        ConversionModel.load(tmp_path / "features")


@pytest.mark.slow
def test_demo_world(tmp_path: Path) -> None:
    from demo.world import generate_world

    end = datetime(2026, 3, 1, tzinfo=UTC)
    world = generate_world(tmp_path / "world", seed=11, n_users=300, n_items=800, days=90, end=end)
    cats: dict[str, tuple[str, ...]] = {}
    for line in world.items_path.read_text().splitlines():
        item = json.loads(line)
        cats[item["id"]] = tuple(item.get("categories") or ())
    events = []
    for line in world.events_path.read_text().splitlines():
        raw = json.loads(line)
        events.append(validate_event(raw, received_at=end.timestamp()))
    events.sort(key=lambda e: e.ts)
    _, metrics = train_conversion(
        events,
        horizon_days=7,
        config=CONFIG,
        categories=lambda i: cats.get(i, ()),
        now=end.timestamp(),
        n_cutoffs=6,
        seed=0,
    )
    print("demo world conversion metrics:", metrics)
    assert metrics["roc_auc"] > 0.7
    assert metrics["brier"] < metrics["brier_base_rate"]
