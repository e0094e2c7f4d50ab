"""gateway.app: routes, the error middleware, health, metrics, the store's lifecycle, and
what the visitor gets back (the consent API's own tests: tests/test_consent_api.py)."""

from __future__ import annotations

import asyncio
import platform
import sqlite3
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

from gateway import __version__
from gateway.app import GATEWAY, build_app
from gateway.config import StoreBackend
from gateway.store.base import StoreError
from tests.conftest import FakeVendor, cookie_for, make_config

Client = TestClient[Any, Any]


ADMIN_TOKEN = "app-test-admin-token-0123456789"
ADMIN = {"admin": {"token_env": "CG_ADMIN", "secure_cookie": False}}
BEARER = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture
async def client(gateway_factory: Callable[..., Any]) -> Client:
    c: Client = await gateway_factory(
        hosts=["www.google-analytics.com"], extra=ADMIN, env={"CG_ADMIN": ADMIN_TOKEN}
    )
    return c


async def _metrics(client: Client) -> str:
    """/metrics on the shared port (the test client's), with the admin token it needs."""
    resp = await client.get("/metrics", headers=BEARER)
    assert resp.status == 200
    return await resp.text()


async def test_health_ready_and_metrics(client: Client) -> None:
    assert (await client.get("/healthz")).status == 200
    ready = await client.get("/readyz")
    assert ready.status == 200 and (await ready.json())["checks"]["rules"] is True
    await client.get("/t/www.google-analytics.com/g/collect?v=2&tid=G-1&en=x")
    text = await _metrics(client)
    families = {f.name: f for f in text_string_to_metric_families(text)}
    drops = [
        s
        for s in families["consent_gateway_requests"].samples
        if s.name == "consent_gateway_requests_total" and s.labels["action"] == "drop"
    ]
    assert drops and drops[0].labels["vendor"] == "google-analytics-4" and drops[0].value == 1


async def test_injected_markup_is_never_reflected(client: Client) -> None:
    for target in (
        "/t/%3Cscript%3Ealert(1)%3C%2Fscript%3E/x",
        "/t/www.google-analytics.com/<script>alert(1)</script>",
        "/<script>alert(1)</script>",
        "/t/evil.example/x?q=<script>alert(1)</script>",
    ):
        resp = await client.get(target)
        text = await resp.text()
        assert 400 <= resp.status < 500
        assert "script" not in text.lower() and resp.content_type == "application/json"
        assert resp.headers["X-Content-Type-Options"] == "nosniff"


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }


async def test_metrics_counters_move_with_traffic(
    gateway_factory: Callable[..., Any], fake_vendor: Any
) -> None:
    client: Client = await gateway_factory(
        hosts=["www.google-analytics.com"], extra=ADMIN, env={"CG_ADMIN": ADMIN_TOKEN}
    )
    before = _samples(await _metrics(client))
    granted = cookie_for({"analytics": "granted", "advertising": "granted"})
    hit = "/t/www.google-analytics.com/g/collect?v=2&tid=G-1&en=x"
    await client.get(hit)  # dropped
    await client.get(hit, headers={"Cookie": f"cg_consent={granted}"})  # forwarded
    await client.get("/t/evil.example/x")  # rejected
    await client.get(hit, headers={"Cookie": "cg_consent=k1.forged.sig"})  # bad cookie
    await fake_vendor.wait_for(1)
    await client.app[GATEWAY].decision_log.drain()
    after = _samples(await _metrics(client))

    def moved(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    ga = {"vendor": "google-analytics-4", "endpoint": "collect"}
    assert moved("consent_gateway_requests_total", action="drop", **ga) == 2
    assert moved("consent_gateway_requests_total", action="forward", **ga) == 1
    assert moved("consent_gateway_requests_total", vendor="-", endpoint="-", action="reject") == 1
    assert (
        moved("consent_gateway_consent_cookie_invalid_total", reason="unknown-key")
        + moved("consent_gateway_consent_cookie_invalid_total", reason="malformed")
        + moved("consent_gateway_consent_cookie_invalid_total", reason="bad-signature")
        == 1
    )
    assert moved("consent_gateway_decision_log_written_total") == 3  # drop, drop, reject
    assert moved("consent_gateway_decision_seconds_count") == 4
    assert moved("consent_gateway_upstream_seconds_count", vendor="google-analytics-4") == 1


async def test_every_metric_is_under_one_prefix_without_created_series(
    gateway_factory: Callable[..., Any], aiohttp_client: Callable[..., Any]
) -> None:
    from gateway.app import OPS

    client: Client = await gateway_factory(
        hosts=["www.google-analytics.com"], extra={"server": {"admin_port": 0}}
    )
    # a tag request, so that labelled counters and histograms have children to expose
    await client.get("/t/www.google-analytics.com/g/collect?v=2&tid=G-1&en=x")
    ops: Client = await aiohttp_client(client.app[OPS])
    text = await (await ops.get("/metrics")).text()
    names = [line.split("{")[0].split(" ")[0] for line in text.splitlines() if line[:1] != "#"]
    assert "consent_gateway_requests_total" in names
    assert [n for n in names if not n.startswith("consent_gateway_")] == []
    assert [n for n in names if n.endswith("_created")] == []
    assert "_created" not in text


async def test_the_gauges_operators_alert_on_are_read_when_scraped(
    gateway_factory: Callable[..., Any], aiohttp_client: Callable[..., Any]
) -> None:
    from gateway.app import OPS

    # records wait in the decision log's queue until three make a batch
    client: Client = await gateway_factory(
        hosts=["www.google-analytics.com"],
        extra={
            "server": {"admin_port": 0},
            "decision_log": {"batch_size": 3, "flush_interval": 3600},
        },
    )
    gw = client.app[GATEWAY]
    ops: Client = await aiohttp_client(client.app[OPS])

    async def scrape() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        return _samples(await (await ops.get("/metrics")).text())

    def value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str) -> float:
        return samples[(name, ())]

    first = await scrape()
    labels = (("python", platform.python_version()), ("version", __version__))
    build = ("consent_gateway_build_info", labels)
    assert first[build] == 1
    assert value(first, "consent_gateway_rules_loaded") == len(gw.rules.current.rules) > 0
    assert value(first, "consent_gateway_rules_loaded_timestamp_seconds") == gw.rules.loaded_at
    assert value(first, "consent_gateway_rules_last_reload_ok") == 1
    assert value(first, "consent_gateway_decision_log_queue_depth") == 0
    assert 0 <= value(first, "consent_gateway_consent_feed_lag_seconds") < 60

    hit = "/t/www.google-analytics.com/g/collect?v=2&tid=G-1&en=x"
    for _ in range(2):
        assert (await client.get(hit)).status == 204  # dropped: one record each
    assert value(await scrape(), "consent_gateway_decision_log_queue_depth") == 2
    await client.get(hit)  # the third fills a batch: written
    await gw.decision_log.drain()
    assert value(await scrape(), "consent_gateway_decision_log_queue_depth") == 0


# -- the consent store in the lifecycle (DESIGN §6) -------------------------------------------


async def test_readyz_checks_the_store(client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    doc = await (await client.get("/readyz")).json()
    assert doc["checks"]["store"] is True and doc["checks"]["change_feed"] is True
    gw = client.app[GATEWAY]
    assert gw.book is not None

    async def down() -> bool:
        return False

    monkeypatch.setattr(gw.book.store, "ping", down)
    resp = await client.get("/readyz")
    assert resp.status == 503 and (await resp.json())["checks"]["store"] is False
    # A PostgreSQL store is every instance's: its outage is reported, and the instance
    # stays in its balancer, deciding on cookies, rather than the whole fleet leaving it.
    shared = replace(gw.config, store=replace(gw.config.store, backend=StoreBackend.POSTGRES))
    monkeypatch.setattr(gw, "config", shared)
    resp = await client.get("/readyz")
    doc = await resp.json()
    assert resp.status == 200 and doc["status"] == "degraded" and doc["checks"]["store"] is False


async def test_readyz_answers_503_while_draining_and_healthz_stays_200(client: Client) -> None:
    client.app[GATEWAY].draining = True  # what a SIGTERM does first (gateway.serve)
    ready = await client.get("/readyz")
    assert ready.status == 503 and (await ready.json())["status"] == "draining"
    assert (await client.get("/healthz")).status == 200  # alive: not to be restarted


async def test_gateway_refuses_to_start_on_a_newer_schema(tmp_path: Path) -> None:
    path = tmp_path / "data" / "consent.db"
    path.parent.mkdir(parents=True)
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version = 99")
    app = build_app(make_config(tmp_path))
    runner = web.AppRunner(app)
    with pytest.raises(StoreError, match="newer"):
        await runner.setup()
    await runner.cleanup()


async def test_gateway_refuses_an_old_schema_unless_it_may_migrate(tmp_path: Path) -> None:
    app = build_app(make_config(tmp_path, extra={"store": {"migrate_on_start": False}}))
    runner = web.AppRunner(app)
    with pytest.raises(StoreError, match="consent-gateway migrate"):
        await runner.setup()
    await runner.cleanup()


async def test_a_client_trickling_its_headers_is_disconnected(
    gateway_factory: Callable[..., Any],
) -> None:
    # slowloris: without server.read_timeout aiohttp held such a connection for an hour
    client = await gateway_factory(extra={"server": {"read_timeout": "300ms"}})
    reader, writer = await asyncio.open_connection(client.host, client.port)
    loop = asyncio.get_running_loop()
    started = loop.time()
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: gw\r\n")
    closed = False
    try:
        async with asyncio.timeout(10):
            while not closed:
                try:
                    closed = await asyncio.wait_for(reader.read(1024), 0.05) == b""
                except TimeoutError:
                    writer.write(b"X-Slow: 1\r\n")  # one more header line, never the end
    finally:
        writer.close()
    assert closed and 0.25 < loop.time() - started < 5


async def test_a_prompt_client_on_a_kept_alive_connection_is_served(
    gateway_factory: Callable[..., Any],
) -> None:
    client = await gateway_factory(extra={"server": {"read_timeout": "300ms"}})
    for _ in range(3):
        assert (await client.get("/healthz")).status == 200


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"Authorization": "Bearer wrong-token"}, 401),
        ({"Authorization": f"Basic {ADMIN_TOKEN}"}, 401),
        (BEARER, 200),
    ],
)
async def test_metrics_on_the_public_port_need_the_admin_token(
    client: Client, headers: dict[str, str], status: int
) -> None:
    # /metrics was open on the public tag port, naming every vendor and the consent rates
    resp = await client.get("/metrics", headers=headers)
    assert resp.status == status
    if status == 401:
        assert "consent_gateway_requests" not in await resp.text()


async def test_without_an_admin_token_public_metrics_stay_closed(
    gateway_factory: Callable[..., Any],
) -> None:
    client: Client = await gateway_factory()
    assert (await client.get("/metrics")).status == 401


async def test_the_operators_routes_have_their_own_listener(
    gateway_factory: Callable[..., Any], aiohttp_client: Callable[..., Any], tmp_path: Path
) -> None:
    from gateway.app import OPS

    # the default: server.admin_port set, so the public app serves none of them
    client: Client = await gateway_factory(
        extra={"server": {"admin_port": 0}, **ADMIN}, env={"CG_ADMIN": ADMIN_TOKEN}
    )
    for path in ("/metrics", "/healthz", "/readyz", "/_admin/", "/_admin/api/records"):
        resp = await client.get(path, headers=BEARER)
        assert resp.status == 404, path
    ops: Client = await aiohttp_client(client.app[OPS])
    assert (await ops.get("/healthz")).status == 200
    assert (await ops.get("/readyz")).status == 200  # the main app's state, started
    assert (await ops.get("/metrics")).status == 200  # a private listener: no token asked
    assert (await ops.get("/_admin/api/records", headers=BEARER)).status == 200
    assert (await ops.get("/_admin/api/records")).status == 401  # the admin still asks
    # the public side still serves tags and the consent API
    assert (await client.get("/consent")).status == 200


# --- server.base_path ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/cg/consent", 200),
        ("/consent", 404),
        ("/cg/t/www.google-analytics.com/g/collect?v=2&tid=G-1&cid=1.2", 204),
        ("/t/www.google-analytics.com/g/collect?v=2&tid=G-1&cid=1.2", 404),
        ("/cg/ga4/g/collect?v=2&tid=G-1&cid=1.2", 204),  # a rule's first-party prefix
        ("/ga4/g/collect?v=2&tid=G-1&cid=1.2", 404),
        ("/cg/t/unlisted.example/x", 404),  # below the base, still never an open proxy
        ("/cg", 404),
        ("/cgx/consent", 404),
        # the operators' routes share the public port here: under the base too
        ("/cg/healthz", 200),
        ("/healthz", 404),
        ("/cg/_admin/api/records", 200),
        ("/_admin/api/records", 404),
    ],
)
async def test_every_public_route_is_served_under_the_base_path(
    gateway_factory: Callable[..., Any], path: str, status: int
) -> None:
    client: Client = await gateway_factory(
        hosts=["www.google-analytics.com"],
        extra={"server": {"admin_port": None, "base_path": "/cg"}, **ADMIN},
        env={"CG_ADMIN": ADMIN_TOKEN},
    )
    resp = await client.get(path, headers=BEARER)
    assert resp.status == status, await resp.text()
    if status == 404:
        assert "error" in await resp.json()


async def test_the_base_path_applies_to_routes_other_modules_register(
    tmp_path: Path, aiohttp_client: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A module adding its routes with plain paths (as `add_consent_routes` does) gets
    them under the base path without knowing it."""
    from gateway import app as wiring
    from gateway.consent_api import add_consent_routes as real

    async def hello(request: web.Request) -> web.Response:
        return web.Response(text=str(request.match_info.get("name")))

    def add_hello_routes(app: web.Application, gw: object) -> None:
        app.router.add_get("/hello/{name}", hello)

    def both(app: web.Application, gw: Any) -> None:
        real(app, gw)
        add_hello_routes(app, gw)

    monkeypatch.setattr(wiring, "add_consent_routes", both)
    cfg = make_config(tmp_path, extra={"server": {"base_path": "/cg"}})
    client: Client = await aiohttp_client(build_app(cfg))
    resp = await client.get("/cg/hello/world")
    assert resp.status == 200 and await resp.text() == "world"  # match_info as registered
    assert (await client.get("/hello/world")).status == 404


async def test_the_operators_listener_keeps_its_paths_under_a_base_path(
    gateway_factory: Callable[..., Any], aiohttp_client: Callable[..., Any]
) -> None:
    from gateway.app import OPS

    client: Client = await gateway_factory(
        extra={"server": {"admin_port": 0, "base_path": "/cg"}, **ADMIN},
        env={"CG_ADMIN": ADMIN_TOKEN},
    )
    assert (await client.get("/cg/consent")).status == 200
    assert (await client.get("/cg/healthz")).status == 404
    ops: Client = await aiohttp_client(client.app[OPS])
    for path in ("/healthz", "/readyz", "/metrics", "/_admin/api/records"):
        assert (await ops.get(path, headers=BEARER)).status == 200, path
    assert (await ops.get("/cg/healthz")).status == 404


async def test_the_admin_under_a_base_path_links_and_scopes_its_cookie_there(
    gateway_factory: Callable[..., Any],
) -> None:
    client: Client = await gateway_factory(
        extra={"server": {"admin_port": None, "base_path": "/cg"}, **ADMIN},
        env={"CG_ADMIN": ADMIN_TOKEN},
    )
    resp = await client.get("/cg/_admin", allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/cg/_admin/"
    login = await client.post(
        "/cg/_admin/login", data={"token": ADMIN_TOKEN}, allow_redirects=False
    )
    assert login.status == 303 and login.headers["Location"] == "/cg/_admin/"
    assert "Path=/cg/_admin" in login.headers["Set-Cookie"]
    page = await (await client.get("/cg/_admin/")).text()
    assert 'href="/cg/_admin/overview"' in page and 'src="/cg/_admin/static/admin.js"' in page
    # a rule's first-party route, as the public port serves it
    assert "/cg/ga4 → " in await (await client.get("/cg/_admin/rules")).text()
    # the API's errors stay JSON under the base
    bad = await client.get("/cg/_admin/api/records?limit=x", headers=BEARER)
    assert bad.status == 400 and "error" in await bad.json()


# --- the tag routes' short way past the router ----------------------------------------


_GA4 = "/t/www.google-analytics.com/g/collect?v=2&tid=G-1&cid=1.2"
_ANSWER_HEADERS = ("Content-Type", "Cache-Control", "X-Content-Type-Options", "Vary")


@pytest.mark.parametrize(
    ("path", "method", "headers"),
    [
        (_GA4, "GET", {}),
        (_GA4, "POST", {"Expect": "100-continue"}),
        ("/t/www.google-analytics.com/g/collect/../../x", "GET", {}),
        ("/t/unlisted.example/x", "GET", {}),
        ("/t/127.0.0.1/x", "GET", {}),
        ("/t/www.google-analytics.com/nothing-here", "GET", {}),
        (
            _GA4,
            "OPTIONS",
            {"Origin": "https://shop.example", "Access-Control-Request-Method": "GET"},
        ),
    ],
    ids=["drop", "expect", "dot-segments", "unlisted", "ip", "no-endpoint", "preflight"],
)
async def test_a_tag_request_is_answered_alike_with_and_without_the_short_way(
    gateway_factory: Callable[..., Any], path: str, method: str, headers: dict[str, str]
) -> None:
    """Tag requests at the root skip the router (`_PublicApp`); under a base path they
    take aiohttp's way. Both answer the same status, headers and body."""
    answers = []
    for base in ("", "/cg"):
        client: Client = await gateway_factory(
            hosts=["www.google-analytics.com"],
            extra={
                "server": {"base_path": base or None, "allowed_origins": ["https://shop.example"]}
            },
        )
        resp = await client.request(method, base + path, headers=headers)
        decision = resp.headers.get("Consent-Gateway-Decision", "")
        answers.append(
            (
                resp.status,
                {h: resp.headers.get(h) for h in _ANSWER_HEADERS},
                decision.rpartition("; id=")[0],
                await resp.read(),
            )
        )
    assert answers[0] == answers[1]


async def test_hosts_the_config_adds_are_served_by_their_rule(
    gateway_factory: Callable[..., Any], fake_vendor: FakeVendor
) -> None:
    """rules.vendor_hosts: Matomo on the site's own stats host, server-side GTM mounted
    under /metrics of the site's www host (only there: the rest of www is not the vendor's)."""
    extra = {
        "rules": {
            "vendor_hosts": {
                "matomo": ["stats.shop.example"],
                "google-analytics-4": ["www.shop.example/metrics"],
            }
        }
    }
    client: TestClient[Any, Any] = await gateway_factory(
        hosts=["stats.shop.example", "www.shop.example"], extra=extra
    )
    granted = {
        "Cookie": f"cg_consent={cookie_for({'analytics': 'granted', 'advertising': 'granted'})}"
    }
    hit = "/t/stats.shop.example/matomo.php?idsite=3&rec=1&_id=9f2c1a7b3e4d5f60"
    assert (await client.get(hit, headers=granted)).status in (200, 204)
    ga4 = "/t/www.shop.example/metrics/g/collect?v=2&tid=G-X&cid=1.2&en=page_view"
    assert (await client.get(ga4, headers=granted)).status == 204
    seen = {(s.host, s.path) for s in await fake_vendor.wait_for(2)}
    assert seen == {
        ("stats.shop.example", "/matomo.php"),
        ("www.shop.example", "/metrics/g/collect"),
    }
    # elsewhere on the mounted host: an unknown destination, never forwarded
    resp = await client.get("/t/www.shop.example/g/collect?v=2", headers=granted)
    assert resp.status == 404
    await client.app[GATEWAY].upstream.drain()
    assert len(fake_vendor.seen) == 2
