"""gateway.decision_log.rollups_query: the rollups' readers over a real SQLite file,
with rows inserted directly (the gateway's writer is not needed to read them)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

import pytest

from gateway.decision_log.rollups_query import (
    MAX_BUCKETS,
    ROLLUPS_TABLE,
    PurposeShare,
    VendorShare,
    consent_shares,
    timeline,
    vendor_shares,
)

#: a minute boundary
M0 = 1_764_000_000 // 60 * 60

#: (minute offset, vendor, action, missing, regime, n)
ROWS = [
    (0, "ga4", "forward", "", "opt-out", 10),
    (0, "ga4", "drop", "analytics", "opt-in", 5),
    (1, "ga4", "strip", "advertising", "opt-in", 3),
    (1, "meta", "drop", "advertising,analytics", "opt-in", 4),
    (2, "meta", "forward", "", "", 4),
    (3, "", "reject", "", "", 2),
    (9, "ga4", "forward", "", "", 100),  # outside the window [M0, M0 + 5 min)
]
WINDOW = (M0, M0 + 5 * 60)


@pytest.fixture
def conn() -> Iterator[sqlite3.Connection]:
    c = sqlite3.connect(":memory:")
    c.executescript(ROLLUPS_TABLE)
    c.executemany(
        "INSERT INTO rollups VALUES (?, ?, ?, ?, ?, ?)",
        [(M0 + m * 60, v, a, miss, r, n) for m, v, a, miss, r, n in ROWS],
    )
    try:
        yield c
    finally:
        c.close()


@pytest.mark.parametrize(
    ("since", "until", "buckets", "width", "expected"),
    [
        # one bucket a minute
        (
            M0,
            M0 + 300,
            5,
            60,
            [
                {"forward": 10, "drop": 5},
                {"strip": 3, "drop": 4},
                {"forward": 4},
                {"reject": 2},
                {},
            ],
        ),
        # two minutes a bucket: the last one holds a single minute of the window
        (
            M0,
            M0 + 300,
            3,
            120,
            [{"forward": 10, "drop": 9, "strip": 3}, {"forward": 4, "reject": 2}, {}],
        ),
        # a window not on minute boundaries widens to whole minutes
        (M0 + 30, M0 + 90, 10, 60, [{"forward": 10, "drop": 5}, {"strip": 3, "drop": 4}]),
        # more buckets than minutes: one a minute
        (M0 + 120, M0 + 180, 50, 60, [{"forward": 4}]),
        # everything in one
        (M0, M0 + 600, 1, 600, [{"forward": 114, "drop": 9, "strip": 3, "reject": 2}]),
    ],
)
def test_timeline(
    conn: sqlite3.Connection,
    since: float,
    until: float,
    buckets: int,
    width: int,
    expected: list[dict[str, int]],
) -> None:
    t = timeline(conn, since, until, buckets)
    assert t.width == width
    assert [dict(b.counts) for b in t.buckets] == expected
    lo = int(since) // 60 * 60
    assert [b.start for b in t.buckets] == [lo + i * width for i in range(len(expected))]
    assert t.total == sum(sum(e.values()) for e in expected)


def test_timeline_clamps_buckets_and_reads_nothing_without_a_table() -> None:
    assert len(timeline(None, M0, M0 + 86400 * 7, 10**6).buckets) <= MAX_BUCKETS
    assert len(timeline(None, M0, M0 + 600, 0).buckets) == 1
    empty = sqlite3.connect(":memory:")
    try:
        t = timeline(empty, M0, M0 + 180, 3)
        assert [dict(b.counts) for b in t.buckets] == [{}, {}, {}]
        assert vendor_shares(empty, *WINDOW) == []
        assert consent_shares(empty, *WINDOW, ["analytics"]) == [PurposeShare("analytics", 0, 0)]
    finally:
        empty.close()


def test_vendor_shares(conn: sqlite3.Connection) -> None:
    assert vendor_shares(conn, *WINDOW) == [
        VendorShare("", 2, 2, 0),  # every request blocked
        VendorShare("meta", 8, 4, 0),  # half
        VendorShare("ga4", 18, 5, 3),
    ]
    assert [s.blocked_share for s in vendor_shares(conn, *WINDOW)] == [1.0, 0.5, 5 / 18]
    assert vendor_shares(conn, M0 + 3600, M0 + 7200) == []


def test_consent_shares(conn: sqlite3.Connection) -> None:
    shares = consent_shares(conn, *WINDOW, ["necessary", "analytics", "advertising"])
    assert shares == [
        PurposeShare("necessary", 28, 0),
        PurposeShare("analytics", 28, 9),
        PurposeShare("advertising", 28, 7),
    ]
    assert [s.share for s in shares] == [1.0, 19 / 28, 21 / 28]
    # a purpose the config no longer lists still shows, after the configured ones
    assert [s.purpose for s in consent_shares(conn, *WINDOW, ["advertising"])] == [
        "advertising",
        "analytics",
    ]
    assert consent_shares(conn, M0 + 3600, M0 + 7200, ["analytics"])[0].share is None


def test_a_window_longer_than_the_minutes_kept_counts_in_whole_hours() -> None:
    """Past two days the rollups are hours (an hour's row holds all of it): the window
    starts on an hour and no bucket splits one."""
    c = sqlite3.connect(":memory:")
    c.executescript(ROLLUPS_TABLE)
    hour = 1_764_000_000 // 3600 * 3600
    c.execute("INSERT INTO rollups VALUES (?, 'ga4', 'drop', '', '', 7)", (hour,))
    since = hour + 1800 - 7 * 86400  # a week, starting mid-hour
    t = timeline(c, since, since + 7 * 86400, 60)
    assert t.width % 3600 == 0 and t.buckets[0].start % 3600 == 0
    assert t.total == 7 and sum(1 for b in t.buckets if b.total) == 1
    assert vendor_shares(c, hour + 1800 - 3 * 86400, hour + 1800)[0].total == 7
