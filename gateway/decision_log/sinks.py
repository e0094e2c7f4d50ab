"""Where decision records go: the `Sink` protocol, the SQLite and JSONL sinks.

Every sink method runs in the decision log's one writer thread (`writer.DecisionLog`),
never on the event loop. The `decisions` table is defined here, with its
`SCHEMA_VERSION`; `query.LogReader` reads the same `COLUMNS` back. `SqliteSink` also
keeps the aggregated `bypasses` table (`bypasses`) in the same file.
"""

from __future__ import annotations

import json
import sqlite3
import sys
from collections.abc import Sequence
from functools import cache
from itertools import chain
from pathlib import Path
from typing import IO, Final, Protocol

import orjson

from gateway.config import DecisionLogConfig
from gateway.decision_log.bypasses import TABLE as BYPASS_TABLE
from gateway.decision_log.bypasses import Seen, write_sightings
from gateway.decision_log.record import DecisionRecord, record_to_dict

__all__ = ["COLUMNS", "SCHEMA_VERSION", "JsonlSink", "Sink", "SqliteSink", "sinks_for"]

#: `PRAGMA user_version` of the `decisions` table this module writes (and `query` reads).
SCHEMA_VERSION: Final = 1


class Sink(Protocol):
    """Where batches of records go. Every method runs in the log's single writer thread.

    `open` and `write` raise `sqlite3.Error` or `OSError` when the destination is
    unavailable; the log counts the batch as lost and calls `write` again with the
    next batch, so a sink reopens itself once its destination is back.
    """

    #: a short name for warnings and metrics
    name: str

    def open(self) -> None: ...
    def write(self, records: Sequence[DecisionRecord]) -> None: ...
    def close(self) -> None: ...


_SCHEMA = """
CREATE TABLE IF NOT EXISTS decisions (
    id INTEGER PRIMARY KEY,
    ts REAL NOT NULL,
    request_id TEXT NOT NULL,
    action TEXT NOT NULL,
    vendor TEXT,
    endpoint TEXT,
    missing TEXT NOT NULL,   -- JSON array of purposes
    sources TEXT NOT NULL,   -- JSON object: purpose -> source name
    regime TEXT,
    method TEXT NOT NULL,
    host TEXT NOT NULL,
    path TEXT NOT NULL,
    stripped TEXT NOT NULL,  -- JSON array of field names
    reason TEXT NOT NULL,
    report_only INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS decisions_ts ON decisions (ts);
CREATE INDEX IF NOT EXISTS decisions_vendor ON decisions (vendor, ts);
CREATE INDEX IF NOT EXISTS decisions_action ON decisions (action, ts);
"""

#: the stored columns but `id`, in insert order (the reader selects them too)
COLUMNS: Final = (
    "ts, request_id, action, vendor, endpoint, missing, sources, regime, method, host, path, "
    "stripped, reason, report_only"
)
#: rows per INSERT statement at most: a batch is written as a few multi-row statements,
#: their row counts powers of two (at most 9 distinct texts, each compiled once and kept
#: by sqlite3's statement cache). Row by row (`executemany`) steps once per row and takes
#: the GIL back after each step: under load the event loop holds it, and each row waited
#: up to a switch interval (5 ms). A multi-row statement is bound in C and stepped once.
#: 256 rows x 14 columns stays below SQLite's default limit of 32,766 host parameters
#: (999 before 3.32: `SqliteSink.open` lowers it to what the library allows).
_MAX_ROWS: Final = 256
_PLACEHOLDERS: Final = "(" + ", ".join("?" * 14) + ")"


@cache
def _insert(rows: int) -> str:
    return f"INSERT INTO decisions ({COLUMNS}) VALUES " + ", ".join([_PLACEHOLDERS] * rows)


class _JsonColumns:
    """The three JSON columns of records, encoded once per record template: records of
    one template (`record_for`'s cache) share these objects, so a burst of identical
    drops encodes them once. Held objects keep their ids from being reused."""

    def __init__(self, size: int = 1024) -> None:
        self._size = size
        self._kept: dict[tuple[int, int, int], tuple[object, object, object, tuple[str, str, str]]]
        self._kept = {}

    def of(self, r: DecisionRecord) -> tuple[str, str, str]:
        key = (id(r.missing), id(r.sources), id(r.stripped))
        kept = self._kept.get(key)
        if (
            kept is not None
            and kept[0] is r.missing
            and kept[1] is r.sources
            and kept[2] is r.stripped
        ):
            return kept[3]
        text = (
            _json_text(list(r.missing)),
            _json_text(dict(r.sources)),
            _json_text(list(r.stripped)),
        )
        if len(self._kept) >= self._size:
            self._kept.clear()
        self._kept[key] = (r.missing, r.sources, r.stripped, text)
        return text


def _json_text(value: object) -> str:
    try:
        return orjson.dumps(value).decode()
    except orjson.JSONEncodeError:  # text orjson refuses (a lone surrogate): escaped
        return json.dumps(value, ensure_ascii=True, separators=(",", ":"))


class SqliteSink:
    """Records as rows of the `decisions` table in one SQLite file (WAL mode).

    Creates the file, its parent folders, the table and its indexes on first use.
    Refuses (`sqlite3.DatabaseError`) a file whose schema version is newer than
    `SCHEMA_VERSION`. Several gateway processes may share one file: WAL and a
    busy timeout serialise their batches. Not thread-safe: one thread owns it.
    """

    name = "sqlite"

    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = None
        self._json_columns = _JsonColumns()
        #: rows per statement: _MAX_ROWS, or fewer where the library allows fewer parameters
        self._rows = _MAX_ROWS

    def open(self) -> None:
        if self._conn is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # check_same_thread=False: opened and used only by the log's one writer thread,
        # which is not necessarily the thread that created this object.
        conn = sqlite3.connect(
            self.path, timeout=5.0, isolation_level=None, check_same_thread=False
        )
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise sqlite3.DatabaseError(
                    f"{self.path}: decision log schema {version} is newer than {SCHEMA_VERSION}"
                )
            if version < SCHEMA_VERSION:
                conn.executescript(
                    f"BEGIN IMMEDIATE; {_SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
                )
            # Not versioned: a file from before it gains it, and older readers ignore it.
            conn.executescript(f"BEGIN IMMEDIATE; {BYPASS_TABLE} COMMIT;")
            if sqlite3.sqlite_version_info < (3, 32):
                self._rows = 999 // 14
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    def write(self, records: Sequence[DecisionRecord]) -> None:
        """Insert the batch in one transaction: all of it is stored, or (raising) none."""
        self.open()
        conn = self._conn
        assert conn is not None
        try:
            rows = [self._row(r) for r in records]
            conn.execute("BEGIN IMMEDIATE")
            done = 0
            while done < len(rows):
                # the largest power of two that fits: few distinct statements, all cached
                n = min(self._rows, 1 << ((len(rows) - done).bit_length() - 1))
                conn.execute(_insert(n), tuple(chain.from_iterable(rows[done : done + n])))
                done += n
            conn.execute("COMMIT")
        except BaseException:
            # Start afresh with the next batch: the file may have gone or been replaced.
            self.close()
            raise

    def _row(self, r: DecisionRecord) -> tuple[object, ...]:
        missing, sources, stripped = self._json_columns.of(r)
        return (
            r.ts,
            r.request_id,
            r.action,
            r.vendor,
            r.endpoint,
            missing,
            sources,
            r.regime,
            r.method,
            r.host,
            r.path,
            stripped,
            r.reason,
            int(r.report_only),
        )

    def write_sightings(self, batch: Sequence[Seen]) -> None:
        """Count a batch of report sightings into `bypasses`, in one transaction."""
        self.open()
        conn = self._conn
        assert conn is not None
        try:
            write_sightings(conn, batch)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()  # an open transaction is rolled back, never half-committed


class JsonlSink:
    """Records as JSON lines (`record_to_dict`) for log shippers.

    `target` is `-` for standard output, otherwise a file appended to (created, with
    its parent folders, on first use). Each batch is flushed when written.
    """

    def __init__(self, target: str) -> None:
        self.target = target
        self.name = "jsonl-stdout" if target == "-" else "jsonl"
        self._file: IO[bytes] | None = None

    def open(self) -> None:
        if self.target == "-" or self._file is not None:
            return
        path = Path(self.target)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("ab")

    def write(self, records: Sequence[DecisionRecord]) -> None:
        data = b"".join(orjson.dumps(record_to_dict(r)) + b"\n" for r in records)
        if self.target == "-":
            # Looked up per batch: sys.stdout may have been replaced (tests, daemonisers).
            out = sys.stdout
            try:
                out.flush()
                buffer: IO[bytes] | None = getattr(out, "buffer", None)
                if buffer is not None:
                    buffer.write(data)
                    buffer.flush()
                else:
                    out.write(data.decode())
                    out.flush()
            except ValueError as e:  # stdout closed (daemonised): an outage, not a bug
                raise OSError(str(e)) from e
            return
        self.open()
        f = self._file
        assert f is not None
        try:
            f.write(data)
            f.flush()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        f, self._file = self._file, None
        if f is not None:
            f.close()


def sinks_for(cfg: DecisionLogConfig) -> list[Sink]:
    """The sinks `cfg` configures, none opened yet; no sink means the log is off."""
    sinks: list[Sink] = []
    if cfg.sqlite_path is not None:
        sinks.append(SqliteSink(cfg.sqlite_path))
    if cfg.jsonl is not None:
        sinks.append(JsonlSink(cfg.jsonl))
    return sinks
