"""The `bypasses` table: hosts pages tried to reach around the gateway, aggregated.

One row per (source, kind, vendor, host, page) with a count and the first and last
time seen, never one per report: a page loaded a million times with one blocked pixel
is one row. Hosts and pages are names (`gateway.violations`), but both are visitor-
chosen (anyone can post a report), so the table holds at most `MAX_ROWS` rows; a report
that would add a row past it is counted on its (source, kind, vendor) overflow row,
whose host and page are `OVERFLOW`, so no vendor's count is ever lost.

`write_sightings` runs in the decision log's writer thread (`writer.DecisionLog`),
`read_bypasses` in the reader (`query.LogReader.bypasses`). The table lives in the
decision log's SQLite file and is created with `SqliteSink`'s (`TABLE`), IF NOT EXISTS
on every open, so files written before it existed gain it without a schema change.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from gateway.violations import Sighting

__all__ = [
    "MAX_ROWS",
    "OVERFLOW",
    "TABLE",
    "Bypass",
    "Seen",
    "read_bypasses",
    "write_sightings",
]

#: distinct rows kept; past it new keys count on their overflow row
MAX_ROWS: Final = 10_000
#: the host and page of an overflow row
OVERFLOW: Final = "(over the row limit)"

TABLE: Final = """
CREATE TABLE IF NOT EXISTS bypasses (
    source TEXT NOT NULL,      -- csp | router
    kind TEXT NOT NULL,        -- bypass | unlisted
    vendor TEXT NOT NULL,      -- the rule's vendor id; '' for an unlisted host
    host TEXT NOT NULL,
    page TEXT NOT NULL,
    count INTEGER NOT NULL,
    first_seen REAL NOT NULL,
    last_seen REAL NOT NULL,
    PRIMARY KEY (source, kind, vendor, host, page)
);
CREATE INDEX IF NOT EXISTS bypasses_last ON bypasses (last_seen);
"""


@dataclass(frozen=True, slots=True)
class Seen:
    """A sighting and when it was reported (epoch seconds): what the writer queues."""

    sighting: Sighting
    ts: float


@dataclass(frozen=True, slots=True)
class Bypass:
    """One row of the table, as the admin shows it."""

    source: str
    kind: str
    vendor: str | None
    host: str
    page: str
    count: int
    first_seen: float
    last_seen: float


_Key = tuple[str, str, str, str, str]
_UPDATE: Final = (
    "UPDATE bypasses SET count = count + ?, first_seen = min(first_seen, ?),"
    " last_seen = max(last_seen, ?)"
    " WHERE source = ? AND kind = ? AND vendor = ? AND host = ? AND page = ?"
)
_INSERT: Final = "INSERT INTO bypasses VALUES (?, ?, ?, ?, ?, ?, ?, ?)"


def _aggregate(batch: Sequence[Seen]) -> dict[_Key, list[float]]:
    """key -> [count, first, last] over a batch."""
    out: dict[_Key, list[float]] = {}
    for item in batch:
        s = item.sighting
        key = (s.source, s.kind, s.vendor or "", s.host, s.page)
        agg = out.get(key)
        if agg is None:
            out[key] = [1, item.ts, item.ts]
        else:
            agg[0] += 1
            agg[1], agg[2] = min(agg[1], item.ts), max(agg[2], item.ts)
    return out


def _add(conn: sqlite3.Connection, key: _Key, n: float, first: float, last: float) -> bool:
    """Add to an existing row; False when there is none."""
    return conn.execute(_UPDATE, (int(n), first, last, *key)).rowcount > 0


def write_sightings(conn: sqlite3.Connection, batch: Sequence[Seen], cap: int = MAX_ROWS) -> None:
    """Add a batch to the table in one transaction (the caller's connection, in
    autocommit mode): existing rows are counted up, new keys inserted up to `cap`
    rows, and past it counted on their overflow row."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        rows = int(conn.execute("SELECT COUNT(*) FROM bypasses").fetchone()[0])
        for key, (n, first, last) in _aggregate(batch).items():
            if _add(conn, key, n, first, last):
                continue
            if rows >= cap:
                # SECURITY: visitors choose hosts and pages; the table's size is ours.
                key = (*key[:3], OVERFLOW, OVERFLOW)
                if _add(conn, key, n, first, last):
                    continue
            conn.execute(_INSERT, (*key, int(n), first, last))
            rows += 1
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def read_bypasses(
    conn: sqlite3.Connection, since: float | None, limit: int, kind: str | None = None
) -> list[Bypass]:
    """Rows last seen since `since` (None: all), most reports first, then the most
    recent; at most `limit`. No table yet -> `[]`."""
    found = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'bypasses'"
    ).fetchone()
    if found is None:
        return []
    where: list[str] = []
    args: list[object] = []
    if since is not None:
        where.append("last_seen >= ?")
        args.append(since)
    if kind is not None:
        where.append("kind = ?")
        args.append(kind)
    sql = "SELECT source, kind, vendor, host, page, count, first_seen, last_seen FROM bypasses"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY count DESC, last_seen DESC, host ASC, page ASC LIMIT ?"
    args.append(limit)
    return [
        Bypass(str(s), str(k), str(v) or None, str(h), str(p), int(n), float(f), float(last))
        for s, k, v, h, p, n, f, last in conn.execute(sql, args)
    ]
