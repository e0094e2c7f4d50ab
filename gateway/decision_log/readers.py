"""One asynchronous way to read the decision log, whichever backend holds it.

`reader_for(cfg)` is what the admin page and `consent-gateway logs` read through:
`SqliteReader` runs `query.LogReader`'s synchronous queries in the default executor
(never on the event loop); `pg_query.PgLogReader` queries PostgreSQL. Both answer the
`Reader` protocol with the same types, and raise `LogUnavailable` for a log they cannot
read.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol, TypeVar

from gateway.config import DecisionLogConfig, StoreBackend
from gateway.decision_log.bypasses import Bypass
from gateway.decision_log.pg_query import PgLogReader
from gateway.decision_log.query import (
    DecisionCounts,
    LogQuery,
    LogReader,
    RecordGroup,
    UnknownHost,
    UnknownPath,
)
from gateway.decision_log.record import DecisionRecord
from gateway.decision_log.rollups_query import PurposeShare, Timeline, VendorShare

__all__ = ["Reader", "SqliteReader", "reader_for"]

T = TypeVar("T")


class Reader(Protocol):
    """The decision log's queries (see `query.LogReader` for what each answers)."""

    async def records(self, q: LogQuery) -> list[DecisionRecord]: ...
    async def counts(self, since: float | None = None) -> DecisionCounts: ...
    async def unknown_hosts(
        self, since: float | None = None, limit: int = 100
    ) -> list[UnknownHost]: ...
    async def unknown_paths(
        self, host: str, since: float | None = None, limit: int = 100
    ) -> list[UnknownPath]: ...
    async def bypasses(
        self, since: float | None = None, limit: int = 100, kind: str | None = None
    ) -> list[Bypass]: ...
    async def max_id(self) -> int: ...
    async def record(self, record_id: int) -> DecisionRecord | None: ...
    async def groups(self, q: LogQuery) -> list[RecordGroup]: ...
    async def timeline(self, since: float, until: float, buckets: int) -> Timeline: ...
    async def vendor_shares(self, since: float, until: float) -> list[VendorShare]: ...
    async def consent_shares(
        self, since: float, until: float, purposes: Sequence[str] = ()
    ) -> list[PurposeShare]: ...
    async def close(self) -> None: ...


class SqliteReader:
    """`LogReader` over the SQLite file at `path`, each query in the default executor."""

    def __init__(self, path: Path) -> None:
        self.sync = LogReader(path)

    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(None, fn, *args)

    async def records(self, q: LogQuery) -> list[DecisionRecord]:
        return await self._run(self.sync.records, q)

    async def counts(self, since: float | None = None) -> DecisionCounts:
        return await self._run(self.sync.counts, since)

    async def unknown_hosts(
        self, since: float | None = None, limit: int = 100
    ) -> list[UnknownHost]:
        return await self._run(self.sync.unknown_hosts, since, limit)

    async def unknown_paths(
        self, host: str, since: float | None = None, limit: int = 100
    ) -> list[UnknownPath]:
        return await self._run(self.sync.unknown_paths, host, since, limit)

    async def bypasses(
        self, since: float | None = None, limit: int = 100, kind: str | None = None
    ) -> list[Bypass]:
        return await self._run(self.sync.bypasses, since, limit, kind)

    async def max_id(self) -> int:
        return await self._run(self.sync.max_id)

    async def record(self, record_id: int) -> DecisionRecord | None:
        return await self._run(self.sync.record, record_id)

    async def groups(self, q: LogQuery) -> list[RecordGroup]:
        return await self._run(self.sync.groups, q)

    async def timeline(self, since: float, until: float, buckets: int) -> Timeline:
        return await self._run(self.sync.timeline, since, until, buckets)

    async def vendor_shares(self, since: float, until: float) -> list[VendorShare]:
        return await self._run(self.sync.vendor_shares, since, until)

    async def consent_shares(
        self, since: float, until: float, purposes: Sequence[str] = ()
    ) -> list[PurposeShare]:
        return await self._run(self.sync.consent_shares, since, until, purposes)

    async def close(self) -> None:
        return None  # a connection per query: nothing held


def reader_for(cfg: DecisionLogConfig) -> Reader | None:
    """The reader of the log `cfg` configures; None when nothing is stored to read back
    (no SQLite file with backend sqlite: a JSON-lines-only log, or none)."""
    if cfg.backend == StoreBackend.POSTGRES:
        assert cfg.postgres_dsn is not None, "the config requires a DSN for backend postgres"
        return PgLogReader(cfg.postgres_dsn)
    if cfg.sqlite_path is None:
        return None
    return SqliteReader(cfg.sqlite_path)
