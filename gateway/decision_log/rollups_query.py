"""Reading the per-minute rollups back: requests by action over time, by vendor, and the
share of requests that had each purpose's consent (the admin overview).

The gateway counts every tag request, forwarded ones included, into the `rollups`
table (`ROLLUPS_TABLE`, kept in the decision log's file next to `decisions`): one row
per (minute, vendor, action, missing purposes, regime) with its count `n`. These
readers take an open connection (`LogReader` opens it read-only) and a window of epoch
seconds, `since` inclusive and `until` exclusive, widened to whole minutes.

The SQL is plain standard SQL (GROUP BY, SUM, CASE, integer division, `?` parameters)
so that the PostgreSQL backend can run the same statements with its own placeholders.
A file without the table (a log written before rollups) reads as empty.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final

from gateway.decision_log.rollups import MINUTES_KEPT, ROLLUP_TABLE

__all__ = [
    "BLOCKED_ACTIONS",
    "MAX_BUCKETS",
    "ROLLUPS_TABLE",
    "Bucket",
    "PurposeShare",
    "Timeline",
    "VendorShare",
    "Statement",
    "consent_shares",
    "consent_shares_of",
    "consent_shares_query",
    "timeline",
    "timeline_of",
    "timeline_query",
    "vendor_shares",
    "vendor_shares_of",
    "vendor_shares_query",
]

#: the rollups' schema, with the writer's (`rollups`): `SqliteSink.open` creates it
ROLLUPS_TABLE: Final = ROLLUP_TABLE

#: actions that kept a request from its vendor altogether
BLOCKED_ACTIONS: Final = ("drop", "reject")
_MINUTE: Final = 60
_HOUR: Final = 3600
#: the most points a timeline has (a caller's `buckets` is clamped to 1..this)
MAX_BUCKETS: Final = 1440


@dataclass(frozen=True, slots=True)
class Bucket:
    """One point of a timeline: requests by action from `start` for the bucket's width."""

    #: epoch seconds, a multiple of 60
    start: int
    #: action -> requests (actions without any are absent)
    counts: Mapping[str, int]

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@dataclass(frozen=True, slots=True)
class Timeline:
    """Requests by action over a window: consecutive buckets of `width` seconds."""

    #: seconds per bucket, a multiple of 60
    width: int
    #: every bucket of the window, oldest first, empty ones included
    buckets: tuple[Bucket, ...]

    @property
    def total(self) -> int:
        return sum(b.total for b in self.buckets)


@dataclass(frozen=True, slots=True)
class VendorShare:
    """One vendor's requests over a window, and how many were blocked or stripped."""

    #: '' for requests to unknown destinations
    vendor: str
    total: int
    #: dropped or rejected
    blocked: int
    stripped: int

    @property
    def blocked_share(self) -> float:
        return self.blocked / self.total if self.total else 0.0


@dataclass(frozen=True, slots=True)
class PurposeShare:
    """How many requests over a window lacked consent for one purpose."""

    purpose: str
    #: every request in the window
    total: int
    #: the requests whose missing purposes named this one
    missing: int

    @property
    def share(self) -> float | None:
        """The share of requests not missing the purpose; None without requests."""
        return (self.total - self.missing) / self.total if self.total else None


def _minutes(since: float, until: float) -> tuple[int, int]:
    """The window as whole minutes: `since` rounded down, `until` rounded up; a window
    longer than the rollups stay per minute (`MINUTES_KEPT`) starts on an hour, since its
    oldest rows are hours (an hour's row holds its whole hour)."""
    step = _HOUR if until - since > MINUTES_KEPT else _MINUTE
    lo = math.floor(since / step) * step
    hi = math.ceil(until / _MINUTE) * _MINUTE
    return lo, max(hi, lo + _MINUTE)


def _has_rollups(conn: sqlite3.Connection) -> bool:
    found = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'rollups'"
    ).fetchone()
    return found is not None


#: a statement with `?` placeholders over `{table}`, and its arguments
Statement = tuple[str, list[object]]


def timeline_query(
    since: float, until: float, buckets: int, table: str = "rollups"
) -> tuple[Statement, int, int, int]:
    """The statement of `timeline`, and the window's first minute, the bucket width and
    the number of buckets, for `timeline_of`."""
    lo, hi = _minutes(since, until)
    n = min(max(buckets, 1), MAX_BUCKETS)
    # from the window asked for, not its widened minutes: a day in 60 is 24 min, not 25
    width = max(1, math.ceil((until - since) / (n * _MINUTE))) * _MINUTE
    if until - since > MINUTES_KEPT:
        # whole hours, so that no hour's row straddles two buckets
        width = math.ceil(width / _HOUR) * _HOUR
    count = -(-(hi - lo) // width)
    sql = (
        "SELECT b, action, SUM(n) FROM "
        f"(SELECT (minute - ?) / ? AS b, action, n FROM {table}"
        " WHERE minute >= ? AND minute < ?) AS t "
        "GROUP BY b, action"
    )
    return (sql, [lo, width, lo, hi]), lo, width, count


def timeline_of(rows: Sequence[Any], lo: int, width: int, count: int) -> Timeline:
    found: dict[int, dict[str, int]] = {}
    for b, action, total in rows:
        found.setdefault(int(b), {})[str(action)] = int(total)
    return Timeline(
        width,
        tuple(Bucket(lo + i * width, MappingProxyType(found.get(i, {}))) for i in range(count)),
    )


def timeline(conn: sqlite3.Connection | None, since: float, until: float, buckets: int) -> Timeline:
    """Requests by action in `[since, until)`, in about `buckets` buckets: the width is
    the window over `buckets` rounded up to whole minutes (at least one minute), the
    first bucket starts at `since`'s minute, and buckets run until `until`'s minute is
    covered (one more than `buckets` when the window is not on minute boundaries).
    `conn` None (no log yet): every bucket empty.
    """
    (sql, args), lo, width, count = timeline_query(since, until, buckets)
    rows = conn.execute(sql, args).fetchall() if conn is not None and _has_rollups(conn) else []
    return timeline_of(rows, lo, width, count)


def vendor_shares_query(since: float, until: float, table: str = "rollups") -> Statement:
    lo, hi = _minutes(since, until)
    sql = (
        "SELECT vendor, SUM(n),"
        " SUM(CASE WHEN action IN ('drop', 'reject') THEN n ELSE 0 END),"
        " SUM(CASE WHEN action = 'strip' THEN n ELSE 0 END)"
        f" FROM {table} WHERE minute >= ? AND minute < ? GROUP BY vendor"
    )
    return sql, [lo, hi]


def vendor_shares_of(rows: Sequence[Any]) -> list[VendorShare]:
    shares = [VendorShare(str(v), int(t), int(b), int(s)) for v, t, b, s in rows if t]
    return sorted(shares, key=lambda s: (-s.blocked_share, -s.total, s.vendor))


def vendor_shares(conn: sqlite3.Connection | None, since: float, until: float) -> list[VendorShare]:
    """Per vendor ('' for unknown destinations) with requests in `[since, until)`: its
    requests, how many were blocked (dropped or rejected) and stripped; the largest
    blocked share first, then the most requests, then by name."""
    if conn is None or not _has_rollups(conn):
        return []
    sql, args = vendor_shares_query(since, until)
    return vendor_shares_of(conn.execute(sql, args).fetchall())


def consent_shares_query(since: float, until: float, table: str = "rollups") -> Statement:
    lo, hi = _minutes(since, until)
    sql = f"SELECT missing, SUM(n) FROM {table} WHERE minute >= ? AND minute < ? GROUP BY missing"
    return sql, [lo, hi]


def consent_shares_of(rows: Sequence[Any], purposes: Sequence[str] = ()) -> list[PurposeShare]:
    by_missing = [(str(m), int(n)) for m, n in rows]
    total = sum(n for _, n in by_missing)
    lacked: dict[str, int] = dict.fromkeys(purposes, 0)
    extra: dict[str, int] = {}
    for names, n in by_missing:
        for p in filter(None, names.split(",")):
            if p in lacked:
                lacked[p] += n
            else:
                extra[p] = extra.get(p, 0) + n
    ordered = [*lacked.items(), *sorted(extra.items())]
    return [PurposeShare(p, total, n) for p, n in ordered]


def consent_shares(
    conn: sqlite3.Connection | None, since: float, until: float, purposes: Sequence[str] = ()
) -> list[PurposeShare]:
    """Per purpose, the requests in `[since, until)` and how many lacked it: `purposes`
    in their order (even when no request lacked them), then any other purpose a rollup
    names, sorted."""
    rows: list[Any] = []
    if conn is not None and _has_rollups(conn):
        sql, args = consent_shares_query(since, until)
        rows = conn.execute(sql, args).fetchall()
    return consent_shares_of(rows, purposes)
