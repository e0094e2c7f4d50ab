"""gateway.decision_log.hosts: the sinks in a thread or in a writer process, with the same
outcomes; the writer process's life (a crash costs one batch, signals meant for the
gateway do not end it, it ends with its gateway)."""

from __future__ import annotations

import asyncio
import logging
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType

import pytest

from gateway.decision_log.bypasses import Seen
from gateway.decision_log.hosts import (
    Host,
    Outcome,
    ProcessHost,
    ThreadHost,
    _dumps,
    _record,
    _rows,
    host_for,
)
from gateway.decision_log.query import MAX_QUERY_LIMIT, LogQuery, LogReader
from gateway.decision_log.record import DecisionRecord
from gateway.decision_log.rollups import Cutoffs, Pruned, RollupRow
from gateway.decision_log.writer import DecisionLog
from gateway.metrics import Metrics
from gateway.violations import Sighting
from tests.conftest import T0, log_config, log_lost, log_written, make_record

ROOT = Path(__file__).resolve().parents[2]


def stored(db: Path) -> list[DecisionRecord]:
    return LogReader(db).records(LogQuery(limit=MAX_QUERY_LIMIT))


def stored_ids(db: Path) -> list[str]:
    return sorted(r.request_id for r in stored(db))


def test_a_record_crosses_to_the_writer_process_whole() -> None:
    """Every field but the stored id, in the order the record takes them, its `sources`
    view sent as its pairs (once for records sharing it)."""
    shared = MappingProxyType({"analytics": "cookie", "ads": "gpc"})
    records = [
        make_record(
            f"r{i}",
            ts=T0 + i,
            action="strip",
            vendor=None,
            endpoint=None,
            missing=("ads", "analytics"),
            sources=shared,
            regime=None,
            stripped=("query:cid", "cookie:_ga"),
            reason="stripped",
            report_only=True,
        )
        for i in range(3)
    ]
    data = _dumps(("write", _rows(records)))
    assert int.from_bytes(data[:4], "big") == len(data) - 4
    op, rows = pickle.loads(data[4:])
    assert op == "write"
    assert [_record(row) for row in rows] == records
    assert rows[0][6] is rows[2][6] and rows[0][6] == tuple(shared.items())


def test_the_config_names_the_host(tmp_path: Path) -> None:
    assert isinstance(host_for(log_config(tmp_path, writer="process")), ProcessHost)
    assert isinstance(host_for(log_config(tmp_path, writer="thread")), ThreadHost)
    both = host_for(log_config(tmp_path, jsonl=str(tmp_path / "d.jsonl")))
    assert both.names == ("sqlite", "jsonl")
    assert both.keeps_sightings
    assert not host_for(log_config(tmp_path, sqlite_path=None, jsonl="-")).keeps_sightings


#: written once the SQLite destination is back: kinds of both shapes of `sources` (a
#: dict, and `record_for`'s read-only view), names stripped, report-only
LATE = [
    make_record("c", ts=T0 + 2),
    make_record("d", ts=T0 + 3, sources=MappingProxyType({"ads": "tcf", "analytics": "gpc"})),
    make_record("e", ts=T0 + 4, stripped=("query:gclid",), report_only=True),
]


async def _session(host: Host, blocked: Path, db: Path, jsonl: Path) -> list[object]:
    """One log's calls, with the SQLite destination missing for the first write."""
    sighting = Sighting("csp", "bypass", "meta-pixel", "www.facebook.com", "/cart")
    out: list[object] = [await host.open()]
    out.append(await host.write([make_record("a", ts=T0), make_record("b", ts=T0 + 1)]))
    blocked.unlink()  # the destination comes back
    out.append(await host.write(LATE))
    out.append(await host.write_sightings([Seen(sighting, T0)]))
    out.append(await host.write_rollups([RollupRow(int(T0) // 60 * 60, "ga4", "drop", "", "", 2)]))
    # retention: the records before T0 + 2.5 ("c") and rollups of minutes before T0's go
    out.append(await host.prune(Cutoffs(T0 + 2.5, int(T0) // 60 * 60, 0)))
    out.append(await host.close())
    out.append([replace(r, id=None) for r in reversed(stored(db))])
    out.append(jsonl.read_text())
    return out


async def test_a_thread_and_a_process_give_the_same_outcomes(tmp_path: Path) -> None:
    """The log counts what its host answers: both hosts answer alike, outages included."""
    runs: dict[str, list[object]] = {}
    for writer in ("thread", "process"):
        home = tmp_path / writer
        home.mkdir()
        blocked = home / "data"
        blocked.write_text("a file where the database folder should be")
        db = blocked / "decisions.db"
        jsonl = home / "d.jsonl"
        cfg = log_config(home, writer=writer, sqlite_path=db, jsonl=str(jsonl))
        runs[writer] = await _session(host_for(cfg), blocked, db, jsonl)
    # the failures name each run's own file
    thread, process = (repr(runs[w]).replace(str(tmp_path / w), "~") for w in runs)
    assert thread == process
    opened, first, second, seen, rolled, pruned, closed, records, lines = runs["process"]
    failure = f"FileExistsError: [Errno 17] File exists: '{tmp_path / 'process' / 'data'}'"
    assert opened == first == [Outcome("sqlite", failure), Outcome("jsonl")]
    assert second == [Outcome("sqlite"), Outcome("jsonl")]
    assert seen == rolled == Outcome("sqlite")
    assert pruned == (Outcome("sqlite"), Pruned(records=1))
    assert closed == [Outcome("sqlite"), Outcome("jsonl")]
    assert records == LATE[1:]
    assert isinstance(lines, str) and len(lines.splitlines()) == 5


@pytest.fixture
async def process_log(tmp_path: Path) -> tuple[DecisionLog, Metrics, Path]:
    metrics = Metrics()
    cfg = log_config(tmp_path, writer="process", batch_size=10)
    dlog = DecisionLog(cfg, metrics)
    await dlog.start()
    assert cfg.sqlite_path is not None
    return dlog, metrics, cfg.sqlite_path


async def _log(dlog: DecisionLog, request_id: str) -> int | None:
    """Log one record and wait until it is written or lost; the writer process's id then
    (None: it is gone, and the next batch starts another)."""
    dlog.submit(make_record(request_id))
    await dlog.drain()
    host = dlog.host
    assert isinstance(host, ProcessHost)
    return host.pid


async def test_a_writer_process_that_dies_costs_one_batch(
    process_log: tuple[DecisionLog, Metrics, Path], caplog: pytest.LogCaptureFixture
) -> None:
    dlog, metrics, db = process_log
    try:
        first = await _log(dlog, "before")
        assert first is not None
        os.kill(first, signal.SIGKILL)
        with caplog.at_level(logging.WARNING, logger="gateway.decision_log.writer"):
            assert await _log(dlog, "lost") is None
        assert log_lost(metrics, "sink_error") == 1
        assert "writer process gone" in caplog.text
        assert "lost" not in caplog.text.replace("records lost", "")
        assert await _log(dlog, "after") not in (None, first)  # started afresh
    finally:
        await dlog.close()
    assert stored_ids(db) == ["after", "before"]
    assert log_written(metrics) == 2


async def test_signals_meant_for_the_gateway_do_not_end_the_writer(
    process_log: tuple[DecisionLog, Metrics, Path],
) -> None:
    """Ctrl-C and a service manager's SIGTERM reach the whole process group; the writer
    outlives them until the gateway closes the log, so the last batch is written."""
    dlog, metrics, db = process_log
    try:
        pid = await _log(dlog, "a")
        assert pid is not None
        os.kill(pid, signal.SIGTERM)
        os.kill(pid, signal.SIGINT)
        assert await _log(dlog, "b") == pid
    finally:
        await dlog.close()
    assert stored_ids(db) == ["a", "b"]
    assert log_lost(metrics, "sink_error") == 0


_GATEWAY_THAT_DIES = """
import asyncio, os, sys
from pathlib import Path
from gateway.decision_log.writer import DecisionLog
from gateway.metrics import Metrics
from gateway.violations import Sighting
from tests.conftest import log_config, make_record

async def main():
    dlog = DecisionLog(log_config(Path(sys.argv[1]), writer="process"), Metrics())
    await dlog.start()
    dlog.submit(make_record("written"))
    await dlog.drain()
    print(dlog.host.pid, flush=True)
    os._exit(0)  # no close: the gateway is gone

asyncio.run(main())
"""


def _ended(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state == "Z"  # exited, its new parent not reaping yet


def test_the_writer_process_ends_with_its_gateway(tmp_path: Path) -> None:
    script = tmp_path / "gateway_that_dies.py"
    script.write_text(textwrap.dedent(_GATEWAY_THAT_DIES))
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    pid = int(done.stdout.split()[0])
    deadline = time.monotonic() + 30
    while not _ended(pid):
        assert time.monotonic() < deadline, "the writer process outlived its gateway"
        time.sleep(0.01)
    assert stored_ids(tmp_path / "data" / "decisions.db") == ["written"]


async def test_a_closed_process_host_answers_without_a_process(tmp_path: Path) -> None:
    host = ProcessHost(log_config(tmp_path, writer="process"))
    assert host.pid is None
    assert await host.close() == [Outcome("sqlite")]
    await asyncio.sleep(0)
    assert host.pid is None
