"""gateway.admin.queries: the decision-log reads the pages and the API share: keyset
pages with their cursors, and empty answers without a SQLite log.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from gateway.admin.params import Filters
from gateway.admin.queries import Page, load_page
from gateway.decision_log.readers import SqliteReader
from gateway.decision_log.record import DecisionRecord
from tests.admin.conftest import (
    admin_client,
    api,
    page,
    record,
    seed,
)
from tests.conftest import store_records


async def test_api_pagination_visits_every_record_once(
    gateway_factory: Callable[..., Any],
) -> None:
    client = await admin_client(gateway_factory)
    seed(client, [record(f"r{i:03}", age=10 + i % 17) for i in range(120)])  # ties in time
    seen: list[str] = []
    url = "/_admin/api/records?limit=50"
    for _ in range(10):
        body = await api(client, url)
        seen += [r["request_id"] for r in body["records"]]
        if body["next_before_id"] is None:
            break
        url = f"/_admin/api/records?limit=50&before_id={body['next_before_id']}"
    assert sorted(seen) == [f"r{i:03}" for i in range(120)] and len(seen) == 120
    times = [r["ts_epoch"] for r in (await api(client, "/_admin/api/records?limit=120"))["records"]]
    assert times == sorted(times, reverse=True)


async def test_no_sqlite_log(gateway_factory: Callable[..., Any]) -> None:
    client = await admin_client(gateway_factory, decision_log={"sqlite_path": ""})
    for path in ("/_admin/", "/_admin/overview", "/_admin/unknown"):
        doc = await page(client, path)
        assert any("decision_log.sqlite_path" in n.text for n in doc.all("p", "notice"))
    assert await api(client, "/_admin/api/records") == {"records": [], "next_before_id": None}
    assert (await api(client, "/_admin/api/unknown"))["hosts"] == []
    assert (await api(client, "/_admin/api/overview"))["total"] == 0


# --- load_page alone, on a log file ---------------------------------------------------

ALL = Filters("all", None, None, None, None, None)


def write_log(db: Path, records: Sequence[DecisionRecord]) -> Path:
    store_records(db, records)
    return db


async def test_load_page_without_a_log_is_empty() -> None:
    assert await load_page(None, ALL, 50, None, True) == Page([], None)
    assert await load_page(None, ALL, 50, 7, True) == Page([], None)


@pytest.mark.parametrize(
    ("before_id", "with_prev", "ids", "next_before_id", "has_prev", "prev_before_id"),
    [
        (None, True, [7, 6, 5], 5, False, None),  # the first page has no previous one
        (5, True, [4, 3, 2], 2, True, None),  # its previous page is the first one
        (2, True, [1], None, True, 5),  # the last page
        (5, False, [4, 3, 2], 2, False, None),  # the API asks for no previous cursor
        (1, True, [], None, True, 4),
        (99, True, [], None, True, None),  # a cursor that is not stored matches nothing
    ],
)
async def test_load_page_cursors(
    tmp_path: Path,
    before_id: int | None,
    with_prev: bool,
    ids: list[int],
    next_before_id: int | None,
    has_prev: bool,
    prev_before_id: int | None,
) -> None:
    # ids 1..7, each newer than the one before
    db = write_log(tmp_path / "log.sqlite3", [record(f"r{i}", age=100.0 - i) for i in range(7)])
    got = await load_page(SqliteReader(db), ALL, 3, before_id, with_prev)
    assert [r.id for r in got.records] == ids
    assert got.next_before_id == next_before_id
    assert (got.has_prev, got.prev_before_id) == (has_prev, prev_before_id)


async def test_load_page_applies_the_filters(tmp_path: Path) -> None:
    rows = [record("a", age=30), record("b", age=20, action="strip"), record("c", age=10)]
    db = write_log(tmp_path / "log.sqlite3", rows)
    got = await load_page(SqliteReader(db), replace(ALL, action="drop"), 1, None, True)
    assert [r.request_id for r in got.records] == ["c"] and got.next_before_id == 3
    older = await load_page(
        SqliteReader(db), replace(ALL, action="drop"), 1, got.next_before_id, True
    )
    assert [r.request_id for r in older.records] == ["a"] and older.next_before_id is None
    assert (older.has_prev, older.prev_before_id) == (True, None)


async def test_without_a_sqlite_log_bypasses_read_empty(
    gateway_factory: Callable[..., Any],
) -> None:
    client = await admin_client(gateway_factory, decision_log={"sqlite_path": None})
    body = await api(client, "/_admin/api/bypasses?since=all")
    assert body["bypasses"] == []
    doc = await page(client, "/_admin/bypasses")
    assert doc.one("table", id="bypasses").all("tr", "empty")
