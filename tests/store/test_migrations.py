"""Schema migrations (gateway.store.migrations), against both backends."""

from __future__ import annotations

import asyncio

import pytest

from gateway.store.base import StoreError
from gateway.store.migrations import (
    POSTGRES_STEPS,
    SQLITE_STEPS,
    Migration,
    latest_version,
    migrate,
    steps_for,
)
from tests.stores import Backend, rec


@pytest.mark.parametrize("steps", [SQLITE_STEPS, POSTGRES_STEPS], ids=["sqlite", "postgres"])
def test_steps_are_contiguous_from_one(steps: tuple[Migration, ...]) -> None:
    assert [s.version for s in steps] == list(range(1, len(steps) + 1))
    assert all(s.statements and s.description for s in steps)


def test_latest_version_and_unknown_backend() -> None:
    assert latest_version("sqlite") == SQLITE_STEPS[-1].version
    assert latest_version("postgres") == POSTGRES_STEPS[-1].version
    with pytest.raises(ValueError):
        steps_for("mysql")


async def test_migrate_is_idempotent(backend: Backend) -> None:
    store = backend.make()
    await store.open()
    try:
        assert await store.schema_version() == 0
        latest = latest_version(store.backend)
        assert await migrate(store) == latest
        written = await store.record(rec(at=1.0))
        assert await migrate(store) == latest  # nothing to do, nothing lost
        assert await store.history("s1") == [written]
        # a step already applied is refused without touching anything
        assert await store.apply_migration(steps_for(store.backend)[0]) is False
    finally:
        await store.close()


async def test_concurrent_migrations_apply_each_step_once(backend: Backend) -> None:
    a, b = backend.make(), backend.make()
    await a.open()
    await b.open()
    try:
        versions = await asyncio.gather(migrate(a), migrate(b))
        assert list(versions) == [latest_version(a.backend)] * 2
    finally:
        await a.close()
        await b.close()


async def test_a_newer_schema_is_refused(backend: Backend) -> None:
    store = backend.make()
    await store.open()
    try:
        await migrate(store)
    finally:
        await store.close()
    newer = latest_version(store.backend) + 1
    if backend.name == "sqlite":
        await backend.sql(f"PRAGMA user_version = {newer}")
    else:
        await backend.sql(backend.q("UPDATE schema_version SET version = ?"), newer)
    refused = backend.make()
    with pytest.raises(StoreError, match="newer"):
        await refused.open()
    assert await refused.ping() is False  # nothing left open
    await refused.close()


async def test_migrate_refuses_a_schema_that_became_newer(backend: Backend) -> None:
    store = backend.make()
    await store.open()
    try:
        await migrate(store)
        newer = latest_version(store.backend) + 1
        if backend.name == "sqlite":
            await backend.sql(f"PRAGMA user_version = {newer}")
        else:
            await backend.sql(backend.q("UPDATE schema_version SET version = ?"), newer)
        with pytest.raises(StoreError, match="newer"):
            await migrate(store)
    finally:
        await store.close()
