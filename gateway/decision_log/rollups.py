"""Per-minute counts of every tag request, and what retention deletes.

The decision log stores the requests the gateway blocked or altered, row by row; it
does not store the forwarded ones, and its rows are deleted after
`decision_log.retention`. The admin overview's trends (blocked against total, the
consent share over months) come from here instead: one row per (minute, vendor,
action, missing purposes, regime) with a count, kept for `decision_log.rollup_retention`.
A site has a few hundred such keys a minute whatever its traffic.

- `Tally` counts on the hot path (a dict increment) and hands the counts to the writer,
  which adds them to the table of its backend (SQLite here, `postgres` there).
- `ROLLUP_TABLE`, `write_rollups` and `prune` are the SQLite side: the table lives in the
  decision log's file beside `decisions`, and `prune` is retention's bounded deletes
  (each batch its own transaction, so a writer or reader never waits long).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from typing import Final, NamedTuple

__all__ = [
    "MAX_KEYS",
    "MINUTES_KEPT",
    "ROLLUP_TABLE",
    "Cutoffs",
    "Pruned",
    "RollupRow",
    "Tally",
    "cutoffs",
    "prune",
    "write_rollups",
]

ROLLUP_TABLE: Final = """
CREATE TABLE IF NOT EXISTS rollups (
    minute INTEGER NOT NULL,   -- epoch seconds, a multiple of 60
    vendor TEXT NOT NULL,      -- rule vendor id; '' for an unknown destination
    action TEXT NOT NULL,      -- forward | strip | drop | reject
    missing TEXT NOT NULL,     -- purposes lacked, sorted, joined by ','; '' for none
    regime TEXT NOT NULL,      -- '' when none
    n INTEGER NOT NULL,
    PRIMARY KEY (minute, vendor, action, missing, regime)
) WITHOUT ROWID;
"""

#: keys held between two flushes at most: past it (a backend down for hours with many
#: vendors) new keys are not counted, and `Tally.lost` says how many requests that was
MAX_KEYS: Final = 200_000
#: rows deleted per transaction by SQLite retention
PRUNE_BATCH: Final = 5_000


class RollupRow(NamedTuple):
    minute: int
    vendor: str
    action: str
    missing: str
    regime: str
    n: int


#: (minute, vendor, action, missing purposes, regime): the set as the decision holds it,
#: so the hot path neither sorts nor joins
_Key = tuple[int, str, str, frozenset[str], str]


class Tally:
    """The counts since the last flush. Used from the event loop's thread only."""

    __slots__ = ("_counts", "lost")

    def __init__(self) -> None:
        self._counts: dict[_Key, int] = {}
        #: requests not counted because `MAX_KEYS` keys were waiting
        self.lost = 0

    def count(
        self,
        now: float,
        vendor: str | None,
        action: str,
        missing: frozenset[str],
        regime: str | None,
    ) -> None:
        key = (int(now) // 60 * 60, vendor or "", action, missing, regime or "")
        counts = self._counts
        n = counts.get(key)
        if n is not None:
            counts[key] = n + 1
        elif len(counts) < MAX_KEYS:
            # an `Action` is its value (a StrEnum): kept as a plain string, found by either
            counts[(key[0], key[1], str(action), missing, key[4])] = 1
        else:
            self.lost += 1

    def __len__(self) -> int:
        return len(self._counts)

    def take(self) -> list[RollupRow]:
        """The counts so far, as rows; the tally starts again from zero."""
        counts, self._counts = self._counts, {}
        return [
            RollupRow(minute, vendor, action, ",".join(sorted(missing)), regime, n)
            for (minute, vendor, action, missing, regime), n in counts.items()
        ]

    def give_back(self, rows: Sequence[RollupRow]) -> None:
        """Rows a backend could not take, added to what was counted since: the next flush
        tries them again (within `MAX_KEYS`)."""
        counts = self._counts
        for row in rows:
            missing = frozenset(row.missing.split(",")) if row.missing else frozenset()
            key = (row.minute, row.vendor, row.action, missing, row.regime)
            if key in counts or len(counts) < MAX_KEYS:
                counts[key] = counts.get(key, 0) + row.n
            else:
                self.lost += row.n


class Pruned(NamedTuple):
    """What one retention run deleted."""

    records: int = 0
    rollups: int = 0
    #: PostgreSQL: day partitions dropped (their records are counted in `records`, as
    #: the planner estimates them)
    partitions: int = 0
    #: another instance held the retention lease: this run did nothing
    skipped: bool = False
    #: minute rows summed into their hour's row
    compacted: int = 0


class Cutoffs(NamedTuple):
    """What one retention run deletes or compacts."""

    #: records (and bypass sightings last seen) before this time go
    records: float
    #: rollups of minutes before this go
    rollups: int
    #: rollups of minutes before this (an hour boundary) are summed into their hour
    hours: int


def cutoffs(retention: float, rollup_retention: float, now: float | None = None) -> Cutoffs:
    now = time.time() if now is None else now
    hours = int(now - MINUTES_KEPT) // 3600 * 3600
    return Cutoffs(now - retention, int(now - rollup_retention) // 60 * 60, hours)


#: how long rollups stay per minute; older ones are summed per hour (60 times fewer rows:
#: an overview of months reads hours, of the last day minutes)
MINUTES_KEPT: Final = 2 * 86400

#: rollups of minutes before `?` (an hour boundary) added to their hour's row, then deleted;
#: the hour's own first minute is that row, so it is never added to itself
COMPACT: Final = (
    "INSERT INTO {table} (minute, vendor, action, missing, regime, n) "
    "SELECT minute / 3600 * 3600, vendor, action, missing, regime, SUM(n) FROM {table} "
    "WHERE minute < ? AND minute % 3600 <> 0 GROUP BY minute / 3600 * 3600, vendor, action, "
    "missing, regime "
    "ON CONFLICT (minute, vendor, action, missing, regime) DO UPDATE SET n = {table}.n + excluded.n"
)
COMPACTED: Final = "DELETE FROM {table} WHERE minute < ? AND minute % 3600 <> 0"


_UPSERT: Final = (
    "INSERT INTO rollups (minute, vendor, action, missing, regime, n) VALUES (?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (minute, vendor, action, missing, regime) DO UPDATE SET n = n + excluded.n"
)


def write_rollups(conn: sqlite3.Connection, rows: Sequence[RollupRow]) -> None:
    """Add `rows` to the table in one transaction (`conn` in autocommit mode)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.executemany(_UPSERT, rows)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def prune(conn: sqlite3.Connection, cut: Cutoffs) -> Pruned:
    """Delete records older than `cut.records` (and bypass sightings last seen before
    it) and rollups of minutes before `cut.rollups`, `PRUNE_BATCH` rows per transaction;
    sum the minutes before `cut.hours` into their hours, in one. Kinds stay: they are
    few, and their ids must not be reused."""
    records = _in_batches(
        conn,
        "DELETE FROM decision_rows WHERE id IN "
        "(SELECT id FROM decision_rows WHERE ts < ? ORDER BY ts LIMIT ?)",
        cut.records,
    )
    _in_batches(
        conn,
        "DELETE FROM bypasses WHERE rowid IN "
        "(SELECT rowid FROM bypasses WHERE last_seen < ? LIMIT ?)",
        cut.records,
    )
    rollups = _in_batches(
        conn,
        "DELETE FROM rollups WHERE (minute, vendor, action, missing, regime) IN "
        "(SELECT minute, vendor, action, missing, regime FROM rollups WHERE minute < ? "
        "LIMIT ?)",
        cut.rollups,
    )
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(COMPACT.format(table="rollups"), (cut.hours,))
        compacted = conn.execute(COMPACTED.format(table="rollups"), (cut.hours,)).rowcount
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return Pruned(records, rollups, compacted=compacted)


def _in_batches(conn: sqlite3.Connection, sql: str, before: float) -> int:
    total = 0
    while True:
        n = conn.execute(sql, (before, PRUNE_BATCH)).rowcount
        total += n
        if n < PRUNE_BATCH:
            return total
