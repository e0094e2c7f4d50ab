"""gateway.decision_log.query: `LogReader` over real SQLite files (its queries and its
error mapping), `LogQuery` and `parse_since`."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from gateway.decision_log.query import (
    MAX_QUERY_LIMIT,
    GroupKey,
    LogQuery,
    LogReader,
    RecordGroup,
    UnknownHost,
    UnknownPath,
    parse_since,
)
from gateway.decision_log.rollups_query import PurposeShare, VendorShare
from gateway.errors import GatewayError, LogUnavailable
from tests.conftest import LOG_ROWS, PATH_ROWS, T0, UNKNOWN_ROWS, make_record, store_records


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (LogQuery(), "edcba"),
        (LogQuery(since=T0 + 20), "edc"),
        (LogQuery(until=T0 + 20), "ba"),
        (LogQuery(since=T0 + 10, until=T0 + 30), "cb"),
        (LogQuery(vendor="ga4"), "ba"),
        (LogQuery(action="drop"), "ca"),
        (LogQuery(purpose="advertising"), "ecb"),
        (LogQuery(purpose="analytics"), "ca"),
        (LogQuery(purpose="advert"), ""),
        (LogQuery(regime="us"), "ec"),
        (LogQuery(vendor="meta", action="drop"), "c"),
        (LogQuery(vendor="%"), ""),
        (LogQuery(limit=2), "ed"),
        (LogQuery(after_id=2), "cde"),
        (LogQuery(after_id=2, limit=1), "c"),
        (LogQuery(after_id=2, vendor="meta"), "ce"),
        (LogQuery(after_id=5), ""),
        (LogQuery(before_id=4), "cba"),
        (LogQuery(before_id=4, limit=2), "cb"),
        (LogQuery(before_id=1), ""),
        (LogQuery(before_id=5, vendor="meta"), "c"),
        (LogQuery(before_id=99), ""),
        (LogQuery(newer_than_id=2), "cde"),
        (LogQuery(newer_than_id=2, limit=2), "cd"),
        (LogQuery(newer_than_id=5), ""),
        (LogQuery(newer_than_id=1, action="drop"), "c"),
        (LogQuery(newer_than_id=99), ""),
    ],
)
def test_records(log_db: Path, query: LogQuery, expected: str) -> None:
    assert "".join(r.request_id for r in LogReader(log_db).records(query)) == expected


def test_keyset_paging_follows_time_order_not_insertion_order(tmp_path: Path) -> None:
    # Written out of time order (a slow request, or two processes sharing the file):
    # pages follow the newest-first order (ts, then id), so nothing is skipped or repeated.
    db = tmp_path / "decisions.db"
    store_records(
        db,
        [
            make_record("x", ts=T0 + 5),
            make_record("y", ts=T0 + 1),
            make_record("z", ts=T0 + 9),
            make_record("w", ts=T0 + 5),
        ],
    )
    assert "".join(r.request_id for r in LogReader(db).records(LogQuery())) == "zwxy"
    first = LogReader(db).records(LogQuery(limit=2))
    second = LogReader(db).records(LogQuery(limit=2, before_id=first[-1].id))
    assert [r.request_id for r in first + second] == ["z", "w", "x", "y"]
    back = LogReader(db).records(LogQuery(limit=2, newer_than_id=second[0].id))
    assert [r.request_id for r in back] == ["w", "z"]


@pytest.mark.parametrize(
    "kw",
    [
        {"after_id": 1, "before_id": 2},
        {"after_id": 1, "newer_than_id": 2},
        {"before_id": 1, "newer_than_id": 2},
    ],
)
def test_query_takes_one_cursor(kw: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="at most one"):
        LogQuery(**kw)  # type: ignore[arg-type]  # only the cursor keys: ints


def test_query_round_trips_records(log_db: Path) -> None:
    stored = LogReader(log_db).records(LogQuery())[::-1]
    assert [r.id for r in stored] == [1, 2, 3, 4, 5]
    assert [replace(r, id=None) for r in stored] == LOG_ROWS


def test_query_missing_database(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "decisions.db"
    assert LogReader(missing).records(LogQuery()) == []
    assert not missing.parent.exists()  # read-only: never creates anything
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()
    assert LogReader(empty).records(LogQuery()) == []


# --- what cannot be read -------------------------------------------------------------------

#: a value only a visitor could have sent: no error message may ever quote it
VISITOR_VALUE = "GCLIDLEAK123"


def _nothing(path: Path) -> None:
    pass


def _folder_missing(path: Path) -> None:
    path.parent.rmdir()


def _a_directory(path: Path) -> None:
    path.mkdir()


def _no_table(path: Path) -> None:
    sqlite3.connect(path).close()


def _not_sqlite(path: Path) -> None:
    path.write_bytes(b"this is not a database " * 100)


def _another_shape(path: Path) -> None:
    conn = sqlite3.connect(path)
    try:
        conn.execute("CREATE TABLE decisions (note TEXT)")
        conn.execute("INSERT INTO decisions VALUES (?)", (VISITOR_VALUE,))
        conn.commit()
    finally:
        conn.close()


#: what is at the reader's path -> None (it reads as an empty log), or a part of the
#: SQLite message that `LogUnavailable` carries
FILES = [
    pytest.param(_nothing, None, id="no file"),
    pytest.param(_folder_missing, None, id="no folder"),
    pytest.param(_a_directory, None, id="a directory"),
    pytest.param(_no_table, None, id="no table yet"),
    pytest.param(_not_sqlite, "file is not a database", id="not SQLite"),
    pytest.param(_another_shape, "no such column", id="a table of another shape"),
]


def _counts(reader: LogReader) -> object:
    c = reader.counts()
    return c.total, dict(c.by_vendor_action), dict(c.by_purpose)


#: each query -> its result as plain values, and that result for an empty log
READS: dict[str, tuple[Callable[[LogReader], object], object]] = {
    "records": (lambda r: r.records(LogQuery()), []),
    "counts": (_counts, (0, {}, {})),
    "unknown_hosts": (lambda r: r.unknown_hosts(), []),
    "unknown_paths": (lambda r: r.unknown_paths("a.example"), []),
    "max_id": (lambda r: r.max_id(), 0),
}


@pytest.mark.parametrize("read", list(READS))
@pytest.mark.parametrize(("make", "failure"), FILES)
def test_reader_maps_what_it_cannot_read(
    tmp_path: Path, make: Callable[[Path], None], failure: str | None, read: str
) -> None:
    path = tmp_path / "data" / "decisions.db"
    path.parent.mkdir()
    make(path)
    query, empty = READS[read]
    if failure is None:
        assert query(LogReader(path)) == empty
        return
    with pytest.raises(LogUnavailable) as info:
        query(LogReader(path))
    message = str(info.value)
    assert isinstance(info.value, GatewayError)
    assert isinstance(info.value.__cause__, sqlite3.Error)
    assert str(path) in message and failure in message
    assert VISITOR_VALUE not in message


@pytest.mark.parametrize("limit", [0, -1, MAX_QUERY_LIMIT + 1])
def test_query_limit_is_bounded(limit: int) -> None:
    with pytest.raises(ValueError):
        LogQuery(limit=limit)


# --- aggregations for the admin page -------------------------------------------------------


def test_counts(log_db: Path) -> None:
    counts = LogReader(log_db).counts()
    assert counts.total == 5
    assert dict(counts.by_vendor_action) == {
        ("ga4", "drop"): 1,
        ("ga4", "strip"): 1,
        ("meta", "drop"): 1,
        ("meta", "forward"): 1,
        (None, "reject"): 1,
    }
    assert dict(counts.by_purpose) == {"analytics": 2, "advertising": 3}


@pytest.mark.parametrize(
    ("since", "total", "by_purpose"),
    [
        (T0 + 20, 3, {"advertising": 2, "analytics": 1}),
        (T0 + 40, 1, {"advertising": 1}),
        (T0 + 41, 0, {}),
    ],
)
def test_counts_since(log_db: Path, since: float, total: int, by_purpose: dict[str, int]) -> None:
    counts = LogReader(log_db).counts(since)
    assert counts.total == total == sum(counts.by_vendor_action.values())
    assert all(n > 0 for n in counts.by_vendor_action.values())  # no pair of nothing
    assert dict(counts.by_purpose) == by_purpose


def test_counts_without_database(tmp_path: Path) -> None:
    counts = LogReader(tmp_path / "none.db").counts()
    assert counts.total == 0 and not counts.by_vendor_action and not counts.by_purpose
    assert not (tmp_path / "none.db").exists()


@pytest.mark.parametrize(
    ("since", "limit", "expected"),
    [
        # most requests first, then the most recently seen, then by name
        (
            None,
            100,
            [
                ("a.example", 2, T0, T0 + 20),
                ("c.example", 1, T0 + 30, T0 + 30),
                ("b.example", 1, T0 + 10, T0 + 10),
            ],
        ),
        (None, 1, [("a.example", 2, T0, T0 + 20)]),
        (
            T0 + 5,
            100,
            [
                ("c.example", 1, T0 + 30, T0 + 30),
                ("a.example", 1, T0 + 20, T0 + 20),
                ("b.example", 1, T0 + 10, T0 + 10),
            ],
        ),
        (T0 + 31, 100, []),
    ],
)
def test_unknown_hosts(
    tmp_path: Path,
    since: float | None,
    limit: int,
    expected: list[tuple[str, int, float, float]],
) -> None:
    db = tmp_path / "decisions.db"
    store_records(db, UNKNOWN_ROWS)
    got = LogReader(db).unknown_hosts(since, limit)
    assert [(u.host, u.count, u.first_seen, u.last_seen) for u in got] == expected
    assert all(isinstance(u, UnknownHost) for u in got)


@pytest.mark.parametrize(
    ("since", "limit", "expected"),
    [
        # most requests first, then by method and path
        (
            None,
            100,
            [("POST", "/v1/{…}/events", 2), ("GET", "/px.gif", 1), ("GET", "/v1/{…}/events", 1)],
        ),
        (None, 1, [("POST", "/v1/{…}/events", 2)]),
        (T0 + 15, 100, [("GET", "/v1/{…}/events", 1), ("POST", "/v1/{…}/events", 1)]),
        (T0 + 31, 100, []),
    ],
)
def test_unknown_paths(
    tmp_path: Path, since: float | None, limit: int, expected: list[tuple[str, str, int]]
) -> None:
    db = tmp_path / "decisions.db"
    store_records(db, PATH_ROWS)
    got = LogReader(db).unknown_paths("a.example", since, limit)
    assert [(p.method, p.path, p.count) for p in got] == expected
    assert all(isinstance(p, UnknownPath) for p in got)
    assert LogReader(tmp_path / "none.db").unknown_paths("a.example") == []
    with pytest.raises(ValueError):
        LogReader(db).unknown_paths("a.example", limit=0)


def test_unknown_hosts_without_database_and_bad_limit(tmp_path: Path) -> None:
    assert LogReader(tmp_path / "none.db").unknown_hosts() == []
    for limit in (0, MAX_QUERY_LIMIT + 1):
        with pytest.raises(ValueError):
            LogReader(tmp_path / "none.db").unknown_hosts(limit=limit)


NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", NOW - 90),
        ("30m", NOW - 1800),
        ("1h", NOW - 3600),
        ("2d", NOW - 2 * 86400),
        ("1w", NOW - 7 * 86400),
        ("1.5h", NOW - 5400),
        (" 1h ", NOW - 3600),
        ("0s", NOW),
        ("2026-11-29T10:00:00Z", T0),
        ("2026-11-29T11:00:00+01:00", T0),
        ("2026-11-29T10:00:00", T0),
        ("2026-11-29 10:00", T0),
        ("2026-11-29", T0 - 10 * 3600),
    ],
)
def test_parse_since(text: str, expected: float) -> None:
    assert parse_since(text, NOW) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "h",
        "1y",
        "-1h",
        "1 h",
        "1H",
        "1h30m",
        "nan",
        "inf",
        "yesterday",
        "2026-13-01",
        "1000000000000d",  # accepted by the admin API before: a bound is a clear error
        "36501d",
        "1969-12-31T00:00:00Z",
    ],
)
def test_parse_since_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_since(text, NOW)


GA_DROP = GroupKey("ga4", "collect", "drop", ("analytics",), "analytics not granted")
META_DROP = GroupKey("meta", "collect", "drop", ("advertising", "analytics"), "ads")
UNKNOWN = GroupKey(None, None, "reject", (), "no rule")
#: a reject for an unknown destination
NO_RULE: dict[str, Any] = {
    "vendor": None,
    "endpoint": None,
    "action": "reject",
    "missing": (),
    "regime": None,
    "reason": "no rule",
}
#: three groups: GA4 drops at T0 and T0+30, a Meta drop at T0+10, rejects at T0+20 and T0+40
GROUP_ROWS = [
    make_record("g1", ts=T0, vendor="ga4"),
    make_record("m1", ts=T0 + 10, vendor="meta", missing=META_DROP.missing, reason="ads"),
    make_record("u1", ts=T0 + 20, **NO_RULE),
    make_record("g2", ts=T0 + 30, vendor="ga4", regime="us"),
    make_record("u2", ts=T0 + 40, **NO_RULE),
    # the same vendor and action, another reason: a group of its own
    make_record("g3", ts=T0 + 5, vendor="ga4", reason="analytics denied by gpc"),
]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (
            LogQuery(),
            [
                RecordGroup(UNKNOWN, 2, T0 + 20, T0 + 40),
                RecordGroup(GA_DROP, 2, T0, T0 + 30),
                RecordGroup(META_DROP, 1, T0 + 10, T0 + 10),
                RecordGroup(replace(GA_DROP, reason="analytics denied by gpc"), 1, T0 + 5, T0 + 5),
            ],
        ),
        (LogQuery(limit=1), [RecordGroup(UNKNOWN, 2, T0 + 20, T0 + 40)]),
        (LogQuery(since=T0 + 25, vendor="ga4"), [RecordGroup(GA_DROP, 1, T0 + 30, T0 + 30)]),
        (LogQuery(regime="us"), [RecordGroup(GA_DROP, 1, T0 + 30, T0 + 30)]),
        (LogQuery(purpose="advertising"), [RecordGroup(META_DROP, 1, T0 + 10, T0 + 10)]),
        (LogQuery(action="reject", until=T0 + 30), [RecordGroup(UNKNOWN, 1, T0 + 20, T0 + 20)]),
        (LogQuery(group=GA_DROP), [RecordGroup(GA_DROP, 2, T0, T0 + 30)]),
        # cursors are for records, not groups
        (LogQuery(group=UNKNOWN, before_id=5), [RecordGroup(UNKNOWN, 2, T0 + 20, T0 + 40)]),
    ],
)
@pytest.mark.parametrize("wide", [False, True], ids=["kinds", "wide"])
def test_groups(tmp_path: Path, query: LogQuery, expected: list[RecordGroup], wide: bool) -> None:
    """Schema 2 counts kinds over their index; a wide table (schema 1) groups its rows:
    the same groups."""
    db = tmp_path / "decisions.db"
    store_records(db, GROUP_ROWS)
    if wide:
        flat = tmp_path / "wide.db"
        with contextlib.closing(sqlite3.connect(flat)) as conn, conn:
            conn.execute("ATTACH DATABASE ? AS src", (str(db),))
            conn.execute("CREATE TABLE decisions AS SELECT * FROM src.decisions")
        db = flat
    assert LogReader(db).groups(query) == expected


@pytest.mark.parametrize(
    ("group", "expected"),
    [
        (GA_DROP, "g2 g1"),
        (UNKNOWN, "u2 u1"),
        (META_DROP, "m1"),
        (replace(META_DROP, missing=("advertising",)), ""),
        (replace(GA_DROP, endpoint=None), ""),
        (replace(UNKNOWN, vendor="ga4"), ""),
        (replace(GA_DROP, reason="analytics"), ""),
    ],
)
def test_records_of_a_group(tmp_path: Path, group: GroupKey, expected: str) -> None:
    """A group's raw rows: exact on every key field, NULL matching NULL only."""
    db = tmp_path / "decisions.db"
    store_records(db, GROUP_ROWS)
    found = LogReader(db).records(LogQuery(group=group))
    assert " ".join(r.request_id for r in found) == expected


def test_record_by_id(log_db: Path, tmp_path: Path) -> None:
    reader = LogReader(log_db)
    found = reader.record(3)
    assert found is not None and found.request_id == "c" and found.id == 3
    assert dict(found.sources) == {"analytics": "default:opt-in"}
    assert reader.record(99) is None
    assert LogReader(tmp_path / "none.db").record(1) is None
    assert LogReader(tmp_path / "none.db").groups(LogQuery()) == []


def test_reader_reads_rollups_in_the_log_file(tmp_path: Path) -> None:
    """The sink creates the rollups table next to `decisions`; the reader reads it."""
    db = tmp_path / "decisions.db"
    store_records(db, LOG_ROWS)
    minute = int(T0) // 60 * 60
    with sqlite3.connect(db) as conn:
        conn.executemany(
            "INSERT INTO rollups VALUES (?, ?, ?, ?, ?, ?)",
            [
                (minute, "ga4", "forward", "", "", 6),
                (minute, "ga4", "drop", "analytics", "opt-in", 2),
                (minute + 60, "", "reject", "", "", 2),
            ],
        )
    conn.close()
    reader = LogReader(db)
    t = reader.timeline(minute, minute + 120, 2)
    assert [dict(b.counts) for b in t.buckets] == [{"forward": 6, "drop": 2}, {"reject": 2}]
    assert reader.vendor_shares(minute, minute + 120) == [
        VendorShare("", 2, 2, 0),
        VendorShare("ga4", 8, 2, 0),
    ]
    assert reader.consent_shares(minute, minute + 120, ["analytics"]) == [
        PurposeShare("analytics", 10, 2)
    ]
    missing = LogReader(tmp_path / "none.db")
    assert missing.vendor_shares(minute, minute + 120) == []
    assert missing.timeline(minute, minute + 120, 2).total == 0
