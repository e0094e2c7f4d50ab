"""The consent stores as tests use them: fresh PostgreSQL schemas, raw SQL, the `backend`
and `store` fixtures (parametrized over SQLite and PostgreSQL) and a record maker.

Registered as a plugin in tests/conftest.py, so its fixtures reach every test without an
import. PostgreSQL tests use GATEWAY_TEST_PG_DSN, each in a fresh schema
`cg_test_<random>` (set as the pool's search_path) that is dropped afterwards. An
unreachable server is a FAILURE under CI (`CI=true`), a skip with a reason locally.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from gateway.config import DecisionLogConfig, LogWriter, StoreBackend
from gateway.store.base import ConsentRecord, ConsentStore
from gateway.store.migrations import latest_version, migrate
from gateway.store.postgres import PostgresStore
from gateway.store.sqlite import SqliteStore
from tests.conftest import PG_DSN

__all__ = [
    "Backend",
    "fresh_pg_schema",
    "pg_dsn_in",
    "pg_log_config",
    "pg_partitions",
    "pg_sql",
    "pg_store",
    "pg_unavailable",
    "rec",
    "sqlite_sql",
]


def pg_unavailable(reason: str) -> None:
    """Fail under CI (the suite must run against PostgreSQL there), skip locally."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"PostgreSQL is required under CI: {reason}")
    pytest.skip(f"PostgreSQL unavailable: {reason}")


@contextlib.asynccontextmanager
async def fresh_pg_schema() -> AsyncIterator[str]:
    """A fresh, empty schema for one test; dropped afterwards."""
    try:
        conn = await asyncpg.connect(PG_DSN, timeout=5)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        pg_unavailable(f"{PG_DSN}: {type(exc).__name__}: {exc}")
        raise AssertionError("unreachable") from exc
    schema = f"cg_test_{secrets.token_hex(6)}"
    try:
        await conn.execute(f"CREATE SCHEMA {schema}")
        yield schema
    finally:
        await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await conn.close()


@pytest.fixture(name="pg_schema")
async def pg_schema_fixture() -> AsyncIterator[str]:
    """A fresh schema for one test."""
    async with fresh_pg_schema() as schema:
        yield schema


def pg_dsn_in(schema: str) -> str:
    """GATEWAY_TEST_PG_DSN with `schema` first on the search path (asyncpg passes unknown
    DSN parameters on as server settings): what a gateway's config is given."""
    return f"{PG_DSN}{'&' if '?' in PG_DSN else '?'}search_path={schema}"


def pg_store(schema: str) -> PostgresStore:
    return PostgresStore(PG_DSN, server_settings={"search_path": schema})


async def pg_sql(schema: str, query: str, *args: Any) -> list[Any]:
    """Run `query` in `schema` on a connection of its own (to inspect or tamper by hand)."""
    conn = await asyncpg.connect(PG_DSN, server_settings={"search_path": schema})
    try:
        rows: list[Any] = await conn.fetch(query, *args)
        return rows
    finally:
        await conn.close()


def sqlite_sql(path: Path, query: str, *args: Any) -> list[Any]:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        return conn.execute(query, args).fetchall()
    finally:
        conn.close()


@dataclass
class Backend:
    """A store of one backend plus raw access to its database, for a test."""

    name: str
    make: Callable[[], ConsentStore]  # a new, unopened store on the same database
    sql: Callable[..., Awaitable[list[Any]]]  # sql(query, *args) -> rows (with $n / ? style)

    def q(self, query: str) -> str:
        """`query` written with `?` placeholders, in this backend's style."""
        if self.name == "sqlite":
            return query
        parts = query.split("?")
        out = parts[0]
        for i, part in enumerate(parts[1:], start=1):
            out += f"${i}{part}"
        return out


@pytest.fixture(name="backend", params=["sqlite", "postgres"])
async def backend_fixture(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    if request.param == "sqlite":
        path = tmp_path / "consent.db"

        async def sql_sqlite(query: str, *args: Any) -> list[Any]:
            return await asyncio.to_thread(sqlite_sql, path, query, *args)

        yield Backend("sqlite", lambda: SqliteStore(path), sql_sqlite)
    else:
        async with fresh_pg_schema() as schema:

            async def sql_pg(query: str, *args: Any) -> list[Any]:
                return await pg_sql(schema, query, *args)

            yield Backend("postgres", lambda: pg_store(schema), sql_pg)


@pytest.fixture(name="store")
async def store_fixture(backend: Backend) -> AsyncIterator[ConsentStore]:
    """An open, migrated store of each backend; closed afterwards."""
    s = backend.make()
    await s.open()
    try:
        assert await migrate(s) == latest_version(s.backend)
        yield s
    finally:
        await s.close()


def rec(subject: str = "s1", at: float = 1000.0, **purposes: bool) -> ConsentRecord:
    return ConsentRecord(
        subject=subject,
        purposes=purposes or {"analytics": True, "advertising": False},
        source="banner",
        policy_version=3,
        at=at,
        notice_hash="n" * 64,
        request_id=f"req-{at}",
    )


def pg_log_config(schema: str, **kw: object) -> DecisionLogConfig:
    """A PostgreSQL decision log in `schema`, its sinks in a thread, batches written fast."""
    args: dict[str, object] = {
        "backend": StoreBackend.POSTGRES,
        "postgres_dsn": pg_dsn_in(schema),
        "sqlite_path": None,
        "jsonl": None,
        "writer": LogWriter.THREAD,
        "batch_size": 50,
        "flush_interval": 0.01,
    }
    args.update(kw)
    return DecisionLogConfig(**args)  # type: ignore[arg-type]


async def pg_partitions(schema: str) -> list[str]:
    """The day partitions of the decision log in `schema`, by name."""
    rows = await pg_sql(
        schema,
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'cg_decisions' "
        "AND c.relnamespace = p.relnamespace AND p.relnamespace = "
        "(SELECT oid FROM pg_namespace WHERE nspname = current_schema()) ORDER BY 1",
    )
    return [r[0] for r in rows]
