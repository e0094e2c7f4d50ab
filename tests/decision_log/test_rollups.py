"""gateway.decision_log.rollups: the per-minute tally, and SQLite's rollups and retention."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from gateway.decision_log import rollups
from gateway.decision_log.rollups import (
    Cutoffs,
    Pruned,
    RollupRow,
    Tally,
    cutoffs,
    prune,
    write_rollups,
)
from gateway.decision_log.sinks import SqliteSink
from tests.conftest import T0, make_record, store_records

MINUTE = int(T0) // 60 * 60


def test_the_tally_counts_per_minute_and_key() -> None:
    t = Tally()
    for now, vendor, action, missing, regime in [
        (MINUTE + 1, "ga4", "drop", frozenset({"analytics"}), "opt-in"),
        (MINUTE + 59, "ga4", "drop", frozenset({"analytics"}), "opt-in"),
        (MINUTE + 60, "ga4", "drop", frozenset({"analytics"}), "opt-in"),  # the next minute
        (MINUTE + 2, "ga4", "forward", frozenset(), "opt-in"),
        (MINUTE + 3, None, "reject", frozenset(), None),
        (MINUTE + 4, "meta", "drop", frozenset({"functional", "advertising"}), "us"),
    ]:
        t.count(now, vendor, action, missing, regime)
    assert len(t) == 5
    assert sorted(t.take()) == [
        RollupRow(MINUTE, "", "reject", "", "", 1),
        RollupRow(MINUTE, "ga4", "drop", "analytics", "opt-in", 2),
        RollupRow(MINUTE, "ga4", "forward", "", "opt-in", 1),
        RollupRow(MINUTE, "meta", "drop", "advertising,functional", "us", 1),  # sorted
        RollupRow(MINUTE + 60, "ga4", "drop", "analytics", "opt-in", 1),
    ]
    assert t.take() == [] and len(t) == 0


def test_rows_given_back_are_added_to_what_came_since(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rollups, "MAX_KEYS", 2)
    t = Tally()
    t.count(MINUTE, "ga4", "drop", frozenset({"analytics", "advertising"}), "opt-in")
    failed = t.take()
    t.count(MINUTE, "ga4", "drop", frozenset({"analytics", "advertising"}), "opt-in")
    t.count(MINUTE, "meta", "drop", frozenset(), "opt-in")
    t.give_back(failed)
    assert sorted(t.take()) == [
        RollupRow(MINUTE, "ga4", "drop", "advertising,analytics", "opt-in", 2),
        RollupRow(MINUTE, "meta", "drop", "", "opt-in", 1),
    ]
    # past MAX_KEYS waiting keys, new keys are not counted but the loss is
    for vendor in ("a", "b", "c"):
        t.count(MINUTE, vendor, "drop", frozenset(), "opt-in")
    t.count(MINUTE, "a", "drop", frozenset(), "opt-in")  # an existing key still counts
    t.give_back([RollupRow(MINUTE, "z", "drop", "", "", 5)])
    assert sorted(t.take()) == [
        RollupRow(MINUTE, "a", "drop", "", "opt-in", 2),
        RollupRow(MINUTE, "b", "drop", "", "opt-in", 1),
    ]
    assert t.lost == 1 + 5


def test_cutoffs() -> None:
    hours = int(T0 - 2 * 86400) // 3600 * 3600
    assert cutoffs(86400, 400 * 86400, now=T0) == Cutoffs(
        T0 - 86400, int(T0 - 400 * 86400) // 60 * 60, hours
    )


def _sink(tmp_path: Path) -> tuple[SqliteSink, sqlite3.Connection]:
    sink = SqliteSink(tmp_path / "decisions.db")
    sink.open()
    return sink, sqlite3.connect(tmp_path / "decisions.db", isolation_level=None)


def _rollups(conn: sqlite3.Connection) -> list[tuple[object, ...]]:
    return sorted(conn.execute("SELECT * FROM rollups").fetchall())


def test_rollups_add_up_in_the_sqlite_file(tmp_path: Path) -> None:
    sink, conn = _sink(tmp_path)
    try:
        sink.write_rollups([RollupRow(MINUTE, "ga4", "drop", "analytics", "opt-in", 2)])
        sink.write_rollups(
            [
                RollupRow(MINUTE, "ga4", "drop", "analytics", "opt-in", 3),
                RollupRow(MINUTE, "ga4", "forward", "", "opt-in", 7),
            ]
        )
        assert _rollups(conn) == [
            (MINUTE, "ga4", "drop", "analytics", "opt-in", 5),
            (MINUTE, "ga4", "forward", "", "opt-in", 7),
        ]
    finally:
        sink.close()
        conn.close()


def test_retention_deletes_in_bounded_batches_and_keeps_the_rest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rollups, "PRUNE_BATCH", 3)  # several transactions for 8 old rows
    db = tmp_path / "decisions.db"
    store_records(db, [make_record(f"old{i}", ts=T0 - 100 - i) for i in range(8)])
    store_records(db, [make_record("new", ts=T0)])
    sink, conn = _sink(tmp_path)
    try:
        sink.write_rollups(
            [
                RollupRow(MINUTE - 600, "ga4", "drop", "", "", 1),
                RollupRow(MINUTE - 60, "ga4", "drop", "", "", 2),
                RollupRow(MINUTE, "ga4", "drop", "", "", 3),
            ]
        )
        conn.execute(
            "INSERT INTO bypasses VALUES ('router', 'bypass', 'ga4', 'h', '/', 1, ?, ?)",
            (T0 - 500, T0 - 500),
        )
        assert sink.prune(Cutoffs(T0 - 50, MINUTE - 60, 0)) == Pruned(records=8, rollups=1)
        assert [r[0] for r in conn.execute("SELECT request_id FROM decisions")] == ["new"]
        assert [r[0] for r in _rollups(conn)] == [MINUTE - 60, MINUTE]
        assert conn.execute("SELECT count(*) FROM bypasses").fetchone()[0] == 0
        assert sink.prune(Cutoffs(T0 - 50, MINUTE - 60, 0)) == Pruned()  # nothing left to delete
    finally:
        sink.close()
        conn.close()


def test_write_rollups_is_one_transaction(tmp_path: Path) -> None:
    sink, conn = _sink(tmp_path)
    sink.close()
    try:
        with pytest.raises(sqlite3.Error):
            # a row of the wrong width fails the whole batch: nothing half-added
            write_rollups(
                conn,
                [RollupRow(MINUTE, "a", "drop", "", "", 1), (MINUTE, "b")],  # type: ignore[list-item]
            )
        assert _rollups(conn) == []
        assert prune(conn, Cutoffs(T0, MINUTE, 0)) == Pruned()
    finally:
        conn.close()


HOUR = MINUTE // 3600 * 3600


def test_minutes_older_than_two_days_are_summed_into_their_hours(tmp_path: Path) -> None:
    sink, conn = _sink(tmp_path)
    try:
        sink.write_rollups(
            [
                RollupRow(HOUR, "ga4", "drop", "analytics", "opt-in", 1),  # the hour's row
                RollupRow(HOUR + 60, "ga4", "drop", "analytics", "opt-in", 2),
                RollupRow(HOUR + 3540, "ga4", "drop", "analytics", "opt-in", 3),
                RollupRow(HOUR + 120, "meta", "strip", "", "us", 4),  # a key of its own
                RollupRow(HOUR + 3600, "ga4", "drop", "analytics", "opt-in", 5),  # next hour
                RollupRow(HOUR + 3660, "ga4", "drop", "analytics", "opt-in", 6),
            ]
        )
        pruned = sink.prune(Cutoffs(0, 0, HOUR + 3600))  # the first hour is old enough
        assert pruned == Pruned(compacted=3)
        assert _rollups(conn) == [
            (HOUR, "ga4", "drop", "analytics", "opt-in", 6),
            (HOUR, "meta", "strip", "", "us", 4),
            (HOUR + 3600, "ga4", "drop", "analytics", "opt-in", 5),
            (HOUR + 3660, "ga4", "drop", "analytics", "opt-in", 6),
        ]
        assert sink.prune(Cutoffs(0, 0, HOUR + 3600)) == Pruned()  # already hours
    finally:
        sink.close()
        conn.close()
