"""The consent store (DESIGN §6): see gateway.store.base for the contract."""

from gateway.store.base import ConsentRecord, ConsentStore, CurrentConsent, StoreError
from gateway.store.migrations import latest_version, migrate
from gateway.store.postgres import PostgresStore
from gateway.store.sqlite import SqliteStore

__all__ = [
    "ConsentRecord",
    "ConsentStore",
    "CurrentConsent",
    "PostgresStore",
    "SqliteStore",
    "StoreError",
    "latest_version",
    "migrate",
]
