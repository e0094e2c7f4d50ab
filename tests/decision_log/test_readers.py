"""gateway.decision_log.readers: one asynchronous reader per backend, and what a log
written through `DecisionLog` reads back on each (records, counts, rollups, retention)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.config import LogWriter, StoreBackend
from gateway.decision_log.pg_query import PgLogReader
from gateway.decision_log.query import LogQuery
from gateway.decision_log.readers import Reader, SqliteReader, reader_for
from gateway.decision_log.writer import DecisionLog
from gateway.metrics import Metrics
from tests.conftest import T0, log_config, make_record
from tests.stores import fresh_pg_schema, pg_log_config, pg_sql, sqlite_sql

MINUTE = int(T0) // 60 * 60


def test_reader_for_each_backend(tmp_path: Path) -> None:
    assert isinstance(reader_for(log_config(tmp_path)), SqliteReader)
    assert reader_for(log_config(tmp_path, sqlite_path=None, jsonl="-")) is None
    assert isinstance(reader_for(pg_log_config("s")), PgLogReader)


class Log:
    def __init__(
        self, log: DecisionLog, metrics: Metrics, reader: Reader, backend: str, where: str
    ) -> None:
        self.log, self.metrics, self.reader = log, metrics, reader
        self.backend, self.where = backend, where

    async def rollups(self) -> list[tuple[object, ...]]:
        sql = "SELECT minute, vendor, action, missing, regime, n FROM {} ORDER BY 1, 2, 3"
        if self.backend == "postgres":
            return [tuple(r) for r in await pg_sql(self.where, sql.format("cg_decision_rollups"))]
        return [tuple(r) for r in sqlite_sql(Path(self.where), sql.format("rollups"))]


@pytest.fixture(params=["sqlite", "postgres"])
async def log(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Log]:
    metrics = Metrics()
    if request.param == "sqlite":
        cfg = log_config(tmp_path, writer=LogWriter.THREAD, retention=30 * 86400.0)
        assert cfg.sqlite_path is not None
        dlog = DecisionLog(cfg, metrics)
        reader = reader_for(cfg)
        assert reader is not None
        await dlog.start()
        yield Log(dlog, metrics, reader, "sqlite", str(cfg.sqlite_path))
        await dlog.close()
        return
    async with fresh_pg_schema() as schema:
        cfg = pg_log_config(schema)
        assert cfg.backend == StoreBackend.POSTGRES
        dlog = DecisionLog(cfg, metrics)
        reader = reader_for(cfg)
        assert reader is not None
        await dlog.start()
        yield Log(dlog, metrics, reader, "postgres", schema)
        await dlog.close()
        await reader.close()


async def test_what_the_log_writes_its_reader_reads(log: Log) -> None:
    now = T0 + 10
    for i in range(3):
        log.log.submit(make_record(f"r{i}", ts=now + i))
    log.log.count(now, "google-analytics-4", "drop", frozenset({"analytics"}), "opt-in")
    log.log.count(now + 1, "google-analytics-4", "drop", frozenset({"analytics"}), "opt-in")
    log.log.count(now, "google-analytics-4", "forward", frozenset(), "opt-in")
    log.log.count(now, None, "reject", frozenset(), None)
    await log.log.drain()  # records written and rollups flushed
    got = await log.reader.records(LogQuery())
    assert [r.request_id for r in got] == ["r2", "r1", "r0"]
    assert (await log.reader.counts()).total == 3
    assert await log.rollups() == [
        (MINUTE, "", "reject", "", "", 1),
        (MINUTE, "google-analytics-4", "drop", "analytics", "opt-in", 2),
        (MINUTE, "google-analytics-4", "forward", "", "opt-in", 1),
    ]
    # a second flush adds to the same rows
    log.log.count(now, None, "reject", frozenset(), None)
    await log.log.drain()
    assert (await log.rollups())[0] == (MINUTE, "", "reject", "", "", 2)


async def test_retention_is_counted_in_metrics(log: Log) -> None:
    old = T0 - 40 * 86400
    log.log.submit(make_record("old", ts=old))
    log.log.submit(make_record("new", ts=T0))
    await log.log.drain()
    pruned = await log.log.prune(now=T0)
    assert pruned.records == 1 and not pruned.skipped
    assert [r.request_id for r in await log.reader.records(LogQuery())] == ["new"]
    value = log.metrics.registry.get_sample_value
    assert value("consent_gateway_decision_log_pruned_total", {"what": "records"}) == 1
    assert value("consent_gateway_decision_log_retention_runs_total", {"result": "done"}) == 2
    expected_partitions = 1 if log.backend == "postgres" else 0
    assert value("consent_gateway_decision_log_pruned_total", {"what": "partitions"}) == (
        expected_partitions
    )
