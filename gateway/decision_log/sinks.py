"""Where decision records go: the `Sink` protocol, the SQLite and JSONL sinks.

Every sink method runs in the decision log's one writer thread (`writer.DecisionLog`),
never on the event loop. The `decisions` table is defined here, with its
`SCHEMA_VERSION`; `query.LogReader` reads the same `COLUMNS` back. `SqliteSink` also
keeps the aggregated `bypasses` table (`bypasses`) in the same file, and creates the
per-minute `rollups` table (`rollups_query.ROLLUPS_TABLE`) so readers always find it.
"""

from __future__ import annotations

import json
import sqlite3
import sys
from collections.abc import Callable, Hashable, Sequence
from functools import lru_cache
from itertools import chain
from pathlib import Path
from typing import IO, Any, Final, Protocol, TypeVar

import orjson

from gateway.config import DecisionLogConfig, StoreBackend
from gateway.decision_log.bypasses import TABLE as BYPASS_TABLE
from gateway.decision_log.bypasses import Seen, write_sightings
from gateway.decision_log.record import DecisionRecord, record_to_dict
from gateway.decision_log.rollups import (
    ROLLUP_TABLE,
    Cutoffs,
    Pruned,
    RollupRow,
    prune,
    write_rollups,
)

_T = TypeVar("_T")

__all__ = [
    "COLUMNS",
    "KIND_COLUMNS",
    "SCHEMA_VERSION",
    "JsonlSink",
    "Row",
    "Sink",
    "SqliteSink",
    "json_text",
    "sinks_for",
]

#: `PRAGMA user_version` of the decision log's tables this module writes (and `query`
#: reads through the `decisions` view). 1: one wide `decisions` table; 2: rows and kinds.
SCHEMA_VERSION: Final = 2


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


#: The kind of a decision: every column of a record but its time and request id. A site's
#: traffic has a few hundred kinds and millions of rows, so a row is (time, id, kind):
#: a tenth of the bytes, two indexes instead of three wide ones, three parameters bound
#: instead of fourteen (the writer's cost per record fell from 4.5 to 1.8 us).
KIND_COLUMNS: Final = (
    "action",
    "vendor",
    "endpoint",
    "missing",
    "sources",
    "regime",
    "method",
    "host",
    "path",
    "stripped",
    "reason",
    "report_only",
)
_SCHEMA = """
CREATE TABLE IF NOT EXISTS decision_kinds (
    id INTEGER PRIMARY KEY,
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
CREATE INDEX IF NOT EXISTS decision_kinds_vendor ON decision_kinds (vendor, action);
CREATE TABLE IF NOT EXISTS decision_rows (
    id INTEGER PRIMARY KEY,
    ts REAL NOT NULL,
    request_id TEXT NOT NULL,
    kind INTEGER NOT NULL REFERENCES decision_kinds (id)
);
CREATE INDEX IF NOT EXISTS decision_rows_ts ON decision_rows (ts);
CREATE INDEX IF NOT EXISTS decision_rows_kind ON decision_rows (kind, ts);
-- what readers query: one row per record, with every column
CREATE VIEW IF NOT EXISTS decisions AS
    SELECT r.id AS id, r.ts AS ts, r.request_id AS request_id, k.action AS action,
           k.vendor AS vendor, k.endpoint AS endpoint, k.missing AS missing,
           k.sources AS sources, k.regime AS regime, k.method AS method, k.host AS host,
           k.path AS path, k.stripped AS stripped, k.reason AS reason,
           k.report_only AS report_only
    FROM decision_rows AS r JOIN decision_kinds AS k ON k.id = r.kind;
"""

#: schema 1 -> 2: the wide table's rows, ids kept, as kinds and rows
_FROM_V1 = f"""
ALTER TABLE decisions RENAME TO decisions_v1;
DROP INDEX IF EXISTS decisions_ts;
DROP INDEX IF EXISTS decisions_vendor;
DROP INDEX IF EXISTS decisions_action;
{_SCHEMA}
INSERT INTO decision_kinds ({", ".join(KIND_COLUMNS)})
    SELECT DISTINCT {", ".join(KIND_COLUMNS)} FROM decisions_v1;
INSERT INTO decision_rows (id, ts, request_id, kind)
    SELECT d.id, d.ts, d.request_id, k.id FROM decisions_v1 AS d JOIN decision_kinds AS k
    ON {" AND ".join(f"k.{c} IS d.{c}" for c in KIND_COLUMNS)};
DROP TABLE decisions_v1;
"""

#: the columns of the `decisions` view but `id` (the reader selects them)
COLUMNS: Final = "ts, request_id, " + ", ".join(KIND_COLUMNS)
_FIND_KIND: Final = (
    "SELECT id FROM decision_kinds WHERE "
    + " AND ".join(f"{c} IS ?" for c in KIND_COLUMNS)
    + " ORDER BY id LIMIT 1"
)
_ADD_KIND: Final = (
    f"INSERT INTO decision_kinds ({', '.join(KIND_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(KIND_COLUMNS))})"
)
#: rows per INSERT statement at most. A batch is written as multi-row statements, bound
#: in C and stepped once each, so the writer thread takes the GIL back once per statement.
#: Row by row (`executemany`) steps once per row and takes the GIL back after each step;
#: under load the event loop holds it, and each row waited up to a switch interval
#: (5 ms). A batch of a size written before (under load: `batch_size`, every time) is one
#: statement; any other is split into powers of two, so that few statement texts are
#: compiled (each is kept by sqlite3's statement cache, `_STATEMENTS`).
#: 10,922 rows x 3 columns is SQLite's default limit of 32,766 host parameters (999
#: before 3.32: `SqliteSink.open` lowers it to what the library allows).
_MAX_ROWS: Final = 32766 // 3
#: batch sizes remembered as one statement each; with the powers of two, within
#: `_STATEMENTS`
_SIZES: Final = 48
_STATEMENTS: Final = 128
#: kinds known by id, per sink (they are never deleted, so an id stays right)
_KINDS: Final = 8192

_Kind = tuple[object, ...]


@lru_cache(maxsize=64)
def _insert(rows: int) -> str:
    return "INSERT INTO decision_rows (ts, request_id, kind) VALUES " + ", ".join(
        ["(?, ?, ?)"] * rows
    )


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


#: a JSON column's text as the sink writes it (readers match `missing` against it)
json_text: Final = _json_text


#: a record as the writer process receives it (`hosts`): every field of `DecisionRecord`
#: but `id`, in its order, with `sources` as a tuple of (purpose, source) pairs
Row = tuple[Any, ...]


def _same(kind: _Kind) -> _Kind:
    return kind


def _kind_of_row(key: tuple[Any, ...]) -> _Kind:
    """The kind of a `Row`'s fields after the time and id."""
    action, vendor, endpoint, missing, sources, regime, method, host, path, stripped = key[:10]
    reason, report_only = key[10:]
    return (
        action,
        vendor,
        endpoint,
        _json_text(list(missing)),
        _json_text(dict(sources)),
        regime,
        method,
        host,
        path,
        _json_text(list(stripped)),
        reason,
        int(report_only),
    )


class SqliteSink:
    """Records as rows of the `decisions` view in one SQLite file (WAL mode): each a row
    of `decision_rows` (time, request id, kind) and its kind in `decision_kinds`.

    Creates the file, its parent folders, the tables, indexes and view on first use,
    and converts a file of schema 1 in place.
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
        self._sizes: set[int] = set()
        #: kind -> its id, for kinds of committed transactions only (a rolled back
        #: transaction's new kinds are not stored). Keyed by the kind itself (`write`) or
        #: by a row's fields (`write_rows`): the two never compare equal (a kind holds
        #: JSON text where a row holds tuples).
        self._kinds: dict[Hashable, int] = {}

    def open(self) -> None:
        if self._conn is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # check_same_thread=False: opened and used only by the log's one writer thread,
        # which is not necessarily the thread that created this object.
        conn = sqlite3.connect(
            self.path,
            timeout=5.0,
            isolation_level=None,
            check_same_thread=False,
            cached_statements=_STATEMENTS,
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
                # a file of schema 1 is converted in place, in one transaction
                script = _FROM_V1 if version == 1 else _SCHEMA
                conn.executescript(
                    f"BEGIN IMMEDIATE; {script} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
                )
            # Not versioned: a file from before it gains it, and older readers ignore it.
            conn.executescript(f"BEGIN IMMEDIATE; {BYPASS_TABLE} {ROLLUP_TABLE} COMMIT;")
            if sqlite3.sqlite_version_info < (3, 32):
                self._rows = 999 // 3
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    def write(self, records: Sequence[DecisionRecord]) -> None:
        """Insert the batch in one transaction: all of it is stored, or (raising) none."""
        self._write([(r.ts, r.request_id, self._kind(r)) for r in records], _same)

    def write_rows(self, rows: Sequence[Row]) -> None:
        """`write` for records as the writer process receives them (`Row`). A row's kind is
        looked up by the row's own fields, so a batch of one template encodes its JSON
        columns once and builds no record."""
        self._write([(r[0], r[1], r[2:]) for r in rows], _kind_of_row)

    def _write(
        self, entries: Sequence[tuple[float, str, Hashable]], kind_of: Callable[[Any], _Kind]
    ) -> None:
        """(time, request id, key) per record; `kind_of(key)` is the key's kind."""
        self.open()
        conn = self._conn
        assert conn is not None
        try:
            conn.execute("BEGIN IMMEDIATE")
            added: dict[Hashable, int] = {}
            rows: list[tuple[float, str, int]] = []
            for ts, rid, key in entries:
                kid = self._kinds.get(key) or added.get(key)
                if kid is None:
                    kid = added[key] = self._kind_id(conn, kind_of(key))
                rows.append((ts, rid, kid))
            done = 0
            whole = len(rows) in self._sizes
            if not whole and len(self._sizes) < _SIZES:
                self._sizes.add(len(rows))
            while done < len(rows):
                left = len(rows) - done
                n = min(self._rows, left if whole else 1 << (left.bit_length() - 1))
                conn.execute(_insert(n), tuple(chain.from_iterable(rows[done : done + n])))
                done += n
            conn.execute("COMMIT")
        except BaseException:
            # Start afresh with the next batch: the file may have gone or been replaced.
            self.close()
            raise
        if added:
            if len(self._kinds) + len(added) > _KINDS:
                self._kinds.clear()
            self._kinds.update(added)

    def _kind(self, r: DecisionRecord) -> _Kind:
        missing, sources, stripped = self._json_columns.of(r)
        return (
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

    @staticmethod
    def _kind_id(conn: sqlite3.Connection, kind: _Kind) -> int:
        """The id of `kind` in the file (another process may have added it), added if new.
        Inside the batch's transaction: writers of one file take turns."""
        found = conn.execute(_FIND_KIND, kind).fetchone()
        if found is not None:
            return int(found[0])
        cur = conn.execute(_ADD_KIND, kind)
        assert cur.lastrowid is not None
        return cur.lastrowid

    def write_sightings(self, batch: Sequence[Seen]) -> None:
        """Count a batch of report sightings into `bypasses`, in one transaction."""
        self._with_conn(lambda conn: write_sightings(conn, batch))

    def write_rollups(self, rows: Sequence[RollupRow]) -> None:
        """Add per-minute counts to `rollups`, in one transaction."""
        self._with_conn(lambda conn: write_rollups(conn, rows))

    def prune(self, cut: Cutoffs) -> Pruned:
        """Retention: delete what is older than the cutoffs, in bounded transactions."""
        return self._with_conn(lambda conn: prune(conn, cut))

    def _with_conn(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        self.open()
        conn = self._conn
        assert conn is not None
        try:
            return fn(conn)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        conn, self._conn = self._conn, None
        # the file may be replaced before it is opened again: its kinds are learnt anew
        self._kinds.clear()
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
    """The sinks `cfg` configures, none opened yet (the SQLite file with backend sqlite
    only: PostgreSQL's writer is `postgres.PostgresHost`, on the event loop)."""
    sinks: list[Sink] = []
    if cfg.sqlite_path is not None and cfg.backend == StoreBackend.SQLITE:
        sinks.append(SqliteSink(cfg.sqlite_path))
    if cfg.jsonl is not None:
        sinks.append(JsonlSink(cfg.jsonl))
    return sinks
