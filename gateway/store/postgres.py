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

import logging
import secrets
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from typing import Any, ClassVar, Final, TypeVar

import asyncpg
import orjson

from gateway.store.base import (
    CURSOR_SELECT,
    ERASURE_SOURCE,
    Change,
    ChangeKind,
    ConsentRecord,
    ConsentStore,
    CurrentConsent,
    StoreError,
    WebhookCursor,
    dump_purposes,
    erasure_time,
    erasure_token,
    load_purposes,
)
from gateway.store.migrations import Migration, latest_version

__all__ = ["CHANGES_LOCK_ID", "MIGRATION_LOCK_ID", "PostgresStore"]

log = logging.getLogger(__name__)


def _cursor(row: Any) -> WebhookCursor:
    return WebhookCursor(
        row["endpoint"],
        int(row["last_seq"]),
        row["attempts"],
        row["next_attempt"],
        row["last_error"],
        row["last_success"],
        int(row["delivered"]),
    )


T = TypeVar("T")

#: the pg_advisory_xact_lock key that serialises migrations ("cgstore1" as an int64).
MIGRATION_LOCK_ID: Final = 0x6367_7374_6F72_6531
_SALT_KEY: Final = "erasure_salt"
#: the pg_advisory_xact_lock key that serialises writers of changes ("cgchange").
CHANGES_LOCK_ID: Final = 0x6367_6368_616E_6765
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
        #: the NOTIFY channel of this store's schema (set by `open`): instances sharing a
        #: server but not a schema must not hear each other's changes
        self.channel = "cg_changes"

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
            schema = await self._run(lambda c: c.fetchval("SELECT current_schema()"))
            self.channel = f"cg_changes:{schema}"[:63]
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

    async def record_change(self, rec: ConsentRecord) -> tuple[ConsentRecord, Change | None]:
        purposes, vendors = dump_purposes(rec.purposes), dump_purposes(rec.vendors)

        async def write(conn: Any) -> tuple[int, Change | None]:
            async with conn.transaction():
                rid = await conn.fetchval(
                    "INSERT INTO consent_records (subject, purposes, source, policy_version,"
                    " at, notice_hash, request_id, vendors)"
                    " VALUES ($1, $2::jsonb, $3, $4, $5, $6, $7, $8::jsonb) RETURNING id",
                    rec.subject,
                    purposes,
                    rec.source,
                    rec.policy_version,
                    float(rec.at),
                    rec.notice_hash,
                    rec.request_id,
                    vendors,
                )
                # current follows the newest record by `at`; ties go to the later write
                status = await conn.execute(
                    "INSERT INTO current_consent (subject, purposes, policy_version, at,"
                    " source, record_id, vendors) VALUES ($1, $2::jsonb, $3, $4, $5, $6, $7::jsonb)"
                    " ON CONFLICT (subject) DO UPDATE SET purposes = excluded.purposes,"
                    " policy_version = excluded.policy_version, at = excluded.at,"
                    " source = excluded.source, record_id = excluded.record_id,"
                    " vendors = excluded.vendors"
                    " WHERE excluded.at >= current_consent.at",
                    rec.subject,
                    purposes,
                    rec.policy_version,
                    float(rec.at),
                    rec.source,
                    rid,
                    vendors,
                )
                change = None
                if status.endswith(" 1"):
                    change = await self._insert_change(
                        conn,
                        ChangeKind.CONSENT,
                        rec.subject,
                        purposes,
                        rec.policy_version,
                        float(rec.at),
                        rec.source,
                        int(rid),
                        vendors=vendors,
                    )
            return int(rid), change

        rid, change = await self._run(write)
        return replace(rec, id=rid), change

    async def _insert_change(
        self,
        conn: Any,
        kind: ChangeKind,
        subject: str,
        purposes: str,
        version: int,
        at: float,
        source: str,
        record_id: int | None,
        token: str | None = None,
        vendors: str = "{}",
    ) -> Change:
        """Append a change inside the caller's transaction and NOTIFY it on commit.

        The advisory lock, held to commit, serialises the writers of changes: seq order is
        then commit order, so a follower reading `seq > last seen` never skips a change
        that commits late. Consent writes are rare next to reads; the lock is cheap.
        """
        await conn.execute("SELECT pg_advisory_xact_lock($1)", CHANGES_LOCK_ID)
        event_id = uuid.uuid4().hex
        seq = await conn.fetchval(
            "INSERT INTO consent_changes (event_id, kind, subject, token, purposes,"
            " policy_version, at, source, record_id, vendors)"
            " VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7, $8, $9, $10::jsonb) RETURNING seq",
            event_id,
            kind.value,
            subject,
            token,
            purposes,
            version,
            at,
            source,
            record_id,
            vendors,
        )
        change = Change(
            int(seq),
            event_id,
            kind,
            subject,
            load_purposes(purposes),
            version,
            at,
            source,
            record_id,
            load_purposes(vendors, "vendors"),
        )
        # NOTIFY is transactional: listeners hear of the change only once it has committed.
        await conn.execute(
            "SELECT pg_notify($1, $2)", self.channel, orjson.dumps(change.to_json()).decode()
        )
        return change

    async def current(self, subject: str) -> CurrentConsent | None:
        async def read(conn: Any) -> Any:
            row = await conn.fetchrow(
                "SELECT purposes::text AS purposes, policy_version, at, source,"
                " vendors::text AS vendors FROM current_consent WHERE subject = $1",
                subject,
            )
            if row is not None:
                return row
            # erased? (rare: a subject with no record) the erasure outdates older cookies
            salt = await conn.fetchval("SELECT value FROM store_meta WHERE key = $1", _SALT_KEY)
            if salt is None:
                return None
            erased = await conn.fetchval(
                "SELECT max(at) FROM consent_changes WHERE token = $1 AND kind = $2",
                erasure_token(subject, bytes.fromhex(salt)),
                ChangeKind.ERASURE.value,
            )
            if erased is None:
                return None
            return {
                "purposes": "{}",
                "policy_version": 0,
                "at": erased,
                "source": ERASURE_SOURCE,
                "vendors": "{}",
            }

        row = await self._run(read)
        if row is None:
            return None
        return CurrentConsent(
            subject,
            load_purposes(row["purposes"]),
            row["policy_version"],
            row["at"],
            row["source"],
            load_purposes(row["vendors"], "vendors"),
        )

    async def history(self, subject: str) -> list[ConsentRecord]:
        async def read(conn: Any) -> list[Any]:
            rows: list[Any] = await conn.fetch(
                "SELECT id, purposes::text AS purposes, source, policy_version, at,"
                " notice_hash, request_id, vendors::text AS vendors FROM consent_records"
                " WHERE subject = $1"
                " ORDER BY at, id",
                subject,
            )
            return rows

        return [
            ConsentRecord(
                subject=subject,
                purposes=load_purposes(row["purposes"]),
                vendors=load_purposes(row["vendors"], "vendors"),
                source=row["source"],
                policy_version=row["policy_version"],
                at=row["at"],
                notice_hash=row["notice_hash"],
                request_id=row["request_id"],
                id=row["id"],
            )
            for row in await self._run(read)
        ]

    async def erase_change(self, subject: str) -> tuple[str, Change]:
        async def unlink(conn: Any) -> tuple[str, Change]:
            async with conn.transaction():
                await conn.execute(
                    "INSERT INTO store_meta (key, value) VALUES ($1, $2)"
                    " ON CONFLICT (key) DO NOTHING",
                    _SALT_KEY,
                    secrets.token_hex(32),
                )
                salt = await conn.fetchval("SELECT value FROM store_meta WHERE key = $1", _SALT_KEY)
                token = erasure_token(subject, bytes.fromhex(salt))
                newest = await conn.fetchval(
                    "SELECT max(at) FROM consent_records WHERE subject = $1", subject
                )
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
                await conn.execute(
                    "UPDATE consent_changes SET subject = $1 WHERE subject = $2", token, subject
                )
                change = await self._insert_change(
                    conn,
                    ChangeKind.ERASURE,
                    subject,
                    "{}",
                    0,
                    erasure_time(newest),
                    ERASURE_SOURCE,
                    None,
                    token,
                )
            return token, change

        return await self._run(unlink)

    # -- the change feed and webhook cursors ------------------------------------------------

    async def changes_since(self, seq: int, limit: int = 1000) -> list[Change]:
        async def read(conn: Any) -> list[Any]:
            rows: list[Any] = await conn.fetch(
                "SELECT seq, event_id, kind, subject, purposes::text AS purposes,"
                " policy_version, at, source, record_id, vendors::text AS vendors"
                " FROM consent_changes"
                " WHERE seq > $1 ORDER BY seq LIMIT $2",
                seq,
                limit,
            )
            return rows

        return [
            Change(
                int(r["seq"]),
                r["event_id"],
                ChangeKind(r["kind"]),
                r["subject"],
                load_purposes(r["purposes"]),
                r["policy_version"],
                r["at"],
                r["source"],
                None if r["record_id"] is None else int(r["record_id"]),
                load_purposes(r["vendors"], "vendors"),
            )
            for r in await self._run(read)
        ]

    async def last_seq(self) -> int:
        async def read(conn: Any) -> int:
            return int(await conn.fetchval("SELECT coalesce(max(seq), 0) FROM consent_changes"))

        return await self._run(read)

    async def webhook_register(self, endpoint: str) -> WebhookCursor:
        async def register(conn: Any) -> Any:
            async with conn.transaction():
                # under the changes lock, so no change commits between reading the end of
                # the feed and placing the cursor there
                await conn.execute("SELECT pg_advisory_xact_lock($1)", CHANGES_LOCK_ID)
                await conn.execute(
                    "INSERT INTO webhook_cursors (endpoint, last_seq)"
                    " SELECT $1, coalesce(max(seq), 0) FROM consent_changes"
                    " ON CONFLICT (endpoint) DO NOTHING",
                    endpoint,
                )
                return await conn.fetchrow(CURSOR_SELECT + " WHERE endpoint = $1", endpoint)

        return _cursor(await self._run(register))

    async def webhook_claim(self, endpoint: str, owner: str, lease: float, now: float) -> bool:
        async def claim(conn: Any) -> bool:
            status: str = await conn.execute(
                "UPDATE webhook_cursors SET lease_owner = $1, lease_until = $2"
                " WHERE endpoint = $3 AND (lease_owner IS NULL OR lease_owner = $1"
                " OR lease_until < $4)",
                owner,
                now + lease,
                endpoint,
                now,
            )
            return status == "UPDATE 1"

        return await self._run(claim)

    async def webhook_release(self, endpoint: str, owner: str) -> None:
        async def release(conn: Any) -> None:
            await conn.execute(
                "UPDATE webhook_cursors SET lease_owner = NULL, lease_until = 0"
                " WHERE endpoint = $1 AND lease_owner = $2",
                endpoint,
                owner,
            )

        await self._run(release)

    async def webhook_advance(self, endpoint: str, owner: str, seq: int, now: float) -> bool:
        async def advance(conn: Any) -> bool:
            status: str = await conn.execute(
                "UPDATE webhook_cursors SET last_seq = $1, attempts = 0, next_attempt = 0,"
                " last_error = NULL, last_success = $2, delivered = delivered + 1"
                " WHERE endpoint = $3 AND lease_owner = $4 AND last_seq < $1",
                seq,
                now,
                endpoint,
                owner,
            )
            return status == "UPDATE 1"

        return await self._run(advance)

    async def webhook_failed(
        self, endpoint: str, owner: str, attempts: int, next_attempt: float, error: str
    ) -> bool:
        async def failed(conn: Any) -> bool:
            status: str = await conn.execute(
                "UPDATE webhook_cursors SET attempts = $1, next_attempt = $2, last_error = $3"
                " WHERE endpoint = $4 AND lease_owner = $5",
                attempts,
                next_attempt,
                error,
                endpoint,
                owner,
            )
            return status == "UPDATE 1"

        return await self._run(failed)

    async def webhook_cursors(self) -> list[WebhookCursor]:
        async def read(conn: Any) -> list[Any]:
            rows: list[Any] = await conn.fetch(CURSOR_SELECT + " ORDER BY endpoint")
            return rows

        return [_cursor(r) for r in await self._run(read)]

    async def scrub_erasures(self, upto_seq: int) -> int:
        async def scrub(conn: Any) -> int:
            status: str = await conn.execute(
                "UPDATE consent_changes SET subject = token WHERE kind = $1 AND seq <= $2"
                " AND token IS NOT NULL AND subject <> token",
                ChangeKind.ERASURE.value,
                upto_seq,
            )
            return int(status.rsplit(" ", 1)[1])

        return await self._run(scrub)

    # -- LISTEN/NOTIFY ----------------------------------------------------------------------

    async def listen(
        self, on_change: Callable[[Change], None], on_lost: Callable[[], None]
    ) -> Callable[[], Awaitable[None]]:
        """Open a connection of its own that LISTENs on this store's channel.

        Calls `on_change` with each change committed from now on (in commit order, which is
        seq order), and `on_lost` once if the connection ends. Returns a coroutine function
        that closes it. Raises StoreError if it cannot connect.
        """
        try:
            conn = await asyncpg.connect(
                self._dsn, server_settings=self._server_settings, timeout=self._timeout
            )
        except _DRIVER_ERRORS as exc:
            raise StoreError(f"postgres: cannot connect to listen: {type(exc).__name__}") from exc

        def heard(_conn: Any, _pid: int, _channel: str, payload: str) -> None:
            try:
                change = Change.from_json(orjson.loads(payload))
            except (orjson.JSONDecodeError, StoreError):
                log.warning("ignoring a malformed change notification")
                return
            on_change(change)

        def ended(_conn: Any) -> None:
            on_lost()

        try:
            conn.add_termination_listener(ended)
            await conn.add_listener(self.channel, heard)
        except _DRIVER_ERRORS as exc:
            conn.terminate()
            raise StoreError(f"postgres: cannot listen: {type(exc).__name__}") from exc

        async def close() -> None:
            conn.remove_termination_listener(ended)
            try:
                await conn.close(timeout=self._timeout)
            except _DRIVER_ERRORS:
                conn.terminate()

        return close

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
