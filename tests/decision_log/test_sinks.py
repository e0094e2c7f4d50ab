"""gateway.decision_log.sinks: the SQLite table and the JSON lines, against real files."""

from __future__ import annotations

import sqlite3
from dataclasses import fields, replace
from datetime import datetime
from pathlib import Path

import orjson
import pytest

from gateway.decision_log import sinks
from gateway.decision_log.query import LogQuery, LogReader
from gateway.decision_log.record import DecisionRecord
from gateway.decision_log.sinks import COLUMNS, SCHEMA_VERSION, JsonlSink, SqliteSink
from gateway.decision_log.writer import DecisionLog
from gateway.metrics import Metrics
from tests.conftest import T0, log_config, log_written, make_record, store_records


def test_sqlite_schema(tmp_path: Path) -> None:
    db = tmp_path / "d.db"
    store_records(db, [make_record("a"), make_record("b"), make_record("c", action="strip")])
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 2
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        indexes = {r[1] for r in conn.execute("PRAGMA index_list(decision_rows)")}
        assert {"decision_rows_ts", "decision_rows_kind"} <= indexes
        # three records of two kinds
        assert conn.execute("SELECT COUNT(*) FROM decision_rows").fetchone()[0] == 3
        assert conn.execute("SELECT COUNT(*) FROM decision_kinds").fetchone()[0] == 2
        row = conn.execute("SELECT missing, sources, stripped FROM decisions").fetchone()
        assert row == ('["analytics"]', '{"analytics":"default:opt-in"}', "[]")
        conn.execute("PRAGMA user_version = 99")
        conn.commit()
    finally:
        conn.close()
    sink = SqliteSink(db)
    with pytest.raises(sqlite3.DatabaseError, match="newer"):
        sink.open()
    sink.close()


#: schema 1, as released: one wide table (kept here: the code only knows how to convert it)
_V1 = """
CREATE TABLE decisions (
    id INTEGER PRIMARY KEY, ts REAL NOT NULL, request_id TEXT NOT NULL,
    action TEXT NOT NULL, vendor TEXT, endpoint TEXT, missing TEXT NOT NULL,
    sources TEXT NOT NULL, regime TEXT, method TEXT NOT NULL, host TEXT NOT NULL,
    path TEXT NOT NULL, stripped TEXT NOT NULL, reason TEXT NOT NULL,
    report_only INTEGER NOT NULL
);
CREATE INDEX decisions_ts ON decisions (ts);
CREATE INDEX decisions_vendor ON decisions (vendor, ts);
CREATE INDEX decisions_action ON decisions (action, ts);
PRAGMA user_version = 1;
"""


def test_a_schema_1_file_is_converted_in_place_ids_and_records_kept(tmp_path: Path) -> None:
    db = tmp_path / "d.db"
    old = [
        make_record("r1"),
        make_record("r2", action="strip", stripped=("query:gclid",), report_only=True),
        make_record("r3", vendor=None, endpoint=None, regime=None, missing=(), sources={}),
        make_record("r4"),  # the kind of r1 again
    ]
    with sqlite3.connect(db) as conn:
        conn.executescript(_V1)
        conn.executemany(
            f"INSERT INTO decisions (id, {COLUMNS}) VALUES ({', '.join('?' * 15)})",
            [(10 * (i + 1), *_expected_row(r)) for i, r in enumerate(old)],
        )
    reader = LogReader(db)
    before = reader.records(LogQuery(limit=10))  # a reader reads schema 1 as it is
    counted = reader.counts()
    assert counted.total == 4 and counted.by_purpose == {"analytics": 3}
    sink = SqliteSink(db)
    sink.write([make_record("r5")])
    sink.close()
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
        assert conn.execute("SELECT COUNT(*) FROM decision_kinds").fetchone()[0] == 3
        ids = [r[0] for r in conn.execute("SELECT id FROM decisions ORDER BY id")]
    assert ids == [10, 20, 30, 40, 41]
    after = reader.records(LogQuery(limit=10))
    assert after[1:] == before
    assert reader.counts().by_vendor_action == {
        **counted.by_vendor_action,
        ("google-analytics-4", "drop"): 3,
    }
    assert after[0].request_id == "r5"


def test_a_batch_rolled_back_leaves_no_kind_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A kind added in a batch that failed is not remembered: the next batch adds it again
    and its rows are found through the view."""
    sink = SqliteSink(tmp_path / "d.db")
    sink.open()
    real = sinks._insert
    monkeypatch.setattr(sinks, "_insert", lambda n: "INSERT INTO nowhere VALUES (?)")
    with pytest.raises(sqlite3.OperationalError):
        sink.write([make_record("lost", vendor="new-vendor")])
    monkeypatch.setattr(sinks, "_insert", real)
    sink.write([make_record("kept", vendor="new-vendor")])
    sink.close()
    found = LogReader(tmp_path / "d.db").records(LogQuery(limit=10))
    assert [(r.request_id, r.vendor) for r in found] == [("kept", "new-vendor")]


def test_two_writers_of_one_file_share_its_kinds(tmp_path: Path) -> None:
    """Several gateway processes may write one file: each finds the kinds the other added."""
    a, b = SqliteSink(tmp_path / "d.db"), SqliteSink(tmp_path / "d.db")
    a.write([make_record("a1")])
    b.write([make_record("b1"), make_record("b2", action="strip")])
    a.write([make_record("a2", action="strip")])
    a.close()
    b.close()
    with sqlite3.connect(tmp_path / "d.db") as conn:
        assert conn.execute("SELECT COUNT(*) FROM decision_kinds").fetchone()[0] == 2
    found = LogReader(tmp_path / "d.db").records(LogQuery(limit=10))
    assert sorted((r.request_id, r.action) for r in found) == [
        ("a1", "drop"),
        ("a2", "strip"),
        ("b1", "drop"),
        ("b2", "strip"),
    ]


async def test_jsonl_file_sink(tmp_path: Path) -> None:
    target = tmp_path / "logs" / "decisions.jsonl"
    metrics = Metrics()
    records = [
        make_record("a", ts=T0 + 0.25),
        make_record("b", action="strip", stripped=("query:gclid",), report_only=True),
        make_record("c", action="reject", vendor=None, endpoint=None, regime=None, sources={}),
    ]
    for _ in range(2):  # a second run appends
        dlog = DecisionLog(log_config(tmp_path, sqlite_path=None, jsonl=str(target)), metrics)
        await dlog.start()
        for r in records:
            dlog.submit(r)
        await dlog.close()
    lines = target.read_bytes().splitlines()
    assert len(lines) == 6
    keys = {"ts_epoch"} | {f.name for f in fields(DecisionRecord)}
    for line, r in zip(lines, records * 2, strict=True):
        obj = orjson.loads(line)
        assert isinstance(obj, dict)
        assert set(obj) == keys
        assert obj["ts_epoch"] == r.ts
        assert obj["ts"].endswith("Z")
        assert datetime.fromisoformat(obj["ts"]).timestamp() == r.ts
        assert obj["request_id"] == r.request_id
        assert obj["stripped"] == list(r.stripped)
        assert obj["sources"] == dict(r.sources)
        assert obj["report_only"] is r.report_only
    assert log_written(metrics) == 6


@pytest.mark.parametrize("writer", ["process", "thread"])
async def test_jsonl_stdout_sink(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], writer: str
) -> None:
    """`-` is the gateway's standard output, written from the writer process too."""
    cfg = log_config(tmp_path, sqlite_path=None, jsonl="-", writer=writer)
    dlog = DecisionLog(cfg, Metrics())
    await dlog.start()
    dlog.submit(make_record("a"))
    dlog.submit(make_record("b"))
    await dlog.close()
    out = capfd.readouterr().out.splitlines()
    assert [orjson.loads(line)["request_id"] for line in out] == ["a", "b"]


def test_sinks_are_reusable_directly(tmp_path: Path) -> None:
    target = tmp_path / "x.jsonl"
    sink = JsonlSink(str(target))
    sink.open()
    sink.write([make_record("a")])
    sink.close()
    sink.close()
    assert orjson.loads(target.read_bytes())["request_id"] == "a"


_SHAPES = [
    make_record("r1"),
    make_record("r2", action="strip", stripped=("query:gclid", "ip:truncate"), report_only=True),
    make_record("r3", vendor=None, endpoint=None, regime=None, missing=(), sources={}),
    make_record("r4", reason='quote " backslash \\ tab \t and ünïcode', ts=T0 + 0.125),
]


def _expected_row(r: DecisionRecord) -> tuple[object, ...]:
    """A row as the schema defines it, written out here independently of the sink."""
    return (
        r.ts,
        r.request_id,
        r.action,
        r.vendor,
        r.endpoint,
        orjson.dumps(list(r.missing)).decode(),
        orjson.dumps(dict(r.sources)).decode(),
        r.regime,
        r.method,
        r.host,
        r.path,
        orjson.dumps(list(r.stripped)).decode(),
        r.reason,
        int(r.report_only),
    )


@pytest.mark.parametrize("size", [1, 4, 7, 256, 300, 2341])
def test_a_batch_is_stored_whole_and_in_order(tmp_path: Path, size: int) -> None:
    """Multi-row statements of every size a batch splits into store each record once,
    in order, as the schema says; records of one template share its JSON columns."""
    records = [replace(_SHAPES[i % 4], request_id=f"r{i}") for i in range(size)]
    sink = SqliteSink(tmp_path / "d.db")
    sink.write(records)  # a new size: statements of powers of two
    sink.write(records[:3])  # a second batch appends
    sink.write(records)  # a size seen before: one statement (a few past 2,340 rows)
    sink.close()
    with sqlite3.connect(tmp_path / "d.db") as conn:
        stored = conn.execute(f"SELECT {COLUMNS} FROM decisions ORDER BY id").fetchall()
    assert stored == [_expected_row(r) for r in records + records[:3] + records]


def test_equal_json_columns_of_different_records_are_not_confused(tmp_path: Path) -> None:
    sink = SqliteSink(tmp_path / "d.db")
    for n in range(50):  # fresh objects each time: ids may be reused after they are freed
        sink.write([make_record(f"r{n}", missing=(f"p{n}",), sources={f"p{n}": "cookie"})])
    sink.close()
    with sqlite3.connect(tmp_path / "d.db") as conn:
        stored = conn.execute("SELECT missing, sources FROM decisions ORDER BY id").fetchall()
    assert stored == [(f'["p{n}"]', f'{{"p{n}":"cookie"}}') for n in range(50)]
