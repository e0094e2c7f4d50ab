"""gateway.reports: /csp-report and /cg-report on the public app: bounded, rate limited,
204 for every well-formed body, and only names reach the Bypasses table and the metric."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient

from gateway import reports
from gateway.app import GATEWAY
from gateway.decision_log.query import LogReader

Client = TestClient[Any, Any]

LEGACY = {"Content-Type": "application/csp-report"}
BATCH = {"Content-Type": "application/reports+json"}
BEACON = {"Content-Type": "text/plain;charset=UTF-8"}


def csp_report(blocked: str, page: str = "https://shop.example/cart?email=x") -> bytes:
    return orjson.dumps(
        {"csp-report": {"document-uri": page, "blocked-uri": blocked, "script-sample": "S"}}
    )


@pytest.fixture
async def client(gateway_factory: Callable[..., Any]) -> Client:
    c: Client = await gateway_factory()
    return c


async def stored(client: Client) -> list[tuple[str, str, str | None, str, str, int]]:
    gw = client.app[GATEWAY]
    await gw.decision_log.drain()
    db = gw.config.decision_log.sqlite_path
    assert db is not None
    return [(b.source, b.kind, b.vendor, b.host, b.page, b.count) for b in LogReader(db).bypasses()]


def metric(client: Client, source: str, vendor: str) -> float:
    registry = client.app[GATEWAY].metrics.registry
    labels = {"source": source, "vendor": vendor}
    return registry.get_sample_value("consent_gateway_bypass_reports_total", labels) or 0.0


async def test_reports_of_every_shape_are_counted_as_names(client: Client) -> None:
    fb = "https://www.facebook.com/tr?id=1&ev=PageView"
    for _ in range(2):
        resp = await client.post("/csp-report", data=csp_report(fb), headers=LEGACY)
        assert resp.status == 204 and await resp.read() == b""
    batch = [
        {"type": "csp-violation", "body": {"documentURL": "https://s/p?q=1", "blockedURL": fb}}
    ]
    assert (await client.post("/csp-report", data=orjson.dumps(batch), headers=BATCH)).status == 204
    beacon = {"kind": "unlisted", "host": "cdn.tracker.example", "page": "/a?b=c"}
    assert (
        await client.post("/cg-report", data=orjson.dumps(beacon), headers=BEACON)
    ).status == 204
    assert sorted(await stored(client), key=str) == [
        ("csp", "bypass", "meta-pixel", "www.facebook.com", "/cart", 2),
        ("csp", "bypass", "meta-pixel", "www.facebook.com", "/p", 1),
        ("router", "unlisted", None, "cdn.tracker.example", "/a", 1),
    ]
    assert metric(client, "csp", "meta-pixel") == 3
    assert metric(client, "router", "-") == 1


async def test_a_report_without_a_host_is_answered_and_not_kept(client: Client) -> None:
    resp = await client.post("/csp-report", data=csp_report("inline"), headers=LEGACY)
    assert resp.status == 204
    assert await stored(client) == []


@pytest.mark.parametrize(
    ("path", "headers", "body", "status"),
    [
        ("/csp-report", LEGACY, b"not json", 400),
        ("/csp-report", BEACON, csp_report("https://www.facebook.com/"), 400),
        ("/cg-report", BEACON, b"[1]", 400),
        ("/csp-report", LEGACY, b"{" + b" " * reports.BODY_LIMIT + b"}", 413),
        ("/cg-report", BEACON, b"x" * (reports.BODY_LIMIT + 1), 413),
    ],
)
async def test_bad_bodies_are_refused_without_echo(
    client: Client, path: str, headers: dict[str, str], body: bytes, status: int
) -> None:
    resp = await client.post(path, data=body, headers=headers)
    assert resp.status == status
    assert b"facebook" not in await resp.read()
    assert await stored(client) == []


async def test_only_post_is_served(client: Client) -> None:
    assert (await client.get("/csp-report")).status in (404, 405)


async def test_reports_are_limited_per_network(
    gateway_factory: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reports, "PER_MINUTE", 3)
    client: Client = await gateway_factory(extra={"server": {"trusted_proxies": ["127.0.0.1/32"]}})
    body = csp_report("https://www.facebook.com/tr")
    net_a = {**LEGACY, "X-Forwarded-For": "203.0.113.7"}
    statuses = [
        (await client.post("/csp-report", data=body, headers=net_a)).status for _ in range(4)
    ]
    assert statuses == [204, 204, 204, 429]
    refused = await client.post("/cg-report", data=b"{}", headers={**BEACON, **net_a})
    assert refused.status == 429 and int(refused.headers["Retry-After"]) >= 1
    other = {**LEGACY, "X-Forwarded-For": "198.51.100.4"}
    assert (await client.post("/csp-report", data=body, headers=other)).status == 204
    assert [row[-1] for row in await stored(client)] == [4]


async def test_a_cross_origin_reporting_upload_is_approved_for_allowed_origins_only(
    gateway_factory: Callable[..., Any],
) -> None:
    client: Client = await gateway_factory(
        extra={"server": {"allowed_origins": ["https://www.example.com"]}}
    )
    ask = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type",
    }
    ok = await client.options("/csp-report", headers={**ask, "Origin": "https://www.example.com"})
    assert ok.status == 204
    assert ok.headers["Access-Control-Allow-Origin"] == "https://www.example.com"
    assert ok.headers["Access-Control-Allow-Methods"] == "POST"
    assert "Access-Control-Allow-Credentials" not in ok.headers
    other = await client.options("/csp-report", headers={**ask, "Origin": "https://evil.test"})
    assert "Access-Control-Allow-Origin" not in other.headers
    body = orjson.dumps(
        [{"type": "csp-violation", "body": {"blockedURL": "https://x.example.org/"}}]
    )
    for origin, allowed in (("https://www.example.com", True), ("https://evil.test", False)):
        resp = await client.post("/csp-report", data=body, headers={**BATCH, "Origin": origin})
        assert resp.status == 204
        assert ("Access-Control-Allow-Origin" in resp.headers) is allowed


async def test_without_allowed_origins_no_cors_at_all(client: Client) -> None:
    origin = {"Origin": "https://www.example.com", "Access-Control-Request-Method": "POST"}
    resp = await client.options("/csp-report", headers=origin)
    assert "Access-Control-Allow-Origin" not in resp.headers
