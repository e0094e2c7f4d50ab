"""gateway.decision_log.sinks: the SQLite table and the JSON lines, against real files."""

from __future__ import annotations

import sqlite3
from dataclasses import fields, replace
from datetime import datetime
from pathlib import Path

import orjson
import pytest

from gateway.decision_log.record import DecisionRecord
from gateway.decision_log.sinks import COLUMNS, JsonlSink, SqliteSink
from gateway.decision_log.writer import DecisionLog
from gateway.metrics import Metrics
from tests.conftest import T0, log_config, log_written, make_record, store_records


def test_sqlite_schema(tmp_path: Path) -> None:
    db = tmp_path / "d.db"
    store_records(db, [make_record("a")])
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        indexes = {r[1] for r in conn.execute("PRAGMA index_list(decisions)")}
        assert {"decisions_ts", "decisions_vendor", "decisions_action"} <= indexes
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


async def test_jsonl_stdout_sink(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dlog = DecisionLog(log_config(tmp_path, sqlite_path=None, jsonl="-"), Metrics())
    await dlog.start()
    dlog.submit(make_record("a"))
    dlog.submit(make_record("b"))
    await dlog.close()
    out = capsys.readouterr().out.splitlines()
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


@pytest.mark.parametrize("size", [1, 4, 7, 256, 300, 1000])
def test_a_batch_is_stored_whole_and_in_order(tmp_path: Path, size: int) -> None:
    """Multi-row statements of every size a batch splits into store each record once,
    in order, as the schema says; records of one template share its JSON columns."""
    records = [replace(_SHAPES[i % 4], request_id=f"r{i}") for i in range(size)]
    sink = SqliteSink(tmp_path / "d.db")
    sink.write(records)
    sink.write(records[:3])  # a second batch appends
    sink.close()
    with sqlite3.connect(tmp_path / "d.db") as conn:
        stored = conn.execute(f"SELECT {COLUMNS} FROM decisions ORDER BY id").fetchall()
    assert stored == [_expected_row(r) for r in records + records[:3]]


def test_equal_json_columns_of_different_records_are_not_confused(tmp_path: Path) -> None:
    sink = SqliteSink(tmp_path / "d.db")
    for n in range(50):  # fresh objects each time: ids may be reused after they are freed
        sink.write([make_record(f"r{n}", missing=(f"p{n}",), sources={f"p{n}": "cookie"})])
    sink.close()
    with sqlite3.connect(tmp_path / "d.db") as conn:
        stored = conn.execute("SELECT missing, sources FROM decisions ORDER BY id").fetchall()
    assert stored == [(f'["p{n}"]', f'{{"p{n}":"cookie"}}') for n in range(50)]
