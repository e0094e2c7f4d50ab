"""Reading the decision log back from PostgreSQL: `PgLogReader`, and `PgTail`, the live
tail of every instance's records.

`PgLogReader` answers what `query.LogReader` answers over SQLite (the same `LogQuery`
filters, order and keyset paging, the same result types), asynchronously, on a small
pool of its own. Tables not created yet read as empty, like a SQLite file not written
yet; every other failure is `LogUnavailable`, naming the error's class and SQLSTATE only.

`PgTail` listens on `postgres.CHANNEL`: each committed batch announces its id range, and
the tail fetches those rows and hands them to its subscribers' queues (bounded, never
waited on: a slow subscriber misses records). It reconnects after a lost connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from types import MappingProxyType
from typing import Any, Final, TypeVar

import asyncpg

from gateway.decision_log.bypasses import Bypass
from gateway.decision_log.postgres import channel_for, describe_error
from gateway.decision_log.query import (
    DecisionCounts,
    GroupKey,
    LogQuery,
    RecordGroup,
    UnknownHost,
    UnknownPath,
    check_limit,
    record_of,
)
from gateway.decision_log.record import DecisionRecord
from gateway.decision_log.rollups_query import (
    PurposeShare,
    Timeline,
    VendorShare,
    consent_shares_of,
    consent_shares_query,
    timeline_of,
    timeline_query,
    vendor_shares_of,
    vendor_shares_query,
)
from gateway.errors import LogUnavailable

__all__ = ["PgLogReader", "PgTail", "record_from_pg"]

log = logging.getLogger(__name__)

T = TypeVar("T")

_SELECT: Final = (
    "SELECT id, extract(epoch FROM ts)::float8 AS ts, request_id, action, vendor, endpoint, "
    "missing, sources::text AS sources, regime, method, host, path, stripped, reason, "
    "report_only FROM cg_decisions"
)
_ROLLUPS: Final = "cg_decision_rollups"
_ERRORS: Final = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)
#: seconds between two attempts to reconnect a lost tail
_RETRY: Final = 2.0


def record_from_pg(row: Any) -> DecisionRecord:
    return record_of(row, tuple(row["missing"]), tuple(row["stripped"]))


def _where(q: LogQuery) -> tuple[list[str], list[object]]:
    """`q`'s conditions over `cg_decisions` (numbered placeholders) and their arguments."""
    where: list[str] = []
    args: list[object] = []
    for clause, value in (
        ("ts >= to_timestamp(${})", q.since),
        ("ts < to_timestamp(${})", q.until),
        ("vendor = ${}", q.vendor),
        ("action = ${}", q.action),
        ("regime = ${}", q.regime),
        ("id > ${}", q.after_id),
        ("(ts, id) < (SELECT ts, id FROM cg_decisions WHERE id = ${})", q.before_id),
        ("(ts, id) > (SELECT ts, id FROM cg_decisions WHERE id = ${})", q.newer_than_id),
        ("${} = ANY(missing)", q.purpose),
    ):
        if value is not None:
            args.append(value)
            where.append(clause.format(len(args)))
    g = q.group
    if g is not None:
        args += [g.vendor, g.endpoint, g.action, list(g.missing), g.reason]
        n = len(args)
        where.append(
            f"vendor IS NOT DISTINCT FROM ${n - 4} AND endpoint IS NOT DISTINCT FROM ${n - 3}"
            f" AND action = ${n - 2} AND missing = ${n - 1}::text[] AND reason = ${n}"
        )
    return where, args


class PgLogReader:
    """Read-only queries over the PostgreSQL decision log at `dsn` (module docstring)."""

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._pool: asyncpg.Pool | None = None
        self._opening = asyncio.Lock()

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    async def _run(self, fn: Callable[[Any], Awaitable[T]], empty: T) -> T:
        try:
            async with self._opening:
                if self._pool is None:
                    self._pool = await asyncpg.create_pool(
                        self._dsn, min_size=0, max_size=2, timeout=10
                    )
            async with self._pool.acquire() as conn:
                return await fn(conn)
        except asyncpg.UndefinedTableError:
            return empty  # no instance has written yet
        except _ERRORS as e:
            # SECURITY: never the DSN, never a message that may quote a value
            raise LogUnavailable(f"postgres decision log: {describe_error(e)}") from e

    async def records(self, q: LogQuery) -> list[DecisionRecord]:
        """As `LogReader.records`: newest first; `after_id` oldest first by id;
        `newer_than_id` oldest first by time, then id."""
        where, args = _where(q)
        sql = _SELECT
        if where:
            sql += " WHERE " + " AND ".join(where)
        if q.after_id is not None:
            sql += " ORDER BY id ASC"
        elif q.newer_than_id is not None:
            sql += " ORDER BY ts ASC, id ASC"
        else:
            sql += " ORDER BY ts DESC, id DESC"
        args.append(q.limit)
        sql += f" LIMIT ${len(args)}"

        async def run(conn: Any) -> list[DecisionRecord]:
            return [record_from_pg(r) for r in await conn.fetch(sql, *args)]

        return await self._run(run, [])

    async def record(self, record_id: int) -> DecisionRecord | None:
        async def run(conn: Any) -> DecisionRecord | None:
            row = await conn.fetchrow(_SELECT + " WHERE id = $1", record_id)
            return None if row is None else record_from_pg(row)

        return await self._run(run, None)

    async def groups(self, q: LogQuery) -> list[RecordGroup]:
        """As `LogReader.groups`: identical records grouped, the most recently seen first."""
        where, args = _where(replace(q, after_id=None, before_id=None, newer_than_id=None))
        args.append(q.limit)
        sql = (
            "SELECT vendor, endpoint, action, missing, reason, count(*) AS n, "
            "extract(epoch FROM min(ts))::float8 AS first, "
            "extract(epoch FROM max(ts))::float8 AS last FROM cg_decisions"
            + (" WHERE " + " AND ".join(where) if where else "")
            + " GROUP BY vendor, endpoint, action, missing, reason"
            f" ORDER BY last DESC, n DESC LIMIT ${len(args)}"
        )

        async def run(conn: Any) -> list[RecordGroup]:
            return [
                RecordGroup(
                    GroupKey(
                        r["vendor"],
                        r["endpoint"],
                        str(r["action"]),
                        tuple(r["missing"]),
                        str(r["reason"]),
                    ),
                    int(r["n"]),
                    float(r["first"]),
                    float(r["last"]),
                )
                for r in await conn.fetch(sql, *args)
            ]

        return await self._run(run, [])

    async def timeline(self, since: float, until: float, buckets: int) -> Timeline:
        (sql, args), lo, width, count = timeline_query(since, until, buckets, _ROLLUPS)
        return timeline_of(await self._rows(sql, args), lo, width, count)

    async def vendor_shares(self, since: float, until: float) -> list[VendorShare]:
        return vendor_shares_of(await self._rows(*vendor_shares_query(since, until, _ROLLUPS)))

    async def consent_shares(
        self, since: float, until: float, purposes: Sequence[str] = ()
    ) -> list[PurposeShare]:
        rows = await self._rows(*consent_shares_query(since, until, _ROLLUPS))
        return consent_shares_of(rows, purposes)

    async def _rows(self, sql: str, args: list[object]) -> list[Any]:
        """A statement written for SQLite (`?` placeholders, integer division of
        integers: PostgreSQL's too) run here."""
        parts = sql.split("?")
        numbered = parts[0] + "".join(f"${i}{part}" for i, part in enumerate(parts[1:], 1))

        async def run(conn: Any) -> list[Any]:
            return list(await conn.fetch(numbered, *args))

        return await self._run(run, [])

    async def counts(self, since: float | None = None) -> DecisionCounts:
        where = "WHERE ts >= to_timestamp($1)" if since is not None else ""
        args = [since] if since is not None else []

        async def run(conn: Any) -> DecisionCounts:
            pairs = await conn.fetch(
                f"SELECT vendor, action, count(*) AS n FROM cg_decisions {where} "
                "GROUP BY vendor, action",
                *args,
            )
            purposes = await conn.fetch(
                f"SELECT m, count(*) AS n FROM cg_decisions, unnest(missing) AS m {where} "
                "GROUP BY m",
                *args,
            )
            by_pair = {(r["vendor"], str(r["action"])): int(r["n"]) for r in pairs}
            return DecisionCounts(
                by_vendor_action=MappingProxyType(by_pair),
                by_purpose=MappingProxyType({str(r["m"]): int(r["n"]) for r in purposes}),
                total=sum(by_pair.values()),
            )

        return await self._run(run, DecisionCounts(MappingProxyType({}), MappingProxyType({}), 0))

    async def unknown_hosts(
        self, since: float | None = None, limit: int = 100
    ) -> list[UnknownHost]:
        check_limit(limit)
        window = " AND ts >= to_timestamp($2)" if since is not None else ""
        sql = (
            "SELECT host, count(*) AS n, extract(epoch FROM min(ts))::float8 AS first, "
            "extract(epoch FROM max(ts))::float8 AS last FROM cg_decisions "
            f"WHERE action = 'reject' AND vendor IS NULL{window} "
            "GROUP BY host ORDER BY n DESC, last DESC, host ASC LIMIT $1"
        )
        args = [limit, since] if since is not None else [limit]

        async def run(conn: Any) -> list[UnknownHost]:
            return [
                UnknownHost(str(r["host"]), int(r["n"]), float(r["first"]), float(r["last"]))
                for r in await conn.fetch(sql, *args)
            ]

        return await self._run(run, [])

    async def unknown_paths(
        self, host: str, since: float | None = None, limit: int = 100
    ) -> list[UnknownPath]:
        check_limit(limit)
        window = " AND ts >= to_timestamp($3)" if since is not None else ""
        sql = (
            "SELECT method, path, count(*) AS n FROM cg_decisions "
            f"WHERE action = 'reject' AND vendor IS NULL AND host = $2{window} "
            "GROUP BY method, path ORDER BY n DESC, method ASC, path ASC LIMIT $1"
        )
        args = [limit, host, since] if since is not None else [limit, host]

        async def run(conn: Any) -> list[UnknownPath]:
            return [
                UnknownPath(str(r["method"]), str(r["path"]), int(r["n"]))
                for r in await conn.fetch(sql, *args)
            ]

        return await self._run(run, [])

    async def bypasses(
        self, since: float | None = None, limit: int = 100, kind: str | None = None
    ) -> list[Bypass]:
        check_limit(limit)
        where: list[str] = []
        args: list[object] = [limit]
        for clause, value in (("last_seen >= ${}", since), ("kind = ${}", kind)):
            if value is not None:
                args.append(value)
                where.append(clause.format(len(args)))
        sql = (
            "SELECT source, kind, vendor, host, page, count, first_seen, last_seen "
            "FROM cg_decision_bypasses"
            + (" WHERE " + " AND ".join(where) if where else "")
            + " ORDER BY count DESC, last_seen DESC, host ASC, page ASC LIMIT $1"
        )

        async def run(conn: Any) -> list[Bypass]:
            return [
                Bypass(
                    str(r["source"]),
                    str(r["kind"]),
                    str(r["vendor"]) or None,
                    str(r["host"]),
                    str(r["page"]),
                    int(r["count"]),
                    float(r["first_seen"]),
                    float(r["last_seen"]),
                )
                for r in await conn.fetch(sql, *args)
            ]

        return await self._run(run, [])

    async def max_id(self) -> int:
        async def run(conn: Any) -> int:
            value = await conn.fetchval("SELECT max(id) FROM cg_decisions")
            return int(value) if value is not None else 0

        return await self._run(run, 0)


class PgTail:
    """Every instance's records as they are committed, for live tails (module docstring).

    Listens from the first `add` until `close`."""

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._queues: set[asyncio.Queue[DecisionRecord]] = set()
        self._task: asyncio.Task[None] | None = None
        #: connected and listening (tests wait for it before writing)
        self.listening = asyncio.Event()

    def add(self, q: asyncio.Queue[DecisionRecord]) -> None:
        self._queues.add(q)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="decision-tail")

    def discard(self, q: asyncio.Queue[DecisionRecord]) -> None:
        self._queues.discard(q)

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while True:
            try:
                await self._listen()
            except _ERRORS as e:
                log.warning("decision log tail: %s; reconnecting", describe_error(e))
            self.listening.clear()
            await asyncio.sleep(_RETRY)

    async def _listen(self) -> None:
        ranges: asyncio.Queue[tuple[int, int]] = asyncio.Queue()

        def heard(_conn: object, _pid: int, _channel: str, payload: str) -> None:
            first, _, last = payload.partition(",")
            with contextlib.suppress(ValueError):
                ranges.put_nowait((int(first), int(last)))

        conn = await asyncpg.connect(self._dsn, timeout=10)
        try:
            await conn.add_listener(
                channel_for(await conn.fetchval("SELECT current_schema()")), heard
            )
            self.listening.set()
            while True:
                first, last = await ranges.get()
                rows = await conn.fetch(
                    _SELECT + " WHERE id BETWEEN $1 AND $2 ORDER BY id", first, last
                )
                for row in rows:
                    record = record_from_pg(row)
                    for q in self._queues:
                        with contextlib.suppress(asyncio.QueueFull):
                            q.put_nowait(record)
        finally:
            with contextlib.suppress(*_ERRORS):
                await asyncio.wait_for(conn.close(), 5)
