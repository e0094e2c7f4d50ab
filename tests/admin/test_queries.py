"""gateway.admin.queries: the decision-log reads the pages and the API share: keyset
pages with their cursors, and empty answers without a SQLite log.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.admin.conftest import (
    admin_client,
    api,
    page,
    record,
    seed,
)


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
