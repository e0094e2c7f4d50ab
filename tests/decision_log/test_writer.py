"""gateway.decision_log.writer: the queue and batch writer, its counting and its warnings,
against real temporary files."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from gateway.decision_log.query import MAX_QUERY_LIMIT, LogQuery, LogReader
from gateway.decision_log.record import DecisionRecord, record_for
from gateway.decision_log.sinks import SqliteSink
from gateway.decision_log.writer import DecisionLog
from gateway.metrics import Metrics
from gateway.model import ConsentValue, Decision
from tests.conftest import (
    PRIVACY_CASES,
    SECRETS,
    T0,
    log_config,
    log_lost,
    log_written,
    make_consent,
    make_record,
    secret_facts,
)


def all_records(db: Path) -> list[DecisionRecord]:
    return LogReader(db).records(LogQuery(limit=MAX_QUERY_LIMIT))


async def eventually(check: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)


async def test_submitted_records_are_all_written(tmp_path: Path, writer: str) -> None:
    metrics = Metrics()
    cfg = log_config(tmp_path, writer=writer, batch_size=17)
    dlog = DecisionLog(cfg, metrics)
    await dlog.start()
    records = [make_record(f"r{i}", ts=T0 + i) for i in range(250)]
    assert all(dlog.submit(r) for r in records)
    await dlog.close()
    assert dlog.depth == 0
    assert cfg.sqlite_path is not None
    stored = all_records(cfg.sqlite_path)
    assert [replace(r, id=None) for r in reversed(stored)] == records
    assert len({r.id for r in stored}) == 250
    assert log_written(metrics) == 250
    assert log_lost(metrics, "queue_full") == log_lost(metrics, "sink_error") == 0


async def test_writer_flushes_without_close(tmp_path: Path, writer: str) -> None:
    cfg = log_config(tmp_path, writer=writer, batch_size=100, flush_interval=0.02)
    dlog = DecisionLog(cfg, Metrics())
    await dlog.start()
    try:
        dlog.submit(make_record("lonely"))
        assert cfg.sqlite_path is not None
        db = cfg.sqlite_path
        await eventually(lambda: len(all_records(db)) == 1)
    finally:
        await dlog.close()


@pytest.fixture(params=["process", "thread"])
def writer(request: pytest.FixtureRequest) -> str:
    """Where the sinks run (`hosts`): every behaviour here holds for both."""
    value: str = request.param
    return value


@pytest.fixture
def batch_sizes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The sizes of the batches the SQLite sink is given, in order."""
    sizes: list[int] = []
    original = SqliteSink.write

    def spy(self: SqliteSink, records: Sequence[DecisionRecord]) -> None:
        sizes.append(len(records))
        original(self, records)

    monkeypatch.setattr(SqliteSink, "write", spy)
    return sizes


async def test_batches_respect_batch_size(tmp_path: Path, batch_sizes: list[int]) -> None:
    sizes = batch_sizes
    dlog = DecisionLog(log_config(tmp_path, writer="thread", batch_size=5), Metrics())
    for i in range(23):  # queued before start: the writer finds full batches waiting
        dlog.submit(make_record(f"r{i}"))
    await dlog.start()
    await dlog.close()
    assert sizes == [5, 5, 5, 5, 3]


async def test_a_full_batch_is_written_without_waiting_for_the_flush_interval(
    tmp_path: Path, batch_sizes: list[int]
) -> None:
    """The writer waits up to flush_interval for the rest of a batch, and no longer once
    it is full: with an hour's interval, full batches are written at once (and the
    remainder only on close, which does not wait out the interval either)."""
    sizes = batch_sizes
    dlog = DecisionLog(
        log_config(tmp_path, writer="thread", batch_size=4, flush_interval=3600.0), Metrics()
    )
    await dlog.start()
    for i in range(9):
        dlog.submit(make_record(f"r{i}"))
        await asyncio.sleep(0)  # the writer runs between submissions
    async with asyncio.timeout(10):
        while sizes != [4, 4]:
            await asyncio.sleep(0.01)
    async with asyncio.timeout(10):
        await dlog.close()
    assert sizes == [4, 4, 1]


async def test_full_queue_loses_and_counts(
    tmp_path: Path, writer: str, caplog: pytest.LogCaptureFixture
) -> None:
    metrics = Metrics()
    cfg = log_config(tmp_path, writer=writer, queue_size=3)
    dlog = DecisionLog(cfg, metrics)  # not started: nothing drains the queue
    with caplog.at_level(logging.WARNING, logger="gateway.decision_log.writer"):
        results = [dlog.submit(make_record(f"r{i}")) for i in range(8)]
        assert results == [True] * 3 + [False] * 5
        assert log_lost(metrics, "queue_full") == 5
        assert dlog.depth == 3
        warnings = [r for r in caplog.records if "queue full" in r.getMessage()]
        assert len(warnings) == 1, "the warning is rate-limited"
        await dlog.close()  # the accepted three are still written
    assert cfg.sqlite_path is not None
    assert [r.request_id for r in all_records(cfg.sqlite_path)] == ["r2", "r1", "r0"]
    assert log_written(metrics) == 3
    assert "4 records lost: queue full" in caplog.text  # the rest, reported at close


async def test_submit_never_blocks_on_a_stuck_writer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = threading.Event()
    original = SqliteSink.write

    def stuck(self: SqliteSink, records: Sequence[DecisionRecord]) -> None:
        release.wait(10)
        original(self, records)

    monkeypatch.setattr(SqliteSink, "write", stuck)
    metrics = Metrics()
    dlog = DecisionLog(log_config(tmp_path, writer="thread", queue_size=2, batch_size=1), metrics)
    await dlog.start()
    try:
        assert dlog.submit(make_record("taken"))
        await eventually(lambda: dlog.depth == 0)  # the writer holds it, blocked in its thread
        started = time.monotonic()
        results = [dlog.submit(make_record(f"r{i}")) for i in range(5)]
        assert time.monotonic() - started < 0.5
        assert results == [True, True, False, False, False]
        assert log_lost(metrics, "queue_full") == 3
    finally:
        release.set()
        await dlog.close()
    assert log_written(metrics) == 3


async def test_submit_after_close_is_counted(tmp_path: Path, writer: str) -> None:
    metrics = Metrics()
    dlog = DecisionLog(log_config(tmp_path, writer=writer), metrics)
    running = [dlog.running]
    await dlog.start()
    running.append(dlog.running)
    await dlog.close()
    running.append(dlog.running)
    assert running == [False, True, False]
    assert not dlog.submit(make_record("late"))
    assert log_lost(metrics, "closed") == 1
    with pytest.raises(RuntimeError):
        await dlog.start()


async def test_close_is_idempotent(tmp_path: Path, writer: str) -> None:
    metrics = Metrics()
    dlog = DecisionLog(log_config(tmp_path, writer=writer), metrics)
    await dlog.start()
    dlog.submit(make_record("one"))
    await asyncio.gather(dlog.close(), dlog.close())
    await dlog.close()
    assert log_written(metrics) == 1


async def test_close_without_start_or_records(tmp_path: Path, writer: str) -> None:
    cfg = log_config(tmp_path, writer=writer)
    dlog = DecisionLog(cfg, Metrics())
    await dlog.close()
    assert cfg.sqlite_path is not None
    assert not cfg.sqlite_path.exists()


async def test_close_drains_records_submitted_just_before(tmp_path: Path, writer: str) -> None:
    metrics = Metrics()
    # A long flush interval: only close's stop signal can end the writer's wait promptly.
    cfg = log_config(tmp_path, writer=writer, batch_size=7, flush_interval=60.0, queue_size=5000)
    dlog = DecisionLog(cfg, metrics)
    await dlog.start()
    await asyncio.sleep(0)  # the writer is now waiting for its first record
    for i in range(1000):
        assert dlog.submit(make_record(f"r{i}"))
    started = time.monotonic()
    await dlog.close()
    assert time.monotonic() - started < 30
    assert cfg.sqlite_path is not None
    assert len(all_records(cfg.sqlite_path)) == 1000
    assert log_written(metrics) == 1000


async def test_sink_failure_is_counted_and_the_writer_survives(
    tmp_path: Path, writer: str, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the database folder should be")
    db = blocker / "decisions.db"
    jsonl = tmp_path / "decisions.jsonl"
    metrics = Metrics()
    dlog = DecisionLog(
        log_config(tmp_path, writer=writer, sqlite_path=db, jsonl=str(jsonl)), metrics
    )

    def lines() -> int:
        return len(jsonl.read_bytes().splitlines()) if jsonl.exists() else 0

    with caplog.at_level(logging.WARNING, logger="gateway.decision_log.writer"):
        await dlog.start()  # the SQLite sink cannot open: logged, not raised
        try:
            for i in range(3):
                assert dlog.submit(make_record(f"first{i}", path="/p;u1=CONTENT"))
            await dlog.drain()
            assert lines() == 3
            assert log_lost(metrics, "sink_error") == 3
            blocker.unlink()  # the destination comes back: the next batch reopens it
            for i in range(2):
                assert dlog.submit(make_record(f"second{i}"))
        finally:
            await dlog.close()
    assert lines() == 5
    assert log_lost(metrics, "sink_error") == 3
    assert log_written(metrics) == 5 + 2  # counted per sink: JSONL got 5, SQLite 2
    assert [r.request_id for r in all_records(db)] == ["second1", "second0"]
    assert "sqlite sink failed" in caplog.text
    assert "first" not in caplog.text and "CONTENT" not in caplog.text


async def test_unexpected_sink_error_does_not_kill_the_writer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    calls = 0
    original = SqliteSink.write

    def flaky(self: SqliteSink, records: Sequence[DecisionRecord]) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("a bug")
        original(self, records)

    monkeypatch.setattr(SqliteSink, "write", flaky)
    metrics = Metrics()
    cfg = log_config(tmp_path, writer="thread")
    dlog = DecisionLog(cfg, metrics)
    await dlog.start()
    with caplog.at_level(logging.ERROR, logger="gateway.decision_log.writer"):
        dlog.submit(make_record("lost"))
        await eventually(lambda: log_lost(metrics, "sink_error") == 1)
        dlog.submit(make_record("kept"))
        await dlog.close()
    assert cfg.sqlite_path is not None
    assert [r.request_id for r in all_records(cfg.sqlite_path)] == ["kept"]
    assert "raised unexpectedly" in caplog.text


async def test_drain_waits_until_everything_accepted_is_written(
    tmp_path: Path, writer: str
) -> None:
    metrics = Metrics()
    cfg = log_config(tmp_path, writer=writer, batch_size=7)
    assert cfg.sqlite_path is not None
    dlog = DecisionLog(cfg, metrics)
    await dlog.drain()  # no writer yet: returns at once
    await dlog.start()
    try:
        for i in range(20):
            assert dlog.submit(make_record(f"r{i}", ts=T0 + i))
        await dlog.drain()
        assert dlog.depth == 0
        assert len(all_records(cfg.sqlite_path)) == 20
        assert log_written(metrics) == 20
        assert dlog.running  # drained, not closed: it takes more
        assert dlog.submit(make_record("later"))
    finally:
        await dlog.close()
    assert log_written(metrics) == 21


async def test_no_sinks_means_off(tmp_path: Path) -> None:
    metrics = Metrics()
    dlog = DecisionLog(log_config(tmp_path, sqlite_path=None, jsonl=None), metrics)
    assert not dlog.enabled
    await dlog.start()
    assert dlog.running
    assert dlog.submit(make_record("a"))
    assert dlog.depth == 0
    await dlog.close()
    assert log_written(metrics) == 0
    assert log_lost(metrics, "closed") == 0


async def test_nothing_secret_reaches_the_files(tmp_path: Path, writer: str) -> None:
    db = tmp_path / "data" / "decisions.db"
    jsonl = tmp_path / "data" / "decisions.jsonl"
    dlog = DecisionLog(
        log_config(tmp_path, writer=writer, sqlite_path=db, jsonl=str(jsonl)), Metrics()
    )
    await dlog.start()
    for case in PRIVACY_CASES:
        decision = case.values[0]
        assert isinstance(decision, Decision)
        dlog.submit(
            record_for(secret_facts(), decision, make_consent(analytics=ConsentValue.DENIED))
        )
    await dlog.close()
    assert len(all_records(db)) == len(PRIVACY_CASES)
    for f in db.parent.iterdir():
        data = f.read_bytes()
        for what, secret in SECRETS.items():
            assert secret.encode() not in data, f"{what} reached {f.name}"
