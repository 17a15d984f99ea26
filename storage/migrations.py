"""Versioned schema migrations for the SQLite store.

``MIGRATIONS[n]`` upgrades schema version ``n`` to ``n + 1`` (tracked in ``PRAGMA user_version``).
Migrations are append-only: never edit one that has shipped; add the next. Statements are
separated by ``;`` at the end of a line.
"""

from __future__ import annotations

MIGRATIONS: list[str] = [
    # 1: catalog, users, event log, identities, profiles, metadata
    """
    CREATE TABLE items (
        id TEXT PRIMARY KEY,
        title TEXT NOT NULL,
        description TEXT NOT NULL DEFAULT '',
        categories TEXT NOT NULL DEFAULT '[]',
        tags TEXT NOT NULL DEFAULT '[]',
        price REAL,
        currency TEXT NOT NULL DEFAULT 'EUR',
        available INTEGER NOT NULL DEFAULT 1,
        attributes TEXT NOT NULL DEFAULT '{}',
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE TABLE users (
        id TEXT PRIMARY KEY,
        traits TEXT NOT NULL DEFAULT '{}',
        consent_personalization INTEGER NOT NULL DEFAULT 1,
        consent_tracking INTEGER NOT NULL DEFAULT 1,
        updated_at REAL NOT NULL
    );
    CREATE TABLE events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        message_id TEXT NOT NULL UNIQUE,
        type TEXT NOT NULL,
        profile_key TEXT NOT NULL,
        ts REAL NOT NULL,
        received_at REAL NOT NULL,
        payload_hash TEXT NOT NULL,
        user_id TEXT,
        anonymous_id TEXT,
        item_id TEXT,
        session_id TEXT,
        channel TEXT NOT NULL,
        properties TEXT NOT NULL DEFAULT '{}',
        flags INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX events_profile_ts ON events(profile_key, ts);
    CREATE INDEX events_ts ON events(ts);
    CREATE INDEX events_item ON events(item_id);
    CREATE TABLE identities (
        anonymous_id TEXT PRIMARY KEY,
        user_id TEXT NOT NULL,
        linked_at REAL NOT NULL
    );
    CREATE INDEX identities_user ON identities(user_id);
    CREATE TABLE profiles (
        profile_key TEXT PRIMARY KEY,
        state TEXT NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE TABLE meta (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    )
    """,
    # 2: persisted (safelisted) GraphQL operations, registered by `tailor persisted-queries`
    """
    CREATE TABLE persisted_queries (
        sha256 TEXT PRIMARY KEY,
        query TEXT NOT NULL,
        name TEXT,
        registered_at REAL NOT NULL
    )
    """,
    # 3: API keys for server-to-server callers (only a SHA-256 of the secret is stored)
    """
    CREATE TABLE api_keys (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        scopes TEXT NOT NULL DEFAULT '',
        secret_hash TEXT NOT NULL,
        created_at REAL NOT NULL,
        revoked_at REAL
    )
    """,
    # 4: the erasure log: running gateways read it to apply erasures made by other processes
    # (caches, segments) and to refuse tokens issued before them. No identifier in clear:
    # ``subject`` is a keyed digest of the user id, ``sealed`` the profile keys encrypted with a
    # key derived from the gateway's secret. Rows older than the longest token lifetime go.
    """
    CREATE TABLE erasures (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        subject TEXT NOT NULL,
        sealed TEXT NOT NULL,
        erased_at REAL NOT NULL
    );
    CREATE INDEX erasures_at ON erasures(erased_at)
    """,
    # 5: experiments (storage/experiments.py): the first exposure of a subject (profile key) to
    # an experiment's variant (also its sticky assignment), and events attributed through a
    # served recommendation's id (one row per event and experiment; '' when none ran).
    """
    CREATE TABLE experiment_exposures (
        experiment TEXT NOT NULL,
        subject TEXT NOT NULL,
        variant TEXT NOT NULL,
        first_at REAL NOT NULL,
        PRIMARY KEY (experiment, subject)
    );
    CREATE INDEX experiment_exposures_subject ON experiment_exposures(subject);
    CREATE TABLE experiment_attributions (
        message_id TEXT NOT NULL,
        experiment TEXT NOT NULL,
        variant TEXT NOT NULL,
        subject TEXT NOT NULL,
        type TEXT NOT NULL,
        item_id TEXT,
        strategy TEXT NOT NULL,
        source TEXT NOT NULL,
        revenue REAL NOT NULL DEFAULT 0,
        ts REAL NOT NULL,
        PRIMARY KEY (message_id, experiment)
    );
    CREATE INDEX experiment_attributions_exp ON experiment_attributions(experiment, variant)
    """,
]
