"""Reading the decision log back: `LogReader` over its SQLite file, and the filters.

`LogReader(path)` answers `consent-gateway logs` (`records`, `max_id` for `--follow`)
and the admin page (`records` and `record` for the log, `groups` for its grouped view,
`counts` for the overview, `timeline`, `vendor_shares` and `consent_shares` from the
rollups (`rollups_query`), `unknown_hosts` for the unknown-destinations view,
`bypasses` for the Bypasses view). It opens the
file read-only for each query and never creates it: no file or no `decisions` table
(yet) reads as empty. Every SQLite failure (a file that is not SQLite or is corrupt,
unreadable, locked past the busy timeout, a table of another shape) is raised as
`LogUnavailable`, whose message names the file and the failure and never record
contents: callers never see `sqlite3.Error`.

`parse_since` turns `--since` (and the admin API's `since`) into epoch seconds.
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

import orjson

from gateway.decision_log.bypasses import Bypass, read_bypasses
from gateway.decision_log.record import DecisionRecord
from gateway.decision_log.rollups_query import (
    PurposeShare,
    Timeline,
    VendorShare,
    consent_shares,
    timeline,
    vendor_shares,
)
from gateway.decision_log.sinks import COLUMNS, json_text
from gateway.errors import LogUnavailable

__all__ = [
    "MAX_QUERY_LIMIT",
    "DecisionCounts",
    "GroupKey",
    "LogQuery",
    "LogReader",
    "RecordGroup",
    "UnknownHost",
    "UnknownPath",
    "check_limit",
    "parse_since",
    "record_of",
]

#: the largest `LogQuery.limit` (the admin API passes visitor-chosen limits through).
MAX_QUERY_LIMIT: Final = 10_000


def check_limit(limit: int) -> None:
    """The one bound on how many rows a query returns (the admin API passes visitor-chosen
    limits through): `ValueError` outside 1..`MAX_QUERY_LIMIT`."""
    if not 1 <= limit <= MAX_QUERY_LIMIT:
        raise ValueError(f"limit must be between 1 and {MAX_QUERY_LIMIT}")


@dataclass(frozen=True, slots=True)
class GroupKey:
    """What identical records share: the Blocked page groups records by it."""

    #: None for an unknown destination
    vendor: str | None
    endpoint: str | None
    action: str
    #: sorted, as records hold it
    missing: tuple[str, ...]
    reason: str


@dataclass(frozen=True, slots=True)
class RecordGroup:
    """Records of one `GroupKey`: how many, and the first and last one's time."""

    key: GroupKey
    count: int
    #: epoch seconds
    first_seen: float
    last_seen: float


@dataclass(frozen=True, slots=True)
class LogQuery:
    """A filter over stored records.

    `since` is inclusive and `until` exclusive (epoch seconds). `purpose` matches
    records whose `missing` list contains it. `after_id` pages forward for `--follow`.
    `limit` is 1..`MAX_QUERY_LIMIT` (`ValueError` otherwise).

    Keyset paging through the newest-first order (`ts`, then `id`, both descending),
    for the admin page: `before_id` keeps the records that come after record
    `before_id` in that order (older ones: the next page when it is the last id of
    this one); `newer_than_id` keeps those that come before it, nearest first (the
    previous page, read backwards). A cursor id that is not stored matches nothing.
    At most one of `after_id`, `before_id`, `newer_than_id` (`ValueError` otherwise).
    `group` keeps the records of one group (`LogReader.groups`) only.
    """

    since: float | None = None
    until: float | None = None
    vendor: str | None = None
    action: str | None = None
    purpose: str | None = None
    regime: str | None = None
    limit: int = 100
    after_id: int | None = None
    before_id: int | None = None
    newer_than_id: int | None = None
    group: GroupKey | None = None

    def __post_init__(self) -> None:
        check_limit(self.limit)
        cursors = (self.after_id, self.before_id, self.newer_than_id)
        if sum(c is not None for c in cursors) > 1:
            raise ValueError("at most one of after_id, before_id, newer_than_id")


@dataclass(frozen=True, slots=True)
class DecisionCounts:
    """How many records a time window holds, for the admin overview."""

    #: (vendor, or None for an unknown destination; action) -> records
    by_vendor_action: Mapping[tuple[str | None, str], int]
    #: purpose -> records that were missing it
    by_purpose: Mapping[str, int]
    #: every record in the window
    total: int


@dataclass(frozen=True, slots=True)
class UnknownHost:
    """A destination the gateway rejected because no rule lists it."""

    #: as logged (`sanitize_host`: a name without userinfo, port or parameters, or `{…}`)
    host: str
    count: int
    #: epoch seconds of the first and the last rejected request in the window
    first_seen: float
    last_seen: float


@dataclass(frozen=True, slots=True)
class UnknownPath:
    """One shape of the requests to an unknown destination: what a rule's draft is made of."""

    #: as logged (`sanitize_method`)
    method: str
    #: as logged: a template (`sanitize_path`), `{…}` for each value, no query
    path: str
    count: int


class LogReader:
    """Read-only queries over the decision log's SQLite file at `path`.

    Synchronous (the CLI calls it directly, the admin page through an executor). It
    holds no connection between queries, so one reader serves any thread. Every
    method raises `LogUnavailable` for a file it cannot read (see the module).
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def records(self, q: LogQuery) -> list[DecisionRecord]:
        """Records matching `q`: newest first; with `q.after_id` oldest first from it
        (by id); with `q.newer_than_id` oldest first from it (by time, then id).
        No file or no table yet -> `[]`.
        """
        with self._connect() as conn:
            if conn is None:
                return []
            where, args = _where(q)
            sql = f"SELECT id, {COLUMNS} FROM decisions"
            if where:
                sql += " WHERE " + " AND ".join(where)
            if q.after_id is not None:
                sql += " ORDER BY id ASC"
            elif q.newer_than_id is not None:
                sql += " ORDER BY ts ASC, id ASC"
            else:
                sql += " ORDER BY ts DESC, id DESC"
            sql += " LIMIT ?"
            args.append(q.limit)
            conn.row_factory = sqlite3.Row
            return [_record_from_row(row) for row in conn.execute(sql, args)]

    def record(self, record_id: int) -> DecisionRecord | None:
        """The record stored as `record_id`; None when there is none (or no log yet)."""
        with self._connect() as conn:
            if conn is None:
                return None
            conn.row_factory = sqlite3.Row
            row = conn.execute(
                f"SELECT id, {COLUMNS} FROM decisions WHERE id = ?", (record_id,)
            ).fetchone()
        return _record_from_row(row) if row is not None else None

    def groups(self, q: LogQuery) -> list[RecordGroup]:
        """Records matching `q`'s filters (its cursors ignored) grouped by `GroupKey`, with
        each group's count and first and last time: the most recently seen group first
        (then the largest), at most `q.limit` groups. No file or table yet -> `[]`.
        """
        q = replace(q, after_id=None, before_id=None, newer_than_id=None)
        with self._connect() as conn:
            if conn is None:
                return []
            if _has_kinds(conn):
                sql, args = _groups_of_kinds(q)
            else:
                where, args = _where(q)
                sql = (
                    "SELECT vendor, endpoint, action, missing, reason, COUNT(*) AS n,"
                    " MIN(ts), MAX(ts) AS last FROM decisions"
                )
                if where:
                    sql += " WHERE " + " AND ".join(where)
                sql += (
                    " GROUP BY vendor, endpoint, action, missing, reason"
                    " ORDER BY last DESC, n DESC LIMIT ?"
                )
            rows = conn.execute(sql, [*args, q.limit]).fetchall()
        return [
            RecordGroup(GroupKey(v, e, str(a), _str_tuple(m), str(r)), int(n), float(lo), float(hi))
            for v, e, a, m, r, n, lo, hi in rows
        ]

    def timeline(self, since: float, until: float, buckets: int) -> Timeline:
        """Requests (every tag request, from the rollups) by action over `[since, until)`,
        in about `buckets` buckets of whole minutes (`rollups_query.timeline`)."""
        with self._connect() as conn:
            return timeline(conn, since, until, buckets)

    def vendor_shares(self, since: float, until: float) -> list[VendorShare]:
        """Per vendor, requests, blocked and stripped over `[since, until)`, from the
        rollups; the largest blocked share first (`rollups_query.vendor_shares`)."""
        with self._connect() as conn:
            return vendor_shares(conn, since, until)

    def consent_shares(
        self, since: float, until: float, purposes: Sequence[str] = ()
    ) -> list[PurposeShare]:
        """Per purpose, the share of requests over `[since, until)` not missing it, from
        the rollups (`rollups_query.consent_shares`)."""
        with self._connect() as conn:
            return consent_shares(conn, since, until, purposes)

    def counts(self, since: float | None = None) -> DecisionCounts:
        """Records since `since` (inclusive; None: all), counted by vendor and action, and
        by missing purpose (a record missing two purposes counts once for each).
        No file or table yet -> all zero.
        """
        with self._connect() as conn:
            if conn is None:
                return DecisionCounts(MappingProxyType({}), MappingProxyType({}), 0)
            where = "WHERE ts >= ?" if since is not None else ""
            args = [since] if since is not None else []
            # Schema 2: per kind, its range of the (kind, ts) index counted in place (as
            # cheap for an hour as for a year: a site has a few hundred kinds); schema 1 (a
            # file not converted yet) counts its wide rows.
            if _has_kinds(conn):
                window = "AND ts >= ?" if since is not None else ""
                table = (
                    "(SELECT k.vendor AS vendor, k.action AS action, k.missing AS missing, "
                    "(SELECT COUNT(*) FROM decision_rows AS r WHERE r.kind = k.id "
                    f"{window}) AS n FROM decision_kinds AS k)"
                )
            else:
                table = f"(SELECT vendor, action, missing, 1 AS n FROM decisions {where})"
            pairs = conn.execute(
                f"SELECT vendor, action, SUM(n) FROM {table} GROUP BY vendor, action "
                "HAVING SUM(n) > 0",
                args,
            ).fetchall()
            purposes = conn.execute(
                f"SELECT m.value, SUM(t.n) FROM {table} AS t, json_each(t.missing) AS m "
                "GROUP BY m.value HAVING SUM(t.n) > 0",
                args,
            ).fetchall()
        by_pair = {(v, str(a)): int(n) for v, a, n in pairs}
        return DecisionCounts(
            by_vendor_action=MappingProxyType(by_pair),
            by_purpose=MappingProxyType({str(p): int(n) for p, n in purposes}),
            total=sum(by_pair.values()),
        )

    def unknown_hosts(self, since: float | None = None, limit: int = 100) -> list[UnknownHost]:
        """Hosts of rejected requests for no vendor (action `reject`, vendor NULL) since
        `since` (inclusive; None: all), grouped by host, most requests first (then the
        most recently seen, then by name), at most `limit` (1..`MAX_QUERY_LIMIT`).

        No file or table yet -> `[]`. Raises `ValueError` for a bad `limit`.
        """
        check_limit(limit)
        sql = (
            "SELECT host, COUNT(*) AS n, MIN(ts), MAX(ts) AS last FROM decisions"
            " WHERE action = 'reject' AND vendor IS NULL"
        )
        tail = " GROUP BY host ORDER BY n DESC, last DESC, host ASC LIMIT ?"
        rows = self._rejected(sql, [], since, tail, limit)
        return [
            UnknownHost(str(h), int(n), float(first), float(last)) for h, n, first, last in rows
        ]

    def unknown_paths(
        self, host: str, since: float | None = None, limit: int = 100
    ) -> list[UnknownPath]:
        """The (method, path template) pairs of rejected requests to `host` for no vendor
        (as `unknown_hosts` counts them) since `since` (inclusive; None: all), most
        requests first (then by method and path), at most `limit` (1..`MAX_QUERY_LIMIT`).

        No file or table yet -> `[]`. Raises `ValueError` for a bad `limit`.
        """
        check_limit(limit)
        sql = (
            "SELECT method, path, COUNT(*) AS n FROM decisions"
            " WHERE action = 'reject' AND vendor IS NULL AND host = ?"
        )
        tail = " GROUP BY method, path ORDER BY n DESC, method ASC, path ASC LIMIT ?"
        rows = self._rejected(sql, [host], since, tail, limit)
        return [UnknownPath(str(m), str(p), int(n)) for m, p, n in rows]

    def _rejected(
        self, sql: str, args: list[object], since: float | None, tail: str, limit: int
    ) -> list[Any]:
        """Rows of an unknown-destination query: `sql` (its WHERE begun), since `since`,
        then `tail` (grouping, order, LIMIT ?). No file or table yet -> `[]`."""
        if since is not None:
            sql += " AND ts >= ?"
            args = [*args, since]
        with self._connect() as conn:
            if conn is None:
                return []
            rows: list[Any] = conn.execute(sql + tail, [*args, limit]).fetchall()
        return rows

    def bypasses(
        self, since: float | None = None, limit: int = 100, kind: str | None = None
    ) -> list[Bypass]:
        """The `bypasses` rows (hosts pages tried to reach around the gateway) last seen
        since `since` (inclusive; None: all), optionally of one `kind` (`bypass`,
        `unlisted`), most reports first, at most `limit` (1..`MAX_QUERY_LIMIT`). Counts
        and first-seen times are since the row began, not since `since`.

        No file or table yet -> `[]`. Raises `ValueError` for a bad `limit`.
        """
        check_limit(limit)
        with self._connect() as conn:
            if conn is None:
                return []
            return read_bypasses(conn, since, limit, kind)

    def max_id(self) -> int:
        """The newest stored row id (0: none yet), where `logs --follow` starts."""
        with self._connect() as conn:
            if conn is None:
                return 0
            value = conn.execute("SELECT MAX(id) FROM decisions").fetchone()[0]
        return int(value) if value is not None else 0

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection | None]:
        """A read-only connection for one query, closed after it (None: no decision log
        yet), with every SQLite failure, opening or querying, as `LogUnavailable`."""
        try:
            conn = _connect_ro(self.path)
            try:
                yield conn
            finally:
                if conn is not None:
                    conn.close()
        except sqlite3.Error as e:
            # SECURITY: SQLite's message names the failure, never row contents.
            raise LogUnavailable(f"{self.path}: {type(e).__name__}: {e}") from e


def _groups_of_kinds(q: LogQuery) -> tuple[str, list[object]]:
    """`groups` over schema 2: each kind that passes `q`'s filters counted over its range
    of the (kind, ts) index, then kinds summed into groups. Grouping the `decisions`
    view's rows instead took 5.6 s for a day of a million records; this, a quarter
    second (a site has a few hundred kinds)."""
    where, args = _where(replace(q, since=None, until=None), table="k")
    span: list[str] = ["r.kind = k.id"]
    times: list[object] = []
    for clause, value in (("r.ts >= ?", q.since), ("r.ts < ?", q.until)):
        if value is not None:
            span.append(clause)
            times.append(value)
    rows = " FROM decision_rows AS r WHERE " + " AND ".join(span)
    sql = (
        "SELECT vendor, endpoint, action, missing, reason, SUM(n) AS n, MIN(lo),"
        " MAX(hi) AS last FROM (SELECT k.vendor AS vendor, k.endpoint AS endpoint,"
        " k.action AS action, k.missing AS missing, k.reason AS reason,"
        f" (SELECT COUNT(*){rows}) AS n, (SELECT MIN(r.ts){rows}) AS lo,"
        f" (SELECT MAX(r.ts){rows}) AS hi FROM decision_kinds AS k"
    )
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += (
        ") AS t WHERE n > 0 GROUP BY vendor, endpoint, action, missing, reason"
        " ORDER BY last DESC, n DESC LIMIT ?"
    )
    return sql, [*times, *times, *times, *args]


def _where(q: LogQuery, table: str = "decisions") -> tuple[list[str], list[object]]:
    """The WHERE conditions of `q` over `decisions` (or, without times and cursors,
    over `table` with the same columns), and their arguments."""
    where: list[str] = []
    args: list[object] = []
    for clause, value in (
        ("ts >= ?", q.since),
        ("ts < ?", q.until),
        ("vendor = ?", q.vendor),
        ("action = ?", q.action),
        ("regime = ?", q.regime),
        ("id > ?", q.after_id),
        ("(ts, id) < (SELECT ts, id FROM decisions WHERE id = ?)", q.before_id),
        ("(ts, id) > (SELECT ts, id FROM decisions WHERE id = ?)", q.newer_than_id),
        (f"EXISTS (SELECT 1 FROM json_each({table}.missing) WHERE value = ?)", q.purpose),
    ):
        if value is not None:
            where.append(clause)
            args.append(value)
    g = q.group
    if g is not None:
        # NULL-safe equality in plain SQL; `missing` is compared as the JSON text the
        # sink writes (one encoding per list), so a group is matched without json_each.
        where.append(
            "(vendor = ? OR (vendor IS NULL AND ? IS NULL))"
            " AND (endpoint = ? OR (endpoint IS NULL AND ? IS NULL))"
            " AND action = ? AND missing = ? AND reason = ?"
        )
        args += [g.vendor, g.vendor, g.endpoint, g.endpoint, g.action]
        args += [json_text(list(g.missing)), g.reason]
    return where, args


def _connect_ro(db_path: Path) -> sqlite3.Connection | None:
    """A read-only connection, or None when there is no decision log (yet) at `db_path`."""
    if not db_path.is_file():
        return None
    uri = db_path.resolve().as_uri() + "?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=5.0)
    except sqlite3.OperationalError:
        return None  # removed between the check and the open
    try:
        found = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type IN ('table', 'view') AND name = 'decisions'"
        ).fetchone()
    except BaseException:
        conn.close()
        raise
    if found is None:
        conn.close()
        return None
    return conn


def _has_kinds(conn: sqlite3.Connection) -> bool:
    """Whether the file has schema 2's tables (`decisions` is then a view over them)."""
    found = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'decision_kinds'"
    ).fetchone()
    return found is not None


def _str_tuple(text: str) -> tuple[str, ...]:
    value = orjson.loads(text)
    return tuple(str(v) for v in value) if isinstance(value, list) else ()


def _record_from_row(row: sqlite3.Row) -> DecisionRecord:
    return record_of(row, _str_tuple(row["missing"]), _str_tuple(row["stripped"]))


def record_of(row: Any, missing: tuple[str, ...], stripped: tuple[str, ...]) -> DecisionRecord:
    """A stored row (read by column name: a `sqlite3.Row`, an asyncpg record) as a record,
    whichever backend: its lists decoded by the caller, `sources` as JSON text."""
    sources = orjson.loads(row["sources"])
    return DecisionRecord(
        ts=float(row["ts"]),
        request_id=row["request_id"],
        action=row["action"],
        vendor=row["vendor"],
        endpoint=row["endpoint"],
        missing=missing,
        sources=MappingProxyType(
            {str(k): str(v) for k, v in sources.items()} if isinstance(sources, dict) else {}
        ),
        regime=row["regime"],
        method=row["method"],
        host=row["host"],
        path=row["path"],
        stripped=stripped,
        reason=row["reason"],
        report_only=bool(row["report_only"]),
        id=int(row["id"]),
    )


_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_UNIT_SECONDS: Final = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def parse_since(text: str, now: float) -> float:
    """Epoch seconds for `--since`: a duration back from `now` or an ISO-8601 time.

    Durations: a number and one of `s m h d w` (`90s`, `30m`, `1h`, `2d`, `1.5h`).
    A timestamp without a UTC offset is taken as UTC. Anything else: `ValueError`.
    """
    text = text.strip()[:64]
    m = _DURATION.fullmatch(text)
    if m is not None:
        back = float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
        if back > _MAX_SINCE:
            # A bound keeps every query's time arithmetic finite (1000000000000d is not).
            raise ValueError(f"{text!r} is too far back: at most {_MAX_SINCE // 86400}d")
        return now - back
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{text!r} is neither a duration (90s, 30m, 1h, 2d) nor an ISO-8601 time"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    ts = when.timestamp()
    if ts < 0:
        raise ValueError(f"{text!r} is before 1970")
    return ts


#: the furthest back `parse_since` goes: a century, longer than any log is kept
_MAX_SINCE: Final = 100 * 365 * 86400
