"""The SQLite consent store: one file, for a single gateway instance (the default).

- Every sqlite3 call runs in one dedicated thread (`ThreadPoolExecutor(max_workers=1)`),
  never on the event loop; the single thread also serialises writes, so concurrent
  `record` calls queue instead of contending for the write lock.
- The database is in WAL mode with `synchronous=FULL`: a commit is fsynced before
  `record` returns, so an acknowledged consent survives a crash or power loss.
- `sqlite3.Error` and `OSError` are mapped to StoreError here.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar, TypeVar

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

__all__ = ["SqliteStore"]


@contextlib.contextmanager
def _immediate(conn: sqlite3.Connection) -> Iterator[None]:
    """One write transaction, taking the write lock at once (BEGIN IMMEDIATE, so it never
    fails half-way on a lock upgrade); committed when the block ends, rolled back if it
    raises."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _insert_change(
    conn: sqlite3.Connection,
    kind: ChangeKind,
    subject: str,
    purposes: str,
    rec: ConsentRecord | None,
    record_id: int | None,
    *,
    token: str | None = None,
    at: float | None = None,
    vendors: str = "{}",
) -> Change:
    """Append a change to the feed, inside the caller's transaction. SQLite has one writer
    at a time, so seq order is commit order."""
    event_id = uuid.uuid4().hex
    if rec is None:
        version, at, source = 0, time.time() if at is None else at, ERASURE_SOURCE
    else:
        version, at, source = rec.policy_version, rec.at, rec.source
    cur = conn.execute(
        "INSERT INTO consent_changes (event_id, kind, subject, token, purposes,"
        " policy_version, at, source, record_id, created, vendors)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            event_id,
            kind.value,
            subject,
            token,
            purposes,
            version,
            at,
            source,
            record_id,
            time.time(),
            vendors,
        ),
    )
    seq = cur.lastrowid
    assert seq is not None
    return _change(
        seq, event_id, kind.value, subject, purposes, version, at, source, record_id, vendors
    )


def _change(
    seq: int,
    event_id: str,
    kind: str,
    subject: str,
    purposes: str,
    version: int,
    at: float,
    source: str,
    record_id: int | None,
    vendors: str,
) -> Change:
    return Change(
        seq,
        event_id,
        ChangeKind(kind),
        subject,
        load_purposes(purposes),
        version,
        at,
        source,
        record_id,
        load_purposes(vendors, "vendors"),
    )


T = TypeVar("T")

_SALT_KEY = "erasure_salt"


class SqliteStore(ConsentStore):
    """A consent store in the SQLite file at `path` (created if missing)."""

    backend: ClassVar[str] = "sqlite"

    def __init__(self, path: str | Path, *, timeout: float = 5.0) -> None:
        self.path = Path(path)
        self._timeout = timeout
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None

    # -- plumbing -------------------------------------------------------------------------

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        executor, conn = self._executor, self._conn
        if executor is None or conn is None:
            raise StoreError("the consent store is not open")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(executor, fn, conn)
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"sqlite: {type(exc).__name__}: {exc}") from exc

    def _connect(self) -> sqlite3.Connection:
        # check_same_thread=False: the connection is opened and used only in the store's one
        # thread, but that thread is not the one constructing the connection object's owner.
        conn = sqlite3.connect(
            self.path, timeout=self._timeout, isolation_level=None, check_same_thread=False
        )
        try:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreError(f"sqlite: cannot enable WAL (journal_mode={mode})")
            # durability: fsync on every commit, so an acknowledged record survives a crash
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            latest = latest_version(self.backend)
            if version > latest:
                raise StoreError(f"schema version {version} is newer than this code's {latest}")
        except BaseException:
            conn.close()
            raise
        return conn

    # -- lifecycle ------------------------------------------------------------------------

    async def open(self) -> None:
        if self._conn is not None:
            return
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="consent-store")
        loop = asyncio.get_running_loop()
        try:
            conn = await loop.run_in_executor(executor, self._connect)
        except (sqlite3.Error, OSError) as exc:
            executor.shutdown(wait=True)
            raise StoreError(f"sqlite: cannot open the consent store: {exc}") from exc
        except BaseException:
            executor.shutdown(wait=True)
            raise
        self._executor, self._conn = executor, conn

    async def close(self) -> None:
        executor, conn = self._executor, self._conn
        self._executor = self._conn = None
        if executor is None:
            return
        loop = asyncio.get_running_loop()
        try:
            if conn is not None:
                await loop.run_in_executor(executor, conn.close)
        finally:
            # the one thread is idle now: shutting it down does not block the loop
            executor.shutdown(wait=True)

    # -- consent --------------------------------------------------------------------------

    async def record_change(self, rec: ConsentRecord) -> tuple[ConsentRecord, Change | None]:
        def write(conn: sqlite3.Connection) -> tuple[int, Change | None]:
            purposes, vendors = dump_purposes(rec.purposes), dump_purposes(rec.vendors)
            with _immediate(conn):
                cur = conn.execute(
                    "INSERT INTO consent_records (subject, purposes, source, policy_version,"
                    " at, notice_hash, request_id, vendors) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        rec.subject,
                        purposes,
                        rec.source,
                        rec.policy_version,
                        rec.at,
                        rec.notice_hash,
                        rec.request_id,
                        vendors,
                    ),
                )
                rid = cur.lastrowid
                assert rid is not None
                # current follows the newest record by `at`; ties go to the later write
                cur = conn.execute(
                    "INSERT INTO current_consent (subject, purposes, policy_version, at,"
                    " source, record_id, vendors) VALUES (?, ?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT (subject) DO UPDATE SET purposes = excluded.purposes,"
                    " policy_version = excluded.policy_version, at = excluded.at,"
                    " source = excluded.source, record_id = excluded.record_id,"
                    " vendors = excluded.vendors"
                    " WHERE excluded.at >= current_consent.at",
                    (rec.subject, purposes, rec.policy_version, rec.at, rec.source, rid, vendors),
                )
                change = None
                if cur.rowcount == 1:
                    change = _insert_change(
                        conn, ChangeKind.CONSENT, rec.subject, purposes, rec, rid, vendors=vendors
                    )
            return rid, change

        rid, change = await self._run(write)
        return replace(rec, id=rid), change

    async def current(self, subject: str) -> CurrentConsent | None:
        def read(conn: sqlite3.Connection) -> tuple[str, int, float, str, str] | None:
            row = conn.execute(
                "SELECT purposes, policy_version, at, source, vendors FROM current_consent"
                " WHERE subject = ?",
                (subject,),
            ).fetchone()
            if row is not None:
                return (row[0], row[1], row[2], row[3], row[4])
            # erased? (rare: a subject with no record) the erasure outdates older cookies
            salt = conn.execute(
                "SELECT value FROM store_meta WHERE key = ?", (_SALT_KEY,)
            ).fetchone()
            if salt is None:
                return None
            erased = conn.execute(
                "SELECT max(at) FROM consent_changes WHERE token = ? AND kind = ?",
                (erasure_token(subject, bytes.fromhex(salt[0])), ChangeKind.ERASURE.value),
            ).fetchone()[0]
            return None if erased is None else ("{}", 0, erased, ERASURE_SOURCE, "{}")

        row = await self._run(read)
        if row is None:
            return None
        purposes, version, at, source, vendors = row
        return CurrentConsent(
            subject, load_purposes(purposes), version, at, source, load_purposes(vendors, "vendors")
        )

    async def history(self, subject: str) -> list[ConsentRecord]:
        def read(conn: sqlite3.Connection) -> list[Any]:
            return conn.execute(
                "SELECT id, purposes, source, policy_version, at, notice_hash, request_id,"
                " vendors FROM consent_records WHERE subject = ? ORDER BY at, id",
                (subject,),
            ).fetchall()

        rows = await self._run(read)
        return [
            ConsentRecord(
                subject=subject,
                purposes=load_purposes(purposes),
                source=source,
                policy_version=version,
                at=at,
                notice_hash=notice,
                request_id=request,
                id=rid,
                vendors=load_purposes(vendors, "vendors"),
            )
            for rid, purposes, source, version, at, notice, request, vendors in rows
        ]

    async def erase_change(self, subject: str) -> tuple[str, Change]:
        def unlink(conn: sqlite3.Connection) -> tuple[str, Change]:
            with _immediate(conn):
                conn.execute(
                    "INSERT OR IGNORE INTO store_meta (key, value) VALUES (?, ?)",
                    (_SALT_KEY, secrets.token_hex(32)),
                )
                salt = conn.execute(
                    "SELECT value FROM store_meta WHERE key = ?", (_SALT_KEY,)
                ).fetchone()[0]
                token = erasure_token(subject, bytes.fromhex(salt))
                newest = conn.execute(
                    "SELECT max(at) FROM consent_records WHERE subject = ?", (subject,)
                ).fetchone()[0]
                conn.execute(
                    "UPDATE consent_records SET subject = ? WHERE subject = ?", (token, subject)
                )
                # a subject erased before and seen again: its newer current row wins
                conn.execute(
                    "DELETE FROM current_consent WHERE subject = ?"
                    " AND EXISTS (SELECT 1 FROM current_consent WHERE subject = ?)",
                    (token, subject),
                )
                conn.execute(
                    "UPDATE current_consent SET subject = ? WHERE subject = ?", (token, subject)
                )
                conn.execute(
                    "UPDATE consent_changes SET subject = ? WHERE subject = ?", (token, subject)
                )
                change = _insert_change(
                    conn,
                    ChangeKind.ERASURE,
                    subject,
                    "{}",
                    None,
                    None,
                    token=token,
                    at=erasure_time(newest),
                )
            return token, change

        return await self._run(unlink)

    # -- the change feed and webhook cursors ------------------------------------------------

    async def changes_since(self, seq: int, limit: int = 1000) -> list[Change]:
        def read(conn: sqlite3.Connection) -> list[Any]:
            return conn.execute(
                "SELECT seq, event_id, kind, subject, purposes, policy_version, at, source,"
                " record_id, vendors FROM consent_changes WHERE seq > ? ORDER BY seq LIMIT ?",
                (seq, limit),
            ).fetchall()

        return [_change(*row) for row in await self._run(read)]

    async def last_seq(self) -> int:
        def read(conn: sqlite3.Connection) -> int:
            row = conn.execute("SELECT max(seq) FROM consent_changes").fetchone()
            return 0 if row[0] is None else int(row[0])

        return await self._run(read)

    async def webhook_register(self, endpoint: str) -> WebhookCursor:
        def register(conn: sqlite3.Connection) -> Any:
            with _immediate(conn):
                conn.execute(
                    "INSERT OR IGNORE INTO webhook_cursors (endpoint, last_seq)"
                    " SELECT ?, coalesce(max(seq), 0) FROM consent_changes",
                    (endpoint,),
                )
                row = conn.execute(CURSOR_SELECT + " WHERE endpoint = ?", (endpoint,)).fetchone()
            return row

        return WebhookCursor(*await self._run(register))

    async def webhook_claim(self, endpoint: str, owner: str, lease: float, now: float) -> bool:
        def claim(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "UPDATE webhook_cursors SET lease_owner = ?, lease_until = ?"
                " WHERE endpoint = ? AND (lease_owner IS NULL OR lease_owner = ?"
                " OR lease_until < ?)",
                (owner, now + lease, endpoint, owner, now),
            )
            return cur.rowcount == 1

        return await self._run(claim)

    async def webhook_release(self, endpoint: str, owner: str) -> None:
        await self._run(
            lambda c: c.execute(
                "UPDATE webhook_cursors SET lease_owner = NULL, lease_until = 0"
                " WHERE endpoint = ? AND lease_owner = ?",
                (endpoint, owner),
            )
        )

    async def webhook_advance(self, endpoint: str, owner: str, seq: int, now: float) -> bool:
        def advance(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "UPDATE webhook_cursors SET last_seq = ?, attempts = 0, next_attempt = 0,"
                " last_error = NULL, last_success = ?, delivered = delivered + 1"
                " WHERE endpoint = ? AND lease_owner = ? AND last_seq < ?",
                (seq, now, endpoint, owner, seq),
            )
            return cur.rowcount == 1

        return await self._run(advance)

    async def webhook_failed(
        self, endpoint: str, owner: str, attempts: int, next_attempt: float, error: str
    ) -> bool:
        def failed(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "UPDATE webhook_cursors SET attempts = ?, next_attempt = ?, last_error = ?"
                " WHERE endpoint = ? AND lease_owner = ?",
                (attempts, next_attempt, error, endpoint, owner),
            )
            return cur.rowcount == 1

        return await self._run(failed)

    async def webhook_cursors(self) -> list[WebhookCursor]:
        def read(conn: sqlite3.Connection) -> list[Any]:
            return conn.execute(CURSOR_SELECT + " ORDER BY endpoint").fetchall()

        return [WebhookCursor(*row) for row in await self._run(read)]

    async def scrub_erasures(self, upto_seq: int) -> int:
        def scrub(conn: sqlite3.Connection) -> int:
            cur = conn.execute(
                "UPDATE consent_changes SET subject = token WHERE kind = ? AND seq <= ?"
                " AND token IS NOT NULL AND subject != token",
                (ChangeKind.ERASURE.value, upto_seq),
            )
            return cur.rowcount

        return await self._run(scrub)

    async def ping(self) -> bool:
        try:
            return await self._run(lambda c: c.execute("SELECT 1").fetchone() == (1,))
        except StoreError:
            return False

    # -- migrations -----------------------------------------------------------------------

    async def schema_version(self) -> int:
        return await self._run(lambda c: int(c.execute("PRAGMA user_version").fetchone()[0]))

    async def apply_migration(self, step: Migration) -> bool:
        def apply(conn: sqlite3.Connection) -> bool:
            with _immediate(conn):
                version = int(conn.execute("PRAGMA user_version").fetchone()[0])
                if version >= step.version:
                    return False
                if version != step.version - 1:
                    raise StoreError(f"cannot apply step {step.version} to version {version}")
                for statement in step.statements:
                    conn.execute(statement)
                # user_version lives in the file header: written in this same transaction
                conn.execute(f"PRAGMA user_version = {int(step.version)}")
            return True

        return await self._run(apply)
