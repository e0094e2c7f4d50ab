"""gateway.cli.logs: `consent-gateway logs` lines, JSON, filters, `--follow` and exit codes."""

from __future__ import annotations

import asyncio
import io
import time
from functools import partial
from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway.cli.logs import format_record, run_logs, run_pg_logs
from gateway.decision_log.postgres import PostgresHost
from gateway.decision_log.record import DecisionRecord
from tests.conftest import LOG_ROWS, T0, make_record, store_records
from tests.stores import fresh_pg_schema, pg_dsn_in, pg_log_config


@pytest.mark.parametrize(
    ("record", "line"),
    [
        (
            make_record("x", regime="opt-in"),
            (
                "2026-11-29T10:00:00Z drop google-analytics-4/collect missing=analytics "
                "GET www.google-analytics.com/g/collect (regime=opt-in) analytics not granted"
            ),
        ),
        (
            make_record(
                "x",
                action="strip",
                missing=("advertising",),
                stripped=("query:gclid", "ip:truncate"),
                report_only=True,
                reason="r",
            ),
            (
                "2026-11-29T10:00:00Z strip [report-only] google-analytics-4/collect "
                "missing=advertising stripped=query:gclid,ip:truncate "
                "GET www.google-analytics.com/g/collect (regime=opt-in) r"
            ),
        ),
        (
            make_record(
                "x",
                action="reject",
                vendor=None,
                endpoint=None,
                missing=(),
                regime=None,
                host="evil.example",
                path="/x",
                reason="unknown destination",
            ),
            "2026-11-29T10:00:00Z reject - GET evil.example/x unknown destination",
        ),
        (
            make_record("x", endpoint=None, reason="bad\x1b[2Jline\n"),
            (
                "2026-11-29T10:00:00Z drop google-analytics-4 missing=analytics "
                "GET www.google-analytics.com/g/collect (regime=opt-in) bad?[2Jline?"
            ),
        ),
    ],
)
def test_format_record(record: DecisionRecord, line: str) -> None:
    assert format_record(record) == line


def logs(db: Path, **kw: Any) -> tuple[int, list[str]]:
    args: dict[str, Any] = {
        "since": None,
        "vendor": None,
        "action": None,
        "purpose": None,
        "as_json": False,
        "follow": False,
        "limit": 100,
    }
    args.update(kw)
    out = io.StringIO()
    code = run_logs(db, out=out, **args)
    return code, out.getvalue().splitlines()


def test_run_logs_prints_newest_at_the_bottom(log_db: Path) -> None:
    code, lines = logs(log_db, limit=3)
    assert code == 0
    assert lines == [format_record(r) for r in LOG_ROWS[2:]]


@pytest.mark.parametrize(
    ("kw", "expected"),
    [
        ({"vendor": "ga4"}, "ab"),
        ({"action": "drop"}, "ac"),
        ({"purpose": "analytics"}, "ac"),
        ({"since": "2026-11-29T10:00:20Z"}, "cde"),
    ],
)
def test_run_logs_json(log_db: Path, kw: dict[str, Any], expected: str) -> None:
    code, lines = logs(log_db, as_json=True, **kw)
    assert code == 0
    objs = [orjson.loads(line) for line in lines]
    assert "".join(o["request_id"] for o in objs) == expected
    assert all(isinstance(o["id"], int) and o["ts"].endswith("Z") for o in objs)


def test_run_logs_relative_since(tmp_path: Path) -> None:
    db = tmp_path / "d.db"
    now = time.time()
    store_records(db, [make_record("old", ts=now - 7200), make_record("new", ts=now - 60)])
    code, lines = logs(db, since="1h", as_json=True)
    assert code == 0
    assert [orjson.loads(line)["request_id"] for line in lines] == ["new"]


def test_run_logs_follow(log_db: Path) -> None:
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) == 1:  # a record arrives between the first and second poll
            store_records(
                log_db,
                [make_record("f", vendor="meta", ts=T0 + 50), make_record("g", vendor="ga4")],
            )

    code, lines = logs(
        log_db,
        vendor="meta",
        follow=True,
        poll_interval=0.25,
        max_polls=3,
        sleep=sleep,
        as_json=True,
    )
    assert code == 0
    assert [orjson.loads(line)["request_id"] for line in lines] == ["c", "e", "f"]
    assert sleeps == [0.25, 0.25, 0.25]


def test_run_logs_follow_waits_for_the_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "later.db"

    def sleep(seconds: float) -> None:
        if not db.exists():
            store_records(db, [make_record("first")])

    code, lines = logs(db, follow=True, max_polls=2, sleep=sleep)
    assert code == 0
    assert lines == [format_record(make_record("first"))]
    assert "no decision log" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"since": "yesterday"}, "yesterday"),
        ({"action": "block"}, "action"),
        ({"limit": 0}, "limit"),
    ],
)
def test_run_logs_bad_arguments(
    log_db: Path, capsys: pytest.CaptureFixture[str], kw: dict[str, Any], message: str
) -> None:
    code, lines = logs(log_db, **kw)
    assert code == 2
    assert lines == []
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("follow", [False, True])
def test_run_logs_on_a_file_that_is_not_a_log(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], follow: bool
) -> None:
    db = tmp_path / "d.db"
    db.write_bytes(b"this is not a database " * 100)
    code, lines = logs(db, follow=follow, max_polls=1, sleep=lambda _s: None)
    assert (code, lines) == (1, [])
    err = capsys.readouterr().err
    assert err == (
        f"consent-gateway logs: cannot read the decision log: {db}: "
        "DatabaseError: file is not a database\n"
    )


# -- the PostgreSQL log: every instance's records ------------------------------------------


async def _pg_write(schema: str, records: list[DecisionRecord]) -> None:
    host = PostgresHost(pg_log_config(schema))
    try:
        assert [o.failure for o in await host.write(records)] == [None]
    finally:
        await host.close()


def _pg_logs(schema: str, out: io.StringIO, **kw: Any) -> int:
    args: dict[str, Any] = {
        "since": None,
        "vendor": None,
        "action": None,
        "purpose": None,
        "as_json": True,
        "follow": False,
        "limit": 100,
    }
    args.update(kw)
    return run_pg_logs(pg_dsn_in(schema), out=out, **args)


async def test_pg_logs_print_and_follow_every_instances_records() -> None:
    async with fresh_pg_schema() as schema:
        await _pg_write(schema, LOG_ROWS)
        out = io.StringIO()
        assert await asyncio.to_thread(_pg_logs, schema, out, action="drop") == 0
        printed = [orjson.loads(line)["request_id"] for line in out.getvalue().splitlines()]
        assert printed == [r.request_id for r in LOG_ROWS if r.action == "drop"]

        # --follow: what any instance commits from now on, filtered, after the first page
        follow = io.StringIO()
        task = asyncio.get_running_loop().run_in_executor(
            None, partial(_pg_logs, schema, follow, follow=True, vendor="meta", max_follow=1)
        )
        n = 0
        while not task.done():  # until the tail (started in the thread) has heard one
            await _pg_write(schema, [make_record(f"other{n}", vendor="ga4")])
            await _pg_write(schema, [make_record(f"new{n}", vendor="meta", ts=time.time())])
            n += 1
            await asyncio.wait({task}, timeout=0.2)
            assert n < 100, "logs --follow never printed a new record"
        assert task.result() == 0
        lines = [orjson.loads(line) for line in follow.getvalue().splitlines()]
        assert [r["vendor"] for r in lines] == ["meta"] * len(lines)
        assert lines[-1]["request_id"].startswith("new")
        assert len({r["request_id"] for r in lines}) == len(lines)  # none twice


def test_pg_logs_refuse_bad_filters_and_name_no_dsn(capsys: pytest.CaptureFixture[str]) -> None:
    out = io.StringIO()
    assert _pg_logs("x", out, action="explode") == 2
    code = run_pg_logs(
        "postgresql://gw:s3cret@127.0.0.1:1/db",
        since=None,
        vendor=None,
        action=None,
        purpose=None,
        as_json=False,
        follow=False,
        limit=10,
        out=out,
    )
    assert code == 1
    err = capsys.readouterr().err
    assert "cannot read the decision log" in err and "s3cret" not in err
