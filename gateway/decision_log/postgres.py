"""The decision log on PostgreSQL (`decision_log.backend: postgres`): every instance's
records in one database, so any instance's admin page, API, live tail and
`consent-gateway logs` show the whole fleet.

```
DecisionLog ─▶ PostgresHost ─▶ COPY (one batch, one transaction) ─▶ cg_decisions
                             │                                     (a partition a day)
                             ├▶ NOTIFY cg_decisions:<schema> '<first id>,<last id>' ─▶ tails
                             ├▶ rollups upsert ─▶ cg_decision_rollups
                             └▶ a host of its own for the JSON-lines sink, if set
```

- Runs on the event loop: asyncpg encodes a batch in C and sends it with `COPY ... FROM
  STDIN (FORMAT binary)`; the loop's share is one call per batch, not per record.
- `cg_decisions` is partitioned by range of `ts`, one partition per UTC day
  (`cg_decisions_20261204`). A batch creates the partitions of its days that do not
  exist yet (under an advisory lock: instances starting a day together create it once).
  Retention drops whole partitions: no vacuum debt, no long delete.
- Ids come from one sequence, taken for the whole batch before the COPY, so the batch's
  NOTIFY names its id range: a tail fetches exactly those rows, whichever instance wrote
  them, even though batches of several instances commit out of id order.
- Retention runs in one instance at a time (`pg_try_advisory_lock`; the others skip) and
  detaches a day `CONCURRENTLY` before dropping it, so no writer or reader waits on it.
- Errors are outages (`Outcome` with the error's class and SQLSTATE, never its message:
  PostgreSQL quotes rejected values in messages). The DSN is never logged.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import asyncpg
import orjson

from gateway.config import DecisionLogConfig
from gateway.decision_log.bypasses import MAX_ROWS, OVERFLOW, Seen
from gateway.decision_log.hosts import Host, Outcome, ProcessHost, Pruning, ThreadHost
from gateway.decision_log.record import DecisionRecord
from gateway.decision_log.rollups import COMPACT, COMPACTED, Cutoffs, Pruned, RollupRow
from gateway.decision_log.sinks import KIND_COLUMNS, sinks_for

__all__ = [
    "CHANNEL",
    "COLUMNS",
    "SCHEMA",
    "PostgresHost",
    "channel_for",
    "describe_error",
    "partition_name",
    "postgres_host",
]

CHANNEL: Final = "cg_decisions"
NAME: Final = "postgres"
#: advisory lock classes (`pg_*_advisory_*lock(class, hashtext(current_schema()))`: one
#: lock per schema, so deployments sharing a server do not wait for each other):
#: partition creation, retention
PARTITION_LOCK: Final = 0x6367_0001
RETENTION_LOCK: Final = 0x6367_0002
_LOCK: Final = "SELECT pg_advisory_xact_lock($1, hashtext(current_schema()))"
_TRY_SESSION_LOCK: Final = "SELECT pg_try_advisory_lock($1, hashtext(current_schema()))"
_UNLOCK: Final = "SELECT pg_advisory_unlock($1, hashtext(current_schema()))"
#: a partition an interrupted DETACH ... CONCURRENTLY left half detached
_DETACH_PENDING: Final = "SELECT inhdetachpending FROM pg_inherits WHERE inhrelid = to_regclass($1)"
DAY: Final = 86400

SCHEMA: Final = """
CREATE SEQUENCE IF NOT EXISTS cg_decisions_id_seq;
CREATE TABLE IF NOT EXISTS cg_decisions (
    id bigint NOT NULL,
    ts timestamptz NOT NULL,
    request_id text NOT NULL,
    action text NOT NULL,
    vendor text,
    endpoint text,
    missing text[] NOT NULL,
    sources jsonb NOT NULL,
    regime text,
    method text NOT NULL,
    host text NOT NULL,
    path text NOT NULL,
    stripped text[] NOT NULL,
    reason text NOT NULL,
    report_only boolean NOT NULL,
    instance text NOT NULL
) PARTITION BY RANGE (ts);
CREATE INDEX IF NOT EXISTS cg_decisions_ts ON cg_decisions (ts, id);
CREATE INDEX IF NOT EXISTS cg_decisions_id ON cg_decisions (id);
CREATE INDEX IF NOT EXISTS cg_decisions_vendor ON cg_decisions (vendor, action, ts);
CREATE TABLE IF NOT EXISTS cg_decision_rollups (
    minute bigint NOT NULL,
    vendor text NOT NULL,
    action text NOT NULL,
    missing text NOT NULL,
    regime text NOT NULL,
    n bigint NOT NULL,
    PRIMARY KEY (minute, vendor, action, missing, regime)
);
CREATE TABLE IF NOT EXISTS cg_decision_bypasses (
    source text NOT NULL,
    kind text NOT NULL,
    vendor text NOT NULL,
    host text NOT NULL,
    page text NOT NULL,
    count bigint NOT NULL,
    first_seen double precision NOT NULL,
    last_seen double precision NOT NULL,
    PRIMARY KEY (source, kind, vendor, host, page)
);
"""

#: `cg_decisions` columns a COPY fills, in order: the SQLite log's, and the instance
COLUMNS: Final = ("id", "ts", "request_id", *KIND_COLUMNS, "instance")

_ROLLUP_UPSERT: Final = """
INSERT INTO cg_decision_rollups (minute, vendor, action, missing, regime, n)
SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[])
ON CONFLICT (minute, vendor, action, missing, regime)
DO UPDATE SET n = cg_decision_rollups.n + excluded.n
"""
_BYPASS_UPSERT: Final = """
INSERT INTO cg_decision_bypasses AS b (source, kind, vendor, host, page, count, first_seen,
    last_seen)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT (source, kind, vendor, host, page) DO UPDATE SET count = b.count + excluded.count,
    first_seen = LEAST(b.first_seen, excluded.first_seen),
    last_seen = GREATEST(b.last_seen, excluded.last_seen)
"""
_PARTITIONS: Final = """
SELECT c.relname FROM pg_inherits AS i
JOIN pg_class AS c ON c.oid = i.inhrelid
JOIN pg_class AS p ON p.oid = i.inhparent
JOIN pg_namespace AS n ON n.oid = p.relnamespace
WHERE p.relname = 'cg_decisions' AND n.nspname = current_schema()
"""

_COMPACT: Final = COMPACT.format(table="cg_decision_rollups").replace("?", "$1")
_COMPACTED: Final = COMPACTED.format(table="cg_decision_rollups").replace("?", "$1")
_DRIVER_ERRORS: Final = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)


def channel_for(schema: str) -> str:
    """The NOTIFY channel of the log in `schema`: several may share a server."""
    return f"{CHANNEL}:{schema}"[:63]


def describe_error(e: BaseException) -> str:
    """An error as a log line may show it: its class and SQLSTATE, never its message."""
    state = getattr(e, "sqlstate", None)
    return f"{type(e).__name__}" + (f" (SQLSTATE {state})" if state else "")


def partition_name(day: int) -> str:
    """`cg_decisions_YYYYMMDD` for the UTC day starting at epoch second `day`."""
    return "cg_decisions_" + datetime.fromtimestamp(day, UTC).strftime("%Y%m%d")


def _day_of(name: str) -> int | None:
    try:
        parsed = datetime.strptime(name.removeprefix("cg_decisions_"), "%Y%m%d")
    except ValueError:
        return None
    return int(parsed.replace(tzinfo=UTC).timestamp())


def instance_name() -> str:
    """This instance, as its records name it: the host (a pod's name) and process id."""
    return f"{socket.gethostname()}:{os.getpid()}"[:128]


class PostgresHost:
    """The `Host` of a PostgreSQL decision log (module docstring), with `inner` running the
    other sinks the config names (JSON lines), if any."""

    keeps_sightings = True

    def __init__(self, cfg: DecisionLogConfig, inner: Host | None = None) -> None:
        assert cfg.postgres_dsn is not None, "the config requires a DSN for backend postgres"
        self._dsn = cfg.postgres_dsn
        self._inner = inner
        self.names: tuple[str, ...] = (NAME, *(inner.names if inner is not None else ()))
        self._pool: asyncpg.Pool | None = None
        self._opening = asyncio.Lock()
        #: days (epoch seconds at 00:00 UTC) whose partition is known to exist
        self._days: set[int] = set()
        self.instance = instance_name()
        self.channel = CHANNEL

    # -- lifecycle -------------------------------------------------------------------------

    async def open(self) -> list[Outcome]:
        out = [await self._try(self._connect)]
        if self._inner is not None:
            out += await self._inner.open()
        return out

    async def _connect(self) -> asyncpg.Pool:
        async with self._opening:
            if self._pool is not None:
                return self._pool
            pool = await asyncpg.create_pool(self._dsn, min_size=1, max_size=4, timeout=10)
            try:
                async with pool.acquire() as conn, conn.transaction():
                    await conn.execute(_LOCK, PARTITION_LOCK)
                    await conn.execute(SCHEMA)
                    names = [r[0] for r in await conn.fetch(_PARTITIONS)]
                    self.channel = channel_for(await conn.fetchval("SELECT current_schema()"))
            except BaseException:
                await pool.close()
                raise
            self._days = {d for d in map(_day_of, names) if d is not None}
            self._pool = pool
            return pool

    async def close(self) -> list[Outcome]:
        pool, self._pool = self._pool, None
        out = [Outcome(NAME)]
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), 10)
            except _DRIVER_ERRORS as e:
                pool.terminate()
                out = [Outcome(NAME, describe_error(e))]
        if self._inner is not None:
            out += await self._inner.close()
        return out

    async def _try(self, fn: Any) -> Outcome:
        try:
            await fn()
        except _DRIVER_ERRORS as e:
            # SECURITY: the class and state of the error only (see the module docstring).
            return Outcome(NAME, describe_error(e))
        return Outcome(NAME)

    # -- records ---------------------------------------------------------------------------

    async def write(self, records: Sequence[DecisionRecord]) -> list[Outcome]:
        out = [await self._try(lambda: self._copy(records))]
        if self._inner is not None:
            out += await self._inner.write(records)
        return out

    async def _copy(self, records: Sequence[DecisionRecord]) -> None:
        pool = await self._connect()
        if not records:
            return
        days = {int(r.ts) // DAY * DAY for r in records}
        async with pool.acquire() as conn:
            if missing := days - self._days:
                await self._create_days(conn, missing)
            async with conn.transaction():
                ids: list[int] = await conn.fetchval(
                    "SELECT array_agg(nextval('cg_decisions_id_seq')) FROM generate_series(1, $1)",
                    len(records),
                )
                await conn.copy_records_to_table(
                    "cg_decisions", records=self._rows(ids, records), columns=COLUMNS
                )
                # delivered at commit, to every instance's tail
                await conn.execute("SELECT pg_notify($1, $2)", self.channel, f"{ids[0]},{ids[-1]}")

    def _rows(
        self, ids: Sequence[int], records: Sequence[DecisionRecord]
    ) -> Iterable[tuple[Any, ...]]:
        instance = self.instance
        sources: dict[int, str] = {}  # one encoding per template (`record_for` shares them)
        for id_, r in zip(ids, records, strict=True):
            text = sources.get(id(r.sources))
            if text is None:
                text = sources[id(r.sources)] = orjson.dumps(dict(r.sources)).decode()
            yield (
                id_,
                datetime.fromtimestamp(r.ts, UTC),
                r.request_id,
                r.action,
                r.vendor,
                r.endpoint,
                list(r.missing),
                text,
                r.regime,
                r.method,
                r.host,
                r.path,
                list(r.stripped),
                r.reason,
                r.report_only,
                instance,
            )

    async def _create_days(self, conn: Any, days: Iterable[int]) -> None:
        async with conn.transaction():
            await conn.execute(_LOCK, PARTITION_LOCK)
            for day in sorted(days):
                start = datetime.fromtimestamp(day, UTC)
                await conn.execute(
                    f"CREATE TABLE IF NOT EXISTS {partition_name(day)} PARTITION OF cg_decisions "
                    f"FOR VALUES FROM ('{start.isoformat()}') "
                    f"TO ('{(start + timedelta(days=1)).isoformat()}')"
                )
        self._days.update(days)

    # -- sightings and rollups -------------------------------------------------------------

    async def write_sightings(self, seen: Sequence[Seen]) -> Outcome:
        return await self._try(lambda: self._sightings(seen))

    async def _sightings(self, seen: Sequence[Seen]) -> None:
        aggregated: dict[tuple[str, ...], list[float]] = {}
        for item in seen:
            s = item.sighting
            key = (s.source, s.kind, s.vendor or "", s.host, s.page)
            agg = aggregated.setdefault(key, [0, item.ts, item.ts])
            agg[0] += 1
            agg[1], agg[2] = min(agg[1], item.ts), max(agg[2], item.ts)
        pool = await self._connect()
        async with pool.acquire() as conn, conn.transaction():
            rows = int(await conn.fetchval("SELECT count(*) FROM cg_decision_bypasses"))
            known: set[tuple[str, ...]] = set()
            if rows >= MAX_ROWS:
                found = await conn.fetch(
                    "SELECT source, kind, vendor, host, page FROM cg_decision_bypasses "
                    "WHERE (source, kind, vendor, host, page) IN "
                    "(SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], "
                    "$5::text[]))",
                    *(list(c) for c in zip(*aggregated, strict=True)),
                )
                known = {tuple(r) for r in found}
            for row, (n, first, last) in sorted(aggregated.items()):
                if rows >= MAX_ROWS and row not in known:
                    # SECURITY: visitors choose hosts and pages; the table's size is ours.
                    row = (*row[:3], OVERFLOW, OVERFLOW)
                await conn.execute(_BYPASS_UPSERT, *row, int(n), first, last)

    async def write_rollups(self, rows: Sequence[RollupRow]) -> Outcome:
        return await self._try(lambda: self._rollups(rows))

    async def _rollups(self, rows: Sequence[RollupRow]) -> None:
        if not rows:
            return
        # sorted: two instances adding the same keys lock them in the same order
        columns = [list(c) for c in zip(*sorted(rows), strict=True)]
        pool = await self._connect()
        async with pool.acquire() as conn:
            await conn.execute(_ROLLUP_UPSERT, *columns)

    # -- retention -------------------------------------------------------------------------

    async def prune(self, cut: Cutoffs) -> Pruning:
        pruned = Pruned()

        async def run() -> None:
            nonlocal pruned
            pruned = await self._prune(cut)

        return await self._try(run), pruned

    async def _prune(self, cut: Cutoffs) -> Pruned:
        pool = await self._connect()
        async with pool.acquire() as conn:
            # A session lock, not a transaction's: DETACH ... CONCURRENTLY runs outside one.
            if not await conn.fetchval(_TRY_SESSION_LOCK, RETENTION_LOCK):
                return Pruned(skipped=True)  # another instance is at it
            try:
                return await self._prune_locked(conn, cut)
            finally:
                await conn.execute(_UNLOCK, RETENTION_LOCK)

    async def _prune_locked(self, conn: Any, cut: Cutoffs) -> Pruned:
        names = [r[0] for r in await conn.fetch(_PARTITIONS)]
        days = sorted(d for d in map(_day_of, names) if d is not None)
        expired = [d for d in days if d + DAY <= cut.records]
        records = 0
        for day in expired:
            name = partition_name(day)
            # The planner's estimate: counting a day of rows would read them all. A table
            # never analysed (-1) is one autovacuum never saw: a small one.
            estimate = await conn.fetchval(
                "SELECT reltuples::bigint FROM pg_class WHERE oid = to_regclass($1)", name
            )
            if estimate is None or estimate < 0:
                estimate = await conn.fetchval(f"SELECT count(*) FROM {name}")
            records += int(estimate)
            # Detached first, without the lock on the whole table that DROP takes: writers
            # and readers of today's partition never queue behind the retention run.
            pending = await conn.fetchval(_DETACH_PENDING, name)
            how = "FINALIZE" if pending else "CONCURRENTLY"
            await conn.execute(f"ALTER TABLE cg_decisions DETACH PARTITION {name} {how}")
            await conn.execute(f"DROP TABLE {name}")
            self._days.discard(day)
        status = await conn.execute(
            "DELETE FROM cg_decision_rollups WHERE minute < $1", cut.rollups
        )
        await conn.execute("DELETE FROM cg_decision_bypasses WHERE last_seen < $1", cut.records)
        async with conn.transaction():
            await conn.execute(_COMPACT, cut.hours)
            compacted = await conn.execute(_COMPACTED, cut.hours)
        return Pruned(
            records,
            _count(status),
            len(expired),
            compacted=_count(compacted),
        )


def _count(status: str) -> int:
    """The row count of a command's status (`DELETE 12`)."""
    return int(status.rsplit(" ", 1)[1])


def postgres_host(cfg: DecisionLogConfig) -> PostgresHost:
    """The PostgreSQL host, with the JSON-lines sink run where `cfg.writer` says."""
    inner: Host | None = None
    if sinks_for(cfg):  # only JSON lines: sinks_for leaves SQLite out for this backend
        inner = ProcessHost(cfg) if cfg.writer == "process" else ThreadHost(cfg)
    return PostgresHost(cfg, inner)
