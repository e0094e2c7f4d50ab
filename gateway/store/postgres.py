"""The PostgreSQL consent store: several gateway instances share one database.

- An asyncpg pool (min 1, max 10 connections by default) on the DSN given.
- `record` commits one transaction (the record and the current row) before it returns.
- Concurrent writers for one subject are safe: the current row is an upsert whose
  `WHERE excluded.at >= current_consent.at` is re-checked against the latest committed
  row, so the newest record by `at` always ends up current.
- Migrations take a transaction-scoped advisory lock, so instances starting together
  apply each step once.
- asyncpg's errors and OSError (connection refused, DNS) are mapped to StoreError here.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from typing import Any, ClassVar, Final, TypeVar

import asyncpg

from gateway.store.base import (
    ConsentRecord,
    ConsentStore,
    CurrentConsent,
    StoreError,
    dump_purposes,
    erasure_token,
    load_purposes,
)
from gateway.store.migrations import Migration, latest_version

__all__ = ["MIGRATION_LOCK_ID", "PostgresStore"]

T = TypeVar("T")

#: the pg_advisory_xact_lock key that serialises migrations ("cgstore1" as an int64).
MIGRATION_LOCK_ID: Final = 0x6367_7374_6F72_6531
_SALT_KEY: Final = "erasure_salt"
_DRIVER_ERRORS: Final = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)


class PostgresStore(ConsentStore):
    """A consent store in the PostgreSQL database at `dsn`.

    `server_settings` is passed to every pooled connection (e.g. a `search_path` to keep
    the tables in their own schema). The DSN never appears in error messages (it may
    carry a password).
    """

    backend: ClassVar[str] = "postgres"

    def __init__(
        self,
        dsn: str,
        *,
        min_size: int = 1,
        max_size: int = 10,
        server_settings: Mapping[str, str] | None = None,
        timeout: float = 10.0,
    ) -> None:
        if not 1 <= min_size <= max_size:
            raise ValueError("need 1 <= min_size <= max_size")
        self._dsn = dsn
        self._min_size = min_size
        self._max_size = max_size
        self._server_settings = dict(server_settings or {})
        self._timeout = timeout
        self._pool: Any = None  # asyncpg.Pool (untyped)

    # -- plumbing -------------------------------------------------------------------------

    async def _run(self, fn: Callable[[Any], Awaitable[T]]) -> T:
        pool = self._pool
        if pool is None:
            raise StoreError("the consent store is not open")
        try:
            async with pool.acquire(timeout=self._timeout) as conn:
                return await fn(conn)
        except _DRIVER_ERRORS as exc:
            raise StoreError(f"postgres: {type(exc).__name__}: {exc}") from exc

    async def _schema_version(self, conn: Any) -> int:
        exists = await conn.fetchval("SELECT to_regclass('schema_version') IS NOT NULL")
        if not exists:
            return 0
        version = await conn.fetchval("SELECT max(version) FROM schema_version")
        return 0 if version is None else int(version)

    # -- lifecycle ------------------------------------------------------------------------

    async def open(self) -> None:
        if self._pool is not None:
            return
        try:
            pool = await asyncpg.create_pool(
                self._dsn,
                min_size=self._min_size,
                max_size=self._max_size,
                server_settings=self._server_settings,
                timeout=self._timeout,
            )
        except _DRIVER_ERRORS as exc:
            # SECURITY: the DSN may hold a password: never quote it
            raise StoreError(f"postgres: cannot connect: {type(exc).__name__}") from exc
        self._pool = pool
        try:
            version = await self.schema_version()
            latest = latest_version(self.backend)
            if version > latest:
                raise StoreError(f"schema version {version} is newer than this code's {latest}")
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    # -- consent --------------------------------------------------------------------------

    async def record(self, rec: ConsentRecord) -> ConsentRecord:
        purposes = dump_purposes(rec.purposes)

        async def write(conn: Any) -> int:
            async with conn.transaction():
                rid = await conn.fetchval(
                    "INSERT INTO consent_records (subject, purposes, source, policy_version,"
                    " at, notice_hash, request_id) VALUES ($1, $2::jsonb, $3, $4, $5, $6, $7)"
                    " RETURNING id",
                    rec.subject,
                    purposes,
                    rec.source,
                    rec.policy_version,
                    float(rec.at),
                    rec.notice_hash,
                    rec.request_id,
                )
                # current follows the newest record by `at`; ties go to the later write
                await conn.execute(
                    "INSERT INTO current_consent (subject, purposes, policy_version, at,"
                    " source, record_id) VALUES ($1, $2::jsonb, $3, $4, $5, $6)"
                    " ON CONFLICT (subject) DO UPDATE SET purposes = excluded.purposes,"
                    " policy_version = excluded.policy_version, at = excluded.at,"
                    " source = excluded.source, record_id = excluded.record_id"
                    " WHERE excluded.at >= current_consent.at",
                    rec.subject,
                    purposes,
                    rec.policy_version,
                    float(rec.at),
                    rec.source,
                    rid,
                )
            return int(rid)

        return replace(rec, id=await self._run(write))

    async def current(self, subject: str) -> CurrentConsent | None:
        async def read(conn: Any) -> Any:
            return await conn.fetchrow(
                "SELECT purposes::text AS purposes, policy_version, at, source"
                " FROM current_consent WHERE subject = $1",
                subject,
            )

        row = await self._run(read)
        if row is None:
            return None
        return CurrentConsent(
            subject, load_purposes(row["purposes"]), row["policy_version"], row["at"], row["source"]
        )

    async def history(self, subject: str) -> list[ConsentRecord]:
        async def read(conn: Any) -> list[Any]:
            rows: list[Any] = await conn.fetch(
                "SELECT id, purposes::text AS purposes, source, policy_version, at,"
                " notice_hash, request_id FROM consent_records WHERE subject = $1"
                " ORDER BY at, id",
                subject,
            )
            return rows

        return [
            ConsentRecord(
                subject=subject,
                purposes=load_purposes(row["purposes"]),
                source=row["source"],
                policy_version=row["policy_version"],
                at=row["at"],
                notice_hash=row["notice_hash"],
                request_id=row["request_id"],
                id=row["id"],
            )
            for row in await self._run(read)
        ]

    async def erase(self, subject: str) -> str:
        async def unlink(conn: Any) -> str:
            async with conn.transaction():
                await conn.execute(
                    "INSERT INTO store_meta (key, value) VALUES ($1, $2)"
                    " ON CONFLICT (key) DO NOTHING",
                    _SALT_KEY,
                    secrets.token_hex(32),
                )
                salt = await conn.fetchval("SELECT value FROM store_meta WHERE key = $1", _SALT_KEY)
                token = erasure_token(subject, bytes.fromhex(salt))
                await conn.execute(
                    "UPDATE consent_records SET subject = $1 WHERE subject = $2", token, subject
                )
                # lock the subject's current row so a concurrent record cannot slip in between
                await conn.execute(
                    "SELECT 1 FROM current_consent WHERE subject = ANY($1::text[]) FOR UPDATE",
                    [subject, token],
                )
                # a subject erased before and seen again: its newer current row wins
                await conn.execute(
                    "DELETE FROM current_consent WHERE subject = $1"
                    " AND EXISTS (SELECT 1 FROM current_consent WHERE subject = $2)",
                    token,
                    subject,
                )
                await conn.execute(
                    "UPDATE current_consent SET subject = $1 WHERE subject = $2", token, subject
                )
            return token

        return await self._run(unlink)

    async def ping(self) -> bool:
        async def probe(conn: Any) -> bool:
            return bool(await conn.fetchval("SELECT 1") == 1)

        try:
            return await self._run(probe)
        except StoreError:
            return False

    # -- migrations -----------------------------------------------------------------------

    async def schema_version(self) -> int:
        return await self._run(self._schema_version)

    async def apply_migration(self, step: Migration) -> bool:
        async def apply(conn: Any) -> bool:
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK_ID)
                await conn.execute(
                    "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)"
                )
                version = await self._schema_version(conn)
                if version >= step.version:
                    return False
                if version != step.version - 1:
                    raise StoreError(f"cannot apply step {step.version} to version {version}")
                for statement in step.statements:
                    await conn.execute(statement)
                await conn.execute("DELETE FROM schema_version")
                await conn.execute("INSERT INTO schema_version (version) VALUES ($1)", step.version)
            return True

        return await self._run(apply)
