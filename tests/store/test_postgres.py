"""The PostgreSQL backend's own guarantees (the shared suite is in tests/store/test_base.py)."""

from __future__ import annotations

import asyncio

import pytest

from gateway.store.base import StoreError
from gateway.store.migrations import migrate
from gateway.store.postgres import PostgresStore
from tests.stores import pg_sql, pg_store, pg_unavailable, rec


def test_pool_bounds_are_validated() -> None:
    with pytest.raises(ValueError):
        PostgresStore("postgresql://x@127.0.0.1/y", min_size=0)
    with pytest.raises(ValueError):
        PostgresStore("postgresql://x@127.0.0.1/y", min_size=5, max_size=2)


async def test_unreachable_server_is_a_store_error_without_the_dsn() -> None:
    s = PostgresStore("postgresql://user:hunter2@127.0.0.1:1/db", timeout=2)
    with pytest.raises(StoreError) as info:
        await s.open()
    assert "hunter2" not in str(info.value)
    assert await s.ping() is False
    await s.close()


def test_unavailable_server_fails_under_ci_and_skips_locally(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception):
        pg_unavailable("down")
    monkeypatch.setenv("CI", "")
    with pytest.raises(pytest.skip.Exception):
        pg_unavailable("down")


async def test_pool_is_bounded_and_isolated_in_its_schema(pg_schema: str) -> None:
    s = pg_store(pg_schema)
    await s.open()
    try:
        await migrate(s)
        await asyncio.gather(*(s.record(rec("p", at=float(i))) for i in range(30)))
        assert 1 <= s._pool.get_size() <= 10
        rows = await pg_sql(pg_schema, "SELECT count(*) FROM consent_records")
        assert rows[0][0] == 30
        tables = await pg_sql(
            pg_schema,
            "SELECT table_name FROM information_schema.tables WHERE table_schema = $1"
            " ORDER BY table_name",
            pg_schema,
        )
        assert [t[0] for t in tables] == [
            "consent_changes",
            "consent_records",
            "current_consent",
            "schema_version",
            "store_meta",
            "webhook_cursors",
        ]
    finally:
        await s.close()


async def test_purposes_are_jsonb(pg_schema: str) -> None:
    s = pg_store(pg_schema)
    await s.open()
    try:
        await migrate(s)
        await s.record(rec(analytics=True, ads=False))
        rows = await pg_sql(
            pg_schema, "SELECT purposes->>'analytics', jsonb_typeof(purposes) FROM current_consent"
        )
        assert tuple(rows[0]) == ("true", "object")
    finally:
        await s.close()


async def test_failed_record_rolls_back(pg_schema: str) -> None:
    s = pg_store(pg_schema)
    await s.open()
    try:
        await migrate(s)
        await pg_sql(pg_schema, "DROP TABLE current_consent")
        with pytest.raises(StoreError):
            await s.record(rec())
        assert await s.history("s1") == []
        assert await s.ping()
    finally:
        await s.close()
