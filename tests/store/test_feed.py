"""Following the change feed (gateway.store.feed): every instance's cache learns of each
change: by polling on SQLite, by LISTEN/NOTIFY on PostgreSQL, and after a lost LISTEN
connection by resynchronising (nothing committed while deaf is lost)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from gateway.metrics import Metrics
from gateway.store.base import ConsentStore, CurrentConsent, StoreError
from gateway.store.cache import MISS, ConsentBook, ConsentCache
from gateway.store.feed import ChangeFollower
from gateway.store.migrations import migrate
from gateway.store.postgres import PostgresStore
from gateway.store.sqlite import SqliteStore
from tests.conftest import PG_DSN
from tests.stores import fresh_pg_schema, pg_store, rec


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


async def _until(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not cond():
            await asyncio.sleep(0.01)


def _purposes(book: ConsentBook, subject: str) -> object:
    state = book.cache.get(subject)
    return state.purposes if isinstance(state, CurrentConsent) else state


@contextlib.asynccontextmanager
async def _instances(
    make: Callable[[], ConsentStore], poll: float
) -> AsyncIterator[tuple[ConsentBook, ConsentBook, ChangeFollower]]:
    """Two "instances" on one database: A writes through its book, B follows the feed."""
    a_store, b_store = make(), make()
    await a_store.open()
    await migrate(a_store)
    await b_store.open()
    a = ConsentBook(a_store, ConsentCache(100, 600), Metrics())
    b = ConsentBook(b_store, ConsentCache(100, 600), Metrics())
    follower = ChangeFollower(b, poll)
    await follower.start()
    try:
        yield a, b, follower
    finally:
        await follower.close()
        for book in (a, b):
            await book.close()
            await book.store.close()


async def test_sqlite_instances_learn_of_changes_by_polling(tmp_path: Path) -> None:
    async with _instances(lambda: SqliteStore(tmp_path / "c.db"), poll=0.02) as (a, b, f):
        assert f.healthy and not f.listening
        # B has the subject cached as granted, from before
        await a.record(rec("s1", at=1.0, analytics=True))
        assert await b.lookup("s1") is not None
        await a.record(rec("s1", at=2.0, analytics=False))
        await _until(lambda: _purposes(b, "s1") == {"analytics": False})
        assert sample(b.metrics, "consent_gateway_consent_changes_applied_total", via="poll") >= 1
        # a subject B never looked up is cached too: its next request needs no lookup
        await a.erase("s1")
        await _until(lambda: _purposes(b, "s1") == {})


async def test_postgres_instances_hear_each_change_at_once() -> None:
    async with fresh_pg_schema() as schema:
        # a poll far beyond the deadline: only NOTIFY can deliver in time
        async with _instances(lambda: pg_store(schema), poll=60.0) as (a, b, f):
            assert f.healthy and f.listening
            await a.record(rec("s1", at=1.0, analytics=True))
            await _until(lambda: _purposes(b, "s1") == {"analytics": True}, timeout=5)
            await a.record(rec("s1", at=2.0, analytics=False))
            await _until(lambda: _purposes(b, "s1") == {"analytics": False}, timeout=5)
            await a.erase("s1")
            await _until(lambda: _purposes(b, "s1") == {}, timeout=5)
            assert (
                sample(b.metrics, "consent_gateway_consent_changes_applied_total", via="notify")
                == 3
            )
            assert f.seen == await a.store.last_seq()
            assert f.lag == 0.0  # listening: each change arrives as it commits


async def test_another_schema_is_not_heard() -> None:
    async with fresh_pg_schema() as one, fresh_pg_schema() as two:
        async with (
            _instances(lambda: pg_store(one), poll=60.0) as (a, _b, _f),
            _instances(lambda: pg_store(two), poll=60.0) as (a2, b2, _f2),
        ):
            await a.record(rec("s1", at=1.0))
            # The barrier: PostgreSQL delivers a session's notifications in commit order,
            # so once B2 has heard its own schema's later change it would have heard s1.
            await a2.record(rec("s2", at=2.0))
            await _until(lambda: b2.cache.get("s2") is not MISS)
            assert b2.cache.get("s1") is MISS


async def _terminate_listener(schema: str) -> int:
    conn = await asyncpg.connect(PG_DSN)
    try:
        return len(
            await conn.fetch(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE query LIKE 'LISTEN %' AND query LIKE $1",
                f"%{schema}%",
            )
        )
    finally:
        await conn.close()


async def test_a_lost_listener_reconnects_and_misses_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with fresh_pg_schema() as schema:
        async with _instances(lambda: pg_store(schema), poll=60.0) as (a, b, follower):
            store = b.store
            assert isinstance(store, PostgresStore)
            real_listen = store.listen
            refusals = 0
            deaf = asyncio.Event()

            async def listen(*args: Any) -> Any:
                nonlocal refusals
                if not deaf.is_set():
                    refusals += 1
                    raise StoreError("postgres: cannot connect to listen: (test)")
                return await real_listen(*args)

            monkeypatch.setattr(store, "listen", listen)
            assert await _terminate_listener(schema) == 1
            await _until(lambda: not follower.listening, timeout=5)
            # changes committed while B cannot listen
            for i in range(5):
                await a.record(rec(f"s{i}", at=1.0, analytics=bool(i % 2)))
            await _until(lambda: refusals >= 2, timeout=5)
            deaf.set()  # the server is back
            await _until(lambda: follower.listening, timeout=10)
            await _until(lambda: all(b.cache.get(f"s{i}") is not MISS for i in range(5)))
            assert [_purposes(b, f"s{i}") for i in range(5)] == [
                {"analytics": bool(i % 2)} for i in range(5)
            ]
            assert sample(b.metrics, "consent_gateway_consent_feed_reconnects_total") == 1
            # and it hears again
            await a.record(rec("after", at=1.0))
            await _until(lambda: b.cache.get("after") is not MISS, timeout=5)
            assert follower.healthy


async def test_close_is_prompt_and_idempotent(tmp_path: Path) -> None:
    async with _instances(lambda: SqliteStore(tmp_path / "c.db"), poll=30.0) as (_a, _b, f):
        async with asyncio.timeout(2):
            await f.close()
        await f.close()
        assert not f.healthy


async def test_start_preloads_the_newest_changes(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "c.db")
    await store.open()
    await migrate(store)
    for i in range(10):
        await store.record(rec(f"s{i}", at=1.0, analytics=i % 2 == 0))
    book = ConsentBook(store, ConsentCache(100, 600), Metrics())
    follower = ChangeFollower(book, 30.0, preload=4)
    await follower.start()
    try:
        # the four newest changes are known before any request; older ones are not
        assert [book.cache.get(f"s{i}") is MISS for i in range(10)] == [True] * 6 + [False] * 4
        assert _purposes(book, "s9") == {"analytics": False}
        assert (
            sample(book.metrics, "consent_gateway_consent_changes_applied_total", via="preload")
            == 4
        )
    finally:
        await follower.close()
        await book.close()
        await store.close()


async def test_lag_counts_from_the_last_complete_read_of_the_feed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = SqliteStore(tmp_path / "c.db")
    await store.open()
    await migrate(store)
    book = ConsentBook(store, ConsentCache(100, 600), Metrics())
    follower = ChangeFollower(book, 30.0)
    assert follower.lag == float("inf")  # never read
    await follower.start()
    try:
        assert 0 <= follower.lag < 30
        # pretend the last read was 100 s ago; a failing read keeps counting from it
        assert follower.synced_at is not None
        follower.synced_at -= 100
        real = store.changes_since

        async def down(*args: Any) -> Any:
            raise StoreError("sqlite: unreachable (test)")

        monkeypatch.setattr(store, "changes_since", down)
        await follower._safe_catch_up("poll")
        assert follower.lag >= 100
        monkeypatch.setattr(store, "changes_since", real)
        await follower.catch_up("poll")
        assert follower.lag < 100
    finally:
        await follower.close()
        await book.close()
        await store.close()
