"""The SQLite backend's own guarantees (the shared suite is in tests/store/test_base.py)."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import pytest

from gateway.store.base import StoreError
from gateway.store.migrations import migrate
from gateway.store.sqlite import SqliteStore
from tests.stores import rec


@pytest.fixture
async def store(tmp_path: Path) -> SqliteStore:
    s = SqliteStore(tmp_path / "consent.db")
    await s.open()
    await migrate(s)
    return s


async def test_wal_and_full_sync_on_the_store_connection(store: SqliteStore) -> None:
    try:
        mode = await store._run(lambda c: c.execute("PRAGMA journal_mode").fetchone()[0])
        sync = await store._run(lambda c: c.execute("PRAGMA synchronous").fetchone()[0])
        assert mode == "wal"
        assert sync == 2  # FULL
    finally:
        await store.close()


async def test_sqlite_runs_only_in_its_own_thread(store: SqliteStore) -> None:
    seen: list[str] = []
    loop_thread = threading.current_thread().name
    try:
        await store._run(lambda c: seen.append(threading.current_thread().name))
        await store.record(rec())
        await store._run(lambda c: seen.append(threading.current_thread().name))
        assert len(set(seen)) == 1
        assert seen[0].startswith("consent-store") and seen[0] != loop_thread
    finally:
        await store.close()


async def test_the_loop_stays_responsive_while_writing(store: SqliteStore) -> None:
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    loop = asyncio.get_running_loop()
    task = loop.create_task(ticker())
    try:
        await asyncio.gather(*(store.record(rec(at=float(i))) for i in range(20)))
        assert ticks > 20
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await store.close()


async def test_a_committed_record_is_in_the_file(store: SqliteStore, tmp_path: Path) -> None:
    try:
        written = await store.record(rec(at=7.0))
        # a second, independent connection sees it at once: committed, not buffered
        conn = sqlite3.connect(tmp_path / "consent.db")
        try:
            rows = conn.execute("SELECT id, subject FROM consent_records").fetchall()
        finally:
            conn.close()
        assert rows == [(written.id, "s1")]
    finally:
        await store.close()


async def test_unopenable_file_is_a_store_error(tmp_path: Path) -> None:
    s = SqliteStore(tmp_path / "missing-dir" / "consent.db")
    with pytest.raises(StoreError):
        await s.open()
    await s.close()


async def test_not_a_database_is_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "junk.db"
    path.write_bytes(b"this is not a database" * 100)
    s = SqliteStore(path)
    with pytest.raises(StoreError):
        await s.open()
    await s.close()


async def test_failed_record_rolls_back(store: SqliteStore) -> None:
    try:
        await store._run(lambda c: c.execute("DROP TABLE current_consent"))
        with pytest.raises(StoreError):
            await store.record(rec())
        # the record insert was rolled back with the failed upsert
        assert await store.history("s1") == []
        assert await store.ping()
    finally:
        await store.close()
