"""gateway.decision_log.bypasses: the aggregated table, its row cap, its reader, and the
writer's path to it (off the event loop, through the decision log's queue)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from gateway.decision_log.bypasses import (
    OVERFLOW,
    Bypass,
    Seen,
    read_bypasses,
    write_sightings,
)
from gateway.decision_log.query import LogQuery, LogReader
from gateway.decision_log.sinks import SqliteSink
from gateway.decision_log.writer import DecisionLog
from gateway.metrics import Metrics
from gateway.violations import Sighting
from tests.conftest import T0, log_config, log_lost, make_record

FB = Sighting("csp", "bypass", "meta-pixel", "www.facebook.com", "/cart")
UNLISTED = Sighting("router", "unlisted", None, "cdn.tracker.example", "/")


@pytest.fixture
def conn(tmp_path: Path) -> sqlite3.Connection:
    sink = SqliteSink(tmp_path / "d.db")
    sink.open()
    sink.close()
    return sqlite3.connect(tmp_path / "d.db", isolation_level=None)


def rows(conn: sqlite3.Connection) -> list[Bypass]:
    return read_bypasses(conn, None, 1000)


def test_reports_are_counted_per_key_with_first_and_last_seen(conn: sqlite3.Connection) -> None:
    write_sightings(conn, [Seen(FB, T0 + 5), Seen(FB, T0), Seen(UNLISTED, T0 + 1)])
    write_sightings(conn, [Seen(FB, T0 + 9)])
    assert rows(conn) == [
        Bypass("csp", "bypass", "meta-pixel", "www.facebook.com", "/cart", 3, T0, T0 + 9),
        Bypass("router", "unlisted", None, "cdn.tracker.example", "/", 1, T0 + 1, T0 + 1),
    ]


def test_past_the_row_cap_new_keys_count_on_their_overflow_row(conn: sqlite3.Connection) -> None:
    hosts = [Sighting("router", "unlisted", None, f"h{i}.example", "/") for i in range(5)]
    write_sightings(conn, [Seen(s, T0) for s in hosts[:3]], cap=3)
    write_sightings(conn, [Seen(s, T0 + 1) for s in hosts], cap=3)
    write_sightings(conn, [Seen(FB, T0 + 2), Seen(hosts[0], T0 + 2)], cap=3)
    found = {(b.host, b.vendor): b.count for b in rows(conn)}
    # existing rows still count; 2 unlisted and 1 meta-pixel report overflowed, by vendor
    assert found == {
        ("h0.example", None): 3,
        ("h1.example", None): 2,
        ("h2.example", None): 2,
        (OVERFLOW, None): 2,
        (OVERFLOW, "meta-pixel"): 1,
    }


def test_a_failed_batch_is_rolled_back_whole(conn: sqlite3.Connection) -> None:
    write_sightings(conn, [Seen(FB, T0)])

    broken = Sighting("csp", "bypass", "x", None, "/")  # type: ignore[arg-type]
    with pytest.raises(sqlite3.IntegrityError):
        write_sightings(conn, [Seen(FB, T0 + 1), Seen(broken, T0)])
    assert [b.count for b in rows(conn)] == [1]


@pytest.mark.parametrize(
    ("since", "kind", "hosts"),
    [
        (None, None, ["www.facebook.com", "cdn.tracker.example"]),
        (T0 + 50, None, ["cdn.tracker.example"]),
        (None, "bypass", ["www.facebook.com"]),
        (None, "unlisted", ["cdn.tracker.example"]),
    ],
)
def test_the_reader_filters_by_last_seen_and_kind(
    tmp_path: Path,
    conn: sqlite3.Connection,
    since: float | None,
    kind: str | None,
    hosts: list[str],
) -> None:
    write_sightings(conn, [Seen(FB, T0), Seen(FB, T0 + 1), Seen(UNLISTED, T0 + 100)])
    found = LogReader(tmp_path / "d.db").bypasses(since, 10, kind)
    assert [b.host for b in found] == hosts


def test_the_reader_of_a_log_without_the_table_is_empty(tmp_path: Path) -> None:
    assert LogReader(tmp_path / "none.db").bypasses() == []
    db = tmp_path / "old.db"
    with sqlite3.connect(db) as c:
        c.execute("CREATE TABLE decisions (id INTEGER PRIMARY KEY)")
    assert LogReader(db).bypasses() == []
    with pytest.raises(ValueError):
        LogReader(db).bypasses(limit=0)


async def test_sightings_go_through_the_writer_queue(tmp_path: Path) -> None:
    cfg = log_config(tmp_path)
    log = DecisionLog(cfg, Metrics())
    await log.start()
    assert log.submit_sighting(Seen(FB, T0))
    assert log.submit(make_record("r1"))
    assert log.submit_sighting(Seen(FB, T0 + 1))
    await log.drain()
    assert cfg.sqlite_path is not None
    reader = LogReader(cfg.sqlite_path)
    assert [(b.host, b.count) for b in reader.bypasses()] == [("www.facebook.com", 2)]
    assert [r.request_id for r in reader.records(LogQuery())] == ["r1"]
    await log.close()
    assert not log.submit_sighting(Seen(FB, T0))


async def test_without_a_sqlite_sink_sightings_are_discarded(tmp_path: Path) -> None:
    log = DecisionLog(log_config(tmp_path, sqlite_path=None), Metrics())
    await log.start()
    assert log.submit_sighting(Seen(FB, T0))
    assert log.depth == 0
    await log.close()


async def test_sightings_leave_half_the_queue_to_decision_records(tmp_path: Path) -> None:
    metrics = Metrics()
    log = DecisionLog(log_config(tmp_path, queue_size=10), metrics)  # not started: queue fills
    accepted = [log.submit_sighting(Seen(FB, T0)) for _ in range(8)]
    assert accepted == [True] * 5 + [False] * 3
    assert all(log.submit(make_record(f"r{i}")) for i in range(5))
    assert log_lost(metrics, "queue_full") == 3
    await log.close()
