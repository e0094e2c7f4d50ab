"""gateway.decision_log.sinks: the SQLite table and the JSON lines, against real files."""

from __future__ import annotations

import sqlite3
from dataclasses import fields
from datetime import datetime
from pathlib import Path

import orjson
import pytest

from gateway.decision_log.record import DecisionRecord
from gateway.decision_log.sinks import JsonlSink, SqliteSink
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


def test_a_batch_in_one_statement_stores_what_row_by_row_stores(tmp_path: Path) -> None:
    """The JSON batch insert and the executemany fallback give identical rows."""
    records = [
        make_record("r1"),
        make_record(
            "r2", action="strip", stripped=("query:gclid", "ip:truncate"), report_only=True
        ),
        make_record("r3", vendor=None, endpoint=None, regime=None, missing=(), sources={}),
        make_record("r4", reason='quote " backslash \\ tab \t and ünïcode', ts=T0 + 0.125),
    ]
    stored = []
    for use_json in (True, False):
        sink = SqliteSink(tmp_path / f"{use_json}.db")
        sink.open()
        sink._json = use_json
        sink.write(records)
        sink.close()
        with sqlite3.connect(tmp_path / f"{use_json}.db") as conn:
            stored.append(conn.execute("SELECT * FROM decisions ORDER BY id").fetchall())
    assert stored[0] == stored[1] and len(stored[0]) == len(records)
