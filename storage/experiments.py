"""Experiment rows of both stores (migration 5): exposures and attributions.

Mixins of :class:`storage.sqlite.SQLiteStore` (:class:`ExperimentRows`) and
:class:`storage.postgres.PostgresStore` (:class:`PostgresExperimentRows`), kept in their own
module: plain SQL over each store's connection helpers. The store conformance suite runs the
same tests on both.

* ``experiment_exposures``: the first time a subject (a profile key) was served a variant of an
  experiment. The row is also the subject's sticky assignment: later evaluations keep it.
* ``experiment_attributions``: a click/add_to_cart/purchase that cited a served
  recommendation's id, with the strategy, source and variant that recommendation had.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple


class Attribution(NamedTuple):
    """One event attributed to one experiment's variant (experiment '' when none ran)."""

    message_id: str
    experiment: str
    variant: str
    subject: str
    type: str
    item_id: str | None
    strategy: str
    source: str
    revenue: float
    ts: float


@dataclass(frozen=True, slots=True)
class VariantCounts:
    """What one variant of an experiment collected. ``exposed``: subjects exposed;
    ``clickers``/``carters``/``purchasers``: exposed subjects with at least one attributed
    click / add_to_cart / purchase; ``clicks``: attributed click events; ``revenue``: every
    purchase (price x quantity) of exposed subjects from their first exposure on."""

    exposed: int = 0
    clickers: int = 0
    clicks: int = 0
    carters: int = 0
    purchasers: int = 0
    revenue: float = 0.0


_ATTRIBUTED = """
SELECT x.variant, a.type, COUNT(DISTINCT a.subject), COUNT(*)
FROM experiment_attributions a
JOIN experiment_exposures x
  ON x.experiment = a.experiment AND x.subject = a.subject AND x.variant = a.variant
WHERE a.experiment = ? AND a.ts >= x.first_at
GROUP BY x.variant, a.type
"""

_REVENUE = """
SELECT x.variant,
       SUM(COALESCE(json_extract(e.properties, '$.price'), 0)
           * COALESCE(json_extract(e.properties, '$.quantity'), 1))
FROM experiment_exposures x
JOIN events e ON e.profile_key = x.subject AND e.type = 'purchase' AND e.ts >= x.first_at
WHERE x.experiment = ?
GROUP BY x.variant
"""


class ExperimentRows:
    """Exposure and attribution methods; mixed into the SQLite store."""

    def _transaction(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        raise NotImplementedError  # the store's

    def _reader(self) -> sqlite3.Connection:
        raise NotImplementedError  # the store's

    def exposures_of(self, subject: str) -> dict[str, str]:
        """experiment -> variant the subject was first served (its sticky assignments)."""
        rows = self._reader().execute(
            "SELECT experiment, variant FROM experiment_exposures WHERE subject = ?", (subject,)
        )
        return {str(e): str(v) for e, v in rows}

    def record_exposures(self, rows: Sequence[tuple[str, str, str, float]]) -> int:
        """Insert (experiment, subject, variant, ts) rows; an existing (experiment, subject)
        keeps its first row. Returns how many were new."""

        def write(conn: sqlite3.Connection) -> int:
            before = conn.total_changes
            conn.executemany(
                "INSERT OR IGNORE INTO experiment_exposures (experiment, subject, variant, "
                "first_at) VALUES (?, ?, ?, ?)",
                rows,
            )
            return conn.total_changes - before

        return int(self._transaction(write)) if rows else 0

    def merge_exposures(self, source: str, target: str) -> int:
        """Move ``source``'s exposures to ``target`` (an identify: anonymous -> user). Where the
        target already has one for an experiment, the target's stays and the source's goes.
        Returns how many moved."""

        def write(conn: sqlite3.Connection) -> int:
            before = conn.total_changes
            conn.execute(
                "UPDATE OR IGNORE experiment_exposures SET subject = ? WHERE subject = ?",
                (target, source),
            )
            moved = conn.total_changes - before
            conn.execute("DELETE FROM experiment_exposures WHERE subject = ?", (source,))
            return moved

        return int(self._transaction(write)) if source != target else 0

    def forget_experiment_subjects(self, subjects: Iterable[str]) -> int:
        """Erasure: drop every exposure and attribution row of these subjects; returns how many
        rows went."""
        keys = [(s,) for s in subjects]

        def write(conn: sqlite3.Connection) -> int:
            before = conn.total_changes
            conn.executemany("DELETE FROM experiment_exposures WHERE subject = ?", keys)
            conn.executemany("DELETE FROM experiment_attributions WHERE subject = ?", keys)
            return conn.total_changes - before

        return int(self._transaction(write)) if keys else 0

    def record_attributions(self, rows: Sequence[Attribution]) -> int:
        """Insert attribution rows (a replayed event is ignored). Returns how many were new."""

        def write(conn: sqlite3.Connection) -> int:
            before = conn.total_changes
            conn.executemany(
                "INSERT OR IGNORE INTO experiment_attributions (message_id, experiment, variant, "
                "subject, type, item_id, strategy, source, revenue, ts) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            return conn.total_changes - before

        return int(self._transaction(write)) if rows else 0

    def attributions_by(self, experiment: str) -> list[tuple[str, str, str, str, int]]:
        """(variant, type, strategy, source, events) of one experiment's attributed events."""
        rows = self._reader().execute(
            "SELECT variant, type, strategy, source, COUNT(*) FROM experiment_attributions "
            "WHERE experiment = ? GROUP BY variant, type, strategy, source ORDER BY 1, 2, 3, 4",
            (experiment,),
        )
        return [(str(v), str(t), str(st), str(so), int(n)) for v, t, st, so, n in rows]

    def experiment_counts(self, experiment: str) -> dict[str, VariantCounts]:
        """variant -> what it collected (see :class:`VariantCounts`)."""
        conn = self._reader()
        fields: dict[str, dict[str, Any]] = {}
        for variant, n in conn.execute(
            "SELECT variant, COUNT(*) FROM experiment_exposures WHERE experiment = ? "
            "GROUP BY variant",
            (experiment,),
        ):
            fields.setdefault(str(variant), {})["exposed"] = int(n)
        names = {"click": "clickers", "add_to_cart": "carters", "purchase": "purchasers"}
        for variant, kind, users, events in conn.execute(_ATTRIBUTED, (experiment,)):
            slot = fields.setdefault(str(variant), {})
            if kind in names:
                slot[names[kind]] = int(users)
            if kind == "click":
                slot["clicks"] = int(events)
        for variant, revenue in conn.execute(_REVENUE, (experiment,)):
            fields.setdefault(str(variant), {})["revenue"] = float(revenue or 0.0)
        return {v: VariantCounts(**f) for v, f in sorted(fields.items())}


_REVENUE_PG = """
SELECT x.variant,
       SUM(COALESCE((e.properties::jsonb ->> 'price')::double precision, 0)
           * COALESCE((e.properties::jsonb ->> 'quantity')::double precision, 1))
FROM experiment_exposures x
JOIN events e ON e.profile_key = x.subject AND e.type = 'purchase' AND e.ts >= x.first_at
WHERE x.experiment = %s
GROUP BY x.variant
"""


class PostgresExperimentRows:
    """The same methods on the PostgreSQL store (``%s`` parameters, ``ON CONFLICT``, jsonb)."""

    def _transaction(self, fn: Callable[[Any], Any]) -> Any:
        raise NotImplementedError  # the store's

    def _all(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        raise NotImplementedError  # the store's

    def exposures_of(self, subject: str) -> dict[str, str]:
        rows = self._all(
            "SELECT experiment, variant FROM experiment_exposures WHERE subject = %s", (subject,)
        )
        return {str(e): str(v) for e, v in rows}

    def record_exposures(self, rows: Sequence[tuple[str, str, str, float]]) -> int:
        def write(conn: Any) -> int:
            new = 0
            for row in rows:
                new += conn.execute(
                    "INSERT INTO experiment_exposures (experiment, subject, variant, first_at) "
                    "VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
                    row,
                ).rowcount
            return new

        return int(self._transaction(write)) if rows else 0

    def merge_exposures(self, source: str, target: str) -> int:
        def write(conn: Any) -> int:
            moved = conn.execute(
                "UPDATE experiment_exposures s SET subject = %s WHERE s.subject = %s AND NOT "
                "EXISTS (SELECT 1 FROM experiment_exposures t WHERE t.subject = %s "
                "AND t.experiment = s.experiment)",
                (target, source, target),
            ).rowcount
            conn.execute("DELETE FROM experiment_exposures WHERE subject = %s", (source,))
            return int(moved)

        return int(self._transaction(write)) if source != target else 0

    def forget_experiment_subjects(self, subjects: Iterable[str]) -> int:
        keys = list(subjects)

        def write(conn: Any) -> int:
            gone = conn.execute(
                "DELETE FROM experiment_exposures WHERE subject = ANY(%s)", (keys,)
            ).rowcount
            gone += conn.execute(
                "DELETE FROM experiment_attributions WHERE subject = ANY(%s)", (keys,)
            ).rowcount
            return int(gone)

        return int(self._transaction(write)) if keys else 0

    def record_attributions(self, rows: Sequence[Attribution]) -> int:
        def write(conn: Any) -> int:
            new = 0
            for row in rows:
                new += conn.execute(
                    "INSERT INTO experiment_attributions (message_id, experiment, variant, "
                    "subject, type, item_id, strategy, source, revenue, ts) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                    tuple(row),
                ).rowcount
            return new

        return int(self._transaction(write)) if rows else 0

    def attributions_by(self, experiment: str) -> list[tuple[str, str, str, str, int]]:
        rows = self._all(
            "SELECT variant, type, strategy, source, COUNT(*) FROM experiment_attributions "
            "WHERE experiment = %s GROUP BY variant, type, strategy, source ORDER BY 1, 2, 3, 4",
            (experiment,),
        )
        return [(str(v), str(t), str(st), str(so), int(n)) for v, t, st, so, n in rows]

    def experiment_counts(self, experiment: str) -> dict[str, VariantCounts]:
        fields: dict[str, dict[str, Any]] = {}
        for variant, n in self._all(
            "SELECT variant, COUNT(*) FROM experiment_exposures WHERE experiment = %s "
            "GROUP BY variant",
            (experiment,),
        ):
            fields.setdefault(str(variant), {})["exposed"] = int(n)
        names = {"click": "clickers", "add_to_cart": "carters", "purchase": "purchasers"}
        for variant, kind, users, events in self._all(
            _ATTRIBUTED.replace("?", "%s"), (experiment,)
        ):
            slot = fields.setdefault(str(variant), {})
            if kind in names:
                slot[names[kind]] = int(users)
            if kind == "click":
                slot["clicks"] = int(events)
        for variant, revenue in self._all(_REVENUE_PG, (experiment,)):
            fields.setdefault(str(variant), {})["revenue"] = float(revenue or 0.0)
        return {v: VariantCounts(**f) for v, f in sorted(fields.items())}
