"""Versioned schema migrations for the consent store, one ordered list per backend.

- Version N is reached by applying steps 1..N in order; each step runs in one transaction
  together with recording its version (SQLite: `PRAGMA user_version`; PostgreSQL: the
  one-row `schema_version` table), so a crash leaves the schema at a whole version.
- `migrate(store)` applies the pending steps and returns the version reached; running it
  again does nothing. Two processes migrating at once are safe: each step re-checks the
  version inside its transaction (SQLite: `BEGIN IMMEDIATE`; PostgreSQL: an advisory lock).
- `ConsentStore.open` refuses a schema newer than `latest_version(backend)`.
- Steps are only ever appended; a released step is never edited.
- No table holds an IP address or a user agent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from gateway.config import StoreBackend, StoreConfig
from gateway.store.base import ConsentStore, StoreError

__all__ = [
    "POSTGRES_STEPS",
    "SQLITE_STEPS",
    "Migration",
    "latest_version",
    "migrate",
    "new_store",
    "open_store",
    "schema_behind",
    "steps_for",
]


@dataclass(frozen=True, slots=True)
class Migration:
    """One schema step: the version it brings the schema to, and its SQL statements."""

    version: int
    description: str
    statements: tuple[str, ...]


_VENDORS_DOC = "vendor answers (a visitor's choice vendor by vendor) beside the purposes"
_VENDOR_TABLES = ("consent_records", "current_consent", "consent_changes")
_CHANGES_DOC = "change feed (cache propagation, webhook outbox) and webhook cursors"

SQLITE_STEPS: Final[tuple[Migration, ...]] = (
    Migration(
        1,
        "consent records, current state, store metadata",
        (
            """CREATE TABLE consent_records (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                subject TEXT NOT NULL,
                purposes TEXT NOT NULL,
                source TEXT NOT NULL,
                policy_version INTEGER NOT NULL,
                at REAL NOT NULL,
                notice_hash TEXT,
                request_id TEXT
            )""",
            "CREATE INDEX consent_records_subject ON consent_records (subject, at, id)",
            """CREATE TABLE current_consent (
                subject TEXT PRIMARY KEY,
                purposes TEXT NOT NULL,
                policy_version INTEGER NOT NULL,
                at REAL NOT NULL,
                source TEXT NOT NULL,
                record_id INTEGER NOT NULL
            )""",
            "CREATE TABLE store_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        ),
    ),
    Migration(
        2,
        _CHANGES_DOC,
        (
            """CREATE TABLE consent_changes (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                event_id TEXT NOT NULL UNIQUE,
                kind TEXT NOT NULL,
                subject TEXT NOT NULL,
                token TEXT,
                purposes TEXT NOT NULL,
                policy_version INTEGER NOT NULL,
                at REAL NOT NULL,
                source TEXT NOT NULL,
                record_id INTEGER,
                created REAL NOT NULL
            )""",
            "CREATE INDEX consent_changes_subject ON consent_changes (subject)",
            """CREATE TABLE webhook_cursors (
                endpoint TEXT PRIMARY KEY,
                last_seq INTEGER NOT NULL,
                attempts INTEGER NOT NULL DEFAULT 0,
                next_attempt REAL NOT NULL DEFAULT 0,
                last_error TEXT,
                last_success REAL,
                delivered INTEGER NOT NULL DEFAULT 0,
                lease_owner TEXT,
                lease_until REAL NOT NULL DEFAULT 0
            )""",
        ),
    ),
    Migration(
        3,
        "index erasure changes by token (an erased subject's old cookie stays out of force)",
        ("CREATE INDEX consent_changes_token ON consent_changes (token) WHERE token IS NOT NULL",),
    ),
    Migration(
        4,
        _VENDORS_DOC,
        tuple(
            f"ALTER TABLE {table} ADD COLUMN vendors TEXT NOT NULL DEFAULT '{{}}'"
            for table in _VENDOR_TABLES
        ),
    ),
)


POSTGRES_STEPS: Final[tuple[Migration, ...]] = (
    Migration(
        1,
        "consent records, current state, store metadata",
        (
            """CREATE TABLE consent_records (
                id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                subject TEXT NOT NULL,
                purposes JSONB NOT NULL,
                source TEXT NOT NULL,
                policy_version INTEGER NOT NULL,
                at DOUBLE PRECISION NOT NULL,
                notice_hash TEXT,
                request_id TEXT
            )""",
            "CREATE INDEX consent_records_subject ON consent_records (subject, at, id)",
            """CREATE TABLE current_consent (
                subject TEXT PRIMARY KEY,
                purposes JSONB NOT NULL,
                policy_version INTEGER NOT NULL,
                at DOUBLE PRECISION NOT NULL,
                source TEXT NOT NULL,
                record_id BIGINT NOT NULL
            )""",
            "CREATE TABLE store_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        ),
    ),
    Migration(
        2,
        _CHANGES_DOC,
        (
            """CREATE TABLE consent_changes (
                seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                event_id TEXT NOT NULL UNIQUE,
                kind TEXT NOT NULL,
                subject TEXT NOT NULL,
                token TEXT,
                purposes JSONB NOT NULL,
                policy_version INTEGER NOT NULL,
                at DOUBLE PRECISION NOT NULL,
                source TEXT NOT NULL,
                record_id BIGINT,
                created TIMESTAMPTZ NOT NULL DEFAULT now()
            )""",
            "CREATE INDEX consent_changes_subject ON consent_changes (subject)",
            """CREATE TABLE webhook_cursors (
                endpoint TEXT PRIMARY KEY,
                last_seq BIGINT NOT NULL,
                attempts INTEGER NOT NULL DEFAULT 0,
                next_attempt DOUBLE PRECISION NOT NULL DEFAULT 0,
                last_error TEXT,
                last_success DOUBLE PRECISION,
                delivered BIGINT NOT NULL DEFAULT 0,
                lease_owner TEXT,
                lease_until DOUBLE PRECISION NOT NULL DEFAULT 0
            )""",
        ),
    ),
    Migration(
        3,
        "index erasure changes by token (an erased subject's old cookie stays out of force)",
        ("CREATE INDEX consent_changes_token ON consent_changes (token) WHERE token IS NOT NULL",),
    ),
    Migration(
        4,
        _VENDORS_DOC,
        tuple(
            f"ALTER TABLE {table} ADD COLUMN vendors JSONB NOT NULL DEFAULT '{{}}'::jsonb"
            for table in _VENDOR_TABLES
        ),
    ),
)


_STEPS: Final[dict[str, tuple[Migration, ...]]] = {
    "sqlite": SQLITE_STEPS,
    "postgres": POSTGRES_STEPS,
}


def steps_for(backend: str) -> tuple[Migration, ...]:
    """The ordered steps of `backend` ("sqlite" or "postgres"); ValueError if unknown."""
    try:
        return _STEPS[backend]
    except KeyError:
        raise ValueError(f"unknown store backend {backend!r}") from None


def latest_version(backend: str) -> int:
    """The schema version this code writes and reads for `backend`."""
    steps = steps_for(backend)
    return steps[-1].version if steps else 0


async def migrate(store: ConsentStore) -> int:
    """Apply the pending steps to an open `store`; returns the version reached.

    Raises StoreError if the schema is newer than this code knows or a step fails (that
    step is rolled back; the earlier ones stay).
    """
    steps = steps_for(store.backend)
    latest = latest_version(store.backend)
    current = await store.schema_version()
    if current > latest:
        raise StoreError(f"schema version {current} is newer than this code's {latest}")
    for step in steps:
        if step.version > current:
            await store.apply_migration(step)
    return await store.schema_version()


def new_store(cfg: StoreConfig) -> ConsentStore:
    """The configured backend, not yet open."""
    # imported here: the backends import this module for `Migration`
    from gateway.store.postgres import PostgresStore
    from gateway.store.sqlite import SqliteStore

    if cfg.backend == StoreBackend.POSTGRES:
        if not cfg.postgres_dsn:
            raise StoreError("store.backend is postgres but no DSN is set")
        return PostgresStore(cfg.postgres_dsn, max_size=cfg.postgres_pool_size)
    try:
        cfg.sqlite_path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"sqlite: cannot create the store's folder: {exc.strerror}") from exc
    return SqliteStore(cfg.sqlite_path)


async def schema_behind(store: ConsentStore) -> str | None:
    """Why an open `store` cannot be used until `consent-gateway migrate` has run, or
    None when its schema is current. (A newer schema is refused by `open` itself.)"""
    current, latest = await store.schema_version(), latest_version(store.backend)
    if current >= latest:
        return None
    return (
        f"the consent store's schema is at version {current}, this code needs {latest}:"
        " run `consent-gateway migrate`"
    )


async def open_store(cfg: StoreConfig) -> ConsentStore:
    """Open the configured store with its schema checked, as the gateway starts.

    An older schema is migrated when `cfg.migrate_on_start`, else refused with a pointer
    to `consent-gateway migrate`; a newer one is always refused (StoreError).
    """
    store = new_store(cfg)
    await store.open()
    try:
        behind = await schema_behind(store)
        if behind is not None:
            if not cfg.migrate_on_start:
                raise StoreError(behind)
            await migrate(store)
    except BaseException:
        await store.close()
        raise
    return store
